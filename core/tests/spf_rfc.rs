//! RFC 7208 by its own examples: the Appendix A zone and policies, the section 7.4 macro
//! expansions, and the API's promises (batched queries, outcome fields, exp only on fail, bounds).

use core::net::IpAddr;
use petrel_core::dns::{Answer, Record, RecordType};
use petrel_core::spf::macros::{MacroString, MacroVars};
use petrel_core::spf::record::{Mechanism, Qualifier, SpfRecord};
use petrel_core::spf::{MAX_EXPLANATION, SpfCheck, SpfLimits, SpfOutcome, SpfResult};
use std::collections::HashMap;

/// A fake resolver: (name, type) to answer; other types of a known name are NoData, unknown
/// names NXDOMAIN.
#[derive(Default, Clone)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<Record>>,
    fixed: HashMap<(String, RecordType), Answer>,
}

impl Zone {
    fn add(&mut self, name: &str, record: Record) -> &mut Self {
        let rtype = match &record {
            Record::A(_) => RecordType::A,
            Record::Aaaa(_) => RecordType::Aaaa,
            Record::Mx { .. } => RecordType::Mx,
            Record::Txt(_) => RecordType::Txt,
            Record::Ptr(_) => RecordType::Ptr,
            Record::Cname(_) => RecordType::Cname,
        };
        self.records
            .entry((name.to_string(), rtype))
            .or_default()
            .push(record);
        self
    }
    fn a(&mut self, name: &str, ip: &str) -> &mut Self {
        self.add(name, Record::A(ip.parse().unwrap()))
    }
    fn mx(&mut self, name: &str, preference: u16, exchange: &str) -> &mut Self {
        self.add(
            name,
            Record::Mx {
                preference,
                exchange: exchange.to_string(),
            },
        )
    }
    fn ptr(&mut self, name: &str, target: &str) -> &mut Self {
        self.add(name, Record::Ptr(target.to_string()))
    }
    fn txt(&mut self, name: &str, text: &str) -> &mut Self {
        self.add(name, Record::Txt(text.as_bytes().to_vec()))
    }
    fn resolve(&self, name: &str, rtype: RecordType) -> Answer {
        if let Some(answer) = self.fixed.get(&(name.to_string(), rtype)) {
            return answer.clone();
        }
        match self.records.get(&(name.to_string(), rtype)) {
            Some(records) => Answer::Records {
                records: records.clone(),
                ttl: 600,
                canonical_name: name.to_string(),
            },
            None if self.records.keys().any(|(n, _)| n == name) => Answer::NoData,
            None => Answer::NxDomain,
        }
    }
}

/// Drives a check to its outcome; returns it with every query asked, round by round.
fn drive(zone: &Zone, ip: &str, sender: &str) -> (SpfOutcome, Vec<Vec<(String, RecordType)>>) {
    let domain = sender.rsplit('@').next().unwrap();
    let mut check = SpfCheck::new(
        ip.parse().unwrap(),
        domain,
        sender,
        "helo.example.net",
        "mx.receiver.example",
        1_000_000_000,
        SpfLimits::default(),
    );
    let mut rounds = Vec::new();
    while check.outcome().is_none() {
        assert!(rounds.len() < 100, "no outcome after 100 rounds");
        let queries = check.queries();
        assert!(!queries.is_empty());
        for (name, rtype) in &queries {
            check.answer(name, *rtype, &zone.resolve(name, *rtype));
        }
        rounds.push(queries);
    }
    assert!(check.queries().is_empty());
    (check.outcome().unwrap().clone(), rounds)
}

fn result(zone: &Zone, ip: &str, sender: &str) -> SpfResult {
    drive(zone, ip, sender).0.result
}

/// The zone of RFC 7208 appendix A.1, with `record` as example.com's SPF record.
fn appendix_a(record: &str) -> Zone {
    let mut z = Zone::default();
    z.mx("example.com", 10, "mail-a.example.com")
        .mx("example.com", 20, "mail-b.example.com")
        .a("example.com", "192.0.2.10")
        .a("example.com", "192.0.2.11")
        .a("amy.example.com", "192.0.2.65")
        .a("bob.example.com", "192.0.2.66")
        .a("mail-a.example.com", "192.0.2.129")
        .a("mail-b.example.com", "192.0.2.130")
        .add("www.example.com", Record::Cname("example.com".into()))
        .mx("example.org", 10, "mail-c.example.org")
        .a("mail-c.example.org", "192.0.2.140")
        .ptr("10.2.0.192.in-addr.arpa", "example.com")
        .ptr("11.2.0.192.in-addr.arpa", "example.com")
        .ptr("65.2.0.192.in-addr.arpa", "amy.example.com")
        .ptr("66.2.0.192.in-addr.arpa", "bob.example.com")
        .ptr("129.2.0.192.in-addr.arpa", "mail-a.example.com")
        .ptr("130.2.0.192.in-addr.arpa", "mail-b.example.com")
        .ptr("140.2.0.192.in-addr.arpa", "mail-c.example.org")
        .ptr("4.0.0.10.in-addr.arpa", "bob.example.com")
        .txt("example.com", record);
    z
}

/// Every address the examples mention, and a few they do not.
const HOSTS: &[&str] = &[
    "192.0.2.10",
    "192.0.2.11",
    "192.0.2.65",
    "192.0.2.66",
    "192.0.2.128",
    "192.0.2.129",
    "192.0.2.130",
    "192.0.2.131",
    "192.0.2.132",
    "192.0.2.140",
    "192.0.2.143",
    "192.0.2.144",
    "10.0.0.4",
    "198.51.100.1",
];

/// Evaluates `record` for every host; the ones that pass must be exactly `passing`, the others
/// must get `others`.
fn assert_passing(record: &str, passing: &[&str], others: SpfResult) {
    let zone = appendix_a(record);
    for host in HOSTS {
        let got = result(&zone, host, "user@example.com");
        let want = if passing.contains(host) {
            SpfResult::Pass
        } else {
            others
        };
        assert_eq!(got, want, "{record:?} for {host}");
    }
}

#[test]
fn spf_a1_simple_examples() {
    assert_passing("v=spf1 +all", HOSTS, SpfResult::Fail);
    assert_passing(
        "v=spf1 a -all",
        &["192.0.2.10", "192.0.2.11"],
        SpfResult::Fail,
    );
    assert_passing("v=spf1 a:example.org -all", &[], SpfResult::Fail);
    assert_passing(
        "v=spf1 mx -all",
        &["192.0.2.129", "192.0.2.130"],
        SpfResult::Fail,
    );
    assert_passing(
        "v=spf1 mx:example.org -all",
        &["192.0.2.140"],
        SpfResult::Fail,
    );
    assert_passing(
        "v=spf1 mx mx:example.org -all",
        &["192.0.2.129", "192.0.2.130", "192.0.2.140"],
        SpfResult::Fail,
    );
    assert_passing(
        "v=spf1 mx/30 mx:example.org/30 -all",
        &[
            "192.0.2.128",
            "192.0.2.129",
            "192.0.2.130",
            "192.0.2.131",
            "192.0.2.140",
            "192.0.2.143",
        ],
        SpfResult::Fail,
    );
    // 10.0.0.4 claims bob.example.com, whose address is 192.0.2.66: not validated.
    assert_passing(
        "v=spf1 ptr -all",
        &[
            "192.0.2.10",
            "192.0.2.11",
            "192.0.2.65",
            "192.0.2.66",
            "192.0.2.129",
            "192.0.2.130",
        ],
        SpfResult::Fail,
    );
    assert_passing(
        "v=spf1 ip4:192.0.2.128/28 -all",
        &[
            "192.0.2.128",
            "192.0.2.129",
            "192.0.2.130",
            "192.0.2.131",
            "192.0.2.132",
            "192.0.2.140",
            "192.0.2.143",
        ],
        SpfResult::Fail,
    );
    // No "-all": the default result is neutral.
    assert_passing(
        "v=spf1 a",
        &["192.0.2.10", "192.0.2.11"],
        SpfResult::Neutral,
    );
}

#[test]
fn spf_a2_multiple_domains() {
    let mut zone = appendix_a("v=spf1 mx -all");
    zone.txt(
        "example.org",
        "v=spf1 include:example.com include:example.net -all",
    )
    .txt("example.net", "v=spf1 ip4:198.51.100.0/24 -all")
    .txt("la.example.org", "v=spf1 redirect=example.org")
    .txt("ny.example.org", "v=spf1 redirect=example.org");
    for sender in ["a@example.org", "b@la.example.org", "c@ny.example.org"] {
        assert_eq!(result(&zone, "192.0.2.129", sender), SpfResult::Pass);
        assert_eq!(result(&zone, "198.51.100.1", sender), SpfResult::Pass);
        assert_eq!(result(&zone, "192.0.2.10", sender), SpfResult::Fail);
    }
    let (outcome, _) = drive(&zone, "198.51.100.1", "b@la.example.org");
    assert_eq!(outcome.domain, "la.example.org");
    assert_eq!(outcome.mechanism.as_deref(), Some("include:example.net"));
}

#[test]
fn spf_a3_dnsbl_style() {
    let mut zone = appendix_a(
        "v=spf1 mx/26 exists:%{l}.mobile-users._spf.%{d} \
         exists:%{ir}.%{l}.remote-users._spf.%{d} -all",
    );
    zone.a("mary.mobile-users._spf.example.com", "127.0.0.2")
        .a("fred.mobile-users._spf.example.com", "127.0.0.2")
        .a(
            "15.15.168.192.joel.remote-users._spf.example.com",
            "127.0.0.2",
        )
        .a(
            "16.15.168.192.joel.remote-users._spf.example.com",
            "127.0.0.2",
        );
    assert_eq!(
        result(&zone, "198.51.100.1", "mary@example.com"),
        SpfResult::Pass
    );
    assert_eq!(
        result(&zone, "198.51.100.1", "fred@example.com"),
        SpfResult::Pass
    );
    assert_eq!(
        result(&zone, "192.168.15.15", "joel@example.com"),
        SpfResult::Pass
    );
    assert_eq!(
        result(&zone, "192.168.15.16", "joel@example.com"),
        SpfResult::Pass
    );
    assert_eq!(
        result(&zone, "192.168.15.17", "joel@example.com"),
        SpfResult::Fail
    );
    // mx/26: 192.0.2.128 to 192.0.2.191 for anybody.
    assert_eq!(
        result(&zone, "192.0.2.150", "joel@example.com"),
        SpfResult::Pass
    );
    assert_eq!(
        result(&zone, "192.0.2.192", "joel@example.com"),
        SpfResult::Fail
    );
}

#[test]
fn spf_a4_multiple_requirements() {
    let mut zone = appendix_a("v=spf1 -include:ip4._spf.%{d} -include:ptr._spf.%{d} +all");
    zone.txt("ip4._spf.example.com", "v=spf1 -ip4:192.0.2.0/24 +all")
        .txt("ptr._spf.example.com", "v=spf1 -ptr:example.com +all");
    // Inside 192.0.2.0/24 and a validated name in example.com.
    for host in ["192.0.2.65", "192.0.2.129", "192.0.2.10"] {
        assert_eq!(
            result(&zone, host, "u@example.com"),
            SpfResult::Pass,
            "{host}"
        );
    }
    // Inside the network, PTR elsewhere; or outside the network.
    for host in ["192.0.2.140", "10.0.0.4", "198.51.100.1"] {
        assert_eq!(
            result(&zone, host, "u@example.com"),
            SpfResult::Fail,
            "{host}"
        );
    }
}

fn vars(ip: &str) -> MacroVars {
    MacroVars {
        sender: "strong-bad@email.example.com".into(),
        local: "strong-bad".into(),
        sender_domain: "email.example.com".into(),
        domain: "email.example.com".into(),
        ip: ip.parse().unwrap(),
        helo: "mx.example.org".into(),
        receiver: "receiver.example.net".into(),
        now_unix: 1_234_567_890,
        validated: None,
    }
}

fn expand(spec: &str, vars: &MacroVars) -> String {
    MacroString::parse(spec, true)
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
        .expand(vars)
        .unwrap()
}

#[test]
fn spf_section_7_4_macro_examples() {
    let v4 = vars("192.0.2.3");
    let cases = [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        (
            "%{ir}.%{v}._spf.%{d2}",
            "3.2.0.192.in-addr._spf.example.com",
        ),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        (
            "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
            "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
        ),
        (
            "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
            "3.2.0.192.in-addr.strong.lp._spf.example.com",
        ),
        (
            "%{d2}.trusted-domains.example.net",
            "example.com.trusted-domains.example.net",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(expand(spec, &v4), want, "{spec}");
    }
    let v6 = vars("2001:db8::cb01");
    assert_eq!(
        expand("%{ir}.%{v}._spf.%{d2}", &v6),
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    );
}

#[test]
fn spf_section_7_macro_details() {
    let v = vars("192.0.2.3");
    // Escapes (7.1): %% %_ %-.
    assert_eq!(expand("a%%b%_c%-d", &v), "a%b c%20d");
    // Uppercase letters are URL-encoded (7.3); unreserved characters stay.
    let mut odd = vars("192.0.2.3");
    odd.local = "~jack&jill=up-a_b3.c".into();
    assert_eq!(expand("%{L}", &odd), "~jack%26jill%3Dup-a_b3.c");
    assert_eq!(expand("%{l}", &odd), "~jack&jill=up-a_b3.c");
    // c, r, t, v, h and p.
    assert_eq!(expand("%{c}", &vars("2001:db8::cb01")), "2001:db8::cb01");
    assert_eq!(
        expand("%{r} %{t} %{v} %{h}", &v),
        "receiver.example.net 1234567890 in-addr mx.example.org"
    );
    assert_eq!(expand("%{p}", &v), "unknown");
    // Digits beyond the number of parts keep them all; several delimiters split together.
    assert_eq!(expand("%{d99}", &v), "email.example.com");
    odd.local = "foo-bar+zip+quux".into();
    assert_eq!(expand("%{l2r+-}", &odd), "bar.foo");
    // Syntax errors.
    for bad in ["%", "%x", "%{", "%{x}", "%{d0}", "%{d2q}", "%(d)", "%{}"] {
        assert!(MacroString::parse(bad, true).is_err(), "{bad}");
    }
    // c, r and t only in explanations.
    for letter in ["c", "r", "t"] {
        let spec = format!("%{{{letter}}}.example.com");
        assert!(MacroString::parse(&spec, true).is_ok());
        assert!(MacroString::parse_domain_spec(&spec).is_err(), "{spec}");
    }
    // Spaces only in explanations.
    assert!(MacroString::parse("a b", true).is_ok());
    assert!(MacroString::parse("a b", false).is_err());
}

#[test]
fn spf_macro_expansion_is_bounded() {
    let mut v = vars("192.0.2.3");
    v.local = "x".repeat(1000);
    let bomb = "%{L}".repeat(100);
    let spec = MacroString::parse(&bomb, true).unwrap();
    assert!(spec.expand(&v).is_err());
}

#[test]
fn spf_record_parser() {
    let r = SpfRecord::parse(
        "v=spf1 +a mx/24//64 -ptr:%{d} ~ip4:192.0.2.0/24 ?ip6:2001:db8::/32 \
         exists:%{i}.bl.example include:_spf.example.net -all \
         redirect=other.example exp=why.example x-foo=bar",
    )
    .unwrap();
    let kinds: Vec<(Qualifier, &str)> = r
        .directives
        .iter()
        .map(|d| (d.qualifier, d.text.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Qualifier::Pass, "+a"),
            (Qualifier::Pass, "mx/24//64"),
            (Qualifier::Fail, "-ptr:%{d}"),
            (Qualifier::SoftFail, "~ip4:192.0.2.0/24"),
            (Qualifier::Neutral, "?ip6:2001:db8::/32"),
            (Qualifier::Pass, "exists:%{i}.bl.example"),
            (Qualifier::Pass, "include:_spf.example.net"),
            (Qualifier::Fail, "-all"),
        ]
    );
    assert!(matches!(
        r.directives[1].mechanism,
        Mechanism::Mx {
            domain: None,
            cidr4: 24,
            cidr6: 64
        }
    ));
    assert_eq!(r.redirect.as_ref().unwrap().as_str(), "other.example");
    assert_eq!(r.explanation.as_ref().unwrap().as_str(), "why.example");
    for bad in [
        "v=spf1 a/33",
        "v=spf1 a//129",
        "v=spf1 ip4:1.2.3.4/01",
        "v=spf1 ip4:01.2.3.4",
        "v=spf1 foo",
        "v=spf1 -",
        "v=spf1 include",
        "v=spf1 exp=a.example exp=b.example",
        "v=spf1 a:example.123",
        "v=spf1\ta",
        "v=spf2 a",
    ] {
        assert!(SpfRecord::parse(bad).is_err(), "{bad:?}");
    }
    assert!(SpfRecord::parse("v=spf1").unwrap().directives.is_empty());
    assert!(SpfRecord::parse("V=SPF1   A   ").is_ok());
}

#[test]
fn spf_results_display_rfc_words() {
    let words: Vec<String> = [
        SpfResult::None,
        SpfResult::Neutral,
        SpfResult::Pass,
        SpfResult::Fail,
        SpfResult::SoftFail,
        SpfResult::TempError,
        SpfResult::PermError,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        words,
        [
            "none",
            "neutral",
            "pass",
            "fail",
            "softfail",
            "temperror",
            "permerror"
        ]
    );
}

#[test]
fn spf_mx_host_addresses_are_asked_together() {
    let zone = appendix_a("v=spf1 mx -all");
    let (outcome, rounds) = drive(&zone, "192.0.2.130", "u@example.com");
    assert_eq!(outcome.result, SpfResult::Pass);
    assert_eq!(outcome.mechanism.as_deref(), Some("mx"));
    assert_eq!(
        rounds,
        [
            vec![("example.com".to_string(), RecordType::Txt)],
            vec![("example.com".to_string(), RecordType::Mx)],
            vec![
                ("mail-a.example.com".to_string(), RecordType::A),
                ("mail-b.example.com".to_string(), RecordType::A),
            ],
        ]
    );
}

#[test]
fn spf_ipv6_client_asks_aaaa_and_mapped_ipv4_asks_a() {
    let mut zone = Zone::default();
    zone.txt("example.com", "v=spf1 a -all")
        .add("example.com", Record::Aaaa("2001:db8::1".parse().unwrap()))
        .a("example.com", "192.0.2.1");
    let (outcome, rounds) = drive(&zone, "2001:db8::1", "u@example.com");
    assert_eq!(outcome.result, SpfResult::Pass);
    assert_eq!(rounds[1], [("example.com".to_string(), RecordType::Aaaa)]);
    let (outcome, rounds) = drive(&zone, "::ffff:192.0.2.1", "u@example.com");
    assert_eq!(outcome.result, SpfResult::Pass);
    assert_eq!(rounds[1], [("example.com".to_string(), RecordType::A)]);
}

#[test]
fn spf_explanation_only_on_fail_and_bounded() {
    let mut zone = Zone::default();
    zone.txt("soft.example", "v=spf1 ~all exp=why.example")
        .txt("hard.example", "v=spf1 -all exp=why.example")
        .txt(
            "why.example",
            &format!("%{{s}} {}", "is not welcome ".repeat(60)),
        );
    let (outcome, rounds) = drive(&zone, "192.0.2.1", "u@soft.example");
    assert_eq!(outcome.result, SpfResult::SoftFail);
    assert_eq!(outcome.explanation, None);
    assert!(rounds.iter().flatten().all(|(n, _)| n != "why.example"));
    let (outcome, _) = drive(&zone, "192.0.2.1", "u@hard.example");
    assert_eq!(outcome.result, SpfResult::Fail);
    assert_eq!(outcome.mechanism.as_deref(), Some("-all"));
    let explanation = outcome.explanation.unwrap();
    assert!(explanation.starts_with("u@hard.example is not welcome"));
    assert_eq!(explanation.len(), MAX_EXPLANATION);
}

#[test]
fn spf_temporary_failures_are_temperror_with_a_problem() {
    let mut zone = Zone::default();
    zone.fixed.insert(
        ("example.com".into(), RecordType::Txt),
        Answer::TempFail("SERVFAIL".into()),
    );
    let (outcome, _) = drive(&zone, "192.0.2.1", "u@example.com");
    assert_eq!(outcome.result, SpfResult::TempError);
    assert!(outcome.problem.unwrap().contains("SERVFAIL"));

    let mut zone = Zone::default();
    zone.txt("example.com", "v=spf1 mx -all").fixed.insert(
        ("example.com".into(), RecordType::Mx),
        Answer::TempFail("timeout".into()),
    );
    assert_eq!(
        result(&zone, "192.0.2.1", "u@example.com"),
        SpfResult::TempError
    );

    // A PTR failure is not an error: the mechanism just does not match (5.5).
    let mut zone = Zone::default();
    zone.txt("example.com", "v=spf1 ptr ?all").fixed.insert(
        ("1.2.0.192.in-addr.arpa".into(), RecordType::Ptr),
        Answer::TempFail("timeout".into()),
    );
    assert_eq!(
        result(&zone, "192.0.2.1", "u@example.com"),
        SpfResult::Neutral
    );
}

#[test]
fn spf_limits_come_from_spflimits() {
    let mut zone = Zone::default();
    zone.txt(
        "example.com",
        "v=spf1 a:x1.example a:x2.example a:x3.example ?all",
    );
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let run = |limits: SpfLimits| {
        let mut check = SpfCheck::new(ip, "example.com", "u@example.com", "h", "r", 0, limits);
        while check.outcome().is_none() {
            for (n, t) in check.queries() {
                check.answer(&n, t, &zone.resolve(&n, t));
            }
        }
        check.outcome().unwrap().clone()
    };
    let outcome = run(SpfLimits::default());
    assert_eq!(outcome.result, SpfResult::PermError);
    assert!(outcome.problem.unwrap().contains("void"));
    let generous = SpfLimits {
        max_void_lookups: 3,
        ..SpfLimits::default()
    };
    assert_eq!(run(generous).result, SpfResult::Neutral);
    let strict = SpfLimits {
        max_void_lookups: 5,
        max_dns_mechanisms: 2,
        ..SpfLimits::default()
    };
    let outcome = run(strict);
    assert_eq!(outcome.result, SpfResult::PermError);
    assert!(outcome.problem.unwrap().contains("DNS-querying terms"));
    let short = SpfLimits {
        max_record_len: 20,
        ..SpfLimits::default()
    };
    assert_eq!(run(short).result, SpfResult::PermError);
}

#[test]
fn spf_initial_domain_checks_and_stray_answers() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for domain in ["", "localhost", "a..example", "[192.0.2.1]", "example.123"] {
        let check = SpfCheck::new(ip, domain, "u@x", "h", "r", 0, SpfLimits::default());
        assert_eq!(
            check.outcome().unwrap().result,
            SpfResult::None,
            "{domain:?}"
        );
        assert!(check.queries().is_empty());
    }
    let mut check = SpfCheck::new(ip, "Example.COM.", "", "h", "r", 0, SpfLimits::default());
    assert_eq!(
        check.queries(),
        [("example.com".to_string(), RecordType::Txt)]
    );
    // An answer nobody asked for changes nothing.
    check.answer("other.example", RecordType::Txt, &Answer::NxDomain);
    assert!(check.outcome().is_none());
    // Names compare without case or trailing dot.
    let record = Answer::Records {
        records: vec![Record::Txt(b"v=spf1 -all exp=e.example.com".to_vec())],
        ttl: 1,
        canonical_name: "example.com".into(),
    };
    check.answer("EXAMPLE.com.", RecordType::Txt, &record);
    assert_eq!(
        check.queries(),
        [("e.example.com".to_string(), RecordType::Txt)]
    );
    let exp = Answer::Records {
        records: vec![Record::Txt(b"%{s} may not send".to_vec())],
        ttl: 1,
        canonical_name: "e.example.com".into(),
    };
    check.answer("e.example.com", RecordType::Txt, &exp);
    let outcome = check.outcome().unwrap();
    assert_eq!(outcome.result, SpfResult::Fail);
    // An empty sender is postmaster@<domain>.
    assert_eq!(
        outcome.explanation.as_deref(),
        Some("postmaster@example.com may not send")
    );
}
