//! What happens to one local recipient's copy of a message: the user's active Sieve script
//! (RFC 5228) is run on it, and its actions become a [`Plan`]: the folders and flags to store
//! the copy under, a refusal, and the messages to send (redirects, vacation replies).
//!
//! Sieve never loses mail: a missing, unreadable or broken script, a run-time error, a folder
//! name that cannot exist, all end in the implicit keep (INBOX), as RFC 5228 section 2.10.6 asks.

use crate::folder;
use crate::fs::FileSystem;
use crate::maildir;
use crate::sieve_scripts;
use crate::vacation;
use petrel_core::sieve::respond::{self, Recipient};
use petrel_core::sieve::{self, Action, IncludeSource, Limits, Message, RawMessage};
use petrel_core::{UserId, rfc5322_date};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Header bytes read for Sieve's header tests; a longer header is cut there.
pub const MAX_HEADER_READ: usize = 256 * 1024;
/// Body bytes read for the `body` test (RFC 5173), only when the script uses it.
pub const MAX_BODY_READ: usize = 1024 * 1024;

/// Where one copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The user's Maildir root.
    pub root: PathBuf,
    /// The folder's directory (the root for INBOX).
    pub dir: PathBuf,
    /// The folder name as the script gave it, for logs.
    pub folder: String,
    /// IMAP flags to set.
    pub flags: Vec<String>,
}

/// A message to send because of a Sieve action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// `redirect`: the message itself, same envelope sender, to `to`.
    Redirect {
        /// The new recipient.
        to: String,
    },
    /// A new message (vacation reply, rejection notice) from the null sender to `to`.
    Notice {
        /// The recipient.
        to: String,
        /// The whole message, CRLF line ends.
        bytes: Vec<u8>,
        /// What it is, for logs.
        kind: &'static str,
    },
}

/// The outcome for one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Copies to store; empty when the message was discarded, refused or only redirected.
    pub placements: Vec<Placement>,
    /// `reject`/`ereject`: the reason.
    pub refused: Option<String>,
    /// Messages to send.
    pub outgoing: Vec<Outgoing>,
}

/// What the planner needs from the store.
pub struct Context<'a> {
    /// The filesystem.
    pub fs: &'a dyn FileSystem,
    /// The data directory.
    pub data_dir: &'a Path,
    /// This host's name (notices, Message-IDs).
    pub hostname: &'a str,
    /// Calendar time, Unix seconds.
    pub now: i64,
    /// Serialises updates of one user's vacation tracking file.
    pub vacation_lock: &'a Mutex<()>,
    /// The message goes to Junk instead of INBOX (DMARC quarantine, spam); the script still
    /// runs, and its keep means Junk.
    pub junk: bool,
}

/// The folder quarantined mail is kept in (created on demand, SPECIAL-USE \Junk).
pub const JUNK: &str = "Junk";

/// The message as Sieve sees it: header and (if needed) the start of the body, with the true size.
struct StoredMessage<'a> {
    inner: RawMessage<'a>,
    size: u64,
}

impl Message for StoredMessage<'_> {
    fn header(&self, name: &str) -> Vec<String> {
        self.inner.header(name)
    }
    fn body(&self) -> &[u8] {
        self.inner.body()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Reads the start of the message file at `path` (after `skip` bytes of Return-Path): the header
/// up to [`MAX_HEADER_READ`], and with `body` up to [`MAX_BODY_READ`] more.
fn read_message(fs: &dyn FileSystem, path: &Path, skip: usize, body: bool) -> io::Result<Vec<u8>> {
    let mut file = fs.open_read(path)?;
    io::copy(&mut (&mut file).take(skip as u64), &mut io::sink())?;
    let limit = MAX_HEADER_READ + if body { MAX_BODY_READ } else { 0 };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while buf.len() < limit {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n.min(limit - buf.len())]);
        if !body && let Some(end) = find(&buf, b"\r\n\r\n").or_else(|| find(&buf, b"\n\n")) {
            buf.truncate(end + 2);
            break;
        }
    }
    Ok(buf)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The header block of `raw` (up to and including the blank line), for rejection notices.
fn header_block(raw: &[u8]) -> &[u8] {
    match find(raw, b"\r\n\r\n") {
        Some(end) => &raw[..end + 2],
        None => raw,
    }
}

/// `include` reads the user's own scripts, or the global ones in `DATA_DIR/sieve/global/`.
struct Includes<'a> {
    fs: &'a dyn FileSystem,
    data_dir: &'a Path,
    user: &'a UserId,
}

impl IncludeSource for Includes<'_> {
    fn load(&mut self, name: &str, global: bool) -> Option<String> {
        if global {
            sieve_scripts::check_name(name).ok()?;
            let path = self
                .data_dir
                .join("sieve")
                .join("global")
                .join(format!("{name}.sieve"));
            String::from_utf8(self.fs.read(&path).ok()?).ok()
        } else {
            sieve_scripts::get(self.fs, self.data_dir, self.user, name).ok()
        }
    }

    /// `mailboxexists` (RFC 5490): INBOX always exists, another folder if its Maildir++
    /// directory does; a name that cannot be a folder does not.
    fn mailbox_exists(&mut self, name: &str) -> bool {
        if folder::is_inbox(name) {
            return true;
        }
        folder::folder_dir(self.data_dir, &self.user.0, Some(name))
            .is_ok_and(|dir| matches!(self.fs.stamp(&dir), Ok(Some(_))))
    }
}

/// Decides what to do with `user`'s copy of the message in `path` (whose first `skip` bytes
/// are the Return-Path line). `envelope_to` is the address as given in RCPT TO; `sender` the
/// reverse path (empty for the null sender). Trouble with the script means the implicit keep;
/// only an unreadable message file is an error.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    ctx: &Context<'_>,
    user: &UserId,
    envelope_to: &str,
    sender: &str,
    path: &Path,
    skip: usize,
    size: u64,
    message_id: &mut dyn FnMut() -> String,
) -> io::Result<Plan> {
    let root = maildir::user_root(ctx.data_dir, &user.0)?;
    let (keep_dir, keep_folder) = if ctx.junk {
        (folder::folder_dir(ctx.data_dir, &user.0, Some(JUNK))?, JUNK)
    } else {
        (root.clone(), "INBOX")
    };
    let keep = |flags: Vec<String>| Placement {
        root: root.clone(),
        dir: keep_dir.clone(),
        folder: keep_folder.into(),
        flags,
    };
    let inbox = Plan {
        placements: vec![keep(Vec::new())],
        ..Plan::default()
    };
    let script = match sieve_scripts::active_script(ctx.fs, ctx.data_dir, user) {
        Ok(Some((_, text))) => text,
        Ok(None) => return Ok(inbox),
        Err(e) => {
            tracing::warn!(user = %user.0, error = %e, "cannot read the active Sieve script; keeping");
            return Ok(inbox);
        }
    };
    let limits = Limits::default();
    let script = match sieve::parse(&script, &limits) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(user = %user.0, error = %e, "the active Sieve script does not parse; keeping");
            return Ok(inbox);
        }
    };
    let raw = read_message(ctx.fs, path, skip, script.has("body"))?;
    let message = StoredMessage {
        inner: RawMessage::parse(&raw),
        size: size.saturating_sub(skip as u64),
    };
    let envelope = sieve::Envelope {
        from: sender.to_string(),
        to: envelope_to.to_string(),
        now: ctx.now,
        host: ctx.hostname.to_string(),
    };
    let mut includes = Includes {
        fs: ctx.fs,
        data_dir: ctx.data_dir,
        user,
    };
    let outcome = sieve::run(&script, &envelope, &message, &mut includes, &limits);
    if let Some(error) = &outcome.error {
        tracing::warn!(user = %user.0, error = ?error, "Sieve run-time error; keeping");
    }
    let recipient = Recipient {
        envelope_to,
        mailbox: &user.0,
    };
    let redirects = outcome
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Redirect { .. }))
        .count();
    if redirects > petrel_core::managesieve::MAX_REDIRECTS as usize {
        tracing::warn!(user = %user.0, redirects, "too many redirects; keeping");
        return Ok(inbox);
    }
    let mut plan = Plan::default();
    for action in &outcome.actions {
        match action {
            Action::Keep { flags } => plan.placements.push(keep(flags.clone())),
            Action::FileInto { folder, flags, .. } => {
                match folder::folder_dir(ctx.data_dir, &user.0, Some(folder)) {
                    Ok(dir) => plan.placements.push(Placement {
                        root: root.clone(),
                        dir,
                        folder: folder.clone(),
                        flags: flags.clone(),
                    }),
                    Err(e) => {
                        tracing::warn!(user = %user.0, error = %e, "fileinto impossible; keeping");
                        plan.placements.push(keep(flags.clone()));
                    }
                }
            }
            Action::Redirect { address, .. } => {
                plan.outgoing.push(Outgoing::Redirect {
                    to: address.clone(),
                });
            }
            Action::Reject { reason, .. } => plan.refused = Some(reason.clone()),
            Action::Discard => {}
            Action::Vacation {
                addresses,
                days,
                seconds,
                ..
            } => {
                if let Err(why) = respond::may_reply(sender, &recipient, addresses, &message) {
                    tracing::info!(user = %user.0, sender, reason = ?why, "no vacation reply");
                    continue;
                }
                let handle = respond::vacation_handle(action);
                let period = respond::vacation_period(*days, *seconds);
                let dir = sieve_scripts::user_data_dir(ctx.data_dir, user)?;
                let answer = {
                    let _guard = ctx
                        .vacation_lock
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    vacation::should_respond(ctx.fs, &dir, &handle, sender, ctx.now, period)
                };
                match answer {
                    Ok(true) => plan.outgoing.push(Outgoing::Notice {
                        to: sender.to_string(),
                        bytes: respond::vacation_reply(
                            action,
                            sender,
                            &recipient,
                            &message,
                            &rfc5322_date(ctx.now),
                            &message_id(),
                        ),
                        kind: "vacation reply",
                    }),
                    Ok(false) => {
                        tracing::info!(user = %user.0, sender, "vacation reply already sent in this period")
                    }
                    Err(e) => {
                        tracing::warn!(user = %user.0, error = %e, "cannot track vacation replies; not replying")
                    }
                }
            }
        }
    }
    if plan.refused.is_some() {
        // reject cancels the implicit keep and cannot be combined with keep or fileinto (the
        // interpreter checks); what the refusal means for the sender is the caller's.
        plan.placements.clear();
    }
    Ok(plan)
}

/// The rejection notice for a refused copy that could not be refused in the dialogue (SMTP
/// with other recipients accepting): read back the message header and write an MDN.
#[allow(clippy::too_many_arguments)]
pub fn rejection_notice(
    ctx: &Context<'_>,
    user: &UserId,
    envelope_to: &str,
    sender: &str,
    reason: &str,
    path: &Path,
    skip: usize,
    message_id: &str,
) -> io::Result<Vec<u8>> {
    let raw = read_message(ctx.fs, path, skip, false)?;
    let message = RawMessage::parse(&raw);
    Ok(respond::rejection_notice(
        reason,
        sender,
        &Recipient {
            envelope_to,
            mailbox: &user.0,
        },
        &message,
        header_block(&raw),
        ctx.hostname,
        &rfc5322_date(ctx.now),
        message_id,
    ))
}
