//! The store on a real filesystem in a temp dir: delivery, queueing, abort, recovery, users.

use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{
    AuthOutcome, Completion, Effect, Envelope, Recipient, RecipientOutcome, Refusals, Secret,
    UserId, WallClock,
};
use petrel_store::{RealFs, Store, StoreConfig};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug)]
struct Clock;
impl WallClock for Clock {
    fn unix_seconds(&self) -> i64 {
        1_800_000_000
    }
}

fn store(dir: &Path) -> Store {
    let config = StoreConfig {
        data_dir: dir.to_path_buf(),
        hostname: "mx.example.test".into(),
        clock: Arc::new(Clock),
        pid: 42,
        seed: 7,
    };
    Store::open(Arc::new(RealFs), config).unwrap()
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn envelope(rcpts: &[(&str, Option<&str>)]) -> Envelope {
    Envelope {
        session: "S".into(),
        id: "S01".into(),
        sender: ReversePath::Mailbox(parse_mailbox("x@remote.example").unwrap()),
        recipients: rcpts
            .iter()
            .map(|(a, m)| Recipient {
                address: parse_mailbox(a).unwrap(),
                mailbox: m.map(|m| UserId(m.into())),
            })
            .collect(),
        submitted_by: None,
    }
}

fn began(c: Completion) -> petrel_core::TxId {
    match c {
        Completion::Began(tx) => tx,
        other => panic!("expected Began, got {other:?}"),
    }
}

#[test]
fn delivers_to_each_local_user_and_queues_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let env = envelope(&[
        ("alice@example.test", Some("alice@example.test")),
        ("Alice+x@example.test", Some("alice@example.test")),
        ("bob@example.test", Some("bob@example.test")),
        ("carol@remote.example", None),
    ]);
    let tx = began(s.execute(Effect::BeginMessage {
        envelope: env,
        trace: b"Received: x\r\n".to_vec(),
    }));
    assert!(matches!(
        s.execute(Effect::AppendChunk {
            tx,
            bytes: b"Subject: a\r\n\r\n".to_vec()
        }),
        Completion::Appended
    ));
    assert!(matches!(
        s.execute(Effect::AppendChunk {
            tx,
            bytes: b"body\r\n".to_vec()
        }),
        Completion::Appended
    ));
    assert!(
        matches!(s.execute(Effect::Commit { tx, prepend: vec![], refusals: Refusals::AllOrNotice, junk: false, edits: Vec::new() }), Completion::Durable(r) if r.tx() == tx)
    );
    let expected =
        b"Return-Path: <x@remote.example>\r\nReceived: x\r\nSubject: a\r\n\r\nbody\r\n".to_vec();
    let mail = tmp.path().join("mail/example.test");
    assert_eq!(
        files(&mail.join("alice/new")),
        vec![expected.clone()],
        "alice gets one copy"
    );
    assert_eq!(files(&mail.join("bob/new")), vec![expected.clone()]);
    assert_eq!(files(&tmp.path().join("queue/msg")), vec![expected]);
    let env_files = files(&tmp.path().join("queue/env"));
    assert_eq!(env_files.len(), 1);
    let text = String::from_utf8(env_files[0].clone()).unwrap();
    assert!(
        text.contains("rcpt carol@remote.example\n") && text.contains("offset 33\n"),
        "{text}"
    );
    assert!(
        files(&tmp.path().join("tmp")).is_empty(),
        "spool file removed"
    );
    let name = std::fs::read_dir(mail.join("alice/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    assert!(
        name.to_str().unwrap().ends_with(".mx.example.test,S=66"),
        "{name:?}"
    );
}

#[test]
fn prepend_goes_after_return_path() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let env = envelope(&[("bob@example.test", Some("bob@example.test"))]);
    let tx = began(s.execute(Effect::BeginMessage {
        envelope: env,
        trace: b"Received: x\r\n".to_vec(),
    }));
    let _ = s.execute(Effect::AppendChunk {
        tx,
        bytes: b"\r\nhi\r\n".to_vec(),
    });
    let prepend = b"Authentication-Results: mx; none\r\n".to_vec();
    assert!(matches!(
        s.execute(Effect::Commit {
            tx,
            prepend,
            refusals: Refusals::AllOrNotice,
            junk: false,
            edits: Vec::new(),
        }),
        Completion::Durable(_)
    ));
    let got = files(&tmp.path().join("mail/example.test/bob/new"));
    assert_eq!(got, vec![b"Return-Path: <x@remote.example>\r\nAuthentication-Results: mx; none\r\nReceived: x\r\n\r\nhi\r\n".to_vec()]);
    assert!(files(&tmp.path().join("tmp")).is_empty());
}

#[test]
fn abort_and_restart_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let env = envelope(&[("bob@example.test", Some("bob@example.test"))]);
    let tx = began(s.execute(Effect::BeginMessage {
        envelope: env.clone(),
        trace: vec![],
    }));
    let _ = s.execute(Effect::AppendChunk {
        tx,
        bytes: b"half".to_vec(),
    });
    assert!(matches!(
        s.execute(Effect::Abort { tx }),
        Completion::Aborted
    ));
    assert!(files(&tmp.path().join("tmp")).is_empty());
    // A crash mid-transaction leaves a file in tmp/ (once the message outgrew its memory
    // buffer); the next start removes it.
    let tx = began(s.execute(Effect::BeginMessage {
        envelope: env,
        trace: vec![],
    }));
    let _ = s.execute(Effect::AppendChunk {
        tx,
        bytes: vec![b'h'; 300_000],
    });
    drop(s);
    assert_eq!(files(&tmp.path().join("tmp")).len(), 1);
    let _again = store(tmp.path());
    assert!(files(&tmp.path().join("tmp")).is_empty());
    assert!(files(&tmp.path().join("mail/example.test/bob/new")).is_empty());
}

#[test]
fn concurrent_commits_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Arc::new(store(tmp.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let env = envelope(&[("bob@example.test", Some("bob@example.test"))]);
                    let tx = began(s.execute(Effect::BeginMessage {
                        envelope: env,
                        trace: vec![],
                    }));
                    let _ = s.execute(Effect::AppendChunk {
                        tx,
                        bytes: format!("m{t}-{i}").into_bytes(),
                    });
                    assert!(matches!(
                        s.execute(Effect::Commit {
                            tx,
                            prepend: vec![],
                            refusals: Refusals::AllOrNotice,
                            junk: false,
                            edits: Vec::new(),
                        }),
                        Completion::Durable(_)
                    ));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        files(&tmp.path().join("mail/example.test/bob/new")).len(),
        80
    );
}

#[test]
fn users_add_authenticate_lookup_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let users = s.users();
    assert_eq!(
        users.add("Alice@Example.TEST", "pw").unwrap(),
        UserId("alice@example.test".into())
    );
    assert!(
        users.add("alice@example.test", "again").is_err(),
        "duplicate"
    );
    assert!(users.add("../evil@example.test", "pw").is_err());
    assert!(tmp.path().join("mail/example.test/alice/new").is_dir());
    let line = std::fs::read_to_string(tmp.path().join("passwd")).unwrap();
    assert!(
        line.starts_with("alice@example.test:{ARGON2ID}$argon2id$"),
        "{line}"
    );
    let ok = s.execute(Effect::Authenticate {
        username: "alice@example.test".into(),
        password: Secret::new(b"pw".to_vec()),
        client_ip: "192.0.2.1".into(),
        loopback: false,
    });
    assert!(
        matches!(ok, Completion::Auth(AuthOutcome::Success(UserId(u))) if u == "alice@example.test")
    );
    let bad = s.execute(Effect::Authenticate {
        username: "alice@example.test".into(),
        password: Secret::new(b"no".to_vec()),
        client_ip: "192.0.2.1".into(),
        loopback: false,
    });
    assert!(matches!(bad, Completion::Auth(AuthOutcome::FailureAfter(d)) if d.as_secs() == 1));
    let tagged = users.lookup_recipient(&parse_mailbox("ALICE+news@example.test").unwrap());
    assert_eq!(
        tagged,
        RecipientOutcome::Local(UserId("alice@example.test".into()))
    );
    assert_eq!(
        users.lookup_recipient(&parse_mailbox("bob@example.test").unwrap()),
        RecipientOutcome::Unknown
    );
    // A Dovecot line pasted in by hand is picked up without a restart.
    let dovecot = "bob@example.test:{SHA512-CRYPT}$6$FRVdKQ.yQCvmMsjF$X3VLNIIg906L1XrJRRho7Co6CnvnpXOJVvRJyMyuV3pOMMqKMBeuXNgnO4eOPWUS093WQCm/lKp/l4MPpkPXT/
";
    std::fs::write(tmp.path().join("passwd"), format!("{line}{dovecot}")).unwrap();
    assert_eq!(
        users.list().unwrap(),
        ["alice@example.test", "bob@example.test"]
    );
    let bob = s.execute(Effect::Authenticate {
        username: "bob@example.test".into(),
        password: Secret::new(b"secret".to_vec()),
        client_ip: "192.0.2.1".into(),
        loopback: false,
    });
    assert!(
        matches!(bob, Completion::Auth(AuthOutcome::Success(_))),
        "{bob:?}"
    );
    assert!(users.remove("alice@example.test").unwrap());
    assert_eq!(users.list().unwrap(), ["bob@example.test"]);
}
