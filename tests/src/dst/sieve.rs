//! Sieve in the simulation: at the start of a seed some users get an active script, and the
//! checker derives where each copy must end up from the script kind and the message's
//! `X-Sim-Sort` header alone (never from what the store did).

use super::clients::{Attempt, DOMAIN, USERS};
use super::fs::SimFs;
use super::rng::Rng;
use petrel_core::UserId;
use petrel_store::sieve_scripts;
use std::path::Path;

/// The script a user has at the start of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// No script at all: every copy goes to INBOX.
    None,
    /// A sorting script that is stored but not active: keep.
    Inactive,
    /// `a` and `b` to folders, `c` discarded; everything else kept.
    Mild,
    /// Like [`ScriptKind::Mild`], and `d` rejected, `e` redirected to a remote address.
    Full,
    /// A script that does not parse: must behave as keep.
    Broken,
}

/// Where one recipient's copy of a message must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// INBOX (`new/` of the Maildir root).
    Inbox,
    /// A Maildir++ folder directory (`.Sorted.A`); `flags` are the Maildir letters, and a copy
    /// with flags is in `cur/` as `NAME:2,FLAGS`.
    Folder {
        /// The directory name under the Maildir root.
        dir: &'static str,
        /// Maildir flag letters ("" puts the copy in `new/`).
        flags: &'static str,
    },
    /// `discard`: no copy anywhere, still acknowledged.
    Discard,
    /// `reject`: no copy; the sender learns of it (LMTP 550, SMTP 550 or a notice).
    Reject,
    /// `redirect`: no local copy; the queue holds the message for this address.
    Redirect(String),
}

impl Disposition {
    /// The folder directory (relative to the Maildir root, "" for INBOX) and whether the copy
    /// is in `cur/`; `None` when no local copy may exist.
    pub fn location(&self) -> Option<(&'static str, bool)> {
        match self {
            Disposition::Inbox => Some(("", false)),
            Disposition::Folder { dir, flags } => Some((dir, !flags.is_empty())),
            _ => None,
        }
    }
}

/// The sorting values clients put in `X-Sim-Sort` (None: no header; `z` matches no rule).
const SORTS: [Option<char>; 12] = [
    None,
    None,
    None,
    Some('a'),
    Some('a'),
    Some('b'),
    Some('b'),
    Some('c'),
    Some('d'),
    Some('d'),
    Some('e'),
    Some('z'),
];

/// The `X-Sim-Sort` value of a new message.
pub fn pick_sort(rng: &mut Rng) -> Option<char> {
    SORTS[rng.below(SORTS.len() as u64) as usize]
}

/// The redirect target of `user`'s full script.
pub fn redirect_target(user: &str) -> String {
    format!("fwd-{user}@elsewhere.test")
}

/// The text of `user`'s script of `kind` (`None` for no script).
pub fn script_text(kind: ScriptKind, user: &str) -> Option<String> {
    let mild = r#"require ["fileinto", "imap4flags", "reject"];
if header :is "X-Sim-Sort" "a" {
  fileinto "Sorted/A";
} elsif header :is "X-Sim-Sort" "b" {
  fileinto :flags "\\Seen" "Flagged";
} elsif header :is "X-Sim-Sort" "c" {
  discard;
}"#;
    match kind {
        ScriptKind::None => None,
        ScriptKind::Mild | ScriptKind::Inactive => Some(format!("{mild}\n")),
        ScriptKind::Full => Some(format!(
            "{mild} elsif header :is \"X-Sim-Sort\" \"d\" {{\n  reject \"sim says no\";\n}} elsif header :is \"X-Sim-Sort\" \"e\" {{\n  redirect \"{}\";\n}}\n",
            redirect_target(user)
        )),
        // An unterminated block: the whole script is refused, so the store keeps.
        ScriptKind::Broken => Some(
            "require [\"fileinto\"];\nif header :is \"X-Sim-Sort\" \"a\" {\n  fileinto \"Sorted/A\";\n"
                .into(),
        ),
    }
}

/// Draws the users' scripts for a seed: about half sort, one is broken, at least one has none.
/// Uses its own generator, so the rest of the world draws the same numbers as before.
pub fn choose(seed: u64) -> Vec<ScriptKind> {
    let mut rng = Rng::new(seed ^ 0x51E7_E000_0000_0001);
    let extra = [ScriptKind::Full, ScriptKind::Inactive, ScriptKind::None][rng.range(0, 2)];
    let mut kinds = vec![
        ScriptKind::Full,
        ScriptKind::Mild,
        ScriptKind::Broken,
        ScriptKind::None,
        extra,
    ];
    kinds.truncate(USERS.len());
    for i in (1..kinds.len()).rev() {
        let j = rng.range(0, i);
        kinds.swap(i, j);
    }
    kinds
}

/// Installs the scripts with the store's own functions (faults must be off; each call is
/// durable when it returns).
pub fn install(fs: &SimFs, kinds: &[ScriptKind]) -> Result<(), String> {
    for (user, kind) in USERS.iter().zip(kinds) {
        let Some(text) = script_text(*kind, user) else {
            continue;
        };
        let id = UserId(format!("{user}@{DOMAIN}"));
        let data = Path::new(super::check::DATA_DIR);
        sieve_scripts::put(fs, data, &id, "sim", &text)
            .map_err(|e| format!("installing {user}'s script: {e}"))?;
        if *kind != ScriptKind::Inactive {
            sieve_scripts::set_active(fs, data, &id, Some("sim"))
                .map_err(|e| format!("activating {user}'s script: {e}"))?;
        }
    }
    Ok(())
}

/// The users' scripts, by local part.
#[derive(Debug, Clone)]
pub struct Scripts(pub Vec<ScriptKind>);

impl Scripts {
    /// The script kind of local part `user` (none for unknown users).
    pub fn kind(&self, user: &str) -> ScriptKind {
        USERS
            .iter()
            .position(|u| *u == user)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or(ScriptKind::None)
    }

    /// Where `user`'s copy of attempt `a` must go.
    pub fn disposition(&self, user: &str, a: &Attempt) -> Disposition {
        let kind = self.kind(user);
        let sorting = matches!(kind, ScriptKind::Mild | ScriptKind::Full);
        let full = kind == ScriptKind::Full;
        match a.sort {
            Some('a') if sorting => Disposition::Folder {
                dir: ".Sorted.A",
                flags: "",
            },
            Some('b') if sorting => Disposition::Folder {
                dir: ".Flagged",
                flags: "S",
            },
            Some('c') if sorting => Disposition::Discard,
            Some('d') if full => Disposition::Reject,
            Some('e') if full => Disposition::Redirect(redirect_target(user)),
            _ => Disposition::Inbox,
        }
    }

    /// SMTP: every accepted recipient is local and rejects, so the message gets one 550.
    pub fn all_refused(&self, a: &Attempt) -> bool {
        a.remote.is_empty()
            && !a.accepted.is_empty()
            && a.accepted
                .iter()
                .all(|u| self.disposition(u, a) == Disposition::Reject)
    }

    /// SMTP: some accepted local recipient rejects while others accept, so the sender may get
    /// a rejection notice (one per rejecting recipient at most). A client that never saw the
    /// end of the message (it went away with the commands pipelined) may not know which
    /// recipients the server accepted: then any requested one may have been.
    pub fn notices_allowed(&self, a: &Attempt) -> usize {
        if a.lmtp || a.sender.is_empty() {
            return 0;
        }
        let seen_end = !a.final_replies.is_empty();
        if seen_end && self.all_refused(a) {
            return 0;
        }
        let rcpts = if seen_end { &a.accepted } else { &a.requested };
        rcpts
            .iter()
            .filter(|u| self.disposition(u, a) == Disposition::Reject)
            .count()
    }
}

#[test]
fn scripts_parse_as_intended() {
    let limits = petrel_core::sieve::Limits::default();
    for kind in [ScriptKind::Mild, ScriptKind::Full, ScriptKind::Inactive] {
        let text = script_text(kind, "alice").expect("a script");
        if let Err(e) = petrel_core::sieve::parse(&text, &limits) {
            panic!("{kind:?} script does not parse: {e:?}\n{text}");
        }
    }
    let broken = script_text(ScriptKind::Broken, "alice").expect("a script");
    assert!(petrel_core::sieve::parse(&broken, &limits).is_err());
}
