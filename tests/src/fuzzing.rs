//! Fuzz target logic, shared by `cargo fuzz` (the wrappers in `fuzz/fuzz_targets/`) and by the
//! plain regression test `tests/tests/fuzz_regression.rs`, so every CI run exercises the same code
//! over the seed corpus and a seeded generator without needing cargo-fuzz.
//!
//! Every function takes arbitrary bytes and panics only when it finds a bug: a panic in the code
//! under test, a broken invariant (split-independence, round-trips, reply grammar, bounded
//! buffers) or a session that never ends. [`TARGETS`] lists them by the name of their fuzz target;
//! [`seeds`] gives each one a seed corpus built from the transcripts the unit tests use.

// A fuzzed session needs one real instant as its epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::line::{Line, LineReader, MAX_LINE};
use petrel_core::sasl;
use petrel_core::smtp::address::{Address, Domain, parse_domain, parse_mailbox, parse_path};
use petrel_core::smtp::command::{Command, parse};
use petrel_core::smtp::data::{DataReceiver, dot_stuff};
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::{
    Action, AuthOutcome, Completion, Effect, ErrorClass, PeerInfo, Pump, Receipt, RecipientOutcome,
    Service, StoreError, TlsInfo, TxId, UserId, WallClock,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fuzz target: its `cargo fuzz` name and the function that checks one input.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, by the name of its file in `fuzz/fuzz_targets/`.
pub const TARGETS: &[Target] = &[
    ("smtp_command", smtp_command),
    ("smtp_path", smtp_path),
    ("smtp_data_any_split", smtp_data_any_split),
    ("smtp_line_reader", smtp_line_reader),
    ("sasl", sasl),
    ("smtp_session", smtp_session),
];

/// A small deterministic generator (splitmix64), for splits derived from fuzz input and for the
/// regression test's random inputs.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// The first `n` bytes of `data` as header (zero-padded) and the rest.
fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut h = [0u8; N];
    let n = data.len().min(N);
    h[..n].copy_from_slice(&data[..n]);
    (h, &data[n..])
}

/// Cuts `len` bytes into chunk lengths: mode 0 is one piece, 1 is single bytes, 2 small pieces,
/// 3 larger ones; all from `rng`.
fn chunk_len(mode: u8, rng: &mut SplitMix, left: usize) -> usize {
    let n = match mode % 4 {
        0 => left,
        1 => 1,
        2 => rng.range(1, 16),
        _ => rng.range(1, 4096),
    };
    n.clamp(1, left.max(1))
}

/// `parse(line, utf8)` on any bytes: never panics, error codes are 5xx, SMTPUTF8 only widens what
/// is accepted, and parsed values respect their grammar.
pub fn smtp_command(data: &[u8]) {
    let ascii = parse(data, false);
    let utf8 = parse(data, true);
    for result in [&ascii, &utf8] {
        match result {
            Err(e) => {
                assert!((500..=555).contains(&e.code), "bad code {e:?}");
                assert!(e.status.starts_with("5."), "bad status {e:?}");
            }
            Ok(Command::Ehlo(name) | Command::Helo(name)) => {
                assert!(!name.is_empty() && name.len() <= 255);
                assert!(
                    !name.contains([' ', '\r', '\n', '\0', '<', '>']),
                    "{name:?}"
                );
            }
            Ok(Command::Auth { mechanism, initial }) => {
                assert!(!mechanism.is_empty() && !mechanism.contains(' '));
                assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
                assert!(initial.as_ref().is_none_or(|i| !i.is_empty()));
            }
            Ok(Command::Rcpt(a)) => check_address(a),
            Ok(_) => {}
        }
    }
    if let Ok(cmd) = &ascii {
        assert_eq!(
            Ok(cmd),
            utf8.as_ref(),
            "SMTPUTF8 changed an accepted command"
        );
    }
}

/// Invariants of any parsed address.
fn check_address(a: &Address) {
    assert!(!a.local.is_empty() && a.local.len() <= 64, "{a:?}");
    match &a.domain {
        Domain::Name(n) => {
            assert!(!n.is_empty() && !n.ends_with('.'), "{a:?}");
            assert_eq!(n, &n.to_lowercase(), "{a:?}");
        }
        Domain::Literal(l) => assert!(!l.is_empty() && !l.contains(['[', ']']), "{a:?}"),
    }
}

/// `parse_path`, `parse_mailbox` and `parse_domain` on any UTF-8: never panic, the returned rest
/// is a suffix of the input, and a parsed mailbox prints to text that parses back to itself.
pub fn smtp_path(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for utf8 in [false, true] {
        if let Ok((addr, rest)) = parse_path(s, utf8) {
            assert!(s.ends_with(rest), "rest {rest:?} is not a suffix of {s:?}");
            assert!(rest.is_empty() || rest.starts_with(' '), "{rest:?}");
            if let Some(a) = addr {
                check_address(&a);
                if !utf8 {
                    assert!(a.local.is_ascii(), "non-ASCII accepted without SMTPUTF8");
                }
                round_trip(&a);
            }
        }
    }
    if let Ok(a) = parse_mailbox(s) {
        check_address(&a);
        round_trip(&a);
    }
    if let Ok(d) = parse_domain(s) {
        // A domain prints as itself (names are already lowercased).
        let again = parse_domain(&d.to_string());
        assert_eq!(again.as_ref(), Ok(&d), "domain {s:?} does not round-trip");
    }
}

/// `Display` of a parsed address parses back to the same address.
fn round_trip(a: &Address) {
    let text = a.to_string();
    let again = parse_mailbox(&text).unwrap_or_else(|e| panic!("{a:?} printed as {text:?}: {e:?}"));
    assert_eq!(again.local, a.local, "{text:?}");
    assert_eq!(again.domain, a.domain, "{text:?}");
    // A mailbox may be longer than a path may be (64 + 255 > 256): no path round trip then.
    if text.len() > 256 {
        return;
    }
    let bracketed = format!("<{text}>");
    let (path, rest) =
        parse_path(&bracketed, true).unwrap_or_else(|e| panic!("path {bracketed:?}: {e:?}"));
    assert_eq!(rest, "");
    assert_eq!(path.as_ref().map(|p| &p.local), Some(&a.local));
}

/// Decodes `wire` with a [`DataReceiver`], offering `chunk`-sized reads and draining the output
/// every time it reaches `limit`. Returns the message, bytes consumed, end seen, long line seen.
fn decode(wire: &[u8], mode: u8, seed: u64, limit: usize) -> (Vec<u8>, usize, bool, bool) {
    let mut rng = SplitMix::new(seed);
    let mut rx = DataReceiver::new();
    let mut message = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let end = pos + chunk_len(mode, &mut rng, wire.len() - pos);
        while pos < end {
            let (n, done) = rx.feed(&wire[pos..end], &mut out, limit);
            assert!(n <= end - pos, "consumed more than offered");
            assert!(n > 0 || done, "no progress with an empty output buffer");
            assert!(
                out.len() <= limit.saturating_add(1),
                "output grew past the limit"
            );
            pos += n;
            message.append(&mut out);
            if done {
                return (message, pos, true, rx.saw_long_line());
            }
        }
    }
    (message, pos, false, rx.saw_long_line())
}

/// The DATA decoder gives the same result for any split of its input and any output limit, and
/// undoes [`dot_stuff`] exactly. The first three bytes choose the splits and limit.
pub fn smtp_data_any_split(data: &[u8]) {
    let ([mode, seed, limit], wire) = header::<3>(data);
    let whole = decode(wire, 0, 0, usize::MAX);
    let split = decode(wire, mode, u64::from(seed), 1 + usize::from(limit));
    assert_eq!(
        whole, split,
        "split {mode}/{seed}/{limit} changed the decoding"
    );
    assert!(whole.0.len() <= whole.1);

    // Round trip: the rest of the input as a message, as a client would send it.
    let mut msg = wire.to_vec();
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        msg.extend_from_slice(b"\r\n");
    }
    let mut stuffed = Vec::new();
    dot_stuff(wire, &mut stuffed);
    let body_len = stuffed.len();
    stuffed.extend_from_slice(b"QUIT\r\n");
    let (out, used, done, _) = decode(&stuffed, mode, u64::from(seed), 1 + usize::from(limit));
    assert!(done, "stuffed data did not end");
    assert_eq!(
        used, body_len,
        "the terminator was not where dot_stuff put it"
    );
    assert_eq!(out, msg, "dot_stuff then decode is not the identity");
}

/// What [`LineReader`] must report for `input`: lines without their LF and one CR before it,
/// over-long lines as `TooLong`, with runs of `TooLong` merged.
fn line_model(input: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut segments = input.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(seg) = segments.next() {
        let complete = seg.ends_with(b"\n");
        if seg.len() > MAX_LINE {
            lines.push(Line::TooLong);
        } else if complete {
            let mut l = seg[..seg.len() - 1].to_vec();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            lines.push(Line::Complete(l));
        }
        debug_assert!(complete || segments.peek().is_none());
    }
    merge_too_long(lines)
}

fn merge_too_long(lines: Vec<Line>) -> Vec<Line> {
    let mut merged: Vec<Line> = Vec::new();
    for l in lines {
        if !(l == Line::TooLong && merged.last() == Some(&Line::TooLong)) {
            merged.push(l);
        }
    }
    merged
}

/// [`LineReader`] in any split yields exactly the lines of a simple model, always makes progress
/// and never holds more than [`MAX_LINE`] bytes. The first two bytes choose the split.
pub fn smtp_line_reader(data: &[u8]) {
    let ([mode, seed], input) = header::<2>(data);
    let mut rng = SplitMix::new(u64::from(seed));
    let mut reader = LineReader::default();
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let end = pos + chunk_len(mode, &mut rng, input.len() - pos);
        while pos < end {
            let (n, line) = reader.read(&input[pos..end]);
            assert!(
                n > 0 && n <= end - pos,
                "read consumed {n} of {}",
                end - pos
            );
            assert!(
                reader.buffered() <= MAX_LINE,
                "{} bytes buffered",
                reader.buffered()
            );
            if let Some(Line::Complete(l)) = &line {
                assert!(l.len() <= MAX_LINE && !l.contains(&b'\n'));
            }
            lines.extend(line);
            pos += n;
        }
    }
    assert_eq!(merge_too_long(lines), line_model(input));
}

/// SASL decoding and PLAIN/LOGIN parsing: never panic, base64 round-trips, and parsed credentials
/// respect their grammar.
pub fn sasl(data: &[u8]) {
    if let Ok(line) = std::str::from_utf8(data)
        && let Ok(raw) = sasl::decode_response(line)
    {
        check_credentials(&raw);
    }
    check_credentials(data);
    let encoded = sasl::encode_challenge(data);
    if encoded.len() <= sasl::MAX_RESPONSE && !data.is_empty() {
        assert_eq!(sasl::decode_response(&encoded).as_deref(), Ok(data));
    }
}

fn check_credentials(raw: &[u8]) {
    if let Ok(c) = sasl::parse_plain(raw) {
        assert!(!c.username.is_empty() && !c.username.contains('\0'));
        assert!(!c.password.is_empty() && !c.password.contains(&0));
    }
    if let Ok(u) = sasl::parse_login_username(raw) {
        assert!(!u.is_empty() && !u.contains('\0'));
    }
}

#[derive(Debug)]
struct FixedClock;

impl WallClock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920
    }
}

/// An in-memory store for fuzzed sessions: users alice and bob in `example.test` (password
/// `pw`); each kind of request fails every other time when its bit of `fail` is set.
#[derive(Debug, Default)]
struct FakeStore {
    fail: u8,
    calls: u64,
    open: BTreeMap<u64, Vec<u8>>,
    next: u64,
    delivered: usize,
}

impl FakeStore {
    fn fails(&mut self, bit: u8) -> bool {
        self.calls += 1;
        self.fail & (1 << bit) != 0 && self.calls.is_multiple_of(2)
    }

    fn execute(&mut self, effect: Effect) -> Completion {
        let temp = || {
            Completion::Failed(StoreError {
                class: ErrorClass::Temporary,
                message: "fuzz".into(),
            })
        };
        match effect {
            Effect::Authenticate { username, password } => {
                if self.fails(0) {
                    return Completion::Auth(AuthOutcome::TempFail);
                }
                let ok = username == "alice@example.test" && password.expose() == b"pw";
                Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                })
            }
            Effect::LookupRecipient { address } => {
                if self.fails(1) {
                    return Completion::Recipient(RecipientOutcome::TempFail);
                }
                let local = address.local.to_lowercase();
                let base = local.split('+').next().unwrap_or("").to_string();
                Completion::Recipient(if base == "alice" || base == "bob" {
                    RecipientOutcome::Local(UserId(format!("{base}@example.test")))
                } else {
                    RecipientOutcome::Unknown
                })
            }
            Effect::BeginMessage { envelope, trace } => {
                assert!(
                    !envelope.recipients.is_empty(),
                    "message without recipients"
                );
                if self.fails(2) {
                    return temp();
                }
                self.next += 1;
                self.open.insert(self.next, trace);
                Completion::Began(TxId(self.next))
            }
            Effect::AppendChunk { tx, bytes } => {
                assert!(self.open.contains_key(&tx.0), "append to unknown {tx:?}");
                if self.fails(3) {
                    return temp();
                }
                if let Some(m) = self.open.get_mut(&tx.0) {
                    m.extend_from_slice(&bytes);
                }
                Completion::Appended
            }
            Effect::Commit { tx, .. } => {
                // The transaction ends here whatever the outcome: like the real store, a failed
                // commit cleans up after itself, and the session does not abort it.
                assert!(
                    self.open.remove(&tx.0).is_some(),
                    "commit of unknown {tx:?}"
                );
                if self.fails(4) {
                    return temp();
                }
                self.delivered += 1;
                Completion::Durable(Receipt::durable(tx))
            }
            Effect::Abort { tx } => {
                assert!(self.open.remove(&tx.0).is_some(), "abort of unknown {tx:?}");
                Completion::Aborted
            }
            other => panic!("unexpected effect {other:?}"),
        }
    }
}

/// Checks the reply grammar of everything a server wrote: CRLF-terminated lines of three digits
/// then `-` or space, continuation lines followed by the same code.
pub fn check_replies(written: &[u8]) {
    assert!(
        written.is_empty() || written.ends_with(b"\r\n"),
        "output does not end in CRLF"
    );
    let mut continued: Option<&[u8]> = None;
    for line in written.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in reply {text:?}"));
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-'),
            "malformed reply line {text:?}"
        );
        assert!(!line.contains(&b'\r'), "bare CR in reply {text:?}");
        if let Some(code) = continued {
            assert_eq!(code, &line[..3], "continuation changed code: {text:?}");
        }
        continued = (line[3] == b'-').then_some(&line[..3]);
    }
    assert!(continued.is_none(), "output ends inside a multiline reply");
}

/// A whole SMTP session through the real [`Pump`] and [`Service`], with an in-memory store.
///
/// Byte 0 chooses the role (bits 0-1: inbound, submission, implicit-TLS submission) and config
/// switches (small chunks, plaintext AUTH on loopback, no STARTTLS, few errors, not loopback,
/// idle timeout at the end),
/// byte 1 the read and write splits, byte 2 which store requests fail; the rest is what the client
/// sends. Checks: no panic, every reply well formed, [`Pump::buffered_bytes`] at most
/// [`Pump::MAX_BUFFERED`] after every step, the session ends within a bounded number of steps,
/// every request is for a known transaction and none is left open at the end.
pub fn smtp_session(data: &[u8]) {
    run_session(data);
}

/// What a fuzzed session did, for tests that check the harness really converses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionReport {
    /// Everything the server wrote.
    pub written: Vec<u8>,
    /// Messages the fake store committed.
    pub delivered: usize,
}

/// [`smtp_session`], returning what the session wrote and how many messages it delivered.
pub fn run_session(data: &[u8]) -> SessionReport {
    let ([flags, split, fail], input) = header::<3>(data);
    let role = match flags & 3 {
        1 => Role::Submission,
        2 => Role::Submissions,
        _ => Role::Inbound,
    };
    let mut config = SmtpConfig::new(
        "mx.example.test",
        role,
        &["example.test".to_string()],
        Arc::new(FixedClock),
    );
    config.max_message_size = 10_000;
    config.max_recipients = 3;
    config.chunk_size = if flags & 0x04 != 0 { 64 } else { 64 * 1024 };
    config.allow_plaintext_on_loopback = flags & 0x08 != 0;
    config.starttls = flags & 0x10 == 0;
    config.max_errors = if flags & 0x20 != 0 { 3 } else { 20 };
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    };
    let peer = PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: flags & 0x40 == 0,
        tls: (role == Role::Submissions).then(|| tls.clone()),
        session_id: "FUZZ".into(),
    };
    let start = Instant::now();
    let service = Service::Smtp(Arc::new(config));
    let mut pump = Pump::new(service.open(peer, start));
    let mut store = FakeStore {
        fail,
        ..FakeStore::default()
    };
    let mut rng = SplitMix::new(u64::from(split));
    let read_mode = split & 3;
    let write_mode = (split >> 2) & 3;
    let idle_timeout_at_end = flags & 0x80 != 0;
    let mut written = Vec::new();
    let mut pos = 0;
    let mut now = start;
    let mut timeouts = 0;
    let mut at_eof = false;
    let max_steps = 10_000 + 16 * input.len();
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(
            steps <= max_steps,
            "session did not end in {max_steps} steps"
        );
        match pump.next_action() {
            Action::Write => {
                let out = pump.output();
                let n = chunk_len(write_mode, &mut rng, out.len());
                written.extend_from_slice(&out[..n]);
                pump.wrote(now, n);
            }
            Action::Execute(id, effect) => {
                let c = store.execute(effect);
                pump.complete(now, id, c);
            }
            Action::StartTls => pump.tls_established(now, tls.clone()),
            Action::Read { deadline } => {
                if pos < input.len() {
                    let buf = pump.read_buffer();
                    let want = chunk_len(read_mode, &mut rng, input.len() - pos);
                    let n = buf.len().min(want);
                    assert!(n > 0, "asked to read into an empty buffer");
                    buf[..n].copy_from_slice(&input[pos..pos + n]);
                    pos += n;
                    pump.received(now, n);
                } else if let Some(d) = deadline.filter(|d| {
                    timeouts < 8
                        && (idle_timeout_at_end || d.duration_since(start) < Duration::from_secs(5))
                }) {
                    // Short delays (AUTH failure) are waited out; the idle timeout only if asked.
                    timeouts += 1;
                    now = now.max(d);
                    pump.timeout(now);
                } else {
                    assert!(!at_eof, "read asked for again after end of input");
                    at_eof = true;
                    pump.eof(now);
                }
            }
            Action::Wait { deadline } => {
                now = now.max(deadline.expect("requests are answered at once here"));
                pump.timeout(now);
            }
            Action::Close(_) => break,
        }
        let held = pump.buffered_bytes();
        assert!(
            held <= Pump::MAX_BUFFERED,
            "{held} bytes buffered, more than {}",
            Pump::MAX_BUFFERED
        );
    }
    assert_eq!(pump.outstanding(), 0, "closed with requests unanswered");
    assert!(
        store.open.is_empty(),
        "closed with {} transaction(s) never committed or aborted",
        store.open.len()
    );
    check_replies(&written);
    SessionReport {
        written,
        delivered: store.delivered,
    }
}

/// The seed corpus of each target, built from the transcripts of the SMTP unit and end-to-end
/// tests: conversations (EHLO, MAIL, RCPT, DATA, BDAT, AUTH, STARTTLS), paths with routes, quotes
/// and literals, and data with dot-stuffing and smuggling sequences.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    const SESSIONS: &[&[u8]] = &[
        b"EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n",
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<v@elsewhere.example>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<alice%evil.example@example.test>\r\nRCPT TO:<\"a@evil\"@example.test>\r\nRCPT TO:<alice@[127.0.0.1]>\r\nRCPT TO:<@evil.example:alice@example.test>\r\nRCPT TO:<Bob+tag@EXAMPLE.test.>\r\nQUIT\r\n",
        b"EHLO a\r\nMAIL FROM:<alice@example.test>\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nMAIL FROM:<bob@example.test>\r\nMAIL FROM:<Alice+x@example.test>\r\nRCPT TO:<someone@remote.example>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n",
        b"EHLO a\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\nAUTH LOGIN YWxpY2VAZXhhbXBsZS50ZXN0\r\ncHc=\r\nQUIT\r\n",
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\none\n.\nMAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\ntwo\r\n.\rMAIL FROM:<a@b.example>\r\n\r\n.\r\nQUIT\r\n",
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 5\r\nhel.\nBDAT 0\r\nBDAT 7 LAST\r\nlo\r\n.\r\nMAIL FROM:<x@y.example>\r\nBDAT 3\r\nabcRCPT TO:<bob@example.test>\r\nBDAT 4\r\nabcdDATA\r\nRSET\r\nQUIT\r\n",
        b"EHLO a\r\nNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN\r\nNO\0OP\r\nMAIL FROM:<x@y.example> SIZE=20000\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<bob+1@example.test>\r\nRCPT TO:<bob+2@example.test>\r\nDATA\r\nxxxxxxxx\r\n.\r\nNOOP\r\n",
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhalf a body",
        b"EHLO a\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<x@y.example>\r\n",
        b"EHLO a\r\nSTARTTLS\r\nEHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nMAIL FROM:<alice@example.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<\xc3\xbc@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n.\r\nQUIT\r\n",
        b"HELO a\r\nMAIL FROM:<> SIZE=10 AUTH=<>\r\nRCPT TO:<bob@example.test>\r\nBDAT 0 LAST\r\nVRFY bob\r\nEXPN list\r\nHELP\r\nNOOP x\r\nQUIT\r\n",
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: split\r\n\r\n..a\r\nb\n.\nc\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nBDAT 3\r\nxyzBDAT 2\r\n\r\nBDAT 0 LAST\r\nNOOP\r\nQUIT\r\n",
        b"EHLO a\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nd3Jvbmc=\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nd3Jvbmc=\r\nAUTH LOGIN\r\nYWxpY2VAZXhhbXBsZS50ZXN0\r\nd3Jvbmc=\r\nQUIT\r\n",
    ];
    const PATHS: &[&str] = &[
        "<a@b.example>",
        "<>",
        " <a@b.example> SIZE=100 BODY=8BITMIME",
        "<@r1.example,@r2.example:user@c.example>",
        "<\"quoted local\"@example.test>",
        "<\"a\\\"b\\\\c\"@example.test>",
        "<user@[127.0.0.1]>",
        "<user@[IPv6:::1]>",
        "user@host.example",
        "<Bob+tag@EXAMPLE.test.>",
        "<\u{fc}ser@b\u{fc}cher.example>",
        "<alice%evil.example@example.test>",
        "example.test",
        "[192.0.2.1]",
        "a-b.c_d.example.",
    ];
    const COMMANDS: &[&[u8]] = &[
        b"EHLO client.example",
        b"HELO [127.0.0.1]",
        b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME",
        b"mail from: <>",
        b"MAIL FROM:<\xc3\xbc@x> SMTPUTF8",
        b"MAIL FROM:<a@b> AUTH=<> BODY=BINARYMIME",
        b"RCPT TO:<alice@example.test>",
        b"RCPT TO:<\xc3\xbc@x>",
        b"RCPT TO:<@a,@b:c@d>",
        b"DATA",
        b"BDAT 10 LAST",
        b"bdat 0",
        b"BDAT 99999999999999999999",
        b"RSET",
        b"NOOP hello",
        b"QUIT",
        b"VRFY bob",
        b"STARTTLS",
        b"AUTH plain dGVzdA==",
        b"AUTH LOGIN",
        b"NO\0OP",
    ];
    const SASL: &[&[u8]] = &[
        b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
        b"*",
        b"=",
        b"!!",
        b"YWxpY2VAZXhhbXBsZS50ZXN0",
        b"alice\0alice\0pw",
        b"\0alice\0pw",
        b"bob\0alice\0pw",
        b"alice\0pw",
    ];
    let message: &[u8] =
        b"Subject: hi\r\n\r\n.leading dot\r\n..two\r\nbare\n.\nlf\r\n.\rcr\r\nend\r\n.\r\nQUIT\r\n";
    match target {
        "smtp_session" => {
            let mut out = Vec::new();
            // Each script: inbound in one piece; inbound in small pieces with small chunks;
            // submission byte by byte; implicit TLS with failing store requests.
            for s in SESSIONS {
                for (flags, split, fail) in [(0u8, 0u8, 0u8), (0x0c, 0x0a, 0), (0x09, 0x05, 0)] {
                    out.push([&[flags, split, fail][..], s].concat());
                }
                out.push([&[0x0e, 0x0f, 0x1f][..], s].concat());
            }
            out
        }
        "smtp_command" => COMMANDS.iter().map(|c| c.to_vec()).collect(),
        "smtp_path" => PATHS.iter().map(|p| p.as_bytes().to_vec()).collect(),
        "sasl" => SASL.iter().map(|s| s.to_vec()).collect(),
        "smtp_data_any_split" => [[0u8, 0, 255], [1, 7, 3], [2, 9, 0], [3, 1, 64]]
            .iter()
            .map(|h| [&h[..], message].concat())
            .collect(),
        "smtp_line_reader" => {
            let mut long = vec![2u8, 5];
            long.extend_from_slice(b"EHLO a\r\n");
            long.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
            long.extend_from_slice(b"\nRSET\r\nNOOP\nQUIT\r\npartial");
            vec![
                [&[0u8, 0][..], SESSIONS[0]].concat(),
                [&[1u8, 0][..], SESSIONS[5]].concat(),
                long,
            ]
        }
        _ => Vec::new(),
    }
}

/// Random inputs for `target` from `rng`: mutated seeds (byte flips, splices, repeats) and raw
/// bytes biased towards the characters the parsers care about.
pub fn generate(target: &str, rng: &mut SplitMix) -> Vec<u8> {
    const ALPHABET: &[u8] = b"\r\n.<>@:\" \\[]%!,=+-\0\xc3\xbcaAzZ09EHLOMAILRCPTDATBQUIT";
    let seeds = seeds(target);
    let mut data = if seeds.is_empty() || rng.range(0, 3) == 0 {
        let len = rng.range(0, 300);
        (0..len)
            .map(|_| {
                if rng.range(0, 1) == 0 {
                    ALPHABET[rng.range(0, ALPHABET.len() - 1)]
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect()
    } else {
        seeds[rng.range(0, seeds.len() - 1)].clone()
    };
    for _ in 0..rng.range(0, 8) {
        let len = data.len();
        match rng.range(0, 4) {
            0 if len > 0 => {
                let i = rng.range(0, len - 1);
                data[i] = rng.next_u64() as u8;
            }
            1 if len > 0 => {
                let i = rng.range(0, len - 1);
                data[i] = ALPHABET[rng.range(0, ALPHABET.len() - 1)];
            }
            2 if len > 0 => {
                let a = rng.range(0, len - 1);
                let b = rng.range(a, len - 1);
                data.drain(a..=b.min(a + 16));
            }
            3 if len > 0 => {
                let a = rng.range(0, len - 1);
                let b = rng.range(a, (a + 64).min(len - 1));
                let piece = data[a..=b].to_vec();
                let at = rng.range(0, data.len());
                data.splice(at..at, piece);
            }
            _ => data.push(ALPHABET[rng.range(0, ALPHABET.len() - 1)]),
        }
    }
    data
}
