//! An in-memory filesystem with the durability model of `petrel_store::fs`: file data is durable
//! after `WriteFile::sync`, a directory entry after `sync_dir` of its parent. [`SimFs::crash`]
//! returns what a disk would hold after power loss; seeded faults fail writes and syncs with EIO.

use super::rng::Rng;
use petrel_store::FileSystem;
use petrel_store::fs::{Stamp, WriteFile};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, PoisonError};

/// Per-run fault probabilities, in parts per million of operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// EIO on `write`.
    pub write: u32,
    /// EIO on `WriteFile::sync`.
    pub sync: u32,
    /// EIO on `sync_dir`.
    pub sync_dir: u32,
    /// EIO on `hard_link`.
    pub link: u32,
    /// ENOSPC on `create_new`.
    pub create: u32,
    /// Planted bug: `sync_dir` succeeds without making anything durable.
    pub broken_sync_dir: bool,
    /// Planted bug: `WriteFile::sync` succeeds without making the data durable.
    pub broken_sync: bool,
}

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        version: u64,
    },
    Dir {
        entries: BTreeMap<String, u64>,
        durable: BTreeMap<String, u64>,
    },
}

#[derive(Debug)]
struct State {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    version: u64,
    rng: Rng,
    faults: Faults,
    faults_on: bool,
    injected: u64,
    ops: u64,
    crash_at: Option<u64>,
    snapshot: Option<BTreeMap<u64, Node>>,
}

const ROOT: u64 = 1;

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what}"))
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl State {
    /// Counts a mutating operation; at the planned one, records the disk as a crash would
    /// leave it right before the operation.
    fn tick(&mut self) {
        self.ops += 1;
        if self.faults_on && self.crash_at == Some(self.ops) && self.snapshot.is_none() {
            self.snapshot = Some(self.durable_nodes());
        }
    }

    /// What survives power loss now (see [`SimFs::crash`]).
    fn durable_nodes(&mut self) -> BTreeMap<u64, Node> {
        let mut nodes = BTreeMap::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if nodes.contains_key(&ino) {
                continue;
            }
            let node = match self.nodes.get(&ino).cloned() {
                Some(Node::Dir { durable, .. }) => {
                    todo.extend(durable.values().copied());
                    Node::Dir {
                        entries: durable.clone(),
                        durable,
                    }
                }
                Some(Node::File {
                    data,
                    synced,
                    version,
                }) => {
                    let mut kept = synced.clone();
                    if data.len() > synced.len() && data.starts_with(&synced) {
                        let extra = data.len() - synced.len();
                        let keep = self.rng.below(extra as u64 + 1) as usize;
                        kept.extend_from_slice(&data[synced.len()..synced.len() + keep]);
                    }
                    Node::File {
                        data: kept.clone(),
                        synced: kept,
                        version,
                    }
                }
                None => continue,
            };
            nodes.insert(ino, node);
        }
        nodes
    }

    fn fault(&mut self, ppm: u32, what: &str) -> io::Result<()> {
        if self.faults_on && ppm > 0 && self.rng.below(1_000_000) < u64::from(ppm) {
            self.injected += 1;
            return Err(eio(what));
        }
        Ok(())
    }

    /// The inode of `path`, following current entries.
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => {
                    let Some(Node::Dir { entries, .. }) = self.nodes.get(&ino) else {
                        return Err(not_found());
                    };
                    ino = *entries
                        .get(name.to_str().unwrap_or(""))
                        .ok_or_else(not_found)?;
                }
                _ => return Err(io::Error::other("unsupported path")),
            }
        }
        Ok(ino)
    }

    /// The parent directory's inode and the last name of `path`.
    fn parent(&self, path: &Path) -> io::Result<(u64, String)> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other("no file name"))?
            .to_string();
        let dir = self.lookup(path.parent().unwrap_or(Path::new("/")))?;
        match self.nodes.get(&dir) {
            Some(Node::Dir { .. }) => Ok((dir, name)),
            _ => Err(not_found()),
        }
    }

    fn entries(&mut self, dir: u64) -> &mut BTreeMap<String, u64> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { entries, .. }) => entries,
            _ => unreachable!("parent() checked it is a directory"),
        }
    }

    fn add_node(&mut self, node: Node) -> u64 {
        self.next_ino += 1;
        self.nodes.insert(self.next_ino, node);
        self.next_ino
    }

    fn link_new(&mut self, path: &Path, ino: u64) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let entries = self.entries(dir);
        if entries.contains_key(&name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        entries.insert(name, ino);
        Ok(())
    }
}

/// The simulated filesystem (cheap to clone: clones share one disk).
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty disk with only `/`.
    pub fn new(seed: u64, faults: Faults) -> SimFs {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        SimFs::from_nodes(nodes, Rng::new(seed), faults)
    }

    fn from_nodes(nodes: BTreeMap<u64, Node>, rng: Rng, faults: Faults) -> SimFs {
        let next_ino = nodes.keys().max().copied().unwrap_or(ROOT);
        SimFs {
            state: Arc::new(Mutex::new(State {
                nodes,
                next_ino,
                version: 0,
                rng,
                faults,
                faults_on: false,
                injected: 0,
                ops: 0,
                crash_at: None,
                snapshot: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Turns fault injection on or off (off while the world sets up or checks).
    pub fn set_faults(&self, on: bool) {
        self.lock().faults_on = on;
    }

    /// Faults injected so far on this disk.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// A copy of this disk with a new seed and fault plan, everything made durable (a template).
    pub fn fork(&self, seed: u64, faults: Faults) -> SimFs {
        let s = self.lock();
        let mut nodes = s.nodes.clone();
        for node in nodes.values_mut() {
            match node {
                Node::File { data, synced, .. } => *synced = data.clone(),
                Node::Dir { entries, durable } => *durable = entries.clone(),
            }
        }
        SimFs::from_nodes(nodes, Rng::new(seed), faults)
    }

    /// The disk after power loss: only durable entries remain, un-synced entries vanish and
    /// renames revert; a file's un-synced appended bytes are lost or torn (a random prefix kept).
    /// The returned disk has the same fault plan; its faults start off.
    pub fn crash(&self) -> SimFs {
        let mut s = self.lock();
        let nodes = match s.snapshot.take() {
            Some(nodes) => nodes,
            None => s.durable_nodes(),
        };
        let rng = Rng::new(s.rng.next());
        SimFs::from_nodes(nodes, rng, s.faults)
    }

    /// Plans a crash right before the `n`-th next mutating operation; see [`SimFs::crashed`].
    pub fn crash_after_ops(&self, n: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.ops + n);
    }

    /// True once the planned crash point has passed: the world must crash now, before anything
    /// the store did afterwards reaches a client.
    pub fn crashed(&self) -> bool {
        self.lock().snapshot.is_some()
    }

    /// Names in a directory (no faults), sorted; empty if it does not exist.
    pub fn list(&self, path: &Path) -> Vec<String> {
        let s = self.lock();
        match s.lookup(path).ok().and_then(|i| s.nodes.get(&i)) {
            Some(Node::Dir { entries, .. }) => entries.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// A file's current bytes (no faults).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        match s.lookup(path).ok().and_then(|i| s.nodes.get(&i)) {
            Some(Node::File { data, .. }) => Some(data.clone()),
            _ => None,
        }
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.tick();
        let ppm = s.faults.write;
        s.fault(ppm, "write")?;
        s.version += 1;
        let v = s.version;
        // Short writes exercise the callers' write_all loops.
        let n = if buf.len() > 1 && s.faults_on && s.rng.below(8) == 0 {
            1 + s.rng.below(buf.len() as u64 - 1) as usize
        } else {
            buf.len()
        };
        match s.nodes.get_mut(&self.ino) {
            Some(Node::File { data, version, .. }) => {
                data.extend_from_slice(&buf[..n]);
                *version = v;
                Ok(n)
            }
            _ => Err(not_found()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteFile for SimFile {
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.tick();
        let ppm = s.faults.sync;
        s.fault(ppm, "fsync")?;
        if s.faults.broken_sync && s.faults_on {
            return Ok(());
        }
        if let Some(Node::File { data, synced, .. }) = s.nodes.get_mut(&self.ino) {
            *synced = data.clone();
        }
        Ok(())
    }
}

impl FileSystem for SimFs {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let mut s = self.lock();
        s.tick();
        let ppm = s.faults.create;
        if s.faults_on && ppm > 0 && s.rng.below(1_000_000) < u64::from(ppm) {
            s.injected += 1;
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        let (dir, name) = s.parent(path)?;
        if s.entries(dir).contains_key(&name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        s.version += 1;
        let version = s.version;
        let ino = s.add_node(Node::File {
            data: Vec::new(),
            synced: Vec::new(),
            version,
        });
        s.entries(dir).insert(name, ino);
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            ino,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let s = self.lock();
        match s.nodes.get(&s.lookup(path)?) {
            Some(Node::File { data, .. }) => Ok(Box::new(io::Cursor::new(data.clone()))),
            _ => Err(io::Error::other("is a directory")),
        }
    }

    fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        let ppm = s.faults.link;
        s.fault(ppm, "link")?;
        let ino = s.lookup(src)?;
        s.link_new(dst, ino)
    }

    fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        let (sdir, sname) = s.parent(src)?;
        let (ddir, dname) = s.parent(dst)?;
        let ino = s.entries(sdir).remove(&sname).ok_or_else(not_found)?;
        s.entries(ddir).insert(dname, ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        let (dir, name) = s.parent(path)?;
        s.entries(dir).remove(&name).ok_or_else(not_found)?;
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        let (dir, name) = s.parent(path)?;
        if s.entries(dir).contains_key(&name) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let ino = s.add_node(Node::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        });
        s.entries(dir).insert(name, ino);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.tick();
        let ppm = s.faults.sync_dir;
        s.fault(ppm, "directory fsync")?;
        if s.faults.broken_sync_dir && s.faults_on {
            return Ok(());
        }
        let ino = s.lookup(path)?;
        match s.nodes.get_mut(&ino) {
            Some(Node::Dir { entries, durable }) => {
                *durable = entries.clone();
                Ok(())
            }
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        match s.nodes.get(&s.lookup(path)?) {
            Some(Node::Dir { entries, .. }) => Ok(entries.keys().cloned().collect()),
            _ => Err(io::Error::other("not a directory")),
        }
    }

    fn stamp(&self, path: &Path) -> io::Result<Option<Stamp>> {
        let s = self.lock();
        let Ok(ino) = s.lookup(path) else {
            return Ok(None);
        };
        Ok(match s.nodes.get(&ino) {
            Some(Node::File { data, version, .. }) => Some(Stamp {
                len: data.len() as u64,
                modified_ns: i128::from(*version),
                ino,
            }),
            Some(Node::Dir { .. }) => Some(Stamp {
                len: 0,
                modified_ns: 0,
                ino,
            }),
            None => None,
        })
    }
}
