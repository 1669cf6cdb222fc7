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

use petrel_core::dns::Answer;
use petrel_core::imap::request::ImapAnswer;
use petrel_core::line::{Line, LineReader, MAX_LINE};
use petrel_core::pop3::Pop3Config;
use petrel_core::pop3::command::{self as pop3_cmd, Command as Pop3Command};
use petrel_core::pop3::output::MessageEncoder;
use petrel_core::sasl;
use petrel_core::smtp::address::{Address, Domain, parse_domain, parse_mailbox, parse_path};
use petrel_core::smtp::command::{Command, parse};
use petrel_core::smtp::data::{DataReceiver, dot_stuff};
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::{
    Action, AuthOutcome, Completion, Effect, ErrorClass, MaildropEntry, MaildropOutcome, PeerInfo,
    Pump, Receipt, RecipientOutcome, Service, StoreError, TlsInfo, TxId, UserId, WallClock,
};
use std::collections::{BTreeMap, BTreeSet};
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
    ("pop3_command", pop3_command),
    ("pop3_encoder", pop3_encoder),
    ("pop3_session", pop3_session),
    ("sieve", sieve),
    ("managesieve_session", managesieve_session),
    ("smtp_client", smtp_client),
    ("dns_lookup", dns_lookup),
    ("dkim_verify", dkim_verify),
    ("spf_check", spf_check),
    ("mail_auth", mail_auth),
    ("mta_sts_policy", mta_sts_policy),
    ("imap_parser", imap_parser),
    ("imap_session", imap_session),
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

/// A Sieve script (the input as text) is parsed with the default limits; if it parses, it runs
/// on a fixed message: never a panic, a position inside the script for any syntax error, and
/// at least one action (implicit keep) from every run, within the step budget.
pub fn sieve(data: &[u8]) {
    use petrel_core::sieve::{self, Envelope, Limits, NoIncludes, RawMessage};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    match sieve::parse(text, &limits) {
        Err(e) => {
            let lines = text.split('\n').count() as u32;
            assert!(
                e.line >= 1 && e.line <= lines && e.column >= 1,
                "{e} for {text:?}"
            );
        }
        Ok(script) => {
            let message = RawMessage::parse(
                b"From: a@x.example\r\nTo: b+tag@example.test\r\nSubject: fuzz =?utf-8?q?x?=\r\n\r\nbody\r\n",
            );
            let envelope = Envelope {
                from: "a@x.example".into(),
                to: "b+tag@example.test".into(),
                now: 1_700_000_000,
                host: "mx.example.test".into(),
            };
            let outcome = sieve::run(&script, &envelope, &message, &mut NoIncludes, &limits);
            assert!(!outcome.actions.is_empty(), "no action for {text:?}");
        }
    }
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
            Effect::Authenticate {
                username, password, ..
            } => {
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

/// Drives a fuzzed session to its end: reads and writes cut as `split` says, requests answered
/// by `execute`, short timers (login failure delays) waited out and the idle timeout only when
/// `idle_timeout_at_end`. Asserts a bounded run, bounded buffers after every step and no request
/// left unanswered. Returns what the session wrote, and whether it was given the end of input.
fn drive(
    mut pump: Pump,
    start: Instant,
    input: &[u8],
    split: u8,
    idle_timeout_at_end: bool,
    tls: &TlsInfo,
    mut execute: impl FnMut(Effect) -> Completion,
) -> (Vec<u8>, bool) {
    let mut rng = SplitMix::new(u64::from(split));
    let (read_mode, write_mode) = (split & 3, (split >> 2) & 3);
    let mut written = Vec::new();
    let (mut pos, mut now, mut timeouts, mut at_eof) = (0, start, 0, false);
    let max_steps = 10_000 + 16 * input.len();
    for step in 1.. {
        assert!(
            step <= max_steps,
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
                let c = execute(effect);
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
    (written, at_eof)
}

/// [`smtp_session`], returning what the session wrote and how many messages it delivered.
pub fn run_session(data: &[u8]) -> SessionReport {
    let ([flags, split, fail], input) = header::<3>(data);
    let role = match flags & 3 {
        1 => Role::Submission,
        2 => Role::Submissions,
        3 => Role::Lmtp,
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
    let pump = Pump::new(service.open(peer, start));
    let mut store = FakeStore {
        fail,
        ..FakeStore::default()
    };
    let (written, _) = drive(pump, start, input, split, flags & 0x80 != 0, &tls, |e| {
        store.execute(e)
    });
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

/// `pop3::command::parse` on any bytes: never panics, the verb is case-insensitive, and a parsed
/// command matches its verb and respects the bounds of its arguments (non-empty names without
/// spaces, uppercase mechanisms, numbers of at most 20 digits that are the numbers on the line,
/// PASS keeping the rest of the line verbatim).
pub fn pop3_command(data: &[u8]) {
    let result = pop3_cmd::parse(data);
    let (verb, rest) = match data.iter().position(|&b| b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    // The verb is case-insensitive: uppercasing it changes nothing.
    let upper = [&verb.to_ascii_uppercase()[..], &data[verb.len()..]].concat();
    assert_eq!(
        pop3_cmd::parse(&upper),
        result,
        "uppercasing the verb changed the result"
    );
    let Ok(cmd) = result else { return };
    let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
    let args: Vec<&[u8]> = rest
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
        .collect();
    let num = |i: usize| -> u64 {
        let a = args
            .get(i)
            .unwrap_or_else(|| panic!("{cmd:?}: no argument {i}"));
        assert!(
            !a.is_empty() && a.len() <= 20 && a.iter().all(u8::is_ascii_digit),
            "{cmd:?}: argument {i} is not a number"
        );
        std::str::from_utf8(a)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{cmd:?}: argument {i} out of range"))
    };
    let expected_verb = match &cmd {
        Pop3Command::User(name) => {
            assert!(!name.is_empty(), "empty user name");
            assert!(!name.contains([' ', '\0']), "{name:?}");
            assert_eq!(args, [name.as_bytes()], "{name:?}");
            "USER"
        }
        Pop3Command::Pass(p) => {
            assert_eq!(p.as_slice(), rest, "PASS did not keep the rest of the line");
            "PASS"
        }
        Pop3Command::Auth { mechanism, initial } => {
            assert!(!mechanism.is_empty() && !mechanism.contains([' ', '\0']));
            assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
            assert!(
                initial
                    .as_ref()
                    .is_none_or(|i| !i.is_empty() && !i.contains([' ', '\0'])),
                "{initial:?}"
            );
            assert_eq!(args.len(), 1 + usize::from(initial.is_some()));
            "AUTH"
        }
        Pop3Command::AuthList => {
            assert!(args.is_empty(), "AUTH list took arguments");
            "AUTH"
        }
        Pop3Command::Apop => "APOP",
        Pop3Command::Stls => "STLS",
        Pop3Command::Capa => "CAPA",
        Pop3Command::Stat => "STAT",
        Pop3Command::Noop => "NOOP",
        Pop3Command::Rset => "RSET",
        Pop3Command::Quit => "QUIT",
        Pop3Command::List(n) | Pop3Command::Uidl(n) => {
            match n {
                None => assert!(args.is_empty(), "{cmd:?} ignored an argument"),
                Some(n) => assert_eq!(num(0), u64::from(*n)),
            }
            if matches!(cmd, Pop3Command::List(_)) {
                "LIST"
            } else {
                "UIDL"
            }
        }
        Pop3Command::Retr(n) | Pop3Command::Dele(n) => {
            assert_eq!(args.len(), 1, "{cmd:?}");
            assert_eq!(num(0), u64::from(*n));
            if matches!(cmd, Pop3Command::Retr(_)) {
                "RETR"
            } else {
                "DELE"
            }
        }
        Pop3Command::Top(n, lines) => {
            assert_eq!(args.len(), 2, "{cmd:?}");
            assert_eq!(num(0), u64::from(*n));
            assert_eq!(num(1), *lines);
            "TOP"
        }
    };
    assert_eq!(verb, expected_verb, "{cmd:?} parsed from verb {verb:?}");
    if !matches!(
        cmd,
        Pop3Command::Pass(_) | Pop3Command::Apop | Pop3Command::Auth { .. }
    ) {
        assert!(!rest.contains(&0), "{cmd:?} accepted a NUL");
    }
    if matches!(
        cmd,
        Pop3Command::Stls
            | Pop3Command::AuthList
            | Pop3Command::Capa
            | Pop3Command::Stat
            | Pop3Command::Noop
            | Pop3Command::Rset
            | Pop3Command::Quit
    ) {
        assert!(args.is_empty(), "{cmd:?} accepted arguments");
    }
}

/// Encodes `msg` with a [`MessageEncoder`] in `mode`/`seed` pieces, stopping when it is done.
fn pop3_encode(msg: &[u8], top: Option<u64>, mode: u8, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix::new(seed);
    let mut e = MessageEncoder::new(top);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() && !e.is_done() {
        let n = chunk_len(mode, &mut rng, msg.len() - pos);
        e.feed(&msg[pos..pos + n], &mut out);
        pos += n;
    }
    e.finish(&mut out);
    out
}

/// Positions in `out` where a line starts.
fn line_starts(out: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0)
        .chain(
            out.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(move |&i| i < out.len())
}

/// [`MessageEncoder`] (POP3 RETR/TOP): the same output for two splits of the message; RETR is
/// the message with bare LF made CRLF, dot-stuffed, CRLF-terminated and ended by `.`; no line `.`
/// before the end; TOP n is a prefix of RETR with at most n body lines. Byte 0 and 1 choose the
/// second split, byte 2 RETR (bit 7 clear) or TOP with its low bits as n; the rest is the message.
pub fn pop3_encoder(data: &[u8]) {
    let ([mode, seed, top_byte], msg) = header::<3>(data);
    let top = (top_byte & 0x80 != 0).then_some(u64::from(top_byte & 0x0f));
    let whole = pop3_encode(msg, top, 0, 0);
    let split = pop3_encode(msg, top, mode, u64::from(seed));
    assert_eq!(whole, split, "split {mode}/{seed} changed the encoding");
    let other = pop3_encode(msg, top, 1, 0);
    assert_eq!(whole, other, "byte-by-byte changed the encoding");
    let out = whole;
    let body = out
        .strip_suffix(b".\r\n")
        .expect("response does not end with the terminator");
    assert!(
        body.is_empty() || body.ends_with(b"\r\n"),
        "terminator not on its own line"
    );
    for start in line_starts(body) {
        if body[start] == b'.' {
            assert_eq!(
                body.get(start + 1),
                Some(&b'.'),
                "line start not dot-stuffed"
            );
        }
    }
    // Undo dot-stuffing at line starts.
    let mut unstuffed = Vec::with_capacity(body.len());
    let mut at_start = true;
    for &b in body {
        if at_start && b == b'.' {
            at_start = false;
            continue;
        }
        unstuffed.push(b);
        at_start = b == b'\n';
    }
    match top {
        None => {
            let mut expected = Vec::with_capacity(msg.len() + 2);
            let mut prev = 0u8;
            for &b in msg {
                if b == b'\n' && prev != b'\r' {
                    expected.push(b'\r');
                }
                expected.push(b);
                prev = b;
            }
            if !msg.is_empty() && !msg.ends_with(b"\n") {
                expected.extend_from_slice(b"\r\n");
            }
            assert_eq!(unstuffed, expected, "RETR changed the message");
        }
        Some(n) => {
            let retr = pop3_encode(msg, None, 0, 0);
            let retr_body = &retr[..retr.len() - 3];
            assert!(retr_body.starts_with(body), "TOP is not a prefix of RETR");
            // Lines after the first empty one are body lines.
            let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
            if let Some(blank) = lines.iter().position(|l| *l == b"\r\n") {
                let body_lines = lines.len() - blank - 1;
                assert!(
                    body_lines as u64 <= n,
                    "TOP {n} sent {body_lines} body lines"
                );
            }
        }
    }
}

/// Messages the POP3 session tests use, for fuzzed maildrops.
const POP3_MESSAGES: [&[u8]; 3] = [
    b"Subject: one\r\n\r\nfirst\r\n.dot line\r\n",
    b"Subject: two\n\nbare LF body\nlast line without end",
    b"Subject: three\r\n\r\nl1\r\nl2\r\n.\r\nl3\r\n",
];

/// An in-memory maildrop for fuzzed POP3 sessions: user alice@example.test (password `pw`).
#[derive(Debug, Default)]
struct FakeMaildrop {
    messages: Vec<Vec<u8>>,
    /// Bit 0: OpenMaildrop says in use; bit 1: reads fail every other time; bit 2: the first
    /// login is a temporary failure.
    fail: u8,
    calls: u64,
    locked: bool,
    opened: bool,
    deleted: BTreeSet<String>,
    closes_with_delete: usize,
    failed_reads: usize,
}

impl FakeMaildrop {
    fn execute(&mut self, effect: Effect) -> Completion {
        self.calls += 1;
        match effect {
            Effect::Authenticate {
                username, password, ..
            } => {
                if self.fail & 4 != 0 && self.calls == 1 {
                    return Completion::Auth(AuthOutcome::TempFail);
                }
                let ok = username == "alice@example.test" && password.expose() == b"pw";
                Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                })
            }
            Effect::OpenMaildrop { user } => {
                assert_eq!(
                    user.0, "alice@example.test",
                    "opened another user's maildrop"
                );
                if self.locked || self.fail & 1 != 0 {
                    return Completion::Maildrop(MaildropOutcome::InUse);
                }
                self.locked = true;
                self.opened = true;
                let messages = self
                    .messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| MaildropEntry {
                        uid: i as u32 + 10,
                        size: m.len() as u64,
                        name: format!("m{i}"),
                    })
                    .collect();
                Completion::Maildrop(MaildropOutcome::Ready {
                    uidvalidity: 0x1234,
                    messages,
                })
            }
            Effect::ReadMessage {
                name, offset, max, ..
            } => {
                assert!(self.locked, "read without the lock");
                assert!(max > 0, "read of zero bytes");
                if self.fail & 2 != 0 && self.calls.is_multiple_of(2) {
                    self.failed_reads += 1;
                    return Completion::Failed(StoreError {
                        class: ErrorClass::Temporary,
                        message: "fuzz".into(),
                    });
                }
                let m = name
                    .strip_prefix('m')
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| self.messages.get(i))
                    .unwrap_or_else(|| panic!("read of unknown message {name:?}"));
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(m.len());
                let end = (start + max as usize).min(m.len());
                Completion::Data(m[start..end].to_vec())
            }
            Effect::CloseMaildrop { user, delete } => {
                assert_eq!(user.0, "alice@example.test");
                assert!(self.locked, "close without the lock");
                self.locked = false;
                for name in &delete {
                    assert!(
                        name.strip_prefix('m')
                            .and_then(|i| i.parse::<usize>().ok())
                            .is_some_and(|i| i < self.messages.len()),
                        "delete of unknown message {name:?}"
                    );
                    assert!(self.deleted.insert(name.clone()), "{name:?} deleted twice");
                }
                if !delete.is_empty() {
                    self.closes_with_delete += 1;
                }
                Completion::Done
            }
            other => panic!("unexpected effect {other:?}"),
        }
    }
}

/// Checks the POP3 response grammar of everything a server wrote: CRLF lines, each a status
/// (`+OK`, `-ERR`, `+ `) or part of a multi-line response ended by `.`. A `+OK N octets` (RETR,
/// TOP) is always multi-line; a bare `+OK ` is multi-line (CAPA, LIST, UIDL, AUTH) exactly when the next
/// line is not a status. At most `multi` multi-line responses may appear, and every complete RETR
/// or TOP response must be the encoding of a message ([`check_retr_body`]). Returns whether the
/// output ended inside a multi-line response (possibly in the middle of a line).
fn check_pop3_responses(written: &[u8], multi: usize, messages: &[Vec<u8>]) -> bool {
    let mut lines = written.split_inclusive(|&b| b == b'\n').peekable();
    let status = |l: &[u8]| l.starts_with(b"+OK") || l.starts_with(b"-ERR") || l == b"+ \r\n";
    let mut seen_multi = 0;
    while let Some(line) = lines.next() {
        let text = String::from_utf8_lossy(line);
        assert!(
            line.ends_with(b"\r\n"),
            "status {text:?} does not end in CRLF"
        );
        assert!(
            !line[..line.len() - 2].contains(&b'\r') || !status(line),
            "bare CR in status {text:?}"
        );
        assert!(
            status(line),
            "{text:?} is neither a status nor in a multi-line response"
        );
        let octets = line.starts_with(b"+OK ") && line.ends_with(b" octets\r\n");
        let bare = line == b"+OK \r\n" && lines.peek().is_some_and(|l| !status(l));
        if !(octets || bare) {
            continue;
        }
        seen_multi += 1;
        assert!(
            seen_multi <= multi,
            "more multi-line responses than requests ({multi}) at {text:?} in {:?}",
            String::from_utf8_lossy(written)
        );
        let mut body = Vec::new();
        loop {
            let Some(l) = lines.next() else {
                return true;
            };
            if l == b".\r\n" {
                break;
            }
            body.extend_from_slice(l);
            if !l.ends_with(b"\n") {
                // Cut short in the middle of a line.
                return true;
            }
            let text = String::from_utf8_lossy(l);
            assert!(l.ends_with(b"\r\n"), "bare LF in multi-line {text:?}");
            assert!(
                octets || !status(l) && !l.starts_with(b"."),
                "odd line {text:?} in a listing"
            );
        }
        if octets {
            check_retr_body(line, &body, messages);
        }
    }
    false
}

/// A complete RETR or TOP response (`+OK N octets` then `body`) is a prefix, at a line
/// boundary, of the encoding of one of the `messages` of N octets; RETR and TOP n >= lines give
/// all of it.
fn check_retr_body(status: &[u8], body: &[u8], messages: &[Vec<u8>]) {
    let text = String::from_utf8_lossy(status);
    let size: usize = text
        .strip_prefix("+OK ")
        .and_then(|t| t.strip_suffix(" octets\r\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad size in {text:?}"));
    let found = messages.iter().filter(|m| m.len() == size).any(|m| {
        let retr = pop3_encode(m, None, 0, 0);
        retr[..retr.len() - 3].starts_with(body)
    });
    assert!(
        found,
        "{text:?} sent {:?}, which is no message's encoding",
        String::from_utf8_lossy(body)
    );
}

/// A whole POP3 session through the real [`Pump`] and `Service::Pop3`, with an in-memory
/// maildrop.
///
/// Byte 0: bit 7 prefixes a valid login (`USER alice@example.test` / `PASS pw`), bits 0-1 the
/// number of template messages, bit 2 adds the client input itself as a message, bit 3 small
/// read chunks, bit 4 no STLS, bit 5 few errors, bit 6 idle timeout at the end. Byte 1: read and
/// write splits. Byte 2: which store requests fail. The rest is what the client sends. Checks: no
/// panic, the response grammar ([`check_pop3_responses`]), `buffered_bytes() <=
/// Pump::MAX_BUFFERED` after every step, a bounded run, no request left unanswered, the
/// maildrop unlocked at the end, and messages deleted only if the client sent QUIT.
pub fn pop3_session(data: &[u8]) {
    run_pop3_session(data);
}

/// [`pop3_session`], returning everything the server wrote.
pub fn run_pop3_session(data: &[u8]) -> Vec<u8> {
    const LOGIN: &[u8] = b"USER alice@example.test\r\nPASS pw\r\n";
    let ([flags, split, fail], rest) = header::<3>(data);
    let input = if flags & 0x80 != 0 {
        [LOGIN, rest].concat()
    } else {
        rest.to_vec()
    };
    let mut config = Pop3Config::new("mx.example.test");
    config.allow_plaintext_on_loopback = true;
    config.chunk_size = if flags & 0x08 != 0 { 7 } else { 64 * 1024 };
    config.stls = flags & 0x10 == 0;
    config.max_errors = if flags & 0x20 != 0 { 3 } else { 20 };
    let peer = PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "FUZZ".into(),
    };
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    };
    let mut messages: Vec<Vec<u8>> = POP3_MESSAGES
        .iter()
        .cycle()
        .take(usize::from(flags & 3))
        .map(|m| m.to_vec())
        .collect();
    if flags & 0x04 != 0 {
        messages.push(rest.to_vec());
    }
    let mut store = FakeMaildrop {
        messages,
        fail,
        ..FakeMaildrop::default()
    };
    let start = Instant::now();
    let service = Service::Pop3(Arc::new(config));
    let pump = Pump::new(service.open(peer, start));
    let (written, at_eof) = drive(pump, start, &input, split, flags & 0x40 != 0, &tls, |e| {
        store.execute(e)
    });
    assert!(!store.locked, "closed with the maildrop still locked");
    // How many commands could ask for a multi-line response, and whether QUIT could have been
    // sent: from the client's lines, or, if it sent STLS, from the words anywhere in the input,
    // because STLS discards the rest of a read, so the lines the session sees after it may start
    // in the middle of the client's lines.
    let upper = input.to_ascii_uppercase();
    let count = |word: &[u8]| upper.windows(word.len()).filter(|w| *w == word).count();
    let (multi, quit) = if count(b"STLS") > 0 {
        let multi: usize = [&b"CAPA"[..], b"LIST", b"UIDL", b"RETR", b"TOP", b"AUTH"]
            .iter()
            .map(|w| count(w))
            .sum();
        (multi, count(b"QUIT") > 0)
    } else {
        let mut multi = 0;
        let mut quit = false;
        for line in input.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match pop3_cmd::parse(line) {
                Ok(
                    Pop3Command::Capa
                    | Pop3Command::AuthList
                    | Pop3Command::List(None)
                    | Pop3Command::Uidl(None)
                    | Pop3Command::Retr(_)
                    | Pop3Command::Top(..),
                ) => multi += 1,
                Ok(Pop3Command::Quit) => quit = true,
                _ => {}
            }
        }
        (multi, quit)
    };
    assert!(
        store.closes_with_delete == 0 || (quit && store.opened),
        "messages deleted without QUIT while logged in"
    );
    assert!(store.closes_with_delete <= 1, "deleted in two closes");
    assert!(written.starts_with(b"+OK "), "no greeting");
    let unfinished = check_pop3_responses(&written, multi, &store.messages);
    // Only a dropped connection or a failed read may cut a multi-line response short.
    assert!(
        !unfinished || at_eof || store.failed_reads > 0,
        "ended inside a multi-line response"
    );
    written
}

/// The seed corpus of each target, built from the transcripts of the SMTP unit and end-to-end
/// tests: conversations (EHLO, MAIL, RCPT, DATA, BDAT, AUTH, STARTTLS), paths with routes, quotes
/// and literals, and data with dot-stuffing and smuggling sequences; and of the POP3 session
/// tests: conversations (USER/PASS, AUTH PLAIN, STLS, CAPA, LIST, UIDL, RETR, TOP, DELE, QUIT) and
/// their messages; the later protocols' seeds come from `protocol_seeds`.
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
    const POP3_COMMANDS: &[&[u8]] = &[
        b"USER alice@example.test",
        b"PASS a b:c",
        b"pass",
        b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==",
        b"auth plain",
        b"APOP alice 0123456789abcdef",
        b"STLS",
        b"CAPA",
        b"STAT",
        b"LIST",
        b"list 3",
        b"UIDL 2",
        b"RETR 1",
        b"TOP 1 0",
        b"TOP 1 18446744073709551615",
        b"RETR 99999999999",
        b"DELE 1",
        b"NOOP",
        b"RSET",
        b"QUIT",
        b"LIST  1 ",
        b"USER a\0b",
    ];
    const POP3_SESSIONS: &[&[u8]] = &[
        b"STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nRETR 2\r\nTOP 3 1\r\nDELE 1\r\nDELE 1\r\nLIST 1\r\nRETR 9\r\nSTAT\r\nQUIT\r\n",
        b"DELE 1\r\nDELE 2\r\n",
        b"CAPA\r\nSTAT\r\nPASS x\r\nUSER alice@example.test\r\nPASS wrong\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nCAPA\r\nRSET\r\nQUIT\r\n",
        b"LIST\r\nRETR 2\r\nTOP 1 0\r\nDELE 3\r\nUIDL\r\nRETR 4\r\nTOP 4 2\r\nQUIT\r\n",
        b"USER a\r\nAUTH PLAIN AGEAYg==\r\nSTLS\r\nUSER a\r\nCAPA\r\n",
        b"DELE 1\r\nRSET\r\nNOOP\r\nretr 1\r\nlist\r\nuidl\r\nQUIT\r\nSTAT\r\n",
        b"CAPA\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN =\r\nUSER x\r\nPASS y\r\nUSER x\r\nPASS y\r\nUSER x\r\nPASS y\r\n",
        b"RETR 1\r\nRETR 2",
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
        "sieve" => [
            &b"require [\"fileinto\", \"imap4flags\"];\nif header :contains \"subject\" \"fuzz\" { fileinto :flags \"\\\\Seen\" \"Junk\"; stop; }\nkeep;\n"[..],
            b"require [\"variables\", \"envelope\", \"subaddress\"];\nif envelope :detail \"to\" \"*\" { set \"t\" \"${1}\"; }\nif address :matches :localpart \"from\" \"*a*\" { discard; }\n",
            b"require \"vacation\";\nvacation :days 3 :subject \"away\" text:\nback soon\n.\n;\n",
            b"if anyof (size :over 1K, not exists \"x-spam\") { redirect \"x@y.example\"; } elsif true { keep; } else { discard; }\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        "smtp_data_any_split" => [[0u8, 0, 255], [1, 7, 3], [2, 9, 0], [3, 1, 64]]
            .iter()
            .map(|h| [&h[..], message].concat())
            .collect(),
        "pop3_command" => POP3_COMMANDS.iter().map(|c| c.to_vec()).collect(),
        "pop3_encoder" => {
            let mut out = Vec::new();
            for m in POP3_MESSAGES.iter().copied().chain([message]) {
                for h in [[0u8, 0, 0], [1, 7, 0x80], [2, 9, 0x81], [3, 1, 0x83]] {
                    out.push([&h[..], m].concat());
                }
            }
            out
        }
        "pop3_session" => {
            let mut out = Vec::new();
            // Each script: logged in, three messages, one piece; the same in small pieces with
            // small store reads and the input as a fourth message; byte by byte with failing
            // reads; and without the login prefix.
            for s in POP3_SESSIONS {
                for (flags, split, fail) in [(0x83u8, 0u8, 0u8), (0x8f, 0x0a, 0), (0x8b, 0x05, 2)] {
                    out.push([&[flags, split, fail][..], s].concat());
                }
                out.push([&[0x03, 0x0f, 0][..], s].concat());
            }
            out
        }
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
        _ => protocol_seeds(target),
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

// ----- the protocols added with ManageSieve, outbound SMTP, DNS and mail authentication -----

/// An in-memory script store for fuzzed ManageSieve sessions: user alice@example.test
/// (password `pw`), at most three scripts. Bit 0 of `fail`: the first login is a temporary
/// failure; bit 1: every other script request fails.
#[derive(Debug, Default)]
struct FakeScripts {
    fail: u8,
    calls: u64,
    scripts: BTreeMap<String, String>,
    active: Option<String>,
}

impl FakeScripts {
    fn execute(&mut self, effect: Effect) -> Completion {
        use petrel_core::managesieve::{
            ScriptEntry, SieveAnswer as A, SieveRequest as R, check_script_name,
        };
        self.calls += 1;
        let request = match effect {
            Effect::Authenticate {
                username, password, ..
            } => {
                if self.fail & 1 != 0 && self.calls == 1 {
                    return Completion::Auth(AuthOutcome::TempFail);
                }
                let ok = username == "alice@example.test" && password.expose() == b"pw";
                return Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                });
            }
            Effect::Sieve { user, request } => {
                assert_eq!(user.0, "alice@example.test", "another user's scripts");
                request
            }
            other => panic!("unexpected effect {other:?}"),
        };
        let name_ok = |n: &str| {
            assert!(check_script_name(n).is_ok(), "unchecked script name {n:?}");
        };
        if self.fail & 2 != 0 && self.calls.is_multiple_of(2) {
            return Completion::Failed(StoreError {
                class: ErrorClass::Temporary,
                message: "fuzz".into(),
            });
        }
        Completion::Sieve(match request {
            R::List => A::Scripts(
                self.scripts
                    .keys()
                    .map(|n| ScriptEntry {
                        name: n.clone(),
                        active: self.active.as_ref() == Some(n),
                    })
                    .collect(),
            ),
            R::Get { name } => match self.scripts.get(&name) {
                Some(s) => A::Script(s.clone()),
                None => A::NonExistent,
            },
            R::Put { name, script } => {
                name_ok(&name);
                let limits = petrel_core::sieve::Limits::default();
                assert!(
                    petrel_core::sieve::parse(&script, &limits).is_ok(),
                    "PUTSCRIPT stored a script that does not parse: {script:?}"
                );
                if !self.scripts.contains_key(&name) && self.scripts.len() >= 3 {
                    A::TooManyScripts
                } else {
                    self.scripts.insert(name, script);
                    A::Done
                }
            }
            R::Delete { name } => {
                if self.active.as_ref() == Some(&name) {
                    A::Active
                } else if self.scripts.remove(&name).is_some() {
                    A::Done
                } else {
                    A::NonExistent
                }
            }
            R::Rename { from, to } => {
                name_ok(&to);
                if self.scripts.contains_key(&to) {
                    A::AlreadyExists
                } else if let Some(s) = self.scripts.remove(&from) {
                    if self.active.as_ref() == Some(&from) {
                        self.active = Some(to.clone());
                    }
                    self.scripts.insert(to, s);
                    A::Done
                } else {
                    A::NonExistent
                }
            }
            R::SetActive { name: None } => {
                self.active = None;
                A::Done
            }
            R::SetActive { name: Some(name) } => {
                if self.scripts.contains_key(&name) {
                    self.active = Some(name);
                    A::Done
                } else {
                    A::NonExistent
                }
            }
            R::HaveSpace { name, size } => {
                name_ok(&name);
                let limit = petrel_core::sieve::Limits::default().max_script_size;
                assert!(size <= limit as u64, "HAVESPACE {size} over the limit");
                if !self.scripts.contains_key(&name) && self.scripts.len() >= 3 {
                    A::TooManyScripts
                } else {
                    A::Done
                }
            }
        })
    }
}

/// Checks the ManageSieve response grammar of everything a server wrote (RFC 5804 4): CRLF
/// lines made of atoms, parenthesised response codes, quoted strings (no CR, LF or NUL, `"`
/// and `\\` escaped) and literals `{n}` CRLF then exactly n bytes; each line starts with `OK`,
/// `NO`, `BYE` or a string; nothing after `BYE`; the first line is a string (capabilities).
/// Returns the status words, in order.
fn check_managesieve_responses(written: &[u8]) -> Vec<String> {
    let text = || String::from_utf8_lossy(written).into_owned();
    let mut statuses = Vec::new();
    let mut i = 0;
    while i < written.len() {
        assert!(
            statuses.last().is_none_or(|s| s != "BYE"),
            "output after BYE: {:?}",
            text()
        );
        let line_start = i;
        let first = written[i];
        if first != b'"' && first != b'{' {
            let word: Vec<u8> = written[i..]
                .iter()
                .take_while(|b| b.is_ascii_uppercase())
                .copied()
                .collect();
            let word = String::from_utf8_lossy(&word).into_owned();
            assert!(
                matches!(word.as_str(), "OK" | "NO" | "BYE"),
                "line at {line_start} starts with {word:?}: {:?}",
                text()
            );
            statuses.push(word);
        }
        // One line, with its strings and literals.
        loop {
            let Some(&b) = written.get(i) else {
                panic!("output ends inside a line: {:?}", text());
            };
            match b {
                b'"' => {
                    i += 1;
                    loop {
                        match written.get(i) {
                            None => panic!("unterminated quoted string: {:?}", text()),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                assert!(
                                    matches!(written.get(i + 1), Some(b'"' | b'\\')),
                                    "bad escape in a quoted string: {:?}",
                                    text()
                                );
                                i += 2;
                            }
                            Some(b'\r' | b'\n' | 0) => {
                                panic!("CR, LF or NUL in a quoted string: {:?}", text())
                            }
                            Some(_) => i += 1,
                        }
                    }
                    i += 1;
                }
                b'{' => {
                    let digits = written[i + 1..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    let close = i + 1 + digits;
                    assert!(
                        digits > 0 && written[close..].starts_with(b"}\r\n"),
                        "malformed literal at {i}: {:?}",
                        text()
                    );
                    let n: usize = std::str::from_utf8(&written[i + 1..close])
                        .ok()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or_else(|| panic!("literal size at {i}: {:?}", text()));
                    i = close + 3 + n;
                    assert!(i <= written.len(), "literal cut short: {:?}", text());
                }
                b'\r' => {
                    assert_eq!(written.get(i + 1), Some(&b'\n'), "bare CR: {:?}", text());
                    i += 2;
                    break;
                }
                b'\n' | 0 => panic!("bare LF or NUL at {i}: {:?}", text()),
                _ => i += 1,
            }
        }
    }
    statuses
}

/// A whole ManageSieve session through the real [`Pump`] and `Service::ManageSieve`, with an
/// in-memory script store ([`FakeScripts`]).
///
/// Byte 0: bit 7 prefixes a valid login (`AUTHENTICATE "PLAIN"` for alice), bit 4 no STARTTLS,
/// bit 5 few errors, bit 6 idle timeout at the end. Byte 1: read and write splits. Byte 2: which
/// store requests fail. The rest is what the client sends. Checks: no panic, the response
/// grammar ([`check_managesieve_responses`]), the greeting, at most one status per client line
/// (plus the greeting, a final BYE and a second OK after each TLS handshake), only names that pass `check_script_name` and scripts
/// that parse reach the store, bounded buffers, a bounded run, no request left unanswered.
pub fn managesieve_session(data: &[u8]) {
    use petrel_core::managesieve::ManageSieveConfig;
    const LOGIN: &[u8] = b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\"\r\n";
    let ([flags, split, fail], rest) = header::<3>(data);
    let input = if flags & 0x80 != 0 {
        [LOGIN, rest].concat()
    } else {
        rest.to_vec()
    };
    let mut config = ManageSieveConfig::new("mx.example.test");
    config.allow_plaintext_on_loopback = true;
    config.starttls = flags & 0x10 == 0;
    config.max_errors = if flags & 0x20 != 0 { 3 } else { 20 };
    let peer = PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "FUZZ".into(),
    };
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    };
    let mut store = FakeScripts {
        fail,
        ..FakeScripts::default()
    };
    let start = Instant::now();
    let service = Service::ManageSieve(Arc::new(config));
    let pump = Pump::new(service.open(peer, start));
    let (written, _) = drive(pump, start, &input, split, flags & 0x40 != 0, &tls, |e| {
        store.execute(e)
    });
    assert!(
        written.starts_with(b"\"IMPLEMENTATION\""),
        "no capability greeting"
    );
    let statuses = check_managesieve_responses(&written);
    assert_eq!(statuses.first().map(String::as_str), Some("OK"), "greeting");
    // Every command ends with a line end; a STARTTLS has a second OK after the handshake.
    let lines = input.iter().filter(|&&b| b == b'\n').count();
    let upper = input.to_ascii_uppercase();
    let starttls = upper.windows(8).filter(|w| w == b"STARTTLS").count();
    assert!(
        statuses.len() <= lines + starttls + 2,
        "{} statuses for {lines} client lines",
        statuses.len()
    );
}

/// Outbound jobs for fuzzed client sessions: queue id, sender, recipients, message.
const CLIENT_JOBS: [(&str, &str, &[&str], &[u8]); 3] = [
    (
        "Q1",
        "alice@example.test",
        &["bob@remote.example"],
        b"Subject: one\r\n\r\nhello\r\n.dot\r\n",
    ),
    (
        "Q2",
        "",
        &["a@remote.example", "b@remote.example", "c@remote.example"],
        b"Subject: bounce\r\n\r\nno final line end",
    ),
    (
        "Q3",
        "carol@example.test",
        &["d@remote.example", "\u{e9}@remote.example"],
        b"Subject: two\r\n\r\n\xc3\xa9\r\n.\r\n..\r\n",
    ),
];

/// The outbound SMTP client ([`petrel_core::smtp::client::SmtpClient`]) through the real
/// [`Pump`], fed arbitrary server replies in arbitrary splits.
///
/// Byte 0: bits 0-1 the number of jobs (0 to 3), bits 2-3 the TLS policy (none, opportunistic,
/// required), bit 4 AUTH credentials, bit 5 every other queue read fails, bit 6 every other
/// report fails, bit 7 the command timeout at the end. Byte 1: read and write splits. The rest
/// is what the server sends. Checks: every job reported exactly once, in order, with its own
/// recipients in order, before the session closes; queue reads only for the job being sent, at
/// increasing offsets inside the message; no bare LF in the output (the messages have none); bounded buffers, a bounded
/// run, no request left unanswered.
pub fn smtp_client(data: &[u8]) {
    run_smtp_client(data);
}

/// [`smtp_client`], returning every report (queue id and results).
pub fn run_smtp_client(
    data: &[u8],
) -> Vec<(String, Vec<(String, petrel_core::smtp::client::RcptResult)>)> {
    use petrel_core::effect::Secret;
    use petrel_core::smtp::client::{ClientConfig, OutboundJob, SmtpClient, TlsPolicy};
    let ([flags, split], replies) = header::<2>(data);
    let mut config = ClientConfig::new("client.example.test");
    config.tls = match (flags >> 2) & 3 {
        0 => TlsPolicy::None,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Required,
    };
    if flags & 0x10 != 0 {
        config.auth = Some(("alice".into(), Secret::new("pw".into())));
    }
    config.max_line = 512;
    let jobs: Vec<OutboundJob> = CLIENT_JOBS
        .iter()
        .take(usize::from(flags & 3))
        .map(|(id, sender, rcpts, body)| OutboundJob {
            id: (*id).into(),
            sender: (*sender).into(),
            recipients: rcpts.iter().map(|r| (*r).into()).collect(),
            size: body.len() as u64,
            eight_bit: !body.is_ascii(),
            smtputf8: rcpts.iter().any(|r| !r.is_ascii()),
        })
        .collect();
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    };
    let start = Instant::now();
    let client = SmtpClient::new(Arc::new(config), jobs.clone(), start);
    let pump = Pump::new(Box::new(client));
    let (mut reports, mut calls, mut last_offset) = (0usize, 0u64, None::<u64>);
    let mut reported = Vec::new();
    let (written, _) = drive(pump, start, replies, split, flags & 0x80 != 0, &tls, |e| {
        calls += 1;
        match e {
            Effect::ReadQueued { id, offset, max } => {
                let job = jobs
                    .get(reports)
                    .unwrap_or_else(|| panic!("read of {id} after every job was reported"));
                assert_eq!(id, job.id, "read of a job other than the current one");
                assert!(max > 0, "read of zero bytes");
                assert!(
                    last_offset.is_none_or(|o| offset >= o),
                    "queue read went backwards"
                );
                last_offset = Some(offset);
                if flags & 0x20 != 0 && calls.is_multiple_of(2) {
                    return Completion::Failed(StoreError {
                        class: ErrorClass::Temporary,
                        message: "fuzz".into(),
                    });
                }
                let body = CLIENT_JOBS[reports].3;
                let at = usize::try_from(offset).unwrap_or(usize::MAX);
                assert!(at <= body.len(), "read past the end of the message");
                Completion::Data(body[at..body.len().min(at + max)].to_vec())
            }
            Effect::Report { id, results } => {
                let job = jobs
                    .get(reports)
                    .unwrap_or_else(|| panic!("report {id} after every job was reported"));
                assert_eq!(id, job.id, "jobs reported out of order or twice");
                let rcpts: Vec<&String> = results.iter().map(|(r, _)| r).collect();
                let expected: Vec<&String> = job.recipients.iter().collect();
                assert_eq!(rcpts, expected, "report of {id} with other recipients");
                reports += 1;
                reported.push((id, results));
                last_offset = None;
                if flags & 0x40 != 0 && calls.is_multiple_of(2) {
                    return Completion::Failed(StoreError {
                        class: ErrorClass::Temporary,
                        message: "fuzz".into(),
                    });
                }
                Completion::Done
            }
            other => panic!("unexpected effect {other:?}"),
        }
    });
    assert_eq!(reports, jobs.len(), "closed with jobs never reported");
    // (A BDAT chunk is sent as it is, so the output may end inside a line.)
    for line in written.split_inclusive(|&b| b == b'\n') {
        assert!(
            line.ends_with(b"\r\n") || !line.ends_with(b"\n"),
            "bare LF from the client: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    reported
}

/// A DNS response to `query` built from fuzz bytes: byte 0-1 the flags (QR always set), byte 2
/// the answer count, the rest the answer section after the query's own question.
fn dns_response(query: &[u8], payload: &[u8]) -> Vec<u8> {
    let ([f0, f1, an], records) = header::<3>(payload);
    // The question: the name's labels up to the root, then type and class.
    let mut end = 12;
    while let Some(&len) = query.get(end) {
        end += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    end = (end + 4).min(query.len());
    let mut out = vec![0u8; 12];
    out[..2].copy_from_slice(&query[..2.min(query.len())]);
    out[2] = f0 | 0x80;
    out[3] = f1;
    out[5] = 1;
    out[7] = an;
    out.extend_from_slice(query.get(12..end).unwrap_or(&[]));
    out.extend_from_slice(records);
    out
}

/// A [`petrel_core::dns::Lookup`] fed arbitrary UDP and TCP responses and timeouts.
///
/// Byte 0: bits 0-2 the record type, bits 3-4 the number of servers (1 to 3), bits 5-6 the
/// attempts (1 to 3). Then events, each an op byte and a length byte then that many bytes:
/// op bits 0-1 choose a UDP datagram from the server asked, a TCP result from it, a timeout
/// or a datagram from another server (or a UDP error when bit 2 is set); bit 3 sends the bytes
/// as they are (with the query's id) instead of as the answer section of a response to the
/// question ([`dns_response`]); bit 2 on a TCP result makes it an error. Checks: no panic; a
/// transmit only to a configured server while unfinished; `poll_timeout` is `None` exactly
/// when the result is known; a result never changes; records are of the asked type and never
/// empty; at most 2 x attempts x servers transmits per question and at most `max_cname_chain`
/// + 1 questions; and once the events run out, at most attempts x servers timeouts end it.
pub fn dns_lookup(data: &[u8]) {
    run_dns_lookup(data);
}

/// [`dns_lookup`], returning the answer.
pub fn run_dns_lookup(data: &[u8]) -> Answer {
    use petrel_core::dns::{Lookup, RecordType, ResolverConfig, Transmit};
    use std::net::SocketAddr;
    let ([mode], mut events) = header::<1>(data);
    let rtype = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Mx,
        RecordType::Txt,
        RecordType::Ptr,
        RecordType::Cname,
    ][usize::from(mode & 7) % 6];
    let servers: Vec<SocketAddr> = ["192.0.2.53:53", "[2001:db8::53]:53", "198.51.100.53:5353"]
        .iter()
        .take(1 + usize::from((mode >> 3) & 3).min(2))
        .map(|s| s.parse().expect("server address"))
        .collect();
    let stranger: SocketAddr = "203.0.113.9:53".parse().expect("address");
    let config = ResolverConfig {
        attempts: 1 + u32::from((mode >> 5) & 3).min(2),
        max_cname_chain: 3,
        max_response: 4096,
        ..ResolverConfig::default()
    };
    let tries = servers.len() * config.attempts as usize;
    let max_transmits = 2 * tries * (config.max_cname_chain as usize + 1);
    let start = Instant::now();
    let mut now = start;
    let name = ["mail.example.test", "Example.TEST.", "a.b"][usize::from(mode >> 7)];
    let mut lookup = Lookup::new(name, rtype, &servers, &config, u64::from(mode), now);
    let mut last: Option<Transmit> = None;
    let mut transmits = 0;
    let mut result = None;
    let mut check = |lookup: &mut Lookup, last: &mut Option<Transmit>| {
        if let Some(t) = lookup.poll_transmit() {
            transmits += 1;
            assert!(
                transmits <= max_transmits,
                "more than {max_transmits} tries"
            );
            let (Transmit::Udp { server, .. } | Transmit::Tcp { server, .. }) = &t;
            assert!(servers.contains(server), "transmit to {server}");
            *last = Some(t);
        }
        assert!(lookup.poll_transmit().is_none(), "two transmits at once");
        assert_eq!(
            lookup.poll_timeout().is_none(),
            lookup.result().is_some(),
            "timeout and result disagree"
        );
        if let Some(r) = &result {
            assert_eq!(lookup.result(), Some(r), "the result changed");
        }
        result = lookup.result().cloned();
    };
    check(&mut lookup, &mut last);
    while let [op, len, rest @ ..] = events {
        let n = usize::from(*len).min(rest.len());
        let (payload, tail) = rest.split_at(n);
        events = tail;
        let Some(t) = &last else { break };
        let (Transmit::Udp { server, bytes } | Transmit::Tcp { server, bytes }) = t;
        let (server, query) = (*server, bytes.clone());
        let response = if op & 8 != 0 {
            let mut raw = payload.to_vec();
            if raw.len() >= 2 {
                raw[..2].copy_from_slice(&query[..2]);
            }
            raw
        } else {
            dns_response(&query, payload)
        };
        match op & 3 {
            0 => lookup.handle_udp(now, server, &response),
            1 if op & 4 != 0 => lookup.handle_tcp(now, server, Err("fuzz".into())),
            1 => lookup.handle_tcp(now, server, Ok(response)),
            2 => {
                if let Some(d) = lookup.poll_timeout() {
                    now = now.max(d);
                }
                lookup.handle_timeout(now);
            }
            _ if op & 4 != 0 => lookup.handle_udp_error(now, server, "refused"),
            _ => lookup.handle_udp(now, stranger, &response),
        }
        check(&mut lookup, &mut last);
    }
    // Out of events: only timeouts from now on, and they end it.
    for _ in 0..tries {
        let Some(d) = lookup.poll_timeout() else {
            break;
        };
        now = now.max(d);
        lookup.handle_timeout(now);
        check(&mut lookup, &mut last);
    }
    let answer = lookup
        .result()
        .unwrap_or_else(|| panic!("not finished after {tries} timeouts"));
    if let petrel_core::dns::Answer::Records { records, .. } = answer {
        use petrel_core::dns::Record;
        assert!(!records.is_empty(), "empty records");
        for r in records {
            let ok = matches!(
                (rtype, r),
                (RecordType::A, Record::A(_))
                    | (RecordType::Aaaa, Record::Aaaa(_))
                    | (RecordType::Mx, Record::Mx { .. })
                    | (RecordType::Txt, Record::Txt(_))
                    | (RecordType::Ptr, Record::Ptr(_))
                    | (RecordType::Cname, Record::Cname(_))
            );
            assert!(ok, "{r:?} for a {rtype:?} lookup");
        }
    }
    answer.clone()
}

/// Separates the parts of a `dkim_verify` input: the message, then one key record per part.
const PART: &[u8] = b"\n@@\n";

fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(PART.len()).position(|w| w == PART) {
        out.push(&rest[..i]);
        rest = &rest[i + PART.len()..];
    }
    out.push(rest);
    out
}

/// The answer a fuzz part stands for: `!T` temporary failure, `!N` NXDOMAIN, `!D` no data,
/// `!P` permanent failure, anything else one TXT record (`!!` separates several).
fn txt_answer(name: &str, part: Option<&[u8]>) -> petrel_core::dns::Answer {
    use petrel_core::dns::{Answer, Record};
    match part {
        None | Some(b"!N") => Answer::NxDomain,
        Some(b"!T") => Answer::TempFail("fuzz".into()),
        Some(b"!D") => Answer::NoData,
        Some(b"!P") => Answer::PermFail("fuzz".into()),
        Some(txt) => {
            let mut records = Vec::new();
            let mut rest = txt;
            while let Some(i) = rest.windows(2).position(|w| w == b"!!") {
                records.push(Record::Txt(rest[..i].to_vec()));
                rest = &rest[i + 2..];
            }
            records.push(Record::Txt(rest.to_vec()));
            Answer::Records {
                records,
                ttl: 300,
                canonical_name: name.to_string(),
            }
        }
    }
}

/// Verifies `message` fed in `mode`/`seed` pieces, answering the i-th key query with `keys[i]`.
fn dkim_run(
    message: &[u8],
    keys: &[&[u8]],
    mode: u8,
    seed: u64,
    limits: &petrel_core::dkim::VerifyLimits,
) -> Vec<petrel_core::dkim::SignatureResult> {
    use petrel_core::dkim::Verifier;
    let mut rng = SplitMix::new(seed);
    let mut v = Verifier::new(limits.clone());
    let mut pos = 0;
    while pos < message.len() {
        let n = chunk_len(mode, &mut rng, message.len() - pos);
        v.feed(&message[pos..pos + n]);
        pos += n;
    }
    v.finish_body();
    let queries = v.key_queries();
    for (i, q) in queries.iter().enumerate() {
        assert_eq!(
            queries.iter().filter(|o| *o == q).count(),
            1,
            "{q} asked twice"
        );
        v.key_answer(q, &txt_answer(q, keys.get(i).copied()));
    }
    assert!(v.key_queries().is_empty(), "keys still asked after answers");
    v.results(1_795_525_920)
}

/// [`petrel_core::dkim::Verifier`] over an arbitrary message and arbitrary key TXT answers.
///
/// Byte 0 and 1: a split of the message; the rest is the message, then key answers separated by
/// `\n@@\n` ([`txt_answer`]), given to the key queries in order. Checks: no panic, one result per
/// DKIM-Signature field of the header (up to `max_signatures`), the same results for the whole
/// message and the split one, and a `pass` only for a signature with a key answered.
pub fn dkim_verify(data: &[u8]) {
    run_dkim_verify(data);
}

/// [`dkim_verify`], returning the results.
pub fn run_dkim_verify(data: &[u8]) -> Vec<petrel_core::dkim::SignatureResult> {
    use petrel_core::dkim::{DkimResult, VerifyLimits, split_header};
    let ([mode, seed], rest) = header::<2>(data);
    let parts = parts(rest);
    let (message, keys) = (parts[0], &parts[1..]);
    let limits = VerifyLimits {
        max_signatures: 3,
        max_header_bytes: 8 * 1024,
        min_rsa_bits: 1024,
    };
    let whole = dkim_run(message, keys, 0, 0, &limits);
    let split = dkim_run(message, keys, mode, u64::from(seed), &limits);
    assert_eq!(whole, split, "split {mode}/{seed} changed the results");
    assert!(whole.len() <= limits.max_signatures, "too many results");
    let header = if message.starts_with(b"\r\n") {
        &message[..0]
    } else {
        match message.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => &message[..i + 2],
            None => message,
        }
    };
    if header.len() <= limits.max_header_bytes {
        let fields = split_header(header)
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("dkim-signature"))
            .count();
        assert_eq!(
            whole.len(),
            fields.min(limits.max_signatures),
            "results for {fields} DKIM-Signature fields"
        );
    }
    if keys.is_empty() {
        assert!(
            whole.iter().all(|r| r.result != DkimResult::Pass),
            "pass without a key"
        );
    }
    whole
}

/// Reads DNS answers for [`spf_check`] and [`mail_auth`] from fuzz bytes; out of bytes, every
/// answer is NXDOMAIN.
struct Answers<'a>(&'a [u8]);

impl Answers<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// A name: a length byte and that many bytes, as text.
    fn name(&mut self) -> String {
        let n = self.byte().unwrap_or(0);
        String::from_utf8_lossy(self.bytes(usize::from(n))).into_owned()
    }

    /// The answer to `(name, rtype)`: a kind byte (temporary failure, NXDOMAIN, no data,
    /// permanent failure, records), then for records a count and that many records of the
    /// asked type (or of another, when bit 7 of the kind is set).
    fn answer(&mut self, name: &str, rtype: petrel_core::dns::RecordType) -> Answer {
        use petrel_core::dns::{Record, RecordType as T};
        let Some(kind) = self.byte() else {
            return Answer::NxDomain;
        };
        match kind & 7 {
            0 => return Answer::TempFail("fuzz".into()),
            1 => return Answer::NxDomain,
            2 => return Answer::NoData,
            3 => return Answer::PermFail("fuzz".into()),
            _ => {}
        }
        let types = [T::A, T::Aaaa, T::Mx, T::Txt, T::Ptr, T::Cname];
        let count = 1 + usize::from(kind >> 4 & 7);
        let mut records = Vec::new();
        for _ in 0..count {
            let t = if kind & 8 != 0 {
                types[usize::from(self.byte().unwrap_or(0)) % types.len()]
            } else {
                rtype
            };
            records.push(match t {
                T::A => {
                    let b = self.bytes(4);
                    let mut a = [192, 0, 2, 1];
                    a[..b.len()].copy_from_slice(b);
                    Record::A(a.into())
                }
                T::Aaaa => {
                    let b = self.bytes(16);
                    let mut a = [0u8; 16];
                    a[..b.len()].copy_from_slice(b);
                    Record::Aaaa(a.into())
                }
                T::Mx => Record::Mx {
                    preference: u16::from(self.byte().unwrap_or(10)),
                    exchange: self.name(),
                },
                T::Txt => {
                    let n = self.byte().unwrap_or(0);
                    Record::Txt(self.bytes(usize::from(n)).to_vec())
                }
                T::Ptr => Record::Ptr(self.name()),
                T::Cname => Record::Cname(self.name()),
            });
        }
        Answer::Records {
            records,
            ttl: 300,
            canonical_name: name.to_string(),
        }
    }
}

/// Lookups one SPF check may need: the record, 10 DNS terms each with up to 10 MX or PTR names
/// asked for A and AAAA, the explanation, and a margin.
const MAX_SPF_LOOKUPS: usize = 1 + 10 * (1 + 2 * 10) + 1 + 8;

/// [`petrel_core::spf::SpfCheck`] with arbitrary TXT, A, AAAA, MX and PTR answers.
///
/// Byte 0: bit 0 an IPv6 client, bits 1-2 the domain, bit 3 the null sender; the rest are the
/// answers, in the order the check asks ([`Answers`]). Checks: no panic, never stuck (no
/// queries means an outcome), an outcome within [`MAX_SPF_LOOKUPS`] lookups and as many rounds,
/// each question asked once, and an outcome that explains itself (temperror and permerror carry
/// a problem, only fail an explanation, of bounded length).
pub fn spf_check(data: &[u8]) {
    run_spf_check(data);
}

/// [`spf_check`], returning the outcome.
pub fn run_spf_check(data: &[u8]) -> petrel_core::spf::SpfOutcome {
    use petrel_core::spf::{MAX_EXPLANATION, SpfCheck, SpfLimits, SpfResult};
    let ([mode], rest) = header::<1>(data);
    let ip: std::net::IpAddr = if mode & 1 != 0 {
        "2001:db8::25".parse().expect("ip")
    } else {
        "192.0.2.25".parse().expect("ip")
    };
    let domain = ["example.test", "Sub.Example.Test.", "x", "a..b"][usize::from(mode >> 1 & 3)];
    let sender = if mode & 8 != 0 {
        String::new()
    } else {
        format!("alice@{domain}")
    };
    let mut check = SpfCheck::new(
        ip,
        domain,
        &sender,
        "helo.example.test",
        "mx.example.test",
        1_795_525_920,
        SpfLimits::default(),
    );
    let mut answers = Answers(rest);
    let mut asked = BTreeSet::new();
    let mut rounds = 0;
    while check.outcome().is_none() {
        rounds += 1;
        assert!(
            rounds <= MAX_SPF_LOOKUPS,
            "no outcome after {rounds} rounds"
        );
        let queries = check.queries();
        assert!(!queries.is_empty(), "no outcome and nothing to ask");
        for (name, rtype) in queries {
            assert!(
                asked.insert((name.clone(), format!("{rtype:?}"))),
                "{name} {rtype:?} asked twice"
            );
            assert!(
                asked.len() <= MAX_SPF_LOOKUPS,
                "more than {MAX_SPF_LOOKUPS} lookups"
            );
            let answer = answers.answer(&name, rtype);
            check.answer(&name, rtype, &answer);
        }
    }
    let outcome = check.outcome().expect("outcome");
    assert!(check.queries().is_empty(), "queries after the outcome");
    if matches!(outcome.result, SpfResult::TempError | SpfResult::PermError) {
        assert!(outcome.problem.is_some(), "{outcome:?} without a problem");
    }
    if let Some(e) = &outcome.explanation {
        assert_eq!(outcome.result, SpfResult::Fail, "explanation without fail");
        assert!(
            e.len() <= MAX_EXPLANATION,
            "explanation of {} bytes",
            e.len()
        );
    }
    outcome.clone()
}

/// Checks that `header` is one RFC 5322 field named Authentication-Results: CRLF line ends, no
/// other CR or LF, continuation lines starting with a tab, printable ASCII.
fn check_auth_results(header: &str) {
    assert!(
        header.starts_with("Authentication-Results: "),
        "not an Authentication-Results field: {header:?}"
    );
    assert!(header.ends_with("\r\n"), "no final CRLF: {header:?}");
    let body = &header[..header.len() - 2];
    for (i, line) in body.split("\r\n").enumerate() {
        assert!(!line.contains(['\r', '\n']), "bare CR or LF in {header:?}");
        assert!(
            i == 0 || line.starts_with('\t'),
            "continuation line without a tab in {header:?}"
        );
        assert!(
            line.trim_start_matches('\t').chars().any(|c| c != ' '),
            "blank line in {header:?}"
        );
        assert!(
            line.chars().all(|c| c == '\t' || (' '..='~').contains(&c)),
            "unprintable in {header:?}"
        );
    }
}

/// [`petrel_core::auth::MessageAuth`] over an arbitrary message and arbitrary answers.
///
/// Byte 0: bits 0-1 the failure policy, bit 2 an IPv6 client, bits 3-4 the split. Then the HELO
/// name and the MAIL FROM address (a length byte and the text each), a length (two bytes,
/// big-endian) and the message; the rest are DNS answers in the order asked ([`Answers`]).
/// Checks: no panic, never stuck, an outcome within a bounded number of rounds, and its header
/// one well-formed field ([`check_auth_results`]).
pub fn mail_auth(data: &[u8]) {
    run_mail_auth(data);
}

/// [`mail_auth`], returning the outcome.
pub fn run_mail_auth(data: &[u8]) -> petrel_core::auth::AuthOutcome {
    use petrel_core::auth::{FailurePolicy, MessageAuth};
    let ([mode], rest) = header::<1>(data);
    let mut input = Answers(rest);
    let helo = input.name();
    let mail_from = input.name();
    let len = input.bytes(2);
    let len = usize::from(len.first().copied().unwrap_or(0)) << 8
        | usize::from(len.get(1).copied().unwrap_or(0));
    let message = input.bytes(len).to_vec();
    let policy = [
        FailurePolicy::Follow,
        FailurePolicy::Ignore,
        FailurePolicy::Quarantine,
        FailurePolicy::Reject,
    ][usize::from(mode & 3)];
    let ip: std::net::IpAddr = if mode & 4 != 0 {
        "2001:db8::25".parse().expect("ip")
    } else {
        "192.0.2.25".parse().expect("ip")
    };
    let mut auth = MessageAuth::new(
        "mx.example.test",
        policy,
        ip,
        &helo,
        &mail_from,
        1_795_525_920,
    );
    let mut rng = SplitMix::new(u64::from(mode));
    let mut pos = 0;
    while pos < message.len() {
        let n = chunk_len(mode >> 3, &mut rng, message.len() - pos);
        auth.feed(&message[pos..pos + n]);
        pos += n;
    }
    assert!(
        auth.outcome().is_none(),
        "an outcome before the message ended"
    );
    auth.finish_message();
    // SPF's bound, the DKIM keys (5 signatures) and two DMARC policies.
    let max_rounds = MAX_SPF_LOOKUPS + 5 + 2;
    let mut rounds = 0;
    let outcome = loop {
        if let Some(o) = auth.outcome() {
            break o;
        }
        rounds += 1;
        assert!(rounds <= max_rounds, "no outcome after {rounds} rounds");
        let queries = auth.queries();
        assert!(!queries.is_empty(), "no outcome and nothing to ask");
        for (name, rtype) in queries {
            let answer = input.answer(&name, rtype);
            auth.answer(&name, rtype, &answer);
        }
    };
    check_auth_results(&outcome.header);
    outcome
}

/// The MTA-STS parsers ([`petrel_core::mta_sts`]) on arbitrary bytes: the TXT record, its
/// discovery, the policy file, the cache file and the HTTP response. Checks: no panic; a parsed
/// record id is 1 to 32 letters and digits; a parsed policy has lowercase MX patterns, a
/// `max_age` within the limit, and prints to text that parses back to itself; a cache entry
/// round-trips; an HTTP response read in pieces stays complete once complete, with a bounded UTF-8
/// body, and is always complete past `MAX_RESPONSE` or at the end of the connection.
pub fn mta_sts_policy(data: &[u8]) {
    use petrel_core::dns::Record;
    use petrel_core::mta_sts::{
        CachedPolicy, HttpParse, MAX_AGE_LIMIT, MAX_POLICY_BODY, MAX_RESPONSE, discover,
        mx_matches, parse_http_response, parse_policy, parse_record,
    };
    if let Ok(r) = parse_record(data) {
        assert!(
            !r.id.is_empty() && r.id.len() <= 32 && r.id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "record id {:?}",
            r.id
        );
    }
    let answer = Answer::Records {
        records: vec![Record::Txt(data.to_vec())],
        ttl: 300,
        canonical_name: "_mta-sts.example.test".into(),
    };
    let _ = discover(&answer);
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = parse_policy(&text) {
        assert!(p.max_age <= MAX_AGE_LIMIT, "max_age {}", p.max_age);
        for mx in &p.mx {
            assert_eq!(mx, &mx.to_ascii_lowercase(), "MX pattern not lowercase");
            let host = mx
                .strip_prefix("*.")
                .map_or(mx.clone(), |s| format!("a.{s}"));
            assert!(
                mx.is_empty() || mx_matches(mx, &host) || host.ends_with('.'),
                "{mx:?} does not match {host:?}"
            );
        }
        let again = parse_policy(&p.to_text());
        assert_eq!(again.as_ref(), Ok(&p), "policy does not round-trip");
    }
    if let Ok(c) = CachedPolicy::from_bytes(data) {
        assert_eq!(
            CachedPolicy::from_bytes(&c.to_bytes()).as_ref(),
            Ok(&c),
            "cache entry does not round-trip"
        );
    }
    // The response as it arrives: never done before a shorter prefix was done.
    let mut cuts: Vec<usize> = (1..8).map(|i| data.len() * i / 8).collect();
    cuts.push(data.len());
    cuts.dedup();
    let mut done_at = None;
    for &cut in &cuts {
        match parse_http_response(&data[..cut], false) {
            HttpParse::Incomplete => {
                assert!(cut < MAX_RESPONSE, "incomplete past MAX_RESPONSE");
            }
            HttpParse::Done(r) => {
                if let Ok(body) = &r {
                    assert!(body.len() <= MAX_POLICY_BODY, "body of {}", body.len());
                }
                done_at.get_or_insert(cut);
            }
        }
        if done_at.is_some() {
            assert!(
                matches!(parse_http_response(&data[..cut], false), HttpParse::Done(_)),
                "done at {done_at:?} bytes, incomplete at {cut}"
            );
        }
    }
    if let HttpParse::Done(Ok(body)) = parse_http_response(data, true) {
        assert!(body.len() <= MAX_POLICY_BODY, "body of {}", body.len());
    } else if matches!(parse_http_response(data, true), HttpParse::Incomplete) {
        panic!("incomplete at the end of the connection");
    }
}

/// Seeds of the protocol targets added after the SMTP and POP3 ones.
fn protocol_seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "managesieve_session" => managesieve_seeds(),
        "smtp_client" => smtp_client_seeds(),
        "dns_lookup" => dns_seeds(),
        "dkim_verify" => dkim_seeds(),
        "spf_check" => spf_seeds(),
        "mail_auth" => mail_auth_seeds(),
        "mta_sts_policy" => mta_sts_seeds(),
        "imap_parser" => imap_parser_seeds(),
        "imap_session" => imap_session_seeds(),
        _ => Vec::new(),
    }
}

fn managesieve_seeds() -> Vec<Vec<u8>> {
    const SCRIPTS: &[&[u8]] = &[
        b"CAPABILITY\r\nLISTSCRIPTS\r\nPUTSCRIPT \"a\" {27+}\r\nrequire \"fileinto\";\r\nkeep;\r\nLISTSCRIPTS\r\nSETACTIVE \"a\"\r\nGETSCRIPT \"a\"\r\nDELETESCRIPT \"a\"\r\nSETACTIVE \"\"\r\nDELETESCRIPT \"a\"\r\nLOGOUT\r\n",
        b"HAVESPACE \"x\" 100\r\nCHECKSCRIPT {9+}\r\nkeep;\r\nx\r\nPUTSCRIPT \"bad\" \"if true {\"\r\nPUTSCRIPT \"b\" \"discard;\"\r\nRENAMESCRIPT \"b\" \"c\"\r\nRENAMESCRIPT \"nope\" \"d\"\r\nGETSCRIPT \"c\"\r\nNOOP \"tag\"\r\nUNAUTHENTICATE\r\nLISTSCRIPTS\r\n",
        b"LISTSCRIPTS\r\nAUTHENTICATE \"PLAIN\"\r\n\"AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\"\r\nAUTHENTICATE \"PLAIN\" {32+}\r\nAGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nCAPABILITY\r\nPUTSCRIPT \".x\" \"keep;\"\r\nPUTSCRIPT \"a/b\" \"keep;\"\r\n",
        b"STARTTLS\r\nCAPABILITY\r\nAUTHENTICATE \"PLAIN\" \"*\"\r\nAUTHENTICATE \"X\"\r\nBOGUS\r\n\"\r\n{99999999999}\r\nLOGOUT\r\n",
        b"PUTSCRIPT \"a\" {5}\r\nkeep;\r\nPUTSCRIPT \"b\" \"keep;\"\r\nPUTSCRIPT \"c\" \"keep;\"\r\nPUTSCRIPT \"d\" \"keep;\"\r\nSETACTIVE \"b\"\r\nRENAMESCRIPT \"b\" \"z\"\r\nDELETESCRIPT \"z\"\r\nLISTSCRIPTS\r\n",
    ];
    let mut out = Vec::new();
    for s in SCRIPTS {
        for (flags, split, fail) in [(0x80u8, 0u8, 0u8), (0x80, 0x0a, 2), (0x80, 0x05, 0)] {
            out.push([&[flags, split, fail][..], s].concat());
        }
        out.push([&[0x20, 0x0f, 1][..], s].concat());
    }
    out
}

fn smtp_client_seeds() -> Vec<Vec<u8>> {
    const REPLIES: &[&[u8]] = &[
        b"220 mx.remote.example ESMTP\r\n250-mx.remote.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n",
        b"220 mx\r\n250-mx\r\n250-CHUNKING\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n",
        b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n250-mx\r\n250 AUTH PLAIN LOGIN\r\n235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n",
        b"220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n451 4.3.0 try later\r\n221 bye\r\n",
        b"220 mx\r\n500 what\r\n250 mx\r\n250 ok\r\n452 too many\r\n421 4.3.2 shutting down\r\n",
        b"554 no service\r\n",
        b"220-mx\r\n220 hi\r\n250 mx\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n250 ok\r\n250 ok\r\n",
    ];
    let mut out = Vec::new();
    for r in REPLIES {
        for (flags, split) in [(0x07u8, 0u8), (0x13, 0x0a), (0x0b, 0x05), (0x21, 0x0e)] {
            out.push([&[flags, split][..], r].concat());
        }
    }
    out
}

/// A record for a `dns_lookup` seed: the queried name (a pointer to offset 12), type, class
/// IN, TTL 300 and `rdata`.
fn dns_record(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = vec![0xc0, 0x0c];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0, 0, 1, 0x2c]);
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

fn dns_seeds() -> Vec<Vec<u8>> {
    let event =
        |op: u8, payload: &[u8]| -> Vec<u8> { [&[op, payload.len() as u8][..], payload].concat() };
    // Response payloads: flags (RD, RA), answer count, records.
    let answer = |rcode: u8, records: &[Vec<u8>]| -> Vec<u8> {
        [
            &[0x01, 0x80 | rcode, records.len() as u8][..],
            &records.concat(),
        ]
        .concat()
    };
    let a = dns_record(1, &[192, 0, 2, 7]);
    let aaaa = dns_record(
        28,
        &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    let mx = dns_record(15, b"\x00\x0a\x02mx\xc0\x0c");
    let null_mx = dns_record(15, b"\x00\x00\x00");
    let txt = dns_record(16, b"\x0bv=spf1 -all\x04more");
    let ptr = dns_record(12, b"\x04host\xc0\x0c");
    let cname = dns_record(5, b"\x05alias\x07example\x04test\x00");
    let truncated = [&[0x03u8, 0x80, 0][..]].concat();
    let mut out = vec![
        // A in one datagram; AAAA; MX; TXT; PTR; CNAME.
        [&[0u8][..], &event(0, &answer(0, std::slice::from_ref(&a)))].concat(),
        [
            &[1u8][..],
            &event(0, &answer(0, std::slice::from_ref(&aaaa))),
        ]
        .concat(),
        [&[2u8][..], &event(0, &answer(0, &[mx.clone(), null_mx]))].concat(),
        [
            &[3u8][..],
            &event(0, &answer(0, std::slice::from_ref(&txt))),
        ]
        .concat(),
        [
            &[4u8][..],
            &event(0, &answer(0, std::slice::from_ref(&ptr))),
        ]
        .concat(),
        [
            &[5u8][..],
            &event(0, &answer(0, std::slice::from_ref(&cname))),
        ]
        .concat(),
        // A CNAME to follow, then the target's address.
        [
            &[0u8][..],
            &event(0, &answer(0, std::slice::from_ref(&cname))),
            &event(0, &answer(0, std::slice::from_ref(&a))),
        ]
        .concat(),
        // Truncated over UDP, then over TCP; then a TCP error.
        [
            &[0x2bu8][..],
            &event(0, &truncated),
            &event(1, &answer(0, std::slice::from_ref(&txt))),
        ]
        .concat(),
        [&[0x2bu8][..], &event(0, &truncated), &event(5, b"")].concat(),
        // SERVFAIL from one server, NXDOMAIN from the next; timeouts; strangers.
        [
            &[0x08u8][..],
            &event(0, &answer(2, &[])),
            &event(0, &answer(3, &[])),
        ]
        .concat(),
        [
            &[0x70u8][..],
            &event(2, b""),
            &event(3, &answer(0, std::slice::from_ref(&a))),
            &event(7, b""),
            &event(2, b""),
            &event(0, &answer(5, &[])),
            &event(8, b"\x00\x00\x81\x80"),
        ]
        .concat(),
        // NOERROR without records; FORMERR.
        [&[0x80u8][..], &event(0, &answer(0, &[]))].concat(),
        [&[0x02u8][..], &event(0, &answer(1, &[]))].concat(),
    ];
    out.push([&[0x1au8][..], &event(0, &answer(0, &[mx]))].concat());
    out
}

/// The Ed25519 key of RFC 8463 A.1 as PKCS#8 (as core's DKIM tests build it), to sign the
/// `dkim_verify` and `mail_auth` seeds; its record is `v=DKIM1; k=ed25519; p=11qY...`.
const SEED_DKIM_KEY: [u8; 48] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

/// Messages signed with [`SEED_DKIM_KEY`] by `example.test` selector `s1`, and the key record.
fn signed_messages() -> (Vec<Vec<u8>>, String) {
    use petrel_core::dkim::{Canon, Signer, SignerConfig, SigningKey};
    let key = Arc::new(SigningKey::from_pkcs8_der(&SEED_DKIM_KEY).expect("seed key"));
    let record = key.public_key_record();
    let messages: [&[u8]; 3] = [
        b"From: Alice <alice@example.test>\r\nTo: bob@remote.example\r\nSubject: hi\r\n\r\nHello.\r\n\r\n\r\n",
        b"from:alice@example.test\r\nSubject:  folded\r\n  subject \r\nX: 1\r\n\r\n body  with   spaces \r\nno end",
        b"From: a@sub.example.test\r\nDKIM-Signature: v=1; a=rsa-sha256; d=other.example; s=x; h=from; bh=AAAA; b=AAAA\r\n\r\n",
    ];
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut config = SignerConfig::new("example.test", "s1");
        if i == 1 {
            config.header_canon = Canon::Simple;
            config.body_canon = Canon::Simple;
            config.body_length = true;
            config.expire_after = Some(3600);
        }
        let mut signer = Signer::new(config, key.clone(), 1_795_525_000);
        signer.feed(m);
        let field = signer.finish().expect("sign seed");
        out.push([field.as_bytes(), m].concat());
    }
    (out, record)
}

fn dkim_seeds() -> Vec<Vec<u8>> {
    let (messages, record) = signed_messages();
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let split = [[0u8, 0], [1, 3], [2, 9], [3, 1]][i % 4];
        let key = record.as_bytes();
        out.push([&split[..], m, PART, key, PART, b"!N"].concat());
        out.push([&split[..], m, PART, b"!T"].concat());
        out.push([&split[..], m, PART, b"v=DKIM1; p=!!", key].concat());
        out.push([&[2u8, 5][..], m].concat());
    }
    out.push(b"\x00\x00DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/simple; d=example.test; s=e; h=from:from; l=3; x=1; t=2; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\nFrom: a@example.test\r\n\r\nabcdef\r\n\n@@\nv=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".to_vec());
    out.push(b"\x01\x07dkim-signature:\r\nDKIM-Signature: v=1; d=\r\nDkim-Signature: garbage\r\nDKIM-Signature: a=rsa-sha1\r\n\r\n".to_vec());
    out
}

/// A TXT answer for [`Answers`]: records kind with a count, then the records.
fn txt_records(texts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![4 | ((texts.len() as u8 - 1) << 4)];
    for t in texts {
        out.push(t.len() as u8);
        out.extend_from_slice(t);
    }
    out
}

fn spf_seeds() -> Vec<Vec<u8>> {
    let a = |ip: [u8; 4]| [&[4u8][..], &ip].concat();
    let mx = |name: &[u8]| [&[4u8, 10, name.len() as u8][..], name].concat();
    vec![
        [&[0u8][..], &txt_records(&[b"v=spf1 ip4:192.0.2.0/24 -all"])].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 a mx -all"]), &a([192, 0, 2, 25]), &mx(b"mx.example.test"), &a([192, 0, 2, 26])].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 include:_spf.example.test ~all", b"not spf"]), &txt_records(&[b"v=spf1 ip6:2001:db8::/32 ?all"])].concat(),
        [&[1u8][..], &txt_records(&[b"v=spf1 ip6:2001:db8::/32 exists:%{ir}.%{l1r+-}._spf.%{d} -all"]), &[1]].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 -all exp=explain.%{d}"]), &txt_records(&[b"%{i} is not one of %{d}'s servers"])].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 redirect=_spf.example.test"]), &[0]].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 ptr:example.test -all"]), &[4, 5, b'x', b'.', b't', b'e', b's'], &a([192, 0, 2, 25])].concat(),
        [&[2u8][..], &txt_records(&[b"v=spf1 include:a include:b include:c include:d include:e include:f include:g include:h include:i include:j include:k -all"])].concat(),
        [&[8u8][..], &[2]].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 +all", b"v=spf1 -all"])].concat(),
        [&[0u8][..], &txt_records(&[b"v=spf1 a:%{z} mx:%{d4}.x/24//64 -all"])].concat(),
    ]
}

fn mail_auth_seeds() -> Vec<Vec<u8>> {
    let (messages, record) = signed_messages();
    let mut out = Vec::new();
    let field = |s: &[u8]| [&[s.len() as u8][..], s].concat();
    for (i, m) in messages.iter().enumerate() {
        let len = (m.len() as u16).to_be_bytes();
        let answers = [
            txt_records(&[b"v=spf1 ip4:192.0.2.0/24 -all"]),
            txt_records(&[record.as_bytes().get(..255).unwrap_or(record.as_bytes())]),
            txt_records(&[b"v=DMARC1; p=reject; pct=100"]),
        ]
        .concat();
        out.push(
            [
                &[i as u8 * 9][..],
                &field(b"client.example.test"),
                &field(b"alice@example.test"),
                &len,
                m,
                &answers,
            ]
            .concat(),
        );
        out.push(
            [
                &[3u8][..],
                &field(b"h\"e;l(o)"),
                &field(b""),
                &len,
                m,
                &[1, 0, 2, 1, 1],
            ]
            .concat(),
        );
    }
    out
}

fn mta_sts_seeds() -> Vec<Vec<u8>> {
    [
        &b"v=STSv1; id=20190429T010101;"[..],
        b"v=STSv1;id=abc ; ext=1",
        b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        b"version: STSv1\nmode: none\nmax_age: 0\n",
        b"id: abc123\nfetched: 1700000000\n\nversion: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 99999999999\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 61\r\n\r\nversion: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nversi\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-type: TEXT/PLAIN\r\n\r\nversion: STSv1\n",
        b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

// ----- IMAP: the command parser and the whole session -----

/// What [`imap_parse`] saw: parser results in order, with the bytes of consecutive
/// [`Parsed::AppendData`] results merged (their number depends on the split, their bytes not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapParsed {
    /// Any result but `Incomplete` and `AppendData`.
    Result(petrel_core::imap::parser::Parsed),
    /// APPEND message bytes.
    Data(Vec<u8>),
}

/// Feeds `input` to an IMAP [`Parser`](petrel_core::imap::parser::Parser) in pieces cut by
/// `mode` and `seed`, acting as a session would: `flags` bit 0 starts with `expect_line`, bit 1
/// refuses every other synchronizing literal, bit 2 aborts every second APPEND message, bit 3
/// uses small limits; `expect_line` after every IDLE and AUTHENTICATE. Asserts progress (each
/// call consumes bytes or returns a result, `Incomplete` only once all is consumed) and never
/// more results than bytes consumed.
pub fn imap_parse(input: &[u8], mode: u8, seed: u64, flags: u8) -> Vec<ImapParsed> {
    use petrel_core::imap::command::CommandKind;
    use petrel_core::imap::parser::{Limits, Parsed, Parser};
    let limits = if flags & 8 != 0 {
        Limits {
            max_line: 64,
            max_literal: 16,
            max_command: 128,
            max_items: 8,
            max_depth: 4,
        }
    } else {
        Limits::default()
    };
    let mut parser = Parser::new(limits);
    if flags & 1 != 0 {
        parser.expect_line();
    }
    let mut rng = SplitMix::new(seed);
    let mut out: Vec<ImapParsed> = Vec::new();
    let (mut pos, mut results, mut continuations, mut appends) = (0, 0usize, 0u32, 0u32);
    while pos < input.len() {
        let end = pos + chunk_len(mode, &mut rng, input.len() - pos);
        while pos < end {
            let offered = end - pos;
            let (n, parsed) = parser.feed(&input[pos..end]);
            assert!(n <= offered, "consumed {n} of {offered}");
            if parsed == Parsed::Incomplete {
                assert_eq!(n, offered, "Incomplete with input left");
            } else {
                results += 1;
            }
            let data = &input[pos..pos + n];
            pos += n;
            assert!(
                results <= pos,
                "{results} results from {pos} bytes: no progress"
            );
            match parsed {
                Parsed::Incomplete => {}
                Parsed::AppendData => match out.last_mut() {
                    Some(ImapParsed::Data(d)) => d.extend_from_slice(data),
                    _ => out.push(ImapParsed::Data(data.to_vec())),
                },
                Parsed::NeedContinuation => {
                    continuations += 1;
                    if flags & 2 != 0 && continuations.is_multiple_of(2) {
                        parser.refuse_literal();
                    }
                    out.push(ImapParsed::Result(parsed));
                }
                Parsed::AppendStart(ref start) => {
                    appends += 1;
                    assert!(
                        parser.append_remaining() == start.size,
                        "{} bytes announced, {} expected",
                        start.size,
                        parser.append_remaining()
                    );
                    if flags & 4 != 0 && appends.is_multiple_of(2) {
                        parser.abort_append();
                    }
                    out.push(ImapParsed::Result(parsed));
                }
                Parsed::Command(ref c) => {
                    if matches!(c.kind, CommandKind::Idle | CommandKind::Authenticate { .. }) {
                        parser.expect_line();
                    }
                    out.push(ImapParsed::Result(parsed));
                }
                other => out.push(ImapParsed::Result(other)),
            }
        }
    }
    out
}

/// The IMAP command parser on any bytes in any split: no panic, progress on every call, never
/// more results than bytes, and the same results (commands, errors, APPEND data, raw lines) for
/// the input in one piece and cut as byte 0 (mode) and byte 1 (seed) say. Byte 2 holds the
/// flags of [`imap_parse`].
pub fn imap_parser(data: &[u8]) {
    let ([mode, seed, flags], input) = header::<3>(data);
    let whole = imap_parse(input, 0, 0, flags);
    let split = imap_parse(input, mode, u64::from(seed), flags);
    assert_eq!(whole, split, "split {mode}/{seed} changed the results");
    let bytes = imap_parse(input, 1, 0, flags);
    assert_eq!(whole, bytes, "byte by byte changed the results");
}

/// Messages of the fuzzed IMAP INBOX.
const IMAP_MESSAGES: [&[u8]; 3] = [
    b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Hello there\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nHi Bob,\r\nhow are you?\r\n",
    b"From: carol@example.test\r\nTo: alice@example.test\r\nCc: dave@example.test\r\nSubject: Lunch\r\n\r\nNoon at the usual place.\r\n{5}\r\n",
    b"From: eve@example.test\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n",
];

/// A message of a fuzzed IMAP folder.
#[derive(Debug, Clone)]
struct ImapMsg {
    meta: petrel_core::imap::request::MessageMeta,
    bytes: Vec<u8>,
}

/// A fuzzed IMAP folder.
#[derive(Debug, Clone, Default)]
struct ImapFolder {
    uidvalidity: u32,
    next_uid: u32,
    modseq: u64,
    messages: Vec<ImapMsg>,
    subscribed: bool,
}

impl ImapFolder {
    fn new(uidvalidity: u32) -> Self {
        ImapFolder {
            uidvalidity,
            next_uid: 1,
            modseq: 1,
            subscribed: true,
            messages: Vec::new(),
        }
    }

    fn add(&mut self, bytes: &[u8], flags: Vec<String>, date: i64) -> u32 {
        self.modseq += 1;
        let uid = self.next_uid;
        self.next_uid += 1;
        self.messages.push(ImapMsg {
            meta: petrel_core::imap::request::MessageMeta {
                uid,
                flags: flags.into(),
                modseq: self.modseq,
                size: bytes.len() as u64,
                internal_date: date,
            },
            bytes: bytes.to_vec(),
        });
        uid
    }

    fn snapshot(&self) -> petrel_core::imap::request::FolderSnapshot {
        petrel_core::imap::request::FolderSnapshot {
            uidvalidity: self.uidvalidity,
            next_uid: self.next_uid,
            highest_modseq: self.modseq,
            messages: self.messages.iter().map(|m| m.meta.clone()).collect(),
        }
    }
}

/// An APPEND in progress in [`FakeFolders`]: folder, flags, date, bytes so far.
type OpenAppend = (String, Vec<String>, Option<i64>, Vec<u8>);

/// An in-memory mail store for fuzzed IMAP sessions: user alice (password `pw`), INBOX with
/// three messages, Sent and Trash. Bit 0 of `fail` makes every other folder request a
/// temporary failure, bit 1 every other append chunk.
#[derive(Debug)]
struct FakeFolders {
    fail: u8,
    calls: u64,
    folders: BTreeMap<String, ImapFolder>,
    txs: BTreeMap<u64, OpenAppend>,
    next_tx: u64,
}

impl FakeFolders {
    fn new(fail: u8) -> Self {
        let mut inbox = ImapFolder::new(1000);
        inbox.add(IMAP_MESSAGES[0], vec!["\\Seen".into()], 760_000_000);
        inbox.add(IMAP_MESSAGES[1], Vec::new(), 760_086_400);
        inbox.add(
            IMAP_MESSAGES[2],
            vec!["\\Flagged".into(), "$Work".into()],
            760_172_800,
        );
        let mut folders = BTreeMap::new();
        folders.insert("INBOX".to_string(), inbox);
        folders.insert("Sent".to_string(), ImapFolder::new(2000));
        folders.insert("Trash".to_string(), ImapFolder::new(3000));
        FakeFolders {
            fail,
            calls: 0,
            folders,
            txs: BTreeMap::new(),
            next_tx: 1,
        }
    }

    fn fails(&mut self, bit: u8) -> bool {
        self.calls += 1;
        self.fail & (1 << bit) != 0 && self.calls.is_multiple_of(2)
    }

    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate {
                username, password, ..
            } => Completion::Auth(if username == "alice" && password.expose() == b"pw" {
                AuthOutcome::Success(UserId(username))
            } else {
                AuthOutcome::Failure
            }),
            Effect::Imap { request, .. } => {
                if self.fails(0) {
                    return Completion::Failed(StoreError {
                        class: ErrorClass::Temporary,
                        message: "fuzz: store unavailable".into(),
                    });
                }
                Completion::Imap(self.imap(request))
            }
            Effect::AppendChunk { tx, bytes } => {
                if self.fails(1) {
                    return Completion::Failed(StoreError {
                        class: ErrorClass::Temporary,
                        message: "fuzz: disk full".into(),
                    });
                }
                let open = self.txs.get_mut(&tx.0).expect("chunk for an open APPEND");
                open.3.extend_from_slice(&bytes);
                Completion::Appended
            }
            Effect::Abort { tx } => {
                assert!(self.txs.remove(&tx.0).is_some(), "abort of unknown {tx:?}");
                Completion::Aborted
            }
            other => panic!("IMAP session asked for {other:?}"),
        }
    }

    fn imap(&mut self, request: petrel_core::imap::request::ImapRequest) -> ImapAnswer {
        use petrel_core::imap::request::{FlagMode, FolderInfo, FolderStatus, ImapRequest as R};
        let nonexistent = || ImapAnswer::No("[NONEXISTENT] Mailbox doesn't exist.".into());
        match request {
            R::List {
                pattern,
                subscribed_only,
            } => {
                let p: Vec<char> = pattern.chars().collect();
                ImapAnswer::Folders(
                    self.folders
                        .iter()
                        .filter(|(n, f)| {
                            imap_pattern(&p, &n.chars().collect::<Vec<_>>())
                                && (!subscribed_only || f.subscribed)
                        })
                        .map(|(n, f)| FolderInfo {
                            name: n.clone(),
                            attributes: Vec::new(),
                            subscribed: f.subscribed,
                            subscribed_children: false,
                        })
                        .collect(),
                )
            }
            R::Status { folder } => match self.folders.get(&folder) {
                None => nonexistent(),
                Some(f) => ImapAnswer::Status(FolderStatus {
                    messages: f.messages.len() as u32,
                    uidnext: f.next_uid,
                    uidvalidity: f.uidvalidity,
                    unseen: f
                        .messages
                        .iter()
                        .filter(|m| !m.meta.flags.iter().any(|x| x == "\\Seen"))
                        .count() as u32,
                    size: f.messages.iter().map(|m| m.meta.size).sum(),
                    highest_modseq: f.modseq,
                }),
            },
            R::Select { folder, .. } | R::Refresh { folder } => match self.folders.get(&folder) {
                None => nonexistent(),
                Some(f) => ImapAnswer::Snapshot(f.snapshot()),
            },
            R::Read {
                folder,
                uid,
                offset,
                max,
            } => {
                let Some(f) = self.folders.get(&folder) else {
                    return nonexistent();
                };
                let Some(m) = f.messages.iter().find(|m| m.meta.uid == uid) else {
                    return ImapAnswer::No("[EXPUNGEISSUED] Message was expunged.".into());
                };
                let start = usize::try_from(offset).map_or(m.bytes.len(), |o| o.min(m.bytes.len()));
                let end = start.saturating_add(max).min(m.bytes.len());
                ImapAnswer::Data(m.bytes[start..end].to_vec())
            }
            R::Store {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let Some(f) = self.folders.get_mut(&folder) else {
                    return nonexistent();
                };
                let mut out = Vec::new();
                for m in f.messages.iter_mut().filter(|m| uids.contains(&m.meta.uid)) {
                    if unchanged_since.is_some_and(|u| m.meta.modseq > u) {
                        continue;
                    }
                    let mut set = m.meta.flags.to_vec();
                    match mode {
                        FlagMode::Add => {
                            for x in &flags {
                                if !set.contains(x) {
                                    set.push(x.clone());
                                }
                            }
                        }
                        FlagMode::Remove => set.retain(|x| !flags.contains(x)),
                        FlagMode::Replace => set = flags.clone(),
                    }
                    if *set != *m.meta.flags {
                        f.modseq += 1;
                        m.meta.modseq = f.modseq;
                        m.meta.flags = set.into();
                    }
                    out.push((m.meta.uid, m.meta.flags.to_vec(), m.meta.modseq));
                }
                ImapAnswer::Stored(out)
            }
            R::Expunge { folder, uids } => {
                let Some(f) = self.folders.get_mut(&folder) else {
                    return nonexistent();
                };
                let mut gone = Vec::new();
                f.messages.retain(|m| {
                    let del = m.meta.flags.iter().any(|x| x == "\\Deleted")
                        && uids.as_ref().is_none_or(|u| u.contains(&m.meta.uid));
                    if del {
                        gone.push(m.meta.uid);
                    }
                    !del
                });
                f.modseq += 1;
                ImapAnswer::Expunged(gone)
            }
            R::Copy {
                from,
                to,
                uids,
                remove,
            } => {
                let Some(src) = self.folders.get(&from) else {
                    return nonexistent();
                };
                let src: Vec<ImapMsg> = src
                    .messages
                    .iter()
                    .filter(|m| uids.contains(&m.meta.uid))
                    .cloned()
                    .collect();
                let Some(dst) = self.folders.get_mut(&to) else {
                    return ImapAnswer::No("[TRYCREATE] Mailbox doesn't exist.".into());
                };
                let pairs: Vec<(u32, u32)> = src
                    .iter()
                    .map(|m| {
                        let new = dst.add(&m.bytes, m.meta.flags.to_vec(), m.meta.internal_date);
                        (m.meta.uid, new)
                    })
                    .collect();
                let uidvalidity = dst.uidvalidity;
                if remove && let Some(f) = self.folders.get_mut(&from) {
                    f.messages.retain(|m| !uids.contains(&m.meta.uid));
                    f.modseq += 1;
                }
                ImapAnswer::Copied { uidvalidity, pairs }
            }
            R::Create { folder } => {
                if self.folders.len() >= 8 || self.folders.contains_key(&folder) {
                    return ImapAnswer::No("[ALREADYEXISTS] Mailbox already exists.".into());
                }
                self.folders.insert(folder, ImapFolder::new(4000));
                ImapAnswer::Done
            }
            R::Delete { folder } => match self.folders.remove(&folder) {
                Some(_) => ImapAnswer::Done,
                None => nonexistent(),
            },
            R::Rename { from, to } => {
                if self.folders.contains_key(&to) {
                    return ImapAnswer::No("[ALREADYEXISTS] Mailbox already exists.".into());
                }
                match self.folders.remove(&from) {
                    Some(f) => {
                        self.folders.insert(to, f);
                        ImapAnswer::Done
                    }
                    None => nonexistent(),
                }
            }
            R::Subscribe { folder, subscribe } => match self.folders.get_mut(&folder) {
                Some(f) => {
                    f.subscribed = subscribe;
                    ImapAnswer::Done
                }
                None => nonexistent(),
            },
            R::AppendBegin {
                folder,
                flags,
                date,
            } => {
                if !self.folders.contains_key(&folder) {
                    return ImapAnswer::No("[TRYCREATE] Mailbox doesn't exist.".into());
                }
                let id = self.next_tx;
                self.next_tx += 1;
                self.txs.insert(id, (folder, flags, date, Vec::new()));
                ImapAnswer::Appending(TxId(id))
            }
            R::AppendCommit { tx } => {
                let (folder, flags, date, bytes) =
                    self.txs.remove(&tx.0).expect("commit of an open APPEND");
                let Some(f) = self.folders.get_mut(&folder) else {
                    return nonexistent();
                };
                let uid = f.add(&bytes, flags, date.unwrap_or(800_000_000));
                ImapAnswer::Appended {
                    uidvalidity: f.uidvalidity,
                    uid,
                }
            }
            // No folder stamps here: "cannot tell", so the session refreshes (IDLE, NOOP).
            R::Changed { .. } => ImapAnswer::Stamp(0),
            // Expunges are not remembered: the session answers QRESYNC conservatively.
            R::Vanished { .. } => ImapAnswer::Vanished {
                uids: Vec::new(),
                complete: false,
            },
            other => panic!("unexpected IMAP request {other:?}"),
        }
    }
}

/// LIST pattern matching: `*` anything, `%` anything but `/`.
fn imap_pattern(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| imap_pattern(&p[1..], &n[i..])),
        Some('%') => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != '/')
            .any(|i| imap_pattern(&p[1..], &n[i..])),
        Some(c) => n.first() == Some(c) && imap_pattern(&p[1..], &n[1..]),
    }
}

/// The tags a client may have sent: the first word of every line of `input` (literal contents
/// included, so this can only accept too much).
fn client_tags(input: &[u8]) -> BTreeSet<Vec<u8>> {
    input
        .split(|&b| b == b'\n')
        .map(|l| {
            let end = l.iter().position(|&b| b == b' ' || b == b'\r');
            l[..end.unwrap_or(l.len())].to_vec()
        })
        .collect()
}

/// The literal announced at the end of a response line (without CRLF): `{n}` or `~{n}`.
fn announced_literal(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Checks what an IMAP server wrote: every line ends in CRLF (no bare CR or LF in it), every
/// literal `{n}` is followed by exactly n bytes and the rest of its line, and every tagged
/// response carries a tag from `tags` and a status OK, NO or BAD. Returns the number of
/// tagged responses.
fn check_imap_responses(written: &[u8], tags: &BTreeSet<Vec<u8>>) -> usize {
    let text = || String::from_utf8_lossy(written).into_owned();
    let mut tagged = 0;
    let mut i = 0;
    // True at the start of a response (not after a literal within one).
    let mut start = true;
    while i < written.len() {
        let Some(lf) = written[i..].iter().position(|&b| b == b'\n') else {
            panic!("response does not end in CRLF at {i}: {}", text());
        };
        let line = &written[i..i + lf];
        let Some(line) = line.strip_suffix(b"\r") else {
            panic!("bare LF at {}: {}", i + lf, text());
        };
        assert!(
            !line.contains(&b'\r'),
            "bare CR in the line at {i}: {}",
            text()
        );
        if start && !line.starts_with(b"* ") && !line.starts_with(b"+") {
            let sp = line.iter().position(|&b| b == b' ');
            let tag = &line[..sp.unwrap_or(line.len())];
            assert!(
                tags.contains(tag),
                "tag {:?} never sent: {}",
                String::from_utf8_lossy(tag),
                text()
            );
            let status = &line[sp.map_or(line.len(), |s| s + 1)..];
            assert!(
                [&b"OK"[..], b"NO", b"BAD"]
                    .iter()
                    .any(|s| status.starts_with(s) && status[s.len()..].first() == Some(&b' ')),
                "tagged response without OK/NO/BAD at {i}: {}",
                text()
            );
            tagged += 1;
        }
        i += lf + 1;
        start = true;
        if let Some(n) = announced_literal(line) {
            assert!(
                written.len() - i >= n,
                "literal of {n} bytes at {i} cut short: {}",
                text()
            );
            i += n;
            start = false;
        }
    }
    tagged
}

/// A whole IMAP session through the real [`Pump`] and `Service::Imap`, with an in-memory store
/// ([`FakeFolders`]).
///
/// Byte 0: bit 7 prefixes a valid login (`a0 LOGIN alice pw`), bit 4 no STARTTLS, bit 5 few
/// errors, bit 6 idle timeout at the end, bit 3 small store chunks, bit 2 a small APPENDLIMIT.
/// Byte 1: read and write splits. Byte 2: which store requests fail. The rest is what the
/// client sends. Checks: no panic, the response framing ([`check_imap_responses`]), the
/// greeting, tagged responses only with tags the client sent, bounded buffers, a bounded run,
/// no request left unanswered and no APPEND left open.
pub fn imap_session(data: &[u8]) {
    run_imap_session(data);
}

/// [`imap_session`], returning everything the server wrote.
pub fn run_imap_session(data: &[u8]) -> Vec<u8> {
    use petrel_core::imap::session::ImapConfig;
    const LOGIN: &[u8] = b"a0 LOGIN alice pw\r\n";
    let ([flags, split, fail], rest) = header::<3>(data);
    let input = if flags & 0x80 != 0 {
        [LOGIN, rest].concat()
    } else {
        rest.to_vec()
    };
    let mut config = ImapConfig::new("imap.example.test");
    config.allow_plaintext_on_loopback = true;
    config.starttls = flags & 0x10 == 0;
    config.max_errors = if flags & 0x20 != 0 { 3 } else { 20 };
    config.chunk_size = if flags & 0x08 != 0 { 16 } else { 64 * 1024 };
    config.max_message_size = if flags & 0x04 != 0 { 64 } else { 4096 };
    let peer = PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "FUZZ".into(),
    };
    let tls = TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    };
    let mut store = FakeFolders::new(fail);
    let start = Instant::now();
    let service = Service::Imap(Arc::new(config));
    let pump = Pump::new(service.open(peer, start));
    let (written, _) = drive(pump, start, &input, split, flags & 0x40 != 0, &tls, |e| {
        store.execute(e)
    });
    assert!(written.starts_with(b"* OK "), "no greeting");
    check_imap_responses(&written, &client_tags(&input));
    assert!(store.txs.is_empty(), "APPEND left open: {:?}", store.txs);
    written
}

/// IMAP conversations for the seeds of `imap_parser` and `imap_session` (after `a0 LOGIN`).
fn imap_transcripts() -> Vec<Vec<u8>> {
    let lit = |s: &str| format!("{{{}}}\r\n{s}", s.len());
    let lit_plus = |s: &str| format!("{{{}+}}\r\n{s}", s.len());
    let msg = "From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n";
    [
        format!(
            "a1 CAPABILITY\r\na2 SELECT INBOX\r\na3 FETCH 1:* (FLAGS ENVELOPE BODY[])\r\na4 STORE 2 +FLAGS (\\Seen $Work)\r\na5 SEARCH UNSEEN FROM \"carol\"\r\na6 APPEND INBOX (\\Flagged) {}\r\na7 IDLE\r\nDONE\r\na8 UID FETCH 4 (BODY.PEEK[HEADER] RFC822.SIZE INTERNALDATE)\r\na9 LOGOUT\r\n",
            lit(msg)
        ),
        (
            "b1 LIST \"\" *\r\nb2 STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\nb3 EXAMINE INBOX\r\nb4 FETCH 1,3 (UID BODYSTRUCTURE BODY.PEEK[1] BODY[2.MIME] BINARY[2])\r\nb5 SELECT INBOX\r\nb6 STORE 1:2 FLAGS.SILENT (\\Deleted)\r\nb7 UID COPY 1 Sent\r\nb8 MOVE 3 Trash\r\nb9 EXPUNGE\r\nb10 NOOP\r\nb11 CLOSE\r\nb12 LOGOUT\r\n"
        )
            .to_string(),
        format!(
            "c1 APPEND Sent {} {}\r\nc2 APPEND Nope {}\r\nc3 APPEND INBOX (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {}\r\nc4 CREATE Work/2024\r\nc5 RENAME Work/2024 Archive\r\nc6 LSUB \"\" %\r\nc7 DELETE Archive\r\nc8 SUBSCRIBE Sent\r\nc9 LOGOUT\r\n",
            lit_plus(msg),
            lit_plus("x\r\n"),
            lit("no\r\n"),
            lit("a\r\n\r\nb\r\n")
        ),
        format!(
            "d1 SELECT INBOX (CONDSTORE)\r\nd2 UID SEARCH RETURN (MIN MAX COUNT) OR SEEN (NOT FLAGGED) SINCE 1-Feb-1994\r\nd3 UID STORE 1:* (UNCHANGEDSINCE 2) +FLAGS ($Done)\r\nd4 SEARCH CHARSET UTF-8 SUBJECT {}\r\nd5 FETCH * (MODSEQ FLAGS)\r\nd6 UNSELECT\r\nd7 ENABLE UTF8=ACCEPT\r\nd8 NAMESPACE\r\nd9 ID NIL\r\nd10 LOGOUT\r\n",
            lit("Caf\u{e9}")
        ),
        "e1 AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\ne2 SELECT \"INBOX\"\r\ne3 APPEND INBOX {99999}\r\ne4 APPEND INBOX {99999+}\r\nxx\r\ne5 FETCH 0:9999999999 BODY[]<0.10>\r\n* BAD\r\ne6 NOOP {3}\r\n+ X\r\n)\r\ne7 STARTTLS\r\ne8 LOGOUT\r\n"
            .to_string(),
        "f1 LOGIN alice wrong\r\nf2 LOGIN {5}\r\nalice {2}\r\npw\r\nf3 SELECT INBOX\r\nf4 IDLE\r\nx\r\nDONE\r\nf5 FETCH 2 (ENVELOPE BODY[HEADER.FIELDS (FROM SUBJECT)] BODY[TEXT]<2.5>)\r\nf6 LOGOUT\r\n"
            .to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn imap_parser_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, t) in imap_transcripts().iter().enumerate() {
        let login = [&b"a0 LOGIN alice pw\r\n"[..], t].concat();
        for header in [[0u8, 0, 0], [2, i as u8, 6], [3, 7, 0], [1, 0, 8 | 2]] {
            out.push([&header[..], &login].concat());
        }
    }
    out
}

fn imap_session_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for t in imap_transcripts() {
        for header in [[0x80u8, 0, 0], [0x88, 0x0a, 0], [0x84, 0x05, 3]] {
            out.push([&header[..], &t].concat());
        }
        out.push([&[0x20u8, 0x0f, 0][..], &t].concat());
    }
    out
}
