//! Maildir++ layout under `DATA_DIR/mail/DOMAIN/LOCALPART/` (CONTRACT.md): paths built only from
//! validated addresses, durable creation, and unique file names as the Maildir spec asks.

use crate::fs::{FileSystem, create_dir_all};
use crate::passwd::validate_address;
use std::io;
use std::path::{Path, PathBuf};

/// The subdirectories every Maildir (and every Maildir++ folder) has.
pub const SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];

/// The Maildir root of a user. The address is validated, so the path never leaves
/// `DATA_DIR/mail/` whatever the address contains.
pub fn user_root(data_dir: &Path, address: &str) -> io::Result<PathBuf> {
    let (local, domain) = validate_address(address)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(data_dir.join("mail").join(domain).join(local))
}

/// Creates a Maildir root with `cur/ new/ tmp/` if missing; every new entry is durable.
pub fn ensure(fs: &dyn FileSystem, root: &Path) -> io::Result<()> {
    if SUBDIRS
        .iter()
        .all(|d| matches!(fs.stamp(&root.join(d)), Ok(Some(_))))
    {
        return Ok(());
    }
    create_dir_all(fs, root)?;
    for d in SUBDIRS {
        create_dir_all(fs, &root.join(d))?;
    }
    Ok(())
}

/// Makes a host name safe inside a Maildir file name (`/` and `:` are escaped as the spec says).
pub fn safe_host(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

/// A unique Maildir file name: `SECS.PpidQcounterRrandom.HOST,S=SIZE`. The `,S=` size lets
/// Dovecot and Petrel's IMAP skip a stat.
pub fn unique_name(
    secs: i64,
    pid: u32,
    counter: u64,
    random: u32,
    host: &str,
    size: u64,
) -> String {
    format!("{secs}.P{pid}Q{counter}R{random:08x}.{host},S={size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_stay_inside_mail() {
        let root = user_root(Path::new("/d"), "Alice@Example.COM").unwrap();
        assert_eq!(root, Path::new("/d/mail/example.com/alice"));
        for bad in ["../x@d.example", "a/b@d.example", "a@../d", "a@d/../../etc"] {
            assert!(user_root(Path::new("/d"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(safe_host("a/b:c"), "a\\057b\\072c");
        assert_eq!(unique_name(1, 2, 3, 0xab, "h", 9), "1.P2Q3R000000ab.h,S=9");
    }
}
