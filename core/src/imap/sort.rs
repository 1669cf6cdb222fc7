//! SORT and THREAD (RFC 5256, with RFC 5957's DISPLAYFROM/DISPLAYTO): the sort keys of a
//! message ([`SortInfo`], from its header), ordering by a list of criteria ([`sort`]), base
//! subject extraction ([`base_subject`]) and the ORDEREDSUBJECT and REFERENCES threading
//! algorithms ([`thread`]). Pure functions over what the session read; strings compare with
//! `i;ascii-casemap` (ASCII letters folded to upper case), ties go to the mailbox order.

use super::command::{SortCriterion, SortKey, ThreadAlgorithm};
use super::request::MessageMeta;
use super::response::{days_from_civil, month_number};
use base64::Engine as _;
use std::cmp::Ordering;
use std::collections::HashMap;

/// The sort and thread keys of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortInfo {
    /// What the response names it by: its UID (UID SORT/THREAD) or sequence number.
    pub id: u32,
    /// Its sequence number (the final tie-break).
    pub seq: u32,
    /// INTERNALDATE (Unix seconds).
    pub arrival: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// The Date: header in UTC (Unix seconds), or INTERNALDATE when it is missing or bad.
    pub date: i64,
    /// Mailbox (local part) of the first From/To/Cc address, upper-cased; empty if none.
    pub from: String,
    /// See [`SortInfo::from`].
    pub to: String,
    /// See [`SortInfo::from`].
    pub cc: String,
    /// RFC 5957: display name of the first From/To address, or its addr-spec; upper-cased.
    pub display_from: String,
    /// See [`SortInfo::display_from`].
    pub display_to: String,
    /// The base subject (RFC 5256 2.1), upper-cased.
    pub subject: String,
    /// The subject had a `Re:`/`Fwd:` leader or `(fwd)` trailer (REFERENCES step 6).
    pub reply: bool,
    /// Message-ID, without `<>`.
    pub message_id: Option<String>,
    /// References (or else the first In-Reply-To message ID), oldest first, without `<>`.
    pub references: Vec<String>,
}

/// Whether sorting by `criteria` needs the message header (everything but ARRIVAL and SIZE).
pub fn needs_header(criteria: &[SortCriterion]) -> bool {
    criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size))
}

/// The keys of a message from its bytes (`raw`, at least the header; empty when not read).
pub fn sort_info(id: u32, seq: u32, meta: &MessageMeta, raw: &[u8]) -> SortInfo {
    let first = |name: &str| header_value(raw, name).map(|v| decode_words(&v));
    let (from, display_from) = first_address(first("From").as_deref());
    let (to, display_to) = first_address(first("To").as_deref());
    let (cc, _) = first_address(first("Cc").as_deref());
    let (subject, reply) = base_subject(first("Subject").as_deref().unwrap_or(""));
    let message_id = header_value(raw, "Message-ID")
        .and_then(|v| msg_ids(&String::from_utf8_lossy(&v)).into_iter().next());
    let mut references = header_value(raw, "References")
        .map(|v| msg_ids(&String::from_utf8_lossy(&v)))
        .unwrap_or_default();
    if references.is_empty()
        && let Some(id) = header_value(raw, "In-Reply-To")
            .and_then(|v| msg_ids(&String::from_utf8_lossy(&v)).into_iter().next())
    {
        references.push(id);
    }
    SortInfo {
        id,
        seq,
        arrival: meta.internal_date,
        size: meta.size,
        date: header_value(raw, "Date")
            .and_then(|v| parse_date(&String::from_utf8_lossy(&v)))
            .unwrap_or(meta.internal_date),
        from,
        to,
        cc,
        display_from,
        display_to,
        subject,
        reply,
        message_id,
        references,
    }
}

/// Orders `infos` by `criteria` (each possibly REVERSE), then by sequence number.
pub fn sort(infos: &mut [SortInfo], criteria: &[SortCriterion]) {
    infos.sort_by(|a, b| {
        for c in criteria {
            let o = match c.key {
                SortKey::Arrival => a.arrival.cmp(&b.arrival),
                SortKey::Cc => a.cc.cmp(&b.cc),
                SortKey::Date => a.date.cmp(&b.date),
                SortKey::From => a.from.cmp(&b.from),
                SortKey::Size => a.size.cmp(&b.size),
                SortKey::Subject => a.subject.cmp(&b.subject),
                SortKey::To => a.to.cmp(&b.to),
                SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
                SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
            };
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// The base subject of RFC 5256 2.1, upper-cased, and whether a reply/forward marker was
/// removed. `subject` has its encoded words decoded already.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) whitespace runs become one space.
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) trailers: "(fwd)" and whitespace.
        loop {
            let before = s.len();
            s = s.trim_end().to_string();
            if s.len() >= 5 && s.as_bytes()[s.len() - 5..].eq_ignore_ascii_case(b"(fwd)") {
                s.truncate(s.len() - 5);
                reply = true;
            }
            if s.len() == before {
                break;
            }
        }
        // (3)-(5) leaders and blobs.
        loop {
            let before = s.len();
            if let Some(rest) = strip_leader(&s) {
                s = rest.to_string();
                reply = true;
            }
            if let Some(rest) = strip_blob(&s)
                && !rest.is_empty()
            {
                s = rest.to_string();
            }
            if s.len() == before {
                break;
            }
        }
        // (6) "[fwd: ... ]".
        if s.len() >= 6 && s.as_bytes()[..5].eq_ignore_ascii_case(b"[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s.to_ascii_uppercase(), reply)
}

/// Removes one subj-leader: whitespace, or `*subj-blob ("re" / "fw" / "fwd") *WSP [subj-blob] ":"`.
fn strip_leader(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix([' ', '\t']) {
        return Some(rest);
    }
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    let lower = rest.get(..3).unwrap_or(rest).to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    rest = rest[n..].trim_start_matches([' ', '\t']);
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

/// Removes one subj-blob: `"[" *BLOBCHAR "]" *WSP`.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    if inner.as_bytes()[end] != b']' {
        return None;
    }
    Some(inner[end + 1..].trim_start_matches([' ', '\t']))
}

/// One message of a thread tree (an index into the infos), or a dummy holding children.
#[derive(Debug, Clone, Default)]
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// Threads `infos` (the messages SEARCH found) with `algorithm`, as the THREAD response's
/// data: `(1 2)(3 (4)(5))`.
pub fn thread(infos: &[SortInfo], algorithm: ThreadAlgorithm) -> String {
    let (nodes, roots) = match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(infos),
        ThreadAlgorithm::References => references(infos),
    };
    let mut out = String::new();
    for r in roots {
        out.push('(');
        members(&nodes, infos, r, &mut out);
        out.push(')');
    }
    out
}

fn members(nodes: &[Node], infos: &[SortInfo], n: usize, out: &mut String) {
    let node = &nodes[n];
    let nested = |out: &mut String| {
        for &c in &node.children {
            out.push('(');
            members(nodes, infos, c, out);
            out.push(')');
        }
    };
    match node.msg {
        None => nested(out),
        Some(m) => {
            out.push_str(&infos[m].id.to_string());
            match node.children.as_slice() {
                [] => {}
                [only] => {
                    out.push(' ');
                    members(nodes, infos, *only, out);
                }
                _ => {
                    out.push(' ');
                    nested(out);
                }
            }
        }
    }
}

/// Date then sequence number of a node: its message's, or a dummy's first child's.
fn node_key(nodes: &[Node], infos: &[SortInfo], n: usize) -> (i64, u32) {
    let mut n = n;
    loop {
        match nodes[n].msg {
            Some(m) => return (infos[m].date, infos[m].seq),
            None => match nodes[n].children.first() {
                Some(&c) => n = c,
                None => return (i64::MAX, u32::MAX),
            },
        }
    }
}

/// ORDEREDSUBJECT: by base subject, then date; each subject one thread whose first message
/// is the parent of the others; threads by the date of their first message.
fn ordered_subject(infos: &[SortInfo]) -> (Vec<Node>, Vec<usize>) {
    let mut order: Vec<usize> = (0..infos.len()).collect();
    order.sort_by(|&a, &b| {
        (&infos[a].subject, infos[a].date, infos[a].seq).cmp(&(
            &infos[b].subject,
            infos[b].date,
            infos[b].seq,
        ))
    });
    let mut nodes: Vec<Node> = (0..infos.len())
        .map(|m| Node {
            msg: Some(m),
            ..Node::default()
        })
        .collect();
    let mut roots = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = order[i];
        let mut j = i + 1;
        while j < order.len() && infos[order[j]].subject == infos[first].subject {
            nodes[first].children.push(order[j]);
            nodes[order[j]].parent = Some(first);
            j += 1;
        }
        roots.push(first);
        i = j;
    }
    roots.sort_by_key(|&r| (infos[r].date, infos[r].seq));
    (nodes, roots)
}

/// REFERENCES (RFC 5256 3, after Jamie Zawinski's algorithm).
fn references(infos: &[SortInfo]) -> (Vec<Node>, Vec<usize>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    // Messages in mailbox order, so that the first of duplicate Message-IDs keeps it.
    let mut order: Vec<usize> = (0..infos.len()).collect();
    order.sort_by_key(|&m| infos[m].seq);
    let is_ancestor = |nodes: &[Node], a: usize, mut b: usize| -> bool {
        // Whether `a` is `b` or one of its ancestors (bounded by the number of nodes).
        for _ in 0..=nodes.len() {
            if a == b {
                return true;
            }
            match nodes[b].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
        true
    };
    let link = |nodes: &mut Vec<Node>, parent: usize, child: usize| {
        if let Some(old) = nodes[child].parent {
            nodes[old].children.retain(|&c| c != child);
        }
        nodes[child].parent = Some(parent);
        nodes[parent].children.push(child);
    };
    for m in order {
        // (1A) the message's own container: a dummy made for a reference, or a new one.
        let own = match infos[m].message_id.as_ref() {
            Some(id) => match by_id.get(id) {
                Some(&n) if nodes[n].msg.is_none() => {
                    nodes[n].msg = Some(m);
                    n
                }
                _ => {
                    nodes.push(Node::default());
                    let n = nodes.len() - 1;
                    nodes[n].msg = Some(m);
                    by_id.entry(id.clone()).or_insert(n);
                    n
                }
            },
            None => {
                nodes.push(Node {
                    msg: Some(m),
                    ..Node::default()
                });
                nodes.len() - 1
            }
        };
        // (1A) link the references in order, parent to child, where free and loop-free.
        let mut prev: Option<usize> = None;
        for r in &infos[m].references {
            let n = *by_id.entry(r.clone()).or_insert_with(|| {
                nodes.push(Node::default());
                nodes.len() - 1
            });
            if let Some(p) = prev
                && nodes[n].parent.is_none()
                && !is_ancestor(&nodes, n, p)
            {
                link(&mut nodes, p, n);
            }
            prev = Some(n);
        }
        // (1B) the last reference is the message's parent, unless that makes a loop.
        match prev {
            Some(p) if !is_ancestor(&nodes, own, p) => link(&mut nodes, p, own),
            Some(_) => {}
            None => {
                if let Some(old) = nodes[own].parent.take() {
                    nodes[old].children.retain(|&c| c != own);
                }
            }
        }
    }
    // (2) the root set; (4) pruning of dummies.
    let mut roots: Vec<usize> = (0..nodes.len())
        .filter(|&n| nodes[n].parent.is_none())
        .collect();
    roots = prune(&mut nodes, roots, true);
    // (5) roots by date (a dummy by its first child, children sorted first).
    for &r in &roots {
        sort_children(&mut nodes, infos, r);
    }
    roots.sort_by_key(|&r| node_key(&nodes, infos, r));
    // (6) roots with the same base subject are gathered.
    let subject_of = |nodes: &[Node], n: usize| -> Option<usize> {
        nodes[n]
            .msg
            .or_else(|| nodes[n].children.first().and_then(|&c| nodes[c].msg))
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let Some(m) = subject_of(&nodes, r) else {
            continue;
        };
        let subject = &infos[m].subject;
        if subject.is_empty() {
            continue;
        }
        let replace = match table.get(subject) {
            None => true,
            Some(&t) => {
                (nodes[t].msg.is_some() && nodes[r].msg.is_none())
                    || (nodes[t].msg.is_some_and(|tm| infos[tm].reply)
                        && nodes[r].msg.is_some_and(|rm| !infos[rm].reply))
            }
        };
        if replace {
            table.insert(subject.clone(), r);
        }
    }
    let mut kept: Vec<usize> = Vec::with_capacity(roots.len());
    let mut slot: HashMap<usize, usize> = HashMap::new();
    // A table entry put under a new dummy before its own turn: the dummy takes its place.
    let mut replaced: HashMap<usize, usize> = HashMap::new();
    let mut emptied = vec![false; nodes.len()];
    for &r in &roots {
        if nodes[r].parent.is_some() {
            if let Some(&d) = replaced.get(&r) {
                slot.insert(d, kept.len());
                kept.push(d);
            }
            continue;
        }
        if emptied[r] {
            continue;
        }
        let subject = roots_subject(&nodes, infos, r, &subject_of);
        let t = match table.get(&subject) {
            Some(&t) if t != r && !subject.is_empty() => t,
            _ => {
                slot.insert(r, kept.len());
                kept.push(r);
                continue;
            }
        };
        match (nodes[t].msg, nodes[r].msg) {
            (None, None) => {
                let children = std::mem::take(&mut nodes[r].children);
                for c in children {
                    nodes[c].parent = Some(t);
                    nodes[t].children.push(c);
                }
                emptied[r] = true;
            }
            (None, Some(_)) => {
                nodes[r].parent = Some(t);
                nodes[t].children.push(r);
            }
            (Some(tm), Some(rm)) if !infos[tm].reply && infos[rm].reply => {
                nodes[r].parent = Some(t);
                nodes[t].children.push(r);
            }
            _ => {
                nodes.push(Node::default());
                let d = nodes.len() - 1;
                emptied.push(false);
                for c in [t, r] {
                    nodes[c].parent = Some(d);
                    nodes[d].children.push(c);
                }
                table.insert(subject, d);
                match slot.get(&t) {
                    Some(&i) => {
                        kept[i] = d;
                        slot.insert(d, i);
                    }
                    None => {
                        replaced.insert(t, d);
                    }
                }
            }
        }
    }
    let roots = kept;
    // (7) every set of siblings by date.
    for &r in &roots {
        sort_children(&mut nodes, infos, r);
    }
    (nodes, roots)
}

/// The base subject a root is grouped by (empty for none).
fn roots_subject(
    nodes: &[Node],
    infos: &[SortInfo],
    n: usize,
    subject_of: &impl Fn(&[Node], usize) -> Option<usize>,
) -> String {
    subject_of(nodes, n)
        .map(|m| infos[m].subject.clone())
        .unwrap_or_default()
}

/// REFERENCES step 4: drops dummies without children and promotes the children of the other
/// dummies, except a dummy among the roots with several children. Returns the new siblings.
fn prune(nodes: &mut Vec<Node>, siblings: Vec<usize>, at_root: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(siblings.len());
    // An explicit stack instead of recursion: reference chains can be as deep as the mailbox.
    let mut work: Vec<usize> = siblings.into_iter().rev().collect();
    while let Some(n) = work.pop() {
        let children = std::mem::take(&mut nodes[n].children);
        let children = prune(nodes, children, false);
        if nodes[n].msg.is_none() {
            if children.is_empty() {
                continue;
            }
            if !(at_root && children.len() > 1) {
                for &c in &children {
                    nodes[c].parent = nodes[n].parent;
                }
                out.extend(children);
                continue;
            }
        }
        for &c in &children {
            nodes[c].parent = Some(n);
        }
        nodes[n].children = children;
        out.push(n);
    }
    out
}

/// Sorts every set of siblings under `n` by date (then sequence number).
fn sort_children(nodes: &mut [Node], infos: &[SortInfo], n: usize) {
    let mut stack = vec![n];
    let mut post = Vec::new();
    while let Some(x) = stack.pop() {
        post.push(x);
        stack.extend(nodes[x].children.iter().copied());
    }
    // Deepest first, so a dummy's first child is settled before the dummy is compared.
    for &x in post.iter().rev() {
        let mut children = std::mem::take(&mut nodes[x].children);
        children.sort_by_key(|&c| node_key(nodes, infos, c));
        nodes[x].children = children;
    }
}

/// The value of the first header field called `name`, unfolded.
fn header_value(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut value: Option<Vec<u8>> = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if let Some(v) = &mut value {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            value = Some(line[colon + 1..].trim_ascii().to_vec());
        }
    }
    value
}

/// Message IDs (`<...>`) in a header value, without the brackets.
fn msg_ids(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start + 1..].find('>') else {
            break;
        };
        let id = rest[start + 1..start + 1 + len].trim();
        if !id.is_empty() && !id.contains(char::is_whitespace) {
            out.push(id.to_string());
        }
        rest = &rest[start + 2 + len..];
    }
    out
}

/// Mailbox (local part) and display form of the first address in an address list.
fn first_address(value: Option<&str>) -> (String, String) {
    let Some(value) = value else {
        return (String::new(), String::new());
    };
    // Comments out, then the first address (a group's first member).
    let mut text = String::new();
    let mut depth = 0usize;
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' if depth == 0 => {
                quoted = !quoted;
                text.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => text.push(c),
            _ => {}
        }
    }
    let split_outside_quotes = |s: &str, sep: char| -> Vec<String> {
        let (mut parts, mut cur, mut q, mut angle) = (Vec::new(), String::new(), false, false);
        for c in s.chars() {
            match c {
                '"' => q = !q,
                '<' if !q => angle = true,
                '>' if !q => angle = false,
                _ => {}
            }
            if c == sep && !q && !angle {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        parts.push(cur);
        parts
    };
    let first = split_outside_quotes(&text, ',')
        .into_iter()
        .find(|p| !p.trim().is_empty())
        .unwrap_or_default();
    // A group ("name: member, member;") comes first as its name, as in the ENVELOPE's
    // start-of-group marker (mailbox = the name, host NIL); Dovecot sorts it so too.
    if let Some(colon) = first.find(':')
        && !first[..colon].contains(['<', '@'])
    {
        let name = first[..colon].trim().trim_matches('"').to_ascii_uppercase();
        return (name.clone(), name);
    }
    let (name, spec) = match (first.find('<'), first.rfind('>')) {
        (Some(a), Some(b)) if a < b => (
            first[..a].trim().trim_matches('"').trim().to_string(),
            first[a + 1..b].trim().to_string(),
        ),
        _ => (String::new(), first.trim().to_string()),
    };
    let mailbox = spec
        .rsplit_once('@')
        .map_or(spec.as_str(), |(l, _)| l)
        .trim_matches('"')
        .to_string();
    let display = if name.is_empty() { spec } else { name };
    (mailbox.to_ascii_uppercase(), display.to_ascii_uppercase())
}

/// RFC 2822 date-time to Unix seconds (UTC); `None` when it cannot be read.
fn parse_date(value: &str) -> Option<i64> {
    let text = match value.find(',') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    let mut words = text.split_whitespace();
    let day: i64 = words.next()?.parse().ok()?;
    let month = i64::from(month_number(words.next()?)?);
    let mut year: i64 = words.next()?.parse().ok()?;
    if year < 50 {
        year += 2000;
    } else if year < 1000 {
        year += 1900;
    }
    let mut hms = words.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let s: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let zone = words.next().unwrap_or("+0000");
    let offset = match zone.as_bytes().first() {
        Some(b'+') | Some(b'-') if zone.len() == 5 => {
            let n: i64 = zone[1..].parse().ok()?;
            let secs = (n / 100) * 3600 + (n % 100) * 60;
            if zone.starts_with('-') { -secs } else { secs }
        }
        _ => match zone.to_ascii_uppercase().as_str() {
            "EDT" => -4 * 3600,
            "EST" | "CDT" => -5 * 3600,
            "CST" | "MDT" => -6 * 3600,
            "MST" | "PDT" => -7 * 3600,
            "PST" => -8 * 3600,
            _ => 0,
        },
    };
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset)
}

/// Decodes RFC 2047 encoded words (UTF-8, US-ASCII, ISO-8859-1; others are kept as they are);
/// whitespace between two encoded words is dropped.
pub fn decode_words(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut out = String::new();
    let mut rest: &str = &text;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let decoded = decode_word(candidate);
        match decoded {
            Some((word, used)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&word);
                rest = &candidate[used..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// One `=?charset?enc?text?=` at the start of `s`: the text and the bytes it took.
fn decode_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let limit = body.len().min(200);
    let end = body[..limit].find("?=")?;
    let mut parts = body[..end].splitn(3, '?');
    let charset = parts.next()?.split('*').next()?.to_ascii_lowercase();
    let encoding = parts.next()?.to_ascii_uppercase();
    let text = parts.next()?;
    let bytes = match encoding.as_str() {
        "B" => base64::engine::general_purpose::STANDARD
            .decode(text.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
            .ok()?,
        "Q" => {
            let mut out = Vec::new();
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'_' => out.push(b' '),
                    b'=' if i + 2 < b.len() => {
                        let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    let word = match charset.as_str() {
        "utf-8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => return None,
    };
    Some((word, 2 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (input, base, reply) in [
            ("Hello", "HELLO", false),
            ("Re: Hello", "HELLO", true),
            ("RE: re:  Fwd: hello  (fwd)", "HELLO", true),
            ("[list] Re: [other] hello", "HELLO", true),
            ("[Fwd: Re: Hello]", "HELLO", true),
            ("[only-a-blob]", "[ONLY-A-BLOB]", false),
            ("Re:", "", true),
            ("  spaced\t\tout  ", "SPACED OUT", false),
            ("Fw: x", "X", true),
            ("Reply to this", "REPLY TO THIS", false),
            ("Re: Café", "CAFé", true),
            ("ñandú (fwd)", "ñANDú", true),
            ("日本語のテスト", "日本語のテスト", false),
            ("[日本] 語", "語", false),
            ("é", "é", false),
        ] {
            assert_eq!(base_subject(input), (base.to_string(), reply), "{input}");
        }
    }

    #[test]
    fn addresses_dates_and_words() {
        assert_eq!(
            first_address(Some("\"Doe, John\" <JDoe@Example.com>, x@y")),
            ("JDOE".into(), "DOE, JOHN".into())
        );
        assert_eq!(
            first_address(Some("(comment) bob@example.test")),
            ("BOB".into(), "BOB@EXAMPLE.TEST".into())
        );
        assert_eq!(
            first_address(Some("undisclosed: a@b, c@d;")),
            ("UNDISCLOSED".into(), "UNDISCLOSED".into())
        );
        assert_eq!(first_address(None), (String::new(), String::new()));
        assert_eq!(
            parse_date("Mon, 7 Feb 1994 21:52:25 -0800"),
            Some(760_686_745)
        );
        assert_eq!(parse_date("garbage"), None);
        assert_eq!(
            decode_words(b"=?utf-8?q?Caf=C3=A9?= =?ISO-8859-1?B?6Q==?= x"),
            "Café\u{e9} x"
        );
        assert_eq!(decode_words(b"=?bogus"), "=?bogus");
    }
}
