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
/// (Maildir letters) after the other headers, the body with LF lines and `From ` quoted, and
/// the empty separator line.
pub fn write_message(out: &mut Vec<u8>, sender: &str, date: i64, flags: &str, message: &[u8]) {
    // RFC 5322 date "Wed, 25 Nov 2026 14:45:00 +0000" -> asctime "Wed Nov 25 14:45:00 2026".
    let d = rfc5322_date(date);
    let p: Vec<&str> = d.split(' ').collect();
    let sender = if sender.is_empty() {
        "MAILER-DAEMON"
    } else {
        sender
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
    let mut in_headers = true;
    for line in message.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if in_headers && content.is_empty() {
            in_headers = false;
            write_status(out, flags);
        }
        let quotes = content.iter().take_while(|&&b| b == b'>').count();
        if content[quotes..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(content);
        out.push(b'\n');
    }
    if in_headers {
        write_status(out, flags);
    }
    out.push(b'\n');
}

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
}
