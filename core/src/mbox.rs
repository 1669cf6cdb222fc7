//! The mbox format (mboxrd, read tolerantly as mboxo too): splitting a file into messages,
//! `From ` quoting, the asctime dates of `From_` lines, and message flags kept in the `Status:`
//! and `X-Status:` headers that mutt, Dovecot and Python's `mailbox` module use.

use crate::clock::rfc5322_date;

/// One message read from an mbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The message with `>From ` quoting undone and `Status:`/`X-Status:` removed, CRLF lines.
    pub message: Vec<u8>,
    /// Maildir flag letters (`DFRST` subset, sorted) from the status headers.
    pub flags: String,
    /// The date of the `From_` line, Unix seconds, if it parsed.
    pub date: Option<i64>,
}

/// Splits an mbox file into messages. A message starts at a line beginning `From ` at the
/// start of the file or after an empty line (the tolerant reading most MUAs use).
pub fn parse(file: &[u8]) -> Vec<MboxMessage> {
    let mut messages = Vec::new();
    let mut current: Option<(Option<i64>, Vec<&[u8]>)> = None;
    let mut prev_empty = true;
    for line in file.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.starts_with(b"From ") && prev_empty {
            if let Some((date, lines)) = current.take() {
                messages.push(finish(date, &lines));
            }
            current = Some((parse_from_line_date(content), Vec::new()));
            prev_empty = false;
            continue;
        }
        prev_empty = content.is_empty();
        if let Some((_, lines)) = &mut current {
            lines.push(content);
        }
    }
    if let Some((date, lines)) = current {
        messages.push(finish(date, &lines));
    }
    messages
}

fn finish(date: Option<i64>, lines: &[&[u8]]) -> MboxMessage {
    // The empty line before the next `From ` belongs to the format, not the message.
    let lines = match lines.last() {
        Some([]) => &lines[..lines.len() - 1],
        _ => lines,
    };
    let mut message = Vec::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
    let mut flags = String::new();
    let mut in_headers = true;
    for line in lines {
        if in_headers && line.is_empty() {
            in_headers = false;
        }
        if in_headers {
            if let Some(v) = header_value(line, b"status:") {
                flags.extend(v.chars().filter_map(|c| match c {
                    'R' => Some('S'),
                    _ => None,
                }));
                continue;
            }
            if let Some(v) = header_value(line, b"x-status:") {
                flags.extend(v.chars().filter_map(|c| match c {
                    'A' => Some('R'),
                    'F' => Some('F'),
                    'D' => Some('T'),
                    _ => None,
                }));
                continue;
            }
        }
        message.extend_from_slice(unquote(line));
        message.extend_from_slice(b"\r\n");
    }
    let mut flags: Vec<char> = flags.chars().collect();
    flags.sort_unstable();
    flags.dedup();
    MboxMessage {
        message,
        flags: flags.into_iter().collect(),
        date,
    }
}

fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let head = line.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    std::str::from_utf8(&line[name.len()..]).ok().map(str::trim)
}

/// mboxrd: `>From `, `>>From `... lose one `>`.
fn unquote(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    if quotes > 0 && line[quotes..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a `From sender Wed Nov 25 14:45:00 2026` line (asctime, UTC assumed).
pub fn parse_from_line_date(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    // From sender Day Mon DD HH:MM:SS YYYY [...]: find the month word after the sender.
    let at = words.iter().skip(2).position(|w| MONTHS.contains(w))? + 2;
    let month = MONTHS.iter().position(|m| *m == words[at])? as i64 + 1;
    let day: i64 = words.get(at + 1)?.parse().ok()?;
    let mut hms = words.get(at + 2)?.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = (
        hms.next()?.ok()?,
        hms.next()?.ok()?,
        hms.next().unwrap_or(Ok(0)).ok()?,
    );
    let year: i64 = words.get(at + 3)?.parse().ok()?;
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Appends one message in mboxrd form: the `From_` line, `Status:`/`X-Status:` for `flags`
/// (Maildir letters; `Status: O` when there are none, i.e. an old unread message) after the
/// other headers, replacing any the message had, the body with LF lines and `From ` quoted, and
/// the empty separator line.
pub fn write_message(out: &mut Vec<u8>, sender: &str, date: i64, flags: &str, message: &[u8]) {
    write_from_line(out, sender, date);
    let mut encoder = MboxrdEncoder::new(flags, false);
    encoder.encode(message, out);
    encoder.finish(out);
}

/// Appends the `From_` separator line, `From SENDER DATE\n` with an asctime date in UTC
/// (`From alice@example.org Wed Nov 25 15:12:40 2026`). An empty sender is the null sender,
/// written `MAILER-DAEMON`; spaces and control characters in the sender become `_` so the line
/// stays one line with the date where readers look for it.
pub fn write_from_line(out: &mut Vec<u8>, sender: &str, date: i64) {
    // RFC 5322 date "Wed, 25 Nov 2026 14:45:00 +0000" -> asctime "Wed Nov 25 14:45:00 2026".
    let d = rfc5322_date(date);
    let p: Vec<&str> = d.split(' ').collect();
    let sender: String = if sender.is_empty() {
        "MAILER-DAEMON".into()
    } else {
        sender
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect()
    };
    out.extend_from_slice(
        format!(
            "From {sender} {} {} {:>2} {} {}\n",
            &p[0][..3],
            p[2],
            p[1],
            p[4],
            p[3]
        )
        .as_bytes(),
    );
}

/// Where the encoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// Deciding what the line is: `quotes` leading `>` seen, then `held` bytes of a possible
    /// `From ` / `Status:` / `X-Status:` start (kept in `MboxrdEncoder::held`).
    Start { quotes: u64 },
    /// The rest of the line is copied through.
    Copy,
    /// The rest of the line is dropped (an old `Status:`/`X-Status:` header or its folding).
    Drop,
}

/// Streaming mboxrd body encoder: feed the message in chunks of any size with
/// [`encode`](Self::encode), then call [`finish`](Self::finish) once. The output is the same
/// whatever the chunking; state between calls is a few bytes (no line or message is buffered),
/// so a 50 MB message costs only the caller's buffers.
///
/// It converts CRLF to LF (a CR not followed by LF is kept), adds one `>` to every line matching
/// `^>*From `, drops `Status:`/`X-Status:` headers (with their folded continuation lines) and
/// writes the ones for its flags at the end of the header block, and ends the message with a
/// newline (added if the message lacked one) and the empty separator line.
#[derive(Debug, Clone)]
pub struct MboxrdEncoder {
    status: Vec<u8>,
    line: LineState,
    held: [u8; 9],
    held_len: usize,
    in_headers: bool,
    dropping_header: bool,
    pending_cr: bool,
    at_line_start: bool,
}

const FROM: &[u8] = b"From ";
const STATUS: &[u8] = b"status:";
const X_STATUS: &[u8] = b"x-status:";

impl MboxrdEncoder {
    /// An encoder recording `flags` (Maildir letters `S`, `R`, `F`, `T`; others ignored) as
    /// `Status:`/`X-Status:`. With `recent` and no flags no status header is written at all,
    /// so mutt and Dovecot show the message as new, as a delivery agent leaves it; otherwise
    /// `Status:` always carries `O` (seen by a mail reader, no longer new).
    pub fn new(flags: &str, recent: bool) -> Self {
        let mut status = Vec::new();
        if !(recent && flags.is_empty()) {
            write_status(&mut status, flags);
        }
        MboxrdEncoder {
            status,
            line: LineState::Start { quotes: 0 },
            held: [0; 9],
            held_len: 0,
            in_headers: true,
            dropping_header: false,
            pending_cr: false,
            at_line_start: true,
        }
    }

    /// Encodes the next `input` bytes of the message, appending the result to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while let Some((&b, tail)) = rest.split_first() {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    // A lone CR is content, not a line end.
                    self.byte(b'\r', out);
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
                rest = tail;
                continue;
            }
            if self.line == LineState::Copy && b != b'\n' {
                // Fast path: copy up to the next line end in one go.
                let n = rest
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(rest.len());
                out.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                continue;
            }
            self.byte(b, out);
            rest = tail;
        }
    }

    /// Ends the message: flushes held bytes, ends the last line, writes the status headers if
    /// the message had no body separator, and appends the empty line that separates messages.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            self.byte(b'\r', out);
        }
        if !self.at_line_start {
            self.byte(b'\n', out);
        }
        if self.in_headers {
            out.extend_from_slice(&self.status);
        }
        out.push(b'\n');
    }

    /// One content byte (CR already resolved).
    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if b == b'\n' {
            self.end_line(out);
            return;
        }
        self.at_line_start = false;
        match self.line {
            LineState::Copy => out.push(b),
            LineState::Drop => {}
            LineState::Start { quotes } => {
                if quotes == 0 && self.held_len == 0 && self.in_headers {
                    if self.dropping_header && (b == b' ' || b == b'\t') {
                        self.line = LineState::Drop;
                        return;
                    }
                    self.dropping_header = false;
                }
                if b == b'>' && self.held_len == 0 {
                    self.line = LineState::Start { quotes: quotes + 1 };
                    return;
                }
                self.held[self.held_len] = b;
                self.held_len += 1;
                let held = &self.held[..self.held_len];
                let header = quotes == 0 && self.in_headers;
                if held == FROM {
                    // mboxrd: one more `>` than the line had.
                    push_quotes(out, quotes + 1);
                    out.extend_from_slice(FROM);
                    self.held_len = 0;
                    self.line = LineState::Copy;
                } else if header
                    && (held.eq_ignore_ascii_case(STATUS) || held.eq_ignore_ascii_case(X_STATUS))
                {
                    self.held_len = 0;
                    self.dropping_header = true;
                    self.line = LineState::Drop;
                } else if !(FROM.starts_with(held)
                    || header && (is_prefix_ci(held, STATUS) || is_prefix_ci(held, X_STATUS)))
                {
                    self.flush_held(quotes, out);
                    self.line = LineState::Copy;
                }
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        let was_empty = self.at_line_start;
        match self.line {
            LineState::Start { quotes } => self.flush_held(quotes, out),
            LineState::Drop => {
                self.line = LineState::Start { quotes: 0 };
                self.at_line_start = true;
                return;
            }
            LineState::Copy => {}
        }
        if was_empty && self.in_headers {
            // The blank line ending the header block: our status headers go just before it.
            self.in_headers = false;
            out.extend_from_slice(&self.status);
        }
        out.push(b'\n');
        self.line = LineState::Start { quotes: 0 };
        self.at_line_start = true;
    }

    fn flush_held(&mut self, quotes: u64, out: &mut Vec<u8>) {
        push_quotes(out, quotes);
        out.extend_from_slice(&self.held[..self.held_len]);
        self.held_len = 0;
    }
}

/// `part` is a case-insensitive prefix of `whole`.
fn is_prefix_ci(part: &[u8], whole: &[u8]) -> bool {
    whole
        .get(..part.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(part))
}

/// The status headers for Maildir `flags`: `Status: RO` if seen, else `Status: O`; `X-Status:`
/// with `A` (answered), `F` (flagged), `D` (deleted) when any apply.
fn write_status(out: &mut Vec<u8>, flags: &str) {
    if flags.contains('S') {
        out.extend_from_slice(b"Status: RO\n");
    } else {
        out.extend_from_slice(b"Status: O\n");
    }
    let x: String = flags
        .chars()
        .filter_map(|c| match c {
            'R' => Some('A'),
            'F' => Some('F'),
            'T' => Some('D'),
            _ => None,
        })
        .collect();
    if !x.is_empty() {
        out.extend_from_slice(format!("X-Status: {x}\n").as_bytes());
    }
}

fn push_quotes(out: &mut Vec<u8>, n: u64) {
    for _ in 0..n {
        out.push(b'>');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_quoting_flags_and_dates() {
        let a = b"Subject: a\r\n\r\nFrom here\r\n>From quoted\r\nend\r\n".to_vec();
        let b = b"Subject: b\r\n\r\nno final newline".to_vec();
        let mut file = Vec::new();
        write_message(&mut file, "x@y.example", 1_795_525_920, "FRS", &a);
        write_message(&mut file, "", 0, "", &b);
        let text = String::from_utf8(file.clone()).unwrap();
        assert!(text.starts_with("From x@y.example Tue Nov 24 13:12:00 2026\nSubject: a\nStatus: RO\nX-Status: FA\n\n>From here\n>>From quoted\n"), "{text}");
        let parsed = parse(&file);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].message, a);
        assert_eq!(parsed[0].flags, "FRS");
        assert_eq!(parsed[0].date, Some(1_795_525_920));
        assert_eq!(parsed[1].message, b"Subject: b\r\n\r\nno final newline\r\n");
        assert_eq!(parsed[1].date, Some(0));
    }

    #[test]
    fn tolerant_reading() {
        let file = b"From a Mon Jan  5 00:00:00 2026\nSubject: 1\n\nbody\nFrom inside the body\n\nFrom b Tue Jan  6 00:00:00 2026\nSubject: 2\n\n";
        let parsed = parse(file);
        assert_eq!(parsed.len(), 2);
        assert!(
            parsed[0]
                .message
                .ends_with(b"body\r\nFrom inside the body\r\n")
        );
        assert_eq!(
            parsed[1].date.map(|d| d - parsed[0].date.unwrap()),
            Some(86_400)
        );
        assert!(parse(b"no from line\n").is_empty());
    }

    fn encode_chunked(message: &[u8], flags: &str, recent: bool, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = MboxrdEncoder::new(flags, recent);
        for piece in message.chunks(chunk.max(1)) {
            encoder.encode(piece, &mut out);
        }
        encoder.finish(&mut out);
        out
    }

    #[test]
    fn encoder_quotes_converts_and_replaces_status() {
        let message = b"Status: RO\r\nSubject: s\r\nX-Status: A\r\n  folded\r\nstatus:x\r\n\r\n\
From a\r\n>From b\r\n>>>From c\r\nFrom\r\n> From d\r\nStatus: body\r\nlone\rcr\r\nFro";
        let out = encode_chunked(message, "SF", true, 1 << 20);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Subject: s\nStatus: RO\nX-Status: F\n\n>From a\n>>From b\n>>>>From c\nFrom\n> From d\n\
Status: body\nlone\rcr\nFro\n\n"
        );
    }

    #[test]
    fn encoder_output_does_not_depend_on_chunking() {
        let message = b"X-Status: F\r\n\tmore\r\nFrom: a\r\n\r\n>>From x\r\r\nFrom \n\r";
        let whole = encode_chunked(message, "R", false, usize::MAX);
        for chunk in 1..message.len() {
            assert_eq!(
                encode_chunked(message, "R", false, chunk),
                whole,
                "chunk {chunk}"
            );
        }
        // Every two-way split, too.
        for at in 0..=message.len() {
            let mut out = Vec::new();
            let mut encoder = MboxrdEncoder::new("R", false);
            encoder.encode(&message[..at], &mut out);
            encoder.encode(&message[at..], &mut out);
            encoder.finish(&mut out);
            assert_eq!(out, whole, "split at {at}");
        }
        assert_eq!(
            String::from_utf8(whole).unwrap(),
            "From: a\nStatus: O\nX-Status: A\n\n>>>From x\r\n>From \n\r\n\n"
        );
    }

    #[test]
    fn encoder_recent_without_flags_writes_no_status_and_headers_only_messages_end_cleanly() {
        assert_eq!(
            encode_chunked(b"Subject: x\r\n\r\nbody", "", true, 3),
            b"Subject: x\n\nbody\n\n"
        );
        assert_eq!(
            encode_chunked(b"Subject: x", "T", true, 3),
            b"Subject: x\nStatus: O\nX-Status: D\n\n"
        );
        assert_eq!(encode_chunked(b"", "", false, 3), b"Status: O\n\n");
    }

    #[test]
    fn from_line_sanitises_the_sender() {
        let mut out = Vec::new();
        write_from_line(&mut out, "a b\n@x", 1_795_525_920);
        assert_eq!(out, b"From a_b_@x Tue Nov 24 13:12:00 2026\n");
    }
}
