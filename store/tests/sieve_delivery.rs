//! Sieve at delivery time, through the store's commit path on a real filesystem: folders and
//! flags, discard, reject (per recipient and with a notice), redirect, vacation with tracking,
//! and the implicit keep whenever the script cannot be used.

use petrel_core::smtp::address::{ReversePath, parse_mailbox};
use petrel_core::{
    Completion, Effect, Envelope, Receipt, Recipient, Refusal, Refusals, UserId, WallClock,
};
use petrel_store::{RealFs, Store, StoreConfig, sieve_scripts};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
struct Clock(AtomicI64);
impl WallClock for Clock {
    fn unix_seconds(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    clock: Arc<Clock>,
    store: Store,
}

fn fixture(users: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let clock = Arc::new(Clock(AtomicI64::new(1_800_000_000)));
    let store = Store::open(
        Arc::new(RealFs),
        StoreConfig {
            data_dir: dir.clone(),
            hostname: "mx.example.test".into(),
            clock: clock.clone(),
            pid: 42,
            seed: 7,
        },
    )
    .unwrap();
    for u in users {
        store.users().add(u, "pw").unwrap();
    }
    Fixture {
        _tmp: tmp,
        dir,
        clock,
        store,
    }
}

impl Fixture {
    fn script(&self, user: &str, text: &str) {
        let user = UserId(user.into());
        sieve_scripts::put(&RealFs, &self.dir, &user, "main", text).unwrap();
        sieve_scripts::set_active(&RealFs, &self.dir, &user, Some("main")).unwrap();
    }

    /// Delivers `message` from `sender` to `rcpts` (local users resolve to themselves, with
    /// `+detail` stripped); returns the receipt.
    fn deliver(&self, sender: &str, rcpts: &[&str], message: &str, refusals: Refusals) -> Receipt {
        self.deliver_to(sender, rcpts, message, refusals, false)
    }

    fn deliver_to(
        &self,
        sender: &str,
        rcpts: &[&str],
        message: &str,
        refusals: Refusals,
        junk: bool,
    ) -> Receipt {
        let users = self.store.users();
        let envelope = Envelope {
            session: "S".into(),
            id: "S01".into(),
            sender: if sender.is_empty() {
                ReversePath::Null
            } else {
                ReversePath::Mailbox(parse_mailbox(sender).unwrap())
            },
            recipients: rcpts
                .iter()
                .map(|a| {
                    let address = parse_mailbox(a).unwrap();
                    let mailbox = match users.lookup_recipient(&address) {
                        petrel_core::RecipientOutcome::Local(u) => Some(u),
                        _ => None,
                    };
                    Recipient { address, mailbox }
                })
                .collect(),
            submitted_by: None,
        };
        let Completion::Began(tx) = self.store.execute(Effect::BeginMessage {
            envelope,
            trace: Vec::new(),
        }) else {
            panic!("begin failed")
        };
        let bytes = message.replace('\n', "\r\n").into_bytes();
        assert!(matches!(
            self.store.execute(Effect::AppendChunk { tx, bytes }),
            Completion::Appended
        ));
        match self.store.execute(Effect::Commit {
            tx,
            prepend: Vec::new(),
            refusals,
            junk,
            edits: Vec::new(),
        }) {
            Completion::Durable(r) => r,
            other => panic!("commit failed: {other:?}"),
        }
    }

    /// Messages in `user`'s folder (`""` = INBOX): (file name, contents).
    fn folder(&self, user: &str, folder: &str) -> Vec<(String, String)> {
        let (local, domain) = user.split_once('@').unwrap();
        let mut root = self.dir.join("mail").join(domain).join(local);
        if !folder.is_empty() {
            root = root.join(folder);
        }
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
                for e in rd {
                    let e = e.unwrap();
                    out.push((
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    /// Queue envelopes, each with its message file's text.
    fn queue(&self) -> Vec<(String, String)> {
        let env = self.dir.join("queue/env");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&env)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name();
                (
                    std::fs::read_to_string(e.path()).unwrap(),
                    std::fs::read_to_string(self.dir.join("queue/msg").join(&name)).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

const MSG: &str = "From: Bob <bob@remote.example>\nTo: alice@example.test\nSubject: Rust 1.95 released\nMessage-ID: <m1@remote.example>\n\nHello\n";

fn user_root(f: &Fixture, user: &str) -> PathBuf {
    let (local, domain) = user.split_once('@').unwrap();
    f.dir.join("mail").join(domain).join(local)
}

#[test]
fn without_a_script_mail_goes_to_inbox() {
    let f = fixture(&["alice@example.test"]);
    let r = f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(r.refused().is_empty());
    let inbox = f.folder("alice@example.test", "");
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0]
            .1
            .starts_with("Return-Path: <bob@remote.example>\r\n")
    );
}

#[test]
fn fileinto_with_flags_creates_the_folder() {
    let f = fixture(&["alice@example.test"]);
    f.script(
        "alice@example.test",
        r#"require ["fileinto", "imap4flags"];
if header :contains "subject" "Rust" {
    fileinto :flags ["\\Seen", "$Label1"] "Lists/Rust";
}"#,
    );
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(f.folder("alice@example.test", "").is_empty());
    let filed = f.folder("alice@example.test", ".Lists.Rust");
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(filed[0].0.ends_with(":2,Sa"), "{}", filed[0].0);
    let root = user_root(&f, "alice@example.test");
    assert!(root.join(".Lists.Rust/maildirfolder").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join(".Lists.Rust/dovecot-keywords")).unwrap(),
        "0 $Label1\n"
    );
    // A message that does not match stays in INBOX.
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        "Subject: other\n\nx\n",
        Refusals::AllOrNotice,
    );
    assert_eq!(f.folder("alice@example.test", "").len(), 1);
}

#[test]
fn subaddress_sorts_on_the_detail_and_non_ascii_folders_use_mutf7() {
    let f = fixture(&["alice@example.test"]);
    f.script(
        "alice@example.test",
        r#"require ["fileinto", "envelope", "subaddress", "variables"];
if envelope :detail :matches "to" "*" { fileinto "Entwürfe/${1}"; }"#,
    );
    f.deliver(
        "bob@remote.example",
        &["alice+shop@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(
        f.folder("alice@example.test", ".Entw&APw-rfe.shop").len(),
        1
    );
}

#[test]
fn discard_stores_nothing_and_still_acknowledges() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script("alice@example.test", "discard;");
    let r = f.deliver(
        "bob@remote.example",
        &["alice@example.test", "bob@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(r.refused().is_empty());
    assert!(f.folder("alice@example.test", "").is_empty());
    assert_eq!(f.folder("bob@example.test", "").len(), 1);
}

#[test]
fn reject_in_lmtp_is_per_recipient() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script(
        "alice@example.test",
        "require \"reject\";\nreject \"I do not want this\";",
    );
    let r = f.deliver(
        "bob@remote.example",
        &[
            "alice@example.test",
            "Alice+x@example.test",
            "bob@example.test",
        ],
        MSG,
        Refusals::PerRecipient,
    );
    assert_eq!(
        r.refused(),
        &[
            Refusal {
                address: "alice@example.test".into(),
                reason: "I do not want this".into()
            },
            Refusal {
                address: "Alice+x@example.test".into(),
                reason: "I do not want this".into()
            }
        ]
    );
    assert!(f.folder("alice@example.test", "").is_empty());
    assert_eq!(f.folder("bob@example.test", "").len(), 1);
    assert!(
        f.queue().is_empty(),
        "LMTP refusals are answered in the dialogue"
    );
}

#[test]
fn reject_in_smtp_refuses_when_alone_and_notifies_otherwise() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script(
        "alice@example.test",
        "require \"reject\";\nreject \"go away\";",
    );
    let r = f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(r.refused().len(), 1);
    assert!(f.queue().is_empty());

    let r = f.deliver(
        "bob@remote.example",
        &["alice@example.test", "bob@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(r.refused().is_empty());
    assert_eq!(f.folder("bob@example.test", "").len(), 1);
    let queue = f.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    let (env, msg) = &queue[0];
    assert!(
        env.contains("sender \n") && env.contains("rcpt bob@remote.example\n"),
        "{env}"
    );
    assert!(msg.starts_with("Return-Path: <>\r\n"), "{msg}");
    assert!(msg.contains("Disposition: automatic-action/MDN-sent-automatically; deleted"));
    assert!(msg.contains("go away"));
    // No notice to the null sender.
    let r = f.deliver(
        "",
        &["alice@example.test", "bob@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(r.refused().is_empty());
    assert_eq!(f.queue().len(), 1);
}

#[test]
fn redirect_goes_to_the_queue_or_a_local_inbox() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script(
        "alice@example.test",
        "require \"copy\";\nredirect \"friend@elsewhere.example\";\nredirect :copy \"bob@example.test\";",
    );
    f.deliver(
        "carol@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert!(
        f.folder("alice@example.test", "").is_empty(),
        "redirect cancels keep"
    );
    let bob = f.folder("bob@example.test", "");
    assert_eq!(bob.len(), 1);
    assert!(bob[0].1.contains("Subject: Rust 1.95 released"));
    let queue = f.queue();
    assert_eq!(queue.len(), 1);
    assert!(queue[0].0.contains("sender carol@remote.example\n"));
    assert!(queue[0].0.contains("rcpt friend@elsewhere.example\n"));
}

#[test]
fn vacation_replies_once_per_period() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script(
        "alice@example.test",
        "require \"vacation\";\nvacation :days 2 :subject \"Away\" \"I am on holiday.\";",
    );
    let from_bob = MSG.replace("bob@remote.example", "bob@example.test");
    f.deliver(
        "bob@example.test",
        &["alice@example.test"],
        &from_bob,
        Refusals::AllOrNotice,
    );
    assert_eq!(
        f.folder("alice@example.test", "").len(),
        1,
        "vacation keeps"
    );
    let replies = f.folder("bob@example.test", "");
    assert_eq!(replies.len(), 1);
    let reply = &replies[0].1;
    assert!(reply.starts_with("Return-Path: <>\r\nFrom: alice@example.test\r\nTo: <bob@example.test>\r\nSubject: Away\r\n"), "{reply}");
    assert!(reply.contains("In-Reply-To: <m1@remote.example>"));
    assert!(reply.contains("Auto-Submitted: auto-replied"));

    f.deliver(
        "bob@example.test",
        &["alice@example.test"],
        &from_bob,
        Refusals::AllOrNotice,
    );
    assert_eq!(
        f.folder("bob@example.test", "").len(),
        1,
        "one reply per period"
    );
    f.clock.0.fetch_add(2 * 86_400 + 1, Ordering::Relaxed);
    f.deliver(
        "bob@example.test",
        &["alice@example.test"],
        &from_bob,
        Refusals::AllOrNotice,
    );
    assert_eq!(
        f.folder("bob@example.test", "").len(),
        2,
        "the period ended"
    );

    // A remote sender's reply is queued from the null sender; a list message gets none.
    f.deliver(
        "dave@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    let queue = f.queue();
    assert_eq!(queue.len(), 1);
    assert!(queue[0].0.contains("sender \n") && queue[0].0.contains("rcpt dave@remote.example\n"));
    let list = format!("List-Id: <rust.example>\n{MSG}");
    f.deliver(
        "erin@remote.example",
        &["alice@example.test"],
        &list,
        Refusals::AllOrNotice,
    );
    assert_eq!(f.queue().len(), 1);
}

#[test]
fn broken_or_failing_scripts_keep_the_mail() {
    let f = fixture(&["alice@example.test"]);
    f.script("alice@example.test", "if true { fileinto \"x\"; "); // does not parse
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(f.folder("alice@example.test", "").len(), 1);
    // A folder name that cannot exist: a run-time problem, implicit keep with the flags.
    f.script(
        "alice@example.test",
        "require [\"fileinto\", \"imap4flags\"];\naddflag \"\\\\Flagged\";\nfileinto \"../../etc\";",
    );
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    let inbox = f.folder("alice@example.test", "");
    assert_eq!(inbox.len(), 2);
    assert!(
        inbox.iter().any(|(name, _)| name.ends_with(":2,F")),
        "{inbox:?}"
    );
    assert!(!f.dir.join("etc").exists());
    // keep and fileinto "INBOX" make one copy.
    f.script(
        "alice@example.test",
        "require \"fileinto\";\nkeep;\nfileinto \"INBOX\";",
    );
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(f.folder("alice@example.test", "").len(), 3);
}

#[test]
fn more_redirects_than_advertised_keep_instead() {
    let f = fixture(&["alice@example.test"]);
    let many: String = (0..5)
        .map(|i| format!("redirect \"r{i}@elsewhere.example\";\n"))
        .collect();
    f.script("alice@example.test", &many);
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(f.folder("alice@example.test", "").len(), 1);
    assert!(f.queue().is_empty());
    let four: String = (0..4)
        .map(|i| format!("redirect \"r{i}@elsewhere.example\";\n"))
        .collect();
    f.script("alice@example.test", &four);
    f.deliver(
        "bob@remote.example",
        &["alice@example.test"],
        MSG,
        Refusals::AllOrNotice,
    );
    assert_eq!(f.queue().len(), 1);
    assert_eq!(f.queue()[0].0.matches("rcpt ").count(), 4);
}

#[test]
fn quarantined_mail_goes_to_junk_and_scripts_still_file() {
    let f = fixture(&["alice@example.test", "bob@example.test"]);
    f.script(
        "bob@example.test",
        "require \"fileinto\";\nif header :contains \"subject\" \"Rust\" { fileinto \"Lists\"; }",
    );
    f.deliver_to(
        "bob@remote.example",
        &["alice@example.test", "bob@example.test"],
        MSG,
        Refusals::AllOrNotice,
        true,
    );
    assert!(f.folder("alice@example.test", "").is_empty());
    assert_eq!(f.folder("alice@example.test", ".Junk").len(), 1);
    assert!(
        user_root(&f, "alice@example.test")
            .join(".Junk/maildirfolder")
            .is_file()
    );
    assert_eq!(
        f.folder("bob@example.test", ".Lists").len(),
        1,
        "fileinto still applies"
    );
    assert!(f.folder("bob@example.test", ".Junk").is_empty());
}
