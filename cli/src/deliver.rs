//! `petrel deliver --to ADDRESS [--from SENDER]`: the local delivery agent. One message on stdin
//! goes into the recipient's INBOX through the same store path as SMTP; exit 0 only once it is
//! durable, with the exit codes sendmail-compatible MTAs expect (sysexits.h).

use crate::config::Config;
use crate::{Failure, SystemClock};
use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{
    Completion, Effect, Envelope, Receipt, Recipient, RecipientOutcome, Refusals, WallClock,
    rfc5322_date,
};
use petrel_store::{RealFs, Store, StoreConfig};
use std::io::Read;
use std::sync::Arc;

/// sysexits.h: the message is malformed or too large; bounce it.
pub(crate) const EX_DATAERR: u8 = 65;
/// sysexits.h: no such user; bounce it.
pub(crate) const EX_NOUSER: u8 = 67;
/// sysexits.h: permission denied (a Sieve `reject`); the MTA bounces with the reason.
const EX_NOPERM: u8 = 77;
/// sysexits.h: try again later.
pub(crate) const EX_TEMPFAIL: u8 = 75;

/// Bytes read from stdin at a time.
const CHUNK: usize = 64 * 1024;

/// Converts line ends to CRLF as the message streams past, and drops an mbox `From ` line at
/// the very start (some MTAs pass one to their delivery agents).
#[derive(Default)]
struct Normaliser {
    prev_cr: bool,
    /// The first bytes, held until it is known whether they begin a `From ` line.
    head: Vec<u8>,
    decided: bool,
    skipping_from_line: bool,
}

impl Normaliser {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if !self.decided {
            self.head.extend_from_slice(input);
            if self.head.len() < 5 {
                return;
            }
            self.decide(out);
            return;
        }
        self.copy(input, out);
    }

    /// Call at the end of input.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.decided {
            self.decide(out);
        }
    }

    fn decide(&mut self, out: &mut Vec<u8>) {
        self.decided = true;
        self.skipping_from_line = self.head.starts_with(b"From ");
        let head = std::mem::take(&mut self.head);
        self.copy(&head, out);
    }

    fn copy(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.skipping_from_line {
                self.skipping_from_line = b != b'\n';
                continue;
            }
            if b == b'\n' && !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }
}

/// Delivers stdin to `to`; a failure carries the sysexits code and is already reported.
pub fn run(config: &Config, to: &str, from: Option<&str>) -> Result<(), Failure> {
    deliver(config, to, from).map_err(|(code, message)| {
        eprintln!("petrel: deliver: {message}");
        Failure::Exit(code)
    })
}

/// Opens the store beside a server that may be running, as `deliver` and `sendmail` need it.
pub(crate) fn open_store(config: &Config) -> Result<(Store, Arc<dyn WallClock>), (u8, String)> {
    let clock: Arc<dyn WallClock> = Arc::new(SystemClock);
    let store_config = StoreConfig {
        data_dir: config.data_dir.clone(),
        hostname: config.hostname.clone(),
        clock: clock.clone(),
        pid: std::process::id(),
        seed: u64::from(std::process::id()) ^ clock.unix_seconds() as u64,
    };
    let store = Store::attach(Arc::new(RealFs), store_config)
        .map_err(|e| (EX_TEMPFAIL, format!("cannot open the data directory: {e}")))?
        .with_mbox(config.mbox.clone())
        .with_dkim_headers(config.dkim_sign_headers.clone());
    Ok((store, clock))
}

fn deliver(config: &Config, to: &str, from: Option<&str>) -> Result<(), (u8, String)> {
    let (store, clock) = open_store(config)?;
    let address =
        parse_mailbox(to).map_err(|_| (EX_NOUSER, format!("{to:?} is not an address")))?;
    let user = match store.users().lookup_recipient(&address) {
        RecipientOutcome::Local(user) => user,
        RecipientOutcome::Unknown => return Err((EX_NOUSER, format!("no such user {to}"))),
        RecipientOutcome::TempFail => {
            return Err((EX_TEMPFAIL, "cannot read the user database".into()));
        }
    };
    let sender = match from {
        None | Some("") | Some("<>") => ReversePath::Null,
        Some(s) => ReversePath::Mailbox(
            parse_mailbox(s.trim_start_matches('<').trim_end_matches('>'))
                .map_err(|_| (EX_DATAERR, format!("{s:?} is not a sender address")))?,
        ),
    };
    let id = format!("D{:X}{:X}", std::process::id(), clock.unix_seconds());
    let trace = format!(
        "Received: by {} (Petrel) via deliver id {id}\r\n\tfor <{address}>; {}\r\n",
        config.hostname,
        rfc5322_date(clock.unix_seconds())
    );
    let envelope = Envelope {
        session: id.clone(),
        id,
        sender,
        recipients: vec![Recipient {
            address,
            mailbox: Some(user),
        }],
        submitted_by: None,
    };
    let receipt = store_message(
        &store,
        config,
        envelope,
        trace.into_bytes(),
        &[],
        &mut std::io::stdin().lock(),
    )?;
    match receipt.refused().first() {
        // As Dovecot's LDA with -e: the MTA bounces the message with this reason.
        Some(refusal) => Err((EX_NOPERM, format!("rejected: {}", refusal.reason))),
        None => Ok(()),
    }
}

/// Streams `head` then `input` (line ends made CRLF, a leading mbox `From ` line dropped) into
/// the store for `envelope` and commits it; returns the receipt once it is durable.
pub(crate) fn store_message(
    store: &Store,
    config: &Config,
    envelope: Envelope,
    trace: Vec<u8>,
    head: &[u8],
    input: &mut dyn Read,
) -> Result<Receipt, (u8, String)> {
    let temp = |what: &str, e: &dyn std::fmt::Display| (EX_TEMPFAIL, format!("{what}: {e}"));
    let tx = match store.execute(Effect::BeginMessage { envelope, trace }) {
        Completion::Began(tx) => tx,
        other => return Err((EX_TEMPFAIL, format!("cannot start the delivery: {other:?}"))),
    };
    let abort = |store: &Store| {
        let _ = store.execute(Effect::Abort { tx });
    };
    let mut normaliser = Normaliser::default();
    let (mut buf, mut size) = (vec![0u8; CHUNK], 0u64);
    let mut pending_head = Some(head);
    loop {
        let chunk: &[u8] = match pending_head.take() {
            Some(h) if !h.is_empty() => h,
            _ => {
                let n = match input.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        abort(store);
                        return Err(temp("cannot read the message", &e));
                    }
                };
                &buf[..n]
            }
        };
        let mut bytes = Vec::with_capacity(chunk.len() + chunk.len() / 32 + 8);
        let at_end = chunk.is_empty();
        if at_end {
            normaliser.finish(&mut bytes);
        } else {
            normaliser.feed(chunk, &mut bytes);
        }
        size += bytes.len() as u64;
        if size > config.max_message_size {
            abort(store);
            return Err((
                EX_DATAERR,
                format!(
                    "message larger than limits.max_message_size ({})",
                    config.max_message_size
                ),
            ));
        }
        if !bytes.is_empty()
            && !matches!(
                store.execute(Effect::AppendChunk { tx, bytes }),
                Completion::Appended
            )
        {
            abort(store);
            return Err((EX_TEMPFAIL, "cannot write the message".into()));
        }
        if at_end {
            break;
        }
    }
    match store.execute(Effect::Commit {
        tx,
        prepend: Vec::new(),
        refusals: Refusals::AllOrNotice,
        junk: false,
        edits: Vec::new(),
    }) {
        Completion::Durable(receipt) => Ok(receipt),
        other => Err((EX_TEMPFAIL, format!("delivery failed: {other:?}"))),
    }
}
