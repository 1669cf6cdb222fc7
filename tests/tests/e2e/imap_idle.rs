//! IMAP IDLE push (issue 9, items 4 and 6): an idling imaplib session hears of every kind of
//! change to its folder within a second, whoever makes it, while the smol runtime does not
//! poll (its safety poll is 30 s; the blocking runtime polls every 0.5 s and must pass too).

use petrel_tests::{ALICE, Listener, Runtime, Server, ServerOptions, SmtpConn, python};

use crate::expect_messages;

both_runtimes!(idle_hears_of_every_writer_within_a_second);

/// A delivery by SMTP, one by `petrel deliver` (another process), a message a Maildir agent
/// renames into `new/` behind Petrel's back, and a flag change by another IMAP session: each
/// reaches the idling client within one second of the change, although the folder had settled
/// before each (so on the smol runtime only the folder watch can have told the session).
fn idle_hears_of_every_writer_within_a_second(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            imap: true,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.deliver(
        "bob@remote.example",
        &[ALICE.address],
        b"From: bob@remote.example\r\nTo: alice@example.test\r\nSubject: first\r\n\r\nx\r\n",
    );
    c.quit();
    expect_messages(&s, ALICE.address, 1);
    let out = python(
        "imap_idle_push.py",
        sargs![
            "--imaps-port",
            s.port(Listener::Imaps),
            "--smtp-port",
            s.port(Listener::Smtp),
            "--cafile",
            s.cafile().display(),
            "--user",
            ALICE.address,
            "--password",
            ALICE.password,
            "--petrel",
            petrel_tests::petrel_bin().display(),
            "--config",
            s.config_path().display(),
            "--maildir",
            s.maildir(ALICE.address).display(),
        ],
    );
    assert!(out.contains("DONE"), "{out}\n{}", s.log_tail(30));
    let times: Vec<(String, f64)> = out
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    let names: Vec<&str> = times.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["smtp", "deliver", "drop", "flag"], "{out}");
    for (what, secs) in &times {
        assert!(
            *secs < 1.0,
            "{what}: {secs} s until the idling client heard of it\n{out}\n{}",
            s.log_tail(30)
        );
    }
    // Every message is there (the dropped one too, read by Petrel into its index).
    expect_messages(&s, ALICE.address, 4);
    eprintln!("IDLE push latencies ({}): {times:?}", rt.as_str());
}
