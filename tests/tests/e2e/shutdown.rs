//! SIGTERM: exit 0 within a few seconds, stop accepting, let an in-flight DATA finish.

use std::time::{Duration, Instant};

use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, contains, sample_message};

use crate::{expect_one_delivery, fail, remote};

both_runtimes!(
    sigterm_idle_exits_zero,
    sigint_idle_exits_zero,
    sigterm_with_idle_client_exits_zero,
    sigterm_lets_inflight_data_finish
);

#[track_caller]
fn expect_exit_zero(s: &mut Server, within: Duration) {
    let t = Instant::now();
    match s.wait_exit(within) {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => fail(
            s,
            format!("after SIGTERM the server exited with {status}, expected 0"),
        ),
        None => fail(s, format!("the server still runs {within:?} after SIGTERM")),
    }
    if contains(s.log().as_bytes(), b"panicked at") {
        fail(
            s,
            format!("panic during shutdown (exited after {:?})", t.elapsed()),
        );
    }
}

fn sigterm_idle_exits_zero(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    s.sigterm();
    expect_exit_zero(&mut s, Duration::from_secs(5));
}

fn sigint_idle_exits_zero(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    s.signal("INT");
    expect_exit_zero(&mut s, Duration::from_secs(5));
}

/// A connected client that is not in a transaction does not hold the shutdown up: it gets a
/// 421 (or the connection closes) and the process exits 0.
fn sigterm_with_idle_client_exits_zero(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    s.sigterm();
    expect_exit_zero(&mut s, Duration::from_secs(10));
    match c.wait_closed(Duration::from_secs(2)) {
        Ok(extra) if extra.is_empty() || extra.starts_with(b"421") => {}
        Ok(extra) => c.fail(format!(
            "idle client got {:?} at shutdown, expected 421 or a close",
            String::from_utf8_lossy(&extra)
        )),
        Err(e) => c.fail(format!(
            "idle client connection not closed at shutdown: {e}"
        )),
    }
}

fn sigterm_lets_inflight_data_finish(rt: Runtime) {
    let mut s = Server::start(rt, ServerOptions::default());
    let port = s.port(Listener::Smtp);
    let mut c = SmtpConn::ready(port);
    let msg = sample_message("in-flight");
    let payload = petrel_tests::data_payload(&msg);
    let (first, second) = payload.split_at(payload.len() / 2);
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(first);
    std::thread::sleep(Duration::from_millis(100));
    s.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    // new connections are no longer served
    if let Ok(mut late) = SmtpConn::try_connect(port) {
        late.set_timeout(Duration::from_secs(1));
        if let Ok(r) = late.try_reply()
            && r.code == 220
        {
            late.fail("a connection opened after SIGTERM was greeted with 220");
        }
    }
    c.send(second);
    c.expect_reply("250 2.0.0");
    // after the transaction the server may answer QUIT (221) or close with 421
    if c.try_send(b"QUIT\r\n").is_ok()
        && let Ok(r) = c.try_reply()
        && !matches!(r.code, 221 | 421)
    {
        c.fail(format!("QUIT during shutdown got {}", r.text()));
    }
    expect_exit_zero(&mut s, Duration::from_secs(5));
    expect_one_delivery(&s, "alice@example.test", &remote(&msg));
}
