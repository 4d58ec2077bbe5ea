//! Crafted frames that used to fool vipd's flow state and forwarding (issue 11), one test per
//! defect: each builds its input with etherparse (tests/common), checks the verdict, the flow
//! table afterwards, and the output bytes against frames etherparse wrote or parsed. The local
//! answers and the link layer are in pipeline_hostile_local.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use std::net::{IpAddr, Ipv4Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::{FlowTable, TcpState, Timeouts};
use vipd_dataplane::pipeline::{Action, WorkerState};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{ServiceSpec, Snapshot};

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
        assert_eq!(action, Action::Drop(DropReason::TcpBadFlags), "{flags:?}");
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
    assert_eq!(action, Action::Drop(DropReason::TcpBadFlags));
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
        Action::Drop(DropReason::TtlExceeded)
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
        Action::Drop(DropReason::TtlExceeded)
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
        Action::Drop(DropReason::TooBig)
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
            Action::Drop(DropReason::TtlZero),
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
        Action::Drop(DropReason::TtlZero)
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
