//! `petrel user add|list|del` over DATA_DIR/passwd, and hashes pasted from a Dovecot install.

use petrel_tests::{
    Account, BOB, CAROL, Listener, Runtime, Server, ServerOptions, SmtpConn, python, sample_message,
};

use crate::{expect_messages, fail, temp_file};

both_runtimes!(
    dovecot_hashes_authenticate,
    dovecot_line_with_extra_fields,
    unusual_password_authenticates
);

/// `alice-pw`, made by `doveadm pw -s SHA512-CRYPT -p alice-pw`.
const ALICE_SHA512: &str = "alice@example.test:{SHA512-CRYPT}$6$09ybYPwn8xzig/G6$ynStyuHQicgvDgLPi/JWWVwCggnYIY1UtvLVtV8MFvbFMDLHIB7jFTV4jD6vIsRaaJ2DZzWmKx6Nom9RKtwj3.";
/// `dave-pw`, made by `doveadm pw -s BLF-CRYPT -p dave-pw`.
const DAVE_BLF: &str =
    "dave@example.test:{BLF-CRYPT}$2y$05$Uv0YrnQsWuGgVGybu7Gaw.zDFnOJtMhg6x9XMVsXt6YTfFEnrKPuW";
/// `erin-pw`, made by `doveadm pw -s ARGON2ID -p erin-pw`.
const ERIN_ARGON2ID: &str = "erin@example.test:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$HiSFpnwaBEgiWcPE/jivPw$gjvVk+MFplt0qE+RDYzc0luhSPHTqbqDg7MaeJBfN4E";
/// `frank-pw` (`doveadm pw -s SHA512-CRYPT`), with the uid/gid/home fields a Dovecot
/// passwd-file line may carry.
const FRANK_WITH_FIELDS: &str = "frank@example.test:{SHA512-CRYPT}$6$RwT3XbtRhrhJvrkR$f7Ne.t.d1CP/qYsT03oLS4ZcxKByauid6zTHCbazIR9CgmiXa88P6.7ncn4XFsAxoky6HEfF7uiEzHhBSIkZ3.:1000:1000::/home/frank::";

fn user_list(s: &Server) -> Vec<String> {
    let out = s.petrel(&["user", "list"], b"");
    if !out.status.success() {
        fail(
            s,
            format!(
                "`petrel user list` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        );
    }
    let mut users: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    users.sort();
    users
}

fn passwd(s: &Server) -> String {
    std::fs::read_to_string(s.data_dir().join("passwd"))
        .unwrap_or_else(|e| fail(s, format!("read passwd: {e}")))
}

#[test]
fn user_cli_add_list_del() {
    let s = Server::start(Runtime::Smol, ServerOptions::default());
    assert_eq!(
        user_list(&s),
        ["alice@example.test", "bob@example.test", "carol@other.test"]
    );
    let pw = passwd(&s);
    let lines: Vec<&str> = pw.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.len(),
        3,
        "passwd should have one line per user:\n{pw}"
    );
    for addr in ["alice@example.test", "bob@example.test", "carol@other.test"] {
        let prefix = format!("{addr}:{{ARGON2ID}}$argon2id$");
        assert!(
            lines.iter().any(|l| l.starts_with(&prefix)),
            "no `{prefix}...` line in passwd:\n{pw}"
        );
    }
    assert!(!pw.contains("alice-pw"), "clear-text password in passwd");

    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.deliver(
        "sender@remote.example",
        &["bob@example.test"],
        &sample_message("before-del"),
    );
    c.quit();

    let out = s.petrel(&["user", "del", "bob@example.test"], b"");
    assert!(
        out.status.success(),
        "user del failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(user_list(&s), ["alice@example.test", "carol@other.test"]);
    assert!(
        !passwd(&s).contains("bob@example.test"),
        "bob still in passwd"
    );
    // without --purge the mail stays
    expect_messages(&s, "bob@example.test", 1);

    let out = s.petrel(
        &["user", "add", "dave@example.test", "--password-stdin"],
        b"dave-pw\n",
    );
    assert!(
        out.status.success(),
        "user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        user_list(&s),
        [
            "alice@example.test",
            "carol@other.test",
            "dave@example.test"
        ]
    );
    assert!(passwd(&s).contains("dave@example.test:{ARGON2ID}$argon2id$"));

    // adding an existing user fails and keeps the one line
    let out = s.petrel(
        &["user", "add", "alice@example.test", "--password-stdin"],
        b"other-pw\n",
    );
    assert!(!out.status.success(), "adding alice twice succeeded");
    assert_eq!(
        passwd(&s).matches("alice@example.test:").count(),
        1,
        "alice twice in passwd"
    );
    // removing a user that does not exist fails
    let out = s.petrel(&["user", "del", "nobody@example.test"], b"");
    assert!(
        !out.status.success(),
        "deleting a non-existent user succeeded"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked at"),
        "user del panicked"
    );
}

fn dovecot_hashes_authenticate(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            users: vec![BOB, CAROL],
            extra_passwd_lines: vec![ALICE_SHA512.into(), DAVE_BLF.into(), ERIN_ARGON2ID.into()],
            ..Default::default()
        },
    );
    let cafile = s.cafile().display().to_string();
    python(
        "auth_check.py",
        sargs![
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            cafile,
            "alice@example.test:alice-pw:235",
            "dave@example.test:dave-pw:235",
            "erin@example.test:erin-pw:235",
            "alice@example.test:bob-pw:535 5.7.8"
        ],
    );
    // and alice, whose line came from Dovecot, can submit mail
    let msg = sample_message("from-dovecot-user");
    let file = temp_file(&s, "m.eml", &msg);
    python(
        "send.py",
        sargs![
            "--mode",
            "starttls",
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            cafile,
            "--user",
            "alice@example.test",
            "--password",
            "alice-pw",
            "--sender",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--message-file",
            file.display()
        ],
    );
    expect_messages(&s, "bob@example.test", 1);
    // users from pasted lines receive mail too
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.deliver(
        "sender@remote.example",
        &["erin@example.test", "dave@example.test"],
        &sample_message("to-dovecot-users"),
    );
    c.quit();
    expect_messages(&s, "erin@example.test", 1);
    expect_messages(&s, "dave@example.test", 1);
}

fn dovecot_line_with_extra_fields(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            extra_passwd_lines: vec![FRANK_WITH_FIELDS.into()],
            ..Default::default()
        },
    );
    python(
        "auth_check.py",
        sargs![
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display(),
            "frank@example.test:frank-pw:235"
        ],
    );
}

/// A password with a colon, spaces and UTF-8 survives `user add --password-stdin` and AUTH.
fn unusual_password_authenticates(rt: Runtime) {
    const DAN: Account = Account {
        address: "dan@example.test",
        password: "p:ä ss w\u{00e9}rd",
    };
    let s = Server::start(
        rt,
        ServerOptions {
            users: vec![DAN],
            ..Default::default()
        },
    );
    python(
        "auth_check.py",
        sargs![
            "--port",
            s.port(Listener::Submission),
            "--cafile",
            s.cafile().display(),
            format!("{}:{}:235", DAN.address, DAN.password),
            format!("{}:p:ä ss w:535", DAN.address)
        ],
    );
}
