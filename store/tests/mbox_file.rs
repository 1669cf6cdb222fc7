//! `mbox_file::append` under concurrency (threads of one process, and several processes) and
//! with a message too big to buffer.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use petrel_core::mbox::parse;
use petrel_store::mbox_file::{MboxAppend, append};

const PER_WRITER: usize = 25;

fn message(writer: &str, i: usize) -> Vec<u8> {
    format!("Subject: {writer} {i}\r\nStatus: RO\r\n\r\nFrom {writer}\r\n>From {i}\r\nend\r\n")
        .into_bytes()
}

fn append_many(path: &Path, writer: &str) {
    for i in 0..PER_WRITER {
        let options = MboxAppend {
            sender: "sender@example.org",
            received: 1_795_619_560 + i as u64,
            flags: if i.is_multiple_of(2) { "S" } else { "" },
            lock_timeout: Duration::from_secs(60),
        };
        append(path, &options, &mut &message(writer, i)[..]).unwrap();
    }
}

/// Every writer's messages are there once each, intact, in the writer's own order.
fn check(path: &Path, writers: &[String]) {
    let file = std::fs::read(path).unwrap();
    let parsed = parse(&file);
    assert_eq!(parsed.len(), writers.len() * PER_WRITER);
    for writer in writers {
        let mine: Vec<_> = parsed
            .iter()
            .filter(|m| {
                m.message
                    .starts_with(format!("Subject: {writer} ").as_bytes())
            })
            .collect();
        assert_eq!(mine.len(), PER_WRITER, "{writer}");
        for (i, m) in mine.iter().enumerate() {
            let body =
                format!("Subject: {writer} {i}\r\n\r\nFrom {writer}\r\n>From {i}\r\nend\r\n");
            assert_eq!(String::from_utf8_lossy(&m.message), body);
            assert_eq!(m.flags, if i.is_multiple_of(2) { "S" } else { "" });
            assert_eq!(m.date, Some(1_795_619_560 + i as i64));
        }
    }
    // Each message is one `From ` line, and the quoted lines stayed quoted once more.
    let text = String::from_utf8(file).unwrap();
    assert_eq!(
        text.matches("\nFrom sender@example.org ").count() + 1,
        parsed.len()
    );
    assert_eq!(text.matches("\n>From w").count(), parsed.len());
    assert_eq!(text.matches("\n>>From ").count(), parsed.len());
    assert!(!PathBuf::from(format!("{}.lock", path.display())).exists());
}

#[test]
fn eight_threads_append_two_hundred_well_formed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    let writers: Vec<String> = (0..8).map(|t| format!("w{t}")).collect();
    std::thread::scope(|s| {
        for writer in &writers {
            s.spawn(|| append_many(&path, writer));
        }
    });
    check(&path, &writers);
}

/// Run as a child process by the test below (does nothing otherwise).
#[test]
fn child_appender() {
    let (Ok(path), Ok(name)) = (
        std::env::var("PETREL_MBOX_CHILD_PATH"),
        std::env::var("PETREL_MBOX_CHILD_NAME"),
    ) else {
        return;
    };
    let path = PathBuf::from(path);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (path, name) = (&path, &name);
            s.spawn(move || append_many(path, &format!("{name}t{t}")));
        }
    });
}

#[test]
fn four_processes_of_two_threads_append_two_hundred_well_formed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|p| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_appender", "--test-threads", "1"])
                .env("PETREL_MBOX_CHILD_PATH", &path)
                .env("PETREL_MBOX_CHILD_NAME", format!("w{p}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let writers: Vec<String> = (0..4)
        .flat_map(|p| (0..2).map(move |t| format!("w{p}t{t}")))
        .collect();
    check(&path, &writers);
}

/// A 50 MB message made up on the fly, 64-byte lines with a `From ` line every 100.
struct BigMessage {
    line: usize,
    lines: usize,
    pending: Vec<u8>,
}

impl Read for BigMessage {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.len() < buf.len() && self.line < self.lines {
            if self.line == 0 {
                self.pending.extend_from_slice(b"Subject: big\r\n\r\n");
            } else if self.line.is_multiple_of(100) {
                self.pending
                    .extend_from_slice(format!("From {:057}\r\n", self.line).as_bytes());
            } else {
                self.pending
                    .extend_from_slice(format!("{:062}\r\n", self.line).as_bytes());
            }
            self.line += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn a_fifty_megabyte_message_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mbox");
    let lines = 50 * 1024 * 1024 / 64;
    let mut big = BigMessage {
        line: 0,
        lines,
        pending: Vec::new(),
    };
    let options = MboxAppend {
        sender: "big@example.org",
        received: 0,
        flags: "",
        lock_timeout: Duration::from_secs(5),
    };
    let written = append(&path, &options, &mut big).unwrap();
    let from_line = "From big@example.org Thu Jan  1 00:00:00 1970\n".len();
    let quoted = (lines - 1) / 100;
    // Header block (CRLF -> LF saves one byte a line), body lines, quotes, final empty line.
    let expected = from_line + "Subject: big\n\n".len() + (lines - 1) * 63 + quoted + 1;
    assert_eq!(written as usize, expected);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
}
