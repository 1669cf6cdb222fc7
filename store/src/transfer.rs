//! Moving mail in and out of a user's folders (`petrel import` / `petrel export`): flags and
//! dates kept, and an import run twice adds nothing the folder already holds.

use crate::fs::{FileSystem, create_dir_all};
use crate::maildir;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One message to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The message; line ends are made CRLF on import.
    pub message: Vec<u8>,
    /// Maildir flag letters (`D F P R S T`).
    pub flags: String,
    /// Received date, Unix seconds (kept as the file's mtime, which IMAP reads as INTERNALDATE).
    pub date: Option<i64>,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Messages added.
    pub added: usize,
    /// Messages the folder already had.
    pub skipped: usize,
}

pub use crate::folder::folder_dir;

fn key(message: &[u8]) -> (usize, u64) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut h);
    (message.len(), h.finish())
}

/// Makes every line end CRLF.
pub fn to_crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

fn clean_flags(flags: &str) -> String {
    let mut f: Vec<char> = flags.chars().filter(|c| "DFPRST".contains(*c)).collect();
    f.sort_unstable();
    f.dedup();
    f.into_iter().collect()
}

/// The messages of a folder: (file path, flags).
fn folder_files(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let names = match fs.read_dir(&d) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for name in names.into_iter().filter(|n| !n.starts_with('.')) {
            let flags = name.split_once(":2,").map_or("", |(_, f)| f).to_string();
            files.push((d.join(name), flags));
        }
    }
    files.sort();
    Ok(files)
}

/// Reads a Maildir (or Maildir++ folder) at `dir` for import: messages, flags from the file
/// names, dates from the files' mtimes.
pub fn read_maildir(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<Incoming>> {
    let mut out = Vec::new();
    for (path, flags) in folder_files(fs, dir)? {
        let date = fs
            .stamp(&path)?
            .map(|s| (s.modified_ns / 1_000_000_000) as i64);
        out.push(Incoming {
            message: fs.read(&path)?,
            flags,
            date,
        });
    }
    Ok(out)
}

/// Imports `messages` into `dir` (created if needed): each one not already there (same bytes)
/// becomes a file in `cur/` with its flags and date. Durable when this returns.
pub fn import(
    fs: &dyn FileSystem,
    dir: &Path,
    hostname: &str,
    now_secs: i64,
    messages: Vec<Incoming>,
    mut progress: impl FnMut(usize, usize),
) -> io::Result<ImportReport> {
    maildir::ensure(fs, dir)?;
    if dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
    {
        // Maildir++ marks folders with an empty `maildirfolder` file.
        let marker = dir.join("maildirfolder");
        if fs.stamp(&marker)?.is_none() {
            fs.create_new(&marker)?.sync()?;
        }
    }
    let mut present: HashSet<(usize, u64)> = HashSet::new();
    for (path, _) in folder_files(fs, dir)? {
        present.insert(key(&to_crlf(&fs.read(&path)?)));
    }
    let host = maildir::safe_host(hostname);
    let mut report = ImportReport::default();
    let total = messages.len();
    for (i, m) in messages.into_iter().enumerate() {
        let message = to_crlf(&m.message);
        if !present.insert(key(&message)) {
            report.skipped += 1;
            progress(i + 1, total);
            continue;
        }
        let date = m.date.unwrap_or(now_secs);
        let base = maildir::unique_name(
            date,
            std::process::id(),
            i as u64,
            (now_secs as u32) ^ (i as u32).rotate_left(16),
            &host,
            message.len() as u64,
        );
        let tmp = dir.join("tmp").join(&base);
        let mut f = fs.create_new(&tmp)?;
        f.write_all(&message)?;
        f.sync()?;
        drop(f);
        let name = format!("{base}:2,{}", clean_flags(&m.flags));
        let dst = dir.join("cur").join(&name);
        fs.rename(&tmp, &dst)?;
        fs.set_modified(&dst, date)?;
        report.added += 1;
        progress(i + 1, total);
    }
    fs.sync_dir(&dir.join("cur"))?;
    Ok(report)
}

/// Writes the folder at `dir` as an mboxrd file into `out`, oldest first, flags in
/// `Status:`/`X-Status:`; returns the number of messages.
pub fn export_mbox(fs: &dyn FileSystem, dir: &Path, out: &mut dyn Write) -> io::Result<usize> {
    let mut entries = Vec::new();
    for (path, flags) in folder_files(fs, dir)? {
        let date = fs
            .stamp(&path)?
            .map_or(0, |s| (s.modified_ns / 1_000_000_000) as i64);
        entries.push((date, path, flags));
    }
    entries.sort();
    let mut buf = Vec::new();
    for (date, path, flags) in &entries {
        let message = fs.read(path)?;
        let sender = return_path(&message).unwrap_or_default();
        buf.clear();
        petrel_core::mbox::write_message(&mut buf, &sender, *date, flags, &message);
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(entries.len())
}

/// The address of a `Return-Path:` header at the top of a message.
fn return_path(message: &[u8]) -> Option<String> {
    let line = message.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let value = text.strip_prefix("Return-Path:")?.trim();
    let addr = value.trim_start_matches('<').trim_end_matches('>');
    (!addr.is_empty() && !addr.contains(char::is_whitespace)).then(|| addr.to_string())
}

/// Creates `path` as a Maildir to export into (for `petrel export ... DIR/`).
pub fn export_maildir(fs: &dyn FileSystem, src: &Path, dst: &Path) -> io::Result<usize> {
    create_dir_all(fs, dst)?;
    let messages = read_maildir(fs, src)?;
    let n = messages.len();
    import(fs, dst, "export", 0, messages, |_, _| {})?;
    Ok(n)
}
