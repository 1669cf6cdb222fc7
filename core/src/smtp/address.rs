//! RFC 5321 paths: `Reverse-path` (MAIL FROM) and `Forward-path` (RCPT TO), with SMTPUTF8.

use std::fmt;

/// The domain part of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A domain name, lowercased, without a trailing dot.
    Name(String),
    /// An address literal, the text between the brackets (`127.0.0.1`, `IPv6:::1`).
    Literal(String),
}

/// A mailbox `local@domain`. Source routes are stripped (RFC 5321 4.1.1.3, Appendix C).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part, unquoted (quotes and backslash escapes removed).
    pub local: String,
    /// True when the local part was a quoted string.
    pub quoted: bool,
    /// The domain.
    pub domain: Domain,
}

/// MAIL FROM: a mailbox, or the null path `<>` of bounces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`.
    Null,
    /// A mailbox.
    Mailbox(Address),
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(name) => f.write_str(name),
            Domain::Literal(lit) => write!(f, "[{lit}]"),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted || !is_dot_string(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        write!(f, "@{}", self.domain)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Mailbox(a) => a.fmt(f),
        }
    }
}

impl Address {
    /// The domain name, if it is one (not a literal).
    pub fn domain_name(&self) -> Option<&str> {
        match &self.domain {
            Domain::Name(n) => Some(n),
            Domain::Literal(_) => None,
        }
    }

    /// True when the local part holds characters that older MTAs read as routing
    /// (`%`, `!`, `@`): the classic relay tricks. Never acceptable for a local recipient.
    pub fn has_routing_chars(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }
}

/// Why a path did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not the grammar of RFC 5321 4.1.2.
    Syntax,
    /// Non-ASCII without SMTPUTF8.
    NeedsSmtpUtf8,
    /// Longer than RFC 5321 4.5.3.1 allows.
    TooLong,
}

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;
const MAX_PATH: usize = 256;

/// Parses a path at the start of `s` (after `FROM:`/`TO:`), returning it and the rest of the line
/// (the parameters). `<>` gives `None`. Brackets are expected; a bare `user@host` without spaces
/// is tolerated, as most MTAs do.
pub fn parse_path(s: &str, utf8: bool) -> Result<(Option<Address>, &str), PathError> {
    let s = s.trim_start_matches(' ');
    let (inner, rest) = if let Some(body) = s.strip_prefix('<') {
        let end = find_closing(body).ok_or(PathError::Syntax)?;
        (&body[..end], &body[end + 1..])
    } else {
        let end = s.find(' ').unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(PathError::Syntax);
    }
    if inner.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if inner.is_empty() {
        return Ok((None, rest));
    }
    if !utf8 && !inner.is_ascii() {
        return Err(PathError::NeedsSmtpUtf8);
    }
    let mailbox = strip_route(inner)?;
    Ok((Some(parse_mailbox(mailbox)?), rest))
}

/// Finds the `>` that closes the path, skipping a quoted local part.
fn find_closing(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `@a,@b:user@c` -> `user@c` (the route is syntax-checked, then ignored).
fn strip_route(s: &str) -> Result<&str, PathError> {
    if !s.starts_with('@') {
        return Ok(s);
    }
    let colon = s.find(':').ok_or(PathError::Syntax)?;
    for hop in s[..colon].split(',') {
        let domain = hop.strip_prefix('@').ok_or(PathError::Syntax)?;
        parse_domain(domain)?;
    }
    Ok(&s[colon + 1..])
}

/// Parses `local@domain`.
pub fn parse_mailbox(s: &str) -> Result<Address, PathError> {
    let (local, quoted, rest) = if let Some(body) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) if (' '..='~').contains(&e) || !e.is_ascii() => local.push(e),
                    _ => return Err(PathError::Syntax),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c if (c.is_ascii_graphic() || c == ' ') || !c.is_ascii() => local.push(c),
                _ => return Err(PathError::Syntax),
            }
        }
        let end = end.ok_or(PathError::Syntax)?;
        (local, true, &body[end + 1..])
    } else {
        let at = s.rfind('@').ok_or(PathError::Syntax)?;
        let local = &s[..at];
        if !is_dot_string(local) {
            return Err(PathError::Syntax);
        }
        (local.to_string(), false, &s[at..])
    };
    let domain = rest.strip_prefix('@').ok_or(PathError::Syntax)?;
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err(if local.is_empty() {
            PathError::Syntax
        } else {
            PathError::TooLong
        });
    }
    Ok(Address {
        local,
        quoted,
        domain: parse_domain(domain)?,
    })
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5321 Dot-string: atoms of atext joined by single dots.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Parses a domain name (trailing dot tolerated and removed, lowercased) or `[literal]`.
pub fn parse_domain(s: &str) -> Result<Domain, PathError> {
    if let Some(lit) = s.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(PathError::Syntax)?;
        // RFC 5321 4.1.3: IPv4, `IPv6:...` or `tag:dcontent`; characters that would end a path
        // or a quoted string are refused, so every literal can be written back as a path.
        let ok_char = |c: char| c.is_ascii_graphic() && !"[]\\\"<>".contains(c);
        let ipv4 = lit.split('.').count() == 4 && lit.split('.').all(|p| p.parse::<u8>().is_ok());
        let tagged = lit.split_once(':').is_some_and(|(tag, rest)| {
            !tag.is_empty()
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !rest.is_empty()
        });
        if lit.len() > 64 || !lit.chars().all(ok_char) || !(ipv4 || tagged) {
            return Err(PathError::Syntax);
        }
        return Ok(Domain::Literal(lit.to_string()));
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > MAX_DOMAIN {
        return Err(PathError::Syntax);
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii());
        if !ok {
            return Err(PathError::Syntax);
        }
    }
    Ok(Domain::Name(name.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<Option<Address>, PathError> {
        parse_path(s, true).map(|(a, _)| a)
    }

    #[test]
    fn plain_null_and_params() {
        let (a, rest) = parse_path("<Alice@Example.COM.> SIZE=10", false).unwrap();
        let a = a.unwrap();
        assert_eq!(a.local, "Alice");
        assert_eq!(a.domain, Domain::Name("example.com".into()));
        assert_eq!(rest, " SIZE=10");
        assert_eq!(path("<>").unwrap(), None);
        assert_eq!(path("bob@x.org").unwrap().unwrap().to_string(), "bob@x.org");
    }

    #[test]
    fn routes_are_stripped_and_quotes_kept_apart() {
        let a = path("<@relay.example,@b.example:alice@example.com>")
            .unwrap()
            .unwrap();
        assert_eq!(a.to_string(), "alice@example.com");
        let q = path("<\"alice@evil.example\"@example.com>")
            .unwrap()
            .unwrap();
        assert!(q.quoted && q.has_routing_chars());
        assert_eq!(q.domain_name(), Some("example.com"));
        assert_eq!(q.to_string(), "\"alice@evil.example\"@example.com");
        assert!(
            path("<alice%evil@example.com>")
                .unwrap()
                .unwrap()
                .has_routing_chars()
        );
    }

    #[test]
    fn bad_paths() {
        for bad in [
            "<alice>",
            "<@x:>",
            "<a@>",
            "<a..b@x>",
            "<.a@x>",
            "<a@x..y>",
            "<a@-x>",
            "<a@x",
            "<a@[1.2.3.4>",
            "<a b@x>",
            "<a@x>junk",
            "<\"unterminated@x>",
        ] {
            assert!(path(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(
            parse_path("<ü@x>", false).unwrap_err(),
            PathError::NeedsSmtpUtf8
        );
        assert!(parse_path("<ü@bücher.example>", true).is_ok());
        assert_eq!(
            path(&format!("<{}@x>", "a".repeat(65))).unwrap_err(),
            PathError::TooLong
        );
        assert!(path("<a@[x(y;z]>").is_err());
        assert!(parse_mailbox("at0gser@[<\"1.1U]").is_err());
        assert!(path("<a@[IPv6:::1]>").is_ok());
        let lit = path("<a@[127.0.0.1]>").unwrap().unwrap();
        assert_eq!(lit.domain, Domain::Literal("127.0.0.1".into()));
    }
}
