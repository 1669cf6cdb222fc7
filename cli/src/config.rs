//! The configuration file of CONTRACT.md: parsing, embedded defaults, and validation that
//! names the offending key in one line.

use petrel_core::smtp::address::{Domain, parse_domain, parse_mailbox};
use petrel_store::mbox_users::MboxPolicy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem: the key and what is wrong, printed as one line, exit code 2.
#[derive(Debug)]
pub struct ConfigError {
    /// Dotted key path (`listen.smtp`), or the file for syntax errors.
    pub key: String,
    /// The problem.
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config error: {}: {}",
            self.key,
            self.problem.replace('\n', " ")
        )
    }
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// One address or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    smtp: Option<OneOrMany>,
    submission: Option<OneOrMany>,
    submissions: Option<OneOrMany>,
    imap: Option<OneOrMany>,
    imaps: Option<OneOrMany>,
    pop3: Option<OneOrMany>,
    pop3s: Option<OneOrMany>,
    lmtp: Option<OneOrMany>,
    managesieve: Option<OneOrMany>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_message_size: Option<u64>,
    max_recipients: Option<usize>,
    command_timeout: Option<u64>,
    max_connections: Option<usize>,
    max_errors: Option<u32>,
    shutdown_grace: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    allow_plaintext_on_loopback: Option<bool>,
    failure_delay_ms: Option<u64>,
    verify: Option<bool>,
    dmarc_failure: Option<String>,
    dkim_sign_headers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayFile {
    resolver: Option<OneOrMany>,
    smarthost: Option<String>,
    smarthost_user: Option<String>,
    smarthost_password_file: Option<PathBuf>,
    smarthost_ca: Option<PathBuf>,
    mx_port: Option<u16>,
    queue_lifetime_days: Option<u64>,
    delay_warning_hours: Option<u64>,
    max_parallel: Option<usize>,
    privacy: Option<bool>,
    tls: Option<String>,
    mta_sts: Option<bool>,
    mta_sts_port: Option<u16>,
    mta_sts_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterFile {
    clamd: Option<String>,
    spamd: Option<String>,
    rspamd: Option<String>,
    milters: Option<Vec<String>>,
    timeout: Option<u64>,
    on_failure: Option<String>,
    spam_reject_score: Option<f64>,
    spam_max_size: Option<u64>,
    scan_submission_virus: Option<bool>,
    scan_submission_spam: Option<bool>,
    scan_lmtp: Option<bool>,
}

/// A scanner address: `host:port` or `unix:/absolute/path`.
fn scanner_target(key: &str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    if let Some(path) = value.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(bad(
                key,
                format!("{value:?}: a unix socket needs an absolute path"),
            ));
        }
        return Ok(value.to_string());
    }
    let bad_addr = || {
        bad(
            key,
            format!("{value:?} must be \"host:port\" or \"unix:/path\""),
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(bad_addr)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad_addr());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(value.to_string()),
        _ => Err(bad_addr()),
    }
}

/// `[filter]`: validated into the scanners' settings.
fn filter_settings(f: &FilterFile) -> Result<petrel_core::filter::scan::FilterConfig, ConfigError> {
    use petrel_core::filter::scan::{FilterConfig, OnFailure};
    let d = FilterConfig::default();
    let target =
        |key: &str, v: &Option<String>| v.as_deref().map(|v| scanner_target(key, v)).transpose();
    let mut milters = Vec::new();
    for m in f.milters.as_deref().unwrap_or_default() {
        milters.push(scanner_target("filter.milters", m)?);
    }
    let on_failure = match f.on_failure.as_deref() {
        None | Some("tempfail") => OnFailure::TempFail,
        Some("accept") => OnFailure::Accept,
        Some(mode) => {
            return Err(bad(
                "filter.on_failure",
                format!("{mode:?} must be \"tempfail\" or \"accept\""),
            ));
        }
    };
    let timeout = match f.timeout {
        None => d.timeout,
        Some(t @ 1..=3600) => Duration::from_secs(t),
        Some(t) => {
            return Err(bad(
                "filter.timeout",
                format!("{t} must be between 1 and 3600 seconds"),
            ));
        }
    };
    let spam_reject_score = match f.spam_reject_score {
        None => d.spam_reject_score,
        Some(s) if s.is_finite() => s,
        Some(s) => {
            return Err(bad(
                "filter.spam_reject_score",
                format!("{s} is not a number"),
            ));
        }
    };
    let spam_max_size = match f.spam_max_size {
        None => d.spam_max_size,
        Some(n @ 1..=104_857_600) => n as usize,
        Some(n) => {
            return Err(bad(
                "filter.spam_max_size",
                format!("{n} must be between 1 and 104857600 octets"),
            ));
        }
    };
    Ok(FilterConfig {
        clamd: target("filter.clamd", &f.clamd)?,
        spamd: target("filter.spamd", &f.spamd)?,
        rspamd: target("filter.rspamd", &f.rspamd)?,
        milters,
        timeout,
        on_failure,
        spam_reject_score,
        spam_max_size,
        scan_submission_virus: f.scan_submission_virus.unwrap_or(d.scan_submission_virus),
        scan_submission_spam: f.scan_submission_spam.unwrap_or(d.scan_submission_spam),
        scan_lmtp: f.scan_lmtp.unwrap_or(d.scan_lmtp),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchFile {
    interval: Option<u64>,
    retry: Option<u64>,
    max_backoff: Option<u64>,
    idle: Option<bool>,
    ca: Option<PathBuf>,
}

/// Fetching remote accounts (`[fetch]`).
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Seconds between polls of accounts without IDLE (`interval`, default 300).
    pub interval: Duration,
    /// First retry after a failed pass, doubling per failure (`retry`, default 60).
    pub retry: Duration,
    /// Longest wait between retries (`max_backoff`, default 3600).
    pub max_backoff: Duration,
    /// Stay connected in IMAP IDLE when the remote offers it (`idle`, default true).
    pub idle: bool,
    /// CA bundle verifying remotes without a pinned certificate (`ca`, default the system's).
    pub ca: Option<PathBuf>,
}

fn fetch_settings(f: FetchFile) -> Result<Fetch, ConfigError> {
    let secs = |key: &str, v: Option<u64>, d: u64| -> Result<Duration, ConfigError> {
        match v.unwrap_or(d) {
            0 => Err(bad(key, "must be at least 1 second")),
            n => Ok(Duration::from_secs(n)),
        }
    };
    if let Some(ca) = &f.ca
        && !ca.exists()
    {
        return Err(bad("fetch.ca", format!("{} does not exist", ca.display())));
    }
    Ok(Fetch {
        interval: secs("fetch.interval", f.interval, 300)?,
        retry: secs("fetch.retry", f.retry, 60)?,
        max_backoff: secs("fetch.max_backoff", f.max_backoff, 3600)?,
        idle: f.idle.unwrap_or(true),
        ca: f.ca,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryFile {
    mbox: Option<Vec<String>>,
    mbox_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hostname: Option<String>,
    data_dir: Option<PathBuf>,
    domains: Option<Vec<String>>,
    listen: Option<ListenFile>,
    tls: Option<TlsFile>,
    limits: Option<LimitsFile>,
    auth: Option<AuthFile>,
    relay: Option<RelayFile>,
    filter: Option<FilterFile>,
    delivery: Option<DeliveryFile>,
    fetch: Option<FetchFile>,
}

/// Where a listener is and what it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ListenerKind {
    /// Inbound SMTP (25).
    Smtp,
    /// Submission with STARTTLS (587).
    Submission,
    /// Submission over implicit TLS (465).
    Submissions,
    /// IMAP with STARTTLS (143).
    Imap,
    /// IMAP over TLS (993).
    Imaps,
    /// POP3 with STLS (110).
    Pop3,
    /// POP3 over TLS (995).
    Pop3s,
    /// LMTP.
    Lmtp,
    /// ManageSieve.
    ManageSieve,
}

impl ListenerKind {
    /// The key under `[listen]`.
    pub fn key(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Pop3 => "pop3",
            ListenerKind::Pop3s => "pop3s",
            ListenerKind::Lmtp => "lmtp",
            ListenerKind::ManageSieve => "managesieve",
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our host name.
    pub hostname: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Local domains, lowercased.
    pub domains: Vec<String>,
    /// Listeners to open.
    pub listen: Vec<(ListenerKind, SocketAddr)>,
    /// Certificate and key files, if configured.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest message, octets.
    pub max_message_size: u64,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Idle time allowed between client commands.
    pub command_timeout: Duration,
    /// The same for POP3: RFC 1939 asks for at least 10 minutes unless configured otherwise.
    pub pop3_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Protocol errors allowed per session.
    pub max_errors: u32,
    /// How long sessions get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// AUTH without TLS from loopback clients.
    pub allow_plaintext_on_loopback: bool,
    /// Delay before a failed AUTH is answered.
    pub auth_failure_delay: Duration,
    /// Inbound SMTP checks SPF, DKIM and DMARC and acts on DMARC failures this way (`[auth]
    /// verify`, `dmarc_failure`); `None` when verification is off.
    pub authenticate: Option<petrel_core::auth::FailurePolicy>,
    /// Header fields DKIM signatures cover (`[auth] dkim_sign_headers`; empty: the default list).
    pub dkim_sign_headers: Vec<String>,
    /// Users and domains whose mail goes to mbox files (`[delivery]`), empty for none.
    pub mbox: MboxPolicy,
    /// Outbound delivery (`[relay]`).
    pub relay: Relay,
    /// Content scanners (`[filter]`), `None` when the section is absent.
    pub filter: Option<petrel_core::filter::scan::FilterConfig>,
    /// Sections accepted for forward compatibility but not acted on by this version.
    pub unimplemented_sections: Vec<&'static str>,
    /// Fetching remote accounts (`[fetch]`).
    pub fetch: Fetch,
}

/// Outbound delivery settings (`[relay]`).
#[derive(Debug, Clone)]
pub struct Relay {
    /// DNS servers (`resolver`; default: the nameservers of /etc/resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// Send all outbound mail through this host and port.
    pub smarthost: Option<(String, u16)>,
    /// AUTH user and password for the smarthost (the password read from
    /// `smarthost_password_file`).
    pub smarthost_auth: Option<(String, String)>,
    /// CA bundle that verifies the smarthost's certificate (default: the system bundle).
    pub smarthost_ca: Option<PathBuf>,
    /// Port of MX hosts (25; another value only for tests and unusual networks).
    pub mx_port: u16,
    /// Retry schedule, delay warning and expiry.
    pub policy: petrel_core::queue::RetryPolicy,
    /// Destinations served at once.
    pub max_parallel: usize,
    /// Hide the submitting client's IP address and mail program in outgoing headers.
    pub privacy: bool,
    /// MX delivery only over TLS (`tls = "encrypt"`), instead of opportunistic (`"may"`).
    pub require_tls: bool,
    /// Honour the recipient domains' MTA-STS policies (RFC 8461; `mta_sts`, default true).
    pub mta_sts: bool,
    /// Port MTA-STS policies are fetched from (`mta_sts_port`, 443; for tests).
    pub mta_sts_port: u16,
    /// CA bundle for MTA-STS instead of the system one, for the policy fetch and the enforced
    /// SMTP TLS (`mta_sts_ca`; for tests).
    pub mta_sts_ca: Option<PathBuf>,
}

/// `[relay]`: validates every key; the smarthost password file is read here so a bad path is
/// a config error, not a failure at the first delivery.
fn relay_settings(file: RelayFile) -> Result<Relay, ConfigError> {
    let resolvers = match &file.resolver {
        Some(v) => {
            let list = match v {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            let mut out = Vec::new();
            for s in list {
                let addr = s
                    .parse::<SocketAddr>()
                    .or_else(|_| {
                        s.parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| {
                        bad(
                            "relay.resolver",
                            format!("{s:?} is not an address (IP or IP:PORT)"),
                        )
                    })?;
                out.push(addr);
            }
            out
        }
        None => {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let mut list = petrel_core::dns::parse_resolv_conf(&text);
            if list.is_empty() {
                list.push(SocketAddr::from(([127, 0, 0, 1], 53)));
            }
            list
        }
    };
    let smarthost = match &file.smarthost {
        None => None,
        Some(s) => {
            let (host, port) = s
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
                .ok_or_else(|| bad("relay.smarthost", format!("{s:?} is not HOST:PORT")))?;
            if host.is_empty() {
                return Err(bad("relay.smarthost", format!("{s:?} has no host")));
            }
            Some((host.to_ascii_lowercase(), port))
        }
    };
    let smarthost_auth = match (&file.smarthost_user, &file.smarthost_password_file) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "relay.smarthost_password_file",
                "missing (smarthost_user is set)",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "relay.smarthost_user",
                "missing (smarthost_password_file is set)",
            ));
        }
        (Some(user), Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                bad(
                    "relay.smarthost_password_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let password = text.lines().next().unwrap_or("").to_string();
            if password.is_empty() {
                return Err(bad(
                    "relay.smarthost_password_file",
                    format!("{} is empty", path.display()),
                ));
            }
            Some((user.clone(), password))
        }
    };
    if smarthost_auth.is_some() && smarthost.is_none() {
        return Err(bad("relay.smarthost", "missing (smarthost_user is set)"));
    }
    if let Some(ca) = &file.smarthost_ca {
        std::fs::File::open(ca).map_err(|e| {
            bad(
                "relay.smarthost_ca",
                format!("cannot read {}: {e}", ca.display()),
            )
        })?;
    }
    let mut policy = petrel_core::queue::RetryPolicy::default();
    if let Some(days) = file.queue_lifetime_days {
        if days == 0 || days > 60 {
            return Err(bad("relay.queue_lifetime_days", "must be between 1 and 60"));
        }
        policy.max_age = Duration::from_secs(days * 86_400);
    }
    if let Some(hours) = file.delay_warning_hours {
        policy.delay_warning = (hours > 0).then(|| Duration::from_secs(hours * 3600));
    }
    let max_parallel = match file.max_parallel {
        Some(0) => return Err(bad("relay.max_parallel", "must be greater than 0")),
        Some(n) => n,
        None => 8,
    };
    let require_tls = match file.tls.as_deref() {
        None | Some("may") => false,
        Some("encrypt") => true,
        Some(other) => {
            return Err(bad(
                "relay.tls",
                format!("{other:?} must be \"may\" (opportunistic) or \"encrypt\" (required)"),
            ));
        }
    };
    if file.mx_port == Some(0) {
        return Err(bad("relay.mx_port", "must be greater than 0"));
    }
    if file.mta_sts_port == Some(0) {
        return Err(bad("relay.mta_sts_port", "must be greater than 0"));
    }
    if let Some(ca) = &file.mta_sts_ca {
        std::fs::File::open(ca).map_err(|e| {
            bad(
                "relay.mta_sts_ca",
                format!("cannot read {}: {e}", ca.display()),
            )
        })?;
    }
    Ok(Relay {
        resolvers,
        smarthost,
        smarthost_auth,
        smarthost_ca: file.smarthost_ca,
        mx_port: file.mx_port.unwrap_or(25),
        policy,
        max_parallel,
        privacy: file.privacy.unwrap_or(true),
        require_tls,
        mta_sts: file.mta_sts.unwrap_or(true),
        mta_sts_port: file.mta_sts_port.unwrap_or(443),
        mta_sts_ca: file.mta_sts_ca,
    })
}

/// The embedded defaults' listeners (CONTRACT.md).
const DEFAULT_LISTEN: [(ListenerKind, &str); 9] = [
    (ListenerKind::Smtp, "127.0.0.1:2525"),
    (ListenerKind::Submission, "127.0.0.1:2587"),
    (ListenerKind::Submissions, "127.0.0.1:2465"),
    (ListenerKind::Imap, "127.0.0.1:2143"),
    (ListenerKind::Imaps, "127.0.0.1:2993"),
    (ListenerKind::Pop3, "127.0.0.1:2110"),
    (ListenerKind::Pop3s, "127.0.0.1:2995"),
    (ListenerKind::Lmtp, "127.0.0.1:2424"),
    (ListenerKind::ManageSieve, "127.0.0.1:2419"),
];

/// Loads `path`, or `./petrel.toml` when present, or the embedded defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let default_path = Path::new("petrel.toml");
    let path = match path {
        Some(p) => Some(p),
        None if default_path.exists() => Some(default_path),
        None => None,
    };
    let file = match path {
        None => FileConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| bad(&p.display().to_string(), format!("cannot read: {e}")))?;
            parse(&text).map_err(|mut e| {
                if e.key.is_empty() {
                    e.key = p.display().to_string();
                }
                e
            })?
        }
    };
    validate(file)
}

/// Parses TOML text into the file structure, naming the key of any error.
fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        let problem = match line {
            Some(l) => format!("line {l}: {}", e.message()),
            None => e.message().to_string(),
        };
        bad("", problem)
    })?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports an unknown key at its parent; name the key itself.
        if let Some(rest) = inner.strip_prefix("unknown field `")
            && let Some(field) = rest.split('`').next()
        {
            let key = if path == "." || path.is_empty() {
                field.to_string()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path
            } else {
                format!("{path}.{field}")
            };
            return bad(&key, "unknown key");
        }
        bad(if path == "." { "(top level)" } else { &path }, inner)
    })
}

fn addresses(key: &str, value: &OneOrMany) -> Result<Vec<SocketAddr>, ConfigError> {
    let list = match value {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(v) => v.clone(),
    };
    list.iter()
        .map(|s| {
            s.parse::<SocketAddr>().map_err(|_| {
                bad(
                    key,
                    format!("{s:?} is not an address (expected IP:PORT, e.g. 127.0.0.1:25)"),
                )
            })
        })
        .collect()
}

fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let hostname = file.hostname.unwrap_or_else(|| "localhost".to_string());
    if !matches!(parse_domain(&hostname), Ok(Domain::Name(_))) {
        return Err(bad("hostname", format!("{hostname:?} is not a host name")));
    }
    let mut domains = Vec::new();
    for d in file
        .domains
        .unwrap_or_else(|| vec!["localhost".to_string()])
    {
        match parse_domain(&d) {
            Ok(Domain::Name(n)) => domains.push(n),
            _ => return Err(bad("domains", format!("{d:?} is not a domain name"))),
        }
    }
    if domains.is_empty() {
        return Err(bad("domains", "at least one local domain is needed"));
    }
    let mut listen = Vec::new();
    match file.listen {
        None => {
            for (kind, addr) in DEFAULT_LISTEN {
                listen.push((kind, addr.parse().expect("default addresses are valid")));
            }
        }
        Some(l) => {
            let entries = [
                (ListenerKind::Smtp, l.smtp),
                (ListenerKind::Submission, l.submission),
                (ListenerKind::Submissions, l.submissions),
                (ListenerKind::Imap, l.imap),
                (ListenerKind::Imaps, l.imaps),
                (ListenerKind::Pop3, l.pop3),
                (ListenerKind::Pop3s, l.pop3s),
                (ListenerKind::Lmtp, l.lmtp),
                (ListenerKind::ManageSieve, l.managesieve),
            ];
            for (kind, value) in entries {
                if let Some(v) = value {
                    for addr in addresses(&format!("listen.{}", kind.key()), &v)? {
                        listen.push((kind, addr));
                    }
                }
            }
        }
    }
    let tls = match file.tls {
        None => None,
        Some(TlsFile {
            cert: Some(c),
            key: Some(k),
        }) => {
            for (key, path) in [("tls.cert", &c), ("tls.key", &k)] {
                std::fs::File::open(path)
                    .map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))?;
            }
            Some((c, k))
        }
        Some(TlsFile { cert: None, .. }) => {
            return Err(bad("tls.cert", "missing (tls.key is set)"));
        }
        Some(TlsFile { key: None, .. }) => return Err(bad("tls.key", "missing (tls.cert is set)")),
    };
    let limits = file.limits.unwrap_or_default();
    let auth = file.auth.unwrap_or_default();
    let positive = |key: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(bad(key, "must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let max_recipients = positive(
        "limits.max_recipients",
        limits.max_recipients.map(|v| v as u64),
        100,
    )?;
    let max_connections = positive(
        "limits.max_connections",
        limits.max_connections.map(|v| v as u64),
        1000,
    )?;
    let failure = match auth.dmarc_failure.as_deref() {
        None | Some("follow") => petrel_core::auth::FailurePolicy::Follow,
        Some("none") => petrel_core::auth::FailurePolicy::Ignore,
        Some("quarantine") => petrel_core::auth::FailurePolicy::Quarantine,
        Some("reject") => petrel_core::auth::FailurePolicy::Reject,
        Some(other) => {
            return Err(bad(
                "auth.dmarc_failure",
                format!("{other:?} must be \"follow\", \"reject\", \"quarantine\" or \"none\""),
            ));
        }
    };
    let authenticate = auth.verify.unwrap_or(true).then_some(failure);
    let mut dkim_sign_headers = Vec::new();
    for h in auth.dkim_sign_headers.clone().unwrap_or_default() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(bad(
                "auth.dkim_sign_headers",
                format!("{h:?} is not a header field name"),
            ));
        }
        dkim_sign_headers.push(h);
    }
    let unimplemented_sections = Vec::new();
    let relay = relay_settings(file.relay.unwrap_or_default())?;
    let filter = file.filter.as_ref().map(filter_settings).transpose()?;
    let data_dir = file
        .data_dir
        .unwrap_or_else(|| PathBuf::from("./petrel-data"));
    let mbox = mbox_policy(file.delivery.unwrap_or_default(), &domains, &data_dir)?;
    let fetch = fetch_settings(file.fetch.unwrap_or_default())?;
    Ok(Config {
        hostname: hostname.to_lowercase(),
        data_dir,
        mbox,
        relay,
        domains,
        listen,
        tls,
        max_message_size: positive(
            "limits.max_message_size",
            limits.max_message_size,
            52_428_800,
        )?,
        max_recipients: max_recipients as usize,
        command_timeout: Duration::from_secs(positive(
            "limits.command_timeout",
            limits.command_timeout,
            300,
        )?),
        pop3_timeout: Duration::from_secs(limits.command_timeout.unwrap_or(600)),
        max_connections: max_connections as usize,
        max_errors: positive("limits.max_errors", limits.max_errors.map(u64::from), 20)? as u32,
        shutdown_grace: Duration::from_secs(limits.shutdown_grace.unwrap_or(30)),
        allow_plaintext_on_loopback: auth.allow_plaintext_on_loopback.unwrap_or(false),
        auth_failure_delay: Duration::from_millis(auth.failure_delay_ms.unwrap_or(1000)),
        authenticate,
        dkim_sign_headers,
        filter,
        unimplemented_sections,
        fetch,
    })
}

/// `[delivery] mbox`: local addresses or local domains; `mbox_dir` defaults to DATA_DIR/mbox.
fn mbox_policy(
    file: DeliveryFile,
    domains: &[String],
    data_dir: &Path,
) -> Result<MboxPolicy, ConfigError> {
    let mut entries = Vec::new();
    for entry in file.mbox.unwrap_or_default() {
        let entry = entry.to_lowercase();
        let domain = match entry.rsplit_once('@') {
            Some(_) => match parse_mailbox(&entry) {
                Ok(a) => a.domain.to_string(),
                Err(_) => {
                    return Err(bad(
                        "delivery.mbox",
                        format!("{entry:?} is not an address or a domain"),
                    ));
                }
            },
            None => entry.clone(),
        };
        if !domains.contains(&domain) {
            return Err(bad(
                "delivery.mbox",
                format!("{entry:?} is not in a local domain (domains = {domains:?})"),
            ));
        }
        entries.push(entry);
    }
    let dir = file.mbox_dir.unwrap_or_else(|| data_dir.join("mbox"));
    if !entries.is_empty() && dir.as_os_str().is_empty() {
        return Err(bad("delivery.mbox_dir", "must not be empty"));
    }
    Ok(MboxPolicy { entries, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text).and_then(validate) {
            Ok(_) => panic!("{text} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_serve_everything_on_loopback() {
        let c = validate(FileConfig::default()).unwrap();
        assert_eq!(c.listen.len(), 9);
        assert_eq!(c.domains, ["localhost"]);
        assert_eq!(c.max_message_size, 52_428_800);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            err("[listen]\nsmpt = \"127.0.0.1:25\""),
            "config error: listen.smpt: unknown key"
        );
        assert_eq!(err("colour = 1"), "config error: colour: unknown key");
        assert!(
            err("[listen]\nsmtp = \"nope\"")
                .starts_with("config error: listen.smtp: \"nope\" is not an address")
        );
        assert!(
            err("[limits]\nmax_message_size = \"big\"")
                .starts_with("config error: limits.max_message_size: invalid type")
        );
        assert!(
            err("[tls]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.pem\"")
                .starts_with("config error: tls.cert: cannot read")
        );
        assert!(err("domains = [\"bad domain\"]").starts_with("config error: domains:"));
        assert!(err("hostname = ").contains("line 1"));
        assert!(!err("[limits]\nmax_recipients = 0").contains('\n'));
    }

    #[test]
    fn lists_of_addresses() {
        let c = parse("[listen]\nsmtp = [\"127.0.0.1:1\", \"[::1]:2\"]")
            .and_then(validate)
            .unwrap();
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn auth_keys() {
        let c = parse("[auth]\nverify = false").and_then(validate).unwrap();
        assert!(c.authenticate.is_none());
        let c = parse(
            "[auth]\ndmarc_failure = \"quarantine\"\ndkim_sign_headers = [\"From\", \"Subject\"]",
        )
        .and_then(validate)
        .unwrap();
        assert_eq!(
            c.authenticate,
            Some(petrel_core::auth::FailurePolicy::Quarantine)
        );
        assert_eq!(c.dkim_sign_headers, ["from", "subject"]);
        assert!(
            err("[auth]\ndmarc_failure = \"maybe\"")
                .starts_with("config error: auth.dmarc_failure:")
        );
        assert!(
            err("[auth]\ndkim_sign_headers = [\"a b\"]")
                .starts_with("config error: auth.dkim_sign_headers:")
        );
    }

    #[test]
    fn mbox_delivery() {
        let c = parse(
            "domains = [\"example.test\", \"old.test\"]\ndata_dir = \"/d\"\n[delivery]\nmbox = [\"Carol@example.test\", \"old.test\"]",
        )
        .and_then(validate)
        .unwrap();
        assert_eq!(c.mbox.entries, ["carol@example.test", "old.test"]);
        assert_eq!(c.mbox.dir, Path::new("/d/mbox"));
        assert!(
            err("domains = [\"example.test\"]\n[delivery]\nmbox = [\"x@remote.test\"]")
                .starts_with(
                    "config error: delivery.mbox: \"x@remote.test\" is not in a local domain"
                )
        );
        assert!(
            err("[delivery]\nmbox = [\"a b@localhost\"]")
                .starts_with("config error: delivery.mbox:")
        );
        assert_eq!(
            err("[delivery]\nmaildir = 1"),
            "config error: delivery.maildir: unknown key"
        );
    }
}
