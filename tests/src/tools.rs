//! Running outside clients: the Python scripts in `tests/clients/` and swaks.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a command run by [`run_with_timeout`] ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status, or `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Finished {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A description for failure messages: status, stdout and stderr.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed after the timeout".to_string(),
        };
        format!(
            "status: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed, stdout and stderr captured, killing it after `timeout`.
/// Panics if it cannot be started at all (e.g. the program is not installed).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Finished {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}`: {e} (is it installed and on PATH?)"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// The directory of the Python client scripts, `tests/clients/`.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs `python3 tests/clients/SCRIPT ARGS...` (60 s at most), asserts it exits 0 and returns
/// its stdout. On failure the panic carries the script's stdout and stderr (smtplib's debug
/// transcript is on stderr).
pub fn python(script: &str, args: Vec<String>) -> String {
    let path = clients_dir().join(script);
    assert!(
        path.is_file(),
        "client script {} is missing",
        path.display()
    );
    let mut cmd = Command::new("python3");
    cmd.arg(&path)
        .args(&args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let done = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        done.success(),
        "python3 {script} {} failed\n{}",
        args.join(" "),
        done.describe()
    );
    done.stdout
}

/// Runs `swaks ARGS...` (60 s at most) and returns how it ended. Panics when swaks is not
/// installed: tests that need it fail rather than skip.
pub fn swaks(args: &[String]) -> Finished {
    let mut cmd = Command::new("swaks");
    cmd.args(args);
    run_with_timeout(cmd, Duration::from_secs(60))
}
