//! The queue runner for the blocking runtime: every few seconds (or when woken), takes the due
//! part of the outbound queue from the store, routes each destination domain with core's
//! [`Router`], resolves with [`crate::dns`], connects, and drives core's [`SmtpClient`] over the
//! connection through the same [`Pump`] as every session. Results are recorded by the store as
//! the client reports them; retries, bounces and expiry are the store's and core's decisions.
//!
//! MTA-STS (RFC 8461, [`petrel_core::mta_sts`]): once the MX lookup of a destination succeeds,
//! the runner looks for its `_mta-sts` TXT record, fetches the policy over verified HTTPS when
//! its cache ([`StsCache`]) has no current one, and under an `enforce` policy keeps only the MX
//! hosts the policy allows and requires STARTTLS with a verified certificate
//! ([`OutboundConfig::sts_tls`]), with no plaintext retry: mail that cannot go that way waits.

use petrel_core::dns::{Answer, RecordType};
use petrel_core::mta_sts::{self, HttpParse, Mode, Plan, Policy};
use petrel_core::queue::{RetryPolicy, RouteStep, Router};
use petrel_core::smtp::client::{ClientConfig, SmtpClient, TlsPolicy};
use petrel_core::{Action, Pump, dns};
use petrel_store::Store;
use petrel_store::outbound::{Batch, BatchOutcome};
use petrel_store::sts_cache::StsCache;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How long fetching an MTA-STS policy may take, connection to last byte.
const STS_FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Most addresses of `mta-sts.DOMAIN` tried for one fetch.
const STS_FETCH_ADDRESSES: usize = 4;

/// Passes over the queue that may run at once (each serves up to `max_parallel` destinations).
pub const MAX_PASSES: usize = 4;

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
    /// MTA-STS (RFC 8461): the verifying TLS configuration for policy fetches and for MX hosts
    /// under an `enforce` policy; `None` turns MTA-STS off. Not used with a smarthost.
    pub sts_tls: Option<Arc<rustls::ClientConfig>>,
    /// The port MTA-STS policies are fetched from (443; another value only for tests).
    pub sts_port: u16,
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
    sts_cache: StsCache,
}

impl QueueRunner {
    /// A runner over `store`; `seed` varies DNS ids and MX order.
    pub fn new(store: Arc<Store>, config: OutboundConfig, seed: u64) -> Self {
        QueueRunner {
            sts_cache: StsCache::new(&store),
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

    /// Runs until stopped. Each pass over the queue runs on its own thread, so a receiver that
    /// is slow to answer holds up only its own messages: the next pass (at the next wake-up or
    /// interval) takes the mail queued since, while the store keeps one message in one attempt
    /// at a time. At most [`MAX_PASSES`] passes run at once; on stop, the runner waits for them.
    pub fn run(self) {
        match self.store.queue_remove_orphans() {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "removed unacknowledged queue leftovers"),
            Err(e) => tracing::warn!(error = %e, "cannot clean the queue"),
        }
        let this = Arc::new(self);
        let mut passes: Vec<std::thread::JoinHandle<()>> = Vec::new();
        let mut round: u64 = 0;
        while !this.handle.stopping.load(Ordering::SeqCst) {
            passes.retain(|p| !p.is_finished());
            if passes.len() < MAX_PASSES {
                round += 1;
                let runner = this.clone();
                let spawned = std::thread::Builder::new()
                    .name("queue-pass".into())
                    .spawn(move || runner.tick(round));
                match spawned {
                    Ok(p) => passes.push(p),
                    Err(e) => tracing::error!(error = %e, "cannot start a queue pass"),
                }
            }
            this.handle.wait(this.config.interval);
        }
        for p in passes {
            let _ = p.join();
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
        // The MTA-STS policy in force (enforce or testing), known once the MX lookup succeeded.
        let mut sts: Option<Policy> = None;
        let (mut client, mut tls) = (self.config.client.clone(), self.config.tls.clone());
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
                    if rtype == RecordType::Mx
                        && matches!(answer, Answer::Records { .. } | Answer::NoData)
                    {
                        sts = self.sts_policy(&batch.domain, seed);
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
                RouteStep::Connect { host, addr } => {
                    if let Some(p) = &sts
                        && p.mode == Mode::Testing
                        && !p.allows(&host)
                    {
                        tracing::warn!(domain = %batch.domain, %host, "MTA-STS (testing): the policy does not allow this MX host; delivering anyway");
                    }
                    match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                        Err(e) => {
                            tracing::info!(domain = %batch.domain, %host, %addr, error = %e, "cannot connect");
                            router.connect_failed(&format!("connect to {host}[{addr}]: {e}"));
                        }
                        Ok(tcp) => {
                            tracing::info!(domain = %batch.domain, %host, %addr, "connected");
                            remote_mta = Some(host.clone());
                            let mut result =
                                self.converse(tcp, &host, &mut batch, client.clone(), &tls);
                            // Opportunistic TLS that fails is not worth a bounce (RFC 7435):
                            // the same host once more, in plaintext, as Postfix does. Never
                            // under required TLS (`relay.tls`, an enforced MTA-STS policy).
                            if matches!(result, Ok(true))
                                && client.tls == TlsPolicy::Opportunistic
                                && batch.wants_other_host()
                            {
                                tracing::info!(%host, %addr, "retrying without TLS");
                                let mut plain = (*client).clone();
                                plain.tls = TlsPolicy::None;
                                result =
                                    TcpStream::connect_timeout(&addr, self.config.connect_timeout)
                                        .and_then(|tcp| {
                                            self.converse(
                                                tcp,
                                                &host,
                                                &mut batch,
                                                Arc::new(plain),
                                                &tls,
                                            )
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
        tls_config: &Arc<rustls::ClientConfig>,
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
                    .into_tls(tls_config, host)
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

impl QueueRunner {
    /// The MTA-STS policy of `domain` that changes delivery (enforce or testing), if any: the
    /// TXT lookup, then the cache or a fetch, as core's [`mta_sts::plan`] decides.
    fn sts_policy(&self, domain: &str, seed: u64) -> Option<Policy> {
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
        );
        let discovery = mta_sts::discover(&answer);
        let cached = self.sts_cache.get(domain);
        let now = unix_now();
        let current = match mta_sts::plan(cached.as_ref(), &discovery, now) {
            Plan::NoPolicy => None,
            Plan::UseCached => cached,
            Plan::Fetch { id } => {
                let fetched = self
                    .fetch_policy(domain, tls, seed)
                    .and_then(|text| mta_sts::parse_policy(&text));
                if let Err(e) = &fetched {
                    tracing::warn!(%domain, error = %e, "cannot fetch the MTA-STS policy");
                }
                let outcome = mta_sts::after_fetch(cached.as_ref(), &id, fetched, now);
                if outcome.save
                    && let Some(p) = &outcome.policy
                {
                    tracing::info!(%domain, %id, mode = p.policy.mode.as_str(), "MTA-STS policy fetched");
                    if let Err(e) = self.sts_cache.put(domain, p) {
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
    fn fetch_policy(
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
            );
            addrs.extend(answer.socket_addrs(self.config.sts_port));
        }
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let mut last = String::new();
        for addr in addrs.into_iter().take(STS_FETCH_ADDRESSES) {
            match self.fetch_from(addr, &host, domain, tls) {
                Ok(text) => return Ok(text),
                Err(e) => last = format!("{host}[{addr}]: {e}"),
            }
        }
        Err(last)
    }

    fn fetch_from(
        &self,
        addr: SocketAddr,
        host: &str,
        domain: &str,
        tls: &Arc<rustls::ClientConfig>,
    ) -> Result<String, String> {
        let deadline = Instant::now() + STS_FETCH_TIMEOUT;
        let tcp = TcpStream::connect_timeout(&addr, self.config.connect_timeout)
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(STS_FETCH_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        stream
            .write_all(&mta_sts::http_request(domain))
            .and_then(|()| stream.flush())
            .map_err(|e| e.to_string())?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            stream
                .sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            let room = (mta_sts::MAX_RESPONSE - buf.len()).clamp(1, chunk.len());
            // A close without TLS close_notify is an error, not an end: it could cut the policy.
            let n = stream.read(&mut chunk[..room]).map_err(|e| e.to_string())?;
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
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// After a failed handshake: reads see the end, writes fail.
    Closed,
}

impl ClientConn {
    pub(crate) fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.set_read_timeout(Some(t)),
            ClientConn::Tls(s) => s.sock.set_read_timeout(Some(t)),
            ClientConn::Closed => Ok(()),
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientConn::Plain(s) => s.read(buf),
            ClientConn::Tls(s) => s.read(buf),
            ClientConn::Closed => Ok(0),
        }
    }

    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.write_all(buf),
            ClientConn::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
            ClientConn::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    pub(crate) fn into_tls(
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
