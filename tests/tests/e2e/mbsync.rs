//! IMAP end to end with mbsync (isync) on both runtimes, over STARTTLS: a first sync pulls the
//! INBOX (byte-equal, CRLF vs LF aside) and the special-use folders into a local Maildir; then a
//! flag change, a deletion and a new message in Archive, all made locally, are pushed back and
//! checked in Petrel's files. mbsync must be installed (Debian's isync): the test fails, never
//! skips, without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petrel_tests::{
    ALICE, Finished, Listener, Runtime, Server, ServerOptions, SmtpConn, run_with_timeout,
    sample_message,
};

use crate::{expect_messages, fail, temp_file};

both_runtimes!(mbsync_pulls_and_pushes_flags_deletions_and_new_mail);

const MARKERS: [&str; 3] = ["mbsync-one", "mbsync-two", "mbsync-three"];
const SPECIAL_USE: [&str; 5] = ["Sent", "Drafts", "Trash", "Junk", "Archive"];

/// The mbsync configuration (isync 1.4 keywords: `SSLType`, `Far`/`Near`) syncing everything
/// between alice's account and the Maildir under `local`, one directory per mailbox.
fn rc(s: &Server, local: &Path) -> String {
    format!(
        "IMAPAccount petrel\n\
         Host 127.0.0.1\n\
         Port {port}\n\
         User {user}\n\
         Pass {pw}\n\
         SSLType STARTTLS\n\
         CertificateFile {cert}\n\
         AuthMechs PLAIN LOGIN\n\
         \n\
         IMAPStore petrel-far\n\
         Account petrel\n\
         \n\
         MaildirStore petrel-near\n\
         Path {local}/\n\
         Inbox {local}/INBOX\n\
         SubFolders Verbatim\n\
         \n\
         Channel petrel\n\
         Far :petrel-far:\n\
         Near :petrel-near:\n\
         Patterns *\n\
         Create Both\n\
         Expunge Both\n\
         SyncState *\n\
         Sync All\n",
        port = s.port(Listener::Imap),
        user = ALICE.address,
        pw = ALICE.password,
        cert = s.cafile().display(),
        local = local.display(),
    )
}

/// Runs `mbsync -V -a -c RC` with HOME in the server's temp dir and asserts it exits 0.
fn mbsync(s: &Server, rcfile: &Path, how: &str) -> Finished {
    let home = s.root().join("mbsync-home");
    fs::create_dir_all(&home).expect("create mbsync home");
    let mut cmd = Command::new("mbsync");
    cmd.args(["-V", "-a", "-c"]).arg(rcfile).env("HOME", &home);
    let done = run_with_timeout(cmd, Duration::from_secs(60));
    if !done.success() {
        fail(s, format!("{how}: mbsync failed\n{}", done.describe()));
    }
    done
}

/// The message files of one Maildir (`new/` and `cur/`), sorted.
fn maildir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(dir.join(sub)).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// `b` with CRLF turned into LF and without the `X-TUID:` header line mbsync 1.4 adds to every
/// message it copies, in either direction (its own recovery marker, not a change by Petrel).
fn lf(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .replace("\r\n", "\n")
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("X-TUID: "))
        .collect::<String>()
        .into_bytes()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The Maildir flag letters of a file name (after `:2,`), empty if it has none.
fn flags_of(p: &Path) -> String {
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    name.split_once(":2,")
        .map(|(_, f)| f.to_string())
        .unwrap_or_default()
}

/// The file of `files` whose contents mention `marker`.
fn file_with(s: &Server, files: &[PathBuf], marker: &str, side: &str) -> PathBuf {
    let hits: Vec<&PathBuf> = files
        .iter()
        .filter(|p| fs::read(p).is_ok_and(|b| contains(&b, marker)))
        .collect();
    match hits[..] {
        [one] => one.clone(),
        _ => fail(
            s,
            format!("{side}: {} files mention {marker}: {files:?}", hits.len()),
        ),
    }
}

fn mbsync_pulls_and_pushes_flags_deletions_and_new_mail(rt: Runtime) {
    let s = Server::start(
        rt,
        ServerOptions {
            imap: true,
            ..Default::default()
        },
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    for marker in MARKERS {
        c.deliver(
            "sender@remote.example",
            &[ALICE.address],
            &sample_message(marker),
        );
    }
    c.quit();
    let stored = expect_messages(&s, ALICE.address, MARKERS.len());

    let local = s.root().join("mbsync-local");
    fs::create_dir_all(&local).expect("create local Maildir root");
    let rcfile = temp_file(&s, "mbsyncrc", rc(&s, &local).as_bytes());

    // First sync: everything comes down.
    let first = mbsync(&s, &rcfile, "first sync");
    let inbox = local.join("INBOX");
    let pulled = maildir_files(&inbox);
    if pulled.len() != stored.len() {
        fail(
            &s,
            format!(
                "first sync: {} local INBOX messages, expected {}: {pulled:?}\n{}",
                pulled.len(),
                stored.len(),
                first.describe()
            ),
        );
    }
    let pulled_bytes: Vec<Vec<u8>> = pulled.iter().map(|p| lf(&fs::read(p).unwrap())).collect();
    for m in &stored {
        let want = lf(m);
        if pulled_bytes.iter().filter(|g| **g == want).count() != 1 {
            fail(
                &s,
                format!(
                    "first sync: the stored message {:?} is not byte-equal in the local INBOX; \
                     local copies: {:#?}",
                    String::from_utf8_lossy(&want),
                    pulled_bytes
                        .iter()
                        .map(|g| String::from_utf8_lossy(g).into_owned())
                        .collect::<Vec<_>>()
                ),
            );
        }
    }
    for folder in SPECIAL_USE {
        if !local.join(folder).join("cur").is_dir() {
            fail(
                &s,
                format!(
                    "first sync: no local {folder} Maildir under {}\n{}",
                    local.display(),
                    first.describe()
                ),
            );
        }
    }

    // Local changes: flag one, delete one, add one to Archive.
    let flagged = file_with(&s, &pulled, MARKERS[0], "local INBOX");
    let name = flagged.file_name().unwrap().to_string_lossy().into_owned();
    let base = name.split(":2,").next().unwrap_or(&name).to_string();
    let mut letters: Vec<char> = flags_of(&flagged).chars().chain(['F', 'S']).collect();
    letters.sort_unstable();
    letters.dedup();
    let new_name = format!("{base}:2,{}", letters.into_iter().collect::<String>());
    fs::rename(&flagged, inbox.join("cur").join(new_name)).expect("flag locally");
    let deleted = file_with(&s, &pulled, MARKERS[1], "local INBOX");
    fs::remove_file(&deleted).expect("delete locally");
    let archived = "From: Alice <alice@example.test>\n\
                    To: Carol <carol@remote.example>\n\
                    Subject: mbsync-archived\n\
                    Message-ID: <mbsync-archived@client.example>\n\
                    Date: Mon, 24 Nov 2025 11:00:00 +0000\n\
                    \n\
                    Filed locally, pushed by mbsync.\n";
    fs::write(
        local.join("Archive/new/1764000000.mbsync-test.localhost"),
        archived,
    )
    .expect("write local Archive message");

    // Second sync: the changes go up.
    let second = mbsync(&s, &rcfile, "second sync");
    let server_inbox = s.message_files(ALICE.address);
    let on_server = |marker: &str| -> Vec<PathBuf> {
        server_inbox
            .iter()
            .filter(|p| fs::read(p).is_ok_and(|b| contains(&b, marker)))
            .cloned()
            .collect()
    };
    let flagged_there = on_server(MARKERS[0]);
    if flagged_there.len() != 1
        || !{
            let f = flags_of(&flagged_there[0]);
            f.contains('F') && f.contains('S')
        }
    {
        fail(
            &s,
            format!(
                "second sync: the locally flagged message should carry F and S on the server: \
                 {flagged_there:?}\n{}",
                second.describe()
            ),
        );
    }
    let deleted_there = on_server(MARKERS[1]);
    if !deleted_there.iter().all(|p| flags_of(p).contains('T')) {
        fail(
            &s,
            format!(
                "second sync: the locally deleted message is still on the server: \
                 {deleted_there:?}\n{}",
                second.describe()
            ),
        );
    }
    if on_server(MARKERS[2]).len() != 1 {
        fail(
            &s,
            format!("second sync: the untouched message changed: {server_inbox:?}"),
        );
    }
    let archive = maildir_files(&s.maildir(ALICE.address).join(".Archive"));
    let want = lf(archived.as_bytes());
    let hits = archive
        .iter()
        .filter(|p| fs::read(p).is_ok_and(|b| lf(&b).ends_with(&want)))
        .count();
    if hits != 1 {
        fail(
            &s,
            format!(
                "second sync: the local Archive message is in the server's .Archive {hits} \
                 times: {archive:?}\n{}",
                second.describe()
            ),
        );
    }
}
