//! Verifying (RFC 6376 6).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self, UnparsedPublicKey};

use super::canon::{HeaderField, header_field, split_header};
use super::key::{KeyType, PublicKeyRecord};
use super::{
    Algorithm, BodyHasher, Canon, DkimResult, HeaderSplitter, SignatureResult, tags, valid_dns_name,
};
use crate::dns::{Answer, Record};

/// At most this many names in one `h=`: real signatures list a few dozen; more is an attack on
/// the verifier's time.
const MAX_SIGNED_FIELDS: usize = 128;

/// Bounds on what one message may cost the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyLimits {
    /// DKIM-Signature fields checked, from the top; further ones are ignored (not reported).
    pub max_signatures: usize,
    /// Header bytes kept; signatures of a larger header are a permerror.
    pub max_header_bytes: usize,
    /// Smallest RSA key accepted (RFC 8301: 1024; below that, permerror).
    pub min_rsa_bits: usize,
}

impl Default for VerifyLimits {
    /// 5 signatures, 256 KiB of header, RSA keys of 1024 bits or more.
    fn default() -> VerifyLimits {
        VerifyLimits {
            max_signatures: 5,
            max_header_bytes: 256 * 1024,
            min_rsa_bits: 1024,
        }
    }
}

/// A DKIM-Signature field whose tags made sense.
#[derive(Debug, Clone)]
struct ParsedSignature {
    algorithm: Algorithm,
    header_canon: Canon,
    signed: Vec<String>,
    body_hash: Vec<u8>,
    signature: Vec<u8>,
    length: Option<u64>,
    expires: Option<u64>,
    /// Index of the field in the header.
    field: usize,
}

enum Check {
    /// Already decided (malformed, unsupported, header too large).
    Decided(DkimResult),
    /// To be checked once the body and the key are in.
    Pending {
        sig: Box<ParsedSignature>,
        body: Box<BodyHasher>,
        digest: Option<(Vec<u8>, u64)>,
    },
}

struct Entry {
    /// What the report says besides the verdict.
    report: SignatureResult,
    /// `s._domainkey.d`, lowercase.
    key_name: String,
    check: Check,
}

/// Verifies every DKIM-Signature of one message as it streams.
pub struct Verifier {
    limits: VerifyLimits,
    split: HeaderSplitter,
    fields: Vec<HeaderField>,
    entries: Vec<Entry>,
    header_done: bool,
    finished: bool,
    keys: BTreeMap<String, Result<PublicKeyRecord, DkimResult>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("limits", &self.limits)
            .field("signatures", &self.entries.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for one message.
    pub fn new(limits: VerifyLimits) -> Verifier {
        Verifier {
            split: HeaderSplitter::new(limits.max_header_bytes),
            limits,
            fields: Vec::new(),
            entries: Vec::new(),
            header_done: false,
            finished: false,
            keys: BTreeMap::new(),
        }
    }

    /// Feeds the next bytes of the message (header and body, CRLF line ends), in pieces of any
    /// size. The DKIM-Signature fields are parsed when the header ends; each signature's body
    /// hash is computed as the body passes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.finished {
            return;
        }
        let (body, header_ended) = self.split.feed(bytes);
        if header_ended {
            self.parse_header();
        }
        if !body.is_empty() {
            for e in &mut self.entries {
                if let Check::Pending { body: hasher, .. } = &mut e.check {
                    hasher.write(body);
                }
            }
        }
    }

    /// The message has ended: completes the body hashes.
    pub fn finish_body(&mut self) {
        if self.finished {
            return;
        }
        if self.split.finish() {
            self.parse_header();
        }
        self.finished = true;
        for e in &mut self.entries {
            if let Check::Pending { body, digest, .. } = &mut e.check {
                let hasher = std::mem::replace(body.as_mut(), BodyHasher::new(Canon::Simple, None));
                *digest = Some(hasher.finish());
            }
        }
    }

    /// The TXT names (`selector._domainkey.domain`) still to look up, each once. Known as soon as
    /// the header has ended.
    pub fn key_queries(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.entries {
            if matches!(e.check, Check::Pending { .. })
                && !self.keys.contains_key(&e.key_name)
                && !names.contains(&e.key_name)
            {
                names.push(e.key_name.clone());
            }
        }
        names
    }

    /// The answer to the TXT lookup of `name`, one of [`Verifier::key_queries`]. NXDOMAIN and
    /// NODATA are a permerror ("no key"), a temporary failure a temperror.
    pub fn key_answer(&mut self, name: &str, answer: &Answer) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let outcome = match answer {
            Answer::Records { records, .. } => {
                let mut first_error = None;
                let mut found = None;
                for r in records {
                    if let Record::Txt(bytes) = r {
                        match PublicKeyRecord::parse(&String::from_utf8_lossy(bytes)) {
                            Ok(key) => {
                                found = Some(key);
                                break;
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                match (found, first_error) {
                    (Some(key), _) => Ok(key),
                    (None, Some(e)) => Err(DkimResult::PermError(format!("key record: {e}"))),
                    (None, None) => Err(DkimResult::PermError("no key".into())),
                }
            }
            Answer::NoData | Answer::NxDomain => Err(DkimResult::PermError("no key".into())),
            Answer::TempFail(why) => Err(DkimResult::TempError(format!("key lookup: {why}"))),
            Answer::PermFail(why) => Err(DkimResult::PermError(format!("key lookup: {why}"))),
        };
        self.keys.insert(name, outcome);
    }

    /// One result per DKIM-Signature field checked, top to bottom; empty if the message has
    /// none (the caller reports `dkim=none`). Call after [`Verifier::finish_body`] and once every
    /// key is answered; a signature whose key is not answered yet is a temperror.
    pub fn results(&self, now_unix: i64) -> Vec<SignatureResult> {
        self.entries
            .iter()
            .map(|e| SignatureResult {
                result: self.verdict(e, now_unix),
                ..e.report.clone()
            })
            .collect()
    }

    fn verdict(&self, entry: &Entry, now_unix: i64) -> DkimResult {
        let (sig, digest) = match &entry.check {
            Check::Decided(r) => return r.clone(),
            Check::Pending { sig, digest, .. } => (sig, digest),
        };
        let Some((body_hash, body_len)) = digest else {
            return DkimResult::TempError("message not complete".into());
        };
        if let Some(x) = sig.expires
            && i64::try_from(x).unwrap_or(i64::MAX) < now_unix
        {
            return DkimResult::Fail("signature expired".into());
        }
        let key = match self.keys.get(&entry.key_name) {
            None => return DkimResult::TempError("key not looked up".into()),
            Some(Err(r)) => return r.clone(),
            Some(Ok(key)) => key,
        };
        if key.is_revoked() {
            return DkimResult::PermError("key revoked".into());
        }
        let expected_type = match sig.algorithm {
            Algorithm::RsaSha256 => KeyType::Rsa,
            Algorithm::Ed25519Sha256 => KeyType::Ed25519,
        };
        if key.key_type != expected_type {
            return DkimResult::PermError("key type does not match a=".into());
        }
        if !key.allows_sha256() {
            return DkimResult::PermError("key does not allow sha256 (h=)".into());
        }
        if !key.allows_email() {
            return DkimResult::PermError("key not for email (s=)".into());
        }
        if key.strict
            && let Some(i) = &entry.report.identity
            && !identity_domain(i).eq_ignore_ascii_case(&entry.report.domain)
        {
            return DkimResult::PermError("i= is a subdomain of d= but the key has t=s".into());
        }
        if key.key_type == KeyType::Rsa {
            if key.rsa_bits < self.limits.min_rsa_bits.max(1024) {
                return DkimResult::PermError(format!("RSA key too short ({} bits)", key.rsa_bits));
            }
            if key.rsa_bits > 8192 {
                return DkimResult::PermError(format!("RSA key too long ({} bits)", key.rsa_bits));
            }
        }
        if let Some(l) = sig.length
            && l > *body_len
        {
            return DkimResult::PermError("l= is longer than the body".into());
        }
        if *body_hash != sig.body_hash {
            return DkimResult::Fail("body hash did not verify".into());
        }
        let data = self.signed_data(sig);
        let ok = match sig.algorithm {
            Algorithm::RsaSha256 => {
                let alg: &dyn signature::VerificationAlgorithm = if key.rsa_bits >= 2048 {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
                };
                UnparsedPublicKey::new(alg, &key.public_key)
                    .verify(&data, &sig.signature)
                    .is_ok()
            }
            Algorithm::Ed25519Sha256 => {
                let digest = ring::digest::digest(&ring::digest::SHA256, &data);
                UnparsedPublicKey::new(&signature::ED25519, &key.public_key)
                    .verify(digest.as_ref(), &sig.signature)
                    .is_ok()
            }
        };
        if ok {
            DkimResult::Pass
        } else {
            DkimResult::Fail("signature did not verify".into())
        }
    }

    /// The header data a signature covers (RFC 6376 3.7, 5.4.2): the fields named by `h=`, each
    /// name taking the next instance from the bottom, then the signature field itself with `b=`
    /// emptied and without its final CRLF.
    fn signed_data(&self, sig: &ParsedSignature) -> Vec<u8> {
        let mut data = Vec::new();
        let mut used: BTreeMap<&str, usize> = BTreeMap::new();
        for name in &sig.signed {
            let skip = used.entry(name.as_str()).or_insert(0);
            let instance = self
                .fields
                .iter()
                .rev()
                .filter(|f| f.name.eq_ignore_ascii_case(name))
                .nth(*skip);
            *skip += 1;
            if let Some(f) = instance {
                header_field(sig.header_canon, &f.raw, &mut data);
            }
        }
        let own = &self.fields[sig.field];
        let mut raw = strip_b_value(&own.raw);
        if !raw.ends_with(b"\r\n") {
            raw.extend_from_slice(b"\r\n");
        }
        let start = data.len();
        header_field(sig.header_canon, &raw, &mut data);
        data.truncate(data.len().max(start + 2) - 2);
        data
    }

    fn parse_header(&mut self) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        self.fields = split_header(&self.split.header);
        let too_large = self.split.overflow;
        let mut seen = 0;
        for (index, field) in self.fields.iter().enumerate() {
            if !field.name.eq_ignore_ascii_case("dkim-signature") {
                continue;
            }
            if seen == self.limits.max_signatures {
                break;
            }
            seen += 1;
            let entry = parse_signature(index, field, too_large);
            self.entries.push(entry);
        }
    }
}

/// The domain part of an `i=` value.
fn identity_domain(i: &str) -> &str {
    i.rsplit_once('@').map_or(i, |(_, d)| d)
}

/// The field with the value of its `b=` tag (and the whitespace around it) removed.
fn strip_b_value(raw: &[u8]) -> Vec<u8> {
    let colon = raw.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
    let mut out = raw[..colon].to_vec();
    let value = &raw[colon..];
    let ends_crlf = value.ends_with(b"\r\n");
    let value = &value[..value.len() - if ends_crlf { 2 } else { 0 }];
    for (i, spec) in value.split(|&b| b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        match spec.iter().position(|&b| b == b'=') {
            Some(eq)
                if spec[..eq]
                    .iter()
                    .filter(|b| !b" \t\r\n".contains(b))
                    .eq(b"b".iter()) =>
            {
                out.extend_from_slice(&spec[..=eq]);
            }
            _ => out.extend_from_slice(spec),
        }
    }
    if ends_crlf {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn parse_signature(index: usize, field: &HeaderField, too_large: bool) -> Entry {
    let mut report = SignatureResult {
        result: DkimResult::Pass,
        domain: String::new(),
        selector: String::new(),
        algorithm: String::new(),
        header_b: String::new(),
        identity: None,
    };
    let value = String::from_utf8_lossy(field.value()).into_owned();
    let decided = |report: SignatureResult, why: String| Entry {
        report,
        key_name: String::new(),
        check: Check::Decided(DkimResult::PermError(why)),
    };
    let list = match tags::parse(&value) {
        Ok(list) => list,
        Err(e) => return decided(report, format!("signature syntax: {e}")),
    };
    let get = |name: &str| tags::get(&list, name);
    report.domain = get("d").unwrap_or_default().to_ascii_lowercase();
    report.selector = get("s").unwrap_or_default().to_string();
    report.algorithm = get("a").unwrap_or_default().to_string();
    report.header_b = get("b")
        .map(tags::strip_whitespace)
        .unwrap_or_default()
        .chars()
        .take(8)
        .collect();
    report.identity = get("i").map(str::to_string);
    if too_large {
        return decided(report, "header too large".into());
    }
    match parse_tags(&list, &report) {
        Ok(mut sig) => {
            sig.field = index;
            let body = Box::new(BodyHasher::new(body_canon(&list), sig.length));
            Entry {
                key_name: format!(
                    "{}._domainkey.{}",
                    report.selector.to_ascii_lowercase(),
                    report.domain
                ),
                report,
                check: Check::Pending {
                    sig: Box::new(sig),
                    body,
                    digest: None,
                },
            }
        }
        Err(why) => decided(report, why),
    }
}

fn body_canon(list: &[tags::Tag]) -> Canon {
    match tags::get(list, "c").and_then(|c| c.split_once('/')) {
        Some((_, "relaxed")) => Canon::Relaxed,
        _ => Canon::Simple,
    }
}

fn canon_word(word: &str) -> Result<Canon, String> {
    match word {
        "simple" => Ok(Canon::Simple),
        "relaxed" => Ok(Canon::Relaxed),
        other => Err(format!("unknown canonicalization {other:?}")),
    }
}

fn number(list: &[tags::Tag], name: &str) -> Result<Option<u64>, String> {
    match tags::get(list, name) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(v.parse().map_err(|_| format!("bad {name}= value"))?))
        }
        Some(_) => Err(format!("bad {name}= value")),
    }
}

/// Checks the tags of RFC 6376 3.5 and 6.1.1.
fn parse_tags(list: &[tags::Tag], report: &SignatureResult) -> Result<ParsedSignature, String> {
    let get = |name: &str| tags::get(list, name);
    for required in ["v", "a", "b", "bh", "d", "h", "s"] {
        if get(required).is_none() {
            return Err(format!("missing tag {required}="));
        }
    }
    if get("v") != Some("1") {
        return Err("unsupported version (v= is not 1)".into());
    }
    let algorithm = match report.algorithm.to_ascii_lowercase().as_str() {
        "rsa-sha256" => Algorithm::RsaSha256,
        "ed25519-sha256" => Algorithm::Ed25519Sha256,
        "rsa-sha1" => return Err("rsa-sha1 is no longer accepted (RFC 8301)".into()),
        other => return Err(format!("unknown algorithm {other:?}")),
    };
    let (header_canon, body_canon_word) = match get("c") {
        None => (Canon::Simple, "simple"),
        Some(c) => match c.split_once('/') {
            Some((h, b)) => (canon_word(h)?, b),
            None => (canon_word(c)?, "simple"),
        },
    };
    canon_word(body_canon_word)?;
    if !valid_dns_name(&report.domain) {
        return Err(format!("bad d= {:?}", report.domain));
    }
    if !valid_dns_name(&report.selector) {
        return Err(format!("bad s= {:?}", report.selector));
    }
    if let Some(i) = &report.identity {
        let Some((_, domain)) = i.rsplit_once('@') else {
            return Err("i= has no @".into());
        };
        let domain = domain.to_ascii_lowercase();
        let d = &report.domain;
        if domain != *d && !domain.ends_with(&format!(".{d}")) {
            return Err("i= is not in the d= domain".into());
        }
    }
    if let Some(q) = get("q")
        && !q
            .split(':')
            .any(|m| tags::strip_whitespace(m).eq_ignore_ascii_case("dns/txt"))
    {
        return Err("q= has no dns/txt".into());
    }
    let signed: Vec<String> = get("h")
        .unwrap_or_default()
        .split(':')
        .map(|n| tags::strip_whitespace(n).to_ascii_lowercase())
        .collect();
    if signed.iter().any(String::is_empty) {
        return Err("empty name in h=".into());
    }
    if signed.len() > MAX_SIGNED_FIELDS {
        return Err("too many fields in h=".into());
    }
    if !signed.iter().any(|n| n == "from") {
        return Err("From is not signed".into());
    }
    let body_hash = B64
        .decode(tags::strip_whitespace(get("bh").unwrap_or_default()))
        .map_err(|_| "bh= is not base64".to_string())?;
    let signature = B64
        .decode(tags::strip_whitespace(get("b").unwrap_or_default()))
        .map_err(|_| "b= is not base64".to_string())?;
    if signature.is_empty() {
        return Err("b= is empty".into());
    }
    let length = number(list, "l")?;
    let timestamp = number(list, "t")?;
    let expires = number(list, "x")?;
    if let (Some(t), Some(x)) = (timestamp, expires)
        && x < t
    {
        return Err("x= is before t=".into());
    }
    Ok(ParsedSignature {
        algorithm,
        header_canon,
        signed,
        body_hash,
        signature,
        length,
        expires,
        field: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_b() {
        assert_eq!(
            strip_b_value(b"DKIM-Signature: a=1; bh=xx; b=ab\r\n cd\r\n"),
            b"DKIM-Signature: a=1; bh=xx; b=\r\n"
        );
        assert_eq!(
            strip_b_value(b"DKIM-Signature: b = ab ; d=x"),
            b"DKIM-Signature: b =; d=x"
        );
    }
}
