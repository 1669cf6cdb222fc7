//! Petrel's storage: Maildir++ mailboxes, the passwd-file user database and the outbound
//! queue. It executes the requests core's sessions emit ([`Store::execute`]) and reaches the disk
//! only through the [`fs::FileSystem`] trait.

pub mod delivery;
pub mod dkim_keys;
pub mod fetch_accounts;
pub mod folder;
pub mod fs;
pub mod group_sync;
pub mod imap_store;
pub mod index;
pub mod mailbox;
pub mod maildir;
pub mod maildrop;
pub mod mbox_file;
pub mod mbox_users;
pub mod outbound;
pub mod passwd;
pub mod password;
pub mod queue;
pub(crate) mod read_cache;
pub mod sieve_scripts;
pub mod signing;
pub mod store;
pub mod sts_cache;
pub mod throttle;
pub mod transfer;
pub mod uidlist;
pub mod users;
pub mod vacation;
pub mod watch;

pub use fs::{FileSystem, RealFs};
pub use sieve_scripts::{active_script, user_data_dir};
pub use store::{Store, StoreConfig};
pub use users::UserDb;
