//! The POP3 fetch client against scripted remotes: what it sends and stores, the order of the
//! journal entries against DELE, any split of the remote's replies giving the same result, and
//! faults (garbage, a dropped connection, a failing store, no STLS where it is required).

// Tests may read the clock to get a starting instant; the sessions never do.
#![allow(clippy::disallowed_methods)]

mod fetch_support;

use fetch_support::{Outcome, account, body_of, config, run};
use petrel_core::fetch::{FetchState, Pop3Fetch, Protocol, Security};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// The message as the remote stores it (with its own Return-Path first).
fn message(tag: &str, extra_lines: usize) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <sender@remote.example>\r\nFrom: s@remote.example\r\nSubject: {tag}\r\n\
         Message-ID: <{tag}@remote.example>\r\n\r\n.starts with a dot\r\n..two dots\r\n\
         .\r\nmiddle\r\n"
    )
    .into_bytes();
    for i in 0..extra_lines {
        m.extend_from_slice(
            format!(".{tag} filler line {i} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"end\r\n");
    m
}

/// POP3 dot-stuffing plus the terminating line.
fn stuffed(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in m.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The stored form: the remote's Return-Path line is replaced by the store's own.
fn without_return_path(m: &[u8]) -> Vec<u8> {
    let i = m.iter().position(|&b| b == b'\n').unwrap();
    m[i + 1..].to_vec()
}

fn script(big: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let m2 = message("two", if big { 3000 } else { 2 });
    let m3 = message("three", 1);
    let mut s = b"+OK POP3 ready\r\n+OK capa\r\nUSER\r\nUIDL\r\n.\r\n+OK user\r\n+OK pass\r\n\
        +OK uidl\r\n1 aaa\r\n2 bbb\r\n3 ccc\r\n.\r\n+OK list\r\n1 50\r\n2 60\r\n3 70\r\n.\r\n\
        +OK dele 1\r\n+OK retr\r\n"
        .to_vec();
    s.extend_from_slice(&stuffed(&m2));
    s.extend_from_slice(b"+OK dele 2\r\n+OK retr\r\n");
    s.extend_from_slice(&stuffed(&m3));
    s.extend_from_slice(b"+OK dele 3\r\n+OK bye\r\n");
    (s, vec![m2, m3])
}

fn state_with(uidls: &[&str]) -> FetchState {
    FetchState {
        uidls: uidls.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn session(keep: bool, security: Security) -> Box<Pop3Fetch> {
    let mut a = (*account(Protocol::Pop3, keep)).clone();
    a.security = security;
    Box::new(Pop3Fetch::new(Arc::new(a), config(), Instant::now()))
}

fn whole(big: bool) -> Outcome {
    let (s, _) = script(big);
    run(
        session(false, Security::StartTls { required: false }),
        &s,
        &[],
        state_with(&["aaa"]),
        false,
    )
}

#[test]
fn fetches_new_messages_deletes_after_delivery_and_quits() {
    let (_, want) = script(false);
    let o = whole(false);
    assert_eq!(o.finished, Some((2, None)), "{:#?}", o.trace);
    assert_eq!(o.messages.len(), 2);
    for (stored, sent) in o.messages.iter().zip(&want) {
        assert_eq!(body_of(stored), without_return_path(sent));
        let head = String::from_utf8_lossy(stored);
        assert!(
            head.starts_with("Received: from remote.example by local.example (Petrel) with POP3"),
            "{head}"
        );
    }
    // Already fetched: deleted, never fetched again.
    assert!(!o.trace.iter().any(|l| l == "C: RETR 1"));
    assert!(o.at("C: DELE 1") < o.at("C: RETR 2"));
    // The journal entry comes before the message is read, the delivery record after the
    // commit, and the DELE only after that.
    assert!(o.at("E: Pending pop3:bbb") < o.at("C: RETR 2"));
    let commit = o.trace.iter().position(|l| l == "E: Commit").unwrap();
    assert!(commit < o.at("E: Delivered pop3:bbb"));
    assert!(o.at("E: Delivered pop3:bbb") < o.at("C: DELE 2"));
    assert!(o.at("E: Delivered pop3:ccc") < o.at("C: DELE 3"));
    assert!(o.at("C: DELE 3") < o.at("C: QUIT"));
    assert!(o.at("C: QUIT") < o.at("E: Finished 2 None"));
    assert!(o.at("E: Retain") < o.at("E: Pending"));
    assert!(o.trace.contains(&"C: USER alice".to_string()));
    assert!(o.closed);
}

#[test]
fn keep_sends_no_dele() {
    let (s, _) = script(false);
    // With --keep the remote is never told to delete: replies to DELE never come, so the
    // script's "+OK dele" lines are read as the next replies; strip them.
    let s = String::from_utf8(s)
        .unwrap()
        .replace("+OK dele 1\r\n", "")
        .replace("+OK dele 2\r\n", "")
        .replace("+OK dele 3\r\n", "");
    let o = run(
        session(true, Security::StartTls { required: false }),
        s.as_bytes(),
        &[],
        state_with(&["aaa"]),
        false,
    );
    assert_eq!(o.finished, Some((2, None)), "{:#?}", o.trace);
    assert!(!o.trace.iter().any(|l| l.starts_with("C: DELE")));
}

#[test]
fn large_message_streams_in_bounded_chunks() {
    let (_, want) = script(true);
    let o = whole(true);
    assert_eq!(o.finished, Some((2, None)));
    assert_eq!(body_of(&o.messages[0]), without_return_path(&want[0]));
    let appends = o.trace.iter().filter(|l| *l == "E: Append").count();
    assert!(appends >= 4, "{appends} appends for ~150 KB");
}

#[test]
fn one_byte_at_a_time_gives_the_same_result() {
    let (s, _) = script(true);
    let cuts: Vec<usize> = (0..s.len()).collect();
    let o = run(
        session(false, Security::StartTls { required: false }),
        &s,
        &cuts,
        state_with(&["aaa"]),
        false,
    );
    assert_eq!(o, whole(true));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_result(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let (s, _) = script(false);
        let o = run(session(false, Security::StartTls { required: false }), &s, &cuts, state_with(&["aaa"]), false);
        prop_assert_eq!(o, whole(false));
    }

    #[test]
    fn garbage_ends_the_session_with_an_error_never_a_panic(
        junk in proptest::collection::vec(any::<u8>(), 0..2000),
        cut in 0usize..400,
    ) {
        let (s, _) = script(false);
        let mut input = s[..cut.min(s.len())].to_vec();
        input.extend_from_slice(&junk);
        let o = run(session(false, Security::StartTls { required: false }), &input, &[7, 100], state_with(&["aaa"]), false);
        prop_assert!(o.closed);
        let (_, error) = o.finished.clone().expect("a report");
        // Whatever happened, nothing was deleted that was not delivered first.
        for l in o.trace.iter().filter(|l| l.starts_with("C: DELE ")) {
            let n: usize = l[8..].parse().unwrap();
            if n > 1 {
                let key = if n == 2 { "bbb" } else { "ccc" };
                let delivered = o.at(&format!("E: Delivered pop3:{}", key));
                prop_assert!(delivered < o.at(l));
            }
        }
        let _ = error;
    }
}

#[test]
fn connection_dropped_mid_message_aborts_and_deletes_nothing_new() {
    let (s, _) = script(true);
    let cut = s.len() / 2;
    let o = run(
        session(false, Security::StartTls { required: false }),
        &s[..cut],
        &[],
        state_with(&["aaa"]),
        false,
    );
    let (fetched, error) = o.finished.clone().unwrap();
    assert_eq!(fetched, 0);
    assert!(error.unwrap().contains("during RETR"), "{:#?}", o.trace);
    assert!(o.trace.contains(&"E: Abort".to_string()));
    assert!(!o.trace.iter().any(|l| l.starts_with("E: Delivered")));
    assert!(!o.trace.iter().any(|l| l == "C: DELE 2"));
    assert!(o.messages.is_empty());
}

#[test]
fn failed_local_delivery_is_reported_and_nothing_is_deleted() {
    let (s, _) = script(false);
    let o = run(
        session(false, Security::StartTls { required: false }),
        &s,
        &[],
        state_with(&["aaa"]),
        true,
    );
    let (_, error) = o.finished.clone().unwrap();
    assert!(error.unwrap().contains("disk full"));
    assert!(!o.trace.iter().any(|l| l.starts_with("E: Delivered")));
    assert!(!o.trace.iter().any(|l| l == "C: DELE 2"));
}

#[test]
fn required_tls_not_offered_never_sends_the_password() {
    let s = b"+OK hi\r\n+OK\r\nUSER\r\nUIDL\r\n.\r\n+OK bye\r\n";
    let o = run(
        session(false, Security::StartTls { required: true }),
        s,
        &[],
        FetchState::default(),
        false,
    );
    let (_, error) = o.finished.clone().unwrap();
    assert!(error.unwrap().contains("does not offer STLS"));
    assert!(
        !o.trace.iter().any(|l| l.starts_with("C: USER")
            || l.starts_with("C: PASS")
            || l.starts_with("C: AUTH"))
    );
}

#[test]
fn stls_then_auth_plain_when_offered() {
    let s = b"+OK hi\r\n+OK\r\nSTLS\r\nUIDL\r\n.\r\n+OK go\r\n+OK\r\nSASL PLAIN\r\nUIDL\r\n.\r\n\
              +OK in\r\n+OK\r\n.\r\n+OK\r\n.\r\n+OK bye\r\n";
    let o = run(
        session(false, Security::StartTls { required: true }),
        s,
        &[],
        FetchState::default(),
        false,
    );
    assert_eq!(o.finished, Some((0, None)), "{:#?}", o.trace);
    assert!(o.at("C: STLS") < o.at("E: StartTls"));
    assert!(o.at("E: StartTls") < o.at("C: AUTH PLAIN"));
    assert!(o.trace.contains(&"C: AUTH PLAIN AGFsaWNlAHB3".to_string()));
}
