//! IMAP commands as typed values (RFC 9051 6, RFC 3501 forms, and the extensions Petrel offers).
//!
//! Values are produced by [`super::parser::Parser`]; strings that may carry any octet (mailbox
//! names, search strings, passwords) stay bytes, names the protocol restricts to ASCII (flags,
//! header field names, capabilities) are `String`s.

use super::sequence::SequenceSet;
use crate::effect::Secret;

/// A complete command: the client's tag and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The tag, to echo in the tagged reply.
    pub tag: String,
    /// The command and its arguments.
    pub kind: CommandKind,
}

/// A mailbox name as sent (`astring`). `INBOX` in any case is [`Mailbox::Inbox`]; other names
/// keep their raw bytes (modified UTF-7 or UTF-8: decoding is the session's job, see
/// `crate::mutf7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mailbox {
    /// `INBOX`, case-insensitively.
    Inbox,
    /// Any other name.
    Other(Vec<u8>),
}

impl Mailbox {
    /// Classifies a raw name.
    pub fn from_bytes(name: Vec<u8>) -> Self {
        if name.eq_ignore_ascii_case(b"INBOX") {
            Mailbox::Inbox
        } else {
            Mailbox::Other(name)
        }
    }
}

/// A calendar date (`date` in SEARCH, the date part of `date-time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, four digits.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of month, 1-31 (checked against the month, leap years included).
    pub day: u8,
}

/// `date-time` as in APPEND: `"17-Jul-1996 02:44:25 -0700"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// The date.
    pub date: Date,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-60.
    pub second: u8,
    /// Offset from UTC in minutes (`-0700` is -420).
    pub zone_minutes: i16,
}

/// A message flag (RFC 9051 2.3.2) as it may appear in STORE, APPEND and SEARCH.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `\Answered`.
    Answered,
    /// `\Flagged`.
    Flagged,
    /// `\Deleted`.
    Deleted,
    /// `\Seen`.
    Seen,
    /// `\Draft`.
    Draft,
    /// Another `\name` flag (e.g. `\Recent` sent by an old client), name without the backslash.
    Extension(String),
    /// A keyword (`$Forwarded`, `NonJunk`), as sent.
    Keyword(String),
}

/// SELECT/EXAMINE parameters (RFC 7162).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectParams {
    /// `(CONDSTORE)`.
    pub condstore: bool,
    /// `(QRESYNC (...))`.
    pub qresync: Option<QResync>,
}

/// `QRESYNC (uidvalidity modseq [known-uids [(known-seqs known-uids)]])` (RFC 7162 3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QResync {
    /// The UIDVALIDITY the client last knew.
    pub uid_validity: u32,
    /// The last known HIGHESTMODSEQ.
    pub mod_seq: u64,
    /// UIDs the client knows.
    pub known_uids: Option<SequenceSet>,
    /// Message sequence numbers and matching UIDs, to shorten the VANISHED answer.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST selection options (RFC 5258 3, RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListSelect {
    /// `SUBSCRIBED`.
    Subscribed,
    /// `REMOTE`.
    Remote,
    /// `RECURSIVEMATCH`.
    RecursiveMatch,
    /// `SPECIAL-USE`.
    SpecialUse,
}

/// LIST return options (RFC 5258 3, RFC 5819, RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListReturn {
    /// `SUBSCRIBED`.
    Subscribed,
    /// `CHILDREN`.
    Children,
    /// `SPECIAL-USE`.
    SpecialUse,
    /// `STATUS (items)`.
    Status(Vec<StatusItem>),
}

/// STATUS data items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    /// `MESSAGES`.
    Messages,
    /// `RECENT` (IMAP4rev1).
    Recent,
    /// `UIDNEXT`.
    UidNext,
    /// `UIDVALIDITY`.
    UidValidity,
    /// `UNSEEN`.
    Unseen,
    /// `DELETED`.
    Deleted,
    /// `SIZE`.
    Size,
    /// `HIGHESTMODSEQ` (RFC 7162).
    HighestModSeq,
    /// `APPENDLIMIT` (RFC 7889).
    AppendLimit,
}

/// ESEARCH return options (RFC 4731, RFC 5182 SAVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchReturn {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
    /// `ALL`.
    All,
    /// `COUNT`.
    Count,
    /// `SAVE`.
    Save,
}

/// Which metadata item a `MODSEQ` search key names (RFC 7162 3.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryType {
    /// `priv`.
    Private,
    /// `shared`.
    Shared,
    /// `all`.
    All,
}

/// One search key (RFC 9051 6.4.4); a search program is a [`SearchKey::And`] of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the variants are the RFC's key names
pub enum SearchKey {
    /// Every key must match (a parenthesized list, or the top-level program).
    And(Vec<SearchKey>),
    /// `OR a b`.
    Or(Box<SearchKey>, Box<SearchKey>),
    /// `NOT a`.
    Not(Box<SearchKey>),
    /// A bare sequence set (message sequence numbers), `$` included.
    SequenceSet(SequenceSet),
    /// `UID set`.
    Uid(SequenceSet),
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    New,
    Old,
    Recent,
    Seen,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    Keyword(String),
    Unkeyword(String),
    Bcc(Vec<u8>),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    From(Vec<u8>),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    /// `HEADER field value`.
    Header(String, Vec<u8>),
    Before(Date),
    On(Date),
    Since(Date),
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Larger(u64),
    Smaller(u64),
    /// `MODSEQ ["/flags/name" type] modseq` (RFC 7162).
    ModSeq {
        /// The metadata entry name and type, when given.
        entry: Option<(Vec<u8>, EntryType)>,
        /// Messages with a MODSEQ at or above this match.
        mod_seq: u64,
    },
}

/// A part of a message named in `BODY[...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SectionText {
    /// `HEADER`.
    Header,
    /// `HEADER.FIELDS (names)`.
    HeaderFields(Vec<String>),
    /// `HEADER.FIELDS.NOT (names)`.
    HeaderFieldsNot(Vec<String>),
    /// `TEXT`.
    Text,
    /// `MIME` (only after a part number).
    Mime,
}

/// `section`: `[1.2.HEADER]` is part `[1, 2]` with text `Header`; `[]` is both empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Section {
    /// Part numbers, outermost first.
    pub part: Vec<u32>,
    /// What of the part; `None` for the whole part.
    pub text: Option<SectionText>,
}

/// One FETCH data item. The macros ALL, FAST and FULL are expanded by the parser (RFC 9051
/// 6.4.5), so a session only ever sees items.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FetchItem {
    /// `FLAGS`.
    Flags,
    /// `UID`.
    Uid,
    /// `INTERNALDATE`.
    InternalDate,
    /// `RFC822.SIZE`.
    Rfc822Size,
    /// `RFC822`.
    Rfc822,
    /// `RFC822.HEADER`.
    Rfc822Header,
    /// `RFC822.TEXT`.
    Rfc822Text,
    /// `ENVELOPE`.
    Envelope,
    /// `BODY` (non-extensible body structure).
    Body,
    /// `BODYSTRUCTURE`.
    BodyStructure,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`.
    BodySection {
        /// `.PEEK`: do not set `\Seen`.
        peek: bool,
        /// The section.
        section: Section,
        /// `<offset.length>`.
        partial: Option<(u32, u32)>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516).
    Binary {
        /// `.PEEK`.
        peek: bool,
        /// Part numbers.
        part: Vec<u32>,
        /// `<offset.length>`.
        partial: Option<(u32, u32)>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        /// Part numbers.
        part: Vec<u32>,
    },
    /// `MODSEQ` (RFC 7162).
    ModSeq,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// SORT keys (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the RFC's key names
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

/// One SORT criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SortCriterion {
    /// `REVERSE` given.
    pub reverse: bool,
    /// The key.
    pub key: SortKey,
}

/// THREAD algorithms (RFC 5256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThreadAlgorithm {
    /// `ORDEREDSUBJECT`.
    OrderedSubject,
    /// `REFERENCES`.
    References,
}

/// ID parameters (RFC 2971): field names and values (`NIL` is `None`), as sent.
pub type IdParams = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The command and its arguments. `uid` is true for the `UID` prefixed forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// `CAPABILITY`.
    Capability,
    /// `NOOP`.
    Noop,
    /// `LOGOUT`.
    Logout,
    /// `STARTTLS`.
    StartTls,
    /// `AUTHENTICATE mechanism [initial-response]` (RFC 4959 SASL-IR).
    Authenticate {
        /// Mechanism name, uppercased.
        mechanism: String,
        /// The initial response, still base64; `=` (an empty response) is kept as `"="`.
        initial: Option<String>,
    },
    /// `LOGIN user password`.
    Login {
        /// User name.
        username: Vec<u8>,
        /// Password.
        password: Secret<Vec<u8>>,
    },
    /// `ENABLE cap...` (RFC 5161); names uppercased.
    Enable(Vec<String>),
    /// `SELECT mailbox [(params)]`.
    Select {
        /// The mailbox.
        mailbox: Mailbox,
        /// CONDSTORE / QRESYNC.
        params: SelectParams,
    },
    /// `EXAMINE mailbox [(params)]`.
    Examine {
        /// The mailbox.
        mailbox: Mailbox,
        /// CONDSTORE / QRESYNC.
        params: SelectParams,
    },
    /// `CREATE mailbox [(USE (attrs))]` (RFC 6154).
    Create {
        /// The mailbox.
        mailbox: Mailbox,
        /// Special-use attributes, with their backslash (`\Drafts`).
        special_use: Vec<String>,
    },
    /// `DELETE mailbox`.
    Delete(Mailbox),
    /// `RENAME from to`.
    Rename {
        /// Existing name.
        from: Mailbox,
        /// New name.
        to: Mailbox,
    },
    /// `SUBSCRIBE mailbox`.
    Subscribe(Mailbox),
    /// `UNSUBSCRIBE mailbox`.
    Unsubscribe(Mailbox),
    /// `LIST [(select)] reference pattern(s) [RETURN (...)]` (RFC 5258).
    List {
        /// Selection options.
        select: Vec<ListSelect>,
        /// Reference name, raw.
        reference: Vec<u8>,
        /// Mailbox patterns, raw (with `*` and `%`); at least one.
        patterns: Vec<Vec<u8>>,
        /// Return options.
        returns: Vec<ListReturn>,
    },
    /// `LSUB reference pattern`.
    Lsub {
        /// Reference name.
        reference: Vec<u8>,
        /// Pattern.
        pattern: Vec<u8>,
    },
    /// `NAMESPACE`.
    Namespace,
    /// `STATUS mailbox (items)`.
    Status {
        /// The mailbox.
        mailbox: Mailbox,
        /// Items asked.
        items: Vec<StatusItem>,
    },
    /// `IDLE`; the session then reads `DONE` with [`super::parser::Parser::expect_line`].
    Idle,
    /// `ID (params)` or `ID NIL` (RFC 2971).
    Id(Option<IdParams>),
    /// `UNSELECT`.
    Unselect,
    /// `CHECK`.
    Check,
    /// `CLOSE`.
    Close,
    /// `EXPUNGE`.
    Expunge,
    /// `UID EXPUNGE set` (RFC 4315).
    UidExpunge(SequenceSet),
    /// `[UID] SEARCH [RETURN (...)] [CHARSET x] keys`.
    Search {
        /// UID SEARCH.
        uid: bool,
        /// `RETURN (...)`: `Some(vec![])` for `RETURN ()`, which means ALL (RFC 4731).
        returns: Option<Vec<SearchReturn>>,
        /// `CHARSET`, as sent.
        charset: Option<String>,
        /// The keys, as an [`SearchKey::And`].
        criteria: SearchKey,
    },
    /// `[UID] FETCH set items [(CHANGEDSINCE n [VANISHED])]`.
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Items (macros expanded).
        items: Vec<FetchItem>,
        /// `CHANGEDSINCE` (RFC 7162).
        changed_since: Option<u64>,
        /// `VANISHED` (RFC 7162 QRESYNC, UID FETCH only).
        vanished: bool,
    },
    /// `[UID] STORE set [(UNCHANGEDSINCE n)] [+-]FLAGS[.SILENT] flags`.
    Store {
        /// UID STORE.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// `UNCHANGEDSINCE` (RFC 7162).
        unchanged_since: Option<u64>,
        /// Replace, add or remove.
        mode: StoreMode,
        /// `.SILENT`.
        silent: bool,
        /// The flags.
        flags: Vec<Flag>,
    },
    /// `[UID] COPY set mailbox`.
    Copy {
        /// UID COPY.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Destination.
        mailbox: Mailbox,
    },
    /// `[UID] MOVE set mailbox` (RFC 6851).
    Move {
        /// UID MOVE.
        uid: bool,
        /// Messages.
        set: SequenceSet,
        /// Destination.
        mailbox: Mailbox,
    },
    /// `[UID] SORT (criteria) charset keys` (RFC 5256).
    Sort {
        /// UID SORT.
        uid: bool,
        /// Sort criteria, at least one.
        criteria: Vec<SortCriterion>,
        /// Charset, as sent.
        charset: String,
        /// Search keys, as an [`SearchKey::And`].
        search: SearchKey,
    },
    /// `[UID] THREAD algorithm charset keys` (RFC 5256).
    Thread {
        /// UID THREAD.
        uid: bool,
        /// The algorithm.
        algorithm: ThreadAlgorithm,
        /// Charset, as sent.
        charset: String,
        /// Search keys, as an [`SearchKey::And`].
        search: SearchKey,
    },
}

/// The start of one APPEND message: what precedes its literal. The literal's bytes follow and
/// are streamed, never buffered (see [`super::parser::Parsed::AppendStart`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendStart {
    /// The command's tag.
    pub tag: String,
    /// Destination mailbox.
    pub mailbox: Mailbox,
    /// Flags to set.
    pub flags: Vec<Flag>,
    /// Internal date to set.
    pub date: Option<DateTime>,
    /// Message size in octets.
    pub size: u64,
    /// `~{n}`: a literal8 (RFC 3516), which may hold NUL.
    pub binary: bool,
    /// `{n}` rather than `{n+}`: the client waits for a `+` continuation before sending the
    /// message (or a tagged `NO [TOOBIG]`, after which it sends nothing).
    pub synchronizing: bool,
    /// 0 for the first message of the command, 1.. for further MULTIAPPEND (RFC 3502) messages.
    pub index: u32,
}
