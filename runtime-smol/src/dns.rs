//! Async DNS: drives a [`petrel_core::dns::Lookup`] over `async-io` sockets and timers.
//!
//! Every decision (what to send, which server next, when to give up, what the answer means) is the
//! `Lookup`'s; this only moves its datagrams and TCP exchanges and tells it the time.

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use petrel_core::dns::{Answer, Lookup, RecordType, ResolverConfig, Transmit};
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// The longest a failing socket read waits before it is retried, so that a persistent socket
/// error cannot spin the executor.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Looks `name` up for `rtype` over `servers` and resolves once the [`Lookup`] decides, which it
/// always does within `config.attempts` x servers x `config.timeout` per question. Query ids are
/// seeded from the OS (`/dev/urandom`). Socket errors never escape: they end in
/// [`Answer::TempFail`] through the lookup's own retries. Dropping the future cancels the lookup.
pub async fn resolve(
    name: &str,
    rtype: RecordType,
    servers: &[SocketAddr],
    config: &ResolverConfig,
) -> Answer {
    resolve_seeded(name, rtype, servers, config, os_seed()).await
}

/// [`resolve`] with the query-id seed given by the caller (a simulator or a test).
pub async fn resolve_seeded(
    name: &str,
    rtype: RecordType,
    servers: &[SocketAddr],
    config: &ResolverConfig,
    seed: u64,
) -> Answer {
    let mut lookup = Lookup::new(name, rtype, servers, config, seed, Instant::now());
    let mut sockets = Sockets::default();
    // The server of the UDP try in flight: its family tells which socket to read.
    let mut listening: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65535];
    loop {
        while let Some(transmit) = lookup.poll_transmit() {
            match transmit {
                Transmit::Udp { server, bytes } => {
                    // Connected, so that an ICMP "port unreachable" ends the try at once
                    // instead of at its timeout; a failed send shows up as the try's timeout.
                    if let Ok(socket) = sockets.for_server(server)
                        && socket.get_ref().connect(server).is_ok()
                    {
                        let _ = socket.send(&bytes).await;
                    }
                    listening = Some(server);
                }
                Transmit::Tcp { server, bytes } => {
                    listening = None;
                    let deadline = lookup
                        .poll_timeout()
                        .unwrap_or_else(|| Instant::now() + config.timeout);
                    let result = tcp_exchange(server, &bytes, config.max_response)
                        .or(async {
                            Timer::at(deadline).await;
                            Err(io::ErrorKind::TimedOut.into())
                        })
                        .await
                        .map_err(|e| e.to_string());
                    lookup.handle_tcp(Instant::now(), server, result);
                }
            }
        }
        if let Some(answer) = lookup.result() {
            return answer.clone();
        }
        let Some(deadline) = lookup.poll_timeout() else {
            return Answer::TempFail("DNS lookup stalled".to_string());
        };
        let socket = listening.and_then(|s| sockets.existing(s));
        let Some(socket) = socket else {
            Timer::at(deadline).await;
            lookup.handle_timeout(Instant::now());
            continue;
        };
        let received = async { Some(socket.recv_from(&mut buf).await) }
            .or(async {
                Timer::at(deadline).await;
                None
            })
            .await;
        match received {
            Some(Ok((n, from))) => lookup.handle_udp(Instant::now(), from, &buf[..n]),
            None => lookup.handle_timeout(Instant::now()),
            Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if let Some(server) = listening {
                    lookup.handle_udp_error(Instant::now(), server, &e.to_string());
                }
            }
            Some(Err(_)) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                Timer::after(wait.min(ERROR_BACKOFF)).await;
                lookup.handle_timeout(Instant::now());
            }
        }
    }
}

/// One UDP socket per address family, bound to an ephemeral port on first use.
#[derive(Default)]
struct Sockets {
    v4: Option<Async<UdpSocket>>,
    v6: Option<Async<UdpSocket>>,
}

impl Sockets {
    fn for_server(&mut self, server: SocketAddr) -> io::Result<&Async<UdpSocket>> {
        let (slot, any) = match server {
            SocketAddr::V4(_) => (&mut self.v4, SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
            SocketAddr::V6(_) => (&mut self.v6, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))),
        };
        if slot.is_none() {
            *slot = Some(Async::<UdpSocket>::bind(any)?);
        }
        slot.as_ref().ok_or_else(|| io::Error::other("no socket"))
    }

    fn existing(&self, server: SocketAddr) -> Option<&Async<UdpSocket>> {
        match server {
            SocketAddr::V4(_) => self.v4.as_ref(),
            SocketAddr::V6(_) => self.v6.as_ref(),
        }
    }
}

/// Sends `query` with its 2-byte length prefix and reads one length-prefixed response. The
/// caller bounds it in time.
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    max_response: usize,
) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut stream = Async::<TcpStream>::connect(server).await?;
    stream.get_ref().set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let n = usize::from(u16::from_be_bytes(prefix));
    if n > max_response {
        return Err(io::Error::other("response over the size limit"));
    }
    let mut response = vec![0u8; n];
    stream.read_exact(&mut response).await?;
    Ok(response)
}

/// 64 bits from the OS for query ids; falls back to std's per-process random hasher keys.
fn os_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
