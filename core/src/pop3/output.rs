//! Streams a message out as a POP3 multi-line response: CRLF line ends (bare LF is converted),
//! dot-stuffing, and for TOP the header plus the first N body lines. State survives any
//! split of the message into chunks.

/// Incremental RETR/TOP encoder.
#[derive(Debug, Clone)]
pub struct MessageEncoder {
    at_line_start: bool,
    prev_cr: bool,
    /// Bytes of the current line so far, CR included.
    line_len: usize,
    in_headers: bool,
    /// For TOP: body lines still to send.
    body_lines_left: Option<u64>,
    done: bool,
}

impl MessageEncoder {
    /// For RETR (`top = None`) or `TOP n` (`top = Some(n)`).
    pub fn new(top: Option<u64>) -> Self {
        MessageEncoder {
            at_line_start: true,
            prev_cr: false,
            line_len: 0,
            in_headers: true,
            body_lines_left: top,
            done: false,
        }
    }

    /// True once TOP has sent all it should; no more input is needed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Encodes the next chunk of the message into `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32);
        for &b in chunk {
            if self.done {
                return;
            }
            if self.at_line_start {
                if !self.in_headers && self.body_lines_left == Some(0) {
                    self.done = true;
                    return;
                }
                if b == b'.' {
                    out.push(b'.');
                }
            }
            if b == b'\n' {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                let empty = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
                if self.in_headers && empty {
                    self.in_headers = false;
                } else if !self.in_headers
                    && let Some(left) = &mut self.body_lines_left
                {
                    *left = left.saturating_sub(1);
                }
                self.at_line_start = true;
                self.prev_cr = false;
                self.line_len = 0;
                continue;
            }
            out.push(b);
            self.line_len += 1;
            self.at_line_start = false;
            self.prev_cr = b == b'\r';
        }
    }

    /// Ends the response: a final CRLF if the message lacked one, then the terminator.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(msg: &[u8], top: Option<u64>, split: usize) -> Vec<u8> {
        let mut e = MessageEncoder::new(top);
        let mut out = Vec::new();
        let split = split.min(msg.len());
        e.feed(&msg[..split], &mut out);
        e.feed(&msg[split..], &mut out);
        e.finish(&mut out);
        out
    }

    #[test]
    fn retr_stuffs_and_fixes_line_ends() {
        let msg = b"Subject: x\n\n.dot\r\nbare\nlast";
        for split in 0..=msg.len() {
            assert_eq!(
                encode(msg, None, split),
                b"Subject: x\r\n\r\n..dot\r\nbare\r\nlast\r\n.\r\n"
            );
        }
    }

    #[test]
    fn top_sends_headers_and_n_lines() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        for split in 0..=msg.len() {
            assert_eq!(encode(msg, Some(0), split), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
            assert_eq!(
                encode(msg, Some(2), split),
                b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
            );
            assert_eq!(
                encode(msg, Some(99), split),
                b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n"
            );
        }
    }
}
