//! `check_host()` (RFC 7208 sections 4 to 6) as a sans-IO machine.
//!
//! The design is "replay over a cache": evaluation is a plain recursive function over the
//! answers received so far. When it reaches a lookup that has no answer yet it stops and reports
//! every lookup it found missing; once those are all answered it runs again from the start. Each
//! run is deterministic, and the limits (DNS-querying terms, void lookups, MX and PTR names,
//! include depth, expansion length) are counted afresh in every run, so they hold exactly as in a
//! straight-line evaluation. The cost is re-running a few parsed records per round of answers,
//! which is negligible next to a DNS round trip, and it keeps the evaluator free of a hand-written
//! continuation stack: every RFC rule is written once, in the order the RFC gives it.

use super::macros::{MacroString, MacroVars, dotted_ip};
use super::record::{Mechanism, Qualifier, SpfRecord, is_spf_record};
use super::{MAX_EXPLANATION, SpfLimits, SpfOutcome, SpfResult};
use crate::dns::{Answer, Record, RecordType};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;

/// How deep includes may nest, whatever the configured limits (protects the stack; the default
/// DNS term limit of 10 stops long before).
const MAX_INCLUDE_DEPTH: u32 = 32;

/// One evaluation of `check_host(ip, domain, sender)`, driven by DNS answers.
///
/// Create it with [`SpfCheck::new`]; then, until [`SpfCheck::outcome`] is `Some`, perform every
/// lookup [`SpfCheck::queries`] lists and hand each answer to [`SpfCheck::answer`]. Lookups may be
/// answered in any order and concurrently.
#[derive(Debug, Clone)]
pub struct SpfCheck {
    ctx: Ctx,
    limits: SpfLimits,
    answers: HashMap<(String, RecordType), Answer>,
    pending: Vec<(String, RecordType)>,
    outcome: Option<SpfOutcome>,
}

/// The inputs of the check, fixed for its whole life.
#[derive(Debug, Clone)]
struct Ctx {
    ip: IpAddr,
    domain: String,
    sender: String,
    local: String,
    sender_domain: String,
    helo: String,
    receiver: String,
    now_unix: i64,
}

impl SpfCheck {
    /// `check_host(ip, domain, sender)` with `helo` and the receiving host name for macros;
    /// `now_unix` for `%{t}`.
    ///
    /// `sender` is the MAIL FROM address (for a HELO check, `postmaster@<helo>`); an empty local
    /// part becomes `postmaster` (section 4.3). An IPv4-mapped IPv6 `ip` is treated as IPv4. A
    /// malformed `domain` (empty or over-long label, single label, address literal) decides
    /// `none` at once, without any lookup.
    pub fn new(
        ip: IpAddr,
        domain: &str,
        sender: &str,
        helo: &str,
        receiver: &str,
        now_unix: i64,
        limits: SpfLimits,
    ) -> SpfCheck {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        let domain_name = normalize(domain);
        let (local, sender_domain) = match sender.rfind('@') {
            Some(at) => (&sender[..at], &sender[at + 1..]),
            None => ("", sender),
        };
        let local = if local.is_empty() {
            "postmaster"
        } else {
            local
        };
        let sender_domain = if sender_domain.is_empty() {
            domain_name.clone()
        } else {
            sender_domain.to_string()
        };
        let mut check = SpfCheck {
            ctx: Ctx {
                ip,
                sender: format!("{local}@{sender_domain}"),
                local: local.to_string(),
                sender_domain,
                domain: domain_name,
                helo: helo.to_string(),
                receiver: receiver.to_string(),
                now_unix,
            },
            limits,
            answers: HashMap::new(),
            pending: Vec::new(),
            outcome: None,
        };
        if is_checkable_domain(&check.ctx.domain) {
            check.run();
        } else {
            // Section 4.3: a malformed or single-label domain is "none", not an error.
            check.outcome = Some(SpfOutcome {
                result: SpfResult::None,
                domain: check.ctx.domain.clone(),
                mechanism: None,
                explanation: None,
                problem: None,
            });
        }
        check
    }

    /// The lookups the check needs answered now: names (lowercase, no trailing dot) and types.
    /// Empty once decided. May list several at once (the addresses of every MX host, say); the
    /// list changes only when all of them have been answered.
    #[must_use]
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.pending.clone()
    }

    /// Feeds the answer to one of [`SpfCheck::queries`]. Answers to questions not asked (or asked
    /// and already answered) are ignored; names compare without case and trailing dot.
    pub fn answer(&mut self, name: &str, rtype: RecordType, answer: &Answer) {
        if self.outcome.is_some() {
            return;
        }
        let key = (normalize(name), rtype);
        if let Some(pos) = self.pending.iter().position(|k| *k == key) {
            self.pending.remove(pos);
            self.answers.insert(key, answer.clone());
            if self.pending.is_empty() {
                self.run();
            }
        }
    }

    /// The outcome, once decided; `None` while lookups are pending.
    #[must_use]
    pub fn outcome(&self) -> Option<&SpfOutcome> {
        self.outcome.as_ref()
    }

    /// Evaluates from the start over the answers received so far.
    fn run(&mut self) {
        let mut eval = Eval {
            ctx: &self.ctx,
            limits: &self.limits,
            answers: &self.answers,
            missing: Vec::new(),
            dns_terms: 0,
            voids: 0,
        };
        match eval.run() {
            Ok(outcome) => {
                self.outcome = Some(outcome);
                self.pending.clear();
            }
            Err(_) if eval.missing.is_empty() => {
                // Cannot happen (a halt for answers always names one); never stall regardless.
                self.outcome = Some(SpfOutcome {
                    result: SpfResult::PermError,
                    domain: self.ctx.domain.clone(),
                    mechanism: None,
                    explanation: None,
                    problem: Some("evaluation stalled without a lookup to make".to_string()),
                });
            }
            Err(_) => self.pending = eval.missing,
        }
    }
}

/// Why an evaluation stopped before deciding.
enum Halt {
    /// Some lookups are not answered yet (listed in `Eval::missing`).
    Need,
    /// `temperror` or `permerror`, with the reason; ends the whole check.
    Error(SpfResult, String),
}

fn perm(problem: impl Into<String>) -> Halt {
    Halt::Error(SpfResult::PermError, problem.into())
}

fn temp(problem: impl Into<String>) -> Halt {
    Halt::Error(SpfResult::TempError, problem.into())
}

/// What one `check_host()` level decided.
struct Verdict {
    result: SpfResult,
    mechanism: Option<String>,
    /// The `exp=` of the record that decided, with that record's domain.
    exp: Option<(String, MacroString)>,
}

/// One run of the evaluation.
struct Eval<'a> {
    ctx: &'a Ctx,
    limits: &'a SpfLimits,
    answers: &'a HashMap<(String, RecordType), Answer>,
    missing: Vec<(String, RecordType)>,
    dns_terms: u32,
    voids: u32,
}

impl<'a> Eval<'a> {
    fn run(&mut self) -> Result<SpfOutcome, Halt> {
        let domain = self.ctx.domain.clone();
        let verdict = match self.check_host(&domain, 0) {
            Ok(verdict) => verdict,
            Err(Halt::Need) => return Err(Halt::Need),
            Err(Halt::Error(result, problem)) => {
                return Ok(SpfOutcome {
                    result,
                    domain,
                    mechanism: None,
                    explanation: None,
                    problem: Some(problem),
                });
            }
        };
        // Section 6.2: the explanation is fetched only for "fail", only from the record that
        // decided at the top level (never from an include), and its failure is never an error.
        let explanation = match (verdict.result, &verdict.exp) {
            (SpfResult::Fail, Some((exp_domain, spec))) => self.explain(exp_domain, spec)?,
            _ => None,
        };
        Ok(SpfOutcome {
            result: verdict.result,
            domain,
            mechanism: verdict.mechanism,
            explanation,
            problem: None,
        })
    }

    /// The answer to a lookup, noting it as missing if there is none yet.
    fn peek(&mut self, name: &str, rtype: RecordType) -> Option<&'a Answer> {
        let key = (name.to_string(), rtype);
        let answers = self.answers;
        match answers.get(&key) {
            Some(answer) => Some(answer),
            None => {
                if !self.missing.contains(&key) {
                    self.missing.push(key);
                }
                None
            }
        }
    }

    fn lookup(&mut self, name: &str, rtype: RecordType) -> Result<&'a Answer, Halt> {
        self.peek(name, rtype).ok_or(Halt::Need)
    }

    /// Section 4.6.4: each term that queries DNS counts.
    fn count_term(&mut self) -> Result<(), Halt> {
        self.dns_terms += 1;
        if self.dns_terms > self.limits.max_dns_mechanisms {
            return Err(perm(format!(
                "more than {} DNS-querying terms (RFC 7208 section 4.6.4)",
                self.limits.max_dns_mechanisms
            )));
        }
        Ok(())
    }

    /// Section 4.6.4: lookups answered NXDOMAIN or empty count.
    fn void(&mut self, name: &str) -> Result<(), Halt> {
        self.voids += 1;
        if self.voids > self.limits.max_void_lookups {
            return Err(perm(format!(
                "more than {} void lookups (the last for {name})",
                self.limits.max_void_lookups
            )));
        }
        Ok(())
    }

    /// `check_host()` of one domain, following its redirects.
    fn check_host(&mut self, domain: &str, depth: u32) -> Result<Verdict, Halt> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(perm(format!(
                "includes nested more than {MAX_INCLUDE_DEPTH} deep"
            )));
        }
        let mut domain = domain.to_string();
        let mut redirected = false;
        loop {
            let record = match self.fetch_record(&domain)? {
                Some(record) => record,
                None if redirected => {
                    return Err(perm(format!("redirect target {domain} has no SPF record")));
                }
                None => {
                    return Ok(Verdict {
                        result: SpfResult::None,
                        mechanism: None,
                        exp: None,
                    });
                }
            };
            for directive in &record.directives {
                if directive.mechanism.queries_dns() {
                    self.count_term()?;
                }
                if self.matches(&directive.mechanism, &domain, depth)? {
                    return Ok(Verdict {
                        result: match directive.qualifier {
                            Qualifier::Pass => SpfResult::Pass,
                            Qualifier::Fail => SpfResult::Fail,
                            Qualifier::SoftFail => SpfResult::SoftFail,
                            Qualifier::Neutral => SpfResult::Neutral,
                        },
                        mechanism: Some(directive.text.clone()),
                        exp: record.explanation.clone().map(|e| (domain.clone(), e)),
                    });
                }
            }
            match &record.redirect {
                Some(target) if !record.has_all() => {
                    self.count_term()?;
                    domain = self.expand_domain(target, &domain)?.ok_or_else(|| {
                        perm(format!(
                            "redirect={target} is not a valid domain name once expanded"
                        ))
                    })?;
                    redirected = true;
                }
                _ => {
                    return Ok(Verdict {
                        result: SpfResult::Neutral,
                        mechanism: None,
                        exp: None,
                    });
                }
            }
        }
    }

    /// Sections 4.4 and 4.5: the one SPF record among the domain's TXT records.
    fn fetch_record(&mut self, domain: &str) -> Result<Option<SpfRecord>, Halt> {
        let records = match self.lookup(domain, RecordType::Txt)? {
            Answer::Records { records, .. } => records,
            Answer::TempFail(e) => return Err(temp(format!("TXT lookup of {domain}: {e}"))),
            Answer::NoData | Answer::NxDomain | Answer::PermFail(_) => return Ok(None),
        };
        let mut spf = records.iter().filter_map(|r| match r {
            Record::Txt(txt) if is_spf_record(txt) => Some(txt),
            _ => None,
        });
        let Some(txt) = spf.next() else {
            return Ok(None);
        };
        if spf.next().is_some() {
            return Err(perm(format!("{domain} publishes more than one SPF record")));
        }
        if txt.len() > self.limits.max_record_len {
            return Err(perm(format!(
                "the SPF record of {domain} is longer than {} bytes",
                self.limits.max_record_len
            )));
        }
        let text = std::str::from_utf8(txt)
            .ok()
            .filter(|t| t.is_ascii())
            .ok_or_else(|| perm(format!("the SPF record of {domain} is not ASCII")))?;
        SpfRecord::parse(text)
            .map(Some)
            .map_err(|e| perm(format!("the SPF record of {domain}: {e}")))
    }

    /// Section 5: whether one mechanism matches. `domain` is the current domain.
    fn matches(&mut self, mechanism: &Mechanism, domain: &str, depth: u32) -> Result<bool, Halt> {
        match mechanism {
            Mechanism::All => Ok(true),
            Mechanism::Ip4 { network, cidr } => Ok(match self.ctx.ip {
                IpAddr::V4(ip) => in_v4(ip, *network, *cidr),
                IpAddr::V6(_) => false,
            }),
            Mechanism::Ip6 { network, cidr } => Ok(match self.ctx.ip {
                IpAddr::V6(ip) => in_v6(ip, *network, *cidr),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                let target = self.expand_domain(spec, domain)?.ok_or_else(|| {
                    perm(format!(
                        "include:{spec} is not a valid domain name once expanded"
                    ))
                })?;
                let verdict = self.check_host(&target, depth + 1)?;
                match verdict.result {
                    SpfResult::Pass => Ok(true),
                    SpfResult::None => Err(perm(format!("include:{target} has no SPF record"))),
                    _ => Ok(false),
                }
            }
            Mechanism::A {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                match self.lookup(&target, self.address_type())? {
                    Answer::Records { records, .. } => {
                        Ok(self.any_address_matches(records, *cidr4, *cidr6))
                    }
                    Answer::TempFail(e) => Err(temp(format!("lookup of {target}: {e}"))),
                    Answer::NxDomain | Answer::NoData => self.void(&target).map(|()| false),
                    Answer::PermFail(_) => Ok(false),
                }
            }
            Mechanism::Mx {
                domain: spec,
                cidr4,
                cidr6,
            } => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                let records = match self.lookup(&target, RecordType::Mx)? {
                    Answer::Records { records, .. } => records,
                    Answer::TempFail(e) => {
                        return Err(temp(format!("MX lookup of {target}: {e}")));
                    }
                    Answer::NxDomain | Answer::NoData => return self.void(&target).map(|()| false),
                    Answer::PermFail(_) => return Ok(false),
                };
                if records.len() > self.limits.max_mx_names as usize {
                    return Err(perm(format!(
                        "{target} has more than {} MX records (RFC 7208 section 4.6.4)",
                        self.limits.max_mx_names
                    )));
                }
                let hosts: Vec<String> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Mx { exchange, .. } => Some(normalize(exchange)),
                        _ => None,
                    })
                    .filter(|h| !h.is_empty())
                    .collect();
                // Ask for every host's addresses at once.
                let rtype = self.address_type();
                let answers: Vec<Option<&Answer>> =
                    hosts.iter().map(|h| self.peek(h, rtype)).collect();
                if answers.iter().any(Option::is_none) {
                    return Err(Halt::Need);
                }
                for (host, answer) in hosts.iter().zip(answers.into_iter().flatten()) {
                    match answer {
                        Answer::Records { records, .. } => {
                            if self.any_address_matches(records, *cidr4, *cidr6) {
                                return Ok(true);
                            }
                        }
                        Answer::TempFail(e) => {
                            return Err(temp(format!("lookup of MX host {host}: {e}")));
                        }
                        Answer::NxDomain | Answer::NoData | Answer::PermFail(_) => {}
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                let Some(target) = self.target(spec.as_ref(), domain)? else {
                    return Ok(false);
                };
                let names = self.ptr_names(true)?;
                // Only names in the target domain can match, so only they are validated.
                let candidates: Vec<String> = names
                    .into_iter()
                    .filter(|n| is_within(n, &target))
                    .collect();
                Ok(!self.validate(&candidates)?.is_empty())
            }
            Mechanism::Exists(spec) => {
                let Some(target) = self.expand_domain(spec, domain)? else {
                    return Ok(false);
                };
                // Always an A lookup, whatever the client's family (section 5.7).
                match self.lookup(&target, RecordType::A)? {
                    Answer::Records { .. } => Ok(true),
                    Answer::TempFail(e) => Err(temp(format!("lookup of {target}: {e}"))),
                    Answer::NxDomain | Answer::NoData => self.void(&target).map(|()| false),
                    Answer::PermFail(_) => Ok(false),
                }
            }
        }
    }

    /// The target name of `a`, `mx` or `ptr`: the expanded spec, or the current domain.
    fn target(&mut self, spec: Option<&MacroString>, domain: &str) -> Result<Option<String>, Halt> {
        match spec {
            None => Ok(Some(domain.to_string())),
            Some(spec) => self.expand_domain(spec, domain),
        }
    }

    /// Expands a domain-spec (section 7) into a name to look up; `None` when the result is not
    /// a valid DNS name (treated as a name that does not exist; the RFC leaves this undefined).
    fn expand_domain(&mut self, spec: &MacroString, domain: &str) -> Result<Option<String>, Halt> {
        let validated = if spec.uses_validated_name() {
            self.validated_name(domain)?
        } else {
            None
        };
        let expanded = spec.expand(&self.vars(domain, validated)).map_err(perm)?;
        Ok(target_name(&expanded))
    }

    fn vars(&self, domain: &str, validated: Option<String>) -> MacroVars {
        MacroVars {
            sender: self.ctx.sender.clone(),
            local: self.ctx.local.clone(),
            sender_domain: self.ctx.sender_domain.clone(),
            domain: domain.to_string(),
            ip: self.ctx.ip,
            helo: self.ctx.helo.clone(),
            receiver: self.ctx.receiver.clone(),
            now_unix: self.ctx.now_unix,
            validated,
        }
    }

    /// `%{p}` (section 7.3): a validated name of the client, preferring the current domain or
    /// one of its subdomains.
    fn validated_name(&mut self, domain: &str) -> Result<Option<String>, Halt> {
        let names = self.ptr_names(false)?;
        let validated = self.validate(&names)?;
        Ok(validated
            .iter()
            .find(|n| is_within(n, domain))
            .or_else(|| validated.first())
            .cloned())
    }

    /// The client's PTR names, at most `max_ptr_names` of them. A DNS error gives no names
    /// (section 5.5: the mechanism then fails to match).
    fn ptr_names(&mut self, count_void: bool) -> Result<Vec<String>, Halt> {
        let reverse = reverse_name(self.ctx.ip);
        match self.lookup(&reverse, RecordType::Ptr)? {
            Answer::Records { records, .. } => Ok(records
                .iter()
                .filter_map(|r| match r {
                    Record::Ptr(name) => Some(normalize(name)),
                    _ => None,
                })
                .take(self.limits.max_ptr_names as usize)
                .collect()),
            Answer::NxDomain | Answer::NoData => {
                if count_void {
                    self.void(&reverse)?;
                }
                Ok(Vec::new())
            }
            Answer::TempFail(_) | Answer::PermFail(_) => Ok(Vec::new()),
        }
    }

    /// The names among `names` whose addresses include the client's (forward confirmation).
    /// A name whose lookup fails is skipped.
    fn validate(&mut self, names: &[String]) -> Result<Vec<String>, Halt> {
        let rtype = self.address_type();
        let answers: Vec<Option<&Answer>> = names.iter().map(|n| self.peek(n, rtype)).collect();
        if answers.iter().any(Option::is_none) {
            return Err(Halt::Need);
        }
        Ok(names
            .iter()
            .zip(answers.into_iter().flatten())
            .filter(|(_, answer)| match answer {
                Answer::Records { records, .. } => self.any_address_matches(records, 32, 128),
                _ => false,
            })
            .map(|(name, _)| name.clone())
            .collect())
    }

    fn address_type(&self) -> RecordType {
        match self.ctx.ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::Aaaa,
        }
    }

    fn any_address_matches(&self, records: &[Record], cidr4: u8, cidr6: u8) -> bool {
        records.iter().any(|r| match (r, self.ctx.ip) {
            (Record::A(addr), IpAddr::V4(ip)) => in_v4(ip, *addr, cidr4),
            (Record::Aaaa(addr), IpAddr::V6(ip)) => in_v6(ip, *addr, cidr6),
            _ => false,
        })
    }

    /// Section 6.2: the explanation string. Any failure means no explanation, never an error;
    /// only missing answers stop it.
    fn explain(&mut self, domain: &str, spec: &MacroString) -> Result<Option<String>, Halt> {
        let target = match self.expand_domain(spec, domain) {
            Ok(Some(target)) => target,
            Ok(None) | Err(Halt::Error(..)) => return Ok(None),
            Err(Halt::Need) => return Err(Halt::Need),
        };
        let Answer::Records { records, .. } = self.lookup(&target, RecordType::Txt)? else {
            return Ok(None);
        };
        let txts: Vec<&Vec<u8>> = records
            .iter()
            .filter_map(|r| match r {
                Record::Txt(txt) => Some(txt),
                _ => None,
            })
            .collect();
        let [txt] = txts.as_slice() else {
            return Ok(None);
        };
        let Some(text) = std::str::from_utf8(txt).ok().filter(|t| t.is_ascii()) else {
            return Ok(None);
        };
        let Ok(explanation) = MacroString::parse(text, true) else {
            return Ok(None);
        };
        let validated = if explanation.uses_validated_name() {
            match self.validated_name(domain) {
                Ok(name) => name,
                Err(Halt::Need) => return Err(Halt::Need),
                Err(Halt::Error(..)) => None,
            }
        } else {
            None
        };
        let Ok(mut expanded) = explanation.expand(&self.vars(domain, validated)) else {
            return Ok(None);
        };
        truncate(&mut expanded, MAX_EXPLANATION);
        Ok(Some(expanded))
    }
}

/// Lowercase, without one trailing dot.
fn normalize(name: &str) -> String {
    // Every trailing dot: a name the DNS handed back as `host..` must ask and be answered
    // under one spelling, or its question would stay open for ever (found by fuzzing).
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` is `domain` or one of its subdomains.
fn is_within(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// Section 4.3: whether the checked domain is well formed: ASCII letters, digits, `-` and `_`,
/// labels of 1 to 63 bytes, at least two of them, 253 bytes at most, top label not numeric.
fn is_checkable_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && labels
            .last()
            .is_some_and(|top| !top.bytes().all(|b| b.is_ascii_digit()))
}

/// Section 7.3: an expanded domain-spec as a name to look up. Labels are dropped from the left
/// until it is at most 253 bytes; `None` when the rest is not a valid name.
fn target_name(expanded: &str) -> Option<String> {
    let mut name = expanded.strip_suffix('.').unwrap_or(expanded);
    while name.len() > 253 {
        name = &name[name.find('.')? + 1..];
    }
    let valid = !name.is_empty() && name.split('.').all(|l| (1..=63).contains(&l.len()));
    valid.then(|| name.to_ascii_lowercase())
}

/// The reverse-lookup name of an address (`in-addr.arpa` or `ip6.arpa`).
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(_) => {
            let forward = dotted_ip(ip);
            let mut nibbles: Vec<&str> = forward.split('.').collect();
            nibbles.reverse();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
}

fn in_v4(ip: Ipv4Addr, network: Ipv4Addr, cidr: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(cidr.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, network: Ipv6Addr, cidr: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(cidr.min(128)))
        .unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
