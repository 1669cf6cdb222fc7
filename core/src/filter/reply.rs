//! The reply side shared by the scanners that send one request and read one reply (spamd,
//! rspamd): nothing may come before the request is sent, the reply is bounded, and the
//! connection closing before a complete reply is an error.

use super::ScanError;

/// Appends `bytes` to `reply`; an error if the scanner `name` spoke before the request was
/// `sent` or the reply grew past `max` bytes.
pub(crate) fn take(
    name: &str,
    sent: bool,
    reply: &mut Vec<u8>,
    bytes: &[u8],
    max: usize,
) -> Result<(), ScanError> {
    if !sent {
        return Err(ScanError(format!("{name} spoke before the request")));
    }
    reply.extend_from_slice(bytes);
    if reply.len() > max {
        return Err(ScanError(format!("{name}: reply too long")));
    }
    Ok(())
}

/// The end of the connection: `parse_final` reads the reply as complete and says whether it
/// was; an empty (`nothing_received`) or incomplete reply is an error naming the scanner.
pub(crate) fn at_eof(
    name: &str,
    nothing_received: bool,
    parse_final: impl FnOnce() -> Result<bool, ScanError>,
) -> Result<(), ScanError> {
    if nothing_received {
        return Err(ScanError(format!(
            "{name} closed the connection without a reply"
        )));
    }
    match parse_final()? {
        true => Ok(()),
        false => Err(ScanError(format!("{name} closed the connection mid-reply"))),
    }
}
