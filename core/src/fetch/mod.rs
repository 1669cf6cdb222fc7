//! Fetching mail from remote POP3 and IMAP accounts into a local user's mailbox (issue 11).
//!
//! [`Pop3Fetch`] and [`ImapFetch`] are client sessions with the same [`crate::Session`] shape as
//! every server session, driven by the same [`crate::Pump`]. The runtime connects the socket
//! (and does the TLS handshake for `pop3s://` and `imaps://`); the session does the rest: the
//! greeting, capabilities, STLS/STARTTLS when offered (required unless the remote is on
//! loopback), login, listing what is new, and each new message:
//!
//! 1. [`FetchRequest::Pending`]: the account's journal durably names the message about to be
//!    delivered (before a byte of it is read);
//! 2. the message streams from the remote in bounded chunks into the store by the same
//!    `BeginMessage`/`AppendChunk`/`Commit` requests as SMTP mail for a local recipient (so Sieve
//!    runs and the Maildir write is durable before the commit is answered), with a `Received:`
//!    field naming the remote and an `X-Petrel-Fetch:` marker naming the account and the message;
//! 3. [`FetchRequest::Delivered`]: the journal records it as fetched;
//! 4. only then, unless the account keeps mail on the remote, the remote is told to delete it
//!    (POP3 `DELE`, applied at `QUIT`; IMAP `\Deleted` and `EXPUNGE` at the end of the pass).
//!
//! Crash safety: a kill at any instant neither loses nor duplicates a message. Before step 1
//! nothing happened. Between 1 and 3 the journal has a pending entry without its delivery; when
//! the account is loaded next, the store looks for the marker of that entry in the user's
//! Maildir files written since the entry (see `petrel_store::fetch_accounts`): found, the
//! delivery is recorded; not found, the message was never durable here and is fetched again.
//! After 3 the message is never fetched again, and the deletion on the remote (4) is repeated
//! until the remote forgets the message. Nothing is ever deleted on the remote before step 3.

mod imap;
mod pop3;

pub use imap::ImapFetch;
pub use pop3::Pop3Fetch;

use crate::clock::{WallClock, rfc5322_date};
use crate::effect::{Completion, Effect, Envelope, Recipient, Refusals, Secret, TxId, UserId};
use crate::smtp::address::{Address, ReversePath, parse_mailbox};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Most message bytes handed to the store in one `AppendChunk`.
pub const CHUNK: usize = 32 * 1024;

/// Longest response line accepted from a remote (CRLF included); a longer one ends the session
/// with an error. IMAP `FETCH` listings put one message on a line, so this is plenty.
pub const MAX_LINE: usize = 64 * 1024;

/// Most messages one listing of a remote may name; the rest wait for the next pass (bounds
/// the memory a remote can make a session hold).
pub const MAX_MESSAGES: usize = 1_000_000;

/// The first bytes of a message looked at for `Return-Path`, `Message-ID` and `Date`.
const HEAD_MAX: usize = 16 * 1024;

/// Which protocol a remote account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// POP3 (RFC 1939), UIDL-based.
    Pop3,
    /// IMAP4rev1/IMAP4rev2, UIDVALIDITY/UID-based.
    Imap,
}

impl Protocol {
    /// `POP3` or `IMAP`, as written in `Received:` fields.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "POP3",
            Protocol::Imap => "IMAP",
        }
    }
}

/// How a remote account's connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`imaps://`, `pop3s://`): the runtime does the handshake before
    /// the session starts.
    Implicit,
    /// STARTTLS/STLS when offered. `required`: a remote that does not offer it, or refuses it,
    /// is an error (the password never travels in plaintext); false only for loopback remotes.
    StartTls {
        /// Refuse to go on without TLS.
        required: bool,
    },
}

/// One remote account, as the session needs it.
#[derive(Debug, Clone)]
pub struct FetchAccount {
    /// The local user the mail is for.
    pub user: UserId,
    /// The account's number among the user's accounts (`petrel fetch list`).
    pub id: u32,
    /// A value fixed when the account was added; the delivery marker carries it, so a new
    /// account that reuses a number never matches an old account's messages.
    pub token: String,
    /// POP3 or IMAP.
    pub protocol: Protocol,
    /// TLS mode.
    pub security: Security,
    /// The remote host name, for `Received:` and logs.
    pub host: String,
    /// The login name at the remote.
    pub login: String,
    /// The password at the remote.
    pub password: Secret<String>,
    /// IMAP folder to fetch (`INBOX` by default); ignored for POP3.
    pub folder: String,
    /// Leave fetched mail on the remote (`--keep`); otherwise it is deleted once durable here.
    pub keep: bool,
}

/// Settings shared by the fetch sessions of a process.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Our host name, for `Received:`.
    pub hostname: String,
    /// Calendar time for `Received:`.
    pub clock: Arc<dyn WallClock>,
    /// How long the remote may take to answer any command (or to send the next part of a
    /// message).
    pub command_timeout: Duration,
    /// Messages larger than this are left on the remote and reported.
    pub max_message_size: u64,
    /// `Some(period)`: after the first pass an IMAP session whose server offers IDLE stays
    /// connected in IDLE, renewed every `period` (29 minutes at most, RFC 2177), and fetches
    /// what arrives. `None`: one pass, then LOGOUT (`petrel fetch run`, or POP3).
    pub idle: Option<Duration>,
    /// Content scanners (`[filter]`), applied as to inbound SMTP mail. A message a scanner
    /// refuses permanently (a virus) is not stored and is left on the remote, never fetched
    /// again, and named in the pass's notes; a temporary refusal (a scanner down under
    /// `on_failure = "tempfail"`) ends the pass, to be retried.
    pub filter: Option<Arc<crate::filter::scan::FilterConfig>>,
}

impl FetchConfig {
    /// Defaults: 5-minute command timeout, 50 MiB messages, no IDLE.
    pub fn new(hostname: &str, clock: Arc<dyn WallClock>) -> Self {
        FetchConfig {
            hostname: hostname.to_string(),
            clock,
            command_timeout: Duration::from_secs(300),
            max_message_size: 50 * 1024 * 1024,
            idle: None,
            filter: None,
        }
    }
}

/// What a fetch session asks of the account's durable state ([`Effect::Fetch`]). Every
/// request is answered [`FetchAnswer::Done`] once it is durable, except `Load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchRequest {
    /// Read the account's state, first settling a delivery a crash left pending. Answer:
    /// [`FetchAnswer::State`].
    Load,
    /// The message `key` is about to be delivered (journal entry before any byte is read).
    Pending {
        /// `pop3:UIDL` or `imap:UIDVALIDITY:UID`.
        key: String,
    },
    /// The message `key` is durable here: never fetch it again.
    Delivered {
        /// As in `Pending`.
        key: String,
        /// Its size in octets, as received.
        size: u64,
        /// [`message_digest`] of its header, to recognise it after a UIDVALIDITY change.
        digest: String,
        /// A content scanner refused it: it is not stored, and must stay on the remote.
        left_on_remote: bool,
    },
    /// The IMAP folder's UIDVALIDITY is now `new` (it was `old`, if known).
    UidValidity {
        /// The value recorded before, if any.
        old: Option<u32>,
        /// The value the remote announced.
        new: u32,
    },
    /// The POP3 remote lists exactly these keys: forget fetched keys it no longer has.
    Retain {
        /// Every key the remote listed.
        keys: Vec<String>,
    },
    /// The session waits in IDLE: other fetchers of the account (`petrel fetch run`) may have
    /// it meanwhile. Sent only by sessions of the daemon ([`FetchConfig::idle`]).
    Release,
    /// The session is about to start a pass after IDLE: answered once no other fetcher has the
    /// account (the answer may take as long as another fetcher's pass).
    Acquire,
    /// `done` of `total` new messages fetched in this pass (for progress output).
    Progress {
        /// Fetched so far.
        done: u64,
        /// New messages this pass found.
        total: u64,
    },
    /// The pass ended: how many messages it fetched and, on failure, why.
    Finished {
        /// Messages delivered in this session.
        fetched: u64,
        /// `None` on success; one line for `petrel fetch list` otherwise.
        error: Option<String>,
        /// What the user should know although the pass succeeded (messages too large, or
        /// refused by a content scanner, and left on the remote).
        notes: Vec<String>,
    },
}

/// An account's durable state, as [`FetchRequest::Load`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchState {
    /// The IMAP folder's UIDVALIDITY as last seen.
    pub uidvalidity: Option<u32>,
    /// Every IMAP UID at or below this (under `uidvalidity`) has been fetched.
    pub highest_uid: u32,
    /// POP3 UIDLs fetched (`pop3:` keys without the prefix).
    pub uidls: BTreeSet<String>,
    /// [`message_digest`]s of every message fetched from this account.
    pub digests: BTreeSet<String>,
    /// Keys of messages a content scanner refused: never deleted on the remote.
    pub left_on_remote: BTreeSet<String>,
}

/// The answer to an [`Effect::Fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    /// Answer to `Load`.
    State(FetchState),
    /// The request is done (and durable).
    Done,
}

/// The wait before the next try of an account after `failures` failed passes in a row:
/// `first`, doubling with each failure, at most `max`. Both runtimes' runners use it.
pub fn backoff(first: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(max)
}

/// The key of a POP3 message in the account's journal.
pub fn pop3_key(uidl: &str) -> String {
    format!("pop3:{uidl}")
}

/// The key of an IMAP message in the account's journal.
pub fn imap_key(uidvalidity: u32, uid: u32) -> String {
    format!("imap:{uidvalidity}:{uid}")
}

/// The header field that marks a delivered message with its account and key; the store looks
/// for it after a crash.
pub const MARKER_FIELD: &str = "X-Petrel-Fetch";

/// The marker line for `token` and `key`, CRLF-terminated.
pub fn marker_line(token: &str, key: &str) -> String {
    format!("{MARKER_FIELD}: {token} {key}\r\n")
}

/// A digest identifying a message independently of the remote's numbering: FNV-1a over the
/// unfolded, trimmed `Message-ID` and `Date` values and the size. Used only after a
/// UIDVALIDITY change, to skip messages fetched before it.
pub fn message_digest(message_id: &str, date: &str, size: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in message_id
        .bytes()
        .chain([0u8])
        .chain(date.bytes())
        .chain([0u8])
        .chain(size.to_string().bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The values of the `Message-ID`, `Date` and (first line only) `Return-Path` fields of a
/// header block, or as much of one as `head` holds.
pub fn header_fields(head: &[u8]) -> (String, String, Option<String>) {
    let end = find(head, b"\r\n\r\n")
        .or_else(|| find(head, b"\n\n"))
        .unwrap_or(head.len());
    let text = String::from_utf8_lossy(&head[..end]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let return_path = fields
        .first()
        .filter(|(k, _)| k == "return-path")
        .map(|(_, v)| v.clone());
    (get("message-id"), get("date"), return_path)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Which store request a [`Delivery`] waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryStep {
    Begin,
    Scan,
    Append,
    Commit,
    Abort,
}

/// How a message that was not simply stored ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A content scanner refused it for good: not stored, left on the remote.
    Refused(String),
    /// A scanner refused it for now: the pass stops and is retried.
    TempRefused(String),
    /// A scanner (a milter) asked to drop it.
    Discarded,
}

/// One message on its way from the remote into the store: the bytes since the last chunk, and
/// where the transaction is.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub key: String,
    chunk: Vec<u8>,
    /// The first bytes, for the header fields.
    head: Vec<u8>,
    tx: Option<TxId>,
    pub size: u64,
    /// The remote sent the last byte.
    pub ended: bool,
    /// Bytes of a leading `Return-Path:` field still to drop (the store writes its own).
    skipping_return_path: bool,
    sender: Option<ReversePath>,
    message_id: String,
    date: String,
    scan: Option<crate::filter::scan::Scan>,
    scan_ended: bool,
    /// Set when the message was not stored (see [`Verdict`]).
    pub verdict: Option<Verdict>,
}

impl Delivery {
    pub fn new(key: String) -> Self {
        Delivery {
            key,
            chunk: Vec::with_capacity(CHUNK),
            head: Vec::new(),
            tx: None,
            size: 0,
            ended: false,
            skipping_return_path: false,
            sender: None,
            message_id: String::new(),
            date: String::new(),
            scan: None,
            scan_ended: false,
            verdict: None,
        }
    }

    /// Takes message bytes; true when the chunk is full and must go to the store first.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        self.size += bytes.len() as u64;
        if self.tx.is_none() && self.head.len() < HEAD_MAX {
            let take = bytes.len().min(HEAD_MAX - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.len() >= CHUNK
    }

    /// Room left in the current chunk.
    pub fn room(&self) -> usize {
        CHUNK.saturating_sub(self.chunk.len())
    }

    pub fn full(&self) -> bool {
        self.chunk.len() >= CHUNK
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.chunk.len() + self.head.len()
    }

    /// The next store request: Begin (first), Append (when bytes wait), Commit (at the end), or
    /// `None` when the session must read more from the remote.
    pub fn next_effect(
        &mut self,
        now: std::time::Instant,
        account: &FetchAccount,
        config: &FetchConfig,
        via: &str,
    ) -> Option<(DeliveryStep, Effect)> {
        if self.tx.is_none() {
            if !self.ended && !self.full() {
                return None;
            }
            let (message_id, date, return_path) = header_fields(&self.head);
            (self.message_id, self.date) = (message_id, date);
            self.head = Vec::new();
            if let Some(rp) = &return_path {
                let rp = rp.trim().trim_start_matches('<').trim_end_matches('>');
                self.sender = Some(match parse_mailbox(rp) {
                    Ok(a) => ReversePath::Mailbox(a),
                    Err(_) => ReversePath::Null,
                });
                self.skipping_return_path = true;
                self.drop_return_path();
            }
            let begin = self.begin(account, config, via);
            if let (Some(filter), Effect::BeginMessage { envelope, .. }) = (&config.filter, &begin)
            {
                let ctx = crate::filter::ScanContext {
                    hostname: config.hostname.clone(),
                    queue_id: envelope.id.clone(),
                    client_ip: account.host.clone(),
                    client_port: 0,
                    client_name: Some(account.host.clone()),
                    helo: account.host.clone(),
                    sender: envelope.sender.to_string(),
                    recipients: vec![account.user.0.clone()],
                    authenticated: None,
                    tls: account.security == Security::Implicit,
                };
                self.scan = crate::filter::scan::Scan::new(filter, crate::smtp::Role::Inbound, ctx);
            }
            return Some((DeliveryStep::Begin, begin));
        }
        let tx = self.tx?;
        if let Some(scan) = self.scan.as_mut()
            && let Some((conn, op)) = scan.next_op(now)
        {
            return Some((DeliveryStep::Scan, Effect::Scan { conn, op }));
        }
        if !self.chunk.is_empty() && (self.full() || self.ended) {
            if let Some(scan) = self.scan.as_mut() {
                if !scan.ready_for_body() {
                    return None;
                }
                scan.body(&self.chunk);
            }
            let bytes = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
            return Some((DeliveryStep::Append, Effect::AppendChunk { tx, bytes }));
        }
        if !self.ended {
            return None;
        }
        let (edits, junk) = match self.scan.as_mut() {
            None => (Vec::new(), false),
            Some(scan) => {
                if !self.scan_ended {
                    self.scan_ended = true;
                    scan.end();
                    if let Some((conn, op)) = scan.next_op(now) {
                        return Some((DeliveryStep::Scan, Effect::Scan { conn, op }));
                    }
                }
                if !scan.is_done() {
                    return None;
                }
                match scan.outcome() {
                    crate::filter::scan::Outcome::Deliver { edits, junk } => (edits, junk),
                    crate::filter::scan::Outcome::Refuse { code, status, text } => {
                        let why = format!("{code} {status} {text}");
                        self.verdict = Some(if code >= 500 {
                            Verdict::Refused(why)
                        } else {
                            Verdict::TempRefused(why)
                        });
                        return Some((DeliveryStep::Abort, Effect::Abort { tx }));
                    }
                    crate::filter::scan::Outcome::Discard => {
                        self.verdict = Some(Verdict::Discarded);
                        return Some((DeliveryStep::Abort, Effect::Abort { tx }));
                    }
                }
            }
        };
        Some((
            DeliveryStep::Commit,
            Effect::Commit {
                tx,
                prepend: Vec::new(),
                refusals: Refusals::AllOrNotice,
                junk,
                edits,
            },
        ))
    }

    /// Removes a leading `Return-Path:` field (with continuation lines) from the chunk.
    fn drop_return_path(&mut self) {
        if !self.skipping_return_path {
            return;
        }
        let mut end = 0;
        loop {
            match self.chunk[end..].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    end += i + 1;
                    if !matches!(self.chunk.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    end = 0;
                    break;
                }
            }
        }
        self.chunk.drain(..end);
        self.skipping_return_path = false;
    }

    fn begin(&self, account: &FetchAccount, config: &FetchConfig, via: &str) -> Effect {
        let address: Address = parse_mailbox(&account.user.0)
            .unwrap_or_else(|_| parse_mailbox("postmaster@localhost").expect("valid address"));
        let id = format!("F{}-{}", account.id, self.key.replace([':', ' '], "."));
        let trace = format!(
            "Received: from {} by {} (Petrel) with {via}\r\n\tid {id} for <{}>; {}\r\n{}",
            account.host,
            config.hostname,
            account.user.0,
            rfc5322_date(config.clock.unix_seconds()),
            marker_line(&account.token, &self.key)
        );
        Effect::BeginMessage {
            envelope: Envelope {
                session: id.clone(),
                id,
                sender: self.sender.clone().unwrap_or(ReversePath::Null),
                recipients: vec![Recipient {
                    address,
                    mailbox: Some(account.user.clone()),
                }],
                submitted_by: None,
            },
            trace: trace.into_bytes(),
        }
    }

    /// Takes the answer to the request of `step`: `Ok(true)` once the message is finished
    /// (durable here, or not to be stored, see [`Delivery::verdict`]), `Ok(false)` to go on,
    /// `Err` with a reason on failure.
    pub fn answer(
        &mut self,
        now: std::time::Instant,
        step: DeliveryStep,
        completion: Completion,
    ) -> Result<bool, String> {
        match (step, completion) {
            (DeliveryStep::Begin, Completion::Began(tx)) => {
                self.tx = Some(tx);
                Ok(false)
            }
            (DeliveryStep::Scan, c) => {
                if let Some(scan) = self.scan.as_mut() {
                    scan.handle_completion(now, c);
                }
                Ok(false)
            }
            (DeliveryStep::Append, Completion::Appended) => Ok(false),
            (DeliveryStep::Commit, Completion::Durable(_)) => {
                self.tx = None;
                Ok(true)
            }
            (DeliveryStep::Abort, _) => {
                self.tx = None;
                match &self.verdict {
                    Some(Verdict::TempRefused(why)) => Err(format!(
                        "a content scanner refused a message for now: {why}"
                    )),
                    _ => Ok(true),
                }
            }
            (DeliveryStep::Commit, other) => {
                // The store cleaned up after a failed commit.
                self.tx = None;
                Err(format!("local delivery failed: {}", describe(&other)))
            }
            (_, other) => Err(format!("local delivery failed: {}", describe(&other))),
        }
    }

    /// The transaction to abort when the session gives up mid-message.
    pub fn take_tx(&mut self) -> Option<TxId> {
        self.tx.take()
    }

    /// The Delivered request, once committed.
    pub fn delivered(&self) -> FetchRequest {
        FetchRequest::Delivered {
            key: self.key.clone(),
            size: self.size,
            digest: message_digest(&self.message_id, &self.date, self.size),
            left_on_remote: matches!(self.verdict, Some(Verdict::Refused(_))),
        }
    }
}

/// A completion as one line of text for an error message.
pub(crate) fn describe(c: &Completion) -> String {
    match c {
        Completion::Failed(e) => e.message.clone(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// A bounded line reader for server responses: `take` returns a complete line (CRLF or LF
/// stripped) and how many input bytes it consumed.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    buf: Vec<u8>,
}

/// What [`Lines::take`] found.
pub(crate) enum LineRead {
    /// A complete line (without its line end); and the bytes consumed.
    Line(Vec<u8>, usize),
    /// Everything was buffered; no line end yet.
    Partial(usize),
    /// The line is longer than [`MAX_LINE`].
    TooLong,
}

impl Lines {
    pub fn take(&mut self, input: &[u8]) -> LineRead {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if self.buf.len() + i + 1 > MAX_LINE {
                    return LineRead::TooLong;
                }
                self.buf.extend_from_slice(&input[..i]);
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                LineRead::Line(line, i + 1)
            }
            None => {
                if self.buf.len() + input.len() > MAX_LINE {
                    return LineRead::TooLong;
                }
                self.buf.extend_from_slice(input);
                LineRead::Partial(input.len())
            }
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }
}

/// The credentials for SASL PLAIN (RFC 4616), base64: no authorization identity.
pub(crate) fn sasl_plain(login: &str, password: &str) -> String {
    use base64::Engine;
    let mut raw = Vec::with_capacity(login.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(login.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Printable text of a remote's reply for error messages: control characters removed, at most
/// 200 characters.
pub(crate) fn clean(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// A remote account's address, `SCHEME://USER@HOST:PORT[/FOLDER]` (CONTRACT.md): `imap`,
/// `imaps`, `pop3` or `pop3s`; USER percent-encoded (`%40` for `@`); the port may be left out
/// (143, 993, 110, 995); FOLDER (IMAP only, default `INBOX`) percent-encoded, `/` between levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUrl {
    /// POP3 or IMAP.
    pub protocol: Protocol,
    /// TLS from the first byte (`imaps`, `pop3s`).
    pub implicit_tls: bool,
    /// The login name, decoded.
    pub login: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// IMAP folder, decoded (`INBOX` when not given).
    pub folder: String,
}

impl FetchUrl {
    /// Parses a URL; the error says what is wrong, for one line of output.
    pub fn parse(url: &str) -> Result<FetchUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url:?} is not a URL (imap://, imaps://, pop3:// or pop3s://)")
        })?;
        let (protocol, implicit_tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "imap" => (Protocol::Imap, false, 143),
            "imaps" => (Protocol::Imap, true, 993),
            "pop3" | "pop" => (Protocol::Pop3, false, 110),
            "pop3s" | "pops" => (Protocol::Pop3, true, 995),
            other => {
                return Err(format!(
                    "unknown scheme {other:?} (imap, imaps, pop3 or pop3s)"
                ));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| format!("{url:?} names no user (USER@HOST)"))?;
        let login = percent_decode(user)?;
        if login.is_empty() || login.contains(['\r', '\n', '\0']) {
            return Err("the user name is empty or has control characters".into());
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 address in {hostport:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("bad host {hostport:?}")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?,
                ),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(format!("bad host name {host:?}"));
        }
        if port == 0 {
            return Err("port 0".into());
        }
        let folder = percent_decode(path.trim_end_matches('/'))?;
        if protocol == Protocol::Pop3 && !folder.is_empty() && !folder.eq_ignore_ascii_case("INBOX")
        {
            return Err("POP3 has no folders; leave the path out".into());
        }
        if folder.contains(['\r', '\n', '\0']) {
            return Err("the folder name has control characters".into());
        }
        let folder = if folder.is_empty() {
            "INBOX".to_string()
        } else {
            folder
        };
        Ok(FetchUrl {
            protocol,
            implicit_tls,
            login,
            host,
            port,
            folder,
        })
    }

    /// True when the host is a loopback address or `localhost` (plaintext logins allowed).
    pub fn is_loopback(&self) -> bool {
        let h = self.host.to_ascii_lowercase();
        h == "localhost" || h == "::1" || h.starts_with("127.")
    }
}

impl std::fmt::Display for FetchUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match (self.protocol, self.implicit_tls) {
            (Protocol::Imap, false) => "imap",
            (Protocol::Imap, true) => "imaps",
            (Protocol::Pop3, false) => "pop3",
            (Protocol::Pop3, true) => "pop3s",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "{scheme}://{}@{host}:{}",
            percent_encode(&self.login),
            self.port
        )?;
        if self.protocol == Protocol::Imap {
            write!(f, "/{}", percent_encode(&self.folder).replace("%2F", "/"))?;
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
