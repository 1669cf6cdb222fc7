//! Sign-then-verify round trips for both algorithms and every canonicalization pair, with the
//! failure each kind of tampering must produce, DNS outcomes, and property tests: any split of
//! the input gives the same result, and no input panics.

mod dkim_support;

use std::sync::Arc;

use dkim_support::*;
use petrel_core::dkim::{
    Canon, DkimError, DkimResult, PublicKeyRecord, Signer, SignerConfig, SigningKey, Verifier,
    VerifyLimits,
};
use petrel_core::dns::{Answer, Record};
use proptest::prelude::*;

const NOW: i64 = 1_795_000_000;
const CANONS: [(Canon, Canon); 4] = [
    (Canon::Simple, Canon::Simple),
    (Canon::Simple, Canon::Relaxed),
    (Canon::Relaxed, Canon::Simple),
    (Canon::Relaxed, Canon::Relaxed),
];

fn keys() -> Vec<Arc<SigningKey>> {
    vec![rsa_key(), ed25519_key()]
}

/// The DNS of `example.com` publishing `key` under `sel`.
fn dns_for(key: &SigningKey) -> impl Fn(&str) -> Answer + use<> {
    let record = key.public_key_record();
    move |name: &str| {
        if name == "sel._domainkey.example.com" {
            txt(&record)
        } else {
            Answer::NxDomain
        }
    }
}

fn only(results: Vec<petrel_core::dkim::SignatureResult>) -> DkimResult {
    assert_eq!(results.len(), 1, "{results:?}");
    results.into_iter().next().unwrap().result
}

fn replace(message: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    assert!(text.contains(from), "{from:?} not in the message");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn round_trips_every_algorithm_and_canonicalization() {
    for key in keys() {
        for (h, b) in CANONS {
            let signed = sign(config(h, b), &key, NOW, &sample_message());
            let dns = dns_for(&key);
            let what = format!("{:?} {h:?}/{b:?}", key.algorithm());
            assert_eq!(only(verify(&signed, NOW, &dns)), DkimResult::Pass, "{what}");

            // Whitespace changes pass under relaxed and fail under simple.
            let header_ws = replace(&signed, "Subject: Lunch", "Subject:  Lunch");
            let expect = match h {
                Canon::Relaxed => DkimResult::Pass,
                Canon::Simple => DkimResult::Fail("signature did not verify".into()),
            };
            assert_eq!(only(verify(&header_ws, NOW, &dns)), expect, "{what}");
            let body_ws = replace(&signed, "lunch  on", "lunch \t on");
            let expect = match b {
                Canon::Relaxed => DkimResult::Pass,
                Canon::Simple => DkimResult::Fail("body hash did not verify".into()),
            };
            assert_eq!(only(verify(&body_ws, NOW, &dns)), expect, "{what}");

            // Trailing empty lines never matter.
            let mut more = signed.clone();
            more.extend_from_slice(b"\r\n\r\n");
            assert_eq!(only(verify(&more, NOW, &dns)), DkimResult::Pass, "{what}");
        }
    }
}

#[test]
fn the_field_is_folded_and_carries_the_expected_tags() {
    let mut c = config(Canon::Relaxed, Canon::Simple);
    c.expire_after = Some(600);
    let mut signer = Signer::new(c, ed25519_key(), NOW);
    signer.feed(&sample_message());
    let field = signer.finish().unwrap();
    assert!(field.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple;"));
    assert!(field.ends_with("\r\n") && !field.ends_with("\r\n\r\n"));
    for line in field.split("\r\n").filter(|l| !l.is_empty()) {
        assert!(line.len() <= 78, "line too long: {line:?}");
    }
    let flat: String = field.split_whitespace().collect();
    assert!(
        flat.contains(&format!("t={NOW};x={};", NOW + 600)),
        "{flat}"
    );
    // Over-signing: each present field once more, absent ones once.
    assert!(
        flat.contains("h=from:from:reply-to:subject:subject:date:date:to:to:cc:message-id"),
        "{flat}"
    );
}

#[test]
fn tampered_header_body_or_signature_fails() {
    for key in keys() {
        let dns = dns_for(&key);
        let signed = sign(
            config(Canon::Relaxed, Canon::Relaxed),
            &key,
            NOW,
            &sample_message(),
        );
        let header = replace(&signed, "From: Alice", "From: Mallory");
        assert_eq!(
            only(verify(&header, NOW, &dns)),
            DkimResult::Fail("signature did not verify".into())
        );
        let body = replace(&signed, "Friday?  ", "Saturday?");
        assert_eq!(
            only(verify(&body, NOW, &dns)),
            DkimResult::Fail("body hash did not verify".into())
        );
        // One base64 character of b= changed (still valid base64).
        let text = String::from_utf8(signed.clone()).unwrap();
        let at = text.find("b=").unwrap() + 2;
        let at = at
            + text[at..]
                .find(|c: char| c.is_ascii_alphanumeric())
                .unwrap();
        let mut bytes = signed.clone();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            only(verify(&bytes, NOW, &dns)),
            DkimResult::Fail("signature did not verify".into())
        );
        // An unsigned field added at the bottom of the header is fine.
        let added = replace(&signed, "\r\n\r\nHi Bob", "\r\nX-Spam: no\r\n\r\nHi Bob");
        assert_eq!(only(verify(&added, NOW, &dns)), DkimResult::Pass);
    }
}

#[test]
fn oversigning_catches_an_added_field() {
    let key = ed25519_key();
    let dns = dns_for(&key);
    for oversign in [true, false] {
        let mut c = config(Canon::Relaxed, Canon::Relaxed);
        c.oversign = oversign;
        let signed = sign(c, &key, NOW, &sample_message());
        // A second Subject above the signed one: readers may show either.
        let mut forged = b"Subject: Pay this invoice\r\n".to_vec();
        forged.extend_from_slice(&signed);
        let expect = if oversign {
            DkimResult::Fail("signature did not verify".into())
        } else {
            DkimResult::Pass
        };
        assert_eq!(
            only(verify(&forged, NOW, &dns)),
            expect,
            "oversign {oversign}"
        );
        // A Cc where there was none.
        let cc = replace(
            &signed,
            "\r\n\r\nHi Bob",
            "\r\nCc: eve@example.org\r\n\r\nHi Bob",
        );
        let expect = if oversign {
            DkimResult::Fail("signature did not verify".into())
        } else {
            DkimResult::Pass
        };
        assert_eq!(only(verify(&cc, NOW, &dns)), expect, "oversign {oversign}");
    }
}

#[test]
fn body_length_covers_only_what_was_signed() {
    let key = rsa_key();
    let dns = dns_for(&key);
    for b in [Canon::Simple, Canon::Relaxed] {
        let mut c = config(Canon::Relaxed, b);
        c.body_length = true;
        let signed = sign(c, &key, NOW, &sample_message());
        assert!(String::from_utf8_lossy(&signed).contains("l="));
        assert_eq!(only(verify(&signed, NOW, &dns)), DkimResult::Pass);
        let mut footer = signed.clone();
        footer.extend_from_slice(b"-- \r\nList footer\r\n");
        assert_eq!(only(verify(&footer, NOW, &dns)), DkimResult::Pass, "{b:?}");
        let changed = replace(&signed, "Hi Bob", "Hi Rob");
        assert_eq!(
            only(verify(&changed, NOW, &dns)),
            DkimResult::Fail("body hash did not verify".into())
        );
        let cut = replace(&signed, "Alice\r\n\r\n\r\n", "");
        assert_eq!(
            only(verify(&cut, NOW, &dns)),
            DkimResult::PermError("l= is longer than the body".into())
        );
    }
}

#[test]
fn expiry() {
    let key = ed25519_key();
    let dns = dns_for(&key);
    let mut c = config(Canon::Relaxed, Canon::Relaxed);
    c.expire_after = Some(3600);
    let signed = sign(c, &key, NOW, &sample_message());
    assert_eq!(only(verify(&signed, NOW + 3600, &dns)), DkimResult::Pass);
    assert_eq!(
        only(verify(&signed, NOW + 3601, &dns)),
        DkimResult::Fail("signature expired".into())
    );
    // x= before t= is malformed, whatever the time.
    let text = String::from_utf8(signed).unwrap();
    let bad = text.replace(&format!("x={}", NOW + 3600), &format!("x={}", NOW - 1));
    assert_eq!(
        only(verify(bad.as_bytes(), NOW, &dns)),
        DkimResult::PermError("x= is before t=".into())
    );
}

#[test]
fn dns_outcomes_and_key_records() {
    let key = ed25519_key();
    let signed = sign(
        config(Canon::Relaxed, Canon::Relaxed),
        &key,
        NOW,
        &sample_message(),
    );
    let with = |answer: Answer| only(verify(&signed, NOW, &move |_: &str| answer.clone()));
    assert_eq!(
        with(Answer::NxDomain),
        DkimResult::PermError("no key".into())
    );
    assert_eq!(with(Answer::NoData), DkimResult::PermError("no key".into()));
    assert!(matches!(
        with(Answer::TempFail("timeout".into())),
        DkimResult::TempError(_)
    ));
    assert!(matches!(
        with(Answer::PermFail("FORMERR".into())),
        DkimResult::PermError(_)
    ));
    assert_eq!(
        with(txt("v=DKIM1; k=ed25519; p=")),
        DkimResult::PermError("key revoked".into())
    );
    assert!(matches!(
        with(txt("v=DKIM1; k=ed25519; p=!!!")),
        DkimResult::PermError(_)
    ));
    let record = key.public_key_record();
    assert_eq!(
        with(txt(&format!("{record}; h=sha1"))),
        DkimResult::PermError("key does not allow sha256 (h=)".into())
    );
    assert_eq!(
        with(txt(&format!("{record}; s=other"))),
        DkimResult::PermError("key not for email (s=)".into())
    );
    assert_eq!(with(txt(&format!("{record}; t=y"))), DkimResult::Pass);
    // A CNAME-chained answer and an unrelated TXT record beside the key.
    let answer = Answer::Records {
        records: vec![
            Record::Txt(b"google-site-verification=abc".to_vec()),
            Record::Txt(record.clone().into_bytes()),
        ],
        ttl: 60,
        canonical_name: "sel.keys.example.net".into(),
    };
    assert_eq!(with(answer), DkimResult::Pass);
    // Unanswered: a temperror, not a pass.
    let mut v = Verifier::new(VerifyLimits::default());
    v.feed(&signed);
    v.finish_body();
    assert_eq!(v.key_queries(), ["sel._domainkey.example.com"]);
    assert!(matches!(v.results(NOW)[0].result, DkimResult::TempError(_)));
}

#[test]
fn rsa_key_sizes() {
    // RFC 8463's 1024-bit key verifies only if 1024 bits are allowed.
    let message = crlf(RFC8463_SIGNED);
    let dns = |_: &str| txt(RFC8463_RSA_RECORD);
    let strict = VerifyLimits {
        min_rsa_bits: 2048,
        ..VerifyLimits::default()
    };
    let mut v = Verifier::new(strict);
    v.feed(&message);
    v.finish_body();
    for q in v.key_queries() {
        v.key_answer(&q, &dns(&q));
    }
    assert_eq!(
        v.results(1528637909)[1].result,
        DkimResult::PermError("RSA key too short (1024 bits)".into())
    );
    // 512 bits (made with openssl for this test) is never accepted.
    let weak = "v=DKIM1; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANNx4Q2XI+Ai4f/GWzkTX6ZHb8WhDZ+SeaxEvYqUS1HIcLBETqmGuM8iaqPzxp57YV8XwEEwnexw/2lxhLQxqT0CAwEAAQ==";
    assert_eq!(PublicKeyRecord::parse(weak).unwrap().rsa_bits, 512);
    let results = verify(&message, 1528637909, &|_: &str| txt(weak));
    assert_eq!(
        results[1].result,
        DkimResult::PermError("RSA key too short (512 bits)".into())
    );
    // ring signs with RSA 2048 and up only; the 1024-bit key is refused for signing.
    let der = petrel_core::dkim::pem_decode(RSA_1024_PEM, "PRIVATE KEY").unwrap();
    assert!(SigningKey::from_pkcs8_der(&der).is_err());
}

#[test]
fn malformed_signatures_are_permerrors() {
    let key = ed25519_key();
    let dns = dns_for(&key);
    let signed = String::from_utf8(sign(
        config(Canon::Relaxed, Canon::Relaxed),
        &key,
        NOW,
        &sample_message(),
    ))
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (signed.replace("v=1;", "v=2;"), "unsupported version"),
        (signed.replace("a=ed25519-sha256", "a=rsa-sha1"), "rsa-sha1"),
        (
            signed.replace("a=ed25519-sha256", "a=ed448-sha256"),
            "unknown algorithm",
        ),
        (
            signed.replace("c=relaxed/relaxed", "c=bogus/relaxed"),
            "unknown canonicalization",
        ),
        (signed.replace("h=from:from:", "h="), "From is not signed"),
        (
            signed.replace("d=example.com;", "d=example.com; i=joe@evil.example;"),
            "i= is not in",
        ),
        (
            signed.replace("d=example.com;", "d=example.com; q=http/json;"),
            "q= has no dns/txt",
        ),
        (signed.replace("s=sel;", "s=sel; s=sel;"), "duplicate tag"),
        (signed.replace("s=sel;", ""), "missing tag s="),
        (signed.replace("t=", "t=-"), "bad t="),
        (signed.replace("bh=", "bh=*"), "bh= is not base64"),
        (format!("DKIM-Signature: v=1\r\n{signed}"), "missing tag"),
    ];
    for (message, why) in cases {
        let results = verify(message.as_bytes(), NOW, &dns);
        let r = &results[0].result;
        assert!(
            matches!(r, DkimResult::PermError(m) if m.contains(why)),
            "{why}: got {r:?}"
        );
    }
    // A subdomain identity is allowed (the signature then fails only because i= was added
    // after signing), unless the key says t=s.
    let sub = signed.replace("d=example.com;", "d=example.com; i=joe@news.example.com;");
    assert_eq!(
        only(verify(sub.as_bytes(), NOW, &dns)),
        DkimResult::Fail("signature did not verify".into())
    );
    let strict = format!("{}; t=s", key.public_key_record());
    assert_eq!(
        only(verify(sub.as_bytes(), NOW, &|_: &str| txt(&strict))),
        DkimResult::PermError("i= is a subdomain of d= but the key has t=s".into())
    );
    let same = signed.replace("d=example.com;", "d=example.com; i=joe@example.com;");
    assert_eq!(
        only(verify(same.as_bytes(), NOW, &|_: &str| txt(&strict))),
        DkimResult::Fail("signature did not verify".into())
    );
}

#[test]
fn strict_identity_flag() {
    // Sign a message whose field carries i= by building the header ourselves: sign, then verify
    // with the key's t=s. The signer writes no i=, so the identity check passes.
    let key = ed25519_key();
    let record = format!("{}; t=s", key.public_key_record());
    let signed = sign(
        config(Canon::Relaxed, Canon::Relaxed),
        &key,
        NOW,
        &sample_message(),
    );
    assert_eq!(
        only(verify(&signed, NOW, &|_: &str| txt(&record))),
        DkimResult::Pass
    );
}

#[test]
fn no_signature_and_limits() {
    assert!(verify(&sample_message(), NOW, &|_: &str| Answer::NxDomain).is_empty());
    // Six signatures: five are checked, and one key query serves all of them.
    let key = ed25519_key();
    let mut message = sample_message();
    for i in 0..6 {
        message = sign(
            config(Canon::Relaxed, Canon::Relaxed),
            &key,
            NOW + i,
            &message,
        );
    }
    let mut v = Verifier::new(VerifyLimits::default());
    v.feed(&message);
    v.finish_body();
    assert_eq!(v.key_queries().len(), 1);
    let dns = dns_for(&key);
    for q in v.key_queries() {
        v.key_answer(&q, &dns(&q));
    }
    let results = v.results(NOW);
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r.result == DkimResult::Pass));
    // A header over the limit.
    let mut big = b"DKIM-Signature: v=1; d=example.com; s=sel\r\n".to_vec();
    for _ in 0..30_000 {
        big.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    big.extend_from_slice(&sample_message());
    assert_eq!(
        only(verify(&big, NOW, &dns)),
        DkimResult::PermError("header too large".into())
    );
    let mut signer = Signer::new(config(Canon::Simple, Canon::Simple), key, NOW);
    signer.feed(&big);
    assert_eq!(signer.finish().unwrap_err(), DkimError::HeaderTooLarge);
}

#[test]
fn signer_refuses_what_it_cannot_sign() {
    let key = ed25519_key();
    let mut s = Signer::new(SignerConfig::new("example.com", "sel"), key.clone(), NOW);
    s.feed(b"To: bob@example.net\r\n\r\nbody\r\n");
    assert_eq!(s.finish().unwrap_err(), DkimError::NoFrom);
    let mut s = Signer::new(SignerConfig::new("exa mple.com", "sel"), key, NOW);
    s.feed(&sample_message());
    assert!(matches!(s.finish(), Err(DkimError::Config(_))));
}

fn signed_messages() -> Vec<(Vec<u8>, Arc<SigningKey>)> {
    let mut out = Vec::new();
    for (i, key) in keys().into_iter().enumerate() {
        let (h, b) = CANONS[i * 3];
        let mut c = config(h, b);
        c.body_length = i == 0;
        out.push((sign(c, &key, NOW, &sample_message()), key));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_result(cuts in proptest::collection::vec(0usize..2000, 0..8)) {
        for (message, key) in signed_messages() {
            let dns = dns_for(&key);
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (message.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&message[at..c]);
                at = c;
            }
            chunks.push(&message[at..]);
            let results = verify_chunks(&chunks, NOW, &dns);
            prop_assert_eq!(results.len(), 1);
            prop_assert_eq!(&results[0].result, &DkimResult::Pass);
            // The signer too: the same field whatever the chunking.
            let mut whole = Signer::new(config(Canon::Relaxed, Canon::Relaxed), key.clone(), NOW);
            whole.feed(&message);
            let mut pieces = Signer::new(config(Canon::Relaxed, Canon::Relaxed), key.clone(), NOW);
            for c in &chunks {
                pieces.feed(c);
            }
            prop_assert_eq!(whole.finish(), pieces.finish());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=; b=AAAA\r\n".to_vec()),
            Just(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=e.x; s=s; l=3; x=1; t=2; h=from:from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\nFrom: a\r\n\r\n".to_vec()),
        ],
        body in proptest::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'\t'), Just(b':'), Just(b';'), Just(b'='),
            any::<u8>()
        ], 0..400),
        record in proptest::collection::vec(any::<u8>(), 0..80),
        chunk in 1usize..50,
    ) {
        let mut message = prefix;
        message.extend_from_slice(&body);
        let mut v = Verifier::new(VerifyLimits::default());
        for c in message.chunks(chunk) {
            v.feed(c);
        }
        v.finish_body();
        for q in v.key_queries() {
            v.key_answer(&q, &Answer::Records {
                records: vec![Record::Txt(record.clone())],
                ttl: 1,
                canonical_name: q.clone(),
            });
        }
        let _ = v.results(NOW);
        let _ = PublicKeyRecord::parse(&String::from_utf8_lossy(&record));
        let mut s = Signer::new(config(Canon::Relaxed, Canon::Simple), ed25519_key(), NOW);
        s.feed(&message);
        if let Ok(field) = s.finish() {
            // Whatever it signed verifies.
            let mut signed = field.into_bytes();
            signed.extend_from_slice(&message);
            let key = ed25519_key();
            let results = verify(&signed, NOW, &dns_for(&key));
            prop_assert_eq!(&results[0].result, &DkimResult::Pass, "{}", String::from_utf8_lossy(&signed));
        }
    }
}
