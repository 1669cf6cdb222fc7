//! What the IMAP session asks of the store ([`crate::Effect::Imap`]) and the answers it
//! expects ([`crate::Completion::Imap`]). Folder names are UTF-8 with `/` as the hierarchy
//! separator; flags are IMAP strings (`\Seen`, `$Forwarded`).

use crate::effect::TxId;

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
    /// `FLAGS`.
    Replace,
}

/// One request of an IMAP session to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImapRequest {
    /// Folders whose names match `pattern` (`*` matches anything, `%` anything but `/`).
    /// Answer: [`ImapAnswer::Folders`].
    List {
        /// The pattern, reference name already prefixed.
        pattern: String,
        /// Only subscribed folders (LSUB, `LIST (SUBSCRIBED)`), plus the parents of subscribed
        /// folders with `subscribed: false`, for `RECURSIVEMATCH`.
        subscribed_only: bool,
    },
    /// Counters of a folder. Answer: [`ImapAnswer::Status`] or `No("[NONEXISTENT] ...")`.
    Status {
        /// The folder.
        folder: String,
    },
    /// Open a folder. Answer: [`ImapAnswer::Snapshot`] or `No`.
    Select {
        /// The folder.
        folder: String,
        /// EXAMINE: the session changes nothing (no `\Seen` either).
        readonly: bool,
    },
    /// The current state of the selected folder (NOOP, IDLE polling, CHECK). Answer:
    /// [`ImapAnswer::Snapshot`].
    Refresh {
        /// The folder.
        folder: String,
    },
    /// A cheap fingerprint of the folder (IDLE asks every [`idle_poll`]): answer
    /// [`ImapAnswer::Stamp`]. The store computes it from directory metadata only, never by
    /// reading the folder. Guarantee: if a stamp `s != 0` is answered at time t1 and again at t2,
    /// the folder's messages and flags did not change between t1 and t2. `0` means "cannot
    /// tell" (a change too recent for timestamps to tell apart, or no timestamps at all): the
    /// session then refreshes. Stores that cannot stamp answer `No`; the session then refreshes.
    ///
    /// [`idle_poll`]: crate::imap::session::ImapConfig::idle_poll
    Changed {
        /// The folder.
        folder: String,
    },
    /// UIDs expunged from the folder after MODSEQ `since` (QRESYNC, RFC 7162: SELECT's
    /// `VANISHED (EARLIER)` and `UID FETCH ... (CHANGEDSINCE since VANISHED)`). Answer:
    /// [`ImapAnswer::Vanished`].
    Vanished {
        /// The folder.
        folder: String,
        /// The client's last known MODSEQ.
        since: u64,
    },
    /// Bytes of a message as stored (CRLF lines). Answer: [`ImapAnswer::Data`], empty at the end.
    Read {
        /// The folder.
        folder: String,
        /// The message.
        uid: u32,
        /// Where to start.
        offset: u64,
        /// At most this many bytes.
        max: usize,
    },
    /// Change flags. Answer: [`ImapAnswer::Stored`] once durable.
    Store {
        /// The folder.
        folder: String,
        /// The messages.
        uids: Vec<u32>,
        /// Add, remove or replace.
        mode: FlagMode,
        /// The flags.
        flags: Vec<String>,
        /// CONDSTORE: change only messages whose MODSEQ is at most this.
        unchanged_since: Option<u64>,
    },
    /// Remove messages marked `\Deleted`. Answer: [`ImapAnswer::Expunged`] once durable.
    Expunge {
        /// The folder.
        folder: String,
        /// `None`: every `\Deleted` message; `Some`: only those of these UIDs that are `\Deleted`.
        uids: Option<Vec<u32>>,
    },
    /// Copy (or move) messages. Answer: [`ImapAnswer::Copied`] once durable, or
    /// `No("[TRYCREATE] ...")`.
    Copy {
        /// Source folder.
        from: String,
        /// Destination folder.
        to: String,
        /// Source UIDs.
        uids: Vec<u32>,
        /// MOVE: remove them from the source afterwards.
        remove: bool,
    },
    /// Create a folder. Answer: [`ImapAnswer::Done`] or `No`.
    Create {
        /// The folder.
        folder: String,
    },
    /// Delete a folder. Answer: [`ImapAnswer::Done`] or `No`.
    Delete {
        /// The folder.
        folder: String,
    },
    /// Rename a folder. Answer: [`ImapAnswer::Done`] or `No`.
    Rename {
        /// Existing name.
        from: String,
        /// New name.
        to: String,
    },
    /// Subscribe or unsubscribe. Answer: [`ImapAnswer::Done`].
    Subscribe {
        /// The folder.
        folder: String,
        /// True to subscribe.
        subscribe: bool,
    },
    /// Begin an APPEND. Answer: [`ImapAnswer::Appending`] or `No("[TRYCREATE] ...")`; then
    /// [`crate::Effect::AppendChunk`] with the message bytes, then [`ImapRequest::AppendCommit`]
    /// (or [`crate::Effect::Abort`]).
    AppendBegin {
        /// The folder.
        folder: String,
        /// Flags to set.
        flags: Vec<String>,
        /// INTERNALDATE as Unix seconds, when the client gave one.
        date: Option<i64>,
    },
    /// Make the appended message durable. Answer: [`ImapAnswer::Appended`] only then.
    AppendCommit {
        /// The transaction.
        tx: TxId,
    },
}

/// A folder in a LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// UTF-8, `/`-separated.
    pub name: String,
    /// `\HasChildren`, `\Noselect`, `\Sent`...
    pub attributes: Vec<String>,
    /// Subscribed.
    pub subscribed: bool,
    /// Some folder below this one is subscribed (LIST-EXTENDED `CHILDINFO ("SUBSCRIBED")`).
    pub subscribed_children: bool,
}

/// STATUS counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderStatus {
    /// Messages.
    pub messages: u32,
    /// Next UID.
    pub uidnext: u32,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Total size in octets.
    pub size: u64,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
}

/// One message of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// UID.
    pub uid: u32,
    /// Flags. Shared: a big folder's messages have a handful of distinct flag sets, so a
    /// snapshot of 100,000 messages need not allocate 100,000 lists.
    pub flags: std::sync::Arc<[String]>,
    /// MODSEQ.
    pub modseq: u64,
    /// RFC822.SIZE.
    pub size: u64,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
}

/// A selected folder's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderSnapshot {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT.
    pub next_uid: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Messages in UID order.
    pub messages: Vec<MessageMeta>,
}

/// The store's answer to an [`ImapRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImapAnswer {
    /// LIST.
    Folders(Vec<FolderInfo>),
    /// STATUS.
    Status(FolderStatus),
    /// SELECT, EXAMINE, Refresh.
    Snapshot(FolderSnapshot),
    /// Read.
    Data(Vec<u8>),
    /// Vanished: the UIDs expunged after `since`, ascending. `complete` is false when the
    /// store no longer remembers every expunge after `since` (it keeps a bounded number): the
    /// session must then treat every UID it cannot see as possibly expunged.
    Vanished {
        /// Expunged UIDs.
        uids: Vec<u32>,
        /// Whether `uids` is every UID expunged after `since`.
        complete: bool,
    },
    /// Changed: the folder's stamp (see [`ImapRequest::Changed`]; 0 means unknown).
    Stamp(u64),
    /// Store: (uid, new flags, modseq); UIDs failing UNCHANGEDSINCE are left out.
    Stored(Vec<(u32, Vec<String>, u64)>),
    /// Expunge: the removed UIDs.
    Expunged(Vec<u32>),
    /// Copy: the destination's UIDVALIDITY and (source, destination) UID pairs.
    Copied {
        /// Destination UIDVALIDITY.
        uidvalidity: u32,
        /// (source UID, new UID).
        pairs: Vec<(u32, u32)>,
    },
    /// Create, Delete, Rename, Subscribe.
    Done,
    /// A NO with this text, e.g. `[NONEXISTENT] Mailbox does not exist`.
    No(String),
    /// AppendBegin.
    Appending(TxId),
    /// AppendCommit: durable.
    Appended {
        /// UIDVALIDITY.
        uidvalidity: u32,
        /// The new UID.
        uid: u32,
    },
}
