//! DKIM signing keys on disk: `DATA_DIR/dkim/DOMAIN/SELECTOR.pem`, one PKCS#8 PEM private key
//! each, mode 0600. Every key of a domain signs the mail of that domain (CONTRACT.md).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use petrel_core::dkim::SigningKey;

use crate::fs::{FileSystem, create_dir_all};

/// A domain name usable as a directory: lowercase letters, digits, `-` and `_` in dot-separated
/// labels of 1 to 63 bytes, 253 bytes in all. Nothing that could escape `DATA_DIR/dkim/`.
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// A selector usable as a file name: the same as a domain name (selectors may contain dots).
pub fn valid_selector(selector: &str) -> bool {
    valid_domain(selector)
}

/// `DATA_DIR/dkim/DOMAIN/SELECTOR.pem`, for validated (lowercase) names only.
pub fn key_path(data_dir: &Path, domain: &str, selector: &str) -> io::Result<PathBuf> {
    if !valid_domain(domain) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a usable domain name: {domain:?}"),
        ));
    }
    if !valid_selector(selector) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a usable selector: {selector:?}"),
        ));
    }
    Ok(data_dir
        .join("dkim")
        .join(domain)
        .join(format!("{selector}.pem")))
}

/// Every signing key of `domain` (any case), with its selector, sorted by selector. A domain
/// without keys (or without a directory) has none; a file that is not a usable key is skipped
/// with a warning, so one bad file never stops the others from signing.
pub fn keys_for(
    fs: &dyn FileSystem,
    data_dir: &Path,
    domain: &str,
) -> io::Result<Vec<(String, SigningKey)>> {
    let domain = domain.to_ascii_lowercase();
    if !valid_domain(&domain) {
        return Ok(Vec::new());
    }
    let dir = data_dir.join("dkim").join(&domain);
    let mut names = match fs.read_dir(&dir) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    let mut keys = Vec::new();
    for name in names {
        let Some(selector) = name.strip_suffix(".pem") else {
            continue;
        };
        if !valid_selector(selector) {
            continue;
        }
        let bytes = fs.read(&dir.join(&name))?;
        match SigningKey::from_pkcs8_pem(&String::from_utf8_lossy(&bytes)) {
            Ok(key) => keys.push((selector.to_string(), key)),
            Err(e) => {
                tracing::warn!(domain = %domain, selector, error = %e, "unusable DKIM key skipped");
            }
        }
    }
    Ok(keys)
}

/// Stores `pem` as the key of `selector` for `domain`, durably and atomically (temporary file,
/// fsync, then a link or rename, fsync of the directory). An existing key is kept
/// (`AlreadyExists`) unless `replace`. Returns the key's path.
pub fn write_key(
    fs: &dyn FileSystem,
    data_dir: &Path,
    domain: &str,
    selector: &str,
    pem: &[u8],
    replace: bool,
    unique: &str,
) -> io::Result<PathBuf> {
    let path = key_path(data_dir, domain, selector)?;
    let dir = path.parent().unwrap_or(data_dir);
    create_dir_all(fs, dir)?;
    let tmp = dir.join(format!(".{selector}.pem.{unique}.tmp"));
    let result = (|| {
        let mut f = fs.create_new(&tmp)?;
        f.write_all(pem)?;
        f.sync()?;
        drop(f);
        if replace {
            fs.rename(&tmp, &path)?;
        } else {
            // A link fails if the name exists: no check-then-write race with another keygen.
            fs.hard_link(&tmp, &path)?;
            fs.remove_file(&tmp)?;
        }
        fs.sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "", "..", "a/b", "../x", "a..b", ".a", "A.com", "-a.com", "a b", "x\0",
        ] {
            assert!(!valid_domain(bad), "{bad:?}");
            assert!(key_path(Path::new("/d"), bad, "sel").is_err(), "{bad:?}");
            assert!(
                key_path(Path::new("/d"), "example.com", bad).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            key_path(Path::new("/d"), "example.com", "s2026._x").unwrap(),
            Path::new("/d/dkim/example.com/s2026._x.pem")
        );
    }
}
