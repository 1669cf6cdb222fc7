//! `petrel`: the command line of CONTRACT.md.

mod check;
mod config;
mod deliver;
mod dkim;
mod fetch;
mod outbound;
mod queue;
mod sendmail;
mod serve;
mod tls;
mod transfer;

use clap::{Parser, Subcommand};
use petrel_store::{RealFs, UserDb};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Petrel mail server: SMTP, submission and delivery in one binary.
#[derive(Debug, Parser)]
#[command(name = "petrel", version)]
struct Cli {
    /// Configuration file (default: ./petrel.toml when present, else the embedded defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every configured listener until SIGTERM or SIGINT.
    Serve {
        /// `smol` (async, default) or `blocking` (one thread per connection).
        #[arg(long, value_enum, default_value = "smol")]
        runtime: serve::RuntimeKind,
    },
    /// Delivers one message from standard input into a user's INBOX (local delivery agent).
    /// Exit 0 once durable; 67 no such user, 75 try again later, 65 bad message.
    Deliver {
        /// The recipient's address.
        #[arg(long)]
        to: String,
        /// The envelope sender, recorded as Return-Path (default: the null sender).
        #[arg(long)]
        from: Option<String>,
    },
    /// Imports mail into a user's folder; flags and dates are kept, and a second run adds
    /// only what is not there yet.
    Import {
        /// `mbox` or `maildir`.
        #[arg(value_enum)]
        format: transfer::Format,
        /// The user's address.
        address: String,
        /// The mbox file or Maildir directory.
        path: PathBuf,
        /// Target folder (default INBOX; `/` separates levels).
        #[arg(long)]
        folder: Option<String>,
    },
    /// Exports a folder to an mbox file, or to a Maildir when PATH ends in `/` or is a directory.
    Export {
        /// The user's address.
        address: String,
        /// The folder (INBOX, or e.g. Archive/2025).
        folder: String,
        /// Where to write.
        path: PathBuf,
    },
    /// Queues the message on standard input for delivery, as sendmail does for local
    /// programs (-t, -i, -oi, -f SENDER, -F NAME, recipients); also run as `sendmail`.
    Sendmail {
        /// sendmail's flags and the recipients.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The outbound queue.
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// Checks DOMAIN's DNS and mail server as receivers see them (MX, PTR, SPF, DKIM, DMARC,
    /// TLS, open relay) and prints each finding with the fix.
    Check {
        /// The mail domain.
        domain: String,
    },
    /// DKIM signing keys under DATA_DIR/dkim/.
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCommand,
    },
    /// Remote POP3 and IMAP accounts whose mail is fetched into a user's mailbox.
    Fetch {
        #[command(subcommand)]
        command: fetch::FetchCommand,
    },
    /// Manages the users in DATA_DIR/passwd.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Creates a user and their mailbox.
    Add {
        /// The user's address, e.g. alice@example.com.
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists the users.
    List,
    /// Removes a user; their mail is kept unless --purge.
    Del {
        /// The user's address.
        address: String,
        /// Also delete the user's mail.
        #[arg(long)]
        purge: bool,
    },
}

/// How a command failed: bad usage/config (exit 2) or anything else (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration or usage; the message names the key.
    Config(String),
    /// Any other failure.
    Other(String),
    /// A failure already reported, with the exit code a caller expects (sysexits for `deliver`).
    Exit(u8),
}

/// The system clock, for Received headers and file names.
#[derive(Debug)]
pub struct SystemClock;

impl petrel_core::WallClock for SystemClock {
    fn unix_seconds(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

fn init_logging() {
    init_logging_at("info");
}

/// Logging with `default` as the filter when `PETREL_LOG` is not set.
fn init_logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PETREL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
}

fn main() -> ExitCode {
    // Invoked as `sendmail` (a symlink, as MTAs install it): sendmail's own command line.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some("sendmail") {
        argv.splice(1..1, ["--".into()]);
        argv[0] = "petrel".into();
        argv.insert(1, "sendmail".into());
    }
    // `petrel sendmail ARGS --config PATH`: sendmail's arguments are taken raw, so lift a
    // --config given among them to where clap sees it.
    if let Some(at) = argv.iter().position(|a| a == "sendmail") {
        let mut i = at + 1;
        while i < argv.len() {
            if argv[i] == "--config" && i + 1 < argv.len() {
                let value = argv.remove(i + 1);
                let flag = argv.remove(i);
                argv.insert(at, value);
                argv.insert(at, flag);
                i += 1;
            } else if argv[i].to_string_lossy().starts_with("--config=") {
                let flag = argv.remove(i);
                argv.insert(at, flag);
                i += 1;
            } else {
                i += 1;
            }
        }
    }
    let cli = Cli::parse_from(argv);
    // A panic is a bug, never a user's error message: say so in one line, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("petrel: internal error{location}; please report it");
    }));
    let result = run(cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("petrel: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(msg)) => {
            eprintln!("petrel: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    // PETREL_CONFIG serves programs that run `sendmail` without knowing about --config.
    let from_env = std::env::var_os("PETREL_CONFIG").map(PathBuf::from);
    let path = cli.config.or(from_env);
    let config = config::load(path.as_deref()).map_err(|e| Failure::Config(e.to_string()))?;
    match cli.command {
        Command::Deliver { to, from } => deliver::run(&config, &to, from.as_deref()),
        Command::Import {
            format,
            address,
            path,
            folder,
        } => transfer::import(&config, format, &address, &path, folder.as_deref()),
        Command::Export {
            address,
            folder,
            path,
        } => transfer::export(&config, &address, &folder, &path),
        Command::Serve { runtime } => {
            init_logging();
            serve::run(config, runtime)
        }
        Command::User { command } => user(&config, command),
        Command::Sendmail { args } => sendmail::run(&config, &args),
        Command::Queue { command } => queue::run(&config, command),
        Command::Dkim { command } => dkim::run(&config, command),
        Command::Check { domain } => check::run(&config, &domain),
        Command::Fetch { command } => {
            if matches!(command, fetch::FetchCommand::Run { .. }) {
                // Warnings only (a crash recovered, a scanner down): a failure is one line.
                init_logging_at("warn");
            }
            fetch::run(&config, command)
        }
    }
}

fn user(config: &config::Config, command: UserCommand) -> Result<(), Failure> {
    let users = UserDb::new(Arc::new(RealFs), &config.data_dir);
    let other = |e: &dyn std::fmt::Display| Failure::Other(e.to_string());
    match command {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let password = read_password(password_stdin).map_err(|e| other(&e))?;
            if password.is_empty() {
                return Err(Failure::Config("the password is empty".into()));
            }
            let _lock = lock(config)?;
            match users.add(&address, &password) {
                Ok(id) => {
                    println!("added {}", id.0);
                    Ok(())
                }
                Err(petrel_store::users::UserError::Passwd(e)) => {
                    Err(Failure::Config(e.to_string()))
                }
                Err(e) => Err(other(&e)),
            }
        }
        UserCommand::List => {
            for u in users.list().map_err(|e| other(&e))? {
                println!("{u}");
            }
            Ok(())
        }
        UserCommand::Del { address, purge } => {
            let _lock = lock(config)?;
            if !users.remove(&address).map_err(|e| other(&e))? {
                return Err(Failure::Other(format!("no user {address}")));
            }
            if purge {
                let root = petrel_store::maildir::user_root(&config.data_dir, &address)
                    .map_err(|e| other(&e))?;
                if root.exists() {
                    std::fs::remove_dir_all(&root).map_err(|e| other(&e))?;
                }
                // The user's other data (Sieve scripts) lives in DATA_DIR/users/DOMAIN/LOCALPART/.
                let user = petrel_core::UserId(address.clone());
                let data =
                    petrel_store::user_data_dir(&config.data_dir, &user).map_err(|e| other(&e))?;
                if data.exists() {
                    std::fs::remove_dir_all(&data).map_err(|e| other(&e))?;
                }
            }
            println!("removed {address}");
            Ok(())
        }
    }
}

/// Serialises changes to the passwd file between concurrent `petrel user` commands.
fn lock(config: &config::Config) -> Result<std::fs::File, Failure> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Failure::Config(format!(
            "data_dir: cannot create {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let path = config.data_dir.join("passwd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::Other(format!("cannot open {}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| Failure::Other(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// Reads the password from stdin's first line, or prompts for it without echo on a terminal.
fn read_password(from_stdin: bool) -> std::io::Result<String> {
    use std::io::IsTerminal;
    let interactive = !from_stdin && std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if interactive {
        eprint!("Password: ");
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if interactive {
        stty("echo");
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
