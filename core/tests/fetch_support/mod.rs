//! A scripted driver for the fetch client sessions: the remote's whole output is fed in pieces
//! cut at given points, requests are answered by a fake store, and everything the session does
//! is recorded as one trace (`C: ` lines it sent, `E: ` requests it made) plus the messages it
//! committed, so that any two ways of cutting the same input can be compared.

#![allow(dead_code)]

use petrel_core::fetch::{FetchAccount, FetchAnswer, FetchConfig, FetchRequest, FetchState};
use petrel_core::fetch::{Protocol, Security};
use petrel_core::{Completion, Effect, Event, Receipt, Secret, Session, TxId, UserId, WallClock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fixed calendar clock.
#[derive(Debug)]
pub struct Fixed;

impl WallClock for Fixed {
    fn unix_seconds(&self) -> i64 {
        1_764_000_000
    }
}

/// An account on `127.0.0.1` (plaintext allowed), deleting unless `keep`.
pub fn account(protocol: Protocol, keep: bool) -> Arc<FetchAccount> {
    Arc::new(FetchAccount {
        user: UserId("bob@example.test".into()),
        id: 1,
        token: "1.tok".into(),
        protocol,
        security: Security::StartTls { required: false },
        host: "remote.example".into(),
        login: "alice".into(),
        password: Secret::new("pw".into()),
        folder: "INBOX".into(),
        keep,
    })
}

/// The session settings: no IDLE, a 60-second command timeout.
pub fn config() -> Arc<FetchConfig> {
    let mut c = FetchConfig::new("local.example", Arc::new(Fixed));
    c.command_timeout = Duration::from_secs(60);
    Arc::new(c)
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `C: line` for each line the session sent, `E: ...` for each request, in order.
    pub trace: Vec<String>,
    /// Committed messages: trace header block, then the message bytes.
    pub messages: Vec<Vec<u8>>,
    /// The `Finished` report: (fetched, error).
    pub finished: Option<(u64, Option<String>)>,
    /// True when the session closed.
    pub closed: bool,
}

impl Outcome {
    /// Index of the first trace line starting with `prefix`.
    pub fn at(&self, prefix: &str) -> usize {
        self.trace
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:#?}", self.trace))
    }
}

/// Runs `session` over `input` cut at `cuts`, then EOF. `state` answers `Load`; a `fail_commit`
/// makes every commit fail.
pub fn run(
    mut session: Box<dyn Session>,
    input: &[u8],
    cuts: &[usize],
    state: FetchState,
    fail_commit: bool,
) -> Outcome {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    bounds.dedup();
    let now = Instant::now();
    let mut out = Outcome {
        trace: Vec::new(),
        messages: Vec::new(),
        finished: None,
        closed: false,
    };
    let mut open: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut next_tx = 0u64;
    let mut written = Vec::new();
    let mut buffered: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut bounds = bounds.into_iter();
    let mut eof_sent = false;
    for _ in 0..1_000_000 {
        // Drain output, then events (the driving contract).
        let mut bytes = Vec::new();
        while session.poll_output(&mut bytes) {}
        written.extend_from_slice(&bytes);
        while let Some(i) = written.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = written.drain(..=i).collect();
            out.trace
                .push(format!("C: {}", String::from_utf8_lossy(&line).trim_end()));
        }
        let mut progressed = false;
        while let Some(ev) = session.poll_event() {
            progressed = true;
            match ev {
                Event::Request { id, effect } => {
                    let answer = match effect {
                        Effect::Fetch { request, .. } => {
                            out.trace.push(format!("E: {}", describe(&request)));
                            match request {
                                FetchRequest::Load => {
                                    Completion::Fetch(FetchAnswer::State(state.clone()))
                                }
                                FetchRequest::Finished { fetched, error, .. } => {
                                    out.finished = Some((fetched, error));
                                    Completion::Fetch(FetchAnswer::Done)
                                }
                                _ => Completion::Fetch(FetchAnswer::Done),
                            }
                        }
                        Effect::BeginMessage { trace, .. } => {
                            out.trace.push("E: Begin".into());
                            next_tx += 1;
                            open.insert(next_tx, trace);
                            Completion::Began(TxId(next_tx))
                        }
                        Effect::AppendChunk { tx, bytes } => {
                            out.trace.push("E: Append".into());
                            open.get_mut(&tx.0)
                                .expect("open tx")
                                .extend_from_slice(&bytes);
                            Completion::Appended
                        }
                        Effect::Commit { tx, .. } => {
                            out.trace.push("E: Commit".into());
                            let m = open.remove(&tx.0).expect("open tx");
                            if fail_commit {
                                Completion::Failed(petrel_core::StoreError {
                                    class: petrel_core::ErrorClass::Temporary,
                                    message: "disk full".into(),
                                })
                            } else {
                                out.messages.push(m);
                                Completion::Durable(Receipt::durable(tx))
                            }
                        }
                        Effect::Abort { tx } => {
                            out.trace.push("E: Abort".into());
                            open.remove(&tx.0);
                            Completion::Aborted
                        }
                        other => panic!("unexpected request {other:?}"),
                    };
                    session.handle_completion(now, id, answer);
                }
                Event::StartTls => {
                    out.trace.push("E: StartTls".into());
                    session.handle_tls_established(
                        now,
                        petrel_core::TlsInfo {
                            version: "TLSv1.3".into(),
                            cipher: "X".into(),
                        },
                    );
                }
                Event::Closed { .. } => {
                    out.trace.push("E: Closed".into());
                    out.closed = true;
                }
            }
        }
        if progressed {
            continue;
        }
        if session.is_closed() {
            let mut bytes = Vec::new();
            while session.poll_output(&mut bytes) {}
            written.extend_from_slice(&bytes);
            if !written.is_empty() {
                out.trace.push(format!(
                    "C: {}",
                    String::from_utf8_lossy(&written).trim_end()
                ));
            }
            return out;
        }
        assert!(
            session.buffered_bytes() <= 256 * 1024,
            "session holds {} bytes",
            session.buffered_bytes()
        );
        if !buffered.is_empty() {
            let n = session.handle_input(now, &buffered);
            if n > 0 {
                buffered.drain(..n);
                continue;
            }
        }
        match bounds.next() {
            Some(end) if end > fed => {
                buffered.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Some(_) => {}
            None if !eof_sent => {
                eof_sent = true;
                session.handle_eof(now);
            }
            None => return out,
        }
    }
    panic!("the session did not finish");
}

fn describe(r: &FetchRequest) -> String {
    match r {
        FetchRequest::Load => "Load".into(),
        FetchRequest::Pending { key } => format!("Pending {key}"),
        FetchRequest::Delivered { key, size, .. } => format!("Delivered {key} {size}"),
        FetchRequest::UidValidity { old, new } => format!("UidValidity {old:?} {new}"),
        FetchRequest::Retain { keys } => format!("Retain {}", keys.join(",")),
        FetchRequest::Progress { done, total } => format!("Progress {done}/{total}"),
        FetchRequest::Release => "Release".into(),
        FetchRequest::Acquire => "Acquire".into(),
        FetchRequest::Finished { fetched, error, .. } => format!("Finished {fetched} {error:?}"),
    }
}

/// The stored message without the trace block the session put on top.
pub fn body_of(stored: &[u8]) -> Vec<u8> {
    let text = stored;
    let marker = b"X-Petrel-Fetch: ";
    let i = text
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker");
    let end = i + text[i..].iter().position(|&b| b == b'\n').expect("eol") + 1;
    text[end..].to_vec()
}
