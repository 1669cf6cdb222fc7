//! Organizational domains (RFC 7489 section 3.2) from the Public Suffix List shipped in
//! `core/data/` (see its README for the source and how to update it).

use std::collections::HashSet;
use std::sync::OnceLock;

const LIST: &str = include_str!("../../data/public_suffix_list.dat");

struct Rules {
    normal: HashSet<&'static str>,
    wildcard: HashSet<&'static str>,
    exception: HashSet<&'static str>,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut r = Rules {
            normal: HashSet::new(),
            wildcard: HashSet::new(),
            exception: HashSet::new(),
        };
        for line in LIST.lines() {
            let rule = line.split_whitespace().next().unwrap_or("");
            if rule.is_empty() || rule.starts_with("//") {
                continue;
            }
            if let Some(rest) = rule.strip_prefix('!') {
                r.exception.insert(rest);
            } else if let Some(rest) = rule.strip_prefix("*.") {
                r.wildcard.insert(rest);
            } else {
                r.normal.insert(rule);
            }
        }
        r
    })
}

/// The number of labels of `domain`'s public suffix (at least 1: an unlisted TLD is a suffix,
/// the list's implicit `*` rule). Rules with non-ASCII labels never match: Petrel handles names in
/// their ASCII (A-label) form.
fn suffix_labels(labels: &[&str]) -> usize {
    let r = rules();
    let mut best = 1;
    for i in 0..labels.len() {
        let candidate = labels[i..].join(".");
        let n = labels.len() - i;
        if r.exception.contains(candidate.as_str()) {
            // An exception rule: the suffix is the rule minus its leftmost label.
            return n - 1;
        }
        if r.normal.contains(candidate.as_str()) {
            best = best.max(n);
        }
        if i > 0 && r.wildcard.contains(candidate.as_str()) {
            best = best.max(n + 1);
        }
    }
    best
}

/// The organizational domain of `domain` (lowercase, no trailing dot): its public suffix plus
/// one label. A public suffix itself, or a name shorter than that, is its own organizational
/// domain.
pub fn organizational_domain(domain: &str) -> String {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.split('.').filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        return d;
    }
    let suffix = suffix_labels(&labels);
    let take = (suffix + 1).min(labels.len());
    labels[labels.len() - take..].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psl_known_answers() {
        let cases = [
            ("example.com", "example.com"),
            ("mail.example.com", "example.com"),
            ("a.b.c.example.co.uk", "example.co.uk"),
            ("example.co.uk", "example.co.uk"),
            ("co.uk", "co.uk"),
            ("com", "com"),
            ("Mail.Example.COM.", "example.com"),
            // Wildcard *.ck with the exception !www.ck.
            ("a.b.ck", "a.b.ck"),
            ("x.www.ck", "www.ck"),
            // A private-section suffix.
            ("someone.github.io", "someone.github.io"),
            ("a.someone.github.io", "someone.github.io"),
            // Unlisted TLDs: the implicit * rule.
            ("mail.example.test", "example.test"),
            ("example.invalidtld", "example.invalidtld"),
        ];
        for (d, want) in cases {
            assert_eq!(organizational_domain(d), want, "{d}");
        }
    }
}
