//! Mail authentication of whole messages: SPF, DKIM and DMARC together through `MessageAuth`,
//! answered by a fake DNS zone, ending in one Authentication-Results header and a disposition.

use petrel_core::auth::dmarc::{Policy, Verdict};
use petrel_core::auth::{Disposition, FailurePolicy, MessageAuth};
use petrel_core::dkim::{Signer, SignerConfig, SigningKey};
use petrel_core::dns::{Answer, Record, RecordType};
use std::collections::HashMap;
use std::sync::Arc;

const NOW: i64 = 1_800_000_000;

fn key() -> SigningKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    SigningKey::from_pkcs8_der(pkcs8.as_ref()).unwrap()
}

fn txt(s: &str) -> Answer {
    Answer::Records {
        records: vec![Record::Txt(s.as_bytes().to_vec())],
        ttl: 60,
        canonical_name: String::new(),
    }
}

struct Zone(HashMap<(String, RecordType), Answer>);

impl Zone {
    fn new(dmarc: &str, key: &SigningKey) -> Zone {
        let mut z = HashMap::new();
        z.insert(
            ("sender.test".to_string(), RecordType::Txt),
            txt("v=spf1 ip4:192.0.2.10 -all"),
        );
        z.insert(
            ("sel._domainkey.sender.test".to_string(), RecordType::Txt),
            txt(&key.public_key_record()),
        );
        z.insert(
            ("_dmarc.sender.test".to_string(), RecordType::Txt),
            txt(dmarc),
        );
        Zone(z)
    }

    fn answer(&self, name: &str, rtype: RecordType) -> Answer {
        self.0
            .get(&(name.to_ascii_lowercase(), rtype))
            .cloned()
            .unwrap_or(Answer::NxDomain)
    }
}

const MESSAGE: &str = "From: Alice <alice@sender.test>\r\nTo: bob@receiver.test\r\nSubject: hello\r\nMessage-ID: <1@sender.test>\r\n\r\nHi Bob.\r\n";

fn signed(key: SigningKey) -> Vec<u8> {
    let mut signer = Signer::new(SignerConfig::new("sender.test", "sel"), Arc::new(key), NOW);
    signer.feed(MESSAGE.as_bytes());
    let mut out = signer.finish().unwrap().into_bytes();
    out.extend_from_slice(MESSAGE.as_bytes());
    out
}

/// Runs MessageAuth over `message` in small pieces and answers from `zone` (or TempFail).
fn check(
    zone: Option<&Zone>,
    ip: &str,
    mail_from: &str,
    message: &[u8],
    policy: FailurePolicy,
) -> petrel_core::auth::AuthOutcome {
    let mut auth = MessageAuth::new(
        "mx.receiver.test",
        policy,
        ip.parse().unwrap(),
        "client.sender.test",
        mail_from,
        NOW,
    );
    for piece in message.chunks(7) {
        auth.feed(piece);
    }
    auth.finish_message();
    for _ in 0..50 {
        if let Some(o) = auth.outcome() {
            return o;
        }
        let queries = auth.queries();
        assert!(!queries.is_empty(), "no outcome and nothing to ask");
        for (name, rtype) in queries {
            let answer = match zone {
                Some(z) => z.answer(&name, rtype),
                None => Answer::TempFail("servfail".into()),
            };
            auth.answer(&name, rtype, &answer);
        }
    }
    panic!("no outcome after 50 rounds");
}

#[test]
fn a_signed_message_from_an_authorised_address_passes_everything() {
    let key = key();
    let zone = Zone::new("v=DMARC1; p=reject", &key);
    let o = check(
        Some(&zone),
        "192.0.2.10",
        "bounce@sender.test",
        &signed(key),
        FailurePolicy::Follow,
    );
    assert_eq!(o.dmarc, Verdict::Pass);
    assert_eq!(o.disposition, Disposition::Accept);
    assert!(
        o.header
            .starts_with("Authentication-Results: mx.receiver.test;\r\n\t"),
        "{}",
        o.header
    );
    assert!(
        o.header
            .contains("spf=pass smtp.mailfrom=bounce@sender.test;"),
        "{}",
        o.header
    );
    assert!(
        o.header
            .contains("dkim=pass header.d=sender.test header.s=sel header.b="),
        "{}",
        o.header
    );
    assert!(
        o.header
            .contains("dmarc=pass (p=reject) header.from=sender.test\r\n"),
        "{}",
        o.header
    );
}

#[test]
fn dkim_alone_or_spf_alone_is_enough_for_dmarc() {
    let key = key();
    let zone = Zone::new("v=DMARC1; p=reject", &key);
    // Relayed through another address: SPF fails, the signature still aligns.
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "bounce@sender.test",
        &signed(key),
        FailurePolicy::Follow,
    );
    assert!(o.header.contains("spf=fail"), "{}", o.header);
    assert_eq!(o.dmarc, Verdict::Pass);
    // Unsigned from the authorised address: SPF aligns.
    let key2 = self::key();
    let zone2 = Zone::new("v=DMARC1; p=reject", &key2);
    let o = check(
        Some(&zone2),
        "192.0.2.10",
        "bounce@sender.test",
        MESSAGE.as_bytes(),
        FailurePolicy::Follow,
    );
    assert!(o.header.contains("dkim=none"), "{}", o.header);
    assert_eq!(o.dmarc, Verdict::Pass);
}

#[test]
fn forgeries_are_refused_or_quarantined_as_the_domain_asks() {
    let key = key();
    let zone = Zone::new("v=DMARC1; p=reject", &key);
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "x@elsewhere.test",
        MESSAGE.as_bytes(),
        FailurePolicy::Follow,
    );
    assert_eq!(
        o.dmarc,
        Verdict::Fail {
            policy: Policy::Reject,
            applied: true
        }
    );
    assert!(
        matches!(&o.disposition, Disposition::Reject(t) if t.starts_with("5.7.1")),
        "{:?}",
        o.disposition
    );
    assert!(
        o.header
            .contains("dmarc=fail (p=reject) header.from=sender.test"),
        "{}",
        o.header
    );

    let zone = Zone::new("v=DMARC1; p=quarantine", &key);
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "x@elsewhere.test",
        MESSAGE.as_bytes(),
        FailurePolicy::Follow,
    );
    assert_eq!(o.disposition, Disposition::Quarantine);

    // The administrator may override the domain's wish.
    let zone = Zone::new("v=DMARC1; p=reject", &key);
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "x@elsewhere.test",
        MESSAGE.as_bytes(),
        FailurePolicy::Ignore,
    );
    assert_eq!(o.disposition, Disposition::Accept);
    assert!(o.header.contains("dmarc=fail"));

    // A tampered body fails DKIM and so DMARC.
    let mut tampered = signed(key);
    let at = tampered.len() - 4;
    tampered[at] = b'X';
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "bounce@sender.test",
        &tampered,
        FailurePolicy::Follow,
    );
    assert!(o.header.contains("dkim=fail"), "{}", o.header);
    assert!(matches!(o.disposition, Disposition::Reject(_)));
}

#[test]
fn dns_trouble_never_refuses_mail() {
    let key = key();
    let o = check(
        None,
        "192.0.2.10",
        "bounce@sender.test",
        &signed(key),
        FailurePolicy::Follow,
    );
    assert_eq!(o.dmarc, Verdict::TempError);
    assert_eq!(o.disposition, Disposition::Accept);
    assert!(o.header.contains("spf=temperror"), "{}", o.header);
    assert!(o.header.contains("dkim=temperror"), "{}", o.header);
}

#[test]
fn no_policy_and_no_from() {
    let key = key();
    let mut zone = Zone::new("", &key);
    zone.0
        .remove(&("_dmarc.sender.test".to_string(), RecordType::Txt));
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "x@elsewhere.test",
        MESSAGE.as_bytes(),
        FailurePolicy::Follow,
    );
    assert_eq!(o.dmarc, Verdict::None);
    assert_eq!(o.disposition, Disposition::Accept);
    let o = check(
        Some(&zone),
        "198.51.100.7",
        "",
        b"Subject: no from\r\n\r\nx\r\n",
        FailurePolicy::Follow,
    );
    assert_eq!(o.dmarc, Verdict::PermError);
    assert!(
        o.header.contains("smtp.helo=client.sender.test"),
        "{}",
        o.header
    );
    assert_eq!(o.disposition, Disposition::Accept);
}
