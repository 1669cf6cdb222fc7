//! The world: one seed decides the clients, the network splits, the clock, the disk faults and
//! the crashes. Sessions are driven only through the real [`Pump`]; requests run synchronously
//! against the real [`Store`] on [`SimFs`].

use super::check::{self, DATA_DIR, Deletions, Gone};
use super::clients::{Client, DOMAIN, USERS};
use super::fs::{Faults, SimFs};
use super::pop::{self, PopEvent, Reader};
use super::rng::Rng;
use super::sieve::{self, Scripts};
use petrel_core::pop3::Pop3Config;
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::{
    Action, Completion, Effect, MaildropOutcome, PeerInfo, Pump, RequestId, Service, SessionIds,
    TlsInfo, WallClock,
};
use petrel_store::{Store, StoreConfig};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Planted bug: the runtime loses the answers of slow store requests (never completes them).
    pub planted_lost: bool,
    /// Start without the users' Maildirs, so the store creates them while faults are on.
    pub fresh_maildirs: bool,
    /// Planted bug: a POP3 session the reader dropped counts as if its QUIT had been answered
    /// `+OK`, so the checker expects its DELEted messages gone.
    pub planted_pop_ack: bool,
}

impl RunOptions {
    /// Defaults for `seed`.
    pub fn new(seed: u64) -> RunOptions {
        RunOptions {
            seed,
            planted_bug: false,
            planted_torn: false,
            max_steps: 20_000,
            fresh_maildirs: false,
            planted_lost: false,
            planted_pop_ack: false,
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
    /// Store requests whose completion was delayed.
    pub parked: u64,
    /// Times a slow client stopped reading.
    pub stalls: u64,
    /// Highest `Pump::buffered_bytes` seen.
    pub peak_buffered: usize,
    /// Messages POP3 readers retrieved (RETR or TOP).
    pub retrieved: u64,
    /// POP3 deletions acknowledged by a QUIT `+OK`.
    pub pop_deleted: usize,
    /// Acknowledged copies a Sieve script filed into a folder.
    pub sieve_filed: usize,
    /// Acknowledged copies a Sieve script discarded, rejected or redirected.
    pub sieve_dropped: usize,
    /// Rejection notices on the disk at the last check.
    pub notices: usize,
}

/// The simulated calendar, derived from the simulated monotonic clock.
#[derive(Debug)]
struct SimWall(Arc<AtomicU64>);

impl WallClock for SimWall {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920 + (self.0.load(Ordering::Relaxed) / 1_000_000_000) as i64
    }
}

/// A store request in progress: done early with its answer held back, or not yet executed.
enum Work {
    Done(Completion),
    Todo(Effect),
}

struct Parked {
    rid: RequestId,
    name: String,
    ready_at: u64,
    work: Work,
}

struct Conn {
    pump: Pump,
    client: usize,
    /// A POP3 connection: `client` indexes the readers.
    pop: bool,
    /// Sim ids the POP3 reader DELEted before it sent QUIT.
    quit_ids: Vec<String>,
    to_server: Vec<u8>,
    client_gone: bool,
    deadline: Option<Instant>,
    /// Picks left during which the client does not read (slow reader).
    stall: u32,
    /// The store request the runtime is waiting for, if it is slow.
    parked: Option<Parked>,
}

struct World {
    rng: Rng,
    epoch: Instant,
    nanos: Arc<AtomicU64>,
    fs: SimFs,
    store: Option<Store>,
    inbound: Service,
    submission: Service,
    lmtp: Service,
    pop3: Service,
    ids: SessionIds,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    clients: Vec<Client>,
    readers: Vec<Reader>,
    /// POP3 deletions the checker must allow or expect.
    gone: Deletions,
    /// Users whose maildrop a POP3 session holds (as the store must see it), by connection.
    holders: BTreeMap<String, u64>,
    /// UIDL each reader saw per (user, sim id), and the reverse.
    uidls: BTreeMap<(String, String), String>,
    uidl_owner: BTreeMap<(String, String), String>,
    planted_pop_ack: bool,
    /// The users' Sieve scripts (installed before the first boot, never changed).
    scripts: Scripts,
    /// Rejection notices seen by the last disk check.
    notices: usize,
    /// Attempts whose commit succeeded without any disk fault: their rejection notices must
    /// all be there.
    clean_commits: BTreeSet<String>,
    trace: Vec<String>,
    hash: u64,
    boots: u32,
    crashes: usize,
    faults: u64,
    mid_crash_one_in: u64,
    park_one_in: u64,
    lose_parked: bool,
    stalls_on: bool,
    steps: u64,
    parked: u64,
    stalls: u64,
    peak_buffered: usize,
}

/// A disk with the data directory and the users (`{PLAIN}` passwords: Argon2 is too slow here);
/// with `maildirs`, each user's Maildir exists too (as `petrel user add` leaves it).
fn template(maildirs: bool) -> &'static SimFs {
    static WITH: OnceLock<SimFs> = OnceLock::new();
    static WITHOUT: OnceLock<SimFs> = OnceLock::new();
    let cell = if maildirs { &WITH } else { &WITHOUT };
    cell.get_or_init(|| {
        use petrel_store::fs::FileSystem;
        use std::io::Write;
        let fs = SimFs::new(0, Faults::default());
        open_store(&fs, Arc::new(SimWall(Arc::new(AtomicU64::new(0)))), 0, 0)
            .expect("template store");
        let text: String = USERS
            .iter()
            .map(|u| format!("{u}@{DOMAIN}:{{PLAIN}}password\n"))
            .collect();
        let mut f = fs
            .create_new(&PathBuf::from(DATA_DIR).join("passwd"))
            .expect("passwd");
        f.write_all(text.as_bytes()).expect("write passwd");
        f.sync().expect("sync passwd");
        drop(f);
        if maildirs {
            for user in USERS {
                for sub in ["cur", "new", "tmp"] {
                    let dir = PathBuf::from(DATA_DIR)
                        .join("mail")
                        .join(DOMAIN)
                        .join(user)
                        .join(sub);
                    petrel_store::fs::create_dir_all(&fs, &dir).expect("maildir");
                }
            }
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
        Effect::Authenticate { username, .. } => format!("auth {username}"),
        Effect::OpenMaildrop { user } => format!("open-maildrop {}", user.0),
        Effect::ReadMessage { name, offset, .. } => format!("read {name} @{offset}"),
        Effect::CloseMaildrop { user, delete } => {
            format!("close-maildrop {} delete {}", user.0, delete.len())
        }
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

    fn connect(&mut self, client: usize, pop: bool) {
        let now = self.now();
        let peer = PeerInfo {
            ip: if pop {
                "127.0.0.1".into()
            } else {
                format!("192.0.2.{}", client + 1)
            },
            loopback: pop,
            tls: None,
            session_id: self.ids.next_id(),
        };
        let service = if pop {
            &self.pop3
        } else if self.clients[client].submission {
            &self.submission
        } else if self.clients[client].lmtp {
            &self.lmtp
        } else {
            &self.inbound
        };
        let pump = Pump::new(service.open(peer, now));
        if pop {
            self.readers[client].connect(&mut self.rng);
            self.readers[client].seen_mail = self.mail_for(self.readers[client].user);
        } else {
            self.clients[client].connect(&mut self.rng);
        }
        self.next_conn += 1;
        self.conns.insert(
            self.next_conn,
            Conn {
                pump,
                client,
                pop,
                quit_ids: Vec::new(),
                to_server: Vec::new(),
                client_gone: false,
                deadline: None,
                stall: 0,
                parked: None,
            },
        );
        let what = if pop { "reader" } else { "client" };
        self.log(format!("conn {} open {what} {client}", self.next_conn));
    }

    /// Does the next thing connection `id` wants.
    fn step_conn(&mut self, id: u64) -> Result<(), String> {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if let Some(p) = &conn.parked {
            // The runtime is waiting for the store: the connection does nothing else meanwhile.
            if self.steps < p.ready_at {
                return Ok(());
            }
            let Some(p) = conn.parked.take() else {
                return Ok(());
            };
            let c = match p.work {
                Work::Done(c) => c,
                Work::Todo(effect) => match self.execute(id, &p.name, effect)? {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            let cname = completion_name(&c);
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.pump.complete(now, p.rid, c);
            }
            self.log(format!("conn {id} {} -> {cname} (late)", p.name));
            return Ok(());
        }
        match conn.pump.next_action() {
            Action::Write => {
                let out = conn.pump.output();
                if conn.client_gone {
                    let n = out.len();
                    conn.pump.wrote(now, n);
                    return Ok(());
                }
                if conn.stall > 0 {
                    conn.stall -= 1;
                    if conn.stall == 0 {
                        self.log(format!("conn {id} client reads again"));
                    }
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
                if conn.pop {
                    return self.pop_receive(id, client, &bytes);
                }
                let reply = self.clients[client].receive(&bytes, &mut self.rng);
                let first = String::from_utf8_lossy(&bytes[..n.min(40)]).into_owned();
                self.log(format!("conn {id} s->c {n} {first:?}"));
                let reply = reply?;
                if !reply.is_empty() {
                    self.log(format!("conn {id} client queues {}", reply.len()));
                }
                let c = &mut self.clients[client];
                let burst = std::mem::take(&mut c.stall_request);
                let slow = c.slow;
                if self.stalls_on && (burst || (slow && self.rng.one_in(20))) {
                    let steps = if burst {
                        self.rng.range(50, 1500)
                    } else {
                        self.rng.range(10, 300)
                    } as u32;
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.stall = steps;
                    }
                    self.stalls += 1;
                    self.log(format!("conn {id} client stops reading for {steps}"));
                }
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.to_server.extend_from_slice(&reply);
                }
            }
            Action::Execute(rid, effect) => {
                let name = effect_name(&effect);
                if self.park_one_in > 0 && self.rng.one_in(self.park_one_in) {
                    // Store latency: the answer comes a few steps later; either the work is
                    // done now and only the answer is late, or the work itself waits.
                    let work = if self.rng.one_in(2) {
                        match self.execute(id, &name, effect)? {
                            Some(c) => Work::Done(c),
                            None => return Ok(()),
                        }
                    } else {
                        Work::Todo(effect)
                    };
                    let mut ready_at = self.steps + self.rng.range(1, 200) as u64;
                    if self.lose_parked {
                        ready_at = u64::MAX;
                    }
                    self.parked += 1;
                    self.log(format!("conn {id} {name} parked until step {ready_at}"));
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.parked = Some(Parked {
                            rid,
                            name,
                            ready_at,
                            work,
                        });
                    }
                    return Ok(());
                }
                let Some(c) = self.execute(id, &name, effect)? else {
                    return Ok(());
                };
                let cname = completion_name(&c);
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.pump.complete(now, rid, c);
                }
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
                if deadline.is_some_and(|d| d <= now) {
                    // Timers first: a delayed reply (AUTH failure) does not wait for more input.
                    conn.pump.timeout(now);
                    self.log(format!("conn {id} timeout"));
                } else if !conn.to_server.is_empty() {
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
                }
            }
            Action::Wait { deadline } => {
                conn.deadline = deadline;
                if deadline.is_some_and(|d| d <= now) {
                    conn.pump.timeout(now);
                    self.log(format!("conn {id} timeout (input full)"));
                }
            }
            Action::Close(reason) => {
                let (client, pop) = (conn.client, conn.pop);
                let gone = conn.client_gone;
                self.conns.remove(&id);
                if !gone {
                    self.disconnected(client, pop);
                }
                self.log(format!("conn {id} closed {reason:?}"));
            }
        }
        Ok(())
    }

    /// Runs one request against the store; `None` when the power failed inside it (the world
    /// has crashed and restarted, and the connection is gone).
    fn execute(
        &mut self,
        id: u64,
        name: &str,
        effect: Effect,
    ) -> Result<Option<Completion>, String> {
        if self.mid_crash_one_in > 0 && self.rng.one_in(self.mid_crash_one_in) {
            self.fs.crash_after_ops(self.rng.range(1, 6) as u64);
        }
        // The maildrop lock as the store must see it: held from a successful open to the close.
        let mut opening = None;
        match &effect {
            Effect::OpenMaildrop { user } => {
                opening = Some((user.0.clone(), self.holders.get(&user.0).copied()));
            }
            Effect::CloseMaildrop { user, delete } => {
                self.holders.remove(&user.0);
                if !delete.is_empty() {
                    let ids = self
                        .conns
                        .get(&id)
                        .map(|c| c.quit_ids.clone())
                        .unwrap_or_default();
                    if ids.len() != delete.len() {
                        return Err(format!(
                            "conn {id}: QUIT deletes {} messages, the reader DELEted {ids:?}",
                            delete.len()
                        ));
                    }
                    let user = local_part(&user.0);
                    for sid in ids {
                        self.gone.entry((user.clone(), sid)).or_insert(Gone::Maybe);
                    }
                }
            }
            _ => {}
        }
        // The attempt a commit is for, to know which commits ran without a disk fault. Only
        // while the client is still on this connection is its current attempt this one's.
        let committing = match &effect {
            Effect::Commit { .. } => self
                .conns
                .get(&id)
                .filter(|c| !c.pop && !c.client_gone)
                .and_then(|c| self.clients[c.client].current_attempt())
                .map(str::to_string),
            _ => None,
        };
        let faults_before = self.fs.injected();
        let store = self.store.as_ref().expect("store is open");
        let c = store.execute(effect);
        if self.fs.crashed() {
            self.log(format!("conn {id} {name} -> power lost inside"));
            self.crash()?;
            return Ok(None);
        }
        if let Some(attempt) = committing
            && matches!(c, Completion::Durable(_))
            && self.fs.injected() == faults_before
        {
            self.clean_commits.insert(attempt);
        }
        if let Some((user, holder)) = opening {
            match (&c, holder) {
                (Completion::Maildrop(MaildropOutcome::InUse), None) => {
                    return Err(format!(
                        "conn {id}: {user}'s maildrop is IN-USE though no POP3 session holds it"
                    ));
                }
                (Completion::Maildrop(MaildropOutcome::Ready { .. }), Some(h)) => {
                    return Err(format!(
                        "conn {id}: second POP3 session got {user}'s maildrop while conn {h} holds it"
                    ));
                }
                (Completion::Maildrop(MaildropOutcome::Ready { .. }), None) => {
                    self.holders.insert(user, id);
                }
                _ => {}
            }
        }
        Ok(Some(c))
    }

    /// Every connection's buffers stay under the bound (issue 3: memory per session bounded).
    fn check_memory(&mut self) -> Result<(), String> {
        for (id, conn) in &self.conns {
            let n = conn.pump.buffered_bytes();
            self.peak_buffered = self.peak_buffered.max(n);
            if n > Pump::MAX_BUFFERED {
                return Err(format!(
                    "conn {id} buffers {n} bytes, over Pump::MAX_BUFFERED {}",
                    Pump::MAX_BUFFERED
                ));
            }
        }
        Ok(())
    }

    fn check_disk(&mut self, when: &str) -> Result<usize, String> {
        let mut notices = check::Notices::new();
        let files = check::mailboxes(
            &self.fs,
            &self.clients,
            &self.gone,
            &self.scripts,
            &mut notices,
        )
        .map_err(|e| format!("{when}: {e}"))?;
        check::queue(&self.fs, &self.clients, &self.scripts, &mut notices)
            .map_err(|e| format!("{when}: {e}"))?;
        check::replies(&self.clients, &self.scripts).map_err(|e| format!("{when}: {e}"))?;
        check::notices(&self.clients, &self.scripts, &notices, &self.clean_commits)
            .map_err(|e| format!("{when}: {e}"))?;
        self.notices = notices.values().sum();
        Ok(files)
    }

    fn crash(&mut self) -> Result<(), String> {
        self.check_disk("before crash")?;
        self.crashes += 1;
        for (_, conn) in std::mem::take(&mut self.conns) {
            if !conn.client_gone {
                self.disconnected(conn.client, conn.pop);
            }
        }
        // The maildrop locks live in the store's memory: a crash frees them.
        self.holders.clear();
        self.store = None;
        self.faults += self.fs.injected();
        self.fs = self.fs.crash();
        self.log(format!("crash {}", self.crashes));
        self.boot()?;
        let files = self.check_disk("after crash")?;
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
            self.steps += 1;
            self.check_memory()?;
            let idle = self.conns.is_empty()
                && !self.clients.iter().any(Client::wants_connect)
                && !self.readers.iter().any(Reader::wants_connect);
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
                    if conn.pop {
                        self.readers[client].disconnected();
                    } else {
                        self.clients[client].disconnected();
                    }
                    let how = if fin { "half-closed" } else { "reset" };
                    self.log(format!("conn {id} {how} by client"));
                }
            } else if r < 8 {
                let senders_done = self.clients.iter().all(|c| c.done);
                let wanting: Vec<(usize, bool)> = (0..self.clients.len())
                    .filter(|&c| self.clients[c].wants_connect())
                    .map(|c| (c, false))
                    .chain(
                        (0..self.readers.len())
                            .filter(|&r| {
                                self.readers[r].wants_connect()
                                    && (senders_done
                                        || self.mail_for(self.readers[r].user)
                                            > self.readers[r].seen_mail)
                            })
                            .map(|r| (r, true)),
                    )
                    .collect();
                if !wanting.is_empty() {
                    let (c, pop) = wanting[self.rng.below(wanting.len() as u64) as usize];
                    self.connect(c, pop);
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
        self.check_memory()
    }

    /// After the faults: nothing fails any more, so every client must finish.
    fn liveness(&mut self, max_steps: usize) -> Result<(), String> {
        self.fs.set_faults(false);
        self.mid_crash_one_in = 0;
        self.park_one_in = 0;
        self.stalls_on = false;
        self.log("faults off".into());
        self.run(max_steps, 0, 0)?;
        if let Some(r) = self.readers.iter().find(|r| !r.done) {
            return Err(format!(
                "liveness: reader {} not finished {max_steps} steps after the faults stopped",
                r.idx
            ));
        }
        if let Some(c) = self.clients.iter().find(|c| !c.done) {
            let conn = self.conns.values().find(|k| k.client == c.idx && !k.pop);
            let state = conn.map(|k| {
                format!(
                    "stall {} parked {} to_server {} buffered {}",
                    k.stall,
                    k.parked.as_ref().map_or("-", |p| p.name.as_str()),
                    k.to_server.len(),
                    k.pump.buffered_bytes()
                )
            });
            return Err(format!(
                "liveness: client {} not finished {max_steps} steps after the faults stopped (connection: {state:?})",
                c.idx
            ));
        }
        Ok(())
    }

    /// Messages acknowledged to local user `user` so far.
    fn mail_for(&self, user: &str) -> usize {
        self.clients
            .iter()
            .flat_map(|c| &c.attempts)
            .filter(|a| a.acked && a.delivered.iter().any(|u| u == user))
            .count()
    }

    fn disconnected(&mut self, client: usize, pop: bool) {
        if pop {
            self.readers[client].disconnected();
        } else {
            self.clients[client].disconnected();
        }
    }

    /// Bytes from the server to POP3 reader `r` on connection `id`.
    fn pop_receive(&mut self, id: u64, r: usize, bytes: &[u8]) -> Result<(), String> {
        let reply = self.readers[r].receive(bytes, &mut self.rng);
        let first = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        self.log(format!("conn {id} s->r {} {first:?}", bytes.len()));
        let reply = reply?;
        for ev in std::mem::take(&mut self.readers[r].events) {
            self.pop_event(id, r, ev)?;
        }
        if !reply.is_empty() {
            self.log(format!("conn {id} reader queues {}", reply.len()));
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.to_server.extend_from_slice(&reply);
            }
        }
        if self.readers[r].drop_request {
            let dele = self.readers[r].deleted_ids();
            let now = self.now();
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.client_gone = true;
                conn.to_server.clear();
                conn.pump.eof(now);
            }
            self.readers[r].disconnected();
            self.log(format!(
                "conn {id} reader drops the connection after DELE {dele:?}"
            ));
            if self.planted_pop_ack {
                let user = self.readers[r].user.to_string();
                for sid in dele {
                    self.gone.insert((user.clone(), sid), Gone::Acked);
                }
            }
        }
        Ok(())
    }

    /// Checks what a POP3 reader saw against the disk and the history.
    fn pop_event(&mut self, id: u64, r: usize, ev: PopEvent) -> Result<(), String> {
        let user = self.readers[r].user.to_string();
        match ev {
            PopEvent::InUse => self.log(format!("conn {id} reader {r} IN-USE")),
            PopEvent::QuitSent(ids) => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.quit_ids = ids;
                }
            }
            PopEvent::QuitAcked(ids) => {
                self.log(format!("conn {id} QUIT acknowledged deleting {ids:?}"));
                for sid in ids {
                    self.gone.insert((user.clone(), sid), Gone::Acked);
                }
            }
            PopEvent::Retrieved {
                n,
                uidl,
                octets,
                listed,
                content,
                top,
            } => {
                let what = format!("conn {id} {user} message {n} (top {top:?})");
                if check::sim_id(&content).is_none() && check::is_notice(&content) {
                    // A rejection notice about a message this user sent (checked on the disk).
                    self.log(format!("conn {id} retrieved a notice"));
                    return Ok(());
                }
                let sid = check::sim_id(&content)
                    .ok_or_else(|| format!("{what}: retrieved without X-Sim-Id: {content:?}"))?;
                self.log(format!("conn {id} retrieved {sid} uidl {uidl:?}"));
                if self.gone.get(&(user.clone(), sid.clone())) == Some(&Gone::Acked) {
                    return Err(format!(
                        "{what}: {sid} retrieved although a QUIT acknowledged its deletion"
                    ));
                }
                let stored = check::stored(&self.fs, &user, &sid)
                    .ok_or_else(|| format!("{what}: {sid} retrieved but not on disk"))?;
                let want = match top {
                    Some(k) => pop::top_of(&stored, k),
                    None => stored.clone(),
                };
                if content != want {
                    return Err(format!(
                        "{what}: {sid} retrieved as {} bytes, differs from the stored {} bytes",
                        content.len(),
                        want.len()
                    ));
                }
                if top.is_none() && (octets != Some(content.len() as u64) || listed != octets) {
                    return Err(format!(
                        "{what}: {sid} is {} octets, RETR said {octets:?}, LIST said {listed:?}",
                        content.len()
                    ));
                }
                if let Some(u) = uidl {
                    let key = (user.clone(), sid.clone());
                    if let Some(old) = self.uidls.get(&key)
                        && old != &u
                        && old[8..] == u[8..]
                    {
                        return Err(format!(
                            "{what}: {sid} had UIDL {old}, now {u} with the same UIDVALIDITY"
                        ));
                    }
                    let owner = (user.clone(), u.clone());
                    if let Some(other) = self.uidl_owner.get(&owner)
                        && other != &sid
                    {
                        return Err(format!("{what}: UIDL {u} was {other}'s, now {sid}'s"));
                    }
                    self.uidls.insert(key, u);
                    self.uidl_owner.insert(owner, sid);
                }
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
    let mut lmtp = config.clone();
    lmtp.role = Role::Lmtp;
    let mut sub = config.clone();
    sub.role = Role::Submission;
    sub.starttls = true;
    let park_one_in = [0, 40, 8][rng.range(0, 2)];
    let clients: Vec<Client> = (0..rng.range(1, 6))
        .map(|i| {
            let mut c = Client::new(i, &mut rng);
            c.sort_rng = Rng::new(opts.seed ^ 0x5027_0000_0000_0000 ^ ((i as u64) << 40));
            c
        })
        .collect();
    let readers = (0..rng.range(0, 4))
        .map(|i| Reader::new(i, &mut rng))
        .collect();
    let mut pop3 = Pop3Config::new("mx.example.test");
    pop3.stls = true;
    pop3.allow_plaintext_on_loopback = true;
    pop3.chunk_size = [7, 1000, 65536][rng.range(0, 2)];
    // A quarter of the runs start with no Maildirs, so the store creates them under faults.
    let fresh = opts.fresh_maildirs || rng.range(0, 3) == 0;
    let fs = template(!fresh).fork(rng.next(), faults);
    // Sieve scripts, from their own generator; installed as ManageSieve would, before any
    // fault or crash (each call is durable when it returns).
    let scripts = Scripts(sieve::choose(opts.seed));
    fs.set_faults(false);
    let installed = sieve::install(&fs, &scripts.0);
    fs.set_faults(true);
    let mut w = World {
        ids: SessionIds::new(rng.next()),
        rng,
        // The simulation's one real instant; every later time is derived from it.
        epoch: Instant::now(),
        nanos,
        fs,
        store: None,
        inbound: Service::Smtp(Arc::new(config)),
        submission: Service::Smtp(Arc::new(sub)),
        lmtp: Service::Smtp(Arc::new(lmtp)),
        pop3: Service::Pop3(Arc::new(pop3)),
        conns: BTreeMap::new(),
        next_conn: 0,
        clients,
        readers,
        gone: Deletions::new(),
        holders: BTreeMap::new(),
        uidls: BTreeMap::new(),
        uidl_owner: BTreeMap::new(),
        planted_pop_ack: opts.planted_pop_ack,
        scripts,
        notices: 0,
        clean_commits: BTreeSet::new(),
        trace: Vec::new(),
        hash: 0xcbf2_9ce4_8422_2325,
        boots: 0,
        crashes: 0,
        faults: 0,
        mid_crash_one_in: [0, 300, 50][rng_pick],
        park_one_in,
        lose_parked: opts.planted_lost,
        stalls_on: true,
        steps: 0,
        parked: 0,
        stalls: 0,
        peak_buffered: 0,
    };
    w.log(format!(
        "seed {} faults {faults:?} crash 1/{crash_one_in} reset 1/{reset_one_in} park 1/{park_one_in} clients {} readers {}",
        opts.seed,
        w.clients.len(),
        w.readers.len()
    ));
    w.log(format!("sieve scripts {:?}", w.scripts.0));
    let result = installed
        .and_then(|()| w.boot())
        .and_then(|()| w.run(opts.max_steps, crash_one_in, reset_one_in))
        .and_then(|()| w.liveness(opts.max_steps * 5))
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
        unfinished: w.clients.iter().filter(|c| !c.done).count()
            + w.readers.iter().filter(|r| !r.done).count(),
        retrieved: w.readers.iter().map(|r| r.retrieved).sum(),
        pop_deleted: w.gone.values().filter(|g| **g == Gone::Acked).count(),
        sieve_filed: sieve_count(&w, true),
        sieve_dropped: sieve_count(&w, false),
        notices: w.notices,
        parked: w.parked,
        stalls: w.stalls,
        peak_buffered: w.peak_buffered,
        failure,
        trace: w.trace,
    }
}

/// Acknowledged copies the scripts file into a folder (`filed`) or store nowhere (not `filed`).
fn sieve_count(w: &World, filed: bool) -> usize {
    w.clients
        .iter()
        .flat_map(|c| &c.attempts)
        .filter(|a| a.acked)
        .flat_map(|a| a.delivered.iter().map(move |u| w.scripts.disposition(u, a)))
        .filter(|d| match d.location() {
            Some((dir, _)) => filed && !dir.is_empty(),
            None => !filed,
        })
        .count()
}

/// `alice` from `alice@example.test`.
fn local_part(address: &str) -> String {
    address.split('@').next().unwrap_or(address).to_string()
}
