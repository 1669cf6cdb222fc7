//! A raw-socket SMTP client that keeps a transcript, for tests that need exact control of the
//! bytes on the wire (pipelining, smuggling, limits, byte-identical replies).

use std::fmt::{self, Display, Write as _};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default time to wait for one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// Logged client chunks longer than this are abbreviated in the transcript.
const LOG_LIMIT: usize = 400;

/// One complete SMTP reply (all its lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code of the reply.
    pub code: u16,
    /// The text of each line, after `NNN-` / `NNN `.
    pub lines: Vec<String>,
    /// The reply exactly as received, line terminators included.
    pub raw: Vec<u8>,
}

impl Reply {
    /// The text of the first line (after the code).
    pub fn first(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// The whole reply as one string (`NNN text` lines joined by `\n`).
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{} {l}", self.code))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether the reply matches `pattern`: a code prefix (`"5"`, `"55"`, `"550"`), optionally
    /// followed by a space and an enhanced-status prefix that the first line must start with
    /// (`"550 5.1.1"`), or `|`-separated alternatives (`"503|554"`).
    pub fn matches(&self, pattern: &str) -> bool {
        pattern.split('|').any(|alt| {
            let alt = alt.trim();
            let (code, rest) = match alt.split_once(' ') {
                Some((c, r)) => (c, Some(r)),
                None => (alt, None),
            };
            self.code.to_string().starts_with(code)
                && rest.is_none_or(|r| self.first().starts_with(r))
        })
    }

    /// For an EHLO reply: the line (after the code) whose first word is `keyword`
    /// (case-insensitive), skipping the greeting line.
    pub fn keyword(&self, keyword: &str) -> Option<&str> {
        self.lines.iter().skip(1).map(String::as_str).find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(keyword))
        })
    }
}

impl Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why no reply could be read.
#[derive(Debug)]
pub enum ReplyError {
    /// The server closed the connection (bytes of an incomplete line, if any).
    Eof(Vec<u8>),
    /// Nothing complete arrived in time.
    Timeout,
    /// A line that is not `NNN[ -]text`.
    Malformed(Vec<u8>),
    /// Another socket error (e.g. connection reset).
    Io(io::Error),
}

impl Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Eof(rest) if rest.is_empty() => f.write_str("connection closed by server"),
            ReplyError::Eof(rest) => {
                write!(f, "connection closed after partial line {}", escape(rest))
            }
            ReplyError::Timeout => f.write_str("timed out waiting for a reply"),
            ReplyError::Malformed(line) => write!(f, "malformed reply line {}", escape(line)),
            ReplyError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// Renders bytes for a transcript: printable ASCII as is, CR/LF/NUL and others escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Dot-stuffs a message for DATA and appends the terminator: a `.` is doubled at the start of
/// every line (after CRLF), a CRLF is added when the message does not end with one, then `.CRLF`.
pub fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    let mut line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && prev == b'\r';
        prev = b;
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What a server stores for `message` sent with DATA: the message itself, plus a CRLF when it
/// did not end with one (the line before the terminator always ends in CRLF on the wire).
pub fn stored_form(message: &[u8]) -> Vec<u8> {
    let mut out = message.to_vec();
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain TCP SMTP connection with a transcript of everything sent and received.
pub struct SmtpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    transcript: String,
    label: String,
}

impl SmtpConn {
    /// Connects to `127.0.0.1:port` (panics if that fails). Reads nothing.
    pub fn connect(port: u16) -> SmtpConn {
        match SmtpConn::try_connect(port) {
            Ok(c) => c,
            Err(e) => panic!("connect to 127.0.0.1:{port}: {e}"),
        }
    }

    /// Connects to `127.0.0.1:port`, returning the socket error if that fails.
    pub fn try_connect(port: u16) -> io::Result<SmtpConn> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(SmtpConn {
            stream,
            buf: Vec::new(),
            transcript: String::new(),
            label: format!("127.0.0.1:{port}"),
        })
    }

    /// Connects and checks that the greeting is a 220.
    pub fn greeted(port: u16) -> SmtpConn {
        let mut c = SmtpConn::connect(port);
        c.expect_reply("220");
        c
    }

    /// Connects, checks the 220 greeting and sends `EHLO client.example` (expects 250).
    pub fn ready(port: u16) -> SmtpConn {
        let mut c = SmtpConn::greeted(port);
        c.expect("EHLO client.example", "250");
        c
    }

    /// The underlying socket (for options such as `set_nodelay`).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sets how long [`SmtpConn::try_reply`] waits.
    pub fn set_timeout(&self, timeout: Duration) {
        let _ = self.stream.set_read_timeout(Some(timeout));
    }

    /// Everything sent (`C:`) and received (`S:`) so far.
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Adds a free-form note to the transcript.
    pub fn note(&mut self, note: impl Display) {
        let _ = writeln!(self.transcript, "-- {note}");
    }

    /// Panics with `msg` and the transcript.
    pub fn fail(&self, msg: impl Display) -> ! {
        panic!(
            "{msg}\n--- transcript with {} ---\n{}",
            self.label, self.transcript
        )
    }

    fn log_sent(&mut self, data: &[u8]) {
        let shown = if data.len() > LOG_LIMIT {
            format!(
                "{}...[{} bytes in all]...{}",
                escape(&data[..LOG_LIMIT / 2]),
                data.len(),
                escape(&data[data.len() - 60..])
            )
        } else {
            escape(data)
        };
        let _ = writeln!(self.transcript, "C: {shown}");
    }

    /// Writes bytes as they are; panics (with transcript) on a socket error.
    pub fn send(&mut self, data: &[u8]) {
        if let Err(e) = self.try_send(data) {
            self.fail(format!("write failed: {e}"));
        }
    }

    /// Writes bytes as they are, returning the socket error (the server may have closed).
    pub fn try_send(&mut self, data: &[u8]) -> io::Result<()> {
        self.log_sent(data);
        let r = self
            .stream
            .write_all(data)
            .and_then(|()| self.stream.flush());
        if let Err(e) = &r {
            let _ = writeln!(self.transcript, "-- write error: {e}");
        }
        r
    }

    /// Writes `line` followed by CRLF.
    pub fn send_line(&mut self, line: &str) {
        let mut data = line.as_bytes().to_vec();
        data.extend_from_slice(b"\r\n");
        self.send(&data);
    }

    /// Reads one raw line (up to and including LF) with the current timeout.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReplyError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(line);
            }
            if Instant::now() >= deadline {
                return Err(ReplyError::Timeout);
            }
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReplyError::Eof(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(ReplyError::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReplyError::Io(e)),
            }
        }
    }

    /// Reads one complete reply, or says why it could not.
    pub fn try_reply(&mut self) -> Result<Reply, ReplyError> {
        let timeout = self
            .stream
            .read_timeout()
            .ok()
            .flatten()
            .unwrap_or(REPLY_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let mut raw = Vec::new();
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = match self.read_line(deadline) {
                Ok(l) => l,
                Err(e) => {
                    if !raw.is_empty() {
                        let _ = writeln!(self.transcript, "S: {}", escape(&raw));
                    }
                    let _ = writeln!(self.transcript, "-- {e}");
                    return Err(e);
                }
            };
            raw.extend_from_slice(&line);
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            let digits_ok = body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit);
            let sep = body.get(3).copied();
            if !digits_ok || !matches!(sep, None | Some(b' ') | Some(b'-')) {
                let _ = writeln!(self.transcript, "S: {}", escape(&raw));
                let _ = writeln!(self.transcript, "-- malformed reply line");
                return Err(ReplyError::Malformed(line));
            }
            let this_code: u16 = std::str::from_utf8(&body[..3])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if *code.get_or_insert(this_code) != this_code {
                let _ = writeln!(self.transcript, "S: {}", escape(&raw));
                let _ = writeln!(
                    self.transcript,
                    "-- reply code changed inside a multi-line reply"
                );
                return Err(ReplyError::Malformed(line));
            }
            let text = body.get(4..).unwrap_or(&[]);
            lines.push(String::from_utf8_lossy(text).into_owned());
            if sep != Some(b'-') {
                let shown = escape(&raw);
                let _ = writeln!(self.transcript, "S: {shown}");
                return Ok(Reply {
                    code: this_code,
                    lines,
                    raw,
                });
            }
        }
    }

    /// Reads one complete reply; panics (with transcript) if there is none.
    pub fn reply(&mut self) -> Reply {
        match self.try_reply() {
            Ok(r) => r,
            Err(e) => self.fail(format!("expected a reply: {e}")),
        }
    }

    /// Checks a reply against a pattern (see [`Reply::matches`]); panics with transcript if not.
    pub fn check(&self, reply: &Reply, pattern: &str) {
        if !reply.matches(pattern) {
            self.fail(format!(
                "expected a reply matching {pattern:?}, got {:?}",
                reply.text()
            ));
        }
    }

    /// Reads one reply and checks it against `pattern`.
    pub fn expect_reply(&mut self, pattern: &str) -> Reply {
        let r = self.reply();
        self.check(&r, pattern);
        r
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send_line(line);
        self.reply()
    }

    /// Sends `line` + CRLF, reads the reply and checks it against `pattern`.
    pub fn expect(&mut self, line: &str, pattern: &str) -> Reply {
        self.send_line(line);
        self.expect_reply(pattern)
    }

    /// Runs MAIL / RCPT... / DATA, each expected to succeed, sends the dot-stuffed message and
    /// returns the final reply (not checked).
    pub fn send_mail(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Reply {
        self.expect(&format!("MAIL FROM:<{from}>"), "250");
        for rcpt in rcpts {
            self.expect(&format!("RCPT TO:<{rcpt}>"), "25");
        }
        self.expect("DATA", "354");
        self.send(&data_payload(message));
        self.reply()
    }

    /// Like [`SmtpConn::send_mail`], and checks the final reply is `250 2.0.0 ... queued as ...`.
    pub fn deliver(&mut self, from: &str, rcpts: &[&str], message: &[u8]) -> Reply {
        let r = self.send_mail(from, rcpts, message);
        self.check(&r, "250 2.0.0");
        if !r.text().contains("queued as ") {
            self.fail(format!(
                "final DATA reply lacks `queued as ID`: {:?}",
                r.text()
            ));
        }
        r
    }

    /// Sends QUIT and expects 221 followed by the server closing the connection.
    pub fn quit(&mut self) {
        self.expect("QUIT", "221");
        self.expect_closed(Duration::from_secs(5));
    }

    /// Waits until the server closes the connection; panics if more replies or data arrive or the
    /// connection is still open after `within`.
    pub fn expect_closed(&mut self, within: Duration) {
        match self.wait_closed(within) {
            Ok(extra) if extra.is_empty() => {}
            Ok(extra) => self.fail(format!(
                "expected the connection to close, but received {}",
                escape(&extra)
            )),
            Err(e) => self.fail(format!("expected the connection to close: {e}")),
        }
    }

    /// Reads until EOF (or a reset) for at most `within`; returns the bytes received meanwhile.
    pub fn wait_closed(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        let mut extra = std::mem::take(&mut self.buf);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = writeln!(self.transcript, "S: {}", escape(&extra));
                return Err(format!("still open after {within:?}"));
            }
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => extra.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.stream.set_read_timeout(Some(REPLY_TIMEOUT));
        if !extra.is_empty() {
            let _ = writeln!(self.transcript, "S: {}", escape(&extra));
        }
        let _ = writeln!(self.transcript, "-- connection closed by server");
        Ok(extra)
    }
}
