//! rspamd's HTTP check API: `POST /checkv2` on the normal worker (port 11333) with the SMTP
//! envelope as request headers (`From`, `Rcpt`, `IP`, `Helo`, `Hostname`, `Queue-Id`, `User`)
//! and the message as the body. rspamd needs the length up front, so the message is buffered up
//! to a size limit and a longer one is not checked (as rspamd's own milter proxy does with its
//! `max_size`). The JSON reply carries `action`, `score`, `required_score`, `symbols` and the
//! header changes under `milter.add_headers` / `milter.remove_headers`.

use super::{HeaderEdit, ScanContext, ScanError, ScannerClient, SpamScore, Verdict};

/// Longest HTTP reply accepted.
const MAX_REPLY: usize = 2 * 1024 * 1024;

/// Deepest JSON nesting accepted.
const MAX_DEPTH: usize = 32;

/// The rspamd client for one message.
#[derive(Debug)]
pub struct RspamdClient {
    max_size: usize,
    host: String,
    envelope: String,
    message: Vec<u8>,
    too_big: bool,
    out: Vec<u8>,
    reply: Vec<u8>,
    sent: bool,
    verdict: Option<Verdict>,
}

impl RspamdClient {
    /// A client that checks messages of at most `max_size` octets; `host` is sent as the HTTP
    /// `Host` header (the scanner's address as configured).
    pub fn new(max_size: usize, host: &str) -> Self {
        RspamdClient {
            max_size,
            host: clean(host),
            envelope: String::new(),
            message: Vec::new(),
            too_big: false,
            out: Vec::new(),
            reply: Vec::new(),
            sent: false,
            verdict: None,
        }
    }

    /// Parses the reply; `Ok(false)` while incomplete.
    fn try_parse(&mut self, eof: bool) -> Result<bool, ScanError> {
        let Some(head_end) = find(&self.reply, b"\r\n\r\n").map(|i| i + 4) else {
            if eof {
                return Err(ScanError("rspamd closed the connection mid-reply".into()));
            }
            return Ok(false);
        };
        let head = String::from_utf8_lossy(&self.reply[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let mut parts = status.split_whitespace();
        let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !proto.starts_with("HTTP/1.") {
            return Err(ScanError(format!("rspamd: unexpected reply {status:?}")));
        }
        if code != "200" {
            return Err(ScanError(format!("rspamd: {status}")));
        }
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("Content-Length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("Transfer-Encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let raw = &self.reply[head_end..];
        let body: Vec<u8> = if chunked {
            match dechunk(raw)? {
                Some(body) => body,
                None if eof => {
                    return Err(ScanError("rspamd closed the connection mid-reply".into()));
                }
                None => return Ok(false),
            }
        } else {
            match length {
                Some(n) if raw.len() >= n => raw[..n].to_vec(),
                Some(_) if eof => {
                    return Err(ScanError("rspamd closed the connection mid-reply".into()));
                }
                Some(_) => return Ok(false),
                None if eof => raw.to_vec(),
                None => return Ok(false),
            }
        };
        let text = std::str::from_utf8(&body)
            .map_err(|_| ScanError("rspamd: reply is not UTF-8".into()))?;
        let json = Json::parse(text).map_err(|e| ScanError(format!("rspamd: bad JSON: {e}")))?;
        self.verdict = Some(self.judge(&json)?);
        Ok(true)
    }

    fn judge(&self, json: &Json) -> Result<Verdict, ScanError> {
        // `is_skipped` with an action is a pre-result (GTUBE, settings): the action stands.
        if json.get("is_skipped").and_then(Json::as_bool) == Some(true)
            && json.get("action").is_none()
        {
            return Ok(Verdict::Accept {
                edits: Vec::new(),
                spam: None,
                quarantine: None,
            });
        }
        if let Some(error) = json.get("error").and_then(Json::as_str) {
            return Err(ScanError(format!("rspamd: {error}")));
        }
        let action = json
            .get("action")
            .and_then(Json::as_str)
            .ok_or_else(|| ScanError("rspamd: reply without an action".into()))?;
        let score = json
            .get("score")
            .and_then(Json::as_f64)
            .ok_or_else(|| ScanError("rspamd: reply without a score".into()))?;
        let threshold = json
            .get("required_score")
            .and_then(Json::as_f64)
            .unwrap_or(f64::INFINITY);
        let is_spam = match action {
            "no action" | "greylist" => false,
            "add header" | "rewrite subject" | "reject" => true,
            "soft reject" => {
                return Ok(Verdict::TempFail {
                    code: 451,
                    status: "4.7.1".into(),
                    text: "Try again later".into(),
                });
            }
            "discard" => return Ok(Verdict::Discard),
            other => return Err(ScanError(format!("rspamd: unknown action {other:?}"))),
        };
        let mut edits = Vec::new();
        let milter = json.get("milter");
        if let Some(Json::Obj(remove)) = milter.and_then(|m| m.get("remove_headers")) {
            for (name, which) in remove {
                let name = clean(name);
                let have = count_fields(&self.message, &name);
                let which = which.as_f64().unwrap_or(0.0) as i64;
                let indexes: Vec<u32> = if which == 0 {
                    // Every occurrence: deleting the first one `have` times.
                    vec![1; have as usize]
                } else if which > 0 {
                    vec![u32::try_from(which).unwrap_or(u32::MAX)]
                } else {
                    let i = i64::from(have) + 1 + which;
                    if i >= 1 { vec![i as u32] } else { Vec::new() }
                };
                for index in indexes {
                    edits.push(HeaderEdit::Change {
                        name: name.clone(),
                        index,
                        value: String::new(),
                    });
                }
            }
        }
        if action == "rewrite subject"
            && let Some(subject) = json.get("subject").and_then(Json::as_str)
        {
            edits.push(HeaderEdit::Change {
                name: "Subject".into(),
                index: 1,
                value: clean_value(subject),
            });
        }
        let mut spam_header = false;
        if let Some(Json::Obj(add)) = milter.and_then(|m| m.get("add_headers")) {
            for (name, value) in add {
                let name = clean(name);
                let values: Vec<&Json> = match value {
                    Json::Arr(items) => items.iter().collect(),
                    other => vec![other],
                };
                for v in values {
                    let text = match v {
                        Json::Str(s) => Some(s.as_str()),
                        Json::Obj(_) => v.get("value").and_then(Json::as_str),
                        _ => None,
                    };
                    if let Some(text) = text {
                        spam_header |= name.to_ascii_lowercase().starts_with("x-spam");
                        edits.push(HeaderEdit::Add {
                            name: name.clone(),
                            value: clean_value(text),
                        });
                    }
                }
            }
        }
        if !spam_header {
            // rspamd adds no X-Spam fields unless its milter_headers module is set up; the
            // mailbox owner still gets the judgement, as SpamAssassin words it, and the
            // message's own (possibly forged) X-Spam-Flag/X-Spam-Status go.
            for name in ["X-Spam-Flag", "X-Spam-Status"] {
                for _ in 0..count_fields(&self.message, name) {
                    edits.push(HeaderEdit::Change {
                        name: name.into(),
                        index: 1,
                        value: String::new(),
                    });
                }
            }
            let symbols = json
                .get("symbols")
                .map(|s| match s {
                    Json::Obj(items) => items
                        .iter()
                        .map(|(k, _)| clean(k))
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => String::new(),
                })
                .unwrap_or_default();
            edits.push(HeaderEdit::Add {
                name: "X-Spam-Flag".into(),
                value: if is_spam { "YES" } else { "NO" }.into(),
            });
            edits.push(HeaderEdit::Add {
                name: "X-Spam-Status".into(),
                value: format!(
                    "{}, score={score:.1} required={threshold:.1} tests={symbols}",
                    if is_spam { "Yes" } else { "No" }
                ),
            });
        }
        Ok(Verdict::Accept {
            edits,
            spam: Some(SpamScore {
                score,
                threshold,
                is_spam,
            }),
            quarantine: None,
        })
    }
}

/// A header name or value made safe for one HTTP header line: no control characters.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A header value from rspamd: folding kept (CRLF + whitespace), other control characters out.
fn clean_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\n' => {
                if chars.peek().is_some_and(|n| *n == ' ' || *n == '\t') {
                    out.push_str("\r\n");
                } else {
                    out.push(' ');
                }
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// How many fields named `name` the header of `message` has.
fn count_fields(message: &[u8], name: &str) -> u32 {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            count += 1;
        }
    }
    count
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, ScanError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(raw, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ScanError("rspamd: bad chunked encoding".into()))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if raw.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

impl ScannerClient for RspamdClient {
    fn begin(&mut self, ctx: &ScanContext) {
        let mut h = String::new();
        h.push_str(&format!("From: {}\r\n", clean(&ctx.sender)));
        for r in &ctx.recipients {
            h.push_str(&format!("Rcpt: {}\r\n", clean(r)));
        }
        if !ctx.client_ip.is_empty() {
            h.push_str(&format!("IP: {}\r\n", clean(&ctx.client_ip)));
        }
        if !ctx.helo.is_empty() {
            h.push_str(&format!("Helo: {}\r\n", clean(&ctx.helo)));
        }
        if let Some(name) = &ctx.client_name {
            h.push_str(&format!("Hostname: {}\r\n", clean(name)));
        }
        if !ctx.queue_id.is_empty() {
            h.push_str(&format!("Queue-Id: {}\r\n", clean(&ctx.queue_id)));
        }
        if let Some(user) = &ctx.authenticated {
            h.push_str(&format!("User: {}\r\n", clean(user)));
        }
        if !ctx.hostname.is_empty() {
            h.push_str(&format!("MTA-Name: {}\r\n", clean(&ctx.hostname)));
        }
        self.envelope = h;
    }

    fn body(&mut self, chunk: &[u8]) {
        if self.too_big || self.sent {
            return;
        }
        if self.message.len() + chunk.len() > self.max_size {
            self.too_big = true;
            self.message = Vec::new();
            return;
        }
        self.message.extend_from_slice(chunk);
    }

    fn end(&mut self) {
        if self.sent || self.verdict.is_some() {
            return;
        }
        if self.too_big {
            self.verdict = Some(Verdict::Accept {
                edits: Vec::new(),
                spam: None,
                quarantine: None,
            });
            return;
        }
        self.sent = true;
        let head = format!(
            "POST /checkv2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{}\r\n",
            self.host,
            self.message.len(),
            self.envelope
        );
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(&self.message);
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        out.append(&mut self.out);
        true
    }

    fn ready_for_body(&self) -> bool {
        true
    }

    fn wants_input(&self) -> bool {
        self.sent && self.verdict.is_none()
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        super::reply::take("rspamd", self.sent, &mut self.reply, bytes, MAX_REPLY)?;
        self.try_parse(false).map(|_| ())
    }

    fn handle_eof(&mut self) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        let empty = self.reply.is_empty();
        super::reply::at_eof("rspamd", empty, || self.try_parse(true))
    }

    fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }
}

/// A JSON value, as much of JSON as rspamd's replies need (all of it, without precision
/// guarantees for huge numbers).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, members in document order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    let v = self.value(depth + 1)?;
                    members.push((key, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(members));
                        }
                        _ => return Err(format!("expected ',' or '}}' at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                text.parse::<f64>()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number at {start}"))
            }
            _ => Err(format!("unexpected input at {}", self.i)),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(format!("unexpected input at {}", self.i))
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at {}", self.i));
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated string".into());
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.s.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                self.i += 2;
                                let low = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low.wrapping_sub(0xDC00));
                            }
                            char::from_u32(cp).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(format!("bad escape at {}", self.i)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "string is not UTF-8".into())
    }
}
