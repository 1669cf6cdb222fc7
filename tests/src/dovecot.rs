//! A private Dovecot (Debian's `dovecot-imapd` / `dovecot-pop3d`) in a temp directory, on free
//! loopback ports: the reference server for migration tests (Dovecot reading a Petrel Maildir,
//! Petrel opening a folder Dovecot made) and for side-by-side comparisons.
//!
//! Users and passwords come from a passwd-file (`{PLAIN}` scheme) that both the passdb and the
//! userdb read; each user's mail is at a Maildir path the test chooses
//! ([`DovecotUser::maildir`]), so Dovecot can be pointed straight at a Petrel user's Maildir.
//! Plaintext logins are allowed (`ssl = no`, `disable_plaintext_auth = no`): it only listens on
//! 127.0.0.1. `base_dir`, `state_dir`, the log and Dovecot's index files all live in the temp
//! directory, so nothing outside it is touched except the Maildirs themselves.
//!
//! Dovecot refuses to give mail access to UID 0 and to run its login processes as root. When
//! the tests run as root (as in CI containers), the mail processes run as the `dovecot` system
//! user, logins as `dovenull`, and [`Dovecot::grant_access`] hands a Maildir to the mail user
//! (a recursive chown; root, and so Petrel under test, can still read and write it). Run as
//! an ordinary user, everything runs as that user and `grant_access` does nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::free_port;

/// Where the Dovecot master binary lives on Debian.
const DOVECOT_BIN: &str = "/usr/sbin/dovecot";

/// One Dovecot user: login name, plaintext password and the Maildir that holds their mail.
#[derive(Clone, Debug)]
pub struct DovecotUser {
    /// Login name, for example `alice@example.test`.
    pub name: String,
    /// Plaintext password (stored as `{PLAIN}` in the passwd-file).
    pub password: String,
    /// The user's Maildir root (INBOX; other folders are Maildir++ `.Name` directories in it).
    pub maildir: PathBuf,
}

impl DovecotUser {
    /// A user whose mail is at `maildir`.
    pub fn new(name: &str, password: &str, maildir: impl Into<PathBuf>) -> DovecotUser {
        DovecotUser {
            name: name.to_string(),
            password: password.to_string(),
            maildir: maildir.into(),
        }
    }
}

/// A running private Dovecot, stopped (and its temp directory removed) on drop.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    users: Vec<DovecotUser>,
    /// uid:gid the mail processes run as.
    mail_owner: (u32, u32),
    /// Port of the plaintext IMAP listener on 127.0.0.1.
    pub imap_port: u16,
    /// Port of the plaintext POP3 listener on 127.0.0.1.
    pub pop3_port: u16,
}

/// Looks up a user in /etc/passwd: (uid, gid).
fn passwd_entry(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Name of the user owning this process (from /etc/passwd), and its uid:gid.
fn current_user() -> (String, u32, u32) {
    let out = |args: &[&str]| -> String {
        Command::new("id")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let uid = out(&["-u"]).parse().expect("id -u");
    let gid = out(&["-g"]).parse().expect("id -g");
    (out(&["-un"]), uid, gid)
}

impl Dovecot {
    /// Starts Dovecot with IMAP and POP3 for `users`, and waits until the IMAP listener greets.
    /// Creates each user's Maildir root if missing. Panics (with the end of Dovecot's log) if
    /// Dovecot is not installed or does not come up within 10 seconds.
    pub fn start(users: &[DovecotUser]) -> Dovecot {
        assert!(
            Path::new(DOVECOT_BIN).exists(),
            "{DOVECOT_BIN} missing: install dovecot-imapd and dovecot-pop3d (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("petrel-dovecot-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let (me, my_uid, my_gid) = current_user();
        let as_root = my_uid == 0;
        let (internal, login, mail_owner) = if as_root {
            let owner = passwd_entry("dovecot")
                .expect("as root, Dovecot needs the `dovecot` system user (dovecot-core makes it)");
            assert!(
                passwd_entry("dovenull").is_some(),
                "as root, Dovecot needs the `dovenull` system user (dovecot-core makes it)"
            );
            ("dovecot".to_string(), "dovenull".to_string(), owner)
        } else {
            (me.clone(), me.clone(), (my_uid, my_gid))
        };
        for sub in ["base", "state", "home", "index"] {
            std::fs::create_dir_all(root.join(sub)).expect("dovecot dirs");
        }
        // Login processes (running as `login`) must be able to reach base_dir.
        set_mode(root, 0o755);
        set_mode(&root.join("base"), 0o755);

        let mut passwd = String::new();
        for (i, u) in users.iter().enumerate() {
            assert!(
                !u.name.contains(':') && !u.password.contains(':') && !u.password.contains('\n'),
                "passwd-file fields cannot hold ':' or newlines"
            );
            std::fs::create_dir_all(&u.maildir).expect("user maildir");
            let home = root.join("home").join(format!("u{i}"));
            let index = root.join("index").join(format!("u{i}"));
            std::fs::create_dir_all(&home).expect("home");
            std::fs::create_dir_all(&index).expect("index dir");
            // user:password:uid:gid:(gecos):home:(shell):extra_fields
            passwd.push_str(&format!(
                "{}:{{PLAIN}}{}:{}:{}::{}::userdb_mail=maildir:{}:INDEX={}\n",
                u.name,
                u.password,
                mail_owner.0,
                mail_owner.1,
                home.display(),
                u.maildir.display(),
                index.display(),
            ));
        }
        std::fs::write(root.join("passwd"), passwd).expect("passwd-file");

        let imap_port = free_port();
        let pop3_port = free_port();
        let log = root.join("dovecot.log");
        let conf = format!(
            r#"# Private Dovecot for Petrel's tests (tests/src/dovecot.rs).
protocols = imap pop3
listen = 127.0.0.1
base_dir = {base}
state_dir = {state}
log_path = {log}
info_log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
# Petrel's hierarchy separator (on disk both use Maildir++ `.Parent.Child` directories) and
# the special-use folders Petrel gives every user.
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Drafts {{
    special_use = \Drafts
  }}
  mailbox Trash {{
    special_use = \Trash
  }}
  mailbox Junk {{
    special_use = \Junk
  }}
  mailbox Archive {{
    special_use = \Archive
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"#,
            base = root.join("base").display(),
            state = root.join("state").display(),
            log = log.display(),
            passwd = root.join("passwd").display(),
            internal_group = if as_root {
                "dovecot".to_string()
            } else {
                group_name(my_gid)
            },
        );
        let conf_path = root.join("dovecot.conf");
        std::fs::write(&conf_path, conf).expect("dovecot.conf");

        let mut dovecot = Dovecot {
            child: Command::new(DOVECOT_BIN)
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {DOVECOT_BIN}: {e}")),
            dir,
            users: users.to_vec(),
            mail_owner,
            imap_port,
            pop3_port,
        };
        for u in users {
            dovecot.grant_access(&u.maildir);
        }
        for sub in ["home", "index"] {
            dovecot.grant_access(&dovecot.dir.path().join(sub));
        }
        dovecot.wait_ready();
        dovecot
    }

    /// Waits until the IMAP listener sends its `* OK` greeting.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("dovecot exited ({status}): {err}\n{}", self.log_tail(20));
            }
            if let Ok(s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.imap_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    let _ = (&s).write_all(b"x LOGOUT\r\n");
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not greet on port {} within 10 s:\n{}",
                self.imap_port,
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes `path` (recursively) readable and writable by Dovecot's mail processes: a chown to
    /// the mail user when the tests run as root, nothing otherwise. Call it after Petrel wrote
    /// files that Dovecot must read (Petrel creates them owner-only).
    pub fn grant_access(&self, path: &Path) {
        if current_user().1 != 0 || !path.exists() {
            return;
        }
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.mail_owner.0, self.mail_owner.1))
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown -R {} failed", path.display());
        // Dovecot must also be able to walk down to the Maildir.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == Path::new("/") || d == Path::new("") {
                break;
            }
            if let Ok(meta) = std::fs::metadata(d) {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode();
                if mode & 0o001 == 0 {
                    set_mode(d, (mode & 0o7777) | 0o001);
                }
            }
            dir = d.parent();
        }
    }

    /// Grants access to every user's Maildir again (see [`Dovecot::grant_access`]).
    pub fn grant_all(&self) {
        for u in &self.users {
            self.grant_access(&u.maildir);
        }
    }

    /// The temp directory holding the config, passwd-file, log and Dovecot's index files.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's log (errors from login and mail processes end up here).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The last `n` lines of Dovecot's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL would leave them running.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("PETREL_KEEP_TMP").is_some() {
            let path = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("tmp"));
            eprintln!("keeping {}", path.keep().display());
        }
    }
}

/// Sets the permission bits of `path`.
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Name of group `gid` from /etc/group (Dovecot's settings take names).
fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[2] == gid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}
