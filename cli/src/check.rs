//! `petrel check DOMAIN`: the deliverability doctor. Looks at DOMAIN the way receivers do (MX,
//! addresses, PTR, SPF, DKIM, DMARC, TLS on the MX, open relay) and prints one finding a line:
//! `OK`, `WARN` or `FAIL`, what was found, and for problems the exact record or setting to fix.
//! Exit code 0 when nothing failed, 1 otherwise.

use crate::Failure;
use crate::config::Config;
use petrel_core::dns::{Answer, Record, RecordType, ResolverConfig};
use petrel_core::spf::{SpfCheck, SpfLimits, SpfResult};
use petrel_runtime_std::dns::resolve;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// One finding.
#[derive(Debug)]
struct Finding {
    level: &'static str,
    what: String,
    fix: Option<String>,
}

struct Doctor<'a> {
    config: &'a Config,
    dns: ResolverConfig,
    findings: Vec<Finding>,
    last_spf_problem: String,
}

impl Doctor<'_> {
    fn ok(&mut self, what: impl Into<String>) {
        self.findings.push(Finding {
            level: "OK",
            what: what.into(),
            fix: None,
        });
    }
    fn warn(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            level: "WARN",
            what: what.into(),
            fix: Some(fix.into()),
        });
    }
    fn fail(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding {
            level: "FAIL",
            what: what.into(),
            fix: Some(fix.into()),
        });
    }

    fn lookup(&self, name: &str, rtype: RecordType) -> Answer {
        resolve(name, rtype, &self.config.relay.resolvers, &self.dns)
    }

    /// A and AAAA addresses; an error only when neither lookup worked.
    fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for rtype in [RecordType::A, RecordType::Aaaa] {
            match self.lookup(host, rtype) {
                Answer::Records { records, .. } => {
                    out.extend(records.iter().filter_map(|r| match r {
                        Record::A(a) => Some(IpAddr::V4(*a)),
                        Record::Aaaa(a) => Some(IpAddr::V6(*a)),
                        _ => None,
                    }))
                }
                Answer::TempFail(e) | Answer::PermFail(e) => errors.push(e),
                Answer::NoData | Answer::NxDomain => {}
            }
        }
        if out.is_empty() && !errors.is_empty() {
            return Err(format!("lookup failed: {}", errors.join("; ")));
        }
        Ok(out)
    }

    fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        match self.lookup(name, RecordType::Txt) {
            Answer::Records { records, .. } => Ok(records
                .iter()
                .filter_map(|r| match r {
                    Record::Txt(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    _ => None,
                })
                .collect()),
            Answer::NoData | Answer::NxDomain => Ok(Vec::new()),
            Answer::TempFail(e) | Answer::PermFail(e) => Err(e),
        }
    }

    /// MX records: present, not CNAMEs, with addresses. Returns (host, addresses).
    fn mx(&mut self, domain: &str) -> Vec<(String, Vec<IpAddr>)> {
        let hosts: Vec<String> = match self.lookup(domain, RecordType::Mx) {
            Answer::Records { records, .. } => {
                let mut mx: Vec<(u16, String)> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Mx {
                            preference,
                            exchange,
                        } => Some((*preference, exchange.clone())),
                        _ => None,
                    })
                    .collect();
                mx.sort();
                mx.into_iter().map(|(_, h)| h).collect()
            }
            Answer::NoData => {
                self.warn(
                    format!("MX: {domain} has no MX record (mail goes to its A record)"),
                    format!("{domain}. IN MX 10 {}.", self.config.hostname),
                );
                vec![domain.to_string()]
            }
            Answer::NxDomain => {
                self.fail(
                    format!("MX: {domain} does not exist in the DNS"),
                    format!(
                        "publish the zone with: {domain}. IN MX 10 {}.",
                        self.config.hostname
                    ),
                );
                return Vec::new();
            }
            Answer::TempFail(e) | Answer::PermFail(e) => {
                self.fail(
                    format!("MX: lookup of {domain} failed: {e}"),
                    "check the DNS servers",
                );
                return Vec::new();
            }
        };
        if hosts.iter().any(|h| h == ".") {
            self.fail(
                format!("MX: {domain} publishes a null MX: it refuses all mail"),
                format!("{domain}. IN MX 10 {}.", self.config.hostname),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for host in hosts {
            if let Answer::Records { records, .. } = self.lookup(&host, RecordType::Cname)
                && records.iter().any(|r| matches!(r, Record::Cname(_)))
            {
                self.fail(
                    format!("MX: {host} is a CNAME (RFC 5321 5.1 forbids it)"),
                    format!("point the MX at the host's own name, or give {host} A/AAAA records"),
                );
            }
            match self.addresses(&host) {
                Ok(addrs) if !addrs.is_empty() => {
                    let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
                    self.ok(format!("MX: {host} -> {}", list.join(", ")));
                    out.push((host, addrs));
                }
                Ok(_) => self.fail(
                    format!("MX: {host} has no A or AAAA record"),
                    format!("{host}. IN A <this server's address>"),
                ),
                Err(e) => self.fail(format!("MX: {host}: {e}"), "check the DNS servers"),
            }
        }
        out
    }

    /// The forward and reverse DNS of this server's hostname agree.
    fn ptr(&mut self) {
        let host = self.config.hostname.clone();
        let addrs = match self.addresses(&host) {
            Ok(a) if !a.is_empty() => a,
            Ok(_) => {
                self.fail(
                    format!("PTR: hostname {host} has no address"),
                    format!("{host}. IN A <this server's address>"),
                );
                return;
            }
            Err(e) => {
                self.fail(format!("PTR: {host}: {e}"), "check the DNS servers");
                return;
            }
        };
        for ip in addrs {
            let name = reverse_name(ip);
            let names: Vec<String> = match self.lookup(&name, RecordType::Ptr) {
                Answer::Records { records, .. } => records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Ptr(p) => Some(p.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
                self.ok(format!("PTR: {ip} -> {host}, and {host} -> {ip}"));
            } else if names.is_empty() {
                self.warn(
                    format!("PTR: {ip} has no reverse name"),
                    format!("ask the owner of {ip} for: {name}. IN PTR {host}."),
                );
            } else {
                self.warn(
                    format!("PTR: {ip} -> {} (not {host})", names.join(", ")),
                    format!(
                        "{name}. IN PTR {host}.  (or set hostname = \"{}\")",
                        names[0]
                    ),
                );
            }
        }
    }

    /// SPF: one valid record, within the lookup limits, authorising the MX addresses.
    fn spf(&mut self, domain: &str, mx: &[(String, Vec<IpAddr>)]) {
        let suggestion = format!("{domain}. IN TXT \"v=spf1 mx -all\"");
        let records = match self.txt(domain) {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    format!("SPF: TXT lookup of {domain} failed: {e}"),
                    "check the DNS servers",
                );
                return;
            }
        };
        let spf: Vec<&String> = records
            .iter()
            .filter(|t| petrel_core::spf::record::is_spf_record(t.as_bytes()))
            .collect();
        match spf.as_slice() {
            [] => {
                self.fail(format!("SPF: {domain} publishes no SPF record"), suggestion);
                return;
            }
            [_, _, ..] => {
                self.fail(
                    format!(
                        "SPF: {domain} publishes {} SPF records (permerror)",
                        spf.len()
                    ),
                    suggestion,
                );
                return;
            }
            [one] => {
                if let Err(e) = petrel_core::spf::record::SpfRecord::parse(one) {
                    self.fail(format!("SPF: {one:?} does not parse: {e}"), suggestion);
                    return;
                }
                self.ok(format!("SPF: {one}"));
            }
        }
        // A check from an address no record names walks every include and redirect: it shows
        // whether the record stays within the 10-lookup and void-lookup limits.
        let probe: IpAddr = "192.0.2.1".parse().expect("a TEST-NET address");
        match self.evaluate_spf(probe, domain).result {
            SpfResult::PermError => self.fail(
                format!(
                    "SPF: evaluating the record fails (permerror: {})",
                    self.last_spf_problem
                ),
                "flatten includes to stay under 10 DNS-querying terms (RFC 7208 4.6.4)",
            ),
            SpfResult::TempError => self.warn(
                "SPF: a lookup failed while evaluating the record",
                "retry later",
            ),
            _ => self.ok("SPF: within the 10-lookup and void-lookup limits"),
        }
        for (host, addrs) in mx {
            for ip in addrs {
                let result = self.evaluate_spf(*ip, domain).result;
                if result == SpfResult::Pass {
                    self.ok(format!("SPF: the MX {host} ({ip}) may send for {domain}"));
                } else {
                    self.warn(
                        format!("SPF: the MX {host} ({ip}) gets {result} for {domain}"),
                        format!(
                            "add \"ip{}:{ip}\" or \"mx\" to the record",
                            if ip.is_ipv4() { 4 } else { 6 }
                        ),
                    );
                }
            }
        }
    }

    fn evaluate_spf(&mut self, ip: IpAddr, domain: &str) -> petrel_core::spf::SpfOutcome {
        let mut check = SpfCheck::new(
            ip,
            domain,
            &format!("postmaster@{domain}"),
            &self.config.hostname,
            &self.config.hostname,
            0,
            SpfLimits::default(),
        );
        for _ in 0..64 {
            if let Some(o) = check.outcome() {
                self.last_spf_problem = o.problem.clone().unwrap_or_default();
                return o.clone();
            }
            for (name, rtype) in check.queries() {
                let answer = self.lookup(&name, rtype);
                check.answer(&name, rtype, &answer);
            }
        }
        petrel_core::spf::SpfOutcome {
            result: SpfResult::TempError,
            domain: domain.to_string(),
            mechanism: None,
            explanation: None,
            problem: Some("evaluation did not finish".into()),
        }
    }

    /// DKIM: each local key is published and matches.
    fn dkim(&mut self, domain: &str) {
        let fs = petrel_store::RealFs;
        let keys = match petrel_store::dkim_keys::keys_for(&fs, &self.config.data_dir, domain) {
            Ok(k) => k,
            Err(e) => {
                self.fail(
                    format!("DKIM: cannot read the keys of {domain}: {e}"),
                    "check DATA_DIR/dkim/",
                );
                return;
            }
        };
        if keys.is_empty() {
            self.fail(
                format!("DKIM: no signing key for {domain}"),
                format!(
                    "petrel dkim keygen {domain} --selector {}",
                    default_selector()
                ),
            );
            return;
        }
        for (selector, key) in keys {
            let name = format!("{selector}._domainkey.{domain}");
            let want = key.public_key_record();
            let published = match self.txt(&name) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(
                        format!("DKIM: TXT lookup of {name} failed: {e}"),
                        "check the DNS servers",
                    );
                    continue;
                }
            };
            let want_p = tag(&want, "p");
            match published.iter().find(|t| tag(t, "p").is_some()) {
                None => self.fail(
                    format!("DKIM: selector {selector} is not published"),
                    format!("{name}. IN TXT {}", quoted_strings(&want)),
                ),
                Some(t) if tag(t, "p") == want_p => {
                    self.ok(format!("DKIM: {name} publishes the key that signs"))
                }
                Some(_) => self.fail(
                    format!("DKIM: {name} publishes a different key than the one that signs"),
                    format!("{name}. IN TXT {}", quoted_strings(&want)),
                ),
            }
        }
    }

    /// DMARC: a record is published, with a policy that protects the domain.
    fn dmarc(&mut self, domain: &str) {
        let name = format!("_dmarc.{domain}");
        let suggestion =
            format!("{name}. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\"");
        let records = match self.txt(&name) {
            Ok(r) => r,
            Err(e) => {
                self.fail(
                    format!("DMARC: TXT lookup of {name} failed: {e}"),
                    "check the DNS servers",
                );
                return;
            }
        };
        let parsed: Vec<_> = records
            .iter()
            .filter_map(|t| petrel_core::auth::dmarc::parse_record(t).map(|r| (t, r)))
            .collect();
        match parsed.as_slice() {
            [] => self.fail(
                format!("DMARC: {domain} publishes no DMARC record"),
                suggestion,
            ),
            [(text, r)] if r.policy == petrel_core::auth::dmarc::Policy::None => {
                self.warn(format!("DMARC: {text} (p=none only monitors)"), suggestion)
            }
            [(text, _)] => self.ok(format!("DMARC: {text}")),
            _ => self.fail(
                format!("DMARC: {name} has several DMARC records (ignored by receivers)"),
                suggestion,
            ),
        }
    }

    /// On each MX: STARTTLS offered, a certificate valid for the MX name, and no open relay.
    fn smtp(&mut self, mx: &[(String, Vec<IpAddr>)]) {
        let tls = match crate::tls::client_config(Some(std::path::Path::new(SYSTEM_CA)), "tls") {
            Ok(c) => Some(c),
            Err(e) => {
                self.warn(
                    format!("TLS: cannot load the system CA bundle: {e}"),
                    "install ca-certificates",
                );
                None
            }
        };
        for (host, addrs) in mx {
            let Some(ip) = addrs.first() else { continue };
            let addr = SocketAddr::new(*ip, self.config.relay.mx_port);
            match probe(addr, host, &self.config.hostname, tls.clone()) {
                Err(e) => self.fail(
                    format!("SMTP: cannot talk to {host} ({addr}): {e}"),
                    "check that the server runs and port 25 is open",
                ),
                Ok(p) => {
                    if p.starttls {
                        self.ok(format!("TLS: {host} offers STARTTLS"));
                    } else {
                        self.fail(
                            format!("TLS: {host} does not offer STARTTLS"),
                            "configure [tls] cert and key",
                        );
                    }
                    match p.certificate {
                        Some(Ok(())) => self.ok(format!("TLS: the certificate of {host} is valid for that name")),
                        Some(Err(e)) => self.fail(
                            format!("TLS: the certificate of {host} is not valid: {e}"),
                            format!("get a certificate for {host} from a public CA and set [tls] cert and key"),
                        ),
                        None => {}
                    }
                    match p.relay_reply {
                        Some(code) if code >= 500 => self.ok(format!("relay: {host} refuses to relay for strangers ({code})")),
                        Some(code) if code < 400 => self.fail(
                            format!("relay: {host} accepted a recipient at another domain without authentication: an open relay"),
                            "accept mail only for local domains on port 25",
                        ),
                        Some(code) => self.warn(format!("relay: {host} answered {code} to a relay attempt"), "it should refuse with 5xx"),
                        None => {}
                    }
                }
            }
        }
    }
}

/// Where Debian keeps the trusted CAs.
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

fn default_selector() -> String {
    "s1".into()
}

/// The value of tag `name` in a tag=value list, whitespace removed.
fn tag(text: &str, name: &str) -> Option<String> {
    text.split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// A TXT value as DNS zone strings of at most 255 bytes.
fn quoted_strings(text: &str) -> String {
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("( {} )", parts.join(" "))
}

/// `4.3.2.1.in-addr.arpa` / nibbles `.ip6.arpa`.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// What one SMTP conversation with an MX showed.
struct Probe {
    starttls: bool,
    certificate: Option<Result<(), String>>,
    relay_reply: Option<u16>,
}

/// Talks to an MX: EHLO, STARTTLS (verifying the certificate against `tls` for `host`), then a
/// relay attempt on a fresh plaintext connection (MAIL from and RCPT to other domains).
fn probe(
    addr: SocketAddr,
    host: &str,
    helo: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> std::io::Result<Probe> {
    let timeout = Duration::from_secs(20);
    let open = || -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let reader = BufReader::new(tcp.try_clone()?);
        Ok((tcp, reader))
    };
    let (mut tcp, mut reader) = open()?;
    let (code, _) = reply(&mut reader)?;
    if code != 220 {
        return Err(std::io::Error::other(format!("greeting {code}")));
    }
    write!(tcp, "EHLO {helo}\r\n")?;
    let (_, lines) = reply(&mut reader)?;
    let starttls = lines
        .iter()
        .any(|l| l.to_ascii_uppercase().starts_with("STARTTLS"));
    let mut certificate = None;
    if starttls && let Some(config) = tls {
        write!(tcp, "STARTTLS\r\n")?;
        let (code, _) = reply(&mut reader)?;
        if code == 220 {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(std::io::Error::other)?;
            let mut conn =
                rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            let mut result = Ok(());
            while conn.is_handshaking() {
                if let Err(e) = conn.complete_io(&mut tcp) {
                    result = Err(e.to_string());
                    break;
                }
            }
            certificate = Some(result);
        }
    } else {
        let _ = write!(tcp, "QUIT\r\n");
    }
    drop(tcp);
    let (mut tcp, mut reader) = open()?;
    let _ = reply(&mut reader)?;
    write!(tcp, "EHLO {helo}\r\n")?;
    let _ = reply(&mut reader)?;
    write!(tcp, "MAIL FROM:<petrel-check@example.com>\r\n")?;
    let (mail, _) = reply(&mut reader)?;
    let relay_reply = if mail < 400 {
        write!(tcp, "RCPT TO:<petrel-check@example.net>\r\n")?;
        Some(reply(&mut reader)?.0)
    } else {
        Some(mail)
    };
    let _ = write!(tcp, "QUIT\r\n");
    Ok(Probe {
        starttls,
        certificate,
        relay_reply,
    })
}

/// Reads one SMTP reply: its code and the text of each line.
fn reply(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<String>)> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || lines.len() > 100 {
            return Err(std::io::Error::other("connection closed"));
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad reply {line:?}")))?;
        lines.push(line.get(4..).unwrap_or("").trim_end().to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, lines));
        }
    }
}

/// Runs the checks for `domain` and prints the findings.
pub fn run(config: &Config, domain: &str) -> Result<(), Failure> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || !domain.contains('.') && domain != "localhost" {
        return Err(Failure::Config(format!("{domain:?} is not a domain name")));
    }
    let mut d = Doctor {
        config,
        dns: ResolverConfig::default(),
        findings: Vec::new(),
        last_spf_problem: String::new(),
    };
    let mx = d.mx(&domain);
    d.ptr();
    d.spf(&domain, &mx);
    d.dkim(&domain);
    d.dmarc(&domain);
    d.smtp(&mx);
    let mut failed = false;
    for f in &d.findings {
        failed |= f.level == "FAIL";
        match &f.fix {
            Some(fix) => println!("{:<4} {}\n     fix: {fix}", f.level, f.what),
            None => println!("{:<4} {}", f.level, f.what),
        }
    }
    if failed {
        Err(Failure::Exit(1))
    } else {
        Ok(())
    }
}
