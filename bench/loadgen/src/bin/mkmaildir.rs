//! Writes a Maildir folder of N generated messages into `DIR/cur/` (flags in the names: every
//! 3rd seen, every 10th flagged, every 7th answered; every 1000th has "needle" in its subject),
//! for the big-folder and mixed IMAP benchmarks. Both servers get copies of the same files.
//! Names are those Dovecot gives the mail it delivers: `S=` the file's size and `W=` its size
//! with CRLF line ends (the same here, the files are CRLF), so a folder moved over from Dovecot
//! is what is measured. `--names foreign` leaves `W=` out, as agents that do not know it do; a server
//! must then read every file once to learn its RFC822.SIZE.
//!
//! `mkmaildir --dir DIR --count N [--size 2048] [--names dovecot|foreign]`

use petrel_loadgen::{Args, message};
use std::fs;

fn main() {
    let a = Args::parse();
    let dir = std::path::PathBuf::from(a.req("dir"));
    let count: usize = a.get("count", 100);
    let size: usize = a.get("size", 2048);
    let foreign = match a.get("names", String::from("dovecot")).as_str() {
        "dovecot" => false,
        "foreign" => true,
        other => petrel_loadgen::die(&format!("--names: dovecot or foreign, not {other:?}")),
    };
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub)).expect("create maildir");
    }
    for i in 0..count {
        let mut flags = String::new();
        if i % 7 == 0 {
            flags.push('R');
        }
        if i % 3 == 0 {
            flags.push('S');
        }
        if i % 10 == 0 {
            flags.insert(0, 'F');
        }
        let subject = if i % 1000 == 999 {
            format!("needle {i}")
        } else {
            format!("message {i}")
        };
        let body = message(&subject, size);
        let len = body.len();
        let sizes = if foreign {
            format!("S={len}")
        } else {
            format!("S={len},W={len}")
        };
        let name = format!("{}.M{i}P1.bench,{sizes}:2,{flags}", 1_700_000_000 + i);
        fs::write(dir.join("cur").join(name), body).expect("write message");
    }
}
