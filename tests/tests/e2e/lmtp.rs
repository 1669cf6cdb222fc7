//! LMTP (RFC 2033) end to end: LHLO, one reply per recipient after DATA and after BDAT LAST, each
//! only once that recipient's copy is in its Maildir; the same on both runtimes.

use petrel_tests::{ALICE, BOB, Listener, Runtime, Server, ServerOptions, SmtpConn};

use crate::expect_messages;

both_runtimes!(lhlo_and_per_recipient_replies, bdat_and_refusals);

fn lhlo_and_per_recipient_replies(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::connect(s.port(Listener::Lmtp));
    let greeting = c.expect_reply("220");
    assert!(greeting.text().contains("LMTP"), "{}", c.transcript());
    c.expect("EHLO mta.example", "500");
    let lhlo = c.expect("LHLO mta.example", "250");
    assert!(
        lhlo.keyword("PIPELINING").is_some() && lhlo.keyword("AUTH").is_none(),
        "{}",
        c.transcript()
    );
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect(&format!("RCPT TO:<{}>", ALICE.address), "250");
    c.expect("RCPT TO:<nobody@example.test>", "550");
    c.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    c.expect("RCPT TO:<someone@remote.example>", "5");
    c.expect("DATA", "354");
    c.send(b"Subject: lmtp\r\n\r\n..dot\r\nbody\r\n.\r\n");
    // One reply per accepted recipient, in RCPT order, each naming its recipient.
    let first = c.expect_reply("250");
    let second = c.expect_reply("250");
    assert!(first.text().contains(ALICE.address), "{}", c.transcript());
    assert!(second.text().contains(BOB.address), "{}", c.transcript());
    c.expect("NOOP", "250");
    c.quit();
    for user in [ALICE.address, BOB.address] {
        let msgs = expect_messages(&s, user, 1);
        let text = String::from_utf8_lossy(&msgs[0]);
        assert!(
            text.contains("with LMTP id") && text.ends_with("\r\n.dot\r\nbody\r\n"),
            "{text}"
        );
    }
}

fn bdat_and_refusals(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::connect(s.port(Listener::Lmtp));
    c.expect_reply("220");
    c.expect("LHLO mta.example", "250");
    c.expect("MAIL FROM:<>", "250");
    c.expect("DATA", "503");
    c.expect(&format!("RCPT TO:<{}>", ALICE.address), "250");
    c.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    c.send(b"BDAT 9 LAST\r\nbdat body");
    c.expect_reply("250");
    c.expect_reply("250");
    c.expect("AUTH PLAIN AGFAYgBj", "503");
    c.quit();
    expect_messages(&s, ALICE.address, 1);
    expect_messages(&s, BOB.address, 1);
}
