//! `petrel check DOMAIN` against a real DNS server (dnsmasq) and the running server itself:
//! each finding is OK/WARN/FAIL with the record or setting to fix, and the exit code says
//! whether anything failed.

use petrel_tests::{Dnsmasq, Listener, Runtime, Server, ServerOptions};

#[test]
fn check_reports_findings_with_fixes() {
    let dns = Dnsmasq::start(&[
        // The harness's host name is mail.test.example: answer for that zone too.
        "--local=/test.example/".into(),
        "--mx-host=example.test,mail.test.example,10".into(),
        "--host-record=mail.test.example,127.0.0.1".into(),
        "--ptr-record=1.0.0.127.in-addr.arpa,mail.test.example".into(),
        "--txt-record=example.test,v=spf1 mx -all".into(),
        "--mx-host=cname.test,alias.cname.test,10".into(),
        "--cname=alias.cname.test,mail.test.example".into(),
    ]);
    // The server's own SMTP port stands in for port 25 (relay.mx_port).
    let mut s = Server::start(
        Runtime::Blocking,
        ServerOptions {
            extra_config: format!("[relay]\nresolver = \"{}\"\n", dns.addr),
            ..Default::default()
        },
    );
    let smtp = s.port(Listener::Smtp);
    let config = std::fs::read_to_string(s.config_path()).unwrap();
    std::fs::write(
        s.config_path(),
        config.replace("[relay]\n", &format!("[relay]\nmx_port = {smtp}\n")),
    )
    .unwrap();
    s.restart();
    let keygen = s.petrel(
        &[
            "dkim",
            "keygen",
            "example.test",
            "--selector",
            "sel",
            "--algorithm",
            "ed25519",
        ],
        b"",
    );
    assert!(keygen.status.success(), "{keygen:?}");

    let out = s.petrel(&["check", "example.test"], b"");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures give exit 1:\n{report}"
    );
    let has = |prefix: &str, text: &str| {
        report
            .lines()
            .any(|l| l.starts_with(prefix) && l.contains(text))
    };
    assert!(has("OK", "MX: mail.test.example -> 127.0.0.1"), "{report}");
    assert!(has("OK", "PTR: 127.0.0.1 -> mail.test.example"), "{report}");
    assert!(has("OK", "SPF: v=spf1 mx -all"), "{report}");
    assert!(
        has("OK", "SPF: the MX mail.test.example (127.0.0.1) may send"),
        "{report}"
    );
    assert!(
        has("FAIL", "DKIM: selector sel is not published"),
        "{report}"
    );
    assert!(
        report.contains("fix: sel._domainkey.example.test. IN TXT ( \"v=DKIM1; k=ed25519; p="),
        "{report}"
    );
    assert!(
        has("FAIL", "DMARC: example.test publishes no DMARC record"),
        "{report}"
    );
    assert!(
        report.contains("fix: _dmarc.example.test. IN TXT \"v=DMARC1; p=quarantine"),
        "{report}"
    );
    assert!(
        has("OK", "TLS: mail.test.example offers STARTTLS"),
        "{report}"
    );
    assert!(
        has(
            "FAIL",
            "TLS: the certificate of mail.test.example is not valid"
        ),
        "a self-signed certificate is not trusted: {report}"
    );
    assert!(
        has("OK", "relay: mail.test.example refuses to relay"),
        "{report}"
    );

    let cname = s.petrel(&["check", "cname.test"], b"");
    let report = String::from_utf8_lossy(&cname.stdout).into_owned();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("alias.cname.test is a CNAME")),
        "{report}"
    );
    assert_eq!(
        s.petrel(&["check", "not a domain"], b"").status.code(),
        Some(2)
    );
}
