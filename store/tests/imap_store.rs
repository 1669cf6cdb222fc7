//! The store answering the IMAP session's requests, on a real filesystem in a temp dir.

use petrel_core::imap::request::{
    FlagMode, FolderInfo, FolderSnapshot, FolderStatus, ImapAnswer, ImapRequest,
};
use petrel_core::{Completion, Effect, TxId, UserId, WallClock};
use petrel_store::{RealFs, Store, StoreConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const USER: &str = "alice@example.test";
const NOW: i64 = 1_800_000_000;

#[derive(Debug)]
struct FixedClock(i64);
impl WallClock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        self.0
    }
}

fn store(dir: &Path) -> Store {
    store_at(dir, NOW)
}

/// A store whose clock says `now`.
fn store_at(dir: &Path, now: i64) -> Store {
    let config = StoreConfig {
        data_dir: dir.to_path_buf(),
        hostname: "mx.example.test".into(),
        clock: Arc::new(FixedClock(now)),
        pid: 42,
        seed: 7,
    };
    Store::open(Arc::new(RealFs), config).unwrap()
}

fn root(dir: &Path) -> PathBuf {
    dir.join("mail/example.test/alice")
}

fn ask(s: &Store, request: ImapRequest) -> ImapAnswer {
    match s.execute(Effect::Imap {
        user: UserId(USER.into()),
        request,
    }) {
        Completion::Imap(a) => a,
        other => panic!("unexpected {other:?}"),
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn create(s: &Store, name: &str) {
    assert_eq!(
        ask(
            s,
            ImapRequest::Create {
                folder: name.into()
            }
        ),
        ImapAnswer::Done
    );
}

fn select(s: &Store, folder: &str) -> FolderSnapshot {
    match ask(
        s,
        ImapRequest::Select {
            folder: folder.into(),
            readonly: false,
        },
    ) {
        ImapAnswer::Snapshot(snap) => snap,
        other => panic!("{other:?}"),
    }
}

fn status(s: &Store, folder: &str) -> FolderStatus {
    match ask(
        s,
        ImapRequest::Status {
            folder: folder.into(),
        },
    ) {
        ImapAnswer::Status(st) => st,
        other => panic!("{other:?}"),
    }
}

fn append(s: &Store, folder: &str, flags: &[&str], date: Option<i64>, chunks: &[&[u8]]) -> u32 {
    let tx = match ask(
        s,
        ImapRequest::AppendBegin {
            folder: folder.into(),
            flags: strs(flags),
            date,
        },
    ) {
        ImapAnswer::Appending(tx) => tx,
        other => panic!("{other:?}"),
    };
    for c in chunks {
        let done = s.execute(Effect::AppendChunk {
            tx,
            bytes: c.to_vec(),
        });
        assert!(matches!(done, Completion::Appended), "{done:?}");
    }
    match ask(s, ImapRequest::AppendCommit { tx }) {
        ImapAnswer::Appended { uid, .. } => uid,
        other => panic!("{other:?}"),
    }
}

fn read_all(s: &Store, folder: &str, uid: u32, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match ask(
            s,
            ImapRequest::Read {
                folder: folder.into(),
                uid,
                offset: out.len() as u64,
                max: step,
            },
        ) {
            ImapAnswer::Data(d) if d.is_empty() => return out,
            ImapAnswer::Data(d) => out.extend(d),
            other => panic!("{other:?}"),
        }
    }
}

fn is_no(a: &ImapAnswer, code: &str) -> bool {
    matches!(a, ImapAnswer::No(t) if t.starts_with(code))
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn append_then_select_shows_uid_flags_size_and_date() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let msg = b"Subject: hi\r\n\r\nbody\r\n";
    let a = append(
        &s,
        "INBOX",
        &[],
        Some(1_700_000_000),
        &[&msg[..5], &msg[5..]],
    );
    let b = append(&s, "inbox", &["\\Seen", "$Forwarded"], None, &[msg]);
    assert_eq!((a, b), (1, 2));
    assert_eq!(files(&root(tmp.path()).join("new")).len(), 1);
    let cur = files(&root(tmp.path()).join("cur"));
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(":2,Sa"), "{cur:?}");
    assert!(files(&tmp.path().join("tmp")).is_empty());
    let snap = select(&s, "INBOX");
    assert_eq!(snap.next_uid, 3);
    assert_eq!(snap.messages.len(), 2);
    assert_eq!(snap.messages[0].uid, 1);
    assert!(snap.messages[0].flags.is_empty());
    assert_eq!(snap.messages[0].size, msg.len() as u64);
    assert_eq!(snap.messages[0].internal_date, 1_700_000_000);
    assert_eq!(*snap.messages[1].flags, *strs(&["\\Seen", "$Forwarded"]));
    assert!(snap.messages[1].internal_date > 1_700_000_000);
    assert_eq!(read_all(&s, "INBOX", 1, 7), msg);
    let st = status(&s, "INBOX");
    assert_eq!(
        (st.messages, st.uidnext, st.unseen, st.size),
        (2, 3, 1, 2 * msg.len() as u64)
    );
    assert_eq!(st.uidvalidity, snap.uidvalidity);
    assert_eq!(st.highest_modseq, snap.highest_modseq);
}

#[test]
fn append_to_missing_folder_and_abort() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let a = ask(
        &s,
        ImapRequest::AppendBegin {
            folder: "Nope".into(),
            flags: vec![],
            date: None,
        },
    );
    assert!(is_no(&a, "[TRYCREATE]"), "{a:?}");
    let ImapAnswer::Appending(tx) = ask(
        &s,
        ImapRequest::AppendBegin {
            folder: "INBOX".into(),
            flags: vec![],
            date: None,
        },
    ) else {
        panic!()
    };
    s.execute(Effect::AppendChunk {
        tx,
        bytes: b"x".to_vec(),
    });
    assert_eq!(files(&tmp.path().join("tmp")).len(), 1);
    assert!(matches!(
        s.execute(Effect::Abort { tx }),
        Completion::Aborted
    ));
    assert!(files(&tmp.path().join("tmp")).is_empty());
    assert!(select(&s, "INBOX").messages.is_empty());
    assert!(matches!(
        s.execute(Effect::Imap {
            user: UserId(USER.into()),
            request: ImapRequest::AppendCommit { tx: TxId(9999) }
        }),
        Completion::Failed(_)
    ));
}

#[test]
fn bare_lf_read_size_equals_meta_size() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let msg = b"Subject: lf\n\nline one\nline two\r\nend\n";
    let uid = append(
        &s,
        "INBOX",
        &[],
        None,
        &[&msg[..3], &msg[3..14], &msg[14..]],
    );
    // And a file another program dropped in, without a size in its name.
    std::fs::write(root(tmp.path()).join("new/1.other.host"), msg).unwrap();
    let snap = select(&s, "INBOX");
    assert_eq!(snap.messages.len(), 2);
    for m in &snap.messages {
        for step in [1, 5, 1000] {
            let bytes = read_all(&s, "INBOX", m.uid, step);
            assert_eq!(bytes.len() as u64, m.size, "uid {}", m.uid);
            assert_eq!(
                bytes,
                b"Subject: lf\r\n\r\nline one\r\nline two\r\nend\r\n".to_vec()
            );
        }
    }
    assert_eq!(snap.messages[0].uid, uid);
    let a = ask(
        &s,
        ImapRequest::Read {
            folder: "INBOX".into(),
            uid: 99,
            offset: 0,
            max: 10,
        },
    );
    assert!(is_no(&a, "[NONEXISTENT]"), "{a:?}");
}

#[test]
fn store_flags_round_trip_through_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let uid = append(&s, "INBOX", &[], None, &[b"a\r\n"]);
    let uid2 = append(&s, "INBOX", &[], None, &[b"b\r\n"]);
    let before = select(&s, "INBOX");
    let st = |mode, flags: &[&str], since| {
        ask(
            &s,
            ImapRequest::Store {
                folder: "INBOX".into(),
                uids: vec![uid],
                mode,
                flags: strs(flags),
                unchanged_since: since,
            },
        )
    };
    let ImapAnswer::Stored(v) = st(FlagMode::Add, &["\\Seen", "Junk"], None) else {
        panic!()
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].1, strs(&["\\Seen", "Junk"]));
    assert!(v[0].2 > before.highest_modseq);
    let cur = files(&root(tmp.path()).join("cur"));
    assert!(cur.len() == 1 && cur[0].ends_with(":2,Sa"), "{cur:?}");
    let ImapAnswer::Stored(v) = st(FlagMode::Remove, &["\\seen"], None) else {
        panic!()
    };
    assert_eq!(v[0].1, strs(&["Junk"]));
    let ImapAnswer::Stored(v) = st(FlagMode::Replace, &["\\Flagged", "\\Deleted"], None) else {
        panic!()
    };
    assert_eq!(v[0].1, strs(&["\\Flagged", "\\Deleted"]));
    let modseq = v[0].2;
    // UNCHANGEDSINCE below the message's MODSEQ leaves it out.
    assert_eq!(
        st(FlagMode::Add, &["\\Seen"], Some(modseq - 1)),
        ImapAnswer::Stored(vec![])
    );
    let snap = select(&s, "INBOX");
    assert_eq!(*snap.messages[0].flags, *strs(&["\\Flagged", "\\Deleted"]));
    assert_eq!(snap.messages[0].modseq, modseq);
    assert_eq!(snap.messages[1].uid, uid2);
    assert_eq!(
        read_all(&s, "INBOX", uid, 100),
        b"a\r\n",
        "read after rename"
    );
}

#[test]
fn expunge_removes_deleted_and_leaves_tombstones() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let a = append(&s, "INBOX", &["\\Deleted"], None, &[b"a\r\n"]);
    let b = append(&s, "INBOX", &["\\Deleted"], None, &[b"b\r\n"]);
    let c = append(&s, "INBOX", &[], None, &[b"c\r\n"]);
    let ex = |uids| {
        ask(
            &s,
            ImapRequest::Expunge {
                folder: "INBOX".into(),
                uids,
            },
        )
    };
    assert_eq!(ex(Some(vec![b, c])), ImapAnswer::Expunged(vec![b]));
    assert_eq!(ex(None), ImapAnswer::Expunged(vec![a]));
    assert_eq!(ex(None), ImapAnswer::Expunged(vec![]));
    let snap = select(&s, "INBOX");
    assert_eq!(snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [c]);
    let index = std::fs::read_to_string(root(tmp.path()).join("petrel-modseq")).unwrap();
    assert!(index.contains(&format!("\nx {a} ")), "{index}");
    assert!(index.contains(&format!("\nx {b} ")), "{index}");
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Expunge {
                folder: "Gone".into(),
                uids: None
            }
        ),
        "[NONEXISTENT]"
    ));
}

#[test]
fn copy_and_move_keep_flags_and_give_uid_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let a = append(&s, "INBOX", &["\\Seen", "$Label"], None, &[b"a\r\n"]);
    let b = append(&s, "INBOX", &[], None, &[b"b\n"]);
    create(&s, "Archive");
    let dst_validity = status(&s, "Archive").uidvalidity;
    let copy = |to: &str, remove| {
        ask(
            &s,
            ImapRequest::Copy {
                from: "INBOX".into(),
                to: to.into(),
                uids: vec![a, b],
                remove,
            },
        )
    };
    assert!(is_no(&copy("Missing", false), "[TRYCREATE]"));
    assert_eq!(
        copy("Archive", false),
        ImapAnswer::Copied {
            uidvalidity: dst_validity,
            pairs: vec![(a, 1), (b, 2)]
        }
    );
    let snap = select(&s, "Archive");
    assert_eq!(*snap.messages[0].flags, *strs(&["\\Seen", "$Label"]));
    assert_eq!(snap.messages[1].size, 3);
    assert_eq!(read_all(&s, "Archive", 2, 100), b"b\r\n");
    // MOVE.
    assert_eq!(
        copy("Archive", true),
        ImapAnswer::Copied {
            uidvalidity: dst_validity,
            pairs: vec![(a, 3), (b, 4)]
        }
    );
    assert!(select(&s, "INBOX").messages.is_empty());
    let snap = select(&s, "Archive");
    assert_eq!(snap.messages.len(), 4);
    assert_eq!(*snap.messages[2].flags, *strs(&["\\Seen", "$Label"]));
}

fn list(s: &Store, pattern: &str, subscribed_only: bool) -> Vec<FolderInfo> {
    match ask(
        s,
        ImapRequest::List {
            pattern: pattern.into(),
            subscribed_only,
        },
    ) {
        ImapAnswer::Folders(f) => f,
        other => panic!("{other:?}"),
    }
}

fn names(f: &[FolderInfo]) -> Vec<&str> {
    f.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn list_create_delete_and_subscriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    for f in ["Sent", "Lists", "Lists/Rust", "Entwürfe"] {
        create(&s, f);
    }
    assert!(
        root(tmp.path())
            .join(".Entw&APw-rfe/maildirfolder")
            .is_file()
    );
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Create {
                folder: "Sent".into()
            }
        ),
        "[ALREADYEXISTS]"
    ));
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Create {
                folder: "inbox".into()
            }
        ),
        "[ALREADYEXISTS]"
    ));
    assert!(matches!(
        ask(
            &s,
            ImapRequest::Create {
                folder: "a.b".into()
            }
        ),
        ImapAnswer::No(_)
    ));
    let all = list(&s, "*", false);
    assert_eq!(
        names(&all),
        ["Entwürfe", "INBOX", "Lists", "Lists/Rust", "Sent"]
    );
    let lists = all.iter().find(|f| f.name == "Lists").unwrap();
    assert_eq!(lists.attributes, strs(&["\\HasChildren"]));
    let sent = all.iter().find(|f| f.name == "Sent").unwrap();
    assert_eq!(sent.attributes, strs(&["\\HasNoChildren", "\\Sent"]));
    assert_eq!(
        names(&list(&s, "%", false)),
        ["Entwürfe", "INBOX", "Lists", "Sent"]
    );
    assert_eq!(names(&list(&s, "Lists/%", false)), ["Lists/Rust"]);
    assert_eq!(names(&list(&s, "inbox", false)), ["INBOX"]);

    // Subscriptions: Dovecot's file, one Maildir++ name a line.
    for (f, on) in [
        ("Lists/Rust", true),
        ("Entwürfe", true),
        ("INBOX", true),
        ("Sent", true),
        ("Sent", false),
        ("INBOX", true),
    ] {
        assert_eq!(
            ask(
                &s,
                ImapRequest::Subscribe {
                    folder: f.into(),
                    subscribe: on
                }
            ),
            ImapAnswer::Done
        );
    }
    assert_eq!(
        std::fs::read_to_string(root(tmp.path()).join("subscriptions")).unwrap(),
        "Lists.Rust\nEntw&APw-rfe\nINBOX\n"
    );
    let subs = list(&s, "*", true);
    // The parent of a subscribed folder comes too, not subscribed itself, for RECURSIVEMATCH.
    assert_eq!(names(&subs), ["Entwürfe", "INBOX", "Lists", "Lists/Rust"]);
    for f in &subs {
        assert_eq!(f.subscribed, f.name != "Lists", "{f:?}");
        assert_eq!(f.subscribed_children, f.name == "Lists", "{f:?}");
    }
    assert!(!list(&s, "Sent", false)[0].subscribed);

    // Delete: not INBOX, not with children, not missing.
    let del = |f: &str| ask(&s, ImapRequest::Delete { folder: f.into() });
    assert!(matches!(del("INBOX"), ImapAnswer::No(_)));
    assert!(matches!(del("Lists"), ImapAnswer::No(_)));
    assert!(is_no(&del("Nope"), "[NONEXISTENT]"));
    append(&s, "Lists/Rust", &["\\Seen"], None, &[b"x\r\n"]);
    assert_eq!(del("Lists/Rust"), ImapAnswer::Done);
    assert!(!root(tmp.path()).join(".Lists.Rust").exists());
    assert_eq!(del("Lists"), ImapAnswer::Done);
    assert_eq!(names(&list(&s, "*", false)), ["Entwürfe", "INBOX", "Sent"]);
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Status {
                folder: "Lists".into()
            }
        ),
        "[NONEXISTENT]"
    ));
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Select {
                folder: "Lists".into(),
                readonly: true
            }
        ),
        "[NONEXISTENT]"
    ));
}

#[test]
fn rename_folders_and_inbox() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    create(&s, "A");
    create(&s, "A/B");
    create(&s, "C");
    let uid = append(&s, "A/B", &["\\Flagged"], None, &[b"m\r\n"]);
    for f in ["A", "A/B", "C"] {
        ask(
            &s,
            ImapRequest::Subscribe {
                folder: f.into(),
                subscribe: true,
            },
        );
    }
    let ren = |from: &str, to: &str| {
        ask(
            &s,
            ImapRequest::Rename {
                from: from.into(),
                to: to.into(),
            },
        )
    };
    assert!(is_no(&ren("A", "C"), "[ALREADYEXISTS]"));
    assert!(is_no(&ren("Nope", "D"), "[NONEXISTENT]"));
    assert!(matches!(ren("A", "A/X"), ImapAnswer::No(_)));
    assert_eq!(ren("A", "Z"), ImapAnswer::Done);
    assert_eq!(names(&list(&s, "*", false)), ["C", "INBOX", "Z", "Z/B"]);
    assert_eq!(
        std::fs::read_to_string(root(tmp.path()).join("subscriptions")).unwrap(),
        "Z\nZ.B\nC\n"
    );
    let snap = select(&s, "Z/B");
    assert_eq!(snap.messages[0].uid, uid);
    assert_eq!(*snap.messages[0].flags, *strs(&["\\Flagged"]));

    // INBOX: its messages move to the new folder, INBOX stays (empty).
    append(&s, "INBOX", &[], None, &[b"1\r\n"]);
    append(&s, "INBOX", &["\\Seen"], None, &[b"2\r\n"]);
    assert_eq!(ren("INBOX", "Old"), ImapAnswer::Done);
    assert!(select(&s, "INBOX").messages.is_empty());
    let old = select(&s, "Old");
    assert_eq!(old.messages.len(), 2);
    assert!(old.messages.iter().any(|m| *m.flags == *strs(&["\\Seen"])));
    assert_eq!(read_all(&s, "Old", old.messages[0].uid, 100), b"1\r\n");
    assert!(is_no(&ren("INBOX", "Old"), "[ALREADYEXISTS]"));
    assert!(is_no(&ren("C", "inbox"), "[ALREADYEXISTS]"));
}

fn stamp(s: &Store, folder: &str) -> u64 {
    match ask(
        s,
        ImapRequest::Changed {
            folder: folder.into(),
        },
    ) {
        ImapAnswer::Stamp(v) => v,
        other => panic!("{other:?}"),
    }
}

/// Sets a directory's mtime to `unix` seconds.
fn set_dir_mtime(dir: &Path, unix: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64);
    std::fs::File::open(dir).unwrap().set_modified(t).unwrap();
}

/// IDLE's cheap change check: a folder's stamp stays the same while nothing changes, differs
/// after a delivery, a flag change and an expunge, and is 0 ("cannot tell") while a directory
/// changed too recently for its mtime to be trusted.
#[test]
fn folder_stamp_follows_changes_and_distrusts_fresh_mtimes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    append(&s, "INBOX", &[], None, &[b"Subject: a\r\n\r\nx\r\n"]);
    let inbox = root(tmp.path());
    let settle = |at: i64| {
        set_dir_mtime(&inbox.join("new"), at);
        set_dir_mtime(&inbox.join("cur"), at);
    };
    settle(NOW - 100);
    let first = stamp(&s, "INBOX");
    assert_ne!(first, 0);
    assert_eq!(stamp(&s, "INBOX"), first, "nothing changed");
    // SELECT syncs the index without changing messages or flags: same stamp once settled.
    select(&s, "INBOX");
    settle(NOW - 100);
    let selected = stamp(&s, "INBOX");
    // A delivery.
    append(&s, "INBOX", &[], None, &[b"Subject: b\r\n\r\ny\r\n"]);
    settle(NOW - 50);
    let delivered = stamp(&s, "INBOX");
    assert_ne!(delivered, 0);
    assert_ne!(delivered, selected);
    // A flag change renames a file in cur/.
    let changed = ask(
        &s,
        ImapRequest::Store {
            folder: "INBOX".into(),
            uids: vec![1],
            mode: FlagMode::Add,
            flags: strs(&["\\Seen"]),
            unchanged_since: None,
        },
    );
    assert!(matches!(changed, ImapAnswer::Stored(_)), "{changed:?}");
    // Fresh mtime (within the settle time): "cannot tell".
    set_dir_mtime(&inbox.join("cur"), NOW - 1);
    assert_eq!(stamp(&s, "INBOX"), 0);
    set_dir_mtime(&inbox.join("cur"), NOW + 30);
    assert_eq!(
        stamp(&s, "INBOX"),
        0,
        "an mtime in the future is not trusted"
    );
    settle(NOW - 20);
    let flagged = stamp(&s, "INBOX");
    assert!(flagged != 0 && flagged != delivered);
    assert!(is_no(
        &ask(
            &s,
            ImapRequest::Changed {
                folder: "Nope".into()
            }
        ),
        "[NONEXISTENT]"
    ));
}

fn vanished(s: &Store, since: u64) -> (Vec<u32>, bool) {
    match ask(
        s,
        ImapRequest::Vanished {
            folder: "INBOX".into(),
            since,
        },
    ) {
        ImapAnswer::Vanished { uids, complete } => (uids, complete),
        other => panic!("{other:?}"),
    }
}

/// QRESYNC: the UIDs expunged after a MODSEQ, from the index's tombstones; after the index is
/// lost (rebuilt from the Maildir) earlier expunges are unknown, which the answer says.
#[test]
fn vanished_since_a_modseq_and_after_a_lost_index() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let a = append(&s, "INBOX", &["\\Deleted"], None, &[b"a\r\n"]);
    let b = append(&s, "INBOX", &[], None, &[b"b\r\n"]);
    let c = append(&s, "INBOX", &["\\Deleted"], None, &[b"c\r\n"]);
    let before = select(&s, "INBOX").highest_modseq;
    assert_eq!(vanished(&s, before), (vec![], true));
    let expunge = ImapRequest::Expunge {
        folder: "INBOX".into(),
        uids: Some(vec![a]),
    };
    assert_eq!(ask(&s, expunge), ImapAnswer::Expunged(vec![a]));
    let middle = select(&s, "INBOX").highest_modseq;
    let expunge = ImapRequest::Expunge {
        folder: "INBOX".into(),
        uids: None,
    };
    assert_eq!(ask(&s, expunge), ImapAnswer::Expunged(vec![c]));
    assert_eq!(vanished(&s, before), (vec![a, c], true));
    assert_eq!(vanished(&s, middle), (vec![c], true));
    let now = select(&s, "INBOX").highest_modseq;
    assert_eq!(vanished(&s, now), (vec![], true));
    // Below the MODSEQs of the folder's first index: nothing is known from before it.
    assert_eq!(vanished(&s, 1), (vec![a, c], false));
    // The index is lost and rebuilt a minute later: MODSEQs from the clock, above the old ones,
    // and no memory of expunges.
    drop(s);
    std::fs::remove_file(root(tmp.path()).join("petrel-modseq")).unwrap();
    let s = store_at(tmp.path(), NOW + 60);
    let rebuilt = select(&s, "INBOX");
    assert!(rebuilt.highest_modseq > now);
    assert_eq!(
        rebuilt.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(vanished(&s, now), (vec![], false));
    assert_eq!(vanished(&s, rebuilt.highest_modseq), (vec![], true));
}

/// The system clock, for the big-folder timings (the settle rule needs real time).
#[derive(Debug)]
struct SystemClock;
impl WallClock for SystemClock {
    fn unix_seconds(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// Figures, not a pass/fail test (`cargo test --release -p petrel-store --test imap_store
/// big_folder_timings -- --ignored --nocapture`; `BIGFOLDER_N` sets the size, 100,000 by
/// default): SELECT of a big folder first, again at once, again once settled, after one
/// delivery and after a flag change by another program, straight on the store.
#[test]
#[ignore = "figures, slow"]
fn big_folder_timings() {
    let n: usize = std::env::var("BIGFOLDER_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: tmp.path().to_path_buf(),
        hostname: "mx.example.test".into(),
        clock: Arc::new(SystemClock),
        pid: 42,
        seed: 7,
    };
    let s = Store::open(Arc::new(RealFs), config).unwrap();
    let inbox = root(tmp.path());
    std::fs::create_dir_all(inbox.join("cur")).unwrap();
    std::fs::create_dir_all(inbox.join("new")).unwrap();
    std::fs::create_dir_all(inbox.join("tmp")).unwrap();
    for i in 0..n {
        let body = format!("Subject: message {i}\r\n\r\nbody\r\n");
        let name = format!(
            "{}.P1Q{i}R{:08x}.perf,S={}:2,{}",
            1_700_000_000 + i,
            i * 2_654_435_761 % (1 << 32),
            body.len(),
            if i % 3 == 0 { "" } else { "S" }
        );
        std::fs::write(inbox.join("cur").join(name), body).unwrap();
    }
    let time = |what: &str, f: &mut dyn FnMut() -> FolderSnapshot| {
        let start = std::time::Instant::now();
        let snap = f();
        eprintln!("{what:<36} {:.3} s", start.elapsed().as_secs_f64());
        snap
    };
    let first = time("SELECT (first)", &mut || select(&s, "INBOX"));
    assert_eq!(first.messages.len(), n);
    time("SELECT (again)", &mut || select(&s, "INBOX"));
    time("SELECT (again)", &mut || select(&s, "INBOX"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    time("SELECT (settled)", &mut || select(&s, "INBOX"));
    time("SELECT (settled, again)", &mut || select(&s, "INBOX"));
    std::fs::write(
        inbox.join("new/1800000000.P2Q1R00000000.other,S=3"),
        "a\r\n",
    )
    .unwrap();
    let after = time("SELECT (after one delivery)", &mut || select(&s, "INBOX"));
    assert_eq!(after.messages.len(), n + 1);
    assert_eq!(after.messages[n].uid, first.next_uid);
    let victim = std::fs::read_dir(inbox.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(":2,"))
        .unwrap();
    std::fs::rename(
        inbox.join("cur").join(&victim),
        inbox.join("cur").join(format!("{victim}F")),
    )
    .unwrap();
    let flagged = time("SELECT (after a flag change)", &mut || select(&s, "INBOX"));
    assert_eq!(
        flagged
            .messages
            .iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Flagged"))
            .count(),
        1
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    time("SELECT (settled after changes)", &mut || {
        select(&s, "INBOX")
    });
}
