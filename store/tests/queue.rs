//! The outbound queue's state on a real filesystem: entries, marking results, retry schedule,
//! bounces and delay warnings to the sender, expiry, removal and crash leftovers.

use petrel_core::queue::RetryPolicy;
use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{Completion, Effect, Envelope, Recipient, Refusals, UserId, WallClock};
use petrel_store::outbound::AttemptResult;
use petrel_store::queue::RcptState;
use petrel_store::{RealFs, Store, StoreConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
struct Clock(AtomicI64);
impl WallClock for Clock {
    fn unix_seconds(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const T0: i64 = 1_800_000_000;

fn setup() -> (tempfile::TempDir, Arc<Clock>, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(Clock(AtomicI64::new(T0)));
    let store = Store::open(
        Arc::new(RealFs),
        StoreConfig {
            data_dir: tmp.path().to_path_buf(),
            hostname: "mx.example.test".into(),
            clock: clock.clone(),
            pid: 1,
            seed: 3,
        },
    )
    .unwrap();
    store.users().add("alice@example.test", "pw").unwrap();
    (tmp, clock, store)
}

/// alice submits one message to two remote recipients.
fn submit(store: &Store, sender: &str) {
    let envelope = Envelope {
        session: "S".into(),
        id: "Q1".into(),
        sender: if sender.is_empty() {
            ReversePath::Null
        } else {
            ReversePath::Mailbox(parse_mailbox(sender).unwrap())
        },
        recipients: ["bob@remote.example", "carol@remote.example"]
            .iter()
            .map(|a| Recipient {
                address: parse_mailbox(a).unwrap(),
                mailbox: None,
            })
            .collect(),
        submitted_by: Some(UserId("alice@example.test".into())),
    };
    let Completion::Began(tx) = store.execute(Effect::BeginMessage {
        envelope,
        trace: b"Received: test\r\n".to_vec(),
    }) else {
        panic!()
    };
    store.execute(Effect::AppendChunk {
        tx,
        bytes: b"Subject: queued\r\nMessage-ID: <q1@example.test>\r\n\r\nbody\r\n".to_vec(),
    });
    assert!(matches!(
        store.execute(Effect::Commit {
            tx,
            prepend: vec![],
            refusals: Refusals::AllOrNotice,
            junk: false,
            edits: Vec::new(),
        }),
        Completion::Durable(_)
    ));
}

fn inbox(tmp: &tempfile::TempDir) -> Vec<String> {
    let dir = tmp.path().join("mail/example.test/alice/new");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn an_entry_reads_back_its_message_and_envelope() {
    let (_tmp, _clock, store) = setup();
    submit(&store, "alice@example.test");
    let entries = store.queue_entries().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (e.id.as_str(), e.sender.as_str(), e.queued),
        ("Q1", "alice@example.test", T0)
    );
    assert_eq!(
        e.pending().collect::<Vec<_>>(),
        ["bob@remote.example", "carol@remote.example"]
    );
    let msg = store.queue_read(&e.name, e.offset, 0, 1 << 20).unwrap();
    assert!(
        msg.starts_with(b"Received: test\r\nSubject: queued"),
        "{}",
        String::from_utf8_lossy(&msg)
    );
    let tail = store
        .queue_read(&e.name, e.offset, msg.len() as u64 - 6, 100)
        .unwrap();
    assert_eq!(tail, b"body\r\n");
    assert!(store.queue_read("../../etc/passwd", 0, 0, 10).is_err());
}

#[test]
fn temporary_failures_are_retried_and_permanent_ones_bounced() {
    let (tmp, clock, store) = setup();
    submit(&store, "alice@example.test");
    let name = store.queue_entries().unwrap()[0].name.clone();
    let policy = RetryPolicy::default();
    store
        .queue_mark(
            &name,
            &[
                (
                    "bob@remote.example".into(),
                    AttemptResult::TempFail(451, "4.7.1 greylisted".into()),
                ),
                (
                    "carol@remote.example".into(),
                    AttemptResult::PermFail(550, "5.1.1 no such user".into()),
                ),
            ],
        )
        .unwrap();
    let e = store
        .queue_finish_attempt(&name, &policy, Some("mx.remote.example"))
        .unwrap()
        .unwrap();
    assert_eq!((e.attempts, e.next), (1, T0 + 300));
    assert!(matches!(
        e.recipients[1].1,
        RcptState::Failed { notified: true, .. }
    ));
    let bounces = inbox(&tmp);
    assert_eq!(bounces.len(), 1, "one bounce to the local sender");
    assert!(bounces[0].starts_with("Return-Path: <>\r\n"));
    assert!(bounces[0].contains("Final-Recipient: rfc822; carol@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.remote.example"));
    assert!(!bounces[0].contains("Final-Recipient: rfc822; bob@"));
    assert!(
        bounces[0].contains("Subject: queued"),
        "original header returned"
    );

    // A later attempt delivers bob: the entry goes away, no second bounce.
    clock.0.store(T0 + 300, Ordering::Relaxed);
    store
        .queue_mark(
            &name,
            &[("bob@remote.example".into(), AttemptResult::Delivered)],
        )
        .unwrap();
    assert!(
        store
            .queue_finish_attempt(&name, &policy, None)
            .unwrap()
            .is_none()
    );
    assert!(store.queue_entries().unwrap().is_empty());
    assert!(
        std::fs::read_dir(tmp.path().join("queue/msg"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(inbox(&tmp).len(), 1);
}

#[test]
fn delay_warning_once_then_expiry_bounces() {
    let (tmp, clock, store) = setup();
    submit(&store, "alice@example.test");
    let name = store.queue_entries().unwrap()[0].name.clone();
    let policy = RetryPolicy::default();
    let fail = |store: &Store| {
        store
            .queue_mark(
                &name,
                &[
                    (
                        "bob@remote.example".into(),
                        AttemptResult::TempFail(0, "connection refused".into()),
                    ),
                    (
                        "carol@remote.example".into(),
                        AttemptResult::TempFail(0, "connection refused".into()),
                    ),
                ],
            )
            .unwrap();
        store.queue_finish_attempt(&name, &policy, None).unwrap()
    };
    assert!(fail(&store).is_some());
    assert!(inbox(&tmp).is_empty(), "no warning in the first hours");
    clock.0.store(T0 + 4 * 3600, Ordering::Relaxed);
    let e = fail(&store).unwrap();
    assert!(e.warned);
    let msgs = inbox(&tmp);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("Action: delayed") && msgs[0].contains("Will-Retry-Until:"));
    clock.0.store(T0 + 8 * 3600, Ordering::Relaxed);
    fail(&store).unwrap();
    assert_eq!(inbox(&tmp).len(), 1, "one warning only");
    clock.0.store(T0 + 5 * 86_400, Ordering::Relaxed);
    assert!(fail(&store).is_none(), "expired and removed");
    let msgs = inbox(&tmp);
    assert_eq!(msgs.len(), 2);
    let bounce = msgs.iter().find(|m| m.contains("Action: failed")).unwrap();
    assert!(bounce.contains("message expired after 5 days in the queue: connection refused"));
    assert!(
        bounce.contains("Final-Recipient: rfc822; bob@remote.example")
            && bounce.contains("Final-Recipient: rfc822; carol@remote.example")
    );
}

#[test]
fn no_bounce_to_the_null_sender_and_leftovers_are_cleaned() {
    let (tmp, clock, store) = setup();
    submit(&store, "");
    let name = store.queue_entries().unwrap()[0].name.clone();
    store
        .queue_mark(
            &name,
            &[
                (
                    "bob@remote.example".into(),
                    AttemptResult::PermFail(550, "no".into()),
                ),
                (
                    "carol@remote.example".into(),
                    AttemptResult::PermFail(550, "no".into()),
                ),
            ],
        )
        .unwrap();
    assert!(
        store
            .queue_finish_attempt(&name, &RetryPolicy::default(), None)
            .unwrap()
            .is_none()
    );
    assert!(inbox(&tmp).is_empty());
    assert!(
        store.queue_entries().unwrap().is_empty(),
        "nothing queued for the null sender"
    );
    // A message file without envelope (crash before the envelope was renamed in) is removed
    // once it is old; a young one may be another process queueing a message right now.
    let set_age = |path: &std::path::Path, secs_before_now: i64| {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(
                (clock.0.load(Ordering::SeqCst) - secs_before_now) as u64,
            );
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    let orphan = tmp.path().join("queue/msg/orphan");
    let half_env = tmp.path().join("queue/env/.orphan.tmp");
    std::fs::write(&orphan, b"x").unwrap();
    std::fs::write(&half_env, b"x").unwrap();
    set_age(&orphan, 60);
    set_age(&half_env, 60);
    assert_eq!(
        store.queue_remove_orphans().unwrap(),
        0,
        "young files are left alone"
    );
    assert!(orphan.exists() && half_env.exists());
    set_age(&orphan, 16 * 60);
    set_age(&half_env, 16 * 60);
    assert_eq!(store.queue_remove_orphans().unwrap(), 2);
    assert!(!orphan.exists() && !half_env.exists());
    assert_eq!(store.queue_flush().unwrap(), 0);
}
