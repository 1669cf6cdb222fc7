//! Writes a Maildir folder of N generated messages into `DIR/cur/` (flags in the names: every
//! 3rd seen, every 10th flagged, every 7th answered; every 1000th has "needle" in its subject),
//! for the big-folder and mixed IMAP benchmarks. Both servers get copies of the same files.
//!
//! `mkmaildir --dir DIR --count N [--size 2048]`

use petrel_loadgen::{Args, message};
use std::fs;

fn main() {
    let a = Args::parse();
    let dir = std::path::PathBuf::from(a.req("dir"));
    let count: usize = a.get("count", 100);
    let size: usize = a.get("size", 2048);
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
        let name = format!("{}.M{i}P1.bench,S={}:2,{flags}", 1_700_000_000 + i, size);
        let body = message(&subject, size);
        let name = name.replace(&format!("S={size}"), &format!("S={}", body.len()));
        fs::write(dir.join("cur").join(name), body).expect("write message");
    }
}
