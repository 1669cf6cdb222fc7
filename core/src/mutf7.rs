//! Modified UTF-7 (RFC 3501 section 5.1.3): how IMAP4rev1 clients name mailboxes, and how
//! Dovecot and Courier store non-ASCII folder names on disk in Maildir++.
//!
//! Printable ASCII stands for itself except `&`, written `&-`; every other run of characters is
//! UTF-16 in base64 (with `,` for `/`, no padding) between `&` and `-`.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

fn engine() -> GeneralPurpose {
    // The IMAP alphabet of RFC 3501: base64 with ',' instead of '/'.
    let alphabet =
        Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
            .expect("a valid 64-character alphabet");
    GeneralPurpose::new(
        &alphabet,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    )
}

fn direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a UTF-8 mailbox name in modified UTF-7. Never fails.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Why a modified UTF-7 name is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutf7Error;

impl std::fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not valid modified UTF-7")
    }
}

impl std::error::Error for Mutf7Error {}

/// Decodes a modified UTF-7 name. Strict: only the canonical encoding of some UTF-8 name is
/// accepted (so a name has exactly one on-disk form).
pub fn decode(text: &str) -> Result<String, Mutf7Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !direct(c) {
            return Err(Mutf7Error);
        }
        if c != '&' {
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        let end = rest.find('-').ok_or(Mutf7Error)?;
        let b64 = &rest[1..end];
        rest = &rest[end + 1..];
        if b64.is_empty() {
            out.push('&');
            continue;
        }
        let bytes = engine().decode(b64).map_err(|_| Mutf7Error)?;
        if bytes.len() % 2 != 0 {
            return Err(Mutf7Error);
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let decoded = String::from_utf16(&units).map_err(|_| Mutf7Error)?;
        if decoded.chars().any(direct) {
            return Err(Mutf7Error);
        }
        out.push_str(&decoded);
    }
    if encode(&out) != text {
        return Err(Mutf7Error);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3501_examples() {
        // RFC 3501 5.1.3: "~peter/mail/台北/日本語"
        assert_eq!(
            encode("~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"
        );
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("📧"), "&2D3c5w-");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "&",
            "&Jjo",
            "&AGE-",
            "&U,BTFw-&ZeVnLIqe-",
            "caf\u{e9}",
            "&Jjo!-",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(name in "\\PC{0,20}") {
            let e = encode(&name);
            prop_assert!(e.chars().all(direct));
            prop_assert_eq!(decode(&e).unwrap(), name);
        }
    }
}
