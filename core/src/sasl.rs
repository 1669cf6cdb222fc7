//! SASL mechanisms PLAIN (RFC 4616) and LOGIN, as used by SMTP AUTH (RFC 4954), IMAP and POP3.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Largest base64 SASL response accepted (RFC 4954 4: 12288 octets for the AUTH line).
pub const MAX_RESPONSE: usize = 12_288;

/// Credentials a client offered.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authentication identity.
    pub username: String,
    /// The password.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a SASL exchange failed before the password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, or not the mechanism's format.
    Malformed,
    /// The authorization identity differs from the authentication identity (not supported).
    AuthzidMismatch,
}

/// Decodes a client's base64 response; `*` is a cancel and `=` an empty response.
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim_end_matches(' ');
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    if line.len() > MAX_RESPONSE {
        return Err(SaslError::Malformed);
    }
    STANDARD.decode(line).map_err(|_| SaslError::Malformed)
}

/// Encodes a server challenge.
pub fn encode_challenge(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Parses the PLAIN message `authzid NUL authcid NUL passwd`.
pub fn parse_plain(message: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let username = String::from_utf8(authcid.to_vec()).map_err(|_| SaslError::Malformed)?;
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(Credentials {
        username,
        password: password.to_vec(),
    })
}

/// Parses a LOGIN username.
pub fn parse_login_username(message: &[u8]) -> Result<String, SaslError> {
    match String::from_utf8(message.to_vec()) {
        Ok(u) if !u.is_empty() && !u.contains('\0') => Ok(u),
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let raw = decode_response("AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=").unwrap();
        let c = parse_plain(&raw).unwrap();
        assert_eq!(c.username, "alice@example.test");
        assert_eq!(c.password, b"secret");
        assert_eq!(
            parse_plain(b"bob\0alice\0pw"),
            Err(SaslError::AuthzidMismatch)
        );
        assert!(parse_plain(b"alice\0pw").is_err());
        assert!(parse_plain(b"\0alice\0").is_err());
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("!!"), Err(SaslError::Malformed));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
