//! Messages held in memory until commit: `Store::execute_inline` answers what needs no disk,
//! the file in `tmp/` is created only when the message outgrows its buffer or is committed,
//! and the delivered bytes do not depend on how the message was cut into chunks.

use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{
    Completion, Effect, Envelope, Recipient, RecipientOutcome, Refusals, UserId, WallClock,
};
use petrel_store::fs::{Stamp, WriteFile};
use petrel_store::{FileSystem, RealFs, Store, StoreConfig};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Clock(AtomicI64);
impl WallClock for Clock {
    fn unix_seconds(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The real filesystem, recording every file created and every name linked.
#[derive(Debug, Default)]
struct Recording {
    created: Mutex<Vec<PathBuf>>,
    linked: Mutex<Vec<PathBuf>>,
}

impl FileSystem for Recording {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        self.created.lock().unwrap().push(path.to_path_buf());
        RealFs.create_new(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        RealFs.open_read(path)
    }
    fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        self.linked.lock().unwrap().push(dst.to_path_buf());
        RealFs.hard_link(src, dst)
    }
    fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        RealFs.rename(src, dst)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.read_dir(path)
    }
    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>> {
        RealFs.stamp(path)
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    fs: Arc<Recording>,
    clock: Arc<Clock>,
    store: Store,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let fs = Arc::new(Recording::default());
    let clock = Arc::new(Clock(AtomicI64::new(1_800_000_000)));
    let store = Store::open(
        fs.clone(),
        StoreConfig {
            data_dir: dir.clone(),
            hostname: "mx.example.test".into(),
            clock: clock.clone(),
            pid: 42,
            seed: 7,
        },
    )
    .unwrap();
    store.users().add("bob@example.test", "pw").unwrap();
    fs.created.lock().unwrap().clear();
    Fixture {
        _tmp: tmp,
        dir,
        fs,
        clock,
        store,
    }
}

fn envelope() -> Envelope {
    Envelope {
        session: "S".into(),
        id: "S01".into(),
        sender: ReversePath::Mailbox(parse_mailbox("x@remote.example").unwrap()),
        recipients: vec![Recipient {
            address: parse_mailbox("bob@example.test").unwrap(),
            mailbox: Some(UserId("bob@example.test".into())),
        }],
        submitted_by: None,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn begin(store: &Store) -> petrel_core::TxId {
    let effect = Effect::BeginMessage {
        envelope: envelope(),
        trace: b"Received: x\r\n".to_vec(),
    };
    match store.execute_inline(effect) {
        Ok(Completion::Began(tx)) => tx,
        other => panic!("begin is answered inline: {other:?}"),
    }
}

/// Appends inline when the store can, through `execute` otherwise (as runtime-smol does).
fn append(store: &Store, tx: petrel_core::TxId, bytes: &[u8]) -> bool {
    let effect = Effect::AppendChunk {
        tx,
        bytes: bytes.to_vec(),
    };
    match store.execute_inline(effect) {
        Ok(c) => {
            assert!(matches!(c, Completion::Appended), "{c:?}");
            true
        }
        Err(effect) => {
            assert!(matches!(store.execute(effect), Completion::Appended));
            false
        }
    }
}

fn commit(store: &Store, tx: petrel_core::TxId, prepend: &[u8]) {
    let c = store.execute(Effect::Commit {
        tx,
        prepend: prepend.to_vec(),
        refusals: Refusals::AllOrNotice,
        junk: false,
        edits: Vec::new(),
    });
    assert!(matches!(c, Completion::Durable(_)), "{c:?}");
}

/// The one message in bob's `new/`.
fn delivered(f: &Fixture) -> Vec<u8> {
    let new = f.dir.join("mail/example.test/bob/new");
    let names = names(&new);
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::read(new.join(&names[0])).unwrap()
}

#[test]
fn a_small_message_touches_no_file_before_commit_and_is_written_once() {
    let f = fixture();
    let tx = begin(&f.store);
    assert!(append(&f.store, tx, b"Subject: s\r\n\r\nbody\r\n"));
    assert!(
        f.fs.created.lock().unwrap().is_empty(),
        "no file before commit"
    );
    assert!(names(&f.dir.join("tmp")).is_empty());
    commit(&f.store, tx, b"");
    assert_eq!(f.fs.created.lock().unwrap().len(), 1, "one file, at commit");
    assert_eq!(
        delivered(&f),
        b"Return-Path: <x@remote.example>\r\nReceived: x\r\nSubject: s\r\n\r\nbody\r\n"
    );
    assert!(names(&f.dir.join("tmp")).is_empty(), "spool file removed");
}

#[test]
fn an_aborted_transaction_leaves_no_file() {
    let f = fixture();
    let tx = begin(&f.store);
    assert!(append(&f.store, tx, b"Subject: s\r\n\r\nbody\r\n"));
    assert!(matches!(
        f.store.execute_inline(Effect::Abort { tx }),
        Ok(Completion::Aborted)
    ));
    assert!(f.fs.created.lock().unwrap().is_empty());
    assert!(names(&f.dir.join("tmp")).is_empty());
    // The transaction is gone: a late chunk is not buffered into nothing.
    let late = f.store.execute_inline(Effect::AppendChunk {
        tx,
        bytes: b"x".to_vec(),
    });
    assert!(late.is_err(), "an unknown transaction goes to execute");

    // A transaction that already has its file is aborted by `execute`, which removes it.
    let tx = begin(&f.store);
    assert!(!append(&f.store, tx, &vec![b'a'; 300_000]));
    assert_eq!(
        names(&f.dir.join("tmp")).len(),
        1,
        "a big message has its file"
    );
    let effect = f.store.execute_inline(Effect::Abort { tx }).unwrap_err();
    assert!(matches!(f.store.execute(effect), Completion::Aborted));
    assert!(names(&f.dir.join("tmp")).is_empty());
    assert!(names(&f.dir.join("mail/example.test/bob/new")).is_empty());
}

#[test]
fn a_crash_before_commit_leaves_nothing_visible() {
    let f = fixture();
    // One message all in memory, one already spilled to its file, neither committed.
    let small = begin(&f.store);
    assert!(append(&f.store, small, b"Subject: s\r\n\r\nbody\r\n"));
    let big = begin(&f.store);
    assert!(!append(&f.store, big, &vec![b'a'; 300_000]));
    // The crash: the process is gone, the next one opens the data directory.
    drop(f.store);
    let store = Store::open(
        Arc::new(RealFs),
        StoreConfig {
            data_dir: f.dir.clone(),
            hostname: "mx.example.test".into(),
            clock: f.clock.clone(),
            pid: 43,
            seed: 8,
        },
    )
    .unwrap();
    assert!(
        f.fs.linked.lock().unwrap().is_empty(),
        "no name was ever given"
    );
    assert!(names(&f.dir.join("mail/example.test/bob/new")).is_empty());
    assert!(names(&f.dir.join("queue/msg")).is_empty());
    assert!(
        names(&f.dir.join("tmp")).is_empty(),
        "the spilled file is cleaned up"
    );
    drop(store);
}

#[test]
fn the_delivered_bytes_do_not_depend_on_the_chunking() {
    // Bare LFs, CRLFs and a CR right at the cuts; long enough to spill past the buffer.
    let mut body = Vec::new();
    for i in 0..30_000 {
        body.extend_from_slice(format!("line {i}").as_bytes());
        body.extend_from_slice(if i % 3 == 0 { b"\n" } else { b"\r\n" });
    }
    assert!(body.len() > 300_000, "longer than the memory buffer");
    let mut expected = b"Return-Path: <x@remote.example>\r\nX-Pre: 1\r\nReceived: x\r\n".to_vec();
    let mut last = 0u8;
    for &b in &body {
        if b == b'\n' && last != b'\r' {
            expected.push(b'\r');
        }
        expected.push(b);
        last = b;
    }
    for (len, cut) in [
        (body.len(), 0),
        (1000, 0),
        (7, 0),
        (65_536, 0),
        (4096, 1),
        (60_000, 3),
    ] {
        for whole in [&body[..], &body[..3000]] {
            let f = fixture();
            let tx = begin(&f.store);
            let mut pieces: Vec<&[u8]> = vec![&whole[..cut.min(whole.len())]];
            pieces.extend(whole[cut.min(whole.len())..].chunks(len));
            let mut inline = 0;
            for piece in pieces {
                inline += usize::from(append(&f.store, tx, piece));
            }
            assert!(inline > 0, "the first chunks are buffered");
            commit(&f.store, tx, b"X-Pre: 1\r\n");
            let want = if whole.len() == body.len() {
                expected.clone()
            } else {
                let mut short =
                    b"Return-Path: <x@remote.example>\r\nX-Pre: 1\r\nReceived: x\r\n".to_vec();
                let mut last = 0u8;
                for &b in whole {
                    if b == b'\n' && last != b'\r' {
                        short.push(b'\r');
                    }
                    short.push(b);
                    last = b;
                }
                short
            };
            assert!(
                delivered(&f) == want,
                "chunks of {len} after {cut}, {} octets",
                whole.len()
            );
        }
    }
}

#[test]
fn memory_held_by_transactions_is_bounded_and_given_back() {
    let f = fixture();
    let chunk = vec![b'a'; 60_000];
    let mut held = Vec::new();
    let mut inline = 0;
    for _ in 0..400 {
        let tx = begin(&f.store);
        inline += usize::from(append(&f.store, tx, &chunk));
        held.push(tx);
    }
    // 16 MiB in all: about 280 of the 400 fit, the rest went to their files.
    assert!((200..300).contains(&inline), "{inline} buffered");
    assert_eq!(names(&f.dir.join("tmp")).len(), 400 - inline);
    for tx in held {
        let c = match f.store.execute_inline(Effect::Abort { tx }) {
            Ok(c) => c,
            Err(effect) => f.store.execute(effect),
        };
        assert!(matches!(c, Completion::Aborted));
    }
    assert!(names(&f.dir.join("tmp")).is_empty());
    // Everything was given back: as many fit again.
    let mut again = 0;
    for _ in 0..400 {
        let tx = begin(&f.store);
        again += usize::from(append(&f.store, tx, &chunk));
    }
    assert_eq!(again, inline);
}

#[test]
fn known_recipients_are_answered_from_memory_only_within_the_second_of_a_check() {
    let f = fixture();
    let bob = parse_mailbox("Bob+tag@example.test").unwrap();
    let lookup = |address: &petrel_core::smtp::address::Address| Effect::LookupRecipient {
        address: address.clone(),
    };
    let local = RecipientOutcome::Local(UserId("bob@example.test".into()));
    // Never checked: to the pool, which checks the file.
    let effect = f.store.execute_inline(lookup(&bob)).unwrap_err();
    assert!(matches!(f.store.execute(effect), Completion::Recipient(r) if r == local));
    // Checked this second: answered inline.
    assert!(
        matches!(f.store.execute_inline(lookup(&bob)), Ok(Completion::Recipient(r)) if r == local)
    );
    // An unknown address is always checked against the file (it may have just been added).
    let carol = parse_mailbox("carol@example.test").unwrap();
    assert!(f.store.execute_inline(lookup(&carol)).is_err());
    f.store.users().add("carol@example.test", "pw").unwrap();
    let effect = f.store.execute_inline(lookup(&carol)).unwrap_err();
    assert!(matches!(
        f.store.execute(effect),
        Completion::Recipient(RecipientOutcome::Local(_))
    ));
    // A second later the cache must be checked again before it answers.
    f.clock.0.fetch_add(1, Ordering::Relaxed);
    assert!(f.store.execute_inline(lookup(&bob)).is_err());
    f.store.users().remove("bob@example.test").unwrap();
    let effect = f.store.execute_inline(lookup(&bob)).unwrap_err();
    assert!(matches!(
        f.store.execute(effect),
        Completion::Recipient(RecipientOutcome::Unknown)
    ));
    assert!(f.store.execute_inline(lookup(&bob)).is_err());
}
