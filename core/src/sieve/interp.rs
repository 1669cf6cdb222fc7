//! The Sieve interpreter: runs a checked [`Script`] against a message and envelope.

use std::collections::BTreeMap;

use super::parser::{Argument, Command, DATE_PARTS, Script, Test, parse, tag_value, valid_address};
use super::{Limits, SieveError};

/// The SMTP envelope of the message being filtered, and the rest of the run's context that
/// only the caller knows (the core reads no clock and no host name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path (`MAIL FROM`), empty for the null sender.
    pub from: String,
    /// The recipient this delivery is for (`RCPT TO`).
    pub to: String,
    /// The time of delivery, Unix seconds: `currentdate` (RFC 5260) reads it. Petrel's local
    /// time zone is UTC, as in the dates it writes elsewhere.
    pub now: i64,
    /// This host's fully qualified name: the `environment` items "host" and "domain" (RFC 5183).
    pub host: String,
}

/// Read access to the message being filtered.
pub trait Message {
    /// All values of header `name` (case-insensitive), unfolded, in message order.
    fn header(&self, name: &str) -> Vec<String>;
    /// The body, after the blank line that ends the header.
    fn body(&self) -> &[u8];
    /// Size of the whole message in octets.
    fn size(&self) -> u64;
}

/// A [`Message`] over raw RFC 5322 bytes, headers split and unfolded once.
#[derive(Debug, Clone)]
pub struct RawMessage<'a> {
    headers: Vec<(String, String)>,
    body: &'a [u8],
    size: u64,
}

impl<'a> RawMessage<'a> {
    /// Splits `raw` into header fields and body. Malformed lines are skipped, never an error.
    pub fn parse(raw: &'a [u8]) -> Self {
        let (headers, body) = split_header(raw);
        RawMessage {
            headers,
            body,
            size: raw.len() as u64,
        }
    }
}

impl Message for RawMessage<'_> {
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn body(&self) -> &[u8] {
        self.body
    }

    fn size(&self) -> u64 {
        self.size
    }
}

fn split_header(raw: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        pos = end;
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return (headers, &raw[pos..]);
        }
        if text.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(text.trim_start());
            }
        } else if let Some((n, v)) = text.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    (headers, &raw[raw.len()..])
}

/// Where `include` finds other scripts (RFC 6609). The interpreter parses what it gets.
///
/// It is also the interpreter's one other question to the store: whether a mailbox exists
/// (`mailboxexists`, RFC 5490).
pub trait IncludeSource {
    /// The text of script `name`, from the user's (`global == false`) or the global scripts.
    fn load(&mut self, name: &str, global: bool) -> Option<String>;

    /// Whether the user's mailbox `name` exists. Called once per name `mailboxexists` tests;
    /// the default knows of no mailboxes.
    fn mailbox_exists(&mut self, _name: &str) -> bool {
        false
    }
}

/// An [`IncludeSource`] with no scripts: every `include` fails (or is skipped if `:optional`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIncludes;

impl IncludeSource for NoIncludes {
    fn load(&mut self, _name: &str, _global: bool) -> Option<String> {
        None
    }
}

/// An action for the delivery agent to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver to INBOX (explicit or implicit keep) with these IMAP flags.
    Keep {
        /// IMAP flags to set on the stored message.
        flags: Vec<String>,
    },
    /// Deliver to `folder`.
    FileInto {
        /// Target mailbox name.
        folder: String,
        /// IMAP flags to set on the stored message.
        flags: Vec<String>,
        /// `:copy` given: does not cancel the implicit keep.
        copy: bool,
    },
    /// Forward to `address`.
    Redirect {
        /// Target address.
        address: String,
        /// `:copy` given: does not cancel the implicit keep.
        copy: bool,
    },
    /// Refuse the message with `reason` (RFC 5429).
    Reject {
        /// Human-readable reason.
        reason: String,
        /// `ereject`: refuse in the SMTP/LMTP dialogue if at all possible.
        ereject: bool,
    },
    /// Drop the message silently.
    Discard,
    /// Send an auto-reply (RFC 5230); response tracking is the caller's.
    Vacation {
        /// Body of the reply (a MIME entity if `mime`).
        reason: String,
        /// `:subject`.
        subject: Option<String>,
        /// `:from`.
        from: Option<String>,
        /// `:addresses`: the user's other addresses.
        addresses: Vec<String>,
        /// `:mime`: `reason` is a MIME entity.
        mime: bool,
        /// `:handle`, or `None` to derive one from the arguments.
        handle: Option<String>,
        /// `:days`, if given.
        days: Option<u64>,
        /// `:seconds`, if given.
        seconds: Option<u64>,
    },
}

/// Why a run fell back to the implicit keep.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunError {
    /// The step budget ([`Limits::max_steps`]) ran out.
    StepBudget,
    /// More than [`Limits::max_actions`] actions.
    TooManyActions,
    /// `include` nested deeper than [`Limits::max_include_depth`].
    IncludeDepth,
    /// More than [`Limits::max_includes`] `include`s.
    IncludeCount,
    /// An included script does not exist.
    IncludeMissing(String),
    /// An included script does not parse.
    IncludeInvalid(String, SieveError),
    /// A `redirect` address (after variable expansion) is not an address.
    InvalidAddress(String),
    /// Actions that cannot be combined (two `reject`s, two `vacation`s, ...).
    Conflict(String),
    /// A `:regex` key (after variable expansion) is too long or does not compile.
    Regex(String),
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to do with the message. Never empty: at least a keep or an explicit disposal.
    pub actions: Vec<Action>,
    /// Set when the script failed at run time; `actions` is then the implicit keep alone.
    pub error: Option<RunError>,
}

/// Runs `script` on `message` for `envelope`. Never panics; time is bounded by
/// [`Limits::max_steps`]; any run-time error yields the implicit keep.
pub fn run(
    script: &Script,
    envelope: &Envelope,
    message: &dyn Message,
    includes: &mut dyn IncludeSource,
    limits: &Limits,
) -> Outcome {
    let mut r = Run {
        env: envelope,
        msg: message,
        includes,
        limits,
        steps: 0,
        actions: Vec::new(),
        cancel_keep: false,
        flags: Vec::new(),
        globals: BTreeMap::new(),
        include_count: 0,
        once: Vec::new(),
        match_vars: Vec::new(),
        depth: 0,
        regexes: BTreeMap::new(),
    };
    let mut frame = Frame {
        script,
        locals: BTreeMap::new(),
        global_names: Vec::new(),
    };
    match r.block(&mut frame, &script.commands) {
        Ok(_) => {
            let mut actions = r.actions;
            if !r.cancel_keep && !actions.iter().any(|a| matches!(a, Action::Keep { .. })) {
                actions.push(Action::Keep { flags: r.flags });
            }
            Outcome {
                actions,
                error: None,
            }
        }
        Err(e) => Outcome {
            actions: vec![Action::Keep { flags: Vec::new() }],
            error: Some(e),
        },
    }
}

type R<T> = Result<T, RunError>;

enum Flow {
    Next,
    Stop,
    Return,
}

struct Frame<'s> {
    script: &'s Script,
    locals: BTreeMap<String, String>,
    global_names: Vec<String>,
}

struct Run<'a> {
    env: &'a Envelope,
    msg: &'a dyn Message,
    includes: &'a mut dyn IncludeSource,
    limits: &'a Limits,
    steps: u64,
    actions: Vec<Action>,
    cancel_keep: bool,
    flags: Vec<String>,
    globals: BTreeMap<String, String>,
    include_count: usize,
    once: Vec<(bool, String)>,
    match_vars: Vec<String>,
    depth: usize,
    /// Compiled `:regex` keys of this run, by (pattern, case-insensitive).
    regexes: BTreeMap<(String, bool), regex::Regex>,
}

/// Most compiled regular expressions kept per run; the cache starts over when full.
const MAX_CACHED_REGEXES: usize = 64;

/// Compiles a `:regex` key (draft-ietf-sieve-regex-01) within the limits: POSIX extended
/// syntax as the `regex` crate reads it, which accepts ERE (bracket expressions with
/// `[:class:]`, `{m,n}`, alternation, groups) but matches leftmost-first rather than
/// leftmost-longest, and has no back-references (which ERE lacks too). Matching takes time
/// linear in the text. `fold` is the `i;ascii-casemap` comparator.
pub(super) fn compile_regex(
    pattern: &str,
    fold: bool,
    limits: &Limits,
) -> Result<regex::Regex, String> {
    if pattern.len() > limits.max_regex_len {
        return Err(format!(
            "regular expression longer than {} bytes",
            limits.max_regex_len
        ));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(fold)
        .size_limit(limits.max_regex_size)
        .dfa_size_limit(limits.max_regex_size)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            let e = e.to_string();
            // The crate's message spans lines with a caret diagram; the last line says why.
            let why = e
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            format!("invalid regular expression \"{pattern}\": {why}")
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Octet,
    Casemap,
    Numeric,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rel {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Rel {
    fn parse(s: &str) -> Rel {
        match s.to_ascii_lowercase().as_str() {
            "gt" => Rel::Gt,
            "ge" => Rel::Ge,
            "lt" => Rel::Lt,
            "le" => Rel::Le,
            "ne" => Rel::Ne,
            _ => Rel::Eq,
        }
    }

    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Rel::Gt => o == Greater,
            Rel::Ge => o != Less,
            Rel::Lt => o == Less,
            Rel::Le => o != Greater,
            Rel::Eq => o == Equal,
            Rel::Ne => o != Equal,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Is,
    Contains,
    Matches,
    Regex,
    Value(Rel),
    Count(Rel),
}

/// Tagged and positional arguments of one command or test.
struct Args<'a> {
    tags: Vec<(&'a str, Option<&'a Argument>)>,
    pos: Vec<&'a Argument>,
}

impl<'a> Args<'a> {
    fn split(args: &'a [Argument]) -> Self {
        let mut out = Args {
            tags: Vec::new(),
            pos: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a {
                Argument::Tag(t) => {
                    let v = if tag_value(t).is_some() {
                        it.next()
                    } else {
                        None
                    };
                    out.tags.push((t.as_str(), v));
                }
                a => out.pos.push(a),
            }
        }
        out
    }

    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|(t, _)| *t == tag)
    }

    fn value(&self, tag: &str) -> Option<&'a Argument> {
        self.tags
            .iter()
            .find(|(t, _)| *t == tag)
            .and_then(|(_, v)| *v)
    }

    fn comparator(&self) -> Cmp {
        match self.value("comparator") {
            Some(Argument::String(s)) => match s.to_ascii_lowercase().as_str() {
                "i;octet" => Cmp::Octet,
                "i;ascii-numeric" => Cmp::Numeric,
                _ => Cmp::Casemap,
            },
            _ => Cmp::Casemap,
        }
    }

    fn match_type(&self) -> MatchType {
        for (t, v) in &self.tags {
            let rel = || match v {
                Some(Argument::String(s)) => Rel::parse(s),
                _ => Rel::Eq,
            };
            match *t {
                "is" => return MatchType::Is,
                "contains" => return MatchType::Contains,
                "matches" => return MatchType::Matches,
                "regex" => return MatchType::Regex,
                "value" => return MatchType::Value(rel()),
                "count" => return MatchType::Count(rel()),
                _ => {}
            }
        }
        MatchType::Is
    }
}

fn num(a: Option<&&Argument>) -> u64 {
    match a {
        Some(Argument::Number(n)) => *n,
        _ => 0,
    }
}

impl Run<'_> {
    fn step(&mut self, n: u64) -> R<()> {
        self.steps = self.steps.saturating_add(n.max(1));
        if self.steps > self.limits.max_steps {
            Err(RunError::StepBudget)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, a: Action) -> R<()> {
        if self.actions.len() >= self.limits.max_actions {
            return Err(RunError::TooManyActions);
        }
        self.actions.push(a);
        Ok(())
    }

    /// The values of header `name`, charged to the step budget by size.
    fn header(&mut self, name: &str) -> R<Vec<String>> {
        let values = self.msg.header(name);
        let total: usize = values.iter().map(String::len).sum();
        self.step(1 + total as u64 / 16)?;
        Ok(values)
    }

    // ----- variables -----

    fn get_var(&self, f: &Frame<'_>, name: &str) -> String {
        let name = name.to_ascii_lowercase();
        if f.global_names.contains(&name) {
            self.globals.get(&name).cloned().unwrap_or_default()
        } else {
            f.locals.get(&name).cloned().unwrap_or_default()
        }
    }

    fn set_var(
        &self,
        f: &mut Frame<'_>,
        globals: &mut BTreeMap<String, String>,
        name: &str,
        mut v: String,
    ) {
        truncate(&mut v, self.limits.max_variable_len);
        let name = name.to_ascii_lowercase();
        if f.global_names.contains(&name) {
            globals.insert(name, v);
        } else {
            f.locals.insert(name, v);
        }
    }

    fn expand(&mut self, f: &Frame<'_>, s: &str) -> R<String> {
        if !f.script.has("variables") || !s.contains("${") {
            return Ok(s.to_string());
        }
        self.step(s.len() as u64 / 16)?;
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let valid = after
                .find('}')
                .map(|end| (end, &after[..end]))
                .filter(|(_, name)| {
                    let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
                    let ident = name.split('.').all(|p| {
                        p.bytes()
                            .next()
                            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                    digits || ident
                });
            match valid {
                Some((end, name)) => {
                    if name.bytes().all(|b| b.is_ascii_digit()) {
                        let idx: usize = name.parse().unwrap_or(usize::MAX);
                        if let Some(v) = self.match_vars.get(idx) {
                            out.push_str(v);
                        }
                    } else if !name.contains('.') {
                        out.push_str(&self.get_var(f, name));
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            }
            if out.len() > self.limits.max_variable_len.saturating_mul(4) {
                break;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn strings(&mut self, f: &Frame<'_>, a: Option<&&Argument>) -> R<Vec<String>> {
        let list = a.and_then(|a| a.strings()).unwrap_or_default();
        list.iter().map(|s| self.expand(f, s)).collect()
    }

    fn string(&mut self, f: &Frame<'_>, a: Option<&&Argument>) -> R<String> {
        Ok(self.strings(f, a)?.into_iter().next().unwrap_or_default())
    }

    // ----- commands -----

    fn block(&mut self, f: &mut Frame<'_>, cmds: &[Command]) -> R<Flow> {
        let mut taken = false;
        for c in cmds {
            self.step(1)?;
            let flow = match c.name.as_str() {
                "if" | "elsif" | "else" => {
                    if c.name != "if" && taken {
                        continue;
                    }
                    taken = match &c.test {
                        Some(t) => self.test(f, t)?,
                        None => true,
                    };
                    match (&c.block, taken) {
                        (Some(b), true) => self.block(f, b)?,
                        _ => Flow::Next,
                    }
                }
                _ => self.command(f, c)?,
            };
            if !matches!(flow, Flow::Next) {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    fn flags_arg(&mut self, f: &Frame<'_>, a: &Args<'_>) -> R<Vec<String>> {
        match a.value("flags") {
            Some(v) => {
                let list = self.strings(f, Some(&v))?;
                Ok(normalize_flags(list.iter().map(String::as_str)))
            }
            None => Ok(self.flags.clone()),
        }
    }

    fn command(&mut self, f: &mut Frame<'_>, c: &Command) -> R<Flow> {
        let a = Args::split(&c.args);
        match c.name.as_str() {
            "require" => {}
            "stop" => return Ok(Flow::Stop),
            "return" => return Ok(Flow::Return),
            "keep" => {
                let flags = self.flags_arg(f, &a)?;
                self.cancel_keep = true;
                if !self
                    .actions
                    .iter()
                    .any(|x| matches!(x, Action::Keep { .. }))
                {
                    self.push(Action::Keep { flags })?;
                }
            }
            "discard" => {
                self.cancel_keep = true;
                if !self.actions.contains(&Action::Discard) {
                    self.push(Action::Discard)?;
                }
            }
            "fileinto" => {
                let folder = self.string(f, a.pos.first())?;
                let flags = self.flags_arg(f, &a)?;
                let copy = a.has("copy");
                if !copy {
                    self.cancel_keep = true;
                }
                let dup = self
                    .actions
                    .iter()
                    .any(|x| matches!(x, Action::FileInto { folder: g, .. } if *g == folder));
                if !dup {
                    self.push(Action::FileInto {
                        folder,
                        flags,
                        copy,
                    })?;
                }
            }
            "redirect" => {
                let address = self.string(f, a.pos.first())?;
                if !valid_address(&address) {
                    return Err(RunError::InvalidAddress(address));
                }
                let copy = a.has("copy");
                if !copy {
                    self.cancel_keep = true;
                }
                let dup = self.actions.iter().any(
                    |x| matches!(x, Action::Redirect { address: g, .. } if g.eq_ignore_ascii_case(&address)),
                );
                if !dup {
                    self.push(Action::Redirect { address, copy })?;
                }
            }
            "reject" | "ereject" => {
                if self
                    .actions
                    .iter()
                    .any(|x| matches!(x, Action::Reject { .. } | Action::Vacation { .. }))
                {
                    return Err(RunError::Conflict(
                        "reject combined with reject or vacation".into(),
                    ));
                }
                let reason = self.string(f, a.pos.first())?;
                self.cancel_keep = true;
                self.push(Action::Reject {
                    reason,
                    ereject: c.name == "ereject",
                })?;
            }
            "vacation" => {
                if self
                    .actions
                    .iter()
                    .any(|x| matches!(x, Action::Vacation { .. } | Action::Reject { .. }))
                {
                    return Err(RunError::Conflict(
                        "vacation combined with vacation or reject".into(),
                    ));
                }
                let reason = self.string(f, a.pos.first())?;
                let opt = |r: &mut Self, t: &str| -> R<Option<String>> {
                    match a.value(t) {
                        Some(v) => Ok(Some(r.string(f, Some(&v))?)),
                        None => Ok(None),
                    }
                };
                let subject = opt(self, "subject")?;
                let from = opt(self, "from")?;
                let handle = opt(self, "handle")?;
                let addresses = match a.value("addresses") {
                    Some(v) => self.strings(f, Some(&v))?,
                    None => Vec::new(),
                };
                let days = a.value("days").map(|v| num(Some(&v)));
                let seconds = a.value("seconds").map(|v| num(Some(&v)));
                self.push(Action::Vacation {
                    reason,
                    subject,
                    from,
                    addresses,
                    mime: a.has("mime"),
                    handle,
                    days,
                    seconds,
                })?;
            }
            "setflag" | "addflag" | "removeflag" => {
                self.step(c.args.len() as u64)?;
                let (var, list) = if a.pos.len() == 2 {
                    (
                        Some(self.string(f, a.pos.first())?),
                        self.strings(f, a.pos.get(1))?,
                    )
                } else {
                    (None, self.strings(f, a.pos.first())?)
                };
                let current = match &var {
                    Some(v) => split_flags(&self.get_var(f, v)),
                    None => self.flags.clone(),
                };
                let given = normalize_flags(list.iter().map(String::as_str));
                let new = match c.name.as_str() {
                    "setflag" => given,
                    "addflag" => normalize_flags(current.iter().chain(&given).map(String::as_str)),
                    _ => current
                        .into_iter()
                        .filter(|x| !given.iter().any(|g| g.eq_ignore_ascii_case(x)))
                        .collect(),
                };
                match var {
                    Some(v) => {
                        let mut globals = std::mem::take(&mut self.globals);
                        self.set_var(f, &mut globals, &v, new.join(" "));
                        self.globals = globals;
                    }
                    None => self.flags = new,
                }
            }
            "set" => {
                let name = match a.pos.first() {
                    Some(Argument::String(s)) => s.clone(),
                    _ => String::new(),
                };
                let mut v = self.string(f, a.pos.get(1))?;
                if a.has("lower") {
                    v = v.to_lowercase();
                }
                if a.has("upper") {
                    v = v.to_uppercase();
                }
                if a.has("lowerfirst") {
                    v = map_first(&v, |c| c.to_lowercase().collect());
                }
                if a.has("upperfirst") {
                    v = map_first(&v, |c| c.to_uppercase().collect());
                }
                if a.has("quotewildcard") {
                    v = v.chars().fold(String::new(), |mut s, c| {
                        if matches!(c, '*' | '?' | '\\') {
                            s.push('\\');
                        }
                        s.push(c);
                        s
                    });
                }
                if a.has("quoteregex") {
                    v = v.chars().fold(String::new(), |mut s, c| {
                        if "\\.*+?()[]{}|^$".contains(c) {
                            s.push('\\');
                        }
                        s.push(c);
                        s
                    });
                }
                if a.has("length") {
                    v = v.chars().count().to_string();
                }
                let mut globals = std::mem::take(&mut self.globals);
                self.set_var(f, &mut globals, &name, v);
                self.globals = globals;
            }
            "global" => {
                for n in self.strings(f, a.pos.first())? {
                    let n = n.to_ascii_lowercase();
                    if !f.global_names.contains(&n) {
                        f.global_names.push(n);
                    }
                }
            }
            "include" => return self.include(f, &a),
            _ => {}
        }
        Ok(Flow::Next)
    }

    fn include(&mut self, f: &Frame<'_>, a: &Args<'_>) -> R<Flow> {
        let name = self.string(f, a.pos.first())?;
        let global = a.has("global");
        if a.has("once") && self.once.iter().any(|(g, n)| *g == global && *n == name) {
            return Ok(Flow::Next);
        }
        self.include_count += 1;
        if self.include_count > self.limits.max_includes {
            return Err(RunError::IncludeCount);
        }
        if self.depth >= self.limits.max_include_depth {
            return Err(RunError::IncludeDepth);
        }
        let Some(text) = self.includes.load(&name, global) else {
            if a.has("optional") {
                return Ok(Flow::Next);
            }
            return Err(RunError::IncludeMissing(name));
        };
        self.step(text.len() as u64 / 16)?;
        let script =
            parse(&text, self.limits).map_err(|e| RunError::IncludeInvalid(name.clone(), e))?;
        if a.has("once") {
            self.once.push((global, name));
        }
        let mut sub = Frame {
            script: &script,
            locals: BTreeMap::new(),
            global_names: Vec::new(),
        };
        self.depth += 1;
        let flow = self.block(&mut sub, &script.commands)?;
        self.depth -= 1;
        Ok(match flow {
            Flow::Stop => Flow::Stop,
            _ => Flow::Next,
        })
    }

    // ----- tests -----

    fn test(&mut self, f: &mut Frame<'_>, t: &Test) -> R<bool> {
        self.step(1)?;
        let a = Args::split(&t.args);
        match t.name.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            "not" => match t.tests.first() {
                Some(s) => Ok(!self.test(f, s)?),
                None => Ok(false),
            },
            "allof" => {
                for s in &t.tests {
                    if !self.test(f, s)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "anyof" => {
                for s in &t.tests {
                    if self.test(f, s)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "size" => {
                let n = num(a.pos.first());
                let size = self.msg.size();
                Ok(if a.has("over") { size > n } else { size < n })
            }
            "exists" => {
                let names = self.strings(f, a.pos.first())?;
                for n in &names {
                    if self.header(n)?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "header" => {
                let names = self.strings(f, a.pos.first())?;
                let keys = self.strings(f, a.pos.get(1))?;
                let mut values = Vec::new();
                for n in &names {
                    let found = index(&a, self.header(n)?);
                    values.extend(found.iter().map(|v| decode_rfc2047(v)));
                }
                self.matches(f, &a, &values, &keys)
            }
            "address" | "envelope" => {
                let names = self.strings(f, a.pos.first())?;
                let keys = self.strings(f, a.pos.get(1))?;
                let mut addrs = Vec::new();
                for n in &names {
                    if t.name == "envelope" {
                        match n.to_ascii_lowercase().as_str() {
                            "from" => addrs.push(strip_angle(&self.env.from)),
                            "to" => addrs.push(strip_angle(&self.env.to)),
                            _ => {}
                        }
                    } else {
                        for v in index(&a, self.header(n)?) {
                            addrs.extend(parse_addresses(&v));
                        }
                    }
                }
                let part = ["localpart", "domain", "user", "detail"]
                    .into_iter()
                    .find(|p| a.has(p))
                    .unwrap_or("all");
                let values: Vec<String> =
                    addrs.iter().filter_map(|x| address_part(x, part)).collect();
                self.matches(f, &a, &values, &keys)
            }
            "string" => {
                let values: Vec<String> = self.strings(f, a.pos.first())?;
                let keys = self.strings(f, a.pos.get(1))?;
                let values = if matches!(a.match_type(), MatchType::Count(_)) {
                    values.into_iter().filter(|v| !v.is_empty()).collect()
                } else {
                    values
                };
                self.matches(f, &a, &values, &keys)
            }
            "hasflag" => {
                let (values, keys) = if a.pos.len() == 2 {
                    let mut vals = Vec::new();
                    for v in self.strings(f, a.pos.first())? {
                        vals.extend(split_flags(&self.get_var(f, &v)));
                    }
                    (vals, self.strings(f, a.pos.get(1))?)
                } else {
                    (self.flags.clone(), self.strings(f, a.pos.first())?)
                };
                self.matches(f, &a, &values, &keys)
            }
            "date" => {
                let name = self.string(f, a.pos.first())?;
                let part = self.string(f, a.pos.get(1))?;
                let keys = self.strings(f, a.pos.get(2))?;
                let zone = self.zone_arg(f, &a)?;
                let mut values = Vec::new();
                for v in index(&a, self.header(&name)?) {
                    self.step(v.len() as u64 / 8)?;
                    // A Received field ends in its date, after the last semicolon.
                    let v = v.rsplit_once(';').map_or(v.as_str(), |(_, d)| d);
                    let Some((unix, original)) = parse_date(v) else {
                        continue;
                    };
                    let offset = if a.has("originalzone") {
                        Some(original)
                    } else {
                        zone
                    };
                    // An invalid :zone from a variable, or an unknown date part: nothing to match.
                    if let Some(p) = offset.and_then(|o| date_part(unix, o, &part)) {
                        values.push(p);
                    }
                }
                self.matches(f, &a, &values, &keys)
            }
            "currentdate" => {
                let part = self.string(f, a.pos.first())?;
                let keys = self.strings(f, a.pos.get(1))?;
                let zone = self.zone_arg(f, &a)?;
                let values: Vec<String> = zone
                    .and_then(|o| date_part(self.env.now, o, &part))
                    .into_iter()
                    .collect();
                self.matches(f, &a, &values, &keys)
            }
            "environment" => {
                let name = self.string(f, a.pos.first())?.to_ascii_lowercase();
                let keys = self.strings(f, a.pos.get(1))?;
                let host = self.env.host.as_str();
                let value = match name.as_str() {
                    "domain" if !host.is_empty() => {
                        Some(host.split_once('.').map_or(host, |(_, d)| d).to_string())
                    }
                    "host" if !host.is_empty() => Some(host.to_string()),
                    "location" => Some("MDA".to_string()),
                    "name" => Some("Petrel".to_string()),
                    "phase" => Some("during".to_string()),
                    "version" => Some(env!("CARGO_PKG_VERSION").to_string()),
                    // RFC 5183 section 4: an item that is not available does not match.
                    _ => None,
                };
                let values: Vec<String> = value.into_iter().collect();
                self.matches(f, &a, &values, &keys)
            }
            "mailboxexists" => {
                for name in self.strings(f, a.pos.first())? {
                    self.step(1 + name.len() as u64 / 16)?;
                    if !self.includes.mailbox_exists(&name) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "body" => {
                let keys = self.strings(f, a.pos.first())?;
                self.step(self.msg.body().len() as u64 / 16)?;
                let values = if a.has("raw") {
                    vec![String::from_utf8_lossy(self.msg.body()).into_owned()]
                } else {
                    let types = match a.value("content") {
                        Some(v) => self.strings(f, Some(&v))?,
                        None => vec!["text".to_string()],
                    };
                    body_parts(self.msg, &types)
                };
                self.matches(f, &a, &values, &keys)
            }
            _ => Ok(false),
        }
    }

    /// The offset in minutes `:zone` asks for (the local zone, UTC, without it); `None` when a
    /// zone built from variables is not `+hhmm` / `-hhmm`.
    fn zone_arg(&mut self, f: &Frame<'_>, a: &Args<'_>) -> R<Option<i32>> {
        match a.value("zone") {
            Some(v) => Ok(parse_zone(&self.string(f, Some(&v))?)),
            None => Ok(Some(0)),
        }
    }

    /// Matches `values` against `keys` with the test's comparator and match type; on a `:matches`
    /// success, sets the match variables.
    fn matches(
        &mut self,
        f: &Frame<'_>,
        a: &Args<'_>,
        values: &[String],
        keys: &[String],
    ) -> R<bool> {
        let cmp = a.comparator();
        let mt = a.match_type();
        if let MatchType::Count(rel) = mt {
            // RFC 5231 section 4.2: the count, as a string, compared with the comparator.
            let count = values.len().to_string();
            return Ok(keys.iter().any(|k| rel.holds(compare(cmp, &count, k))));
        }
        for v in values {
            for k in keys {
                self.step(((v.len() + k.len()) / 16) as u64)?;
                let hit = match mt {
                    MatchType::Is => compare(cmp, v, k).is_eq(),
                    MatchType::Contains => match cmp {
                        Cmp::Octet => v.contains(k.as_str()),
                        Cmp::Casemap => v.to_ascii_lowercase().contains(&k.to_ascii_lowercase()),
                        Cmp::Numeric => false,
                    },
                    MatchType::Value(rel) => rel.holds(compare(cmp, v, k)),
                    MatchType::Matches => {
                        if cmp == Cmp::Numeric {
                            false
                        } else if let Some(caps) = self.glob(v, k, cmp == Cmp::Casemap)? {
                            if f.script.has("variables") {
                                let mut vars = vec![v.clone()];
                                vars.extend(caps);
                                vars.truncate(10);
                                self.match_vars = vars;
                            }
                            true
                        } else {
                            false
                        }
                    }
                    MatchType::Regex => {
                        if cmp == Cmp::Numeric {
                            false
                        } else {
                            let re = self.regex(k, cmp == Cmp::Casemap)?;
                            // The NFA simulation costs about text length times pattern size.
                            let cost = (v.len() as u64 + 1).saturating_mul(k.len() as u64 / 8 + 1);
                            self.step(cost / 16)?;
                            match re.captures(v) {
                                Some(caps) => {
                                    if f.script.has("variables") {
                                        self.match_vars = caps
                                            .iter()
                                            .take(10)
                                            .map(|m| m.map_or("", |m| m.as_str()).to_string())
                                            .collect();
                                    }
                                    true
                                }
                                None => false,
                            }
                        }
                    }
                    MatchType::Count(_) => false,
                };
                if hit {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The compiled form of `:regex` key `pattern`, from this run's cache if it was compiled
    /// before; compiling is charged to the step budget by pattern length.
    fn regex(&mut self, pattern: &str, fold: bool) -> R<regex::Regex> {
        let key = (pattern.to_string(), fold);
        if let Some(re) = self.regexes.get(&key) {
            return Ok(re.clone());
        }
        self.step(1 + pattern.len() as u64 * 4)?;
        let re = compile_regex(pattern, fold, self.limits).map_err(RunError::Regex)?;
        if self.regexes.len() >= MAX_CACHED_REGEXES {
            self.regexes.clear();
        }
        self.regexes.insert(key, re.clone());
        Ok(re)
    }

    /// Wildcard match of `text` against `pattern` (`*`, `?`, `\` escapes), iterative with a
    /// single backtrack point, so O(len(text) * len(pattern)) steps at worst, all charged to the
    /// budget. Returns the wildcard captures on success.
    fn glob(&mut self, text: &str, pattern: &str, fold: bool) -> R<Option<Vec<String>>> {
        #[derive(Clone, Copy)]
        enum P {
            Lit(char),
            One,
            Star,
        }
        let norm = |c: char| if fold { c.to_ascii_lowercase() } else { c };
        let mut pat = Vec::new();
        let mut widx = Vec::new();
        let mut wild = 0usize;
        let mut it = pattern.chars();
        while let Some(c) = it.next() {
            let p = match c {
                '*' => P::Star,
                '?' => P::One,
                '\\' => P::Lit(norm(it.next().unwrap_or('\\'))),
                c => P::Lit(norm(c)),
            };
            widx.push(wild);
            if matches!(p, P::Star | P::One) {
                wild += 1;
            }
            pat.push(p);
        }
        let orig: Vec<char> = text.chars().collect();
        let txt: Vec<char> = orig.iter().map(|&c| norm(c)).collect();
        let mut caps = vec![(0usize, 0usize); wild];
        let (mut p, mut t) = (0usize, 0usize);
        // (pattern index of the star, start of its capture, current end)
        let mut star: Option<(usize, usize, usize)> = None;
        loop {
            self.step(1)?;
            if let Some(&pe) = pat.get(p) {
                match pe {
                    P::Star => {
                        star = Some((p, t, t));
                        caps[widx[p]] = (t, t);
                        p += 1;
                        continue;
                    }
                    P::One if t < txt.len() => {
                        caps[widx[p]] = (t, t + 1);
                        p += 1;
                        t += 1;
                        continue;
                    }
                    P::Lit(c) if txt.get(t) == Some(&c) => {
                        p += 1;
                        t += 1;
                        continue;
                    }
                    _ => {}
                }
            } else if t == txt.len() {
                let out = caps
                    .iter()
                    .map(|&(s, e)| orig[s..e].iter().collect())
                    .collect();
                return Ok(Some(out));
            }
            match star {
                Some((sp, start, end)) if end < txt.len() => {
                    star = Some((sp, start, end + 1));
                    caps[widx[sp]] = (start, end + 1);
                    p = sp + 1;
                    t = end + 1;
                }
                _ => return Ok(None),
            }
        }
    }
}

/// RFC 5260 section 6: with `:index N`, only the Nth value (from the end with `:last`).
fn index(a: &Args<'_>, mut values: Vec<String>) -> Vec<String> {
    let Some(Argument::Number(n)) = a.value("index") else {
        return values;
    };
    let n = usize::try_from(*n).unwrap_or(usize::MAX);
    let at = if a.has("last") {
        values.len().checked_sub(n)
    } else {
        n.checked_sub(1)
    };
    match at {
        Some(i) if i < values.len() => vec![values.swap_remove(i)],
        _ => Vec::new(),
    }
}

/// A time zone as RFC 5260 writes it, `+hhmm` or `-hhmm`, as an offset in minutes.
pub(super) fn parse_zone(z: &str) -> Option<i32> {
    let b = z.as_bytes();
    if b.len() != 5 || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hh = i32::from(b[1] - b'0') * 10 + i32::from(b[2] - b'0');
    let mm = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    (mm < 60).then_some(sign * (hh * 60 + mm))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses an RFC 5322 date-time (with the obsolete forms of section 4.3: two-digit years,
/// named zones, missing seconds, comments) into Unix seconds and the zone offset in minutes.
/// `None` if it is not a date.
pub(super) fn parse_date(value: &str) -> Option<(i64, i32)> {
    // Comments out, commas become blanks.
    let mut text = String::with_capacity(value.len());
    let mut depth = 0u32;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            ',' => text.push(' '),
            c => text.push(c),
        }
    }
    let mut words = text.split_whitespace().peekable();
    if words
        .peek()
        .is_some_and(|w| w.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        words.next();
    }
    let day: i64 = small_number(words.next()?, 2)?;
    let month = words.next()?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year_word = words.next()?;
    let mut year: i64 = small_number(year_word, 4)?;
    year += match year_word.len() {
        2 if year < 50 => 2000,
        2 => 1900,
        3 => 1900,
        _ => 0,
    };
    let mut hms = words.next()?.split(':');
    let hour: i64 = small_number(hms.next()?, 2)?;
    let minute: i64 = small_number(hms.next()?, 2)?;
    let second: i64 = match hms.next() {
        Some(s) => small_number(s, 2)?,
        None => 0,
    };
    if hms.next().is_some() {
        return None;
    }
    let offset = match words.next() {
        None => 0,
        Some(z) => parse_zone(z).unwrap_or(match z.to_ascii_uppercase().as_str() {
            "EDT" => -4 * 60,
            "EST" | "CDT" => -5 * 60,
            "CST" | "MDT" => -6 * 60,
            "MST" | "PDT" => -7 * 60,
            "PST" => -8 * 60,
            // UT, GMT, Z, military zones and anything else: RFC 5322 section 4.3 says -0000.
            _ => 0,
        }),
    };
    let month_days = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - i64::from(offset) * 60, offset))
}

/// A run of at most `max` ASCII digits.
fn small_number(s: &str, max: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Date part `part` (RFC 5260 section 4.2) of the instant `unix` seen in zone `offset` minutes.
pub(super) fn date_part(unix: i64, offset: i32, part: &str) -> Option<String> {
    let part = part.to_ascii_lowercase();
    if !DATE_PARTS.contains(&part.as_str()) {
        return None;
    }
    // Years 0 to 9999 only, as the four-digit parts can show.
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let local = unix.checked_add(i64::from(offset) * 60)?;
    if !(MIN..=MAX).contains(&local) {
        return None;
    }
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mi, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let sign = if offset < 0 { '-' } else { '+' };
    let (zh, zm) = (offset.abs() / 60, offset.abs() % 60);
    Some(match part.as_str() {
        "year" => format!("{y:04}"),
        "month" => format!("{m:02}"),
        "day" => format!("{d:02}"),
        "date" => format!("{y:04}-{m:02}-{d:02}"),
        // Modified Julian Day: days since 1858-11-17.
        "julian" => (days + 40_587).to_string(),
        "hour" => format!("{hh:02}"),
        "minute" => format!("{mi:02}"),
        "second" => format!("{ss:02}"),
        "time" => format!("{hh:02}:{mi:02}:{ss:02}"),
        "iso8601" => {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mi:02}:{ss:02}{sign}{zh:02}:{zm:02}")
        }
        "std11" => format!(
            "{}, {d} {} {y:04} {hh:02}:{mi:02}:{ss:02} {sign}{zh:02}{zm:02}",
            WEEKDAYS[(days + 4).rem_euclid(7) as usize],
            map_first(MONTHS[(m - 1) as usize], |c| c
                .to_ascii_uppercase()
                .to_string()),
        ),
        "zone" => format!("{sign}{zh:02}{zm:02}"),
        _ => (days + 4).rem_euclid(7).to_string(), // weekday, 0 = Sunday
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn map_first(s: &str, f: impl Fn(char) -> String) -> String {
    let mut it = s.chars();
    match it.next() {
        Some(c) => f(c) + it.as_str(),
        None => String::new(),
    }
}

/// Most distinct IMAP flags one message or flag variable carries.
const MAX_FLAGS: usize = 128;

fn split_flags(s: &str) -> Vec<String> {
    normalize_flags(s.split_whitespace())
}

/// Splits on whitespace and removes case-insensitive duplicates, keeping the first spelling.
/// At most [`MAX_FLAGS`] flags are kept, so this is linear in the input.
fn normalize_flags<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        for flag in item.split_whitespace() {
            if out.len() < MAX_FLAGS && !out.iter().any(|o| o.eq_ignore_ascii_case(flag)) {
                out.push(flag.to_string());
            }
        }
    }
    out
}

fn compare(cmp: Cmp, a: &str, b: &str) -> std::cmp::Ordering {
    match cmp {
        Cmp::Octet => a.as_bytes().cmp(b.as_bytes()),
        Cmp::Casemap => a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
        Cmp::Numeric => {
            // RFC 4790 i;ascii-numeric: leading digits; a string without one is positive infinity.
            let n = |s: &str| {
                let d: String = s.chars().take_while(char::is_ascii_digit).collect();
                if d.is_empty() {
                    None
                } else {
                    let t = d.trim_start_matches('0');
                    Some((t.len(), t.to_string()))
                }
            };
            match (n(a), n(b)) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some(x), Some(y)) => x.cmp(&y),
            }
        }
    }
}

fn strip_angle(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .to_string()
}

/// The addresses in a header value: `a@b, "N" <c@d>, group: e@f;` yields `a@b`, `c@d`, `e@f`.
pub fn parse_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut comment, mut angle) = (false, 0u32, false);
    let mut chars = value.chars();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        let raw = std::mem::take(cur);
        let a = match (raw.find('<'), raw.rfind('>')) {
            (Some(s), Some(e)) if s < e => raw[s + 1..e].to_string(),
            _ => raw.clone(),
        };
        let a = a.trim().trim_end_matches(';').trim().to_string();
        if !a.is_empty() {
            out.push(a);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted || comment > 0 => {
                chars.next();
            }
            '"' if comment == 0 => quoted = !quoted,
            '(' if !quoted => comment += 1,
            ')' if !quoted && comment > 0 => comment -= 1,
            _ if quoted || comment > 0 => {}
            '<' => {
                angle = true;
                cur.push(c);
            }
            '>' => {
                angle = false;
                cur.push(c);
            }
            ':' if !angle => cur.clear(),
            ',' | ';' if !angle => flush(&mut cur, &mut out),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn address_part(addr: &str, part: &str) -> Option<String> {
    let (local, domain) = match addr.rfind('@') {
        Some(i) => (&addr[..i], &addr[i + 1..]),
        None => (addr, ""),
    };
    Some(match part {
        "localpart" => local.to_string(),
        "domain" => domain.to_string(),
        "user" => local.split_once('+').map_or(local, |(u, _)| u).to_string(),
        "detail" => local.split_once('+')?.1.to_string(),
        _ => addr.to_string(),
    })
}

/// Minimal RFC 5173 `:text` / `:content`: the body if its type matches, or for a multipart body
/// the matching parts one level down.
fn body_parts(msg: &dyn Message, types: &[String]) -> Vec<String> {
    let ctype = msg
        .header("content-type")
        .into_iter()
        .next()
        .unwrap_or_default();
    let body = msg.body();
    let mut out = Vec::new();
    collect_parts(&ctype, body, types, &mut out, 0);
    out
}

fn type_matches(ctype: &str, types: &[String]) -> bool {
    let full = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let full = if full.is_empty() {
        "text/plain".to_string()
    } else {
        full
    };
    let main = full.split('/').next().unwrap_or("");
    types.iter().any(|t| {
        let t = t.to_ascii_lowercase();
        t.is_empty() || t == full || t == main
    })
}

fn boundary(ctype: &str) -> Option<String> {
    let lower = ctype.to_ascii_lowercase();
    let i = lower.find("boundary=")?;
    let v = &ctype[i + 9..];
    let v = v.split(';').next().unwrap_or("").trim();
    Some(v.trim_matches('"').to_string())
}

fn collect_parts(ctype: &str, body: &[u8], types: &[String], out: &mut Vec<String>, depth: u32) {
    let is_multi = ctype
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/");
    if is_multi && depth < 4 {
        let Some(b) = boundary(ctype) else { return };
        let text = String::from_utf8_lossy(body);
        let delim = format!("--{b}");
        for (i, part) in text.split(delim.as_str()).enumerate() {
            if i == 0 || part.starts_with("--") {
                continue;
            }
            let part = part
                .strip_prefix("\r\n")
                .or_else(|| part.strip_prefix('\n'))
                .unwrap_or(part);
            let (headers, pbody) = split_header(part.as_bytes());
            let pct = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            collect_parts(&pct, pbody, types, out, depth + 1);
        }
    } else if type_matches(ctype, types) {
        out.push(String::from_utf8_lossy(body).into_owned());
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) for UTF-8, US-ASCII and ISO-8859-1;
/// anything else is left as it is. Whitespace between adjacent encoded words is dropped.
pub(super) fn decode_rfc2047(value: &str) -> String {
    use base64::Engine as _;
    if !value.contains("=?") {
        return value.to_string();
    }
    let mut out = String::new();
    let mut rest = value;
    let mut last_encoded = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let word = &rest[start + 2..];
        // An encoded word is at most 75 characters (RFC 2047 section 2); looking no further
        // keeps this linear in the value.
        let mut window = word.len().min(200);
        while !word.is_char_boundary(window) {
            window -= 1;
        }
        let decoded = (|| {
            let (charset, word) = word[..window].split_once('?')?;
            let (enc, word) = word.split_once('?')?;
            let end = word.find("?=")?;
            let text = &word[..end];
            let bytes = match enc {
                "B" | "b" => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()?,
                "Q" | "q" => {
                    let mut b = Vec::new();
                    let mut it = text.bytes();
                    while let Some(c) = it.next() {
                        match c {
                            b'_' => b.push(b' '),
                            b'=' => {
                                let h = [it.next()?, it.next()?];
                                b.push(u8::from_str_radix(std::str::from_utf8(&h).ok()?, 16).ok()?);
                            }
                            c => b.push(c),
                        }
                    }
                    b
                }
                _ => return None,
            };
            let consumed = charset.len() + enc.len() + end + 4;
            let charset = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
            let s = match charset.as_str() {
                "utf-8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
                "iso-8859-1" | "latin1" => bytes.iter().map(|&b| char::from(b)).collect(),
                _ => return None,
            };
            Some((s, consumed))
        })();
        match decoded {
            Some((s, consumed)) => {
                if !(last_encoded && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&s);
                rest = rest.get(start + 2 + consumed..).unwrap_or("");
                last_encoded = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = word;
                last_encoded = false;
            }
        }
    }
    out.push_str(rest);
    out
}
