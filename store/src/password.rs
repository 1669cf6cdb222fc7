//! Password hashing and verification in Dovecot's `{SCHEME}value` notation.
//!
//! New hashes are always `{ARGON2ID}` PHC strings, exactly what `doveadm pw -s ARGON2ID` writes
//! and verifies. Verification accepts the schemes a Dovecot `passwd-file` commonly holds:
//! `{ARGON2ID}`, `{ARGON2I}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{BLF-CRYPT}`, `{CRYPT}`,
//! `{PLAIN}`/`{CLEAR}`, and a bare value without a prefix (treated as `{CRYPT}`, Dovecot's
//! default scheme for passwd-files). Like Dovecot (which hands them to libc `crypt()`), `{CRYPT}`,
//! `{SHA512-CRYPT}`, `{SHA256-CRYPT}` and `{DES-CRYPT}` dispatch on the value's own `$id$` prefix,
//! so `{CRYPT}$6$...` and `{SHA512-CRYPT}$6$...` verify alike; `{BLF-CRYPT}` wants a `$2?$` value.
//! Beyond Dovecot, a bare or `{CRYPT}` value may also be an `$argon2id$`/`$argon2i$` PHC string.
//!
//! Verification never panics, whatever the stored string holds. Comparisons of computed hashes
//! are constant-time (the argon2, sha-crypt and bcrypt crates' own comparisons; `{PLAIN}` uses a
//! local constant-time byte comparison). The work factor of a stored hash (rounds, cost) is taken
//! as given, because the passwd file is trusted administrator data; only Argon2 memory is capped
//! ([`MAX_ARGON2_MEMORY_KIB`]) so a bad line cannot get the process killed for memory.

use argon2::password_hash::{Error as HashError, PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use sha_crypt::ShaCrypt;

/// Largest Argon2 memory cost (in KiB) a stored hash may ask for: 1 GiB. Dovecot's default is
/// 64 MiB and ours 19 MiB; a stored hash above this verifies as [`Verification::Malformed`].
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;

/// The outcome of checking a password against a stored `{SCHEME}value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The password is the one the stored value was made from.
    Match,
    /// The stored value is well-formed and the password is not the right one.
    Mismatch,
    /// The stored value uses a scheme Petrel cannot verify; holds its upper-case name
    /// (e.g. `"MD5-CRYPT"`, `"SSHA512"`, `"DES-CRYPT"`).
    Unsupported(String),
    /// The stored value is not a well-formed hash of its scheme (or is empty).
    Malformed,
}

impl Verification {
    /// True only for [`Verification::Match`]: the one outcome that may grant access.
    #[must_use]
    pub fn is_match(&self) -> bool {
        matches!(self, Verification::Match)
    }
}

/// Hashes `password` for storage as `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`:
/// Argon2id with the argon2 crate's default (OWASP) parameters and a fresh 16-byte salt from the
/// OS random generator. Dovecot (`doveadm pw -t`) verifies the result.
///
/// # Panics
/// Only if the operating system's random generator fails, which Linux's `getrandom` does not.
#[must_use]
pub fn hash_password(password: &str) -> String {
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .expect("Argon2id with default parameters fails only if the OS random generator fails");
    format!("{{ARGON2ID}}{hash}")
}

/// Checks `password` against a stored `{SCHEME}value` (or a bare crypt value); scheme names are
/// case-insensitive. Never panics; only [`Verification::Match`] means the password is right.
#[must_use]
pub fn verify_password(stored: &str, password: &[u8]) -> Verification {
    let (scheme, value) = match split_scheme(stored) {
        Some(parts) => parts,
        None => return Verification::Malformed,
    };
    let Some(scheme) = scheme else {
        return verify_crypt(value, password, "CRYPT");
    };
    let scheme = scheme.to_ascii_uppercase();
    match scheme.as_str() {
        "ARGON2ID" | "ARGON2I" => verify_argon2(value, password),
        // Dovecot checks these with libc crypt(), which goes by the value's own prefix...
        "CRYPT" | "SHA512-CRYPT" | "SHA256-CRYPT" | "DES-CRYPT" => {
            verify_crypt(value, password, &scheme)
        }
        // ...except BLF-CRYPT, which first insists on a bcrypt value.
        "BLF-CRYPT" if value.starts_with("$2") => verify_crypt(value, password, &scheme),
        "BLF-CRYPT" => Verification::Malformed,
        "PLAIN" | "CLEAR" | "CLEARTEXT" => {
            if constant_time_eq(value.as_bytes(), password) {
                Verification::Match
            } else {
                Verification::Mismatch
            }
        }
        _ => Verification::Unsupported(scheme),
    }
}

/// Splits `{SCHEME}value` into its parts; a value with no leading `{` has no scheme. `None` when
/// the prefix is unterminated or the scheme name is empty, over-long or has odd characters.
fn split_scheme(stored: &str) -> Option<(Option<&str>, &str)> {
    let Some(rest) = stored.strip_prefix('{') else {
        return Some((None, stored));
    };
    let (scheme, value) = rest.split_once('}')?;
    let well_formed = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    well_formed.then_some((Some(scheme), value))
}

/// Verifies a value of the crypt family by its own `$id$` prefix, as libc `crypt()` does for
/// Dovecot. `scheme` names the value in [`Verification::Unsupported`] when nothing matches.
fn verify_crypt(value: &str, password: &[u8], scheme: &str) -> Verification {
    if value.starts_with("$6$") || value.starts_with("$5$") {
        // The digest is 86 (SHA-512) or 43 (SHA-256) crypt-base64 characters; the crate would
        // call a shorter one a mismatch rather than malformed.
        let digest_len = if value.starts_with("$6$") { 86 } else { 43 };
        if value.rsplit('$').next().map(str::len) != Some(digest_len) {
            return Verification::Malformed;
        }
        return from_hash_result(ShaCrypt::default().verify_password(password, value));
    }
    if value.starts_with("$2y$") || value.starts_with("$2b$") || value.starts_with("$2a$") {
        return match bcrypt::verify(password, value) {
            Ok(true) => Verification::Match,
            Ok(false) => Verification::Mismatch,
            Err(error) => {
                tracing::debug!(%error, "malformed bcrypt hash");
                Verification::Malformed
            }
        };
    }
    if value.starts_with("$argon2id$") || value.starts_with("$argon2i$") {
        return verify_argon2(value, password);
    }
    let unsupported = |name: &str| Verification::Unsupported(name.to_owned());
    if value.starts_with("$2x$") {
        // crypt_blowfish's deliberately buggy variant; the bcrypt crate does not reproduce it.
        unsupported("BLF-CRYPT-2X")
    } else if value.starts_with("$1$") {
        unsupported("MD5-CRYPT")
    } else if value.starts_with("$y$") || value.starts_with("$gy$") {
        unsupported("YESCRYPT")
    } else if value.starts_with("$7$") {
        unsupported("SCRYPT")
    } else if value.starts_with("$argon2d$") {
        unsupported("ARGON2D")
    } else if value.starts_with('$') && value.len() > 1 {
        unsupported(scheme)
    } else if value.len() == 13 && value.bytes().all(is_crypt_b64) {
        unsupported("DES-CRYPT")
    } else if value.len() == 20 && value.starts_with('_') && value.bytes().skip(1).all(is_crypt_b64)
    {
        unsupported("BSDI-CRYPT")
    } else {
        Verification::Malformed
    }
}

/// Characters of crypt's base64 alphabet `[./0-9A-Za-z]`.
fn is_crypt_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// Verifies an Argon2i or Argon2id PHC string (what libsodium, hence Dovecot, writes).
fn verify_argon2(value: &str, password: &[u8]) -> Verification {
    let hash = match PasswordHash::new(value) {
        Ok(hash) => hash,
        Err(error) => {
            tracing::debug!(%error, "malformed Argon2 PHC string");
            return Verification::Malformed;
        }
    };
    if hash.salt.is_none() || hash.hash.is_none() {
        // The crate calls a hash without salt or output a mismatch; it is malformed.
        return Verification::Malformed;
    }
    match hash.algorithm.as_str() {
        "argon2id" | "argon2i" => {}
        "argon2d" => return Verification::Unsupported("ARGON2D".to_owned()),
        _ => return Verification::Malformed,
    }
    match argon2::Params::try_from(&hash) {
        Ok(params) if params.m_cost() <= MAX_ARGON2_MEMORY_KIB => {}
        Ok(params) => {
            tracing::debug!(
                m_cost = params.m_cost(),
                "Argon2 hash asks for too much memory"
            );
            return Verification::Malformed;
        }
        Err(error) => {
            tracing::debug!(%error, "malformed Argon2 parameters");
            return Verification::Malformed;
        }
    }
    from_hash_result(Argon2::default().verify_password(password, &hash))
}

/// Maps a `password-hash` verification result onto [`Verification`].
fn from_hash_result(result: Result<(), HashError>) -> Verification {
    match result {
        Ok(()) => Verification::Match,
        Err(HashError::PasswordInvalid) => Verification::Mismatch,
        Err(error) => {
            tracing::debug!(%error, "malformed password hash");
            Verification::Malformed
        }
    }
}

/// Compares `expected` (stored) with `given` in time that depends only on `expected.len()`.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = expected.len() ^ given.len();
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= usize::from(e ^ g);
    }
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors written by Dovecot 2.3.19.1 (Debian 12 dovecot-core) with
    // `doveadm pw -s SCHEME [-r ROUNDS] -p PASSWORD`. They are public test data, not secrets.
    const DOVECOT_SHA512: &str = "{SHA512-CRYPT}$6$FRVdKQ.yQCvmMsjF$X3VLNIIg906L1XrJRRho7Co6CnvnpXOJVvRJyMyuV3pOMMqKMBeuXNgnO4eOPWUS093WQCm/lKp/l4MPpkPXT/";
    const DOVECOT_SHA512_ROUNDS: &str = "{SHA512-CRYPT}$6$rounds=10000$JSpAfOces7lskh59$LKSSJqqiieEgeULr8yCjptIRX8L7eO6w.1QIuZT20DhMvXiMm/TNgd38m5kN.O.Yint8kOnCSxdpJisCxI9xh/";
    const DOVECOT_SHA256: &str =
        "{SHA256-CRYPT}$5$HtDCkQjXbX2ii8nU$gN7wnPFBFa8GfZ5zjFiYSsf/aA1AJEo9mTF9F1w.lE9";
    const DOVECOT_SHA256_ROUNDS: &str =
        "{SHA256-CRYPT}$5$rounds=7000$yRXsk4iQSWKHNtT6$X7Bm7BADjejGT5QO0rB3FqkmdTT7qMXyIMiRBdo6wX4";
    const DOVECOT_BLF: &str =
        "{BLF-CRYPT}$2y$05$Y.soddaoRW4oz1tamVjpCOBTik1qTgbwE6puD2CYZhTsD4ZB/0zyi";
    const DOVECOT_BLF_COST6: &str =
        "{BLF-CRYPT}$2y$06$o8R5EUcEdMZ4mwcXY8BJsefsgva7RY8/y21p/HUlPDb/dZ2TfJRhS";
    const DOVECOT_CRYPT: &str =
        "{CRYPT}$2y$05$tG7wh/lGxK3YV1.fLmxkw.yMIzWfyHY.eLQC6shY4zZe8qMDRxraK";
    const DOVECOT_ARGON2ID: &str = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$fphYr4SAIRKWDHZaY4cubg$SWZa+7UKTbsbHMgmhNW9vGEgmtOoR3ZqBIk3GbUJwC8";
    const DOVECOT_ARGON2I: &str = "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$CXEXGSSwG6I3nVJDP17PUg$Eqw4UgMc4Dvibb124nnTU4l2eUNSsZIgd7m+r+Op0UU";
    const DOVECOT_MD5_CRYPT: &str = "{MD5-CRYPT}$1$yrN4F3Ew$VncQvbo0AGcXpf9rGSm7D0";
    const DOVECOT_DES_CRYPT: &str = "{DES-CRYPT}vdIB/fBEqRdN6";
    const DOVECOT_SSHA512: &str = "{SSHA512}U3Pp3Ql+sqhoJn/z1+JpQKbLHV7DjOUHgK16gh2ey29cbcwo3LWeo1KI1o9eIiyJ097BFZ3NcAc8u3QeuU6xkLwFRUo=";
    // Password "pässwörd" (UTF-8).
    const DOVECOT_SHA512_UTF8: &str = "{SHA512-CRYPT}$6$bPHZ9EHawSyOt/Ti$BR1P256UloN0IlOuv4g3zQaGnEFaxa/A4tnvGDOHWbMlqiy/LBVczbx14RUeJb3W7aB/G9l/LQTvqFi/a6krr1";
    const DOVECOT_ARGON2ID_UTF8: &str = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$jmiuiKObYVA2/o89TcGMBA$s3YhkOWKqPeyi9rPs6qHOTGYEDWyu9m0Kq7DhaN1EJc";
    // Password: 80 times "a" (bcrypt only uses the first 72 bytes, as libc crypt does).
    const DOVECOT_BLF_LONG: &str =
        "{BLF-CRYPT}$2y$05$ygdEP0c/8gt1k1cfTLozvuldskFh8awKN7xeo1gktbUqy3seaIw0m";
    // Cheap vectors (`-r 1000`, `-r 4`: minimum work factors), password "secret".
    const CHEAP_SHA512: &str = "{SHA512-CRYPT}$6$rounds=1000$gO2OJjREgbqiqmmQ$9y44a3kipMHVu022bjT60PND4kTLqSPgJqF4jlQgCUNDmC0kONJrhcA/N5v3W9uxIPy2dljfO2tPYDOChxXGL/";
    const CHEAP_BLF: &str =
        "{BLF-CRYPT}$2y$04$cN7aMcx0S9p7Z4jyrvAHZ.TCHEMRm8qjM4r7X4Lv3n7XYAXN2yVv6";

    fn assert_match_and_mismatch(stored: &str, right: &[u8]) {
        assert_eq!(
            verify_password(stored, right),
            Verification::Match,
            "{stored}"
        );
        let mut wrong = right.to_vec();
        wrong.push(b'x');
        assert_eq!(
            verify_password(stored, &wrong),
            Verification::Mismatch,
            "{stored}"
        );
        assert_eq!(
            verify_password(stored, b""),
            Verification::Mismatch,
            "{stored}"
        );
    }

    #[test]
    fn dovecot_sha_crypt_vectors() {
        for stored in [
            DOVECOT_SHA512,
            DOVECOT_SHA512_ROUNDS,
            DOVECOT_SHA256,
            DOVECOT_SHA256_ROUNDS,
            CHEAP_SHA512,
        ] {
            assert_match_and_mismatch(stored, b"secret");
            assert_eq!(verify_password(stored, b"Secret"), Verification::Mismatch);
        }
        assert_match_and_mismatch(DOVECOT_SHA512_UTF8, "pässwörd".as_bytes());
        assert_eq!(
            verify_password(DOVECOT_SHA512_UTF8, "passwörd".as_bytes()),
            Verification::Mismatch
        );
    }

    #[test]
    fn dovecot_bcrypt_vectors() {
        for stored in [DOVECOT_BLF, DOVECOT_BLF_COST6, DOVECOT_CRYPT, CHEAP_BLF] {
            assert_match_and_mismatch(stored, b"secret");
        }
        // `$2a$` and `$2b$` compute the same as `$2y$` for short ASCII passwords.
        let bare = DOVECOT_BLF.strip_prefix("{BLF-CRYPT}").unwrap();
        for version in ["$2a$", "$2b$"] {
            let stored = format!("{{BLF-CRYPT}}{version}{}", &bare[4..]);
            assert_match_and_mismatch(&stored, b"secret");
        }
        // bcrypt truncates at 72 bytes, exactly like libc crypt in Dovecot.
        let long = [b'a'; 80];
        assert_eq!(
            verify_password(DOVECOT_BLF_LONG, &long),
            Verification::Match
        );
        let mut same_prefix = [b'a'; 80];
        same_prefix[75] = b'b';
        assert_eq!(
            verify_password(DOVECOT_BLF_LONG, &same_prefix),
            Verification::Match
        );
        assert_eq!(
            verify_password(DOVECOT_BLF_LONG, &long[..71]),
            Verification::Mismatch
        );
    }

    #[test]
    fn dovecot_argon2_vectors() {
        assert_match_and_mismatch(DOVECOT_ARGON2ID, b"secret");
        assert_match_and_mismatch(DOVECOT_ARGON2I, b"secret");
        assert_eq!(
            verify_password(DOVECOT_ARGON2ID_UTF8, "pässwörd".as_bytes()),
            Verification::Match
        );
        assert_eq!(
            verify_password(DOVECOT_ARGON2ID_UTF8, "passwörd".as_bytes()),
            Verification::Mismatch
        );
    }

    #[test]
    fn bare_values_and_crypt_sniff_by_prefix() {
        for stored in [
            DOVECOT_SHA512,
            DOVECOT_SHA256_ROUNDS,
            DOVECOT_BLF,
            DOVECOT_ARGON2ID,
        ] {
            let bare = &stored[stored.find('}').unwrap() + 1..];
            assert_match_and_mismatch(bare, b"secret");
            assert_match_and_mismatch(&format!("{{CRYPT}}{bare}"), b"secret");
        }
        // As in Dovecot 2.3 (checked with `doveadm pw -t`): the SHA-crypt names take any crypt
        // value, BLF-CRYPT only a bcrypt one.
        let sha512 = DOVECOT_SHA512.strip_prefix("{SHA512-CRYPT}").unwrap();
        assert_match_and_mismatch(&format!("{{SHA256-CRYPT}}{sha512}"), b"secret");
        let blf = DOVECOT_BLF.strip_prefix("{BLF-CRYPT}").unwrap();
        assert_match_and_mismatch(&format!("{{SHA512-CRYPT}}{blf}"), b"secret");
        assert_eq!(
            verify_password(&format!("{{BLF-CRYPT}}{sha512}"), b"secret"),
            Verification::Malformed
        );
        assert_eq!(
            verify_password(&format!("{{MD5-CRYPT}}{sha512}"), b"secret"),
            Verification::Unsupported("MD5-CRYPT".into())
        );
    }

    #[test]
    fn scheme_names_are_case_insensitive() {
        let lower = DOVECOT_SHA512.replace("{SHA512-CRYPT}", "{sha512-crypt}");
        assert_match_and_mismatch(&lower, b"secret");
        let mixed = DOVECOT_ARGON2ID.replace("{ARGON2ID}", "{Argon2Id}");
        assert_match_and_mismatch(&mixed, b"secret");
        assert_match_and_mismatch("{plain}secret", b"secret");
    }

    #[test]
    fn plain_and_clear() {
        for stored in ["{PLAIN}secret", "{CLEAR}secret", "{CLEARTEXT}secret"] {
            assert_match_and_mismatch(stored, b"secret");
            assert_eq!(verify_password(stored, b"secre"), Verification::Mismatch);
            assert_eq!(verify_password(stored, b"Secret"), Verification::Mismatch);
        }
        assert_eq!(verify_password("{PLAIN}", b""), Verification::Match);
        assert_eq!(verify_password("{PLAIN}", b"x"), Verification::Mismatch);
        // A password with `}` or `{` inside is compared whole.
        assert_eq!(verify_password("{PLAIN}a}b{", b"a}b{"), Verification::Match);
    }

    #[test]
    fn constant_time_eq_compares_all_bytes_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        // Lengths that differ by a multiple of 256 must still differ.
        assert!(!constant_time_eq(&[0; 256], b""));
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let unsupported = |s: &str| Verification::Unsupported(s.to_owned());
        assert_eq!(
            verify_password(DOVECOT_MD5_CRYPT, b"secret"),
            unsupported("MD5-CRYPT")
        );
        assert_eq!(
            verify_password(DOVECOT_DES_CRYPT, b"secret"),
            unsupported("DES-CRYPT")
        );
        assert_eq!(
            verify_password("vdIB/fBEqRdN6", b"secret"),
            unsupported("DES-CRYPT")
        );
        assert_eq!(
            verify_password(DOVECOT_SSHA512, b"secret"),
            unsupported("SSHA512")
        );
        assert_eq!(
            verify_password("{cram-md5}abcd", b"secret"),
            unsupported("CRAM-MD5")
        );
        assert_eq!(
            verify_password("$y$j9T$abc$def", b"secret"),
            unsupported("YESCRYPT")
        );
        assert_eq!(
            verify_password("$9$abc$def", b"secret"),
            unsupported("CRYPT")
        );
        assert_eq!(
            verify_password("{SHA512-CRYPT}$9$abc$def", b"secret"),
            unsupported("SHA512-CRYPT")
        );
        let argon2d = "$argon2d$v=19$m=65536,t=3,p=1$fphYr4SAIRKWDHZaY4cubg$SWZa+7UKTbsbHMgmhNW9vGEgmtOoR3ZqBIk3GbUJwC8";
        assert_eq!(verify_password(argon2d, b"secret"), unsupported("ARGON2D"));
        let two_x = DOVECOT_BLF.replace("$2y$", "$2x$");
        assert_eq!(
            verify_password(&two_x, b"secret"),
            unsupported("BLF-CRYPT-2X")
        );
    }

    #[test]
    fn malformed_values() {
        let truncated_sha = &DOVECOT_SHA512[..DOVECOT_SHA512.len() - 10];
        let truncated_blf = &DOVECOT_BLF[..DOVECOT_BLF.len() - 1];
        for stored in [
            "",
            "{",
            "{}",
            "{}secret",
            "{PLAIN",
            "{PLA IN}x",
            "{SHA512-CRYPT}",
            "{SHA512-CRYPT}$6$",
            "{SHA512-CRYPT}$6$salt",
            "{SHA512-CRYPT}$6$salt$",
            "{SHA512-CRYPT}$6$sa:lt$hash",
            truncated_sha,
            truncated_blf,
            "{BLF-CRYPT}$2y$03$Y.soddaoRW4oz1tamVjpCOBTik1qTgbwE6puD2CYZhTsD4ZB/0zyi",
            "{ARGON2ID}",
            "{ARGON2ID}secret",
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1",
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$fphYr4SAIRKWDHZaY4cubg$!!",
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1,x=2$fphYr4SAIRKWDHZaY4cubg$SWZa+7UKTbsbHMgmhNW9vGEgmtOoR3ZqBIk3GbUJwC8",
            "{ARGON2ID}$6$FRVdKQ.yQCvmMsjF$X3VLNIIg906L1XrJRRho7Co6CnvnpXOJVvRJyMyuV3pOMMqKMBeuXNgnO4eOPWUS093WQCm/lKp/l4MPpkPXT/",
            "{CRYPT}",
            "{CRYPT}secret",
            "secret",
            "$",
        ] {
            assert_eq!(
                verify_password(stored, b"secret"),
                Verification::Malformed,
                "{stored:?}"
            );
        }
    }

    #[test]
    fn argon2_memory_is_capped() {
        // 4 GiB would be allocated before comparing; refuse instead, and fast.
        let greedy = "{ARGON2ID}$argon2id$v=19$m=4194304,t=1,p=1$fphYr4SAIRKWDHZaY4cubg$SWZa+7UKTbsbHMgmhNW9vGEgmtOoR3ZqBIk3GbUJwC8";
        assert_eq!(verify_password(greedy, b"secret"), Verification::Malformed);
    }

    #[test]
    fn new_hashes_are_dovecot_argon2id_and_verify() {
        let hash = hash_password("secret");
        assert!(
            hash.starts_with("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        // salt (16 bytes) and output (32 bytes) in unpadded standard base64.
        let fields: Vec<&str> = hash.split('$').collect();
        assert_eq!(fields.len(), 6, "{hash}");
        assert_eq!(fields[4].len(), 22);
        assert_eq!(fields[5].len(), 43);
        assert_match_and_mismatch(&hash, b"secret");
        assert_ne!(hash, hash_password("secret"), "salts must be random");
        let unicode = hash_password("pässwörd");
        assert!(verify_password(&unicode, "pässwörd".as_bytes()).is_match());
        assert!(!verify_password(&unicode, b"passw\xc3\xb6rd").is_match());
    }

    #[test]
    fn is_match_only_for_match() {
        assert!(Verification::Match.is_match());
        assert!(!Verification::Mismatch.is_match());
        assert!(!Verification::Malformed.is_match());
        assert!(!Verification::Unsupported("X".into()).is_match());
    }

    /// xorshift64*: a deterministic generator so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }

    #[test]
    fn garbage_never_panics_and_never_matches() {
        // A cheap Argon2id hash (minimum memory) of "secret", made with the crate.
        let cheap_argon2 = {
            let params = argon2::Params::new(8, 1, 1, None).unwrap();
            let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            format!("{{ARGON2ID}}{}", argon.hash_password(b"secret").unwrap())
        };
        assert_eq!(
            verify_password(&cheap_argon2, b"secret"),
            Verification::Match
        );
        let seeds = [
            CHEAP_SHA512,
            CHEAP_BLF,
            cheap_argon2.as_str(),
            "{SHA256-CRYPT}$5$rounds=1000$abcdefgh$",
            "{PLAIN}secret",
            "$argon2i$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        ];
        // Mutations use no digits, so a cheap work factor cannot become an expensive one.
        let alphabet: Vec<char> = "${}=,:.$/+-_aAzZybrounds=argonidvmtp\0\u{e9}\u{1F600} \n"
            .chars()
            .collect();
        let garbage: Vec<char> = "${}=,:.$/+-_0123456789aAzZ2ybrounds=argon2idvmtp\0\u{e9} \n"
            .chars()
            .collect();
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let mut checked = 0;
        for round in 0..3000 {
            let seed: Vec<char> = seeds[round % seeds.len()].chars().collect();
            let mut s: Vec<char> = match rng.below(4) {
                // Truncate.
                0 => seed[..rng.below(seed.len() + 1)].to_vec(),
                // Replace a few characters.
                1 => {
                    let mut s = seed.clone();
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(s.len());
                        s[i] = alphabet[rng.below(alphabet.len())];
                    }
                    s
                }
                // Insert a character.
                2 => {
                    let mut s = seed.clone();
                    let i = rng.below(s.len() + 1);
                    s.insert(i, alphabet[rng.below(alphabet.len())]);
                    s
                }
                // Pure garbage from the alphabet.
                _ => (0..rng.below(80))
                    .map(|_| garbage[rng.below(garbage.len())])
                    .collect(),
            };
            if rng.below(8) == 0 {
                s.insert(0, '{');
            }
            let stored: String = s.into_iter().collect();
            let result = verify_password(&stored, b"not the password");
            assert_ne!(result, Verification::Match, "{stored:?}");
            checked += 1;
        }
        assert_eq!(checked, 3000);
    }
}
