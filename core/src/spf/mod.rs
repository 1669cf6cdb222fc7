//! SPF, the Sender Policy Framework (RFC 7208), as a pure state machine.
//!
//! [`SpfCheck`] is the `check_host()` function of section 4. It never performs a lookup: it says
//! which ones it needs ([`SpfCheck::queries`]), is fed the answers ([`SpfCheck::answer`]) and
//! decides ([`SpfCheck::outcome`]). A driver loops:
//!
//! ```
//! use petrel_core::dns::{Answer, Record};
//! use petrel_core::spf::{SpfCheck, SpfLimits, SpfResult};
//!
//! let mut check = SpfCheck::new(
//!     "192.0.2.1".parse().unwrap(),
//!     "example.com",
//!     "alice@example.com",
//!     "mail.example.com",
//!     "mx.petrel.example",
//!     1_700_000_000,
//!     SpfLimits::default(),
//! );
//! while check.outcome().is_none() {
//!     for (name, rtype) in check.queries() {
//!         // A real driver runs a `dns::Lookup` here.
//!         let answer = Answer::Records {
//!             records: vec![Record::Txt(b"v=spf1 ip4:192.0.2.0/24 -all".to_vec())],
//!             ttl: 300,
//!             canonical_name: name.clone(),
//!         };
//!         check.answer(&name, rtype, &answer);
//!     }
//! }
//! assert_eq!(check.outcome().unwrap().result, SpfResult::Pass);
//! ```
//!
//! Everything is bounded: the record length, the number of DNS-querying terms (10), of void
//! lookups (2), of MX and PTR names (10 each), the include depth and the length of every macro
//! expansion, so a hostile record ends in `permerror` after a bounded number of lookups.

mod eval;
#[path = "macro.rs"]
pub mod macros;
pub mod record;

pub use eval::SpfCheck;

use std::fmt;

/// The result of a check (RFC 7208 section 2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpfResult {
    /// No syntactically valid domain, or no SPF record at it.
    None,
    /// The domain owner makes no assertion about the client (`?`, or no directive matched).
    Neutral,
    /// The client is authorized (`+`).
    Pass,
    /// The client is explicitly not authorized (`-`).
    Fail,
    /// The client is probably not authorized (`~`).
    SoftFail,
    /// A transient DNS error; trying later may give a definite result.
    TempError,
    /// The published records are wrong (syntax, limits); needs the domain owner's fix.
    PermError,
}

impl SpfResult {
    /// The RFC's word for the result, as used in `Received-SPF` and `Authentication-Results`.
    pub fn as_str(self) -> &'static str {
        match self {
            SpfResult::None => "none",
            SpfResult::Neutral => "neutral",
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
    }
}

impl fmt::Display for SpfResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check decided, with what is needed to log it and to write `Received-SPF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// The result.
    pub result: SpfResult,
    /// The domain checked (the `domain` given to [`SpfCheck::new`], lowercased).
    pub domain: String,
    /// The directive that matched, as written (`-all`, `include:_spf.example.net`), when one did.
    pub mechanism: Option<String>,
    /// On `fail`, the domain's explanation (`exp=`), macro-expanded and at most
    /// [`MAX_EXPLANATION`] bytes; `None` when there is none or it could not be fetched.
    pub explanation: Option<String>,
    /// Why the result is `temperror` or `permerror`.
    pub problem: Option<String>,
}

/// The longest explanation kept; longer ones are cut.
pub const MAX_EXPLANATION: usize = 512;

/// Processing limits (RFC 7208 section 4.6.4). [`Default`] gives the RFC's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpfLimits {
    /// Terms that query DNS (`include`, `a`, `mx`, `ptr`, `exists`, `redirect`) per check;
    /// more is `permerror`. Default 10.
    pub max_dns_mechanisms: u32,
    /// Lookups answered NXDOMAIN or with no records, per check; more is `permerror`. Default 2.
    pub max_void_lookups: u32,
    /// MX records one `mx` mechanism may look at; more is `permerror`. Default 10.
    pub max_mx_names: u32,
    /// PTR names one `ptr` mechanism or `%{p}` looks at; the rest are ignored. Default 10.
    pub max_ptr_names: u32,
    /// The longest SPF record accepted; longer is `permerror`. Default 4096 bytes.
    pub max_record_len: usize,
}

impl Default for SpfLimits {
    fn default() -> Self {
        SpfLimits {
            max_dns_mechanisms: 10,
            max_void_lookups: 2,
            max_mx_names: 10,
            max_ptr_names: 10,
            max_record_len: 4096,
        }
    }
}
