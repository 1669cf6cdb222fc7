//! IMAP4rev2 (RFC 9051) with IMAP4rev1 (RFC 3501) compatibility: the command side.
//!
//! - [`command`]: commands as typed values.
//! - [`parser`]: the incremental, bounded parser that turns client bytes into commands, streams
//!   APPEND messages through without buffering them, and resynchronizes after errors.
//! - [`sequence`]: sequence sets (`1:4,7,*`, `$`) and their resolution against a mailbox.
//!
//! Decoding mailbox names (modified UTF-7, RFC 3501 5.1.3) is the session's job, with
//! [`crate::mutf7`]; the parser keeps names as the client sent them.

pub mod command;
pub mod parser;
pub mod request;
pub mod response;
pub mod search;
pub mod sequence;
pub mod session;
pub mod sort;
pub mod structure;
