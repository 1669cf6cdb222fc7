//! Content scanner connections (clamd, spamd, rspamd, milters) for the async runtime: the
//! session's [`Effect::Scan`](petrel_core::Effect::Scan) steps on TCP or unix sockets, each
//! bounded by the timeout the session gives it. The connections belong to one session and are
//! closed when it ends (when the [`ScanConns`] is dropped).

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use petrel_core::effect::{ScanConn, ScanOp};
use petrel_core::{Completion, ErrorClass, StoreError};
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One scanner connection.
#[derive(Debug)]
enum Stream {
    Tcp(Async<TcpStream>),
    Unix(Async<UnixStream>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
            Stream::Unix(s) => s.write_all(bytes).await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.get_ref().shutdown(Shutdown::Both),
            Stream::Unix(s) => s.get_ref().shutdown(Shutdown::Both),
        };
    }
}

/// The scanner connections of one session.
#[derive(Debug, Default)]
pub struct ScanConns {
    conns: HashMap<ScanConn, Stream>,
}

fn failed(message: String) -> Completion {
    Completion::Failed(StoreError {
        class: ErrorClass::Temporary,
        message,
    })
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Runs `fut` for at most `limit`.
async fn limited<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Connects to `host:port` (every address it resolves to, in turn) or `unix:/path`.
async fn connect(target: &str) -> io::Result<Stream> {
    if let Some(path) = target.strip_prefix("unix:") {
        return Async::<UnixStream>::connect(path).await.map(Stream::Unix);
    }
    let mut last = io::Error::other(format!("{target}: no address"));
    for addr in smol::net::resolve(target).await? {
        match Async::<TcpStream>::connect(addr).await {
            Ok(s) => {
                let _ = s.get_ref().set_nodelay(true);
                return Ok(Stream::Tcp(s));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl ScanConns {
    /// Carries out one step and answers it as [`ScanOp`] documents.
    pub async fn execute(&mut self, session: &str, conn: ScanConn, op: ScanOp) -> Completion {
        match op {
            ScanOp::Connect { target, timeout } => {
                if let Some(old) = self.conns.remove(&conn) {
                    old.shutdown();
                }
                match limited(timeout, connect(&target)).await {
                    Ok(stream) => {
                        self.conns.insert(conn, stream);
                        Completion::Done
                    }
                    Err(e) => {
                        tracing::warn!(%session, scanner = %target, error = %describe(&e), "cannot connect to content scanner");
                        failed(describe(&e))
                    }
                }
            }
            ScanOp::Send { bytes, timeout } => {
                let Some(stream) = self.conns.get_mut(&conn) else {
                    return failed("not connected".into());
                };
                match limited(timeout, stream.write_all(&bytes)).await {
                    Ok(()) => Completion::Done,
                    Err(e) => {
                        tracing::warn!(%session, error = %describe(&e), "content scanner write failed");
                        failed(describe(&e))
                    }
                }
            }
            ScanOp::Receive { max, timeout } => {
                let Some(stream) = self.conns.get_mut(&conn) else {
                    return failed("not connected".into());
                };
                let mut buf = vec![0u8; max.clamp(1, 1 << 20)];
                match limited(timeout, stream.read(&mut buf)).await {
                    Ok(n) => {
                        buf.truncate(n);
                        Completion::Data(buf)
                    }
                    Err(e) => {
                        tracing::warn!(%session, error = %describe(&e), "content scanner read failed");
                        failed(describe(&e))
                    }
                }
            }
            ScanOp::Close { outcome, failed } => {
                if failed {
                    tracing::warn!(%session, "content scanner failed: {outcome}");
                } else {
                    tracing::info!(%session, "content scan: {outcome}");
                }
                if let Some(stream) = self.conns.remove(&conn) {
                    stream.shutdown();
                }
                Completion::Done
            }
        }
    }
}

impl Drop for ScanConns {
    fn drop(&mut self) {
        for (_, stream) in self.conns.drain() {
            stream.shutdown();
        }
    }
}
