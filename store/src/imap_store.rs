//! The store's answers to the IMAP session's requests ([`Effect::Imap`](petrel_core::Effect)):
//! folders as Maildir++ directories ([`crate::folder`]), UIDs, flags and MODSEQs from
//! [`crate::index`], and every change made durable (files, then their directories) before it is
//! answered.
//!
//! Sizes: a message's size is its size with bare LFs counted as CRLF (what the index reports),
//! and [`ImapRequest::Read`] hands out the bytes with bare LFs turned into CRLF, so the bytes a
//! client gets always add up to RFC822.SIZE. A file whose CRLF size differs from its length is
//! named with a `,W=` field (Dovecot's virtual size) beside `,S=`.

use crate::folder::{self, is_inbox};
use crate::fs::{FileSystem, WriteFile, write_atomic};
use crate::index::{self, FolderIndex};
use crate::maildir;
use crate::read_cache::Located;
use crate::store::{Store, temp};
use petrel_core::imap::request::{
    FlagMode, FolderInfo, FolderSnapshot, FolderStatus, ImapAnswer, ImapRequest, MessageMeta,
};
use petrel_core::{Completion, TxId, UserId};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

/// How old (seconds) a folder directory's mtime must be before a folder stamp trusts it.
pub const STAMP_SETTLE_SECS: i64 = 2;

/// The subscriptions file in the Maildir root (Dovecot's v1 format: one name a line).
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions";

/// An IMAP APPEND being received into `DATA_DIR/tmp/`.
pub struct ImapAppend {
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn WriteFile>,
    flags: Vec<String>,
    date: Option<i64>,
    len: u64,
    crlf_len: u64,
    last: u8,
}

/// The Maildir++ form of a folder name (`Lists.Rust`, mUTF-7), as directory names (after the
/// dot) and Dovecot's `subscriptions` file hold it.
fn encode_dir(folder: &str) -> io::Result<String> {
    Ok(folder::dir_name(folder)?[1..].to_string())
}

/// The IMAP name of a Maildir++ name (`Lists.Rust` → `Lists/Rust`); `None` if malformed.
fn decode_dir(name: &str) -> Option<String> {
    let parts: Option<Vec<String>> = name
        .split('.')
        .map(|p| petrel_core::mutf7::decode(p).ok().filter(|p| !p.is_empty()))
        .collect();
    Some(parts?.join("/"))
}

fn no(text: &str) -> Completion {
    Completion::Imap(ImapAnswer::No(text.to_string()))
}

fn answer(a: ImapAnswer) -> Completion {
    Completion::Imap(a)
}

fn nonexistent() -> Completion {
    no("[NONEXISTENT] Mailbox does not exist")
}

/// The `,W=` field for a file whose CRLF size differs from its length.
fn size_fields(len: u64, crlf: u64) -> String {
    if len == crlf {
        String::new()
    } else {
        format!(",W={crlf}")
    }
}

/// Special-use attribute of a folder, by name (RFC 6154).
fn special_use(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "sent" | "sent messages" | "sent items" => Some("\\Sent"),
        "drafts" => Some("\\Drafts"),
        "trash" | "deleted messages" | "deleted items" => Some("\\Trash"),
        "junk" | "spam" => Some("\\Junk"),
        "archive" => Some("\\Archive"),
        _ => None,
    }
}

/// IMAP LIST matching: `*` matches anything, `%` anything but `/`. INBOX matches
/// case-insensitively.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8], fold: bool) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..], fold)),
            Some(b'%') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != b'/')
                .any(|i| go(&p[1..], &n[i..], fold)),
            Some(&c) => match n.first() {
                Some(&d) if c == d || (fold && c.eq_ignore_ascii_case(&d)) => {
                    go(&p[1..], &n[1..], fold)
                }
                _ => false,
            },
        }
    }
    go(pattern.as_bytes(), name.as_bytes(), is_inbox(name))
}

/// Copies `input` to the bytes a client sees (bare LF as CRLF) from `offset`, at most `max`.
fn read_crlf(mut input: impl Read, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(max.min(1 << 20));
    let mut pos: u64 = 0;
    let mut prev = 0u8;
    let mut buf = vec![0u8; 64 * 1024];
    'outer: loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            let bare_lf = b == b'\n' && prev != b'\r';
            prev = b;
            for c in if bare_lf {
                &b"\r\n"[..]
            } else {
                std::slice::from_ref(&b)
            } {
                if out.len() >= max {
                    break 'outer;
                }
                if pos >= offset {
                    out.push(*c);
                }
                pos += 1;
            }
        }
    }
    Ok(out)
}

impl Store {
    fn imap_now(&self) -> i64 {
        self.config.clock.unix_seconds()
    }

    /// Answers one IMAP request of `user`.
    pub(crate) fn imap(&self, user: &UserId, request: ImapRequest) -> Completion {
        match self.imap_inner(user, request) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                no(&format!("Invalid mailbox name: {e}"))
            }
            Err(e) => {
                tracing::error!(user = %user.0, error = %e, "IMAP request failed");
                temp(e.to_string())
            }
        }
    }

    fn imap_inner(&self, user: &UserId, request: ImapRequest) -> io::Result<Completion> {
        let root = maildir::user_root(&self.config.data_dir, &user.0)?;
        self.ensure_durable_maildir(&root)?;
        Ok(match request {
            ImapRequest::List {
                pattern,
                subscribed_only,
            } => answer(ImapAnswer::Folders(self.imap_list(
                &root,
                &pattern,
                subscribed_only,
            )?)),
            ImapRequest::Status { folder } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => {
                    let ix = self.imap_index(&dir)?;
                    answer(ImapAnswer::Status(FolderStatus {
                        messages: ix.messages.len() as u32,
                        uidnext: ix.next_uid,
                        uidvalidity: ix.uidvalidity,
                        unseen: ix
                            .messages
                            .iter()
                            .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                            .count() as u32,
                        size: ix.messages.iter().map(|m| m.size).sum(),
                        highest_modseq: ix.highest_modseq,
                    }))
                }
            },
            ImapRequest::Select { folder, .. } | ImapRequest::Refresh { folder } => {
                match self.existing(user, &folder)? {
                    None => nonexistent(),
                    Some(dir) => answer(ImapAnswer::Snapshot(self.snapshot(&dir)?)),
                }
            }
            ImapRequest::Vanished { folder, since } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => {
                    let (uids, complete) = self.imap_index(&dir)?.vanished_since(since);
                    answer(ImapAnswer::Vanished { uids, complete })
                }
            },
            ImapRequest::Changed { folder } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => answer(ImapAnswer::Stamp(self.folder_stamp(&dir)?)),
            },
            ImapRequest::Read {
                folder,
                uid,
                offset,
                max,
            } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => match self.read_message(&dir, uid, offset, max)? {
                    Some(bytes) => answer(ImapAnswer::Data(bytes)),
                    None => no("[NONEXISTENT] Message has been expunged"),
                },
            },
            ImapRequest::Store {
                folder,
                uids,
                mode,
                flags,
                unchanged_since,
            } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => self.store_flags(&dir, &uids, mode, &flags, unchanged_since)?,
            },
            ImapRequest::Expunge { folder, uids } => match self.existing(user, &folder)? {
                None => nonexistent(),
                Some(dir) => self.expunge(&dir, uids.as_deref())?,
            },
            ImapRequest::Copy {
                from,
                to,
                uids,
                remove,
            } => match (self.existing(user, &from)?, self.existing(user, &to)?) {
                (None, _) => nonexistent(),
                (_, None) => no("[TRYCREATE] Mailbox does not exist"),
                (Some(src), Some(dst)) => self.copy(&src, &dst, &uids, remove)?,
            },
            ImapRequest::Create { folder } => {
                let folder = folder.trim_end_matches('/');
                if is_inbox(folder) {
                    return Ok(no("[ALREADYEXISTS] INBOX always exists"));
                }
                let dir = folder::folder_dir(&self.config.data_dir, &user.0, Some(folder))?;
                if self.folder_exists(&dir)? {
                    return Ok(no("[ALREADYEXISTS] Mailbox already exists"));
                }
                folder::ensure(&*self.fs, &root, &dir)?;
                answer(ImapAnswer::Done)
            }
            ImapRequest::Delete { folder } => self.delete_folder(user, &root, &folder)?,
            ImapRequest::Rename { from, to } => self.rename_folder(user, &root, &from, &to)?,
            ImapRequest::Subscribe { folder, subscribe } => {
                self.subscribe(&root, &folder, subscribe)?;
                answer(ImapAnswer::Done)
            }
            ImapRequest::AppendBegin {
                folder,
                flags,
                date,
            } => match self.existing(user, &folder)? {
                None => no("[TRYCREATE] Mailbox does not exist"),
                Some(dir) => self.append_begin(dir, flags, date)?,
            },
            ImapRequest::AppendCommit { tx } => self.append_commit(tx)?,
            other => temp(format!("unsupported IMAP request {other:?}")),
        })
    }

    fn folder_exists(&self, dir: &Path) -> io::Result<bool> {
        Ok(self.fs.stamp(&dir.join("cur"))?.is_some())
    }

    /// The directory of an existing folder (INBOX always exists).
    fn existing(&self, user: &UserId, folder: &str) -> io::Result<Option<PathBuf>> {
        let dir = folder::folder_dir(&self.config.data_dir, &user.0, Some(folder))?;
        Ok(self.folder_exists(&dir)?.then_some(dir))
    }

    /// The folder's stamp for IDLE ([`ImapRequest::Changed`]): the identity, size and mtime of
    /// `new/` and `cur/`, whose entries change with every delivery, flag change (a rename) and
    /// expunge. Two stats, no reading. A directory changed within [`STAMP_SETTLE_SECS`] of
    /// now (or in the future, or without a time) gives 0, "cannot tell": two changes within
    /// one timestamp tick leave the same mtime, so only a settled mtime proves nothing changed.
    fn folder_stamp(&self, dir: &Path) -> io::Result<u64> {
        use std::hash::{Hash, Hasher};
        let now_ns = i128::from(self.imap_now()) * 1_000_000_000;
        let settle_ns = i128::from(STAMP_SETTLE_SECS) * 1_000_000_000;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for sub in ["new", "cur"] {
            let Some(st) = self.fs.stamp(&dir.join(sub))? else {
                return Ok(0);
            };
            if st.modified_ns <= 0 || st.modified_ns + settle_ns > now_ns {
                return Ok(0);
            }
            (st.ino, st.len, st.modified_ns).hash(&mut h);
        }
        Ok(h.finish().max(1))
    }

    /// The folder's index (shared with the store's memory of it, see [`index::sync_shared`]),
    /// and remembered as where the messages are for [`ImapRequest::Read`].
    fn imap_index(&self, dir: &Path) -> io::Result<Arc<FolderIndex>> {
        let ix = index::sync_shared(&*self.fs, &self.folders, dir, self.imap_now())?;
        self.read_cache.set_locations(dir, ix.clone());
        Ok(ix)
    }

    /// The folder as a session sees it. Made from the index each time: copying a kept
    /// snapshot would cost as much as making it.
    fn snapshot(&self, dir: &Path) -> io::Result<FolderSnapshot> {
        let ix = self.imap_index(dir)?;
        // INTERNALDATE (the file's mtime) is in the index: looked up once per file by the
        // sync that found it, on several threads for a big folder, then carried.
        // Messages share their flag list with others that have the same flags (a few
        // distinct sets per folder): one allocation per set, not per message.
        let mut sets: Vec<Arc<[String]>> = Vec::new();
        let mut shared = |flags: &[String]| -> Arc<[String]> {
            if let Some(set) = sets.iter().find(|s| ***s == *flags) {
                return set.clone();
            }
            let set: Arc<[String]> = flags.into();
            if sets.len() < 64 {
                sets.push(set.clone());
            }
            set
        };
        let messages: Vec<MessageMeta> = ix
            .messages
            .iter()
            .map(|m| MessageMeta {
                uid: m.uid,
                flags: shared(&m.flags),
                modseq: m.modseq,
                size: m.size,
                internal_date: m.internal_date,
            })
            .collect();
        Ok(FolderSnapshot {
            uidvalidity: ix.uidvalidity,
            next_uid: ix.next_uid,
            highest_modseq: ix.highest_modseq,
            messages,
        })
    }

    fn read_message(
        &self,
        dir: &Path,
        uid: u32,
        offset: u64,
        max: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        // The next chunk of a message being read: the open file, where the last one stopped.
        let key = format!("imap\0{}\0{uid}", dir.display());
        if let Some(mut reader) = self.read_cache.take(&key, offset) {
            let mut buf = Vec::with_capacity(max.min(1 << 20));
            (&mut reader).take(max as u64).read_to_end(&mut buf)?;
            if buf.len() == max {
                self.read_cache.put(key, offset + max as u64, reader);
            }
            return Ok(Some(buf));
        }
        // Where the last sync saw it; then, if it is not there (renamed by a flag change in
        // another session, or expunged), twice after a fresh sync.
        if let Some(at) = self.read_cache.location(dir, uid)
            && let Some(buf) = self.read_at(&key, dir, &at, offset, max)?
        {
            return Ok(Some(buf));
        }
        for _ in 0..2 {
            let ix = self.imap_index(dir)?;
            let Some(m) = ix.messages.iter().find(|m| m.uid == uid) else {
                return Ok(None);
            };
            let at = Located {
                subdir: m.subdir,
                name: m.name.clone(),
                size: m.size,
            };
            if let Some(buf) = self.read_at(&key, dir, &at, offset, max)? {
                return Ok(Some(buf));
            }
        }
        Ok(None)
    }

    /// Reads a chunk of the file at `at`; `None` when the file is not there (any more).
    fn read_at(
        &self,
        key: &str,
        dir: &Path,
        at: &Located,
        offset: u64,
        max: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        let path = dir.join(at.subdir).join(&at.name);
        // No bare LF (length = CRLF size): the bytes as they are, skipped to quickly.
        let plain = matches!(self.fs.stamp(&path), Ok(Some(st)) if st.len == at.size);
        match self.fs.open_read(&path) {
            Ok(mut input) if plain => {
                io::copy(&mut (&mut input).take(offset), &mut io::sink())?;
                let mut buf = Vec::with_capacity(max.min(1 << 20));
                (&mut input).take(max as u64).read_to_end(&mut buf)?;
                if buf.len() == max {
                    self.read_cache
                        .put(key.to_string(), offset + max as u64, input);
                }
                Ok(Some(buf))
            }
            Ok(input) => read_crlf(input, offset, max).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Maildir letters for `flags` in `dir`, under the folder's lock (keywords file).
    fn letters(&self, dir: &Path, flags: &[String]) -> io::Result<String> {
        if flags.is_empty() {
            return Ok(String::new());
        }
        let lock = self.folders.get(dir);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        folder::maildir_flags(&*self.fs, dir, flags)
    }

    fn store_flags(
        &self,
        dir: &Path,
        uids: &[u32],
        mode: FlagMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> io::Result<Completion> {
        let ix = self.imap_index(dir)?;
        let has = |set: &[String], f: &str| set.iter().any(|g| g.eq_ignore_ascii_case(f));
        let mut touched = Vec::new();
        let mut renamed = false;
        for m in ix.messages.iter().filter(|m| uids.contains(&m.uid)) {
            if unchanged_since.is_some_and(|u| m.modseq > u) {
                continue;
            }
            let new_flags: Vec<String> = match mode {
                FlagMode::Replace => flags.to_vec(),
                FlagMode::Add => {
                    let mut v = m.flags.clone();
                    v.extend(flags.iter().filter(|f| !has(&m.flags, f)).cloned());
                    v
                }
                FlagMode::Remove => m.flags.iter().filter(|f| !has(flags, f)).cloned().collect(),
            };
            let letters = self.letters(dir, &new_flags)?;
            let base = crate::uidlist::base_name(&m.name);
            let name = format!("{base}:2,{letters}");
            touched.push(m.uid);
            if m.subdir == "cur" && (name == m.name || index::name_flags(&m.name) == letters) {
                continue;
            }
            match self.fs.rename(
                &dir.join(m.subdir).join(&m.name),
                &dir.join("cur").join(&name),
            ) {
                Ok(()) => renamed = true,
                // Expunged meanwhile by another program: nothing to report for it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    touched.pop();
                }
                Err(e) => return Err(e),
            }
        }
        if renamed {
            self.sync
                .sync_dirs(&*self.fs, &[dir.join("cur"), dir.join("new")])?;
        }
        let ix = self.imap_index(dir)?;
        let stored = ix
            .messages
            .iter()
            .filter(|m| touched.contains(&m.uid))
            .map(|m| (m.uid, m.flags.clone(), m.modseq))
            .collect();
        Ok(answer(ImapAnswer::Stored(stored)))
    }

    fn expunge(&self, dir: &Path, uids: Option<&[u32]>) -> io::Result<Completion> {
        let ix = self.imap_index(dir)?;
        let mut removed = Vec::new();
        for m in &ix.messages {
            if !m.flags.iter().any(|f| f == "\\Deleted")
                || uids.is_some_and(|u| !u.contains(&m.uid))
            {
                continue;
            }
            match self.fs.remove_file(&dir.join(m.subdir).join(&m.name)) {
                Ok(()) => removed.push(m.uid),
                Err(e) if e.kind() == io::ErrorKind::NotFound => removed.push(m.uid),
                Err(e) => return Err(e),
            }
        }
        if !removed.is_empty() {
            self.sync
                .sync_dirs(&*self.fs, &[dir.join("cur"), dir.join("new")])?;
            self.imap_index(dir)?;
        }
        Ok(answer(ImapAnswer::Expunged(removed)))
    }

    fn copy(&self, src: &Path, dst: &Path, uids: &[u32], remove: bool) -> io::Result<Completion> {
        let ix = self.imap_index(src)?;
        let mut made: Vec<(u32, PathBuf, String)> = Vec::new();
        let result = (|| {
            for m in ix.messages.iter().filter(|m| uids.contains(&m.uid)) {
                let path = src.join(m.subdir).join(&m.name);
                let len = match self.fs.stamp(&path)? {
                    Some(s) => s.len,
                    None => continue,
                };
                let letters = self.letters(dst, &m.flags)?;
                let suffix = format!("{}:2,{letters}", size_fields(len, m.size));
                let name = self.link_unique(&path, &dst.join("cur"), len, &suffix)?;
                made.push((m.uid, path, name));
            }
            self.sync.sync_dirs(&*self.fs, &[dst.join("cur")])
        })();
        if let Err(e) = result {
            for (_, _, name) in &made {
                let _ = self.fs.remove_file(&dst.join("cur").join(name));
            }
            return Err(e);
        }
        let dix = self.imap_index(dst)?;
        let pairs: Vec<(u32, u32)> = made
            .iter()
            .filter_map(|(uid, _, name)| {
                dix.messages
                    .iter()
                    .find(|d| &d.name == name)
                    .map(|d| (*uid, d.uid))
            })
            .collect();
        if remove && src != dst {
            for (_, path, _) in &made {
                match self.fs.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            self.sync
                .sync_dirs(&*self.fs, &[src.join("cur"), src.join("new")])?;
            self.imap_index(src)?;
        }
        Ok(answer(ImapAnswer::Copied {
            uidvalidity: dix.uidvalidity,
            pairs,
        }))
    }

    /// Every folder of the user's Maildir: IMAP name → exists (directories with `cur/`).
    fn folders_of(&self, root: &Path) -> io::Result<BTreeMap<String, bool>> {
        let mut out = BTreeMap::new();
        out.insert("INBOX".to_string(), true);
        for entry in self.fs.read_dir(root)? {
            let Some(name) = entry.strip_prefix('.') else {
                continue;
            };
            if name.is_empty() || name.starts_with('.') {
                continue;
            }
            if !self.folder_exists(&root.join(&entry))? {
                continue;
            }
            let Some(name) = decode_dir(name) else {
                continue;
            };
            // Parents without a directory of their own show up as \Noselect.
            let mut prefix = String::new();
            for part in name.split('/') {
                if !prefix.is_empty() {
                    out.entry(prefix.clone()).or_insert(false);
                    prefix.push('/');
                }
                prefix.push_str(part);
            }
            out.insert(name, true);
        }
        Ok(out)
    }

    fn imap_list(
        &self,
        root: &Path,
        pattern: &str,
        subscribed_only: bool,
    ) -> io::Result<Vec<FolderInfo>> {
        let all = self.folders_of(root)?;
        let subs = self.subscriptions(root)?;
        let subscribed = |n: &str| subs.iter().any(|s| s == n || (is_inbox(s) && is_inbox(n)));
        // With subscribed_only, the parents of subscribed folders come too (marked as not
        // subscribed), so LIST (SUBSCRIBED RECURSIVEMATCH) can report them with CHILDINFO.
        let mut names: Vec<String> = if subscribed_only {
            let mut names = subs.clone();
            for s in &subs {
                let mut parent = s.as_str();
                while let Some(i) = parent.rfind('/') {
                    parent = &parent[..i];
                    names.push(parent.to_string());
                }
            }
            names
        } else {
            all.keys().cloned().collect()
        };
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            if !pattern_matches(pattern, &name) {
                continue;
            }
            let mut attributes = Vec::new();
            match all.get(&name) {
                None => attributes.push("\\NonExistent".to_string()),
                Some(false) => attributes.push("\\Noselect".to_string()),
                Some(true) => {}
            }
            let child = format!("{name}/");
            let children = all.keys().any(|k| k.starts_with(&child));
            attributes.push(
                if children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                }
                .to_string(),
            );
            if let Some(s) = special_use(&name) {
                attributes.push(s.to_string());
            }
            out.push(FolderInfo {
                subscribed: subscribed(&name),
                subscribed_children: subs.iter().any(|s| s.starts_with(&child)),
                name,
                attributes,
            });
        }
        Ok(out)
    }

    /// Subscribed folder names (IMAP form).
    fn subscriptions(&self, root: &Path) -> io::Result<Vec<String>> {
        let text = match self.fs.read(&root.join(SUBSCRIPTIONS_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                if is_inbox(l) {
                    Some("INBOX".to_string())
                } else {
                    decode_dir(l)
                }
            })
            .collect())
    }

    fn subscribe(&self, root: &Path, folder: &str, subscribe: bool) -> io::Result<()> {
        let line = if is_inbox(folder) {
            "INBOX".to_string()
        } else {
            encode_dir(folder)?
        };
        let path = root.join(SUBSCRIPTIONS_FILE);
        let lock = self.folders.get(&path);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let text = match self.fs.read(&path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let present = lines.contains(&line.as_str());
        if present == subscribe {
            return Ok(());
        }
        if subscribe {
            lines.push(&line);
        } else {
            lines.retain(|l| *l != line);
        }
        let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
        write_atomic(&*self.fs, &path, out.as_bytes(), "petrel")
    }

    fn delete_folder(&self, user: &UserId, root: &Path, folder: &str) -> io::Result<Completion> {
        if is_inbox(folder) {
            return Ok(no("INBOX cannot be deleted"));
        }
        let Some(dir) = self.existing(user, folder)? else {
            return Ok(nonexistent());
        };
        let entry = folder::dir_name(folder)?;
        let child = format!("{entry}.");
        if self
            .fs
            .read_dir(root)?
            .iter()
            .any(|n| n.starts_with(&child))
        {
            return Ok(no("[INUSE] Mailbox has children, delete them first"));
        }
        // Out of sight in one durable rename, then emptied.
        let trash = self
            .config
            .data_dir
            .join("tmp")
            .join(format!("deleted.{}", self.next_unique(0)));
        self.fs.rename(&dir, &trash)?;
        self.fs.sync_dir(root)?;
        self.fs.sync_dir(&self.config.data_dir.join("tmp"))?;
        remove_tree(&*self.fs, &trash);
        Ok(answer(ImapAnswer::Done))
    }

    fn rename_folder(
        &self,
        user: &UserId,
        root: &Path,
        from: &str,
        to: &str,
    ) -> io::Result<Completion> {
        let to = to.trim_end_matches('/');
        if is_inbox(to) {
            return Ok(no("[ALREADYEXISTS] INBOX always exists"));
        }
        let Some(src) = self.existing(user, from)? else {
            return Ok(nonexistent());
        };
        let dst = folder::folder_dir(&self.config.data_dir, &user.0, Some(to))?;
        if self.fs.stamp(&dst)?.is_some() {
            return Ok(no("[ALREADYEXISTS] Mailbox already exists"));
        }
        if is_inbox(from) {
            // RFC 9051 6.3.6: INBOX's messages move to the new folder; INBOX stays, empty.
            folder::ensure(&*self.fs, root, &dst)?;
            let ix = self.imap_index(&src)?;
            for m in &ix.messages {
                self.fs.rename(
                    &src.join(m.subdir).join(&m.name),
                    &dst.join(m.subdir).join(&m.name),
                )?;
            }
            self.sync.sync_dirs(
                &*self.fs,
                &[
                    dst.join("cur"),
                    dst.join("new"),
                    src.join("cur"),
                    src.join("new"),
                ],
            )?;
            self.imap_index(&src)?;
            self.imap_index(&dst)?;
            return Ok(answer(ImapAnswer::Done));
        }
        let from_entry = folder::dir_name(from)?;
        let to_entry = folder::dir_name(to)?;
        if to_entry.starts_with(&format!("{from_entry}.")) {
            return Ok(no("Cannot rename a mailbox into itself"));
        }
        let child = format!("{from_entry}.");
        let mut moves = vec![(from_entry.clone(), to_entry.clone())];
        for n in self.fs.read_dir(root)? {
            if let Some(rest) = n.strip_prefix(&child) {
                moves.push((n.clone(), format!("{to_entry}.{rest}")));
            }
        }
        for (_, new) in &moves {
            if self.fs.stamp(&root.join(new))?.is_some() {
                return Ok(no("[ALREADYEXISTS] Mailbox already exists"));
            }
        }
        for (old, new) in &moves {
            self.fs.rename(&root.join(old), &root.join(new))?;
        }
        self.fs.sync_dir(root)?;
        self.rename_subscriptions(root, &from_entry[1..], &to_entry[1..])?;
        Ok(answer(ImapAnswer::Done))
    }

    /// Subscriptions follow a renamed folder and its children.
    fn rename_subscriptions(&self, root: &Path, from: &str, to: &str) -> io::Result<()> {
        let path = root.join(SUBSCRIPTIONS_FILE);
        let lock = self.folders.get(&path);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let text = match self.fs.read(&path) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let child = format!("{from}.");
        let mut changed = false;
        let out: String = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let renamed = if l == from {
                    Some(to.to_string())
                } else {
                    l.strip_prefix(&child).map(|rest| format!("{to}.{rest}"))
                };
                changed |= renamed.is_some();
                format!("{}\n", renamed.as_deref().unwrap_or(l))
            })
            .collect();
        if changed {
            write_atomic(&*self.fs, &path, out.as_bytes(), "petrel")?;
        }
        Ok(())
    }

    fn append_begin(
        &self,
        dir: PathBuf,
        flags: Vec<String>,
        date: Option<i64>,
    ) -> io::Result<Completion> {
        let path = self.config.data_dir.join("tmp").join(self.next_unique(0));
        let file = self.fs.create_new(&path)?;
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        self.imap_appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                ImapAppend {
                    dir,
                    path,
                    file,
                    flags,
                    date,
                    len: 0,
                    crlf_len: 0,
                    last: 0,
                },
            );
        Ok(answer(ImapAnswer::Appending(TxId(id))))
    }

    /// Writes a chunk of an IMAP APPEND; `None` if `tx` is not one.
    pub(crate) fn imap_append_chunk(&self, tx: TxId, bytes: &[u8]) -> Option<Completion> {
        let mut map = self
            .imap_appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let a = map.get_mut(&tx.0)?;
        if let Err(e) = a.file.write_all(bytes) {
            tracing::error!(error = %e, "cannot write appended message");
            return Some(temp(e.to_string()));
        }
        for &b in bytes {
            a.crlf_len += if b == b'\n' && a.last != b'\r' { 2 } else { 1 };
            a.last = b;
        }
        a.len += bytes.len() as u64;
        Some(Completion::Appended)
    }

    /// Drops an IMAP APPEND; false if `tx` is not one.
    pub(crate) fn imap_abort(&self, tx: TxId) -> bool {
        let taken = self
            .imap_appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tx.0);
        match taken {
            Some(a) => {
                drop(a.file);
                let _ = self.fs.remove_file(&a.path);
                true
            }
            None => false,
        }
    }

    fn append_commit(&self, tx: TxId) -> io::Result<Completion> {
        let taken = self
            .imap_appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tx.0);
        let Some(mut a) = taken else {
            return Ok(temp("unknown transaction"));
        };
        let result = (|| {
            a.file.sync()?;
            if let Some(date) = a.date {
                self.fs.set_modified(&a.path, date)?;
            }
            let letters = self.letters(&a.dir, &a.flags)?;
            let (sub, suffix) = if letters.is_empty() {
                ("new", size_fields(a.len, a.crlf_len))
            } else {
                (
                    "cur",
                    format!("{}:2,{letters}", size_fields(a.len, a.crlf_len)),
                )
            };
            let target = a.dir.join(sub);
            let name = self.link_unique(&a.path, &target, a.len, &suffix)?;
            if let Err(e) = self
                .sync
                .sync_dirs(&*self.fs, std::slice::from_ref(&target))
            {
                let _ = self.fs.remove_file(&target.join(&name));
                return Err(e);
            }
            let ix = self.imap_index(&a.dir)?;
            let uid = ix
                .messages
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.uid)
                .ok_or_else(|| io::Error::other("appended message vanished"))?;
            Ok(answer(ImapAnswer::Appended {
                uidvalidity: ix.uidvalidity,
                uid,
            }))
        })();
        drop(a.file);
        let _ = self.fs.remove_file(&a.path);
        result
    }
}

/// Removes a directory's files, best effort: the trait has no directory removal, so the emptied
/// directories stay under `DATA_DIR/tmp/` on filesystems without `std::fs` access.
fn remove_tree(fs: &dyn FileSystem, dir: &Path) {
    let Ok(names) = fs.read_dir(dir) else {
        return;
    };
    for n in names {
        let p = dir.join(&n);
        if fs.remove_file(&p).is_err() {
            remove_tree(fs, &p);
        }
    }
    let _ = std::fs::remove_dir(dir);
}
