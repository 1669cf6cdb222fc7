//! Vacation response tracking (RFC 5230 section 4.2): who was answered, for which handle, until
//! when. One file per user, `vacation.track` in the user's data folder, one entry a line:
//! `EXPIRY<TAB>HANDLE<TAB>SENDER`. Expired entries are dropped on every write; the file is
//! bounded to [`MAX_ENTRIES`] (the oldest go first).

use crate::fs::{FileSystem, create_dir_all, write_atomic};
use std::io;
use std::path::Path;

/// File name inside the user's data folder.
pub const TRACK_FILE: &str = "vacation.track";
/// Most entries kept per user.
pub const MAX_ENTRIES: usize = 10_000;

/// Records that `sender` is being answered for `handle` and returns true, unless it was already
/// answered within the period (then false and nothing changes). The caller serialises calls
/// for one user.
pub fn should_respond(
    fs: &dyn FileSystem,
    user_dir: &Path,
    handle: &str,
    sender: &str,
    now: i64,
    period_secs: u64,
) -> io::Result<bool> {
    let path = user_dir.join(TRACK_FILE);
    let text = match fs.read(&path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let clean = |s: &str| -> String { s.replace(['\t', '\n', '\r'], " ") };
    let (handle, sender) = (clean(handle), clean(&sender.to_lowercase()));
    let mut entries: Vec<(i64, String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let expiry = f.next()?.parse::<i64>().ok()?;
            Some((expiry, f.next()?.to_string(), f.next()?.to_string()))
        })
        .filter(|(expiry, _, _)| *expiry > now)
        .collect();
    if entries.iter().any(|(_, h, s)| *h == handle && *s == sender) {
        return Ok(false);
    }
    let period = i64::try_from(period_secs).unwrap_or(i64::MAX / 2);
    if period > 0 {
        entries.push((now.saturating_add(period), handle, sender));
    }
    if entries.len() > MAX_ENTRIES {
        entries.sort_by_key(|(expiry, _, _)| *expiry);
        let excess = entries.len() - MAX_ENTRIES;
        entries.drain(..excess);
    }
    let out: String = entries
        .iter()
        .map(|(e, h, s)| format!("{e}\t{h}\t{s}\n"))
        .collect();
    create_dir_all(fs, user_dir)?;
    write_atomic(fs, &path, out.as_bytes(), "vacation")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn answers_once_per_period_and_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("u");
        let fs = RealFs;
        assert!(should_respond(&fs, &dir, "h1", "Bob@example.org", 1000, 60).unwrap());
        assert!(!should_respond(&fs, &dir, "h1", "bob@example.org", 1059, 60).unwrap());
        assert!(should_respond(&fs, &dir, "h2", "bob@example.org", 1059, 60).unwrap());
        assert!(should_respond(&fs, &dir, "h1", "carol@example.org", 1059, 60).unwrap());
        assert!(should_respond(&fs, &dir, "h1", "bob@example.org", 1060, 60).unwrap());
        // :seconds 0 answers every time and records nothing.
        assert!(should_respond(&fs, &dir, "h0", "bob@example.org", 2000, 0).unwrap());
        assert!(should_respond(&fs, &dir, "h0", "bob@example.org", 2000, 0).unwrap());
        let text = std::fs::read_to_string(dir.join(TRACK_FILE)).unwrap();
        assert!(!text.contains("h0"), "{text}");
    }
}
