//! SPF macros (RFC 7208 section 7): parsing a `macro-string` once and expanding it against the
//! values of one check.
//!
//! A macro string is parsed when its record is parsed, so a syntax error anywhere in a record is
//! found before anything is evaluated (section 4.6). Expansion never fails on the values: a value
//! that makes the result too long is the only error, so a hostile record cannot build a huge
//! string out of small pieces.

use core::net::IpAddr;
use std::fmt;

/// The longest string an expansion may produce; longer is an error (a domain is at most 253
/// bytes after truncation, an explanation is cut much shorter, so this only stops abuse).
pub const MAX_EXPANSION: usize = 4096;

/// The delimiters a macro may split on (section 7.1, `delimiter`).
const DELIMITERS: &[u8] = b".-+,/_=";

/// One piece of a [`MacroString`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Text copied as is.
    Literal(String),
    /// `%{...}`.
    Macro {
        /// The macro letter, lowercased.
        letter: u8,
        /// The letter was uppercase: URL-encode the value.
        url_encode: bool,
        /// Keep this many right-hand parts (never 0).
        digits: Option<u32>,
        /// Reverse the parts first.
        reverse: bool,
        /// Split on these; empty means `.`.
        delimiters: Vec<u8>,
    },
    /// `%%`, `%_` or `%-`: a literal `%`, space or `%20`.
    Escape(&'static str),
}

/// A parsed `macro-string` (or `explain-string`) of RFC 7208 section 7.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    tokens: Vec<Token>,
    text: String,
}

/// The values macros expand to, for one check (section 7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroVars {
    /// `%{s}`: the sender, `local-part@domain` (`postmaster` substituted for an empty local part).
    pub sender: String,
    /// `%{l}`: the local part of the sender.
    pub local: String,
    /// `%{o}`: the domain of the sender.
    pub sender_domain: String,
    /// `%{d}`: the domain whose record is being evaluated.
    pub domain: String,
    /// `%{i}`, `%{c}`, `%{v}`: the client address (an IPv4-mapped IPv6 address is IPv4).
    pub ip: IpAddr,
    /// `%{h}`: the HELO/EHLO domain.
    pub helo: String,
    /// `%{r}`: the receiving host's name (explanations only).
    pub receiver: String,
    /// `%{t}`: seconds since the epoch (explanations only).
    pub now_unix: i64,
    /// `%{p}`: the validated domain name of the client, or `None` for `unknown`.
    pub validated: Option<String>,
}

impl MacroString {
    /// Parses `text`. With `explanation` the text is an `explain-string` (the TXT record an `exp=`
    /// points to): spaces are allowed and so are the letters `c`, `r` and `t`.
    ///
    /// # Errors
    /// A description of the first syntax error.
    pub fn parse(text: &str, explanation: bool) -> Result<MacroString, String> {
        let bytes = text.as_bytes();
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'%' {
                let visible = (0x21..=0x7e).contains(&b);
                if !(visible || (explanation && b == b' ')) {
                    return Err(format!("byte 0x{b:02x} is not allowed in {text:?}"));
                }
                literal.push(b as char);
                i += 1;
                continue;
            }
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            match bytes.get(i + 1) {
                Some(b'%') => tokens.push(Token::Escape("%")),
                Some(b'_') => tokens.push(Token::Escape(" ")),
                Some(b'-') => tokens.push(Token::Escape("%20")),
                Some(b'{') => {
                    let end = bytes[i + 2..]
                        .iter()
                        .position(|&c| c == b'}')
                        .map(|p| i + 2 + p)
                        .ok_or_else(|| format!("unterminated macro in {text:?}"))?;
                    tokens.push(parse_macro(&bytes[i + 2..end], explanation, text)?);
                    i = end + 1;
                    continue;
                }
                _ => return Err(format!("a lone '%' in {text:?}")),
            }
            i += 2;
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(MacroString {
            tokens,
            text: text.to_string(),
        })
    }

    /// Parses a `domain-spec` (section 7.1): a macro string that ends in a macro or in `.`
    /// followed by a valid top label (and an optional final dot).
    ///
    /// # Errors
    /// A description of the syntax error.
    pub fn parse_domain_spec(text: &str) -> Result<MacroString, String> {
        let spec = MacroString::parse(text, false)?;
        match spec.tokens.last() {
            None => Err("empty domain-spec".to_string()),
            Some(Token::Macro { .. } | Token::Escape(_)) => Ok(spec),
            Some(Token::Literal(last)) => {
                let last = last.strip_suffix('.').unwrap_or(last);
                // Lenient on one point: "%{d}." (a macro, then only the final dot) is accepted, as
                // most implementations do, although the grammar wants a top label there.
                if last.is_empty() && spec.tokens.len() > 1 {
                    return Ok(spec);
                }
                match last.rfind('.') {
                    Some(dot) if is_toplabel(&last[dot + 1..]) => Ok(spec),
                    _ => Err(format!("{text:?} does not end in a valid top label")),
                }
            }
        }
    }

    /// Whether expanding needs the validated domain name of the client (`%{p}`).
    pub fn uses_validated_name(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Macro { letter: b'p', .. }))
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Expands the string with `vars`.
    ///
    /// # Errors
    /// When the result would be longer than [`MAX_EXPANSION`] bytes.
    pub fn expand(&self, vars: &MacroVars) -> Result<String, String> {
        let mut out = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Escape(s) => out.push_str(s),
                Token::Macro {
                    letter,
                    url_encode,
                    digits,
                    reverse,
                    delimiters,
                } => {
                    let value = value(*letter, vars);
                    let delimiters: &[u8] = if delimiters.is_empty() {
                        b"."
                    } else {
                        delimiters
                    };
                    let mut parts: Vec<&str> = value
                        .split(|c: char| delimiters.contains(&(c as u8)))
                        .collect();
                    if *reverse {
                        parts.reverse();
                    }
                    if let Some(n) = digits {
                        let n = usize::try_from(*n).unwrap_or(usize::MAX);
                        if n < parts.len() {
                            parts.drain(..parts.len() - n);
                        }
                    }
                    let joined = parts.join(".");
                    if *url_encode {
                        url_encode_into(&joined, &mut out);
                    } else {
                        out.push_str(&joined);
                    }
                }
            }
            if out.len() > MAX_EXPANSION {
                return Err(format!(
                    "macro expansion of {:?} is longer than {MAX_EXPANSION} bytes",
                    self.text
                ));
            }
        }
        Ok(out)
    }
}

impl fmt::Display for MacroString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses the inside of `%{...}`: letter, digits, `r`, delimiters.
fn parse_macro(inner: &[u8], explanation: bool, text: &str) -> Result<Token, String> {
    let (&first, rest) = inner
        .split_first()
        .ok_or_else(|| format!("empty macro in {text:?}"))?;
    let letter = first.to_ascii_lowercase();
    let allowed: &[u8] = if explanation {
        b"slodiphvcrt"
    } else {
        b"slodiphv"
    };
    if !allowed.contains(&letter) {
        return Err(format!(
            "macro letter {:?} is not allowed here in {text:?}",
            first as char
        ));
    }
    let ndigits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let digits = if ndigits == 0 {
        None
    } else {
        let n = rest[..ndigits].iter().fold(0u32, |n, d| {
            n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
        });
        if n == 0 {
            return Err(format!("macro keeps zero parts in {text:?}"));
        }
        Some(n)
    };
    let mut rest = &rest[ndigits..];
    let reverse = matches!(rest.first(), Some(b'r' | b'R'));
    if reverse {
        rest = &rest[1..];
    }
    if let Some(bad) = rest.iter().find(|b| !DELIMITERS.contains(b)) {
        return Err(format!(
            "{:?} is not a macro delimiter in {text:?}",
            *bad as char
        ));
    }
    Ok(Token::Macro {
        letter,
        url_encode: first.is_ascii_uppercase(),
        digits,
        reverse,
        delimiters: rest.to_vec(),
    })
}

/// The value of one macro letter.
fn value(letter: u8, vars: &MacroVars) -> String {
    match letter {
        b's' => vars.sender.clone(),
        b'l' => vars.local.clone(),
        b'o' => vars.sender_domain.clone(),
        b'd' => vars.domain.clone(),
        b'i' => dotted_ip(vars.ip),
        b'p' => vars
            .validated
            .clone()
            .unwrap_or_else(|| "unknown".to_string()),
        b'v' => match vars.ip {
            IpAddr::V4(_) => "in-addr".to_string(),
            IpAddr::V6(_) => "ip6".to_string(),
        },
        b'h' => vars.helo.clone(),
        b'c' => vars.ip.to_string(),
        b'r' => vars.receiver.clone(),
        b't' => vars.now_unix.to_string(),
        // parse_macro admits no other letter.
        _ => String::new(),
    }
}

/// `%{i}`: dotted quad for IPv4, dot-separated nibbles for IPv6 (section 7.3).
pub(crate) fn dotted_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(63);
            for byte in v6.octets() {
                for nibble in [byte >> 4, byte & 0xf] {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            s
        }
    }
}

/// URL-encodes everything outside the unreserved set of RFC 3986 (section 7.3).
fn url_encode_into(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `toplabel` of section 7.1: alphanumerics and inner hyphens, not all digits.
pub(crate) fn is_toplabel(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().any(|c| !c.is_ascii_digit())
}
