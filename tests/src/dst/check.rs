//! Invariants over the simulated disk: every acknowledged message is in each accepted
//! recipient's `new/` exactly once, byte-exact, unless a POP3 QUIT acknowledged its deletion
//! (then it is gone) or the world crashed while such a QUIT was processed (then either);
//! nothing partial or unknown is ever visible.

use super::clients::{Attempt, Client, DOMAIN, USERS};
use super::fs::SimFs;
use std::collections::BTreeMap;
use std::path::Path;

/// The data directory of the simulated server.
pub const DATA_DIR: &str = "/data";

/// The `X-Sim-Id` of a message (a header after the first line).
pub fn sim_id(file: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\r\nX-Sim-Id: ";
    let start = file.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = file[start..].windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&file[start..start + len]).into_owned())
}

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

/// Checks the mailboxes on `fs` against what the clients sent and the POP3 readers deleted;
/// returns the number of files seen.
pub fn mailboxes(fs: &SimFs, clients: &[Client], gone: &Deletions) -> Result<usize, String> {
    let attempts: BTreeMap<&str, &Attempt> = clients
        .iter()
        .flat_map(|c| c.attempts.iter())
        .map(|a| (a.id.as_str(), a))
        .collect();
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut files = 0;
    for user in USERS {
        let new = Path::new(DATA_DIR)
            .join("mail")
            .join(DOMAIN)
            .join(user)
            .join("new");
        for name in fs.list(&new) {
            files += 1;
            let data = fs.contents(&new.join(&name)).unwrap_or_default();
            let what = format!("{user}/new/{name} ({} bytes)", data.len());
            let id = sim_id(&data).ok_or_else(|| format!("{what}: no X-Sim-Id (partial?)"))?;
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
            if gone.get(&(user.to_string(), id.clone())) == Some(&Gone::Acked) {
                return Err(format!(
                    "{what}: {id} is still there though a POP3 QUIT acknowledged its deletion"
                ));
            }
            *counts.entry((user, a.id.clone())).or_default() += 1;
        }
    }
    for a in attempts.values().filter(|a| a.acked) {
        for user in &a.accepted {
            let n = counts
                .get(&(user.as_str(), a.id.clone()))
                .copied()
                .unwrap_or(0);
            let want = match gone.get(&(user.clone(), a.id.clone())) {
                None => 1..=1,
                Some(Gone::Maybe) => 0..=1,
                Some(Gone::Acked) => 0..=0,
            };
            if !want.contains(&n) {
                let mail = Path::new(DATA_DIR).join("mail");
                return Err(format!(
                    "acknowledged message {} is in {user}/new {n} times, want {want:?} (mail/ holds {:?}, mail/{DOMAIN}/ holds {:?})",
                    a.id,
                    fs.list(&mail),
                    fs.list(&mail.join(DOMAIN))
                ));
            }
        }
    }
    Ok(files)
}

/// Checks the outbound queue: every acknowledged message with remote recipients has exactly one
/// `queue/env/*` naming its queue id, listing exactly those recipients, and the `queue/msg/*`
/// file of the same name holds the whole message. Returns the number of envelopes seen.
pub fn queue(fs: &SimFs, clients: &[Client]) -> Result<usize, String> {
    let attempts: BTreeMap<&str, &Attempt> = clients
        .iter()
        .flat_map(|c| c.attempts.iter())
        .map(|a| (a.id.as_str(), a))
        .collect();
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
        let e = by_id.entry(id.to_string()).or_default();
        e.0.push(name.clone());
        e.1 = rcpts;
        if let Some(data) = fs.contents(&msg_dir.join(&name)) {
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
    for a in attempts
        .values()
        .filter(|a| a.acked && !a.remote.is_empty())
    {
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
        let mut want: Vec<String> = a.remote.iter().map(|r| r.to_lowercase()).collect();
        want.sort();
        want.dedup();
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
