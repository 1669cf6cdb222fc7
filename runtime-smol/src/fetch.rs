//! Fetching remote accounts on the async daemon: the twin of `petrel_runtime_std::fetch`, on
//! smol. Each account is a task on the server's executor that runs core's [`Pop3Fetch`] or
//! [`ImapFetch`] session after session over the outbound runner's [`ClientConn`] (TLS by
//! futures-rustls); the store's and the journal's work runs on the blocking pool. IMAP accounts
//! whose server offers IDLE stay connected; the others are polled every `interval`; a failed
//! pass is retried after core's [`backoff`], and its error is in `petrel fetch list`.

use crate::limited;
use crate::outbound::ClientConn;
use async_io::{Async, Timer};
use futures_lite::FutureExt;
use petrel_core::fetch::{
    FetchAnswer, FetchConfig, FetchRequest, ImapFetch, Pop3Fetch, Protocol, backoff,
};
use petrel_core::{Action, Completion, Effect, Pump, Session, UserId};
use petrel_store::Store;
use petrel_store::fetch_accounts::{self, Account};
use smol::Executor;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How often a task waiting for the remote looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(250);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the TLS client configuration for an account: verified, or trusting exactly the
/// certificate with the given SHA-256 fingerprint (lowercase hex).
pub type TlsFactory =
    Arc<dyn Fn(Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> + Send + Sync>;

/// How accounts are fetched (the same fields as the blocking runtime's settings).
#[derive(Clone)]
pub struct FetchSettings {
    /// The sessions' settings (`idle` set for the daemon).
    pub session: Arc<FetchConfig>,
    /// TLS configurations per account.
    pub tls: TlsFactory,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Poll interval for accounts without IDLE.
    pub interval: Duration,
    /// The first retry after a failure; it doubles with each failure in a row.
    pub retry: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for FetchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSettings")
            .field("session", &self.session)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Stops a running [`FetchRunner`].
#[derive(Debug, Clone, Default)]
pub struct FetchHandle {
    stopping: Arc<AtomicBool>,
}

impl FetchHandle {
    /// Asks every account's task to finish its session and end.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// Keeps every user's remote accounts in sync on the server's executor.
#[derive(Debug)]
pub struct FetchRunner {
    store: Arc<Store>,
    settings: FetchSettings,
    handle: FetchHandle,
    ex: Arc<Executor<'static>>,
    rescan: Duration,
}

/// An account as the runner tells them apart: user, number, token.
type AccountKey = (String, u32, String);

/// True once either flag is set.
fn stopped(a: &AtomicBool, b: &AtomicBool) -> bool {
    a.load(Ordering::SeqCst) || b.load(Ordering::SeqCst)
}

/// Waits up to `d`, returning early once stopped.
async fn sleep(d: Duration, a: &AtomicBool, b: &AtomicBool) {
    let until = Instant::now() + d;
    while !stopped(a, b) && Instant::now() < until {
        Timer::after(STOP_POLL.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

impl FetchRunner {
    /// A runner over `store` whose account tasks run on `ex` (the server's executor).
    pub fn new(store: Arc<Store>, settings: FetchSettings, ex: Arc<Executor<'static>>) -> Self {
        FetchRunner {
            store,
            settings,
            handle: FetchHandle::default(),
            ex,
            rescan: Duration::from_secs(5),
        }
    }

    /// A handle to stop the runner.
    pub fn handle(&self) -> FetchHandle {
        self.handle.clone()
    }

    /// Runs until stopped, then waits for the accounts' tasks to end their sessions.
    pub async fn run(self) {
        let this = Arc::new(self);
        let never = Arc::new(AtomicBool::new(false));
        // One task per account (user, number, token: a re-added account is a new one), with
        // its stop flag.
        let mut running: BTreeMap<AccountKey, (smol::Task<()>, Arc<AtomicBool>)> = BTreeMap::new();
        while !this.handle.stopping.load(Ordering::SeqCst) {
            let store = this.store.clone();
            let accounts =
                blocking::unblock(move || fetch_accounts::all_accounts(store.data_dir()))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot list fetch accounts");
                        Vec::new()
                    });
            running.retain(|_, (t, _)| !t.is_finished());
            let current: BTreeSet<(String, u32, String)> = accounts
                .iter()
                .map(|(u, a)| (u.0.clone(), a.id, a.token.clone()))
                .collect();
            for (key, (_, stop)) in &running {
                if !current.contains(key) {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            for (user, account) in accounts {
                let key = (user.0.clone(), account.id, account.token.clone());
                if running.contains_key(&key) {
                    continue;
                }
                let stop = Arc::new(AtomicBool::new(false));
                let task = this
                    .ex
                    .spawn(this.clone().keep_in_sync(user, account, stop.clone()));
                running.insert(key, (task, stop));
            }
            sleep(this.rescan, &this.handle.stopping, &never).await;
        }
        for (_, stop) in running.values() {
            stop.store(true, Ordering::SeqCst);
        }
        for (_, (task, _)) in running {
            task.await;
        }
    }

    /// One account's life: session after session until it is deleted or the runner stops.
    async fn keep_in_sync(self: Arc<Self>, user: UserId, account: Account, stop: Arc<AtomicBool>) {
        let global = self.handle.stopping.clone();
        let mut failures: u32 = 0;
        while !stopped(&global, &stop) {
            let data_dir = self.store.data_dir().to_path_buf();
            let (u, id) = (user.clone(), account.id);
            let lock = blocking::unblock(move || fetch_accounts::try_lock(&data_dir, &u, id)).await;
            let mut lock = match lock {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    sleep(Duration::from_secs(2), &global, &stop).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(user = %user.0, account = account.id, error = %e, "cannot lock the fetch account");
                    sleep(self.settings.interval, &global, &stop).await;
                    continue;
                }
            };
            let result = self
                .fetch_once(&user, &account, &global, &stop, &mut lock)
                .await;
            drop(lock);
            let wait = match result {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(user = %user.0, account = account.id, fetched = n, "fetched");
                    }
                    failures = 0;
                    self.settings.interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(self.settings.retry, self.settings.max_backoff, failures);
                    tracing::warn!(user = %user.0, account = account.id, error = %e, retry_in = wait.as_secs(), "fetch failed");
                    wait
                }
            };
            sleep(wait, &global, &stop).await;
        }
    }

    /// One session; its outcome is recorded in the account's status.
    async fn fetch_once(
        &self,
        user: &UserId,
        account: &Account,
        global: &AtomicBool,
        stop: &AtomicBool,
        lock: &mut Option<std::fs::File>,
    ) -> Result<u64, String> {
        let result = self.session(user, account, global, stop, lock).await;
        let record = |e: String, count: bool| {
            let (data_dir, user, id) = (
                self.store.data_dir().to_path_buf(),
                user.clone(),
                account.id,
            );
            blocking::unblock(move || {
                let r = if count {
                    fetch_accounts::record_failure(&data_dir, &user, id, unix_now(), &e)
                } else {
                    fetch_accounts::replace_error(&data_dir, &user, id, unix_now(), &e)
                };
                if let Err(w) = r {
                    tracing::warn!(error = %w, "cannot record the fetch status");
                }
            })
        };
        match result {
            Ok((n, None)) => Ok(n),
            Ok((_, Some(e))) => Err(e),
            Err(Failure::Setup(e)) => {
                record(e.clone(), true).await;
                Err(e)
            }
            Err(Failure::Tls(e)) => {
                record(e.clone(), false).await;
                Err(e)
            }
        }
    }

    /// Takes the account's lock back after IDLE, waiting while `petrel fetch run` has it;
    /// `None` once stopped.
    async fn acquire(
        &self,
        user: &UserId,
        id: u32,
        global: &AtomicBool,
        stop: &AtomicBool,
    ) -> Option<std::fs::File> {
        loop {
            let (data_dir, u) = (self.store.data_dir().to_path_buf(), user.clone());
            match blocking::unblock(move || fetch_accounts::try_lock(&data_dir, &u, id)).await {
                Ok(Some(l)) => return Some(l),
                Ok(None) if !stopped(global, stop) => Timer::after(STOP_POLL).await,
                _ => return None,
            };
        }
    }

    async fn session(
        &self,
        user: &UserId,
        account: &Account,
        global: &AtomicBool,
        stop: &AtomicBool,
        lock: &mut Option<std::fs::File>,
    ) -> Result<(u64, Option<String>), Failure> {
        let url = &account.url;
        let target = format!("{}:{}", url.host, url.port);
        let (host, port) = (url.host.clone(), url.port);
        let addrs: Vec<_> = blocking::unblock(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
        })
        .await
        .map_err(|e| Failure::Setup(format!("cannot resolve {}: {e}", url.host)))?;
        let mut last = format!("{target} has no address");
        let mut tcp = None;
        for addr in addrs {
            match limited(
                self.settings.connect_timeout,
                Async::<TcpStream>::connect(addr),
            )
            .await
            {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = format!("cannot connect to {target}: {e}"),
            }
        }
        let tcp = tcp.ok_or(Failure::Setup(last))?;
        let _ = tcp.get_ref().set_nodelay(true);
        let tls = (self.settings.tls)(account.pin_sha256.as_deref()).map_err(Failure::Setup)?;
        let mut conn = ClientConn::Plain(tcp);
        if url.implicit_tls {
            conn = match limited(HANDSHAKE_TIMEOUT, conn.into_tls(&tls, &url.host)).await {
                Ok((c, _)) => c,
                Err(e) => return Err(Failure::Setup(format!("TLS with {target} failed: {e}"))),
            };
        }
        let fetch_account = Arc::new(account.session_account(user));
        let config = self.settings.session.clone();
        let now = Instant::now();
        let session: Box<dyn Session + Send> = match url.protocol {
            Protocol::Pop3 => Box::new(Pop3Fetch::new(fetch_account, config.clone(), now)),
            Protocol::Imap => Box::new(ImapFetch::new(fetch_account, config.clone(), now)),
        };
        let mut pump = Pump::new(session);
        let mut finished: Option<(u64, Option<String>)> = None;
        let mut tls_error = None;
        let mut told_stop = false;
        let mut scanners = crate::filter::ScanConns::default();
        let session_name = format!("fetch-{}-{}", user.0, account.id);
        let write_timeout = config.command_timeout;
        loop {
            match pump.next_action() {
                Action::Write => {
                    let n = pump.output().len();
                    match limited(write_timeout, conn.write_all(pump.output())).await {
                        Ok(()) => pump.wrote(Instant::now(), n),
                        Err(_) => pump.write_failed(Instant::now()),
                    }
                }
                Action::Execute(req, Effect::Scan { conn: c, op }) => {
                    let completion = scanners.execute(&session_name, c, op).await;
                    pump.complete(Instant::now(), req, completion);
                }
                Action::Execute(
                    req,
                    Effect::Fetch {
                        request: FetchRequest::Release,
                        ..
                    },
                ) => {
                    *lock = None;
                    pump.complete(Instant::now(), req, Completion::Fetch(FetchAnswer::Done));
                }
                Action::Execute(
                    req,
                    Effect::Fetch {
                        request: FetchRequest::Acquire,
                        ..
                    },
                ) => {
                    let answer = match self.acquire(user, account.id, global, stop).await {
                        Some(l) => {
                            *lock = Some(l);
                            Completion::Fetch(FetchAnswer::Done)
                        }
                        None => Completion::Failed(petrel_core::StoreError {
                            class: petrel_core::ErrorClass::Temporary,
                            message: "stopping".into(),
                        }),
                    };
                    pump.complete(Instant::now(), req, answer);
                }
                Action::Execute(req, effect) => {
                    if let Effect::Fetch {
                        request: FetchRequest::Finished { fetched, error, .. },
                        ..
                    } = &effect
                    {
                        finished = Some((*fetched, error.clone()));
                    }
                    let store = self.store.clone();
                    let completion: Completion = blocking::unblock(move || match effect {
                        Effect::Fetch {
                            user,
                            account,
                            request,
                        } => fetch_accounts::execute(
                            store.data_dir(),
                            &user,
                            account,
                            request,
                            unix_now(),
                        ),
                        other => store.execute(other),
                    })
                    .await;
                    pump.complete(Instant::now(), req, completion);
                }
                Action::StartTls => {
                    let plain = std::mem::replace(&mut conn, ClientConn::Closed);
                    match limited(HANDSHAKE_TIMEOUT, plain.into_tls(&tls, &url.host)).await {
                        Ok((c, info)) => {
                            conn = c;
                            pump.tls_established(Instant::now(), info);
                        }
                        Err(e) => {
                            tracing::info!(host = %url.host, error = %e, "TLS handshake failed");
                            tls_error = Some(format!("TLS with {target} failed: {e}"));
                            pump.eof(Instant::now());
                        }
                    }
                }
                Action::Read { deadline } => {
                    let now = Instant::now();
                    if stopped(global, stop) && !told_stop {
                        told_stop = true;
                        pump.shutdown(now);
                        continue;
                    }
                    if let Some(d) = deadline
                        && d <= now
                    {
                        pump.timeout(now);
                        continue;
                    }
                    let wake = deadline.map_or(now + STOP_POLL, |d| d.min(now + STOP_POLL));
                    let read = async { Some(conn.read(pump.read_buffer()).await) };
                    let timer = async {
                        Timer::at(wake).await;
                        None
                    };
                    match read.or(timer).await {
                        Some(Ok(0)) => pump.eof(Instant::now()),
                        Some(Ok(n)) => pump.received(Instant::now(), n),
                        Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Some(Err(_)) => pump.eof(Instant::now()),
                        None => {}
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
        if let Some(e) = tls_error {
            return Err(Failure::Tls(e));
        }
        Ok(finished.unwrap_or((0, Some("the session ended without a result".into()))))
    }
}

/// A failure outside the session: before it started (counted), or a STARTTLS handshake (the
/// session already counted it as a closed connection; only the text is replaced).
enum Failure {
    Setup(String),
    Tls(String),
}
