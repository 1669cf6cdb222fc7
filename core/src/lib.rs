//! Petrel's protocol logic as pure, deterministic state machines.
//!
//! Nothing in this crate reads a socket, a file or a clock, spawns a thread, or draws an unseeded
//! random number. A session is fed bytes, time and answers, and hands back bytes to send, requests
//! for the outside world and the next instant it wants to be woken at. The same machine therefore
//! runs under the async daemon (`petrel-runtime-smol`), the blocking runtime (`petrel-runtime-std`),
//! the deterministic simulator and a fuzzer.
//!
//! # Driving a session
//!
//! Every protocol session implements [`Session`]. The contract, for every driver:
//!
//! 1. After every `handle_*` call, drain [`Session::poll_output`] until it returns `false`, then
//!    [`Session::poll_event`] until it returns `None`, then read [`Session::poll_timeout`].
//! 2. `now` never goes backwards between calls.
//! 3. Every [`Event::Request`] is answered exactly once with [`Session::handle_completion`], or the
//!    session is dropped.
//! 4. [`Session::handle_input`] returns how many bytes it consumed; the caller keeps the rest and
//!    offers them again after the next `handle_*` call. A session waiting on storage consumes
//!    nothing: that is the backpressure that bounds memory.
//!
//! [`Pump`] implements this contract once. Both runtimes and the simulator drive sessions only
//! through it, so there is one driver loop. A blocking driver is this loop, with the socket and the
//! store filled in:
//!
//! ```no_run
//! # use petrel_core::{Action, Pump, Session};
//! # use std::time::Instant;
//! # fn read(_: &mut [u8], _: Option<Instant>) -> Option<usize> { None }
//! # fn write(_: &[u8]) -> usize { 0 }
//! # fn execute(_: petrel_core::Effect) -> petrel_core::Completion { panic!("example") }
//! # fn clock() -> Instant { panic!("example") } // the runtime's monotonic clock
//! # fn drive(session: Box<dyn Session + Send>) {
//! let mut pump = Pump::new(session);
//! loop {
//!     match pump.next_action() {
//!         Action::Write => {
//!             let n = write(pump.output());
//!             pump.wrote(clock(), n);
//!         }
//!         Action::Execute(id, effect) => pump.complete(clock(), id, execute(effect)),
//!         Action::StartTls => { /* wrap the socket, then */ }
//!         Action::Read { deadline } => match read(pump.read_buffer(), deadline) {
//!             Some(0) => pump.eof(clock()),
//!             Some(n) => pump.received(clock(), n),
//!             None => pump.timeout(clock()),
//!         },
//!         Action::Wait { deadline } => { /* sleep until the deadline, then */
//!             pump.timeout(clock());
//!         }
//!         Action::Close(_) => break,
//!     }
//! }
//! # }
//! ```

pub mod auth;
pub mod clock;
pub mod dkim;
pub mod dns;
pub mod effect;
pub mod fetch;
pub mod filter;
pub mod imap;
pub mod line;
pub mod managesieve;
pub mod mbox;
pub mod mta_sts;
pub mod mutf7;
pub mod outbox;
pub mod pop3;
pub mod pump;
pub mod queue;
pub mod sasl;
pub mod service;
pub mod session;
pub mod sieve;
pub mod smtp;
pub mod spf;
pub mod testing;

pub use clock::{WallClock, rfc5322_date};
pub use effect::{
    AuthOutcome, Completion, Effect, Envelope, ErrorClass, MaildropEntry, MaildropOutcome, Receipt,
    Recipient, RecipientOutcome, Refusal, Refusals, Secret, StoreError, TxId, UserId,
};
pub use pump::{Action, Pump};
pub use service::{Listener, PeerInfo, ServerLimits, Service, SessionIds};
pub use session::{CloseReason, Event, RequestId, Session, TlsInfo};
