//! IMAP mixed workload: C clients, client i logged in as `PREFIXi@DOMAIN` (its own INBOX of
//! about a hundred messages), each repeating one session for `--seconds`:
//! connect+LOGIN, SELECT, FETCH 1:* (FLAGS), FETCH n BODY.PEEK[] (twice), STORE +FLAGS / -FLAGS,
//! SEARCH UNSEEN, SEARCH SUBJECT, APPEND, STORE \Deleted + EXPUNGE of what was appended, IDLE
//! (until the continuation, then DONE), LOGOUT. Every command counts as one operation (the
//! connect is part of LOGIN's). Prints one JSON line with ops/s and latency percentiles.
//!
//! `imap-load --addr 127.0.0.1:143 --pass PW [--prefix bench] [--domain example.test]
//! [--clients 10] [--seconds 10] [--size 4096]`

use petrel_loadgen::{Args, Imap, Samples, message};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Totals {
    lat: Samples,
    sessions: u64,
    errors: Vec<String>,
}

fn op<T>(lat: &mut Samples, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    let t = Instant::now();
    let r = f()?;
    lat.push(t.elapsed());
    Ok(r)
}

fn check(r: petrel_loadgen::Reply) -> std::io::Result<petrel_loadgen::Reply> {
    if r.ok {
        Ok(r)
    } else {
        Err(std::io::Error::other(r.status))
    }
}

fn session(
    addr: SocketAddr,
    user: &str,
    pass: &str,
    append: &[u8],
    seq: u64,
    lat: &mut Samples,
) -> std::io::Result<()> {
    let mut c = op(lat, || {
        let mut c = Imap::connect(addr)?;
        c.login(user, pass)?;
        Ok(c)
    })?;
    let sel = op(lat, || c.cmd("SELECT INBOX").and_then(check))?;
    let exists: u64 = sel
        .untagged
        .iter()
        .find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse().ok())
        .unwrap_or(0);
    if exists == 0 {
        return Err(std::io::Error::other(format!("{user}: empty INBOX")));
    }
    op(lat, || c.cmd("FETCH 1:* (FLAGS)").and_then(check))?;
    let n1 = seq * 7 % exists + 1;
    let n2 = seq * 13 % exists + 1;
    op(lat, || {
        c.cmd(&format!("FETCH {n1} (UID RFC822.SIZE BODY.PEEK[])"))
            .and_then(check)
    })?;
    op(lat, || {
        c.cmd(&format!("FETCH {n2} (FLAGS BODY.PEEK[])"))
            .and_then(check)
    })?;
    let sign = if seq.is_multiple_of(2) { '+' } else { '-' };
    op(lat, || {
        c.cmd(&format!("STORE {n1} {sign}FLAGS (\\Seen)"))
            .and_then(check)
    })?;
    op(lat, || c.cmd("SEARCH UNSEEN").and_then(check))?;
    op(lat, || {
        c.cmd("SEARCH SUBJECT \"message 4\"").and_then(check)
    })?;
    op(lat, || {
        c.cmd_literal(
            &format!("APPEND INBOX (\\Seen) {{{}}}", append.len()),
            append,
        )
        .and_then(check)
    })?;
    op(lat, || {
        c.cmd("STORE * +FLAGS.SILENT (\\Deleted)").and_then(check)
    })?;
    op(lat, || c.cmd("EXPUNGE").and_then(check))?;
    op(lat, || c.idle_done().and_then(check))?;
    op(lat, || c.cmd("LOGOUT"))?;
    Ok(())
}

fn main() {
    let a = Args::parse();
    let addr = a.addr("addr");
    let pass = a.req("pass");
    let prefix: String = a.get("prefix", "bench".to_string());
    let domain: String = a.get("domain", "example.test".to_string());
    let clients: usize = a.get("clients", 10);
    let seconds: f64 = a.get("seconds", 10.0);
    let size: usize = a.get("size", 4096);
    let append = message("appended", size);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (pass, append) = (pass.clone(), append.clone());
            let user = format!("{prefix}{i}@{domain}");
            std::thread::spawn(move || {
                let mut t = Totals {
                    lat: Samples::default(),
                    sessions: 0,
                    errors: Vec::new(),
                };
                let mut seq = i as u64;
                while Instant::now() < end {
                    match session(addr, &user, &pass, &append, seq, &mut t.lat) {
                        Ok(()) => t.sessions += 1,
                        Err(e) => {
                            t.errors.push(e.to_string());
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    seq += 1;
                }
                t
            })
        })
        .collect();
    let mut lat = Samples::default();
    let mut sessions = 0;
    let mut errors = Vec::new();
    for t in threads {
        let t = t.join().expect("client thread");
        lat.0.extend(t.lat.0);
        sessions += t.sessions;
        errors.extend(t.errors);
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{{\"clients\":{clients},\"ops\":{},\"sessions\":{sessions},\"errors\":{},\"seconds\":{wall:.3},\"ops_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        lat.0.len(),
        errors.len(),
        lat.0.len() as f64 / wall,
        lat.quantile_ms(0.5),
        lat.quantile_ms(0.99)
    );
    if let Some(e) = errors.first() {
        eprintln!("first error: {e}");
    }
}
