//! Content filtering against fake scanners written here (no ClamAV needed): a fake clamd that
//! speaks zINSTREAM and finds the EICAR string, and a scanner that accepts the connection but
//! never reads, so Petrel's writes block. Checks the verdict path end to end on both runtimes,
//! one connection carrying several scanned messages, and that a blocked scanner costs the
//! client one `timeout`, gives `451 4.7.1`, and leaves the session usable.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use petrel_tests::{Listener, Runtime, Server, ServerOptions, SmtpConn, free_port, sample_message};

use crate::{expect_messages, fail};

both_runtimes!(
    fake_clamd_virus_then_clean_on_one_connection,
    never_reading_scanner_tempfails_within_timeout
);

const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// How a fake scanner treats each connection.
#[derive(Clone, Copy)]
enum Fake {
    /// zINSTREAM: `stream: Eicar-Test-Signature FOUND` when the stream holds EICAR, else OK.
    Clamd,
    /// Accepts, never reads, holds the connection open.
    NeverRead,
}

/// A fake scanner on a loopback port; stops on drop.
struct FakeScanner {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeScanner {
    fn start(how: Fake) -> FakeScanner {
        let port = free_port();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop2, count) = (stop.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        match how {
                            Fake::NeverRead => held.push(s),
                            Fake::Clamd => {
                                std::thread::spawn(move || fake_clamd(s));
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeScanner {
            port,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeScanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One zINSTREAM conversation.
fn fake_clamd(mut s: TcpStream) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut cmd = [0u8; 10];
    if s.read_exact(&mut cmd).is_err() || &cmd != b"zINSTREAM\0" {
        let _ = s.write_all(b"UNKNOWN COMMAND\0");
        return;
    }
    let mut payload = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 {
            break;
        }
        let mut chunk = vec![0u8; n];
        if s.read_exact(&mut chunk).is_err() {
            return;
        }
        payload.extend_from_slice(&chunk);
    }
    let found = payload.windows(EICAR.len()).any(|w| w == EICAR.as_bytes());
    let reply: &[u8] = if found {
        b"stream: Eicar-Test-Signature FOUND\0"
    } else {
        b"stream: OK\0"
    };
    let _ = s.write_all(reply);
}

fn server(rt: Runtime, filter: &str, max_message_size: u64) -> Server {
    Server::start(
        rt,
        ServerOptions {
            max_message_size,
            extra_config: format!("[filter]\n{filter}\n"),
            ..ServerOptions::default()
        },
    )
}

fn fake_clamd_virus_then_clean_on_one_connection(rt: Runtime) {
    let fake = FakeScanner::start(Fake::Clamd);
    let s = server(
        rt,
        &format!("clamd = \"{}\"\ntimeout = 10", fake.addr()),
        1 << 20,
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.set_timeout(Duration::from_secs(60));
    let mut virus = sample_message("virus").to_vec();
    virus.extend_from_slice(format!("{EICAR}\r\n").as_bytes());
    let r = c.send_mail("sender@remote.example", &["alice@example.test"], &virus);
    c.check(&r, "554 5.7.1 Virus found: Eicar-Test-Signature");
    let clean = sample_message("clean");
    let r = c.send_mail("sender@remote.example", &["alice@example.test"], &clean);
    c.check(&r, "250");
    c.quit();
    let inbox = expect_messages(&s, "alice@example.test", 1);
    if !inbox[0]
        .windows(b"Subject: clean".len())
        .any(|w| w == b"Subject: clean")
    {
        fail(&s, "the delivered message is not the clean one");
    }
    assert_eq!(
        fake.connections.load(Ordering::SeqCst),
        2,
        "one scan per message"
    );
}

fn never_reading_scanner_tempfails_within_timeout(rt: Runtime) {
    let fake = FakeScanner::start(Fake::NeverRead);
    let s = server(
        rt,
        &format!("clamd = \"{}\"\ntimeout = 2", fake.addr()),
        40 << 20,
    );
    let mut c = SmtpConn::ready(s.port(Listener::Smtp));
    c.set_timeout(Duration::from_secs(120));
    c.expect("MAIL FROM:<sender@remote.example>", "250");
    c.expect("RCPT TO:<alice@example.test>", "250");
    c.expect("DATA", "354");
    // 24 MB: far more than loopback socket buffers hold, so Petrel's writes to the scanner block.
    let mut data = b"Subject: big\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    while data.len() < 24 << 20 {
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    let t0 = Instant::now();
    c.send(&data);
    let r = c.reply();
    let took = t0.elapsed();
    c.check(&r, "451 4.7.1");
    if took > Duration::from_secs(40) {
        fail(
            &s,
            format!("the reply took {took:?} with a 2 s scanner timeout"),
        );
    }
    // The session carries on.
    c.expect("NOOP", "250");
    c.quit();
    expect_messages(&s, "alice@example.test", 0);
    assert!(fake.connections.load(Ordering::SeqCst) >= 1);
}
