//! Crafted frames that used to fool vipd's local answers and link layer (issue 11): echo
//! replies and ARP to sources that must get none, IPv4-mapped IPv6, VLAN tags, gratuitous ARP
//! and unsolicited NAs, an unresolved on-link client. Inputs built with etherparse
//! (tests/common), outputs checked against frames etherparse wrote or parsed. The flow-state
//! defects are in pipeline_hostile.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::TcpState;
use vipd_dataplane::pipeline::Action;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::ServiceSpec;

fn echo4(src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(src_mac, LB_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

fn echo6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv6(src.octets(), dst.octets(), 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

#[test]
fn no_replies_to_non_unicast_sources_and_macs() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    assert_eq!(
        run1(&mut w, &snap, &echo4(ROUTER_MAC, CLIENT_IP, LB_IP), 1).0,
        Action::Tx(0),
        "the control case is answered"
    );
    for mac in [
        [0xff; 6],
        [0x01, 0, 0x5e, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
        [0; 6],
    ] {
        assert_eq!(
            run1(&mut w, &snap, &echo4(mac, CLIENT_IP, LB_IP), 1).0,
            Action::Drop(DropReason::SrcMacInvalid),
            "{mac:?}"
        );
    }
    for src in [
        Ipv4Addr::new(0, 0, 0, 0),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 1),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(10, 0, 0, 255), // the port subnet's broadcast
        LB_IP,                        // ourselves
    ] {
        assert_eq!(
            run1(&mut w, &snap, &echo4(ROUTER_MAC, src, LB_IP), 1).0,
            Action::Drop(DropReason::MartianSource),
            "{src}"
        );
    }
    // Found by fuzzing: a NAT real server's "reply" to a multicast client was un-NATed and
    // sent out; and an echo to a broadcast address in a unicast frame.
    let to_group = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(Ipv4Addr::new(236, 0, 2, 50)),
        tcp(8080, 40000, "SA"),
        b"",
    );
    assert_eq!(
        run1(&mut w, &snap, &to_group.bytes(), 1).0,
        Action::Drop(DropReason::MartianDestination)
    );
    assert_eq!(
        run1(
            &mut w,
            &snap,
            &echo4(ROUTER_MAC, CLIENT_IP, Ipv4Addr::BROADCAST),
            1
        )
        .0,
        Action::Drop(DropReason::MartianDestination)
    );
    // LAND: source == destination, to a VIP.
    let land = Frame::new(ROUTER_MAC, LB_MAC, v4(VIP), v4(VIP), tcp(80, 80, "S"), b"");
    assert_eq!(
        run1(&mut w, &snap, &land.bytes(), 1).0,
        Action::Drop(DropReason::MartianSource)
    );
    for src in ["::", "::1", "ff02::1", "fd00::10"] {
        assert_eq!(
            run1(&mut w, &snap, &echo6(src.parse().unwrap(), lb_ip6()), 1).0,
            Action::Drop(DropReason::MartianSource),
            "{src}"
        );
    }
    // ARP from a multicast sender MAC or a broadcast sender address is not answered.
    let mut arp = arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP);
    assert_eq!(run1(&mut w, &snap, &arp, 1).0, Action::Tx(0));
    arp[22] = 0x01; // sender hardware address multicast (frame source still unicast)
    assert_eq!(
        run1(&mut w, &snap, &arp, 1).0,
        Action::Drop(DropReason::ArpInvalid)
    );
    let bcast = arp_frame(1, ROUTER_MAC, Ipv4Addr::BROADCAST, VIP);
    assert_eq!(
        run1(&mut w, &snap, &bcast, 1).0,
        Action::Drop(DropReason::ArpInvalid)
    );
    assert_eq!(w.counters.get(Counter::EchoReplies), 1);
    assert_eq!(w.counters.get(Counter::ArpReplies), 1);
    assert_eq!(w.flows.len(), 0);
}

#[test]
fn echo_larger_than_the_port_mtu_gets_no_reply() {
    // Found by fuzzing: a jumbo echo request came in on a 1400-byte port and its reply went
    // out at 1558 bytes.
    let snap = snapshot_with_port(|p| p.mtu = 1400);
    let mut w = worker(0, 1);
    let echo = |len: usize| {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .icmpv4_echo_request(7, 1)
            .write(&mut f, &vec![0u8; len - 28])
            .unwrap();
        f
    };
    assert_eq!(
        run1(&mut w, &snap, &echo(1558), 1).0,
        Action::Drop(DropReason::TooBig)
    );
    assert_eq!(run1(&mut w, &snap, &echo(1400), 1).0, Action::Tx(0));
}

#[test]
fn echo_with_a_bad_checksum_gets_no_reply() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut e4 = echo4(ROUTER_MAC, CLIENT_IP, VIP);
    e4[14 + 20 + 2] ^= 0x10;
    assert_eq!(
        run1(&mut w, &snap, &e4, 1).0,
        Action::Drop(DropReason::IcmpBadChecksum)
    );
    let mut e6 = echo6(client_ip6(), vip6());
    e6[14 + 40 + 2] ^= 0x10;
    assert_eq!(
        run1(&mut w, &snap, &e6, 1).0,
        Action::Drop(DropReason::IcmpBadChecksum)
    );
    let good = echo6(client_ip6(), vip6());
    let (action, out) = run1(&mut w, &snap, &good, 1);
    assert_eq!(action, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (&p.net, &p.transport)
    else {
        panic!("not ICMPv6")
    };
    assert!(matches!(icmp.icmp_type(), Icmpv6Type::EchoReply(_)));
    let h = ip.header();
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type()
            .calc_checksum(h.source(), h.destination(), icmp.payload())
            .unwrap()
    );
}

#[test]
fn ipv4_mapped_ipv6_never_reaches_ipv4_state() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(46000, 80, "S"), b"").bytes(),
        1,
    );
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(46000, 80, "A"), b"").bytes(),
        2,
    );
    // The same connection's key, spelled in IPv6: a RST that would close it.
    let spoof = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        IpAddr::V6(CLIENT_IP.to_ipv6_mapped()),
        IpAddr::V6(VIP.to_ipv6_mapped()),
        tcp(46000, 80, "R"),
        b"",
    );
    assert_eq!(
        run1(&mut w, &snap, &spoof.bytes(), 3).0,
        Action::Drop(DropReason::Ipv6Mapped)
    );
    let to_mapped_rs = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        IpAddr::V6(Ipv4Addr::new(10, 0, 0, 21).to_ipv6_mapped()),
        udp(1, 2),
        b"",
    );
    assert_eq!(
        run1(&mut w, &snap, &to_mapped_rs.bytes(), 3).0,
        Action::Drop(DropReason::Ipv6Mapped)
    );
    // ICMPv6 for the IPv4 VIP and the port's IPv4 address, spelled mapped: no echo reply,
    // no error relayed (Neighbour Discovery: pipeline_ipv6_nd.rs).
    for dst in [VIP, LB_IP] {
        assert_eq!(
            run1(&mut w, &snap, &echo6(client_ip6(), dst.to_ipv6_mapped()), 3).0,
            Action::Drop(DropReason::Ipv6Mapped),
            "echo to {dst}, mapped"
        );
    }
    let mut too_big = Vec::new();
    etherparse::PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv6(client_ip6().octets(), VIP.to_ipv6_mapped().octets(), 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut too_big, &[0x60; 48])
        .unwrap();
    assert_eq!(
        run1(&mut w, &snap, &too_big, 3).0,
        Action::Drop(DropReason::Ipv6Mapped),
        "packet too big to the IPv4 VIP, mapped"
    );
    assert_eq!(w.counters.get(Counter::EchoReplies), 0);
    assert_eq!(state_of(&w, 46000, 3), Some(TcpState::Established));
}

#[test]
fn tagged_frames_are_dropped_and_counted() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let good = client_to_vip(tcp(47000, 80, "S"), b"").bytes();
    // The port carries no VLAN: 802.1Q is an unknown VLAN, QinQ outer tags are refused.
    for (tpid, reason) in [
        ([0x81, 0x00], DropReason::UnknownVlan),
        ([0x88, 0xa8], DropReason::VlanTagged),
        ([0x91, 0x00], DropReason::VlanTagged),
    ] {
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&tpid);
        tagged.extend_from_slice(&[0x00, 0x64]); // VLAN 100
        tagged.extend_from_slice(&good[12..]);
        assert_eq!(
            run1(&mut w, &snap, &tagged, 1).0,
            Action::Drop(reason),
            "{tpid:x?}"
        );
    }
    assert_eq!(w.flows.len(), 0);
    // A priority-tagged (VLAN 0) ARP request is the port's untagged side's (frame-classes.md
    // E4b): answered as the untagged request is, untagged (pipeline_priority_tag.rs).
    let arp = arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP);
    let mut tagged_arp = arp[..12].to_vec();
    tagged_arp.extend_from_slice(&[0x81, 0x00, 0x00, 0x00]);
    tagged_arp.extend_from_slice(&arp[12..]);
    let answer = run1(&mut w, &snap, &tagged_arp, 1);
    assert_eq!(answer, run1(&mut worker(0, 1), &snap, &arp, 1));
    assert_eq!(answer.0, Action::Tx(0));
}

#[test]
fn gratuitous_arp_and_unsolicited_na_for_a_known_neighbour_reach_control() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let new_mac = [0x02, 0, 0, 0, 0, 0x77];
    // Gratuitous ARP (request, sender = target) announcing RS1 at a new MAC.
    let garp = arp_frame(1, new_mac, RS1_IP, RS1_IP);
    assert_eq!(run1(&mut w, &snap, &garp, 1).0, Action::ToControl);
    let garp_reply = arp_frame(2, new_mac, ROUTER_IP, ROUTER_IP);
    assert_eq!(run1(&mut w, &snap, &garp_reply, 1).0, Action::ToControl);
    // The same MAC again, or a host we do not use: nothing to learn.
    assert_eq!(
        run1(&mut w, &snap, &arp_frame(1, RS1_MAC, RS1_IP, RS1_IP), 1).0,
        Action::Drop(DropReason::ArpIgnored)
    );
    assert_eq!(
        run1(
            &mut w,
            &snap,
            &arp_frame(
                1,
                new_mac,
                Ipv4Addr::new(10, 0, 0, 99),
                Ipv4Addr::new(10, 0, 0, 99)
            ),
            1
        )
        .0,
        Action::Drop(DropReason::ArpIgnored)
    );
    // Unsolicited NA (to all-nodes, S=0, O=1) for RS1's IPv6 address with a new MAC.
    let mut na = Vec::new();
    let mut payload = rs1_ip6().octets().to_vec();
    payload.extend_from_slice(&[2, 1]);
    payload.extend_from_slice(&new_mac);
    etherparse::PacketBuilder::ethernet2(new_mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            rs1_ip6().octets(),
            "ff02::1".parse::<Ipv6Addr>().unwrap().octets(),
            255,
        )
        .icmpv6_raw(136, 0, [0x20, 0, 0, 0])
        .write(&mut na, &payload)
        .unwrap();
    assert_eq!(run1(&mut w, &snap, &na, 1).0, Action::ToControl);
    assert_eq!(w.counters.get(Counter::ToControl), 3);
}

#[test]
fn nat_reply_to_an_unresolved_on_link_client_asks_control_to_resolve_it() {
    // A client on the LB's own segment (no router between): its MAC was never resolved, the
    // reply used to be dropped for ever. Now it goes to the control thread, which resolves the
    // client; once the snapshot knows the MAC, replies flow.
    let on_link = Ipv4Addr::new(10, 0, 0, 77);
    let reply = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(on_link),
        tcp(8080, 40000, "SA"),
        b"",
    );
    let snap = snapshot();
    let mut w = worker(0, 1);
    assert_eq!(run1(&mut w, &snap, &reply.bytes(), 1).0, Action::ToControl);
    assert_eq!(w.counters.get(Counter::NeighbourResolveRequests), 1);
    // Off-link clients behind an unresolved gateway are the gateway's business: dropped.
    let mut no_gw = neighbours();
    no_gw.remove(&IpAddr::V4(ROUTER_IP));
    let snap_no_gw = vipd_dataplane::snapshot::Snapshot::build(
        1,
        vec![lb_port()],
        &[ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![nat_rs(0, RS1_IP.into(), 8080)],
            ..Default::default()
        }],
        &no_gw,
        251,
    )
    .unwrap();
    let far = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(CLIENT_IP),
        tcp(8080, 40000, "SA"),
        b"",
    );
    assert_eq!(
        run1(&mut w, &snap_no_gw, &far.bytes(), 2).0,
        Action::Drop(DropReason::NeighbourUnresolved)
    );
    // Resolved: forwarded to the client's own MAC.
    let client_mac = [0x02, 0, 0, 0, 0, 0x77];
    let mut with_client = neighbours();
    with_client.insert(
        IpAddr::V4(on_link),
        vipd_dataplane::wire::MacAddr(client_mac),
    );
    let snap2 = vipd_dataplane::snapshot::Snapshot::build(
        2,
        vec![lb_port()],
        &[ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![nat_rs(0, RS1_IP.into(), 8080)],
            ..Default::default()
        }],
        &with_client,
        251,
    )
    .unwrap();
    let (action, out) = run1(&mut w, &snap2, &reply.bytes(), 3);
    assert_eq!(action, Action::Tx(0));
    let mut want = reply.clone();
    want.src_mac = LB_MAC;
    want.dst_mac = client_mac;
    want.src = v4(VIP);
    want.ttl -= 1;
    if let L4::Tcp { sport, .. } = &mut want.l4 {
        *sport = 80;
    }
    assert_eq!(out, want.bytes());
}
