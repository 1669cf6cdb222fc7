//! The IMAP server session (RFC 9051, with RFC 3501 clients) as a pure state machine: the
//! not-authenticated, authenticated, selected and logout states, over a store reached only
//! through [`Effect::Imap`] requests (see [`super::request`]).
//!
//! One request is outstanding at a time; while one is, the session consumes no input (the
//! backpressure of DESIGN.md). Untagged updates (EXISTS, EXPUNGE, FETCH FLAGS) are computed by
//! diffing the session's snapshot of the selected folder with a fresh one, fetched only by
//! NOOP, CHECK and IDLE, so EXPUNGE is never sent during FETCH, STORE or SEARCH (RFC 9051 7.5.1).

use super::command::{
    AppendStart, Command, CommandKind, DateTime, FetchItem, Flag, ListReturn, ListSelect, Mailbox,
    QResync, SearchKey, SearchReturn, Section, SectionText, SelectParams, SortCriterion,
    StatusItem, StoreMode, ThreadAlgorithm,
};
use super::parser::{Limits, Parsed, Parser};
use super::request::{
    FlagMode, FolderSnapshot, FolderStatus, ImapAnswer, ImapRequest, MessageMeta,
};
use super::response::{self, days_from_civil, flag_list, internal_date, sequence_set};
use super::search::{self, Candidate};
use super::sequence::SequenceSet;
use super::sort::{self, SortInfo};
use super::structure::{self, SectionSpec};
use crate::effect::{AuthOutcome, Completion, Effect, Secret, TxId, UserId};
use crate::mutf7;
use crate::outbox::Outbox;
use crate::sasl::{self, SaslError};
use crate::service::PeerInfo;
use crate::session::{CloseReason, Event, RequestId, Session, TlsInfo};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything an IMAP session needs to know, shared by the sessions of one listener.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Our host name, for logs.
    pub hostname: String,
    /// Autologout: how long a client may be silent (RFC 9051 5.4: at least 30 minutes).
    pub command_timeout: Duration,
    /// How often the folder is looked at during IDLE when the runtime does not watch it. Each
    /// look is a cheap [`ImapRequest::Changed`] (two directory stats in the store); a snapshot
    /// is fetched only when that says the folder changed, so this can be short: changes show
    /// within it.
    pub idle_poll: Duration,
    /// How often the folder is looked at during IDLE when the runtime watches it and reports
    /// every change ([`Session::handle_folder_changed`]): only a safety net for changes a watch
    /// cannot see (another host writing over a network filesystem), so it is long and idle
    /// sessions cost nothing.
    pub idle_push_poll: Duration,
    /// Allow LOGIN and AUTHENTICATE without TLS from loopback clients.
    pub allow_plaintext_on_loopback: bool,
    /// STARTTLS can be offered (a certificate is configured, the listener is not implicit TLS).
    pub starttls: bool,
    /// Delay before answering a failed login.
    pub auth_failure_delay: Duration,
    /// Failed logins tolerated before the session is ended.
    pub max_auth_failures: u32,
    /// BAD commands tolerated before the session is ended.
    pub max_errors: u32,
    /// Bytes read from or written to the store at a time.
    pub chunk_size: usize,
    /// Largest message APPEND accepts (APPENDLIMIT), and largest one FETCH reads for parsing.
    pub max_message_size: u64,
    /// Bounds of the command parser.
    pub limits: Limits,
}

impl ImapConfig {
    /// A config with the RFC defaults.
    pub fn new(hostname: &str) -> Self {
        ImapConfig {
            hostname: hostname.to_string(),
            command_timeout: Duration::from_secs(30 * 60),
            idle_poll: Duration::from_millis(500),
            idle_push_poll: Duration::from_secs(30),
            allow_plaintext_on_loopback: false,
            starttls: true,
            auth_failure_delay: Duration::from_secs(1),
            max_auth_failures: 3,
            max_errors: 20,
            chunk_size: 64 * 1024,
            max_message_size: 50 * 1024 * 1024,
            limits: Limits::default(),
        }
    }
}

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    NotAuthenticated,
    /// AUTHENTICATE PLAIN sent `+`; the response line is next.
    AuthResponse(String),
    Authenticated,
    /// STARTTLS accepted; input is discarded until the handshake.
    AwaitTls,
    /// IDLE: waiting for DONE.
    Idle(String),
}

#[derive(Debug)]
struct Selected {
    folder: String,
    readonly: bool,
    snap: FolderSnapshot,
    /// The store's [`ImapAnswer::Stamp`] of the folder when `snap` was last refreshed during
    /// IDLE; an equal stamp later means nothing changed, so no snapshot is fetched.
    stamp: Option<u64>,
}

impl Selected {
    fn index_of(&self, uid: u32) -> Option<usize> {
        self.snap
            .messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
    }
    fn max_uid(&self) -> u32 {
        self.snap.messages.last().map_or(0, |m| m.uid)
    }
    fn count(&self) -> u32 {
        self.snap.messages.len() as u32
    }
}

#[derive(Debug)]
struct FetchJob {
    tag: String,
    uid: bool,
    items: Vec<FetchItem>,
    changed_since: Option<u64>,
    uids: Vec<u32>,
    pos: usize,
    buf: Vec<u8>,
    flags_changed: HashSet<u32>,
    failed: Option<&'static str>,
    /// The one whole-message item (`BODY[]`, `BODY.PEEK[]`, `RFC822`) of a FETCH that needs
    /// nothing else from the message: it is streamed from the store chunk by chunk as a
    /// literal of the message's RFC822.SIZE, never held whole.
    stream: Option<FetchItem>,
    /// While streaming a message: where the next read starts and the literal bytes still owed.
    streaming: Option<(u64, u64)>,
}

#[derive(Debug)]
struct SearchJob {
    tag: String,
    uid: bool,
    returns: Option<Vec<SearchReturn>>,
    key: SearchKey,
    uids: Vec<u32>,
    pos: usize,
    buf: Vec<u8>,
    hits: Vec<u32>,
    /// SORT or THREAD (RFC 5256) of the hits, with their keys.
    order: Option<Order>,
    infos: Vec<SortInfo>,
}

/// What SORT and THREAD do with the messages their search found.
#[derive(Debug)]
enum Order {
    Sort(Vec<SortCriterion>),
    Thread(ThreadAlgorithm),
}

impl Order {
    fn needs_header(&self) -> bool {
        match self {
            Order::Sort(criteria) => sort::needs_header(criteria),
            Order::Thread(_) => true,
        }
    }
}

#[derive(Debug)]
enum Job {
    Fetch(FetchJob),
    Search(SearchJob),
}

#[derive(Debug)]
struct Append {
    tag: String,
    /// The store transaction of the message being received.
    tx: Option<TxId>,
    chunk: Vec<u8>,
    synchronizing: bool,
    /// The whole command has been read (after its last message).
    ended: bool,
    /// MULTIAPPEND (RFC 3502): transactions of earlier messages, all bytes sent, committed
    /// only once every message has arrived, so that a refused message leaves none appended.
    done: Vec<TxId>,
    /// MULTIAPPEND: the next message's start, read while this one's last bytes were in flight.
    next: Option<AppendStart>,
    /// UIDs given by the commits so far, and the UIDVALIDITY.
    committed: Vec<u32>,
    uidvalidity: u32,
}

#[derive(Debug)]
enum Pending {
    Auth(String),
    /// Done/No: the tagged reply.
    Simple {
        tag: String,
        ok: &'static str,
    },
    List {
        tag: String,
        patterns: Vec<String>,
        lsub: bool,
        subscribed_only: bool,
        show_subscribed: bool,
    },
    Status {
        tag: String,
        name: String,
        items: Vec<StatusItem>,
    },
    Select {
        tag: String,
        folder: String,
        readonly: bool,
        /// SELECT (QRESYNC (...)): what the client knows.
        qresync: Option<QResync>,
    },
    /// SELECT (QRESYNC ...): the UIDs expunged since the client's MODSEQ; then the tagged OK.
    SelectVanished {
        tag: String,
        text: String,
        qresync: QResync,
    },
    /// UID FETCH ... (CHANGEDSINCE m VANISHED): the UIDs expunged since `m`; then the FETCH.
    FetchVanished {
        tag: String,
        fetch: CommandKind,
    },
    /// LIST-STATUS: the STATUS of one listed folder.
    ListStatus {
        tag: String,
        name: String,
    },
    /// IDLE, NOOP, CHECK: has the folder changed since the last stamp? With the tagged reply
    /// of a NOOP/CHECK.
    Changed(Option<(String, &'static str)>),
    /// A refresh the folder's stamp asked for; the stamp it will cover, and the tagged reply
    /// of a NOOP/CHECK.
    IdleRefresh(u64, Option<(String, &'static str)>),
    /// FETCH setting \Seen before it reads.
    Seen,
    /// Reading a message for the running job.
    Read,
    Store {
        tag: String,
        uid: bool,
        silent: bool,
        asked: Vec<u32>,
        unchanged_since: Option<u64>,
    },
    Expunge {
        tag: String,
        close: bool,
    },
    Copy {
        tag: String,
        remove: bool,
    },
    AppendBegin,
    AppendChunk,
    AppendCommit,
    /// An answer nobody waits for (Abort).
    Ignore,
}

/// The store request that begins receiving one APPEND message.
fn append_begin_request(folder: String, a: &AppendStart) -> ImapRequest {
    ImapRequest::AppendBegin {
        folder,
        flags: a.flags.iter().map(flag_name).collect(),
        date: a.date.map(datetime_unix),
    }
}

/// An IMAP server session (see the module docs and [`Session`]).
pub struct ImapSession {
    config: Arc<ImapConfig>,
    peer: PeerInfo,
    tls: Option<TlsInfo>,
    outbox: Outbox,
    parser: Parser,
    phase: Phase,
    user: Option<UserId>,
    selected: Option<Selected>,
    pending: Option<(RequestId, Pending)>,
    job: Option<Job>,
    append: Option<Append>,
    utf8: bool,
    rev2: bool,
    condstore: bool,
    /// ENABLE QRESYNC (RFC 7162): VANISHED instead of EXPUNGE.
    qresync: bool,
    /// Store transactions to abort (MULTIAPPEND failures), sent one at a time by `step`.
    aborts: Vec<TxId>,
    /// LIST ... RETURN (STATUS (items)) (RFC 5819): the items, and the listed selectable
    /// folders whose STATUS is still to be sent (in reverse order).
    list_status: Option<(Vec<StatusItem>, Vec<String>)>,
    /// LIST (SPECIAL-USE) (RFC 6154): only folders with a special-use attribute.
    list_special_only: bool,
    /// LIST (... RECURSIVEMATCH): parents of matching subscribed folders are listed too, with
    /// `CHILDINFO ("SUBSCRIBED")` (RFC 5258 3.5).
    list_recursive: bool,
    errors: u32,
    auth_failures: u32,
    deadline: Instant,
    idle_next: Option<Instant>,
    /// This IDLE's folder is watched by the runtime: poll only every `idle_push_poll`.
    idle_pushed: bool,
    /// A look the runtime asked for while a request was outstanding, done once it is answered:
    /// `true` to fetch a snapshot (the folder changed), `false` to compare the stamp.
    idle_poke: Option<bool>,
    delayed: Option<(Instant, String)>,
    ending: Option<CloseReason>,
    shutting_down: bool,
    closed: bool,
}

impl ImapSession {
    /// Opens a session and queues the greeting.
    pub fn new(config: Arc<ImapConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = ImapSession {
            deadline: now + config.command_timeout,
            tls: peer.tls.clone(),
            parser: Parser::new(config.limits),
            config,
            peer,
            outbox: Outbox::default(),
            phase: Phase::NotAuthenticated,
            user: None,
            selected: None,
            pending: None,
            job: None,
            append: None,
            utf8: false,
            rev2: false,
            condstore: false,
            qresync: false,
            aborts: Vec::new(),
            list_status: None,
            list_special_only: false,
            list_recursive: false,
            errors: 0,
            auth_failures: 0,
            idle_next: None,
            idle_pushed: false,
            idle_poke: None,
            delayed: None,
            ending: None,
            shutting_down: false,
            closed: false,
        };
        let caps = s.capabilities();
        s.line(&format!("* OK [CAPABILITY {caps}] Petrel ready."));
        s
    }

    /// Opens a session that only says the server is busy, then closes.
    pub fn refuse(config: Arc<ImapConfig>, peer: PeerInfo, now: Instant) -> Self {
        let mut s = Self::new(config, peer, now);
        s.outbox.out.clear();
        s.line("* BYE [UNAVAILABLE] Too many connections, try again later.");
        s.end(CloseReason::Refused);
        s.step();
        s
    }

    fn line(&mut self, text: &str) {
        self.outbox.out.extend_from_slice(text.as_bytes());
        self.outbox.out.extend_from_slice(b"\r\n");
    }

    fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        self.line(&format!("{tag} {status} {text}"));
    }

    /// A client mistake: `BAD`, counted; too many end the session.
    fn bad(&mut self, tag: Option<&str>, text: &str) {
        self.line(&format!("{} BAD {text}", tag.unwrap_or("*")));
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.line("* BYE Too many invalid IMAP commands.");
            self.end(CloseReason::TooManyErrors);
        }
    }

    fn end(&mut self, reason: CloseReason) {
        if self.ending.is_none() {
            self.ending = Some(reason);
        }
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls.is_some() || (self.peer.loopback && self.config.allow_plaintext_on_loopback)
    }

    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CONDSTORE",
            "QRESYNC",
            "MULTIAPPEND",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "SORT",
            "SORT=DISPLAY",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "SPECIAL-USE",
            "ESEARCH",
            "UTF8=ACCEPT",
        ];
        if self.user.is_none() {
            if self.config.starttls && self.tls.is_none() {
                caps.push("STARTTLS");
            }
            if self.plaintext_allowed() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        let mut text = caps.join(" ");
        text.push_str(&format!(" APPENDLIMIT={}", self.config.max_message_size));
        text
    }

    fn request(&mut self, effect: Effect, what: Pending) {
        debug_assert!(self.pending.is_none(), "one request at a time");
        let id = self.outbox.request(effect);
        self.pending = Some((id, what));
    }

    fn imap(&mut self, request: ImapRequest, what: Pending) {
        let Some(user) = self.user.clone() else {
            debug_assert!(false, "store request before login");
            return;
        };
        self.request(Effect::Imap { user, request }, what);
    }

    /// A mailbox name as the client sent it, to UTF-8.
    fn folder_name(&self, m: &Mailbox) -> Result<String, &'static str> {
        let raw = match m {
            Mailbox::Inbox => return Ok("INBOX".into()),
            Mailbox::Other(raw) => raw,
        };
        self.decode_name(raw)
    }

    fn decode_name(&self, raw: &[u8]) -> Result<String, &'static str> {
        let text = std::str::from_utf8(raw).map_err(|_| "Mailbox name is not valid UTF-8.")?;
        let name = if self.utf8 {
            text.to_string()
        } else {
            mutf7::decode(text).map_err(|_| "Mailbox name is not valid modified UTF-7.")?
        };
        if name.is_empty() || name.contains(['\r', '\n', '\0']) || name.contains("//") {
            return Err("Invalid mailbox name.");
        }
        Ok(name)
    }

    /// A folder name for a response.
    fn name_string(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let enc = if self.utf8 {
            name.to_string()
        } else {
            mutf7::encode(name)
        };
        response::string(&mut out, enc.as_bytes(), self.utf8);
        out
    }

    // ----- commands -----

    fn command(&mut self, now: Instant, cmd: Command) {
        let Command { tag, kind } = cmd;
        let authed = self.user.is_some();
        let selected = self.selected.is_some();
        match kind {
            CommandKind::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                self.tagged(&tag, "OK", "Capability completed.");
            }
            CommandKind::Noop | CommandKind::Check if selected => {
                let folder = self.selected.as_ref().map(|s| s.folder.clone());
                let text = if matches!(kind, CommandKind::Noop) {
                    "NOOP completed."
                } else {
                    "CHECK completed."
                };
                // Like IDLE: the whole folder is looked at only when its stamp changed.
                if let Some(folder) = folder {
                    self.imap(
                        ImapRequest::Changed { folder },
                        Pending::Changed(Some((tag, text))),
                    );
                }
            }
            CommandKind::Noop => self.tagged(&tag, "OK", "NOOP completed."),
            // RFC 2971 3.1: ID is valid in every state; clients send it before logging in.
            CommandKind::Id(_) => {
                self.line("* ID (\"name\" \"Petrel\")");
                self.tagged(&tag, "OK", "ID completed.");
            }
            CommandKind::Logout => {
                self.line("* BYE Logging out.");
                self.tagged(&tag, "OK", "Logout completed.");
                self.end(CloseReason::Quit);
            }
            CommandKind::StartTls if !authed => {
                if self.tls.is_some() || !self.config.starttls {
                    return self.bad(Some(&tag), "TLS is not available here.");
                }
                self.tagged(&tag, "OK", "Begin TLS negotiation now.");
                self.phase = Phase::AwaitTls;
                self.parser.reset();
                self.outbox.push(Event::StartTls);
            }
            CommandKind::Login { username, password } if !authed => {
                if !self.plaintext_allowed() {
                    return self.tagged(
                        &tag,
                        "NO",
                        "[PRIVACYREQUIRED] Plaintext authentication is disallowed on non-secure connections.",
                    );
                }
                let username = String::from_utf8_lossy(&username).into_owned();
                self.login(tag, username, password.expose().clone());
            }
            CommandKind::Authenticate { mechanism, initial } if !authed => {
                if !self.plaintext_allowed() {
                    return self.tagged(
                        &tag,
                        "NO",
                        "[PRIVACYREQUIRED] Plaintext authentication is disallowed on non-secure connections.",
                    );
                }
                if mechanism != "PLAIN" {
                    return self.tagged(&tag, "NO", "Unsupported authentication mechanism.");
                }
                match initial {
                    Some(ir) => self.auth_response(tag, &ir),
                    None => {
                        self.line("+ ");
                        self.parser.expect_line();
                        self.phase = Phase::AuthResponse(tag);
                    }
                }
            }
            CommandKind::StartTls
            | CommandKind::Login { .. }
            | CommandKind::Authenticate { .. } => self.bad(Some(&tag), "Already authenticated."),
            _ if !authed => self.bad(Some(&tag), "Command not allowed before login."),
            kind => self.authenticated(now, tag, kind),
        }
    }

    fn authenticated(&mut self, now: Instant, tag: String, kind: CommandKind) {
        match kind {
            CommandKind::Enable(caps) => {
                let mut enabled = Vec::new();
                for cap in caps {
                    match cap.as_str() {
                        "CONDSTORE" => self.condstore = true,
                        // RFC 7162 3.2.3: enabling QRESYNC implies CONDSTORE.
                        "QRESYNC" => {
                            self.qresync = true;
                            self.condstore = true;
                        }
                        "IMAP4REV2" => {
                            self.rev2 = true;
                            self.utf8 = true;
                        }
                        "UTF8=ACCEPT" => self.utf8 = true,
                        _ => continue,
                    }
                    enabled.push(cap);
                }
                if !enabled.is_empty() {
                    self.line(&format!("* ENABLED {}", enabled.join(" ")));
                }
                self.tagged(&tag, "OK", "Enabled.");
            }
            CommandKind::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(&tag, "OK", "Namespace completed.");
            }
            CommandKind::Idle => {
                self.line("+ idling");
                self.parser.expect_line();
                self.phase = Phase::Idle(tag);
                self.idle_next = Some(now + self.config.idle_poll);
                self.idle_pushed = false;
                self.idle_poke = None;
            }
            CommandKind::List {
                select,
                reference,
                patterns,
                returns,
            } => {
                if patterns.len() == 1 && patterns[0].is_empty() {
                    self.line("* LIST (\\Noselect) \"/\" \"\"");
                    return self.tagged(&tag, "OK", "List completed.");
                }
                let lsub = select.contains(&ListSelect::Subscribed);
                self.list_special_only = select.contains(&ListSelect::SpecialUse);
                self.list_recursive = select.contains(&ListSelect::RecursiveMatch);
                let show_subscribed = lsub || returns.contains(&ListReturn::Subscribed);
                self.list_status = returns.iter().find_map(|r| match r {
                    ListReturn::Status(items) => Some((items.clone(), Vec::new())),
                    _ => None,
                });
                self.list(tag, &reference, patterns, lsub, show_subscribed, false);
            }
            CommandKind::Lsub { reference, pattern } => {
                self.list_special_only = false;
                self.list_recursive = false;
                self.list(tag, &reference, vec![pattern], true, true, true)
            }
            CommandKind::Status { mailbox, items } => match self.folder_name(&mailbox) {
                Ok(folder) => self.imap(
                    ImapRequest::Status {
                        folder: folder.clone(),
                    },
                    Pending::Status {
                        tag,
                        name: folder,
                        items,
                    },
                ),
                Err(e) => self.tagged(&tag, "NO", e),
            },
            CommandKind::Select { mailbox, params } => self.select(tag, &mailbox, params, false),
            CommandKind::Examine { mailbox, params } => self.select(tag, &mailbox, params, true),
            CommandKind::Create { mailbox, .. } => {
                let folder = self
                    .folder_name(&mailbox)
                    .map(|f| f.trim_end_matches('/').to_string());
                match folder {
                    Ok(f) if f.eq_ignore_ascii_case("INBOX") => {
                        self.tagged(&tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
                    }
                    Ok(folder) if !folder.is_empty() => self.imap(
                        ImapRequest::Create { folder },
                        Pending::Simple {
                            tag,
                            ok: "Create completed.",
                        },
                    ),
                    Ok(_) => self.tagged(&tag, "NO", "Invalid mailbox name."),
                    Err(e) => self.tagged(&tag, "NO", e),
                }
            }
            CommandKind::Delete(mailbox) => match self.folder_name(&mailbox) {
                Ok(f) if f == "INBOX" => self.tagged(&tag, "NO", "INBOX can't be deleted."),
                Ok(folder) => {
                    if self.selected.as_ref().is_some_and(|s| s.folder == folder) {
                        self.selected = None;
                    }
                    self.imap(
                        ImapRequest::Delete { folder },
                        Pending::Simple {
                            tag,
                            ok: "Delete completed.",
                        },
                    )
                }
                Err(e) => self.tagged(&tag, "NO", e),
            },
            CommandKind::Rename { from, to } => {
                match (self.folder_name(&from), self.folder_name(&to)) {
                    (Ok(from), Ok(to)) => self.imap(
                        ImapRequest::Rename { from, to },
                        Pending::Simple {
                            tag,
                            ok: "Rename completed.",
                        },
                    ),
                    (Err(e), _) | (_, Err(e)) => self.tagged(&tag, "NO", e),
                }
            }
            CommandKind::Subscribe(mailbox) => self.subscribe(tag, &mailbox, true),
            CommandKind::Unsubscribe(mailbox) => self.subscribe(tag, &mailbox, false),
            kind => self.selected_command(tag, kind),
        }
    }

    fn selected_command(&mut self, tag: String, kind: CommandKind) {
        let Some(sel) = &self.selected else {
            return self.bad(Some(&tag), "No mailbox selected.");
        };
        let readonly = sel.readonly;
        let folder = sel.folder.clone();
        match kind {
            CommandKind::Unselect => {
                self.selected = None;
                self.tagged(&tag, "OK", "Unselect completed.");
            }
            CommandKind::Close => {
                if readonly {
                    self.selected = None;
                    self.tagged(&tag, "OK", "Close completed.");
                } else {
                    self.imap(
                        ImapRequest::Expunge { folder, uids: None },
                        Pending::Expunge { tag, close: true },
                    );
                }
            }
            CommandKind::Expunge | CommandKind::UidExpunge(_) => {
                if readonly {
                    return self.tagged(&tag, "NO", "[READ-ONLY] Mailbox is read-only.");
                }
                let uids = match &kind {
                    CommandKind::UidExpunge(set) => {
                        Some(self.uids_of(set, true).unwrap_or_default())
                    }
                    _ => None,
                };
                self.imap(
                    ImapRequest::Expunge { folder, uids },
                    Pending::Expunge { tag, close: false },
                );
            }
            CommandKind::Fetch {
                uid,
                set,
                items,
                changed_since: Some(since),
                vanished: true,
            } => {
                // RFC 7162 3.2.6: VANISHED needs QRESYNC enabled (the parser checked UID FETCH
                // and CHANGEDSINCE).
                if !self.qresync {
                    return self.bad(Some(&tag), "VANISHED needs ENABLE QRESYNC.");
                }
                let fetch = CommandKind::Fetch {
                    uid,
                    set,
                    items,
                    changed_since: Some(since),
                    vanished: false,
                };
                self.imap(
                    ImapRequest::Vanished { folder, since },
                    Pending::FetchVanished { tag, fetch },
                );
            }
            CommandKind::Fetch {
                uid,
                set,
                items,
                changed_since,
                ..
            } => {
                let uids = match self.uids_of(&set, uid) {
                    Ok(u) => u,
                    Err(e) => return self.bad(Some(&tag), e),
                };
                if changed_since.is_some() || items.contains(&FetchItem::ModSeq) {
                    self.condstore = true;
                }
                let sets_seen = items.iter().any(sets_seen);
                let sel = self.selected.as_ref().expect("checked above");
                let unseen: Vec<u32> = uids
                    .iter()
                    .copied()
                    .filter(|&u| {
                        changed_since.is_none_or(|c| {
                            sel.index_of(u)
                                .is_some_and(|i| sel.snap.messages[i].modseq > c)
                        })
                    })
                    .filter(|&u| {
                        sel.index_of(u).is_some_and(|i| {
                            !sel.snap.messages[i].flags.iter().any(|f| f == "\\Seen")
                        })
                    })
                    .collect();
                self.job = Some(Job::Fetch(FetchJob {
                    tag,
                    uid,
                    items,
                    changed_since,
                    uids,
                    pos: 0,
                    buf: Vec::new(),
                    flags_changed: HashSet::new(),
                    failed: None,
                    stream: None,
                    streaming: None,
                }));
                if let Some(Job::Fetch(j)) = &mut self.job {
                    j.stream = streamable(&j.items);
                }
                if sets_seen && !readonly && !unseen.is_empty() {
                    self.imap(
                        ImapRequest::Store {
                            folder,
                            uids: unseen,
                            mode: FlagMode::Add,
                            flags: vec!["\\Seen".into()],
                            unchanged_since: None,
                        },
                        Pending::Seen,
                    );
                } else {
                    self.run_job();
                }
            }
            CommandKind::Store {
                uid,
                set,
                unchanged_since,
                mode,
                silent,
                flags,
            } => {
                if readonly {
                    return self.tagged(&tag, "NO", "[READ-ONLY] Mailbox is read-only.");
                }
                let uids = match self.uids_of(&set, uid) {
                    Ok(u) => u,
                    Err(e) => return self.bad(Some(&tag), e),
                };
                if unchanged_since.is_some() {
                    self.condstore = true;
                }
                if uids.is_empty() {
                    return self.tagged(&tag, "OK", "Store completed.");
                }
                let mode = match mode {
                    StoreMode::Add => FlagMode::Add,
                    StoreMode::Remove => FlagMode::Remove,
                    StoreMode::Replace => FlagMode::Replace,
                };
                self.imap(
                    ImapRequest::Store {
                        folder,
                        uids: uids.clone(),
                        mode,
                        flags: flags.iter().map(flag_name).collect(),
                        unchanged_since,
                    },
                    Pending::Store {
                        tag,
                        uid,
                        silent,
                        asked: uids,
                        unchanged_since,
                    },
                );
            }
            CommandKind::Copy { uid, set, mailbox } => self.copy(tag, uid, &set, &mailbox, false),
            CommandKind::Move { uid, set, mailbox } => {
                if readonly {
                    return self.tagged(&tag, "NO", "[READ-ONLY] Mailbox is read-only.");
                }
                self.copy(tag, uid, &set, &mailbox, true)
            }
            CommandKind::Search {
                uid,
                returns,
                charset,
                criteria,
            } => {
                if let Some(c) = &charset
                    && !c.eq_ignore_ascii_case("UTF-8")
                    && !c.eq_ignore_ascii_case("US-ASCII")
                {
                    return self.tagged(
                        &tag,
                        "NO",
                        "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.",
                    );
                }
                if uses_modseq(&criteria) {
                    self.condstore = true;
                }
                self.start_search(tag, uid, returns, criteria, None);
            }
            CommandKind::Sort {
                uid,
                criteria,
                charset,
                search,
            } => {
                if !charset.eq_ignore_ascii_case("UTF-8")
                    && !charset.eq_ignore_ascii_case("US-ASCII")
                {
                    return self.tagged(
                        &tag,
                        "NO",
                        "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.",
                    );
                }
                self.start_search(tag, uid, None, search, Some(Order::Sort(criteria)));
            }
            CommandKind::Thread {
                uid,
                algorithm,
                charset,
                search,
            } => {
                if !charset.eq_ignore_ascii_case("UTF-8")
                    && !charset.eq_ignore_ascii_case("US-ASCII")
                {
                    return self.tagged(
                        &tag,
                        "NO",
                        "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.",
                    );
                }
                self.start_search(tag, uid, None, search, Some(Order::Thread(algorithm)));
            }
            _ => self.bad(Some(&tag), "Command not supported."),
        }
    }

    /// Starts the job of SEARCH, SORT and THREAD: every message of the folder is matched
    /// against `key` (reading it only when the key, or the order, needs its bytes).
    fn start_search(
        &mut self,
        tag: String,
        uid: bool,
        returns: Option<Vec<SearchReturn>>,
        key: SearchKey,
        order: Option<Order>,
    ) {
        if uses_modseq(&key) {
            self.condstore = true;
        }
        let Some(sel) = self.selected.as_ref() else {
            return self.bad(Some(&tag), "No mailbox selected.");
        };
        let uids = sel.snap.messages.iter().map(|m| m.uid).collect();
        self.job = Some(Job::Search(SearchJob {
            tag,
            uid,
            returns,
            key,
            uids,
            pos: 0,
            buf: Vec::new(),
            hits: Vec::new(),
            order,
            infos: Vec::new(),
        }));
        self.run_job();
    }

    /// The UIDs a sequence set names, in ascending order. Message numbers beyond the folder are
    /// an error (RFC 9051 6.4.8 leaves UIDs free).
    fn uids_of(&self, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, &'static str> {
        let Some(sel) = &self.selected else {
            return Ok(Vec::new());
        };
        if uid {
            let max = sel.max_uid();
            return Ok(sel
                .snap
                .messages
                .iter()
                .filter(|m| set.contains(m.uid, max))
                .map(|m| m.uid)
                .collect());
        }
        let count = sel.count();
        if let SequenceSet::Ranges(ranges) = set
            && ranges.iter().any(|r| {
                let r = r.resolve(count);
                *r.end() > count
            })
        {
            return Err("Invalid messageset.");
        }
        Ok(set
            .iter(count)
            .map(|seq| sel.snap.messages[seq as usize - 1].uid)
            .collect())
    }

    fn list(
        &mut self,
        tag: String,
        reference: &[u8],
        patterns: Vec<Vec<u8>>,
        subscribed_only: bool,
        show_subscribed: bool,
        lsub: bool,
    ) {
        let mut decoded = Vec::new();
        for p in patterns {
            let mut raw = reference.to_vec();
            raw.extend_from_slice(&p);
            match self.decode_name(&raw) {
                Ok(name) => decoded.push(name),
                Err(e) => return self.tagged(&tag, "NO", e),
            }
        }
        decoded.reverse();
        let Some(first) = decoded.pop() else {
            return self.tagged(&tag, "OK", "List completed.");
        };
        self.imap(
            ImapRequest::List {
                pattern: first,
                subscribed_only,
            },
            Pending::List {
                tag,
                patterns: decoded,
                lsub,
                subscribed_only,
                show_subscribed,
            },
        );
    }

    /// `* STATUS name (items)` from a store answer.
    fn status_line(&mut self, name: &str, items: &[StatusItem], st: &FolderStatus) {
        let mut vals = Vec::new();
        for item in items {
            match item {
                StatusItem::Messages => vals.push(format!("MESSAGES {}", st.messages)),
                StatusItem::Recent => vals.push("RECENT 0".into()),
                StatusItem::UidNext => vals.push(format!("UIDNEXT {}", st.uidnext)),
                StatusItem::UidValidity => vals.push(format!("UIDVALIDITY {}", st.uidvalidity)),
                StatusItem::Unseen => vals.push(format!("UNSEEN {}", st.unseen)),
                StatusItem::Size => vals.push(format!("SIZE {}", st.size)),
                StatusItem::HighestModSeq => {
                    vals.push(format!("HIGHESTMODSEQ {}", st.highest_modseq))
                }
                StatusItem::AppendLimit => {
                    vals.push(format!("APPENDLIMIT {}", self.config.max_message_size))
                }
                StatusItem::Deleted => {}
            }
        }
        let mut l = b"* STATUS ".to_vec();
        l.extend_from_slice(&self.name_string(name));
        l.extend_from_slice(format!(" ({})\r\n", vals.join(" ")).as_bytes());
        self.outbox.out.extend_from_slice(&l);
    }

    /// LIST-STATUS: asks for the next listed folder's STATUS, or ends the LIST.
    fn list_status_next(&mut self, tag: String) {
        match self.list_status.as_mut().and_then(|(_, q)| q.pop()) {
            Some(name) => self.imap(
                ImapRequest::Status {
                    folder: name.clone(),
                },
                Pending::ListStatus { tag, name },
            ),
            None => {
                self.list_status = None;
                self.tagged(&tag, "OK", "List completed.");
            }
        }
    }

    fn login(&mut self, tag: String, username: String, password: Vec<u8>) {
        let effect = Effect::Authenticate {
            username,
            password: Secret::new(password),
            client_ip: self.peer.ip.clone(),
            loopback: self.peer.loopback,
        };
        self.request(effect, Pending::Auth(tag));
    }

    fn auth_response(&mut self, tag: String, line: &str) {
        self.phase = Phase::NotAuthenticated;
        match sasl::decode_response(line).and_then(|raw| sasl::parse_plain(&raw)) {
            Ok(creds) => self.login(tag, creds.username, creds.password),
            Err(SaslError::Cancelled) => self.bad(Some(&tag), "Authentication aborted by client."),
            Err(SaslError::Malformed) => {
                self.bad(Some(&tag), "Invalid base64 data in continued response.")
            }
            Err(SaslError::AuthzidMismatch) => self.login_failed(tag, None),
        }
    }

    fn login_failed(&mut self, tag: String, at: Option<Instant>) {
        self.auth_failures += 1;
        let text = format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed.");
        if self.auth_failures >= self.config.max_auth_failures {
            self.line(&text);
            self.line("* BYE Too many authentication failures.");
            self.end(CloseReason::TooManyErrors);
        } else if let Some(at) = at {
            self.delayed = Some((at, text));
        } else {
            self.line(&text);
        }
    }
}

impl ImapSession {
    fn select(&mut self, tag: String, mailbox: &Mailbox, params: SelectParams, readonly: bool) {
        // RFC 7162 3.2.5: QRESYNC parameters need ENABLE QRESYNC first.
        if params.qresync.is_some() && !self.qresync {
            return self.bad(Some(&tag), "QRESYNC is not enabled.");
        }
        if params.condstore {
            self.condstore = true;
        }
        if self.selected.take().is_some() {
            self.line("* OK [CLOSED] Previous mailbox closed.");
        }
        match self.folder_name(mailbox) {
            Ok(folder) => self.imap(
                ImapRequest::Select {
                    folder: folder.clone(),
                    readonly,
                },
                Pending::Select {
                    tag,
                    folder,
                    readonly,
                    qresync: params.qresync,
                },
            ),
            Err(e) => self.tagged(&tag, "NO", e),
        }
    }

    fn subscribe(&mut self, tag: String, mailbox: &Mailbox, subscribe: bool) {
        match self.folder_name(mailbox) {
            Ok(folder) => self.imap(
                ImapRequest::Subscribe { folder, subscribe },
                Pending::Simple {
                    tag,
                    ok: if subscribe {
                        "Subscribe completed."
                    } else {
                        "Unsubscribe completed."
                    },
                },
            ),
            Err(e) => self.tagged(&tag, "NO", e),
        }
    }

    fn copy(&mut self, tag: String, uid: bool, set: &SequenceSet, mailbox: &Mailbox, remove: bool) {
        let uids = match self.uids_of(set, uid) {
            Ok(u) => u,
            Err(e) => return self.bad(Some(&tag), e),
        };
        let to = match self.folder_name(mailbox) {
            Ok(t) => t,
            Err(e) => return self.tagged(&tag, "NO", e),
        };
        let Some(from) = self.selected.as_ref().map(|s| s.folder.clone()) else {
            return;
        };
        if uids.is_empty() {
            return self.tagged(&tag, "OK", "No messages.");
        }
        self.imap(
            ImapRequest::Copy {
                from,
                to,
                uids,
                remove,
            },
            Pending::Copy { tag, remove },
        );
    }

    /// Advances FETCH or SEARCH: reads the next message that needs reading, or finishes.
    fn run_job(&mut self) {
        loop {
            if matches!(&self.job, Some(Job::Fetch(j)) if j.stream.is_some()) {
                if self.stream_step() {
                    return;
                }
                continue;
            }
            let Some(job) = &mut self.job else { return };
            let Some(sel) = &self.selected else {
                self.job = None;
                return;
            };
            let (uids, pos, needs) = match job {
                Job::Fetch(j) => (&j.uids, j.pos, j.items.iter().any(needs_body)),
                Job::Search(j) => (
                    &j.uids,
                    j.pos,
                    search::needs_message(&j.key)
                        || j.order.as_ref().is_some_and(Order::needs_header),
                ),
            };
            let Some(&uid) = uids.get(pos) else {
                return self.finish_job();
            };
            if let Job::Fetch(j) = job
                && let Some(c) = j.changed_since
                && sel
                    .index_of(uid)
                    .is_none_or(|i| sel.snap.messages[i].modseq <= c)
            {
                j.pos += 1;
                continue;
            }
            if needs && sel.index_of(uid).is_some() {
                let offset = match job {
                    Job::Fetch(j) => j.buf.len(),
                    Job::Search(j) => j.buf.len(),
                } as u64;
                let folder = sel.folder.clone();
                let max = self.config.chunk_size.max(1);
                return self.imap(
                    ImapRequest::Read {
                        folder,
                        uid,
                        offset,
                        max,
                    },
                    Pending::Read,
                );
            }
            self.job_message();
        }
    }

    /// One step of a streamed FETCH: starts the current message's response or asks for its next
    /// chunk. Returns true when it is waiting for the store (or the job is over).
    fn stream_step(&mut self) -> bool {
        let Some(Job::Fetch(mut j)) = self.job.take() else {
            return true;
        };
        let Some(sel) = &self.selected else {
            return true;
        };
        let Some(&uid) = j.uids.get(j.pos) else {
            self.job = Some(Job::Fetch(j));
            self.finish_job();
            return true;
        };
        let index = sel.index_of(uid).filter(|&i| {
            j.changed_since
                .is_none_or(|c| sel.snap.messages[i].modseq > c)
        });
        let Some(i) = index else {
            j.pos += 1;
            self.job = Some(Job::Fetch(j));
            return false;
        };
        let folder = sel.folder.clone();
        let size = sel.snap.messages[i].size;
        let (offset, owed) = match j.streaming {
            Some(state) => state,
            None => {
                let mut line = self.fetch_line(&mut j, i, &[]);
                line.truncate(line.len() - 3); // ")\r\n"
                if !line.ends_with(b"(") {
                    line.push(b' ');
                }
                let name = match &j.stream {
                    Some(FetchItem::Rfc822) => "RFC822",
                    _ => "BODY[]",
                };
                line.extend_from_slice(format!("{name} {{{size}}}\r\n").as_bytes());
                self.outbox.out.extend_from_slice(&line);
                (0, size)
            }
        };
        if owed == 0 {
            self.outbox.out.extend_from_slice(b")\r\n");
            j.streaming = None;
            j.pos += 1;
            self.job = Some(Job::Fetch(j));
            return false;
        }
        j.streaming = Some((offset, owed));
        self.job = Some(Job::Fetch(j));
        let max = self.config.chunk_size.max(1);
        self.imap(
            ImapRequest::Read {
                folder,
                uid,
                offset,
                max,
            },
            Pending::Read,
        );
        true
    }

    /// A chunk of a streamed message arrived.
    fn stream_data(&mut self, bytes: &[u8]) {
        let Some(Job::Fetch(j)) = &mut self.job else {
            return;
        };
        let Some((offset, owed)) = j.streaming else {
            return;
        };
        if bytes.is_empty() {
            // The store has fewer bytes than the size it gave: the literal cannot be completed,
            // and only dropping the connection tells the client the truth.
            self.job = None;
            return self.end(CloseReason::LocalError);
        }
        let take = bytes.len().min(usize::try_from(owed).unwrap_or(usize::MAX));
        self.outbox.out.extend_from_slice(&bytes[..take]);
        j.streaming = Some((offset + bytes.len() as u64, owed - take as u64));
        self.run_job();
    }

    /// The current message of the job is read (or needs no reading): answer it and move on.
    fn job_message(&mut self) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        let Some(sel) = &self.selected else { return };
        match &mut job {
            Job::Fetch(j) => {
                let uid = j.uids[j.pos];
                if let Some(i) = sel.index_of(uid) {
                    let raw = std::mem::take(&mut j.buf);
                    let line = self.fetch_line(j, i, &raw);
                    self.outbox.out.extend_from_slice(&line);
                }
                j.pos += 1;
                // RFC 3516: a part that cannot be decoded fails the FETCH; like Dovecot, the
                // messages after it are not sent.
                if j.failed.is_some() {
                    j.pos = j.uids.len();
                }
            }
            Job::Search(j) => {
                let uid = j.uids[j.pos];
                if let Some(i) = sel.index_of(uid) {
                    let raw = std::mem::take(&mut j.buf);
                    let c = Candidate {
                        seq: i as u32 + 1,
                        count: sel.count(),
                        max_uid: sel.max_uid(),
                        meta: &sel.snap.messages[i],
                        raw: Some(&raw),
                    };
                    if search::matches(&j.key, &c) {
                        let id = if j.uid { uid } else { i as u32 + 1 };
                        j.hits.push(id);
                        if j.order.is_some() {
                            j.infos.push(sort::sort_info(
                                id,
                                i as u32 + 1,
                                &sel.snap.messages[i],
                                &raw,
                            ));
                        }
                    }
                }
                j.pos += 1;
            }
        }
        self.job = Some(job);
    }

    /// One `* N FETCH (...)` line, written straight into one buffer (a `FETCH 1:* (FLAGS UID)`
    /// of a big folder makes one line per message: no temporaries per item).
    fn fetch_line(&mut self, j: &mut FetchJob, i: usize, raw: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let Some(sel) = &self.selected else {
            return Vec::new();
        };
        let m = &sel.snap.messages[i];
        let mut out = Vec::with_capacity(64);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "* {} FETCH (", i + 1);
        let first = out.len();
        let sep = |out: &mut Vec<u8>| {
            if out.len() > first {
                out.push(b' ');
            }
        };
        let flags = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"FLAGS ");
            response::push_flag_list(out, &m.flags);
        };
        if j.uid && !j.items.contains(&FetchItem::Uid) {
            let _ = write!(out, "UID {}", m.uid);
        }
        for item in &j.items {
            if j.stream.as_ref() == Some(item) {
                continue;
            }
            let mark = out.len();
            sep(&mut out);
            match item {
                FetchItem::Flags => flags(&mut out),
                FetchItem::Uid => {
                    let _ = write!(out, "UID {}", m.uid);
                }
                FetchItem::InternalDate => {
                    let _ = write!(out, "INTERNALDATE {}", internal_date(m.internal_date));
                }
                FetchItem::Rfc822Size => {
                    let _ = write!(out, "RFC822.SIZE {}", m.size);
                }
                FetchItem::ModSeq => {
                    let _ = write!(out, "MODSEQ ({})", m.modseq);
                }
                FetchItem::Envelope => {
                    out.extend_from_slice(b"ENVELOPE ");
                    out.extend_from_slice(structure::envelope(raw).as_bytes());
                }
                FetchItem::Body => {
                    out.extend_from_slice(b"BODY ");
                    out.extend_from_slice(structure::body_structure(raw, false).as_bytes());
                }
                FetchItem::BodyStructure => {
                    out.extend_from_slice(b"BODYSTRUCTURE ");
                    out.extend_from_slice(structure::body_structure(raw, true).as_bytes());
                }
                FetchItem::Rfc822 | FetchItem::Rfc822Header | FetchItem::Rfc822Text => {
                    let (name, text) = match item {
                        FetchItem::Rfc822 => ("RFC822", structure::SectionText::Full),
                        FetchItem::Rfc822Header => {
                            ("RFC822.HEADER", structure::SectionText::Header)
                        }
                        _ => ("RFC822.TEXT", structure::SectionText::Text),
                    };
                    let data = structure::section(
                        raw,
                        &SectionSpec {
                            part: Vec::new(),
                            text,
                        },
                    );
                    out.extend_from_slice(name.as_bytes());
                    out.push(b' ');
                    response::literal(&mut out, &data);
                }
                FetchItem::BodySection {
                    section, partial, ..
                } => {
                    let data = structure::section(raw, &section_spec(section));
                    let _ = write!(out, "BODY[{}]", section_name(section));
                    let data = slice_partial(&data, *partial, &mut out);
                    out.push(b' ');
                    response::literal(&mut out, data);
                }
                FetchItem::Binary { part, partial, .. } => match structure::binary(raw, part) {
                    Ok(data) => {
                        let _ = write!(out, "BINARY[{}]", part_name(part));
                        let data = slice_partial(&data, *partial, &mut out);
                        out.push(b' ');
                        response::literal(&mut out, data);
                    }
                    Err(_) => {
                        j.failed = Some("[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.");
                        out.truncate(mark);
                    }
                },
                FetchItem::BinarySize { part } => match structure::binary_size(raw, part) {
                    Ok(n) => {
                        let _ = write!(out, "BINARY.SIZE[{}] {n}", part_name(part));
                    }
                    Err(_) => {
                        j.failed = Some("[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.");
                        out.truncate(mark);
                    }
                },
            }
        }
        if j.flags_changed.contains(&m.uid) && !j.items.contains(&FetchItem::Flags) {
            sep(&mut out);
            flags(&mut out);
        }
        if (self.condstore || j.changed_since.is_some()) && !j.items.contains(&FetchItem::ModSeq) {
            sep(&mut out);
            let _ = write!(out, "MODSEQ ({})", m.modseq);
        }
        // A FETCH response names at least one item; when the only one failed (UNKNOWN-CTE),
        // the UID stands in, as in Dovecot.
        if out.len() == first && j.failed.is_some() {
            let _ = write!(out, "UID {}", m.uid);
        }
        out.extend_from_slice(b")\r\n");
        out
    }

    fn finish_job(&mut self) {
        let Some(job) = self.job.take() else { return };
        match job {
            Job::Fetch(j) => match j.failed {
                Some(text) => self.tagged(&j.tag, "NO", text),
                None => self.tagged(&j.tag, "OK", "Fetch completed."),
            },
            Job::Search(mut j) if j.order.is_some() => {
                let (line, done) = match j.order.take() {
                    Some(Order::Sort(criteria)) => {
                        sort::sort(&mut j.infos, &criteria);
                        let mut line = String::from("* SORT");
                        for i in &j.infos {
                            line.push_str(&format!(" {}", i.id));
                        }
                        (line, "Sort completed.")
                    }
                    Some(Order::Thread(algorithm)) => (
                        format!("* THREAD {}", sort::thread(&j.infos, algorithm)),
                        "Thread completed.",
                    ),
                    None => unreachable!("checked by the match guard"),
                };
                self.line(line.trim_end());
                self.tagged(&j.tag, "OK", done);
            }
            Job::Search(j) => {
                let tag = j.tag.clone();
                let modseq = if uses_modseq(&j.key) {
                    let sel = self.selected.as_ref();
                    j.hits
                        .iter()
                        .filter_map(|&h| {
                            let sel = sel?;
                            let i = if j.uid {
                                sel.index_of(h)?
                            } else {
                                h as usize - 1
                            };
                            Some(sel.snap.messages[i].modseq)
                        })
                        .max()
                } else {
                    None
                };
                if j.returns.is_some() || self.rev2 {
                    let returns = j.returns.clone().unwrap_or_default();
                    let returns = if returns.is_empty() {
                        vec![SearchReturn::All]
                    } else {
                        returns
                    };
                    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
                    if j.uid {
                        line.push_str(" UID");
                    }
                    for r in returns {
                        match r {
                            SearchReturn::Min => {
                                if let Some(x) = j.hits.first() {
                                    line.push_str(&format!(" MIN {x}"));
                                }
                            }
                            SearchReturn::Max => {
                                if let Some(x) = j.hits.last() {
                                    line.push_str(&format!(" MAX {x}"));
                                }
                            }
                            SearchReturn::Count => {
                                line.push_str(&format!(" COUNT {}", j.hits.len()))
                            }
                            SearchReturn::All => {
                                if !j.hits.is_empty() {
                                    line.push_str(&format!(
                                        " ALL {}",
                                        sequence_set(j.hits.iter().copied())
                                    ));
                                }
                            }
                            SearchReturn::Save => {}
                        }
                    }
                    if let Some(m) = modseq {
                        line.push_str(&format!(" MODSEQ {m}"));
                    }
                    self.line(&line);
                } else {
                    let mut line = String::from("* SEARCH");
                    for h in &j.hits {
                        line.push_str(&format!(" {h}"));
                    }
                    if let Some(m) = modseq {
                        line.push_str(&format!(" (MODSEQ {m})"));
                    }
                    self.line(&line);
                }
                self.tagged(&tag, "OK", "Search completed.");
            }
        }
    }

    /// Takes a fresh snapshot of the selected folder and tells the client what changed.
    fn apply_snapshot(&mut self, new: FolderSnapshot) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        let mut lines = Vec::new();
        let fresh: HashMap<u32, &MessageMeta> = new.messages.iter().map(|m| (m.uid, m)).collect();
        let mut gone = Vec::new();
        for i in (0..sel.snap.messages.len()).rev() {
            if !fresh.contains_key(&sel.snap.messages[i].uid) {
                lines.push(format!("* {} EXPUNGE", i + 1));
                gone.push(sel.snap.messages.remove(i).uid);
            }
        }
        // RFC 7162 3.2.10: once QRESYNC is enabled, VANISHED replaces EXPUNGE.
        if self.qresync && !gone.is_empty() {
            gone.reverse();
            lines = vec![format!("* VANISHED {}", ranges_text(&uids_to_ranges(gone)))];
        }
        for (i, m) in sel.snap.messages.iter_mut().enumerate() {
            if let Some(n) = fresh.get(&m.uid)
                && (n.flags != m.flags || n.modseq != m.modseq)
            {
                let mut l = format!(
                    "* {} FETCH (UID {} FLAGS {}",
                    i + 1,
                    m.uid,
                    flag_list(&n.flags)
                );
                if self.condstore {
                    l.push_str(&format!(" MODSEQ ({})", n.modseq));
                }
                l.push(')');
                if n.flags != m.flags || self.condstore {
                    lines.push(l);
                }
                *m = (*n).clone();
            }
        }
        let last = sel.max_uid();
        let before = sel.snap.messages.len();
        sel.snap
            .messages
            .extend(new.messages.iter().filter(|m| m.uid > last).cloned());
        if sel.snap.messages.len() != before {
            lines.push(format!("* {} EXISTS", sel.snap.messages.len()));
        }
        sel.snap.next_uid = new.next_uid;
        sel.snap.highest_modseq = new.highest_modseq;
        for l in lines {
            self.line(&l);
        }
    }

    /// SELECT (QRESYNC ...) after the snapshot: `* VANISHED (EARLIER)` for the client's known
    /// UIDs expunged since its MODSEQ (`uids`, or when `complete` is false every known UID not
    /// in the folder), then `* n FETCH (UID FLAGS MODSEQ)` for known messages changed since.
    fn select_resync(&mut self, q: &QResync, uids: &[u32], complete: bool) {
        self.vanished_earlier(uids, complete, q.known_uids.as_ref());
        let Some(sel) = &self.selected else {
            return;
        };
        let max = sel.max_uid();
        let lines: Vec<String> = sel
            .snap
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.modseq > q.mod_seq)
            .filter(|(_, m)| q.known_uids.as_ref().is_none_or(|k| k.contains(m.uid, max)))
            .map(|(i, m)| {
                format!(
                    "* {} FETCH (UID {} FLAGS {} MODSEQ ({}))",
                    i + 1,
                    m.uid,
                    flag_list(&m.flags),
                    m.modseq
                )
            })
            .collect();
        for l in lines {
            self.line(&l);
        }
    }

    /// `* VANISHED (EARLIER) set` for the expunged `uids` that are in `wanted` (a UID set; all
    /// when `None`). When `complete` is false the store forgot some expunges, so every wanted
    /// UID below UIDNEXT that is not in the folder is reported instead (RFC 7162 3.2.5.2 and
    /// 3.2.6 allow a superset). Work is linear in the folder and the set's ranges, never in the
    /// UID space.
    fn vanished_earlier(&mut self, uids: &[u32], complete: bool, wanted: Option<&SequenceSet>) {
        let Some(sel) = &self.selected else {
            return;
        };
        let max = sel.snap.next_uid.saturating_sub(1).max(sel.max_uid());
        let ranges: Vec<(u32, u32)> = if complete {
            uids_to_ranges(
                uids.iter()
                    .copied()
                    .filter(|&u| wanted.is_none_or(|w| w.contains(u, max))),
            )
        } else {
            let mut gaps = Vec::new();
            let mut next = 1u32;
            let present = sel.snap.messages.iter().map(|m| m.uid);
            for uid in present.chain(std::iter::once(max.saturating_add(1))) {
                if uid > next {
                    gaps.push((next, uid - 1));
                }
                next = uid.saturating_add(1);
            }
            match wanted {
                None => gaps,
                Some(w) => intersect_ranges(&gaps, &w.normalized(max)),
            }
        };
        if !ranges.is_empty() {
            self.line(&format!("* VANISHED (EARLIER) {}", ranges_text(&ranges)));
        }
    }

    /// IDLE, NOOP: fetches a fresh snapshot that will be known to cover `stamp` (0: covers
    /// nothing), then sends the tagged reply, if any.
    fn idle_refresh(&mut self, stamp: u64, reply: Option<(String, &'static str)>) {
        match self.selected.as_ref().map(|s| s.folder.clone()) {
            Some(folder) => self.imap(
                ImapRequest::Refresh { folder },
                Pending::IdleRefresh(stamp, reply),
            ),
            None => {
                if let Some((tag, text)) = reply {
                    self.tagged(&tag, "OK", text);
                }
            }
        }
    }

    fn expunged(&mut self, uids: &[u32], quiet: bool) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        let mut idx: Vec<usize> = uids.iter().filter_map(|&u| sel.index_of(u)).collect();
        idx.sort_unstable();
        idx.dedup();
        let mut lines = Vec::new();
        let mut gone = Vec::new();
        for &i in idx.iter().rev() {
            gone.push(sel.snap.messages.remove(i).uid);
            lines.push(format!("* {} EXPUNGE", i + 1));
        }
        // RFC 7162 3.2.10: once QRESYNC is enabled, VANISHED replaces EXPUNGE.
        if self.qresync && !gone.is_empty() {
            gone.reverse();
            lines = vec![format!("* VANISHED {}", ranges_text(&uids_to_ranges(gone)))];
        }
        if !quiet {
            for l in lines {
                self.line(&l);
            }
        }
    }

    fn store_answer(&mut self, what: Pending, answer: ImapAnswer) {
        match (what, answer) {
            (Pending::Simple { tag, ok }, ImapAnswer::Done) => self.tagged(&tag, "OK", ok),
            (
                Pending::List {
                    tag,
                    mut patterns,
                    lsub,
                    subscribed_only,
                    show_subscribed,
                },
                ImapAnswer::Folders(folders),
            ) => {
                for f in folders {
                    const SPECIAL: [&str; 7] = [
                        "\\All",
                        "\\Archive",
                        "\\Drafts",
                        "\\Flagged",
                        "\\Junk",
                        "\\Sent",
                        "\\Trash",
                    ];
                    if self.list_special_only
                        && !f
                            .attributes
                            .iter()
                            .any(|a| SPECIAL.iter().any(|s| a.eq_ignore_ascii_case(s)))
                    {
                        continue;
                    }
                    // The store lists the parents of subscribed folders too; only
                    // RECURSIVEMATCH shows those that are not subscribed themselves.
                    if subscribed_only && !f.subscribed && !self.list_recursive {
                        continue;
                    }
                    let mut attrs = f.attributes.clone();
                    if show_subscribed && f.subscribed && !lsub {
                        attrs.push("\\Subscribed".into());
                    }
                    let mut l = format!(
                        "* {} ({}) \"/\" ",
                        if lsub { "LSUB" } else { "LIST" },
                        attrs.join(" ")
                    )
                    .into_bytes();
                    l.extend_from_slice(&self.name_string(&f.name));
                    if self.list_recursive && f.subscribed_children {
                        l.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
                    }
                    l.extend_from_slice(b"\r\n");
                    self.outbox.out.extend_from_slice(&l);
                    let selectable = !f.attributes.iter().any(|a| {
                        a.eq_ignore_ascii_case("\\Noselect")
                            || a.eq_ignore_ascii_case("\\NonExistent")
                    });
                    if let Some((_, queue)) = &mut self.list_status
                        && selectable
                        && !queue.contains(&f.name)
                    {
                        queue.insert(0, f.name.clone());
                    }
                }
                match patterns.pop() {
                    Some(pattern) => self.imap(
                        ImapRequest::List {
                            pattern,
                            subscribed_only,
                        },
                        Pending::List {
                            tag,
                            patterns,
                            lsub,
                            subscribed_only,
                            show_subscribed,
                        },
                    ),
                    None if self.list_status.is_some() => self.list_status_next(tag),
                    None => self.tagged(
                        &tag,
                        "OK",
                        if lsub {
                            "Lsub completed."
                        } else {
                            "List completed."
                        },
                    ),
                }
            }
            (Pending::ListStatus { tag, name }, ImapAnswer::Status(st)) => {
                if let Some((items, _)) = &self.list_status {
                    let items = items.clone();
                    self.status_line(&name, &items, &st);
                }
                self.list_status_next(tag);
            }
            (Pending::Status { tag, name, items }, ImapAnswer::Status(st)) => {
                self.status_line(&name, &items, &st);
                self.tagged(&tag, "OK", "Status completed.");
            }
            (
                Pending::Select {
                    tag,
                    folder,
                    readonly,
                    qresync,
                },
                ImapAnswer::Snapshot(snap),
            ) => {
                self.line(&format!("* FLAGS ({SYSTEM_FLAGS})"));
                if readonly {
                    self.line("* OK [PERMANENTFLAGS ()] Read-only mailbox.");
                } else {
                    self.line(&format!(
                        "* OK [PERMANENTFLAGS ({SYSTEM_FLAGS} \\*)] Flags permitted."
                    ));
                }
                self.line(&format!("* {} EXISTS", snap.messages.len()));
                if !self.rev2 {
                    self.line("* 0 RECENT");
                    if let Some(i) = snap
                        .messages
                        .iter()
                        .position(|m| !m.flags.iter().any(|f| f == "\\Seen"))
                    {
                        self.line(&format!("* OK [UNSEEN {}] First unseen.", i + 1));
                    }
                }
                self.line(&format!(
                    "* OK [UIDVALIDITY {}] UIDs valid",
                    snap.uidvalidity
                ));
                self.line(&format!(
                    "* OK [UIDNEXT {}] Predicted next UID",
                    snap.next_uid
                ));
                self.line(&format!(
                    "* OK [HIGHESTMODSEQ {}] Highest",
                    snap.highest_modseq
                ));
                self.selected = Some(Selected {
                    folder,
                    readonly,
                    snap,
                    stamp: None,
                });
                let (code, name) = if readonly {
                    ("READ-ONLY", "EXAMINE")
                } else {
                    ("READ-WRITE", "SELECT")
                };
                let text = format!("[{code}] {name} completed.");
                // RFC 7162 3.2.5: with a matching UIDVALIDITY, what changed since the client's
                // MODSEQ; with another one, nothing (the client must resync from scratch).
                let resync = qresync.filter(|q| {
                    self.selected
                        .as_ref()
                        .is_some_and(|s| s.snap.uidvalidity == q.uid_validity)
                });
                match (resync, self.selected.as_ref().map(|s| s.folder.clone())) {
                    (Some(q), Some(folder)) => self.imap(
                        ImapRequest::Vanished {
                            folder,
                            since: q.mod_seq,
                        },
                        Pending::SelectVanished {
                            tag,
                            text,
                            qresync: q,
                        },
                    ),
                    _ => self.tagged(&tag, "OK", &text),
                }
            }
            (
                Pending::SelectVanished { tag, text, qresync },
                ImapAnswer::Vanished { uids, complete },
            ) => {
                self.select_resync(&qresync, &uids, complete);
                self.tagged(&tag, "OK", &text);
            }
            (Pending::FetchVanished { tag, fetch }, ImapAnswer::Vanished { uids, complete }) => {
                if let CommandKind::Fetch { set, .. } = &fetch {
                    let set = set.clone();
                    self.vanished_earlier(&uids, complete, Some(&set));
                }
                self.selected_command(tag, fetch);
            }
            (Pending::Changed(reply), ImapAnswer::Stamp(stamp)) => {
                let unchanged =
                    stamp != 0 && self.selected.as_ref().and_then(|s| s.stamp) == Some(stamp);
                if !unchanged {
                    self.idle_refresh(stamp, reply);
                } else if let Some((tag, text)) = reply {
                    self.tagged(&tag, "OK", text);
                }
            }
            (Pending::IdleRefresh(stamp, reply), ImapAnswer::Snapshot(snap)) => {
                self.apply_snapshot(snap);
                if let Some(sel) = &mut self.selected {
                    sel.stamp = (stamp != 0).then_some(stamp);
                }
                if let Some((tag, text)) = reply {
                    self.tagged(&tag, "OK", text);
                }
            }
            (Pending::Seen, ImapAnswer::Stored(changed)) => {
                if let (Some(sel), Some(Job::Fetch(j))) = (&mut self.selected, &mut self.job) {
                    for (uid, flags, modseq) in changed {
                        if let Some(i) = sel.index_of(uid) {
                            sel.snap.messages[i].flags = flags.into();
                            sel.snap.messages[i].modseq = modseq;
                            j.flags_changed.insert(uid);
                        }
                    }
                }
                self.run_job();
            }
            (Pending::Read, ImapAnswer::Data(bytes)) if matches!(&self.job, Some(Job::Fetch(j)) if j.stream.is_some()) => {
                self.stream_data(&bytes)
            }
            (Pending::Read, ImapAnswer::Data(bytes)) => {
                let limit = self.config.max_message_size as usize;
                let mut done = bytes.is_empty();
                if let Some(job) = &mut self.job {
                    let (buf, uid) = match job {
                        Job::Fetch(j) => (&mut j.buf, j.uids.get(j.pos)),
                        Job::Search(j) => (&mut j.buf, j.uids.get(j.pos)),
                    };
                    if buf.len() + bytes.len() > limit {
                        let tag = match self.job.take() {
                            Some(Job::Fetch(j)) => j.tag,
                            Some(Job::Search(j)) => j.tag,
                            None => return,
                        };
                        return self.tagged(&tag, "NO", "[LIMIT] Message too large to read.");
                    }
                    buf.extend_from_slice(&bytes);
                    // The store serves exactly RFC822.SIZE bytes (as a streamed FETCH relies on
                    // too): once they are all here, the empty read that marks the end would
                    // only cost another request (a SEARCH SUBJECT asked two per message).
                    if let Some(sel) = &self.selected
                        && let Some(i) = uid.and_then(|&u| sel.index_of(u))
                        && sel.snap.messages[i].size > 0
                        && buf.len() as u64 >= sel.snap.messages[i].size
                    {
                        done = true;
                    }
                }
                if done {
                    self.job_message();
                }
                self.run_job();
            }
            (
                Pending::Store {
                    tag,
                    uid,
                    silent,
                    asked,
                    unchanged_since,
                },
                ImapAnswer::Stored(changed),
            ) => {
                let mut lines = Vec::new();
                let mut done = HashSet::new();
                if let Some(sel) = &mut self.selected {
                    for (u, flags, modseq) in changed {
                        done.insert(u);
                        let Some(i) = sel.index_of(u) else { continue };
                        sel.snap.messages[i].flags = flags.as_slice().into();
                        sel.snap.messages[i].modseq = modseq;
                        if !silent || unchanged_since.is_some() {
                            let mut l = format!("* {} FETCH (", i + 1);
                            if uid {
                                l.push_str(&format!("UID {u} "));
                            }
                            l.push_str(&format!("FLAGS {}", flag_list(&flags)));
                            if self.condstore {
                                l.push_str(&format!(" MODSEQ ({modseq})"));
                            }
                            l.push(')');
                            lines.push(l);
                        }
                    }
                }
                for l in lines {
                    self.line(&l);
                }
                let modified: Vec<u32> = asked
                    .iter()
                    .filter(|u| !done.contains(u))
                    .filter_map(|&u| {
                        if uid {
                            Some(u)
                        } else {
                            self.selected.as_ref()?.index_of(u).map(|i| i as u32 + 1)
                        }
                    })
                    .collect();
                if unchanged_since.is_some() && !modified.is_empty() {
                    self.tagged(
                        &tag,
                        "OK",
                        &format!(
                            "[MODIFIED {}] Conditional store failed.",
                            sequence_set(modified)
                        ),
                    );
                } else {
                    self.tagged(&tag, "OK", "Store completed.");
                }
            }
            (Pending::Expunge { tag, close }, ImapAnswer::Expunged(uids)) => {
                self.expunged(&uids, close);
                if close {
                    self.selected = None;
                    self.tagged(&tag, "OK", "Close completed.");
                } else {
                    self.tagged(&tag, "OK", "Expunge completed.");
                }
            }
            (Pending::Copy { tag, remove }, ImapAnswer::Copied { uidvalidity, pairs }) => {
                let code = if pairs.is_empty() {
                    String::new()
                } else {
                    // Both sides ascending: ranges (`1:3`) keep the pairing (RFC 4315 reads
                    // the sets in order); otherwise every UID, in pair order.
                    let ascending = pairs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
                    let set = |side: &dyn Fn(&(u32, u32)) -> u32| {
                        if ascending {
                            sequence_set(pairs.iter().map(side))
                        } else {
                            pairs
                                .iter()
                                .map(|p| side(p).to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        }
                    };
                    format!(
                        "[COPYUID {uidvalidity} {} {}] ",
                        set(&|p| p.0),
                        set(&|p| p.1)
                    )
                };
                if remove {
                    if !code.is_empty() {
                        self.line(&format!("* OK {code}Moved."));
                    }
                    let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
                    self.expunged(&src, false);
                    self.tagged(&tag, "OK", "Move completed.");
                } else {
                    self.tagged(&tag, "OK", &format!("{code}Copy completed."));
                }
            }
            (Pending::AppendBegin, ImapAnswer::Appending(tx)) => match &mut self.append {
                Some(a) if self.ending.is_none() => {
                    a.tx = Some(tx);
                    if a.synchronizing {
                        self.line("+ Ready for literal data");
                    }
                }
                // The client went away (or the append was given up) while the store opened
                // the transaction: close it again (found by fuzzing).
                _ => {
                    if let Some(a) = self.append.take() {
                        self.aborts.extend(a.done);
                    }
                    self.request(Effect::Abort { tx }, Pending::Ignore);
                }
            },
            (Pending::AppendCommit, ImapAnswer::Appended { uidvalidity, uid }) => {
                if let Some(a) = &mut self.append {
                    a.committed.push(uid);
                    a.uidvalidity = uidvalidity;
                }
                self.append_flush(true);
            }
            (what, answer) => {
                let text = match answer {
                    ImapAnswer::No(text) => sanitize(&text),
                    _ => "[SERVERBUG] Internal error.".to_string(),
                };
                self.failed(what, &text);
            }
        }
    }

    /// A request failed (or was refused by the store): answer the command with NO.
    fn failed(&mut self, what: Pending, text: &str) {
        if matches!(what, Pending::List { .. }) {
            self.list_status = None;
        }
        match what {
            Pending::Auth(tag) => self.tagged(
                &tag,
                "NO",
                "[UNAVAILABLE] Temporary authentication failure.",
            ),
            Pending::Simple { tag, .. }
            | Pending::List { tag, .. }
            | Pending::Status { tag, .. }
            | Pending::Select { tag, .. }
            | Pending::Store { tag, .. }
            | Pending::Expunge { tag, .. }
            | Pending::Copy { tag, .. } => self.tagged(&tag, "NO", text),
            // RFC 5819: a folder whose status cannot be had is left out; the rest go on.
            Pending::ListStatus { tag, .. } => self.list_status_next(tag),
            // The folder is selected; without the store's list every UID the client knew and
            // cannot see now is reported (RFC 7162 allows a superset).
            Pending::SelectVanished { tag, text, qresync } => {
                self.select_resync(&qresync, &[], false);
                self.tagged(&tag, "OK", &text);
            }
            Pending::FetchVanished { tag, .. } => self.tagged(&tag, "NO", text),
            Pending::IdleRefresh(_, None) | Pending::Ignore => {}
            Pending::IdleRefresh(_, Some((tag, _))) => self.tagged(&tag, "NO", text),
            // A store that cannot stamp folders: look at the whole folder instead.
            Pending::Changed(reply) => self.idle_refresh(0, reply),
            Pending::Seen | Pending::Read => {
                if let Some(job) = self.job.take() {
                    let tag = match job {
                        Job::Fetch(j) => j.tag,
                        Job::Search(j) => j.tag,
                    };
                    self.tagged(&tag, "NO", text);
                }
            }
            Pending::AppendBegin | Pending::AppendChunk | Pending::AppendCommit => {
                if let Some(a) = self.append.take() {
                    if !a.ended {
                        // A MULTIAPPEND message already announced is skipped with the rest.
                        let sync = a.next.as_ref().map_or(a.synchronizing, |n| n.synchronizing);
                        if sync && (a.tx.is_none() || a.next.is_some()) {
                            self.parser.refuse_literal();
                        } else {
                            self.parser.abort_append();
                        }
                    }
                    // Nothing of the command is kept: every open transaction is aborted.
                    self.aborts.extend(a.done);
                    if !matches!(what, Pending::AppendCommit) {
                        self.aborts.extend(a.tx);
                    }
                    let text = if a.committed.is_empty() {
                        text.to_string()
                    } else {
                        // A commit failed after others succeeded (a failing disk): say so.
                        format!(
                            "{text} ({} of the messages were appended: UIDs {})",
                            a.committed.len(),
                            ranges_text(&uids_to_ranges(a.committed.iter().copied()))
                        )
                    };
                    self.tagged(&a.tag, "NO", &text);
                }
            }
        }
    }

    fn append_start(&mut self, a: AppendStart) {
        let refuse = |s: &mut Self, text: &str| {
            if a.synchronizing {
                s.parser.refuse_literal();
            } else {
                s.parser.abort_append();
            }
            // MULTIAPPEND: the messages before this one are not appended either.
            if let Some(prev) = s.append.take() {
                s.aborts.extend(prev.done);
                s.aborts.extend(prev.tx);
            }
            s.tagged(&a.tag, "NO", text);
        };
        if self.user.is_none() {
            return refuse(self, "Command not allowed before login.");
        }
        if a.size > self.config.max_message_size {
            return refuse(self, "[TOOBIG] Message too large.");
        }
        let folder = match self.folder_name(&a.mailbox) {
            Ok(f) => f,
            Err(e) => return refuse(self, e),
        };
        if a.index > 0 {
            // The previous message's last bytes go first (append_flush), then this one begins.
            match &mut self.append {
                Some(prev) if prev.tag == a.tag && prev.next.is_none() => {
                    prev.next = Some(a);
                    self.append_flush(true);
                }
                _ => refuse(self, "[SERVERBUG] APPEND out of order."),
            }
            return;
        }
        self.append = Some(Append {
            tag: a.tag.clone(),
            tx: None,
            chunk: Vec::new(),
            synchronizing: a.synchronizing,
            ended: false,
            done: Vec::new(),
            next: None,
            committed: Vec::new(),
            uidvalidity: 0,
        });
        self.imap(append_begin_request(folder, &a), Pending::AppendBegin);
    }

    /// Moves the APPEND along: sends buffered bytes (all of them when `force`), then begins a
    /// waiting MULTIAPPEND message, or, once the command has ended, commits the messages one
    /// by one and answers with every UID.
    fn append_flush(&mut self, force: bool) {
        let Some(a) = &mut self.append else { return };
        if let Some(tx) = a.tx {
            if !a.chunk.is_empty() && (force || a.chunk.len() >= self.config.chunk_size) {
                let bytes = std::mem::take(&mut a.chunk);
                return self.request(Effect::AppendChunk { tx, bytes }, Pending::AppendChunk);
            }
            if !a.chunk.is_empty() || !(a.ended || a.next.is_some()) {
                return;
            }
            // This message is complete.
            a.done.push(tx);
            a.tx = None;
        }
        if let Some(next) = a.next.take() {
            a.synchronizing = next.synchronizing;
            return match self.folder_name(&next.mailbox) {
                Ok(folder) => self.imap(append_begin_request(folder, &next), Pending::AppendBegin),
                Err(e) => self.failed(Pending::AppendBegin, e),
            };
        }
        if !a.ended {
            return;
        }
        if !a.done.is_empty() {
            let tx = a.done.remove(0);
            return self.imap(ImapRequest::AppendCommit { tx }, Pending::AppendCommit);
        }
        if let Some(a) = self.append.take() {
            let uids = ranges_text(&uids_to_ranges(a.committed.iter().copied()));
            self.tagged(
                &a.tag,
                "OK",
                &format!("[APPENDUID {} {uids}] Append completed.", a.uidvalidity),
            );
        }
    }

    fn handle_parsed(&mut self, now: Instant, parsed: Parsed, data: &[u8]) {
        match parsed {
            Parsed::Command(cmd) => self.command(now, cmd),
            Parsed::NeedContinuation => self.line("+ Ready for literal data"),
            Parsed::Incomplete => {}
            // The parser's text may quote client bytes (CR, LF...): one safe line only.
            Parsed::Error { tag, text } => {
                // An error ends the command in progress, an APPEND included: its store
                // transaction must not outlive it (found by fuzzing).
                // MULTIAPPEND: the earlier messages' transactions too.
                if let Some(a) = self.append.take() {
                    self.aborts.extend(a.done);
                    self.aborts.extend(a.tx);
                }
                self.bad(tag.as_deref(), &sanitize(&text));
            }
            Parsed::AppendStart(a) => self.append_start(a),
            Parsed::AppendData => {
                if let Some(a) = &mut self.append {
                    a.chunk.extend_from_slice(data);
                }
                self.append_flush(false);
            }
            Parsed::AppendEnd { tag } => match &mut self.append {
                Some(a) if a.tag == tag => {
                    a.ended = true;
                    self.append_flush(true);
                }
                _ => {}
            },
            Parsed::Line(line) => match std::mem::replace(&mut self.phase, Phase::Authenticated) {
                Phase::AuthResponse(tag) => {
                    self.phase = Phase::NotAuthenticated;
                    let text = String::from_utf8_lossy(&line).into_owned();
                    self.auth_response(tag, &text);
                }
                Phase::Idle(tag) => {
                    self.idle_next = None;
                    self.idle_pushed = false;
                    self.idle_poke = None;
                    if line.eq_ignore_ascii_case(b"DONE") {
                        self.tagged(&tag, "OK", "Idle completed.");
                    } else {
                        self.bad(Some(&tag), "Expected DONE.");
                    }
                }
                other => {
                    self.phase = other;
                    self.bad(None, "Unexpected line.");
                }
            },
        }
    }

    fn step(&mut self) {
        if self.pending.is_some() || self.closed {
            return;
        }
        if let Some(tx) = self.aborts.pop() {
            return self.request(Effect::Abort { tx }, Pending::Ignore);
        }
        if self.shutting_down
            && self.ending.is_none()
            && self.job.is_none()
            && self.append.is_none()
            && !self.parser.is_partial()
        {
            self.line("* BYE Server shutting down.");
            self.end(CloseReason::Shutdown);
        }
        if let Some(reason) = self.ending {
            if let Some(a) = self.append.take() {
                self.aborts.extend(a.done);
                self.aborts.extend(a.tx);
                if let Some(tx) = self.aborts.pop() {
                    return self.request(Effect::Abort { tx }, Pending::Ignore);
                }
            }
            self.closed = true;
            self.outbox.push(Event::Closed { reason });
            return;
        }
        // A change reported while a request was outstanding is looked at now.
        if !self.busy() && matches!(self.phase, Phase::Idle(_)) {
            match self.idle_poke.take() {
                Some(changed) => self.idle_look(changed),
                // Quiet until the next change: hold no memory for requests meanwhile.
                None => self.outbox.release_events(),
            }
        }
    }

    /// The time between looks at the folder during this IDLE.
    fn idle_interval(&self) -> Duration {
        if self.idle_pushed {
            self.config.idle_push_poll
        } else {
            self.config.idle_poll
        }
    }

    /// IDLE: looks at the selected folder, by its stamp (`changed` false) or, when a change is
    /// known, by a fresh snapshot (a change the runtime saw is looked at even if the stamp
    /// looks the same: two changes within one mtime tick leave the same stamp).
    fn idle_look(&mut self, changed: bool) {
        if changed {
            self.idle_refresh(0, None);
        } else if let Some(folder) = self.selected.as_ref().map(|s| s.folder.clone()) {
            self.imap(ImapRequest::Changed { folder }, Pending::Changed(None));
        }
    }

    fn busy(&self) -> bool {
        self.pending.is_some()
            || self.job.is_some()
            || self.delayed.is_some()
            || self.ending.is_some()
            || self.closed
    }
}

const OUTPUT_HIGH_WATER: usize = 256 * 1024;

impl Session for ImapSession {
    fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut used = 0;
        let mut rounds = 0usize;
        while used < input.len() && !self.busy() && self.outbox.out.len() < OUTPUT_HIGH_WATER {
            if self.phase == Phase::AwaitTls {
                used = input.len();
                break;
            }
            let mut rest = &input[used..];
            if self.parser.append_remaining() > 0 {
                let space = match &self.append {
                    Some(a) if a.tx.is_some() => {
                        self.config.chunk_size.saturating_sub(a.chunk.len()).max(1)
                    }
                    _ => rest.len(),
                };
                rest = &rest[..rest.len().min(space)];
            }
            let (n, parsed) = self.parser.feed(rest);
            used += n;
            let progress = n > 0 || !matches!(parsed, Parsed::Incomplete);
            self.handle_parsed(now, parsed, &rest[..n]);
            rounds += 1;
            // The parser consumes or returns a result on every call; the bound only guards that.
            if !progress || rounds > input.len().saturating_mul(2).saturating_add(16) {
                break;
            }
        }
        if used > 0 {
            self.deadline = now + self.config.command_timeout;
        }
        self.step();
        used
    }

    fn handle_eof(&mut self, _now: Instant) {
        self.job = None;
        self.end(CloseReason::PeerClosed);
        self.step();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, _)) = &self.delayed
            && now >= *at
            && let Some((_, text)) = self.delayed.take()
        {
            self.line(&text);
        }
        if !self.busy() && now >= self.deadline {
            self.line("* BYE Disconnected for inactivity.");
            self.end(CloseReason::Timeout);
        } else if !self.busy()
            && let Some(at) = self.idle_next
            && now >= at
            && matches!(self.phase, Phase::Idle(_))
        {
            self.idle_next = Some(now + self.idle_interval());
            self.idle_look(false);
        }
        self.step();
    }

    fn handle_completion(&mut self, now: Instant, id: RequestId, completion: Completion) {
        let Some((expected, what)) = self.pending.take() else {
            debug_assert!(false, "completion without a request");
            return;
        };
        debug_assert_eq!(expected, id, "completion for another request");
        let _ = now;
        match (what, completion) {
            (Pending::Auth(tag), Completion::Auth(AuthOutcome::Success(user))) => {
                self.user = Some(user);
                self.phase = Phase::Authenticated;
                let caps = self.capabilities();
                self.tagged(&tag, "OK", &format!("[CAPABILITY {caps}] Logged in."));
            }
            (Pending::Auth(tag), Completion::Auth(AuthOutcome::TempFail)) => self.tagged(
                &tag,
                "NO",
                "[UNAVAILABLE] Temporary authentication failure.",
            ),
            (Pending::Auth(tag), Completion::Auth(AuthOutcome::FailureAfter(wait))) => {
                self.login_failed(tag, Some(now + wait.max(self.config.auth_failure_delay)))
            }
            (Pending::Auth(tag), _) => {
                self.login_failed(tag, Some(now + self.config.auth_failure_delay))
            }
            (Pending::AppendChunk, Completion::Appended) => {
                if self
                    .append
                    .as_ref()
                    .is_some_and(|a| a.ended || a.next.is_some())
                {
                    self.append_flush(true);
                }
            }
            (Pending::Ignore, _) => {}
            (what, Completion::Imap(answer)) => self.store_answer(what, answer),
            (what, _) => self.failed(what, "[UNAVAILABLE] Internal error, try again later."),
        }
        self.step();
    }

    fn handle_tls_established(&mut self, _now: Instant, info: TlsInfo) {
        self.tls = Some(info);
        self.parser.reset();
        self.phase = Phase::NotAuthenticated;
    }

    fn handle_shutdown(&mut self, _now: Instant) {
        self.shutting_down = true;
        self.step();
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        self.outbox.poll_output(out)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        if let Some((at, _)) = &self.delayed {
            return Some(*at);
        }
        if self.pending.is_some() || self.ending.is_some() {
            return None;
        }
        match self.idle_next {
            Some(at) if self.selected.is_some() => Some(at.min(self.deadline)),
            _ => Some(self.deadline),
        }
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn watched_folder(&self) -> Option<(&UserId, &str)> {
        match (&self.phase, &self.user, &self.selected) {
            (Phase::Idle(_), Some(user), Some(sel)) if !self.closed && self.ending.is_none() => {
                Some((user, sel.folder.as_str()))
            }
            _ => None,
        }
    }

    fn handle_folder_changed(&mut self, now: Instant, changed: bool) {
        if self.watched_folder().is_none() {
            return;
        }
        self.idle_pushed = true;
        self.idle_next = Some(now + self.config.idle_push_poll);
        if self.busy() {
            self.idle_poke = Some(self.idle_poke.unwrap_or(false) || changed);
            return;
        }
        self.idle_look(changed);
        self.step();
    }

    fn buffered_bytes(&self) -> usize {
        let job = match &self.job {
            Some(Job::Fetch(j)) => j.buf.len(),
            Some(Job::Search(j)) => j.buf.len(),
            None => 0,
        };
        self.outbox.out.len() + job + self.append.as_ref().map_or(0, |a| a.chunk.len())
    }
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("session", &self.peer.session_id)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// The item to stream, when a FETCH asks for the whole message once and nothing else that
/// needs its bytes.
fn streamable(items: &[FetchItem]) -> Option<FetchItem> {
    let whole = |i: &FetchItem| match i {
        FetchItem::Rfc822 => true,
        FetchItem::BodySection {
            section, partial, ..
        } => section.part.is_empty() && section.text.is_none() && partial.is_none(),
        _ => false,
    };
    let mut body = items.iter().filter(|i| needs_body(i));
    match (body.next(), body.next()) {
        (Some(item), None) if whole(item) => Some(item.clone()),
        _ => None,
    }
}

fn needs_body(item: &FetchItem) -> bool {
    !matches!(
        item,
        FetchItem::Flags
            | FetchItem::Uid
            | FetchItem::InternalDate
            | FetchItem::Rfc822Size
            | FetchItem::ModSeq
    )
}

fn sets_seen(item: &FetchItem) -> bool {
    matches!(
        item,
        FetchItem::BodySection { peek: false, .. }
            | FetchItem::Binary { peek: false, .. }
            | FetchItem::Rfc822
            | FetchItem::Rfc822Text
    )
}

fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::And(k) => k.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(a) => uses_modseq(a),
        _ => false,
    }
}

fn flag_name(f: &Flag) -> String {
    match f {
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Seen => "\\Seen".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Extension(s) => format!("\\{s}"),
        Flag::Keyword(s) => s.clone(),
    }
}

fn section_spec(s: &Section) -> SectionSpec {
    SectionSpec {
        part: s.part.clone(),
        text: match &s.text {
            None => structure::SectionText::Full,
            Some(SectionText::Header) => structure::SectionText::Header,
            Some(SectionText::HeaderFields(f)) => structure::SectionText::HeaderFields(f.clone()),
            Some(SectionText::HeaderFieldsNot(f)) => {
                structure::SectionText::HeaderFieldsNot(f.clone())
            }
            Some(SectionText::Text) => structure::SectionText::Text,
            Some(SectionText::Mime) => structure::SectionText::Mime,
        },
    }
}

fn part_name(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn section_name(s: &Section) -> String {
    let mut out = part_name(&s.part);
    let text = match &s.text {
        None => return out,
        Some(SectionText::Header) => "HEADER".to_string(),
        Some(SectionText::HeaderFields(f)) => format!("HEADER.FIELDS ({})", f.join(" ")),
        Some(SectionText::HeaderFieldsNot(f)) => format!("HEADER.FIELDS.NOT ({})", f.join(" ")),
        Some(SectionText::Text) => "TEXT".to_string(),
        Some(SectionText::Mime) => "MIME".to_string(),
    };
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(&text);
    out
}

/// Applies `<offset.length>`, writing `<offset>` after the item name.
fn slice_partial<'a>(data: &'a [u8], partial: Option<(u32, u32)>, name: &mut Vec<u8>) -> &'a [u8] {
    let Some((offset, len)) = partial else {
        return data;
    };
    name.extend_from_slice(format!("<{offset}>").as_bytes());
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(len as usize).min(data.len());
    &data[start..end]
}

fn datetime_unix(d: DateTime) -> i64 {
    let days = days_from_civil(
        i64::from(d.date.year),
        i64::from(d.date.month),
        i64::from(d.date.day),
    );
    days * 86_400 + i64::from(d.hour) * 3600 + i64::from(d.minute) * 60 + i64::from(d.second)
        - i64::from(d.zone_minutes) * 60
}

/// A text made safe for one response line (a store's NO text, a parser's error).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Ascending UIDs as ranges of consecutive UIDs.
fn uids_to_ranges(uids: impl IntoIterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for u in uids {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(u) => last.1 = u,
            Some(last) if last.1 >= u => {}
            _ => out.push((u, u)),
        }
    }
    out
}

/// The intersection of two sorted lists of disjoint ranges.
fn intersect_ranges(a: &[(u32, u32)], b: &[std::ops::RangeInclusive<u32>]) -> Vec<(u32, u32)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(*b[j].start()), a[i].1.min(*b[j].end()));
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < *b[j].end() {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Ranges as an IMAP sequence set: `1:3,5`.
fn ranges_text(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
