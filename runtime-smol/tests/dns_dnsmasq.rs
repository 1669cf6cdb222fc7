//! The async (smol) DNS driver against a real dnsmasq on loopback.

#[path = "../../runtime-std/tests/support/dnsmasq.rs"]
mod dnsmasq;

use petrel_core::dns::{Answer, RecordType, ResolverConfig};
use petrel_runtime_smol::dns::resolve;
use std::net::SocketAddr;

fn on_smol(name: &str, rtype: RecordType, servers: &[SocketAddr], c: &ResolverConfig) -> Answer {
    smol::block_on(resolve(name, rtype, servers, c))
}

#[test]
fn mx() {
    dnsmasq::check_mx(&on_smol);
}

#[test]
fn a_and_aaaa() {
    dnsmasq::check_addresses(&on_smol);
}

#[test]
fn txt() {
    dnsmasq::check_txt(&on_smol);
}

#[test]
fn truncated_answer_comes_over_tcp() {
    dnsmasq::check_truncated_then_tcp(&on_smol);
}

#[test]
fn cname() {
    dnsmasq::check_cname(&on_smol);
}

#[test]
fn nxdomain_and_nodata() {
    dnsmasq::check_nxdomain_and_nodata(&on_smol);
}

#[test]
fn silent_server_then_the_next() {
    dnsmasq::check_silent_server_then_next(&on_smol);
}

#[test]
fn all_silent_is_tempfail() {
    dnsmasq::check_all_silent(&on_smol);
}
