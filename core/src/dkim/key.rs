//! Keys: the public key record published in DNS (RFC 6376 3.6.1, RFC 8463 4) and the private
//! signing key (PKCS#8).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::{Algorithm, DkimError, tags};

/// The key type of a record's `k=` tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `k=rsa`, the default: `p=` is a SubjectPublicKeyInfo (or, as some publish it, a bare
    /// PKCS#1 RSAPublicKey).
    Rsa,
    /// `k=ed25519` (RFC 8463): `p=` is the raw 32-byte public key.
    Ed25519,
}

/// A parsed DKIM public key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRecord {
    /// `k=`.
    pub key_type: KeyType,
    /// The key in the form ring verifies with: PKCS#1 RSAPublicKey DER for RSA, the raw 32
    /// bytes for Ed25519. Empty when the key is revoked (`p=` empty).
    pub public_key: Vec<u8>,
    /// RSA modulus size in bits (0 for Ed25519 and for revoked keys).
    pub rsa_bits: usize,
    /// `h=`: the hash algorithms allowed, lowercase; `None` allows all.
    pub hashes: Option<Vec<String>>,
    /// `t=s`: the `i=` domain must equal `d=`, not be a subdomain of it.
    pub strict: bool,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
    /// `s=`: the service types, lowercase (`*` or `email` allow mail).
    pub services: Vec<String>,
}

impl PublicKeyRecord {
    /// Parses a key record, the TXT record's strings already joined.
    ///
    /// Unknown tags are ignored, as RFC 6376 3.6.1 requires; a `v=` other than `DKIM1`, an
    /// unknown `k=`, a `p=` that is not base64 or not a key of its type make the record invalid.
    /// An empty `p=` is valid and means revoked ([`PublicKeyRecord::is_revoked`]).
    pub fn parse(text: &str) -> Result<PublicKeyRecord, String> {
        let list = tags::parse(text)?;
        if let Some(first) = list.first()
            && list.iter().any(|t| t.name == "v")
            && (first.name != "v" || first.value != "DKIM1")
        {
            // RFC 6376 3.6.1: v= must be first and exactly "DKIM1".
            return Err("v= must come first and be DKIM1".into());
        }
        let key_type = match tags::get(&list, "k")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("rsa") => KeyType::Rsa,
            Some("ed25519") => KeyType::Ed25519,
            Some(other) => return Err(format!("unknown key type k={other}")),
        };
        let p = tags::get(&list, "p").ok_or("no p= tag")?;
        let p = tags::strip_whitespace(p);
        let hashes = tags::get(&list, "h").map(colon_list);
        let flags = tags::get(&list, "t").map(colon_list).unwrap_or_default();
        let services = tags::get(&list, "s")
            .map(colon_list)
            .unwrap_or_else(|| vec!["*".into()]);
        let (public_key, rsa_bits) = if p.is_empty() {
            (Vec::new(), 0)
        } else {
            let der = B64
                .decode(p.as_bytes())
                .map_err(|_| "p= is not base64".to_string())?;
            match key_type {
                KeyType::Ed25519 => {
                    if der.len() != 32 {
                        return Err(format!(
                            "ed25519 key is {} bytes, not 32 (RFC 8463)",
                            der.len()
                        ));
                    }
                    (der, 0)
                }
                KeyType::Rsa => {
                    let pkcs1 = rsa_pkcs1_from_public_der(&der)?;
                    let bits = rsa_modulus_bits(&pkcs1)?;
                    (pkcs1, bits)
                }
            }
        };
        Ok(PublicKeyRecord {
            key_type,
            public_key,
            rsa_bits,
            hashes,
            strict: flags.iter().any(|f| f == "s"),
            testing: flags.iter().any(|f| f == "y"),
            services,
        })
    }

    /// `p=` was empty: the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.public_key.is_empty()
    }

    /// The record allows signatures for mail (`s=` is `*` or includes `email`).
    pub fn allows_email(&self) -> bool {
        self.services.iter().any(|s| s == "*" || s == "email")
    }

    /// The record allows SHA-256 (`h=` absent or listing `sha256`).
    pub fn allows_sha256(&self) -> bool {
        self.hashes
            .as_ref()
            .is_none_or(|h| h.iter().any(|h| h == "sha256"))
    }
}

fn colon_list(value: &str) -> Vec<String> {
    value
        .split(':')
        .map(|s| tags::strip_whitespace(s).to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A private key to sign with.
pub struct SigningKey {
    inner: Inner,
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 private key (DER), RSA (2048 to 8192 bits, ring's signing range) or
    /// Ed25519 (v1 or v2 PKCS#8; OpenSSL writes v1 without the public key, hence ring's
    /// `from_pkcs8_maybe_unchecked`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, DkimError> {
        if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(SigningKey {
                inner: Inner::Ed25519(k),
            });
        }
        RsaKeyPair::from_pkcs8(der)
            .map(|k| SigningKey {
                inner: Inner::Rsa(k),
            })
            .map_err(|e| DkimError::Key(format!("not an Ed25519 or RSA PKCS#8 key: {e}")))
    }

    /// Reads a PEM `PRIVATE KEY` block (PKCS#8), as `openssl genpkey` and `petrel dkim keygen`
    /// write it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, DkimError> {
        let der = pem_decode(pem, "PRIVATE KEY")
            .ok_or_else(|| DkimError::Key("no PEM \"PRIVATE KEY\" block".into()))?;
        SigningKey::from_pkcs8_der(&der)
    }

    /// The signature algorithm this key makes.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// The DNS key record to publish for this key: `v=DKIM1; k=...; p=...`, one string (the
    /// caller splits it into 255-byte character-strings).
    pub fn public_key_record(&self) -> String {
        let (k, p) = match &self.inner {
            Inner::Rsa(k) => (
                "rsa",
                B64.encode(spki_from_rsa_pkcs1(k.public_key().as_ref())),
            ),
            Inner::Ed25519(k) => ("ed25519", B64.encode(k.public_key().as_ref())),
        };
        format!("v=DKIM1; k={k}; p={p}")
    }

    /// Signs `data`, the canonicalized header fields (RFC 6376 3.7). For Ed25519 the SHA-256
    /// digest of `data` is what gets signed (RFC 8463 3).
    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DkimError> {
        match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                // PKCS#1 v1.5 signatures are deterministic; ring only uses the random numbers to
                // blind the private-key operation against timing attacks, so this draws nothing
                // that changes the output and core stays deterministic. ring's SecureRandom is
                // sealed, so the driver cannot supply a seeded one.
                let rng = ring::rand::SystemRandom::new();
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, data, &mut sig)
                    .map_err(|_| DkimError::Crypto("RSA signing failed".into()))?;
                Ok(sig)
            }
            Inner::Ed25519(k) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(k.sign(digest.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// Decodes the first PEM block labelled `label`.
pub fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    B64.decode(body.as_bytes()).ok()
}

/// Encodes `der` as a PEM block labelled `label`, lines of 64 characters.
pub fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// ---- A little DER, just enough for RSA public keys -------------------------------------------

/// The DER encoding of OID 1.2.840.113549.1.1.1 (rsaEncryption).
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Reads one DER element: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The PKCS#1 RSAPublicKey inside `der`, which is a SubjectPublicKeyInfo (what RFC 6376 3.6.1
/// specifies) or already an RSAPublicKey (what some domains publish nevertheless).
pub fn rsa_pkcs1_from_public_der(der: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "p= is not an RSA public key".to_string();
    let (tag, seq, rest) = der_element(der).ok_or_else(bad)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad());
    }
    let (first_tag, first, after) = der_element(seq).ok_or_else(bad)?;
    match first_tag {
        // SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING }.
        0x30 => {
            let (oid_tag, oid, _) = der_element(first).ok_or_else(bad)?;
            if oid_tag != 0x06 || oid != RSA_ENCRYPTION_OID {
                return Err("p= is not an RSA key (wrong algorithm)".into());
            }
            let (bits_tag, bits, end) = der_element(after).ok_or_else(bad)?;
            if bits_tag != 0x03 || !end.is_empty() {
                return Err(bad());
            }
            match bits.split_first() {
                Some((0, pkcs1)) => {
                    rsa_modulus_bits(pkcs1)?;
                    Ok(pkcs1.to_vec())
                }
                _ => Err(bad()),
            }
        }
        // RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }.
        0x02 => {
            rsa_modulus_bits(der)?;
            Ok(der.to_vec())
        }
        _ => Err(bad()),
    }
}

/// The modulus size in bits of a PKCS#1 RSAPublicKey.
fn rsa_modulus_bits(pkcs1: &[u8]) -> Result<usize, String> {
    let bad = || "p= is not an RSA public key".to_string();
    let (tag, seq, rest) = der_element(pkcs1).ok_or_else(bad)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad());
    }
    let (n_tag, n, after) = der_element(seq).ok_or_else(bad)?;
    let (e_tag, _, end) = der_element(after).ok_or_else(bad)?;
    if n_tag != 0x02 || e_tag != 0x02 || !end.is_empty() {
        return Err(bad());
    }
    let n: &[u8] = {
        let mut n = n;
        while let [0, rest @ ..] = n {
            n = rest;
        }
        n
    };
    match n.first() {
        None => Err(bad()),
        Some(&top) => Ok((n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)),
    }
}

fn der_header(tag: u8, len: usize, out: &mut Vec<u8>) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form `p=` holds.
pub fn spki_from_rsa_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let mut alg = Vec::new();
    der_header(0x06, RSA_ENCRYPTION_OID.len(), &mut alg);
    alg.extend_from_slice(RSA_ENCRYPTION_OID);
    alg.extend_from_slice(&[0x05, 0x00]);
    let mut body = Vec::new();
    der_header(0x30, alg.len(), &mut body);
    body.extend_from_slice(&alg);
    der_header(0x03, pkcs1.len() + 1, &mut body);
    body.push(0);
    body.extend_from_slice(pkcs1);
    let mut out = Vec::new();
    der_header(0x30, body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RSA test key of RFC 8463 A.2 (1024 bits).
    const RFC8463_RSA: &str = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

    #[test]
    fn rsa_spki_round_trips() {
        let rec = PublicKeyRecord::parse(RFC8463_RSA).unwrap();
        assert_eq!(rec.key_type, KeyType::Rsa);
        assert_eq!(rec.rsa_bits, 1024);
        let spki = spki_from_rsa_pkcs1(&rec.public_key);
        let p = RFC8463_RSA.split("p=").nth(1).unwrap();
        assert_eq!(B64.encode(spki), p);
        // A bare PKCS#1 key is accepted too.
        let bare = format!("p={}", B64.encode(&rec.public_key));
        assert_eq!(PublicKeyRecord::parse(&bare).unwrap().rsa_bits, 1024);
    }

    #[test]
    fn record_flags() {
        let rec = PublicKeyRecord::parse(
            "v=DKIM1; k=ed25519; h=sha1; t=y:s; s=other; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        )
        .unwrap();
        assert!(rec.strict && rec.testing);
        assert!(!rec.allows_sha256());
        assert!(!rec.allows_email());
        assert!(PublicKeyRecord::parse("v=DKIM1; p=").unwrap().is_revoked());
        assert!(
            PublicKeyRecord::parse("k=rsa; v=DKIM1; p=").is_err(),
            "v= not first"
        );
        assert!(PublicKeyRecord::parse("v=DKIM2; p=").is_err());
        assert!(PublicKeyRecord::parse("k=dsa; p=").is_err());
        assert!(
            PublicKeyRecord::parse("k=ed25519; p=AAAA").is_err(),
            "3-byte key"
        );
        assert!(PublicKeyRecord::parse("k=rsa; p=AAAA").is_err(), "not DER");
    }
}
