//! Invariants over the simulated disk: every acknowledged message is exactly once, byte-exact,
//! where each accepted recipient's Sieve script sends it (INBOX `new/`, a folder's `new/`, or a
//! folder's `cur/` with its flags; nowhere when discarded, rejected or redirected), unless a
//! POP3 QUIT acknowledged its deletion from INBOX (then it is gone) or the world crashed while
//! such a QUIT was processed (then either); nothing partial or unknown is ever visible; the
//! replies and the rejection notices agree with the scripts.

use super::clients::{Attempt, Client, DOMAIN, USERS};
use super::fs::SimFs;
use super::sieve::{Disposition, Scripts};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The data directory of the simulated server.
pub const DATA_DIR: &str = "/data";

/// The `X-Sim-Id` of a message (a header after the first line, in the top-level header block:
/// a rejection notice quotes the original header in its body and has none of its own).
pub fn sim_id(file: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\r\nX-Sim-Id: ";
    let head_end = file
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(file.len(), |p| p + 2);
    let start = file[..head_end].windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = file[start..].windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&file[start..start + len]).into_owned())
}

/// True for a message the server wrote itself (a rejection notice): from the null sender.
pub fn is_notice(file: &[u8]) -> bool {
    file.starts_with(b"Return-Path: <>\r\n")
}

/// The sim id of the message a notice is about (quoted in its body).
pub fn notice_about(file: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\nX-Sim-Id: ";
    let start = file.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = file[start..].windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&file[start..start + len]).into_owned())
}

/// Rejection notices seen, by the sim id they are about.
pub type Notices = BTreeMap<String, usize>;

/// What POP3 deletions allow for a (user, sim id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// A QUIT after its DELE was being processed when the world crashed or failed: either way.
    Maybe,
    /// The QUIT after its DELE got `+OK`: it must be gone for good.
    Acked,
}

/// POP3 deletions by (local part, sim id).
pub type Deletions = BTreeMap<(String, String), Gone>;

/// The stored file of message `id` in `user`'s Maildir (`new/` or `cur/`), if any.
pub fn stored(fs: &SimFs, user: &str, id: &str) -> Option<Vec<u8>> {
    let root = Path::new(DATA_DIR).join("mail").join(DOMAIN).join(user);
    ["new", "cur"].iter().find_map(|sub| {
        let dir = root.join(sub);
        fs.list(&dir).into_iter().find_map(|name| {
            let data = fs.contents(&dir.join(&name))?;
            (sim_id(&data).as_deref() == Some(id)).then_some(data)
        })
    })
}

fn attempts_by_id(clients: &[Client]) -> BTreeMap<&str, &Attempt> {
    clients
        .iter()
        .flat_map(|c| c.attempts.iter())
        .map(|a| (a.id.as_str(), a))
        .collect()
}

/// Checks the mailboxes on `fs` against what the clients sent, where the users' Sieve scripts
/// send each copy (INBOX or a folder, `new/` or `cur/` with its flags, or nowhere), and what the
/// POP3 readers deleted; counts the rejection notices into `notices`. Returns the number of
/// files seen.
pub fn mailboxes(
    fs: &SimFs,
    clients: &[Client],
    gone: &Deletions,
    scripts: &Scripts,
    notices: &mut Notices,
) -> Result<usize, String> {
    let attempts = attempts_by_id(clients);
    // (user, folder dir, sim id) -> copies
    let mut counts: BTreeMap<(&str, String, String), usize> = BTreeMap::new();
    let mut files = 0;
    for user in USERS {
        let root = Path::new(DATA_DIR).join("mail").join(DOMAIN).join(user);
        let folders = std::iter::once(String::new())
            .chain(fs.list(&root).into_iter().filter(|n| n.starts_with('.')));
        for folder in folders {
            for sub in ["new", "cur"] {
                let dir = root.join(&folder).join(sub);
                for name in fs.list(&dir) {
                    files += 1;
                    let data = fs.contents(&dir.join(&name)).unwrap_or_default();
                    let shown = if folder.is_empty() { "INBOX" } else { &folder };
                    let what = format!("{user}/{shown}/{sub}/{name} ({} bytes)", data.len());
                    if is_notice(&data) {
                        if !folder.is_empty() || sub != "new" {
                            return Err(format!("{what}: a rejection notice outside INBOX/new"));
                        }
                        let about = notice_about(&data)
                            .ok_or_else(|| format!("{what}: a notice about no sim message"))?;
                        let a = attempts
                            .get(about.as_str())
                            .ok_or_else(|| format!("{what}: a notice about unknown {about}"))?;
                        let to = a.sender.split(['@', '+']).next().unwrap_or_default();
                        if to != user || !a.sender.ends_with(&format!("@{DOMAIN}")) {
                            return Err(format!(
                                "{what}: a notice about {about}, whose sender is {}",
                                a.sender
                            ));
                        }
                        *notices.entry(about).or_default() += 1;
                        continue;
                    }
                    let id =
                        sim_id(&data).ok_or_else(|| format!("{what}: no X-Sim-Id (partial?)"))?;
                    let a = attempts
                        .get(id.as_str())
                        .ok_or_else(|| format!("{what}: unknown message {id}"))?;
                    let head = format!("Return-Path: <{}>\r\n", a.sender);
                    if !data.starts_with(head.as_bytes()) {
                        return Err(format!("{what}: does not start with {head:?}"));
                    }
                    if !data.ends_with(&a.body) {
                        return Err(format!("{what}: is not message {id} byte for byte (torn?)"));
                    }
                    if a.invalid {
                        return Err(format!("{what}: message {id} should have been refused"));
                    }
                    if !a.requested.iter().any(|r| r == user) {
                        return Err(format!("{what}: {id} was not addressed to {user}"));
                    }
                    let disp = scripts.disposition(user, a);
                    let kind = scripts.kind(user);
                    let Some((want_dir, want_cur)) = disp.location() else {
                        return Err(format!(
                            "{what}: {id} (X-Sim-Sort {:?}) must not be stored for {user}, whose {kind:?} script says {disp:?}",
                            a.sort
                        ));
                    };
                    if want_dir != folder || want_cur != (sub == "cur") {
                        return Err(format!(
                            "{what}: {id} (X-Sim-Sort {:?}) belongs in {want_dir:?} {} for {user}, whose {kind:?} script says {disp:?}",
                            a.sort,
                            if want_cur { "cur/" } else { "new/" }
                        ));
                    }
                    if let Disposition::Folder { flags, .. } = disp
                        && !flags.is_empty()
                        && !name.ends_with(&format!(":2,{flags}"))
                    {
                        return Err(format!("{what}: {id} should carry the flags :2,{flags}"));
                    }
                    if folder.is_empty()
                        && gone.get(&(user.to_string(), id.clone())) == Some(&Gone::Acked)
                    {
                        return Err(format!(
                            "{what}: {id} is still there though a POP3 QUIT acknowledged its deletion"
                        ));
                    }
                    *counts
                        .entry((user, folder.clone(), a.id.clone()))
                        .or_default() += 1;
                }
            }
        }
    }
    for a in attempts.values().filter(|a| a.acked) {
        for user in &a.delivered {
            let Some((dir, _)) = scripts.disposition(user, a).location() else {
                // Discarded, rejected or redirected: the loop above allows no copy at all.
                continue;
            };
            let n = counts
                .get(&(user.as_str(), dir.to_string(), a.id.clone()))
                .copied()
                .unwrap_or(0);
            // POP3 deletes from INBOX only.
            let want = match gone.get(&(user.clone(), a.id.clone())) {
                Some(Gone::Maybe) if dir.is_empty() => 0..=1,
                Some(Gone::Acked) if dir.is_empty() => 0..=0,
                _ => 1..=1,
            };
            if !want.contains(&n) {
                let mail = Path::new(DATA_DIR).join("mail");
                let root = mail.join(DOMAIN).join(user);
                return Err(format!(
                    "acknowledged message {} (X-Sim-Sort {:?}) is in {user}/{} {n} times, want {want:?} ({user} holds {:?}, mail/ holds {:?}, mail/{DOMAIN}/ holds {:?})",
                    a.id,
                    a.sort,
                    if dir.is_empty() { "INBOX" } else { dir },
                    fs.list(&root),
                    fs.list(&mail),
                    fs.list(&mail.join(DOMAIN))
                ));
            }
        }
    }
    Ok(files)
}

/// Checks the replies the clients got against the scripts: a recipient whose script rejects
/// gets LMTP's per-recipient 550 5.7.1 and is never acknowledged over LMTP; SMTP answers 550
/// 5.7.1 exactly when every accepted recipient is local and rejects.
pub fn replies(clients: &[Client], scripts: &Scripts) -> Result<(), String> {
    for a in clients.iter().flat_map(|c| c.attempts.iter()) {
        let refusal = |line: &str| line.starts_with("550") && line.contains("5.7.1");
        if a.lmtp && a.final_replies.len() == a.accepted.len() {
            for ((code, line), user) in a.final_replies.iter().zip(&a.accepted) {
                let rejects = scripts.disposition(user, a) == Disposition::Reject;
                if rejects && (200..300).contains(code) {
                    return Err(format!(
                        "LMTP acknowledged {user}'s copy of {} (X-Sim-Sort {:?}) though the script rejects it: {line:?}",
                        a.id, a.sort
                    ));
                }
                if !rejects && refusal(line) {
                    return Err(format!(
                        "LMTP refused {user}'s copy of {} (X-Sim-Sort {:?}, {:?} script): {line:?}",
                        a.id,
                        a.sort,
                        scripts.kind(user)
                    ));
                }
            }
        } else if !a.lmtp
            && let Some((code, line)) = a.final_replies.first()
        {
            let all = scripts.all_refused(a);
            if all && (200..300).contains(code) {
                return Err(format!(
                    "SMTP acknowledged {} (X-Sim-Sort {:?}) though every recipient's script rejects it: {line:?}",
                    a.id, a.sort
                ));
            }
            if !all && refusal(line) {
                return Err(format!(
                    "SMTP refused {} (X-Sim-Sort {:?}, accepted {:?}, remote {:?}) though not every recipient rejects: {line:?}",
                    a.id, a.sort, a.accepted, a.remote
                ));
            }
        }
    }
    Ok(())
}

/// Every rejection notice (in a local INBOX or the queue) is about a message that some
/// recipient's script rejected while others accepted it over SMTP, one per rejecting recipient
/// at most. A notice is best effort (the store does not fail the message when it cannot write
/// one), so one must be there only when the commit of an acknowledged message (`clean`) met
/// no disk fault: then there is exactly one per rejecting recipient.
pub fn notices(
    clients: &[Client],
    scripts: &Scripts,
    seen: &Notices,
    clean: &BTreeSet<String>,
) -> Result<(), String> {
    let attempts = attempts_by_id(clients);
    for id in clean {
        let Some(a) = attempts.get(id.as_str()) else {
            continue;
        };
        if a.lmtp || !a.acked {
            continue;
        }
        let want = scripts.notices_allowed(a);
        let n = seen.get(id).copied().unwrap_or(0);
        if n < want {
            return Err(format!(
                "acknowledged {id} (X-Sim-Sort {:?}, accepted {:?}, remote {:?}) was rejected by {want} recipients' scripts in a commit without disk faults, but {n} rejection notices reached {}",
                a.sort, a.accepted, a.remote, a.sender
            ));
        }
    }
    for (id, n) in seen {
        let a = attempts
            .get(id.as_str())
            .ok_or_else(|| format!("a notice about unknown message {id}"))?;
        let allowed = scripts.notices_allowed(a);
        if *n > allowed {
            return Err(format!(
                "{n} rejection notices about {id} (X-Sim-Sort {:?}, accepted {:?}, lmtp {}), at most {allowed} allowed",
                a.sort, a.accepted, a.lmtp
            ));
        }
    }
    Ok(())
}

/// The remote addresses an acknowledged message must be queued for: the accepted remote
/// recipients and the redirect targets of the local ones whose copy was acknowledged.
fn queued_for(a: &Attempt, scripts: &Scripts) -> Vec<String> {
    let mut want: Vec<String> = a.remote.iter().map(|r| r.to_lowercase()).collect();
    for user in &a.delivered {
        if let Disposition::Redirect(to) = scripts.disposition(user, a) {
            want.push(to.to_lowercase());
        }
    }
    want.sort();
    want.dedup();
    want
}

/// Checks the outbound queue: every acknowledged message with remote recipients (or redirects)
/// has exactly one `queue/env/*` naming its queue id, listing exactly those recipients, and the
/// `queue/msg/*` file of the same name holds the whole message; rejection notices go to the
/// message's sender and are counted into `notices`. Returns the number of envelopes seen.
pub fn queue(
    fs: &SimFs,
    clients: &[Client],
    scripts: &Scripts,
    notices: &mut Notices,
) -> Result<usize, String> {
    let attempts = attempts_by_id(clients);
    let env_dir = Path::new(DATA_DIR).join("queue/env");
    let msg_dir = Path::new(DATA_DIR).join("queue/msg");
    // queue id -> (file names, recipients of the last one)
    let mut by_id: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut seen = 0;
    for name in fs.list(&env_dir) {
        if name.starts_with('.') {
            continue;
        }
        seen += 1;
        let text = fs.contents(&env_dir.join(&name)).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("id "))
            .ok_or_else(|| format!("queue/env/{name}: no id line: {text:?}"))?;
        let mut rcpts: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("rcpt "))
            .map(str::to_lowercase)
            .collect();
        rcpts.sort();
        let data = fs.contents(&msg_dir.join(&name));
        if let Some(data) = data.as_ref().filter(|d| is_notice(d)) {
            let what = format!("queue/msg/{name} ({} bytes, a notice)", data.len());
            let about =
                notice_about(data).ok_or_else(|| format!("{what}: about no sim message"))?;
            let a = attempts
                .get(about.as_str())
                .ok_or_else(|| format!("{what}: about unknown message {about}"))?;
            if rcpts != [a.sender.to_lowercase()] {
                return Err(format!(
                    "{what}: about {about} goes to {rcpts:?}, not its sender {}",
                    a.sender
                ));
            }
            *notices.entry(about).or_default() += 1;
            continue;
        }
        let e = by_id.entry(id.to_string()).or_default();
        e.0.push(name.clone());
        e.1 = rcpts;
        if let Some(data) = data {
            let what = format!("queue/msg/{name} ({} bytes)", data.len());
            let sid = sim_id(&data).ok_or_else(|| format!("{what}: no X-Sim-Id (partial?)"))?;
            let a = attempts
                .get(sid.as_str())
                .ok_or_else(|| format!("{what}: unknown message {sid}"))?;
            let head = format!("Return-Path: <{}>\r\n", a.sender);
            if !data.starts_with(head.as_bytes()) || !data.ends_with(&a.body) {
                return Err(format!("{what}: is not message {sid} byte for byte"));
            }
        }
    }
    for a in attempts.values().filter(|a| a.acked) {
        let want = queued_for(a, scripts);
        if want.is_empty() {
            continue;
        }
        let qid = a
            .queue_id
            .as_deref()
            .ok_or_else(|| format!("acknowledged {} has no queue id", a.id))?;
        let Some((names, rcpts)) = by_id.get(qid) else {
            return Err(format!(
                "acknowledged message {} (queued as {qid}) has no queue/env file",
                a.id
            ));
        };
        if names.len() != 1 {
            return Err(format!(
                "{} is queued {} times: {names:?}",
                a.id,
                names.len()
            ));
        }
        if *rcpts != want {
            return Err(format!(
                "queue/env/{} lists {rcpts:?}, want {want:?}",
                names[0]
            ));
        }
        let data = fs.contents(&msg_dir.join(&names[0])).unwrap_or_default();
        if sim_id(&data).as_deref() != Some(a.id.as_str()) || !data.ends_with(&a.body) {
            return Err(format!(
                "acknowledged {} has queue/env/{} but queue/msg holds {} other bytes",
                a.id,
                names[0],
                data.len()
            ));
        }
    }
    Ok(seen)
}
