//! MX selection (RFC 5321 section 5.1, RFC 7505) and resolv.conf parsing.

use core::net::SocketAddr;
use petrel_core::dns::{
    Answer, MxError, Record, ResolverConfig, mx_hosts, parse_resolv_conf, parse_resolv_conf_options,
};
use std::collections::BTreeSet;
use std::time::Duration;

fn mx(preference: u16, exchange: &str) -> Record {
    Record::Mx {
        preference,
        exchange: exchange.to_string(),
    }
}

fn answer(records: Vec<Record>) -> Answer {
    Answer::Records {
        records,
        ttl: 300,
        canonical_name: "example.com".into(),
    }
}

#[test]
fn preference_ascending() {
    let a = answer(vec![
        mx(30, "c.example.com"),
        mx(10, "a.example.com"),
        mx(20, "b.example.com"),
    ]);
    for random in [0, 1, u64::MAX] {
        assert_eq!(
            mx_hosts("example.com", &a, random).unwrap(),
            ["a.example.com", "b.example.com", "c.example.com"]
        );
    }
}

#[test]
fn equal_preference_order_comes_from_random() {
    let a = answer(vec![
        mx(5, "first.example"),
        mx(10, "x1.example"),
        mx(10, "x2.example"),
        mx(10, "x3.example"),
        mx(10, "x4.example"),
        mx(20, "last.example"),
    ]);
    let mut orders = BTreeSet::new();
    for random in 0..200u64 {
        let hosts = mx_hosts("example", &a, random).unwrap();
        assert_eq!(
            hosts,
            mx_hosts("example", &a, random).unwrap(),
            "deterministic"
        );
        assert_eq!(hosts.len(), 6);
        assert_eq!(hosts[0], "first.example");
        assert_eq!(hosts[5], "last.example");
        let middle: BTreeSet<_> = hosts[1..5].iter().cloned().collect();
        assert_eq!(middle.len(), 4);
        assert!(middle.iter().all(|h| h.starts_with('x')));
        orders.insert(hosts[1..5].to_vec());
    }
    // 24 permutations; 200 draws should see most of them, and each host should lead sometimes.
    assert!(orders.len() >= 20, "only {} orders", orders.len());
    let leaders: BTreeSet<_> = orders.iter().map(|o| o[0].clone()).collect();
    assert_eq!(leaders.len(), 4);
}

#[test]
fn duplicates_are_tried_once_at_their_best_preference() {
    let a = answer(vec![
        mx(20, "a.example.com"),
        mx(10, "A.example.com"),
        mx(15, "b.example.com"),
    ]);
    assert_eq!(
        mx_hosts("example.com", &a, 9).unwrap(),
        ["a.example.com", "b.example.com"]
    );
}

#[test]
fn implicit_mx_when_no_mx_records() {
    assert_eq!(
        mx_hosts("Example.COM.", &Answer::NoData, 0).unwrap(),
        ["example.com"]
    );
    assert!(matches!(
        mx_hosts("bad..name", &Answer::NoData, 0),
        Err(MxError::Permanent(_))
    ));
}

#[test]
fn null_mx() {
    assert_eq!(
        mx_hosts("example.com", &answer(vec![mx(0, ".")]), 0),
        Err(MxError::NullMx)
    );
    // RFC 7505 forbids mixing; the real exchange is still usable.
    assert_eq!(
        mx_hosts(
            "example.com",
            &answer(vec![mx(0, "."), mx(10, "mx.example.com")]),
            0
        )
        .unwrap(),
        ["mx.example.com"]
    );
}

#[test]
fn failures_map_to_their_class() {
    assert_eq!(
        mx_hosts("example.com", &Answer::NxDomain, 0),
        Err(MxError::NoSuchDomain)
    );
    assert_eq!(
        mx_hosts("example.com", &Answer::TempFail("servfail".into()), 0),
        Err(MxError::Temporary("servfail".into()))
    );
    assert_eq!(
        mx_hosts("example.com", &Answer::PermFail("loop".into()), 0),
        Err(MxError::Permanent("loop".into()))
    );
}

#[test]
fn resolv_conf_nameservers() {
    let text = "\
# generated
search example.com
nameserver 192.0.2.1   # primary
 nameserver\t2001:db8::53
nameserver fe80::1%2
nameserver fe80::1%eth0
nameserver not-an-address
; nameserver 192.0.2.9
nameserver 192.0.2.2
nameserver 192.0.2.3
options ndots:2 timeout:5 attempts:9
";
    let servers = parse_resolv_conf(text);
    let expect: Vec<SocketAddr> = vec![
        "192.0.2.1:53".parse().unwrap(),
        "[2001:db8::53]:53".parse().unwrap(),
        "[fe80::1%2]:53".parse().unwrap(),
    ];
    assert_eq!(servers, expect);
    let config = parse_resolv_conf_options(text, &ResolverConfig::default());
    assert_eq!(config.timeout, Duration::from_secs(5));
    assert_eq!(config.attempts, 5);
    assert_eq!(config.max_cname_chain, 8);
    assert!(parse_resolv_conf("").is_empty());
    assert_eq!(
        parse_resolv_conf_options("", &ResolverConfig::default()),
        ResolverConfig::default()
    );
    assert!(parse_resolv_conf("nameserver\nnameserver 1.2.3.4.5\n\u{0}\u{ff}").is_empty());
}
