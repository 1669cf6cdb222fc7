//! POP3 command lines.

/// A parsed POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name`.
    User(String),
    /// `PASS password` (the rest of the line, spaces included).
    Pass(Vec<u8>),
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// Mechanism, uppercased.
        mechanism: String,
        /// Initial response, base64.
        initial: Option<String>,
    },
    /// `AUTH` alone: list the SASL mechanisms.
    AuthList,
    /// `APOP name digest` (not supported; refused).
    Apop,
    /// `STLS`.
    Stls,
    /// `CAPA`.
    Capa,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `TOP msg lines`.
    Top(u32, u64),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
}

/// Why a line is not a command, as the `-ERR` text to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandError(pub &'static str);

fn number<T: std::str::FromStr>(arg: Option<&str>) -> Result<T, CommandError> {
    let arg = arg.ok_or(CommandError("Missing argument"))?;
    if arg.is_empty() || arg.len() > 20 || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CommandError("Invalid number"));
    }
    arg.parse().map_err(|_| CommandError("Invalid number"))
}

/// Parses one line without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let verb = std::str::from_utf8(verb)
        .map_err(|_| CommandError("Unknown command"))?
        .to_ascii_uppercase();
    if verb == "PASS" {
        return Ok(Command::Pass(rest.to_vec()));
    }
    let rest =
        std::str::from_utf8(rest).map_err(|_| CommandError("Invalid characters in command"))?;
    if rest.contains('\0') {
        return Err(CommandError("Invalid characters in command"));
    }
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    let first = args.next();
    let second = args.next();
    let extra = args.next().is_some();
    let none = |cmd| {
        if first.is_none() {
            Ok(cmd)
        } else {
            Err(CommandError("Too many arguments"))
        }
    };
    let optional = |f: fn(Option<u32>) -> Command| match (first, second) {
        (None, _) => Ok(f(None)),
        (Some(_), None) => Ok(f(Some(number(first)?))),
        _ => Err(CommandError("Too many arguments")),
    };
    if extra {
        return Err(CommandError("Too many arguments"));
    }
    match verb.as_str() {
        "USER" if second.is_none() => Ok(Command::User(
            first.ok_or(CommandError("Missing argument"))?.to_string(),
        )),
        "USER" => Err(CommandError("Too many arguments")),
        // A bare AUTH lists the mechanisms (the RFC 1734 form that many clients still send).
        "AUTH" if first.is_none() => Ok(Command::AuthList),
        "AUTH" => Ok(Command::Auth {
            mechanism: first
                .ok_or(CommandError("Missing mechanism"))?
                .to_ascii_uppercase(),
            initial: second.map(str::to_string),
        }),
        "APOP" => Ok(Command::Apop),
        "STLS" => none(Command::Stls),
        "CAPA" => none(Command::Capa),
        "STAT" => none(Command::Stat),
        "LIST" => optional(Command::List),
        "UIDL" => optional(Command::Uidl),
        "RETR" if second.is_none() => Ok(Command::Retr(number(first)?)),
        "TOP" => Ok(Command::Top(number(first)?, number(second)?)),
        "DELE" if second.is_none() => Ok(Command::Dele(number(first)?)),
        "RETR" | "DELE" => Err(CommandError("Too many arguments")),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        _ => Err(CommandError("Unknown command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse(b"user alice@x"), Ok(Command::User("alice@x".into())));
        assert_eq!(parse(b"PASS a b:c"), Ok(Command::Pass(b"a b:c".to_vec())));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(parse(b"AUTH"), Ok(Command::AuthList));
        assert!(parse(b"RETR").is_err());
        assert!(parse(b"RETR x").is_err());
        assert!(parse(b"RETR -1").is_err());
        assert!(parse(b"RETR 99999999999").is_err());
        assert!(parse(b"STAT 1").is_err());
        assert!(parse(b"XYZZY").is_err());
        assert!(parse(b"TOP 1").is_err());
    }
}
