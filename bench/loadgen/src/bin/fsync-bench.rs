//! The disk's own limit for Maildir delivery: W writer threads, each repeating write +
//! fsync(file) + rename(tmp -> new) + fsync(new/) for a few seconds. Prints one JSON line.
//!
//! `fsync-bench --dir DIR [--writers 8] [--seconds 3] [--size 4096]`

use petrel_loadgen::Args;
use std::fs::{self, File};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let a = Args::parse();
    let dir = std::path::PathBuf::from(a.req("dir"));
    let writers: usize = a.get("writers", 8);
    let seconds: f64 = a.get("seconds", 3.0);
    let size: usize = a.get("size", 4096);
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(sub)).expect("create maildir");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let body = vec![b'x'; size];
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (dir, stop, count, body) = (dir.clone(), stop.clone(), count.clone(), body.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("{}.W{w}I{i}.bench", start.elapsed().as_nanos());
                    let tmp = dir.join("tmp").join(&name);
                    let mut f = File::create(&tmp).expect("create");
                    f.write_all(&body).expect("write");
                    f.sync_all().expect("fsync file");
                    drop(f);
                    fs::rename(&tmp, dir.join("new").join(&name)).expect("rename");
                    File::open(dir.join("new"))
                        .and_then(|d| d.sync_all())
                        .expect("fsync dir");
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("writer");
    }
    let wall = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    println!(
        "{{\"writers\":{writers},\"messages\":{n},\"seconds\":{wall:.3},\"msgs_per_s\":{:.1}}}",
        n as f64 / wall
    );
}
