//! The Received trace header (RFC 5321 4.4, with the RFC 3848 protocol keywords).

use crate::clock::rfc5322_date;
use crate::session::TlsInfo;

/// What the trace header records about one transaction.
pub struct Trace<'a> {
    /// The EHLO/HELO name the client gave.
    pub helo: &'a str,
    /// The client's IP address.
    pub ip: &'a str,
    /// Our hostname.
    pub hostname: &'a str,
    /// EHLO (true) or HELO.
    pub esmtp: bool,
    /// TLS parameters, when the session is encrypted.
    pub tls: Option<&'a TlsInfo>,
    /// True when the client authenticated.
    pub authenticated: bool,
    /// True when the transaction used SMTPUTF8.
    pub utf8: bool,
    /// True when the message came over LMTP.
    pub lmtp: bool,
    /// The transaction id.
    pub id: &'a str,
    /// The recipient, named only when there is exactly one (privacy of Bcc recipients).
    pub single_rcpt: Option<&'a dyn std::fmt::Display>,
    /// Unix seconds of receipt.
    pub unix: i64,
    /// Leave out where the message came from (submission privacy): no `from` clause.
    pub private: bool,
}

impl Trace<'_> {
    /// The RFC 3848 `with` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, or UTF8SMTP*.
    pub fn protocol(&self) -> String {
        let mut p = Vec::with_capacity(10);
        self.write_protocol(&mut p);
        p.into_iter().map(char::from).collect()
    }

    fn write_protocol(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match (self.lmtp, self.utf8, self.esmtp) {
            (true, _, _) => b"LMTP",
            (false, true, _) => b"UTF8SMTP",
            (false, false, true) => b"ESMTP",
            (false, false, false) => b"SMTP",
        });
        if self.tls.is_some() {
            out.push(b'S');
        }
        if self.authenticated {
            out.push(b'A');
        }
    }

    /// Appends the header, folded, CRLF-terminated. Written straight into `out`, with no
    /// temporary strings (callgrind: the pieces once cost a dozen allocations per message).
    pub fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail; the results only satisfy `write!`.
        out.extend_from_slice(b"Received: ");
        if !self.private {
            let v6 = if self.ip.contains(':') { "IPv6:" } else { "" };
            let _ = write!(out, "from {} ([{v6}{}])\r\n\t", self.helo, self.ip);
        }
        if let Some(tls) = self.tls {
            let _ = write!(
                out,
                "(using {} with cipher {})\r\n\t",
                tls.version, tls.cipher
            );
        }
        let _ = write!(out, "by {} (Petrel) with ", self.hostname);
        self.write_protocol(out);
        let _ = write!(out, " id {}", self.id);
        if let Some(rcpt) = &self.single_rcpt {
            let _ = write!(out, "\r\n\tfor <{rcpt}>");
        }
        let _ = write!(out, ";\r\n\t{}\r\n", rfc5322_date(self.unix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_shape() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
        };
        let t = Trace {
            helo: "client.example",
            ip: "::1",
            hostname: "mx.example.com",
            esmtp: true,
            tls: Some(&tls),
            authenticated: true,
            utf8: false,
            lmtp: false,
            id: "ABC01",
            single_rcpt: Some(&"a@example.com"),
            unix: 0,
            private: false,
        };
        let mut out = Vec::new();
        t.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from client.example ([IPv6:::1])\r\n\t(using TLSv1.3 with cipher \
             TLS13_AES_256_GCM_SHA384)\r\n\tby mx.example.com (Petrel) with ESMTPSA id ABC01\r\n\t\
             for <a@example.com>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn private_trace_names_no_client() {
        let t = Trace {
            helo: "johns-laptop",
            ip: "192.0.2.7",
            hostname: "mx.example.com",
            esmtp: true,
            tls: None,
            authenticated: true,
            utf8: false,
            lmtp: false,
            id: "ABC01",
            single_rcpt: None,
            unix: 0,
            private: true,
        };
        let mut out = Vec::new();
        t.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: by mx.example.com (Petrel) with ESMTPA id ABC01;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
