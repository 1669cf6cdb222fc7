//! The UID list of a Maildir folder, in Dovecot's `dovecot-uidlist` format (version 3), so a
//! Maildir moved between Dovecot and Petrel keeps its UIDVALIDITY and UIDs in both directions.
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,
//! 25017 W2481 :1276533073.M242911P3632.kurkku:2,F
//! ```
//! The header holds the version, UIDVALIDITY (`V`), the next UID (`N`) and a GUID (`G`); each
//! line a UID, optional extension fields, then `:` and the file name. Messages are matched by
//! their base name (the part before `:2,`), since flags change the rest.

/// One message's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidEntry {
    /// The IMAP UID.
    pub uid: u32,
    /// Extension fields between the UID and the name, kept verbatim (`W2481`).
    pub ext: String,
    /// The file name as last recorded (flags included).
    pub name: String,
}

/// A parsed `dovecot-uidlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    /// IMAP UIDVALIDITY.
    pub uidvalidity: u32,
    /// The UID the next new message gets.
    pub next_uid: u32,
    /// Mailbox GUID (hex), kept verbatim.
    pub guid: String,
    /// Entries in increasing UID order.
    pub entries: Vec<UidEntry>,
}

/// The name of the file in a folder's directory.
pub const FILE_NAME: &str = "dovecot-uidlist";

/// The base name of a Maildir file: everything before the `:2,` info part.
pub fn base_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(base, _)| base)
}

impl UidList {
    /// An empty list for a new folder.
    pub fn new(uidvalidity: u32, guid: String) -> Self {
        UidList {
            uidvalidity,
            next_uid: 1,
            guid,
            entries: Vec::new(),
        }
    }

    /// Parses the file; `None` if the header is not version 3 (the caller then rebuilds, which
    /// changes UIDVALIDITY, as Dovecot does for a corrupt list). Bad entry lines are skipped.
    pub fn parse(text: &str) -> Option<UidList> {
        let mut lines = text.lines();
        let mut header = lines.next()?.split(' ');
        if header.next()? != "3" {
            return None;
        }
        let (mut uidvalidity, mut next_uid, mut guid) = (None, None, String::new());
        for field in header {
            match field.split_at_checked(1) {
                Some(("V", v)) => uidvalidity = v.parse().ok(),
                Some(("N", v)) => next_uid = v.parse().ok(),
                Some(("G", v)) => guid = v.to_string(),
                _ => {}
            }
        }
        let mut list = UidList::new(uidvalidity?, guid);
        list.next_uid = next_uid.unwrap_or(1).max(1);
        for line in lines {
            let Some((head, name)) = line.split_once(':') else {
                continue;
            };
            let (uid, ext) = head.split_once(' ').unwrap_or((head, ""));
            let Ok(uid) = uid.parse::<u32>() else {
                continue;
            };
            let last = list.entries.last().map_or(0, |e| e.uid);
            if uid <= last || name.is_empty() || name.contains('/') {
                continue;
            }
            list.entries.push(UidEntry {
                uid,
                ext: ext.trim().to_string(),
                name: name.to_string(),
            });
        }
        let max = list.entries.last().map_or(0, |e| e.uid);
        list.next_uid = list.next_uid.max(max.saturating_add(1));
        Some(list)
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(64 + self.entries.len() * 64);
        let _ = writeln!(
            out,
            "3 V{} N{} G{}",
            self.uidvalidity, self.next_uid, self.guid
        );
        for e in &self.entries {
            if e.ext.is_empty() {
                let _ = writeln!(out, "{} :{}", e.uid, e.name);
            } else {
                let _ = writeln!(out, "{} {} :{}", e.uid, e.ext, e.name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dovecot_text() {
        let text = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
                    25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n\
                    25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n";
        let list = UidList::parse(text).unwrap();
        assert_eq!(list.uidvalidity, 1_275_660_208);
        assert_eq!(list.next_uid, 25022);
        assert_eq!(list.entries[1].ext, "W2481");
        assert_eq!(
            base_name(&list.entries[1].name),
            "1276533073.M242911P3632.kurkku"
        );
        assert_eq!(list.to_text(), text);
        assert!(UidList::parse("1 2 3\n").is_none());
        let bad = UidList::parse("3 V1 N1\nx :a\n5 :b\n4 :c\n7 :../x\n").unwrap();
        assert_eq!(bad.entries.len(), 1);
        assert_eq!(bad.next_uid, 6);
    }
}
