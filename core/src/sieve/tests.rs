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
    assert_eq!(err_at("require [\"fileinto\",\n  \"date\"];"), (2, 3));
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
