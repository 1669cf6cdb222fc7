//! The ManageSieve server session (RFC 5804) as a pure state machine.
//!
//! Input is split into command lines and literals here: a line ending in `{N+}` (or `{N}`,
//! which Petrel treats the same and answers with nothing, as RFC 5804 clients send `{N+}`)
//! is followed by N octets that belong to the same command. Literals are buffered up to the
//! script size limit; a bigger one is skipped octet by octet without being held, and the
//! command is answered `NO (QUOTA/MAXSIZE)`. Scripts are parsed with [`crate::sieve::parse`]
//! before they go to the store, so a bad one is refused with its line and column.

use super::command::{self, Command, Token, write_string};
use super::{ManageSieveConfig, ScriptEntry, SieveAnswer, SieveRequest, check_script_name};
use crate::effect::{AuthOutcome, Completion, Effect, Secret, UserId};
use crate::line::{Line, LineReader};
use crate::outbox::Outbox;
use crate::sasl::{self, SaslError};
use crate::service::PeerInfo;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use crate::sieve::{self, SUPPORTED_EXTENSIONS};
use std::sync::Arc;
use std::time::Instant;

/// Output buffered before the session stops consuming input.
const OUTPUT_HIGH_WATER: usize = 128 * 1024;

/// Most tokens (command name and arguments) one command may have.
const MAX_TOKENS: usize = 8;

/// Octets of string arguments one command may hold beyond the script size limit (names).
const NAME_ALLOWANCE: usize = 2 * command::MAX_QUOTED;

/// How the next input octets are read.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// A line (or the rest of a command after a literal).
    Line,
    /// The octets of an accepted literal.
    Literal { remaining: usize },
    /// The octets of a refused literal, dropped as they come.
    Skip { remaining: u64 },
}

/// Why the command being read will be refused once it ends.
#[derive(Debug, Clone, Copy)]
enum Poison {
    Syntax(&'static str),
    TooBig,
}

/// The command being read.
#[derive(Debug)]
struct Framer {
    reading: Reading,
    tokens: Vec<Token>,
    literal: Vec<u8>,
    held: usize,
    poison: Option<Poison>,
}

impl Framer {
    fn new() -> Self {
        Framer {
            reading: Reading::Line,
            tokens: Vec::new(),
            literal: Vec::new(),
            held: 0,
            poison: None,
        }
    }

    fn is_partial(&self) -> bool {
        !self.tokens.is_empty() || self.poison.is_some() || !matches!(self.reading, Reading::Line)
    }
}

/// What a request in flight is for.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Auth,
    Sieve(Op),
}

/// Which command a store request answers.
#[derive(Debug, Clone, Copy)]
enum Op {
    List,
    Get,
    Put,
    Delete,
    Rename,
    SetActive,
    HaveSpace,
}

#[derive(Debug)]
enum Phase {
    /// Not authenticated.
    Anonymous,
    /// AUTHENTICATE PLAIN waiting for the client's response string.
    AuthResponse,
    /// Authenticated as this user.
    Authenticated(UserId),
    /// STARTTLS accepted; input is discarded until the handshake.
    AwaitTls,
}

/// A ManageSieve server session (see the module docs and [`Session`]).
pub struct ManageSieveSession {
    config: Arc<ManageSieveConfig>,
    peer: PeerInfo,
    tls: Option<TlsInfo>,
    outbox: Outbox,
    pending: Option<(RequestId, Pending)>,
    phase: Phase,
    lines: LineReader,
    framer: Framer,
    errors: u32,
    auth_failures: u32,
    deadline: Instant,
    delayed: Option<(Instant, &'static str)>,
    ending: Option<CloseReason>,
    shutting_down: bool,
    closed: bool,
}

impl ManageSieveSession {
    /// Opens a session and queues the greeting (the capabilities, then OK).
    pub fn new(config: Arc<ManageSieveConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = ManageSieveSession {
            deadline: now + config.command_timeout,
            tls: peer.tls.clone(),
            config,
            peer,
            outbox: Outbox::default(),
            pending: None,
            phase: Phase::Anonymous,
            lines: LineReader::default(),
            framer: Framer::new(),
            errors: 0,
            auth_failures: 0,
            delayed: None,
            ending: None,
            shutting_down: false,
            closed: false,
        };
        s.capabilities();
        s.reply("OK", None, "Petrel ManageSieve ready.");
        s
    }

    /// Opens a session that only says the server is busy, then closes.
    pub fn refuse(config: Arc<ManageSieveConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Self::new(config, peer, now);
        s.outbox.out.clear();
        s.reply(
            "BYE",
            Some("TRYLATER"),
            "Too many connections, try again later.",
        );
        s.end(CloseReason::Refused);
        s.step();
        s
    }

    // ----- replies -----

    fn reply(&mut self, status: &str, code: Option<&str>, text: &str) {
        let out = &mut self.outbox.out;
        out.extend_from_slice(status.as_bytes());
        if let Some(code) = code {
            out.extend_from_slice(b" (");
            out.extend_from_slice(code.as_bytes());
            out.push(b')');
        }
        out.push(b' ');
        write_string(out, text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self, text: &str) {
        self.reply("OK", None, text);
    }

    fn no(&mut self, code: Option<&str>, text: &str) {
        self.reply("NO", code, text);
    }

    /// A client mistake: counted; too many end the session.
    fn error(&mut self, text: &str) {
        self.no(None, text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.reply("BYE", None, "Too many errors, closing connection.");
            self.end(CloseReason::TooManyErrors);
        }
    }

    fn string_line(&mut self, parts: &[&[u8]]) {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.outbox.out.push(b' ');
            }
            write_string(&mut self.outbox.out, p);
        }
        self.outbox.out.extend_from_slice(b"\r\n");
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls.is_some() || (self.peer.loopback && self.config.allow_plaintext_on_loopback)
    }

    /// The capability lines (RFC 5804 1.7), without the final OK.
    fn capabilities(&mut self) {
        self.string_line(&[b"IMPLEMENTATION", b"Petrel"]);
        let sasl: &[u8] = if self.plaintext_allowed() {
            b"PLAIN"
        } else {
            b""
        };
        self.string_line(&[b"SASL", sasl]);
        let extensions = SUPPORTED_EXTENSIONS.join(" ");
        self.string_line(&[b"SIEVE", extensions.as_bytes()]);
        let authenticated = matches!(self.phase, Phase::Authenticated(_));
        if self.config.starttls && self.tls.is_none() && !authenticated {
            self.string_line(&[b"STARTTLS"]);
        }
        let redirects = self.config.max_redirects.to_string();
        self.string_line(&[b"MAXREDIRECTS", redirects.as_bytes()]);
        if let Phase::Authenticated(user) = &self.phase {
            let owner = user.0.clone();
            self.string_line(&[b"OWNER", owner.as_bytes()]);
        }
        self.string_line(&[b"VERSION", b"1.0"]);
    }

    fn request(&mut self, effect: Effect, what: Pending) {
        debug_assert!(self.pending.is_none(), "one request at a time");
        let id = self.outbox.request(effect);
        self.pending = Some((id, what));
    }

    fn sieve(&mut self, request: SieveRequest, op: Op) {
        let Phase::Authenticated(user) = &self.phase else {
            return;
        };
        let effect = Effect::Sieve {
            user: user.clone(),
            request,
        };
        self.request(effect, Pending::Sieve(op));
    }

    fn end(&mut self, reason: CloseReason) {
        if self.ending.is_none() {
            self.ending = Some(reason);
        }
    }

    // ----- framing -----

    /// A complete line: part of a command, or its end.
    fn handle_line(&mut self, line: Vec<u8>) {
        let f = &mut self.framer;
        let (part, literal) = match command::literal_marker(&line) {
            Some((at, n)) => (&line[..at], Some(n)),
            None => (&line[..], None),
        };
        if f.poison.is_none() {
            if let Err(e) = command::tokenize(part, &mut f.tokens) {
                f.poison = Some(Poison::Syntax(e.0));
            } else if f.tokens.len() + usize::from(literal.is_some()) > MAX_TOKENS {
                f.poison = Some(Poison::Syntax("Too many arguments."));
            }
        }
        f.held += part.len();
        if let Some(n) = literal {
            let limit = self.config.sieve_limits.max_script_size + NAME_ALLOWANCE;
            let fits = usize::try_from(n).is_ok_and(|n| {
                n <= self.config.sieve_limits.max_script_size && f.held + n <= limit
            });
            if fits && f.poison.is_none() {
                let n = n as usize;
                f.held += n;
                f.literal = Vec::with_capacity(n);
                f.reading = Literal { remaining: n };
                if n == 0 {
                    self.literal_done();
                }
            } else {
                if f.poison.is_none() {
                    f.poison = Some(Poison::TooBig);
                }
                f.reading = Skip { remaining: n };
                if n == 0 {
                    f.reading = Reading::Line;
                }
            }
            return;
        }
        let tokens = std::mem::take(&mut f.tokens);
        let poison = f.poison.take();
        f.held = 0;
        match poison {
            Some(Poison::TooBig) => {
                if let Phase::AuthResponse = self.phase {
                    self.phase = Phase::Anonymous;
                }
                self.no(Some("QUOTA/MAXSIZE"), "String too large.");
            }
            Some(Poison::Syntax(text)) => {
                if let Phase::AuthResponse = self.phase {
                    self.phase = Phase::Anonymous;
                }
                self.error(text);
            }
            None if tokens.is_empty() && !matches!(self.phase, Phase::AuthResponse) => {}
            None => self.handle_tokens(tokens),
        }
    }

    fn literal_done(&mut self) {
        let f = &mut self.framer;
        let bytes = std::mem::take(&mut f.literal);
        f.tokens.push(Token::Str(bytes));
        f.reading = Reading::Line;
    }

    fn handle_tokens(&mut self, tokens: Vec<Token>) {
        if let Phase::AuthResponse = self.phase {
            self.phase = Phase::Anonymous;
            let response = match <[Token; 1]>::try_from(tokens) {
                Ok([Token::Str(s)]) => String::from_utf8_lossy(&s).into_owned(),
                Ok([Token::Atom(a)]) => a,
                _ => return self.error("Expected one string as the authentication response."),
            };
            return self.auth_response(&response);
        }
        match command::parse(tokens) {
            Ok(cmd) => self.handle_command(cmd),
            Err(e) => self.error(e.0),
        }
    }

    // ----- commands -----

    fn handle_command(&mut self, cmd: Command) {
        let authenticated = matches!(self.phase, Phase::Authenticated(_));
        match cmd {
            Command::Capability => {
                self.capabilities();
                self.ok("Capability completed.");
            }
            Command::Logout => {
                self.ok("Logout completed.");
                self.end(CloseReason::Quit);
            }
            Command::Noop(tag) => match tag {
                Some(tag) => {
                    let out = &mut self.outbox.out;
                    out.extend_from_slice(b"OK (TAG ");
                    write_string(out, &tag);
                    out.extend_from_slice(b") \"Done\"\r\n");
                }
                None => self.ok("Done"),
            },
            Command::StartTls | Command::Authenticate { .. } if authenticated => {
                self.error("Already authenticated.")
            }
            Command::StartTls => self.starttls(),
            Command::Authenticate { mechanism, initial } => self.authenticate(&mechanism, initial),
            _ if !authenticated => self.error("Authenticate first."),
            Command::Unauthenticate => {
                self.phase = Phase::Anonymous;
                self.ok("Unauthenticate completed.");
            }
            Command::ListScripts => self.sieve(SieveRequest::List, Op::List),
            Command::GetScript(name) => {
                if let Some(name) = self.existing_name(&name) {
                    self.sieve(SieveRequest::Get { name }, Op::Get);
                }
            }
            Command::DeleteScript(name) => {
                if let Some(name) = self.existing_name(&name) {
                    self.sieve(SieveRequest::Delete { name }, Op::Delete);
                }
            }
            Command::SetActive(name) if name.is_empty() => {
                self.sieve(SieveRequest::SetActive { name: None }, Op::SetActive)
            }
            Command::SetActive(name) => {
                if let Some(name) = self.existing_name(&name) {
                    let name = Some(name);
                    self.sieve(SieveRequest::SetActive { name }, Op::SetActive);
                }
            }
            Command::RenameScript(from, to) => {
                if let Some(from) = self.existing_name(&from)
                    && let Some(to) = self.new_name(&to)
                {
                    self.sieve(SieveRequest::Rename { from, to }, Op::Rename);
                }
            }
            Command::HaveSpace { name, size } => {
                let Some(name) = self.new_name(&name) else {
                    return;
                };
                if size > self.config.sieve_limits.max_script_size as u64 {
                    return self.no(Some("QUOTA/MAXSIZE"), "Script too large.");
                }
                self.sieve(SieveRequest::HaveSpace { name, size }, Op::HaveSpace);
            }
            Command::PutScript { name, script } => {
                let Some(name) = self.new_name(&name) else {
                    return;
                };
                if let Some(script) = self.check(script) {
                    self.sieve(SieveRequest::Put { name, script }, Op::Put);
                }
            }
            Command::CheckScript(script) => {
                if self.check(script).is_some() {
                    self.ok("Script is valid.");
                }
            }
        }
    }

    /// A name for a script that must exist: an impossible one cannot.
    fn existing_name(&mut self, name: &[u8]) -> Option<String> {
        match std::str::from_utf8(name).map(|n| (n, check_script_name(n))) {
            Ok((n, Ok(()))) => Some(n.to_string()),
            _ => {
                self.no(Some("NONEXISTENT"), "There is no script by that name.");
                None
            }
        }
    }

    /// A name for a script to create.
    fn new_name(&mut self, name: &[u8]) -> Option<String> {
        match std::str::from_utf8(name).map(|n| (n, check_script_name(n))) {
            Ok((n, Ok(()))) => Some(n.to_string()),
            Ok((_, Err(why))) => {
                self.no(None, why);
                None
            }
            Err(_) => {
                self.no(None, "Script name is not UTF-8.");
                None
            }
        }
    }

    /// Parses a script; a bad one is answered with NO and its line and column.
    fn check(&mut self, script: Vec<u8>) -> Option<String> {
        if script.len() > self.config.sieve_limits.max_script_size {
            self.no(Some("QUOTA/MAXSIZE"), "Script too large.");
            return None;
        }
        let Ok(script) = String::from_utf8(script) else {
            self.no(None, "Script is not UTF-8.");
            return None;
        };
        match sieve::parse(&script, &self.config.sieve_limits) {
            Ok(_) => Some(script),
            Err(e) => {
                self.no(None, &e.to_string());
                None
            }
        }
    }

    fn starttls(&mut self) {
        if self.tls.is_some() || !self.config.starttls {
            return self.error("TLS is not available here.");
        }
        self.ok("Begin TLS negotiation now.");
        self.phase = Phase::AwaitTls;
        self.lines.clear();
        self.framer = Framer::new();
        self.outbox.push(Event::StartTls);
    }

    fn authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) {
        if !self.plaintext_allowed() {
            return self.no(
                Some("ENCRYPT-NEEDED"),
                "Use STARTTLS before authenticating.",
            );
        }
        if mechanism != "PLAIN" {
            return self.error("Unsupported authentication mechanism.");
        }
        match initial {
            Some(ir) => self.auth_response(&String::from_utf8_lossy(&ir)),
            None => {
                self.outbox.out.extend_from_slice(b"\"\"\r\n");
                self.phase = Phase::AuthResponse;
            }
        }
    }

    fn auth_response(&mut self, response: &str) {
        match sasl::decode_response(response).and_then(|raw| sasl::parse_plain(&raw)) {
            Ok(creds) => {
                let effect = Effect::Authenticate {
                    username: creds.username,
                    password: Secret::new(creds.password),
                    client_ip: self.peer.ip.clone(),
                    loopback: self.peer.loopback,
                };
                self.request(effect, Pending::Auth);
            }
            Err(SaslError::Cancelled) => self.error("Authentication aborted by client."),
            Err(SaslError::Malformed) => self.error("Invalid authentication response."),
            Err(SaslError::AuthzidMismatch) => self.login_failed(None),
        }
    }

    fn login_failed(&mut self, now: Option<Instant>) {
        self.auth_failures += 1;
        const FAILED: &str = "Authentication failed.";
        if self.auth_failures >= self.config.max_auth_failures {
            self.no(None, FAILED);
            self.reply("BYE", None, "Too many authentication failures.");
            self.end(CloseReason::TooManyErrors);
        } else if let Some(now) = now {
            self.delayed = Some((now + self.config.auth_failure_delay, FAILED));
        } else {
            self.no(None, FAILED);
        }
    }

    fn answer(&mut self, op: Op, answer: SieveAnswer) {
        match answer {
            SieveAnswer::Done => self.ok(match op {
                Op::Put => "Putscript completed.",
                Op::Delete => "Deletescript completed.",
                Op::Rename => "Renamescript completed.",
                Op::SetActive => "Setactive completed.",
                Op::HaveSpace => "Putscript would succeed.",
                Op::List | Op::Get => "Completed.",
            }),
            SieveAnswer::Scripts(scripts) => {
                for ScriptEntry { name, active } in scripts {
                    write_string(&mut self.outbox.out, name.as_bytes());
                    if active {
                        self.outbox.out.extend_from_slice(b" ACTIVE");
                    }
                    self.outbox.out.extend_from_slice(b"\r\n");
                }
                self.ok("Listscripts completed.");
            }
            SieveAnswer::Script(text) => {
                let out = &mut self.outbox.out;
                out.extend_from_slice(format!("{{{}}}\r\n", text.len()).as_bytes());
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.ok("Getscript completed.");
            }
            SieveAnswer::NonExistent => {
                self.no(Some("NONEXISTENT"), "There is no script by that name.")
            }
            SieveAnswer::AlreadyExists => self.no(
                Some("ALREADYEXISTS"),
                "A script by that name already exists.",
            ),
            SieveAnswer::Active => self.no(Some("ACTIVE"), "You may not delete an active script."),
            SieveAnswer::TooManyScripts => self.no(Some("QUOTA/MAXSCRIPTS"), "Too many scripts."),
            SieveAnswer::InvalidName => self.no(None, "Invalid script name."),
        }
    }

    // ----- lifecycle -----

    fn step(&mut self) {
        if self.pending.is_some() || self.closed {
            return;
        }
        if self.shutting_down
            && self.ending.is_none()
            && !self.lines.is_partial()
            && !self.framer.is_partial()
            && !matches!(self.phase, Phase::AuthResponse)
        {
            self.reply("BYE", None, "Server shutting down.");
            self.end(CloseReason::Shutdown);
        }
        if let Some(reason) = self.ending {
            self.closed = true;
            self.outbox.push(Event::Closed { reason });
        }
    }
}

use Reading::{Literal, Skip};

impl Session for ManageSieveSession {
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
            match self.framer.reading {
                Literal { remaining } => {
                    let take = remaining.min(rest.len());
                    self.framer.literal.extend_from_slice(&rest[..take]);
                    used += take;
                    self.framer.reading = Literal {
                        remaining: remaining - take,
                    };
                    if remaining == take {
                        self.literal_done();
                    }
                }
                Skip { remaining } => {
                    let take = remaining.min(rest.len() as u64);
                    used += take as usize;
                    self.framer.reading = if remaining == take {
                        Reading::Line
                    } else {
                        Skip {
                            remaining: remaining - take,
                        }
                    };
                }
                Reading::Line => {
                    let (n, line) = self.lines.read(rest);
                    used += n;
                    match line {
                        Some(Line::Complete(line)) => self.handle_line(line),
                        Some(Line::TooLong) => {
                            if let Phase::AuthResponse = self.phase {
                                self.phase = Phase::Anonymous;
                            }
                            self.framer = Framer::new();
                            self.error("Line too long.");
                        }
                        None => {}
                    }
                }
            }
        }
        if used > 0 {
            self.deadline = now + self.config.command_timeout;
        }
        self.step();
        used
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.end(CloseReason::PeerClosed);
        self.step();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, text)) = self.delayed
            && now >= at
        {
            self.delayed = None;
            self.no(None, text);
        }
        if self.pending.is_none()
            && self.ending.is_none()
            && self.delayed.is_none()
            && now >= self.deadline
        {
            self.reply("BYE", None, "Disconnected for inactivity.");
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
                self.phase = Phase::Authenticated(user);
                self.ok("Logged in.");
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::TempFail)) => {
                self.no(Some("TRYLATER"), "Temporary authentication failure.");
            }
            (Pending::Auth, Completion::Auth(AuthOutcome::FailureAfter(wait))) => self
                .login_failed(Some(
                    now + wait.saturating_sub(self.config.auth_failure_delay),
                )),
            (Pending::Auth, _) => self.login_failed(Some(now)),
            (Pending::Sieve(op), Completion::Sieve(answer)) => self.answer(op, answer),
            (Pending::Sieve(_), _) => {
                self.no(Some("TRYLATER"), "Storage is unavailable, try again later.")
            }
        }
        self.step();
    }

    fn handle_tls_established(&mut self, _now: Instant, info: TlsInfo) {
        self.tls = Some(info);
        self.lines.clear();
        self.framer = Framer::new();
        self.phase = Phase::Anonymous;
        // RFC 5804 2.2: the capabilities again, now that they changed, then OK.
        self.capabilities();
        self.ok("TLS negotiation successful.");
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
        self.outbox.out.len() + self.lines.buffered() + self.framer.held
    }
}

impl std::fmt::Debug for ManageSieveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManageSieveSession")
            .field("session", &self.peer.session_id)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}
