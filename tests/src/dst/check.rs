//! Invariants over the simulated disk: every acknowledged message is in each accepted
//! recipient's `new/` exactly once, byte-exact; nothing partial or unknown is ever visible.

use super::clients::{Attempt, Client, DOMAIN, USERS};
use super::fs::SimFs;
use std::collections::BTreeMap;
use std::path::Path;

/// The data directory of the simulated server.
pub const DATA_DIR: &str = "/data";

fn sim_id(file: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\r\nX-Sim-Id: ";
    let start = file.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = file[start..].windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&file[start..start + len]).into_owned())
}

/// Checks the mailboxes on `fs` against what the clients sent; returns the number of files seen.
pub fn mailboxes(fs: &SimFs, clients: &[Client]) -> Result<usize, String> {
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
            *counts.entry((user, a.id.clone())).or_default() += 1;
        }
    }
    for a in attempts.values().filter(|a| a.acked) {
        for user in &a.accepted {
            let n = counts
                .get(&(user.as_str(), a.id.clone()))
                .copied()
                .unwrap_or(0);
            if n != 1 {
                return Err(format!(
                    "acknowledged message {} is in {user}/new {n} times",
                    a.id
                ));
            }
        }
    }
    Ok(files)
}
