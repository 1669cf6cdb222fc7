//! The user database: `DATA_DIR/passwd` read through the filesystem trait, cached until the file
//! changes, and the password and recipient checks the protocols ask for.

use crate::fs::{FileSystem, Stamp, write_atomic};
use crate::maildir;
use crate::passwd::{PasswdError, PasswdFile, validate_address};
use crate::password::{Verification, hash_password, verify_password};
use petrel_core::smtp::address::Address;
use petrel_core::{AuthOutcome, RecipientOutcome, UserId};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Subaddress separator: `user+tag@domain` is delivered to `user@domain` (RFC 5233).
pub const RECIPIENT_DELIMITER: char = '+';

/// Why a user could not be added or removed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UserError {
    /// The address or the passwd file refused it.
    Passwd(PasswdError),
    /// The disk failed.
    Io(io::Error),
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserError::Passwd(e) => e.fmt(f),
            UserError::Io(e) => write!(f, "cannot update the user database: {e}"),
        }
    }
}

impl std::error::Error for UserError {}

impl From<io::Error> for UserError {
    fn from(e: io::Error) -> Self {
        UserError::Io(e)
    }
}

/// The user `address` names in `file`: the whole local part first, then the part before
/// [`RECIPIENT_DELIMITER`].
fn resolve(file: &PasswdFile, address: &Address) -> RecipientOutcome {
    let domain = address.domain.to_string();
    let local = address.local.to_lowercase();
    let base = local.split_once(RECIPIENT_DELIMITER).map(|(b, _)| b);
    for candidate in std::iter::once(local.as_str()).chain(base) {
        if let Some(entry) = file.get(&format!("{candidate}@{domain}")) {
            return RecipientOutcome::Local(UserId(entry.address.to_lowercase()));
        }
    }
    RecipientOutcome::Unknown
}

/// The users of one data directory.
#[derive(Debug)]
pub struct UserDb {
    fs: Arc<dyn FileSystem>,
    data_dir: PathBuf,
    cache: Mutex<Option<(Option<Stamp>, Arc<PasswdFile>)>>,
    /// The second (the caller's clock) in which [`UserDb::lookup_recipient_checked`] last
    /// compared the file's stamp with the cache; `i64::MIN` before the first check.
    checked: AtomicI64,
}

/// Folders made for every new user, with their SPECIAL-USE attributes implied by the name.
pub const SPECIAL_USE_FOLDERS: [&str; 5] = ["Sent", "Drafts", "Trash", "Junk", "Archive"];

impl UserDb {
    /// The user database of `data_dir` (the file need not exist yet).
    pub fn new(fs: Arc<dyn FileSystem>, data_dir: &Path) -> Self {
        UserDb {
            fs,
            data_dir: data_dir.to_path_buf(),
            cache: Mutex::new(None),
            checked: AtomicI64::new(i64::MIN),
        }
    }

    fn path(&self) -> PathBuf {
        self.data_dir.join("passwd")
    }

    /// The current passwd file; re-read only when its size, mtime or inode changed.
    pub fn load(&self) -> io::Result<Arc<PasswdFile>> {
        let stamp = self.fs.stamp(&self.path())?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, file)) = cache.as_ref()
            && *cached == stamp
        {
            return Ok(file.clone());
        }
        let file = match stamp {
            None => PasswdFile::default(),
            Some(_) => {
                let bytes = self.fs.read(&self.path())?;
                PasswdFile::parse(&String::from_utf8_lossy(&bytes))
            }
        };
        let file = Arc::new(file);
        *cache = Some((stamp, file.clone()));
        Ok(file)
    }

    /// Checks a password. Unknown users cost the same hash computation as known ones, so timing
    /// does not reveal which addresses exist.
    pub fn authenticate(&self, username: &str, password: &[u8]) -> AuthOutcome {
        let file = match self.load() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the user database");
                return AuthOutcome::TempFail;
            }
        };
        match file.get(username) {
            Some(entry) => match verify_password(&entry.password, password) {
                Verification::Match => AuthOutcome::Success(UserId(entry.address.to_lowercase())),
                Verification::Mismatch => AuthOutcome::Failure,
                other => {
                    tracing::warn!(user = %entry.address, result = ?other, "password hash cannot be checked");
                    AuthOutcome::Failure
                }
            },
            None => {
                static DUMMY: OnceLock<String> = OnceLock::new();
                let dummy = DUMMY.get_or_init(|| hash_password("petrel-dummy-password"));
                let _ = verify_password(dummy, password);
                AuthOutcome::Failure
            }
        }
    }

    /// Resolves a recipient in a local domain to its user, `user+tag` to `user`.
    pub fn lookup_recipient(&self, address: &Address) -> RecipientOutcome {
        let file = match self.load() {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the user database");
                return RecipientOutcome::TempFail;
            }
        };
        resolve(&file, address)
    }

    /// [`UserDb::lookup_recipient`], remembering that the file was checked in second `now`
    /// (Unix seconds, read before the call) for [`UserDb::lookup_recipient_cached`].
    pub fn lookup_recipient_checked(&self, address: &Address, now: i64) -> RecipientOutcome {
        let outcome = self.lookup_recipient(address);
        if outcome != RecipientOutcome::TempFail {
            self.checked.fetch_max(now, Ordering::Relaxed);
        }
        outcome
    }

    /// A local recipient's user, answered from memory without touching the disk, when the
    /// file was checked in this same second `now` (so the answer is less than a second
    /// stale). `None` when the cache is older or the address is not a known user: an unknown
    /// address is always checked against the file, so a user added a moment ago is never
    /// refused from a stale cache.
    pub fn lookup_recipient_cached(&self, address: &Address, now: i64) -> Option<RecipientOutcome> {
        if self.checked.load(Ordering::Relaxed) != now {
            return None;
        }
        let file = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()?
            .1
            .clone();
        match resolve(&file, address) {
            local @ RecipientOutcome::Local(_) => Some(local),
            _ => None,
        }
    }

    /// Adds a user with an Argon2id hash of `password` and creates their Maildir. The caller
    /// serialises concurrent changes (the CLI holds a lock file).
    pub fn add(&self, address: &str, password: &str) -> Result<UserId, UserError> {
        let (local, domain) = validate_address(address).map_err(UserError::Passwd)?;
        let canonical = format!("{local}@{domain}");
        let mut file = (*self.load()?).clone();
        file.insert(&canonical, &hash_password(password))
            .map_err(UserError::Passwd)?;
        crate::fs::create_dir_all(&*self.fs, &self.data_dir)?;
        write_atomic(
            &*self.fs,
            &self.path(),
            file.to_text().as_bytes(),
            &std::process::id().to_string(),
        )?;
        let root = maildir::user_root(&self.data_dir, &canonical)?;
        maildir::ensure(&*self.fs, &root)?;
        // The special-use folders every mail client looks for (RFC 6154), subscribed.
        for name in SPECIAL_USE_FOLDERS {
            let dir = crate::folder::folder_dir(&self.data_dir, &canonical, Some(name))?;
            crate::folder::ensure(&*self.fs, &root, &dir)?;
        }
        let subscriptions = root.join("subscriptions");
        if self.fs.stamp(&subscriptions)?.is_none() {
            let text: String = SPECIAL_USE_FOLDERS
                .iter()
                .map(|n| format!("{n}\n"))
                .collect();
            write_atomic(&*self.fs, &subscriptions, text.as_bytes(), "users")?;
        }
        Ok(UserId(canonical))
    }

    /// Removes a user from the passwd file (their mail stays). False if there was no such user.
    pub fn remove(&self, address: &str) -> Result<bool, UserError> {
        let mut file = (*self.load()?).clone();
        if !file.remove(address) {
            return Ok(false);
        }
        write_atomic(
            &*self.fs,
            &self.path(),
            file.to_text().as_bytes(),
            &std::process::id().to_string(),
        )?;
        Ok(true)
    }

    /// Every user's address, in file order.
    pub fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.load()?.users().map(|e| e.address.clone()).collect())
    }
}
