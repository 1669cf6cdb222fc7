//! DKIM against the RFCs' own examples: the signed message of RFC 8463 Appendix A (Ed25519 and
//! RSA signatures made by another implementation, with the keys published in the RFC) and the
//! canonicalization examples of RFC 6376 3.4.5.

mod dkim_support;

use dkim_support::*;
use petrel_core::dkim::{
    BodyCanonicalizer, Canon, DkimResult, Signer, SignerConfig, header_field, split_header,
};
use petrel_core::dns::Answer;

/// RFC 8463 A.3's signing time.
const T: i64 = 1528637909;

fn rfc8463_dns(name: &str) -> Answer {
    match name {
        "brisbane._domainkey.football.example.com" => txt(RFC8463_ED25519_RECORD),
        "test._domainkey.football.example.com" => txt(RFC8463_RSA_RECORD),
        _ => Answer::NxDomain,
    }
}

#[test]
fn rfc8463_example_verifies_with_the_published_keys() {
    let message = crlf(RFC8463_SIGNED);
    let results = verify(&message, T + 3600, &rfc8463_dns);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].result, DkimResult::Pass, "ed25519: {results:?}");
    assert_eq!(results[0].algorithm, "ed25519-sha256");
    assert_eq!(results[0].selector, "brisbane");
    assert_eq!(results[0].domain, "football.example.com");
    assert_eq!(
        results[0].identity.as_deref(),
        Some("@football.example.com")
    );
    assert_eq!(results[0].header_b, "/gCrinpc");
    assert_eq!(results[1].result, DkimResult::Pass, "rsa: {results:?}");
    assert_eq!(results[1].algorithm, "rsa-sha256");
    assert_eq!(results[1].header_b, "F45dVWDf");
}

#[test]
fn rfc8463_example_one_byte_at_a_time() {
    let message = crlf(RFC8463_SIGNED);
    let chunks: Vec<&[u8]> = message.chunks(1).collect();
    let results = verify_chunks(&chunks, T, &rfc8463_dns);
    assert!(results.iter().all(|r| r.result == DkimResult::Pass));
}

#[test]
fn rfc8463_example_tampered() {
    let message = String::from_utf8(crlf(RFC8463_SIGNED)).unwrap();
    let body = message.replace("We lost the game.", "We won the game.");
    for r in verify(body.as_bytes(), T, &rfc8463_dns) {
        assert_eq!(
            r.result,
            DkimResult::Fail("body hash did not verify".into())
        );
    }
    let header = message.replace("Is dinner ready?", "Is lunch ready?");
    for r in verify(header.as_bytes(), T, &rfc8463_dns) {
        assert_eq!(
            r.result,
            DkimResult::Fail("signature did not verify".into())
        );
    }
    // Relaxed canonicalization tolerates whitespace changes.
    let spaced = message.replace("Subject: Is dinner", "Subject:   Is  dinner");
    for r in verify(spaced.as_bytes(), T, &rfc8463_dns) {
        assert_eq!(r.result, DkimResult::Pass);
    }
    // The keys swapped: wrong key type for each.
    let swapped = |name: &str| match name {
        "brisbane._domainkey.football.example.com" => txt(RFC8463_RSA_RECORD),
        _ => txt(RFC8463_ED25519_RECORD),
    };
    for r in verify(message.as_bytes(), T, &swapped) {
        assert_eq!(
            r.result,
            DkimResult::PermError("key type does not match a=".into())
        );
    }
}

#[test]
fn rfc8463_private_key_matches_its_published_record() {
    // The seed of RFC 8463 A.1 gives the public key of A.2, and a signature Petrel makes with it
    // verifies against the published record.
    let key = ed25519_key();
    assert_eq!(key.public_key_record(), RFC8463_ED25519_RECORD);
    let unsigned = crlf(RFC8463_SIGNED);
    let start = unsigned
        .windows(6)
        .position(|w| w == b"From: ")
        .expect("From");
    let mut config = SignerConfig::new("football.example.com", "brisbane");
    config.headers = ["from", "to", "subject", "date", "message-id"]
        .map(String::from)
        .to_vec();
    let mut signer = Signer::new(config, key, T);
    signer.feed(&unsigned[start..]);
    let field = signer.finish().unwrap();
    // The body hash is the one the RFC's signatures carry.
    let flat = field.replace("\r\n\t", " ");
    assert!(
        flat.contains("bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;"),
        "{field}"
    );
    let mut signed = field.into_bytes();
    signed.extend_from_slice(&unsigned[start..]);
    let results = verify(&signed, T, &rfc8463_dns);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].result, DkimResult::Pass);
}

/// RFC 6376 3.4.5's input, `<SP>` and `<HTAB>` written out.
const EXAMPLE: &[u8] = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";

fn canonicalize(header: Canon, body: Canon) -> (Vec<u8>, Vec<u8>) {
    let split = EXAMPLE.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut h = Vec::new();
    for f in split_header(&EXAMPLE[..split]) {
        header_field(header, &f.raw, &mut h);
    }
    let mut b = Vec::new();
    // Body fed in two uneven pieces to exercise the streaming state.
    let body_bytes = &EXAMPLE[split + 2..];
    let mut c = BodyCanonicalizer::new(body);
    c.write(&body_bytes[..3], &mut |p| b.extend_from_slice(p));
    c.write(&body_bytes[3..], &mut |p| b.extend_from_slice(p));
    c.finish(&mut |p| b.extend_from_slice(p));
    (h, b)
}

#[test]
fn rfc6376_3_4_5_relaxed() {
    let (h, b) = canonicalize(Canon::Relaxed, Canon::Relaxed);
    assert_eq!(h, b"a:X\r\nb:Y Z\r\n");
    assert_eq!(b, b" C\r\nD E\r\n");
}

#[test]
fn rfc6376_3_4_5_simple() {
    let (h, b) = canonicalize(Canon::Simple, Canon::Simple);
    assert_eq!(h, b"A: X\r\nB : Y\t\r\n\tZ  \r\n");
    assert_eq!(b, b" C \r\nD \t E\r\n");
}
