//! Private content scanners from Debian's packages, for the `[filter]` tests (issue 10): clamd
//! (ClamAV), spamd (SpamAssassin), rspamd and OpenDKIM as a milter, each in its own temp
//! directory on a free loopback port, plus fake scanners that misbehave on purpose.
//!
//! Every [`Scanner`] is started in the foreground in its own process group and waits until the
//! daemon answers its own protocol (clamd `zPING`, spamd `PING`, rspamd `GET /ping`, a milter
//! option negotiation) before it is returned; a daemon that exits or does not answer by the
//! deadline makes the test fail with the daemon's log. Dropping a [`Scanner`] sends SIGTERM to
//! its process group (SIGKILL after a grace period) and removes the temp directory
//! (`PETREL_KEEP_TMP=1` keeps it). [`Scanner::addr`] is the value for Petrel's `[filter]` keys.
//!
//! No network is used and nothing outside the temp directory is written:
//! - clamd gets a signature database the harness writes itself (freshclam downloads are
//!   impossible here): the EICAR test file's MD5 in an `.hdb` (whole files, such as a decoded
//!   MIME attachment: clamd parses a mail stream and scans each decoded part) and its bytes in
//!   an `.ndb` body signature (EICAR anywhere, such as pasted into a text body). Both are named
//!   [`EICAR_SIGNATURE`]; clamd reports unsigned databases' names with `.UNOFFICIAL` appended.
//! - spamd runs the rules Debian ships in `/usr/share/spamassassin` with the plugin `.pre` files
//!   of `/etc/spamassassin` copied into a private site config (the admin's `local.cf` is not
//!   read), local tests only, no Bayes. [`gtube`] scores 1000.
//! - rspamd runs the packaged config (`/etc/rspamd`) with a private `LOCAL_CONFDIR`, database,
//!   run and log directories, one normal worker, no controller, no redis, no hyperscan cache, a
//!   five-entry public suffix list instead of the packaged one (compiling that took 10 s per
//!   start), and DNS pointed at a port where nothing answers (RBL, SURBL, fuzzy, ASN and
//!   phishing modules are disabled). [`gtube`] gives the action `reject` at score 15.
//! - OpenDKIM signs (mode `s`) mail from one domain with a 2048-bit RSA key made by
//!   `opendkim-genkey`; [`DkimKey::txt`] is the DNS record to verify it with.
//!
//! When the tests run as root, spamd runs its children as `nobody` and rspamd as `nobody` and
//! that user's group (both refuse to run as root); the temp directory is then opened up
//! (0755, writable subdirectories 0777) so they can read their config. Otherwise every daemon
//! runs as the current user.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::server::free_port;

/// The name the harness's clamd database gives the EICAR test file. clamd reports it as
/// `Eicar-Test-Signature.UNOFFICIAL` (the suffix marks an unsigned database).
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

/// MD5 of the 68-byte EICAR test file, as an `.hdb` line wants it.
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

/// How long a daemon may take between spawn and answering its protocol (rspamd needs about
/// 2 s, spamd 1 s, on this machine's 2 cores; much longer when tests run in parallel).
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopped daemon may take to exit after SIGTERM before it gets SIGKILL.
const TERM_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout for one probe connection (readiness checks and the direct-scan helpers).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// The EICAR anti-virus test file (68 bytes). Built from two halves so that this source file
/// and the test binary are not themselves flagged by a virus scanner.
pub fn eicar() -> Vec<u8> {
    let mut v = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR".to_vec();
    v.extend_from_slice(b"-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    v
}

/// The GTUBE anti-spam test string (SpamAssassin scores it 1000, rspamd rejects it). Built from
/// two halves for the same reason as [`eicar`].
pub fn gtube() -> String {
    let mut s = String::from("XJS*C4JDBQADN1.NSBN3*2IDNEN*");
    s.push_str("GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X");
    s
}

/// Which daemon a [`Scanner`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScannerKind {
    /// ClamAV's clamd (`[filter] clamd`).
    Clamd,
    /// SpamAssassin's spamd (`[filter] spamd`).
    Spamd,
    /// rspamd's normal worker (`[filter] rspamd`).
    Rspamd,
    /// OpenDKIM as a Sendmail milter (`[filter] milters`).
    OpenDkim,
}

impl ScannerKind {
    /// A short lower-case name for logs and temp directory names.
    pub fn name(self) -> &'static str {
        match self {
            ScannerKind::Clamd => "clamd",
            ScannerKind::Spamd => "spamd",
            ScannerKind::Rspamd => "rspamd",
            ScannerKind::OpenDkim => "opendkim",
        }
    }
}

/// The signing key of an OpenDKIM [`Scanner`].
#[derive(Clone, Debug)]
pub struct DkimKey {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// The PEM private key file `opendkim-genkey` wrote.
    pub private_key: PathBuf,
    /// The TXT record to publish at `SELECTOR._domainkey.DOMAIN` (`v=DKIM1; h=sha256; k=rsa;
    /// p=...`), its quoted strings joined.
    pub txt: String,
}

/// Where a scanner listens.
#[derive(Clone, Debug)]
enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

/// A running scanner daemon in its own temp directory, stopped on drop.
pub struct Scanner {
    kind: ScannerKind,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    endpoint: Endpoint,
    /// Log files of the daemon (its stdout/stderr first).
    logs: Vec<PathBuf>,
    dkim: Option<DkimKey>,
}

/// Whether this process runs as root (uid 0), read from `/proc/self/status`.
pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs `id ARGS` and returns its trimmed output (user and group names).
fn id(args: &[&str]) -> String {
    let out = Command::new("id")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `id`: {e}"));
    assert!(out.status.success(), "`id {}` failed", args.join(" "));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Panics unless `path` exists, naming the Debian package that provides it.
fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package `{package}` (scripts/test does)"
    );
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    chmod(path, mode);
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads until `done(buffer)` or EOF/timeout; returns what arrived.
fn read_until(stream: &mut impl Read, done: impl Fn(&[u8]) -> bool) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while !done(&buf) {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

fn connect_tcp(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(PROBE_TIMEOUT))?;
    s.set_write_timeout(Some(PROBE_TIMEOUT))?;
    Ok(s)
}

/// A byte stream to a scanner: TCP or a unix socket.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

impl Scanner {
    /// Starts clamd on a free loopback TCP port with the harness's EICAR database.
    /// Its `StreamMaxLength` is 60M, enough for a 50 MB message.
    pub fn clamd() -> Scanner {
        Scanner::start_clamd(false, "60M")
    }

    /// Starts clamd on a unix socket in its temp directory ([`Scanner::addr`] is then
    /// `unix:/path`), with the harness's EICAR database.
    pub fn clamd_unix() -> Scanner {
        Scanner::start_clamd(true, "60M")
    }

    /// Starts clamd on TCP with `StreamMaxLength` set to `limit` (clamd's syntax, such as `1M`):
    /// longer streams get `INSTREAM size limit exceeded. ERROR`, as with Debian's default of 25M
    /// and a larger message.
    pub fn clamd_with_stream_limit(limit: &str) -> Scanner {
        Scanner::start_clamd(false, limit)
    }

    fn start_clamd(unix: bool, stream_max: &str) -> Scanner {
        require("/usr/sbin/clamd", "clamav-daemon");
        Scanner::launch(ScannerKind::Clamd, |root, port| {
            let db = root.join("db");
            mkdir(&db, 0o755);
            write(
                &db.join("eicar.hdb"),
                &format!("{EICAR_MD5}:{}:{EICAR_SIGNATURE}\n", eicar().len()),
            );
            let hex: String = eicar().iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            write(
                &db.join("eicar.ndb"),
                &format!("{EICAR_SIGNATURE}:0:*:{hex}\n"),
            );
            let tmp = root.join("tmp");
            mkdir(&tmp, 0o755);
            let (listen, endpoint) = if unix {
                let sock = root.join("clamd.sock");
                (
                    format!("LocalSocket {}\n", sock.display()),
                    Endpoint::Unix(sock),
                )
            } else {
                (
                    format!("TCPSocket {port}\nTCPAddr 127.0.0.1\n"),
                    Endpoint::Tcp(port),
                )
            };
            let log = root.join("clamd.log");
            let conf = root.join("clamd.conf");
            write(
                &conf,
                &format!(
                    "Foreground yes\n\
                     {listen}\
                     DatabaseDirectory {db}\n\
                     TemporaryDirectory {tmp}\n\
                     LogFile {log}\n\
                     LogTime yes\n\
                     LogClean yes\n\
                     PidFile {pid}\n\
                     StreamMaxLength {stream_max}\n\
                     MaxScanSize 200M\n\
                     MaxFileSize 60M\n\
                     ScanMail yes\n\
                     SelfCheck 3600\n",
                    db = db.display(),
                    tmp = tmp.display(),
                    log = log.display(),
                    pid = root.join("clamd.pid").display(),
                ),
            );
            let mut cmd = Command::new("/usr/sbin/clamd");
            cmd.arg("--foreground").arg("-c").arg(&conf);
            (cmd, endpoint, vec![log])
        })
    }

    /// Starts SpamAssassin's spamd on a free loopback port (local tests only, no Bayes, two
    /// children). GTUBE scores 1000 with the default threshold 5.
    pub fn spamd() -> Scanner {
        require("/usr/sbin/spamd", "spamd");
        require("/usr/share/spamassassin", "spamassassin");
        Scanner::launch(ScannerKind::Spamd, |root, port| {
            let site = root.join("site");
            mkdir(&site, 0o755);
            // The plugin loads (Check, HTMLEval, ...) live in /etc/spamassassin/*.pre; without
            // them no rule runs. The admin's local.cf is left out on purpose.
            let etc = fs::read_dir("/etc/spamassassin")
                .unwrap_or_else(|e| panic!("read /etc/spamassassin ({e}): install spamassassin"));
            for entry in etc.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "pre") {
                    let to = site.join(entry.file_name());
                    fs::copy(&path, &to).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
                    chmod(&to, 0o644);
                }
            }
            let local = site.join("local.cf");
            write(
                &local,
                "use_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\nuse_razor2 0\n\
                 use_pyzor 0\ndns_available no\n",
            );
            chmod(&local, 0o644);
            let home = root.join("home");
            mkdir(&home, 0o777);
            let mut cmd = Command::new("/usr/sbin/spamd");
            cmd.arg(format!("--listen=127.0.0.1:{port}"))
                .arg("--allowed-ips=127.0.0.1")
                .arg("--configpath=/usr/share/spamassassin")
                .arg(format!("--siteconfigpath={}", site.display()))
                .arg("--nouser-config")
                .arg(format!("--helper-home-dir={}", home.display()))
                .arg("--local")
                .arg("--max-children=2")
                .arg("--min-children=1")
                .arg("--syslog=stderr")
                .arg(format!("--pidfile={}", root.join("spamd.pid").display()));
            if running_as_root() {
                cmd.args(["-u", "nobody"]);
            }
            (cmd, Endpoint::Tcp(port), Vec::new())
        })
    }

    /// Starts rspamd with one normal worker on a free loopback port. GTUBE gives `reject`.
    pub fn rspamd() -> Scanner {
        require("/usr/bin/rspamd", "rspamd");
        require("/etc/rspamd/common.conf", "rspamd");
        Scanner::launch(ScannerKind::Rspamd, |root, port| {
            let local = root.join("local");
            mkdir(&local.join("local.d"), 0o755);
            mkdir(&local.join("override.d"), 0o755);
            for d in ["db", "run", "log"] {
                mkdir(&root.join(d), 0o777);
            }
            // Nothing answers DNS on port 9: lookups time out fast instead of leaving the box.
            // Compiling the packaged list of ~9600 public suffixes for URL matching takes rspamd
            // about 10 s per start on this machine; a short list of our own makes it instant.
            let tld = root.join("tld.dat");
            write(&tld, "com\nnet\norg\nexample\ntest\n");
            write(
                &local.join("local.d/options.inc"),
                &format!(
                    "dns {{ nameserver = [\"127.0.0.1:9\"]; timeout = 0.2s; retransmits = 1; }}\n\
                     disable_hyperscan = true;\n\
                     url_tld = \"{}\";\n",
                    tld.display()
                ),
            );
            for module in ["rbl", "surbl", "fuzzy_check", "emails", "asn", "phishing"] {
                write(
                    &local.join(format!("local.d/{module}.conf")),
                    "enabled = false;\n",
                );
            }
            let conf = root.join("rspamd.conf");
            write(
                &conf,
                &format!(
                    ".include \"$CONFDIR/common.conf\"\n\
                     options {{\n\
                     \x20   pidfile = \"$RUNDIR/rspamd.pid\";\n\
                     \x20   .include \"$CONFDIR/options.inc\"\n\
                     \x20   .include(try=true; priority=1,duplicate=merge) \"$LOCAL_CONFDIR/local.d/options.inc\"\n\
                     }}\n\
                     logging {{\n\
                     \x20   type = \"file\";\n\
                     \x20   filename = \"$LOGDIR/rspamd.log\";\n\
                     \x20   level = \"info\";\n\
                     }}\n\
                     worker \"normal\" {{\n\
                     \x20   bind_socket = \"127.0.0.1:{port}\";\n\
                     \x20   mime = true;\n\
                     \x20   count = 1;\n\
                     }}\n"
                ),
            );
            let (user, group) = if running_as_root() {
                ("nobody".to_string(), id(&["-gn", "nobody"]))
            } else {
                (id(&["-un"]), id(&["-gn"]))
            };
            let mut cmd = Command::new("/usr/bin/rspamd");
            cmd.arg("-f")
                .arg("-c")
                .arg(&conf)
                .args(["-u", &user, "-g", &group])
                .arg("--var")
                .arg(format!("DBDIR={}", root.join("db").display()))
                .arg("--var")
                .arg(format!("RUNDIR={}", root.join("run").display()))
                .arg("--var")
                .arg(format!("LOGDIR={}", root.join("log").display()))
                .arg("--var")
                .arg(format!("LOCAL_CONFDIR={}", local.display()));
            (
                cmd,
                Endpoint::Tcp(port),
                vec![root.join("log").join("rspamd.log")],
            )
        })
    }

    /// Starts OpenDKIM as a signing milter (mode `s`, `relaxed/simple`) on a free loopback port,
    /// with a new 2048-bit RSA key for `domain` and `selector` (see [`Scanner::dkim_key`]). It
    /// signs mail whose `From:` is in `domain` when the client is 127.0.0.1 (OpenDKIM's default
    /// internal hosts) or authenticated.
    pub fn opendkim(domain: &str, selector: &str) -> Scanner {
        require("/usr/sbin/opendkim", "opendkim");
        require("/usr/sbin/opendkim-genkey", "opendkim-tools");
        let mut key = None;
        let mut scanner = Scanner::launch(ScannerKind::OpenDkim, |root, port| {
            let keys = root.join("keys");
            mkdir(&keys, 0o755);
            let out = Command::new("/usr/sbin/opendkim-genkey")
                .arg("-D")
                .arg(&keys)
                .args(["-d", domain, "-s", selector, "-b", "2048"])
                .output()
                .unwrap_or_else(|e| panic!("cannot run opendkim-genkey: {e}"));
            assert!(
                out.status.success(),
                "opendkim-genkey failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let private_key = keys.join(format!("{selector}.private"));
            let record = fs::read_to_string(keys.join(format!("{selector}.txt")))
                .unwrap_or_else(|e| panic!("read the DKIM record opendkim-genkey wrote: {e}"));
            let txt: String = record.split('"').skip(1).step_by(2).collect();
            key = Some(DkimKey {
                domain: domain.to_string(),
                selector: selector.to_string(),
                private_key: private_key.clone(),
                txt,
            });
            let conf = root.join("opendkim.conf");
            write(
                &conf,
                &format!(
                    "Syslog no\n\
                     Mode s\n\
                     Socket inet:{port}@127.0.0.1\n\
                     Domain {domain}\n\
                     Selector {selector}\n\
                     KeyFile {key}\n\
                     RequireSafeKeys false\n\
                     Canonicalization relaxed/simple\n\
                     SignatureAlgorithm rsa-sha256\n\
                     PidFile {pid}\n",
                    key = private_key.display(),
                    pid = root.join("opendkim.pid").display(),
                ),
            );
            let mut cmd = Command::new("/usr/sbin/opendkim");
            cmd.arg("-f").arg("-x").arg(&conf);
            (cmd, Endpoint::Tcp(port), Vec::new())
        });
        scanner.dkim = key;
        scanner
    }

    /// Creates the temp dir, lets `setup` write the config and build the command, spawns it in
    /// its own process group and waits until it answers; retries on a port taken meanwhile.
    fn launch(
        kind: ScannerKind,
        mut setup: impl FnMut(&Path, u16) -> (Command, Endpoint, Vec<PathBuf>),
    ) -> Scanner {
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix(&format!("petrel-{}-", kind.name()))
                .tempdir()
                .expect("create temp dir");
            let root = dir.path().to_path_buf();
            // The daemons that drop root (spamd, rspamd) must reach their config.
            chmod(&root, 0o755);
            let port = free_port();
            let (mut cmd, endpoint, extra_logs) = setup(&root, port);
            let out_path = root.join(format!("{}.out", kind.name()));
            let out = fs::File::create(&out_path).expect("create daemon log");
            let err = out.try_clone().expect("clone log file");
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            let mut logs = vec![out_path];
            logs.extend(extra_logs);
            let mut scanner = Scanner {
                kind,
                child: Some(child),
                dir: Some(dir),
                root,
                endpoint,
                logs,
                dkim: None,
            };
            match scanner.wait_ready() {
                Ok(()) => return scanner,
                Err(e) => {
                    let log = scanner.log();
                    scanner.stop();
                    let in_use = log.contains("in use") || log.contains("Address already");
                    last = format!("{} did not come up: {e}\n{}", kind.name(), tail(&log, 60));
                    if !in_use {
                        break;
                    }
                }
            }
        }
        panic!("{last}");
    }

    /// Polls the daemon's own protocol until it answers, the process exits or the deadline.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let mut last = String::from("no attempt");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status} before answering ({last})"));
            }
            match self.ping() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "not answering after {READY_TIMEOUT:?}; last probe: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.endpoint {
            Endpoint::Tcp(port) => connect_tcp(*port).map(Conn::Tcp),
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(PROBE_TIMEOUT))?;
                s.set_write_timeout(Some(PROBE_TIMEOUT))?;
                Ok(Conn::Unix(s))
            }
        }
    }

    /// One protocol-level liveness check (not just a TCP connect).
    fn ping(&self) -> Result<(), String> {
        let mut c = self.connect().map_err(|e| format!("connect: {e}"))?;
        let (request, want): (Vec<u8>, &[u8]) = match self.kind {
            ScannerKind::Clamd => (b"zPING\0".to_vec(), b"PONG"),
            ScannerKind::Spamd => (b"PING SPAMC/1.5\r\n\r\n".to_vec(), b"PONG"),
            ScannerKind::Rspamd => (
                b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
                b"pong",
            ),
            ScannerKind::OpenDkim => (milter_packet(b'O', &optneg()), b"O"),
        };
        c.write_all(&request).map_err(|e| format!("write: {e}"))?;
        let got = read_until(&mut c, |b| {
            crate::message::contains(b, want) || b.len() > 4096
        })
        .map_err(|e| format!("read: {e}"))?;
        let ok = if self.kind == ScannerKind::OpenDkim {
            got.get(4) == Some(&b'O')
        } else {
            crate::message::contains(&got, want)
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "answer {:?}",
                String::from_utf8_lossy(&got[..got.len().min(200)])
            ))
        }
    }

    /// Which daemon this is.
    pub fn kind(&self) -> ScannerKind {
        self.kind
    }

    /// The value for Petrel's `[filter]` key: `127.0.0.1:PORT`, or `unix:/path` for
    /// [`Scanner::clamd_unix`].
    pub fn addr(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(port) => format!("127.0.0.1:{port}"),
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// The TCP port, for TCP scanners.
    pub fn port(&self) -> Option<u16> {
        match self.endpoint {
            Endpoint::Tcp(p) => Some(p),
            Endpoint::Unix(_) => None,
        }
    }

    /// The temp directory holding config, databases and logs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The process id of the daemon's main process while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The key an OpenDKIM scanner signs with; `None` for other kinds.
    pub fn dkim_key(&self) -> Option<&DkimKey> {
        self.dkim.as_ref()
    }

    /// Everything the daemon logged so far (its stdout/stderr, then its log files), for
    /// failure messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let text = fs::read(path).unwrap_or_default();
            let _ = writeln!(
                out,
                "--- {} {} ---\n{}",
                self.kind.name(),
                path.display(),
                String::from_utf8_lossy(&text)
            );
        }
        out
    }

    /// The last `n` lines of [`Scanner::log`].
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    /// Whether the daemon's main process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the daemon (SIGTERM to its process group, SIGKILL after a grace period) and waits
    /// until nothing accepts on its address any more. Used by outage tests; drop calls it too.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + TERM_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        // Workers (spamd and rspamd children) left in the group are not waited for by
        // `child.wait()`: make sure none survives the test.
        signal_group(pgid, "KILL");
        let deadline = Instant::now() + TERM_TIMEOUT;
        while self.connect().is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Scans `data` with a raw clamd `zINSTREAM` (what clamdscan --stream does) and returns
    /// clamd's answer, such as `stream: OK` or `stream: Eicar-Test-Signature.UNOFFICIAL FOUND`.
    pub fn clamd_scan(&self, data: &[u8]) -> io::Result<String> {
        assert_eq!(
            self.kind,
            ScannerKind::Clamd,
            "clamd_scan on {:?}",
            self.kind
        );
        let mut c = self.connect()?;
        c.write_all(b"zINSTREAM\0")?;
        for chunk in data.chunks(64 * 1024) {
            c.write_all(&(chunk.len() as u32).to_be_bytes())?;
            c.write_all(chunk)?;
        }
        c.write_all(&[0, 0, 0, 0])?;
        let got = read_until(&mut c, |b| b.contains(&0))?;
        Ok(String::from_utf8_lossy(&got)
            .trim_end_matches('\0')
            .to_string())
    }

    /// Checks `message` with the real `spamc -c` and returns its output (`SCORE/THRESHOLD`).
    pub fn spamc_check(&self, message: &[u8]) -> Result<String, String> {
        assert_eq!(
            self.kind,
            ScannerKind::Spamd,
            "spamc_check on {:?}",
            self.kind
        );
        let port = self.port().expect("tcp").to_string();
        run_with_stdin(
            Command::new("spamc").args(["-d", "127.0.0.1", "-p", &port, "-c", "-t", "60"]),
            message,
            &self.root,
        )
    }

    /// Checks `message` with the real `rspamc` and returns its report (`Action: ...`,
    /// `Score: ...`, symbols).
    pub fn rspamc_check(&self, message: &[u8]) -> Result<String, String> {
        assert_eq!(
            self.kind,
            ScannerKind::Rspamd,
            "rspamc_check on {:?}",
            self.kind
        );
        let host = self.addr();
        run_with_stdin(
            Command::new("rspamc").args(["-h", &host, "-t", "60"]),
            message,
            &self.root,
        )
    }

    /// Sends one message through the milter as an MTA would (connect from 127.0.0.1, HELO,
    /// MAIL, RCPT, each header, end of header, body, end of body) and returns the header
    /// changes it asks for as `(action, name, value)`, where action is `add`, `insert` or
    /// `change`, or the milter's refusal as an error.
    pub fn milter_check(
        &self,
        sender: &str,
        rcpt: &str,
        message: &[u8],
    ) -> Result<Vec<(String, String, String)>, String> {
        let mut c = self.connect().map_err(|e| format!("connect: {e}"))?;
        let mut io = |cmd: u8, data: &[u8], answer: bool| -> Result<Vec<(u8, Vec<u8>)>, String> {
            c.write_all(&milter_packet(cmd, data))
                .map_err(|e| format!("write: {e}"))?;
            let mut got = Vec::new();
            if !answer {
                return Ok(got);
            }
            loop {
                let mut len = [0u8; 4];
                c.read_exact(&mut len).map_err(|e| format!("read: {e}"))?;
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                c.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
                if body.is_empty() {
                    return Err("empty milter packet".into());
                }
                let code = body[0];
                got.push((code, body[1..].to_vec()));
                // Modification actions precede the final answer to end-of-body.
                if !matches!(
                    code,
                    b'+' | b'-' | b'h' | b'i' | b'm' | b'p' | b'e' | b'b' | b'q'
                ) || cmd == b'O'
                {
                    return Ok(got);
                }
            }
        };
        io(b'O', &optneg(), true)?;
        let z = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            v
        };
        let mut connect = z("client.example");
        connect.push(b'4');
        connect.extend_from_slice(&25u16.to_be_bytes());
        connect.extend_from_slice(&z("127.0.0.1"));
        let mut steps: Vec<(u8, Vec<u8>)> = vec![
            (b'C', connect),
            (b'H', z("client.example")),
            (b'M', z(&format!("<{sender}>"))),
            (b'R', z(&format!("<{rcpt}>"))),
        ];
        let (head, body) = split_message(message);
        for (name, value) in head {
            let mut d = z(&name);
            d.extend_from_slice(&z(&value));
            steps.push((b'L', d));
        }
        steps.push((b'N', Vec::new()));
        steps.push((b'B', body.to_vec()));
        steps.push((b'E', Vec::new()));
        let mut edits = Vec::new();
        for (cmd, data) in steps {
            for (code, data) in io(cmd, &data, true)? {
                let fields: Vec<String> = data
                    .split(|&b| b == 0)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                match code {
                    b'c' | b'a' => {}
                    b'h' => edits.push((
                        "add".into(),
                        fields[0].clone(),
                        fields.get(1).cloned().unwrap_or_default(),
                    )),
                    b'i' | b'm' => {
                        // index (4 bytes), name, value
                        let rest: Vec<String> = data[4.min(data.len())..]
                            .split(|&b| b == 0)
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect();
                        edits.push((
                            if code == b'i' { "insert" } else { "change" }.into(),
                            rest[0].clone(),
                            rest.get(1).cloned().unwrap_or_default(),
                        ));
                    }
                    other => {
                        return Err(format!(
                            "milter answered {:?} {:?}",
                            other as char,
                            String::from_utf8_lossy(&data)
                        ));
                    }
                }
            }
        }
        let _ = io(b'Q', &[], false);
        Ok(edits)
    }
}

impl Drop for Scanner {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("PETREL_KEEP_TMP").is_some()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!("kept {} data in {}", self.kind.name(), kept.display());
        }
    }
}

/// Sends SIGNAL to every process in group `pgid` (the daemons are group leaders).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` with `input` on stdin (through a file in `dir`), returns stdout or a description
/// of the failure.
fn run_with_stdin(cmd: &mut Command, input: &[u8], dir: &Path) -> Result<String, String> {
    let path = dir.join(format!("stdin-{}", std::process::id()));
    fs::write(&path, input).map_err(|e| e.to_string())?;
    let file = fs::File::open(&path).map_err(|e| e.to_string())?;
    let out = cmd
        .stdin(file)
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let _ = fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // spamc -c exits 1 for spam: only a missing answer is a failure.
    if stdout.trim().is_empty() {
        return Err(format!(
            "{:?} printed nothing ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// A milter packet: 4-byte big-endian length (command byte included), command, data.
fn milter_packet(cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(cmd);
    p.extend_from_slice(data);
    p
}

/// SMFIC_OPTNEG data: protocol version 6, every action, no protocol steps skipped.
fn optneg() -> Vec<u8> {
    let mut d = 6u32.to_be_bytes().to_vec();
    d.extend_from_slice(&0x1ffu32.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes());
    d
}

/// Splits a CRLF message into unfolded-as-sent header fields `(name, value after the colon)`
/// and the body.
fn split_message(message: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    let body = message.get(end + 2..).unwrap_or(&[]);
    let head = String::from_utf8_lossy(&message[..end]).into_owned();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str("\r\n");
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_string(), value.to_string()));
        }
    }
    (fields, body)
}

/// How a [`FakeScanner`] misbehaves.
#[derive(Clone, Debug)]
pub enum Misbehaviour {
    /// Accepts and reads everything, never answers, keeps the connection open (a hung scanner).
    Silent,
    /// Reads until the client pauses (or 64 KiB), then writes these bytes and closes.
    Garbage(Vec<u8>),
    /// Closes the connection after reading this many bytes (a scanner crashing mid-stream).
    CloseAfter(usize),
    /// Once the client pauses, writes `prefix`, then one `filler` byte every 500 ms for as long
    /// as the connection lasts: an answer that keeps coming and never ends (a scanner that is
    /// not silent, so a per-read idle timeout never fires).
    Trickle {
        /// The start of a plausible answer.
        prefix: Vec<u8>,
        /// The byte repeated after it.
        filler: u8,
    },
}

/// A TCP listener on a free loopback port that speaks no scanner protocol properly, for the
/// failure-policy tests. Stops (and closes every connection) on drop.
pub struct FakeScanner {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeScanner {
    /// Starts listening with the given behaviour.
    pub fn start(how: Misbehaviour) -> FakeScanner {
        let port = free_port();
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind fake scanner port");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        let stop3 = stop2.clone();
                        let how = how.clone();
                        conns.push(std::thread::spawn(move || serve_fake(stream, how, stop3)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        FakeScanner {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// The value for Petrel's `[filter]` keys: `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn serve_fake(mut stream: TcpStream, how: Misbehaviour, stop: Arc<AtomicBool>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut seen = 0usize;
    let mut idle = 0u32;
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut chunk) {
            Ok(0) => {
                if matches!(how, Misbehaviour::Silent) {
                    // Half-closed by the client: keep our side open and silent.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                return;
            }
            Ok(n) => {
                seen += n;
                idle = 0;
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                idle += 1;
            }
            Err(_) => return,
        }
        match &how {
            Misbehaviour::Silent => {}
            Misbehaviour::Garbage(bytes) => {
                if (seen > 0 && idle >= 3) || seen >= 65536 {
                    let _ = stream.write_all(bytes);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
            Misbehaviour::CloseAfter(n) => {
                if seen >= *n {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            }
            Misbehaviour::Trickle { prefix, filler } => {
                if (seen > 0 && idle >= 3) || seen >= 65536 {
                    if stream.write_all(prefix).is_err() {
                        return;
                    }
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(500));
                        if stream.write_all(&[*filler]).is_err() {
                            return;
                        }
                    }
                    return;
                }
            }
        }
    }
}

impl Drop for FakeScanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a [`FakeMilter`] answers at the end of the message.
#[derive(Clone, Debug)]
pub enum MilterAction {
    /// `SMFIR_ACCEPT` after adding a header field (`SMFIR_ADDHEADER`).
    AddHeader(String, String),
    /// `SMFIR_ACCEPT` after changing the `index`-th (1-based) field `name` to `value`
    /// (`SMFIR_CHGHEADER`; an empty value deletes it).
    ChangeHeader(String, u32, String),
    /// `SMFIR_REJECT` (Postfix answers `550 5.7.1 Command rejected`).
    Reject,
    /// `SMFIR_TEMPFAIL` (Postfix answers `451 4.7.1 Service unavailable - try again later`).
    TempFail,
    /// `SMFIR_REPLYCODE` with this text, such as `"550 5.7.0 Policy says no"`.
    ReplyCode(String),
    /// `SMFIR_DISCARD`: accepted and dropped.
    Discard,
    /// `SMFIR_QUARANTINE` with this reason, then `SMFIR_ACCEPT`.
    Quarantine(String),
}

/// A small Sendmail milter on a free loopback port that answers `continue` to every step and
/// a scripted [`MilterAction`] at the end of the message (the "small test milter" of issue
/// 10, for the actions OpenDKIM never takes). It records the header fields it was shown.
/// Stops on drop.
pub struct FakeMilter {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    messages: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeMilter {
    /// Starts the milter; every message gets `action`.
    pub fn start(action: MilterAction) -> FakeMilter {
        let port = free_port();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind milter port");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let messages = Arc::new(AtomicUsize::new(0));
        let (stop2, seen2, messages2) = (stop.clone(), seen.clone(), messages.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (action, seen, messages) =
                            (action.clone(), seen2.clone(), messages2.clone());
                        conns.push(std::thread::spawn(move || {
                            let _ = serve_milter(stream, &action, &seen, &messages);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        FakeMilter {
            port,
            stop,
            seen,
            messages,
            thread: Some(thread),
        }
    }

    /// The value for Petrel's `[filter] milters` list: `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The header fields (name, value) the MTA showed it, over all messages.
    pub fn headers_seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many messages reached the end-of-message step.
    pub fn messages(&self) -> usize {
        self.messages.load(Ordering::SeqCst)
    }
}

impl Drop for FakeMilter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One milter connection: negotiate, `continue` every step, `action` at end of message.
fn serve_milter(
    mut s: TcpStream,
    action: &MilterAction,
    seen: &std::sync::Mutex<Vec<(String, String)>>,
    messages: &AtomicUsize,
) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let z = |parts: &[&str]| -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(p.as_bytes());
            v.push(0);
        }
        v
    };
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return Ok(());
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > 1 << 20 {
            return Ok(());
        }
        let mut pkt = vec![0u8; n];
        s.read_exact(&mut pkt)?;
        let (cmd, data) = (pkt[0], &pkt[1..]);
        match cmd {
            b'O' => {
                // Version 6, every action the MTA offers, and every step with a reply.
                let actions = data.get(4..8).unwrap_or(&[0, 0, 0, 0x1f]);
                let mut d = 6u32.to_be_bytes().to_vec();
                d.extend_from_slice(actions);
                d.extend_from_slice(&0u32.to_be_bytes());
                s.write_all(&milter_packet(b'O', &d))?;
            }
            b'D' | b'A' => {}
            b'Q' => return Ok(()),
            b'L' => {
                let mut parts = data.split(|&b| b == 0);
                let name = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
                let value = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((name, value));
                s.write_all(&milter_packet(b'c', &[]))?;
            }
            b'E' => {
                messages.fetch_add(1, Ordering::SeqCst);
                let mut out = Vec::new();
                match action {
                    MilterAction::AddHeader(name, value) => {
                        out.extend(milter_packet(b'h', &z(&[name, value])));
                        out.extend(milter_packet(b'a', &[]));
                    }
                    MilterAction::ChangeHeader(name, index, value) => {
                        let mut d = index.to_be_bytes().to_vec();
                        d.extend(z(&[name, value]));
                        out.extend(milter_packet(b'm', &d));
                        out.extend(milter_packet(b'a', &[]));
                    }
                    MilterAction::Reject => out.extend(milter_packet(b'r', &[])),
                    MilterAction::TempFail => out.extend(milter_packet(b't', &[])),
                    MilterAction::ReplyCode(text) => {
                        out.extend(milter_packet(b'y', &z(&[text])));
                    }
                    MilterAction::Discard => out.extend(milter_packet(b'd', &[])),
                    MilterAction::Quarantine(reason) => {
                        out.extend(milter_packet(b'q', &z(&[reason])));
                        out.extend(milter_packet(b'a', &[]));
                    }
                }
                s.write_all(&out)?;
            }
            // Connect, HELO, MAIL, RCPT, DATA, end of header, body chunks, unknown commands.
            _ => s.write_all(&milter_packet(b'c', &[]))?,
        }
    }
}
