//! Which hosts to try for a mail domain (RFC 5321 section 5.1, RFC 7505 null MX).

use super::{Answer, Record, normalize_name};

/// Why a domain has no host to deliver to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail. Bounce (5.1.10).
    NullMx,
    /// The domain does not exist (NXDOMAIN). Bounce.
    NoSuchDomain,
    /// The lookup failed for now; keep the message queued and retry.
    Temporary(String),
    /// The lookup can never succeed (malformed name, CNAME loop, FORMERR). Bounce.
    Permanent(String),
}

/// The hosts to try for `domain`, in order, from the answer to its MX lookup.
///
/// Guarantees:
/// - Preference ascending; hosts of equal preference in an order drawn from `random` (the same
///   `random` always gives the same order, different ones spread the load, RFC 5321 5.1).
/// - A host listed twice appears once, at its best position.
/// - [`Answer::NoData`] gives the implicit MX: the domain itself (lowercased, no trailing dot).
/// - A single MX whose exchange is `"."` is a null MX: [`MxError::NullMx`]. A `"."` mixed with
///   real exchanges violates RFC 7505 and is skipped; if nothing else is left, it is a null MX.
/// - [`Answer::NxDomain`] gives [`MxError::NoSuchDomain`], [`Answer::TempFail`] gives
///   [`MxError::Temporary`], [`Answer::PermFail`] and a malformed `domain` give
///   [`MxError::Permanent`].
/// - Never an empty list.
pub fn mx_hosts(domain: &str, mx: &Answer, random: u64) -> Result<Vec<String>, MxError> {
    let records = match mx {
        Answer::Records { records, .. } => records,
        Answer::NoData => {
            return normalize_name(domain)
                .map(|d| vec![d])
                .map_err(MxError::Permanent);
        }
        Answer::NxDomain => return Err(MxError::NoSuchDomain),
        Answer::TempFail(e) => return Err(MxError::Temporary(e.clone())),
        Answer::PermFail(e) => return Err(MxError::Permanent(e.clone())),
    };
    let mut mxs: Vec<(u16, &str)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Mx {
                preference,
                exchange,
            } if exchange != "." && !exchange.is_empty() => Some((*preference, exchange.as_str())),
            _ => None,
        })
        .collect();
    if mxs.is_empty() {
        let null = records
            .iter()
            .any(|r| matches!(r, Record::Mx { exchange, .. } if exchange == "."));
        return Err(if null {
            MxError::NullMx
        } else {
            MxError::Temporary("MX answer without MX records".to_string())
        });
    }
    mxs.sort_by_key(|(preference, _)| *preference);
    let mut rng = SplitMix(random);
    let mut start = 0;
    while start < mxs.len() {
        let pref = mxs[start].0;
        let end = start + mxs[start..].iter().take_while(|m| m.0 == pref).count();
        // Fisher-Yates over the group of equal preference.
        for i in (start + 1..end).rev() {
            let j = start + (rng.next() % (i - start + 1) as u64) as usize;
            mxs.swap(i, j);
        }
        start = end;
    }
    let mut hosts: Vec<String> = Vec::with_capacity(mxs.len());
    for (_, host) in mxs {
        let host = host.to_ascii_lowercase();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// SplitMix64: a tiny seeded generator, enough to shuffle a handful of hosts.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
