//! Requests a session makes of the outside world (store, user database), and their answers.
//!
//! A session never touches storage: it emits an [`Effect`] with a request id and parks until the
//! driver hands back the matching [`Completion`].

use crate::smtp::address::{Address, ReversePath};
use std::fmt;

/// A value that must not appear in logs or debug output (passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A user of this server, named by the canonical (lowercase) address of their mailbox.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub String);

/// A message transaction opened in the store by [`Effect::BeginMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

/// One recipient of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as the client gave it (route stripped).
    pub address: Address,
    /// The local mailbox it resolved to, or `None` for a remote recipient (outbound queue).
    pub mailbox: Option<UserId>,
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Session id, for logs.
    pub session: String,
    /// Transaction id, as quoted in the Received header and the 250 reply.
    pub id: String,
    /// MAIL FROM; `Null` for bounces.
    pub sender: ReversePath,
    /// RCPT TO, in the order given, each at most once.
    pub recipients: Vec<Recipient>,
    /// The authenticated user who submitted it, if any.
    pub submitted_by: Option<UserId>,
}

/// Something a session needs done outside it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Effect {
    /// Check a password. Answer: [`Completion::Auth`].
    Authenticate {
        /// Authentication identity (the login name).
        username: String,
        /// The password.
        password: Secret<Vec<u8>>,
        /// The client's address, to slow down guessing from one place across connections.
        client_ip: String,
        /// True for loopback clients (counted per user only).
        loopback: bool,
    },
    /// Is this address one of our users? Answer: [`Completion::Recipient`].
    LookupRecipient {
        /// A recipient in a local domain.
        address: Address,
    },
    /// Open a message transaction; `trace` is written first (Return-Path is the store's). Answer:
    /// [`Completion::Began`].
    BeginMessage {
        /// Who the message is from and for.
        envelope: Envelope,
        /// Trace header block (Received:), CRLF-terminated.
        trace: Vec<u8>,
    },
    /// Append message bytes to the transaction. Answer: [`Completion::Appended`].
    AppendChunk {
        /// The transaction.
        tx: TxId,
        /// The bytes, already dot-unstuffed.
        bytes: Vec<u8>,
    },
    /// Make the message durable for every recipient. `prepend` holds header fields known only
    /// after the body (Authentication-Results); it goes right after Return-Path. Answer:
    /// [`Completion::Durable`] only once file and directory entries are on stable storage. Either
    /// way the transaction is over: after a failed commit the store has already cleaned up.
    Commit {
        /// The transaction.
        tx: TxId,
        /// Header fields to put on top, CRLF-terminated; usually empty.
        prepend: Vec<u8>,
        /// How recipients whose filters refuse the message are answered.
        refusals: Refusals,
        /// Deliver to the recipients' Junk folder instead of INBOX (DMARC quarantine, spam).
        junk: bool,
        /// Header changes asked for by content scanners (milters, X-Spam-* fields), applied in
        /// order to the header as the scanners saw it: the trace fields and the message's own
        /// header, not Return-Path or `prepend`. Usually empty.
        edits: Vec<crate::filter::HeaderEdit>,
    },
    /// Look these names up in the DNS. Answer: [`Completion::Dns`], one answer per question
    /// in the same order (a runtime without a resolver answers `TempFail`).
    Resolve {
        /// The questions.
        queries: Vec<(String, crate::dns::RecordType)>,
    },
    /// Drop the transaction and anything written for it. Answer: [`Completion::Aborted`].
    Abort {
        /// The transaction.
        tx: TxId,
    },
    /// Lock the user's INBOX for POP3 and list it. Answer: [`Completion::Maildrop`].
    OpenMaildrop {
        /// Whose INBOX.
        user: UserId,
    },
    /// Read part of a message. Answer: [`Completion::Data`], empty at the end.
    ReadMessage {
        /// Whose mailbox.
        user: UserId,
        /// The message's base name, from [`MaildropEntry::name`].
        name: String,
        /// Where to start.
        offset: u64,
        /// At most this many bytes.
        max: u32,
    },
    /// Delete these messages durably, then unlock the maildrop (POP3 UPDATE state; an empty
    /// list just unlocks). Answer: [`Completion::Done`].
    CloseMaildrop {
        /// Whose INBOX.
        user: UserId,
        /// Base names of the messages to delete.
        delete: Vec<String>,
    },
    /// Read part of a queued message for outbound delivery (the SMTP client). Answer:
    /// [`Completion::Data`] with the bytes as stored (CRLF lines, not dot-stuffed), empty at
    /// the end of the message.
    ReadQueued {
        /// The queue id.
        id: String,
        /// Where to start.
        offset: u64,
        /// At most this many bytes.
        max: usize,
    },
    /// The outcome of one outbound job, per recipient, emitted once the client knows it and
    /// before it goes on to the next job or QUIT. Answer: [`Completion::Done`] once recorded.
    Report {
        /// The queue id.
        id: String,
        /// Each recipient of the job with its outcome, in the job's order.
        results: Vec<(String, crate::smtp::client::RcptResult)>,
    },
    /// Read or change the user's Sieve scripts (ManageSieve). Answer: [`Completion::Sieve`],
    /// for changes only once they are durable.
    Sieve {
        /// Whose scripts.
        user: UserId,
        /// What to do.
        request: crate::managesieve::SieveRequest,
    },
    /// Read or change the user's folders and messages (IMAP). Answer: [`Completion::Imap`],
    /// for changes only once they are durable.
    Imap {
        /// Whose folders.
        user: UserId,
        /// What to do.
        request: crate::imap::request::ImapRequest,
    },
    /// Read or change a remote account's durable fetch state (the fetch client sessions,
    /// [`crate::fetch`]). Answer: [`Completion::Fetch`], for changes only once durable.
    Fetch {
        /// Whose account.
        user: UserId,
        /// The account's number among the user's accounts.
        account: u32,
        /// What to do.
        request: crate::fetch::FetchRequest,
    },
    /// One step on a content scanner's connection (clamd, spamd, rspamd, a milter). The
    /// connection belongs to the session that asked: the runtime keeps it by `conn` and closes
    /// every one still open when the session ends. Answers per [`ScanOp`].
    Scan {
        /// Which of the session's scanner connections.
        conn: ScanConn,
        /// What to do on it.
        op: ScanOp,
    },
}

/// A session's name for one of its scanner connections (unique within the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanConn(pub u32);

/// One step on a scanner connection ([`Effect::Scan`]). Every step carries the time it may
/// take: the runtime applies it as a socket timeout and answers [`Completion::Failed`] when it
/// passes. The session decides the timeouts (from its own deadline), never the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOp {
    /// Connect to `target`: `host:port` (TCP) or `unix:/path` (a unix socket). Answer:
    /// [`Completion::Done`] or [`Completion::Failed`].
    Connect {
        /// Where the scanner listens.
        target: String,
        /// Longest the connect may take.
        timeout: std::time::Duration,
    },
    /// Write all of `bytes`. Answer: [`Completion::Done`] or [`Completion::Failed`].
    Send {
        /// What to write.
        bytes: Vec<u8>,
        /// Longest the write may take.
        timeout: std::time::Duration,
    },
    /// Read what is available, at most `max` bytes, waiting up to `timeout` for the first.
    /// Answer: [`Completion::Data`] (empty when the scanner closed the connection) or
    /// [`Completion::Failed`] (also when nothing came within `timeout`).
    Receive {
        /// Most bytes to return.
        max: usize,
        /// Longest to wait.
        timeout: std::time::Duration,
    },
    /// Close the connection (unknown connections are fine), and log what came of the scan.
    /// Answer: [`Completion::Done`].
    Close {
        /// The scanner and its verdict or failure, one line for the log, such as
        /// `clamd 127.0.0.1:3310: reject 554 5.7.1 Virus found: Eicar-Test-Signature`.
        outcome: String,
        /// True when the scanner failed (the failure policy applied): logged as a warning.
        failed: bool,
    },
}

/// A message in a POP3 maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildropEntry {
    /// Its IMAP UID (POP3 UIDL is derived from it).
    pub uid: u32,
    /// Size in octets, CRLF line ends.
    pub size: u64,
    /// The store's name for it.
    pub name: String,
}

/// Outcome of opening a maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaildropOutcome {
    /// Locked and listed.
    Ready {
        /// The folder's UIDVALIDITY.
        uidvalidity: u32,
        /// Messages in UID order.
        messages: Vec<MaildropEntry>,
    },
    /// Another POP3 session holds the lock.
    InUse,
    /// The mailbox cannot be read now.
    TempFail,
}

/// Temporary (retry later, 4xx) or permanent (5xx) failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The same request may succeed later.
    Temporary,
    /// It never will.
    Permanent,
}

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// Temporary or permanent.
    pub class: ErrorClass,
    /// For logs; never sent to the peer verbatim.
    pub message: String,
}

/// Outcome of a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password is right; this is the user.
    Success(UserId),
    /// Unknown user or wrong password (indistinguishable on purpose).
    Failure,
    /// The same, and the answer must wait at least this long: repeated failures for the user or
    /// from the client's address are slowed down across connections.
    FailureAfter(std::time::Duration),
    /// The user database could not be read.
    TempFail,
}

/// Outcome of a recipient lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// A local user's mailbox.
    Local(UserId),
    /// No such user.
    Unknown,
    /// The user database could not be read.
    TempFail,
}

/// How a commit treats recipients whose Sieve script rejects the message (RFC 5429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusals {
    /// Each recipient gets its own reply (LMTP): every refusal is returned in the receipt.
    PerRecipient,
    /// One reply for the whole message (SMTP, `deliver`): refusals are returned only when every
    /// recipient refused; otherwise the others get the message and the sender a rejection notice.
    AllOrNotice,
}

/// A recipient whose filter refused the message, and the reason it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The recipient address as given in RCPT TO.
    pub address: String,
    /// The reason, as the script wrote it (the session sanitises it for the reply).
    pub reason: String,
}

/// Proof that a message is on stable storage. Only the store's commit path creates one (by
/// [`Receipt::durable`]), and the session's success reply to a message can be built only from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    tx: TxId,
    refused: Vec<Refusal>,
}

impl Receipt {
    /// Issued by the store after the message file and every directory entry naming it have been
    /// fsynced. Calling it earlier breaks Petrel's one promise; nothing else may call it.
    pub fn durable(tx: TxId) -> Self {
        Receipt {
            tx,
            refused: Vec::new(),
        }
    }
    /// Like [`Receipt::durable`], for a message some recipients' filters refused: their copies
    /// were not stored, every other recipient's is durable.
    pub fn durable_except(tx: TxId, refused: Vec<Refusal>) -> Self {
        Receipt { tx, refused }
    }
    /// The recipients that refused the message (see [`Refusals`]).
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }
    /// The transaction this receipt is for.
    pub fn tx(&self) -> TxId {
        self.tx
    }
}

/// The answer to an [`Effect`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Completion {
    /// Answer to `Authenticate`.
    Auth(AuthOutcome),
    /// Answer to `LookupRecipient`.
    Recipient(RecipientOutcome),
    /// Answer to `BeginMessage`.
    Began(TxId),
    /// Answer to `AppendChunk`.
    Appended,
    /// Answer to `Commit`.
    Durable(Receipt),
    /// Answer to `Abort`.
    Aborted,
    /// Answer to `OpenMaildrop`.
    Maildrop(MaildropOutcome),
    /// Answer to `ReadMessage`: the bytes, empty at the end of the message.
    Data(Vec<u8>),
    /// Answer to requests that only succeed or fail (`CloseMaildrop`).
    Done,
    /// Answer to `Sieve`.
    Sieve(crate::managesieve::SieveAnswer),
    /// Answer to `Resolve`.
    Dns(Vec<crate::dns::Answer>),
    /// Answer to `Imap`.
    Imap(crate::imap::request::ImapAnswer),
    /// Answer to `Fetch`.
    Fetch(crate::fetch::FetchAnswer),
    /// Any request failed.
    Failed(StoreError),
}
