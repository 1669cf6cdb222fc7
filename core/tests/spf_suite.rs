//! The openspf.org RFC 7208 test suite (release 2014.04, `rfc7208-tests.yml` as shipped with
//! pyspf), ported to a Rust table: every section, every test.
//!
//! The suite is (C) 2006-2014 Stuart D Gathman, Julian Mehnle and the contributors named in the
//! original file, and is redistributed under its BSD licence: redistributions must retain this
//! notice; the names of the authors may not be used to endorse or promote products derived from it;
//! it is provided "as is", without any warranty, express or implied.
//!
//! Porting conventions (those of the suite's own drivers):
//! - `SPF` records are published as TXT, unless the name has TXT entries of its own (`TXT NONE`
//!   means "no TXT at all"); type SPF itself is never queried (RFC 7208 dropped it).
//! - `TIMEOUT` makes every query of that name that has no record of the asked type a temporary
//!   failure; a name absent from the zone is NXDOMAIN, a present one without the type NoData.
//! - TXT strings arrive concatenated (the DNS layer's job), so `['v=spf1', 'mx']` is `v=spf1mx`.
//! - The YAML's `\xNN` escapes are code points; here any non-ASCII character stands for them,
//!   since only "is it ASCII" matters.
//! - An empty MAIL FROM is the HELO check: sender `postmaster@<helo>`, domain `<helo>`.
//! - Explanation `DEFAULT` means "the implementation's default": here, no explanation. Others are
//!   compared without case: the suite writes `%{ir}` nibbles of IPv6 in uppercase, the RFC's
//!   section 7.4 example (and Petrel) in lowercase.
//! - Where the suite accepts several results, any of them passes.

use core::net::IpAddr;
use petrel_core::dns::{Answer, Record, RecordType};
use petrel_core::spf::{SpfCheck, SpfLimits, SpfOutcome};
use std::collections::{HashMap, HashSet};

type Case = (
    &'static str,         // test name
    &'static str,         // helo
    &'static str,         // host
    &'static str,         // mailfrom
    &'static str,         // acceptable results, '|'-separated
    Option<&'static str>, // explanation
);

struct Section {
    name: &'static str,
    zone: &'static [(&'static str, &'static str)],
    tests: &'static [Case],
}

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<Record>>,
    names: HashSet<String>,
    timeouts: HashSet<String>,
}

impl Zone {
    fn build(entries: &[(&str, &str)]) -> Zone {
        let mut zone = Zone::default();
        let mut spf: HashMap<String, Vec<String>> = HashMap::new();
        let mut has_txt = HashSet::new();
        for (name, entry) in entries {
            let name = name.to_ascii_lowercase();
            zone.names.insert(name.clone());
            let (kind, data) = entry.split_once(' ').unwrap_or((entry, ""));
            let (rtype, record) = match kind {
                "TIMEOUT" => {
                    zone.timeouts.insert(name);
                    continue;
                }
                "SPF" => {
                    spf.entry(name).or_default().push(data.to_string());
                    continue;
                }
                "TXT" if data == "NONE" => {
                    has_txt.insert(name);
                    continue;
                }
                "TXT" => {
                    has_txt.insert(name.clone());
                    (RecordType::Txt, Record::Txt(data.as_bytes().to_vec()))
                }
                "A" => (RecordType::A, Record::A(data.parse().unwrap())),
                "AAAA" => (RecordType::Aaaa, Record::Aaaa(data.parse().unwrap())),
                "PTR" => (
                    RecordType::Ptr,
                    Record::Ptr(data.trim_end_matches('.').to_ascii_lowercase()),
                ),
                "MX" => {
                    let (pref, exchange) = data.split_once(' ').unwrap_or((data, ""));
                    let exchange = if exchange.is_empty() {
                        ".".to_string()
                    } else {
                        exchange.to_ascii_lowercase()
                    };
                    (
                        RecordType::Mx,
                        Record::Mx {
                            preference: pref.parse().unwrap(),
                            exchange,
                        },
                    )
                }
                other => panic!("unknown record type {other}"),
            };
            zone.records.entry((name, rtype)).or_default().push(record);
        }
        for (name, texts) in spf {
            if !has_txt.contains(&name) {
                let txt = texts
                    .into_iter()
                    .map(|t| Record::Txt(t.into_bytes()))
                    .collect();
                zone.records.insert((name, RecordType::Txt), txt);
            }
        }
        zone
    }

    fn resolve(&self, name: &str, rtype: RecordType) -> Answer {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(records) = self.records.get(&(name.clone(), rtype)) {
            Answer::Records {
                records: records.clone(),
                ttl: 300,
                canonical_name: name,
            }
        } else if self.timeouts.contains(&name) {
            Answer::TempFail("timeout".into())
        } else if self.names.contains(&name) {
            Answer::NoData
        } else {
            Answer::NxDomain
        }
    }
}

fn run_case(zone: &Zone, helo: &str, host: &str, mailfrom: &str) -> (SpfOutcome, usize) {
    let ip: IpAddr = host.parse().unwrap();
    let (sender, domain) = if mailfrom.is_empty() {
        (format!("postmaster@{helo}"), helo.to_string())
    } else {
        let at = mailfrom.rfind('@').unwrap();
        (mailfrom.to_string(), mailfrom[at + 1..].to_string())
    };
    let mut check = SpfCheck::new(
        ip,
        &domain,
        &sender,
        helo,
        "receiver.example.net",
        1_400_000_000,
        SpfLimits::default(),
    );
    let mut lookups = 0;
    for _round in 0..200 {
        if let Some(outcome) = check.outcome() {
            return (outcome.clone(), lookups);
        }
        let queries = check.queries();
        assert!(!queries.is_empty(), "undecided without queries");
        for (name, rtype) in queries {
            lookups += 1;
            check.answer(&name, rtype, &zone.resolve(&name, rtype));
        }
    }
    panic!("no outcome after 200 rounds");
}

fn run_section(section: &Section) -> Vec<String> {
    let zone = Zone::build(section.zone);
    let mut failures = Vec::new();
    for (name, helo, host, mailfrom, results, explanation) in section.tests {
        let (outcome, lookups) = run_case(&zone, helo, host, mailfrom);
        let got = outcome.result.to_string();
        if !results.split('|').any(|r| r == got) {
            failures.push(format!(
                "{}/{name}: expected {results}, got {got} ({:?})",
                section.name, outcome.problem
            ));
            continue;
        }
        if lookups > 50 {
            failures.push(format!("{}/{name}: {lookups} lookups", section.name));
        }
        let explanation_ok = match explanation {
            None => true,
            Some("DEFAULT") => outcome.explanation.is_none(),
            Some(want) => outcome
                .explanation
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(want)),
        };
        if !explanation_ok {
            failures.push(format!(
                "{}/{name}: expected explanation {explanation:?}, got {:?}",
                section.name, outcome.explanation
            ));
        }
    }
    failures
}

fn check(section: &Section) {
    let failures = run_section(section);
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        section.tests.len(),
        failures.join("\n")
    );
}

const ME: &str = "mail.example.com";

#[test]
fn spf_initial_processing() {
    check(&Section {
        name: "Initial processing",
        zone: &[
            ("example.com", "TIMEOUT"),
            ("example.net", "SPF v=spf1 -all exp=exp.example.net"),
            ("a.example.net", "SPF v=spf1 -all exp=exp.example.net"),
            ("exp.example.net", "TXT %{l}"),
            (
                "a12345678901234567890123456789012345678901234567890123456789012.example.com",
                "SPF v=spf1 -all",
            ),
            (
                "hosed.example.com",
                "SPF v=spf1 a:\u{ef}\u{bb}\u{bf}garbage.example.net -all",
            ),
            ("hosed2.example.com", "SPF v=spf1 \u{80}a:example.net -all"),
            ("hosed3.example.com", "SPF v=spf1 a:example.net \u{96}all"),
            ("nothosed.example.com", "SPF v=spf1 a:example.net -all"),
            ("nothosed.example.com", "SPF \u{96}"),
            (
                "ctrl.example.com",
                "SPF v=spf1 a:ctrl.example.com\rptr -all",
            ),
            ("ctrl.example.com", "A 192.0.2.3"),
            ("fine.example.com", "TXT v=spf1 a  -all"),
        ],
        tests: &[
            (
                "toolonglabel",
                "mail.example.net",
                "1.2.3.5",
                "lyme.eater@A123456789012345678901234567890123456789012345678901234567890123.example.com",
                "none",
                None,
            ),
            (
                "longlabel",
                "mail.example.net",
                "1.2.3.5",
                "lyme.eater@A12345678901234567890123456789012345678901234567890123456789012.example.com",
                "fail",
                None,
            ),
            (
                "emptylabel",
                "mail.example.net",
                "1.2.3.5",
                "lyme.eater@A...example.com",
                "none",
                None,
            ),
            ("helo-not-fqdn", "A2345678", "1.2.3.5", "", "none", None),
            (
                "helo-domain-literal",
                "[1.2.3.5]",
                "1.2.3.5",
                "",
                "none",
                None,
            ),
            (
                "nolocalpart",
                "mail.example.net",
                "1.2.3.4",
                "@example.net",
                "fail",
                Some("postmaster"),
            ),
            (
                "domain-literal",
                "OEMCOMPUTER",
                "1.2.3.5",
                "foo@[1.2.3.5]",
                "none",
                None,
            ),
            (
                "non-ascii-policy",
                "hosed",
                "1.2.3.4",
                "foobar@hosed.example.com",
                "permerror",
                None,
            ),
            (
                "non-ascii-mech",
                "hosed",
                "1.2.3.4",
                "foobar@hosed2.example.com",
                "permerror",
                None,
            ),
            (
                "non-ascii-result",
                "hosed",
                "1.2.3.4",
                "foobar@hosed3.example.com",
                "permerror",
                None,
            ),
            (
                "non-ascii-non-spf",
                "hosed",
                "1.2.3.4",
                "foobar@nothosed.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "control-char-policy",
                "hosed",
                "192.0.2.3",
                "foobar@ctrl.example.com",
                "permerror",
                None,
            ),
            (
                "two-spaces",
                "hosed",
                "1.2.3.4",
                "actually@fine.example.com",
                "fail",
                None,
            ),
        ],
    });
}

#[test]
fn spf_record_lookup() {
    check(&Section {
        name: "Record lookup",
        zone: &[
            ("both.example.net", "TXT v=spf1 -all"),
            ("both.example.net", "SPF v=spf1 -all"),
            ("txtonly.example.net", "TXT v=spf1 -all"),
            ("spfonly.example.net", "SPF v=spf1 -all"),
            ("spfonly.example.net", "TXT NONE"),
            ("spftimeout.example.net", "TXT v=spf1 -all"),
            ("spftimeout.example.net", "TIMEOUT"),
            ("txttimeout.example.net", "SPF v=spf1 -all"),
            ("txttimeout.example.net", "TXT NONE"),
            ("txttimeout.example.net", "TIMEOUT"),
            (
                "nospftxttimeout.example.net",
                "SPF v=spf3 !a:yahoo.com -all",
            ),
            ("nospftxttimeout.example.net", "TXT NONE"),
            ("nospftxttimeout.example.net", "TIMEOUT"),
            ("alltimeout.example.net", "TIMEOUT"),
        ],
        tests: &[
            (
                "both",
                "mail.example.net",
                "1.2.3.4",
                "foo@both.example.net",
                "fail",
                None,
            ),
            (
                "txtonly",
                "mail.example.net",
                "1.2.3.4",
                "foo@txtonly.example.net",
                "fail",
                None,
            ),
            (
                "spfonly",
                "mail.example.net",
                "1.2.3.4",
                "foo@spfonly.example.net",
                "none",
                None,
            ),
            (
                "spftimeout",
                "mail.example.net",
                "1.2.3.4",
                "foo@spftimeout.example.net",
                "fail",
                None,
            ),
            (
                "txttimeout",
                "mail.example.net",
                "1.2.3.4",
                "foo@txttimeout.example.net",
                "temperror",
                None,
            ),
            (
                "nospftxttimeout",
                "mail.example.net",
                "1.2.3.4",
                "foo@nospftxttimeout.example.net",
                "temperror",
                None,
            ),
            (
                "alltimeout",
                "mail.example.net",
                "1.2.3.4",
                "foo@alltimeout.example.net",
                "temperror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_selecting_records() {
    check(&Section {
        name: "Selecting records",
        zone: &[
            ("example3.com", "SPF v=spf10"),
            ("example3.com", "SPF v=spf1 mx"),
            ("example3.com", "MX 0 mail.example1.com"),
            ("example1.com", "SPF v=spf1"),
            ("example2.com", "SPF v=spf1mx"),
            ("mail.example1.com", "A 1.2.3.4"),
            ("example4.com", "SPF v=spf1 +all"),
            ("example4.com", "TXT v=spf1 -all"),
            ("example5.com", "SPF v=spf1 +all"),
            ("example5.com", "TXT v=spf1 -all"),
            ("example5.com", "TXT v=spf1 +all"),
            ("example6.com", "SPF v=spf1 -all"),
            ("example6.com", "SPF V=sPf1 +all"),
            ("example7.com", "SPF v=spf1 -all"),
            ("example7.com", "SPF v=spf1 -all"),
            ("example8.com", "SPF V=spf1 -all"),
            ("example8.com", "SPF v=spf1 -all"),
            ("example8.com", "TXT v=spf1 +all"),
            ("example9.com", "SPF v=SpF1 ~all"),
        ],
        tests: &[
            (
                "nospace1",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example2.com",
                "none",
                None,
            ),
            (
                "empty",
                "mail1.example1.com",
                "1.2.3.4",
                "foo@example1.com",
                "neutral",
                None,
            ),
            (
                "nospace2",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example3.com",
                "pass",
                None,
            ),
            (
                "spfoverride",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example4.com",
                "fail",
                None,
            ),
            (
                "multitxt1",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example5.com",
                "permerror",
                None,
            ),
            (
                "multitxt2",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example6.com",
                "permerror",
                None,
            ),
            (
                "multispf1",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example7.com",
                "permerror|fail",
                None,
            ),
            (
                "multispf2",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example8.com",
                "pass",
                None,
            ),
            (
                "nospf",
                "mail.example1.com",
                "1.2.3.4",
                "foo@mail.example1.com",
                "none",
                None,
            ),
            (
                "case-insensitive",
                "mail.example1.com",
                "1.2.3.4",
                "foo@example9.com",
                "softfail",
                None,
            ),
        ],
    });
}

#[test]
fn spf_record_evaluation() {
    check(&Section {
        name: "Record evaluation",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("t1.example.com", "SPF v=spf1 ip4:1.2.3.4 -all moo"),
            (
                "t2.example.com",
                "SPF v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
            ),
            (
                "t3.example.com",
                "SPF v=spf1 moo.cow/far_out=man:dog/cat ip4:1.2.3.4 -all",
            ),
            (
                "t4.example.com",
                "SPF v=spf1 moo.cow:far_out=man:dog/cat ip4:1.2.3.4 -all",
            ),
            ("t5.example.com", "SPF v=spf1 redirect=t5.example.com ~all"),
            (
                "t6.example.com",
                "SPF v=spf1 ip4:1.2.3.4 redirect=t2.example.com",
            ),
            ("t7.example.com", "SPF v=spf1 ip4:1.2.3.4"),
            (
                "t8.example.com",
                "SPF v=spf1 ip4:1.2.3.4 redirect:t2.example.com",
            ),
            ("t9.example.com", "SPF v=spf1 a:foo-bar -all"),
            ("t10.example.com", "SPF v=spf1 a:mail.example...com -all"),
            (
                "t11.example.com",
                "SPF v=spf1 a:a123456789012345678901234567890123456789012345678901234567890123.example.com -all",
            ),
            ("t12.example.com", "SPF v=spf1 a:%{H}.bar -all"),
        ],
        tests: &[
            (
                "detect-errors-anywhere",
                ME,
                "1.2.3.4",
                "foo@t1.example.com",
                "permerror",
                None,
            ),
            (
                "modifier-charset-good",
                ME,
                "1.2.3.4",
                "foo@t2.example.com",
                "pass",
                None,
            ),
            (
                "modifier-charset-bad1",
                ME,
                "1.2.3.4",
                "foo@t3.example.com",
                "permerror",
                None,
            ),
            (
                "modifier-charset-bad2",
                ME,
                "1.2.3.4",
                "foo@t4.example.com",
                "permerror",
                None,
            ),
            (
                "redirect-after-mechanisms1",
                ME,
                "1.2.3.4",
                "foo@t5.example.com",
                "softfail",
                None,
            ),
            (
                "redirect-after-mechanisms2",
                ME,
                "1.2.3.5",
                "foo@t6.example.com",
                "fail",
                None,
            ),
            (
                "default-result",
                ME,
                "1.2.3.5",
                "foo@t7.example.com",
                "neutral",
                None,
            ),
            (
                "redirect-is-modifier",
                ME,
                "1.2.3.4",
                "foo@t8.example.com",
                "permerror",
                None,
            ),
            (
                "invalid-domain",
                ME,
                "1.2.3.4",
                "foo@t9.example.com",
                "permerror",
                None,
            ),
            (
                "invalid-domain-empty-label",
                ME,
                "1.2.3.4",
                "foo@t10.example.com",
                "fail|permerror",
                None,
            ),
            (
                "invalid-domain-long",
                ME,
                "1.2.3.4",
                "foo@t11.example.com",
                "fail|permerror",
                None,
            ),
            (
                "invalid-domain-long-via-macro",
                "%%%%%%%%%%%%%%%%%%%%%%",
                "1.2.3.4",
                "foo@t12.example.com",
                "fail|permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_all_mechanism_syntax() {
    check(&Section {
        name: "ALL mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("e1.example.com", "SPF v=spf1 -all."),
            ("e2.example.com", "SPF v=spf1 -all:foobar"),
            ("e3.example.com", "SPF v=spf1 -all/8"),
            ("e4.example.com", "SPF v=spf1 ?all"),
            ("e5.example.com", "SPF v=spf1 all -all"),
        ],
        tests: &[
            (
                "all-dot",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "permerror",
                None,
            ),
            (
                "all-arg",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "permerror",
                None,
            ),
            (
                "all-cidr",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "all-neutral",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "neutral",
                None,
            ),
            (
                "all-double",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "pass",
                None,
            ),
        ],
    });
}

#[test]
fn spf_ptr_mechanism_syntax() {
    check(&Section {
        name: "PTR mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            (ME, "AAAA 2001:db8::1"),
            ("e1.example.com", "SPF v=spf1 ptr/0 -all"),
            ("e2.example.com", "SPF v=spf1 ptr:example.com -all"),
            ("4.3.2.1.in-addr.arpa", "PTR e3.example.com"),
            ("4.3.2.1.in-addr.arpa", "PTR e4.example.com"),
            ("4.3.2.1.in-addr.arpa", "PTR mail.example.com"),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.E.B.A.B.E.F.A.C.ip6.arpa",
                "PTR e3.example.com",
            ),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.D.0.1.0.0.2.ip6.arpa",
                "PTR mail.Example.com",
            ),
            ("e3.example.com", "SPF v=spf1 ptr -all"),
            ("e3.example.com", "A 1.2.3.4"),
            ("e3.example.com", "AAAA CAFE:BABE::1"),
            ("e4.example.com", "SPF v=spf1 ptr -all"),
            ("e5.example.com", "SPF v=spf1 ptr:"),
            ("e6.example.com", "SPF v=spf1 ptr:example.Com -all"),
        ],
        tests: &[
            (
                "ptr-cidr",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "permerror",
                None,
            ),
            (
                "ptr-match-target",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "ptr-match-implicit",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "pass",
                None,
            ),
            (
                "ptr-nomatch-invalid",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "fail",
                None,
            ),
            (
                "ptr-match-ip6",
                ME,
                "CAFE:BABE::1",
                "foo@e3.example.com",
                "pass",
                None,
            ),
            (
                "ptr-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "ptr-case-change",
                ME,
                "2001:db8::1",
                "bar@e6.example.com",
                "pass",
                None,
            ),
        ],
    });
}

#[test]
fn spf_a_mechanism_syntax() {
    check(&Section {
        name: "A mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("e1.example.com", "SPF v=spf1 a/0 -all"),
            ("e2.example.com", "A 1.1.1.1"),
            ("e2.example.com", "AAAA 1234::2"),
            ("e2.example.com", "SPF v=spf1 a/0 -all"),
            ("e2a.example.com", "AAAA 1234::1"),
            ("e2a.example.com", "SPF v=spf1 a//0 -all"),
            ("e2b.example.com", "A 1.1.1.1"),
            ("e2b.example.com", "SPF v=spf1 a//0 -all"),
            ("ipv6.example.com", "AAAA 1234::1"),
            ("ipv6.example.com", "A 1.1.1.1"),
            ("ipv6.example.com", "SPF v=spf1 a -all"),
            ("e3.example.com", "SPF v=spf1 a:foo.example.com\0"),
            ("e4.example.com", "SPF v=spf1 a:111.222.33.44"),
            ("e5.example.com", "SPF v=spf1 a:abc.123"),
            ("e5a.example.com", "SPF v=spf1 a:museum"),
            ("e5b.example.com", "SPF v=spf1 a:museum."),
            ("e6.example.com", "SPF v=spf1 a//33 -all"),
            ("e6a.example.com", "SPF v=spf1 a/33 -all"),
            ("e7.example.com", "SPF v=spf1 a//129 -all"),
            ("e8.example.com", "A 1.2.3.5"),
            ("e8.example.com", "AAAA 2001:db8:1234::dead:beef"),
            ("e8.example.com", "SPF v=spf1 a/24//64 -all"),
            ("e8e.example.com", "A 1.2.3.5"),
            ("e8e.example.com", "AAAA 2001:db8:1234::dead:beef"),
            ("e8e.example.com", "SPF v=spf1 a/24/64 -all"),
            ("e8a.example.com", "A 1.2.3.5"),
            ("e8a.example.com", "AAAA 2001:db8:1234::dead:beef"),
            ("e8a.example.com", "SPF v=spf1 a/24 -all"),
            ("e8b.example.com", "A 1.2.3.5"),
            ("e8b.example.com", "AAAA 2001:db8:1234::dead:beef"),
            ("e8b.example.com", "SPF v=spf1 a//64 -all"),
            ("e9.example.com", "SPF v=spf1 a:example.com:8080"),
            ("e10.example.com", "SPF v=spf1 a:foo.example.com/24"),
            ("foo.example.com", "A 1.1.1.1"),
            ("foo.example.com", "A 1.2.3.5"),
            ("e11.example.com", "SPF v=spf1 a:foo:bar/baz.example.com"),
            ("foo:bar/baz.example.com", "A 1.2.3.4"),
            ("e12.example.com", "SPF v=spf1 a:example.-com"),
            ("e13.example.com", "SPF v=spf1 a:"),
            (
                "e14.example.com",
                "SPF v=spf1 a:foo.example.xn--zckzah -all",
            ),
            ("foo.example.xn--zckzah", "A 1.2.3.4"),
        ],
        tests: &[
            ("a-cidr6", ME, "1.2.3.4", "foo@e6.example.com", "fail", None),
            (
                "a-bad-cidr4",
                ME,
                "1.2.3.4",
                "foo@e6a.example.com",
                "permerror",
                None,
            ),
            (
                "a-bad-cidr6",
                ME,
                "1.2.3.4",
                "foo@e7.example.com",
                "permerror",
                None,
            ),
            (
                "a-dual-cidr-ip4-match",
                ME,
                "1.2.3.4",
                "foo@e8.example.com",
                "pass",
                None,
            ),
            (
                "a-dual-cidr-ip4-err",
                ME,
                "1.2.3.4",
                "foo@e8e.example.com",
                "permerror",
                None,
            ),
            (
                "a-dual-cidr-ip6-match",
                ME,
                "2001:db8:1234::cafe:babe",
                "foo@e8.example.com",
                "pass",
                None,
            ),
            (
                "a-dual-cidr-ip4-default",
                ME,
                "1.2.3.4",
                "foo@e8b.example.com",
                "fail",
                None,
            ),
            (
                "a-dual-cidr-ip6-default",
                ME,
                "2001:db8:1234::cafe:babe",
                "foo@e8a.example.com",
                "fail",
                None,
            ),
            (
                "a-multi-ip1",
                ME,
                "1.2.3.4",
                "foo@e10.example.com",
                "pass",
                None,
            ),
            (
                "a-multi-ip2",
                ME,
                "1.2.3.4",
                "foo@e10.example.com",
                "pass",
                None,
            ),
            (
                "a-bad-domain",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "a-nxdomain",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "fail",
                None,
            ),
            (
                "a-cidr4-0",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "a-cidr4-0-ip6",
                ME,
                "1234::1",
                "foo@e2.example.com",
                "fail",
                None,
            ),
            (
                "a-cidr6-0-ip4",
                ME,
                "1.2.3.4",
                "foo@e2a.example.com",
                "fail",
                None,
            ),
            (
                "a-cidr6-0-ip4mapped",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e2a.example.com",
                "fail",
                None,
            ),
            (
                "a-cidr6-0-ip6",
                ME,
                "1234::1",
                "foo@e2a.example.com",
                "pass",
                None,
            ),
            (
                "a-ip6-dualstack",
                ME,
                "1234::1",
                "foo@ipv6.example.com",
                "pass",
                None,
            ),
            (
                "a-cidr6-0-nxdomain",
                ME,
                "1234::1",
                "foo@e2b.example.com",
                "fail",
                None,
            ),
            (
                "a-null",
                ME,
                "1.2.3.5",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "a-numeric",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "permerror",
                None,
            ),
            (
                "a-numeric-toplabel",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "a-dash-in-toplabel",
                ME,
                "1.2.3.4",
                "foo@e14.example.com",
                "pass",
                None,
            ),
            (
                "a-bad-toplabel",
                ME,
                "1.2.3.4",
                "foo@e12.example.com",
                "permerror",
                None,
            ),
            (
                "a-only-toplabel",
                ME,
                "1.2.3.4",
                "foo@e5a.example.com",
                "permerror",
                None,
            ),
            (
                "a-only-toplabel-trailing-dot",
                ME,
                "1.2.3.4",
                "foo@e5b.example.com",
                "permerror",
                None,
            ),
            (
                "a-colon-domain",
                ME,
                "1.2.3.4",
                "foo@e11.example.com",
                "pass",
                None,
            ),
            (
                "a-colon-domain-ip4mapped",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e11.example.com",
                "pass",
                None,
            ),
            (
                "a-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e13.example.com",
                "permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_include_mechanism() {
    check(&Section {
        name: "Include mechanism semantics and syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("ip5.example.com", "SPF v=spf1 ip4:1.2.3.5 -all"),
            ("ip6.example.com", "SPF v=spf1 ip4:1.2.3.6 ~all"),
            ("ip7.example.com", "SPF v=spf1 ip4:1.2.3.7 ?all"),
            ("ip8.example.com", "TIMEOUT"),
            ("erehwon.example.com", "TXT v=spfl am not an SPF record"),
            ("e1.example.com", "SPF v=spf1 include:ip5.example.com ~all"),
            ("e2.example.com", "SPF v=spf1 include:ip6.example.com all"),
            ("e3.example.com", "SPF v=spf1 include:ip7.example.com -all"),
            ("e4.example.com", "SPF v=spf1 include:ip8.example.com -all"),
            ("e5.example.com", "SPF v=spf1 include:e6.example.com -all"),
            ("e6.example.com", "SPF v=spf1 include +all"),
            (
                "e7.example.com",
                "SPF v=spf1 include:erehwon.example.com -all",
            ),
            ("e8.example.com", "SPF v=spf1 include: -all"),
            (
                "e9.example.com",
                "SPF v=spf1 include:ip5.example.com/24 -all",
            ),
        ],
        tests: &[
            (
                "include-fail",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "softfail",
                None,
            ),
            (
                "include-softfail",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "include-neutral",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "fail",
                None,
            ),
            (
                "include-temperror",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "temperror",
                None,
            ),
            (
                "include-permerror",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "include-syntax-error",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "permerror",
                None,
            ),
            (
                "include-cidr",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "include-none",
                ME,
                "1.2.3.4",
                "foo@e7.example.com",
                "permerror",
                None,
            ),
            (
                "include-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e8.example.com",
                "permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_mx_mechanism_syntax() {
    check(&Section {
        name: "MX mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            (ME, "MX 0 "),
            (ME, "SPF v=spf1 mx"),
            ("e1.example.com", "SPF v=spf1 mx/0 -all"),
            ("e1.example.com", "MX 0 e1.example.com"),
            ("e2.example.com", "A 1.1.1.1"),
            ("e2.example.com", "AAAA 1234::2"),
            ("e2.example.com", "MX 0 e2.example.com"),
            ("e2.example.com", "SPF v=spf1 mx/0 -all"),
            ("e2a.example.com", "AAAA 1234::1"),
            ("e2a.example.com", "MX 0 e2a.example.com"),
            ("e2a.example.com", "SPF v=spf1 mx//0 -all"),
            ("e2b.example.com", "A 1.1.1.1"),
            ("e2b.example.com", "MX 0 e2b.example.com"),
            ("e2b.example.com", "SPF v=spf1 mx//0 -all"),
            ("e3.example.com", "SPF v=spf1 mx:foo.example.com\0"),
            ("e4.example.com", "SPF v=spf1 mx"),
            ("e4.example.com", "A 1.2.3.4"),
            ("e5.example.com", "SPF v=spf1 mx:abc.123"),
            ("e6.example.com", "SPF v=spf1 mx//33 -all"),
            ("e6a.example.com", "SPF v=spf1 mx/33 -all"),
            ("e7.example.com", "SPF v=spf1 mx//129 -all"),
            ("e9.example.com", "SPF v=spf1 mx:example.com:8080"),
            ("e10.example.com", "SPF v=spf1 mx:foo.example.com/24"),
            ("foo.example.com", "MX 0 foo1.example.com"),
            ("foo1.example.com", "A 1.1.1.1"),
            ("foo1.example.com", "A 1.2.3.5"),
            ("e11.example.com", "SPF v=spf1 mx:foo:bar/baz.example.com"),
            ("foo:bar/baz.example.com", "MX 0 foo:bar/baz.example.com"),
            ("foo:bar/baz.example.com", "A 1.2.3.4"),
            ("e12.example.com", "SPF v=spf1 mx:example.-com"),
            ("e13.example.com", "SPF v=spf1 mx: -all"),
        ],
        tests: &[
            (
                "mx-cidr6",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "fail",
                None,
            ),
            (
                "mx-bad-cidr4",
                ME,
                "1.2.3.4",
                "foo@e6a.example.com",
                "permerror",
                None,
            ),
            (
                "mx-bad-cidr6",
                ME,
                "1.2.3.4",
                "foo@e7.example.com",
                "permerror",
                None,
            ),
            (
                "mx-multi-ip1",
                ME,
                "1.2.3.4",
                "foo@e10.example.com",
                "pass",
                None,
            ),
            (
                "mx-multi-ip2",
                ME,
                "1.2.3.4",
                "foo@e10.example.com",
                "pass",
                None,
            ),
            (
                "mx-bad-domain",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "mx-nxdomain",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "fail",
                None,
            ),
            (
                "mx-cidr4-0",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "mx-cidr4-0-ip6",
                ME,
                "1234::1",
                "foo@e2.example.com",
                "fail",
                None,
            ),
            (
                "mx-cidr6-0-ip4",
                ME,
                "1.2.3.4",
                "foo@e2a.example.com",
                "fail",
                None,
            ),
            (
                "mx-cidr6-0-ip4mapped",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e2a.example.com",
                "fail",
                None,
            ),
            (
                "mx-cidr6-0-ip6",
                ME,
                "1234::1",
                "foo@e2a.example.com",
                "pass",
                None,
            ),
            (
                "mx-cidr6-0-nxdomain",
                ME,
                "1234::1",
                "foo@e2b.example.com",
                "fail",
                None,
            ),
            (
                "mx-null",
                ME,
                "1.2.3.5",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "mx-numeric-top-label",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "mx-colon-domain",
                ME,
                "1.2.3.4",
                "foo@e11.example.com",
                "pass",
                None,
            ),
            (
                "mx-colon-domain-ip4mapped",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e11.example.com",
                "pass",
                None,
            ),
            (
                "mx-bad-toplab",
                ME,
                "1.2.3.4",
                "foo@e12.example.com",
                "permerror",
                None,
            ),
            ("mx-empty", ME, "1.2.3.4", "", "neutral", None),
            (
                "mx-implicit",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "neutral",
                None,
            ),
            (
                "mx-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e13.example.com",
                "permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_exists_mechanism_syntax() {
    check(&Section {
        name: "EXISTS mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("mail6.example.com", "AAAA CAFE:BABE::4"),
            ("err.example.com", "TIMEOUT"),
            ("e1.example.com", "SPF v=spf1 exists:"),
            ("e2.example.com", "SPF v=spf1 exists"),
            ("e3.example.com", "SPF v=spf1 exists:mail.example.com/24"),
            ("e4.example.com", "SPF v=spf1 exists:mail.example.com"),
            ("e5.example.com", "SPF v=spf1 exists:mail6.example.com -all"),
            ("e6.example.com", "SPF v=spf1 exists:err.example.com -all"),
        ],
        tests: &[
            (
                "exists-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "permerror",
                None,
            ),
            (
                "exists-implicit",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "permerror",
                None,
            ),
            (
                "exists-cidr",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "exists-ip4",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "pass",
                None,
            ),
            (
                "exists-ip6",
                ME,
                "CAFE:BABE::3",
                "foo@e4.example.com",
                "pass",
                None,
            ),
            (
                "exists-ip6only",
                ME,
                "CAFE:BABE::3",
                "foo@e5.example.com",
                "fail",
                None,
            ),
            (
                "exists-dnserr",
                ME,
                "CAFE:BABE::3",
                "foo@e6.example.com",
                "temperror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_ip4_mechanism_syntax() {
    check(&Section {
        name: "IP4 mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("e1.example.com", "SPF v=spf1 ip4:1.1.1.1/0 -all"),
            ("e2.example.com", "SPF v=spf1 ip4:1.2.3.4/32 -all"),
            ("e3.example.com", "SPF v=spf1 ip4:1.2.3.4/33 -all"),
            ("e4.example.com", "SPF v=spf1 ip4:1.2.3.4/032 -all"),
            ("e5.example.com", "SPF v=spf1 ip4"),
            ("e6.example.com", "SPF v=spf1 ip4:1.2.3.4//32"),
            (
                "e7.example.com",
                "SPF v=spf1 -ip4:1.2.3.4 ip6:::FFFF:1.2.3.4",
            ),
            ("e8.example.com", "SPF v=spf1 ip4:1.2.3.4:8080"),
            ("e9.example.com", "SPF v=spf1 ip4:1.2.3"),
        ],
        tests: &[
            ("cidr4-0", ME, "1.2.3.4", "foo@e1.example.com", "pass", None),
            (
                "cidr4-32",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "cidr4-33",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "cidr4-032",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "permerror",
                None,
            ),
            (
                "bare-ip4",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "bad-ip4-port",
                ME,
                "1.2.3.4",
                "foo@e8.example.com",
                "permerror",
                None,
            ),
            (
                "bad-ip4-short",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "ip4-dual-cidr",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "permerror",
                None,
            ),
            (
                "ip4-mapped-ip6",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e7.example.com",
                "fail",
                None,
            ),
        ],
    });
}

#[test]
fn spf_ip6_mechanism_syntax() {
    check(&Section {
        name: "IP6 mechanism syntax",
        zone: &[
            (ME, "A 1.2.3.4"),
            ("e1.example.com", "SPF v=spf1 -all ip6"),
            ("e2.example.com", "SPF v=spf1 ip6:::1.1.1.1/0"),
            ("e3.example.com", "SPF v=spf1 ip6:::1.1.1.1/129"),
            ("e4.example.com", "SPF v=spf1 ip6:::1.1.1.1//33"),
            ("e5.example.com", "SPF v=spf1 ip6:Cafe:Babe:8000::/33"),
            ("e6.example.com", "SPF v=spf1 ip6::CAFE::BABE"),
        ],
        tests: &[
            (
                "bare-ip6",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "permerror",
                None,
            ),
            (
                "cidr6-0-ip4",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "neutral",
                None,
            ),
            (
                "cidr6-ip4",
                ME,
                "::FFFF:1.2.3.4",
                "foo@e2.example.com",
                "neutral",
                None,
            ),
            (
                "cidr6-0",
                ME,
                "DEAF:BABE::CAB:FEE",
                "foo@e2.example.com",
                "pass",
                None,
            ),
            (
                "cidr6-129",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "permerror",
                None,
            ),
            (
                "cidr6-bad",
                ME,
                "1.2.3.4",
                "foo@e4.example.com",
                "permerror",
                None,
            ),
            (
                "cidr6-33",
                ME,
                "CAFE:BABE:8000::",
                "foo@e5.example.com",
                "pass",
                None,
            ),
            (
                "cidr6-33-ip4",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "neutral",
                None,
            ),
            (
                "ip6-bad1",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_modifiers() {
    check(&Section {
        name: "Semantics of exp and other modifiers",
        zone: &[
            (ME, "A 1.2.3.4"),
            (
                "e1.example.com",
                "SPF v=spf1 exp=exp1.example.com redirect=e2.example.com",
            ),
            ("e2.example.com", "SPF v=spf1 -all"),
            (
                "e3.example.com",
                "SPF v=spf1 exp=exp1.example.com redirect=e4.example.com",
            ),
            ("e4.example.com", "SPF v=spf1 -all exp=exp2.example.com"),
            ("exp1.example.com", "TXT No-see-um"),
            ("exp2.example.com", "TXT See me."),
            ("exp3.example.com", "TXT Correct!"),
            ("exp4.example.com", "TXT %{l} in implementation"),
            ("e5.example.com", "SPF v=spf1 1up=foo"),
            ("e6.example.com", "SPF v=spf1 =all"),
            (
                "e7.example.com",
                "SPF v=spf1 include:e3.example.com -all exp=exp3.example.com",
            ),
            ("e8.example.com", "SPF v=spf1 -all exp=exp4.example.com"),
            ("e9.example.com", "SPF v=spf1 -all foo=%abc"),
            ("e10.example.com", "SPF v=spf1 redirect=erehwon.example.com"),
            ("e11.example.com", "SPF v=spf1 -all exp=e11msg.example.com"),
            (
                "e11msg.example.com",
                "TXT Answer a fool according to his folly.",
            ),
            (
                "e11msg.example.com",
                "TXT Do not answer a fool according to his folly.",
            ),
            ("e12.example.com", "SPF v=spf1 exp= -all"),
            ("e13.example.com", "SPF v=spf1 exp=e13msg.example.com -all"),
            ("e13msg.example.com", "TXT The %{x}-files."),
            (
                "e14.example.com",
                "SPF v=spf1 exp=e13msg.example.com -all exp=e11msg.example.com",
            ),
            (
                "e15.example.com",
                "SPF v=spf1 redirect=e12.example.com -all redirect=e12.example.com",
            ),
            ("e16.example.com", "SPF v=spf1 exp=-all"),
            ("e17.example.com", "SPF v=spf1 redirect=-all ?all"),
            ("e18.example.com", "SPF v=spf1 ?all redirect="),
            ("e19.example.com", "SPF v=spf1 default=pass"),
            ("e20.example.com", "SPF v=spf1 default=+"),
            ("e21.example.com", "SPF v=spf1 exp=e21msg.example.com -all"),
            ("e21msg.example.com", "TIMEOUT"),
            ("e22.example.com", "SPF v=spf1 exp=mail.example.com -all"),
            (
                "nonascii.example.com",
                "SPF v=spf1 exp=badexp.example.com -all",
            ),
            ("badexp.example.com", "TXT \u{ef}\u{bb}\u{bf}Explanation"),
            (
                "tworecs.example.com",
                "SPF v=spf1 exp=twoexp.example.com -all",
            ),
            ("twoexp.example.com", "TXT one"),
            ("twoexp.example.com", "TXT two"),
            (
                "e23.example.com",
                "SPF v=spf1 a:erehwon.example.com a:foobar.com exp=nxdomain.com -all",
            ),
            (
                "e24.example.com",
                "SPF v=spf1 redirect=testimplicit.example.com",
            ),
            ("e24.example.com", "A 192.0.2.1"),
            ("testimplicit.example.com", "SPF v=spf1 a -all"),
            ("testimplicit.example.com", "A 192.0.2.2"),
        ],
        tests: &[
            (
                "redirect-none",
                ME,
                "1.2.3.4",
                "foo@e10.example.com",
                "permerror",
                None,
            ),
            (
                "redirect-cancels-exp",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "redirect-syntax-error",
                ME,
                "1.2.3.4",
                "foo@e17.example.com",
                "permerror",
                None,
            ),
            (
                "include-ignores-exp",
                ME,
                "1.2.3.4",
                "foo@e7.example.com",
                "fail",
                Some("Correct!"),
            ),
            (
                "redirect-cancels-prior-exp",
                ME,
                "1.2.3.4",
                "foo@e3.example.com",
                "fail",
                Some("See me."),
            ),
            (
                "invalid-modifier",
                ME,
                "1.2.3.4",
                "foo@e5.example.com",
                "permerror",
                None,
            ),
            (
                "empty-modifier-name",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "permerror",
                None,
            ),
            (
                "dorky-sentinel",
                ME,
                "1.2.3.4",
                "Macro Error@e8.example.com",
                "fail",
                Some("Macro Error in implementation"),
            ),
            (
                "exp-multiple-txt",
                ME,
                "1.2.3.4",
                "foo@e11.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "exp-no-txt",
                ME,
                "1.2.3.4",
                "foo@e22.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "exp-dns-error",
                ME,
                "1.2.3.4",
                "foo@e21.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "exp-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e12.example.com",
                "permerror",
                None,
            ),
            (
                "explanation-syntax-error",
                ME,
                "1.2.3.4",
                "foo@e13.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "exp-syntax-error",
                ME,
                "1.2.3.4",
                "foo@e16.example.com",
                "permerror",
                None,
            ),
            (
                "exp-twice",
                ME,
                "1.2.3.4",
                "foo@e14.example.com",
                "permerror",
                None,
            ),
            (
                "redirect-empty-domain",
                ME,
                "1.2.3.4",
                "foo@e18.example.com",
                "permerror",
                None,
            ),
            (
                "redirect-twice",
                ME,
                "1.2.3.4",
                "foo@e15.example.com",
                "permerror",
                None,
            ),
            (
                "unknown-modifier-syntax",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "default-modifier-obsolete",
                ME,
                "1.2.3.4",
                "foo@e19.example.com",
                "neutral",
                None,
            ),
            (
                "default-modifier-obsolete2",
                ME,
                "1.2.3.4",
                "foo@e20.example.com",
                "neutral",
                None,
            ),
            (
                "non-ascii-exp",
                "hosed",
                "1.2.3.4",
                "foobar@nonascii.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "two-exp-records",
                "hosed",
                "1.2.3.4",
                "foobar@tworecs.example.com",
                "fail",
                Some("DEFAULT"),
            ),
            (
                "exp-void",
                ME,
                "1.2.3.4",
                "foo@e23.example.com",
                "fail",
                None,
            ),
            (
                "redirect-implicit",
                "e24.example.com",
                "192.0.2.2",
                "bar@e24.example.com",
                "pass",
                None,
            ),
        ],
    });
}

#[test]
fn spf_macro_expansion_rules() {
    const H: &str = "msgbas2x.cos.example.com";
    check(&Section {
        name: "Macro expansion rules",
        zone: &[
            (
                "example.com.d.spf.example.com",
                "SPF v=spf1 redirect=a.spf.example.com",
            ),
            (
                "a.spf.example.com",
                "SPF v=spf1 include:o.spf.example.com. ~all",
            ),
            ("o.spf.example.com", "SPF v=spf1 ip4:192.168.218.40"),
            ("msgbas2x.cos.example.com", "A 192.168.218.40"),
            ("example.com", "A 192.168.90.76"),
            ("example.com", "SPF v=spf1 redirect=%{d}.d.spf.example.com."),
            ("exp.example.com", "SPF v=spf1 exp=msg.example.com. -all"),
            ("msg.example.com", "TXT This is a test."),
            (
                "e1.example.com",
                "SPF v=spf1 -exists:%(ir).sbl.example.com ?all",
            ),
            (
                "e1e.example.com",
                "SPF v=spf1 exists:foo%(ir).sbl.example.com ?all",
            ),
            (
                "e1t.example.com",
                "SPF v=spf1 exists:foo%.sbl.example.com ?all",
            ),
            (
                "e1a.example.com",
                "SPF v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
            ),
            ("macro%percent  space%20url-space.example.com", "A 1.2.3.4"),
            ("e2.example.com", "SPF v=spf1 -all exp=%{r}.example.com"),
            ("e3.example.com", "SPF v=spf1 -all exp=%{ir}.example.com"),
            (
                "40.218.168.192.example.com",
                "TXT Connections from %{c} not authorized.",
            ),
            (
                "somewhat.long.exp.example.com",
                "SPF v=spf1 -all exp=foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.example.com",
            ),
            (
                "somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.somewhat.long.exp.example.com.example.com",
                "TXT Congratulations!  That was tricky.",
            ),
            ("e4.example.com", "SPF v=spf1 -all exp=e4msg.example.com"),
            (
                "e4msg.example.com",
                "TXT %{c} is queried as %{ir}.%{v}.arpa",
            ),
            ("e5.example.com", "SPF v=spf1 a:%{a}.example.com -all"),
            ("e6.example.com", "SPF v=spf1 -all exp=e6msg.example.com"),
            ("e6msg.example.com", "TXT connect from %{p}"),
            ("mx.example.com", "A 192.168.218.41"),
            ("mx.example.com", "A 192.168.218.42"),
            ("mx.example.com", "AAAA CAFE:BABE::2"),
            ("mx.example.com", "AAAA CAFE:BABE::3"),
            ("40.218.168.192.in-addr.arpa", "PTR mx.example.com"),
            ("41.218.168.192.in-addr.arpa", "PTR mx.example.com"),
            ("42.218.168.192.in-addr.arpa", "PTR mx.example.com"),
            ("42.218.168.192.in-addr.arpa", "PTR mx.e7.example.com"),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.E.B.A.B.E.F.A.C.ip6.arpa",
                "PTR mx.example.com",
            ),
            (
                "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.E.B.A.B.E.F.A.C.ip6.arpa",
                "PTR mx.example.com",
            ),
            ("mx.e7.example.com", "A 192.168.218.42"),
            ("mx.e7.example.com.should.example.com", "A 127.0.0.2"),
            ("mx.example.com.ok.example.com", "A 127.0.0.2"),
            (
                "e7.example.com",
                "SPF v=spf1 exists:%{p}.should.example.com ~exists:%{p}.ok.example.com",
            ),
            ("e8.example.com", "SPF v=spf1 -all exp=msg8.%{D2}"),
            ("msg8.example.com", "TXT http://example.com/why.html?l=%{L}"),
            ("e9.example.com", "SPF v=spf1 a:%{H} -all"),
            (
                "e10.example.com",
                "SPF v=spf1 -include:_spfh.%{d2} ip4:1.2.3.0/24 -all",
            ),
            ("_spfh.example.com", "SPF v=spf1 -a:%{h} +all"),
            (
                "e11.example.com",
                "SPF v=spf1 exists:%{i}.%{l2r-}.user.%{d2}",
            ),
            ("1.2.3.4.gladstone.philip.user.example.com", "A 127.0.0.2"),
            ("e12.example.com", "SPF v=spf1 exists:%{l2r+-}.user.%{d2}"),
            ("bar.foo.user.example.com", "A 127.0.0.2"),
        ],
        tests: &[
            (
                "trailing-dot-domain",
                H,
                "192.168.218.40",
                "test@example.com",
                "pass",
                None,
            ),
            (
                "trailing-dot-exp",
                H,
                "192.168.218.40",
                "test@exp.example.com",
                "fail",
                Some("This is a test."),
            ),
            (
                "exp-only-macro-char",
                H,
                "192.168.218.40",
                "test@e2.example.com",
                "permerror",
                None,
            ),
            (
                "invalid-macro-char",
                H,
                "192.168.218.40",
                "test@e1.example.com",
                "permerror",
                None,
            ),
            (
                "invalid-embedded-macro-char",
                H,
                "192.168.218.40",
                "test@e1e.example.com",
                "permerror",
                None,
            ),
            (
                "invalid-trailing-macro-char",
                H,
                "192.168.218.40",
                "test@e1t.example.com",
                "permerror",
                None,
            ),
            (
                "macro-mania-in-domain",
                ME,
                "1.2.3.4",
                "test@e1a.example.com",
                "pass",
                None,
            ),
            (
                "exp-txt-macro-char",
                H,
                "192.168.218.40",
                "test@e3.example.com",
                "fail",
                Some("Connections from 192.168.218.40 not authorized."),
            ),
            (
                "domain-name-truncation",
                H,
                "192.168.218.40",
                "test@somewhat.long.exp.example.com",
                "fail",
                Some("Congratulations!  That was tricky."),
            ),
            (
                "v-macro-ip4",
                H,
                "192.168.218.40",
                "test@e4.example.com",
                "fail",
                Some("192.168.218.40 is queried as 40.218.168.192.in-addr.arpa"),
            ),
            (
                "v-macro-ip6",
                H,
                "CAFE:BABE::1",
                "test@e4.example.com",
                "fail",
                Some(
                    "cafe:babe::1 is queried as 1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.E.B.A.B.E.F.A.C.ip6.arpa",
                ),
            ),
            (
                "undef-macro",
                H,
                "CAFE:BABE::192.168.218.40",
                "test@e5.example.com",
                "permerror",
                None,
            ),
            (
                "p-macro-ip4-novalid",
                H,
                "192.168.218.40",
                "test@e6.example.com",
                "fail",
                Some("connect from unknown"),
            ),
            (
                "p-macro-ip4-valid",
                H,
                "192.168.218.41",
                "test@e6.example.com",
                "fail",
                Some("connect from mx.example.com"),
            ),
            (
                "p-macro-ip6-novalid",
                H,
                "CAFE:BABE::1",
                "test@e6.example.com",
                "fail",
                Some("connect from unknown"),
            ),
            (
                "p-macro-ip6-valid",
                H,
                "CAFE:BABE::3",
                "test@e6.example.com",
                "fail",
                Some("connect from mx.example.com"),
            ),
            (
                "p-macro-multiple",
                H,
                "192.168.218.42",
                "test@e7.example.com",
                "pass|softfail",
                None,
            ),
            (
                "upper-macro",
                H,
                "192.168.218.42",
                "~jack&jill=up-a_b3.c@e8.example.com",
                "fail",
                Some("http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c"),
            ),
            (
                "hello-macro",
                H,
                "192.168.218.40",
                "test@e9.example.com",
                "pass",
                None,
            ),
            (
                "invalid-hello-macro",
                "JUMPIN' JUPITER",
                "192.168.218.40",
                "test@e9.example.com",
                "fail",
                None,
            ),
            (
                "hello-domain-literal",
                "[192.168.218.40]",
                "192.168.218.40",
                "test@e9.example.com",
                "fail",
                None,
            ),
            (
                "require-valid-helo",
                "OEMCOMPUTER",
                "1.2.3.4",
                "test@e10.example.com",
                "fail",
                None,
            ),
            (
                "macro-reverse-split-on-dash",
                ME,
                "1.2.3.4",
                "philip-gladstone-test@e11.example.com",
                "pass",
                None,
            ),
            (
                "macro-multiple-delimiters",
                ME,
                "1.2.3.4",
                "foo-bar+zip+quux@e12.example.com",
                "pass",
                None,
            ),
        ],
    });
}

#[test]
fn spf_processing_limits() {
    check(&Section {
        name: "Processing limits",
        zone: &[
            (ME, "A 1.2.3.4"),
            (
                "e1.example.com",
                "SPF v=spf1 ip4:1.1.1.1 redirect=e1.example.com",
            ),
            ("e1.example.com", "A 1.2.3.6"),
            ("e2.example.com", "SPF v=spf1 include:e3.example.com"),
            ("e2.example.com", "A 1.2.3.7"),
            ("e3.example.com", "SPF v=spf1 include:e2.example.com"),
            ("e3.example.com", "A 1.2.3.8"),
            ("e4.example.com", "SPF v=spf1 mx"),
            ("e4.example.com", "MX 0 mail.example.com"),
            ("e4.example.com", "MX 1 mail.example.com"),
            ("e4.example.com", "MX 2 mail.example.com"),
            ("e4.example.com", "MX 3 mail.example.com"),
            ("e4.example.com", "MX 4 mail.example.com"),
            ("e4.example.com", "MX 5 mail.example.com"),
            ("e4.example.com", "MX 6 mail.example.com"),
            ("e4.example.com", "MX 7 mail.example.com"),
            ("e4.example.com", "MX 8 mail.example.com"),
            ("e4.example.com", "MX 9 mail.example.com"),
            ("e4.example.com", "MX 10 e4.example.com"),
            ("e4.example.com", "A 1.2.3.5"),
            ("e5.example.com", "SPF v=spf1 ptr"),
            ("e5.example.com", "A 1.2.3.5"),
            ("5.3.2.1.in-addr.arpa", "PTR e1.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e2.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e3.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e4.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e6.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e7.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e8.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e9.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e10.example.com."),
            ("5.3.2.1.in-addr.arpa", "PTR e5.example.com."),
            (
                "e6.example.com",
                "SPF v=spf1 a mx a mx a mx a mx a ptr ip4:1.2.3.4 -all",
            ),
            ("e6.example.com", "A 1.2.3.8"),
            ("e6.example.com", "MX 10 e6.example.com"),
            (
                "e7.example.com",
                "SPF v=spf1 a mx a mx a mx a mx a ptr a ip4:1.2.3.4 -all",
            ),
            ("e7.example.com", "A 1.2.3.20"),
            (
                "e8.example.com",
                "SPF v=spf1 a include:inc.example.com ip4:1.2.3.4 mx -all",
            ),
            ("e8.example.com", "A 1.2.3.4"),
            ("inc.example.com", "SPF v=spf1 a a a a a a a a"),
            ("inc.example.com", "A 1.2.3.10"),
            (
                "e9.example.com",
                "SPF v=spf1 a include:inc.example.com a ip4:1.2.3.4 -all",
            ),
            ("e9.example.com", "A 1.2.3.21"),
            ("e10.example.com", "SPF v=spf1 a -all"),
            ("e10.example.com", "A 1.2.3.1"),
            ("e10.example.com", "A 1.2.3.2"),
            ("e10.example.com", "A 1.2.3.3"),
            ("e10.example.com", "A 1.2.3.4"),
            ("e10.example.com", "A 1.2.3.5"),
            ("e10.example.com", "A 1.2.3.6"),
            ("e10.example.com", "A 1.2.3.7"),
            ("e10.example.com", "A 1.2.3.8"),
            ("e10.example.com", "A 1.2.3.9"),
            ("e10.example.com", "A 1.2.3.10"),
            ("e10.example.com", "A 1.2.3.11"),
            ("e10.example.com", "A 1.2.3.12"),
            (
                "e11.example.com",
                "TXT v=spf1 a:err.example.com a:err1.example.com a:err2.example.com ?all",
            ),
            (
                "e12.example.com",
                "TXT v=spf1 a:err.example.com a:err1.example.com ?all",
            ),
        ],
        tests: &[
            (
                "redirect-loop",
                ME,
                "1.2.3.4",
                "foo@e1.example.com",
                "permerror",
                None,
            ),
            (
                "include-loop",
                ME,
                "1.2.3.4",
                "foo@e2.example.com",
                "permerror",
                None,
            ),
            (
                "mx-limit",
                ME,
                "1.2.3.5",
                "foo@e4.example.com",
                "permerror",
                None,
            ),
            (
                "ptr-limit",
                ME,
                "1.2.3.5",
                "foo@e5.example.com",
                "neutral|pass",
                None,
            ),
            (
                "false-a-limit",
                ME,
                "1.2.3.12",
                "foo@e10.example.com",
                "pass",
                None,
            ),
            (
                "mech-at-limit",
                ME,
                "1.2.3.4",
                "foo@e6.example.com",
                "pass",
                None,
            ),
            (
                "mech-over-limit",
                ME,
                "1.2.3.4",
                "foo@e7.example.com",
                "permerror",
                None,
            ),
            (
                "include-at-limit",
                ME,
                "1.2.3.4",
                "foo@e8.example.com",
                "pass",
                None,
            ),
            (
                "include-over-limit",
                ME,
                "1.2.3.4",
                "foo@e9.example.com",
                "permerror",
                None,
            ),
            (
                "void-at-limit",
                ME,
                "1.2.3.4",
                "foo@e12.example.com",
                "neutral",
                None,
            ),
            (
                "void-over-limit",
                ME,
                "1.2.3.4",
                "foo@e11.example.com",
                "permerror",
                None,
            ),
        ],
    });
}

#[test]
fn spf_implementation_bugs() {
    check(&Section {
        name: "Test cases from implementation bugs",
        zone: &[
            ("example.org", "SPF v=spf1 mx redirect=_spf.example.com"),
            ("example.org", "MX 10 smtp.example.org"),
            ("example.org", "MX 10 smtp1.example.com"),
            ("smtp.example.org", "A 198.51.100.2"),
            ("smtp.example.org", "AAAA 2001:db8:ff0:100::3"),
            ("smtp1.example.com", "A 192.0.2.26"),
            ("smtp1.example.com", "AAAA 2001:db8:ff0:200::2"),
            (
                "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.F.F.0.8.B.D.0.1.0.0.2.ip6.arpa",
                "PTR smtp6-v.fe.example.org",
            ),
            ("smtp6-v.fe.example.org", "AAAA 2001:db8:ff0:100::2"),
            (
                "_spf.example.com",
                "SPF v=spf1 ptr:fe.example.org ptr:sgp.example.com exp=_expspf.example.org -all",
            ),
            (
                "_expspf.example.org",
                "TXT Sender domain not allowed from this host. Please see http://www.openspf.org/Why?s=mfrom&id=%{S}&ip=%{C}&r=%{R}",
            ),
        ],
        tests: &[(
            "bytes-bug",
            "example.org",
            "2001:db8:ff0:100::2",
            "test@example.org",
            "pass",
            None,
        )],
    });
}
