//! What a listener serves, and who is connecting: the runtimes' recipe for opening sessions.

use crate::session::{Session, TlsInfo};
use crate::smtp::{SmtpConfig, SmtpSession};
use std::sync::Arc;
use std::time::Instant;

/// The connecting peer, as the runtime saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's IP address, as text (`127.0.0.1`, `::1`).
    pub ip: String,
    /// True when the peer is on the loopback interface.
    pub loopback: bool,
    /// Set when the connection is TLS from the start (implicit TLS listeners).
    pub tls: Option<TlsInfo>,
    /// A unique id for logs and trace headers.
    pub session_id: String,
}

/// A protocol a listener serves, with its configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Service {
    /// SMTP in one of its roles (inbound, submission).
    Smtp(Arc<SmtpConfig>),
}

impl Service {
    /// Opens a session for a new connection; its greeting is already queued.
    pub fn open(&self, peer: PeerInfo, now: Instant) -> Box<dyn Session + Send> {
        match self {
            Service::Smtp(config) => Box::new(SmtpSession::new(config.clone(), peer, now)),
        }
    }

    /// Opens a session that only tells the peer the server is busy, then closes.
    pub fn refuse(&self, peer: PeerInfo, now: Instant) -> Box<dyn Session + Send> {
        match self {
            Service::Smtp(config) => Box::new(SmtpSession::refuse(config.clone(), peer, now)),
        }
    }

    /// Short protocol name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Smtp(config) => config.role.name(),
        }
    }
}
