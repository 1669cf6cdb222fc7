//! `mbox_file::append` against software nobody here wrote: Python's `mailbox` module reads what
//! we write, and its locks (`fcntl.lockf` + dotlock) and ours exclude each other both ways.
//! Skipped, with a note on stderr, where `python3` is not installed.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use petrel_core::mbox::parse;
use petrel_store::mbox_file::{MboxAppend, append};

fn have_python() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 is not installed");
    }
    ok
}

/// Runs a Python script with the mbox path as `sys.argv[1]`; returns its stdout.
fn python(script: &str, path: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn options<'a>(sender: &'a str, flags: &'a str) -> MboxAppend<'a> {
    MboxAppend {
        sender,
        received: 1_795_619_560,
        flags,
        lock_timeout: Duration::from_secs(10),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    c.sort_unstable();
    c.into_iter().collect()
}

const READ_ALL: &str = r#"
import mailbox, sys
for m in mailbox.mbox(sys.argv[1]):
    payload = m.get_payload(decode=False)
    print(m["Subject"], "".join(sorted(m.get_flags())), m.get_from(), payload.encode().hex(), sep="|")
"#;

#[test]
fn python_mailbox_reads_messages_bodies_and_flags() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    let cases = [
        (
            "a@example.org",
            "FRS",
            "Subject: one\r\nStatus: O\r\n\r\nFrom the top\r\n>From quoted\r\nend\r\n",
        ),
        (
            "",
            "",
            "Subject: two\n\nplain body\nFrom: not a separator\n",
        ),
        (
            "c@example.org",
            "T",
            "Subject: three\r\nX-Status: F\r\n\r\nlast line without newline",
        ),
    ];
    for (sender, flags, message) in cases {
        append(&path, &options(sender, flags), &mut message.as_bytes()).unwrap();
    }
    let out = python(READ_ALL, &path);
    let lines: Vec<&str> = out.lines().collect();
    // Python's mbox reader does not undo `>From ` quoting (neither mboxo's nor mboxrd's): it
    // hands back the stored body, one more `>` on each `^>*From ` line; core's parser undoes it.
    let expected = [
        (
            "one",
            "AFOR",
            "a@example.org Wed Nov 25 15:12:40 2026",
            ">From the top\n>>From quoted\nend\n",
        ),
        (
            "two",
            "",
            "MAILER-DAEMON Wed Nov 25 15:12:40 2026",
            "plain body\nFrom: not a separator\n",
        ),
        (
            "three",
            "DO",
            "c@example.org Wed Nov 25 15:12:40 2026",
            "last line without newline\n",
        ),
    ];
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, (subject, flags, from, body)) in lines.iter().zip(expected) {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[..3], [subject, flags, from], "{line}");
        assert_eq!(fields[3], hex(body.as_bytes()), "{subject}: {line}");
    }
    // Our own reader, for contrast, gives back what was appended (CRLF lines).
    let ours = parse(&std::fs::read(&path).unwrap());
    assert_eq!(
        ours[0].message,
        b"Subject: one\r\n\r\nFrom the top\r\n>From quoted\r\nend\r\n"
    );
    assert_eq!(sorted(&ours[0].flags), "FRS");
}

const HOLD_MAILBOX_LOCK: &str = r#"
import mailbox, sys, time
mb = mailbox.mbox(sys.argv[1])
mb.lock()
mb.add(mailbox.mboxMessage("Subject: python\n\nwritten under mbox.lock()\n"))
mb.flush()
print("locked", flush=True)
time.sleep(1.0)
released = time.time()
mb.unlock()
mb.close()
print("released", repr(released), flush=True)
"#;

const HOLD_LOCKF_ONLY: &str = r#"
import fcntl, sys, time
with open(sys.argv[1], "rb+") as f:
    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked", flush=True)
    time.sleep(1.0)
    released = time.time()
    fcntl.lockf(f, fcntl.LOCK_UN)
    print("released", repr(released), flush=True)
"#;

/// Starts `script` holding a lock on `path`, appends while it holds it, and returns how long the
/// append took and how many seconds after the holder's release it finished.
fn append_while_python_holds(script: &str, path: &Path) -> (Duration, f64) {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "locked\n");
    let started = Instant::now();
    append(
        path,
        &options("rust@example.org", ""),
        &mut &b"Subject: rust\r\n\r\nwritten by petrel\r\n"[..],
    )
    .unwrap();
    let took = started.elapsed();
    let finished = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    let released: f64 = line
        .strip_prefix("released ")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    (took, finished - released)
}

#[test]
fn append_waits_for_python_mailbox_lock() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    append(
        &path,
        &options("first@example.org", ""),
        &mut &b"Subject: first\n\n"[..],
    )
    .unwrap();
    let (took, after_release) = append_while_python_holds(HOLD_MAILBOX_LOCK, &path);
    assert!(
        took >= Duration::from_millis(800),
        "append did not wait: {took:?}"
    );
    assert!(
        after_release >= 0.0,
        "append finished {after_release}s before Python released"
    );
    // Python's message, written under its lock, comes before ours, and Python reads all three.
    let subjects: Vec<String> = python(READ_ALL, &path)
        .lines()
        .map(|l| l.split('|').next().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, ["first", "python", "rust"]);
    assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 3);
    assert!(!dir.path().join("mbox.lock").exists());
}

#[test]
fn append_waits_for_a_bare_fcntl_lockf() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    std::fs::write(&path, b"").unwrap();
    // No dotlock this time: only the fcntl lock can make us wait.
    let (took, after_release) = append_while_python_holds(HOLD_LOCKF_ONLY, &path);
    assert!(
        took >= Duration::from_millis(800),
        "append did not wait: {took:?}"
    );
    assert!(
        after_release >= 0.0,
        "append finished {after_release}s before Python released"
    );
    assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 1);
}

/// A message that pauses in the middle until told to go on.
struct PausingReader {
    parts: Vec<&'static [u8]>,
    paused: Option<mpsc::Sender<()>>,
    resume: mpsc::Receiver<()>,
}

impl Read for PausingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.parts.len() == 1
            && let Some(paused) = self.paused.take()
        {
            paused.send(()).unwrap();
            self.resume.recv().unwrap();
        }
        let Some(part) = self.parts.first_mut() else {
            return Ok(0);
        };
        let n = buf.len().min(part.len());
        buf[..n].copy_from_slice(&part[..n]);
        *part = &part[n..];
        if part.is_empty() {
            self.parts.remove(0);
        }
        Ok(n)
    }
}

const TRY_LOCKS: &str = r#"
import errno, fcntl, mailbox, sys
with open(sys.argv[1], "rb+") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("lockf: free")
    except OSError as e:
        print("lockf: busy" if e.errno in (errno.EAGAIN, errno.EACCES) else "lockf: " + str(e))
mb = mailbox.mbox(sys.argv[1])
try:
    mb.lock()
    print("mbox.lock: free")
    mb.unlock()
except mailbox.ExternalClashError:
    print("mbox.lock: busy")
"#;

#[test]
fn python_cannot_lock_while_append_writes() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    std::fs::write(&path, b"").unwrap();
    let (paused_tx, paused_rx) = mpsc::channel();
    let (resume_tx, resume_rx) = mpsc::channel();
    let writer = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut reader = PausingReader {
                parts: vec![b"Subject: slow\r\n\r\nfirst half\r\n", b"second half\r\n"],
                paused: Some(paused_tx),
                resume: resume_rx,
            };
            append(&path, &options("slow@example.org", ""), &mut reader)
        }
    });
    paused_rx.recv().unwrap();
    let during = python(TRY_LOCKS, &path);
    resume_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(during, "lockf: busy\nmbox.lock: busy\n");
    let after = python(TRY_LOCKS, &path);
    assert_eq!(after, "lockf: free\nmbox.lock: free\n");
    let parsed = parse(&std::fs::read(&path).unwrap());
    assert_eq!(parsed.len(), 1);
    assert_eq!(
        parsed[0].message,
        b"Subject: slow\r\n\r\nfirst half\r\nsecond half\r\n"
    );
}

/// mutt (if installed) reads the file: driven through a pseudo-terminal by `script`, it tags
/// every message and copies them to a Maildir, where its reading of our `Status:`/`X-Status:`
/// shows up as Maildir flags and `new/` vs `cur/`.
#[test]
fn mutt_reads_messages_and_flags() {
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("mutt") || !found("script") {
        eprintln!("skipped: mutt or script (util-linux) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    assert!(!root.contains(['\'', '"', ' ', '\\']), "{root}");
    let path = dir.path().join("mbox");
    let cases = [
        (
            "a@example.org",
            "FRS",
            "Subject: one\r\nStatus: O\r\n\r\nFrom the top\r\n>From quoted\r\nend\r\n",
        ),
        ("", "", "Subject: two\n\nplain body\n"),
        (
            "c@example.org",
            "F",
            "Subject: three\r\n\r\nflagged, unread",
        ),
    ];
    for (sender, flags, message) in cases {
        append(&path, &options(sender, flags), &mut message.as_bytes()).unwrap();
    }
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let command = format!(
        "mutt -n -F /dev/null -R -f {root}/mbox \
         -e 'set folder={root} mbox_type=Maildir confirmcreate=no confirmappend=no sleep_time=0' \
         -e 'push \"<tag-pattern>~A<enter><tag-prefix><copy-message>{root}/out<enter><exit>\"'"
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", &home)
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "mutt: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mutt did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // (subject, Maildir subdirectory, flags in the name, body as mutt stored it)
    let mut copied = Vec::new();
    for sub in ["new", "cur"] {
        for entry in std::fs::read_dir(dir.path().join("out").join(sub)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let flags = name.split_once(":2,").map_or("", |(_, f)| f).to_owned();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let subject = text.lines().next().unwrap().to_owned();
            let body = text.split_once("\n\n").unwrap().1.to_owned();
            copied.push((subject, sub, flags, body));
        }
    }
    copied.sort();
    // Like Python, mutt does not undo `>From ` quoting when reading an mbox.
    assert_eq!(
        copied,
        [
            (
                "Subject: one".to_owned(),
                "cur",
                "FRS".to_owned(),
                ">From the top\n>>From quoted\nend\n".to_owned()
            ),
            (
                "Subject: three".to_owned(),
                "cur",
                "F".to_owned(),
                "flagged, unread\n".to_owned()
            ),
            (
                "Subject: two".to_owned(),
                "new",
                String::new(),
                "plain body\n".to_owned()
            ),
        ]
    );
}
