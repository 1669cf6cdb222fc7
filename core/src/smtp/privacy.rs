//! Header fields removed as a message streams past: on submission (privacy) those that expose
//! the sender's mail program or network address (`User-Agent`, `X-Mailer`, `X-Originating-IP`);
//! on inbound mail, `Authentication-Results` fields that claim to come from this server (RFC 8601
//! section 5: forged ones must go). Bounded: at most [`MAX_NAME`] bytes are held back while a
//! field name is read, [`MAX_AUTHSERV`] while an Authentication-Results authserv-id is; any
//! split of the input gives the same output.

/// Fields removed, lowercase.
pub const REMOVED: [&str; 4] = [
    "user-agent",
    "x-mailer",
    "x-originating-ip",
    "x-php-originating-script",
];
/// Longest field name looked at; longer names are none of ours and pass through.
pub const MAX_NAME: usize = 64;
/// Longest Authentication-Results start read to find its authserv-id.
pub const MAX_AUTHSERV: usize = 512;

/// The streaming filter (see the module docs).
#[derive(Debug, Clone)]
pub struct HeaderStrip {
    /// Remove the [`REMOVED`] fields.
    privacy: bool,
    /// Remove Authentication-Results fields with this authserv-id.
    authserv: Option<String>,
    /// Reading an Authentication-Results value up to its authserv-id.
    reading_authserv: bool,
    in_header: bool,
    at_line_start: bool,
    /// Bytes of a field's first line, held until its name is known.
    pending: Vec<u8>,
    deciding: bool,
    dropping: bool,
}

impl Default for HeaderStrip {
    /// The submission privacy filter.
    fn default() -> Self {
        HeaderStrip::new(true, None)
    }
}

impl HeaderStrip {
    /// A filter removing the privacy fields (`privacy`) and Authentication-Results fields
    /// whose authserv-id is `authserv`.
    pub fn new(privacy: bool, authserv: Option<&str>) -> Self {
        HeaderStrip {
            privacy,
            authserv: authserv.map(str::to_ascii_lowercase),
            reading_authserv: false,
            in_header: true,
            at_line_start: true,
            pending: Vec::new(),
            deciding: false,
            dropping: false,
        }
    }

    /// Filters `input` into `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for (i, &b) in input.iter().enumerate() {
            if !self.in_header {
                out.extend_from_slice(&input[i..]);
                return;
            }
            if self.reading_authserv {
                self.pending.push(b);
                if b == b';' || b == b'\n' || self.pending.len() > MAX_AUTHSERV {
                    let text = String::from_utf8_lossy(&self.pending).to_ascii_lowercase();
                    let value = text.split_once(':').map_or("", |(_, v)| v);
                    let id = value.trim_end_matches(';').trim();
                    self.dropping = self.authserv.as_deref() == Some(id);
                    self.reading_authserv = false;
                    self.release(out);
                }
                self.at_line_start = b == b'\n';
                continue;
            }
            if self.deciding {
                self.pending.push(b);
                if b == b':' {
                    let name = &self.pending[..self.pending.len() - 1];
                    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
                    if name == "authentication-results" && self.authserv.is_some() {
                        self.reading_authserv = true;
                        continue;
                    }
                    self.dropping = self.privacy && REMOVED.contains(&name.as_str());
                    self.release(out);
                } else if b == b'\n' || self.pending.len() > MAX_NAME {
                    self.dropping = false;
                    self.release(out);
                }
                self.at_line_start = b == b'\n';
                continue;
            }
            if self.at_line_start {
                self.at_line_start = false;
                match b {
                    b' ' | b'\t' => {}
                    b'\r' | b'\n' => {
                        // The empty line: the header block ends here.
                        self.in_header = false;
                        self.dropping = false;
                        out.push(b);
                        out.extend_from_slice(&input[i + 1..]);
                        return;
                    }
                    _ => {
                        self.deciding = true;
                        self.pending.push(b);
                        continue;
                    }
                }
            }
            if !self.dropping {
                out.push(b);
            }
            self.at_line_start = b == b'\n';
        }
    }

    /// The end of the message: anything held back is released.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.dropping = false;
        self.reading_authserv = false;
        self.release(out);
    }

    fn release(&mut self, out: &mut Vec<u8>) {
        self.deciding = false;
        if !self.dropping {
            out.extend_from_slice(&self.pending);
        }
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSG: &[u8] = b"From: a@example.com\r\nUser-Agent: Mozilla/5.0 Thunderbird/128.0\r\nX-Mailer: PHPMailer\r\n\t6.9 (folded)\r\nSubject: hi\r\nx-originating-ip: [192.0.2.7]\r\nX-Mailer-Like: kept\r\n\r\nUser-Agent: in the body stays\r\n";
    const WANT: &[u8] = b"From: a@example.com\r\nSubject: hi\r\nX-Mailer-Like: kept\r\n\r\nUser-Agent: in the body stays\r\n";

    fn run(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut f = HeaderStrip::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts {
            let c = c.min(input.len()).max(last);
            f.feed(&input[last..c], &mut out);
            last = c;
        }
        f.feed(&input[last..], &mut out);
        f.finish(&mut out);
        out
    }

    #[test]
    fn removes_the_fields_and_their_continuations() {
        assert_eq!(run(MSG, &[]), WANT);
        // Header only, no body, field at the very end.
        assert_eq!(run(b"Subject: x\r\nX-Mailer: y", &[]), b"Subject: x\r\n");
        assert_eq!(run(b"Subject: x", &[]), b"Subject: x");
        // A line without a colon and an overlong name pass through.
        let long = format!("{}: v\r\n\r\n", "X".repeat(100));
        assert_eq!(run(long.as_bytes(), &[]), long.as_bytes());
    }

    #[test]
    fn forged_authentication_results_go() {
        let msg = b"Authentication-Results: MX.example.com;\r\n\tspf=pass smtp.mailfrom=x@y\r\nAuthentication-Results: other.example; dkim=pass\r\nAuthentication-Results: mx.example.com; dmarc=pass\r\nUser-Agent: kept here\r\nSubject: s\r\n\r\nbody\r\n";
        let mut f = HeaderStrip::new(false, Some("mx.example.com"));
        let mut out = Vec::new();
        for b in msg.iter() {
            f.feed(std::slice::from_ref(b), &mut out);
        }
        f.finish(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: other.example; dkim=pass\r\nUser-Agent: kept here\r\nSubject: s\r\n\r\nbody\r\n"
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_output(cuts in proptest::collection::vec(0..MSG.len(), 0..8)) {
            let mut cuts = cuts;
            cuts.sort();
            prop_assert_eq!(run(MSG, &cuts), WANT);
        }

        #[test]
        fn never_grows_and_keeps_the_body(head in "[ -~\r\n\t]{0,200}", body in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut msg = head.into_bytes();
            msg.extend_from_slice(b"\r\n\r\n");
            msg.extend_from_slice(&body);
            let out = run(&msg, &[]);
            prop_assert!(out.len() <= msg.len());
            prop_assert!(out.ends_with(&body));
        }
    }
}
