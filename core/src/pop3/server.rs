//! The POP3 server session: AUTHORIZATION, TRANSACTION and UPDATE states (RFC 1939 3) as a
//! pure state machine. Messages are deleted only by a QUIT in the TRANSACTION state; a dropped
//! connection only unlocks the maildrop.

use super::Pop3Config;
use super::command::{self, Command};
use super::output::MessageEncoder;
use crate::effect::{
    AuthOutcome, Completion, Effect, MaildropEntry, MaildropOutcome, Secret, UserId,
};
use crate::line::{Line, LineReader};
use crate::outbox::Outbox;
use crate::sasl::{self, SaslError};
use crate::service::PeerInfo;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::sync::Arc;
use std::time::Instant;

/// RFC 2449 4: command lines are at most 255 octets (AUTH responses may be longer).
const MAX_COMMAND_LINE: usize = 255;

/// Output buffered before the session stops consuming input.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// The listed maildrop of a logged-in user.
#[derive(Debug)]
struct Maildrop {
    user: UserId,
    uidvalidity: u32,
    messages: Vec<MaildropEntry>,
    deleted: Vec<bool>,
}

/// A RETR or TOP being streamed.
#[derive(Debug)]
struct Transfer {
    index: usize,
    offset: u64,
    encoder: MessageEncoder,
    started: bool,
}

#[derive(Debug)]
enum Pending {
    Auth,
    Open(UserId),
    Read,
    Close { quit: bool },
}

#[derive(Debug)]
enum Phase {
    /// AUTHORIZATION; `user` from a USER command.
    Authorization { user: Option<String> },
    /// AUTH PLAIN waiting for the client's response line.
    AuthResponse,
    /// TRANSACTION.
    Transaction,
    /// STLS accepted; input is discarded until the handshake.
    AwaitTls,
}

/// A POP3 server session (see the module docs and [`Session`]).
pub struct Pop3Session {
    config: Arc<Pop3Config>,
    peer: PeerInfo,
    tls: Option<TlsInfo>,
    outbox: Outbox,
    pending: Option<(RequestId, Pending)>,
    phase: Phase,
    lines: LineReader,
    drop: Option<Maildrop>,
    transfer: Option<Transfer>,
    errors: u32,
    auth_failures: u32,
    deadline: Instant,
    delayed: Option<(Instant, &'static str)>,
    ending: Option<CloseReason>,
    shutting_down: bool,
    closed: bool,
}

impl Pop3Session {
    /// Opens a session and queues the greeting.
    pub fn new(config: Arc<Pop3Config>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Pop3Session {
            deadline: now + config.command_timeout,
            tls: peer.tls.clone(),
            config,
            peer,
            outbox: Outbox::default(),
            pending: None,
            phase: Phase::Authorization { user: None },
            lines: LineReader::default(),
            drop: None,
            transfer: None,
            errors: 0,
            auth_failures: 0,
            delayed: None,
            ending: None,
            shutting_down: false,
            closed: false,
        };
        s.ok("Petrel ready.");
        s
    }

    /// Opens a session that only says the server is busy, then closes.
    pub fn refuse(config: Arc<Pop3Config>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Self::new(config, peer, now);
        s.outbox.out.clear();
        s.err("[SYS/TEMP] Too many connections, try again later.");
        s.end(CloseReason::Refused);
        s.step();
        s
    }

    fn ok(&mut self, text: &str) {
        self.outbox.out.extend_from_slice(b"+OK ");
        self.outbox.out.extend_from_slice(text.as_bytes());
        self.outbox.out.extend_from_slice(b"\r\n");
    }

    fn err(&mut self, text: &str) {
        self.outbox.out.extend_from_slice(b"-ERR ");
        self.outbox.out.extend_from_slice(text.as_bytes());
        self.outbox.out.extend_from_slice(b"\r\n");
    }

    /// A client mistake: counted; too many end the session.
    fn error(&mut self, text: &str) {
        self.err(text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.err("Too many errors, closing connection.");
            self.end(CloseReason::TooManyErrors);
        }
    }

    fn request(&mut self, effect: Effect, what: Pending) {
        debug_assert!(self.pending.is_none(), "one request at a time");
        let id = self.outbox.request(effect);
        self.pending = Some((id, what));
    }

    fn end(&mut self, reason: CloseReason) {
        if self.ending.is_none() {
            self.ending = Some(reason);
        }
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls.is_some() || (self.peer.loopback && self.config.allow_plaintext_on_loopback)
    }

    // ----- commands -----

    fn handle_line(&mut self, line: Vec<u8>) {
        let is_auth = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ");
        let is_pass = line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"PASS ");
        if line.len() + 2 > MAX_COMMAND_LINE && !is_auth && !is_pass {
            return self.error("Line too long.");
        }
        match command::parse(&line) {
            Ok(cmd) => self.handle_command(cmd),
            Err(e) => self.error(e.0),
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match (&self.phase, cmd) {
            (_, Command::Capa) => self.capa(),
            (_, Command::Noop) if matches!(self.phase, Phase::Transaction) => self.ok(""),
            (Phase::Authorization { .. }, Command::Quit) => {
                self.ok("Logging out.");
                self.end(CloseReason::Quit);
            }
            (Phase::Transaction, Command::Quit) => self.quit(),
            (Phase::Authorization { .. }, Command::Stls) => self.stls(),
            (Phase::Authorization { .. }, Command::User(name)) => {
                if !self.plaintext_allowed() {
                    return self.error("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
                }
                self.phase = Phase::Authorization { user: Some(name) };
                self.ok("");
            }
            (Phase::Authorization { user }, Command::Pass(password)) => {
                let Some(user) = user.clone() else {
                    return self.error("No username given.");
                };
                self.phase = Phase::Authorization { user: None };
                self.login(user, password);
            }
            (Phase::Authorization { .. }, Command::AuthList) => {
                self.ok("");
                if self.plaintext_allowed() {
                    self.outbox.out.extend_from_slice(b"PLAIN\r\n");
                }
                self.outbox.out.extend_from_slice(b".\r\n");
            }
            (Phase::Authorization { .. }, Command::Auth { mechanism, initial }) => {
                self.auth(&mechanism, initial)
            }
            (Phase::Authorization { .. }, Command::Apop) => self.error("APOP is not supported."),
            (Phase::Transaction, cmd) => self.transaction(cmd),
            _ => self.error("Unknown command in this state."),
        }
    }

    fn capa(&mut self) {
        self.ok("");
        let mut caps = vec![
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ];
        let in_auth = matches!(self.phase, Phase::Authorization { .. });
        if in_auth && self.plaintext_allowed() {
            caps.push("USER");
            caps.push("SASL PLAIN");
        }
        if in_auth && self.config.stls && self.tls.is_none() {
            caps.push("STLS");
        }
        caps.extend(["EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION Petrel"]);
        for c in caps {
            self.outbox.out.extend_from_slice(c.as_bytes());
            self.outbox.out.extend_from_slice(b"\r\n");
        }
        self.outbox.out.extend_from_slice(b".\r\n");
    }

    fn stls(&mut self) {
        if self.tls.is_some() || !self.config.stls {
            return self.error("TLS is not available here.");
        }
        self.ok("Begin TLS negotiation now.");
        self.phase = Phase::AwaitTls;
        self.lines.clear();
        self.outbox.push(Event::StartTls);
    }

    fn auth(&mut self, mechanism: &str, initial: Option<String>) {
        if !self.plaintext_allowed() {
            return self.error(
                "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
            );
        }
        if mechanism != "PLAIN" {
            return self.error("Unsupported authentication mechanism.");
        }
        match initial {
            Some(ir) => self.auth_response(&ir),
            None => {
                self.outbox.out.extend_from_slice(b"+ \r\n");
                self.phase = Phase::AuthResponse;
            }
        }
    }

    fn auth_response(&mut self, line: &str) {
        self.phase = Phase::Authorization { user: None };
        match sasl::decode_response(line).and_then(|raw| sasl::parse_plain(&raw)) {
            Ok(creds) => self.login(creds.username, creds.password),
            Err(SaslError::Cancelled) => self.error("Authentication aborted by client."),
            Err(SaslError::Malformed) => self.error("Invalid base64 data in continued response."),
            Err(SaslError::AuthzidMismatch) => self.login_failed(None),
        }
    }

    fn login(&mut self, username: String, password: Vec<u8>) {
        let effect = Effect::Authenticate {
            username,
            password: Secret::new(password),
            client_ip: self.peer.ip.clone(),
            loopback: self.peer.loopback,
        };
        self.request(effect, Pending::Auth);
    }

    fn login_failed(&mut self, now: Option<Instant>) {
        self.auth_failures += 1;
        const FAILED: &str = "[AUTH] Authentication failed.";
        if self.auth_failures >= self.config.max_auth_failures {
            self.err(FAILED);
            self.err("Too many authentication failures.");
            self.end(CloseReason::TooManyErrors);
        } else if let Some(now) = now {
            self.delayed = Some((now + self.config.auth_failure_delay, FAILED));
        } else {
            self.err(FAILED);
        }
    }

    /// Resolves a message number to an index of a message not marked deleted.
    fn message(&mut self, n: u32) -> Option<usize> {
        let drop = self.drop.as_ref()?;
        let i = (n as usize)
            .checked_sub(1)
            .filter(|&i| i < drop.messages.len());
        match i {
            None => {
                self.error(&format!("There's no message {n}."));
                None
            }
            Some(i) if drop.deleted[i] => {
                self.error("Message is deleted.");
                None
            }
            Some(i) => Some(i),
        }
    }

    fn transaction(&mut self, cmd: Command) {
        let Some(drop) = &self.drop else { return };
        let uidl = |drop: &Maildrop, i: usize| {
            format!("{:08X}{:08X}", drop.messages[i].uid, drop.uidvalidity)
        };
        match cmd {
            Command::Stat => {
                let (count, size) =
                    live(drop).fold((0u64, 0u64), |(c, s), (_, m)| (c + 1, s + m.size));
                self.ok(&format!("{count} {size}"));
            }
            Command::List(None) | Command::Uidl(None) => {
                let listing: Vec<String> = live(drop)
                    .map(|(i, m)| match cmd {
                        Command::List(_) => format!("{} {}", i + 1, m.size),
                        _ => format!("{} {}", i + 1, uidl(drop, i)),
                    })
                    .collect();
                self.ok("");
                for line in listing {
                    self.outbox.out.extend_from_slice(line.as_bytes());
                    self.outbox.out.extend_from_slice(b"\r\n");
                }
                self.outbox.out.extend_from_slice(b".\r\n");
            }
            Command::List(Some(n)) => {
                if let Some(i) = self.message(n) {
                    let size = self.drop.as_ref().map_or(0, |d| d.messages[i].size);
                    self.ok(&format!("{n} {size}"));
                }
            }
            Command::Uidl(Some(n)) => {
                if let Some(i) = self.message(n) {
                    let id = self.drop.as_ref().map(|d| uidl(d, i)).unwrap_or_default();
                    self.ok(&format!("{n} {id}"));
                }
            }
            Command::Retr(n) => self.start_transfer(n, None),
            Command::Top(n, lines) => self.start_transfer(n, Some(lines)),
            Command::Dele(n) => {
                if let Some(i) = self.message(n)
                    && let Some(d) = &mut self.drop
                {
                    d.deleted[i] = true;
                    self.ok("Marked to be deleted.");
                }
            }
            Command::Rset => {
                if let Some(d) = &mut self.drop {
                    d.deleted.iter_mut().for_each(|x| *x = false);
                }
                self.ok("");
            }
            Command::Noop => self.ok(""),
            _ => self.error("Unknown command in this state."),
        }
    }

    fn start_transfer(&mut self, n: u32, top: Option<u64>) {
        let Some(index) = self.message(n) else { return };
        self.transfer = Some(Transfer {
            index,
            offset: 0,
            encoder: MessageEncoder::new(top),
            started: false,
        });
        self.read_next();
    }

    fn read_next(&mut self) {
        let (Some(t), Some(d)) = (&self.transfer, &self.drop) else {
            return;
        };
        let effect = Effect::ReadMessage {
            user: d.user.clone(),
            name: d.messages[t.index].name.clone(),
            offset: t.offset,
            max: self.config.chunk_size,
        };
        self.request(effect, Pending::Read);
    }

    fn data(&mut self, bytes: Vec<u8>) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        if !t.started {
            t.started = true;
            let size = self.drop.as_ref().map_or(0, |d| d.messages[t.index].size);
            self.ok(&format!("{size} octets"));
        }
        if bytes.is_empty() || {
            t.encoder.feed(&bytes, &mut self.outbox.out);
            t.encoder.is_done()
        } {
            t.encoder.finish(&mut self.outbox.out);
            return;
        }
        t.offset += bytes.len() as u64;
        self.transfer = Some(t);
        self.read_next();
    }

    fn quit(&mut self) {
        let Some(d) = &self.drop else { return };
        let delete = live_or_deleted(d, true)
            .map(|(_, m)| m.name.clone())
            .collect();
        let user = d.user.clone();
        self.request(
            Effect::CloseMaildrop { user, delete },
            Pending::Close { quit: true },
        );
    }

    // ----- lifecycle -----

    fn step(&mut self) {
        if self.pending.is_some() || self.closed {
            return;
        }
        if self.shutting_down
            && self.ending.is_none()
            && self.transfer.is_none()
            && !self.lines.is_partial()
            && !matches!(self.phase, Phase::AuthResponse)
        {
            self.err("Server shutting down.");
            self.end(CloseReason::Shutdown);
        }
        if let Some(reason) = self.ending {
            // Leaving without QUIT: unlock, delete nothing (RFC 1939 6).
            if let Some(d) = self.drop.take() {
                let effect = Effect::CloseMaildrop {
                    user: d.user,
                    delete: Vec::new(),
                };
                self.request(effect, Pending::Close { quit: false });
                return;
            }
            self.closed = true;
            self.outbox.push(Event::Closed { reason });
        }
    }
}

/// Messages not marked deleted, with their indexes.
fn live(d: &Maildrop) -> impl Iterator<Item = (usize, &MaildropEntry)> {
    live_or_deleted(d, false)
}

fn live_or_deleted(d: &Maildrop, deleted: bool) -> impl Iterator<Item = (usize, &MaildropEntry)> {
    d.messages
        .iter()
        .enumerate()
        .filter(move |(i, _)| d.deleted[*i] == deleted)
}

impl Session for Pop3Session {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len()
            && self.pending.is_none()
            && self.delayed.is_none()
            && self.ending.is_none()
            && !self.closed
            && self.outbox.out.len() < OUTPUT_HIGH_WATER
        {
            let rest = &input[used..];
            if let Phase::AwaitTls = self.phase {
                used += rest.len();
                break;
            }
            let (n, line) = self.lines.read(rest);
            used += n;
            match line {
                Some(Line::Complete(line)) => {
                    if let Phase::AuthResponse = self.phase {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        self.auth_response(&text);
                    } else {
                        self.handle_line(line);
                    }
                }
                Some(Line::TooLong) => {
                    if let Phase::AuthResponse = self.phase {
                        self.phase = Phase::Authorization { user: None };
                    }
                    self.error("Line too long.");
                }
                None => {}
            }
        }
        if used > 0 {
            self.deadline = now + self.config.command_timeout;
        }
        self.step();
        used
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.transfer = None;
        self.end(CloseReason::PeerClosed);
        self.step();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, text)) = self.delayed
            && now >= at
        {
            self.delayed = None;
            self.err(text);
        }
        if self.pending.is_none()
            && self.ending.is_none()
            && self.delayed.is_none()
            && now >= self.deadline
        {
            self.err("Disconnected for inactivity.");
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
        self.deadline = now + self.config.command_timeout;
        match (what, completion) {
            (Pending::Auth, Completion::Auth(AuthOutcome::Success(user))) => {
                self.request(
                    Effect::OpenMaildrop { user: user.clone() },
                    Pending::Open(user),
                );
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::TempFail)) => {
                self.err("[SYS/TEMP] Temporary authentication failure.");
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::FailureAfter(wait))) => self
                .login_failed(Some(
                    now + wait.saturating_sub(self.config.auth_failure_delay),
                )),
            (Pending::Auth, _) => self.login_failed(Some(now)),
            (
                Pending::Open(user),
                Completion::Maildrop(MaildropOutcome::Ready {
                    uidvalidity,
                    messages,
                }),
            ) => {
                let deleted = vec![false; messages.len()];
                self.drop = Some(Maildrop {
                    user,
                    uidvalidity,
                    messages,
                    deleted,
                });
                self.phase = Phase::Transaction;
                self.ok("Logged in.");
            }
            (Pending::Open(_), Completion::Maildrop(MaildropOutcome::InUse)) => {
                self.err("[IN-USE] Mailbox is locked by another POP3 session.");
            }
            (Pending::Open(_), _) => {
                self.err("[SYS/TEMP] Mailbox is unavailable, try again later.")
            }
            (Pending::Read, Completion::Data(bytes)) => self.data(bytes),
            (Pending::Read, _) => {
                let started = self.transfer.take().is_some_and(|t| t.started);
                if started {
                    // Half a message is already out: only a dropped connection tells the truth.
                    self.end(CloseReason::LocalError);
                } else {
                    self.err("[SYS/TEMP] Message is unavailable.");
                }
            }
            (Pending::Close { quit: true }, Completion::Done) => {
                self.drop = None;
                self.ok("Logging out, messages deleted.");
                self.end(CloseReason::Quit);
            }
            (Pending::Close { quit: true }, _) => {
                self.drop = None;
                self.err("[SYS/TEMP] Some deleted messages were not removed.");
                self.end(CloseReason::Quit);
            }
            (Pending::Close { quit: false }, _) => {}
        }
        self.step();
    }

    fn handle_tls_established(&mut self, _now: Instant, info: TlsInfo) {
        self.tls = Some(info);
        self.lines.clear();
        self.phase = Phase::Authorization { user: None };
    }

    fn handle_shutdown(&mut self, _now: Instant) {
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
        if let Some((at, _)) = self.delayed {
            return Some(at);
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
        self.outbox.out.len() + self.lines.buffered()
    }
}

impl std::fmt::Debug for Pop3Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Session")
            .field("session", &self.peer.session_id)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
