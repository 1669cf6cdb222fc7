//! Reading `/etc/resolv.conf` text (the runtime reads the file; this only parses).

use super::ResolverConfig;
use core::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

/// glibc and musl use at most three nameservers (`MAXNS`); so do we, so that Petrel asks the
/// same servers as every other program on the host.
const MAX_NAMESERVERS: usize = 3;

/// The `nameserver` lines of a `resolv.conf`, in order, each on port 53.
///
/// Guarantees: IPv4 and IPv6 addresses are accepted; an IPv6 zone (`fe80::1%2`) is kept when it
/// is numeric, and the line is skipped when it is an interface name (core cannot map names to
/// indexes). Comments (`#`, `;`), unknown keywords and unparsable addresses are skipped; at most
/// the first three servers are returned, as glibc does. Never panics.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut words = words(line);
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        if let Some(a) = parse_server(addr)
            && servers.len() < MAX_NAMESERVERS
        {
            servers.push(a);
        }
    }
    servers
}

/// `config` with the `options timeout:N attempts:N` of a `resolv.conf` applied (the last
/// occurrence wins; values are capped as glibc caps them: timeout 30 s, attempts 5; a timeout of
/// 0 counts as 1 s). Everything else is left as it was.
pub fn parse_resolv_conf_options(text: &str, config: &ResolverConfig) -> ResolverConfig {
    let mut config = config.clone();
    for line in text.lines() {
        let mut words = words(line);
        if words.next() != Some("options") {
            continue;
        }
        for option in words {
            if let Some(v) = option.strip_prefix("timeout:")
                && let Ok(n) = v.parse::<u64>()
            {
                config.timeout = Duration::from_secs(n.clamp(1, 30));
            } else if let Some(v) = option.strip_prefix("attempts:")
                && let Ok(n) = v.parse::<u32>()
            {
                config.attempts = n.clamp(1, 5);
            }
        }
    }
    config
}

/// The words of a line before any comment.
fn words(line: &str) -> std::str::SplitWhitespace<'_> {
    let end = line.find(['#', ';']).unwrap_or(line.len());
    line[..end].split_whitespace()
}

fn parse_server(text: &str) -> Option<SocketAddr> {
    if let Some((ip, zone)) = text.split_once('%') {
        let ip: Ipv6Addr = ip.parse().ok()?;
        let scope: u32 = zone.parse().ok()?;
        return Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)));
    }
    let ip: IpAddr = text.parse().ok()?;
    Some(SocketAddr::new(ip, 53))
}
