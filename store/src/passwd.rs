//! The user database `DATA_DIR/passwd`, in Dovecot's passwd-file format.
//!
//! One user a line, `user:password:uid:gid:gecos:home:shell:extra_fields`, of which only the
//! first two fields are required; blank lines and lines starting with `#` are comments. Petrel
//! writes `ADDRESS:{SCHEME}HASH` lines. A [`PasswdFile`] keeps every line in order, comments,
//! malformed lines, trailing fields and CRLF endings included, so rewriting a file Dovecot also
//! reads loses nothing.

use std::fmt;

/// Longest local part (before the `@`) [`validate_address`] accepts, in bytes.
const MAX_LOCAL_LEN: usize = 64;
/// Longest domain [`validate_address`] accepts, in bytes.
const MAX_DOMAIN_LEN: usize = 253;
/// Longest domain label [`validate_address`] accepts, in bytes.
const MAX_LABEL_LEN: usize = 63;

/// Why a passwd-file operation or an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswdError {
    /// [`PasswdFile::insert`]: a user with this address (compared case-insensitively) exists.
    AlreadyExists(String),
    /// [`PasswdFile::set_password`]: no user has this address.
    NotFound(String),
    /// The address is not one Petrel accepts as a user (see [`validate_address`]).
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The password field would corrupt the file (empty, or holds `:`, a line break or NUL).
    InvalidPasswordField(&'static str),
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::AlreadyExists(address) => write!(f, "user {address:?} already exists"),
            PasswdError::NotFound(address) => write!(f, "no such user {address:?}"),
            PasswdError::InvalidAddress { address, reason } => {
                write!(f, "invalid address {address:?}: {reason}")
            }
            PasswdError::InvalidPasswordField(reason) => {
                write!(f, "invalid password field: {reason}")
            }
        }
    }
}

impl std::error::Error for PasswdError {}

/// One user line of a passwd file: the address and the stored `{SCHEME}HASH` password field.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// The user name field exactly as in the file (Petrel writes lower-case addresses).
    pub address: String,
    /// The password field exactly as in the file, normally `{SCHEME}HASH`; see
    /// [`crate::password::verify_password`].
    pub password: String,
    /// Everything after the password field, verbatim: `:uid:gid:...` and a trailing `\r`.
    tail: String,
}

impl PasswdEntry {
    /// The fields after the password (`uid:gid:gecos:home:shell:extra_fields`), verbatim;
    /// empty for Petrel's own two-field lines.
    #[must_use]
    pub fn extra_fields(&self) -> &str {
        let tail = self.tail.strip_suffix('\r').unwrap_or(&self.tail);
        tail.strip_prefix(':').unwrap_or(tail)
    }
}

impl fmt::Debug for PasswdEntry {
    /// Never prints the password field (a `{PLAIN}` one would be the password itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdEntry")
            .field("address", &self.address)
            .field("password", &"<redacted>")
            .field("extra_fields", &self.extra_fields())
            .finish()
    }
}

/// One line of the file, without its `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A user line.
    User(PasswdEntry),
    /// A comment or blank line, kept verbatim.
    Comment(String),
    /// A line that is neither (no `:`, or no user name), kept verbatim, skipped for lookups.
    Malformed(String),
}

/// The parsed contents of a passwd file: every line in file order, so that
/// [`PasswdFile::to_text`] reproduces unchanged content byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswdFile {
    lines: Vec<Line>,
}

impl PasswdFile {
    /// Parses passwd-file text. Never fails: a malformed line is kept verbatim (and reported by
    /// [`PasswdFile::malformed_lines`]) but matches no lookup.
    #[must_use]
    pub fn parse(text: &str) -> PasswdFile {
        if text.is_empty() {
            return PasswdFile::default();
        }
        let body = text.strip_suffix('\n').unwrap_or(text);
        PasswdFile {
            lines: body.split('\n').map(parse_line).collect(),
        }
    }

    /// The file's text: every line followed by `\n` (so a non-empty result ends with a newline,
    /// and an empty file gives `""`). Byte-exact for content parsed from text that ended in `\n`.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::User(entry) => {
                    out.push_str(&entry.address);
                    out.push(':');
                    out.push_str(&entry.password);
                    out.push_str(&entry.tail);
                }
                Line::Comment(text) | Line::Malformed(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// The first user whose address equals `address` ignoring ASCII case (Dovecot also uses the
    /// first of duplicate lines).
    #[must_use]
    pub fn get(&self, address: &str) -> Option<&PasswdEntry> {
        self.users()
            .find(|entry| entry.address.eq_ignore_ascii_case(address))
    }

    /// Every user line in file order (duplicates included; comments and malformed lines not).
    pub fn users(&self) -> impl Iterator<Item = &PasswdEntry> {
        self.lines.iter().filter_map(|line| match line {
            Line::User(entry) => Some(entry),
            Line::Comment(_) | Line::Malformed(_) => None,
        })
    }

    /// 1-based numbers of the lines that are neither users nor comments, for a warning that
    /// names them without printing their (possibly secret) contents.
    pub fn malformed_lines(&self) -> impl Iterator<Item = usize> {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| matches!(line, Line::Malformed(_)))
            .map(|(index, _)| index + 1)
    }

    /// Appends the line `ADDRESS:PASSWORD_FIELD` for a new user. The address must pass
    /// [`validate_address`] and is stored lower-cased; `password_field` is normally
    /// [`crate::password::hash_password`]'s output.
    ///
    /// # Errors
    /// [`PasswdError::InvalidAddress`], [`PasswdError::InvalidPasswordField`], or
    /// [`PasswdError::AlreadyExists`] when a user with that address (any case) is present.
    pub fn insert(&mut self, address: &str, password_field: &str) -> Result<(), PasswdError> {
        let (local, domain) = validate_address(address)?;
        check_password_field(password_field)?;
        let address = format!("{local}@{domain}");
        if self.get(&address).is_some() {
            return Err(PasswdError::AlreadyExists(address));
        }
        self.lines.push(Line::User(PasswdEntry {
            address,
            password: password_field.to_owned(),
            tail: String::new(),
        }));
        Ok(())
    }

    /// Replaces the password field of the user `address` (matched as by [`PasswdFile::get`]),
    /// keeping the line's other fields and position.
    ///
    /// # Errors
    /// [`PasswdError::NotFound`] when there is no such user, [`PasswdError::InvalidPasswordField`]
    /// when the new field would corrupt the file.
    pub fn set_password(&mut self, address: &str, password_field: &str) -> Result<(), PasswdError> {
        check_password_field(password_field)?;
        let entry = self
            .lines
            .iter_mut()
            .find_map(|line| match line {
                Line::User(entry) if entry.address.eq_ignore_ascii_case(address) => Some(entry),
                _ => None,
            })
            .ok_or_else(|| PasswdError::NotFound(address.to_owned()))?;
        entry.password = password_field.to_owned();
        Ok(())
    }

    /// Removes every line of the user `address` (ASCII case ignored), duplicates included so no
    /// older line can take over; true if any was removed. Other lines are kept untouched.
    pub fn remove(&mut self, address: &str) -> bool {
        let before = self.lines.len();
        self.lines.retain(
            |line| !matches!(line, Line::User(entry) if entry.address.eq_ignore_ascii_case(address)),
        );
        self.lines.len() != before
    }
}

/// Classifies one line (without its `\n`).
fn parse_line(raw: &str) -> Line {
    let (content, cr) = match raw.strip_suffix('\r') {
        Some(content) => (content, "\r"),
        None => (raw, ""),
    };
    if content.trim().is_empty() || content.trim_start().starts_with('#') {
        return Line::Comment(raw.to_owned());
    }
    let Some((address, rest)) = content.split_once(':') else {
        return Line::Malformed(raw.to_owned());
    };
    if address.is_empty() {
        return Line::Malformed(raw.to_owned());
    }
    let (password, tail) = match rest.find(':') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    Line::User(PasswdEntry {
        address: address.to_owned(),
        password: password.to_owned(),
        tail: format!("{tail}{cr}"),
    })
}

/// Refuses a password field that would break the line structure of the file.
fn check_password_field(field: &str) -> Result<(), PasswdError> {
    if field.is_empty() {
        return Err(PasswdError::InvalidPasswordField("it is empty"));
    }
    if field.contains(':') {
        return Err(PasswdError::InvalidPasswordField("it contains ':'"));
    }
    if field.contains(['\n', '\r', '\0']) {
        return Err(PasswdError::InvalidPasswordField(
            "it contains a line break or NUL",
        ));
    }
    Ok(())
}

/// Checks that `address` may become a Petrel user, whose mail lives in
/// `DATA_DIR/mail/DOMAIN/LOCALPART/`, and returns `(local, domain)` lower-cased.
///
/// Accepted: exactly one `@`; a local part of 1..=64 bytes of ``[A-Za-z0-9!#$%&'*+=?^_`{|}~.-]``
/// that neither starts nor ends with `.` and has no `..`; a domain of 1..=253 bytes made of
/// labels of 1..=63 bytes of `[A-Za-z0-9-]` not starting or ending with `-`, without a trailing
/// dot. So neither part can be empty, `.`, `..`, or hold `/`, `:`, NUL, whitespace or non-ASCII.
///
/// # Errors
/// [`PasswdError::InvalidAddress`] naming the first problem found.
pub fn validate_address(address: &str) -> Result<(String, String), PasswdError> {
    let invalid = |reason: &'static str| PasswdError::InvalidAddress {
        address: address.to_owned(),
        reason,
    };
    if address.is_empty() {
        return Err(invalid("it is empty"));
    }
    if address.contains(':') {
        return Err(invalid("it contains ':'"));
    }
    if !address.is_ascii() {
        return Err(invalid("it contains non-ASCII characters"));
    }
    let mut parts = address.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("it must contain exactly one '@'"));
    };

    if local.is_empty() {
        return Err(invalid("the local part is empty"));
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(invalid("the local part is longer than 64 bytes"));
    }
    let local_char_ok = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+=?^_`{|}~.-".contains(&b);
    if !local.bytes().all(local_char_ok) {
        return Err(invalid(
            "the local part contains a character that is not allowed",
        ));
    }
    if local.starts_with('.') || local.ends_with('.') {
        return Err(invalid("the local part starts or ends with '.'"));
    }
    if local.contains("..") {
        return Err(invalid("the local part contains '..'"));
    }

    if domain.is_empty() {
        return Err(invalid("the domain is empty"));
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(invalid("the domain is longer than 253 bytes"));
    }
    if domain.ends_with('.') {
        return Err(invalid("the domain ends with '.'"));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(invalid("the domain has an empty label"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(invalid("a domain label is longer than 63 bytes"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "the domain contains a character that is not allowed",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a domain label starts or ends with '-'"));
        }
    }
    Ok((local.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT_FILE: &str = "\
# Dovecot passwd-file written by hand
#   user:password:uid:gid:gecos:home:shell:extra_fields

alice@example.com:{SHA512-CRYPT}$6$FRVdKQ.yQCvmMsjF$X3VLNIIg906L1XrJRRho7Co6CnvnpXOJVvRJyMyuV3pOMMqKMBeuXNgnO4eOPWUS093WQCm/lKp/l4MPpkPXT/
Bob@Example.COM:{PLAIN}hunter2:1000:1000:Bob B:/home/bob:/bin/false:userdb_quota_rule=*:storage=1G
   \t
  # indented comment
carol@example.org:{BLF-CRYPT}$2y$05$Y.soddaoRW4oz1tamVjpCOBTik1qTgbwE6puD2CYZhTsD4ZB/0zyi::::::\r
no-colon-line
:{PLAIN}nouser
dave@example.net:
alice@example.com:{PLAIN}duplicate-is-ignored
# caf\u{e9} \u{1F426}
";

    #[test]
    fn round_trips_byte_exact() {
        let file = PasswdFile::parse(DOVECOT_FILE);
        assert_eq!(file.to_text(), DOVECOT_FILE);
        assert_eq!(PasswdFile::parse("").to_text(), "");
        assert_eq!(PasswdFile::parse("\n").to_text(), "\n");
        assert_eq!(PasswdFile::parse("\n\n").to_text(), "\n\n");
        assert_eq!(PasswdFile::parse("a@b:x\r\n").to_text(), "a@b:x\r\n");
    }

    #[test]
    fn adds_the_missing_final_newline() {
        let file = PasswdFile::parse("a@b.c:{PLAIN}x\n# end");
        assert_eq!(file.to_text(), "a@b.c:{PLAIN}x\n# end\n");
        assert_eq!(file.get("a@b.c").unwrap().password, "{PLAIN}x");
    }

    #[test]
    fn lookups() {
        let file = PasswdFile::parse(DOVECOT_FILE);
        let alice = file.get("ALICE@example.com").unwrap();
        assert_eq!(alice.address, "alice@example.com");
        assert!(alice.password.starts_with("{SHA512-CRYPT}$6$FRVd"));
        assert!(alice.password.ends_with("kPXT/"));
        assert_eq!(alice.extra_fields(), "");

        let bob = file.get("bob@example.com").unwrap();
        assert_eq!(bob.address, "Bob@Example.COM");
        assert_eq!(bob.password, "{PLAIN}hunter2");
        assert_eq!(
            bob.extra_fields(),
            "1000:1000:Bob B:/home/bob:/bin/false:userdb_quota_rule=*:storage=1G"
        );

        // The CR of a CRLF line is not part of the password.
        let carol = file.get("carol@example.org").unwrap();
        assert!(carol.password.ends_with("/0zyi"));
        assert_eq!(carol.extra_fields(), ":::::");

        assert_eq!(file.get("dave@example.net").unwrap().password, "");
        assert!(file.get("no-colon-line").is_none());
        assert!(file.get("").is_none());
        assert!(file.get("nobody@example.com").is_none());
        assert!(file.get("alice@example.co").is_none());
        assert!(file.get("# Dovecot passwd-file written by hand").is_none());

        let order: Vec<&str> = file.users().map(|u| u.address.as_str()).collect();
        assert_eq!(
            order,
            [
                "alice@example.com",
                "Bob@Example.COM",
                "carol@example.org",
                "dave@example.net",
                "alice@example.com"
            ]
        );
        assert_eq!(file.malformed_lines().collect::<Vec<_>>(), [9, 10]);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let file = PasswdFile::parse("a@b.c:{PLAIN}topsecret:1:2\n");
        let shown = format!("{:?} {:?}", file.get("a@b.c").unwrap(), file);
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("a@b.c"), "{shown}");
    }

    #[test]
    fn insert_appends_normalised_lines() {
        let mut file = PasswdFile::parse(DOVECOT_FILE);
        file.insert("New.User@Example.COM", "{ARGON2ID}$argon2id$v=19$x")
            .unwrap();
        let expected = format!("{DOVECOT_FILE}new.user@example.com:{{ARGON2ID}}$argon2id$v=19$x\n");
        assert_eq!(file.to_text(), expected);
        assert_eq!(
            file.insert("new.user@example.com", "{PLAIN}x"),
            Err(PasswdError::AlreadyExists("new.user@example.com".into()))
        );
        assert_eq!(
            file.insert("BOB@example.com", "{PLAIN}x"),
            Err(PasswdError::AlreadyExists("bob@example.com".into()))
        );
        assert!(matches!(
            file.insert("../x@d", "{PLAIN}x"),
            Err(PasswdError::InvalidAddress { .. })
        ));
        for field in [
            "",
            "{PLAIN}a:b",
            "{PLAIN}a\nb@c:{PLAIN}x",
            "{PLAIN}a\r",
            "{PLAIN}\0",
        ] {
            assert!(
                matches!(
                    file.insert("x@y.z", field),
                    Err(PasswdError::InvalidPasswordField(_))
                ),
                "{field:?}"
            );
        }
        assert!(file.get("x@y.z").is_none());
        assert_eq!(file.to_text(), expected);

        let mut empty = PasswdFile::default();
        empty.insert("a@localhost", "{PLAIN}x").unwrap();
        assert_eq!(empty.to_text(), "a@localhost:{PLAIN}x\n");
    }

    #[test]
    fn set_password_keeps_everything_else() {
        let mut file = PasswdFile::parse(DOVECOT_FILE);
        file.set_password("BOB@example.com", "{PLAIN}new").unwrap();
        file.set_password("carol@example.org", "{PLAIN}c").unwrap();
        let expected = DOVECOT_FILE
            .replace(
                "Bob@Example.COM:{PLAIN}hunter2:",
                "Bob@Example.COM:{PLAIN}new:",
            )
            .replace(
                "carol@example.org:{BLF-CRYPT}$2y$05$Y.soddaoRW4oz1tamVjpCOBTik1qTgbwE6puD2CYZhTsD4ZB/0zyi:",
                "carol@example.org:{PLAIN}c:",
            );
        assert_ne!(expected, DOVECOT_FILE);
        assert_eq!(file.to_text(), expected);
        assert_eq!(
            file.set_password("nobody@example.com", "{PLAIN}x"),
            Err(PasswdError::NotFound("nobody@example.com".into()))
        );
        assert!(matches!(
            file.set_password("bob@example.com", "a:b"),
            Err(PasswdError::InvalidPasswordField(_))
        ));
        assert_eq!(file.get("bob@example.com").unwrap().password, "{PLAIN}new");
    }

    #[test]
    fn remove_takes_every_duplicate_and_nothing_else() {
        let mut file = PasswdFile::parse(DOVECOT_FILE);
        assert!(file.remove("Alice@Example.com"));
        assert!(file.get("alice@example.com").is_none());
        let expected: String = DOVECOT_FILE
            .split_inclusive('\n')
            .filter(|line| !line.starts_with("alice@example.com:"))
            .collect();
        assert_eq!(file.to_text(), expected);
        assert!(!file.remove("alice@example.com"));
        assert!(!file.remove("no-colon-line"));
        assert_eq!(file.to_text(), expected);
    }

    #[test]
    fn valid_addresses_are_lowercased() {
        let ok = |a: &str| validate_address(a).unwrap();
        assert_eq!(
            ok("Alice@Example.COM"),
            ("alice".into(), "example.com".into())
        );
        assert_eq!(ok("a@localhost"), ("a".into(), "localhost".into()));
        assert_eq!(
            ok("first.last+tag@mail-1.example.co.uk"),
            ("first.last+tag".into(), "mail-1.example.co.uk".into())
        );
        assert_eq!(
            ok("!#$%&'*+=?^_`{|}~-@d"),
            ("!#$%&'*+=?^_`{|}~-".into(), "d".into())
        );
        let local64 = "a".repeat(64);
        assert_eq!(ok(&format!("{local64}@d")).0, local64);
        let label63 = "b".repeat(63);
        let domain253 = format!("{label63}.{label63}.{label63}.{}", "c".repeat(61));
        assert_eq!(domain253.len(), 253);
        assert_eq!(ok(&format!("a@{domain253}")).1, domain253);
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let label63 = "b".repeat(63);
        let domain254 = format!("{label63}.{label63}.{label63}.{}", "c".repeat(62));
        let long = format!("{}@{}", "a".repeat(150), "d".repeat(149));
        assert_eq!(long.len(), 300);
        let cases = [
            "",
            "@",
            "a",
            "a@",
            "@d",
            "a@b@c",
            "../x@d",
            "..@d",
            ".@d",
            "a/b@d",
            "a\\b@d",
            "a@../d",
            "a@d/e",
            "a@.",
            "a@..",
            ".a@d",
            "a.@d",
            "a..b@d",
            "a@d:x",
            "a:b@d",
            "a b@d",
            "a\t@d",
            "a\n@d",
            "a\0@d",
            "a@d\0",
            "a@d.",
            "a@.d",
            "a@d..e",
            "a@-d",
            "a@d-",
            "a@d_e",
            "a@[127.0.0.1]",
            "\"a\"@d",
            "a(b)@d",
            "a,b@d",
            "<a>@d",
            "é@d",
            "a@dé.com",
            "a@xn--d-\u{301}.com",
            "\u{1F426}@d",
            "ａ@d",
        ];
        for address in cases {
            let result = validate_address(address);
            assert!(
                matches!(result, Err(PasswdError::InvalidAddress { .. })),
                "{address:?} gave {result:?}"
            );
        }
        for address in [
            long.as_str(),
            &format!("{}@d", "a".repeat(65)),
            &format!("a@{}", "b".repeat(64)),
            &format!("a@{domain254}"),
        ] {
            assert!(validate_address(address).is_err(), "{address}");
        }
    }

    #[test]
    fn errors_display_on_one_line() {
        let errors = [
            validate_address("a\nb@d").unwrap_err(),
            PasswdError::AlreadyExists("a@b".into()),
            PasswdError::NotFound("a@b".into()),
            PasswdError::InvalidPasswordField("it contains ':'"),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n') && !text.is_empty(), "{text:?}");
        }
        assert_eq!(
            validate_address("a..b@d").unwrap_err().to_string(),
            "invalid address \"a..b@d\": the local part contains '..'"
        );
    }

    #[test]
    fn garbage_never_panics_and_round_trips() {
        let pieces = [
            "a", "@", ":", "#", "\n", "\r", "\r\n", " ", "{PLAIN}", "x@y", "\u{e9}", "\0", "::",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bits = state;
            for _ in 0..16 {
                text.push_str(pieces[usize::try_from(bits % 13).unwrap()]);
                bits /= 13;
            }
            let mut file = PasswdFile::parse(&text);
            let out = file.to_text();
            if text.is_empty() || text.ends_with('\n') {
                assert_eq!(out, text);
            } else {
                assert_eq!(out, format!("{text}\n"));
            }
            let _ = file.get("x@y");
            let _ = file.remove("a");
            file.remove("x@y");
            file.insert("x@y", "{PLAIN}p").unwrap();
            assert_eq!(
                file.get("X@Y").map(|e| e.password.as_str()),
                Some("{PLAIN}p")
            );
            assert_eq!(PasswdFile::parse(&file.to_text()), file);
            let _ = validate_address(&text);
        }
    }
}
