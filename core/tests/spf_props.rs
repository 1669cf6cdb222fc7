//! Property tests: no record text panics the parser or the evaluator, and whatever DNS answers
//! (loops, TempFail, huge MX and PTR sets, garbage), a check ends with an outcome after a
//! bounded number of lookups, never asking the same question twice.

use core::net::IpAddr;
use petrel_core::dns::{Answer, Record, RecordType};
use petrel_core::spf::record::SpfRecord;
use petrel_core::spf::{MAX_EXPLANATION, SpfCheck, SpfLimits, SpfOutcome, SpfResult};
use proptest::prelude::*;
use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// With the default limits: TXT 1 + 10 + 1 (exp), MX 10, addresses 10 MX terms x 10 hosts plus
/// 10 validated PTR names, PTR 1: 133.
const MAX_LOOKUPS: usize = 133;

const POOL: &[&str] = &[
    "v=spf1 include:%{d} -all",
    "v=spf1 redirect=%{d}",
    "v=spf1 include:a.%{d} include:b.%{d} ~all",
    "v=spf1 mx a ptr exists:%{i}.%{d} include:x.%{d} -all",
    "v=spf1 mx:%{d} mx:m.%{d} mx:n.%{d} a/24//64 ?all exp=e.%{d}",
    "v=spf1 exists:%{p}.%{d} -all exp=%{d}",
    "v=spf1 ptr:%{d} ptr -all exp=why.%{d2}",
    "%{s} from %{p} (%{c}) rejected by %{r} at %{t} %{L} %{S}",
    "v=spf1 a:x%{l}.%{d} a:y%{l}.%{d} a:z%{l}.%{d} a:w%{l}.%{d} -all",
    "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all",
    "v=spf1 mx mx mx mx mx mx mx mx mx mx mx -all",
    "v=spf1 -all exp=%{S}%{S}%{S}%{S}%{S}%{S}%{S}%{S}.%{d}",
    "v=spf1 include:%{o} redirect=%{o}",
    "v=spf1 a:%{d2} ~all",
    "v=spf1 mx:a.%{d} mx:b.%{d} mx:c.%{d} mx:d.%{d} mx:e.%{d} mx:f.%{d} mx:g.%{d} mx:h.%{d} -all",
];

fn hash(seed: u64, name: &str, rtype: RecordType) -> u64 {
    let mut h = DefaultHasher::new();
    (seed, name, format!("{rtype:?}")).hash(&mut h);
    h.finish()
}

fn records(records: Vec<Record>, name: &str) -> Answer {
    if records.is_empty() {
        return Answer::NoData;
    }
    Answer::Records {
        records,
        ttl: 60,
        canonical_name: name.to_string(),
    }
}

/// A hostile resolver: the answer to each question is a pure function of the seed and question.
fn hostile(seed: u64, ip: IpAddr, extra: &str, name: &str, rtype: RecordType) -> Answer {
    let h = hash(seed, name, rtype);
    // The seed also sets how often answers are failures: from one in three to almost never.
    let spread = [3, 9, 27, 1000][(seed % 4) as usize];
    match h % spread {
        0 => return Answer::TempFail("servfail".into()),
        1 => return Answer::NxDomain,
        2 => return Answer::NoData,
        3 if h % 27 == 3 => return Answer::PermFail("formerr".into()),
        _ => {}
    }
    // Mostly within the MX and PTR limits of 10, sometimes beyond.
    let n = if h.is_multiple_of(7) {
        11 + ((h >> 8) % 5) as usize
    } else {
        ((h >> 8) % 11) as usize
    };
    match rtype {
        RecordType::Txt => {
            let mut txt = vec![Record::Txt(POOL[(h >> 16) as usize % POOL.len()].into())];
            if h.is_multiple_of(11) {
                txt.push(Record::Txt(extra.as_bytes().to_vec()));
            } else if h.is_multiple_of(13) {
                txt = vec![Record::Txt(extra.as_bytes().to_vec())];
            } else if h.is_multiple_of(17) {
                txt.push(Record::Txt(b"\xff\xfe not spf".to_vec()));
            }
            records(txt, name)
        }
        RecordType::A => records(
            (0..n)
                .map(|k| match ip {
                    IpAddr::V4(v4) if k == 3 && h.is_multiple_of(5) => Record::A(v4),
                    _ => Record::A([198, 51, 100, k as u8].into()),
                })
                .collect(),
            name,
        ),
        RecordType::Aaaa => records(
            (0..n)
                .map(|k| match ip {
                    IpAddr::V6(v6) if k == 3 && h.is_multiple_of(5) => Record::Aaaa(v6),
                    _ => Record::Aaaa(format!("2001:db8:ffff::{k}").parse().unwrap()),
                })
                .collect(),
            name,
        ),
        RecordType::Mx => records(
            (0..n)
                .map(|k| Record::Mx {
                    preference: k as u16,
                    exchange: if k == 5 {
                        ".".into()
                    } else {
                        format!("mx{k}.{name}")
                    },
                })
                .collect(),
            name,
        ),
        RecordType::Ptr => records(
            (0..n)
                .map(|k| Record::Ptr(format!("host{k}.example.com")))
                .collect(),
            name,
        ),
        RecordType::Cname => Answer::NoData,
    }
}

/// Drives a check against `resolve`, asserting the bounds; returns the outcome.
fn drive(
    ip: IpAddr,
    domain: &str,
    sender: &str,
    resolve: impl Fn(&str, RecordType) -> Answer,
) -> SpfOutcome {
    drive_counting(ip, domain, sender, resolve).0
}

/// [`drive`], also returning how many lookups were made.
fn drive_counting(
    ip: IpAddr,
    domain: &str,
    sender: &str,
    resolve: impl Fn(&str, RecordType) -> Answer,
) -> (SpfOutcome, usize) {
    let mut check = SpfCheck::new(
        ip,
        domain,
        sender,
        "helo.example.org",
        "mx.example.net",
        1_700_000_000,
        SpfLimits::default(),
    );
    let mut asked = HashSet::new();
    while check.outcome().is_none() {
        let queries = check.queries();
        assert!(!queries.is_empty(), "undecided with nothing to ask");
        for (name, rtype) in queries {
            assert!(
                asked.insert((name.clone(), rtype)),
                "asked twice: {name} {rtype:?}"
            );
            assert!(
                asked.len() <= MAX_LOOKUPS,
                "more than {MAX_LOOKUPS} lookups"
            );
            check.answer(&name, rtype, &resolve(&name, rtype));
        }
    }
    let outcome = check.outcome().unwrap().clone();
    let txt = asked.iter().filter(|(_, t)| *t == RecordType::Txt).count();
    let mx = asked.iter().filter(|(_, t)| *t == RecordType::Mx).count();
    let ptr = asked.iter().filter(|(_, t)| *t == RecordType::Ptr).count();
    assert!(txt <= 12, "{txt} TXT lookups");
    assert!(mx <= 10, "{mx} MX lookups");
    assert!(ptr <= 1, "{ptr} PTR lookups");
    if let Some(e) = &outcome.explanation {
        assert!(e.len() <= MAX_EXPLANATION);
        assert_eq!(outcome.result, SpfResult::Fail);
    }
    assert_eq!(
        outcome.problem.is_some(),
        matches!(outcome.result, SpfResult::TempError | SpfResult::PermError)
    );
    (outcome, asked.len())
}

fn ip_strategy() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(core::net::Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

/// Record-like text: SPF vocabulary, macro syntax, CIDRs and stray bytes.
fn spfish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("v=spf1 ".to_string()),
        Just(" ".to_string()),
        Just("a".to_string()),
        Just("mx".to_string()),
        Just("ptr".to_string()),
        Just("all".to_string()),
        Just("ip4:".to_string()),
        Just("ip6:".to_string()),
        Just("include:".to_string()),
        Just("exists:".to_string()),
        Just("redirect=".to_string()),
        Just("exp=".to_string()),
        Just("%{".to_string()),
        Just("}".to_string()),
        Just("%%".to_string()),
        Just("%{d}".to_string()),
        Just("%{ir}".to_string()),
        Just("%{l99r+-}".to_string()),
        Just(".example.com".to_string()),
        Just("/".to_string()),
        Just("//".to_string()),
        Just(":".to_string()),
        Just("-".to_string()),
        Just("~".to_string()),
        Just("?".to_string()),
        Just("+".to_string()),
        Just("=".to_string()),
        "[0-9]{1,4}".prop_map(|s| s),
        "[a-zA-Z0-9.:]{1,12}".prop_map(|s| s),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn spf_parser_never_panics_on_any_text(text in any::<String>()) {
        let _ = SpfRecord::parse(&text);
        let _ = SpfRecord::parse(&format!("v=spf1 {text}"));
    }

    #[test]
    fn spf_parser_never_panics_on_spf_like_text(text in spfish()) {
        let _ = SpfRecord::parse(&text);
        let _ = SpfRecord::parse(&format!("v=spf1 {text}"));
    }

    #[test]
    fn spf_any_record_ends_within_limits(text in spfish(), ip in ip_strategy(), seed in any::<u64>()) {
        let record = format!("v=spf1 {text}");
        drive(ip, "example.com", "user@example.com", |name, rtype| {
            if rtype == RecordType::Txt {
                records(vec![Record::Txt(record.as_bytes().to_vec())], name)
            } else {
                hostile(seed, ip, &record, name, rtype)
            }
        });
    }

    #[test]
    fn spf_any_answers_end_within_limits(
        seed in any::<u64>(),
        ip in ip_strategy(),
        extra in spfish(),
        local in "[a-zA-Z0-9.+-]{0,40}",
    ) {
        let sender = format!("{local}@example.com");
        drive(ip, "example.com", &sender, |name, rtype| hostile(seed, ip, &extra, name, rtype));
    }
}

#[test]
fn spf_self_include_and_redirect_loops_are_permerror() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for record in [
        "v=spf1 include:%{d} -all",
        "v=spf1 redirect=%{d}",
        "v=spf1 include:example.com",
        "v=spf1 include:a.%{d} redirect=b.%{d}",
    ] {
        let outcome = drive(ip, "example.com", "u@example.com", |name, rtype| {
            if rtype == RecordType::Txt {
                records(vec![Record::Txt(record.into())], name)
            } else {
                Answer::NoData
            }
        });
        assert_eq!(outcome.result, SpfResult::PermError, "{record}");
        assert!(outcome.problem.unwrap().contains("DNS-querying terms"));
    }
}

#[test]
fn spf_temporary_failure_everywhere_is_temperror() {
    for ip in ["192.0.2.1", "2001:db8::1"] {
        let outcome = drive(
            ip.parse().unwrap(),
            "example.com",
            "u@example.com",
            |_, _| Answer::TempFail("timeout".into()),
        );
        assert_eq!(outcome.result, SpfResult::TempError);
    }
}

#[test]
fn spf_huge_and_deep_records_are_permerror_quickly() {
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let huge = format!("v=spf1 {}-all", "ip4:198.51.100.1 ".repeat(1000));
    let outcome = drive(ip, "example.com", "u@example.com", |name, rtype| {
        if rtype == RecordType::Txt {
            records(vec![Record::Txt(huge.as_bytes().to_vec())], name)
        } else {
            Answer::NoData
        }
    });
    assert_eq!(outcome.result, SpfResult::PermError);
    // Each include names a new, longer domain: the term limit stops the descent.
    let outcome = drive(ip, "example.com", "u@example.com", |name, rtype| {
        if rtype == RecordType::Txt {
            records(
                vec![Record::Txt(
                    b"v=spf1 include:x.%{d} include:y.%{d}".to_vec(),
                )],
                name,
            )
        } else {
            Answer::NxDomain
        }
    });
    assert_eq!(outcome.result, SpfResult::PermError);
}

/// The hostile resolver is not trivially hostile: over a few hundred seeds it produces every
/// result and some long evaluations.
#[test]
fn spf_hostile_resolver_reaches_every_result() {
    let mut seen = HashSet::new();
    let mut longest = 0;
    for seed in 0..400u64 {
        for ip in ["192.0.2.3", "2001:db8::3"] {
            let ip: IpAddr = ip.parse().unwrap();
            let (outcome, lookups) =
                drive_counting(ip, "example.com", "a.b-c@example.com", |name, rtype| {
                    hostile(seed, ip, "v=spf1 ?all", name, rtype)
                });
            seen.insert(outcome.result);
            longest = longest.max(lookups);
        }
    }
    assert_eq!(seen.len(), 7, "results seen: {seen:?}");
    assert!(longest >= 30, "longest evaluation made {longest} lookups");
}
