//! SMTP latency and throughput: C clients, each on one connection, send M messages of S bytes
//! (no pipelining, as smtp-source) and time each from MAIL FROM to the 250 after the data.
//! Prints one JSON line.
//!
//! `smtp-load --addr 127.0.0.1:25 --rcpt user@example.test [--clients 10] [--messages 100]
//! [--size 4096]`

use petrel_loadgen::{Args, Samples, message};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Instant;

fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::other("closed"));
        }
        all.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

fn expect(r: &mut BufReader<TcpStream>, code: &str) -> std::io::Result<()> {
    let l = reply(r)?;
    if l.starts_with(code) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "wanted {code}, got {}",
            l.trim_end()
        )))
    }
}

fn client(
    addr: std::net::SocketAddr,
    rcpt: &str,
    n: usize,
    body: &[u8],
) -> std::io::Result<Samples> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    expect(&mut r, "220")?;
    w.write_all(b"EHLO bench.example\r\n")?;
    expect(&mut r, "250")?;
    let mut lat = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        w.write_all(b"MAIL FROM:<bench@remote.example>\r\n")?;
        expect(&mut r, "250")?;
        w.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
        expect(&mut r, "250")?;
        w.write_all(b"DATA\r\n")?;
        expect(&mut r, "354")?;
        w.write_all(body)?;
        w.write_all(b".\r\n")?;
        expect(&mut r, "250")?;
        lat.push(t.elapsed());
    }
    w.write_all(b"QUIT\r\n")?;
    let _ = reply(&mut r);
    Ok(lat)
}

fn main() {
    let a = Args::parse();
    let addr = a.addr("addr");
    let rcpt = a.req("rcpt");
    let clients: usize = a.get("clients", 10);
    let messages: usize = a.get("messages", 100);
    let size: usize = a.get("size", 4096);
    let body = message("bench", size);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (rcpt, body) = (rcpt.clone(), body.clone());
            std::thread::spawn(move || client(addr, &rcpt, messages, &body))
        })
        .collect();
    let mut lat = Samples::default();
    let mut errors = Vec::new();
    for t in threads {
        match t.join().expect("client thread") {
            Ok(s) => lat.0.extend(s.0),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{{\"clients\":{clients},\"messages\":{},\"errors\":{},\"seconds\":{wall:.3},\"msgs_per_s\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
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
