//! `petrel fetch add|list|del|run`: remote POP3 and IMAP accounts pulled into a user's mailbox
//! (CONTRACT.md), and the daemon side's settings (`[fetch]`, started by `petrel serve`).

use crate::config::Config;
use crate::deliver::open_store;
use crate::{Failure, SystemClock};
use petrel_core::fetch::{FetchConfig, FetchUrl};
use petrel_core::smtp::address::parse_mailbox;
use petrel_core::{RecipientOutcome, UserId, WallClock, rfc5322_date};
use petrel_runtime_std::fetch::{FetchSettings, TlsFactory, fetch_account};
use petrel_store::fetch_accounts;
use rustls_pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// The system's CA bundle (Debian's ca-certificates).
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How long `fetch run` waits for the server to finish its own pass of the account (the
/// server's IMAP sessions let go of it while they wait in IDLE).
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// What `petrel fetch` was asked to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FetchCommand {
    /// Adds a remote account: URL is imap://, imaps://, pop3:// or pop3s://USER@HOST:PORT[/FOLDER]
    /// (USER percent-encoded). The password is read from stdin with --password-stdin, else
    /// prompted for.
    Add {
        /// The local user the mail is for.
        address: String,
        /// The remote account.
        url: String,
        /// Leave fetched mail on the remote (default: delete it once it is durable here).
        #[arg(long)]
        keep: bool,
        /// Trust exactly the certificate with this SHA-256 fingerprint (hex; colons allowed),
        /// for self-signed remotes; otherwise the certificate must be valid for the host.
        #[arg(long)]
        pin_sha256: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists remote accounts (of one user, or of all) with their state and last error.
    List {
        /// Only this user's accounts.
        address: Option<String>,
    },
    /// Removes a remote account (its mail already fetched stays).
    Del {
        /// The local user.
        address: String,
        /// The account's number, as `list` shows it.
        id: u32,
    },
    /// Fetches every account of the user once, in the foreground, with progress.
    Run {
        /// The local user.
        address: String,
    },
}

/// Runs a fetch command.
pub fn run(config: &Config, command: FetchCommand) -> Result<(), Failure> {
    match command {
        FetchCommand::Add {
            address,
            url,
            keep,
            pin_sha256,
            password_stdin,
        } => {
            let user = local_user(config, &address)?;
            let url = FetchUrl::parse(&url).map_err(|e| Failure::Config(format!("URL: {e}")))?;
            let pin = pin_sha256.map(|p| parse_pin(&p)).transpose()?;
            let password = crate::read_password(password_stdin)
                .map_err(|e| Failure::Other(format!("cannot read the password: {e}")))?;
            if password.is_empty() {
                return Err(Failure::Config("the password is empty".into()));
            }
            let now = SystemClock.unix_seconds();
            let account =
                fetch_accounts::add(&config.data_dir, &user, url, &password, keep, pin, now)
                    .map_err(|e| Failure::Other(format!("cannot add the account: {e}")))?;
            println!("added {} {} {}", user.0, account.id, account.url);
            Ok(())
        }
        FetchCommand::List { address } => {
            let accounts = match address {
                Some(a) => {
                    let user = local_user(config, &a)?;
                    fetch_accounts::accounts(&config.data_dir, &user)
                        .map_err(|e| Failure::Other(e.to_string()))?
                        .into_iter()
                        .map(|acc| (user.clone(), acc))
                        .collect()
                }
                None => fetch_accounts::all_accounts(&config.data_dir)
                    .map_err(|e| Failure::Other(e.to_string()))?,
            };
            for (user, a) in &accounts {
                let s = fetch_accounts::status(&config.data_dir, user, a.id).unwrap_or_default();
                let mut line = format!(
                    "{} {} {} {}{}: fetched {}",
                    user.0,
                    a.id,
                    a.url,
                    if a.keep { "keep" } else { "delete" },
                    if a.pin_sha256.is_some() {
                        " pinned"
                    } else {
                        ""
                    },
                    s.fetched
                );
                match (&s.last_error, s.last_ok) {
                    (Some((t, e)), _) => line.push_str(&format!(
                        "; error ({}, {} failure(s) in a row): {e}",
                        rfc5322_date(*t),
                        s.failures
                    )),
                    (None, Some(t)) => line.push_str(&format!("; ok {}", rfc5322_date(t))),
                    (None, None) => line.push_str("; not fetched yet"),
                }
                for n in &s.notes {
                    line.push_str(&format!("; note: {n}"));
                }
                if let Some((old, new, t)) = s.uidvalidity_change {
                    line.push_str(&format!(
                        "; UIDVALIDITY changed {old} -> {new} ({})",
                        rfc5322_date(t)
                    ));
                }
                println!("{line}");
            }
            if accounts.is_empty() {
                println!("no remote accounts");
            }
            Ok(())
        }
        FetchCommand::Del { address, id } => {
            let user = local_user(config, &address)?;
            if !fetch_accounts::delete(&config.data_dir, &user, id)
                .map_err(|e| Failure::Other(e.to_string()))?
            {
                return Err(Failure::Other(format!(
                    "{} has no remote account {id}",
                    user.0
                )));
            }
            println!("removed {} {id}", user.0);
            Ok(())
        }
        FetchCommand::Run { address } => run_now(config, &address),
    }
}

fn run_now(config: &Config, address: &str) -> Result<(), Failure> {
    let user = local_user(config, address)?;
    let accounts = fetch_accounts::accounts(&config.data_dir, &user)
        .map_err(|e| Failure::Other(e.to_string()))?;
    if accounts.is_empty() {
        return Err(Failure::Other(format!("{} has no remote accounts", user.0)));
    }
    let (store, clock) = open_store(config).map_err(|(_, m)| Failure::Other(m))?;
    let settings = settings(config, clock, false)?;
    let stop = AtomicBool::new(false);
    let mut failed = Vec::new();
    for a in &accounts {
        let started = Instant::now();
        let mut told = false;
        let mut lock = loop {
            match fetch_accounts::try_lock(&config.data_dir, &user, a.id) {
                Ok(Some(l)) => break Some(l),
                Ok(None) if started.elapsed() < LOCK_WAIT => {
                    if !told {
                        println!(
                            "{} {}: waiting for the server's pass to finish",
                            a.id, a.url
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(200))
                }
                Ok(None) => {
                    return Err(Failure::Other(format!(
                        "account {} is being fetched by another process (the server?); try again later",
                        a.id
                    )));
                }
                Err(e) => return Err(Failure::Other(format!("cannot lock account {}: {e}", a.id))),
            }
        };
        let mut shown = false;
        let mut progress = |done: u64, total: u64| {
            if total > 0 {
                println!("{} {}: {done}/{total}", a.id, a.url);
                shown = true;
            }
        };
        let result = fetch_account(&store, &user, a, &settings, &mut progress, &stop, &mut lock);
        drop(lock);
        match result {
            Ok(n) => {
                if !shown {
                    println!("{} {}: nothing new", a.id, a.url);
                }
                println!("{} {}: fetched {n} message(s)", a.id, a.url);
            }
            Err(e) => failed.push(format!("account {} ({}): {e}", a.id, a.url)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Other(failed.join("; ")))
    }
}

/// The user `address` names, which must exist here.
fn local_user(config: &Config, address: &str) -> Result<UserId, Failure> {
    let parsed = parse_mailbox(address)
        .map_err(|_| Failure::Config(format!("{address:?} is not an address")))?;
    let users = petrel_store::UserDb::new(Arc::new(petrel_store::RealFs), &config.data_dir);
    match users.lookup_recipient(&parsed) {
        RecipientOutcome::Local(user) => Ok(user),
        RecipientOutcome::Unknown => Err(Failure::Other(format!("no user {address}"))),
        RecipientOutcome::TempFail => Err(Failure::Other("cannot read the user database".into())),
    }
}

/// A SHA-256 fingerprint as 64 lowercase hex digits (colons and case ignored).
fn parse_pin(text: &str) -> Result<String, Failure> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::Config(format!(
            "--pin-sha256: {text:?} is not a SHA-256 fingerprint (64 hex digits)"
        )));
    }
    Ok(hex)
}

/// The fetch settings from `[fetch]` and `[limits]`; `daemon` turns on IMAP IDLE.
pub fn settings(
    config: &Config,
    clock: Arc<dyn WallClock>,
    daemon: bool,
) -> Result<FetchSettings, Failure> {
    let mut session = FetchConfig::new(&config.hostname, clock);
    session.command_timeout = config.command_timeout;
    session.max_message_size = config.max_message_size;
    session.idle = (daemon && config.fetch.idle).then(|| Duration::from_secs(29 * 60));
    session.filter = config.filter.clone().map(Arc::new);
    let ca: Option<PathBuf> = config.fetch.ca.clone().or_else(|| {
        let p = PathBuf::from(SYSTEM_CA);
        p.exists().then_some(p)
    });
    // Build the verified configuration once; it is the same for every unpinned account.
    let verified = match &ca {
        Some(path) => {
            Some(crate::tls::client_config(Some(path), "fetch.ca").map_err(Failure::Config)?)
        }
        None => None,
    };
    let tls: TlsFactory = Arc::new(move |pin: Option<&str>| {
        match pin {
        Some(hex) => pinned_config(hex),
        None => verified
            .clone()
            .ok_or_else(|| "no CA bundle to verify the remote's certificate (set fetch.ca or pin it with --pin-sha256)".to_string()),
    }
    });
    Ok(FetchSettings {
        session: Arc::new(session),
        tls,
        connect_timeout: Duration::from_secs(30),
        interval: config.fetch.interval,
        retry: config.fetch.retry,
        max_backoff: config.fetch.max_backoff,
    })
}

/// A TLS client configuration trusting exactly the certificate whose SHA-256 is `hex`.
fn pinned_config(hex: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            sha256: hex.to_string(),
            provider,
        }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts the one certificate with the pinned fingerprint (name and dates are not checked:
/// the pin is the trust), and checks the handshake signatures.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if hex == self.sha256 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the certificate's SHA-256 is {hex}, not the pinned {}",
                self.sha256
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Starts the blocking runtime's fetch runner on its own thread (a thread per account, see
/// `petrel_runtime_std::fetch`).
pub fn start(
    config: &Config,
    store: Arc<petrel_store::Store>,
    clock: Arc<dyn WallClock>,
) -> Result<
    (
        petrel_runtime_std::fetch::FetchHandle,
        std::thread::JoinHandle<()>,
    ),
    Failure,
> {
    let settings = settings(config, clock, true)?;
    let runner = petrel_runtime_std::fetch::FetchRunner::new(store, settings);
    let handle = runner.handle();
    let thread = std::thread::Builder::new()
        .name("fetch".into())
        .spawn(move || runner.run())
        .map_err(|e| Failure::Other(format!("cannot start the fetch runner: {e}")))?;
    Ok((handle, thread))
}

/// Starts the async daemon's fetch runner as a task on `server`'s executor (a task per
/// account, see `petrel_runtime_smol::fetch`). Stop it with the returned handle when the
/// server is asked to shut down; the server then waits for it within the grace period.
pub fn start_smol(
    config: &Config,
    store: Arc<petrel_store::Store>,
    clock: Arc<dyn WallClock>,
    server: &mut petrel_runtime_smol::Server,
) -> Result<petrel_runtime_smol::fetch::FetchHandle, Failure> {
    // The same settings for both runtimes, destructured in full so a field added to one and
    // not the other fails to build.
    let FetchSettings {
        session,
        tls,
        connect_timeout,
        interval,
        retry,
        max_backoff,
    } = settings(config, clock, true)?;
    let smol_settings = petrel_runtime_smol::fetch::FetchSettings {
        session,
        tls,
        connect_timeout,
        interval,
        retry,
        max_backoff,
    };
    let runner =
        petrel_runtime_smol::fetch::FetchRunner::new(store, smol_settings, server.executor());
    let handle = runner.handle();
    server.spawn_background(runner.run());
    Ok(handle)
}
