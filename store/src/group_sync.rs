//! Group commit of directory fsyncs: concurrent deliveries share one flush per directory per
//! batch instead of one each.
//!
//! A caller adds the directories it needs synced and waits. If no flush is running it becomes
//! the leader: it takes everything queued so far as one batch, syncs each directory once, and
//! wakes everyone whose entries were in that batch. Callers that arrive during a flush form the
//! next batch. Nobody returns before a sync that started after its entries were made.
//!
//! A commit announces itself with [`GroupSync::coming`] before its slow part (the fsync of the
//! message file). A leader that sees such commits on their way waits for them, at most
//! [`LINGER`], so that they share its flush instead of each starting one: under load that
//! turns most directory fsyncs into none. A lone commit, with no one else on the way, never
//! waits.

use crate::fs::FileSystem;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest a leader waits for announced commits before it flushes without them: about the time
/// of one file fsync on an SSD, so a batch gathers the commits that were syncing their file
/// when it formed.
pub const LINGER: Duration = Duration::from_millis(1);

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
    /// Announced commits ([`GroupSync::coming`]) that have not reached `sync_dirs` yet and
    /// were announced before the latest leader began to wait: those it waits for.
    coming_before: usize,
    /// The same, announced since (the next leader waits for them).
    coming_since: usize,
    /// Bumped each time a leader begins to wait, to tell the two kinds apart.
    epoch: u64,
    /// A leader waits on `arrived` for announced commits.
    lingering: bool,
}

/// Shares directory fsyncs between concurrent callers (see the module docs).
#[derive(Debug, Default)]
pub struct GroupSync {
    state: Mutex<State>,
    done: Condvar,
    /// Wakes a lingering leader when an announced commit arrives or gives up.
    arrived: Condvar,
}

/// A commit on its way to [`GroupSync::sync_dirs`] (see [`GroupSync::coming`]). Dropping it
/// without syncing (the commit failed) withdraws the announcement.
#[derive(Debug)]
pub struct Coming<'a> {
    group: &'a GroupSync,
    epoch: u64,
}

impl State {
    /// One announced commit arrived or gave up; true when a lingering leader should wake.
    fn arrived(&mut self, epoch: u64) -> bool {
        if epoch < self.epoch {
            self.coming_before -= 1;
            self.lingering && self.coming_before == 0
        } else {
            self.coming_since -= 1;
            false
        }
    }
}

impl Drop for Coming<'_> {
    fn drop(&mut self) {
        let mut st = self
            .group
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if st.arrived(self.epoch) {
            self.group.arrived.notify_one();
        }
    }
}

impl GroupSync {
    /// A group with nothing queued.
    pub fn new() -> Self {
        Self::default()
    }

    /// Announces a commit that will call [`GroupSync::sync_dirs_arriving`] soon, so that a
    /// leader flushing meanwhile may wait for it.
    pub fn coming(&self) -> Coming<'_> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.coming_since += 1;
        Coming {
            group: self,
            epoch: st.epoch,
        }
    }

    /// [`GroupSync::sync_dirs`] for a commit announced by `coming`.
    pub fn sync_dirs_arriving(
        &self,
        fs: &dyn FileSystem,
        dirs: &[PathBuf],
        coming: Coming<'_>,
    ) -> io::Result<()> {
        self.sync(fs, dirs, Some(coming))
    }

    /// Returns once every directory in `dirs` has been fsynced after this call began.
    pub fn sync_dirs(&self, fs: &dyn FileSystem, dirs: &[PathBuf]) -> io::Result<()> {
        self.sync(fs, dirs, None)
    }

    fn sync(
        &self,
        fs: &dyn FileSystem,
        dirs: &[PathBuf],
        coming: Option<Coming<'_>>,
    ) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(coming) = coming {
            // Arrived: no longer on the way (without relocking in its Drop).
            let epoch = coming.epoch;
            std::mem::forget(coming);
            if st.arrived(epoch) {
                self.arrived.notify_one();
            }
        }
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
                // Others are on their way: give them a moment to join this flush (the last
                // of them to arrive wakes us). Those announced from now on are not waited for,
                // so a steady stream of commits cannot hold a flush back beyond them.
                st.coming_before += st.coming_since;
                st.coming_since = 0;
                st.epoch += 1;
                if st.coming_before > 0 {
                    let until = Instant::now() + LINGER;
                    st.lingering = true;
                    while st.coming_before > 0 {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        st = self
                            .arrived
                            .wait_timeout(st, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    st.lingering = false;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Stamp, WriteFile};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    /// Counts directory fsyncs; nothing else is used.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl FileSystem for Counting {
        fn create_new(&self, _: &Path) -> io::Result<Box<dyn WriteFile>> {
            unimplemented!()
        }
        fn open_read(&self, _: &Path) -> io::Result<Box<dyn io::Read + Send>> {
            unimplemented!()
        }
        fn hard_link(&self, _: &Path, _: &Path) -> io::Result<()> {
            unimplemented!()
        }
        fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
            unimplemented!()
        }
        fn remove_file(&self, _: &Path) -> io::Result<()> {
            unimplemented!()
        }
        fn create_dir(&self, _: &Path) -> io::Result<()> {
            unimplemented!()
        }
        fn sync_dir(&self, _: &Path) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn read_dir(&self, _: &Path) -> io::Result<Vec<String>> {
            unimplemented!()
        }
        fn stamp(&self, _: &Path) -> io::Result<Option<Stamp>> {
            unimplemented!()
        }
    }

    #[test]
    fn announced_commits_share_one_flush() {
        let group = Arc::new(GroupSync::new());
        let fs = Arc::new(Counting::default());
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let (group, fs, barrier) = (group.clone(), fs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let coming = group.coming();
                    barrier.wait();
                    // The file fsyncs end at slightly different times.
                    std::thread::sleep(Duration::from_micros(50 * i));
                    group
                        .sync_dirs_arriving(&*fs, &[PathBuf::from("/new")], coming)
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Without waiting, each arrival would find the last flush over and start its own.
        let flushes = fs.0.load(Ordering::SeqCst);
        assert!((1..4).contains(&flushes), "{flushes} flushes for 8 commits");
    }

    #[test]
    fn a_commit_that_never_arrives_holds_a_flush_back_at_most_linger() {
        let group = Arc::new(GroupSync::new());
        let fs = Counting::default();
        let coming = group.coming();
        let start = Instant::now();
        group.sync_dirs(&fs, &[PathBuf::from("/new")]).unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= LINGER,
            "the leader waited for the announced commit"
        );
        assert!(waited < Duration::from_millis(200), "{waited:?}");
        // It gives up; the next flush does not wait for it any more.
        drop(coming);
        let start = Instant::now();
        group.sync_dirs(&fs, &[PathBuf::from("/new")]).unwrap();
        assert!(start.elapsed() < Duration::from_millis(200));
        assert_eq!(fs.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_lone_commit_does_not_wait() {
        let group = GroupSync::new();
        let fs = Counting::default();
        for _ in 0..3 {
            let coming = group.coming();
            group
                .sync_dirs_arriving(&fs, &[PathBuf::from("/new")], coming)
                .unwrap();
        }
        let state = group.state.lock().unwrap();
        assert_eq!((state.coming_before, state.coming_since), (0, 0));
        assert!(!state.lingering);
        assert_eq!(fs.0.load(Ordering::SeqCst), 3);
    }
}
