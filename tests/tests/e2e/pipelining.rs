//! PIPELINING (RFC 2920) and CHUNKING/BDAT (RFC 3030), raw and through smtplib.

use petrel_tests::{
    Delivery, Listener, Runtime, Server, ServerOptions, SmtpConn, check_delivery, contains, python,
};

use crate::{expect_messages, expect_one_delivery, fail, printed, remote, unhex};

both_runtimes!(
    pipelined_envelope_replies_in_order,
    pipelined_whole_transactions_in_one_write,
    bdat_chunks_stored_byte_exact,
    bdat_sequence_errors,
    ten_thousand_commands_in_one_write,
    smtplib_pipelining_and_bdat_on_smtp,
    smtplib_pipelining_and_bdat_on_submission
);

fn pipelined_envelope_replies_in_order(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.send(
        b"MAIL FROM:<sender@remote.example>\r\n\
          RCPT TO:<alice@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\n\
          RCPT TO:<someone@remote.example>\r\n\
          RCPT TO:<carol@other.test>\r\n\
          DATA\r\n",
    );
    for pattern in ["250", "250", "550 5.1.1", "250", "554 5.7.1", "250", "354"] {
        c.expect_reply(pattern);
    }
    let msg = petrel_tests::sample_message("pipelined");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250 2.0.0");
    c.quit();
    for user in ["alice@example.test", "bob@example.test", "carol@other.test"] {
        let want = Delivery {
            sender: "sender@remote.example",
            message: &msg,
            protocol: Some("ESMTP"),
            tls: false,
            helo: None,
        };
        expect_one_delivery(&s, user, &want);
    }
}

/// Five complete transactions and QUIT in a single write: every reply in order, five messages.
fn pipelined_whole_transactions_in_one_write(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::greeted(s.port(Listener::Smtp));
    let mut wire = b"EHLO client.example\r\n".to_vec();
    let mut msgs = Vec::new();
    for i in 0..5 {
        let msg = petrel_tests::sample_message(&format!("batch-{i}"));
        wire.extend_from_slice(
            b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
        );
        wire.extend_from_slice(&petrel_tests::data_payload(&msg));
        msgs.push(msg);
    }
    wire.extend_from_slice(b"QUIT\r\n");
    c.send(&wire);
    c.expect_reply("250");
    for _ in 0..5 {
        for pattern in ["250", "250", "354", "250 2.0.0"] {
            c.expect_reply(pattern);
        }
    }
    c.expect_reply("221");
    c.expect_closed(std::time::Duration::from_secs(5));
    let stored = expect_messages(&s, "alice@example.test", 5);
    for (i, msg) in msgs.iter().enumerate() {
        let found = stored
            .iter()
            .filter(|m| contains(m, format!("batch-{i}.").as_bytes()))
            .collect::<Vec<_>>();
        if found.len() != 1 {
            fail(
                &s,
                format!("message batch-{i} stored {} times", found.len()),
            );
        }
        let want = Delivery {
            sender: "sender@remote.example",
            message: msg,
            protocol: None,
            tls: false,
            helo: None,
        };
        if let Err(e) = check_delivery(found[0], &want) {
            fail(&s, format!("batch-{i}: {e}"));
        }
    }
}

fn bdat_chunks_stored_byte_exact(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    // 1. two chunks, the second LAST; no dot-unstuffing, no end-of-data detection inside
    let chunk1: &[u8] = b"Subject: bdat-1\r\n\r\n.leading dot stays\r\n..two stay\r\n.\r\n";
    let chunk2: &[u8] = b"QUIT\r\n\x00\xff 8bit\r\nno final CRLF";
    c.expect("MAIL FROM:<sender@remote.example> BODY=8BITMIME", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    let mut wire = format!("BDAT {}\r\n", chunk1.len()).into_bytes();
    wire.extend_from_slice(chunk1);
    c.send(&wire);
    c.expect_reply("250");
    let mut wire = format!("BDAT {} LAST\r\n", chunk2.len()).into_bytes();
    wire.extend_from_slice(chunk2);
    c.send(&wire);
    let r = c.expect_reply("250");
    if !r.text().contains("queued as ") {
        c.fail("final BDAT reply lacks `queued as`");
    }
    let first = [chunk1, chunk2].concat();
    // 2. closed by BDAT 0 LAST; both in one write
    let chunk3: &[u8] = b"Subject: bdat-2\r\n\r\nclosed by BDAT 0 LAST\r\n";
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<bob@example.test>", "250");
    let mut wire = format!("BDAT {}\r\n", chunk3.len()).into_bytes();
    wire.extend_from_slice(chunk3);
    wire.extend_from_slice(b"BDAT 0 LAST\r\n");
    c.send(&wire);
    c.expect_reply("250");
    c.expect_reply("250");
    // 3. whole transaction pipelined, chunk sizes 1, 2, 3 LAST
    let body = b"Subject: bdat-3\r\n\r\nabcdef";
    let (a, rest) = body.split_at(body.len() - 6);
    let mut wire = b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<carol@other.test>\r\n".to_vec();
    wire.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    wire.extend_from_slice(a);
    wire.extend_from_slice(b"BDAT 1\r\n");
    wire.extend_from_slice(&rest[..1]);
    wire.extend_from_slice(b"BDAT 2\r\n");
    wire.extend_from_slice(&rest[1..3]);
    wire.extend_from_slice(b"BDAT 3 LAST\r\n");
    wire.extend_from_slice(&rest[3..]);
    c.send(&wire);
    for _ in 0..6 {
        c.expect_reply("250");
    }
    c.quit();
    expect_one_delivery(&s, "alice@example.test", &remote(&first));
    expect_one_delivery(&s, "bob@example.test", &remote(chunk3));
    expect_one_delivery(&s, "carol@other.test", &remote(body));
}

fn bdat_sequence_errors(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    // BDAT without MAIL: 503, and its chunk is still consumed, not read as commands
    c.send(b"BDAT 6\r\nXYZW\r\n");
    c.expect_reply("503");
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.send(b"BDAT 5\r\nhello");
    c.expect_reply("250");
    // DATA after BDAT in the same transaction
    c.expect("DATA", "503");
    c.expect("RSET", "250");
    c.expect("BDAT x", "501|503");
    c.expect("NOOP", "250");
    c.quit();
    expect_messages(&s, "alice@example.test", 0);
}

fn check_script_messages(
    s: &Server,
    out: &str,
    users: [&str; 3],
    sender: &str,
    protocol: &str,
    tls: bool,
) {
    let data_msg = unhex(printed(out, "DATA-MESSAGE").unwrap_or_default());
    let bdat_msg = unhex(printed(out, "BDAT-MESSAGE").unwrap_or_default());
    let bdat0_msg = unhex(printed(out, "BDAT0-MESSAGE").unwrap_or_default());
    if data_msg.is_empty() || bdat_msg.is_empty() || bdat0_msg.is_empty() {
        fail(s, format!("script output incomplete:\n{out}"));
    }
    let want = |m: &[u8]| -> Vec<u8> { m.to_vec() };
    let first = expect_messages(s, users[0], 3);
    for (label, m) in [
        ("DATA", want(&data_msg)),
        ("BDAT", want(&bdat_msg)),
        ("BDAT 0 LAST", want(&bdat0_msg)),
    ] {
        let hits: Vec<&Vec<u8>> = first.iter().filter(|stored| stored.ends_with(&m)).collect();
        if hits.len() != 1 {
            fail(
                s,
                format!("{label} message not stored exactly once for {}", users[0]),
            );
        }
        let d = Delivery {
            sender,
            message: &m,
            protocol: Some(protocol),
            tls,
            helo: Some("client.example"),
        };
        if let Err(e) = check_delivery(hits[0], &d) {
            fail(s, format!("{label} message: {e}"));
        }
    }
    for user in &users[1..] {
        let d = Delivery {
            sender,
            message: &data_msg,
            protocol: Some(protocol),
            tls,
            helo: None,
        };
        expect_one_delivery(s, user, &d);
    }
}

fn smtplib_pipelining_and_bdat_on_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let out = python(
        "pipelining_bdat.py",
        sargs![
            "--mode",
            "plain",
            "--port",
            s.port(Listener::Smtp),
            "--sender",
            "sender@remote.example",
            "--to",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--to",
            "carol@other.test",
            "--marker",
            "py-pipe-smtp"
        ],
    );
    check_script_messages(
        &s,
        &out,
        ["alice@example.test", "bob@example.test", "carol@other.test"],
        "sender@remote.example",
        "ESMTP",
        false,
    );
}

fn smtplib_pipelining_and_bdat_on_submission(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let out = python(
        "pipelining_bdat.py",
        sargs![
            "--mode",
            "starttls",
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display(),
            "--user",
            "bob@example.test",
            "--password",
            "bob-pw",
            "--sender",
            "bob@example.test",
            "--to",
            "alice@example.test",
            "--to",
            "carol@other.test",
            "--to",
            "bob@example.test",
            "--marker",
            "py-pipe-sub"
        ],
    );
    check_script_messages(
        &s,
        &out,
        ["alice@example.test", "carol@other.test", "bob@example.test"],
        "bob@example.test",
        "ESMTPSA",
        true,
    );
    if s.log().contains("panicked at") {
        fail(&s, "the server panicked");
    }
}

/// DESIGN.md: "input may arrive ... 10,000 commands at once". Every one is answered, in order.
fn ten_thousand_commands_in_one_write(rt: Runtime) {
    const N: usize = 10_000;
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let mut wire = Vec::with_capacity(N * 6 + 64);
    for i in 0..N {
        wire.extend_from_slice(if i % 2 == 0 { b"NOOP\r\n" } else { b"RSET\r\n" });
    }
    wire.extend_from_slice(
        b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<alice@example.test>\r\nRSET\r\nQUIT\r\n",
    );
    c.send(&wire);
    for i in 0..N {
        match c.try_reply() {
            Ok(r) if r.code == 250 => {}
            Ok(r) => c.fail(format!("reply {i} of {N} is {}", r.text())),
            Err(e) => c.fail(format!("reply {i} of {N} missing: {e}")),
        }
    }
    for pattern in ["250", "250", "250", "221"] {
        c.expect_reply(pattern);
    }
    c.expect_closed(std::time::Duration::from_secs(5));
}
