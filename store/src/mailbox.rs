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
    sizes: Mutex<RememberedSizes>,
    /// The IMAP index of the folders synced last ([`crate::index`]), with what it was read
    /// from, so an unchanged folder is not read again; at most [`MAX_CACHED_FOLDERS`].
    pub(crate) indexes: Mutex<HashMap<PathBuf, Arc<crate::index::Cached>>>,
}

/// CRLF sizes read from files, by folder directory and base name, and how many in all.
type RememberedSizes = (HashMap<PathBuf, HashMap<String, u64>>, usize);

/// Most folders whose index is kept in memory; beyond it the memory is cleared. Each busy
/// user's INBOX is one: with fewer than the users working at once, every SELECT read its
/// folder again (the 50-client IMAP benchmark spent most of its CPU there). The memory is
/// bounded by messages as well (`index::MAX_CACHED_MESSAGES`).
pub const MAX_CACHED_FOLDERS: usize = 1024;

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

    /// The CRLF size this process read before for a file whose name does not tell it.
    fn remembered_size(&self, dir: &Path, name: &str) -> Option<u64> {
        let sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        sizes.0.get(dir)?.get(uidlist::base_name(name)).copied()
    }

    /// Remembers a CRLF size read from a file (see [`FolderLocks::remembered_size`]).
    fn remember_size(&self, dir: &Path, name: &str, size: u64) {
        let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        if sizes.1 >= MAX_REMEMBERED_SIZES {
            *sizes = Default::default();
        }
        let folder = match sizes.0.get_mut(dir) {
            Some(f) => f,
            None => sizes.0.entry(dir.to_path_buf()).or_default(),
        };
        if folder
            .insert(uidlist::base_name(name).to_string(), size)
            .is_none()
        {
            sizes.1 += 1;
        }
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
    name_field(name, "W=")
        .or_else(|| name_field(name, "S=").filter(|_| petrel_name(uidlist::base_name(name))))
}

/// A numeric `KEY=` field of a Maildir name (`S=`, `W=`), after the unique part.
fn name_field(name: &str, key: &str) -> Option<u64> {
    uidlist::base_name(name)
        .split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix(key)?.parse().ok())
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
    Ok((bytes.len() + bare_lfs(&bytes)) as u64)
}

/// The LFs of `bytes` not preceded by CR, counted in blocks of 255 with byte counters so the
/// compiler makes vector code of it (a byte at a time with a look-back was a tenth of a big
/// folder's first sync).
fn bare_lfs(bytes: &[u8]) -> usize {
    let Some((&first, rest)) = bytes.split_first() else {
        return 0;
    };
    let mut total = usize::from(first == b'\n');
    let before = &bytes[..bytes.len() - 1];
    for (prev, this) in before.chunks(255).zip(rest.chunks(255)) {
        let mut n: u8 = 0;
        for (&p, &b) in prev.iter().zip(this) {
            n += u8::from((b == b'\n') & (p != b'\r'));
        }
        total += usize::from(n);
    }
    total
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

/// [`scan`], with the names of `cur/` as listed before if they are known to be unchanged.
pub(crate) fn scan_reusing(
    fs: &dyn FileSystem,
    dir: &Path,
    cur: Option<&[String]>,
) -> io::Result<Files> {
    let Some(cur) = cur else {
        return scan(fs, dir);
    };
    let names = fs.read_dir(&dir.join("new"))?;
    let mut files = Vec::with_capacity(names.len() + cur.len());
    files.extend(
        names
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .map(|n| ("new", n)),
    );
    files.extend(cur.iter().map(|n| ("cur", n.clone())));
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

fn merge(stored: Option<UidList>, mut files: Files, now_secs: i64) -> Merged {
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
    // (UID, index into `files`) in UID order; the names are moved, not copied, at the end.
    let mut order: Vec<(u32, usize)> = Vec::with_capacity(present.len());
    let mut kept = Vec::with_capacity(list.entries.len());
    let mut forgotten = false;
    for mut entry in list.entries.drain(..) {
        match present.remove(uidlist::base_name(&entry.name)) {
            Some(i) => {
                order.push((entry.uid, i));
                if files[i].1 != entry.name {
                    changed = true;
                    entry.name.clone_from(&files[i].1);
                }
                kept.push(entry);
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
    // The leading number (the delivery second) of each name is parsed once: where two names'
    // differ, it alone decides, as it would in [`natural_cmp`]; otherwise the whole names do.
    let mut keyed: Vec<(Option<u64>, usize)> = new
        .into_iter()
        .map(|i| (leading_number(&files[i].1), i))
        .collect();
    keyed.sort_unstable_by(|&(x, a), &(y, b)| match (x, y) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => natural_cmp(&files[a].1, &files[b].1),
    });
    let new: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    for i in new {
        let uid = list.next_uid;
        list.next_uid = list.next_uid.saturating_add(1);
        order.push((uid, i));
        kept.push(UidEntry {
            uid,
            ext: String::new(),
            name: files[i].1.clone(),
        });
        changed = true;
    }
    list.entries = kept;
    let messages = order
        .into_iter()
        .map(|(uid, i)| (uid, files[i].0, std::mem::take(&mut files[i].1)))
        .collect();
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
    Ok(sync_locked(fs, locks, dir, now_secs, None, &[], false)?.view)
}

/// What [`sync_locked`] found and did.
pub(crate) struct Synced {
    /// The folder.
    pub(crate) view: FolderView,
    /// With `want_dates`: each message's INTERNALDATE, in the order of `view.messages`.
    pub(crate) dates: Vec<Date>,
    /// `Some` if the UID list was written: the written list's stamp, if it could be taken.
    pub(crate) list_written: Option<Option<Stamp>>,
}

/// [`sync`], with the folder's lock (`locks.get(dir)`) held by the caller, and the folder's
/// files if the caller has just read them ([`scan`]); what is `known` of the messages from
/// the last sync is not looked up again, and with `want_dates` each message's INTERNALDATE
/// (its file's mtime) is found too.
pub(crate) fn sync_locked(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    now_secs: i64,
    files: Option<Files>,
    known: &[Known<'_>],
    want_dates: bool,
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
    let mut merged = merge(read_list(fs, &list_path)?, files, now_secs);
    let mut list_written = None;
    if merged.changed {
        let dotlock = UidListLock::acquire(fs, dir, now_secs)?;
        // Another program may have changed the list meanwhile (under the same lock): then it
        // and the folder are read again. Files that came or went since they were listed are
        // seen at the next sync, which keeps the UIDs handed out here.
        if fs.stamp(&list_path)? != list_stamp {
            merged = merge(read_list(fs, &list_path)?, scan(fs, dir)?, now_secs);
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
    let (infos, dates) = learn_facts(fs, locks, dir, merged.messages, known, want_dates)?;
    Ok(Synced {
        view: FolderView {
            uidvalidity: merged.list.uidvalidity,
            next_uid: merged.list.next_uid,
            messages: infos,
        },
        dates,
        list_written,
    })
}

/// What the last sync learned of one message, to be carried into the next sync as long as the
/// message keeps its UID and base name (a Maildir file's content never changes; flag renames
/// keep its mtime): its CRLF size and INTERNALDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known<'a> {
    /// The UID.
    pub(crate) uid: u32,
    /// Its file name then.
    pub(crate) name: &'a str,
    /// Its CRLF size.
    pub(crate) size: u64,
    /// Its INTERNALDATE (Unix seconds), `None` if not known for sure.
    pub(crate) date: Option<i64>,
}

/// A message's INTERNALDATE from a sync: the file's mtime, or (`guessed`) the time its name
/// starts with when the file vanished before it could be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Date {
    /// Unix seconds.
    pub(crate) unix: i64,
    /// Whether it is the name's time, to be looked up again at the next sync.
    pub(crate) guessed: bool,
}

/// Files at or above which the per-file work of a sync is shared among threads.
const PARALLEL_FILES: usize = 2_000;
/// Most threads a sync uses for its per-file work.
const MAX_THREADS: usize = 4;

/// One file's work: (index into the messages, read its size?, stat its date?).
type Job = (usize, bool, bool);

/// The sizes (and, with `want_dates`, INTERNALDATEs) of the merged messages: carried from
/// `known` (ascending UIDs) where the UID kept its base name, taken from the name where it
/// tells the size, otherwise read from the files, many files on several threads. A file gone
/// before it could be read (renamed or removed by another program) gets the size its name
/// tells (or 0) and a guessed date; the next sync looks again.
fn learn_facts(
    fs: &dyn FileSystem,
    locks: &FolderLocks,
    dir: &Path,
    messages: Vec<(u32, &'static str, String)>,
    known: &[Known<'_>],
    want_dates: bool,
) -> io::Result<(Vec<MessageInfo>, Vec<Date>)> {
    let mut infos = Vec::with_capacity(messages.len());
    let mut dates = Vec::with_capacity(if want_dates { messages.len() } else { 0 });
    let mut jobs: Vec<Job> = Vec::new();
    let mut known = known.iter().peekable();
    for (i, (uid, subdir, name)) in messages.into_iter().enumerate() {
        while known.next_if(|k| k.uid < uid).is_some() {}
        let carried = known
            .next_if(|k| k.uid == uid)
            .filter(|k| uidlist::base_name(k.name) == uidlist::base_name(&name));
        let size = match carried {
            Some(k) => Some(k.size),
            None => size_from_name(&name).or_else(|| locks.remembered_size(dir, &name)),
        };
        let date = carried.and_then(|k| k.date);
        if want_dates {
            dates.push(Date {
                unix: date.unwrap_or(0),
                guessed: false,
            });
        }
        if size.is_none() || (want_dates && date.is_none()) {
            jobs.push((i, size.is_none(), want_dates && date.is_none()));
        }
        infos.push(MessageInfo {
            uid,
            subdir,
            name,
            size: size.unwrap_or(0),
        });
    }
    let threads = if jobs.len() >= PARALLEL_FILES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_THREADS)
    } else {
        1
    };
    let results = if threads > 1 {
        let chunk = jobs.len().div_ceil(threads);
        let infos = &infos;
        std::thread::scope(|s| {
            let parts: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| s.spawn(move || look_at(fs, dir, infos, part)))
                .collect();
            let mut all = Vec::with_capacity(jobs.len());
            for part in parts {
                all.extend(
                    part.join()
                        .map_err(|_| io::Error::other("file worker panicked"))??,
                );
            }
            Ok::<_, io::Error>(all)
        })?
    } else {
        look_at(fs, dir, &infos, &jobs)?
    };
    for (&(i, _, _), (size, date)) in jobs.iter().zip(results) {
        let m = &mut infos[i];
        if let Some(size) = size {
            match size {
                Some(size) => {
                    locks.remember_size(dir, &m.name, size);
                    m.size = size;
                }
                // Gone before it could be read: the length its writer gave in `S=`.
                None => m.size = name_field(&m.name, "S=").unwrap_or(0),
            }
        }
        if let Some(date) = date {
            dates[i] = match date {
                Some(unix) => Date {
                    unix,
                    guessed: false,
                },
                None => Date {
                    unix: name_time(&m.name),
                    guessed: true,
                },
            };
        }
    }
    Ok((infos, dates))
}

/// What a file told for each job: `Some(Some(size))` if its size was asked and read,
/// `Some(None)` if it was asked but the file is gone; the same for its date (mtime).
type Looked = (Option<Option<u64>>, Option<Option<i64>>);

fn look_at(
    fs: &dyn FileSystem,
    dir: &Path,
    infos: &[MessageInfo],
    jobs: &[Job],
) -> io::Result<Vec<Looked>> {
    let gone = |r: io::Result<u64>| match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let mut out = Vec::with_capacity(jobs.len());
    for &(i, size, date) in jobs {
        let m = &infos[i];
        let path = dir.join(m.subdir).join(&m.name);
        let date = if date {
            Some(
                fs.stamp(&path)?
                    .map(|st| i64::try_from(st.modified_ns.div_euclid(1_000_000_000)).unwrap_or(0)),
            )
        } else {
            None
        };
        let size = if size {
            Some(gone(crlf_size(fs, &path))?)
        } else {
            None
        };
        out.push((size, date));
    }
    Ok(out)
}

/// The time a Maildir name starts with (its delivery), 0 if none.
fn name_time(name: &str) -> i64 {
    name.split('.')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
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

    /// A big folder's per-file work (sizes of foreign files, INTERNALDATEs) is shared among
    /// threads and gives what one file at a time gives; what the last sync learned is
    /// carried, not looked up again; a file gone between listing and looking gets the size
    /// its name tells and the time its name starts with, marked as guessed.
    #[test]
    fn facts_of_a_big_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("box");
        let (fs, locks) = (RealFs, FolderLocks::default());
        sync(&fs, &locks, &dir, 1000).unwrap();
        let n = PARALLEL_FILES + 500;
        for i in 0..n {
            // Every other file is a Courier-style LF-only delivery whose `S=` is not trusted.
            let (name, body) = if i % 2 == 0 {
                (
                    format!("{}.M{i}P1.courier,S=6", 1_600_000_000 + i),
                    "ab\ncd\n",
                )
            } else {
                (
                    format!("{}.M{i}P1.other,W=8", 1_600_000_000 + i),
                    "a\r\nbc\r\n",
                )
            };
            let path = dir.join("cur").join(format!("{name}:2,S"));
            std::fs::write(&path, body).unwrap();
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000 + i as u64);
            std::fs::File::open(&path).unwrap().set_modified(t).unwrap();
        }
        let lock = locks.get(&dir);
        let _guard = lock.lock().unwrap();
        let a = sync_locked(&fs, &locks, &dir, 2000, None, &[], true).unwrap();
        assert_eq!(a.view.messages.len(), n);
        for (i, (m, d)) in a.view.messages.iter().zip(&a.dates).enumerate() {
            assert_eq!(m.uid as usize, i + 1, "arrival order");
            assert_eq!(m.size, 8, "{}", m.name);
            assert_eq!(
                *d,
                Date {
                    unix: 1_500_000_000 + i as i64,
                    guessed: false
                }
            );
        }
        // Carried: a known date is not looked up again (the file's mtime changed meanwhile).
        let first = &a.view.messages[0];
        std::fs::File::open(dir.join("cur").join(&first.name))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH)
            .unwrap();
        let known: Vec<Known<'_>> = a
            .view
            .messages
            .iter()
            .zip(&a.dates)
            .map(|(m, d)| Known {
                uid: m.uid,
                name: &m.name,
                size: 99,
                date: Some(d.unix + 1),
            })
            .collect();
        let b = sync_locked(&fs, &locks, &dir, 3000, None, &known, true).unwrap();
        assert!(b.view.messages.iter().all(|m| m.size == 99));
        assert_eq!(b.dates[0].unix, 1_500_000_001);
        // Listed, then gone before it was looked at.
        let mut files = scan(&fs, &dir).unwrap();
        files.push(("new", "1700000000.M9P9.gone,S=42".to_string()));
        let c = sync_locked(&fs, &locks, &dir, 4000, Some(files), &known, true).unwrap();
        let gone = c.view.messages.last().unwrap();
        assert_eq!((gone.uid as usize, gone.size), (n + 1, 42));
        assert_eq!(
            *c.dates.last().unwrap(),
            Date {
                unix: 1_700_000_000,
                guessed: true
            }
        );
        // The next sync forgets it.
        let d = sync_locked(&fs, &locks, &dir, 5000, None, &known, true).unwrap();
        assert_eq!(d.view.messages.len(), n);
    }

    #[test]
    fn bare_lfs_are_counted() {
        let slow = |b: &[u8]| {
            (0..b.len())
                .filter(|&i| b[i] == b'\n' && (i == 0 || b[i - 1] != b'\r'))
                .count()
        };
        for text in [&b""[..], b"\n", b"\r\n", b"a\nb\r\n\n\r\r\n\n", b"\r"] {
            assert_eq!(bare_lfs(text), slow(text), "{text:?}");
        }
        // Across the 255-byte blocks, and more than 255 in one block's counter.
        let long: Vec<u8> = (0..5000u32)
            .map(|i| match i % 7 {
                0 => b'\r',
                1 | 3 => b'\n',
                _ => b'x',
            })
            .collect();
        assert_eq!(bare_lfs(&long), slow(&long));
        assert_eq!(bare_lfs(&[b'\n'; 1000]), 1000);
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

/// The run of digits a name starts with, as a number (`None`: none, or too long).
fn leading_number(name: &str) -> Option<u64> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    name[..digits].parse().ok()
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
