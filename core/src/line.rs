//! Splits a byte stream into command lines (SMTP, POP3, IMAP command parts), with a hard bound on the memory a line may take.

/// Longest line kept (RFC 4954 allows AUTH lines of 12288 octets); longer ones are discarded.
pub const MAX_LINE: usize = 12_288 + 2;

/// How often, while discarding an over-long line, another error is reported.
const DISCARD_REPORT: usize = 64 * 1024;

/// One result of [`LineReader::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without CRLF (a bare LF also ends a command line).
    Complete(Vec<u8>),
    /// The line exceeded [`MAX_LINE`]; its bytes are being discarded up to the next LF.
    TooLong,
}

/// Incremental line splitter; state survives any split of the input.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    discarding: Option<usize>,
}

impl LineReader {
    /// Consumes bytes from `input` until a line is complete (or reported too long). Returns the
    /// bytes consumed and the line, if one ended.
    pub fn read(&mut self, input: &[u8]) -> (usize, Option<Line>) {
        let newline = input.iter().position(|&b| b == b'\n');
        if let Some(discarded) = self.discarding {
            return match newline {
                Some(i) => {
                    self.discarding = None;
                    (i + 1, None)
                }
                None if discarded + input.len() >= DISCARD_REPORT => {
                    self.discarding = Some(0);
                    (input.len(), Some(Line::TooLong))
                }
                None => {
                    self.discarding = Some(discarded + input.len());
                    (input.len(), None)
                }
            };
        }
        let take = newline.map_or(input.len(), |i| i + 1);
        if self.buf.len() + take > MAX_LINE {
            self.buf = Vec::new();
            return match newline {
                Some(i) => (i + 1, Some(Line::TooLong)),
                None => {
                    self.discarding = Some(input.len());
                    (input.len(), Some(Line::TooLong))
                }
            };
        }
        self.buf.extend_from_slice(&input[..take]);
        if newline.is_none() {
            return (take, None);
        }
        let mut line = std::mem::take(&mut self.buf);
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (take, Some(Line::Complete(line)))
    }

    /// True when part of a line has been read.
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding.is_some()
    }

    /// Bytes held for the partial line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets any partial line (after STARTTLS).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.discarding = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_bounds() {
        let mut r = LineReader::default();
        assert_eq!(r.read(b"NO"), (2, None));
        assert_eq!(
            r.read(b"OP\r\nQUIT\r\n"),
            (4, Some(Line::Complete(b"NOOP".to_vec())))
        );
        let big = vec![b'x'; 100_000];
        let (n, line) = r.read(&big);
        assert_eq!((n, line), (100_000, Some(Line::TooLong)));
        assert!(r.buf.capacity() <= MAX_LINE);
        assert_eq!(r.read(b"tail\nRSET\r\n"), (5, None));
        assert_eq!(
            r.read(b"RSET\r\n"),
            (6, Some(Line::Complete(b"RSET".to_vec())))
        );
    }
}
