//! The IMAP fetch client (work in progress).

/// An IMAP fetch session (work in progress).
pub struct ImapFetch;
