//! The narrow filesystem interface the store uses, so the simulator can run the very same store
//! code on a simulated disk that loses whatever was not synced when it "crashes".
//!
//! Durability rules the store follows, and that [`RealFs`] maps onto POSIX: a file's bytes are
//! durable after [`WriteFile::sync`]; a new name (create, link, rename, remove) is durable after
//! [`FileSystem::sync_dir`] on its parent directory.

use std::io::{self, Read, Write};
use std::path::Path;

/// A file open for writing.
pub trait WriteFile: Write + Send {
    /// Flushes the file's data and metadata to stable storage (fsync).
    fn sync(&mut self) -> io::Result<()>;
}

/// Identity and version of a file, to notice when it changed (size, mtime, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Size in bytes.
    pub len: u64,
    /// Modification time in nanoseconds since the epoch.
    pub modified_ns: i128,
    /// Inode number or another identity; 0 if unknown.
    pub ino: u64,
}

/// Filesystem operations the store needs, nothing more.
pub trait FileSystem: Send + Sync + std::fmt::Debug {
    /// Creates a new file (fails if it exists), mode 0600.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens a file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_read(path)?.read_to_end(&mut buf)?;
        Ok(buf)
    }
    /// Makes `dst` a second name of `src` (fails if `dst` exists).
    fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()>;
    /// Renames, replacing `dst` if it exists.
    fn rename(&self, src: &Path, dst: &Path) -> io::Result<()>;
    /// Removes a name.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory (mode 0700); `AlreadyExists` if it is there.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory durable (fsync on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Names in a directory, in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The file's stamp, or `None` if it does not exist.
    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>>;
    /// Sets a file's modification time (Unix seconds): Maildir readers take it as the date the
    /// message arrived. Filesystems without times ignore it.
    fn set_modified(&self, _path: &Path, _unix: i64) -> io::Result<()> {
        Ok(())
    }
}

/// Creates `path` and any missing parents, each made durable in its parent.
pub fn create_dir_all(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    if fs.stamp(path)?.is_some() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(fs, parent)?;
    }
    match fs.create_dir(path) {
        Ok(()) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs.sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// How old a temporary or unreferenced file must be before a cleanup takes it for a crash's
/// leftover. Another process (`petrel deliver`, `petrel sendmail`, a server starting beside them)
/// may be writing a younger one right now; a real leftover merely waits for a later cleanup.
pub const LEFTOVER_AGE_SECS: i64 = 15 * 60;

/// Whether `path` was last modified more than [`LEFTOVER_AGE_SECS`] before `now` (Unix
/// seconds). A file that vanished meanwhile is not stale (there is nothing to remove).
pub fn is_leftover(fs: &dyn FileSystem, path: &Path, now: i64) -> io::Result<bool> {
    Ok(match fs.stamp(path)? {
        Some(st) => {
            st.modified_ns / 1_000_000_000 + i128::from(LEFTOVER_AGE_SECS) < i128::from(now)
        }
        None => false,
    })
}

/// Makes the entry of `path` and of each of its ancestors below `root` durable, whether this
/// process created them or found them: a directory found on disk may have been created by a
/// run whose parent fsync failed or never happened, and would vanish at the next crash.
pub fn sync_ancestors(fs: &dyn FileSystem, path: &Path, root: &Path) -> io::Result<()> {
    for dir in path.ancestors() {
        if dir == root || !dir.starts_with(root) {
            break;
        }
        if let Some(parent) = dir.parent() {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably: temporary file, fsync, rename, fsync of
/// the directory. Readers see the old or the new content, never a mix.
pub fn write_atomic(
    fs: &dyn FileSystem,
    path: &Path,
    bytes: &[u8],
    unique: &str,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{unique}.tmp"));
    let result = (|| {
        let mut f = fs.create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync()?;
        drop(f);
        fs.rename(&tmp, path)?;
        fs.sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(std::fs::File);

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl WriteFile for RealFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl FileSystem for RealFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        std::fs::hard_link(src, dst)
    }

    fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        std::fs::rename(src, dst)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn set_modified(&self, path: &Path, unix: i64) -> io::Result<()> {
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
        std::fs::File::options()
            .write(true)
            .open(path)?
            .set_modified(time)
    }

    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp {
                len: m.len(),
                modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                ino: m.ino(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
