//! The IMAP fetch client (RFC 9051 and 3501; STARTTLS, SASL-IR, UIDPLUS, IDLE RFC 2177).
//!
//! Greeting, CAPABILITY, STARTTLS when offered, AUTHENTICATE PLAIN (or LOGIN), CAPABILITY
//! again, then SELECT of the folder (EXAMINE when the account keeps mail: nothing on the remote
//! changes). A pass lists the messages with `UID FETCH n:* (UID RFC822.SIZE)`, fetches each new
//! one, oldest first, with `UID FETCH uid BODY.PEEK[]` (the literal streams into the store in
//! bounded chunks), and at its end, unless the account keeps mail, marks what is durable here
//! `\Deleted` and expunges it (`UID EXPUNGE` with UIDPLUS, else `EXPUNGE`). Then, when
//! [`super::FetchConfig::idle`] is set and the server offers IDLE, the session waits in IDLE
//! and starts another pass when the server announces new mail (or when the IDLE period ends);
//! otherwise it logs out.
//!
//! What "new" means: every UID above the highest one fetched under the folder's UIDVALIDITY.
//! When UIDVALIDITY changes, every message is listed with its `Message-ID` and `Date` fields,
//! and those whose digest (with the size) matches a message fetched before are recorded as
//! fetched instead of fetched again; messages with neither field are always fetched.

use super::{
    Delivery, DeliveryStep, FetchAccount, FetchAnswer, FetchConfig, FetchRequest, FetchState,
    LineRead, Lines, Security, Verdict, clean, describe, header_fields, imap_key, message_digest,
    sasl_plain,
};
use crate::effect::{Completion, Effect};
use crate::outbox::Outbox;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Literals kept whole in a response (header fields of a listing); larger ones are skipped.
const MAX_KEPT_LITERAL: u64 = 64 * 1024;

/// The command whose tagged answer is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Capability,
    StartTls,
    Login,
    Select,
    List,
    Body,
    Store,
    Expunge,
    Idle,
    Logout,
}

impl Cmd {
    fn stage(self) -> &'static str {
        match self {
            Cmd::Capability => "after CAPABILITY",
            Cmd::StartTls => "after STARTTLS",
            Cmd::Login => "during login",
            Cmd::Select => "after SELECT",
            Cmd::List => "while listing messages",
            Cmd::Body => "while fetching a message",
            Cmd::Store => "after STORE",
            Cmd::Expunge => "after EXPUNGE",
            Cmd::Idle => "in IDLE",
            Cmd::Logout => "after LOGOUT",
        }
    }
}

/// What an outstanding request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Load,
    UidValidity,
    Matched,
    Pending,
    Step(DeliveryStep),
    Delivered,
    Progress,
    PassDone,
    Release,
    Acquire,
}

/// Where the bytes of a literal go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Body,
    Keep,
    Skip,
}

/// An IMAP fetch session (see the module docs).
pub struct ImapFetch {
    account: Arc<FetchAccount>,
    config: Arc<FetchConfig>,
    out: Outbox,
    lines: Lines,
    /// The response being assembled: its text (literals' contents left out) and the literals
    /// kept.
    resp: Vec<u8>,
    lits: Vec<Vec<u8>>,
    literal: Option<(u64, Sink)>,
    greeted: bool,
    tag: u32,
    cmd: Option<(String, Cmd)>,
    /// In IDLE, after the continuation.
    idling: bool,
    done_sent: bool,
    deadline: Option<Instant>,
    pending: Option<(RequestId, Req)>,
    ending: usize,
    logout_after_ending: bool,
    tls: bool,
    caps: Vec<String>,
    logged_in: bool,
    state: FetchState,
    uidvalidity: u32,
    exists: u32,
    matching: bool,
    highest: u32,
    listing: Vec<(u32, u64, Option<String>)>,
    todo: VecDeque<(u32, u64)>,
    matched: VecDeque<(u32, u64, String)>,
    delete: Vec<u32>,
    total: u64,
    done_in_pass: u64,
    unreported: u64,
    current: Option<(u32, Delivery)>,
    notes: Vec<String>,
    error: Option<String>,
    closed: bool,
    stopping: bool,
}

impl ImapFetch {
    /// A session over a freshly connected socket (TLS already up for `imaps://`). It first asks
    /// for the account's state, then reads the greeting.
    pub fn new(account: Arc<FetchAccount>, config: Arc<FetchConfig>, now: Instant) -> Self {
        let mut s = ImapFetch {
            tls: account.security == Security::Implicit,
            account,
            config,
            out: Outbox::default(),
            lines: Lines::default(),
            resp: Vec::new(),
            lits: Vec::new(),
            literal: None,
            greeted: false,
            tag: 0,
            cmd: None,
            idling: false,
            done_sent: false,
            deadline: None,
            pending: None,
            ending: 0,
            logout_after_ending: false,
            caps: Vec::new(),
            logged_in: false,
            state: FetchState::default(),
            uidvalidity: 0,
            exists: 0,
            matching: false,
            highest: 0,
            listing: Vec::new(),
            todo: VecDeque::new(),
            matched: VecDeque::new(),
            delete: Vec::new(),
            total: 0,
            done_in_pass: 0,
            unreported: 0,
            current: None,
            notes: Vec::new(),
            error: None,
            closed: false,
            stopping: false,
        };
        s.request(Req::Load, FetchRequest::Load);
        s.deadline = Some(now + s.config.command_timeout);
        s
    }

    fn request(&mut self, what: Req, request: FetchRequest) {
        let id = self.out.request(Effect::Fetch {
            user: self.account.user.clone(),
            account: self.account.id,
            request,
        });
        self.pending = Some((id, what));
    }

    fn send(&mut self, now: Instant, command: &str, cmd: Cmd) {
        self.tag += 1;
        let tag = format!("f{}", self.tag);
        self.out.out.extend_from_slice(tag.as_bytes());
        self.out.out.push(b' ');
        self.out.out.extend_from_slice(command.as_bytes());
        self.out.out.extend_from_slice(b"\r\n");
        self.cmd = Some((tag, cmd));
        self.deadline = Some(now + self.config.command_timeout);
    }

    fn stage(&self) -> &'static str {
        match &self.cmd {
            Some((_, c)) => c.stage(),
            None if !self.greeted => "waiting for the greeting",
            None => "",
        }
    }

    fn has_cap(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// Gives up: aborts the open transaction, reports, and ends (with LOGOUT when the
    /// conversation is still in step).
    fn fail(&mut self, reason: String, logout: bool) {
        if self.ending > 0 || self.closed {
            return;
        }
        self.error.get_or_insert(reason);
        if self.pending.take().is_some() {
            self.ending += 1;
        }
        if let Some(tx) = self.current.as_mut().and_then(|(_, d)| d.take_tx()) {
            self.out.request(Effect::Abort { tx });
            self.ending += 1;
        }
        self.logout_after_ending = logout;
        self.cmd = None;
        self.report_end();
    }

    fn report_end(&mut self) {
        self.out.request(Effect::Fetch {
            user: self.account.user.clone(),
            account: self.account.id,
            request: FetchRequest::Finished {
                fetched: self.unreported,
                error: self.error.clone(),
                notes: self.notes.clone(),
            },
        });
        self.unreported = 0;
        self.ending += 1;
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.cmd = None;
            self.out.push(Event::Closed { reason });
        }
    }

    /// A complete response (text without literal contents, and the literals kept).
    fn response(&mut self, now: Instant) {
        let text = std::mem::take(&mut self.resp);
        let lits = std::mem::take(&mut self.lits);
        if let Some(rest) = text.strip_prefix(b"* ") {
            return self.untagged(now, rest, &lits);
        }
        if text.starts_with(b"+") {
            return self.continuation(now);
        }
        let mut parts = text.splitn(3, |&b| b == b' ');
        let tag = parts.next().unwrap_or_default();
        let status = parts.next().unwrap_or_default().to_ascii_uppercase();
        let rest = parts.next().unwrap_or_default();
        let Some((want, cmd)) = self.cmd.clone() else {
            return self.fail(format!("unexpected response: {}", clean(&text)), false);
        };
        if tag != want.as_bytes() {
            return self.fail(
                format!("response with an unknown tag: {}", clean(&text)),
                false,
            );
        }
        self.cmd = None;
        let ok = status == b"OK";
        self.tagged(now, cmd, ok, &clean(rest), rest);
    }

    fn continuation(&mut self, now: Instant) {
        match self.cmd.as_ref().map(|(_, c)| *c) {
            Some(Cmd::Login) => {
                let line = sasl_plain(&self.account.login, self.account.password.expose());
                self.out.out.extend_from_slice(line.as_bytes());
                self.out.out.extend_from_slice(b"\r\n");
            }
            Some(Cmd::Idle) => {
                self.idling = true;
                self.deadline = self.config.idle.map(|p| now + p);
            }
            _ => self.fail("unexpected continuation request".into(), false),
        }
    }

    fn untagged(&mut self, now: Instant, rest: &[u8], lits: &[Vec<u8>]) {
        let upper = rest.to_ascii_uppercase();
        if !self.greeted {
            self.greeted = true;
            if upper.starts_with(b"BYE") {
                return self.fail(
                    format!("the server refused the connection: {}", clean(rest)),
                    false,
                );
            }
            if !upper.starts_with(b"OK") && !upper.starts_with(b"PREAUTH") {
                return self.fail(format!("bad greeting: {}", clean(rest)), false);
            }
            self.read_caps_code(rest);
            if upper.starts_with(b"PREAUTH") {
                self.logged_in = true;
                return self.send(now, "CAPABILITY", Cmd::Capability);
            }
            if self.caps.is_empty() {
                return self.send(now, "CAPABILITY", Cmd::Capability);
            }
            return self.after_caps(now);
        }
        if upper.starts_with(b"CAPABILITY ") {
            self.caps = String::from_utf8_lossy(&rest[11..])
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect();
            return;
        }
        if upper.starts_with(b"OK [UIDVALIDITY ") {
            let n: String = clean(&rest[16..])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            self.uidvalidity = n.parse().unwrap_or(0);
            return;
        }
        if upper.starts_with(b"BYE") {
            if self.cmd.as_ref().is_some_and(|(_, c)| *c == Cmd::Logout) {
                return;
            }
            // The server is closing; the EOF that follows ends the session.
            self.notes.push(format!("the server said {}", clean(rest)));
            return;
        }
        // `N EXISTS`, `N EXPUNGE`, `N FETCH (...)`.
        let mut words = rest.splitn(3, |&b| b == b' ');
        let num = words
            .next()
            .and_then(|w| std::str::from_utf8(w).ok())
            .and_then(|w| w.parse::<u32>().ok());
        let kind = words.next().unwrap_or_default().to_ascii_uppercase();
        let data = words.next().unwrap_or_default();
        match (num, kind.as_slice()) {
            (Some(n), b"EXISTS") => {
                self.exists = n;
                if self.idling && !self.done_sent {
                    self.done_sent = true;
                    self.out.out.extend_from_slice(b"DONE\r\n");
                    self.deadline = Some(now + self.config.command_timeout);
                }
            }
            (Some(_), b"EXPUNGE") => self.exists = self.exists.saturating_sub(1),
            (Some(_), b"FETCH") if self.cmd.as_ref().is_some_and(|(_, c)| *c == Cmd::List) => {
                let (uid, size) = fetch_items(data);
                let Some(uid) = uid else {
                    return;
                };
                let digest = if self.matching {
                    lits.first().and_then(|h| {
                        let (id, date, _) = header_fields(h);
                        (!id.is_empty() || !date.is_empty())
                            .then(|| message_digest(&id, &date, size.unwrap_or(0)))
                    })
                } else {
                    None
                };
                if self.listing.len() < super::MAX_MESSAGES {
                    self.listing.push((uid, size.unwrap_or(0), digest));
                }
            }
            _ => {}
        }
    }

    /// `[CAPABILITY ...]` in a response text.
    fn read_caps_code(&mut self, rest: &[u8]) {
        // Not `clean`: capability lists are longer than an error message may be.
        let text = String::from_utf8_lossy(rest).into_owned();
        let upper = text.to_ascii_uppercase();
        if let Some(i) = upper.find("[CAPABILITY ")
            && let Some(j) = upper[i..].find(']')
        {
            self.caps = text[i + 12..i + j]
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect();
        }
    }

    fn tls_required(&self) -> bool {
        matches!(self.account.security, Security::StartTls { required: true })
    }

    fn after_caps(&mut self, now: Instant) {
        if self.logged_in {
            let folder = quote(&crate::mutf7::encode(&self.account.folder));
            let verb = if self.account.keep {
                "EXAMINE"
            } else {
                "SELECT"
            };
            return self.send(now, &format!("{verb} {folder}"), Cmd::Select);
        }
        if !self.tls {
            if self.has_cap("STARTTLS") {
                return self.send(now, "STARTTLS", Cmd::StartTls);
            }
            if self.tls_required() {
                return self.fail(
                    "the server does not offer STARTTLS; the password is not sent in plaintext"
                        .into(),
                    true,
                );
            }
            if self.has_cap("LOGINDISABLED") {
                return self.fail(
                    "the server refuses logins without TLS (LOGINDISABLED) and offers no STARTTLS"
                        .into(),
                    true,
                );
            }
        }
        if self.has_cap("AUTH=PLAIN") {
            let creds = sasl_plain(&self.account.login, self.account.password.expose());
            if self.has_cap("SASL-IR") {
                self.send(now, &format!("AUTHENTICATE PLAIN {creds}"), Cmd::Login);
            } else {
                self.send(now, "AUTHENTICATE PLAIN", Cmd::Login);
            }
        } else {
            let line = format!(
                "LOGIN {} {}",
                quote(&self.account.login),
                quote(self.account.password.expose())
            );
            self.send(now, &line, Cmd::Login);
        }
    }

    fn tagged(&mut self, now: Instant, cmd: Cmd, ok: bool, text: &str, raw: &[u8]) {
        match cmd {
            Cmd::Capability => {
                if !ok {
                    return self.fail(format!("CAPABILITY failed: {text}"), true);
                }
                self.after_caps(now);
            }
            Cmd::StartTls => {
                if ok {
                    self.deadline = None;
                    self.out.push(Event::StartTls);
                } else if self.tls_required() {
                    self.fail(format!("the server refused STARTTLS: {text}"), true);
                } else {
                    self.caps.retain(|c| !c.eq_ignore_ascii_case("STARTTLS"));
                    self.after_caps(now);
                }
            }
            Cmd::Login => {
                if !ok {
                    return self.fail(format!("login failed: {text}"), true);
                }
                self.logged_in = true;
                self.caps.clear();
                self.read_caps_code(raw);
                if self.caps.is_empty() {
                    self.send(now, "CAPABILITY", Cmd::Capability);
                } else {
                    self.after_caps(now);
                }
            }
            Cmd::Select => {
                if !ok {
                    return self.fail(format!("cannot open {}: {text}", self.account.folder), true);
                }
                if self.uidvalidity == 0 {
                    return self.fail("the server announced no UIDVALIDITY".into(), true);
                }
                if self.state.uidvalidity == Some(self.uidvalidity) {
                    self.highest = self.state.highest_uid;
                    return self.list(now);
                }
                // First time, or the remote renumbered the folder.
                self.matching = self.state.uidvalidity.is_some();
                self.highest = 0;
                let request = FetchRequest::UidValidity {
                    old: self.state.uidvalidity,
                    new: self.uidvalidity,
                };
                self.request(Req::UidValidity, request);
            }
            Cmd::List => {
                if !ok {
                    return self.fail(format!("listing the messages failed: {text}"), true);
                }
                self.plan();
            }
            Cmd::Body => {
                if !ok {
                    return self.fail(format!("fetching a message failed: {text}"), true);
                }
                // Delivered messages are gone from `current`; one still there never came (it
                // was expunged by another client meanwhile: nothing was stored), unless it
                // came in part.
                if let Some((uid, d)) = self.current.take()
                    && (d.ended || d.size > 0)
                {
                    return self.fail(
                        format!("the server ended message {uid} before its last byte"),
                        true,
                    );
                }
                self.next(now);
            }
            Cmd::Store => {
                if !ok {
                    return self.fail(format!("marking fetched mail deleted failed: {text}"), true);
                }
                let set = uid_set(&self.delete);
                if self.has_cap("UIDPLUS") {
                    self.send(now, &format!("UID EXPUNGE {set}"), Cmd::Expunge);
                } else {
                    self.send(now, "EXPUNGE", Cmd::Expunge);
                }
            }
            Cmd::Expunge => {
                if !ok {
                    return self.fail(format!("EXPUNGE failed: {text}"), true);
                }
                self.delete.clear();
                self.pass_done();
            }
            Cmd::Idle => {
                self.idling = false;
                self.done_sent = false;
                if !ok {
                    return self.fail(format!("IDLE failed: {text}"), true);
                }
                if self.stopping {
                    return self.send(now, "LOGOUT", Cmd::Logout);
                }
                self.request(Req::Acquire, FetchRequest::Acquire);
            }
            Cmd::Logout => {
                self.close(CloseReason::Quit);
            }
        }
    }

    /// Lists the messages that may be new (all of them when some may need deleting, or after a
    /// UIDVALIDITY change).
    fn list(&mut self, now: Instant) {
        self.listing.clear();
        self.done_in_pass = 0;
        if self.exists == 0 {
            return self.plan();
        }
        let from = if self.account.keep && !self.matching {
            self.highest.saturating_add(1)
        } else {
            1
        };
        let items = if self.matching {
            "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)])"
        } else {
            "(UID RFC822.SIZE)"
        };
        self.send(now, &format!("UID FETCH {from}:* {items}"), Cmd::List);
    }

    /// The listing is in: what to fetch, what was fetched before (after a UIDVALIDITY change),
    /// what to delete.
    fn plan(&mut self) {
        let mut listing = std::mem::take(&mut self.listing);
        listing.sort_unstable_by_key(|l| l.0);
        listing.dedup_by_key(|l| l.0);
        self.todo.clear();
        for (uid, size, digest) in listing {
            let too_big = size > self.config.max_message_size;
            if uid <= self.highest {
                let left = self
                    .state
                    .left_on_remote
                    .contains(&imap_key(self.uidvalidity, uid));
                if !self.account.keep && !too_big && !left {
                    self.delete.push(uid);
                }
                continue;
            }
            if self.matching
                && let Some(d) = digest
                && self.state.digests.contains(&d)
            {
                self.matched.push_back((uid, size, d));
                if !self.account.keep {
                    self.delete.push(uid);
                }
                continue;
            }
            if too_big {
                let note = format!(
                    "message UID {uid} ({size} octets) is larger than limits.max_message_size; left on the server"
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
                continue;
            }
            self.todo.push_back((uid, size));
        }
        self.matching = false;
        self.total = self.todo.len() as u64;
        self.record_matched();
    }

    fn record_matched(&mut self) {
        if let Some((uid, size, digest)) = self.matched.pop_front() {
            self.highest = self.highest.max(uid);
            let key = imap_key(self.uidvalidity, uid);
            let request = FetchRequest::Delivered {
                key,
                size,
                digest,
                left_on_remote: false,
            };
            return self.request(Req::Matched, request);
        }
        let total = self.total;
        self.request(Req::Progress, FetchRequest::Progress { done: 0, total });
    }

    /// The next message of the pass, or the end of the pass.
    fn next(&mut self, now: Instant) {
        if self.stopping {
            return self.end_pass(now);
        }
        if let Some((uid, _)) = self.todo.pop_front() {
            let key = imap_key(self.uidvalidity, uid);
            self.current = Some((uid, Delivery::new(key.clone())));
            return self.request(Req::Pending, FetchRequest::Pending { key });
        }
        self.end_pass(now);
    }

    fn end_pass(&mut self, now: Instant) {
        if !self.delete.is_empty() && !self.account.keep {
            self.delete.sort_unstable();
            self.delete.dedup();
            let set = uid_set(&self.delete);
            return self.send(
                now,
                &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                Cmd::Store,
            );
        }
        self.pass_done();
    }

    fn pass_done(&mut self) {
        let fetched = self.unreported;
        self.unreported = 0;
        let notes = self.notes.clone();
        self.request(
            Req::PassDone,
            FetchRequest::Finished {
                fetched,
                error: None,
                notes,
            },
        );
    }

    fn after_pass(&mut self, now: Instant) {
        if self.config.idle.is_some() && self.has_cap("IDLE") && !self.stopping {
            self.notes.clear();
            // Let `petrel fetch run` have the account while nothing happens here.
            return self.request(Req::Release, FetchRequest::Release);
        }
        self.send(now, "LOGOUT", Cmd::Logout);
    }

    fn flush(&mut self, now: Instant) {
        let Some((_, d)) = self.current.as_mut() else {
            return;
        };
        let via = if self.tls { "IMAPS" } else { "IMAP" };
        if let Some((step, effect)) = d.next_effect(now, &self.account, &self.config, via) {
            let id = self.out.request(effect);
            self.pending = Some((id, Req::Step(step)));
        }
    }

    fn answer(&mut self, now: Instant, what: Req, completion: Completion) {
        if let Req::Step(step) = what {
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
            if self.pending.is_none() {
                self.deadline = Some(now + self.config.command_timeout);
            }
            return;
        }
        if what == Req::Acquire && !matches!(completion, Completion::Fetch(FetchAnswer::Done)) {
            // The runner is stopping while another fetcher has the account: just leave.
            self.stopping = true;
            return self.send(now, "LOGOUT", Cmd::Logout);
        }
        let state = match completion {
            Completion::Fetch(FetchAnswer::State(s)) if what == Req::Load => Some(s),
            Completion::Fetch(FetchAnswer::Done) if what != Req::Load => None,
            other => {
                return self.fail(
                    format!("cannot use the account's state: {}", describe(&other)),
                    what != Req::Load,
                );
            }
        };
        match what {
            Req::Load => {
                self.state = state.unwrap_or_default();
                self.deadline = Some(now + self.config.command_timeout);
                if self.logged_in && self.uidvalidity != 0 {
                    // Reloaded after IDLE: same folder, go on from what is recorded now.
                    if self.state.uidvalidity == Some(self.uidvalidity) {
                        self.highest = self.highest.max(self.state.highest_uid);
                    }
                    self.list(now);
                }
            }
            Req::UidValidity => self.list(now),
            Req::Matched => self.record_matched(),
            Req::Pending => {
                let uid = self.current.as_ref().map_or(0, |(u, _)| *u);
                self.send(now, &format!("UID FETCH {uid} BODY.PEEK[]"), Cmd::Body);
            }
            Req::Delivered => {
                if let Some((uid, d)) = self.current.take() {
                    self.highest = self.highest.max(uid);
                    match d.verdict {
                        // Refused by a content scanner: left on the server, not fetched again.
                        Some(Verdict::Refused(why)) => self.notes.push(format!(
                            "message UID {uid} refused by a content scanner, left on the server: {why}"
                        )),
                        verdict => {
                            if verdict.is_none() {
                                self.unreported += 1;
                            }
                            if !self.account.keep {
                                self.delete.push(uid);
                            }
                        }
                    }
                }
                self.done_in_pass += 1;
                let (done, total) = (self.done_in_pass, self.total);
                self.request(Req::Progress, FetchRequest::Progress { done, total });
            }
            Req::Progress => {
                // Before the first message, or after one: its tagged OK is still to come.
                if self.cmd.is_none() {
                    self.next(now);
                } else {
                    self.deadline = Some(now + self.config.command_timeout);
                }
            }
            Req::PassDone => self.after_pass(now),
            Req::Release => self.send(now, "IDLE", Cmd::Idle),
            Req::Acquire => {
                // Another fetcher may have changed the state meanwhile.
                self.request(Req::Load, FetchRequest::Load);
            }
            Req::Step(_) => {}
        }
    }

    /// Feeds literal bytes; returns how many were used.
    fn literal_bytes(&mut self, input: &[u8]) -> usize {
        let Some((remaining, sink)) = self.literal else {
            return 0;
        };
        let take = match sink {
            Sink::Body => {
                let Some((_, d)) = self.current.as_mut() else {
                    return 0;
                };
                let take = (remaining.min(input.len() as u64) as usize).min(d.room());
                d.push(&input[..take]);
                take
            }
            Sink::Keep => {
                let take = remaining.min(input.len() as u64) as usize;
                if let Some(l) = self.lits.last_mut() {
                    l.extend_from_slice(&input[..take]);
                }
                take
            }
            Sink::Skip => remaining.min(input.len() as u64) as usize,
        };
        let left = remaining - take as u64;
        if left == 0 {
            self.literal = None;
            if sink == Sink::Body
                && let Some((_, d)) = self.current.as_mut()
            {
                d.ended = true;
            }
        } else {
            self.literal = Some((left, sink));
        }
        take
    }

    /// A complete line of a response: either the response ends, or a literal follows.
    fn line(&mut self, now: Instant, line: Vec<u8>) {
        if self.resp.len() + line.len() > super::MAX_LINE {
            return self.fail(format!("response too long {}", self.stage()), false);
        }
        self.resp.extend_from_slice(&line);
        if let Some(n) = literal_size(&line) {
            let before = &line[..line.iter().rposition(|&b| b == b'{').unwrap_or(0)];
            let upper = before.to_ascii_uppercase();
            let body = self.cmd.as_ref().is_some_and(|(_, c)| *c == Cmd::Body)
                && self
                    .current
                    .as_ref()
                    .is_some_and(|(_, d)| d.size == 0 && !d.ended)
                && upper.trim_ascii_end().ends_with(b"BODY[]");
            let sink = if body {
                if n > self.config.max_message_size {
                    return self.fail(
                        format!("a message of {n} octets is larger than limits.max_message_size"),
                        false,
                    );
                }
                Sink::Body
            } else if n <= MAX_KEPT_LITERAL {
                self.lits.push(Vec::new());
                Sink::Keep
            } else {
                Sink::Skip
            };
            self.literal = Some((n, sink));
            if n == 0 {
                self.literal_bytes(&[]);
                if sink == Sink::Body {
                    self.flush(now);
                }
            }
            return;
        }
        self.response(now);
    }
}

/// `{N}` or `{N+}` at the end of a line.
fn literal_size(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `UID n` and `RFC822.SIZE n` in a FETCH response's data.
fn fetch_items(data: &[u8]) -> (Option<u32>, Option<u64>) {
    let text = String::from_utf8_lossy(data).to_ascii_uppercase();
    let words: Vec<&str> = text
        .split(|c: char| c.is_ascii_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    let mut uid = None;
    let mut size = None;
    for w in words.windows(2) {
        match w[0] {
            "UID" => uid = uid.or(w[1].parse().ok()),
            "RFC822.SIZE" => size = size.or(w[1].parse().ok()),
            _ => {}
        }
    }
    (uid, size)
}

/// A quoted string (RFC 9051 `quoted`), `\` and `"` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Sorted UIDs as a compact set (`1:4,7,9:10`).
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

impl Session for ImapFetch {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() && self.pending.is_none() && self.ending == 0 && !self.closed {
            if self.literal.is_some() {
                let n = self.literal_bytes(&input[used..]);
                used += n;
                self.deadline = Some(now + self.config.command_timeout);
                if self.literal.is_none() || self.current.as_ref().is_some_and(|(_, d)| d.full()) {
                    self.flush(now);
                }
                if n == 0 && self.pending.is_none() {
                    break;
                }
                continue;
            }
            match self.lines.take(&input[used..]) {
                LineRead::Line(line, n) => {
                    used += n;
                    self.line(now, line);
                }
                LineRead::Partial(n) => used += n,
                LineRead::TooLong => {
                    self.fail(format!("response line too long {}", self.stage()), false);
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
        if self.cmd.as_ref().is_some_and(|(_, c)| *c == Cmd::Logout) {
            return self.close(CloseReason::Quit);
        }
        if self.ending > 0 {
            self.logout_after_ending = false;
            return;
        }
        let stage = self.stage();
        self.fail(format!("the server closed the connection {stage}"), false);
        self.logout_after_ending = false;
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(d) = self.deadline else {
            return;
        };
        if now < d || self.pending.is_some() || self.ending > 0 || self.closed {
            return;
        }
        if self.idling && !self.done_sent {
            // The IDLE period is over: end it and look again (RFC 2177: within 29 minutes).
            self.done_sent = true;
            self.out.out.extend_from_slice(b"DONE\r\n");
            self.deadline = Some(now + self.config.command_timeout);
            return;
        }
        if self.cmd.is_some() || !self.greeted {
            let stage = self.stage();
            self.fail(format!("timeout {stage}"), false);
        }
    }

    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion) {
        if self.ending > 0 {
            if let Completion::Began(tx) = completion {
                self.out.request(Effect::Abort { tx });
                self.ending += 1;
            }
            self.ending -= 1;
            if self.ending == 0 {
                if self.logout_after_ending {
                    self.tag += 1;
                    let line = format!("f{} LOGOUT\r\n", self.tag);
                    self.out.out.extend_from_slice(line.as_bytes());
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
        self.caps.clear();
        // RFC 9051 6.2.1: capabilities learned before STARTTLS are void.
        self.send(now, "CAPABILITY", Cmd::Capability);
    }

    fn handle_shutdown(&mut self, now: Instant) {
        if self.closed || self.ending > 0 {
            return;
        }
        self.stopping = true;
        if self.idling && !self.done_sent {
            self.done_sent = true;
            self.out.out.extend_from_slice(b"DONE\r\n");
            self.deadline = Some(now + self.config.command_timeout);
        }
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        self.out.poll_output(out)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() || self.ending > 0 || self.closed {
            return None;
        }
        self.deadline
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn buffered_bytes(&self) -> usize {
        self.lines.len()
            + self.resp.len()
            + self.lits.iter().map(Vec::len).sum::<usize>()
            + self.out.out.len()
            + self.current.as_ref().map_or(0, |(_, d)| d.buffered())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {123}"), Some(123));
        assert_eq!(literal_size(b"x {12+}"), Some(12));
        assert_eq!(literal_size(b"x {}"), None);
        assert_eq!(literal_size(b"x {1a}"), None);
        assert_eq!(
            fetch_items(b"(UID 17 RFC822.SIZE 1234)"),
            (Some(17), Some(1234))
        );
        assert_eq!(fetch_items(b"(FLAGS (\\Seen) UID 3)"), (Some(3), None));
        assert_eq!(uid_set(&[5, 1, 2, 3, 9, 10]), "1:3,5,9:10");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
