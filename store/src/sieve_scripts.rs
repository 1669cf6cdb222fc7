//! Sieve scripts on disk, the single owner of their layout:
//!
//! - `DATA_DIR/users/DOMAIN/LOCALPART/`: a user's data folder, built only from a validated
//!   address (as [`crate::maildir::user_root`] builds the Maildir root);
//! - `sieve/NAME.sieve` in it: one script;
//! - `sieve/.active`: one line naming the active script; absent means none is active.
//!
//! Every change is durable (temporary file, fsync, rename, fsync of the directory) before the
//! function returns, so a ManageSieve `OK` is only sent for a change that survives a crash.
//! Renaming the active script links the new name, points `.active` at it, then removes the old
//! name: a crash at any instant leaves `.active` naming an existing script or a missing one,
//! which reads as "no active script", never a half-written file.

use crate::fs::{FileSystem, create_dir_all, sync_ancestors, write_atomic};
use crate::passwd::validate_address;
use petrel_core::managesieve::{ScriptEntry, SieveAnswer, SieveRequest, check_script_name};
use petrel_core::{Completion, ErrorClass, StoreError, UserId};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most scripts one user may keep.
pub const MAX_SCRIPTS: usize = 32;
pub use petrel_core::managesieve::MAX_NAME_CHARS;

const ACTIVE: &str = ".active";
const SUFFIX: &str = ".sieve";

/// Why a script operation was refused.
#[derive(Debug)]
pub enum ScriptError {
    /// The named script does not exist.
    NonExistent,
    /// The new name is already taken.
    AlreadyExists,
    /// The script is active and cannot be deleted.
    Active,
    /// The user already has [`MAX_SCRIPTS`] scripts.
    TooManyScripts,
    /// The name is not acceptable (see [`check_name`]).
    InvalidName(&'static str),
    /// The disk failed.
    Io(io::Error),
}

impl From<io::Error> for ScriptError {
    fn from(e: io::Error) -> Self {
        ScriptError::Io(e)
    }
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScriptError::NonExistent => f.write_str("there is no script by that name"),
            ScriptError::AlreadyExists => f.write_str("a script by that name already exists"),
            ScriptError::Active => f.write_str("the script is active"),
            ScriptError::TooManyScripts => write!(f, "at most {MAX_SCRIPTS} scripts are allowed"),
            ScriptError::InvalidName(why) => write!(f, "invalid script name: {why}"),
            ScriptError::Io(e) => write!(f, "storage error: {e}"),
        }
    }
}

/// Checks that a script name is safe as a file name: 1 to [`MAX_NAME_CHARS`] characters, no
/// control characters, no `/`, not starting with `.` (the rule the ManageSieve session applies).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    check_script_name(name)
}

/// A user's data folder, `DATA_DIR/users/DOMAIN/LOCALPART/`. The address is validated, so the
/// path never leaves `DATA_DIR/users/` whatever the address contains.
pub fn user_data_dir(data_dir: &Path, user: &UserId) -> io::Result<PathBuf> {
    let (local, domain) = validate_address(&user.0)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(data_dir.join("users").join(domain).join(local))
}

fn sieve_dir(data_dir: &Path, user: &UserId) -> io::Result<PathBuf> {
    Ok(user_data_dir(data_dir, user)?.join("sieve"))
}

fn script_path(dir: &Path, name: &str) -> Result<PathBuf, ScriptError> {
    check_name(name).map_err(ScriptError::InvalidName)?;
    Ok(dir.join(format!("{name}{SUFFIX}")))
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn exists(fs: &dyn FileSystem, path: &Path) -> io::Result<bool> {
    Ok(fs.stamp(path)?.is_some())
}

fn read_text(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<String>> {
    match fs.read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The name in `.active`, if it is there and valid (whether or not the script exists).
fn active_name(fs: &dyn FileSystem, dir: &Path) -> io::Result<Option<String>> {
    let Some(text) = read_text(fs, &dir.join(ACTIVE))? else {
        return Ok(None);
    };
    let name = text.trim_end_matches(['\r', '\n']);
    Ok(check_name(name).ok().map(|()| name.to_owned()))
}

/// The active script of `user` as (name, script text); `Ok(None)` when none is active or the
/// named script is missing.
pub fn active_script(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
) -> io::Result<Option<(String, String)>> {
    let dir = sieve_dir(data_dir, user)?;
    let Some(name) = active_name(fs, &dir)? else {
        return Ok(None);
    };
    let path = dir.join(format!("{name}{SUFFIX}"));
    Ok(read_text(fs, &path)?.map(|text| (name, text)))
}

/// The user's scripts as (name, is active), sorted by name.
pub fn list(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
) -> io::Result<Vec<(String, bool)>> {
    let dir = sieve_dir(data_dir, user)?;
    let names = match fs.read_dir(&dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let active = active_name(fs, &dir)?;
    let mut scripts: Vec<(String, bool)> = names
        .iter()
        .filter_map(|n| n.strip_suffix(SUFFIX))
        .filter(|n| check_name(n).is_ok())
        .map(|n| (n.to_owned(), active.as_deref() == Some(n)))
        .collect();
    scripts.sort();
    Ok(scripts)
}

/// The text of one script.
pub fn get(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
) -> Result<String, ScriptError> {
    let path = script_path(&sieve_dir(data_dir, user)?, name)?;
    read_text(fs, &path)?.ok_or(ScriptError::NonExistent)
}

/// Whether a script of that name could be stored: the name is valid and, unless it replaces an
/// existing script, the user has fewer than [`MAX_SCRIPTS`].
pub fn have_space(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
) -> Result<(), ScriptError> {
    let dir = sieve_dir(data_dir, user)?;
    let path = script_path(&dir, name)?;
    if exists(fs, &path)? {
        return Ok(());
    }
    if list(fs, data_dir, user)?.len() >= MAX_SCRIPTS {
        return Err(ScriptError::TooManyScripts);
    }
    Ok(())
}

/// Stores (creates or replaces) a script durably.
pub fn put(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
    text: &str,
) -> Result<(), ScriptError> {
    have_space(fs, data_dir, user, name)?;
    let dir = sieve_dir(data_dir, user)?;
    let path = script_path(&dir, name)?;
    create_dir_all(fs, &dir)?;
    // The folders may come from a run that crashed before their entries were synced.
    sync_ancestors(fs, &dir, data_dir)?;
    write_atomic(fs, &path, text.as_bytes(), &unique())?;
    Ok(())
}

/// Makes `name` the active script, or deactivates every script with `None`.
pub fn set_active(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: Option<&str>,
) -> Result<(), ScriptError> {
    let dir = sieve_dir(data_dir, user)?;
    let marker = dir.join(ACTIVE);
    match name {
        None => {
            match fs.remove_file(&marker) {
                Ok(()) => fs.sync_dir(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Some(name) => {
            let path = script_path(&dir, name)?;
            if !exists(fs, &path)? {
                return Err(ScriptError::NonExistent);
            }
            write_atomic(fs, &marker, format!("{name}\n").as_bytes(), &unique())?;
            Ok(())
        }
    }
}

/// Deletes a script; the active one is refused with [`ScriptError::Active`].
pub fn delete(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    name: &str,
) -> Result<(), ScriptError> {
    let dir = sieve_dir(data_dir, user)?;
    let path = script_path(&dir, name)?;
    if !exists(fs, &path)? {
        return Err(ScriptError::NonExistent);
    }
    if active_name(fs, &dir)?.as_deref() == Some(name) {
        return Err(ScriptError::Active);
    }
    fs.remove_file(&path)?;
    fs.sync_dir(&dir)?;
    Ok(())
}

/// Renames a script, keeping it active if it was.
pub fn rename(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    old: &str,
    new: &str,
) -> Result<(), ScriptError> {
    let dir = sieve_dir(data_dir, user)?;
    let from = script_path(&dir, old)?;
    let to = script_path(&dir, new)?;
    if !exists(fs, &from)? {
        return Err(ScriptError::NonExistent);
    }
    if old == new {
        return Err(ScriptError::AlreadyExists);
    }
    match fs.hard_link(&from, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(ScriptError::AlreadyExists);
        }
        Err(e) => return Err(e.into()),
    }
    fs.sync_dir(&dir)?;
    if active_name(fs, &dir)?.as_deref() == Some(old) {
        write_atomic(
            fs,
            &dir.join(ACTIVE),
            format!("{new}\n").as_bytes(),
            &unique(),
        )?;
    }
    fs.remove_file(&from)?;
    fs.sync_dir(&dir)?;
    Ok(())
}

/// Carries out a ManageSieve request for `user` (the store's `Effect::Sieve` arm).
pub fn execute(
    fs: &dyn FileSystem,
    data_dir: &Path,
    user: &UserId,
    request: SieveRequest,
) -> Completion {
    let result = match request {
        SieveRequest::List => list(fs, data_dir, user)
            .map(|scripts| {
                SieveAnswer::Scripts(
                    scripts
                        .into_iter()
                        .map(|(name, active)| ScriptEntry { name, active })
                        .collect(),
                )
            })
            .map_err(ScriptError::Io),
        SieveRequest::Get { name } => get(fs, data_dir, user, &name).map(SieveAnswer::Script),
        SieveRequest::Put { name, script } => {
            put(fs, data_dir, user, &name, &script).map(|()| SieveAnswer::Done)
        }
        SieveRequest::Delete { name } => {
            delete(fs, data_dir, user, &name).map(|()| SieveAnswer::Done)
        }
        SieveRequest::Rename { from, to } => {
            rename(fs, data_dir, user, &from, &to).map(|()| SieveAnswer::Done)
        }
        SieveRequest::SetActive { name } => {
            set_active(fs, data_dir, user, name.as_deref()).map(|()| SieveAnswer::Done)
        }
        SieveRequest::HaveSpace { name, .. } => {
            have_space(fs, data_dir, user, &name).map(|()| SieveAnswer::Done)
        }
    };
    Completion::Sieve(match result {
        Ok(answer) => answer,
        Err(ScriptError::NonExistent) => SieveAnswer::NonExistent,
        Err(ScriptError::AlreadyExists) => SieveAnswer::AlreadyExists,
        Err(ScriptError::Active) => SieveAnswer::Active,
        Err(ScriptError::TooManyScripts) => SieveAnswer::TooManyScripts,
        Err(ScriptError::InvalidName(_)) => SieveAnswer::InvalidName,
        Err(ScriptError::Io(e)) => {
            tracing::warn!(user = %user.0, error = %e, "sieve script storage failed");
            return Completion::Failed(StoreError {
                class: ErrorClass::Temporary,
                message: e.to_string(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    fn user() -> UserId {
        UserId("alice@example.com".into())
    }

    #[test]
    fn data_dir_stays_inside_users() {
        let dir = user_data_dir(Path::new("/d"), &UserId("Alice@Example.COM".into())).unwrap();
        assert_eq!(dir, Path::new("/d/users/example.com/alice"));
        for bad in ["../x@d.example", "a/b@d.example", "a@../d", "a@d/../../etc"] {
            assert!(
                user_data_dir(Path::new("/d"), &UserId(bad.into())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn names() {
        assert!(check_name("vacation").is_ok());
        assert!(check_name("my script é").is_ok());
        assert!(check_name(&"x".repeat(128)).is_ok());
        for bad in ["", ".active", "a/b", "a\nb", "a\0", &"x".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn put_activate_list_get_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let (fs, d, u) = (&RealFs, tmp.path(), user());
        assert_eq!(active_script(fs, d, &u).unwrap(), None);
        assert!(list(fs, d, &u).unwrap().is_empty());
        put(fs, d, &u, "one", "keep;\n").unwrap();
        put(fs, d, &u, "two", "discard;\n").unwrap();
        assert!(d.join("users/example.com/alice/sieve/one.sieve").is_file());
        assert_eq!(active_script(fs, d, &u).unwrap(), None);
        set_active(fs, d, &u, Some("two")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.join("users/example.com/alice/sieve/.active")).unwrap(),
            "two\n"
        );
        assert_eq!(
            active_script(fs, d, &u).unwrap(),
            Some(("two".into(), "discard;\n".into()))
        );
        assert_eq!(
            list(fs, d, &u).unwrap(),
            vec![("one".into(), false), ("two".into(), true)]
        );
        assert_eq!(get(fs, d, &u, "one").unwrap(), "keep;\n");
        put(fs, d, &u, "one", "stop;\n").unwrap();
        assert_eq!(get(fs, d, &u, "one").unwrap(), "stop;\n");
        assert!(matches!(
            get(fs, d, &u, "three"),
            Err(ScriptError::NonExistent)
        ));
        set_active(fs, d, &u, None).unwrap();
        assert_eq!(active_script(fs, d, &u).unwrap(), None);
        set_active(fs, d, &u, None).unwrap();
        assert!(matches!(
            set_active(fs, d, &u, Some("nope")),
            Err(ScriptError::NonExistent)
        ));
    }

    #[test]
    fn missing_active_file_reads_as_none() {
        let tmp = tempfile::tempdir().unwrap();
        let (fs, d, u) = (&RealFs, tmp.path(), user());
        put(fs, d, &u, "one", "keep;").unwrap();
        set_active(fs, d, &u, Some("one")).unwrap();
        std::fs::remove_file(d.join("users/example.com/alice/sieve/one.sieve")).unwrap();
        assert_eq!(active_script(fs, d, &u).unwrap(), None);
    }

    #[test]
    fn delete_and_rename() {
        let tmp = tempfile::tempdir().unwrap();
        let (fs, d, u) = (&RealFs, tmp.path(), user());
        put(fs, d, &u, "a", "keep;").unwrap();
        put(fs, d, &u, "b", "stop;").unwrap();
        set_active(fs, d, &u, Some("a")).unwrap();
        assert!(matches!(delete(fs, d, &u, "a"), Err(ScriptError::Active)));
        assert!(matches!(
            delete(fs, d, &u, "zz"),
            Err(ScriptError::NonExistent)
        ));
        assert!(matches!(
            rename(fs, d, &u, "a", "b"),
            Err(ScriptError::AlreadyExists)
        ));
        rename(fs, d, &u, "a", "c").unwrap();
        assert_eq!(
            active_script(fs, d, &u).unwrap(),
            Some(("c".into(), "keep;".into()))
        );
        assert_eq!(
            list(fs, d, &u).unwrap(),
            vec![("b".into(), false), ("c".into(), true)]
        );
        delete(fs, d, &u, "b").unwrap();
        assert_eq!(list(fs, d, &u).unwrap(), vec![("c".into(), true)]);
        assert!(matches!(
            rename(fs, d, &u, "gone", "x"),
            Err(ScriptError::NonExistent)
        ));
    }

    #[test]
    fn execute_maps_answers() {
        let tmp = tempfile::tempdir().unwrap();
        let (fs, d, u) = (&RealFs, tmp.path(), user());
        let run = |r| match execute(fs, d, &u, r) {
            Completion::Sieve(a) => a,
            other => panic!("{other:?}"),
        };
        let put = SieveRequest::Put {
            name: "v".into(),
            script: "keep;".into(),
        };
        assert_eq!(run(put), SieveAnswer::Done);
        let activate = SieveRequest::SetActive {
            name: Some("v".into()),
        };
        assert_eq!(run(activate), SieveAnswer::Done);
        assert_eq!(
            run(SieveRequest::List),
            SieveAnswer::Scripts(vec![ScriptEntry {
                name: "v".into(),
                active: true
            }])
        );
        let delete = SieveRequest::Delete { name: "v".into() };
        assert_eq!(run(delete), SieveAnswer::Active);
        let get = SieveRequest::Get { name: "w".into() };
        assert_eq!(run(get), SieveAnswer::NonExistent);
        let bad = SieveRequest::Get { name: ".x".into() };
        assert_eq!(run(bad), SieveAnswer::InvalidName);
        // A user id that is not a valid address never reaches the disk.
        let evil = UserId("../../etc@x".into());
        assert!(matches!(
            execute(fs, d, &evil, SieveRequest::List),
            Completion::Failed(_)
        ));
    }

    #[test]
    fn script_count_is_limited() {
        let tmp = tempfile::tempdir().unwrap();
        let (fs, d, u) = (&RealFs, tmp.path(), user());
        for i in 0..MAX_SCRIPTS {
            put(fs, d, &u, &format!("s{i}"), "keep;").unwrap();
        }
        assert!(matches!(
            put(fs, d, &u, "one-more", "keep;"),
            Err(ScriptError::TooManyScripts)
        ));
        put(fs, d, &u, "s0", "stop;").unwrap();
        assert!(matches!(
            put(fs, d, &u, "../evil", "keep;"),
            Err(ScriptError::InvalidName(_))
        ));
    }
}
