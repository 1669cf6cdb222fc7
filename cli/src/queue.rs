//! `petrel queue list|flush|drop ID`: the outbound queue, for the administrator.

use crate::Failure;
use crate::config::Config;
use crate::deliver::open_store;
use petrel_core::rfc5322_date;
use petrel_store::queue::RcptState;

/// What `petrel queue` was asked to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueCommand {
    /// Lists queued messages: id, age, sender, and each recipient with its last problem.
    List,
    /// Makes every queued message due now; the running server tries them within seconds.
    Flush,
    /// Removes a message from the queue without notifying anyone.
    Drop {
        /// The queue id (as `list` shows it) or the entry's file name.
        id: String,
    },
}

/// Runs a queue command.
pub fn run(config: &Config, command: QueueCommand) -> Result<(), Failure> {
    let (store, clock) = open_store(config).map_err(|(_, m)| Failure::Other(m))?;
    let other = |e: std::io::Error| Failure::Other(format!("queue: {e}"));
    match command {
        QueueCommand::List => {
            let entries = store.queue_entries().map_err(other)?;
            let now = clock.unix_seconds();
            for e in &entries {
                let sender = if e.sender.is_empty() { "<>" } else { &e.sender };
                let next = if e.next <= now {
                    "due now".to_string()
                } else {
                    format!("next try {}", rfc5322_date(e.next))
                };
                println!(
                    "{} {} queued {} from {sender}, {} attempt(s), {next}",
                    e.id,
                    e.name,
                    rfc5322_date(e.queued),
                    e.attempts
                );
                for (addr, state) in &e.recipients {
                    match state {
                        RcptState::Pending(None) => println!("    {addr}: pending"),
                        RcptState::Pending(Some((code, text))) => {
                            println!("    {addr}: pending ({code} {text})")
                        }
                        RcptState::Delivered => println!("    {addr}: delivered"),
                        RcptState::Failed { code, text, .. } => {
                            println!("    {addr}: failed ({code} {text})")
                        }
                    }
                }
            }
            let pending: usize = entries.iter().map(|e| e.pending().count()).sum();
            println!(
                "{} message(s) queued, {pending} recipient(s) pending",
                entries.len()
            );
            Ok(())
        }
        QueueCommand::Flush => {
            let n = store.queue_flush().map_err(other)?;
            println!("{n} message(s) due now");
            Ok(())
        }
        QueueCommand::Drop { id } => {
            let entries = store.queue_entries().map_err(other)?;
            let matching: Vec<_> = entries
                .iter()
                .filter(|e| e.id == id || e.name == id)
                .collect();
            if matching.is_empty() {
                return Err(Failure::Other(format!("queue: no message {id}")));
            }
            for e in matching {
                store.queue_remove(&e.name).map_err(other)?;
                println!("dropped {} ({})", e.id, e.name);
            }
            Ok(())
        }
    }
}
