//! The IMAP fetch client against scripted remotes: login, SELECT, listing, streamed literals,
//! deletion only after delivery, UIDVALIDITY changes, any split of the remote's responses giving
//! the same result, and faults (garbage, a dropped connection).

// Tests may read the clock to get a starting instant; the sessions never do.
#![allow(clippy::disallowed_methods)]

mod fetch_support;

use fetch_support::{Outcome, account, body_of, config, run};
use petrel_core::fetch::{FetchState, ImapFetch, Protocol, message_digest};
use proptest::prelude::*;
use std::time::Instant;

fn message(tag: &str, lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: s@remote.example\r\nSubject: {tag}\r\nMessage-ID: <{tag}@remote.example>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\r\n.dots stay as they are\r\n"
    )
    .into_bytes();
    for i in 0..lines {
        m.extend_from_slice(format!("{tag} line {i} with ) and {{3}} inside\r\n").as_bytes());
    }
    m
}

fn session(keep: bool) -> Box<ImapFetch> {
    Box::new(ImapFetch::new(
        account(Protocol::Imap, keep),
        config(),
        Instant::now(),
    ))
}

/// Two new messages (UIDs 7 and 9), deleting.
fn script(big: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let a = message("seven", if big { 4000 } else { 3 });
    let b = message("nine", 2);
    // A long capability list (over 200 characters), as real servers send.
    let mut s = b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE NAMESPACE UNSELECT MOVE \
        CONDSTORE QRESYNC MULTIAPPEND LIST-STATUS SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT \
        THREAD=REFERENCES SPECIAL-USE ESEARCH UTF8=ACCEPT APPENDLIMIT=52428800 \
        AUTH=PLAIN SASL-IR UIDPLUS IDLE] hi\r\n\
        f1 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] in\r\n\
        * FLAGS (\\Seen)\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\nf2 OK [READ-WRITE] sel\r\n"
        .to_vec();
    s.extend_from_slice(
        format!(
            "* 1 FETCH (UID 7 RFC822.SIZE {})\r\n* 2 FETCH (RFC822.SIZE {} UID 9)\r\nf3 OK done\r\n",
            a.len(),
            b.len()
        )
        .as_bytes(),
    );
    s.extend_from_slice(format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", a.len()).as_bytes());
    s.extend_from_slice(&a);
    s.extend_from_slice(b")\r\n* 1 FETCH (FLAGS (\\Recent))\r\nf4 OK\r\n");
    s.extend_from_slice(format!("* 2 FETCH (BODY[] {{{}}}\r\n", b.len()).as_bytes());
    s.extend_from_slice(&b);
    s.extend_from_slice(b" UID 9)\r\nf5 OK\r\nf6 OK stored\r\n* 1 EXPUNGE\r\n* 1 EXPUNGE\r\nf7 OK\r\n* BYE\r\nf8 OK\r\n");
    (s, vec![a, b])
}

fn whole(big: bool) -> Outcome {
    let (s, _) = script(big);
    run(session(false), &s, &[], FetchState::default(), false)
}

#[test]
fn fetches_new_messages_then_deletes_and_expunges() {
    let (_, want) = script(false);
    let o = whole(false);
    assert_eq!(o.finished, Some((2, None)), "{:#?}", o.trace);
    assert_eq!(o.messages.len(), 2);
    for (stored, sent) in o.messages.iter().zip(&want) {
        assert_eq!(&body_of(stored), sent);
    }
    assert!(
        o.trace
            .contains(&"C: f1 AUTHENTICATE PLAIN AGFsaWNlAHB3".to_string())
    );
    assert!(o.trace.contains(&"C: f2 SELECT \"INBOX\"".to_string()));
    assert!(o.at("E: UidValidity None 42") < o.at("C: f3 UID FETCH 1:* (UID RFC822.SIZE)"));
    assert!(o.at("E: Pending imap:42:7") < o.at("C: f4 UID FETCH 7 BODY.PEEK[]"));
    assert!(o.at("E: Delivered imap:42:9") < o.at("C: f6 UID STORE 7,9 +FLAGS.SILENT (\\Deleted)"));
    assert!(o.at("C: f6") < o.at("C: f7 UID EXPUNGE 7,9"));
    assert!(o.at("C: f7") < o.at("E: Finished 2 None"));
    assert!(o.at("E: Finished") < o.at("C: f8 LOGOUT"));
    assert!(o.closed);
}

#[test]
fn keep_examines_and_never_stores() {
    let (s, _) = script(false);
    let text = String::from_utf8(s).unwrap();
    let cut = text.find("f6 OK stored").unwrap();
    let s = format!("{}* BYE\r\nf6 OK\r\n", &text[..cut]);
    let o = run(
        session(true),
        s.as_bytes(),
        &[],
        FetchState::default(),
        false,
    );
    assert_eq!(o.finished, Some((2, None)), "{:#?}", o.trace);
    assert!(o.trace.contains(&"C: f2 EXAMINE \"INBOX\"".to_string()));
    assert!(
        o.trace
            .contains(&"C: f3 UID FETCH 1:* (UID RFC822.SIZE)".to_string())
    );
    assert!(
        !o.trace
            .iter()
            .any(|l| l.contains("STORE") || l.contains("EXPUNGE"))
    );
}

#[test]
fn known_uids_are_not_fetched_again_but_deleted() {
    let (s, _) = script(false);
    // UID 7 was fetched before (highest 7 under UIDVALIDITY 42).
    let text = String::from_utf8(s).unwrap();
    let start = text.find("* 1 FETCH (UID 7 BODY[]").unwrap();
    let end = text.find("* 2 FETCH (BODY[]").unwrap();
    let s = format!("{}{}", &text[..start], &text[end..])
        .replace("f5 OK\r\n", "f4 OK\r\n")
        .replace("f6 OK stored", "f5 OK stored")
        .replace("f7 OK\r\n* BYE\r\nf8", "f6 OK\r\n* BYE\r\nf7");
    let state = FetchState {
        uidvalidity: Some(42),
        highest_uid: 7,
        ..Default::default()
    };
    let o = run(session(false), s.as_bytes(), &[], state, false);
    assert_eq!(o.finished, Some((1, None)), "{:#?}", o.trace);
    assert!(!o.trace.iter().any(|l| l.contains("UID FETCH 7 BODY")));
    assert!(
        o.trace
            .contains(&"C: f5 UID STORE 7,9 +FLAGS.SILENT (\\Deleted)".to_string())
    );
    assert!(!o.trace.iter().any(|l| l.starts_with("E: UidValidity")));
}

#[test]
fn uidvalidity_change_skips_messages_fetched_before() {
    let a = message("seven", 3);
    let b = message("nine", 2);
    // Message "seven" was fetched under UIDVALIDITY 41.
    let digest = message_digest(
        "<seven@remote.example>",
        "Mon, 24 Nov 2025 10:00:00 +0000",
        a.len() as u64,
    );
    let state = FetchState {
        uidvalidity: Some(41),
        highest_uid: 900,
        digests: [digest].into_iter().collect(),
        ..Default::default()
    };
    let hdr = |tag: &str| {
        format!(
            "Message-ID: <{tag}@remote.example>\r\nDate: Mon, 24 Nov 2025 10:00:00 +0000\r\n\r\n"
        )
    };
    let mut s = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] hi\r\nf1 OK in\r\n\
        * CAPABILITY IMAP4rev1 UIDPLUS\r\nf2 OK\r\n* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\nf3 OK sel\r\n"
        .to_vec();
    for (seq, uid, m, tag) in [(1, 3, &a, "seven"), (2, 4, &b, "nine")] {
        let h = hdr(tag);
        s.extend_from_slice(
            format!(
                "* {seq} FETCH (UID {uid} RFC822.SIZE {} BODY[HEADER.FIELDS (MESSAGE-ID DATE)] {{{}}}\r\n{h})\r\n",
                m.len(),
                h.len()
            )
            .as_bytes(),
        );
    }
    s.extend_from_slice(b"f4 OK\r\n");
    s.extend_from_slice(format!("* 2 FETCH (UID 4 BODY[] {{{}}}\r\n", b.len()).as_bytes());
    s.extend_from_slice(&b);
    s.extend_from_slice(b")\r\nf5 OK\r\nf6 OK\r\nf7 OK\r\n* BYE\r\nf8 OK\r\n");
    let o = run(session(false), &s, &[], state, false);
    assert_eq!(o.finished, Some((1, None)), "{:#?}", o.trace);
    assert!(o.trace.contains(&"E: UidValidity Some(41) 42".to_string()));
    assert!(o.trace.iter().any(|l| l.starts_with(
        "C: f4 UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)])"
    )));
    // The matched message is recorded as fetched without fetching it; the other is fetched.
    assert!(
        o.trace
            .iter()
            .any(|l| l.starts_with("E: Delivered imap:42:3"))
    );
    assert!(!o.trace.iter().any(|l| l.contains("Pending imap:42:3")));
    assert!(o.trace.contains(&"E: Pending imap:42:4".to_string()));
    assert_eq!(o.messages.len(), 1);
    assert_eq!(body_of(&o.messages[0]), b);
    assert!(
        o.trace
            .contains(&"C: f6 UID STORE 3:4 +FLAGS.SILENT (\\Deleted)".to_string())
    );
}

#[test]
fn one_byte_at_a_time_gives_the_same_result() {
    let (s, _) = script(true);
    let cuts: Vec<usize> = (0..s.len()).collect();
    let o = run(session(false), &s, &cuts, FetchState::default(), false);
    assert_eq!(o, whole(true));
}

#[test]
fn large_literal_streams_in_bounded_chunks() {
    let (_, want) = script(true);
    let o = whole(true);
    assert_eq!(body_of(&o.messages[0]), want[0]);
    assert!(o.trace.iter().filter(|l| *l == "E: Append").count() >= 5);
}

#[test]
fn connection_dropped_mid_literal_aborts_and_deletes_nothing() {
    let (s, _) = script(true);
    let o = run(
        session(false),
        &s[..s.len() / 2],
        &[],
        FetchState::default(),
        false,
    );
    let (fetched, error) = o.finished.clone().unwrap();
    assert_eq!(fetched, 0);
    assert!(
        error.unwrap().contains("closed the connection"),
        "{:#?}",
        o.trace
    );
    assert!(o.trace.contains(&"E: Abort".to_string()));
    assert!(
        !o.trace
            .iter()
            .any(|l| l.contains("STORE") || l.starts_with("E: Delivered"))
    );
}

#[test]
fn login_failure_is_reported() {
    let s = b"* OK [CAPABILITY IMAP4rev1] hi\r\nf1 NO [AUTHENTICATIONFAILED] bad password\r\n* BYE\r\nf2 OK\r\n";
    let o = run(session(false), s, &[], FetchState::default(), false);
    let (_, error) = o.finished.clone().unwrap();
    assert!(error.unwrap().contains("login failed"), "{:#?}", o.trace);
    assert!(
        o.trace
            .contains(&"C: f1 LOGIN \"alice\" \"pw\"".to_string())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_result(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let (s, _) = script(false);
        let o = run(session(false), &s, &cuts, FetchState::default(), false);
        prop_assert_eq!(o, whole(false));
    }

    #[test]
    fn garbage_never_panics_and_never_deletes_undelivered_mail(
        junk in proptest::collection::vec(any::<u8>(), 0..3000),
        cut in 0usize..600,
    ) {
        let (s, _) = script(false);
        let mut input = s[..cut.min(s.len())].to_vec();
        input.extend_from_slice(&junk);
        let o = run(session(false), &input, &[5, 300], FetchState::default(), false);
        prop_assert!(o.closed);
        prop_assert!(o.finished.is_some());
        if let Some(i) = o.trace.iter().position(|l| l.contains("UID STORE")) {
            for uid in ["7", "9"] {
                if o.trace[i].contains(uid) {
                    let delivered = o.at(&format!("E: Delivered imap:42:{}", uid));
                    prop_assert!(delivered < i);
                }
            }
        }
    }
}

#[test]
fn idle_lets_go_of_the_account_and_fetches_what_arrives() {
    let m = message("late", 2);
    let mut s = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR UIDPLUS IDLE] hi\r\n\
        f1 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] in\r\n\
        * 0 EXISTS\r\n* OK [UIDVALIDITY 5] v\r\nf2 OK sel\r\n\
        + idling\r\n* 1 EXISTS\r\nf3 OK idle done\r\n"
        .to_vec();
    s.extend_from_slice(
        format!("* 1 FETCH (UID 1 RFC822.SIZE {})\r\nf4 OK\r\n", m.len()).as_bytes(),
    );
    s.extend_from_slice(format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", m.len()).as_bytes());
    s.extend_from_slice(&m);
    s.extend_from_slice(b")\r\nf5 OK\r\nf6 OK\r\n* 1 EXPUNGE\r\nf7 OK\r\n+ idling\r\n");
    let mut config = (*config()).clone();
    config.idle = Some(std::time::Duration::from_secs(29 * 60));
    let session = Box::new(ImapFetch::new(
        account(Protocol::Imap, false),
        std::sync::Arc::new(config),
        Instant::now(),
    ));
    let o = run(session, &s, &[], FetchState::default(), false);
    assert_eq!(o.messages.len(), 1, "{:#?}", o.trace);
    assert_eq!(body_of(&o.messages[0]), m);
    // The account is released for the IDLE wait and taken back (state reloaded) before the
    // next pass.
    assert!(o.at("E: Finished 0 None") < o.at("E: Release"));
    assert!(o.at("E: Release") < o.at("C: f3 IDLE"));
    assert!(o.at("C: f3 IDLE") < o.at("C: DONE"));
    assert!(o.at("C: DONE") < o.at("E: Acquire"));
    let second_load = o
        .trace
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == "E: Load")
        .nth(1)
        .map(|(i, _)| i)
        .expect("state reloaded after IDLE");
    assert!(o.at("E: Acquire") < second_load);
    assert!(second_load < o.at("C: f4 UID FETCH 1:* (UID RFC822.SIZE)"));
    assert!(o.trace.contains(&"E: Finished 1 None".to_string()));
    assert!(o.trace.contains(&"C: f8 IDLE".to_string()));
    // The connection then drops in IDLE: reported, nothing else.
    let (_, error) = o.finished.clone().unwrap();
    assert!(error.unwrap().contains("in IDLE"));
}
