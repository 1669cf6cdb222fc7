//! The IMAP view of a folder: the UIDs of [`crate::mailbox::sync`] (Dovecot's `dovecot-uidlist`)
//! plus each message's flags and keywords, as the Maildir file names and `dovecot-keywords` hold
//! them, and a MODSEQ for CONDSTORE/QRESYNC (RFC 7162) kept in `petrel-modseq` beside them.
//!
//! Another Maildir program may rename or remove files at any time; [`sync`] notices (a changed
//! flag set gets a new MODSEQ, a vanished UID a tombstone) and the index follows the files, never
//! the other way round. A lost or unreadable `petrel-modseq` is rebuilt with MODSEQs above any
//! handed out before (they start from the clock), so a client's cached HIGHESTMODSEQ never looks
//! newer than the folder.
//!
//! File format (`petrel-modseq`), one record a line:
//! ```text
//! v1 UIDVALIDITY HIGHESTMODSEQ [FLOOR]
//! m UID MODSEQ FLAGS        (FLAGS: the Maildir letters, `-` for none)
//! x UID MODSEQ              (an expunged UID and when it went)
//! ```

use crate::folder::{KEYWORDS_FILE, read_keywords};
use crate::fs::{FileSystem, write_atomic};
use crate::mailbox::{self, FolderLocks};
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::PoisonError;

/// The index file's name inside the folder.
pub const MODSEQ_FILE: &str = "petrel-modseq";
/// Most expunged UIDs remembered for QRESYNC's VANISHED (the oldest are forgotten first).
pub const MAX_TOMBSTONES: usize = 10_000;

/// One message as IMAP sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedMessage {
    /// Its UID.
    pub uid: u32,
    /// `new` or `cur`.
    pub subdir: &'static str,
    /// The current file name.
    pub name: String,
    /// Size in octets with CRLF line ends.
    pub size: u64,
    /// IMAP flags: system flags (`\Seen`...) then keywords, in Maildir letter order.
    pub flags: Vec<String>,
    /// When its flags last changed (or it arrived).
    pub modseq: u64,
}

/// A folder's IMAP state after a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderIndex {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// The UID the next message will get.
    pub next_uid: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Messages in UID order.
    pub messages: Vec<IndexedMessage>,
    /// Expunged UIDs with the MODSEQ of their removal, oldest first (bounded).
    pub vanished: Vec<(u32, u64)>,
    /// Expunges at or below this MODSEQ may be missing from `vanished` (forgotten to keep it
    /// bounded, or lost with a rebuilt index): `vanished` is complete only for changes after it.
    pub vanished_floor: u64,
}

impl FolderIndex {
    /// The UIDs expunged after MODSEQ `since`, ascending, and whether that list is complete
    /// (`since` is at or above [`FolderIndex::vanished_floor`]).
    pub fn vanished_since(&self, since: u64) -> (Vec<u32>, bool) {
        let mut uids: Vec<u32> = self
            .vanished
            .iter()
            .filter(|&&(_, m)| m > since)
            .map(|&(u, _)| u)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        (uids, since >= self.vanished_floor)
    }
}

/// The Maildir flag letters of a file name (after `:2,`), sorted.
pub fn name_flags(name: &str) -> String {
    let mut letters: Vec<char> = name
        .rsplit_once(":2,")
        .map_or("", |(_, f)| f)
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

/// IMAP flags for Maildir letters, keywords named through `keywords` (index = letter - 'a').
pub fn imap_flags(letters: &str, keywords: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for c in letters.chars() {
        let flag = match c {
            'D' => Some("\\Draft".to_string()),
            'F' => Some("\\Flagged".to_string()),
            'R' => Some("\\Answered".to_string()),
            'S' => Some("\\Seen".to_string()),
            'T' => Some("\\Deleted".to_string()),
            'a'..='z' => keywords
                .get((c as u8 - b'a') as usize)
                .filter(|k| !k.is_empty())
                .cloned(),
            _ => None,
        };
        out.extend(flag);
    }
    out
}

#[derive(Debug, Default)]
struct Stored {
    uidvalidity: u32,
    highest: u64,
    floor: u64,
    messages: HashMap<u32, (u64, String)>,
    vanished: Vec<(u32, u64)>,
}

fn parse(text: &str) -> Option<Stored> {
    let mut lines = text.lines();
    let mut head = lines.next()?.split(' ');
    if head.next()? != "v1" {
        return None;
    }
    let mut s = Stored {
        uidvalidity: head.next()?.parse().ok()?,
        highest: head.next()?.parse().ok()?,
        ..Stored::default()
    };
    // Written before QRESYNC kept a floor: nothing was ever forgotten unless it is full.
    s.floor = match head.next() {
        Some(f) => f.parse().ok()?,
        None => 0,
    };
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["m", uid, modseq, flags] => {
                let flags = if *flags == "-" { "" } else { flags };
                s.messages
                    .insert(uid.parse().ok()?, (modseq.parse().ok()?, flags.to_string()));
            }
            ["x", uid, modseq] => s.vanished.push((uid.parse().ok()?, modseq.parse().ok()?)),
            _ => return None,
        }
    }
    Some(s)
}

fn render(index: &FolderIndex) -> String {
    let mut out = format!(
        "v1 {} {} {}\n",
        index.uidvalidity, index.highest_modseq, index.vanished_floor
    );
    for m in &index.messages {
        let flags = name_flags(&m.name);
        let flags = if flags.is_empty() { "-" } else { &flags };
        out.push_str(&format!("m {} {} {flags}\n", m.uid, m.modseq));
    }
    for (uid, modseq) in &index.vanished {
        out.push_str(&format!("x {uid} {modseq}\n"));
    }
    out
}

/// Brings the folder's index up to date with its files (see the module docs) and returns it.
/// `now_secs` seeds MODSEQs when the index has to be rebuilt.
pub fn sync(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
) -> io::Result<FolderIndex> {
    let view = mailbox::sync(fs, locks, dir, now_secs)?;
    let path = dir.join(MODSEQ_FILE);
    let lock = locks.get(&path);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let stored = match fs.read(&path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    }
    .filter(|s| s.uidvalidity == view.uidvalidity);
    let rebuilt = stored.is_none();
    let mut stored = stored.unwrap_or_else(|| {
        // Above anything handed out before the index was lost: microseconds of the clock.
        let highest = u64::try_from(now_secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        Stored {
            uidvalidity: view.uidvalidity,
            highest,
            // Whatever was expunged before is unknown now.
            floor: highest,
            ..Stored::default()
        }
    });
    let keywords = read_keywords(fs, &dir.join(KEYWORDS_FILE))?;
    let mut changed = rebuilt;
    let mut messages = Vec::with_capacity(view.messages.len());
    for m in view.messages {
        let letters = name_flags(&m.name);
        let modseq = match stored.messages.remove(&m.uid) {
            Some((modseq, old)) if old == letters => modseq,
            _ => {
                changed = true;
                stored.highest += 1;
                stored.highest
            }
        };
        messages.push(IndexedMessage {
            flags: imap_flags(&letters, &keywords),
            uid: m.uid,
            subdir: m.subdir,
            name: m.name,
            size: m.size,
            modseq,
        });
    }
    // What is left of the stored messages has been expunged (by us or another program).
    let mut gone: Vec<u32> = stored.messages.keys().copied().collect();
    gone.sort_unstable();
    for uid in gone {
        changed = true;
        stored.highest += 1;
        stored.vanished.push((uid, stored.highest));
    }
    if stored.vanished.len() > MAX_TOMBSTONES {
        let excess = stored.vanished.len() - MAX_TOMBSTONES;
        for (_, modseq) in stored.vanished.drain(..excess) {
            stored.floor = stored.floor.max(modseq);
        }
    }
    let index = FolderIndex {
        uidvalidity: view.uidvalidity,
        next_uid: view.next_uid,
        highest_modseq: stored.highest,
        messages,
        vanished: stored.vanished,
        vanished_floor: stored.floor,
    };
    if changed {
        write_atomic(fs, &path, render(&index).as_bytes(), "index")?;
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    fn put(dir: &Path, sub: &str, name: &str) {
        std::fs::write(dir.join(sub).join(name), b"Subject: x\r\n\r\nbody\r\n").unwrap();
    }

    #[test]
    fn flags_modseqs_and_tombstones_follow_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (fs, locks) = (RealFs, FolderLocks::default());
        crate::maildir::ensure(&fs, dir).unwrap();
        put(dir, "new", "1.P1Q1.h");
        put(dir, "cur", "1.P1Q2.h:2,S");
        std::fs::write(dir.join(KEYWORDS_FILE), "0 $Label1\n1 Junk\n").unwrap();
        put(dir, "cur", "1.P1Q3.h:2,FSb");
        let a = sync(&fs, &locks, dir, 1000).unwrap();
        assert_eq!(a.messages.len(), 3);
        assert_eq!(a.messages[0].flags, Vec::<String>::new());
        assert_eq!(a.messages[1].flags, ["\\Seen"]);
        assert_eq!(a.messages[2].flags, ["\\Flagged", "\\Seen", "Junk"]);
        assert!(
            a.highest_modseq > 1000 * 1_000_000,
            "rebuilt above the clock"
        );
        let m2 = a.messages[1].modseq;

        // Nothing changed: nothing moves.
        let b = sync(&fs, &locks, dir, 2000).unwrap();
        assert_eq!(a, b);

        // Another program flags message 1 and removes message 3.
        std::fs::rename(dir.join("new/1.P1Q1.h"), dir.join("cur/1.P1Q1.h:2,R")).unwrap();
        std::fs::remove_file(dir.join("cur/1.P1Q3.h:2,FSb")).unwrap();
        let c = sync(&fs, &locks, dir, 3000).unwrap();
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.messages[0].flags, ["\\Answered"]);
        assert!(c.messages[0].modseq > b.highest_modseq);
        assert_eq!(
            c.messages[1].modseq, m2,
            "untouched messages keep their MODSEQ"
        );
        assert_eq!(c.vanished.len(), 1);
        assert_eq!(c.vanished[0].0, a.messages[2].uid);
        assert_eq!(c.highest_modseq, c.vanished[0].1.max(c.messages[0].modseq));

        // The index survives a restart (a new lock table) unchanged.
        let d = sync(&fs, &FolderLocks::default(), dir, 4000).unwrap();
        assert_eq!(c, d);

        // A lost index is rebuilt above what was handed out.
        std::fs::remove_file(dir.join(MODSEQ_FILE)).unwrap();
        let e = sync(&fs, &locks, dir, 5000).unwrap();
        assert!(e.highest_modseq > d.highest_modseq);
        assert_eq!(e.uidvalidity, d.uidvalidity);
        assert!(e.vanished.is_empty());
    }

    #[test]
    fn flag_letters() {
        assert_eq!(name_flags("x:2,SRa"), "RSa");
        assert_eq!(name_flags("x"), "");
        assert_eq!(
            imap_flags("DFRSTac", &["$Forwarded".into(), "".into()]),
            [
                "\\Draft",
                "\\Flagged",
                "\\Answered",
                "\\Seen",
                "\\Deleted",
                "$Forwarded"
            ]
        );
    }
}
