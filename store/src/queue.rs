//! The outbound queue under `DATA_DIR/queue/`: `msg/NAME` holds the message (sharing its bytes
//! with local copies by a hard link) and `env/NAME` its envelope and delivery state. A message is
//! queued once both names are durable; an `env` is never written without its `msg`, and a `msg`
//! without an `env` is an unacknowledged leftover the queue runner removes.
//!
//! Envelope file format, one field a line (unknown lines are kept out, never an error):
//! ```text
//! id S0A1B2C301
//! sender alice@example.com
//! offset 31
//! queued 1800000000
//! attempts 2
//! next 1800000600
//! warned
//! rcpt bob@example.net
//! last bob@example.net 451 4.7.1 greylisted, try later
//! done carol@example.net
//! failed dave@example.net 550 5.1.1 user unknown
//! ```
//! `offset` is where the message starts in `msg/NAME` (after the Return-Path line, which belongs
//! only to final delivery). `prepend` lines (base64) hold header fields sent before the message,
//! such as its DKIM signatures, computed once when it was queued. `sender` is empty for the null path. `rcpt` lines are recipients
//! still to deliver (with the `last` problem met, if any); `done` ones were delivered, `failed`
//! ones failed for good and `bounced` ones failed and were reported to the sender. Every change
//! is written atomically and fsynced.

/// Directory of message files, relative to the data directory.
pub const MSG_DIR: &str = "queue/msg";
/// Directory of envelope files, relative to the data directory.
pub const ENV_DIR: &str = "queue/env";

/// The envelope file of a newly queued message from `sender` (empty: null sender), with
/// `prepend` (header fields sent before the message, e.g. DKIM signatures) if any.
pub fn envelope_lines(
    id: &str,
    sender: &str,
    offset: usize,
    queued: i64,
    prepend: &[u8],
    recipients: &[String],
) -> String {
    let mut text = format!("id {id}\nsender {sender}\noffset {offset}\nqueued {queued}\n");
    if !prepend.is_empty() {
        use base64::Engine;
        text.push_str(&format!(
            "prepend {}\n",
            base64::engine::general_purpose::STANDARD.encode(prepend)
        ));
    }
    for r in recipients {
        text.push_str(&format!("rcpt {r}\n"));
    }
    text
}

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Still to deliver; the last problem met, if any (reply code, 0 for none, and text).
    Pending(Option<(u16, String)>),
    /// Delivered.
    Delivered,
    /// Failed for good, with the reason; `notified` once the sender has the bounce.
    Failed {
        /// The reply code, 0 for none.
        code: u16,
        /// The reason.
        text: String,
        /// The bounce was sent (or there is no one to send it to).
        notified: bool,
    },
}

/// One queued message's envelope and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The file name under `msg/` and `env/`.
    pub name: String,
    /// The queue id (the SMTP transaction id it was accepted under).
    pub id: String,
    /// The envelope sender, empty for the null sender.
    pub sender: String,
    /// Where the message starts in `msg/NAME`.
    pub offset: u64,
    /// When it was queued (Unix seconds).
    pub queued: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (Unix seconds); 0 = now.
    pub next: i64,
    /// A delay warning was sent.
    pub warned: bool,
    /// Header fields sent before the stored message (DKIM-Signature), CRLF lines.
    pub prepend: Vec<u8>,
    /// The recipients in the order given.
    pub recipients: Vec<(String, RcptState)>,
}

impl QueueEntry {
    /// Recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.recipients
            .iter()
            .filter(|(_, s)| matches!(s, RcptState::Pending(_)))
            .map(|(a, _)| a.as_str())
    }

    /// True when nothing is left to deliver.
    pub fn finished(&self) -> bool {
        self.pending().next().is_none()
    }

    /// The domain part of a recipient, lowercased (the routing key).
    pub fn domain_of(address: &str) -> String {
        address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    }

    /// Parses an envelope file; `name` is its file name. `queued_default` stands in for a
    /// missing `queued` line (files written before it existed).
    pub fn parse(name: &str, text: &str, queued_default: i64) -> Result<QueueEntry, String> {
        let mut e = QueueEntry {
            name: name.to_string(),
            id: String::new(),
            sender: String::new(),
            offset: 0,
            queued: queued_default,
            attempts: 0,
            next: 0,
            warned: false,
            prepend: Vec::new(),
            recipients: Vec::new(),
        };
        let mut lasts: Vec<(String, u16, String)> = Vec::new();
        let mut saw_sender = false;
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("bad {key} line"))
            };
            match key {
                "id" => e.id = value.to_string(),
                "sender" => {
                    e.sender = value.to_string();
                    saw_sender = true;
                }
                "offset" => e.offset = num(value)?.max(0) as u64,
                "queued" => e.queued = num(value)?,
                "attempts" => e.attempts = num(value)?.clamp(0, i64::from(u32::MAX)) as u32,
                "next" => e.next = num(value)?,
                "warned" => e.warned = true,
                "prepend" => {
                    use base64::Engine;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(value.trim())
                        .map_err(|_| "bad prepend line".to_string())?;
                    e.prepend.extend_from_slice(&bytes);
                }
                "rcpt" => e
                    .recipients
                    .push((value.to_string(), RcptState::Pending(None))),
                "done" => e.recipients.push((value.to_string(), RcptState::Delivered)),
                "failed" | "bounced" | "last" => {
                    let mut parts = value.splitn(3, ' ');
                    let addr = parts.next().unwrap_or("").to_string();
                    let code = parts.next().unwrap_or("0").parse::<u16>().unwrap_or(0);
                    let text = parts.next().unwrap_or("").to_string();
                    if key == "last" {
                        lasts.push((addr, code, text));
                    } else {
                        let notified = key == "bounced";
                        e.recipients.push((
                            addr,
                            RcptState::Failed {
                                code,
                                text,
                                notified,
                            },
                        ));
                    }
                }
                _ => {}
            }
        }
        if e.id.is_empty() || !saw_sender {
            return Err("missing id or sender line".into());
        }
        for (addr, code, text) in lasts {
            if let Some((_, RcptState::Pending(last))) =
                e.recipients.iter_mut().find(|(a, _)| *a == addr)
            {
                *last = Some((code, text));
            }
        }
        Ok(e)
    }

    /// The envelope file text (see the module docs).
    pub fn to_text(&self) -> String {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let mut t = format!(
            "id {}\nsender {}\noffset {}\nqueued {}\nattempts {}\nnext {}\n",
            self.id, self.sender, self.offset, self.queued, self.attempts, self.next
        );
        if self.warned {
            t.push_str("warned\n");
        }
        if !self.prepend.is_empty() {
            use base64::Engine;
            t.push_str(&format!(
                "prepend {}\n",
                base64::engine::general_purpose::STANDARD.encode(&self.prepend)
            ));
        }
        for (addr, state) in &self.recipients {
            match state {
                RcptState::Pending(last) => {
                    t.push_str(&format!("rcpt {addr}\n"));
                    if let Some((code, text)) = last {
                        t.push_str(&format!("last {addr} {code} {}\n", clean(text)));
                    }
                }
                RcptState::Delivered => t.push_str(&format!("done {addr}\n")),
                RcptState::Failed {
                    code,
                    text,
                    notified,
                } => {
                    let key = if *notified { "bounced" } else { "failed" };
                    t.push_str(&format!("{key} {addr} {code} {}\n", clean(text)))
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_old_files() {
        let old = envelope_lines(
            "S01",
            "a@example.com",
            31,
            1000,
            b"DKIM-Signature: x\r\n",
            &["b@x.example".into()],
        );
        let mut e = QueueEntry::parse("n1", &old, 5).unwrap();
        assert_eq!(e.queued, 1000);
        assert_eq!(e.prepend, b"DKIM-Signature: x\r\n");
        assert_eq!(e.pending().collect::<Vec<_>>(), ["b@x.example"]);
        e.recipients.push((
            "c@y.example".into(),
            RcptState::Pending(Some((451, "try\r\nlater".into()))),
        ));
        e.recipients.push((
            "d@y.example".into(),
            RcptState::Failed {
                code: 550,
                text: "no such user".into(),
                notified: true,
            },
        ));
        e.recipients
            .push(("e@y.example".into(), RcptState::Delivered));
        e.attempts = 3;
        e.next = 77;
        e.warned = true;
        let again = QueueEntry::parse("n1", &e.to_text(), 0).unwrap();
        assert_eq!(
            again.recipients[1].1,
            RcptState::Pending(Some((451, "try  later".into())))
        );
        assert_eq!(again.recipients[2], e.recipients[2]);
        assert!(
            e.to_text()
                .contains("bounced d@y.example 550 no such user\n")
        );
        assert_eq!((again.attempts, again.next, again.warned), (3, 77, true));
        // A file from before `queued` existed takes the default.
        let legacy = "id S02\nsender \noffset 17\nrcpt z@z.example\n";
        let l = QueueEntry::parse("n2", legacy, 42).unwrap();
        assert_eq!((l.queued, l.sender.as_str()), (42, ""));
        assert!(QueueEntry::parse("n3", "offset 1\n", 0).is_err());
        assert_eq!(QueueEntry::domain_of("X@Example.NET"), "example.net");
        assert_eq!(QueueEntry::domain_of("x@[127.0.0.1]"), "127.0.0.1");
    }
}
