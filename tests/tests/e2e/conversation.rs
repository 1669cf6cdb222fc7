//! One core, two pumps: the same scripted conversation gets byte-identical replies from both
//! runtimes (after masking `queued as ID`).

use std::time::Duration;

use petrel_tests::client::escape;
use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, contains};

/// The script: each entry is written in one piece, then exactly one reply is read.
fn script() -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = Vec::new();
    let mut cmd = |b: &[u8]| s.push(b.to_vec());
    cmd(b"EHLO client.example\r\n");
    cmd(b"FOOBAR\r\n");
    cmd(b"MAIL FROM:bad-syntax\r\n");
    cmd(b"RCPT TO:<alice@example.test>\r\n");
    cmd(b"DATA\r\n");
    cmd(format!("NOOP {}\r\n", "x".repeat(600)).as_bytes());
    cmd(b"MAIL FROM:<sender@remote.example> SIZE=99999999\r\n");
    cmd(b"MAIL FROM:<sender@remote.example> FOO=BAR\r\n");
    cmd(b"MAIL FROM:<sender@remote.example> BODY=8BITMIME\r\n");
    cmd(b"MAIL FROM:<sender@remote.example>\r\n");
    cmd(b"RCPT TO:<nobody@example.test>\r\n");
    cmd(b"RCPT TO:<someone@remote.example>\r\n");
    cmd(b"RCPT TO:<alice%evil.example@example.test>\r\n");
    cmd(b"RCPT TO:<alice@example.test>\r\n");
    cmd(b"DATA\r\n");
    cmd(b"Subject: conversation\r\n\r\n..dot\r\nbare\nLF\r\n.\r\n");
    cmd(b"RSET\r\n");
    cmd(b"VRFY alice@example.test\r\n");
    cmd(b"EXPN staff\r\n");
    cmd(b"NOOP\r\n");
    cmd(b"HELP\r\n");
    cmd(b"BDAT 4\r\nabcd");
    cmd(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==\r\n");
    cmd(b"HELO client.example\r\n");
    cmd(b"MAIL FROM:<>\r\n");
    cmd(b"RCPT TO:<bob@example.test>\r\n");
    cmd(b"BDAT 7\r\nSubject");
    cmd(b"DATA\r\n");
    cmd(b"BDAT 11 LAST\r\n: x\r\n\r\nbody");
    cmd(b"MAIL FROM:<sender@remote.example>\r\n");
    cmd(b"RCPT TO:<carol@other.test>\r\n");
    cmd(b"RSET\r\n");
    cmd(b"EHLO\r\n");
    cmd(b"HELO\r\n");
    cmd(b"QUIT\r\n");
    s
}

/// Replaces the id after every `queued as ` by `<ID>`.
fn mask(raw: &[u8]) -> Vec<u8> {
    let needle = b"queued as ";
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(needle) {
            out.extend_from_slice(needle);
            i += needle.len();
            while i < raw.len() && !raw[i].is_ascii_whitespace() {
                i += 1;
            }
            out.extend_from_slice(b"<ID>");
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Runs the script against a fresh server; returns the masked replies (one per step, the
/// greeting first, the bytes after QUIT's reply last) and the transcript.
fn converse(rt: Runtime) -> (Vec<Vec<u8>>, String) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::connect(s.port(Listener::Smtp));
    let mut replies = vec![mask(&c.reply().raw)];
    for bytes in script() {
        c.send(&bytes);
        replies.push(mask(&c.reply().raw));
    }
    let tail = c
        .wait_closed(Duration::from_secs(5))
        .unwrap_or_else(|e| c.fail(e));
    replies.push(tail);
    (replies, c.transcript().to_string())
}

#[test]
fn same_conversation_same_replies_on_both_runtimes() {
    let smol = std::thread::spawn(|| converse(Runtime::Smol));
    let blocking = std::thread::spawn(|| converse(Runtime::Blocking));
    let (a, ta) = smol.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    let (b, tb) = blocking
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    let joined = a.concat();
    for needle in [
        &b"220 mail.test.example"[..],
        b"354",
        b"250 2.0.0",
        b"queued as <ID>",
        b"221",
    ] {
        assert!(
            contains(&joined, needle),
            "conversation lacks {:?}:\n{ta}",
            escape(needle)
        );
    }
    if a != b {
        let step = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "replies differ between runtimes first at step {step}:\n  smol:     {}\n  blocking: {}\n\
             --- smol transcript ---\n{ta}\n--- blocking transcript ---\n{tb}",
            a.get(step).map(|r| escape(r)).unwrap_or_default(),
            b.get(step).map(|r| escape(r)).unwrap_or_default(),
        );
    }
}
