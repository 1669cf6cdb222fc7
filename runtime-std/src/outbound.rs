//! The queue runner for the blocking runtime: every few seconds (or when woken), takes the due
//! part of the outbound queue from the store, routes each destination domain with core's
//! [`Router`], resolves with [`crate::dns`], connects, and drives core's [`SmtpClient`] over the
//! connection through the same [`Pump`] as every session. Results are recorded by the store as
//! the client reports them; retries, bounces and expiry are the store's and core's decisions.

use petrel_core::queue::{RetryPolicy, RouteStep, Router};
use petrel_core::smtp::client::{ClientConfig, SmtpClient, TlsPolicy};
use petrel_core::{Action, Pump, dns};
use petrel_store::Store;
use petrel_store::outbound::{Batch, BatchOutcome};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How the runner reaches other servers.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// The SMTP client's settings (HELO name, TLS policy, AUTH for a smarthost).
    pub client: Arc<ClientConfig>,
    /// TLS client configuration for STARTTLS.
    pub tls: Arc<rustls::ClientConfig>,
    /// Send everything to this host and port instead of the MX hosts.
    pub smarthost: Option<(String, u16)>,
    /// The port MX hosts are reached on (25).
    pub mx_port: u16,
    /// DNS servers.
    pub resolvers: Vec<SocketAddr>,
    /// DNS timeouts and limits.
    pub dns: dns::ResolverConfig,
    /// Retry schedule, warnings, expiry.
    pub policy: RetryPolicy,
    /// How often the queue is scanned when nothing wakes the runner.
    pub interval: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Destinations served at once.
    pub max_parallel: usize,
}

/// Wakes or stops a running [`QueueRunner`].
#[derive(Debug, Clone, Default)]
pub struct RunnerHandle {
    inner: Arc<(Mutex<(bool, bool)>, Condvar)>,
    stopping: Arc<AtomicBool>,
}

impl RunnerHandle {
    /// Makes the runner scan the queue now (new mail was queued).
    pub fn wake(&self) {
        let (lock, cv) = &*self.inner;
        lock.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
        cv.notify_all();
    }

    /// Stops the runner after the attempts in progress.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let (lock, cv) = &*self.inner;
        lock.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let (lock, cv) = &*self.inner;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |(woken, stop)| !*woken && !*stop)
            .unwrap_or_else(PoisonError::into_inner);
        guard.0 = false;
    }
}

/// The queue runner (see the module docs).
#[derive(Debug)]
pub struct QueueRunner {
    store: Arc<Store>,
    config: OutboundConfig,
    handle: RunnerHandle,
    seed: u64,
}

impl QueueRunner {
    /// A runner over `store`; `seed` varies DNS ids and MX order.
    pub fn new(store: Arc<Store>, config: OutboundConfig, seed: u64) -> Self {
        QueueRunner {
            store,
            config,
            handle: RunnerHandle::default(),
            seed,
        }
    }

    /// A handle to wake or stop the runner from elsewhere.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Runs until stopped.
    pub fn run(self) {
        match self.store.queue_remove_orphans() {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed unacknowledged queue leftovers"),
            Err(e) => tracing::warn!(error = %e, "cannot clean the queue"),
        }
        let mut round: u64 = 0;
        while !self.handle.stopping.load(Ordering::SeqCst) {
            round += 1;
            self.tick(round);
            self.handle.wait(self.config.interval);
        }
    }

    /// One pass over the due part of the queue.
    pub fn tick(&self, round: u64) {
        let batches = match self.store.queue_due() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the queue");
                return;
            }
        };
        if batches.is_empty() {
            return;
        }
        let work = Mutex::new(batches.into_iter().enumerate().collect::<Vec<_>>());
        let outcomes = Mutex::new(Vec::new());
        let workers = self.config.max_parallel.max(1);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let next = work.lock().unwrap_or_else(PoisonError::into_inner).pop();
                        let Some((i, batch)) = next else { break };
                        let seed = self.seed ^ round.rotate_left(20) ^ (i as u64);
                        let outcome = self.deliver(batch, seed);
                        outcomes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(outcome);
                    }
                });
            }
        });
        let outcomes = outcomes
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = self
            .store
            .queue_finish_batches(&outcomes, &self.config.policy)
        {
            tracing::error!(error = %e, "cannot record the end of delivery attempts");
        }
    }

    /// Tries one destination: route, connect, converse, host after host while mail is left.
    fn deliver(&self, mut batch: Batch, seed: u64) -> BatchOutcome {
        let smarthost = self
            .config
            .smarthost
            .as_ref()
            .map(|(h, p)| (h.as_str(), *p));
        let mut router = Router::new(&batch.domain, smarthost, self.config.mx_port, seed);
        let mut remote_mta = None;
        loop {
            match router.next_step() {
                RouteStep::Lookup { name, rtype } => {
                    let answer = crate::dns::resolve_seeded(
                        &name,
                        rtype,
                        &self.config.resolvers,
                        &self.config.dns,
                        seed ^ name.len() as u64,
                    );
                    router.answer(&answer);
                }
                RouteStep::Connect { host, addr } => {
                    match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                        Err(e) => {
                            tracing::info!(domain = %batch.domain, %host, %addr, error = %e, "cannot connect");
                            router.connect_failed(&format!("connect to {host}[{addr}]: {e}"));
                        }
                        Ok(tcp) => {
                            tracing::info!(domain = %batch.domain, %host, %addr, "connected");
                            remote_mta = Some(host.clone());
                            let client = self.config.client.clone();
                            let mut result = self.converse(tcp, &host, &mut batch, client);
                            // Opportunistic TLS that fails is not worth a bounce (RFC 7435):
                            // the same host once more, in plaintext, as Postfix does.
                            if matches!(result, Ok(true))
                                && self.config.client.tls == TlsPolicy::Opportunistic
                                && batch.wants_other_host()
                            {
                                tracing::info!(%host, %addr, "retrying without TLS");
                                let mut plain = (*self.config.client).clone();
                                plain.tls = TlsPolicy::None;
                                result =
                                    TcpStream::connect_timeout(&addr, self.config.connect_timeout)
                                        .and_then(|tcp| {
                                            self.converse(tcp, &host, &mut batch, Arc::new(plain))
                                        });
                            }
                            match result {
                                Ok(_) if !batch.wants_other_host() => break,
                                Ok(_) => router.connect_failed(&batch.last_problem()),
                                Err(e) => router.connect_failed(&format!("{host}[{addr}]: {e}")),
                            }
                        }
                    }
                }
                RouteStep::TempFail(why) => {
                    tracing::info!(domain = %batch.domain, reason = %why, "deferred");
                    batch.fail_remaining(&self.store, false, &why);
                    break;
                }
                RouteStep::PermFail(why) => {
                    tracing::info!(domain = %batch.domain, reason = %why, "undeliverable");
                    batch.fail_remaining(&self.store, true, &why);
                    break;
                }
            }
        }
        batch.into_outcome(remote_mta)
    }

    /// Runs the SMTP client over one connection for what is left of `batch`; true when a
    /// STARTTLS handshake failed.
    fn converse(
        &self,
        tcp: TcpStream,
        host: &str,
        batch: &mut Batch,
        client: Arc<ClientConfig>,
    ) -> io::Result<bool> {
        tcp.set_nodelay(true)?;
        tcp.set_write_timeout(Some(Duration::from_secs(300)))?;
        let mut tls_failed = false;
        let session = SmtpClient::new(client, batch.jobs(), Instant::now());
        let mut pump = Pump::new(Box::new(session));
        let mut conn = ClientConn::Plain(tcp);
        loop {
            match pump.next_action() {
                Action::Write => {
                    let n = pump.output().len();
                    match conn.write_all(pump.output()) {
                        Ok(()) => pump.wrote(Instant::now(), n),
                        Err(_) => pump.write_failed(Instant::now()),
                    }
                }
                Action::Execute(req, effect) => {
                    let completion = batch.execute(&self.store, effect);
                    pump.complete(Instant::now(), req, completion);
                }
                Action::StartTls => match std::mem::replace(&mut conn, ClientConn::Closed)
                    .into_tls(&self.config.tls, host)
                {
                    Ok((c, info)) => {
                        conn = c;
                        pump.tls_established(Instant::now(), info);
                    }
                    Err(e) => {
                        tracing::info!(%host, error = %e, "TLS handshake failed");
                        tls_failed = true;
                        pump.eof(Instant::now());
                    }
                },
                Action::Read { deadline } => {
                    let now = Instant::now();
                    if let Some(d) = deadline
                        && d <= now
                    {
                        pump.timeout(now);
                        continue;
                    }
                    let wait = deadline.map_or(Duration::from_secs(300), |d| d - now);
                    conn.set_read_timeout(wait.max(Duration::from_millis(1)))?;
                    match conn.read(pump.read_buffer()) {
                        Ok(0) => pump.eof(Instant::now()),
                        Ok(n) => pump.received(Instant::now(), n),
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            pump.timeout(Instant::now())
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => pump.eof(Instant::now()),
                    }
                }
                Action::Wait { deadline } => {
                    let Some(d) = deadline else { break };
                    std::thread::sleep(d.saturating_duration_since(Instant::now()));
                    pump.timeout(Instant::now());
                }
                Action::Close(_) => break,
            }
        }
        Ok(tls_failed)
    }
}

/// An outbound connection, plain or TLS.
enum ClientConn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// After a failed handshake: reads see the end, writes fail.
    Closed,
}

impl ClientConn {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.set_read_timeout(Some(t)),
            ClientConn::Tls(s) => s.sock.set_read_timeout(Some(t)),
            ClientConn::Closed => Ok(()),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(s) => s.read(buf),
            ClientConn::Tls(s) => s.read(buf),
            ClientConn::Closed => Ok(0),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.write_all(buf),
            ClientConn::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
            ClientConn::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn into_tls(
        self,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> io::Result<(ClientConn, petrel_core::TlsInfo)> {
        let ClientConn::Plain(mut tcp) = self else {
            return Err(io::Error::other("TLS already active"));
        };
        let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut tls = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp)?;
        }
        let info = petrel_core::TlsInfo::from_names(
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
        Ok((ClientConn::Tls(Box::new(StreamOwned::new(tls, tcp))), info))
    }
}
