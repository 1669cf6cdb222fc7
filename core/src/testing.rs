//! A scripted driver for sessions, shared by the transcript tests and anyone else who needs to
//! run a session without a network: it feeds scripted input in given pieces through the real
//! [`Pump`], answers requests with a closure, and waits out short timers. It reads no clock: the
//! caller passes the starting instant.

use crate::effect::{Completion, Effect};
use crate::pump::{Action, Pump};
use crate::session::{CloseReason, TlsInfo};
use std::time::{Duration, Instant};

/// What a scripted conversation produced.
#[derive(Debug)]
pub struct Conversation {
    /// Everything the session wrote, in order.
    pub written: Vec<u8>,
    /// Why the session ended.
    pub reason: CloseReason,
    /// The simulated time at the end.
    pub now: Instant,
}

impl Conversation {
    /// The written bytes as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.written).into_owned()
    }
}

/// Runs `pump` to its end. `input` is offered in pieces cut at `cuts` (taken modulo the input
/// length, in any order), each piece as one or more reads; requests are answered by `execute`;
/// STARTTLS succeeds at once with a fixed [`TlsInfo`]; a timer due within `patience` of `start`
/// is waited out (AUTH failure delays), while a later one (the idle timeout) ends the input
/// with an EOF instead.
pub fn converse(
    mut pump: Pump,
    start: Instant,
    input: &[u8],
    cuts: &[usize],
    patience: Duration,
    mut execute: impl FnMut(Effect) -> Completion,
) -> Conversation {
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut bounds = bounds.into_iter();
    let (mut pos, mut end, mut now) = (0, 0, start);
    let mut written = Vec::new();
    let reason = loop {
        match pump.next_action() {
            Action::Write => {
                written.extend_from_slice(pump.output());
                let n = pump.output().len();
                pump.wrote(now, n);
            }
            Action::Execute(id, effect) => {
                let answer = execute(effect);
                pump.complete(now, id, answer);
            }
            Action::StartTls => pump.tls_established(
                now,
                TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS13_AES_128_GCM_SHA256".into(),
                },
            ),
            Action::Read { deadline } => {
                while pos == end {
                    match bounds.next() {
                        Some(e) => end = e,
                        None => break,
                    }
                }
                if pos < end {
                    let buf = pump.read_buffer();
                    let n = buf.len().min(end - pos);
                    buf[..n].copy_from_slice(&input[pos..pos + n]);
                    pos += n;
                    pump.received(now, n);
                } else if let Some(d) =
                    deadline.filter(|d| d.saturating_duration_since(start) < patience)
                {
                    now = now.max(d);
                    pump.timeout(now);
                } else {
                    pump.eof(now);
                }
            }
            Action::Wait { deadline } => {
                now = now.max(deadline.expect("requests are answered at once here"));
                pump.timeout(now);
            }
            Action::Close(reason) => break reason,
        }
    };
    Conversation {
        written,
        reason,
        now,
    }
}
