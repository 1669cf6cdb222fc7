//! DNS for Petrel: stub-resolver logic as a pure state machine.
//!
//! Outbound delivery needs MX and address lookups; DKIM, SPF and DMARC need TXT. This module holds
//! every decision a stub resolver makes: the query it sends (random id from a seed, RD set, EDNS0
//! with a 1232-byte UDP size), which server to ask next and when, whether a datagram is really the
//! answer to our question, when to retry over TCP, how to follow CNAMEs and how to classify the
//! outcome ([`Answer`]). It never touches a socket or a clock: a runtime drives a [`Lookup`] by
//! sending what [`Lookup::poll_transmit`] hands out, feeding back what arrives
//! ([`Lookup::handle_udp`], [`Lookup::handle_tcp`]) and calling [`Lookup::handle_timeout`] at
//! [`Lookup::poll_timeout`], until [`Lookup::result`] is `Some`.
//!
//! The wire format is `hickory-proto`'s; nothing of hickory appears in this module's API.

mod lookup;
mod mx;
mod resolv_conf;

pub use lookup::{Lookup, Transmit};
pub use mx::{MxError, mx_hosts};
pub use resolv_conf::{parse_resolv_conf, parse_resolv_conf_options};

use core::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The record types Petrel asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text (DKIM keys, SPF, DMARC policies).
    Txt,
    /// Reverse pointer.
    Ptr,
    /// Alias; asking for it directly returns the CNAME itself instead of following it.
    Cname,
}

/// One record of an answer, in Petrel's terms.
///
/// Names (MX exchange, PTR and CNAME targets) are ASCII, lowercased and without the trailing dot,
/// except the root, which is `"."` (the null MX of RFC 7505). Bytes that are not printable in a
/// name appear in the master-file escape form (`\032`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Record {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger.
    Mx {
        /// Lower is tried first.
        preference: u16,
        /// The host to connect to (`"."` for a null MX).
        exchange: String,
    },
    /// The record's character-strings concatenated, with nothing between them (RFC 6376 3.6.2.2,
    /// RFC 7208 3.3).
    Txt(Vec<u8>),
    /// A reverse-lookup target.
    Ptr(String),
    /// An alias target.
    Cname(String),
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// At least one record of the asked type.
    Records {
        /// Every record of the asked type at `canonical_name`, in the order the server sent them.
        /// Never empty.
        records: Vec<Record>,
        /// The smallest TTL of these records and of every CNAME followed to reach them.
        ttl: u32,
        /// The name the records belong to: the asked name, or the end of its CNAME chain.
        canonical_name: String,
    },
    /// The name exists but has no record of that type (NOERROR with an empty answer).
    NoData,
    /// The name (or the end of its CNAME chain) does not exist.
    NxDomain,
    /// Try again later: every server failed, timed out, or refused (SERVFAIL, REFUSED, truncated
    /// without a TCP answer, no servers configured...). The text says why, for logs.
    TempFail(String),
    /// Asking again will not help: the name is malformed or not ASCII, the server rejected our
    /// query as malformed (FORMERR), or the CNAME chain loops or is too long.
    PermFail(String),
}

impl Answer {
    /// The addresses of an A or AAAA answer, each on `port`; empty for anything else.
    pub fn socket_addrs(&self, port: u16) -> Vec<core::net::SocketAddr> {
        match self {
            Answer::Records { records, .. } => records
                .iter()
                .filter_map(|r| match r {
                    Record::A(a) => Some(core::net::SocketAddr::from((*a, port))),
                    Record::Aaaa(a) => Some(core::net::SocketAddr::from((*a, port))),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Tunables of a [`Lookup`]; [`Default`] gives the values of a stock `resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// How long one try waits for an answer (UDP datagram or the whole TCP exchange).
    /// Default 2 s.
    pub timeout: Duration,
    /// How many times each server is tried per question (rounds over the server list); at least
    /// one try is always made. Default 2.
    pub attempts: u32,
    /// How many CNAMEs may be followed before the lookup fails permanently. Default 8.
    pub max_cname_chain: u32,
    /// Responses longer than this are ignored (UDP) or count as a failed try (TCP).
    /// Default 64 KiB.
    pub max_response: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            timeout: Duration::from_secs(2),
            attempts: 2,
            max_cname_chain: 8,
            max_response: 64 * 1024,
        }
    }
}

/// Checks and normalises a domain name: ASCII only, lowercased, one trailing dot removed, labels
/// of 1 to 63 bytes, 253 bytes at most, no whitespace, control characters or backslashes.
pub(crate) fn normalize_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(format!("empty domain name {name:?}"));
    }
    if !trimmed.is_ascii() {
        return Err(format!(
            "domain name {name:?} is not ASCII (IDNA is not supported)"
        ));
    }
    if trimmed.len() > 253 {
        return Err(format!("domain name {name:?} is longer than 253 bytes"));
    }
    if let Some(bad) = trimmed
        .bytes()
        .find(|b| !b.is_ascii_graphic() || *b == b'\\')
    {
        return Err(format!(
            "domain name {name:?} contains the byte 0x{bad:02x}"
        ));
    }
    if trimmed.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!(
            "domain name {name:?} has an empty or over-long label"
        ));
    }
    Ok(trimmed.to_ascii_lowercase())
}
