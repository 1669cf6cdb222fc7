//! The store: executes core's message and user requests against the filesystem.
//!
//! A message is written once, to `DATA_DIR/tmp/`, as `Return-Path` + trace headers + body. At
//! commit the file is fsynced, then hard-linked into each local recipient's `new/` and, for
//! remote recipients, into the outbound queue; the directories are fsynced together with other
//! deliveries' (group commit), and only then is the [`Receipt`] issued. A crash at any instant
//! leaves either no name in `new/` or a complete, durable file.

use crate::delivery::{self, Outgoing};
use crate::folder;
use crate::fs::{FileSystem, WriteFile};
use crate::group_sync::GroupSync;
use crate::mailbox::FolderLocks;
use crate::maildir;
use crate::maildrop::{self, MaildropLocks};
use crate::mbox_file;
use crate::mbox_users::MboxPolicy;
use crate::queue;
use crate::throttle::AuthThrottle;
use crate::users::UserDb;
use petrel_core::filter::HeaderEdit;
use petrel_core::{
    AuthOutcome, Completion, Effect, Envelope, ErrorClass, Receipt, RecipientOutcome, Refusal,
    Refusals, StoreError, TxId, UserId, WallClock,
};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where and as whom the store writes.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory (CONTRACT.md layout).
    pub data_dir: PathBuf,
    /// Host name used in Maildir file names.
    pub hostname: String,
    /// Calendar time for file names.
    pub clock: Arc<dyn WallClock>,
    /// Process id (or simulated host id) used in file names.
    pub pid: u32,
    /// Seed for the random part of file names.
    pub seed: u64,
}

/// How long a delivery waits for another program's lock on an mbox file before it fails
/// temporarily (the sender retries).
const MBOX_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Maildir letters for the IMAP system flags in `flags` (mbox keeps no keywords).
fn system_flag_letters(flags: &[String]) -> String {
    let mut letters: Vec<char> = flags
        .iter()
        .filter_map(|f| folder::system_flag_letter(f))
        .collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

/// A message to send once the delivery is durable: (recipient, message, what it is).
type Notice = (String, Vec<u8>, &'static str);

/// `bytes` with every bare LF written as CRLF, as Postfix and Dovecot read a bare LF: a line
/// end. The stored file then has CRLF line ends only, so its length is the size IMAP and POP3
/// report and the bytes they serve are valid. `last_cr` carries a CR across chunk boundaries.
/// Borrows when there is nothing to change (the usual case: SMTP clients send CRLF).
fn crlf_line_ends<'a>(bytes: &'a [u8], last_cr: &mut bool) -> std::borrow::Cow<'a, [u8]> {
    let starts_bare = bytes.first() == Some(&b'\n') && !*last_cr;
    let has_bare = starts_bare || bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r');
    let result = if has_bare {
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
        let mut prev_cr = *last_cr;
        for &b in bytes {
            if b == b'\n' && !prev_cr {
                out.push(b'\r');
            }
            out.push(b);
            prev_cr = b == b'\r';
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(bytes)
    };
    if let Some(&b) = bytes.last() {
        *last_cr = b == b'\r';
    }
    result
}

/// Most message octets one transaction holds in memory before its file is created: a typical
/// message is written with one `write` at commit, and needs no trip to a blocking thread
/// before it (see [`Store::execute_inline`]).
const TX_BUFFER_MAX: usize = 256 * 1024;

/// Most message octets all transactions together hold in memory; beyond it they write to
/// their files as they receive.
const TX_BUFFER_TOTAL: usize = 16 * 1024 * 1024;

/// Message octets held in memory while the transaction has no file, counted against the
/// store-wide budget ([`TX_BUFFER_TOTAL`]) for as long as they are held. The count is of
/// octets held; the allocations behind them may be up to twice that (vectors grow by doubling).
struct Pending {
    bytes: Vec<u8>,
    budget: Arc<AtomicUsize>,
}

impl Pending {
    /// Adds `more` if the transaction stays within [`TX_BUFFER_MAX`] and the store within its
    /// budget; false (and nothing added) otherwise.
    fn try_extend(&mut self, more: &[u8]) -> bool {
        if self.bytes.len() + more.len() > TX_BUFFER_MAX {
            return false;
        }
        let before = self.budget.fetch_add(more.len(), Ordering::Relaxed);
        if before + more.len() > TX_BUFFER_TOTAL {
            self.budget.fetch_sub(more.len(), Ordering::Relaxed);
            return false;
        }
        self.bytes.extend_from_slice(more);
        true
    }

    /// Inserts `more` at `at` whatever the limits (small: Return-Path, trace and prepended
    /// header fields).
    fn insert(&mut self, at: usize, more: &[u8]) {
        self.budget.fetch_add(more.len(), Ordering::Relaxed);
        self.bytes.splice(at..at, more.iter().copied());
    }

    /// The held octets, released from the budget.
    fn take(&mut self) -> Vec<u8> {
        let bytes = std::mem::take(&mut self.bytes);
        self.budget.fetch_sub(bytes.len(), Ordering::Relaxed);
        bytes
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// A message being received. Its file in `tmp/` is created lazily: the first octets wait in
/// `pending` until the message outgrows [`TX_BUFFER_MAX`] or is committed, so a transaction
/// that is aborted early, or a crash before commit, leaves no file at all.
struct OpenTx {
    envelope: Envelope,
    /// The file's name in `tmp/` (it exists only once `file` is `Some`).
    path: PathBuf,
    /// The open file, once created; until then the message is all in `pending`.
    file: Option<Box<dyn WriteFile>>,
    /// Octets not written yet (the whole message so far while `file` is `None`).
    pending: Pending,
    size: u64,
    /// Length of the Return-Path line at the start of the file.
    return_path_len: usize,
    /// The last byte appended was CR (a CRLF may straddle two chunks).
    last_cr: bool,
}

/// Petrel's storage (see the module docs). Shared by every session of a process.
pub struct Store {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) config: StoreConfig,
    users: UserDb,
    pub(crate) sync: GroupSync,
    open: Mutex<HashMap<u64, Arc<Mutex<OpenTx>>>>,
    /// Message octets all open transactions hold in memory (see [`Pending`]).
    buffered: Arc<AtomicUsize>,
    pub(crate) counter: AtomicU64,
    pub(crate) folders: FolderLocks,
    maildrops: MaildropLocks,
    /// Failed logins per user and address, to slow guessing across connections.
    throttle: AuthThrottle,
    /// Maildirs whose `new/` entry chain this process has made durable.
    durable_maildirs: Mutex<std::collections::HashSet<PathBuf>>,
    /// Users whose mail goes to mbox files.
    mbox: MboxPolicy,
    /// Called when mail was queued for outbound delivery (wakes the queue runner).
    queued_hook: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Header fields DKIM signatures cover (empty: core's default list).
    pub(crate) dkim_headers: Vec<String>,
    /// Queue entries handed to a delivery attempt that has not finished yet.
    pub(crate) queue_in_flight: Mutex<std::collections::HashSet<String>>,
    /// Message files left open where the last chunk ended (POP3 RETR, IMAP FETCH).
    pub(crate) read_cache: crate::read_cache::ReadCache,
    /// IMAP APPENDs being received, by transaction id.
    pub(crate) imap_appends: Mutex<HashMap<u64, crate::imap_store::ImapAppend>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn temp(message: impl Into<String>) -> Completion {
    Completion::Failed(StoreError {
        class: ErrorClass::Temporary,
        message: message.into(),
    })
}

impl Store {
    /// Opens the data directory, creating its layout, and removes what a crash left half-done
    /// in `tmp/` (never acknowledged, so nothing is lost), once it is older than
    /// [`crate::fs::LEFTOVER_AGE_SECS`]: a younger file may be another process's transaction.
    pub fn open(fs: Arc<dyn FileSystem>, config: StoreConfig) -> io::Result<Store> {
        let store = Self::attach(fs, config)?;
        store.remove_leftovers()?;
        Ok(store)
    }

    /// Opens the data directory beside a server that may be running (`petrel deliver`): the
    /// same layout, but `tmp/` is left alone, since it may hold the server's transactions.
    pub fn attach(fs: Arc<dyn FileSystem>, config: StoreConfig) -> io::Result<Store> {
        let dir = &config.data_dir;
        for sub in ["tmp", "mail", queue::MSG_DIR, queue::ENV_DIR] {
            crate::fs::create_dir_all(&*fs, &dir.join(sub))?;
            crate::fs::sync_ancestors(&*fs, &dir.join(sub), dir)?;
        }
        Ok(Store {
            users: UserDb::new(fs.clone(), dir),
            fs,
            sync: GroupSync::new(),
            open: Mutex::new(HashMap::new()),
            buffered: Arc::new(AtomicUsize::new(0)),
            counter: AtomicU64::new(0),
            folders: FolderLocks::default(),
            maildrops: MaildropLocks::default(),
            durable_maildirs: Mutex::new(std::collections::HashSet::new()),
            mbox: MboxPolicy::default(),
            queued_hook: std::sync::OnceLock::new(),
            dkim_headers: Vec::new(),
            queue_in_flight: Mutex::new(std::collections::HashSet::new()),
            read_cache: crate::read_cache::ReadCache::default(),
            imap_appends: Mutex::new(HashMap::new()),
            throttle: AuthThrottle::new(config.clock.clone()),
            config,
        })
    }

    fn remove_leftovers(&self) -> io::Result<()> {
        let (fs, dir) = (&self.fs, &self.config.data_dir);
        let now = self.config.clock.unix_seconds();
        for name in fs.read_dir(&dir.join("tmp"))? {
            let path = dir.join("tmp").join(&name);
            // A young file may be a `petrel deliver` or `sendmail` transaction in progress.
            if !crate::fs::is_leftover(&**fs, &path, now)? {
                continue;
            }
            if let Err(e) = fs.remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove leftover temporary file");
            }
        }
        Ok(())
    }

    /// Signs outgoing mail over these header fields (lowercase; `from` is always added).
    pub fn with_dkim_headers(mut self, headers: Vec<String>) -> Self {
        self.dkim_headers = headers;
        self
    }

    /// Delivers the mail of the users `policy` names into mbox files instead of Maildir.
    pub fn with_mbox(mut self, policy: MboxPolicy) -> Self {
        self.mbox = policy;
        self
    }

    /// Calls `hook` whenever mail is queued for outbound delivery (after it is durable). One
    /// hook per store; a second call is ignored.
    pub fn on_queued(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.queued_hook.set(hook);
    }

    pub(crate) fn queued(&self) {
        if let Some(hook) = self.queued_hook.get() {
            hook();
        }
    }

    /// The user database.
    pub fn users(&self) -> &UserDb {
        &self.users
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Carries out one request. Blocking: runtimes call it off their event loop.
    pub fn execute(&self, effect: Effect) -> Completion {
        match effect {
            Effect::Authenticate {
                username,
                password,
                client_ip,
                loopback,
            } => Completion::Auth(
                match self.users.authenticate(&username, password.expose()) {
                    AuthOutcome::Success(user) => {
                        self.throttle.succeeded(&username);
                        AuthOutcome::Success(user)
                    }
                    AuthOutcome::Failure | AuthOutcome::FailureAfter(_) => {
                        let wait = self.throttle.failed(&username, &client_ip, loopback);
                        tracing::info!(user = %username, client = %client_ip, wait_ms = wait.as_millis() as u64, "authentication failed");
                        AuthOutcome::FailureAfter(wait)
                    }
                    other => other,
                },
            ),
            Effect::LookupRecipient { address } => Completion::Recipient(
                self.users
                    .lookup_recipient_checked(&address, self.config.clock.unix_seconds()),
            ),
            Effect::BeginMessage { envelope, trace } => self.begin(envelope, &trace),
            Effect::AppendChunk { tx, bytes } => match self.imap_append_chunk(tx, &bytes) {
                Some(done) => done,
                None => self.append(tx, &bytes),
            },
            Effect::Commit {
                tx,
                prepend,
                refusals,
                junk,
                edits,
            } => self.commit(tx, &prepend, &edits, refusals, junk),
            Effect::Resolve { queries } => Completion::Dns(
                queries
                    .iter()
                    .map(|_| petrel_core::dns::Answer::TempFail("no resolver here".into()))
                    .collect(),
            ),
            Effect::Abort { tx } => {
                if !self.imap_abort(tx) {
                    self.abort(tx);
                }
                Completion::Aborted
            }
            Effect::Sieve { user, request } => {
                crate::sieve_scripts::execute(&*self.fs, &self.config.data_dir, &user, request)
            }
            Effect::OpenMaildrop { user } => Completion::Maildrop(maildrop::open(
                &*self.fs,
                &self.config.data_dir,
                &self.folders,
                &self.maildrops,
                &user,
                self.config.clock.unix_seconds(),
            )),
            Effect::ReadMessage {
                user,
                name,
                offset,
                max,
            } => {
                let key = format!("pop3\0{}\0{name}", user.0);
                let read = crate::read_cache::read_chunk(
                    &self.read_cache,
                    &key,
                    offset,
                    max as usize,
                    || maildrop::open_message(&*self.fs, &self.config.data_dir, &user, &name),
                );
                match read {
                    Ok(bytes) => Completion::Data(bytes),
                    Err(e) => temp(e.to_string()),
                }
            }
            Effect::CloseMaildrop { user, delete } => {
                let now = self.config.clock.unix_seconds();
                match maildrop::close(
                    &*self.fs,
                    &self.config.data_dir,
                    &self.folders,
                    &self.maildrops,
                    &user,
                    &delete,
                    now,
                ) {
                    Ok(()) => {
                        if !delete.is_empty() {
                            tracing::info!(user = %user.0, deleted = delete.len(), "POP3 deletions done");
                        }
                        Completion::Done
                    }
                    Err(e) => {
                        tracing::error!(user = %user.0, error = %e, "POP3 deletions failed");
                        temp(e.to_string())
                    }
                }
            }
            Effect::Imap { user, request } => self.imap(&user, request),
            other => temp(format!("unsupported request {other:?}")),
        }
    }

    /// Answers `effect` from memory when that needs no file IO, so an async runtime can answer
    /// it on its event loop instead of handing it to a blocking thread and back; otherwise
    /// gives the effect back, to be passed to [`Store::execute`] off the event loop.
    ///
    /// Answered here: a recipient lookup for a known user when the user database was checked
    /// within the current second; the start of a message (its file is created later); a chunk
    /// that fits in the transaction's memory buffer; the abort of a transaction that has no
    /// file yet. The answers are those [`Store::execute`] would give; nothing is acknowledged
    /// as durable here.
    // The effect comes back by value, as it went in: boxing it would cost an allocation on
    // every request to spare a move of a couple hundred bytes.
    #[allow(clippy::result_large_err)]
    pub fn execute_inline(&self, effect: Effect) -> Result<Completion, Effect> {
        match effect {
            Effect::LookupRecipient { ref address } => {
                match self
                    .users
                    .lookup_recipient_cached(address, self.config.clock.unix_seconds())
                {
                    Some(outcome) => Ok(Completion::Recipient(outcome)),
                    None => Err(effect),
                }
            }
            Effect::BeginMessage { envelope, trace } => Ok(self.begin(envelope, &trace)),
            Effect::AppendChunk { tx, ref bytes } => match self.get(tx) {
                Some(open) => {
                    let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
                    if self.buffer(&mut open, bytes) {
                        Ok(Completion::Appended)
                    } else {
                        Err(effect)
                    }
                }
                None => Err(effect),
            },
            Effect::Abort { tx } => {
                let without_file = self.get(tx).is_some_and(|open| {
                    open.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .file
                        .is_none()
                });
                if without_file {
                    self.abort(tx);
                    Ok(Completion::Aborted)
                } else {
                    Err(effect)
                }
            }
            other => Err(other),
        }
    }

    pub(crate) fn next_unique(&self, size: u64) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let random =
            (self.config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17) as u32;
        maildir::unique_name(
            self.config.clock.unix_seconds(),
            self.config.pid,
            n,
            random,
            &maildir::safe_host(&self.config.hostname),
            size,
        )
    }

    /// Starts a message: Return-Path and trace wait in memory; the file is created later.
    fn begin(&self, envelope: Envelope, trace: &[u8]) -> Completion {
        let path = self.config.data_dir.join("tmp").join(self.next_unique(0));
        let return_path = format!("Return-Path: <{}>\r\n", envelope.sender);
        let mut pending = Pending {
            bytes: Vec::with_capacity(return_path.len() + trace.len()),
            budget: self.buffered.clone(),
        };
        pending.insert(0, return_path.as_bytes());
        pending.insert(return_path.len(), trace);
        let id = self.counter.fetch_add(1, Ordering::Relaxed);
        let tx = OpenTx {
            size: (return_path.len() + trace.len()) as u64,
            return_path_len: return_path.len(),
            envelope,
            path,
            file: None,
            pending,
            last_cr: false,
        };
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(Mutex::new(tx)));
        Completion::Began(TxId(id))
    }

    /// Keeps `bytes` (line ends made CRLF) in the transaction's memory if it has no file yet
    /// and they fit; false, with nothing changed, otherwise.
    fn buffer(&self, open: &mut OpenTx, bytes: &[u8]) -> bool {
        if open.file.is_some() {
            return false;
        }
        let mut last_cr = open.last_cr;
        let bytes = crlf_line_ends(bytes, &mut last_cr);
        if !open.pending.try_extend(&bytes) {
            return false;
        }
        open.last_cr = last_cr;
        open.size += bytes.len() as u64;
        true
    }

    /// Creates the transaction's file in `tmp/` if it has none yet, and writes what waited in
    /// memory. On failure no file is left behind.
    fn materialize(&self, open: &mut OpenTx) -> io::Result<()> {
        if open.file.is_some() {
            return Ok(());
        }
        let result = (|| {
            let mut file = self.fs.create_new(&open.path)?;
            file.write_all(&open.pending.take())?;
            Ok::<_, io::Error>(file)
        })();
        match result {
            Ok(file) => {
                open.file = Some(file);
                Ok(())
            }
            Err(e) => {
                let _ = self.fs.remove_file(&open.path);
                tracing::error!(session = %open.envelope.session, error = %e, "cannot create message file");
                Err(e)
            }
        }
    }

    fn get(&self, tx: TxId) -> Option<Arc<Mutex<OpenTx>>> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tx.0)
            .cloned()
    }

    fn take(&self, tx: TxId) -> Option<OpenTx> {
        let arc = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tx.0)?;
        match Arc::try_unwrap(arc) {
            Ok(m) => Some(m.into_inner().unwrap_or_else(PoisonError::into_inner)),
            Err(_) => None,
        }
    }

    fn append(&self, tx: TxId, bytes: &[u8]) -> Completion {
        let Some(open) = self.get(tx) else {
            return temp("unknown transaction");
        };
        let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.buffer(&mut open, bytes) {
            return Completion::Appended;
        }
        let written = self.materialize(&mut open).and_then(|()| {
            let mut last_cr = open.last_cr;
            let bytes = crlf_line_ends(bytes, &mut last_cr);
            let file = open
                .file
                .as_mut()
                .ok_or_else(|| io::Error::other("no file"))?;
            file.write_all(&bytes)?;
            open.last_cr = last_cr;
            open.size += bytes.len() as u64;
            Ok(())
        });
        match written {
            Ok(()) => Completion::Appended,
            Err(e) => {
                tracing::error!(session = %open.envelope.session, error = %e, "cannot write message");
                temp(e.to_string())
            }
        }
    }

    fn abort(&self, tx: TxId) {
        if let Some(open) = self.take(tx) {
            if let Some(file) = open.file {
                drop(file);
                let _ = self.fs.remove_file(&open.path);
            }
            tracing::info!(session = %open.envelope.session, id = %open.envelope.id, "transaction aborted");
        }
    }

    fn commit(
        &self,
        tx: TxId,
        prepend: &[u8],
        edits: &[HeaderEdit],
        refusals: Refusals,
        junk: bool,
    ) -> Completion {
        let Some(mut open) = self.take(tx) else {
            return temp("unknown transaction");
        };
        let result = self.make_durable(&mut open, prepend, edits, refusals, junk);
        if open.file.is_some() {
            let _ = self.fs.remove_file(&open.path);
        }
        match result {
            Ok((refused, notices)) => {
                let env = &open.envelope;
                tracing::info!(
                    session = %env.session,
                    id = %env.id,
                    from = %format!("<{}>", env.sender),
                    rcpts = env.recipients.len(),
                    size = open.size,
                    "message accepted"
                );
                for r in &env.recipients {
                    if r.mailbox.is_none() {
                        tracing::info!(session = %env.session, id = %env.id, to = %r.address, "queued for remote delivery")
                    }
                }
                for r in &refused {
                    tracing::info!(session = %env.session, id = %env.id, to = %r.address, reason = %r.reason, "refused by the recipient's Sieve script");
                }
                for (to, bytes, kind) in notices {
                    if let Err(e) = self.send_notice(&env.id, &to, &bytes) {
                        tracing::warn!(session = %env.session, id = %env.id, to = %to, kind, error = %e, "cannot send");
                    } else {
                        tracing::info!(session = %env.session, id = %env.id, to = %to, kind, "sent");
                    }
                }
                Completion::Durable(Receipt::durable_except(tx, refused))
            }
            Err(e) => {
                tracing::error!(session = %open.envelope.session, id = %open.envelope.id, error = %e, "delivery failed");
                temp(e.to_string())
            }
        }
    }

    /// Fsyncs the message, runs each local recipient's Sieve script, gives the message its
    /// final names (folders, queue), and fsyncs their directories. Returns the refusals the
    /// session must report and the notices to send once the message is durable.
    fn make_durable(
        &self,
        open: &mut OpenTx,
        prepend: &[u8],
        edits: &[HeaderEdit],
        refusals: Refusals,
        junk: bool,
    ) -> io::Result<(Vec<Refusal>, Vec<Notice>)> {
        // On the way to the directory fsyncs: a flush starting meanwhile may wait for us.
        let coming = self.sync.coming();
        if open.file.is_none() && edits.is_empty() {
            // Still all in memory: the prepended fields go in place, no rewrite.
            open.pending.insert(open.return_path_len, prepend);
            open.size += prepend.len() as u64;
            self.materialize(open)?;
        } else {
            self.materialize(open)?;
            if let Some(file) = open.file.as_mut() {
                file.flush()?;
            }
            if !edits.is_empty() {
                self.rewrite_with_edits(open, prepend, edits)?;
            } else if !prepend.is_empty() {
                self.rewrite_with_prepend(open, prepend)?;
            }
        }
        let file = open
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("no file"))?;
        file.flush()?;
        file.sync()?;
        let size = open.size;
        let sender = open.envelope.sender.to_string();
        let skip = open.return_path_len;

        // Each local user once (with the first address that reached them), in a stable order.
        let mut users: Vec<(UserId, Vec<String>)> = Vec::new();
        for r in &open.envelope.recipients {
            if let Some(user) = &r.mailbox {
                match users.iter_mut().find(|(u, _)| u == user) {
                    Some((_, addrs)) => addrs.push(r.address.to_string()),
                    None => users.push((user.clone(), vec![r.address.to_string()])),
                }
            }
        }
        users.sort_by(|a, b| a.0.cmp(&b.0));
        let mut remote: Vec<String> = open
            .envelope
            .recipients
            .iter()
            .filter(|r| r.mailbox.is_none())
            .map(|r| r.address.to_string())
            .collect();

        let now = self.config.clock.unix_seconds();
        let mut plans = Vec::with_capacity(users.len());
        for (user, addrs) in &users {
            let lock = self.folders.get(&crate::sieve_scripts::user_data_dir(
                &self.config.data_dir,
                user,
            )?);
            let ctx = delivery::Context {
                fs: &*self.fs,
                data_dir: &self.config.data_dir,
                hostname: &self.config.hostname,
                now,
                vacation_lock: &lock,
                junk,
            };
            let plan = delivery::plan(
                &ctx,
                user,
                &addrs[0],
                &sender,
                &open.path,
                skip,
                size,
                &mut || self.message_id(),
            )?;
            plans.push(plan);
        }

        let all_refused =
            remote.is_empty() && !plans.is_empty() && plans.iter().all(|p| p.refused.is_some());
        let mut refused = Vec::new();
        let mut notices: Vec<Notice> = Vec::new();
        for ((user, addrs), plan) in users.iter().zip(&plans) {
            let Some(reason) = &plan.refused else {
                continue;
            };
            if refusals == Refusals::PerRecipient || all_refused {
                refused.extend(addrs.iter().map(|a| Refusal {
                    address: a.clone(),
                    reason: reason.clone(),
                }));
            } else if !sender.is_empty() {
                let lock = Mutex::new(());
                let ctx = delivery::Context {
                    fs: &*self.fs,
                    data_dir: &self.config.data_dir,
                    hostname: &self.config.hostname,
                    now,
                    vacation_lock: &lock,
                    junk,
                };
                let bytes = delivery::rejection_notice(
                    &ctx,
                    user,
                    &addrs[0],
                    &sender,
                    reason,
                    &open.path,
                    skip,
                    &self.message_id(),
                )?;
                notices.push((sender.clone(), bytes, "rejection notice"));
            }
        }

        let mut created: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        // mbox appends cannot be undone by unlinking: they go last, once the rest is durable.
        let mut mbox_jobs: Vec<(PathBuf, String)> = Vec::new();
        let result = (|| {
            for ((user, _), plan) in users.iter().zip(&plans) {
                let mut placed: Vec<&Path> = Vec::new();
                for p in &plan.placements {
                    // keep + fileinto "INBOX" is one copy, not two.
                    if placed.contains(&p.dir.as_path()) {
                        continue;
                    }
                    placed.push(&p.dir);
                    if self.mbox.applies(user) {
                        let path = match self.mbox.folder(user, &p.folder) {
                            Ok(path) => path,
                            Err(_) => self.mbox.inbox(user)?,
                        };
                        let flags = system_flag_letters(&p.flags);
                        if !mbox_jobs.iter().any(|(q, _)| *q == path) {
                            mbox_jobs.push((path, flags));
                        }
                        continue;
                    }
                    self.ensure_durable_maildir(&p.root)?;
                    if p.dir != p.root {
                        folder::ensure(&*self.fs, &p.root, &p.dir)?;
                    }
                    let letters = if p.flags.is_empty() {
                        String::new()
                    } else {
                        let lock = self.folders.get(&p.dir);
                        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        folder::maildir_flags(&*self.fs, &p.dir, &p.flags)?
                    };
                    let (sub, suffix) = if letters.is_empty() {
                        ("new", String::new())
                    } else {
                        ("cur", format!(":2,{letters}"))
                    };
                    let target = p.dir.join(sub);
                    let name = self.link_unique(&open.path, &target, size, &suffix)?;
                    created.push(target.join(name));
                    dirs.push(target);
                }
                for out in &plan.outgoing {
                    match out {
                        Outgoing::Redirect { to } => match self.local_user(to) {
                            Some(user) => {
                                let root = maildir::user_root(&self.config.data_dir, &user.0)?;
                                self.ensure_durable_maildir(&root)?;
                                let new = root.join("new");
                                let name = self.link_unique(&open.path, &new, size, "")?;
                                created.push(new.join(name));
                                dirs.push(new);
                            }
                            None => remote.push(to.clone()),
                        },
                        Outgoing::Notice { to, bytes, kind } => {
                            notices.push((to.clone(), bytes.clone(), kind));
                        }
                    }
                }
            }
            if !remote.is_empty() {
                let env = &open.envelope;
                // Mail from our own users (authenticated submission, local programs) is
                // signed for its From domain; mail merely passing through never is.
                let signatures = if env.submitted_by.is_some() {
                    self.dkim_signatures(&open.path, skip)
                } else {
                    Vec::new()
                };
                self.enqueue(
                    &open.path,
                    size,
                    &queue::envelope_lines(&env.id, &sender, skip, now, &signatures, &remote),
                    &mut created,
                    &mut dirs,
                )?;
            }
            self.sync.sync_dirs_arriving(&*self.fs, &dirs, coming)?;
            for (path, flags) in &mbox_jobs {
                self.append_mbox(path, &sender, flags, &open.path, skip)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for path in created {
                let _ = self.fs.remove_file(&path);
            }
            return Err(e);
        }
        if !remote.is_empty() {
            self.queued();
        }
        Ok((refused, notices))
    }

    /// Appends the message at `src` (without its first `skip` bytes, the Return-Path line, which
    /// the `From ` line replaces) to the mbox file at `path`, durably, under fcntl and dotlock.
    /// mbox files are reached directly, not through [`FileSystem`]: locking needs a real file.
    fn append_mbox(
        &self,
        path: &Path,
        sender: &str,
        flags: &str,
        src: &Path,
        skip: usize,
    ) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut input = self.fs.open_read(src)?;
        io::copy(&mut (&mut input).take(skip as u64), &mut io::sink())?;
        let options = mbox_file::MboxAppend {
            sender,
            received: u64::try_from(self.config.clock.unix_seconds()).unwrap_or(0),
            flags,
            lock_timeout: MBOX_LOCK_TIMEOUT,
        };
        mbox_file::append(path, &options, &mut input)?;
        Ok(())
    }

    /// Links the message at `src` into the outbound queue with envelope `env_text`.
    fn enqueue(
        &self,
        src: &Path,
        size: u64,
        env_text: &str,
        created: &mut Vec<PathBuf>,
        dirs: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        let msg_dir = self.config.data_dir.join(queue::MSG_DIR);
        let env_dir = self.config.data_dir.join(queue::ENV_DIR);
        let name = self.link_unique(src, &msg_dir, size, "")?;
        created.push(msg_dir.join(&name));
        let tmp = env_dir.join(format!(".{name}.tmp"));
        let mut f = self.fs.create_new(&tmp)?;
        let written = f.write_all(env_text.as_bytes()).and_then(|()| f.sync());
        drop(f);
        if let Err(e) = written.and_then(|()| self.fs.rename(&tmp, &env_dir.join(&name))) {
            let _ = self.fs.remove_file(&tmp);
            return Err(e);
        }
        created.push(env_dir.join(&name));
        dirs.push(msg_dir);
        dirs.push(env_dir);
        Ok(())
    }

    /// The local user `address` belongs to, if any.
    fn local_user(&self, address: &str) -> Option<UserId> {
        let parsed = petrel_core::smtp::address::parse_mailbox(address).ok()?;
        match self.users.lookup_recipient(&parsed) {
            RecipientOutcome::Local(user) => Some(user),
            _ => None,
        }
    }

    /// Sends a message this server wrote (vacation reply, rejection notice) from the null
    /// sender to `to`: into a local INBOX or the outbound queue, durably.
    pub(crate) fn send_notice(&self, about: &str, to: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.config.data_dir.join("tmp").join(self.next_unique(0));
        let return_path = b"Return-Path: <>\r\n";
        let size = (return_path.len() + bytes.len()) as u64;
        let result = (|| {
            let mut f = self.fs.create_new(&path)?;
            f.write_all(return_path)?;
            f.write_all(bytes)?;
            f.sync()?;
            drop(f);
            let (mut created, mut dirs) = (Vec::new(), Vec::new());
            let placed = (|| match self.local_user(to) {
                Some(user) => {
                    let root = maildir::user_root(&self.config.data_dir, &user.0)?;
                    self.ensure_durable_maildir(&root)?;
                    let new = root.join("new");
                    let name = self.link_unique(&path, &new, size, "")?;
                    created.push(new.join(name));
                    dirs.push(new);
                    self.sync.sync_dirs(&*self.fs, &dirs)
                }
                None => {
                    let id = format!(
                        "{about}.notice{}",
                        self.counter.fetch_add(1, Ordering::Relaxed)
                    );
                    let text = queue::envelope_lines(
                        &id,
                        "",
                        return_path.len(),
                        self.config.clock.unix_seconds(),
                        &[],
                        &[to.to_string()],
                    );
                    self.enqueue(&path, size, &text, &mut created, &mut dirs)?;
                    self.sync.sync_dirs(&*self.fs, &dirs)?;
                    self.queued();
                    Ok(())
                }
            })();
            if placed.is_err() {
                for p in &created {
                    let _ = self.fs.remove_file(p);
                }
            }
            placed
        })();
        let _ = self.fs.remove_file(&path);
        result
    }

    /// A fresh Message-ID for messages this server writes.
    pub(crate) fn message_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let random = (self.config.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(29);
        format!(
            "<{}.{n}.{random:016x}@{}>",
            self.config.clock.unix_seconds(),
            self.config.hostname
        )
    }

    /// Creates the Maildir if needed and, once per process, makes the entries leading to its
    /// `new/` durable: a link into `new/` is only as durable as `new/` itself.
    pub(crate) fn ensure_durable_maildir(&self, root: &Path) -> io::Result<()> {
        let known = |set: &std::collections::HashSet<PathBuf>| set.contains(root);
        if known(
            &self
                .durable_maildirs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return Ok(());
        }
        maildir::ensure(&*self.fs, root)?;
        crate::fs::sync_ancestors(&*self.fs, &root.join("new"), &self.config.data_dir)?;
        self.durable_maildirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(root.to_path_buf());
        Ok(())
    }

    /// Links `src` into `dir` under a fresh unique name (with `suffix`, such as Maildir's
    /// `:2,S`); falls back to a copy across devices.
    pub(crate) fn link_unique(
        &self,
        src: &Path,
        dir: &Path,
        size: u64,
        suffix: &str,
    ) -> io::Result<String> {
        for _ in 0..16 {
            let name = format!("{}{suffix}", self.next_unique(size));
            match self.fs.hard_link(src, &dir.join(&name)) {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                    self.copy_into(src, dir, &name)?;
                    return Ok(name);
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no unique file name after 16 tries"))
    }

    /// Copies `src` to `dir/name` through a durable temporary file beside it.
    fn copy_into(&self, src: &Path, dir: &Path, name: &str) -> io::Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut out = self.fs.create_new(&tmp)?;
        io::copy(&mut self.fs.open_read(src)?, &mut out)?;
        out.sync()?;
        drop(out);
        self.fs.rename(&tmp, &dir.join(name))
    }

    /// Writes a new file: Return-Path, `prepend`, the received header with the scanners'
    /// `edits` applied, then the body, copied by streaming (only the header is held in memory,
    /// at most [`MAX_EDITED_HEADER`] octets of it; a longer header gets the added fields on top
    /// and no other change).
    fn rewrite_with_edits(
        &self,
        open: &mut OpenTx,
        prepend: &[u8],
        edits: &[HeaderEdit],
    ) -> io::Result<()> {
        let path = self.config.data_dir.join("tmp").join(self.next_unique(0));
        let mut out = self.fs.create_new(&path)?;
        let mut input = io::BufReader::new(self.fs.open_read(&open.path)?);
        let mut head = vec![0u8; open.return_path_len];
        io::Read::read_exact(&mut input, &mut head)?;
        let mut header = Vec::new();
        let mut complete = false;
        while header.len() < MAX_EDITED_HEADER {
            let n = io::BufRead::read_until(&mut input, b'\n', &mut header)?;
            if n == 0 {
                break;
            }
            let line = &header[header.len() - n..];
            if line == b"\r\n" || line == b"\n" {
                complete = true;
                break;
            }
        }
        let edited = if complete {
            let end = header.len() - if header.ends_with(b"\r\n") { 2 } else { 1 };
            let mut edited = apply_header_edits(&header[..end], edits);
            edited.extend_from_slice(&header[end..]);
            edited
        } else {
            // No end of header in sight (a header-only message, or an enormous header): add
            // the new fields on top and leave the rest as it came.
            let adds: Vec<HeaderEdit> = edits
                .iter()
                .filter(|e| matches!(e, HeaderEdit::Add { .. }))
                .cloned()
                .collect();
            let mut edited = apply_header_edits(b"", &adds);
            edited.extend_from_slice(&header);
            edited
        };
        out.write_all(&head)?;
        out.write_all(prepend)?;
        out.write_all(&edited)?;
        io::copy(&mut input, &mut out)?;
        let _ = self.fs.remove_file(&open.path);
        open.path = path;
        open.file = Some(out);
        open.size = open.size + prepend.len() as u64 + edited.len() as u64 - header.len() as u64;
        Ok(())
    }

    /// Writes a new file: Return-Path, `prepend`, then the rest of the received file.
    fn rewrite_with_prepend(&self, open: &mut OpenTx, prepend: &[u8]) -> io::Result<()> {
        let path = self.config.data_dir.join("tmp").join(self.next_unique(0));
        let mut out = self.fs.create_new(&path)?;
        let mut input = self.fs.open_read(&open.path)?;
        let mut head = vec![0u8; open.return_path_len];
        io::Read::read_exact(&mut input, &mut head)?;
        out.write_all(&head)?;
        out.write_all(prepend)?;
        io::copy(&mut input, &mut out)?;
        let _ = self.fs.remove_file(&open.path);
        open.path = path;
        open.file = Some(out);
        open.size += prepend.len() as u64;
        Ok(())
    }
}

/// Most header octets read into memory to apply scanners' header edits.
const MAX_EDITED_HEADER: usize = 1024 * 1024;

/// Applies `edits` in order to a header block (`header`: CRLF-terminated fields, without the
/// empty line that ends the header) and returns the new block. `Add` appends a field, `Insert`
/// puts one before the `index`-th field (0 = first; past the end appends), `Change` replaces
/// the `index`-th (1-based) field of that name, or deletes it when the value is empty, and adds
/// the field when there is no such occurrence (as Sendmail and Postfix do for milters).
pub fn apply_header_edits(header: &[u8], edits: &[HeaderEdit]) -> Vec<u8> {
    // Split into fields, each with its continuation lines and line ends.
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    let render = |name: &str, value: &str| -> Vec<u8> {
        let clean = |s: &str| -> String {
            s.replace("\r\n", "\n")
                .replace('\r', "")
                .split('\n')
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ':')
            .collect();
        let value = clean(value.trim_start_matches([' ', '\t']));
        // A continuation line must start with whitespace, or it would begin a new field.
        let value = value.replace("\r\n", "\n");
        let value: Vec<String> = value
            .split('\n')
            .enumerate()
            .map(|(i, l)| {
                if i > 0 && !l.starts_with([' ', '\t']) {
                    format!("\t{l}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        format!("{name}: {}\r\n", value.join("\r\n")).into_bytes()
    };
    let name_of = |field: &[u8]| -> Vec<u8> {
        let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
        field[..colon].trim_ascii().to_ascii_lowercase()
    };
    for edit in edits {
        match edit {
            HeaderEdit::Add { name, value } => fields.push(render(name, value)),
            HeaderEdit::Insert { index, name, value } => {
                let at = (*index as usize).min(fields.len());
                fields.insert(at, render(name, value));
            }
            HeaderEdit::Change { name, index, value } => {
                let wanted = name.trim().to_ascii_lowercase().into_bytes();
                let found = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| name_of(f) == wanted)
                    .nth((*index as usize).saturating_sub(1))
                    .map(|(i, _)| i);
                match (found, value.is_empty()) {
                    (Some(i), true) => {
                        fields.remove(i);
                    }
                    (Some(i), false) => fields[i] = render(name, value),
                    (None, true) => {}
                    (None, false) => fields.push(render(name, value)),
                }
            }
        }
    }
    fields.concat()
}

#[cfg(test)]
mod tests {
    use super::crlf_line_ends;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut last_cr = false;
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&crlf_line_ends(c, &mut last_cr));
        }
        out
    }

    #[test]
    fn bare_lf_becomes_crlf_and_crlf_stays() {
        assert_eq!(run(&[b"a\r\nb\nc\n"]), b"a\r\nb\r\nc\r\n");
        assert_eq!(run(&[b"\n"]), b"\r\n");
        assert_eq!(run(&[b"bare\rcr\r\n"]), b"bare\rcr\r\n");
    }

    #[test]
    fn a_crlf_split_across_chunks_is_not_doubled() {
        assert_eq!(run(&[b"a\r", b"\nb\n"]), b"a\r\nb\r\n");
        assert_eq!(run(&[b"a", b"\n", b"\r", b"\n"]), b"a\r\n\r\n");
        let whole = b"x\ny\r\nz\n\n\r\n".to_vec();
        for split in 0..=whole.len() {
            assert_eq!(run(&[&whole[..split], &whole[split..]]), run(&[&whole]));
        }
    }
}
