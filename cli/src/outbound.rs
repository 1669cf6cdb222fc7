//! Starts the outbound queue runner beside the listeners, from `[relay]`: on its own thread for
//! the blocking runtime, as a task on the server's executor for the smol one.

use crate::Failure;
use crate::config::Config;
use petrel_core::smtp::client::{ClientConfig, TlsPolicy};
use petrel_core::{Secret, dns};
use petrel_runtime_std::outbound::{OutboundConfig, QueueRunner, RunnerHandle};
use petrel_store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The system's CA bundle (Debian's ca-certificates), for verifying a smarthost.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the runner's settings; errors name the config key.
pub fn settings(config: &Config) -> Result<OutboundConfig, Failure> {
    let relay = &config.relay;
    let mut client = ClientConfig::new(&config.hostname);
    let tls = match &relay.smarthost {
        Some(_) => {
            // Mail and a password go to one host: insist on TLS, with a verified certificate.
            if relay.smarthost_auth.is_some() {
                client.tls = TlsPolicy::Required;
            }
            let ca = relay
                .smarthost_ca
                .clone()
                .unwrap_or_else(|| SYSTEM_CA.into());
            let key = if relay.smarthost_ca.is_some() {
                "relay.smarthost_ca"
            } else {
                "relay.smarthost (system CA bundle)"
            };
            if Path::new(&ca).exists() {
                crate::tls::client_config(Some(&ca), key).map_err(Failure::Config)?
            } else {
                tracing::warn!(bundle = %ca.display(), "no CA bundle: the smarthost's certificate cannot be verified");
                crate::tls::client_config(None, key).map_err(Failure::Config)?
            }
        }
        None => {
            if relay.require_tls {
                client.tls = TlsPolicy::Required;
            }
            crate::tls::client_config(None, "tls").map_err(Failure::Config)?
        }
    };
    // MTA-STS: verified TLS from the system's roots (or the test's CA), for policy fetches and
    // for MX hosts under an enforced policy. Without roots nothing can be verified: MTA-STS is
    // off rather than blocking mail to every domain with a policy.
    let sts_tls = match (&relay.smarthost, relay.mta_sts) {
        (None, true) => {
            let (ca, key) = match &relay.mta_sts_ca {
                Some(ca) => (ca.clone(), "relay.mta_sts_ca"),
                None => (SYSTEM_CA.into(), "relay.mta_sts (system CA bundle)"),
            };
            if Path::new(&ca).exists() {
                Some(crate::tls::client_config(Some(&ca), key).map_err(Failure::Config)?)
            } else {
                tracing::warn!(bundle = %ca.display(), "no CA bundle: MTA-STS is off");
                None
            }
        }
        _ => None,
    };
    client.auth = relay
        .smarthost_auth
        .as_ref()
        .map(|(u, p)| (u.clone(), Secret::new(p.clone())));
    Ok(OutboundConfig {
        client: Arc::new(client),
        tls,
        smarthost: relay.smarthost.clone(),
        mx_port: relay.mx_port,
        resolvers: relay.resolvers.clone(),
        dns: dns::ResolverConfig::default(),
        policy: relay.policy.clone(),
        interval: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(30),
        max_parallel: relay.max_parallel,
        sts_tls,
        sts_port: relay.mta_sts_port,
    })
}

/// Starts the runner on its own thread; the store wakes it when mail is queued.
pub fn start(
    store: Arc<Store>,
    settings: OutboundConfig,
    seed: u64,
) -> Result<(RunnerHandle, std::thread::JoinHandle<()>), Failure> {
    let runner = QueueRunner::new(store.clone(), settings, seed);
    let handle = runner.handle();
    let waker = handle.clone();
    store.on_queued(Box::new(move || waker.wake()));
    let thread = std::thread::Builder::new()
        .name("queue".into())
        .spawn(move || runner.run())
        .map_err(|e| Failure::Other(format!("cannot start the queue runner: {e}")))?;
    Ok((handle, thread))
}

/// The smol runner's settings: the same fields (the runtimes share no crate that could hold the
/// struct; see `petrel_runtime_smol::outbound::OutboundConfig`). Destructured in full, so a field
/// added to one and not the other fails to build.
fn smol_settings(settings: OutboundConfig) -> petrel_runtime_smol::outbound::OutboundConfig {
    let OutboundConfig {
        client,
        tls,
        smarthost,
        mx_port,
        resolvers,
        dns,
        policy,
        interval,
        connect_timeout,
        max_parallel,
        sts_tls,
        sts_port,
    } = settings;
    petrel_runtime_smol::outbound::OutboundConfig {
        client,
        tls,
        smarthost,
        mx_port,
        resolvers,
        dns,
        policy,
        interval,
        connect_timeout,
        max_parallel,
        sts_tls,
        sts_port,
    }
}

/// Starts the runner as a task on `server`'s executor (its deliveries too), from the moment the
/// server runs; the store wakes it when mail is queued. Stop it with the returned handle when the
/// server is asked to shut down: the server then gives its attempts in flight the shutdown grace.
pub fn start_smol(
    store: Arc<Store>,
    settings: OutboundConfig,
    seed: u64,
    server: &mut petrel_runtime_smol::Server,
) -> petrel_runtime_smol::outbound::RunnerHandle {
    let runner = petrel_runtime_smol::outbound::QueueRunner::new(
        store.clone(),
        smol_settings(settings),
        seed,
    )
    .with_executor(&server.executor());
    let handle = runner.handle();
    let waker = handle.clone();
    store.on_queued(Box::new(move || waker.wake()));
    server.spawn_background(runner.run());
    handle
}
