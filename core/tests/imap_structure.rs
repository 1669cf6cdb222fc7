//! IMAP message structure answers compared byte for byte with Dovecot's, recorded in
//! `imap_corpus/*.dovecot` by `imap_corpus/regenerate.sh` (see `imap_corpus/README.md`), and
//! property tests that no input makes them panic.

use petrel_core::imap::structure::{
    BinaryError, SectionSpec, SectionText, binary, binary_is_decoded, binary_size, body_structure,
    envelope, section,
};
use proptest::prelude::*;
use std::path::Path;

/// Parses `BODY.PEEK[1.2.MIME]<5.10>` style section specs of commands.txt.
fn parse_section(spec: &str) -> (SectionSpec, Option<(usize, usize)>) {
    let (inner, partial) = spec.split_once(']').expect("]");
    let partial = partial.strip_prefix('<').map(|p| {
        let (a, b) = p.trim_end_matches('>').split_once('.').expect("partial");
        (a.parse().expect("offset"), b.parse().expect("length"))
    });
    let mut part = Vec::new();
    let mut rest = inner;
    while let Some(first) = rest.split('.').next() {
        match first.parse::<u32>() {
            Ok(n) => {
                part.push(n);
                rest = rest.get(first.len() + 1..).unwrap_or("");
            }
            Err(_) => break,
        }
    }
    let names = |s: &str| -> Vec<String> {
        let list = s.trim().trim_start_matches('(').trim_end_matches(')');
        list.split_whitespace().map(str::to_string).collect()
    };
    let text = if rest.is_empty() {
        SectionText::Full
    } else if rest == "HEADER" {
        SectionText::Header
    } else if rest == "TEXT" {
        SectionText::Text
    } else if rest == "MIME" {
        SectionText::Mime
    } else if let Some(l) = rest.strip_prefix("HEADER.FIELDS.NOT ") {
        SectionText::HeaderFieldsNot(names(l))
    } else if let Some(l) = rest.strip_prefix("HEADER.FIELDS ") {
        SectionText::HeaderFields(names(l))
    } else {
        panic!("unknown section {rest}")
    };
    (SectionSpec { part, text }, partial)
}

fn literal(out: &mut Vec<u8>, data: &[u8], literal8: bool) {
    let tilde = if literal8 { "~" } else { "" };
    out.extend_from_slice(format!("{tilde}{{{}}}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
}

/// What an IMAP server answers to `tN FETCH 1 (ITEM)` for this message, as Dovecot words it.
fn answer(raw: &[u8], tag: &str, item: &str) -> Vec<u8> {
    let mut out = b"* 1 FETCH (".to_vec();
    let ok = |out: &mut Vec<u8>| {
        out.extend_from_slice(format!(")\r\n{tag} OK Fetch completed.\r\n").as_bytes());
    };
    let unknown_cte = |tag: &str| {
        format!(
            "* 1 FETCH (UID 1)\r\n{tag} NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding.\r\n"
        )
        .into_bytes()
    };
    let part_of = |s: &str| -> Vec<u32> {
        let inner = s.split_once('[').expect("[").1.trim_end_matches(']');
        inner
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().expect("part"))
            .collect()
    };
    match item {
        "ENVELOPE" => out.extend_from_slice(format!("ENVELOPE {}", envelope(raw)).as_bytes()),
        "BODYSTRUCTURE" => {
            out.extend_from_slice(format!("BODYSTRUCTURE {}", body_structure(raw, true)).as_bytes())
        }
        "BODY" => out.extend_from_slice(format!("BODY {}", body_structure(raw, false)).as_bytes()),
        _ if item.starts_with("BODY.PEEK[") => {
            let spec = &item["BODY.PEEK[".len()..];
            let (sec, partial) = parse_section(spec);
            let mut data = section(raw, &sec);
            let shown = spec.split_once(']').expect("]").0.to_ascii_uppercase();
            out.extend_from_slice(format!("BODY[{shown}]").as_bytes());
            if let Some((offset, len)) = partial {
                let start = offset.min(data.len());
                let end = (offset + len).min(data.len());
                data = data[start..end].to_vec();
                out.extend_from_slice(format!("<{offset}>").as_bytes());
            }
            out.push(b' ');
            literal(&mut out, &data, false);
        }
        _ if item.starts_with("BINARY.PEEK[") => {
            let part = part_of(item);
            match binary(raw, &part) {
                Ok(data) => {
                    let shown = &item["BINARY.PEEK".len()..];
                    out.extend_from_slice(format!("BINARY{shown} ").as_bytes());
                    literal(&mut out, &data, binary_is_decoded(raw, &part));
                }
                Err(BinaryError::UnknownCte) => return unknown_cte(tag),
            }
        }
        _ if item.starts_with("BINARY.SIZE[") => match binary_size(raw, &part_of(item)) {
            Ok(n) => out.extend_from_slice(format!("{item} {n}").as_bytes()),
            Err(BinaryError::UnknownCte) => return unknown_cte(tag),
        },
        _ => panic!("unknown item {item}"),
    }
    ok(&mut out);
    out
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn corpus_matches_dovecot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imap_corpus");
    let commands = std::fs::read_to_string(dir.join("commands.txt")).expect("commands.txt");
    let items: Vec<&str> = commands.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut emls: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert!(emls.len() >= 15, "corpus incomplete");
    let mut failures = Vec::new();
    let mut checked = 0;
    for eml in &emls {
        let raw = std::fs::read(eml).expect("eml");
        let expected = std::fs::read(eml.with_extension("dovecot")).expect("dovecot file");
        let mut pos = 0;
        for (n, item) in items.iter().enumerate() {
            let got = answer(&raw, &format!("t{}", n + 1), item);
            let want = &expected[pos.min(expected.len())..];
            checked += 1;
            if want.starts_with(&got) {
                pos += got.len();
            } else {
                // Resynchronise on the tagged reply so one mismatch does not hide the rest.
                let tag = format!("\r\nt{} ", n + 1);
                let end = want
                    .windows(tag.len())
                    .position(|w| w == tag.as_bytes())
                    .map(|i| i + 2 + line_len(&want[i + 2..]))
                    .unwrap_or(want.len());
                failures.push(format!(
                    "{} {item}:\n  dovecot: {:?}\n  petrel:  {:?}",
                    eml.file_name().expect("name").to_string_lossy(),
                    show(&want[..end]),
                    show(&got)
                ));
                pos += end;
            }
        }
        assert_eq!(pos, expected.len(), "{}: trailing data", eml.display());
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} answers differ from Dovecot:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn line_len(b: &[u8]) -> usize {
    b.iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |i| i + 1)
}

fn any_section() -> impl Strategy<Value = SectionSpec> {
    let text = prop_oneof![
        Just(SectionText::Full),
        Just(SectionText::Header),
        Just(SectionText::Text),
        Just(SectionText::Mime),
        Just(SectionText::HeaderFields(vec![
            "From".into(),
            "content-type".into()
        ])),
        Just(SectionText::HeaderFieldsNot(vec!["Subject".into()])),
    ];
    (proptest::collection::vec(0u32..4, 0..4), text)
        .prop_map(|(part, text)| SectionSpec { part, text })
}

/// Bytes that look like mail: header lines, boundaries, blank lines, odd line ends.
fn mailish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"Content-Type: multipart/digest; boundary=\"b\"\n".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Transfer-Encoding: quoted-printable\r\n".to_vec()),
        Just(b"From: \"a\" <b@c>, g: x@y;, (c) <@r:m@d>\r\n".to_vec()),
        Just(b"Subject: a\r\n \"b\"\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"--b\r\n".to_vec()),
        Just(b"--b--\r\n".to_vec()),
        Just(b"=4\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|v| v.concat())
}

fn exercise(raw: &[u8], sec: &SectionSpec) {
    let _ = envelope(raw);
    let _ = body_structure(raw, true);
    let _ = body_structure(raw, false);
    let _ = section(raw, sec);
    let _ = binary(raw, &sec.part);
    let _ = binary_size(raw, &sec.part);
    let full = SectionSpec {
        part: Vec::new(),
        text: SectionText::Full,
    };
    let got = section(raw, &full);
    if !raw.contains(&b'\n')
        || raw.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r') && raw[0] != b'\n'
    {
        assert_eq!(got, raw, "BODY[] of a CRLF message is the message");
    } else {
        assert_eq!(
            got.len(),
            raw.len() + bare_lfs(raw),
            "BODY[] turns bare LF into CRLF"
        );
    }
}

fn bare_lfs(raw: &[u8]) -> usize {
    (0..raw.len())
        .filter(|&i| raw[i] == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
        .count()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400), sec in any_section()) {
        exercise(&raw, &sec);
    }

    #[test]
    fn mail_like_bytes_never_panic(raw in mailish(), sec in any_section()) {
        exercise(&raw, &sec);
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut raw = Vec::new();
    for _ in 0..5000 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    let _ = body_structure(&raw, true);
    let _ = section(
        &raw,
        &SectionSpec {
            part: vec![1; 200],
            text: SectionText::Mime,
        },
    );
}
