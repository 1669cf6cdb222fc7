//! mbox delivery (`[delivery] mbox`): SMTP, LMTP and `petrel deliver` append to the user's mbox
//! file, read back by Python's `mailbox` module; Sieve's fileinto writes folder mbox files.

use petrel_tests::{ALICE, BOB, Listener, Runtime, Server, ServerOptions, SmtpConn, python};

use crate::expect_messages;

both_runtimes!(mbox_users_get_an_mbox_file);

fn read(path: &std::path::Path) -> Vec<serde_like::Msg> {
    python("mbox_read.py", vec![path.display().to_string()])
        .lines()
        .map(serde_like::parse)
        .collect()
}

/// Just enough JSON for the reader's flat objects of strings.
mod serde_like {
    #[derive(Debug)]
    pub struct Msg {
        pub from_line: String,
        pub subject: String,
        pub flags: String,
        pub body: String,
    }

    fn field(line: &str, key: &str) -> String {
        let start = line
            .find(&format!("\"{key}\": \""))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            + key.len()
            + 5;
        let mut out = String::new();
        let mut chars = line[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        out
    }

    pub fn parse(line: &str) -> Msg {
        Msg {
            from_line: field(line, "from_line"),
            subject: field(line, "subject"),
            flags: field(line, "flags"),
            body: field(line, "body"),
        }
    }
}

fn mbox_users_get_an_mbox_file(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            extra_config: "[delivery]\nmbox = [\"bob@example.test\"]\n".into(),
            ..Default::default()
        },
    );
    let sieve = s.data_dir().join("users/example.test/bob/sieve");
    std::fs::create_dir_all(&sieve).unwrap();
    std::fs::write(
        sieve.join("main.sieve"),
        "require [\"fileinto\", \"imap4flags\"];\n\
         if header :contains \"subject\" \"list\" { fileinto :flags \"\\\\Seen\" \"Lists/Rust\"; }",
    )
    .unwrap();
    std::fs::write(sieve.join(".active"), "main\n").unwrap();

    let mut c = SmtpConn::connect(s.port(Listener::Smtp));
    c.expect_reply("220");
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect(&format!("RCPT TO:<{}>", ALICE.address), "250");
    c.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    c.expect("DATA", "354");
    c.send(b"Subject: first\r\n\r\nFrom the start\r\n>From quoted\r\n.\r\n");
    c.expect_reply("250");
    c.quit();

    let mut l = SmtpConn::connect(s.port(Listener::Lmtp));
    l.expect_reply("220");
    l.expect("LHLO mta.example", "250");
    l.expect("MAIL FROM:<>", "250");
    l.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    l.expect("DATA", "354");
    l.send(b"Subject: second\r\n\r\nvia lmtp\r\n.\r\n");
    l.expect_reply("250");
    l.expect("MAIL FROM:<lists@remote.example>", "250");
    l.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    l.expect("DATA", "354");
    l.send(b"Subject: a list post\r\n\r\nfiled\r\n.\r\n");
    l.expect_reply("250");
    l.quit();

    let out = s.petrel(
        &[
            "deliver",
            "--to",
            BOB.address,
            "--from",
            "lda@remote.example",
        ],
        b"Subject: third\n\nvia deliver\n",
    );
    assert!(out.status.success(), "{out:?}");

    // Alice is on Maildir as before; Bob has no Maildir messages.
    expect_messages(&s, ALICE.address, 1);
    assert!(s.new_messages(BOB.address).is_empty());

    let inbox = read(&s.data_dir().join("mbox/example.test/bob"));
    let subjects: Vec<&str> = inbox.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["first", "second", "third"], "{inbox:?}");
    assert!(
        inbox[0].from_line.starts_with("sender@remote.example "),
        "{inbox:?}"
    );
    assert!(
        inbox[1].from_line.starts_with("MAILER-DAEMON "),
        "{inbox:?}"
    );
    assert!(
        inbox[2].from_line.starts_with("lda@remote.example "),
        "{inbox:?}"
    );
    // mboxrd: the reader sees the quoting of lines that begin with "From ".
    assert!(
        inbox[0].body.contains(">From the start\n>>From quoted\n"),
        "{inbox:?}"
    );
    assert!(!inbox[0].body.contains('\r'), "mbox files use LF line ends");

    let lists = read(
        &s.data_dir()
            .join("mbox/example.test/bob.folders/Lists/Rust"),
    );
    assert_eq!(lists.len(), 1, "{lists:?}");
    assert_eq!(lists[0].subject, "a list post");
    assert!(lists[0].flags.contains('R'), "Seen is Status: R: {lists:?}");
}
