//! Persistence (ipvsadm `-p`, `-M`) and connection thresholds (`-x`, `-y`) through the
//! pipeline, with two workers that receive a client's connections in turn (as RSS spreads
//! them) and hand them to the owner: the client network keeps its real server across
//! connections, workers, reloads and changes to other real servers, lets it go when it is
//! drained, down or expired; a real server over its upper threshold (counted over both
//! workers) takes no new connection until it falls under its lower one. Frames are written
//! by etherparse (tests/common); the real server a connection went to is read back from the
//! forwarded frame.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::{FlowTable, Timeouts};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst_hashed, process_steered, Action, WorkerState};
use vipd_dataplane::sched::load::{Limit, SharedLoad};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PersistenceSpec, ServiceSpec, Snapshot};

/// A real server behind the port's gateway (its MAC is the router's, resolved).
const RS3_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 3);

/// Two workers that balance together (one shared load).
fn two_workers() -> [WorkerState; 2] {
    let load = Arc::new(SharedLoad::new(2, 64));
    [0, 1].map(|i| {
        let mut w = WorkerState::with_shared_load(
            i,
            2,
            FlowTable::with_capacity(1024, Timeouts::default()),
            16,
            Arc::clone(&load),
        );
        // 128 slots: the sweep (16 per burst) passes over all of them in 8 bursts.
        w.set_persistence_capacity(64);
        w
    })
}

fn rs(id: u32, ip: Ipv4Addr, mode: FwdMode) -> BackendSpec {
    BackendSpec {
        id,
        addr: ip.into(),
        port: if mode == FwdMode::Nat { 8080 } else { 80 },
        mode,
        ..Default::default()
    }
}

/// VIP:80/tcp, rr over RS1, RS2 and RS3 (NAT), persistent 60 s per /24; VIP:443/tcp the same
/// in DR mode over RS1 and RS2 (on-link), per client.
fn services(edit: impl Fn(&mut Vec<BackendSpec>)) -> Vec<ServiceSpec> {
    let mut nat = vec![
        rs(0, RS1_IP, FwdMode::Nat),
        rs(1, RS2_IP, FwdMode::Nat),
        rs(2, RS3_IP, FwdMode::Nat),
    ];
    edit(&mut nat);
    vec![
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: nat,
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 24,
            }),
            ..Default::default()
        },
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 443,
            scheduler: SchedulerKind::Rr,
            backends: vec![rs(10, RS1_IP, FwdMode::Dr), rs(11, RS2_IP, FwdMode::Dr)],
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 32,
            }),
            ..Default::default()
        },
    ]
}

fn build(generation: u64, services: &[ServiceSpec]) -> Snapshot {
    Snapshot::build(generation, vec![lb_port()], services, &neighbours(), 65537).unwrap()
}

/// What happened to one frame: its action at the end (after the owner, if steered), the
/// worker that handled it, and the frame as sent.
struct Sent {
    action: Action,
    by: usize,
    steered: bool,
    frame: Vec<u8>,
}

/// `frame` received by worker `rx`; steered on to its owner when `rx` does not own it.
fn send(w: &mut [WorkerState; 2], snap: &Snapshot, frame: &Frame, rx: usize, now: u64) -> Sent {
    let mut bufs = [VecBuf::new(&frame.bytes())];
    let mut actions = [Action::ToControl];
    let mut hashes = [None];
    process_burst_hashed(
        &mut bufs,
        &mut actions,
        &mut hashes,
        0,
        &mut w[rx],
        snap,
        now,
    );
    let (action, by, steered) = match actions[0] {
        Action::Steer(owner) => {
            let owner = usize::from(owner);
            assert_ne!(owner, rx);
            let a = process_steered(&mut bufs[0], hashes[0], 0, &mut w[owner], snap, now);
            (a, owner, true)
        }
        a => (a, rx, false),
    };
    Sent {
        action,
        by,
        steered,
        frame: bufs[0].data().to_vec(),
    }
}

/// The destination address of a forwarded frame (NAT: the real server; DR: the VIP, so the
/// destination MAC tells the real server).
fn dst_ip(frame: &[u8]) -> IpAddr {
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    match p.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => ip.header().destination_addr().into(),
        _ => panic!("not IPv4"),
    }
}

fn client(ip: Ipv4Addr, sport: u16, dport: u16, flags: &'static str) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        ip.into(),
        VIP.into(),
        tcp(sport, dport, flags),
        b"",
    )
}

/// A SYN from `ip:sport` to VIP:80, received by the worker the port's parity names: the real
/// server it was sent to.
fn connect(
    w: &mut [WorkerState; 2],
    snap: &Snapshot,
    ip: Ipv4Addr,
    sport: u16,
    now: u64,
) -> IpAddr {
    let s = send(
        w,
        snap,
        &client(ip, sport, 80, "S"),
        usize::from(sport % 2),
        now,
    );
    assert_eq!(s.action, Action::Tx(0), "{ip}:{sport}");
    dst_ip(&s.frame)
}

fn counter(w: &[WorkerState; 2], c: Counter) -> u64 {
    w.iter().map(|w| w.counters.get(c)).sum()
}

#[test]
fn a_client_network_keeps_its_real_server_across_connections_and_workers() {
    let snap = build(1, &services(|_| {}));
    let mut w = two_workers();
    let c1 = Ipv4Addr::new(192, 0, 2, 50);
    let first = connect(&mut w, &snap, c1, 40000, 1_000);
    let mut owners = std::collections::HashSet::new();
    let mut steered = 0;
    for sport in 40001..40101u16 {
        let s = send(
            &mut w,
            &snap,
            &client(c1, sport, 80, "S"),
            usize::from(sport % 2),
            1_000,
        );
        assert_eq!(s.action, Action::Tx(0));
        assert_eq!(dst_ip(&s.frame), first, "port {sport}");
        owners.insert(s.by);
        steered += u32::from(s.steered);
    }
    assert_eq!(owners.len(), 1, "one worker owns the client network");
    assert_eq!(
        steered, 50,
        "half arrived at the other worker and were steered"
    );
    // Another client of the same /24 joins it; rr alone would have spread these 100 over 3.
    assert_eq!(
        connect(&mut w, &snap, Ipv4Addr::new(192, 0, 2, 77), 5000, 1_000),
        first
    );
    assert_eq!(counter(&w, Counter::PersistenceHits), 101);
    let owner = *owners.iter().next().unwrap();
    assert_eq!(w[owner].persistence.len(), 1);
    assert_eq!(
        w[1 - owner].persistence.len(),
        0,
        "the other worker holds no entry"
    );
    // The real server's replies meet the connection on its owner, whichever worker gets them.
    let synack = Frame::new(
        RS1_MAC,
        LB_MAC,
        first,
        c1.into(),
        tcp(8080, 40007, "SA"),
        b"",
    );
    let s = send(&mut w, &snap, &synack, 1 - owner, 1_001);
    assert_eq!((s.action, s.by, s.steered), (Action::Tx(0), owner, true));
    assert_eq!(
        counter(&w, Counter::NatRepliesStateless),
        0,
        "replied from the flow entry"
    );
    // Ten other networks: spread over several real servers (rr), each kept.
    let mut seen = std::collections::HashSet::new();
    for net in 0..10u8 {
        let ip = Ipv4Addr::new(198, 51, net, 9);
        let rs = connect(&mut w, &snap, ip, 1000, 1_002);
        assert_eq!(connect(&mut w, &snap, ip, 1001, 1_003), rs);
        seen.insert(rs);
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // Per-real-server entry counts (ipvsadm's PersistConn), summed over workers.
    let entries: u64 = (0..3)
        .map(|slot| {
            w.iter()
                .map(|w| w.backends.get(slot).persistent)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(entries, 11);
}

#[test]
fn reloads_and_other_real_servers_changing_keep_it_drained_down_and_expired_let_go() {
    let snap = build(1, &services(|_| {}));
    let mut w = two_workers();
    let c = Ipv4Addr::new(192, 0, 2, 50);
    let first = connect(&mut w, &snap, c, 40000, 1_000);
    let slot_of = |ip: IpAddr| {
        [RS1_IP, RS2_IP, RS3_IP]
            .iter()
            .position(|r| IpAddr::from(*r) == ip)
            .unwrap() as u32
    };
    let mine = slot_of(first);
    // A reload that adds a real server and reweights the others (ids kept): still its own.
    let snap = build(
        2,
        &services(|b| {
            b.push(rs(3, Ipv4Addr::new(10, 9, 0, 4), FwdMode::Nat));
            b.iter_mut()
                .filter(|x| x.id != mine)
                .for_each(|x| x.weight = 5);
        }),
    );
    for sport in 41000..41010u16 {
        assert_eq!(
            connect(&mut w, &snap, c, sport, 2_000),
            first,
            "after the reload"
        );
    }
    // Another real server down: nothing changes for this client.
    let other = (mine + 1) % 3;
    let snap = build(
        3,
        &services(|b| {
            b.iter_mut()
                .filter(|x| x.id == other)
                .for_each(|x| x.up = false)
        }),
    );
    assert_eq!(connect(&mut w, &snap, c, 42000, 3_000), first);
    // Its own drained: the next connection goes elsewhere and the entry follows it.
    let snap = build(
        4,
        &services(|b| {
            b.iter_mut()
                .filter(|x| x.id == mine)
                .for_each(|x| x.weight = 0)
        }),
    );
    let moved = connect(&mut w, &snap, c, 43000, 4_000);
    assert_ne!(moved, first);
    assert_eq!(counter(&w, Counter::PersistenceMoved), 1);
    for sport in 43001..43010u16 {
        assert_eq!(connect(&mut w, &snap, c, sport, 4_000), moved);
    }
    // That one down (health): moved again.
    let gone = slot_of(moved);
    let snap = build(
        5,
        &services(|b| {
            b.iter_mut()
                .filter(|x| x.id == mine)
                .for_each(|x| x.weight = 0);
            b.iter_mut()
                .filter(|x| x.id == gone)
                .for_each(|x| x.up = false);
        }),
    );
    let third = connect(&mut w, &snap, c, 44000, 5_000);
    assert!(third != first && third != moved);
    assert_eq!(counter(&w, Counter::PersistenceMoved), 2);
    // Removed from the configuration: its entries are swept (the slot can be reused once
    // nothing names it).
    let snap = build(6, &services(|b| b.retain(|x| x.id != slot_of(third))));
    for t in 0..64 {
        send(&mut w, &snap, &client(c, 1, 1, "S"), 0, 6_000 + t);
        send(&mut w, &snap, &client(c, 1, 1, "S"), 1, 6_000 + t);
    }
    let named: u64 = w
        .iter()
        .map(|w| w.backends.get(slot_of(third)).persistent)
        .sum();
    assert_eq!(named, 0, "no entry names the removed real server");
    // 60 s without a new connection: the entry expires, the next one is scheduled afresh.
    let snap = build(7, &services(|_| {}));
    let before = counter(&w, Counter::PersistenceHits);
    let fresh = connect(&mut w, &snap, c, 45000, 6_100);
    let again = connect(&mut w, &snap, c, 45001, 6_100 + 59_999);
    assert_eq!(again, fresh, "refreshed by the previous connection");
    let hits = counter(&w, Counter::PersistenceHits) - before;
    let _ = connect(&mut w, &snap, c, 45002, 6_100 + 59_999 + 60_000);
    assert_eq!(
        counter(&w, Counter::PersistenceHits) - before,
        hits,
        "an expired entry decides nothing"
    );
}

#[test]
fn dr_persistent_services_are_steered_to_the_client_owner_too() {
    let snap = build(1, &services(|_| {}));
    let mut w = two_workers();
    let c = Ipv4Addr::new(203, 0, 113, 8);
    let mut macs = std::collections::HashSet::new();
    let mut by = std::collections::HashSet::new();
    for sport in 2000..2040u16 {
        let s = send(
            &mut w,
            &snap,
            &client(c, sport, 443, "S"),
            usize::from(sport % 2),
            1_000,
        );
        assert_eq!(s.action, Action::Tx(0));
        macs.insert(s.frame[..6].to_vec());
        by.insert(s.by);
    }
    assert_eq!(macs.len(), 1, "one real server (by its MAC)");
    assert_eq!(by.len(), 1, "one worker");
    assert!(counter(&w, Counter::Steered) >= 19);
}

/// RS1 with `limit`, RS2 without, rr, not persistent.
fn threshold_services(limit: Limit) -> Vec<ServiceSpec> {
    vec![ServiceSpec {
        vip: VIP.into(),
        proto: 6,
        port: 80,
        scheduler: SchedulerKind::Rr,
        backends: vec![
            BackendSpec {
                limit,
                ..rs(0, RS1_IP, FwdMode::Nat)
            },
            rs(1, RS2_IP, FwdMode::Nat),
        ],
        ..Default::default()
    }]
}

#[test]
fn a_real_server_over_its_upper_threshold_takes_nothing_until_under_its_lower_one() {
    let snap = build(1, &threshold_services(Limit { upper: 4, lower: 2 }));
    let mut w = two_workers();
    let mut to_rs1 = Vec::new();
    let mut sport = 1000u16;
    // Connections from many clients, received by both workers: RS1 takes 4 (counted over
    // both workers' flow tables), then none.
    for i in 0..40u8 {
        let ip = Ipv4Addr::new(192, 0, 2, i + 1);
        sport += 1;
        if connect(&mut w, &snap, ip, sport, 1_000) == IpAddr::from(RS1_IP) {
            to_rs1.push((ip, sport));
        }
    }
    assert_eq!(to_rs1.len(), 4, "{to_rs1:?}");
    let held: Vec<usize> = w.iter().map(|w| w.backends.conns(0).1 as usize).collect();
    assert!(
        held.iter().all(|&n| n > 0),
        "both workers hold some: {held:?}"
    );
    // RS1 counted over the box: 4 >= 4, overloaded. Close two of its connections (RST, then
    // expiry): 2 left is not under the lower threshold 2.
    let close = |w: &mut [WorkerState; 2], (ip, port): (Ipv4Addr, u16), now| {
        let s = send(
            w,
            &snap,
            &client(ip, port, 80, "R"),
            usize::from(port % 2),
            now,
        );
        assert_eq!(s.action, Action::Tx(0));
    };
    close(&mut w, to_rs1[0], 2_000);
    close(&mut w, to_rs1[1], 2_000);
    let later = 2_000 + u64::from(Timeouts::default().tcp_close) * 1000 + 1;
    w.iter_mut().for_each(|w| {
        w.flows.expire(later, 1 << 20);
    });
    let rs1_conns = |w: &[WorkerState; 2]| {
        w.iter()
            .map(|w| w.backends.get(0).connections())
            .sum::<u64>()
    };
    assert_eq!(rs1_conns(&w), 2);
    for i in 0..10u8 {
        assert_eq!(
            connect(
                &mut w,
                &snap,
                Ipv4Addr::new(198, 51, 100, i + 1),
                3000 + u16::from(i),
                later
            ),
            IpAddr::from(RS2_IP),
            "in the band between the thresholds: still overloaded"
        );
    }
    close(&mut w, to_rs1[2], later);
    let later2 = later + u64::from(Timeouts::default().tcp_close) * 1000 + 1;
    w.iter_mut().for_each(|w| {
        w.flows.expire(later2, 1 << 20);
    });
    assert_eq!(rs1_conns(&w), 1);
    let mut back = 0;
    for i in 0..10u8 {
        if connect(
            &mut w,
            &snap,
            Ipv4Addr::new(198, 51, 101, i + 1),
            4000 + u16::from(i),
            later2,
        ) == IpAddr::from(RS1_IP)
        {
            back += 1;
        }
    }
    // 1 < 2: available again, until it reaches 4 again (3 more).
    assert_eq!(back, 3);
}

#[test]
fn every_real_server_over_its_threshold_drops_with_its_own_counter() {
    let limit = Limit { upper: 1, lower: 0 };
    let mut svc = threshold_services(limit);
    svc[0].backends[1].limit = limit;
    let snap = build(1, &svc);
    let mut w = two_workers();
    assert_eq!(
        connect(&mut w, &snap, Ipv4Addr::new(192, 0, 2, 1), 1001, 1_000),
        IpAddr::from(RS1_IP)
    );
    assert_eq!(
        connect(&mut w, &snap, Ipv4Addr::new(192, 0, 2, 2), 1002, 1_000),
        IpAddr::from(RS2_IP)
    );
    let s = send(
        &mut w,
        &snap,
        &client(Ipv4Addr::new(192, 0, 2, 3), 1003, 80, "S"),
        1,
        1_000,
    );
    assert_eq!(s.action, Action::Drop(DropReason::RealServersOverloaded));
    // Established connections go on: a packet of the first one is still forwarded.
    let s = send(
        &mut w,
        &snap,
        &client(Ipv4Addr::new(192, 0, 2, 1), 1001, 80, "A"),
        1,
        1_001,
    );
    assert_eq!(s.action, Action::Tx(0));
}

#[test]
fn ipv6_client_networks_by_prefix_length() {
    use std::net::Ipv6Addr;
    // [vip6]:80/tcp over RS1 (on-link, resolved) and an off-link real server (via the
    // router), rr, persistent per /64.
    let far: Ipv6Addr = "fd00:9::3".parse().unwrap();
    let services = vec![ServiceSpec {
        vip: vip6().into(),
        proto: 6,
        port: 80,
        scheduler: SchedulerKind::Rr,
        backends: vec![
            BackendSpec {
                id: 0,
                addr: rs1_ip6().into(),
                port: 8080,
                ..Default::default()
            },
            BackendSpec {
                id: 1,
                addr: far.into(),
                port: 8080,
                ..Default::default()
            },
        ],
        persistence: Some(PersistenceSpec {
            timeout_s: 60,
            prefix_len: 64,
        }),
        ..Default::default()
    }];
    let snap = build(1, &services);
    let mut w = two_workers();
    let dst = |frame: &[u8]| {
        let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        match p.net {
            Some(etherparse::NetSlice::Ipv6(ip)) => IpAddr::from(ip.header().destination_addr()),
            _ => panic!("not IPv6"),
        }
    };
    let syn = |client: Ipv6Addr, sport: u16| {
        Frame::new(
            ROUTER_MAC,
            LB_MAC,
            client.into(),
            vip6().into(),
            tcp(sport, 80, "S"),
            b"",
        )
    };
    let mut per_net = Vec::new();
    for net in 0..6u16 {
        let mut seen = std::collections::HashSet::new();
        for host in 1..6u16 {
            let client = Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 0, host);
            for sport in [1000 + host, 2000 + host] {
                let s = send(
                    &mut w,
                    &snap,
                    &syn(client, sport),
                    usize::from(sport % 2),
                    1_000,
                );
                assert_eq!(s.action, Action::Tx(0), "{client}:{sport}");
                seen.insert(dst(&s.frame));
            }
        }
        assert_eq!(seen.len(), 1, "one /64, one real server: {seen:?}");
        per_net.extend(seen);
    }
    let distinct: std::collections::HashSet<_> = per_net.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "rr over the networks reaches both: {per_net:?}"
    );
    assert_eq!(w.iter().map(|w| w.persistence.len()).sum::<usize>(), 6);
}

#[test]
fn sh_keeps_a_client_on_its_real_server_without_state_too() {
    // A connection that outlived a restart or moved between boxes arrives mid-stream, with
    // no flow entry: an sh service sends it where the client's new connections go (its client
    // table), not by the 5-tuple's Maglev entry.
    let services = vec![ServiceSpec {
        vip: VIP.into(),
        proto: 6,
        port: 80,
        scheduler: SchedulerKind::Sh,
        backends: vec![
            rs(0, RS1_IP, FwdMode::Nat),
            rs(1, RS2_IP, FwdMode::Nat),
            rs(2, RS3_IP, FwdMode::Nat),
        ],
        ..Default::default()
    }];
    let snap = build(1, &services);
    let mut w = two_workers();
    let mut seen = std::collections::HashSet::new();
    for i in 0..30u8 {
        let c = Ipv4Addr::new(192, 0, 2, i + 1);
        let new = connect(&mut w, &snap, c, 1000 + u16::from(i), 1_000);
        seen.insert(new);
        for sport in [2000u16, 3001, 4002] {
            let s = send(
                &mut w,
                &snap,
                &client(c, sport, 80, "A"),
                usize::from(sport % 2),
                1_000,
            );
            assert_eq!(s.action, Action::Tx(0));
            assert_eq!(dst_ip(&s.frame), new, "{c}:{sport} mid-stream");
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "30 clients reach every real server: {seen:?}"
    );
    assert_eq!(counter(&w, Counter::TcpNoFlowStateless), 90);
}
