//! Transcript tests of the SMTP session through the real `Pump`, with a fake store.

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::smtp::{Role, SmtpConfig, SmtpSession};
use petrel_core::testing::converse as drive;
use petrel_core::{
    AuthOutcome, CloseReason, Completion, Effect, Envelope, Event, PeerInfo, Receipt,
    RecipientOutcome, Refusal, Refusals, Service, Session, TxId, UserId, WallClock,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct FixedClock;
impl WallClock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920
    }
}

fn config(role: Role) -> SmtpConfig {
    let mut c = SmtpConfig::new(
        "mx.example.test",
        role,
        &["example.test".to_string()],
        Arc::new(FixedClock),
    );
    c.max_message_size = 10_000;
    c.max_recipients = 3;
    c.chunk_size = 64;
    c.allow_plaintext_on_loopback = true;
    c
}

/// A fake store: users alice and bob, messages kept in memory.
#[derive(Default)]
struct FakeStore {
    open: BTreeMap<u64, (Envelope, Vec<u8>)>,
    delivered: Vec<(Envelope, Vec<u8>)>,
    next: u64,
    effects: Vec<&'static str>,
}

impl FakeStore {
    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate {
                username, password, ..
            } => {
                self.effects.push("auth");
                let ok = username == "alice@example.test" && password.expose() == b"pw";
                Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                })
            }
            Effect::LookupRecipient { address } => {
                self.effects.push("lookup");
                let local = address.local.to_lowercase();
                let base = local.split('+').next().unwrap_or("").to_string();
                Completion::Recipient(if base == "alice" || base == "bob" {
                    RecipientOutcome::Local(UserId(format!("{base}@example.test")))
                } else {
                    RecipientOutcome::Unknown
                })
            }
            Effect::BeginMessage { envelope, trace } => {
                self.effects.push("begin");
                self.next += 1;
                self.open.insert(self.next, (envelope, trace));
                Completion::Began(TxId(self.next))
            }
            Effect::AppendChunk { tx, bytes } => {
                self.effects.push("append");
                self.open
                    .get_mut(&tx.0)
                    .expect("open tx")
                    .1
                    .extend_from_slice(&bytes);
                Completion::Appended
            }
            Effect::Commit { tx, refusals, .. } => {
                self.effects.push("commit");
                let m = self.open.remove(&tx.0).expect("open tx");
                // A stand-in for a Sieve `reject` in bob's script.
                let refused: Vec<Refusal> = if m.1.windows(8).any(|w| w == b"REJECTME") {
                    let bob: Vec<Refusal> =
                        m.0.recipients
                            .iter()
                            .filter(|r| r.mailbox == Some(UserId("bob@example.test".into())))
                            .map(|r| Refusal {
                                address: r.address.to_string(),
                                reason: "no thanks\r\n250 injected".into(),
                            })
                            .collect();
                    let all = bob.len() == m.0.recipients.len();
                    if refusals == Refusals::PerRecipient || all {
                        bob
                    } else {
                        Vec::new()
                    }
                } else {
                    Vec::new()
                };
                self.delivered.push(m);
                Completion::Durable(Receipt::durable_except(tx, refused))
            }
            Effect::Abort { tx } => {
                self.effects.push("abort");
                self.open.remove(&tx.0);
                Completion::Aborted
            }
            other => panic!("SMTP never asks {other:?}"),
        }
    }
}

fn peer() -> PeerInfo {
    PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "S1".into(),
    }
}

/// Runs a conversation: `input` is cut into pieces at `cuts`, each piece offered as one read.
/// Returns everything the server wrote, and the store.
fn converse(role: Role, input: &[u8], cuts: &[usize]) -> (String, FakeStore) {
    let start = Instant::now();
    let pump = Service::Smtp(Arc::new(config(role))).start(peer(), false, start);
    let mut store = FakeStore::default();
    let c = drive(pump, start, input, cuts, Duration::from_secs(5), |e| {
        store.execute(e)
    });
    (c.text(), store)
}

fn codes(transcript: &str) -> Vec<&str> {
    transcript
        .lines()
        .filter(|l| l.len() >= 4 && &l[3..4] == " ")
        .map(|l| &l[..3])
        .collect()
}

const SIMPLE: &[u8] =
    b"EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n\
DATA\r\nSubject: hi\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n";

#[test]
fn simple_delivery() {
    let (t, store) = converse(Role::Inbound, SIMPLE, &[]);
    assert_eq!(
        codes(&t),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{t}"
    );
    assert!(t.contains("250 2.0.0 Ok: queued as S101\r\n"), "{t}");
    assert_eq!(store.delivered.len(), 1);
    let (env, bytes) = &store.delivered[0];
    assert_eq!(
        env.recipients[0].mailbox,
        Some(UserId("alice@example.test".into()))
    );
    let text = String::from_utf8_lossy(bytes);
    assert!(text.starts_with("Received: from client.example ([127.0.0.1])\r\n\tby mx.example.test (Petrel) with ESMTP id S101\r\n\tfor <alice@example.test>;"), "{text}");
    assert!(
        text.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\nline\r\n"),
        "{text}"
    );
}

#[test]
fn ehlo_advertises_by_role() {
    let (t, _) = converse(Role::Inbound, b"EHLO a\r\n", &[]);
    assert!(
        t.contains("250-SIZE 10000\r\n")
            && t.contains("250-CHUNKING\r\n")
            && t.contains("STARTTLS")
    );
    assert!(!t.contains("AUTH"), "{t}");
    let (t, _) = converse(Role::Submission, b"EHLO a\r\n", &[]);
    assert!(t.contains("250 AUTH PLAIN LOGIN\r\n"), "{t}");
}

#[test]
fn relay_is_refused_and_unknown_users_rejected() {
    let script = b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<v@elsewhere.example>\r\n\
RCPT TO:<nobody@example.test>\r\nRCPT TO:<alice%evil.example@example.test>\r\nRCPT TO:<\"a@evil\"@example.test>\r\n\
RCPT TO:<alice@[127.0.0.1]>\r\nRCPT TO:<@evil.example:alice@example.test>\r\nRCPT TO:<Bob+tag@EXAMPLE.test.>\r\nQUIT\r\n";
    let (t, _) = converse(Role::Inbound, script, &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "250", "554", "550", "550", "550", "554", "250", "250", "221"
        ],
        "{t}"
    );
    assert!(t.contains("550 5.1.1 <nobody@example.test>"), "{t}");
}

#[test]
fn submission_requires_auth_and_own_sender() {
    let auth = "AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\n";
    let script = format!(
        "EHLO a\r\nMAIL FROM:<alice@example.test>\r\n{auth}MAIL FROM:<bob@example.test>\r\n\
MAIL FROM:<Alice+x@example.test>\r\nRCPT TO:<someone@remote.example>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"
    );
    let (t, store) = converse(Role::Submission, script.as_bytes(), &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "530", "235", "553", "250", "250", "354", "250", "221"
        ],
        "{t}"
    );
    assert_eq!(store.delivered[0].0.recipients[0].mailbox, None);
    assert!(String::from_utf8_lossy(&store.delivered[0].1).contains("with ESMTPA id"));
}

#[test]
fn auth_login_cancel_and_failure_delay() {
    let script =
        b"EHLO a\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n\
AUTH LOGIN YWxpY2VAZXhhbXBsZS50ZXN0\r\ncHc=\r\nQUIT\r\n";
    let (t, store) = converse(Role::Submission, script, &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "334", "501", "334", "535", "334", "235", "221"
        ],
        "{t}"
    );
    assert!(
        t.contains("334 VXNlcm5hbWU6\r\n") && t.contains("334 UGFzc3dvcmQ6\r\n"),
        "{t}"
    );
    assert_eq!(store.effects, ["auth", "auth"]);
}

#[test]
fn auth_refused_without_tls_unless_loopback_allowed() {
    let start = Instant::now();
    let mut c = config(Role::Submission);
    c.allow_plaintext_on_loopback = false;
    let mut s = SmtpSession::new(Arc::new(c), peer(), start);
    let mut out = Vec::new();
    assert_eq!(
        s.handle_input(start, b"EHLO a\r\nAUTH PLAIN AGFAYgBj\r\n"),
        29
    );
    while s.poll_output(&mut out) {}
    let t = String::from_utf8(out).unwrap();
    assert!(!t.contains("AUTH PLAIN LOGIN"), "{t}");
    assert!(
        t.ends_with("530 5.7.0 Must issue a STARTTLS command first\r\n"),
        "{t}"
    );
}

#[test]
fn smuggling_sequences_are_data() {
    let script = b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
one\n.\nMAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\n\
two\r\n.\rMAIL FROM:<a@b.example>\r\n\r\n.\r\nQUIT\r\n";
    let (t, store) = converse(Role::Inbound, script, &[]);
    assert_eq!(
        codes(&t),
        ["220", "250", "250", "250", "354", "250", "221"],
        "{t}"
    );
    assert_eq!(store.delivered.len(), 1);
    assert!(String::from_utf8_lossy(&store.delivered[0].1).contains("smuggled"));
}

#[test]
fn bdat_chunks_and_rules() {
    let script = b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 5\r\nhel.\nBDAT 0\r\nBDAT 7 LAST\r\nlo\r\n.\r\n\
MAIL FROM:<x@y.example>\r\nBDAT 3\r\nabcRCPT TO:<bob@example.test>\r\nBDAT 4\r\nabcdDATA\r\nRSET\r\nQUIT\r\n";
    let (t, store) = converse(Role::Inbound, script, &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "250", "250", "250", "250", "250", "250", "554", "250", "250", "503",
            "250", "221"
        ],
        "{t}"
    );
    assert!(String::from_utf8_lossy(&store.delivered[0].1).ends_with("\r\nhel.\nlo\r\n.\r\n"));
    assert_eq!(store.delivered.len(), 1);
    assert_eq!(store.effects.iter().filter(|e| **e == "abort").count(), 1);
}

#[test]
fn limits() {
    let mut script = b"EHLO a\r\n".to_vec();
    script.extend_from_slice(&[b'N'; 600]);
    script.extend_from_slice(
        b"\r\nNO\0OP\r\nMAIL FROM:<x@y.example> SIZE=20000\r\nMAIL FROM:<x@y.example>\r\n",
    );
    for _ in 0..4 {
        script.extend_from_slice(b"RCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n");
    }
    script.extend_from_slice(
        b"RCPT TO:<bob+1@example.test>\r\nRCPT TO:<bob+2@example.test>\r\nDATA\r\n",
    );
    script.extend_from_slice(&vec![b'x'; 12_000]);
    script.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
    let (t, store) = converse(Role::Inbound, &script, &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "500", "500", "552", "250", "250", "250", "250", "250", "250", "250",
            "250", "250", "250", "452", "354", "552", "250"
        ],
        "{t}"
    );
    assert!(store.delivered.is_empty());
    assert_eq!(store.effects.last(), Some(&"abort"));
}

#[test]
fn eof_mid_data_aborts() {
    let script =
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhalf a body";
    let (_, store) = converse(Role::Inbound, script, &[]);
    assert!(store.delivered.is_empty());
    assert!(store.open.is_empty());
    assert_eq!(store.effects.last(), Some(&"abort"));
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let script = b"EHLO a\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<x@y.example>\r\n";
    let (t, _) = converse(Role::Inbound, script, &[]);
    assert_eq!(codes(&t), ["220", "250", "220"], "{t}");
}

#[test]
fn timeout_says_421() {
    let start = Instant::now();
    let mut s = SmtpSession::new(Arc::new(config(Role::Inbound)), peer(), start);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, start + Duration::from_secs(300));
    s.handle_timeout(start + Duration::from_secs(1));
    assert!(!s.is_closed());
    s.handle_timeout(deadline);
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("421 4.4.2 mx.example.test Error: timeout exceeded\r\n")
    );
    assert!(matches!(
        s.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::Timeout
        })
    ));
}

#[test]
fn shutdown_lets_the_transaction_finish() {
    let start = Instant::now();
    let mut s = SmtpSession::new(Arc::new(config(Role::Inbound)), peer(), start);
    s.handle_input(start, b"EHLO a\r\nMAIL FROM:<x@y.example>\r\n");
    s.handle_shutdown(start);
    assert!(!s.is_closed(), "a transaction is open");
    s.handle_input(start, b"RSET\r\n");
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("250 2.0.0 Ok\r\n421 4.3.2 mx.example.test Service shutting down\r\n"),
        "{text}"
    );
    assert!(s.is_closed());
    let idle = SmtpSession::new(Arc::new(config(Role::Inbound)), peer(), start);
    let mut idle = idle;
    idle.handle_shutdown(start);
    assert!(idle.is_closed());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
    /// Any split of the input gives the same replies and the same stored bytes.
    #[test]
    fn any_split_gives_the_same_conversation(cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let script: &[u8] = b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n\
DATA\r\nSubject: split\r\n\r\n..a\r\nb\n.\nc\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nBDAT 3\r\nxyzBDAT 2\r\n\r\nBDAT 0 LAST\r\n\
NOOP\r\nQUIT\r\n";
        let (whole, s1) = converse(Role::Inbound, script, &[]);
        let (split, s2) = converse(Role::Inbound, script, &cuts);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(s1.delivered, s2.delivered);
        prop_assert_eq!(codes(&whole).len(), 14);
    }

    /// Random bytes never panic, and every reply line is well formed.
    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let (t, _) = converse(Role::Submission, &input, &[]);
        for line in t.split_terminator("\r\n") {
            prop_assert!(line.len() >= 3 && line[..3].bytes().all(|b| b.is_ascii_digit()), "{}", line);
        }
    }
}

#[test]
fn mail_loops_are_refused() {
    let mut script =
        b"EHLO a\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".to_vec();
    for i in 0..101 {
        script.extend_from_slice(format!("Received: from hop{i}\r\n").as_bytes());
    }
    script.extend_from_slice(b"\r\nbody\r\n.\r\nQUIT\r\n");
    let (t, store) = converse(Role::Inbound, &script, &[]);
    assert!(t.contains("554 5.4.6"), "{t}");
    assert!(store.delivered.is_empty());
}

#[test]
fn pipelining_through_an_auth_failure_delay() {
    // More than the driver's input buffer arrives while the 535 is held back: the connection
    // waits for the delay instead of being dropped, then answers everything in order.
    let mut script = b"EHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n".to_vec();
    for _ in 0..4000 {
        script.extend_from_slice(b"NOOP\r\n");
    }
    script.extend_from_slice(b"QUIT\r\n");
    let (t, _) = converse(Role::Submission, &script, &[]);
    let codes = codes(&t);
    assert_eq!(&codes[..3], ["220", "250", "535"], "{}", &t[..200]);
    assert_eq!(codes.iter().filter(|c| **c == "250").count(), 4001);
    assert_eq!(codes.last(), Some(&"221"));
}

#[test]
fn lmtp_replies_once_per_recipient() {
    let script = b"EHLO a\r\nLHLO mta.example\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\n\
RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob+list@example.test>\r\nRCPT TO:<v@remote.example>\r\nRCPT TO:<Alice@example.test>\r\nDATA\r\nhi\r\n.\r\n\
MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nBDAT 2 LAST\r\nhi\
MAIL FROM:<>\r\nDATA\r\nQUIT\r\n";
    let (t, store) = converse(Role::Lmtp, script, &[]);
    assert!(
        t.starts_with("220 mx.example.test LMTP Petrel\r\n500 5.5.1"),
        "{t}"
    );
    assert_eq!(
        codes(&t),
        [
            "220", "500", "250", "250", "250", "550", "250", "554", "250", "354", "250", "250",
            "250", "250", "250", "250", "250", "503", "221"
        ],
        "{t}"
    );
    // One reply per successful RCPT, the duplicate Alice included; one copy each.
    assert!(t.contains("250 2.0.0 <alice@example.test> Ok: queued as S101\r\n250 2.0.0 <bob+list@example.test> Ok: queued as S101\r\n250 2.0.0 <Alice@example.test> Ok"), "{t}");
    assert_eq!(store.delivered.len(), 2);
    assert!(String::from_utf8_lossy(&store.delivered[0].1).contains("with LMTP id S101"));
}

#[test]
fn sieve_refusals_are_answered_per_recipient_in_lmtp() {
    let script = b"LHLO mta.example\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<alice@example.test>\r\n\
RCPT TO:<bob@example.test>\r\nRCPT TO:<Bob+x@example.test>\r\nDATA\r\nREJECTME\r\n.\r\nQUIT\r\n";
    let (t, _) = converse(Role::Lmtp, script, &[]);
    assert_eq!(
        codes(&t),
        [
            "220", "250", "250", "250", "250", "250", "354", "250", "550", "550", "221"
        ],
        "{t}"
    );
    // The reason is the script's, made safe for one reply line.
    assert!(
        t.contains("550 5.7.1 <bob@example.test> Rejected: no thanks 250 injected\r\n"),
        "{t}"
    );
    assert!(
        t.contains("550 5.7.1 <Bob+x@example.test> Rejected:"),
        "{t}"
    );
}

#[test]
fn sieve_refusal_in_smtp_is_one_reply() {
    let one = b"EHLO c\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nREJECTME\r\n.\r\nQUIT\r\n";
    let (t, _) = converse(Role::Inbound, one, &[]);
    assert_eq!(
        codes(&t),
        ["220", "250", "250", "250", "354", "550", "221"],
        "{t}"
    );
    assert!(
        t.contains("550 5.7.1 Rejected: no thanks 250 injected\r\n"),
        "{t}"
    );
    // With another recipient accepting, the message is accepted (the store notifies the sender).
    let two = b"EHLO c\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nREJECTME\r\n.\r\nQUIT\r\n";
    let (t, _) = converse(Role::Inbound, two, &[]);
    assert_eq!(
        codes(&t),
        ["220", "250", "250", "250", "250", "354", "250", "221"],
        "{t}"
    );
}

#[test]
fn store_throttle_lengthens_the_failure_delay() {
    let start = Instant::now();
    let mut s = SmtpSession::new(Arc::new(config(Role::Submission)), peer(), start);
    s.handle_input(
        start,
        b"EHLO a\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==\r\n",
    );
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    let Some(Event::Request {
        id,
        effect:
            Effect::Authenticate {
                client_ip,
                loopback,
                ..
            },
    }) = s.poll_event()
    else {
        panic!("expected an Authenticate request");
    };
    assert_eq!((client_ip.as_str(), loopback), ("127.0.0.1", true));
    s.handle_completion(
        start,
        id,
        Completion::Auth(AuthOutcome::FailureAfter(Duration::from_secs(8))),
    );
    assert_eq!(s.poll_timeout(), Some(start + Duration::from_secs(8)));
    s.handle_timeout(start + Duration::from_secs(7));
    out.clear();
    assert!(!s.poll_output(&mut out), "answered early");
    s.handle_timeout(start + Duration::from_secs(8));
    assert!(s.poll_output(&mut out));
    assert_eq!(out, b"535 5.7.8 Authentication credentials invalid\r\n");
}
