//! kill -9 during a load: after a restart every acknowledged message is in the Maildir exactly
//! once, every visible file is complete, nothing half-written is visible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petrel_tests::{
    Listener, Runtime, Server, ServerOptions, SmtpConn, StoredMessage, data_payload,
};

use crate::{expect_one_delivery, fail, remote};

both_runtimes!(kill9_during_load_loses_no_acknowledged_message);

const CLIENTS: usize = 8;

/// The full, unique message number `n`: `msg-<n>` plus 2 KB of filler derived from `n`.
fn numbered(n: usize) -> Vec<u8> {
    let mut m = format!("Subject: crash msg-{n}\r\nX-Number: {n}\r\n\r\nmsg-{n}\r\n").into_bytes();
    for line in 0..32 {
        m.extend_from_slice(format!("{n:08}-{line:02}-").as_bytes());
        m.extend(std::iter::repeat_n(b'a' + ((n + line) % 26) as u8, 50));
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(format!("end of msg-{n}\r\n").as_bytes());
    m
}

/// One client: sends numbered messages until told to stop or the server dies; records the
/// numbers that got a 250.
fn client(port: u16, next: Arc<AtomicUsize>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<usize>>>) {
    'connect: while !stop.load(Ordering::SeqCst) {
        let Ok(mut c) = SmtpConn::try_connect(port) else {
            return;
        };
        c.set_timeout(Duration::from_secs(10));
        let step = |c: &mut SmtpConn, data: &[u8], code: u16| -> bool {
            c.try_send(data).is_ok() && c.try_reply().is_ok_and(|r| r.code == code)
        };
        if !c.try_reply().is_ok_and(|r| r.code == 220)
            || !step(&mut c, b"EHLO load.example\r\n", 250)
        {
            continue 'connect;
        }
        while !stop.load(Ordering::SeqCst) {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let ok = step(&mut c, b"MAIL FROM:<load@remote.example>\r\n", 250)
                && step(&mut c, b"RCPT TO:<alice@example.test>\r\n", 250)
                && step(&mut c, b"DATA\r\n", 354)
                && step(&mut c, &data_payload(&numbered(n)), 250);
            if !ok {
                continue 'connect;
            }
            acked.lock().unwrap_or_else(|e| e.into_inner()).push(n);
        }
        break 'connect;
    }
}

fn kill9_during_load_loses_no_acknowledged_message(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, stop, acked) = (next.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || client(port, next, stop, acked))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    s.kill9();
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.join();
    }
    let acked: BTreeSet<usize> = acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    let attempted = next.load(Ordering::SeqCst);
    if acked.len() < 10 {
        fail(
            &s,
            format!(
                "only {} messages acknowledged in 2 s of load (attempted {attempted}): the load did not run",
                acked.len()
            ),
        );
    }
    s.restart();

    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in s.message_files("alice@example.test") {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let parsed = match StoredMessage::parse(&bytes) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let number = parsed
            .rest
            .strip_prefix(b"Subject: crash msg-")
            .and_then(|r| r.iter().position(|&b| b == b'\r').map(|p| &r[..p]))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<usize>().ok());
        let Some(n) = number else {
            problems.push(format!(
                "{}: not one of the numbered messages (or truncated): {} bytes",
                path.display(),
                bytes.len()
            ));
            continue;
        };
        if parsed.rest != numbered(n) || parsed.return_path != "load@remote.example" {
            problems.push(format!(
                "{}: msg-{n} is incomplete or altered ({} of {} bytes)",
                path.display(),
                parsed.rest.len(),
                numbered(n).len()
            ));
        }
        *seen.entry(n).or_default() += 1;
    }
    for (n, count) in &seen {
        if *count > 1 {
            problems.push(format!("msg-{n} stored {count} times"));
        }
    }
    let missing: Vec<&usize> = acked.iter().filter(|n| !seen.contains_key(n)).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} acknowledged message(s) missing after kill -9: {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        ));
    }
    if !problems.is_empty() {
        fail(
            &s,
            format!(
                "after kill -9 ({} acknowledged, {} stored, {attempted} attempted):\n{}",
                acked.len(),
                seen.len(),
                problems.join("\n")
            ),
        );
    }
    // the restarted server works
    expect_no_tmp_leak_visible(&s);
    let mut c = SmtpConn::ready(port);
    let msg = petrel_tests::sample_message("after-restart");
    c.deliver("sender@remote.example", &["bob@example.test"], &msg);
    c.quit();
    expect_one_delivery(&s, "bob@example.test", &remote(&msg));
}

/// Nothing but complete messages may sit in `new/` or `cur/` (checked above); this also checks
/// that no other user got any of the load.
fn expect_no_tmp_leak_visible(s: &Server) {
    for user in ["bob@example.test", "carol@other.test"] {
        if !s.message_files(user).is_empty() {
            fail(s, format!("{user} got mail from the load"));
        }
    }
}
