//! The outbound queue under `DATA_DIR/queue/`: `msg/ID` holds the message (sharing its bytes
//! with local copies by a hard link) and `env/ID` the envelope. A message is queued once both
//! names are durable; an `env` without its `msg` is never written, and a `msg` without an `env`
//! is an unacknowledged leftover the queue runner removes.
//!
//! Envelope file format, one field a line:
//! ```text
//! id S0A1B2C301
//! sender alice@example.com
//! offset 31
//! rcpt bob@example.net
//! ```
//! `offset` is where the message starts in `msg/ID` (after the Return-Path line, which belongs
//! only to final delivery). `sender` is empty for the null path.

use petrel_core::Envelope;

/// Directory of message files, relative to the data directory.
pub const MSG_DIR: &str = "queue/msg";
/// Directory of envelope files, relative to the data directory.
pub const ENV_DIR: &str = "queue/env";

/// The envelope file for the remote recipients of `envelope`.
pub fn envelope_text(envelope: &Envelope, offset: usize) -> String {
    let remote: Vec<String> = envelope
        .recipients
        .iter()
        .filter(|r| r.mailbox.is_none())
        .map(|r| r.address.to_string())
        .collect();
    envelope_lines(&envelope.id, &envelope.sender.to_string(), offset, &remote)
}

/// The envelope file for message `id` from `sender` (empty: null sender) to `recipients`.
pub fn envelope_lines(id: &str, sender: &str, offset: usize, recipients: &[String]) -> String {
    let mut text = format!("id {id}\nsender {sender}\noffset {offset}\n");
    for r in recipients {
        text.push_str(&format!("rcpt {r}\n"));
    }
    text
}
