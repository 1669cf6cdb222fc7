//! SMTP (RFC 5321) and LMTP (RFC 2033) with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, CHUNKING,
//! STARTTLS and AUTH, as a pure server session.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod hops;
pub mod privacy;
pub mod received;
pub mod server;

pub use server::SmtpSession;

use crate::clock::WallClock;
use std::sync::Arc;
use std::time::Duration;

/// What an SMTP listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail for local domains from anyone; no AUTH, no relaying.
    Inbound,
    /// Port 587: STARTTLS, then AUTH is required; the sender must be the user's own address.
    Submission,
    /// Port 465: the same as submission over implicit TLS.
    Submissions,
    /// LMTP (RFC 2033): another MTA hands over mail for local users; LHLO instead of EHLO, and
    /// one reply per recipient after the message.
    Lmtp,
}

impl Role {
    /// The listener's name in the config file and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Inbound => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
            Role::Lmtp => "lmtp",
        }
    }

    /// True for the roles where clients authenticate and may relay.
    pub fn is_submission(self) -> bool {
        matches!(self, Role::Submission | Role::Submissions)
    }
}

/// Everything an SMTP session needs to know, shared by the sessions of one listener.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Our name in the greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// The listener's role.
    pub role: Role,
    /// Domains we accept mail for, lowercased.
    pub local_domains: Vec<String>,
    /// Largest message accepted, in octets (advertised as SIZE).
    pub max_message_size: u64,
    /// Recipients per transaction; more get 452 (RFC 5321 4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// How long to wait for the client's next command or data (RFC 5321 4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// Protocol errors tolerated before the session is ended with 421.
    pub max_errors: u32,
    /// Failed AUTH attempts tolerated before the session is ended with 421.
    pub max_auth_failures: u32,
    /// Delay before answering a failed AUTH, to slow down password guessing.
    pub auth_failure_delay: Duration,
    /// Allow AUTH without TLS when the client is on the loopback interface.
    pub allow_plaintext_on_loopback: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Size of the message chunks handed to the store.
    pub chunk_size: usize,
    /// Calendar time for Received headers.
    pub clock: Arc<dyn WallClock>,
    /// On submission: leave the client's address out of the Received header and remove
    /// User-Agent/X-Mailer fields ([`privacy`]).
    pub privacy: bool,
    /// On inbound SMTP: check SPF, DKIM and DMARC, add Authentication-Results, and act on a
    /// DMARC failure this way; `None` to check nothing.
    pub authenticate: Option<crate::auth::FailurePolicy>,
    /// Content scanners to run on each message while it arrives (`[filter]`); `None` to scan
    /// nothing. Which of them apply depends on the role (see [`crate::filter::scan`]).
    pub filter: Option<Arc<crate::filter::scan::FilterConfig>>,
}

impl SmtpConfig {
    /// A config with the RFC defaults for `role`, for `hostname` and local `domains`.
    pub fn new(hostname: &str, role: Role, domains: &[String], clock: Arc<dyn WallClock>) -> Self {
        SmtpConfig {
            hostname: hostname.to_string(),
            role,
            local_domains: domains.iter().map(|d| d.to_lowercase()).collect(),
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            command_timeout: Duration::from_secs(300),
            max_errors: 20,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(1),
            allow_plaintext_on_loopback: false,
            starttls: true,
            chunk_size: 64 * 1024,
            clock,
            privacy: false,
            authenticate: None,
            filter: None,
        }
    }

    /// True when `domain` (already lowercased, no trailing dot) is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| d == domain)
    }
}
