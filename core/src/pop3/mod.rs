//! POP3 (RFC 1939) with CAPA and response codes (RFC 2449), STLS (RFC 2595) and AUTH PLAIN
//! (RFC 5034), as a pure server session over the user's INBOX.

pub mod command;
pub mod output;
pub mod server;

pub use server::Pop3Session;

use std::time::Duration;

/// Everything a POP3 session needs to know, shared by the sessions of one listener.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Our host name, for logs.
    pub hostname: String,
    /// How long a client may be silent (RFC 1939 3: at least 10 minutes).
    pub command_timeout: Duration,
    /// Allow USER/PASS and AUTH without TLS from loopback clients.
    pub allow_plaintext_on_loopback: bool,
    /// STLS can be offered (a certificate is configured and the listener is not implicit TLS).
    pub stls: bool,
    /// Delay before answering a failed login, to slow down password guessing.
    pub auth_failure_delay: Duration,
    /// Failed logins tolerated before the session is ended.
    pub max_auth_failures: u32,
    /// Protocol errors tolerated before the session is ended.
    pub max_errors: u32,
    /// Bytes of a message read from the store at a time.
    pub chunk_size: u32,
}

impl Pop3Config {
    /// A config with the RFC defaults.
    pub fn new(hostname: &str) -> Self {
        Pop3Config {
            hostname: hostname.to_string(),
            command_timeout: Duration::from_secs(600),
            allow_plaintext_on_loopback: false,
            stls: true,
            auth_failure_delay: Duration::from_secs(1),
            max_auth_failures: 3,
            max_errors: 20,
            chunk_size: 64 * 1024,
        }
    }
}
