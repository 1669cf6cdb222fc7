//! IMAP sequence sets (RFC 9051 9: `sequence-set`, `seq-range`, `seq-last-command`).
//!
//! A set names message sequence numbers or UIDs as a list of numbers and ranges, where `*` stands
//! for the largest number in use and `$` (RFC 5182 SEARCHRES) for the result of the last
//! `SEARCH ... RETURN (SAVE)`. Resolving `*` needs that largest number, which only the session
//! knows, so [`SequenceSet::contains`] and [`SequenceSet::iter`] take it as `max`.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

/// One end of a range: a number, or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNumber {
    /// A non-zero number.
    Value(NonZeroU32),
    /// `*`.
    Star,
}

impl SeqNumber {
    /// The number, with `*` standing for `max`.
    pub fn resolve(self, max: u32) -> u32 {
        match self {
            SeqNumber::Value(n) => n.get(),
            SeqNumber::Star => max,
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNumber::Value(n) => write!(f, "{n}"),
            SeqNumber::Star => f.write_str("*"),
        }
    }
}

/// `a:b` (either order: `4:2` is `2:4`), or one number when both ends are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqRange {
    /// First number as written.
    pub start: SeqNumber,
    /// Second number as written (equal to `start` for a single number).
    pub end: SeqNumber,
}

impl SeqRange {
    /// The range with `*` resolved against `max`, smaller end first.
    pub fn resolve(&self, max: u32) -> RangeInclusive<u32> {
        let (a, b) = (self.start.resolve(max), self.end.resolve(max));
        a.min(b)..=a.max(b)
    }
}

impl fmt::Display for SeqRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}:{}", self.start, self.end)
        }
    }
}

/// A parsed `sequence-set`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SequenceSet {
    /// Numbers and ranges, in the order written (never empty).
    Ranges(Vec<SeqRange>),
    /// `$`: the saved result of the last `SEARCH ... RETURN (SAVE)`. The session substitutes it
    /// before asking membership; [`SequenceSet::contains`] and [`SequenceSet::iter`] treat it as
    /// empty.
    Saved,
}

/// Why text is not a sequence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceError(pub &'static str);

impl SequenceSet {
    /// One number or `*`.
    pub fn single(n: SeqNumber) -> Self {
        SequenceSet::Ranges(vec![SeqRange { start: n, end: n }])
    }

    /// Parses a whole sequence set, e.g. `1:3,5,7:*` or `$`, allowing at most `max_ranges`
    /// comma-separated elements.
    pub fn parse(text: &[u8], max_ranges: usize) -> Result<Self, SequenceError> {
        if text == b"$" {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        for part in text.split(|&b| b == b',') {
            if ranges.len() >= max_ranges {
                return Err(SequenceError("Too many ranges in sequence set"));
            }
            let mut ends = part.splitn(2, |&b| b == b':');
            let start = seq_number(ends.next().unwrap_or_default())?;
            let end = match ends.next() {
                Some(end) => seq_number(end)?,
                None => start,
            };
            ranges.push(SeqRange { start, end });
        }
        Ok(SequenceSet::Ranges(ranges))
    }

    /// True when `n` (never 0) is in the set, `*` being `max`. Numbers above `max` are in the set when a
    /// range names them explicitly (a UID set can name UIDs that do not exist).
    pub fn contains(&self, n: u32, max: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(ranges) => {
                n > 0 && ranges.iter().any(|r| r.resolve(max).contains(&n))
            }
        }
    }

    /// The set as sorted, disjoint, non-adjacent ranges, `*` resolved against `max` and every
    /// number clamped to `1..=max` (numbers above `max` name no message). Empty when `max` is 0.
    pub fn normalized(&self, max: u32) -> Vec<RangeInclusive<u32>> {
        let SequenceSet::Ranges(ranges) = self else {
            return Vec::new();
        };
        let mut spans: Vec<(u32, u32)> = ranges
            .iter()
            .filter_map(|r| {
                let r = r.resolve(max);
                let (a, b) = ((*r.start()).max(1), (*r.end()).min(max));
                (a <= b).then_some((a, b))
            })
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged.into_iter().map(|(a, b)| a..=b).collect()
    }

    /// Every number of the set in `1..=max`, ascending, each once. The iterator yields at most
    /// `max` numbers and holds only the normalized ranges.
    pub fn iter(&self, max: u32) -> impl Iterator<Item = u32> + use<> {
        self.normalized(max).into_iter().flatten()
    }
}

fn seq_number(text: &[u8]) -> Result<SeqNumber, SequenceError> {
    if text == b"*" {
        return Ok(SeqNumber::Star);
    }
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return Err(SequenceError("Bad sequence set"));
    }
    let n: u64 = text
        .iter()
        .fold(0, |acc, &d| acc * 10 + u64::from(d - b'0'));
    let n = u32::try_from(n).map_err(|_| SequenceError("Sequence number too large"))?;
    NonZeroU32::new(n)
        .map(SeqNumber::Value)
        .ok_or(SequenceError("Sequence number 0 is not allowed"))
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceSet::Saved => f.write_str("$"),
            SequenceSet::Ranges(ranges) => {
                for (i, r) in ranges.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes(), 100).unwrap()
    }

    #[test]
    fn resolves_star_and_reversed_ranges() {
        let s = set("2,4:7,9,12:*");
        assert!(s.contains(5, 15) && s.contains(15, 15) && !s.contains(8, 15));
        assert_eq!(s.iter(13).collect::<Vec<_>>(), [2, 4, 5, 6, 7, 9, 12, 13]);
        // 5:* with max 3 is 3:5 (RFC 9051 9, seq-range); clamped to existing numbers.
        assert_eq!(set("5:*").iter(3).collect::<Vec<_>>(), [3]);
        assert_eq!(set("*:4,3,1:2").normalized(10), [1..=10]);
        assert_eq!(set("1:*").iter(0).count(), 0);
        assert!(!set("1:*").contains(0, 0) && set("1:*").contains(1, 0));
        assert_eq!(set("4294967295").iter(u32::MAX).next(), Some(u32::MAX));
        assert_eq!(set("2:4,3:6").to_string(), "2:4,3:6");
    }

    #[test]
    fn rejects_bad_sets() {
        for bad in [
            "",
            "0",
            "1,",
            ":2",
            "1:",
            "a",
            "1:2:3",
            "4294967296",
            "$,1",
            "1 2",
        ] {
            assert!(SequenceSet::parse(bad.as_bytes(), 100).is_err(), "{bad}");
        }
        assert!(SequenceSet::parse(b"1,2,3", 2).is_err());
        assert_eq!(set("$"), SequenceSet::Saved);
    }
}
