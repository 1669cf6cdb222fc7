//! The MTA side of the Sendmail milter protocol, version 6, as Postfix speaks it.
//!
//! One [`MilterClient`] talks to one milter over one fresh connection for one message, the way
//! Postfix does with libmilter-based filters (libmilter closes its end when the SMTP client goes,
//! so Postfix reconnects per client; Petrel simply connects per message).
//!
//! # The conversation
//!
//! Every packet is a 4-byte big-endian length (counting the command byte), a command byte and its
//! data. After [`ScannerClient::begin`]:
//!
//! 1. `SMFIC_OPTNEG` offers protocol version 6, the actions Petrel honours
//!    ([`OFFERED_ACTIONS`]: add, insert and change header fields, quarantine, and the macro list
//!    request `SETSYMLIST`, whose list is read and ignored) and every protocol step flag Postfix
//!    offers ([`OFFERED_PROTOCOL`]). A libmilter-based milter that needs more (add or delete
//!    recipients, change the sender, replace the body) refuses the offer and closes the
//!    connection, which is a [`ScanError`]. A milter that claims more in its answer anyway (rspamd
//!    answers `0x13f` to any offer) is taken at the offered subset; if it then really asks for
//!    something not offered, that is a [`ScanError`].
//! 2. For each stage, `SMFIC_MACRO` with Postfix's default macros for it (sent even when the
//!    milter asked to skip the stage, as Postfix does), then the stage's command unless the milter
//!    asked for `SMFIP_NO*`, then its reply unless it asked for `SMFIP_NR_*`: CONNECT, HELO, MAIL
//!    (`<sender>`), one RCPT per recipient (`<rcpt>`), DATA (milters of version 4 and later).
//! 3. The header, parsed incrementally from the message stream: one `SMFIC_HEADER` per field,
//!    name and value as Postfix sends them (see below); then `SMFIC_EOH`.
//! 4. The body after the blank line, byte for byte (CRLF lines), in `SMFIC_BODY` packets of
//!    exactly 65535 bytes (the last one shorter). Each waits for its reply unless `SMFIP_NR_BODY`;
//!    a `SMFIR_SKIP` reply ends the body early.
//! 5. `SMFIC_BODYEOB`, then modification actions until the final reply.
//! 6. `SMFIC_QUIT` after a complete conversation; `SMFIC_ABORT` and `SMFIC_QUIT` when a decision
//!    came earlier.
//!
//! # Macros
//!
//! | stage | macros |
//! | --- | --- |
//! | CONNECT (`C`) | `j`, `{daemon_name}`, `v`, `_`, `{client_addr}`, `{client_port}`, `{client_name}`, `{if_addr}` (when known) |
//! | HELO (`H`) | `{tls_version}` (TLS session, version known) |
//! | MAIL (`M`) | `i`, `{auth_type}` and `{auth_authen}` (authenticated session), `{mail_addr}` |
//! | RCPT (`R`) | `i`, `{rcpt_addr}` |
//! | DATA (`T`), EOH (`N`), end of message (`E`) | `i` |
//!
//! A stage with no macros gets no `SMFIC_MACRO` packet. A client without a verified name is
//! `[ip]` in CONNECT and `{client_name}`, as Sendmail shows it. Macro lists a milter asks for
//! with `SETSYMLIST` are parsed and ignored: these are sent regardless.
//!
//! # Header fields, as Postfix sends them
//!
//! The name is the text before the colon (whitespace before the colon removed). The value is
//! everything after the colon with exactly one leading space removed (never a tab), unless the
//! milter negotiated `SMFIP_HDR_LEADSPC`, in which case it is sent untouched. A folded field is
//! sent with its line breaks as bare LF ("Sendmail 8 sends multi-line headers as text separated by
//! newline", milter8.c). NUL bytes are dropped (the protocol's strings are NUL-terminated).
//!
//! Bounds, documented choice: a field longer than [`MAX_FIELD`] bytes is cut to that length (the
//! rest of it is not sent); fields after the first [`MAX_FIELDS`] are not sent at all. The message
//! itself is not changed; the milter just sees less. This mirrors Postfix's `header_size_limit`,
//! which discards the excess rather than failing the message.
//!
//! # Replies and the [`Verdict`]
//!
//! | milter says | verdict |
//! | --- | --- |
//! | `CONTINUE` at end of message, or `ACCEPT` at any stage | [`Verdict::Accept`] with the edits so far |
//! | `REJECT` at any stage | [`Verdict::Reject`] `550 5.7.1 Command rejected` |
//! | `TEMPFAIL` at any stage | [`Verdict::TempFail`] `451 4.7.1 Service unavailable - try again later` |
//! | `REPLYCODE "5xx x.y.z text"` / `"4xx ..."` | [`Verdict::Reject`] / [`Verdict::TempFail`] with that reply |
//! | `DISCARD` after HELO | [`Verdict::Discard`] |
//! | `SHUTDOWN`, `CONN_FAIL` | [`Verdict::TempFail`] `421 4.7.0` |
//! | `QUARANTINE reason` at end of message | `quarantine: Some(reason)` in the final accept |
//! | `ADDHEADER`, `INSHEADER`, `CHGHEADER` at end of message | [`HeaderEdit`]s in order |
//! | `PROGRESS` | keep waiting |
//! | `SKIP` after a body chunk | stop sending the body |
//!
//! A decision at any stage ends the scan at once, so a milter that rejects one recipient rejects
//! the whole message (Petrel scans after the recipients have been accepted; Postfix would refuse
//! that RCPT alone). Anything else is a [`ScanError`] and the caller's failure policy applies:
//! a reply Petrel did not offer (`ADDRCPT`, `DELRCPT`, `CHGFROM`, `REPLBODY`, ...), an edit the
//! milter did not negotiate, an edit before the end of the message, a packet longer than
//! [`MAX_PACKET`] or of length 0, trailing data after a reply that takes none, an unknown command,
//! and the milter closing the connection before it decided.
//!
//! `PROGRESS` changes no state here: the machine has no clock. A runtime that restarts its
//! scanner timeout whenever bytes arrive gives the milter more time on each `PROGRESS`, as
//! Postfix does; one with a fixed deadline does not.
//!
//! # Header edits
//!
//! [`HeaderEdit`] values never carry the space after the colon: write them as `Name: value`.
//! With `SMFIP_HDR_LEADSPC` negotiated the milter sends values with their leading space, and one
//! leading space is removed here. Folded values come back with CRLF line breaks; an empty
//! continuation line is dropped and one that does not start with whitespace gets a space, so an
//! edit can never end the header or forge a second field. `INSHEADER` index 0 is the first field
//! (Sendmail's convention); `CHGHEADER` index 0 is treated as 1, as Postfix does.

use super::{HeaderEdit, ScanContext, ScanError, ScannerClient, Verdict};

/// Protocol version offered (Postfix >= 2.6 and libmilter 8.14+).
pub const PROTOCOL_VERSION: u32 = 6;

/// `SMFIF_ADDHDRS`: the milter may append header fields.
pub const SMFIF_ADDHDRS: u32 = 0x01;
/// `SMFIF_CHGHDRS`: the milter may change or delete header fields.
pub const SMFIF_CHGHDRS: u32 = 0x10;
/// `SMFIF_QUARANTINE`: the milter may quarantine the message.
pub const SMFIF_QUARANTINE: u32 = 0x20;
/// `SMFIF_SETSYMLIST`: the milter may name the macros it wants (the list is ignored).
pub const SMFIF_SETSYMLIST: u32 = 0x100;
/// The actions offered in `SMFIC_OPTNEG`: exactly those Petrel honours.
pub const OFFERED_ACTIONS: u32 =
    SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;

const SMFIP_NOCONNECT: u32 = 0x01;
const SMFIP_NOHELO: u32 = 0x02;
const SMFIP_NOMAIL: u32 = 0x04;
const SMFIP_NORCPT: u32 = 0x08;
const SMFIP_NOBODY: u32 = 0x10;
const SMFIP_NOHDRS: u32 = 0x20;
const SMFIP_NOEOH: u32 = 0x40;
const SMFIP_NR_HDR: u32 = 0x80;
const SMFIP_NODATA: u32 = 0x200;
const SMFIP_SKIP: u32 = 0x400;
const SMFIP_NR_CONN: u32 = 0x1000;
const SMFIP_NR_HELO: u32 = 0x2000;
const SMFIP_NR_MAIL: u32 = 0x4000;
const SMFIP_NR_RCPT: u32 = 0x8000;
const SMFIP_NR_DATA: u32 = 0x1_0000;
const SMFIP_NR_EOH: u32 = 0x4_0000;
const SMFIP_NR_BODY: u32 = 0x8_0000;
const SMFIP_HDR_LEADSPC: u32 = 0x10_0000;

/// The protocol flags offered in `SMFIC_OPTNEG`, the same set Postfix offers for version 6:
/// every `SMFIP_NO*` step, every `SMFIP_NR_*` no-reply step, `SMFIP_SKIP`, `SMFIP_RCPT_REJ`
/// (there are never rejected recipients to show) and `SMFIP_HDR_LEADSPC`.
pub const OFFERED_PROTOCOL: u32 = 0x1F_FFFF;

/// Body bytes per `SMFIC_BODY` packet (`MILTER_CHUNK_SIZE` in Postfix and libmilter).
pub const BODY_CHUNK: usize = 65535;
/// Longest packet accepted from a milter; a longer length is a protocol error.
pub const MAX_PACKET: usize = 1024 * 1024;
/// Longest header field sent to the milter; the rest of a longer field is not sent.
pub const MAX_FIELD: usize = 64 * 1024;
/// Most header fields sent to the milter; later fields are not sent.
pub const MAX_FIELDS: usize = 1000;
/// Most header edits accepted from one milter for one message.
pub const MAX_EDITS: usize = 1000;
/// Most bytes of header edits (names and values) accepted for one message.
pub const MAX_EDIT_BYTES: usize = 1024 * 1024;
/// Unconsumed message bytes held before [`ScannerClient::ready_for_body`] turns false.
const HIGH_WATER: usize = 64 * 1024;
/// Longest reply text kept from `SMFIR_REPLYCODE`.
const MAX_REPLY_TEXT: usize = 512;

/// What a milter connection is told about this MTA, beyond the [`ScanContext`].
///
/// All of it goes into macros; none of it changes the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterConfig {
    /// `{daemon_name}`: the name of the receiving service (Postfix: `milter_macro_daemon_name`,
    /// default `$myhostname`; libmilter filters such as OpenDKIM use it to tell MSA from MTA).
    pub daemon_name: String,
    /// `v`: the MTA's name and version.
    pub mta_version: String,
    /// `{if_addr}`: the local IP address the client connected to, when known.
    pub if_addr: Option<String>,
    /// `{tls_version}` (such as `TLSv1.3`), sent at HELO when the session runs over TLS and the
    /// version is known.
    pub tls_version: Option<String>,
    /// `{auth_type}`: the SASL mechanism the client logged in with. When the session is
    /// authenticated ([`ScanContext::authenticated`]) and this is `None`, `PLAIN` is sent, so
    /// that milters which test `{auth_type}` to recognise a logged-in sender (OpenDKIM signs
    /// such mail) see one. Not sent for unauthenticated sessions.
    pub auth_type: Option<String>,
}

impl Default for MilterConfig {
    fn default() -> Self {
        Self {
            daemon_name: "petrel".into(),
            mta_version: concat!("Petrel ", env!("CARGO_PKG_VERSION")).into(),
            if_addr: None,
            tls_version: None,
            auth_type: None,
        }
    }
}

/// A protocol step, for error messages and for which replies are allowed when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    Header,
    Eoh,
    Body,
    Eob,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "CONNECT",
            Step::Helo => "HELO",
            Step::Mail => "MAIL",
            Step::Rcpt => "RCPT",
            Step::Data => "DATA",
            Step::Header => "HEADER",
            Step::Eoh => "EOH",
            Step::Body => "BODY",
            Step::Eob => "end of message",
        }
    }
}

/// Where the conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `begin` not called yet.
    Idle,
    /// OPTNEG sent, its reply awaited.
    Negotiate,
    Connect,
    Helo,
    Mail,
    Rcpt(usize),
    Data,
    Headers,
    Body,
    Eob,
    /// Final reply awaited or received; nothing more to send for the message.
    Done,
}

/// The header field being collected: `name: value` bytes with folds as `\n`.
#[derive(Debug, Default)]
struct Field {
    raw: Vec<u8>,
    /// Not sent (beyond [`MAX_FIELDS`]).
    dropped: bool,
}

/// The client side of the milter protocol for one message over one connection.
///
/// Build it with [`MilterClient::new`], connect to the milter, then drive it as any
/// [`ScannerClient`]. Memory is bounded: at most 64 KiB of unconsumed message plus
/// the caller's last chunk, one header field of [`MAX_FIELD`] bytes, one reply packet of
/// [`MAX_PACKET`] bytes and [`MAX_EDIT_BYTES`] of edits.
///
/// Once [`ScannerClient::verdict`] is `Some` (or an input call failed) the machine takes no more
/// message bytes (`ready_for_body` is false) and wants no input; [`ScannerClient::poll_output`]
/// may still hold the closing `SMFIC_ABORT`/`SMFIC_QUIT`, which is polite to send but not needed:
/// closing the connection ends the milter's side as well.
#[derive(Debug)]
pub struct MilterClient {
    config: MilterConfig,
    ctx: ScanContext,
    stage: Stage,
    /// The step whose reply is awaited (`None`: free to send).
    awaiting: Option<Step>,
    /// Negotiated by the milter.
    version: u32,
    actions: u32,
    protocol: u32,
    out: Vec<u8>,
    /// Message bytes fed but not yet consumed, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    ended: bool,
    /// Inside a header line that was cut: drop bytes up to the next LF.
    discard_line: bool,
    /// Bytes after `pos` already known to hold no LF (the header line being completed).
    scanned: usize,
    field: Option<Field>,
    fields_seen: usize,
    skip_body: bool,
    /// Bytes received from the milter, not yet a whole packet.
    input: Vec<u8>,
    edits: Vec<HeaderEdit>,
    edit_bytes: usize,
    quarantine: Option<String>,
    verdict: Option<Verdict>,
    failed: Option<ScanError>,
}

impl MilterClient {
    /// A client for one message; connect to the milter, then call [`ScannerClient::begin`].
    ///
    /// `config` supplies the MTA-side macros (`{daemon_name}`, `v`, `{if_addr}`,
    /// `{tls_version}`); everything else comes from the [`ScanContext`] given to `begin`.
    pub fn new(config: MilterConfig) -> Self {
        Self {
            config,
            ctx: ScanContext::default(),
            stage: Stage::Idle,
            awaiting: None,
            version: 0,
            actions: 0,
            protocol: 0,
            out: Vec::new(),
            pending: Vec::new(),
            pos: 0,
            ended: false,
            discard_line: false,
            scanned: 0,
            field: None,
            fields_seen: 0,
            skip_body: false,
            input: Vec::new(),
            edits: Vec::new(),
            edit_bytes: 0,
            quarantine: None,
            verdict: None,
            failed: None,
        }
    }

    /// The protocol flags the milter negotiated (0 before its OPTNEG reply), for logs and tests.
    pub fn negotiated_protocol(&self) -> u32 {
        self.protocol
    }

    /// The actions the milter negotiated (0 before its OPTNEG reply), for logs and tests.
    pub fn negotiated_actions(&self) -> u32 {
        self.actions
    }

    fn finished(&self) -> bool {
        self.verdict.is_some() || self.failed.is_some()
    }

    fn flag(&self, bit: u32) -> bool {
        self.protocol & bit != 0
    }

    /// Appends one packet: length, command, the parts concatenated.
    fn packet(&mut self, cmd: u8, parts: &[&[u8]]) {
        let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        // Our packets are at most a body chunk or a bounded header field plus a few strings.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.push(cmd);
        for part in parts {
            self.out.extend_from_slice(part);
        }
    }

    /// `SMFIC_MACRO` for a stage; nothing when the list is empty.
    fn macros(&mut self, stage: u8, pairs: &[(&str, String)]) {
        if pairs.is_empty() {
            return;
        }
        let mut data = vec![stage];
        for (name, value) in pairs {
            push_cstr(&mut data, name.as_bytes());
            push_cstr(&mut data, value.as_bytes());
        }
        self.packet(b'D', &[&data]);
    }

    /// Sends a stage command unless skipped; waits for its reply unless the milter said no reply.
    fn event(&mut self, step: Step, cmd: u8, data: &[u8], no_send: u32, no_reply: u32) {
        if no_send != 0 && self.flag(no_send) {
            return;
        }
        self.packet(cmd, &[data]);
        if no_reply == 0 || !self.flag(no_reply) {
            self.awaiting = Some(step);
        }
    }

    fn client_host(&self) -> String {
        match &self.ctx.client_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("[{}]", self.ctx.client_ip),
        }
    }

    /// Sends whatever can be sent now, until a reply is needed or more input is.
    fn advance(&mut self) {
        while self.awaiting.is_none() && !self.finished() {
            match self.stage {
                Stage::Idle | Stage::Negotiate | Stage::Done => return,
                Stage::Connect => {
                    let host = self.client_host();
                    let ip = self.ctx.client_ip.clone();
                    let mut m = vec![
                        ("j", self.ctx.hostname.clone()),
                        ("{daemon_name}", self.config.daemon_name.clone()),
                        ("v", self.config.mta_version.clone()),
                        (
                            "_",
                            match &self.ctx.client_name {
                                Some(name) if !name.is_empty() => format!("{name} [{ip}]"),
                                _ => format!("[{ip}]"),
                            },
                        ),
                        ("{client_addr}", ip.clone()),
                        ("{client_port}", self.ctx.client_port.to_string()),
                        ("{client_name}", host.clone()),
                    ];
                    if let Some(addr) = &self.config.if_addr {
                        m.push(("{if_addr}", addr.clone()));
                    }
                    self.macros(b'C', &m);
                    let mut data = Vec::new();
                    push_cstr(&mut data, host.as_bytes());
                    let family = if ip.contains(':') {
                        b'6'
                    } else if ip.contains('.') {
                        b'4'
                    } else {
                        b'U'
                    };
                    data.push(family);
                    if family != b'U' {
                        data.extend_from_slice(&self.ctx.client_port.to_be_bytes());
                        push_cstr(&mut data, ip.as_bytes());
                    }
                    self.event(Step::Connect, b'C', &data, SMFIP_NOCONNECT, SMFIP_NR_CONN);
                    self.stage = Stage::Helo;
                }
                Stage::Helo => {
                    let mut m = Vec::new();
                    if self.ctx.tls
                        && let Some(v) = &self.config.tls_version
                    {
                        m.push(("{tls_version}", v.clone()));
                    }
                    self.macros(b'H', &m);
                    let mut data = Vec::new();
                    push_cstr(&mut data, self.ctx.helo.as_bytes());
                    self.event(Step::Helo, b'H', &data, SMFIP_NOHELO, SMFIP_NR_HELO);
                    self.stage = Stage::Mail;
                }
                Stage::Mail => {
                    let mut m = vec![("i", self.ctx.queue_id.clone())];
                    if let Some(user) = &self.ctx.authenticated {
                        let mechanism = self.config.auth_type.as_deref().unwrap_or("PLAIN");
                        m.push(("{auth_type}", mechanism.to_string()));
                        m.push(("{auth_authen}", user.clone()));
                    }
                    m.push(("{mail_addr}", self.ctx.sender.clone()));
                    self.macros(b'M', &m);
                    let mut data = Vec::new();
                    push_cstr(&mut data, format!("<{}>", self.ctx.sender).as_bytes());
                    self.event(Step::Mail, b'M', &data, SMFIP_NOMAIL, SMFIP_NR_MAIL);
                    self.stage = Stage::Rcpt(0);
                }
                Stage::Rcpt(n) => {
                    let Some(rcpt) = self.ctx.recipients.get(n).cloned() else {
                        self.stage = Stage::Data;
                        continue;
                    };
                    let m = [
                        ("i", self.ctx.queue_id.clone()),
                        ("{rcpt_addr}", rcpt.clone()),
                    ];
                    self.macros(b'R', &m);
                    let mut data = Vec::new();
                    push_cstr(&mut data, format!("<{rcpt}>").as_bytes());
                    self.event(Step::Rcpt, b'R', &data, SMFIP_NORCPT, SMFIP_NR_RCPT);
                    self.stage = Stage::Rcpt(n + 1);
                }
                Stage::Data => {
                    // DATA exists from protocol version 4 on; older milters would hang up.
                    if self.version >= 4 {
                        self.macros(b'T', &[("i", self.ctx.queue_id.clone())]);
                        self.event(Step::Data, b'T', &[], SMFIP_NODATA, SMFIP_NR_DATA);
                    }
                    self.stage = Stage::Headers;
                }
                Stage::Headers => {
                    if !self.step_header() {
                        return;
                    }
                }
                Stage::Body => {
                    if !self.step_body() {
                        return;
                    }
                }
                Stage::Eob => {
                    self.macros(b'E', &[("i", self.ctx.queue_id.clone())]);
                    self.packet(b'E', &[]);
                    self.awaiting = Some(Step::Eob);
                    self.stage = Stage::Done;
                }
            }
        }
    }

    /// One step of header parsing; false when more input is needed.
    fn step_header(&mut self) -> bool {
        if self.discard_line {
            let avail = &self.pending[self.pos..];
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pos += i + 1;
                    self.discard_line = false;
                }
                None => {
                    self.pos = self.pending.len();
                    if self.ended {
                        self.discard_line = false;
                    } else {
                        return false;
                    }
                }
            }
            return true;
        }
        let avail = &self.pending[self.pos..];
        if avail.is_empty() {
            if !self.ended {
                return false;
            }
            // The message ends inside the header (no body at all).
            if self.field.is_some() {
                self.emit_field();
            } else {
                self.end_of_header();
            }
            return true;
        }
        // Resume the search for the line's end where the last call stopped, so a long line fed
        // in tiny pieces costs linear time, not quadratic.
        let from = self.scanned.min(avail.len());
        let (line_len, complete) = match avail[from..].iter().position(|&b| b == b'\n') {
            Some(i) => (from + i + 1, true),
            None if self.ended => (avail.len(), true),
            None if avail.len() >= MAX_FIELD => (avail.len(), false),
            None => {
                self.scanned = avail.len();
                return false;
            }
        };
        // Whatever happens below consumes this line or leaves it for a fresh look.
        self.scanned = 0;
        let line = &avail[..line_len];
        let content = strip_eol(line);
        let continuation = matches!(line[0], b' ' | b'\t');
        if continuation && let Some(field) = &mut self.field {
            if !field.dropped && field.raw.len() < MAX_FIELD {
                let room = MAX_FIELD - field.raw.len() - 1;
                field.raw.push(b'\n');
                field
                    .raw
                    .extend(content.iter().filter(|&&b| b != 0).take(room));
            }
            self.pos += line_len;
            self.discard_line = !complete;
            return true;
        }
        if self.field.is_some() {
            // The field ends before this line; this line is looked at again afterwards.
            self.emit_field();
            return true;
        }
        if content.is_empty() && complete {
            self.pos += line_len;
            self.end_of_header();
            return true;
        }
        if header_name_len(content).is_some() {
            self.fields_seen += 1;
            let mut raw: Vec<u8> = content.iter().copied().filter(|&b| b != 0).collect();
            raw.truncate(MAX_FIELD);
            self.field = Some(Field {
                raw,
                dropped: self.fields_seen > MAX_FIELDS,
            });
            self.pos += line_len;
            self.discard_line = !complete;
            return true;
        }
        // Not a header field: the header ends and this line starts the body.
        self.end_of_header();
        true
    }

    /// Sends the collected field as `SMFIC_HEADER`.
    fn emit_field(&mut self) {
        let Some(field) = self.field.take() else {
            return;
        };
        if field.dropped || self.flag(SMFIP_NOHDRS) {
            return;
        }
        let Some(name_len) = header_name_len(&field.raw) else {
            return;
        };
        let colon = field.raw[name_len..]
            .iter()
            .position(|&b| b == b':')
            .map_or(field.raw.len(), |i| name_len + i);
        let name = &field.raw[..name_len];
        let mut value = field.raw.get(colon + 1..).unwrap_or_default();
        if !self.flag(SMFIP_HDR_LEADSPC) && value.first() == Some(&b' ') {
            value = &value[1..];
        }
        let mut data = Vec::with_capacity(field.raw.len() + 2);
        push_cstr(&mut data, name);
        push_cstr(&mut data, value);
        self.event(Step::Header, b'L', &data, 0, SMFIP_NR_HDR);
    }

    fn end_of_header(&mut self) {
        self.macros(b'N', &[("i", self.ctx.queue_id.clone())]);
        self.event(Step::Eoh, b'N', &[], SMFIP_NOEOH, SMFIP_NR_EOH);
        self.stage = Stage::Body;
    }

    /// One step of body streaming; false when more input is needed.
    fn step_body(&mut self) -> bool {
        if self.skip_body || self.flag(SMFIP_NOBODY) {
            self.pending.clear();
            self.pos = 0;
            if self.ended {
                self.stage = Stage::Eob;
                return true;
            }
            return false;
        }
        let avail = self.pending.len() - self.pos;
        if avail >= BODY_CHUNK || (self.ended && avail > 0) {
            let n = avail.min(BODY_CHUNK);
            let start = self.pos;
            self.pos += n;
            let len = u32::try_from(n + 1).unwrap_or(u32::MAX);
            self.out.extend_from_slice(&len.to_be_bytes());
            self.out.push(b'B');
            self.out.extend_from_slice(&self.pending[start..start + n]);
            if !self.flag(SMFIP_NR_BODY) {
                self.awaiting = Some(Step::Body);
            }
            return true;
        }
        if self.ended {
            self.stage = Stage::Eob;
            return true;
        }
        false
    }

    /// A decision: record it and close the conversation politely.
    fn decide(&mut self, verdict: Verdict, complete: bool) {
        if !complete {
            self.packet(b'A', &[]);
        }
        self.packet(b'Q', &[]);
        self.verdict = Some(verdict);
        self.awaiting = None;
        self.stage = Stage::Done;
        self.pending = Vec::new();
        self.pos = 0;
        self.field = None;
    }

    fn accept(&mut self, complete: bool) {
        let verdict = Verdict::Accept {
            edits: std::mem::take(&mut self.edits),
            spam: None,
            quarantine: self.quarantine.take(),
        };
        self.decide(verdict, complete);
    }

    fn fail(&mut self, msg: String) -> ScanError {
        let err = ScanError(format!("milter: {msg}"));
        self.failed = Some(err.clone());
        self.awaiting = None;
        self.stage = Stage::Done;
        self.pending = Vec::new();
        self.pos = 0;
        err
    }

    /// Handles one whole packet from the milter.
    fn on_packet(&mut self, cmd: u8, data: &[u8]) -> Result<(), String> {
        if self.stage == Stage::Negotiate {
            return self.on_optneg(cmd, data);
        }
        let Some(step) = self.awaiting else {
            return Err(format!(
                "unexpected reply {} when no reply was due",
                show_cmd(cmd)
            ));
        };
        let at_eob = step == Step::Eob;
        let no_data = |what: &str| {
            if data.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{what} reply followed by {} data bytes",
                    data.len()
                ))
            }
        };
        match cmd {
            b'p' => no_data("PROGRESS"),
            b'c' => {
                no_data("CONTINUE")?;
                if at_eob {
                    self.accept(true);
                } else {
                    self.awaiting = None;
                }
                Ok(())
            }
            b'a' => {
                no_data("ACCEPT")?;
                self.accept(at_eob);
                Ok(())
            }
            b'r' => {
                no_data("REJECT")?;
                self.decide(
                    Verdict::Reject {
                        code: 550,
                        status: "5.7.1".into(),
                        text: "Command rejected".into(),
                    },
                    at_eob,
                );
                Ok(())
            }
            b't' => {
                no_data("TEMPFAIL")?;
                self.decide(tempfail(), at_eob);
                Ok(())
            }
            b'd' => {
                no_data("DISCARD")?;
                if matches!(step, Step::Connect | Step::Helo) {
                    return Err(format!("DISCARD is not allowed after {}", step.name()));
                }
                self.decide(Verdict::Discard, at_eob);
                Ok(())
            }
            b'4' | b'f' => {
                no_data("SHUTDOWN")?;
                self.decide(
                    Verdict::TempFail {
                        code: 421,
                        status: "4.7.0".into(),
                        text: "Server closing connection".into(),
                    },
                    at_eob,
                );
                Ok(())
            }
            b'y' => {
                let verdict = parse_replycode(data)?;
                self.decide(verdict, at_eob);
                Ok(())
            }
            b's' => {
                no_data("SKIP")?;
                if step != Step::Body || !self.flag(SMFIP_SKIP) {
                    return Err(format!("SKIP after {}", step.name()));
                }
                self.skip_body = true;
                self.awaiting = None;
                Ok(())
            }
            b'q' | b'h' | b'i' | b'm' if !at_eob => Err(format!(
                "modification {} before the end of the message (after {})",
                show_cmd(cmd),
                step.name()
            )),
            b'q' => {
                if self.actions & SMFIF_QUARANTINE == 0 {
                    return Err("QUARANTINE without negotiating it".into());
                }
                let mut args = Args(data);
                let reason = args.cstr()?;
                args.end()?;
                self.quarantine = Some(clean_text(reason));
                Ok(())
            }
            b'h' | b'i' | b'm' => {
                let needed = if cmd == b'm' {
                    SMFIF_CHGHDRS
                } else {
                    SMFIF_ADDHDRS
                };
                if self.actions & needed == 0 {
                    return Err(format!("{} without negotiating it", show_cmd(cmd)));
                }
                let mut args = Args(data);
                let index = if cmd == b'h' { 0 } else { args.u32()? };
                let name = args.cstr()?;
                let value = args.cstr()?;
                args.end()?;
                if !valid_name(name) {
                    return Err(format!("{} with a bad field name", show_cmd(cmd)));
                }
                self.edit_bytes += name.len() + value.len();
                if self.edits.len() >= MAX_EDITS || self.edit_bytes > MAX_EDIT_BYTES {
                    return Err("too many header edits".into());
                }
                let name = String::from_utf8_lossy(name).into_owned();
                let value = self.edit_value(value);
                self.edits.push(match cmd {
                    b'h' => HeaderEdit::Add { name, value },
                    b'i' => HeaderEdit::Insert { index, name, value },
                    _ => HeaderEdit::Change {
                        name,
                        index: index.max(1),
                        value,
                    },
                });
                Ok(())
            }
            _ => Err(format!(
                "unexpected reply {} after {}",
                show_cmd(cmd),
                step.name()
            )),
        }
    }

    fn on_optneg(&mut self, cmd: u8, data: &[u8]) -> Result<(), String> {
        if cmd != b'O' {
            return Err(format!(
                "unexpected reply {} to option negotiation",
                show_cmd(cmd)
            ));
        }
        let mut args = Args(data);
        let version = args.u32()?;
        let actions = args.u32()?;
        let protocol = args.u32()?;
        if !(2..=PROTOCOL_VERSION).contains(&version) {
            return Err(format!("protocol version {version} not supported"));
        }
        // A milter asking for more than was offered is not refused here: rspamd's milter
        // answers 0x13f (recipients, body and all) whatever the MTA offers, yet by default only
        // adds and changes header fields. What it did not get offered it may not use: such a
        // request, when it comes, is a protocol error (see `on_packet`).
        let actions = actions & OFFERED_ACTIONS;
        // SETSYMLIST macro lists: (stage u32, "names") pairs. Read to check, then ignored.
        while !args.0.is_empty() {
            args.u32()?;
            args.cstr()?;
        }
        self.version = version;
        self.actions = actions;
        // Bits we did not offer cannot be honoured; libmilter never sets them.
        self.protocol = protocol & OFFERED_PROTOCOL;
        self.stage = Stage::Connect;
        Ok(())
    }

    /// A header value from the milter, as [`HeaderEdit`] carries it (see the module docs).
    fn edit_value(&self, raw: &[u8]) -> String {
        let mut raw = raw;
        if self.flag(SMFIP_HDR_LEADSPC) && raw.first() == Some(&b' ') {
            raw = &raw[1..];
        }
        let text = String::from_utf8_lossy(raw);
        let mut value = String::with_capacity(text.len() + 8);
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line).replace('\r', " ");
            if i == 0 {
                value.push_str(&line);
                continue;
            }
            if line.is_empty() {
                continue;
            }
            value.push_str("\r\n");
            if !line.starts_with([' ', '\t']) {
                value.push(' ');
            }
            value.push_str(&line);
        }
        value
    }

    fn handle_packets(&mut self) -> Result<(), String> {
        let mut at = 0;
        let result = loop {
            if self.finished() {
                break Ok(());
            }
            let rest = &self.input[at..];
            if rest.len() < 4 {
                break Ok(());
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len == 0 {
                break Err("packet of length 0".to_string());
            }
            if len > MAX_PACKET {
                break Err(format!("packet of {len} bytes is too long"));
            }
            if rest.len() < 4 + len {
                break Ok(());
            }
            let cmd = rest[4];
            let data = rest[5..4 + len].to_vec();
            at += 4 + len;
            if let Err(e) = self.on_packet(cmd, &data) {
                break Err(e);
            }
            // Move on before the next packet, so replies that arrive together are matched to
            // the steps they answer, exactly as when they arrive one by one.
            self.advance();
        };
        self.input.drain(..at.min(self.input.len()));
        if self.finished() {
            self.input = Vec::new();
        }
        result
    }
}

impl ScannerClient for MilterClient {
    fn begin(&mut self, ctx: &ScanContext) {
        if self.stage != Stage::Idle || self.finished() {
            return;
        }
        self.ctx = ctx.clone();
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        data.extend_from_slice(&OFFERED_ACTIONS.to_be_bytes());
        data.extend_from_slice(&OFFERED_PROTOCOL.to_be_bytes());
        self.packet(b'O', &[&data]);
        self.stage = Stage::Negotiate;
    }

    fn body(&mut self, chunk: &[u8]) {
        if self.ended || self.finished() {
            return;
        }
        if self.pos > 0 {
            self.pending.drain(..self.pos);
            self.pos = 0;
        }
        self.pending.extend_from_slice(chunk);
        self.advance();
    }

    fn end(&mut self) {
        if self.ended || self.finished() {
            return;
        }
        self.ended = true;
        self.advance();
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        out.append(&mut self.out);
        true
    }

    fn ready_for_body(&self) -> bool {
        !self.ended
            && !self.finished()
            && self.pending.len() - self.pos < HIGH_WATER
            && self.out.len() < HIGH_WATER
    }

    fn wants_input(&self) -> bool {
        !self.finished() && (self.stage == Stage::Negotiate || self.awaiting.is_some())
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.verdict.is_some() {
            return Ok(());
        }
        self.input.extend_from_slice(bytes);
        if let Err(msg) = self.handle_packets() {
            return Err(self.fail(msg));
        }
        self.advance();
        Ok(())
    }

    fn handle_eof(&mut self) -> Result<(), ScanError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.verdict.is_some() {
            return Ok(());
        }
        let msg = match (self.stage, self.awaiting) {
            (Stage::Negotiate, _) => "connection closed during option negotiation".to_string(),
            (_, Some(step)) => format!("connection closed before the reply to {}", step.name()),
            _ => "connection closed before the milter decided".to_string(),
        };
        Err(self.fail(msg))
    }

    fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }
}

fn tempfail() -> Verdict {
    Verdict::TempFail {
        code: 451,
        status: "4.7.1".into(),
        text: "Service unavailable - try again later".into(),
    }
}

/// Appends a NUL-terminated string, dropping NULs inside it.
fn push_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(s.iter().copied().filter(|&b| b != 0));
    out.push(0);
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Length of the field name when `line` starts a header field (Postfix `is_header`): printable
/// ASCII other than `:`, then optional spaces or tabs, then `:`.
fn header_name_len(line: &[u8]) -> Option<usize> {
    let name = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')
        .unwrap_or(line.len());
    if name == 0 {
        return None;
    }
    let after = line[name..].iter().position(|&b| b != b' ' && b != b'\t')?;
    (line[name + after] == b':').then_some(name)
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b) && b != b':')
}

/// Printable text for a reply or a reason: controls become spaces, length bounded.
fn clean_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REPLY_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

/// `SMFIR_REPLYCODE`: `"4xx x.y.z text"` or `"5xx x.y.z text"`, possibly multi-line
/// (`"550-5.7.1 first\r\n550 5.7.1 second"`). The lines' texts are joined with spaces; a missing
/// enhanced status becomes `x.7.1`. Like Postfix, `%%` becomes `%` and a lone `%` is dropped
/// (libmilter treats the reply as a format string).
fn parse_replycode(data: &[u8]) -> Result<Verdict, String> {
    let mut args = Args(data);
    let raw = args.cstr()?;
    args.end()?;
    let bad = || format!("malformed REPLYCODE {:?}", String::from_utf8_lossy(raw));
    let text = String::from_utf8_lossy(raw);
    let mut code: Option<u16> = None;
    let mut status: Option<String> = None;
    let mut texts: Vec<String> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !matches!(b[0], b'4' | b'5') {
            return Err(bad());
        }
        if b.len() > 3 && !matches!(b[3], b' ' | b'-') {
            return Err(bad());
        }
        let this: u16 = line[..3].parse().map_err(|_| bad())?;
        if *code.get_or_insert(this) != this {
            return Err(bad());
        }
        let mut rest = line.get(4..).unwrap_or_default();
        let first_word = rest.split(' ').next().unwrap_or_default();
        if is_enhanced_status(first_word, b[0]) {
            if status.is_none() {
                status = Some(first_word.to_string());
            }
            rest = rest[first_word.len()..].trim_start();
        }
        texts.push(unpercent(rest));
    }
    let code = code.ok_or_else(bad)?;
    let class = (code / 100) as u8;
    let status = status.unwrap_or_else(|| format!("{class}.7.1"));
    let text = clean_text(texts.join(" ").as_bytes());
    Ok(if class == 5 {
        Verdict::Reject { code, status, text }
    } else {
        Verdict::TempFail { code, status, text }
    })
}

fn is_enhanced_status(word: &str, class: u8) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts[0].as_bytes() == [class]
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn unpercent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            if let Some(next) = chars.next() {
                if next == '%' {
                    out.push('%');
                } else {
                    out.push(next);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn show_cmd(cmd: u8) -> String {
    let name = match cmd {
        b'+' => "ADDRCPT",
        b'-' => "DELRCPT",
        b'2' => "ADDRCPT_PAR",
        b'4' => "SHUTDOWN",
        b'a' => "ACCEPT",
        b'b' => "REPLBODY",
        b'c' => "CONTINUE",
        b'd' => "DISCARD",
        b'e' => "CHGFROM",
        b'f' => "CONN_FAIL",
        b'h' => "ADDHEADER",
        b'i' => "INSHEADER",
        b'l' => "SETSYMLIST",
        b'm' => "CHGHEADER",
        b'p' => "PROGRESS",
        b'q' => "QUARANTINE",
        b'r' => "REJECT",
        b's' => "SKIP",
        b't' => "TEMPFAIL",
        b'y' => "REPLYCODE",
        b'O' => "OPTNEG",
        _ => return format!("0x{cmd:02x}"),
    };
    name.to_string()
}

/// A cursor over a packet's data.
struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        let Some((head, rest)) = self.0.split_first_chunk::<4>() else {
            return Err("packet too short".into());
        };
        self.0 = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn cstr(&mut self) -> Result<&'a [u8], String> {
        let Some(nul) = self.0.iter().position(|&b| b == 0) else {
            return Err("string without its NUL terminator".into());
        };
        let s = &self.0[..nul];
        self.0 = &self.0[nul + 1..];
        Ok(s)
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes at the end of a packet",
                self.0.len()
            ))
        }
    }
}
