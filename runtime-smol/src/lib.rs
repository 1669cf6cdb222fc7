//! The async runtime on smol: the daemon. One task per connection on a small multi-threaded
//! executor; store requests run on the `blocking` thread pool so file IO never stalls the
//! executor.
//!
//! All protocol decisions live in `petrel-core`; this crate only moves bytes between a socket and
//! a [`Pump`], runs the store's requests, and turns deadlines into timers.

pub mod dns;
pub mod fetch;
pub mod filter;
pub mod outbound;

use async_io::{Async, Timer};
use event_listener::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use petrel_core::{Action, CloseReason, Listener, PeerInfo, ServerLimits, SessionIds, TlsInfo};
use petrel_store::Store;
use rustls::ServerConfig;
use smol::{Executor, Task};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// State shared by the listener tasks, the connections and the [`ShutdownHandle`].
#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    /// DNS servers and settings for the sessions' lookups (mail authentication).
    resolver: std::sync::OnceLock<(Vec<std::net::SocketAddr>, petrel_core::dns::ResolverConfig)>,
    tls: Option<Arc<ServerConfig>>,
    limits: ServerLimits,
    ids: SessionIds,
    stopping: AtomicBool,
    stop: Event,
    active: AtomicUsize,
    idle: Event,
}

impl Shared {
    /// Resolves once shutdown has been requested.
    async fn stopped(&self) {
        loop {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let listener = self.stop.listen();
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

/// Asks a running [`Server`] to stop: listeners close, sessions finish what they are doing.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Requests the shutdown; returns at once. Safe to call from any thread.
    pub fn shutdown(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        self.0.stop.notify(usize::MAX);
    }
}

/// The async server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener<TcpListener>>,
    shared: Arc<Shared>,
    ex: Arc<Executor<'static>>,
    background: Vec<Task<()>>,
}

impl Server {
    /// Prepares a server over already-bound listeners. `seed` varies the session ids.
    pub fn new(
        listeners: Vec<Listener<TcpListener>>,
        store: Arc<Store>,
        tls: Option<Arc<ServerConfig>>,
        limits: ServerLimits,
        seed: u64,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            resolver: std::sync::OnceLock::new(),
            tls,
            limits,
            ids: SessionIds::new(seed),
            stopping: AtomicBool::new(false),
            stop: Event::new(),
            active: AtomicUsize::new(0),
            idle: Event::new(),
        });
        Server {
            listeners,
            shared,
            ex: Arc::new(Executor::new()),
            background: Vec::new(),
        }
    }

    /// The executor the connections run on, for the daemon's other work that should share its
    /// threads (the outbound queue runner's deliveries).
    pub fn executor(&self) -> Arc<Executor<'static>> {
        self.ex.clone()
    }

    /// Runs `task` on the server's executor beside the connections, from [`Server::run`] on.
    /// At shutdown the server waits for it as for the sessions, within the same grace period,
    /// then drops it: whoever requests the shutdown must also make `task` end (the outbound
    /// runner's [`outbound::RunnerHandle::stop`]).
    pub fn spawn_background(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.background.push(self.ex.spawn(task));
    }

    /// A handle to stop the server from another thread (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// The DNS servers sessions' lookups go to (without, every lookup fails temporarily).
    pub fn set_resolver(
        &self,
        servers: Vec<std::net::SocketAddr>,
        config: petrel_core::dns::ResolverConfig,
    ) {
        let _ = self.shared.resolver.set((servers, config));
    }

    /// Serves until shutdown is requested, then lets sessions finish (bounded by the grace
    /// period) and returns.
    pub fn run(self) -> io::Result<()> {
        let ex = self.ex.clone();
        let mut background = self.background;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shared = self.shared.clone();
        let mut workers = Vec::new();
        for i in 1..threads {
            let (ex, shared) = (ex.clone(), shared.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("smol-{i}"))
                    .spawn(move || future::block_on(ex.run(shared.stopped_and_idle())))?,
            );
        }
        let mut accept_tasks = Vec::new();
        for listener in self.listeners {
            let socket = Async::new(listener.socket.try_clone()?)?;
            let (ex2, shared) = (ex.clone(), self.shared.clone());
            let listener = Arc::new(Listener {
                socket,
                service: listener.service,
                implicit_tls: listener.implicit_tls,
            });
            accept_tasks.push(ex.spawn(accept_loop(ex2, listener, shared)));
        }
        let shared = self.shared.clone();
        future::block_on(ex.run(async move {
            shared.stopped().await;
            tracing::info!("shutting down: no new connections");
            for t in accept_tasks {
                t.cancel().await;
            }
            let grace = Timer::after(shared.limits.shutdown_grace);
            let drained = async {
                shared.wait_idle().await;
                for task in &mut background {
                    task.await;
                }
                true
            };
            if !drained
                .or(async {
                    grace.await;
                    false
                })
                .await
            {
                tracing::warn!(
                    connections = shared.active.load(Ordering::SeqCst),
                    background = background.iter().filter(|t| !t.is_finished()).count(),
                    "grace period over; closing unfinished sessions and background work"
                );
            }
        }));
        for w in workers {
            let _ = w.join();
        }
        Ok(())
    }
}

impl Shared {
    async fn wait_idle(&self) {
        loop {
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            let listener = self.idle.listen();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            listener.await;
        }
    }

    /// What worker threads run until: shutdown requested and every connection gone, or the
    /// grace period over.
    async fn stopped_and_idle(self: Arc<Self>) {
        self.stopped().await;
        self.wait_idle()
            .or(async {
                Timer::after(self.limits.shutdown_grace).await;
            })
            .await;
    }
}

async fn accept_loop(
    ex: Arc<Executor<'static>>,
    listener: Arc<Listener<Async<TcpListener>>>,
    shared: Arc<Shared>,
) {
    loop {
        let (stream, _) = match listener.socket.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let busy = shared.active.fetch_add(1, Ordering::SeqCst) >= shared.limits.max_connections;
        let (shared, listener) = (shared.clone(), listener.clone());
        ex.spawn(async move {
            let _count = ActiveGuard(&shared);
            let id = shared.ids.next_id();
            if let Err(e) = serve(stream, &listener, &shared, &id, busy).await {
                tracing::debug!(session = %id, error = %e, "connection error");
            }
        })
        .detach();
    }
}

/// Decrements the connection count however the connection task ends.
struct ActiveGuard<'a>(&'a Shared);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify(usize::MAX);
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(Async<TcpStream>),
    Tls(Box<TlsStream<Async<TcpStream>>>),
    /// Only while the handshake runs.
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(buf).await,
            Conn::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    async fn into_tls(self, config: &Arc<ServerConfig>) -> io::Result<(Conn, TlsInfo)> {
        let Conn::Plain(tcp) = self else {
            return Err(io::Error::other("TLS already active"));
        };
        let stream = TlsAcceptor::from(config.clone()).accept(tcp).await?;
        let (_, tls) = stream.get_ref();
        let info = TlsInfo::from_names(
            &format!(
                "{:?}",
                tls.protocol_version()
                    .ok_or_else(|| io::Error::other("no TLS version"))?
            ),
            &format!(
                "{:?}",
                tls.negotiated_cipher_suite()
                    .map(|s| s.suite())
                    .ok_or_else(|| io::Error::other("no cipher"))?
            ),
        );
        Ok((Conn::Tls(Box::new(stream)), info))
    }
}

/// Runs `fut` with a time limit.
async fn limited<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// What ended a wait for input.
enum Woke {
    Read(io::Result<usize>),
    Deadline,
    Shutdown,
    /// The watched folder changed; the subscription's new generation.
    FolderChanged(u64),
}

/// A connection's watch of the folder its IMAP session waits on in IDLE. Small (10,000
/// idling connections hold one each): the folder is remembered by a hash of its name.
#[derive(Default)]
struct FolderWatch {
    /// A hash of whose folder and which the watch is for (kept also when none could be set up,
    /// so a folder that cannot be watched is not tried again on every read).
    key: Option<u64>,
    sub: Option<petrel_store::watch::Subscription>,
    /// The subscription's generation the session has been told about.
    seen: u64,
}

impl FolderWatch {
    fn key(wanted: Option<(&petrel_core::UserId, &str)>) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        wanted.map(|(user, folder)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&user.0, folder).hash(&mut h);
            h.finish()
        })
    }

    /// Whether the watch no longer fits the folder the session waits on (or the watch ended).
    fn is_stale(&self, wanted: Option<(&petrel_core::UserId, &str)>) -> bool {
        self.sub.as_ref().is_some_and(|s| s.is_broken()) || Self::key(wanted) != self.key
    }
}

/// Drives one connection to its end.
async fn serve(
    tcp: Async<TcpStream>,
    listener: &Listener<Async<TcpListener>>,
    shared: &Shared,
    id: &str,
    busy: bool,
) -> io::Result<()> {
    let addr = tcp.get_ref().peer_addr()?;
    tcp.get_ref().set_nodelay(true)?;
    let limits = &shared.limits;
    let service = listener.service.name();
    let mut conn = Conn::Plain(tcp);
    let mut tls = None;
    if listener.implicit_tls {
        let config = shared
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS configured"))?;
        // Boxed, like every rare and large wait of a connection (TLS handshake 2.6 KB, DNS
        // 1.3 KB, scanner 0.7 KB): a connection's task is as large as its largest wait, and
        // 10,000 idle IMAP connections would each carry these bytes (3.5 KB instead of 1.1).
        let (c, info) = Box::pin(limited(limits.handshake_timeout, conn.into_tls(config))).await?;
        conn = c;
        tls = Some(info);
    }
    let peer = PeerInfo {
        ip: addr.ip().to_string(),
        loopback: addr.ip().is_loopback(),
        tls,
        session_id: id.to_string(),
    };
    tracing::info!(session = %id, %service, peer = %addr, "connection opened");
    let mut pump = listener.service.start(peer, busy, Instant::now());
    let mut scanners = filter::ScanConns::default();
    let mut told_shutdown = false;
    // An action the blocking pool already took from the pump (see the store arm below).
    let mut next: Option<Action> = None;
    // The folder an IMAP session in IDLE waits on, watched instead of polled.
    let mut watch = FolderWatch::default();
    let reason = loop {
        match next.take().unwrap_or_else(|| pump.next_action()) {
            Action::Write => {
                let n = pump.output().len();
                match limited(limits.write_timeout, conn.write_all(pump.output())).await {
                    Ok(()) => pump.wrote(Instant::now(), n),
                    Err(_) => pump.write_failed(Instant::now()),
                }
            }
            Action::Execute(req, petrel_core::Effect::Resolve { queries }) => {
                let completion = Box::pin(resolve_all(shared, &queries)).await;
                pump.complete(Instant::now(), req, completion);
            }
            Action::Execute(req, petrel_core::Effect::Scan { conn, op }) => {
                let completion = Box::pin(scanners.execute(id, conn, op)).await;
                pump.complete(Instant::now(), req, completion);
            }
            // Store requests go to the blocking pool, and the pump goes with them: the requests
            // that follow with no network IO in between (a SEARCH reading every message, a
            // FETCH of many bodies, STORE then EXPUNGE) run in the same trip. One trip per
            // request made the thread switches (futex waits and wake-ups) the largest cost of
            // the IMAP mixed workload (perf: about half of the server's CPU). What the store can
            // answer from memory (`Store::execute_inline`: a known recipient, the start of a
            // message, a chunk it buffers) is answered here without a trip, which leaves one
            // trip per SMTP message: the commit.
            Action::Execute(req, effect) => {
                let effect = match shared.store.execute_inline(effect) {
                    Ok(completion) => {
                        pump.complete(Instant::now(), req, completion);
                        continue;
                    }
                    Err(effect) => effect,
                };
                let store = shared.store.clone();
                let (p, action) = blocking::unblock(move || {
                    let (mut req, mut effect) = (req, effect);
                    loop {
                        let completion = store.execute(effect);
                        pump.complete(Instant::now(), req, completion);
                        match pump.next_action() {
                            Action::Execute(r, e) if in_pool(&e) => (req, effect) = (r, e),
                            other => return (pump, other),
                        }
                    }
                })
                .await;
                pump = p;
                next = Some(action);
            }
            Action::StartTls => {
                let config = shared
                    .tls
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no TLS configured"))?;
                let plain = std::mem::replace(&mut conn, Conn::Gone);
                match Box::pin(limited(limits.handshake_timeout, plain.into_tls(config))).await {
                    Ok((c, info)) => {
                        conn = c;
                        pump.tls_established(Instant::now(), info);
                    }
                    Err(e) => {
                        tracing::info!(session = %id, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                }
            }
            Action::Read { deadline } => {
                // IMAP IDLE: watch the session's folder (inotify, store::watch) and tell the
                // session when it changes; the session then polls only as a safety net, so an
                // idle session costs nothing. Setting up a watch looks up paths: the blocking
                // pool does it. A folder that cannot be watched is polled by the session.
                if watch.is_stale(pump.watched_folder()) {
                    watch.sub = None;
                    watch.key = FolderWatch::key(pump.watched_folder());
                    if let Some((user, folder)) = pump
                        .watched_folder()
                        .map(|(user, folder)| (user.clone(), folder.to_string()))
                    {
                        let store = shared.store.clone();
                        watch.sub =
                            blocking::unblock(move || store.watch_imap_folder(&user, &folder))
                                .await;
                        if let Some(sub) = &watch.sub {
                            watch.seen = sub.generation();
                            pump.folder_changed(Instant::now(), false);
                            continue;
                        }
                    }
                }
                let read = async {
                    // A plain connection is read without waiting; when nothing is there the pump
                    // drops its buffers before the wait, so idle connections hold none.
                    if let Conn::Plain(s) = &conn {
                        loop {
                            match io::Read::read(&mut s.get_ref(), pump.read_buffer()) {
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    pump.release_buffers();
                                    if let Err(e) = s.readable().await {
                                        return Woke::Read(Err(e));
                                    }
                                }
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                r => return Woke::Read(r),
                            }
                        }
                    }
                    Woke::Read(conn.read(pump.read_buffer()).await)
                };
                let timer = async {
                    match deadline {
                        Some(d) => {
                            Timer::at(d).await;
                            Woke::Deadline
                        }
                        None => future::pending().await,
                    }
                };
                let stop = async {
                    if told_shutdown {
                        future::pending::<()>().await;
                    }
                    shared.stopped().await;
                    Woke::Shutdown
                };
                let changed = async {
                    match &watch.sub {
                        Some(sub) => Woke::FolderChanged(sub.changed(watch.seen).await),
                        None => future::pending().await,
                    }
                };
                match read.or(timer).or(stop).or(changed).await {
                    Woke::Read(Ok(0)) | Woke::Read(Err(_)) => pump.eof(Instant::now()),
                    Woke::Read(Ok(n)) => pump.received(Instant::now(), n),
                    Woke::Deadline => pump.timeout(Instant::now()),
                    Woke::Shutdown => {
                        told_shutdown = true;
                        pump.shutdown(Instant::now());
                    }
                    Woke::FolderChanged(generation) => {
                        watch.seen = generation;
                        pump.folder_changed(Instant::now(), true);
                    }
                }
            }
            Action::Wait { deadline } => {
                // Requests are awaited inline, so only a delayed reply waits with input full.
                let Some(d) = deadline else {
                    break CloseReason::LocalError;
                };
                Timer::at(d).await;
                pump.timeout(Instant::now());
            }
            Action::Close(reason) => break reason,
        }
    };
    tracing::info!(session = %id, ?reason, "connection closed");
    Ok(())
}

/// Whether an effect is executed by the store on the blocking pool (DNS and scanner
/// connections are asynchronous and stay on the executor).
fn in_pool(effect: &petrel_core::Effect) -> bool {
    !matches!(
        effect,
        petrel_core::Effect::Resolve { .. } | petrel_core::Effect::Scan { .. }
    )
}

/// Answers a session's DNS questions, all at once.
async fn resolve_all(
    shared: &Shared,
    queries: &[(String, petrel_core::dns::RecordType)],
) -> petrel_core::Completion {
    let Some((servers, config)) = shared.resolver.get() else {
        return petrel_core::Completion::Dns(
            queries
                .iter()
                .map(|_| petrel_core::dns::Answer::TempFail("no resolver configured".into()))
                .collect(),
        );
    };
    let mut answers = Vec::with_capacity(queries.len());
    for (name, rtype) in queries {
        answers.push(dns::resolve(name, *rtype, servers, config).await);
    }
    petrel_core::Completion::Dns(answers)
}
