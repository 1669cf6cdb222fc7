//! Folder watching for IMAP IDLE: one inotify instance per process, one watch per `new/` and
//! `cur/` directory shared by every session idling on that folder, one thread that reads the
//! kernel's events and wakes the subscribers.
//!
//! A session in IDLE then costs nothing while its folder does not change: the runtime waits on
//! [`Subscription::changed`] beside the socket instead of asking the store twice a second.
//! Every change to a folder's messages is a change of a directory entry in `new/` or `cur/`
//! (a delivery renames into `new/`, a flag change renames within `cur/`, an expunge unlinks, a
//! Maildir agent may create a file in `new/` directly), whoever makes it: this process, `petrel
//! deliver`, Dovecot, any other Maildir writer on this machine.
//!
//! Guarantees: after [`Store::watch_imap_folder`] returns a subscription, every later change of
//! the folder's `new/` or `cur/` entries (and every file closed after writing there) raises its
//! [`Subscription::generation`] and wakes [`Subscription::changed`]. A lost event (the kernel's
//! queue overflowed) wakes every subscriber, so nothing is missed, only looked at once too
//! often. When the folder's directories go away (folder deleted or renamed) the subscription
//! is woken once more and becomes [`Subscription::is_broken`]. When no watch can be set up (no
//! inotify, the per-user watch limit reached, a folder without `new/`), there is no
//! subscription and the caller keeps polling: slower to notice, never wrong.
//!
//! The watcher works on the real filesystem only (it does not go through the store's
//! [`crate::fs::FileSystem`]); the simulator's runtimes poll.

use crate::store::Store;
use petrel_core::UserId;
use rustix::fs::inotify;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The events that mean "the folder's messages or flags may have changed", plus the
/// directory's own end.
fn watch_flags() -> inotify::WatchFlags {
    use inotify::WatchFlags as W;
    W::CREATE
        | W::DELETE
        | W::MOVED_FROM
        | W::MOVED_TO
        | W::CLOSE_WRITE
        | W::DELETE_SELF
        | W::MOVE_SELF
        | W::ONLYDIR
}

/// One watched folder, shared by its subscribers.
#[derive(Debug)]
struct Folder {
    /// The folder's directory (holding `new/` and `cur/`).
    dir: PathBuf,
    /// Raised on every batch of events that touched the folder.
    generation: AtomicU64,
    /// Wakes the subscribers' [`Subscription::changed`].
    event: event_listener::Event,
    /// The directories' watch ended; the folder is not watched any more.
    broken: AtomicBool,
}

impl Folder {
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }
}

/// A watched folder directory and its watch descriptors (`new/`, `cur/`).
#[derive(Debug)]
struct Entry {
    folder: Arc<Folder>,
    wds: [i32; 2],
    refs: usize,
}

#[derive(Debug, Default)]
struct State {
    by_dir: HashMap<PathBuf, Entry>,
    by_wd: HashMap<i32, PathBuf>,
    /// A failed watch has been logged (the limit is logged once, not per session).
    warned: bool,
}

/// The process's inotify instance and its subscribers.
#[derive(Debug)]
struct Watcher {
    fd: OwnedFd,
    state: Mutex<State>,
}

/// The process-wide watcher, started on first use; `None` when inotify is unavailable.
fn watcher() -> Option<&'static Watcher> {
    static WATCHER: OnceLock<Option<&'static Watcher>> = OnceLock::new();
    *WATCHER.get_or_init(|| {
        let fd = match inotify::init(inotify::CreateFlags::CLOEXEC) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "no inotify: IMAP IDLE polls its folders");
                return None;
            }
        };
        let w: &'static Watcher = Box::leak(Box::new(Watcher {
            fd,
            state: Mutex::new(State::default()),
        }));
        match std::thread::Builder::new()
            .name("folder-watch".into())
            .spawn(move || w.read_events())
        {
            Ok(_) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "no folder watch thread: IMAP IDLE polls its folders");
                None
            }
        }
    })
}

impl Watcher {
    /// The reader thread: blocks on the inotify descriptor, wakes the folders its events touch,
    /// each once per read.
    fn read_events(&self) {
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut touched: Vec<Arc<Folder>> = Vec::new();
        loop {
            let mut overflow = false;
            let mut ended = Vec::new();
            let mut wds = Vec::new();
            loop {
                match reader.next() {
                    Ok(ev) => {
                        let flags = ev.events();
                        if flags.contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                            overflow = true;
                        } else if flags.intersects(
                            inotify::ReadFlags::IGNORED
                                | inotify::ReadFlags::DELETE_SELF
                                | inotify::ReadFlags::MOVE_SELF
                                | inotify::ReadFlags::UNMOUNT,
                        ) {
                            ended.push(ev.wd());
                        } else {
                            wds.push(ev.wd());
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reading folder events failed");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        overflow = true;
                    }
                }
                if reader.is_buffer_empty() {
                    break;
                }
            }
            {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if overflow {
                    tracing::warn!(
                        "folder event queue overflowed: every watched folder is looked at"
                    );
                    touched.extend(state.by_dir.values().map(|e| e.folder.clone()));
                }
                for wd in wds {
                    if let Some(e) = state.by_wd.get(&wd).and_then(|d| state.by_dir.get(d)) {
                        touched.push(e.folder.clone());
                    }
                }
                for wd in ended {
                    let Some(dir) = state.by_wd.remove(&wd) else {
                        continue;
                    };
                    if let Some(e) = state.by_dir.remove(&dir) {
                        for other in e.wds {
                            if other != wd {
                                state.by_wd.remove(&other);
                                let _ = inotify::remove_watch(&self.fd, other);
                            }
                        }
                        e.folder.broken.store(true, Ordering::SeqCst);
                        touched.push(e.folder);
                    }
                }
            }
            touched.sort_by_key(|f| Arc::as_ptr(f) as usize);
            touched.dedup_by(|a, b| Arc::ptr_eq(a, b));
            for f in touched.drain(..) {
                f.bump();
            }
        }
    }

    /// Subscribes to the folder in `dir` (with `new/` and `cur/`); `None` when it cannot be
    /// watched.
    fn subscribe(&self, dir: &Path) -> Option<Subscription> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = state.by_dir.get_mut(dir) {
            e.refs += 1;
            return Some(Subscription {
                folder: e.folder.clone(),
            });
        }
        let mut wds = [-1; 2];
        for (i, sub) in ["new", "cur"].into_iter().enumerate() {
            let added = inotify::add_watch(&self.fd, dir.join(sub), watch_flags());
            // The same directory under another name already has this descriptor: it cannot
            // be told apart from the other folder, so this one is polled.
            let added = match added {
                Ok(wd) if state.by_wd.contains_key(&wd) => Err(rustix::io::Errno::EXIST),
                other => other,
            };
            match added {
                Ok(wd) => wds[i] = wd,
                Err(e) => {
                    for wd in wds.into_iter().filter(|&wd| wd >= 0) {
                        let _ = inotify::remove_watch(&self.fd, wd);
                    }
                    if e == rustix::io::Errno::NOSPC && !state.warned {
                        state.warned = true;
                        tracing::warn!(
                            "inotify watch limit reached (fs.inotify.max_user_watches): IMAP \
                             IDLE polls the folders it cannot watch"
                        );
                    } else {
                        tracing::debug!(dir = %dir.display(), error = %e, "folder not watched");
                    }
                    return None;
                }
            }
        }
        let folder = Arc::new(Folder {
            dir: dir.to_path_buf(),
            generation: AtomicU64::new(0),
            event: event_listener::Event::new(),
            broken: AtomicBool::new(false),
        });
        for wd in wds {
            state.by_wd.insert(wd, dir.to_path_buf());
        }
        state.by_dir.insert(
            dir.to_path_buf(),
            Entry {
                folder: folder.clone(),
                wds,
                refs: 1,
            },
        );
        Some(Subscription { folder })
    }

    fn unsubscribe(&self, folder: &Arc<Folder>) {
        let dir = &folder.dir;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = state.by_dir.get_mut(dir) else {
            return;
        };
        // A broken watch's entry is gone and the directory may be watched afresh.
        if !Arc::ptr_eq(&e.folder, folder) {
            return;
        }
        e.refs -= 1;
        if e.refs == 0
            && let Some(e) = state.by_dir.remove(dir)
        {
            for wd in e.wds {
                state.by_wd.remove(&wd);
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }
    }

    fn watched_dirs(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_dir
            .len()
    }
}

/// One subscriber's hold on a watched folder; the watch ends when the last one is dropped.
/// One pointer: 10,000 idling sessions hold one each.
#[derive(Debug)]
pub struct Subscription {
    folder: Arc<Folder>,
}

impl Subscription {
    /// Raised on every change seen; compare with an earlier value to tell whether anything
    /// happened since.
    pub fn generation(&self) -> u64 {
        self.folder.generation.load(Ordering::SeqCst)
    }

    /// The watch ended (the folder's directories were deleted, renamed or unmounted): no
    /// further changes will be reported through this subscription.
    pub fn is_broken(&self) -> bool {
        self.folder.broken.load(Ordering::SeqCst)
    }

    /// Resolves once [`Subscription::generation`] differs from `seen`, with the new value.
    /// Runtime-agnostic (no timer, no IO): cancel it by dropping it.
    pub async fn changed(&self, seen: u64) -> u64 {
        loop {
            match self.changed_or_listen(seen) {
                Ok(g) => return g,
                Err(listener) => listener.await,
            }
        }
    }

    /// Blocks until [`Subscription::generation`] differs from `seen` or `timeout` passes;
    /// returns the generation then (for blocking waiters).
    pub fn wait_changed(&self, seen: u64, timeout: std::time::Duration) -> u64 {
        match self.changed_or_listen(seen) {
            Ok(g) => g,
            Err(listener) => {
                let _ = event_listener::Listener::wait_timeout(listener, timeout);
                self.generation()
            }
        }
    }

    /// The generation if it differs from `seen`; otherwise a listener registered before the
    /// second look, so a change between the look and the wait is not missed.
    fn changed_or_listen(&self, seen: u64) -> Result<u64, event_listener::EventListener> {
        let g = self.generation();
        if g != seen {
            return Ok(g);
        }
        let listener = self.folder.event.listen();
        let g = self.generation();
        if g != seen { Ok(g) } else { Err(listener) }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(w) = watcher() {
            w.unsubscribe(&self.folder);
        }
    }
}

/// Directories watched by this process now (each folder counts once, whatever the number of
/// its subscribers), for tests and figures.
pub fn watched_folders() -> usize {
    watcher().map_or(0, Watcher::watched_dirs)
}

impl Store {
    /// Watches `user`'s IMAP `folder` for changes (see the module docs). Does file-system work
    /// (path lookups for the watches): call it where blocking is allowed. `None`: the folder
    /// does not exist or cannot be watched; poll it instead.
    pub fn watch_imap_folder(&self, user: &UserId, folder: &str) -> Option<Subscription> {
        let dir = crate::folder::folder_dir(&self.config.data_dir, &user.0, Some(folder)).ok()?;
        watcher()?.subscribe(&dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    /// Every kind of change a Maildir sees wakes the subscribers of the folder, nothing else
    /// does, one watch serves all subscribers and goes with the last one, and a deleted folder
    /// ends the subscription.
    #[test]
    fn changes_wake_subscribers_and_the_watch_is_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("INBOX");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let w = watcher().expect("inotify on Linux");
        let before = watched_folders();
        let a = w.subscribe(&dir).expect("watch");
        let b = w.subscribe(&dir).expect("watch");
        assert_eq!(watched_folders(), before + 1, "one watch for both");
        let settled = |s: &Subscription| {
            // Let events of earlier steps arrive before measuring the next one.
            let mut g = s.generation();
            loop {
                let next = s.wait_changed(g, Duration::from_millis(100));
                if next == g {
                    return g;
                }
                g = next;
            }
        };
        // Nothing happens: nothing wakes (reading a file is not a change).
        let g = settled(&a);
        fs::write(dir.join("tmp/1.x"), b"Subject: a\r\n\r\nx\r\n").unwrap();
        let _ = fs::read(dir.join("tmp/1.x")).unwrap();
        assert_eq!(a.wait_changed(g, Duration::from_millis(300)), g);
        // A delivery (rename from tmp/ into new/).
        fs::rename(dir.join("tmp/1.x"), dir.join("new/1.x")).unwrap();
        assert_ne!(a.wait_changed(g, WAIT), g);
        assert_ne!(b.wait_changed(g, WAIT), g, "every subscriber is woken");
        // Moving to cur/ (an IMAP server saw it), a flag change (rename within cur/), an
        // expunge (unlink), a file written straight into new/: each wakes.
        let steps: [&dyn Fn(); 4] = [
            &|| fs::rename(dir.join("new/1.x"), dir.join("cur/1.x:2,")).unwrap(),
            &|| fs::rename(dir.join("cur/1.x:2,"), dir.join("cur/1.x:2,S")).unwrap(),
            &|| fs::remove_file(dir.join("cur/1.x:2,S")).unwrap(),
            &|| fs::write(dir.join("new/2.x"), b"x").unwrap(),
        ];
        for (i, step) in steps.iter().enumerate() {
            let g = settled(&a);
            step();
            assert_ne!(a.wait_changed(g, WAIT), g, "step {i}");
        }
        // The watch goes with the last subscriber.
        drop(a);
        assert_eq!(watched_folders(), before + 1);
        // Deleting the folder wakes the last subscriber and ends its subscription.
        let g = settled(&b);
        fs::remove_dir_all(&dir).unwrap();
        assert_ne!(b.wait_changed(g, WAIT), g);
        let deadline = std::time::Instant::now() + WAIT;
        while !b.is_broken() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(b.is_broken());
        drop(b);
        assert_eq!(watched_folders(), before);
        // A folder without new/ and cur/ cannot be watched: the caller polls.
        assert!(w.subscribe(&dir).is_none());
        assert_eq!(watched_folders(), before);
        // An unbroken watch ends with its last subscriber, and can be set up again.
        for sub in ["new", "cur"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for _ in 0..2 {
            let c = w.subscribe(&dir).expect("watch");
            assert_eq!(watched_folders(), before + 1);
            drop(c);
            assert_eq!(watched_folders(), before);
        }
    }
}
