//! Parser for RFC 5228 section 8.2, with a check of every command and test against the supported
//! set and the extensions the script `require`s.

use super::lexer::{Spanned, Token, tokenize};
use super::{Limits, SieveError};

/// One argument of a command or test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    /// A tagged argument, lowercased, without the colon.
    Tag(String),
    /// A number, quantifier applied.
    Number(u64),
    /// A single string.
    String(String),
    /// A bracketed string list.
    StringList(Vec<String>),
}

impl Argument {
    /// The strings of a string or string-list argument; `None` for tags and numbers.
    pub fn strings(&self) -> Option<Vec<String>> {
        match self {
            Argument::String(s) => Some(vec![s.clone()]),
            Argument::StringList(l) => Some(l.clone()),
            _ => None,
        }
    }
}

/// A test, such as `header :is "subject" "hi"` or `allof (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// Test name, lowercased.
    pub name: String,
    /// Arguments in source order.
    pub args: Vec<Argument>,
    /// Nested tests (for `allof`, `anyof`, `not`).
    pub tests: Vec<Test>,
    /// Line of the name.
    pub line: u32,
    /// Column of the name.
    pub column: u32,
}

/// A command, such as `fileinto "x";` or `if ... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Command name, lowercased.
    pub name: String,
    /// Arguments in source order.
    pub args: Vec<Argument>,
    /// The test of `if` / `elsif`.
    pub test: Option<Test>,
    /// The block of `if` / `elsif` / `else`.
    pub block: Option<Vec<Command>>,
    /// Line of the name.
    pub line: u32,
    /// Column of the name.
    pub column: u32,
}

/// A parsed and checked script, ready for [`super::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The top-level commands, `require` included.
    pub commands: Vec<Command>,
    /// The extensions the script requires, lowercased.
    pub extensions: Vec<String>,
}

impl Script {
    /// Whether the script required `ext`.
    pub fn has(&self, ext: &str) -> bool {
        self.extensions.iter().any(|e| e == ext)
    }
}

/// Extensions (capability strings) this implementation supports.
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "copy",
    "subaddress",
    "imap4flags",
    "variables",
    "body",
    "vacation",
    "include",
    "relational",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
    "regex",
    "mailbox",
    "encoded-character",
    "vacation-seconds",
    "date",
    "index",
    "environment",
];

/// Parses and checks `script` within `limits`.
pub fn parse(script: &str, limits: &Limits) -> Result<Script, SieveError> {
    let tokens = tokenize(script, limits)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        limits,
        depth: 0,
        encoded: false,
    };
    let commands = p.commands(true)?;
    let mut extensions = Vec::new();
    let mut seen_other = false;
    for c in &commands {
        if c.name == "require" {
            if seen_other {
                return Err(SieveError::new(
                    c.line,
                    c.column,
                    "require must come before other commands",
                ));
            }
            let Some(names) = c.args.first().and_then(Argument::strings) else {
                return Err(SieveError::new(
                    c.line,
                    c.column,
                    "require needs a string list",
                ));
            };
            for n in names {
                let n = n.to_ascii_lowercase();
                if !SUPPORTED_EXTENSIONS.contains(&n.as_str()) {
                    return Err(SieveError::new(
                        c.line,
                        c.column,
                        format!("unsupported extension \"{n}\""),
                    ));
                }
                if !extensions.contains(&n) {
                    extensions.push(n);
                }
            }
        } else {
            seen_other = true;
        }
    }
    // RFC 6131 section 2: "vacation-seconds" implies "vacation".
    if extensions.iter().any(|e| e == "vacation-seconds")
        && !extensions.iter().any(|e| e == "vacation")
    {
        extensions.push("vacation".into());
    }
    let script = Script {
        commands,
        extensions,
    };
    check_block(&script, &script.commands, true, limits)?;
    Ok(script)
}

struct Parser<'a> {
    tokens: Vec<Spanned>,
    pos: usize,
    limits: &'a Limits,
    depth: usize,
    /// A `require` named "encoded-character": later strings are decoded as they are read.
    encoded: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn here(&self) -> (u32, u32) {
        match self.tokens.get(self.pos).or(self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        }
    }

    fn err(&self, message: impl Into<String>) -> SieveError {
        let (l, c) = self.here();
        SieveError::new(l, c, message)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|t| t.token.clone());
        self.pos += 1;
        t
    }

    /// The string token at the cursor, with `${hex:..}` / `${unicode:..}` decoded when the
    /// script required "encoded-character" (RFC 5228 section 2.4.2.4).
    fn decoded(&self, s: &str) -> Result<String, SieveError> {
        if !self.encoded || !s.contains("${") {
            return Ok(s.to_string());
        }
        decode_encoded_characters(s).map_err(|m| self.err(m))
    }

    fn enter(&mut self) -> Result<(), SieveError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(self.err(format!("nesting deeper than {}", self.limits.max_depth)));
        }
        Ok(())
    }

    fn commands(&mut self, top: bool) -> Result<Vec<Command>, SieveError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None if top => return Ok(out),
                None => return Err(self.err("missing '}'")),
                Some(Token::RBrace) if !top => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(Token::Identifier(_)) => out.push(self.command()?),
                Some(_) => return Err(self.err("expected a command")),
            }
        }
    }

    fn command(&mut self) -> Result<Command, SieveError> {
        let (line, column) = self.here();
        let Some(Token::Identifier(name)) = self.next() else {
            return Err(SieveError::new(line, column, "expected a command"));
        };
        let first_arg = self.pos;
        let args = self.arguments()?;
        if name == "require" {
            // Point at the offending capability string itself.
            for t in self.tokens.get(first_arg..self.pos).unwrap_or_default() {
                if let Token::String(ext) = &t.token
                    && !SUPPORTED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
                {
                    return Err(SieveError::new(
                        t.line,
                        t.column,
                        format!("unsupported extension \"{ext}\""),
                    ));
                }
                if let Token::String(ext) = &t.token
                    && ext.eq_ignore_ascii_case("encoded-character")
                {
                    self.encoded = true;
                }
            }
        }
        let mut test = None;
        if matches!(self.peek(), Some(Token::Identifier(_) | Token::LParen)) {
            if matches!(self.peek(), Some(Token::LParen)) {
                return Err(self.err("a command takes a single test, not a test list"));
            }
            test = Some(self.test()?);
        }
        let block = match self.next() {
            Some(Token::Semicolon) => None,
            Some(Token::LBrace) => {
                self.enter()?;
                let b = self.commands(false)?;
                self.depth -= 1;
                Some(b)
            }
            _ => {
                self.pos -= 1;
                return Err(self.err("expected ';' or '{'"));
            }
        };
        Ok(Command {
            name,
            args,
            test,
            block,
            line,
            column,
        })
    }

    fn arguments(&mut self) -> Result<Vec<Argument>, SieveError> {
        let mut args = Vec::new();
        loop {
            let arg = match self.peek() {
                Some(Token::Tag(t)) => Argument::Tag(t.clone()),
                Some(Token::Number(n)) => Argument::Number(*n),
                Some(Token::String(s)) => Argument::String(self.decoded(s)?),
                Some(Token::LBracket) => {
                    self.pos += 1;
                    Argument::StringList(self.string_list()?)
                }
                _ => return Ok(args),
            };
            if !matches!(arg, Argument::StringList(_)) {
                self.pos += 1;
            }
            args.push(arg);
            if args.len() > self.limits.max_list_len {
                return Err(self.err("too many arguments"));
            }
        }
    }

    fn string_list(&mut self) -> Result<Vec<String>, SieveError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(Token::String(s)) => {
                    let s = self.decoded(s)?;
                    self.pos += 1;
                    out.push(s);
                }
                _ => {
                    return Err(self.err("expected a string in the list"));
                }
            }
            if out.len() > self.limits.max_list_len {
                return Err(self.err("string list too long"));
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::RBracket) => return Ok(out),
                _ => {
                    self.pos -= 1;
                    return Err(self.err("expected ',' or ']'"));
                }
            }
        }
    }

    fn test(&mut self) -> Result<Test, SieveError> {
        self.enter()?;
        let (line, column) = self.here();
        let Some(Token::Identifier(name)) = self.next() else {
            self.pos -= 1;
            return Err(SieveError::new(line, column, "expected a test"));
        };
        let args = self.arguments()?;
        let mut tests = Vec::new();
        match self.peek() {
            Some(Token::LParen) => {
                self.pos += 1;
                loop {
                    tests.push(self.test()?);
                    if tests.len() > self.limits.max_list_len {
                        return Err(self.err("test list too long"));
                    }
                    match self.next() {
                        Some(Token::Comma) => {}
                        Some(Token::RParen) => break,
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("expected ',' or ')'"));
                        }
                    }
                }
            }
            Some(Token::Identifier(_)) => tests.push(self.test()?),
            _ => {}
        }
        self.depth -= 1;
        Ok(Test {
            name,
            args,
            tests,
            line,
            column,
        })
    }
}

/// Argument shape expected at a position.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    List,
    Num,
}

/// Tags that consume the following argument, with its kind.
pub(super) fn tag_value(tag: &str) -> Option<Kind> {
    Some(match tag {
        "comparator" | "value" | "count" | "subject" | "from" | "handle" | "zone" => Kind::Str,
        "days" | "seconds" | "index" => Kind::Num,
        "addresses" | "flags" | "content" => Kind::List,
        _ => return None,
    })
}

struct Spec {
    ext: Option<&'static str>,
    tags: &'static [(&'static str, Option<&'static str>)],
    /// Accepted positional shapes (alternatives).
    positional: &'static [&'static [Kind]],
}

const MATCH_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
];

/// `header`: match tags and RFC 5260 `:index`.
const HEADER_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("index", Some("index")),
    ("last", Some("index")),
];

/// `envelope`: match tags and address parts.
const ENVELOPE_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("all", None),
    ("localpart", None),
    ("domain", None),
    ("user", Some("subaddress")),
    ("detail", Some("subaddress")),
];

/// `address`: as `envelope`, plus RFC 5260 `:index`.
const ADDRESS_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("all", None),
    ("localpart", None),
    ("domain", None),
    ("user", Some("subaddress")),
    ("detail", Some("subaddress")),
    ("index", Some("index")),
    ("last", Some("index")),
];

const BODY_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("raw", None),
    ("text", None),
    ("content", None),
];

/// RFC 5260 `date`.
const DATE_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("zone", None),
    ("originalzone", None),
    ("index", Some("index")),
    ("last", Some("index")),
];

/// RFC 5260 `currentdate`.
const CURRENTDATE_TAGS: &[(&str, Option<&str>)] = &[
    ("comparator", None),
    ("is", None),
    ("contains", None),
    ("matches", None),
    ("regex", Some("regex")),
    ("value", Some("relational")),
    ("count", Some("relational")),
    ("zone", None),
];

/// Date parts of RFC 5260 section 4.2.
pub(super) const DATE_PARTS: &[&str] = &[
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601",
    "std11", "zone", "weekday",
];

fn command_spec(name: &str) -> Option<Spec> {
    use Kind::*;
    const NONE: &[&[Kind]] = &[&[]];
    Some(match name {
        "stop" | "discard" => Spec {
            ext: None,
            tags: &[],
            positional: NONE,
        },
        "keep" => Spec {
            ext: None,
            tags: &[("flags", Some("imap4flags"))],
            positional: NONE,
        },
        "fileinto" => Spec {
            ext: Some("fileinto"),
            tags: &[
                ("copy", Some("copy")),
                ("flags", Some("imap4flags")),
                ("create", Some("mailbox")),
            ],
            positional: &[&[Str]],
        },
        "redirect" => Spec {
            ext: None,
            tags: &[("copy", Some("copy"))],
            positional: &[&[Str]],
        },
        "reject" => Spec {
            ext: Some("reject"),
            tags: &[],
            positional: &[&[Str]],
        },
        "ereject" => Spec {
            ext: Some("ereject"),
            tags: &[],
            positional: &[&[Str]],
        },
        "setflag" | "addflag" | "removeflag" => Spec {
            ext: Some("imap4flags"),
            tags: &[],
            positional: &[&[List], &[Str, List]],
        },
        "set" => Spec {
            ext: Some("variables"),
            tags: &[
                ("lower", None),
                ("upper", None),
                ("lowerfirst", None),
                ("upperfirst", None),
                ("quotewildcard", None),
                ("quoteregex", Some("regex")),
                ("length", None),
            ],
            positional: &[&[Str, Str]],
        },
        "vacation" => Spec {
            ext: Some("vacation"),
            tags: &[
                ("days", None),
                ("seconds", Some("vacation-seconds")),
                ("subject", None),
                ("from", None),
                ("addresses", None),
                ("mime", None),
                ("handle", None),
            ],
            positional: &[&[Str]],
        },
        "include" => Spec {
            ext: Some("include"),
            tags: &[
                ("personal", None),
                ("global", None),
                ("once", None),
                ("optional", None),
            ],
            positional: &[&[Str]],
        },
        "return" => Spec {
            ext: Some("include"),
            tags: &[],
            positional: NONE,
        },
        "global" => Spec {
            ext: Some("include"),
            tags: &[],
            positional: &[&[List]],
        },
        _ => return None,
    })
}

fn test_spec(name: &str) -> Option<Spec> {
    use Kind::*;
    Some(match name {
        "address" => Spec {
            ext: None,
            tags: ADDRESS_TAGS,
            positional: &[&[List, List]],
        },
        "envelope" => Spec {
            ext: Some("envelope"),
            tags: ENVELOPE_TAGS,
            positional: &[&[List, List]],
        },
        "header" => Spec {
            ext: None,
            tags: HEADER_TAGS,
            positional: &[&[List, List]],
        },
        "string" => Spec {
            ext: Some("variables"),
            tags: MATCH_TAGS,
            positional: &[&[List, List]],
        },
        "hasflag" => Spec {
            ext: Some("imap4flags"),
            tags: MATCH_TAGS,
            positional: &[&[List], &[List, List]],
        },
        "body" => Spec {
            ext: Some("body"),
            tags: BODY_TAGS,
            positional: &[&[List]],
        },
        "date" => Spec {
            ext: Some("date"),
            tags: DATE_TAGS,
            positional: &[&[Str, Str, List]],
        },
        "currentdate" => Spec {
            ext: Some("date"),
            tags: CURRENTDATE_TAGS,
            positional: &[&[Str, List]],
        },
        "environment" => Spec {
            ext: Some("environment"),
            tags: MATCH_TAGS,
            positional: &[&[Str, List]],
        },
        "mailboxexists" => Spec {
            ext: Some("mailbox"),
            tags: &[],
            positional: &[&[List]],
        },
        "exists" => Spec {
            ext: None,
            tags: &[],
            positional: &[&[List]],
        },
        "size" => Spec {
            ext: None,
            tags: &[("over", None), ("under", None)],
            positional: &[&[Num]],
        },
        "allof" | "anyof" | "not" | "true" | "false" => Spec {
            ext: None,
            tags: &[],
            positional: &[&[]],
        },
        _ => return None,
    })
}

fn kind_ok(kind: Kind, arg: &Argument) -> bool {
    match kind {
        Kind::Str => matches!(arg, Argument::String(_)),
        Kind::List => matches!(arg, Argument::String(_) | Argument::StringList(_)),
        Kind::Num => matches!(arg, Argument::Number(_)),
    }
}

fn check_args(
    script: &Script,
    what: &str,
    name: &str,
    spec: &Spec,
    args: &[Argument],
    pos: (u32, u32),
    limits: &Limits,
) -> Result<(), SieveError> {
    let err = |m: String| SieveError::new(pos.0, pos.1, m);
    if let Some(ext) = spec.ext
        && !script.has(ext)
    {
        return Err(err(format!("{what} \"{name}\" needs require \"{ext}\"")));
    }
    let mut positional = Vec::new();
    let mut i = 0;
    let mut match_types = 0;
    let mut parts = 0;
    while let Some(arg) = args.get(i) {
        i += 1;
        if let Argument::Tag(t) = arg {
            if !positional.is_empty() {
                return Err(err(format!(
                    "tag :{t} after positional arguments of \"{name}\""
                )));
            }
            let Some((_, ext)) = spec.tags.iter().find(|(n, _)| n == t) else {
                return Err(err(format!("unknown tag :{t} for \"{name}\"")));
            };
            if let Some(ext) = ext
                && !script.has(ext)
            {
                return Err(err(format!(":{t} needs require \"{ext}\"")));
            }
            match t.as_str() {
                "is" | "contains" | "matches" | "regex" | "value" | "count" => match_types += 1,
                "all" | "localpart" | "domain" | "user" | "detail" => parts += 1,
                _ => {}
            }
            if let Some(kind) = tag_value(t) {
                match args.get(i) {
                    Some(v) if kind_ok(kind, v) => i += 1,
                    _ => return Err(err(format!(":{t} needs an argument"))),
                }
                if let (Some(Argument::String(v)), "value" | "count") =
                    (args.get(i - 1), t.as_str())
                    && !matches!(
                        v.to_ascii_lowercase().as_str(),
                        "gt" | "ge" | "lt" | "le" | "eq" | "ne"
                    )
                {
                    return Err(err(format!("bad relational operator \"{v}\"")));
                }
                if let (Some(Argument::String(v)), "comparator") = (args.get(i - 1), t.as_str()) {
                    let v = v.to_ascii_lowercase();
                    if !matches!(
                        v.as_str(),
                        "i;octet" | "i;ascii-casemap" | "i;ascii-numeric"
                    ) {
                        return Err(err(format!("unsupported comparator \"{v}\"")));
                    }
                    if v == "i;ascii-numeric" && !script.has("comparator-i;ascii-numeric") {
                        return Err(err(
                            "comparator \"i;ascii-numeric\" needs require \"comparator-i;ascii-numeric\""
                                .into(),
                        ));
                    }
                }
            }
        } else {
            positional.push(arg);
        }
    }
    if match_types > 1 {
        return Err(err(format!("more than one match type for \"{name}\"")));
    }
    if parts > 1 {
        return Err(err(format!("more than one address part for \"{name}\"")));
    }
    if name == "size" && !args.iter().any(|a| matches!(a, Argument::Tag(_))) {
        return Err(err("size needs :over or :under".into()));
    }
    let fits = spec.positional.iter().any(|shape| {
        shape.len() == positional.len()
            && shape.iter().zip(&positional).all(|(k, a)| kind_ok(*k, a))
    });
    if !fits {
        return Err(err(format!("wrong arguments for \"{name}\"")));
    }
    check_extension_args(script, name, args, &positional, limits).map_err(err)
}

/// Checks of the newer extensions' arguments that can be made before the script runs.
fn check_extension_args(
    script: &Script,
    name: &str,
    args: &[Argument],
    positional: &[&Argument],
    limits: &Limits,
) -> Result<(), String> {
    let has = |t: &str| args.iter().any(|a| matches!(a, Argument::Tag(x) if x == t));
    let value = |t: &str| {
        args.iter()
            .position(|a| matches!(a, Argument::Tag(x) if x == t))
            .and_then(|i| args.get(i + 1))
    };
    // A string that may still change at run time: variables will be expanded into it.
    let dynamic = |s: &str| script.has("variables") && s.contains("${");
    if has("days") && has("seconds") {
        return Err(":days and :seconds are mutually exclusive".into());
    }
    if has("zone") && has("originalzone") {
        return Err(":zone and :originalzone are mutually exclusive".into());
    }
    if has("last") && !has("index") {
        return Err(":last needs :index".into());
    }
    if let Some(Argument::Number(0)) = value("index") {
        return Err(":index counts from 1".into());
    }
    if let Some(Argument::String(z)) = value("zone")
        && !dynamic(z)
        && super::interp::parse_zone(z).is_none()
    {
        return Err(format!(
            "invalid time zone \"{z}\" (expected +hhmm or -hhmm)"
        ));
    }
    let part = match name {
        "date" => positional.get(1),
        "currentdate" => positional.first(),
        _ => None,
    };
    if let Some(Argument::String(p)) = part
        && !dynamic(p)
        && !DATE_PARTS.contains(&p.to_ascii_lowercase().as_str())
    {
        return Err(format!("unknown date part \"{p}\""));
    }
    if has("regex") {
        let numeric = matches!(value("comparator"),
            Some(Argument::String(c)) if c.eq_ignore_ascii_case("i;ascii-numeric"));
        let octet = matches!(value("comparator"),
            Some(Argument::String(c)) if c.eq_ignore_ascii_case("i;octet"));
        if numeric {
            return Err(":regex cannot be used with \"i;ascii-numeric\"".into());
        }
        let keys = positional
            .last()
            .and_then(|a| a.strings())
            .unwrap_or_default();
        for k in keys.iter().filter(|k| !dynamic(k)) {
            // Compiled as the run will, case-insensitive unless i;octet: folding enlarges
            // the program, and the size limit must hold for the form actually used.
            super::interp::compile_regex(k, !octet, limits)?;
        }
    }
    Ok(())
}

fn check_test(script: &Script, t: &Test, limits: &Limits) -> Result<(), SieveError> {
    let pos = (t.line, t.column);
    let Some(spec) = test_spec(&t.name) else {
        return Err(SieveError::new(
            t.line,
            t.column,
            format!("unknown test \"{}\"", t.name),
        ));
    };
    check_args(script, "test", &t.name, &spec, &t.args, pos, limits)?;
    let want = match t.name.as_str() {
        "allof" | "anyof" => t.tests.len().max(1),
        "not" => 1,
        _ => 0,
    };
    if t.tests.len() != want {
        return Err(SieveError::new(
            t.line,
            t.column,
            format!("wrong tests for \"{}\"", t.name),
        ));
    }
    for sub in &t.tests {
        check_test(script, sub, limits)?;
    }
    Ok(())
}

fn check_block(
    script: &Script,
    cmds: &[Command],
    top: bool,
    limits: &Limits,
) -> Result<(), SieveError> {
    let mut prev_if = false;
    for c in cmds {
        let err = |m: String| SieveError::new(c.line, c.column, m);
        let is_if = matches!(c.name.as_str(), "if" | "elsif" | "else");
        match c.name.as_str() {
            "require" => {
                if !top {
                    return Err(err("require is only allowed at the top level".into()));
                }
                if c.args.len() != 1 || c.test.is_some() || c.block.is_some() {
                    return Err(err("require takes one string list".into()));
                }
            }
            "if" | "elsif" | "else" => {
                if c.name != "if" && !prev_if {
                    return Err(err(format!("\"{}\" without a preceding if", c.name)));
                }
                if !c.args.is_empty() {
                    return Err(err(format!("\"{}\" takes no arguments", c.name)));
                }
                if (c.name == "else") == c.test.is_some() {
                    return Err(err(format!("wrong test for \"{}\"", c.name)));
                }
                let Some(block) = &c.block else {
                    return Err(err(format!("\"{}\" needs a block", c.name)));
                };
                if let Some(t) = &c.test {
                    check_test(script, t, limits)?;
                }
                check_block(script, block, false, limits)?;
            }
            name => {
                let Some(spec) = command_spec(name) else {
                    return Err(err(format!("unknown command \"{name}\"")));
                };
                if c.test.is_some() || c.block.is_some() {
                    return Err(err(format!("\"{name}\" takes no test or block")));
                }
                check_args(
                    script,
                    "command",
                    name,
                    &spec,
                    &c.args,
                    (c.line, c.column),
                    limits,
                )?;
                check_constants(c)?;
            }
        }
        prev_if = is_if && c.name != "else";
    }
    Ok(())
}

/// Whether `name` is a valid variable name (RFC 5229 section 3: identifier).
pub(super) fn valid_variable_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks of constant arguments that can be refused at upload: variable names in `set`, and
/// redirect addresses that contain no variable reference.
fn check_constants(c: &Command) -> Result<(), SieveError> {
    let err = |m: String| SieveError::new(c.line, c.column, m);
    let positional: Vec<&Argument> = {
        let mut out = Vec::new();
        let mut it = c.args.iter();
        while let Some(a) = it.next() {
            match a {
                Argument::Tag(t) => {
                    if tag_value(t).is_some() {
                        it.next();
                    }
                }
                a => out.push(a),
            }
        }
        out
    };
    match c.name.as_str() {
        "set" => {
            if let Some(Argument::String(name)) = positional.first()
                && !valid_variable_name(name)
            {
                return Err(err(format!("invalid variable name \"{name}\"")));
            }
        }
        "redirect" => {
            if let Some(Argument::String(addr)) = positional.first()
                && !addr.contains("${")
                && !valid_address(addr)
            {
                return Err(err(format!("invalid redirect address \"{addr}\"")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A loose RFC 5321 mailbox check: `local@domain`, no spaces or angle brackets.
pub(super) fn valid_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Decodes RFC 5228 section 2.4.2.4 encoded characters: `${hex: 24 24}` (octets, which must
/// form UTF-8) and `${unicode: 40}` (code points). A sequence that is not well formed is left as
/// it is; a code point outside Unicode or a surrogate, or octets that are not UTF-8, are errors.
pub(super) fn decode_encoded_characters(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let decoded = after.find('}').and_then(|end| {
            let body = &after[..end];
            let (kind, seq) = body.split_once(':')?;
            let kind = kind.to_ascii_lowercase();
            if kind != "hex" && kind != "unicode" {
                return None;
            }
            let items: Vec<&str> = seq
                .split([' ', '\t', '\r', '\n'])
                .filter(|x| !x.is_empty())
                .collect();
            let well_formed = !items.is_empty()
                && items.iter().all(|x| {
                    x.bytes().all(|b| b.is_ascii_hexdigit()) && (kind == "unicode" || x.len() <= 2)
                })
                && seq
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ' ' | '\t' | '\r' | '\n'));
            well_formed.then_some((end, kind, items))
        });
        match decoded {
            Some((end, kind, items)) => {
                if kind == "hex" {
                    let bytes: Vec<u8> = items
                        .iter()
                        .map(|x| u8::from_str_radix(x, 16).unwrap_or(0))
                        .collect();
                    let text = String::from_utf8(bytes)
                        .map_err(|_| "${hex:...} does not encode UTF-8".to_string())?;
                    out.push_str(&text);
                } else {
                    for x in items {
                        let digits = x.trim_start_matches('0');
                        let c = (digits.len() <= 6)
                            .then(|| {
                                u32::from_str_radix(
                                    if digits.is_empty() { "0" } else { digits },
                                    16,
                                )
                                .ok()
                            })
                            .flatten()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                format!("${{unicode:{x}}} is not a Unicode scalar value")
                            })?;
                        out.push(c);
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}
