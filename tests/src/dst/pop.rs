//! Scripted POP3 readers: log in (USER/PASS or AUTH PLAIN, sometimes after STLS), STAT, LIST,
//! UIDL, RETR or TOP some messages, DELE some of those, then QUIT, RSET and QUIT, or drop the
//! connection. Every reply is checked against the POP3 grammar; what the reader learns is
//! handed to the world as [`PopEvent`]s, which checks it against the disk.

use super::check::sim_id;
use super::clients::{DOMAIN, USERS};
use super::rng::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a reader saw that the world must check or record.
#[derive(Debug)]
pub enum PopEvent {
    /// `RETR n` (`top = None`) or `TOP n k` answered with `content` (dot-stuffing undone).
    Retrieved {
        /// The message number.
        n: u32,
        /// Its UIDL in this session's listing.
        uidl: Option<String>,
        /// The size in the `+OK` line.
        octets: Option<u64>,
        /// The size in the LIST listing.
        listed: Option<u64>,
        /// The message as received, CRLF line ends.
        content: Vec<u8>,
        /// `TOP` lines.
        top: Option<u64>,
    },
    /// QUIT was sent after DELEs of these messages (sim ids).
    QuitSent(Vec<String>),
    /// QUIT was answered `+OK` after DELEs of these messages.
    QuitAcked(Vec<String>),
    /// The login was answered `-ERR [IN-USE]`.
    InUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Greeting,
    Capa,
    Stls,
    User,
    AuthCont,
    Login,
    Stat,
    List,
    Uidl,
    Retr(u32),
    Top(u32, u64),
    Dele(u32),
    Rset,
    Quit,
    /// Not a command: the reader drops the connection here.
    Drop,
}

#[derive(Debug, Default)]
struct PopConn {
    inbox: Vec<u8>,
    expect: VecDeque<Cmd>,
    /// Send STAT, LIST, UIDL together and the RETRs, TOPs and DELEs back to back.
    pipelined: bool,
    want_stls: bool,
    tls: bool,
    /// The first login try uses a wrong password (a delayed `-ERR [AUTH]`).
    wrong_first: bool,
    multi: Option<(Cmd, String, Vec<Vec<u8>>)>,
    closing: bool,
    stat: Option<(u64, u64)>,
    sizes: BTreeMap<u32, u64>,
    uidls: BTreeMap<u32, String>,
    ids: BTreeMap<u32, String>,
    want_dele: BTreeSet<u32>,
    dele_ids: Vec<String>,
    todo: VecDeque<Cmd>,
}

/// One POP3 reader of one user's maildrop.
#[derive(Debug)]
pub struct Reader {
    /// Index of the reader in the world.
    pub idx: usize,
    /// Local part of the user it reads.
    pub user: &'static str,
    sessions_left: usize,
    conn: Option<PopConn>,
    /// All sessions are over.
    pub done: bool,
    /// Things for the world to check, in order.
    pub events: Vec<PopEvent>,
    /// The reader wants its connection reset now.
    pub drop_request: bool,
    /// Messages retrieved, for stats.
    pub retrieved: u64,
    /// Messages acknowledged to its user when its last session started: the next one waits for
    /// more mail (or for the senders to finish).
    pub seen_mail: usize,
}

impl Reader {
    /// A reader with its own habits drawn from `rng`.
    pub fn new(idx: usize, rng: &mut Rng) -> Reader {
        Reader {
            idx,
            user: USERS[rng.range(0, USERS.len() - 1)],
            sessions_left: rng.range(2, 8),
            conn: None,
            done: false,
            events: Vec::new(),
            drop_request: false,
            retrieved: 0,
            seen_mail: 0,
        }
    }

    /// True when the reader is not connected and has sessions left.
    pub fn wants_connect(&self) -> bool {
        !self.done && self.conn.is_none()
    }

    /// A new connection was opened.
    pub fn connect(&mut self, rng: &mut Rng) {
        self.sessions_left = self.sessions_left.saturating_sub(1);
        self.conn = Some(PopConn {
            expect: VecDeque::from([Cmd::Greeting]),
            pipelined: rng.one_in(2),
            want_stls: rng.one_in(3),
            wrong_first: rng.one_in(6),
            ..PopConn::default()
        });
    }

    /// The connection is gone (reset, closed or server crash).
    pub fn disconnected(&mut self) {
        self.conn = None;
        self.drop_request = false;
        if self.sessions_left == 0 {
            self.done = true;
        }
    }

    /// Sim ids DELEted in the current session (and not undone by RSET).
    pub fn deleted_ids(&self) -> Vec<String> {
        self.conn
            .as_ref()
            .map(|c| c.dele_ids.clone())
            .unwrap_or_default()
    }

    /// Bytes from the server; returns the bytes the reader sends in response.
    pub fn receive(&mut self, bytes: &[u8], rng: &mut Rng) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let Some(c) = self.conn.as_mut() else {
            return Ok(out);
        };
        c.inbox.extend_from_slice(bytes);
        while let Some(c) = self.conn.as_mut() {
            let Some(pos) = c.inbox.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let mut line: Vec<u8> = c.inbox.drain(..pos + 2).collect();
            line.truncate(pos);
            self.on_line(line, rng, &mut out)?;
        }
        Ok(out)
    }

    fn on_line(&mut self, line: Vec<u8>, rng: &mut Rng, out: &mut Vec<u8>) -> Result<(), String> {
        let c = self.conn.as_mut().expect("connected");
        if let Some((_, _, lines)) = &mut c.multi {
            if line == b"." {
                let (cmd, status, lines) = c.multi.take().expect("checked");
                return self.on_reply(cmd, true, &status, lines, rng, out);
            }
            if line.starts_with(b".") {
                if !line.starts_with(b"..") {
                    return Err(format!(
                        "POP3 multi-line response has an unstuffed dot line {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                }
                lines.push(line[1..].to_vec());
            } else {
                lines.push(line);
            }
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let ok = text == "+OK" || text.starts_with("+OK ");
        let err = text == "-ERR" || text.starts_with("-ERR ");
        let Some(cmd) = c.expect.pop_front() else {
            if err && text.contains("inactivity") {
                c.closing = true;
                return Ok(());
            }
            return Err(format!("unsolicited POP3 line {text:?}"));
        };
        if cmd == Cmd::AuthCont && (text == "+" || text.starts_with("+ ")) {
            let line = format!("{}\r\n", plain(self.user));
            out.extend_from_slice(line.as_bytes());
            c.expect.push_back(Cmd::Login);
            return Ok(());
        }
        if !ok && !err {
            return Err(format!("malformed POP3 status line {text:?} (to {cmd:?})"));
        }
        if err && text.contains("inactivity") {
            c.closing = true;
            return Ok(());
        }
        if ok
            && matches!(
                cmd,
                Cmd::Capa | Cmd::List | Cmd::Uidl | Cmd::Retr(_) | Cmd::Top(..)
            )
        {
            c.multi = Some((cmd, text, Vec::new()));
            return Ok(());
        }
        self.on_reply(cmd, ok, &text, Vec::new(), rng, out)
    }

    fn send(c: &mut PopConn, out: &mut Vec<u8>, line: &str, cmd: Cmd) {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        c.expect.push_back(cmd);
    }

    /// After the greeting or CAPA: STLS if wanted, else log in.
    fn proceed(&self, c: &mut PopConn, rng: &mut Rng, out: &mut Vec<u8>) {
        if c.want_stls && !c.tls {
            Self::send(c, out, "STLS", Cmd::Stls);
        } else {
            self.login(c, rng, out);
        }
    }

    fn login(&self, c: &mut PopConn, rng: &mut Rng, out: &mut Vec<u8>) {
        let user = format!("{}@{DOMAIN}", self.user);
        if c.wrong_first {
            let wrong =
                petrel_core::sasl::encode_challenge(format!("\0{user}\0wrong-password").as_bytes());
            return Self::send(c, out, &format!("AUTH PLAIN {wrong}"), Cmd::Login);
        }
        match rng.below(3) {
            0 => Self::send(c, out, &format!("USER {user}"), Cmd::User),
            1 => Self::send(
                c,
                out,
                &format!("AUTH PLAIN {}", plain(self.user)),
                Cmd::Login,
            ),
            _ => Self::send(c, out, "AUTH PLAIN", Cmd::AuthCont),
        }
    }

    fn on_reply(
        &mut self,
        cmd: Cmd,
        ok: bool,
        status: &str,
        lines: Vec<Vec<u8>>,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut c = self.conn.take().expect("connected");
        let r = self.reply(&mut c, cmd, ok, status, lines, rng, out);
        self.conn = Some(c);
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        c: &mut PopConn,
        cmd: Cmd,
        ok: bool,
        status: &str,
        lines: Vec<Vec<u8>>,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let texts = || -> Vec<String> {
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect()
        };
        match cmd {
            Cmd::Greeting if ok => {
                if rng.one_in(4) {
                    Self::send(c, out, "CAPA", Cmd::Capa);
                } else {
                    self.proceed(c, rng, out);
                }
            }
            Cmd::Greeting => c.closing = true,
            Cmd::Capa if ok => {
                let caps = texts();
                let has = |cap: &str| caps.iter().any(|l| l == cap);
                for cap in ["TOP", "UIDL", "USER", "SASL PLAIN", "PIPELINING"] {
                    if !has(cap) {
                        return Err(format!("CAPA lacks {cap:?}: {caps:?}"));
                    }
                }
                if has("STLS") == c.tls {
                    return Err(format!("CAPA with tls {} lists {caps:?}", c.tls));
                }
                self.proceed(c, rng, out);
            }
            Cmd::Stls if ok => {
                c.tls = true;
                if rng.one_in(3) {
                    Self::send(c, out, "CAPA", Cmd::Capa);
                } else {
                    self.login(c, rng, out);
                }
            }
            Cmd::Stls => return Err(format!("STLS refused: {status:?}")),
            Cmd::User if ok => Self::send(c, out, "PASS password", Cmd::Login),
            Cmd::User => return Err(format!("USER refused: {status:?}")),
            Cmd::AuthCont => return Err(format!("AUTH PLAIN got no continuation: {status:?}")),
            Cmd::Login if ok && c.wrong_first => {
                return Err(format!("a wrong password was accepted: {status:?}"));
            }
            Cmd::Login if ok => {
                Self::send(c, out, "STAT", Cmd::Stat);
                if c.pipelined {
                    Self::send(c, out, "LIST", Cmd::List);
                    Self::send(c, out, "UIDL", Cmd::Uidl);
                }
            }
            Cmd::Login if c.wrong_first && status.contains("[AUTH]") => {
                c.wrong_first = false;
                self.login(c, rng, out);
            }
            Cmd::Login => {
                if status.contains("[AUTH]") {
                    return Err(format!("the right password was refused: {status:?}"));
                }
                if status.contains("[IN-USE]") {
                    self.events.push(PopEvent::InUse);
                }
                Self::send(c, out, "QUIT", Cmd::Quit);
            }
            Cmd::Stat if ok => {
                let f: Vec<u64> = status[3..]
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                if f.len() != 2 {
                    return Err(format!("malformed STAT reply {status:?}"));
                }
                c.stat = Some((f[0], f[1]));
                if !c.pipelined {
                    Self::send(c, out, "LIST", Cmd::List);
                }
            }
            Cmd::List if ok => {
                for t in texts() {
                    let f: Vec<&str> = t.split(' ').collect();
                    let parsed = match f[..] {
                        [n, s] => n.parse::<u32>().ok().zip(s.parse::<u64>().ok()),
                        _ => None,
                    };
                    let Some((n, s)) = parsed else {
                        return Err(format!("malformed LIST line {t:?}"));
                    };
                    c.sizes.insert(n, s);
                }
                let (count, size) = (c.sizes.len() as u64, c.sizes.values().sum::<u64>());
                if c.stat != Some((count, size)) {
                    return Err(format!(
                        "STAT said {:?}, LIST lists {count} messages of {size} octets",
                        c.stat
                    ));
                }
                if !c.pipelined {
                    Self::send(c, out, "UIDL", Cmd::Uidl);
                }
            }
            Cmd::Uidl if ok => {
                for t in texts() {
                    let f: Vec<&str> = t.split(' ').collect();
                    let parsed = match f[..] {
                        [n, u] if u.len() == 16 && u.bytes().all(|b| b.is_ascii_hexdigit()) => {
                            n.parse::<u32>().ok().map(|n| (n, u.to_string()))
                        }
                        _ => None,
                    };
                    let Some((n, u)) = parsed else {
                        return Err(format!("malformed UIDL line {t:?}"));
                    };
                    c.uidls.insert(n, u);
                }
                if !c.uidls.keys().eq(c.sizes.keys()) {
                    return Err(format!(
                        "UIDL numbers {:?} differ from LIST numbers {:?}",
                        c.uidls.keys().collect::<Vec<_>>(),
                        c.sizes.keys().collect::<Vec<_>>()
                    ));
                }
                let mut values = c.uidls.values().collect::<Vec<_>>();
                values.sort();
                values.dedup();
                if values.len() != c.uidls.len() {
                    return Err(format!("duplicate UIDLs in one listing: {:?}", c.uidls));
                }
                // The plan: some messages, read whole or TOP, some of them deleted.
                let numbers: Vec<u32> = c.sizes.keys().copied().collect();
                let take = rng.range(0, numbers.len().min(8));
                for _ in 0..take {
                    let n = numbers[rng.below(numbers.len() as u64) as usize];
                    if c.todo
                        .iter()
                        .any(|t| matches!(t, Cmd::Retr(m) | Cmd::Top(m, _) if *m == n))
                    {
                        continue;
                    }
                    c.todo.push_back(if rng.one_in(4) {
                        Cmd::Top(n, rng.below(5))
                    } else {
                        Cmd::Retr(n)
                    });
                    if rng.one_in(2) {
                        c.want_dele.insert(n);
                    }
                }
                match rng.below(5) {
                    0 => {
                        c.todo.push_back(Cmd::Rset);
                        c.todo.push_back(Cmd::Quit);
                    }
                    1 => c.todo.push_back(Cmd::Drop),
                    _ => c.todo.push_back(Cmd::Quit),
                }
            }
            Cmd::Retr(n) | Cmd::Top(n, _) if ok => {
                let mut content = Vec::new();
                for l in &lines {
                    content.extend_from_slice(l);
                    content.extend_from_slice(b"\r\n");
                }
                let octets = status
                    .strip_prefix("+OK ")
                    .and_then(|s| s.strip_suffix(" octets"))
                    .and_then(|s| s.parse().ok());
                let id = sim_id(&content);
                if let Some(id) = &id {
                    c.ids.insert(n, id.clone());
                    if c.want_dele.remove(&n) {
                        c.todo.push_front(Cmd::Dele(n));
                    }
                }
                self.retrieved += 1;
                self.events.push(PopEvent::Retrieved {
                    n,
                    uidl: c.uidls.get(&n).cloned(),
                    octets,
                    listed: c.sizes.get(&n).copied(),
                    content,
                    top: match cmd {
                        Cmd::Top(_, k) => Some(k),
                        _ => None,
                    },
                });
            }
            Cmd::Retr(_) | Cmd::Top(..) if status.contains("[SYS/TEMP]") => {}
            Cmd::Dele(n) if ok => {
                if let Some(id) = c.ids.get(&n) {
                    c.dele_ids.push(id.clone());
                }
            }
            Cmd::Rset if ok => c.dele_ids.clear(),
            Cmd::Quit => {
                if ok && !c.dele_ids.is_empty() {
                    self.events
                        .push(PopEvent::QuitAcked(std::mem::take(&mut c.dele_ids)));
                }
                c.closing = true;
            }
            Cmd::Drop => {}
            _ => return Err(format!("{cmd:?} answered {status:?}")),
        }
        while !c.closing && c.multi.is_none() {
            let Some(&next) = c.todo.front() else { break };
            let busy = !c.expect.is_empty();
            let pipelinable = matches!(next, Cmd::Retr(_) | Cmd::Top(..) | Cmd::Dele(_));
            if busy && !(c.pipelined && pipelinable) {
                break;
            }
            c.todo.pop_front();
            match next {
                Cmd::Drop => {
                    self.drop_request = true;
                    break;
                }
                Cmd::Quit => {
                    self.events.push(PopEvent::QuitSent(c.dele_ids.clone()));
                    Self::send(c, out, "QUIT", Cmd::Quit);
                }
                Cmd::Retr(n) => Self::send(c, out, &format!("RETR {n}"), next),
                Cmd::Top(n, k) => Self::send(c, out, &format!("TOP {n} {k}"), next),
                Cmd::Dele(n) => Self::send(c, out, &format!("DELE {n}"), next),
                Cmd::Rset => Self::send(c, out, "RSET", Cmd::Rset),
                other => return Err(format!("bad plan step {other:?}")),
            }
        }
        Ok(())
    }
}

/// The AUTH PLAIN response for `user` with the right password.
fn plain(user: &str) -> String {
    petrel_core::sasl::encode_challenge(format!("\0{user}@{DOMAIN}\0password").as_bytes())
}

/// What `TOP k` of `msg` is: the header, the empty line, and the first `k` body lines.
pub fn top_of(msg: &[u8], k: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_headers = true;
    let mut left = k;
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if !in_headers {
            if left == 0 {
                break;
            }
            left -= 1;
        } else if line == b"\r\n" {
            in_headers = false;
        }
        out.extend_from_slice(line);
    }
    out
}
