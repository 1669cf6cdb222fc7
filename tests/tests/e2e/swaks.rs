//! swaks (an independent SMTP client) on each listener. swaks must be installed: these tests
//! fail, never skip, without it.

use petrel_tests::{Listener, Runtime, Server, ServerOptions, StoredMessage, contains, swaks};

use crate::{expect_messages, fail};

both_runtimes!(
    swaks_plain_on_smtp,
    swaks_starttls_auth_on_submission,
    swaks_implicit_tls_on_submissions
);

fn run(s: &Server, args: Vec<String>) -> String {
    let done = swaks(&args);
    if !done.success() {
        fail(
            s,
            format!("swaks {} failed\n{}", args.join(" "), done.describe()),
        );
    }
    done.stdout
}

fn base(s: &Server, listener: Listener, from: &str, to: &str, marker: &str) -> Vec<String> {
    sargs![
        "--server",
        "127.0.0.1",
        "--port",
        s.port(listener),
        "--helo",
        "swaks.example",
        "--from",
        from,
        "--to",
        to,
        "--header",
        format!("Subject: {marker}"),
        "--body",
        format!("body of {marker}\n.dot line\n"),
        "--timeout",
        "20"
    ]
}

fn check(s: &Server, user: &str, marker: &str, sender: &str, protocol: &str, tls: bool) {
    let msgs = expect_messages(s, user, 1);
    let m = StoredMessage::parse(&msgs[0]).unwrap_or_else(|e| fail(s, e));
    if m.return_path != sender {
        fail(
            s,
            format!("Return-Path <{}>, expected <{sender}>", m.return_path),
        );
    }
    if m.with_protocol().as_deref() != Some(protocol) {
        fail(s, format!("expected `with {protocol}` in {:?}", m.received));
    }
    if tls != m.received.contains("TLSv1.") {
        fail(
            s,
            format!("TLS mention wrong (tls = {tls}) in {:?}", m.received),
        );
    }
    for needle in [
        format!("Subject: {marker}"),
        format!("body of {marker}\r\n.dot line\r\n"),
    ] {
        if !contains(&m.rest, needle.as_bytes()) {
            fail(
                s,
                format!(
                    "stored message lacks {needle:?}: {:?}",
                    String::from_utf8_lossy(&m.rest)
                ),
            );
        }
    }
}

fn swaks_plain_on_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    run(
        &s,
        base(
            &s,
            Listener::Smtp,
            "sender@remote.example",
            "alice@example.test",
            "swaks-plain",
        ),
    );
    check(
        &s,
        "alice@example.test",
        "swaks-plain",
        "sender@remote.example",
        "ESMTP",
        false,
    );
}

fn swaks_starttls_auth_on_submission(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut args = base(
        &s,
        Listener::Submission,
        "alice@example.test",
        "bob@example.test",
        "swaks-starttls",
    );
    args.extend(sargs![
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        "alice-pw"
    ]);
    run(&s, args);
    check(
        &s,
        "bob@example.test",
        "swaks-starttls",
        "alice@example.test",
        "ESMTPSA",
        true,
    );
    // AUTH LOGIN through swaks as well
    let mut args = base(
        &s,
        Listener::Submission,
        "bob@example.test",
        "carol@other.test",
        "swaks-login",
    );
    args.extend(sargs![
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "bob@example.test",
        "--auth-password",
        "bob-pw"
    ]);
    run(&s, args);
    check(
        &s,
        "carol@other.test",
        "swaks-login",
        "bob@example.test",
        "ESMTPSA",
        true,
    );
}

fn swaks_implicit_tls_on_submissions(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut args = base(
        &s,
        Listener::Submissions,
        "carol@other.test",
        "alice@example.test",
        "swaks-tlsc",
    );
    args.extend(sargs![
        "--tlsc",
        "--auth",
        "PLAIN",
        "--auth-user",
        "carol@other.test",
        "--auth-password",
        "carol-pw"
    ]);
    run(&s, args);
    check(
        &s,
        "alice@example.test",
        "swaks-tlsc",
        "carol@other.test",
        "ESMTPSA",
        true,
    );
}
