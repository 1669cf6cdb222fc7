//! STARTTLS: pipelined commands behind STARTTLS are discarded, the session state is reset,
//! and mail received inside TLS is stamped ESMTPS with the TLS version.

use petrel_tests::{Delivery, Listener, Runtime, Server, ServerOptions, python, sample_message};

use crate::{expect_messages, expect_one_delivery, fail, printed, temp_file};

both_runtimes!(
    starttls_discards_pipelined_commands_on_submission,
    starttls_discards_pipelined_commands_on_smtp,
    starttls_on_smtp_resets_state_and_delivers,
    certificate_generated_once
);

fn starttls_discards_pipelined_commands_on_submission(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    python(
        "starttls_injection.py",
        sargs![
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display(),
            "--user",
            "alice@example.test",
            "--password",
            "alice-pw"
        ],
    );
}

fn starttls_discards_pipelined_commands_on_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    python(
        "starttls_injection.py",
        sargs![
            "--port",
            s.port(Listener::Smtp),
            "--cafile",
            s.cafile().display()
        ],
    );
    expect_messages(&s, "alice@example.test", 0);
}

fn starttls_on_smtp_resets_state_and_delivers(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg = sample_message("inbound-tls");
    let file = temp_file(&s, "tls.eml", &msg);
    let out = python(
        "starttls_smtp.py",
        sargs![
            "--port",
            s.port(Listener::Smtp),
            "--cafile",
            s.cafile().display(),
            "--message-file",
            file.display()
        ],
    );
    if !printed(&out, "DATA-REPLY")
        .unwrap_or_default()
        .starts_with("250 2.0.0")
    {
        fail(
            &s,
            format!("DATA reply inside TLS should be 250 2.0.0:\n{out}"),
        );
    }
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTPS"),
        tls: true,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "alice@example.test", &want);
}

/// The self-signed pair is generated on first start and reused (not regenerated) on restart.
fn certificate_generated_once(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    let cert = std::fs::read(s.cafile())
        .unwrap_or_else(|e| fail(&s, format!("no DATA_DIR/tls/cert.pem: {e}")));
    let key_path = s.data_dir().join("tls").join("key.pem");
    let key = std::fs::read(&key_path)
        .unwrap_or_else(|e| fail(&s, format!("no DATA_DIR/tls/key.pem: {e}")));
    if !String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE") {
        fail(&s, "cert.pem is not a PEM certificate");
    }
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY") {
        fail(&s, "key.pem is not a PEM private key");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        fail(
            &s,
            format!("key.pem is readable by group/others (mode {mode:o})"),
        );
    }
    s.restart();
    if std::fs::read(s.cafile()).ok() != Some(cert) || std::fs::read(&key_path).ok() != Some(key) {
        fail(&s, "the TLS pair was regenerated on restart");
    }
    // and the reused pair still verifies
    let out = python(
        "ehlo_features.py",
        sargs![
            "--mode",
            "ssl",
            "--port",
            s.port(Listener::Submissions),
            "--cafile",
            s.cafile().display()
        ],
    );
    if printed(&out, "FEATURE AUTH").is_none() {
        fail(&s, format!("no AUTH after restart:\n{out}"));
    }
}
