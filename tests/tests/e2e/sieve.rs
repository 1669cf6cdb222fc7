//! Sieve at delivery time with the real binary, on every delivery path: SMTP (swaks), LMTP and
//! `petrel deliver`. Scripts are installed the way ManageSieve leaves them on disk.

use petrel_tests::{ALICE, BOB, Listener, Runtime, Server, ServerOptions, SmtpConn, swaks};

use crate::{expect_messages, fail};

both_runtimes!(fileinto_and_vacation_over_smtp, reject_over_lmtp);

/// Installs `text` as `user`'s active script.
fn install(s: &Server, user: &str, text: &str) {
    let (local, domain) = user.split_once('@').unwrap();
    let dir = s
        .data_dir()
        .join("users")
        .join(domain)
        .join(local)
        .join("sieve");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.sieve"), text).unwrap();
    std::fs::write(dir.join(".active"), "main\n").unwrap();
}

/// File names and contents of a user's folder (`""` = INBOX), `new/` and `cur/`.
fn folder(s: &Server, user: &str, folder: &str) -> Vec<(String, String)> {
    let mut dir = s.maildir(user);
    if !folder.is_empty() {
        dir = dir.join(folder);
    }
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(dir.join(sub)).into_iter().flatten() {
            let e = e.unwrap();
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned(),
            ));
        }
    }
    out.sort();
    out
}

fn send_swaks(s: &Server, from: &str, to: &str, subject: &str) {
    let args = sargs![
        "--server",
        "127.0.0.1",
        "--port",
        s.port(Listener::Smtp),
        "--from",
        from,
        "--to",
        to,
        "--header",
        format!("Subject: {subject}"),
        "--body",
        "hello\n",
    ];
    let done = swaks(&args);
    if !done.success() {
        fail(s, format!("swaks failed\n{}", done.describe()));
    }
}

fn fileinto_and_vacation_over_smtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    install(
        &s,
        ALICE.address,
        r#"require ["fileinto", "imap4flags", "envelope", "subaddress", "vacation"];
if header :contains "subject" "[rust]" {
    fileinto :flags "\\Seen" "Lists/Rust";
    stop;
}
if envelope :detail "to" "shop" { fileinto "Shopping"; stop; }
vacation :days 1 :subject "Away" "I am away.";
"#,
    );
    send_swaks(
        &s,
        "bob@remote.example",
        ALICE.address,
        "[rust] 1.95 is out",
    );
    send_swaks(&s, "bob@remote.example", "alice+shop@example.test", "order");
    send_swaks(&s, "carol@remote.example", ALICE.address, "hello");
    send_swaks(&s, "carol@remote.example", ALICE.address, "hello again");

    let rust = folder(&s, ALICE.address, ".Lists.Rust");
    assert_eq!(rust.len(), 1, "{rust:?}\n{}", s.log_tail(20));
    assert!(rust[0].0.ends_with(":2,S"), "{}", rust[0].0);
    assert!(
        s.maildir(ALICE.address)
            .join(".Lists.Rust/maildirfolder")
            .is_file()
    );
    assert_eq!(folder(&s, ALICE.address, ".Shopping").len(), 1);
    expect_messages(&s, ALICE.address, 2);
    // One vacation reply to carol, from the null sender, queued for remote delivery.
    let replies: Vec<String> = s
        .queue_files()
        .into_iter()
        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
        .filter(|t| t.contains("Subject: Away"))
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(
        replies[0].contains("To: <carol@remote.example>")
            && replies[0].contains("Auto-Submitted: auto-replied"),
        "{}",
        replies[0]
    );
}

fn reject_over_lmtp(rt: Runtime) {
    let s = Server::start(rt, ServerOptions::default());
    install(
        &s,
        BOB.address,
        "require \"reject\";\nif size :over 10 { reject \"Mailbox closed.\"; }",
    );
    let mut c = SmtpConn::connect(s.port(Listener::Lmtp));
    c.expect_reply("220");
    c.expect("LHLO mta.example", "250");
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect(&format!("RCPT TO:<{}>", ALICE.address), "250");
    c.expect(&format!("RCPT TO:<{}>", BOB.address), "250");
    c.expect("DATA", "354");
    c.send(b"Subject: lmtp\r\n\r\nbody\r\n.\r\n");
    c.expect_reply("250");
    let refused = c.expect_reply("550");
    assert!(
        refused.text().contains(BOB.address) && refused.text().contains("Mailbox closed."),
        "{}",
        c.transcript()
    );
    c.quit();
    expect_messages(&s, ALICE.address, 1);
    assert!(s.new_messages(BOB.address).is_empty());
    assert!(
        s.queue_files().is_empty(),
        "LMTP answers in the dialogue, no notice"
    );
}

#[test]
fn deliver_reports_a_reject_as_ex_noperm() {
    let s = Server::start(Runtime::Blocking, ServerOptions::default());
    install(
        &s,
        BOB.address,
        "require [\"reject\", \"fileinto\"];\n\
         if address :is \"from\" \"spam@remote.example\" { reject \"No spam, please.\"; }\n\
         elsif header :contains \"subject\" \"lists\" { fileinto \"Lists\"; }",
    );
    let refused = s.petrel(
        &[
            "deliver",
            "--to",
            BOB.address,
            "--from",
            "spam@remote.example",
        ],
        b"From: spam@remote.example\nSubject: buy\n\nnow\n",
    );
    assert_eq!(refused.status.code(), Some(77), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("No spam, please."),
        "{refused:?}"
    );
    let filed = s.petrel(
        &["deliver", "--to", BOB.address],
        b"From: friend@remote.example\nSubject: lists digest\n\nx\n",
    );
    assert!(filed.status.success(), "{filed:?}");
    assert_eq!(folder(&s, BOB.address, ".Lists").len(), 1);
    assert!(s.new_messages(BOB.address).is_empty());
}
