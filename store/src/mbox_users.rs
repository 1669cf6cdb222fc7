//! Which users get their mail in an mbox file instead of Maildir (`[delivery] mbox`), and where
//! those files are: `MBOX_DIR/DOMAIN/LOCALPART` for the INBOX, and for folders that Sieve files
//! into, `MBOX_DIR/DOMAIN/LOCALPART.folders/NAME` (hierarchy as subdirectories, as Dovecot's
//! mbox layout has it). Paths are built only from validated addresses and folder names.

use crate::folder;
use crate::passwd::validate_address;
use petrel_core::{UserId, mutf7};
use std::io;
use std::path::{Path, PathBuf};

/// The mbox delivery policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MboxPolicy {
    /// Lowercase addresses (`alice@example.com`) and whole domains (`example.org`).
    pub entries: Vec<String>,
    /// Where the mbox files live.
    pub dir: PathBuf,
}

impl MboxPolicy {
    /// True when `user`'s mail goes to an mbox file.
    pub fn applies(&self, user: &UserId) -> bool {
        let address = user.0.to_lowercase();
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        self.entries.iter().any(|e| *e == address || e == domain)
    }

    /// The mbox file of `user`'s INBOX.
    pub fn inbox(&self, user: &UserId) -> io::Result<PathBuf> {
        let (local, domain) = validate_address(&user.0)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(self.dir.join(domain).join(local))
    }

    /// The mbox file of `folder` (INBOX included) of `user`; `InvalidInput` for names that
    /// could leave the directory.
    pub fn folder(&self, user: &UserId, name: &str) -> io::Result<PathBuf> {
        if folder::is_inbox(name) {
            return self.inbox(user);
        }
        // The same rules as Maildir++ names, so a name is valid in either layout.
        folder::dir_name(name)?;
        let inbox = self.inbox(user)?;
        let mut path = append_suffix(&inbox, ".folders");
        for part in name.split('/') {
            path.push(mutf7::encode(part));
        }
        Ok(path)
    }
}

fn append_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_domains_and_paths() {
        let p = MboxPolicy {
            entries: vec!["carol@example.com".into(), "legacy.example".into()],
            dir: PathBuf::from("/var/mail"),
        };
        assert!(p.applies(&UserId("Carol@Example.com".into())));
        assert!(p.applies(&UserId("x@legacy.example".into())));
        assert!(!p.applies(&UserId("alice@example.com".into())));
        let carol = UserId("carol@example.com".into());
        assert_eq!(
            p.inbox(&carol).unwrap(),
            Path::new("/var/mail/example.com/carol")
        );
        assert_eq!(
            p.folder(&carol, "Lists/Rust").unwrap(),
            Path::new("/var/mail/example.com/carol.folders/Lists/Rust")
        );
        assert_eq!(p.folder(&carol, "inbox").unwrap(), p.inbox(&carol).unwrap());
        for bad in ["../x", "a/../../b", ".hidden", ""] {
            assert!(p.folder(&carol, bad).is_err(), "{bad}");
        }
    }
}
