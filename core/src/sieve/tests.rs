use super::*;
use proptest::prelude::*;

const MSG: &str = "From: Joe Bloggs <joe@example.com>\r\n\
To: me@example.com, \"Other\" <other+lists@example.org>\r\n\
Cc: friend@elsewhere.net\r\n\
Sender: owner-ietf-mta-filters@imc.org\r\n\
Subject: [acme-users] [fwd] version 1.0 is out\r\n\
Received: from a\r\n\
Received: from b\r\n\
Received: from c\r\n\
X-Spam-Score: 12\r\n\
List-ID: Acme users <acme-users.lists.example.com>\r\n\
\r\n\
Hello there,\r\nthe release is out.\r\n";

fn env() -> Envelope {
    Envelope {
        from: "joe@example.com".into(),
        to: "me+tag@example.com".into(),
        now: 1_136_239_445, // Mon, 2 Jan 2006 22:04:05 +0000
        host: "mx1.example.com".into(),
    }
}

fn exec_with(src: &str, msg: &str, env: &Envelope) -> Outcome {
    let script = parse(src, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let m = RawMessage::parse(msg.as_bytes());
    run(&script, env, &m, &mut NoIncludes, &Limits::default())
}

fn exec(src: &str) -> Vec<Action> {
    let o = exec_with(src, MSG, &env());
    assert_eq!(o.error, None);
    o.actions
}

fn keep() -> Action {
    Action::Keep { flags: vec![] }
}

fn fileinto(f: &str) -> Action {
    Action::FileInto {
        folder: f.into(),
        flags: vec![],
        copy: false,
    }
}

fn err_at(src: &str) -> (u32, u32) {
    let e = parse(src, &Limits::default()).expect_err("must not parse");
    (e.line, e.column)
}

const RFC5228_EXAMPLE: &str = r#"#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"#;

#[test]
fn rfc5228_section9_example() {
    assert_eq!(exec(RFC5228_EXAMPLE), vec![fileinto("filter")]);
    let company = "From: a@example.com\r\nTo: b@x.org\r\n\r\n";
    let o = exec_with(RFC5228_EXAMPLE, company, &env());
    assert_eq!(o.actions, vec![keep()]);
    let spam = "From: a@spam.biz\r\nTo: b@x.org\r\nSubject: Make lots of MONEY fast!\r\n\r\n";
    assert_eq!(
        exec_with(RFC5228_EXAMPLE, spam, &env()).actions,
        vec![fileinto("spam")]
    );
    let personal = "From: a@friend.biz\r\nTo: x@y.org\r\nCc: me@example.com\r\nSubject: hi\r\n\r\n";
    assert_eq!(
        exec_with(RFC5228_EXAMPLE, personal, &env()).actions,
        vec![fileinto("personal")]
    );
}

#[test]
fn implicit_keep_rules() {
    assert_eq!(exec(""), vec![keep()]);
    assert_eq!(exec("discard;"), vec![Action::Discard]);
    assert_eq!(exec("keep; discard;"), vec![keep(), Action::Discard]);
    assert_eq!(
        exec("redirect \"a@b.c\";"),
        vec![Action::Redirect {
            address: "a@b.c".into(),
            copy: false
        }]
    );
    assert_eq!(
        exec("require \"copy\"; redirect :copy \"a@b.c\";"),
        vec![
            Action::Redirect {
                address: "a@b.c".into(),
                copy: true
            },
            keep()
        ]
    );
    assert_eq!(
        exec("require [\"fileinto\", \"copy\"]; fileinto :copy \"x\"; fileinto \"x\";"),
        vec![Action::FileInto {
            folder: "x".into(),
            flags: vec![],
            copy: true
        }]
    );
    assert_eq!(exec("stop; discard;"), vec![keep()]);
    assert_eq!(
        exec("require \"fileinto\"; fileinto \"a\"; fileinto \"a\"; keep; keep;"),
        vec![fileinto("a"), keep()]
    );
}

#[test]
fn rfc5228_section_examples() {
    // 2.4.2 multi-line strings with dot-unstuffing; 2.9 reject
    let src = "require \"reject\";\nif size :over 100 { reject text:\n..not yet\nplease\n.\n; }";
    assert_eq!(
        exec(src),
        vec![Action::Reject {
            reason: ".not yet\r\nplease\r\n".into(),
            ereject: false
        }]
    );
    // 5.1 address tests, 5.2 allof, 5.3 anyof, 5.5 exists, 5.8 not, 5.9 size
    assert_eq!(
        exec("if address :is :all \"from\" \"JOE@example.com\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if address :localpart \"to\" \"other+lists\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if allof (header :contains \"subject\" \"ACME\", exists \"cc\") { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if exists [\"From\",\"Date\"] { discard; }"),
        vec![keep()]
    );
    assert_eq!(
        exec("if anyof (false, not exists \"date\") { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if size :under 1K { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(exec("if size :over 1M { discard; }"), vec![keep()]);
    assert_eq!(
        exec("if header :is :comparator \"i;octet\" \"x-spam-score\" \"12\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec(
            "if header :is :comparator \"i;octet\" \"subject\" \"[ACME-users] [fwd] version 1.0 is out\" { discard; }"
        ),
        vec![keep()]
    );
    assert_eq!(
        exec("if header :matches \"subject\" \"[acme-?sers]*\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if header :matches \"subject\" \"\\\\[acme*\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("if header :matches \"x-spam-score\" \"1\\\\?\" { discard; }"),
        vec![keep()]
    );
    // elsif / else chains
    assert_eq!(
        exec(
            "require \"fileinto\"; if false { fileinto \"a\"; } elsif true { fileinto \"b\"; } else { fileinto \"c\"; } if true {} else { fileinto \"d\"; }"
        ),
        vec![fileinto("b")]
    );
    // bracket comments and escapes
    assert_eq!(
        exec("/* c */ if header :is \"x\\\"y\" \"\" { discard; } /* *** */"),
        vec![keep()]
    );
}

#[test]
fn envelope_and_subaddress_rfc5233() {
    let src = r#"require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "postmaster" { fileinto "inbox.postmaster"; stop; }
if envelope :detail :is "to" "mta-filters" { fileinto "inbox.ietf-mta-filters"; stop; }
if envelope :detail "to" "" { fileinto "inbox.empty-detail"; stop; }
if envelope :user "to" "me" { fileinto "inbox.me"; }"#;
    let e = |to: &str| Envelope {
        from: String::new(),
        to: to.into(),
        ..Envelope::default()
    };
    assert_eq!(
        exec_with(src, MSG, &e("postmaster+x@example.com")).actions,
        vec![fileinto("inbox.postmaster")]
    );
    assert_eq!(
        exec_with(src, MSG, &e("ken+mta-filters@example.com")).actions,
        vec![fileinto("inbox.ietf-mta-filters")]
    );
    assert_eq!(
        exec_with(src, MSG, &e("<ken+@example.com>")).actions,
        vec![fileinto("inbox.empty-detail")]
    );
    assert_eq!(
        exec_with(src, MSG, &e("me@example.com")).actions,
        vec![fileinto("inbox.me")]
    );
    assert_eq!(
        exec_with(src, MSG, &e("you@example.com")).actions,
        vec![keep()]
    );
    assert_eq!(
        exec("require \"envelope\"; if envelope :domain \"from\" \"EXAMPLE.com\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("require \"subaddress\"; if address :detail \"to\" \"lists\" { discard; }"),
        vec![Action::Discard]
    );
}

#[test]
fn vacation_rfc5230() {
    let src = r#"require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at 321-1723";
}"#;
    let v = |reason: &str| Action::Vacation {
        reason: reason.into(),
        subject: None,
        from: None,
        addresses: vec![],
        mime: false,
        handle: None,
        days: None,
        seconds: None,
    };
    assert_eq!(exec(src), vec![v("I'm out -- call me at 321-1723"), keep()]);
    let src = r#"require "vacation";
vacation :days 23 :addresses ["tjs@example.edu", "ts4z@landru.example.edu"]
   "I'm away until October 19.  If it's an emergency, call 911, I guess." ;"#;
    assert_eq!(
        exec(src),
        vec![
            Action::Vacation {
                reason: "I'm away until October 19.  If it's an emergency, call 911, I guess."
                    .into(),
                subject: None,
                from: None,
                addresses: vec!["tjs@example.edu".into(), "ts4z@landru.example.edu".into()],
                mime: false,
                handle: None,
                days: Some(23),
                seconds: None,
            },
            keep()
        ]
    );
    let src = "require \"vacation\"; vacation :mime :subject \"s\" :from \"f@x\" :handle \"h\" text:\nContent-Type: text/plain\n\nAway.\n.\n;";
    let Action::Vacation {
        mime,
        subject,
        from,
        handle,
        reason,
        ..
    } = &exec(src)[0]
    else {
        panic!()
    };
    assert!(*mime);
    assert_eq!(
        (subject.as_deref(), from.as_deref(), handle.as_deref()),
        (Some("s"), Some("f@x"), Some("h"))
    );
    assert_eq!(reason, "Content-Type: text/plain\r\n\r\nAway.\r\n");
}

#[test]
fn imap4flags_rfc5232() {
    let src = r#"require ["imap4flags", "fileinto"];
if header :contains "from" "joe@example.com" {
    setflag "\\Flagged";
    fileinto "INBOX.From Boss";
}"#;
    assert_eq!(
        exec(src),
        vec![Action::FileInto {
            folder: "INBOX.From Boss".into(),
            flags: vec!["\\Flagged".into()],
            copy: false
        }]
    );
    let src = r#"require ["imap4flags", "fileinto", "variables"];
setflag "flagvar" "\\Flagged";
addflag "flagvar" ["\\answered", "\\FLAGGED"];
removeflag "flagvar" "\\Answered";
if hasflag :contains "flagvar" "Flag" { fileinto :flags "${flagvar} $Work" "boss"; }
addflag ["a b", "A"]; keep;"#;
    assert_eq!(
        exec(src),
        vec![
            Action::FileInto {
                folder: "boss".into(),
                flags: vec!["\\Flagged".into(), "$Work".into()],
                copy: false
            },
            Action::Keep {
                flags: vec!["a".into(), "b".into()]
            },
        ]
    );
    // Implicit keep uses the internal variable.
    assert_eq!(
        exec(
            "require \"imap4flags\"; addflag \"\\\\Seen\"; if hasflag \"\\\\seen\" { addflag \"x\"; }"
        ),
        vec![Action::Keep {
            flags: vec!["\\Seen".into(), "x".into()]
        }]
    );
    assert_eq!(
        exec("require \"imap4flags\"; keep :flags \"\\\\Deleted\";"),
        vec![Action::Keep {
            flags: vec!["\\Deleted".into()]
        }]
    );
}

#[test]
fn variables_rfc5229() {
    let src = r#"require ["variables", "fileinto"];
set "a" "juMBlEd lETteRS";
set :length "b" "${a}";
set :lower "c" "${a}";
set :upperfirst "d" "${a}";
set :upperfirst :lower "e" "${a}";
set :quotewildcard "f" "Rock*";
fileinto "${b}|${c}|${d}|${e}|${f}|${undefined}|${bad-name}|$";"#;
    assert_eq!(
        exec(src),
        vec![fileinto(
            "15|jumbled letters|JuMBlEd lETteRS|Jumbled letters|Rock\\*||${bad-name}|$"
        )]
    );
    let src = r#"require ["variables", "fileinto"];
if header :matches "From" "*<*@*" { fileinto "INBOX.lists.${2}.${3}"; stop; }"#;
    assert_eq!(exec(src), vec![fileinto("INBOX.lists.joe.example.com>")]);
    let src = r#"require ["variables", "fileinto"];
if header :matches "Subject" "[*] *" { fileinto "${1}/${2}/${0}"; }"#;
    assert_eq!(
        exec(src),
        vec![fileinto(
            "acme-users/[fwd] version 1.0 is out/[acme-users] [fwd] version 1.0 is out"
        )]
    );
    let src = r#"require ["variables", "relational"];
set "x" "abc";
if string :is "${x}" "ABC" { discard; }
if string :count "eq" ["", "a"] "1" { discard; }"#;
    assert_eq!(exec(src), vec![Action::Discard]);
    // Without "variables", ${...} is literal.
    assert_eq!(
        exec("require \"fileinto\"; fileinto \"${x}\";"),
        vec![fileinto("${x}")]
    );
}

#[test]
fn relational_rfc5231() {
    let r = "require [\"relational\", \"comparator-i;ascii-numeric\"];";
    assert_eq!(
        exec(&format!(
            "{r} if header :count \"ge\" :comparator \"i;ascii-numeric\" \"received\" \"3\" {{ discard; }}"
        )),
        vec![Action::Discard]
    );
    assert_eq!(
        exec(&format!(
            "{r} if header :count \"gt\" :comparator \"i;ascii-numeric\" \"received\" \"3\" {{ discard; }}"
        )),
        vec![keep()]
    );
    assert_eq!(
        exec(&format!(
            "{r} if header :value \"gt\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"9\" {{ discard; }}"
        )),
        vec![Action::Discard]
    );
    assert_eq!(
        exec(&format!(
            "{r} if header :value \"gt\" \"x-spam-score\" \"9\" {{ discard; }}"
        )),
        vec![keep()]
    );
    assert_eq!(
        exec(&format!(
            "{r} if address :count \"eq\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"3\" {{ discard; }}"
        )),
        vec![Action::Discard]
    );
    assert_eq!(
        exec(&format!(
            "{r} if header :value \"lt\" :comparator \"i;ascii-numeric\" \"subject\" \"5\" {{ discard; }}"
        )),
        vec![keep()]
    );
}

#[test]
fn reject_ereject_rfc5429() {
    assert_eq!(
        exec("require \"ereject\"; ereject \"no\";"),
        vec![Action::Reject {
            reason: "no".into(),
            ereject: true
        }]
    );
    let o = exec_with(
        "require \"reject\"; reject \"a\"; reject \"b\";",
        MSG,
        &env(),
    );
    assert!(matches!(o.error, Some(RunError::Conflict(_))));
    assert_eq!(o.actions, vec![keep()]);
}

#[test]
fn body_rfc5173() {
    assert_eq!(
        exec("require \"body\"; if body :contains \"RELEASE\" { discard; }"),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("require \"body\"; if body :raw :matches \"Hello*\" { discard; }"),
        vec![Action::Discard]
    );
    let multi = "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nplain words\r\n--XX\r\nContent-Type: application/octet-stream\r\n\r\nsecret words\r\n--XX--\r\n";
    let s = "require \"body\"; if body :text :contains \"secret\" { discard; }";
    assert_eq!(exec_with(s, multi, &env()).actions, vec![keep()]);
    let s = "require \"body\"; if body :content \"application\" :contains \"secret\" { discard; }";
    assert_eq!(exec_with(s, multi, &env()).actions, vec![Action::Discard]);
    let s = "require \"body\"; if body :text :contains \"plain words\" { discard; }";
    assert_eq!(exec_with(s, multi, &env()).actions, vec![Action::Discard]);
}

struct Scripts(Vec<(&'static str, &'static str)>, usize);

impl IncludeSource for Scripts {
    fn load(&mut self, name: &str, _global: bool) -> Option<String> {
        self.1 += 1;
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.to_string())
    }
}

fn exec_inc(src: &str, scripts: Vec<(&'static str, &'static str)>) -> Outcome {
    let script = parse(src, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let m = RawMessage::parse(MSG.as_bytes());
    run(
        &script,
        &env(),
        &m,
        &mut Scripts(scripts, 0),
        &Limits::default(),
    )
}

#[test]
fn include_rfc6609() {
    let lists = "require [\"fileinto\", \"include\", \"variables\"]; global \"who\"; if header :contains \"list-id\" \"acme\" { fileinto \"acme-${who}\"; return; } discard;";
    let o = exec_inc(
        "require [\"include\", \"variables\"]; global \"who\"; set \"who\" \"me\"; include \"lists\"; include :once \"lists\"; include :optional \"missing\";",
        vec![("lists", lists)],
    );
    assert_eq!(o.error, None);
    assert_eq!(o.actions, vec![fileinto("acme-me")]);
    let o = exec_inc("require \"include\"; include \"missing\";", vec![]);
    assert_eq!(o.error, Some(RunError::IncludeMissing("missing".into())));
    assert_eq!(o.actions, vec![keep()]);
    // Self-inclusion is bounded.
    let o = exec_inc(
        "require \"include\"; include \"me\";",
        vec![("me", "require \"include\"; include \"me\";")],
    );
    assert_eq!(o.error, Some(RunError::IncludeDepth));
    assert_eq!(o.actions, vec![keep()]);
    // Wide inclusion is bounded too.
    let wide = "require \"include\"; include \"leaf\"; include \"leaf\"; include \"leaf\"; include \"leaf\"; include \"leaf\"; include \"leaf\"; include \"leaf\"; include \"leaf\";";
    let o = exec_inc(
        "require \"include\"; include \"w\"; include \"w\"; include \"w\"; include \"w\"; include \"w\";",
        vec![("w", wide), ("leaf", "keep;")],
    );
    assert_eq!(o.error, Some(RunError::IncludeCount));
    let o = exec_inc(
        "require \"include\"; include \"bad\";",
        vec![("bad", "if {")],
    );
    assert!(matches!(o.error, Some(RunError::IncludeInvalid(..))));
}

#[test]
fn syntax_errors_have_positions() {
    assert_eq!(err_at("keep"), (1, 1));
    assert_eq!(err_at("keep;\n  frobnicate;"), (2, 3));
    assert_eq!(err_at("if true {\n keep;\n"), (2, 6));
    assert_eq!(err_at("require \"fileinto\";\nrequire \"nosuch\";"), (2, 9));
    assert_eq!(err_at("require [\"fileinto\",\n  \"nosuch\"];"), (2, 3));
    assert_eq!(err_at("fileinto \"x\";"), (1, 1));
    assert_eq!(err_at("keep;\nrequire \"fileinto\";"), (2, 1));
    assert_eq!(err_at("if header :is \"a\" [\"b\" \"c\"] {}"), (1, 24));
    assert_eq!(err_at("if header :bogus \"a\" \"b\" {}"), (1, 4));
    assert_eq!(err_at("\n\n   \"unterminated"), (3, 4));
    assert_eq!(err_at("keep; /* open"), (1, 7));
    assert_eq!(err_at("if size 3 {}"), (1, 4));
    assert_eq!(err_at("elsif true {}"), (1, 1));
    assert_eq!(err_at("if true { require \"fileinto\"; }"), (1, 11));
    assert_eq!(err_at("x = 1;"), (1, 3));
    assert_eq!(err_at("if size :over 99999999999999999999 {}"), (1, 15));
    assert_eq!(err_at("reject text:\nno end\n"), (1, 8));
    let e = parse("keep;\n  frobnicate;", &Limits::default()).expect_err("bad");
    assert_eq!(
        e.to_string(),
        "line 2, column 3: unknown command \"frobnicate\""
    );
}

#[test]
fn upload_time_checks() {
    assert_eq!(err_at("redirect \"not an address\";"), (1, 1));
    assert_eq!(err_at("require \"variables\";\nset \"1a\" \"x\";"), (2, 1));
    assert_eq!(
        err_at("if header :is :comparator \"i;ascii-numeric\" \"a\" \"1\" {}"),
        (1, 4)
    );
    assert_eq!(
        err_at("if header :is :comparator \"i;unknown\" \"a\" \"1\" {}"),
        (1, 4)
    );
    assert_eq!(
        err_at("require \"relational\"; if header :value \"xx\" \"a\" \"1\" {}"),
        (1, 26)
    );
    assert_eq!(err_at("require \"reject\"; ereject \"x\";"), (1, 19));
    assert_eq!(err_at("if header :is :contains \"a\" \"1\" {}"), (1, 4));
    assert_eq!(err_at("if address :all :domain \"a\" \"1\" {}"), (1, 4));
    assert_eq!(err_at("if address :user \"a\" \"1\" {}"), (1, 4));
    assert_eq!(err_at("keep :copy;"), (1, 1));
    assert_eq!(err_at("if not (true, false) {}"), (1, 4));
    // A redirect address built from variables is checked at run time.
    let o = exec_with(
        "require \"variables\"; set \"a\" \"bad\"; redirect \"${a}\";",
        MSG,
        &env(),
    );
    assert_eq!(o.error, Some(RunError::InvalidAddress("bad".into())));
    assert_eq!(o.actions, vec![keep()]);
}

#[test]
fn encoded_words_are_decoded_for_header() {
    assert_eq!(
        interp::decode_rfc2047("=?UTF-8?B?w6l0w6k=?= =?iso-8859-1?Q?_caf=E9?= plain"),
        "été café plain"
    );
    assert_eq!(
        interp::decode_rfc2047("=?x-unknown?Q?a?= =?utf-8?Q?broken"),
        "=?x-unknown?Q?a?= =?utf-8?Q?broken"
    );
    let msg = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n";
    let o = exec_with(
        "if header :is \"subject\" \"GRüße\" { discard; }",
        msg,
        &env(),
    );
    assert_eq!(o.actions, vec![Action::Discard]);
}

#[test]
fn pathological_inputs_stay_linear() {
    let value = "=?".repeat(200_000);
    assert_eq!(interp::decode_rfc2047(&value), value);
    let flags = (0..5_000)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let src = format!("require \"imap4flags\"; addflag \"{flags}\"; addflag \"{flags}\";");
    let Action::Keep { flags } = &exec(&src)[0] else {
        panic!("keep expected")
    };
    assert_eq!(flags.len(), 128);
}

#[test]
fn count_uses_the_comparator() {
    // RFC 5231: with the default i;ascii-casemap, "3" > "10" as strings.
    let src = "require \"relational\"; if header :count \"gt\" \"received\" \"10\" { discard; }";
    assert_eq!(exec(src), vec![Action::Discard]);
}

#[test]
fn limits_at_parse() {
    let deep = format!("{}{}", "if true {".repeat(40), "}".repeat(40));
    let e = parse(&deep, &Limits::default()).expect_err("too deep");
    assert!(e.message.contains("nesting"), "{e}");
    let deep_test = format!("if {}true{} {{}}", "not ".repeat(100), "");
    assert!(parse(&deep_test, &Limits::default()).is_err());
    let big = format!("keep; #{}", "x".repeat(70 * 1024));
    assert!(parse(&big, &Limits::default()).is_err());
    let long = format!(
        "if header :is \"a\" [{}] {{}}",
        vec!["\"x\""; 2000].join(",")
    );
    assert!(parse(&long, &Limits::default()).is_err());
}

#[test]
fn explosive_match_ends_in_implicit_keep() {
    // `*a*a*...*b`: a single backtrack point keeps this linear, so it simply fails.
    let pattern = "*a".repeat(200) + "*b";
    let text = "a".repeat(20_000);
    let msg = format!("Subject: {text}\r\n\r\n");
    let src = format!("if header :matches \"subject\" \"{pattern}\" {{ discard; }}");
    let o = exec_with(&src, &msg, &env());
    assert_eq!(o.error, None);
    assert_eq!(o.actions, vec![keep()]);
    // `*aaaa...b` costs len(text) * len(pattern) steps: the budget stops it.
    let pattern = format!("*{}b", "a".repeat(5000));
    let src = format!("if header :matches \"subject\" \"{pattern}\" {{ discard; }}");
    let o = exec_with(&src, &msg, &env());
    assert_eq!(o.error, Some(RunError::StepBudget));
    assert_eq!(o.actions, vec![keep()]);
    // A non-pathological pattern on the same input still works.
    let o = exec_with(
        "if header :matches \"subject\" \"*a\" { discard; }",
        &msg,
        &env(),
    );
    assert_eq!(o.actions, vec![Action::Discard]);
}

#[test]
fn step_budget_bounds_long_scripts() {
    let body = "if header :contains [\"subject\",\"from\",\"to\"] [\"x\",\"y\",\"z\"] { keep; }\n"
        .repeat(800);
    let limits = Limits {
        max_steps: 2000,
        ..Limits::default()
    };
    let script = parse(&body, &limits).expect("parses");
    let m = RawMessage::parse(MSG.as_bytes());
    let o = run(&script, &env(), &m, &mut NoIncludes, &limits);
    assert_eq!(o.error, Some(RunError::StepBudget));
    assert_eq!(o.actions, vec![keep()]);
}

#[test]
fn nesting_at_the_limit_runs() {
    let src = format!(
        "require \"fileinto\"; {}fileinto \"deep\";{}",
        "if true { ".repeat(31),
        "}".repeat(31)
    );
    assert_eq!(exec(&src), vec![fileinto("deep")]);
    let src = format!("if {}true {{ discard; }}", "not not ".repeat(15));
    assert_eq!(exec(&src), vec![Action::Discard]);
}

#[test]
fn too_many_actions() {
    let src = (0..100)
        .map(|i| format!("redirect \"u{i}@x.org\";"))
        .collect::<String>();
    let o = exec_with(&src, MSG, &env());
    assert_eq!(o.error, Some(RunError::TooManyActions));
    assert_eq!(o.actions, vec![keep()]);
}

const WORDS: &[&str] = &[
    "require",
    "if",
    "elsif",
    "else",
    "keep",
    "discard",
    "stop",
    "fileinto",
    "redirect",
    "reject",
    "header",
    "address",
    "envelope",
    "exists",
    "size",
    "allof",
    "anyof",
    "not",
    "true",
    "false",
    "set",
    "string",
    "setflag",
    "addflag",
    "hasflag",
    "vacation",
    "body",
    "include",
    "\"fileinto\"",
    "[\"variables\",\"imap4flags\",\"relational\",\"body\",\"envelope\",\"subaddress\",\"vacation\"]",
    ":is",
    ":contains",
    ":matches",
    ":count",
    ":value",
    "\"ge\"",
    ":over",
    ":under",
    ":comparator",
    "\"i;ascii-numeric\"",
    ":localpart",
    ":domain",
    ":user",
    ":detail",
    ":days",
    "1K",
    "7",
    "\"*?*\"",
    "\"${1}\"",
    "\"subject\"",
    "\"to\"",
    "text:\nx\n.\n",
    ";",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "\"a\\\"b\"",
    "/* c */",
    "# c\n",
    "\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(src in "\\PC{0,300}", msg in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(script) = parse(&src, &Limits::default()) {
            let m = RawMessage::parse(&msg);
            let o = run(&script, &env(), &m, &mut NoIncludes, &Limits::default());
            prop_assert!(!o.actions.is_empty());
        }
    }

    #[test]
    fn token_soup_ends_bounded(words in proptest::collection::vec(0..WORDS.len(), 0..120), msg in "[ -~\r\n]{0,400}") {
        let src: Vec<&str> = words.iter().map(|&i| WORDS[i]).collect();
        let src = src.join(" ");
        let limits = Limits { max_steps: 100_000, ..Limits::default() };
        if let Ok(script) = parse(&src, &limits) {
            let m = RawMessage::parse(msg.as_bytes());
            let o = run(&script, &env(), &m, &mut NoIncludes, &limits);
            prop_assert!(!o.actions.is_empty());
        } else if let Err(e) = parse(&src, &limits) {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
}

// ----- regex (draft-ietf-sieve-regex-01) -----

fn run_err(src: &str, limits: &Limits) -> Outcome {
    let script = parse(src, limits).unwrap_or_else(|e| panic!("{e}"));
    let m = RawMessage::parse(MSG.as_bytes());
    run(&script, &env(), &m, &mut NoIncludes, limits)
}

#[test]
fn regex_draft_examples() {
    // Draft section 3 example: an address with an optional +detail, in two domains.
    let src = r#"require "regex";
if address :regex :comparator "i;ascii-casemap" "from" [
        "stephan(\\+.*)?@it\\.aoyama\\.ac\\.jp",
        "joe(\\+.*)?@([a-z]+\\.)?example\\.com"
        ] {
   discard;
}"#;
    assert_eq!(exec(src), vec![Action::Discard]);
    let src2 = src.replace("joe(", "jim(");
    assert_eq!(exec(&src2), vec![keep()]);
    // Groups feed the match variables: ${0} is the whole match, an unmatched group is empty.
    assert_eq!(
        exec(
            r#"require ["regex", "variables", "fileinto"];
if header :regex "list-id" "<([a-z-]+)\\.lists\\.(example)\\.com>" { fileinto "${1}/${2}"; }"#
        ),
        vec![fileinto("acme-users/example")]
    );
    assert_eq!(
        exec(
            r#"require ["regex", "variables", "fileinto"];
if header :regex "subject" "(x)?\\[(acme-[a-z]+)\\]" { fileinto "[${1}][${2}][${0}]"; }"#
        ),
        vec![fileinto("[][acme-users][[acme-users]]")]
    );
    // POSIX ERE features: bracket classes, intervals, alternation, anchors.
    assert_eq!(
        exec(
            r#"require "regex";
if allof (header :regex "x-spam-score" "^[[:digit:]]{2}$",
          header :regex "subject" "version (0|1)\\.[0-9]+ is",
          not header :regex "subject" "^version") { discard; }"#
        ),
        vec![Action::Discard]
    );
}

#[test]
fn regex_comparators_and_tests() {
    // i;ascii-casemap (the default) folds case, i;octet does not.
    let t = |cmp: &str| {
        exec(&format!(
            r#"require "regex"; if header :regex :comparator "{cmp}" "subject" "^\\[ACME-USERS\\]" {{ discard; }}"#
        ))
    };
    assert_eq!(t("i;ascii-casemap"), vec![Action::Discard]);
    assert_eq!(t("i;octet"), vec![keep()]);
    // envelope, string and body take :regex too.
    assert_eq!(
        exec(
            r#"require ["regex", "envelope", "variables"];
if allof (envelope :regex "to" "^me\\+[a-z]+@",
          string :regex "abc123" "[0-9]+$",
          not string :regex "abc" "[0-9]") { discard; }"#
        ),
        vec![Action::Discard]
    );
    assert_eq!(
        exec(r#"require ["regex", "body"]; if body :regex "release\\s+is\\s+out" { discard; }"#),
        vec![Action::Discard]
    );
    // :regex needs its require, and cannot be combined with i;ascii-numeric or another match type.
    assert!(
        parse(r#"if header :regex "a" "b" {}"#, &Limits::default())
            .unwrap_err()
            .message
            .contains("require \"regex\"")
    );
    assert!(
        parse(
            r#"require ["regex", "comparator-i;ascii-numeric"];
if header :regex :comparator "i;ascii-numeric" "a" "1" {}"#,
            &Limits::default()
        )
        .is_err()
    );
    assert!(
        parse(
            r#"require "regex"; if header :regex :is "a" "b" {}"#,
            &Limits::default()
        )
        .is_err()
    );
}

#[test]
fn regex_errors() {
    // A literal pattern that does not compile is a parse error at the test.
    let e = parse(
        "require \"regex\";\nif  header :regex \"subject\" \"(unclosed\" { discard; }",
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (2, 5), "{e}");
    assert!(e.message.contains("invalid regular expression"), "{e}");
    // Too long, literal: parse error; from a variable: run-time error and implicit keep.
    let limits = Limits {
        max_regex_len: 16,
        ..Limits::default()
    };
    let long = "a".repeat(17);
    assert!(
        parse(
            &format!(r#"require "regex"; if header :regex "s" "{long}" {{}}"#),
            &limits
        )
        .unwrap_err()
        .message
        .contains("longer than 16")
    );
    assert!(
        parse(
            &format!(
                r#"require "regex"; if header :regex "s" "{}" {{}}"#,
                &long[1..]
            ),
            &limits
        )
        .is_ok()
    );
    let o = run_err(
        &format!(
            r#"require ["regex", "variables"]; set "p" "{long}"; if header :regex "subject" "${{p}}" {{ discard; }}"#
        ),
        &limits,
    );
    assert!(matches!(o.error, Some(RunError::Regex(_))), "{o:?}");
    assert_eq!(o.actions, vec![keep()]);
    // A pattern from variables that does not compile: run-time error, implicit keep.
    let o = run_err(
        r#"require ["regex", "variables"]; set "p" "(["; if header :regex "subject" "${p}" { discard; }"#,
        &Limits::default(),
    );
    assert!(matches!(o.error, Some(RunError::Regex(_))), "{o:?}");
    assert_eq!(o.actions, vec![keep()]);
    // A pattern whose compiled form is over the size limit is refused.
    let small = Limits {
        max_regex_size: 1000,
        ..Limits::default()
    };
    assert!(
        parse(
            r#"require "regex"; if header :regex "s" "\\w{50}" {}"#,
            &small
        )
        .is_err()
    );
}

#[test]
fn regex_is_compiled_once_per_run_and_charged() {
    // 100 tests with the same 200-byte pattern: compiling costs ~800 steps each, so only a
    // cached compile fits a 20 000-step budget.
    let pattern = format!("{}x", "[a-z]?".repeat(33));
    let mut src = String::from("require \"regex\";\n");
    for _ in 0..100 {
        src.push_str(&format!(
            "if header :regex \"subject\" \"{pattern}\" {{ keep; }}\n"
        ));
    }
    let limits = Limits {
        max_steps: 20_000,
        ..Limits::default()
    };
    let o = run_err(&src, &limits);
    assert_eq!(o.error, None);
    // Matching is charged by text length: a long value exhausts a small budget.
    let msg = format!("Subject: {}\r\n\r\n", "ab".repeat(20_000));
    let script = parse(
        r#"require "regex"; if header :regex "subject" "(a|b)+c" { discard; }"#,
        &Limits::default(),
    )
    .unwrap();
    let tight = Limits {
        max_steps: 1_000,
        ..Limits::default()
    };
    let m = RawMessage::parse(msg.as_bytes());
    let o = run(&script, &env(), &m, &mut NoIncludes, &tight);
    assert_eq!(o.error, Some(RunError::StepBudget));
    let o = run(&script, &env(), &m, &mut NoIncludes, &Limits::default());
    assert_eq!(o.error, None);
    assert_eq!(o.actions, vec![keep()]);
}

#[test]
fn quoteregex() {
    let src = r#"require ["regex", "variables", "fileinto"];
set :quoteregex "q" "a.b*(c)";
if allof (string :regex "a.b*(c)" "^${q}$", not string :regex "axbbc" "^${q}$") { fileinto "${q}"; }"#;
    assert_eq!(exec(src), vec![fileinto("a\\.b\\*\\(c\\)")]);
    assert!(
        parse(
            r#"require "variables"; set :quoteregex "q" "x";"#,
            &Limits::default()
        )
        .is_err()
    );
}

// ----- mailbox (RFC 5490) -----

struct Mailboxes(Vec<&'static str>);

impl IncludeSource for Mailboxes {
    fn load(&mut self, _name: &str, _global: bool) -> Option<String> {
        None
    }
    fn mailbox_exists(&mut self, name: &str) -> bool {
        self.0.contains(&name)
    }
}

fn exec_mailboxes(src: &str, boxes: Vec<&'static str>) -> Outcome {
    let script = parse(src, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let m = RawMessage::parse(MSG.as_bytes());
    run(
        &script,
        &env(),
        &m,
        &mut Mailboxes(boxes),
        &Limits::default(),
    )
}

#[test]
fn mailbox_rfc5490() {
    // RFC 5490 section 3.2 example.
    let src = r#"require ["fileinto", "reject", "mailbox"];
if mailboxexists "Partners" {
   fileinto "Partners";
} else {
   reject "This message was not accepted by the Mailstore";
}"#;
    assert_eq!(
        exec_mailboxes(src, vec!["INBOX", "Partners"]).actions,
        vec![fileinto("Partners")]
    );
    assert!(matches!(
        exec_mailboxes(src, vec!["INBOX"]).actions.as_slice(),
        [Action::Reject { .. }]
    ));
    // All names must exist; the default source knows none.
    let all =
        r#"require ["mailbox", "fileinto"]; if mailboxexists ["A", "B"] { fileinto "both"; }"#;
    assert_eq!(
        exec_mailboxes(all, vec!["A", "B"]).actions,
        vec![fileinto("both")]
    );
    assert_eq!(exec_mailboxes(all, vec!["A"]).actions, vec![keep()]);
    assert_eq!(exec(all), vec![keep()]);
    // fileinto :create is accepted (the store creates folders anyway).
    assert_eq!(
        exec(r#"require ["fileinto", "mailbox"]; fileinto :create "New/Sub";"#),
        vec![fileinto("New/Sub")]
    );
    assert!(
        parse(
            r#"require "fileinto"; fileinto :create "x";"#,
            &Limits::default()
        )
        .is_err()
    );
    assert!(parse(r#"if mailboxexists "x" {}"#, &Limits::default()).is_err());
}

// ----- encoded-character (RFC 5228 section 2.4.2.4) -----

#[test]
fn encoded_character() {
    // The RFC's example: "$${hex:24 24}" is "$$$".
    let msg = "Subject: price $$$ now\r\n\r\n";
    let src = "require \"encoded-character\";\nif header :contains \"Subject\" \"$${hex:24 24}\" { discard; }";
    assert_eq!(exec_with(src, msg, &env()).actions, vec![Action::Discard]);
    assert_eq!(
        exec_with(&src.replace("24 24", "24 25"), msg, &env()).actions,
        vec![keep()]
    );
    // Unicode code points, case-insensitive names, in lists and multi-line strings.
    assert_eq!(
        exec(
            r#"require ["encoded-character", "fileinto"]; fileinto "${UNICODE:40 e9}${Hex: 41 }";"#
        ),
        vec![fileinto("@éA")]
    );
    assert_eq!(
        exec(
            r#"require "encoded-character"; if header :is "subject" ["x", "${hex:5b}acme-users] [fwd] version 1.0 is out"] { discard; }"#
        ),
        vec![Action::Discard]
    );
    assert_eq!(
        exec("require [\"encoded-character\", \"fileinto\"];\nfileinto text:\n${hex:61}\n.\n;"),
        vec![fileinto("a\r\n")]
    );
    // Not required: left alone.
    assert_eq!(
        exec(r#"require "fileinto"; fileinto "${hex:41}";"#),
        vec![fileinto("${hex:41}")]
    );
    // Not well formed: left alone; decoded once, never re-scanned.
    for s in [
        "${hex:}",
        "${hex:123}",
        "${hex:4G}",
        "${unicode:}",
        "${foo:41}",
        "${hex:41",
    ] {
        assert_eq!(
            parser::decode_encoded_characters(s).as_deref(),
            Ok(s),
            "{s}"
        );
    }
    assert_eq!(
        parser::decode_encoded_characters("${hex:24}{hex:41}").as_deref(),
        Ok("${hex:41}")
    );
    assert_eq!(
        parser::decode_encoded_characters("${unicode:0000000000000041}").as_deref(),
        Ok("A")
    );
    // Surrogates, values past U+10FFFF and octets that are not UTF-8 are errors, at the string.
    let e = parse(
        "require \"encoded-character\";\nkeep;\nif header :is \"a\"  \"${unicode:D800}\" {}",
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, 20), "{e}");
    assert!(parser::decode_encoded_characters("${unicode:110000}").is_err());
    assert!(parser::decode_encoded_characters("${hex:C3}").is_err());
    assert_eq!(
        parser::decode_encoded_characters("${hex:C3 A9}").as_deref(),
        Ok("é")
    );
}

// ----- vacation-seconds (RFC 6131) -----

#[test]
fn vacation_seconds_rfc6131() {
    // RFC 6131 section 2 example; "vacation-seconds" implies "vacation".
    let src = r#"require ["vacation-seconds"];
vacation :addresses ["tjs@example.edu", "ts4z@landru.example.edu"]
         :seconds 1800
         "I am in a meeting, and do not have access to email.";"#;
    let actions = exec(src);
    assert!(
        matches!(
            &actions[0],
            Action::Vacation {
                seconds: Some(1800),
                days: None,
                ..
            }
        ),
        "{actions:?}"
    );
    assert!(
        parse(
            r#"require "vacation"; vacation :seconds 60 "x";"#,
            &Limits::default()
        )
        .is_err()
    );
    assert!(
        parse(
            r#"require ["vacation", "vacation-seconds"]; vacation :days 1 :seconds 60 "x";"#,
            &Limits::default()
        )
        .is_err()
    );
    assert!(matches!(
        exec(r#"require ["vacation", "vacation-seconds"]; vacation :seconds 0 "x";"#)[0],
        Action::Vacation {
            seconds: Some(0),
            ..
        }
    ));
}

// ----- date and index (RFC 5260) -----

const DATED: &str = "From: boss@example.com\r\n\
Date: Fri, 21 Nov 1997 09:55:06 -0600 (CST)\r\n\
Received: from c by mx; Mon, 26 Feb 2007 10:00:00 -0500\r\n\
Received: from b by mx; Mon, 26 Feb 2007 08:00:00 -0500\r\n\
Received: from a by mx; 26 Feb 07 07:30 EST\r\n\
Subject: dated\r\n\r\nbody\r\n";

fn dated(src: &str) -> Vec<Action> {
    let o = exec_with(src, DATED, &env());
    assert_eq!(o.error, None);
    o.actions
}

#[test]
fn date_rfc5260_examples() {
    // Section 4 example: office hours in the sender's own zone.
    let src = r#"require ["date", "relational", "fileinto"];
if allof(header :is "from" "boss@example.com",
         date :value "ge" :originalzone "date" "hour" "09",
         date :value "lt" :originalzone "date" "hour" "17")
{ fileinto "urgent"; }"#;
    assert_eq!(dated(src), vec![fileinto("urgent")]);
    // Without :originalzone the local zone (UTC) is used: 15:55, still office hours; with
    // :zone "+1000" it is 01:55 the next day, outside them.
    let late = src.replace(":originalzone", ":zone \"+1000\"");
    assert_eq!(dated(&late), vec![keep()]);
    // Section 5 examples: currentdate ranges and the month/year into variables.
    let range = r#"require ["date", "relational", "fileinto"];
if allof(currentdate :value "ge" "date" "2006-01-01",
         currentdate :value "le" "date" "2006-01-07")
{ fileinto "vacation"; }"#;
    assert_eq!(exec(range), vec![fileinto("vacation")]);
    let later = Envelope {
        now: 1_136_239_445 + 6 * 86_400,
        ..env()
    };
    assert_eq!(exec_with(range, MSG, &later).actions, vec![keep()]);
    assert_eq!(
        exec(
            r#"require ["date", "variables", "fileinto"];
if currentdate :matches "month" "*" { set "month" "${1}"; }
if currentdate :matches "year" "*" { set "year" "${1}"; }
fileinto "${month}-${year}";"#
        ),
        vec![fileinto("01-2006")]
    );
    // Section 7 example (index): the second Received header, in -0500.
    let src = r#"require ["date", "relational", "index", "fileinto"];
if date :value "gt" :index 2 :zone "-0500" "received" "iso8601" "2007-02-26T09:00:00-05:00"
{ fileinto "after"; }"#;
    assert_eq!(dated(src), vec![keep()]);
    assert_eq!(
        dated(&src.replace(":index 2", ":index 1")),
        vec![fileinto("after")]
    );
}

#[test]
fn date_parts() {
    let part = |zone: &str, p: &str| {
        let src = format!(
            r#"require ["date", "variables", "fileinto"];
if date :matches {zone} "date" "{p}" "*" {{ fileinto "${{0}}"; }}"#
        );
        match dated(&src).as_slice() {
            [Action::FileInto { folder, .. }] => folder.clone(),
            other => panic!("{other:?}"),
        }
    };
    let o = ":originalzone";
    assert_eq!(part(o, "year"), "1997");
    assert_eq!(part(o, "month"), "11");
    assert_eq!(part(o, "day"), "21");
    assert_eq!(part(o, "date"), "1997-11-21");
    assert_eq!(part(o, "julian"), "50773");
    assert_eq!(part(o, "hour"), "09");
    assert_eq!(part(o, "minute"), "55");
    assert_eq!(part(o, "second"), "06");
    assert_eq!(part(o, "time"), "09:55:06");
    assert_eq!(part(o, "iso8601"), "1997-11-21T09:55:06-06:00");
    assert_eq!(part(o, "std11"), "Fri, 21 Nov 1997 09:55:06 -0600");
    assert_eq!(part(o, "zone"), "-0600");
    assert_eq!(part(o, "weekday"), "5");
    assert_eq!(part("", "time"), "15:55:06");
    assert_eq!(part("", "zone"), "+0000");
    // Crossing midnight changes the date, the weekday and the julian day.
    let z = ":zone \"+1000\"";
    assert_eq!(part(z, "iso8601"), "1997-11-22T01:55:06+10:00");
    assert_eq!(part(z, "weekday"), "6");
    assert_eq!(part(z, "julian"), "50774");
    assert_eq!(part(":zone \"-0130\"", "time"), "14:25:06");
    // currentdate from the run's input, 2006-01-02 22:04:05 UTC (a Monday).
    let cur = |zone: &str, p: &str, key: &str| {
        exec(&format!(
            r#"require "date"; if currentdate {zone} :is "{p}" "{key}" {{ discard; }}"#
        )) == vec![Action::Discard]
    };
    assert!(cur("", "iso8601", "2006-01-02T22:04:05+00:00"));
    assert!(cur("", "julian", "53737"));
    assert!(cur("", "weekday", "1"));
    assert!(cur(":zone \"+0200\"", "date", "2006-01-03"));
    assert!(cur(":zone \"+0200\"", "weekday", "2"));
    assert!(!cur("", "date", "2006-01-03"));
    assert!(cur("", "DATE", "2006-01-02"));
}

#[test]
fn date_header_forms_and_index() {
    // Obsolete forms: two-digit year, named zone, no seconds (third Received).
    let src = r#"require ["date", "index", "fileinto"];
if date :is :index 3 :originalzone "received" "std11" "Mon, 26 Feb 2007 07:30:00 -0500" { fileinto "old"; }"#;
    assert_eq!(dated(src), vec![fileinto("old")]);
    // :last counts from the end; out of range matches nothing.
    let idx = |tags: &str, key: &str| {
        dated(&format!(
            r#"require ["date", "index"]; if date :is {tags} :originalzone "received" "time" "{key}" {{ discard; }}"#
        )) == vec![Action::Discard]
    };
    assert!(idx(":index 1 :last", "07:30:00"));
    assert!(idx(":index 3 :last", "10:00:00"));
    assert!(!idx(":index 4", "10:00:00"));
    assert!(!idx(":index 4 :last", "10:00:00"));
    // Without :index, any occurrence matches.
    assert!(idx("", "08:00:00"));
    // :index on header and address.
    let msg = "To: a@x.example\r\nTo: b@y.example, c@z.example\r\nX: one\r\nX: two\r\n\r\n";
    let t = |src: &str| exec_with(src, msg, &env()).actions == vec![Action::Discard];
    assert!(t(
        r#"require "index"; if header :index 2 :is "x" "two" { discard; }"#
    ));
    assert!(!t(
        r#"require "index"; if header :index 1 :is "x" "two" { discard; }"#
    ));
    assert!(t(
        r#"require "index"; if header :index 2 :last :is "x" "one" { discard; }"#
    ));
    assert!(t(
        r#"require "index"; if address :index 2 :domain :is "to" "z.example" { discard; }"#
    ));
    assert!(!t(
        r#"require "index"; if address :index 1 :domain :is "to" "z.example" { discard; }"#
    ));
    // Unparsable or impossible dates never match; :count counts only real dates.
    let bad = "Date: 31 Feb 2001 10:00:00 +0000\r\nX-Date: someday\r\n\r\n";
    let t = |src: &str| exec_with(src, bad, &env()).actions == vec![Action::Discard];
    assert!(!t(
        r#"require "date"; if date :matches "date" "date" "*" { discard; }"#
    ));
    assert!(!t(
        r#"require "date"; if date :matches "x-date" "date" "*" { discard; }"#
    ));
    assert!(!t(
        r#"require "date"; if date :matches "missing" "date" "*" { discard; }"#
    ));
    assert!(t(
        r#"require ["date", "relational"]; if date :count "eq" "date" "date" "0" { discard; }"#
    ));
    // A zone from a variable that is not +hhmm: nothing to match, no error.
    let o = exec_with(
        r#"require ["date", "variables"]; set "z" "CET"; if currentdate :zone "${z}" :matches "date" "*" { discard; }"#,
        MSG,
        &env(),
    );
    assert_eq!((o.error, o.actions), (None, vec![keep()]));
}

#[test]
fn date_and_index_parse_errors() {
    let bad = [
        r#"require "date"; if date "date" "fortnight" "1" {}"#,
        r#"require "date"; if currentdate "fortnight" "1" {}"#,
        r#"require "date"; if currentdate :zone "0100" "date" "x" {}"#,
        r#"require "date"; if currentdate :zone "+01:00" "date" "x" {}"#,
        r#"require "date"; if date :zone "+0100" :originalzone "date" "date" "x" {}"#,
        r#"require "date"; if currentdate :originalzone "date" "x" {}"#,
        r#"require ["date", "index"]; if date :last "date" "date" "x" {}"#,
        r#"require ["date", "index"]; if date :index 0 "date" "date" "x" {}"#,
        r#"require "date"; if date :index 1 "date" "date" "x" {}"#,
        r#"require ["envelope", "index"]; if envelope :index 1 "to" "x" {}"#,
        r#"if currentdate "date" "x" {}"#,
        r#"require "date"; if date "date" "x" {}"#,
    ];
    for src in bad {
        assert!(parse(src, &Limits::default()).is_err(), "{src}");
    }
    // A date part from a variable is checked at run time (no match), not at upload.
    assert!(
        parse(
            r#"require ["date", "variables"]; if currentdate "${p}" "x" {}"#,
            &Limits::default()
        )
        .is_ok()
    );
}

#[test]
fn date_parser_bounds() {
    use super::interp::{date_part, parse_date, parse_zone};
    assert_eq!(parse_date("Thu, 1 Jan 1970 00:00:00 +0000"), Some((0, 0)));
    assert_eq!(parse_date("1 Jan 1970 01:00 +0100"), Some((0, 60)));
    assert_eq!(
        parse_date("29 Feb 2000 00:00:00 GMT").map(|d| d.0),
        Some(951_782_400)
    );
    assert_eq!(parse_date("29 Feb 1900 00:00:00 GMT"), None);
    assert_eq!(parse_date("1 Jan 1970 24:00:00 +0000"), None);
    assert_eq!(parse_date("1 Foo 1970 00:00:00 +0000"), None);
    assert_eq!(parse_date("1 Jan 1970 00:00:00:00 +0000"), None);
    assert_eq!(parse_date(""), None);
    assert_eq!(parse_date("99999999999 Jan 1970 00:00 +0000"), None);
    assert_eq!(parse_zone("-0000"), Some(0));
    assert_eq!(parse_zone("+0160"), None);
    // Instants outside years 0-9999 have no date parts rather than overflowing.
    assert_eq!(date_part(i64::MAX, 0, "year"), None);
    assert_eq!(date_part(i64::MIN, 0, "year"), None);
    assert_eq!(date_part(0, 0, "nonsense"), None);
    assert_eq!(
        date_part(253_402_300_799, 0, "iso8601").as_deref(),
        Some("9999-12-31T23:59:59+00:00")
    );
}

// ----- environment (RFC 5183) -----

#[test]
fn environment_rfc5183() {
    let item = |name: &str, key: &str| {
        exec(&format!(
            r#"require "environment"; if environment :is "{name}" "{key}" {{ discard; }}"#
        )) == vec![Action::Discard]
    };
    assert!(item("host", "mx1.example.com"));
    assert!(item("domain", "example.com"));
    assert!(item("location", "MDA"));
    assert!(item("name", "Petrel"));
    assert!(item("phase", "during"));
    assert!(item("version", env!("CARGO_PKG_VERSION")));
    assert!(item("NAME", "petrel"));
    assert!(!item("name", "Dovecot"));
    assert!(!item("remote-ip", ""));
    // RFC 5183 section 5 example shape: match on the domain.
    assert_eq!(
        exec(
            r#"require ["environment", "variables", "fileinto"];
if environment :matches "domain" "*.com" { fileinto "${1}"; }"#
        ),
        vec![fileinto("example")]
    );
    // An unavailable item has no value: :count sees 0; an unknown host hides host and domain.
    assert_eq!(
        exec(
            r#"require ["environment", "relational"]; if environment :count "eq" "remote-host" "0" { discard; }"#
        ),
        vec![Action::Discard]
    );
    let nohost = Envelope {
        host: String::new(),
        ..env()
    };
    let src = r#"require "environment"; if environment :matches "host" "*" { discard; }"#;
    assert_eq!(exec_with(src, MSG, &nohost).actions, vec![keep()]);
    assert!(parse(r#"if environment "name" "x" {}"#, &Limits::default()).is_err());
}

#[test]
fn new_extensions_are_advertised() {
    for ext in [
        "regex",
        "mailbox",
        "encoded-character",
        "vacation-seconds",
        "date",
        "index",
        "environment",
    ] {
        assert!(SUPPORTED_EXTENSIONS.contains(&ext), "{ext}");
        assert!(parse(&format!("require \"{ext}\";"), &Limits::default()).is_ok());
    }
}
