//! Content scanning inside the SMTP session, through the real `Pump`, with a fake store and
//! fake scanners answering the session's `Effect::Scan` steps: verdicts act before the final
//! reply (virus 554, spam 554 or Junk, scanner failures per `on_failure`), header edits reach
//! the commit, submission is scanned for viruses only, LMTP answers per recipient, and any
//! chunking of the client's input gives the same replies and the same bytes to the scanner.

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::effect::{ScanConn, ScanOp};
use petrel_core::filter::HeaderEdit;
use petrel_core::filter::scan::{FilterConfig, OnFailure};
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::testing::converse as drive;
use petrel_core::{
    AuthOutcome, Completion, Effect, ErrorClass, PeerInfo, Receipt, RecipientOutcome, Service,
    StoreError, TxId, UserId, WallClock,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPAMD_GTUBE: &[u8] = include_bytes!("filter_transcripts/spamd_gtube.reply");
const SPAMD_HAM: &[u8] = include_bytes!("filter_transcripts/spamd_ham.reply");
const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#[derive(Debug)]
struct FixedClock;
impl WallClock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920
    }
}

fn config(role: Role, filter: FilterConfig) -> SmtpConfig {
    let mut c = SmtpConfig::new(
        "mx.example.test",
        role,
        &["example.test".to_string()],
        Arc::new(FixedClock),
    );
    c.chunk_size = 64;
    c.allow_plaintext_on_loopback = true;
    c.filter = Some(Arc::new(filter));
    c
}

fn fail(message: &str) -> Completion {
    Completion::Failed(StoreError {
        class: ErrorClass::Temporary,
        message: message.into(),
    })
}

/// One fake scanner connection; its behaviour is named by the target it was opened to.
#[derive(Debug, Default)]
struct FakeConn {
    target: String,
    sent: Vec<u8>,
    answered: bool,
}

/// A fake store and fake scanners.
#[derive(Debug, Default)]
struct World {
    open: BTreeMap<u64, Vec<u8>>,
    /// (message, junk, edits) per commit.
    delivered: Vec<(Vec<u8>, bool, Vec<HeaderEdit>)>,
    aborted: usize,
    next: u64,
    conns: BTreeMap<ScanConn, FakeConn>,
    /// Every connection ever opened: (target, bytes it was sent).
    scanned: Vec<(String, Vec<u8>)>,
    /// What the session logged for each scanner at close: (line, failed).
    outcomes: Vec<(String, bool)>,
}

impl World {
    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate { username, .. } => {
                Completion::Auth(AuthOutcome::Success(UserId(username)))
            }
            Effect::LookupRecipient { address } => Completion::Recipient(RecipientOutcome::Local(
                UserId(address.to_string().to_lowercase()),
            )),
            Effect::BeginMessage { trace, .. } => {
                self.next += 1;
                self.open.insert(self.next, trace);
                Completion::Began(TxId(self.next))
            }
            Effect::AppendChunk { tx, bytes } => {
                self.open.get_mut(&tx.0).unwrap().extend_from_slice(&bytes);
                Completion::Appended
            }
            Effect::Commit {
                tx, junk, edits, ..
            } => {
                let m = self.open.remove(&tx.0).unwrap();
                self.delivered.push((m, junk, edits));
                Completion::Durable(Receipt::durable(tx))
            }
            Effect::Abort { tx } => {
                self.open.remove(&tx.0);
                self.aborted += 1;
                Completion::Aborted
            }
            Effect::Scan { conn, op } => self.scan(conn, op),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn scan(&mut self, conn: ScanConn, op: ScanOp) -> Completion {
        match op {
            ScanOp::Connect { target, timeout } => {
                assert_eq!(timeout, Duration::from_secs(7), "the configured timeout");
                if target == "down" {
                    return fail("connection refused");
                }
                self.conns.insert(
                    conn,
                    FakeConn {
                        target,
                        ..FakeConn::default()
                    },
                );
                Completion::Done
            }
            ScanOp::Send { bytes, .. } => {
                let c = self
                    .conns
                    .get_mut(&conn)
                    .expect("send on an open connection");
                if c.target == "sizelimit" && c.sent.len() > 100 {
                    // clamd over StreamMaxLength: it answers, then closes; writes fail.
                    return fail("Broken pipe (os error 32)");
                }
                c.sent.extend_from_slice(&bytes);
                Completion::Done
            }
            ScanOp::Receive { .. } => {
                let c = self
                    .conns
                    .get_mut(&conn)
                    .expect("receive on an open connection");
                if c.answered {
                    return Completion::Data(Vec::new());
                }
                c.answered = true;
                let seen = if c.target == "clamd" {
                    instream_payload(&c.sent)
                } else {
                    c.sent.clone()
                };
                let has = |s: &str| seen.windows(s.len()).any(|w| w == s.as_bytes());
                match c.target.as_str() {
                    "hang" => fail("timed out"),
                    "garbage" => Completion::Data(b"220 hello there\r\n".to_vec()),
                    "close" => Completion::Data(Vec::new()),
                    "sizelimit" => {
                        Completion::Data(b"INSTREAM size limit exceeded. ERROR\0".to_vec())
                    }
                    "clamd" if has(EICAR) => {
                        Completion::Data(b"stream: Eicar-Test-Signature FOUND\0".to_vec())
                    }
                    "clamd" => Completion::Data(b"stream: OK\0".to_vec()),
                    "spamd" if has(GTUBE) => Completion::Data(SPAMD_GTUBE.to_vec()),
                    "spamd" => Completion::Data(SPAMD_HAM.to_vec()),
                    other => panic!("no fake scanner {other}"),
                }
            }
            ScanOp::Close { outcome, failed } => {
                assert!(!outcome.is_empty());
                self.outcomes.push((outcome, failed));
                if let Some(c) = self.conns.remove(&conn) {
                    self.scanned.push((c.target, c.sent));
                }
                Completion::Done
            }
        }
    }
}

/// The message inside a zINSTREAM conversation so far (complete chunks only).
fn instream_payload(sent: &[u8]) -> Vec<u8> {
    let rest = sent.strip_prefix(b"zINSTREAM\0").expect("zINSTREAM first");
    let (mut pos, mut out) = (0, Vec::new());
    while pos + 4 <= rest.len() {
        let n = u32::from_be_bytes(rest[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 4;
        if n == 0 || pos + n > rest.len() {
            break;
        }
        out.extend_from_slice(&rest[pos..pos + n]);
        pos += n;
    }
    out
}

fn peer() -> PeerInfo {
    PeerInfo {
        ip: "192.0.2.1".into(),
        loopback: true,
        tls: None,
        session_id: "S1".into(),
    }
}

fn filter(clamd: &str, spamd: Option<&str>) -> FilterConfig {
    FilterConfig {
        clamd: Some(clamd.into()),
        spamd: spamd.map(str::to_string),
        timeout: Duration::from_secs(7),
        ..FilterConfig::default()
    }
}

fn converse(role: Role, f: FilterConfig, input: &[u8], cuts: &[usize]) -> (String, World) {
    let start = Instant::now();
    let pump = Service::Smtp(Arc::new(config(role, f))).start(peer(), false, start);
    let mut world = World::default();
    let c = drive(pump, start, input, cuts, Duration::from_secs(5), |e| {
        world.execute(e)
    });
    assert!(
        world.conns.is_empty(),
        "every scanner connection is closed: {:?}",
        world.conns
    );
    (c.text(), world)
}

fn smtp(body: &str) -> Vec<u8> {
    format!(
        "EHLO client.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: t\r\n\r\n{body}\r\n.\r\nQUIT\r\n"
    )
    .into_bytes()
}

fn replies(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with("250-")).collect()
}

#[test]
fn virus_is_refused_with_its_name_and_nothing_delivered() {
    let (out, w) = converse(Role::Inbound, filter("clamd", None), &smtp(EICAR), &[]);
    let r = replies(&out);
    assert!(
        r.contains(&"554 5.7.1 Virus found: Eicar-Test-Signature"),
        "{out}"
    );
    assert!(w.delivered.is_empty());
    assert_eq!(w.aborted, 1);
    assert_eq!(
        w.outcomes,
        [(
            "clamd clamd: reject 554 5.7.1 Virus found: Eicar-Test-Signature".to_string(),
            false
        )]
    );
}

#[test]
fn clean_message_is_delivered_and_clamd_saw_trace_and_message() {
    let (out, w) = converse(Role::Inbound, filter("clamd", None), &smtp("Hello."), &[]);
    assert!(out.contains("250 2.0.0 Ok: queued as S101"), "{out}");
    assert_eq!(w.delivered.len(), 1);
    let (stored, junk, edits) = &w.delivered[0];
    assert!(!junk && edits.is_empty());
    let (target, sent) = &w.scanned[0];
    assert_eq!(target, "clamd");
    // zINSTREAM framing around exactly the stored bytes (trace + message).
    let payload = instream_payload(sent);
    assert_eq!(&payload, stored);
    assert!(stored.starts_with(b"Received: "));
}

#[test]
fn spam_at_the_reject_score_is_refused() {
    let (out, w) = converse(
        Role::Inbound,
        filter("clamd", Some("spamd")),
        &smtp(GTUBE),
        &[],
    );
    assert!(
        out.contains("554 5.7.1 Spam message rejected (score 1000.0)"),
        "{out}"
    );
    assert!(w.delivered.is_empty());
}

#[test]
fn spam_below_the_reject_score_goes_to_junk_with_x_spam_fields() {
    let mut f = filter("clamd", Some("spamd"));
    f.spam_reject_score = 5000.0;
    let (out, w) = converse(Role::Inbound, f, &smtp(GTUBE), &[]);
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    let (_, junk, edits) = &w.delivered[0];
    assert!(junk);
    assert!(
        edits
            .iter()
            .any(|e| matches!(e, HeaderEdit::Add { name, value } if name == "X-Spam-Flag" && value == "YES")),
        "{edits:?}"
    );
    // Ham is delivered to the INBOX, still with SpamAssassin's verdict fields.
    let (out, w) = converse(
        Role::Inbound,
        filter("clamd", Some("spamd")),
        &smtp("Lunch?"),
        &[],
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    assert!(!w.delivered[0].1);
}

#[test]
fn scanner_failures_follow_on_failure() {
    for target in ["down", "hang", "garbage", "close"] {
        let (out, w) = converse(Role::Inbound, filter(target, None), &smtp("Hi"), &[]);
        assert!(
            out.contains("451 4.7.1 Error: content scan failed (clamd), try again later"),
            "{target}: {out}"
        );
        assert!(w.delivered.is_empty(), "{target}");
        if target != "down" {
            // Connect failures are logged by the runtime; the rest by the session at close.
            assert!(
                matches!(&w.outcomes[..], [(line, true)] if line.starts_with(&format!("clamd {target}: "))),
                "{target}: {:?}",
                w.outcomes
            );
        }
        if target == "garbage" {
            assert!(
                w.outcomes[0].0.contains("unexpected reply"),
                "{:?}",
                w.outcomes
            );
        }
        let mut f = filter(target, None);
        f.on_failure = OnFailure::Accept;
        let (out, w) = converse(Role::Inbound, f, &smtp("Hi"), &[]);
        assert!(out.contains("250 2.0.0 Ok: queued"), "{target}: {out}");
        assert_eq!(w.delivered.len(), 1, "{target}");
    }
    // A failed scanner does not hide another scanner's virus.
    let mut f = filter("clamd", Some("down"));
    f.on_failure = OnFailure::TempFail;
    let (out, _) = converse(Role::Inbound, f, &smtp(EICAR), &[]);
    assert!(out.contains("554 5.7.1 Virus found"), "{out}");
}

#[test]
fn submission_is_scanned_for_viruses_not_spam_by_default() {
    let input = format!(
        "EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@remote.example>\r\nDATA\r\nSubject: t\r\n\r\n{GTUBE}\r\n.\r\nQUIT\r\n"
    );
    let (out, w) = converse(
        Role::Submission,
        filter("clamd", Some("spamd")),
        input.as_bytes(),
        &[],
    );
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    let targets: Vec<&str> = w.scanned.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(targets, ["clamd"]);
    let mut f = filter("clamd", Some("spamd"));
    f.scan_submission_spam = true;
    let (out, _) = converse(Role::Submission, f, input.as_bytes(), &[]);
    assert!(out.contains("554 5.7.1 Spam"), "{out}");
}

#[test]
fn lmtp_refuses_per_recipient_and_bdat_is_scanned() {
    let input = format!(
        "LHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\r\n{EICAR}\r\n.\r\nQUIT\r\n"
    );
    let (out, _) = converse(Role::Lmtp, filter("clamd", None), input.as_bytes(), &[]);
    assert!(
        out.contains("554 5.7.1 <alice@example.test> Virus found: Eicar-Test-Signature\r\n"),
        "{out}"
    );
    assert!(
        out.contains("554 5.7.1 <bob@example.test> Virus found: Eicar-Test-Signature\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("554 ").count(), 2, "{out}");
    let body = format!("Subject: b\r\n\r\n{EICAR}\r\n");
    let input = format!(
        "EHLO c\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 10\r\n{}BDAT {} LAST\r\n{}QUIT\r\n",
        &body[..10],
        body.len() - 10,
        &body[10..]
    );
    let (out, w) = converse(Role::Inbound, filter("clamd", None), input.as_bytes(), &[]);
    assert!(out.contains("554 5.7.1 Virus found"), "{out}");
    assert!(w.delivered.is_empty());
}

#[test]
fn two_messages_in_one_session_each_scanned() {
    let input = format!(
        "EHLO c\r\nMAIL FROM:<s@r.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\r\n{EICAR}\r\n.\r\nMAIL FROM:<s@r.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\r\nclean\r\n.\r\nQUIT\r\n"
    );
    let (out, w) = converse(Role::Inbound, filter("clamd", None), input.as_bytes(), &[]);
    assert!(out.contains("554 5.7.1 Virus found"), "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as S102"), "{out}");
    assert_eq!(w.delivered.len(), 1);
    assert_eq!(w.scanned.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any chunking of the client's input: the same replies, the same bytes to clamd and the
    /// store, for a clean message and a virus, with a body longer than several chunks.
    #[test]
    fn any_chunking_same_replies_same_scanned_bytes(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        virus in any::<bool>(),
        lines in 1usize..40,
    ) {
        let mut body = String::new();
        for i in 0..lines {
            body.push_str(&format!("line {i} of the message, long enough to span chunks\r\n"));
        }
        if virus {
            body.push_str(EICAR);
        }
        let input = smtp(&body);
        let (want, w1) = converse(Role::Inbound, filter("clamd", None), &input, &[]);
        let (got, w2) = converse(Role::Inbound, filter("clamd", None), &input, &cuts);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&w1.scanned, &w2.scanned);
        prop_assert_eq!(w2.delivered.len(), usize::from(!virus));
        prop_assert_eq!(got.contains("554 5.7.1 Virus found"), virus);
    }
}

#[test]
fn clamd_size_limit_is_read_after_the_failed_write_and_logged() {
    let body = "a fairly long line of text to go past the fake limit\r\n".repeat(10);
    let (out, w) = converse(Role::Inbound, filter("sizelimit", None), &smtp(&body), &[]);
    assert!(out.contains("451 4.7.1"), "{out}");
    assert!(
        matches!(&w.outcomes[..], [(line, true)] if line.contains("INSTREAM size limit exceeded")),
        "{:?}",
        w.outcomes
    );
}

#[test]
fn a_step_answered_after_the_timeout_fails_the_scanner() {
    use petrel_core::filter::ScanContext;
    use petrel_core::filter::scan::{Outcome, Scan};
    let t0 = Instant::now();
    let mut scan = Scan::new(
        &filter("clamd", None),
        Role::Inbound,
        ScanContext::default(),
    )
    .unwrap();
    let (_, op) = scan.next_op(t0).unwrap();
    assert!(matches!(op, ScanOp::Connect { .. }));
    scan.handle_completion(t0, Completion::Done);
    scan.body(b"Subject: x\r\n\r\nbody\r\n");
    scan.end();
    // The write, then the wait for the answer, which comes back long after the timeout.
    let (_, op) = scan.next_op(t0).unwrap();
    assert!(matches!(op, ScanOp::Send { .. }));
    scan.handle_completion(t0, Completion::Done);
    let (_, op) = scan.next_op(t0).unwrap();
    assert!(matches!(op, ScanOp::Receive { timeout, .. } if timeout == Duration::from_secs(7)));
    scan.handle_completion(
        t0 + Duration::from_secs(60),
        Completion::Data(b"stream: OK\0".to_vec()),
    );
    let (_, op) = scan.next_op(t0).unwrap();
    assert!(
        matches!(&op, ScanOp::Close { outcome, failed: true } if outcome.contains("timed out")),
        "{op:?}"
    );
    scan.handle_completion(t0, Completion::Done);
    assert!(scan.is_done());
    assert!(matches!(scan.outcome(), Outcome::Refuse { code: 451, .. }));
}

#[test]
fn a_trickled_answer_must_be_complete_within_the_timeout() {
    use petrel_core::filter::ScanContext;
    use petrel_core::filter::scan::{Outcome, Scan};
    let t0 = Instant::now();
    let mut scan = Scan::new(
        &filter("clamd", None),
        Role::Inbound,
        ScanContext::default(),
    )
    .unwrap();
    let mut now = t0;
    let _ = scan.next_op(now).unwrap();
    scan.handle_completion(now, Completion::Done);
    scan.end();
    let _ = scan.next_op(now).unwrap();
    scan.handle_completion(now, Completion::Done);
    // One byte a second of an answer that never ends: each read is quick, the answer is not.
    let mut reads = 0;
    let outcome = loop {
        let (_, op) = scan.next_op(now).expect("a step");
        match op {
            ScanOp::Receive { timeout, .. } => {
                assert!(
                    timeout <= Duration::from_secs(7) - (now - t0),
                    "{timeout:?}"
                );
                reads += 1;
                now += Duration::from_secs(1);
                let byte = if reads == 1 {
                    b"s".to_vec()
                } else {
                    b"x".to_vec()
                };
                scan.handle_completion(now, Completion::Data(byte));
            }
            ScanOp::Close { outcome, failed } => {
                assert!(failed);
                scan.handle_completion(now, Completion::Done);
                break outcome;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(outcome.contains("timed out"), "{outcome}");
    assert!(reads <= 8, "{reads} reads");
    assert!(scan.is_done());
    assert!(matches!(scan.outcome(), Outcome::Refuse { code: 451, .. }));
}
