//! Tokenizer for the Sieve grammar of RFC 5228 section 8.1.

use super::{Limits, SieveError};

/// One lexical token of a Sieve script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An identifier such as `if` or `fileinto`.
    Identifier(String),
    /// A tagged argument such as `:is`, stored without the colon and lowercased.
    Tag(String),
    /// A number with its `K`, `M` or `G` quantifier already applied.
    Number(u64),
    /// A quoted or multi-line string, unescaped / dot-unstuffed.
    String(String),
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `;`
    Semicolon,
}

/// A token with the line and column (both 1-based) where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Line of the first character.
    pub line: u32,
    /// Column of the first character, counted in characters.
    pub column: u32,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    column: u32,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    fn err(&self, message: impl Into<String>) -> SieveError {
        SieveError::new(self.line, self.column, message)
    }
}

/// Splits `script` into tokens, enforcing the script and string size limits.
pub fn tokenize(script: &str, limits: &Limits) -> Result<Vec<Spanned>, SieveError> {
    if script.len() > limits.max_script_size {
        return Err(SieveError::new(
            1,
            1,
            format!("script exceeds {} bytes", limits.max_script_size),
        ));
    }
    let mut cur = Cursor {
        chars: script.chars().peekable(),
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = cur.peek() {
        let (line, column) = (cur.line, cur.column);
        let token = match c {
            ' ' | '\t' | '\r' | '\n' => {
                cur.bump();
                continue;
            }
            '#' => {
                while let Some(c) = cur.bump() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            '/' => {
                cur.bump();
                if cur.peek() != Some('*') {
                    return Err(SieveError::new(line, column, "unexpected character '/'"));
                }
                cur.bump();
                let mut star = false;
                loop {
                    match cur.bump() {
                        None => {
                            return Err(SieveError::new(line, column, "unterminated comment"));
                        }
                        Some('/') if star => break,
                        Some(c) => star = c == '*',
                    }
                }
                continue;
            }
            '[' | ']' | '(' | ')' | '{' | '}' | ',' | ';' => {
                cur.bump();
                match c {
                    '[' => Token::LBracket,
                    ']' => Token::RBracket,
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    '{' => Token::LBrace,
                    '}' => Token::RBrace,
                    ',' => Token::Comma,
                    _ => Token::Semicolon,
                }
            }
            '"' => {
                cur.bump();
                let mut s = String::new();
                loop {
                    match cur.bump() {
                        None => return Err(SieveError::new(line, column, "unterminated string")),
                        Some('"') => break,
                        Some('\\') => match cur.bump() {
                            None => {
                                return Err(SieveError::new(line, column, "unterminated string"));
                            }
                            Some(c) => s.push(c),
                        },
                        Some(c) => s.push(c),
                    }
                    if s.len() > limits.max_string_len {
                        return Err(SieveError::new(line, column, "string too long"));
                    }
                }
                Token::String(s)
            }
            ':' => {
                cur.bump();
                let name = ident(&mut cur);
                if name.is_empty() {
                    return Err(SieveError::new(
                        line,
                        column,
                        "expected a tag name after ':'",
                    ));
                }
                Token::Tag(name.to_ascii_lowercase())
            }
            '0'..='9' => {
                let mut n: u64 = 0;
                while let Some(d) = cur.peek().and_then(|c| c.to_digit(10)) {
                    cur.bump();
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(d)))
                        .ok_or_else(|| SieveError::new(line, column, "number too large"))?;
                }
                let shift = match cur.peek() {
                    Some('k' | 'K') => 10,
                    Some('m' | 'M') => 20,
                    Some('g' | 'G') => 30,
                    _ => 0,
                };
                if shift > 0 {
                    cur.bump();
                }
                let n = n
                    .checked_mul(1u64 << shift)
                    .ok_or_else(|| SieveError::new(line, column, "number too large"))?;
                if cur
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(cur.err("unexpected character after number"));
                }
                Token::Number(n)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let name = ident(&mut cur);
                if name.eq_ignore_ascii_case("text") && cur.peek() == Some(':') {
                    cur.bump();
                    Token::String(multiline(&mut cur, line, column, limits)?)
                } else {
                    Token::Identifier(name.to_ascii_lowercase())
                }
            }
            c => {
                return Err(SieveError::new(
                    line,
                    column,
                    format!("unexpected character {c:?}"),
                ));
            }
        };
        out.push(Spanned {
            token,
            line,
            column,
        });
    }
    Ok(out)
}

fn ident(cur: &mut Cursor<'_>) -> String {
    let mut s = String::new();
    while let Some(c) = cur.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            s.push(c);
            cur.bump();
        } else {
            break;
        }
    }
    s
}

fn multiline(
    cur: &mut Cursor<'_>,
    line: u32,
    column: u32,
    limits: &Limits,
) -> Result<String, SieveError> {
    // Rest of the `text:` line: whitespace and an optional hash comment.
    loop {
        match cur.bump() {
            None => {
                return Err(SieveError::new(
                    line,
                    column,
                    "unterminated multi-line string",
                ));
            }
            Some(' ' | '\t' | '\r') => {}
            Some('\n') => break,
            Some('#') => {
                while let Some(c) = cur.bump() {
                    if c == '\n' {
                        break;
                    }
                }
                break;
            }
            Some(_) => return Err(cur.err("expected end of line after 'text:'")),
        }
    }
    let mut s = String::new();
    loop {
        let mut l = String::new();
        let mut ended = false;
        while let Some(c) = cur.bump() {
            if c == '\n' {
                ended = true;
                break;
            }
            l.push(c);
        }
        let body = l.strip_suffix('\r').unwrap_or(&l);
        if body == "." {
            return Ok(s);
        }
        if !ended {
            return Err(SieveError::new(
                line,
                column,
                "unterminated multi-line string",
            ));
        }
        let body = body.strip_prefix('.').unwrap_or(body);
        s.push_str(body);
        s.push_str("\r\n");
        if s.len() > limits.max_string_len {
            return Err(SieveError::new(line, column, "string too long"));
        }
    }
}
