//! What the receiving server says: multiline replies (RFC 5321 4.2), enhanced status codes
//! (RFC 3463) and the EHLO keywords (RFC 5321 4.1.1.1), parsed incrementally with bounded memory.

use std::fmt;

/// Most lines one reply may have; a server sending more is broken or hostile.
pub const MAX_REPLY_LINES: usize = 256;

/// Most text one reply may hold, all lines together.
pub const MAX_REPLY_BYTES: usize = 16 * 1024;

/// An enhanced status code `class.subject.detail` (RFC 3463), e.g. `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, 0-999.
    pub subject: u16,
    /// The detail, 0-999.
    pub detail: u16,
}

impl EnhancedStatus {
    /// Parses `class.subject.detail` at the start of `text`, followed by a space or the end.
    pub fn parse(text: &str) -> Option<Self> {
        let word = text.split(' ').next()?;
        let mut parts = word.split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let number = |s: &str| -> Option<u16> {
            if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let class = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        Some(EnhancedStatus {
            class,
            subject: number(subject)?,
            detail: number(detail)?,
        })
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete reply, possibly of several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, 200-559.
    pub code: u16,
    /// The enhanced status code of the first line, when it has one matching the code's class.
    pub enhanced: Option<EnhancedStatus>,
    /// The text of each line after the code and separator, control characters replaced by
    /// spaces (the text ends up in logs and bounce messages).
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }
    /// 3xx (354 to DATA, 334 to AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }
    /// 4xx.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }
    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The lines' text joined by spaces, without the code: the enhanced status code first
    /// when the server sent one. This is what reports carry.
    pub fn message(&self) -> String {
        let parts: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        parts.join(" ")
    }

    /// The reply on one line as the server sent it: code, then the lines' text joined by
    /// spaces (the enhanced code stays in the text). For reports and bounces.
    pub fn text(&self) -> String {
        let mut s = self.code.to_string();
        for line in &self.lines {
            if !line.is_empty() {
                s.push(' ');
                s.push_str(line);
            }
        }
        s
    }
}

/// Why a reply could not be read: the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than the configured maximum.
    LineTooLong,
    /// More than [`MAX_REPLY_LINES`] lines or [`MAX_REPLY_BYTES`] of text.
    TooLong,
    /// Not `DDD`, `DDD-text` or `DDD text`, a code outside 200-559, or a continuation line
    /// whose code differs from the first line's.
    Malformed,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::TooLong => "reply too long",
            ReplyError::Malformed => "malformed reply",
        })
    }
}

/// Incremental reply reader; its state survives any split of the input. Holds at most one line
/// of `max_line` bytes plus the text of the lines read so far.
#[derive(Debug)]
pub struct ReplyReader {
    max_line: usize,
    line: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
    text_bytes: usize,
}

impl ReplyReader {
    /// A reader refusing lines longer than `max_line` bytes (CRLF included; at least 512).
    pub fn new(max_line: usize) -> Self {
        ReplyReader {
            max_line: max_line.max(512),
            line: Vec::new(),
            code: None,
            lines: Vec::new(),
            text_bytes: 0,
        }
    }

    /// Consumes bytes from `input` up to the end of a reply or an error. Returns the bytes
    /// consumed and the reply, if one ended. After an error the reader must not be used again
    /// (the connection is over).
    pub fn read(&mut self, input: &[u8]) -> (usize, Option<Result<Reply, ReplyError>>) {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let newline = rest.iter().position(|&b| b == b'\n');
            let take = newline.map_or(rest.len(), |i| i + 1);
            if self.line.len() + take > self.max_line {
                return (used + take, Some(Err(ReplyError::LineTooLong)));
            }
            self.line.extend_from_slice(&rest[..take]);
            used += take;
            if newline.is_none() {
                break;
            }
            let mut line = std::mem::take(&mut self.line);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            match self.line_done(&line) {
                Ok(Some(reply)) => return (used, Some(Ok(reply))),
                Ok(None) => {}
                Err(e) => return (used, Some(Err(e))),
            }
        }
        (used, None)
    }

    /// Takes one line (without its line end); a reply when it was the last.
    fn line_done(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let code = parse_code(line).ok_or(ReplyError::Malformed)?;
        if self.code.is_some_and(|c| c != code) {
            return Err(ReplyError::Malformed);
        }
        self.code = Some(code);
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(_) => return Err(ReplyError::Malformed),
        };
        let text: String = String::from_utf8_lossy(text)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.lines.len() >= MAX_REPLY_LINES || self.text_bytes + text.len() > MAX_REPLY_BYTES {
            return Err(ReplyError::TooLong);
        }
        self.text_bytes += text.len();
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        self.code = None;
        self.text_bytes = 0;
        let lines = std::mem::take(&mut self.lines);
        let enhanced = lines
            .first()
            .and_then(|l| EnhancedStatus::parse(l))
            .filter(|e| u16::from(e.class) == code / 100);
        Ok(Some(Reply {
            code,
            enhanced,
            lines,
        }))
    }

    /// True when part of a reply has been read.
    pub fn is_partial(&self) -> bool {
        !self.line.is_empty() || !self.lines.is_empty()
    }

    /// Bytes held for the partial reply.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.text_bytes
    }

    /// Forgets any partial reply (after STARTTLS).
    pub fn clear(&mut self) {
        self.line = Vec::new();
        self.code = None;
        self.lines = Vec::new();
        self.text_bytes = 0;
    }
}

/// The reply code at the start of `line`: three digits, 2-5 then 0-5 then any.
fn parse_code(line: &[u8]) -> Option<u16> {
    match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// The SMTP service extensions a server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// True after EHLO succeeded; false after a HELO fallback (no extensions at all).
    pub esmtp: bool,
    /// `SIZE`: `Some(0)` when announced without a limit (or with 0, "no fixed maximum").
    pub size: Option<u64>,
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `CHUNKING` (RFC 3030): BDAT.
    pub chunking: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `AUTH` mechanisms (RFC 4954), upper-cased.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the keywords of a 250 reply to EHLO (every line but the first, which is the
    /// server's name). Unknown keywords are ignored; so is a malformed SIZE value.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            esmtp: true,
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    caps.size = match words.next() {
                        None => Some(0),
                        Some(n) => n.parse().ok().or(caps.size),
                    }
                }
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for m in words {
                        let m = m.to_ascii_uppercase();
                        if !caps.auth.contains(&m) {
                            caps.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// The fixed maximum message size, if the server has one.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }

    /// True when `mechanism` (upper case) was announced.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
        let mut r = ReplyReader::new(1000);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let (n, reply) = r.read(&input[pos..]);
            pos += n;
            match reply {
                Some(Err(e)) => {
                    out.push(Err(e));
                    break;
                }
                Some(Ok(reply)) => out.push(Ok(reply)),
                None => {}
            }
        }
        out
    }

    #[test]
    fn multiline_and_enhanced_codes() {
        let replies = read_all(
            b"250-mx.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n550 5.1.1 No such user\r\n221\n",
        );
        let r: Vec<Reply> = replies.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(r[0].code, 250);
        assert_eq!(r[0].lines, ["mx.example", "SIZE 1000", "8BITMIME"]);
        assert_eq!(r[0].enhanced, None);
        assert_eq!(r[1].enhanced.unwrap().to_string(), "5.1.1");
        assert_eq!(r[1].text(), "550 5.1.1 No such user");
        assert_eq!(r[2].code, 221);
        assert_eq!(r[2].text(), "221");
    }

    #[test]
    fn enhanced_code_must_match_class() {
        let r = read_all(b"550 2.1.0 odd\r\n").remove(0).unwrap();
        assert_eq!(r.enhanced, None);
        assert_eq!(EnhancedStatus::parse("4.7.1234 x"), None);
        assert_eq!(EnhancedStatus::parse("3.1.1"), None);
        assert_eq!(
            EnhancedStatus::parse("4.7.0"),
            Some(EnhancedStatus {
                class: 4,
                subject: 7,
                detail: 0
            })
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250x\r\n",
            b"650 no\r\n",
            b"260 no\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            assert_eq!(read_all(bad), [Err(ReplyError::Malformed)], "{bad:?}");
        }
        assert_eq!(
            read_all(&[b'2'; 2000]),
            [Err(ReplyError::LineTooLong)],
            "bounded line"
        );
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(read_all(&many), [Err(ReplyError::TooLong)]);
    }

    #[test]
    fn control_characters_are_blanked() {
        let r = read_all(b"250 a\tb\x1b[31m\r\n").remove(0).unwrap();
        assert_eq!(r.lines, ["a b [31m"]);
    }

    #[test]
    fn ehlo_keywords() {
        let r = read_all(
            b"250-mx\r\n250-size 52428800\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
250-CHUNKING\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH plain LOGIN PLAIN\r\n250 X-FOO bar\r\n",
        )
        .remove(0)
        .unwrap();
        let c = Capabilities::from_ehlo(&r);
        assert_eq!(c.size_limit(), Some(52_428_800));
        assert!(c.pipelining && c.eight_bit_mime && c.smtputf8 && c.chunking);
        assert!(c.starttls && c.enhanced_status_codes);
        assert_eq!(c.auth, ["PLAIN", "LOGIN"]);
        let r = read_all(b"250-mx\r\n250 SIZE\r\n").remove(0).unwrap();
        let c = Capabilities::from_ehlo(&r);
        assert_eq!((c.size, c.size_limit()), (Some(0), None));
        assert!(!c.pipelining);
    }
}
