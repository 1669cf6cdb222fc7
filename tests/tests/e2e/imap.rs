//! IMAP end to end with Python's imaplib on both runtimes: STARTTLS (LOGINDISABLED before it)
//! and implicit TLS, then LIST, SELECT, SEARCH, FETCH, STORE with a keyword, CREATE, COPY,
//! APPEND, EXPUNGE and STATUS over mail delivered by SMTP; the files on disk follow.

use petrel_tests::{ALICE, Listener, Runtime, Server, ServerOptions, SmtpConn, python};

use crate::expect_messages;

both_runtimes!(
    imaplib_session_over_starttls,
    imaplib_session_over_implicit_tls,
    idle_sees_smtp_delivery_and_other_session_within_a_second,
    bad_input_is_answered_and_the_server_carries_on,
    qresync_reports_vanished_uids,
    list_extended_recursivematch_reports_subscribed_children
);

fn imap_server(rt: Runtime) -> Server {
    let s = Server::start(
        rt,
        ServerOptions {
            imap: true,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    for subject in ["imap-one", "imap-two"] {
        let msg = format!(
            "From: bob@remote.example\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\nBody of {subject}.\r\n"
        );
        c.deliver("bob@remote.example", &[ALICE.address], msg.as_bytes());
    }
    c.quit();
    expect_messages(&s, ALICE.address, 2);
    s
}

fn session(s: &Server, listener: Listener) -> Vec<(String, String)> {
    let mut args = sargs![
        "--port",
        s.port(listener),
        "--cafile",
        s.cafile().display(),
        "--user",
        ALICE.address,
        "--password",
        ALICE.password,
    ];
    if listener == Listener::Imaps {
        args.push("--implicit".into());
    }
    let out = python("imap_session.py", args);
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn check(s: &Server, out: &[(String, String)]) {
    let get = |k: &str| {
        out.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {out:?}\n{}", s.log_tail(30)))
    };
    assert!(get("CAPS").contains("IMAP4REV1"), "{out:?}");
    assert_eq!(get("EXISTS"), "2", "{out:?}");
    assert_eq!(get("SEARCH"), "1 2", "{out:?}");
    assert_eq!(get("SUBJECT-UIDS"), "2", "{out:?}");
    assert!(get("FETCH1").contains("UID 1"), "{out:?}");
    assert!(get("FETCH1").contains("ENVELOPE"), "{out:?}");
    let flags = get("FLAGS1");
    assert!(
        flags.contains("\\Flagged") && flags.contains("$Important"),
        "{flags}"
    );
    assert!(
        !get("COPYUID").is_empty(),
        "COPY answers [COPYUID ...]: {out:?}"
    );
    assert!(get("APPEND").contains("APPENDUID"), "{out:?}");
    assert_eq!(get("EXPUNGED"), "2", "{out:?}");
    let status = get("STATUS");
    assert!(
        status.contains("MESSAGES 3") && status.contains("UNSEEN 2"),
        "{status}"
    );
    assert!(out.iter().any(|(k, _)| k == "DONE"), "{out:?}");
    // The files follow: INBOX has one message, flagged with the keyword's letter.
    let inbox = s.message_files(ALICE.address);
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let name = inbox[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains(":2,F"), "{name}");
    let archive = s.maildir(ALICE.address).join(".Archive.2026");
    assert!(archive.join("maildirfolder").is_file());
}

fn imaplib_session_over_starttls(rt: Runtime) {
    let s = imap_server(rt);
    let out = session(&s, Listener::Imap);
    check(&s, &out);
}

fn imaplib_session_over_implicit_tls(rt: Runtime) {
    let s = imap_server(rt);
    let out = session(&s, Listener::Imaps);
    check(&s, &out);
}

/// IDLE push (issue 4, item 6): imaplib idles on INBOX while smtplib delivers three messages
/// (the first right after IDLE starts, the others after the folder settled), then a second
/// imaplib session flags a message. Each untagged EXISTS / FETCH FLAGS must reach the idling
/// client within one second of the delivery's 250 / the STORE's OK.
fn idle_sees_smtp_delivery_and_other_session_within_a_second(rt: Runtime) {
    let s = imap_server(rt);
    let out = python(
        "imap_idle.py",
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
    assert_eq!(
        times.iter().filter(|(k, _)| k == "EXISTS").count(),
        3,
        "{out}"
    );
    assert_eq!(
        times.iter().filter(|(k, _)| k == "FLAGS").count(),
        1,
        "{out}"
    );
    for (what, secs) in &times {
        assert!(
            *secs < 1.0,
            "{what} took {secs} s to reach the idling client:\n{out}"
        );
    }
    eprintln!("IDLE latencies ({}): {times:?}", rt.as_str());
}

/// The bad-input list of issue 4: literal bombs, 10,000-element sequence sets, deeply nested
/// SEARCH, 200 KB lines, mailbox names with `..`, `/`, `.`, NUL and invalid modified UTF-7,
/// commands in the wrong state, and an APPEND cut off by a hang-up. Each gets a tagged BAD or
/// NO (or a bounded OK), the session carries on, nothing is created outside the Maildir and the
/// cut-off APPEND leaves no message and no temp file.
fn bad_input_is_answered_and_the_server_carries_on(rt: Runtime) {
    let s = imap_server(rt);
    let out = python(
        "imap_badinput.py",
        sargs![
            "--port",
            s.port(Listener::Imaps),
            "--cafile",
            s.cafile().display(),
            "--user",
            ALICE.address,
            "--password",
            ALICE.password,
        ],
    );
    let get = |k: &str| {
        out.lines()
            .find(|l| l.split(' ').next() == Some(k))
            .unwrap_or_else(|| panic!("no {k} in:\n{out}\n{}", s.log_tail(20)))
            .to_string()
    };
    let status = |k: &str| get(k).split(' ').nth(1).unwrap_or("").to_string();
    eprintln!("{out}");
    assert!(!out.contains("CLOSED"), "{out}");
    assert_eq!(status("fetch-unselected"), "BAD", "{out}");
    assert_eq!(status("append-bomb"), "NO", "{out}");
    assert!(get("append-bomb").contains("TOOBIG"), "{out}");
    assert_eq!(status("search-literal-bomb"), "BAD", "{out}");
    // Message numbers beyond the folder are an error; 10,000 UIDs are fine.
    assert_eq!(status("seqset-10000"), "BAD", "{out}");
    assert_eq!(status("uidset-10000"), "OK", "{out}");
    assert_eq!(status("uidsearch-10000"), "OK", "{out}");
    for k in [
        "search-nested",
        "search-not-chain",
        "search-or-chain",
        "huge-line",
    ] {
        assert_eq!(status(k), "BAD", "{k}: {out}");
    }
    for k in [
        "create-dotdot",
        "create-deep-dotdot",
        "create-slash-lead",
        "create-dot",
        "create-dotdir",
        "create-dotseg",
        "create-utf7-open",
        "create-utf7-bad",
        "create-nul",
        "rename-inbox-dotdot",
        "select-dotdot",
    ] {
        assert!(
            ["NO", "BAD"].contains(&status(k).as_str()),
            "{k} must be refused: {out}"
        );
    }
    for k in [
        "list",
        "noop-after",
        "login-again",
        "status-after",
        "logout",
    ] {
        assert_eq!(status(k), "OK", "{k}: {out}");
    }
    // Nothing appeared next to the Maildir, and no message or temp file from the cut APPEND.
    let maildir = s.maildir(ALICE.address);
    let siblings: Vec<String> = std::fs::read_dir(maildir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        siblings
            .iter()
            .all(|n| ["alice", "bob", "carol"].contains(&n.as_str())),
        "{siblings:?}"
    );
    assert!(!s.data_dir().parent().unwrap().join("escape").exists());
    assert_eq!(
        s.message_files(ALICE.address).len(),
        2,
        "the cut-off APPEND stored nothing"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tmp: Vec<_> = std::fs::read_dir(s.data_dir().join("tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "left in DATA_DIR/tmp: {tmp:?}");
}

/// QRESYNC (RFC 7162) with real sessions: once enabled, another session's expunge shows as
/// `* VANISHED 1` (not EXPUNGE); a client resyncing with SELECT (QRESYNC ...) and with
/// UID FETCH (CHANGEDSINCE ... VANISHED) learns that UID 1 vanished.
fn qresync_reports_vanished_uids(rt: Runtime) {
    let s = imap_server(rt);
    let out = python(
        "imap_qresync.py",
        sargs![
            "--port",
            s.port(Listener::Imaps),
            "--cafile",
            s.cafile().display(),
            "--user",
            ALICE.address,
            "--password",
            ALICE.password,
        ],
    );
    assert!(out.contains("DONE"), "{out}\n{}", s.log_tail(20));
    assert!(out.contains("ENABLE * ENABLED QRESYNC"), "{out}");
    assert!(
        out.contains("OTHER * 1 EXPUNGE"),
        "a session without QRESYNC gets EXPUNGE: {out}"
    );
    assert!(out.contains("NOOP * VANISHED 1\n"), "{out}");
    assert!(!out.contains("NOOP * 1 EXPUNGE"), "{out}");
    assert!(out.contains("RESYNC * VANISHED (EARLIER) 1\n"), "{out}");
    assert!(out.contains("FETCH * VANISHED (EARLIER) 1\n"), "{out}");
}

/// LIST-EXTENDED (RFC 5258 3.5): with SUBSCRIBED RECURSIVEMATCH, a folder that is not
/// subscribed but has a subscribed child is listed with `CHILDINFO ("SUBSCRIBED")`; without
/// RECURSIVEMATCH it is not listed; RECURSIVEMATCH alone or with only REMOTE is BAD.
fn list_extended_recursivematch_reports_subscribed_children(rt: Runtime) {
    let s = imap_server(rt);
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::write(
        &commands,
        "CREATE Lists/rust\n\
         CREATE Other\n\
         SUBSCRIBE Lists/rust\n\
         LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"\n\
         LIST (SUBSCRIBED) \"\" \"%\"\n\
         LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"*\"\n\
         LIST (RECURSIVEMATCH) \"\" \"%\"\n\
         LIST (REMOTE RECURSIVEMATCH) \"\" \"%\"\n",
    )
    .unwrap();
    let out = python(
        "imap_commands.py",
        sargs![
            "--port",
            s.port(Listener::Imaps),
            "--tls",
            "--cafile",
            s.cafile().display(),
            "--user",
            ALICE.address,
            "--password",
            ALICE.password,
            "--commands",
            commands.display(),
        ],
    );
    let section = |cmd: &str| -> String {
        let start = out
            .find(&format!("== {cmd}\n"))
            .unwrap_or_else(|| panic!("{cmd} missing: {out}"));
        let rest = &out[start + cmd.len() + 4..];
        rest[..rest.find("== ").unwrap_or(rest.len())].to_string()
    };
    let recursive = section("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\"");
    assert!(recursive.contains("-> OK"), "{out}");
    let parent = recursive
        .lines()
        .find(|l| l.contains(" Lists "))
        .unwrap_or_else(|| panic!("the unsubscribed parent is listed: {out}"));
    assert!(
        parent.ends_with(" Lists (\"CHILDINFO\" (\"SUBSCRIBED\"))")
            && !parent.contains("\\Subscribed"),
        "{out}"
    );
    assert!(recursive.contains("* LIST (\\Subscribed) Sent\n"), "{out}");
    assert!(!recursive.contains("Other"), "{out}");
    assert!(
        !recursive.contains("Lists/rust"),
        "% stops at the first level: {out}"
    );
    let plain = section("LIST (SUBSCRIBED) \"\" \"%\"");
    assert!(plain.contains("-> OK"), "{out}");
    assert!(!plain.contains("Lists"), "{out}");
    let deep = section("LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"*\"");
    assert!(deep.contains("* LIST (\\Subscribed) Lists/rust\n"), "{out}");
    assert!(deep.contains("CHILDINFO"), "{out}");
    assert!(
        section("LIST (RECURSIVEMATCH) \"\" \"%\"").contains("-> BAD"),
        "{out}"
    );
    assert!(
        section("LIST (REMOTE RECURSIVEMATCH) \"\" \"%\"").contains("-> BAD"),
        "{out}"
    );
}
