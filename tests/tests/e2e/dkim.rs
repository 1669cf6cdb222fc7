//! `petrel dkim keygen`: the printed TXT record parses as a DKIM key record and matches the
//! private key stored under DATA_DIR/dkim/, so a message signed with the stored key verifies
//! with the published record.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use petrel_core::dkim::{
    DkimResult, PublicKeyRecord, Signer, SignerConfig, Verifier, VerifyLimits,
};
use petrel_core::dns::{Answer, Record};
use petrel_store::RealFs;
use petrel_tests::{Runtime, Server, ServerOptions};

use crate::fail;

/// Runs keygen; returns (TXT owner name, joined record text).
fn keygen(s: &Server, args: &[&str]) -> (String, String) {
    let mut all = vec!["dkim", "keygen"];
    all.extend_from_slice(args);
    let out = s.petrel(&all, b"");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        fail(
            s,
            format!(
                "petrel {all:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let line = stdout.trim();
    let (owner, rest) = line.split_once(" IN TXT ( ").expect("record line");
    assert!(rest.ends_with(" )"), "{line}");
    let strings: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
    assert!(strings.iter().all(|s| s.len() <= 255), "{line}");
    (owner.to_string(), strings.concat())
}

fn sign_and_verify(s: &Server, domain: &str, selector: &str, record: &str) -> DkimResult {
    let keys = petrel_store::dkim_keys::keys_for(&RealFs, &s.data_dir(), domain)
        .unwrap_or_else(|e| fail(s, format!("keys_for: {e}")));
    let key = keys
        .into_iter()
        .find(|(sel, _)| sel == selector)
        .unwrap_or_else(|| fail(s, format!("no stored key for {selector}")))
        .1;
    let message = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
    let mut signer = Signer::new(
        SignerConfig::new(domain, selector),
        Arc::new(key),
        1_800_000_000,
    );
    signer.feed(message);
    let mut signed = signer.finish().unwrap().into_bytes();
    signed.extend_from_slice(message);
    let mut v = Verifier::new(VerifyLimits::default());
    v.feed(&signed);
    v.finish_body();
    let answer = Answer::Records {
        records: vec![Record::Txt(record.as_bytes().to_vec())],
        ttl: 300,
        canonical_name: format!("{selector}._domainkey.{domain}"),
    };
    for q in v.key_queries() {
        assert_eq!(q, format!("{selector}._domainkey.{domain}"));
        v.key_answer(&q, &answer);
    }
    v.results(1_800_000_000).remove(0).result
}

#[test]
fn keygen_prints_a_record_matching_the_stored_key() {
    let s = Server::start(Runtime::Smol, ServerOptions::default());
    for (selector, algorithm, k) in [("rsa1", None, "rsa"), ("ed1", Some("ed25519"), "ed25519")] {
        let mut args = vec!["example.test", "--selector", selector];
        if let Some(a) = algorithm {
            args.extend(["--algorithm", a]);
        }
        let (owner, record) = keygen(&s, &args);
        assert_eq!(owner, format!("{selector}._domainkey.example.test."));
        let parsed = PublicKeyRecord::parse(&record)
            .unwrap_or_else(|e| fail(&s, format!("printed record {record:?}: {e}")));
        assert!(record.contains(&format!("k={k};")), "{record}");
        if k == "rsa" {
            assert_eq!(parsed.rsa_bits, 2048, "RSA 2048 by default");
        }
        let path = s
            .data_dir()
            .join(format!("dkim/example.test/{selector}.pem"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        assert_eq!(
            sign_and_verify(&s, "example.test", selector, &record),
            DkimResult::Pass
        );
    }

    // An existing key is kept unless --force.
    let before = std::fs::read(s.data_dir().join("dkim/example.test/ed1.pem")).unwrap();
    let out = s.petrel(
        &["dkim", "keygen", "example.test", "--selector", "ed1"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(s.data_dir().join("dkim/example.test/ed1.pem")).unwrap(),
        before
    );
    let (_, record) = keygen(
        &s,
        &[
            "example.test",
            "--selector",
            "ed1",
            "--algorithm",
            "ed25519",
            "--force",
        ],
    );
    assert_ne!(
        std::fs::read(s.data_dir().join("dkim/example.test/ed1.pem")).unwrap(),
        before
    );
    assert_eq!(
        sign_and_verify(&s, "example.test", "ed1", &record),
        DkimResult::Pass
    );

    // Names that could escape DATA_DIR/dkim/ are usage errors.
    for bad in [["../etc", "s"], ["example.test", "../../x"]] {
        let out = s.petrel(&["dkim", "keygen", bad[0], "--selector", bad[1]], b"");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}
