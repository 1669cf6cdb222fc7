//! The world: one seed decides the clients, the network splits, the clock, the disk faults and
//! the crashes. Sessions are driven only through the real [`Pump`]; requests run synchronously
//! against the real [`Store`] on [`SimFs`].

use super::check::{self, DATA_DIR};
use super::clients::{Client, DOMAIN, USERS};
use super::fs::{Faults, SimFs};
use super::rng::Rng;
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::{
    Action, Completion, Effect, PeerInfo, Pump, Service, SessionIds, TlsInfo, WallClock,
};
use petrel_store::{Store, StoreConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// The seed: everything follows from it.
    pub seed: u64,
    /// Planted bug: the disk ignores directory fsyncs (the store itself is unchanged).
    pub planted_bug: bool,
    /// Planted bug: the disk ignores file fsyncs, so acknowledged files can be torn.
    pub planted_torn: bool,
    /// Steps before the run stops (then the final crash and check).
    pub max_steps: usize,
}

impl RunOptions {
    /// Defaults for `seed`.
    pub fn new(seed: u64) -> RunOptions {
        RunOptions {
            seed,
            planted_bug: false,
            planted_torn: false,
            max_steps: 20_000,
        }
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    /// The seed run.
    pub seed: u64,
    /// FNV-1a hash of the trace; equal for equal seeds.
    pub trace_hash: u64,
    /// Every event, in order.
    pub trace: Vec<String>,
    /// The first invariant broken, if any.
    pub failure: Option<String>,
    /// Messages acknowledged.
    pub acked: usize,
    /// Server crashes (including the final one).
    pub crashes: usize,
    /// Disk faults injected.
    pub faults: u64,
    /// Clients that had not finished when the step budget ran out (0 when the run ended).
    pub unfinished: usize,
}

/// The simulated calendar, derived from the simulated monotonic clock.
#[derive(Debug)]
struct SimWall(Arc<AtomicU64>);

impl WallClock for SimWall {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920 + (self.0.load(Ordering::Relaxed) / 1_000_000_000) as i64
    }
}

struct Conn {
    pump: Pump,
    client: usize,
    to_server: Vec<u8>,
    client_gone: bool,
    deadline: Option<Instant>,
}

struct World {
    rng: Rng,
    epoch: Instant,
    nanos: Arc<AtomicU64>,
    fs: SimFs,
    store: Option<Store>,
    service: Service,
    ids: SessionIds,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    clients: Vec<Client>,
    trace: Vec<String>,
    hash: u64,
    boots: u32,
    crashes: usize,
    faults: u64,
    mid_crash_one_in: u64,
}

/// A disk with the users already created (Argon2 runs once per process, not per seed).
fn template() -> &'static SimFs {
    static T: OnceLock<SimFs> = OnceLock::new();
    T.get_or_init(|| {
        let fs = SimFs::new(0, Faults::default());
        let store = open_store(&fs, Arc::new(SimWall(Arc::new(AtomicU64::new(0)))), 0, 0)
            .expect("template store");
        for user in USERS {
            store
                .users()
                .add(&format!("{user}@{DOMAIN}"), "password")
                .expect("add user");
        }
        fs
    })
}

fn open_store(
    fs: &SimFs,
    clock: Arc<dyn WallClock>,
    pid: u32,
    seed: u64,
) -> std::io::Result<Store> {
    fs.set_faults(false);
    let store = Store::open(
        Arc::new(fs.clone()),
        StoreConfig {
            data_dir: PathBuf::from(DATA_DIR),
            hostname: "mx.example.test".into(),
            clock,
            pid,
            seed,
        },
    );
    fs.set_faults(true);
    store
}

fn effect_name(e: &Effect) -> String {
    match e {
        Effect::LookupRecipient { address } => format!("lookup {address}"),
        Effect::BeginMessage { envelope, .. } => format!("begin {}", envelope.id),
        Effect::AppendChunk { tx, bytes } => format!("append {} {}", tx.0, bytes.len()),
        Effect::Commit { tx, .. } => format!("commit {}", tx.0),
        Effect::Abort { tx } => format!("abort {}", tx.0),
        _ => "other".into(),
    }
}

fn completion_name(c: &Completion) -> String {
    let s = format!("{c:?}");
    s.chars().take(100).collect()
}

impl World {
    fn now(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn log(&mut self, line: String) {
        let line = format!(
            "{:>9}ms {line}",
            self.nanos.load(Ordering::Relaxed) / 1_000_000
        );
        for b in line.bytes().chain([b'\n']) {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.trace.push(line);
    }

    fn boot(&mut self) -> Result<(), String> {
        self.boots += 1;
        let clock = Arc::new(SimWall(self.nanos.clone()));
        let seed = self.rng.next();
        match open_store(&self.fs, clock, 1000 + self.boots, seed) {
            Ok(s) => {
                self.store = Some(s);
                self.log(format!("boot {}", self.boots));
                Ok(())
            }
            Err(e) => Err(format!("Store::open failed after a crash: {e}")),
        }
    }

    fn connect(&mut self, client: usize) {
        let now = self.now();
        let peer = PeerInfo {
            ip: format!("192.0.2.{}", client + 1),
            loopback: false,
            tls: None,
            session_id: self.ids.next_id(),
        };
        let pump = Pump::new(self.service.open(peer, now));
        self.clients[client].connect();
        self.next_conn += 1;
        self.conns.insert(
            self.next_conn,
            Conn {
                pump,
                client,
                to_server: Vec::new(),
                client_gone: false,
                deadline: None,
            },
        );
        self.log(format!("conn {} open client {client}", self.next_conn));
    }

    /// Does the next thing connection `id` wants.
    fn step_conn(&mut self, id: u64) -> Result<(), String> {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        match conn.pump.next_action() {
            Action::Write => {
                let out = conn.pump.output();
                if conn.client_gone {
                    let n = out.len();
                    conn.pump.wrote(now, n);
                    return Ok(());
                }
                let n = if self.rng.one_in(3) {
                    self.rng.range(1, out.len())
                } else {
                    out.len()
                };
                let bytes = out[..n].to_vec();
                conn.pump.wrote(now, n);
                let client = conn.client;
                let reply = self.clients[client].receive(&bytes, &mut self.rng);
                let first = String::from_utf8_lossy(&bytes[..n.min(40)]).into_owned();
                self.log(format!("conn {id} s->c {n} {first:?}"));
                let reply = reply?;
                if !reply.is_empty() {
                    self.log(format!("conn {id} client queues {}", reply.len()));
                }
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.to_server.extend_from_slice(&reply);
                }
            }
            Action::Execute(rid, effect) => {
                let name = effect_name(&effect);
                if self.mid_crash_one_in > 0 && self.rng.one_in(self.mid_crash_one_in) {
                    self.fs.crash_after_ops(self.rng.range(1, 6) as u64);
                }
                let store = self.store.as_ref().expect("store is open");
                let c = store.execute(effect);
                if self.fs.crashed() {
                    self.log(format!("conn {id} {name} -> power lost inside"));
                    return self.crash();
                }
                let cname = completion_name(&c);
                conn.pump.complete(now, rid, c);
                self.log(format!("conn {id} {name} -> {cname}"));
            }
            Action::StartTls => conn.pump.tls_established(
                now,
                TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS13_AES_128_GCM_SHA256".into(),
                },
            ),
            Action::Read { deadline } => {
                conn.deadline = deadline;
                if !conn.to_server.is_empty() {
                    let buf = conn.pump.read_buffer();
                    let max = conn.to_server.len().min(buf.len());
                    let n = if self.rng.one_in(2) {
                        self.rng.range(1, max)
                    } else {
                        max
                    };
                    buf[..n].copy_from_slice(&conn.to_server[..n]);
                    conn.to_server.drain(..n);
                    conn.pump.received(now, n);
                    self.log(format!("conn {id} c->s {n}"));
                } else if conn.client_gone {
                    conn.pump.eof(now);
                    self.log(format!("conn {id} eof"));
                } else if deadline.is_some_and(|d| d <= now) {
                    conn.pump.timeout(now);
                    self.log(format!("conn {id} timeout"));
                }
            }
            Action::Close(reason) => {
                let client = conn.client;
                let gone = conn.client_gone;
                self.conns.remove(&id);
                if !gone {
                    self.clients[client].disconnected();
                }
                self.log(format!("conn {id} closed {reason:?}"));
            }
        }
        Ok(())
    }

    fn crash(&mut self) -> Result<(), String> {
        check::mailboxes(&self.fs, &self.clients).map_err(|e| format!("before crash: {e}"))?;
        self.crashes += 1;
        for (_, conn) in std::mem::take(&mut self.conns) {
            if !conn.client_gone {
                self.clients[conn.client].disconnected();
            }
        }
        self.store = None;
        self.faults += self.fs.injected();
        self.fs = self.fs.crash();
        self.log(format!("crash {}", self.crashes));
        self.boot()?;
        let files =
            check::mailboxes(&self.fs, &self.clients).map_err(|e| format!("after crash: {e}"))?;
        self.log(format!("recovered, {files} files in new/"));
        Ok(())
    }

    fn run(
        &mut self,
        max_steps: usize,
        crash_one_in: u64,
        reset_one_in: u64,
    ) -> Result<(), String> {
        for _ in 0..max_steps {
            let idle = self.conns.is_empty() && !self.clients.iter().any(Client::wants_connect);
            if idle {
                break;
            }
            let r = self.rng.below(100);
            if crash_one_in > 0 && self.rng.one_in(crash_one_in) {
                self.crash()?;
            } else if reset_one_in > 0 && self.rng.one_in(reset_one_in) && !self.conns.is_empty() {
                let id = self.pick_conn();
                let now = self.now();
                if let Some(conn) = self.conns.get_mut(&id)
                    && !conn.client_gone
                {
                    conn.client_gone = true;
                    // A reset loses the bytes in flight; a half-close (FIN) still delivers them.
                    let fin = self.rng.one_in(2);
                    if !fin {
                        conn.to_server.clear();
                        conn.pump.eof(now);
                    }
                    let client = conn.client;
                    self.clients[client].disconnected();
                    let how = if fin { "half-closed" } else { "reset" };
                    self.log(format!("conn {id} {how} by client"));
                }
            } else if r < 8 {
                let wanting: Vec<usize> = (0..self.clients.len())
                    .filter(|&c| self.clients[c].wants_connect())
                    .collect();
                if !wanting.is_empty() {
                    let c = wanting[self.rng.below(wanting.len() as u64) as usize];
                    self.connect(c);
                }
            } else if r < 12 {
                // Time passes; now and then it jumps to the earliest session deadline.
                let mut step = Duration::from_millis(self.rng.below(2000));
                if self.rng.one_in(4) {
                    let now = self.now();
                    if let Some(d) = self.conns.values().filter_map(|c| c.deadline).min() {
                        step = step.max(d.saturating_duration_since(now));
                    }
                }
                self.nanos
                    .fetch_add(step.as_nanos() as u64, Ordering::Relaxed);
            } else if !self.conns.is_empty() {
                let id = self.pick_conn();
                self.step_conn(id)?;
            }
        }
        Ok(())
    }

    fn pick_conn(&mut self) -> u64 {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        ids[self.rng.below(ids.len() as u64) as usize]
    }
}

/// Runs one seed to the end; never panics on an invariant (the failure is in the outcome).
pub fn run_seed(opts: RunOptions) -> Outcome {
    let mut rng = Rng::new(opts.seed);
    // Swarm testing: each run draws its own fault mix, some kinds fully off.
    let ppm = |rng: &mut Rng| [0, 0, 200, 2_000, 20_000][rng.range(0, 4)];
    let faults = Faults {
        write: ppm(&mut rng),
        sync: ppm(&mut rng),
        sync_dir: ppm(&mut rng),
        link: ppm(&mut rng),
        create: ppm(&mut rng),
        broken_sync_dir: opts.planted_bug,
        broken_sync: opts.planted_torn,
    };
    let crash_one_in = [0, 3000, 800, 200][rng.range(0, 3)];
    let rng_pick = rng.range(0, 2);
    let reset_one_in = [0, 400, 60][rng.range(0, 2)];
    let nanos = Arc::new(AtomicU64::new(0));
    let mut config = SmtpConfig::new(
        "mx.example.test",
        Role::Inbound,
        &[DOMAIN.to_string()],
        Arc::new(SimWall(nanos.clone())),
    );
    config.starttls = false;
    config.chunk_size = [64, 1000, 65536][rng.range(0, 2)];
    let clients = (0..rng.range(1, 6))
        .map(|i| Client::new(i, &mut rng))
        .collect();
    let fs = template().fork(rng.next(), faults);
    let mut w = World {
        ids: SessionIds::new(rng.next()),
        rng,
        // The simulation's one real instant; every later time is derived from it.
        epoch: Instant::now(),
        nanos,
        fs,
        store: None,
        service: Service::Smtp(Arc::new(config)),
        conns: BTreeMap::new(),
        next_conn: 0,
        clients,
        trace: Vec::new(),
        hash: 0xcbf2_9ce4_8422_2325,
        boots: 0,
        crashes: 0,
        faults: 0,
        mid_crash_one_in: [0, 300, 50][rng_pick],
    };
    w.log(format!(
        "seed {} faults {faults:?} crash 1/{crash_one_in} reset 1/{reset_one_in} clients {}",
        opts.seed,
        w.clients.len()
    ));
    let result = w
        .boot()
        .and_then(|()| w.run(opts.max_steps, crash_one_in, reset_one_in))
        .and_then(|()| w.crash());
    let failure = result.err();
    if let Some(f) = &failure {
        w.log(format!("FAILED: {f}"));
    }
    Outcome {
        seed: opts.seed,
        trace_hash: w.hash,
        acked: w
            .clients
            .iter()
            .flat_map(|c| &c.attempts)
            .filter(|a| a.acked)
            .count(),
        crashes: w.crashes,
        faults: w.faults + w.fs.injected(),
        unfinished: w.clients.iter().filter(|c| !c.done).count(),
        failure,
        trace: w.trace,
    }
}
