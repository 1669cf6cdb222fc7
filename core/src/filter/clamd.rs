//! ClamAV's clamd, `zINSTREAM` command: the message goes out as length-prefixed chunks while it
//! arrives, a zero-length chunk ends it, and clamd answers one NUL-terminated line:
//! `stream: OK`, `stream: NAME FOUND` or `... ERROR` (such as `INSTREAM size limit exceeded.
//! ERROR` when the message is longer than clamd's `StreamMaxLength`).

use super::{ScanContext, ScanError, ScannerClient, Verdict};

/// Most bytes of one INSTREAM chunk (clamd reads chunks of any size up to its stream limit).
const MAX_CHUNK: usize = 64 * 1024;

/// Unsent bytes held before [`ScannerClient::ready_for_body`] turns false.
const HIGH_WATER: usize = 64 * 1024;

/// Longest reply line clamd sends (a virus name is short; anything longer is garbage).
const MAX_REPLY: usize = 4096;

/// The clamd INSTREAM client for one message.
#[derive(Debug, Default)]
pub struct ClamdClient {
    out: Vec<u8>,
    reply: Vec<u8>,
    begun: bool,
    ended: bool,
    verdict: Option<Verdict>,
}

impl ClamdClient {
    /// A client for one message; connect, then [`ScannerClient::begin`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the complete reply line (without its NUL or newline).
    fn parse_reply(&mut self) -> Result<(), ScanError> {
        let line = String::from_utf8_lossy(&self.reply).trim().to_string();
        // `stream: ...`; older clamd versions may answer without the prefix.
        let rest = line.strip_prefix("stream:").unwrap_or(&line).trim();
        if rest == "OK" {
            self.verdict = Some(Verdict::Accept {
                edits: Vec::new(),
                spam: None,
                quarantine: None,
            });
            return Ok(());
        }
        if let Some(name) = rest.strip_suffix(" FOUND") {
            let name: String = name
                .trim()
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .take(128)
                .collect();
            if name.is_empty() {
                return Err(ScanError(format!("clamd: unexpected reply {line:?}")));
            }
            self.verdict = Some(Verdict::Reject {
                code: 554,
                status: "5.7.1".into(),
                text: format!("Virus found: {name}"),
            });
            return Ok(());
        }
        if rest.ends_with("ERROR") {
            return Err(ScanError(format!("clamd: {rest}")));
        }
        Err(ScanError(format!("clamd: unexpected reply {line:?}")))
    }
}

impl ScannerClient for ClamdClient {
    fn begin(&mut self, _ctx: &ScanContext) {
        if !self.begun {
            self.begun = true;
            self.out.extend_from_slice(b"zINSTREAM\0");
        }
    }

    fn body(&mut self, chunk: &[u8]) {
        if self.ended || self.verdict.is_some() {
            return;
        }
        for piece in chunk.chunks(MAX_CHUNK) {
            let len = u32::try_from(piece.len()).unwrap_or(u32::MAX);
            self.out.extend_from_slice(&len.to_be_bytes());
            self.out.extend_from_slice(piece);
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.out.extend_from_slice(&[0, 0, 0, 0]);
        }
    }

    fn poll_output(&mut self, out: &mut Vec<u8>) -> bool {
        if self.out.is_empty() {
            return false;
        }
        out.append(&mut self.out);
        true
    }

    fn ready_for_body(&self) -> bool {
        self.out.len() < HIGH_WATER && self.verdict.is_none()
    }

    fn wants_input(&self) -> bool {
        // clamd may answer before the end (a size limit), so listening is always right.
        self.begun && self.verdict.is_none()
    }

    fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        match bytes.iter().position(|&b| b == 0 || b == b'\n') {
            Some(end) => {
                self.reply.extend_from_slice(&bytes[..end]);
                self.parse_reply()
            }
            None => {
                self.reply.extend_from_slice(bytes);
                if self.reply.len() > MAX_REPLY {
                    return Err(ScanError("clamd: reply too long".into()));
                }
                Ok(())
            }
        }
    }

    fn handle_eof(&mut self) -> Result<(), ScanError> {
        if self.verdict.is_some() {
            return Ok(());
        }
        if self.reply.is_empty() {
            return Err(ScanError(
                "clamd closed the connection without a reply".into(),
            ));
        }
        // A reply without its terminator: judge what came.
        self.parse_reply()
    }

    fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }
}
