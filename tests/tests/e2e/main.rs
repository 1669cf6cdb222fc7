//! End-to-end tests of the Foundation issue: the real `petrel` binary on loopback, driven by a
//! raw-socket client, Python's smtplib and swaks. Nearly every test runs once per runtime, as
//! `MODULE::TEST::smol` and `MODULE::TEST::blocking`.
//!
//! Build the binary first: `cargo build -p petrel && cargo test -p petrel-tests`.

use std::path::PathBuf;

use petrel_tests::{Delivery, Server, check_delivery};

/// Generates `mod NAME { #[test] fn smol(); #[test] fn blocking(); }` calling `NAME(Runtime)`.
macro_rules! both_runtimes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn smol() {
                    super::$name(petrel_tests::Runtime::Smol)
                }
                #[test]
                fn blocking() {
                    super::$name(petrel_tests::Runtime::Blocking)
                }
            }
        )*
    };
}

/// `vec![x.to_string(), ...]`, for command-line arguments.
macro_rules! sargs {
    ($($x:expr),* $(,)?) => { vec![$($x.to_string()),*] };
}

mod auth;
mod check;
mod config;
mod conversation;
mod crash;
mod data;
mod deliver;
mod dkim;
mod dovecot;
mod ehlo;
mod fetch;
mod filter;
mod filter_faults;
mod imap;
mod imap_idle;
mod inbound;
mod limits;
mod lmtp;
mod managesieve;
mod mbox;
mod mbsync;
mod mta_sts;
mod outbound;
mod pipelining;
mod pop3;
mod postfix;
mod robustness;
mod sendmail;
mod shutdown;
mod sieve;
mod smuggling;
mod submission;
mod swaks;
mod tls;
mod transfer;
mod users;

/// Panics with `msg` and the tail of the server's log.
#[track_caller]
fn fail(server: &Server, msg: impl std::fmt::Display) -> ! {
    panic!("{msg}\n{}", server.log_tail(40))
}

/// Writes `bytes` into a file in the server's temp dir and returns its path.
fn temp_file(server: &Server, name: &str, bytes: &[u8]) -> PathBuf {
    let path = server.root().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

/// Asserts `user` has exactly `n` messages in new/ + cur/ and returns them.
#[track_caller]
fn expect_messages(server: &Server, user: &str, n: usize) -> Vec<Vec<u8>> {
    let msgs = server.new_messages(user);
    // Maildir++ `,S=<size>` in a file name must be the file's size (Dovecot relies on it).
    for path in server.message_files(user) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(size) = name.split(',').find_map(|f| f.strip_prefix("S=")) {
            let size = size.split(':').next().unwrap_or(size);
            let actual = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size.parse::<u64>().ok() != Some(actual) {
                fail(
                    server,
                    format!(
                        "{}: S={size} but the file has {actual} bytes",
                        path.display()
                    ),
                );
            }
        }
    }
    if msgs.len() != n {
        let shown: Vec<String> = msgs
            .iter()
            .map(|m| String::from_utf8_lossy(&m[..m.len().min(300)]).into_owned())
            .collect();
        fail(
            server,
            format!(
                "{user} has {} message(s) in new/+cur/, expected {n}; files: {:?}\nheads: {shown:#?}",
                msgs.len(),
                server.message_files(user)
            ),
        );
    }
    msgs
}

/// Asserts `user` has exactly one message and that it matches `want`.
#[track_caller]
fn expect_one_delivery(server: &Server, user: &str, want: &Delivery<'_>) -> Vec<u8> {
    let msg = expect_messages(server, user, 1).remove(0);
    if let Err(e) = check_delivery(&msg, want) {
        fail(server, format!("message stored for {user} is wrong: {e}"));
    }
    msg
}

/// Asserts the outbound queue holds no file at all.
#[track_caller]
fn expect_empty_queue(server: &Server) {
    let q = server.queue_files();
    if !q.is_empty() {
        let names: Vec<_> = q.iter().map(|(p, _)| p.display().to_string()).collect();
        fail(
            server,
            format!("the outbound queue should be empty, holds {names:?}"),
        );
    }
}

/// Parses `KEY value` lines printed by a client script: the value of the first line with `key`.
fn printed<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout.lines().find_map(|l| {
        l.strip_prefix(key).and_then(|r| {
            r.strip_prefix(' ')
                .or(if r.is_empty() { Some("") } else { None })
        })
    })
}

/// Decodes lower-case hex as printed by the client scripts.
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// What a message from `sender@remote.example` on plain SMTP must look like, without the
/// protocol and EHLO-name checks.
fn remote(message: &[u8]) -> Delivery<'_> {
    Delivery {
        sender: "sender@remote.example",
        message,
        protocol: None,
        tls: false,
        helo: None,
    }
}
