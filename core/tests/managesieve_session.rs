//! Transcript tests of the ManageSieve session (RFC 5804) through the real `Pump`, with a fake
//! script store. The RFC's own examples are used where they fit (sections 2.1, 2.6, 2.7, 2.8).

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::managesieve::{
    ManageSieveConfig, ManageSieveSession, ScriptEntry, SieveAnswer, SieveRequest,
};
use petrel_core::sieve::SUPPORTED_EXTENSIONS;
use petrel_core::testing::converse as drive;
use petrel_core::{AuthOutcome, Completion, Effect, PeerInfo, Service, Session, UserId};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scripts of one user, with the semantics the real store has.
#[derive(Default)]
struct FakeStore {
    scripts: BTreeMap<String, String>,
    active: Option<String>,
    requests: Vec<SieveRequest>,
}

impl FakeStore {
    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate {
                username, password, ..
            } => {
                let ok = username == "alice@example.test" && password.expose() == b"pw";
                Completion::Auth(if ok {
                    AuthOutcome::Success(UserId(username))
                } else {
                    AuthOutcome::Failure
                })
            }
            Effect::Sieve { user, request } => {
                assert_eq!(user.0, "alice@example.test");
                self.requests.push(request.clone());
                Completion::Sieve(self.sieve(request))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn sieve(&mut self, request: SieveRequest) -> SieveAnswer {
        match request {
            SieveRequest::List => SieveAnswer::Scripts(
                self.scripts
                    .keys()
                    .map(|n| ScriptEntry {
                        name: n.clone(),
                        active: self.active.as_ref() == Some(n),
                    })
                    .collect(),
            ),
            SieveRequest::Get { name } => match self.scripts.get(&name) {
                Some(s) => SieveAnswer::Script(s.clone()),
                None => SieveAnswer::NonExistent,
            },
            SieveRequest::Put { name, script } => {
                if !self.scripts.contains_key(&name) && self.scripts.len() >= 3 {
                    return SieveAnswer::TooManyScripts;
                }
                self.scripts.insert(name, script);
                SieveAnswer::Done
            }
            SieveRequest::Delete { name } => {
                if self.active.as_ref() == Some(&name) {
                    SieveAnswer::Active
                } else if self.scripts.remove(&name).is_some() {
                    SieveAnswer::Done
                } else {
                    SieveAnswer::NonExistent
                }
            }
            SieveRequest::Rename { from, to } => {
                if !self.scripts.contains_key(&from) {
                    return SieveAnswer::NonExistent;
                }
                if self.scripts.contains_key(&to) {
                    return SieveAnswer::AlreadyExists;
                }
                let s = self.scripts.remove(&from).unwrap();
                self.scripts.insert(to.clone(), s);
                if self.active.as_ref() == Some(&from) {
                    self.active = Some(to);
                }
                SieveAnswer::Done
            }
            SieveRequest::SetActive { name: None } => {
                self.active = None;
                SieveAnswer::Done
            }
            SieveRequest::SetActive { name: Some(name) } => {
                if self.scripts.contains_key(&name) {
                    self.active = Some(name);
                    SieveAnswer::Done
                } else {
                    SieveAnswer::NonExistent
                }
            }
            SieveRequest::HaveSpace { name, .. } => {
                if !self.scripts.contains_key(&name) && self.scripts.len() >= 3 {
                    SieveAnswer::TooManyScripts
                } else {
                    SieveAnswer::Done
                }
            }
        }
    }
}

fn config() -> ManageSieveConfig {
    let mut config = ManageSieveConfig::new("mx.example.test");
    config.allow_plaintext_on_loopback = true;
    config
}

fn loopback() -> PeerInfo {
    PeerInfo {
        ip: "127.0.0.1".into(),
        loopback: true,
        tls: None,
        session_id: "S1".into(),
    }
}

fn converse_with(
    config: ManageSieveConfig,
    peer: PeerInfo,
    input: &[u8],
    cuts: &[usize],
    store: &mut FakeStore,
) -> String {
    let start = Instant::now();
    let pump = Service::ManageSieve(Arc::new(config)).start(peer, false, start);
    drive(pump, start, input, cuts, Duration::from_secs(5), |e| {
        store.execute(e)
    })
    .text()
}

fn converse(input: &[u8], cuts: &[usize], store: &mut FakeStore) -> String {
    converse_with(config(), loopback(), input, cuts, store)
}

/// What follows the greeting.
fn after_greeting(t: &str) -> &str {
    let i = t.find("OK \"Petrel ManageSieve ready.\"\r\n").expect(t);
    &t[i + "OK \"Petrel ManageSieve ready.\"\r\n".len()..]
}

const LOGIN: &[u8] = b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\"\r\n";
const LOGGED_IN: &str = "OK \"Logged in.\"\r\n";

fn caps(sasl: &str, starttls: bool, owner: Option<&str>) -> String {
    let mut c = format!(
        "\"IMPLEMENTATION\" \"Petrel\"\r\n\"SASL\" \"{sasl}\"\r\n\"SIEVE\" \"{}\"\r\n",
        SUPPORTED_EXTENSIONS.join(" ")
    );
    if starttls {
        c.push_str("\"STARTTLS\"\r\n");
    }
    c.push_str("\"MAXREDIRECTS\" \"4\"\r\n");
    if let Some(o) = owner {
        c.push_str(&format!("\"OWNER\" \"{o}\"\r\n"));
    }
    c.push_str("\"VERSION\" \"1.0\"\r\n");
    c
}

#[test]
fn greeting_is_the_capability_list_then_ok() {
    let t = converse(b"CAPABILITY\r\nLOGOUT\r\n", &[], &mut FakeStore::default());
    let expected = format!(
        "{0}OK \"Petrel ManageSieve ready.\"\r\n{0}OK \"Capability completed.\"\r\nOK \"Logout completed.\"\r\n",
        caps("PLAIN", true, None)
    );
    assert_eq!(t, expected);
}

/// RFC 5804 2.6, with the script's CRLF line ends counted as the client would; the second
/// script requires "envelope" too, which the RFC's example forgets.
#[test]
fn rfc5804_putscript() {
    let bad = "#comment\r\nInvalidSieveCommand\r\n";
    let good = "require [\"fileinto\", \"envelope\"];\r\n\r\nif envelope :contains \"to\" \"tmartin+sent\" {\r\n  fileinto \"INBOX.sent\";\r\n}";
    let script = format!(
        "Putscript \"foo\" {{{}+}}\r\n{bad}\r\nPutscript \"mysievescript\" {{{}+}}\r\n{good}\r\nGETSCRIPT \"mysievescript\"\r\n",
        bad.len(),
        good.len()
    );
    let mut store = FakeStore::default();
    let t = converse(&[LOGIN, script.as_bytes()].concat(), &[], &mut store);
    let rest = after_greeting(&t);
    let expected = format!(
        "{LOGGED_IN}NO \"line 2, column 1: unknown command InvalidSieveCommand\"\r\nOK \"Putscript completed.\"\r\n{{{}}}\r\n{good}\r\nOK \"Getscript completed.\"\r\n",
        good.len()
    );
    assert!(rest.starts_with(LOGGED_IN), "{rest}");
    // The parser's own wording after the line and column is its business; the position is ours.
    let no = rest.lines().nth(1).unwrap();
    assert!(no.starts_with("NO \"line 2, column 1: "), "{rest}");
    let expected_no = expected.lines().nth(1).unwrap();
    assert_eq!(
        rest.replacen(no, expected_no, 1),
        expected,
        "transcript differs"
    );
    assert_eq!(store.scripts.get("mysievescript").unwrap(), good);
    assert!(!store.scripts.contains_key("foo"));
}

/// RFC 5804 2.7 and 2.8: LISTSCRIPTS shows the active script; SETACTIVE of a missing script
/// is NONEXISTENT; an empty name deactivates.
#[test]
fn rfc5804_listscripts_and_setactive() {
    let mut store = FakeStore::default();
    for (n, s) in [
        ("summer_script", "keep;"),
        ("clever\"script", "stop;"),
        ("main_script", "discard;"),
    ] {
        store.scripts.insert(n.into(), s.into());
    }
    let script = b"Listscripts\r\nSetactive \"main_script\"\r\nListscripts\r\nSetactive \"baz\"\r\nSETACTIVE \"\"\r\nLISTSCRIPTS\r\n";
    let t = converse(&[LOGIN, script].concat(), &[], &mut store);
    let expected = format!(
        "{LOGGED_IN}\"clever\\\"script\"\r\n\"main_script\"\r\n\"summer_script\"\r\nOK \"Listscripts completed.\"\r\n\
OK \"Setactive completed.\"\r\n\
\"clever\\\"script\"\r\n\"main_script\" ACTIVE\r\n\"summer_script\"\r\nOK \"Listscripts completed.\"\r\n\
NO (NONEXISTENT) \"There is no script by that name.\"\r\n\
OK \"Setactive completed.\"\r\n\
\"clever\\\"script\"\r\n\"main_script\"\r\n\"summer_script\"\r\nOK \"Listscripts completed.\"\r\n"
    );
    assert_eq!(after_greeting(&t), expected);
    assert_eq!(store.active, None);
}

/// RFC 5804 2.1: a malformed response is a protocol error; failed PLAIN logins are delayed,
/// and the third one ends the session with BYE.
#[test]
fn rfc5804_authenticate_failures() {
    let wrong = "Authenticate \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUudGVzdAB4\"\r\n";
    let script = format!(
        "Authenticate \"PLAIN\" \"QJIrweAPyo6Q1T9xy\"\r\n{}LISTSCRIPTS\r\n",
        wrong.repeat(3)
    );
    let t = converse(script.as_bytes(), &[], &mut FakeStore::default());
    assert_eq!(
        after_greeting(&t),
        "NO \"Invalid authentication response.\"\r\nNO \"Authentication failed.\"\r\nNO \"Authentication failed.\"\r\nNO \"Authentication failed.\"\r\nBYE \"Too many authentication failures.\"\r\n"
    );
}

#[test]
fn authenticate_continuation_quoted_literal_and_cancel() {
    let script = b"AUTHENTICATE \"PLAIN\"\r\n\"*\"\r\nAUTHENTICATE \"PLAIN\"\r\n{32+}\r\nAGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nUNAUTHENTICATE\r\nLISTSCRIPTS\r\nAUTHENTICATE \"plain\"\r\n\"AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\"\r\nCAPABILITY\r\nSTARTTLS\r\n";
    let t = converse(script, &[], &mut FakeStore::default());
    let expected = format!(
        "\"\"\r\nNO \"Authentication aborted by client.\"\r\n\"\"\r\n{LOGGED_IN}OK \"Unauthenticate completed.\"\r\nNO \"Authenticate first.\"\r\n\"\"\r\n{LOGGED_IN}{}OK \"Capability completed.\"\r\nNO \"Already authenticated.\"\r\n",
        caps("PLAIN", false, Some("alice@example.test"))
    );
    assert_eq!(after_greeting(&t), expected);
}

#[test]
fn plaintext_needs_tls_off_loopback() {
    let peer = PeerInfo {
        ip: "192.0.2.7".into(),
        loopback: false,
        tls: None,
        session_id: "S2".into(),
    };
    let mut store = FakeStore::default();
    let script = [
        &b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\"\r\nSTARTTLS\r\nNOOP\r\n"[..],
        LOGIN,
        b"STARTTLS\r\n",
    ]
    .concat();
    let t = converse_with(config(), peer, &script, &[], &mut store);
    // Before TLS no mechanism is offered; the NOOP sent before the handshake is discarded;
    // after it the capabilities are re-issued (RFC 5804 2.2).
    let expected = format!(
        "{}OK \"Petrel ManageSieve ready.\"\r\nNO (ENCRYPT-NEEDED) \"Use STARTTLS before authenticating.\"\r\nOK \"Begin TLS negotiation now.\"\r\n{}OK \"TLS negotiation successful.\"\r\n",
        caps("", true, None),
        caps("PLAIN", false, None),
    );
    assert_eq!(t, expected);
    assert!(store.requests.is_empty());

    // Commands sent after the handshake are read: the login works, a second STARTTLS and a
    // second AUTHENTICATE are refused.
    let peer = PeerInfo {
        ip: "192.0.2.7".into(),
        loopback: false,
        tls: None,
        session_id: "S3".into(),
    };
    let script = [
        &b"STARTTLS\r\n"[..],
        LOGIN,
        b"STARTTLS\r\nAUTHENTICATE \"PLAIN\"\r\nLISTSCRIPTS\r\n",
    ]
    .concat();
    let t = converse_with(config(), peer, &script, &[10], &mut store);
    assert!(
        t.ends_with(&format!(
            "OK \"TLS negotiation successful.\"\r\n{LOGGED_IN}NO \"Already authenticated.\"\r\nNO \"Already authenticated.\"\r\nOK \"Listscripts completed.\"\r\n"
        )),
        "{t}"
    );
    assert_eq!(store.requests, vec![SieveRequest::List]);
}

#[test]
fn scripts_delete_rename_havespace_checkscript_noop() {
    let mut store = FakeStore::default();
    let script = b"PUTSCRIPT \"a\" \"keep;\"\r\nPUTSCRIPT \"b\" {5}\r\nstop;\r\nSETACTIVE \"a\"\r\nDELETESCRIPT \"a\"\r\nDELETESCRIPT \"nope\"\r\nRENAMESCRIPT \"a\" \"b\"\r\nRENAMESCRIPT \"a\" \"c\"\r\nRENAMESCRIPT \"x\" \"y\"\r\nDELETESCRIPT \"b\"\r\nLISTSCRIPTS\r\n\
HAVESPACE \"d\" 100\r\nHAVESPACE \"d\" 99999999\r\nPUTSCRIPT \"d\" \"keep;\"\r\nPUTSCRIPT \"e\" \"keep;\"\r\nHAVESPACE \"f\" 1\r\n\
CHECKSCRIPT \"if true {\"\r\nCHECKSCRIPT {8+}\r\nkeep;\r\n\r\n\r\nNOOP \"STARTTLS-SYNC-42\"\r\nNOOP\r\nGETSCRIPT \"zz\"\r\nLOGOUT\r\nNOOP\r\n";
    let t = converse(&[LOGIN, script].concat(), &[], &mut store);
    let rest = after_greeting(&t);
    let lines: Vec<&str> = rest.split("\r\n").collect();
    let expected = [
        "OK \"Logged in.\"",
        "OK \"Putscript completed.\"",
        "OK \"Putscript completed.\"",
        "OK \"Setactive completed.\"",
        "NO (ACTIVE) \"You may not delete an active script.\"",
        "NO (NONEXISTENT) \"There is no script by that name.\"",
        "NO (ALREADYEXISTS) \"A script by that name already exists.\"",
        "OK \"Renamescript completed.\"",
        "NO (NONEXISTENT) \"There is no script by that name.\"",
        "OK \"Deletescript completed.\"",
        "\"c\" ACTIVE",
        "OK \"Listscripts completed.\"",
        "OK \"Putscript would succeed.\"",
        "NO (QUOTA/MAXSIZE) \"Script too large.\"",
        "OK \"Putscript completed.\"",
        "OK \"Putscript completed.\"",
        "NO (QUOTA/MAXSCRIPTS) \"Too many scripts.\"",
    ];
    assert_eq!(&lines[..expected.len()], &expected[..], "{rest}");
    assert!(
        lines[expected.len()].starts_with("NO \"line 1, column "),
        "{rest}"
    );
    let tail = &lines[expected.len() + 1..];
    assert_eq!(
        tail,
        &[
            "OK \"Script is valid.\"",
            "OK (TAG \"STARTTLS-SYNC-42\") \"Done\"",
            "OK \"Done\"",
            "NO (NONEXISTENT) \"There is no script by that name.\"",
            "OK \"Logout completed.\"",
            "",
        ],
        "{rest}"
    );
    assert_eq!(store.active.as_deref(), Some("c"));
    assert_eq!(store.scripts.get("c").map(String::as_str), Some("keep;"));
}

#[test]
fn bad_input_gets_no_and_many_errors_bye() {
    let mut store = FakeStore::default();
    let long = format!("NOOP \"{}\"\r\n", "x".repeat(20_000));
    let script = [
        &b"LISTSCRIPTS\r\nXYZZY\r\nGETSCRIPT \"open\r\nPUTSCRIPT a b\r\n"[..],
        long.as_bytes(),
        LOGIN,
        b"PUTSCRIPT \"../evil\" \"keep;\"\r\nPUTSCRIPT \".hidden\" \"keep;\"\r\nGETSCRIPT \"a/b\"\r\n",
        b"PUTSCRIPT \"bin\" {2+}\r\n\xff\xfe\r\nHAVESPACE \"x\" -1\r\nLISTSCRIPTS \"extra\"\r\n",
    ]
    .concat();
    let t = converse(&script, &[], &mut store);
    assert_eq!(
        after_greeting(&t),
        "NO \"Authenticate first.\"\r\nNO \"Unknown command.\"\r\nNO \"Unterminated quoted string.\"\r\n\
NO \"Expected a quoted string or a literal.\"\r\nNO \"Line too long.\"\r\n\
OK \"Logged in.\"\r\nNO \"Script name contains a slash.\"\r\nNO \"Script name starts with a dot.\"\r\n\
NO (NONEXISTENT) \"There is no script by that name.\"\r\nNO \"Script is not UTF-8.\"\r\n\
NO \"Invalid number.\"\r\nNO \"Too many arguments.\"\r\n"
    );
    assert!(store.scripts.is_empty());

    let many = b"XYZZY\r\n".repeat(30);
    let t = converse(&many, &[], &mut FakeStore::default());
    assert_eq!(t.matches("NO \"Unknown command.\"").count(), 20, "{t}");
    assert!(
        t.ends_with("BYE \"Too many errors, closing connection.\"\r\n"),
        "{t}"
    );
}

#[test]
fn oversize_literal_is_refused_and_skipped() {
    let mut store = FakeStore::default();
    let big = 70_000;
    let mut script = LOGIN.to_vec();
    script.extend_from_slice(format!("PUTSCRIPT \"big\" {{{big}+}}\r\n").as_bytes());
    // The skipped bytes look like commands: none of them may be executed.
    script.extend(b"LOGOUT\r\n".iter().cycle().take(big));
    script.extend_from_slice(b"\r\nNOOP\r\nPUTSCRIPT \"n\" {4294967296+}\r\nLISTSCRIPTS\r\n");
    let t = converse(&script, &[], &mut store);
    assert_eq!(
        after_greeting(&t),
        "OK \"Logged in.\"\r\nNO (QUOTA/MAXSIZE) \"String too large.\"\r\nOK \"Done\"\r\n"
    );
    assert!(store.scripts.is_empty());

    // The session never holds the refused literal.
    let start = Instant::now();
    let mut s = ManageSieveSession::new(Arc::new(config()), loopback(), start);
    assert_eq!(
        s.handle_input(start, b"NOOP {1000000+}\r\n"),
        "NOOP {1000000+}\r\n".len()
    );
    let chunk = vec![b'x'; 60_000];
    for _ in 0..10 {
        assert_eq!(s.handle_input(start, &chunk), chunk.len());
        assert!(s.buffered_bytes() < 8192, "{}", s.buffered_bytes());
    }
}

#[test]
fn idle_timeout_says_bye() {
    let start = Instant::now();
    let mut s = ManageSieveSession::new(Arc::new(config()), loopback(), start);
    let mut out = Vec::new();
    while s.poll_output(&mut out) {}
    out.clear();
    let deadline = s.poll_timeout().unwrap();
    assert_eq!(deadline, start + Duration::from_secs(600));
    s.handle_timeout(start + Duration::from_secs(10));
    assert!(!s.poll_output(&mut out));
    s.handle_timeout(deadline);
    while s.poll_output(&mut out) {}
    assert_eq!(out, b"BYE \"Disconnected for inactivity.\"\r\n");
    assert!(s.is_closed());
}

const SESSION: &[u8] = b"AUTHENTICATE \"PLAIN\"\r\n{32+}\r\nAGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nPUTSCRIPT \"s\" {22+}\r\nrequire \"fileinto\";\r\n\r\nSETACTIVE \"s\"\r\nPUTSCRIPT \"t\" \"if\"\r\nLISTSCRIPTS\r\nGETSCRIPT \"s\"\r\nNOOP {3}\r\nabc\r\nLOGOUT\r\n";

#[test]
fn every_byte_split_gives_the_same_conversation() {
    let whole = converse(SESSION, &[], &mut FakeStore::default());
    assert!(whole.ends_with("OK \"Logout completed.\"\r\n"), "{whole}");
    assert!(whole.contains("\"s\" ACTIVE\r\n"), "{whole}");
    let every: Vec<usize> = (0..SESSION.len()).collect();
    let split = converse(SESSION, &every, &mut FakeStore::default());
    assert_eq!(whole, split);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, .. ProptestConfig::default() })]
    #[test]
    fn any_split_same_conversation(cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = converse(SESSION, &[], &mut FakeStore::default());
        let split = converse(SESSION, &cuts, &mut FakeStore::default());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let mut input = input;
        input.splice(0..0, LOGIN.iter().copied());
        let t = converse(&input, &[], &mut FakeStore::default());
        prop_assert!(t.contains("OK \"Petrel ManageSieve ready.\"\r\n"));
    }
}
