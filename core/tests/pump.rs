//! The pump's buffers: an idle connection holds none, and input not yet consumed survives a
//! release (what lets 10,000 idle IMAP sessions fit in a few KiB each).
// A test needs one real Instant to start from; nothing here depends on its value.
#![allow(clippy::disallowed_methods)]

use petrel_core::{Action, Completion, Event, Pump, RequestId, Session, TlsInfo};
use std::time::Instant;

/// Consumes whole lines and answers each with a reply of the line's length in bytes.
struct Lines {
    pending: Vec<u8>,
}

impl Session for Lines {
    fn handle_input(&mut self, _: Instant, input: &[u8]) -> usize {
        match input.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pending.extend(std::iter::repeat_n(b'x', i + 1));
                i + 1
            }
            None => 0,
        }
    }
    fn handle_eof(&mut self, _: Instant) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_completion(&mut self, _: Instant, _: RequestId, _: Completion) {}
    fn handle_tls_established(&mut self, _: Instant, _: TlsInfo) {}
    fn handle_shutdown(&mut self, _: Instant) {}
    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        out.append(&mut self.pending);
        false
    }
    fn poll_event(&mut self) -> Option<Event> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn is_closed(&self) -> bool {
        false
    }
    fn buffered_bytes(&self) -> usize {
        self.pending.len()
    }
}

fn feed(p: &mut Pump, bytes: &[u8]) {
    let now = Instant::now();
    p.read_buffer()[..bytes.len()].copy_from_slice(bytes);
    p.received(now, bytes.len());
}

#[test]
fn an_idle_pump_holds_no_buffers_and_keeps_partial_input() {
    let now = Instant::now();
    let mut p = Pump::new(Box::new(Lines {
        pending: Vec::new(),
    }));
    // A reply, written out: the output buffer is released, the read buffer too.
    feed(&mut p, &[b'a'; 9000][..]);
    p.read_buffer();
    feed(&mut p, b"\n");
    assert!(matches!(p.next_action(), Action::Write));
    assert_eq!(p.output().len(), 9001);
    p.wrote(now, 9001);
    assert!(matches!(p.next_action(), Action::Read { .. }));
    p.release_buffers();
    assert_eq!(p.buffer_capacity(), 0);

    // Half a line stays across a release; the next read completes it.
    feed(&mut p, b"half");
    p.release_buffers();
    assert_eq!(p.buffered_bytes(), 4);
    feed(&mut p, b" line\n");
    assert!(matches!(p.next_action(), Action::Write));
    assert_eq!(p.output().len(), 10);
    p.wrote(now, 10);
    p.release_buffers();
    assert_eq!(p.buffer_capacity(), 0);
}
