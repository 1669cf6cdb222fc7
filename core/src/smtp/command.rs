//! SMTP command lines (RFC 5321 4.1 and the extensions Petrel offers), parsed from one line.

use super::address::{Address, PathError, ReversePath, parse_path};

/// MAIL FROM `BODY=` values (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    /// 7BIT (the default).
    SevenBit,
    /// 8BITMIME.
    EightBitMime,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `LHLO domain` (LMTP).
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// SIZE= declared size.
        size: Option<u64>,
        /// BODY= type.
        body: BodyType,
        /// SMTPUTF8 given.
        smtputf8: bool,
    },
    /// `RCPT TO:<path>`.
    Rcpt(Address),
    /// `RCPT TO:<Postmaster>` without a domain (RFC 5321 4.1.1.3: always accepted).
    RcptPostmaster,
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// Last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy,
    /// `EXPN`.
    Expn,
    /// `HELP`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// Mechanism name, uppercased.
        mechanism: String,
        /// The initial response (still base64), if given.
        initial: Option<String>,
    },
}

/// Why a command line was refused, as the reply to send (RFC 5321 4.2, RFC 3463 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandError {
    /// Reply code.
    pub code: u16,
    /// Enhanced status code.
    pub status: &'static str,
    /// Human text.
    pub text: &'static str,
}

const fn err(code: u16, status: &'static str, text: &'static str) -> CommandError {
    CommandError { code, status, text }
}

/// Unknown verb.
pub const UNRECOGNIZED: CommandError = err(500, "5.5.2", "Error: command not recognized");
const NOT_UTF8: CommandError = err(500, "5.5.2", "Error: invalid characters in command");
const MAIL_SYNTAX: CommandError = err(501, "5.5.4", "Syntax: MAIL FROM:<address>");
const RCPT_SYNTAX: CommandError = err(501, "5.5.4", "Syntax: RCPT TO:<address>");
const BDAT_SYNTAX: CommandError = err(501, "5.5.4", "Syntax: BDAT size [LAST]");
const EHLO_SYNTAX: CommandError = err(501, "5.5.4", "Syntax: EHLO hostname");
const NO_ARGS: CommandError = err(501, "5.5.4", "Syntax: no parameters allowed");
const AUTH_SYNTAX: CommandError = err(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
const BAD_ADDRESS: CommandError = err(501, "5.1.3", "Bad address syntax");
const NEEDS_UTF8: CommandError = err(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
const ADDRESS_TOO_LONG: CommandError = err(501, "5.1.3", "Address too long");
const BAD_PARAM: CommandError = err(555, "5.5.4", "Unsupported or malformed parameter");
const BINARY_UNSUPPORTED: CommandError = err(504, "5.5.4", "BODY=BINARYMIME is not supported");

/// Parses one command line, without its line ending. `utf8_rcpt` says whether the transaction
/// announced SMTPUTF8 (non-ASCII in RCPT TO is allowed only then).
pub fn parse(line: &[u8], utf8_rcpt: bool) -> Result<Command, CommandError> {
    if line.contains(&0) {
        return Err(NOT_UTF8);
    }
    let line = std::str::from_utf8(line).map_err(|_| NOT_UTF8)?;
    let (verb, args) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_end_matches(' ')),
        None => (line, ""),
    };
    if verb.len() > 8 {
        return Err(UNRECOGNIZED);
    }
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(NO_ARGS)
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" | "LHLO" => {
            let name = helo_name(args).ok_or(EHLO_SYNTAX)?;
            Ok(match verb.as_str() {
                "EHLO" => Command::Ehlo(name),
                "HELO" => Command::Helo(name),
                _ => Command::Lhlo(name),
            })
        }
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args, utf8_rcpt),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(Command::Rset),
        // NOOP and HELP may carry an argument, which is ignored (RFC 5321 4.1.1.9, 4.1.1.8).
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut parts = args.split(' ').filter(|p| !p.is_empty());
            let mechanism = parts.next().ok_or(AUTH_SYNTAX)?.to_ascii_uppercase();
            let initial = parts.next().map(str::to_string);
            if parts.next().is_some() {
                return Err(AUTH_SYNTAX);
            }
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(UNRECOGNIZED),
    }
}

/// The EHLO/HELO argument: a domain or address literal. It goes into the Received header, so
/// characters that would break that header's structure are refused.
fn helo_name(args: &str) -> Option<String> {
    let name = args.split(' ').next().unwrap_or("");
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| {
            (c.is_ascii_graphic() && !"()<>;,\"\\@".contains(c))
                || (!c.is_ascii() && !c.is_control())
        });
    ok.then(|| name.to_string())
}

fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &args[keyword.len()..])
}

fn path_error(e: PathError, syntax: CommandError) -> CommandError {
    match e {
        PathError::Syntax => syntax,
        PathError::NeedsSmtpUtf8 => NEEDS_UTF8,
        PathError::TooLong => ADDRESS_TOO_LONG,
    }
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    let rest = strip_keyword(args, "FROM:").ok_or(MAIL_SYNTAX)?;
    // SMTPUTF8 is a parameter after the path: allow UTF-8 in the path if it is present.
    let smtputf8 = rest
        .split(' ')
        .skip(1)
        .any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
    let (from, params) = parse_path(rest, smtputf8).map_err(|e| path_error(e, MAIL_SYNTAX))?;
    let mut size = None;
    let mut body = BodyType::SevenBit;
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.find('=') {
            Some(i) => (&param[..i], Some(&param[i + 1..])),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v))
                if !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit()) =>
            {
                size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => body = BodyType::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                body = BodyType::EightBitMime
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("BINARYMIME") => {
                return Err(BINARY_UNSUPPORTED);
            }
            ("SMTPUTF8", None) => {}
            // RFC 4954 5: AUTH= is accepted and, from an untrusted client, ignored.
            ("AUTH", Some(_)) => {}
            _ => return Err(BAD_PARAM),
        }
    }
    let from = match from {
        None => ReversePath::Null,
        Some(a) => ReversePath::Mailbox(a),
    };
    Ok(Command::Mail {
        from,
        size,
        body,
        smtputf8,
    })
}

fn parse_rcpt(args: &str, utf8: bool) -> Result<Command, CommandError> {
    let rest = strip_keyword(args, "TO:").ok_or(RCPT_SYNTAX)?;
    if rest
        .trim_start_matches(' ')
        .eq_ignore_ascii_case("<postmaster>")
    {
        return Ok(Command::RcptPostmaster);
    }
    let (to, params) = parse_path(rest, utf8).map_err(|e| path_error(e, RCPT_SYNTAX))?;
    if params.split(' ').any(|p| !p.is_empty()) {
        return Err(BAD_PARAM);
    }
    to.map(Command::Rcpt).ok_or(BAD_ADDRESS)
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    let mut parts = args.split(' ');
    let size = parts.next().unwrap_or("");
    if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BDAT_SYNTAX);
    }
    let size = size.parse().map_err(|_| BDAT_SYNTAX)?;
    let last = match parts.next() {
        None => false,
        Some(l) if l.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(BDAT_SYNTAX),
    };
    if parts.next().is_some() {
        return Err(BDAT_SYNTAX);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_commands() {
        assert_eq!(
            parse(b"ehlo client.example", false),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse(b"EHLO [127.0.0.1]", false),
            Ok(Command::Ehlo("[127.0.0.1]".into()))
        );
        assert!(matches!(
            parse(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME", false),
            Ok(Command::Mail {
                size: Some(100),
                body: BodyType::EightBitMime,
                ..
            })
        ));
        assert!(matches!(
            parse(b"mail from: <>", false),
            Ok(Command::Mail {
                from: ReversePath::Null,
                ..
            })
        ));
        assert_eq!(
            parse(b"BDAT 10 LAST", false),
            Ok(Command::Bdat {
                size: 10,
                last: true
            })
        );
        assert_eq!(
            parse(b"bdat 0", false),
            Ok(Command::Bdat {
                size: 0,
                last: false
            })
        );
        assert_eq!(
            parse(b"AUTH plain dGVzdA==", false),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("dGVzdA==".into())
            })
        );
    }

    #[test]
    fn refuses_bad_commands() {
        assert_eq!(parse(b"FOO", false).unwrap_err().code, 500);
        assert_eq!(parse(b"MAIL TO:<a@b>", false).unwrap_err().code, 501);
        assert_eq!(
            parse(b"MAIL FROM:<a@b> FOO=1", false).unwrap_err().code,
            555
        );
        assert_eq!(parse(b"RCPT TO:<>", false).unwrap_err().code, 501);
        assert_eq!(parse(b"DATA x", false).unwrap_err().code, 501);
        assert_eq!(parse(b"BDAT x", false).unwrap_err().code, 501);
        assert_eq!(parse(b"EHLO", false).unwrap_err().code, 501);
        assert_eq!(parse(b"EHLO a(b)", false).unwrap_err().code, 501);
        assert_eq!(parse(b"NO\0OP", false).unwrap_err().code, 500);
        assert_eq!(parse(b"RCPT TO:<\xc3\xbc@x>", false).unwrap_err().code, 553);
        assert!(parse(b"RCPT TO:<\xc3\xbc@x>", true).is_ok());
        assert!(parse(b"MAIL FROM:<\xc3\xbc@x> SMTPUTF8", false).is_ok());
        assert_eq!(
            parse(b"RCPT TO:<PostMaster>", false),
            Ok(Command::RcptPostmaster)
        );
    }
}
