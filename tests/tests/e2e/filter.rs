//! Content filtering (issue 10) with the real scanners from Debian's packages on loopback:
//! ClamAV's clamd with the EICAR test file (inline, as a base64 attachment, over TCP and a unix
//! socket, over DATA, BDAT and LMTP), SpamAssassin's spamd and rspamd with GTUBE (refused, or
//! filed to Junk with X-Spam-* fields, forged ones replaced), OpenDKIM as a milter (its
//! signature verified with python3-dkim) and a scripted test milter for every milter action,
//! submission's defaults and switches, scanners stopped, hung, dribbling, answering garbage or
//! hanging up mid-stream on purpose (451 4.7.1 within the timeout, or delivered with
//! `on_failure = "accept"`), and 50 MB messages scanned with bounded memory. The daemons and the
//! fakes come from `petrel_tests::scanners`.
//!
//! The `harness_*` tests talk to the daemons directly with their own clients (zINSTREAM, spamc,
//! rspamc, a milter conversation): when they pass and a Petrel test fails, the fault is Petrel's.
//!
//! Run: `cargo build -p petrel && cargo test -p petrel-tests --test e2e filter::`

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use petrel_tests::scanners::{
    EICAR_SIGNATURE, FakeMilter, FakeScanner, MilterAction, Misbehaviour, Scanner, eicar, gtube,
};
use petrel_tests::{
    Listener, Reply, Runtime, Server, ServerOptions, SmtpConn, contains, run_with_timeout,
    sample_message, stored_form, swaks,
};

use crate::{expect_messages, temp_file};

both_runtimes!(
    clamd_refuses_eicar_delivers_clean,
    clamd_refuses_eicar_attachment,
    clamd_over_unix_socket,
    spamd_refuses_gtube_by_default,
    spamd_files_gtube_to_junk_below_reject_score,
    rspamd_refuses_gtube_by_default,
    rspamd_files_gtube_to_junk_below_reject_score,
    forged_x_spam_fields_replaced,
    opendkim_milter_signs,
    submission_scans_viruses_not_spam,
    clamd_stream_limit_follows_failure_policy,
    clamd_stopped_tempfails,
    clamd_stopped_accept_delivers,
    spamd_stopped_tempfails_and_accept_delivers,
    hung_scanner_tempfails_within_timeout,
    garbage_answers_tempfail,
    endless_answer_tempfails_within_timeout,
    scanner_closing_mid_stream_tempfails,
    hung_milter_accept_delivers,
    milter_actions_honoured,
    two_milters_both_apply,
    large_message_scanned_with_bounded_memory,
    large_message_with_spam_scanners_bounded_memory,
    clamd_refuses_eicar_over_bdat,
    clamd_refuses_eicar_over_lmtp,
    submission_scan_switches,
    spam_max_size_skips_spam_check,
    every_scanner_at_once,
    bad_filter_config_exits_2
);

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const REMOTE: &str = "sender@remote.example";

/// Panics with `msg`, the server's log and the scanners' logs.
#[track_caller]
fn fail_with(server: &Server, scanners: &[&Scanner], msg: impl std::fmt::Display) -> ! {
    let mut logs = String::new();
    for sc in scanners {
        logs.push_str(&sc.log_tail(30));
        logs.push('\n');
    }
    panic!("{msg}\n{}\n{logs}", server.log_tail(40))
}

/// A server whose config carries `[filter]` with `lines` (each `key = value`).
fn server_with_filter(rt: Runtime, lines: &[String]) -> Server {
    server_with(rt, lines, 1_048_576)
}

fn server_with(rt: Runtime, lines: &[String], max_message_size: u64) -> Server {
    let mut extra = String::from("[filter]\n");
    for l in lines {
        extra.push_str(l);
        extra.push('\n');
    }
    Server::start(
        rt,
        ServerOptions {
            max_message_size,
            extra_config: extra,
            ..ServerOptions::default()
        },
    )
}

/// `key = "value"`.
fn kv(key: &str, value: &str) -> String {
    format!("{key} = \"{value}\"")
}

/// The config line naming one scanner: `key = "addr"`, or `milters = ["addr"]`.
fn target(key: &str, addr: &str) -> String {
    if key == "milters" {
        format!("milters = [\"{addr}\"]")
    } else {
        kv(key, addr)
    }
}

/// A message from `sender@remote.example` to Alice with `body` (CRLF lines).
fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <{REMOTE}>\r\n\
         To: Alice <{ALICE}>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{subject}@client.example>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         {body}"
    )
    .into_bytes()
}

/// EICAR pasted into a text body.
fn eicar_inline() -> Vec<u8> {
    let mut m = message("eicar-inline", "Here is the test file:\r\n");
    m.extend_from_slice(&eicar());
    m.extend_from_slice(b"\r\nBye.\r\n");
    m
}

/// EICAR as a base64 `application/octet-stream` attachment of a multipart message.
fn eicar_attachment() -> Vec<u8> {
    let b64 = base64(&eicar());
    format!(
        "From: Sender <{REMOTE}>\r\n\
         To: Alice <{ALICE}>\r\n\
         Subject: eicar-attachment\r\n\
         Message-ID: <eicar-attachment@client.example>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
         \r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         The attachment is harmless.\r\n\
         --b1\r\n\
         Content-Type: application/octet-stream; name=\"report.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"report.com\"\r\n\
         \r\n\
         {b64}\r\n\
         --b1--\r\n"
    )
    .into_bytes()
}

/// GTUBE in an otherwise ordinary message.
fn gtube_message(subject: &str) -> Vec<u8> {
    message(subject, &format!("This is the GTUBE:\r\n{}\r\n", gtube()))
}

/// Standard base64 with 76-character CRLF lines.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(T[(n >> (18 - 6 * k)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one message on port 25 from `sender@remote.example` and returns the final reply and
/// how long it took after the end of data.
fn send25(s: &Server, rcpts: &[&str], msg: &[u8]) -> (Reply, Duration, SmtpConn) {
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.set_timeout(Duration::from_secs(120));
    c.expect(&format!("MAIL FROM:<{REMOTE}>"), "250");
    for r in rcpts {
        c.expect(&format!("RCPT TO:<{r}>"), "250");
    }
    c.expect("DATA", "354");
    let payload = petrel_tests::data_payload(msg);
    c.send(&payload);
    let t0 = Instant::now();
    let r = c.reply();
    (r, t0.elapsed(), c)
}

/// The message files in one of a user's folders (`"INBOX"` or a Maildir++ name like `Junk`).
fn folder(s: &Server, user: &str, name: &str) -> Vec<Vec<u8>> {
    let root = if name == "INBOX" {
        s.maildir(user)
    } else {
        s.maildir(user).join(format!(".{name}"))
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// The header block of a stored message (up to the first empty line), as text.
fn header_block(msg: &[u8]) -> String {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end]).into_owned()
}

/// Whether the header block has a field named `name` (case-insensitive).
fn has_field(msg: &[u8], name: &str) -> bool {
    let want = format!("{}:", name.to_ascii_lowercase());
    header_block(msg)
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with(&want))
}

/// The field names in the header block that start with `X-Spam` (case-insensitive).
fn x_spam_fields(msg: &[u8]) -> Vec<String> {
    header_block(msg)
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-spam"))
        .map(|l| l.to_string())
        .collect()
}

/// Asserts a 554 5.7.1 naming the EICAR signature.
#[track_caller]
fn expect_virus_refusal(s: &Server, sc: &Scanner, r: &Reply, c: &SmtpConn) {
    if !r.matches("554 5.7.1") || !r.text().contains(EICAR_SIGNATURE) {
        fail_with(
            s,
            &[sc],
            format!(
                "expected `554 5.7.1 ... {EICAR_SIGNATURE}`, got {:?}\n{}",
                r.text(),
                c.transcript()
            ),
        );
    }
}

/// Asserts the user's INBOX and Junk are both empty.
#[track_caller]
fn expect_nothing_delivered(s: &Server, scanners: &[&Scanner], user: &str) {
    let inbox = folder(s, user, "INBOX").len();
    let junk = folder(s, user, "Junk").len();
    if inbox + junk != 0 {
        fail_with(
            s,
            scanners,
            format!("{user} should have no mail, has {inbox} in INBOX and {junk} in Junk"),
        );
    }
}

/// Asserts the stored message carries what the client sent: every header line it sent (in
/// order; scanners may add fields, which Petrel appends after them or inserts before them)
/// and, after the header, exactly the body it sent.
#[track_caller]
fn expect_intact(s: &Server, scanners: &[&Scanner], stored: &[u8], sent: &[u8]) {
    let want = stored_form(sent);
    let split = |m: &[u8]| -> (String, Vec<u8>) {
        let at = m
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(m.len());
        (
            String::from_utf8_lossy(&m[..at]).into_owned(),
            m.get(at + 4..).unwrap_or(&[]).to_vec(),
        )
    };
    let (sent_head, sent_body) = split(&want);
    let (stored_head, stored_body) = split(stored);
    let stored_lines: Vec<&str> = stored_head.split("\r\n").collect();
    let mut pos = 0;
    let mut missing = None;
    for line in sent_head.split("\r\n") {
        match stored_lines[pos..].iter().position(|l| *l == line) {
            Some(i) => pos += i + 1,
            None => {
                missing = Some(line.to_string());
                break;
            }
        }
    }
    if missing.is_some() || stored_body != sent_body {
        fail_with(
            s,
            scanners,
            format!(
                "stored message does not carry the sent one intact (header line {missing:?} \
                 missing or out of order, or the body differs):\n{}",
                String::from_utf8_lossy(&stored[..stored.len().min(3000)])
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The harness on its own: each daemon answers as expected without Petrel.

#[test]
fn harness_clamd_finds_eicar_inline_and_attached() {
    for sc in [Scanner::clamd(), Scanner::clamd_unix()] {
        for (what, data, infected) in [
            ("the bare file", eicar(), true),
            ("EICAR in a text body", eicar_inline(), true),
            ("EICAR as a base64 attachment", eicar_attachment(), true),
            ("a clean message", sample_message("clean"), false),
        ] {
            let answer = sc
                .clamd_scan(&data)
                .unwrap_or_else(|e| panic!("zINSTREAM to {}: {e}\n{}", sc.addr(), sc.log()));
            let found = answer.contains(EICAR_SIGNATURE) && answer.ends_with("FOUND");
            assert_eq!(
                found,
                infected,
                "clamd at {} on {what}: {answer:?}\n{}",
                sc.addr(),
                sc.log_tail(30)
            );
            if !infected {
                assert_eq!(answer, "stream: OK", "{what}");
            }
        }
    }
}

#[test]
fn harness_spamd_scores_gtube_1000() {
    let sc = Scanner::spamd();
    let spam = sc
        .spamc_check(&gtube_message("gtube"))
        .unwrap_or_else(|e| panic!("{e}\n{}", sc.log()));
    assert_eq!(spam.trim(), "1000.0/5.0", "{}", sc.log_tail(30));
    let ham = sc
        .spamc_check(&sample_message("ham"))
        .unwrap_or_else(|e| panic!("{e}\n{}", sc.log()));
    let score: f64 = ham
        .trim()
        .split('/')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("spamc -c printed {ham:?}"));
    assert!(score < 5.0, "an ordinary message scores {ham}");
}

#[test]
fn harness_rspamd_rejects_gtube() {
    let sc = Scanner::rspamd();
    let spam = sc
        .rspamc_check(&gtube_message("gtube"))
        .unwrap_or_else(|e| panic!("{e}\n{}", sc.log()));
    assert!(
        spam.contains("Action: reject") && spam.contains("GTUBE"),
        "rspamc on GTUBE:\n{spam}\n{}",
        sc.log_tail(30)
    );
    let ham = sc
        .rspamc_check(&sample_message("ham"))
        .unwrap_or_else(|e| panic!("{e}\n{}", sc.log()));
    assert!(
        ham.contains("Action: no action") || ham.contains("Action: greylist"),
        "rspamc on an ordinary message:\n{ham}"
    );
}

#[test]
fn harness_opendkim_signs() {
    let sc = Scanner::opendkim("remote.example", "sel1");
    let msg = sample_message("dkim-harness");
    let edits = sc
        .milter_check(REMOTE, ALICE, &msg)
        .unwrap_or_else(|e| panic!("milter conversation: {e}\n{}", sc.log()));
    let sig = edits
        .iter()
        .find(|(_, name, _)| name.eq_ignore_ascii_case("DKIM-Signature"))
        .unwrap_or_else(|| panic!("OpenDKIM asked for {edits:?}, no DKIM-Signature"));
    // Put the signature on top as the milter asked, then verify it independently.
    let mut signed = format!(
        "DKIM-Signature:{}\r\n",
        sig.2.replace("\r\n", "\n").replace('\n', "\r\n")
    )
    .into_bytes();
    signed.extend_from_slice(&msg);
    let key = sc.dkim_key().expect("key");
    dkim_verify(&signed, &key.txt).unwrap_or_else(|e| panic!("{e}"));
}

/// Verifies every DKIM-Signature of `msg` with python3-dkim, answering DNS with `txt`.
fn dkim_verify(msg: &[u8], txt: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.eml");
    std::fs::write(&path, msg).expect("write message");
    // Debian's python3-dkim lives in the system interpreter, not in a pyenv one.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = "import sys, dkim\n\
                  msg = open(sys.argv[1], 'rb').read()\n\
                  txt = sys.argv[2].encode()\n\
                  d = dkim.DKIM(msg)\n\
                  n = len([l for l in msg.split(b'\\r\\n\\r\\n')[0].split(b'\\r\\n') if l.lower().startswith(b'dkim-signature:')])\n\
                  ok = all(d.verify(idx=i, dnsfunc=lambda name, timeout=5: txt) for i in range(n))\n\
                  print('SIGS', n, 'OK' if ok and n > 0 else 'FAIL')\n";
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script).arg(&path).arg(txt);
    let done = run_with_timeout(cmd, Duration::from_secs(30));
    if done.success() && done.stdout.contains(" OK") {
        Ok(())
    } else {
        Err(format!(
            "python3-dkim did not verify the signature (is python3-dkim installed?)\n{}\nmessage:\n{}",
            done.describe(),
            String::from_utf8_lossy(&msg[..msg.len().min(3000)])
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// clamd

fn clamd_refuses_eicar_delivers_clean(rt: Runtime) {
    let sc = Scanner::clamd();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr()), "timeout = 30".into()]);
    let (r, _, mut c) = send25(&s, &[ALICE, BOB], &eicar_inline());
    expect_virus_refusal(&s, &sc, &r, &c);
    // The session carries on: a clean message on the same connection is delivered.
    c.send_line("RSET");
    c.expect_reply("250");
    let clean = sample_message("clean-after-virus");
    let r = c.send_mail(REMOTE, &[ALICE], &clean);
    if !r.matches("250") {
        fail_with(&s, &[&sc], format!("clean message refused: {}", r.text()));
    }
    c.quit();
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[&sc], &inbox[0], &clean);
    expect_nothing_delivered(&s, &[&sc], BOB);
    if folder(&s, ALICE, "Junk").len() + s.queue_files().len() != 0 {
        fail_with(&s, &[&sc], "the virus went to Junk or the queue");
    }
}

fn clamd_refuses_eicar_attachment(rt: Runtime) {
    let sc = Scanner::clamd();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr())]);
    let (r, _, c) = send25(&s, &[ALICE], &eicar_attachment());
    expect_virus_refusal(&s, &sc, &r, &c);
    expect_nothing_delivered(&s, &[&sc], ALICE);
}

fn clamd_over_unix_socket(rt: Runtime) {
    let sc = Scanner::clamd_unix();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr())]);
    let (r, _, c) = send25(&s, &[ALICE], &eicar_attachment());
    expect_virus_refusal(&s, &sc, &r, &c);
    let clean = sample_message("clean-unix");
    let (r, _, _) = send25(&s, &[ALICE], &clean);
    if !r.matches("250") {
        fail_with(&s, &[&sc], format!("clean message refused: {}", r.text()));
    }
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[&sc], &inbox[0], &clean);
}

// ---------------------------------------------------------------------------------------------
// spamd and rspamd

/// GTUBE is refused with the default spam_reject_score (15); an ordinary message is delivered
/// to the INBOX.
fn spam_refused_by_default(rt: Runtime, key: &str, sc: &Scanner) {
    let s = server_with_filter(rt, &[kv(key, &sc.addr()), "timeout = 60".into()]);
    let (r, _, c) = send25(&s, &[ALICE], &gtube_message("gtube-default"));
    if !r.matches("554") {
        fail_with(
            &s,
            &[sc],
            format!(
                "GTUBE through {key}: expected 554, got {:?}\n{}",
                r.text(),
                c.transcript()
            ),
        );
    }
    expect_nothing_delivered(&s, &[sc], ALICE);
    let ham = sample_message("ham-default");
    let (r, _, _) = send25(&s, &[ALICE], &ham);
    if !r.matches("250") {
        fail_with(
            &s,
            &[sc],
            format!("ordinary message through {key}: {}", r.text()),
        );
    }
    let inbox = folder(&s, ALICE, "INBOX");
    if inbox.len() != 1 || !folder(&s, ALICE, "Junk").is_empty() {
        fail_with(
            &s,
            &[sc],
            "the ordinary message should be the one INBOX message",
        );
    }
    expect_intact(&s, &[sc], &inbox[0], &ham);
}

/// With spam_reject_score above GTUBE's score, GTUBE is delivered to Junk with X-Spam headers;
/// an ordinary message still goes to the INBOX.
fn spam_to_junk(rt: Runtime, key: &str, sc: &Scanner) {
    let s = server_with_filter(
        rt,
        &[
            kv(key, &sc.addr()),
            "timeout = 60".into(),
            "spam_reject_score = 5000.0".into(),
        ],
    );
    let spam = gtube_message("gtube-junk");
    let (r, _, c) = send25(&s, &[ALICE, BOB], &spam);
    if !r.matches("250") {
        fail_with(
            &s,
            &[sc],
            format!(
                "GTUBE below the reject score through {key}: expected 250, got {:?}\n{}",
                r.text(),
                c.transcript()
            ),
        );
    }
    for user in [ALICE, BOB] {
        let junk = folder(&s, user, "Junk");
        if junk.len() != 1 || !folder(&s, user, "INBOX").is_empty() {
            fail_with(
                &s,
                &[sc],
                format!(
                    "{user}: GTUBE should be the one message in Junk; Junk {} INBOX {}",
                    junk.len(),
                    folder(&s, user, "INBOX").len()
                ),
            );
        }
        // The scanner's verdict travels with the message, as SpamAssassin writes it.
        let fields = x_spam_fields(&junk[0]);
        let flagged = fields
            .iter()
            .any(|f| f.eq_ignore_ascii_case("X-Spam-Flag: YES"));
        let status = fields
            .iter()
            .any(|f| f.to_ascii_lowercase().starts_with("x-spam-status: yes"));
        if !flagged || !status {
            fail_with(
                &s,
                &[sc],
                format!(
                    "{user}: the Junk copy lacks `X-Spam-Flag: YES` and `X-Spam-Status: Yes, ...`:\n{}",
                    header_block(&junk[0])
                ),
            );
        }
        if !contains(&junk[0], gtube().as_bytes()) {
            fail_with(&s, &[sc], "the Junk copy lost its body");
        }
    }
    let ham = sample_message("ham-junk-config");
    let (r, _, _) = send25(&s, &[ALICE], &ham);
    if !r.matches("250") {
        fail_with(
            &s,
            &[sc],
            format!("ordinary message through {key}: {}", r.text()),
        );
    }
    let inbox = folder(&s, ALICE, "INBOX");
    if inbox.len() != 1 {
        fail_with(
            &s,
            &[sc],
            format!(
                "the ordinary message went elsewhere ({} in INBOX)",
                inbox.len()
            ),
        );
    }
    expect_intact(&s, &[sc], &inbox[0], &ham);
    if x_spam_fields(&inbox[0])
        .iter()
        .any(|f| f.eq_ignore_ascii_case("X-Spam-Flag: YES"))
    {
        fail_with(&s, &[sc], "the ordinary message is flagged as spam");
    }
}

/// X-Spam-* fields the sender wrote do not survive next to the scanner's: a forged
/// `X-Spam-Flag: NO` on GTUBE and a forged `X-Spam-Flag: YES` on ham are both replaced.
fn forged_x_spam_fields_replaced(rt: Runtime) {
    let spamd = Scanner::spamd();
    let rspamd = Scanner::rspamd();
    for (key, sc) in [("spamd", &spamd), ("rspamd", &rspamd)] {
        let s = server_with_filter(
            rt,
            &[
                kv(key, &sc.addr()),
                "timeout = 60".into(),
                "spam_reject_score = 5000.0".into(),
            ],
        );
        let forge = |msg: Vec<u8>, fields: &str| -> Vec<u8> {
            let text = String::from_utf8(msg).expect("utf-8");
            text.replacen("\r\n\r\n", &format!("\r\n{fields}\r\n\r\n"), 1)
                .into_bytes()
        };
        let spam = forge(
            gtube_message("forged-no"),
            "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100.0 required=5.0",
        );
        let ham = forge(
            sample_message("forged-yes"),
            "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=100.0 required=5.0",
        );
        for (what, msg) in [("spam", &spam), ("ham", &ham)] {
            let (r, _, _) = send25(&s, &[ALICE], msg);
            if !r.matches("250") {
                fail_with(&s, &[sc], format!("{key} {what}: {}", r.text()));
            }
        }
        // rspamd's own SPAM_FLAG rule scores a sender's `X-Spam-Flag: YES` (5 points, enough
        // for its `add header` action), so the ham may rightly land in Junk there. Wherever
        // each copy is, its verdict fields must be the scanner's alone and match the folder.
        let junk = folder(&s, ALICE, "Junk");
        let inbox = folder(&s, ALICE, "INBOX");
        let flags = |m: &[u8]| -> Vec<String> {
            x_spam_fields(m)
                .into_iter()
                .filter(|f| f.to_ascii_lowercase().starts_with("x-spam-flag:"))
                .collect()
        };
        let mut seen = 0;
        for (in_junk, m) in junk
            .iter()
            .map(|m| (true, m))
            .chain(inbox.iter().map(|m| (false, m)))
        {
            seen += 1;
            let head = header_block(m);
            let f = flags(m);
            let flag_ok = if in_junk {
                f == ["X-Spam-Flag: YES"]
            } else {
                !f.iter().any(|x| x.eq_ignore_ascii_case("X-Spam-Flag: YES"))
            };
            if !flag_ok || head.contains("score=100.0") || head.contains("score=-100.0") {
                fail_with(
                    &s,
                    &[sc],
                    format!(
                        "{key}: a forged verdict survived (copy in {}):\n{head}",
                        if in_junk { "Junk" } else { "INBOX" }
                    ),
                );
            }
            if head.contains("Subject: forged-no") && !in_junk {
                fail_with(
                    &s,
                    &[sc],
                    format!("{key}: GTUBE with a forged NO reached the INBOX"),
                );
            }
        }
        if seen != 2 {
            fail_with(
                &s,
                &[sc],
                format!("{key}: {seen} copies stored, expected 2"),
            );
        }
    }
}

fn spamd_refuses_gtube_by_default(rt: Runtime) {
    let sc = Scanner::spamd();
    spam_refused_by_default(rt, "spamd", &sc);
}

fn spamd_files_gtube_to_junk_below_reject_score(rt: Runtime) {
    let sc = Scanner::spamd();
    spam_to_junk(rt, "spamd", &sc);
}

fn rspamd_refuses_gtube_by_default(rt: Runtime) {
    let sc = Scanner::rspamd();
    spam_refused_by_default(rt, "rspamd", &sc);
}

fn rspamd_files_gtube_to_junk_below_reject_score(rt: Runtime) {
    let sc = Scanner::rspamd();
    spam_to_junk(rt, "rspamd", &sc);
}

// ---------------------------------------------------------------------------------------------
// milter

fn opendkim_milter_signs(rt: Runtime) {
    let sc = Scanner::opendkim("remote.example", "sel1");
    let s = server_with_filter(rt, &[format!("milters = [\"{}\"]", sc.addr())]);
    let msg = sample_message("dkim-milter");
    let (r, _, c) = send25(&s, &[ALICE], &msg);
    if !r.matches("250") {
        fail_with(
            &s,
            &[&sc],
            format!("expected 250, got {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    let stored = &inbox[0];
    if !has_field(stored, "DKIM-Signature") {
        fail_with(
            &s,
            &[&sc],
            format!(
                "OpenDKIM's DKIM-Signature is missing:\n{}",
                header_block(stored)
            ),
        );
    }
    // Header lines must stay CRLF: OpenDKIM folds its header with bare LF.
    let head = header_block(stored);
    if head.replace("\r\n", "").contains('\n') {
        fail_with(
            &s,
            &[&sc],
            format!("bare LF in the stored header:\n{head:?}"),
        );
    }
    expect_intact(&s, &[&sc], stored, &msg);
    let key = sc.dkim_key().expect("key");
    if let Err(e) = dkim_verify(stored, &key.txt) {
        fail_with(&s, &[&sc], e);
    }
}

fn hung_milter_accept_delivers(rt: Runtime) {
    let fake = FakeScanner::start(Misbehaviour::Silent);
    let s = server_with_filter(
        rt,
        &[
            format!("milters = [\"{}\"]", fake.addr()),
            "timeout = 2".into(),
            kv("on_failure", "accept"),
        ],
    );
    let msg = sample_message("milter-hung-accept");
    let (r, took, c) = send25(&s, &[ALICE], &msg);
    if !r.matches("250") || took > Duration::from_secs(30) {
        fail_with(
            &s,
            &[],
            format!(
                "hung milter with accept: got {:?} after {took:?}\n{}",
                r.text(),
                c.transcript()
            ),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[], &inbox[0], &msg);
    if fake.accepted() == 0 {
        fail_with(&s, &[], "Petrel never connected to the milter");
    }
}

/// Each end-of-message action of a milter, honoured as Postfix honours it.
fn milter_actions_honoured(rt: Runtime) {
    // (action, expected reply, messages in INBOX, messages in Junk)
    let cases: [(MilterAction, &str, usize, usize); 7] = [
        (MilterAction::Reject, "550 5.7.1", 0, 0),
        (MilterAction::TempFail, "451 4.7.1", 0, 0),
        (
            MilterAction::ReplyCode("553 5.7.0 Policy says no".into()),
            "553 5.7.0",
            0,
            0,
        ),
        (MilterAction::Discard, "250", 0, 0),
        (MilterAction::Quarantine("held by test".into()), "250", 0, 1),
        (
            MilterAction::AddHeader("X-Test-Milter".into(), "added by test".into()),
            "250",
            1,
            0,
        ),
        (
            MilterAction::ChangeHeader("Subject".into(), 1, "changed by test".into()),
            "250",
            1,
            0,
        ),
    ];
    for (action, reply, want_inbox, want_junk) in cases {
        let milter = FakeMilter::start(action.clone());
        let s = server_with_filter(
            rt,
            &[
                format!("milters = [\"{}\"]", milter.addr()),
                "timeout = 10".into(),
            ],
        );
        let msg = sample_message("milter-action");
        let (r, _, c) = send25(&s, &[ALICE], &msg);
        let what = format!("{action:?}");
        if !r.matches(reply) {
            fail_with(
                &s,
                &[],
                format!(
                    "milter {what}: expected {reply:?}, got {:?}\n{}",
                    r.text(),
                    c.transcript()
                ),
            );
        }
        if matches!(action, MilterAction::ReplyCode(_)) && !r.text().contains("Policy says no") {
            fail_with(
                &s,
                &[],
                format!("milter {what}: its text was lost: {}", r.text()),
            );
        }
        let inbox = folder(&s, ALICE, "INBOX");
        let junk = folder(&s, ALICE, "Junk");
        if inbox.len() != want_inbox || junk.len() != want_junk {
            fail_with(
                &s,
                &[],
                format!(
                    "milter {what}: INBOX {} Junk {}, expected {want_inbox} and {want_junk}",
                    inbox.len(),
                    junk.len()
                ),
            );
        }
        if milter.messages() != 1 {
            fail_with(
                &s,
                &[],
                format!("milter {what}: saw {} messages", milter.messages()),
            );
        }
        if !milter
            .headers_seen()
            .iter()
            .any(|(n, v)| n == "Subject" && v.contains("milter-action"))
        {
            fail_with(
                &s,
                &[],
                format!("milter {what}: was shown {:?}", milter.headers_seen()),
            );
        }
        match &action {
            MilterAction::AddHeader(..) => {
                let head = header_block(&inbox[0]);
                if !head.contains("X-Test-Milter: added by test") {
                    fail_with(&s, &[], format!("added header missing:\n{head}"));
                }
                expect_intact(&s, &[], &inbox[0], &msg);
            }
            MilterAction::ChangeHeader(..) => {
                let head = header_block(&inbox[0]);
                let subjects: Vec<&str> = head
                    .split("\r\n")
                    .filter(|l| l.to_ascii_lowercase().starts_with("subject:"))
                    .collect();
                if subjects != ["Subject: changed by test"] {
                    fail_with(&s, &[], format!("Subject not changed:\n{head}"));
                }
            }
            MilterAction::Quarantine(_)
                if !contains(&junk[0], b"Hello, this is milter-action.") =>
            {
                fail_with(&s, &[], "the quarantined copy lost its body");
            }
            _ => {}
        }
    }
}

/// OpenDKIM and a second milter in one list: both run and both of their headers land.
fn two_milters_both_apply(rt: Runtime) {
    let dkim = Scanner::opendkim("remote.example", "sel2");
    let tagger = FakeMilter::start(MilterAction::AddHeader(
        "X-Second-Milter".into(),
        "yes".into(),
    ));
    let s = server_with_filter(
        rt,
        &[format!(
            "milters = [\"{}\", \"{}\"]",
            dkim.addr(),
            tagger.addr()
        )],
    );
    let msg = sample_message("two-milters");
    let (r, _, c) = send25(&s, &[ALICE], &msg);
    if !r.matches("250") {
        fail_with(
            &s,
            &[&dkim],
            format!("two milters: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    let head = header_block(&inbox[0]);
    if !has_field(&inbox[0], "DKIM-Signature") || !head.contains("X-Second-Milter: yes") {
        fail_with(
            &s,
            &[&dkim],
            format!("both milters' headers expected:\n{head}"),
        );
    }
    let key = dkim.dkim_key().expect("key");
    if let Err(e) = dkim_verify(&inbox[0], &key.txt) {
        fail_with(&s, &[&dkim], e);
    }
}

// ---------------------------------------------------------------------------------------------
// submission

/// Sends `file` over submission (STARTTLS + AUTH as Alice) with swaks; returns the reply to the
/// end of data, such as `250 2.0.0 ...` or `554 5.7.1 ...`.
fn submit(s: &Server, to: &str, file: &std::path::Path) -> String {
    submit_on(s, Listener::Submission, to, file)
}

/// Like [`submit`] on `submission` (STARTTLS) or `submissions` (implicit TLS).
fn submit_on(s: &Server, listener: Listener, to: &str, file: &std::path::Path) -> String {
    let tls = if listener == Listener::Submissions {
        "--tls-on-connect"
    } else {
        "--tls"
    };
    let args = sargs![
        "--server",
        "127.0.0.1",
        "--port",
        s.port(listener),
        tls,
        "--auth",
        "PLAIN",
        "--auth-user",
        ALICE,
        "--auth-password",
        "alice-pw",
        "--from",
        ALICE,
        "--to",
        to,
        "--data",
        file.display(),
        "--timeout",
        "60"
    ];
    let done = swaks(&args);
    let lines: Vec<&str> = done.stdout.lines().collect();
    let dot = lines.iter().position(|l| l.trim_end().ends_with("~> ."));
    let reply = dot.and_then(|i| {
        lines[i + 1..]
            .iter()
            .find(|l| l.trim_start().starts_with("<~"))
            .map(|l| {
                l.trim_start()
                    .trim_start_matches("<~*")
                    .trim_start_matches("<~")
                    .trim()
                    .to_string()
            })
    });
    reply.unwrap_or_else(|| {
        panic!(
            "swaks did not get to the end of data:\n{}\n{}",
            done.describe(),
            s.log_tail(30)
        )
    })
}

fn submission_scans_viruses_not_spam(rt: Runtime) {
    let clamd = Scanner::clamd();
    let spamd = Scanner::spamd();
    let s = server_with_filter(
        rt,
        &[
            kv("clamd", &clamd.addr()),
            kv("spamd", &spamd.addr()),
            "timeout = 60".into(),
        ],
    );
    let both = [&clamd, &spamd];
    // A virus is refused on submission by default.
    let virus = temp_file(&s, "virus.eml", &eicar_attachment());
    for listener in [Listener::Submission, Listener::Submissions] {
        let reply = submit_on(&s, listener, BOB, &virus);
        if !reply.starts_with("554 5.7.1") || !reply.contains(EICAR_SIGNATURE) {
            fail_with(&s, &both, format!("EICAR on {listener:?}: {reply}"));
        }
    }
    // Spam is not checked on submission by default: GTUBE is delivered to the INBOX untouched.
    let spam = gtube_message("gtube-submission");
    let spam_file = temp_file(&s, "spam.eml", &spam);
    let reply = submit(&s, BOB, &spam_file);
    if !reply.starts_with("250") {
        fail_with(&s, &both, format!("GTUBE on submission: {reply}"));
    }
    let inbox = folder(&s, BOB, "INBOX");
    if inbox.len() != 1 || !folder(&s, BOB, "Junk").is_empty() {
        fail_with(
            &s,
            &both,
            format!(
                "Bob should have the GTUBE in INBOX only ({} there)",
                inbox.len()
            ),
        );
    }
    if !x_spam_fields(&inbox[0]).is_empty() {
        fail_with(
            &s,
            &both,
            format!(
                "submitted mail was spam-checked:\n{}",
                header_block(&inbox[0])
            ),
        );
    }
    // The same GTUBE on port 25 is refused: spamd was up and the default is to check there.
    let (r, _, _) = send25(&s, &[BOB], &spam);
    if !r.matches("554") {
        fail_with(&s, &both, format!("GTUBE on port 25: {}", r.text()));
    }
}

// ---------------------------------------------------------------------------------------------
// other paths into the server: BDAT, LMTP, submission switches

/// EICAR split across two BDAT chunks is refused at BDAT LAST, like DATA.
fn clamd_refuses_eicar_over_bdat(rt: Runtime) {
    let sc = Scanner::clamd();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr())]);
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.set_timeout(Duration::from_secs(60));
    c.expect(&format!("MAIL FROM:<{REMOTE}>"), "250");
    c.expect(&format!("RCPT TO:<{ALICE}>"), "250");
    let msg = eicar_inline();
    let cut = msg.len() - 40; // inside the EICAR string
    let (first, second) = msg.split_at(cut);
    c.send(format!("BDAT {}\r\n", first.len()).as_bytes());
    c.send(first);
    c.expect_reply("250");
    c.send(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
    c.send(second);
    let r = c.reply();
    expect_virus_refusal(&s, &sc, &r, &c);
    expect_nothing_delivered(&s, &[&sc], ALICE);
    // A clean message over BDAT is delivered.
    let clean = sample_message("bdat-clean");
    c.expect(&format!("MAIL FROM:<{REMOTE}>"), "250");
    c.expect(&format!("RCPT TO:<{ALICE}>"), "250");
    c.send(format!("BDAT {} LAST\r\n", clean.len()).as_bytes());
    c.send(&clean);
    c.expect_reply("250");
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[&sc], &inbox[0], &clean);
}

/// LMTP is scanned by default (`scan_lmtp`): a virus gets one 554 per recipient.
fn clamd_refuses_eicar_over_lmtp(rt: Runtime) {
    let sc = Scanner::clamd();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr())]);
    let mut c = SmtpConn::greeted(s.port(Listener::Lmtp));
    c.set_timeout(Duration::from_secs(60));
    c.expect("LHLO mta.example", "250");
    c.expect(&format!("MAIL FROM:<{REMOTE}>"), "250");
    c.expect(&format!("RCPT TO:<{ALICE}>"), "250");
    c.expect(&format!("RCPT TO:<{BOB}>"), "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&eicar_attachment()));
    for _ in 0..2 {
        let r = c.reply();
        expect_virus_refusal(&s, &sc, &r, &c);
    }
    expect_nothing_delivered(&s, &[&sc], ALICE);
    expect_nothing_delivered(&s, &[&sc], BOB);
}

/// `scan_submission_virus = false` and `scan_submission_spam = true` turn the defaults round.
fn submission_scan_switches(rt: Runtime) {
    let clamd = Scanner::clamd();
    let spamd = Scanner::spamd();
    let s = server_with_filter(
        rt,
        &[
            kv("clamd", &clamd.addr()),
            kv("spamd", &spamd.addr()),
            "timeout = 60".into(),
            "scan_submission_virus = false".into(),
            "scan_submission_spam = true".into(),
        ],
    );
    let both = [&clamd, &spamd];
    let spam = temp_file(&s, "spam.eml", &gtube_message("gtube-switch"));
    let reply = submit(&s, BOB, &spam);
    if !reply.starts_with("554") {
        fail_with(
            &s,
            &both,
            format!("GTUBE on submission with scan_submission_spam: {reply}"),
        );
    }
    let virus = temp_file(&s, "virus.eml", &eicar_attachment());
    let reply = submit(&s, BOB, &virus);
    if !reply.starts_with("250") {
        fail_with(
            &s,
            &both,
            format!("EICAR on submission with scan_submission_virus = false: {reply}"),
        );
    }
    let inbox = folder(&s, BOB, "INBOX");
    if inbox.len() != 1 || !contains(&inbox[0], b"report.com") {
        fail_with(
            &s,
            &both,
            format!(
                "Bob should have the unscanned attachment ({} messages)",
                inbox.len()
            ),
        );
    }
}

/// Messages above `spam_max_size` are not checked for spam (spamd and rspamd need the whole
/// message first), but they are still checked for viruses.
fn spam_max_size_skips_spam_check(rt: Runtime) {
    let clamd = Scanner::clamd();
    let spamd = Scanner::spamd();
    let s = server_with_filter(
        rt,
        &[
            kv("clamd", &clamd.addr()),
            kv("spamd", &spamd.addr()),
            "timeout = 60".into(),
            "spam_max_size = 4096".into(),
        ],
    );
    let mut filler = String::new();
    while filler.len() < 8192 {
        filler.push_str("Padding to take the message past spam_max_size.\r\n");
    }
    let big_spam = message("gtube-big", &format!("{filler}{}\r\n", gtube()));
    let (r, _, _) = send25(&s, &[ALICE], &big_spam);
    if !r.matches("250") {
        fail_with(
            &s,
            &[&clamd, &spamd],
            format!(
                "GTUBE above spam_max_size should be delivered unchecked: {}",
                r.text()
            ),
        );
    }
    let small_spam = gtube_message("gtube-small");
    let (r, _, _) = send25(&s, &[ALICE], &small_spam);
    if !r.matches("554") {
        fail_with(
            &s,
            &[&clamd, &spamd],
            format!("GTUBE below spam_max_size: {}", r.text()),
        );
    }
    let mut big_virus = message("eicar-big", &filler);
    big_virus.extend_from_slice(&eicar());
    big_virus.extend_from_slice(b"\r\n");
    let (r, _, c) = send25(&s, &[ALICE], &big_virus);
    expect_virus_refusal(&s, &clamd, &r, &c);
    let inbox = folder(&s, ALICE, "INBOX");
    if inbox.len() != 1 || !contains(&inbox[0], b"gtube-big") {
        fail_with(
            &s,
            &[&clamd, &spamd],
            "only the big GTUBE message should be delivered",
        );
    }
}

/// clamd, OpenDKIM, spamd and rspamd on one server: an ordinary message passes all four and
/// carries their marks; a message with a virus and GTUBE is refused for the virus.
fn every_scanner_at_once(rt: Runtime) {
    let clamd = Scanner::clamd();
    let dkim = Scanner::opendkim("remote.example", "sel3");
    let spamd = Scanner::spamd();
    let rspamd = Scanner::rspamd();
    let all = [&clamd, &dkim, &spamd, &rspamd];
    let s = server_with_filter(
        rt,
        &[
            kv("clamd", &clamd.addr()),
            format!("milters = [\"{}\"]", dkim.addr()),
            kv("spamd", &spamd.addr()),
            kv("rspamd", &rspamd.addr()),
            "timeout = 60".into(),
        ],
    );
    let ham = sample_message("all-scanners");
    let (r, _, c) = send25(&s, &[ALICE], &ham);
    if !r.matches("250") {
        fail_with(
            &s,
            &all,
            format!("ordinary message: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    if !has_field(&inbox[0], "DKIM-Signature") || x_spam_fields(&inbox[0]).is_empty() {
        fail_with(
            &s,
            &all,
            format!(
                "expected OpenDKIM's and the spam scanners' headers:\n{}",
                header_block(&inbox[0])
            ),
        );
    }
    let key = dkim.dkim_key().expect("key");
    if let Err(e) = dkim_verify(&inbox[0], &key.txt) {
        fail_with(&s, &all, e);
    }
    let mut both = gtube_message("virus-and-spam");
    both.extend_from_slice(&eicar());
    both.extend_from_slice(b"\r\n");
    let (r, _, c) = send25(&s, &[BOB], &both);
    expect_virus_refusal(&s, &clamd, &r, &c);
    expect_nothing_delivered(&s, &all, BOB);
}

// ---------------------------------------------------------------------------------------------
// failure policy

/// Asserts a 451 4.7.1 that came within `timeout` (plus scheduling slack).
#[track_caller]
fn expect_tempfail(s: &Server, r: &Reply, took: Duration, limit: Duration, c: &SmtpConn) {
    if !r.matches("451 4.7.1") || took > limit {
        fail_with(
            s,
            &[],
            format!(
                "expected `451 4.7.1` within {limit:?}, got {:?} after {took:?}\n{}",
                r.text(),
                c.transcript()
            ),
        );
    }
}

/// clamd refusing a stream over its `StreamMaxLength` is a scanner failure: 451 with
/// `tempfail`, delivered unscanned with `accept`. (Debian's clamd.conf says 25M while Petrel
/// accepts 50 MB by default: admins meet this.)
fn clamd_stream_limit_follows_failure_policy(rt: Runtime) {
    let sc = Scanner::clamd_with_stream_limit("1M");
    let mut body = String::new();
    while body.len() < 2_000_000 {
        body.push_str("Two megabytes of ordinary text, more than clamd will take.\r\n");
    }
    let msg = message("over-clamd-limit", &body);
    let (mut found, mut log) = (Vec::new(), String::new());
    for policy in ["tempfail", "accept"] {
        let s = server_with(
            rt,
            &[
                kv("clamd", &sc.addr()),
                "timeout = 20".into(),
                kv("on_failure", policy),
            ],
            4_000_000,
        );
        let (r, took, c) = send25(&s, &[ALICE], &msg);
        let want = if policy == "tempfail" {
            "451 4.7.1"
        } else {
            "250"
        };
        if !r.matches(want) || took > Duration::from_secs(30) {
            fail_with(
                &s,
                &[&sc],
                format!(
                    "{policy}: a message over clamd's StreamMaxLength: expected {want}, got {:?} \
                     after {took:?}\n{}",
                    r.text(),
                    c.transcript()
                ),
            );
        }
        found.push(folder(&s, ALICE, "INBOX").len());
        log = s.log_tail(5);
    }
    assert_eq!(
        found,
        [0, 1],
        "tempfail must deliver nothing, accept exactly one copy\n{log}"
    );
    assert!(
        sc.log().to_ascii_lowercase().contains("size limit"),
        "clamd should have refused the stream:\n{}",
        sc.log_tail(20)
    );
}

fn clamd_stopped_tempfails(rt: Runtime) {
    let mut sc = Scanner::clamd();
    let s = server_with_filter(rt, &[kv("clamd", &sc.addr()), "timeout = 5".into()]);
    sc.stop();
    let (r, took, c) = send25(&s, &[ALICE], &sample_message("clamd-down"));
    expect_tempfail(&s, &r, took, Duration::from_secs(20), &c);
    expect_nothing_delivered(&s, &[], ALICE);
}

fn clamd_stopped_accept_delivers(rt: Runtime) {
    let mut sc = Scanner::clamd();
    let s = server_with_filter(
        rt,
        &[
            kv("clamd", &sc.addr()),
            "timeout = 5".into(),
            kv("on_failure", "accept"),
        ],
    );
    sc.stop();
    let msg = sample_message("clamd-down-accept");
    let (r, _, c) = send25(&s, &[ALICE], &msg);
    if !r.matches("250") {
        fail_with(
            &s,
            &[],
            format!("clamd down with accept: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[], &inbox[0], &msg);
}

fn spamd_stopped_tempfails_and_accept_delivers(rt: Runtime) {
    let mut sc = Scanner::spamd();
    let addr = sc.addr();
    sc.stop();
    let s = server_with_filter(rt, &[kv("spamd", &addr), "timeout = 5".into()]);
    let (r, took, c) = send25(&s, &[ALICE], &sample_message("spamd-down"));
    expect_tempfail(&s, &r, took, Duration::from_secs(20), &c);
    expect_nothing_delivered(&s, &[], ALICE);
    drop(s);
    let s = server_with_filter(
        rt,
        &[
            kv("spamd", &addr),
            "timeout = 5".into(),
            kv("on_failure", "accept"),
        ],
    );
    let msg = sample_message("spamd-down-accept");
    let (r, _, c) = send25(&s, &[ALICE], &msg);
    if !r.matches("250") {
        fail_with(
            &s,
            &[],
            format!("spamd down with accept: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let inbox = expect_messages(&s, ALICE, 1);
    expect_intact(&s, &[], &inbox[0], &msg);
}

fn hung_scanner_tempfails_within_timeout(rt: Runtime) {
    for key in ["clamd", "spamd", "rspamd", "milters"] {
        let fake = FakeScanner::start(Misbehaviour::Silent);
        let s = server_with_filter(rt, &[target(key, &fake.addr()), "timeout = 3".into()]);
        let (r, took, c) = send25(&s, &[ALICE], &sample_message("hung"));
        // The policy applies within the timeout (3 s), not the SMTP client's patience.
        expect_tempfail(&s, &r, took, Duration::from_secs(15), &c);
        eprintln!(
            "hung {key} ({}), timeout 3 s: 451 after {took:?}",
            rt.as_str()
        );
        if took < Duration::from_secs(2) {
            fail_with(
                &s,
                &[],
                format!("{key}: 451 after only {took:?}: was the scanner asked?"),
            );
        }
        expect_nothing_delivered(&s, &[], ALICE);
        if fake.accepted() == 0 {
            fail_with(&s, &[], format!("Petrel never connected to the hung {key}"));
        }
    }
}

/// A scanner whose answer never ends, one byte every 500 ms: the timeout must bound the whole
/// wait for the answer, not each read, or a dribbling scanner holds the SMTP client forever.
fn endless_answer_tempfails_within_timeout(rt: Runtime) {
    let cases: [(&str, &[u8], u8); 4] = [
        ("clamd", b"stream: ", b'x'),
        ("spamd", b"SPAMD/1.5 0 EX_OK\r\nSpam: ", b'x'),
        ("rspamd", b"HTTP/1.1 200 OK\r\nX-Filler: ", b'x'),
        // A milter packet announcing 64 KiB and delivering it byte by byte.
        ("milters", b"\x00\x01\x00\x00O", 0),
    ];
    let mut failures = Vec::new();
    for (key, prefix, filler) in cases {
        let fake = FakeScanner::start(Misbehaviour::Trickle {
            prefix: prefix.to_vec(),
            filler,
        });
        let mut s = server_with_filter(rt, &[target(key, &fake.addr()), "timeout = 3".into()]);
        let mut c = SmtpConn::ready(s.port(Listener::Smtp));
        c.expect(&format!("MAIL FROM:<{REMOTE}>"), "250");
        c.expect(&format!("RCPT TO:<{ALICE}>"), "250");
        c.expect("DATA", "354");
        c.send(&petrel_tests::data_payload(&sample_message("trickle")));
        c.set_timeout(Duration::from_secs(20));
        let t0 = Instant::now();
        let answer = c.try_reply();
        let took = t0.elapsed();
        let shown = match &answer {
            Ok(r) => r.text(),
            Err(e) => e.to_string(),
        };
        eprintln!(
            "endless {key} ({}), timeout 3 s: {shown:?} after {took:?}",
            rt.as_str()
        );
        match answer {
            Ok(r) if r.matches("451 4.7.1") && took < Duration::from_secs(15) => {}
            Ok(r) => failures.push(format!("{key}: {:?} after {took:?}", r.text())),
            Err(e) => failures.push(format!("{key}: no reply after {took:?} ({e})")),
        }
        if !folder(&s, ALICE, "INBOX").is_empty() {
            failures.push(format!("{key}: the message was delivered"));
        }
        // A session stuck on the scanner would hold a graceful stop for its whole grace time.
        s.kill9();
    }
    assert!(
        failures.is_empty(),
        "expected `451 4.7.1` within 15 s with timeout = 3 from a scanner that answers one \
         byte every 500 ms forever:\n{}",
        failures.join("\n")
    );
}

fn garbage_answers_tempfail(rt: Runtime) {
    let cases: [(&str, &[u8]); 6] = [
        ("clamd", b"stream: what is this\0"),
        ("clamd", b"\x00\xff\xfe garbage\r\n"),
        (
            "spamd",
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: zz\r\nSpam: maybe ; x / y\r\n\r\n",
        ),
        (
            "rspamd",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{not json",
        ),
        // A milter packet with an unknown command, and one claiming to be 4 GB long.
        ("milters", b"\x00\x00\x00\x05Zjunk"),
        ("milters", b"\xff\xff\xff\xffO"),
    ];
    for (key, answer) in cases {
        let fake = FakeScanner::start(Misbehaviour::Garbage(answer.to_vec()));
        let s = server_with_filter(rt, &[target(key, &fake.addr()), "timeout = 5".into()]);
        let (r, took, c) = send25(&s, &[ALICE], &sample_message("garbage"));
        if !r.matches("451 4.7.1") || took > Duration::from_secs(20) {
            fail_with(
                &s,
                &[],
                format!(
                    "{key} answering {:?}: expected 451 4.7.1, got {:?} after {took:?}\n{}",
                    String::from_utf8_lossy(answer),
                    r.text(),
                    c.transcript()
                ),
            );
        }
        expect_nothing_delivered(&s, &[], ALICE);
    }
}

fn scanner_closing_mid_stream_tempfails(rt: Runtime) {
    // 300 KB of text: the scanner hangs up after 64 KiB, in the middle of the message.
    let mut body = String::new();
    while body.len() < 300_000 {
        body.push_str("The quick brown fox jumps over the lazy dog, line after line.\r\n");
    }
    let msg = message("mid-stream", &body);
    for key in ["clamd", "spamd", "rspamd"] {
        let fake = FakeScanner::start(Misbehaviour::CloseAfter(65_536));
        let s = server_with(
            rt,
            &[kv(key, &fake.addr()), "timeout = 5".into()],
            2_000_000,
        );
        let (r, took, c) = send25(&s, &[ALICE], &msg);
        if !r.matches("451 4.7.1") || took > Duration::from_secs(20) {
            fail_with(
                &s,
                &[],
                format!(
                    "{key} closing mid-stream: expected 451 4.7.1, got {:?} after {took:?}\n{}",
                    r.text(),
                    c.transcript()
                ),
            );
        }
        expect_nothing_delivered(&s, &[], ALICE);
    }
}

// ---------------------------------------------------------------------------------------------
// 50 MB

/// A clean 50 MB message of varied text lines (not one repeated line: a scanner or a
/// compressor must not get it for free).
fn fifty_megabytes(subject: &str) -> Vec<u8> {
    const SIZE: usize = 50 * 1024 * 1024;
    let mut msg = message(subject, "");
    let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
    while msg.len() < SIZE {
        n ^= n << 13;
        n ^= n >> 7;
        n ^= n << 17;
        let line = format!(
            "{n:016x} {:020} lorem ipsum dolor sit amet consectetur\r\n",
            n % 1_000_000_007
        );
        msg.extend_from_slice(line.as_bytes());
    }
    msg
}

/// 50 MB with clamd, spamd and rspamd configured: the spam scanners skip it (above
/// `spam_max_size`, 512 KiB by default) without buffering it, clamd scans it, it is delivered,
/// and the server's peak memory grows by far less than the message.
fn large_message_with_spam_scanners_bounded_memory(rt: Runtime) {
    let clamd = Scanner::clamd();
    let spamd = Scanner::spamd();
    let rspamd = Scanner::rspamd();
    let all = [&clamd, &spamd, &rspamd];
    let s = server_with(
        rt,
        &[
            kv("clamd", &clamd.addr()),
            kv("spamd", &spamd.addr()),
            kv("rspamd", &rspamd.addr()),
            "timeout = 120".into(),
        ],
        60 * 1024 * 1024,
    );
    let msg = fifty_megabytes("fifty-megabytes-all");
    let before = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail_with(&s, &all, "no VmHWM for the server"));
    let t0 = Instant::now();
    let (r, _, c) = send25(&s, &[ALICE], &msg);
    let took = t0.elapsed();
    if !r.matches("250") {
        fail_with(
            &s,
            &all,
            format!("50 MB clean message: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    let after = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail_with(&s, &all, "no VmHWM for the server"));
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "50 MB with clamd+spamd+rspamd ({}): VmHWM {before} kB -> {after} kB (+{grown_mib:.1} MiB), {took:?}",
        rt.as_str()
    );
    if grown_mib >= 20.0 {
        fail_with(
            &s,
            &all,
            format!("peak memory grew by {grown_mib:.1} MiB for a 50 MB message (limit 20 MiB)"),
        );
    }
    let inbox = folder(&s, ALICE, "INBOX");
    if inbox.len() != 1 || inbox[0].len() < msg.len() {
        fail_with(&s, &all, "the 50 MB message should be in the INBOX, whole");
    }
}

fn large_message_scanned_with_bounded_memory(rt: Runtime) {
    let sc = Scanner::clamd();
    let s = server_with(
        rt,
        &[kv("clamd", &sc.addr()), "timeout = 120".into()],
        60 * 1024 * 1024,
    );
    let msg = fifty_megabytes("fifty-megabytes");
    let before = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail_with(&s, &[&sc], "no VmHWM for the server"));
    let t0 = Instant::now();
    let (r, _, mut c) = send25(&s, &[ALICE], &msg);
    let took = t0.elapsed();
    if !r.matches("250") {
        fail_with(
            &s,
            &[&sc],
            format!("50 MB clean message: {:?}\n{}", r.text(), c.transcript()),
        );
    }
    c.quit();
    let after = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail_with(&s, &[&sc], "no VmHWM for the server"));
    let grown_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "50 MB through clamd ({}): VmHWM {before} kB -> {after} kB (+{grown_mib:.1} MiB), {took:?}",
        rt.as_str()
    );
    if grown_mib >= 20.0 {
        fail_with(
            &s,
            &[&sc],
            format!("peak memory grew by {grown_mib:.1} MiB for a 50 MB message (limit 20 MiB)"),
        );
    }
    let files = s.message_files(ALICE);
    if files.len() != 1 {
        fail_with(
            &s,
            &[&sc],
            format!("expected one delivered message, found {}", files.len()),
        );
    }
    let stored = std::fs::read(&files[0]).expect("read the stored message");
    if !stored.ends_with(&msg[msg.len() - 4096..]) || stored.len() < msg.len() {
        fail_with(
            &s,
            &[&sc],
            format!("stored {} bytes, sent {}", stored.len(), msg.len()),
        );
    }
    // clamd really scanned it: it logs every clean stream (LogClean) and `INSTREAM: Size limit
    // reached` when a stream is longer than its StreamMaxLength.
    let log = sc.log();
    if !log.contains(": OK") || log.contains("Size limit reached") {
        fail_with(&s, &[&sc], "clamd did not scan the whole stream");
    }
    // The same 50 MB with EICAR in its last line: refused, so the scanner saw the very end.
    let mut infected = msg.clone();
    infected.extend_from_slice(&eicar());
    infected.extend_from_slice(b"\r\n");
    let (r, _, c) = send25(&s, &[BOB], &infected);
    expect_virus_refusal(&s, &sc, &r, &c);
    expect_nothing_delivered(&s, &[&sc], BOB);
    let end = s
        .peak_rss_kib()
        .unwrap_or_else(|| fail_with(&s, &[&sc], "no VmHWM for the server"));
    let grown_mib = (end.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "after a second 50 MB message (EICAR at the end): VmHWM {end} kB (+{grown_mib:.1} MiB)"
    );
    if grown_mib >= 20.0 {
        fail_with(
            &s,
            &[&sc],
            format!("peak memory grew by {grown_mib:.1} MiB over two 50 MB messages"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// configuration

/// A bad `[filter]` value stops `petrel serve` with exit code 2 and one line naming the key.
fn bad_filter_config_exits_2(rt: Runtime) {
    let cases: [(&str, &str); 7] = [
        ("on_failure = \"maybe\"", "on_failure"),
        ("clamd = \"no-port-here\"", "clamd"),
        ("spamd = \"unix:relative/path\"", "spamd"),
        ("milters = [\"127.0.0.1:0\"]", "milters"),
        ("timeout = 0", "timeout"),
        ("spam_reject_score = \"high\"", "spam_reject_score"),
        ("clamav = \"127.0.0.1:3310\"", "clamav"),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (line, key) in cases {
        let path = dir.path().join("petrel.toml");
        let text = format!(
            "hostname = \"mail.test.example\"\n\
             data_dir = \"{}\"\n\
             domains = [\"example.test\"]\n\
             \n\
             [listen]\n\
             smtp = \"127.0.0.1:{}\"\n\
             \n\
             [filter]\n\
             {line}\n",
            dir.path().join("data").display(),
            petrel_tests::free_port()
        );
        std::fs::write(&path, &text).expect("write config");
        let mut cmd = Command::new(petrel_tests::petrel_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--runtime", rt.as_str()]);
        let done = run_with_timeout(cmd, Duration::from_secs(10));
        let lines: Vec<&str> = done
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let ok = done.status.and_then(|st| st.code()) == Some(2)
            && lines.len() == 1
            && lines[0].contains(key)
            && !done.stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "`{line}`: expected exit 2 and one stderr line naming `{key}`\n{}",
                done.describe()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
