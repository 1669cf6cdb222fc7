//! Inspecting what the server stored: the `Return-Path` and `Received` headers it prepends, and
//! the message after them, which must be byte-exact what the client sent.

use crate::client::escape;

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// How many of `messages` contain `needle`.
pub fn count_containing(messages: &[Vec<u8>], needle: &[u8]) -> usize {
    messages.iter().filter(|m| contains(m, needle)).count()
}

/// A small well-formed message whose subject and body carry `marker`.
pub fn sample_message(marker: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: {marker}\r\n\
         Message-ID: <{marker}@client.example>\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         \r\n\
         Hello, this is {marker}.\r\n\
         .A line that starts with a dot.\r\n\
         Bye.\r\n"
    )
    .into_bytes()
}

/// A stored message split into the two headers the server adds and the rest.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// The address inside `Return-Path: <...>`.
    pub return_path: String,
    /// The `Authentication-Results:` field inbound SMTP added, if any.
    pub authentication_results: Option<String>,
    /// The whole `Received:` header, folded lines and CRLFs included.
    pub received: String,
    /// Everything after the `Received:` header: the message as the client sent it.
    pub rest: Vec<u8>,
}

impl StoredMessage {
    /// Splits a stored message: it must start with `Return-Path: <...>\r\n`, then a
    /// `Received: ` header (continuation lines start with SP or HTAB), each line ending CRLF.
    pub fn parse(bytes: &[u8]) -> Result<StoredMessage, String> {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        let line_end = |from: usize| -> Result<usize, String> {
            bytes[from..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| from + p + 2)
                .ok_or_else(|| format!("no CRLF after offset {from} in stored message: {head:?}"))
        };
        let first_end = line_end(0)?;
        let first = &bytes[..first_end];
        if contains(&first[..first.len() - 2], b"\n") {
            return Err(format!(
                "first stored line has a bare LF: {}",
                escape(first)
            ));
        }
        let first = String::from_utf8_lossy(first);
        let return_path = first
            .strip_prefix("Return-Path: <")
            .and_then(|r| r.strip_suffix(">\r\n"))
            .ok_or_else(|| {
                format!("stored message does not start with `Return-Path: <...>\\r\\n`: {head:?}")
            })?
            .to_string();
        // Inbound SMTP puts its Authentication-Results on top (RFC 8601 5).
        let mut first_end = first_end;
        let mut authentication_results = None;
        if bytes[first_end..].starts_with(b"Authentication-Results: ") {
            let mut end = line_end(first_end)?;
            while end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\t') {
                end = line_end(end)?;
            }
            authentication_results =
                Some(String::from_utf8_lossy(&bytes[first_end..end]).into_owned());
            first_end = end;
        }
        // `Received: from ...`, or `Received: by ...` on submission with privacy on.
        if !bytes[first_end..].starts_with(b"Received: ") {
            return Err(format!(
                "second stored header is not `Received: ...`: {:?}",
                String::from_utf8_lossy(&bytes[first_end..bytes.len().min(first_end + 120)])
            ));
        }
        let mut end = line_end(first_end)?;
        while end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\t') {
            end = line_end(end)?;
        }
        let received = String::from_utf8_lossy(&bytes[first_end..end]).into_owned();
        if received.contains('\n') && received.replace("\r\n", "").contains('\n') {
            return Err(format!("Received header contains a bare LF: {received:?}"));
        }
        Ok(StoredMessage {
            return_path,
            authentication_results,
            received,
            rest: bytes[end..].to_vec(),
        })
    }

    /// The protocol token of the `with` clause of the Received header (`ESMTP`, `ESMTPS`,
    /// `ESMTPSA`...), ignoring comments such as `(using TLSv1.3 with cipher ...)`.
    pub fn with_protocol(&self) -> Option<String> {
        let mut uncommented = String::new();
        let mut depth = 0usize;
        for c in self.received.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                c if depth == 0 => uncommented.push(c),
                _ => {}
            }
        }
        let words: Vec<&str> = uncommented.split_whitespace().collect();
        words
            .windows(2)
            .find(|w| w[0] == "with")
            .map(|w| w[1].trim_end_matches(';').to_string())
    }
}

/// What [`check_delivery`] expects of one stored message.
#[derive(Clone, Debug)]
pub struct Delivery<'a> {
    /// The envelope sender (`MAIL FROM`), empty for the null sender.
    pub sender: &'a str,
    /// The message the client sent (after the server's dot-unstuffing), byte-exact.
    pub message: &'a [u8],
    /// `ESMTP`, `ESMTPS` or `ESMTPSA` (RFC 3848); `None` to skip that check.
    pub protocol: Option<&'a str>,
    /// Whether TLS was used (then `TLSv1.` must appear in the Received header, else not).
    pub tls: bool,
    /// The EHLO name the client gave, which the `from` clause should carry.
    pub helo: Option<&'a str>,
}

/// Checks one stored message against what was sent; returns a description of every problem.
pub fn check_delivery(stored: &[u8], want: &Delivery<'_>) -> Result<StoredMessage, String> {
    let msg = StoredMessage::parse(stored)?;
    let mut problems = Vec::new();
    if msg.return_path != want.sender {
        problems.push(format!(
            "Return-Path is <{}>, expected <{}>",
            msg.return_path, want.sender
        ));
    }
    if !msg.received.contains("by mail.test.example") {
        problems.push("Received lacks `by mail.test.example`".to_string());
    }
    if !msg.received.contains(';') {
        problems.push("Received lacks the `; date-time` stamp".to_string());
    }
    // Authenticated submission (ESMTPA, ESMTPSA) keeps the client private by default: no
    // address, no EHLO name. Everything else records both.
    let private = want.protocol.is_some_and(|p| p.ends_with('A'));
    if private {
        if msg.received.contains("127.0.0.1") || msg.received.contains("from ") {
            problems.push("Received names the submitting client (privacy is on)".to_string());
        }
    } else {
        if !msg.received.contains("127.0.0.1") {
            problems.push("Received lacks the client's IP address 127.0.0.1".to_string());
        }
        if let Some(helo) = want.helo
            && !msg.received.contains(helo)
        {
            problems.push(format!("Received lacks the EHLO name {helo}"));
        }
    }
    if let Some(proto) = want.protocol {
        match msg.with_protocol() {
            Some(p) if p == proto => {}
            other => problems.push(format!(
                "Received has `with {other:?}`, expected `with {proto}`"
            )),
        }
    }
    let has_tls = msg.received.contains("TLSv1.");
    if want.tls && !has_tls {
        problems.push("Received lacks `using TLSv1.x` although TLS was used".to_string());
    }
    if !want.tls && has_tls {
        problems.push("Received mentions TLS although none was used".to_string());
    }
    if msg.rest != want.message {
        let at = msg
            .rest
            .iter()
            .zip(want.message)
            .position(|(a, b)| a != b)
            .unwrap_or(msg.rest.len().min(want.message.len()));
        let lo = at.saturating_sub(40);
        problems.push(format!(
            "stored message differs from what was sent (stored {} bytes, sent {} bytes, first \
             difference at byte {at}):\n  stored: {}\n  sent:   {}",
            msg.rest.len(),
            want.message.len(),
            escape(&msg.rest[lo..msg.rest.len().min(at + 40)]),
            escape(&want.message[lo.min(want.message.len())..want.message.len().min(at + 40)]),
        ));
    }
    if problems.is_empty() {
        Ok(msg)
    } else {
        Err(format!(
            "{}\nReceived header: {:?}",
            problems.join("\n"),
            msg.received
        ))
    }
}
