//! Building blocks of IMAP responses: strings (quoted or literal), flag lists, dates and
//! compact sequence sets.

/// Appends `s` as a quoted string when it can be one, else as a literal `{n}\r\n...`.
/// `utf8` allows 8-bit text in quoted strings (IMAP4rev2, UTF8=ACCEPT).
pub fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() < 1024
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && (b < 0x80 || utf8))
        && (!utf8 || std::str::from_utf8(s).is_ok());
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `s` as a literal; `~{n}` when it holds NUL (RFC 3516 literal8).
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.push(b'~');
    }
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `(\Seen $Forwarded)`.
pub fn flag_list(flags: &[String]) -> String {
    let mut out = Vec::new();
    push_flag_list(&mut out, flags);
    String::from_utf8(out).unwrap_or_default()
}

/// [`flag_list`] appended to `out`, without a temporary (a FETCH line per message).
pub fn push_flag_list(out: &mut Vec<u8>, flags: &[String]) {
    out.push(b'(');
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f.as_bytes());
    }
    out.push(b')');
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// INTERNALDATE in UTC: `"17-Jul-1996 09:44:25 +0000"`, quoted.
pub fn internal_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "\"{:02}-{}-{} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The month number (1-12) of an English three-letter month name, any case.
pub fn month_number(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

/// Howard Hinnant's days-to-civil: (year, month 1-12, day 1-31).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Ascending numbers as a compact sequence set (`1:3,7`); empty input gives an empty string.
pub fn sequence_set(numbers: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let flush = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    };
    for n in numbers {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(n) => Some((a, n)),
            Some(r) => {
                flush(&mut out, r);
                Some((n, n))
            }
            None => Some((n, n)),
        };
    }
    if let Some(r) = run {
        flush(&mut out, r);
    }
    out
}
