//! A private dnsmasq on a free loopback port serving a small test zone, and the checks both
//! runtime drivers must pass against it. Shared by runtime-std's and runtime-smol's tests
//! (`#[path]`), so the two drivers are held to the very same assertions.
//!
//! dnsmasq comes from Debian's `dnsmasq-base` (the binary without the system service), installed
//! by `scripts/test`.

#![allow(dead_code)]

use petrel_core::dns::{Answer, Record, RecordType, ResolverConfig, mx_hosts};
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `big.example.test` has this many TXT records of `BIG_TXT_LEN` bytes: over the 1232-byte EDNS
/// size, so the UDP answer is truncated and only TCP gets it whole.
pub const BIG_TXT_RECORDS: usize = 10;
pub const BIG_TXT_LEN: usize = 200;

/// A running dnsmasq, killed on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

fn binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}

fn big_txt(i: usize) -> String {
    format!("{i}{}", "x".repeat(BIG_TXT_LEN - 1))
}

impl Dnsmasq {
    /// Starts dnsmasq in the foreground (no daemon, no pid file, no /etc config, no upstream)
    /// and waits until it accepts TCP. Panics if dnsmasq is not installed.
    pub fn start() -> Dnsmasq {
        let mut last_err = String::new();
        for _ in 0..10 {
            let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|s| s.local_addr())
                .expect("free port")
                .port();
            let mut args: Vec<String> = [
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--no-resolv",
                "--no-hosts",
                "--log-facility=-",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local=/test/",
                "--mx-host=example.test,mx1.example.test,10",
                "--mx-host=example.test,mx2.example.test,20",
                "--host-record=mx1.example.test,192.0.2.1,2001:db8::1",
                "--host-record=mx2.example.test,192.0.2.2",
                "--cname=alias.example.test,mx1.example.test",
                "--txt-record=example.test,v=spf1 mx -all",
                // Two character-strings: a TXT record reads as their concatenation.
                "--txt-record=sel._domainkey.example.test,v=DKIM1; k=ed25519; ,p=11qYAYKxCrfVS/7TyWQHOg==",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.push(format!("--port={port}"));
            for i in 0..BIG_TXT_RECORDS {
                args.push(format!("--txt-record=big.example.test,{}", big_txt(i)));
            }
            let mut child = Command::new(binary())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start dnsmasq ({e}): install Debian's dnsmasq-base (scripts/test does)")
                });
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    last_err = err;
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Dnsmasq { child, addr };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = "dnsmasq did not start listening".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("dnsmasq would not start: {last_err}");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP socket that is bound but never answers: a server that times out, without relying on
/// ICMP. On IPv6 loopback when the host has it, so the driver's second socket family is used.
pub fn silent_server() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind a silent server");
    let addr = socket.local_addr().expect("local addr");
    (socket, addr)
}

/// A resolve function of either driver.
pub type Resolve<'a> = &'a dyn Fn(&str, RecordType, &[SocketAddr], &ResolverConfig) -> Answer;

fn records(answer: Answer) -> (Vec<Record>, String) {
    match answer {
        Answer::Records {
            records,
            canonical_name,
            ..
        } => (records, canonical_name),
        other => panic!("expected records, got {other:?}"),
    }
}

pub fn check_mx(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let answer = resolve(
        "Example.TEST.",
        RecordType::Mx,
        &[server.addr],
        &ResolverConfig::default(),
    );
    assert_eq!(
        mx_hosts("example.test", &answer, 1).unwrap(),
        ["mx1.example.test", "mx2.example.test"]
    );
    let (mut recs, name) = records(answer);
    recs.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(name, "example.test");
    assert_eq!(
        recs,
        [
            Record::Mx {
                preference: 10,
                exchange: "mx1.example.test".into()
            },
            Record::Mx {
                preference: 20,
                exchange: "mx2.example.test".into()
            },
        ]
    );
}

pub fn check_addresses(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let config = ResolverConfig::default();
    let a = resolve("mx1.example.test", RecordType::A, &[server.addr], &config);
    assert_eq!(records(a).0, [Record::A(Ipv4Addr::new(192, 0, 2, 1))]);
    let aaaa = resolve(
        "mx1.example.test",
        RecordType::Aaaa,
        &[server.addr],
        &config,
    );
    assert_eq!(
        records(aaaa).0,
        [Record::Aaaa("2001:db8::1".parse().unwrap())]
    );
}

pub fn check_txt(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let txt = resolve(
        "example.test",
        RecordType::Txt,
        &[server.addr],
        &ResolverConfig::default(),
    );
    assert_eq!(records(txt).0, [Record::Txt(b"v=spf1 mx -all".to_vec())]);
    let dkim = resolve(
        "sel._domainkey.example.test",
        RecordType::Txt,
        &[server.addr],
        &ResolverConfig::default(),
    );
    assert_eq!(
        records(dkim).0,
        [Record::Txt(
            b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg==".to_vec()
        )]
    );
}

/// The answer does not fit the 1232-byte EDNS size: only the TCP retry gets all of it.
pub fn check_truncated_then_tcp(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let txt = resolve(
        "big.example.test",
        RecordType::Txt,
        &[server.addr],
        &ResolverConfig::default(),
    );
    let (mut recs, _) = records(txt);
    recs.sort_by_key(|r| format!("{r:?}"));
    let expect: Vec<Record> = (0..BIG_TXT_RECORDS)
        .map(|i| Record::Txt(big_txt(i).into_bytes()))
        .collect();
    assert_eq!(recs, expect);
}

pub fn check_cname(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let a = resolve(
        "alias.example.test",
        RecordType::A,
        &[server.addr],
        &ResolverConfig::default(),
    );
    let (recs, name) = records(a);
    assert_eq!(recs, [Record::A(Ipv4Addr::new(192, 0, 2, 1))]);
    assert_eq!(name, "mx1.example.test");
}

pub fn check_nxdomain_and_nodata(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let config = ResolverConfig::default();
    let nx = resolve("nope.example.test", RecordType::A, &[server.addr], &config);
    assert_eq!(nx, Answer::NxDomain);
    assert_eq!(
        mx_hosts(
            "nope.example.test",
            &resolve("nope.example.test", RecordType::Mx, &[server.addr], &config),
            0
        ),
        Err(petrel_core::dns::MxError::NoSuchDomain)
    );
    // example.test exists (MX, TXT) but has no address.
    let nodata = resolve("example.test", RecordType::A, &[server.addr], &config);
    assert_eq!(nodata, Answer::NoData);
}

/// The first server never answers: after its timeout the lookup moves on to dnsmasq.
pub fn check_silent_server_then_next(resolve: Resolve<'_>) {
    let server = Dnsmasq::start();
    let (_silent, silent) = silent_server();
    let config = ResolverConfig {
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..ResolverConfig::default()
    };
    let started = Instant::now();
    let a = resolve(
        "mx2.example.test",
        RecordType::A,
        &[silent, server.addr],
        &config,
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(records(a).0, [Record::A(Ipv4Addr::new(192, 0, 2, 2))]);
}

/// Nobody answers: TempFail after attempts x servers x timeout, not before and not much later.
pub fn check_all_silent(resolve: Resolve<'_>) {
    let (_s1, a1) = silent_server();
    let (_s2, a2) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .map(|s| {
            let a = s.local_addr().unwrap();
            (s, a)
        })
        .unwrap();
    let config = ResolverConfig {
        timeout: Duration::from_millis(150),
        attempts: 2,
        ..ResolverConfig::default()
    };
    let started = Instant::now();
    let answer = resolve("example.test", RecordType::Mx, &[a1, a2], &config);
    let took = started.elapsed();
    assert!(matches!(answer, Answer::TempFail(_)), "{answer:?}");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
