//! Many idle IMAP connections: opens N connections spread over K users (`PREFIXi@DOMAIN`),
//! each LOGIN + SELECT INBOX + IDLE, prints `READY n` and then, while they all idle, times
//! `--probes` fresh clients (connect, greeting, LOGIN) one after another; prints one JSON line
//! and keeps the connections open until stdin is closed.
//!
//! `idle-conns --addr 127.0.0.1:143 --pass PW [--prefix idle] [--domain example.test]
//! [--users 1000] [--conns 10000] [--threads 8] [--probes 20] [--settle 2]`

use petrel_loadgen::{Args, Imap, Samples};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn main() {
    let a = Args::parse();
    let addr = a.addr("addr");
    let pass = a.req("pass");
    let prefix: String = a.get("prefix", "idle".to_string());
    let domain: String = a.get("domain", "example.test".to_string());
    let users: usize = a.get("users", 1000);
    let conns: usize = a.get("conns", 10_000);
    let nthreads: usize = a.get("threads", 8);
    let probes: usize = a.get("probes", 20);
    let settle: f64 = a.get("settle", 2.0);
    let start = Instant::now();
    let threads: Vec<_> = (0..nthreads)
        .map(|t| {
            let (pass, prefix, domain) = (pass.clone(), prefix.clone(), domain.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut errors = 0usize;
                let mut first_error = None;
                for i in (t..conns).step_by(nthreads) {
                    let user = format!("{prefix}{}@{domain}", i % users);
                    let r = (|| {
                        let mut c = Imap::connect(addr)?;
                        c.login(&user, &pass)?;
                        let s = c.cmd("SELECT INBOX")?;
                        if !s.ok {
                            return Err(std::io::Error::other(s.status));
                        }
                        c.idle_start()?;
                        Ok(c)
                    })();
                    match r {
                        Ok(c) => held.push(c),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                (held, errors, first_error)
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in threads {
        let (h, e, f) = t.join().expect("opener thread");
        held.extend(h);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    println!("READY {}", held.len());
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(settle));
    let mut lat = Samples::default();
    let mut probe_errors = 0;
    for p in 0..probes {
        let t = Instant::now();
        let r = Imap::connect(addr).and_then(|mut c| {
            c.login(&format!("{prefix}{}@{domain}", p % users), &pass)?;
            Ok(c)
        });
        match r {
            Ok(mut c) => {
                lat.push(t.elapsed());
                let _ = c.cmd("LOGOUT");
            }
            Err(_) => probe_errors += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{{\"conns\":{},\"errors\":{errors},\"open_seconds\":{open_s:.2},\"probe_p50_ms\":{:.2},\"probe_max_ms\":{:.2},\"probe_errors\":{probe_errors}}}",
        held.len(),
        lat.quantile_ms(0.5),
        lat.quantile_ms(1.0)
    );
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    // Leave IDLE politely so neither server logs 10,000 resets.
    for mut c in held {
        let _ = c.idle_finish();
    }
}
