//! `petrel sendmail` (and the binary invoked as `sendmail`): the entry local programs (cron,
//! scripts, web applications) use to send mail. The message on stdin is queued for delivery,
//! local or outbound, through the same store path as SMTP; exit codes are sendmail's.
//!
//! Flags understood: `-t` (recipients from To/Cc/Bcc, added to those given; Bcc removed), `-i`
//! and `-oi` (a line with a single dot does not end the message), `-f SENDER` / `-r SENDER`,
//! `-F NAME` (full name for a From: header the message lacks), `--`. Other `-o*`, `-B`, `-N`,
//! `-R`, `-V`, `-U`, `-v`, `-bm` are accepted and ignored, as Postfix does; other modes are refused.

use crate::Failure;
use crate::config::Config;
use crate::deliver::{EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, open_store, store_message};
use petrel_core::smtp::address::{Address, ReversePath, parse_mailbox};
use petrel_core::{Envelope, Recipient, RecipientOutcome, rfc5322_date};
use std::io::{self, Read};

/// sysexits.h: bad command line.
const EX_USAGE: u8 = 64;
/// sysexits.h: the recipient's filter refused the message.
const EX_NOPERM: u8 = 77;
/// Largest header block read before the message starts streaming.
const MAX_HEADER: usize = 1024 * 1024;

/// The parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    extract: bool,
    ignore_dots: bool,
    sender: Option<String>,
    full_name: Option<String>,
    recipients: Vec<String>,
}

fn usage(msg: impl Into<String>) -> (u8, String) {
    (EX_USAGE, msg.into())
}

fn parse_args(argv: &[String]) -> Result<Args, (u8, String)> {
    let mut a = Args::default();
    let mut i = 0;
    // A flag's value: glued (`-fuser`) or the next argument.
    let value = |i: &mut usize, glued: &str, flag: &str| -> Result<String, (u8, String)> {
        if !glued.is_empty() {
            return Ok(glued.to_string());
        }
        *i += 1;
        argv.get(*i)
            .cloned()
            .ok_or_else(|| usage(format!("{flag} needs a value")))
    };
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            a.recipients.extend(argv[i + 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            a.recipients.push(arg.clone());
            i += 1;
            continue;
        }
        let flag = &arg[..2.min(arg.len())];
        let rest = &arg[flag.len()..];
        match flag {
            "-t" if rest.is_empty() => a.extract = true,
            "-i" if rest.is_empty() => a.ignore_dots = true,
            "-f" | "-r" => a.sender = Some(value(&mut i, rest, flag)?),
            "-F" => a.full_name = Some(value(&mut i, rest, flag)?),
            "-o" if rest == "i" => a.ignore_dots = true,
            "-o" => {
                // -oX options; `-o X` with a separate value is not a sendmail form.
            }
            "-b" => match rest {
                "m" | "" => {}
                other => {
                    return Err(usage(format!(
                        "-b{other}: only -bm (deliver mail) is supported"
                    )));
                }
            },
            "-B" | "-N" | "-R" | "-V" => {
                if rest.is_empty() {
                    i += 1;
                }
            }
            "-U" | "-v" | "-m" | "-n" | "-e" | "-d" | "-q" if flag != "-q" || rest.is_empty() => {}
            _ => return Err(usage(format!("unknown option {arg}"))),
        }
        i += 1;
    }
    Ok(a)
}

/// Reads stdin, ending at EOF or (unless `-i`) at a line holding a single dot.
struct Input<R> {
    inner: R,
    ignore_dots: bool,
    at_line_start: bool,
    /// What followed a dot at a line start, until we know whether the line is just ".".
    held: Vec<u8>,
    /// Bytes decided but not yet handed out.
    pending: std::collections::VecDeque<u8>,
    ended: bool,
}

impl<R: Read> Input<R> {
    fn new(inner: R, ignore_dots: bool) -> Self {
        Input {
            inner,
            ignore_dots,
            at_line_start: true,
            held: Vec::new(),
            pending: std::collections::VecDeque::new(),
            ended: false,
        }
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.ignore_dots {
            return self.inner.read(out);
        }
        let mut filled = 0;
        let mut byte = [0u8; 1];
        while filled < out.len() {
            if let Some(b) = self.pending.pop_front() {
                out[filled] = b;
                filled += 1;
                continue;
            }
            if self.ended {
                break;
            }
            if self.inner.read(&mut byte)? == 0 {
                self.pending.extend(self.held.drain(..));
                self.ended = true;
                continue;
            }
            let b = byte[0];
            if !self.held.is_empty() {
                if b == b'\n' {
                    // A line of just "." (or ".\r"): the end of the message.
                    self.held.clear();
                    self.ended = true;
                } else if b == b'\r' && self.held == b"." {
                    self.held.push(b);
                } else {
                    self.pending.extend(self.held.drain(..));
                    self.pending.push_back(b);
                }
                continue;
            }
            if self.at_line_start && b == b'.' {
                self.held.push(b);
                self.at_line_start = false;
                continue;
            }
            self.at_line_start = b == b'\n';
            out[filled] = b;
            filled += 1;
        }
        Ok(filled)
    }
}

/// Reads the header block (through the blank line, or all of a header-only message).
fn read_header(input: &mut dyn Read) -> Result<Vec<u8>, (u8, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((EX_TEMPFAIL, format!("cannot read the message: {e}"))),
        }
        if head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n") || head == b"\n" || head == b"\r\n"
        {
            break;
        }
        if head.len() > MAX_HEADER {
            return Err((EX_DATAERR, "message header larger than 1 MiB".into()));
        }
    }
    Ok(head)
}

/// Header fields as (name, raw field text including continuation lines and line end).
fn fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, raw)) = out.last_mut() {
                raw.push_str(line);
            }
            continue;
        }
        let name = line
            .split_once(':')
            .map_or("", |(n, _)| n)
            .trim()
            .to_string();
        out.push((name, line.to_string()));
    }
    out
}

/// Runs `sendmail` with its raw arguments.
pub fn run(config: &Config, argv: &[String]) -> Result<(), Failure> {
    sendmail(config, argv).map_err(|(code, message)| {
        eprintln!("sendmail: {message}");
        Failure::Exit(code)
    })
}

fn sendmail(config: &Config, argv: &[String]) -> Result<(), (u8, String)> {
    let args = parse_args(argv)?;
    let (store, clock) = open_store(config)?;
    let now = clock.unix_seconds();
    let mut input = Input::new(io::stdin().lock(), args.ignore_dots);
    let head = read_header(&mut input)?;
    let fields = fields(&head);
    let has = |name: &str| fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));

    let login = std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or_else(|| "root".to_string());
    let default_domain = config
        .domains
        .first()
        .cloned()
        .unwrap_or_else(|| config.hostname.clone());
    let sender = match args.sender.as_deref() {
        Some("") | Some("<>") => ReversePath::Null,
        Some(s) => {
            let s = s.trim_start_matches('<').trim_end_matches('>');
            let s = if s.contains('@') {
                s.to_string()
            } else {
                format!("{s}@{default_domain}")
            };
            ReversePath::Mailbox(
                parse_mailbox(&s).map_err(|_| usage(format!("{s:?} is not a sender address")))?,
            )
        }
        None => ReversePath::Mailbox(
            parse_mailbox(&format!("{login}@{default_domain}"))
                .map_err(|_| usage("cannot make a sender address; use -f"))?,
        ),
    };

    let mut wanted: Vec<String> = Vec::new();
    for r in &args.recipients {
        wanted.extend(
            r.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    if args.extract {
        for (name, raw) in &fields {
            if ["to", "cc", "bcc"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                let value = raw.split_once(':').map_or("", |(_, v)| v);
                wanted.extend(petrel_core::sieve::header_addresses(value));
            }
        }
    }
    if wanted.is_empty() {
        return Err(usage("no recipients (give addresses or -t)"));
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    for w in wanted {
        let w = w.trim_start_matches('<').trim_end_matches('>');
        let w = if w.contains('@') {
            w.to_string()
        } else {
            format!("{w}@{default_domain}")
        };
        let address: Address =
            parse_mailbox(&w).map_err(|_| usage(format!("{w:?} is not an address")))?;
        if recipients.iter().any(|r| {
            r.address
                .to_string()
                .eq_ignore_ascii_case(&address.to_string())
        }) {
            continue;
        }
        let local = config
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&address.domain.to_string()));
        let mailbox = if local {
            match store.users().lookup_recipient(&address) {
                RecipientOutcome::Local(u) => Some(u),
                RecipientOutcome::Unknown => return Err((EX_NOUSER, format!("no such user {w}"))),
                RecipientOutcome::TempFail => {
                    return Err((EX_TEMPFAIL, "cannot read the user database".into()));
                }
            }
        } else {
            None
        };
        recipients.push(Recipient { address, mailbox });
    }

    let id = format!("M{:X}{:X}", std::process::id(), now);
    // The header as given, Bcc removed, with what a message submitted for sending must have.
    let mut new_head = String::new();
    for (name, raw) in &fields {
        if !name.eq_ignore_ascii_case("bcc") {
            new_head.push_str(raw);
        }
    }
    if !has("from") {
        let from = match (&args.full_name, &sender) {
            (Some(name), ReversePath::Mailbox(a)) => {
                format!("\"{}\" <{a}>", name.replace(['"', '\\', '\r', '\n'], ""))
            }
            (None, ReversePath::Mailbox(a)) => a.to_string(),
            (_, _) => format!("MAILER-DAEMON@{}", config.hostname),
        };
        new_head.push_str(&format!("From: {from}\n"));
    }
    if !has("date") {
        new_head.push_str(&format!("Date: {}\n", rfc5322_date(now)));
    }
    if !has("message-id") {
        new_head.push_str(&format!("Message-ID: <{id}.{login}@{}>\n", config.hostname));
    }
    new_head.push('\n');
    let trace = format!(
        "Received: by {} (Petrel sendmail) id {id}; {}\r\n",
        config.hostname,
        rfc5322_date(now)
    );
    let envelope = Envelope {
        session: id.clone(),
        id: id.clone(),
        sender,
        recipients,
        // A local program is a trusted submitter: its mail is signed like submission's.
        submitted_by: Some(petrel_core::UserId(format!("{login}@localhost"))),
    };
    let receipt = store_message(
        &store,
        config,
        envelope,
        trace.into_bytes(),
        new_head.as_bytes(),
        &mut input,
    )?;
    if let Some(r) = receipt.refused().first() {
        return Err((
            EX_NOPERM,
            format!("rejected by {}: {}", r.address, r.reason),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, (u8, String)> {
        parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_programs_use() {
        let a = args(&[
            "-t",
            "-oi",
            "-fcron@example.com",
            "-F",
            "Cron Daemon",
            "--",
            "-x@y",
        ])
        .unwrap();
        assert!(a.extract && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("cron@example.com"));
        assert_eq!(a.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(a.recipients, ["-x@y"]);
        let b = args(&["-i", "-f", "<>", "a@b", "c@d", "-odi", "-oem", "-bm", "-v"]).unwrap();
        assert_eq!(b.recipients, ["a@b", "c@d"]);
        assert_eq!(b.sender.as_deref(), Some("<>"));
        assert_eq!(args(&["-bs"]).unwrap_err().0, EX_USAGE);
        assert_eq!(args(&["-Z"]).unwrap_err().0, EX_USAGE);
        assert_eq!(args(&["-f"]).unwrap_err().0, EX_USAGE);
    }

    fn read_all(input: &[u8], ignore_dots: bool) -> Vec<u8> {
        let mut r = Input::new(input, ignore_dots);
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn a_lone_dot_ends_the_message_unless_i() {
        assert_eq!(read_all(b"a\n.b\n..\n.\nafter\n", false), b"a\n.b\n..\n");
        assert_eq!(read_all(b"a\r\n.\r\nafter\n", false), b"a\r\n");
        assert_eq!(read_all(b"a\n.\nafter\n", true), b"a\n.\nafter\n");
        assert_eq!(read_all(b"x\n.", false), b"x\n.");
        assert_eq!(read_all(b".x\n", false), b".x\n");
    }
}
