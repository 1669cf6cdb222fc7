//! Mail authentication of one inbound message: SPF ([`crate::spf`]) for the MAIL FROM (or HELO)
//! identity, DKIM ([`crate::dkim`]) for every signature, and DMARC ([`dmarc`]) for the From
//! domain, combined into one `Authentication-Results` header (RFC 8601) and an action.
//!
//! Pure: the message streams in with [`MessageAuth::feed`]; DNS questions come out of
//! [`MessageAuth::queries`] and their answers go back with [`MessageAuth::answer`] until
//! [`MessageAuth::outcome`] is known.

pub mod dmarc;
pub mod psl;

use crate::dkim::{DkimResult, SignatureResult, Verifier, VerifyLimits};
use crate::dns::{Answer, Record, RecordType};
use crate::spf::{SpfCheck, SpfLimits, SpfResult};
use core::net::IpAddr;
use dmarc::{Policy, Verdict};

/// Largest header block kept to find the From field.
const MAX_HEADER: usize = 256 * 1024;

/// What to do with mail that fails DMARC (`[auth] dmarc_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// What the sender's domain asks (`p=`/`sp=`, with `pct=`).
    Follow,
    /// Deliver as usual (the header still says `dmarc=fail`).
    Ignore,
    /// Deliver to the Junk folder.
    Quarantine,
    /// Refuse with 550 5.7.1.
    Reject,
}

/// What the receiving server does with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver normally.
    Accept,
    /// Deliver to Junk.
    Quarantine,
    /// Refuse, with the reply text.
    Reject(String),
}

/// The finished verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// The `Authentication-Results:` field, folded, CRLF-terminated.
    pub header: String,
    /// The DMARC verdict.
    pub dmarc: Verdict,
    /// The action under the configured [`FailurePolicy`].
    pub disposition: Disposition,
}

#[derive(Debug)]
enum DmarcStep {
    /// Waiting for the message's From domain.
    NeedFrom,
    /// Asked `_dmarc.<domain>`; the bool says whether it is the organizational domain's.
    Asking(String, bool),
    Found(dmarc::Record, String),
    Done(Verdict),
}

/// The authentication of one message (see the module docs).
#[derive(Debug)]
pub struct MessageAuth {
    authserv_id: String,
    policy: FailurePolicy,
    mail_from: String,
    helo: String,
    spf: SpfCheck,
    dkim: Verifier,
    header: Vec<u8>,
    header_done: bool,
    ended: bool,
    from_domain: Option<Result<String, String>>,
    dmarc: DmarcStep,
    now_unix: i64,
}

impl MessageAuth {
    /// Starts checking a message from `ip` that said `helo` and `MAIL FROM:<mail_from>` (empty
    /// for the null sender, when SPF checks the HELO identity instead).
    pub fn new(
        authserv_id: &str,
        policy: FailurePolicy,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        now_unix: i64,
    ) -> MessageAuth {
        let (sender, domain) = match mail_from.rsplit_once('@') {
            Some((_, d)) if !mail_from.is_empty() => (mail_from.to_string(), d.to_string()),
            _ => (format!("postmaster@{helo}"), helo.to_string()),
        };
        MessageAuth {
            authserv_id: authserv_id.to_string(),
            policy,
            mail_from: mail_from.to_string(),
            helo: helo.to_string(),
            spf: SpfCheck::new(
                ip,
                &domain,
                &sender,
                helo,
                authserv_id,
                now_unix,
                SpfLimits::default(),
            ),
            dkim: Verifier::new(VerifyLimits::default()),
            header: Vec::new(),
            header_done: false,
            ended: false,
            from_domain: None,
            dmarc: DmarcStep::NeedFrom,
            now_unix,
        }
    }

    /// Feeds the next message bytes (as stored: CRLF lines, dot-unstuffed).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.dkim.feed(bytes);
        if self.header_done {
            return;
        }
        let room = MAX_HEADER.saturating_sub(self.header.len());
        self.header
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        if let Some(end) = find(&self.header, b"\r\n\r\n") {
            self.header.truncate(end + 2);
            self.header_done = true;
        } else if self.header.len() >= MAX_HEADER {
            self.header_done = true;
        }
    }

    /// The message is complete.
    pub fn finish_message(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.header_done = true;
        self.dkim.finish_body();
        self.from_domain = Some(from_domain(&self.header));
        self.dmarc = match &self.from_domain {
            Some(Ok(d)) => DmarcStep::Asking(d.clone(), false),
            _ => DmarcStep::Done(Verdict::PermError),
        };
    }

    /// The DNS questions to answer now (TXT for keys and policies, whatever SPF needs).
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        let mut q = self.spf.queries();
        if self.ended {
            q.extend(
                self.dkim
                    .key_queries()
                    .into_iter()
                    .map(|n| (n, RecordType::Txt)),
            );
            if let DmarcStep::Asking(d, _) = &self.dmarc {
                q.push((format!("_dmarc.{d}"), RecordType::Txt));
            }
        }
        let mut unique: Vec<(String, RecordType)> = Vec::with_capacity(q.len());
        for item in q {
            if !unique.contains(&item) {
                unique.push(item);
            }
        }
        unique
    }

    /// The answer to one of [`MessageAuth::queries`].
    pub fn answer(&mut self, name: &str, rtype: RecordType, answer: &Answer) {
        if self
            .spf
            .queries()
            .iter()
            .any(|(n, t)| n == name && *t == rtype)
        {
            self.spf.answer(name, rtype, answer);
        }
        if rtype != RecordType::Txt || !self.ended {
            return;
        }
        if self.dkim.key_queries().iter().any(|n| n == name) {
            self.dkim.key_answer(name, answer);
        }
        let DmarcStep::Asking(domain, org) = &self.dmarc else {
            return;
        };
        if !name.eq_ignore_ascii_case(&format!("_dmarc.{domain}")) {
            return;
        }
        let (domain, org) = (domain.clone(), *org);
        self.dmarc = match answer {
            Answer::TempFail(_) => DmarcStep::Done(Verdict::TempError),
            Answer::Records { records, .. } => {
                let found: Vec<dmarc::Record> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Txt(t) => dmarc::parse_record(&String::from_utf8_lossy(t)),
                        _ => None,
                    })
                    .collect();
                match found.as_slice() {
                    [one] => DmarcStep::Found(one.clone(), domain),
                    // None, or several (RFC 7489 6.6.3: as if none).
                    _ => self.next_dmarc_step(&domain, org),
                }
            }
            _ => self.next_dmarc_step(&domain, org),
        };
    }

    /// No usable record at `domain`: try the organizational domain once, else no policy.
    fn next_dmarc_step(&self, domain: &str, org: bool) -> DmarcStep {
        let org_domain = psl::organizational_domain(domain);
        if !org && org_domain != domain.to_ascii_lowercase() {
            DmarcStep::Asking(org_domain, true)
        } else {
            DmarcStep::Done(Verdict::None)
        }
    }

    /// The verdict, once every question is answered.
    pub fn outcome(&self) -> Option<AuthOutcome> {
        if !self.ended || !self.queries().is_empty() {
            return None;
        }
        let spf = self.spf.outcome()?;
        let dkim = self.dkim.results(self.now_unix);
        let from = match &self.from_domain {
            Some(Ok(d)) => Some(d.clone()),
            _ => None,
        };
        let spf_pass_domain = (spf.result == SpfResult::Pass).then(|| spf.domain.clone());
        let dkim_pass: Vec<String> = dkim
            .iter()
            .filter(|s| s.result == DkimResult::Pass)
            .map(|s| s.domain.clone())
            .collect();
        let (verdict, published) = match &self.dmarc {
            DmarcStep::Done(v) => (v.clone(), None),
            DmarcStep::Found(record, record_domain) => {
                let from = from.clone().unwrap_or_default();
                let sample = sample(&self.header);
                (
                    dmarc::evaluate(
                        record,
                        record_domain,
                        &from,
                        spf_pass_domain.as_deref(),
                        &dkim_pass,
                        sample,
                    ),
                    Some(record.policy),
                )
            }
            _ => return None,
        };
        let disposition = match (&verdict, self.policy) {
            (Verdict::Fail { .. }, FailurePolicy::Reject) => {
                Disposition::Reject(reject_text(from.as_deref()))
            }
            (Verdict::Fail { .. }, FailurePolicy::Quarantine) => Disposition::Quarantine,
            (Verdict::Fail { policy, applied }, FailurePolicy::Follow) => match (policy, applied) {
                (Policy::Reject, true) => Disposition::Reject(reject_text(from.as_deref())),
                // RFC 7489 6.6.4: a reject not selected by pct is applied as quarantine.
                (Policy::Reject, false) | (Policy::Quarantine, true) => Disposition::Quarantine,
                _ => Disposition::Accept,
            },
            _ => Disposition::Accept,
        };
        let header = self.header_field(spf, &dkim, &verdict, published, from.as_deref());
        Some(AuthOutcome {
            header,
            dmarc: verdict,
            disposition,
        })
    }

    fn header_field(
        &self,
        spf: &crate::spf::SpfOutcome,
        dkim: &[SignatureResult],
        verdict: &Verdict,
        published: Option<Policy>,
        from: Option<&str>,
    ) -> String {
        let mut parts: Vec<String> = Vec::new();
        let spf_id = if self.mail_from.is_empty() {
            format!("smtp.helo={}", value(&self.helo))
        } else {
            format!("smtp.mailfrom={}", value(&self.mail_from))
        };
        parts.push(format!("spf={} {spf_id}", spf.result));
        if dkim.is_empty() {
            parts.push("dkim=none".into());
        }
        for s in dkim {
            let (word, why) = match &s.result {
                DkimResult::Pass => ("pass", None),
                DkimResult::Fail(w) => ("fail", Some(w)),
                DkimResult::Neutral(w) => ("neutral", Some(w)),
                DkimResult::TempError(w) => ("temperror", Some(w)),
                DkimResult::PermError(w) => ("permerror", Some(w)),
            };
            let comment = why
                .map(|w| format!(" ({})", comment(w)))
                .unwrap_or_default();
            parts.push(format!(
                "dkim={word}{comment} header.d={} header.s={} header.b={}",
                value(&s.domain),
                value(&s.selector),
                value(&s.header_b.chars().take(8).collect::<String>())
            ));
        }
        let word = match verdict {
            Verdict::None => "none",
            Verdict::Pass => "pass",
            Verdict::Fail { .. } => "fail",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        };
        let policy = published
            .map(|p| format!(" (p={})", p.as_str()))
            .unwrap_or_default();
        match from {
            Some(d) => parts.push(format!("dmarc={word}{policy} header.from={}", value(d))),
            None => parts.push(format!("dmarc={word}")),
        }
        format!(
            "Authentication-Results: {};\r\n\t{}\r\n",
            self.authserv_id,
            parts.join(";\r\n\t")
        )
    }
}

fn reject_text(from: Option<&str>) -> String {
    format!(
        "5.7.1 Email rejected per DMARC policy for {}",
        from.unwrap_or("the sender's domain")
    )
}

/// A property value: as is when it is a token or an address (RFC 8601 `pvalue`), else quoted.
fn value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>,;:\\\"[]?".contains(&b));
    if plain {
        v.to_string()
    } else {
        let clean: String = v
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
            .collect();
        format!("\"{clean}\"")
    }
}

/// Text for a comment: printable ASCII without parentheses, bounded.
fn comment(w: &str) -> String {
    w.chars()
        .map(|c| {
            if (' '..='~').contains(&c) && c != '(' && c != ')' && c != '\\' {
                c
            } else {
                ' '
            }
        })
        .take(100)
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The domain of the message's single From address (lowercase), or why there is none; `header`
/// is the message's header block.
pub fn from_domain(header: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        if let Some(c) = current.take() {
            fields.push(c);
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("from")
        {
            current = Some(value.to_string());
        }
    }
    if let Some(c) = current.take() {
        fields.push(c);
    }
    let [field] = fields.as_slice() else {
        return Err(format!("{} From fields", fields.len()));
    };
    let addresses = crate::sieve::header_addresses(field);
    let [address] = addresses.as_slice() else {
        return Err(format!("{} From addresses", addresses.len()));
    };
    match address.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => Ok(d.trim_end_matches('.').to_ascii_lowercase()),
        _ => Err("From address without a domain".into()),
    }
}

/// A number 0..100 from the message, for DMARC `pct` (stable for one message).
fn sample(header: &[u8]) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in header {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        assert_eq!(
            from_domain(b"Subject: x\r\nFrom: \"B\" <b@Example.ORG>\r\n\r\n"),
            Ok("example.org".into())
        );
        assert!(from_domain(b"From: a@x.example\r\nFrom: b@y.example\r\n\r\n").is_err());
        assert!(from_domain(b"From: a@x.example, b@y.example\r\n\r\n").is_err());
        assert!(from_domain(b"Subject: none\r\n\r\n").is_err());
        assert_eq!(
            from_domain(b"From: Long\r\n Name <a@folded.example>\r\n\r\n"),
            Ok("folded.example".into())
        );
    }

    #[test]
    fn property_values() {
        assert_eq!(value("a@example.com"), "a@example.com");
        assert_eq!(value("two words"), "\"two words\"");
        assert_eq!(value("a;b"), "\"a;b\"");
    }
}
