//! Where to send a destination domain's mail: a pure state machine that asks for DNS lookups
//! and connections and decides, from their answers, what to try next (RFC 5321 section 5).
//!
//! For a domain: its MX hosts in preference order (or the implicit MX, or a null-MX refusal),
//! each host's IPv4 then IPv6 addresses, each address in turn until one accepts a connection.
//! With a smarthost, that one host instead. Bounded: at most [`MAX_HOSTS`] hosts and
//! [`MAX_ADDRESSES`] addresses per attempt, so a hostile MX list cannot keep the runner busy.

use crate::dns::{Answer, MxError, Record, RecordType, mx_hosts};
use core::net::{IpAddr, SocketAddr};

/// Most MX hosts tried in one attempt.
pub const MAX_HOSTS: usize = 5;
/// Most addresses connected to in one attempt.
pub const MAX_ADDRESSES: usize = 10;

/// What the runner should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteStep {
    /// Look this up and hand the answer to [`Router::answer`].
    Lookup {
        /// The name.
        name: String,
        /// The type.
        rtype: RecordType,
    },
    /// Connect here; on failure call [`Router::connect_failed`], on success run the SMTP
    /// client, then call [`Router::next_step`] again only if the mail should go to another host.
    Connect {
        /// The host name (for TLS server name and logs).
        host: String,
        /// The address and port.
        addr: SocketAddr,
    },
    /// No host can take the mail now: retry later.
    TempFail(String),
    /// No host will ever take it: bounce. The text starts with an enhanced status code.
    PermFail(String),
}

#[derive(Debug)]
enum State {
    /// Waiting for the MX answer.
    Mx,
    /// Waiting for host `hosts[i]`'s A (then AAAA) answer.
    Addresses {
        family: RecordType,
    },
    /// Trying `addrs`.
    Connecting,
    Done(RouteStep),
}

/// The routing state machine for one destination (see the module docs).
#[derive(Debug)]
pub struct Router {
    domain: String,
    port: u16,
    random: u64,
    hosts: Vec<String>,
    host: usize,
    addrs: Vec<SocketAddr>,
    tried_addrs: usize,
    state: State,
    last_error: Option<String>,
    started: bool,
}

impl Router {
    /// Routes mail for `domain` (a name or an address literal `[192.0.2.1]`) to its MX hosts
    /// on `port` (25), or to `smarthost` (host, port) when given. `random` orders MX hosts of
    /// equal preference.
    pub fn new(domain: &str, smarthost: Option<(&str, u16)>, port: u16, random: u64) -> Router {
        let mut r = Router {
            domain: domain.to_ascii_lowercase(),
            port,
            random,
            hosts: Vec::new(),
            host: 0,
            addrs: Vec::new(),
            tried_addrs: 0,
            state: State::Mx,
            last_error: None,
            started: false,
        };
        let literal = domain
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .map(|d| d.strip_prefix("IPv6:").unwrap_or(d));
        if let Some((host, port)) = smarthost {
            r.port = port;
            r.hosts = vec![host.to_ascii_lowercase()];
            r.start_host();
        } else if let Some(ip) = literal {
            match ip.parse::<IpAddr>() {
                Ok(ip) => {
                    r.hosts = vec![ip.to_string()];
                    r.addrs = vec![SocketAddr::new(ip, port)];
                    r.state = State::Connecting;
                }
                Err(_) => {
                    r.state = State::Done(RouteStep::PermFail(format!(
                        "5.1.2 bad address literal [{ip}]"
                    )))
                }
            }
        }
        r
    }

    /// Begins on `hosts[host]`: its addresses directly if it is an IP, else its A lookup.
    fn start_host(&mut self) {
        self.addrs.clear();
        match self.hosts.get(self.host) {
            None => self.exhausted(),
            Some(h) => match h.parse::<IpAddr>() {
                Ok(ip) => {
                    self.addrs.push(SocketAddr::new(ip, self.port));
                    self.state = State::Connecting;
                }
                Err(_) => {
                    self.state = State::Addresses {
                        family: RecordType::A,
                    }
                }
            },
        }
    }

    fn exhausted(&mut self) {
        let why = self
            .last_error
            .clone()
            .unwrap_or_else(|| format!("no host for {} could be reached", self.domain));
        self.state = State::Done(RouteStep::TempFail(why));
    }

    /// The next thing to do. After a `Connect` that worked and a conversation that left mail
    /// for another host, calling it again moves on to the next host.
    pub fn next_step(&mut self) -> RouteStep {
        if let State::Connecting = self.state
            && self.started
            && self.addrs.is_empty()
        {
            self.host += 1;
            self.start_host();
        }
        self.started = true;
        loop {
            match &self.state {
                State::Done(step) => return step.clone(),
                State::Mx => {
                    return RouteStep::Lookup {
                        name: self.domain.clone(),
                        rtype: RecordType::Mx,
                    };
                }
                State::Addresses { family } => {
                    return RouteStep::Lookup {
                        name: self.hosts[self.host].clone(),
                        rtype: *family,
                    };
                }
                State::Connecting => {
                    if self.addrs.is_empty() || self.tried_addrs >= MAX_ADDRESSES {
                        if self.tried_addrs >= MAX_ADDRESSES {
                            self.host = self.hosts.len();
                        } else {
                            self.host += 1;
                        }
                        self.start_host();
                        continue;
                    }
                    let addr = self.addrs.remove(0);
                    self.tried_addrs += 1;
                    return RouteStep::Connect {
                        host: self.hosts[self.host].clone(),
                        addr,
                    };
                }
            }
        }
    }

    /// The answer to the last `Lookup`.
    pub fn answer(&mut self, answer: &Answer) {
        match self.state {
            State::Mx => match mx_hosts(&self.domain, answer, self.random) {
                Ok(mut hosts) => {
                    hosts.truncate(MAX_HOSTS);
                    self.hosts = hosts;
                    self.start_host();
                }
                Err(MxError::NullMx) => {
                    self.state = State::Done(RouteStep::PermFail(format!(
                        "5.1.10 {} does not accept mail (null MX)",
                        self.domain
                    )))
                }
                Err(MxError::NoSuchDomain) => {
                    self.state = State::Done(RouteStep::PermFail(format!(
                        "5.1.2 domain {} does not exist",
                        self.domain
                    )))
                }
                Err(MxError::Permanent(why)) => {
                    self.state = State::Done(RouteStep::PermFail(format!(
                        "5.1.2 cannot route to {}: {why}",
                        self.domain
                    )))
                }
                Err(MxError::Temporary(why)) => {
                    self.state = State::Done(RouteStep::TempFail(format!(
                        "MX lookup for {} failed: {why}",
                        self.domain
                    )))
                }
            },
            State::Addresses { family } => {
                let host = self.hosts[self.host].clone();
                match answer {
                    Answer::Records { records, .. } => {
                        for r in records {
                            let ip = match r {
                                Record::A(a) => IpAddr::V4(*a),
                                Record::Aaaa(a) => IpAddr::V6(*a),
                                _ => continue,
                            };
                            let addr = SocketAddr::new(ip, self.port);
                            if !self.addrs.contains(&addr) {
                                self.addrs.push(addr);
                            }
                        }
                    }
                    Answer::TempFail(why) | Answer::PermFail(why) => {
                        self.last_error = Some(format!("address lookup for {host} failed: {why}"));
                    }
                    Answer::NxDomain | Answer::NoData => {}
                }
                if family == RecordType::A {
                    self.state = State::Addresses {
                        family: RecordType::Aaaa,
                    };
                } else if self.addrs.is_empty() {
                    if self.last_error.is_none() {
                        self.last_error = Some(format!("{host} has no address"));
                    }
                    // An MX naming a host without addresses when it is the only one: RFC 5321
                    // 5.1 treats the lookup as failed; try the next host, else retry later.
                    self.host += 1;
                    self.start_host();
                } else {
                    self.state = State::Connecting;
                }
            }
            _ => {}
        }
    }

    /// Keeps only the MX hosts `keep` accepts and returns the others (MTA-STS, RFC 8461 4.1:
    /// mail goes only to hosts the policy names). Call it right after [`Router::answer`] for the
    /// MX lookup, before the next step. When no host is left the route ends with
    /// `TempFail(why)`; a route already over (null MX, no such domain, failed lookup) is left
    /// as it is. Meant for MX routing only: a smarthost or an address literal is not filtered.
    pub fn retain_hosts(&mut self, keep: impl Fn(&str) -> bool, why: &str) -> Vec<String> {
        if self.host != 0
            || self.tried_addrs != 0
            || matches!(self.state, State::Done(_) | State::Mx)
        {
            return Vec::new();
        }
        let (kept, dropped): (Vec<String>, Vec<String>) =
            self.hosts.drain(..).partition(|h| keep(h));
        self.hosts = kept;
        if self.hosts.is_empty() {
            self.state = State::Done(RouteStep::TempFail(why.to_string()));
        } else {
            self.start_host();
        }
        dropped
    }

    /// The last `Connect` failed (refused, unreachable, timed out, greeting refused).
    pub fn connect_failed(&mut self, why: &str) {
        self.last_error = Some(why.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn mx(list: &[(u16, &str)]) -> Answer {
        Answer::Records {
            records: list
                .iter()
                .map(|(p, e)| Record::Mx {
                    preference: *p,
                    exchange: e.to_string(),
                })
                .collect(),
            ttl: 60,
            canonical_name: "example.net".into(),
        }
    }

    fn a(ips: &[[u8; 4]]) -> Answer {
        Answer::Records {
            records: ips
                .iter()
                .map(|ip| Record::A(Ipv4Addr::from(*ip)))
                .collect(),
            ttl: 60,
            canonical_name: "h".into(),
        }
    }

    fn lookup(name: &str, rtype: RecordType) -> RouteStep {
        RouteStep::Lookup {
            name: name.into(),
            rtype,
        }
    }

    fn connect(host: &str, ip: [u8; 4]) -> RouteStep {
        RouteStep::Connect {
            host: host.into(),
            addr: SocketAddr::from((ip, 25)),
        }
    }

    #[test]
    fn mx_hosts_in_order_ipv4_then_ipv6() {
        let mut r = Router::new("Example.NET", None, 25, 0);
        assert_eq!(r.next_step(), lookup("example.net", RecordType::Mx));
        r.answer(&mx(&[(20, "mx2.example.net"), (10, "mx1.example.net")]));
        assert_eq!(r.next_step(), lookup("mx1.example.net", RecordType::A));
        r.answer(&a(&[[192, 0, 2, 1]]));
        assert_eq!(r.next_step(), lookup("mx1.example.net", RecordType::Aaaa));
        r.answer(&Answer::Records {
            records: vec![Record::Aaaa(Ipv6Addr::LOCALHOST)],
            ttl: 1,
            canonical_name: "mx1".into(),
        });
        assert_eq!(r.next_step(), connect("mx1.example.net", [192, 0, 2, 1]));
        r.connect_failed("connection refused");
        assert_eq!(
            r.next_step(),
            RouteStep::Connect {
                host: "mx1.example.net".into(),
                addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 25)
            }
        );
        r.connect_failed("timed out");
        assert_eq!(r.next_step(), lookup("mx2.example.net", RecordType::A));
        r.answer(&Answer::NxDomain);
        assert_eq!(r.next_step(), lookup("mx2.example.net", RecordType::Aaaa));
        r.answer(&Answer::NoData);
        assert_eq!(r.next_step(), RouteStep::TempFail("timed out".into()));
    }

    #[test]
    fn a_conversation_that_leaves_mail_moves_to_the_next_host() {
        let mut r = Router::new("example.net", None, 25, 0);
        r.next_step();
        r.answer(&mx(&[(10, "a.example.net"), (20, "b.example.net")]));
        r.next_step();
        r.answer(&a(&[[192, 0, 2, 1]]));
        r.next_step();
        r.answer(&Answer::NoData);
        assert_eq!(r.next_step(), connect("a.example.net", [192, 0, 2, 1]));
        // Connected; the receiver answered 421. Next host:
        assert_eq!(r.next_step(), lookup("b.example.net", RecordType::A));
    }

    #[test]
    fn implicit_null_and_missing_domains() {
        let mut r = Router::new("example.org", None, 2525, 0);
        r.next_step();
        r.answer(&Answer::NoData);
        assert_eq!(r.next_step(), lookup("example.org", RecordType::A));
        r.answer(&a(&[[127, 0, 0, 1]]));
        r.next_step();
        r.answer(&Answer::NoData);
        assert_eq!(
            r.next_step(),
            RouteStep::Connect {
                host: "example.org".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 2525))
            }
        );
        let mut null = Router::new("null.example", None, 25, 0);
        null.next_step();
        null.answer(&mx(&[(0, ".")]));
        assert!(matches!(null.next_step(), RouteStep::PermFail(t) if t.starts_with("5.1.10")));
        let mut nx = Router::new("nx.example", None, 25, 0);
        nx.next_step();
        nx.answer(&Answer::NxDomain);
        assert!(matches!(nx.next_step(), RouteStep::PermFail(t) if t.starts_with("5.1.2")));
        let mut temp = Router::new("t.example", None, 25, 0);
        temp.next_step();
        temp.answer(&Answer::TempFail("SERVFAIL".into()));
        assert!(matches!(temp.next_step(), RouteStep::TempFail(t) if t.contains("SERVFAIL")));
    }

    #[test]
    fn smarthost_and_literals_skip_mx() {
        let mut r = Router::new("example.net", Some(("relay.example.com", 587)), 25, 0);
        assert_eq!(r.next_step(), lookup("relay.example.com", RecordType::A));
        let mut ip = Router::new("example.net", Some(("127.0.0.1", 2525)), 25, 0);
        assert_eq!(
            ip.next_step(),
            RouteStep::Connect {
                host: "127.0.0.1".into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 2525))
            }
        );
        let mut lit = Router::new("[192.0.2.7]", None, 25, 0);
        assert_eq!(lit.next_step(), connect("192.0.2.7", [192, 0, 2, 7]));
        lit.connect_failed("refused");
        assert_eq!(lit.next_step(), RouteStep::TempFail("refused".into()));
        let mut bad = Router::new("[999.1.1.1]", None, 25, 0);
        assert!(matches!(bad.next_step(), RouteStep::PermFail(_)));
    }

    #[test]
    fn retain_hosts_filters_the_mx_list() {
        let mut r = Router::new("example.net", None, 25, 0);
        r.next_step();
        r.answer(&mx(&[(10, "a.example.net"), (20, "b.example.net")]));
        let dropped = r.retain_hosts(|h| h == "b.example.net", "none allowed");
        assert_eq!(dropped, vec!["a.example.net".to_string()]);
        assert_eq!(r.next_step(), lookup("b.example.net", RecordType::A));
        let mut none = Router::new("example.net", None, 25, 0);
        none.next_step();
        none.answer(&mx(&[(10, "a.example.net")]));
        none.retain_hosts(|_| false, "none allowed");
        assert_eq!(none.next_step(), RouteStep::TempFail("none allowed".into()));
        let mut null = Router::new("null.example", None, 25, 0);
        null.next_step();
        null.answer(&mx(&[(0, ".")]));
        assert!(null.retain_hosts(|_| false, "x").is_empty());
        assert!(matches!(null.next_step(), RouteStep::PermFail(_)));
    }

    #[test]
    fn bounded_whatever_the_mx_list() {
        let mut r = Router::new("big.example", None, 25, 1);
        r.next_step();
        let many: Vec<(u16, String)> = (0..50).map(|i| (i, format!("mx{i}.big.example"))).collect();
        let refs: Vec<(u16, &str)> = many.iter().map(|(p, h)| (*p, h.as_str())).collect();
        r.answer(&mx(&refs));
        let mut connects = 0;
        let mut lookups = 0;
        loop {
            match r.next_step() {
                RouteStep::Lookup { rtype, .. } => {
                    lookups += 1;
                    if rtype == RecordType::A {
                        r.answer(&a(&[[192, 0, 2, 1], [192, 0, 2, 2], [192, 0, 2, 3]]));
                    } else {
                        r.answer(&Answer::NoData);
                    }
                }
                RouteStep::Connect { .. } => {
                    connects += 1;
                    r.connect_failed("refused");
                }
                RouteStep::TempFail(_) => break,
                RouteStep::PermFail(p) => panic!("{p}"),
            }
            assert!(lookups + connects < 100);
        }
        assert_eq!(connects, MAX_ADDRESSES);
        assert!(lookups <= 2 * MAX_HOSTS);
    }
}
