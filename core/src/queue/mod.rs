//! Outbound queue decisions, pure: where to send a domain's mail ([`route`]), when to retry and
//! when to give up ([`retry`]), and the delivery status notifications sent to the sender
//! ([`dsn`]). The store keeps the queue on
//! disk; the runtimes run the attempts.

pub mod dsn;
pub mod retry;
pub mod route;

pub use dsn::{DsnAction, DsnRecipient, DsnReport};
pub use retry::{Next, RetryPolicy};
pub use route::{RouteStep, Router};
