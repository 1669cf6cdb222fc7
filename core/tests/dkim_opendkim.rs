//! Interoperability with OpenDKIM's library through `opendkim-testmsg` (Debian package
//! `opendkim-tools`, which `scripts/test` installs): Petrel signs and OpenDKIM verifies, for
//! Ed25519 and RSA and every canonicalization pair; OpenDKIM signs and Petrel judges.
//!
//! `opendkim-testmsg` has no option for a key file or a resolver when verifying: it asks the
//! system resolver (glibc, `/etc/resolv.conf`, port 53). So each verification runs in private
//! network, mount and PID namespaces (`unshare`, as root): a dnsmasq on 127.0.0.1:53 there
//! serves the one key record, a bind mount puts a `resolv.conf` naming it over the real one, and
//! everything in the namespace dies with `opendkim-testmsg`. Fails (never skips) when the tools
//! or the privileges are missing, as the other outside-tool tests do.
//!
//! `opendkim-testmsg` signs with rsa-sha1 only (hard-coded, no option), which Petrel refuses
//! (RFC 8301), so that direction checks the refusal and that OpenDKIM accepts its own signature.

mod dkim_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dkim_support::*;
use petrel_core::dkim::{Canon, DkimResult, SigningKey};
use petrel_core::dns::Answer;

const NOW: i64 = 1_795_000_000;
const DOMAIN: &str = "example.test";
const KEY_NAME: &str = "sel._domainkey.example.test";

const TESTMSG: &str = "/usr/sbin/opendkim-testmsg";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Run inside the namespaces: loopback up, our resolv.conf over the real one, dnsmasq (which
/// returns once it listens, then runs on as a daemon until the namespace ends), then
/// `opendkim-testmsg` as the namespace's last process, the message on its stdin.
const SCRIPT: &str = r#"set -e
PATH="$PATH:/usr/sbin:/sbin"
ip link set lo up
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
"$DNSMASQ" --conf-file=/dev/null --pid-file= --user=root --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces --port=53 --local=/test/ \
    "--txt-record=$KEY_NAME,$RECORD"
exec "$TESTMSG" < "$DIR/message"
"#;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("petrel-opendkim-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install {package} (scripts/test does)"
    );
}

/// OpenDKIM's verdict on `message` with `record` published at [`KEY_NAME`]: `Ok(())` when
/// `opendkim-testmsg` exits 0, else its error line.
fn opendkim_verify(message: &[u8], record: &str) -> Result<(), String> {
    require(TESTMSG, "opendkim-tools");
    require(DNSMASQ, "dnsmasq-base");
    let dir = TempDir::new();
    std::fs::write(dir.0.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    std::fs::write(dir.0.join("message"), message).unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--pid", "--fork", "sh", "-c", SCRIPT])
        .env("DIR", &dir.0)
        .env("DNSMASQ", DNSMASQ)
        .env("TESTMSG", TESTMSG)
        .env("KEY_NAME", KEY_NAME)
        .env("RECORD", record)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !stderr.contains("unshare:") && !stderr.contains("dnsmasq:") && !stderr.contains("mount:"),
        "the namespace setup failed (this test needs root for unshare): {stderr}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr)
    }
}

/// `opendkim-testmsg -C` signing `message` with the PEM key `pem`: the signed message.
fn opendkim_sign(message: &[u8], pem: &str) -> Vec<u8> {
    require(TESTMSG, "opendkim-tools");
    let dir = TempDir::new();
    let key = dir.0.join("key.pem");
    std::fs::write(&key, pem).unwrap();
    // -C keeps CRLF in the field it writes (without it the field is printed with stray bytes
    // after b= when the CRs are stripped in place).
    let mut child = Command::new(TESTMSG)
        .args(["-C", "-d", DOMAIN, "-s", "sel", "-k"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run opendkim-testmsg");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out: Output = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "opendkim-testmsg signing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The sample message with addresses in the test domain (OpenDKIM refuses, as a syntax error, a
/// message without Date:, which the sample has).
fn message() -> Vec<u8> {
    String::from_utf8(sample_message())
        .unwrap()
        .replace("example.com", DOMAIN)
        .into_bytes()
}

fn petrel_config(h: Canon, b: Canon) -> petrel_core::dkim::SignerConfig {
    let mut c = config(h, b);
    c.domain = DOMAIN.into();
    c
}

fn dns_for(record: String) -> impl Fn(&str) -> Answer {
    move |name: &str| {
        if name == KEY_NAME {
            txt(&record)
        } else {
            Answer::NxDomain
        }
    }
}

fn keys() -> Vec<(Arc<SigningKey>, &'static str)> {
    vec![(ed25519_key(), "ed25519-sha256"), (rsa_key(), "rsa-sha256")]
}

const CANONS: [(Canon, Canon); 4] = [
    (Canon::Simple, Canon::Simple),
    (Canon::Simple, Canon::Relaxed),
    (Canon::Relaxed, Canon::Simple),
    (Canon::Relaxed, Canon::Relaxed),
];

#[test]
fn petrel_signs_opendkim_verifies() {
    for (key, alg) in keys() {
        let record = key.public_key_record();
        for (h, b) in CANONS {
            let signed = sign(petrel_config(h, b), &key, NOW, &message());
            let text = String::from_utf8_lossy(&signed).to_string();
            assert!(text.contains(&format!("a={alg};")), "{text}");
            assert_eq!(
                opendkim_verify(&signed, &record),
                Ok(()),
                "{alg} {h:?}/{b:?}\n{text}"
            );
        }
        // OpenDKIM's verdict is not vacuous: a changed word, and another key, fail there.
        let signed = String::from_utf8(sign(
            petrel_config(Canon::Relaxed, Canon::Relaxed),
            &key,
            NOW,
            &message(),
        ))
        .unwrap();
        let tampered = signed.replace("Hi Bob", "Hi Rob");
        let verdict = opendkim_verify(tampered.as_bytes(), &record);
        assert!(
            matches!(&verdict, Err(e) if e.contains("Bad signature")),
            "{alg}: {verdict:?}"
        );
        let other = if alg == "rsa-sha256" {
            ed25519_key()
        } else {
            rsa_key()
        };
        let verdict = opendkim_verify(signed.as_bytes(), &other.public_key_record());
        assert!(verdict.is_err(), "{alg} with the wrong key: {verdict:?}");
    }
}

#[test]
fn opendkim_signs_petrel_refuses_rsa_sha1() {
    let key = rsa_key();
    let record = key.public_key_record();
    let signed = opendkim_sign(&message(), RSA_2048_PEM);
    let text = String::from_utf8_lossy(&signed).to_string();
    assert!(
        text.starts_with("DKIM-Signature: v=1; a=rsa-sha1;"),
        "{text}"
    );
    assert!(
        text.ends_with(&String::from_utf8(message()).unwrap()),
        "{text}"
    );
    // OpenDKIM accepts its own signature through the same DNS set-up...
    assert_eq!(opendkim_verify(&signed, &record), Ok(()), "{text}");
    // ...and Petrel refuses the algorithm, as RFC 8301 requires, before any hash.
    let results = verify(&signed, NOW, &dns_for(record));
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        matches!(&results[0].result, DkimResult::PermError(m) if m.contains("rsa-sha1")),
        "{:?}",
        results[0].result
    );
}
