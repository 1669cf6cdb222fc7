//! POP3 maildrops: a user's INBOX, locked against a second POP3 session (RFC 1939 8: the
//! maildrop is locked while a session is in the TRANSACTION state) but not against IMAP or
//! delivery, read in chunks, and emptied of deleted messages at QUIT.

use crate::fs::FileSystem;
use crate::mailbox::{self, FolderLocks};
use crate::maildir;
use petrel_core::{MaildropEntry, MaildropOutcome, UserId};
use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// The users whose maildrop a POP3 session holds, in this process.
#[derive(Debug, Default)]
pub struct MaildropLocks(Mutex<HashSet<UserId>>);

impl MaildropLocks {
    fn try_lock(&self, user: &UserId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.clone())
    }

    fn unlock(&self, user: &UserId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user);
    }
}

/// Locks and lists `user`'s INBOX.
pub fn open(
    fs: &dyn FileSystem,
    data_dir: &Path,
    folders: &FolderLocks,
    locks: &MaildropLocks,
    user: &UserId,
    now_secs: i64,
) -> MaildropOutcome {
    if !locks.try_lock(user) {
        return MaildropOutcome::InUse;
    }
    let view = maildir::user_root(data_dir, &user.0)
        .and_then(|root| mailbox::sync(fs, folders, &root, now_secs));
    match view {
        Ok(view) => MaildropOutcome::Ready {
            uidvalidity: view.uidvalidity,
            messages: view
                .messages
                .iter()
                .map(|m| MaildropEntry {
                    uid: m.uid,
                    size: m.size,
                    name: m.base().to_string(),
                })
                .collect(),
        },
        Err(e) => {
            locks.unlock(user);
            tracing::error!(user = %user.0, error = %e, "cannot open maildrop");
            MaildropOutcome::TempFail
        }
    }
}

/// Reads up to `max` bytes of message `name` from `offset`; empty at the end.
pub fn read(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
    offset: u64,
    max: u32,
) -> io::Result<Vec<u8>> {
    let mut file = open_message(fs, data_dir, user, name)?;
    // The filesystem trait offers streams, not seeks: skip to the offset.
    io::copy(&mut (&mut file).take(offset), &mut io::sink())?;
    let mut buf = Vec::with_capacity(max as usize);
    file.take(u64::from(max)).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Opens message `name` (a base name) of `user`'s INBOX for reading, wherever its flags put it.
pub fn open_message(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
) -> io::Result<Box<dyn io::Read + Send>> {
    let root = maildir::user_root(data_dir, &user.0)?;
    let path = mailbox::find(fs, &root, name)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "message is gone"))?;
    fs.open_read(&path)
}

/// Deletes `delete` (base names) durably, updates the UID list, and unlocks the maildrop.
pub fn close(
    fs: &dyn FileSystem,
    data_dir: &Path,
    folders: &FolderLocks,
    locks: &MaildropLocks,
    user: &UserId,
    delete: &[String],
    now_secs: i64,
) -> io::Result<()> {
    let result = (|| {
        if delete.is_empty() {
            return Ok(());
        }
        let root = maildir::user_root(data_dir, &user.0)?;
        let mut dirs = Vec::new();
        for name in delete {
            if let Some(path) = mailbox::find(fs, &root, name)? {
                fs.remove_file(&path)?;
                if let Some(dir) = path.parent()
                    && !dirs.iter().any(|d: &std::path::PathBuf| d == dir)
                {
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        for dir in &dirs {
            fs.sync_dir(dir)?;
        }
        mailbox::sync(fs, folders, &root, now_secs).map(|_| ())
    })();
    locks.unlock(user);
    result
}
