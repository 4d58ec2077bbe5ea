//! 802.1p priority-tagged frames (an 802.1Q tag with VLAN id 0): they belong to the port's
//! untagged side (IEEE 802.1Q 9.6), on a port without VLANs and on a trunk alike, and what
//! answers or forwards them leaves untagged, as Linux answers them. Inputs are written by
//! etherparse (tests/common) with the tag's priority set to 5; outputs are compared with
//! frames etherparse wrote, or with vipd's answer to the same frame untagged, and parsed back
//! to check they carry no tag.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv6Addr;
use vipd_dataplane::counters::DropReason;
use vipd_dataplane::pipeline::Action;
use vipd_dataplane::snapshot::{PortInfo, Snapshot, VlanOf};
use vipd_dataplane::wire::MacAddr;

/// `untagged` with a priority tag (VLAN id 0, priority 5) inserted after the MACs.
fn priority_tagged(untagged: &[u8]) -> Vec<u8> {
    let mut f = untagged.to_vec();
    f.splice(12..12, [0x81, 0x00, 5 << 5, 0]);
    // The tag read back by an independent parser: VLAN 0, priority 5.
    let (eth, rest) = etherparse::Ethernet2Header::from_slice(&f).unwrap();
    assert_eq!(eth.ether_type, etherparse::EtherType::VLAN_TAGGED_FRAME);
    let (tag, _) = etherparse::SingleVlanHeader::from_slice(rest).unwrap();
    assert_eq!((tag.vlan_id.value(), tag.pcp.value()), (0, 5));
    f
}

/// Whether etherparse reads `out` as an untagged Ethernet II frame.
fn untagged(out: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    p.vlan.is_none()
}

/// A SYN from the router to VIP:80 (NAT to RS1:8080) and what leaves for RS1.
fn syn_and_step2(sport: u16) -> (Frame, Frame) {
    let syn = client_to_vip(tcp(sport, 80, "S"), b"");
    let mut out = syn.clone();
    out.src_mac = LB_MAC;
    out.dst_mac = RS1_MAC;
    out.dst = v4(RS1_IP);
    out.ttl -= 1;
    if let L4::Tcp { dport, .. } = &mut out.l4 {
        *dport = 8080;
    }
    (syn, out)
}

#[test]
fn a_client_packet_and_its_nat_reply_are_forwarded_untagged() {
    for fast_path in [false, true] {
        let snap = snapshot();
        let mut w = worker(0, 1);
        w.fast_path = fast_path;
        let (syn, step2) = syn_and_step2(40000);
        let (action, out) = run1(&mut w, &snap, &priority_tagged(&syn.bytes()), 1);
        assert_eq!(action, Action::Tx(0), "SYN (fast path {fast_path})");
        assert_eq!(out, step2.bytes(), "SYN bytes (fast path {fast_path})");
        assert!(untagged(&out));

        // The real server's SYN-ACK, priority-tagged too, goes back to the client from the VIP.
        let reply = Frame::new(
            RS1_MAC,
            LB_MAC,
            v4(RS1_IP),
            v4(CLIENT_IP),
            tcp(8080, 40000, "SA"),
            b"hi",
        );
        let mut want = reply.clone();
        want.src_mac = LB_MAC;
        want.dst_mac = ROUTER_MAC;
        want.src = v4(VIP);
        want.ttl -= 1;
        if let L4::Tcp { sport, .. } = &mut want.l4 {
            *sport = 80;
        }
        let (action, out) = run1(&mut w, &snap, &priority_tagged(&reply.bytes()), 2);
        assert_eq!(action, Action::Tx(0), "reply (fast path {fast_path})");
        assert_eq!(out, want.bytes(), "reply bytes (fast path {fast_path})");
        assert_eq!(w.counters.total_drops(), 0);
    }
}

/// vipd's answer to `request`, and to it priority-tagged, on fresh workers: the same bytes.
fn answered_alike(request: &[u8]) -> Vec<u8> {
    let snap = snapshot();
    let (a, plain) = run1(&mut worker(0, 1), &snap, request, 1);
    assert_eq!(a, Action::Tx(0), "the untagged control case is answered");
    let mut w = worker(0, 1);
    let (a, out) = run1(&mut w, &snap, &priority_tagged(request), 1);
    assert_eq!(a, Action::Tx(0));
    assert_eq!(out, plain, "answered as the untagged request is");
    assert_eq!(w.counters.total_drops(), 0);
    out
}

#[test]
fn arp_requests_are_answered_untagged() {
    let out = answered_alike(&arp_frame(1, ROUTER_MAC, ROUTER_IP, LB_IP));
    let (eth, _) = etherparse::Ethernet2Header::from_slice(&out).unwrap();
    assert_eq!(eth.ether_type, etherparse::EtherType::ARP);
    assert_eq!((eth.source, eth.destination), (LB_MAC, ROUTER_MAC));
    assert_eq!(&out[20..22], &[0, 2], "an ARP reply");
    assert_eq!(&out[28..32], &LB_IP.octets(), "from the port address");
}

#[test]
fn echo_requests_are_answered_untagged() {
    let mut v4 = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv4(CLIENT_IP.octets(), LB_IP.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut v4, b"ping")
        .unwrap();
    let out = answered_alike(&v4);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(p.vlan.is_none());
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP");
    };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(_)));

    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv6(client_ip6().octets(), lb_ip6().octets(), 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut v6, b"ping")
        .unwrap();
    let out = answered_alike(&v6);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(p.vlan.is_none());
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (&p.net, &p.transport)
    else {
        panic!("not ICMPv6");
    };
    let h = ip.header();
    assert!(icmp.is_checksum_valid(h.source(), h.destination()));
    assert!(matches!(icmp.icmp_type(), Icmpv6Type::EchoReply(_)));
}

#[test]
fn neighbour_solicitations_are_answered_untagged() {
    let target = lb_ip6();
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
    let mut payload = t.to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&ROUTER_MAC);
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(router_ip6().octets(), group.octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut ns, &payload)
        .unwrap();
    let out = answered_alike(&ns);
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(p.vlan.is_none());
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6");
    };
    assert_eq!(icmp.type_u8(), 136, "a neighbour advertisement");
}

/// The test port with VLAN 100 besides its untagged side.
fn trunk() -> Snapshot {
    let v100 = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.1.100.10/24".parse().unwrap()),
        mtu: 1500,
        vlan: Some(VlanOf { parent: 0, id: 100 }),
        ..Default::default()
    };
    let services = [vipd_dataplane::snapshot::ServiceSpec {
        vip: v4(VIP),
        proto: 6,
        port: 80,
        scheduler: vipd_dataplane::sched::SchedulerKind::Maglev,
        backends: vec![nat_rs(1, v4(RS1_IP), 8080)],
        ..Default::default()
    }];
    Snapshot::build(1, vec![lb_port(), v100], &services, &neighbours(), 65537).unwrap()
}

#[test]
fn on_a_trunk_a_priority_tag_is_the_untagged_side_and_unknown_vlans_still_drop() {
    for fast_path in [false, true] {
        let snap = trunk();
        let mut w = worker(0, 1);
        w.fast_path = fast_path;
        let (syn, step2) = syn_and_step2(40001);
        let (action, out) = run1(&mut w, &snap, &priority_tagged(&syn.bytes()), 1);
        assert_eq!(action, Action::Tx(0), "fast path {fast_path}");
        assert_eq!(
            out,
            step2.bytes(),
            "untagged to RS1 (fast path {fast_path})"
        );

        // ARP for the port address is answered on the untagged side, untagged.
        let (a, out) = run1(
            &mut w,
            &snap,
            &priority_tagged(&arp_frame(1, ROUTER_MAC, ROUTER_IP, LB_IP)),
            2,
        );
        assert_eq!(a, Action::Tx(0));
        assert_eq!(&out[12..14], &[0x08, 0x06], "untagged ARP reply");
        assert_eq!(&out[0..6], &ROUTER_MAC);

        let mut unknown = syn.clone();
        unknown.vlan = Some(300);
        let (a, _) = run1(&mut w, &snap, &unknown.bytes(), 4);
        assert_eq!(a, Action::Drop(DropReason::UnknownVlan));
        assert_eq!(w.counters.get(DropReason::UnknownVlan), 1);
    }
}
