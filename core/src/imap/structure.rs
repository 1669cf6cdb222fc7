//! IMAP message structure: FETCH ENVELOPE, BODYSTRUCTURE, BODY, BODY[section] and BINARY[section]
//! (RFC 9051 sections 6.4.5 and 7.5.2), answered exactly as Dovecot 2.3 answers them.
//!
//! The MIME tree is parsed here, not with mail-parser, because byte-for-byte agreement with
//! Dovecot depends on its parser's own rules, which no general MIME library follows:
//! - a boundary line is any line that *starts* with `--boundary` (`--simplex` ends a part whose
//!   boundary is `simple`; trailing text is ignored), checked innermost boundary first, and a
//!   line matching an outer boundary also closes every inner multipart;
//! - the line break before a boundary line belongs to the boundary, not to the part;
//! - a part header that meets a boundary before its blank line ends there, with an empty body;
//! - sizes are "virtual": a bare LF counts as CRLF, and section contents are sent with bare LFs
//!   turned into CRLF;
//! - Content-* headers of a top-level (or message/rfc822) part count only when the part has a
//!   MIME-Version or a Content-Type header.
//!
//! The corpus under `core/tests/imap_corpus` holds Dovecot's own answers for real-world shaped
//! messages, and the tests compare with them byte for byte.

/// The `section` of `BODY[section]`: a part number path and what to take from that part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSpec {
    /// Part numbers, outermost first (`1.2.3` is `[1, 2, 3]`); empty for the whole message.
    pub part: Vec<u32>,
    /// What to return from the addressed part.
    pub text: SectionText,
}

/// The section text that follows the part numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// The whole part (`BODY[]`, `BODY[1.2]`).
    Full,
    /// The header of the message (or of the message/rfc822 part).
    Header,
    /// Only the listed header fields (names compared without case), then a blank line.
    HeaderFields(Vec<String>),
    /// Every header field except the listed ones, then a blank line.
    HeaderFieldsNot(Vec<String>),
    /// The MIME header of the part (`BODY[1.MIME]`).
    Mime,
    /// The body of the message (or of the message/rfc822 part).
    Text,
}

/// Why `BINARY[section]` cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryError {
    /// The part's Content-Transfer-Encoding is not one of 7bit, 8bit, binary, base64 or
    /// quoted-printable: answer `NO [UNKNOWN-CTE]` (RFC 3516).
    UnknownCte,
}

/// Deepest nesting of multiparts and message/rfc822 parts that is parsed; deeper content is
/// treated as an opaque leaf (Dovecot has a similar limit). Bounds the recursion.
const MAX_DEPTH: usize = 100;

/// The parenthesized ENVELOPE of a message (RFC 9051 7.5.2) as Dovecot sends it: raw header
/// values (RFC 2047 words are not decoded), strings quoted or sent as literals `{n}\r\n`.
pub fn envelope(raw: &[u8]) -> String {
    let msg = parse(raw);
    let mut out = Vec::new();
    write_envelope(raw, &msg.headers, &mut out);
    bytes_to_string(out)
}

/// BODYSTRUCTURE (`extensible`) or BODY (not `extensible`) of a message, as Dovecot sends it.
pub fn body_structure(raw: &[u8], extensible: bool) -> String {
    let msg = parse(raw);
    let mut out = Vec::new();
    write_part(raw, &msg, extensible, &mut out);
    bytes_to_string(out)
}

/// The contents of `BODY[section]`, before any `<partial>` slicing. Bare LFs are sent as CRLF,
/// as Dovecot does, so for a message with CRLF line ends `section(raw, Full)` is `raw`.
/// A part that does not exist gives an empty result (Dovecot answers `{0}`).
pub fn section(raw: &[u8], section: &SectionSpec) -> Vec<u8> {
    let msg = parse(raw);
    if section.part.is_empty() {
        return match &section.text {
            SectionText::Full => crlf(raw),
            text => message_section(raw, &msg, text),
        };
    }
    let Some(part) = find(&msg, &section.part) else {
        return Vec::new();
    };
    match &section.text {
        SectionText::Full => crlf(&raw[part.body_start..part.body_end]),
        SectionText::Mime => crlf(&raw[part.header_start..part.body_start]),
        text => match &part.body {
            Body::Message(inner) => message_section(raw, inner, text),
            _ => Vec::new(),
        },
    }
}

/// The contents of `BINARY[part]`: the part with its Content-Transfer-Encoding removed.
/// A part that does not exist gives an empty result, as in Dovecot.
pub fn binary(raw: &[u8], part: &[u32]) -> Result<Vec<u8>, BinaryError> {
    let msg = parse(raw);
    if part.is_empty() {
        let mut out = Vec::new();
        converted_header(raw, &msg, &mut out);
        out.extend_from_slice(&decode_part(raw, &msg, false)?);
        return Ok(out);
    }
    let Some(p) = find(&msg, part) else {
        return Ok(Vec::new());
    };
    decode_part(raw, p, false)
}

/// `BINARY.SIZE[part]`: the size of [`binary`]. Dovecot computes it while decoding the whole
/// message, so any part with an unknown Content-Transfer-Encoding makes it fail for every part.
pub fn binary_size(raw: &[u8], part: &[u32]) -> Result<usize, BinaryError> {
    let msg = parse(raw);
    if has_unknown_cte(raw, &msg) {
        return Err(BinaryError::UnknownCte);
    }
    if part.is_empty() {
        let mut out = Vec::new();
        converted_header(raw, &msg, &mut out);
        return Ok(out.len() + decode_part(raw, &msg, true)?.len());
    }
    match find(&msg, part) {
        Some(p) => decode_part(raw, p, true).map(|b| b.len()),
        None => Ok(0),
    }
}

// ---------------------------------------------------------------------------------------------
// The MIME tree

#[derive(Debug)]
struct Field {
    /// The whole field: name, value and continuation lines, with the final line break.
    start: usize,
    end: usize,
    name: (usize, usize),
    /// The value after the colon and leading blanks, up to the final line break.
    value: (usize, usize),
}

#[derive(Debug)]
enum Body {
    Leaf,
    Multipart(Vec<Part>),
    Message(Box<Part>),
}

#[derive(Debug)]
struct Part {
    header_start: usize,
    body_start: usize,
    body_end: usize,
    headers: Vec<Field>,
    /// Content-* headers count (MIME-Version or Content-Type present, or a multipart child).
    is_mime: bool,
    /// True when the default Content-Type is message/rfc822 (multipart/digest children).
    digest_child: bool,
    /// True when a boundary line came before the blank line that ends the header.
    header_cut: bool,
    body: Body,
}

/// A boundary line found in the body: where its line starts (and the line break before it
/// ends), which boundary of the stack it matched (0 = outermost) and whether it is the last.
#[derive(Debug, Clone, Copy)]
struct Hit {
    content_end: usize,
    line: usize,
    after: usize,
    level: usize,
    last: bool,
}

fn parse(raw: &[u8]) -> Part {
    let mut stack = Vec::new();
    parse_entity(raw, 0, &mut stack, 0, false, false).0
}

fn line_end(raw: &[u8], pos: usize) -> usize {
    match raw[pos..].iter().position(|&b| b == b'\n') {
        Some(i) => pos + i + 1,
        None => raw.len(),
    }
}

/// Where the content before a boundary line starting at `line` ends: before its line break.
fn before_break(raw: &[u8], from: usize, line: usize) -> usize {
    let mut end = line;
    if end > from && raw[end - 1] == b'\n' {
        end -= 1;
        if end > from && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

fn boundary_at(raw: &[u8], pos: usize, from: usize, stack: &[Vec<u8>]) -> Option<Hit> {
    let line = &raw[pos..];
    if stack.is_empty() || !line.starts_with(b"--") {
        return None;
    }
    for (level, b) in stack.iter().enumerate().rev() {
        if line[2..].starts_with(b) {
            let rest = &line[2 + b.len()..];
            return Some(Hit {
                content_end: before_break(raw, from, pos),
                line: pos,
                after: line_end(raw, pos),
                level,
                last: rest.starts_with(b"--"),
            });
        }
    }
    None
}

/// The first boundary line at or after `pos` (a line start).
fn find_boundary(raw: &[u8], mut pos: usize, stack: &[Vec<u8>]) -> Option<Hit> {
    if stack.is_empty() {
        return None;
    }
    let from = pos;
    while pos < raw.len() {
        if let Some(hit) = boundary_at(raw, pos, from, stack) {
            return Some(hit);
        }
        pos = line_end(raw, pos);
    }
    None
}

/// Parses a header block at `pos`; returns the fields, where the body starts and the boundary
/// that cut the header short, if any.
fn parse_header(raw: &[u8], pos: usize, stack: &[Vec<u8>]) -> (Vec<Field>, usize, Option<Hit>) {
    let from = pos;
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = pos;
    while pos < raw.len() {
        if let Some(hit) = boundary_at(raw, pos, from, stack) {
            return (fields, hit.content_end, Some(hit));
        }
        let end = line_end(raw, pos);
        let line = &raw[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return (fields, end, None);
        }
        if (line[0] == b' ' || line[0] == b'\t') && !fields.is_empty() {
            let f = fields.last_mut().expect("not empty");
            f.end = end;
            f.value.1 = trim_break(raw, pos, end);
        } else {
            let colon = line.iter().position(|&b| b == b':');
            let (name, value) = match colon {
                Some(c) => {
                    let mut v = pos + c + 1;
                    while v < end && (raw[v] == b' ' || raw[v] == b'\t') {
                        v += 1;
                    }
                    let mut n = pos + c;
                    while n > pos && (raw[n - 1] == b' ' || raw[n - 1] == b'\t') {
                        n -= 1;
                    }
                    ((pos, n), (v, trim_break(raw, v, end)))
                }
                None => ((pos, trim_break(raw, pos, end)), (end, end)),
            };
            fields.push(Field {
                start: pos,
                end,
                name,
                value,
            });
        }
        pos = end;
    }
    (fields, raw.len(), None)
}

fn trim_break(raw: &[u8], start: usize, end: usize) -> usize {
    let mut e = end;
    if e > start && raw[e - 1] == b'\n' {
        e -= 1;
        if e > start && raw[e - 1] == b'\r' {
            e -= 1;
        }
    }
    e.max(start)
}

fn parse_entity(
    raw: &[u8],
    start: usize,
    stack: &mut Vec<Vec<u8>>,
    depth: usize,
    in_multipart: bool,
    digest_child: bool,
) -> (Part, Option<Hit>) {
    let (headers, body_start, cut) = parse_header(raw, start, stack);
    let is_mime = in_multipart
        || headers
            .iter()
            .any(|f| name_is(raw, f, "mime-version") || name_is(raw, f, "content-type"));
    let mut part = Part {
        header_start: start,
        body_start,
        body_end: body_start,
        headers,
        is_mime,
        digest_child,
        header_cut: cut.is_some(),
        body: Body::Leaf,
    };
    if cut.is_some() {
        return (part, cut);
    }
    let ct = content_type(raw, &part);
    let multipart = ct.kind.eq_ignore_ascii_case("multipart");
    let boundary = ct
        .params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))
        .map(|(_, v)| v.clone());
    if depth < MAX_DEPTH && multipart && boundary.is_some() {
        let digest = ct.sub.eq_ignore_ascii_case("digest");
        stack.push(boundary.unwrap_or_default());
        let own = stack.len() - 1;
        let mut children = Vec::new();
        let mut hit = find_boundary(raw, body_start, stack);
        // Children follow each of our own non-final boundaries.
        while let Some(h) = hit {
            if h.level != own || h.last {
                break;
            }
            let (child, next) = parse_entity(raw, h.after, stack, depth + 1, true, digest);
            children.push(child);
            hit = next;
        }
        stack.pop();
        // After our final boundary comes the epilogue, up to a parent boundary.
        let outer = match hit {
            Some(h) if h.level == own => find_boundary(raw, h.after, stack),
            other => other,
        };
        part.body_end = outer.map_or(raw.len(), |h| h.content_end);
        part.body = Body::Multipart(children);
        return (part, outer);
    }
    if depth < MAX_DEPTH && is_message_rfc822(&ct) {
        let (inner, hit) = parse_entity(raw, body_start, stack, depth + 1, false, false);
        // When a boundary cuts the inner header short, Dovecot leaves the line break before
        // the boundary out of that header but inside the message/rfc822 part.
        part.body_end = hit.map_or(raw.len(), |h| {
            if inner.header_cut {
                h.line
            } else {
                h.content_end
            }
        });
        part.body = Body::Message(Box::new(inner));
        return (part, hit);
    }
    let hit = find_boundary(raw, body_start, stack);
    part.body_end = hit.map_or(raw.len(), |h| h.content_end);
    (part, hit)
}

fn is_message_rfc822(ct: &ContentType) -> bool {
    ct.kind.eq_ignore_ascii_case("message") && ct.sub.eq_ignore_ascii_case("rfc822")
}

fn name_is(raw: &[u8], f: &Field, name: &str) -> bool {
    raw[f.name.0..f.name.1].eq_ignore_ascii_case(name.as_bytes())
}

/// The first field of that name that counts (Content-* only when the part is MIME).
fn field<'a>(raw: &'a [u8], part: &Part, name: &str) -> Option<&'a [u8]> {
    if name.len() > 8 && name[..8].eq_ignore_ascii_case("content-") && !part.is_mime {
        return None;
    }
    part.headers
        .iter()
        .find(|f| name_is(raw, f, name))
        .map(|f| &raw[f.value.0..f.value.1])
}

fn find<'a>(msg: &'a Part, path: &[u32]) -> Option<&'a Part> {
    // A part that is not multipart is its own part 1 (a single-part message's `1` is its
    // body), but Dovecot allows that step only once in a path: `1.1` of a single-part message
    // and `2.1.1` of a leaf `2` find nothing.
    let mut part = msg;
    let mut leaf_one = false;
    for &n in path {
        if let Body::Message(inner) = &part.body {
            part = inner;
        }
        match &part.body {
            Body::Multipart(children) => {
                part = children.get((n as usize).checked_sub(1)?)?;
            }
            _ if n == 1 && !leaf_one => leaf_one = true,
            _ => return None,
        }
    }
    Some(part)
}

fn message_section(raw: &[u8], msg: &Part, text: &SectionText) -> Vec<u8> {
    match text {
        SectionText::Full | SectionText::Mime => crlf(&raw[msg.header_start..msg.body_end]),
        SectionText::Header => crlf(&raw[msg.header_start..msg.body_start]),
        SectionText::Text => crlf(&raw[msg.body_start..msg.body_end]),
        SectionText::HeaderFields(names) | SectionText::HeaderFieldsNot(names) => {
            // HEADER.FIELDS ends every field and the block with CRLF; HEADER.FIELDS.NOT copies
            // the raw fields and the header's own end (nothing when it had no blank line).
            let want = matches!(text, SectionText::HeaderFields(_));
            let mut out = Vec::new();
            for f in &msg.headers {
                let listed = names.iter().any(|n| name_is(raw, f, n));
                if listed == want {
                    out.extend_from_slice(&crlf(&raw[f.start..f.end]));
                    if want && !out.ends_with(b"\n") {
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
            if want {
                out.extend_from_slice(b"\r\n");
            } else {
                let end = msg.headers.last().map_or(msg.header_start, |f| f.end);
                out.extend_from_slice(&crlf(&raw[end.min(msg.body_start)..msg.body_start]));
            }
            out
        }
    }
}

/// Bare LF becomes CRLF, as Dovecot sends message text.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Size with every bare LF counted as CRLF, and the number of lines (LFs).
fn virtual_size(data: &[u8]) -> (usize, usize) {
    let mut size = data.len();
    let mut lines = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines += 1;
            if i == 0 || data[i - 1] != b'\r' {
                size += 1;
            }
        }
    }
    (size, lines)
}

// ---------------------------------------------------------------------------------------------
// RFC 822 / 2045 tokens

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// The text of the last comment skipped, for an address whose name is a comment.
    last_comment: Option<Vec<u8>>,
}

const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            i: 0,
            last_comment: None,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    /// Skips blanks, line breaks and (nested) comments; returns the text of the last comment.
    fn skip_cfws(&mut self) -> Option<Vec<u8>> {
        let mut comment = None;
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'(' => {
                    let mut depth = 0usize;
                    let mut text = Vec::new();
                    while let Some(c) = self.peek() {
                        self.i += 1;
                        match c {
                            b'(' => {
                                if depth > 0 {
                                    text.push(c);
                                }
                                depth += 1;
                            }
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                                text.push(c);
                            }
                            b'\\' => {
                                if let Some(n) = self.peek() {
                                    self.i += 1;
                                    text.push(n);
                                }
                            }
                            b'\r' | b'\n' => {}
                            _ => text.push(c),
                        }
                    }
                    self.last_comment = Some(text.clone());
                    comment = Some(text);
                }
                _ => break,
            }
        }
        comment
    }
    /// A MIME token (RFC 2045): no blanks, controls or tspecials.
    fn token(&mut self) -> Option<Vec<u8>> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c <= b' ' || c == 0x7f || TSPECIALS.contains(&c) {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| self.s[start..self.i].to_vec())
    }
    /// A quoted string at `"`; None when it is not terminated.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        debug_assert_eq!(self.peek(), Some(b'"'));
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Some(out),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        self.i += 1;
                        out.push(n);
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(c),
            }
        }
        None
    }
    /// An RFC 822 atom: anything but specials, blanks and controls.
    fn atom(&mut self) -> Option<Vec<u8>> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c <= b' ' || c == 0x7f || b"()<>@,;:\\\".[]".contains(&c) {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| self.s[start..self.i].to_vec())
    }
}

struct ContentType {
    kind: String,
    sub: String,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

fn content_type(raw: &[u8], part: &Part) -> ContentType {
    let Some(value) = field(raw, part, "content-type") else {
        let (kind, sub) = if part.digest_child {
            ("message", "rfc822")
        } else {
            ("text", "plain")
        };
        return ContentType {
            kind: kind.into(),
            sub: sub.into(),
            params: Vec::new(),
        };
    };
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let kind = lx.token().unwrap_or_default();
    lx.skip_cfws();
    let mut sub = Vec::new();
    let mut ok = !kind.is_empty();
    if lx.peek() == Some(b'/') {
        lx.i += 1;
        lx.skip_cfws();
        match lx.token() {
            Some(t) => sub = t,
            None => ok = false,
        }
    } else {
        ok = false;
    }
    let params = if ok { parameters(&mut lx) } else { Vec::new() };
    ContentType {
        kind: bytes_to_string(kind),
        sub: bytes_to_string(sub),
        params,
    }
}

/// One `; name=value` parameter (Dovecot's rfc822_parse_content_param): Ok(None) at the end,
/// Err(()) for a malformed one.
#[allow(clippy::type_complexity)]
fn parameter(lx: &mut Lexer<'_>) -> Result<Option<(Vec<u8>, Vec<u8>)>, ()> {
    if lx.peek().is_none() {
        return Ok(None);
    }
    if lx.peek() != Some(b';') {
        return Err(());
    }
    lx.i += 1;
    lx.skip_cfws();
    let name = lx.token().ok_or(())?;
    lx.skip_cfws();
    if lx.peek() != Some(b'=') {
        return Err(());
    }
    lx.i += 1;
    lx.skip_cfws();
    let value = if lx.peek() == Some(b'"') {
        lx.quoted().ok_or(())?
    } else {
        lx.token().ok_or(())?
    };
    lx.skip_cfws();
    Ok(Some((name, value)))
}

/// The parameters after a Content-Type or Content-Disposition value, as Dovecot's rfc2231_parse
/// returns them: a malformed parameter is skipped (from the next `;`), and RFC 2231
/// continuations `name*0`, `name*1*`... are merged into `name` (or `name*` when extended),
/// sorted by name; when an index is missing they stay apart as `name*<idx>[*]`. Dovecot keeps
/// the index of the previous numbered parameter for `name*=` (no number): copied here.
fn parameters(lx: &mut Lexer<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    struct Continued {
        key: Vec<u8>,
        value: Vec<u8>,
        idx: u32,
        extended: bool,
    }
    let mut result = Vec::new();
    let mut continued: Vec<Continued> = Vec::new();
    let mut idx = 0u32;
    lx.skip_cfws();
    loop {
        let (key, value) = match parameter(lx) {
            Ok(None) => break,
            Ok(Some(kv)) => kv,
            Err(()) => {
                if lx.peek().is_none() {
                    break;
                }
                lx.i += 1;
                continue;
            }
        };
        let Some(star) = key.iter().position(|&b| b == b'*') else {
            result.push((key, value));
            continue;
        };
        let mut p = star;
        if p + 1 < key.len() {
            p += 1;
            idx = 0;
            while p < key.len() && key[p].is_ascii_digit() {
                idx = idx.wrapping_mul(10).wrapping_add(u32::from(key[p] - b'0'));
                p += 1;
            }
        }
        let extended = key.get(p) == Some(&b'*');
        if extended {
            p += 1;
        }
        if p < key.len() {
            result.push((key, value));
        } else {
            continued.push(Continued {
                key: key[..star].to_vec(),
                value,
                idx,
                extended,
            });
        }
    }
    continued.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
    let mut i = 0;
    while i < continued.len() {
        let mut j = i;
        let mut ok = true;
        let mut have_extended = false;
        let mut next_idx = 0u32;
        while j < continued.len() && continued[j].key.eq_ignore_ascii_case(&continued[i].key) {
            ok &= continued[j].idx == next_idx;
            have_extended |= continued[j].extended;
            next_idx = next_idx.wrapping_add(1);
            j += 1;
        }
        if !ok {
            for c in &continued[i..j] {
                let star = if c.extended { "*" } else { "" };
                let mut key = c.key.clone();
                key.extend_from_slice(format!("*{}{star}", c.idx).as_bytes());
                result.push((key, c.value.clone()));
            }
        } else {
            let mut value = Vec::new();
            if !continued[i].extended && have_extended {
                value.extend_from_slice(b"''");
            }
            for c in &continued[i..j] {
                if !c.extended && have_extended {
                    for &b in &c.value {
                        if b == b'%' {
                            value.extend_from_slice(b"%25");
                        } else {
                            value.push(b);
                        }
                    }
                } else {
                    value.extend_from_slice(&c.value);
                }
            }
            let mut key = continued[i].key.clone();
            if have_extended {
                key.push(b'*');
            }
            result.push((key, value));
        }
        i = j;
    }
    result
}

// ---------------------------------------------------------------------------------------------
// IMAP strings

fn bytes_to_string(b: Vec<u8>) -> String {
    // Raw 8-bit header bytes that are not UTF-8 cannot travel in a String: replace them.
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Dovecot's imap_append_nstring: quoted unless it has CR, LF, 8-bit bytes or more than four
/// characters to escape, then a literal.
fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    let Some(s) = s else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut escapes = 0;
    for &c in s {
        let lit = match c {
            b'"' | b'\\' => {
                escapes += 1;
                escapes > 4
            }
            b'\r' | b'\n' => true,
            c => c >= 0x80,
        };
        if lit {
            literal(out, s);
            return;
        }
    }
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    nstring(out, Some(s));
}

/// Dovecot's imap_append_nstring_nolf: line breaks dropped (a space added where the next line
/// does not start with a blank), then as [`nstring`].
fn nstring_nolf(out: &mut Vec<u8>, s: Option<&[u8]>) {
    let Some(s) = s else {
        return nstring(out, None);
    };
    let mut v = Vec::with_capacity(s.len());
    for (i, &c) in s.iter().enumerate() {
        if c != b'\r' && c != b'\n' {
            v.push(c);
        } else if !matches!(s.get(i + 1), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
            v.push(b' ');
        }
    }
    nstring(out, Some(&v));
}

/// Dovecot's imap_append_string_for_humans: blanks and line breaks collapsed into single
/// spaces and trimmed, NUL shown as 0x80; quoted when nothing had to change, else a literal.
fn string_for_humans(out: &mut Vec<u8>, s: &[u8]) {
    let plain = !s.is_empty()
        && s[0] != b' '
        && s[s.len() - 1] != b' '
        && !s.windows(2).any(|w| w == b"  ")
        && !s
            .iter()
            .any(|&c| matches!(c, 0 | b'\r' | b'\n' | b'\t' | b'"' | b'\\') || c >= 0x80);
    if plain || s.is_empty() {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let mut v = Vec::with_capacity(s.len());
    let mut last_lwsp = true;
    for &c in s {
        match c {
            0 => {
                v.push(0x80);
                last_lwsp = false;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if !last_lwsp {
                    v.push(b' ');
                }
                last_lwsp = true;
            }
            c => {
                v.push(c);
                last_lwsp = false;
            }
        }
    }
    if last_lwsp && v.last() == Some(&b' ') {
        v.pop();
    }
    if v.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else {
        literal(out, &v);
    }
}

// ---------------------------------------------------------------------------------------------
// ENVELOPE

fn header_value<'a>(raw: &'a [u8], headers: &[Field], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|f| name_is(raw, f, name))
        .map(|f| &raw[f.value.0..f.value.1])
}

fn write_envelope(raw: &[u8], headers: &[Field], out: &mut Vec<u8>) {
    let h = |name| header_value(raw, headers, name);
    out.push(b'(');
    nstring_nolf(out, h("date"));
    out.push(b' ');
    match h("subject") {
        Some(s) => string_for_humans(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
    let from = h("from");
    for (name, fallback) in [
        ("from", None),
        ("sender", from),
        ("reply-to", from),
        ("to", None),
        ("cc", None),
        ("bcc", None),
    ] {
        out.push(b' ');
        write_addresses(out, h(name).or(fallback));
    }
    out.push(b' ');
    nstring_nolf(out, h("in-reply-to"));
    out.push(b' ');
    nstring_nolf(out, h("message-id"));
    out.push(b')');
}

#[derive(Debug, Default)]
struct Address {
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    domain: Option<Vec<u8>>,
}

fn write_addresses(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let addrs = value.map(parse_addresses).unwrap_or_default();
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in addrs {
        out.push(b'(');
        match &a.name {
            Some(n) => string_for_humans(out, n),
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        nstring(out, a.route.as_deref());
        out.push(b' ');
        nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        nstring(out, a.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// A phrase: words (atoms, dots and quoted strings) joined by single spaces.
fn phrase(lx: &mut Lexer<'_>) -> (Vec<u8>, Option<Vec<u8>>, usize) {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut comment = None;
    loop {
        if let Some(c) = lx.skip_cfws() {
            comment = Some(c);
        }
        match lx.peek() {
            Some(b'"') => match lx.quoted() {
                Some(q) => words.push(q),
                None => break,
            },
            Some(b'.') => {
                lx.i += 1;
                match words.last_mut() {
                    Some(w) => w.push(b'.'),
                    None => words.push(b".".to_vec()),
                }
            }
            _ => match lx.atom() {
                Some(a) => words.push(a),
                None => break,
            },
        }
    }
    let n = words.len();
    (words.join(&b' '), comment, n)
}

fn addr_spec(lx: &mut Lexer<'_>, a: &mut Address) {
    // local-part
    let mut local = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            Some(b'"') => match lx.quoted() {
                Some(q) => local.extend_from_slice(&q),
                None => break,
            },
            Some(b'.') => {
                lx.i += 1;
                local.push(b'.');
            }
            _ => match lx.atom() {
                Some(t) => local.extend_from_slice(&t),
                None => break,
            },
        }
    }
    lx.skip_cfws();
    if !local.is_empty() {
        a.mailbox = Some(local);
    }
    if lx.peek() == Some(b'@') {
        lx.i += 1;
        a.domain = domain(lx);
    }
}

fn domain(lx: &mut Lexer<'_>) -> Option<Vec<u8>> {
    let mut d = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            Some(b'[') => {
                let start = lx.i;
                while let Some(c) = lx.peek() {
                    lx.i += 1;
                    if c == b']' {
                        break;
                    }
                }
                d.extend_from_slice(&lx.s[start..lx.i]);
            }
            Some(b'.') => {
                lx.i += 1;
                d.push(b'.');
            }
            _ => match lx.atom() {
                Some(t) => d.extend_from_slice(&t),
                None => break,
            },
        }
    }
    (!d.is_empty()).then_some(d)
}

fn fill_missing(a: &mut Address) {
    if a.mailbox.is_none() {
        a.mailbox = Some(b"MISSING_MAILBOX".to_vec());
    }
    if a.domain.is_none() {
        a.domain = Some(b"MISSING_DOMAIN".to_vec());
    }
}

/// One mailbox at the lexer; None when nothing could be read (the lexer is then moved on).
fn mailbox(lx: &mut Lexer<'_>) -> Option<Address> {
    let start = lx.i;
    let (words, _, count) = phrase(lx);
    lx.skip_cfws();
    let mut a = Address::default();
    match lx.peek() {
        Some(b'<') => {
            lx.i += 1;
            lx.skip_cfws();
            if lx.peek() == Some(b'@') {
                // obs-route: @a,@b:
                let rs = lx.i;
                while let Some(c) = lx.peek() {
                    if c == b':' || c == b'>' {
                        break;
                    }
                    lx.i += 1;
                }
                a.route = Some(lx.s[rs..lx.i].to_vec());
                if lx.peek() == Some(b':') {
                    lx.i += 1;
                }
            }
            addr_spec(lx, &mut a);
            lx.skip_cfws();
            if lx.peek() == Some(b'>') {
                lx.i += 1;
            }
            if !words.is_empty() {
                a.name = Some(words);
            }
        }
        _ => {
            lx.i = start;
            lx.last_comment = None;
            addr_spec(lx, &mut a);
            lx.skip_cfws();
            if a.domain.is_none() && (count > 1 || a.mailbox.is_none()) {
                // Not an address at all: Dovecot keeps the text as the name.
                lx.i = start;
                let (words, _, _) = phrase(lx);
                a.mailbox = None;
                a.name = (!words.is_empty()).then_some(words);
            } else if let Some(c) = lx.last_comment.take() {
                // `user@host (Name)`: the comment is the name.
                a.name = Some(c);
            }
        }
    }
    if lx.i == start {
        return None;
    }
    fill_missing(&mut a);
    Some(a)
}

fn parse_addresses(value: &[u8]) -> Vec<Address> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    loop {
        lx.skip_cfws();
        match lx.peek() {
            None => break,
            Some(b',') => {
                // An empty element between two commas (not a trailing comma).
                lx.i += 1;
                let mut a = Address::default();
                fill_missing(&mut a);
                out.push(a);
                continue;
            }
            _ => {}
        }
        // A group is a phrase followed by a colon.
        let start = lx.i;
        let (name, _, _) = phrase(&mut lx);
        lx.skip_cfws();
        if lx.peek() == Some(b':') {
            lx.i += 1;
            out.push(Address {
                mailbox: Some(name),
                ..Address::default()
            });
            loop {
                lx.skip_cfws();
                match lx.peek() {
                    None => break,
                    Some(b';') => {
                        lx.i += 1;
                        break;
                    }
                    Some(b',') => lx.i += 1,
                    _ => match mailbox(&mut lx) {
                        Some(a) => out.push(a),
                        None => lx.i += 1,
                    },
                }
            }
            out.push(Address::default());
        } else {
            lx.i = start;
            match mailbox(&mut lx) {
                Some(a) => out.push(a),
                None => lx.i += 1,
            }
        }
        lx.skip_cfws();
        if lx.peek() == Some(b',') {
            lx.i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// BODYSTRUCTURE

fn write_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)], default_charset: bool) {
    if params.is_empty() && !default_charset {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen = false;
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        seen |= k.eq_ignore_ascii_case(b"charset");
        string(out, k);
        out.push(b' ');
        string(out, v);
    }
    if default_charset && !seen {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

fn write_extension(raw: &[u8], part: &Part, out: &mut Vec<u8>) {
    out.push(b' ');
    match field(raw, part, "content-disposition") {
        Some(v) => {
            let mut lx = Lexer::new(v);
            lx.skip_cfws();
            match lx.token() {
                Some(t) => {
                    let params = parameters(&mut lx);
                    out.push(b'(');
                    string(out, &t);
                    out.push(b' ');
                    write_params(out, &params, false);
                    out.push(b')');
                }
                None => out.extend_from_slice(b"NIL"),
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    let mut langs = Vec::new();
    if let Some(v) = field(raw, part, "content-language") {
        let mut lx = Lexer::new(v);
        lx.skip_cfws();
        while let Some(a) = lx.atom() {
            langs.push(a);
            lx.skip_cfws();
            if lx.peek() != Some(b',') {
                break;
            }
            lx.i += 1;
            lx.skip_cfws();
        }
    }
    if langs.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, l) in langs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            string(out, l);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring_nolf(out, field(raw, part, "content-location"));
}

fn cte(raw: &[u8], part: &Part) -> Option<Vec<u8>> {
    let v = field(raw, part, "content-transfer-encoding")?;
    let mut lx = Lexer::new(v);
    lx.skip_cfws();
    let t = lx.token()?;
    lx.skip_cfws();
    (lx.peek().is_none()).then_some(t)
}

fn write_part(raw: &[u8], part: &Part, ext: bool, out: &mut Vec<u8>) {
    let ct = content_type(raw, part);
    if let Body::Multipart(children) = &part.body {
        out.push(b'(');
        if children.is_empty() {
            // Dovecot shows an empty multipart as an empty text/plain part.
            out.extend_from_slice(
                b"\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0",
            );
            if ext {
                out.extend_from_slice(b" NIL NIL NIL NIL");
            }
            out.push(b')');
        }
        for c in children {
            write_part(raw, c, ext, out);
        }
        out.push(b' ');
        string(out, ct.sub.as_bytes());
        if ext {
            out.push(b' ');
            write_params(out, &ct.params, false);
            write_extension(raw, part, out);
        }
        out.push(b')');
        return;
    }
    let text = ct.kind.eq_ignore_ascii_case("text");
    out.push(b'(');
    string(out, ct.kind.as_bytes());
    out.push(b' ');
    string(out, ct.sub.as_bytes());
    out.push(b' ');
    write_params(out, &ct.params, text);
    out.push(b' ');
    nstring_nolf(out, field(raw, part, "content-id"));
    out.push(b' ');
    nstring_nolf(out, field(raw, part, "content-description"));
    out.push(b' ');
    match cte(raw, part) {
        Some(c) => string(out, &c),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    let (size, lines) = virtual_size(&raw[part.body_start..part.body_end]);
    out.extend_from_slice(format!(" {size}").as_bytes());
    if let Body::Message(inner) = &part.body {
        out.push(b' ');
        write_envelope(raw, &inner.headers, out);
        out.push(b' ');
        write_part(raw, inner, ext, out);
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if text {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if ext {
        out.push(b' ');
        nstring_nolf(out, field(raw, part, "content-md5"));
        write_extension(raw, part, out);
    }
    out.push(b')');
}

// ---------------------------------------------------------------------------------------------
// BINARY

enum Cte {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

fn cte_kind(raw: &[u8], part: &Part) -> Cte {
    match cte(raw, part) {
        None => Cte::Identity,
        Some(c) => match c.to_ascii_lowercase().as_slice() {
            b"7bit" | b"8bit" | b"binary" => Cte::Identity,
            b"base64" => Cte::Base64,
            b"quoted-printable" => Cte::QuotedPrintable,
            _ => Cte::Unknown,
        },
    }
}

fn has_unknown_cte(raw: &[u8], part: &Part) -> bool {
    match &part.body {
        Body::Multipart(children) => children.iter().any(|c| has_unknown_cte(raw, c)),
        Body::Message(inner) => has_unknown_cte(raw, inner),
        Body::Leaf => matches!(cte_kind(raw, part), Cte::Unknown),
    }
}

/// True when `BINARY[part]` had to remove a base64 or quoted-printable encoding somewhere in
/// the part: Dovecot then sends the data as a `literal8` (`~{n}`, RFC 3516), otherwise as a
/// plain literal.
pub fn binary_is_decoded(raw: &[u8], part: &[u32]) -> bool {
    let msg = parse(raw);
    if part.is_empty() {
        return decodes(raw, &msg);
    }
    find(&msg, part).is_some_and(|p| decodes(raw, p))
}

fn decodes(raw: &[u8], part: &Part) -> bool {
    match &part.body {
        Body::Multipart(children) => children.iter().any(|c| decodes(raw, c)),
        Body::Message(inner) => decodes(raw, inner),
        Body::Leaf => matches!(cte_kind(raw, part), Cte::Base64 | Cte::QuotedPrintable),
    }
}

/// The header of a part inside converted content: a decoded part says it is now binary.
fn converted_header(raw: &[u8], part: &Part, out: &mut Vec<u8>) {
    let decoded = matches!(part.body, Body::Leaf)
        && matches!(cte_kind(raw, part), Cte::Base64 | Cte::QuotedPrintable);
    if !decoded {
        out.extend_from_slice(&crlf(&raw[part.header_start..part.body_start]));
        return;
    }
    let mut end = part.header_start;
    for f in &part.headers {
        if !(part.is_mime && name_is(raw, f, "content-transfer-encoding")) {
            out.extend_from_slice(&crlf(&raw[f.start..f.end]));
        }
        end = f.end;
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: binary\r\n");
    out.extend_from_slice(&crlf(&raw[end.min(part.body_start)..part.body_start]));
}

/// The body of `part` with every base64 or quoted-printable part inside it decoded.
///
/// `for_size`: Dovecot's BINARY.SIZE counts a message/rfc822 part that has a base64 or
/// quoted-printable encoding of its own as empty (while BINARY sends it undecoded).
fn decode_part(raw: &[u8], part: &Part, for_size: bool) -> Result<Vec<u8>, BinaryError> {
    let body = &raw[part.body_start..part.body_end];
    match &part.body {
        Body::Multipart(children) => {
            let mut out = Vec::new();
            let mut cursor = part.body_start;
            for c in children {
                out.extend_from_slice(&crlf(&raw[cursor.min(c.header_start)..c.header_start]));
                converted_header(raw, c, &mut out);
                out.extend_from_slice(&decode_part(raw, c, for_size)?);
                cursor = c.body_end;
            }
            out.extend_from_slice(&crlf(&raw[cursor.min(part.body_end)..part.body_end]));
            return Ok(out);
        }
        Body::Message(inner) => {
            let encoded = matches!(cte_kind(raw, part), Cte::Base64 | Cte::QuotedPrintable);
            if for_size && encoded {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            converted_header(raw, inner, &mut out);
            out.extend_from_slice(&decode_part(raw, inner, for_size)?);
            // The line break that a cut-short inner header leaves to this part.
            out.extend_from_slice(&crlf(
                &raw[inner.body_end.min(part.body_end)..part.body_end],
            ));
            return Ok(out);
        }
        Body::Leaf => {}
    }
    match cte_kind(raw, part) {
        Cte::Identity => Ok(crlf(body)),
        Cte::Base64 => Ok(base64_decode(body)),
        Cte::QuotedPrintable => Ok(qp_decode(&crlf(body))),
        Cte::Unknown => Err(BinaryError::UnknownCte),
    }
}

fn base64_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn qp_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        let (content, brk): (&[u8], &[u8]) = if let Some(l) = line.strip_suffix(b"\r\n") {
            (l, b"\r\n")
        } else if let Some(l) = line.strip_suffix(b"\n") {
            (l, b"\n")
        } else {
            (line, b"")
        };
        // Trailing blanks are not part of the text (RFC 2045 6.7 rule 3).
        let mut end = content.len();
        while end > 0 && matches!(content[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let content = &content[..end];
        let mut i = 0;
        let mut soft = false;
        while i < content.len() {
            let c = content[i];
            if c == b'=' {
                if i + 1 == content.len() {
                    soft = true;
                    break;
                }
                if let (Some(h), Some(l)) = (
                    content.get(i + 1).copied().and_then(hex),
                    content.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(c);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(brk);
        }
    }
    out
}
