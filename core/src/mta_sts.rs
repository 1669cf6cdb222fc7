//! MTA-STS (RFC 8461): the decisions, without the IO.
//!
//! A domain that publishes a `_mta-sts.DOMAIN` TXT record (`v=STSv1; id=...`) and a policy file
//! at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` tells senders which MX hosts are its own
//! and whether they must be reached over verified TLS. This module holds every decision a sender
//! makes about that: which TXT record counts ([`discover`]), what a policy says
//! ([`parse_policy`]), which MX host a policy allows ([`mx_matches`]), the HTTP request to send
//! and how to read the answer ([`http_request`], [`parse_http_response`]), and when a cached
//! policy is used or fetched again ([`plan`], [`after_fetch`]). The runtime does the lookups,
//! the HTTPS connection and the disk; the store keeps the cache ([`CachedPolicy::to_bytes`]).
//!
//! What a runner does with the outcome: under an `enforce` policy, only the MX hosts the policy
//! names, only over STARTTLS with a certificate that chains to a trusted root and names the host,
//! and on failure the mail waits (never a plaintext retry); under `testing`, failures are logged
//! and delivery goes on as without a policy; `none`, or no policy, changes nothing.

use crate::dns::{Answer, Record};

/// The largest `max_age` a policy may give, in seconds (one year, RFC 8461 3.2); larger values
/// are cut down to it.
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// The largest policy body accepted (RFC 8461 3.3: senders may limit it; 64 KiB is its figure).
pub const MAX_POLICY_BODY: usize = 64 * 1024;
/// The largest HTTP status line and header block accepted.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// The most bytes of a response a runtime needs to read: head, body and chunked-encoding
/// overhead. [`parse_http_response`] gives up on a longer response.
pub const MAX_RESPONSE: usize = MAX_RESPONSE_HEAD + 2 * MAX_POLICY_BODY;
/// Where the policy is (RFC 8461 3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// The longest policy id (RFC 8461 3.1: `1*32(ALPHA / DIGIT)`).
const MAX_ID: usize = 32;

/// True when `domain` is a name MTA-STS can apply to and a file can be named after: lowercase
/// ASCII labels of letters, digits and hyphens (1 to 63 each, no hyphen at either end), at least
/// two labels, at most 253 characters. Address literals and anything else are refused.
pub fn is_policy_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 253 {
        return false;
    }
    let mut labels = 0;
    for label in domain.split('.') {
        labels += 1;
        let b = label.as_bytes();
        if b.is_empty()
            || b.len() > 63
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
            || !b
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        {
            return false;
        }
    }
    labels >= 2 && !domain.bytes().all(|c| c.is_ascii_digit() || c == b'.')
}

/// The name whose TXT record announces a policy: `_mta-sts.DOMAIN`.
pub fn txt_name(domain: &str) -> String {
    format!("_mta-sts.{domain}")
}

/// The host serving the policy: `mta-sts.DOMAIN`. Its certificate must name it.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// A `_mta-sts` TXT record (RFC 8461 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy's id: a new id means a new policy to fetch.
    pub id: String,
}

/// Parses one TXT record: `v=STSv1` first, then `;`-separated `key=value` fields with optional
/// whitespace, one of them `id` (1 to 32 letters and digits). Unknown fields are ignored.
pub fn parse_record(txt: &[u8]) -> Result<StsRecord, String> {
    let text = std::str::from_utf8(txt).map_err(|_| "the record is not ASCII".to_string())?;
    let mut fields: Vec<&str> = text
        .split(';')
        .map(|f| f.trim_matches([' ', '\t']))
        .collect();
    if fields.len() > 1 && fields.last() == Some(&"") {
        // A trailing `;` is allowed (`[sts-field-delim]`).
        fields.pop();
    }
    if fields.first() != Some(&"v=STSv1") {
        return Err("the record does not start with v=STSv1".into());
    }
    let mut id = None;
    for field in &fields[1..] {
        if field.is_empty() {
            return Err("empty field".into());
        }
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("field {field:?} has no '='"))?;
        if key.is_empty()
            || key.len() > 32
            || !key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        {
            return Err(format!("bad field name {key:?}"));
        }
        if key == "id" {
            if id.is_some() {
                return Err("two id fields".into());
            }
            if value.is_empty()
                || value.len() > MAX_ID
                || !value.bytes().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(format!("bad id {value:?}"));
            }
            id = Some(value.to_string());
        } else if !value
            .bytes()
            .all(|c| (0x21..=0x7e).contains(&c) && c != b'=')
        {
            return Err(format!("bad value for {key}"));
        }
    }
    id.map(|id| StsRecord { id })
        .ok_or_else(|| "no id field".into())
}

/// What the `_mta-sts` TXT lookup says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Exactly one valid `v=STSv1` record.
    Record(StsRecord),
    /// No record, several, or an invalid one: the domain announces no policy (RFC 8461 3.1).
    NoRecord,
    /// The lookup failed for now; a cached policy still applies.
    TempFail(String),
}

/// Reads the answer to the `_mta-sts.DOMAIN` TXT lookup: records that do not start with
/// `v=STSv1` are discarded; unless exactly one is left and it is valid, there is no policy.
pub fn discover(answer: &Answer) -> Discovery {
    match answer {
        Answer::Records { records, .. } => {
            let sts: Vec<&[u8]> = records
                .iter()
                .filter_map(|r| match r {
                    Record::Txt(t) => Some(t.as_slice()),
                    _ => None,
                })
                .filter(|t| {
                    t.starts_with(b"v=STSv1")
                        && matches!(t.get(7), None | Some(b';' | b' ' | b'\t'))
                })
                .collect();
            match sts.as_slice() {
                [one] => parse_record(one).map_or(Discovery::NoRecord, Discovery::Record),
                _ => Discovery::NoRecord,
            }
        }
        Answer::TempFail(why) => Discovery::TempFail(why.clone()),
        Answer::NoData | Answer::NxDomain | Answer::PermFail(_) => Discovery::NoRecord,
    }
}

/// A policy's mode (RFC 8461 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS; otherwise defer.
    Enforce,
    /// Report failures, deliver as without a policy.
    Testing,
    /// No policy is in force (how a domain withdraws one).
    None,
}

impl Mode {
    /// The mode's name in a policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file (RFC 8461 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What to do with it.
    pub mode: Mode,
    /// MX patterns, lowercase: a host name, or `*.` and a name (one leftmost label).
    pub mx: Vec<String>,
    /// How long the policy may be cached, in seconds, at most [`MAX_AGE_LIMIT`].
    pub max_age: u64,
}

impl Policy {
    /// The deferral text when this policy, enforced for `domain`, allows none of its MX hosts.
    pub fn mismatch_text(&self, domain: &str) -> String {
        format!(
            "MTA-STS: the enforced policy of {domain} allows none of its MX hosts (mx: {})",
            self.mx.join(", ")
        )
    }

    /// True when one of the policy's `mx` patterns matches `host` (RFC 8461 4.1).
    pub fn allows(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }

    /// The policy as a file: the same text a server may serve, in a fixed order.
    pub fn to_text(&self) -> String {
        let mut out = format!("version: STSv1\nmode: {}\n", self.mode.as_str());
        for mx in &self.mx {
            out.push_str(&format!("mx: {mx}\n"));
        }
        out.push_str(&format!("max_age: {}\n", self.max_age));
        out
    }
}

/// Parses a policy file: `key: value` lines ending in LF or CRLF; `version: STSv1`, `mode` and
/// `max_age` exactly once; `mx` once or more (it may be absent under `mode: none`); unknown keys
/// ignored. Keys and the version and mode values are matched without regard to case.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age) = (false, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_matches([' ', '\t']).is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {line:?} is not key: value"))?;
        let key = key.trim_end_matches([' ', '\t']);
        let value = value.trim_matches([' ', '\t']);
        if key.eq_ignore_ascii_case("version") {
            if version {
                return Err("version given twice".into());
            }
            if !value.eq_ignore_ascii_case("STSv1") {
                return Err(format!("unknown version {value:?}"));
            }
            version = true;
        } else if key.eq_ignore_ascii_case("mode") {
            if mode.is_some() {
                return Err("mode given twice".into());
            }
            mode = Some(match value.to_ascii_lowercase().as_str() {
                "enforce" => Mode::Enforce,
                "testing" => Mode::Testing,
                "none" => Mode::None,
                _ => return Err(format!("unknown mode {value:?}")),
            });
        } else if key.eq_ignore_ascii_case("max_age") {
            if max_age.is_some() {
                return Err("max_age given twice".into());
            }
            if value.is_empty() || value.len() > 10 || !value.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("bad max_age {value:?}"));
            }
            let secs: u64 = value
                .parse()
                .map_err(|_| format!("bad max_age {value:?}"))?;
            max_age = Some(secs.min(MAX_AGE_LIMIT));
        } else if key.eq_ignore_ascii_case("mx") {
            let pattern = value.to_ascii_lowercase();
            let pattern = pattern.strip_suffix('.').unwrap_or(&pattern);
            let name = pattern.strip_prefix("*.").unwrap_or(pattern);
            if !is_policy_domain(name) {
                return Err(format!("bad mx pattern {value:?}"));
            }
            mx.push(pattern.to_string());
        }
        // Other keys are extensions (RFC 8461 3.2: "MUST be ignored").
    }
    if !version {
        return Err("no version: STSv1".into());
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx pattern".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// RFC 8461 4.1: `pattern` matches `host` when they are equal, or when the pattern is `*.` and
/// a name and the host is one label and that name (`*.example.com` matches `mx1.example.com`,
/// not `example.com` nor `a.b.example.com`). Case and a trailing dot do not matter.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let norm = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let (pattern, host) = (norm(pattern), norm(host));
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The HTTP/1.1 request for `domain`'s policy: a GET of [`POLICY_PATH`] on
/// [`policy_host`], asking the server to close the connection after the answer.
pub fn http_request(domain: &str) -> Vec<u8> {
    format!(
        "GET {POLICY_PATH} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Petrel\r\nAccept: text/plain\r\n\
         Connection: close\r\n\r\n",
        policy_host(domain)
    )
    .into_bytes()
}

/// Where reading an HTTP response stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpParse {
    /// More bytes are needed.
    Incomplete,
    /// The response is complete: the policy text, or why it cannot be used.
    Done(Result<String, String>),
}

/// Reads the response to [`http_request`] from `buf`, all the bytes received so far; `eof` once
/// the connection has ended cleanly. Only `200` counts (redirects are not followed, RFC 8461
/// 3.3), with `Content-Type: text/plain`; the body comes by `Content-Length`, chunked
/// transfer-encoding or up to the end of the connection, and is at most [`MAX_POLICY_BODY`]
/// bytes of UTF-8. Never panics, whatever the bytes; past [`MAX_RESPONSE`] bytes it is always
/// `Done`.
pub fn parse_http_response(buf: &[u8], eof: bool) -> HttpParse {
    let result = parse_response(buf, eof);
    match result {
        None if buf.len() >= MAX_RESPONSE => HttpParse::Done(Err("response too long".into())),
        None if eof => HttpParse::Done(Err("the connection ended in the middle".into())),
        None => HttpParse::Incomplete,
        Some(r) => HttpParse::Done(r),
    }
}

/// How the body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// `None` while incomplete.
fn parse_response(buf: &[u8], eof: bool) -> Option<Result<String, String>> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Some(Err("response header too long".into()));
        }
        return None;
    };
    if head_end > MAX_RESPONSE_HEAD {
        return Some(Err("response header too long".into()));
    }
    let head = match std::str::from_utf8(&buf[..head_end]) {
        Ok(h) => h,
        Err(_) => return Some(Err("response header is not text".into())),
    };
    let body = &buf[head_end + 4..];
    Some(read_head(head).and_then(|framing| match framing {
        Framing::Length(n) if body.len() >= n => text(&body[..n]),
        Framing::Length(_) => Err(String::new()),
        Framing::Close if body.len() > MAX_POLICY_BODY => Err("policy over 64 KiB".into()),
        Framing::Close if eof => text(body),
        Framing::Close => Err(String::new()),
        Framing::Chunked => dechunk(body).and_then(|b| text(&b)),
    }))
    // An empty error text means "incomplete so far".
    .and_then(|r| match r {
        Err(e) if e.is_empty() => None,
        r => Some(r),
    })
}

/// The status line and headers: the body's framing, or why the response is refused.
fn read_head(head: &str) -> Result<Framing, String> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(format!("not an HTTP/1 response: {status:?}"));
    }
    match code {
        "200" => {}
        c if c.len() == 3 && c.starts_with('3') => {
            return Err(format!("HTTP status {c} (redirects are not followed)"));
        }
        c => return Err(format!("HTTP status {c:?}")),
    }
    let (mut content_type, mut length, mut chunked) = (None, None, false);
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err("folded header line".into());
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 12 || !value.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("bad Content-Length {value:?}"));
            }
            let n: usize = value.parse().map_err(|_| "bad Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Length headers".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(format!("unsupported Transfer-Encoding {value:?}"));
            }
            chunked = true;
        }
    }
    let media = content_type
        .ok_or("no Content-Type")?
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_matches([' ', '\t']);
    if !media.eq_ignore_ascii_case("text/plain") {
        return Err(format!("Content-Type {media:?} is not text/plain"));
    }
    match (chunked, length) {
        (true, Some(_)) => Err("both Content-Length and chunked".into()),
        (true, None) => Ok(Framing::Chunked),
        (false, Some(n)) if n > MAX_POLICY_BODY => Err("policy over 64 KiB".into()),
        (false, Some(n)) => Ok(Framing::Length(n)),
        (false, None) => Ok(Framing::Close),
    }
}

/// Decodes a chunked body; `Err("")` while incomplete.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return if data.len() > 1024 {
                Err("chunk size line too long".into())
            } else {
                Err(String::new())
            };
        };
        let line = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size line")?;
        let digits = line
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_matches([' ', '\t']);
        if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("bad chunk size {line:?}"));
        }
        let size = usize::from_str_radix(digits, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers, up to an empty line.
            loop {
                let Some(eol) = find(data, b"\r\n") else {
                    return Err(String::new());
                };
                if eol == 0 {
                    return Ok(out);
                }
                data = &data[eol + 2..];
            }
        }
        if out.len() + size > MAX_POLICY_BODY {
            return Err("policy over 64 KiB".into());
        }
        if data.len() < size + 2 {
            return Err(String::new());
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn text(body: &[u8]) -> Result<String, String> {
    if body.len() > MAX_POLICY_BODY {
        return Err("policy over 64 KiB".into());
    }
    String::from_utf8(body.to_vec()).map_err(|_| "policy is not UTF-8".into())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A policy as a sender keeps it: with the TXT id it was fetched under and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The `id` of the TXT record at the time of the fetch.
    pub id: String,
    /// When it was fetched, in Unix seconds.
    pub fetched: i64,
    /// The policy.
    pub policy: Policy,
}

impl CachedPolicy {
    /// True until `max_age` seconds after the fetch (RFC 8461 3.3, 5.1). An entry fetched more
    /// than five minutes in the future (the clock went back) is not trusted.
    pub fn is_fresh(&self, now: i64) -> bool {
        now < self.fetched.saturating_add(self.policy.max_age as i64)
            && now >= self.fetched.saturating_sub(300)
    }

    /// The cache file: `id: ...` and `fetched: ...` lines, an empty line, the policy.
    pub fn to_bytes(&self) -> Vec<u8> {
        format!(
            "id: {}\nfetched: {}\n\n{}",
            self.id,
            self.fetched,
            self.policy.to_text()
        )
        .into_bytes()
    }

    /// Reads what [`CachedPolicy::to_bytes`] wrote; anything else is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<CachedPolicy, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
        let (head, policy) = text.split_once("\n\n").ok_or("no policy")?;
        let mut lines = head.lines();
        let id = lines
            .next()
            .and_then(|l| l.strip_prefix("id: "))
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= MAX_ID
                    && id.bytes().all(|c| c.is_ascii_alphanumeric())
            })
            .ok_or("bad id line")?;
        let fetched = lines
            .next()
            .and_then(|l| l.strip_prefix("fetched: "))
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or("bad fetched line")?;
        Ok(CachedPolicy {
            id: id.to_string(),
            fetched,
            policy: parse_policy(policy)?,
        })
    }
}

/// What to do about a domain's policy, given its cache entry and the TXT lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The cached policy is current: use it.
    UseCached,
    /// Fetch the policy (none cached, the cached one expired, or the TXT id changed), then
    /// call [`after_fetch`].
    Fetch {
        /// The id from the TXT record.
        id: String,
    },
    /// No policy applies: deliver as usual.
    NoPolicy,
}

/// RFC 8461 3.3 and 5.1: a fresh cached policy with the TXT record's id is used as it is; a new
/// id (or no fresh cache) means a fetch; when the TXT record is gone or cannot be looked up, a
/// fresh cached policy still applies and otherwise there is none.
pub fn plan(cached: Option<&CachedPolicy>, discovery: &Discovery, now: i64) -> Plan {
    let fresh = cached.filter(|c| c.is_fresh(now));
    match (discovery, fresh) {
        (Discovery::Record(r), Some(c)) if c.id == r.id => Plan::UseCached,
        (Discovery::Record(r), _) => Plan::Fetch { id: r.id.clone() },
        (_, Some(_)) => Plan::UseCached,
        (_, None) => Plan::NoPolicy,
    }
}

/// What a fetch leaves in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The policy that applies now, if any.
    pub policy: Option<CachedPolicy>,
    /// True when `policy` is new and should be written to the cache.
    pub save: bool,
}

/// After [`Plan::Fetch`]: a policy fetched and parsed replaces the cache; a failed fetch leaves a
/// fresh cached policy in force (RFC 8461 5.1), or none ("as though the domain has not
/// implemented MTA-STS", 3.3).
pub fn after_fetch(
    cached: Option<&CachedPolicy>,
    id: &str,
    fetched: Result<Policy, String>,
    now: i64,
) -> FetchOutcome {
    match fetched {
        Ok(policy) => FetchOutcome {
            policy: Some(CachedPolicy {
                id: id.to_string(),
                fetched: now,
                policy,
            }),
            save: true,
        },
        Err(_) => FetchOutcome {
            policy: cached.filter(|c| c.is_fresh(now)).cloned(),
            save: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8461 3.2's example policy.
    const RFC_POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
                              mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

    fn txt(records: &[&str]) -> Answer {
        Answer::Records {
            records: records
                .iter()
                .map(|r| Record::Txt(r.as_bytes().to_vec()))
                .collect(),
            ttl: 60,
            canonical_name: "_mta-sts.example.com".into(),
        }
    }

    #[test]
    fn txt_records_as_in_the_rfc() {
        let want = |id: &str| Ok(StsRecord { id: id.to_string() });
        // RFC 8461 3.1's example.
        assert_eq!(
            parse_record(b"v=STSv1; id=20160831085700Z;"),
            want("20160831085700Z")
        );
        assert_eq!(parse_record(b"v=STSv1;id=abc"), want("abc"));
        assert_eq!(parse_record(b"v=STSv1 ; id=abc ; ext=1"), want("abc"));
        assert!(parse_record(b"v=STSv1;").is_err());
        assert!(parse_record(b"id=abc; v=STSv1").is_err());
        assert!(parse_record(b"v=STSv1; id=abc; id=def").is_err());
        assert!(parse_record(b"v=STSv1; id=ab-c").is_err());
        assert!(parse_record(b"v=STSv1; id=012345678901234567890123456789012").is_err());
        assert!(parse_record(b"v=STSv1;; id=abc").is_err());
        assert!(parse_record(b"v=STSv2; id=abc").is_err());
    }

    #[test]
    fn discovery_keeps_exactly_one_sts_record() {
        assert_eq!(
            discover(&txt(&["v=spf1 -all", "v=STSv1; id=1"])),
            Discovery::Record(StsRecord { id: "1".into() })
        );
        assert_eq!(
            discover(&txt(&["v=STSv1; id=1", "v=STSv1; id=2"])),
            Discovery::NoRecord
        );
        assert_eq!(discover(&txt(&["v=STSv1; id="])), Discovery::NoRecord);
        assert_eq!(discover(&txt(&["v=STSv10; id=1"])), Discovery::NoRecord);
        assert_eq!(discover(&Answer::NxDomain), Discovery::NoRecord);
        assert_eq!(discover(&Answer::NoData), Discovery::NoRecord);
        assert_eq!(
            discover(&Answer::TempFail("SERVFAIL".into())),
            Discovery::TempFail("SERVFAIL".into())
        );
    }

    #[test]
    fn the_rfc_policy_parses_and_round_trips() {
        let p = parse_policy(RFC_POLICY).unwrap();
        assert_eq!(
            p,
            Policy {
                mode: Mode::Enforce,
                mx: vec![
                    "mail.example.com".into(),
                    "*.example.net".into(),
                    "backupmx.example.com".into()
                ],
                max_age: 604_800,
            }
        );
        assert_eq!(parse_policy(&p.to_text()).unwrap(), p);
        // LF endings, spacing, case, extensions, a trailing-dot pattern, over-long max_age.
        let q = parse_policy(
            "Version:STSv1\nMODE : Testing\nmx:  MX.Example.ORG.  \nfuture_key: x y z\n\
             max_age: 9999999999\n",
        )
        .unwrap();
        assert_eq!(q.mode, Mode::Testing);
        assert_eq!(q.mx, vec!["mx.example.org".to_string()]);
        assert_eq!(q.max_age, MAX_AGE_LIMIT);
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").unwrap();
        assert_eq!(none.mode, Mode::None);
    }

    #[test]
    fn invalid_policies_are_refused() {
        for bad in [
            "",
            "<html>hello</html>",
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n",
        ] {
            assert!(parse_policy(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mx_patterns_as_in_section_4_1() {
        let p = parse_policy(RFC_POLICY).unwrap();
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("mail.example.org"));
        assert!(!p.allows("xmail.example.com"));
        assert!(mx_matches("*.example.com", "mx.example.com"));
        assert!(!mx_matches("*.example.com", ".example.com"));
        assert!(!mx_matches("mx.example.com", ""));
    }

    #[test]
    fn policy_domains() {
        assert!(is_policy_domain("example.com"));
        assert!(is_policy_domain("mx-1.remote.test"));
        for bad in [
            "",
            "localhost",
            "Example.com",
            "-a.example",
            "a-.example",
            "a..example",
            ".example",
            "example.",
            "192.0.2.1",
            "a/b.example",
            "a_b.example",
        ] {
            assert!(!is_policy_domain(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_request() {
        assert_eq!(
            http_request("example.com"),
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n\
              User-Agent: Petrel\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
                .to_vec()
        );
    }

    fn ok(body: &str) -> HttpParse {
        HttpParse::Done(Ok(body.to_string()))
    }

    fn refused(r: HttpParse) -> String {
        match r {
            HttpParse::Done(Err(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn responses_with_a_length() {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{RFC_POLICY}",
            RFC_POLICY.len()
        );
        let bytes = resp.as_bytes();
        assert_eq!(parse_http_response(bytes, false), ok(RFC_POLICY));
        // Every prefix is incomplete (or a refusal at the end of the connection).
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_http_response(&bytes[..cut], false),
                HttpParse::Incomplete
            );
            assert!(matches!(
                parse_http_response(&bytes[..cut], true),
                HttpParse::Done(Err(_))
            ));
        }
    }

    #[test]
    fn chunked_and_close_delimited_responses() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
                       f\r\nversion: STSv1\n\r\n5;ext=1\r\nmode:\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked.as_bytes(), false),
            ok("version: STSv1\nmode:")
        );
        for cut in 0..chunked.len() {
            assert_eq!(
                parse_http_response(&chunked.as_bytes()[..cut], false),
                HttpParse::Incomplete,
                "{cut}"
            );
        }
        let close = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\n";
        assert_eq!(
            parse_http_response(close.as_bytes(), false),
            HttpParse::Incomplete
        );
        assert_eq!(
            parse_http_response(close.as_bytes(), true),
            ok("version: STSv1\n")
        );
    }

    #[test]
    fn refused_responses() {
        let with = |head: &str, body: &str| format!("{head}\r\n\r\n{body}").into_bytes();
        let r = |b: Vec<u8>| refused(parse_http_response(&b, true));
        assert!(
            r(with(
                "HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: text/plain",
                ""
            ))
            .contains("redirects")
        );
        assert!(
            r(with(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain",
                ""
            ))
            .contains("404")
        );
        assert!(
            r(with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0",
                ""
            ))
            .contains("text/plain")
        );
        assert!(r(with("HTTP/1.1 200 OK\r\nContent-Length: 0", "")).contains("Content-Type"));
        assert!(
            r(with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: gzip",
                ""
            ))
            .contains("Transfer-Encoding")
        );
        assert!(
            r(with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 70000",
                ""
            ))
            .contains("64 KiB")
        );
        assert!(
            r(with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked",
                "10001\r\n"
            ))
            .contains("64 KiB")
        );
        let mut latin1 = with(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2",
            "",
        );
        latin1.extend_from_slice(&[0xff, 0xfe]);
        assert!(r(latin1).contains("UTF-8"));
        assert!(r(b"SMTP 220 hello\r\n\r\n".to_vec()).contains("HTTP"));
        let long = vec![b'a'; MAX_RESPONSE_HEAD + 10];
        assert!(refused(parse_http_response(&long, false)).contains("too long"));
        let big_body = with(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain",
            &"x".repeat(MAX_POLICY_BODY + 1),
        );
        assert!(refused(parse_http_response(&big_body, false)).contains("64 KiB"));
    }

    fn cached(id: &str, fetched: i64, max_age: u64) -> CachedPolicy {
        CachedPolicy {
            id: id.into(),
            fetched,
            policy: Policy {
                mode: Mode::Enforce,
                mx: vec!["mx.example.com".into()],
                max_age,
            },
        }
    }

    #[test]
    fn cache_decisions() {
        let rec = |id: &str| Discovery::Record(StsRecord { id: id.into() });
        let c = cached("a", 1000, 100);
        assert_eq!(plan(None, &rec("a"), 1000), Plan::Fetch { id: "a".into() });
        assert_eq!(plan(Some(&c), &rec("a"), 1099), Plan::UseCached);
        // Expired: fetched again even with the same id.
        assert_eq!(
            plan(Some(&c), &rec("a"), 1100),
            Plan::Fetch { id: "a".into() }
        );
        // A new id: a new policy.
        assert_eq!(
            plan(Some(&c), &rec("b"), 1050),
            Plan::Fetch { id: "b".into() }
        );
        // No TXT record, or no answer: a fresh cache still applies.
        assert_eq!(plan(Some(&c), &Discovery::NoRecord, 1050), Plan::UseCached);
        assert_eq!(
            plan(Some(&c), &Discovery::TempFail("x".into()), 1050),
            Plan::UseCached
        );
        assert_eq!(plan(Some(&c), &Discovery::NoRecord, 1100), Plan::NoPolicy);
        assert_eq!(plan(None, &Discovery::NoRecord, 0), Plan::NoPolicy);

        let fetched = after_fetch(Some(&c), "b", Ok(c.policy.clone()), 1050);
        assert_eq!(fetched.policy, Some(cached("b", 1050, 100)));
        assert!(fetched.save);
        let failed = after_fetch(Some(&c), "b", Err("timeout".into()), 1050);
        assert_eq!(failed.policy, Some(c.clone()));
        assert!(!failed.save);
        assert_eq!(
            after_fetch(Some(&c), "b", Err("x".into()), 2000),
            FetchOutcome {
                policy: None,
                save: false
            }
        );
    }

    #[test]
    fn cache_files_round_trip() {
        let c = cached("20160831085700Z", 1_700_000_000, 604_800);
        assert_eq!(CachedPolicy::from_bytes(&c.to_bytes()), Ok(c));
        assert!(CachedPolicy::from_bytes(b"").is_err());
        assert!(CachedPolicy::from_bytes(b"id: a/b\nfetched: 1\n\nversion: STSv1\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_response_bytes_are_safe(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), eof: bool) {
            let _ = parse_http_response(&bytes, eof);
        }

        #[test]
        fn http_shaped_bytes_are_safe(
            head in "HTTP/1\\.[01] [0-9]{3} [ -~]{0,10}\r\n((Content-Type|Content-Length|Transfer-Encoding|X): [ -~]{0,12}\r\n){0,4}\r\n",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            eof: bool,
        ) {
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            let _ = parse_http_response(&bytes, eof);
        }

        #[test]
        fn any_policy_text_and_record_is_safe(text in "[ -~\r\n\t]{0,300}") {
            let _ = parse_policy(&text);
            let _ = parse_record(text.as_bytes());
            let _ = CachedPolicy::from_bytes(text.as_bytes());
        }

        #[test]
        fn chunking_does_not_change_the_body(body in "[a-z:\n ]{0,200}", sizes in proptest::collection::vec(1usize..20, 1..30)) {
            let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let mut rest = body.as_bytes();
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                resp.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                resp.extend_from_slice(&rest[..n]);
                resp.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                i += 1;
            }
            resp.extend_from_slice(b"0\r\n\r\n");
            proptest::prop_assert_eq!(parse_http_response(&resp, false), HttpParse::Done(Ok(body)));
        }
    }
}
