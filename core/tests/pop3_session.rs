//! Transcript tests of the POP3 session through the real `Pump`, with a fake store.

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::pop3::{Pop3Config, Pop3Session};
use petrel_core::testing::converse as drive;
use petrel_core::{
    AuthOutcome, Completion, Effect, Event, MaildropEntry, MaildropOutcome, PeerInfo, Service,
    Session, UserId,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MESSAGES: [&[u8]; 3] = [
    b"Subject: one\r\n\r\nfirst\r\n.dot line\r\n",
    b"Subject: two\n\nbare LF body\nlast line without end",
    b"Subject: three\r\n\r\nl1\r\nl2\r\nl3\r\n",
];

#[derive(Default)]
struct FakeStore {
    locked: bool,
    deleted: BTreeSet<String>,
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
            Effect::OpenMaildrop { .. } => {
                self.effects.push("open");
                if self.locked {
                    return Completion::Maildrop(MaildropOutcome::InUse);
                }
                self.locked = true;
                let messages = MESSAGES
                    .iter()
                    .enumerate()
                    .map(|(i, m)| MaildropEntry {
                        uid: i as u32 + 10,
                        size: m.len() as u64
                            + m.windows(2)
                                .filter(|w| w[1] == b'\n' && w[0] != b'\r')
                                .count() as u64,
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
                self.effects.push("read");
                let i: usize = name[1..].parse().unwrap();
                let m = MESSAGES[i];
                let start = (offset as usize).min(m.len());
                let end = (start + max as usize).min(m.len());
                Completion::Data(m[start..end].to_vec())
            }
            Effect::CloseMaildrop { delete, .. } => {
                self.effects.push("close");
                self.locked = false;
                self.deleted.extend(delete);
                Completion::Done
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn converse(input: &[u8], cuts: &[usize], store: &mut FakeStore) -> String {
    let start = Instant::now();
    let mut config = Pop3Config::new("mx.example.test");
    config.allow_plaintext_on_loopback = true;
    config.chunk_size = 7;
    let peer = PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "P1".into(),
    };
    let pump = Service::Pop3(Arc::new(config)).start(peer, false, start);
    drive(pump, start, input, cuts, Duration::from_secs(5), |e| {
        store.execute(e)
    })
    .text()
}

const LOGIN: &[u8] = b"USER alice@example.test\r\nPASS pw\r\n";

#[test]
fn rfc1939_session() {
    let mut store = FakeStore::default();
    let script = [LOGIN, b"STAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\nRETR 2\r\nTOP 3 1\r\nDELE 1\r\nDELE 1\r\nLIST 1\r\nRETR 9\r\nSTAT\r\nQUIT\r\n"].concat();
    let t = converse(&script, &[], &mut store);
    let expected = "+OK Petrel ready.\r\n+OK \r\n+OK Logged in.\r\n+OK 3 115\r\n+OK \r\n1 34\r\n2 51\r\n3 30\r\n.\r\n\
+OK 2 0000000B00001234\r\n+OK 34 octets\r\nSubject: one\r\n\r\nfirst\r\n..dot line\r\n.\r\n\
+OK 51 octets\r\nSubject: two\r\n\r\nbare LF body\r\nlast line without end\r\n.\r\n\
+OK 30 octets\r\nSubject: three\r\n\r\nl1\r\n.\r\n+OK Marked to be deleted.\r\n-ERR Message is deleted.\r\n\
-ERR Message is deleted.\r\n-ERR There's no message 9.\r\n+OK 2 81\r\n+OK Logging out, messages deleted.\r\n";
    assert_eq!(t, expected);
    assert_eq!(store.deleted, BTreeSet::from(["m0".to_string()]));
}

#[test]
fn dropped_connection_deletes_nothing_and_unlocks() {
    let mut store = FakeStore::default();
    let t = converse(&[LOGIN, b"DELE 1\r\nDELE 2\r\n"].concat(), &[], &mut store);
    assert!(t.ends_with("+OK Marked to be deleted.\r\n"), "{t}");
    assert!(store.deleted.is_empty());
    assert!(!store.locked);
    assert_eq!(store.effects.last(), Some(&"close"));
}

#[test]
fn second_session_is_refused_while_locked() {
    let mut store = FakeStore {
        locked: true,
        ..Default::default()
    };
    let t = converse(&[LOGIN, b"STAT\r\n"].concat(), &[], &mut store);
    assert!(t.contains("-ERR [IN-USE] Mailbox is locked"), "{t}");
    assert!(
        t.ends_with("-ERR Unknown command in this state.\r\n"),
        "{t}"
    );
}

#[test]
fn auth_plain_capa_and_failures() {
    let mut store = FakeStore::default();
    let script = b"AUTH\r\nCAPA\r\nSTAT\r\nPASS x\r\nUSER alice@example.test\r\nPASS wrong\r\nAUTH PLAIN\r\nAGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nCAPA\r\nRSET\r\nQUIT\r\n";
    let t = converse(script, &[], &mut store);
    assert!(
        t.starts_with("+OK Petrel ready.\r\n+OK \r\nPLAIN\r\n.\r\n"),
        "{t}"
    );
    assert!(t.contains("SASL PLAIN\r\nSTLS\r\n"), "{t}");
    assert!(
        t.contains("-ERR [AUTH] Authentication failed.\r\n+ \r\n+OK Logged in.\r\n"),
        "{t}"
    );
    let after_login = t.split("Logged in.").nth(1).unwrap();
    assert!(
        !after_login.contains("USER") && !after_login.contains("STLS"),
        "{after_login}"
    );
    assert!(
        t.ends_with("+OK \r\n+OK Logging out, messages deleted.\r\n"),
        "{t}"
    );
}

#[test]
fn plaintext_refused_without_tls() {
    let start = Instant::now();
    let peer = PeerInfo {
        ip: "192.0.2.1".into(),
        loopback: false,
        tls: None,
        session_id: "P".into(),
    };
    let mut s = Pop3Session::new(Arc::new(Pop3Config::new("mx")), peer, start);
    s.handle_input(
        start,
        b"USER a\r\nAUTH PLAIN AGEAYg==\r\nSTLS\r\nUSER a\r\n",
    );
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    let t = String::from_utf8(out).unwrap();
    assert_eq!(
        t.matches("-ERR [AUTH] Plaintext authentication disallowed")
            .count(),
        2,
        "{t}"
    );
    assert!(t.ends_with("+OK Begin TLS negotiation now.\r\n"), "{t}");
    assert!(matches!(s.poll_event(), Some(Event::StartTls)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, .. ProptestConfig::default() })]
    #[test]
    fn any_split_same_conversation(cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let script = [LOGIN, b"LIST\r\nRETR 2\r\nTOP 1 0\r\nDELE 3\r\nUIDL\r\nQUIT\r\n"].concat();
        let whole = converse(&script, &[], &mut FakeStore::default());
        let split = converse(&script, &cuts, &mut FakeStore::default());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut input = input;
        input.splice(0..0, LOGIN.iter().copied());
        let t = converse(&input, &[], &mut FakeStore::default());
        prop_assert!(t.starts_with("+OK Petrel ready.\r\n"));
    }
}
