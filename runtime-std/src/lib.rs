//! The blocking runtime: one thread per listener and per connection, blocking sockets, blocking
//! rustls. For tiny hosts, where a handful of threads cost less than an executor.
//!
//! All protocol decisions live in `petrel-core`; this crate only moves bytes between a socket and
//! a [`Pump`], runs the store's requests inline, and turns deadlines into read timeouts.

pub mod dns;
pub mod fetch;
pub mod filter;
pub mod outbound;

use petrel_core::{Action, CloseReason, Listener, PeerInfo, ServerLimits, SessionIds, TlsInfo};
use petrel_store::Store;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest a blocked read waits before checking for a shutdown request.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// State shared by the listener threads, the connections and the [`ShutdownHandle`].
#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    /// DNS servers and settings for the sessions' lookups (mail authentication).
    resolver: std::sync::OnceLock<(Vec<SocketAddr>, petrel_core::dns::ResolverConfig)>,
    tls: Option<Arc<ServerConfig>>,
    limits: ServerLimits,
    ids: SessionIds,
    stopping: AtomicBool,
    active: AtomicUsize,
    wake: Mutex<()>,
    changed: Condvar,
}

/// Asks a running [`Server`] to stop: listeners close, sessions finish what they are doing.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Requests the shutdown; returns at once.
    pub fn shutdown(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
        let _guard = self.0.wake.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.changed.notify_all();
    }
}

/// The blocking server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Listener<TcpListener>>,
    shared: Arc<Shared>,
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
            active: AtomicUsize::new(0),
            wake: Mutex::new(()),
            changed: Condvar::new(),
        });
        Server { listeners, shared }
    }

    /// A handle to stop the server from another thread (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// The DNS servers sessions' lookups go to (without, every lookup fails temporarily).
    pub fn set_resolver(&self, servers: Vec<SocketAddr>, config: petrel_core::dns::ResolverConfig) {
        let _ = self.shared.resolver.set((servers, config));
    }

    /// Serves until shutdown is requested, then lets sessions finish (bounded by the grace
    /// period) and returns.
    pub fn run(self) -> io::Result<()> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut threads = Vec::new();
        for listener in self.listeners {
            addrs.push(listener.socket.local_addr()?);
            let shared = self.shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("accept-{}", listener.service.name()))
                    .spawn(move || accept_loop(listener, shared))?,
            );
        }
        let shared = &self.shared;
        let mut guard = shared.wake.lock().unwrap_or_else(PoisonError::into_inner);
        while !shared.stopping.load(Ordering::SeqCst) {
            guard = shared
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        tracing::info!("shutting down: no new connections");
        // Wake each accept() so its thread sees the flag and ends.
        for addr in addrs {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for t in threads {
            let _ = t.join();
        }
        let deadline = Instant::now() + shared.limits.shutdown_grace;
        let mut guard = shared.wake.lock().unwrap_or_else(PoisonError::into_inner);
        while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(SHUTDOWN_POLL);
            guard = shared
                .changed
                .wait_timeout(guard, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let left = shared.active.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(
                connections = left,
                "grace period over; closing unfinished sessions"
            );
        }
        Ok(())
    }
}

fn accept_loop(listener: Listener<TcpListener>, shared: Arc<Shared>) {
    let listener = Arc::new(listener);
    for stream in listener.socket.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let busy = shared.active.fetch_add(1, Ordering::SeqCst) >= shared.limits.max_connections;
        let (shared2, listener2) = (shared.clone(), listener.clone());
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                let _count = ActiveGuard(&shared2);
                let id = shared2.ids.next_id();
                if let Err(e) = serve(stream, &listener2, &shared2, &id, busy) {
                    tracing::debug!(session = %id, error = %e, "connection error");
                }
            });
        if let Err(e) = spawned {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot start a connection thread");
        }
    }
}

/// Decrements the connection count however the connection thread ends (even by panic).
struct ActiveGuard<'a>(&'a Shared);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        let _guard = self.0.wake.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.changed.notify_all();
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(buf),
            Conn::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
        }
    }

    /// Performs the server handshake over a plain connection.
    fn into_tls(
        self,
        config: &Arc<ServerConfig>,
        timeout: Duration,
    ) -> io::Result<(Conn, TlsInfo)> {
        let Conn::Plain(mut tcp) = self else {
            return Err(io::Error::other("TLS already active"));
        };
        tcp.set_read_timeout(Some(timeout))?;
        let mut tls = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)?;
        }
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
        Ok((Conn::Tls(Box::new(StreamOwned::new(tls, tcp))), info))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Drives one connection to its end.
fn serve(
    tcp: TcpStream,
    listener: &Listener<TcpListener>,
    shared: &Shared,
    id: &str,
    busy: bool,
) -> io::Result<()> {
    let addr = tcp.peer_addr()?;
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(shared.limits.write_timeout))?;
    let service = listener.service.name();
    let mut conn = Conn::Plain(tcp);
    let mut tls = None;
    if listener.implicit_tls {
        let config = shared
            .tls
            .as_ref()
            .ok_or_else(|| io::Error::other("no TLS configured"))?;
        let (c, info) = conn.into_tls(config, shared.limits.handshake_timeout)?;
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
    let reason = loop {
        match pump.next_action() {
            Action::Write => {
                let n = pump.output().len();
                match conn.write_all(pump.output()) {
                    Ok(()) => pump.wrote(Instant::now(), n),
                    Err(_) => pump.write_failed(Instant::now()),
                }
            }
            Action::Execute(req, petrel_core::Effect::Resolve { queries }) => {
                let answers = queries
                    .iter()
                    .map(|(name, rtype)| match shared.resolver.get() {
                        Some((servers, config)) => dns::resolve(name, *rtype, servers, config),
                        None => petrel_core::dns::Answer::TempFail("no resolver configured".into()),
                    })
                    .collect();
                pump.complete(Instant::now(), req, petrel_core::Completion::Dns(answers));
            }
            Action::Execute(req, petrel_core::Effect::Scan { conn, op }) => {
                let completion = scanners.execute(id, conn, op);
                pump.complete(Instant::now(), req, completion);
            }
            Action::Execute(req, effect) => {
                let completion = shared.store.execute(effect);
                pump.complete(Instant::now(), req, completion);
            }
            Action::StartTls => {
                let config = shared
                    .tls
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no TLS configured"))?;
                match conn.into_tls(config, shared.limits.handshake_timeout) {
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
                let now = Instant::now();
                if shared.stopping.load(Ordering::SeqCst) && !told_shutdown {
                    told_shutdown = true;
                    pump.shutdown(now);
                    continue;
                }
                if let Some(d) = deadline
                    && d <= now
                {
                    pump.timeout(now);
                    continue;
                }
                let wait = deadline.map_or(SHUTDOWN_POLL, |d| (d - now).min(SHUTDOWN_POLL));
                conn.tcp()
                    .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                match conn.read(pump.read_buffer()) {
                    Ok(0) => pump.eof(Instant::now()),
                    Ok(n) => pump.received(Instant::now(), n),
                    Err(e) if is_timeout(&e) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => pump.eof(Instant::now()),
                }
            }
            Action::Wait { deadline } => {
                // Only a delayed reply makes a blocking session wait with its input full.
                let Some(d) = deadline else {
                    break CloseReason::LocalError;
                };
                let now = Instant::now();
                std::thread::sleep(d.saturating_duration_since(now).min(SHUTDOWN_POLL));
                if Instant::now() >= d {
                    pump.timeout(Instant::now());
                }
            }
            Action::Close(reason) => break reason,
        }
    };
    tracing::info!(session = %id, ?reason, "connection closed");
    Ok(())
}
