//! End-to-end test harness for Petrel.
//!
//! The tests in `tests/tests/e2e/` start the real `petrel` binary (see [`petrel_bin`]) on loopback
//! ports with a fresh data directory ([`Server`]), and talk to it with a raw-socket SMTP client
//! written here ([`SmtpConn`]) and with clients nobody here wrote: Python's `smtplib` (scripts in
//! `tests/clients/`, run through [`python`]) and swaks ([`swaks`]).
//!
//! Run the suite from the workspace root:
//!
//! ```text
//! cargo build -p petrel && cargo test -p petrel-tests
//! ```
//!
//! `PETREL_BIN` overrides the binary; `PETREL_KEEP_TMP=1` keeps every test's data directory
//! (config, Maildirs, queue and the server's stderr) for inspection.

pub mod client;
pub mod dnsmasq;
pub mod dovecot;
pub mod fuzzing;
pub mod message;
pub mod scanners;
pub mod server;
pub mod tools;

pub use client::{Reply, SmtpConn, data_payload, stored_form};
pub use dnsmasq::Dnsmasq;
pub use dovecot::{Dovecot, DovecotUser};
pub use message::{
    Delivery, StoredMessage, check_delivery, contains, count_containing, sample_message,
};
pub use server::{
    ALICE, Account, BOB, CAROL, DEFAULT_USERS, Listener, Runtime, Server, ServerOptions, free_port,
    petrel_bin, workspace_root,
};
pub use tools::{Finished, python, run_with_timeout, swaks};
