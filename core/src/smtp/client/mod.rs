//! The SMTP client for outbound delivery (RFC 5321), as a pure session.
//!
//! Once the runtime has connected a socket to a receiving MTA (the queue runner chose the host),
//! it opens an [`SmtpClient`] with the jobs for that host and drives it with the same
//! [`crate::Pump`] as a server session. The client reads the greeting, says EHLO (HELO as a
//! fallback), upgrades with STARTTLS and authenticates to a smarthost when configured, then
//! delivers the jobs in order on the one connection: MAIL, RCPT (pipelined when offered), and
//! the message by DATA or BDAT. Message bytes come from the queue by
//! [`crate::Effect::ReadQueued`], in bounded chunks; the outcome of each job is handed back by
//! [`crate::Effect::Report`] before the client goes on, so the runner records it durably first.
//!
//! Every job is reported exactly once, whatever the server sends or does: a timeout, a lost
//! connection, a 421 or a garbled reply turn every job not yet reported into a temporary failure
//! with a text saying what happened ("lost connection after RCPT TO").

mod reply;
mod session;

pub use reply::{
    Capabilities, EnhancedStatus, MAX_REPLY_BYTES, MAX_REPLY_LINES, Reply, ReplyError, ReplyReader,
};
pub use session::{BODY_CHUNK, SmtpClient};

use crate::effect::Secret;
use std::time::Duration;

/// How a client treats STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never start TLS (tests, loopback smarthosts).
    None,
    /// Start TLS when the server offers it, else go on in plaintext. If the handshake fails the
    /// session reports every job as a temporary failure; the caller, which did the handshake and
    /// knows it failed, may retry the host without TLS.
    Opportunistic,
    /// TLS or nothing: a server without STARTTLS, or one refusing it, fails every job
    /// temporarily.
    Required,
}

/// Timeouts for each wait on the server (RFC 5321 4.5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// For the 220 greeting: 5 minutes.
    pub greeting: Duration,
    /// For the replies to EHLO, HELO, STARTTLS, AUTH and RSET: 5 minutes, like MAIL.
    pub command: Duration,
    /// For the reply to MAIL: 5 minutes.
    pub mail: Duration,
    /// For each reply to RCPT: 5 minutes.
    pub rcpt: Duration,
    /// For the 354 reply to DATA: 2 minutes.
    pub data_init: Duration,
    /// For the reply to each BDAT chunk but the last: 3 minutes.
    pub data_block: Duration,
    /// For the final reply after the end of the message: 10 minutes.
    pub data_end: Duration,
    /// For the 221 reply to QUIT; the connection is closed anyway when it passes.
    pub quit: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        ClientTimeouts {
            greeting: min(5),
            command: min(5),
            mail: min(5),
            rcpt: min(5),
            data_init: min(2),
            data_block: min(3),
            data_end: min(10),
            quit: Duration::from_secs(10),
        }
    }
}

/// What a client session needs to know, shared by the sessions of one runner.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    /// STARTTLS policy for this connection.
    pub tls: TlsPolicy,
    /// Smarthost credentials (user, password) for AUTH PLAIN or LOGIN. They are sent only
    /// over TLS, or in plaintext when `tls` is [`TlsPolicy::None`] (the caller allows that on
    /// loopback only). A server that does not offer PLAIN or LOGIN fails every job temporarily.
    pub auth: Option<(String, Secret<String>)>,
    /// Timeouts per command.
    pub timeouts: ClientTimeouts,
    /// Longest reply line accepted, CRLF included (at least 512, RFC 5321 4.5.3.1.5); a longer
    /// one ends the connection.
    pub max_line: usize,
}

impl ClientConfig {
    /// A config with the RFC timeouts, opportunistic TLS and no AUTH.
    pub fn new(helo_name: &str) -> Self {
        ClientConfig {
            helo_name: helo_name.to_string(),
            tls: TlsPolicy::Opportunistic,
            auth: None,
            timeouts: ClientTimeouts::default(),
            max_line: 4096,
        }
    }
}

/// One queued message to deliver to some of its recipients on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundJob {
    /// The queue id; [`crate::Effect::ReadQueued`] and [`crate::Effect::Report`] name it.
    pub id: String,
    /// The envelope sender, without angle brackets; empty for the null sender (bounces).
    pub sender: String,
    /// The recipients to deliver to on this connection, without angle brackets.
    pub recipients: Vec<String>,
    /// The message size in octets, as stored (for SIZE).
    pub size: u64,
    /// The message has 8-bit content (announced as BODY=8BITMIME when the server offers it).
    pub eight_bit: bool,
    /// The message or its envelope needs SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
}

/// The outcome for one recipient. Texts are the server's reply without its code (the enhanced
/// status code first when the server sent one), or the client's own account of what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The server took responsibility for the message: its reply to the end of the message.
    Delivered(String),
    /// Try again later: reply code and text.
    TempFail(u16, String),
    /// Never deliverable as it is: reply code and text (bounce the message).
    PermFail(u16, String),
}
