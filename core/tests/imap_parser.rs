//! The IMAP command parser: RFC examples, literals, APPEND streaming, limits, errors, and
//! split/garbage properties.

use petrel_core::Secret;
use petrel_core::imap::command::{
    AppendStart, Command, CommandKind as K, Date, DateTime, EntryType, FetchItem as F, Flag,
    ListReturn, ListSelect, Mailbox, QResync, SearchKey as S, SearchReturn, Section, SectionText,
    SelectParams, SortCriterion, SortKey, StatusItem, StoreMode, ThreadAlgorithm,
};
use petrel_core::imap::parser::{Limits, Parsed, Parser};
use petrel_core::imap::sequence::SequenceSet;
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    P(Parsed),
    /// APPEND message bytes, merged across calls.
    Data(Vec<u8>),
}

/// Feeds each chunk in turn until consumed; collects the results (Incomplete dropped).
fn drive(parser: &mut Parser, chunks: &[&[u8]]) -> Vec<Out> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            let (n, result) = parser.feed(rest);
            assert!(n <= rest.len());
            let consumed = &rest[..n];
            rest = &rest[n..];
            match result {
                Parsed::Incomplete => assert!(rest.is_empty(), "Incomplete with input left"),
                Parsed::AppendData => match out.last_mut() {
                    Some(Out::Data(d)) => d.extend_from_slice(consumed),
                    _ => out.push(Out::Data(consumed.to_vec())),
                },
                other => {
                    assert!(n > 0, "a result consumed nothing: {other:?}");
                    out.push(Out::P(other));
                }
            }
        }
    }
    out
}

fn all(input: &[u8]) -> Vec<Out> {
    drive(&mut Parser::default(), &[input])
}

/// Parses `A1 <line>\r\n`, which must be exactly one command.
fn cmd(line: &str) -> K {
    let input = format!("A1 {line}\r\n");
    match all(input.as_bytes()).as_slice() {
        [Out::P(Parsed::Command(Command { tag, kind }))] if tag == "A1" => kind.clone(),
        other => panic!("{line}: {other:?}"),
    }
}

fn tagged(input: &str) -> Command {
    match all(input.as_bytes()).as_slice() {
        [Out::P(Parsed::Command(c))] => c.clone(),
        other => panic!("{input}: {other:?}"),
    }
}

fn error(input: &str) -> (Option<String>, String) {
    match all(input.as_bytes()).as_slice() {
        [Out::P(Parsed::Error { tag, text })] => (tag.clone(), text.clone()),
        other => panic!("{input:?} should fail: {other:?}"),
    }
}

fn seq(s: &str) -> SequenceSet {
    SequenceSet::parse(s.as_bytes(), 1000).unwrap()
}

fn other(name: &str) -> Mailbox {
    Mailbox::Other(name.as_bytes().to_vec())
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn date(day: u8, month: u8, year: u16) -> Date {
    Date { year, month, day }
}

fn and(keys: Vec<S>) -> S {
    S::And(keys)
}

// ---------------------------------------------------------------- RFC 9051 section 6

#[test]
fn any_state_and_not_authenticated_commands() {
    assert_eq!(tagged("abcd CAPABILITY\r\n").tag, "abcd");
    assert_eq!(cmd("capability"), K::Capability);
    assert_eq!(cmd("NOOP"), K::Noop);
    assert_eq!(cmd("LOGOUT"), K::Logout);
    assert_eq!(cmd("STARTTLS"), K::StartTls);
    assert_eq!(
        cmd("AUTHENTICATE GSSAPI"),
        K::Authenticate {
            mechanism: "GSSAPI".into(),
            initial: None
        }
    );
    // RFC 4959 SASL-IR.
    assert_eq!(
        cmd("AUTHENTICATE plain dGVzdAB0ZXN0AHRlc3Q="),
        K::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some("dGVzdAB0ZXN0AHRlc3Q=".into())
        }
    );
    assert_eq!(
        cmd("AUTHENTICATE EXTERNAL ="),
        K::Authenticate {
            mechanism: "EXTERNAL".into(),
            initial: Some("=".into())
        }
    );
    assert_eq!(
        cmd("LOGIN SMITH SESAME"),
        K::Login {
            username: b("SMITH"),
            password: Secret::new(b("SESAME"))
        }
    );
    assert_eq!(
        cmd(r#"LOGIN "fred" "a \"quoted\" \\ pass""#),
        K::Login {
            username: b("fred"),
            password: Secret::new(b(r#"a "quoted" \ pass"#))
        }
    );
    // The password never shows in debug output.
    assert!(!format!("{:?}", cmd("LOGIN SMITH SESAME")).contains("SESAME"));
}

#[test]
fn authenticated_state_commands() {
    let plain = SelectParams::default();
    assert_eq!(
        cmd("SELECT INBOX"),
        K::Select {
            mailbox: Mailbox::Inbox,
            params: plain.clone()
        }
    );
    assert_eq!(
        cmd("select \"inBox\""),
        K::Select {
            mailbox: Mailbox::Inbox,
            params: plain.clone()
        }
    );
    assert_eq!(
        cmd("EXAMINE blurdybloop"),
        K::Examine {
            mailbox: other("blurdybloop"),
            params: plain
        }
    );
    assert_eq!(
        cmd("CREATE owatagusiam/"),
        K::Create {
            mailbox: other("owatagusiam/"),
            special_use: vec![]
        }
    );
    // INBOX.child keeps its case: only INBOX itself is case-insensitive.
    assert_eq!(cmd("DELETE inbox/Sub"), K::Delete(other("inbox/Sub")));
    assert_eq!(
        cmd("RENAME blurdybloop sarasoop"),
        K::Rename {
            from: other("blurdybloop"),
            to: other("sarasoop")
        }
    );
    assert_eq!(
        cmd("SUBSCRIBE #news.comp.mail.mime"),
        K::Subscribe(other("#news.comp.mail.mime"))
    );
    assert_eq!(
        cmd("UNSUBSCRIBE #news.comp.mail.mime"),
        K::Unsubscribe(other("#news.comp.mail.mime"))
    );
    assert_eq!(cmd("NAMESPACE"), K::Namespace);
    assert_eq!(
        cmd("STATUS blurdybloop (UIDNEXT MESSAGES)"),
        K::Status {
            mailbox: other("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages]
        }
    );
    assert_eq!(
        cmd("STATUS INBOX (MESSAGES RECENT UIDVALIDITY UNSEEN DELETED SIZE APPENDLIMIT)"),
        K::Status {
            mailbox: Mailbox::Inbox,
            items: vec![
                StatusItem::Messages,
                StatusItem::Recent,
                StatusItem::UidValidity,
                StatusItem::Unseen,
                StatusItem::Deleted,
                StatusItem::Size,
                StatusItem::AppendLimit
            ]
        }
    );
    assert_eq!(
        cmd("LSUB \"#news.\" \"comp.mail.*\""),
        K::Lsub {
            reference: b("#news."),
            pattern: b("comp.mail.*")
        }
    );
    assert_eq!(cmd("IDLE"), K::Idle);
    // Modified UTF-7 stays raw.
    assert_eq!(
        cmd("CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        K::Create {
            mailbox: other("~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            special_use: vec![]
        }
    );
}

fn list(
    select: Vec<ListSelect>,
    reference: &str,
    patterns: &[&str],
    returns: Vec<ListReturn>,
) -> K {
    K::List {
        select,
        reference: b(reference),
        patterns: patterns.iter().map(|p| b(p)).collect(),
        returns,
    }
}

#[test]
fn list_basic_and_extended() {
    use ListReturn as Ret;
    use ListSelect as Sel;
    assert_eq!(cmd(r#"LIST "" """#), list(vec![], "", &[""], vec![]));
    assert_eq!(
        cmd(r#"LIST #news.comp.mail.misc """#),
        list(vec![], "#news.comp.mail.misc", &[""], vec![])
    );
    assert_eq!(
        cmd("LIST ~/Mail/ %"),
        list(vec![], "~/Mail/", &["%"], vec![])
    );
    assert_eq!(cmd(r#"LIST "" *"#), list(vec![], "", &["*"], vec![]));
    // RFC 9051 6.3.9.x / RFC 5258 5 examples.
    assert_eq!(
        cmd(r#"LIST (SUBSCRIBED) "" "*""#),
        list(vec![Sel::Subscribed], "", &["*"], vec![])
    );
    assert_eq!(
        cmd(r#"LIST () "" "%" RETURN (CHILDREN)"#),
        list(vec![], "", &["%"], vec![Ret::Children])
    );
    assert_eq!(
        cmd(r#"LIST (REMOTE) "" "%" RETURN (CHILDREN)"#),
        list(vec![Sel::Remote], "", &["%"], vec![Ret::Children])
    );
    assert_eq!(
        cmd(r#"LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)"#),
        list(
            vec![Sel::Subscribed, Sel::RecursiveMatch],
            "",
            &["%"],
            vec![Ret::Children]
        )
    );
    assert_eq!(
        cmd(r#"LIST (SUBSCRIBED) "" ("Top" "Top/*")"#),
        list(vec![Sel::Subscribed], "", &["Top", "Top/*"], vec![])
    );
    assert_eq!(
        cmd(r#"LIST "" % RETURN (STATUS (MESSAGES UNSEEN))"#),
        list(
            vec![],
            "",
            &["%"],
            vec![Ret::Status(vec![StatusItem::Messages, StatusItem::Unseen])]
        )
    );
    assert_eq!(
        cmd(
            r#"LIST (SUBSCRIBED SPECIAL-USE) "" ("a" "b") RETURN (CHILDREN SUBSCRIBED STATUS (MESSAGES UIDNEXT SIZE))"#
        ),
        list(
            vec![Sel::Subscribed, Sel::SpecialUse],
            "",
            &["a", "b"],
            vec![
                Ret::Children,
                Ret::Subscribed,
                Ret::Status(vec![
                    StatusItem::Messages,
                    StatusItem::UidNext,
                    StatusItem::Size
                ])
            ]
        )
    );
    // RFC 6154 5.
    assert_eq!(
        cmd(r#"LIST "" "*" RETURN (SPECIAL-USE)"#),
        list(vec![], "", &["*"], vec![Ret::SpecialUse])
    );
    assert_eq!(
        cmd(r#"CREATE MySpecial (USE (\Drafts \Sent))"#),
        K::Create {
            mailbox: other("MySpecial"),
            special_use: vec!["\\Drafts".into(), "\\Sent".into()]
        }
    );
    assert_eq!(
        cmd(r#"CREATE "Important Messages" (USE (\Flagged))"#),
        K::Create {
            mailbox: other("Important Messages"),
            special_use: vec!["\\Flagged".into()]
        }
    );
    // RECURSIVEMATCH alone, unknown options: BAD (RFC 5258 3).
    assert_eq!(
        error("A LIST (RECURSIVEMATCH) \"\" %\r\n").0.as_deref(),
        Some("A")
    );
    assert_eq!(error("A LIST (BOGUS) \"\" %\r\n").0.as_deref(), Some("A"));
    assert_eq!(
        error("A LIST \"\" % RETURN (BOGUS)\r\n").0.as_deref(),
        Some("A")
    );
}

#[test]
fn selected_state_simple_commands() {
    assert_eq!(cmd("CLOSE"), K::Close);
    assert_eq!(cmd("UNSELECT"), K::Unselect);
    assert_eq!(cmd("EXPUNGE"), K::Expunge);
    assert_eq!(cmd("CHECK"), K::Check);
    assert_eq!(
        cmd("COPY 2:4 MEETING"),
        K::Copy {
            uid: false,
            set: seq("2:4"),
            mailbox: other("MEETING")
        }
    );
    // RFC 6851 MOVE, RFC 4315 UID EXPUNGE.
    assert_eq!(
        cmd("UID MOVE 42:69 foo"),
        K::Move {
            uid: true,
            set: seq("42:69"),
            mailbox: other("foo")
        }
    );
    assert_eq!(
        cmd("UID EXPUNGE 3000:3002"),
        K::UidExpunge(seq("3000:3002"))
    );
    assert_eq!(
        cmd(r#"COPY $ "Other Messages""#),
        K::Copy {
            uid: false,
            set: SequenceSet::Saved,
            mailbox: other("Other Messages")
        }
    );
}

#[test]
fn search_examples() {
    // RFC 9051 6.4.4.
    assert_eq!(
        cmd(r#"SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith""#),
        K::Search {
            uid: false,
            returns: None,
            charset: None,
            criteria: and(vec![
                S::Flagged,
                S::Since(date(1, 2, 1994)),
                S::Not(Box::new(S::From(b("Smith"))))
            ])
        }
    );
    assert_eq!(
        cmd(r#"SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith""#),
        K::Search {
            uid: false,
            returns: Some(vec![SearchReturn::Min, SearchReturn::Count]),
            charset: None,
            criteria: and(vec![
                S::Flagged,
                S::Since(date(1, 2, 1994)),
                S::Not(Box::new(S::From(b("Smith"))))
            ])
        }
    );
    match cmd(r#"SEARCH RETURN () FLAGGED"#) {
        K::Search { returns, .. } => assert_eq!(returns, Some(vec![])),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cmd(r#"SEARCH TEXT "string not in mailbox""#),
        K::Search {
            uid: false,
            returns: None,
            charset: None,
            criteria: and(vec![S::Text(b("string not in mailbox"))])
        }
    );
    // A literal search string in UTF-8 (non-synchronizing, so one pass).
    let input = "A285 SEARCH CHARSET UTF-8 TEXT {12+}\r\nотпуск\r\n";
    match all(input.as_bytes()).as_slice() {
        [Out::P(Parsed::Command(c))] => assert_eq!(
            c.kind,
            K::Search {
                uid: false,
                returns: None,
                charset: Some("UTF-8".into()),
                criteria: and(vec![S::Text(b("отпуск"))])
            }
        ),
        other => panic!("{other:?}"),
    }
    // RFC 9051 6.4.4.4 (SEARCHRES).
    assert_eq!(
        cmd("SEARCH RETURN (SAVE) SINCE 19-Mar-2007 NOT SEEN"),
        K::Search {
            uid: false,
            returns: Some(vec![SearchReturn::Save]),
            charset: None,
            criteria: and(vec![S::Since(date(19, 3, 2007)), S::Not(Box::new(S::Seen))])
        }
    );
    assert_eq!(
        cmd("UID SEARCH UID $ SMALLER 4096"),
        K::Search {
            uid: true,
            returns: None,
            charset: None,
            criteria: and(vec![S::Uid(SequenceSet::Saved), S::Smaller(4096)])
        }
    );
    assert_eq!(
        cmd("UID SEARCH 1:100 UID 443:557"),
        K::Search {
            uid: true,
            returns: None,
            charset: None,
            criteria: and(vec![S::SequenceSet(seq("1:100")), S::Uid(seq("443:557"))])
        }
    );
    assert_eq!(
        cmd("SEARCH RETURN (MIN MAX ALL COUNT SAVE) ALL"),
        K::Search {
            uid: false,
            returns: Some(vec![
                SearchReturn::Min,
                SearchReturn::Max,
                SearchReturn::All,
                SearchReturn::Count,
                SearchReturn::Save
            ]),
            charset: None,
            criteria: and(vec![S::All])
        }
    );
}

#[test]
fn every_search_key() {
    let keys = concat!(
        "ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT ",
        "UNFLAGGED UNSEEN KEYWORD $Forwarded UNKEYWORD NonJunk BCC b BODY \"x y\" CC c FROM f ",
        "SUBJECT s TEXT t TO o HEADER Message-ID \"<a@b>\" BEFORE 1-Jan-2000 ON \"29-Feb-2024\" ",
        "SINCE 31-dec-1999 SENTBEFORE 2-Mar-2001 SENTON 3-Apr-2002 SENTSINCE 4-May-2003 ",
        "LARGER 5000000000 SMALLER 10 UID 1:* 2,4:5 * $ (SEEN (DRAFT)) OR SEEN (NOT DELETED) ",
        "NOT NOT OR NEW OLD"
    );
    let expected = vec![
        S::All,
        S::Answered,
        S::Deleted,
        S::Draft,
        S::Flagged,
        S::New,
        S::Old,
        S::Recent,
        S::Seen,
        S::Unanswered,
        S::Undeleted,
        S::Undraft,
        S::Unflagged,
        S::Unseen,
        S::Keyword("$Forwarded".into()),
        S::Unkeyword("NonJunk".into()),
        S::Bcc(b("b")),
        S::Body(b("x y")),
        S::Cc(b("c")),
        S::From(b("f")),
        S::Subject(b("s")),
        S::Text(b("t")),
        S::To(b("o")),
        S::Header("Message-ID".into(), b("<a@b>")),
        S::Before(date(1, 1, 2000)),
        S::On(date(29, 2, 2024)),
        S::Since(date(31, 12, 1999)),
        S::SentBefore(date(2, 3, 2001)),
        S::SentOn(date(3, 4, 2002)),
        S::SentSince(date(4, 5, 2003)),
        S::Larger(5_000_000_000),
        S::Smaller(10),
        S::Uid(seq("1:*")),
        S::SequenceSet(seq("2,4:5")),
        S::SequenceSet(seq("*")),
        S::SequenceSet(SequenceSet::Saved),
        and(vec![S::Seen, and(vec![S::Draft])]),
        S::Or(
            Box::new(S::Seen),
            Box::new(and(vec![S::Not(Box::new(S::Deleted))])),
        ),
        S::Not(Box::new(S::Not(Box::new(S::Or(
            Box::new(S::New),
            Box::new(S::Old),
        ))))),
    ];
    match cmd(&format!("SEARCH {keys}")) {
        K::Search { criteria, .. } => assert_eq!(criteria, and(expected)),
        other => panic!("{other:?}"),
    }
    // Impossible dates are refused.
    for bad in [
        "30-Feb-2024",
        "29-Feb-2023",
        "0-Jan-2000",
        "1-Foo-2000",
        "1-Jan-99",
    ] {
        let (tag, _) = error(&format!("A SEARCH SINCE {bad}\r\n"));
        assert_eq!(tag.as_deref(), Some("A"), "{bad}");
    }
}

fn fetch(set: &str, items: Vec<F>) -> K {
    K::Fetch {
        uid: false,
        set: seq(set),
        items,
        changed_since: None,
        vanished: false,
    }
}

fn body(peek: bool, part: Vec<u32>, text: Option<SectionText>, partial: Option<(u32, u32)>) -> F {
    F::BodySection {
        peek,
        section: Section { part, text },
        partial,
    }
}

#[test]
fn fetch_examples() {
    // RFC 9051 6.4.5.
    assert_eq!(
        cmd("FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])"),
        fetch(
            "2:4",
            vec![
                F::Flags,
                body(
                    false,
                    vec![],
                    Some(SectionText::HeaderFields(vec![
                        "DATE".into(),
                        "FROM".into()
                    ])),
                    None
                )
            ]
        )
    );
    assert_eq!(
        cmd("FETCH 12 FULL"),
        fetch(
            "12",
            vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body
            ]
        )
    );
    assert_eq!(
        cmd("FETCH 1:* ALL"),
        fetch(
            "1:*",
            vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope]
        )
    );
    assert_eq!(
        cmd("fetch 1 fast"),
        fetch("1", vec![F::Flags, F::InternalDate, F::Rfc822Size])
    );
    assert_eq!(
        cmd("FETCH 3 BODY[]"),
        fetch("3", vec![body(false, vec![], None, None)])
    );
    assert_eq!(
        cmd(
            "FETCH 1 (UID INTERNALDATE RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT ENVELOPE BODY BODYSTRUCTURE MODSEQ)"
        ),
        fetch(
            "1",
            vec![
                F::Uid,
                F::InternalDate,
                F::Rfc822Size,
                F::Rfc822,
                F::Rfc822Header,
                F::Rfc822Text,
                F::Envelope,
                F::Body,
                F::BodyStructure,
                F::ModSeq
            ]
        )
    );
    assert_eq!(
        cmd(
            "FETCH 4 (BODY.PEEK[1.2.3.HEADER] BODY[1.2.MIME] BODY[4.TEXT]<0.2048> BODY[2] BODY.PEEK[TEXT]<10.1> BODY[HEADER.FIELDS.NOT (Received \"X-Spam\")])"
        ),
        fetch(
            "4",
            vec![
                body(true, vec![1, 2, 3], Some(SectionText::Header), None),
                body(false, vec![1, 2], Some(SectionText::Mime), None),
                body(false, vec![4], Some(SectionText::Text), Some((0, 2048))),
                body(false, vec![2], None, None),
                body(true, vec![], Some(SectionText::Text), Some((10, 1))),
                body(
                    false,
                    vec![],
                    Some(SectionText::HeaderFieldsNot(vec![
                        "Received".into(),
                        "X-Spam".into()
                    ])),
                    None
                ),
            ]
        )
    );
    // RFC 3516 BINARY.
    assert_eq!(
        cmd("FETCH 1 (BINARY.PEEK[1]<0.100> BINARY[] BINARY.SIZE[1.2])"),
        fetch(
            "1",
            vec![
                F::Binary {
                    peek: true,
                    part: vec![1],
                    partial: Some((0, 100))
                },
                F::Binary {
                    peek: false,
                    part: vec![],
                    partial: None
                },
                F::BinarySize { part: vec![1, 2] }
            ]
        )
    );
    assert_eq!(
        cmd("UID FETCH 4827313:4828442 FLAGS"),
        K::Fetch {
            uid: true,
            set: seq("4827313:4828442"),
            items: vec![F::Flags],
            changed_since: None,
            vanished: false
        }
    );
    // MIME needs a part; sections must close.
    for bad in [
        "FETCH 1 BODY[MIME]",
        "FETCH 1 BODY[1.0]",
        "FETCH 1 BODY[1",
        "FETCH 1 BODY[]<5>",
        "FETCH 1 BODY[]<0.0>",
        "FETCH 1 BODY.PEEK",
        "FETCH 1 (FLAGS",
        "FETCH 1 FLAGS)",
        "FETCH 1 ()",
        "FETCH 1 NOTANITEM",
    ] {
        assert_eq!(
            error(&format!("A1 {bad}\r\n")).0.as_deref(),
            Some("A1"),
            "{bad}"
        );
    }
}

#[test]
fn store_examples() {
    assert_eq!(
        cmd(r"STORE 2:4 +FLAGS (\Deleted)"),
        K::Store {
            uid: false,
            set: seq("2:4"),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(
        cmd(r"STORE 1 -FLAGS.SILENT \Seen \Answered $Junk \Recent"),
        K::Store {
            uid: false,
            set: seq("1"),
            unchanged_since: None,
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![
                Flag::Seen,
                Flag::Answered,
                Flag::Keyword("$Junk".into()),
                Flag::Extension("Recent".into())
            ]
        }
    );
    assert_eq!(
        cmd("UID STORE 1:* FLAGS ()"),
        K::Store {
            uid: true,
            set: seq("1:*"),
            unchanged_since: None,
            mode: StoreMode::Replace,
            silent: false,
            flags: vec![]
        }
    );
    assert!(matches!(
        error("A STORE 1 FLAGS\r\n"),
        (Some(t), _) if t == "A"
    ));
    assert!(matches!(error("A STORE 1 +FLAGX (\\Seen)\r\n"), (Some(t), _) if t == "A"));
}

#[test]
fn condstore_qresync_examples() {
    // RFC 7162 3.1.3, 3.1.4, 3.1.5, 3.2.5, 3.2.6.
    assert_eq!(
        cmd(r"UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\Deleted)"),
        K::Store {
            uid: true,
            set: seq("6,4,8"),
            unchanged_since: Some(12121230045),
            mode: StoreMode::Add,
            silent: true,
            flags: vec![Flag::Deleted]
        }
    );
    assert_eq!(
        cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
        K::Fetch {
            uid: true,
            set: seq("1:*"),
            items: vec![F::Flags],
            changed_since: Some(12345),
            vanished: false
        }
    );
    assert_eq!(
        cmd("UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"),
        K::Fetch {
            uid: true,
            set: seq("300:500"),
            items: vec![F::Flags],
            changed_since: Some(12345),
            vanished: true
        }
    );
    assert_eq!(
        error("A FETCH 1 FLAGS (VANISHED)\r\n").0.as_deref(),
        Some("A")
    );
    assert_eq!(
        cmd(r#"SEARCH MODSEQ "/flags/\\draft" all 620162338"#),
        K::Search {
            uid: false,
            returns: None,
            charset: None,
            criteria: and(vec![S::ModSeq {
                entry: Some((b("/flags/\\draft"), EntryType::All)),
                mod_seq: 620162338
            }])
        }
    );
    assert_eq!(
        cmd("SEARCH OR NOT MODSEQ 720162338 LARGER 50000"),
        K::Search {
            uid: false,
            returns: None,
            charset: None,
            criteria: and(vec![S::Or(
                Box::new(S::Not(Box::new(S::ModSeq {
                    entry: None,
                    mod_seq: 720162338
                }))),
                Box::new(S::Larger(50000))
            )])
        }
    );
    assert_eq!(
        cmd("SELECT INBOX (CONDSTORE)"),
        K::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams {
                condstore: true,
                qresync: None
            }
        }
    );
    let qresync = |known: Option<&str>, matching: Option<(&str, &str)>| SelectParams {
        condstore: false,
        qresync: Some(QResync {
            uid_validity: 67890007,
            mod_seq: 90060115194045000,
            known_uids: known.map(seq),
            seq_match: matching.map(|(a, b)| (seq(a), seq(b))),
        }),
    };
    assert_eq!(
        cmd("SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))"),
        K::Select {
            mailbox: Mailbox::Inbox,
            params: qresync(Some("41:211,214:541"), None)
        }
    );
    assert_eq!(
        cmd("EXAMINE INBOX (QRESYNC (67890007 90060115194045000))"),
        K::Examine {
            mailbox: Mailbox::Inbox,
            params: qresync(None, None)
        }
    );
    assert_eq!(
        cmd(
            "SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))"
        ),
        K::Select {
            mailbox: Mailbox::Inbox,
            params: qresync(
                Some("1:29997"),
                Some((
                    "5000,7500,9000,9990:9999",
                    "15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"
                ))
            )
        }
    );
    assert_eq!(
        cmd("STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)"),
        K::Status {
            mailbox: other("blurdybloop"),
            items: vec![
                StatusItem::UidNext,
                StatusItem::Messages,
                StatusItem::HighestModSeq
            ]
        }
    );
    assert_eq!(
        cmd("ENABLE CONDSTORE qresync"),
        K::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()])
    );
    // RFC 5161 3.
    assert_eq!(
        cmd("ENABLE CONDSTORE X-GOOD-IDEA UTF8=ACCEPT"),
        K::Enable(vec![
            "CONDSTORE".into(),
            "X-GOOD-IDEA".into(),
            "UTF8=ACCEPT".into()
        ])
    );
    assert_eq!(error("A SELECT INBOX (FOO)\r\n").0.as_deref(), Some("A"));
    assert_eq!(error("A ENABLE\r\n").0.as_deref(), Some("A"));
}

#[test]
fn sort_and_thread_examples() {
    // RFC 5256 4.
    let sort = |uid, criteria: Vec<(bool, SortKey)>, charset: &str, search: Vec<S>| K::Sort {
        uid,
        criteria: criteria
            .into_iter()
            .map(|(reverse, key)| SortCriterion { reverse, key })
            .collect(),
        charset: charset.into(),
        search: and(search),
    };
    assert_eq!(
        cmd("SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994"),
        sort(
            false,
            vec![(false, SortKey::Subject)],
            "UTF-8",
            vec![S::Since(date(1, 2, 1994))]
        )
    );
    assert_eq!(
        cmd("SORT (SUBJECT REVERSE DATE) UTF-8 ALL"),
        sort(
            false,
            vec![(false, SortKey::Subject), (true, SortKey::Date)],
            "UTF-8",
            vec![S::All]
        )
    );
    assert_eq!(
        cmd(
            r#"UID SORT (ARRIVAL CC FROM SIZE TO REVERSE DISPLAYFROM DISPLAYTO) US-ASCII TEXT "not in mailbox""#
        ),
        sort(
            true,
            vec![
                (false, SortKey::Arrival),
                (false, SortKey::Cc),
                (false, SortKey::From),
                (false, SortKey::Size),
                (false, SortKey::To),
                (true, SortKey::DisplayFrom),
                (false, SortKey::DisplayTo)
            ],
            "US-ASCII",
            vec![S::Text(b("not in mailbox"))]
        )
    );
    assert_eq!(
        cmd("THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000"),
        K::Thread {
            uid: false,
            algorithm: ThreadAlgorithm::OrderedSubject,
            charset: "UTF-8".into(),
            search: and(vec![S::Since(date(5, 3, 2000))])
        }
    );
    assert_eq!(
        cmd(r#"UID THREAD REFERENCES US-ASCII TEXT "gewp""#),
        K::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            charset: "US-ASCII".into(),
            search: and(vec![S::Text(b("gewp"))])
        }
    );
    assert_eq!(error("A SORT () UTF-8 ALL\r\n").0.as_deref(), Some("A"));
    assert_eq!(error("A SORT (SUBJECT) UTF-8\r\n").0.as_deref(), Some("A"));
    assert_eq!(error("A THREAD FOO UTF-8 ALL\r\n").0.as_deref(), Some("A"));
}

#[test]
fn id_examples() {
    // RFC 2971 3.
    assert_eq!(
        cmd(r#"ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")"#),
        K::Id(Some(vec![
            (b("name"), Some(b("sodr"))),
            (b("version"), Some(b("19.34"))),
            (b("vendor"), Some(b("Pink Floyd Music Limited"))),
        ]))
    );
    assert_eq!(cmd("ID NIL"), K::Id(None));
    assert_eq!(cmd(r#"ID ("os" NIL)"#), K::Id(Some(vec![(b("os"), None)])));
    assert_eq!(error("A ID (\"name\")\r\n").0.as_deref(), Some("A"));
}

// ---------------------------------------------------------------- literals

#[test]
fn synchronizing_literal_waits_for_continuation() {
    let mut p = Parser::default();
    let (n, r) = p.feed(b"a001 LOGIN {11}\r\n");
    assert_eq!((n, r), (17, Parsed::NeedContinuation));
    // The session sends "+ Ready"; the client sends the literal and the rest.
    let rest = b"FRED FOOBAR {7}\r\nfat man\r\nNEXT NOOP\r\n";
    let out = drive(&mut p, &[rest]);
    assert_eq!(
        out,
        vec![
            Out::P(Parsed::NeedContinuation),
            Out::P(Parsed::Command(Command {
                tag: "a001".into(),
                kind: K::Login {
                    username: b("FRED FOOBAR"),
                    password: Secret::new(b("fat man"))
                }
            })),
            Out::P(Parsed::Command(Command {
                tag: "NEXT".into(),
                kind: K::Noop
            })),
        ]
    );
}

#[test]
fn non_synchronizing_literal_does_not_wait() {
    // RFC 7888 4 example.
    let out = all(b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n");
    assert_eq!(
        out,
        vec![Out::P(Parsed::Command(Command {
            tag: "A001".into(),
            kind: K::Login {
                username: b("FRED FOOBAR"),
                password: Secret::new(b("fat man"))
            }
        }))]
    );
    // A literal mailbox name, and an empty one.
    assert_eq!(
        tagged("X SELECT {5+}\r\ninbox\r\n").kind,
        K::Select {
            mailbox: Mailbox::Inbox,
            params: SelectParams::default()
        }
    );
    assert_eq!(
        tagged("X RENAME {0+}\r\n {3+}\r\na\"b\r\n").kind,
        K::Rename {
            from: other(""),
            to: other("a\"b")
        }
    );
    // Something that only looks like an announcement inside a quoted string is not one.
    assert_eq!(
        tagged("X LOGIN a \"{5}\"\r\n").kind,
        K::Login {
            username: b("a"),
            password: Secret::new(b("{5}"))
        }
    );
}

fn noop(tag: &str) -> Out {
    Out::P(Parsed::Command(Command {
        tag: tag.into(),
        kind: K::Noop,
    }))
}

#[test]
fn oversize_literals_are_refused_and_the_stream_resynchronizes() {
    let limits = Limits {
        max_literal: 100,
        ..Limits::default()
    };
    // Synchronizing: BAD instead of "+", and the client sends nothing more for it.
    let out = drive(&mut Parser::new(limits), &[b"A LOGIN {101}\r\nB NOOP\r\n"]);
    assert!(matches!(&out[0], Out::P(Parsed::Error { tag: Some(t), .. }) if t == "A"));
    assert_eq!(out[1..], [noop("B")]);
    // Non-synchronizing: the client sends it anyway; it is skipped with the rest of its command,
    // even when that holds another literal, and a literal that looks like a command is not one.
    let mut input = b"A LOGIN {150+}\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 140]);
    input.extend_from_slice(b"\r\nC NOOP\r\n {10+}\r\nD NOOP\r\nxx\r\nB NOOP\r\n");
    let out = drive(&mut Parser::new(limits), &[&input]);
    assert!(matches!(&out[0], Out::P(Parsed::Error { tag: Some(t), .. }) if t == "A"));
    assert_eq!(out[1..], [noop("B")]);
    // One byte at a time, the same.
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(&mut Parser::new(limits), &chunks), out);
}

#[test]
fn overlong_lines_are_refused_and_the_stream_resynchronizes() {
    let limits = Limits {
        max_line: 1000,
        ..Limits::default()
    };
    let mut input = b"T1 SEARCH TEXT ".to_vec();
    input.extend_from_slice(&[b'a'; 5000]);
    input.extend_from_slice(b" {5+}\r\n12345\r\nB NOOP\r\n");
    for chunk in [1, 7, 999, 1000, 1001, input.len()] {
        let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
        let out = drive(&mut Parser::new(limits), &chunks);
        assert_eq!(out.len(), 2, "{chunk}: {out:?}");
        assert!(
            matches!(&out[0], Out::P(Parsed::Error { tag: Some(t), text }) if t == "T1" && text.contains("too long")),
            "{chunk}: {out:?}"
        );
        assert_eq!(out[1], noop("B"));
    }
    // A line exactly at the limit is fine.
    let mut p = Parser::new(limits);
    let mut exact = b"T2 SEARCH TEXT ".to_vec();
    exact.resize(998, b'a');
    exact.extend_from_slice(b"\r\n");
    assert!(matches!(
        drive(&mut p, &[&exact])[..],
        [Out::P(Parsed::Command(_))]
    ));
}

// ---------------------------------------------------------------- APPEND

#[test]
fn append_streams_the_message_and_then_parses_the_next_command() {
    let message = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    let mut p = Parser::default();
    let head = format!(
        "A003 APPEND saved-messages (\\Seen) \"05-Jan-2020 09:03:07 +0130\" {{{}}}\r\n",
        message.len()
    );
    let (n, r) = p.feed(head.as_bytes());
    assert_eq!(n, head.len());
    assert_eq!(
        r,
        Parsed::AppendStart(AppendStart {
            tag: "A003".into(),
            mailbox: other("saved-messages"),
            flags: vec![Flag::Seen],
            date: Some(DateTime {
                date: date(5, 1, 2020),
                hour: 9,
                minute: 3,
                second: 7,
                zone_minutes: 90
            }),
            size: message.len() as u64,
            binary: false,
            synchronizing: true,
            index: 0
        })
    );
    assert_eq!(p.append_remaining(), message.len() as u64);
    // The session sends "+"; the message streams through in pieces without being held.
    let mut rest = message.to_vec();
    rest.extend_from_slice(b"\r\nA004 NOOP\r\n");
    let (n, r) = p.feed(&rest[..10]);
    assert_eq!((n, r), (10, Parsed::AppendData));
    let (n, r) = p.feed(&rest[10..]);
    assert_eq!((n, r), (message.len() - 10, Parsed::AppendData));
    let out = drive(&mut p, &[&rest[message.len()..]]);
    assert_eq!(
        out,
        vec![
            Out::P(Parsed::AppendEnd { tag: "A003".into() }),
            noop("A004")
        ]
    );
}

#[test]
fn append_forms_binary_literal_plus_multiappend_and_literal_mailbox() {
    // RFC 3516 literal8, LITERAL+, a literal mailbox name, MULTIAPPEND (RFC 3502).
    let input =
        b"B1 APPEND {4+}\r\nDraf ~{3+}\r\na\0b (\\Draft $MDNSent) {2+}\r\nhi\r\nB2 NOOP\r\n";
    let out = all(input);
    let start = |flags, size, binary, index| {
        Out::P(Parsed::AppendStart(AppendStart {
            tag: "B1".into(),
            mailbox: other("Draf"),
            flags,
            date: None,
            size,
            binary,
            synchronizing: false,
            index,
        }))
    };
    assert_eq!(
        out,
        vec![
            start(vec![], 3, true, 0),
            Out::Data(b"a\0b".to_vec()),
            start(
                vec![Flag::Draft, Flag::Keyword("$MDNSent".into())],
                2,
                false,
                1
            ),
            Out::Data(b"hi".to_vec()),
            Out::P(Parsed::AppendEnd { tag: "B1".into() }),
            noop("B2"),
        ]
    );
    // Byte by byte, the same.
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(&mut Parser::default(), &chunks), out);
    // An empty message.
    assert_eq!(
        all(b"C APPEND INBOX {0+}\r\n\r\n"),
        vec![
            Out::P(Parsed::AppendStart(AppendStart {
                tag: "C".into(),
                mailbox: Mailbox::Inbox,
                flags: vec![],
                date: None,
                size: 0,
                binary: false,
                synchronizing: false,
                index: 0
            })),
            Out::P(Parsed::AppendEnd { tag: "C".into() })
        ]
    );
    // Garbage after the message is an error for the APPEND's tag; the stream goes on.
    let out = all(b"D APPEND INBOX {1+}\r\nx junk\r\nE NOOP\r\n");
    assert!(matches!(&out[2], Out::P(Parsed::Error { tag: Some(t), .. }) if t == "D"));
    assert_eq!(out[3], noop("E"));
}

#[test]
fn append_refused_or_aborted() {
    // Refused before "+": the client sends nothing, the next command follows at once.
    let mut p = Parser::default();
    let (_, r) = p.feed(b"A APPEND INBOX {99999999999}\r\n");
    assert!(matches!(
        r,
        Parsed::AppendStart(AppendStart {
            synchronizing: true,
            size: 99999999999,
            ..
        })
    ));
    p.refuse_literal();
    assert_eq!(drive(&mut p, &[b"B NOOP\r\n"]), vec![noop("B")]);
    // Non-synchronizing and too big: the session aborts; data and command rest are dropped.
    let mut p = Parser::default();
    let (_, r) = p.feed(b"A APPEND INBOX {10+}\r\n");
    assert!(matches!(
        r,
        Parsed::AppendStart(AppendStart {
            synchronizing: false,
            ..
        })
    ));
    p.abort_append();
    assert_eq!(
        drive(&mut p, &[b"0123456789 {3+}\r\nabc\r\nB NOOP\r\n"]),
        vec![noop("B")]
    );
    // Aborted midway through the data.
    let mut p = Parser::default();
    let (_, r) = p.feed(b"A APPEND INBOX {10+}\r\n01234");
    assert!(matches!(r, Parsed::AppendStart(_)));
    assert_eq!(p.feed(b"01234"), (5, Parsed::AppendData));
    p.abort_append();
    assert_eq!(drive(&mut p, &[b"56789\r\nB NOOP\r\n"]), vec![noop("B")]);
    // APPEND without a literal message is BAD.
    assert_eq!(
        error("A APPEND INBOX \"hello\"\r\n").0.as_deref(),
        Some("A")
    );
}

#[test]
fn raw_lines_for_sasl_and_idle() {
    let mut p = Parser::default();
    let (_, r) = p.feed(b"A IDLE\r\n");
    assert!(matches!(r, Parsed::Command(Command { kind: K::Idle, .. })));
    p.expect_line();
    // Not a command: a tagless "DONE", even one that looks like a literal.
    assert_eq!(p.feed(b"DONE\r\n"), (6, Parsed::Line(b("DONE"))));
    assert_eq!(drive(&mut p, &[b"B NOOP\r\n"]), vec![noop("B")]);
    p.expect_line();
    assert_eq!(p.feed(b"dGVzdA== {5}\n").1, Parsed::Line(b("dGVzdA== {5}")));
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_gives_errors_with_the_tag_when_readable() {
    let cases = [
        ("A1 XYZZY\r\n", Some("A1")),
        ("A1 SELECT\r\n", Some("A1")),
        ("A1 SELECT \r\n", Some("A1")),
        ("A1 LOGIN fred\r\n", Some("A1")),
        ("A1 RENAME a\r\n", Some("A1")),
        ("A1 NOOP extra\r\n", Some("A1")),
        ("A1 FETCH 0 FLAGS\r\n", Some("A1")),
        ("A1 FETCH 1:: FLAGS\r\n", Some("A1")),
        ("A1 FETCH 1,,2 FLAGS\r\n", Some("A1")),
        ("A1 FETCH 4294967296 FLAGS\r\n", Some("A1")),
        ("A1 FETCH x FLAGS\r\n", Some("A1")),
        ("A1 COPY $,1 INBOX\r\n", Some("A1")),
        ("A1 SEARCH (SEEN\r\n", Some("A1")),
        ("A1 SEARCH SEEN)\r\n", Some("A1")),
        ("A1 SEARCH ()\r\n", Some("A1")),
        ("A1 SEARCH\r\n", Some("A1")),
        ("A1 SEARCH OR SEEN\r\n", Some("A1")),
        ("A1 SEARCH FOO\r\n", Some("A1")),
        ("A1 SEARCH LARGER 9223372036854775808\r\n", Some("A1")),
        ("A1 STATUS INBOX ()\r\n", Some("A1")),
        ("A1 STATUS INBOX (MESSAGES\r\n", Some("A1")),
        ("A1 STATUS INBOX (BOGUS)\r\n", Some("A1")),
        ("A1 STORE 1 +FLAGS (\\Seen\r\n", Some("A1")),
        ("A1 UID\r\n", Some("A1")),
        ("A1 UID NOOP\r\n", Some("A1")),
        ("A1 UID EXPUNGE\r\n", Some("A1")),
        ("A1 LOGIN \"unterminated\r\n", Some("A1")),
        ("A1 LOGIN \"bad\\escape\" x\r\n", Some("A1")),
        ("A1 AUTHENTICATE PLAIN not*base64\r\n", Some("A1")),
        ("A1 LOGIN {3+}\r\na\0b x\r\n", Some("A1")),
        ("A1 SEARCH TEXT ~{1+}\r\nx\r\n", Some("A1")),
        ("A1  NOOP\r\n", Some("A1")),
        ("+ NOOP\r\n", None),
        ("* NOOP\r\n", None),
        ("(A1) NOOP\r\n", None),
        ("\0\r\n", None),
        ("A1\r\n", Some("A1")),
    ];
    for (input, tag) in cases {
        let (got, text) = error(input);
        assert_eq!(got.as_deref(), tag, "{input:?}: {text}");
        assert!(!text.is_empty());
    }
    // Empty lines are ignored rather than answered.
    assert_eq!(all(b"\r\n\r\nB NOOP\r\n"), vec![noop("B")]);
}

#[test]
fn nesting_and_item_counts_are_bounded() {
    let deep = format!("A SEARCH {}SEEN{}\r\n", "(".repeat(40), ")".repeat(40));
    assert!(error(&deep).1.contains("deeply"));
    let nots = format!("A SEARCH {}SEEN\r\n", "NOT ".repeat(40));
    assert!(error(&nots).1.contains("deeply"));
    // Within the limit, deep nesting works.
    let ok = format!("A SEARCH {}SEEN{}\r\n", "(".repeat(20), ")".repeat(20));
    assert!(matches!(tagged(&ok).kind, K::Search { .. }));
    let limits = Limits {
        max_items: 10,
        ..Limits::default()
    };
    let flags = format!("A STORE 1 FLAGS ({})\r\n", ["\\Seen"; 11].join(" "));
    let out = drive(&mut Parser::new(limits), &[flags.as_bytes()]);
    assert!(matches!(&out[..], [Out::P(Parsed::Error { text, .. })] if text.contains("Too many")));
    let set = format!("A FETCH {} FLAGS\r\n", ["1"; 11].join(","));
    let out = drive(&mut Parser::new(limits), &[set.as_bytes()]);
    assert!(matches!(&out[..], [Out::P(Parsed::Error { .. })]));
}

// ---------------------------------------------------------------- properties

/// Commands for pipelines: (bytes, number of results one-shot parsing gives).
const PIPELINE: &[&str] = &[
    "a NOOP\r\n",
    "b1 UID FETCH 1:*,5 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.512>) (CHANGEDSINCE 7)\r\n",
    "c SEARCH RETURN (MIN) CHARSET UTF-8 OR (SEEN FROM {3+}\r\nbob) NOT SINCE 1-Feb-1994\r\n",
    "d LOGIN {4}\r\nfred {6}\r\nsecret\r\n",
    "e APPEND INBOX (\\Seen) {12+}\r\n0123456789\r\n\r\n",
    "f APPEND Sent ~{5}\r\nab\0cd {3+}\r\nxyz\r\n",
    "g XYZZY (unbalanced\r\n",
    "h LOGIN {99999999}\r\n",
    "i STORE 1 +FLAGS.SILENT (\\Deleted)\r\n",
    "j LIST (SUBSCRIBED) \"\" (\"a\" {1+}\r\nb) RETURN (STATUS (MESSAGES))\r\n",
    "\r\n",
    "k SELECT INBOX (QRESYNC (1 2 1:5 (1,3 4,7)))\r\n",
];

fn all_commands(pipeline: &[u8]) -> Vec<Out> {
    all(pipeline)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_of_a_pipeline_gives_the_same_results(
        picks in prop::collection::vec(0..PIPELINE.len(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut input = Vec::new();
        for &i in &picks {
            input.extend_from_slice(PIPELINE[i].as_bytes());
        }
        let whole = all_commands(&input);
        let commands = whole.iter().filter(|o| matches!(o, Out::P(Parsed::Command(_)))).count();
        let expected = picks
            .iter()
            .filter(|&&i| !PIPELINE[i].contains("APPEND") && !PIPELINE[i].starts_with(['g', 'h', '\r']))
            .count();
        prop_assert_eq!(commands, expected);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&input[last..p]);
            last = p;
        }
        chunks.push(&input[last..]);
        let split = drive(&mut Parser::default(), &chunks);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_progress(
        bytes in prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(b"AB1 {}+~()[]<>.:,*$\"\\\r\n0529NOTSEARCHFETCHAPPENDLOGIN".to_vec()),
                1 => any::<u8>(),
            ],
            0..600,
        ),
        chunk in 1usize..40,
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_line: 40, max_literal: 8, max_command: 64, max_items: 4, max_depth: 3 }
        } else {
            Limits::default()
        };
        let mut p = Parser::new(limits);
        let mut results = 0;
        for piece in bytes.chunks(chunk) {
            let mut rest = piece;
            let mut idle = 0;
            while !rest.is_empty() {
                let (n, r) = p.feed(rest);
                prop_assert!(n <= rest.len());
                if matches!(r, Parsed::Incomplete) {
                    prop_assert_eq!(n, rest.len());
                }
                if n == 0 {
                    idle += 1;
                    prop_assert!(idle < 2, "no progress: {:?}", r);
                } else {
                    idle = 0;
                }
                rest = &rest[n..];
                results += 1;
            }
        }
        prop_assert!(results <= bytes.len());
    }
}

#[test]
fn a_command_of_thousands_of_literals() {
    // Each literal must not make the parser re-read the whole command (quadratic time).
    let mut input = b"A SEARCH".to_vec();
    for _ in 0..5000 {
        input.extend_from_slice(b" TEXT {1+}\r\na");
    }
    input.extend_from_slice(b"\r\n");
    match &all(&input)[..] {
        [
            Out::P(Parsed::Command(Command {
                kind:
                    K::Search {
                        criteria: S::And(keys),
                        ..
                    },
                ..
            })),
        ] => assert_eq!(keys.len(), 5000),
        other => panic!("{:?}", other.first()),
    }
    // Past the item limit: BAD, and the stream goes on.
    let limits = Limits {
        max_items: 100,
        ..Limits::default()
    };
    let mut input = b"A SEARCH".to_vec();
    for _ in 0..200 {
        input.extend_from_slice(b" TEXT {1+}\r\na");
    }
    input.extend_from_slice(b"\r\nB NOOP\r\n");
    let out = drive(&mut Parser::new(limits), &[&input]);
    assert!(
        matches!(&out[0], Out::P(Parsed::Error { tag: Some(t), text }) if t == "A" && text == "Too many literals")
    );
    assert_eq!(out[1..], [noop("B")]);
}

#[test]
fn a_pipeline_of_10000_commands_in_one_buffer() {
    let input = "t NOOP\r\n".repeat(10_000);
    let out = all(input.as_bytes());
    assert_eq!(out.len(), 10_000);
}
