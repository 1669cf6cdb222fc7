//! SpamAssassin's spamd, protocol SPAMC/1.5 with the `HEADERS` command: spamd wants the
//! message length up front, so the message is buffered up to a size limit (like `spamc -s`,
//! 512 KiB by default) and sent whole at the end; a longer message is not checked at all, as
//! spamc does. spamd answers with the score (`Spam: True ; 1000.0 / 5.0`) and the message's
//! rewritten header, whose `X-Spam-*` fields are the ones to add.

use super::{HeaderEdit, ScanContext, ScanError, ScannerClient, SpamScore, Verdict};

/// Largest message checked by default, like spamc's `-s` (whose default is 500 KiB).
pub const DEFAULT_MAX_SIZE: usize = 512 * 1024;

/// Longest reply accepted: the header block of a message plus spamd's own fields.
const MAX_REPLY: usize = 1024 * 1024;

/// The spamd client for one message.
#[derive(Debug)]
pub struct SpamdClient {
    max_size: usize,
    user: Option<String>,
    message: Vec<u8>,
    too_big: bool,
    out: Vec<u8>,
    reply: Vec<u8>,
    sent: bool,
    verdict: Option<Verdict>,
    /// Deletions of the message's own `X-Spam-*` fields, applied before spamd's are added.
    forged: Vec<HeaderEdit>,
}

impl SpamdClient {
    /// A client that checks messages of at most `max_size` octets; `user` is spamd's `User:`
    /// (whose preferences apply), `None` for spamd's default.
    pub fn new(max_size: usize, user: Option<String>) -> Self {
        SpamdClient {
            max_size,
            user,
            message: Vec::new(),
            too_big: false,
            out: Vec::new(),
            reply: Vec::new(),
            sent: false,
            verdict: None,
            forged: Vec::new(),
        }
    }

    fn skipped() -> Verdict {
        Verdict::Accept {
            edits: Vec::new(),
            spam: None,
            quarantine: None,
        }
    }

    /// Parses the reply once it is complete; `Ok(false)` when more is needed.
    fn try_parse(&mut self, eof: bool) -> Result<bool, ScanError> {
        let Some(head_end) = find(&self.reply, b"\r\n\r\n").map(|i| i + 4).or_else(|| {
            // spamd may answer an error with a status line only, then close.
            (eof && !self.reply.is_empty()).then_some(self.reply.len())
        }) else {
            return Ok(false);
        };
        let head = String::from_utf8_lossy(&self.reply[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let mut parts = status.split_whitespace();
        let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !proto.starts_with("SPAMD/") {
            return Err(ScanError(format!("spamd: unexpected reply {status:?}")));
        }
        if code != "0" {
            return Err(ScanError(format!("spamd: {status}")));
        }
        let mut length = None;
        let mut score = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("Content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("Spam") {
                score = Some(parse_spam_line(value)?);
            }
        }
        let Some(score) = score else {
            return Err(ScanError("spamd: reply without a Spam line".into()));
        };
        let body = &self.reply[head_end..];
        match length {
            Some(n) if body.len() < n && !eof => return Ok(false),
            Some(n) if body.len() < n => {
                return Err(ScanError("spamd closed the connection mid-reply".into()));
            }
            _ => {}
        }
        let body = match length {
            Some(n) => &body[..n],
            None => body,
        };
        let mut edits = std::mem::take(&mut self.forged);
        edits.extend(spam_fields(body));
        self.verdict = Some(Verdict::Accept {
            edits,
            spam: Some(score),
            quarantine: None,
        });
        Ok(true)
    }
}

/// `True ; 1000.0 / 5.0` (or `Yes`/`False`/`No`).
fn parse_spam_line(value: &str) -> Result<SpamScore, ScanError> {
    let garbage = || ScanError(format!("spamd: bad Spam line {value:?}"));
    let (flag, numbers) = value.split_once(';').ok_or_else(garbage)?;
    let (score, threshold) = numbers.split_once('/').ok_or_else(garbage)?;
    let score: f64 = score.trim().parse().map_err(|_| garbage())?;
    let threshold: f64 = threshold.trim().parse().map_err(|_| garbage())?;
    if !score.is_finite() || !threshold.is_finite() {
        return Err(garbage());
    }
    let is_spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        _ => return Err(garbage()),
    };
    Ok(SpamScore {
        score,
        threshold,
        is_spam,
    })
}

/// The `X-Spam-*` fields of a header block, unfolded into name and value, in order.
fn spam_fields(header: &[u8]) -> Vec<HeaderEdit> {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str("\r\n");
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim_start().to_string()));
        }
    }
    fields
        .into_iter()
        .filter(|(name, _)| {
            name.len() > 7 && name.is_char_boundary(7) && name[..7].eq_ignore_ascii_case("X-Spam-")
        })
        .map(|(name, value)| HeaderEdit::Add { name, value })
        .collect()
}

/// Deletions of every field of `message`'s header whose name starts with `prefix` (ASCII,
/// any case): the message's own verdict fields, which must not sit beside the scanner's (a
/// sender could forge `X-Spam-Flag: NO`). Each deletes the first remaining occurrence.
pub fn remove_fields(message: &[u8], prefix: &str) -> Vec<HeaderEdit> {
    let mut edits = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.len() >= prefix.len()
            && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        {
            edits.push(HeaderEdit::Change {
                name: String::from_utf8_lossy(name).into_owned(),
                index: 1,
                value: String::new(),
            });
        }
    }
    edits
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl ScannerClient for SpamdClient {
    fn begin(&mut self, _ctx: &ScanContext) {}

    fn body(&mut self, chunk: &[u8]) {
        if self.too_big || self.sent {
            return;
        }
        if self.message.len() + chunk.len() > self.max_size {
            // Like spamc: a message over the limit is passed through unchecked.
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
            self.verdict = Some(Self::skipped());
            return;
        }
        self.sent = true;
        let mut head = format!(
            "HEADERS SPAMC/1.5\r\nContent-length: {}\r\n",
            self.message.len()
        );
        if let Some(user) = &self.user {
            let user: String = user.chars().filter(|c| !c.is_control()).collect();
            head.push_str(&format!("User: {user}\r\n"));
        }
        head.push_str("\r\n");
        self.out.extend_from_slice(head.as_bytes());
        self.forged = remove_fields(&self.message, "X-Spam-");
        self.out.append(&mut self.message);
        self.message = Vec::new();
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        out.append(&mut self.out);
        true
    }

    fn ready_for_body(&self) -> bool {
        // Buffering is bounded by `max_size`; beyond it nothing more is kept.
        true
    }

    fn wants_input(&self) -> bool {
        self.sent && self.verdict.is_none()
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        super::reply::take("spamd", self.sent, &mut self.reply, bytes, MAX_REPLY)?;
        self.try_parse(false).map(|_| ())
    }

    fn handle_eof(&mut self) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        let empty = self.reply.is_empty();
        super::reply::at_eof("spamd", empty, || self.try_parse(true))
    }

    fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }
}
