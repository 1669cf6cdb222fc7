//! Migration between Dovecot and Petrel with the real Dovecot from Debian (tests/src/dovecot.rs):
//! a folder Dovecot made (its `dovecot-uidlist` and `dovecot-keywords`) keeps its UIDVALIDITY,
//! UIDs and keywords when Petrel opens it, and Dovecot pointed at a Petrel Maildir reads every
//! message, folder and flag.

use std::time::Duration;

use petrel_tests::{Dovecot, DovecotUser, run_with_timeout};

/// Runs a Python snippet (imaplib/poplib) with `args` as `sys.argv[1:]`; returns its stdout.
fn py(code: &str, args: &[String]) -> String {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(code).args(args);
    let done = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(done.success(), "python failed\n{}", done.describe());
    done.stdout
}

/// The harness itself: Dovecot starts, IMAP APPEND with a keyword lands in the chosen Maildir
/// (with Dovecot's uidlist and keywords files), POP3 lists the message, and drop stops it.
#[test]
fn harness_serves_imap_and_pop3_on_a_chosen_maildir() {
    let tmp = tempfile::tempdir().unwrap();
    let maildir = tmp.path().join("Maildir");
    let dovecot = Dovecot::start(&[DovecotUser::new("alice@example.test", "s3cret", &maildir)]);
    let out = py(
        r#"
import imaplib, poplib, sys
port, pop = int(sys.argv[1]), int(sys.argv[2])
m = imaplib.IMAP4('127.0.0.1', port)
m.login('alice@example.test', 's3cret')
typ, d = m.append('INBOX', '($Label1 \\Flagged)', None, b'Subject: hello\r\n\r\nhi\r\n')
print('APPEND', typ, d[0].decode())
m.select('INBOX')
print('FETCH', m.fetch('1', '(UID FLAGS)')[1][0].decode())
m.logout()
p = poplib.POP3('127.0.0.1', pop)
p.user('alice@example.test'); p.pass_('s3cret')
print('STAT', p.stat()[0])
p.quit()
"#,
        &[dovecot.imap_port.to_string(), dovecot.pop3_port.to_string()],
    );
    assert!(out.contains("APPEND OK"), "{out}\n{}", dovecot.log_tail(20));
    assert!(
        out.contains("$Label1") && out.contains("\\Flagged"),
        "{out}"
    );
    assert!(out.contains("STAT 1"), "{out}");
    assert!(maildir.join("dovecot-uidlist").exists());
    let keywords = std::fs::read_to_string(maildir.join("dovecot-keywords")).unwrap();
    assert!(keywords.contains("$Label1"), "{keywords}");
    let cur: Vec<_> = std::fs::read_dir(maildir.join("cur")).unwrap().collect();
    assert_eq!(cur.len(), 1);
}
