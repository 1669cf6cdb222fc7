//! Canonicalization (RFC 6376 3.4): header fields one at a time, the body as it streams.

use super::Canon;

/// One header field as it appears in the message: the raw bytes from the first byte of the name
/// to the CRLF that ends its last line, included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The name as written (before the colon, trailing whitespace removed).
    pub name: String,
    /// The whole field, folds and final CRLF included.
    pub raw: Vec<u8>,
}

impl HeaderField {
    /// The field's value: everything after the first colon, final CRLF removed.
    pub fn value(&self) -> &[u8] {
        let colon = self.raw.iter().position(|&b| b == b':').unwrap_or(0);
        let end = self.raw.len() - usize::from(self.raw.ends_with(b"\r\n")) * 2;
        &self.raw[(colon + 1).min(end)..end]
    }
}

/// Splits a header block (the bytes before the empty line, each line CRLF-terminated) into
/// fields. A line starting with SP or HTAB continues the previous field; a line without a colon
/// (or a continuation with nothing to continue) is not a field and is skipped, since no signature
/// can select it.
pub fn split_header(header: &[u8]) -> Vec<HeaderField> {
    let mut fields: Vec<HeaderField> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut rest = header;
    while !rest.is_empty() {
        let end = find_crlf(rest).map_or(rest.len(), |i| i + 2);
        let line = &rest[..end];
        rest = &rest[end..];
        if matches!(line[0], b' ' | b'\t') {
            if let Some(cur) = current.as_mut() {
                cur.extend_from_slice(line);
            }
            continue;
        }
        if let Some(raw) = current.take() {
            push_field(&mut fields, raw);
        }
        current = Some(line.to_vec());
    }
    if let Some(raw) = current {
        push_field(&mut fields, raw);
    }
    fields
}

fn push_field(fields: &mut Vec<HeaderField>, raw: Vec<u8>) {
    let Some(colon) = raw.iter().position(|&b| b == b':') else {
        return;
    };
    let name = &raw[..colon];
    let name = trim_end_wsp(name);
    // Field names are printable ASCII without the colon (RFC 5322 2.2).
    if name.is_empty() || !name.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return;
    }
    let name = String::from_utf8_lossy(name).into_owned();
    fields.push(HeaderField { name, raw });
}

/// Position of the first CRLF in `bytes`.
pub fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

fn trim_end_wsp(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Appends the canonical form of one header field to `out`, CRLF included.
///
/// Simple leaves the field untouched. Relaxed (RFC 6376 3.4.2) lowercases the name, unfolds,
/// turns every run of SP/HTAB into one SP, and removes whitespace at the end of the value and
/// around the colon.
pub fn header_field(canon: Canon, raw: &[u8], out: &mut Vec<u8>) {
    match canon {
        Canon::Simple => out.extend_from_slice(raw),
        Canon::Relaxed => {
            let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
            let name = trim_end_wsp(&raw[..colon]);
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.push(b':');
            let value = raw.get(colon + 1..).unwrap_or_default();
            let start = out.len();
            let mut pending_space = false;
            for &b in value {
                match b {
                    b'\r' | b'\n' => {}
                    b' ' | b'\t' => pending_space = true,
                    _ => {
                        if pending_space && out.len() > start {
                            out.push(b' ');
                        }
                        pending_space = false;
                        out.push(b);
                    }
                }
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Body canonicalization as the body streams, with bounded memory whatever the line length
/// (RFC 6376 3.4.3 simple, 3.4.4 relaxed).
///
/// Only CRLF ends a line; a lone CR or LF is an ordinary byte. Empty lines are withheld until a
/// non-empty line follows, so the empty lines at the end of the body disappear as both
/// algorithms require.
#[derive(Debug, Clone)]
pub struct BodyCanonicalizer {
    canon: Canon,
    /// Empty lines seen and not yet written.
    empty_lines: u64,
    /// Something of the current line has been written.
    line_started: bool,
    /// Relaxed: whitespace seen in the current line and not yet written.
    pending_space: bool,
    /// A CR was the last byte seen: a line end if LF follows.
    pending_cr: bool,
    /// Anything was ever written.
    wrote_any: bool,
}

impl BodyCanonicalizer {
    /// A canonicalizer at the start of a body.
    pub fn new(canon: Canon) -> BodyCanonicalizer {
        BodyCanonicalizer {
            canon,
            empty_lines: 0,
            line_started: false,
            pending_space: false,
            pending_cr: false,
            wrote_any: false,
        }
    }

    /// Canonicalizes the next `input` bytes of the body, handing the output to `out` in pieces.
    pub fn write(&mut self, input: &[u8], out: &mut impl FnMut(&[u8])) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.end_line(out);
                    i += 1;
                    continue;
                }
                self.content(b"\r", out);
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    i += 1;
                }
                b' ' | b'\t' if self.canon == Canon::Relaxed => {
                    self.pending_space = true;
                    i += 1;
                }
                _ => {
                    // Hand a run of ordinary bytes over in one piece.
                    let run = input[i..]
                        .iter()
                        .position(|&c| {
                            c == b'\r'
                                || (self.canon == Canon::Relaxed && matches!(c, b' ' | b'\t'))
                        })
                        .map_or(input.len(), |n| i + n);
                    self.content(&input[i..run], out);
                    i = run;
                }
            }
        }
    }

    /// Ends the body: completes an unterminated last line with CRLF and drops the withheld
    /// empty lines. An empty body is one CRLF under simple, nothing under relaxed.
    pub fn finish(mut self, out: &mut impl FnMut(&[u8])) {
        if self.pending_cr {
            self.pending_cr = false;
            self.content(b"\r", out);
        }
        if self.line_started {
            out(b"\r\n");
            self.wrote_any = true;
        }
        if !self.wrote_any && self.canon == Canon::Simple {
            out(b"\r\n");
        }
    }

    fn content(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        if !self.line_started {
            for _ in 0..self.empty_lines {
                out(b"\r\n");
            }
            self.empty_lines = 0;
            self.line_started = true;
            self.wrote_any = true;
        }
        if self.pending_space {
            out(b" ");
            self.pending_space = false;
        }
        out(bytes);
    }

    fn end_line(&mut self, out: &mut impl FnMut(&[u8])) {
        // Relaxed: whitespace at the end of a line is dropped.
        self.pending_space = false;
        if self.line_started {
            out(b"\r\n");
            self.line_started = false;
        } else {
            self.empty_lines += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(canon: Canon, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut c = BodyCanonicalizer::new(canon);
        c.write(input, &mut |b| out.extend_from_slice(b));
        c.finish(&mut |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(body(Canon::Simple, b""), b"\r\n");
        assert_eq!(body(Canon::Simple, b"\r\n\r\n"), b"\r\n");
        assert_eq!(body(Canon::Relaxed, b""), b"");
        assert_eq!(body(Canon::Relaxed, b" \r\n\t\r\n"), b"");
    }

    #[test]
    fn lone_cr_and_lf_are_content() {
        assert_eq!(body(Canon::Simple, b"a\rb\nc"), b"a\rb\nc\r\n");
        assert_eq!(body(Canon::Relaxed, b"a \r"), b"a \r\r\n");
    }

    #[test]
    fn splits_header_fields() {
        let f = split_header(b"A: 1\r\nB : x\r\n y\r\nnot a field\r\n\tstray\r\nC:\r\n");
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(f[1].raw, b"B : x\r\n y\r\n");
        assert_eq!(f[1].value(), b" x\r\n y");
        assert_eq!(f[2].value(), b"");
    }
}
