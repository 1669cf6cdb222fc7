//! DKIM signatures (RFC 6376) with RSA-SHA256 and Ed25519-SHA256 (RFC 8463, RFC 8301), as pure
//! code: the message streams in, key records come in as DNS answers the caller looked up, and
//! nothing here reads a socket, a file or a clock.
//!
//! Signing: [`Signer::new`], [`Signer::feed`] the message as it streams, [`Signer::finish`] gives
//! the `DKIM-Signature:` field to prepend. Verifying: [`Verifier::feed`] and
//! [`Verifier::finish_body`], look up every name of [`Verifier::key_queries`] as TXT and hand
//! the answers to [`Verifier::key_answer`], then read [`Verifier::results`].
//!
//! Both keep the header block (bounded) and hash the body as it passes, so a 50 MB message costs
//! the size of its header, not of itself. Only CRLF ends a line, as in SMTP's DATA.

mod canon;
mod key;
mod sign;
pub mod tags;
mod verify;

pub use canon::{BodyCanonicalizer, HeaderField, header_field, split_header};
pub use key::{
    KeyType, PublicKeyRecord, SigningKey, pem_decode, pem_encode, rsa_pkcs1_from_public_der,
    spki_from_rsa_pkcs1,
};
pub use sign::{Signer, SignerConfig};
pub use verify::{Verifier, VerifyLimits};

use std::fmt;

/// Upper bound on the header block a [`Signer`] keeps (RFC 5322 puts no limit on it; real
/// headers are a few KiB, a long Received chain some tens).
pub const MAX_SIGNER_HEADER_BYTES: usize = 256 * 1024;

/// A signing algorithm (the `a=` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256`: RSASSA-PKCS1-v1_5 with SHA-256.
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463): Ed25519 over the SHA-256 digest of the header data.
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// A canonicalization algorithm (RFC 6376 3.4), for the header or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    /// Bytes as they are (body: trailing empty lines removed).
    Simple,
    /// Tolerates whitespace changes and header refolding.
    Relaxed,
}

impl Canon {
    /// The `c=` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Canon::Simple => "simple",
            Canon::Relaxed => "relaxed",
        }
    }
}

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimError {
    /// The header block is larger than [`MAX_SIGNER_HEADER_BYTES`].
    HeaderTooLarge,
    /// The message has no From field, which every signature must cover (RFC 6376 5.4).
    NoFrom,
    /// The domain, selector or header list of the configuration is not usable.
    Config(String),
    /// The key could not be read.
    Key(String),
    /// The signature operation failed.
    Crypto(String),
}

impl fmt::Display for DkimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DkimError::HeaderTooLarge => {
                write!(f, "header larger than {MAX_SIGNER_HEADER_BYTES} bytes")
            }
            DkimError::NoFrom => f.write_str("message has no From field"),
            DkimError::Config(m) => write!(f, "DKIM configuration: {m}"),
            DkimError::Key(m) => write!(f, "DKIM key: {m}"),
            DkimError::Crypto(m) => write!(f, "DKIM signing: {m}"),
        }
    }
}

impl std::error::Error for DkimError {}

/// The outcome of one signature, in the words of RFC 8601 (Authentication-Results `dkim=`).
/// The text says why, for the `reason=` comment and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimResult {
    /// The signature verified.
    Pass,
    /// The signature or the body hash did not verify, or the signature has expired.
    Fail(String),
    /// Not used by the verifier itself; for callers that discard a signature by policy.
    Neutral(String),
    /// Try again later: the key lookup failed temporarily.
    TempError(String),
    /// The signature cannot ever verify: malformed, unsupported, no key, revoked key...
    PermError(String),
}

impl DkimResult {
    /// The RFC 8601 result word: `pass`, `fail`, `neutral`, `temperror` or `permerror`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DkimResult::Pass => "pass",
            DkimResult::Fail(_) => "fail",
            DkimResult::Neutral(_) => "neutral",
            DkimResult::TempError(_) => "temperror",
            DkimResult::PermError(_) => "permerror",
        }
    }

    /// Why, when the result is not `pass`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            DkimResult::Pass => None,
            DkimResult::Fail(r)
            | DkimResult::Neutral(r)
            | DkimResult::TempError(r)
            | DkimResult::PermError(r) => Some(r),
        }
    }
}

impl fmt::Display for DkimResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            None => f.write_str(self.as_str()),
            Some(r) => write!(f, "{} ({r})", self.as_str()),
        }
    }
}

/// The verdict on one DKIM-Signature field, with what Authentication-Results reports of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureResult {
    /// The verdict.
    pub result: DkimResult,
    /// `d=`, lowercase (empty if the field had none).
    pub domain: String,
    /// `s=` (empty if the field had none).
    pub selector: String,
    /// `a=` as written (empty if the field had none).
    pub algorithm: String,
    /// The first 8 characters of `b=`, for `header.b` (RFC 6008).
    pub header_b: String,
    /// `i=`, when present.
    pub identity: Option<String>,
}

/// Splits a streaming message into its header block (kept, up to a bound) and its body (handed
/// back to the caller piece by piece, never kept).
#[derive(Debug, Clone)]
struct HeaderSplitter {
    header: Vec<u8>,
    max: usize,
    overflow: bool,
    in_body: bool,
    at_line_start: bool,
    last_was_cr: bool,
    /// A CR at the start of a line: the empty line if LF follows.
    pending_cr: bool,
}

impl HeaderSplitter {
    fn new(max: usize) -> HeaderSplitter {
        HeaderSplitter {
            header: Vec::new(),
            max,
            overflow: false,
            in_body: false,
            at_line_start: true,
            last_was_cr: false,
            pending_cr: false,
        }
    }

    /// Takes the next bytes; returns the part of them that belongs to the body, and whether the
    /// header ended within them.
    fn feed<'a>(&mut self, bytes: &'a [u8]) -> (&'a [u8], bool) {
        if self.in_body {
            return (bytes, false);
        }
        for (i, &b) in bytes.iter().enumerate() {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.in_body = true;
                    return (&bytes[i + 1..], true);
                }
                self.push(b'\r');
                self.at_line_start = false;
                self.last_was_cr = true;
            }
            if self.at_line_start && b == b'\r' {
                self.pending_cr = true;
                continue;
            }
            self.push(b);
            self.at_line_start = self.last_was_cr && b == b'\n';
            self.last_was_cr = b == b'\r';
        }
        (&[], false)
    }

    /// The message ended; a header never closed by an empty line is the whole message.
    fn finish(&mut self) -> bool {
        if self.in_body {
            return false;
        }
        if self.pending_cr {
            self.pending_cr = false;
            self.push(b'\r');
        }
        self.in_body = true;
        true
    }

    fn push(&mut self, b: u8) {
        if self.header.len() < self.max {
            self.header.push(b);
        } else {
            self.overflow = true;
        }
    }
}

/// Canonicalizes and hashes a body, counting its canonical length, hashing at most `limit` bytes
/// (the `l=` tag).
#[derive(Clone)]
struct BodyHasher {
    canon: BodyCanonicalizer,
    digest: ring::digest::Context,
    limit: Option<u64>,
    /// Canonical bytes seen (beyond `limit` too).
    total: u64,
}

impl BodyHasher {
    fn new(canon: Canon, limit: Option<u64>) -> BodyHasher {
        BodyHasher {
            canon: BodyCanonicalizer::new(canon),
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            limit,
            total: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let BodyHasher {
            canon,
            digest,
            limit,
            total,
        } = self;
        canon.write(bytes, &mut |piece| hash_piece(digest, *limit, total, piece));
    }

    /// The digest and the canonical body length.
    fn finish(self) -> (Vec<u8>, u64) {
        let BodyHasher {
            canon,
            mut digest,
            limit,
            mut total,
        } = self;
        canon.finish(&mut |piece| hash_piece(&mut digest, limit, &mut total, piece));
        (digest.finish().as_ref().to_vec(), total)
    }
}

fn hash_piece(
    digest: &mut ring::digest::Context,
    limit: Option<u64>,
    total: &mut u64,
    piece: &[u8],
) {
    let take = match limit {
        None => piece.len(),
        Some(l) => l.saturating_sub(*total).min(piece.len() as u64) as usize,
    };
    digest.update(&piece[..take]);
    *total += piece.len() as u64;
}

/// A DNS name a selector or domain may be: labels of letters, digits, `-` and `_`, 63 bytes at
/// most each, 253 in all.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
