//! Relaxed canonicalization, as a property: a message signed relaxed/relaxed still verifies after
//! any rewrapping that RFC 6376 3.4.2 and 3.4.4 make equivalent (refolded header values, other
//! runs of WSP, name case, WSP around the colon and at line ends, trailing empty lines added or
//! removed), for Ed25519 and RSA; and one changed word in a signed field or in the body fails,
//! rewrapped or not.

mod dkim_support;

use std::sync::Arc;

use dkim_support::*;
use petrel_core::dkim::{Canon, DkimResult, SigningKey};
use petrel_core::dns::Answer;
use proptest::prelude::*;
use proptest::sample::Index;

const NOW: i64 = 1_795_000_000;

/// Fields the signer's default list covers, so a changed word in one must break the signature.
const SIGNED: &[&str] = &["To", "Subject", "Cc", "Reply-To", "Date", "Message-ID"];
/// A field outside the default list: rewrapped like the others, never changed.
const UNSIGNED: &str = "X-Mailer";

/// A message as fields and lines of words; rendered with single spaces, it is what gets signed.
#[derive(Debug, Clone)]
struct Message {
    /// `From` first, then some of [`SIGNED`] and maybe [`UNSIGNED`].
    fields: Vec<(String, Vec<String>)>,
    /// Body lines: whether the line starts with a space, then its words (none: an empty line).
    lines: Vec<(bool, Vec<String>)>,
    /// Empty lines after the last line of `lines`.
    trailing_empty: usize,
}

impl Message {
    fn render(&self) -> Vec<u8> {
        // The identity rewrap: every choice 0.
        rewrap(self, &[])
    }

    /// Every word a change must be caught in: (field or line index, word index, in the body).
    fn changeable(&self) -> Vec<(usize, usize, bool)> {
        let mut out = Vec::new();
        for (i, (name, words)) in self.fields.iter().enumerate() {
            if name != UNSIGNED {
                out.extend((0..words.len()).map(|j| (i, j, false)));
            }
        }
        for (i, (_, words)) in self.lines.iter().enumerate() {
            out.extend((0..words.len()).map(|j| (i, j, true)));
        }
        out
    }

    /// The same message with one word changed (an `x` appended: never relaxed-equivalent).
    fn with_word_changed(&self, (i, j, body): (usize, usize, bool)) -> Message {
        let mut m = self.clone();
        let word = if body {
            &mut m.lines[i].1[j]
        } else {
            &mut m.fields[i].1[j]
        };
        word.push('x');
        m
    }
}

/// Draws from `choices` in turn (0 once they run out, so that shrinking toward zeros shrinks
/// toward the plain rendering); option 0 of every list below is what [`Message::render`] writes.
struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Choices<'_> {
    fn pick<'o>(&mut self, options: &[&'o str]) -> &'o str {
        options[self.number(options.len())]
    }

    fn number(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(b) % n
    }
}

/// WSP runs between words of a header value; the ones with CRLF fold the field (3.4.2 unfolds
/// them, then compresses the run to one SP).
const HEADER_GAPS: &[&str] = &[
    " ", "  ", "\t", " \t ", "\r\n ", "\r\n\t", " \r\n\t ", "\r\n  ",
];
/// After the colon: all deleted by 3.4.2, a fold included.
const AFTER_COLON: &[&str] = &[" ", "", "  ", "\t", "\r\n ", "\r\n\t", " \r\n "];
/// Before the colon: deleted by 3.4.2.
const BEFORE_COLON: &[&str] = &["", " ", "\t", " \t"];
/// At the end of a header line or a body line: deleted by 3.4.2 and 3.4.4.
const LINE_END: &[&str] = &["", " ", "\t", " \t ", "\t\t"];
/// WSP runs inside a body line, leading ones included: one SP after 3.4.4.
const BODY_GAPS: &[&str] = &[" ", "  ", "\t", " \t", "\t\t  "];

/// Writes `m` with the WSP, folding and name case that `choices` select, all relaxed-equivalent.
fn rewrap(m: &Message, choices: &[u8]) -> Vec<u8> {
    let mut c = Choices {
        bytes: choices,
        at: 0,
    };
    let mut out = String::new();
    for (name, words) in &m.fields {
        for ch in name.chars() {
            // Field names compare without case (3.4.2 lowercases them).
            out.push(if c.number(2) == 1 {
                if ch.is_ascii_uppercase() {
                    ch.to_ascii_lowercase()
                } else {
                    ch.to_ascii_uppercase()
                }
            } else {
                ch
            });
        }
        out.push_str(c.pick(BEFORE_COLON));
        out.push(':');
        out.push_str(c.pick(AFTER_COLON));
        for (k, w) in words.iter().enumerate() {
            if k > 0 {
                out.push_str(c.pick(HEADER_GAPS));
            }
            out.push_str(w);
        }
        out.push_str(c.pick(LINE_END));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");

    let mut body = String::new();
    for (leading, words) in &m.lines {
        if *leading {
            body.push_str(c.pick(BODY_GAPS));
        }
        for (k, w) in words.iter().enumerate() {
            if k > 0 {
                body.push_str(c.pick(BODY_GAPS));
            }
            body.push_str(w);
        }
        body.push_str(c.pick(LINE_END));
        body.push_str("\r\n");
    }
    // Trailing empty lines: as many as before, none, or more; any of them may hold WSP.
    let trailing = match c.number(4) {
        0 => m.trailing_empty,
        1 => 0,
        n => m.trailing_empty + n,
    };
    for _ in 0..trailing {
        body.push_str(c.pick(LINE_END));
        body.push_str("\r\n");
    }
    // A body without its final CRLF gets one in relaxed body canonicalization (3.4.4).
    if c.number(4) == 3 && body.ends_with("\r\n") {
        body.truncate(body.len() - 2);
    }
    out.push_str(&body);
    out.into_bytes()
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{1,8}"
}

fn words(min: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(word(), min..6)
}

fn message() -> impl Strategy<Value = Message> {
    let mut names: Vec<&'static str> = SIGNED.to_vec();
    names.push(UNSIGNED);
    let fields = proptest::sample::subsequence(names, 0..=4).prop_flat_map(|names| {
        let n = names.len();
        (words(1), proptest::collection::vec(words(1), n)).prop_map(move |(from, values)| {
            let mut fields = vec![("From".to_string(), from)];
            fields.extend(names.iter().map(|n| n.to_string()).zip(values));
            fields
        })
    });
    let line = (any::<bool>(), words(0))
        .prop_map(|(leading, words)| (leading && !words.is_empty(), words));
    (fields, proptest::collection::vec(line, 0..8), 0usize..3).prop_map(
        |(fields, lines, trailing_empty)| Message {
            fields,
            lines,
            trailing_empty,
        },
    )
}

fn choices() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..200)
}

fn dns_for(key: &SigningKey) -> impl Fn(&str) -> Answer + use<> {
    let record = key.public_key_record();
    move |name: &str| {
        if name == "sel._domainkey.example.com" {
            txt(&record)
        } else {
            Answer::NxDomain
        }
    }
}

/// The `DKIM-Signature:` field Petrel writes for `message`, relaxed/relaxed.
fn signature(key: &Arc<SigningKey>, message: &[u8]) -> Vec<u8> {
    let signed = sign(config(Canon::Relaxed, Canon::Relaxed), key, NOW, message);
    signed[..signed.len() - message.len()].to_vec()
}

fn result(key: &SigningKey, field: &[u8], message: &[u8]) -> DkimResult {
    let mut whole = field.to_vec();
    whole.extend_from_slice(message);
    let results = verify(&whole, NOW, &dns_for(key));
    assert_eq!(results.len(), 1, "{results:?}");
    results.into_iter().next().unwrap().result
}

/// The signature field itself is a header field too: its name case may change.
fn rewrap_field(field: &[u8], choices: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(field.to_vec()).unwrap();
    let name = match choices.first().copied().unwrap_or(0) % 3 {
        0 => "DKIM-Signature",
        1 => "dkim-signature",
        _ => "DKIM-SIGNATURE",
    };
    text.replacen("DKIM-Signature", name, 1).into_bytes()
}

fn rewrapped_still_verifies(key: &Arc<SigningKey>, m: &Message, choices: &[u8]) {
    let field = signature(key, &m.render());
    let rewrapped = rewrap(m, choices);
    let r = result(key, &rewrap_field(&field, choices), &rewrapped);
    assert_eq!(
        r,
        DkimResult::Pass,
        "signed:\n{}\nrewrapped:\n{}",
        String::from_utf8_lossy(&m.render()),
        String::from_utf8_lossy(&rewrapped)
    );
}

fn changed_word_fails(key: &Arc<SigningKey>, m: &Message, choices: &[u8], at: Index) {
    let field = signature(key, &m.render());
    let targets = m.changeable();
    let target = targets[at.index(targets.len())];
    let changed = m.with_word_changed(target);
    let expect = if target.2 {
        DkimResult::Fail("body hash did not verify".into())
    } else {
        DkimResult::Fail("signature did not verify".into())
    };
    for message in [changed.render(), rewrap(&changed, choices)] {
        assert_eq!(
            result(key, &field, &message),
            expect,
            "changed {target:?}:\n{}",
            String::from_utf8_lossy(&message)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ed25519_rewrapped_still_verifies(m in message(), c in choices()) {
        rewrapped_still_verifies(&ed25519_key(), &m, &c);
    }

    #[test]
    fn rsa_rewrapped_still_verifies(m in message(), c in choices()) {
        rewrapped_still_verifies(&rsa_key(), &m, &c);
    }

    #[test]
    fn ed25519_changed_word_fails(m in message(), c in choices(), at in any::<Index>()) {
        changed_word_fails(&ed25519_key(), &m, &c, at);
    }

    #[test]
    fn rsa_changed_word_fails(m in message(), c in choices(), at in any::<Index>()) {
        changed_word_fails(&rsa_key(), &m, &c, at);
    }
}

/// The rewrapper is not vacuous: with every choice non-zero, the bytes differ from what was
/// signed, and simple/simple, which keeps them, fails.
#[test]
fn rewrapping_changes_the_bytes() {
    let m = Message {
        fields: vec![
            ("From".into(), vec!["Alice".into(), "alice".into()]),
            (
                "Subject".into(),
                vec!["Lunch".into(), "on".into(), "Friday".into()],
            ),
        ],
        lines: vec![
            (false, vec!["Hi".into(), "Bob".into()]),
            (true, vec!["see".into(), "you".into()]),
        ],
        trailing_empty: 1,
    };
    let choices = [1u8; 64];
    let rewrapped = rewrap(&m, &choices);
    assert_ne!(rewrapped, m.render());
    let key = ed25519_key();
    let signed = sign(config(Canon::Simple, Canon::Simple), &key, NOW, &m.render());
    let field = &signed[..signed.len() - m.render().len()];
    assert!(matches!(
        result(&key, field, &rewrapped),
        DkimResult::Fail(_)
    ));
    rewrapped_still_verifies(&key, &m, &choices);
}
