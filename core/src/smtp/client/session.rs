//! The client session: one connection to a receiving MTA, from its greeting to QUIT.
//!
//! Commands are queued in the output buffer the driver drains, with what each one's reply means
//! in `expect`; replies are matched to it in order, which is all PIPELINING (RFC 2920) needs.
//! Message bytes are requested from the queue one bounded chunk at a time and go out as soon as
//! they arrive, dot-stuffed for DATA or framed as BDAT chunks. Nothing is consumed from the
//! server while a request is outstanding, so input waits in the driver's bounded buffer.

use super::reply::{Capabilities, Reply, ReplyReader};
use super::{ClientConfig, OutboundJob, RcptResult, TlsPolicy};
use crate::effect::{Completion, Effect};
use crate::outbox::Outbox;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use crate::smtp::data::DotStuffer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most message bytes asked of the queue at a time (and so the size of a BDAT chunk).
pub const BODY_CHUNK: usize = 32 * 1024;

/// Longest text kept of the last reply, for logs.
const LAST_REPLY_MAX: usize = 512;

/// What the next reply from the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// 334 for the user name of AUTH LOGIN.
    AuthLoginUser,
    /// 334 for the password of AUTH LOGIN.
    AuthLoginPass,
    /// 235 to AUTH PLAIN or to the AUTH LOGIN password.
    AuthDone,
    Mail,
    /// The reply to the RCPT for this recipient index.
    Rcpt(usize),
    Data,
    /// The reply to a lone `.` sent after a 354 that came with no recipient accepted; ignored.
    DataDiscard,
    /// The final reply after `.`.
    DataEnd,
    Bdat {
        last: bool,
    },
    Rset,
    Quit,
}

impl Expect {
    /// Where the conversation was, for failure texts ("timeout after RCPT TO").
    fn stage(self) -> &'static str {
        match self {
            Expect::Greeting => "while waiting for the greeting",
            Expect::Ehlo => "after EHLO",
            Expect::Helo => "after HELO",
            Expect::StartTls => "after STARTTLS",
            Expect::AuthLoginUser | Expect::AuthLoginPass | Expect::AuthDone => "after AUTH",
            Expect::Mail => "after MAIL FROM",
            Expect::Rcpt(_) => "after RCPT TO",
            Expect::Data | Expect::DataDiscard => "after DATA",
            Expect::DataEnd => "after end of data",
            Expect::Bdat { last: false } => "after BDAT",
            Expect::Bdat { last: true } => "after BDAT LAST",
            Expect::Rset => "after RSET",
            Expect::Quit => "after QUIT",
        }
    }
}

/// What an outstanding request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// `ReadQueued` for the current transaction's body.
    Read,
    /// `Report` of a job; `rset`: the server still holds the transaction, send RSET next.
    Report { rset: bool },
}

/// How the connection ends once a failure has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Say QUIT politely (the server is sane, it just refused).
    Quit,
    /// Close at once.
    Close(CloseReason),
}

/// A failure that applies to every job not yet reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    code: u16,
    permanent: bool,
    text: String,
}

impl Failure {
    fn temp(code: u16, text: impl Into<String>) -> Self {
        Failure {
            code,
            permanent: false,
            text: text.into(),
        }
    }

    /// The failure a negative reply means: 5xx permanent, 4xx temporary; any other code where
    /// a failure is known to have happened is a protocol error, temporary.
    fn of(reply: &Reply, stage: &str) -> Self {
        if reply.is_permanent() || reply.is_transient() {
            Failure {
                code: reply.code,
                permanent: reply.is_permanent(),
                text: reply.message(),
            }
        } else {
            Failure::temp(
                451,
                format!("4.5.0 unexpected reply {stage}: {}", reply.text()),
            )
        }
    }

    fn result(&self) -> RcptResult {
        if self.permanent {
            RcptResult::PermFail(self.code, self.text.clone())
        } else {
            RcptResult::TempFail(self.code, self.text.clone())
        }
    }
}

/// Where the session is.
#[derive(Debug)]
enum Phase {
    /// Commands and replies, or waiting on a request.
    Talk,
    /// STARTTLS accepted: the runtime is doing the TLS handshake.
    AwaitTls,
    /// Giving up: reporting the jobs not yet reported, then ending.
    Failing { failure: Failure, then: End },
    /// QUIT sent.
    Quitting,
    /// Over.
    Closed,
}

/// How the message goes out.
#[derive(Debug)]
enum BodyMode {
    /// DATA, dot-stuffed as it streams.
    Data(DotStuffer),
    /// BDAT: one chunk is held back until the next read shows whether it is the last.
    Bdat { held: Option<Vec<u8>> },
}

/// The message part of a transaction.
#[derive(Debug)]
struct Body {
    mode: BodyMode,
    offset: u64,
}

/// One job's transaction, from MAIL to its report.
#[derive(Debug)]
struct Txn {
    job: usize,
    /// Per recipient: its outcome once known.
    results: Vec<Option<RcptResult>>,
    /// Recipients the server accepted, by index.
    accepted: Vec<usize>,
    /// Recipients still to send RCPT for (without PIPELINING, one at a time).
    to_send: VecDeque<usize>,
    pipelined: bool,
    chunking: bool,
    mail_ok: bool,
    mail_failure: Option<Failure>,
    body: Option<Body>,
}

/// An outbound SMTP client session (see the module docs and [`Session`]).
pub struct SmtpClient {
    config: Arc<ClientConfig>,
    jobs: Vec<OutboundJob>,
    /// Jobs before this index have been reported.
    reported: usize,
    outbox: Outbox,
    reader: ReplyReader,
    expect: VecDeque<Expect>,
    phase: Phase,
    caps: Capabilities,
    tls_active: bool,
    tls_refused: bool,
    authenticated: bool,
    txn: Option<Txn>,
    pending: Option<(RequestId, Pending)>,
    now: Instant,
    deadline: Option<Instant>,
    stage: &'static str,
    last_reply: String,
    shutting_down: bool,
}

impl SmtpClient {
    /// Opens a session on a freshly connected socket, to deliver `jobs` in order; it waits for
    /// the server's greeting. With no jobs it only greets and says QUIT.
    pub fn new(config: Arc<ClientConfig>, jobs: Vec<OutboundJob>, now: Instant) -> Self {
        let reader = ReplyReader::new(config.max_line);
        let mut c = SmtpClient {
            config,
            jobs,
            reported: 0,
            outbox: Outbox::default(),
            reader,
            expect: VecDeque::new(),
            phase: Phase::Talk,
            caps: Capabilities::default(),
            tls_active: false,
            tls_refused: false,
            authenticated: false,
            txn: None,
            pending: None,
            now,
            deadline: None,
            stage: Expect::Greeting.stage(),
            last_reply: String::new(),
            shutting_down: false,
        };
        c.expect.push_back(Expect::Greeting);
        c.arm();
        c
    }

    /// The last reply the server sent, on one line (for logs).
    pub fn last_reply(&self) -> &str {
        &self.last_reply
    }

    /// The extensions the server announced in its latest EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn timeout(&self, e: Expect) -> Duration {
        let t = &self.config.timeouts;
        match e {
            Expect::Greeting => t.greeting,
            Expect::Mail => t.mail,
            Expect::Rcpt(_) => t.rcpt,
            Expect::Data => t.data_init,
            Expect::Bdat { last: false } => t.data_block,
            Expect::Bdat { last: true } | Expect::DataEnd | Expect::DataDiscard => t.data_end,
            Expect::Quit => t.quit,
            _ => t.command,
        }
    }

    /// Sets the deadline for the reply now awaited.
    fn arm(&mut self) {
        self.deadline = self.expect.front().map(|&e| self.now + self.timeout(e));
    }

    /// Queues a command line and what its reply will mean.
    fn send(&mut self, line: &str, e: Expect) {
        self.outbox.out.extend_from_slice(line.as_bytes());
        self.outbox.out.extend_from_slice(b"\r\n");
        self.expect.push_back(e);
        self.stage = e.stage();
        self.arm();
    }

    fn request(&mut self, effect: Effect, what: Pending) {
        let id = self.outbox.request(effect);
        self.pending = Some((id, what));
    }

    fn close(&mut self, reason: CloseReason) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.phase = Phase::Closed;
        self.expect.clear();
        self.deadline = None;
        self.txn = None;
        self.outbox.push(Event::Closed { reason });
    }

    fn quit(&mut self) {
        // A reply still owed (to a lone `.`) comes first and is ignored.
        self.phase = Phase::Quitting;
        self.send("QUIT", Expect::Quit);
    }

    /// Gives up on the connection: every job not yet reported gets `failure` (recipients with
    /// a definite outcome keep theirs), then the session ends as `then` says.
    fn fail(&mut self, failure: Failure, then: End) {
        match self.phase {
            Phase::Failing { .. } | Phase::Closed => return,
            Phase::Quitting => return self.close(CloseReason::Quit),
            Phase::Talk | Phase::AwaitTls => {}
        }
        self.expect.clear();
        self.deadline = None;
        self.phase = Phase::Failing { failure, then };
        self.continue_failing();
    }

    /// One step of [`SmtpClient::fail`]: report the next job, or end once all are.
    fn continue_failing(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let Phase::Failing { failure, then } = &self.phase else {
            return;
        };
        let (failure, then) = (failure.clone(), *then);
        if self.reported < self.jobs.len() {
            let i = self.reported;
            let mut results: Vec<Option<RcptResult>> = match self.txn.take() {
                Some(txn) if txn.job == i => txn.results,
                _ => vec![None; self.jobs[i].recipients.len()],
            };
            for r in &mut results {
                // An accepted recipient has no outcome until the message is through.
                if r.is_none() {
                    *r = Some(failure.result());
                }
            }
            return self.report(i, results, false);
        }
        match then {
            End::Quit => self.quit(),
            End::Close(reason) => self.close(reason),
        }
    }

    /// Hands the outcome of job `i` to the runner, which records it before the session goes on.
    fn report(&mut self, i: usize, results: Vec<Option<RcptResult>>, rset: bool) {
        let job = &self.jobs[i];
        let results =
            job.recipients
                .iter()
                .cloned()
                .zip(results.into_iter().map(|r| {
                    r.unwrap_or_else(|| RcptResult::TempFail(451, "4.3.0 no outcome".into()))
                }))
                .collect();
        let effect = Effect::Report {
            id: job.id.clone(),
            results,
        };
        self.reported = i + 1;
        self.request(effect, Pending::Report { rset });
    }

    fn on_reply(&mut self, reply: Reply) {
        self.last_reply = reply.text();
        if self.last_reply.len() > LAST_REPLY_MAX {
            let mut end = LAST_REPLY_MAX;
            while !self.last_reply.is_char_boundary(end) {
                end -= 1;
            }
            self.last_reply.truncate(end);
        }
        let Some(expect) = self.expect.pop_front() else {
            if reply.code == 421 {
                return self.fail(
                    Failure::of(&reply, self.stage),
                    End::Close(CloseReason::PeerClosed),
                );
            }
            let text = format!("4.5.0 unexpected reply {}: {}", self.stage, self.last_reply);
            return self.fail(
                Failure::temp(451, text),
                End::Close(CloseReason::TooManyErrors),
            );
        };
        if expect == Expect::Quit {
            return self.close(CloseReason::Quit);
        }
        if matches!(self.phase, Phase::Quitting) {
            return self.arm();
        }
        if reply.code == 421 {
            // The server is closing the connection (RFC 5321 3.8), whatever it was asked.
            return self.fail(
                Failure::of(&reply, expect.stage()),
                End::Close(CloseReason::PeerClosed),
            );
        }
        self.arm();
        match expect {
            Expect::Greeting => {
                if reply.is_positive() {
                    let line = format!("EHLO {}", self.config.helo_name);
                    self.send(&line, Expect::Ehlo);
                } else {
                    // RFC 5321 3.1: after a 554 greeting the client should still say QUIT.
                    self.fail(Failure::of(&reply, expect.stage()), End::Quit);
                }
            }
            Expect::Ehlo => {
                if reply.is_positive() {
                    self.caps = Capabilities::from_ehlo(&reply);
                    self.after_hello();
                } else if matches!(reply.code, 500 | 502) {
                    // An old server without ESMTP: HELO, and no extensions at all. What needs
                    // them (SMTPUTF8, TLS, AUTH) then fails in `after_hello` or per job.
                    let line = format!("HELO {}", self.config.helo_name);
                    self.send(&line, Expect::Helo);
                } else {
                    self.fail(Failure::of(&reply, expect.stage()), End::Quit);
                }
            }
            Expect::Helo => {
                if reply.is_positive() {
                    self.caps = Capabilities::default();
                    self.after_hello();
                } else {
                    self.fail(Failure::of(&reply, expect.stage()), End::Quit);
                }
            }
            Expect::StartTls => {
                if reply.code == 220 {
                    self.phase = Phase::AwaitTls;
                    self.deadline = None;
                    self.outbox.push(Event::StartTls);
                } else if self.config.tls == TlsPolicy::Required {
                    let text = format!(
                        "4.7.4 TLS is required, but STARTTLS was refused: {}",
                        reply.text()
                    );
                    self.fail(Failure::temp(451, text), End::Quit);
                } else {
                    // RFC 3207 4: the client may go on without TLS.
                    self.tls_refused = true;
                    self.after_hello();
                }
            }
            Expect::AuthLoginUser | Expect::AuthLoginPass if reply.code == 334 => {
                let Some((user, password)) = &self.config.auth else {
                    return self.protocol_error();
                };
                let (value, next) = if expect == Expect::AuthLoginUser {
                    (user.as_bytes(), Expect::AuthLoginPass)
                } else {
                    (password.expose().as_bytes(), Expect::AuthDone)
                };
                let line = STANDARD.encode(value);
                self.send(&line, next);
            }
            Expect::AuthLoginUser | Expect::AuthLoginPass | Expect::AuthDone => {
                if reply.is_positive() {
                    self.authenticated = true;
                    self.next_job();
                } else if reply.is_intermediate() {
                    // A challenge we cannot answer; the server waits for a SASL line, so QUIT
                    // would be misread: close instead.
                    let text = format!("4.7.0 authentication failed: unexpected {}", reply.text());
                    self.fail(
                        Failure::temp(451, text),
                        End::Close(CloseReason::LocalError),
                    );
                } else {
                    let mut f = Failure::of(&reply, expect.stage());
                    f.text = format!("authentication failed: {}", f.text);
                    self.fail(f, End::Quit);
                }
            }
            Expect::Mail => self.mail_reply(reply),
            Expect::Rcpt(k) => self.rcpt_reply(k, reply),
            Expect::Data => self.after_envelope(Some(reply)),
            Expect::DataDiscard => {}
            Expect::DataEnd | Expect::Bdat { last: true } => self.final_reply(reply),
            Expect::Bdat { last: false } => {
                if reply.is_positive() {
                    self.read_chunk();
                } else {
                    let failure = Failure::of(&reply, expect.stage());
                    self.settle_accepted(|| failure.result());
                    self.finish(true);
                }
            }
            Expect::Rset => self.next_job(),
            Expect::Quit => self.close(CloseReason::Quit),
        }
    }

    /// A reply the state machine cannot place: end the connection.
    fn protocol_error(&mut self) {
        let text = format!("4.5.0 protocol error {}", self.stage);
        self.fail(
            Failure::temp(451, text),
            End::Close(CloseReason::TooManyErrors),
        );
    }

    /// EHLO or HELO succeeded: STARTTLS, AUTH, then the jobs.
    fn after_hello(&mut self) {
        if !self.tls_active && self.config.tls != TlsPolicy::None {
            if self.caps.starttls && !self.tls_refused {
                return self.send("STARTTLS", Expect::StartTls);
            }
            if self.config.tls == TlsPolicy::Required {
                let text = "4.7.4 TLS is required, but the server does not offer STARTTLS";
                return self.fail(Failure::temp(451, text), End::Quit);
            }
        }
        if let Some((user, password)) = &self.config.auth
            && !self.authenticated
        {
            if !self.tls_active && self.config.tls != TlsPolicy::None {
                let text = "4.7.0 will not send AUTH credentials over an unencrypted connection";
                return self.fail(Failure::temp(451, text), End::Quit);
            }
            if self.caps.offers_auth("PLAIN") {
                // RFC 4616: authzid (empty), NUL, authcid, NUL, password; as the initial
                // response (RFC 4954 4).
                let mut plain = vec![0u8];
                plain.extend_from_slice(user.as_bytes());
                plain.push(0);
                plain.extend_from_slice(password.expose().as_bytes());
                let line = format!("AUTH PLAIN {}", STANDARD.encode(&plain));
                return self.send(&line, Expect::AuthDone);
            }
            if self.caps.offers_auth("LOGIN") {
                return self.send("AUTH LOGIN", Expect::AuthLoginUser);
            }
            let text = "4.7.0 the server offers neither AUTH PLAIN nor AUTH LOGIN";
            return self.fail(Failure::temp(451, text), End::Quit);
        }
        self.next_job();
    }

    /// Starts the next job not yet reported, or says QUIT when there is none.
    fn next_job(&mut self) {
        let i = self.reported;
        if i >= self.jobs.len() {
            return self.quit();
        }
        if self.shutting_down {
            let text = "4.3.2 delivery interrupted: shutting down";
            return self.fail(Failure::temp(451, text), End::Quit);
        }
        let job = &self.jobs[i];
        let n = job.recipients.len();
        let needs_utf8 =
            job.smtputf8 || !job.sender.is_ascii() || job.recipients.iter().any(|r| !r.is_ascii());
        let whole = |r: RcptResult| vec![Some(r); n];
        let refusal = if !valid_path(&job.sender) {
            Some(RcptResult::PermFail(
                553,
                "5.1.7 invalid sender address".into(),
            ))
        } else if let Some(limit) = self.caps.size_limit().filter(|&l| job.size > l) {
            let text = format!(
                "5.3.4 message size {} exceeds the server's limit of {limit}",
                job.size
            );
            Some(RcptResult::PermFail(552, text))
        } else if needs_utf8 && !self.caps.smtputf8 {
            let text = "5.6.7 the server does not support SMTPUTF8, which this message needs";
            Some(RcptResult::PermFail(553, text.into()))
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.report(i, whole(r), false);
        }
        let mut results = vec![None; n];
        let mut valid = VecDeque::new();
        for (k, rcpt) in job.recipients.iter().enumerate() {
            if rcpt.is_empty() || !valid_path(rcpt) {
                let text = "5.1.3 invalid recipient address";
                results[k] = Some(RcptResult::PermFail(553, text.into()));
            } else {
                valid.push_back(k);
            }
        }
        if valid.is_empty() {
            return self.report(i, results, false);
        }
        let mut mail = format!("MAIL FROM:<{}>", job.sender);
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", job.size));
        }
        // RFC 6152 3: without 8BITMIME at the server, 8-bit content may be downgraded or
        // bounced. Petrel sends it as it is, as most MTAs do: nearly every server takes 8-bit
        // bytes, and a bounce for a message that would have arrived helps nobody.
        if job.eight_bit && self.caps.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let rcpts: Vec<String> = valid
            .iter()
            .map(|&k| format!("RCPT TO:<{}>", job.recipients[k]))
            .collect();
        let pipelined = self.caps.pipelining;
        let chunking = self.caps.chunking;
        self.send(&mail, Expect::Mail);
        let mut txn = Txn {
            job: i,
            results,
            accepted: Vec::new(),
            to_send: VecDeque::new(),
            pipelined,
            chunking,
            mail_ok: false,
            mail_failure: None,
            body: None,
        };
        if pipelined {
            // RFC 2920 3.1: MAIL, every RCPT and DATA in one batch; BDAT waits for the
            // RCPT replies, since with no recipient accepted there is nothing to send.
            for (line, &k) in rcpts.iter().zip(&valid) {
                self.send(line, Expect::Rcpt(k));
            }
            if !chunking {
                self.send("DATA", Expect::Data);
            }
        } else {
            txn.to_send = valid;
        }
        self.txn = Some(txn);
    }

    fn mail_reply(&mut self, reply: Reply) {
        let Some(txn) = self.txn.as_mut() else {
            return self.protocol_error();
        };
        if reply.is_positive() {
            txn.mail_ok = true;
        } else {
            txn.mail_failure = Some(Failure::of(&reply, Expect::Mail.stage()));
        }
        if !txn.pipelined {
            if txn.mail_ok {
                self.send_next_rcpt();
            } else {
                self.after_envelope(None);
            }
        }
    }

    fn send_next_rcpt(&mut self) {
        let Some(txn) = self.txn.as_mut() else {
            return self.protocol_error();
        };
        match txn.to_send.pop_front() {
            Some(k) => {
                let line = format!("RCPT TO:<{}>", self.jobs[txn.job].recipients[k]);
                self.send(&line, Expect::Rcpt(k));
            }
            None => self.after_envelope(None),
        }
    }

    fn rcpt_reply(&mut self, k: usize, reply: Reply) {
        let Some(txn) = self.txn.as_mut() else {
            return self.protocol_error();
        };
        // After a failed MAIL the pipelined RCPTs are answered 503: MAIL's failure counts.
        if txn.mail_failure.is_none() {
            if reply.is_positive() {
                txn.accepted.push(k);
            } else if let Some(slot) = txn.results.get_mut(k) {
                *slot = Some(Failure::of(&reply, Expect::Rcpt(k).stage()).result());
            }
        }
        if !txn.pipelined {
            self.send_next_rcpt();
        } else if self.expect.is_empty() {
            // The batch ended with the last RCPT (CHUNKING: no DATA in it).
            self.after_envelope(None);
        }
    }

    /// Every MAIL and RCPT reply is in; `data` is the reply to a pipelined or lone DATA.
    fn after_envelope(&mut self, data: Option<Reply>) {
        let Some(txn) = self.txn.as_mut() else {
            return self.protocol_error();
        };
        let data_started = data.as_ref().is_some_and(|r| r.code == 354);
        if let Some(failure) = txn.mail_failure.clone() {
            for r in txn.results.iter_mut().filter(|r| r.is_none()) {
                *r = Some(failure.result());
            }
        } else if !txn.accepted.is_empty() {
            match data {
                None if txn.chunking => return self.start_body(true),
                None => return self.send("DATA", Expect::Data),
                Some(r) if r.code == 354 => return self.start_body(false),
                Some(r) => {
                    let failure = Failure::of(&r, Expect::Data.stage());
                    self.settle_accepted(|| failure.result());
                }
            }
        }
        // Every recipient has its outcome and no message goes out.
        if data_started {
            // RFC 2920 3.1: a server that answers 354 with no recipient accepted gets an empty
            // message, which it will refuse.
            self.outbox.out.extend_from_slice(b".\r\n");
            self.expect.push_back(Expect::DataDiscard);
            self.arm();
        }
        let rset = self.txn.as_ref().is_some_and(|t| t.mail_ok);
        self.finish(rset);
    }

    /// Gives each accepted recipient the outcome `result` makes.
    fn settle_accepted(&mut self, result: impl Fn() -> RcptResult) {
        if let Some(txn) = self.txn.as_mut() {
            for &k in &txn.accepted {
                if let Some(slot) = txn.results.get_mut(k) {
                    *slot = Some(result());
                }
            }
        }
    }

    /// The transaction is over: report it; `rset` when the server still holds it.
    fn finish(&mut self, rset: bool) {
        if let Some(txn) = self.txn.take() {
            self.report(txn.job, txn.results, rset);
        }
    }

    fn start_body(&mut self, bdat: bool) {
        let Some(txn) = self.txn.as_mut() else {
            return self.protocol_error();
        };
        let mode = if bdat {
            BodyMode::Bdat { held: None }
        } else {
            BodyMode::Data(DotStuffer::new())
        };
        txn.body = Some(Body { mode, offset: 0 });
        self.stage = "while sending the message";
        self.read_chunk();
    }

    fn read_chunk(&mut self) {
        let Some(txn) = self.txn.as_ref() else {
            return self.protocol_error();
        };
        let Some(body) = &txn.body else {
            return self.protocol_error();
        };
        let effect = Effect::ReadQueued {
            id: self.jobs[txn.job].id.clone(),
            offset: body.offset,
            max: BODY_CHUNK,
        };
        self.request(effect, Pending::Read);
    }

    /// Message bytes from the queue; empty at the end of the message.
    fn body_data(&mut self, bytes: Vec<u8>) {
        let Some(body) = self.txn.as_mut().and_then(|t| t.body.as_mut()) else {
            return self.protocol_error();
        };
        body.offset += bytes.len() as u64;
        let out = &mut self.outbox.out;
        match &mut body.mode {
            BodyMode::Data(stuffer) if !bytes.is_empty() => {
                stuffer.stuff(&bytes, out);
                self.read_chunk();
            }
            BodyMode::Data(stuffer) => {
                std::mem::take(stuffer).finish(out);
                self.expect.push_back(Expect::DataEnd);
                self.stage = Expect::DataEnd.stage();
                self.arm();
            }
            BodyMode::Bdat { held } => {
                let last = bytes.is_empty();
                let chunk = match held.take() {
                    None if !last => {
                        *held = Some(bytes);
                        return self.read_chunk();
                    }
                    None => Vec::new(),
                    Some(chunk) => {
                        if !last {
                            *held = Some(bytes);
                        }
                        chunk
                    }
                };
                let line = if last {
                    format!("BDAT {} LAST\r\n", chunk.len())
                } else {
                    format!("BDAT {}\r\n", chunk.len())
                };
                out.extend_from_slice(line.as_bytes());
                out.extend_from_slice(&chunk);
                let e = Expect::Bdat { last };
                self.expect.push_back(e);
                self.stage = e.stage();
                self.arm();
            }
        }
    }

    /// The reply to the end of the message: it applies to every accepted recipient.
    fn final_reply(&mut self, reply: Reply) {
        if reply.is_positive() {
            let text = reply.message();
            self.settle_accepted(|| RcptResult::Delivered(text.clone()));
        } else {
            let failure = Failure::of(&reply, self.stage);
            self.settle_accepted(|| failure.result());
        }
        // Whatever the reply, the transaction is over at the server (RFC 5321 4.1.1.4).
        self.finish(false);
    }
}

/// True for an address that can go between angle brackets without changing the command: no
/// control characters (CR, LF), no brackets, and a sane length (RFC 5321 4.5.3.1.3: 256).
fn valid_path(address: &str) -> bool {
    address.len() <= 256
        && !address
            .chars()
            .any(|c| c.is_control() || c == '<' || c == '>')
}

impl Session for SmtpClient {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        self.now = now;
        let mut used = 0;
        while used < input.len() && self.pending.is_none() {
            match self.phase {
                // Nothing the server says now matters (and nothing may be read as if it came
                // over TLS).
                Phase::AwaitTls | Phase::Failing { .. } => return input.len(),
                Phase::Closed => break,
                Phase::Talk | Phase::Quitting => {}
            }
            let (n, reply) = self.reader.read(&input[used..]);
            used += n;
            match reply {
                Some(Ok(reply)) => self.on_reply(reply),
                Some(Err(e)) => {
                    let text = format!("4.5.0 {e} {}", self.stage);
                    self.fail(
                        Failure::temp(451, text),
                        End::Close(CloseReason::TooManyErrors),
                    );
                }
                None => {}
            }
        }
        used
    }

    fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        match &mut self.phase {
            Phase::Closed => {}
            Phase::Quitting => self.close(CloseReason::Quit),
            Phase::Failing { then, .. } => {
                if *then == End::Quit {
                    *then = End::Close(CloseReason::PeerClosed);
                }
            }
            Phase::AwaitTls => {
                let text = "4.7.5 TLS handshake with the server failed";
                self.fail(
                    Failure::temp(451, text),
                    End::Close(CloseReason::PeerClosed),
                );
            }
            Phase::Talk => {
                let text = format!("4.4.2 lost connection {}", self.stage);
                self.fail(
                    Failure::temp(451, text),
                    End::Close(CloseReason::PeerClosed),
                );
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.pending.is_some() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.phase {
            Phase::Quitting => self.close(CloseReason::Quit),
            Phase::Talk => {
                let text = format!("4.4.2 timeout {}", self.stage);
                self.fail(Failure::temp(451, text), End::Close(CloseReason::Timeout));
            }
            _ => {}
        }
    }

    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion) {
        self.now = now;
        let Some((expected, what)) = self.pending.take() else {
            debug_assert!(false, "completion without a request");
            return;
        };
        debug_assert_eq!(expected, id, "completion for another request");
        if matches!(self.phase, Phase::Failing { .. }) {
            return self.continue_failing();
        }
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        match (what, completion) {
            (Pending::Read, Completion::Data(bytes)) => self.body_data(bytes),
            (Pending::Read, _) => {
                // The message can no longer be sent whole; a DATA already begun can only be
                // abandoned by dropping the connection.
                let id = self
                    .txn
                    .as_ref()
                    .map_or("", |t| self.jobs[t.job].id.as_str());
                let text = format!("4.3.0 local error reading queued message {id}");
                self.fail(
                    Failure::temp(451, text),
                    End::Close(CloseReason::LocalError),
                );
            }
            // Whether or not the runner could record the outcome, the session goes on: an
            // unrecorded delivery is at worst sent again later.
            (Pending::Report { rset: true }, _) => self.send("RSET", Expect::Rset),
            (Pending::Report { rset: false }, _) => {
                // A reply still owed (to a lone `.`) is read before anything else anyway.
                self.next_job();
            }
        }
    }

    fn handle_tls_established(&mut self, now: Instant, _info: TlsInfo) {
        self.now = now;
        if !matches!(self.phase, Phase::AwaitTls) {
            return;
        }
        // RFC 3207 4.2: forget what was learnt before TLS and say EHLO again.
        self.phase = Phase::Talk;
        self.tls_active = true;
        self.caps = Capabilities::default();
        self.reader.clear();
        let line = format!("EHLO {}", self.config.helo_name);
        self.send(&line, Expect::Ehlo);
    }

    fn handle_shutdown(&mut self, now: Instant) {
        // The transaction in flight finishes; the jobs after it are reported as interrupted.
        self.now = now;
        self.shutting_down = true;
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        self.outbox.poll_output(out)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Talk | Phase::Quitting if self.pending.is_none() => self.deadline,
            _ => None,
        }
    }

    fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    fn buffered_bytes(&self) -> usize {
        let held = match self.txn.as_ref().and_then(|t| t.body.as_ref()) {
            Some(Body {
                mode: BodyMode::Bdat { held: Some(h) },
                ..
            }) => h.len(),
            _ => 0,
        };
        self.outbox.out.len() + self.reader.buffered() + held
    }
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("phase", &self.phase)
            .field("reported", &self.reported)
            .field("jobs", &self.jobs.len())
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}
