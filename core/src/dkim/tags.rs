//! Tag=value lists (RFC 6376 3.2), the syntax of both DKIM-Signature fields and key records.

/// Upper bound on the tags of one list: real lists have about a dozen, and a bound keeps a
/// hostile field from costing more than its bytes.
const MAX_TAGS: usize = 64;

/// One `name=value` pair, the value with its surrounding whitespace trimmed and the inner
/// whitespace (folding included) kept as it was: each tag's own syntax says what whitespace
/// means inside it (`b=` and `p=` drop it, `h=` allows it around colons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag name, case-sensitive as RFC 6376 3.2 requires.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
}

/// Parses a tag-list.
///
/// `tag-list = tag-spec *( ";" tag-spec ) [ ";" ]`, where
/// `tag-spec = [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]`, `tag-name = ALPHA *(ALPHA /
/// DIGIT / "_")` and the value's characters are `%x21-3A / %x3C-7E` with whitespace only between
/// them. A duplicated tag name makes the whole list invalid (RFC 6376 3.2). Empty specs (`;;`)
/// are tolerated, as deployed verifiers do.
pub fn parse(text: &str) -> Result<Vec<Tag>, String> {
    let mut tags: Vec<Tag> = Vec::new();
    for spec in text.split(';') {
        if spec.bytes().all(is_fws_byte) {
            continue;
        }
        let Some((name, value)) = spec.split_once('=') else {
            return Err(format!("tag without '=': {:?}", abbreviate(spec)));
        };
        let name = name.trim_matches(is_fws_char);
        let valid_name = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_name {
            return Err(format!("bad tag name {:?}", abbreviate(name)));
        }
        let value = value.trim_matches(is_fws_char);
        if let Some(bad) = value
            .bytes()
            .find(|&b| !(is_fws_byte(b) || (0x21..=0x7e).contains(&b)))
        {
            return Err(format!("bad byte 0x{bad:02x} in tag {name}"));
        }
        if !valid_folding(value) {
            return Err(format!("bad line folding in tag {name}"));
        }
        if tags.iter().any(|t| t.name == name) {
            return Err(format!("duplicate tag {name}"));
        }
        if tags.len() == MAX_TAGS {
            return Err("too many tags".into());
        }
        tags.push(Tag {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    Ok(tags)
}

/// The value of tag `name`, if present.
pub fn get<'a>(tags: &'a [Tag], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.name == name)
        .map(|t| t.value.as_str())
}

/// `value` with every whitespace byte (SP, HTAB, CR, LF) removed: base64 values may be folded.
pub fn strip_whitespace(value: &str) -> String {
    value.chars().filter(|c| !is_fws_char(*c)).collect()
}

/// Whitespace in the folding-whitespace sense: SP, HTAB and the CRLF of a fold.
pub fn is_fws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_fws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// CR and LF appear only as CRLF followed by SP or HTAB (a fold), never alone.
fn valid_folding(value: &str) -> bool {
    let b = value.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let ok = match c {
            b'\r' => b.get(i + 1) == Some(&b'\n') && matches!(b.get(i + 2), Some(b' ' | b'\t')),
            b'\n' => i > 0 && b[i - 1] == b'\r',
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn abbreviate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_folding_and_trailing_semicolon() {
        let tags = parse("v=1; a=rsa-sha256;\r\n\td=example.com ; b= ab\r\n cd ;").unwrap();
        let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["v", "a", "d", "b"]);
        assert_eq!(get(&tags, "d"), Some("example.com"));
        assert_eq!(get(&tags, "b"), Some("ab\r\n cd"));
        assert_eq!(strip_whitespace(get(&tags, "b").unwrap()), "abcd");
    }

    #[test]
    fn rejects_malformed_lists() {
        assert!(parse("v=1; v=1").is_err(), "duplicate");
        assert!(parse("v=1; novalue").is_err(), "no '='");
        assert!(parse("1v=1").is_err(), "name starts with a digit");
        assert!(parse("v=a;b=\u{e9}").is_err(), "non-ASCII value");
        assert!(parse("v=a\nb").is_err(), "bare LF");
        assert!(parse("v=a\r\nb").is_err(), "CRLF not followed by WSP");
        assert_eq!(parse("v=").unwrap()[0].value, "", "empty value is allowed");
    }
}
