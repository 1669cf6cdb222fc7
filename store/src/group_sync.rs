//! Group commit of directory fsyncs: concurrent deliveries share one flush per directory per
//! batch instead of one each.
//!
//! A caller adds the directories it needs synced and waits. If no flush is running it becomes
//! the leader: it takes everything queued so far as one batch, syncs each directory once, and
//! wakes everyone whose entries were in that batch. Callers that arrive during a flush form the
//! next batch. Nobody returns before a sync that started after its entries were made.

use crate::fs::FileSystem;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    /// Directories waiting for the next batch.
    queued: BTreeSet<PathBuf>,
    /// Number of the batch now collecting entries.
    collecting: u64,
    /// Every batch up to this number is finished.
    finished: u64,
    /// A leader is flushing.
    flushing: bool,
    /// Recent batches whose flush failed, with the directories that failed.
    failures: BTreeMap<u64, BTreeSet<PathBuf>>,
}

/// Shares directory fsyncs between concurrent callers (see the module docs).
#[derive(Debug, Default)]
pub struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
}

impl GroupSync {
    /// A group with nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns once every directory in `dirs` has been fsynced after this call began.
    pub fn sync_dirs(&self, fs: &dyn FileSystem, dirs: &[PathBuf]) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.queued.extend(dirs.iter().cloned());
        let mine = st.collecting + 1;
        loop {
            if st.finished >= mine {
                return match st.failures.get(&mine) {
                    Some(failed) if dirs.iter().any(|d| failed.contains(d)) => {
                        Err(io::Error::other("directory fsync failed"))
                    }
                    _ => Ok(()),
                };
            }
            if !st.flushing {
                st.flushing = true;
                st.collecting += 1;
                let batch = st.collecting;
                let work = std::mem::take(&mut st.queued);
                drop(st);
                let mut failed = BTreeSet::new();
                for dir in &work {
                    if let Err(e) = fs.sync_dir(dir) {
                        tracing::error!(dir = %dir.display(), error = %e, "fsync of directory failed");
                        failed.insert(dir.clone());
                    }
                }
                st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.flushing = false;
                st.finished = batch;
                if !failed.is_empty() {
                    st.failures.insert(batch, failed);
                }
                while st.failures.len() > 64 {
                    st.failures.pop_first();
                }
                self.done.notify_all();
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
