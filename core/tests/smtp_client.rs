//! Transcript tests of the outbound SMTP client through the real `Pump`: the receiving server
//! is a script of replies, the queue a map of messages; and one cross-check against Petrel's own
//! SMTP server session, both in memory.

// Tests need one real instant as their epoch; every later time is derived from it.
#![allow(clippy::disallowed_methods)]

use petrel_core::smtp::client::{
    BODY_CHUNK, ClientConfig, OutboundJob, RcptResult, SmtpClient, TlsPolicy,
};
use petrel_core::smtp::data::DataReceiver;
use petrel_core::smtp::{Role, SmtpConfig, SmtpSession};
use petrel_core::{
    Action, CloseReason, Completion, Effect, PeerInfo, Pump, Receipt, RecipientOutcome, Secret,
    TlsInfo, TxId, UserId, WallClock,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    }
}

fn config(tls: TlsPolicy) -> ClientConfig {
    let mut c = ClientConfig::new("client.example.org");
    c.tls = tls;
    c
}

fn job(id: &str, sender: &str, rcpts: &[&str], size: u64) -> OutboundJob {
    OutboundJob {
        id: id.into(),
        sender: sender.into(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
        size,
        eight_bit: false,
        smtputf8: false,
    }
}

type Results = Vec<(String, RcptResult)>;

/// What a run produced.
#[derive(Debug)]
struct Run {
    /// Everything the client sent.
    written: Vec<u8>,
    /// Reports in order: queue id, results, and how many bytes the client had sent by then.
    reports: Vec<(String, Results, usize)>,
    /// How many bytes the client had sent when it asked for TLS.
    tls_at: Vec<usize>,
    /// ReadQueued requests: (id, offset, max).
    reads: Vec<(String, u64, usize)>,
    reason: CloseReason,
    elapsed: Duration,
    max_buffered: usize,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.written).into_owned()
    }
    fn results(&self, id: &str) -> &Results {
        &self
            .reports
            .iter()
            .find(|r| r.0 == id)
            .unwrap_or_else(|| panic!("no report for {id}: {self:?}"))
            .1
    }
    /// Command lines sent (message content excluded only in that it is lines too).
    fn lines(&self) -> Vec<String> {
        self.text().split("\r\n").map(str::to_string).collect()
    }
}

/// Drives a client through the real `Pump`: `script` (the server's replies) is offered in
/// pieces cut at `cuts`; when it runs out, a timer due within `patience` is waited out,
/// otherwise the server closes the connection. STARTTLS succeeds at once.
fn run(
    config: ClientConfig,
    jobs: Vec<OutboundJob>,
    messages: &[(&str, &[u8])],
    script: &[u8],
    cuts: &[usize],
    patience: Duration,
) -> Run {
    let start = Instant::now();
    let messages: BTreeMap<String, Vec<u8>> = messages
        .iter()
        .map(|(id, m)| (id.to_string(), m.to_vec()))
        .collect();
    let client = SmtpClient::new(Arc::new(config), jobs, start);
    let mut pump = Pump::new(Box::new(client));
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (script.len() + 1)).collect();
    bounds.push(script.len());
    bounds.sort_unstable();
    let mut bounds = bounds.into_iter();
    let (mut pos, mut end, mut now) = (0, 0, start);
    let mut r = Run {
        written: Vec::new(),
        reports: Vec::new(),
        tls_at: Vec::new(),
        reads: Vec::new(),
        reason: CloseReason::Quit,
        elapsed: Duration::ZERO,
        max_buffered: 0,
    };
    for _ in 0..1_000_000 {
        r.max_buffered = r.max_buffered.max(pump.buffered_bytes());
        match pump.next_action() {
            Action::Write => {
                r.written.extend_from_slice(pump.output());
                let n = pump.output().len();
                pump.wrote(now, n);
            }
            Action::Execute(id, effect) => {
                let answer = match effect {
                    Effect::ReadQueued { id, offset, max } => {
                        let m = &messages[&id];
                        let from = (offset as usize).min(m.len());
                        let to = (from + max).min(m.len());
                        r.reads.push((id, offset, max));
                        Completion::Data(m[from..to].to_vec())
                    }
                    Effect::Report { id, results } => {
                        r.reports.push((id, results, r.written.len()));
                        Completion::Done
                    }
                    other => panic!("the client never asks {other:?}"),
                };
                pump.complete(now, id, answer);
            }
            Action::StartTls => {
                r.tls_at.push(r.written.len());
                pump.tls_established(now, tls_info());
            }
            Action::Read { deadline } => {
                while pos == end {
                    match bounds.next() {
                        Some(e) => end = e,
                        None => break,
                    }
                }
                if pos < end {
                    let buf = pump.read_buffer();
                    let n = buf.len().min(end - pos);
                    buf[..n].copy_from_slice(&script[pos..pos + n]);
                    pos += n;
                    pump.received(now, n);
                } else if let Some(d) =
                    deadline.filter(|d| d.saturating_duration_since(start) < patience)
                {
                    now = now.max(d);
                    pump.timeout(now);
                } else {
                    pump.eof(now);
                }
            }
            Action::Wait { deadline } => {
                now = now.max(deadline.expect("requests are answered at once here"));
                pump.timeout(now);
            }
            Action::Close(reason) => {
                r.reason = reason;
                r.elapsed = now - start;
                return r;
            }
        }
    }
    panic!("the client never closed: {}", r.text());
}

fn run_simple(
    config: ClientConfig,
    jobs: Vec<OutboundJob>,
    messages: &[(&str, &[u8])],
    script: &[u8],
) -> Run {
    run(config, jobs, messages, script, &[], Duration::ZERO)
}

const GREETING: &str = "220 mx.example.net ESMTP ready\r\n";
const EHLO_PLAIN: &str = "250-mx.example.net\r\n250-SIZE 100000\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_PIPE: &str =
    "250-mx.example.net\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_CHUNKING: &str = "250-mx.example.net\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE\r\n";

fn delivered(text: &str) -> RcptResult {
    RcptResult::Delivered(text.into())
}

const MSG: &[u8] =
    b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nmiddle.\r\n.\r\nlast line no crlf";

#[test]
fn plain_delivery_with_data_and_dot_stuffing() {
    let script = format!(
        "{GREETING}{EHLO_PLAIN}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n\
250 2.0.0 Ok: queued as ABC\r\n221 2.0.0 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net"],
            MSG.len() as u64,
        )],
        &[("J1", MSG)],
        script.as_bytes(),
    );
    let expected = format!(
        "EHLO client.example.org\r\nMAIL FROM:<a@example.org> SIZE={}\r\nRCPT TO:<b@example.net>\r\n\
DATA\r\nSubject: dots\r\n\r\n..leading dot\r\n...two\r\nmiddle.\r\n..\r\nlast line no crlf\r\n.\r\nQUIT\r\n",
        MSG.len()
    );
    assert_eq!(r.text(), expected);
    assert_eq!(
        r.results("J1"),
        &[(
            "b@example.net".to_string(),
            delivered("2.0.0 Ok: queued as ABC")
        )]
    );
    assert_eq!(r.reason, CloseReason::Quit);
    // The report came before QUIT was sent.
    assert!(!String::from_utf8_lossy(&r.written[..r.reports[0].2]).contains("QUIT"));
}

#[test]
fn the_sent_data_decodes_to_the_stored_message() {
    // What the receiving side's own DATA decoder makes of the client's output.
    let big: Vec<u8> = (0..3000)
        .flat_map(|i| format!(".line {i} .\r\n").into_bytes())
        .collect();
    let script =
        format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "", &["b@example.net"], big.len() as u64)],
        &[("J1", &big)],
        script.as_bytes(),
    );
    let text = r.text();
    let start = text.find("DATA\r\n").unwrap() + 6;
    let mut rx = DataReceiver::new();
    let mut out = Vec::new();
    let (used, done) = rx.feed(&r.written[start..], &mut out, usize::MAX);
    assert!(done);
    assert_eq!(out, big);
    assert_eq!(&r.written[start + used..], b"QUIT\r\n");
    assert!(text.starts_with("EHLO client.example.org\r\nMAIL FROM:<> SIZE="));
    // Streamed in bounded chunks, never whole.
    assert!(r.reads.len() > big.len() / BODY_CHUNK, "{:?}", r.reads);
    assert!(r.reads.iter().all(|(_, _, max)| *max == BODY_CHUNK));
    assert!(r.max_buffered < 3 * BODY_CHUNK, "{}", r.max_buffered);
}

#[test]
fn pipelining_sends_mail_rcpts_and_data_in_one_batch() {
    // The server answers EHLO and then goes silent: whatever the client sent by then was sent
    // without waiting for the reply to MAIL.
    let script = format!("{GREETING}{EHLO_PIPE}");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            10,
        )],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert_eq!(
        r.text(),
        "EHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n\
RCPT TO:<c@example.net>\r\nDATA\r\n"
    );
    let results = r.results("J1");
    assert_eq!(results.len(), 2);
    for (_, res) in results {
        assert_eq!(
            res,
            &RcptResult::TempFail(451, "4.4.2 lost connection after DATA".into())
        );
    }
    assert_eq!(r.reason, CloseReason::PeerClosed);

    // Without PIPELINING only MAIL goes out before its reply.
    let script = format!("{GREETING}{EHLO_PLAIN}");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            10,
        )],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert_eq!(
        r.text(),
        "EHLO client.example.org\r\nMAIL FROM:<a@example.org> SIZE=10\r\n"
    );
    assert!(
        matches!(&r.results("J1")[0].1, RcptResult::TempFail(451, t) if t.contains("lost connection after MAIL FROM"))
    );
}

#[test]
fn pipelined_batch_with_mixed_results_and_8bitmime() {
    let script = format!(
        "{GREETING}{EHLO_PIPE}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <c@example.net>: no such user\r\n\
450 4.2.0 <d@example.net>: greylisted\r\n354 go\r\n250 2.0.0 queued\r\n221 Bye\r\n"
    );
    let mut j = job(
        "J1",
        "a@example.org",
        &["b@example.net", "c@example.net", "d@example.net"],
        6,
    );
    j.eight_bit = true;
    let r = run_simple(
        config(TlsPolicy::None),
        vec![j],
        &[("J1", "caf\u{e9}\r\n".as_bytes())],
        script.as_bytes(),
    );
    assert!(
        r.text()
            .starts_with("EHLO client.example.org\r\nMAIL FROM:<a@example.org> BODY=8BITMIME\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.results("J1"),
        &[
            ("b@example.net".to_string(), delivered("2.0.0 queued")),
            (
                "c@example.net".to_string(),
                RcptResult::PermFail(550, "5.1.1 <c@example.net>: no such user".into())
            ),
            (
                "d@example.net".to_string(),
                RcptResult::TempFail(450, "4.2.0 <d@example.net>: greylisted".into())
            ),
        ]
    );
    assert!(r.text().ends_with("caf\u{e9}\r\n.\r\nQUIT\r\n"));
}

#[test]
fn eight_bit_without_8bitmime_is_sent_as_it_is() {
    let script =
        format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n");
    let mut j = job("J1", "a@example.org", &["b@example.net"], 6);
    j.eight_bit = true;
    let r = run_simple(
        config(TlsPolicy::None),
        vec![j],
        &[("J1", "caf\u{e9}\r\n".as_bytes())],
        script.as_bytes(),
    );
    assert!(r.text().contains("MAIL FROM:<a@example.org> SIZE=6\r\n"));
    assert!(!r.text().contains("BODY="));
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));
}

#[test]
fn bdat_chunks_when_chunking_is_offered() {
    let msg: Vec<u8> = (0..2 * BODY_CHUNK + 1000)
        .map(|i| {
            if i % 80 == 0 {
                b'.'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let script = format!(
        "{GREETING}{EHLO_CHUNKING}250 Ok\r\n250 Ok\r\n250 2.0.0 chunk 1\r\n250 2.0.0 chunk 2\r\n\
250 2.0.0 Ok: queued as Q9\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net"],
            msg.len() as u64,
        )],
        &[("J1", &msg)],
        script.as_bytes(),
    );
    let mut expected = format!(
        "EHLO client.example.org\r\nMAIL FROM:<a@example.org> SIZE={}\r\nRCPT TO:<b@example.net>\r\n",
        msg.len()
    )
    .into_bytes();
    for (i, chunk) in msg.chunks(BODY_CHUNK).enumerate() {
        let last = if i == 2 { " LAST" } else { "" };
        expected.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        expected.extend_from_slice(chunk);
    }
    expected.extend_from_slice(b"QUIT\r\n");
    assert!(r.written == expected, "{}", r.text());
    assert_eq!(r.results("J1")[0].1, delivered("2.0.0 Ok: queued as Q9"));
    assert!(r.max_buffered < 3 * BODY_CHUNK, "{}", r.max_buffered);

    // An empty message is one `BDAT 0 LAST`; a refused chunk fails the job and resets.
    let script = format!(
        "{GREETING}{EHLO_CHUNKING}250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n\
552 5.3.4 too much\r\n250 reset\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![
            job("E", "a@example.org", &["b@example.net"], 0),
            job("J2", "a@example.org", &["b@example.net"], msg.len() as u64),
        ],
        &[("E", b""), ("J2", &msg)],
        script.as_bytes(),
    );
    assert!(
        r.text()
            .contains("RCPT TO:<b@example.net>\r\nBDAT 0 LAST\r\nMAIL")
    );
    assert_eq!(r.results("E")[0].1, delivered("Ok"));
    assert_eq!(
        r.results("J2")[0].1,
        RcptResult::PermFail(552, "5.3.4 too much".into())
    );
    assert!(r.text().ends_with("RSET\r\nQUIT\r\n"), "{}", r.text());
    assert_eq!(r.text().matches("BDAT").count(), 2);
}

#[test]
fn two_jobs_on_one_connection_each_reported_before_the_next() {
    let script = format!(
        "{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok: first\r\n\
250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok: second\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![
            job("J1", "a@example.org", &["b@example.net"], 5),
            job("J2", "c@example.org", &["d@example.net"], 5),
        ],
        &[("J1", b"one\r\n"), ("J2", b"two\r\n")],
        script.as_bytes(),
    );
    assert_eq!(r.reports.len(), 2);
    assert_eq!(r.reports[0].0, "J1");
    assert_eq!(r.results("J1")[0].1, delivered("Ok: first"));
    assert_eq!(r.results("J2")[0].1, delivered("Ok: second"));
    let before_first = String::from_utf8_lossy(&r.written[..r.reports[0].2]).into_owned();
    assert!(before_first.ends_with("one\r\n.\r\n") && !before_first.contains("c@example.org"));
    // A clean transaction needs no RSET.
    assert!(!r.text().contains("RSET"));
    assert_eq!(r.text().matches("MAIL FROM").count(), 2);
}

#[test]
fn all_recipients_refused_means_rset_and_no_data() {
    let script = format!(
        "{GREETING}{EHLO_PLAIN}250 Ok\r\n550 5.1.1 no\r\n551 5.1.6 moved\r\n250 2.0.0 reset\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            5,
        )],
        &[("J1", b"one\r\n")],
        script.as_bytes(),
    );
    assert_eq!(
        r.lines()[3..],
        ["RCPT TO:<c@example.net>", "RSET", "QUIT", ""]
    );
    assert!(r.reads.is_empty());
    assert_eq!(
        r.results("J1"),
        &[
            (
                "b@example.net".to_string(),
                RcptResult::PermFail(550, "5.1.1 no".into())
            ),
            (
                "c@example.net".to_string(),
                RcptResult::PermFail(551, "5.1.6 moved".into())
            ),
        ]
    );

    // Pipelined: DATA is refused (no valid recipients), then RSET.
    let script = format!(
        "{GREETING}{EHLO_PIPE}250 Ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"one\r\n")],
        script.as_bytes(),
    );
    assert!(
        r.text().ends_with("DATA\r\nRSET\r\nQUIT\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(
        r.results("J1")[0].1,
        RcptResult::PermFail(550, "5.1.1 no".into())
    );

    // A server that answers 354 anyway gets an empty message, and its reply is ignored.
    let script = format!(
        "{GREETING}{EHLO_PIPE}250 Ok\r\n550 5.1.1 no\r\n354 go\r\n554 no recipients\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"one\r\n")],
        script.as_bytes(),
    );
    assert!(
        r.text().ends_with("DATA\r\n.\r\nRSET\r\nQUIT\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(r.reason, CloseReason::Quit);
}

#[test]
fn mail_refused_applies_to_every_recipient() {
    let script = format!(
        "{GREETING}{EHLO_PIPE}451 4.3.0 try later\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n\
503 5.5.1 no MAIL\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            5,
        )],
        &[("J1", b"one\r\n")],
        script.as_bytes(),
    );
    for (_, res) in r.results("J1") {
        assert_eq!(res, &RcptResult::TempFail(451, "4.3.0 try later".into()));
    }
    assert!(r.text().ends_with("DATA\r\nQUIT\r\n"), "{}", r.text());
}

#[test]
fn too_big_for_the_server_fails_without_sending() {
    let script =
        format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![
            job(
                "BIG",
                "a@example.org",
                &["b@example.net", "c@example.net"],
                100_001,
            ),
            job("SMALL", "a@example.org", &["b@example.net"], 5),
        ],
        &[("BIG", b"x\r\n"), ("SMALL", b"small\r\n")],
        script.as_bytes(),
    );
    for (_, res) in r.results("BIG") {
        assert!(
            matches!(res, RcptResult::PermFail(552, t) if t.starts_with("5.3.4 ") && t.contains("100000")),
            "{res:?}"
        );
    }
    assert_eq!(r.results("SMALL")[0].1, delivered("Ok"));
    assert_eq!(r.text().matches("MAIL FROM").count(), 1);
    assert!(!r.reads.iter().any(|(id, _, _)| id == "BIG"));
}

#[test]
fn smtputf8_needed_but_not_offered() {
    let script = format!("{GREETING}{EHLO_PLAIN}221 Bye\r\n");
    let mut j = job("U", "a@example.org", &["b@example.net"], 5);
    j.smtputf8 = true;
    let j2 = job("U2", "a@example.org", &["j\u{f6}rg@example.net"], 5);
    let r = run_simple(
        config(TlsPolicy::None),
        vec![j, j2],
        &[("U", b"x\r\n"), ("U2", b"x\r\n")],
        script.as_bytes(),
    );
    for id in ["U", "U2"] {
        assert!(
            matches!(&r.results(id)[0].1, RcptResult::PermFail(553, t) if t.starts_with("5.6.7 ")),
            "{:?}",
            r.results(id)
        );
    }
    assert_eq!(r.text(), "EHLO client.example.org\r\nQUIT\r\n");

    // Offered: the MAIL command carries SMTPUTF8.
    let script = format!(
        "{GREETING}250-mx\r\n250 SMTPUTF8\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("U2", "a@example.org", &["j\u{f6}rg@example.net"], 5)],
        &[("U2", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(
        r.text()
            .contains("MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<j\u{f6}rg@example.net>\r\n")
    );
    assert_eq!(r.results("U2")[0].1, delivered("Ok"));
}

#[test]
fn starttls_opportunistic_resets_capabilities() {
    // Before TLS the server claims a 1000-octet limit; after TLS it has none.
    let pre =
        format!("{GREETING}250-mx\r\n250-SIZE 1000\r\n250 STARTTLS\r\n220 2.0.0 go ahead\r\n");
    let script = format!(
        "{pre}250-mx\r\n250 8BITMIME\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run(
        config(TlsPolicy::Opportunistic),
        vec![job("J1", "a@example.org", &["b@example.net"], 5000)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
        // Plaintext read together with the 220 would be thrown away, as it must be.
        &[pre.len()],
        Duration::ZERO,
    );
    assert_eq!(r.tls_at.len(), 1);
    let before = String::from_utf8_lossy(&r.written[..r.tls_at[0]]).into_owned();
    assert_eq!(before, "EHLO client.example.org\r\nSTARTTLS\r\n");
    assert!(
        r.text()[before.len()..]
            .starts_with("EHLO client.example.org\r\nMAIL FROM:<a@example.org>\r\n"),
        "{}",
        r.text()
    );
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));

    // A refused STARTTLS: go on in plaintext.
    let script = format!(
        "{GREETING}250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        config(TlsPolicy::Opportunistic),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(r.tls_at.is_empty());
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));
}

#[test]
fn starttls_required_but_not_offered() {
    let script = format!("{GREETING}{EHLO_PIPE}221 Bye\r\n");
    let r = run_simple(
        config(TlsPolicy::Required),
        vec![
            job(
                "J1",
                "a@example.org",
                &["b@example.net", "c@example.net"],
                5,
            ),
            job("J2", "a@example.org", &["d@example.net"], 5),
        ],
        &[("J1", b"x\r\n"), ("J2", b"x\r\n")],
        script.as_bytes(),
    );
    assert_eq!(r.text(), "EHLO client.example.org\r\nQUIT\r\n");
    assert_eq!(r.reports.len(), 2);
    for (_, results, _) in &r.reports {
        for (_, res) in results {
            assert!(
                matches!(res, RcptResult::TempFail(451, t) if t.starts_with("4.7.4 ")),
                "{res:?}"
            );
        }
    }
    // A failed handshake (the runtime reports EOF instead of tls_established).
    let script = format!("{GREETING}250-mx\r\n250 STARTTLS\r\n220 go ahead\r\n");
    let start = Instant::now();
    let mut pump = Pump::new(Box::new(SmtpClient::new(
        Arc::new(config(TlsPolicy::Required)),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        start,
    )));
    let mut fed = false;
    let mut report = None;
    loop {
        match pump.next_action() {
            Action::Write => {
                let n = pump.output().len();
                pump.wrote(start, n);
            }
            Action::Read { .. } if !fed => {
                fed = true;
                let b = script.as_bytes();
                pump.read_buffer()[..b.len()].copy_from_slice(b);
                pump.received(start, b.len());
            }
            Action::Read { .. } => panic!("reads after the handshake failed"),
            Action::StartTls => pump.eof(start),
            Action::Execute(id, Effect::Report { results, .. }) => {
                report = Some(results);
                pump.complete(start, id, Completion::Done);
            }
            Action::Execute(_, e) => panic!("{e:?}"),
            Action::Wait { .. } => panic!("wait"),
            Action::Close(reason) => {
                assert_eq!(reason, CloseReason::PeerClosed);
                break;
            }
        }
    }
    let report = report.expect("reported");
    assert!(matches!(&report[0].1, RcptResult::TempFail(451, t) if t.contains("TLS handshake")));
}

#[test]
fn auth_plain_to_a_smarthost() {
    let mut c = config(TlsPolicy::None);
    c.auth = Some(("alice".into(), Secret::new("pw".into())));
    let script = format!(
        "{GREETING}250-smarthost\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n235 2.7.0 ok\r\n\
250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        c.clone(),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    // base64("\0alice\0pw")
    assert!(
        r.text()
            .starts_with("EHLO client.example.org\r\nAUTH PLAIN AGFsaWNlAHB3\r\nMAIL FROM:"),
        "{}",
        r.text()
    );
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));

    // AUTH LOGIN when PLAIN is not offered.
    let script = format!(
        "{GREETING}250-smarthost\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n\
235 ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n"
    );
    let r = run_simple(
        c.clone(),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(
        r.text()
            .starts_with("EHLO client.example.org\r\nAUTH LOGIN\r\nYWxpY2U=\r\ncHc=\r\nMAIL"),
        "{}",
        r.text()
    );
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));

    // Refused credentials: every job fails permanently, and nothing is sent.
    let script = format!(
        "{GREETING}250-smarthost\r\n250 AUTH PLAIN\r\n535 5.7.8 bad credentials\r\n221 Bye\r\n"
    );
    let r = run_simple(
        c.clone(),
        vec![
            job("J1", "a@example.org", &["b@example.net"], 5),
            job("J2", "a@example.org", &["c@example.net"], 5),
        ],
        &[("J1", b"x\r\n"), ("J2", b"x\r\n")],
        script.as_bytes(),
    );
    for id in ["J1", "J2"] {
        assert!(
            matches!(&r.results(id)[0].1, RcptResult::PermFail(535, t) if t.starts_with("authentication failed")),
            "{:?}",
            r.results(id)
        );
    }
    assert!(!r.text().contains("MAIL"));
    assert!(r.text().ends_with("QUIT\r\n"));

    // Opportunistic TLS without STARTTLS at the server: the password is never sent in clear.
    c.tls = TlsPolicy::Opportunistic;
    let script = format!("{GREETING}250-smarthost\r\n250 AUTH PLAIN\r\n221 Bye\r\n");
    let r = run_simple(
        c,
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert_eq!(r.text(), "EHLO client.example.org\r\nQUIT\r\n");
    assert!(matches!(
        &r.results("J1")[0].1,
        RcptResult::TempFail(451, _)
    ));
}

#[test]
fn greeting_refusals_and_helo_fallback() {
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        b"554 5.7.1 go away\r\n221 Bye\r\n",
    );
    assert_eq!(r.text(), "QUIT\r\n");
    assert_eq!(
        r.results("J1")[0].1,
        RcptResult::PermFail(554, "5.7.1 go away".into())
    );
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        b"421 4.3.2 busy\r\n",
    );
    assert_eq!(r.text(), "");
    assert_eq!(
        r.results("J1")[0].1,
        RcptResult::TempFail(421, "4.3.2 busy".into())
    );

    let script =
        "220 old\r\n502 what\r\n250 old\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n";
    let mut j = job("J1", "a@example.org", &["b@example.net"], 5);
    j.eight_bit = true;
    let r = run_simple(
        config(TlsPolicy::None),
        vec![j],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(
        r.text().starts_with(
            "EHLO client.example.org\r\nHELO client.example.org\r\nMAIL FROM:<a@example.org>\r\n"
        ),
        "{}",
        r.text()
    );
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));
}

#[test]
fn a_421_mid_session_fails_everything_left() {
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n421 4.4.2 mx closing\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![
            job("J1", "a@example.org", &["b@example.net"], 5),
            job("J2", "a@example.org", &["c@example.net"], 5),
        ],
        &[("J1", b"x\r\n"), ("J2", b"x\r\n")],
        script.as_bytes(),
    );
    assert_eq!(r.reports.len(), 2);
    for id in ["J1", "J2"] {
        assert_eq!(
            r.results(id)[0].1,
            RcptResult::TempFail(421, "4.4.2 mx closing".into())
        );
    }
    assert!(!r.text().contains("QUIT"));
    assert_eq!(r.reason, CloseReason::PeerClosed);
}

#[test]
fn connection_lost_after_the_message() {
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n550 5.1.1 no\r\n354 go\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            5,
        )],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(r.text().ends_with("x\r\n.\r\n"));
    assert_eq!(
        r.results("J1"),
        &[
            (
                "b@example.net".to_string(),
                RcptResult::TempFail(451, "4.4.2 lost connection after end of data".into())
            ),
            // A definite refusal stays what it was.
            (
                "c@example.net".to_string(),
                RcptResult::PermFail(550, "5.1.1 no".into())
            ),
        ]
    );
    assert_eq!(r.reason, CloseReason::PeerClosed);
}

#[test]
fn timeout_waiting_for_a_reply() {
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n");
    let r = run(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
        &[],
        Duration::from_secs(3600),
    );
    assert_eq!(
        r.results("J1")[0].1,
        RcptResult::TempFail(451, "4.4.2 timeout after RCPT TO".into())
    );
    assert_eq!(r.reason, CloseReason::Timeout);
    assert_eq!(r.elapsed, Duration::from_secs(300));
    assert!(r.text().ends_with("RCPT TO:<b@example.net>\r\n"));

    // DATA's 354 has two minutes, the end of data ten.
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n");
    let r = run(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
        &[],
        Duration::from_secs(3600),
    );
    assert_eq!(r.elapsed, Duration::from_secs(120));
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n");
    let r = run(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
        &[],
        Duration::from_secs(3600),
    );
    assert_eq!(r.elapsed, Duration::from_secs(600));
    assert!(
        matches!(&r.results("J1")[0].1, RcptResult::TempFail(451, t) if t == "4.4.2 timeout after end of data")
    );

    // A silent server after QUIT: closed after the short QUIT timeout, jobs already reported.
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n");
    let r = run(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
        &[],
        Duration::from_secs(3600),
    );
    assert_eq!(r.reason, CloseReason::Quit);
    assert_eq!(r.elapsed, Duration::from_secs(10));
    assert_eq!(r.results("J1")[0].1, delivered("Ok"));
}

#[test]
fn garbage_and_overlong_replies_end_the_connection() {
    let script = format!("{GREETING}{EHLO_PLAIN}250 Ok\r\nHTTP/1.1 400 Bad Request\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(
        matches!(&r.results("J1")[0].1, RcptResult::TempFail(451, t) if t == "4.5.0 malformed reply after RCPT TO")
    );
    assert_eq!(r.reason, CloseReason::TooManyErrors);
    let long = format!("{GREETING}250-{}\r\n", "x".repeat(100_000));
    let r = run_simple(
        config(TlsPolicy::None),
        vec![job("J1", "a@example.org", &["b@example.net"], 5)],
        &[("J1", b"x\r\n")],
        long.as_bytes(),
    );
    assert!(
        matches!(&r.results("J1")[0].1, RcptResult::TempFail(451, t) if t.contains("too long"))
    );
    assert!(r.max_buffered < 40_000, "{}", r.max_buffered);
}

#[test]
fn envelope_injection_is_refused() {
    let script =
        format!("{GREETING}{EHLO_PLAIN}250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n221 Bye\r\n");
    let r = run_simple(
        config(TlsPolicy::None),
        vec![
            job("BAD", "a@example.org>\r\nRSET", &["b@example.net"], 5),
            job(
                "J",
                "a@example.org",
                &["x@example.net>\r\nDATA", "b@example.net"],
                5,
            ),
        ],
        &[("BAD", b"x\r\n"), ("J", b"x\r\n")],
        script.as_bytes(),
    );
    assert!(matches!(
        &r.results("BAD")[0].1,
        RcptResult::PermFail(553, _)
    ));
    assert!(matches!(&r.results("J")[0].1, RcptResult::PermFail(553, _)));
    assert_eq!(r.results("J")[1].1, delivered("Ok"));
    assert_eq!(r.text().matches("MAIL FROM").count(), 1);
    assert_eq!(r.text().matches("RCPT TO").count(), 1);
}

/// A transcript with multiline replies, pipelining, mixed results and two jobs.
fn split_script() -> String {
    format!(
        "220-mx.example.net ESMTP\r\n220-second line\r\n220 third\r\n{EHLO_PIPE}\
250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 2.1.5 really\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n\
354 go\r\n250-2.0.0 queued\r\n250 2.0.0 as X\r\n\
250 Ok\r\n250 Ok\r\n354 go\r\n451-4.3.0 try\r\n451 4.3.0 later\r\n221 Bye\r\n"
    )
}

fn split_jobs() -> Vec<OutboundJob> {
    vec![
        job(
            "J1",
            "a@example.org",
            &["b@example.net", "c@example.net"],
            5,
        ),
        job("J2", "a@example.org", &["d@example.net"], 5),
    ]
}

fn split_run(cuts: &[usize]) -> (Vec<u8>, Vec<(String, Results)>) {
    let r = run(
        config(TlsPolicy::None),
        split_jobs(),
        &[("J1", b"one\r\n"), ("J2", b"two\r\n")],
        split_script().as_bytes(),
        cuts,
        Duration::ZERO,
    );
    let reports = r
        .reports
        .into_iter()
        .map(|(id, res, _)| (id, res))
        .collect();
    (r.written, reports)
}

#[test]
fn replies_split_at_every_byte_boundary() {
    let (written, reports) = split_run(&[]);
    assert_eq!(
        reports[0].1,
        [
            (
                "b@example.net".to_string(),
                delivered("2.0.0 queued 2.0.0 as X")
            ),
            (
                "c@example.net".to_string(),
                RcptResult::PermFail(550, "5.1.1 no 5.1.1 such user".into())
            )
        ]
    );
    assert_eq!(
        reports[1].1[0].1,
        RcptResult::TempFail(451, "4.3.0 try 4.3.0 later".into())
    );
    for cut in 0..=split_script().len() {
        assert_eq!(
            split_run(&[cut]),
            (written.clone(), reports.clone()),
            "cut at {cut}"
        );
    }
    let every: Vec<usize> = (0..=split_script().len()).collect();
    assert_eq!(split_run(&every), (written, reports), "one byte at a time");
}

proptest! {
    #[test]
    fn replies_split_anywhere_give_the_same_results(
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        prop_assert_eq!(split_run(&cuts), split_run(&[]));
    }

    /// Whatever the server sends, in whatever pieces, the client never panics, closes, and
    /// reports every job exactly once with one outcome per recipient.
    #[test]
    fn arbitrary_replies_never_panic_and_every_job_is_reported(
        tokens in proptest::collection::vec(prop_oneof![
            Just(b"220 hi\r\n".to_vec()),
            Just(b"250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-STARTTLS\r\n250-SIZE 50\r\n250 AUTH PLAIN\r\n".to_vec()),
            Just(b"250 Ok\r\n".to_vec()),
            Just(b"250-".to_vec()),
            Just(b"354 go\r\n".to_vec()),
            Just(b"334 \r\n".to_vec()),
            Just(b"235 ok\r\n".to_vec()),
            Just(b"220 go\r\n".to_vec()),
            Just(b"421 bye\r\n".to_vec()),
            Just(b"450 later\r\n".to_vec()),
            Just(b"550 no\r\n".to_vec()),
            Just(b"502 what\r\n".to_vec()),
            Just(b"221 bye\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ], 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        patience in prop_oneof![Just(0u64), Just(100_000u64)],
        tls in prop_oneof![Just(TlsPolicy::None), Just(TlsPolicy::Opportunistic), Just(TlsPolicy::Required)],
        auth in any::<bool>(),
    ) {
        let script: Vec<u8> = tokens.concat();
        let mut c = config(tls);
        if auth {
            c.auth = Some(("u".into(), Secret::new("p".into())));
        }
        let mut utf8 = job("J3", "a@example.org", &["z@example.net"], 5);
        utf8.smtputf8 = true;
        let jobs = vec![
            job("J1", "a@example.org", &["b@example.net", "c@example.net"], 5),
            job("J2", "", &["d@example.net"], 500),
            utf8,
        ];
        let r = run(
            c,
            jobs.clone(),
            &[("J1", b"one\r\n"), ("J2", b"two\r\n"), ("J3", b"three\r\n")],
            &script,
            &cuts,
            Duration::from_secs(patience),
        );
        let ids: Vec<&str> = r.reports.iter().map(|r| r.0.as_str()).collect();
        prop_assert_eq!(ids, ["J1", "J2", "J3"]);
        for (j, (_, results, _)) in jobs.iter().zip(&r.reports) {
            let rcpts: Vec<&String> = results.iter().map(|(r, _)| r).collect();
            prop_assert_eq!(rcpts, j.recipients.iter().collect::<Vec<_>>());
        }
        prop_assert!(r.max_buffered < Pump::MAX_BUFFERED);
    }
}

// ---- Cross-check: the client delivering to Petrel's own server, both in memory. ----

#[derive(Debug)]
struct FixedClock;
impl WallClock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        1_795_525_920
    }
}

/// The server's fake store: alice is the one user; messages kept in memory.
#[derive(Default)]
struct ServerStore {
    open: BTreeMap<u64, Vec<u8>>,
    delivered: Vec<(Vec<String>, Vec<u8>)>,
    rcpts: Vec<String>,
    next: u64,
}

impl ServerStore {
    fn execute(&mut self, effect: Effect) -> Completion {
        match effect {
            Effect::LookupRecipient { address } => {
                Completion::Recipient(if address.local == "alice" {
                    RecipientOutcome::Local(UserId("alice@example.test".into()))
                } else {
                    RecipientOutcome::Unknown
                })
            }
            Effect::BeginMessage { envelope, .. } => {
                self.next += 1;
                self.rcpts = envelope
                    .recipients
                    .iter()
                    .map(|r| r.address.to_string())
                    .collect();
                self.open.insert(self.next, Vec::new());
                Completion::Began(TxId(self.next))
            }
            Effect::AppendChunk { tx, bytes } => {
                self.open
                    .get_mut(&tx.0)
                    .expect("open")
                    .extend_from_slice(&bytes);
                Completion::Appended
            }
            Effect::Commit { tx, .. } => {
                let m = self.open.remove(&tx.0).expect("open");
                self.delivered.push((std::mem::take(&mut self.rcpts), m));
                Completion::Durable(Receipt::durable(tx))
            }
            Effect::Abort { tx } => {
                self.open.remove(&tx.0);
                Completion::Aborted
            }
            other => panic!("the server never asks {other:?}"),
        }
    }
}

/// One side of the in-memory connection: steps `pump` until it wants to read; bytes it writes
/// go to `to_peer`. Returns false once it has closed.
fn step_side(
    pump: &mut Pump,
    now: Instant,
    to_peer: &mut Vec<u8>,
    inbox: &mut Vec<u8>,
    peer_closed: bool,
    log: &mut Vec<u8>,
    execute: &mut dyn FnMut(Effect) -> Completion,
) -> bool {
    loop {
        match pump.next_action() {
            Action::Write => {
                to_peer.extend_from_slice(pump.output());
                log.extend_from_slice(pump.output());
                let n = pump.output().len();
                pump.wrote(now, n);
            }
            Action::Execute(id, effect) => {
                let answer = execute(effect);
                pump.complete(now, id, answer);
            }
            Action::StartTls => pump.tls_established(now, tls_info()),
            Action::Read { .. } if !inbox.is_empty() => {
                let buf = pump.read_buffer();
                let n = buf.len().min(inbox.len());
                buf[..n].copy_from_slice(&inbox[..n]);
                inbox.drain(..n);
                pump.received(now, n);
            }
            Action::Read { .. } if peer_closed => pump.eof(now),
            Action::Read { .. } => return true,
            Action::Wait { .. } => return true,
            Action::Close(_) => return false,
        }
    }
}

#[test]
fn delivers_to_petrels_own_server_byte_for_byte() {
    let start = Instant::now();
    let mut server_config = SmtpConfig::new(
        "mx.example.test",
        Role::Inbound,
        &["example.test".to_string()],
        Arc::new(FixedClock),
    );
    server_config.chunk_size = 1000;
    let peer = PeerInfo {
        ip: "192.0.2.1".into(),
        loopback: false,
        tls: None,
        session_id: "S1".into(),
    };
    let mut server = Pump::new(Box::new(SmtpSession::new(
        Arc::new(server_config),
        peer,
        start,
    )));
    // A message with dot lines, a bare LF and 8-bit bytes, larger than one chunk.
    let mut message = b"From: a@example.org\r\nSubject: cross-check\r\n\r\n".to_vec();
    for i in 0..4000 {
        message.extend_from_slice(format!(".{i} caf\u{e9} .\r\n").as_bytes());
    }
    message.extend_from_slice(b"bare\nLF\r\n.\r\n");
    let second = b"Subject: two\r\n\r\n.\r\n..\r\nend\r\n".to_vec();
    let mut j1 = job(
        "J1",
        "a@example.org",
        &["alice@example.test", "nobody@example.test"],
        message.len() as u64,
    );
    j1.eight_bit = true;
    let j2 = job("J2", "", &["alice@example.test"], second.len() as u64);
    let messages: BTreeMap<&str, Vec<u8>> =
        BTreeMap::from([("J1", message.clone()), ("J2", second.clone())]);
    let mut client = Pump::new(Box::new(SmtpClient::new(
        Arc::new(config(TlsPolicy::Opportunistic)),
        vec![j1, j2],
        start,
    )));

    let mut store = ServerStore::default();
    let mut reports = Vec::new();
    let (mut client_log, mut server_log) = (Vec::new(), Vec::new());
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let (mut client_open, mut server_open) = (true, true);
    for _ in 0..100_000 {
        if !client_open && !server_open {
            break;
        }
        if client_open {
            client_open = step_side(
                &mut client,
                start,
                &mut c2s,
                &mut s2c,
                !server_open,
                &mut client_log,
                &mut |e| match e {
                    Effect::ReadQueued { id, offset, max } => {
                        let m = &messages[id.as_str()];
                        let from = (offset as usize).min(m.len());
                        Completion::Data(m[from..(from + max).min(m.len())].to_vec())
                    }
                    Effect::Report { id, results } => {
                        reports.push((id, results));
                        Completion::Done
                    }
                    other => panic!("{other:?}"),
                },
            );
        }
        if server_open {
            let mut exec = |e| store.execute(e);
            server_open = step_side(
                &mut server,
                start,
                &mut s2c,
                &mut c2s,
                !client_open,
                &mut server_log,
                &mut exec,
            );
        }
    }
    assert!(!client_open && !server_open, "both sides closed");
    // Both sides went through STARTTLS, and the client said EHLO again over "TLS".
    let sent = String::from_utf8_lossy(&client_log);
    assert!(
        sent.starts_with("EHLO client.example.org\r\nSTARTTLS\r\nEHLO client.example.org\r\n"),
        "{sent:.300}"
    );
    assert!(sent.contains(" LAST\r\n") && sent.ends_with("QUIT\r\n"));
    assert!(String::from_utf8_lossy(&server_log).ends_with("221 2.0.0 Bye\r\n"));
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].0, "J1");
    assert!(
        matches!(&reports[0].1[0], (r, RcptResult::Delivered(t)) if r == "alice@example.test" && t.contains("queued as")),
        "{:?}",
        reports[0]
    );
    assert!(
        matches!(&reports[0].1[1], (r, RcptResult::PermFail(550, t)) if r == "nobody@example.test" && t.starts_with("5.1.1")),
        "{:?}",
        reports[0]
    );
    assert!(matches!(&reports[1].1[0].1, RcptResult::Delivered(_)));
    assert_eq!(store.delivered.len(), 2);
    assert_eq!(store.delivered[0].0, ["alice@example.test"]);
    assert!(store.delivered[0].1 == message, "first message differs");
    assert!(store.delivered[1].1 == second, "second message differs");
}
