//! ManageSieve (RFC 5804): users upload, check, list and activate their Sieve scripts. A pure
//! server session like POP3's; the scripts themselves are read and written by the store
//! through [`Effect::Sieve`](crate::effect::Effect::Sieve) requests.

pub mod command;
pub mod server;

pub use server::ManageSieveSession;

use crate::sieve::Limits;
use std::time::Duration;

/// Longest script name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Redirects one script run may make; more are a run-time error (implicit keep). Delivery
/// enforces it, ManageSieve advertises it as MAXREDIRECTS.
pub const MAX_REDIRECTS: u32 = 4;

/// Everything a ManageSieve session needs to know, shared by the sessions of one listener.
#[derive(Debug, Clone)]
pub struct ManageSieveConfig {
    /// Our host name, for logs.
    pub hostname: String,
    /// How long a client may be silent before the session ends.
    pub command_timeout: Duration,
    /// Allow AUTHENTICATE PLAIN without TLS from loopback clients.
    pub allow_plaintext_on_loopback: bool,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// Delay before answering a failed login, to slow down password guessing.
    pub auth_failure_delay: Duration,
    /// Failed logins tolerated before the session is ended.
    pub max_auth_failures: u32,
    /// Protocol errors tolerated before the session is ended.
    pub max_errors: u32,
    /// Limits scripts are parsed with; `max_script_size` also bounds literals.
    pub sieve_limits: Limits,
    /// Advertised as MAXREDIRECTS.
    pub max_redirects: u32,
}

impl ManageSieveConfig {
    /// A config with defaults.
    pub fn new(hostname: &str) -> Self {
        ManageSieveConfig {
            hostname: hostname.to_string(),
            command_timeout: Duration::from_secs(600),
            allow_plaintext_on_loopback: false,
            starttls: true,
            auth_failure_delay: Duration::from_secs(1),
            max_auth_failures: 3,
            max_errors: 20,
            sieve_limits: Limits::default(),
            max_redirects: MAX_REDIRECTS,
        }
    }
}

/// A script operation for the store, on behalf of an authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveRequest {
    /// LISTSCRIPTS. Answer: [`SieveAnswer::Scripts`].
    List,
    /// GETSCRIPT. Answer: [`SieveAnswer::Script`] or [`SieveAnswer::NonExistent`].
    Get {
        /// The script's name.
        name: String,
    },
    /// PUTSCRIPT of a script already checked with `sieve::parse`. Answer: [`SieveAnswer::Done`]
    /// once the script is durable, or [`SieveAnswer::TooManyScripts`].
    Put {
        /// The script's name.
        name: String,
        /// Its text.
        script: String,
    },
    /// DELETESCRIPT. Answer: `Done`, `NonExistent` or `Active`.
    Delete {
        /// The script's name.
        name: String,
    },
    /// RENAMESCRIPT. Answer: `Done`, `NonExistent` or `AlreadyExists`.
    Rename {
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// SETACTIVE; `None` deactivates every script. Answer: `Done` or `NonExistent`.
    SetActive {
        /// The script to activate.
        name: Option<String>,
    },
    /// HAVESPACE (the size was checked by the session). Answer: `Done` or `TooManyScripts`.
    HaveSpace {
        /// The script's name.
        name: String,
        /// Its size in octets.
        size: u64,
    },
}

/// One script in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptEntry {
    /// Its name.
    pub name: String,
    /// True for the active script.
    pub active: bool,
}

/// The store's answer to a [`SieveRequest`] (storage failures come as `Completion::Failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SieveAnswer {
    /// Done, durably.
    Done,
    /// The user's scripts, sorted by name.
    Scripts(Vec<ScriptEntry>),
    /// A script's text.
    Script(String),
    /// No script by that name.
    NonExistent,
    /// The new name is taken.
    AlreadyExists,
    /// The script is active and cannot be deleted.
    Active,
    /// The user has as many scripts as allowed.
    TooManyScripts,
    /// The store refused the name.
    InvalidName,
}

/// Checks a script name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, no `/`
/// (or `\`), not starting with `.`. The reason is returned as text for the reply.
pub fn check_script_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("Script name is empty.");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("Script name is longer than 128 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("Script name contains a control character.");
    }
    if name.contains('/') || name.contains('\\') {
        return Err("Script name contains a slash.");
    }
    if name.starts_with('.') {
        return Err("Script name starts with a dot.");
    }
    Ok(())
}
