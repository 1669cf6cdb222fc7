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
    pub single_rcpt: Option<String>,
    /// Unix seconds of receipt.
    pub unix: i64,
    /// Leave out where the message came from (submission privacy): no `from` clause.
    pub private: bool,
}

impl Trace<'_> {
    /// The RFC 3848 `with` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, or UTF8SMTP*.
    pub fn protocol(&self) -> String {
        let mut p = String::from(match (self.lmtp, self.utf8, self.esmtp) {
            (true, _, _) => "LMTP",
            (false, true, _) => "UTF8SMTP",
            (false, false, true) => "ESMTP",
            (false, false, false) => "SMTP",
        });
        if self.tls.is_some() {
            p.push('S');
        }
        if self.authenticated {
            p.push('A');
        }
        p
    }

    /// Appends the header, folded, CRLF-terminated.
    pub fn write(&self, out: &mut Vec<u8>) {
        let ip = if self.ip.contains(':') {
            format!("IPv6:{}", self.ip)
        } else {
            self.ip.to_string()
        };
        let mut h = if self.private {
            String::from("Received: ")
        } else {
            format!("Received: from {} ([{}])\r\n\t", self.helo, ip)
        };
        if let Some(tls) = self.tls {
            h.push_str(&format!(
                "(using {} with cipher {})\r\n\t",
                tls.version, tls.cipher
            ));
        }
        h.push_str(&format!(
            "by {} (Petrel) with {} id {}",
            self.hostname,
            self.protocol(),
            self.id
        ));
        if let Some(rcpt) = &self.single_rcpt {
            h.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.unix)));
        out.extend_from_slice(h.as_bytes());
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
            single_rcpt: Some("a@example.com".into()),
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
