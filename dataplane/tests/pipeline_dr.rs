//! Direct-routing fixtures: only the destination MAC changes (to the real server's) and the
//! source MAC becomes vipd's; addresses, ports, TTL and checksums stay as the client sent them.
//! Expected frames are written by etherparse (tests/common).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use std::net::IpAddr;
use vipd_dataplane::counters::Counter;
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, Action};

fn dr_out(mut f: Frame) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = RS1_MAC;
    f
}

#[test]
fn dr_ipv4_and_ipv6_change_only_macs() {
    let fixtures = [
        (
            "DR IPv4 TCP SYN",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                IpAddr::V4(CLIENT_IP),
                IpAddr::V4(VIP),
                tcp(40000, 443, "S"),
                b"",
            ),
        ),
        (
            "DR IPv4 TCP data",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                IpAddr::V4(CLIENT_IP),
                IpAddr::V4(VIP),
                tcp(40000, 443, "AP"),
                b"hello",
            ),
        ),
        (
            "DR IPv6 UDP",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                client_ip6().into(),
                vip6().into(),
                udp(5000, 443),
                b"quic?",
            ),
        ),
        ("DR keeps TTL 1 packets (no router hop)", {
            let mut f = Frame::new(
                ROUTER_MAC,
                LB_MAC,
                IpAddr::V4(CLIENT_IP),
                IpAddr::V4(VIP),
                tcp(40001, 443, "S"),
                b"",
            );
            f.ttl = 1;
            f
        }),
    ];
    let snap = snapshot();
    let mut w = worker(0, 2); // DR services are never steered: no reply ever comes back
    for (description, input) in fixtures {
        let mut bufs = [VecBuf::new(&input.bytes())];
        let mut actions = [Action::ToControl];
        process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1);
        assert_eq!(actions[0], Action::Tx(0), "{description}");
        assert_eq!(bufs[0].data(), &dr_out(input).bytes()[..], "{description}");
    }
    assert_eq!(w.counters.get(Counter::Forwarded), 4);
    assert_eq!(w.counters.get(Counter::Steered), 0);
    assert_eq!(w.counters.total_drops(), 0);
}
