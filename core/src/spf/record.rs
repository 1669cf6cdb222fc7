//! The SPF record (RFC 7208 sections 4.5, 4.6, 5, 6 and 12): selecting it among TXT strings and
//! parsing it completely before anything is evaluated.

use super::macros::MacroString;
use core::net::{Ipv4Addr, Ipv6Addr};

/// A directive's qualifier (section 4.6.2); `+` when none is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// `+`
    Pass,
    /// `-`
    Fail,
    /// `~`
    SoftFail,
    /// `?`
    Neutral,
}

/// A mechanism (section 5). Domain specs are kept unexpanded; they are expanded when evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`: always matches.
    All,
    /// `include:<domain-spec>`: matches when that domain's check passes.
    Include(MacroString),
    /// `a[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]`.
    A {
        /// The domain whose addresses match (the current domain when `None`).
        domain: Option<MacroString>,
        /// Prefix length for IPv4 clients (32 when not written).
        cidr4: u8,
        /// Prefix length for IPv6 clients (128 when not written).
        cidr6: u8,
    },
    /// `mx[:<domain-spec>][/<ip4-cidr>][//<ip6-cidr>]`: the addresses of the domain's MX hosts.
    Mx {
        /// The domain whose MX hosts match (the current domain when `None`).
        domain: Option<MacroString>,
        /// Prefix length for IPv4 clients (32 when not written).
        cidr4: u8,
        /// Prefix length for IPv6 clients (128 when not written).
        cidr6: u8,
    },
    /// `ptr[:<domain-spec>]`: the client's validated names end in that domain.
    Ptr(Option<MacroString>),
    /// `ip4:<network>[/<cidr>]`.
    Ip4 {
        /// The network address.
        network: Ipv4Addr,
        /// Prefix length (0 to 32).
        cidr: u8,
    },
    /// `ip6:<network>[/<cidr>]`.
    Ip6 {
        /// The network address.
        network: Ipv6Addr,
        /// Prefix length (0 to 128).
        cidr: u8,
    },
    /// `exists:<domain-spec>`: matches when the expanded name has an A record.
    Exists(MacroString),
}

impl Mechanism {
    /// Whether evaluating it counts against the DNS lookup limit (section 4.6.4).
    pub fn queries_dns(&self) -> bool {
        !matches!(
            self,
            Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. }
        )
    }
}

/// One directive: qualifier and mechanism, with the term as written (for logs and
/// `Received-SPF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The result if the mechanism matches.
    pub qualifier: Qualifier,
    /// What to test.
    pub mechanism: Mechanism,
    /// The term as it appears in the record.
    pub text: String,
}

/// A parsed SPF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecord {
    /// The directives, evaluated left to right.
    pub directives: Vec<Directive>,
    /// `redirect=`: where to continue when no directive matches (ignored when the record has an
    /// `all` mechanism, section 6.1).
    pub redirect: Option<MacroString>,
    /// `exp=`: where the explanation of a `fail` is published.
    pub explanation: Option<MacroString>,
}

/// Whether a TXT string is an SPF record: it starts with `v=spf1` (any case) followed by a space
/// or nothing (section 4.5).
pub fn is_spf_record(txt: &[u8]) -> bool {
    txt.len() >= 6
        && txt[..6].eq_ignore_ascii_case(b"v=spf1")
        && txt.get(6).is_none_or(|&b| b == b' ')
}

impl SpfRecord {
    /// Parses a whole record, version included. Unknown modifiers are checked for syntax and
    /// dropped.
    ///
    /// # Errors
    /// A description of the first syntax error: the check's result is then `permerror`.
    pub fn parse(text: &str) -> Result<SpfRecord, String> {
        if !is_spf_record(text.as_bytes()) {
            return Err("the record does not start with v=spf1".to_string());
        }
        let mut record = SpfRecord {
            directives: Vec::new(),
            redirect: None,
            explanation: None,
        };
        // Terms are separated by one or more spaces (SP only: a tab or CR is part of a term and
        // makes it invalid).
        for term in text[6..].split(' ').filter(|t| !t.is_empty()) {
            parse_term(term, &mut record)?;
        }
        Ok(record)
    }

    /// Whether an `all` mechanism appears anywhere (which makes `redirect=` ignored).
    pub fn has_all(&self) -> bool {
        self.directives
            .iter()
            .any(|d| d.mechanism == Mechanism::All)
    }
}

fn parse_term(term: &str, record: &mut SpfRecord) -> Result<(), String> {
    // A modifier is `name=value`, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ), the '='
    // coming before any ':' or '/'.
    let name_len = term
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        .count();
    if name_len > 0
        && term.as_bytes()[0].is_ascii_alphabetic()
        && term.as_bytes().get(name_len) == Some(&b'=')
    {
        let name = &term[..name_len];
        let value = &term[name_len + 1..];
        if name.eq_ignore_ascii_case("redirect") {
            if record.redirect.is_some() {
                return Err("redirect= appears twice".to_string());
            }
            record.redirect = Some(MacroString::parse_domain_spec(value)?);
        } else if name.eq_ignore_ascii_case("exp") {
            if record.explanation.is_some() {
                return Err("exp= appears twice".to_string());
            }
            record.explanation = Some(MacroString::parse_domain_spec(value)?);
        } else {
            // Unknown modifiers are ignored, but must still be valid macro strings (section 6).
            MacroString::parse(value, false)?;
        }
        return Ok(());
    }
    let (qualifier, rest) = match term.as_bytes()[0] {
        b'+' => (Qualifier::Pass, &term[1..]),
        b'-' => (Qualifier::Fail, &term[1..]),
        b'~' => (Qualifier::SoftFail, &term[1..]),
        b'?' => (Qualifier::Neutral, &term[1..]),
        _ => (Qualifier::Pass, term),
    };
    let name_end = rest.find([':', '/']).unwrap_or(rest.len());
    let (name, args) = rest.split_at(name_end);
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if args.is_empty() => Mechanism::All,
        "include" => Mechanism::Include(required_domain(args, "include")?),
        "exists" => Mechanism::Exists(required_domain(args, "exists")?),
        "a" => {
            let (domain, cidr4, cidr6) = domain_and_dual_cidr(args)?;
            Mechanism::A {
                domain,
                cidr4,
                cidr6,
            }
        }
        "mx" => {
            let (domain, cidr4, cidr6) = domain_and_dual_cidr(args)?;
            Mechanism::Mx {
                domain,
                cidr4,
                cidr6,
            }
        }
        "ptr" => match args.strip_prefix(':') {
            None if args.is_empty() => Mechanism::Ptr(None),
            Some(spec) => Mechanism::Ptr(Some(MacroString::parse_domain_spec(spec)?)),
            None => return Err(format!("ptr takes no CIDR length: {term:?}")),
        },
        "ip4" => {
            let arg = args
                .strip_prefix(':')
                .ok_or_else(|| format!("ip4 needs an address: {term:?}"))?;
            let (addr, cidr) = match arg.split_once('/') {
                Some((addr, cidr)) => (addr, cidr_length(cidr, 32)?),
                None => (arg, 32),
            };
            let network = addr
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("invalid IPv4 network in {term:?}"))?;
            Mechanism::Ip4 { network, cidr }
        }
        "ip6" => {
            let arg = args
                .strip_prefix(':')
                .ok_or_else(|| format!("ip6 needs an address: {term:?}"))?;
            let (addr, cidr) = match arg.split_once('/') {
                Some((addr, cidr)) => (addr, cidr_length(cidr, 128)?),
                None => (arg, 128),
            };
            let network = addr
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("invalid IPv6 network in {term:?}"))?;
            Mechanism::Ip6 { network, cidr }
        }
        _ => return Err(format!("unknown mechanism {term:?}")),
    };
    record.directives.push(Directive {
        qualifier,
        mechanism,
        text: term.to_string(),
    });
    Ok(())
}

fn required_domain(args: &str, name: &str) -> Result<MacroString, String> {
    let spec = args
        .strip_prefix(':')
        .ok_or_else(|| format!("{name} needs a domain: {name}{args}"))?;
    MacroString::parse_domain_spec(spec)
}

/// `[ ":" domain-spec ] [ dual-cidr-length ]` of `a` and `mx`. The CIDR lengths are taken from the
/// end, since a domain-spec may itself contain `/` (`a:foo:bar/baz.example.com` is a domain).
fn domain_and_dual_cidr(args: &str) -> Result<(Option<MacroString>, u8, u8), String> {
    let mut rest = args;
    let mut cidr6 = 128;
    let mut cidr4 = 32;
    if let Some((head, digits)) = trailing_cidr(rest)
        && head.ends_with('/')
    {
        cidr6 = cidr_length(digits, 128)?;
        rest = &head[..head.len() - 1];
    }
    if let Some((head, digits)) = trailing_cidr(rest) {
        cidr4 = cidr_length(digits, 32)?;
        rest = head;
    }
    let domain = if rest.is_empty() {
        None
    } else if let Some(spec) = rest.strip_prefix(':') {
        Some(MacroString::parse_domain_spec(spec)?)
    } else {
        return Err(format!("invalid arguments {args:?}"));
    };
    Ok((domain, cidr4, cidr6))
}

/// Splits `x/123` into (`x`, `123`) when the string ends in `/` and digits.
fn trailing_cidr(s: &str) -> Option<(&str, &str)> {
    let digits = s.bytes().rev().take_while(u8::is_ascii_digit).count();
    let slash = s.len().checked_sub(digits + 1)?;
    (digits > 0 && s.as_bytes()[slash] == b'/').then(|| (&s[..slash], &s[slash + 1..]))
}

/// A CIDR length: decimal digits without a leading zero, at most `max`.
fn cidr_length(digits: &str, max: u8) -> Result<u8, String> {
    let valid = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match digits.parse::<u8>() {
        Ok(n) if valid && n <= max => Ok(n),
        _ => Err(format!("invalid CIDR length {digits:?}")),
    }
}
