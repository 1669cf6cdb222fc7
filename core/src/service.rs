//! What a listener serves, and who is connecting: the runtimes' recipe for opening sessions.

use crate::imap::session::{ImapConfig, ImapSession};
use crate::managesieve::{ManageSieveConfig, ManageSieveSession};
use crate::pop3::{Pop3Config, Pop3Session};
use crate::session::{Session, TlsInfo};
use crate::smtp::{SmtpConfig, SmtpSession};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// POP3 over the users' INBOX.
    Pop3(Arc<Pop3Config>),
    /// ManageSieve over the users' Sieve scripts.
    ManageSieve(Arc<ManageSieveConfig>),
    /// IMAP over the users' folders.
    Imap(Arc<ImapConfig>),
}

impl Service {
    /// Opens a session for a new connection; its greeting is already queued.
    pub fn open(&self, peer: PeerInfo, now: Instant) -> Box<dyn Session + Send> {
        match self {
            Service::Smtp(config) => Box::new(SmtpSession::new(config.clone(), peer, now)),
            Service::Pop3(config) => Box::new(Pop3Session::new(config.clone(), peer, now)),
            Service::Imap(config) => Box::new(ImapSession::new(config.clone(), peer, now)),
            Service::ManageSieve(config) => {
                Box::new(ManageSieveSession::new(config.clone(), peer, now))
            }
        }
    }

    /// Opens a session that only tells the peer the server is busy, then closes.
    pub fn refuse(&self, peer: PeerInfo, now: Instant) -> Box<dyn Session + Send> {
        match self {
            Service::Smtp(config) => Box::new(SmtpSession::refuse(config.clone(), peer, now)),
            Service::Pop3(config) => Box::new(Pop3Session::refuse(config.clone(), peer, now)),
            Service::Imap(config) => Box::new(ImapSession::refuse(config.clone(), peer, now)),
            Service::ManageSieve(config) => {
                Box::new(ManageSieveSession::refuse(config.clone(), peer, now))
            }
        }
    }

    /// Opens the session for a new connection and wraps it in the driver; a `busy` server
    /// only tells the peer so and closes.
    pub fn start(&self, peer: PeerInfo, busy: bool, now: Instant) -> crate::Pump {
        crate::Pump::new(if busy {
            self.refuse(peer, now)
        } else {
            self.open(peer, now)
        })
    }

    /// Short protocol name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Service::Smtp(config) => config.role.name(),
            Service::Pop3(_) => "pop3",
            Service::Imap(_) => "imap",
            Service::ManageSieve(_) => "managesieve",
        }
    }
}

/// A bound listening socket and what it serves; `S` is the runtime's socket type.
#[derive(Debug)]
pub struct Listener<S> {
    /// The socket, already bound (the CLI binds, so bind errors name the config key).
    pub socket: S,
    /// What to speak on it.
    pub service: Service,
    /// TLS from the first byte (465, 993, 995) rather than STARTTLS.
    pub implicit_tls: bool,
}

/// Server-wide limits the runtimes enforce.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Concurrent connections; more are answered "busy" and closed.
    pub max_connections: usize,
    /// How long a write to a peer may block before the connection is dropped.
    pub write_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// After a shutdown request, how long in-flight sessions get to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1000,
            write_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Session ids: unique per process, unpredictable across processes (seeded), short enough for
/// logs and Received headers.
#[derive(Debug)]
pub struct SessionIds {
    seed: u64,
    counter: std::sync::atomic::AtomicU64,
}

impl SessionIds {
    /// A generator; `seed` should differ between runs (the daemon draws it from the OS).
    pub fn new(seed: u64) -> Self {
        SessionIds {
            seed,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The next id: 12 upper-case hex digits.
    pub fn next_id(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A bijective mix (splitmix64 finaliser) keeps ids unique for distinct counters.
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        format!("{:012X}", z & 0xFFFF_FFFF_FFFF)
    }
}

impl TlsInfo {
    /// Builds the record from rustls's debug names (`TLSv1_3`, `TLS13_AES_256_GCM_SHA384`).
    pub fn from_names(version: &str, cipher: &str) -> Self {
        TlsInfo {
            version: version.replace('_', "."),
            cipher: cipher.to_string(),
        }
    }
}
