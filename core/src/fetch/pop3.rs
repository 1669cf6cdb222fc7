//! The POP3 fetch client (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH PLAIN RFC 5034).
//!
//! One pass per connection: greeting, CAPA, STLS when offered, AUTH PLAIN (or USER/PASS),
//! UIDL and LIST, then every message whose UIDL the account has not fetched yet, oldest first,
//! with RETR (dot-unstuffed as it streams, handed to the store in bounded chunks), DELE once
//! durable here unless the account keeps mail, and QUIT, which makes the deletions happen.
//! Messages fetched earlier but still on the remote (a crash before QUIT) are deleted again.

use super::{
    Delivery, DeliveryStep, FetchAccount, FetchAnswer, FetchConfig, FetchRequest, FetchState,
    LineRead, Lines, Security, Verdict, clean, describe, pop3_key, sasl_plain,
};
use crate::effect::{Completion, Effect};
use crate::outbox::Outbox;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// What the next response from the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Greeting,
    Capa,
    CapaLines,
    Stls,
    AuthPlain,
    User,
    Pass,
    Uidl,
    UidlLines,
    List,
    ListLines,
    Retr,
    Body,
    Dele,
    Quit,
    /// Nothing is expected from the server (waiting on the store, or over).
    Nothing,
}

impl Wait {
    fn stage(self) -> &'static str {
        match self {
            Wait::Greeting => "waiting for the greeting",
            Wait::Capa | Wait::CapaLines => "after CAPA",
            Wait::Stls => "after STLS",
            Wait::AuthPlain | Wait::User | Wait::Pass => "during login",
            Wait::Uidl | Wait::UidlLines => "after UIDL",
            Wait::List | Wait::ListLines => "after LIST",
            Wait::Retr | Wait::Body => "during RETR",
            Wait::Dele => "after DELE",
            Wait::Quit => "after QUIT",
            Wait::Nothing => "",
        }
    }
}

/// What an outstanding request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Load,
    Retain,
    Progress,
    Pending,
    Step(DeliveryStep),
    Delivered,
}

/// Where a multi-line body is, for dot-unstuffing and the terminating `.` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dots {
    LineStart,
    Mid,
    Dot,
    DotCr,
}

/// A POP3 fetch session (see the module docs).
pub struct Pop3Fetch {
    account: Arc<FetchAccount>,
    config: Arc<FetchConfig>,
    out: Outbox,
    lines: Lines,
    wait: Wait,
    deadline: Option<Instant>,
    pending: Option<(RequestId, Req)>,
    /// Requests of the ending still unanswered.
    ending: usize,
    quit_after_ending: bool,
    tls: bool,
    caps: Vec<String>,
    state: FetchState,
    /// (message number, UIDL) from UIDL.
    uidls: Vec<(u32, String)>,
    /// (message number, size) from LIST.
    sizes: Vec<(u32, u64)>,
    todo: VecDeque<(u32, String, u64)>,
    deletes: VecDeque<u32>,
    total: u64,
    /// Messages finished this pass (stored, or refused by a scanner).
    done: u64,
    fetched: u64,
    current: Option<(u32, Delivery)>,
    dots: Dots,
    notes: Vec<String>,
    error: Option<String>,
    closed: bool,
    /// The UIDL listing was longer than [`super::MAX_MESSAGES`].
    truncated: bool,
}

impl Pop3Fetch {
    /// A session over a freshly connected socket (TLS already up for `pop3s://`). It first
    /// asks for the account's state, then reads the greeting.
    pub fn new(account: Arc<FetchAccount>, config: Arc<FetchConfig>, now: Instant) -> Self {
        let mut s = Pop3Fetch {
            tls: account.security == Security::Implicit,
            account,
            config,
            out: Outbox::default(),
            lines: Lines::default(),
            wait: Wait::Greeting,
            deadline: None,
            pending: None,
            ending: 0,
            quit_after_ending: false,
            caps: Vec::new(),
            state: FetchState::default(),
            uidls: Vec::new(),
            sizes: Vec::new(),
            todo: VecDeque::new(),
            deletes: VecDeque::new(),
            total: 0,
            done: 0,
            fetched: 0,
            current: None,
            dots: Dots::LineStart,
            notes: Vec::new(),
            error: None,
            closed: false,
            truncated: false,
        };
        s.request(Req::Load, FetchRequest::Load);
        s.deadline = Some(now + s.config.command_timeout);
        s
    }

    fn request(&mut self, what: Req, request: FetchRequest) {
        let effect = Effect::Fetch {
            user: self.account.user.clone(),
            account: self.account.id,
            request,
        };
        let id = self.out.request(effect);
        self.pending = Some((id, what));
    }

    fn send(&mut self, now: Instant, line: &str, wait: Wait) {
        self.out.out.extend_from_slice(line.as_bytes());
        self.out.out.extend_from_slice(b"\r\n");
        self.wait = wait;
        self.deadline = Some(now + self.config.command_timeout);
    }

    /// Gives up: aborts the open transaction, reports, and ends (saying QUIT when the
    /// conversation is still in step, which applies the deletions of messages already durable).
    fn fail(&mut self, reason: String, quit: bool) {
        if self.ending > 0 || self.closed {
            return;
        }
        self.error.get_or_insert(reason);
        self.wait = Wait::Nothing;
        // An answer still outstanding is now part of the ending.
        if self.pending.take().is_some() {
            self.ending += 1;
        }
        if let Some(tx) = self.current.as_mut().and_then(|(_, d)| d.take_tx()) {
            self.out.request(Effect::Abort { tx });
            self.ending += 1;
        }
        self.quit_after_ending = quit;
        self.report();
    }

    fn report(&mut self) {
        self.out.request(Effect::Fetch {
            user: self.account.user.clone(),
            account: self.account.id,
            request: FetchRequest::Finished {
                fetched: self.fetched,
                error: self.error.clone(),
                notes: self.notes.clone(),
            },
        });
        self.ending += 1;
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.wait = Wait::Nothing;
            self.out.push(Event::Closed { reason });
        }
    }

    /// One complete response line.
    fn line(&mut self, now: Instant, line: &[u8]) {
        let ok = line.starts_with(b"+OK");
        let err = line.starts_with(b"-ERR");
        let text = clean(line);
        match self.wait {
            Wait::Greeting => {
                if !ok {
                    return self.fail(format!("the server refused the connection: {text}"), false);
                }
                self.send(now, "CAPA", Wait::Capa);
            }
            Wait::Capa => {
                if ok {
                    self.caps.clear();
                    self.wait = Wait::CapaLines;
                } else {
                    // No CAPA (RFC 1939 server): USER/PASS without STLS.
                    self.caps.clear();
                    self.after_capa(now);
                }
            }
            Wait::CapaLines => {
                if line == b"." {
                    self.after_capa(now);
                } else {
                    self.caps
                        .push(String::from_utf8_lossy(line).to_ascii_uppercase());
                }
            }
            Wait::Stls => {
                if ok {
                    self.wait = Wait::Nothing;
                    self.deadline = None;
                    self.out.push(Event::StartTls);
                } else if self.tls_required() {
                    self.fail(format!("the server refused STLS: {text}"), true);
                } else {
                    self.login(now);
                }
            }
            Wait::AuthPlain | Wait::Pass => {
                if ok {
                    self.send(now, "UIDL", Wait::Uidl);
                } else {
                    self.fail(format!("login failed: {text}"), true);
                }
            }
            Wait::User => {
                if ok {
                    let pass = format!("PASS {}", self.account.password.expose());
                    self.send(now, &pass, Wait::Pass);
                } else {
                    self.fail(format!("login failed: {text}"), true);
                }
            }
            Wait::Uidl => {
                if ok {
                    self.wait = Wait::UidlLines;
                } else {
                    self.fail(
                        format!(
                            "the server does not support UIDL, which safe fetching needs: {text}"
                        ),
                        true,
                    );
                }
            }
            Wait::UidlLines => {
                if line == b"." {
                    self.send(now, "LIST", Wait::List);
                } else {
                    let mut parts = text.split_ascii_whitespace();
                    match (parts.next().and_then(|n| n.parse().ok()), parts.next()) {
                        (Some(_), Some(_)) if self.uidls.len() >= super::MAX_MESSAGES => {
                            self.truncated = true;
                        }
                        (Some(n), Some(uidl)) => self.uidls.push((n, uidl.to_string())),
                        _ => self.fail(format!("bad UIDL line: {text}"), false),
                    }
                }
            }
            Wait::List => {
                if ok {
                    self.wait = Wait::ListLines;
                } else {
                    self.fail(format!("LIST failed: {text}"), true);
                }
            }
            Wait::ListLines => {
                if line == b"." {
                    self.plan();
                } else {
                    let mut parts = text.split_ascii_whitespace();
                    match (
                        parts.next().and_then(|n| n.parse().ok()),
                        parts.next().and_then(|n| n.parse().ok()),
                    ) {
                        (Some(_), Some(_)) if self.sizes.len() >= super::MAX_MESSAGES => {}
                        (Some(n), Some(size)) => self.sizes.push((n, size)),
                        _ => self.fail(format!("bad LIST line: {text}"), false),
                    }
                }
            }
            Wait::Retr => {
                if ok {
                    self.wait = Wait::Body;
                    self.dots = Dots::LineStart;
                } else {
                    // Gone meanwhile (another client deleted it): nothing was stored.
                    self.fail(format!("RETR failed: {text}"), true);
                }
            }
            Wait::Dele => {
                if !ok {
                    self.notes.push(format!("DELE failed: {text}"));
                }
                self.step(now);
            }
            Wait::Quit => {
                self.wait = Wait::Nothing;
                if ok {
                    self.report();
                } else {
                    self.fail(
                        format!("QUIT failed (deletions not applied): {text}"),
                        false,
                    );
                }
            }
            Wait::Body | Wait::Nothing => {
                if !err {
                    return self.fail(format!("unexpected line from the server: {text}"), false);
                }
                self.fail(format!("the server said: {text}"), false);
            }
        }
    }

    fn tls_required(&self) -> bool {
        matches!(self.account.security, Security::StartTls { required: true })
    }

    fn has_cap(&self, name: &str) -> bool {
        self.caps
            .iter()
            .any(|c| c.split_ascii_whitespace().next() == Some(name))
    }

    fn after_capa(&mut self, now: Instant) {
        if !self.tls {
            if self.has_cap("STLS") {
                return self.send(now, "STLS", Wait::Stls);
            }
            if self.tls_required() {
                return self.fail(
                    "the server does not offer STLS; the password is not sent in plaintext".into(),
                    true,
                );
            }
        }
        self.login(now);
    }

    fn login(&mut self, now: Instant) {
        let sasl_plain_offered = self.caps.iter().any(|c| {
            let mut w = c.split_ascii_whitespace();
            w.next() == Some("SASL") && w.any(|m| m == "PLAIN")
        });
        if sasl_plain_offered {
            let line = format!(
                "AUTH PLAIN {}",
                sasl_plain(&self.account.login, self.account.password.expose())
            );
            self.send(now, &line, Wait::AuthPlain);
        } else {
            let line = format!("USER {}", self.account.login);
            self.send(now, &line, Wait::User);
        }
    }

    /// UIDL and LIST are in: decide what to fetch and what to delete.
    fn plan(&mut self) {
        self.wait = Wait::Nothing;
        self.sizes.sort_unstable();
        let mut keys = Vec::with_capacity(self.uidls.len());
        for (n, uidl) in std::mem::take(&mut self.uidls) {
            keys.push(pop3_key(&uidl));
            if self.state.uidls.contains(&uidl) {
                if !self.account.keep && !self.state.left_on_remote.contains(&pop3_key(&uidl)) {
                    self.deletes.push_back(n);
                }
                continue;
            }
            let size = match self.sizes.binary_search_by_key(&n, |&(m, _)| m) {
                Ok(i) => self.sizes[i].1,
                Err(_) => 0,
            };
            if size > self.config.max_message_size {
                self.notes.push(format!(
                    "message {uidl} ({size} octets) is larger than limits.max_message_size; left on the server"
                ));
                continue;
            }
            self.todo.push_back((n, uidl, size));
        }
        self.total = self.todo.len() as u64;
        if self.truncated {
            // Only part of the listing was kept: forget nothing this time.
            keys.extend(self.state.uidls.iter().map(|u| pop3_key(u)));
        }
        self.request(Req::Retain, FetchRequest::Retain { keys });
    }

    /// The next thing to do after the listing or a message: a deletion, a message, or QUIT.
    fn step(&mut self, now: Instant) {
        if let Some(n) = self.deletes.pop_front() {
            return self.send(now, &format!("DELE {n}"), Wait::Dele);
        }
        if let Some((n, uidl, _size)) = self.todo.pop_front() {
            let key = pop3_key(&uidl);
            self.current = Some((n, Delivery::new(key.clone())));
            self.wait = Wait::Nothing;
            return self.request(Req::Pending, FetchRequest::Pending { key });
        }
        self.send(now, "QUIT", Wait::Quit);
    }

    /// Hands the next store request of the current message out, if one is due.
    fn flush(&mut self, now: Instant) {
        let Some((_, d)) = self.current.as_mut() else {
            return;
        };
        let via = if self.tls { "POP3S" } else { "POP3" };
        if let Some((step, effect)) = d.next_effect(now, &self.account, &self.config, via) {
            let id = self.out.request(effect);
            self.pending = Some((id, Req::Step(step)));
        }
    }

    /// Streams body bytes of the current message; returns the bytes consumed.
    fn body(&mut self, input: &[u8]) -> usize {
        let Some((_, d)) = self.current.as_mut() else {
            return 0;
        };
        let mut i = 0;
        while i < input.len() && !d.full() && !d.ended {
            match self.dots {
                Dots::Mid => {
                    let room = d.room().max(1);
                    let window = &input[i..input.len().min(i + room)];
                    match window.iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            d.push(&window[..=p]);
                            i += p + 1;
                            self.dots = Dots::LineStart;
                        }
                        None => {
                            d.push(window);
                            i += window.len();
                        }
                    }
                }
                Dots::LineStart => {
                    if input[i] == b'.' {
                        self.dots = Dots::Dot;
                        i += 1;
                    } else {
                        self.dots = Dots::Mid;
                    }
                }
                Dots::Dot => match input[i] {
                    b'\r' => {
                        self.dots = Dots::DotCr;
                        i += 1;
                    }
                    b'\n' => {
                        d.ended = true;
                        i += 1;
                    }
                    // A stuffed dot: drop it, keep the rest of the line.
                    _ => self.dots = Dots::Mid,
                },
                Dots::DotCr => {
                    if input[i] == b'\n' {
                        d.ended = true;
                        i += 1;
                    } else {
                        d.push(b"\r");
                        self.dots = Dots::Mid;
                    }
                }
            }
        }
        if d.ended {
            self.wait = Wait::Nothing;
        }
        i
    }

    fn answer(&mut self, now: Instant, what: Req, completion: Completion) {
        match what {
            Req::Load => match completion {
                Completion::Fetch(FetchAnswer::State(state)) => self.state = state,
                other => self.fail(
                    format!("cannot read the account's state: {}", describe(&other)),
                    false,
                ),
            },
            Req::Retain | Req::Pending | Req::Delivered | Req::Progress => {
                if !matches!(completion, Completion::Fetch(FetchAnswer::Done)) {
                    return self.fail(
                        format!(
                            "cannot record the account's state: {}",
                            describe(&completion)
                        ),
                        true,
                    );
                }
                match what {
                    Req::Retain => {
                        let total = self.total;
                        self.request(Req::Progress, FetchRequest::Progress { done: 0, total });
                    }
                    Req::Progress => self.step(now),
                    Req::Pending => {
                        let n = self.current.as_ref().map_or(0, |(n, _)| *n);
                        self.send(now, &format!("RETR {n}"), Wait::Retr);
                    }
                    _ => {
                        // Delivered: durable here, so the remote may forget it now. One a
                        // content scanner refused stays there (and is not fetched again).
                        self.done += 1;
                        if let Some((n, d)) = self.current.take() {
                            match d.verdict {
                                Some(Verdict::Refused(why)) => self.notes.push(format!(
                                    "message {} refused by a content scanner, left on the server: {why}",
                                    d.key
                                )),
                                verdict => {
                                    if verdict.is_none() {
                                        self.fetched += 1;
                                    }
                                    if !self.account.keep {
                                        self.deletes.push_back(n);
                                    }
                                }
                            }
                        }
                        let (done, total) = (self.done, self.total);
                        self.request(Req::Progress, FetchRequest::Progress { done, total });
                    }
                }
            }
            Req::Step(step) => {
                let Some((_, d)) = self.current.as_mut() else {
                    return;
                };
                match d.answer(now, step, completion) {
                    Err(e) => return self.fail(e, false),
                    Ok(true) => {
                        let request = d.delivered();
                        return self.request(Req::Delivered, request);
                    }
                    Ok(false) => {}
                }
                self.flush(now);
                if self.pending.is_none() && !self.current.as_ref().is_some_and(|(_, d)| d.ended) {
                    self.deadline = Some(now + self.config.command_timeout);
                }
            }
        }
    }
}

impl Session for Pop3Fetch {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len()
            && self.pending.is_none()
            && self.ending == 0
            && !self.closed
            && self.wait != Wait::Nothing
        {
            if self.wait == Wait::Body {
                let n = self.body(&input[used..]);
                used += n;
                self.deadline = Some(now + self.config.command_timeout);
                self.flush(now);
                if n == 0 && self.pending.is_none() {
                    break;
                }
                continue;
            }
            match self.lines.take(&input[used..]) {
                LineRead::Line(line, n) => {
                    used += n;
                    self.line(now, &line);
                }
                LineRead::Partial(n) => used += n,
                LineRead::TooLong => {
                    self.fail(
                        format!("response line too long {}", self.wait.stage()),
                        false,
                    );
                    return input.len();
                }
            }
        }
        if self.closed {
            return input.len();
        }
        used
    }

    fn handle_eof(&mut self, _now: Instant) {
        if self.closed {
            return;
        }
        if self.wait == Wait::Quit {
            self.wait = Wait::Nothing;
            self.quit_after_ending = false;
            self.error
                .get_or_insert("the server closed the connection without answering QUIT".into());
            self.report();
            return;
        }
        if self.ending > 0 {
            self.quit_after_ending = false;
            return;
        }
        let stage = self.wait.stage();
        self.fail(format!("the server closed the connection {stage}"), false);
        self.quit_after_ending = false;
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.deadline
            && now >= d
            && self.pending.is_none()
            && self.ending == 0
            && !self.closed
            && self.wait != Wait::Nothing
        {
            let stage = self.wait.stage();
            self.fail(format!("timeout {stage}"), false);
        }
    }

    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion) {
        if self.ending > 0 {
            if let Completion::Began(tx) = completion {
                // A transaction opened while the session was giving up.
                self.out.request(Effect::Abort { tx });
                self.ending += 1;
            }
            self.ending -= 1;
            if self.ending == 0 {
                if self.quit_after_ending {
                    self.out.out.extend_from_slice(b"QUIT\r\n");
                }
                let reason = if self.error.is_some() {
                    CloseReason::LocalError
                } else {
                    CloseReason::Quit
                };
                self.close(reason);
            }
            return;
        }
        match self.pending.take() {
            Some((p, what)) if p == id => self.answer(now, what, completion),
            other => {
                debug_assert!(false, "completion for an unknown request");
                self.pending = other;
            }
        }
    }

    fn handle_tls_established(&mut self, now: Instant, _info: TlsInfo) {
        self.tls = true;
        self.lines = Lines::default();
        // RFC 2595: capabilities may change after STLS; ask again.
        self.send(now, "CAPA", Wait::Capa);
    }

    fn handle_shutdown(&mut self, _now: Instant) {
        if self.current.is_none() && self.ending == 0 && !self.closed {
            // Between messages: say QUIT so deletions of what is durable here happen.
            self.fail("the server is shutting down".into(), true);
        }
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        self.out.poll_output(out)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() || self.ending > 0 || self.closed || self.wait == Wait::Nothing {
            return None;
        }
        self.deadline
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn buffered_bytes(&self) -> usize {
        self.lines.len()
            + self.out.out.len()
            + self.current.as_ref().map_or(0, |(_, d)| d.buffered())
    }
}
