//! The blocking DNS driver against a real dnsmasq on loopback.

#[path = "support/dnsmasq.rs"]
mod dnsmasq;

use petrel_core::dns::{Answer, RecordType, ResolverConfig};
use petrel_runtime_std::dns::resolve;
use std::net::SocketAddr;

fn blocking(name: &str, rtype: RecordType, servers: &[SocketAddr], c: &ResolverConfig) -> Answer {
    resolve(name, rtype, servers, c)
}

#[test]
fn mx() {
    dnsmasq::check_mx(&blocking);
}

#[test]
fn a_and_aaaa() {
    dnsmasq::check_addresses(&blocking);
}

#[test]
fn txt() {
    dnsmasq::check_txt(&blocking);
}

#[test]
fn truncated_answer_comes_over_tcp() {
    dnsmasq::check_truncated_then_tcp(&blocking);
}

#[test]
fn cname() {
    dnsmasq::check_cname(&blocking);
}

#[test]
fn nxdomain_and_nodata() {
    dnsmasq::check_nxdomain_and_nodata(&blocking);
}

#[test]
fn silent_server_then_the_next() {
    dnsmasq::check_silent_server_then_next(&blocking);
}

#[test]
fn all_silent_is_tempfail() {
    dnsmasq::check_all_silent(&blocking);
}
