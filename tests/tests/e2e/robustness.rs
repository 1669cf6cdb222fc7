//! Hostile and unlucky clients: 200 dropping mid-DATA at once, stalled clients, one byte at a
//! time, binary garbage, many concurrent deliveries.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use petrel_tests::{
    Listener, Runtime, Server, ServerOptions, SmtpConn, contains, count_containing, sample_message,
};

use crate::{expect_messages, expect_one_delivery, fail, remote};

both_runtimes!(
    two_hundred_clients_drop_mid_data,
    stalled_clients_do_not_block_others,
    one_byte_at_a_time,
    binary_garbage_then_service_continues,
    concurrent_deliveries
);

fn two_hundred_clients_drop_mid_data(rt: Runtime) {
    const N: usize = 200;
    let s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let mut c = SmtpConn::try_connect(port)
                        .map_err(|e| format!("client {i}: connect: {e}"))?;
                    let step = |c: &mut SmtpConn, pattern: &str| -> Result<(), String> {
                        match c.try_reply() {
                            Ok(r) if r.matches(pattern) => Ok(()),
                            Ok(r) => {
                                Err(format!("client {i}: expected {pattern}, got {}", r.text()))
                            }
                            Err(e) => Err(format!("client {i}: expected {pattern}: {e}")),
                        }
                    };
                    step(&mut c, "220")?;
                    c.try_send(
                        b"EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\n\
                          RCPT TO:<alice@example.test>\r\nDATA\r\n",
                    )
                    .map_err(|e| e.to_string())?;
                    for p in ["250", "250", "250", "354"] {
                        step(&mut c, p)?;
                    }
                    let half =
                        format!("Subject: half {i}\r\n\r\nHALF-BODY-{i} and more\r\nsecond line");
                    c.try_send(half.as_bytes()).map_err(|e| e.to_string())?;
                    barrier.wait();
                    drop(c); // everyone hangs up at the same instant
                    Ok(())
                })
                .expect("spawn client thread")
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("client thread").err())
        .collect();
    if !errors.is_empty() {
        fail(
            &s,
            format!(
                "{} of {N} clients were not served up to DATA: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            ),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut c = SmtpConn::ready(port);
    let msg = sample_message("after-the-storm");
    c.deliver("sender@remote.example", &["alice@example.test"], &msg);
    c.quit();
    std::thread::sleep(Duration::from_millis(300));
    let msgs = expect_messages(&s, "alice@example.test", 1);
    if count_containing(&msgs, b"HALF-BODY") > 0 {
        fail(&s, "a half-received message is visible in the Maildir");
    }
    expect_one_delivery(&s, "alice@example.test", &remote(&msg));
    if !s.queue_files().is_empty() {
        fail(&s, "dropped transactions left files in the queue");
    }
}

fn stalled_clients_do_not_block_others(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    // stops in the middle of the greeting exchange
    let mut a = SmtpConn::greeted(port);
    a.send(b"EHLO clie");
    // stops in the middle of a command
    let mut b = SmtpConn::ready(port);
    b.send(b"MAIL FROM:<sender@rem");
    // stops in the middle of DATA, for the same mailbox
    let mut d = SmtpConn::ready(port);
    d.expect("MAIL FROM:<sender@remote.example>", "250");
    d.expect("RCPT TO:<alice@example.test>", "250");
    d.expect("DATA", "354");
    d.send(b"Subject: stalled\r\n\r\nSTALLED-BODY\r\n");
    // meanwhile, a normal client is served promptly
    let mut c = SmtpConn::ready(port);
    c.set_timeout(Duration::from_secs(5));
    let msg = sample_message("not-blocked");
    c.deliver("sender@remote.example", &["alice@example.test"], &msg);
    c.quit();
    expect_one_delivery(&s, "alice@example.test", &remote(&msg));
    // the stalled DATA completes later and is delivered as well
    d.send(b"more\r\n.\r\n");
    d.expect_reply("250");
    d.quit();
    let msgs = expect_messages(&s, "alice@example.test", 2);
    if count_containing(&msgs, b"STALLED-BODY\r\nmore\r\n") != 1 {
        fail(&s, "the stalled message was not stored whole");
    }
    drop(a);
    drop(b);
}

fn one_byte_at_a_time(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::greeted(s.port(Listener::Smtp));
    let _ = c.stream().set_nodelay(true);
    let msg = crate::data::tricky_message("byte-by-byte");
    let mut wire = b"EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".to_vec();
    let head = wire.len();
    wire.extend_from_slice(&petrel_tests::data_payload(&msg));
    // the commands one byte per write, with pauses; the body in 7-byte pieces
    for (i, b) in wire[..head].iter().enumerate() {
        c.send(std::slice::from_ref(b));
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for chunk in wire[head..].chunks(7) {
        c.send(chunk);
    }
    for p in ["250", "250", "250", "354", "250 2.0.0"] {
        c.expect_reply(p);
    }
    c.quit();
    let want = petrel_tests::Delivery {
        protocol: Some("ESMTP"),
        helo: Some("client.example"),
        ..remote(&msg)
    };
    expect_one_delivery(&s, "bob@example.test", &want);
}

fn binary_garbage_then_service_continues(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    // deterministic pseudo-random bytes with plenty of CR, LF and NUL
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut junk = Vec::with_capacity(64 * 1024);
    while junk.len() < 64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = (x >> 24) as u8;
        junk.push(match b % 16 {
            0 => b'\r',
            1 => b'\n',
            2 => 0,
            _ => b,
        });
    }
    for start_state in ["greeting", "ehlo", "data"] {
        let mut c = SmtpConn::greeted(port);
        if start_state != "greeting" {
            c.expect("EHLO client.example", "250");
        }
        if start_state == "data" {
            c.expect("MAIL FROM:<sender@remote.example>", "250");
            c.expect("RCPT TO:<carol@other.test>", "250");
            c.expect("DATA", "354");
        }
        let _ = c.try_send(&junk);
        let _ = c.wait_closed(Duration::from_millis(300));
    }
    let mut c = SmtpConn::ready(port);
    let msg = sample_message("after-garbage");
    c.deliver("sender@remote.example", &["alice@example.test"], &msg);
    c.quit();
    expect_one_delivery(&s, "alice@example.test", &remote(&msg));
    expect_messages(&s, "carol@other.test", 0);
    if !s.is_running() {
        fail(&s, "the server died");
    }
    if contains(s.log().as_bytes(), b"panicked at") {
        fail(&s, "the server log shows a panic");
    }
}

fn concurrent_deliveries(rt: Runtime) {
    const CLIENTS: usize = 40;
    const EACH: usize = 3;
    let s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = SmtpConn::ready(port);
                for j in 0..EACH {
                    let rcpt = if (i + j) % 2 == 0 {
                        "alice@example.test"
                    } else {
                        "bob@example.test"
                    };
                    c.deliver(
                        "sender@remote.example",
                        &[rcpt],
                        &sample_message(&format!("conc-{i}-{j}")),
                    );
                }
                c.quit();
            })
        })
        .collect();
    for h in handles {
        if let Err(e) = h.join() {
            std::panic::resume_unwind(e);
        }
    }
    let mut all = s.new_messages("alice@example.test");
    all.extend(s.new_messages("bob@example.test"));
    if all.len() != CLIENTS * EACH {
        fail(
            &s,
            format!("{} messages stored, expected {}", all.len(), CLIENTS * EACH),
        );
    }
    for i in 0..CLIENTS {
        for j in 0..EACH {
            let marker = format!("Subject: conc-{i}-{j}\r\n");
            if count_containing(&all, marker.as_bytes()) != 1 {
                fail(&s, format!("conc-{i}-{j} not stored exactly once"));
            }
        }
    }
}
