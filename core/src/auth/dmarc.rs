//! DMARC (RFC 7489): policy records, policy discovery through the organizational domain, and
//! identifier alignment of SPF and DKIM results with the RFC 5322 From domain.

use super::psl::organizational_domain;

/// What a domain asks receivers to do with mail that fails DMARC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Deliver as usual.
    None,
    /// Treat as suspicious (Petrel: the Junk folder).
    Quarantine,
    /// Refuse it.
    Reject,
}

impl Policy {
    fn parse(v: &str) -> Option<Policy> {
        match v.to_ascii_lowercase().as_str() {
            "none" => Some(Policy::None),
            "quarantine" => Some(Policy::Quarantine),
            "reject" => Some(Policy::Reject),
            _ => None,
        }
    }

    /// The record's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Quarantine => "quarantine",
            Policy::Reject => "reject",
        }
    }
}

/// Alignment mode (`adkim`, `aspf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Same organizational domain.
    Relaxed,
    /// The very same domain.
    Strict,
}

/// A parsed DMARC record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `p`.
    pub policy: Policy,
    /// `sp`, for subdomains of the organizational domain (defaults to `p`).
    pub subdomain_policy: Policy,
    /// `adkim`.
    pub dkim_alignment: Alignment,
    /// `aspf`.
    pub spf_alignment: Alignment,
    /// `pct`, 0 to 100.
    pub percent: u8,
}

/// Parses a TXT record; `None` when it is not a DMARC record (it must start with `v=DMARC1`).
/// Unknown tags are ignored; a bad `p` makes the record invalid unless `rua` is present, in
/// which case it is treated as `none` (RFC 7489 6.6.3).
pub fn parse_record(text: &str) -> Option<Record> {
    let mut tags = text.split(';').map(|t| t.trim()).filter(|t| !t.is_empty());
    let first = tags.next()?;
    let (k, v) = first.split_once('=')?;
    if !k.trim().eq_ignore_ascii_case("v") || v.trim() != "DMARC1" {
        return None;
    }
    let (mut p, mut sp, mut adkim, mut aspf, mut pct, mut rua) = (
        None,
        None,
        Alignment::Relaxed,
        Alignment::Relaxed,
        100u8,
        false,
    );
    for tag in tags {
        let Some((k, v)) = tag.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "p" => p = Policy::parse(v),
            "sp" => sp = Policy::parse(v),
            "adkim" if v.eq_ignore_ascii_case("s") => adkim = Alignment::Strict,
            "aspf" if v.eq_ignore_ascii_case("s") => aspf = Alignment::Strict,
            "pct" => pct = v.parse::<u8>().map_or(100, |n| n.min(100)),
            "rua" => rua = true,
            _ => {}
        }
    }
    let policy = match p {
        Some(p) => p,
        None if rua => Policy::None,
        None => return None,
    };
    Some(Record {
        policy,
        subdomain_policy: sp.unwrap_or(policy),
        dkim_alignment: adkim,
        spf_alignment: aspf,
        percent: pct,
    })
}

/// The DMARC verdict for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The From domain publishes no policy.
    None,
    /// An aligned SPF or DKIM pass.
    Pass,
    /// Neither aligned; the policy that applies, and whether `pct` selected this message.
    Fail {
        /// `p`, or `sp` for a subdomain.
        policy: Policy,
        /// False when `pct` exempted this message (then it is treated one step milder).
        applied: bool,
    },
    /// The policy lookup failed for now.
    TempError,
    /// The From header cannot be evaluated (none, several, or no domain).
    PermError,
}

/// True when `a` and `b` are aligned under `mode`.
pub fn aligned(a: &str, b: &str, mode: Alignment) -> bool {
    let (a, b) = (
        a.trim_end_matches('.').to_ascii_lowercase(),
        b.trim_end_matches('.').to_ascii_lowercase(),
    );
    match mode {
        Alignment::Strict => a == b,
        Alignment::Relaxed => organizational_domain(&a) == organizational_domain(&b),
    }
}

/// Evaluates a found `record` for mail whose From domain is `from_domain`. `spf_pass_domain` is
/// the MAIL FROM (or HELO) domain when SPF passed; `dkim_pass_domains` are the `d=` of passing
/// signatures; `record_domain` is where the record was found (the From domain or its
/// organizational domain); `sample` (0..100) decides `pct`.
pub fn evaluate(
    record: &Record,
    record_domain: &str,
    from_domain: &str,
    spf_pass_domain: Option<&str>,
    dkim_pass_domains: &[String],
    sample: u8,
) -> Verdict {
    let spf_ok = spf_pass_domain.is_some_and(|d| aligned(d, from_domain, record.spf_alignment));
    let dkim_ok = dkim_pass_domains
        .iter()
        .any(|d| aligned(d, from_domain, record.dkim_alignment));
    if spf_ok || dkim_ok {
        return Verdict::Pass;
    }
    let subdomain = !from_domain
        .trim_end_matches('.')
        .eq_ignore_ascii_case(record_domain.trim_end_matches('.'));
    let policy = if subdomain {
        record.subdomain_policy
    } else {
        record.policy
    };
    Verdict::Fail {
        policy,
        applied: sample < record.percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let r = parse_record("v=DMARC1; p=reject; sp=quarantine; adkim=s; pct=50; rua=mailto:x@y")
            .unwrap();
        assert_eq!(
            r,
            Record {
                policy: Policy::Reject,
                subdomain_policy: Policy::Quarantine,
                dkim_alignment: Alignment::Strict,
                spf_alignment: Alignment::Relaxed,
                percent: 50,
            }
        );
        assert_eq!(
            parse_record("v=DMARC1;p=none").unwrap().subdomain_policy,
            Policy::None
        );
        assert!(parse_record("v=spf1 -all").is_none());
        assert!(
            parse_record("p=reject; v=DMARC1").is_none(),
            "v must come first"
        );
        assert!(parse_record("v=DMARC1; p=bogus").is_none());
        assert_eq!(
            parse_record("v=DMARC1; p=bogus; rua=mailto:a@b")
                .unwrap()
                .policy,
            Policy::None
        );
        assert_eq!(
            parse_record("v=DMARC1; p=reject; pct=400").unwrap().percent,
            100
        );
    }

    #[test]
    fn alignment_and_verdicts() {
        assert!(aligned(
            "mail.example.com",
            "example.com",
            Alignment::Relaxed
        ));
        assert!(!aligned(
            "mail.example.com",
            "example.com",
            Alignment::Strict
        ));
        assert!(!aligned("example.net", "example.com", Alignment::Relaxed));
        assert!(!aligned("a.co.uk", "b.co.uk", Alignment::Relaxed));
        let r = parse_record("v=DMARC1; p=reject; sp=quarantine").unwrap();
        let dkim = vec!["news.example.com".to_string()];
        assert_eq!(
            evaluate(&r, "example.com", "example.com", None, &dkim, 0),
            Verdict::Pass
        );
        assert_eq!(
            evaluate(
                &r,
                "example.com",
                "example.com",
                Some("bounce.other.net"),
                &[],
                0
            ),
            Verdict::Fail {
                policy: Policy::Reject,
                applied: true
            }
        );
        assert_eq!(
            evaluate(&r, "example.com", "shop.example.com", None, &[], 99),
            Verdict::Fail {
                policy: Policy::Quarantine,
                applied: true
            }
        );
        let half = parse_record("v=DMARC1; p=reject; pct=50").unwrap();
        assert_eq!(
            evaluate(&half, "example.com", "example.com", None, &[], 70),
            Verdict::Fail {
                policy: Policy::Reject,
                applied: false
            }
        );
    }
}
