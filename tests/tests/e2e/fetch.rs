//! Fetching remote accounts (issue 11) end to end: `petrel fetch add|list|del|run` and the
//! daemon, against a second Petrel (POP3 with STLS and a pinned certificate, IMAP with STARTTLS
//! and IMAPS verified by a CA file) and against a private Dovecot (IMAP and POP3, plaintext on
//! loopback). Faults: a wrong password, a remote that is down, and `kill -9` of the fetching
//! petrel in the middle of a large fetch, then a second run: every message exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel_tests::dovecot::{Dovecot, DovecotUser};
use petrel_tests::{ALICE, BOB, Listener, Runtime, Server, ServerOptions, petrel_bin};

use crate::fail;

both_runtimes!(
    pop3_run_imports_and_deletes,
    pop3_keep_leaves_mail_and_fetches_only_new,
    imap_run_imports_and_deletes,
    imaps_keep_fetches_only_new,
    daemon_fetches_mail_that_arrives_later_pop3,
    daemon_fetches_mail_that_arrives_later_imap,
    wrong_password_is_shown_and_nothing_is_lost,
    kill9_during_large_fetch_then_rerun_gives_each_message_once,
    kill9_of_the_daemon_during_a_large_fetch_then_restart,
    wrong_or_missing_pin_refuses_the_remote,
);

/// The remote: a Petrel with POP3 and IMAP; ALICE's mailbox there is the remote account.
fn remote(rt: Runtime) -> Server {
    Server::start(
        rt,
        ServerOptions {
            pop3: true,
            imap: true,
            ..Default::default()
        },
    )
}

/// The local Petrel; BOB fetches into his mailbox. Polls every second, retries after one.
fn local(rt: Runtime, extra: &str) -> Server {
    Server::start(
        rt,
        ServerOptions {
            extra_config: format!("[fetch]\ninterval = 1\nretry = 1\nmax_backoff = 2\n{extra}"),
            ..Default::default()
        },
    )
}

/// SHA-256 of the remote's certificate (DER), for `--pin-sha256`.
fn pin(server: &Server) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -outform DER | sha256sum",
            server.cafile().display()
        ))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        hex.len(),
        64,
        "fingerprint of {}",
        server.cafile().display()
    );
    hex
}

/// A message with a unique Message-ID and about `size` bytes of body.
fn message(id: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@remote.example>\r\nTo: Alice <alice@example.test>\r\n\
         Subject: fetch {id}\r\nMessage-ID: <{id}@fetch.test>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let mut line = 0;
    while m.len() < size {
        // Every 7th line starts with a dot: POP3 must unstuff it.
        let lead = if line % 7 == 0 { "." } else { "" };
        m.extend_from_slice(
            format!("{lead}{id} line {line} of the body, some text\r\n").as_bytes(),
        );
        line += 1;
    }
    m.extend_from_slice(b"end\r\n");
    m
}

/// Puts messages into ALICE's INBOX on the remote with `petrel deliver`.
fn put(remote: &Server, ids: &[String], size: usize) {
    for id in ids {
        let out = remote.petrel(&["deliver", "--to", ALICE.address], &message(id, size));
        assert!(out.status.success(), "deliver {id}: {out:?}");
    }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Message-ID -> how many copies, over every file in `dir`'s `new/` and `cur/`.
fn message_ids_in(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(line) = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            {
                *out.entry(line[11..].trim().to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

fn local_ids(local: &Server) -> BTreeMap<String, usize> {
    message_ids_in(&local.maildir(BOB.address))
}

fn remote_count(remote: &Server) -> usize {
    remote.message_files(ALICE.address).len()
}

fn add(local: &Server, url: &str, flags: &[&str], password: &str) -> String {
    let mut args = vec!["fetch", "add", BOB.address, url];
    args.extend_from_slice(flags);
    args.push("--password-stdin");
    let out = local.petrel(&args, format!("{password}\n").as_bytes());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        fail(local, format!("fetch add failed: {out:?}"));
    }
    stdout
}

/// `petrel fetch run BOB`: (exit code, stdout, stderr).
fn run(local: &Server) -> (i32, String, String) {
    let out = local.petrel(&["fetch", "run", BOB.address], b"");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn list(local: &Server) -> String {
    let out = local.petrel(&["fetch", "list", BOB.address], b"");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("timed out waiting for {what}");
    false
}

fn expect_exactly(local: &Server, want: &[String]) {
    let got = local_ids(local);
    let want: BTreeMap<String, usize> = want
        .iter()
        .map(|id| (format!("<{id}@fetch.test>"), 1))
        .collect();
    if got != want {
        let dup: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        fail(
            local,
            format!(
                "local INBOX has {} distinct of {} wanted; duplicates {dup:?}; missing {missing:?}",
                got.len(),
                want.len()
            ),
        );
    }
}

fn pop3_url(remote: &Server) -> String {
    format!(
        "pop3://alice%40example.test@127.0.0.1:{}",
        remote.port(Listener::Pop3)
    )
}

fn imap_url(remote: &Server) -> String {
    format!(
        "imap://alice%40example.test@127.0.0.1:{}/INBOX",
        remote.port(Listener::Imap)
    )
}

fn pop3_run_imports_and_deletes(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let want = ids("p3run", 12);
    put(&remote, &want, 3000);
    let out = add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    assert!(out.contains("added bob@example.test 1 pop3://"), "{out}");
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 0, "fetch run: {stdout} {stderr}");
    assert!(stdout.contains("12/12"), "progress: {stdout}");
    assert!(stdout.contains("fetched 12 message(s)"), "{stdout}");
    expect_exactly(&local, &want);
    assert_eq!(
        remote_count(&remote),
        0,
        "fetched mail is deleted on the remote"
    );
    // Each stored message names the remote, and dot-stuffed lines are unstuffed.
    let files = local.new_messages(BOB.address);
    let m = String::from_utf8_lossy(&files[0]);
    assert!(
        m.starts_with("Return-Path: <>\r\nReceived: from 127.0.0.1 by "),
        "{m}"
    );
    assert!(m.contains("with POP3S"), "{m}");
    assert!(m.contains("\r\n.p3run-"), "leading dot kept once: {m}");
    assert!(!m.contains("\r\n..p3run-"), "dot unstuffed: {m}");
    // A second run finds nothing new.
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("fetched 0 message(s)"), "{stdout}");
    expect_exactly(&local, &want);
    assert!(list(&local).contains("fetched 12; ok"), "{}", list(&local));
}

fn pop3_keep_leaves_mail_and_fetches_only_new(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let mut want = ids("p3keep", 3);
    put(&remote, &want, 500);
    add(
        &local,
        &pop3_url(&remote),
        &["--keep", "--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    assert_eq!(run(&local).0, 0);
    assert_eq!(run(&local).0, 0);
    expect_exactly(&local, &want);
    assert_eq!(remote_count(&remote), 3, "--keep leaves the mail");
    let more = ids("p3keep-more", 2);
    put(&remote, &more, 500);
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("2/2"), "{stdout}");
    want.extend(more);
    expect_exactly(&local, &want);
    assert_eq!(remote_count(&remote), 5);
    assert!(list(&local).contains(" keep"), "{}", list(&local));
    // The crash window between the durable commit and the journal's record of it: the last
    // message's `D` line is lost, its `P` line stays. The next run finds the message's marker
    // in the Maildir and does not fetch it again.
    let log = local.data_dir().join("users/example.test/bob/fetch/1.log");
    let text = std::fs::read_to_string(&log).expect("journal");
    let last_d = text
        .lines()
        .rfind(|l| l.starts_with("D pop3:"))
        .expect("a D line")
        .to_string();
    let cut: String = text
        .lines()
        .filter(|l| *l != last_d)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log, cut).expect("rewrite journal");
    let out = local.petrel(&["fetch", "run", BOB.address], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("had completed; not fetching it again"),
        "{stderr}"
    );
    expect_exactly(&local, &want);
    // And a pending entry whose message never became durable is fetched again.
    let files = local.message_files(BOB.address);
    let victim = files
        .iter()
        .find(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).contains("p3keep-more-0001"))
        .expect("the file")
        .clone();
    std::fs::remove_file(&victim).expect("remove");
    let text = std::fs::read_to_string(&log).expect("journal");
    // Its key is the one no stored message's marker names; forget its delivery.
    let keys: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("D pop3:"))
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    let stored_keys: Vec<String> = local
        .message_files(BOB.address)
        .iter()
        .filter_map(|f| {
            let t = String::from_utf8_lossy(&std::fs::read(f).ok()?).into_owned();
            let line = t
                .lines()
                .find(|l| l.starts_with("X-Petrel-Fetch: "))?
                .to_string();
            Some(line.split(' ').nth(2)?.to_string())
        })
        .collect();
    let lost = keys
        .iter()
        .find(|k| !stored_keys.contains(k))
        .expect("the removed message's key")
        .clone();
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("D {lost} ")))
        .map(|l| format!("{l}\n"))
        .chain([format!("P {lost} 1\n")])
        .collect();
    std::fs::write(&log, cut).expect("rewrite journal");
    let out = local.petrel(&["fetch", "run", BOB.address], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("had not completed; fetching it again"),
        "{stderr}"
    );
    assert!(stdout.contains("1/1"), "{stdout}");
    expect_exactly(&local, &want);
}

fn imap_run_imports_and_deletes(rt: Runtime) {
    let remote = remote(rt);
    let cafile = remote.cafile();
    let mut local = local(rt, &format!("ca = \"{}\"\n", cafile.display()));
    local.stop();
    let want = ids("imrun", 10);
    put(&remote, &want, 5000);
    add(&local, &imap_url(&remote), &[], ALICE.password);
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 0, "fetch run: {stdout} {stderr}");
    assert!(stdout.contains("10/10"), "{stdout}");
    expect_exactly(&local, &want);
    assert_eq!(remote_count(&remote), 0, "expunged on the remote");
    let m = String::from_utf8_lossy(&local.new_messages(BOB.address)[0]).into_owned();
    assert!(m.contains("with IMAP"), "{m}");
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("fetched 0 message(s)"), "{stdout}");
    expect_exactly(&local, &want);
}

fn imaps_keep_fetches_only_new(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let mut want = ids("imkeep", 4);
    put(&remote, &want, 800);
    let url = format!(
        "imaps://alice%40example.test@127.0.0.1:{}",
        remote.port(Listener::Imaps)
    );
    add(
        &local,
        &url,
        &["--keep", "--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    assert_eq!(run(&local).0, 0);
    expect_exactly(&local, &want);
    assert_eq!(remote_count(&remote), 4);
    // Kept mail stays unread on the remote (BODY.PEEK): no S flag in the file names.
    for f in remote.message_files(ALICE.address) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(":2,S"), "{name}");
    }
    let more = ids("imkeep-more", 3);
    put(&remote, &more, 800);
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("3/3"), "{stdout}");
    want.extend(more);
    expect_exactly(&local, &want);
}

fn daemon_fetches_mail_that_arrives_later_pop3(rt: Runtime) {
    let remote = remote(rt);
    let local = local(rt, "");
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    let first = ids("dp3", 2);
    put(&remote, &first, 400);
    if !wait_until("the first messages", Duration::from_secs(20), || {
        local_ids(&local).len() == 2
    }) {
        fail(&local, "the daemon did not fetch");
    }
    let later = ids("dp3-later", 1);
    put(&remote, &later, 400);
    if !wait_until("the later message", Duration::from_secs(20), || {
        local_ids(&local).len() == 3
    }) {
        fail(&local, "the daemon did not fetch the later message");
    }
    let mut want = first;
    want.extend(later);
    expect_exactly(&local, &want);
    assert!(wait_until(
        "remote deletion",
        Duration::from_secs(10),
        || remote_count(&remote) == 0
    ));
}

fn daemon_fetches_mail_that_arrives_later_imap(rt: Runtime) {
    let remote = remote(rt);
    // A long poll interval: only IDLE can bring the later message in time.
    let local = Server::start(
        rt,
        ServerOptions {
            extra_config: "[fetch]\ninterval = 600\nretry = 1\n".into(),
            ..Default::default()
        },
    );
    add(
        &local,
        &imap_url(&remote),
        &["--keep", "--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    let first = ids("dim", 2);
    put(&remote, &first, 400);
    if !wait_until("the first messages", Duration::from_secs(20), || {
        local_ids(&local).len() == 2
    }) {
        fail(&local, "the daemon did not fetch");
    }
    std::thread::sleep(Duration::from_millis(500));
    let later = ids("dim-later", 1);
    put(&remote, &later, 400);
    if !wait_until("the later message (IDLE)", Duration::from_secs(30), || {
        local_ids(&local).len() == 3
    }) {
        fail(&local, "IDLE did not bring the later message");
    }
    let mut want = first;
    want.extend(later);
    expect_exactly(&local, &want);
    // While the daemon waits in IDLE, `fetch run` gets the account at once; mail that arrives
    // meanwhile is fetched once, by one or the other.
    let more = ids("dim-more", 2);
    put(&remote, &more, 400);
    let started = Instant::now();
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    want.extend(more);
    if !wait_until("every message", Duration::from_secs(20), || {
        local_ids(&local).len() == want.len()
    }) {
        fail(&local, "messages missing");
    }
    std::thread::sleep(Duration::from_secs(2));
    expect_exactly(&local, &want);
    // SIGTERM ends the IDLE session politely and the server exits 0 within the grace period.
    let mut local = local;
    let started = Instant::now();
    let status = local.stop();
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

fn wrong_password_is_shown_and_nothing_is_lost(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let want = ids("wrongpw", 2);
    put(&remote, &want, 400);
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        "not-the-password",
    );
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 1, "{stdout} {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("login failed"), "{stderr}");
    let l = list(&local);
    assert!(l.contains("error (") && l.contains("login failed"), "{l}");
    assert_eq!(remote_count(&remote), 2, "nothing lost on the remote");
    assert!(local_ids(&local).is_empty());
    // The remote is down: a connection error, shown too.
    let down = format!(
        "pop3://alice%40example.test@127.0.0.1:{}",
        petrel_tests::free_port()
    );
    let out = local.petrel(&["fetch", "del", BOB.address, "1"], b"");
    assert!(out.status.success(), "{out:?}");
    add(&local, &down, &[], ALICE.password);
    let (code, _, stderr) = run(&local);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(list(&local).contains("cannot connect"), "{}", list(&local));
    // A correct account afterwards gets everything.
    let out = local.petrel(&["fetch", "del", BOB.address, "1"], b"");
    assert!(out.status.success(), "{out:?}");
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    assert_eq!(run(&local).0, 0);
    expect_exactly(&local, &want);
}

fn kill9_during_large_fetch_then_rerun_gives_each_message_once(rt: Runtime) {
    for protocol in ["pop3", "imap"] {
        let remote = remote(rt);
        let mut local = local(rt, "");
        local.stop();
        let want = ids(&format!("k9{protocol}"), 150);
        put(&remote, &want, 40_000);
        let url = if protocol == "pop3" {
            pop3_url(&remote)
        } else {
            imap_url(&remote)
        };
        add(
            &local,
            &url,
            &["--pin-sha256", &pin(&remote)],
            ALICE.password,
        );
        for round in 0..3 {
            let mut child = Command::new(petrel_bin())
                .args(["fetch", "run", BOB.address, "--config"])
                .arg(local.config_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn fetch run");
            let before = local_ids(&local).len();
            let target = before + 20 + round * 7;
            wait_until("some messages", Duration::from_secs(60), || {
                local_ids(&local).len() >= target
            });
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            let got = local_ids(&local);
            assert!(
                got.values().all(|n| *n == 1),
                "{protocol}: duplicate after kill -9: {got:?}"
            );
        }
        let (code, stdout, stderr) = run(&local);
        assert_eq!(code, 0, "{protocol}: {stdout} {stderr}");
        expect_exactly(&local, &want);
        assert_eq!(
            remote_count(&remote),
            0,
            "{protocol}: all deleted on the remote"
        );
    }
}

/// A self-signed remote with the wrong pin (STLS), or with no pin and no CA that knows it
/// (IMAPS): nothing is sent, the reason is shown.
fn wrong_or_missing_pin_refuses_the_remote(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    put(&remote, &ids("pin", 1), 300);
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &"ab".repeat(32)],
        ALICE.password,
    );
    let (code, _, stderr) = run(&local);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("TLS") && stderr.contains("not the pinned"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let l = list(&local);
    assert!(l.contains("not the pinned"), "{l}");
    assert!(
        local
            .petrel(&["fetch", "del", BOB.address, "1"], b"")
            .status
            .success()
    );
    let url = format!(
        "imaps://alice%40example.test@127.0.0.1:{}",
        remote.port(Listener::Imaps)
    );
    add(&local, &url, &[], ALICE.password);
    let (code, _, stderr) = run(&local);
    assert_eq!(code, 1);
    assert!(stderr.contains("TLS with 127.0.0.1"), "{stderr}");
    assert!(local_ids(&local).is_empty());
    assert_eq!(remote_count(&remote), 1);
    // A bad fingerprint or URL is a usage error: exit 2, one line.
    let out = local.petrel(
        &[
            "fetch",
            "add",
            BOB.address,
            &url,
            "--pin-sha256",
            "xyz",
            "--password-stdin",
        ],
        b"pw\n",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = local.petrel(
        &[
            "fetch",
            "add",
            BOB.address,
            "ftp://x@h:1",
            "--password-stdin",
        ],
        b"pw\n",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
}

fn kill9_of_the_daemon_during_a_large_fetch_then_restart(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    let want = ids("k9d", 150);
    put(&remote, &want, 40_000);
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    for round in 0..2 {
        let target = 25 + round * 40;
        if !wait_until("the daemon to fetch some", Duration::from_secs(60), || {
            local_ids(&local).len() >= target
        }) {
            fail(&local, "the daemon fetched too little");
        }
        local.kill9();
        let got = local_ids(&local);
        assert!(
            got.values().all(|n| *n == 1),
            "duplicate after kill -9: {got:?}"
        );
        local.restart();
    }
    if !wait_until("every message", Duration::from_secs(90), || {
        local_ids(&local).len() == want.len() && remote_count(&remote) == 0
    }) {
        fail(
            &local,
            format!(
                "{} of {} after restarts",
                local_ids(&local).len(),
                want.len()
            ),
        );
    }
    expect_exactly(&local, &want);
}

both_runtimes!(
    content_scanner_refusal_leaves_the_message_on_the_remote,
    sieve_runs_on_fetched_mail
);

/// The user's Sieve script sorts fetched mail (it runs as for SMTP mail), and the crash
/// recovery finds a message the script filed into a folder.
fn sieve_runs_on_fetched_mail(rt: Runtime) {
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let dir = local.data_dir().join("users/example.test/bob/sieve");
    std::fs::create_dir_all(&dir).expect("sieve dir");
    std::fs::write(
        dir.join("main.sieve"),
        "require \"fileinto\";\nif header :contains \"subject\" \"sieve-0001\" { fileinto \"Fetched\"; }\n",
    )
    .expect("script");
    std::fs::write(dir.join(".active"), "main\n").expect("active");
    let want = ids("sieve", 3);
    put(&remote, &want, 300);
    add(
        &local,
        &pop3_url(&remote),
        &["--keep", "--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    assert_eq!(run(&local).0, 0);
    let inbox = local_ids(&local);
    let filed = message_ids_in(&local.maildir(BOB.address).join(".Fetched"));
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(
        filed.keys().cloned().collect::<Vec<_>>(),
        vec!["<sieve-0001@fetch.test>".to_string()]
    );
    // Lose the record of the filed message's delivery: its marker is found in the folder.
    let log = local.data_dir().join("users/example.test/bob/fetch/1.log");
    let text = std::fs::read_to_string(&log).expect("journal");
    let filed_file = std::fs::read_dir(local.maildir(BOB.address).join(".Fetched/new"))
        .expect("folder")
        .flatten()
        .next()
        .expect("a file")
        .path();
    let stored = String::from_utf8_lossy(&std::fs::read(filed_file).unwrap()).into_owned();
    let key = stored
        .lines()
        .find(|l| l.starts_with("X-Petrel-Fetch: "))
        .and_then(|l| l.split(' ').nth(2))
        .expect("marker")
        .to_string();
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with(&format!("D {key} ")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&log, cut).expect("journal");
    assert_eq!(run(&local).0, 0);
    assert_eq!(local_ids(&local).len(), 2);
    assert_eq!(
        message_ids_in(&local.maildir(BOB.address).join(".Fetched")).len(),
        1,
        "not fetched twice"
    );
}

/// With `[filter] clamd`, a fetched virus is not stored, stays on the remote (even without
/// `--keep`), is named in `fetch list` and is not fetched again; clean mail arrives and is
/// deleted on the remote as usual.
fn content_scanner_refusal_leaves_the_message_on_the_remote(rt: Runtime) {
    let clamd = petrel_tests::scanners::Scanner::clamd();
    let remote = remote(rt);
    let mut local = local(rt, "");
    local.stop();
    let config = std::fs::read_to_string(local.config_path()).expect("config");
    std::fs::write(
        local.config_path(),
        format!("{config}\n[filter]\nclamd = \"{}\"\n", clamd.addr()),
    )
    .expect("config");
    let clean = ids("clean", 2);
    put(&remote, &clean, 500);
    let mut virus = message("virus-0000", 200);
    virus.extend_from_slice(&petrel_tests::scanners::eicar());
    virus.extend_from_slice(b"\r\n");
    let out = remote.petrel(&["deliver", "--to", ALICE.address], &virus);
    assert!(out.status.success());
    add(
        &local,
        &pop3_url(&remote),
        &["--pin-sha256", &pin(&remote)],
        ALICE.password,
    );
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 0, "{stdout} {stderr}");
    expect_exactly(&local, &clean);
    assert_eq!(remote_count(&remote), 1, "the virus stays on the remote");
    let l = list(&local);
    assert!(l.contains("refused by a content scanner"), "{l}");
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing new"), "{stdout}");
    assert_eq!(remote_count(&remote), 1);
    expect_exactly(&local, &clean);
}

both_runtimes!(
    dovecot_imap_and_pop3,
    dovecot_uidvalidity_change_refetches_nothing
);

/// Dovecot renumbers the folder (its `dovecot-uidlist` is lost): nothing is fetched twice, the
/// change shows in `fetch list`, and a message that arrives afterwards is fetched.
fn dovecot_uidvalidity_change_refetches_nothing(rt: Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("remote-maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let first = ids("uv", 4);
    for (i, id) in first.iter().enumerate() {
        std::fs::write(
            maildir
                .join("new")
                .join(format!("1700000000.M{i}P1.remote")),
            message(id, 1500),
        )
        .expect("write");
    }
    let user = DovecotUser::new("carl@remote.test", "carl-pw", &maildir);
    let mut local = local(rt, "");
    local.stop();
    {
        let dovecot = Dovecot::start(std::slice::from_ref(&user));
        dovecot.grant_all();
        add(
            &local,
            &format!(
                "imap://carl%40remote.test@127.0.0.1:{}/INBOX",
                dovecot.imap_port
            ),
            &["--keep"],
            "carl-pw",
        );
        let (code, stdout, stderr) = run(&local);
        assert_eq!(code, 0, "{stdout} {stderr}");
        expect_exactly(&local, &first);
    }
    // A new Dovecot without the old UID list: a new UIDVALIDITY (Dovecot takes the time).
    std::thread::sleep(Duration::from_millis(1100));
    let _ = std::fs::remove_file(maildir.join("dovecot-uidlist"));
    let later = ids("uv-later", 1);
    std::fs::write(
        maildir.join("new").join("1700000100.M9P1.remote"),
        message(&later[0], 1500),
    )
    .expect("write");
    let dovecot = Dovecot::start(std::slice::from_ref(&user));
    dovecot.grant_all();
    let url = format!(
        "imap://carl%40remote.test@127.0.0.1:{}/INBOX",
        dovecot.imap_port
    );
    // The account's port changed with the new Dovecot: re-point it (same number, same state).
    let account = local
        .data_dir()
        .join("users/example.test/bob/fetch/1.account");
    let text = std::fs::read_to_string(&account).expect("account file");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("url = ") {
                format!("url = {url}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&account, format!("{text}\n")).expect("rewrite account");
    let (code, stdout, stderr) = run(&local);
    assert_eq!(code, 0, "{stdout} {stderr}\n{}", dovecot.log_tail(20));
    assert!(stdout.contains("1/1"), "only the new message: {stdout}");
    let mut want = first;
    want.extend(later);
    expect_exactly(&local, &want);
    let l = list(&local);
    assert!(l.contains("UIDVALIDITY changed"), "{l}");
}

/// Real Dovecot as the remote: IMAP (keep) then POP3 (delete) of the same Maildir.
fn dovecot_imap_and_pop3(rt: Runtime) {
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("remote-maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let want = ids("dove", 6);
    for (i, id) in want.iter().enumerate() {
        std::fs::write(
            maildir
                .join("new")
                .join(format!("1700000000.M{i}P1.remote")),
            message(id, 2000),
        )
        .expect("write");
    }
    let user = DovecotUser::new("carl@remote.test", "carl-pw", &maildir);
    let dovecot = Dovecot::start(&[user]);
    dovecot.grant_all();
    let mut local = local(rt, "");
    local.stop();
    add(
        &local,
        &format!(
            "imap://carl%40remote.test@127.0.0.1:{}/INBOX",
            dovecot.imap_port
        ),
        &["--keep"],
        "carl-pw",
    );
    let (code, stdout, stderr) = run(&local);
    assert_eq!(
        code,
        0,
        "imap from dovecot: {stdout} {stderr}\n{}",
        dovecot.log_tail(30)
    );
    assert!(stdout.contains("6/6"), "{stdout}");
    expect_exactly(&local, &want);
    // Now POP3 from the same mailbox, deleting: the messages arrive a second time (a different
    // account), then are gone from Dovecot's Maildir.
    let out = local.petrel(&["fetch", "del", BOB.address, "1"], b"");
    assert!(out.status.success());
    add(
        &local,
        &format!("pop3://carl%40remote.test@127.0.0.1:{}", dovecot.pop3_port),
        &[],
        "carl-pw",
    );
    let (code, stdout, stderr) = run(&local);
    assert_eq!(
        code,
        0,
        "pop3 from dovecot: {stdout} {stderr}\n{}",
        dovecot.log_tail(30)
    );
    assert!(stdout.contains("6/6"), "{stdout}");
    let got = local_ids(&local);
    assert_eq!(got.len(), 6);
    assert!(got.values().all(|n| *n == 2), "{got:?}");
    assert!(message_ids_in(&maildir).is_empty(), "deleted from Dovecot");
    let (code, stdout, _) = run(&local);
    assert_eq!(code, 0);
    assert!(stdout.contains("fetched 0 message(s)"), "{stdout}");
}

#[test]
fn bad_fetch_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, key) in [
        ("[fetch]\ninterval = 0\n", "fetch.interval"),
        ("[fetch]\nretry = 0\n", "fetch.retry"),
        ("[fetch]\nca = \"/nonexistent/ca.pem\"\n", "fetch.ca"),
        ("[fetch]\nintervall = 5\n", "fetch.intervall"),
    ] {
        let path = dir.path().join("petrel.toml");
        std::fs::write(
            &path,
            format!("data_dir = \"{}\"\n{text}", dir.path().display()),
        )
        .expect("config");
        let out = Command::new(petrel_bin())
            .args(["fetch", "list", "--config"])
            .arg(&path)
            .output()
            .expect("run petrel");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// A remote that answers garbage, or hangs up in the middle of a message: `fetch run` fails
/// with one line, `fetch list` shows it, nothing half-fetched is stored.
#[test]
fn garbage_and_a_drop_mid_message_are_errors() {
    use std::io::{Read, Write};
    let cases: [(&str, &[u8]); 3] = [
        (
            "garbage",
            b"+OK hi\r\n\x00\xff\xfe not pop3 at all\r\n\x01\x02\r\n",
        ),
        (
            "drop",
            b"+OK hi\r\n-ERR no capa\r\n+OK\r\n+OK\r\n+OK\r\n1 aaa\r\n.\r\n+OK\r\n1 5000\r\n.\r\n\
              +OK message follows\r\nFrom: x@y.test\r\nSubject: cut\r\n\r\nhalf a bo",
        ),
        ("silence then close", b""),
    ];
    for (what, reply) in cases {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let reply = reply.to_vec();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                s.set_read_timeout(Some(Duration::from_millis(300))).ok();
                // Answer as the client speaks, so each reply follows a command.
                let _ = s.write_all(&reply);
                let mut buf = [0u8; 4096];
                for _ in 0..10 {
                    if matches!(s.read(&mut buf), Ok(0)) {
                        break;
                    }
                }
            }
        });
        let local = local(Runtime::Blocking, "");
        let mut local = local;
        local.stop();
        add(&local, &format!("pop3://x@127.0.0.1:{port}"), &[], "pw");
        let (code, stdout, stderr) = run(&local);
        assert_eq!(code, 1, "{what}: {stdout} {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{what}: {stderr}");
        assert!(list(&local).contains("error ("), "{what}: {}", list(&local));
        assert!(local_ids(&local).is_empty(), "{what}");
        assert!(local.message_files(BOB.address).is_empty(), "{what}");
        let _ = server.join();
    }
}
