//! The queue runner for the async daemon: the twin of `petrel_runtime_std::outbound`, on smol.
//!
//! Every few seconds (or when woken), takes the due part of the outbound queue from the store,
//! routes each destination domain with core's [`Router`], resolves with [`crate::dns`], connects,
//! and drives core's [`SmtpClient`] over the connection through the same [`Pump`] as every
//! session. Results are recorded by the store as the client reports them; retries, bounces and
//! expiry are the store's and core's decisions. Store calls block on the disk, so they run on the
//! `blocking` pool, as the server sessions' requests do.
//!
//! MTA-STS (RFC 8461) as in the blocking runner: after a successful MX lookup, the policy from
//! the cache ([`StsCache`]) or fetched over verified HTTPS; under `enforce`, only the MX hosts it
//! allows, over STARTTLS verified with [`OutboundConfig::sts_tls`], never in plaintext.
//!
//! Destinations are served as tasks on the daemon's executor ([`QueueRunner::with_executor`],
//! normally [`crate::Server::executor`]), at most [`OutboundConfig::max_parallel`] at once.

use crate::limited;
use async_io::{Async, Timer};
use event_listener::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use petrel_core::dns::{Answer, RecordType};
use petrel_core::mta_sts::{self, HttpParse, Mode, Plan, Policy};
use petrel_core::queue::{RetryPolicy, RouteStep, Router};
use petrel_core::smtp::client::{ClientConfig, SmtpClient, TlsPolicy};
use petrel_core::{Action, Pump, TlsInfo, dns};
use petrel_store::Store;
use petrel_store::outbound::{Batch, BatchOutcome};
use petrel_store::sts_cache::StsCache;
use rustls::pki_types::ServerName;
use smol::{Executor, Task};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How long one write to a remote server may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a read may wait when the SMTP client sets no deadline of its own.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a STARTTLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long fetching an MTA-STS policy may take, connection to last byte.
const STS_FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Most addresses of `mta-sts.DOMAIN` tried for one fetch.
const STS_FETCH_ADDRESSES: usize = 4;

/// Passes over the queue that may run at once (each serves up to `max_parallel` destinations).
pub const MAX_PASSES: usize = 4;

/// How the runner reaches other servers.
///
/// The same fields as `petrel_runtime_std::outbound::OutboundConfig`: DESIGN.md lets neither
/// runtime depend on the other, and the struct holds rustls types, so it cannot live in core or
/// the store either. The daemon builds one from the other field by field.
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
    /// MTA-STS (RFC 8461): the verifying TLS configuration for policy fetches and for MX hosts
    /// under an `enforce` policy; `None` turns MTA-STS off. Not used with a smarthost.
    pub sts_tls: Option<Arc<rustls::ClientConfig>>,
    /// The port MTA-STS policies are fetched from (443; another value only for tests).
    pub sts_port: u16,
}

/// What a [`RunnerHandle`] tells the runner.
#[derive(Debug, Default)]
struct Signals {
    woken: AtomicBool,
    stopping: AtomicBool,
    changed: Event,
}

/// Wakes or stops a running [`QueueRunner`]. Safe to use from any thread, inside or outside an
/// executor (the store's `on_queued` hook calls [`RunnerHandle::wake`] from the blocking pool).
#[derive(Debug, Clone, Default)]
pub struct RunnerHandle {
    inner: Arc<Signals>,
}

impl RunnerHandle {
    /// Makes the runner scan the queue now (new mail was queued).
    pub fn wake(&self) {
        self.inner.woken.store(true, Ordering::SeqCst);
        self.inner.changed.notify(usize::MAX);
    }

    /// Stops the runner after the attempts in progress; destinations not yet started in the
    /// current pass wait for the next start.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.changed.notify(usize::MAX);
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Resolves when woken, stopped or after `timeout`, and consumes the wake.
    async fn wait(&self, timeout: Duration) {
        let ready = || self.inner.woken.load(Ordering::SeqCst) || self.stopping();
        if !ready() {
            let listener = self.inner.changed.listen();
            if !ready() {
                listener
                    .or(async {
                        Timer::after(timeout).await;
                    })
                    .await;
            }
        }
        self.inner.woken.store(false, Ordering::SeqCst);
    }
}

/// What every delivery task shares.
#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    config: OutboundConfig,
    seed: u64,
    sts_cache: Arc<StsCache>,
}

/// The queue runner (see the module docs).
#[derive(Debug)]
pub struct QueueRunner {
    shared: Arc<Shared>,
    handle: RunnerHandle,
    /// Weak: the runner is usually a task on this very executor, and must not keep it alive.
    executor: Option<Weak<Executor<'static>>>,
}

impl QueueRunner {
    /// A runner over `store`; `seed` varies DNS ids and MX order. Deliveries run on smol's global
    /// executor unless [`QueueRunner::with_executor`] names another.
    pub fn new(store: Arc<Store>, config: OutboundConfig, seed: u64) -> Self {
        QueueRunner {
            shared: Arc::new(Shared {
                sts_cache: Arc::new(StsCache::new(&store)),
                store,
                config,
                seed,
            }),
            handle: RunnerHandle::default(),
            executor: None,
        }
    }

    /// Spawns the delivery tasks on `executor` (the daemon's, [`crate::Server::executor`]).
    /// Once that executor is dropped, deliveries fall back to smol's global executor.
    pub fn with_executor(mut self, executor: &Arc<Executor<'static>>) -> Self {
        self.executor = Some(Arc::downgrade(executor));
        self
    }

    /// A handle to wake or stop the runner from elsewhere.
    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Runs until stopped: one pass over the queue, then a wait for a wake, a stop or the
    /// interval, and again.
    pub async fn run(self) {
        let store = self.shared.store.clone();
        match blocking::unblock(move || store.queue_remove_orphans()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed unacknowledged queue leftovers"),
            Err(e) => tracing::warn!(error = %e, "cannot clean the queue"),
        }
        // Each pass runs as its own task, so a receiver that is slow to answer holds up only its
        // own messages: the next pass takes the mail queued since, while the store keeps one
        // message in one attempt at a time. At most MAX_PASSES at once; on stop, waited for.
        let this = Arc::new(self);
        let mut passes: Vec<Task<()>> = Vec::new();
        let mut round: u64 = 0;
        while !this.handle.stopping() {
            passes.retain(|p| !p.is_finished());
            if passes.len() < MAX_PASSES {
                round += 1;
                let runner = this.clone();
                passes.push(this.spawn(async move { runner.tick(round).await }));
            }
            this.handle.wait(this.shared.config.interval).await;
        }
        for p in passes {
            p.await;
        }
    }

    /// One pass over the due part of the queue: up to `max_parallel` destinations at once, then
    /// the store schedules, bounces or removes what was touched.
    pub async fn tick(&self, round: u64) {
        let store = self.shared.store.clone();
        let batches = match blocking::unblock(move || store.queue_due()).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the queue");
                return;
            }
        };
        if batches.is_empty() {
            return;
        }
        let workers = self.shared.config.max_parallel.clamp(1, batches.len());
        let work = Arc::new(Mutex::new(
            batches.into_iter().enumerate().collect::<Vec<_>>(),
        ));
        let tasks: Vec<Task<Vec<BatchOutcome>>> = (0..workers)
            .map(|_| {
                let (shared, work, handle) = (self.shared.clone(), work.clone(), self.handle());
                self.spawn(async move {
                    let mut outcomes = Vec::new();
                    while !handle.stopping() {
                        let next = work.lock().unwrap_or_else(PoisonError::into_inner).pop();
                        let Some((i, batch)) = next else { break };
                        let seed = shared.seed ^ round.rotate_left(20) ^ (i as u64);
                        outcomes.push(shared.deliver(batch, seed).await);
                    }
                    outcomes
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.extend(task.await);
        }
        let shared = self.shared.clone();
        let finished = blocking::unblock(move || {
            shared
                .store
                .queue_finish_batches(&outcomes, &shared.config.policy)
        })
        .await;
        if let Err(e) = finished {
            tracing::error!(error = %e, "cannot record the end of delivery attempts");
        }
    }

    fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match self.executor.as_ref().and_then(Weak::upgrade) {
            Some(ex) => ex.spawn(future),
            None => smol::spawn(future),
        }
    }
}

impl Shared {
    /// Runs `f` over `batch` and the store on the blocking pool (store calls wait on the disk),
    /// handing the batch back.
    async fn on_batch<T: Send + 'static>(
        &self,
        mut batch: Batch,
        f: impl FnOnce(&mut Batch, &Store) -> T + Send + 'static,
    ) -> (Batch, T) {
        let store = self.store.clone();
        blocking::unblock(move || {
            let t = f(&mut batch, &store);
            (batch, t)
        })
        .await
    }

    /// Tries one destination: route, connect, converse, host after host while mail is left.
    async fn deliver(&self, mut batch: Batch, seed: u64) -> BatchOutcome {
        let smarthost = self
            .config
            .smarthost
            .as_ref()
            .map(|(h, p)| (h.as_str(), *p));
        let mut router = Router::new(&batch.domain, smarthost, self.config.mx_port, seed);
        let mut remote_mta = None;
        // The MTA-STS policy in force (enforce or testing), known once the MX lookup succeeded.
        let mut sts: Option<Policy> = None;
        let (mut client, mut tls) = (self.config.client.clone(), self.config.tls.clone());
        loop {
            let step = router.next_step();
            if let RouteStep::Connect { host, .. } = &step
                && let Some(p) = &sts
                && p.mode == Mode::Testing
                && !p.allows(host)
            {
                tracing::warn!(domain = %batch.domain, %host, "MTA-STS (testing): the policy does not allow this MX host; delivering anyway");
            }
            match step {
                RouteStep::Lookup { name, rtype } => {
                    let answer = crate::dns::resolve_seeded(
                        &name,
                        rtype,
                        &self.config.resolvers,
                        &self.config.dns,
                        seed ^ name.len() as u64,
                    )
                    .await;
                    router.answer(&answer);
                    if rtype == RecordType::Mx
                        && matches!(answer, Answer::Records { .. } | Answer::NoData)
                    {
                        sts = self.sts_policy(&batch.domain, seed).await;
                        if let Some(p) = &sts
                            && let Some(verified) = &self.config.sts_tls
                            && p.mode == Mode::Enforce
                        {
                            let why = p.mismatch_text(&batch.domain);
                            let dropped = router.retain_hosts(|h| p.allows(h), &why);
                            if !dropped.is_empty() {
                                tracing::warn!(domain = %batch.domain, hosts = ?dropped, "MTA-STS: skipping MX hosts the enforced policy does not allow");
                            }
                            let mut required = (*self.config.client).clone();
                            required.tls = TlsPolicy::Required;
                            (client, tls) = (Arc::new(required), verified.clone());
                        }
                    }
                }
                RouteStep::Connect { host, addr } => match self.connect(addr).await {
                    Err(e) => {
                        tracing::info!(domain = %batch.domain, %host, %addr, error = %e, "cannot connect");
                        router.connect_failed(&format!("connect to {host}[{addr}]: {e}"));
                    }
                    Ok(tcp) => {
                        tracing::info!(domain = %batch.domain, %host, %addr, "connected");
                        remote_mta = Some(host.clone());
                        let (b, mut result) =
                            self.converse(tcp, &host, batch, client.clone(), &tls).await;
                        batch = b;
                        // Opportunistic TLS that fails is not worth a bounce (RFC 7435): the
                        // same host once more, in plaintext, as Postfix does. Never under
                        // required TLS (`relay.tls`, an enforced MTA-STS policy).
                        if matches!(result, Ok(true))
                            && client.tls == TlsPolicy::Opportunistic
                            && batch.wants_other_host()
                        {
                            tracing::info!(%host, %addr, "retrying without TLS");
                            let mut plain = (*client).clone();
                            plain.tls = TlsPolicy::None;
                            match self.connect(addr).await {
                                Ok(tcp) => {
                                    let (b, r) = self
                                        .converse(tcp, &host, batch, Arc::new(plain), &tls)
                                        .await;
                                    batch = b;
                                    result = r;
                                }
                                Err(e) => result = Err(e),
                            }
                        }
                        match result {
                            Ok(_) if !batch.wants_other_host() => break,
                            Ok(_) => router.connect_failed(&batch.last_problem()),
                            Err(e) => router.connect_failed(&format!("{host}[{addr}]: {e}")),
                        }
                    }
                },
                RouteStep::TempFail(why) => {
                    tracing::info!(domain = %batch.domain, reason = %why, "deferred");
                    (batch, ()) = self
                        .on_batch(batch, move |b, s| b.fail_remaining(s, false, &why))
                        .await;
                    break;
                }
                RouteStep::PermFail(why) => {
                    tracing::info!(domain = %batch.domain, reason = %why, "undeliverable");
                    (batch, ()) = self
                        .on_batch(batch, move |b, s| b.fail_remaining(s, true, &why))
                        .await;
                    break;
                }
            }
        }
        batch.into_outcome(remote_mta)
    }

    /// A TCP connection to `addr` within the connect timeout.
    async fn connect(&self, addr: SocketAddr) -> io::Result<Async<TcpStream>> {
        limited(
            self.config.connect_timeout,
            Async::<TcpStream>::connect(addr),
        )
        .await
    }

    /// Runs the SMTP client over one connection for what is left of `batch`; hands the batch
    /// back with true when a STARTTLS handshake failed.
    async fn converse(
        &self,
        tcp: Async<TcpStream>,
        host: &str,
        mut batch: Batch,
        client: Arc<ClientConfig>,
        tls_config: &Arc<rustls::ClientConfig>,
    ) -> (Batch, io::Result<bool>) {
        if let Err(e) = tcp.get_ref().set_nodelay(true) {
            return (batch, Err(e));
        }
        let mut tls_failed = false;
        let session = SmtpClient::new(client, batch.jobs(), Instant::now());
        let mut pump = Pump::new(Box::new(session));
        let mut conn = ClientConn::Plain(tcp);
        loop {
            match pump.next_action() {
                Action::Write => {
                    let n = pump.output().len();
                    match limited(WRITE_TIMEOUT, conn.write_all(pump.output())).await {
                        Ok(()) => pump.wrote(Instant::now(), n),
                        Err(_) => pump.write_failed(Instant::now()),
                    }
                }
                Action::Execute(req, effect) => {
                    let completion;
                    (batch, completion) =
                        self.on_batch(batch, move |b, s| b.execute(s, effect)).await;
                    pump.complete(Instant::now(), req, completion);
                }
                Action::StartTls => {
                    let plain = std::mem::replace(&mut conn, ClientConn::Closed);
                    match limited(HANDSHAKE_TIMEOUT, plain.into_tls(tls_config, host)).await {
                        Ok((c, info)) => {
                            conn = c;
                            pump.tls_established(Instant::now(), info);
                        }
                        Err(e) => {
                            tracing::info!(%host, error = %e, "TLS handshake failed");
                            tls_failed = true;
                            pump.eof(Instant::now());
                        }
                    }
                }
                Action::Read { deadline } => {
                    let deadline = deadline.unwrap_or_else(|| Instant::now() + READ_TIMEOUT);
                    let read = async { Some(conn.read(pump.read_buffer()).await) };
                    let timer = async {
                        Timer::at(deadline).await;
                        None
                    };
                    match read.or(timer).await {
                        Some(Ok(0)) => pump.eof(Instant::now()),
                        Some(Ok(n)) => pump.received(Instant::now(), n),
                        Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Some(Err(_)) => pump.eof(Instant::now()),
                        None => pump.timeout(Instant::now()),
                    }
                }
                Action::Wait { deadline } => {
                    let Some(d) = deadline else { break };
                    Timer::at(d).await;
                    pump.timeout(Instant::now());
                }
                Action::Close(_) => break,
            }
        }
        (batch, Ok(tls_failed))
    }
}

impl Shared {
    /// The MTA-STS policy of `domain` that changes delivery (enforce or testing), if any: the
    /// TXT lookup, then the cache or a fetch, as core's [`mta_sts::plan`] decides. The cache's
    /// disk work runs on the blocking pool.
    async fn sts_policy(&self, domain: &str, seed: u64) -> Option<Policy> {
        let tls = self.config.sts_tls.as_ref()?;
        if self.config.smarthost.is_some() || !mta_sts::is_policy_domain(domain) {
            return None;
        }
        let answer = crate::dns::resolve_seeded(
            &mta_sts::txt_name(domain),
            RecordType::Txt,
            &self.config.resolvers,
            &self.config.dns,
            seed.rotate_left(7),
        )
        .await;
        let discovery = mta_sts::discover(&answer);
        let (cache, name) = (self.sts_cache.clone(), domain.to_string());
        let cached = blocking::unblock(move || cache.get(&name)).await;
        let now = unix_now();
        let current = match mta_sts::plan(cached.as_ref(), &discovery, now) {
            Plan::NoPolicy => None,
            Plan::UseCached => cached,
            Plan::Fetch { id } => {
                let fetched = self
                    .fetch_policy(domain, tls, seed)
                    .await
                    .and_then(|text| mta_sts::parse_policy(&text));
                if let Err(e) = &fetched {
                    tracing::warn!(%domain, error = %e, "cannot fetch the MTA-STS policy");
                }
                let outcome = mta_sts::after_fetch(cached.as_ref(), &id, fetched, now);
                if outcome.save
                    && let Some(p) = &outcome.policy
                {
                    tracing::info!(%domain, %id, mode = p.policy.mode.as_str(), "MTA-STS policy fetched");
                    let (cache, name, entry) =
                        (self.sts_cache.clone(), domain.to_string(), p.clone());
                    if let Err(e) = blocking::unblock(move || cache.put(&name, &entry)).await {
                        tracing::warn!(%domain, error = %e, "cannot cache the MTA-STS policy");
                    }
                }
                outcome.policy
            }
        };
        current.map(|c| c.policy).filter(|p| p.mode != Mode::None)
    }

    /// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, over TLS verified with `tls`, from
    /// the first address that answers.
    async fn fetch_policy(
        &self,
        domain: &str,
        tls: &Arc<rustls::ClientConfig>,
        seed: u64,
    ) -> Result<String, String> {
        let host = mta_sts::policy_host(domain);
        let mut addrs = Vec::new();
        for (i, rtype) in [RecordType::A, RecordType::Aaaa].into_iter().enumerate() {
            let answer = crate::dns::resolve_seeded(
                &host,
                rtype,
                &self.config.resolvers,
                &self.config.dns,
                seed.rotate_left(11 + i as u32),
            )
            .await;
            addrs.extend(answer.socket_addrs(self.config.sts_port));
        }
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let mut last = String::new();
        for addr in addrs.into_iter().take(STS_FETCH_ADDRESSES) {
            let fetch = async {
                self.fetch_from(addr, &host, domain, tls)
                    .await
                    .map_err(io::Error::other)
            };
            match limited(STS_FETCH_TIMEOUT, fetch).await {
                Ok(text) => return Ok(text),
                Err(e) => last = format!("{host}[{addr}]: {e}"),
            }
        }
        Err(last)
    }

    async fn fetch_from(
        &self,
        addr: SocketAddr,
        host: &str,
        domain: &str,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<String, String> {
        let tcp = self.connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&mta_sts::http_request(domain))
            .await
            .map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let room = (mta_sts::MAX_RESPONSE - buf.len()).clamp(1, chunk.len());
            // A close without TLS close_notify is an error, not an end: it could cut the policy.
            let n = stream
                .read(&mut chunk[..room])
                .await
                .map_err(|e| e.to_string())?;
            buf.extend_from_slice(&chunk[..n]);
            match mta_sts::parse_http_response(&buf, n == 0) {
                HttpParse::Done(result) => return result,
                HttpParse::Incomplete if n == 0 => return Err("connection closed".into()),
                HttpParse::Incomplete => {}
            }
        }
    }
}

/// Seconds since the Unix epoch, for the MTA-STS cache's ages.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An outbound connection, plain or TLS (also used by the fetch runner, [`crate::fetch`]).
pub(crate) enum ClientConn {
    Plain(Async<TcpStream>),
    Tls(Box<TlsStream<Async<TcpStream>>>),
    /// After a failed handshake: reads see the end, writes fail.
    Closed,
}

impl ClientConn {
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(s) => s.read(buf).await,
            ClientConn::Tls(s) => s.read(buf).await,
            ClientConn::Closed => Ok(0),
        }
    }

    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.write_all(buf).await,
            ClientConn::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            ClientConn::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub(crate) async fn into_tls(
        self,
        config: &Arc<rustls::ClientConfig>,
        host: &str,
    ) -> io::Result<(ClientConn, TlsInfo)> {
        let ClientConn::Plain(tcp) = self else {
            return Err(io::Error::other("TLS already active"));
        };
        let name = ServerName::try_from(host.to_string()).map_err(io::Error::other)?;
        let stream = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?;
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
        Ok((ClientConn::Tls(Box::new(stream)), info))
    }
}
