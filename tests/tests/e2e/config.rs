//! Bad configuration: exit code 2 and exactly one stderr line naming the key; never a panic.

use std::process::Command;
use std::time::Duration;

use petrel_tests::{Runtime, free_port, petrel_bin, run_with_timeout};

both_runtimes!(bad_configs_exit_2_naming_the_key);

/// A throw-away EC private key (generated for these tests only), so that `tls.key` is valid and
/// only `tls.cert` is wrong.
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgexXwXIivTcKAomqK
wwWCx6nR7ChxfV072SpYlnnOP2ChRANCAAScQXZ6fQhCBIYkL+5jPobdxIFdAtsr
QS5TeSioEWAQHbPWwtmwtV1ui5SRQSHgQdDHf1SaKduvdHjmC0iEgnTL
-----END PRIVATE KEY-----
";

/// A valid config whose `[listen]` and `[limits]` sections can be patched.
fn config(
    data_dir: &str,
    listen_extra: &str,
    smtp: &str,
    limits_extra: &str,
    tail: &str,
) -> String {
    format!(
        "hostname = \"mail.test.example\"\n\
         data_dir = \"{data_dir}\"\n\
         domains = [\"example.test\"]\n\
         \n\
         [listen]\n\
         smtp = \"{smtp}\"\n\
         submission = \"127.0.0.1:{}\"\n\
         {listen_extra}\n\
         \n\
         [limits]\n\
         max_recipients = 100\n\
         {limits_extra}\n\
         {tail}",
        free_port()
    )
}

fn bad_configs_exit_2_naming_the_key(rt: Runtime) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_string_lossy();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, TEST_KEY).expect("write key");
    let good_smtp = || format!("127.0.0.1:{}", free_port());
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "unknown key [listen] smpt",
            config(
                &data,
                &format!("smpt = \"127.0.0.1:{}\"", free_port()),
                &good_smtp(),
                "",
                "",
            ),
            &["smpt"],
        ),
        (
            "listen.smtp not an address",
            config(&data, "", "not-an-address", "", ""),
            &["smtp"],
        ),
        (
            "tls.cert does not exist",
            config(
                &data,
                "",
                &good_smtp(),
                "",
                &format!(
                    "\n[tls]\ncert = \"/nonexistent.pem\"\nkey = \"{}\"\n",
                    key.display()
                ),
            ),
            &["cert"],
        ),
        (
            "limits.max_message_size is a string",
            config(&data, "", &good_smtp(), "max_message_size = \"big\"", ""),
            &["max_message_size"],
        ),
        (
            "unknown top-level key",
            format!(
                "hostnme = \"x\"\n{}",
                config(&data, "", &good_smtp(), "", "")
            ),
            &["hostnme"],
        ),
        ("not TOML at all", "hostname = \n[listen\n".to_string(), &[]),
    ];
    let mut failures = Vec::new();
    for (name, text, keys) in &cases {
        let path = dir.path().join("petrel.toml");
        std::fs::write(&path, text).expect("write config");
        let mut cmd = Command::new(petrel_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--runtime", rt.as_str()]);
        let done = run_with_timeout(cmd, Duration::from_secs(10));
        if let Some(problem) = judge(&done, keys) {
            failures.push(format!(
                "case `{name}`: {problem}\nconfig:\n{text}\n{}",
                done.describe()
            ));
        }
    }
    // a config file that does not exist
    let mut cmd = Command::new(petrel_bin());
    cmd.args([
        "serve",
        "--config",
        "/nonexistent/dir/petrel.toml",
        "--runtime",
        rt.as_str(),
    ]);
    let done = run_with_timeout(cmd, Duration::from_secs(10));
    if let Some(problem) = judge(&done, &["/nonexistent/dir/petrel.toml"]) {
        failures.push(format!(
            "case `missing config file`: {problem}\n{}",
            done.describe()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Exit 2, exactly one non-empty stderr line, naming every key in `keys`, no panic.
fn judge(done: &petrel_tests::Finished, keys: &[&str]) -> Option<String> {
    let Some(status) = done.status else {
        return Some("still running after 10 s: the bad config was accepted".to_string());
    };
    if done.stderr.contains("panicked at") {
        return Some("panicked".to_string());
    }
    if status.code() != Some(2) {
        return Some(format!("exit status {status}, expected 2"));
    }
    let lines: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.len() != 1 {
        return Some(format!(
            "{} stderr lines, expected exactly one",
            lines.len()
        ));
    }
    for key in keys {
        if !lines[0].contains(key) {
            return Some(format!("the error line does not name `{key}`"));
        }
    }
    None
}
