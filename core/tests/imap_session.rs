//! Transcript tests of the IMAP session through the real `Pump`, with a fake in-memory store.

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::imap::request::{
    FlagMode, FolderInfo, FolderSnapshot, FolderStatus, ImapAnswer, ImapRequest, MessageMeta,
};
use petrel_core::imap::session::{ImapConfig, ImapSession};
use petrel_core::testing::converse as drive;
use petrel_core::{
    AuthOutcome, Completion, Effect, ErrorClass, Event, PeerInfo, Pump, Session, StoreError, TxId,
    UserId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const M1: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Hello there\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nHi Bob,\r\nhow are you?\r\n";
const M2: &[u8] = b"From: carol@example.test\r\nTo: alice@example.test\r\nCc: dave@example.test\r\nSubject: Lunch\r\nDate: Tue, 8 Feb 1994 10:00:00 +0000\r\n\r\nNoon at the usual place.\r\n";
const M3: &[u8] = b"From: eve@example.test\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n";

#[derive(Debug, Clone)]
struct Msg {
    meta: MessageMeta,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Folder {
    uidvalidity: u32,
    next_uid: u32,
    modseq: u64,
    messages: Vec<Msg>,
    subscribed: bool,
    special: Option<&'static str>,
    /// Expunged UIDs and the MODSEQ of their removal.
    vanished: Vec<(u32, u64)>,
    /// Expunges at or below this MODSEQ are forgotten.
    floor: u64,
}

impl Folder {
    fn new(uidvalidity: u32) -> Self {
        Folder {
            uidvalidity,
            next_uid: 1,
            modseq: 1,
            messages: Vec::new(),
            subscribed: true,
            special: None,
            vanished: Vec::new(),
            floor: 0,
        }
    }
    fn add(&mut self, bytes: &[u8], flags: &[&str], date: i64) -> u32 {
        self.modseq += 1;
        let uid = self.next_uid;
        self.next_uid += 1;
        self.messages.push(Msg {
            meta: MessageMeta {
                uid,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                modseq: self.modseq,
                size: bytes.len() as u64,
                internal_date: date,
            },
            bytes: bytes.to_vec(),
        });
        uid
    }
    fn snapshot(&self) -> FolderSnapshot {
        FolderSnapshot {
            uidvalidity: self.uidvalidity,
            next_uid: self.next_uid,
            highest_modseq: self.modseq,
            messages: self.messages.iter().map(|m| m.meta.clone()).collect(),
        }
    }
}

/// An APPEND in progress: folder, flags, date, bytes so far.
type OpenAppend = (String, Vec<String>, Option<i64>, Vec<u8>);

#[derive(Debug)]
struct FakeStore {
    folders: BTreeMap<String, Folder>,
    txs: BTreeMap<u64, OpenAppend>,
    next_tx: u64,
    requests: Vec<String>,
    largest_chunk: usize,
    /// Called on every Refresh with the count so far (to simulate other sessions).
    refreshes: u32,
    on_refresh: Option<fn(&mut FakeStore, u32)>,
    /// What `Changed` answers (0: "cannot tell", so IDLE refreshes every poll).
    stamp: u64,
}

impl Default for FakeStore {
    fn default() -> Self {
        let mut inbox = Folder::new(1000);
        inbox.add(M1, &["\\Seen"], 760_000_000);
        inbox.add(M2, &[], 760_086_400);
        inbox.add(M3, &["\\Flagged", "$Work"], 760_172_800);
        let mut sent = Folder::new(2000);
        sent.special = Some("\\Sent");
        let mut folders = BTreeMap::new();
        folders.insert("INBOX".to_string(), inbox);
        folders.insert("Sent".to_string(), sent);
        let mut caf = Folder::new(3000);
        caf.subscribed = false;
        folders.insert("Café".to_string(), caf);
        FakeStore {
            folders,
            txs: BTreeMap::new(),
            next_tx: 1,
            requests: Vec::new(),
            largest_chunk: 0,
            refreshes: 0,
            on_refresh: None,
            stamp: 0,
        }
    }
}

fn matches_pattern(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| matches_pattern(&p[1..], &n[i..])),
        Some('%') => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != '/')
            .any(|i| matches_pattern(&p[1..], &n[i..])),
        Some(c) => n.first() == Some(c) && matches_pattern(&p[1..], &n[1..]),
    }
}

fn no(text: &str) -> Completion {
    Completion::Imap(ImapAnswer::No(text.into()))
}

impl FakeStore {
    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate {
                username, password, ..
            } => {
                self.requests.push("auth".into());
                let ok = username == "alice" && password.expose() == b"pw";
                Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                })
            }
            Effect::Imap { request, .. } => self.imap(request),
            Effect::AppendChunk { tx, bytes } => {
                self.requests.push("chunk".into());
                self.largest_chunk = self.largest_chunk.max(bytes.len());
                self.txs.get_mut(&tx.0).unwrap().3.extend_from_slice(&bytes);
                Completion::Appended
            }
            Effect::Abort { tx } => {
                self.txs.remove(&tx.0);
                Completion::Aborted
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn imap(&mut self, request: ImapRequest) -> Completion {
        let name = format!("{request:?}");
        self.requests
            .push(name.split([' ', '{']).next().unwrap().to_string());
        let folder_missing = match &request {
            ImapRequest::Refresh { folder }
            | ImapRequest::Read { folder, .. }
            | ImapRequest::Store { folder, .. }
            | ImapRequest::Expunge { folder, .. }
            | ImapRequest::Copy { from: folder, .. } => !self.folders.contains_key(folder),
            _ => false,
        };
        if folder_missing {
            return no("[NONEXISTENT] Mailbox doesn't exist.");
        }
        let answer = match request {
            ImapRequest::List {
                pattern,
                subscribed_only,
            } => {
                let p: Vec<char> = pattern.chars().collect();
                ImapAnswer::Folders(
                    self.folders
                        .iter()
                        .filter(|(n, f)| {
                            matches_pattern(&p, &n.chars().collect::<Vec<_>>())
                                && (!subscribed_only || f.subscribed)
                        })
                        .map(|(n, f)| FolderInfo {
                            name: n.clone(),
                            attributes: f.special.iter().map(|s| s.to_string()).collect(),
                            subscribed: f.subscribed,
                            subscribed_children: false,
                        })
                        .collect(),
                )
            }
            ImapRequest::Status { folder } => match self.folders.get(&folder) {
                None => return no("[NONEXISTENT] Mailbox doesn't exist."),
                Some(f) => ImapAnswer::Status(FolderStatus {
                    messages: f.messages.len() as u32,
                    uidnext: f.next_uid,
                    uidvalidity: f.uidvalidity,
                    unseen: f
                        .messages
                        .iter()
                        .filter(|m| !m.meta.flags.iter().any(|x| x == "\\Seen"))
                        .count() as u32,
                    size: f.messages.iter().map(|m| m.meta.size).sum(),
                    highest_modseq: f.modseq,
                }),
            },
            ImapRequest::Select { folder, .. } => match self.folders.get(&folder) {
                None => return no("[NONEXISTENT] Mailbox doesn't exist."),
                Some(f) => ImapAnswer::Snapshot(f.snapshot()),
            },
            ImapRequest::Changed { .. } => ImapAnswer::Stamp(self.stamp),
            ImapRequest::Vanished { folder, since } => {
                let f = &self.folders[&folder];
                ImapAnswer::Vanished {
                    uids: f
                        .vanished
                        .iter()
                        .filter(|v| v.1 > since)
                        .map(|v| v.0)
                        .collect(),
                    complete: since >= f.floor,
                }
            }
            ImapRequest::Refresh { folder } => {
                self.refreshes += 1;
                if let Some(hook) = self.on_refresh {
                    hook(self, self.refreshes);
                }
                ImapAnswer::Snapshot(self.folders[&folder].snapshot())
            }
            ImapRequest::Read {
                folder,
                uid,
                offset,
                max,
            } => {
                let f = &self.folders[&folder];
                let Some(m) = f.messages.iter().find(|m| m.meta.uid == uid) else {
                    return no("[EXPUNGEISSUED] Message was expunged.");
                };
                let start = (offset as usize).min(m.bytes.len());
                let end = (start + max).min(m.bytes.len());
                ImapAnswer::Data(m.bytes[start..end].to_vec())
            }
            ImapRequest::Store {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let f = self.folders.get_mut(&folder).unwrap();
                let mut out = Vec::new();
                for m in f.messages.iter_mut().filter(|m| uids.contains(&m.meta.uid)) {
                    if unchanged_since.is_some_and(|u| m.meta.modseq > u) {
                        continue;
                    }
                    let mut set: Vec<String> = m.meta.flags.to_vec();
                    match mode {
                        FlagMode::Add => {
                            for x in &flags {
                                if !set.contains(x) {
                                    set.push(x.clone());
                                }
                            }
                        }
                        FlagMode::Remove => set.retain(|x| !flags.contains(x)),
                        FlagMode::Replace => set = flags.clone(),
                    }
                    if *set != *m.meta.flags {
                        f.modseq += 1;
                        m.meta.modseq = f.modseq;
                        m.meta.flags = set.into();
                    }
                    out.push((m.meta.uid, m.meta.flags.to_vec(), m.meta.modseq));
                }
                ImapAnswer::Stored(out)
            }
            ImapRequest::Expunge { folder, uids } => {
                let f = self.folders.get_mut(&folder).unwrap();
                let mut gone = Vec::new();
                f.messages.retain(|m| {
                    let del = m.meta.flags.iter().any(|x| x == "\\Deleted")
                        && uids.as_ref().is_none_or(|u| u.contains(&m.meta.uid));
                    if del {
                        gone.push(m.meta.uid);
                    }
                    !del
                });
                f.modseq += 1;
                f.vanished.extend(gone.iter().map(|&u| (u, f.modseq)));
                ImapAnswer::Expunged(gone)
            }
            ImapRequest::Copy {
                from,
                to,
                uids,
                remove,
            } => {
                if !self.folders.contains_key(&to) {
                    return no("[TRYCREATE] Mailbox doesn't exist.");
                }
                let src: Vec<Msg> = self.folders[&from]
                    .messages
                    .iter()
                    .filter(|m| uids.contains(&m.meta.uid))
                    .cloned()
                    .collect();
                let dst = self.folders.get_mut(&to).unwrap();
                let mut pairs = Vec::new();
                for m in &src {
                    let flags: Vec<&str> = m.meta.flags.iter().map(String::as_str).collect();
                    pairs.push((m.meta.uid, dst.add(&m.bytes, &flags, m.meta.internal_date)));
                }
                let uidvalidity = dst.uidvalidity;
                if remove {
                    let f = self.folders.get_mut(&from).unwrap();
                    f.messages.retain(|m| !uids.contains(&m.meta.uid));
                }
                ImapAnswer::Copied { uidvalidity, pairs }
            }
            ImapRequest::Create { folder } => {
                if self.folders.contains_key(&folder) {
                    return no("[ALREADYEXISTS] Mailbox already exists.");
                }
                self.folders.insert(folder, Folder::new(4000));
                ImapAnswer::Done
            }
            ImapRequest::Delete { folder } => match self.folders.remove(&folder) {
                Some(_) => ImapAnswer::Done,
                None => return no("[NONEXISTENT] Mailbox doesn't exist."),
            },
            ImapRequest::Rename { from, to } => match self.folders.remove(&from) {
                Some(f) => {
                    self.folders.insert(to, f);
                    ImapAnswer::Done
                }
                None => return no("[NONEXISTENT] Mailbox doesn't exist."),
            },
            ImapRequest::Subscribe { folder, subscribe } => match self.folders.get_mut(&folder) {
                Some(f) => {
                    f.subscribed = subscribe;
                    ImapAnswer::Done
                }
                None => return no("[NONEXISTENT] Mailbox doesn't exist."),
            },
            ImapRequest::AppendBegin {
                folder,
                flags,
                date,
            } => {
                if !self.folders.contains_key(&folder) {
                    return no("[TRYCREATE] Mailbox doesn't exist.");
                }
                let id = self.next_tx;
                self.next_tx += 1;
                self.txs.insert(id, (folder, flags, date, Vec::new()));
                ImapAnswer::Appending(TxId(id))
            }
            ImapRequest::AppendCommit { tx } => {
                let (folder, flags, date, bytes) = self.txs.remove(&tx.0).unwrap();
                let f = self.folders.get_mut(&folder).unwrap();
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                let uid = f.add(&bytes, &flags, date.unwrap_or(800_000_000));
                ImapAnswer::Appended {
                    uidvalidity: f.uidvalidity,
                    uid,
                }
            }
            other => panic!("unexpected {other:?}"),
        };
        Completion::Imap(answer)
    }
}

fn config() -> ImapConfig {
    let mut config = ImapConfig::new("imap.example.test");
    config.allow_plaintext_on_loopback = true;
    config.chunk_size = 16;
    config.max_message_size = 4096;
    config
}

fn peer(loopback: bool) -> PeerInfo {
    PeerInfo {
        ip: if loopback { "127.0.0.1" } else { "192.0.2.1" }.into(),
        loopback,
        tls: None,
        session_id: "I1".into(),
    }
}

fn converse_with(
    input: &[u8],
    cuts: &[usize],
    store: &mut FakeStore,
    config: ImapConfig,
) -> String {
    let start = Instant::now();
    let session = ImapSession::new(Arc::new(config), peer(true), start);
    let pump = Pump::new(Box::new(session));
    drive(pump, start, input, cuts, Duration::from_secs(5), |e| {
        store.execute(e)
    })
    .text()
}

fn converse(input: &[u8], cuts: &[usize], store: &mut FakeStore) -> String {
    converse_with(input, cuts, store, config())
}

const LOGIN: &[u8] = b"a0 LOGIN alice pw\r\n";

#[test]
fn greeting_capability_login_logout() {
    let mut store = FakeStore::default();
    let t = converse(
        b"a1 CAPABILITY\r\na1b ID (\"name\" \"test\")\r\na2 LOGIN alice wrong\r\na3 LOGIN alice pw\r\na4 CAPABILITY\r\na5 LOGOUT\r\n",
        &[],
        &mut store,
    );
    assert!(t.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CONDSTORE QRESYNC MULTIAPPEND LIST-EXTENDED LIST-STATUS SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES SPECIAL-USE ESEARCH UTF8=ACCEPT STARTTLS AUTH=PLAIN APPENDLIMIT=4096] Petrel ready.\r\n"), "{t}");
    assert!(
        t.contains("\r\na2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        "{t}"
    );
    assert!(t.contains("a3 OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CONDSTORE QRESYNC MULTIAPPEND LIST-EXTENDED LIST-STATUS SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES SPECIAL-USE ESEARCH UTF8=ACCEPT APPENDLIMIT=4096] Logged in.\r\n"), "{t}");
    assert!(
        t.contains("* ID (\"name\" \"Petrel\")\r\na1b OK ID completed.\r\n"),
        "{t}"
    );
    assert!(
        t.ends_with("* BYE Logging out.\r\na5 OK Logout completed.\r\n"),
        "{t}"
    );
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let mut store = FakeStore::default();
    let t = converse(
        b"a1 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\na2 LOGOUT\r\n",
        &[],
        &mut store,
    );
    assert!(t.contains("a1 OK [CAPABILITY"), "{t}");
    let t = converse(
        b"a1 AUTHENTICATE PLAIN\r\n*\r\na2 AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\na3 SELECT INBOX\r\n",
        &[],
        &mut store,
    );
    assert!(
        t.contains("+ \r\na1 BAD Authentication aborted by client.\r\n+ \r\na2 OK [CAPABILITY"),
        "{t}"
    );
    assert!(
        t.contains("a3 OK [READ-WRITE] SELECT completed.\r\n"),
        "{t}"
    );
    let t = converse(
        b"a1 AUTHENTICATE CRAM-MD5\r\na2 SELECT INBOX\r\n",
        &[],
        &mut store,
    );
    assert!(t.contains("a1 NO Unsupported authentication mechanism.\r\na2 BAD Command not allowed before login.\r\n"), "{t}");
}

#[test]
fn plaintext_refused_without_tls_then_starttls() {
    let start = Instant::now();
    let mut s = ImapSession::new(Arc::new(ImapConfig::new("imap")), peer(false), start);
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    let greeting = String::from_utf8(out.clone()).unwrap();
    assert!(greeting.contains(" STARTTLS LOGINDISABLED "), "{greeting}");
    out.clear();
    s.handle_input(
        start,
        b"a1 LOGIN alice pw\r\na2 AUTHENTICATE PLAIN AGFsaWNlAHB3\r\na3 STARTTLS\r\na4 LOGIN injected pw\r\n",
    );
    while s.poll_output(&mut out) {}
    let t = String::from_utf8(out.clone()).unwrap();
    assert_eq!(t.matches("NO [PRIVACYREQUIRED]").count(), 2, "{t}");
    assert!(t.ends_with("a3 OK Begin TLS negotiation now.\r\n"), "{t}");
    assert!(matches!(s.poll_event(), Some(Event::StartTls)));
    assert!(
        s.poll_event().is_none(),
        "the pipelined LOGIN was discarded"
    );
    s.handle_tls_established(
        start,
        petrel_core::TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "x".into(),
        },
    );
    out.clear();
    s.handle_input(start, b"a5 CAPABILITY\r\na6 LOGIN alice pw\r\n");
    while s.poll_output(&mut out) {}
    let t = String::from_utf8(out.clone()).unwrap();
    assert!(t.contains(" AUTH=PLAIN ") && !t.contains("STARTTLS"), "{t}");
    assert!(matches!(
        s.poll_event(),
        Some(Event::Request {
            effect: Effect::Authenticate { .. },
            ..
        })
    ));
}

#[test]
fn bad_commands_and_too_many_errors() {
    let mut store = FakeStore::default();
    let t = converse(b"a1 FOO\r\n\r\nzz\r\na2 SELECT INBOX\r\n", &[], &mut store);
    assert!(t.contains("a1 BAD"), "{t}");
    assert!(
        t.contains("a2 BAD Command not allowed before login.\r\n"),
        "{t}"
    );
    let mut c = config();
    c.max_errors = 3;
    let t = converse_with(
        b"a1 FOO\r\na2 FOO\r\na3 FOO\r\na4 NOOP\r\n",
        &[],
        &mut store,
        c,
    );
    assert!(
        t.ends_with("* BYE Too many invalid IMAP commands.\r\n"),
        "{t}"
    );
}

#[test]
fn autologout_after_silence() {
    let start = Instant::now();
    let mut s = ImapSession::new(Arc::new(config()), peer(true), start);
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline - start, Duration::from_secs(30 * 60));
    s.handle_timeout(deadline);
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("* BYE Disconnected for inactivity.\r\n")
    );
    assert!(s.is_closed());
}

#[test]
fn rfc9051_select_and_fetch() {
    let mut store = FakeStore::default();
    let script = [
        LOGIN,
        b"A142 SELECT INBOX\r\n",
        b"a1 FETCH 1:3 (FLAGS UID RFC822.SIZE INTERNALDATE)\r\n",
        b"a2 UID FETCH 2 (ENVELOPE)\r\n",
        b"a3 FETCH 3 BODYSTRUCTURE\r\n",
        b"a4 FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]\r\n",
        b"a5 FETCH 2 BODY[TEXT]<0.4>\r\n",
        b"a6 FETCH 2 FLAGS\r\n",
        b"a7 FETCH 3 (BINARY.PEEK[2] BINARY.SIZE[2])\r\n",
        b"a8 FETCH 4 FLAGS\r\n",
        b"a9 UID FETCH 1:* (FLAGS)\r\n",
        b"b1 FETCH 1 RFC822\r\n",
    ]
    .concat();
    let t = converse(&script, &[], &mut store);
    let expected_select = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n* OK [UIDVALIDITY 1000] UIDs valid\r\n* OK [UIDNEXT 4] Predicted next UID\r\n* OK [HIGHESTMODSEQ 4] Highest\r\nA142 OK [READ-WRITE] SELECT completed.\r\n";
    assert!(t.contains(expected_select), "{t}");
    assert!(t.contains("* 1 FETCH (FLAGS (\\Seen) UID 1 RFC822.SIZE 141 INTERNALDATE \"31-Jan-1994 07:06:40 +0000\")\r\n"), "{t}");
    assert!(t.contains("* 2 FETCH (UID 2 ENVELOPE (\"Tue, 8 Feb 1994 10:00:00 +0000\" \"Lunch\" ((NIL NIL \"carol\" \"example.test\"))"), "{t}");
    assert!(
        t.contains("* 3 FETCH (BODYSTRUCTURE ((\"text\" \"plain\""),
        "{t}"
    );
    assert!(
        t.contains(
            "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {24}\r\nSubject: Hello there\r\n\r\n)\r\n"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "* 2 FETCH (BODY[TEXT]<0> {4}\r\nNoon FLAGS (\\Seen))\r\na5 OK Fetch completed.\r\n"
        ),
        "{t}"
    );
    assert!(t.contains("* 2 FETCH (FLAGS (\\Seen))\r\na6 OK"), "{t}");
    assert!(
        t.contains("* 3 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[2] 4)\r\n"),
        "{t}"
    );
    assert!(t.contains("a8 BAD Invalid messageset.\r\n"), "{t}");
    assert!(
        t.contains("* 3 FETCH (UID 3 FLAGS (\\Flagged $Work))\r\na9 OK"),
        "{t}"
    );
    let rfc822 = format!(
        "* 1 FETCH (RFC822 {{{}}}\r\n{})\r\n",
        M1.len(),
        String::from_utf8_lossy(M1)
    );
    assert!(t.contains(&rfc822), "{t}");
    // Reads were bounded chunks.
    assert!(store.requests.iter().filter(|r| *r == "Read").count() > M1.len() / 16);
}

#[test]
fn whole_message_fetch_is_streamed_in_chunks() {
    let mut store = FakeStore::default();
    let t = converse(
        &[
            LOGIN,
            b"a1 SELECT INBOX\r\na2 UID FETCH 2:3 (FLAGS BODY[])\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    let want = format!(
        "* 2 FETCH (UID 2 FLAGS (\\Seen) BODY[] {{{}}}\r\n{})\r\n* 3 FETCH (UID 3 FLAGS (\\Flagged $Work \\Seen) BODY[] {{{}}}\r\n{})\r\na2 OK Fetch completed.\r\n",
        M2.len(),
        String::from_utf8_lossy(M2),
        M3.len(),
        String::from_utf8_lossy(M3)
    );
    assert!(t.ends_with(&want), "{t}");
    // One read per 16-byte chunk, and no read past the known size.
    let reads = store.requests.iter().filter(|r| *r == "Read").count();
    assert_eq!(reads, M2.len().div_ceil(16) + M3.len().div_ceil(16));
}

#[test]
fn store_short_of_its_size_ends_the_connection() {
    let mut store = FakeStore::default();
    store.folders.get_mut("INBOX").unwrap().messages[0]
        .meta
        .size += 10;
    let t = converse(
        &[
            LOGIN,
            b"a1 SELECT INBOX\r\na2 FETCH 1 BODY.PEEK[]\r\na3 NOOP\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains(&format!("BODY[] {{{}}}\r\n", M1.len() + 10)),
        "{t}"
    );
    assert!(!t.contains("a2 OK") && !t.contains("a3 "), "{t}");
}

#[test]
fn examine_is_read_only_and_sets_no_seen() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 EXAMINE INBOX\r\na2 FETCH 2 BODY[]\r\na3 STORE 1 +FLAGS (\\Deleted)\r\na4 EXPUNGE\r\na5 FETCH 2 FLAGS\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains("a1 OK [READ-ONLY] EXAMINE completed.\r\n"),
        "{t}"
    );
    assert!(t.contains("a3 NO [READ-ONLY]"), "{t}");
    assert!(t.contains("a4 NO [READ-ONLY]"), "{t}");
    assert!(t.contains("* 2 FETCH (FLAGS ())\r\na5 OK"), "{t}");
}

#[test]
fn list_status_namespace_utf7() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 LIST \"\" \"\"\r\na2 LIST \"\" *\r\na3 LSUB \"\" *\r\na4 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ)\r\na5 STATUS nope (MESSAGES)\r\na6 NAMESPACE\r\na7 STATUS Caf&AOk- (MESSAGES)\r\na8 ENABLE UTF8=ACCEPT\r\na9 LIST \"\" Caf*\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* LIST (\\Noselect) \"/\" \"\"\r\na1 OK"), "{t}");
    assert!(t.contains("* LIST () \"/\" \"Caf&AOk-\"\r\n* LIST () \"/\" \"INBOX\"\r\n* LIST (\\Sent) \"/\" \"Sent\"\r\na2 OK List completed.\r\n"), "{t}");
    assert!(t.contains("* LSUB () \"/\" \"INBOX\"\r\n* LSUB (\\Sent) \"/\" \"Sent\"\r\na3 OK Lsub completed.\r\n"), "{t}");
    assert!(
        t.contains("* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 1000 UNSEEN 2 SIZE "),
        "{t}"
    );
    assert!(
        t.contains("a5 NO [NONEXISTENT] Mailbox doesn't exist.\r\n"),
        "{t}"
    );
    assert!(t.contains("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"), "{t}");
    assert!(
        t.contains("* STATUS \"Caf&AOk-\" (MESSAGES 0)\r\na7 OK"),
        "{t}"
    );
    assert!(t.contains("* ENABLED UTF8=ACCEPT\r\n"), "{t}");
    assert!(t.contains("* LIST () \"/\" \"Café\"\r\na9 OK"), "{t}");
}

#[test]
fn store_expunge_close_unselect() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX\r\na2 STORE 1:2 +FLAGS (\\Deleted)\r\na3 STORE 3 FLAGS.SILENT (\\Seen)\r\na4 UID STORE 3 -FLAGS ($Work)\r\na5 UID EXPUNGE 2\r\na6 EXPUNGE\r\na7 FETCH 1 UID\r\na8 UNSELECT\r\na9 FETCH 1 UID\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* 1 FETCH (FLAGS (\\Seen \\Deleted))\r\n* 2 FETCH (FLAGS (\\Deleted))\r\na2 OK Store completed.\r\n"), "{t}");
    assert!(t.contains("\r\na3 OK Store completed.\r\n"), "{t}");
    assert!(!t.contains("* 3 FETCH (FLAGS (\\Seen))"), "{t}");
    assert!(
        t.contains("* 3 FETCH (UID 3 FLAGS (\\Seen))\r\na4 OK"),
        "{t}"
    );
    assert!(
        t.contains(
            "* 2 EXPUNGE\r\na5 OK Expunge completed.\r\n* 1 EXPUNGE\r\na6 OK Expunge completed.\r\n"
        ),
        "{t}"
    );
    assert!(t.contains("* 1 FETCH (UID 3)\r\na7 OK"), "{t}");
    assert!(
        t.contains("a8 OK Unselect completed.\r\na9 BAD No mailbox selected.\r\n"),
        "{t}"
    );
    assert_eq!(store.folders["INBOX"].messages.len(), 1);

    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX\r\na2 STORE 2 +FLAGS.SILENT (\\Deleted)\r\na3 CLOSE\r\na4 STATUS INBOX (MESSAGES)\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains(
            "a2 OK Store completed.\r\na3 OK Close completed.\r\n* STATUS \"INBOX\" (MESSAGES 2)"
        ),
        "{t}"
    );
}

#[test]
fn search_keys_and_esearch() {
    let mut store = FakeStore::default();
    let t = converse(
        &[
            LOGIN,
            b"a1 SELECT INBOX\r\n",
            b"s1 SEARCH SEEN\r\n",
            b"s2 SEARCH UNSEEN NOT FLAGGED\r\n",
            b"s3 UID SEARCH FROM alice\r\n",
            b"s4 SEARCH SUBJECT \"LUNCH\"\r\n",
            b"s5 SEARCH BODY usual\r\n",
            b"s6 SEARCH OR TEXT bob KEYWORD $Work\r\n",
            b"s7 SEARCH HEADER Cc dave\r\n",
            b"s8 SEARCH SENTBEFORE 8-Feb-1994\r\n",
            b"s9 SEARCH SINCE 1-Feb-1994 UID 2:*\r\n",
            b"t1 SEARCH RETURN (MIN MAX COUNT ALL) ALL\r\n",
            b"t2 UID SEARCH RETURN () NOT SEEN\r\n",
            b"t3 SEARCH CHARSET KOI8-R ALL\r\n",
            b"t4 SEARCH 2:3 SMALLER 200\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    for (tag, want) in [
        ("s1", "* SEARCH 1"),
        ("s2", "* SEARCH 2"),
        ("s3", "* SEARCH 1"),
        ("s4", "* SEARCH 2"),
        ("s5", "* SEARCH 2"),
        ("s6", "* SEARCH 1 3"),
        ("s7", "* SEARCH 2"),
        // M3 has no Date: it counts as 1 January 1970, as in Dovecot.
        ("s8", "* SEARCH 1 3"),
        ("s9", "* SEARCH 2 3"),
        ("t1", "* ESEARCH (TAG \"t1\") MIN 1 MAX 3 COUNT 3 ALL 1:3"),
        ("t2", "* ESEARCH (TAG \"t2\") UID ALL 2:3"),
        ("t4", "* SEARCH 2"),
    ] {
        assert!(
            t.contains(&format!("{want}\r\n{tag} OK Search completed.\r\n")),
            "{tag}: {t}"
        );
    }
    assert!(t.contains("t3 NO [BADCHARSET"), "{t}");
}

#[test]
fn append_streams_in_chunks_and_reports_appenduid() {
    let mut store = FakeStore::default();
    let msg = b"From: x@example.test\r\nSubject: appended\r\n\r\nA body that is longer than one chunk of sixteen bytes.\r\n";
    let script = [
        LOGIN,
        format!("a1 APPEND INBOX (\\Seen) \"05-Feb-2024 10:00:00 +0100\" {{{}}}\r\n", msg.len()).as_bytes(),
        msg,
        b"\r\n",
        format!("a2 APPEND Nope {{{}+}}\r\n", msg.len()).as_bytes(),
        msg,
        b"\r\n",
        b"a3 APPEND INBOX {99999}\r\n",
        format!("a4 APPEND Sent {{{}+}}\r\n", msg.len()).as_bytes(),
        msg,
        b"\r\n",
        b"a5 SELECT INBOX\r\na6 FETCH 4 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
    ]
    .concat();
    let t = converse(&script, &[], &mut store);
    assert!(
        t.contains("+ Ready for literal data\r\na1 OK [APPENDUID 1000 4] Append completed.\r\n"),
        "{t}"
    );
    assert!(
        t.contains("a2 NO [TRYCREATE] Mailbox doesn't exist.\r\n"),
        "{t}"
    );
    assert!(t.contains("a3 NO [TOOBIG] Message too large.\r\n"), "{t}");
    assert!(
        t.contains("a4 OK [APPENDUID 2000 1] Append completed.\r\n"),
        "{t}"
    );
    assert!(t.contains("* 4 FETCH (FLAGS (\\Seen) INTERNALDATE \"05-Feb-2024 09:00:00 +0000\" BODY[HEADER.FIELDS (SUBJECT)] {21}\r\nSubject: appended\r\n\r\n)\r\n"), "{t}");
    assert_eq!(store.folders["INBOX"].messages[3].bytes, msg);
    assert_eq!(store.folders["Sent"].messages[0].bytes, msg);
    assert!(store.largest_chunk <= 16);
    assert!(store.txs.is_empty());
}

#[test]
fn copy_move_create_delete_rename_subscribe() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX\r\na2 COPY 1:2 Sent\r\na3 UID MOVE 3 Sent\r\na4 COPY 1 Nope\r\n",
          b"c1 CREATE Work/\r\nc2 CREATE Work\r\nc3 RENAME Work Play\r\nc4 SUBSCRIBE Play\r\nc5 UNSUBSCRIBE Play\r\nc6 DELETE Play\r\nc7 DELETE INBOX\r\nc8 CREATE INBOX\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains("a2 OK [COPYUID 2000 1:2 1:2] Copy completed.\r\n"),
        "{t}"
    );
    assert!(
        t.contains("* OK [COPYUID 2000 3 3] Moved.\r\n* 3 EXPUNGE\r\na3 OK Move completed.\r\n"),
        "{t}"
    );
    assert!(
        t.contains("a4 NO [TRYCREATE] Mailbox doesn't exist.\r\n"),
        "{t}"
    );
    assert!(t.contains("c1 OK Create completed.\r\nc2 NO [ALREADYEXISTS] Mailbox already exists.\r\nc3 OK Rename completed.\r\nc4 OK Subscribe completed.\r\nc5 OK Unsubscribe completed.\r\nc6 OK Delete completed.\r\nc7 NO"), "{t}");
    assert!(t.contains("c8 NO [ALREADYEXISTS]"), "{t}");
    assert_eq!(store.folders["Sent"].messages.len(), 3);
    assert_eq!(store.folders["INBOX"].messages.len(), 2);
    assert!(!store.folders.contains_key("Play"));
}

fn other_session_changes(store: &mut FakeStore, n: u32) {
    if n == 1 {
        let inbox = store.folders.get_mut("INBOX").unwrap();
        inbox.messages.remove(0);
        inbox.modseq += 1;
        {
            let mut f = inbox.messages[0].meta.flags.to_vec();
            f.push("\\Answered".into());
            inbox.messages[0].meta.flags = f.into();
        }
        inbox.messages[0].meta.modseq = inbox.modseq;
        inbox.add(b"Subject: new\r\n\r\nx\r\n", &[], 900_000_000);
    }
}

#[test]
fn noop_reports_changes_by_others() {
    let mut store = FakeStore {
        on_refresh: Some(other_session_changes),
        ..Default::default()
    };
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX\r\na2 NOOP\r\na3 FETCH 3 UID\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* 1 EXPUNGE\r\n* 1 FETCH (UID 2 FLAGS (\\Answered))\r\n* 3 EXISTS\r\na2 OK NOOP completed.\r\n* 3 FETCH (UID 4)\r\n"), "{t}");
}

#[test]
fn idle_polls_and_done_ends_it() {
    let mut store = FakeStore {
        on_refresh: Some(other_session_changes),
        ..Default::default()
    };
    let start = Instant::now();
    let session = ImapSession::new(Arc::new(config()), peer(true), start);
    let mut pump = Pump::new(Box::new(session));
    // Drive by hand: IDLE, wait past two polls, then DONE.
    let mut t = String::new();
    let mut now = start;
    let feed =
        |pump: &mut Pump, now: Instant, bytes: &[u8], store: &mut FakeStore, t: &mut String| {
            let mut pos = 0;
            loop {
                match pump.next_action() {
                    petrel_core::Action::Write => {
                        t.push_str(&String::from_utf8_lossy(pump.output()));
                        let n = pump.output().len();
                        pump.wrote(now, n);
                    }
                    petrel_core::Action::Execute(id, e) => {
                        let c = store.execute(e);
                        pump.complete(now, id, c)
                    }
                    petrel_core::Action::Read { deadline } if pos < bytes.len() => {
                        let buf = pump.read_buffer();
                        let n = buf.len().min(bytes.len() - pos);
                        buf[..n].copy_from_slice(&bytes[pos..pos + n]);
                        pos += n;
                        pump.received(now, n);
                        let _ = deadline;
                    }
                    petrel_core::Action::Read { deadline } => return deadline,
                    other => panic!("{other:?}"),
                }
            }
        };
    let d = feed(
        &mut pump,
        now,
        &[LOGIN, b"a1 SELECT INBOX\r\na2 IDLE\r\n"].concat(),
        &mut store,
        &mut t,
    )
    .unwrap();
    assert_eq!(d - now, Duration::from_millis(500));
    assert!(t.ends_with("+ idling\r\n"), "{t}");
    now = d;
    pump.timeout(now);
    let d = feed(&mut pump, now, b"", &mut store, &mut t).unwrap();
    assert!(
        t.ends_with(
            "+ idling\r\n* 1 EXPUNGE\r\n* 1 FETCH (UID 2 FLAGS (\\Answered))\r\n* 3 EXISTS\r\n"
        ),
        "{t}"
    );
    now = d;
    pump.timeout(now);
    feed(&mut pump, now, b"DONE\r\na3 NOOP\r\n", &mut store, &mut t);
    assert!(
        t.ends_with("* 3 EXISTS\r\na2 OK Idle completed.\r\na3 OK NOOP completed.\r\n"),
        "{t}"
    );
    assert_eq!(store.refreshes, 3);
}

#[test]
fn condstore_modseq_and_unchangedsince() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX (CONDSTORE)\r\na2 FETCH 1:3 (FLAGS) (CHANGEDSINCE 2)\r\na3 STORE 1:3 (UNCHANGEDSINCE 3) +FLAGS (\\Answered)\r\na4 SEARCH MODSEQ 5\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* 2 FETCH (FLAGS () MODSEQ (3))\r\n* 3 FETCH (FLAGS (\\Flagged $Work) MODSEQ (4))\r\na2 OK"), "{t}");
    assert!(t.contains("* 1 FETCH (FLAGS (\\Seen \\Answered) MODSEQ (5))\r\n* 2 FETCH (FLAGS (\\Answered) MODSEQ (6))\r\na3 OK [MODIFIED 3] Conditional store failed.\r\n"), "{t}");
    assert!(t.contains("* SEARCH 1 2 (MODSEQ 6)\r\na4 OK"), "{t}");
}

#[test]
fn store_failure_is_a_tagged_no() {
    let start = Instant::now();
    let session = ImapSession::new(Arc::new(config()), peer(true), start);
    let mut store = FakeStore::default();
    let t = drive(
        Pump::new(Box::new(session)),
        start,
        &[LOGIN, b"a1 SELECT INBOX\r\na2 LOGOUT\r\n"].concat(),
        &[],
        Duration::from_secs(5),
        |e| match e {
            Effect::Imap { .. } => Completion::Failed(StoreError {
                class: ErrorClass::Temporary,
                message: "disk".into(),
            }),
            e => store.execute(e),
        },
    )
    .text();
    assert!(
        t.contains("a1 NO [UNAVAILABLE] Internal error, try again later.\r\n"),
        "{t}"
    );
    assert!(t.ends_with("a2 OK Logout completed.\r\n"));
}

const PIPELINE: &[u8] = b"a0 LOGIN alice pw\r\na1 SELECT INBOX\r\na2 FETCH 1:* (FLAGS BODY.PEEK[] ENVELOPE)\r\nz2 UID FETCH 1:* BODY[]\r\na3 STORE 2 +FLAGS (\\Deleted)\r\na4 APPEND INBOX {20+}\r\nSubject: p\r\n\r\nbody\r\n\r\na5 SEARCH TEXT body\r\na6 NOOP\r\na7 EXPUNGE\r\na8 LIST \"\" *\r\na9 IDLE\r\nDONE\r\nb1 AUTHENTICATE PLAIN\r\nb2 LOGOUT\r\n";

#[test]
fn pipeline_split_at_every_byte_gives_the_same_output() {
    let whole = converse(PIPELINE, &[], &mut FakeStore::default());
    assert!(whole.ends_with("b2 OK Logout completed.\r\n"), "{whole}");
    for cut in 0..PIPELINE.len() {
        let split = converse(PIPELINE, &[cut], &mut FakeStore::default());
        assert_eq!(whole, split, "cut at {cut}");
    }
    let bytes: Vec<usize> = (0..PIPELINE.len()).collect();
    assert_eq!(whole, converse(PIPELINE, &bytes, &mut FakeStore::default()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn any_split_same_conversation(cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = converse(PIPELINE, &[], &mut FakeStore::default());
        let split = converse(PIPELINE, &cuts, &mut FakeStore::default());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut input = input;
        input.splice(0..0, b"a0 LOGIN alice pw\r\na1 SELECT INBOX\r\n".iter().copied());
        let t = converse(&input, &[], &mut FakeStore::default());
        prop_assert!(t.starts_with("* OK [CAPABILITY"));
    }

    #[test]
    fn command_soup_never_panics(cmds in proptest::collection::vec(
        prop::sample::select(vec![
            "FETCH 1:* (FLAGS BODY[] BODYSTRUCTURE)", "UID FETCH 2:9 BINARY[1]", "STORE 1 +FLAGS (\\Deleted)",
            "EXPUNGE", "SEARCH OR FROM a TEXT b", "NOOP", "SELECT INBOX", "EXAMINE Sent", "CLOSE",
            "UNSELECT", "MOVE 1 Sent", "COPY 2:* INBOX", "APPEND INBOX {3+}\r\nabc", "CREATE x",
            "DELETE x", "RENAME Sent y", "LIST \"\" %", "STATUS INBOX (MESSAGES)", "IDLE\r\nDONE",
            "FETCH 9 FLAGS", "UID EXPUNGE 1:*", "ENABLE IMAP4rev2 CONDSTORE", "SEARCH RETURN (COUNT) ALL",
        ]), 0..20)) {
        let mut input = LOGIN.to_vec();
        for (i, c) in cmds.iter().enumerate() {
            input.extend_from_slice(format!("c{i} {c}\r\n").as_bytes());
        }
        let t = converse(&input, &[], &mut FakeStore::default());
        prop_assert!(t.starts_with("* OK [CAPABILITY"));
        let _ = BTreeSet::<u8>::new();
    }
}

/// Drives `pump` with `bytes` until it waits for input; returns the read deadline.
fn drive_idle(
    pump: &mut Pump,
    now: Instant,
    bytes: &[u8],
    store: &mut FakeStore,
    t: &mut String,
) -> Option<Instant> {
    let mut pos = 0;
    loop {
        match pump.next_action() {
            petrel_core::Action::Write => {
                t.push_str(&String::from_utf8_lossy(pump.output()));
                let n = pump.output().len();
                pump.wrote(now, n);
            }
            petrel_core::Action::Execute(id, e) => {
                let c = store.execute(e);
                pump.complete(now, id, c)
            }
            petrel_core::Action::Read { .. } if pos < bytes.len() => {
                let buf = pump.read_buffer();
                let n = buf.len().min(bytes.len() - pos);
                buf[..n].copy_from_slice(&bytes[pos..pos + n]);
                pos += n;
                pump.received(now, n);
            }
            petrel_core::Action::Read { deadline } => return deadline,
            other => panic!("{other:?}"),
        }
    }
}

/// IDLE asks the store for the folder's stamp every poll and fetches a snapshot only when the
/// stamp is new (or 0, "cannot tell"): an idle session on an unchanged folder costs two stats.
#[test]
fn idle_refreshes_only_when_the_stamp_changes() {
    let mut store = FakeStore {
        on_refresh: Some(other_session_changes),
        stamp: 7,
        ..Default::default()
    };
    let start = Instant::now();
    let session = ImapSession::new(Arc::new(config()), peer(true), start);
    let mut pump = Pump::new(Box::new(session));
    let mut t = String::new();
    let mut now = start;
    let mut d = drive_idle(
        &mut pump,
        now,
        &[LOGIN, b"a1 SELECT INBOX\r\na2 IDLE\r\n"].concat(),
        &mut store,
        &mut t,
    )
    .unwrap();
    let mut poll = |store: &mut FakeStore, t: &mut String| {
        now = d;
        pump.timeout(now);
        d = drive_idle(&mut pump, now, b"", store, t).unwrap();
        assert_eq!(d - now, Duration::from_millis(500));
    };
    // First poll: the session knows no stamp yet, so it refreshes (and sees the changes).
    poll(&mut store, &mut t);
    assert_eq!(store.refreshes, 1);
    assert!(t.ends_with("* 3 EXISTS\r\n"), "{t}");
    // Same stamp: no snapshot, nothing sent.
    let before = t.len();
    poll(&mut store, &mut t);
    poll(&mut store, &mut t);
    assert_eq!(store.refreshes, 1);
    assert_eq!(t.len(), before);
    // A new stamp: refresh; the new message shows.
    store
        .folders
        .get_mut("INBOX")
        .unwrap()
        .add(b"Subject: later\r\n\r\nx\r\n", &[], 900_000_100);
    store.stamp = 8;
    poll(&mut store, &mut t);
    assert_eq!(store.refreshes, 2);
    assert!(t.ends_with("* 4 EXISTS\r\n"), "{t}");
    // 0 means "cannot tell": refresh every time.
    store.stamp = 0;
    poll(&mut store, &mut t);
    poll(&mut store, &mut t);
    assert_eq!(store.refreshes, 4);
    let changed = store.requests.iter().filter(|r| *r == "Changed").count();
    assert_eq!(changed, 6, "{:?}", store.requests);
}

/// IDLE push: a runtime that watches the folder the session names in `watched_folder` (only
/// while in IDLE with a folder selected) tells it when the watch is set up (the session then
/// compares the stamp) and on every change (the session fetches a snapshot even though the
/// stamp looks unchanged); the session then polls only every `idle_push_poll`. Pokes outside
/// IDLE do nothing; a poke while a request is outstanding is looked at once it is answered.
#[test]
fn idle_looks_when_poked_and_not_otherwise() {
    let mut store = FakeStore {
        stamp: 7,
        ..Default::default()
    };
    let start = Instant::now();
    let session = ImapSession::new(Arc::new(config()), peer(true), start);
    let mut pump = Pump::new(Box::new(session));
    let mut t = String::new();
    let now = start;
    drive_idle(
        &mut pump,
        now,
        &[LOGIN, b"a1 SELECT INBOX\r\n"].concat(),
        &mut store,
        &mut t,
    );
    // Selected but not idling: nothing to watch, and a poke does nothing.
    assert_eq!(pump.watched_folder(), None);
    let requests = store.requests.len();
    pump.folder_changed(now, true);
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    assert_eq!(store.requests.len(), requests, "{:?}", store.requests);
    let d = drive_idle(&mut pump, now, b"a2 IDLE\r\n", &mut store, &mut t).unwrap();
    assert_eq!(
        d - now,
        Duration::from_millis(500),
        "unwatched: the short poll"
    );
    let (user, folder) = pump.watched_folder().expect("IDLE watches its folder");
    assert_eq!((user.0.as_str(), folder), ("alice", "INBOX"));
    // The watch is set up: the stamp is compared (new to the session: one refresh), and from
    // now on the poll is the long safety net.
    let requests = store.requests.len();
    pump.folder_changed(now, false);
    let d = drive_idle(&mut pump, now, b"", &mut store, &mut t).unwrap();
    assert_eq!(d - now, Duration::from_secs(30));
    assert_eq!(store.requests[requests..], ["Changed", "Refresh"]);
    assert_eq!(store.refreshes, 1);
    // Nothing reported, nothing looked at: a timer firing early, input-less wake-ups.
    let requests = store.requests.len();
    pump.timeout(now + Duration::from_secs(1));
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    assert_eq!(store.requests.len(), requests, "{:?}", store.requests);
    // A change reported with the stamp unchanged (two changes within one mtime tick): the
    // session fetches a snapshot anyway and the new message shows at once.
    store
        .folders
        .get_mut("INBOX")
        .unwrap()
        .add(b"Subject: pushed\r\n\r\nx\r\n", &[], 900_000_100);
    pump.folder_changed(now, true);
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    assert_eq!(store.refreshes, 2);
    assert!(t.ends_with("* 4 EXISTS\r\n"), "{t}");
    // A change reported while the session waits for the store: looked at after the answer.
    store
        .folders
        .get_mut("INBOX")
        .unwrap()
        .add(b"Subject: during\r\n\r\nx\r\n", &[], 900_000_200);
    pump.folder_changed(now, false);
    let petrel_core::Action::Execute(id, e) = pump.next_action() else {
        panic!("the poke asks the store");
    };
    pump.folder_changed(now, true);
    let c = store.execute(e);
    pump.complete(now, id, c);
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    // (The stamp was unknown after the pushed refresh, so the comparison refreshed too.)
    assert_eq!(store.refreshes, 4);
    assert_eq!(
        store.requests[store.requests.len() - 3..],
        ["Changed", "Refresh", "Refresh"]
    );
    assert!(t.ends_with("* 5 EXISTS\r\n"), "{t}");
    // The safety net: after 30 s without news the stamp is compared again (a refresh the
    // first time, since a pushed refresh leaves the stamp unknown), then only compared.
    let requests = store.requests.len();
    pump.timeout(now + Duration::from_secs(30));
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    pump.timeout(now + Duration::from_secs(60));
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    assert_eq!(
        store.requests[requests..],
        ["Changed", "Refresh", "Changed"]
    );
    // DONE: nothing watched any more, and a poke does nothing.
    drive_idle(&mut pump, now, b"DONE\r\n", &mut store, &mut t);
    assert!(t.ends_with("a2 OK Idle completed.\r\n"), "{t}");
    assert_eq!(pump.watched_folder(), None);
    let requests = store.requests.len();
    pump.folder_changed(now, true);
    drive_idle(&mut pump, now, b"", &mut store, &mut t);
    assert_eq!(store.requests.len(), requests, "{:?}", store.requests);
    assert_eq!(store.refreshes, 5);
}

/// QRESYNC (RFC 7162): ENABLE, VANISHED instead of EXPUNGE, SELECT (QRESYNC ...) with
/// VANISHED (EARLIER) and the changed flags, UID FETCH (CHANGEDSINCE m VANISHED).
#[test]
fn qresync_vanished_select_and_fetch() {
    let mut store = FakeStore::default();
    let t = converse(
        &[
            LOGIN,
            b"a1 ENABLE QRESYNC\r\na2 SELECT INBOX\r\na3 STORE 2 +FLAGS.SILENT (\\Deleted)\r\na4 EXPUNGE\r\n",
            b"a5 SELECT INBOX (QRESYNC (1000 2 1:3))\r\n",
            b"a6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
            b"a7 SELECT INBOX (QRESYNC (999 2))\r\n",
            b"a8 FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* ENABLED QRESYNC\r\na1 OK"), "{t}");
    assert!(t.contains("* VANISHED 2\r\na4 OK"), "{t}");
    assert!(!t.contains(" EXPUNGE\r\n"), "{t}");
    assert!(
        t.contains("* OK [CLOSED]") && t.contains("* VANISHED (EARLIER) 2\r\n* 2 FETCH (UID 3 FLAGS (\\Flagged $Work) MODSEQ (4))\r\na5 OK [READ-WRITE]"),
        "{t}"
    );
    let a6 = &t[t.find("a5 OK").unwrap()..t.find("a6 OK").unwrap()];
    assert!(a6.contains("* VANISHED (EARLIER) 2\r\n* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (2))\r\n* 2 FETCH (UID 3 "), "{a6}");
    // Another UIDVALIDITY: no resync data.
    let a7 = &t[t.find("a6 OK").unwrap()..t.find("a7 OK").unwrap()];
    assert!(!a7.contains("VANISHED") && !a7.contains("FETCH"), "{a7}");
    // VANISHED only with UID FETCH.
    assert!(t.contains("a8 BAD"), "{t}");
}

#[test]
fn qresync_needs_enable_and_forgotten_expunges_are_answered_conservatively() {
    let mut store = FakeStore::default();
    let t = converse(
        &[LOGIN, b"a1 SELECT INBOX (QRESYNC (1000 2))\r\n"].concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("a1 BAD"), "{t}");
    // UIDs 4..9 came and went long ago; the store no longer knows which were expunged when.
    let mut store = FakeStore::default();
    let inbox = store.folders.get_mut("INBOX").unwrap();
    inbox.next_uid = 10;
    inbox.floor = 50;
    let t = converse(
        &[
            LOGIN,
            b"a1 ENABLE QRESYNC\r\na2 SELECT INBOX (QRESYNC (1000 3 2:6,8))\r\n",
            b"a3 UID FETCH 1:* (UID) (CHANGEDSINCE 3 VANISHED)\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    assert!(t.contains("* VANISHED (EARLIER) 4:6,8\r\n"), "{t}");
    let a3 = &t[t.find("a2 OK").unwrap()..];
    assert!(
        a3.contains("* VANISHED (EARLIER) 4:9\r\n* 3 FETCH (UID 3 MODSEQ (4))"),
        "{a3}"
    );
}

/// MULTIAPPEND (RFC 3502): several messages in one APPEND, synchronizing and not, each
/// streamed in chunks; committed only once all have arrived, with every UID in APPENDUID. A
/// refused message (too large) leaves none of the command's messages appended.
#[test]
fn multiappend_appends_all_or_nothing() {
    let mut store = FakeStore::default();
    let m1 = b"Subject: one\r\n\r\nThe first message, longer than a chunk.\r\n";
    let m2 = b"Subject: two\r\n\r\nThe second.\r\n";
    let script = [
        LOGIN,
        format!("a1 APPEND INBOX (\\Seen) {{{}}}\r\n", m1.len()).as_bytes(),
        m1,
        format!(" (\\Flagged) {{{}}}\r\n", m2.len()).as_bytes(),
        m2,
        format!(" {{{}+}}\r\n", m1.len()).as_bytes(),
        m1,
        b"\r\n",
        format!("a2 APPEND INBOX {{{}+}}\r\n", m1.len()).as_bytes(),
        m1,
        b" {99999}\r\n",
        format!("a3 APPEND INBOX {{{}+}}\r\n", m2.len()).as_bytes(),
        m2,
        format!(" {{{}+}}\r\n", m2.len()).as_bytes(),
        m2,
        b" {99999+}\r\n",
        &[b'x'; 99_999],
        b"\r\n",
        b"a4 NOOP\r\n",
    ]
    .concat();
    let t = converse(&script, &[], &mut store);
    assert!(
        t.contains("a1 OK [APPENDUID 1000 4:6] Append completed.\r\n"),
        "{t}"
    );
    assert_eq!(t.matches("+ Ready for literal data").count(), 2, "{t}");
    assert!(t.contains("a2 NO [TOOBIG]"), "{t}");
    assert!(t.contains("a3 NO [TOOBIG]"), "{t}");
    assert!(t.contains("a4 OK"), "{t}");
    let inbox = &store.folders["INBOX"].messages;
    assert_eq!(inbox.len(), 6, "a2 and a3 appended nothing");
    assert_eq!(inbox[3].bytes, m1);
    assert_eq!(*inbox[3].meta.flags, ["\\Seen"]);
    assert_eq!(inbox[4].bytes, m2);
    assert_eq!(*inbox[4].meta.flags, ["\\Flagged"]);
    assert_eq!(inbox[5].bytes, m1);
    assert!(
        store.txs.is_empty(),
        "every transaction committed or aborted"
    );
}

/// LIST-STATUS (RFC 5819): a STATUS line after the LIST lines of every selectable folder.
#[test]
fn list_status_returns_status_of_listed_folders() {
    let mut store = FakeStore::default();
    let t = converse(
        &[
            LOGIN,
            b"a1 LIST \"\" \"*\" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))\r\n",
            b"a2 LIST (SUBSCRIBED) \"\" (\"INBOX\" \"Sent\") RETURN (STATUS (MESSAGES))\r\n",
            b"a3 LIST \"\" \"*\"\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    let a1 = &t[..t.find("a1 OK").expect(&t)];
    assert!(
        a1.contains("* STATUS \"INBOX\" (MESSAGES 3 UNSEEN 2 UIDNEXT 4)\r\n"),
        "{t}"
    );
    assert!(
        a1.contains("* STATUS \"Sent\" (MESSAGES 0 UNSEEN 0 UIDNEXT 1)\r\n"),
        "{t}"
    );
    assert!(
        a1.find("* LIST () \"/\" \"INBOX\"").unwrap() < a1.find("* STATUS \"INBOX\"").unwrap(),
        "{t}"
    );
    assert_eq!(a1.matches("* STATUS ").count(), 3, "{t}");
    let a2 = &t[t.find("a1 OK").unwrap()..t.find("a2 OK").expect(&t)];
    assert_eq!(a2.matches("* STATUS ").count(), 2, "{a2}");
    let a3 = &t[t.find("a2 OK").unwrap()..t.find("a3 OK").expect(&t)];
    assert!(!a3.contains("STATUS"), "{a3}");
}

/// SORT and THREAD (RFC 5256) over the default INBOX plus a discussion with References,
/// In-Reply-To, a reply whose parent is missing and subject-only replies.
#[test]
fn sort_and_thread() {
    let mut store = FakeStore::default();
    let inbox = store.folders.get_mut("INBOX").unwrap();
    let msg = |id: &str, refs: &str, subject: &str, date: &str| {
        format!(
            "Message-ID: <{id}@x>\r\n{refs}Subject: {subject}\r\nDate: {date}\r\nFrom: {id}@example.test\r\n\r\nbody\r\n"
        )
    };
    for m in [
        msg("a", "", "Plan", "Wed, 1 Jan 2020 10:00:00 +0000"),
        msg(
            "b",
            "In-Reply-To: <a@x>\r\n",
            "Re: Plan",
            "Wed, 1 Jan 2020 11:00:00 +0000",
        ),
        msg(
            "c",
            "References: <a@x> <b@x>\r\n",
            "Re: Plan",
            "Wed, 1 Jan 2020 12:00:00 +0000",
        ),
        msg(
            "d",
            "References: <a@x>\r\n",
            "RE: Plan",
            "Wed, 1 Jan 2020 13:00:00 +0000",
        ),
        msg(
            "e",
            "References: <missing@x>\r\n",
            "Re: [list] Plan",
            "Thu, 2 Jan 2020 10:00:00 +0000",
        ),
        msg("f", "", "Other", "Wed, 1 Jan 2020 08:00:00 +0000"),
        msg("g", "", "Re: Other (fwd)", "Fri, 3 Jan 2020 10:00:00 +0000"),
    ] {
        inbox.add(m.as_bytes(), &[], 1_600_000_000);
    }
    let t = converse(
        &[
            LOGIN,
            b"a1 SELECT INBOX\r\n",
            b"a2 SORT (SUBJECT) UTF-8 ALL\r\n",
            b"a3 SORT (REVERSE FROM) UTF-8 1:3\r\n",
            b"a4 UID SORT (DATE) US-ASCII ALL\r\n",
            b"a5 THREAD REFERENCES UTF-8 ALL\r\n",
            b"a6 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n",
            b"a7 SORT (ARRIVAL) UTF-8 SUBJECT plan\r\n",
            b"a8 SORT (SUBJECT) KOI8-R ALL\r\n",
            b"a9 THREAD REFERENCES UTF-8 NOT ALL\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains("* SORT 3 1 2 9 10 4 5 6 7 8\r\na2 OK Sort completed."),
        "{t}"
    );
    assert!(t.contains("* SORT 3 2 1\r\na3 OK"), "{t}");
    assert!(t.contains("* SORT 3 1 2 9 4 5 6 7 8 10\r\na4 OK"), "{t}");
    assert!(
        t.contains("* THREAD (3)(1)(2)(9 10)(4 (5 6)(7)(8))\r\na5 OK Thread completed."),
        "{t}"
    );
    assert!(
        t.contains("* THREAD (3)(1)(2)(9 10)(4 (5)(6)(7)(8))\r\na6 OK"),
        "{t}"
    );
    assert!(t.contains("* SORT 4 5 6 7 8\r\na7 OK"), "{t}");
    assert!(t.contains("a8 NO [BADCHARSET"), "{t}");
    assert!(t.contains("* THREAD\r\na9 OK"), "{t}");
}

/// LIST (SPECIAL-USE) (RFC 6154) lists only folders with a special-use attribute.
#[test]
fn list_special_use_selects_special_folders_only() {
    let mut store = FakeStore::default();
    let t = converse(
        &[
            LOGIN,
            b"a1 LIST (SPECIAL-USE) \"\" \"*\"\r\na2 LIST \"\" \"*\"\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    let a1 = &t[t.find("Logged in.").unwrap()..t.find("a1 OK").expect(&t)];
    assert_eq!(a1.matches("* LIST").count(), 1, "{t}");
    assert!(a1.contains("* LIST (\\Sent) \"/\" \"Sent\""), "{t}");
    let a2 = &t[t.find("a1 OK").unwrap()..t.find("a2 OK").expect(&t)];
    assert_eq!(a2.matches("* LIST").count(), 3, "{t}");
}

/// NOOP, like IDLE, looks at the whole folder only when the store's stamp changed.
#[test]
fn noop_refreshes_only_when_the_stamp_changes() {
    let mut store = FakeStore {
        stamp: 7,
        ..Default::default()
    };
    let t = converse(
        &[
            LOGIN,
            b"a1 SELECT INBOX\r\na2 NOOP\r\na3 NOOP\r\na4 CHECK\r\n",
        ]
        .concat(),
        &[],
        &mut store,
    );
    assert!(
        t.contains("a2 OK NOOP completed.\r\na3 OK NOOP completed.\r\na4 OK CHECK completed.\r\n"),
        "{t}"
    );
    assert_eq!(
        store.refreshes, 1,
        "only the first NOOP, which knew no stamp"
    );
}
