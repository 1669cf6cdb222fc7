//! Content scanners called during the SMTP transaction: clamd, SpamAssassin's spamd, rspamd and
//! Sendmail milters (the interface Postfix uses).
//!
//! Each protocol's client side is a [`ScannerClient`]: a pure state machine fed the transaction
//! and the message as it arrives, producing the bytes to write to its scanner connection and,
//! once the scanner has answered, a [`Verdict`]. The connection itself (TCP or a unix socket)
//! belongs to the runtime; timeouts and the failure policy are the caller's.

/// What a scanner is told about the SMTP transaction before the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanContext {
    /// Our own host name (milter macro `j`, spamd/rspamd `MTA-Name`).
    pub hostname: String,
    /// The transaction (queue) id, as in the Received header.
    pub queue_id: String,
    /// The client's IP address, without brackets or port.
    pub client_ip: String,
    /// The client's port.
    pub client_port: u16,
    /// The client's verified host name, if known (otherwise `[ip]` is used where a name is due).
    pub client_name: Option<String>,
    /// The HELO/EHLO argument.
    pub helo: String,
    /// MAIL FROM without angle brackets; empty for the null sender.
    pub sender: String,
    /// RCPT TO addresses without angle brackets, in order.
    pub recipients: Vec<String>,
    /// The SASL login, for submission.
    pub authenticated: Option<String>,
    /// True when the session runs over TLS.
    pub tls: bool,
}

/// A scanner's spam judgement, for the Junk/refuse decision and the X-Spam headers.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamScore {
    /// The message's score.
    pub score: f64,
    /// The scanner's own threshold (spamd `required`, rspamd's `required_score`).
    pub threshold: f64,
    /// Whether the scanner calls it spam (score >= threshold, or rspamd's action is not
    /// `no action`/`greylist`).
    pub is_spam: bool,
}

/// One change to the message's header that a scanner asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Append a field at the end of the header (milter ADDHEADER); scanner verdict headers
    /// (X-Spam-*, X-Virus-Scanned) are added this way too.
    Add {
        /// Field name.
        name: String,
        /// Field value, unfolded or folded with CRLF + whitespace.
        value: String,
    },
    /// Insert a field at this 0-based position among the fields (milter INSHEADER; 0 = first).
    Insert {
        /// Position.
        index: u32,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// Replace the `index`-th (1-based) occurrence of field `name`; an empty value deletes it
    /// (milter CHGHEADER).
    Change {
        /// Field name (case-insensitive match).
        name: String,
        /// Which occurrence, 1-based.
        index: u32,
        /// New value; empty deletes the field.
        value: String,
    },
}

/// The outcome of scanning one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Deliver, with these header changes (possibly none).
    Accept {
        /// Header changes, in the order the scanner gave them.
        edits: Vec<HeaderEdit>,
        /// The spam judgement, from spam scanners.
        spam: Option<SpamScore>,
        /// Hold the message (milter QUARANTINE): delivered to the recipients' Junk folder.
        quarantine: Option<String>,
    },
    /// Refuse permanently (5xx). `code`/`status`/`text` form the SMTP reply, such as
    /// `554 5.7.1 Virus found: Eicar-Signature`.
    Reject {
        /// Reply code (5xx).
        code: u16,
        /// Enhanced status code, such as `5.7.1`.
        status: String,
        /// Human-readable text (a virus name, a milter's reason).
        text: String,
    },
    /// Refuse for now (4xx); the sender retries.
    TempFail {
        /// Reply code (4xx).
        code: u16,
        /// Enhanced status code, such as `4.7.1`.
        status: String,
        /// Human-readable text.
        text: String,
    },
    /// Accept the message but deliver it to nobody (milter DISCARD).
    Discard,
}

/// The scanner broke its protocol or said it cannot scan; the failure policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

/// The client side of one scanner protocol over one connection.
///
/// Drive it like a session: call [`begin`](Self::begin) once, then [`body`](Self::body) with the
/// message as stored (CRLF lines, not dot-stuffed, header and body) in any chunking, then
/// [`end`](Self::end). After every call drain [`poll_output`](Self::poll_output) to the
/// connection, and feed what the scanner sends to [`handle_input`](Self::handle_input) (or
/// [`handle_eof`](Self::handle_eof)). The machine holds at most a bounded amount of unsent data:
/// feed the next chunk only while [`ready_for_body`](Self::ready_for_body) is true, otherwise
/// read from the scanner first. [`verdict`](Self::verdict) turns `Some` once the scanner has
/// answered, possibly early (a milter rejecting at RCPT); the caller then stops feeding.
pub trait ScannerClient: Send + std::fmt::Debug {
    /// Starts the transaction (connection-level handshakes are queued here too).
    fn begin(&mut self, ctx: &ScanContext);
    /// Offers the next piece of the message.
    fn body(&mut self, chunk: &[u8]);
    /// The message is complete.
    fn end(&mut self);
    /// Appends bytes to write to the scanner; returns false when there is nothing to send.
    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool;
    /// True while another body chunk may be fed without waiting for the scanner.
    fn ready_for_body(&self) -> bool;
    /// True while the machine waits for bytes from the scanner.
    fn wants_input(&self) -> bool;
    /// Bytes received from the scanner.
    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ScanError>;
    /// The scanner closed the connection.
    fn handle_eof(&mut self) -> Result<(), ScanError>;
    /// The answer, once known.
    fn verdict(&self) -> Option<&Verdict>;
}

pub mod clamd;
pub mod milter;
mod reply;
pub mod rspamd;
pub mod scan;
pub mod spamd;
