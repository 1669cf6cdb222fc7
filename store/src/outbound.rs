//! The outbound queue's state changes, on the store: listing, reading, recording the results of
//! delivery attempts, scheduling retries, bouncing, and removing what is done. The decisions
//! (backoff, expiry, notification text) are core's ([`petrel_core::queue`]).

use crate::fs::write_atomic;
use crate::queue::{ENV_DIR, MSG_DIR, QueueEntry, RcptState};
use crate::store::Store;
use petrel_core::queue::{DsnAction, DsnRecipient, DsnReport, Next, RetryPolicy, dsn};
use petrel_core::smtp::client::{OutboundJob, RcptResult};
use petrel_core::{Completion, Effect, ErrorClass, StoreError, rfc5322_date};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::PoisonError;

/// Largest header block returned in a bounce.
const MAX_BOUNCE_HEADER: usize = 64 * 1024;

/// The outcome of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// Accepted by the receiving server.
    Delivered,
    /// Try again later: reply code (0 when there was no reply) and text.
    TempFail(u16, String),
    /// Failed for good: reply code (0 when there was no reply) and text.
    PermFail(u16, String),
}

impl Store {
    fn env_path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.config.data_dir.join(ENV_DIR).join(name))
    }

    fn msg_path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.config.data_dir.join(MSG_DIR).join(name))
    }

    /// Every queued message whose envelope reads, oldest first. Broken envelopes are logged
    /// and left for an administrator.
    pub fn queue_entries(&self) -> io::Result<Vec<QueueEntry>> {
        let dir = self.config.data_dir.join(ENV_DIR);
        let mut names = self.fs.read_dir(&dir)?;
        names.retain(|n| !n.starts_with('.'));
        names.sort();
        let mut out = Vec::new();
        for name in names {
            match self.queue_entry(&name) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e) => tracing::warn!(entry = %name, error = %e, "unreadable queue entry"),
            }
        }
        out.sort_by_key(|e| (e.queued, e.name.clone()));
        Ok(out)
    }

    /// One queued message's envelope, `None` if it is gone.
    pub fn queue_entry(&self, name: &str) -> io::Result<Option<QueueEntry>> {
        let text = match self.fs.read(&self.env_path(name)?) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = self.config.clock.unix_seconds();
        QueueEntry::parse(name, &String::from_utf8_lossy(&text), now)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes an entry's envelope, durably.
    pub fn queue_save(&self, entry: &QueueEntry) -> io::Result<()> {
        let path = self.env_path(&entry.name)?;
        // The process id keeps the temporary name apart from a `petrel queue` command's.
        let unique = format!("q{}", std::process::id());
        write_atomic(&*self.fs, &path, entry.to_text().as_bytes(), &unique)
    }

    /// Removes a queued message: the envelope first (so no envelope is ever left without its
    /// message), then the message; both durably. False if it was not there.
    pub fn queue_remove(&self, name: &str) -> io::Result<bool> {
        let env = self.env_path(name)?;
        let existed = match self.fs.remove_file(&env) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        self.fs.sync_dir(&self.config.data_dir.join(ENV_DIR))?;
        match self.fs.remove_file(&self.msg_path(name)?) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.fs.sync_dir(&self.config.data_dir.join(MSG_DIR))?;
        Ok(existed)
    }

    /// Removes message files without an envelope and half-written envelopes: what a crash
    /// left of messages that were never acknowledged. Returns how many were removed. Only
    /// files older than [`crate::fs::LEFTOVER_AGE_SECS`] count: a younger one may be a message
    /// another process (`petrel sendmail`, a session) is queueing right now, whose message file
    /// is linked in before its envelope.
    pub fn queue_remove_orphans(&self) -> io::Result<usize> {
        let env_dir = self.config.data_dir.join(ENV_DIR);
        let msg_dir = self.config.data_dir.join(MSG_DIR);
        let now = self.config.clock.unix_seconds();
        let envs = self.fs.read_dir(&env_dir)?;
        let mut removed = 0;
        for name in &envs {
            let path = env_dir.join(name);
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && crate::fs::is_leftover(&*self.fs, &path, now)?
            {
                self.fs.remove_file(&path)?;
                removed += 1;
            }
        }
        for name in self.fs.read_dir(&msg_dir)? {
            if !envs.contains(&name)
                && crate::fs::is_leftover(&*self.fs, &msg_dir.join(&name), now)?
            {
                self.fs.remove_file(&msg_dir.join(&name))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.fs.sync_dir(&env_dir)?;
            self.fs.sync_dir(&msg_dir)?;
        }
        Ok(removed)
    }

    /// Makes every queued message due now (`petrel queue flush`). Returns how many.
    pub fn queue_flush(&self) -> io::Result<usize> {
        let mut n = 0;
        for e in self.queue_entries()? {
            let lock = self.folders.get(&self.env_path(&e.name)?);
            let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(mut e) = self.queue_entry(&e.name)? {
                e.next = 0;
                self.queue_save(&e)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Up to `max` bytes of a queued message from `offset` (counted from the message's start,
    /// after the Return-Path line); empty at the end.
    pub fn queue_read(
        &self,
        name: &str,
        start: u64,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<u8>> {
        let mut f = self.fs.open_read(&self.msg_path(name)?)?;
        io::copy(&mut (&mut f).take(start + offset), &mut io::sink())?;
        let mut buf = Vec::with_capacity(max.min(256 * 1024));
        f.take(max as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The header block of a queued message (for bounces), bounded.
    fn queue_header(&self, entry: &QueueEntry) -> Vec<u8> {
        let head = self
            .queue_read(&entry.name, entry.offset, 0, MAX_BOUNCE_HEADER)
            .unwrap_or_default();
        match head.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => head[..end + 2].to_vec(),
            None => head,
        }
    }

    /// Records per-recipient results of an attempt, durably, before the attempt goes on.
    /// Recipients not named are left as they were. Returns the entry, `None` if it is gone.
    pub fn queue_mark(
        &self,
        name: &str,
        results: &[(String, AttemptResult)],
    ) -> io::Result<Option<QueueEntry>> {
        let lock = self.folders.get(&self.env_path(name)?);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut entry) = self.queue_entry(name)? else {
            return Ok(None);
        };
        let mut changed = false;
        for (addr, result) in results {
            let Some((_, state)) = entry
                .recipients
                .iter_mut()
                .find(|(a, s)| a.eq_ignore_ascii_case(addr) && matches!(s, RcptState::Pending(_)))
            else {
                continue;
            };
            *state = match result {
                AttemptResult::Delivered => RcptState::Delivered,
                AttemptResult::TempFail(code, text) => {
                    RcptState::Pending(Some((*code, text.clone())))
                }
                AttemptResult::PermFail(code, text) => RcptState::Failed {
                    code: *code,
                    text: text.clone(),
                    notified: false,
                },
            };
            changed = true;
        }
        if changed {
            self.queue_save(&entry)?;
        }
        Ok(Some(entry))
    }

    /// Ends an attempt on entry `name`: bounces what failed, warns about or expires what is
    /// still pending, schedules the next attempt, and removes the entry once nothing is left.
    /// Notifications go out before the state that records them, so a crash can repeat a
    /// notification but never lose one. Returns the entry if it stays queued.
    pub fn queue_finish_attempt(
        &self,
        name: &str,
        policy: &RetryPolicy,
        remote_mta: Option<&str>,
    ) -> io::Result<Option<QueueEntry>> {
        let lock = self.folders.get(&self.env_path(name)?);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut entry) = self.queue_entry(name)? else {
            return Ok(None);
        };
        let now = self.config.clock.unix_seconds();
        if !entry.finished() {
            entry.attempts = entry.attempts.saturating_add(1);
            match policy.after_failure(entry.queued, entry.attempts, now) {
                Next::RetryAt(t) => entry.next = t,
                Next::Expired => {
                    let days = policy.max_age.as_secs() / 86_400;
                    for (_, state) in &mut entry.recipients {
                        if let RcptState::Pending(last) = state {
                            let (code, why) =
                                last.clone().unwrap_or((0, "no attempt succeeded".into()));
                            *state = RcptState::Failed {
                                code,
                                text: format!(
                                    "message expired after {days} days in the queue: {why}"
                                ),
                                notified: false,
                            };
                        }
                    }
                }
            }
        }
        let to_bounce: Vec<DsnRecipient> = entry
            .recipients
            .iter()
            .filter_map(|(addr, s)| match s {
                RcptState::Failed {
                    code,
                    text,
                    notified: false,
                } => Some(DsnRecipient {
                    address: addr.clone(),
                    action: DsnAction::Failed,
                    code: *code,
                    diagnostic: text.clone(),
                    remote_mta: remote_mta.filter(|_| *code != 0).map(str::to_string),
                }),
                _ => None,
            })
            .collect();
        if !to_bounce.is_empty() {
            self.notify_sender(&entry, &to_bounce, None);
            for (_, s) in &mut entry.recipients {
                if let RcptState::Failed { notified, .. } = s {
                    *notified = true;
                }
            }
        }
        if !entry.finished() && policy.warning_due(entry.queued, entry.warned, now) {
            let delayed: Vec<DsnRecipient> = entry
                .recipients
                .iter()
                .filter_map(|(addr, s)| match s {
                    RcptState::Pending(last) => {
                        let (code, text) = last.clone().unwrap_or((0, "not yet delivered".into()));
                        Some(DsnRecipient {
                            address: addr.clone(),
                            action: DsnAction::Delayed,
                            code,
                            diagnostic: text,
                            remote_mta: None,
                        })
                    }
                    _ => None,
                })
                .collect();
            let until = rfc5322_date(entry.queued.saturating_add(policy.max_age.as_secs() as i64));
            self.notify_sender(&entry, &delayed, Some(&until));
            entry.warned = true;
        }
        if entry.finished() {
            self.queue_remove(&entry.name)?;
            tracing::info!(id = %entry.id, "removed from the queue: every recipient done");
            return Ok(None);
        }
        self.queue_save(&entry)?;
        Ok(Some(entry))
    }

    /// Sends a delivery status notification about `entry` to its sender (none to the null
    /// sender: notifications are never answered by notifications).
    fn notify_sender(&self, entry: &QueueEntry, recipients: &[DsnRecipient], until: Option<&str>) {
        if entry.sender.is_empty() {
            tracing::info!(id = %entry.id, "no notification to the null sender");
            return;
        }
        let header = self.queue_header(entry);
        let report = DsnReport {
            reporting_mta: &self.config.hostname,
            to: &entry.sender,
            queue_id: &entry.id,
            arrival_date: &rfc5322_date(entry.queued),
            date: &rfc5322_date(self.config.clock.unix_seconds()),
            message_id: &self.message_id(),
            retry_until: until,
            recipients,
            original_header: &header,
        };
        let kind = if until.is_some() {
            "delay warning"
        } else {
            "bounce"
        };
        match self.send_notice(&entry.id, &entry.sender, &dsn::build(&report)) {
            Ok(()) => tracing::info!(id = %entry.id, to = %entry.sender, kind, "notification sent"),
            Err(e) => {
                tracing::error!(id = %entry.id, to = %entry.sender, kind, error = %e, "cannot send notification")
            }
        }
    }
}

/// Queue file names are ours (`store::next_unique`), but `petrel queue drop NAME` and requests
/// name them from outside: nothing that could leave the queue directories.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a queue entry name"),
        ));
    }
    Ok(())
}

/// Recipients per job: receivers must accept 100 (RFC 5321 4.5.3.1.8); more go in further jobs.
const MAX_RCPTS_PER_JOB: usize = 100;
/// Bytes read at a time when scanning a message for 8-bit content.
const SCAN_CHUNK: usize = 64 * 1024;

/// One queued message's part in a [`Batch`].
#[derive(Debug, Clone)]
struct BatchEntry {
    name: String,
    sender: String,
    offset: u64,
    /// Sent before the stored message (DKIM signatures made when it was queued).
    prepend: Vec<u8>,
    size: u64,
    eight_bit: bool,
    smtputf8: bool,
    /// This domain's pending recipients, with the result of this attempt once known.
    recipients: Vec<(String, Option<RcptResult>)>,
}

/// The due mail for one destination domain: what one delivery attempt (one connection at a
/// time) carries. Built by [`Store::queue_due`]; the runner routes it, hands its jobs to the
/// SMTP client and its effects back here.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The destination domain (lowercase; an address literal without brackets).
    pub domain: String,
    entries: Vec<BatchEntry>,
}

/// What a finished [`Batch`] touched, for [`Store::queue_finish_batches`].
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    names: Vec<String>,
    remote_mta: Option<String>,
}

impl Batch {
    /// Jobs for the SMTP client: every recipient without a final result yet (a temporary
    /// failure at one host may succeed at the next).
    pub fn jobs(&self) -> Vec<OutboundJob> {
        let mut jobs = Vec::new();
        for e in &self.entries {
            let open: Vec<String> = e
                .recipients
                .iter()
                .filter(|(_, r)| matches!(r, None | Some(RcptResult::TempFail(..))))
                .map(|(a, _)| a.clone())
                .collect();
            for chunk in open.chunks(MAX_RCPTS_PER_JOB) {
                jobs.push(OutboundJob {
                    id: e.name.clone(),
                    sender: e.sender.clone(),
                    recipients: chunk.to_vec(),
                    size: e.size,
                    eight_bit: e.eight_bit,
                    smtputf8: e.smtputf8,
                });
            }
        }
        jobs
    }

    /// True when recipients are left that only failed temporarily (another MX may take them).
    pub fn wants_other_host(&self) -> bool {
        self.entries.iter().any(|e| {
            e.recipients
                .iter()
                .any(|(_, r)| matches!(r, None | Some(RcptResult::TempFail(..))))
        })
    }

    /// The text of a temporary failure met in this attempt, for logs and the router.
    pub fn last_problem(&self) -> String {
        self.entries
            .iter()
            .flat_map(|e| e.recipients.iter())
            .find_map(|(_, r)| match r {
                Some(RcptResult::TempFail(code, text)) => Some(format!("{code} {text}")),
                _ => None,
            })
            .unwrap_or_else(|| "no answer".into())
    }

    /// Performs the SMTP client's requests: message bytes and results (recorded durably).
    pub fn execute(&mut self, store: &Store, effect: Effect) -> Completion {
        match effect {
            Effect::ReadQueued { id, offset, max } => {
                let Some(e) = self.entries.iter().find(|e| e.name == id) else {
                    return failed(format!("{id} is not in this batch"));
                };
                let head = e.prepend.len() as u64;
                if offset < head {
                    let start = offset as usize;
                    let end = e.prepend.len().min(start.saturating_add(max));
                    return Completion::Data(e.prepend[start..end].to_vec());
                }
                match store.queue_read(&e.name, e.offset, offset - head, max) {
                    Ok(bytes) => Completion::Data(bytes),
                    Err(err) => failed(err.to_string()),
                }
            }
            Effect::Report { id, results } => {
                let Some(e) = self.entries.iter_mut().find(|e| e.name == id) else {
                    return failed(format!("{id} is not in this batch"));
                };
                let mut marks = Vec::new();
                for (rcpt, result) in results {
                    if let Some((_, slot)) = e.recipients.iter_mut().find(|(a, _)| *a == rcpt) {
                        marks.push((rcpt.clone(), attempt_result(&result)));
                        *slot = Some(result);
                    }
                }
                match store.queue_mark(&e.name, &marks) {
                    Ok(_) => Completion::Done,
                    Err(err) => failed(err.to_string()),
                }
            }
            other => failed(format!("the queue runner does not do {other:?}")),
        }
    }

    /// Ends the attempt for every recipient without a result: a routing failure (`permanent`
    /// for a domain that can never take mail). Temporary failures from a server are kept:
    /// they say more than "no other host answered".
    pub fn fail_remaining(&mut self, store: &Store, permanent: bool, why: &str) {
        for e in &mut self.entries {
            let mut marks = Vec::new();
            for (rcpt, slot) in &mut e.recipients {
                let replace = match slot {
                    None => true,
                    Some(RcptResult::TempFail(..)) => permanent,
                    Some(_) => false,
                };
                if replace {
                    let result = if permanent {
                        RcptResult::PermFail(0, why.to_string())
                    } else {
                        RcptResult::TempFail(0, why.to_string())
                    };
                    marks.push((rcpt.clone(), attempt_result(&result)));
                    *slot = Some(result);
                }
            }
            if let Err(err) = store.queue_mark(&e.name, &marks) {
                tracing::error!(entry = %e.name, error = %err, "cannot record a delivery failure");
            }
        }
    }

    /// What this batch touched, once the attempt is over.
    pub fn into_outcome(self, remote_mta: Option<String>) -> BatchOutcome {
        BatchOutcome {
            names: self.entries.into_iter().map(|e| e.name).collect(),
            remote_mta,
        }
    }
}

fn failed(message: String) -> Completion {
    Completion::Failed(StoreError {
        class: ErrorClass::Temporary,
        message,
    })
}

fn attempt_result(r: &RcptResult) -> AttemptResult {
    match r {
        RcptResult::Delivered(_) => AttemptResult::Delivered,
        RcptResult::TempFail(c, t) => AttemptResult::TempFail(*c, t.clone()),
        RcptResult::PermFail(c, t) => AttemptResult::PermFail(*c, t.clone()),
    }
}

impl Store {
    /// The due part of the queue, one [`Batch`] per destination domain. Entries already handed
    /// to an attempt that has not finished ([`Store::queue_finish_batches`]) are left out, so
    /// several attempts may run at once (a slow receiver does not hold up other mail) without
    /// two working on one message.
    pub fn queue_due(&self) -> io::Result<Vec<Batch>> {
        let now = self.config.clock.unix_seconds();
        let mut batches: Vec<Batch> = Vec::new();
        let mut in_flight = self
            .queue_in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for entry in self.queue_entries()? {
            if entry.next > now || entry.finished() || in_flight.contains(&entry.name) {
                continue;
            }
            let Ok(msg) = self.msg_path(&entry.name) else {
                continue;
            };
            let size = match self.fs.stamp(&msg) {
                Ok(Some(s)) => s.len.saturating_sub(entry.offset),
                Ok(None) => {
                    tracing::warn!(entry = %entry.name, "queued envelope without its message");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(entry = %entry.name, error = %e, "cannot read a queued message");
                    continue;
                }
            };
            let eight_bit = match self.has_eight_bit(&entry) {
                Ok(b) => b || entry.prepend.iter().any(|b| *b >= 0x80),
                Err(e) => {
                    tracing::warn!(entry = %entry.name, error = %e, "cannot read a queued message");
                    continue;
                }
            };
            // From here on the entry belongs to the attempt this batch list starts.
            in_flight.insert(entry.name.clone());
            let sender_utf8 = !entry.sender.is_ascii();
            for rcpt in entry.pending() {
                let domain = QueueEntry::domain_of(rcpt);
                let batch = match batches.iter_mut().position(|b| b.domain == domain) {
                    Some(i) => &mut batches[i],
                    None => {
                        batches.push(Batch {
                            domain: domain.clone(),
                            entries: Vec::new(),
                        });
                        batches.last_mut().expect("just pushed")
                    }
                };
                let slot = match batch.entries.iter().position(|e| e.name == entry.name) {
                    Some(i) => &mut batch.entries[i],
                    None => {
                        batch.entries.push(BatchEntry {
                            name: entry.name.clone(),
                            sender: entry.sender.clone(),
                            offset: entry.offset,
                            prepend: entry.prepend.clone(),
                            size: size + entry.prepend.len() as u64,
                            eight_bit,
                            smtputf8: sender_utf8,
                            recipients: Vec::new(),
                        });
                        batch.entries.last_mut().expect("just pushed")
                    }
                };
                slot.smtputf8 |= !rcpt.is_ascii();
                slot.recipients.push((rcpt.to_string(), None));
            }
        }
        Ok(batches)
    }

    /// Lets `names` be handed to attempts again (their attempt is over).
    pub fn queue_release<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut in_flight = self
            .queue_in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for name in names {
            in_flight.remove(name);
        }
    }

    fn has_eight_bit(&self, entry: &QueueEntry) -> io::Result<bool> {
        let mut f = self.fs.open_read(&self.msg_path(&entry.name)?)?;
        io::copy(&mut (&mut f).take(entry.offset), &mut io::sink())?;
        let mut buf = vec![0u8; SCAN_CHUNK];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(false);
            }
            if buf[..n].iter().any(|b| *b >= 0x80) {
                return Ok(true);
            }
        }
    }

    /// Ends the attempts of a queue run: each message touched is scheduled, bounced or removed
    /// once (however many destinations it had).
    pub fn queue_finish_batches(
        &self,
        outcomes: &[BatchOutcome],
        policy: &RetryPolicy,
    ) -> io::Result<()> {
        let mut done: Vec<&str> = Vec::new();
        let mut result = Ok(());
        for o in outcomes {
            for name in &o.names {
                if done.contains(&name.as_str()) {
                    continue;
                }
                done.push(name);
                let remote = outcomes
                    .iter()
                    .filter(|x| x.names.contains(name))
                    .find_map(|x| x.remote_mta.as_deref());
                if let Err(e) = self.queue_finish_attempt(name, policy, remote) {
                    result = Err(e);
                }
            }
        }
        self.queue_release(done.iter().copied());
        result
    }
}
