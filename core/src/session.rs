//! The one shape every protocol session has (SMTP now; IMAP and POP3 reuse it).

use crate::effect::{Completion, Effect};
use std::time::Instant;

/// Identifies a request a session emitted, so its answer can be routed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// What a session asks of its driver, in the order it must be handled.
#[derive(Debug)]
pub enum Event {
    /// Ask the outside world (store, authentication); answer with `handle_completion(id, ..)`.
    Request {
        /// The id to answer with.
        id: RequestId,
        /// What to do.
        effect: Effect,
    },
    /// All output up to here has been queued; once it is written, wrap the connection in TLS
    /// (server side), discard any plaintext already read, then call `handle_tls_established`.
    StartTls,
    /// The session is over; close the connection once the output is written.
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client said goodbye (QUIT, LOGOUT).
    Quit,
    /// The peer closed the connection or the socket failed.
    PeerClosed,
    /// The peer was silent for longer than the protocol allows.
    Timeout,
    /// The peer made too many errors or failed authentication too often.
    TooManyErrors,
    /// The server is shutting down.
    Shutdown,
    /// The server refused the connection (too many connections).
    Refused,
    /// The server could not go on (storage failed mid-response).
    LocalError,
}

/// The negotiated TLS parameters, for trace headers and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version as written in Received headers, e.g. `TLSv1.3`.
    pub version: String,
    /// Cipher suite name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// A protocol session: a pure state machine fed by a driver (see the crate docs).
pub trait Session {
    /// Feeds bytes read from the peer; returns how many were consumed. The caller keeps the rest
    /// and offers them again after the next `handle_*` call.
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize;
    /// The peer half-closed the connection or the socket failed. Open transactions are aborted.
    fn handle_eof(&mut self, now: Instant);
    /// The instant from `poll_timeout` has passed. Early or spurious calls are harmless.
    fn handle_timeout(&mut self, now: Instant);
    /// The answer to the request `id` emitted earlier by `poll_event`.
    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion);
    /// The TLS handshake asked for by [`Event::StartTls`] has completed.
    fn handle_tls_established(&mut self, now: Instant, info: TlsInfo);
    /// The server is shutting down: finish the transaction in flight, then say goodbye and close.
    fn handle_shutdown(&mut self, now: Instant);

    /// Appends bytes to send to `out`; returns false when nothing was pending.
    #[must_use]
    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool;
    /// The next request or lifecycle notice, if any.
    #[must_use]
    fn poll_event(&mut self) -> Option<Event>;
    /// The next instant at which `handle_timeout` must be called. Changes after any `handle_*`.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
    /// True once the session has ended; no further input is consumed.
    fn is_closed(&self) -> bool;
    /// Bytes the session holds in its own buffers (output not yet polled, partial lines,
    /// message chunks). Bounded by the session's limits whatever the peer does; the simulator
    /// checks it after every step.
    fn buffered_bytes(&self) -> usize;

    /// The folder whose changes the session is waiting to report now (IMAP IDLE), as owner and
    /// name of [`Effect::Imap`]. A runtime that can watch folders watches it and calls
    /// [`Session::handle_folder_changed`]; one that cannot ignores it and the session polls.
    /// Sessions that never wait on a folder keep the default, `None`.
    fn watched_folder(&self) -> Option<(&crate::effect::UserId, &str)> {
        None
    }
    /// The runtime watches the folder from [`Session::watched_folder`]: `changed` is true when
    /// it may have changed, false right after the watch was set up (changes before it were
    /// not seen). The session looks now and, trusting the runtime to call again on every
    /// change, polls only as a safety net. Calls at any other time are ignored.
    fn handle_folder_changed(&mut self, now: Instant, changed: bool) {
        let _ = (now, changed);
    }
}
