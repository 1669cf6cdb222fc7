//! The `submission` (STARTTLS) and `submissions` (implicit TLS) listeners through smtplib:
//! AUTH rules, envelope sender ownership, local delivery and queueing for remote recipients.

use petrel_tests::{
    Delivery, Listener, Runtime, Server, ServerOptions, SmtpConn, contains, python, sample_message,
};

use crate::{expect_messages, expect_one_delivery, fail, printed, temp_file};

both_runtimes!(
    submission_auth_rules,
    submission_requires_tls_and_auth_raw,
    submission_delivers_local_and_queues_remote,
    submissions_implicit_tls_delivers_and_queues
);

fn submission_auth_rules(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let out = python(
        "submission_auth.py",
        sargs![
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display()
        ],
    );
    if printed(&out, "OK").is_none() {
        fail(&s, format!("submission_auth.py did not finish:\n{out}"));
    }
    expect_messages(&s, "alice@example.test", 0);
    if !s.queue_files().is_empty() {
        fail(&s, "no message was sent, yet the queue holds files");
    }
}

/// Without TLS nothing but EHLO/STARTTLS/NOOP/RSET/QUIT works on submission.
fn submission_requires_tls_and_auth_raw(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Submission));
    c.expect(
        "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==",
        "530 5.7.0",
    );
    c.expect("AUTH LOGIN", "530 5.7.0");
    c.expect("MAIL FROM:<alice@example.test>", "530 5.7.0");
    c.expect("RCPT TO:<bob@example.test>", "530|503");
    c.expect("DATA", "530|503");
    c.expect("NOOP", "250");
    c.quit();
    // implicit TLS port: a client speaking clear text gets no SMTP greeting
    let mut c = SmtpConn::connect(s.port(Listener::Submissions));
    c.set_timeout(std::time::Duration::from_secs(2));
    c.send(b"EHLO client.example\r\n");
    if let Ok(r) = c.try_reply() {
        c.fail(format!(
            "submissions answered clear text with an SMTP reply: {}",
            r.text()
        ));
    }
    expect_messages(&s, "bob@example.test", 0);
}

fn submission_delivers_local_and_queues_remote(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg = sample_message("submitted-starttls");
    let file = temp_file(&s, "sub.eml", &msg);
    let out = python(
        "send.py",
        sargs![
            "--mode",
            "starttls",
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display(),
            "--user",
            "alice@example.test",
            "--password",
            "alice-pw",
            "--sender",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--to",
            "someone@remote.example",
            "--message-file",
            file.display()
        ],
    );
    if !printed(&out, "DATA-REPLY")
        .unwrap_or_default()
        .starts_with("250 2.0.0")
    {
        fail(&s, format!("DATA reply should be 250 2.0.0:\n{out}"));
    }
    let want = Delivery {
        sender: "alice@example.test",
        message: &msg,
        protocol: Some("ESMTPSA"),
        tls: true,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "bob@example.test", &want);
    expect_messages(&s, "alice@example.test", 0);
    expect_queued(&s, b"submitted-starttls", "someone@remote.example");
}

fn submissions_implicit_tls_delivers_and_queues(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg = sample_message("submitted-implicit");
    let file = temp_file(&s, "subs.eml", &msg);
    python(
        "send.py",
        sargs![
            "--mode",
            "ssl",
            "--port",
            s.port(Listener::Submissions),
            "--cafile",
            s.cafile().display(),
            "--user",
            "carol@other.test",
            "--password",
            "carol-pw",
            "--sender",
            "carol@other.test",
            "--to",
            "alice@example.test",
            "--to",
            "friend@far-away.example",
            "--message-file",
            file.display()
        ],
    );
    let want = Delivery {
        sender: "carol@other.test",
        message: &msg,
        protocol: Some("ESMTPSA"),
        tls: true,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "alice@example.test", &want);
    expect_queued(&s, b"submitted-implicit", "friend@far-away.example");
    // wrong password and foreign sender over implicit TLS too
    python(
        "auth_check.py",
        sargs![
            "--mode",
            "ssl",
            "--port",
            s.port(Listener::Submissions),
            "--cafile",
            s.cafile().display(),
            "carol@other.test:wrong:535 5.7.8"
        ],
    );
}

/// Some file under `DATA_DIR/queue/` contains the message body (and the remote recipient).
fn expect_queued(s: &Server, marker: &[u8], rcpt: &str) {
    let q = s.queue_files();
    let with_body: Vec<_> = q.iter().filter(|(_, b)| contains(b, marker)).collect();
    if with_body.is_empty() {
        let names: Vec<_> = q.iter().map(|(p, _)| p.display().to_string()).collect();
        fail(
            s,
            format!("no file under DATA_DIR/queue/ holds the message for {rcpt}; queue: {names:?}"),
        );
    }
    if !q.iter().any(|(_, b)| contains(b, rcpt.as_bytes())) {
        fail(
            s,
            format!("the queue does not record the remote recipient {rcpt}"),
        );
    }
    let local: Vec<String> = s
        .mailboxes()
        .into_iter()
        .filter(|b| b.contains("remote") || b.contains("far-away"))
        .collect();
    if !local.is_empty() {
        fail(
            s,
            format!("remote recipients got local mailboxes: {local:?}"),
        );
    }
}
