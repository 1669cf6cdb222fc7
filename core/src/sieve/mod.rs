//! Sieve mail filtering (RFC 5228) as a pure language core: parse once with [`parse`], then
//! [`run`] the [`Script`] against a message and envelope to get the [`Action`]s to perform.
//!
//! Nothing here does IO: included scripts and mailbox existence come from an [`IncludeSource`],
//! the time of delivery and the host name from the [`Envelope`], vacation response tracking is
//! the caller's. Every input is bounded by [`Limits`]; a run that exceeds its step budget ends in
//! the implicit keep (RFC 5228 section 2.10.6).
//!
//! ```
//! use petrel_core::sieve::{Action, Envelope, Limits, NoIncludes, RawMessage, parse, run};
//!
//! let limits = Limits::default();
//! let script = parse(
//!     "require [\"fileinto\", \"subaddress\", \"envelope\"];\n\
//!      if envelope :detail \"to\" \"lists\" { fileinto \"Lists\"; }",
//!     &limits,
//! )
//! .expect("a valid script");
//! let message = RawMessage::parse(b"Subject: hi\r\n\r\nbody\r\n");
//! let envelope = Envelope {
//!     from: "a@example.org".into(),
//!     to: "me+lists@example.com".into(),
//!     ..Envelope::default()
//! };
//! let outcome = run(&script, &envelope, &message, &mut NoIncludes, &limits);
//! assert_eq!(
//!     outcome.actions,
//!     vec![Action::FileInto { folder: "Lists".into(), flags: vec![], copy: false }]
//! );
//!
//! // Syntax errors carry a position for ManageSieve to report.
//! let err = parse("keep;\nfrobnicate;", &limits).unwrap_err();
//! assert_eq!(err.to_string(), "line 2, column 1: unknown command \"frobnicate\"");
//! ```
//!
//! Supported extensions are listed in [`SUPPORTED_EXTENSIONS`]; `require` of anything else is a
//! parse error at the `require`. Besides RFC 5228 itself:
//!
//! | extension | specification | notes |
//! | --- | --- | --- |
//! | `fileinto`, `reject`, `ereject`, `envelope` | RFC 5228, RFC 5429 | |
//! | `copy`, `subaddress`, `imap4flags` | RFC 3894, RFC 5233, RFC 5232 | |
//! | `variables`, `relational`, comparators | RFC 5229, RFC 5231, RFC 4790 | `i;octet`, `i;ascii-casemap`, `i;ascii-numeric` |
//! | `body` | RFC 5173 | one level of MIME parts |
//! | `vacation`, `vacation-seconds` | RFC 5230, RFC 6131 | `vacation-seconds` implies `vacation` |
//! | `include` | RFC 6609 | |
//! | `regex` | draft-ietf-sieve-regex-01 | see below |
//! | `mailbox` | RFC 5490 | `fileinto :create`, `mailboxexists` via [`IncludeSource::mailbox_exists`] |
//! | `encoded-character` | RFC 5228 section 2.4.2.4 | decoded at parse time |
//! | `date`, `index` | RFC 5260 | local zone is UTC; `currentdate` reads [`Envelope::now`] |
//! | `environment` | RFC 5183 | `domain`, `host`, `location` ("MDA"), `name` ("Petrel"), `phase` ("during"), `version` |
//!
//! `:regex` keys are POSIX extended regular expressions as the `regex` crate reads them: the
//! syntax is a superset of ERE, matching is leftmost-first (ERE is leftmost-longest, which can
//! change what a group captures, not whether a key matches), and time is linear in the text.
//! Keys longer than [`Limits::max_regex_len`] or bigger than [`Limits::max_regex_size`] compiled
//! are refused: at parse time with a position when the key is a literal, at run time (implicit
//! keep) when it comes from variables. `${0}` is the matched text, `${1}`..`${9}` the groups.

mod interp;
mod lexer;
mod parser;
pub mod respond;

/// The addresses in an address-list header value (To, Cc, ...): `a@b, "N" <c@d>, group: e@f;`.
pub use interp::parse_addresses as header_addresses;
pub use interp::{
    Action, Envelope, IncludeSource, Message, NoIncludes, Outcome, RawMessage, RunError, run,
};
pub use lexer::{Spanned, Token, tokenize};
pub use parser::{Argument, Command, SUPPORTED_EXTENSIONS, Script, Test, parse};

use std::fmt;

/// A script rejected at parse time, with the 1-based line and column of the offending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveError {
    /// Line (1-based).
    pub line: u32,
    /// Column (1-based, in characters).
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl SieveError {
    /// Builds an error at `line`, `column`.
    pub fn new(line: u32, column: u32, message: impl Into<String>) -> Self {
        SieveError {
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SieveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SieveError {}

/// Bounds on parsing and running scripts (STYLE.md G8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest script accepted, in bytes.
    pub max_script_size: usize,
    /// Deepest nesting of blocks and tests.
    pub max_depth: usize,
    /// Longest string literal, in bytes.
    pub max_string_len: usize,
    /// Most items in a string list, argument list or test list.
    pub max_list_len: usize,
    /// Interpreter step budget; exceeding it ends the run in implicit keep.
    pub max_steps: u64,
    /// Deepest chain of `include`s.
    pub max_include_depth: usize,
    /// Most `include`s executed in one run.
    pub max_includes: usize,
    /// Most actions one run may produce.
    pub max_actions: usize,
    /// Longest value a variable may hold, in bytes (longer values are truncated).
    pub max_variable_len: usize,
    /// Longest `:regex` key, in bytes; a longer one is refused (at parse time if literal).
    pub max_regex_len: usize,
    /// Most memory one compiled `:regex` key may use, in bytes (`RegexBuilder::size_limit`).
    pub max_regex_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_script_size: 64 * 1024,
            max_depth: 32,
            max_string_len: 64 * 1024,
            max_list_len: 1024,
            max_steps: 5_000_000,
            max_include_depth: 5,
            max_includes: 32,
            max_actions: 64,
            max_variable_len: 4096,
            max_regex_len: 1024,
            max_regex_size: 1 << 20,
        }
    }
}

#[cfg(test)]
mod tests;
