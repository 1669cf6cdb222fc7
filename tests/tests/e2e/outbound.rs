//! Outbound delivery end to end: alice submits on one Petrel, whose queue runner finds the
//! recipient domain's MX through a real DNS server (dnsmasq), connects to a second Petrel,
//! upgrades to TLS and delivers; a recipient the receiver refuses comes back to alice as an
//! RFC 3464 bounce. The same through a smarthost.

use std::time::{Duration, Instant};

use petrel_tests::{ALICE, Account, Dnsmasq, Listener, Runtime, Server, ServerOptions, swaks};

use crate::fail;

both_runtimes!(mx_delivery_with_starttls_and_a_bounce);

const DAVE: Account = Account {
    address: "dave@remote.test",
    password: "dave-pw",
};

fn receiver(rt: Runtime) -> Server {
    Server::start(
        rt,
        ServerOptions {
            domains: vec!["remote.test".into()],
            users: vec![DAVE],
            ..Default::default()
        },
    )
}

fn submit(s: &Server, to: &str, subject: &str) {
    let args = sargs![
        "--server",
        "127.0.0.1",
        "--port",
        s.port(Listener::Submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        ALICE.address,
        "--auth-password",
        ALICE.password,
        "--from",
        ALICE.address,
        "--to",
        to,
        "--header",
        format!("Subject: {subject}"),
        "--body",
        "Hello from the other server.\n.dot line\n",
    ];
    let done = swaks(&args);
    if !done.success() {
        fail(s, format!("submission failed\n{}", done.describe()));
    }
}

/// Waits until `f` holds, or fails with `what` and both servers' logs.
fn wait_for(a: &Server, b: &Server, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > deadline {
            panic!(
                "after 30 s: {what}\n--- sender ---\n{}\n--- receiver ---\n{}",
                a.log_tail(40),
                b.log_tail(20)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mx_delivery_with_starttls_and_a_bounce(rt: Runtime) {
    let b = receiver(rt);
    let dns = Dnsmasq::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
    ]);
    let a = Server::start(
        rt,
        ServerOptions {
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\n",
                dns.addr,
                b.port(Listener::Smtp)
            ),
            ..Default::default()
        },
    );
    submit(
        &a,
        &format!("{},nobody@remote.test", DAVE.address),
        "over the MX",
    );

    wait_for(&a, &b, "dave's copy at the receiver", || {
        b.new_messages(DAVE.address).len() == 1
    });
    let got = b.new_messages(DAVE.address);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.starts_with("Return-Path: <alice@example.test>\r\n"),
        "{text}"
    );
    assert!(text.contains("Subject: over the MX"), "{text}");
    assert!(
        text.contains("\r\n.dot line\r\n"),
        "dot-stuffing undone: {text}"
    );
    // The hop between the servers was encrypted (opportunistic STARTTLS).
    let hop = text
        .split("Received: ")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        hop.contains("with ESMTPS"),
        "the relay hop should be ESMTPS: {hop}"
    );

    // nobody@ was refused at RCPT: alice gets a delivery status notification.
    wait_for(&a, &b, "the bounce in alice's INBOX", || {
        !a.new_messages(ALICE.address).is_empty()
    });
    let bounce = a.new_messages(ALICE.address).remove(0);
    let report = String::from_utf8_lossy(&bounce);
    assert!(
        report.starts_with("Return-Path: <>\r\n"),
        "bounces come from the null sender: {report}"
    );
    assert!(
        report.contains("Final-Recipient: rfc822; nobody@remote.test")
            && report.contains("Action: failed")
            && report.contains("Status: 5.1.1")
            && report.contains("Remote-MTA: dns; mx.remote.test"),
        "{report}"
    );
    assert!(
        !report.contains("Final-Recipient: rfc822; dave@"),
        "{report}"
    );
    wait_for(&a, &b, "an empty queue", || a.queue_files().is_empty());
}

#[test]
fn smarthost_takes_everything() {
    let b = receiver(Runtime::Smol);
    let a = Server::start(
        Runtime::Blocking,
        ServerOptions {
            // No resolver is reachable: only the smarthost route can work. Its certificate is
            // verified against the CA the test names.
            extra_config: format!(
                "[relay]\nresolver = \"127.0.0.1:9\"\nsmarthost = \"127.0.0.1:{}\"\nsmarthost_ca = \"{}\"\n",
                b.port(Listener::Smtp),
                b.cafile().display()
            ),
            ..Default::default()
        },
    );
    submit(&a, DAVE.address, "via the smarthost");
    wait_for(&a, &b, "dave's copy via the smarthost", || {
        b.new_messages(DAVE.address).len() == 1
    });
    wait_for(&a, &b, "an empty queue", || a.queue_files().is_empty());
}

#[test]
fn undeliverable_domains_bounce_and_unreachable_ones_wait() {
    let dns = Dnsmasq::start(&[
        "--mx-host=null.test,.,0".into(),
        "--mx-host=down.test,mx.down.test,10".into(),
        "--host-record=mx.down.test,127.0.0.1".into(),
    ]);
    let closed = petrel_tests::free_port();
    let a = Server::start(
        Runtime::Smol,
        ServerOptions {
            extra_config: format!("[relay]\nresolver = \"{}\"\nmx_port = {closed}\n", dns.addr),
            ..Default::default()
        },
    );
    submit(&a, "x@null.test,y@nx.test,z@down.test", "three bad routes");
    wait_for(&a, &a, "bounces for null MX and NXDOMAIN", || {
        let msgs = a.new_messages(ALICE.address);
        msgs.iter().any(|m| {
            let t = String::from_utf8_lossy(m);
            t.contains("x@null.test") && t.contains("y@nx.test")
        })
    });
    let msgs = a.new_messages(ALICE.address);
    let text = String::from_utf8_lossy(&msgs[0]).into_owned();
    assert!(text.contains("Status: 5.1.10"), "null MX: {text}");
    assert!(text.contains("Status: 5.1.2"), "no such domain: {text}");
    assert!(
        !text.contains("Final-Recipient: rfc822; z@down.test"),
        "down.test is only deferred: {text}"
    );
    // z@down.test stays queued with the connection error, to be retried.
    let out = a.petrel(&["queue", "list"], b"");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("z@down.test: pending (0 connect to mx.down.test[127.0.0.1"),
        "{listing}"
    );
    assert!(listing.contains("1 attempt(s)"), "{listing}");
}

/// The receiver is down; the sender is killed with SIGKILL with the message queued; after the
/// receiver and then the sender come back (and `petrel queue flush`), the message is delivered
/// exactly once.
#[test]
fn queued_mail_survives_kill_9_and_is_delivered_once() {
    let mut b = receiver(Runtime::Smol);
    let dns = Dnsmasq::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
    ]);
    let mut a = Server::start(
        Runtime::Smol,
        ServerOptions {
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\n",
                dns.addr,
                b.port(Listener::Smtp)
            ),
            ..Default::default()
        },
    );
    b.stop();
    submit(&a, DAVE.address, "survives kill -9");
    wait_for(&a, &a, "a deferred attempt", || {
        let out = a.petrel(&["queue", "list"], b"");
        String::from_utf8_lossy(&out.stdout).contains("1 attempt(s)")
    });
    a.kill9();
    b.restart();
    let flushed = a.petrel(&["queue", "flush"], b"");
    assert!(
        String::from_utf8_lossy(&flushed.stdout).contains("1 message(s) due now"),
        "{flushed:?}"
    );
    a.restart();
    wait_for(&a, &b, "delivery after the restarts", || {
        b.new_messages(DAVE.address).len() == 1
    });
    wait_for(&a, &b, "an empty queue", || a.queue_files().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.new_messages(DAVE.address).len(), 1, "delivered once");
    assert!(a.new_messages(ALICE.address).is_empty(), "no bounce");
}

both_runtimes!(a_receiver_that_never_greets_holds_up_only_its_own_mail);

/// One MX accepts connections and never says a word (its greeting would time out after 5
/// minutes); mail for another domain submitted meanwhile is delivered at once.
fn a_receiver_that_never_greets_holds_up_only_its_own_mail(rt: Runtime) {
    let b = receiver(rt);
    let port = b.port(Listener::Smtp);
    // The silent MX listens on another loopback address with the same port.
    let silent = std::net::TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2");
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let dns = Dnsmasq::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
        "--mx-host=slow.test,mx.slow.test,10".into(),
        "--host-record=mx.slow.test,127.0.0.2".into(),
    ]);
    let a = Server::start(
        rt,
        ServerOptions {
            extra_config: format!("[relay]\nresolver = \"{}\"\nmx_port = {port}\n", dns.addr),
            ..Default::default()
        },
    );
    submit(&a, "someone@slow.test", "to the silent server");
    wait_for(&a, &b, "the silent server to be connected to", || {
        !held.lock().unwrap().is_empty()
    });
    submit(&a, DAVE.address, "meanwhile");
    wait_for(&a, &b, "the other domain's mail", || {
        b.new_messages(DAVE.address).len() == 1
    });
}
