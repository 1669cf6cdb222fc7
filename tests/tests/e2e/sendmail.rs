//! `petrel sendmail` and the binary run as `sendmail`, as cron and scripts use it: flags,
//! recipients from the header, Bcc removed, missing header fields added, local delivery and the
//! outbound queue, managed with `petrel queue list|drop`.

use std::process::{Command, Output, Stdio};

use petrel_tests::{ALICE, BOB, Runtime, Server, ServerOptions, petrel_bin};

use crate::expect_messages;

fn run(bin: &std::path::Path, args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().expect("wait")
}

fn petrel(s: &Server, args: &[&str], stdin: &[u8]) -> Output {
    let config = s.config_path().display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    run(&petrel_bin(), &all, &[("LOGNAME", "cron".into())], stdin)
}

#[test]
fn sendmail_t_delivers_locally_and_queues_remote() {
    let s = Server::start(Runtime::Blocking, ServerOptions::default());
    let out = petrel(
        &s,
        &["sendmail", "-t", "-oi", "-F", "Cron Daemon"],
        b"To: alice@example.test, Remote <friend@remote.example>\nBcc: bob@example.test\nSubject: nightly\n\nall good\n.\nstill body\n",
    );
    assert!(out.status.success(), "{out:?}");
    for user in [ALICE.address, BOB.address] {
        let msgs = expect_messages(&s, user, 1);
        let text = String::from_utf8_lossy(&msgs[0]);
        assert!(text.starts_with("Return-Path: <cron@example.test>\r\nReceived: by mail.test.example (Petrel sendmail)"), "{text}");
        assert!(
            text.contains("\r\nFrom: \"Cron Daemon\" <cron@example.test>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nDate: ") && text.contains("\r\nMessage-ID: <"),
            "{text}"
        );
        assert!(!text.contains("Bcc:"), "Bcc must not be delivered: {text}");
        assert!(
            text.ends_with("\r\n\r\nall good\r\n.\r\nstill body\r\n"),
            "-oi keeps the dot line: {text}"
        );
    }
    let list = petrel(&s, &["queue", "list"], b"");
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{list:?}");
    assert!(
        listing.contains("from cron@example.test")
            && listing.contains("    friend@remote.example: pending"),
        "{listing}"
    );
    assert!(
        listing.contains("1 message(s) queued, 1 recipient(s) pending"),
        "{listing}"
    );
    let id = listing.split_whitespace().next().unwrap().to_string();
    let dropped = petrel(&s, &["queue", "drop", &id], b"");
    assert!(dropped.status.success(), "{dropped:?}");
    let list = petrel(&s, &["queue", "list"], b"");
    assert!(String::from_utf8_lossy(&list.stdout).contains("0 message(s) queued"));
    assert!(s.queue_files().is_empty());
    assert_eq!(
        petrel(&s, &["queue", "drop", "NOSUCH"], b"").status.code(),
        Some(1)
    );
}

#[test]
fn invoked_as_sendmail_with_a_lone_dot_and_exit_codes() {
    let s = Server::start(Runtime::Blocking, ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(petrel_bin(), &link).unwrap();
    let env = [
        ("PETREL_CONFIG", s.config_path().display().to_string()),
        ("LOGNAME", "www-data".to_string()),
    ];
    let out = run(
        &link,
        &["-f", "webapp@example.test", "alice@example.test"],
        &env,
        b"Subject: form\n\nhello\n.\nnot part of the message\n",
    );
    assert!(out.status.success(), "{out:?}");
    let msgs = expect_messages(&s, ALICE.address, 1);
    let text = String::from_utf8_lossy(&msgs[0]);
    assert!(
        text.starts_with("Return-Path: <webapp@example.test>\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\r\n\r\nhello\r\n"),
        "a lone dot ends the message: {text}"
    );
    assert!(text.contains("\r\nFrom: webapp@example.test\r\n"), "{text}");

    let code = |args: &[&str]| run(&link, args, &env, b"Subject: x\n\ny\n").status.code();
    assert_eq!(
        code(&["nobody@example.test"]),
        Some(67),
        "unknown local user"
    );
    assert_eq!(code(&["-i"]), Some(64), "no recipients");
    assert_eq!(code(&["-bs"]), Some(64), "unsupported mode");
    assert_eq!(code(&["-i", "not an address"]), Some(64));
}
