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
//! The index of the last [`MAX_CACHED_FOLDERS`] folders synced stays in memory ([`sync_shared`]):
//! a folder whose `new/`, `cur/`, `dovecot-uidlist`, `petrel-modseq` and `dovecot-keywords` have
//! the same stamps (inode, size, mtime) as when it was read costs five stats, provided the
//! directories' mtimes were already [`SETTLE_SECS`] old then (two changes within one mtime tick
//! leave the same mtime, so only a settled mtime proves nothing changed). Otherwise `new/` and
//! `cur/` are listed, and if they hold the very same files and the three files are unchanged,
//! the index in memory is still the answer; only a real change reads and merges everything.
//!
//! File format (`petrel-modseq`), one record a line:
//! ```text
//! v1 UIDVALIDITY HIGHESTMODSEQ [FLOOR]
//! m UID MODSEQ FLAGS        (FLAGS: the Maildir letters, `-` for none)
//! x UID MODSEQ              (an expunged UID and when it went)
//! ```

use crate::folder::{KEYWORDS_FILE, read_keywords};
use crate::fs::{FileSystem, Stamp};
use crate::mailbox::{self, Date, FolderLocks, FolderView, Known, MAX_CACHED_FOLDERS};
use crate::uidlist;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::{Arc, PoisonError};

/// How old (seconds) the mtimes of `new/` and `cur/` must have been when a folder was read for
/// its index in memory to be trusted without listing them again.
pub const SETTLE_SECS: i64 = 2;

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
    /// INTERNALDATE (Unix seconds): the file's mtime, as Dovecot takes it (a flag rename keeps
    /// it; an APPEND with a date sets it).
    pub internal_date: i64,
    /// Whether `internal_date` is only the time the name starts with (the file went before
    /// it could be looked at); the next sync looks again.
    pub(crate) date_guessed: bool,
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
    let mut out = String::with_capacity(32 + index.messages.len() * 24);
    let _ = writeln!(
        out,
        "v1 {} {} {}",
        index.uidvalidity, index.highest_modseq, index.vanished_floor
    );
    for m in &index.messages {
        let flags = name_flags(&m.name);
        let flags = if flags.is_empty() { "-" } else { &flags };
        let _ = writeln!(out, "m {} {} {flags}", m.uid, m.modseq);
    }
    for (uid, modseq) in &index.vanished {
        let _ = writeln!(out, "x {uid} {modseq}");
    }
    out
}

/// The stamps of what an index is made from: `new/`, `cur/`, `dovecot-uidlist`,
/// `petrel-modseq`, `dovecot-keywords`.
type Stamps = [Option<Stamp>; 5];

fn stamps(fs: &dyn FileSystem, dir: &Path) -> io::Result<Stamps> {
    let mut out = [None; 5];
    for (slot, name) in
        out.iter_mut()
            .zip(["new", "cur", uidlist::FILE_NAME, MODSEQ_FILE, KEYWORDS_FILE])
    {
        *slot = fs.stamp(&dir.join(name))?;
    }
    Ok(out)
}

/// A digest of a set of message files (subdirectory and name), the same whatever their order:
/// the number of files and the sum of two 64-bit SipHashes of each.
fn digest<'a>(files: impl Iterator<Item = (&'a str, &'a str)>) -> (usize, u128) {
    use std::hash::{Hash, Hasher};
    let (mut count, mut sum) = (0usize, 0u128);
    for (subdir, name) in files {
        let mut a = std::hash::DefaultHasher::new();
        (subdir, name).hash(&mut a);
        let mut b = std::hash::DefaultHasher::new();
        (name, subdir, 0x5bd1_e995u32).hash(&mut b);
        sum = sum.wrapping_add((u128::from(a.finish()) << 64) | u128::from(b.finish()));
        count += 1;
    }
    (count, sum)
}

/// A folder's index kept in memory, with what it was made from (see the module docs).
#[derive(Debug)]
pub(crate) struct Cached {
    /// The stamps taken before the files were read (for a file this sync wrote: of what it
    /// wrote).
    stamps: Stamps,
    /// The clock (Unix seconds) when `stamps` were taken.
    checked_at: i64,
    /// [`digest`] of the message files the index was made from.
    files: (usize, u128),
    index: Arc<FolderIndex>,
    /// The names in `cur/` as listed for this index, kept when `cur/`'s mtime had settled by
    /// `checked_at`: while `cur/` keeps that stamp, a delivery into `new/` lists only `new/`
    /// (`cur/` of a big folder is where the time goes).
    cur: Option<Arc<Vec<String>>>,
}

/// Whether a directory's stamp shows an mtime at least [`SETTLE_SECS`] older than `at`.
fn settled_at(st: &Option<Stamp>, at: i64) -> bool {
    st.is_some_and(|st| {
        st.modified_ns > 0
            && st.modified_ns + i128::from(SETTLE_SECS) * 1_000_000_000
                <= i128::from(at) * 1_000_000_000
    })
}

impl Cached {
    /// The names in `cur/` if they are still what it holds: its stamp is the same and its
    /// mtime had settled when it was listed (and the clock has not gone back since).
    fn cur_listing(&self, now: &Stamps, now_secs: i64) -> Option<&[String]> {
        let same = self.stamps[1] == now[1] && now_secs >= self.checked_at;
        self.cur.as_deref().map(Vec::as_slice).filter(|_| same)
    }

    /// Whether nothing can have changed since: the same stamps, and the directories' mtimes
    /// were settled when they were taken (and the clock has not gone back since).
    fn unchanged(&self, now: &Stamps, now_secs: i64) -> bool {
        let settled = |st: &Option<Stamp>| settled_at(st, self.checked_at);
        self.stamps == *now && now_secs >= self.checked_at && settled(&now[0]) && settled(&now[1])
    }
}

/// Most messages the remembered indexes hold together (about 100-200 bytes each): beyond it,
/// the other folders are forgotten.
const MAX_CACHED_MESSAGES: usize = 500_000;

fn remember(locks: &FolderLocks, dir: &Path, cached: Cached) {
    let mut all = locks.indexes.lock().unwrap_or_else(PoisonError::into_inner);
    all.remove(dir);
    let held: usize = all.values().map(|c| c.index.messages.len()).sum();
    if all.len() >= MAX_CACHED_FOLDERS || held + cached.index.messages.len() > MAX_CACHED_MESSAGES {
        all.clear();
    }
    all.insert(dir.to_path_buf(), Arc::new(cached));
}

/// Replaces the index file as [`crate::fs::write_atomic`] does, returning the stamp of what
/// was written (taken before the rename).
fn write_index(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<Option<Stamp>> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    let tmp = dir.join(format!(".{MODSEQ_FILE}.index.tmp"));
    let result = (|| {
        let mut f = fs.create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync()?;
        drop(f);
        let stamp = fs.stamp(&tmp)?;
        fs.rename(&tmp, path)?;
        fs.sync_dir(dir)?;
        Ok(stamp)
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// The index for `view` from what `petrel-modseq` holds (`None`: lost, unreadable or of another
/// UIDVALIDITY, rebuilt with MODSEQs from the clock), and whether it differs from the file.
fn from_stored(
    stored: Option<Stored>,
    view: FolderView,
    dates: &[Date],
    keywords: &[String],
    now_secs: i64,
) -> (FolderIndex, bool) {
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
    let mut changed = rebuilt;
    let mut messages = Vec::with_capacity(view.messages.len());
    for (m, date) in view.messages.into_iter().zip(dates) {
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
            flags: imap_flags(&letters, keywords),
            uid: m.uid,
            subdir: m.subdir,
            name: m.name,
            size: m.size,
            modseq,
            internal_date: date.unix,
            date_guessed: date.guessed,
        });
    }
    // What is left of the stored messages has been expunged (by us or another program).
    let mut gone: Vec<u32> = stored.messages.keys().copied().collect();
    gone.sort_unstable();
    let mut index = FolderIndex {
        uidvalidity: view.uidvalidity,
        next_uid: view.next_uid,
        highest_modseq: stored.highest,
        messages,
        vanished: stored.vanished,
        vanished_floor: stored.floor,
    };
    changed |= bury(&mut index, &gone);
    (index, changed)
}

/// The index for `view` from the index made of the same folder before (which is what
/// `petrel-modseq` holds): the same as [`from_stored`] on the file, without reading it. A
/// message whose file kept its name keeps its flags and MODSEQ.
fn carry(
    old: &FolderIndex,
    view: FolderView,
    dates: &[Date],
    keywords: &[String],
) -> (FolderIndex, bool) {
    let mut highest = old.highest_modseq;
    let mut changed = false;
    let mut previous = old.messages.iter().peekable();
    let mut gone = Vec::new();
    let mut messages = Vec::with_capacity(view.messages.len());
    for (m, date) in view.messages.into_iter().zip(dates) {
        while let Some(p) = previous.next_if(|p| p.uid < m.uid) {
            gone.push(p.uid);
        }
        let before = previous.next_if(|p| p.uid == m.uid);
        let (flags, modseq) = match before {
            Some(p) if p.name == m.name => (p.flags.clone(), p.modseq),
            _ => {
                let letters = name_flags(&m.name);
                let modseq = match before {
                    Some(p) if name_flags(&p.name) == letters => p.modseq,
                    _ => {
                        changed = true;
                        highest += 1;
                        highest
                    }
                };
                (imap_flags(&letters, keywords), modseq)
            }
        };
        messages.push(IndexedMessage {
            uid: m.uid,
            subdir: m.subdir,
            name: m.name,
            size: m.size,
            flags,
            modseq,
            internal_date: date.unix,
            date_guessed: date.guessed,
        });
    }
    gone.extend(previous.map(|p| p.uid));
    let mut index = FolderIndex {
        uidvalidity: view.uidvalidity,
        next_uid: view.next_uid,
        highest_modseq: highest,
        messages,
        vanished: old.vanished.clone(),
        vanished_floor: old.vanished_floor,
    };
    changed |= bury(&mut index, &gone);
    (index, changed)
}

/// Records the expunge of `gone` (ascending) with new MODSEQs, keeping at most
/// [`MAX_TOMBSTONES`]; whether anything was recorded.
fn bury(index: &mut FolderIndex, gone: &[u32]) -> bool {
    for &uid in gone {
        index.highest_modseq += 1;
        index.vanished.push((uid, index.highest_modseq));
    }
    if index.vanished.len() > MAX_TOMBSTONES {
        let excess = index.vanished.len() - MAX_TOMBSTONES;
        for (_, modseq) in index.vanished.drain(..excess) {
            index.vanished_floor = index.vanished_floor.max(modseq);
        }
    }
    !gone.is_empty()
}

/// Brings the folder's index up to date with its files (see the module docs) and returns it.
/// `now_secs` seeds MODSEQs when the index has to be rebuilt.
pub fn sync(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
) -> io::Result<FolderIndex> {
    Ok((*sync_shared(fs, locks, dir, now_secs)?).clone())
}

/// [`sync`], sharing the index kept in memory: the same `Arc` as long as the folder has not
/// changed.
pub fn sync_shared(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
) -> io::Result<Arc<FolderIndex>> {
    let lock = locks.get(dir);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let before = stamps(fs, dir)?;
    let cached = locks
        .indexes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(dir)
        .cloned();
    let mut files = None;
    if let Some(c) = cached.as_ref().filter(|_| locks.is_durable(dir))
        && before[0].is_some()
        && before[1].is_some()
    {
        if c.unchanged(&before, now_secs) {
            return Ok(c.index.clone());
        }
        // The same files and the same list, index and keywords: the same index.
        let reused = c.cur_listing(&before, now_secs);
        let scanned = mailbox::scan_reusing(fs, dir, reused)?;
        let digest = digest(scanned.iter().map(|(s, n)| (*s, n.as_str())));
        let cur = match reused {
            Some(_) => c.cur.clone(),
            None => keep_cur(&scanned, &before, now_secs),
        };
        if c.stamps[2..] == before[2..] && c.files == digest {
            let index = c.index.clone();
            remember(
                locks,
                dir,
                Cached {
                    stamps: before,
                    checked_at: now_secs,
                    files: digest,
                    index: index.clone(),
                    cur,
                },
            );
            return Ok(index);
        }
        files = Some((scanned, cur));
    }
    let (files, cur) = match files {
        Some((files, cur)) => (files, cur),
        None if before[0].is_some() && before[1].is_some() => {
            let scanned = mailbox::scan(fs, dir)?;
            let cur = keep_cur(&scanned, &before, now_secs);
            (scanned, cur)
        }
        // Not a complete Maildir yet: the sync makes it and lists it.
        None => (Vec::new(), None),
    };
    let files = (before[0].is_some() && before[1].is_some()).then_some(files);
    // What the index in memory knows of each message (size, INTERNALDATE) is not looked up
    // again while the message keeps its UID and file.
    let known: Vec<Known<'_>> = cached.as_ref().map_or_else(Vec::new, |c| {
        c.index
            .messages
            .iter()
            .map(|m| Known {
                uid: m.uid,
                name: &m.name,
                size: m.size,
                date: (!m.date_guessed).then_some(m.internal_date),
            })
            .collect()
    });
    let synced = mailbox::sync_locked(fs, locks, dir, now_secs, files, &known, true)?;
    drop(known);
    let (view, dates) = (synced.view, synced.dates);
    let mut after = before;
    if let Some(written) = synced.list_written {
        after[2] = written;
    }
    let files = digest(view.messages.iter().map(|m| (m.subdir, m.name.as_str())));
    let path = dir.join(MODSEQ_FILE);
    let keywords = read_keywords(fs, &dir.join(KEYWORDS_FILE))?;
    // The index in memory is what `petrel-modseq` holds while its stamp (and the keywords')
    // has not changed: start from it rather than read and parse the file again.
    let carried = cached.as_ref().filter(|c| {
        c.index.uidvalidity == view.uidvalidity
            && before[3].is_some()
            && c.stamps[3..] == before[3..]
    });
    let (index, changed) = match carried {
        Some(c) => carry(&c.index, view, &dates, &keywords),
        None => {
            let stored = match fs.read(&path) {
                Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
            .filter(|s| s.uidvalidity == view.uidvalidity);
            from_stored(stored, view, &dates, &keywords, now_secs)
        }
    };
    if changed {
        after[3] = write_index(fs, &path, render(&index).as_bytes())?;
    }
    let index = Arc::new(index);
    remember(
        locks,
        dir,
        Cached {
            stamps: after,
            checked_at: now_secs,
            files,
            index: index.clone(),
            cur,
        },
    );
    Ok(index)
}

/// The names in `cur/` of a listing, to keep with the index if `cur/` had settled when its
/// stamp was taken (see [`Cached::cur_listing`]).
fn keep_cur(files: &mailbox::Files, before: &Stamps, now_secs: i64) -> Option<Arc<Vec<String>>> {
    settled_at(&before[1], now_secs).then(|| {
        Arc::new(
            files
                .iter()
                .filter(|(sub, _)| *sub == "cur")
                .map(|(_, n)| n.clone())
                .collect(),
        )
    })
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

    fn set_mtime(path: &Path, unix: i64) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix as u64);
        std::fs::File::open(path).unwrap().set_modified(t).unwrap();
    }

    /// The index in memory: shared unchanged while the folder's directories and files keep
    /// their stamps and were settled when read; a change is seen even when it leaves the
    /// directory's mtime as it was (same tick) unless that mtime was settled when read, and a
    /// list rewritten by another program is read again.
    #[test]
    fn index_in_memory_follows_changes_within_one_tick() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (fs, locks) = (RealFs, FolderLocks::default());
        crate::maildir::ensure(&fs, dir).unwrap();
        put(dir, "cur", "1.P1Q1.h:2,");
        put(dir, "cur", "1.P1Q2.h:2,S");
        let t = 1_700_000_000;
        let settle = || {
            set_mtime(&dir.join("new"), t);
            set_mtime(&dir.join("cur"), t);
        };
        settle();
        // Read one second after the last change: not settled.
        let a = sync_shared(&fs, &locks, dir, t + 1).unwrap();
        // Another program flags message 1 within the same mtime tick.
        std::fs::rename(dir.join("cur/1.P1Q1.h:2,"), dir.join("cur/1.P1Q1.h:2,F")).unwrap();
        settle();
        let b = sync_shared(&fs, &locks, dir, t + 10).unwrap();
        assert_eq!(
            b.messages[0].flags,
            ["\\Flagged"],
            "a change in the same tick is seen"
        );
        assert!(b.messages[0].modseq > a.highest_modseq);
        // Read with settled mtimes, nothing changed since: the very same index, no listing.
        let c = sync_shared(&fs, &locks, dir, t + 11).unwrap();
        assert!(Arc::ptr_eq(&b, &c) || *b == *c);
        let d = sync_shared(&fs, &locks, dir, t + 12).unwrap();
        assert!(
            Arc::ptr_eq(&c, &d),
            "an unchanged, settled folder is not read again"
        );
        // A new delivery changes the directory's mtime: seen at once.
        put(dir, "new", "2.P1Q3.h");
        let e = sync_shared(&fs, &locks, dir, t + 13).unwrap();
        assert_eq!(e.messages.len(), 3);
        assert_eq!(e.messages[2].uid, 3);
        assert_eq!(e.messages[..2], d.messages[..], "the others are untouched");
        // Another program (Dovecot) renumbers the folder (new UIDVALIDITY) without touching
        // the files: the list's stamp changed, so it is read again.
        settle();
        let f = sync_shared(&fs, &locks, dir, t + 20).unwrap();
        let list = "3 V42 N10\n7 :1.P1Q1.h:2,F\n8 :1.P1Q2.h:2,S\n9 :2.P1Q3.h\n";
        std::fs::write(dir.join(uidlist::FILE_NAME), list).unwrap();
        settle();
        let g = sync_shared(&fs, &locks, dir, t + 30).unwrap();
        assert_eq!(f.uidvalidity, e.uidvalidity);
        assert_eq!(g.uidvalidity, 42);
        let uids: Vec<u32> = g.messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids, [7, 8, 9]);
        // A new process (no memory) agrees with the one that remembered.
        let h = sync(&fs, &FolderLocks::default(), dir, t + 40).unwrap();
        assert_eq!(h, *g);
    }

    /// A delivery into `new/` while `cur/` keeps its settled stamp lists only `new/`: what
    /// `cur/` held is taken from memory (shown here by a file slipped into `cur/` with its
    /// stamp put back, which only a listing of `cur/` would find); once `cur/` changes, it is
    /// listed again.
    #[test]
    fn a_settled_cur_is_not_listed_again_for_a_delivery() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (fs, locks) = (RealFs, FolderLocks::default());
        crate::maildir::ensure(&fs, dir).unwrap();
        put(dir, "cur", "1.P1Q1.h:2,S");
        let t = 1_700_000_000;
        set_mtime(&dir.join("cur"), t);
        set_mtime(&dir.join("new"), t);
        let a = sync_shared(&fs, &locks, dir, t + 5).unwrap();
        assert_eq!(a.messages.len(), 1);
        let cur_stamp = fs.stamp(&dir.join("cur")).unwrap();
        put(dir, "cur", "1.P1Q2.h:2,S");
        set_mtime(&dir.join("cur"), t);
        if fs.stamp(&dir.join("cur")).unwrap() != cur_stamp {
            return; // this filesystem changed the directory's size or identity: not shown here
        }
        put(dir, "new", "1.P1Q3.h");
        let b = sync_shared(&fs, &locks, dir, t + 6).unwrap();
        let names: Vec<&str> = b.messages.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["1.P1Q1.h:2,S", "1.P1Q3.h"],
            "cur/ taken from memory"
        );
        set_mtime(&dir.join("cur"), t + 1);
        let c = sync_shared(&fs, &locks, dir, t + 7).unwrap();
        assert_eq!(c.messages.len(), 3, "a changed cur/ is listed");
        assert_eq!(c.messages[2].name, "1.P1Q2.h:2,S");
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
