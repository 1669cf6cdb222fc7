//! Scripted SMTP senders: numbered messages to local users, random valid bodies, pipelining,
//! BDAT, some junk; each records which attempts the server acknowledged.

use super::rng::Rng;
use petrel_core::smtp::data::dot_stuff;
use std::collections::VecDeque;

/// The local users the world creates.
pub const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
/// The local domain.
pub const DOMAIN: &str = "example.test";
const MAX_TRIES: usize = 4;

/// One try at sending one message (each try has its own id, so a retry after a lost reply may
/// duplicate the message without breaking exactly-once per acknowledgement).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `c<client>-m<message>-a<try>`, also in the body's `X-Sim-Id` header.
    pub id: String,
    /// The envelope sender.
    pub sender: String,
    /// The message as the client meant it (before dot-stuffing).
    pub body: Vec<u8>,
    /// Local parts of the recipients asked for.
    pub requested: Vec<String>,
    /// Local parts the server accepted with 250.
    pub accepted: Vec<String>,
    /// The body breaks the line-length limit; the server must refuse it.
    pub invalid: bool,
    /// The `250 ... queued as` reply was seen.
    pub acked: bool,
    /// Remote addresses the server accepted (submission relays them through the queue).
    pub remote: Vec<String>,
    /// The id from `250 ... queued as ID` (the queue envelope's `id` line).
    pub queue_id: Option<String>,
    /// The `X-Sim-Sort` header value (what the users' Sieve scripts decide on), if any.
    pub sort: Option<char>,
    /// Sent over LMTP: one final reply per accepted recipient.
    pub lmtp: bool,
    /// Local parts whose copy the server acknowledged (SMTP: every accepted one on 250;
    /// LMTP: those whose own reply was 2xx).
    pub delivered: Vec<String>,
    /// The replies to the end of the message: one in SMTP, one per accepted recipient in LMTP
    /// (in RCPT order), as (code, line).
    pub final_replies: Vec<(u16, String)>,
}

impl Attempt {
    /// Records the final reply for accepted recipient `index` (SMTP: the only reply, index 0,
    /// standing for every accepted recipient).
    fn record_final(&mut self, index: usize, code: u16, line: &str) -> Result<(), String> {
        self.final_replies.push((code, line.to_string()));
        if !(200..300).contains(&code) {
            return Ok(());
        }
        if !line.contains("queued as") {
            return Err(format!("final 250 without queue id: {line:?}"));
        }
        if self.invalid {
            return Err(format!(
                "{} has an over-long line but was accepted",
                self.id
            ));
        }
        self.acked = true;
        if self.queue_id.is_none() {
            self.queue_id = line
                .split_once("queued as ")
                .map(|(_, id)| id.trim().to_string());
        }
        if self.lmtp {
            let user = self.accepted.get(index).cloned().ok_or_else(|| {
                format!(
                    "{}: LMTP reply {index} for {} recipients",
                    self.id,
                    self.accepted.len()
                )
            })?;
            self.delivered.push(user);
        } else {
            self.delivered = self.accepted.clone();
        }
        Ok(())
    }
}

/// One AUTH try of a submission client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthTry {
    /// The right password as an initial response.
    Right,
    /// The right password after an empty 334 challenge.
    RightChallenge,
    /// A wrong password (535, after the failure delay).
    Wrong,
    /// `AUTH PLAIN`, then `*` (501).
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Mail,
    Rcpt(usize),
    Data,
    DataEnd,
    Bdat {
        last: bool,
    },
    Junk,
    Rset,
    Quit,
    StartTls,
    Challenge(AuthTry),
    Auth(AuthTry),
    Burst,
    /// LMTP: the reply for accepted recipient `index` of attempt `attempt` after DATA/BDAT
    /// LAST; `temp` is whether the first one was a 4xx (a failed commit fails every
    /// recipient; otherwise each is 2xx or, refused by its Sieve script, 5xx).
    LmtpRest {
        attempt: usize,
        index: usize,
        temp: bool,
    },
}

#[derive(Debug, Default)]
struct Conn {
    inbox: Vec<u8>,
    reply: Vec<String>,
    expects: VecDeque<Expect>,
    plan: VecDeque<(Vec<u8>, Expect)>,
    body_wire: Vec<u8>,
    ready: bool,
    closing: bool,
    tls: bool,
    auth: VecDeque<AuthTry>,
    /// A BDAT chunk of the current transaction was refused: the server dropped the transaction,
    /// so its answer to BDAT LAST is a single error, even over LMTP (RFC 3030 4.2).
    bdat_refused: bool,
}

/// One SMTP sender.
#[derive(Debug)]
pub struct Client {
    /// Index of the client in the world.
    pub idx: usize,
    /// Every attempt made, in order.
    pub attempts: Vec<Attempt>,
    messages: usize,
    msg: usize,
    tries: usize,
    pipelining: bool,
    bdat: bool,
    junk: u64,
    conn: Option<Conn>,
    current: Option<usize>,
    /// Everything is sent (or given up) and the client said QUIT.
    pub done: bool,
    /// Replies received, for stats.
    pub replies: u64,
    /// Submission client: STARTTLS, AUTH, then local and remote recipients.
    pub submission: bool,
    /// LMTP client: LHLO, and one reply per accepted recipient after the message.
    pub lmtp: bool,
    /// Slow reader: sends bursts of pipelined commands and then stops reading for a while.
    pub slow: bool,
    /// Set after a burst: the world should stop this client's reading now.
    pub stall_request: bool,
    lockouts: u32,
    /// Draws the `X-Sim-Sort` headers: its own stream, so the other draws stay as they were.
    pub sort_rng: Rng,
}

impl Client {
    /// A client with its own habits drawn from `rng`.
    pub fn new(idx: usize, rng: &mut Rng) -> Client {
        let mut c = Client {
            idx,
            attempts: Vec::new(),
            messages: rng.range(1, 8),
            msg: 0,
            tries: 0,
            pipelining: rng.one_in(2),
            bdat: rng.one_in(3),
            junk: [0, 4, 10][rng.range(0, 2)],
            conn: None,
            current: None,
            done: false,
            replies: 0,
            submission: rng.one_in(2),
            lmtp: false,
            slow: rng.one_in(3),
            stall_request: false,
            lockouts: 0,
            sort_rng: Rng::new(idx as u64),
        };
        // Half of the inbound senders speak LMTP instead, as a Postfix in front of Petrel would.
        c.lmtp = !c.submission && rng.one_in(2);
        c
    }

    /// The id of the attempt whose transaction is in progress, if any.
    pub fn current_attempt(&self) -> Option<&str> {
        self.current
            .and_then(|c| self.attempts.get(c))
            .map(|a| a.id.as_str())
    }

    /// True when the client is not connected and still has work.
    pub fn wants_connect(&self) -> bool {
        !self.done && self.conn.is_none()
    }

    /// A new connection was opened to the server.
    pub fn connect(&mut self, rng: &mut Rng) {
        let mut c = Conn::default();
        if self.submission {
            let fails = if self.lockouts == 0 && rng.one_in(8) {
                self.lockouts += 1;
                3
            } else {
                rng.range(0, 2)
            };
            for _ in 0..fails {
                let t = if rng.one_in(2) {
                    AuthTry::Wrong
                } else {
                    AuthTry::Cancel
                };
                c.auth
                    .push_back(if fails == 3 { AuthTry::Wrong } else { t });
            }
            c.auth.push_back(if rng.one_in(2) {
                AuthTry::Right
            } else {
                AuthTry::RightChallenge
            });
        }
        c.expects.push_back(Expect::Greeting);
        self.conn = Some(c);
        self.current = None;
    }

    /// The connection is gone (reset, closed or server crash).
    pub fn disconnected(&mut self) {
        if self.conn.take().is_some() && self.current.take().is_some() {
            self.retry();
        }
        if self.msg >= self.messages {
            self.done = true;
        }
    }

    fn retry(&mut self) {
        self.tries += 1;
        if self.tries >= MAX_TRIES {
            self.next_message();
        }
    }

    fn next_message(&mut self) {
        self.msg += 1;
        self.tries = 0;
    }

    /// Bytes from the server; returns the bytes the client sends in response.
    pub fn receive(&mut self, bytes: &[u8], rng: &mut Rng) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(out);
        };
        conn.inbox.extend_from_slice(bytes);
        while let Some(pos) = self
            .conn
            .as_ref()
            .and_then(|c| c.inbox.windows(2).position(|w| w == b"\r\n"))
        {
            let conn = self.conn.as_mut().expect("checked");
            let line: Vec<u8> = conn.inbox.drain(..pos + 2).collect();
            let line = String::from_utf8_lossy(&line[..pos]).into_owned();
            let b = line.as_bytes();
            if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("malformed reply line {line:?}"));
            }
            if b.len() > 3 && b[3] != b' ' && b[3] != b'-' {
                return Err(format!("malformed reply line {line:?}"));
            }
            if let Some(first) = conn.reply.first()
                && first[..3] != line[..3]
            {
                return Err(format!("reply code changed inside a reply: {line:?}"));
            }
            let last = b.len() == 3 || b[3] == b' ';
            conn.reply.push(line);
            if last {
                let reply = std::mem::take(&mut conn.reply);
                self.replies += 1;
                self.on_reply(&reply, rng, &mut out)?;
            }
        }
        Ok(out)
    }

    fn on_reply(
        &mut self,
        reply: &[String],
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let conn = self.conn.as_mut().expect("connected");
        let code: u16 = reply[0][..3].parse().unwrap_or(0);
        let last = reply.last().map(String::as_str).unwrap_or("");
        if code == 421 {
            conn.closing = true;
            conn.expects.clear();
            conn.plan.clear();
            return Ok(());
        }
        let Some(expect) = conn.expects.pop_front() else {
            return Err(format!("unsolicited reply {last:?}"));
        };
        let ok = (200..300).contains(&code);
        match expect {
            Expect::Greeting if code == 220 => {
                out.extend_from_slice(if self.lmtp {
                    b"LHLO client.remote.test\r\n"
                } else {
                    b"EHLO client.remote.test\r\n"
                });
                conn.expects.push_back(Expect::Ehlo);
            }
            Expect::Greeting => conn.closing = true,
            Expect::Ehlo if ok && self.submission && !conn.tls => {
                if !reply.iter().any(|l| l.ends_with("STARTTLS")) {
                    return Err(format!(
                        "submission EHLO does not offer STARTTLS: {reply:?}"
                    ));
                }
                out.extend_from_slice(b"STARTTLS\r\n");
                conn.expects.push_back(Expect::StartTls);
            }
            Expect::Ehlo if ok && self.submission && !conn.ready => {
                if !reply.iter().any(|l| l.contains("AUTH PLAIN")) {
                    return Err(format!(
                        "EHLO after STARTTLS does not offer AUTH: {reply:?}"
                    ));
                }
                next_auth(conn, self.idx, out);
            }
            Expect::Ehlo if ok => conn.ready = true,
            Expect::StartTls if code == 220 => {
                conn.tls = true;
                out.extend_from_slice(if self.lmtp {
                    b"LHLO client.remote.test\r\n"
                } else {
                    b"EHLO client.remote.test\r\n"
                });
                conn.expects.push_back(Expect::Ehlo);
            }
            Expect::StartTls => return Err(format!("STARTTLS refused: {last:?}")),
            Expect::Challenge(t) if code == 334 => {
                if t == AuthTry::Cancel {
                    out.extend_from_slice(b"*\r\n");
                } else {
                    out.extend_from_slice(plain(self.idx, true).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                conn.expects.push_back(Expect::Auth(t));
            }
            Expect::Challenge(t) => return Err(format!("AUTH {t:?} challenge was {last:?}")),
            Expect::Auth(t) => match (t, code) {
                (AuthTry::Right | AuthTry::RightChallenge, 235) => conn.ready = true,
                (AuthTry::Wrong, 535) | (AuthTry::Cancel, 501) => next_auth(conn, self.idx, out),
                (_, 454) => {
                    conn.auth.push_front(t);
                    next_auth(conn, self.idx, out);
                }
                _ => return Err(format!("AUTH {t:?} answered {last:?}")),
            },
            Expect::Burst => {}
            Expect::LmtpRest {
                attempt,
                index,
                temp,
            } => {
                if (code / 100 == 4) != temp {
                    return Err(format!(
                        "LMTP recipients answered differently (first temp {temp}): {last:?}"
                    ));
                }
                if let Some(a) = self.attempts.get_mut(attempt) {
                    a.record_final(index, code, last)?;
                }
            }
            Expect::Ehlo => return Err(format!("EHLO refused: {last:?}")),
            Expect::Mail | Expect::Rset | Expect::Junk => {}
            Expect::Rcpt(i) => {
                if ok && let Some(a) = self.current.and_then(|c| self.attempts.get_mut(c)) {
                    let user = a.requested[i].clone();
                    if user.contains('@') {
                        a.remote.push(user);
                    } else {
                        a.accepted.push(user);
                    }
                }
            }
            Expect::Data if code == 354 => {
                let wire = std::mem::take(&mut conn.body_wire);
                out.extend_from_slice(&wire);
                conn.expects.push_back(Expect::DataEnd);
            }
            Expect::Data if ok => return Err(format!("DATA answered {last:?}")),
            Expect::Data => self.finish(code, out),
            Expect::Bdat { last: false } => conn.bdat_refused |= !ok,
            Expect::DataEnd | Expect::Bdat { last: true } => {
                // LMTP answers once per accepted recipient (RFC 2033 4.2); the first reply is
                // handled here, the others must follow before any later reply.
                let rest = match self.current.and_then(|c| self.attempts.get(c)) {
                    Some(a) if self.lmtp && !conn.bdat_refused => {
                        a.accepted.len().saturating_sub(1)
                    }
                    _ => 0,
                };
                conn.bdat_refused = false;
                if let Some(attempt) = self.current {
                    for index in (1..=rest).rev() {
                        conn.expects.push_front(Expect::LmtpRest {
                            attempt,
                            index,
                            temp: code / 100 == 4,
                        });
                    }
                }
                if let Some(a) = self.current.and_then(|c| self.attempts.get_mut(c)) {
                    if a.lmtp && rest == 0 && a.accepted.len() > 1 {
                        // BDAT refused: one reply for the whole transaction.
                        a.final_replies.push((code, last.to_string()));
                    } else {
                        a.record_final(0, code, last)?;
                    }
                } else if ok {
                    return Err("ack without a transaction".into());
                }
                self.finish(code, out);
            }
            Expect::Quit => {
                self.done = true;
                conn.closing = true;
            }
        }
        let idle = self
            .conn
            .as_ref()
            .is_some_and(|c| c.ready && !c.closing && c.expects.is_empty() && c.plan.is_empty());
        if idle && self.current.is_none() {
            self.start_next(rng, out);
        }
        self.flush(out);
        Ok(())
    }

    /// The transaction ended with `code`.
    fn finish(&mut self, code: u16, out: &mut Vec<u8>) {
        if self.current.take().is_none() {
            return;
        }
        let ok = (200..300).contains(&code);
        if let Some(conn) = self.conn.as_mut() {
            conn.plan.clear();
            if !ok {
                out.extend_from_slice(b"RSET\r\n");
                conn.expects.push_back(Expect::Rset);
            }
        }
        if ok || (500..600).contains(&code) {
            self.next_message();
        } else {
            self.retry();
        }
    }

    /// Sends the next planned commands: all up to DATA when pipelining, else one at a time.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        while !conn.closing && (self.pipelining || conn.expects.is_empty()) {
            let Some((bytes, expect)) = conn.plan.pop_front() else {
                break;
            };
            out.extend_from_slice(&bytes);
            conn.expects.push_back(expect);
            if expect == Expect::Data {
                break;
            }
        }
    }

    fn start_next(&mut self, rng: &mut Rng, out: &mut Vec<u8>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.closing {
            return;
        }
        if self.slow && rng.one_in(3) {
            // A pipelined burst, then (the world decides) a long pause in reading.
            for _ in 0..rng.range(50, 2500) {
                out.extend_from_slice(match rng.below(4) {
                    0 if self.lmtp => b"LHLO burst.remote.test\r\n".as_slice(),
                    0 => b"EHLO burst.remote.test\r\n".as_slice(),
                    1 => b"RSET\r\n",
                    _ => b"NOOP\r\n",
                });
                conn.expects.push_back(Expect::Burst);
            }
            self.stall_request = true;
        }
        if self.junk > 0 && rng.one_in(self.junk) {
            if rng.one_in(2) {
                out.extend_from_slice(b"XYZZY plugh\r\n");
            } else {
                out.extend(std::iter::repeat_n(b'A', rng.range(600, 3000)));
                out.extend_from_slice(b"\r\n");
            }
            conn.expects.push_back(Expect::Junk);
        }
        if self.msg >= self.messages {
            out.extend_from_slice(b"QUIT\r\n");
            conn.expects.push_back(Expect::Quit);
            return;
        }
        let id = format!("c{}-m{}-a{}", self.idx, self.msg, self.tries);
        let sender = if self.submission {
            let user = USERS[self.idx % USERS.len()];
            if rng.one_in(4) {
                format!("{user}+tag{}@{DOMAIN}", self.idx)
            } else {
                format!("{user}@{DOMAIN}")
            }
        } else {
            format!("sender{}@remote.test", self.idx)
        };
        let invalid = !self.bdat && self.junk > 0 && rng.one_in(self.junk * 2);
        let sort = super::sieve::pick_sort(&mut self.sort_rng);
        let body = make_body(&id, sort, invalid, rng);
        let mut requested = Vec::new();
        for _ in 0..rng.range(1, 3) {
            let user = match rng.below(8) {
                0 => "nobody".to_string(),
                n if self.submission && n >= 5 => format!("r{n}@remote{}.test", rng.below(3)),
                n => USERS[n as usize % USERS.len()].to_string(),
            };
            if !requested.contains(&user) {
                requested.push(user);
            }
        }
        conn.plan.push_back((
            format!("MAIL FROM:<{sender}>\r\n").into_bytes(),
            Expect::Mail,
        ));
        for (i, user) in requested.iter().enumerate() {
            let cmd = if user.contains('@') {
                format!("RCPT TO:<{user}>\r\n").into_bytes()
            } else {
                format!("RCPT TO:<{user}@{DOMAIN}>\r\n").into_bytes()
            };
            conn.plan.push_back((cmd, Expect::Rcpt(i)));
        }
        if self.bdat {
            let mut rest: &[u8] = &body;
            loop {
                let n = if rng.one_in(2) {
                    rest.len()
                } else {
                    rng.range(0, rest.len())
                };
                let last = n == rest.len();
                let mut cmd =
                    format!("BDAT {n}{}\r\n", if last { " LAST" } else { "" }).into_bytes();
                cmd.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                conn.plan.push_back((cmd, Expect::Bdat { last }));
                if last {
                    break;
                }
            }
        } else {
            conn.plan.push_back((b"DATA\r\n".to_vec(), Expect::Data));
            conn.body_wire.clear();
            dot_stuff(&body, &mut conn.body_wire);
        }
        self.attempts.push(Attempt {
            id,
            sender,
            body,
            requested,
            accepted: Vec::new(),
            invalid,
            acked: false,
            remote: Vec::new(),
            queue_id: None,
            sort,
            lmtp: self.lmtp,
            delivered: Vec::new(),
            final_replies: Vec::new(),
        });
        self.current = Some(self.attempts.len() - 1);
    }
}

/// The PLAIN response of client `idx`: its user and the right or a wrong password.
fn plain(idx: usize, right: bool) -> String {
    let user = USERS[idx % USERS.len()];
    let password = if right { "password" } else { "wrong-password" };
    petrel_core::sasl::encode_challenge(format!("\0{user}@{DOMAIN}\0{password}").as_bytes())
}

/// Sends the next AUTH try of the connection's plan.
fn next_auth(conn: &mut Conn, idx: usize, out: &mut Vec<u8>) {
    let t = conn.auth.pop_front().unwrap_or(AuthTry::Right);
    match t {
        AuthTry::Right | AuthTry::Wrong => {
            let line = format!("AUTH PLAIN {}\r\n", plain(idx, t == AuthTry::Right));
            out.extend_from_slice(line.as_bytes());
            conn.expects.push_back(Expect::Auth(t));
        }
        AuthTry::RightChallenge | AuthTry::Cancel => {
            out.extend_from_slice(b"AUTH PLAIN\r\n");
            conn.expects.push_back(Expect::Challenge(t));
        }
    }
}

/// A random message: an id header, then lines that start with dots, long lines under 998,
/// 8-bit bytes and empty lines; always ends with CRLF. `invalid` adds a line over 998 octets.
fn make_body(id: &str, sort: Option<char>, invalid: bool, rng: &mut Rng) -> Vec<u8> {
    let mut b = format!("X-Sim-Id: {id}\r\n").into_bytes();
    if let Some(s) = sort {
        b.extend_from_slice(format!("X-Sim-Sort: {s}\r\n").as_bytes());
    }
    b.extend_from_slice(format!("Subject: message {id}\r\n\r\n").as_bytes());
    for _ in 0..rng.range(0, 40) {
        match rng.below(7) {
            0 => b.extend_from_slice(b"."),
            1 => b.extend_from_slice(b".. leading dots"),
            2 => b.extend(std::iter::repeat_n(b'x', rng.range(500, 998))),
            3 => b.extend((0..rng.range(1, 60)).map(|_| 0x80 + rng.below(128) as u8)),
            4 => {}
            _ => b.extend_from_slice(format!("line {} of {id}", rng.below(1000)).as_bytes()),
        }
        b.extend_from_slice(b"\r\n");
    }
    if invalid {
        b.extend(std::iter::repeat_n(b'y', rng.range(999, 2000)));
        b.extend_from_slice(b"\r\n");
    }
    b
}
