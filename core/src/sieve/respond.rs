//! The messages Sieve actions send back, and when they must not be sent: vacation auto-replies
//! (RFC 5230, RFC 6131) and the rejection notices of `reject` (RFC 5429, as an RFC 8098 MDN).
//!
//! Pure: the caller supplies the date, a unique Message-ID and the recipient's addresses, and
//! keeps the response tracking (who was answered when).

use super::interp::{Action, Message, parse_addresses};

/// Who the message was delivered to, for deciding about and writing a reply.
#[derive(Debug, Clone)]
pub struct Recipient<'a> {
    /// The envelope recipient as given (`user+tag@example.com`).
    pub envelope_to: &'a str,
    /// The canonical address of the mailbox (`user@example.com`).
    pub mailbox: &'a str,
}

/// Why no vacation reply is sent (RFC 5230 sections 4.5 and 4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReply {
    /// The sender is empty, a mailer daemon or a list robot.
    AutomatedSender,
    /// The message says it was sent automatically (`Auto-Submitted`, `Precedence`).
    AutoSubmitted,
    /// The message came through a mailing list.
    MailingList,
    /// None of the user's addresses is in To, Cc, Bcc or their Resent- forms.
    NotAddressedToUser,
    /// The sender is the user.
    FromSelf,
}

/// The vacation period in seconds: `:seconds` (RFC 6131) or `:days`, default 7 days, clamped to
/// 1 day..30 days for `:days` and 0..30 days for `:seconds`.
pub fn vacation_period(days: Option<u64>, seconds: Option<u64>) -> u64 {
    const DAY: u64 = 86_400;
    match (seconds, days) {
        (Some(s), _) => s.min(30 * DAY),
        (None, Some(d)) => d.clamp(1, 30) * DAY,
        (None, None) => 7 * DAY,
    }
}

/// The tracking handle of a vacation action: `:handle`, or one derived from the reason,
/// subject, from and mime arguments, so a changed message is a new response (RFC 5230 4.2).
pub fn vacation_handle(action: &Action) -> String {
    match action {
        Action::Vacation {
            handle: Some(h), ..
        } => h.clone(),
        Action::Vacation {
            reason,
            subject,
            from,
            mime,
            ..
        } => {
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for part in [
                reason.as_str(),
                "\0",
                subject.as_deref().unwrap_or(""),
                "\0",
                from.as_deref().unwrap_or(""),
                if *mime { "\0m" } else { "\0t" },
            ] {
                for b in part.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            format!("auto-{h:016x}")
        }
        _ => String::new(),
    }
}

fn local_part(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(l, _)| l)
}

fn without_detail(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split_once('+').map_or(local, |(b, _)| b);
            format!("{base}@{domain}").to_lowercase()
        }
        None => addr.to_lowercase(),
    }
}

/// Decides whether a vacation reply may go to `sender` for this message.
pub fn may_reply(
    sender: &str,
    recipient: &Recipient<'_>,
    addresses: &[String],
    message: &dyn Message,
) -> Result<(), NoReply> {
    let local = local_part(sender).to_ascii_lowercase();
    if sender.is_empty()
        || !sender.contains('@')
        || ["mailer-daemon", "listserv", "majordomo", "postmaster"].contains(&local.as_str())
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
        || local.starts_with("noreply")
        || local.starts_with("no-reply")
    {
        return Err(NoReply::AutomatedSender);
    }
    if message
        .header("auto-submitted")
        .iter()
        .any(|v| !v.trim().to_ascii_lowercase().starts_with("no"))
        || message.header("precedence").iter().any(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "bulk" | "list" | "junk"
            )
        })
        || !message.header("x-auto-response-suppress").is_empty()
    {
        return Err(NoReply::AutoSubmitted);
    }
    if ["list-id", "list-post", "list-unsubscribe", "list-help"]
        .iter()
        .any(|h| !message.header(h).is_empty())
    {
        return Err(NoReply::MailingList);
    }
    let mine: Vec<String> = [recipient.envelope_to, recipient.mailbox]
        .into_iter()
        .chain(addresses.iter().map(String::as_str))
        .map(without_detail)
        .collect();
    if mine.contains(&without_detail(sender)) {
        return Err(NoReply::FromSelf);
    }
    let addressed = ["to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"]
        .iter()
        .flat_map(|h| message.header(h))
        .flat_map(|v| parse_addresses(&v))
        .any(|a| mine.contains(&without_detail(&a)));
    if !addressed {
        return Err(NoReply::NotAddressedToUser);
    }
    Ok(())
}

/// Encodes a header text as RFC 2047 `B` encoded-words when it is not plain ASCII.
fn header_text(text: &str) -> String {
    use base64::Engine;
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.is_ascii() {
        return clean;
    }
    // Encoded words of at most 75 characters: 45 input bytes, split on char boundaries.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in clean.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Turns bare LF into CRLF.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn reply_threading(message: &dyn Message) -> String {
    let mut out = String::new();
    if let Some(id) = message.header("message-id").into_iter().next() {
        let id = id.trim().to_string();
        out.push_str(&format!("In-Reply-To: {id}\r\n"));
        let refs = message
            .header("references")
            .into_iter()
            .next()
            .unwrap_or_default();
        let refs = refs.trim();
        // Keep References bounded: the last few ids are what threading needs.
        let kept: Vec<&str> = refs.split_whitespace().rev().take(10).collect();
        let kept: Vec<&str> = kept.into_iter().rev().collect();
        if kept.is_empty() {
            out.push_str(&format!("References: {id}\r\n"));
        } else {
            out.push_str(&format!("References: {} {id}\r\n", kept.join(" ")));
        }
    }
    out
}

/// The vacation reply to `sender` (the envelope return path), RFC 5230 section 5. `date` is an
/// RFC 5322 date, `message_id` a unique `<id@host>`.
pub fn vacation_reply(
    action: &Action,
    sender: &str,
    recipient: &Recipient<'_>,
    message: &dyn Message,
    date: &str,
    message_id: &str,
) -> Vec<u8> {
    let Action::Vacation {
        reason,
        subject,
        from,
        mime,
        ..
    } = action
    else {
        return Vec::new();
    };
    let subject = match subject {
        Some(s) => s.clone(),
        None => {
            let original = message.header("subject").into_iter().next();
            format!("Auto: {}", original.unwrap_or_default().trim())
        }
    };
    let from = from
        .clone()
        .unwrap_or_else(|| recipient.mailbox.to_string());
    let mut out = String::new();
    out.push_str(&format!("From: {}\r\n", header_text(&from)));
    out.push_str(&format!("To: <{sender}>\r\n"));
    out.push_str(&format!("Subject: {}\r\n", header_text(&subject)));
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("Message-ID: {message_id}\r\n"));
    out.push_str(&reply_threading(message));
    out.push_str("Auto-Submitted: auto-replied (vacation)\r\n");
    out.push_str("Precedence: bulk\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    if *mime {
        // The reason is a MIME entity: its own header fields, a blank line, its body.
        let entity = crlf(reason);
        if entity.starts_with("\r\n") || entity.contains("\r\n\r\n") {
            out.push_str(entity.trim_start_matches("\r\n"));
        } else {
            out.push_str("\r\n");
            out.push_str(&entity);
        }
    } else {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
        out.push_str(&crlf(reason));
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The notice sent to `sender` when a Sieve `reject` refuses a message that could not be
/// refused in the SMTP dialogue: an MDN (RFC 8098) with the reason and the original header.
#[allow(clippy::too_many_arguments)]
pub fn rejection_notice(
    reason: &str,
    sender: &str,
    recipient: &Recipient<'_>,
    message: &dyn Message,
    original_header: &[u8],
    hostname: &str,
    date: &str,
    message_id: &str,
) -> Vec<u8> {
    let boundary = format!("petrel-{}", message_id.trim_matches(['<', '>']));
    let subject = message
        .header("subject")
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@{hostname}>\r\n"
    ));
    out.push_str(&format!("To: <{sender}>\r\n"));
    out.push_str(&format!(
        "Subject: Rejected: {}\r\n",
        header_text(subject.trim())
    ));
    out.push_str(&format!("Date: {date}\r\n"));
    out.push_str(&format!("Message-ID: {message_id}\r\n"));
    out.push_str(&reply_threading(message));
    out.push_str("Auto-Submitted: auto-replied (rejected)\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=disposition-notification;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ));
    out.push_str(&format!(
        "Your message to <{}> was automatically rejected:\r\n{}\r\n\r\n",
        recipient.envelope_to,
        crlf(reason)
    ));
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
    ));
    out.push_str(&format!("Reporting-UA: {hostname}; Petrel\r\n"));
    out.push_str(&format!(
        "Final-Recipient: rfc822; {}\r\n",
        recipient.mailbox
    ));
    if let Some(id) = message.header("message-id").into_iter().next() {
        out.push_str(&format!("Original-Message-ID: {}\r\n", id.trim()));
    }
    out.push_str("Disposition: automatic-action/MDN-sent-automatically; deleted\r\n\r\n");
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut head = String::from_utf8_lossy(original_header).into_owned();
    if !head.ends_with('\n') {
        head.push('\n');
    }
    out.push_str(&crlf(&head));
    out.push_str(&format!("\r\n--{boundary}--\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::RawMessage;

    fn rcpt() -> Recipient<'static> {
        Recipient {
            envelope_to: "me+work@example.com",
            mailbox: "me@example.com",
        }
    }

    fn vacation() -> Action {
        Action::Vacation {
            reason: "I'm away until next week.\nBack soon.".into(),
            subject: None,
            from: None,
            addresses: vec![],
            mime: false,
            handle: None,
            days: None,
            seconds: None,
        }
    }

    const MSG: &[u8] = b"From: Bob <bob@example.org>\r\nTo: me@example.com\r\nSubject: Lunch\r\nMessage-ID: <1@example.org>\r\n\r\nHi\r\n";

    #[test]
    fn replies_only_when_it_should() {
        let m = RawMessage::parse(MSG);
        assert_eq!(may_reply("bob@example.org", &rcpt(), &[], &m), Ok(()));
        let no = |sender: &str, msg: &[u8]| {
            may_reply(sender, &rcpt(), &[], &RawMessage::parse(msg)).unwrap_err()
        };
        assert_eq!(no("", MSG), NoReply::AutomatedSender);
        assert_eq!(
            no("MAILER-DAEMON@example.org", MSG),
            NoReply::AutomatedSender
        );
        assert_eq!(no("owner-list@example.org", MSG), NoReply::AutomatedSender);
        assert_eq!(
            no("list-request@example.org", MSG),
            NoReply::AutomatedSender
        );
        assert_eq!(
            no(
                "bob@example.org",
                b"To: me@example.com\r\nAuto-Submitted: auto-replied\r\n\r\n"
            ),
            NoReply::AutoSubmitted
        );
        assert_eq!(
            no(
                "bob@example.org",
                b"To: me@example.com\r\nPrecedence: bulk\r\n\r\n"
            ),
            NoReply::AutoSubmitted
        );
        assert_eq!(
            no(
                "bob@example.org",
                b"To: me@example.com\r\nList-Id: <l.example.org>\r\n\r\n"
            ),
            NoReply::MailingList
        );
        assert_eq!(
            no("bob@example.org", b"To: other@example.com\r\n\r\n"),
            NoReply::NotAddressedToUser
        );
        assert_eq!(no("me+x@example.com", MSG), NoReply::FromSelf);
        // Auto-Submitted: no is a human.
        assert_eq!(
            may_reply(
                "bob@example.org",
                &rcpt(),
                &[],
                &RawMessage::parse(b"Cc: \"Me\" <ME@example.com>\r\nAuto-Submitted: no\r\n\r\n")
            ),
            Ok(())
        );
        // :addresses count as the user's.
        let alias = RawMessage::parse(b"To: boss@corp.example\r\n\r\n");
        assert_eq!(
            may_reply(
                "bob@example.org",
                &rcpt(),
                &["boss@corp.example".into()],
                &alias
            ),
            Ok(())
        );
    }

    #[test]
    fn reply_is_threaded_and_marked() {
        let m = RawMessage::parse(MSG);
        let reply = vacation_reply(
            &vacation(),
            "bob@example.org",
            &rcpt(),
            &m,
            "Wed, 25 Nov 2026 15:00:00 +0000",
            "<r1@mail.example.com>",
        );
        let text = String::from_utf8(reply).unwrap();
        assert!(
            text.starts_with(
                "From: me@example.com\r\nTo: <bob@example.org>\r\nSubject: Auto: Lunch\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("In-Reply-To: <1@example.org>\r\nReferences: <1@example.org>\r\n"));
        assert!(text.contains("Auto-Submitted: auto-replied (vacation)\r\n"));
        assert!(
            text.ends_with("\r\n\r\nI'm away until next week.\r\nBack soon.\r\n"),
            "{text}"
        );
        assert!(!text.contains("\n\n") && !text.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn subjects_and_handles() {
        let mut a = vacation();
        if let Action::Vacation { subject, .. } = &mut a {
            *subject = Some("Abwesend – Urlaub".into());
        }
        let text = String::from_utf8(vacation_reply(
            &a,
            "b@example.org",
            &rcpt(),
            &RawMessage::parse(MSG),
            "d",
            "<x@y>",
        ))
        .unwrap();
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert_ne!(vacation_handle(&a), vacation_handle(&vacation()));
        assert_eq!(vacation_handle(&vacation()), vacation_handle(&vacation()));
        assert_eq!(vacation_period(None, None), 7 * 86_400);
        assert_eq!(vacation_period(Some(0), None), 86_400);
        assert_eq!(vacation_period(Some(365), None), 30 * 86_400);
        assert_eq!(vacation_period(Some(3), Some(60)), 60);
    }

    #[test]
    fn rejection_is_an_mdn() {
        let m = RawMessage::parse(MSG);
        let text = String::from_utf8(rejection_notice(
            "I don't want your mail",
            "bob@example.org",
            &rcpt(),
            &m,
            b"From: Bob <bob@example.org>\r\nSubject: Lunch\r\n",
            "mail.example.com",
            "d",
            "<n1@mail.example.com>",
        ))
        .unwrap();
        assert!(text.contains("report-type=disposition-notification"));
        assert!(text.contains("Disposition: automatic-action/MDN-sent-automatically; deleted\r\n"));
        assert!(text.contains("I don't want your mail"));
        assert!(text.contains("Original-Message-ID: <1@example.org>"));
        assert!(text.contains("Subject: Rejected: Lunch\r\n"));
        assert!(text.ends_with("--petrel-n1@mail.example.com--\r\n"));
    }
}
