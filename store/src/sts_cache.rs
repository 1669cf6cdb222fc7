//! The MTA-STS policy cache (RFC 8461 5.1): the policies the queue runner fetched, in memory
//! and under `DATA_DIR/queue/sts/DOMAIN`, so a restart keeps them until their `max_age`. What a
//! file holds and when an entry is used are core's decisions ([`petrel_core::mta_sts`]); this
//! module only reads and writes, through the store's filesystem, with atomic replacement.

use crate::fs::{FileSystem, create_dir_all, write_atomic};
use crate::store::Store;
use petrel_core::mta_sts::{CachedPolicy, is_policy_domain};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where the cache files are, under the data directory.
pub const STS_DIR: &str = "queue/sts";

/// The cache (see the module docs). Shared by every delivery of one runner.
#[derive(Debug)]
pub struct StsCache {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    memory: Mutex<HashMap<String, CachedPolicy>>,
    counter: AtomicU64,
    pid: u32,
}

impl StsCache {
    /// The cache of `store`'s data directory; nothing is read until asked for.
    pub fn new(store: &Store) -> StsCache {
        StsCache {
            fs: store.fs.clone(),
            dir: store.config.data_dir.join(STS_DIR),
            memory: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            pid: store.config.pid,
        }
    }

    /// `domain`'s cached policy: from memory, else from its file (then kept in memory). A name
    /// that is not a valid domain, a missing file or one that does not parse gives `None`
    /// (a broken file is logged; the next fetch replaces it). Freshness is the caller's call.
    pub fn get(&self, domain: &str) -> Option<CachedPolicy> {
        if !is_policy_domain(domain) {
            return None;
        }
        if let Some(c) = self.lock().get(domain) {
            return Some(c.clone());
        }
        let path = self.dir.join(domain);
        let bytes = match self.fs.read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a cached MTA-STS policy");
                return None;
            }
        };
        match CachedPolicy::from_bytes(&bytes) {
            Ok(c) => {
                self.lock().insert(domain.to_string(), c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring a broken cached MTA-STS policy");
                None
            }
        }
    }

    /// Stores `policy` for `domain`, in memory and durably on disk (temporary file, fsync,
    /// rename, directory fsync). Refuses a name that is not a valid domain.
    pub fn put(&self, domain: &str, policy: &CachedPolicy) -> io::Result<()> {
        if !is_policy_domain(domain) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} is not a domain name"),
            ));
        }
        self.lock().insert(domain.to_string(), policy.clone());
        create_dir_all(&*self.fs, &self.dir)?;
        let unique = format!(
            "{}.{}",
            self.pid,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        write_atomic(
            &*self.fs,
            &self.dir.join(domain),
            &policy.to_bytes(),
            &unique,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPolicy>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;
    use petrel_core::mta_sts::{Mode, Policy};

    #[derive(Debug)]
    struct Fixed;
    impl petrel_core::WallClock for Fixed {
        fn unix_seconds(&self) -> i64 {
            1_700_000_000
        }
    }

    fn store(dir: &std::path::Path) -> Store {
        Store::open(
            Arc::new(crate::RealFs),
            StoreConfig {
                data_dir: dir.to_path_buf(),
                hostname: "mail.test".into(),
                clock: Arc::new(Fixed),
                pid: 7,
                seed: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn policies_survive_a_new_cache_and_bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let entry = CachedPolicy {
            id: "20160831085700Z".into(),
            fetched: 1_700_000_000,
            policy: Policy {
                mode: Mode::Enforce,
                mx: vec!["*.example.net".into()],
                max_age: 86_400,
            },
        };
        let cache = StsCache::new(&s);
        assert_eq!(cache.get("example.net"), None);
        cache.put("example.net", &entry).unwrap();
        assert_eq!(cache.get("example.net"), Some(entry.clone()));
        let file = tmp.path().join("queue/sts/example.net");
        assert!(file.exists());
        // A fresh cache (a restart) reads the file.
        assert_eq!(StsCache::new(&s).get("example.net"), Some(entry.clone()));
        for bad in ["../x.example", "a/b.example", ".example", "Example.NET", ""] {
            assert!(cache.put(bad, &entry).is_err(), "{bad:?}");
            assert_eq!(cache.get(bad), None);
        }
        // A broken file is ignored.
        std::fs::write(tmp.path().join("queue/sts/broken.example"), b"junk").unwrap();
        assert_eq!(StsCache::new(&s).get("broken.example"), None);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("queue/sts"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
