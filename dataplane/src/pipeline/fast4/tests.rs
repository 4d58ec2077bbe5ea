//! The fast path's proof of equality: random bursts through two workers, one with the fast
//! path and one without, must give the same actions, output frames, flow hashes, counters,
//! real-server statistics and flow-table contents after every burst.
//!
//! The bursts mix what the fast path takes (established client packets and NAT replies, TCP
//! and UDP, NAT, DR and TUN) with everything it must leave alone: SYN, FIN, RST, bad flag
//! combinations, fragments, bad checksums, TTL 0 / 1, martian sources, frames not for us,
//! truncated frames, packets too big for a smaller MTU, IPv6, unresolved next hops and
//! clients, connections another worker owns (two workers), real servers that go down in a
//! service that drops dead flows, and clock jumps past the timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test on generated, valid fixtures

#[path = "../../../tests/common/mod.rs"]
pub(in crate::pipeline) mod common;
pub(in crate::pipeline) mod harness;

use crate::counters::DropReason;
use crate::io::mem::VecBuf;
use crate::io::PacketBuf;
use crate::pipeline::Action;
use crate::sched::load::Limit;
use crate::sched::SchedulerKind;
use crate::snapshot::{BackendSpec, FwdMode, PersistenceSpec, ServiceSpec, Snapshot};
use crate::wire::checksum;
use common::*;
use harness::*;
// Not `common`'s worker (index, workers): the harness's (workers, fast path, sloppy).
use harness::worker;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

/// The services of the test, by index: 0 VIP:80/tcp NAT (rr), 1 VIP:53/udp NAT (wrr,
/// persistent per /24: its connections and replies are owned by the client network),
/// 2 VIP:8000/tcp NAT RS1+RS2 (maglev; drops dead flows; RS1 takes at most 3 connections),
/// 3 VIP:443/tcp DR, 4 VIP:8443/tcp TUN 4in4, 5 VIP_UNRESOLVED:80/tcp NAT (no MAC),
/// 6 [vip6]:80/tcp NAT66, 7 VIP:5000/udp DR (persistent per client: steered too),
/// 8 VIP:9000/tcp NAT RS1+RS2 (maglev: the fast path opens its connections),
/// 9 VIP:9053/udp NAT RS2 (maglev, likewise), 10 VIP:9100/tcp NAT RS1+RS2 (wlc: the fast
/// path picks in stage 3).
/// `variant` bit 0: MTU 600 instead of 1500; bit 1: RS2 down.
fn snapshot_variant(variant: u8) -> Snapshot {
    let mut port = lb_port();
    if variant & 1 != 0 {
        port.mtu = 600;
    }
    let rs2_up = variant & 2 == 0;
    let svc = |vip: IpAddr, proto, port, scheduler, backends| ServiceSpec {
        vip,
        proto,
        port,
        scheduler,
        backends,
        ..Default::default()
    };
    let with_mode = |b: BackendSpec, mode| BackendSpec { mode, ..b };
    let services = vec![
        svc(
            VIP.into(),
            6,
            80,
            SchedulerKind::Rr,
            vec![nat_rs(0, RS1_IP.into(), 8080)],
        ),
        ServiceSpec {
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 24,
            }),
            ..svc(
                VIP.into(),
                17,
                53,
                SchedulerKind::Wrr,
                vec![nat_rs(1, RS1_IP.into(), 5353)],
            )
        },
        ServiceSpec {
            drop_dead_flows: true,
            ..svc(
                VIP.into(),
                6,
                8000,
                SchedulerKind::Maglev,
                vec![
                    BackendSpec {
                        limit: Limit { upper: 3, lower: 0 },
                        ..nat_rs(2, RS1_IP.into(), 8000)
                    },
                    BackendSpec {
                        up: rs2_up,
                        ..nat_rs(3, RS2_IP.into(), 8000)
                    },
                ],
            )
        },
        svc(
            VIP.into(),
            6,
            443,
            SchedulerKind::Rr,
            vec![with_mode(nat_rs(4, RS1_IP.into(), 443), FwdMode::Dr)],
        ),
        svc(
            VIP.into(),
            6,
            8443,
            SchedulerKind::Maglev,
            vec![with_mode(nat_rs(5, RS1_IP.into(), 8443), FwdMode::Tunnel)],
        ),
        svc(
            VIP_UNRESOLVED.into(),
            6,
            80,
            SchedulerKind::Rr,
            vec![nat_rs(6, RS_UNRESOLVED_IP.into(), 80)],
        ),
        svc(
            vip6().into(),
            6,
            80,
            SchedulerKind::Rr,
            vec![nat_rs(7, rs1_ip6().into(), 8080)],
        ),
        ServiceSpec {
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 32,
            }),
            ..svc(
                VIP.into(),
                17,
                5000,
                SchedulerKind::Maglev,
                vec![with_mode(nat_rs(8, RS2_IP.into(), 5000), FwdMode::Dr)],
            )
        },
        svc(
            VIP.into(),
            6,
            9000,
            SchedulerKind::Maglev,
            vec![
                nat_rs(9, RS1_IP.into(), 9000),
                BackendSpec {
                    up: rs2_up,
                    ..nat_rs(10, RS2_IP.into(), 9000)
                },
            ],
        ),
        svc(
            VIP.into(),
            17,
            9053,
            SchedulerKind::Maglev,
            vec![nat_rs(11, RS2_IP.into(), 9053)],
        ),
        svc(
            VIP.into(),
            6,
            9100,
            SchedulerKind::Wlc,
            vec![
                BackendSpec {
                    weight: 2,
                    ..nat_rs(12, RS1_IP.into(), 9100)
                },
                BackendSpec {
                    up: rs2_up,
                    ..nat_rs(13, RS2_IP.into(), 9100)
                },
            ],
        ),
    ];
    Snapshot::build(
        u64::from(variant) + 1,
        vec![port],
        &services,
        &neighbours(),
        65537,
    )
    .unwrap()
}

/// Where a generated packet goes: (VIP, proto, port) of a service or not.
const TARGETS: &[(u8, u16)] = &[
    (6, 80),
    (17, 53),
    (6, 8000),
    (6, 443),
    (6, 8443),
    (6, 80), // VIP_UNRESOLVED
    (6, 80), // IPv6
    (17, 5000),
    (6, 9999), // a VIP port without a service
    (6, 9000),
    (17, 9053),
    (6, 9100),
];

/// NAT real servers' endpoints (replies come from these): address, port, proto.
fn nat_endpoint(i: u8) -> (IpAddr, u16, u8) {
    match i % 11 {
        0 => (RS1_IP.into(), 8080, 6),
        1 => (RS1_IP.into(), 5353, 17),
        2 => (RS1_IP.into(), 8000, 6),
        3 => (RS2_IP.into(), 8000, 6),
        4 => (RS_UNRESOLVED_IP.into(), 80, 6),
        5 => (rs1_ip6().into(), 8080, 6),
        6 => (RS1_IP.into(), 9000, 6),
        7 => (RS2_IP.into(), 9000, 6),
        8 => (RS2_IP.into(), 9053, 17),
        9 => (RS1_IP.into(), 9100, 6),
        _ => (RS2_IP.into(), 9100, 6),
    }
}

/// Client addresses: off-link ones behind the router, and one on-link without a MAC.
fn client_addr(i: u8, v6: bool) -> IpAddr {
    if v6 {
        return client_ip6().into();
    }
    match i % 8 {
        7 => Ipv4Addr::new(10, 0, 0, 77).into(),
        n => Ipv4Addr::new(192, 0, 2, 50 + n % 2).into(),
    }
}

/// Flags a generated TCP segment carries, the common ones more often.
pub(in crate::pipeline) const FLAGS: &[&str] = &[
    "S", "S", "S", "A", "A", "A", "A", "A", "A", "A", "A", "PA", "PA", "PA", "SA", "FA", "R", "RA",
    "F", "", "SF", "SR", "AP",
];

/// What is done to a generated frame after it is written.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    None,
    BadIpChecksum,
    BadL4Checksum,
    MartianSource,
    /// To an address that is nobody's (no VIP, not the box).
    NotLocalDestination,
    FirstFragment,
    LaterFragment(u16),
    NotOurMac,
    MulticastMac,
    Vlan,
    Truncate(usize),
    NicChecksumGood,
}

#[derive(Clone, Debug)]
struct Spec {
    reply: bool,
    target: u8,
    endpoint: u8,
    client: u8,
    sport: u16,
    flags: u8,
    ttl: u8,
    payload: usize,
    dont_fragment: bool,
    mutation: Mutation,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        40 => Just(Mutation::None),
        1 => Just(Mutation::BadIpChecksum),
        1 => Just(Mutation::BadL4Checksum),
        1 => Just(Mutation::MartianSource),
        1 => Just(Mutation::NotLocalDestination),
        1 => Just(Mutation::FirstFragment),
        1 => (1u16..200).prop_map(Mutation::LaterFragment),
        1 => Just(Mutation::NotOurMac),
        1 => Just(Mutation::MulticastMac),
        1 => Just(Mutation::Vlan),
        1 => (0usize..60).prop_map(Mutation::Truncate),
        3 => Just(Mutation::NicChecksumGood),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::bool::weighted(0.4),
        0..TARGETS.len() as u8,
        any::<u8>(),
        // Few clients most of the time, so connections get past their handshake (the fast
        // path takes only packets that change no state) within a case.
        prop_oneof![4 => 0u8..4, 1 => any::<u8>()],
        0u16..2,
        // Plain ACKs more often than the table's mix, so connections stay established.
        prop_oneof![2 => 3u8..14, 3 => 0..FLAGS.len() as u8],
        prop_oneof![20 => Just(64u8), 1 => Just(2u8), 1 => Just(1u8), 1 => Just(0u8)],
        prop_oneof![20 => 0usize..64, 1 => Just(1200usize), 1 => Just(1460usize)],
        prop::bool::weighted(0.8),
        mutation(),
    )
        .prop_map(
            |(reply, target, endpoint, client, sport, flags, ttl, payload, df, mutation)| Spec {
                reply,
                target,
                endpoint,
                client,
                sport: 40000 + sport,
                flags,
                ttl,
                payload,
                dont_fragment: df,
                mutation,
            },
        )
}

/// Rewrite the IPv4 header's flags and fragment offset, and its checksum.
fn set_fragment(frame: &mut [u8], more: bool, offset8: u16) {
    let ip = &mut frame[14..34];
    let v = (u16::from(ip[6]) << 8 & 0x4000) | if more { 0x2000 } else { 0 } | offset8;
    ip[6..8].copy_from_slice(&v.to_be_bytes());
    fix_ip_checksum(frame);
}

fn fix_ip_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::finish(checksum::sum(&frame[14..14 + ihl]));
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

/// The frame and its NIC checksum verdict.
fn build(s: &Spec) -> (Vec<u8>, bool) {
    let (vip, proto, vport, v6) = {
        let (proto, port) = TARGETS[usize::from(s.target)];
        match s.target {
            5 => (IpAddr::from(VIP_UNRESOLVED), proto, port, false),
            6 => (IpAddr::from(vip6()), proto, port, true),
            _ => (IpAddr::from(VIP), proto, port, false),
        }
    };
    let (src, dst, sport, dport, proto) = if s.reply {
        // Mostly the real server of the target's service, so replies find their flows.
        let endpoint = match (s.endpoint < 200, s.target) {
            (true, 0..=2) => s.target + (s.endpoint & 1) * (s.target / 2),
            (true, 5) => 4,
            (true, 6) => 5,
            (true, 9) => 6 + (s.endpoint & 1),
            (true, 10) => 8,
            (true, 11) => 9 + (s.endpoint & 1),
            _ => s.endpoint,
        };
        let (rs, rport, proto) = nat_endpoint(endpoint);
        let client = client_addr(s.client, rs.is_ipv6());
        (rs, client, rport, s.sport, proto)
    } else {
        (client_addr(s.client, v6), vip, s.sport, vport, proto)
    };
    let l4 = if proto == 6 {
        tcp(sport, dport, FLAGS[usize::from(s.flags)])
    } else {
        udp(sport, dport)
    };
    let mut f = Frame::new(ROUTER_MAC, LB_MAC, src, dst, l4, &vec![0x5a; s.payload]);
    f.ttl = s.ttl;
    f.dont_fragment = s.dont_fragment;
    let v4 = src.is_ipv4();
    match s.mutation {
        Mutation::MartianSource if v4 => f.src = LB_IP.into(),
        Mutation::MartianSource => f.src = lb_ip6().into(),
        Mutation::NotLocalDestination if v4 => f.dst = Ipv4Addr::new(10, 9, 9, 9).into(),
        Mutation::NotLocalDestination => {
            f.dst = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 9).into()
        }
        Mutation::NotOurMac => f.dst_mac = RS2_MAC,
        Mutation::MulticastMac => f.dst_mac = [0x01, 0, 0x5e, 0, 0, 1],
        Mutation::Vlan => f.vlan = Some(7),
        _ => {}
    }
    let mut bytes = f.bytes();
    let ip_at = if matches!(s.mutation, Mutation::Vlan) {
        18
    } else {
        14
    };
    match s.mutation {
        Mutation::BadIpChecksum => bytes[ip_at + 10] ^= 0x40,
        Mutation::BadL4Checksum if v4 => {
            let at = ip_at + 20 + if proto == 6 { 16 } else { 6 };
            bytes[at] ^= 0x01;
        }
        Mutation::FirstFragment if v4 => set_fragment(&mut bytes, true, 0),
        Mutation::LaterFragment(off) if v4 => set_fragment(&mut bytes, off % 2 == 0, off),
        Mutation::Truncate(n) => bytes.truncate(n.min(bytes.len())),
        _ => {}
    }
    (bytes, matches!(s.mutation, Mutation::NicChecksumGood))
}

fn burst() -> impl Strategy<Value = Burst<Spec>> {
    burst_of(spec())
}

fn hits4() -> [u64; 3] {
    [
        super::FAST_HITS.with(|h| h.get()),
        super::FAST_OPENS.with(|o| o.get()),
        super::FAST_OPENS_IN_ORDER.with(|o| o.get()),
    ]
}

/// Cases of the differential test (each up to ten bursts of up to 47 frames).
const CASES: u32 = 1024;

#[test]
fn fast_path_equals_general_path() {
    let snaps: Vec<Snapshot> = (0..4).map(snapshot_variant).collect();
    let tally = differential(CASES, spec(), build, &snaps, hits4);
    println!(
        "differential: {CASES} cases, {} frames, {} on the fast path ({} opening a connection, {} of them picked in stage 3), {} sent",
        tally.frames, tally.fast, tally.opened, tally.opened_in_order, tally.sent
    );
    assert!(
        tally.opened_in_order * 1000 > tally.frames,
        "only {} of {} frames opened a connection picked in stage 3",
        tally.opened_in_order,
        tally.frames
    );
    assert!(
        tally.opened * 200 > tally.frames,
        "only {} of {} frames opened a connection on the fast path",
        tally.opened,
        tally.frames
    );
    tally.assert_fast_share(20);
}

/// Stage 1 alone: whenever the fast classifier takes a frame, it stages exactly what the
/// general one does (compared through `Debug`).
#[test]
fn fast_classify_stages_what_classify_does() {
    use crate::pipeline::classify::Staged;
    use crate::pipeline::fast4::classify::First;
    let snaps: Vec<Snapshot> = (0..4).map(snapshot_variant).collect();
    let taken = stage1_equal(CASES, spec(), build, &snaps, |buf, mac, w, snap| {
        let mut f = super::Staged4::EMPTY;
        match super::classify::classify(buf, mac, w, snap, None, &mut f) {
            // `Fast6` is the burst loop's, never the IPv4 classifier's answer.
            First::Fallback | First::Fast6 => None,
            First::Fast => Some(f.general()),
            First::Steer(owner) => Some(Staged::Steer {
                owner,
                hash: f.hash,
            }),
            First::NotLocal => Some(Staged::Done(Err(DropReason::NotLocal))),
        }
    });
    assert!(taken * 10 > u64::from(CASES), "{taken} frames taken");
}

/// Steered frames as one staged burst on the owner (`process_steered_burst`, the worker's
/// inbox) do exactly what `process_steered` does to them one by one: same actions,
/// frames, counters and flow table. Worker 0 receives each burst; what it steers goes to two
/// copies of worker 1.
#[test]
fn a_steered_burst_equals_steering_frame_by_frame() {
    use crate::pipeline::{process_steered, process_steered_burst};
    let snaps: Vec<Snapshot> = (0..4).map(snapshot_variant).collect();
    let steered_total = std::cell::Cell::new(0u64);
    let strategy = (
        prop::collection::vec(burst(), 1..10),
        prop::bool::weighted(0.2),
    );
    run_cases(CASES / 2, strategy, |(bursts, sloppy)| {
        let mut receiver = worker(2, true, sloppy);
        let owner = |fast| {
            let mut w = worker(2, fast, sloppy);
            w.index = 1;
            w
        };
        let (mut one_by_one, mut burst_owner) = (owner(false), owner(true));
        let mut now = 1_000u64;
        for b in &bursts {
            now += b.step_ms;
            let snap = &snaps[usize::from(b.variant)];
            let frames: Vec<_> = b.frames.iter().map(build).collect();
            let (actions, out, hashes) = run(&mut receiver, snap, &frames, now);
            // The worker loop adopts each snapshot once per iteration, whatever its inbox holds.
            one_by_one.adopt(snap);
            burst_owner.adopt(snap);
            let steered: Vec<(usize, Option<u64>)> = actions
                .iter()
                .zip(&hashes)
                .enumerate()
                .filter(|(_, (a, _))| matches!(a, Action::Steer(1)))
                .map(|(i, (_, h))| (i, *h))
                .collect();
            steered_total.set(steered_total.get() + steered.len() as u64);
            let bufs =
                || -> Vec<VecBuf> { steered.iter().map(|&(i, _)| VecBuf::new(&out[i])).collect() };
            let flow_hashes: Vec<Option<u64>> = steered.iter().map(|&(_, h)| h).collect();
            let mut want_bufs = bufs();
            let want: Vec<Action> = want_bufs
                .iter_mut()
                .zip(&flow_hashes)
                .map(|(buf, h)| process_steered(buf, *h, 0, &mut one_by_one, snap, now))
                .collect();
            let mut got_bufs = bufs();
            let mut got = vec![Action::ToControl; got_bufs.len()];
            let ports = vec![0u16; got_bufs.len()];
            process_steered_burst(
                &mut got_bufs,
                &mut got,
                &ports,
                &flow_hashes,
                &mut burst_owner,
                snap,
                now,
            );
            prop_assert_eq!(&got, &want);
            let data = |v: &[VecBuf]| v.iter().map(|b| b.data().to_vec()).collect::<Vec<_>>();
            prop_assert_eq!(data(&got_bufs), data(&want_bufs));
            prop_assert_eq!(state(&burst_owner, now), state(&one_by_one, now));
        }
        Ok(())
    });
    assert!(
        steered_total.get() > u64::from(CASES),
        "only {} frames steered",
        steered_total.get()
    );
}

/// Established connections of every kind the fast path takes (NAT TCP and UDP both ways, DR
/// TCP and UDP, TUN), opened the general way, then data both ways: the fast worker takes
/// every data packet on the fast path and ends exactly where the general worker does.
#[test]
fn established_flows_take_the_fast_path_in_every_mode() {
    let snap = snapshot_variant(0);
    let client = IpAddr::from(CLIENT_IP);
    let vip = IpAddr::from(VIP);
    let frame = |src: IpAddr, dst: IpAddr, l4, mac| {
        let f = Frame::new(mac, LB_MAC, src, dst, l4, &[0x5a; 20]);
        (f.bytes(), false)
    };
    let to_vip = |sport, dport, flags| {
        let l4 = if flags == "udp" {
            udp(sport, dport)
        } else {
            tcp(sport, dport, flags)
        };
        frame(client, vip, l4, ROUTER_MAC)
    };
    let from_rs = |rs: Ipv4Addr, sport, dport, flags| {
        let l4 = if flags == "udp" {
            udp(sport, dport)
        } else {
            tcp(sport, dport, flags)
        };
        frame(rs.into(), client, l4, RS1_MAC)
    };
    // Handshakes and first replies: the general path (they change state).
    let opening = vec![
        to_vip(41000, 80, "S"),
        from_rs(RS1_IP, 8080, 41000, "SA"),
        to_vip(41000, 80, "A"),
        to_vip(41001, 53, "udp"),
        from_rs(RS1_IP, 5353, 41001, "udp"),
        to_vip(41002, 443, "S"),
        to_vip(41002, 443, "A"),
        to_vip(41003, 8443, "S"),
        to_vip(41003, 8443, "A"),
        to_vip(41004, 5000, "udp"),
    ];
    let data: Vec<_> = (0..8)
        .flat_map(|_| {
            [
                to_vip(41000, 80, "PA"),
                from_rs(RS1_IP, 8080, 41000, "PA"),
                to_vip(41001, 53, "udp"),
                from_rs(RS1_IP, 5353, 41001, "udp"),
                to_vip(41002, 443, "A"),
                to_vip(41003, 8443, "PA"),
                to_vip(41004, 5000, "udp"),
            ]
        })
        .collect();
    established_take_the_fast_path(&snap, &opening, &data, hits4);
}
