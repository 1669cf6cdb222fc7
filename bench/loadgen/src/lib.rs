//! Shared pieces of the load generators in `src/bin/`: argument parsing, latency statistics and
//! a minimal blocking IMAP client. Nothing here uses Petrel's own code, so the generators measure
//! Petrel and Dovecot the same way.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `--key value` pairs and bare `--flag`s from the command line.
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args()`; every option is `--name value`.
    pub fn parse() -> Args {
        let mut values = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                die(&format!("unexpected argument {a:?}"));
            };
            let v = it
                .next()
                .unwrap_or_else(|| die(&format!("--{name} needs a value")));
            values.insert(name.to_string(), v);
        }
        Args { values }
    }

    /// The value of `--name`, or exit 2 naming it.
    pub fn req(&self, name: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| die(&format!("--{name} is required")))
    }

    /// The value of `--name` parsed as `T`, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.values.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{name}: cannot parse {v:?}"))),
        }
    }

    /// The value of `--name` as a socket address.
    pub fn addr(&self, name: &str) -> SocketAddr {
        let v = self.req(name);
        v.parse()
            .unwrap_or_else(|_| die(&format!("--{name}: not an address: {v:?}")))
    }
}

/// Prints `msg` on stderr and exits with status 2.
pub fn die(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

/// Latency samples in microseconds.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<u64>);

impl Samples {
    /// Records one duration.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    /// The `p` quantile (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 * p) as usize).min(self.0.len() - 1);
        self.0[i] as f64 / 1000.0
    }
}

/// A blocking IMAP client that counts what it reads; enough for load, not a parser.
pub struct Imap {
    // One descriptor per connection (no try_clone): 10,000 idle connections must fit the
    // process's descriptor limit; writes go through `reader.get_ref()`.
    reader: BufReader<TcpStream>,
    tag: u64,
    line: Vec<u8>,
}

/// What a tagged command returned.
pub struct Reply {
    /// Whether the tagged status was OK.
    pub ok: bool,
    /// The untagged lines (without CRLF; literals are skipped and not included).
    pub untagged: Vec<String>,
    /// The tagged status line.
    pub status: String,
}

impl Imap {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Imap> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut c = Imap {
            reader: BufReader::with_capacity(64 * 1024, stream),
            tag: 0,
            line: Vec::new(),
        };
        let g = c.read_line()?;
        if !g.starts_with("* OK") {
            return Err(other(format!("greeting: {g}")));
        }
        Ok(c)
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Err(other("connection closed".into()));
        }
        // Skip a literal announced at the end of the line, then continue the line after it.
        loop {
            let l = trim_crlf(&self.line);
            let Some(size) = literal_size(l) else { break };
            let mut left = size;
            let mut sink = [0u8; 16 * 1024];
            while left > 0 {
                let k = self.reader.read(&mut sink[..left.min(16 * 1024)])?;
                if k == 0 {
                    return Err(other("closed inside a literal".into()));
                }
                left -= k;
            }
            let keep = l.len();
            self.line.truncate(keep);
            self.line.extend_from_slice(b" ");
            let mut rest = Vec::new();
            self.reader.read_until(b'\n', &mut rest)?;
            self.line.extend_from_slice(&rest);
        }
        Ok(String::from_utf8_lossy(trim_crlf(&self.line)).into_owned())
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w: &TcpStream = self.reader.get_ref();
        w.write_all(bytes)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    /// Sends `command` and reads up to its tagged reply.
    pub fn cmd(&mut self, command: &str) -> std::io::Result<Reply> {
        let tag = self.next_tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        self.finish(&tag)
    }

    fn finish(&mut self, tag: &str) -> std::io::Result<Reply> {
        let mut untagged = Vec::new();
        loop {
            let l = self.read_line()?;
            if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                return Ok(Reply {
                    ok: rest.starts_with("OK"),
                    untagged,
                    status: l.clone(),
                });
            }
            untagged.push(l);
        }
    }

    /// Sends `command`, which must end in a synchronizing literal `{n}`, waits for the
    /// continuation, sends `literal` and reads the tagged reply.
    pub fn cmd_literal(&mut self, command: &str, literal: &[u8]) -> std::io::Result<Reply> {
        let tag = self.next_tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        loop {
            let l = self.read_line()?;
            if l.starts_with('+') {
                break;
            }
            if l.starts_with(&tag) {
                return Ok(Reply {
                    ok: false,
                    untagged: Vec::new(),
                    status: l,
                });
            }
        }
        self.send(literal)?;
        self.send(b"\r\n")?;
        self.finish(&tag)
    }

    /// IDLE, wait for the continuation, DONE, tagged reply.
    pub fn idle_done(&mut self) -> std::io::Result<Reply> {
        self.idle_start()?;
        self.idle_finish()
    }

    /// Sends IDLE and waits for the continuation; the connection then idles until
    /// [`Imap::idle_finish`].
    pub fn idle_start(&mut self) -> std::io::Result<()> {
        let tag = self.next_tag();
        self.send(format!("{tag} IDLE\r\n").as_bytes())?;
        loop {
            let l = self.read_line()?;
            if l.starts_with('+') {
                return Ok(());
            }
            if l.starts_with(&tag) {
                return Err(other(format!("IDLE refused: {l}")));
            }
        }
    }

    /// Sends DONE and reads the IDLE command's tagged reply.
    pub fn idle_finish(&mut self) -> std::io::Result<Reply> {
        self.send(b"DONE\r\n")?;
        let tag = format!("a{}", self.tag);
        self.finish(&tag)
    }

    /// How long a read may wait before the command fails with a timeout (60 s by default).
    pub fn set_timeout(&mut self, limit: Duration) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(limit))
    }

    /// LOGIN, failing unless OK.
    pub fn login(&mut self, user: &str, pass: &str) -> std::io::Result<()> {
        let r = self.cmd(&format!("LOGIN \"{user}\" \"{pass}\""))?;
        if r.ok {
            Ok(())
        } else {
            Err(other(format!("LOGIN {user}: {}", r.status)))
        }
    }
}

fn other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

fn trim_crlf(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// `{123}` at the end of a line: the literal's size.
fn literal_size(l: &[u8]) -> Option<usize> {
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    let digits = l[open + 1..].strip_suffix(b"+").unwrap_or(&l[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Elapsed time of `f`, with its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// A 4 KiB-ish RFC 5322 message with `subject`, CRLF line ends, `size` bytes long at least.
pub fn message(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bench <bench@remote.example>\r\nTo: user@example.test\r\nSubject: {subject}\r\n\
         Date: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@bench>\r\n\r\n"
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}
