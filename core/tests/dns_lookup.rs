//! The DNS lookup state machine against responses built independently with hickory-proto.
// Tests need one real Instant to start from; all later times are derived from it.
#![allow(clippy::disallowed_methods)]

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType as WireType};
use petrel_core::dns::{Answer, Lookup, Record, RecordType, ResolverConfig, Transmit};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn servers() -> Vec<SocketAddr> {
    vec![
        "192.0.2.53:53".parse().unwrap(),
        "[2001:db8::53]:53".parse().unwrap(),
    ]
}

fn start(name: &str, rtype: RecordType, now: Instant) -> Lookup {
    Lookup::new(name, rtype, &servers(), &ResolverConfig::default(), 7, now)
}

/// The datagram the lookup wants sent now; panics if it wants TCP or nothing.
fn udp(lookup: &mut Lookup) -> (SocketAddr, Vec<u8>) {
    match lookup.poll_transmit() {
        Some(Transmit::Udp { server, bytes }) => (server, bytes),
        other => panic!("expected a UDP transmit, got {other:?}"),
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn rec(owner: &str, ttl: u32, data: RData) -> WireRecord {
    WireRecord::from_rdata(name(owner), ttl, data)
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> WireRecord {
    rec(owner, ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn cname(owner: &str, ttl: u32, target: &str) -> WireRecord {
    rec(owner, ttl, RData::CNAME(CNAME(name(target))))
}

fn mx(owner: &str, pref: u16, host: &str) -> WireRecord {
    rec(owner, 300, RData::MX(MX::new(pref, name(host))))
}

/// A response to `query` (as sent by the lookup) with `rcode` and `answers`.
fn respond(query: &[u8], rcode: ResponseCode, answers: Vec<WireRecord>) -> Vec<u8> {
    respond_with(query, |m| {
        m.metadata.response_code = rcode;
        m.add_answers(answers);
    })
}

fn respond_with(query: &[u8], edit: impl FnOnce(&mut Message)) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(q.queries.clone());
    edit(&mut m);
    m.to_vec().unwrap()
}

fn records(answer: &Answer) -> (&[Record], u32, &str) {
    match answer {
        Answer::Records {
            records,
            ttl,
            canonical_name,
        } => (records, *ttl, canonical_name),
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn query_encoding_decodes_back() {
    let now = Instant::now();
    let mut l = start("Mail.Example.COM.", RecordType::Mx, now);
    let (server, bytes) = udp(&mut l);
    assert_eq!(server, servers()[0]);
    assert!(l.poll_transmit().is_none(), "one transmit at a time");
    let q = Message::from_vec(&bytes).unwrap();
    assert_eq!(q.metadata.message_type, MessageType::Query);
    assert_eq!(q.metadata.op_code, OpCode::Query);
    assert!(q.metadata.recursion_desired);
    assert_eq!(q.queries.len(), 1);
    assert!(q.queries[0].name().eq_case(&name("mail.example.com.")));
    assert_eq!(q.queries[0].query_type(), WireType::MX);
    assert_eq!(q.queries[0].query_class(), DNSClass::IN);
    let edns = q.edns.expect("EDNS0 present");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(edns.version(), 0);
    assert_eq!(l.poll_timeout(), Some(now + Duration::from_secs(2)));
    assert!(l.result().is_none());
}

#[test]
fn ids_come_from_the_seed() {
    let now = Instant::now();
    let id = |seed| {
        let mut l = Lookup::new(
            "example.com",
            RecordType::A,
            &servers(),
            &ResolverConfig::default(),
            seed,
            now,
        );
        Message::from_vec(&udp(&mut l).1).unwrap().metadata.id
    };
    assert_eq!(id(1), id(1));
    let ids: std::collections::BTreeSet<u16> = (0..32).map(id).collect();
    assert!(ids.len() > 28, "ids should vary with the seed: {ids:?}");
}

#[test]
fn mx_answer_keeps_every_record_and_the_min_ttl() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::Mx, now);
    let (server, q) = udp(&mut l);
    let mut low_ttl = mx("example.com.", 20, "b.example.com.");
    low_ttl.ttl = 60;
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![low_ttl, mx("example.com.", 10, "A.Example.com.")],
    );
    l.handle_udp(now, server, &resp);
    let (recs, ttl, cname) = records(l.result().unwrap());
    assert_eq!(
        recs,
        &[
            Record::Mx {
                preference: 20,
                exchange: "b.example.com".into()
            },
            Record::Mx {
                preference: 10,
                exchange: "a.example.com".into()
            }
        ]
    );
    assert_eq!(ttl, 60);
    assert_eq!(cname, "example.com");
    assert_eq!(l.poll_timeout(), None);
    assert!(l.poll_transmit().is_none());
    let hosts = petrel_core::dns::mx_hosts("example.com", l.result().unwrap(), 0).unwrap();
    assert_eq!(hosts, ["a.example.com", "b.example.com"]);
}

#[test]
fn aaaa_txt_and_null_mx_records_convert() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::Aaaa, now);
    let (server, q) = udp(&mut l);
    let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![rec("example.com.", 30, RData::AAAA(AAAA(ip)))],
    );
    l.handle_udp(now, server, &resp);
    assert_eq!(records(l.result().unwrap()).0, &[Record::Aaaa(ip)]);

    let mut l = start("example.com", RecordType::Txt, now);
    let (server, q) = udp(&mut l);
    let txt = TXT::from_bytes(vec![b"v=DKIM1; k=rsa; ".as_slice(), b"p=MIIB"]);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![rec("example.com.", 30, RData::TXT(txt))],
    );
    l.handle_udp(now, server, &resp);
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::Txt(b"v=DKIM1; k=rsa; p=MIIB".to_vec())]
    );

    let mut l = start("example.com", RecordType::Mx, now);
    let (server, q) = udp(&mut l);
    let resp = respond(&q, ResponseCode::NoError, vec![mx("example.com.", 0, ".")]);
    l.handle_udp(now, server, &resp);
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::Mx {
            preference: 0,
            exchange: ".".into()
        }]
    );
}

#[test]
fn cname_chain_and_target_in_one_answer() {
    let now = Instant::now();
    let mut l = start("www.example.com", RecordType::A, now);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![
            cname("www.example.com.", 100, "edge.example.net."),
            cname("edge.example.net.", 40, "host.example.org."),
            a("host.example.org.", 300, [192, 0, 2, 1]),
            // Not on the chain: must be ignored.
            a("other.example.org.", 1, [192, 0, 2, 99]),
        ],
    );
    l.handle_udp(now, server, &resp);
    let (recs, ttl, canonical) = records(l.result().unwrap());
    assert_eq!(recs, &[Record::A(Ipv4Addr::new(192, 0, 2, 1))]);
    assert_eq!(ttl, 40);
    assert_eq!(canonical, "host.example.org");
}

#[test]
fn cname_only_then_the_target_is_asked() {
    let now = Instant::now();
    let mut l = start("www.example.com", RecordType::A, now);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![cname("www.example.com.", 50, "host.example.net.")],
    );
    l.handle_udp(now, server, &resp);
    assert!(l.result().is_none());
    let (server2, q2) = udp(&mut l);
    assert_eq!(
        server2,
        servers()[0],
        "a new question starts at the first server"
    );
    let m = Message::from_vec(&q2).unwrap();
    assert!(m.queries[0].name().eq_case(&name("host.example.net.")));
    assert_eq!(m.queries[0].query_type(), WireType::A);
    // An answer to the old question is not an answer to the new one.
    l.handle_udp(now, server, &resp);
    assert!(l.result().is_none());
    let resp2 = respond(
        &q2,
        ResponseCode::NoError,
        vec![a("host.example.net.", 600, [198, 51, 100, 7])],
    );
    l.handle_udp(now, server2, &resp2);
    let (recs, ttl, canonical) = records(l.result().unwrap());
    assert_eq!(recs, &[Record::A(Ipv4Addr::new(198, 51, 100, 7))]);
    assert_eq!(ttl, 50);
    assert_eq!(canonical, "host.example.net");
}

#[test]
fn asking_for_the_cname_itself_does_not_follow_it() {
    let now = Instant::now();
    let mut l = start("www.example.com", RecordType::Cname, now);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![cname("www.example.com.", 50, "host.example.net.")],
    );
    l.handle_udp(now, server, &resp);
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::Cname("host.example.net".into())]
    );
}

#[test]
fn cname_loop_in_one_answer_is_permanent() {
    let now = Instant::now();
    let mut l = start("a.example.com", RecordType::A, now);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![
            cname("a.example.com.", 50, "b.example.com."),
            cname("b.example.com.", 50, "A.EXAMPLE.com."),
        ],
    );
    l.handle_udp(now, server, &resp);
    assert!(
        matches!(l.result(), Some(Answer::PermFail(e)) if e.contains("loop")),
        "{:?}",
        l.result()
    );
    assert!(l.poll_transmit().is_none());
}

#[test]
fn cname_loop_across_queries_is_permanent() {
    let now = Instant::now();
    let mut l = start("a.example.com", RecordType::Mx, now);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![cname("a.example.com.", 50, "b.example.com.")],
    );
    l.handle_udp(now, server, &resp);
    let (server, q) = udp(&mut l);
    let resp = respond(
        &q,
        ResponseCode::NoError,
        vec![cname("b.example.com.", 50, "a.example.com.")],
    );
    l.handle_udp(now, server, &resp);
    assert!(
        matches!(l.result(), Some(Answer::PermFail(_))),
        "{:?}",
        l.result()
    );
}

#[test]
fn overlong_cname_chain_is_permanent() {
    let now = Instant::now();
    let config = ResolverConfig {
        max_cname_chain: 2,
        ..ResolverConfig::default()
    };
    let run = |hops: usize| {
        let mut l = Lookup::new("h0.example", RecordType::A, &servers(), &config, 1, now);
        let (server, q) = udp(&mut l);
        let mut answers: Vec<WireRecord> = (0..hops)
            .map(|i| {
                cname(
                    &format!("h{i}.example."),
                    60,
                    &format!("h{}.example.", i + 1),
                )
            })
            .collect();
        answers.push(a(&format!("h{hops}.example."), 60, [192, 0, 2, 2]));
        l.handle_udp(now, server, &respond(&q, ResponseCode::NoError, answers));
        l.result().cloned()
    };
    assert!(matches!(run(2), Some(Answer::Records { .. })));
    assert!(matches!(run(3), Some(Answer::PermFail(e)) if e.contains("longer")));
}

#[test]
fn nxdomain_is_final_and_nodata_is_distinct() {
    let now = Instant::now();
    let mut l = start("nope.example.com", RecordType::A, now);
    let (server, q) = udp(&mut l);
    l.handle_udp(now, server, &respond(&q, ResponseCode::NXDomain, vec![]));
    assert_eq!(l.result(), Some(&Answer::NxDomain));
    assert!(l.poll_transmit().is_none());
    assert_eq!(l.poll_timeout(), None);

    let mut l = start("example.com", RecordType::Mx, now);
    let (server, q) = udp(&mut l);
    // An A record where MX was asked is no MX record.
    l.handle_udp(
        now,
        server,
        &respond(
            &q,
            ResponseCode::NoError,
            vec![a("example.com.", 5, [192, 0, 2, 3])],
        ),
    );
    assert_eq!(l.result(), Some(&Answer::NoData));
}

#[test]
fn servfail_moves_to_the_next_server_then_tempfails() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::A, now);
    let (s1, q) = udp(&mut l);
    l.handle_udp(now, s1, &respond(&q, ResponseCode::ServFail, vec![]));
    assert!(l.result().is_none());
    let (s2, q) = udp(&mut l);
    assert_eq!(s2, servers()[1]);
    l.handle_udp(
        now,
        s2,
        &respond(
            &q,
            ResponseCode::NoError,
            vec![a("example.com.", 5, [192, 0, 2, 4])],
        ),
    );
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::A(Ipv4Addr::new(192, 0, 2, 4))]
    );

    // Both servers refuse: no second round at servers that answered definitively.
    let mut l = start("example.com", RecordType::A, now);
    let (s1, q) = udp(&mut l);
    l.handle_udp(now, s1, &respond(&q, ResponseCode::Refused, vec![]));
    let (s2, q) = udp(&mut l);
    l.handle_udp(now, s2, &respond(&q, ResponseCode::ServFail, vec![]));
    assert!(
        matches!(l.result(), Some(Answer::TempFail(_))),
        "{:?}",
        l.result()
    );
    assert!(l.poll_transmit().is_none());
}

#[test]
fn formerr_is_permanent() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::A, now);
    let (s1, q) = udp(&mut l);
    // FORMERR answers may omit the question.
    let resp = respond_with(&q, |m| {
        m.metadata.response_code = ResponseCode::FormErr;
        m.queries.clear();
    });
    l.handle_udp(now, s1, &resp);
    assert!(
        matches!(l.result(), Some(Answer::PermFail(_))),
        "{:?}",
        l.result()
    );
}

#[test]
fn truncated_answer_is_retried_over_tcp_to_the_same_server() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::Txt, now);
    let (s1, q) = udp(&mut l);
    let tc = respond_with(&q, |m| m.metadata.truncation = true);
    let later = now + Duration::from_millis(500);
    l.handle_udp(later, s1, &tc);
    let Some(Transmit::Tcp { server, bytes }) = l.poll_transmit() else {
        panic!("expected TCP")
    };
    assert_eq!(server, s1);
    assert_eq!(l.poll_timeout(), Some(later + Duration::from_secs(2)));
    let tq = Message::from_vec(&bytes).unwrap();
    assert!(tq.queries[0].name().eq_case(&name("example.com.")));
    assert_eq!(tq.queries[0].query_type(), WireType::TXT);
    // A late datagram is no answer to the TCP try.
    l.handle_udp(later, s1, &respond(&q, ResponseCode::NXDomain, vec![]));
    assert!(l.result().is_none());
    let big = TXT::new(vec!["x".repeat(200); 10]);
    let resp = respond(
        &bytes,
        ResponseCode::NoError,
        vec![rec("example.com.", 9, RData::TXT(big))],
    );
    l.handle_tcp(later, s1, Ok(resp));
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::Txt(vec![b'x'; 2000])]
    );
}

#[test]
fn failed_tcp_moves_on_and_truncation_without_tcp_success_tempfails() {
    let now = Instant::now();
    let config = ResolverConfig {
        attempts: 1,
        ..ResolverConfig::default()
    };
    let mut l = Lookup::new("example.com", RecordType::Txt, &servers(), &config, 3, now);
    for expected in servers() {
        let (s, q) = udp(&mut l);
        assert_eq!(s, expected);
        l.handle_udp(now, s, &respond_with(&q, |m| m.metadata.truncation = true));
        let Some(Transmit::Tcp { server, .. }) = l.poll_transmit() else {
            panic!("expected TCP")
        };
        // A result for another server is ignored.
        l.handle_tcp(now, "203.0.113.1:53".parse().unwrap(), Err("x".into()));
        assert!(l.result().is_none());
        l.handle_tcp(now, server, Err("connection refused".into()));
    }
    assert!(
        matches!(l.result(), Some(Answer::TempFail(e)) if e.contains("connection refused")),
        "{:?}",
        l.result()
    );
}

#[test]
fn mismatched_datagrams_are_ignored() {
    let now = Instant::now();
    let mut l = start("example.com", RecordType::A, now);
    let (s1, q) = udp(&mut l);
    let good = vec![a("example.com.", 5, [192, 0, 2, 5])];
    // Wrong id.
    let wrong_id = respond_with(&q, |m| {
        m.metadata.id = m.metadata.id.wrapping_add(1);
        m.add_answers(good.clone());
    });
    l.handle_udp(now, s1, &wrong_id);
    // Wrong source.
    let right = respond(&q, ResponseCode::NoError, good.clone());
    l.handle_udp(now, "192.0.2.66:53".parse().unwrap(), &right);
    l.handle_udp(now, "192.0.2.53:5353".parse().unwrap(), &right);
    // Wrong question name, type, class; a query instead of a response; garbage.
    for edit in [
        (|m: &mut Message| m.queries[0].set_name(Name::from_ascii("example.org.").unwrap()))
            as fn(&mut Message) -> &mut Query,
        |m| m.queries[0].set_query_type(WireType::AAAA),
        |m| m.queries[0].set_query_class(DNSClass::CH),
    ] {
        let r = respond_with(&q, |m| {
            edit(m);
            m.add_answers(good.clone());
        });
        l.handle_udp(now, s1, &r);
    }
    let not_response = respond_with(&q, |m| m.metadata.message_type = MessageType::Query);
    l.handle_udp(now, s1, &not_response);
    l.handle_udp(now, s1, &right[..right.len() - 3]);
    l.handle_udp(now, s1, b"");
    assert!(l.result().is_none());
    assert!(l.poll_transmit().is_none());
    // The real answer, with the name in another case, is accepted.
    let upper = respond_with(&q, |m| {
        m.queries[0].set_name(Name::from_ascii("EXAMPLE.Com.").unwrap());
        m.add_answer(a("EXAMPLE.com.", 5, [192, 0, 2, 5]));
    });
    l.handle_udp(now, s1, &upper);
    assert_eq!(
        records(l.result().unwrap()).0,
        &[Record::A(Ipv4Addr::new(192, 0, 2, 5))]
    );
}

#[test]
fn timeouts_retry_over_the_servers_then_tempfail() {
    let t0 = Instant::now();
    let mut l = start("example.com", RecordType::A, t0);
    let mut sent = Vec::new();
    let mut now = t0;
    let mut ids = Vec::new();
    loop {
        let (s, q) = udp(&mut l);
        sent.push(s);
        ids.push(Message::from_vec(&q).unwrap().metadata.id);
        let deadline = l.poll_timeout().unwrap();
        assert_eq!(deadline, now + Duration::from_secs(2));
        // Early wake-ups change nothing.
        l.handle_timeout(deadline - Duration::from_millis(1));
        assert!(l.poll_transmit().is_none());
        now = deadline;
        l.handle_timeout(now);
        if l.result().is_some() {
            break;
        }
    }
    let s = servers();
    assert_eq!(sent, [s[0], s[1], s[0], s[1]]);
    assert_eq!(ids.len(), 4);
    assert!(matches!(l.result(), Some(Answer::TempFail(e)) if e.contains("timed out")));
    assert_eq!(l.poll_timeout(), None);
    // Nothing changes a finished lookup.
    l.handle_timeout(now + Duration::from_secs(60));
    assert!(matches!(l.result(), Some(Answer::TempFail(_))));
}

#[test]
fn answer_after_a_retry_is_used() {
    let t0 = Instant::now();
    let mut l = start("example.com", RecordType::A, t0);
    let (s1, q1) = udp(&mut l);
    l.handle_timeout(t0 + Duration::from_secs(2));
    let (s2, q2) = udp(&mut l);
    assert_ne!(s1, s2);
    l.handle_udp(
        t0,
        s2,
        &respond(
            &q2,
            ResponseCode::NoError,
            vec![a("example.com.", 5, [192, 0, 2, 6])],
        ),
    );
    assert!(matches!(l.result(), Some(Answer::Records { .. })));
    // q1 was never answered; its id is not the one accepted.
    assert_ne!(
        Message::from_vec(&q1).unwrap().metadata.id,
        Message::from_vec(&q2).unwrap().metadata.id
    );
}

#[test]
fn bad_names_and_no_servers() {
    let now = Instant::now();
    let cfg = ResolverConfig::default();
    for bad in [
        "bücher.example",
        "",
        ".",
        "a..b",
        "a b.example",
        "x\\.y",
        &"a".repeat(64),
    ] {
        let l = Lookup::new(bad, RecordType::A, &servers(), &cfg, 0, now);
        assert!(matches!(l.result(), Some(Answer::PermFail(_))), "{bad:?}");
    }
    let mut l = Lookup::new("example.com", RecordType::A, &[], &cfg, 0, now);
    assert!(matches!(l.result(), Some(Answer::TempFail(_))));
    assert!(l.poll_transmit().is_none());
    assert_eq!(l.poll_timeout(), None);
}

/// What the property test feeds a lookup.
#[derive(Debug, Clone)]
enum Input {
    Udp(u8, Vec<u8>),
    Tcp(Vec<u8>),
    TcpErr,
    /// A valid response to the current query, with some bytes overwritten.
    Mutated(u8, Vec<(usize, u8)>),
    Timeout(u16),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(s, b)| Input::Udp(s, b)),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Input::Tcp),
        Just(Input::TcpErr),
        (
            any::<u8>(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)
        )
            .prop_map(|(r, m)| Input::Mutated(r, m)),
        (0u16..3000).prop_map(Input::Timeout),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_never_panic_and_the_lookup_ends(
        rtype in prop_oneof![Just(RecordType::A), Just(RecordType::Mx), Just(RecordType::Txt), Just(RecordType::Cname)],
        seed in any::<u64>(),
        inputs in proptest::collection::vec(input(), 0..24),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut l = Lookup::new("www.example.com", rtype, &servers(), &ResolverConfig::default(), seed, now);
        let mut last: Option<Transmit> = l.poll_transmit();
        for i in inputs {
            let server = match &last {
                Some(Transmit::Udp { server, .. } | Transmit::Tcp { server, .. }) => *server,
                None => servers()[0],
            };
            match i {
                Input::Udp(s, b) => {
                    let from = if s % 4 == 0 { servers()[1] } else { server };
                    l.handle_udp(now, from, &b);
                }
                Input::Tcp(b) => l.handle_tcp(now, server, Ok(b)),
                Input::TcpErr => l.handle_tcp(now, server, Err("reset".into())),
                Input::Mutated(r, edits) => {
                    let Some(Transmit::Udp { bytes, .. } | Transmit::Tcp { bytes, .. }) = &last else { continue };
                    let answers = match r % 4 {
                        0 => vec![cname("www.example.com.", 1, "www.example.com.")],
                        1 => vec![cname("www.example.com.", 1, "x.example.com."), mx("x.example.com.", 1, ".")],
                        2 => vec![a("www.example.com.", 1, [1, 2, 3, 4])],
                        _ => vec![],
                    };
                    let mut resp = respond(bytes, ResponseCode::from(0, r % 6), answers);
                    let len = resp.len();
                    for (at, byte) in edits {
                        resp[at % len] = byte;
                    }
                    if r % 2 == 0 {
                        l.handle_udp(now, server, &resp);
                    } else {
                        l.handle_tcp(now, server, Ok(resp));
                    }
                }
                Input::Timeout(ms) => {
                    now += Duration::from_millis(ms.into());
                    l.handle_timeout(now);
                }
            }
            if let Some(t) = l.poll_transmit() {
                last = Some(t);
            }
        }
        // From here on, nothing answers: the lookup must end within its retry budget.
        let mut wakeups = 0;
        while let Some(deadline) = l.poll_timeout() {
            prop_assert!(deadline > now, "a pending try always has a future deadline");
            now = deadline;
            l.handle_timeout(now);
            let _ = l.poll_transmit();
            wakeups += 1;
            prop_assert!(wakeups <= 2 * 2 * 10, "too many tries");
        }
        prop_assert!(l.result().is_some());
    }
}
