//! Fetching remote accounts on the blocking runtime: [`fetch_account`] runs one session of core's
//! [`Pop3Fetch`] or [`ImapFetch`] over a socket (TLS through the outbound runner's
//! [`crate::outbound::ClientConn`]), executing its requests against the store; [`FetchRunner`]
//! keeps every account of every user in sync while the server runs, one thread per account:
//! IMAP accounts whose server offers IDLE stay connected and fetch as mail arrives, the others
//! are polled at the configured interval, and an account whose pass fails is retried with
//! exponential backoff (the error is in `petrel fetch list` meanwhile).

use crate::outbound::ClientConn;
use petrel_core::fetch::{FetchConfig, FetchRequest, ImapFetch, Pop3Fetch, Protocol};
use petrel_core::{Action, Completion, Effect, Pump, Session, UserId};
use petrel_store::Store;
use petrel_store::fetch_accounts::{self, Account};
use std::collections::BTreeMap;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Longest a blocked read waits before checking for a stop request.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Builds the TLS client configuration for an account: verified against the system's roots,
/// or trusting exactly the certificate with the given SHA-256 fingerprint (lowercase hex).
pub type TlsFactory =
    Arc<dyn Fn(Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> + Send + Sync>;

/// How accounts are fetched.
#[derive(Clone)]
pub struct FetchSettings {
    /// The sessions' settings (`idle` set for the daemon, unset for `petrel fetch run`).
    pub session: Arc<FetchConfig>,
    /// TLS configurations per account.
    pub tls: TlsFactory,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Poll interval for accounts without IDLE (and after an IDLE session ends).
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

/// Runs one session for the account (the caller holds its lock): connects, fetches, and returns
/// how many messages were delivered, or the error in one line. Every outcome is recorded in the
/// account's status. `progress(done, total)` is called as messages arrive. `stop` ends the
/// session politely (between messages) when set.
pub fn fetch_account(
    store: &Store,
    user: &UserId,
    account: &Account,
    settings: &FetchSettings,
    progress: &mut dyn FnMut(u64, u64),
    stop: &AtomicBool,
    lock: &mut Option<std::fs::File>,
) -> Result<u64, String> {
    let data_dir = store.data_dir().to_path_buf();
    let result = run_session(store, user, account, settings, progress, stop, lock);
    if let Err(Setup(e)) = &result {
        // The session never started, so it could not record this itself.
        if let Err(w) = fetch_accounts::record_failure(&data_dir, user, account.id, unix_now(), e) {
            tracing::warn!(user = %user.0, account = account.id, error = %w, "cannot record the fetch status");
        }
    }
    match result {
        Ok((fetched, None)) => Ok(fetched),
        Ok((_, Some(e))) | Err(Setup(e)) => Err(e),
    }
}

/// A failure before the session started (connect, TLS).
struct Setup(String);

fn run_session(
    store: &Store,
    user: &UserId,
    account: &Account,
    settings: &FetchSettings,
    progress: &mut dyn FnMut(u64, u64),
    stop: &AtomicBool,
    lock: &mut Option<std::fs::File>,
) -> Result<(u64, Option<String>), Setup> {
    let url = &account.url;
    let target = format!("{}:{}", url.host, url.port);
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| Setup(format!("cannot resolve {}: {e}", url.host)))?
        .collect();
    let mut last = format!("{target} has no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, settings.connect_timeout) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = format!("cannot connect to {target}: {e}"),
        }
    }
    let tcp = tcp.ok_or(Setup(last))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_write_timeout(Some(settings.session.command_timeout))
        .map_err(|e| Setup(e.to_string()))?;
    let tls = (settings.tls)(account.pin_sha256.as_deref()).map_err(Setup)?;
    let mut conn = ClientConn::Plain(tcp);
    if url.implicit_tls {
        conn = match conn.into_tls(&tls, &url.host) {
            Ok((c, _)) => c,
            Err(e) => return Err(Setup(format!("TLS with {target} failed: {e}"))),
        };
    }
    let fetch_account = Arc::new(account.session_account(user));
    let now = Instant::now();
    let session: Box<dyn Session + Send> = match url.protocol {
        Protocol::Pop3 => Box::new(Pop3Fetch::new(fetch_account, settings.session.clone(), now)),
        Protocol::Imap => Box::new(ImapFetch::new(fetch_account, settings.session.clone(), now)),
    };
    let mut pump = Pump::new(session);
    let mut finished: Option<(u64, Option<String>)> = None;
    let mut told_stop = false;
    // Content scanners' connections (`[filter]`), closed when the session ends.
    let mut scanners = crate::filter::ScanConns::default();
    let session_name = format!("fetch-{}-{}", user.0, account.id);
    let mut tls_error: Option<String> = None;
    let data_dir = store.data_dir().to_path_buf();
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
                let completion = match effect {
                    Effect::Fetch {
                        user,
                        account,
                        request,
                    } => {
                        match &request {
                            FetchRequest::Release => {
                                *lock = None;
                            }
                            FetchRequest::Acquire => {
                                let got = acquire(&data_dir, &user, account, stop);
                                let answer = match got {
                                    Ok(l) => {
                                        *lock = Some(l);
                                        Completion::Fetch(petrel_core::fetch::FetchAnswer::Done)
                                    }
                                    Err(e) => Completion::Failed(petrel_core::StoreError {
                                        class: petrel_core::ErrorClass::Temporary,
                                        message: e,
                                    }),
                                };
                                pump.complete(Instant::now(), req, answer);
                                continue;
                            }
                            FetchRequest::Progress { done, total } => progress(*done, *total),
                            FetchRequest::Finished { fetched, error, .. } => {
                                finished = Some((*fetched, error.clone()));
                            }
                            _ => {}
                        }
                        fetch_accounts::execute(&data_dir, &user, account, request, unix_now())
                    }
                    Effect::Scan { conn, op } => scanners.execute(&session_name, conn, op),
                    other => store.execute(other),
                };
                pump.complete(Instant::now(), req, completion);
            }
            Action::StartTls => {
                match std::mem::replace(&mut conn, ClientConn::Closed).into_tls(&tls, &url.host) {
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
                if stop.load(Ordering::SeqCst) && !told_stop {
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
                let wait = deadline.map_or(STOP_POLL, |d| (d - now).min(STOP_POLL));
                if conn
                    .set_read_timeout(wait.max(Duration::from_millis(1)))
                    .is_err()
                {
                    pump.eof(Instant::now());
                    continue;
                }
                match conn.read(pump.read_buffer()) {
                    Ok(0) => pump.eof(Instant::now()),
                    Ok(n) => pump.received(Instant::now(), n),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => pump.eof(Instant::now()),
                }
            }
            Action::Wait { deadline } => {
                let Some(d) = deadline else { break };
                std::thread::sleep(d.saturating_duration_since(Instant::now()).min(STOP_POLL));
                if Instant::now() >= d {
                    pump.timeout(Instant::now());
                }
            }
            Action::Close(_) => break,
        }
    }
    if let Some(e) = tls_error {
        // The session saw only a closed connection; the account's status gets the real reason.
        if let Err(w) = fetch_accounts::replace_error(&data_dir, user, account.id, unix_now(), &e) {
            tracing::warn!(error = %w, "cannot record the fetch status");
        }
        return Ok((0, Some(e)));
    }
    Ok(finished.unwrap_or((0, Some("the session ended without a result".into()))))
}

/// An account's thread and its stop flag.
type AccountThread = (std::thread::JoinHandle<()>, Arc<AtomicBool>);

/// Takes the account's lock back after IDLE, waiting while another fetcher (`petrel fetch
/// run`) has it; gives up when stopped.
fn acquire(
    data_dir: &std::path::Path,
    user: &UserId,
    id: u32,
    stop: &AtomicBool,
) -> Result<std::fs::File, String> {
    loop {
        match fetch_accounts::try_lock(data_dir, user, id) {
            Ok(Some(l)) => return Ok(l),
            Ok(None) if !stop.load(Ordering::SeqCst) => std::thread::sleep(STOP_POLL),
            Ok(None) => return Err("stopping".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Stops a running [`FetchRunner`].
#[derive(Debug, Clone, Default)]
pub struct FetchHandle {
    stopping: Arc<AtomicBool>,
}

impl FetchHandle {
    /// Asks every account's thread to finish its session and end.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// Keeps every user's remote accounts in sync (see the module docs).
#[derive(Debug)]
pub struct FetchRunner {
    store: Arc<Store>,
    settings: FetchSettings,
    handle: FetchHandle,
    /// How often the accounts on disk are listed again (new and deleted accounts).
    rescan: Duration,
}

impl FetchRunner {
    /// A runner over `store`.
    pub fn new(store: Arc<Store>, settings: FetchSettings) -> Self {
        FetchRunner {
            store,
            settings,
            handle: FetchHandle::default(),
            rescan: Duration::from_secs(5),
        }
    }

    /// A handle to stop the runner.
    pub fn handle(&self) -> FetchHandle {
        self.handle.clone()
    }

    /// Runs until stopped; then waits for the accounts' threads to end their sessions.
    pub fn run(self) {
        // One thread per account (user, number, token: a re-added account is a new one).
        // Each thread has its own stop flag, set when its account is deleted or at shutdown.
        let mut running: BTreeMap<(String, u32, String), AccountThread> = BTreeMap::new();
        let this = Arc::new(self);
        while !this.handle.stopping.load(Ordering::SeqCst) {
            let accounts =
                fetch_accounts::all_accounts(this.store.data_dir()).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot list fetch accounts");
                    Vec::new()
                });
            running.retain(|_, t| !t.0.is_finished());
            let current: std::collections::BTreeSet<(String, u32, String)> = accounts
                .iter()
                .map(|(u, a)| (u.0.clone(), a.id, a.token.clone()))
                .collect();
            for (key, (_, stop)) in &running {
                if !current.contains(key) {
                    // Deleted: end its session (politely, between messages).
                    stop.store(true, Ordering::SeqCst);
                }
            }
            for (user, account) in accounts {
                let key = (user.0.clone(), account.id, account.token.clone());
                if running.contains_key(&key) {
                    continue;
                }
                let runner = this.clone();
                let stop = Arc::new(AtomicBool::new(false));
                let flag = stop.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("fetch-{}", account.id))
                    .spawn(move || runner.keep_in_sync(user, account, &flag));
                match spawned {
                    Ok(t) => {
                        running.insert(key, (t, stop));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot start a fetch thread"),
                }
            }
            this.sleep(this.rescan, &this.handle.stopping);
        }
        for (_, stop) in running.values() {
            stop.store(true, Ordering::SeqCst);
        }
        for (_, (t, _)) in running {
            let _ = t.join();
        }
    }

    /// Sleeps up to `d`, returning early when stopped (the runner, or `stop`).
    fn sleep(&self, d: Duration, stop: &AtomicBool) {
        let until = Instant::now() + d;
        while !self.handle.stopping.load(Ordering::SeqCst)
            && !stop.load(Ordering::SeqCst)
            && Instant::now() < until
        {
            std::thread::sleep(STOP_POLL.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// One account's life: session after session until the account is deleted or the runner
    /// stops.
    fn keep_in_sync(&self, user: UserId, account: Account, stop: &AtomicBool) {
        let data_dir = self.store.data_dir().to_path_buf();
        let mut failures: u32 = 0;
        let still_there = |a: &Account| {
            fetch_accounts::accounts(&data_dir, &user)
                .map(|list| list.iter().any(|b| b.id == a.id && b.token == a.token))
                .unwrap_or(true)
        };
        while !self.handle.stopping.load(Ordering::SeqCst)
            && !stop.load(Ordering::SeqCst)
            && still_there(&account)
        {
            let mut lock = match fetch_accounts::try_lock(&data_dir, &user, account.id) {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    // `petrel fetch run` has it; try again shortly.
                    self.sleep(Duration::from_secs(2), stop);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(user = %user.0, account = account.id, error = %e, "cannot lock the fetch account");
                    self.sleep(self.settings.interval, stop);
                    continue;
                }
            };
            let result = fetch_account(
                &self.store,
                &user,
                &account,
                &self.settings,
                &mut |_, _| {},
                stop,
                &mut lock,
            );
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
            self.sleep(wait, stop);
        }
    }
}

pub use petrel_core::fetch::backoff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (a, m) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(backoff(a, m, 1), a);
        assert_eq!(backoff(a, m, 2), a * 2);
        assert_eq!(backoff(a, m, 4), a * 8);
        assert_eq!(backoff(a, m, 40), m);
    }
}
