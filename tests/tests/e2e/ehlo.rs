//! Greeting, EHLO keywords per listener, and the basic command sequence rules.

use std::time::Duration;

use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, python};

use crate::{fail, printed};

both_runtimes!(
    greeting_and_ehlo_on_smtp,
    ehlo_on_submission,
    ehlo_on_submissions,
    command_sequence_rules
);

/// The keywords every listener advertises.
const COMMON: [&str; 6] = [
    "PIPELINING",
    "8BITMIME",
    "ENHANCEDSTATUSCODES",
    "SMTPUTF8",
    "CHUNKING",
    "SIZE",
];

fn check_common(c: &SmtpConn, ehlo: &petrel_tests::Reply, size: u64) {
    if !ehlo.first().starts_with("mail.test.example") {
        c.fail(format!(
            "EHLO reply's first line should name mail.test.example: {:?}",
            ehlo.first()
        ));
    }
    for kw in COMMON {
        if ehlo.keyword(kw).is_none() {
            c.fail(format!("EHLO does not advertise {kw}"));
        }
    }
    let size_line = ehlo.keyword("SIZE").unwrap_or_default();
    if size_line != format!("SIZE {size}") {
        c.fail(format!("expected `SIZE {size}`, got {size_line:?}"));
    }
}

fn greeting_and_ehlo_on_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::connect(s.port(Listener::Smtp));
    let g = c.expect_reply("220");
    if !g.first().starts_with("mail.test.example ESMTP Petrel") {
        c.fail(format!(
            "greeting should be `220 mail.test.example ESMTP Petrel`, got {:?}",
            g.text()
        ));
    }
    let e = c.expect("EHLO client.example", "250");
    check_common(&c, &e, 1_048_576);
    if e.keyword("STARTTLS").is_none() {
        c.fail("smtp listener does not advertise STARTTLS");
    }
    if e.keyword("AUTH").is_some() {
        c.fail("smtp (inbound) listener must never advertise AUTH");
    }
    c.quit();
}

fn ehlo_on_submission(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            max_message_size: 2_000_000,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::greeted(s.port(Listener::Submission));
    let e = c.expect("EHLO client.example", "250");
    check_common(&c, &e, 2_000_000);
    if e.keyword("STARTTLS").is_none() {
        c.fail("submission does not advertise STARTTLS before TLS");
    }
    if e.keyword("AUTH").is_some() {
        c.fail("submission advertises AUTH before TLS");
    }
    c.quit();
    let out = python(
        "ehlo_features.py",
        sargs![
            "--mode",
            "starttls",
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display()
        ],
    );
    check_features_after_tls(&s, &out, 2_000_000);
}

fn ehlo_on_submissions(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let out = python(
        "ehlo_features.py",
        sargs![
            "--mode",
            "ssl",
            "--port",
            s.port(Listener::Submissions),
            "--cafile",
            s.cafile().display()
        ],
    );
    check_features_after_tls(&s, &out, 1_048_576);
}

/// After TLS (either kind): AUTH PLAIN LOGIN, the common keywords, no STARTTLS, and STARTTLS
/// inside TLS refused with a 5xx.
fn check_features_after_tls(s: &Server, out: &str, size: u64) {
    let auth = printed(out, "FEATURE AUTH")
        .unwrap_or_else(|| fail(s, format!("no AUTH after TLS:\n{out}")));
    let mechs: Vec<&str> = auth.split_whitespace().collect();
    if !mechs.contains(&"PLAIN") || !mechs.contains(&"LOGIN") {
        fail(
            s,
            format!("AUTH after TLS should offer PLAIN and LOGIN, offers {auth:?}"),
        );
    }
    for kw in COMMON {
        if printed(out, &format!("FEATURE {kw}")).is_none() {
            fail(s, format!("{kw} not advertised after TLS:\n{out}"));
        }
    }
    if printed(out, "FEATURE SIZE") != Some(&size.to_string()) {
        fail(s, format!("SIZE after TLS should be {size}:\n{out}"));
    }
    if printed(out, "FEATURE STARTTLS").is_some() {
        fail(s, format!("STARTTLS advertised inside TLS:\n{out}"));
    }
    let tls = printed(out, "TLS").unwrap_or_default();
    if !tls.starts_with("TLSv1.2") && !tls.starts_with("TLSv1.3") {
        fail(s, format!("TLS version should be 1.2 or 1.3, is {tls:?}"));
    }
    let again = printed(out, "STARTTLS-AGAIN").unwrap_or_default();
    if !again.starts_with('5') {
        fail(
            s,
            format!("STARTTLS inside TLS should get a 5xx, got {again:?}"),
        );
    }
}

fn command_sequence_rules(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::greeted(s.port(Listener::Smtp));
    // RFC 5321 4.1.4: a session needs HELO/EHLO before MAIL.
    c.expect("MAIL FROM:<sender@remote.example>", "503");
    let h = c.expect("HELO client.example", "250");
    if !h.first().starts_with("mail.test.example") {
        c.fail("HELO reply should start with the hostname");
    }
    c.expect("RCPT TO:<alice@example.test>", "503");
    c.expect("DATA", "503");
    c.expect("EHLO", "501");
    c.expect("HELO", "501");
    c.expect("FOOBAR baz", "500");
    c.expect("NOOP", "250");
    c.expect("NOOP with an argument", "250");
    c.expect("RSET", "250");
    let v = c.cmd("VRFY alice@example.test");
    if ![250, 251, 252, 502, 550, 553].contains(&v.code) {
        c.fail(format!(
            "VRFY got {}, expected one of 250/251/252/502/550/553",
            v.code
        ));
    }
    let help = c.cmd("HELP");
    if ![211, 214, 502].contains(&help.code) {
        c.fail(format!("HELP got {}, expected 214 (or 211/502)", help.code));
    }
    // lower-case commands, parameters of the advertised extensions
    c.expect("ehlo client.example", "250");
    c.expect(
        "mail from:<sender@remote.example> SIZE=1000 BODY=8BITMIME",
        "250",
    );
    c.expect("MAIL FROM:<other@remote.example>", "503");
    c.expect("rcpt to:<alice@example.test>", "250");
    c.expect("RSET", "250");
    c.expect("RCPT TO:<alice@example.test>", "503");
    c.expect("MAIL FROM:<sender@remote.example> FOO=BAR", "555");
    c.expect("MAIL FROM:<sender@remote.example", "501");
    c.expect("MAIL FROM:<sender@@remote.example>", "501|553");
    c.expect("MAIL FROM:<sender@remote.example> BODY=7BIT", "250");
    c.expect("RSET", "250");
    c.expect("RCPT TO:<alice@example.test>", "503");
    // a DATA with no accepted recipient
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<nobody@example.test>", "550");
    c.expect("DATA", "503|554");
    c.expect("RSET", "250");
    // EHLO resets a transaction (RFC 5321 4.1.4)
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("EHLO client.example", "250");
    c.expect("DATA", "503");
    // a bare CR does not end a command: one reply, and QUIT was not executed
    c.send(b"NOOP\rQUIT\r\n");
    let r = c.reply();
    if r.code == 221 {
        c.fail("a bare CR was taken as the end of a command");
    }
    c.expect("NOOP", "250");
    // nothing after QUIT is answered
    c.send(b"QUIT\r\nNOOP\r\n");
    c.expect_reply("221");
    c.expect_closed(Duration::from_secs(5));
    if !s.new_messages("alice@example.test").is_empty() {
        fail(&s, "no transaction completed, yet alice has mail");
    }
}
