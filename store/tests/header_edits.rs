//! Scanners' header edits (`Effect::Commit { edits }`): the pure rewrite of a header block, and
//! a commit through the real store on disk, where the header is rewritten and the body copied
//! untouched.

use petrel_core::filter::HeaderEdit;
use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{Completion, Effect, Envelope, Recipient, Refusals, UserId, WallClock};
use petrel_store::store::apply_header_edits;
use petrel_store::{RealFs, Store, StoreConfig};
use std::sync::Arc;

fn add(name: &str, value: &str) -> HeaderEdit {
    HeaderEdit::Add {
        name: name.into(),
        value: value.into(),
    }
}

fn change(name: &str, index: u32, value: &str) -> HeaderEdit {
    HeaderEdit::Change {
        name: name.into(),
        index,
        value: value.into(),
    }
}

const HEADER: &[u8] = b"Received: from a\r\n\tby b;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\nFrom: x@example.test\r\nX-Spam: forged\r\nSubject: hi\r\nX-Spam: forged again\r\n";

fn text(edits: &[HeaderEdit]) -> String {
    String::from_utf8(apply_header_edits(HEADER, edits)).unwrap()
}

#[test]
fn no_edits_keep_the_header_byte_for_byte() {
    assert_eq!(apply_header_edits(HEADER, &[]), HEADER);
}

#[test]
fn add_appends_at_the_end_in_order() {
    let t = text(&[add("X-Spam-Flag", "YES"), add("X-Spam-Score", "7.5")]);
    assert_eq!(
        t.as_bytes(),
        [HEADER, b"X-Spam-Flag: YES\r\nX-Spam-Score: 7.5\r\n"].concat()
    );
}

#[test]
fn insert_at_index_counts_fields_not_lines() {
    let t = text(&[HeaderEdit::Insert {
        index: 1,
        name: "DKIM-Signature".into(),
        value: "v=1; a=rsa-sha256;\r\n\tb=abc".into(),
    }]);
    assert!(
        t.starts_with("Received: from a\r\n\tby b;\r\n\tMon, 1 Jan 2024 00:00:00 +0000\r\nDKIM-Signature: v=1; a=rsa-sha256;\r\n\tb=abc\r\nFrom: "),
        "{t}"
    );
    let t = text(&[HeaderEdit::Insert {
        index: 0,
        name: "X-First".into(),
        value: "1".into(),
    }]);
    assert!(t.starts_with("X-First: 1\r\nReceived: "), "{t}");
    let t = text(&[HeaderEdit::Insert {
        index: 99,
        name: "X-Last".into(),
        value: "1".into(),
    }]);
    assert!(t.ends_with("X-Last: 1\r\n"), "{t}");
}

#[test]
fn change_replaces_or_deletes_the_nth_occurrence() {
    let t = text(&[change("x-spam", 2, "")]);
    assert!(
        t.contains("X-Spam: forged\r\n") && !t.contains("forged again"),
        "{t}"
    );
    let t = text(&[change("X-Spam", 1, ""), change("X-Spam", 1, "")]);
    assert!(!t.contains("X-Spam"), "{t}");
    let t = text(&[change("Subject", 1, "[SPAM] hi")]);
    assert!(
        t.contains("Subject: [SPAM] hi\r\n") && !t.contains("Subject: hi"),
        "{t}"
    );
    // No such occurrence: deleting does nothing, changing adds the field (as Postfix does).
    assert_eq!(text(&[change("X-Nope", 1, "")]).as_bytes(), HEADER);
    assert!(text(&[change("X-New", 3, "v")]).ends_with("X-New: v\r\n"));
}

#[test]
fn values_cannot_start_a_new_field() {
    let t = text(&[add("X-Test", "a\nInjected: yes\r\nAlso: yes")]);
    assert!(
        t.ends_with("X-Test: a\r\n\tInjected: yes\r\n\tAlso: yes\r\n"),
        "{t}"
    );
    let t = text(&[add("Bad Name:\r\n", "v")]);
    assert!(t.ends_with("BadName: v\r\n"), "{t}");
}

#[derive(Debug)]
struct Clock;
impl WallClock for Clock {
    fn unix_seconds(&self) -> i64 {
        1_800_000_000
    }
}

/// A commit with edits, an Authentication-Results prepend and junk: the stored file has
/// Return-Path, the prepend, the edited header and the body byte for byte (1 MB of it, copied
/// through the rewrite), and it is in Junk.
#[test]
fn commit_applies_edits_on_disk_and_keeps_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Store::open(
        Arc::new(RealFs),
        StoreConfig {
            data_dir: tmp.path().to_path_buf(),
            hostname: "mx.example.test".into(),
            clock: Arc::new(Clock),
            pid: 42,
            seed: 7,
        },
    )
    .unwrap();
    let envelope = Envelope {
        session: "S".into(),
        id: "S01".into(),
        sender: ReversePath::Mailbox(parse_mailbox("x@remote.example").unwrap()),
        recipients: vec![Recipient {
            address: parse_mailbox("alice@example.test").unwrap(),
            mailbox: Some(UserId("alice@example.test".into())),
        }],
        submitted_by: None,
    };
    let Completion::Began(tx) = s.execute(Effect::BeginMessage {
        envelope,
        trace: b"Received: from a by b\r\n".to_vec(),
    }) else {
        panic!()
    };
    let mut body = Vec::new();
    for i in 0..20_000 {
        body.extend_from_slice(format!("body line {i:06} with some text in it.\r\n").as_bytes());
    }
    for piece in [&b"X-Spam: forged\r\nSubject: hi\r\n\r\n"[..], &body] {
        assert!(matches!(
            s.execute(Effect::AppendChunk {
                tx,
                bytes: piece.to_vec()
            }),
            Completion::Appended
        ));
    }
    let done = s.execute(Effect::Commit {
        tx,
        prepend: b"Authentication-Results: mx.example.test; spf=none\r\n".to_vec(),
        refusals: Refusals::AllOrNotice,
        junk: true,
        edits: vec![change("X-Spam", 1, ""), add("X-Spam-Flag", "YES")],
    });
    assert!(matches!(done, Completion::Durable(_)), "{done:?}");
    let junk = tmp.path().join("mail/example.test/alice/.Junk/new");
    let files: Vec<_> = std::fs::read_dir(&junk)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one message in Junk");
    let stored = std::fs::read(&files[0]).unwrap();
    let mut want = b"Return-Path: <x@remote.example>\r\nAuthentication-Results: mx.example.test; spf=none\r\nReceived: from a by b\r\nSubject: hi\r\nX-Spam-Flag: YES\r\n\r\n".to_vec();
    want.extend_from_slice(&body);
    assert!(
        stored == want,
        "stored message differs (len {} vs {})",
        stored.len(),
        want.len()
    );
    // Maildir's S= size is the file's size.
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let size = format!("S={}", want.len());
    assert!(
        name.split(',')
            .any(|f| f.split(':').next() == Some(size.as_str())),
        "{name}"
    );
}
