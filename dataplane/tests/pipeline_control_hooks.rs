//! What the control plane steers the pipeline with: the kernel exception path (frames for a
//! port address that vipd does not answer go to the kernel), real-server health (down real
//! servers leave the scheduler, their flows are dropped or kept by policy, sorry servers) and
//! per-real-server statistics. Frames are written by etherparse (tests/common).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use std::collections::HashMap;
use std::net::IpAddr;
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, Action, WorkerState};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::MacAddr;

fn one(frame: &Frame, w: &mut WorkerState, snap: &Snapshot, now: u64) -> (Action, VecBuf) {
    let mut bufs = [VecBuf::new(&frame.bytes())];
    let mut actions = [Action::Drop(DropReason::EthMalformed)];
    process_burst(&mut bufs, &mut actions, 0, w, snap, now);
    let [buf] = bufs;
    (actions[0], buf)
}

#[test]
fn traffic_for_the_port_address_goes_to_the_kernel_when_the_port_has_one() {
    let with_kernel = snapshot_with_port(|p| p.kernel = true);
    let without = snapshot();
    let cases = [
        (
            "TCP to the port address (ssh to the box)",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                v4(CLIENT_IP),
                v4(LB_IP),
                tcp(40000, 22, "S"),
                b"",
            ),
        ),
        (
            "a real server's SYN-ACK to the box's health check (not a NAT reply)",
            Frame::new(
                RS1_MAC,
                LB_MAC,
                v4(RS1_IP),
                v4(LB_IP),
                tcp(8080, 40001, "SA"),
                b"",
            ),
        ),
        (
            "UDP to the port address (BFD)",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                v4(ROUTER_IP),
                v4(LB_IP),
                udp(49152, 3784),
                b"bfd",
            ),
        ),
        (
            "TCP over IPv6 to the port address",
            Frame::new(
                ROUTER_MAC,
                LB_MAC,
                IpAddr::V6(router_ip6()),
                IpAddr::V6(lb_ip6()),
                tcp(179, 40002, "SA"),
                b"",
            ),
        ),
    ];
    for (what, frame) in &cases {
        let mut w = worker(0, 1);
        let (action, buf) = one(frame, &mut w, &with_kernel, 1);
        assert_eq!(action, Action::ToKernel, "{what}");
        assert_eq!(
            buf.data(),
            &frame.bytes()[..],
            "{what}: handed over unchanged"
        );
        assert_eq!(w.counters.get(Counter::ToKernel), 1, "{what}");
        assert_eq!(w.flows.len(), 0, "{what}: no flow state");
        let mut w = worker(0, 1);
        let (action, _) = one(frame, &mut w, &without, 1);
        assert_eq!(
            action,
            Action::Drop(DropReason::LocalUnhandled),
            "{what}: without a kernel interface"
        );
        assert_eq!(w.counters.get(Counter::NatReplies), 0, "{what}");
    }
}

fn icmp_frame(src: std::net::Ipv4Addr, reply: bool) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC).ipv4(
        src.octets(),
        LB_IP.octets(),
        64,
    );
    let b = if reply {
        b.icmpv4_echo_reply(9, 1)
    } else {
        b.icmpv4_echo_request(7, 1)
    };
    let mut out = Vec::new();
    b.write(&mut out, b"ping").unwrap();
    out
}

#[test]
fn echo_requests_are_still_answered_by_vipd_and_echo_replies_go_to_the_kernel() {
    let snap = snapshot_with_port(|p| p.kernel = true);
    let mut w = worker(0, 1);
    let mut run = |frame: Vec<u8>| {
        let mut bufs = [VecBuf::new(&frame)];
        let mut actions = [Action::Drop(DropReason::EthMalformed)];
        process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1);
        actions[0]
    };
    assert_eq!(
        run(icmp_frame(ROUTER_IP, false)),
        Action::Tx(0),
        "vipd answers pings itself"
    );
    // The box's own ping (from the kernel) is answered by the peer: the reply is the kernel's.
    assert_eq!(run(icmp_frame(RS1_IP, true)), Action::ToKernel);
}

/// VIP:80/tcp with three NAT real servers; `up[i]` and `sorry` as given.
fn health_snapshot(up: [bool; 3], sorry_up: Option<bool>, drop_dead_flows: bool) -> Snapshot {
    let port = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.0.0.10/24".parse().unwrap()),
        gateway_v4: Some(ROUTER_IP),
        mtu: 1500,
        ..Default::default()
    };
    let rs = |i: u32, up| BackendSpec {
        id: i,
        addr: IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 21 + i as u8)),
        port: 8080,
        up,
        ..Default::default()
    };
    let mut backends: Vec<BackendSpec> = (0..3).map(|i| rs(i, up[i as usize])).collect();
    if let Some(up) = sorry_up {
        backends.push(BackendSpec {
            sorry: true,
            ..rs(3, up)
        });
    }
    let services = [ServiceSpec {
        vip: v4(VIP),
        proto: 6,
        port: 80,
        scheduler: SchedulerKind::Maglev,
        backends,
        drop_dead_flows,
        ..Default::default()
    }];
    let mut neighbours = HashMap::new();
    neighbours.insert(v4(ROUTER_IP), MacAddr(ROUTER_MAC));
    for i in 0..4u8 {
        neighbours.insert(
            v4(std::net::Ipv4Addr::new(10, 0, 0, 21 + i)),
            MacAddr([2, 0, 0, 0, 0, 0x21 + i]),
        );
    }
    Snapshot::build(1, vec![port], &services, &neighbours, 65537).unwrap()
}

fn syn(sport: u16) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(VIP),
        tcp(sport, 80, "S"),
        b"",
    )
}

fn ack(sport: u16) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(VIP),
        tcp(sport, 80, "A"),
        b"data",
    )
}

/// The real server (10.0.0.21 + id) a forwarded frame went to.
fn rs_of(buf: &VecBuf) -> u8 {
    let eth = etherparse::SlicedPacket::from_ethernet(buf.data()).unwrap();
    match eth.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => ip.header().destination()[3] - 21,
        other => panic!("not IPv4: {other:?}"),
    }
}

#[test]
fn down_real_servers_take_no_new_flows_and_only_their_flows_move() {
    let all_up = health_snapshot([true; 3], None, true);
    let rs1_down = health_snapshot([true, false, true], None, true);
    let mut w = worker(0, 1);
    // 300 connections with everyone up, then each flow's choice once rs 1 is down.
    let mut before = Vec::new();
    for p in 0..300u16 {
        let (a, buf) = one(&syn(10_000 + p), &mut w, &all_up, 1);
        assert_eq!(a, Action::Tx(0));
        before.push(rs_of(&buf));
    }
    let mut w2 = worker(0, 1);
    let (mut survivors, mut moved) = (0, 0);
    for (p, &b) in before.iter().enumerate() {
        let (_, buf) = one(&syn(10_000 + p as u16), &mut w2, &rs1_down, 1);
        let after = rs_of(&buf);
        assert_ne!(after, 1, "a down real server takes no new flow");
        if b != 1 {
            survivors += 1;
            moved += usize::from(after != b);
        }
    }
    assert!(before.iter().filter(|&&b| b == 1).count() > 50);
    // Maglev's minimal disruption: flows of live real servers (almost) never move.
    assert!(
        moved * 100 <= survivors * 2,
        "{moved} of {survivors} flows of live real servers moved"
    );
}

#[test]
fn flows_pinned_to_a_dead_real_server_are_dropped_or_kept_by_policy() {
    for drop_dead_flows in [true, false] {
        let all_up = health_snapshot([true; 3], None, drop_dead_flows);
        let mut w = worker(0, 1);
        // Find a client port whose flow lands on rs 0.
        let mut sport = 20_000;
        loop {
            let (_, buf) = one(&syn(sport), &mut w, &all_up, 1);
            if rs_of(&buf) == 0 {
                break;
            }
            sport += 1;
        }
        let rs0_down = health_snapshot([false, true, true], None, drop_dead_flows);
        let (action, buf) = one(&ack(sport), &mut w, &rs0_down, 2);
        if drop_dead_flows {
            assert_eq!(action, Action::Drop(DropReason::RealServerDown));
            assert_eq!(w.counters.get(DropReason::RealServerDown), 1);
            assert_eq!(w.backends.get(0).connections(), 0, "its entry is gone");
        } else {
            assert_eq!(action, Action::Tx(0), "kept: the flow continues");
            assert_eq!(rs_of(&buf), 0);
        }
    }
}

#[test]
fn sorry_server_takes_flows_only_when_nobody_else_can() {
    let mut w = worker(0, 1);
    let some_up = health_snapshot([false, true, false], Some(true), true);
    for p in 0..50 {
        let (_, buf) = one(&syn(30_000 + p), &mut w, &some_up, 1);
        assert_eq!(rs_of(&buf), 1);
    }
    let all_down = health_snapshot([false; 3], Some(true), true);
    for p in 0..50 {
        let (_, buf) = one(&syn(31_000 + p), &mut w, &all_down, 1);
        assert_eq!(rs_of(&buf), 3, "the sorry server");
    }
    let nothing = health_snapshot([false; 3], Some(false), true);
    let (action, _) = one(&syn(32_000), &mut w, &nothing, 1);
    assert_eq!(action, Action::Drop(DropReason::NoBackend));
    let no_sorry = health_snapshot([false; 3], None, true);
    assert!(no_sorry.services[0].scheduler.is_none());
}

#[test]
fn per_real_server_statistics() {
    let snap = snapshot(); // VIP:80/tcp -> RS1:8080 (backend id 0), NAT
    let mut w = worker(0, 1);
    let s = syn(40_000);
    let (a, out) = one(&s, &mut w, &snap, 1);
    assert_eq!(a, Action::Tx(0));
    let sent = out.data().len() as u64;
    let reply = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(CLIENT_IP),
        tcp(8080, 40_000, "SA"),
        b"",
    );
    let (a, back) = one(&reply, &mut w, &snap, 2);
    assert_eq!(a, Action::Tx(0));
    let (a, _) = one(&ack(40_000), &mut w, &snap, 3);
    assert_eq!(a, Action::Tx(0));
    let c = w.backends.get(0);
    assert_eq!(
        (c.step1_packets, c.step3_packets),
        (2, 1),
        "steps 1 and 3 seen"
    );
    assert_eq!(c.new_conns, 1);
    assert_eq!(c.in_packets, 2);
    assert_eq!(c.in_bytes, sent + (sent + 4));
    assert_eq!((c.out_packets, c.out_bytes), (1, back.data().len() as u64));
    assert_eq!((c.active, c.inactive), (1, 0), "established after the ACK");
    assert_eq!(w.counters.generation(), snap.generation);
}

#[test]
fn sloppy_tcp_comes_with_the_snapshot() {
    let strict = snapshot();
    let mut sloppy = snapshot();
    sloppy.sloppy_tcp = true;
    sloppy.generation = strict.generation + 1;
    let mut w = worker(0, 1);
    let (a, _) = one(&ack(41_000), &mut w, &strict, 1);
    assert_eq!(a, Action::Tx(0), "a bare ACK is forwarded statelessly");
    assert_eq!(w.flows.len(), 0, "and creates no state");
    let (a, _) = one(&ack(41_001), &mut w, &sloppy, 2);
    assert_eq!(a, Action::Tx(0));
    assert_eq!(
        w.flows.len(),
        1,
        "sloppy_tcp: any segment creates state (a reload turns it on)"
    );
}
