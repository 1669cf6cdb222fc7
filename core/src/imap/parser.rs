//! The incremental, bounded IMAP command parser.
//!
//! Two layers, like imap-codec's `Fragmentizer` (STYLE.md G7): [`Parser`] splits the byte stream
//! into command text and literals, keeping at most [`Limits`] of either, and hands each complete
//! command to a recursive-descent grammar over RFC 9051 section 9 (with the RFC 3501 forms and
//! the extensions Petrel offers). APPEND message literals are the exception: they are never
//! buffered. The parser reports [`Parsed::AppendStart`] and then lets the caller take the message
//! bytes straight from its input ([`Parsed::AppendData`]).
//!
//! Input may be split anywhere: feeding a pipeline in one call or one byte at a time gives the
//! same results. No input panics, and every call either consumes bytes or returns a result.

use super::command::{
    AppendStart, Command, CommandKind, Date, DateTime, EntryType, FetchItem, Flag, ListReturn,
    ListSelect, Mailbox, QResync, SearchKey, SearchReturn, Section, SectionText, SelectParams,
    SortCriterion, SortKey, StatusItem, StoreMode, ThreadAlgorithm,
};
use super::sequence::SequenceSet;
use crate::effect::Secret;

/// Bounds on what one command may make the parser hold (STYLE.md G8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Command text, literal contents excluded (all line parts of one command together).
    pub max_line: usize,
    /// One non-APPEND literal (a search string, a mailbox name, a password).
    pub max_literal: u64,
    /// Everything buffered for one command: text and non-APPEND literals.
    pub max_command: usize,
    /// List elements of one command, all lists together (search keys and literals counted
    /// too), and the ranges of each sequence set.
    pub max_items: usize,
    /// Nesting of parentheses, `NOT` and `OR` in a search program.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024,
            max_command: 256 * 1024,
            max_items: 16 * 1024,
            max_depth: 32,
        }
    }
}

/// One result of [`Parser::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete command.
    Command(Command),
    /// A synchronizing literal `{n}` was announced: send `+ ...` (or refuse the command and call
    /// [`Parser::refuse_literal`]); the client sends the literal only after the `+`.
    NeedContinuation,
    /// All input was consumed and no result is complete yet.
    Incomplete,
    /// The command is malformed: send `tag BAD text` (or `* BAD text` without a tag). The parser
    /// has already arranged to skip the rest of the command, literals it announced included.
    Error {
        /// The command's tag, when one could be read.
        tag: Option<String>,
        /// What is wrong.
        text: String,
    },
    /// An APPEND message begins. Its `size` bytes follow in the input and come back as
    /// [`Parsed::AppendData`]; for a synchronizing literal the session must first send `+` (or
    /// refuse with `NO [TOOBIG]` and call [`Parser::refuse_literal`]). To drop a message midway
    /// call [`Parser::abort_append`].
    AppendStart(AppendStart),
    /// The bytes consumed by this call are APPEND message data, to take from the input as they
    /// are (never buffered here).
    AppendData,
    /// The APPEND command is complete (after its last message): answer it.
    AppendEnd {
        /// The command's tag.
        tag: String,
    },
    /// A raw line requested with [`Parser::expect_line`] (a SASL response, IDLE's `DONE`),
    /// without its line ending.
    Line(Vec<u8>),
}

/// A literal announced at the end of a line part: `{n}`, `{n+}`, `~{n}`.
#[derive(Debug, Clone, Copy)]
struct Announcement {
    size: u64,
    sync: bool,
    binary: bool,
    /// Offset of `{` (or `~`) in the line part.
    start: usize,
}

#[derive(Debug)]
enum State {
    /// Reading command text (a line part) into `buf`.
    Line,
    /// Reading a literal's bytes into `buf`.
    Literal { remaining: u64 },
    /// Passing an APPEND message through.
    AppendData { remaining: u64 },
    /// Dropping the rest of a line; `tail` keeps its last bytes to spot a literal announcement.
    Discard { tail: Vec<u8> },
    /// Dropping a literal, then the rest of its command.
    SkipLiteral { remaining: u64 },
}

/// An APPEND in progress, between its messages.
#[derive(Debug)]
struct AppendContext {
    tag: String,
    mailbox: Mailbox,
    next_index: u32,
}

/// The incremental IMAP command parser of one connection.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// The command so far: text and literal contents, as received.
    buf: Vec<u8>,
    /// Where the current line part starts in `buf`.
    line_start: usize,
    /// Command text held, literal contents excluded.
    text_len: usize,
    literals: usize,
    raw_line: bool,
    append: Option<AppendContext>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(Limits::default())
    }
}

const TAIL: usize = 32;

impl Parser {
    /// A parser with the given limits.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            state: State::Line,
            buf: Vec::new(),
            line_start: 0,
            text_len: 0,
            literals: 0,
            raw_line: false,
            append: None,
        }
    }

    /// Consumes bytes from `input` until a result is ready. Returns the bytes consumed and the
    /// result; the caller re-offers the unconsumed rest. [`Parsed::Incomplete`] means all of
    /// `input` was consumed.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Parsed) {
        let mut used = 0;
        // Every step either consumes, returns a result, or changes state towards one that
        // consumes; the bound only guards that claim.
        for _ in 0..input.len().saturating_mul(2).saturating_add(8) {
            let rest = &input[used..];
            if rest.is_empty() {
                break;
            }
            let (n, out) = self.step(rest);
            used += n;
            if let Some(out) = out {
                return (used, out);
            }
        }
        debug_assert_eq!(used, input.len(), "parser made no progress");
        (used, Parsed::Incomplete)
    }

    /// Makes the next complete line come back as [`Parsed::Line`] rather than being parsed as a
    /// command: call after answering `AUTHENTICATE` with `+` and after `IDLE`.
    pub fn expect_line(&mut self) {
        self.raw_line = true;
    }

    /// The session refused a synchronizing literal (did not send `+`): the client sends neither
    /// the literal nor the rest of that command, so the next bytes start a new command.
    pub fn refuse_literal(&mut self) {
        self.reset();
    }

    /// Drops the rest of the current APPEND message and of its command (a message over the size
    /// limit sent as `{n+}`, or a failed store). Nothing more is reported for that command.
    pub fn abort_append(&mut self) {
        if self.append.is_none() {
            return;
        }
        let remaining = self.append_remaining();
        self.reset();
        self.state = match remaining {
            0 => State::Discard { tail: Vec::new() },
            remaining => State::SkipLiteral { remaining },
        };
    }

    /// Message bytes of the current APPEND still to come.
    pub fn append_remaining(&self) -> u64 {
        match self.state {
            State::AppendData { remaining } => remaining,
            _ => 0,
        }
    }

    /// True when the parser holds part of a command (for an idle timeout's choice of message).
    pub fn is_partial(&self) -> bool {
        !matches!(self.state, State::Line) || !self.buf.is_empty() || self.append.is_some()
    }

    /// Forgets everything pending (after STARTTLS: RFC 9051 6.2.1 plaintext injection).
    pub fn reset(&mut self) {
        self.state = State::Line;
        self.buf = Vec::new();
        self.line_start = 0;
        self.text_len = 0;
        self.literals = 0;
        self.raw_line = false;
        self.append = None;
    }

    fn step(&mut self, input: &[u8]) -> (usize, Option<Parsed>) {
        match &mut self.state {
            State::Line => self.line(input),
            State::Literal { remaining } => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                self.buf.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.state = State::Line;
                    self.line_start = self.buf.len();
                }
                (take, None)
            }
            State::AppendData { remaining } => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.state = State::Line;
                }
                (take, Some(Parsed::AppendData))
            }
            State::SkipLiteral { remaining } => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.state = State::Discard { tail: Vec::new() };
                }
                (take, None)
            }
            State::Discard { tail } => {
                let newline = input.iter().position(|&b| b == b'\n');
                let take = newline.map_or(input.len(), |i| i + 1);
                tail.extend_from_slice(&input[..take]);
                if tail.len() > TAIL {
                    tail.drain(..tail.len() - TAIL);
                }
                if newline.is_some() {
                    let tail = std::mem::take(tail);
                    self.reset();
                    self.skip_announced(strip_eol(&tail));
                }
                (take, None)
            }
        }
    }

    fn line(&mut self, input: &[u8]) -> (usize, Option<Parsed>) {
        let newline = input.iter().position(|&b| b == b'\n');
        let take = newline.map_or(input.len(), |i| i + 1);
        if self.text_len + take > self.limits.max_line
            || self.buf.len() + take > self.limits.max_command
        {
            let text = if self.text_len + take > self.limits.max_line {
                "Command line too long"
            } else {
                "Command too long"
            }
            .to_string();
            let tag = match &self.append {
                _ if self.raw_line => None,
                Some(ctx) => Some(ctx.tag.clone()),
                None => {
                    let mut head: Vec<u8> = self.buf.iter().take(300).copied().collect();
                    head.extend(input.iter().take(300 - head.len()));
                    // The head may end inside the tag: name it only when its end is seen, so
                    // the reply does not depend on how the input was split.
                    read_tag(&head)
                }
            };
            let mut tail = self.buf[self.buf.len().saturating_sub(TAIL)..].to_vec();
            tail.extend_from_slice(&input[take.saturating_sub(TAIL)..take]);
            self.reset();
            match newline {
                Some(_) => self.skip_announced(strip_eol(&tail)),
                None => self.state = State::Discard { tail },
            }
            return (take, Some(Parsed::Error { tag, text }));
        }
        self.buf.extend_from_slice(&input[..take]);
        self.text_len += take;
        if newline.is_none() {
            return (take, None);
        }
        // A literal ending in CR followed by the LF of the line: that CR is the literal's, not
        // part of this line's end (found by fuzzing: the slice below would start after it ends).
        let end = (self.buf.len() - eol_len(&self.buf)).max(self.line_start);
        if self.raw_line {
            let mut line = std::mem::take(&mut self.buf);
            line.truncate(end);
            self.reset();
            return (take, Some(Parsed::Line(line)));
        }
        let part = &self.buf[self.line_start..end];
        let announced = announcement(part).filter(|_| !in_quote(part));
        if let Some(ctx) = &mut self.append {
            // The rest of an APPEND after a message: the end, or another MULTIAPPEND message.
            let tag = ctx.tag.clone();
            if part.is_empty() {
                self.reset();
                return (take, Some(Parsed::AppendEnd { tag }));
            }
            let head = announced.and_then(|a| {
                let mut c = Cursor::new(&part[..a.start], &self.limits);
                c.append_options()
                    .ok()
                    .map(|(flags, date)| (a, flags, date))
            });
            let Some((a, flags, date)) = head else {
                return (take, Some(self.fail(Some(tag), "Bad APPEND syntax".into())));
            };
            let start = AppendStart {
                tag,
                mailbox: ctx.mailbox.clone(),
                flags,
                date,
                size: a.size,
                binary: a.binary,
                synchronizing: a.sync,
                index: ctx.next_index,
            };
            return (take, Some(self.start_append(start)));
        }
        let Some(a) = announced else {
            let command = parse_command(&self.buf[..end], &self.limits);
            let empty = end == 0;
            self.reset();
            return match command {
                _ if empty => (take, None), // empty lines are ignored
                Ok(command) => (take, Some(Parsed::Command(command))),
                Err((tag, text)) => (take, Some(Parsed::Error { tag, text })),
            };
        };
        // An APPEND head holds at most one literal (its mailbox name) before the message, so
        // the head is re-read only then: a command of many literals stays linear.
        let head = (self.literals <= 1)
            .then(|| append_head(&self.buf[..self.line_start + a.start], &self.limits))
            .flatten();
        if let Some((tag, mailbox, flags, date)) = head {
            let start = AppendStart {
                tag,
                mailbox,
                flags,
                date,
                size: a.size,
                binary: a.binary,
                synchronizing: a.sync,
                index: 0,
            };
            return (take, Some(self.start_append(start)));
        }
        self.literals += 1;
        if a.size > self.limits.max_literal
            || self.buf.len() as u64 + a.size > self.limits.max_command as u64
            || self.literals > self.limits.max_items
        {
            let tag = self.error_tag();
            let text = if self.literals > self.limits.max_items {
                "Too many literals".to_string()
            } else {
                format!(
                    "Literal too large (at most {} octets)",
                    self.limits.max_literal
                )
            };
            self.reset();
            if !a.sync {
                // LITERAL+ (RFC 7888 4): the client sends it anyway; drop it and its command.
                self.state = State::SkipLiteral { remaining: a.size };
            }
            return (take, Some(Parsed::Error { tag, text }));
        }
        if a.size > 0 {
            self.state = State::Literal { remaining: a.size };
        } else {
            self.line_start = self.buf.len();
        }
        (take, a.sync.then_some(Parsed::NeedContinuation))
    }

    fn start_append(&mut self, start: AppendStart) -> Parsed {
        self.buf = Vec::new();
        self.line_start = 0;
        self.text_len = 0;
        self.literals = 0;
        self.append = Some(AppendContext {
            tag: start.tag.clone(),
            mailbox: start.mailbox.clone(),
            next_index: start.index.saturating_add(1),
        });
        if start.size > 0 {
            self.state = State::AppendData {
                remaining: start.size,
            };
        }
        Parsed::AppendStart(start)
    }

    /// Reports an error found at the end of a line, skipping a literal announced there.
    fn fail(&mut self, tag: Option<String>, text: String) -> Parsed {
        let end = self.buf.len() - eol_len(&self.buf);
        let part = self.buf[self.line_start..end].to_vec();
        self.reset();
        self.skip_announced(&part);
        Parsed::Error { tag, text }
    }

    /// After a line that ended in a non-synchronizing literal announcement was refused, the
    /// client sends that literal anyway (RFC 7888 4): drop it and the rest of its command. A
    /// synchronizing one is never sent, as no `+` came.
    fn skip_announced(&mut self, line: &[u8]) {
        if let Some(a) = announcement(line).filter(|a| !a.sync && !in_quote(line)) {
            self.state = State::SkipLiteral { remaining: a.size };
        }
    }

    fn error_tag(&self) -> Option<String> {
        match &self.append {
            Some(ctx) => Some(ctx.tag.clone()),
            None => read_tag(&self.buf),
        }
    }
}

fn eol_len(line: &[u8]) -> usize {
    match line {
        [.., b'\r', b'\n'] => 2,
        [.., b'\n'] => 1,
        _ => 0,
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    &line[..line.len() - eol_len(line)]
}

/// True when a line part ends inside a quoted string.
fn in_quote(part: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &b in part {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        }
    }
    quoted
}

/// A literal announcement at the end of a line part (without its line ending).
fn announcement(part: &[u8]) -> Option<Announcement> {
    let inner = part.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let binary = open > 0 && inner[open - 1] == b'~';
    Some(Announcement {
        size,
        sync,
        binary,
        start: if binary { open - 1 } else { open },
    })
}

fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// The tag at the start of a command, if it is a valid one.
fn read_tag(buf: &[u8]) -> Option<String> {
    let len = buf
        .iter()
        .position(|&b| !is_tag_char(b))
        .unwrap_or(buf.len());
    if len == 0 || len > 256 {
        return None;
    }
    // Only when the tag ends where it should (a space), not in garbage or at the end of what
    // was read: a tag cut short would differ with the way the input was split.
    match buf.get(len) {
        Some(b' ' | b'\r' | b'\n') => Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
        _ => None,
    }
}

type AppendHead = (String, Mailbox, Vec<Flag>, Option<DateTime>);

/// `tag APPEND mailbox [flags] [date-time] ` before a message literal, or None when the text is
/// not that (another command, or an APPEND whose literal is its mailbox name).
fn append_head(prefix: &[u8], limits: &Limits) -> Option<AppendHead> {
    let mut c = Cursor::new(prefix, limits);
    let tag = c.tag().ok()?;
    c.sp().ok()?;
    if !c.name().eq_ignore_ascii_case(b"APPEND") {
        return None;
    }
    c.sp().ok()?;
    let mailbox = c.mailbox().ok()?;
    let (flags, date) = c.append_options().ok()?;
    Some((tag, mailbox, flags, date))
}

/// Parses one complete command (its literals inline, line ending removed).
fn parse_command(buf: &[u8], limits: &Limits) -> Result<Command, (Option<String>, String)> {
    let mut c = Cursor::new(buf, limits);
    let tag = c.tag().map_err(|e| (None, e))?;
    // A tag is only the client's when a space or the line's end follows it; otherwise the
    // line's first word is garbage and the reply must not echo a prefix of it as a tag.
    let ended = c.at_end();
    c.sp().map_err(|e| (ended.then(|| tag.clone()), e))?;
    let kind = c.command().map_err(|e| (Some(tag.clone()), e))?;
    Ok(Command { tag, kind })
}

type R<T> = Result<T, String>;

/// Recursive descent over one command's bytes.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    depth: usize,
    items: usize,
}

const MONTHS: [&[u8]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

fn upper(word: &[u8]) -> String {
    String::from_utf8_lossy(word).to_ascii_uppercase()
}

fn text(bytes: Vec<u8>, what: &str) -> R<String> {
    String::from_utf8(bytes).map_err(|_| format!("{what} must be ASCII"))
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8], limits: &'a Limits) -> Self {
        Cursor {
            s,
            pos: 0,
            limits,
            depth: 0,
            items: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(match self.peek() {
                None => format!("Missing '{}'", b as char),
                Some(_) => format!("Expected '{}'", b as char),
            })
        }
    }

    fn sp(&mut self) -> R<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            Err("Missing argument".into())
        } else {
            Err("Expected a space".into())
        }
    }

    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err("Unexpected extra arguments".into())
        }
    }

    fn item(&mut self) -> R<()> {
        self.items += 1;
        if self.items > self.limits.max_items {
            Err("Too many items".into())
        } else {
            Ok(())
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A keyword: letters, digits, `.` and `-` (`BODY.PEEK`, `SPECIAL-USE`, `RFC822.SIZE`).
    fn name(&mut self) -> &'a [u8] {
        self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    }

    fn keyword(&mut self, what: &str) -> R<String> {
        let word = self.name();
        if word.is_empty() {
            return Err(format!("Missing {what}"));
        }
        Ok(upper(word))
    }

    fn tag(&mut self) -> R<String> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() || tag.len() > 256 {
            return Err("Missing or invalid tag".into());
        }
        Ok(String::from_utf8_lossy(tag).into_owned())
    }

    fn atom(&mut self) -> R<&'a [u8]> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err("Expected an atom".into());
        }
        Ok(atom)
    }

    fn number(&mut self) -> R<u32> {
        let n = self.number64()?;
        u32::try_from(n).map_err(|_| "Number too large".into())
    }

    fn nz_number(&mut self) -> R<u32> {
        match self.number()? {
            0 => Err("Zero is not allowed here".into()),
            n => Ok(n),
        }
    }

    /// `number64` (RFC 9051) / `mod-sequence-value` (RFC 7162): below 2^63.
    fn number64(&mut self) -> R<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err("Expected a number".into());
        }
        if digits.len() > 19 {
            return Err("Number too large".into());
        }
        let n = digits
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if n > i64::MAX as u64 {
            return Err("Number too large".into());
        }
        Ok(n)
    }

    fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("Unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b @ (b'"' | b'\\')) => out.push(b),
                        _ => return Err("Bad escape in quoted string".into()),
                    }
                }
                Some(0 | b'\r' | b'\n') => return Err("Bad character in quoted string".into()),
                Some(b) => out.push(b),
            }
            self.pos += 1;
        }
    }

    fn literal(&mut self) -> R<Vec<u8>> {
        if self.peek() == Some(b'~') {
            return Err("literal8 is only allowed for APPEND messages".into());
        }
        self.expect(b'{')?;
        let size = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        self.eat(b'\r');
        self.expect(b'\n')?;
        let size = usize::try_from(size).map_err(|_| "Literal too large".to_string())?;
        let end = self.pos.checked_add(size).filter(|&e| e <= self.s.len());
        let end = end.ok_or("Truncated literal")?;
        let data = &self.s[self.pos..end];
        if data.contains(&0) {
            return Err("NUL in literal".into());
        }
        self.pos = end;
        Ok(data.to_vec())
    }

    /// At `{` or `~{`.
    fn at_literal(&self) -> bool {
        match self.peek() {
            Some(b'{') => true,
            Some(b'~') => self.s.get(self.pos + 1) == Some(&b'{'),
            _ => false,
        }
    }

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            _ if self.at_literal() => self.literal(),
            _ => Err("Expected a string".into()),
        }
    }

    fn astring(&mut self) -> R<Vec<u8>> {
        if self.peek() == Some(b'"') || self.at_literal() {
            return self.string();
        }
        let atom = self.take_while(is_astring_char);
        if atom.is_empty() {
            return Err(if self.at_end() {
                "Missing argument".into()
            } else {
                "Expected an atom or a string".into()
            });
        }
        Ok(atom.to_vec())
    }

    fn is_nil(&self) -> bool {
        let rest = &self.s[self.pos..];
        rest.len() >= 3
            && rest[..3].eq_ignore_ascii_case(b"NIL")
            && !rest.get(3).copied().is_some_and(is_astring_char)
    }

    fn nstring(&mut self) -> R<Option<Vec<u8>>> {
        if self.is_nil() {
            self.pos += 3;
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn mailbox(&mut self) -> R<Mailbox> {
        self.astring().map(Mailbox::from_bytes)
    }

    fn list_mailbox(&mut self) -> R<Vec<u8>> {
        if self.peek() == Some(b'"') || self.at_literal() {
            return self.string();
        }
        let pat = self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*');
        if pat.is_empty() {
            return Err("Expected a mailbox pattern".into());
        }
        Ok(pat.to_vec())
    }

    /// `(` item *(SP item) `)`, possibly empty when `empty` allows it.
    fn list<T>(&mut self, empty: bool, mut f: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        if self.eat(b')') {
            return if empty {
                Ok(out)
            } else {
                Err("Empty list".into())
            };
        }
        loop {
            self.item()?;
            out.push(f(self)?);
            if self.eat(b')') {
                return Ok(out);
            }
            if self.at_end() {
                return Err("Missing ')'".into());
            }
            self.sp()?;
        }
    }

    fn seq_set(&mut self) -> R<SequenceSet> {
        let text = self.take_while(|b| b.is_ascii_digit() || b":,*$".contains(&b));
        if text.is_empty() {
            return Err("Expected a sequence set".into());
        }
        SequenceSet::parse(text, self.limits.max_items).map_err(|e| e.0.to_string())
    }

    fn flag(&mut self) -> R<Flag> {
        if self.eat(b'\\') {
            let name = self.atom().map_err(|_| "Bad flag".to_string())?;
            let name = String::from_utf8_lossy(name).into_owned();
            return Ok(match name.to_ascii_uppercase().as_str() {
                "ANSWERED" => Flag::Answered,
                "FLAGGED" => Flag::Flagged,
                "DELETED" => Flag::Deleted,
                "SEEN" => Flag::Seen,
                "DRAFT" => Flag::Draft,
                _ => Flag::Extension(name),
            });
        }
        let name = self.atom().map_err(|_| "Bad flag".to_string())?;
        Ok(Flag::Keyword(String::from_utf8_lossy(name).into_owned()))
    }

    fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.list(true, Self::flag)
    }

    fn month(&mut self) -> R<u8> {
        let name = self.take_while(|b| b.is_ascii_alphabetic());
        MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(name))
            .map(|i| i as u8 + 1)
            .ok_or_else(|| "Bad month".to_string())
    }

    fn digits(&mut self, min: usize, max: usize) -> R<u32> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.len() < min || d.len() > max {
            return Err("Bad date".into());
        }
        Ok(d.iter().fold(0, |acc, &b| acc * 10 + u32::from(b - b'0')))
    }

    fn date_text(&mut self, day: u32) -> R<Date> {
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.digits(4, 4)?;
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if day == 0 || day > days {
            return Err("Bad date".into());
        }
        Ok(Date {
            year: year as u16,
            month,
            day: day as u8,
        })
    }

    /// `date`: `1-Feb-1994`, optionally quoted.
    fn date(&mut self) -> R<Date> {
        let quoted = self.eat(b'"');
        let day = self.digits(1, 2)?;
        let date = self.date_text(day)?;
        if quoted {
            self.expect(b'"')?;
        }
        Ok(date)
    }

    /// `date-time`: `"17-Jul-1996 02:44:25 -0700"` (the day may be space-padded).
    fn date_time(&mut self) -> R<DateTime> {
        self.expect(b'"')?;
        self.eat(b' ');
        let day = self.digits(1, 2)?;
        let date = self.date_text(day)?;
        self.sp()?;
        let hour = self.digits(2, 2)?;
        self.expect(b':')?;
        let minute = self.digits(2, 2)?;
        self.expect(b':')?;
        let second = self.digits(2, 2)?;
        self.sp()?;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("Bad time zone".into()),
        };
        self.pos += 1;
        let zone = self.digits(4, 4)?;
        self.expect(b'"')?;
        if hour > 23 || minute > 59 || second > 60 || zone / 100 > 23 || zone % 100 > 59 {
            return Err("Bad date-time".into());
        }
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone_minutes: sign * (zone / 100 * 60 + zone % 100) as i16,
        })
    }

    /// The options between an APPEND's mailbox and its message literal: `SP [flag-list SP]
    /// [date-time SP]`, up to the end of the text.
    fn append_options(&mut self) -> R<(Vec<Flag>, Option<DateTime>)> {
        self.sp()?;
        let mut flags = Vec::new();
        let mut date = None;
        if self.peek() == Some(b'(') {
            flags = self.flag_list()?;
            self.sp()?;
        }
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        self.end()?;
        Ok((flags, date))
    }

    fn command(&mut self) -> R<CommandKind> {
        let name = self.keyword("command")?;
        let kind = match name.as_str() {
            "UID" => {
                self.sp()?;
                let sub = self.keyword("command after UID")?;
                self.uid_command(&sub)
            }
            _ => self.command_named(&name),
        }
        .map_err(|e| format!("{name}: {e}"))?;
        self.end().map_err(|e| format!("{name}: {e}"))?;
        Ok(kind)
    }

    fn uid_command(&mut self, name: &str) -> R<CommandKind> {
        match name {
            "EXPUNGE" => {
                self.sp()?;
                Ok(CommandKind::UidExpunge(self.seq_set()?))
            }
            "COPY" | "MOVE" | "FETCH" | "SEARCH" | "STORE" | "SORT" | "THREAD" => {
                self.selected_command(name, true)
            }
            _ => Err("Unknown UID command".into()),
        }
    }

    fn command_named(&mut self, name: &str) -> R<CommandKind> {
        use CommandKind as K;
        let kind = match name {
            "CAPABILITY" => K::Capability,
            "NOOP" => K::Noop,
            "LOGOUT" => K::Logout,
            "STARTTLS" => K::StartTls,
            "NAMESPACE" => K::Namespace,
            "IDLE" => K::Idle,
            "UNSELECT" => K::Unselect,
            "CHECK" => K::Check,
            "CLOSE" => K::Close,
            "EXPUNGE" => K::Expunge,
            "AUTHENTICATE" => self.authenticate()?,
            "LOGIN" => {
                self.sp()?;
                let username = self.astring()?;
                self.sp()?;
                let password = Secret::new(self.astring()?);
                K::Login { username, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while !self.at_end() {
                    self.sp()?;
                    self.item()?;
                    caps.push(upper(self.atom()?));
                }
                if caps.is_empty() {
                    return Err("Missing capability".into());
                }
                K::Enable(caps)
            }
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let params = self.select_params()?;
                if name == "SELECT" {
                    K::Select { mailbox, params }
                } else {
                    K::Examine { mailbox, params }
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if !self.at_end() {
                    self.sp()?;
                    let params = self.list(false, |c| {
                        let param = c.keyword("CREATE parameter")?;
                        if param != "USE" {
                            return Err(format!("Unknown CREATE parameter {param}"));
                        }
                        c.sp()?;
                        c.list(true, |c| {
                            c.expect(b'\\')?;
                            Ok(format!("\\{}", String::from_utf8_lossy(c.atom()?)))
                        })
                    })?;
                    special_use = params.into_iter().flatten().collect();
                }
                K::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                match name {
                    "DELETE" => K::Delete(mailbox),
                    "SUBSCRIBE" => K::Subscribe(mailbox),
                    _ => K::Unsubscribe(mailbox),
                }
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                K::Rename { from, to }
            }
            "LIST" => self.list_command()?,
            "LSUB" => {
                self.sp()?;
                let reference = self.astring()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                K::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.list(false, Self::status_item)?;
                K::Status { mailbox, items }
            }
            "ID" => {
                self.sp()?;
                if self.is_nil() {
                    self.pos += 3;
                    K::Id(None)
                } else {
                    K::Id(Some(self.list(true, |c| {
                        let key = c.string()?;
                        c.sp()?;
                        Ok((key, c.nstring()?))
                    })?))
                }
            }
            "APPEND" => return Err("The message must be a literal".into()),
            "COPY" | "MOVE" | "FETCH" | "SEARCH" | "STORE" | "SORT" | "THREAD" => {
                self.selected_command(name, false)?
            }
            _ => return Err("Unknown command".into()),
        };
        Ok(kind)
    }

    fn authenticate(&mut self) -> R<CommandKind> {
        self.sp()?;
        let mechanism = upper(self.atom()?);
        let mut initial = None;
        if !self.at_end() {
            self.sp()?;
            let resp = self.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            let data = resp.iter().position(|&b| b == b'=').unwrap_or(resp.len());
            let valid = resp == b"="
                || (!resp.is_empty()
                    && resp.len().is_multiple_of(4)
                    && resp.len() - data <= 2
                    && resp[data..].iter().all(|&b| b == b'='));
            if !valid {
                return Err("Bad base64 initial response".into());
            }
            initial = Some(String::from_utf8_lossy(resp).into_owned());
        }
        Ok(CommandKind::Authenticate { mechanism, initial })
    }

    fn status_item(&mut self) -> R<StatusItem> {
        Ok(match self.keyword("status item")?.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            other => return Err(format!("Unknown status item {other}")),
        })
    }

    fn select_params(&mut self) -> R<SelectParams> {
        let mut params = SelectParams::default();
        if self.at_end() {
            return Ok(params);
        }
        self.sp()?;
        self.list(false, |c| {
            match c.keyword("select parameter")?.as_str() {
                "CONDSTORE" => params.condstore = true,
                "QRESYNC" if params.qresync.is_none() => {
                    c.sp()?;
                    c.expect(b'(')?;
                    let uid_validity = c.nz_number()?;
                    c.sp()?;
                    let mod_seq = c.number64()?;
                    let mut known_uids = None;
                    let mut seq_match = None;
                    if c.eat(b' ') && c.peek() != Some(b'(') {
                        known_uids = Some(c.seq_set()?);
                        c.eat(b' ');
                    }
                    if c.peek() == Some(b'(') {
                        c.pos += 1;
                        let seqs = c.seq_set()?;
                        c.sp()?;
                        let uids = c.seq_set()?;
                        c.expect(b')')?;
                        seq_match = Some((seqs, uids));
                    }
                    c.expect(b')')?;
                    params.qresync = Some(QResync {
                        uid_validity,
                        mod_seq,
                        known_uids,
                        seq_match,
                    });
                }
                other => return Err(format!("Unknown select parameter {other}")),
            }
            Ok(())
        })?;
        Ok(params)
    }

    fn list_command(&mut self) -> R<CommandKind> {
        self.sp()?;
        let mut select = Vec::new();
        if self.peek() == Some(b'(') {
            select = self.list(true, |c| {
                Ok(match c.keyword("selection option")?.as_str() {
                    "SUBSCRIBED" => ListSelect::Subscribed,
                    "REMOTE" => ListSelect::Remote,
                    "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                    "SPECIAL-USE" => ListSelect::SpecialUse,
                    other => return Err(format!("Unknown selection option {other}")),
                })
            })?;
            // RFC 5258 3: RECURSIVEMATCH needs another option to qualify (REMOTE does not).
            if select.contains(&ListSelect::RecursiveMatch)
                && select
                    .iter()
                    .all(|s| matches!(s, ListSelect::RecursiveMatch | ListSelect::Remote))
            {
                return Err("RECURSIVEMATCH needs another selection option".into());
            }
            self.sp()?;
        }
        let reference = self.astring()?;
        self.sp()?;
        let patterns = if self.peek() == Some(b'(') {
            self.list(false, Self::list_mailbox)?
        } else {
            vec![self.list_mailbox()?]
        };
        let mut returns = Vec::new();
        if !self.at_end() {
            self.sp()?;
            if self.keyword("RETURN")? != "RETURN" {
                return Err("Expected RETURN".into());
            }
            self.sp()?;
            returns = self.list(true, |c| {
                Ok(match c.keyword("return option")?.as_str() {
                    "SUBSCRIBED" => ListReturn::Subscribed,
                    "CHILDREN" => ListReturn::Children,
                    "SPECIAL-USE" => ListReturn::SpecialUse,
                    "STATUS" => {
                        c.sp()?;
                        ListReturn::Status(c.list(false, Self::status_item)?)
                    }
                    other => return Err(format!("Unknown return option {other}")),
                })
            })?;
        }
        Ok(CommandKind::List {
            select,
            reference,
            patterns,
            returns,
        })
    }

    fn selected_command(&mut self, name: &str, uid: bool) -> R<CommandKind> {
        use CommandKind as K;
        self.sp()?;
        Ok(match name {
            "COPY" | "MOVE" => {
                let set = self.seq_set()?;
                self.sp()?;
                let mailbox = self.mailbox()?;
                if name == "COPY" {
                    K::Copy { uid, set, mailbox }
                } else {
                    K::Move { uid, set, mailbox }
                }
            }
            "FETCH" => self.fetch(uid)?,
            "STORE" => self.store(uid)?,
            "SEARCH" => {
                let mut returns = None;
                if self.peek_keyword("RETURN") {
                    self.name();
                    self.sp()?;
                    returns = Some(self.list(true, |c| {
                        Ok(match c.keyword("search return option")?.as_str() {
                            "MIN" => SearchReturn::Min,
                            "MAX" => SearchReturn::Max,
                            "ALL" => SearchReturn::All,
                            "COUNT" => SearchReturn::Count,
                            "SAVE" => SearchReturn::Save,
                            other => return Err(format!("Unknown return option {other}")),
                        })
                    })?);
                    self.sp()?;
                }
                let mut charset = None;
                if self.peek_keyword("CHARSET") {
                    self.name();
                    self.sp()?;
                    charset = Some(self.charset()?);
                    self.sp()?;
                }
                let criteria = self.search_program()?;
                K::Search {
                    uid,
                    returns,
                    charset,
                    criteria,
                }
            }
            "SORT" => {
                let criteria = self.list(false, |c| {
                    let mut word = c.keyword("sort key")?;
                    let reverse = word == "REVERSE";
                    if reverse {
                        c.sp()?;
                        word = c.keyword("sort key")?;
                    }
                    let key = match word.as_str() {
                        "ARRIVAL" => SortKey::Arrival,
                        "CC" => SortKey::Cc,
                        "DATE" => SortKey::Date,
                        "FROM" => SortKey::From,
                        "SIZE" => SortKey::Size,
                        "SUBJECT" => SortKey::Subject,
                        "TO" => SortKey::To,
                        "DISPLAYFROM" => SortKey::DisplayFrom,
                        "DISPLAYTO" => SortKey::DisplayTo,
                        other => return Err(format!("Unknown sort key {other}")),
                    };
                    Ok(SortCriterion { reverse, key })
                })?;
                self.sp()?;
                let charset = self.charset()?;
                self.sp()?;
                let search = self.search_program()?;
                K::Sort {
                    uid,
                    criteria,
                    charset,
                    search,
                }
            }
            "THREAD" => {
                let algorithm = match self.keyword("thread algorithm")?.as_str() {
                    "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
                    "REFERENCES" => ThreadAlgorithm::References,
                    other => return Err(format!("Unknown thread algorithm {other}")),
                };
                self.sp()?;
                let charset = self.charset()?;
                self.sp()?;
                let search = self.search_program()?;
                K::Thread {
                    uid,
                    algorithm,
                    charset,
                    search,
                }
            }
            _ => return Err("Unknown command".into()),
        })
    }

    /// True when the next word is `word` followed by a space.
    fn peek_keyword(&self, word: &str) -> bool {
        let rest = &self.s[self.pos..];
        rest.len() > word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && rest[word.len()] == b' '
    }

    fn charset(&mut self) -> R<String> {
        let charset = self.astring()?;
        text(charset, "Charset")
    }

    fn fetch(&mut self, uid: bool) -> R<CommandKind> {
        let set = self.seq_set()?;
        self.sp()?;
        let items = if self.peek() == Some(b'(') {
            self.list(false, Self::fetch_att)?
        } else {
            let save = self.pos;
            match self.name().to_ascii_uppercase().as_slice() {
                b"ALL" => vec![
                    FetchItem::Flags,
                    FetchItem::InternalDate,
                    FetchItem::Rfc822Size,
                    FetchItem::Envelope,
                ],
                b"FAST" => vec![
                    FetchItem::Flags,
                    FetchItem::InternalDate,
                    FetchItem::Rfc822Size,
                ],
                b"FULL" => vec![
                    FetchItem::Flags,
                    FetchItem::InternalDate,
                    FetchItem::Rfc822Size,
                    FetchItem::Envelope,
                    FetchItem::Body,
                ],
                _ => {
                    self.pos = save;
                    vec![self.fetch_att()?]
                }
            }
        };
        let mut changed_since = None;
        let mut vanished = false;
        if !self.at_end() {
            self.sp()?;
            self.list(false, |c| {
                match c.keyword("fetch modifier")?.as_str() {
                    "CHANGEDSINCE" if changed_since.is_none() => {
                        c.sp()?;
                        changed_since = Some(c.number64()?);
                    }
                    "VANISHED" => vanished = true,
                    other => return Err(format!("Unknown fetch modifier {other}")),
                }
                Ok(())
            })?;
            // RFC 7162 3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
            if vanished && (!uid || changed_since.is_none()) {
                return Err("VANISHED requires UID FETCH and CHANGEDSINCE".into());
            }
        }
        Ok(CommandKind::Fetch {
            uid,
            set,
            items,
            changed_since,
            vanished,
        })
    }

    fn fetch_att(&mut self) -> R<FetchItem> {
        let name = self.keyword("fetch item")?;
        Ok(match name.as_str() {
            "ENVELOPE" => FetchItem::Envelope,
            "FLAGS" => FetchItem::Flags,
            "INTERNALDATE" => FetchItem::InternalDate,
            "RFC822" => FetchItem::Rfc822,
            "RFC822.HEADER" => FetchItem::Rfc822Header,
            "RFC822.SIZE" => FetchItem::Rfc822Size,
            "RFC822.TEXT" => FetchItem::Rfc822Text,
            "BODYSTRUCTURE" => FetchItem::BodyStructure,
            "UID" => FetchItem::Uid,
            "MODSEQ" => FetchItem::ModSeq,
            "BODY" if self.peek() != Some(b'[') => FetchItem::Body,
            "BODY" | "BODY.PEEK" => FetchItem::BodySection {
                peek: name == "BODY.PEEK",
                section: self.section()?,
                partial: self.partial()?,
            },
            "BINARY" | "BINARY.PEEK" => FetchItem::Binary {
                peek: name == "BINARY.PEEK",
                part: self.section_binary()?,
                partial: self.partial()?,
            },
            "BINARY.SIZE" => FetchItem::BinarySize {
                part: self.section_binary()?,
            },
            other => return Err(format!("Unknown fetch item {other}")),
        })
    }

    fn section_part(&mut self) -> R<Vec<u32>> {
        let mut part = vec![self.nz_number()?];
        while self.peek() == Some(b'.') && self.s.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            self.item()?;
            part.push(self.nz_number()?);
        }
        Ok(part)
    }

    fn section(&mut self) -> R<Section> {
        self.expect(b'[')?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            section.part = self.section_part()?;
            if self.eat(b']') {
                return Ok(section);
            }
            self.expect(b'.')?;
        }
        let word = self.keyword("section")?;
        section.text = Some(match word.as_str() {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !section.part.is_empty() => SectionText::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                self.sp()?;
                let names = self.list(false, |c| text(c.astring()?, "Header field name"))?;
                if word == "HEADER.FIELDS" {
                    SectionText::HeaderFields(names)
                } else {
                    SectionText::HeaderFieldsNot(names)
                }
            }
            other => return Err(format!("Unknown section {other}")),
        });
        self.expect(b']')?;
        Ok(section)
    }

    fn section_binary(&mut self) -> R<Vec<u32>> {
        self.expect(b'[')?;
        let part = if self.peek() == Some(b']') {
            Vec::new()
        } else {
            self.section_part()?
        };
        self.expect(b']')?;
        Ok(part)
    }

    fn partial(&mut self) -> R<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number()?;
        self.expect(b'.')?;
        let length = self.nz_number()?;
        self.expect(b'>')?;
        Ok(Some((offset, length)))
    }

    fn store(&mut self, uid: bool) -> R<CommandKind> {
        let set = self.seq_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.peek() == Some(b'(') {
            self.list(false, |c| {
                match c.keyword("store modifier")?.as_str() {
                    "UNCHANGEDSINCE" if unchanged_since.is_none() => {
                        c.sp()?;
                        unchanged_since = Some(c.number64()?);
                    }
                    other => return Err(format!("Unknown store modifier {other}")),
                }
                Ok(())
            })?;
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let silent = match self.keyword("FLAGS")?.as_str() {
            "FLAGS" => false,
            "FLAGS.SILENT" => true,
            other => return Err(format!("Unknown store item {other}")),
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while !self.at_end() {
                self.sp()?;
                self.item()?;
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandKind::Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        })
    }

    /// `search-key *(SP search-key)` up to the end of the command.
    fn search_program(&mut self) -> R<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while !self.at_end() {
            self.sp()?;
            keys.push(self.search_key()?);
        }
        Ok(SearchKey::And(keys))
    }

    fn search_key(&mut self) -> R<SearchKey> {
        self.item()?;
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err("Search program nested too deeply".into());
        }
        let key = self.search_key_inner();
        self.depth -= 1;
        key
    }

    fn search_key_inner(&mut self) -> R<SearchKey> {
        use SearchKey as S;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut keys = vec![self.search_key()?];
                while !self.eat(b')') {
                    if self.at_end() {
                        return Err("Missing ')'".into());
                    }
                    self.sp()?;
                    keys.push(self.search_key()?);
                }
                return Ok(S::And(keys));
            }
            Some(b) if b.is_ascii_digit() || b == b'*' || b == b'$' => {
                return Ok(S::SequenceSet(self.seq_set()?));
            }
            _ => {}
        }
        let word = self.keyword("search key")?;
        let unit = match word.as_str() {
            "ALL" => Some(S::All),
            "ANSWERED" => Some(S::Answered),
            "DELETED" => Some(S::Deleted),
            "DRAFT" => Some(S::Draft),
            "FLAGGED" => Some(S::Flagged),
            "NEW" => Some(S::New),
            "OLD" => Some(S::Old),
            "RECENT" => Some(S::Recent),
            "SEEN" => Some(S::Seen),
            "UNANSWERED" => Some(S::Unanswered),
            "UNDELETED" => Some(S::Undeleted),
            "UNDRAFT" => Some(S::Undraft),
            "UNFLAGGED" => Some(S::Unflagged),
            "UNSEEN" => Some(S::Unseen),
            _ => None,
        };
        if let Some(key) = unit {
            return Ok(key);
        }
        self.sp()?;
        Ok(match word.as_str() {
            "BCC" => S::Bcc(self.astring()?),
            "BODY" => S::Body(self.astring()?),
            "CC" => S::Cc(self.astring()?),
            "FROM" => S::From(self.astring()?),
            "SUBJECT" => S::Subject(self.astring()?),
            "TEXT" => S::Text(self.astring()?),
            "TO" => S::To(self.astring()?),
            "KEYWORD" => S::Keyword(String::from_utf8_lossy(self.atom()?).into_owned()),
            "UNKEYWORD" => S::Unkeyword(String::from_utf8_lossy(self.atom()?).into_owned()),
            "HEADER" => {
                let field = text(self.astring()?, "Header field name")?;
                self.sp()?;
                S::Header(field, self.astring()?)
            }
            "BEFORE" => S::Before(self.date()?),
            "ON" => S::On(self.date()?),
            "SINCE" => S::Since(self.date()?),
            "SENTBEFORE" => S::SentBefore(self.date()?),
            "SENTON" => S::SentOn(self.date()?),
            "SENTSINCE" => S::SentSince(self.date()?),
            "LARGER" => S::Larger(self.number64()?),
            "SMALLER" => S::Smaller(self.number64()?),
            "UID" => S::Uid(self.seq_set()?),
            "NOT" => S::Not(Box::new(self.search_key()?)),
            "OR" => {
                let a = self.search_key()?;
                self.sp()?;
                S::Or(Box::new(a), Box::new(self.search_key()?))
            }
            "MODSEQ" => {
                let mut entry = None;
                if self.peek() == Some(b'"') {
                    let name = self.quoted()?;
                    self.sp()?;
                    let kind = match self.keyword("entry type")?.as_str() {
                        "PRIV" => EntryType::Private,
                        "SHARED" => EntryType::Shared,
                        "ALL" => EntryType::All,
                        other => return Err(format!("Unknown entry type {other}")),
                    };
                    self.sp()?;
                    entry = Some((name, kind));
                }
                S::ModSeq {
                    entry,
                    mod_seq: self.number64()?,
                }
            }
            other => return Err(format!("Unknown search key {other}")),
        })
    }
}
