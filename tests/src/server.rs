//! Starting, stopping and inspecting a real `petrel serve` process.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take until every listener accepts connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM when a test drops it.
const TERM_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of the two runtimes `petrel serve --runtime` should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// The async daemon (`--runtime smol`).
    Smol,
    /// The thread-per-connection variant (`--runtime blocking`).
    Blocking,
}

impl Runtime {
    /// Both runtimes, in a fixed order.
    pub const ALL: [Runtime; 2] = [Runtime::Smol, Runtime::Blocking];

    /// The value given to `--runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Smol => "smol",
            Runtime::Blocking => "blocking",
        }
    }
}

/// One of the listeners the harness configures: the three SMTP ones always, the two POP3 ones
/// when [`ServerOptions::pop3`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    /// Inbound MTA (`[listen] smtp`, port 25 in production).
    Smtp,
    /// Submission with STARTTLS and AUTH (`[listen] submission`, 587).
    Submission,
    /// Submission over implicit TLS (`[listen] submissions`, 465).
    Submissions,
    /// POP3 with STLS (`[listen] pop3`, 110); only with [`ServerOptions::pop3`].
    Pop3,
    /// POP3 over implicit TLS (`[listen] pop3s`, 995); only with [`ServerOptions::pop3`].
    Pop3s,
    /// IMAP with STARTTLS (`[listen] imap`, 143); only with [`ServerOptions::imap`].
    Imap,
    /// IMAP over implicit TLS (`[listen] imaps`, 993); only with [`ServerOptions::imap`].
    Imaps,
    /// LMTP (`[listen] lmtp`), configured on every server.
    Lmtp,
    /// ManageSieve with STARTTLS (`[listen] managesieve`, 4190); only with
    /// [`ServerOptions::managesieve`].
    ManageSieve,
}

impl Listener {
    /// The three SMTP listeners every server has.
    pub const ALL: [Listener; 3] = [Listener::Smtp, Listener::Submission, Listener::Submissions];

    /// The key of this listener in the `[listen]` table.
    pub fn key(self) -> &'static str {
        match self {
            Listener::Smtp => "smtp",
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
            Listener::Pop3 => "pop3",
            Listener::Pop3s => "pop3s",
            Listener::Imap => "imap",
            Listener::Imaps => "imaps",
            Listener::Lmtp => "lmtp",
            Listener::ManageSieve => "managesieve",
        }
    }
}

/// A mailbox user: address and clear-text password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    /// The full address, e.g. `alice@example.test`.
    pub address: &'static str,
    /// The clear-text password given to `petrel user add --password-stdin`.
    pub password: &'static str,
}

/// `alice@example.test`, password `alice-pw`.
pub const ALICE: Account = Account {
    address: "alice@example.test",
    password: "alice-pw",
};
/// `bob@example.test`, password `bob-pw`.
pub const BOB: Account = Account {
    address: "bob@example.test",
    password: "bob-pw",
};
/// `carol@other.test`, password `carol-pw`.
pub const CAROL: Account = Account {
    address: "carol@other.test",
    password: "carol-pw",
};
/// The users every server gets unless [`ServerOptions::users`] says otherwise.
pub const DEFAULT_USERS: [Account; 3] = [ALICE, BOB, CAROL];

/// What [`Server::start`] writes into `petrel.toml` and the passwd file.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `[limits] max_message_size` (bytes, advertised as SIZE). Default 1 MiB.
    pub max_message_size: u64,
    /// `[limits] max_recipients`. Default 100.
    pub max_recipients: u32,
    /// `[limits] command_timeout` in seconds. Default 300.
    pub command_timeout: u64,
    /// `[limits] max_connections`. Default 1000.
    pub max_connections: u32,
    /// Users created with `petrel user add` before the server starts.
    pub users: Vec<Account>,
    /// Raw lines appended to `DATA_DIR/passwd` after the users are created (e.g. Dovecot hashes).
    pub extra_passwd_lines: Vec<String>,
    /// Also enable the `pop3` (STLS) and `pop3s` (implicit TLS) listeners. Default false.
    pub pop3: bool,
    /// Also enable the `imap` (STARTTLS) and `imaps` (implicit TLS) listeners. Default false.
    pub imap: bool,
    /// Also enable the `managesieve` (STARTTLS) listener. Default false.
    pub managesieve: bool,
    /// TOML appended to `petrel.toml` (whole sections, e.g. `[delivery]`). Default empty.
    pub extra_config: String,
    /// The local domains. Default `example.test` and `other.test`.
    pub domains: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_message_size: 1_048_576,
            max_recipients: 100,
            command_timeout: 300,
            max_connections: 1000,
            users: DEFAULT_USERS.to_vec(),
            extra_passwd_lines: Vec::new(),
            pop3: false,
            imap: false,
            managesieve: false,
            extra_config: String::new(),
            domains: vec!["example.test".into(), "other.test".into()],
        }
    }
}

/// The root of the cargo workspace (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The `petrel` binary under test.
///
/// `PETREL_BIN` wins (relative paths are taken from the workspace root); otherwise
/// `$CARGO_TARGET_DIR/debug/petrel`, otherwise `target/debug/petrel` at the workspace root.
/// Panics with a clear message when the binary does not exist: the tests never pass silently.
pub fn petrel_bin() -> PathBuf {
    let root = workspace_root();
    let resolve = |p: PathBuf| if p.is_relative() { root.join(p) } else { p };
    if let Some(bin) = std::env::var_os("PETREL_BIN") {
        let bin = resolve(PathBuf::from(bin));
        assert!(
            bin.is_file(),
            "PETREL_BIN={} does not exist or is not a file",
            bin.display()
        );
        return bin;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| resolve(PathBuf::from(t)))
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("petrel");
    assert!(
        bin.is_file(),
        "the petrel binary was not found at {}: build it first with `cargo build -p petrel` \
         (or point PETREL_BIN at it)",
        bin.display()
    );
    bin
}

/// Ports handed out by this process, never handed out twice.
static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
/// Next candidate port; starts below the kernel's ephemeral range so client sockets do not
/// collide with the servers' listeners.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// Picks a loopback port that is free right now and that this process has not handed out
/// before (below the kernel's ephemeral range, so client sockets do not take it).
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let _ = NEXT_PORT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7919)) % SPAN + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = (LOW + n % SPAN) as u16;
        let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let used = used.get_or_insert_with(HashSet::new);
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Escapes a string for a TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A running `petrel serve` with its own temporary data directory and loopback ports.
///
/// Dropping it sends SIGTERM, waits (bounded) and then SIGKILLs.
pub struct Server {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    runtime: Runtime,
    opts: ServerOptions,
    smtp: u16,
    submission: u16,
    submissions: u16,
    pop3: u16,
    pop3s: u16,
    imap: u16,
    imaps: u16,
    managesieve: u16,
    lmtp: u16,
    child: Option<Child>,
}

impl Server {
    /// Creates the data directory, config and users, starts `petrel serve --runtime R` and waits
    /// until every listener accepts. Panics (with the server's stderr) when that fails.
    pub fn start(runtime: Runtime, opts: ServerOptions) -> Server {
        let bin = petrel_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("petrel-e2e-{}-", runtime.as_str()))
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().to_path_buf();
        let mut server = Server {
            dir: Some(dir),
            root,
            runtime,
            opts,
            smtp: 0,
            submission: 0,
            submissions: 0,
            pop3: 0,
            pop3s: 0,
            imap: 0,
            imaps: 0,
            managesieve: 0,
            lmtp: 0,
            child: None,
        };
        server.pick_ports();
        server.write_config();
        for user in server.opts.users.clone() {
            server.add_user(&bin, user);
        }
        if !server.opts.extra_passwd_lines.is_empty() {
            let path = server.data_dir().join("passwd");
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            for line in &server.opts.extra_passwd_lines {
                writeln!(f, "{line}").expect("append to passwd");
            }
        }
        for attempt in 0..3 {
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(log) if attempt < 2 && log.to_ascii_lowercase().contains("in use") => {
                    // Another process took one of our ports between the check and the bind.
                    server.pick_ports();
                    server.write_config();
                }
                Err(log) => panic!(
                    "petrel serve --runtime {} did not come up:\n{log}",
                    server.runtime.as_str()
                ),
            }
        }
        unreachable!()
    }

    fn pick_ports(&mut self) {
        self.smtp = free_port();
        self.submission = free_port();
        self.submissions = free_port();
        self.lmtp = free_port();
        if self.opts.imap {
            self.imap = free_port();
            self.imaps = free_port();
        }
        if self.opts.pop3 {
            self.pop3 = free_port();
            self.pop3s = free_port();
        }
        if self.opts.managesieve {
            self.managesieve = free_port();
        }
    }

    /// The ports of every configured listener.
    fn ports(&self) -> Vec<u16> {
        let mut ports = vec![self.smtp, self.submission, self.submissions, self.lmtp];
        if self.opts.imap {
            ports.extend([self.imap, self.imaps]);
        }
        if self.opts.pop3 {
            ports.extend([self.pop3, self.pop3s]);
        }
        if self.opts.managesieve {
            ports.push(self.managesieve);
        }
        ports
    }

    /// The text of `petrel.toml` for the current ports and options.
    fn config_text(&self) -> String {
        let o = &self.opts;
        let imap = if o.imap {
            format!(
                "imap = \"127.0.0.1:{}\"\nimaps = \"127.0.0.1:{}\"\n",
                self.imap, self.imaps
            )
        } else {
            String::new()
        };
        let pop3 = if o.pop3 {
            format!(
                "pop3 = \"127.0.0.1:{}\"\npop3s = \"127.0.0.1:{}\"\n",
                self.pop3, self.pop3s
            )
        } else {
            String::new()
        };
        let managesieve = if o.managesieve {
            format!("managesieve = \"127.0.0.1:{}\"\n", self.managesieve)
        } else {
            String::new()
        };
        format!(
            "hostname = \"mail.test.example\"\n\
             data_dir = {data}\n\
             domains  = [{domains}]\n\
             \n\
             [listen]\n\
             smtp = \"127.0.0.1:{smtp}\"\n\
             submission = \"127.0.0.1:{sub}\"\n\
             submissions = \"127.0.0.1:{subs}\"\n\
             lmtp = \"127.0.0.1:{lmtp}\"\n\
             {pop3}\
             {imap}\
             {managesieve}\
             \n\
             [limits]\n\
             max_message_size = {size}\n\
             max_recipients = {rcpts}\n\
             command_timeout = {timeout}\n\
             max_connections = {conns}\n\
             \n\
             {auth}\
             {extra}\n",
            // A test's own [auth] section replaces this one (TOML allows one table per name).
            auth = if o.extra_config.contains("[auth]") {
                ""
            } else {
                "[auth]\nallow_plaintext_on_loopback = false\n"
            },
            // Mail for other domains stays queued unless a test gives the runner a resolver:
            // nothing answers DNS on port 9, so every attempt is deferred.
            extra = if o.extra_config.contains("[relay]") {
                o.extra_config.clone()
            } else {
                format!("{}\n[relay]\nresolver = \"127.0.0.1:9\"\n", o.extra_config)
            },
            domains = o
                .domains
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", "),
            data = toml_str(&self.data_dir().to_string_lossy()),
            smtp = self.smtp,
            sub = self.submission,
            subs = self.submissions,
            lmtp = self.lmtp,
            size = o.max_message_size,
            rcpts = o.max_recipients,
            timeout = o.command_timeout,
            conns = o.max_connections,
        )
    }

    fn write_config(&self) {
        fs::write(self.config_path(), self.config_text()).expect("write petrel.toml");
    }

    fn add_user(&self, bin: &Path, user: Account) {
        let mut child = Command::new(bin)
            .args(["user", "add", user.address, "--password-stdin", "--config"])
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", user.password).as_bytes())
            .expect("write password");
        let out = child.wait_with_output().expect("wait for petrel user add");
        assert!(
            out.status.success(),
            "`petrel user add {} --password-stdin` failed ({}):\nstdout: {}\nstderr: {}",
            user.address,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Spawns `petrel serve` and waits for every listener; on failure returns the log.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let bin = petrel_bin();
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open stderr log");
        let stdout = stderr.try_clone().expect("clone log file");
        let child = Command::new(&bin)
            .args(["serve", "--config"])
            .arg(self.config_path())
            .args(["--runtime", self.runtime.as_str()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        for port in self.ports() {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    self.child = None;
                    return Err(format!(
                        "exited with {status} before serving; log:\n{}",
                        self.log()
                    ));
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    let log = self.log();
                    self.kill9();
                    return Err(format!(
                        "port {port} not accepting after {READY_TIMEOUT:?}; log:\n{log}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        Ok(())
    }

    /// The runtime this server runs.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// The loopback port of a listener.
    pub fn port(&self, listener: Listener) -> u16 {
        match listener {
            Listener::Smtp => self.smtp,
            Listener::Submission => self.submission,
            Listener::Submissions => self.submissions,
            Listener::Lmtp => self.lmtp,
            Listener::ManageSieve => {
                assert!(
                    self.opts.managesieve,
                    "ManageSieve is only configured with ServerOptions::managesieve"
                );
                self.managesieve
            }
            Listener::Imap | Listener::Imaps => {
                assert!(
                    self.opts.imap,
                    "{listener:?} is only configured with ServerOptions::imap"
                );
                if listener == Listener::Imap {
                    self.imap
                } else {
                    self.imaps
                }
            }
            Listener::Pop3 | Listener::Pop3s => {
                assert!(
                    self.opts.pop3,
                    "{listener:?} is only configured with ServerOptions::pop3"
                );
                if listener == Listener::Pop3 {
                    self.pop3
                } else {
                    self.pop3s
                }
            }
        }
    }

    /// The temporary directory holding config, data dir and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DATA_DIR`.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The `petrel.toml` the server runs with.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("petrel.toml")
    }

    /// The file the server's stdout and stderr go to.
    pub fn stderr_path(&self) -> PathBuf {
        self.root.join("serve.stderr")
    }

    /// The generated self-signed certificate, `DATA_DIR/tls/cert.pem`; clients use it as their CA.
    pub fn cafile(&self) -> PathBuf {
        self.data_dir().join("tls").join("cert.pem")
    }

    /// Everything the server wrote to stdout/stderr so far (across restarts).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.stderr_path()).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of [`Server::log`], for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(n);
        let mut out = format!(
            "--- server log ({} runtime), last {n} lines ---\n",
            self.runtime.as_str()
        );
        for l in &lines[start..] {
            let _ = writeln!(out, "{l}");
        }
        out
    }

    /// The Maildir++ root of a user: `DATA_DIR/mail/DOMAIN/LOCAL/` (domain lower-cased).
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address.rsplit_once('@').expect("address with @");
        self.data_dir()
            .join("mail")
            .join(domain.to_ascii_lowercase())
            .join(local)
    }

    /// The message files in a user's INBOX (`new/` and `cur/`), sorted by path.
    pub fn message_files(&self, address: &str) -> Vec<PathBuf> {
        let root = self.maildir(address);
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(root.join(sub)) {
                for entry in rd.flatten() {
                    let path = entry.path();
                    if path.is_file() {
                        files.push(path);
                    }
                }
            }
        }
        files.sort();
        files
    }

    /// The contents of every message file in a user's INBOX (`new/` and `cur/`).
    pub fn new_messages(&self, address: &str) -> Vec<Vec<u8>> {
        self.message_files(address)
            .iter()
            .filter_map(|p| fs::read(p).ok())
            .collect()
    }

    /// Every file under `DATA_DIR/queue/` (recursively) with its contents.
    pub fn queue_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            if let Ok(rd) = fs::read_dir(dir) {
                for entry in rd.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else if let Ok(bytes) = fs::read(&path) {
                        out.push((path, bytes));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir().join("queue"), &mut out);
        out.sort();
        out
    }

    /// Every mailbox directory `DATA_DIR/mail/DOMAIN/LOCAL/`, as `LOCAL@DOMAIN`, sorted.
    pub fn mailboxes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(domains) = fs::read_dir(self.data_dir().join("mail")) {
            for d in domains.flatten().filter(|d| d.path().is_dir()) {
                let domain = d.file_name().to_string_lossy().into_owned();
                if let Ok(locals) = fs::read_dir(d.path()) {
                    for l in locals.flatten().filter(|l| l.path().is_dir()) {
                        out.push(format!("{}@{domain}", l.file_name().to_string_lossy()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Runs `petrel ARGS... --config FILE` with `stdin` as input and returns its output.
    pub fn petrel(&self, args: &[&str], stdin: &[u8]) -> Output {
        let bin = petrel_bin();
        let mut child = Command::new(&bin)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut input = child.stdin.take().expect("stdin");
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().expect("wait for petrel")
    }

    /// The process id of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends SIGTERM (through the `kill` command) without waiting.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...) through the `kill` command, without waiting.
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([&format!("-{name}"), &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The server's peak resident memory in KiB (`VmHWM` from `/proc/PID/status`), if known.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits up to `timeout` for the server to exit; returns its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return None,
            }
        }
    }

    /// SIGKILLs the server (like `kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGTERM, bounded wait, then SIGKILL) and returns how it exited.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.sigterm();
        match self.wait_exit(TERM_TIMEOUT) {
            Some(status) => Some(status),
            None => {
                self.kill9();
                None
            }
        }
    }

    /// Starts the server again with the same data directory, config and ports (after stopping it
    /// if it still runs). Panics with the log when it does not come up.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if let Err(log) = self.spawn_and_wait() {
            panic!("petrel serve did not come back after restart:\n{log}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("PETREL_KEEP_TMP").is_some()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("kept test data in {}", kept.display());
        }
    }
}
