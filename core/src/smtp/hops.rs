//! Counts `Received:` header fields as message bytes stream past, to stop mail loops
//! (RFC 5321 6.3: a message that has passed too many hops is a loop, refused with 554 5.4.6).

/// Hops after which a message is refused; RFC 5321 6.3 asks for a limit of at least 100.
pub const MAX_HOPS: u32 = 100;

const FIELD: &[u8] = b"received:";

/// Streaming counter of `Received:` fields in the header block; state survives any split.
#[derive(Debug, Clone)]
pub struct HopCounter {
    hops: u32,
    /// How much of `received:` the current line has matched; `None` once it cannot match.
    matched: Option<usize>,
    at_line_start: bool,
    in_headers: bool,
}

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter {
            hops: 0,
            matched: Some(0),
            at_line_start: true,
            in_headers: true,
        }
    }
}

impl HopCounter {
    /// Feeds the next message bytes (after dot-unstuffing).
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.in_headers {
                return;
            }
            if b == b'\n' {
                if self.at_line_start {
                    // An empty line (LF or CRLF): the header block is over.
                    self.in_headers = false;
                }
                self.at_line_start = true;
                self.matched = Some(0);
                continue;
            }
            if b == b'\r' && self.at_line_start {
                continue;
            }
            self.at_line_start = false;
            if let Some(m) = self.matched {
                if b.to_ascii_lowercase() == FIELD[m] {
                    if m + 1 == FIELD.len() {
                        self.hops += 1;
                        self.matched = None;
                    } else {
                        self.matched = Some(m + 1);
                    }
                } else {
                    self.matched = None;
                }
            }
        }
    }

    /// `Received:` fields seen so far.
    pub fn hops(&self) -> u32 {
        self.hops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_header_fields() {
        let msg = b"Received: a\r\nRECEIVED: b\r\n\tReceived: folded\r\nX-Received: no\r\nSubject: x\r\n\r\nReceived: body\r\n";
        for split in 0..msg.len() {
            let mut h = HopCounter::default();
            h.feed(&msg[..split]);
            h.feed(&msg[split..]);
            assert_eq!(h.hops(), 2, "split at {split}");
        }
    }
}
