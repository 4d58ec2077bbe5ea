//! Crafted frames that used to fool vipd (issue 11), one test per defect: each builds its
//! input with etherparse (tests/common), checks the verdict, the flow table afterwards, and
//! the output bytes against frames etherparse wrote or parsed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::counters::Counter;
use vipd_dataplane::flow::{FlowTable, TcpState, Timeouts};
use vipd_dataplane::pipeline::{Action, WorkerState};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{ServiceSpec, Snapshot};

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn client_to_vip(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(ROUTER_MAC, LB_MAC, v4(CLIENT_IP), v4(VIP), l4, payload)
}

/// What step 2 to RS1:`port` must look like (NAT).
fn to_rs1(mut f: Frame, port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = RS1_MAC;
    f.dst = v4(RS1_IP);
    f.ttl -= 1;
    match &mut f.l4 {
        L4::Tcp { dport, .. } | L4::Udp { dport, .. } => *dport = port,
    }
    f
}

fn worker_with(capacity: usize) -> WorkerState {
    WorkerState::new(
        0,
        1,
        FlowTable::with_capacity(capacity, Timeouts::default()),
        16,
    )
}

/// The state of the flow `key`'s connection, if it has an entry.
fn state_of(w: &WorkerState, client_port: u16, now: u64) -> Option<TcpState> {
    w.flows
        .iter(now)
        .find(|f| f.key.src_port == client_port)
        .map(|f| f.state)
}

#[test]
fn tcp_state_only_from_a_lone_syn() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // A bare ACK and a RST without a flow are forwarded (the consistent hash's real server:
    // a connection that outlived a restart keeps working) but create nothing.
    for (i, flags) in ["A", "AP", "R", "AR", "AF"].into_iter().enumerate() {
        let f = client_to_vip(tcp(41000 + i as u16, 80, flags), b"x");
        let (action, out) = run1(&mut w, &snap, &f.bytes(), 10);
        assert_eq!(action, Action::Tx(0), "{flags}");
        assert_eq!(out, to_rs1(f, 8080).bytes(), "{flags}: output bytes");
    }
    assert_eq!(w.flows.len(), 0, "no state from non-SYN segments");
    assert_eq!(w.counters.get(Counter::TcpNoFlowStateless), 5);
    assert_eq!(w.counters.get(Counter::FlowsCreated), 0);
    // Flag combinations no endpoint sends are dropped, whatever the table holds.
    for flags in ["", "SF", "SR", "SAF", "F", "P", "SRAF"] {
        let f = client_to_vip(tcp(42000, 80, flags), b"");
        let (action, _) = run1(&mut w, &snap, &f.bytes(), 11);
        assert_eq!(action, Action::Drop(Counter::DropTcpBadFlags), "{flags:?}");
    }
    assert_eq!(w.flows.len(), 0);
    // A lone SYN creates the entry; the connection's ACK then tracks it.
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(43000, 80, "S"), b"").bytes(),
        12,
    );
    assert_eq!(state_of(&w, 43000, 12), Some(TcpState::SynRecv));
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(43000, 80, "A"), b"").bytes(),
        13,
    );
    assert_eq!(state_of(&w, 43000, 13), Some(TcpState::Established));
}

#[test]
fn sloppy_tcp_creates_state_from_any_segment() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    w.sloppy_tcp = true;
    let f = client_to_vip(tcp(41000, 80, "A"), b"mid-stream");
    let (action, out) = run1(&mut w, &snap, &f.bytes(), 10);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out, to_rs1(f, 8080).bytes());
    assert_eq!(state_of(&w, 41000, 10), Some(TcpState::Established));
    // Invalid combinations stay invalid in sloppy mode.
    let (action, _) = run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(41001, 80, "SF"), b"").bytes(),
        11,
    );
    assert_eq!(action, Action::Drop(Counter::DropTcpBadFlags));
}

/// VIP:9000/tcp and VIP:9053/udp, rr over RS1 and RS2 (NAT, same port).
fn rr_snapshot() -> Snapshot {
    let rr = |port, proto, id| ServiceSpec {
        vip: VIP.into(),
        proto,
        port,
        scheduler: SchedulerKind::Rr,
        backends: vec![
            nat_rs(id, RS1_IP.into(), port),
            nat_rs(id + 1, RS2_IP.into(), port),
        ],
        ..Default::default()
    };
    snapshot_of(&[rr(9000, 6, 0), rr(9053, 17, 2)])
}

/// The real server (by destination MAC) a forwarded frame goes to.
fn rs_of(out: &[u8]) -> [u8; 6] {
    out[..6].try_into().unwrap()
}

#[test]
fn rr_flows_without_state_always_get_the_consistent_choice() {
    let snap = rr_snapshot();
    let (svc_tcp, svc_udp) = (&snap.services[0], &snap.services[1]);
    let maglev_rs = |proto: u8, port: u16| {
        let vport = if proto == 6 { 9000 } else { 9053 };
        let key = vipd_dataplane::flow::FlowKey::v4(CLIENT_IP, VIP, port, vport, proto);
        let svc = if proto == 6 { svc_tcp } else { svc_udp };
        let id = svc.pick_consistent(key.hash()).unwrap();
        if snap.backend(id).unwrap().addr == IpAddr::V4(RS1_IP) {
            RS1_MAC
        } else {
            RS2_MAC
        }
    };
    // 24 slots, all taken by live connections: every new flow finds the table full.
    let mut w = worker_with(24);
    for p in 1..=24 {
        run1(
            &mut w,
            &snap,
            &client_to_vip(tcp(p, 9000, "S"), b"").bytes(),
            0,
        );
    }
    assert_eq!(w.flows.len(), 24);
    let ports: Vec<u16> = (50000..50016).collect();
    // Precondition that makes this test able to fail: rr alone alternates RS1, RS2, so a
    // flow pinned by rr after the overflow would land elsewhere for about half of them.
    assert!(ports.iter().any(|&p| maglev_rs(6, p) == RS1_MAC));
    assert!(ports.iter().any(|&p| maglev_rs(6, p) == RS2_MAC));
    let mut first = Vec::new();
    for &p in &ports {
        let (_, out) = run1(
            &mut w,
            &snap,
            &client_to_vip(tcp(p, 9000, "S"), b"").bytes(),
            1,
        );
        let (_, out_u) = run1(&mut w, &snap, &client_to_vip(udp(p, 9053), b"q").bytes(), 1);
        assert_eq!(
            rs_of(&out),
            maglev_rs(6, p),
            "SYN when full: consistent hash"
        );
        assert_eq!(
            rs_of(&out_u),
            maglev_rs(17, p),
            "UDP when full: consistent hash"
        );
        first.push((rs_of(&out), rs_of(&out_u)));
    }
    assert_eq!(w.counters.get(Counter::FlowTableFull), 32);
    // Room again (the blocking connection resets and expires): the flows go on where they
    // were, TCP without state, UDP with an entry that takes the consistent choice.
    let room = Timeouts::default().tcp_close as u64 * 1000 + 10;
    // (The blockers' RSTs are forwarded: they have entries.)
    for p in 1..=24 {
        run1(
            &mut w,
            &snap,
            &client_to_vip(tcp(p, 9000, "R"), b"").bytes(),
            2,
        );
    }
    w.flows.expire(room, 64);
    assert_eq!(w.flows.len(), 0);
    let mut w2 = worker_with(64);
    let now = room + 1;
    for (i, &p) in ports.iter().enumerate() {
        let (_, out) = run1(
            &mut w,
            &snap,
            &client_to_vip(tcp(p, 9000, "A"), b"").bytes(),
            now,
        );
        assert_eq!(
            rs_of(&out),
            first[i].0,
            "TCP port {p} moved after the overflow"
        );
        let (_, out_u) = run1(
            &mut w,
            &snap,
            &client_to_vip(udp(p, 9053), b"q").bytes(),
            now,
        );
        assert_eq!(
            rs_of(&out_u),
            first[i].1,
            "UDP port {p} moved after the overflow"
        );
    }
    assert_eq!(
        w.flows.len(),
        ports.len(),
        "UDP entries made with the consistent choice"
    );
    // And after the overflow is older than the UDP timeout, rr is back for new UDP flows.
    let later = room + Timeouts::default().udp as u64 * 1000 + 10;
    let rr_rs: Vec<_> = (60000..60004)
        .map(|p| {
            rs_of(
                &run1(
                    &mut w,
                    &snap,
                    &client_to_vip(udp(p, 9053), b"q").bytes(),
                    later,
                )
                .1,
            )
        })
        .collect();
    assert_eq!(rr_rs, vec![RS1_MAC, RS2_MAC, RS1_MAC, RS2_MAC], "rr again");
    // A TCP connection whose entry expired: its next segment goes by the consistent hash,
    // every time, and creates nothing.
    let syn = client_to_vip(tcp(61000, 9000, "S"), b"").bytes();
    let ack = client_to_vip(tcp(61000, 9000, "A"), b"").bytes();
    run1(&mut w2, &snap, &syn, 0);
    let gone = Timeouts::default().tcp_syn as u64 * 1000 + 1;
    for t in 0..3 {
        let (_, out) = run1(&mut w2, &snap, &ack, gone + t);
        assert_eq!(rs_of(&out), maglev_rs(6, 61000));
    }
    assert_eq!(w2.flows.len(), 0);
}

#[test]
fn a_vip_packet_matching_another_connections_reply_key_is_not_taken_for_it() {
    // Connection A: client 10.100.0.2:5555 (itself a VIP address) -> VIP:80 -> RS1:8080; its
    // reply key is RS1:8080 -> 10.100.0.2:5555. A packet with exactly that 5-tuple is, by
    // destination, a client packet to the service 10.100.0.2:5555 (-> RS2).
    let vip2 = Ipv4Addr::new(10, 100, 0, 2);
    let snap = snapshot_of(&[
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Maglev,
            backends: vec![nat_rs(0, RS1_IP.into(), 8080)],
            ..Default::default()
        },
        ServiceSpec {
            vip: vip2.into(),
            proto: 6,
            port: 5555,
            scheduler: SchedulerKind::Maglev,
            backends: vec![nat_rs(1, RS2_IP.into(), 80)],
            ..Default::default()
        },
    ]);
    let mut w = worker(0, 1);
    let syn = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(vip2),
        v4(VIP),
        tcp(5555, 80, "S"),
        b"",
    );
    assert_eq!(run1(&mut w, &snap, &syn.bytes(), 1).0, Action::Tx(0));
    let crafted = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(vip2),
        tcp(8080, 5555, "S"),
        b"",
    );
    let (action, out) = run1(&mut w, &snap, &crafted.bytes(), 2);
    assert_eq!(action, Action::Tx(0));
    let mut want = crafted.clone();
    want.src_mac = LB_MAC;
    want.dst_mac = RS2_MAC;
    want.dst = v4(RS2_IP);
    want.ttl -= 1;
    if let L4::Tcp { dport, .. } = &mut want.l4 {
        *dport = 80;
    }
    assert_eq!(
        out,
        want.bytes(),
        "to the other service's real server, not A's"
    );
    assert_eq!(w.counters.get(Counter::FlowKeyClash), 1);
    assert_eq!(
        state_of(&w, 5555, 2),
        Some(TcpState::SynRecv),
        "A untouched"
    );
}

#[test]
fn dropped_packets_change_no_state() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // A TTL-1 SYN (NAT decrements to 0) creates nothing.
    let mut syn = client_to_vip(tcp(44000, 80, "S"), b"");
    syn.ttl = 1;
    assert_eq!(
        run1(&mut w, &snap, &syn.bytes(), 1).0,
        Action::Drop(Counter::DropTtlExceeded)
    );
    assert_eq!(w.flows.len(), 0);
    // A TTL-1 RST does not close an established connection.
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(44001, 80, "S"), b"").bytes(),
        2,
    );
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(44001, 80, "A"), b"").bytes(),
        3,
    );
    let mut rst = client_to_vip(tcp(44001, 80, "R"), b"");
    rst.ttl = 1;
    assert_eq!(
        run1(&mut w, &snap, &rst.bytes(), 4).0,
        Action::Drop(Counter::DropTtlExceeded)
    );
    assert_eq!(state_of(&w, 44001, 4), Some(TcpState::Established));
    // A SYN on a closed TUN connection that is answered with too-big does not reschedule it.
    let tun_syn = client_to_vip(tcp(44002, 8443, "S"), b"");
    run1(&mut w, &snap, &tun_syn.bytes(), 5);
    run1(
        &mut w,
        &snap,
        &client_to_vip(tcp(44002, 8443, "R"), b"").bytes(),
        6,
    );
    let before: Vec<_> = w
        .flows
        .iter(7)
        .filter(|f| f.key.src_port == 44002)
        .collect();
    assert_eq!(before[0].state, TcpState::Close);
    let big_syn = client_to_vip(tcp(44002, 8443, "S"), &[0u8; 1460]);
    let (action, out) = run1(&mut w, &snap, &big_syn.bytes(), 7);
    assert_eq!(action, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    assert!(matches!(
        p.transport,
        Some(TransportSlice::Icmpv4(ref i)) if matches!(i.icmp_type(), Icmpv4Type::DestinationUnreachable(_))
    ));
    let after: Vec<_> = w
        .flows
        .iter(7)
        .filter(|f| f.key.src_port == 44002)
        .collect();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id, after[0].state),
        (before[0].id, TcpState::Close)
    );
}

fn parse_icmp4(out: &[u8]) -> (Ipv4Addr, Ipv4Addr, Icmpv4Type, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    (
        ip.header().source_addr(),
        ip.header().destination_addr(),
        icmp.icmp_type(),
        icmp.payload().to_vec(),
    )
}

#[test]
fn nat_honours_the_egress_mtu() {
    let snap = snapshot_with_port(|p| p.mtu = 1400);
    let mut w = worker(0, 1);
    // 1400 bytes fit; 1401 with DF get "fragmentation needed, MTU 1400" from the VIP.
    let fits = client_to_vip(udp(5000, 53), &[7u8; 1400 - 28]);
    let (action, out) = run1(&mut w, &snap, &fits.bytes(), 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out, to_rs1(fits, 5353).bytes());
    let big = client_to_vip(udp(5000, 53), &[7u8; 1401 - 28]);
    let (action, out) = run1(&mut w, &snap, &big.bytes(), 2);
    assert_eq!(action, Action::Tx(0));
    let (src, dst, ty, quoted) = parse_icmp4(&out);
    assert_eq!((src, dst), (VIP, CLIENT_IP));
    assert_eq!(
        ty,
        Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }
        )
    );
    assert_eq!(&quoted[..28], &big.bytes()[14..14 + 28]);
    assert_eq!(&out[..6], &ROUTER_MAC, "back to where it came from");
    // Without DF vipd cannot fragment and the sender cannot learn: dropped, counted.
    let mut may_frag = big.clone();
    may_frag.dont_fragment = false;
    assert_eq!(
        run1(&mut w, &snap, &may_frag.bytes(), 3).0,
        Action::Drop(Counter::DropTooBig)
    );
    // NAT66: packet too big, MTU 1400.
    let big6 = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        tcp(40000, 80, "S"),
        &[0u8; 1401 - 60],
    );
    let (action, out) = run1(&mut w, &snap, &big6.bytes(), 4);
    assert_eq!(action, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6")
    };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
    // The reply direction: a real server's 1401-byte DF segment gets the error from the LB's
    // own address, to the real server.
    let reply = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(CLIENT_IP),
        tcp(8080, 40000, "A"),
        &[1u8; 1401 - 40],
    );
    let (action, out) = run1(&mut w, &snap, &reply.bytes(), 5);
    assert_eq!(action, Action::Tx(0));
    let (src, dst, _, _) = parse_icmp4(&out);
    assert_eq!((src, dst), (LB_IP, RS1_IP));
    assert_eq!(w.counters.get(Counter::IcmpTooBigSent), 3);
    assert_eq!(
        w.flows.len(),
        1,
        "only the UDP flow that fitted has an entry"
    );
}

#[test]
fn ttl_zero_is_never_forwarded_and_dr_keeps_ttl_one() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    for (port, what) in [(443, "DR"), (8443, "TUN"), (80, "NAT")] {
        let mut f = client_to_vip(tcp(45000, port, "S"), b"");
        f.ttl = 0;
        assert_eq!(
            run1(&mut w, &snap, &f.bytes(), 1).0,
            Action::Drop(Counter::DropTtlZero),
            "{what}"
        );
    }
    let mut f6 = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        udp(45000, 443),
        b"x",
    );
    f6.ttl = 0;
    assert_eq!(
        run1(&mut w, &snap, &f6.bytes(), 1).0,
        Action::Drop(Counter::DropTtlZero)
    );
    // TTL 1 arriving is deliverable to the VIP's host: DR forwards it unchanged.
    let mut one = client_to_vip(tcp(45001, 443, "S"), b"");
    one.ttl = 1;
    let (action, out) = run1(&mut w, &snap, &one.bytes(), 2);
    assert_eq!(action, Action::Tx(0));
    one.src_mac = LB_MAC;
    one.dst_mac = RS1_MAC;
    assert_eq!(out, one.bytes());
    assert_eq!(w.flows.len(), 1, "only the DR SYN made an entry");
}

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
            Action::Drop(Counter::DropSrcMacInvalid),
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
            Action::Drop(Counter::DropMartianSource),
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
        Action::Drop(Counter::DropMartianDestination)
    );
    assert_eq!(
        run1(
            &mut w,
            &snap,
            &echo4(ROUTER_MAC, CLIENT_IP, Ipv4Addr::BROADCAST),
            1
        )
        .0,
        Action::Drop(Counter::DropMartianDestination)
    );
    // LAND: source == destination, to a VIP.
    let land = Frame::new(ROUTER_MAC, LB_MAC, v4(VIP), v4(VIP), tcp(80, 80, "S"), b"");
    assert_eq!(
        run1(&mut w, &snap, &land.bytes(), 1).0,
        Action::Drop(Counter::DropMartianSource)
    );
    for src in ["::", "::1", "ff02::1", "fd00::10"] {
        assert_eq!(
            run1(&mut w, &snap, &echo6(src.parse().unwrap(), lb_ip6()), 1).0,
            Action::Drop(Counter::DropMartianSource),
            "{src}"
        );
    }
    // ARP from a multicast sender MAC or a broadcast sender address is not answered.
    let mut arp = arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP);
    assert_eq!(run1(&mut w, &snap, &arp, 1).0, Action::Tx(0));
    arp[22] = 0x01; // sender hardware address multicast (frame source still unicast)
    assert_eq!(
        run1(&mut w, &snap, &arp, 1).0,
        Action::Drop(Counter::DropArpInvalid)
    );
    let bcast = arp_frame(1, ROUTER_MAC, Ipv4Addr::BROADCAST, VIP);
    assert_eq!(
        run1(&mut w, &snap, &bcast, 1).0,
        Action::Drop(Counter::DropArpInvalid)
    );
    assert_eq!(w.counters.get(Counter::EchoReplies), 1);
    assert_eq!(w.counters.get(Counter::ArpReplies), 1);
    assert_eq!(w.flows.len(), 0);
}

/// An ARP frame (literal bytes; etherparse has no ARP writer), broadcast.
fn arp_frame(op: u8, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
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
        Action::Drop(Counter::DropTooBig)
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
        Action::Drop(Counter::DropIcmpBadChecksum)
    );
    let mut e6 = echo6(client_ip6(), vip6());
    e6[14 + 40 + 2] ^= 0x10;
    assert_eq!(
        run1(&mut w, &snap, &e6, 1).0,
        Action::Drop(Counter::DropIcmpBadChecksum)
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
        Action::Drop(Counter::DropIpv6Mapped)
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
        Action::Drop(Counter::DropIpv6Mapped)
    );
    assert_eq!(state_of(&w, 46000, 3), Some(TcpState::Established));
}

#[test]
fn tagged_frames_are_dropped_and_counted() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let good = client_to_vip(tcp(47000, 80, "S"), b"").bytes();
    for tpid in [[0x81, 0x00], [0x88, 0xa8], [0x91, 0x00]] {
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&tpid);
        tagged.extend_from_slice(&[0x00, 0x64]); // VLAN 100
        tagged.extend_from_slice(&good[12..]);
        assert_eq!(
            run1(&mut w, &snap, &tagged, 1).0,
            Action::Drop(Counter::DropVlanTagged),
            "{tpid:x?}"
        );
    }
    // Priority-tagged (VLAN 0) and tagged ARP too: vipd answers no ARP/ND it could not tag.
    let arp = arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP);
    let mut tagged_arp = arp[..12].to_vec();
    tagged_arp.extend_from_slice(&[0x81, 0x00, 0x00, 0x00]);
    tagged_arp.extend_from_slice(&arp[12..]);
    assert_eq!(
        run1(&mut w, &snap, &tagged_arp, 1).0,
        Action::Drop(Counter::DropVlanTagged)
    );
    assert_eq!(w.flows.len(), 0);
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
        Action::Drop(Counter::DropArpIgnored)
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
        Action::Drop(Counter::DropArpIgnored)
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
        Action::Drop(Counter::DropNeighbourUnresolved)
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
