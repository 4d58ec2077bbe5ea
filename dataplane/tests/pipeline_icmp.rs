//! ICMP errors about VIP traffic: delivered to the real server owning the quoted connection
//! (NAT-rewritten, MAC-only for DR, encapsulated for TUN), and un-NATed from NAT real servers
//! to clients. Inputs and expected outputs are written by etherparse, which computes every
//! checksum (outer, quoted IPv4 header, quoted TCP/UDP, ICMP) from scratch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type, IpNumber, NetSlice, PacketBuilder, SlicedPacket};
use std::net::{Ipv4Addr, Ipv6Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::pipeline::Action;

const INTERNET_ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn internet_router6() -> Ipv6Addr {
    "2001:db8:ffff::1".parse().unwrap()
}

/// The IP packet (no Ethernet header) of a test frame.
fn ip_of(f: &Frame) -> Vec<u8> {
    f.bytes()[14..].to_vec()
}

fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    })
}

/// An ICMPv4 error frame quoting `quote`.
fn icmp4(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    ty: Icmpv4Type,
    quote: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.octets(), dst.octets(), ttl)
        .icmpv4(ty)
        .write(&mut out, quote)
        .unwrap();
    out
}

fn icmp6(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    ty: Icmpv6Type,
    quote: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.octets(), dst.octets(), hops)
        .icmpv6(ty)
        .write(&mut out, quote)
        .unwrap();
    out
}

/// What a real server sent through vipd (step 4): VIP:`vport` -> client:40000.
fn step4(vport: u16, payload: &[u8]) -> Frame {
    Frame::new(
        LB_MAC,
        ROUTER_MAC,
        v4(VIP),
        v4(CLIENT_IP),
        tcp(vport, 40000, "AP"),
        payload,
    )
}

#[test]
fn frag_needed_to_the_vip_reaches_the_nat_real_server_rewritten() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // The connection exists (SYN seen): the error follows its entry.
    let syn = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(VIP),
        tcp(40000, 80, "S"),
        b"",
    );
    assert_eq!(run1(&mut w, &snap, &syn.bytes(), 1).0, Action::Tx(0));
    let data = [0x5a; 100];
    let quoted = ip_of(&step4(80, &data));
    let input = icmp4(
        (ROUTER_MAC, LB_MAC),
        INTERNET_ROUTER,
        VIP,
        60,
        frag_needed(1400),
        &quoted,
    );
    // As the real server sent it before vipd's step 4: RS1:8080 -> client:40000.
    let mut rs_view = step4(8080, &data);
    rs_view.src = v4(RS1_IP);
    let expected = icmp4(
        (LB_MAC, RS1_MAC),
        INTERNET_ROUTER,
        RS1_IP,
        59,
        frag_needed(1400),
        &ip_of(&rs_view),
    );
    let (action, out) = run1(&mut w, &snap, &input, 2);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(
        out, expected,
        "outer, quoted header, quoted TCP and ICMP checksums"
    );
    assert_eq!(w.counters.get(Counter::IcmpErrorsToRealServer), 1);
    assert_eq!(
        w.counters.get(Counter::IcmpErrorsStateless),
        0,
        "by its entry"
    );
    // Without an entry (e.g. after a restart) the consistent hash finds the real server; a
    // truncated quote (IP header + 8 bytes, the RFC 792 minimum) is enough.
    let mut w2 = worker(0, 1);
    let short = icmp4(
        (ROUTER_MAC, LB_MAC),
        INTERNET_ROUTER,
        VIP,
        60,
        frag_needed(1400),
        &quoted[..28],
    );
    let (action, out) = run1(&mut w2, &snap, &short, 3);
    assert_eq!(action, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().destination_addr(), RS1_IP);
    let icmp = ip.payload().payload;
    assert_eq!(
        etherparse::checksum::Sum16BitWords::new()
            .add_slice(icmp)
            .ones_complement(),
        0,
        "ICMP checksum"
    );
    let (inner, _) = etherparse::Ipv4Header::from_slice(&icmp[8..]).unwrap();
    assert_eq!(inner.source, RS1_IP.octets());
    assert_eq!(inner.header_checksum, inner.calc_header_checksum());
    assert_eq!(&icmp[8 + 20..8 + 22], &8080u16.to_be_bytes());
    assert_eq!(w2.flows.len(), 0, "an error creates no state");
    assert_eq!(w2.counters.get(Counter::IcmpErrorsStateless), 1);
    assert_eq!(w2.counters.get(Counter::IcmpErrorsToRealServer), 1);
}

#[test]
fn errors_to_the_vip_reach_dr_and_tun_real_servers() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // DR (VIP:443): the real server holds the VIP; only the MACs change.
    let input = icmp4(
        (ROUTER_MAC, LB_MAC),
        INTERNET_ROUTER,
        VIP,
        60,
        frag_needed(1280),
        &ip_of(&step4(443, b"dr")),
    );
    let (action, out) = run1(&mut w, &snap, &input, 1);
    assert_eq!(action, Action::Tx(0));
    let mut expected = input.clone();
    expected[..6].copy_from_slice(&RS1_MAC);
    expected[6..12].copy_from_slice(&LB_MAC);
    assert_eq!(out, expected);
    // TUN (VIP:8443, 4in4): the error, byte for byte, inside an outer header to RS1.
    let input = icmp4(
        (ROUTER_MAC, LB_MAC),
        INTERNET_ROUTER,
        VIP,
        60,
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
        &ip_of(&step4(8443, b"tun")),
    );
    let (action, out) = run1(&mut w, &snap, &input, 2);
    assert_eq!(action, Action::Tx(0));
    let (outer, inner) = etherparse::Ipv4Header::from_slice(&out[14..]).unwrap();
    assert_eq!(outer.protocol, IpNumber::IPV4);
    assert_eq!(outer.source, LB_IP.octets());
    assert_eq!(outer.destination, RS1_IP.octets());
    assert_eq!(outer.header_checksum, outer.calc_header_checksum());
    assert_eq!(inner, &input[14..]);
    assert_eq!(&out[..6], &RS1_MAC);
    assert_eq!(w.counters.get(Counter::IcmpErrorsToRealServer), 2);
    assert_eq!(
        w.counters.get(Counter::IcmpErrorsStateless),
        2,
        "no entry: the consistent hash"
    );
}

#[test]
fn packet_too_big_to_an_ipv6_vip_reaches_the_nat66_real_server() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut sent = Frame::new(
        LB_MAC,
        ROUTER_MAC,
        vip6().into(),
        client_ip6().into(),
        tcp(80, 40000, "AP"),
        &[1u8; 64],
    );
    let input = icmp6(
        (ROUTER_MAC, LB_MAC),
        internet_router6(),
        vip6(),
        60,
        Icmpv6Type::PacketTooBig { mtu: 1280 },
        &ip_of(&sent),
    );
    sent.src = rs1_ip6().into();
    if let L4::Tcp { sport, .. } = &mut sent.l4 {
        *sport = 8080;
    }
    let expected = icmp6(
        (LB_MAC, RS1_MAC),
        internet_router6(),
        rs1_ip6(),
        59,
        Icmpv6Type::PacketTooBig { mtu: 1280 },
        &ip_of(&sent),
    );
    let (action, out) = run1(&mut w, &snap, &input, 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out, expected);
}

#[test]
fn errors_from_nat_real_servers_are_unnated_to_the_client() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // RS1 answers a UDP query on 5353 (step 2 of VIP:53) with port unreachable.
    let step2 = Frame::new(
        LB_MAC,
        RS1_MAC,
        v4(CLIENT_IP),
        v4(RS1_IP),
        udp(5000, 5353),
        b"query",
    );
    let unreachable = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let input = icmp4(
        (RS1_MAC, LB_MAC),
        RS1_IP,
        CLIENT_IP,
        64,
        unreachable.clone(),
        &ip_of(&step2),
    );
    let mut client_view = step2.clone();
    client_view.dst = v4(VIP);
    if let L4::Udp { dport, .. } = &mut client_view.l4 {
        *dport = 53;
    }
    let expected = icmp4(
        (LB_MAC, ROUTER_MAC),
        VIP,
        CLIENT_IP,
        63,
        unreachable,
        &ip_of(&client_view),
    );
    let (action, out) = run1(&mut w, &snap, &input, 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out, expected, "from the VIP, quoting client -> VIP:53");
    // From a router between vipd and the real server: its own address stays.
    let ttl = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let router = Ipv4Addr::new(10, 0, 0, 2);
    let input = icmp4(
        (RS1_MAC, LB_MAC),
        router,
        CLIENT_IP,
        64,
        ttl.clone(),
        &ip_of(&step2),
    );
    let expected = icmp4(
        (LB_MAC, ROUTER_MAC),
        router,
        CLIENT_IP,
        63,
        ttl,
        &ip_of(&client_view),
    );
    let (action, out) = run1(&mut w, &snap, &input, 2);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out, expected);
    assert_eq!(w.counters.get(Counter::IcmpErrorsToClient), 2);
}

#[test]
fn errors_that_match_nothing_are_dropped_and_counted() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "quote not from the VIP the error was sent to (forged)",
            icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                VIP,
                60,
                frag_needed(1400),
                &ip_of(&Frame::new(
                    LB_MAC,
                    ROUTER_MAC,
                    v4(CLIENT_IP),
                    v4(VIP),
                    tcp(40000, 80, "A"),
                    b"",
                )),
            ),
            DropReason::IcmpErrorNoFlow,
        ),
        (
            "quote of a VIP port without service",
            icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                VIP,
                60,
                frag_needed(1400),
                &ip_of(&step4(81, b"")),
            ),
            DropReason::IcmpErrorNoFlow,
        ),
        (
            "quote cut inside the transport header",
            icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                VIP,
                60,
                frag_needed(1400),
                &ip_of(&step4(80, b""))[..24],
            ),
            DropReason::IcmpQuoteMalformed,
        ),
        (
            "redirect to a VIP",
            icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                VIP,
                60,
                Icmpv4Type::Redirect(etherparse::icmpv4::RedirectHeader {
                    code: etherparse::icmpv4::RedirectCode::RedirectForNetwork,
                    gateway_internet_address: [10, 0, 0, 99],
                }),
                &ip_of(&step4(80, b"")),
            ),
            DropReason::LocalUnhandled,
        ),
        (
            "error about nobody's traffic, not to us",
            icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                Ipv4Addr::new(198, 51, 100, 7),
                60,
                frag_needed(1400),
                &ip_of(&step4(80, b"")),
            ),
            DropReason::NotLocal,
        ),
    ];
    for (what, frame, reason) in cases {
        assert_eq!(
            run1(&mut w, &snap, &frame, 1).0,
            Action::Drop(reason),
            "{what}"
        );
    }
    let mut bad = icmp4(
        (ROUTER_MAC, LB_MAC),
        INTERNET_ROUTER,
        VIP,
        60,
        frag_needed(1400),
        &ip_of(&step4(80, b"")),
    );
    bad[14 + 20 + 2] ^= 1;
    assert_eq!(
        run1(&mut w, &snap, &bad, 1).0,
        Action::Drop(DropReason::IcmpBadChecksum)
    );
    assert_eq!(w.counters.get(Counter::Forwarded), 0);
}

/// An error about a connection this box does not track (it restarted, or the connection's
/// packets cross another box behind the same ECMP group) reaches the real server the
/// connection's own packets went to: the consistent hash of the quoted connection, exactly
/// as its first packets computed it. Box A schedules each connection (a SYN, or a UDP
/// datagram); box B, with no entry, relays the error quoting the real server's answer.
#[test]
fn errors_about_connections_the_box_does_not_track_reach_their_real_server() {
    let snap = snapshot();
    let three = three_tuple::snapshot();
    let mut seen = std::collections::HashSet::new();
    // (snapshot, VIP, port, first packet from the client, TCP?)
    let cases = [
        (&snap, VIP, 8000u16, true), // NAT, maglev, 5-tuple: RS1, RS2
        (&three, three_tuple::NAT_VIP, 53, false), // NAT, 3-tuple
        (&three, three_tuple::DR_VIP, 4500, false), // DR, 3-tuple
        (&three, three_tuple::TUN_VIP, 4500, false), // TUN, 3-tuple
    ];
    for (snap, vip, port, is_tcp) in cases {
        for c in 0..16u16 {
            let (mut a, mut b) = (worker(0, 1), worker(0, 1));
            let client = Ipv4Addr::new(192, 0, 2, 100 + c as u8);
            let cport = 40000 + c * 7;
            let l4 = if is_tcp {
                tcp(cport, port, "S")
            } else {
                udp(cport, port)
            };
            let first = Frame::new(ROUTER_MAC, LB_MAC, v4(client), v4(vip), l4, b"hello");
            let (action, to_rs) = run1(&mut a, snap, &first.bytes(), 1);
            assert_eq!(action, Action::Tx(0));
            // What the real server sent back through step 4 / directly: VIP:port -> client.
            let l4 = if is_tcp {
                tcp(port, cport, "AP")
            } else {
                udp(port, cport)
            };
            let answer = Frame::new(LB_MAC, ROUTER_MAC, v4(vip), v4(client), l4, &[1; 64]);
            let error = icmp4(
                (ROUTER_MAC, LB_MAC),
                INTERNET_ROUTER,
                vip,
                60,
                frag_needed(1400),
                &ip_of(&answer),
            );
            let (action, out) = run1(&mut b, snap, &error, 2);
            assert_eq!(action, Action::Tx(0), "{vip}:{port} client {c}");
            assert_eq!(
                out[..6],
                to_rs[..6],
                "{vip}:{port} client {c}: its real server"
            );
            assert_eq!(b.counters.get(Counter::IcmpErrorsStateless), 1);
            assert_eq!(b.flows.len(), 0, "an error creates no state");
            seen.insert((vip, port, to_rs[..6].to_vec()));
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let (rs_ip, rs_port) = {
                let q = SlicedPacket::from_ethernet(&to_rs).unwrap();
                let Some(NetSlice::Ipv4(rs)) = &q.net else {
                    panic!("not IPv4")
                };
                let dport = u16::from_be_bytes([rs.payload().payload[2], rs.payload().payload[3]]);
                (rs.header().destination_addr(), dport)
            };
            if vip == three_tuple::TUN_VIP {
                // The whole error inside an outer header to the real server.
                assert_eq!(ip.header().protocol(), IpNumber::IPV4);
                assert_eq!(ip.header().destination_addr(), rs_ip);
                assert_eq!(ip.payload().payload, &error[14..]);
                continue;
            }
            if vip == three_tuple::DR_VIP {
                let mut want = error.clone();
                want[..6].copy_from_slice(&to_rs[..6]);
                want[6..12].copy_from_slice(&LB_MAC);
                assert_eq!(out, want, "DR: only the MACs change");
                continue;
            }
            // NAT: to the real server, quoting what it sent (its address and port), every
            // checksum as etherparse writes it.
            let mut rs_view = answer.clone();
            rs_view.src = v4(rs_ip);
            match &mut rs_view.l4 {
                L4::Tcp { sport, .. } | L4::Udp { sport, .. } => *sport = rs_port,
            }
            let want = icmp4(
                (LB_MAC, to_rs[..6].try_into().unwrap()),
                INTERNET_ROUTER,
                rs_ip,
                59,
                frag_needed(1400),
                &ip_of(&rs_view),
            );
            assert_eq!(out, want, "{vip}:{port} client {c}");
        }
    }
    assert_eq!(seen.len(), 8, "both real servers in every case: {seen:?}");
}
