//! DATA stores the message byte-exact after dot-unstuffing: dots, 8-bit bytes, NULs, 998-octet
//! lines, empty lines; through the raw client and through smtplib; and a terminator split
//! across writes.

use std::time::Duration;

use petrel_tests::{
    Delivery, Listener, Runtime, Server, ServerOptions, SmtpConn, python, stored_form,
};

use crate::{expect_messages, expect_one_delivery, temp_file};

both_runtimes!(
    byte_exact_raw_data,
    byte_exact_via_smtplib,
    smtplib_message_without_final_crlf,
    terminator_split_across_writes
);

/// A message exercising everything dot-unstuffing and 8-bit transparency can get wrong.
pub(crate) fn tricky_message(marker: &str) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(format!("Subject: {marker}\r\nX-Test: exact\r\n\r\n").as_bytes());
    m.extend_from_slice(b".leading dot\r\n");
    m.extend_from_slice(b"..two leading dots\r\n");
    m.extend_from_slice(b".\r\n");
    m.extend_from_slice(b"..\r\n");
    m.extend_from_slice(b"...\r\n");
    m.extend_from_slice(b"\r\n\r\n");
    m.extend_from_slice(b"not . at start .\r\n");
    m.extend_from_slice(b"8bit: \xe9\xe8\xff\x80\xc3\xa9 done\r\n");
    m.extend_from_slice(b"nul: a\x00b\x00\x00c\r\n");
    m.extend_from_slice(b"\x00\r\n");
    m.extend(std::iter::repeat_n(b'x', 998));
    m.extend_from_slice(b"\r\n");
    m.push(b'.');
    m.extend(std::iter::repeat_n(b'y', 900));
    m.extend_from_slice(b"\r\n");
    m.extend_from_slice(b"tab\there\r\n   \r\n");
    m.extend_from_slice(b"last line\r\n");
    m
}

fn byte_exact_raw_data(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let msg = tricky_message("raw-exact");
    c.expect("MAIL FROM:<sender@remote.example> BODY=8BITMIME", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    c.send(&petrel_tests::data_payload(&msg));
    c.expect_reply("250 2.0.0");
    c.quit();
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTP"),
        tls: false,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "alice@example.test", &want);
}

fn byte_exact_via_smtplib(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg = tricky_message("smtplib-exact");
    let file = temp_file(&s, "tricky.eml", &msg);
    python(
        "send.py",
        sargs![
            "--mode",
            "plain",
            "--port",
            s.port(Listener::Smtp),
            "--sender",
            "sender@remote.example",
            "--to",
            "carol@other.test",
            "--message-file",
            file.display()
        ],
    );
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTP"),
        tls: false,
        helo: Some("client.example"),
    };
    expect_one_delivery(&s, "carol@other.test", &want);
}

fn smtplib_message_without_final_crlf(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let msg =
        b"Subject: no final newline\r\n\r\nfirst\r\n.dot line\r\nthe end without CRLF".to_vec();
    let file = temp_file(&s, "nocrlf.eml", &msg);
    python(
        "send.py",
        sargs![
            "--mode",
            "plain",
            "--port",
            s.port(Listener::Smtp),
            "--sender",
            "sender@remote.example",
            "--to",
            "alice@example.test",
            "--message-file",
            file.display()
        ],
    );
    // smtplib appends the CRLF that the terminator needs; that CRLF is part of the message.
    let stored = stored_form(&msg);
    let want = Delivery {
        sender: "sender@remote.example",
        message: &stored,
        protocol: Some("ESMTP"),
        tls: false,
        helo: None,
    };
    expect_one_delivery(&s, "alice@example.test", &want);
}

/// The body and its terminator arrive in awkward pieces: `\r` | `\n.` | `\r` | `\n`.
fn terminator_split_across_writes(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    let _ = c.stream().set_nodelay(true);
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    let pieces: [&[u8]; 9] = [
        b"Subject: split\r\n\r\nline one\r",
        b"\n.",
        b".dot-stuffed\r\n",
        b".",
        b".\r\n",
        b"last\r",
        b"\n.",
        b"\r",
        b"\n",
    ];
    for p in pieces {
        c.send(p);
        std::thread::sleep(Duration::from_millis(30));
    }
    c.expect_reply("250");
    c.quit();
    let msg = b"Subject: split\r\n\r\nline one\r\n.dot-stuffed\r\n.\r\nlast\r\n".to_vec();
    let want = Delivery {
        sender: "sender@remote.example",
        message: &msg,
        protocol: Some("ESMTP"),
        tls: false,
        helo: None,
    };
    expect_one_delivery(&s, "alice@example.test", &want);
    expect_messages(&s, "bob@example.test", 0);
}
