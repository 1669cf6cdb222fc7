//! Runs the configured scanners for one message and folds their verdicts with the policy.
//!
//! [`Scan`] is a pure machine like the protocol clients it drives. Its caller (the SMTP
//! session) asks [`Scan::next_op`] for the next step on a scanner connection, issues it as
//! [`Effect::Scan`](crate::effect::Effect::Scan), and hands the answer to
//! [`Scan::handle_completion`]. One step is outstanding at a time: the runtimes execute
//! requests one after the other anyway, and it keeps the order of bytes on each connection
//! obvious. Message bytes go in with [`Scan::body`] only while [`Scan::ready_for_body`], which
//! is the backpressure: a scanner that is slow to read slows the SMTP client down instead of
//! filling memory.
//!
//! Every step carries the scanner timeout; a step that fails or comes back later than that
//! fails the scanner, and a failed scanner counts as the failure policy says (`tempfail`: the
//! whole message gets 451 4.7.1; `accept`: the message goes on without that scanner's verdict).

use super::clamd::ClamdClient;
use super::milter::{MilterClient, MilterConfig};
use super::rspamd::RspamdClient;
use super::spamd::SpamdClient;
use super::{HeaderEdit, ScanContext, ScannerClient, Verdict};
use crate::effect::{Completion, ScanConn, ScanOp};
use crate::smtp::Role;
use std::time::{Duration, Instant};

/// Most bytes asked for in one receive.
const RECEIVE_MAX: usize = 64 * 1024;

/// What to do when a scanner is down, hangs, or answers garbage (`[filter] on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse for now: 451 4.7.1, the sender retries.
    TempFail,
    /// Go on without that scanner's verdict.
    Accept,
}

/// The `[filter]` section: which scanners to ask and how to act on their answers.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// clamd's address (`host:port` or `unix:/path`).
    pub clamd: Option<String>,
    /// spamd's address.
    pub spamd: Option<String>,
    /// rspamd's normal worker.
    pub rspamd: Option<String>,
    /// Milters, in order.
    pub milters: Vec<String>,
    /// Longest any one step with a scanner (connect, write, wait for an answer) may take.
    pub timeout: Duration,
    /// What a scanner failure means for the message.
    pub on_failure: OnFailure,
    /// Spam scores at or above this are refused (554 5.7.1); below it, spam goes to Junk.
    pub spam_reject_score: f64,
    /// Largest message handed to spamd/rspamd (they need the length first, so it is buffered);
    /// longer ones are not checked for spam.
    pub spam_max_size: usize,
    /// Scan submitted mail (587/465) for viruses.
    pub scan_submission_virus: bool,
    /// Scan submitted mail for spam.
    pub scan_submission_spam: bool,
    /// Scan mail arriving over LMTP (like inbound SMTP).
    pub scan_lmtp: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            clamd: None,
            spamd: None,
            rspamd: None,
            milters: Vec::new(),
            timeout: Duration::from_secs(30),
            on_failure: OnFailure::TempFail,
            spam_reject_score: 15.0,
            spam_max_size: super::spamd::DEFAULT_MAX_SIZE,
            scan_submission_virus: true,
            scan_submission_spam: false,
            scan_lmtp: true,
        }
    }
}

/// Makes the client for a milter. `{daemon_name}` is our host name, as Postfix's default
/// `milter_macro_daemon_name = $myhostname`.
fn milter_client(hostname: &str) -> Box<dyn ScannerClient> {
    Box::new(MilterClient::new(MilterConfig {
        daemon_name: hostname.to_string(),
        ..MilterConfig::default()
    }))
}

/// The scanners that apply to a message on a listener of this role, in the order they run:
/// clamd, milters, spamd, rspamd. Each is (kind, target, client).
fn scanners_for(config: &FilterConfig, role: Role, ctx: &ScanContext) -> Vec<Slot> {
    let user = ctx.authenticated.as_deref();
    let (virus, spam, milters) = match role {
        Role::Inbound => (true, true, true),
        Role::Lmtp => (config.scan_lmtp, config.scan_lmtp, config.scan_lmtp),
        Role::Submission | Role::Submissions => (
            config.scan_submission_virus,
            config.scan_submission_spam,
            true,
        ),
    };
    let mut slots = Vec::new();
    let mut add = |kind: &'static str, target: &str, client: Box<dyn ScannerClient>| {
        let conn = ScanConn(slots.len() as u32);
        slots.push(Slot::new(kind, target, conn, client));
    };
    if virus && let Some(target) = &config.clamd {
        add("clamd", target, Box::new(ClamdClient::new()));
    }
    if milters {
        for target in &config.milters {
            add("milter", target, milter_client(&ctx.hostname));
        }
    }
    if spam && let Some(target) = &config.spamd {
        let user = user.map(str::to_string);
        add(
            "spamd",
            target,
            Box::new(SpamdClient::new(config.spam_max_size, user)),
        );
    }
    if spam && let Some(target) = &config.rspamd {
        add(
            "rspamd",
            target,
            // HTTP wants a host name in `Host`; a unix socket has none.
            Box::new(RspamdClient::new(
                config.spam_max_size,
                if target.starts_with("unix:") {
                    "localhost"
                } else {
                    target
                },
            )),
        );
    }
    slots
}

/// Where one scanner is.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Not connected yet.
    New,
    /// Connected, talking.
    Open,
    /// Has its verdict; the connection is to be closed.
    Judged,
    /// Failed (why); the connection is to be closed.
    Failed(String),
}

/// One scanner of the message.
#[derive(Debug)]
struct Slot {
    kind: &'static str,
    target: String,
    conn: ScanConn,
    client: Box<dyn ScannerClient>,
    state: State,
    /// A write failed: the scanner may have answered before closing (clamd's size limit);
    /// read that answer before giving up.
    write_failed: Option<String>,
    /// While waiting for an answer (the verdict, or a milter's reply to a step): the whole
    /// answer must be in by then, however the scanner trickles it.
    answer_by: Option<Instant>,
    closed: bool,
}

impl Slot {
    fn new(
        kind: &'static str,
        target: &str,
        conn: ScanConn,
        client: Box<dyn ScannerClient>,
    ) -> Self {
        Slot {
            kind,
            target: target.to_string(),
            conn,
            client,
            state: State::New,
            write_failed: None,
            answer_by: None,
            closed: false,
        }
    }

    fn live(&self) -> bool {
        self.state == State::Open
    }

    fn fail(&mut self, why: String) {
        if matches!(self.state, State::New | State::Open) {
            self.state = State::Failed(why);
        }
    }

    /// The step that closes the connection, with what came of the scan for the log.
    fn close_op(&self) -> ScanOp {
        let (what, failed) = match (&self.state, self.client.verdict()) {
            (State::Failed(why), _) => (why.clone(), true),
            (_, Some(v)) => (describe(v), false),
            (_, None) => ("no verdict".to_string(), true),
        };
        ScanOp::Close {
            outcome: format!("{} {}: {what}", self.kind, self.target),
            failed,
        }
    }

    /// Moves to `Judged` once the client has its verdict.
    fn check_verdict(&mut self) {
        if self.state == State::Open && self.client.verdict().is_some() {
            self.state = State::Judged;
        }
    }
}

/// A verdict in a few words, for the log.
fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Accept {
            edits,
            spam,
            quarantine,
        } => {
            let mut s = String::from("accept");
            if let Some(spam) = spam {
                s.push_str(&format!(
                    ", score {:.1}/{:.1}{}",
                    spam.score,
                    spam.threshold,
                    if spam.is_spam { " spam" } else { "" }
                ));
            }
            if let Some(q) = quarantine {
                s.push_str(&format!(", quarantine ({q})"));
            }
            if !edits.is_empty() {
                s.push_str(&format!(", {} header change(s)", edits.len()));
            }
            s
        }
        Verdict::Reject { code, status, text } => format!("reject {code} {status} {text}"),
        Verdict::TempFail { code, status, text } => format!("tempfail {code} {status} {text}"),
        Verdict::Discard => "discard".to_string(),
    }
}

/// What the message's scan decided, for the final reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Deliver, with these header changes; `junk` files it in the recipients' Junk folder.
    Deliver {
        /// Header changes from every scanner, in scanner order.
        edits: Vec<HeaderEdit>,
        /// Spam or quarantined.
        junk: bool,
    },
    /// Refuse with this reply.
    Refuse {
        /// 4xx or 5xx.
        code: u16,
        /// Enhanced status code.
        status: String,
        /// Reply text.
        text: String,
    },
    /// Say 250 and deliver to nobody.
    Discard,
}

/// What a step in flight was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Send,
    Receive,
    Close,
}

/// The scan of one message (see the module docs).
#[derive(Debug)]
pub struct Scan {
    slots: Vec<Slot>,
    timeout: Duration,
    on_failure: OnFailure,
    spam_reject_score: f64,
    ctx: ScanContext,
    ended: bool,
    inflight: Option<(usize, Step, Instant)>,
    /// Bytes taken from a client's output, not yet written.
    pending_out: Vec<Vec<u8>>,
}

impl Scan {
    /// The scan for a message on a listener of `role`, or `None` when no scanner applies.
    pub fn new(config: &FilterConfig, role: Role, ctx: ScanContext) -> Option<Scan> {
        let slots = scanners_for(config, role, &ctx);
        if slots.is_empty() {
            return None;
        }
        let n = slots.len();
        Some(Scan {
            slots,
            timeout: config.timeout,
            on_failure: config.on_failure,
            spam_reject_score: config.spam_reject_score,
            ctx,
            ended: false,
            inflight: None,
            pending_out: vec![Vec::new(); n],
        })
    }

    /// The next step to take on a scanner connection, or `None` when the scan waits for
    /// message bytes (or is finished). Call only while no step is outstanding.
    pub fn next_op(&mut self, now: Instant) -> Option<(ScanConn, ScanOp)> {
        if self.inflight.is_some() {
            return None;
        }
        let timeout = self.timeout;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let step = match &slot.state {
                State::New => {
                    let op = ScanOp::Connect {
                        target: slot.target.clone(),
                        timeout,
                    };
                    Some((Step::Connect, op))
                }
                State::Open => {
                    let out = &mut self.pending_out[i];
                    if slot.write_failed.is_none() {
                        while slot.client.poll_output(out) {}
                    }
                    if !out.is_empty() && slot.write_failed.is_none() {
                        let bytes = std::mem::take(out);
                        Some((Step::Send, ScanOp::Send { bytes, timeout }))
                    } else if slot.client.wants_input()
                        && (self.ended
                            || !slot.client.ready_for_body()
                            || slot.write_failed.is_some())
                    {
                        let by = *slot.answer_by.get_or_insert(now + timeout);
                        let left = by.saturating_duration_since(now);
                        if left.is_zero() {
                            slot.fail(format!("{} timed out", slot.kind));
                            Some((Step::Close, slot.close_op()))
                        } else {
                            Some((
                                Step::Receive,
                                ScanOp::Receive {
                                    max: RECEIVE_MAX,
                                    timeout: left,
                                },
                            ))
                        }
                    } else if self.ended && !slot.client.wants_input() {
                        // Ended, nothing to say, nothing expected, and still no verdict.
                        slot.fail(format!("{} gave no verdict", slot.kind));
                        Some((Step::Close, slot.close_op()))
                    } else {
                        None
                    }
                }
                State::Judged | State::Failed(_) if !slot.closed => {
                    Some((Step::Close, slot.close_op()))
                }
                _ => None,
            };
            if let Some((step, op)) = step {
                self.inflight = Some((i, step, now));
                return Some((slot.conn, op));
            }
        }
        None
    }

    /// The answer to the step from [`Scan::next_op`].
    pub fn handle_completion(&mut self, now: Instant, completion: Completion) {
        let Some((i, step, started)) = self.inflight.take() else {
            debug_assert!(false, "scan completion without a step");
            return;
        };
        let slot = &mut self.slots[i];
        let limit = match (step, slot.answer_by) {
            (Step::Receive, Some(by)) => by + Duration::from_secs(1),
            _ => started + self.timeout + Duration::from_secs(1),
        };
        let late = now > limit;
        match (step, completion) {
            (Step::Close, _) => slot.closed = true,
            (_, _) if late => slot.fail(format!("{} timed out", slot.kind)),
            (Step::Connect, Completion::Done) => {
                slot.state = State::Open;
                slot.client.begin(&self.ctx);
            }
            (Step::Connect, Completion::Failed(e)) => {
                // Nothing to close.
                slot.closed = true;
                slot.fail(format!("cannot connect to {}: {}", slot.target, e.message));
            }
            (Step::Send, Completion::Done) => {}
            (Step::Send, Completion::Failed(e)) => {
                if slot.client.wants_input() {
                    slot.write_failed = Some(e.message);
                } else {
                    slot.fail(format!("{}: write failed: {}", slot.kind, e.message));
                }
            }
            (Step::Receive, Completion::Data(bytes)) => {
                let result = if bytes.is_empty() {
                    slot.client.handle_eof()
                } else {
                    slot.client.handle_input(&bytes)
                };
                if let Err(e) = result {
                    slot.fail(e.0);
                } else if bytes.is_empty() && slot.client.verdict().is_none() {
                    slot.fail(format!("{} closed the connection", slot.kind));
                } else if !self.ended && slot.client.ready_for_body() {
                    // A milter answered this step; the next wait gets its own time.
                    slot.answer_by = None;
                }
            }
            (Step::Receive, Completion::Failed(e)) => {
                let why = match slot.write_failed.take() {
                    Some(w) => format!("{}: write failed: {w}", slot.kind),
                    None => format!("{}: {}", slot.kind, e.message),
                };
                slot.fail(why);
            }
            (_, other) => slot.fail(format!("{}: unexpected answer {other:?}", slot.kind)),
        }
        slot.check_verdict();
        if slot.state == State::Open && slot.write_failed.is_some() && !slot.client.wants_input() {
            let why = slot.write_failed.take().unwrap_or_default();
            slot.fail(format!("{}: write failed: {why}", slot.kind));
        }
    }

    /// True when another piece of the message may be fed with [`Scan::body`]: every scanner is
    /// connected (or failed) and none has unsent bytes or an answer it must read first.
    pub fn ready_for_body(&self) -> bool {
        self.inflight.is_none()
            && self.slots.iter().enumerate().all(|(i, s)| match s.state {
                State::New => false,
                State::Open => {
                    s.write_failed.is_none()
                        && self.pending_out[i].is_empty()
                        && s.client.ready_for_body()
                }
                _ => true,
            })
    }

    /// The next piece of the message (CRLF lines, as stored), to every scanner still talking.
    pub fn body(&mut self, chunk: &[u8]) {
        for slot in self.slots.iter_mut().filter(|s| s.live()) {
            slot.client.body(chunk);
            slot.check_verdict();
        }
    }

    /// The message is complete.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        for slot in self.slots.iter_mut().filter(|s| s.live()) {
            slot.client.end();
            slot.check_verdict();
        }
    }

    /// True once every scanner has answered or failed and its connection is closed.
    pub fn is_done(&self) -> bool {
        self.ended
            && self.inflight.is_none()
            && self
                .slots
                .iter()
                .all(|s| s.closed && matches!(s.state, State::Judged | State::Failed(_)))
    }

    /// Scanner connections still to close (the session ends early: call [`Scan::next_op`]
    /// until it gives `None` after this).
    pub fn cancel(&mut self) {
        for slot in &mut self.slots {
            if slot.state == State::New {
                slot.closed = true;
            }
            slot.fail("cancelled".into());
        }
        self.ended = true;
    }

    /// Each scanner's kind and why it failed, for logs.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.slots
            .iter()
            .filter_map(|s| match &s.state {
                State::Failed(why) if why != "cancelled" => Some((s.kind, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The folded decision, once [`Scan::is_done`]: a virus or a scanner's rejection refuses
    /// permanently; a failed scanner under `tempfail` or a scanner's own temporary failure
    /// refuses for now; a spam score at or above `spam_reject_score` refuses; a discard
    /// discards; otherwise the message is delivered with every scanner's header changes, to
    /// Junk when a scanner calls it spam or quarantines it.
    pub fn outcome(&self) -> Outcome {
        let verdicts: Vec<&Verdict> = self
            .slots
            .iter()
            .filter_map(|s| s.client.verdict())
            .collect();
        if let Some(Verdict::Reject { code, status, text }) = verdicts
            .iter()
            .find(|v| matches!(v, Verdict::Reject { .. }))
        {
            return Outcome::Refuse {
                code: *code,
                status: status.clone(),
                text: text.clone(),
            };
        }
        let failed: Vec<&str> = self
            .slots
            .iter()
            .filter(|s| matches!(s.state, State::Failed(_)))
            .map(|s| s.kind)
            .collect();
        if !failed.is_empty() && self.on_failure == OnFailure::TempFail {
            return Outcome::Refuse {
                code: 451,
                status: "4.7.1".into(),
                text: format!(
                    "Error: content scan failed ({}), try again later",
                    failed.join(", ")
                ),
            };
        }
        if let Some(Verdict::TempFail { code, status, text }) = verdicts
            .iter()
            .find(|v| matches!(v, Verdict::TempFail { .. }))
        {
            return Outcome::Refuse {
                code: *code,
                status: status.clone(),
                text: text.clone(),
            };
        }
        let mut edits = Vec::new();
        let mut junk = false;
        let mut discard = false;
        for v in &verdicts {
            match v {
                Verdict::Accept {
                    edits: e,
                    spam,
                    quarantine,
                } => {
                    if let Some(spam) = spam {
                        if spam.score >= self.spam_reject_score {
                            return Outcome::Refuse {
                                code: 554,
                                status: "5.7.1".into(),
                                text: format!("Spam message rejected (score {:.1})", spam.score),
                            };
                        }
                        junk |= spam.is_spam;
                    }
                    junk |= quarantine.is_some();
                    edits.extend(e.iter().cloned());
                }
                Verdict::Discard => discard = true,
                Verdict::Reject { .. } | Verdict::TempFail { .. } => {}
            }
        }
        if discard {
            return Outcome::Discard;
        }
        Outcome::Deliver { edits, junk }
    }
}
