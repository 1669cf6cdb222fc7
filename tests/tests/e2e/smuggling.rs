//! SMTP smuggling (2023): DATA ends only at CRLF.CRLF; a fake end of data with bare LF/CR
//! followed by a second transaction must stay data of the first message.

use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, contains};

use crate::{expect_empty_queue, expect_messages, fail};

both_runtimes!(
    smuggling_variants_deliver_one_message,
    smuggling_with_bdat_after_fake_end
);

/// Fake terminators that some servers have taken for the end of DATA.
const FAKE_ENDS: [&[u8]; 6] = [
    b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r",
];

fn smuggling_variants_deliver_one_message(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    for (i, fake) in FAKE_ENDS.iter().enumerate() {
        let mut c = SmtpConn::ready(s.port(Listener::Smtp));
        c.note(format!(
            "variant {i}: fake end {}",
            petrel_tests::client::escape(fake)
        ));
        c.expect("MAIL FROM:<sender@remote.example>", "250");
        c.expect("RCPT TO:<alice@example.test>", "250");
        c.expect("DATA", "354");
        let mut data = format!("Subject: smuggle-{i}\r\n\r\nvisible part {i}").into_bytes();
        data.extend_from_slice(fake);
        data.extend_from_slice(
            format!(
                "MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
                 Subject: smuggled-{i}\r\n\r\nsmuggled body {i}\r\n"
            )
            .as_bytes(),
        );
        data.extend_from_slice(b".\r\n");
        // One write, so a vulnerable parser sees everything at once.
        c.send(&data);
        c.expect_reply("250");
        // A vulnerable server now answers the smuggled MAIL/RCPT/DATA (250, 250, 354, 250)
        // before our QUIT: the next reply must be QUIT's 221.
        c.expect("QUIT", "221");
        let extra = c
            .wait_closed(std::time::Duration::from_secs(5))
            .unwrap_or_else(|e| c.fail(e));
        if !extra.is_empty() {
            c.fail("bytes after the 221");
        }
    }
    let alice = expect_messages(&s, "alice@example.test", FAKE_ENDS.len());
    expect_messages(&s, "bob@example.test", 0);
    for i in 0..FAKE_ENDS.len() {
        let holder: Vec<&Vec<u8>> = alice
            .iter()
            .filter(|m| contains(m, format!("visible part {i}").as_bytes()))
            .collect();
        if holder.len() != 1 {
            fail(
                &s,
                format!("variant {i}: expected exactly one message with its visible part"),
            );
        }
        let m = holder[0];
        for needle in [
            "RCPT TO:<bob@example.test>".to_string(),
            format!("smuggled body {i}"),
        ] {
            if !contains(m, needle.as_bytes()) {
                fail(
                    &s,
                    format!(
                        "variant {i}: the smuggled text {needle:?} should be data of alice's \
                         message, which is {:?}",
                        String::from_utf8_lossy(m)
                    ),
                );
            }
        }
    }
    expect_empty_queue(&s);
}

/// A fake end followed by `BDAT` (a smuggled chunked transaction) is also just data.
fn smuggling_with_bdat_after_fake_end(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    let smuggled = b"Subject: smuggled\r\n\r\nx\r\n";
    let mut data = b"Subject: outer\r\n\r\nouter\n.\n".to_vec();
    data.extend_from_slice(b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\n");
    data.extend_from_slice(format!("BDAT {} LAST\r\n", smuggled.len()).as_bytes());
    data.extend_from_slice(smuggled);
    data.extend_from_slice(b"\r\n.\r\n");
    c.send(&data);
    c.expect_reply("250");
    c.expect("QUIT", "221");
    expect_messages(&s, "alice@example.test", 1);
    expect_messages(&s, "bob@example.test", 0);
}
