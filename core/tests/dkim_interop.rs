//! Interoperability with an independent DKIM implementation, Python's dkimpy (Debian package
//! `python3-dkim`, which `scripts/test` installs): Petrel signs and dkimpy verifies, dkimpy
//! signs and Petrel verifies, for RSA and Ed25519 and every canonicalization pair. Fails (never
//! skips) when no Python with dkimpy is found, as the other outside-client tests do.

mod dkim_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;

use dkim_support::*;
use petrel_core::dkim::{Canon, DkimResult, SigningKey};
use petrel_core::dns::Answer;

const NOW: i64 = 1_795_000_000;

/// dkimpy driven from the command line: `verify NAME=RECORD...` or
/// `sign SELECTOR DOMAIN ALGORITHM HEADER_CANON BODY_CANON KEY`, the message on stdin.
const SCRIPT: &str = r#"
import sys, dkim
mode = sys.argv[1]
msg = sys.stdin.buffer.read()
if mode == "verify":
    records = {}
    for pair in sys.argv[2:]:
        name, record = pair.split("=", 1)
        records[(name + ".").encode()] = record.encode()
    def dnsfunc(name, timeout=5):
        return records.get(name)
    print("pass" if dkim.verify(msg, dnsfunc=dnsfunc) else "fail")
else:
    sel, dom, alg, hc, bc, key = sys.argv[2:8]
    sig = dkim.sign(msg, sel.encode(), dom.encode(), key.encode(),
                    signature_algorithm=alg.encode(),
                    canonicalize=(hc.encode(), bc.encode()),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    sys.stdout.buffer.write(sig)
"#;

/// A Python interpreter that can import dkimpy (pyenv's `python3` may not see Debian's
/// packages, so `/usr/bin/python3` is tried too).
fn python() -> &'static str {
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import dkim, nacl"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate;
        }
    }
    panic!("no python3 with dkimpy: install python3-dkim (scripts/test does)");
}

fn dkimpy(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dkimpy {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn dkimpy_verify(message: &[u8], name: &str, record: &str) -> String {
    let out = dkimpy(&["verify", &format!("{name}={record}")], message);
    String::from_utf8_lossy(&out).trim().to_string()
}

fn keys() -> Vec<(Arc<SigningKey>, &'static str, String)> {
    vec![
        (rsa_key(), "rsa-sha256", RSA_2048_PEM.to_string()),
        // dkimpy takes an Ed25519 private key as the base64 of its 32-byte seed.
        (
            ed25519_key(),
            "ed25519-sha256",
            "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=".to_string(),
        ),
    ]
}

const CANONS: [(Canon, Canon); 4] = [
    (Canon::Simple, Canon::Simple),
    (Canon::Simple, Canon::Relaxed),
    (Canon::Relaxed, Canon::Simple),
    (Canon::Relaxed, Canon::Relaxed),
];

#[test]
fn petrel_signs_dkimpy_verifies() {
    for (key, alg, _) in keys() {
        let record = key.public_key_record();
        for (h, b) in CANONS {
            for (oversign, body_length) in [(true, false), (false, true)] {
                let mut c = config(h, b);
                c.oversign = oversign;
                c.body_length = body_length;
                c.expire_after = Some(86400 * 365 * 100);
                let signed = sign(c, &key, NOW, &sample_message());
                assert_eq!(
                    dkimpy_verify(&signed, "sel._domainkey.example.com", &record),
                    "pass",
                    "{alg} {h:?}/{b:?} oversign {oversign} l= {body_length}\n{}",
                    String::from_utf8_lossy(&signed)
                );
            }
        }
        // dkimpy's verdict is not vacuous: a tampered message fails there too.
        let signed = sign(
            config(Canon::Relaxed, Canon::Relaxed),
            &key,
            NOW,
            &sample_message(),
        );
        let tampered = String::from_utf8(signed)
            .unwrap()
            .replace("Hi Bob", "Hi Rob");
        assert_eq!(
            dkimpy_verify(tampered.as_bytes(), "sel._domainkey.example.com", &record),
            "fail"
        );
    }
}

#[test]
fn dkimpy_signs_petrel_verifies() {
    for (key, alg, private) in keys() {
        let record = key.public_key_record();
        for (h, b) in CANONS {
            let message = sample_message();
            let field = dkimpy(
                &[
                    "sign",
                    "sel",
                    "example.com",
                    alg,
                    h.as_str(),
                    b.as_str(),
                    &private,
                ],
                &message,
            );
            let mut signed = field.clone();
            signed.extend_from_slice(&message);
            let dns = |name: &str| {
                if name == "sel._domainkey.example.com" {
                    txt(&record)
                } else {
                    Answer::NxDomain
                }
            };
            let results = verify(&signed, NOW, &dns);
            assert_eq!(results.len(), 1);
            assert_eq!(
                results[0].result,
                DkimResult::Pass,
                "{alg} {h:?}/{b:?}\n{}",
                String::from_utf8_lossy(&signed)
            );
            assert_eq!(results[0].algorithm, alg);
            // And a change dkimpy's signature covers is caught.
            let tampered = String::from_utf8(signed)
                .unwrap()
                .replace("Subject: Lunch", "Subject: Dinner");
            assert_eq!(
                verify(tampered.as_bytes(), NOW, &dns)[0].result,
                DkimResult::Fail("signature did not verify".into())
            );
        }
    }
}

#[test]
fn dkimpy_agrees_on_the_rfc8463_example() {
    // The shared vector, checked by both sides: dkimpy verifies the first (Ed25519) signature.
    let message = crlf(RFC8463_SIGNED);
    assert_eq!(
        dkimpy_verify(
            &message,
            "brisbane._domainkey.football.example.com",
            RFC8463_ED25519_RECORD
        ),
        "pass"
    );
}
