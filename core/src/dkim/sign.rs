//! Signing (RFC 6376 5).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::canon::{header_field, split_header};
use super::{
    BodyHasher, Canon, DkimError, HeaderSplitter, MAX_SIGNER_HEADER_BYTES, SigningKey,
    valid_dns_name,
};

/// The header fields signed when a configuration lists none: those RFC 6376 5.4.1 recommends and
/// that mail clients show or thread by.
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// What and how to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// `d=`: the signing domain.
    pub domain: String,
    /// `s=`: the selector under `_domainkey.` of `domain`.
    pub selector: String,
    /// Names of the header fields to sign, lowercase; `from` is added if missing, and an empty
    /// list means [`DEFAULT_SIGNED_HEADERS`].
    pub headers: Vec<String>,
    /// Sign each listed field once more than it occurs, so that adding one later (a second
    /// Subject, a From where there was none) breaks the signature (RFC 6376 8.15).
    pub oversign: bool,
    /// Header canonicalization (`c=` first half).
    pub header_canon: Canon,
    /// Body canonicalization (`c=` second half).
    pub body_canon: Canon,
    /// Adds `x=` this many seconds after the signing time.
    pub expire_after: Option<u64>,
    /// Adds `l=` with the canonical body length, so content appended later (a mailing list
    /// footer) does not break the signature. RFC 6376 8.2 explains why that is risky: off by
    /// default. (An addition to the API of the brief, for `l=` round-trip tests and for lists.)
    pub body_length: bool,
}

impl SignerConfig {
    /// Relaxed/relaxed, the default header list, over-signing on, no expiry, no `l=`.
    pub fn new(domain: &str, selector: &str) -> SignerConfig {
        SignerConfig {
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_string(),
            headers: Vec::new(),
            oversign: true,
            header_canon: Canon::Relaxed,
            body_canon: Canon::Relaxed,
            expire_after: None,
            body_length: false,
        }
    }
}

/// Signs one message as it streams.
pub struct Signer {
    config: SignerConfig,
    key: Arc<SigningKey>,
    now_unix: i64,
    split: HeaderSplitter,
    body: BodyHasher,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("config", &self.config)
            .field("now_unix", &self.now_unix)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for one message, signed as of `now_unix` (the `t=` tag).
    pub fn new(config: SignerConfig, key: Arc<SigningKey>, now_unix: i64) -> Signer {
        let body = BodyHasher::new(config.body_canon, None);
        Signer {
            config,
            key,
            now_unix,
            split: HeaderSplitter::new(MAX_SIGNER_HEADER_BYTES),
            body,
        }
    }

    /// Feeds the next bytes of the message (header and body, CRLF line ends), in pieces of any
    /// size. The header is kept, the body only hashed.
    pub fn feed(&mut self, bytes: &[u8]) {
        let (body, _) = self.split.feed(bytes);
        if !body.is_empty() {
            self.body.write(body);
        }
    }

    /// Ends the message and returns the complete `DKIM-Signature:` field, folded and
    /// CRLF-terminated, to prepend to the message.
    pub fn finish(mut self) -> Result<String, DkimError> {
        self.split.finish();
        if self.split.overflow {
            return Err(DkimError::HeaderTooLarge);
        }
        let config = &self.config;
        if !valid_dns_name(&config.domain) || !valid_dns_name(&config.selector) {
            return Err(DkimError::Config(format!(
                "bad domain {:?} or selector {:?}",
                config.domain, config.selector
            )));
        }
        let fields = split_header(&self.split.header);
        if !fields.iter().any(|f| f.name.eq_ignore_ascii_case("from")) {
            return Err(DkimError::NoFrom);
        }

        // h=: every occurrence of each listed name, plus one absent instance when over-signing.
        let mut names: Vec<String> = Vec::new();
        let listed: Vec<String> = if config.headers.is_empty() {
            DEFAULT_SIGNED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            config
                .headers
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        };
        for name in std::iter::once("from".to_string()).chain(listed) {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| !(0x21..=0x7e).contains(&b) || b == b':')
            {
                return Err(DkimError::Config(format!("bad header name {name:?}")));
            }
            if names.contains(&name) {
                continue;
            }
            names.push(name);
        }
        let mut h: Vec<&str> = Vec::new();
        let mut data = Vec::new();
        for name in &names {
            let instances: Vec<&[u8]> = fields
                .iter()
                .rev()
                .filter(|f| f.name.eq_ignore_ascii_case(name))
                .map(|f| f.raw.as_slice())
                .collect();
            for raw in &instances {
                header_field(config.header_canon, raw, &mut data);
                h.push(name);
            }
            if config.oversign {
                h.push(name);
            }
        }

        let (bh, body_len) = self.body.finish();
        let mut tokens: Vec<(bool, String)> = vec![
            (true, "v=1;".into()),
            (true, format!("a={};", self.key.algorithm().as_str())),
            (
                true,
                format!(
                    "c={}/{};",
                    config.header_canon.as_str(),
                    config.body_canon.as_str()
                ),
            ),
            (true, format!("d={};", config.domain)),
            (true, format!("s={};", config.selector)),
            (true, format!("t={};", self.now_unix)),
        ];
        if let Some(after) = config.expire_after {
            let x = self
                .now_unix
                .saturating_add(i64::try_from(after).unwrap_or(i64::MAX));
            tokens.push((true, format!("x={x};")));
        }
        if config.body_length {
            tokens.push((true, format!("l={body_len};")));
        }
        for (i, name) in h.iter().enumerate() {
            let last = i + 1 == h.len();
            let text = match (i, last) {
                (0, true) => format!("h={name};"),
                (0, false) => format!("h={name}:"),
                (_, true) => format!("{name};"),
                (_, false) => format!("{name}:"),
            };
            tokens.push((i == 0, text));
        }
        tokens.push((true, format!("bh={};", B64.encode(bh))));
        tokens.push((true, "b=".into()));
        let unsigned = fold(&tokens);

        // The signature covers this very field with b= empty, without its final CRLF.
        let mut own = Vec::new();
        header_field(
            config.header_canon,
            format!("{unsigned}\r\n").as_bytes(),
            &mut own,
        );
        own.truncate(own.len() - 2);
        data.extend_from_slice(&own);
        let signature = self.key.sign(&data)?;

        let b64 = B64.encode(signature);
        let mut out = unsigned;
        let mut line_len = out.rsplit("\r\n").next().map_or(0, str::len);
        let mut rest = b64.as_str();
        while !rest.is_empty() {
            let room = 78usize.saturating_sub(line_len);
            if room < 8 {
                out.push_str("\r\n\t");
                line_len = 1;
                continue;
            }
            let (piece, tail) = rest.split_at(room.min(rest.len()));
            out.push_str(piece);
            line_len += piece.len();
            rest = tail;
        }
        out.push_str("\r\n");
        Ok(out)
    }
}

/// Folds `DKIM-Signature:` and its tokens into lines of at most about 78 characters; each token
/// says whether a space precedes it when it stays on the same line.
fn fold(tokens: &[(bool, String)]) -> String {
    let mut out = String::from("DKIM-Signature:");
    let mut line_len = out.len();
    for (space, token) in tokens {
        let extra = usize::from(*space) + token.len();
        if line_len + extra > 78 && line_len > 1 {
            out.push_str("\r\n\t");
            line_len = 1;
        } else if *space {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(token);
        line_len += token.len();
    }
    out
}
