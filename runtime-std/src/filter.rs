//! Content scanner connections (clamd, spamd, rspamd, milters) for the blocking runtime: the
//! session's [`Effect::Scan`](petrel_core::Effect::Scan) steps on TCP or unix sockets, each
//! bounded by the timeout the session gives it (socket timeouts). The connections belong to one
//! session and are closed when it ends (when the [`ScanConns`] is dropped).

use petrel_core::effect::{ScanConn, ScanOp};
use petrel_core::{Completion, ErrorClass, StoreError};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One scanner connection.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes),
            Stream::Unix(s) => s.write_all(bytes),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
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

/// Connects to `host:port` (every address it resolves to, in turn) or `unix:/path`.
fn connect(target: &str, timeout: Duration) -> io::Result<Stream> {
    let timeout = timeout.max(Duration::from_millis(1));
    if let Some(path) = target.strip_prefix("unix:") {
        return UnixStream::connect(path).map(Stream::Unix);
    }
    let mut last = io::Error::other(format!("{target}: no address"));
    for addr in target.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(Stream::Tcp(s));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl ScanConns {
    /// Carries out one step and answers it as [`ScanOp`] documents.
    pub fn execute(&mut self, session: &str, conn: ScanConn, op: ScanOp) -> Completion {
        match op {
            ScanOp::Connect { target, timeout } => {
                if let Some(old) = self.conns.remove(&conn) {
                    old.shutdown();
                }
                match connect(&target, timeout) {
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
                let result = stream
                    .set_timeouts(timeout)
                    .and_then(|()| stream.write_all(&bytes));
                match result {
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
                let result = stream.set_timeouts(timeout).and_then(|()| {
                    loop {
                        match stream.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            other => break other,
                        }
                    }
                });
                match result {
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
