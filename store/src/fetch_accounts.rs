//! Remote accounts a user's mail is fetched from (issue 11), and their durable state.
//!
//! Everything lives in the user's data folder, `DATA_DIR/users/DOMAIN/LOCALPART/fetch/`
//! (mode 0700), one account per number `N`:
//!
//! - `N.account` (mode 0600): the URL, `keep`, the pinned certificate fingerprint, a token fixed
//!   at creation, and the password. The password is stored as it is, readable only by the
//!   server's user, like Dovecot's and fetchmail's own files: the server must be able to send it
//!   without anyone present, so any key that could encrypt it would have to sit beside it in
//!   `DATA_DIR` with the same permissions, which would protect against nobody who can read the
//!   file and would suggest a protection that does not exist. Backups of `DATA_DIR` must be
//!   treated as holding these passwords.
//! - `N.log` (mode 0600): an append-only journal, one fsynced line per event:
//!   `P KEY UNIX` (about to deliver KEY), `D KEY SIZE DIGEST` (KEY is durable here),
//!   `V UIDVALIDITY` (the IMAP folder's UIDVALIDITY), `R KEY` (the POP3 remote no longer lists
//!   KEY: forget it). It is rewritten compactly (temporary file, fsync, rename, directory fsync)
//!   when it has grown to several times what it says.
//! - `N.status` (mode 0600, replaced atomically): the last run, the last error and its time,
//!   consecutive failures (for the backoff), messages fetched in total, a UIDVALIDITY change.
//! - `N.lock`: held (flock) by whichever process fetches the account, so the daemon and
//!   `petrel fetch run` never fetch the same account at once.
//!
//! Crash safety: a `P` entry without its `D` means a crash between the journal entry and the
//! record of the delivery. When the account is loaded, the Maildir files of the user written
//! since the `P` entry (their names start with the time of writing) are searched for the
//! `X-Petrel-Fetch: TOKEN KEY` field every fetched message carries; if one has it, the delivery
//! happened and `D` is written; otherwise it did not become durable and the message is fetched
//! again. (Users delivered to mbox files, `[delivery] mbox`, are not searched: a crash in that
//! window may give them the message twice.)
//!
//! UIDVALIDITY change: every `D` entry carries a digest of the message's `Message-ID` and `Date`
//! fields and its size. When the remote's UIDVALIDITY changes, the IMAP session lists those of
//! every message and fetches only the ones whose digest the account has not recorded; the
//! change and its time are kept in `N.status` and shown by `petrel fetch list`.

use petrel_core::fetch::{
    FetchAccount, FetchAnswer, FetchRequest, FetchState, FetchUrl, MARKER_FIELD, Protocol,
    Security, marker_line,
};
use petrel_core::{Completion, ErrorClass, Secret, StoreError, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One remote account, as `N.account` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its number among the user's accounts.
    pub id: u32,
    /// The remote.
    pub url: FetchUrl,
    /// Leave mail on the remote.
    pub keep: bool,
    /// SHA-256 fingerprint (lowercase hex) of the only certificate trusted, if pinned.
    pub pin_sha256: Option<String>,
    /// Fixed at creation; carried by the delivery marker.
    pub token: String,
    /// The remote password.
    pub password: String,
}

impl Account {
    /// What a fetch session of `user` needs to know of this account. STARTTLS/STLS is
    /// required unless the remote is on loopback: the password never goes out in clear.
    pub fn session_account(&self, user: &UserId) -> FetchAccount {
        FetchAccount {
            user: user.clone(),
            id: self.id,
            token: self.token.clone(),
            protocol: self.url.protocol,
            security: if self.url.implicit_tls {
                Security::Implicit
            } else {
                Security::StartTls {
                    required: !self.url.is_loopback(),
                }
            },
            host: self.url.host.clone(),
            login: self.url.login.clone(),
            password: Secret::new(self.password.clone()),
            folder: self.url.folder.clone(),
            keep: self.keep,
        }
    }
}

/// What `N.status` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// When the last pass ended (Unix seconds), if ever.
    pub last_run: Option<i64>,
    /// When the last pass succeeded.
    pub last_ok: Option<i64>,
    /// The error of the last pass, with its time; `None` after a success.
    pub last_error: Option<(i64, String)>,
    /// Passes that failed in a row (the backoff grows with it).
    pub failures: u32,
    /// Messages fetched since the account was added.
    pub fetched: u64,
    /// The last UIDVALIDITY change: old, new, when.
    pub uidvalidity_change: Option<(u32, u32, i64)>,
    /// What the last pass noted (messages left on the remote, and why).
    pub notes: Vec<String>,
}

/// The user's fetch folder.
pub fn fetch_dir(data_dir: &Path, user: &UserId) -> io::Result<PathBuf> {
    Ok(crate::sieve_scripts::user_data_dir(data_dir, user)?.join("fetch"))
}

fn private_file(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.mode(0o600).create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `text` durably: temporary file, fsync, rename, directory fsync.
fn replace(path: &Path, text: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = private_file(&tmp, false)?;
    f.write_all(text)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if let Some(p) = dir.parent() {
        sync_dir(p)?;
        if let Some(pp) = p.parent() {
            sync_dir(pp)?;
        }
    }
    Ok(())
}

fn account_text(a: &Account) -> String {
    format!(
        "url = {}\nkeep = {}\npin_sha256 = {}\ntoken = {}\npassword = {}\n",
        a.url,
        if a.keep { "yes" } else { "no" },
        a.pin_sha256.as_deref().unwrap_or(""),
        a.token,
        a.password
    )
}

fn parse_account(id: u32, text: &str) -> Result<Account, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(" = ") {
            map.insert(k.trim().to_string(), v.to_string());
        } else if let Some(k) = line.strip_suffix(" =") {
            map.insert(k.trim().to_string(), String::new());
        }
    }
    let get = |k: &str| map.get(k).cloned().ok_or_else(|| format!("no {k}"));
    let pin = get("pin_sha256").unwrap_or_default();
    Ok(Account {
        id,
        url: FetchUrl::parse(&get("url")?)?,
        keep: get("keep")? == "yes",
        pin_sha256: (!pin.is_empty()).then_some(pin),
        token: get("token")?,
        password: get("password")?,
    })
}

/// Adds an account for `user`; returns its number. `now` seeds the token.
pub fn add(
    data_dir: &Path,
    user: &UserId,
    url: FetchUrl,
    password: &str,
    keep: bool,
    pin_sha256: Option<String>,
    now: i64,
) -> io::Result<Account> {
    if password.contains(['\r', '\n']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the password has a line break",
        ));
    }
    let dir = fetch_dir(data_dir, user)?;
    ensure_dir(&dir)?;
    let id = accounts(data_dir, user)?
        .iter()
        .map(|a| a.id)
        .max()
        .unwrap_or(0)
        + 1;
    let account = Account {
        id,
        url,
        keep,
        pin_sha256,
        token: format!("{id}.{now:x}.{:x}", std::process::id()),
        password: password.to_string(),
    };
    // Leftovers of an earlier account with this number must not count for the new one.
    for ext in ["log", "status"] {
        let _ = fs::remove_file(dir.join(format!("{id}.{ext}")));
    }
    let path = dir.join(format!("{id}.account"));
    let tmp = dir.join(format!("{id}.account.tmp"));
    let mut f = private_file(&tmp, false)?;
    f.write_all(account_text(&account).as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(&dir)?;
    Ok(account)
}

/// The user's accounts, by number. Unreadable files are skipped with a warning.
pub fn accounts(data_dir: &Path, user: &UserId) -> io::Result<Vec<Account>> {
    let dir = fetch_dir(data_dir, user)?;
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_suffix(".account")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match fs::read_to_string(dir.join(&name))
            .map_err(|e| e.to_string())
            .and_then(|t| parse_account(id, &t))
        {
            Ok(a) => out.push(a),
            Err(e) => {
                tracing::warn!(file = %dir.join(&name).display(), error = %e, "unreadable fetch account")
            }
        }
    }
    out.sort_by_key(|a| a.id);
    Ok(out)
}

/// Every user's accounts (for the daemon): `DATA_DIR/users/DOMAIN/LOCALPART/fetch/*.account`.
pub fn all_accounts(data_dir: &Path) -> io::Result<Vec<(UserId, Account)>> {
    let mut out = Vec::new();
    let users = data_dir.join("users");
    let domains = match fs::read_dir(&users) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for domain in domains {
        let domain = domain?;
        let Ok(locals) = fs::read_dir(domain.path()) else {
            continue;
        };
        for local in locals {
            let local = local?;
            if !local.path().join("fetch").is_dir() {
                continue;
            }
            let user = UserId(format!(
                "{}@{}",
                local.file_name().to_string_lossy(),
                domain.file_name().to_string_lossy()
            ));
            for a in accounts(data_dir, &user).unwrap_or_default() {
                out.push((user.clone(), a));
            }
        }
    }
    Ok(out)
}

/// Removes an account and its state; false if there was none.
pub fn delete(data_dir: &Path, user: &UserId, id: u32) -> io::Result<bool> {
    let dir = fetch_dir(data_dir, user)?;
    let path = dir.join(format!("{id}.account"));
    if !path.exists() {
        return Ok(false);
    }
    fs::remove_file(&path)?;
    for ext in ["log", "status", "lock"] {
        let _ = fs::remove_file(dir.join(format!("{id}.{ext}")));
    }
    sync_dir(&dir)?;
    Ok(true)
}

/// Takes the account's lock without waiting: `None` when another process fetches it now.
pub fn try_lock(data_dir: &Path, user: &UserId, id: u32) -> io::Result<Option<File>> {
    let dir = fetch_dir(data_dir, user)?;
    ensure_dir(&dir)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(format!("{id}.lock")))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Reads `N.status` (defaults when missing).
pub fn status(data_dir: &Path, user: &UserId, id: u32) -> io::Result<Status> {
    let path = fetch_dir(data_dir, user)?.join(format!("{id}.status"));
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Status::default()),
        Err(e) => return Err(e),
    };
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        match k {
            "last_run" => s.last_run = v.parse().ok(),
            "last_ok" => s.last_ok = v.parse().ok(),
            "last_error" => {
                if let Some((t, text)) = v.split_once(' ') {
                    s.last_error = t.parse().ok().map(|t| (t, text.to_string()));
                }
            }
            "failures" => s.failures = v.parse().unwrap_or(0),
            "note" => s.notes.push(v.to_string()),
            "fetched" => s.fetched = v.parse().unwrap_or(0),
            "uidvalidity_change" => {
                let p: Vec<&str> = v.split(' ').collect();
                if let [a, b, t] = p[..] {
                    s.uidvalidity_change = a
                        .parse()
                        .ok()
                        .zip(b.parse().ok())
                        .zip(t.parse().ok())
                        .map(|((a, b), t)| (a, b, t));
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

fn write_status(data_dir: &Path, user: &UserId, id: u32, s: &Status) -> io::Result<()> {
    let mut text = String::new();
    if let Some(t) = s.last_run {
        text.push_str(&format!("last_run {t}\n"));
    }
    if let Some(t) = s.last_ok {
        text.push_str(&format!("last_ok {t}\n"));
    }
    if let Some((t, e)) = &s.last_error {
        let e: String = e.chars().filter(|c| !c.is_control()).collect();
        text.push_str(&format!("last_error {t} {e}\n"));
    }
    text.push_str(&format!("failures {}\nfetched {}\n", s.failures, s.fetched));
    if let Some((a, b, t)) = s.uidvalidity_change {
        text.push_str(&format!("uidvalidity_change {a} {b} {t}\n"));
    }
    for n in &s.notes {
        let n: String = n.chars().filter(|c| !c.is_control()).collect();
        text.push_str(&format!("note {n}\n"));
    }
    replace(
        &fetch_dir(data_dir, user)?.join(format!("{id}.status")),
        text.as_bytes(),
    )
}

/// Records a pass that could not even start (connection refused, TLS failure): the error is
/// shown by `petrel fetch list` and the backoff grows.
pub fn record_failure(
    data_dir: &Path,
    user: &UserId,
    id: u32,
    now: i64,
    error: &str,
) -> io::Result<()> {
    let mut s = status(data_dir, user, id)?;
    s.last_run = Some(now);
    s.last_error = Some((now, error.to_string()));
    s.failures = s.failures.saturating_add(1);
    write_status(data_dir, user, id, &s)
}

/// Replaces the text of the last error (the failure is already counted): for a cause the
/// session could not see, such as a failed STARTTLS handshake.
pub fn replace_error(
    data_dir: &Path,
    user: &UserId,
    id: u32,
    now: i64,
    error: &str,
) -> io::Result<()> {
    let mut s = status(data_dir, user, id)?;
    s.last_error = Some((now, error.to_string()));
    write_status(data_dir, user, id, &s)
}

/// The journal, parsed.
#[derive(Debug, Default)]
struct Journal {
    uidvalidity: Option<u32>,
    /// Per UIDVALIDITY, the highest UID delivered.
    highest: BTreeMap<u32, u32>,
    uidls: BTreeSet<String>,
    digests: BTreeSet<String>,
    left_on_remote: BTreeSet<String>,
    /// Pending keys without their delivery, with the time of the entry.
    pending: BTreeMap<String, i64>,
    lines: usize,
}

impl Journal {
    fn apply(&mut self, line: &str) {
        self.lines += 1;
        let mut p = line.split(' ');
        match (p.next(), p.next()) {
            (Some("P"), Some(key)) => {
                let t = p.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                self.pending.insert(key.to_string(), t);
            }
            (Some("D"), Some(key)) => {
                self.pending.remove(key);
                let _size = p.next();
                if let Some(d) = p.next().filter(|d| *d != "-") {
                    self.digests.insert(d.to_string());
                }
                if p.next() == Some("K") {
                    self.left_on_remote.insert(key.to_string());
                }
                self.add_key(key);
            }
            (Some("V"), Some(v)) => self.uidvalidity = v.parse().ok(),
            (Some("R"), Some(key)) => {
                if let Some(u) = key.strip_prefix("pop3:") {
                    self.uidls.remove(u);
                }
            }
            _ => {}
        }
    }

    fn add_key(&mut self, key: &str) {
        if let Some(u) = key.strip_prefix("pop3:") {
            self.uidls.insert(u.to_string());
        } else if let Some(rest) = key.strip_prefix("imap:")
            && let Some((v, u)) = rest.split_once(':')
            && let (Ok(v), Ok(u)) = (v.parse::<u32>(), u.parse::<u32>())
        {
            let h = self.highest.entry(v).or_insert(0);
            *h = (*h).max(u);
        }
    }

    fn state(&self) -> FetchState {
        let highest_uid = self
            .uidvalidity
            .and_then(|v| self.highest.get(&v).copied())
            .unwrap_or(0);
        FetchState {
            uidvalidity: self.uidvalidity,
            highest_uid,
            uidls: self.uidls.clone(),
            digests: self.digests.clone(),
            left_on_remote: self.left_on_remote.clone(),
        }
    }

    /// The journal as few lines as say the same.
    fn compact(&self) -> String {
        let mut out = String::new();
        if let Some(v) = self.uidvalidity {
            out.push_str(&format!("V {v}\n"));
        }
        for (v, u) in &self.highest {
            out.push_str(&format!("D imap:{v}:{u} 0 -\n"));
        }
        for u in &self.uidls {
            out.push_str(&format!("D pop3:{u} 0 -\n"));
        }
        // Digests ride on dummy keys so they survive compaction.
        for d in &self.digests {
            out.push_str(&format!("D digest 0 {d}\n"));
        }
        for k in &self.left_on_remote {
            out.push_str(&format!("D {k} 0 - K\n"));
        }
        for (k, t) in &self.pending {
            out.push_str(&format!("P {k} {t}\n"));
        }
        out
    }
}

fn read_journal(path: &Path) -> io::Result<Journal> {
    let mut j = Journal::default();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(j),
        Err(e) => return Err(e),
    };
    for line in io::BufReader::new(f).lines() {
        // A torn last line (crash mid-append) is ignored: its fsync never returned.
        match line {
            Ok(l) => j.apply(&l),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
            Err(e) => return Err(e),
        }
    }
    Ok(j)
}

fn append(path: &Path, line: &str) -> io::Result<()> {
    let existed = path.exists();
    let mut f = private_file(path, true)?;
    // Start on a fresh line even after a torn write.
    let len = f.metadata()?.len();
    let mut text = String::with_capacity(line.len() + 2);
    if len > 0 {
        let mut last = [0u8; 1];
        let mut r = File::open(path)?;
        std::io::Seek::seek(&mut r, io::SeekFrom::End(-1))?;
        r.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    if !existed {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Looks for `marker` among the user's Maildir files written at or after `since`.
fn find_marker(data_dir: &Path, user: &UserId, marker: &str, since: i64) -> io::Result<bool> {
    let root = crate::maildir::user_root(data_dir, &user.0)?;
    let mut dirs = vec![root.clone()];
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') && e.path().is_dir() {
                dirs.push(e.path());
            }
        }
    }
    let needle = marker.as_bytes();
    let mut head = vec![0u8; 16 * 1024];
    for d in dirs {
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(d.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let secs: i64 = name
                    .split('.')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(i64::MAX);
                if secs + 2 < since {
                    continue;
                }
                let Ok(mut f) = File::open(e.path()) else {
                    continue;
                };
                let mut n = 0;
                while n < head.len() {
                    match f.read(&mut head[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(_) => break,
                    }
                }
                if head[..n].windows(needle.len()).any(|w| w == needle) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

fn fail(e: impl std::fmt::Display) -> Completion {
    Completion::Failed(StoreError {
        class: ErrorClass::Temporary,
        message: e.to_string(),
    })
}

/// Carries out a fetch session's request ([`petrel_core::Effect::Fetch`]). `now` is the
/// calendar time (Unix seconds) for the journal and the status.
pub fn execute(
    data_dir: &Path,
    user: &UserId,
    id: u32,
    request: FetchRequest,
    now: i64,
) -> Completion {
    match execute_inner(data_dir, user, id, request, now) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(user = %user.0, account = id, error = %e, "fetch state");
            fail(e)
        }
    }
}

fn execute_inner(
    data_dir: &Path,
    user: &UserId,
    id: u32,
    request: FetchRequest,
    now: i64,
) -> io::Result<Completion> {
    let dir = fetch_dir(data_dir, user)?;
    let log = dir.join(format!("{id}.log"));
    let done = Ok(Completion::Fetch(FetchAnswer::Done));
    match request {
        FetchRequest::Load => {
            let mut j = read_journal(&log)?;
            if !j.pending.is_empty() {
                let token = accounts(data_dir, user)?
                    .into_iter()
                    .find(|a| a.id == id)
                    .map(|a| a.token)
                    .ok_or_else(|| io::Error::other("no such account"))?;
                for (key, since) in j.pending.clone() {
                    let marker = marker_line(&token, &key);
                    let marker = marker.trim_end();
                    if find_marker(data_dir, user, marker, since)? {
                        tracing::warn!(user = %user.0, account = id, %key, "a delivery interrupted by a crash had completed; not fetching it again");
                        append(&log, &format!("D {key} 0 -"))?;
                        j.apply(&format!("D {key} 0 -"));
                    } else {
                        tracing::warn!(user = %user.0, account = id, %key, "a delivery interrupted by a crash had not completed; fetching it again");
                        j.pending.remove(&key);
                    }
                }
            }
            let live = 1
                + j.highest.len()
                + j.uidls.len()
                + j.digests.len()
                + j.left_on_remote.len()
                + j.pending.len();
            if j.lines > 4 * live + 64 {
                replace(&log, j.compact().as_bytes())?;
            }
            Ok(Completion::Fetch(FetchAnswer::State(j.state())))
        }
        FetchRequest::Pending { key } => {
            append(&log, &format!("P {key} {now}"))?;
            done
        }
        FetchRequest::Delivered {
            key,
            size,
            digest,
            left_on_remote,
        } => {
            let flag = if left_on_remote { " K" } else { "" };
            append(&log, &format!("D {key} {size} {digest}{flag}"))?;
            done
        }
        FetchRequest::UidValidity { old, new } => {
            append(&log, &format!("V {new}"))?;
            if let Some(old) = old {
                let mut s = status(data_dir, user, id)?;
                s.uidvalidity_change = Some((old, new, now));
                write_status(data_dir, user, id, &s)?;
            }
            done
        }
        FetchRequest::Retain { keys } => {
            let j = read_journal(&log)?;
            let listed: BTreeSet<&str> = keys
                .iter()
                .filter_map(|k| k.strip_prefix("pop3:"))
                .collect();
            let gone: Vec<&String> = j
                .uidls
                .iter()
                .filter(|u| !listed.contains(u.as_str()))
                .collect();
            if !gone.is_empty() {
                let text: String = gone.iter().map(|u| format!("R pop3:{u}\n")).collect();
                let mut f = private_file(&log, true)?;
                f.write_all(text.as_bytes())?;
                f.sync_data()?;
            }
            done
        }
        // Progress is for the driver; the lock is the driver's (see `try_lock`).
        FetchRequest::Progress { .. } | FetchRequest::Release | FetchRequest::Acquire => done,
        FetchRequest::Finished {
            fetched,
            error,
            notes,
        } => {
            let mut s = status(data_dir, user, id)?;
            s.last_run = Some(now);
            s.notes = notes;
            s.fetched += fetched;
            match error {
                None => {
                    s.last_ok = Some(now);
                    s.last_error = None;
                    s.failures = 0;
                }
                Some(e) => {
                    s.last_error = Some((now, e));
                    s.failures = s.failures.saturating_add(1);
                }
            }
            write_status(data_dir, user, id, &s)?;
            done
        }
    }
}

/// The header field name of the delivery marker (re-exported for tests).
pub const MARKER: &str = MARKER_FIELD;

/// True for IMAP accounts.
pub fn is_imap(a: &Account) -> bool {
    a.url.protocol == Protocol::Imap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId("alice@example.com".into())
    }

    #[test]
    fn add_list_delete_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let url = FetchUrl::parse("imaps://bob%40isp@mail.isp.example:993/INBOX").unwrap();
        let a = add(d.path(), &user(), url.clone(), "pw x", true, None, 100).unwrap();
        assert_eq!(a.id, 1);
        let file = d.path().join("users/example.com/alice/fetch/1.account");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let list = accounts(d.path(), &user()).unwrap();
        assert_eq!(list, vec![a.clone()]);
        assert_eq!(list[0].url.login, "bob@isp");
        let b = add(d.path(), &user(), url, "pw", false, Some("ab".into()), 101).unwrap();
        assert_eq!(b.id, 2);
        assert_eq!(all_accounts(d.path()).unwrap().len(), 2);
        assert!(delete(d.path(), &user(), 1).unwrap());
        assert!(!delete(d.path(), &user(), 1).unwrap());
        assert_eq!(accounts(d.path(), &user()).unwrap(), vec![b]);
    }

    #[test]
    fn journal_state_and_pending_recovery() {
        let d = tempfile::tempdir().unwrap();
        let url = FetchUrl::parse("pop3://bob@127.0.0.1:110").unwrap();
        let a = add(d.path(), &user(), url, "pw", false, None, 100).unwrap();
        let ex = |r| execute(d.path(), &user(), a.id, r, 1000);
        for k in ["pop3:a", "pop3:b"] {
            assert!(matches!(
                ex(FetchRequest::Pending { key: k.into() }),
                Completion::Fetch(FetchAnswer::Done)
            ));
        }
        let _ = ex(FetchRequest::Delivered {
            key: "pop3:a".into(),
            size: 10,
            digest: "00ff".into(),
            left_on_remote: false,
        });
        // "b" is pending; its marker is in the Maildir: recovered as delivered.
        let new = d.path().join("mail/example.com/alice/new");
        fs::create_dir_all(&new).unwrap();
        fs::write(
            new.join("1000.P1Q1.host,S=10"),
            format!(
                "Return-Path: <>\r\n{}\r\nbody",
                marker_line(&a.token, "pop3:b")
            ),
        )
        .unwrap();
        let _ = ex(FetchRequest::Pending {
            key: "pop3:c".into(),
        });
        let Completion::Fetch(FetchAnswer::State(s)) = ex(FetchRequest::Load) else {
            panic!("no state")
        };
        assert_eq!(
            s.uidls.iter().cloned().collect::<Vec<_>>(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(s.digests.contains("00ff"));
        let _ = ex(FetchRequest::Retain {
            keys: vec!["pop3:b".into()],
        });
        let Completion::Fetch(FetchAnswer::State(s)) = ex(FetchRequest::Load) else {
            panic!("no state")
        };
        assert_eq!(
            s.uidls.iter().cloned().collect::<Vec<_>>(),
            vec!["b".to_string()]
        );
    }

    #[test]
    fn imap_highest_follows_uidvalidity() {
        let d = tempfile::tempdir().unwrap();
        let url = FetchUrl::parse("imap://bob@127.0.0.1:143").unwrap();
        let a = add(d.path(), &user(), url, "pw", true, None, 100).unwrap();
        let ex = |r| execute(d.path(), &user(), a.id, r, 1000);
        let _ = ex(FetchRequest::UidValidity { old: None, new: 7 });
        for u in [3, 5] {
            let _ = ex(FetchRequest::Delivered {
                key: format!("imap:7:{u}"),
                size: 1,
                digest: format!("d{u}"),
                left_on_remote: u == 3,
            });
        }
        let Completion::Fetch(FetchAnswer::State(s)) = ex(FetchRequest::Load) else {
            panic!()
        };
        assert_eq!((s.uidvalidity, s.highest_uid), (Some(7), 5));
        assert!(s.left_on_remote.contains("imap:7:3"));
        let _ = ex(FetchRequest::UidValidity {
            old: Some(7),
            new: 9,
        });
        let Completion::Fetch(FetchAnswer::State(s)) = ex(FetchRequest::Load) else {
            panic!()
        };
        assert_eq!((s.uidvalidity, s.highest_uid), (Some(9), 0));
        assert_eq!(s.digests.len(), 2);
        assert_eq!(
            status(d.path(), &user(), a.id)
                .unwrap()
                .uidvalidity_change
                .map(|c| (c.0, c.1)),
            Some((7, 9))
        );
    }
}
