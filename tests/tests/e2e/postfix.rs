//! Postfix (Debian's package) -> LMTP -> Petrel: a private Postfix instance, configured entirely
//! inside a temp dir with `virtual_transport = lmtp:inet:127.0.0.1:PORT`, takes three messages
//! over SMTP and hands them to Petrel's `lmtp` listener. Postfix must be installed (scripts/test
//! installs it) and the tests must run as root: they fail, never skip, otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel_tests::{
    ALICE, BOB, CAROL, Listener, Runtime, Server, ServerOptions, SmtpConn, StoredMessage, contains,
    free_port, run_with_timeout,
};

use crate::expect_messages;

both_runtimes!(postfix_delivers_over_lmtp);

#[test]
fn petrel_sends_to_postfix_which_defers_and_refuses_some() {
    outbound_to_postfix(Runtime::Smol)
}

/// With `relay.tls = "encrypt"`, a receiver without STARTTLS (this Postfix offers none) gets
/// nothing: the mail stays queued, saying why.
#[test]
fn required_tls_defers_mail_for_a_plaintext_receiver() {
    let b = Server::start(Runtime::Blocking, ServerOptions::default());
    let pf = Postfix::configure(b.port(Listener::Lmtp));
    pf.start(&b);
    let dns = petrel_tests::Dnsmasq::start(&[
        "--mx-host=example.test,mx.example.test,10".into(),
        "--host-record=mx.example.test,127.0.0.1".into(),
    ]);
    let a = Server::start(
        Runtime::Blocking,
        ServerOptions {
            domains: vec!["sender.test".into()],
            users: vec![],
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\ntls = \"encrypt\"\n",
                dns.addr, pf.smtp_port
            ),
            ..Default::default()
        },
    );
    let out = a.petrel(
        &["sendmail", "-f", "cron@sender.test", ALICE.address],
        b"Subject: needs TLS\n\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = a.petrel(&["queue", "list"], b"");
        let listing = String::from_utf8_lossy(&list.stdout).into_owned();
        if listing.contains("alice@example.test: pending (451 4.7.4") {
            assert!(listing.contains("TLS"), "{listing}");
            break;
        }
        if Instant::now() > deadline {
            fail(&a, &pf, format!("not deferred for lack of TLS:\n{listing}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.new_messages(ALICE.address).is_empty());
}

#[test]
fn postfix_bounces_a_sieve_reject_answered_over_lmtp() {
    sieve_reject(Runtime::Smol)
}

/// The `postfix` command (in /usr/sbin, which is not on every PATH).
fn postfix_bin() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/postfix");
    if sbin.is_file() {
        sbin
    } else {
        PathBuf::from("postfix")
    }
}

/// A private Postfix instance: its own config, queue and data directories and log in a temp dir.
/// Dropping it stops the instance (and kills its master when `postfix stop` was not enough).
struct Postfix {
    dir: tempfile::TempDir,
    smtp_port: u16,
}

impl Postfix {
    /// Writes main.cf and master.cf for an instance listening on a free loopback port and
    /// delivering `example.test` and `other.test` to `127.0.0.1:lmtp_port` over LMTP.
    fn configure(lmtp_port: u16) -> Postfix {
        Postfix::configure_with(lmtp_port, "example.test, other.test", "")
    }

    /// The same for `domains`, with `extra` lines appended to main.cf.
    fn configure_with(lmtp_port: u16, domains: &str, extra: &str) -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("petrel-postfix-")
            .tempdir()
            .expect("create postfix temp dir");
        // The daemons drop to the `postfix` user; it must be able to reach its directories.
        set_mode(dir.path(), 0o755);
        let pf = Postfix {
            dir,
            smtp_port: free_port(),
        };
        fs::create_dir_all(pf.config_dir()).expect("create postfix config dir");
        // `postfix start` creates the queue's subdirectories, not the queue directory itself.
        fs::create_dir_all(pf.dir.path().join("queue")).expect("create postfix queue dir");
        let root = pf.dir.path().display().to_string();
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {root}/queue\n\
             data_directory = {root}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = mta.postfix.test\n\
             mydomain = postfix.test\n\
             myorigin = $myhostname\n\
             mydestination =\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             alias_maps =\n\
             alias_database =\n\
             local_recipient_maps =\n\
             virtual_mailbox_domains = {domains}\n\
             virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}\n\
             default_transport = error:outbound mail is disabled in this test\n\
             relay_transport = error:outbound mail is disabled in this test\n\
             lmtp_host_lookup = native\n\
             smtp_host_lookup = native\n\
             smtpd_peername_lookup = no\n\
             smtputf8_enable = no\n\
             biff = no\n\
             maillog_file = {root}/maillog\n\
             maillog_file_prefixes = {root}\n\
             {extra}\n"
        );
        let master_cf = format!(
            "127.0.0.1:{} inet n - n - - smtpd\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             lmtp unix - - n - - lmtp\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n",
            pf.smtp_port
        );
        fs::write(pf.config_dir().join("main.cf"), main_cf).expect("write main.cf");
        fs::write(pf.config_dir().join("master.cf"), master_cf).expect("write master.cf");
        pf
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn master_pid_file(&self) -> PathBuf {
        self.dir.path().join("queue").join("pid").join("master.pid")
    }

    /// Everything Postfix logged so far (`maillog_file`).
    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.path().join("maillog")).unwrap_or_default())
            .into_owned()
    }

    /// Runs `postfix -c CONFIG_DIR ARG` (30 s at most).
    fn command(&self, arg: &str) -> petrel_tests::Finished {
        let mut cmd = Command::new(postfix_bin());
        cmd.arg("-c").arg(self.config_dir()).arg(arg);
        run_with_timeout(cmd, Duration::from_secs(30))
    }

    /// `postfix start`, then waits (bounded) until its smtpd accepts connections.
    fn start(&self, s: &Server) {
        let done = self.command("start");
        if !done.success() {
            fail(
                s,
                self,
                format!(
                    "`postfix -c {} start` failed (is Debian's postfix installed, and are we root?)\n{}",
                    self.config_dir().display(),
                    done.describe()
                ),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while SmtpConn::try_connect(self.smtp_port).is_err() {
            if Instant::now() > deadline {
                fail(
                    s,
                    self,
                    format!(
                        "Postfix's smtpd does not accept on 127.0.0.1:{} 15 s after start",
                        self.smtp_port
                    ),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.master_pid_file())
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // Never panics (a panic while the test is already unwinding would abort every test).
        let quiet = |arg: &str| {
            let _ = Command::new(postfix_bin())
                .arg("-c")
                .arg(self.config_dir())
                .arg(arg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let pid = self.master_pid();
        quiet("stop");
        let Some(pid) = pid else { return };
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            quiet("abort");
            std::thread::sleep(Duration::from_millis(200));
        }
        if pid_alive(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Panics with `msg`, Postfix's log and the tail of Petrel's log.
#[track_caller]
fn fail(s: &Server, pf: &Postfix, msg: impl std::fmt::Display) -> ! {
    panic!(
        "{msg}\n--- Postfix log ({}) ---\n{}\n--- Petrel log ---\n{}",
        pf.dir.path().join("maillog").display(),
        pf.log(),
        s.log_tail(60)
    )
}

/// A message with dot lines (stuffed on both hops) and complete headers, so that Postfix adds
/// nothing but its Received header.
fn message(marker: &str, to: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@other.test>\r\n\
         To: {to}\r\n\
         Subject: {marker}\r\n\
         Message-ID: <{marker}@client.example>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         Hello, this is {marker}.\r\n\
         .\r\n\
         ..\r\n\
         .A line that starts with a dot.\r\n\
         trailing spaces   \r\n\
         \r\n\
         \tindented\r\n\
         Bye.\r\n"
    )
    .into_bytes()
}

/// Log lines of deliveries to `rcpt`.
fn log_lines<'a>(log: &'a str, rcpt: &str) -> Vec<&'a str> {
    let to = format!("to=<{rcpt}>");
    log.lines().filter(|l| l.contains(&to)).collect()
}

fn postfix_delivers_over_lmtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let lmtp = s.port(Listener::Lmtp);
    let pf = Postfix::configure(lmtp);
    pf.start(&s);

    let one = message("postfix-one", ALICE.address);
    let two = message("postfix-two", "alice@example.test, bob@example.test");
    let three = message("postfix-three", "nobody@example.test");
    let mut c = SmtpConn::greeted(pf.smtp_port);
    c.expect("EHLO client.example", "250");
    c.deliver(CAROL.address, &[ALICE.address], &one);
    c.deliver(CAROL.address, &[ALICE.address, BOB.address], &two);
    // Postfix takes it (it does not know Petrel's users); Petrel refuses it at RCPT.
    c.deliver(CAROL.address, &["nobody@example.test"], &three);
    c.quit();

    // alice 2, bob 1, and the bounce for nobody@ back to carol (other.test also goes to Petrel).
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{lmtp}");
    let sent = |log: &str, rcpt: &str| {
        log_lines(log, rcpt)
            .iter()
            .filter(|l| l.contains(&relay) && l.contains("status=sent"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = pf.log();
        let done = s.new_messages(ALICE.address).len() >= 2
            && !s.new_messages(BOB.address).is_empty()
            && !s.new_messages(CAROL.address).is_empty()
            && sent(&log, ALICE.address) >= 2
            && sent(&log, BOB.address) >= 1
            && sent(&log, CAROL.address) >= 1;
        if done {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &s,
                &pf,
                format!(
                    "after 20 s: alice has {} message(s) (want 2), bob {} (want 1), carol {} \
                     (want 1, the bounce); Postfix logged status=sent via {relay} {} time(s) for \
                     alice (want 2), {} for bob (want 1), {} for carol (want 1)",
                    s.new_messages(ALICE.address).len(),
                    s.new_messages(BOB.address).len(),
                    s.new_messages(CAROL.address).len(),
                    sent(&log, ALICE.address),
                    sent(&log, BOB.address),
                    sent(&log, CAROL.address),
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let anything that should not happen (a duplicate, a second bounce) show up.
    std::thread::sleep(Duration::from_millis(500));
    let log = pf.log();

    for (user, want) in [(ALICE.address, vec![&one, &two]), (BOB.address, vec![&two])] {
        let got = s.new_messages(user);
        if got.len() != want.len() {
            fail(
                &s,
                &pf,
                format!(
                    "{user} has {} message(s), expected {}",
                    got.len(),
                    want.len()
                ),
            );
        }
        expect_messages(&s, user, want.len());
        for original in want {
            let Some(stored) = got.iter().find(|m| m.ends_with(original)) else {
                fail(
                    &s,
                    &pf,
                    format!(
                        "no message of {user} ends with the message sent, byte for byte:\n\
                         sent: {:?}\nstored: {:#?}",
                        String::from_utf8_lossy(original),
                        got.iter()
                            .map(|m| String::from_utf8_lossy(m))
                            .collect::<Vec<_>>()
                    ),
                );
            };
            check_headers(&s, &pf, user, stored, original);
        }
        if sent(&log, user) != got.len() {
            fail(
                &s,
                &pf,
                format!(
                    "Postfix logged {} status=sent via {relay} for {user}, expected {}",
                    sent(&log, user),
                    got.len()
                ),
            );
        }
    }

    // nobody@: refused by Petrel with 550 5.1.1, bounced by Postfix, never delivered.
    let nobody = log_lines(&log, "nobody@example.test");
    if nobody.iter().any(|l| l.contains("status=sent"))
        || !nobody.iter().any(|l| {
            l.contains("status=bounced")
                && l.contains("said: 550 5.1.1")
                && l.contains("in reply to RCPT TO command")
        })
    {
        fail(
            &s,
            &pf,
            format!(
                "expected Postfix to bounce nobody@example.test after Petrel's 550 5.1.1 to RCPT: \
                 {nobody:#?}"
            ),
        );
    }
    let bounces = s.new_messages(CAROL.address);
    if bounces.len() != 1 {
        fail(
            &s,
            &pf,
            format!("carol has {} message(s), expected 1 bounce", bounces.len()),
        );
    }
    let bounce = StoredMessage::parse(&bounces[0]).unwrap_or_else(|e| fail(&s, &pf, e));
    let text = String::from_utf8_lossy(&bounce.rest);
    if !bounce.return_path.is_empty()
        || !text.contains("Final-Recipient: rfc822; nobody@example.test")
        || !text.contains("Status: 5.1.1")
        || !contains(&bounce.rest, b"Subject: postfix-three")
    {
        fail(
            &s,
            &pf,
            format!(
                "carol's message is not Postfix's bounce for nobody@example.test (Return-Path \
                 <{}>):\n{text}",
                bounce.return_path
            ),
        );
    }
}

/// `stored` must be Petrel's Return-Path and Received (with LMTP), then Postfix's Received, then
/// `original` exactly.
fn check_headers(s: &Server, pf: &Postfix, user: &str, stored: &[u8], original: &[u8]) {
    let m = StoredMessage::parse(stored).unwrap_or_else(|e| fail(s, pf, e));
    if m.return_path != CAROL.address || m.with_protocol().as_deref() != Some("LMTP") {
        fail(
            s,
            pf,
            format!(
                "{user}: Return-Path <{}> (want <{}>), Petrel's Received should say `with LMTP`: {}",
                m.return_path, CAROL.address, m.received
            ),
        );
    }
    let added = &m.rest[..m.rest.len() - original.len()];
    let added_text = String::from_utf8_lossy(added);
    let lines: Vec<&str> = added_text.split_terminator("\r\n").collect();
    let well_formed = added.ends_with(b"\r\n")
        && lines
            .first()
            .is_some_and(|l| l.starts_with("Received: from "))
        && lines[1..]
            .iter()
            .all(|l| l.starts_with(' ') || l.starts_with('\t'))
        && added_text.contains("by mta.postfix.test (Postfix)")
        && !added_text.replace("\r\n", "").contains('\n');
    if !well_formed {
        fail(
            s,
            pf,
            format!(
                "{user}: between Petrel's Received and the message sent there should be exactly \
                 Postfix's Received header, found {added_text:?}"
            ),
        );
    }
}

/// bob's Sieve script rejects; Petrel answers 550 5.7.1 for bob alone after DATA over LMTP, so
/// Postfix delivers alice's copy and bounces bob's to the sender with the script's reason.
fn sieve_reject(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let sieve = s.data_dir().join("users/example.test/bob/sieve");
    fs::create_dir_all(&sieve).expect("mkdir");
    fs::write(
        sieve.join("main.sieve"),
        "require \"reject\";\nreject \"Bob has left the company.\";\n",
    )
    .expect("write script");
    fs::write(sieve.join(".active"), "main\n").expect("activate");
    let pf = Postfix::configure(s.port(Listener::Lmtp));
    pf.start(&s);
    let msg = message("postfix-sieve", "alice@example.test, bob@example.test");
    let mut c = SmtpConn::greeted(pf.smtp_port);
    c.expect("EHLO client.example", "250");
    c.deliver(CAROL.address, &[ALICE.address, BOB.address], &msg);
    c.quit();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.new_messages(CAROL.address).is_empty() || s.new_messages(ALICE.address).is_empty() {
        if Instant::now() > deadline {
            fail(
                &s,
                &pf,
                "after 20 s: alice's copy or carol's bounce is missing",
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = pf.log();
    let bob = log_lines(&log, BOB.address);
    if !bob.iter().any(|l| {
        l.contains("status=bounced")
            && l.contains("said: 550 5.7.1")
            && l.contains("Bob has left the company.")
            && l.contains("in reply to end of DATA command")
    }) {
        fail(
            &s,
            &pf,
            format!("Postfix did not bounce bob after DATA: {bob:#?}"),
        );
    }
    if !s.new_messages(BOB.address).is_empty() || s.new_messages(ALICE.address).len() != 1 {
        fail(&s, &pf, "bob must have nothing and alice one message");
    }
    let bounce = StoredMessage::parse(&s.new_messages(CAROL.address)[0])
        .unwrap_or_else(|e| fail(&s, &pf, e));
    let text = String::from_utf8_lossy(&bounce.rest);
    if !text.contains("Final-Recipient: rfc822; bob@example.test")
        || !text.contains("Status: 5.7.1")
    {
        fail(
            &s,
            &pf,
            format!("carol's message is not the bounce for bob:\n{text}"),
        );
    }
}

/// Petrel's queue runner delivers to a real Postfix (found by MX through dnsmasq), which takes
/// one recipient (and hands it to a second Petrel over LMTP), defers one with 450 and refuses
/// one with 550: the first arrives, the second stays queued with Postfix's reply, the third
/// comes back to the sender as a bounce quoting Postfix.
fn outbound_to_postfix(rt: Runtime) {
    const DAVE: petrel_tests::Account = petrel_tests::Account {
        address: "dave@remote.test",
        password: "dave-pw",
    };
    let b = Server::start(
        rt,
        ServerOptions {
            domains: vec!["remote.test".into()],
            users: vec![DAVE],
            ..Default::default()
        },
    );
    let pf = Postfix::configure_with(
        b.port(Listener::Lmtp),
        "remote.test",
        "smtpd_recipient_restrictions = check_recipient_access inline:{ \
         { greylist@remote.test = 450 4.7.1 greylisted, try again later }, \
         { refused@remote.test = 550 5.7.1 we do not want this } }, \
         permit_mynetworks, reject_unauth_destination",
    );
    pf.start(&b);
    let dns = petrel_tests::Dnsmasq::start(&[
        "--mx-host=remote.test,mx.remote.test,10".into(),
        "--host-record=mx.remote.test,127.0.0.1".into(),
    ]);
    let a = Server::start(
        rt,
        ServerOptions {
            extra_config: format!(
                "[relay]\nresolver = \"{}\"\nmx_port = {}\n",
                dns.addr, pf.smtp_port
            ),
            ..Default::default()
        },
    );
    // `petrel sendmail` queues as submission does.
    let out = a.petrel(
        &[
            "sendmail",
            "-f",
            ALICE.address,
            "dave@remote.test",
            "greylist@remote.test",
            "refused@remote.test",
        ],
        b"Subject: to postfix\n\nhello postfix\n",
    );
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bounced = a.new_messages(ALICE.address).len() == 1;
        if b.new_messages(DAVE.address).len() == 1 && bounced {
            break;
        }
        if Instant::now() > deadline {
            fail(
                &a,
                &pf,
                format!(
                    "after 30 s: dave has {} message(s), alice {} bounce(s)",
                    b.new_messages(DAVE.address).len(),
                    a.new_messages(ALICE.address).len()
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dave = String::from_utf8_lossy(&b.new_messages(DAVE.address)[0]).into_owned();
    assert!(
        dave.contains("Subject: to postfix") && dave.contains("by mta.postfix.test"),
        "{dave}"
    );
    let bounce = String::from_utf8_lossy(&a.new_messages(ALICE.address)[0]).into_owned();
    assert!(
        bounce.contains("Final-Recipient: rfc822; refused@remote.test")
            && bounce.contains("Status: 5.7.1")
            && bounce.contains(
                "Diagnostic-Code: smtp; 550 5.7.1 <refused@remote.test>: Recipient address \
                 rejected: we do not want this"
            ),
        "{bounce}"
    );
    assert!(
        !bounce.contains("Final-Recipient: rfc822; greylist@"),
        "{bounce}"
    );
    let list = a.petrel(&["queue", "list"], b"");
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(
        listing.contains("greylist@remote.test: pending (450 4.7.1 ")
            && listing.contains("greylisted, try again later)"),
        "{listing}"
    );
    assert!(!listing.contains("dave@remote.test: pending"), "{listing}");
}
