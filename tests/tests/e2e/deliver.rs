//! `petrel deliver` (the local delivery agent) beside a running server: sysexits codes, CRLF
//! storage, an mbox `From ` line dropped, and nothing of the server's in-flight data touched.

use petrel_tests::{ALICE, Listener, Runtime, Server, ServerOptions, SmtpConn};

use crate::expect_messages;

both_runtimes!(
    delivers_with_sendmail_exit_codes,
    leaves_the_servers_transactions_alone
);

fn delivers_with_sendmail_exit_codes(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_message_size: 4096,
            ..Default::default()
        },
    );
    let message =
        b"From someone@remote.example Mon Jan  5 00:00:00 2026\nSubject: lda\n\nline\n.dot\n";
    let out = s.petrel(
        &[
            "deliver",
            "--to",
            "ALICE+tag@example.test",
            "--from",
            "bob@remote.example",
        ],
        message,
    );
    assert!(out.status.success(), "{out:?}");
    let msgs = expect_messages(&s, ALICE.address, 1);
    let text = String::from_utf8_lossy(&msgs[0]);
    assert!(
        text.starts_with("Return-Path: <bob@remote.example>\r\nReceived: by mail.test.example"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\nSubject: lda\r\n\r\nline\r\n.dot\r\n")
            && !text.contains("From someone"),
        "{text}"
    );
    let code = |args: &[&str], input: &[u8]| s.petrel(args, input).status.code();
    assert_eq!(
        code(&["deliver", "--to", "nobody@example.test"], b"x\n"),
        Some(67)
    );
    assert_eq!(
        code(&["deliver", "--to", "../../etc@example.test"], b"x\n"),
        Some(67)
    );
    assert_eq!(
        code(&["deliver", "--to", ALICE.address], &vec![b'x'; 5000]),
        Some(65)
    );
    assert_eq!(code(&["deliver"], b"x\n"), Some(2));
    expect_messages(&s, ALICE.address, 1);
}

fn leaves_the_servers_transactions_alone(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    // A DATA transaction in flight on the server has its file in DATA_DIR/tmp.
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<x@remote.example>", "250");
    c.expect(&format!("RCPT TO:<{}>", ALICE.address), "250");
    c.expect("DATA", "354");
    c.send(b"Subject: slow\r\n\r\nfirst half\r\n");
    let out = s.petrel(
        &["deliver", "--to", ALICE.address],
        b"Subject: quick\n\nbody\n",
    );
    assert!(out.status.success(), "{out:?}");
    c.send(b"second half\r\n.\r\n");
    c.expect_reply("250");
    c.quit();
    let msgs = expect_messages(&s, ALICE.address, 2);
    assert!(
        msgs.iter()
            .any(|m| m.ends_with(b"first half\r\nsecond half\r\n")),
        "the server's message survived"
    );
}
