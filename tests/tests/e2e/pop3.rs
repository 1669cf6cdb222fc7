//! POP3 (issue 5) end to end: Python's poplib over `pop3` with STLS and over `pop3s`, and
//! fetchmail delivering to an MDA command. fetchmail must be installed: those tests fail, never
//! skip, without it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petrel_tests::{
    ALICE, BOB, Finished, Listener, Runtime, Server, ServerOptions, SmtpConn, petrel_bin, python,
    run_with_timeout, sample_message,
};

use crate::{expect_messages, fail, printed, temp_file};

both_runtimes!(
    poplib_stls_retr_top_and_quit_deletes,
    poplib_ssl_retr_top_and_quit_deletes,
    rset_and_dropped_connection_delete_nothing,
    uidl_stable_across_sessions_and_restart,
    second_session_gets_in_use,
    auth_rules_before_and_after_stls,
    bad_input_answered_and_session_goes_on,
    line_without_newline_does_not_stop_the_server,
    pipelined_commands_answered_in_order,
    client_hanging_up_mid_retr_deletes_nothing,
    fetchmail_pop3s_nokeep_and_keep,
    fetchmail_pop3_stls,
    fetchmail_hands_over_to_petrel_deliver,
);

fn pop3_server(rt: Runtime) -> Server {
    Server::start(
        rt,
        ServerOptions {
            pop3: true,
            max_message_size: 8 * 1024 * 1024,
            ..Default::default()
        },
    )
}

/// A message whose body has lines starting with `.`, a lone `.` line and `..`.
fn dotted_message() -> Vec<u8> {
    b"From: Sender <sender@remote.example>\r\n\
      To: Alice <alice@example.test>\r\n\
      Subject: dots\r\n\
      \r\n\
      .leading dot\r\n\
      ..two dots\r\n\
      .\r\n\
      line after a lone dot\r\n\
      . dot space\r\n\
      last line\r\n"
        .to_vec()
}

/// About 2 MB: many 78-byte lines, every 10th starting with a dot.
fn big_message() -> Vec<u8> {
    let mut m = b"From: Sender <sender@remote.example>\r\n\
                  To: Alice <alice@example.test>\r\n\
                  Subject: big\r\n\
                  \r\n"
        .to_vec();
    let mut i = 0u32;
    while m.len() < 2 * 1024 * 1024 {
        let lead = if i.is_multiple_of(10) { "." } else { "" };
        m.extend_from_slice(format!("{lead}{i:08} {}\r\n", "x".repeat(66)).as_bytes());
        i += 1;
    }
    m
}

/// Delivers `messages` to alice over inbound SMTP, one transaction each.
fn deliver(s: &Server, messages: &[Vec<u8>]) {
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    for m in messages {
        c.deliver("sender@remote.example", &[ALICE.address], m);
    }
    c.quit();
}

/// Delivers the four standard messages and returns how many there are.
fn deliver_standard(s: &Server) -> usize {
    let msgs = vec![
        sample_message("pop3-one"),
        dotted_message(),
        big_message(),
        sample_message("pop3-four"),
    ];
    deliver(s, &msgs);
    expect_messages(s, ALICE.address, msgs.len());
    msgs.len()
}

fn file_names(s: &Server) -> BTreeSet<String> {
    s.message_files(ALICE.address)
        .iter()
        .map(|p| base_name(p))
        .collect()
}

fn base_name(p: &Path) -> String {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    name.split(':').next().unwrap_or_default().to_string()
}

/// Runs `pop3_retr.py` and returns its stdout.
fn retr(s: &Server, listener: Listener, extra: &[&str]) -> String {
    let mode = if listener == Listener::Pop3s {
        "ssl"
    } else {
        "stls"
    };
    let mut args = sargs![
        "--port",
        s.port(listener),
        "--mode",
        mode,
        "--cafile",
        s.cafile().display(),
        "--maildir",
        s.maildir(ALICE.address).display()
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    python("pop3_retr.py", args)
}

/// `(n, uidl, base name)` of every `MSG` line.
fn listed(out: &str) -> Vec<(u32, String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("MSG "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].parse().expect("n"), f[2].to_string(), f[3].to_string())
        })
        .collect()
}

fn retr_and_quit_deletes(rt: Runtime, listener: Listener) {
    let s = pop3_server(rt);
    let n = deliver_standard(&s);
    let before = file_names(&s);
    let out = retr(&s, listener, &[]);
    if listed(&out).len() != n {
        fail(&s, format!("expected {n} MSG lines:\n{out}"));
    }
    if file_names(&s) != before {
        fail(&s, "a session without DELE changed the Maildir");
    }
    let out = retr(&s, listener, &["--retr", "no", "--dele", "1,3"]);
    let deleted: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("DELETED "))
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = before.difference(&deleted).cloned().collect();
    if deleted.len() != 2 || file_names(&s) != want {
        fail(
            &s,
            format!(
                "after DELE 1, DELE 3, QUIT: files {:?}, expected {want:?} (deleted {deleted:?})\n{out}",
                file_names(&s)
            ),
        );
    }
    // The survivors are still served, renumbered 1 and 2.
    let out = retr(&s, listener, &[]);
    if listed(&out).len() != 2 {
        fail(
            &s,
            format!("expected 2 messages after the deletion:\n{out}"),
        );
    }
}

fn poplib_stls_retr_top_and_quit_deletes(rt: Runtime) {
    retr_and_quit_deletes(rt, Listener::Pop3);
}

fn poplib_ssl_retr_top_and_quit_deletes(rt: Runtime) {
    retr_and_quit_deletes(rt, Listener::Pop3s);
}

fn rset_and_dropped_connection_delete_nothing(rt: Runtime) {
    let s = pop3_server(rt);
    deliver_standard(&s);
    let before = file_names(&s);
    retr(
        &s,
        Listener::Pop3s,
        &["--retr", "no", "--dele", "1,2,3,4", "--finish", "rset"],
    );
    if file_names(&s) != before {
        fail(&s, "DELE + RSET + QUIT removed files");
    }
    retr(
        &s,
        Listener::Pop3,
        &["--retr", "no", "--dele", "1,2,3,4", "--finish", "drop"],
    );
    std::thread::sleep(Duration::from_millis(500));
    if file_names(&s) != before {
        fail(&s, "DELE then a dropped connection removed files");
    }
    // The lock of the dropped session is gone and nothing was deleted.
    let out = retr(&s, Listener::Pop3s, &["--retr", "no"]);
    if listed(&out).len() != before.len() {
        fail(&s, format!("after the dropped session:\n{out}"));
    }
}

fn uidl_stable_across_sessions_and_restart(rt: Runtime) {
    let mut s = pop3_server(rt);
    deliver(&s, &[sample_message("u-one"), sample_message("u-two")]);
    let first = listed(&retr(&s, Listener::Pop3s, &["--retr", "no"]));
    for (_, uidl, _) in &first {
        if uidl.len() != 16 || !uidl.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')) {
            fail(&s, format!("UIDL {uidl} is not %08X%08X"));
        }
    }
    if first.len() != 2 || first[0].1 == first[1].1 {
        fail(&s, format!("two messages need two UIDLs: {first:?}"));
    }
    let second = listed(&retr(&s, Listener::Pop3, &["--retr", "no"]));
    if second != first {
        fail(
            &s,
            format!("UIDLs changed between sessions: {first:?} then {second:?}"),
        );
    }
    s.restart();
    let third = listed(&retr(&s, Listener::Pop3s, &["--retr", "no"]));
    if third != first {
        fail(
            &s,
            format!("UIDLs changed across a restart: {first:?} then {third:?}"),
        );
    }
    deliver(&s, &[sample_message("u-three")]);
    let fourth = listed(&retr(&s, Listener::Pop3s, &["--retr", "no"]));
    if fourth.len() != 3 || fourth[..2] != first[..] {
        fail(
            &s,
            format!("after a new message: {fourth:?}, old ones were {first:?}"),
        );
    }
    let new = &fourth[2].1;
    if first.iter().any(|(_, u, _)| u == new) {
        fail(&s, format!("the new message reuses UIDL {new}"));
    }
    // Same uidvalidity, a higher uid.
    if new[8..] != first[0].1[8..] || new[..8] <= first[1].1[..8] {
        fail(&s, format!("new UIDL {new} after {first:?}"));
    }
    if !s.maildir(ALICE.address).join("dovecot-uidlist").is_file() {
        fail(&s, "no dovecot-uidlist in the INBOX");
    }
}

fn second_session_gets_in_use(rt: Runtime) {
    let s = pop3_server(rt);
    deliver(&s, &[sample_message("lock")]);
    let out = python(
        "pop3_lock.py",
        sargs![
            "--port",
            s.port(Listener::Pop3s),
            "--cafile",
            s.cafile().display()
        ],
    );
    if !out.contains("LOCK-OK") {
        fail(&s, format!("pop3_lock.py:\n{out}"));
    }
    expect_messages(&s, ALICE.address, 1);
}

fn auth_rules_before_and_after_stls(rt: Runtime) {
    let s = pop3_server(rt);
    let out = python(
        "pop3_security.py",
        sargs![
            "--port",
            s.port(Listener::Pop3),
            "--cafile",
            s.cafile().display()
        ],
    );
    let delay: f64 = printed(&out, "WRONG-PASSWORD-DELAY")
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| fail(&s, format!("no delay printed:\n{out}")));
    if !(0.8..5.0).contains(&delay) {
        fail(
            &s,
            format!("wrong password answered after {delay} s, expected ~1 s"),
        );
    }
    if !out.contains("CLOSED-AFTER-3") {
        fail(&s, format!("pop3_security.py:\n{out}"));
    }
}

fn badinput(s: &Server, case: &str) -> String {
    python(
        "pop3_badinput.py",
        sargs![
            "--port",
            s.port(Listener::Pop3s),
            "--cafile",
            s.cafile().display(),
            "--case",
            case
        ],
    )
}

fn bad_input_answered_and_session_goes_on(rt: Runtime) {
    let s = pop3_server(rt);
    deliver(&s, &[sample_message("bad-1"), sample_message("bad-2")]);
    let out = badinput(&s, "session");
    if !printed(&out, "STAT").is_some_and(|t| t.starts_with("+OK 2 ")) {
        fail(&s, format!("STAT after the bad commands:\n{out}"));
    }
    expect_messages(&s, ALICE.address, 2);
}

fn line_without_newline_does_not_stop_the_server(rt: Runtime) {
    let s = pop3_server(rt);
    deliver(&s, &[sample_message("long")]);
    let out = badinput(&s, "longline");
    if !printed(&out, "OTHER").is_some_and(|t| t.starts_with("+OK 1 ")) {
        fail(&s, format!("the other session:\n{out}"));
    }
    // And a new session after that still works.
    retr(&s, Listener::Pop3s, &[]);
}

fn pipelined_commands_answered_in_order(rt: Runtime) {
    let s = pop3_server(rt);
    deliver(&s, &[sample_message("pipe-1"), dotted_message()]);
    let out = badinput(&s, "pipeline");
    if printed(&out, "PIPELINE-OK") != Some("2") {
        fail(&s, format!("pipeline:\n{out}"));
    }
    expect_messages(&s, ALICE.address, 2);
}

fn client_hanging_up_mid_retr_deletes_nothing(rt: Runtime) {
    let s = pop3_server(rt);
    deliver_standard(&s);
    let before = file_names(&s);
    let out = badinput(&s, "halfretr");
    if printed(&out, "HALF").is_none() {
        fail(&s, format!("halfretr:\n{out}"));
    }
    // The server goes on serving (the lock is released once it notices the hang-up).
    let mut last = String::new();
    for _ in 0..50 {
        let mut cmd = Command::new("python3");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/pop3_retr.py"))
            .args([
                "--port",
                &s.port(Listener::Pop3s).to_string(),
                "--mode",
                "ssl",
                "--cafile",
                &s.cafile().display().to_string(),
                "--maildir",
                &s.maildir(ALICE.address).display().to_string(),
            ])
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let done = run_with_timeout(cmd, Duration::from_secs(60));
        if done.success() {
            last.clear();
            break;
        }
        last = done.describe();
        std::thread::sleep(Duration::from_millis(100));
    }
    if !last.is_empty() {
        fail(&s, format!("no full session after the hang-up:\n{last}"));
    }
    if file_names(&s) != before {
        fail(
            &s,
            "a client hanging up mid-RETR (after DELE 1) removed files",
        );
    }
}

// ----- fetchmail -----

fn fetchmail(s: &Server, rc: &str) -> Finished {
    let home = s.root().join("fetchmail-home");
    fs::create_dir_all(&home).expect("create fetchmail home");
    let rcfile = temp_file(s, "fetchmailrc", rc.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&rcfile, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    let mut cmd = Command::new("fetchmail");
    cmd.args(["-f"])
        .arg(&rcfile)
        .args(["-v", "--nosyslog", "-N", "--idfile"])
        .arg(home.join(".fetchids"))
        // As root fetchmail locks /var/run/fetchmail.pid, shared by parallel tests.
        .arg("--pidfile")
        .arg(home.join("fetchmail.pid"))
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home);
    run_with_timeout(cmd, Duration::from_secs(120))
}

fn rc(s: &Server, listener: Listener, outdir: &Path, tls: &str, keep: &str) -> String {
    format!(
        "set no syslog\n\
         set invisible\n\
         poll localhost protocol pop3 port {port} timeout 30\n\
         \x20 user \"{user}\" there with password \"{pw}\" is \"nobody\" here\n\
         \x20 {tls} sslcertck sslcertfile \"{cert}\"\n\
         \x20 {keep} no rewrite\n\
         \x20 mda \"cat > $(mktemp {out}/m.XXXXXXXX)\"\n",
        port = s.port(listener),
        user = ALICE.address,
        pw = ALICE.password,
        cert = s.cafile().display(),
        out = outdir.display(),
    )
}

/// The files fetchmail's MDA wrote.
fn fetched(outdir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = fs::read_dir(outdir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn lf(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .replace("\r\n", "\n")
        .into_bytes()
}

/// Every stored message must arrive exactly once, byte-exact modulo CRLF -> LF and header lines
/// fetchmail may put in front.
fn check_fetched(s: &Server, stored: &[Vec<u8>], got: &[Vec<u8>], how: &str) {
    if got.len() != stored.len() {
        fail(
            s,
            format!(
                "{how}: fetchmail delivered {} messages, expected {}",
                got.len(),
                stored.len()
            ),
        );
    }
    for m in stored {
        let want = lf(m);
        let hits = got.iter().filter(|g| lf(g).ends_with(&want)).count();
        if hits != 1 {
            let head = String::from_utf8_lossy(&want[..want.len().min(300)]).into_owned();
            let gots: Vec<String> = got
                .iter()
                .map(|g| String::from_utf8_lossy(&g[..g.len().min(400)]).into_owned())
                .collect();
            fail(
                s,
                format!("{how}: the stored message {head:?} arrived {hits} times; got {gots:#?}"),
            );
        }
    }
}

fn run_fetchmail(s: &Server, rc: &str, how: &str, want_code: i32) -> Finished {
    let done = fetchmail(s, rc);
    if done.status.and_then(|st| st.code()) != Some(want_code) {
        fail(
            s,
            format!(
                "{how}: fetchmail should exit {want_code}\nrc:\n{rc}\n{}",
                done.describe()
            ),
        );
    }
    done
}

fn fetchmail_pop3s_nokeep_and_keep(rt: Runtime) {
    let s = pop3_server(rt);
    deliver_standard(&s);
    let stored = s.new_messages(ALICE.address);
    let before = file_names(&s);

    let keep_dir = s.root().join("fetched-keep");
    fs::create_dir_all(&keep_dir).expect("mkdir");
    let rc_keep = rc(&s, Listener::Pop3s, &keep_dir, "ssl", "keep");
    run_fetchmail(&s, &rc_keep, "pop3s keep", 0);
    check_fetched(&s, &stored, &fetched(&keep_dir), "pop3s keep");
    if file_names(&s) != before {
        fail(&s, "fetchmail --keep changed the Maildir");
    }
    // The same UIDLs: a second keep run fetches nothing (exit 1, no mail).
    run_fetchmail(&s, &rc_keep, "pop3s keep again", 1);
    if fetched(&keep_dir).len() != stored.len() {
        fail(
            &s,
            "a second keep run fetched messages again (UIDLs not stable?)",
        );
    }

    let out_dir = s.root().join("fetched-nokeep");
    fs::create_dir_all(&out_dir).expect("mkdir");
    let rc_nokeep = rc(&s, Listener::Pop3s, &out_dir, "ssl", "nokeep fetchall");
    let done = run_fetchmail(&s, &rc_nokeep, "pop3s nokeep", 0);
    check_fetched(&s, &stored, &fetched(&out_dir), "pop3s nokeep");
    if !s.message_files(ALICE.address).is_empty() {
        fail(
            &s,
            format!(
                "after fetchmail --nokeep the Maildir still holds {:?}\n{}",
                s.message_files(ALICE.address),
                done.describe()
            ),
        );
    }
}

fn fetchmail_pop3_stls(rt: Runtime) {
    let s = pop3_server(rt);
    deliver(&s, &[sample_message("fm-stls"), dotted_message()]);
    let stored = s.new_messages(ALICE.address);
    let out_dir: PathBuf = s.root().join("fetched-stls");
    fs::create_dir_all(&out_dir).expect("mkdir");
    let rc_stls = rc(&s, Listener::Pop3, &out_dir, "sslproto tls1.2+", "nokeep");
    let done = run_fetchmail(&s, &rc_stls, "pop3 stls nokeep", 0);
    if !done.stderr.contains("STLS") && !done.stdout.contains("STLS") {
        fail(
            &s,
            format!("fetchmail did not use STLS:\n{}", done.describe()),
        );
    }
    check_fetched(&s, &stored, &fetched(&out_dir), "pop3 stls nokeep");
    expect_messages(&s, ALICE.address, 0);
}

/// fetchmail as a user runs it to pull an old account into Petrel: POP3 in, `petrel deliver` as
/// its MDA (with the envelope sender), the recipient's Sieve script filing what it gets.
fn fetchmail_hands_over_to_petrel_deliver(rt: Runtime) {
    let s = pop3_server(rt);
    let sieve = s.data_dir().join("users/example.test/bob/sieve");
    fs::create_dir_all(&sieve).expect("mkdir");
    fs::write(
        sieve.join("main.sieve"),
        "require [\"fileinto\", \"envelope\"];\n\
         if envelope :is \"from\" \"sender@remote.example\" { fileinto \"Fetched\"; }",
    )
    .expect("write script");
    fs::write(sieve.join(".active"), "main\n").expect("activate");
    deliver(&s, &[sample_message("fm-mda"), dotted_message()]);
    let stored = s.new_messages(ALICE.address);
    assert_eq!(stored.len(), 2);
    let rc = format!(
        "set no syslog\n\
         poll localhost protocol pop3 port {port} timeout 30\n\
         \x20 user \"{user}\" there with password \"{pw}\" is \"nobody\" here\n\
         \x20 sslproto tls1.2+ sslcertck sslcertfile \"{cert}\"\n\
         \x20 nokeep no rewrite\n\
         \x20 mda \"{bin} deliver --config {config} --to {bob} --from %F\"\n",
        port = s.port(Listener::Pop3),
        user = ALICE.address,
        pw = ALICE.password,
        cert = s.cafile().display(),
        bin = petrel_bin().display(),
        config = s.config_path().display(),
        bob = BOB.address,
    );
    run_fetchmail(&s, &rc, "pop3 to petrel deliver", 0);
    expect_messages(&s, ALICE.address, 0);
    let folder = s.maildir(BOB.address).join(".Fetched/new");
    let got: Vec<Vec<u8>> = fs::read_dir(&folder)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if got.len() != stored.len() {
        fail(
            &s,
            format!(
                "expected {} messages in {}, found {}",
                stored.len(),
                folder.display(),
                got.len()
            ),
        );
    }
    for m in &stored {
        // Each stored copy ends with the original message, CRLF kept by deliver.
        let body_start = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
        let tail = &m[body_start..];
        if got.iter().filter(|g| g.ends_with(tail)).count() != 1 {
            fail(
                &s,
                format!(
                    "a fetched message is missing or changed: {}",
                    String::from_utf8_lossy(&m[..m.len().min(200)])
                ),
            );
        }
    }
}
