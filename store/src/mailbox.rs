//! A Maildir folder as the readers (POP3, IMAP) see it: its messages in UID order, with UIDs
//! kept in `dovecot-uidlist` and assigned to files that other programs (our own delivery, a
//! Dovecot LDA, Courier) dropped into `new/` or `cur/`.

use crate::fs::{FileSystem, Stamp};
use crate::maildir;
use crate::uidlist::{self, UidEntry, UidList};
use std::collections::HashMap;
use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// One message of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Its UID.
    pub uid: u32,
    /// `new` or `cur`.
    pub subdir: &'static str,
    /// The current file name.
    pub name: String,
    /// Size in octets with CRLF line ends (what POP3 and IMAP report).
    pub size: u64,
}

impl MessageInfo {
    /// The message's base name: stable across flag changes, unique in the folder.
    pub fn base(&self) -> &str {
        uidlist::base_name(&self.name)
    }
}

/// A folder's state after a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderView {
    /// IMAP UIDVALIDITY.
    pub uidvalidity: u32,
    /// The UID the next message will get.
    pub next_uid: u32,
    /// Messages in UID order.
    pub messages: Vec<MessageInfo>,
}

/// Serialises index updates per folder within the process, and remembers which folders' UID
/// lists this process knows to be durable.
#[derive(Debug, Default)]
pub struct FolderLocks {
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    durable: Mutex<std::collections::HashSet<PathBuf>>,
    /// CRLF sizes of files whose names do not tell it (see [`size_from_name`]), by folder
    /// directory and base name, so each such file is read once per process, not every sync.
    sizes: Mutex<HashMap<PathBuf, u64>>,
    /// The IMAP index of the folders synced last ([`crate::index`]), with what it was read
    /// from, so an unchanged folder is not read again; at most [`MAX_CACHED_FOLDERS`].
    pub(crate) indexes: Mutex<HashMap<PathBuf, Arc<crate::index::Cached>>>,
}

/// Most folders whose index is kept in memory; beyond it the memory is cleared.
pub const MAX_CACHED_FOLDERS: usize = 16;

/// Most remembered CRLF sizes; beyond it the memory is cleared (and sizes are read again).
const MAX_REMEMBERED_SIZES: usize = 1_000_000;

impl FolderLocks {
    /// The lock of `dir`.
    pub fn get(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Whether this process knows the UID list of `dir` to be durable.
    pub(crate) fn is_durable(&self, dir: &Path) -> bool {
        self.durable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(dir)
    }

    /// The CRLF size of a file whose name does not tell it: read once, then remembered.
    fn crlf_size(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        subdir: &str,
        name: &str,
    ) -> io::Result<u64> {
        let key = dir.join(uidlist::base_name(name));
        if let Some(&size) = self
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(size);
        }
        let size = crlf_size(fs, &dir.join(subdir).join(name))?;
        let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        if sizes.len() >= MAX_REMEMBERED_SIZES {
            sizes.clear();
        }
        sizes.insert(key, size);
        Ok(size)
    }

    fn set_durable(&self, dir: &Path, durable: bool) {
        let mut set = self.durable.lock().unwrap_or_else(PoisonError::into_inner);
        if durable {
            set.insert(dir.to_path_buf());
        } else {
            set.remove(dir);
        }
    }
}

/// The CRLF size a Maildir name tells: `W=` (Dovecot's virtual size), or `S=` alone when
/// the name is one Petrel made. `S=` is the file's length (Dovecot, Courier), which is the
/// CRLF size only if the file has no bare LF; Petrel's writers add `W=` whenever it differs,
/// other programs (Courier, procmail, Postfix's local, which write LF-only files) do not, so
/// their `S=` says nothing about the CRLF size and the file must be read.
fn size_from_name(name: &str) -> Option<u64> {
    let base = uidlist::base_name(name);
    let get = |key: &str| {
        base.split(',')
            .skip(1)
            .find_map(|f| f.strip_prefix(key)?.parse().ok())
    };
    get("W=").or_else(|| get("S=").filter(|_| petrel_name(base)))
}

/// Whether a base name is one of [`maildir::unique_name`]'s: `SECS.P<pid>Q<n>R<8 hex>.HOST,...`.
fn petrel_name(base: &str) -> bool {
    let mut parts = base.splitn(3, '.');
    let (Some(secs), Some(unique)) = (parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = unique.strip_prefix('P') else {
        return false;
    };
    let Some((pid, rest)) = rest.split_once('Q') else {
        return false;
    };
    let Some((counter, random)) = rest.split_once('R') else {
        return false;
    };
    digits(secs)
        && digits(pid)
        && digits(counter)
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The size of a message with bare LFs counted as CRLF.
fn crlf_size(fs: &dyn FileSystem, path: &Path) -> io::Result<u64> {
    let bytes = fs.read(path)?;
    let bare_lf = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count();
    Ok((bytes.len() + bare_lf) as u64)
}

/// The message files of a folder: (`new` or `cur`, name), those of `new/` first, dot files
/// left out.
pub(crate) type Files = Vec<(&'static str, String)>;

/// Reads the names in `new/` and `cur/`.
pub(crate) fn scan(fs: &dyn FileSystem, dir: &Path) -> io::Result<Files> {
    let mut files = Vec::new();
    for subdir in ["new", "cur"] {
        let names = fs.read_dir(&dir.join(subdir))?;
        files.reserve(names.len());
        files.extend(
            names
                .into_iter()
                .filter(|n| !n.starts_with('.'))
                .map(|n| (subdir, n)),
        );
    }
    Ok(files)
}

fn read_list(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<UidList>> {
    match fs.read(path) {
        Ok(bytes) => Ok(UidList::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A list brought up to date with the files: the list, its messages (UID, subdir, name),
/// whether it changed and whether UIDs were forgotten.
struct Merged {
    list: UidList,
    messages: Vec<(u32, &'static str, String)>,
    changed: bool,
    forgotten: bool,
}

fn merge(stored: Option<UidList>, files: &[(&'static str, String)], now_secs: i64) -> Merged {
    // By base name; a base in both `new/` and `cur/` (a move cut short) is taken from `cur/`.
    let mut present: HashMap<&str, usize> = HashMap::with_capacity(files.len());
    for (i, (_, name)) in files.iter().enumerate() {
        present.insert(uidlist::base_name(name), i);
    }
    let mut changed = stored.is_none();
    let mut list = stored.unwrap_or_else(|| {
        let validity = u32::try_from(now_secs).unwrap_or(1).max(1);
        UidList::new(validity, format!("{validity:08x}{:024x}", 0))
    });
    let mut messages = Vec::with_capacity(present.len());
    let mut kept = Vec::with_capacity(list.entries.len());
    let mut forgotten = false;
    for entry in list.entries.drain(..) {
        match present.remove(uidlist::base_name(&entry.name)) {
            Some(i) => {
                let (subdir, name) = &files[i];
                messages.push((entry.uid, *subdir, name.clone()));
                if *name == entry.name {
                    kept.push(entry);
                } else {
                    changed = true;
                    kept.push(UidEntry {
                        name: name.clone(),
                        ..entry
                    });
                }
            }
            None => {
                changed = true;
                forgotten = true;
            }
        }
    }
    let new: Vec<usize> = present.into_values().collect();
    // Arrival order: Maildir names start with the time and carry counters, compared as numbers
    // (`Q10` after `Q9`), so new messages get UIDs in the order they were delivered.
    // The runs of each name are found once, not at every comparison (a first sync of a big
    // folder sorts every name).
    let mut keyed: Vec<(Vec<(bool, &str)>, usize)> = new
        .into_iter()
        .map(|i| (name_runs(&files[i].1).collect(), i))
        .collect();
    keyed.sort_by(|(x, a), (y, b)| {
        runs_cmp(x.iter().copied(), y.iter().copied()).then_with(|| files[*a].1.cmp(&files[*b].1))
    });
    let new = keyed.into_iter().map(|(_, i)| i);
    for (subdir, name) in new.map(|i| files[i].clone()) {
        let uid = list.next_uid;
        list.next_uid = list.next_uid.saturating_add(1);
        messages.push((uid, subdir, name.clone()));
        kept.push(UidEntry {
            uid,
            ext: String::new(),
            name,
        });
        changed = true;
    }
    list.entries = kept;
    Merged {
        list,
        messages,
        changed,
        forgotten,
    }
}

/// Dovecot's lock of `dovecot-uidlist` (`dovecot-uidlist.lock`, created exclusively; the new
/// list is written into it and renamed over the list), so that Petrel and a Dovecot running on
/// the same Maildir never hand out the same UID twice. A lock not modified for
/// [`UIDLIST_LOCK_STALE_SECS`] is taken over, as Dovecot does.
struct UidListLock<'a> {
    fs: &'a dyn FileSystem,
    path: PathBuf,
    file: Option<Box<dyn crate::fs::WriteFile>>,
}

/// Age (seconds) after which another program's `dovecot-uidlist.lock` is stale (Dovecot's
/// `MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT`).
pub const UIDLIST_LOCK_STALE_SECS: i64 = 120;
/// How long a sync waits for another program's lock before failing (temporarily).
const UIDLIST_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl<'a> UidListLock<'a> {
    fn acquire(fs: &'a dyn FileSystem, dir: &Path, now_secs: i64) -> io::Result<Self> {
        let path = dir.join(format!("{}.lock", uidlist::FILE_NAME));
        let step = std::time::Duration::from_millis(10);
        let tries = UIDLIST_LOCK_WAIT.as_millis() / step.as_millis();
        for attempt in 0.. {
            match fs.create_new(&path) {
                Ok(file) => {
                    return Ok(UidListLock {
                        fs,
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let stale = match fs.stamp(&path)? {
                None => continue,
                Some(st) => {
                    st.modified_ns.div_euclid(1_000_000_000) + i128::from(UIDLIST_LOCK_STALE_SECS)
                        < i128::from(now_secs)
                }
            };
            if stale {
                tracing::warn!(lock = %path.display(), "taking over a stale dovecot-uidlist lock");
                match fs.remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => continue,
                }
            }
            if attempt >= tries {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} is held by another program", path.display()),
                ));
            }
            std::thread::sleep(step);
        }
        unreachable!("the loop returns")
    }

    /// Writes `text` as the new list: into the lock file, synced, renamed over the list, and
    /// the directory synced. The lock is released by the rename. Returns the new list's stamp
    /// (taken before the rename, so it is the stamp of what was written, not of a list another
    /// program may have put there since).
    fn replace(mut self, dir: &Path, text: &str) -> io::Result<Option<Stamp>> {
        let mut file = self.file.take().expect("a held lock has its file");
        file.write_all(text.as_bytes())?;
        file.sync()?;
        drop(file);
        let stamp = self.fs.stamp(&self.path)?;
        self.fs.rename(&self.path, &dir.join(uidlist::FILE_NAME))?;
        self.path = PathBuf::new();
        self.fs.sync_dir(dir)?;
        Ok(stamp)
    }
}

impl Drop for UidListLock<'_> {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file = None;
            let _ = self.fs.remove_file(&self.path);
        }
    }
}

/// Brings the folder's UID list up to date with its files and returns the folder's messages.
/// New files get UIDs in name order (names start with the delivery time); vanished files lose
/// theirs. A missing or unreadable list is rebuilt with a new UIDVALIDITY (`now_secs`). The
/// list is only written under Dovecot's lock ([`UidListLock`]), after reading it and the
/// folder again, so Dovecot (or another Petrel) may work on the same folder at the same time.
pub fn sync(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
) -> io::Result<FolderView> {
    let lock = locks.get(dir);
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(sync_locked(fs, locks, dir, now_secs, None)?.view)
}

/// What [`sync_locked`] found and did.
pub(crate) struct Synced {
    /// The folder.
    pub(crate) view: FolderView,
    /// `Some` if the UID list was written: the written list's stamp, if it could be taken.
    pub(crate) list_written: Option<Option<Stamp>>,
}

/// [`sync`], with the folder's lock (`locks.get(dir)`) held by the caller, and the folder's
/// files if the caller has just read them ([`scan`]).
pub(crate) fn sync_locked(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
    files: Option<Files>,
) -> io::Result<Synced> {
    maildir::ensure(fs, dir)?;
    // A list this process has not seen made durable (a failed write, another process, a crash
    // during a write) is made durable before any UID from it is handed out.
    if !locks.is_durable(dir) {
        fs.sync_dir(dir)?;
        locks.set_durable(dir, true);
    }
    let list_path = dir.join(uidlist::FILE_NAME);
    let files = match files {
        Some(f) => f,
        None => scan(fs, dir)?,
    };
    let list_stamp = fs.stamp(&list_path)?;
    let mut merged = merge(read_list(fs, &list_path)?, &files, now_secs);
    drop(files);
    let mut list_written = None;
    if merged.changed {
        let dotlock = UidListLock::acquire(fs, dir, now_secs)?;
        // Another program may have changed the list meanwhile (under the same lock): then it
        // and the folder are read again. Files that came or went since they were listed are
        // seen at the next sync, which keeps the UIDs handed out here.
        if fs.stamp(&list_path)? != list_stamp {
            merged = merge(read_list(fs, &list_path)?, &scan(fs, dir)?, now_secs);
        }
        if merged.changed {
            if merged.forgotten {
                // Forget a UID only once its file's removal is durable: a removal a crash
                // undoes would bring the file back under a new UID with the same UIDVALIDITY.
                for subdir in ["new", "cur"] {
                    fs.sync_dir(&dir.join(subdir))?;
                }
            }
            locks.set_durable(dir, false);
            list_written = Some(dotlock.replace(dir, &merged.list.to_text())?);
            locks.set_durable(dir, true);
        }
    }
    let mut infos = Vec::with_capacity(merged.messages.len());
    for (uid, subdir, name) in merged.messages {
        let size = match size_from_name(&name) {
            Some(s) => s,
            None => locks.crlf_size(fs, dir, subdir, &name)?,
        };
        infos.push(MessageInfo {
            uid,
            subdir,
            name,
            size,
        });
    }
    Ok(Synced {
        view: FolderView {
            uidvalidity: merged.list.uidvalidity,
            next_uid: merged.list.next_uid,
            messages: infos,
        },
        list_written,
    })
}

/// Finds a message's current file by its base name (flags may have renamed it).
pub fn find(fs: &dyn FileSystem, dir: &Path, base: &str) -> io::Result<Option<PathBuf>> {
    if base.is_empty() || base.contains('/') || base.starts_with('.') {
        return Ok(None);
    }
    for subdir in ["cur", "new"] {
        let d = dir.join(subdir);
        for name in fs.read_dir(&d)? {
            if uidlist::base_name(&name) == base {
                return Ok(Some(d.join(name)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    /// Dovecot's `dovecot-uidlist.lock`: a fresh one is waited for (the list is then read
    /// again, so UIDs Dovecot gave meanwhile are kept), a stale one is taken over, and none is
    /// left behind.
    #[test]
    fn uidlist_lock_is_shared_with_dovecot() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("box");
        let (fs, locks) = (RealFs, FolderLocks::default());
        sync(&fs, &locks, &dir, 1000).unwrap();
        let lock = dir.join("dovecot-uidlist.lock");
        // "Dovecot" holds the lock, gives UID 1 to its own new file, and releases it by renaming
        // its new list over the old one.
        std::fs::write(dir.join("cur/1.dovecot:2,S"), "a\r\n").unwrap();
        std::fs::write(&lock, "").unwrap();
        std::fs::write(dir.join("new/2.other"), "b\r\n").unwrap();
        let holder = {
            let (lock, dir) = (lock.clone(), dir.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                std::fs::write(&lock, "3 V1000 N2 G0\n1 :1.dovecot:2,S\n").unwrap();
                std::fs::rename(&lock, dir.join("dovecot-uidlist")).unwrap();
            })
        };
        let view = sync(&fs, &locks, &dir, 1000).unwrap();
        holder.join().unwrap();
        let uids: Vec<(u32, &str)> = view
            .messages
            .iter()
            .map(|m| (m.uid, m.name.as_str()))
            .collect();
        assert_eq!(uids, [(1, "1.dovecot:2,S"), (2, "2.other")]);
        assert!(!lock.exists());
        // A lock left by a crashed program two minutes ago is taken over.
        std::fs::write(&lock, "").unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let old = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs((now - UIDLIST_LOCK_STALE_SECS - 10) as u64);
        std::fs::File::open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(dir.join("new/3.more"), "c\r\n").unwrap();
        let view = sync(&fs, &locks, &dir, now).unwrap();
        assert_eq!(view.messages.last().map(|m| m.uid), Some(3));
        assert!(!lock.exists());
        let list = std::fs::read_to_string(dir.join("dovecot-uidlist")).unwrap();
        assert!(list.contains("3 :3.more"), "{list}");
    }

    /// `S=` alone is the CRLF size only in names Petrel made; Courier's or procmail's `S=` is
    /// the length of an LF-only file, so those files are read (once) for their CRLF size.
    #[test]
    fn foreign_s_sizes_are_not_trusted() {
        assert!(petrel_name(
            "1795629232.P19678Q3Rb0778f9f.mail.test.example,S=440"
        ));
        assert!(!petrel_name("1275660208.M364837P9451.kurkku,S=1355"));
        assert!(!petrel_name("1.P2Q3Rxyz.host"));
        assert_eq!(size_from_name("1.P2Q3R000000ab.h,S=9:2,S"), Some(9));
        assert_eq!(size_from_name("1.M2P3.h,S=9,W=11:2,S"), Some(11));
        assert_eq!(size_from_name("1.M2P3.h,S=9:2,S"), None);

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("box");
        let (fs, locks) = (RealFs, FolderLocks::default());
        sync(&fs, &locks, &dir, 1000).unwrap();
        // A Courier-style delivery: LF line ends, `S=` the file's length.
        std::fs::write(dir.join("new/1700000000.M1P2.courier,S=8"), "a: b\n\nc\n").unwrap();
        let view = sync(&fs, &locks, &dir, 1000).unwrap();
        assert_eq!(view.messages[0].size, 11);
        // Remembered: a later sync does not read the file again (it would see 3 bytes now).
        std::fs::write(dir.join("new/1700000000.M1P2.courier,S=8"), "xyz").unwrap();
        assert_eq!(sync(&fs, &locks, &dir, 1000).unwrap().messages[0].size, 11);
    }

    #[test]
    fn assigns_keeps_and_forgets_uids() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("box");
        let fs = RealFs;
        let locks = FolderLocks::default();
        let view = sync(&fs, &locks, &dir, 1000).unwrap();
        assert_eq!(
            (view.uidvalidity, view.next_uid, view.messages.len()),
            (1000, 1, 0)
        );
        std::fs::write(dir.join("new/2.b,S=4"), "abcd").unwrap();
        std::fs::write(dir.join("new/1.a"), "x\ny\n").unwrap();
        let view = sync(&fs, &locks, &dir, 2000).unwrap();
        assert_eq!(view.uidvalidity, 1000);
        let got: Vec<(u32, &str, u64)> = view
            .messages
            .iter()
            .map(|m| (m.uid, m.name.as_str(), m.size))
            .collect();
        assert_eq!(got, [(1, "1.a", 6), (2, "2.b,S=4", 4)]);
        // A flag change renames; a deletion forgets; a new file gets the next UID.
        std::fs::rename(dir.join("new/2.b,S=4"), dir.join("cur/2.b,S=4:2,S")).unwrap();
        std::fs::remove_file(dir.join("new/1.a")).unwrap();
        std::fs::write(dir.join("new/0.c"), "z").unwrap();
        let view = sync(&fs, &locks, &dir, 3000).unwrap();
        let got: Vec<(u32, &str)> = view
            .messages
            .iter()
            .map(|m| (m.uid, m.name.as_str()))
            .collect();
        assert_eq!(got, [(2, "2.b,S=4:2,S"), (3, "0.c")]);
        assert_eq!(
            find(&fs, &dir, "2.b,S=4").unwrap(),
            Some(dir.join("cur/2.b,S=4:2,S"))
        );
        assert_eq!(find(&fs, &dir, "../x").unwrap(), None);
        let text = std::fs::read_to_string(dir.join(uidlist::FILE_NAME)).unwrap();
        assert!(text.starts_with("3 V1000 N4 G"), "{text}");
    }
}

/// Compares names with runs of digits taken as numbers: `1.Q9.h` < `1.Q10.h`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    runs_cmp(name_runs(a), name_runs(b)).then_with(|| a.cmp(b))
}

/// The runs of digits and of other characters of a name: (digits?, run).
fn name_runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some((digit, run))
    })
}

/// [`natural_cmp`] on runs, `Equal` where it falls back to the text.
fn runs_cmp<'a>(
    mut x: impl Iterator<Item = (bool, &'a str)>,
    mut y: impl Iterator<Item = (bool, &'a str)>,
) -> std::cmp::Ordering {
    loop {
        match (x.next(), y.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                let order = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
            (Some((_, p)), Some((_, q))) => {
                let order = p.cmp(q);
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod natural_tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(natural_cmp("1.P5Q9R0.h", "1.P5Q10R0.h"), Ordering::Less);
        assert_eq!(natural_cmp("999.P5Q1.h", "1000.P5Q0.h"), Ordering::Less);
        assert_eq!(natural_cmp("1.a", "1.b"), Ordering::Less);
        assert_eq!(
            natural_cmp("1.Q007", "1.Q7"),
            Ordering::Less,
            "ties fall back to text"
        );
        let mut v = vec!["1.Q10.h", "1.Q2.h", "1.Q1.h", "2.Q0.h"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["1.Q1.h", "1.Q2.h", "1.Q10.h", "2.Q0.h"]);
    }
}
