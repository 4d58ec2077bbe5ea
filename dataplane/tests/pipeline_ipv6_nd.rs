//! Neighbour Discovery through the whole pipeline: solicitations for the port address and an
//! IPv6 VIP are answered on the port they came in by, advertisements to us go to the control
//! thread (which learns next hops from them), the rest is a counted drop. Frames are written
//! and read back by etherparse; the RFC 4861 details are the unit tests' job (src/ndp.rs).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv6Addr;
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, Action};

fn solicited_node(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    (group, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
}

/// An ND message from the router with a link-layer address option of the router's MAC.
fn nd(ty: u8, flags: u8, dst: Ipv6Addr, dst_mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let mut payload = target.octets().to_vec();
    payload.extend_from_slice(&[if ty == 135 { 1 } else { 2 }, 1]);
    payload.extend_from_slice(&ROUTER_MAC);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, dst_mac)
        .ipv6(router_ip6().octets(), dst.octets(), 255)
        .icmpv6_raw(ty, 0, [flags, 0, 0, 0])
        .write(&mut out, &payload)
        .unwrap();
    out
}

#[test]
fn solicitations_for_port_address_and_vip_are_answered() {
    let snap = snapshot();
    let mut w = worker(0, 2);
    for target in [lb_ip6(), vip6()] {
        let (group, group_mac) = solicited_node(target);
        let mut bufs = [VecBuf::new(&nd(135, 0, group, group_mac, target))];
        let mut actions = [Action::ToControl];
        process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1);
        assert_eq!(actions[0], Action::Tx(0), "NS for {target}");

        let out = bufs[0].data();
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let eth = p.link.as_ref().unwrap().to_header().unwrap();
        let etherparse::LinkHeader::Ethernet2(eth) = eth else {
            panic!("not Ethernet II");
        };
        assert_eq!((eth.source, eth.destination), (LB_MAC, ROUTER_MAC));
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6");
        };
        let h = ip.header();
        assert_eq!(Ipv6Addr::from(h.source()), target, "from the target");
        assert_eq!(Ipv6Addr::from(h.destination()), router_ip6());
        assert_eq!(h.hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6");
        };
        assert!(icmp.is_checksum_valid(h.source(), h.destination()));
        let header = icmp.header().to_bytes();
        assert_eq!(header[0], 136, "neighbour advertisement");
        assert_eq!(header[4], 0x60, "solicited + override, not router");
        let payload = icmp.payload();
        assert_eq!(payload[..16], target.octets());
        assert_eq!(
            payload[16..24],
            [2, 1, LB_MAC[0], LB_MAC[1], LB_MAC[2], LB_MAC[3], LB_MAC[4], LB_MAC[5]]
        );
    }
    assert_eq!(w.counters.get(Counter::NdAdverts), 2);
    assert_eq!(w.counters.total_drops(), 0);
}

#[test]
fn advertisements_to_us_go_to_control_and_foreign_solicitations_are_dropped() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let na = nd(136, 0x60, lb_ip6(), LB_MAC, router_ip6());
    let other: Ipv6Addr = "fd00::99".parse().unwrap();
    let (group, group_mac) = solicited_node(other);
    let foreign = nd(135, 0, group, group_mac, other);
    let mut bufs = [VecBuf::new(&na), VecBuf::new(&foreign)];
    let mut actions = [Action::Tx(9); 2];
    process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1);
    assert_eq!(actions[0], Action::ToControl);
    assert_eq!(actions[1], Action::Drop(DropReason::NdIgnored));
    assert_eq!(w.counters.get(Counter::ToControl), 1);
    assert_eq!(w.counters.get(DropReason::NdIgnored), 1);
}

/// The snapshot keeps IPv4 addresses IPv4-mapped (`::ffff:a.b.c.d`), so an IPv6 address of
/// that form would read as the IPv4 VIP, port address or neighbour. None is ever the box's
/// or a neighbour's (RFC 4291 2.5.5.2: mapped addresses are never on the wire): each class
/// is a counted drop, answers nothing and tells the control thread nothing.
#[test]
fn ipv4_mapped_targets_are_never_ours_nor_a_neighbours() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mapped = |a: std::net::Ipv4Addr| a.to_ipv6_mapped();
    // A solicitation for the IPv4 VIP spelled in IPv6 (was answered with an advertisement).
    let vip_group = solicited_node(mapped(VIP));
    // The same from `::` (duplicate address detection) and for the port's IPv4 address.
    let dad = {
        let mut payload = mapped(VIP).octets().to_vec();
        payload.truncate(16);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(ROUTER_MAC, vip_group.1)
            .ipv6([0; 16], vip_group.0.octets(), 255)
            .icmpv6_raw(135, 0, [0; 4])
            .write(&mut out, &payload)
            .unwrap();
        out
    };
    let lb_group = solicited_node(mapped(LB_IP));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "NS for the IPv4 VIP, mapped",
            nd(135, 0, vip_group.0, vip_group.1, mapped(VIP)),
        ),
        (
            "NS for the IPv4 VIP, mapped, to the target itself",
            nd(135, 0, mapped(VIP), LB_MAC, mapped(VIP)),
        ),
        ("DAD NS for the IPv4 VIP, mapped", dad),
        (
            "NS for the port's IPv4 address, mapped",
            nd(135, 0, lb_group.0, lb_group.1, mapped(LB_IP)),
        ),
        (
            // RS1 is a known IPv4 neighbour at RS1_MAC; the option says ROUTER_MAC: read as
            // IPv4, it would move RS1 (an unsolicited advertisement to all-nodes).
            "unsolicited NA moving an IPv4 neighbour, mapped",
            nd(
                136,
                0x20,
                "ff02::1".parse().unwrap(),
                [0x33, 0x33, 0, 0, 0, 1],
                mapped(RS1_IP),
            ),
        ),
        (
            "solicited NA to our address for an IPv4 neighbour, mapped",
            nd(136, 0x60, lb_ip6(), LB_MAC, mapped(RS1_IP)),
        ),
    ];
    for (what, frame) in &cases {
        let (action, _) = run1(&mut w, &snap, frame, 1);
        assert_eq!(action, Action::Drop(DropReason::Ipv6Mapped), "{what}");
    }
    assert_eq!(w.counters.get(DropReason::Ipv6Mapped), cases.len() as u64);
    assert_eq!(w.counters.get(Counter::NdAdverts), 0);
    assert_eq!(w.counters.get(Counter::ToControl), 0);
    // The control cases: the same messages for the IPv6 addresses are still handled.
    let (g, gm) = solicited_node(vip6());
    assert_eq!(
        run1(&mut w, &snap, &nd(135, 0, g, gm, vip6()), 2).0,
        Action::Tx(0)
    );
    assert_eq!(
        run1(
            &mut w,
            &snap,
            &nd(136, 0x60, lb_ip6(), LB_MAC, rs1_ip6()),
            2
        )
        .0,
        Action::ToControl
    );
}
