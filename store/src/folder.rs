//! Folders of a user's Maildir++: names as clients see them (`INBOX`, `Lists/Rust`, `Entwürfe`)
//! mapped onto directories as Dovecot lays them out (`.Lists.Rust`, `.Entw&APw-rfe`), and IMAP
//! flags and keywords mapped onto Maildir file-name flags and `dovecot-keywords`.

use crate::fs::{FileSystem, write_atomic};
use crate::maildir;
use petrel_core::mutf7;
use std::io;
use std::path::{Path, PathBuf};

/// Longest folder name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Keywords one folder can hold: Maildir keeps them as the letters `a` to `z`.
pub const MAX_KEYWORDS: usize = 26;
/// The file mapping keyword letters to names, as Dovecot writes it.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// True for the name of the INBOX (case-insensitive, as IMAP says).
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// The directory of `folder` in `user`'s Maildir: the root for INBOX (or `None`), `.A.B` for
/// `A/B`, with non-ASCII names in modified UTF-7 as Dovecot stores them. Names that could leave
/// the Maildir or clash with its layout are refused with `InvalidInput`.
pub fn folder_dir(data_dir: &Path, user: &str, folder: Option<&str>) -> io::Result<PathBuf> {
    let root = maildir::user_root(data_dir, user)?;
    match folder.filter(|f| !is_inbox(f)) {
        None => Ok(root),
        Some(folder) => Ok(root.join(dir_name(folder)?)),
    }
}

/// The Maildir++ directory name (`.A.B`) of a folder other than INBOX.
pub fn dir_name(folder: &str) -> io::Result<String> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("folder {folder:?}: {why}"),
        ))
    };
    if folder.is_empty() || folder.len() > MAX_NAME_LEN {
        return bad("empty or too long");
    }
    let mut parts = Vec::new();
    for p in folder.split('/') {
        if p.is_empty()
            || p.starts_with('.')
            || p.contains(['.', '\\', '\0'])
            || p.chars().any(char::is_control)
        {
            return bad("names may not be empty or contain '.', '\\' or control characters");
        }
        parts.push(mutf7::encode(p));
    }
    Ok(format!(".{}", parts.join(".")))
}

/// Creates the folder at `dir` if missing (`cur/ new/ tmp/` and the `maildirfolder` marker that
/// Maildir++ readers look for), every new entry durable. `root` is the user's Maildir root.
pub fn ensure(fs: &dyn FileSystem, root: &Path, dir: &Path) -> io::Result<()> {
    if dir == root {
        return maildir::ensure(fs, root);
    }
    if matches!(fs.stamp(&dir.join("maildirfolder")), Ok(Some(_))) {
        return maildir::ensure(fs, dir);
    }
    maildir::ensure(fs, dir)?;
    let marker = dir.join("maildirfolder");
    match fs.create_new(&marker) {
        Ok(mut f) => f.sync()?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for d in maildir::SUBDIRS {
        fs.sync_dir(&dir.join(d))?;
    }
    fs.sync_dir(dir)?;
    fs.sync_dir(root)
}

/// Maildir flag letters for IMAP flags, sorted as the Maildir spec asks; keywords (flags without
/// a backslash) get letters `a`..`z` from the folder's `dovecot-keywords` file, which is extended
/// when a keyword is new. Unknown system flags, invalid keywords and keywords past the 26th are
/// dropped (RFC 5232 lets a server ignore flags it cannot store).
pub fn maildir_flags(fs: &dyn FileSystem, dir: &Path, flags: &[String]) -> io::Result<String> {
    let mut letters: Vec<char> = Vec::new();
    let mut keywords: Vec<&str> = Vec::new();
    for flag in flags {
        match system_flag_letter(flag) {
            Some(c) => letters.push(c),
            None if valid_keyword(flag) => keywords.push(flag),
            None => {}
        }
    }
    if !keywords.is_empty() {
        let path = dir.join(KEYWORDS_FILE);
        let mut known = read_keywords(fs, &path)?;
        let before = known.len();
        for k in keywords {
            let index = match known.iter().position(|n| n.eq_ignore_ascii_case(k)) {
                Some(i) => i,
                None if known.len() < MAX_KEYWORDS => {
                    known.push(k.to_string());
                    known.len() - 1
                }
                None => continue,
            };
            letters.push((b'a' + index as u8) as char);
        }
        if known.len() != before {
            let text: String = known
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{i} {k}\n"))
                .collect();
            write_atomic(fs, &path, text.as_bytes(), "keywords")?;
        }
    }
    letters.sort_unstable();
    letters.dedup();
    Ok(letters.into_iter().collect())
}

/// The Maildir letter of an IMAP system flag (`\Seen` is `S`), `None` for anything else.
pub fn system_flag_letter(flag: &str) -> Option<char> {
    match flag.to_ascii_lowercase().as_str() {
        "\\seen" => Some('S'),
        "\\answered" => Some('R'),
        "\\flagged" => Some('F'),
        "\\deleted" => Some('T'),
        "\\draft" => Some('D'),
        _ => None,
    }
}

/// Keyword names by index, from a `dovecot-keywords` file (missing file: none).
pub fn read_keywords(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<String>> {
    let text = match fs.read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&text).lines() {
        let Some((index, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if index < MAX_KEYWORDS && valid_keyword(name) {
            if names.len() <= index {
                names.resize(index + 1, String::new());
            }
            names[index] = name.to_string();
        }
    }
    Ok(names)
}

/// An IMAP keyword: an atom (RFC 9051 `flag-keyword`) of at most 64 characters.
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn names_map_onto_maildir_plus_plus() {
        let d = Path::new("/d");
        let root = Path::new("/d/mail/example.com/a");
        assert_eq!(folder_dir(d, "a@example.com", None).unwrap(), root);
        assert_eq!(folder_dir(d, "a@example.com", Some("inbox")).unwrap(), root);
        assert_eq!(
            folder_dir(d, "a@example.com", Some("Lists/Rust")).unwrap(),
            root.join(".Lists.Rust")
        );
        assert_eq!(dir_name("Entwürfe").unwrap(), ".Entw&APw-rfe");
        assert_eq!(dir_name("Tom & Jerry").unwrap(), ".Tom &- Jerry");
        for bad in ["", "a//b", "../x", "a/.b", "a.b", "a\\b", "x\0", "/a", "a/"] {
            assert!(dir_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_and_keywords() {
        let tmp = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let dir = tmp.path();
        let f = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            maildir_flags(&fs, dir, &f(&["\\Seen", "\\Flagged", "\\Recent"])).unwrap(),
            "FS"
        );
        assert_eq!(
            maildir_flags(&fs, dir, &f(&["$Label1", "\\Answered", "Junk"])).unwrap(),
            "Rab"
        );
        assert_eq!(
            maildir_flags(&fs, dir, &f(&["junk", "bad(kw", "$label1"])).unwrap(),
            "ab"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(KEYWORDS_FILE)).unwrap(),
            "0 $Label1\n1 Junk\n"
        );
        let many: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let letters = maildir_flags(&fs, dir, &many).unwrap();
        assert_eq!(letters.len(), 24, "{letters}");
        assert_eq!(
            read_keywords(&fs, &dir.join(KEYWORDS_FILE)).unwrap().len(),
            26
        );
    }

    #[test]
    fn ensure_makes_a_marked_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("m");
        maildir::ensure(&RealFs, &root).unwrap();
        let dir = root.join(".Lists");
        ensure(&RealFs, &root, &dir).unwrap();
        assert!(dir.join("maildirfolder").is_file());
        for d in maildir::SUBDIRS {
            assert!(dir.join(d).is_dir());
        }
        ensure(&RealFs, &root, &dir).unwrap();
    }
}
