//! ManageSieve (RFC 5804) end to end: a hand-written Python client (tests/clients/
//! managesieve_client.py) and Debian's `sieve-connect` against the `managesieve` listener,
//! checking the scripts on disk under `DATA_DIR/users/DOMAIN/LOCALPART/sieve/`. sieve-connect
//! must be installed (scripts/test installs it): its test fails, never skips, without it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use petrel_tests::{
    ALICE, BOB, Listener, Runtime, Server, ServerOptions, python, run_with_timeout,
};

use crate::{fail, temp_file};

both_runtimes!(
    python_client_starttls_put_activate_get,
    sieve_connect_uploads_and_activates,
    purge_removes_the_user_data_folder,
);

const SCRIPT: &str = "require [\"fileinto\"];\r\n\
if header :contains \"subject\" \"[list]\" {\r\n  fileinto \"Lists\";\r\n}\r\n";

fn server(rt: Runtime) -> Server {
    Server::start(
        rt,
        ServerOptions {
            managesieve: true,
            ..Default::default()
        },
    )
}

fn sieve_dir(s: &Server, domain: &str, local: &str) -> PathBuf {
    s.data_dir()
        .join("users")
        .join(domain)
        .join(local)
        .join("sieve")
}

fn python_upload(s: &Server, name: &str) {
    let out = python(
        "managesieve_client.py",
        sargs![
            "127.0.0.1",
            s.port(Listener::ManageSieve),
            s.cafile().display(),
            ALICE.address,
            ALICE.password,
            name,
            SCRIPT,
            64 * 1024,
        ],
    );
    assert_eq!(out.trim(), "ok", "{out}");
}

fn python_client_starttls_put_activate_get(rt: Runtime) {
    let s = server(rt);
    python_upload(&s, "filter");
    let dir = sieve_dir(&s, "example.test", "alice");
    let stored = fs::read_to_string(dir.join("filter.sieve")).unwrap_or_default();
    if stored != SCRIPT {
        fail(&s, format!("filter.sieve holds {stored:?}"));
    }
    let active = fs::read_to_string(dir.join(".active")).unwrap_or_default();
    if active != "filter\n" {
        fail(&s, format!(".active holds {active:?}"));
    }
    // The refused scripts left nothing behind, not even temporary files.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("sieve dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".active", "filter.sieve"]);
}

fn sieve_connect_uploads_and_activates(rt: Runtime) {
    let s = server(rt);
    let local = temp_file(&s, "vacation.sieve", SCRIPT.as_bytes());
    let password = temp_file(&s, "bob.pw", format!("{}\n", BOB.password).as_bytes());
    let run = |action: &[&str]| {
        // sieve-connect reads the password from a file descriptor: give it one.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("exec sieve-connect \"$@\" 3<\"$PW\"")
            .arg("sieve-connect")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &s.port(Listener::ManageSieve).to_string(),
                "--user",
                BOB.address,
                "--passwordfd",
                "3",
                "--tlscafile",
                &s.cafile().to_string_lossy(),
                "--tlshostname",
                "localhost",
                "--authmech",
                "PLAIN",
            ])
            .args(action)
            .env("PW", &password);
        let done = run_with_timeout(cmd, Duration::from_secs(60));
        if !done.success() {
            fail(
                &s,
                format!("sieve-connect {action:?} failed\n{}", done.describe()),
            );
        }
        done
    };
    run(&[
        "--upload",
        "--localsieve",
        &local.to_string_lossy(),
        "--remotesieve",
        "vacation",
    ]);
    run(&["--activate", "--remotesieve", "vacation"]);
    let listed = run(&["--list"]);
    if !listed.stdout.contains("vacation") {
        fail(&s, format!("--list did not show it\n{}", listed.describe()));
    }
    let dir = sieve_dir(&s, "example.test", "bob");
    let stored = fs::read_to_string(dir.join("vacation.sieve")).unwrap_or_default();
    if stored.replace("\r\n", "\n") != SCRIPT.replace("\r\n", "\n") {
        fail(&s, format!("vacation.sieve holds {stored:?}"));
    }
    let active = fs::read_to_string(dir.join(".active")).unwrap_or_default();
    if active != "vacation\n" {
        fail(&s, format!(".active holds {active:?}"));
    }
}

fn purge_removes_the_user_data_folder(rt: Runtime) {
    let s = server(rt);
    python_upload(&s, "p");
    let user_dir = s.data_dir().join("users/example.test/alice");
    assert!(user_dir.join("sieve/p.sieve").is_file());
    let out = s.petrel(&["user", "del", ALICE.address, "--purge"], b"");
    assert!(
        out.status.success(),
        "user del --purge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if user_dir.exists() {
        fail(&s, format!("{} survived --purge", user_dir.display()));
    }
}
