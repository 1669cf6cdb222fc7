//! Limits: command line length, 100 KB without a newline, NUL bytes, recipients, SIZE, message
//! size, and the command timeout (idle, mid-command, mid-DATA).

use std::time::{Duration, Instant};

use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, python, sample_message};

use crate::{expect_empty_queue, expect_messages, fail};

both_runtimes!(
    command_line_512_limit,
    hundred_kb_without_newline,
    nul_byte_in_command,
    recipient_limit_on_smtp,
    recipient_limit_101st_on_submission,
    size_parameter_checked_at_mail,
    oversized_data_rejected_after_terminator,
    oversized_bdat_rejected,
    message_exactly_at_size_limit,
    text_line_over_1000_octets_rejected,
    max_connections_limit,
    memory_stays_bounded,
    command_timeout_421,
    tls_handshake_stall_times_out
);

fn command_line_512_limit(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    // exactly 512 octets including CRLF: allowed (RFC 5321 4.5.3.1.4)
    let ok = format!("NOOP {}", "a".repeat(512 - 2 - 5));
    assert_eq!(ok.len() + 2, 512);
    c.expect(&ok, "250");
    // 513 octets: too long; exactly one reply, and the session goes on
    let long = format!("NOOP {}", "b".repeat(513 - 2 - 5));
    c.expect(&long, "500 5.5.2");
    c.expect("HELO client.example", "250");
    let very_long = format!("MAIL FROM:<{}@remote.example>", "c".repeat(3000));
    c.expect(&very_long, "500 5.5.2");
    c.expect("EHLO client.example", "250");
    c.deliver(
        "sender@remote.example",
        &["alice@example.test"],
        &sample_message("after-long-lines"),
    );
    c.quit();
    expect_messages(&s, "alice@example.test", 1);
}

fn hundred_kb_without_newline(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let blob = vec![b'A'; 100 * 1024];
    // The server may close while we are still writing: that is allowed.
    let _ = c.try_send(&blob);
    match c.try_reply() {
        Ok(r) if r.code / 100 == 5 => {}
        Ok(r) => c.fail(format!(
            "100 KB without a newline got {}, expected a 5xx",
            r.text()
        )),
        Err(e) => c.fail(format!("100 KB without a newline: no 5xx reply ({e})")),
    }
    // Either the session goes on or it is closed with 421/500; it must not answer the junk
    // with more than that.
    let _ = c.try_send(b"NOOP\r\n");
    if let Ok(r) = c.try_reply()
        && !matches!(r.code, 250 | 421 | 500)
    {
        c.fail(format!("after the over-long line, NOOP got {}", r.text()));
    }
    // Other clients are still served.
    let mut d = SmtpConn::ready(s.port(Listener::Smtp));
    d.deliver(
        "sender@remote.example",
        &["bob@example.test"],
        &sample_message("after-100k"),
    );
    d.quit();
    expect_messages(&s, "bob@example.test", 1);
}

fn nul_byte_in_command(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::greeted(s.port(Listener::Smtp));
    c.send(b"EHLO client\x00.example\r\n");
    c.expect_reply("5");
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.send(b"MAIL FROM:<sender\x00@remote.example>\r\n");
    c.expect_reply("5");
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.send(b"RCPT TO:<alice@example.test>\x00<bob@example.test>\r\n");
    c.expect_reply("5");
    let mut d = SmtpConn::ready(s.port(Listener::Smtp));
    d.deliver(
        "sender@remote.example",
        &["carol@other.test"],
        &sample_message("after-nul"),
    );
    d.quit();
    expect_messages(&s, "alice@example.test", 0);
    expect_messages(&s, "bob@example.test", 0);
    expect_messages(&s, "carol@other.test", 1);
}

/// With `max_recipients = 2`, the third RCPT gets 452 4.5.3 and the message goes to the first
/// two only.
fn recipient_limit_on_smtp(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_recipients: 2,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("RCPT TO:<bob@example.test>", "250");
    c.expect("RCPT TO:<carol@other.test>", "452 4.5.3");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&sample_message("rcpt-limit")));
    c.expect_reply("250");
    c.quit();
    expect_messages(&s, "alice@example.test", 1);
    expect_messages(&s, "bob@example.test", 1);
    expect_messages(&s, "carol@other.test", 0);
}

fn recipient_limit_101st_on_submission(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    python(
        "many_rcpts.py",
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
            "--limit",
            100
        ],
    );
    expect_empty_queue(&s);
}

fn size_parameter_checked_at_mail(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.expect(
        "MAIL FROM:<sender@remote.example> SIZE=1048577",
        "552 5.3.4",
    );
    c.expect(
        "MAIL FROM:<sender@remote.example> SIZE=99999999999999999999",
        "552|555|501",
    );
    c.expect("MAIL FROM:<sender@remote.example> SIZE=1048576", "250");
    c.expect("RSET", "250");
    c.expect("MAIL FROM:<sender@remote.example> SIZE=12", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("RSET", "250");
    c.quit();
}

fn oversized_data_rejected_after_terminator(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_message_size: 65_536,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let ehlo = c.expect("EHLO client.example", "250");
    if ehlo.keyword("SIZE") != Some("SIZE 65536") {
        c.fail("SIZE should advertise the configured 65536");
    }
    let mut big = b"Subject: too big\r\n\r\n".to_vec();
    while big.len() < 140_000 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&big));
    c.expect_reply("552 5.3.4");
    // the session goes on and a message under the limit is delivered
    c.expect("NOOP", "250");
    c.deliver(
        "sender@remote.example",
        &["alice@example.test"],
        &sample_message("small-after-big"),
    );
    c.quit();
    let msgs = expect_messages(&s, "alice@example.test", 1);
    if petrel_tests::contains(&msgs[0], b"too big") {
        fail(&s, "the oversized message was delivered");
    }
}

fn oversized_bdat_rejected(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_message_size: 65_536,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let mut big = Vec::new();
    while big.len() < 100_000 {
        big.extend_from_slice(b"NOOP this line is chunk data, never a command\r\n");
    }
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    let mut wire = format!("BDAT {} LAST\r\n", big.len()).into_bytes();
    wire.extend_from_slice(&big);
    c.send(&wire);
    c.expect_reply("552 5.3.4");
    // the chunk was consumed as data: the next reply belongs to our NOOP
    c.expect("RSET", "250");
    c.expect("NOOP", "250");
    c.quit();
    expect_messages(&s, "alice@example.test", 0);
}

/// With `command_timeout = 2`: an idle client, one that stopped mid-command and one that
/// stopped mid-DATA each get `421 4.4.2` within about 5 s and are disconnected; nothing is
/// delivered.
fn command_timeout_421(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            command_timeout: 2,
            ..Default::default()
        },
    );
    let port = s.port(Listener::Smtp);
    let start = Instant::now();
    let idle = std::thread::spawn(move || {
        let mut c = SmtpConn::greeted(port);
        c.note("idle after the greeting");
        c
    });
    let mid_command = std::thread::spawn(move || {
        let mut c = SmtpConn::ready(port);
        c.send(b"MAIL FROM:<sender@rem");
        c
    });
    let mid_data = std::thread::spawn(move || {
        let mut c = SmtpConn::ready(port);
        c.expect("MAIL FROM:<sender@remote.example>", "250");
        c.expect("RCPT TO:<alice@example.test>", "250");
        c.expect("DATA", "354");
        c.send(b"Subject: half\r\n\r\nhalf a body\r\n");
        c
    });
    let conns = [idle, mid_command, mid_data].map(|h| h.join().expect("client thread"));
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                c.set_timeout(Duration::from_secs(8));
                let r = c.expect_reply("421 4.4.2");
                let at = start.elapsed();
                c.expect_closed(Duration::from_secs(3));
                (r, at, c)
            })
        })
        .collect();
    for h in handles {
        let (_, at, c) = match h.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        };
        if at < Duration::from_millis(1500) || at > Duration::from_secs(6) {
            c.fail(format!(
                "421 came after {at:?}; expected about 2 s (command_timeout = 2)"
            ));
        }
    }
    expect_messages(&s, "alice@example.test", 0);
}

/// With `max_message_size = 65536`: a message of exactly 65536 octets is accepted, one of
/// 65537 is refused (RFC 1870: the limit is inclusive).
fn message_exactly_at_size_limit(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_message_size: 65_536,
            ..Default::default()
        },
    );
    let exact = |len: usize, marker: &str| -> Vec<u8> {
        let mut m = format!("Subject: {marker}\r\n\r\n").into_bytes();
        while m.len() + 100 <= len {
            m.extend(std::iter::repeat_n(b'y', 98));
            m.extend_from_slice(b"\r\n");
        }
        let pad = len - m.len() - 2;
        m.extend(std::iter::repeat_n(b'z', pad));
        m.extend_from_slice(b"\r\n");
        assert_eq!(m.len(), len);
        m
    };
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let at_limit = exact(65_536, "at-limit");
    c.expect("MAIL FROM:<sender@remote.example> SIZE=65536", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&at_limit));
    c.expect_reply("250");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<bob@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&exact(65_537, "over-limit")));
    c.expect_reply("552 5.3.4");
    c.quit();
    crate::expect_one_delivery(&s, "alice@example.test", &crate::remote(&at_limit));
    expect_messages(&s, "bob@example.test", 0);
}

/// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with CRLF. A longer one gets a 5xx
/// (at the latest after the terminator), nothing is delivered, and the session goes on.
fn text_line_over_1000_octets_rejected(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let mut msg = b"Subject: long line\r\n\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'x', 1500));
    msg.extend_from_slice(b"\r\nafter\r\n");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("5");
    c.expect("NOOP", "250");
    c.deliver(
        "sender@remote.example",
        &["bob@example.test"],
        &sample_message("after-long-text-line"),
    );
    c.quit();
    expect_messages(&s, "alice@example.test", 0);
    expect_messages(&s, "bob@example.test", 1);
}

/// With `max_connections = 5`, a sixth concurrent client gets a 421 and is closed; once a slot
/// is free, clients are served again.
fn max_connections_limit(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_connections: 5,
            ..Default::default()
        },
    );
    let port = s.port(Listener::Smtp);
    // Earlier readiness probes may still be counted for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let mut held: Vec<SmtpConn> = (0..5).map(|_| SmtpConn::greeted(port)).collect();
    let mut extra = SmtpConn::connect(port);
    extra.expect_reply("421");
    extra.expect_closed(Duration::from_secs(5));
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = SmtpConn::connect(port);
        let r = c.reply();
        if r.code == 220 {
            c.quit();
            break;
        }
        if Instant::now() > deadline {
            c.fail("a slot was freed but new clients are still refused");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in &mut held {
        c.expect("NOOP", "250");
    }
}

/// 20 MB of DATA beyond a 1 MiB limit, and 20 MB without a newline, leave the server's peak
/// memory (VmHWM) less than 24 MB above where it was: bodies stream, lines are bounded.
fn memory_stays_bounded(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    let warm = sample_message("warm-up");
    let mut c = SmtpConn::ready(port);
    c.deliver("sender@remote.example", &["alice@example.test"], &warm);
    let before = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail(&s, "cannot read VmHWM"));
    let line = [b"0123456789".repeat(9).as_slice(), b"\r\n"].concat();
    let chunk: Vec<u8> = line.repeat(10_000); // about 1 MB
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<bob@example.test>", "250");
    c.expect("DATA", "354");
    for _ in 0..20 {
        c.send(&chunk);
    }
    c.send(b".\r\n");
    c.expect_reply("552 5.3.4");
    c.quit();
    let mut d = SmtpConn::ready(port);
    let blob = vec![b'Q'; 1024 * 1024];
    for _ in 0..20 {
        if d.try_send(&blob).is_err() {
            break;
        }
    }
    drop(d);
    std::thread::sleep(Duration::from_millis(200));
    let after = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail(&s, "cannot read VmHWM"));
    if after > before + 24 * 1024 {
        fail(
            &s,
            format!("peak RSS grew from {before} KiB to {after} KiB while refusing 20 MB inputs"),
        );
    }
    expect_messages(&s, "bob@example.test", 0);
}

/// With `command_timeout = 2`, clients that never finish a TLS handshake (implicit TLS, or
/// after STARTTLS) are disconnected too, and do not hold up others.
fn tls_handshake_stall_times_out(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            command_timeout: 2,
            ..Default::default()
        },
    );
    let start = Instant::now();
    let mut implicit = SmtpConn::connect(s.port(Listener::Submissions));
    implicit.send(&[0x16, 0x03, 0x01, 0x00]); // the start of a ClientHello, then silence
    let mut starttls = SmtpConn::ready(s.port(Listener::Submission));
    starttls.expect("STARTTLS", "220");
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.deliver(
        "sender@remote.example",
        &["alice@example.test"],
        &sample_message("not-held-up"),
    );
    c.quit();
    let mut problems = Vec::new();
    for (name, conn) in [
        ("implicit TLS (submissions)", &mut implicit),
        ("after STARTTLS (submission)", &mut starttls),
    ] {
        match conn.wait_closed(
            Duration::from_secs(8)
                .saturating_sub(start.elapsed())
                .max(Duration::from_secs(1)),
        ) {
            Err(e) => problems.push(format!(
                "{name}: stalled TLS handshake not timed out: {e}\n{}",
                conn.transcript()
            )),
            Ok(_) if start.elapsed() < Duration::from_millis(1500) => {
                problems.push(format!("{name}: closed before the 2 s timeout"));
            }
            Ok(_) => {}
        }
    }
    if !problems.is_empty() {
        fail(&s, problems.join("\n"));
    }
    expect_messages(&s, "alice@example.test", 1);
}
