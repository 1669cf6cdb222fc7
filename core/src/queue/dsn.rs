//! Delivery status notifications (RFC 3464): the bounce for recipients that failed and the
//! warning for recipients still being retried, sent to the envelope sender from the null sender
//! (so a notification itself never causes another: no bounce loops).

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DsnAction {
    /// Delivery failed for good.
    Failed,
    /// Still being retried (delay warning).
    Delayed,
}

/// One recipient's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The recipient address.
    pub address: String,
    /// Failed or delayed.
    pub action: DsnAction,
    /// The SMTP reply code, or 0 when there was no reply (DNS, connection).
    pub code: u16,
    /// The reply text or a description of the problem.
    pub diagnostic: String,
    /// The receiving host, if one answered.
    pub remote_mta: Option<String>,
}

/// A whole notification.
#[derive(Debug, Clone)]
pub struct DsnReport<'a> {
    /// This server's host name (Reporting-MTA, From).
    pub reporting_mta: &'a str,
    /// The envelope sender of the original message: the notification's recipient.
    pub to: &'a str,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    /// When the original arrived (RFC 5322 date).
    pub arrival_date: &'a str,
    /// Now (RFC 5322 date).
    pub date: &'a str,
    /// A unique `<id@host>`.
    pub message_id: &'a str,
    /// For delay warnings: until when delivery is retried (RFC 5322 date).
    pub retry_until: Option<&'a str>,
    /// The recipients reported on.
    pub recipients: &'a [DsnRecipient],
    /// The header of the original message (CRLF lines), returned as `text/rfc822-headers`.
    pub original_header: &'a [u8],
}

/// The enhanced status code for a reply: the one the text starts with (`5.1.1 ...`), or one
/// derived from the reply code's class.
pub fn status_code(code: u16, text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = first.split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if valid && (code == 0 || parts[0].as_bytes()[0] == b'0' + (code / 100) as u8) {
        return first.to_string();
    }
    match code / 100 {
        2 => "2.0.0".into(),
        4 => "4.0.0".into(),
        5 => "5.0.0".into(),
        // No reply: a routing or network problem.
        _ => "4.4.1".into(),
    }
}

/// Keeps a header value on one line of printable ASCII.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The notification message, CRLF line ends, ready to queue from the null sender to `to`.
pub fn build(report: &DsnReport<'_>) -> Vec<u8> {
    let failed = report
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);
    let boundary = format!("{}/{}", report.queue_id, report.reporting_mta);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{}>\r\n",
        report.reporting_mta
    ));
    out.push_str(&format!("To: <{}>\r\n", report.to));
    out.push_str(&format!("Subject: {subject}\r\n"));
    out.push_str(&format!("Date: {}\r\n", report.date));
    out.push_str(&format!("Message-ID: {}\r\n", report.message_id));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    out.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    out.push_str(&format!(
        "--{boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    out.push_str(&format!(
        "This is the mail system at host {}.\r\n\r\n",
        report.reporting_mta
    ));
    if failed {
        out.push_str(
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\r\n",
        );
    } else {
        out.push_str(
            "This is a warning only: your message has not yet been delivered\r\n\
             to one or more recipients. The mail system will keep trying",
        );
        match report.retry_until {
            Some(until) => out.push_str(&format!("\r\nuntil {until}.\r\n\r\n")),
            None => out.push_str(".\r\n\r\n"),
        }
    }
    for r in report.recipients {
        out.push_str(&format!(
            "<{}>: {}\r\n",
            one_line(&r.address),
            one_line(&r.diagnostic)
        ));
    }
    out.push_str("\r\n");

    out.push_str(&format!(
        "--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    out.push_str(&format!("Reporting-MTA: dns; {}\r\n", report.reporting_mta));
    out.push_str(&format!(
        "X-Petrel-Queue-ID: {}\r\n",
        one_line(report.queue_id)
    ));
    out.push_str(&format!("Arrival-Date: {}\r\n", report.arrival_date));
    for r in report.recipients {
        out.push_str("\r\n");
        out.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            one_line(&r.address)
        ));
        out.push_str(match r.action {
            DsnAction::Failed => "Action: failed\r\n",
            DsnAction::Delayed => "Action: delayed\r\n",
        });
        let mut status = status_code(r.code, &r.diagnostic);
        if r.action == DsnAction::Delayed && status.starts_with('5') {
            status.replace_range(..1, "4");
        }
        if r.action == DsnAction::Failed && !status.starts_with('5') {
            status.replace_range(..1, "5");
        }
        out.push_str(&format!("Status: {status}\r\n"));
        if let Some(mta) = &r.remote_mta {
            out.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(mta)));
        }
        if r.code != 0 {
            out.push_str(&format!(
                "Diagnostic-Code: smtp; {} {}\r\n",
                r.code,
                one_line(&r.diagnostic)
            ));
        } else {
            out.push_str(&format!(
                "Diagnostic-Code: X-Petrel; {}\r\n",
                one_line(&r.diagnostic)
            ));
        }
        out.push_str(&format!("Last-Attempt-Date: {}\r\n", report.date));
        if let (DsnAction::Delayed, Some(until)) = (&r.action, report.retry_until) {
            out.push_str(&format!("Will-Retry-Until: {until}\r\n"));
        }
    }
    out.push_str("\r\n");

    out.push_str(&format!(
        "--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut header = String::from_utf8_lossy(report.original_header).into_owned();
    header = header.replace("\r\n", "\n").replace('\n', "\r\n");
    if !header.ends_with("\r\n") {
        header.push_str("\r\n");
    }
    out.push_str(&header);
    out.push_str(&format!("\r\n--{boundary}--\r\n"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(recipients: &'a [DsnRecipient], retry_until: Option<&'a str>) -> DsnReport<'a> {
        DsnReport {
            reporting_mta: "mail.example.com",
            to: "alice@example.com",
            queue_id: "ABC123",
            arrival_date: "Wed, 25 Nov 2026 10:00:00 +0000",
            date: "Wed, 25 Nov 2026 15:00:00 +0000",
            message_id: "<dsn1@mail.example.com>",
            retry_until,
            recipients,
            original_header: b"From: alice@example.com\r\nSubject: hi\r\n",
        }
    }

    #[test]
    fn enhanced_codes() {
        assert_eq!(status_code(550, "5.1.1 <x@y>: user unknown"), "5.1.1");
        assert_eq!(status_code(550, "user unknown"), "5.0.0");
        assert_eq!(status_code(550, "4.2.2 mismatched class"), "5.0.0");
        assert_eq!(status_code(451, "4.7.1 greylisted"), "4.7.1");
        assert_eq!(status_code(0, "connection refused"), "4.4.1");
        assert_eq!(status_code(0, "5.1.2 no such domain"), "5.1.2");
    }

    #[test]
    fn bounce_is_a_delivery_status_report() {
        let rcpts = [DsnRecipient {
            address: "bob@remote.example".into(),
            action: DsnAction::Failed,
            code: 550,
            diagnostic: "5.1.1 <bob@remote.example>: Recipient address rejected\r\nX".into(),
            remote_mta: Some("mx.remote.example".into()),
        }];
        let text = String::from_utf8(build(&report(&rcpts, None))).unwrap();
        assert!(text.contains("Subject: Undelivered Mail Returned to Sender\r\n"));
        assert!(text.contains("report-type=delivery-status"));
        assert!(text.contains("\r\nFinal-Recipient: rfc822; bob@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.remote.example\r\nDiagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: Recipient address rejected X\r\n"), "{text}");
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.com\r\nSubject: hi\r\n"
        ));
        assert!(text.ends_with("\r\n--ABC123/mail.example.com--\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
    }

    #[test]
    fn delay_warning_says_until_when() {
        let rcpts = [DsnRecipient {
            address: "bob@remote.example".into(),
            action: DsnAction::Delayed,
            code: 0,
            diagnostic: "connect to mx.remote.example: connection refused".into(),
            remote_mta: None,
        }];
        let text = String::from_utf8(build(&report(
            &rcpts,
            Some("Mon, 30 Nov 2026 10:00:00 +0000"),
        )))
        .unwrap();
        assert!(text.contains("Subject: Delayed Mail (still being retried)"));
        assert!(text.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        assert!(text.contains("Diagnostic-Code: X-Petrel; connect to mx.remote.example"));
        assert!(text.contains("Will-Retry-Until: Mon, 30 Nov 2026 10:00:00 +0000\r\n"));
    }
}
