//! One (name, type) lookup against a list of recursive servers, as a sans-IO state machine.

use super::{Answer, Record, RecordType, ResolverConfig, normalize_name};
use core::net::SocketAddr;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType as WireType};
use std::time::Instant;

/// The UDP payload size we advertise in EDNS0 (DNS Flag Day 2020: no IP fragmentation).
const EDNS_UDP_SIZE: u16 = 1232;

/// Something the driver must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send `bytes` as one datagram to `server`; the answer comes back through
    /// [`Lookup::handle_udp`].
    Udp {
        /// The nameserver.
        server: SocketAddr,
        /// One complete DNS message.
        bytes: Vec<u8>,
    },
    /// Connect to `server` over TCP, send `bytes` prefixed by its 2-byte big-endian length, read
    /// one length-prefixed response and hand it (without the prefix), or the error, to
    /// [`Lookup::handle_tcp`]. The exchange must not outlast [`Lookup::poll_timeout`].
    Tcp {
        /// The nameserver.
        server: SocketAddr,
        /// One complete DNS message, without the length prefix.
        bytes: Vec<u8>,
    },
}

/// The try in flight: which server, which id, which transport, until when.
#[derive(Debug, Clone)]
struct Pending {
    server: SocketAddr,
    id: u16,
    tcp: bool,
    deadline: Instant,
}

/// One lookup (name, type) as a sans-IO state machine: it asks for datagrams and TCP exchanges to
/// be sent and is fed what comes back.
///
/// Guarantees:
/// - It never panics, whatever bytes it is fed, and never reads a clock or an unseeded RNG: the
///   same inputs give the same transmits and the same [`Answer`].
/// - It always ends: every try has a deadline, there are at most `attempts` x servers tries per
///   question and at most `max_cname_chain` + 1 questions, so once [`Lookup::poll_timeout`] has
///   passed often enough [`Lookup::result`] is `Some` ([`Answer::TempFail`] at worst).
/// - Only one try is in flight at a time; a datagram is accepted only if it comes from that try's
///   server and matches its id and question (name case-insensitively, type, class IN).
/// - Query ids are drawn from `id_seed`, fresh for every try.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The question being asked now (the asked name, or a CNAME target).
    qname: String,
    wire_name: Name,
    rtype: RecordType,
    servers: Vec<SocketAddr>,
    config: ResolverConfig,
    rng: u64,
    /// Every name of the CNAME chain so far, for loop detection.
    visited: Vec<String>,
    /// Smallest TTL of the CNAMEs followed so far.
    chain_ttl: Option<u32>,
    cnames: u32,
    /// Number of tries started for the current question.
    tries: usize,
    /// Servers that gave a definite failure (SERVFAIL, REFUSED...) for the current question.
    given_up: Vec<bool>,
    pending: Option<Pending>,
    transmit: Option<Transmit>,
    last_error: String,
    result: Option<Answer>,
}

impl Lookup {
    /// Starts a lookup of `name` (ASCII; a trailing dot is allowed; case does not matter) for
    /// `rtype` over `servers`, tried in order, `config.attempts` rounds. The first query is ready
    /// in [`Lookup::poll_transmit`]. A malformed or non-ASCII name finishes at once with
    /// [`Answer::PermFail`]; an empty server list with [`Answer::TempFail`].
    pub fn new(
        name: &str,
        rtype: RecordType,
        servers: &[SocketAddr],
        config: &ResolverConfig,
        id_seed: u64,
        now: Instant,
    ) -> Lookup {
        let mut lookup = Lookup {
            qname: String::new(),
            wire_name: Name::root(),
            rtype,
            servers: servers.to_vec(),
            config: config.clone(),
            rng: id_seed,
            visited: Vec::new(),
            chain_ttl: None,
            cnames: 0,
            tries: 0,
            given_up: vec![false; servers.len()],
            pending: None,
            transmit: None,
            last_error: "no nameservers configured".to_string(),
            result: None,
        };
        match normalize_name(name) {
            Ok(n) => lookup.ask(now, n),
            Err(e) => lookup.finish(Answer::PermFail(e)),
        }
        lookup
    }

    /// What to send now, if anything. Drain it after `new` and after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.take()
    }

    /// A datagram arrived from `from`. Datagrams that are not the answer to the try in flight
    /// (wrong source, id or question, not a response, unparsable, over `max_response`) are
    /// ignored: the try goes on waiting until its deadline.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(p) = &self.pending else { return };
        if p.tcp || p.server != from || bytes.len() > self.config.max_response {
            return;
        }
        let id = p.id;
        if let Some(msg) = self.parse_response(bytes, id) {
            self.handle_response(now, msg, false);
        }
    }

    /// The TCP exchange asked for by [`Transmit::Tcp`] to `server` ended: `Ok` with the response
    /// message (without the 2-byte length), or `Err` with why it failed. A result for a server
    /// whose TCP try is no longer in flight is ignored. A failure, or a response that does not
    /// match the question, moves on to the next try.
    pub fn handle_tcp(
        &mut self,
        now: Instant,
        server: SocketAddr,
        result: Result<Vec<u8>, String>,
    ) {
        let Some(p) = &self.pending else { return };
        if !p.tcp || p.server != server {
            return;
        }
        let id = p.id;
        match result {
            Err(e) => {
                self.last_error = format!("{server} (tcp): {e}");
                self.next_try(now);
            }
            Ok(bytes) if bytes.len() > self.config.max_response => {
                self.last_error = format!("{server} (tcp): response over the size limit");
                self.next_try(now);
            }
            Ok(bytes) => match self.parse_response(&bytes, id) {
                Some(msg) => self.handle_response(now, msg, true),
                None => {
                    self.last_error = format!("{server} (tcp): malformed or mismatched response");
                    self.next_try(now);
                }
            },
        }
    }

    /// Time passed. If the try in flight is past its deadline, it counts as failed and the next
    /// try starts (or the lookup ends with [`Answer::TempFail`]). Early or repeated calls are
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(p) = &self.pending else { return };
        if now < p.deadline {
            return;
        }
        self.last_error = format!(
            "{} ({}): timed out",
            p.server,
            if p.tcp { "tcp" } else { "udp" }
        );
        self.next_try(now);
    }

    /// The UDP try in flight to `server` failed at once (on a connected socket, an ICMP
    /// "port unreachable" arrives as a receive error): it counts as failed now, not at its
    /// deadline. Calls for another server or a TCP try are ignored.
    pub fn handle_udp_error(&mut self, now: Instant, server: SocketAddr, error: &str) {
        let Some(p) = &self.pending else { return };
        if p.tcp || p.server != server {
            return;
        }
        self.last_error = format!("{server} (udp): {error}");
        self.next_try(now);
    }

    /// When [`Lookup::handle_timeout`] must be called next; `None` once the lookup is finished.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The outcome, once the lookup is finished; it never changes afterwards.
    #[must_use]
    pub fn result(&self) -> Option<&Answer> {
        self.result.as_ref()
    }

    /// Starts asking `name` (already normalised) from the first server.
    fn ask(&mut self, now: Instant, name: String) {
        match Name::from_ascii(format!("{name}.")) {
            Ok(n) => self.wire_name = n,
            Err(e) => return self.finish(Answer::PermFail(format!("domain name {name:?}: {e}"))),
        }
        self.visited.push(name.clone());
        self.qname = name;
        self.tries = 0;
        self.given_up = vec![false; self.servers.len()];
        self.next_try(now);
    }

    /// Sends the question to the next server that has not given up on it, or ends with
    /// `TempFail` when every try is used.
    fn next_try(&mut self, now: Instant) {
        self.pending = None;
        self.transmit = None;
        let n = self.servers.len();
        let total = n.saturating_mul(self.config.attempts.max(1) as usize);
        while self.tries < total {
            let index = self.tries % n;
            self.tries += 1;
            if !self.given_up[index] {
                let server = self.servers[index];
                return self.send(now, server, false);
            }
        }
        let why = format!("{} {:?}: {}", self.qname, self.rtype, self.last_error);
        self.finish(Answer::TempFail(why));
    }

    /// Queues the question to `server` with a fresh id.
    fn send(&mut self, now: Instant, server: SocketAddr, tcp: bool) {
        let id = self.next_id();
        let bytes = match encode_query(id, &self.wire_name, self.rtype) {
            Ok(b) => b,
            Err(e) => return self.finish(Answer::PermFail(format!("cannot encode query: {e}"))),
        };
        self.pending = Some(Pending {
            server,
            id,
            tcp,
            deadline: now + self.config.timeout,
        });
        self.transmit = Some(if tcp {
            Transmit::Tcp { server, bytes }
        } else {
            Transmit::Udp { server, bytes }
        });
    }

    /// SplitMix64 over the seed: every try gets a fresh, unpredictable-to-others id.
    fn next_id(&mut self) -> u16 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u16
    }

    fn finish(&mut self, answer: Answer) {
        self.pending = None;
        self.transmit = None;
        self.result = Some(answer);
    }

    /// Decodes `bytes` and checks it answers our question with `id`; `None` otherwise.
    fn parse_response(&self, bytes: &[u8], id: u16) -> Option<Message> {
        let msg = Message::from_vec(bytes).ok()?;
        let m = &msg.metadata;
        if m.id != id || m.message_type != MessageType::Response || m.op_code != OpCode::Query {
            return None;
        }
        match msg.queries.as_slice() {
            [q] if q.name() == &self.wire_name
                && q.query_type() == wire_type(self.rtype)
                && q.query_class() == DNSClass::IN => {}
            // Some servers drop the question from error responses.
            [] if matches!(
                m.response_code,
                ResponseCode::FormErr
                    | ResponseCode::ServFail
                    | ResponseCode::NotImp
                    | ResponseCode::Refused
            ) => {}
            _ => return None,
        }
        Some(msg)
    }

    /// Acts on a response that matches the try in flight.
    fn handle_response(&mut self, now: Instant, msg: Message, tcp: bool) {
        let Some(p) = self.pending.clone() else {
            return;
        };
        if msg.metadata.truncation {
            if tcp {
                self.last_error = format!("{} (tcp): truncated response", p.server);
                return self.next_try(now);
            }
            return self.send(now, p.server, true);
        }
        match msg.metadata.response_code {
            ResponseCode::NoError => self.use_answers(now, &msg),
            ResponseCode::NXDomain => self.finish(Answer::NxDomain),
            ResponseCode::FormErr => self.finish(Answer::PermFail(format!(
                "{} rejected the query for {} as malformed (FORMERR)",
                p.server, self.qname
            ))),
            code => {
                self.last_error = format!("{}: {code}", p.server);
                if let Some(i) = self.servers.iter().position(|s| *s == p.server) {
                    self.given_up[i] = true;
                }
                self.next_try(now);
            }
        }
    }

    /// NOERROR: the records of our type at the end of the CNAME chain in the answer section, or
    /// a new question for a CNAME target the server did not resolve, or NoData.
    fn use_answers(&mut self, now: Instant, msg: &Message) {
        let want = wire_type(self.rtype);
        let mut current = self.wire_name.clone();
        loop {
            let mut records = Vec::new();
            let mut ttl = self.chain_ttl.unwrap_or(u32::MAX);
            for r in &msg.answers {
                if r.dns_class == DNSClass::IN
                    && r.record_type() == want
                    && r.name == current
                    && let Some(rec) = convert(&r.data)
                {
                    ttl = ttl.min(r.ttl);
                    records.push(rec);
                }
            }
            if !records.is_empty() {
                return self.finish(Answer::Records {
                    records,
                    ttl,
                    canonical_name: name_string(&current),
                });
            }
            let cname = msg.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if r.dns_class == DNSClass::IN && r.name == current => {
                    Some((c.0.clone(), r.ttl))
                }
                _ => None,
            });
            let Some((target, ttl)) = cname else { break };
            self.cnames += 1;
            if self.cnames > self.config.max_cname_chain {
                return self.finish(Answer::PermFail(format!(
                    "CNAME chain from {} longer than {}",
                    self.visited[0], self.config.max_cname_chain
                )));
            }
            let target_name = name_string(&target);
            if self.visited.contains(&target_name) {
                return self.finish(Answer::PermFail(format!("CNAME loop at {target_name}")));
            }
            self.visited.push(target_name);
            self.chain_ttl = Some(self.chain_ttl.map_or(ttl, |t| t.min(ttl)));
            current = target;
        }
        if current == self.wire_name {
            return self.finish(Answer::NoData);
        }
        // The chain ends at a name the server gave no records for: ask for it directly.
        let target = name_string(&current);
        self.visited.pop();
        match normalize_name(&target) {
            Ok(n) => self.ask(now, n),
            Err(e) => self.finish(Answer::PermFail(format!("CNAME target: {e}"))),
        }
    }
}

/// Our record type on the wire.
fn wire_type(t: RecordType) -> WireType {
    match t {
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Mx => WireType::MX,
        RecordType::Txt => WireType::TXT,
        RecordType::Ptr => WireType::PTR,
        RecordType::Cname => WireType::CNAME,
    }
}

/// Builds the query: one question, class IN, RD set, EDNS0 advertising 1232 bytes.
fn encode_query(id: u16, name: &Name, rtype: RecordType) -> Result<Vec<u8>, String> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), wire_type(rtype)));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE);
    edns.set_version(0);
    msg.set_edns(edns);
    msg.to_vec().map_err(|e| e.to_string())
}

/// A wire name as Petrel writes names: lowercase ASCII, no trailing dot, `"."` for the root.
fn name_string(name: &Name) -> String {
    let s = name.to_ascii().to_ascii_lowercase();
    match s.strip_suffix('.') {
        Some("") => ".".to_string(),
        Some(t) => t.to_string(),
        None if s.is_empty() => ".".to_string(),
        None => s,
    }
}

fn convert(data: &RData) -> Option<Record> {
    Some(match data {
        RData::A(a) => Record::A(a.0),
        RData::AAAA(a) => Record::Aaaa(a.0),
        RData::MX(mx) => Record::Mx {
            preference: mx.preference,
            exchange: name_string(&mx.exchange),
        },
        RData::TXT(t) => Record::Txt(t.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
        RData::PTR(p) => Record::Ptr(name_string(&p.0)),
        RData::CNAME(c) => Record::Cname(name_string(&c.0)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_without_the_root_dot() {
        let n = |s: &str| name_string(&Name::from_ascii(s).unwrap());
        assert_eq!(n("."), ".");
        assert_eq!(n("MX.Example.COM."), "mx.example.com");
        assert_eq!(n("mx.example.com"), "mx.example.com");
    }
}
