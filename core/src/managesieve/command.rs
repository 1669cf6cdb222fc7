//! ManageSieve command syntax (RFC 5804 4): a command is an atom followed by strings and
//! numbers; a string is quoted (`"..."` with `\"` and `\\` escapes) or a literal (`{N+}` or
//! `{N}`, CRLF, then N octets). The session splits lines and literals; this module tokenizes
//! the line parts and turns a whole token list into a [`Command`].

/// Longest quoted string accepted (RFC 5804 4 limits quoted strings to 1024 octets).
pub const MAX_QUOTED: usize = 1024;

/// One piece of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word: the command name, a number, or anything else unquoted.
    Atom(String),
    /// A quoted string or a literal, as octets.
    Str(Vec<u8>),
}

/// A parsed ManageSieve command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE mechanism [initial-response]`.
    Authenticate {
        /// The mechanism, uppercased.
        mechanism: String,
        /// The base64 initial response, if given.
        initial: Option<Vec<u8>>,
    },
    /// `STARTTLS`.
    StartTls,
    /// `LOGOUT`.
    Logout,
    /// `CAPABILITY`.
    Capability,
    /// `HAVESPACE name size`.
    HaveSpace {
        /// The script name, as sent.
        name: Vec<u8>,
        /// The size in octets.
        size: u64,
    },
    /// `PUTSCRIPT name script`.
    PutScript {
        /// The script name, as sent.
        name: Vec<u8>,
        /// The script.
        script: Vec<u8>,
    },
    /// `LISTSCRIPTS`.
    ListScripts,
    /// `SETACTIVE name` (empty: deactivate).
    SetActive(Vec<u8>),
    /// `GETSCRIPT name`.
    GetScript(Vec<u8>),
    /// `DELETESCRIPT name`.
    DeleteScript(Vec<u8>),
    /// `RENAMESCRIPT old new`.
    RenameScript(Vec<u8>, Vec<u8>),
    /// `CHECKSCRIPT script`.
    CheckScript(Vec<u8>),
    /// `NOOP [tag]`.
    Noop(Option<Vec<u8>>),
    /// `UNAUTHENTICATE`.
    Unauthenticate,
}

/// Why a command was refused, as the `NO` text to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandError(pub &'static str);

/// If `line` ends with a literal announcement `{N}` or `{N+}`, returns the length of the line
/// before it and N. A malformed number (too many digits) counts as no literal.
pub fn literal_marker(line: &[u8]) -> Option<(usize, u64)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((open, n))
}

/// Splits one line part (without CRLF and without a trailing literal marker) into tokens,
/// appended to `out`.
pub fn tokenize(part: &[u8], out: &mut Vec<Token>) -> Result<(), CommandError> {
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b' ' | b'\t' => i += 1,
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match part.get(i) {
                        None => return Err(CommandError("Unterminated quoted string.")),
                        Some(b'"') => break,
                        Some(b'\\') => match part.get(i + 1) {
                            Some(&c @ (b'"' | b'\\')) => {
                                s.push(c);
                                i += 2;
                            }
                            _ => return Err(CommandError("Invalid escape in quoted string.")),
                        },
                        Some(0) => return Err(CommandError("NUL in quoted string.")),
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                    if s.len() > MAX_QUOTED {
                        return Err(CommandError("Quoted string too long."));
                    }
                }
                i += 1;
                if std::str::from_utf8(&s).is_err() {
                    return Err(CommandError("Quoted string is not UTF-8."));
                }
                out.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < part.len() && !matches!(part[i], b' ' | b'\t' | b'"') {
                    i += 1;
                }
                let atom = std::str::from_utf8(&part[start..i])
                    .ok()
                    .filter(|a| a.bytes().all(|b| b.is_ascii_graphic()))
                    .ok_or(CommandError("Invalid characters in command."))?;
                out.push(Token::Atom(atom.to_string()));
            }
        }
    }
    Ok(())
}

fn string(token: Option<Token>) -> Result<Vec<u8>, CommandError> {
    match token {
        Some(Token::Str(s)) => Ok(s),
        Some(Token::Atom(_)) => Err(CommandError("Expected a quoted string or a literal.")),
        None => Err(CommandError("Missing argument.")),
    }
}

fn number(token: Option<Token>) -> Result<u64, CommandError> {
    match token {
        Some(Token::Atom(a))
            if !a.is_empty() && a.len() <= 10 && a.bytes().all(|b| b.is_ascii_digit()) =>
        {
            a.parse::<u64>()
                .ok()
                .filter(|&n| n <= u64::from(u32::MAX))
                .ok_or(CommandError("Invalid number."))
        }
        Some(_) => Err(CommandError("Invalid number.")),
        None => Err(CommandError("Missing argument.")),
    }
}

/// Turns the tokens of one complete command into a [`Command`].
pub fn parse(tokens: Vec<Token>) -> Result<Command, CommandError> {
    let mut it = tokens.into_iter();
    let verb = match it.next() {
        Some(Token::Atom(a)) => a.to_ascii_uppercase(),
        Some(Token::Str(_)) => return Err(CommandError("Expected a command name.")),
        None => return Err(CommandError("Empty command.")),
    };
    let cmd = match verb.as_str() {
        "AUTHENTICATE" => {
            let mechanism = String::from_utf8_lossy(&string(it.next())?).to_ascii_uppercase();
            let initial = match it.next() {
                None => None,
                t => Some(string(t)?),
            };
            Command::Authenticate { mechanism, initial }
        }
        "STARTTLS" => Command::StartTls,
        "LOGOUT" => Command::Logout,
        "CAPABILITY" => Command::Capability,
        "HAVESPACE" => Command::HaveSpace {
            name: string(it.next())?,
            size: number(it.next())?,
        },
        "PUTSCRIPT" => Command::PutScript {
            name: string(it.next())?,
            script: string(it.next())?,
        },
        "LISTSCRIPTS" => Command::ListScripts,
        "SETACTIVE" => Command::SetActive(string(it.next())?),
        "GETSCRIPT" => Command::GetScript(string(it.next())?),
        "DELETESCRIPT" => Command::DeleteScript(string(it.next())?),
        "RENAMESCRIPT" => Command::RenameScript(string(it.next())?, string(it.next())?),
        "CHECKSCRIPT" => Command::CheckScript(string(it.next())?),
        "NOOP" => match it.next() {
            None => Command::Noop(None),
            t => Command::Noop(Some(string(t)?)),
        },
        "UNAUTHENTICATE" => Command::Unauthenticate,
        _ => return Err(CommandError("Unknown command.")),
    };
    if it.next().is_some() {
        return Err(CommandError("Too many arguments."));
    }
    Ok(cmd)
}

/// Appends `s` as a ManageSieve string: quoted when it is short and plain, otherwise as a
/// literal `{N}` CRLF octets.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    let plain = s.len() <= MAX_QUOTED && !s.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
    if plain {
        out.push(b'"');
        for &b in s {
            if matches!(b, b'"' | b'\\') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &str) -> Result<Vec<Token>, CommandError> {
        let mut out = Vec::new();
        tokenize(line.as_bytes(), &mut out).map(|()| out)
    }

    #[test]
    fn tokenizes() {
        assert_eq!(
            tokens(r#"PUTSCRIPT "a \"b\" \\" 12"#).unwrap(),
            vec![
                Token::Atom("PUTSCRIPT".into()),
                Token::Str(br#"a "b" \"#.to_vec()),
                Token::Atom("12".into()),
            ]
        );
        assert!(tokens(r#"GETSCRIPT "open"#).is_err());
        assert!(tokens(r#"GETSCRIPT "bad\n""#).is_err());
        assert!(tokens(&format!("NOOP \"{}\"", "x".repeat(1025))).is_err());
        assert!(tokens("NOOP \u{1}").is_err());
    }

    #[test]
    fn literal_markers() {
        assert_eq!(literal_marker(b"PUTSCRIPT \"a\" {31+}"), Some((14, 31)));
        assert_eq!(literal_marker(b"PUTSCRIPT \"a\" {31}"), Some((14, 31)));
        assert_eq!(literal_marker(b"{0+}"), Some((0, 0)));
        assert_eq!(literal_marker(b"PUTSCRIPT \"a\" {}"), None);
        assert_eq!(literal_marker(b"PUTSCRIPT \"a\" {x+}"), None);
        assert_eq!(literal_marker(b"PUTSCRIPT {99999999999+}"), None);
        assert_eq!(literal_marker(b"LISTSCRIPTS"), None);
    }

    #[test]
    fn parses() {
        let p = |s: &str| parse(tokens(s).unwrap());
        assert_eq!(
            p(r#"authenticate "plain" "AGEAYg==""#),
            Ok(Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            p(r#"HAVESPACE "s" 100"#),
            Ok(Command::HaveSpace {
                name: b"s".to_vec(),
                size: 100
            })
        );
        assert_eq!(p(r#"SETACTIVE """#), Ok(Command::SetActive(Vec::new())));
        assert_eq!(p("NOOP"), Ok(Command::Noop(None)));
        assert!(p("HAVESPACE \"s\" x").is_err());
        assert!(p("HAVESPACE \"s\" 99999999999").is_err());
        assert!(p("GETSCRIPT name").is_err());
        assert!(p("LISTSCRIPTS \"x\"").is_err());
        assert!(p("XYZZY").is_err());
        assert!(p("\"GETSCRIPT\"").is_err());
    }

    #[test]
    fn writes_strings() {
        let mut out = Vec::new();
        write_string(&mut out, br#"a"b\"#);
        out.push(b' ');
        write_string(&mut out, b"x\r\ny");
        assert_eq!(out, b"\"a\\\"b\\\\\" {4}\r\nx\r\ny");
    }
}
