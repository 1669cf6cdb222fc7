//! Appending one message to an mbox file the way other mail software expects: mboxrd format,
//! a dotlock plus an fcntl write lock (the pair mutt, Dovecot, procmail and Python's `mailbox`
//! take), a bounded buffer however big the message, and an fsync before returning.
//!
//! Lock order is (0) an in-process lock per path, (1) the dotlock `PATH.lock`, (2) a POSIX
//! `fcntl` write lock on the whole file; all three are held while writing and released in reverse
//! order by RAII guards on every path. Step (0) exists because POSIX record locks belong to the
//! *process*: two threads of Petrel would not exclude each other with them, and closing *any*
//! descriptor of the file drops the process's lock. So in this process only code holding the
//! in-process lock may open the mbox; this module opens it only after taking it.
//!
//! Unlike Maildir this goes straight to [`std::fs`], not through [`crate::fs::FileSystem`]:
//! locking and hard links are what this format is about, and the simulated file system has
//! neither.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use petrel_core::mbox::{MboxrdEncoder, write_from_line};
use rustix::fs::{FlockOperation, fcntl_lock};

/// Options for one append.
#[derive(Debug, Clone)]
pub struct MboxAppend<'a> {
    /// Envelope sender for the `From ` line; empty = null sender, written as MAILER-DAEMON.
    pub sender: &'a str,
    /// Arrival time (unix seconds, UTC) for the `From ` line's asctime date.
    pub received: u64,
    /// Maildir-style flag letters (`S` seen, `R` answered, `F` flagged, `T` deleted, `D` draft) to record as
    /// `Status:`/`X-Status:` headers, empty for a new message.
    pub flags: &'a str,
    /// How long to wait for the locks before giving up with `ErrorKind::WouldBlock`.
    pub lock_timeout: std::time::Duration,
}

/// A dotlock whose file was last modified longer ago than this is left over from a crash and is
/// removed (procmail and mutt use the same five minutes).
pub const STALE_DOTLOCK_AGE: Duration = Duration::from_secs(300);

/// Bytes read from the message, and written to the file, at a time.
const CHUNK: usize = 64 * 1024;
/// The longest sleep between two attempts at a busy lock.
const MAX_POLL: Duration = Duration::from_millis(50);
/// The last representable asctime year, 9999-12-31T23:59:59Z.
const MAX_RECEIVED: u64 = 253_402_300_799;

/// Appends the RFC 5322 message read from `message` (CRLF or LF line ends) to the mbox at `path`,
/// creating the file (mode 0600) if missing. Returns only once the data is fsynced (and, for a new
/// file, its directory entry too). On any error the file is truncated back to its previous length.
///
/// The message is written in mboxrd form: a `From SENDER DATE` line, LF line ends, one more `>`
/// on every line matching `^>*From `, `Status:`/`X-Status:` for `options.flags` replacing any the
/// message carried (none at all for empty flags: the message is new), and one empty line after
/// it; if the file did not end with an empty line, the newlines needed go first. Memory use is
/// bounded (a few 64 KiB buffers) whatever the message size.
///
/// Locks, all held during the write and released before returning: an in-process lock, the
/// NFS-safe dotlock `PATH.lock` (stale after [`STALE_DOTLOCK_AGE`]; skipped with a warning if the
/// directory is not writable), and a POSIX `fcntl` write lock on the whole file, which conflicts
/// with `fcntl.lockf` (Python's `mailbox`), mutt's and Dovecot's fcntl locks. If they are not all
/// taken within `options.lock_timeout` the error kind is [`ErrorKind::WouldBlock`] and the file
/// is untouched. Returns the number of bytes added to the file. A file this call created is
/// left empty (a valid empty mbox) if the append then fails.
pub fn append(
    path: &Path,
    options: &MboxAppend<'_>,
    message: &mut dyn std::io::Read,
) -> std::io::Result<u64> {
    if options.received > MAX_RECEIVED {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("arrival time {} is past the year 9999", options.received),
        ));
    }
    let deadline = Instant::now()
        .checked_add(options.lock_timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    // Declaration order is acquisition order; guards drop in reverse.
    let _process = ProcessLock::acquire(path, deadline)?;
    let _dotlock = DotLock::acquire(path, deadline)?;
    let locked = LockedFile::open(path, deadline)?;
    let old_len = locked.file.metadata()?.len();
    match write_at_end(&locked.file, old_len, options, message) {
        Ok(written) => Ok(written),
        Err(error) => {
            // Undo the partial message; the original error is the one worth reporting.
            if let Err(undo) = locked
                .file
                .set_len(old_len)
                .and_then(|()| locked.file.sync_all())
            {
                tracing::error!(path = %path.display(), %undo, "mbox: could not truncate a failed append");
            }
            Err(error)
        }
    }
}

/// Writes separator padding, the `From ` line and the encoded message from `old_len` on, then
/// fsyncs. Returns the bytes written.
fn write_at_end(
    file: &File,
    old_len: u64,
    options: &MboxAppend<'_>,
    message: &mut dyn Read,
) -> io::Result<u64> {
    let mut out = Vec::with_capacity(2 * CHUNK);
    out.extend_from_slice(separator_padding(file, old_len)?);
    // Checked against MAX_RECEIVED by the caller, so it fits.
    write_from_line(&mut out, options.sender, options.received as i64);
    let mut encoder = MboxrdEncoder::new(options.flags, true);
    let mut buf = vec![0; CHUNK];
    let mut pos = old_len;
    loop {
        let n = match message.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        encoder.encode(&buf[..n], &mut out);
        if out.len() >= CHUNK {
            file.write_all_at(&out, pos)?;
            pos += out.len() as u64;
            out.clear();
        }
    }
    encoder.finish(&mut out);
    file.write_all_at(&out, pos)?;
    pos += out.len() as u64;
    file.sync_all()?;
    Ok(pos - old_len)
}

/// What must precede a new `From ` line so that it starts a message: nothing at the start of the
/// file or after an empty line, otherwise the missing line end(s).
fn separator_padding(file: &File, len: u64) -> io::Result<&'static [u8]> {
    let mut tail = [0u8; 3];
    let n = len.min(3) as usize;
    file.read_exact_at(&mut tail[3 - n..], len - n as u64)?;
    let tail = &tail[3 - n..];
    Ok(
        if n == 0
            || tail.ends_with(b"\n\n")
            || tail.ends_with(b"\n\r\n")
            || tail == b"\n"
            || tail == b"\r\n"
        {
            b""
        } else if tail.ends_with(b"\n") {
            b"\n"
        } else {
            b"\n\n"
        },
    )
}

/// Sleeps until the next attempt at a busy lock, or fails with `WouldBlock` past `deadline`.
fn wait_or_give_up(
    deadline: Instant,
    poll: &mut Duration,
    what: &dyn Fn() -> String,
) -> io::Result<()> {
    let now = Instant::now();
    if now >= deadline {
        return Err(io::Error::new(ErrorKind::WouldBlock, what()));
    }
    std::thread::sleep((*poll).min(deadline - now));
    *poll = (*poll * 2).min(MAX_POLL);
    Ok(())
}

/// Paths of mbox files some thread of this process is appending to.
static IN_USE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

/// Excludes other threads of this process from one mbox (fcntl locks cannot, see the module doc).
struct ProcessLock {
    key: PathBuf,
}

impl ProcessLock {
    fn acquire(path: &Path, deadline: Instant) -> io::Result<ProcessLock> {
        // The same file reached by another spelling of its directory must get the same key.
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "mbox path has no file name"))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let key = dir.canonicalize()?.join(name);
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        while in_use.contains(&key) {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    ErrorKind::WouldBlock,
                    format!("mbox {} is busy in this process", key.display()),
                ));
            }
            in_use = RELEASED
                .wait_timeout(in_use, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        in_use.push(key.clone());
        Ok(ProcessLock { key })
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        in_use.retain(|k| k != &self.key);
        RELEASED.notify_all();
    }
}

/// The dotlock `PATH.lock` we created; removed on drop if it is still ours.
struct DotLock {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DotLock {
    /// Takes `PATH.lock` the NFS-safe way: a uniquely named file in the same directory is
    /// hard-linked to the lock name; we own the lock if `link` succeeds or, because NFS may report
    /// failure for a link that was made, if the temporary file's link count has become 2.
    /// `Ok(None)` when the directory is not writable (the fcntl lock alone then protects).
    fn acquire(mbox: &Path, deadline: Instant) -> io::Result<Option<DotLock>> {
        let mut lock_path = OsString::from(mbox.as_os_str());
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace(['/', '.'], "_"))
            .unwrap_or_else(|_| "localhost".into());
        let mut poll = Duration::from_millis(5);
        loop {
            let mut temp = lock_path.clone().into_os_string();
            temp.push(format!(
                ".{host}.{}.{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let temp = PathBuf::from(temp);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
            {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    tracing::warn!(
                        lock = %lock_path.display(),
                        "mbox: directory not writable, no dotlock; relying on the fcntl lock alone"
                    );
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            let linked = std::fs::hard_link(&temp, &lock_path);
            let temp_meta = std::fs::metadata(&temp);
            let _ = std::fs::remove_file(&temp);
            let temp_meta = temp_meta?;
            match linked {
                Ok(()) => {}
                Err(_) if temp_meta.nlink() == 2 => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    match std::fs::metadata(&lock_path) {
                        Ok(held) => {
                            let age = held
                                .modified()
                                .ok()
                                .and_then(|m| SystemTime::now().duration_since(m).ok())
                                .unwrap_or_default();
                            if age > STALE_DOTLOCK_AGE {
                                // Left by a crashed process; procmail and mutt do the same. Two
                                // takers may both see it stale: the second then removes the
                                // first's fresh lock, a race those programs accept too.
                                tracing::warn!(lock = %lock_path.display(), age_secs = age.as_secs(), "mbox: removing stale dotlock");
                                match std::fs::remove_file(&lock_path) {
                                    Ok(()) => continue,
                                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                        // Released between our link and our look: try again at once.
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                    wait_or_give_up(deadline, &mut poll, &|| {
                        format!(
                            "mbox dotlock {} is held by another process",
                            lock_path.display()
                        )
                    })?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            return Ok(Some(DotLock {
                path: lock_path,
                dev: temp_meta.dev(),
                ino: temp_meta.ino(),
            }));
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Only remove it if it is still the file we linked (not one someone took after judging
        // ours stale).
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::error!(lock = %self.path.display(), %e, "mbox: could not remove dotlock");
                }
            }
            Ok(_) => {
                tracing::warn!(lock = %self.path.display(), "mbox: dotlock was replaced while held")
            }
            Err(e) => {
                tracing::warn!(lock = %self.path.display(), %e, "mbox: dotlock vanished while held")
            }
        }
    }
}

/// The mbox opened read-write with a POSIX write lock on the whole file; unlocked on drop.
struct LockedFile {
    file: File,
}

impl LockedFile {
    /// Opens (creating if missing, mode 0600, directory fsynced) and locks the file at `path`. If
    /// the path names another file once the lock is ours (replaced or removed meanwhile), starts
    /// over with the new one.
    fn open(path: &Path, deadline: Instant) -> io::Result<LockedFile> {
        loop {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(file) => {
                    sync_parent_dir(path)?;
                    file
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    match OpenOptions::new().read(true).write(true).open(path) {
                        Ok(file) => file,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let mut poll = Duration::from_millis(5);
            loop {
                match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break,
                    Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                        wait_or_give_up(deadline, &mut poll, &|| {
                            format!("mbox {} is fcntl-locked by another process", path.display())
                        })?;
                    }
                    Err(e) if e == rustix::io::Errno::INTR => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let locked = LockedFile { file };
            let ours = locked.file.metadata()?;
            match std::fs::metadata(path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => return Ok(locked),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Closing the descriptor would release it too; unlocking first says what we mean.
        let _ = fcntl_lock(&self.file, FlockOperation::NonBlockingUnlock);
    }
}

/// Makes a newly created file's directory entry durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_core::mbox::parse;

    /// 2026-11-25 15:12:40 UTC.
    const WED: u64 = 1_795_619_560;

    fn opts<'a>(sender: &'a str, flags: &'a str) -> MboxAppend<'a> {
        MboxAppend {
            sender,
            received: WED,
            flags,
            lock_timeout: Duration::from_secs(5),
        }
    }

    fn add(path: &Path, sender: &str, flags: &str, message: &[u8]) -> io::Result<u64> {
        append(path, &opts(sender, flags), &mut &message[..])
    }

    #[test]
    fn writes_mboxrd_with_from_line_quoting_and_lf_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        let message = b"Subject: hi\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\nFrom\r\n x From y\r\nend";
        let n = add(&path, "alice@example.org", "", message).unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(
            String::from_utf8(file.clone()).unwrap(),
            "From alice@example.org Wed Nov 25 15:12:40 2026\nSubject: hi\n\n>From the start\n\
             >>From quoted\n>>>From twice\nFrom\n x From y\nend\n\n"
        );
        assert_eq!(n, file.len() as u64);
        let n2 = add(&path, "", "", b"Subject: bounce\n\nFrom: nobody\n").unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(n + n2, file.len() as u64);
        assert!(
            file.ends_with(b"end\n\nFrom MAILER-DAEMON Wed Nov 25 15:12:40 2026\nSubject: bounce\n\nFrom: nobody\n\n"),
            "{}",
            String::from_utf8_lossy(&file)
        );
        let parsed = parse(&file);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].message,
            b"Subject: hi\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\nFrom\r\n x From y\r\nend\r\n"
        );
        assert_eq!(parsed[0].date, Some(WED as i64));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dir.path().join("inbox.lock").exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    #[test]
    fn existing_file_without_final_newline_or_blank_line_is_padded() {
        for (before, padding) in [
            (
                &b"From a Mon Jan  5 00:00:00 2026\n\nbody"[..],
                &b"\n\n"[..],
            ),
            (b"From a Mon Jan  5 00:00:00 2026\n\nbody\n", b"\n"),
            (b"From a Mon Jan  5 00:00:00 2026\r\n\r\nbody\r\n\r\n", b""),
            (b"From a Mon Jan  5 00:00:00 2026\n\nbody\n\n", b""),
            (b"", b""),
            (b"x", b"\n\n"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mbox");
            std::fs::write(&path, before).unwrap();
            let n = add(&path, "b@x", "", b"Subject: two\n\nsecond\n").unwrap();
            let file = std::fs::read(&path).unwrap();
            let mut expected = before.to_vec();
            expected.extend_from_slice(padding);
            expected.extend_from_slice(
                b"From b@x Wed Nov 25 15:12:40 2026\nSubject: two\n\nsecond\n\n",
            );
            assert_eq!(file, expected, "{}", String::from_utf8_lossy(before));
            assert_eq!(n as usize, file.len() - before.len());
            if before.starts_with(b"From ") {
                let parsed = parse(&file);
                assert_eq!(parsed.len(), 2);
                assert_eq!(parsed[0].message, b"\r\nbody\r\n");
                assert_eq!(parsed[1].message, b"Subject: two\r\n\r\nsecond\r\n");
            }
        }
    }

    #[test]
    fn status_headers_come_from_flags_and_replace_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let message =
            b"Status: O\r\nSubject: s\r\nX-Status: D\r\n\r\nStatus: in the body stays\r\n";
        add(&path, "a@x", "FRS", message).unwrap();
        add(&path, "a@x", "", message).unwrap();
        let file = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            file,
            "From a@x Wed Nov 25 15:12:40 2026\nSubject: s\nStatus: RO\nX-Status: FA\n\n\
             Status: in the body stays\n\n\
             From a@x Wed Nov 25 15:12:40 2026\nSubject: s\n\nStatus: in the body stays\n\n"
        );
        let parsed = parse(file.as_bytes());
        assert_eq!(parsed[0].flags, "FRS");
        assert_eq!(parsed[1].flags, "");
    }

    /// Yields `limit` bytes of `line` repeated, then fails.
    struct FailingReader {
        left: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("client went away"));
            }
            let n = buf.len().min(self.left);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = if i % 64 == 63 { b'\n' } else { b'a' };
            }
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_failing_reader_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        add(&path, "a@x", "", b"Subject: kept\n\nkept").unwrap();
        let before = std::fs::read(&path).unwrap();
        let mut reader = FailingReader {
            left: 5 * CHUNK + 17,
        };
        let error = append(&path, &opts("b@x", ""), &mut reader).unwrap_err();
        assert_eq!(error.to_string(), "client went away");
        assert_eq!(
            reader.left, 0,
            "several chunks were written before the failure"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("mbox.lock").exists());
        // The locks were released: the next append works.
        add(&path, "c@x", "", b"Subject: next\n\n").unwrap();
        assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 2);
    }

    #[test]
    fn a_stale_dotlock_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let lock = dir.path().join("mbox.lock");
        let f = File::create(&lock).unwrap();
        f.set_modified(SystemTime::now() - STALE_DOTLOCK_AGE - Duration::from_secs(60))
            .unwrap();
        drop(f);
        let started = Instant::now();
        add(&path, "a@x", "", b"Subject: s\n\n").unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!lock.exists());
        assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 1);
    }

    #[test]
    fn a_fresh_dotlock_makes_append_wait_then_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        std::fs::write(&path, b"").unwrap();
        let lock = dir.path().join("mbox.lock");
        std::fs::write(&lock, b"12345\n").unwrap();
        let options = MboxAppend {
            lock_timeout: Duration::from_millis(400),
            ..opts("a@x", "")
        };
        let started = Instant::now();
        let error = append(&path, &options, &mut &b"Subject: s\n\n"[..]).unwrap_err();
        let waited = started.elapsed();
        assert_eq!(error.kind(), ErrorKind::WouldBlock, "{error}");
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
        assert_eq!(
            std::fs::read(&lock).unwrap(),
            b"12345\n",
            "someone else's lock is kept"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        // Released while we wait: the append goes through after the release.
        let releaser = std::thread::spawn({
            let lock = lock.clone();
            move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::remove_file(&lock).unwrap();
                Instant::now()
            }
        });
        add(&path, "a@x", "", b"Subject: s\n\n").unwrap();
        let done = Instant::now();
        let released = releaser.join().unwrap();
        assert!(done >= released);
        assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 1);
    }

    #[test]
    fn an_unwritable_directory_falls_back_to_the_fcntl_lock() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("ro");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("mbox");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = sub.join("probe");
        if File::create(&probe).is_ok() {
            // Root (CAP_DAC_OVERRIDE) writes anyway: nothing to test here.
            std::fs::remove_file(&probe).unwrap();
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
            eprintln!("skipped: running with permission to write a read-only directory");
            return;
        }
        let result = add(&path, "a@x", "", b"Subject: s\n\n");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        result.unwrap();
        assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 1);
        assert!(!sub.join("mbox.lock").exists());
    }

    #[test]
    fn arrival_time_out_of_range_is_refused_before_touching_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let options = MboxAppend {
            received: u64::MAX,
            ..opts("a@x", "")
        };
        let error = append(&path, &options, &mut &b""[..]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(!path.exists());
    }
}
