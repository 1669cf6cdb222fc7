//! `petrel serve`: builds the store, TLS and listeners from the config and runs a runtime until
//! SIGTERM or SIGINT.

use crate::config::{Config, ListenerKind};
use crate::{Failure, SystemClock, tls};
use petrel_core::imap::session::ImapConfig;
use petrel_core::managesieve::ManageSieveConfig;
use petrel_core::pop3::Pop3Config;
use petrel_core::smtp::{Role, SmtpConfig};
use petrel_core::{Listener, ServerLimits, Service, WallClock};
use petrel_store::{RealFs, Store, StoreConfig};
use std::net::TcpListener;
use std::sync::Arc;

/// Which runtime drives the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// The async daemon on smol.
    Smol,
    /// One thread per connection, for tiny hosts.
    Blocking,
}

/// A seed that differs between runs, from the OS's hash randomisation.
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn smtp_config(
    config: &Config,
    role: Role,
    clock: &Arc<dyn WallClock>,
    starttls: bool,
) -> Arc<SmtpConfig> {
    let mut c = SmtpConfig::new(&config.hostname, role, &config.domains, clock.clone());
    c.max_message_size = config.max_message_size;
    c.max_recipients = config.max_recipients;
    c.command_timeout = config.command_timeout;
    c.max_errors = config.max_errors;
    c.allow_plaintext_on_loopback = config.allow_plaintext_on_loopback;
    c.auth_failure_delay = config.auth_failure_delay;
    c.starttls = starttls;
    c.privacy = config.relay.privacy;
    c.authenticate = config.authenticate;
    c.filter = config.filter.clone().map(Arc::new);
    Arc::new(c)
}

fn pop3_config(config: &Config, stls: bool) -> Arc<Pop3Config> {
    let mut c = Pop3Config::new(&config.hostname);
    c.command_timeout = config.pop3_timeout;
    c.allow_plaintext_on_loopback = config.allow_plaintext_on_loopback;
    c.auth_failure_delay = config.auth_failure_delay;
    c.max_errors = config.max_errors;
    c.stls = stls;
    Arc::new(c)
}

fn imap_config(config: &Config, starttls: bool) -> Arc<ImapConfig> {
    let mut c = ImapConfig::new(&config.hostname);
    // RFC 9051 5.4: at least 30 minutes of silence before autologout.
    c.command_timeout = config
        .command_timeout
        .max(std::time::Duration::from_secs(30 * 60));
    c.allow_plaintext_on_loopback = config.allow_plaintext_on_loopback;
    c.auth_failure_delay = config.auth_failure_delay;
    c.max_errors = config.max_errors;
    c.max_message_size = config.max_message_size;
    c.starttls = starttls;
    Arc::new(c)
}

fn managesieve_config(config: &Config) -> Arc<ManageSieveConfig> {
    let mut c = ManageSieveConfig::new(&config.hostname);
    c.command_timeout = config.pop3_timeout;
    c.allow_plaintext_on_loopback = config.allow_plaintext_on_loopback;
    c.auth_failure_delay = config.auth_failure_delay;
    c.max_errors = config.max_errors;
    c.starttls = true;
    Arc::new(c)
}

/// Runs the server; returns when it has shut down.
pub fn run(config: Config, runtime: RuntimeKind) -> Result<(), Failure> {
    for section in &config.unimplemented_sections {
        tracing::warn!(
            section,
            "this section is accepted but not acted on by this version of petrel"
        );
    }
    let clock: Arc<dyn WallClock> = Arc::new(SystemClock);
    let (cert, key, keys) = match &config.tls {
        Some((c, k)) => (c.clone(), k.clone(), ("tls.cert", "tls.key")),
        None => {
            let (c, k) = tls::ensure_self_signed(&config.data_dir, &config.hostname)
                .map_err(Failure::Config)?;
            (c, k, ("data_dir", "data_dir"))
        }
    };
    let tls = tls::load(&cert, &key, keys).map_err(Failure::Config)?;

    let store_config = StoreConfig {
        data_dir: config.data_dir.clone(),
        hostname: config.hostname.clone(),
        clock: clock.clone(),
        pid: std::process::id(),
        seed: os_seed(),
    };
    let store = Store::open(Arc::new(RealFs), store_config)
        .map_err(|e| {
            Failure::Config(format!(
                "data_dir: cannot use {}: {e}",
                config.data_dir.display()
            ))
        })?
        .with_mbox(config.mbox.clone())
        .with_dkim_headers(config.dkim_sign_headers.clone());
    let store = Arc::new(store);

    let mut listeners = Vec::new();
    for (kind, addr) in &config.listen {
        let (service, implicit_tls) = match kind {
            ListenerKind::Smtp => (
                Service::Smtp(smtp_config(&config, Role::Inbound, &clock, true)),
                false,
            ),
            ListenerKind::Submission => (
                Service::Smtp(smtp_config(&config, Role::Submission, &clock, true)),
                false,
            ),
            ListenerKind::Submissions => (
                Service::Smtp(smtp_config(&config, Role::Submissions, &clock, false)),
                true,
            ),
            ListenerKind::Lmtp => (
                Service::Smtp(smtp_config(&config, Role::Lmtp, &clock, true)),
                false,
            ),
            ListenerKind::Pop3 => (Service::Pop3(pop3_config(&config, true)), false),
            ListenerKind::Pop3s => (Service::Pop3(pop3_config(&config, false)), true),
            ListenerKind::ManageSieve => (Service::ManageSieve(managesieve_config(&config)), false),
            ListenerKind::Imap => (Service::Imap(imap_config(&config, true)), false),
            ListenerKind::Imaps => (Service::Imap(imap_config(&config, false)), true),
        };
        let socket = TcpListener::bind(addr).map_err(|e| {
            Failure::Config(format!(
                "listen.{}: cannot listen on {addr}: {e}",
                kind.key()
            ))
        })?;
        tracing::info!(listener = kind.key(), %addr, "listening");
        listeners.push(Listener {
            socket,
            service,
            implicit_tls,
        });
    }
    let limits = ServerLimits {
        max_connections: config.max_connections,
        shutdown_grace: config.shutdown_grace,
        write_timeout: config.command_timeout,
        // A stalled handshake is a silent client: it gets no longer than a silent command.
        handshake_timeout: config
            .command_timeout
            .min(ServerLimits::default().handshake_timeout),
    };
    let seed = os_seed();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| Failure::Other(format!("cannot install signal handlers: {e}")))?;
    let handle = signals.handle();
    let outbound = crate::outbound::settings(&config)?;
    let runner_seed = seed ^ 0x5eed;
    // Remote accounts (`petrel fetch`): tasks on the smol executor, or a thread per account.
    let fetch_store = store.clone();
    let result = match runtime {
        RuntimeKind::Smol => {
            let mut server =
                petrel_runtime_smol::Server::new(listeners, store.clone(), Some(tls), limits, seed);
            server.set_resolver(config.relay.resolvers.clone(), Default::default());
            let runner = crate::outbound::start_smol(store, outbound, runner_seed, &mut server);
            let fetcher =
                crate::fetch::start_smol(&config, fetch_store, clock.clone(), &mut server)?;
            let stop = server.shutdown_handle();
            on_signal(signals, move || {
                stop.shutdown();
                runner.stop();
                fetcher.stop();
            });
            // The runner's attempts in flight get the grace period beside the sessions; what is
            // still running after it ends with the executor (its mail stays queued).
            let result = server.run();
            handle.close();
            result
        }
        RuntimeKind::Blocking => {
            let (runner, runner_thread) =
                crate::outbound::start(store.clone(), outbound, runner_seed)?;
            let (fetcher, fetcher_thread) =
                crate::fetch::start(&config, fetch_store, clock.clone())?;
            let server = petrel_runtime_std::Server::new(listeners, store, Some(tls), limits, seed);
            server.set_resolver(config.relay.resolvers.clone(), Default::default());
            let stop = server.shutdown_handle();
            on_signal(signals, move || stop.shutdown());
            let result = server.run();
            handle.close();
            runner.stop();
            fetcher.stop();
            wait_for_runner(runner_thread, config.shutdown_grace);
            let deadline = std::time::Instant::now() + config.shutdown_grace;
            while !fetcher_thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result
        }
    };
    tracing::info!("stopped");
    result.map_err(|e| Failure::Other(format!("server failed: {e}")))
}

/// Gives the thread runner's attempts in flight the shutdown grace.
fn wait_for_runner(runner_thread: std::thread::JoinHandle<()>, grace: std::time::Duration) {
    // Attempts in flight get the same grace as sessions; then the process ends without them
    // (their mail stays queued and is tried again at the next start).
    let deadline = std::time::Instant::now() + grace;
    while !runner_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if runner_thread.is_finished() {
        let _ = runner_thread.join();
    } else {
        tracing::warn!("outbound deliveries still in progress at shutdown; they will be retried");
    }
}

fn on_signal(mut signals: signal_hook::iterator::Signals, stop: impl Fn() + Send + 'static) {
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "shutdown requested");
            stop();
        }
    });
}
