//! The SMTP server session: one connection, from greeting to QUIT, as a pure state machine.
//!
//! Replies go to an output buffer the driver drains; storage and password checks are requests
//! ([`Effect`]) answered by `handle_completion`. At most one request is outstanding at a time,
//! and no input is consumed while one is, so pipelined commands wait their turn in the driver's
//! bounded input buffer.

use super::address::{Address, Domain, ReversePath};
use super::command::{self, BodyType, Command};
use super::data::DataReceiver;
use super::hops::{HopCounter, MAX_HOPS};
use super::privacy::HeaderStrip;
use super::received::Trace;
use super::{Role, SmtpConfig};
use crate::auth::{Disposition, MessageAuth};
use crate::effect::{
    AuthOutcome, Completion, Effect, Envelope, Receipt, Recipient, RecipientOutcome, Refusals,
    Secret, TxId, UserId,
};
use crate::filter::ScanContext;
use crate::filter::scan::{Outcome, Scan};
use crate::line::{Line, LineReader};
use crate::outbox::Outbox;
use crate::sasl::{self, SaslError};
use crate::service::PeerInfo;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::sync::Arc;
use std::time::Instant;

/// Command lines longer than this (with CRLF) are refused (RFC 5321 4.5.3.1.4), except AUTH.
const MAX_COMMAND_LINE: usize = 512;

/// Output the session buffers before it stops consuming input (pipelined replies).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Buffer first given to a message's bytes when MAIL FROM declared no SIZE: most mail fits.
const FIRST_CHUNK: usize = 16 * 1024;

/// Where the session is in the conversation.
#[derive(Debug)]
enum Phase {
    /// Waiting for a command line.
    Command,
    /// AUTH in progress, waiting for the client's next response.
    Auth(AuthStep),
    /// Receiving DATA.
    Data(DataReceiver),
    /// Receiving a BDAT chunk; `remaining` octets still to come.
    Bdat { remaining: u64, last: bool },
    /// Discarding a BDAT chunk that was refused; then send `reply`.
    BdatDiscard { remaining: u64, replies: Vec<Reply> },
    /// STARTTLS accepted; everything until the handshake is discarded.
    AwaitTls,
}

#[derive(Debug)]
enum AuthStep {
    PlainResponse,
    LoginUsername,
    LoginPassword(String),
}

/// A reply to send: code, enhanced status, text.
#[derive(Debug, Clone)]
struct Reply(u16, &'static str, String);

/// What an outstanding request was for.
#[derive(Debug)]
enum Pending {
    Auth,
    Rcpt(Address),
    Begin {
        bdat: Option<(u64, bool)>,
    },
    Append,
    Commit,
    Abort,
    /// DNS questions of the message's authentication, in the order asked.
    Resolve(Vec<(String, crate::dns::RecordType)>),
    /// A step on a content scanner's connection.
    Scan,
}

/// The message part of a transaction, once the store has opened it.
#[derive(Debug, Default)]
struct Body {
    tx: Option<TxId>,
    chunk: Vec<u8>,
    /// The size MAIL FROM declared (RFC 1870), to size the first chunk's buffer.
    size_hint: Option<u64>,
    size: u64,
    ended: bool,
    too_big: bool,
    long_line: bool,
    failed: bool,
    bdat: bool,
    hops: HopCounter,
    looping: bool,
    /// Header filter (submission privacy, forged Authentication-Results), when on.
    strip: Option<HeaderStrip>,
    /// SPF, DKIM and DMARC of an inbound message, when on.
    auth: Option<Box<MessageAuth>>,
    /// DMARC says: refuse, with this text.
    refused_by_policy: Option<String>,
    /// The content scanners of this message, when any apply.
    scan: Option<Box<Scan>>,
    /// The trace fields, still to be shown to the scanners ahead of the message.
    scan_trace: Option<Vec<u8>>,
    /// The scanners decided: refuse with this code and text (status included in the text).
    refused_by_scan: Option<Reply>,
    /// The scanners decided: accept the message and deliver it to nobody (milter DISCARD).
    discarded: bool,
    /// The scanners decided: deliver with these header changes, to Junk when true.
    scanned: Option<(Vec<crate::filter::HeaderEdit>, bool)>,
}

/// A mail transaction: from MAIL to the final reply.
#[derive(Debug)]
struct Transaction {
    id: String,
    sender: ReversePath,
    smtputf8: bool,
    /// Distinct recipients: one copy each.
    recipients: Vec<Recipient>,
    /// Every RCPT that got a 250, duplicates included: LMTP owes each one a final reply.
    accepted: Vec<Address>,
    body: Body,
}

/// An SMTP server session (see the module docs and [`Session`]).
pub struct SmtpSession {
    config: Arc<SmtpConfig>,
    peer: PeerInfo,
    outbox: Outbox,
    pending: Option<(RequestId, Pending)>,
    phase: Phase,
    lines: LineReader,
    helo: Option<(String, bool)>,
    tls: Option<TlsInfo>,
    user: Option<UserId>,
    tx: Option<Transaction>,
    tx_count: u32,
    errors: u32,
    auth_failures: u32,
    deadline: Instant,
    delayed: Option<(Instant, Reply)>,
    /// The time of the input being handled (scanner steps are stamped with it).
    now: Instant,
    shutting_down: bool,
    ending: Option<CloseReason>,
    closed: bool,
}

impl SmtpSession {
    /// Opens a session and queues the 220 greeting.
    pub fn new(config: Arc<SmtpConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Self::blank(config, peer, now);
        let protocol = if s.lmtp() { "LMTP" } else { "ESMTP" };
        let greeting = format!("{} {protocol} Petrel", s.config.hostname);
        s.reply(220, "", &greeting);
        s
    }

    /// Opens a session that only answers 421 (too many connections) and closes.
    pub fn refuse(config: Arc<SmtpConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Self::blank(config, peer, now);
        let text = format!(
            "{} Error: too many connections, try again later",
            s.config.hostname
        );
        s.reply(421, "4.7.0", &text);
        s.end(CloseReason::Refused);
        s.step();
        s
    }

    fn blank(config: Arc<SmtpConfig>, peer: PeerInfo, now: Instant) -> Self {
        let tls = peer.tls.clone();
        SmtpSession {
            deadline: now + config.command_timeout,
            config,
            peer,
            outbox: Outbox::default(),
            pending: None,
            phase: Phase::Command,
            lines: LineReader::default(),
            helo: None,
            tls,
            user: None,
            tx: None,
            tx_count: 0,
            errors: 0,
            auth_failures: 0,
            delayed: None,
            now,
            shutting_down: false,
            ending: None,
            closed: false,
        }
    }

    // ----- output helpers -----

    fn reply(&mut self, code: u16, status: &str, text: &str) {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(text.len() + 12);
        let _ = write!(line, "{code} ");
        if !status.is_empty() {
            let _ = write!(line, "{status} ");
        }
        line.push_str(text);
        line.push_str("\r\n");
        self.outbox.out.extend_from_slice(line.as_bytes());
    }

    fn send(&mut self, r: Reply) {
        self.reply(r.0, r.1, &r.2);
    }

    /// A reply to a client mistake: counted, and too many end the session.
    fn error(&mut self, code: u16, status: &'static str, text: &str) {
        self.reply(code, status, text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            let text = format!("{} Error: too many errors", self.config.hostname);
            self.reply(421, "4.7.0", &text);
            self.end(CloseReason::TooManyErrors);
        }
    }

    fn request(&mut self, effect: Effect, what: Pending) {
        debug_assert!(self.pending.is_none(), "one request at a time");
        let id = self.outbox.request(effect);
        self.pending = Some((id, what));
    }

    /// Ends the session after the output queued so far (and after aborting an open message).
    fn end(&mut self, reason: CloseReason) {
        if self.ending.is_none() {
            self.ending = Some(reason);
        }
    }

    fn lmtp(&self) -> bool {
        self.config.role == Role::Lmtp
    }

    /// Submission privacy applies to this session.
    fn private(&self) -> bool {
        self.config.privacy && self.config.role.is_submission()
    }

    /// The header filter for this session's messages: privacy on submission, forged
    /// Authentication-Results on inbound mail that gets authenticated.
    fn header_filter(&self) -> Option<HeaderStrip> {
        let verify = self.config.role == Role::Inbound && self.config.authenticate.is_some();
        (self.private() || verify).then(|| {
            HeaderStrip::new(
                self.private(),
                verify.then_some(self.config.hostname.as_str()),
            )
        })
    }

    fn auth_allowed(&self) -> bool {
        self.tls.is_some() || (self.peer.loopback && self.config.allow_plaintext_on_loopback)
    }

    fn starttls_offered(&self) -> bool {
        self.config.starttls && self.tls.is_none()
    }

    // ----- commands -----

    fn handle_line(&mut self, now: Instant, line: Vec<u8>) {
        let is_auth = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ");
        if line.len() + 2 > MAX_COMMAND_LINE && !is_auth {
            self.error(500, "5.5.2", "Error: line too long");
            return;
        }
        let utf8 = self.tx.as_ref().is_some_and(|t| t.smtputf8);
        match command::parse(&line, utf8) {
            Ok(cmd) => self.handle_command(now, cmd),
            Err(e) => self.error(e.code, e.status, e.text),
        }
    }

    fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            // RFC 2033 4.1: LMTP greets with LHLO only, and SMTP never with LHLO.
            Command::Ehlo(_) | Command::Helo(_) if self.lmtp() => {
                self.error(500, "5.5.1", "Error: this is LMTP, use LHLO")
            }
            Command::Lhlo(_) if !self.lmtp() => {
                self.error(500, "5.5.2", "Error: command not recognized")
            }
            Command::Ehlo(name) | Command::Lhlo(name) => self.ehlo(name, true),
            Command::Helo(name) => self.ehlo(name, false),
            Command::Mail {
                from,
                size,
                body,
                smtputf8,
            } => self.mail(from, size, body, smtputf8),
            Command::Rcpt(address) => self.rcpt(address),
            Command::RcptPostmaster => {
                // The domainless form names the postmaster of our primary domain.
                let domain = self
                    .config
                    .local_domains
                    .first()
                    .cloned()
                    .unwrap_or_default();
                self.rcpt(Address {
                    local: "postmaster".into(),
                    quoted: false,
                    domain: Domain::Name(domain),
                });
            }
            Command::Data => self.data(now),
            Command::Bdat { size, last } => self.bdat(now, size, last),
            Command::Rset => {
                self.reset_transaction();
                self.reply(250, "2.0.0", "Ok");
            }
            Command::Noop => self.reply(250, "2.0.0", "Ok"),
            Command::Quit => {
                self.reply(221, "2.0.0", "Bye");
                self.end(CloseReason::Quit);
            }
            Command::Vrfy => self.reply(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Expn => self.error(502, "5.5.1", "Error: command not implemented"),
            Command::Help => self.reply(214, "2.0.0", "See RFC 5321"),
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    fn ehlo(&mut self, name: String, esmtp: bool) {
        self.reset_transaction();
        let host = self.config.hostname.clone();
        if !esmtp {
            self.reply(250, "", &host);
        } else {
            let mut lines = vec![
                host,
                "PIPELINING".to_string(),
                format!("SIZE {}", self.config.max_message_size),
                "8BITMIME".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
                "SMTPUTF8".to_string(),
                "CHUNKING".to_string(),
            ];
            if self.starttls_offered() {
                lines.push("STARTTLS".to_string());
            }
            if self.config.role.is_submission() && self.auth_allowed() && self.user.is_none() {
                lines.push("AUTH PLAIN LOGIN".to_string());
            }
            let last = lines.len() - 1;
            for (i, l) in lines.iter().enumerate() {
                let sep = if i == last { ' ' } else { '-' };
                self.outbox
                    .out
                    .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
            }
        }
        self.helo = Some((name, esmtp));
    }

    fn mail(&mut self, from: ReversePath, size: Option<u64>, _body: BodyType, smtputf8: bool) {
        if self.helo.is_none() {
            return self.error(503, "5.5.1", "Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "Error: nested MAIL command");
        }
        if self.config.role.is_submission() {
            let Some(user) = &self.user else {
                return self.error(530, "5.7.0", "Authentication required");
            };
            if !sender_belongs_to(&from, user) {
                let text = format!(
                    "<{from}>: Sender address rejected: not owned by user {}",
                    user.0
                );
                return self.error(553, "5.7.1", &text);
            }
        }
        if size.is_some_and(|s| s > self.config.max_message_size) {
            return self.reply(552, "5.3.4", "Error: message size exceeds fixed limit");
        }
        if self.shutting_down {
            return self.reply(421, "4.3.2", "Service shutting down");
        }
        self.tx_count += 1;
        self.tx = Some(Transaction {
            id: format!("{}{:02X}", self.peer.session_id, self.tx_count),
            sender: from,
            smtputf8,
            recipients: Vec::new(),
            accepted: Vec::new(),
            body: Body {
                strip: self.header_filter(),
                size_hint: size,
                ..Body::default()
            },
        });
        self.reply(250, "2.1.0", "Ok");
    }

    fn rcpt(&mut self, address: Address) {
        let Some(tx) = &self.tx else {
            return self.error(503, "5.5.1", "Error: need MAIL command");
        };
        if tx.body.tx.is_some() {
            return self.error(503, "5.5.1", "Error: RCPT after BDAT");
        }
        if tx.recipients.len() >= self.config.max_recipients {
            return self.reply(452, "4.5.3", "Error: too many recipients");
        }
        let local = match &address.domain {
            Domain::Name(name) => self.config.is_local_domain(name),
            Domain::Literal(_) => false,
        };
        if local {
            if address.has_routing_chars() {
                let text = format!("<{address}>: Relay access denied");
                return self.error(550, "5.7.1", &text);
            }
            let effect = Effect::LookupRecipient {
                address: address.clone(),
            };
            self.request(effect, Pending::Rcpt(address));
        } else if self.user.is_some() {
            self.add_recipient(Recipient {
                address,
                mailbox: None,
            });
        } else {
            let text = format!("<{address}>: Relay access denied");
            self.error(554, "5.7.1", &text);
        }
    }

    fn add_recipient(&mut self, rcpt: Recipient) {
        if let Some(tx) = &mut self.tx {
            tx.accepted.push(rcpt.address.clone());
            let key = rcpt.address.to_string().to_lowercase();
            if !tx
                .recipients
                .iter()
                .any(|r| r.address.to_string().to_lowercase() == key)
            {
                tx.recipients.push(rcpt);
            }
            self.reply(250, "2.1.5", "Ok");
        }
    }

    /// Checks that a message may start; on failure sends the reply and returns false.
    fn message_may_start(&mut self) -> bool {
        match &self.tx {
            None => {
                self.error(503, "5.5.1", "Error: need MAIL command");
                false
            }
            Some(tx) if tx.recipients.is_empty() => {
                // RFC 2033 4.2: LMTP answers 503 here; SMTP's 554 (RFC 5321 3.3).
                let code = if self.lmtp() { 503 } else { 554 };
                self.error(code, "5.5.1", "Error: no valid recipients");
                false
            }
            Some(_) => true,
        }
    }

    fn data(&mut self, now: Instant) {
        if self.tx.as_ref().is_some_and(|t| t.body.bdat) {
            return self.error(503, "5.5.1", "Error: DATA after BDAT");
        }
        if self.message_may_start() {
            self.begin_message(now, None);
        }
    }

    fn bdat(&mut self, now: Instant, size: u64, last: bool) {
        let refuse = |code, status, text: &str| Phase::BdatDiscard {
            remaining: size,
            replies: vec![Reply(code, status, text.to_string())],
        };
        if self.tx.is_none() {
            self.errors += 1;
            self.phase = refuse(503, "5.5.1", "Error: need MAIL command");
        } else if self.tx.as_ref().is_some_and(|t| t.recipients.is_empty()) {
            self.errors += 1;
            self.phase = refuse(554, "5.5.1", "Error: no valid recipients");
        } else if self.tx.as_ref().is_some_and(|t| t.body.tx.is_some()) {
            self.phase = Phase::Bdat {
                remaining: size,
                last,
            };
        } else {
            return self.begin_message(now, Some((size, last)));
        }
        // `BDAT 0 [LAST]` has no bytes to wait for.
        if size == 0 {
            self.empty_chunk();
        }
    }

    /// Completes a BDAT chunk of size 0 at once, as no input will arrive for it.
    fn empty_chunk(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Command) {
            Phase::BdatDiscard { replies, .. } => replies.into_iter().for_each(|r| self.send(r)),
            phase @ Phase::Bdat { .. } => {
                self.phase = phase;
                self.body_input(&[]);
            }
            other => self.phase = other,
        }
    }

    fn begin_message(&mut self, _now: Instant, bdat: Option<(u64, bool)>) {
        let Some(tx) = &self.tx else { return };
        let (helo, esmtp) = self
            .helo
            .as_ref()
            .map_or(("", false), |(h, e)| (h.as_str(), *e));
        let single = (tx.recipients.len() == 1).then(|| &tx.recipients[0].address as _);
        let mut trace = Vec::with_capacity(320);
        Trace {
            helo,
            ip: &self.peer.ip,
            hostname: &self.config.hostname,
            esmtp,
            tls: self.tls.as_ref(),
            authenticated: self.user.is_some(),
            utf8: tx.smtputf8,
            lmtp: self.lmtp(),
            id: &tx.id,
            single_rcpt: single,
            unix: self.config.clock.unix_seconds(),
            private: self.private(),
        }
        .write(&mut trace);
        let auth = match (self.config.authenticate, self.config.role) {
            (Some(policy), Role::Inbound) => self.peer.ip.parse().ok().map(|ip| {
                Box::new(MessageAuth::new(
                    &self.config.hostname,
                    policy,
                    ip,
                    helo,
                    &tx.sender.to_string(),
                    self.config.clock.unix_seconds(),
                ))
            }),
            _ => None,
        };
        let envelope = Envelope {
            session: self.peer.session_id.clone(),
            id: tx.id.clone(),
            sender: tx.sender.clone(),
            recipients: tx.recipients.clone(),
            submitted_by: self.user.clone(),
        };
        let scan = self.config.filter.as_ref().and_then(|filter| {
            let ctx = ScanContext {
                hostname: self.config.hostname.clone(),
                queue_id: tx.id.clone(),
                client_ip: self.peer.ip.clone(),
                client_port: 0,
                client_name: None,
                helo: helo.to_string(),
                sender: tx.sender.to_string(),
                recipients: tx
                    .recipients
                    .iter()
                    .map(|r| r.address.to_string())
                    .collect(),
                authenticated: self.user.as_ref().map(|u| u.0.clone()),
                tls: self.tls.is_some(),
            };
            Scan::new(filter, self.config.role, ctx).map(Box::new)
        });
        if let Some(tx) = &mut self.tx {
            tx.body.auth = auth;
            if scan.is_some() {
                tx.body.scan_trace = Some(trace.clone());
            }
            tx.body.scan = scan;
        }
        self.request(
            Effect::BeginMessage { envelope, trace },
            Pending::Begin { bdat },
        );
    }

    fn starttls(&mut self) {
        if self.tls.is_some() {
            return self.error(503, "5.5.1", "Error: TLS already active");
        }
        if !self.config.starttls {
            return self.error(454, "4.7.0", "TLS not available");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "Error: MAIL transaction in progress");
        }
        self.reply(220, "2.0.0", "Ready to start TLS");
        self.phase = Phase::AwaitTls;
        self.lines.clear();
        self.outbox.push(Event::StartTls);
    }

    fn auth(&mut self, mechanism: String, initial: Option<String>) {
        if !self.config.role.is_submission() {
            return self.error(503, "5.5.1", "Error: authentication not enabled");
        }
        if !self.auth_allowed() {
            return self.error(530, "5.7.0", "Must issue a STARTTLS command first");
        }
        if self.user.is_some() {
            return self.error(503, "5.5.1", "Error: already authenticated");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "Error: MAIL transaction in progress");
        }
        match (mechanism.as_str(), initial) {
            ("PLAIN", Some(ir)) => self.auth_response(AuthStep::PlainResponse, &ir),
            ("PLAIN", None) => {
                self.reply(334, "", "");
                self.phase = Phase::Auth(AuthStep::PlainResponse);
            }
            ("LOGIN", Some(ir)) => self.auth_response(AuthStep::LoginUsername, &ir),
            ("LOGIN", None) => {
                self.reply(334, "", &sasl::encode_challenge(b"Username:"));
                self.phase = Phase::Auth(AuthStep::LoginUsername);
            }
            _ => self.error(504, "5.5.4", "Unrecognized authentication type"),
        }
    }

    fn auth_response(&mut self, step: AuthStep, line: &str) {
        self.phase = Phase::Command;
        let decoded = sasl::decode_response(line);
        let result = decoded.and_then(|raw| match step {
            AuthStep::PlainResponse => sasl::parse_plain(&raw).map(Some),
            AuthStep::LoginUsername => sasl::parse_login_username(&raw).map(|u| {
                self.phase = Phase::Auth(AuthStep::LoginPassword(u));
                None
            }),
            AuthStep::LoginPassword(username) => Ok(Some(sasl::Credentials {
                username,
                password: raw,
            })),
        });
        match result {
            Ok(Some(creds)) => {
                let effect = Effect::Authenticate {
                    username: creds.username,
                    password: Secret::new(creds.password),
                    client_ip: self.peer.ip.clone(),
                    loopback: self.peer.loopback,
                };
                self.request(effect, Pending::Auth);
            }
            Ok(None) => self.reply(334, "", &sasl::encode_challenge(b"Password:")),
            Err(SaslError::Cancelled) => self.error(501, "5.7.0", "Authentication cancelled"),
            Err(SaslError::Malformed) => self.error(501, "5.5.2", "Cannot decode response"),
            Err(SaslError::AuthzidMismatch) => self.auth_failed(None),
        }
    }

    fn auth_failed(&mut self, now: Option<Instant>) {
        self.auth_failures += 1;
        let reply = Reply(
            535,
            "5.7.8",
            "Authentication credentials invalid".to_string(),
        );
        if self.auth_failures >= self.config.max_auth_failures {
            self.send(reply);
            let text = format!(
                "{} Error: too many authentication failures",
                self.config.hostname
            );
            self.reply(421, "4.7.0", &text);
            self.end(CloseReason::TooManyErrors);
        } else if let Some(now) = now {
            self.delayed = Some((now + self.config.auth_failure_delay, reply));
        } else {
            self.send(reply);
        }
    }

    /// Forgets the transaction; a store transaction still open (BDAT) is aborted.
    fn reset_transaction(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Some(id) = tx.body.tx
        {
            self.request(Effect::Abort { tx: id }, Pending::Abort);
        }
    }

    // ----- message body -----

    /// Takes message bytes from `input` in the DATA or BDAT phase; returns bytes consumed.
    fn body_input(&mut self, input: &[u8]) -> usize {
        let chunk_size = self.config.chunk_size;
        let max = self.config.max_message_size;
        let Some(tx) = &mut self.tx else {
            return input.len();
        };
        let body = &mut tx.body;
        if body.chunk.capacity() == 0 && !input.is_empty() {
            // One allocation for the usual message instead of a doubling from 8 bytes
            // (callgrind: six reallocs, each copying the body so far, per 4 KiB message).
            let want = body.size_hint.map_or(FIRST_CHUNK, |s| {
                usize::try_from(s)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1024)
            });
            body.chunk.reserve(want.min(chunk_size));
        }
        let before = body.chunk.len();
        let consumed = match &mut self.phase {
            Phase::Data(rx) => {
                let (n, done) = rx.feed(input, &mut body.chunk, chunk_size);
                body.long_line |= rx.saw_long_line();
                body.ended = done;
                n
            }
            Phase::Bdat { remaining, last } => {
                let room = chunk_size.saturating_sub(body.chunk.len());
                let n = input
                    .len()
                    .min(room)
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                body.chunk.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                if *remaining == 0 {
                    body.ended = *last;
                }
                n
            }
            _ => 0,
        };
        body.size += (body.chunk.len() - before) as u64;
        body.hops.feed(&body.chunk[before..]);
        if let Some(auth) = &mut body.auth {
            auth.feed(&body.chunk[before..]);
        }
        if let Some(strip) = &mut body.strip {
            let raw = body.chunk.split_off(before);
            strip.feed(&raw, &mut body.chunk);
            if body.ended {
                strip.finish(&mut body.chunk);
            }
        }
        if body.hops.hops() > MAX_HOPS {
            body.looping = true;
        }
        if body.size > max {
            body.too_big = true;
        }
        if body.too_big || body.failed || body.long_line || body.looping {
            // Keep reading to the end of the data, but store nothing more.
            body.chunk.clear();
        }
        let (ended, size) = (body.ended, body.size);
        if let Phase::Bdat { remaining: 0, last } = self.phase {
            self.phase = Phase::Command;
            if !last {
                self.reply(250, "2.0.0", &format!("Ok: {size} octets received"));
            }
        }
        if ended {
            self.phase = Phase::Command;
        }
        consumed
    }

    /// Moves the message along: hands a full chunk to the store, and at the end commits or
    /// aborts. Does nothing while a request is outstanding.
    fn advance_message(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let chunk_size = self.config.chunk_size;
        let now = self.now;
        let Some(tx) = &mut self.tx else { return };
        let Some(id) = tx.body.tx else { return };
        let body = &mut tx.body;
        let healthy = !(body.too_big || body.failed || body.long_line || body.looping);
        // A message the client will never finish needs no verdict; the runtime closes the
        // scanner connections when the session ends.
        if self.ending.is_some() && !body.ended {
            body.scan = None;
        }
        // The scanners go first: their pending steps, then the message bytes they may take.
        if let Some(scan) = &mut body.scan {
            if !healthy {
                scan.cancel();
            }
            if let Some((conn, op)) = scan.next_op(now) {
                self.request(Effect::Scan { conn, op }, Pending::Scan);
                return;
            }
            if healthy && let Some(trace) = body.scan_trace.take_if(|_| scan.ready_for_body()) {
                scan.body(&trace);
                return self.advance_message();
            }
        }
        let scan_ready = body
            .scan
            .as_ref()
            .is_none_or(|s| body.scan_trace.is_none() && s.ready_for_body());
        if healthy && (body.chunk.len() >= chunk_size || (body.ended && !body.chunk.is_empty())) {
            if !scan_ready {
                return;
            }
            // A message that goes on fills whole chunks; one that ended needs no buffer more.
            let next = if body.ended {
                Vec::new()
            } else {
                Vec::with_capacity(chunk_size)
            };
            let bytes = std::mem::replace(&mut body.chunk, next);
            if let Some(scan) = &mut body.scan {
                scan.body(&bytes);
            }
            self.request(Effect::AppendChunk { tx: id, bytes }, Pending::Append);
        } else if body.ended && healthy {
            let mut prepend = Vec::new();
            let mut junk = false;
            let mut edits = Vec::new();
            if let Some(scan) = &mut body.scan {
                if !scan_ready {
                    return;
                }
                scan.end();
                if let Some((conn, op)) = scan.next_op(now) {
                    self.request(Effect::Scan { conn, op }, Pending::Scan);
                    return;
                }
                if !scan.is_done() {
                    debug_assert!(false, "a scan with nothing to do is done");
                    return;
                }
                match scan.outcome() {
                    Outcome::Deliver { edits: e, junk: j } => body.scanned = Some((e, j)),
                    Outcome::Refuse { code, status, text } => {
                        let code = match code {
                            400..=599 => code,
                            _ => 451,
                        };
                        let status = scan_status(code, &status);
                        body.refused_by_scan = Some(Reply(code, status, reply_text(&text)));
                        body.scan = None;
                        self.request(Effect::Abort { tx: id }, Pending::Abort);
                        return;
                    }
                    Outcome::Discard => {
                        body.discarded = true;
                        body.scan = None;
                        self.request(Effect::Abort { tx: id }, Pending::Abort);
                        return;
                    }
                }
                body.scan = None;
            }
            if let Some((e, j)) = &body.scanned {
                edits.clone_from(e);
                junk = *j;
            }
            if let Some(auth) = &mut body.auth {
                auth.finish_message();
                match auth.outcome() {
                    None => {
                        let queries = auth.queries();
                        if !queries.is_empty() {
                            self.request(
                                Effect::Resolve {
                                    queries: queries.clone(),
                                },
                                Pending::Resolve(queries),
                            );
                            return;
                        }
                        // Nothing left to ask and still no verdict: deliver unmarked.
                    }
                    Some(outcome) => {
                        prepend = outcome.header.into_bytes();
                        match outcome.disposition {
                            Disposition::Accept => {}
                            Disposition::Quarantine => junk = true,
                            Disposition::Reject(text) => {
                                body.refused_by_policy = Some(text);
                                self.request(Effect::Abort { tx: id }, Pending::Abort);
                                return;
                            }
                        }
                    }
                }
            }
            self.request(
                Effect::Commit {
                    tx: id,
                    prepend,
                    refusals: if self.lmtp() {
                        Refusals::PerRecipient
                    } else {
                        Refusals::AllOrNotice
                    },
                    junk,
                    edits,
                },
                Pending::Commit,
            );
        } else if body.ended {
            self.request(Effect::Abort { tx: id }, Pending::Abort);
        }
    }

    /// The final reply for a message that was refused or failed, once it is aborted.
    fn finish_failed_message(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let b = &tx.body;
        if b.discarded {
            // Milter DISCARD: the client is told the message was taken; nobody gets it.
            let text = format!("Ok: queued as {}", tx.id);
            self.final_replies(&tx, 250, "2.0.0", &text);
            return;
        }
        if let Some(Reply(code, status, text)) = &b.refused_by_scan {
            let text = text.clone();
            self.final_replies(&tx, *code, status, &text);
            return;
        }
        if let Some(text) = &b.refused_by_policy {
            let (status, text) = text.split_once(' ').unwrap_or(("5.7.1", text));
            let text = text.to_string();
            let status: &'static str = if status == "5.7.1" { "5.7.1" } else { "5.7.0" };
            self.final_replies(&tx, 550, status, &text);
            return;
        }
        let (code, status, text) = if b.too_big {
            (552, "5.3.4", "Error: message too large")
        } else if b.looping {
            (554, "5.4.6", "Error: too many hops, mail loop?")
        } else if b.long_line {
            (500, "5.5.2", "Error: message line longer than 998 octets")
        } else {
            (
                451,
                "4.3.0",
                "Error: local error in processing, try again later",
            )
        };
        self.final_replies(&tx, code, status, text);
    }

    fn finish_message(&mut self, receipt: Receipt) {
        let Some(tx) = self.tx.take() else { return };
        debug_assert_eq!(Some(receipt.tx()), tx.body.tx);
        let text = format!("Ok: queued as {}", tx.id);
        let refused = receipt.refused();
        if refused.is_empty() {
            self.final_replies(&tx, 250, "2.0.0", &text);
        } else if !self.lmtp() {
            // The store refuses in the dialogue only when every recipient refused.
            let reason = reply_text(&refused[0].reason);
            self.reply(550, "5.7.1", &format!("Rejected: {reason}"));
        } else {
            for address in &tx.accepted {
                let shown = address.to_string();
                match refused
                    .iter()
                    .find(|r| r.address.eq_ignore_ascii_case(&shown))
                {
                    Some(r) => {
                        let reason = reply_text(&r.reason);
                        self.send(Reply(550, "5.7.1", format!("<{shown}> Rejected: {reason}")));
                    }
                    None => self.send(Reply(250, "2.0.0", format!("<{shown}> {text}"))),
                }
            }
        }
    }

    /// The reply to the end of a message: one in SMTP; in LMTP one per successful RCPT, in RCPT
    /// order, duplicates included (RFC 2033 4.2), each naming its recipient.
    fn final_replies(&mut self, tx: &Transaction, code: u16, status: &'static str, text: &str) {
        for r in self.end_of_message_replies(tx, code, status, text) {
            self.send(r);
        }
    }

    fn end_of_message_replies(
        &self,
        tx: &Transaction,
        code: u16,
        status: &'static str,
        text: &str,
    ) -> Vec<Reply> {
        if !self.lmtp() {
            return vec![Reply(code, status, text.to_string())];
        }
        tx.accepted
            .iter()
            .map(|address| Reply(code, status, format!("<{address}> {text}")))
            .collect()
    }

    /// Between transactions, with no command half-read: a safe point to close at shutdown.
    fn is_idle(&self) -> bool {
        self.pending.is_none()
            && matches!(self.phase, Phase::Command)
            && !self.lines.is_partial()
            && self.tx.is_none()
    }

    fn say_shutdown(&mut self) {
        let text = format!("{} Service shutting down", self.config.hostname);
        self.reply(421, "4.3.2", &text);
        self.end(CloseReason::Shutdown);
    }

    // ----- the end -----

    /// Runs after every input: ends the session when asked to, once nothing is outstanding.
    fn step(&mut self) {
        self.advance_message();
        if self.pending.is_some() || self.closed {
            return;
        }
        if self.shutting_down && self.ending.is_none() && self.is_idle() {
            self.say_shutdown();
        }
        if let Some(reason) = self.ending {
            if let Some(id) = self.tx.as_ref().and_then(|t| t.body.tx) {
                self.tx = None;
                self.request(Effect::Abort { tx: id }, Pending::Abort);
                return;
            }
            self.closed = true;
            self.outbox.push(Event::Closed { reason });
        }
    }
}

/// A scanner's enhanced status code for a reply with `code`: the scanner's own when it is one
/// of the security/policy codes of RFC 3463 (`X.7.Y`) or a mailbox/system code in the same
/// class as `code`, otherwise `4.7.1`/`5.7.1`.
fn scan_status(code: u16, status: &str) -> &'static str {
    const KNOWN: [&str; 22] = [
        "4.7.0", "4.7.1", "4.7.2", "4.7.5", "4.7.7", "4.7.26", "4.2.0", "4.3.0", "4.3.2", "4.4.5",
        "4.6.0", "5.7.0", "5.7.1", "5.7.2", "5.7.5", "5.7.7", "5.7.26", "5.2.0", "5.3.0", "5.6.0",
        "5.1.1", "5.2.2",
    ];
    let class = if code >= 500 { '5' } else { '4' };
    KNOWN
        .iter()
        .find(|k| **k == status && k.starts_with(class))
        .copied()
        .unwrap_or(if class == '5' { "5.7.1" } else { "4.7.1" })
}

/// A filter's reason made safe for one reply line: printable ASCII, at most 200 characters.
fn reply_text(reason: &str) -> String {
    let mut text: String = reason
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { ' ' })
        .take(200)
        .collect();
    text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        text.push_str("refused by the recipient's filter");
    }
    text
}

/// May `user` send as `from`? Its own address, or its own address with a `+tag`.
fn sender_belongs_to(from: &ReversePath, user: &UserId) -> bool {
    let ReversePath::Mailbox(addr) = from else {
        return false;
    };
    let Some((user_local, user_domain)) = user.0.rsplit_once('@') else {
        return false;
    };
    if addr.domain_name() != Some(user_domain) {
        return false;
    }
    let local = addr.local.to_lowercase();
    let base = local
        .split_once('+')
        .map_or(local.as_str(), |(base, _)| base);
    local == user_local || base == user_local
}

impl Session for SmtpSession {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        self.now = now;
        let mut used = 0;
        while used < input.len()
            && self.pending.is_none()
            && self.delayed.is_none()
            && self.ending.is_none()
            && !self.closed
            && self.outbox.out.len() < OUTPUT_HIGH_WATER
        {
            let rest = &input[used..];
            used += match &mut self.phase {
                Phase::AwaitTls => rest.len(),
                Phase::Data(_) | Phase::Bdat { .. } => self.body_input(rest),
                Phase::BdatDiscard { remaining, .. } => {
                    let n = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    *remaining -= n as u64;
                    if *remaining == 0
                        && let Phase::BdatDiscard { replies, .. } =
                            std::mem::replace(&mut self.phase, Phase::Command)
                    {
                        replies.into_iter().for_each(|r| self.send(r));
                    }
                    n
                }
                Phase::Command | Phase::Auth(_) => {
                    let (n, line) = self.lines.read(rest);
                    match line {
                        Some(Line::Complete(line)) => {
                            if let Phase::Auth(_) = self.phase {
                                let Phase::Auth(step) =
                                    std::mem::replace(&mut self.phase, Phase::Command)
                                else {
                                    unreachable!("matched Auth above")
                                };
                                let text = String::from_utf8_lossy(&line).into_owned();
                                self.auth_response(step, &text);
                            } else {
                                self.handle_line(now, line);
                            }
                        }
                        Some(Line::TooLong) => {
                            self.phase = Phase::Command;
                            self.error(500, "5.5.2", "Error: line too long");
                        }
                        None => {}
                    }
                    n
                }
            };
            self.advance_message();
        }
        if used > 0 {
            self.deadline = now + self.config.command_timeout;
        }
        self.step();
        used
    }

    fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        self.end(CloseReason::PeerClosed);
        self.step();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some((at, _)) = &self.delayed
            && now >= *at
            && let Some((_, reply)) = self.delayed.take()
        {
            self.send(reply);
        }
        if self.pending.is_none() && self.ending.is_none() && now >= self.deadline {
            let text = format!("{} Error: timeout exceeded", self.config.hostname);
            self.reply(421, "4.4.2", &text);
            self.end(CloseReason::Timeout);
        }
        self.step();
    }

    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion) {
        let Some((expected, what)) = self.pending.take() else {
            debug_assert!(false, "completion without a request");
            return;
        };
        debug_assert_eq!(expected, id, "completion for another request");
        self.now = now;
        self.deadline = now + self.config.command_timeout;
        match (what, completion) {
            (Pending::Resolve(queries), completion) => {
                let answers = match completion {
                    Completion::Dns(answers) if answers.len() == queries.len() => answers,
                    _ => queries
                        .iter()
                        .map(|_| crate::dns::Answer::TempFail("lookup failed".into()))
                        .collect(),
                };
                if let Some(auth) = self.tx.as_mut().and_then(|t| t.body.auth.as_mut()) {
                    for ((name, rtype), answer) in queries.iter().zip(&answers) {
                        auth.answer(name, *rtype, answer);
                    }
                }
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::Success(user))) => {
                self.user = Some(user);
                self.reply(235, "2.7.0", "Authentication successful");
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::TempFail)) => {
                self.reply(454, "4.7.0", "Temporary authentication failure");
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::FailureAfter(wait))) => self.auth_failed(
                Some(now + wait.saturating_sub(self.config.auth_failure_delay)),
            ),
            (Pending::Auth, _) => self.auth_failed(Some(now)),
            (Pending::Rcpt(address), Completion::Recipient(RecipientOutcome::Local(user))) => {
                self.add_recipient(Recipient {
                    address,
                    mailbox: Some(user),
                });
            }
            (Pending::Rcpt(address), Completion::Recipient(RecipientOutcome::Unknown)) => {
                let text = format!("<{address}>: Recipient address rejected: User unknown");
                self.error(550, "5.1.1", &text);
            }
            (Pending::Rcpt(address), _) => {
                let text = format!("<{address}>: Recipient address rejected: try again later");
                self.reply(451, "4.3.0", &text);
            }
            (Pending::Begin { bdat }, Completion::Began(tx_id)) => {
                if let Some(tx) = &mut self.tx {
                    tx.body.tx = Some(tx_id);
                }
                match bdat {
                    None => {
                        self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
                        self.phase = Phase::Data(DataReceiver::new());
                    }
                    Some((remaining, last)) => {
                        if let Some(tx) = &mut self.tx {
                            tx.body.bdat = true;
                        }
                        self.phase = Phase::Bdat { remaining, last };
                        if remaining == 0 {
                            self.empty_chunk();
                        }
                    }
                }
            }
            (Pending::Begin { bdat }, _) => {
                let text = "Error: local error in processing, try again later";
                let replies = match (self.tx.take(), bdat) {
                    // The reply to BDAT LAST ends the message: LMTP owes one per recipient.
                    (Some(tx), Some((_, true))) => {
                        self.end_of_message_replies(&tx, 451, "4.3.0", text)
                    }
                    _ => vec![Reply(451, "4.3.0", text.into())],
                };
                match bdat {
                    Some((remaining, _)) if remaining > 0 => {
                        self.phase = Phase::BdatDiscard { remaining, replies };
                    }
                    _ => replies.into_iter().for_each(|r| self.send(r)),
                }
            }
            (Pending::Scan, completion) => {
                if let Some(scan) = self.tx.as_mut().and_then(|t| t.body.scan.as_mut()) {
                    scan.handle_completion(now, completion);
                }
            }
            (Pending::Append, Completion::Appended) => {}
            (Pending::Append, _) => {
                if let Some(tx) = &mut self.tx {
                    tx.body.failed = true;
                    tx.body.chunk.clear();
                }
            }
            (Pending::Commit, Completion::Durable(receipt)) => self.finish_message(receipt),
            (Pending::Commit, _) => {
                if let Some(tx) = &mut self.tx {
                    tx.body.failed = true;
                }
                // The store cleans up after a failed commit; nothing to abort.
                if let Some(tx) = &mut self.tx {
                    tx.body.tx = None;
                }
                self.finish_failed_message();
            }
            (Pending::Abort, _) => {
                if self.tx.as_ref().is_some_and(|t| t.body.ended) {
                    self.finish_failed_message();
                }
            }
        }
        self.step();
    }

    fn handle_tls_established(&mut self, _now: Instant, info: TlsInfo) {
        // RFC 3207 4.2: forget everything learnt before TLS; the client must EHLO again.
        self.tls = Some(info);
        self.helo = None;
        self.user = None;
        self.tx = None;
        self.lines.clear();
        self.phase = Phase::Command;
    }

    fn handle_shutdown(&mut self, now: Instant) {
        self.now = now;
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.step();
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        self.outbox.poll_output(out)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if let Some((at, _)) = &self.delayed {
            return Some(*at);
        }
        if self.pending.is_some() || self.ending.is_some() {
            return None;
        }
        Some(self.deadline)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn buffered_bytes(&self) -> usize {
        let chunk = self.tx.as_ref().map_or(0, |t| t.body.chunk.len());
        self.outbox.out.len()
            + self.lines.buffered()
            + chunk
            + self.delayed.as_ref().map_or(0, |(_, r)| r.2.len())
    }
}

impl std::fmt::Debug for SmtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSession")
            .field("session", &self.peer.session_id)
            .field("role", &self.config.role)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
