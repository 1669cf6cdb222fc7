//! Mail authentication end to end, with a real DNS server (dnsmasq): alice's mail, submitted on
//! one Petrel, leaves DKIM-signed (key made by `petrel dkim keygen`) and arrives at a second
//! Petrel that checks SPF, DKIM and DMARC and records them in Authentication-Results; a forgery
//! of alice's domain is refused as its DMARC policy asks; a forged Authentication-Results field
//! naming the receiver is removed.

use std::process::Command;
use std::time::{Duration, Instant};

use petrel_tests::{
    ALICE, Account, Dnsmasq, Listener, Runtime, Server, ServerOptions, SmtpConn, petrel_bin, swaks,
};

use crate::fail;

const DAVE: Account = Account {
    address: "dave@remote.test",
    password: "dave-pw",
};

/// Makes an Ed25519 key for example.test with `petrel dkim keygen` in a scratch data directory;
/// returns (the key file, the TXT record text).
fn keygen(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let config = dir.join("scratch.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\ndomains = [\"example.test\"]\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(petrel_bin())
        .args(["--config"])
        .arg(&config)
        .args([
            "dkim",
            "keygen",
            "example.test",
            "--selector",
            "sel",
            "--algorithm",
            "ed25519",
        ])
        .output()
        .expect("run petrel dkim keygen");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let record: String = line.split('"').skip(1).step_by(2).collect();
    assert!(record.contains("k=ed25519"), "{line}");
    (dir.join("data/dkim/example.test/sel.pem"), record)
}

fn wait_for(a: &Server, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > deadline {
            fail(a, format!("after 30 s: {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn signed_mail_passes_and_forgeries_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let (key, record) = keygen(scratch.path());
    let dns = Dnsmasq::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
        "--txt-record=example.test,v=spf1 ip4:127.0.0.1 -all".into(),
        format!("--txt-record=sel._domainkey.example.test,{record}"),
        "--txt-record=_dmarc.example.test,v=DMARC1; p=reject".into(),
    ]);
    let b = Server::start(
        Runtime::Smol,
        ServerOptions {
            domains: vec!["remote.test".into()],
            users: vec![DAVE],
            extra_config: format!("[relay]\nresolver = \"{}\"\n", dns.addr),
            ..Default::default()
        },
    );
    let a = Server::start(
        Runtime::Blocking,
        ServerOptions {
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\n\n[auth]\nallow_plaintext_on_loopback = false\ndkim_sign_headers = [\"From\", \"Subject\", \"To\"]\n",
                dns.addr,
                b.port(Listener::Smtp)
            ),
            ..Default::default()
        },
    );
    // The key is picked up from DATA_DIR/dkim/ without a restart.
    let dest = a.data_dir().join("dkim/example.test");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(&key, dest.join("sel.pem")).unwrap();

    let args = sargs![
        "--server",
        "127.0.0.1",
        "--port",
        a.port(Listener::Submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        ALICE.address,
        "--auth-password",
        ALICE.password,
        "--from",
        ALICE.address,
        "--to",
        DAVE.address,
        "--header",
        "Subject: signed",
        "--body",
        "Signed by Petrel.\n",
    ];
    let done = swaks(&args);
    if !done.success() {
        fail(&a, format!("submission failed\n{}", done.describe()));
    }
    wait_for(&b, "dave's copy", || {
        b.new_messages(DAVE.address).len() == 1
    });
    let text = String::from_utf8_lossy(&b.new_messages(DAVE.address)[0]).into_owned();
    let ar = text
        .split("\r\n")
        .skip_while(|l| !l.starts_with("Authentication-Results: mail.test.example;"))
        .take_while(|l| l.starts_with("Authentication-Results") || l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        ar.contains("spf=pass smtp.mailfrom=alice@example.test"),
        "{ar}\n{text}"
    );
    assert!(
        ar.contains("dkim=pass header.d=example.test header.s=sel"),
        "{ar}\n{text}"
    );
    assert!(
        ar.contains("dmarc=pass (p=reject) header.from=example.test"),
        "{ar}\n{text}"
    );
    assert!(text.contains("DKIM-Signature: "), "{text}");
    // Only the configured fields are signed (each over-signed once).
    let signature: String = text
        .split("DKIM-Signature: ")
        .nth(1)
        .unwrap()
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("")
        .split_whitespace()
        .collect();
    let h = signature
        .split(';')
        .find_map(|t| t.strip_prefix("h="))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut names: Vec<&str> = h.split(':').collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names, ["from", "subject", "to"], "{signature}");

    // A forgery: From alice's domain, envelope elsewhere, no signature.
    let mut c = SmtpConn::ready(b.port(Listener::Smtp));
    c.expect("MAIL FROM:<spoofer@elsewhere.test>", "250");
    c.expect(&format!("RCPT TO:<{}>", DAVE.address), "250");
    c.expect("DATA", "354");
    c.send(b"From: alice@example.test\r\nSubject: pay this invoice\r\n\r\nnow\r\n.\r\n");
    let refused = c.expect_reply("550");
    assert!(
        refused.text().contains("5.7.1") && refused.text().contains("DMARC"),
        "{}",
        c.transcript()
    );

    // A forged Authentication-Results in the receiver's name is removed, others stay.
    c.expect("MAIL FROM:<someone@elsewhere.test>", "250");
    c.expect(&format!("RCPT TO:<{}>", DAVE.address), "250");
    c.expect("DATA", "354");
    c.send(
        b"Authentication-Results: mail.test.example; dmarc=pass header.from=bank.test\r\n\
          Authentication-Results: other.example; spf=pass\r\n\
          From: someone@elsewhere.test\r\nSubject: hi\r\n\r\nx\r\n.\r\n",
    );
    c.expect_reply("250");
    c.quit();
    wait_for(&b, "the second message", || {
        b.new_messages(DAVE.address).len() == 2
    });
    let second = b
        .new_messages(DAVE.address)
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .find(|m| m.contains("Subject: hi"))
        .unwrap();
    assert!(
        !second.contains("dmarc=pass header.from=bank.test"),
        "{second}"
    );
    assert!(
        second.contains("Authentication-Results: other.example; spf=pass"),
        "{second}"
    );
    assert_eq!(
        second
            .matches("Authentication-Results: mail.test.example;")
            .count(),
        1,
        "{second}"
    );
}
