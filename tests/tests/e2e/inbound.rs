//! The inbound `smtp` listener: local delivery, unknown users, relay denial and relay tricks,
//! address forms, several recipients, null and UTF-8 senders.

use petrel_tests::{
    Delivery, Listener, Runtime, Server, ServerOptions, SmtpConn, check_delivery, contains, python,
    sample_message,
};

use crate::{expect_empty_queue, expect_messages, expect_one_delivery, fail, printed, temp_file};

both_runtimes!(
    deliver_to_local_user,
    deliver_with_smtplib,
    unknown_local_user_550,
    relay_denied_554,
    relay_tricks_refused,
    source_route_to_local_user,
    domain_case_and_trailing_dot,
    several_local_recipients,
    duplicate_recipients_delivered_once,
    helo_session_stamped_smtp,
    null_and_utf8_senders
);

fn deliver_to_local_user(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let msg = sample_message("inbound-1");
    c.deliver("sender@remote.example", &["alice@example.test"], &msg);
    c.quit();
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTP"),
        tls: false,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "alice@example.test", &want);
    expect_messages(&s, "bob@example.test", 0);
    expect_empty_queue(&s);
}

fn deliver_with_smtplib(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg = sample_message("smtplib-plain");
    let file = temp_file(&s, "msg.eml", &msg);
    let out = python(
        "send.py",
        sargs![
            "--mode",
            "plain",
            "--port",
            s.port(Listener::Smtp),
            "--sender",
            "sender@remote.example",
            "--to",
            "bob@example.test",
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
            format!("smtplib DATA reply should be 250 2.0.0:\n{out}"),
        );
    }
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTP"),
        tls: false,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "bob@example.test", &want);
}

fn unknown_local_user_550(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<nobody@example.test>", "550 5.1.1");
    c.expect("RCPT TO:<nobody@other.test>", "550 5.1.1");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    let msg = sample_message("unknown-user");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250 2.0.0");
    c.quit();
    expect_messages(&s, "alice@example.test", 1);
    let boxes = s.mailboxes();
    if boxes.iter().any(|b| b.contains("nobody")) {
        fail(
            &s,
            format!("a mailbox was created for an unknown user: {boxes:?}"),
        );
    }
}

fn relay_denied_554(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<someone@remote.example>", "554 5.7.1");
    c.expect("RCPT TO:<alice@example.test.invalid>", "554 5.7.1");
    // the second local domain is local
    c.expect("RCPT TO:<carol@other.test>", "250");
    c.expect("DATA", "354");
    let msg = sample_message("relay-denied");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250");
    c.quit();
    expect_messages(&s, "carol@other.test", 1);
    expect_empty_queue(&s);
}

/// Every trick is refused with a 5xx at RCPT; a valid recipient in the same transaction still
/// gets the message, and nothing reaches the queue or any other mailbox.
fn relay_tricks_refused(rt: Runtime) {
    const TRICKS: [&str; 10] = [
        "<alice%evil.example@example.test>",
        "<\"alice@evil.example\"@example.test>",
        "<evil.example!alice@example.test>",
        "<alice@evil.example@example.test>",
        "<alice@example.test@evil.example>",
        "<@example.test:alice@evil.example>",
        "<alice@[127.0.0.1]>",
        "<alice@example.test.evil.example>",
        "<alice@example.test%evil.example>",
        "<alice@example.test>,<bob@evil.example>",
    ];
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let mut accepted = Vec::new();
    for (i, trick) in TRICKS.iter().enumerate() {
        c.expect("MAIL FROM:<sender@remote.example>", "250");
        let r = c.cmd(&format!("RCPT TO:{trick}"));
        if r.code / 100 != 5 {
            accepted.push(format!("{trick} -> {}", r.text()));
        }
        c.expect("RCPT TO:<bob@example.test>", "250");
        c.expect("DATA", "354");
        c.send(&petrel_tests::data_payload(&sample_message(&format!(
            "trick-{i}"
        ))));
        c.expect_reply("250");
    }
    c.quit();
    if !accepted.is_empty() {
        c.fail(format!(
            "relay tricks not refused with 5xx at RCPT: {accepted:#?}"
        ));
    }
    expect_empty_queue(&s);
    expect_messages(&s, "bob@example.test", TRICKS.len());
    expect_messages(&s, "alice@example.test", 0);
    expect_only_known_mailboxes(&s);
}

fn source_route_to_local_user(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<@x.example:alice@example.test>", "250");
    c.expect("RCPT TO:<@a.example,@b.example:bob@example.test>", "250");
    c.expect("DATA", "354");
    let msg = sample_message("source-route");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250");
    c.quit();
    for user in ["alice@example.test", "bob@example.test"] {
        let want = Delivery {
            sender: "sender@remote.example",
            message: &msg,
            protocol: None,
            tls: false,
            helo: None,
        };
        expect_one_delivery(&s, user, &want);
    }
    expect_empty_queue(&s);
}

fn domain_case_and_trailing_dot(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@EXAMPLE.TEST>", "250");
    c.expect("RCPT TO:<bob@example.test.>", "250");
    c.expect("RCPT TO:<carol@Other.Test>", "250");
    c.expect("DATA", "354");
    let msg = sample_message("case");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250");
    c.quit();
    for user in ["alice@example.test", "bob@example.test", "carol@other.test"] {
        let want = Delivery {
            sender: "sender@remote.example",
            message: &msg,
            protocol: None,
            tls: false,
            helo: None,
        };
        expect_one_delivery(&s, user, &want);
    }
    expect_only_known_mailboxes(&s);
}

fn several_local_recipients(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let msg = sample_message("three-recipients");
    c.deliver(
        "sender@remote.example",
        &["alice@example.test", "bob@example.test", "carol@other.test"],
        &msg,
    );
    c.quit();
    for user in ["alice@example.test", "bob@example.test", "carol@other.test"] {
        let want = Delivery {
            sender: "sender@remote.example",
            message: &msg,
            protocol: Some("ESMTP"),
            tls: false,
            helo: Some("client.example"),
        };
        let stored = expect_one_delivery(&s, user, &want);
        // a copy must not reveal the other (possibly Bcc) recipients in its trace header
        let parsed = petrel_tests::StoredMessage::parse(&stored).unwrap_or_else(|e| fail(&s, e));
        for other in ["alice@example.test", "bob@example.test", "carol@other.test"] {
            if other != user && parsed.received.contains(other) {
                fail(
                    &s,
                    format!(
                        "{user}'s copy names {other} in Received: {:?}",
                        parsed.received
                    ),
                );
            }
        }
    }
    expect_empty_queue(&s);
}

/// The same mailbox named twice (also with another domain case) gets one copy.
fn duplicate_recipients_delivered_once(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let msg = sample_message("duplicates");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    for rcpt in [
        "alice@example.test",
        "alice@example.test",
        "alice@EXAMPLE.test",
        "bob@example.test",
    ] {
        c.expect(&format!("RCPT TO:<{rcpt}>"), "250");
    }
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250");
    c.quit();
    expect_one_delivery(&s, "alice@example.test", &crate::remote(&msg));
    expect_one_delivery(&s, "bob@example.test", &crate::remote(&msg));
}

/// A HELO (not EHLO) session is stamped `with SMTP` (RFC 3848).
fn helo_session_stamped_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::greeted(s.port(Listener::Smtp));
    c.expect("HELO old.example", "250");
    let msg = sample_message("helo");
    c.deliver("sender@remote.example", &["alice@example.test"], &msg);
    c.quit();
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("SMTP"),
        tls: false,
        helo: Some("old.example"),
    };
    expect_one_delivery(&s, "alice@example.test", &want);
}

fn null_and_utf8_senders(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    // RFC 5321 4.5.5: bounces (null sender) must be accepted.
    let bounce = sample_message("null-sender");
    c.deliver("", &["alice@example.test"], &bounce);
    // RFC 6531: UTF-8 envelope with the SMTPUTF8 parameter.
    let utf8 = "From: Jörg <jörg@bücher.example>\r\nSubject: Grüße\r\n\r\nÜmläute und 漢字\r\n"
        .as_bytes()
        .to_vec();
    c.expect(
        "MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME",
        "250",
    );
    c.expect("RCPT TO:<bob@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&utf8));
    c.expect_reply("250");
    c.quit();
    let want = Delivery {
        sender: "",
        message: &bounce,
        protocol: Some("ESMTP"),
        tls: false,
        helo: None,
    };
    expect_one_delivery(&s, "alice@example.test", &want);
    let got = expect_messages(&s, "bob@example.test", 1).remove(0);
    let want = Delivery {
        sender: "jörg@bücher.example",
        message: &utf8,
        protocol: None,
        tls: false,
        helo: None,
    };
    if let Err(e) = check_delivery(&got, &want) {
        fail(&s, format!("UTF-8 message stored wrongly: {e}"));
    }
    if !contains(&got, "漢字".as_bytes()) {
        fail(&s, "UTF-8 body lost");
    }
}

/// Mailbox directories may exist only for the configured users, under their lower-case domain.
fn expect_only_known_mailboxes(s: &Server) {
    let boxes = s.mailboxes();
    let known = ["alice@example.test", "bob@example.test", "carol@other.test"];
    let unknown: Vec<&String> = boxes
        .iter()
        .filter(|b| !known.contains(&b.as_str()))
        .collect();
    if !unknown.is_empty() {
        fail(
            s,
            format!("unexpected mailbox directories under DATA_DIR/mail: {unknown:?}"),
        );
    }
}
