//! The one driver loop: buffers, feeding order and the session contract, written once for both
//! runtimes and the simulator (STYLE.md G12).
//!
//! A runtime asks [`Pump::next_action`] what to do, does that one thing with its socket or store,
//! and reports the result back. The pump never blocks and never does IO itself.

use crate::effect::{Completion, Effect};
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::time::Instant;

/// Bytes read from the socket at a time, and the most unconsumed input a pump holds.
pub const READ_CHUNK: usize = 16 * 1024;

/// What the runtime must do next.
#[derive(Debug)]
pub enum Action {
    /// Write [`Pump::output`] to the peer, then call [`Pump::wrote`].
    Write,
    /// Carry out the request, then call [`Pump::complete`] with its answer.
    Execute(RequestId, Effect),
    /// Everything before this is written: do the TLS server handshake on the connection, then
    /// call [`Pump::tls_established`] (or [`Pump::eof`] if it failed).
    StartTls,
    /// Read into [`Pump::read_buffer`] and call [`Pump::received`] (or [`Pump::eof`]); if
    /// `deadline` passes first, call [`Pump::timeout`].
    Read {
        /// When the session wants `handle_timeout` called, if ever.
        deadline: Option<Instant>,
    },
    /// The input buffer is full and the session takes nothing more until `deadline` (a delayed
    /// reply) or an outstanding request's answer: do not read; call [`Pump::timeout`] once
    /// `deadline` has passed.
    Wait {
        /// When to call [`Pump::timeout`]; `None` only while a request is outstanding.
        deadline: Option<Instant>,
    },
    /// Close the connection; the session is over.
    Close(CloseReason),
}

/// Drives one session over one connection.
pub struct Pump {
    session: Box<dyn Session + Send>,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_pos: usize,
    closed: Option<CloseReason>,
    outstanding: usize,
    peer_gone: bool,
}

impl Pump {
    /// Wraps a freshly opened session (its greeting is already queued).
    pub fn new(session: Box<dyn Session + Send>) -> Self {
        Pump {
            session,
            input: Vec::new(),
            in_start: 0,
            in_end: 0,
            output: Vec::new(),
            out_pos: 0,
            closed: None,
            outstanding: 0,
            peer_gone: false,
        }
    }

    /// The next thing to do. Output is always written before requests are executed, so a reply
    /// is never held back behind storage, and before a STARTTLS handshake or a close.
    pub fn next_action(&mut self) -> Action {
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
            while self.session.poll_output(&mut self.output) {}
            if self.peer_gone {
                self.output.clear();
            }
        }
        if self.out_pos < self.output.len() {
            return Action::Write;
        }
        if let Some(reason) = self.closed {
            return Action::Close(reason);
        }
        match self.session.poll_event() {
            Some(Event::Request { id, effect }) => {
                self.outstanding += 1;
                Action::Execute(id, effect)
            }
            Some(Event::StartTls) => {
                // Plaintext pipelined behind STARTTLS must never be read as if it came over TLS.
                self.in_start = 0;
                self.in_end = 0;
                Action::StartTls
            }
            Some(Event::Closed { reason }) => {
                self.closed = Some(reason);
                self.next_action()
            }
            None if self.session.is_closed() => {
                self.closed = Some(CloseReason::PeerClosed);
                Action::Close(CloseReason::PeerClosed)
            }
            None if self.peer_gone => {
                self.closed = Some(CloseReason::PeerClosed);
                Action::Close(CloseReason::PeerClosed)
            }
            // A full input buffer: wait for the session's timer or its outstanding request. A
            // session that waits for neither can never make progress: end it rather than spin.
            None if !self.can_read() => match self.session.poll_timeout() {
                deadline @ Some(_) => Action::Wait { deadline },
                None if self.outstanding > 0 => Action::Wait { deadline: None },
                None => {
                    self.closed = Some(CloseReason::TooManyErrors);
                    Action::Close(CloseReason::TooManyErrors)
                }
            },
            None => Action::Read {
                deadline: self.session.poll_timeout(),
            },
        }
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.output[self.out_pos..]
    }

    /// `n` bytes of [`Pump::output`] were written.
    pub fn wrote(&mut self, now: Instant, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.output.len());
        if self.out_pos == self.output.len() {
            // The session may have stopped reading because its output was full.
            self.feed(now);
        }
    }

    /// Writing failed: the peer is gone. Pending output is dropped.
    pub fn write_failed(&mut self, now: Instant) {
        self.output.clear();
        self.out_pos = 0;
        self.peer_gone = true;
        self.session.handle_eof(now);
    }

    /// Space to read into; call [`Pump::received`] with the count read. The buffer is at most
    /// [`READ_CHUNK`] bytes, so a session that stops consuming stops the reading too.
    pub fn read_buffer(&mut self) -> &mut [u8] {
        if self.in_start > 0 {
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.input.len() < READ_CHUNK {
            self.input.resize(READ_CHUNK, 0);
        }
        &mut self.input[self.in_end..]
    }

    /// Frees the read buffer when it holds no unconsumed input, and the output buffer when
    /// everything in it was written. A runtime calls this before it waits for a quiet
    /// connection (not between pipelined commands), so that an idle one (10,000 IMAP sessions
    /// in IDLE) holds no buffers; [`Pump::read_buffer`] allocates again when input arrives.
    pub fn release_buffers(&mut self) {
        if self.in_start == self.in_end {
            self.input = Vec::new();
            self.in_start = 0;
            self.in_end = 0;
        }
        if self.out_pos == self.output.len() {
            self.output = Vec::new();
            self.out_pos = 0;
        }
    }

    /// Bytes of buffer memory the pump holds now (read and write buffers' capacity), for
    /// memory accounting; zero for a quiet connection after [`Pump::release_buffers`].
    pub fn buffer_capacity(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }

    /// True when there is room to read; false means the session is not consuming (it waits for
    /// a completion) and reading must wait.
    pub fn can_read(&self) -> bool {
        self.in_end - self.in_start < READ_CHUNK
    }

    /// `n` bytes were read into the last [`Pump::read_buffer`].
    pub fn received(&mut self, now: Instant, n: usize) {
        self.in_end = (self.in_end + n).min(self.input.len());
        self.feed(now);
    }

    /// The peer closed its side, or reading failed.
    pub fn eof(&mut self, now: Instant) {
        // A half-closed peer (QUIT then FIN) still gets the replies to what it sent.
        self.feed(now);
        self.session.handle_eof(now);
    }

    /// The deadline from [`Action::Read`] has passed.
    pub fn timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now);
        self.feed(now);
    }

    /// The answer to the request from [`Action::Execute`].
    pub fn complete(&mut self, now: Instant, id: RequestId, completion: Completion) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.session.handle_completion(now, id, completion);
        self.feed(now);
    }

    /// The folder the session waits on now (IMAP IDLE), as owner and name; see
    /// [`Session::watched_folder`]. A runtime that watches it calls [`Pump::folder_changed`]
    /// once the watch is set up and again on every change, and stops watching when this
    /// becomes `None` or names another folder.
    pub fn watched_folder(&self) -> Option<(&crate::effect::UserId, &str)> {
        if self.closed.is_some() {
            return None;
        }
        self.session.watched_folder()
    }

    /// The folder from [`Pump::watched_folder`] is watched (`changed` false: the watch was just
    /// set up) or may have changed (`changed` true); the session looks at it. Harmless at any
    /// other time.
    pub fn folder_changed(&mut self, now: Instant, changed: bool) {
        self.session.handle_folder_changed(now, changed);
        self.feed(now);
    }

    /// The TLS handshake asked for by [`Action::StartTls`] succeeded.
    pub fn tls_established(&mut self, now: Instant, info: TlsInfo) {
        self.session.handle_tls_established(now, info);
    }

    /// The server is shutting down; the session finishes what it is doing, then closes.
    pub fn shutdown(&mut self, now: Instant) {
        self.session.handle_shutdown(now);
        self.feed(now);
    }

    /// Bytes held by this connection: unconsumed input, unwritten output and the session's own
    /// buffers. The simulator asserts it stays under [`Pump::MAX_BUFFERED`].
    pub fn buffered_bytes(&self) -> usize {
        (self.in_end - self.in_start)
            + (self.output.len() - self.out_pos)
            + self.session.buffered_bytes()
    }

    /// Upper bound of [`Pump::buffered_bytes`] for any session Petrel has: the read buffer, the
    /// output high-water mark plus one reply, a message chunk plus one decoded input buffer, and
    /// one maximal line.
    pub const MAX_BUFFERED: usize =
        READ_CHUNK + 2 * 64 * 1024 + 64 * 1024 + 2 * READ_CHUNK + 12_288 + 4096;

    /// Unanswered requests handed out by [`Action::Execute`].
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Offers buffered input to the session until it stops consuming.
    fn feed(&mut self, now: Instant) {
        while self.in_start < self.in_end && !self.session.is_closed() {
            let n = self
                .session
                .handle_input(now, &self.input[self.in_start..self.in_end]);
            if n == 0 {
                break;
            }
            self.in_start += n.min(self.in_end - self.in_start);
        }
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        }
    }
}
