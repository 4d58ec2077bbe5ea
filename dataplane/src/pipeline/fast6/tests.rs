//! The IPv6 fast path's proof of equality, as `fast4/tests.rs` makes IPv4's: random bursts
//! of IPv6 frames through two workers, one with the fast path and one without, must give the
//! same actions, output frames, flow hashes, counters, real-server statistics and flow-table
//! contents after every burst (the workers, the state compared and the run are `fast4`'s).
//!
//! The bursts mix what the fast path takes (established client packets and NAT replies, TCP
//! and UDP, NAT and DR) with what it must leave alone: SYN, FIN, RST, bad flag combinations,
//! fragment and other extension headers, IPv4-mapped addresses, hop limits 0 / 1, martian
//! sources, frames not for us, truncated frames and wrong payload lengths, packets too big
//! for a smaller MTU, UDP without a checksum, TUN real servers, unresolved next hops and
//! clients, connections another worker owns (two workers), real servers that go down in a
//! service that drops dead flows, and clock jumps past the timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test on generated, valid fixtures

use super::super::fast4::tests::common::*;
use super::super::fast4::tests::harness::{
    differential, established_take_the_fast_path, stage1_equal,
};
use super::super::fast4::tests::FLAGS;
use crate::sched::SchedulerKind;
use crate::snapshot::{BackendSpec, FwdMode, PersistenceSpec, ServiceSpec, Snapshot};
use crate::wire::MacAddr;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv6Addr};

fn rs2_ip6() -> Ipv6Addr {
    "fd00::22".parse().unwrap()
}

fn rs_unresolved_ip6() -> Ipv6Addr {
    "fd00::23".parse().unwrap()
}

fn vip6_unresolved() -> Ipv6Addr {
    "fd00:100::2".parse().unwrap()
}

/// The services, by index: 0 [vip6]:80/tcp NAT (rr), 1 [vip6]:53/udp NAT (wrr, persistent
/// per /64: owned by the client network), 2 [vip6]:443/tcp DR, 3 [vip6]:8000/tcp NAT RS1+RS2
/// (maglev; drops dead flows), 4 [vip6]:5000/udp DR (persistent per client: steered too),
/// 5 [vip6]:8443/tcp TUN 6in6, 6 [vip6_unresolved]:80/tcp NAT (no MAC), 7 VIP:80/tcp NAT
/// (IPv4, so that the snapshot has both families).
/// `variant` bit 0: MTU 1280 instead of 1500; bit 1: RS2 down.
fn snapshot_variant(variant: u8) -> Snapshot {
    let mut port = lb_port();
    if variant & 1 != 0 {
        port.mtu = 1280;
    }
    let rs2_up = variant & 2 == 0;
    let vip = IpAddr::from(vip6());
    let svc = |vip: IpAddr, proto, port, scheduler, backends| ServiceSpec {
        vip,
        proto,
        port,
        scheduler,
        backends,
        ..Default::default()
    };
    let with_mode = |b: BackendSpec, mode| BackendSpec { mode, ..b };
    let rs1 = IpAddr::from(rs1_ip6());
    let services = vec![
        svc(vip, 6, 80, SchedulerKind::Rr, vec![nat_rs(0, rs1, 8080)]),
        ServiceSpec {
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 64,
            }),
            ..svc(vip, 17, 53, SchedulerKind::Wrr, vec![nat_rs(1, rs1, 5353)])
        },
        svc(
            vip,
            6,
            443,
            SchedulerKind::Rr,
            vec![with_mode(nat_rs(2, rs1, 443), FwdMode::Dr)],
        ),
        ServiceSpec {
            drop_dead_flows: true,
            ..svc(
                vip,
                6,
                8000,
                SchedulerKind::Maglev,
                vec![
                    nat_rs(3, rs1, 8000),
                    BackendSpec {
                        up: rs2_up,
                        ..nat_rs(4, rs2_ip6().into(), 8000)
                    },
                ],
            )
        },
        ServiceSpec {
            persistence: Some(PersistenceSpec {
                timeout_s: 60,
                prefix_len: 128,
            }),
            ..svc(
                vip,
                17,
                5000,
                SchedulerKind::Maglev,
                vec![with_mode(nat_rs(5, rs2_ip6().into(), 5000), FwdMode::Dr)],
            )
        },
        svc(
            vip,
            6,
            8443,
            SchedulerKind::Maglev,
            vec![with_mode(nat_rs(6, rs1, 8443), FwdMode::Tunnel)],
        ),
        svc(
            vip6_unresolved().into(),
            6,
            80,
            SchedulerKind::Rr,
            vec![nat_rs(7, rs_unresolved_ip6().into(), 80)],
        ),
        svc(
            VIP.into(),
            6,
            80,
            SchedulerKind::Rr,
            vec![nat_rs(8, RS1_IP.into(), 8080)],
        ),
    ];
    let mut neighbours = neighbours();
    neighbours.insert(IpAddr::V6(rs2_ip6()), MacAddr(RS2_MAC));
    Snapshot::build(
        u64::from(variant) + 1,
        vec![port],
        &services,
        &neighbours,
        65537,
    )
    .unwrap()
}

/// Where a generated client packet goes: (VIP, proto, port).
fn target(i: u8) -> (Ipv6Addr, u8, u16) {
    match i % 9 {
        0 => (vip6(), 6, 80),
        1 => (vip6(), 17, 53),
        2 => (vip6(), 6, 443),
        3 => (vip6(), 6, 8000),
        4 => (vip6(), 17, 5000),
        5 => (vip6(), 6, 8443),
        6 => (vip6_unresolved(), 6, 80),
        // A VIP port without a service.
        7 => (vip6(), 6, 9999),
        _ => (vip6(), 17, 53),
    }
}

/// NAT real servers' endpoints (replies come from these) for a target: address, port.
fn nat_endpoint(target: u8, other: bool) -> Option<(Ipv6Addr, u16)> {
    match target % 9 {
        0 => Some((rs1_ip6(), 8080)),
        1 | 8 => Some((rs1_ip6(), 5353)),
        3 if other => Some((rs2_ip6(), 8000)),
        3 => Some((rs1_ip6(), 8000)),
        6 => Some((rs_unresolved_ip6(), 80)),
        _ => None,
    }
}

/// Client addresses: off-link ones behind the router, one on-link without a MAC.
fn client_addr(i: u8) -> Ipv6Addr {
    match i % 8 {
        7 => "fd00::77".parse().unwrap(),
        n => Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            u16::from(n / 4),
            0,
            0,
            0,
            0x50 + u16::from(n % 2),
        ),
    }
}

/// What is done to a generated frame after it is written.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    None,
    MartianSource,
    /// To an address that is nobody's (no VIP, not the box).
    NotLocalDestination,
    MappedSource,
    /// A fragment header: atomic (offset 0, no more), a first fragment, a later one.
    Fragment(u16, bool),
    DestinationOptions,
    PayloadLenLonger,
    UdpZeroChecksum,
    NotOurMac,
    MulticastMac,
    Vlan,
    Truncate(usize),
}

#[derive(Clone, Debug)]
struct Spec {
    reply: bool,
    target: u8,
    other_rs: bool,
    client: u8,
    sport: u16,
    flags: u8,
    hops: u8,
    payload: usize,
    mutation: Mutation,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        40 => Just(Mutation::None),
        1 => Just(Mutation::MartianSource),
        1 => Just(Mutation::NotLocalDestination),
        1 => Just(Mutation::MappedSource),
        2 => (0u16..3, any::<bool>()).prop_map(|(o, m)| Mutation::Fragment(o * 8, m)),
        1 => Just(Mutation::DestinationOptions),
        1 => Just(Mutation::PayloadLenLonger),
        2 => Just(Mutation::UdpZeroChecksum),
        1 => Just(Mutation::NotOurMac),
        1 => Just(Mutation::MulticastMac),
        1 => Just(Mutation::Vlan),
        1 => (0usize..80).prop_map(Mutation::Truncate),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::bool::weighted(0.4),
        any::<u8>(),
        any::<bool>(),
        // Few clients most of the time, so connections get past their handshake.
        prop_oneof![4 => 0u8..3, 1 => any::<u8>()],
        0u16..2,
        prop_oneof![2 => 3u8..14, 3 => 0..FLAGS.len() as u8],
        prop_oneof![20 => Just(64u8), 1 => Just(2u8), 1 => Just(1u8), 1 => Just(0u8)],
        prop_oneof![20 => 0usize..64, 1 => Just(1200usize), 1 => Just(1440usize)],
        mutation(),
    )
        .prop_map(
            |(reply, target, other_rs, client, sport, flags, hops, payload, mutation)| Spec {
                reply,
                target,
                other_rs,
                client,
                sport: 40000 + sport,
                flags,
                hops,
                payload,
                mutation,
            },
        )
}

/// Puts an 8-byte extension header `ext` (its first byte, the next header, filled in) in
/// front of the transport header of an untagged IPv6 frame.
fn insert_extension(bytes: &mut Vec<u8>, kind: u8, mut ext: [u8; 8]) {
    ext[0] = bytes[20];
    bytes[20] = kind;
    let len = u16::from_be_bytes([bytes[18], bytes[19]]) + 8;
    bytes[18..20].copy_from_slice(&len.to_be_bytes());
    bytes.splice(54..54, ext);
}

/// The frame (no NIC checksum verdict: IPv6 has no header checksum).
fn build(s: &Spec) -> (Vec<u8>, bool) {
    let (vip, proto, vport) = target(s.target);
    let client = client_addr(s.client);
    let (src, dst, sport, dport) = match (s.reply, nat_endpoint(s.target, s.other_rs)) {
        (true, Some((rs, rport))) => (rs, client, rport, s.sport),
        _ => (client, vip, s.sport, vport),
    };
    let l4 = match (proto, s.mutation) {
        (6, _) => tcp(sport, dport, FLAGS[usize::from(s.flags)]),
        (_, Mutation::UdpZeroChecksum) => L4::Udp {
            sport,
            dport,
            zero_checksum: true,
        },
        _ => udp(sport, dport),
    };
    let src_mac = if s.reply { RS1_MAC } else { ROUTER_MAC };
    let mut f = Frame::new(
        src_mac,
        LB_MAC,
        src.into(),
        dst.into(),
        l4,
        &vec![0x5a; s.payload],
    );
    f.ttl = s.hops;
    match s.mutation {
        Mutation::MartianSource => f.src = lb_ip6().into(),
        Mutation::NotLocalDestination => {
            f.dst = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 9).into()
        }
        Mutation::MappedSource => f.src = Ipv6Addr::from(0xffff_c000_0232u128).into(),
        Mutation::NotOurMac => f.dst_mac = RS2_MAC,
        Mutation::MulticastMac => f.dst_mac = [0x33, 0x33, 0, 0, 0, 1],
        Mutation::Vlan => f.vlan = Some(7),
        _ => {}
    }
    let mut bytes = f.bytes();
    match s.mutation {
        Mutation::Fragment(offset, more) => {
            let off = (offset | u16::from(more)).to_be_bytes();
            insert_extension(&mut bytes, 44, [0, 0, off[0], off[1], 0, 0, 0x12, 0x34]);
        }
        Mutation::DestinationOptions => {
            insert_extension(&mut bytes, 60, [0, 0, 1, 4, 0, 0, 0, 0]);
        }
        Mutation::PayloadLenLonger => bytes[19] = bytes[19].wrapping_add(1),
        Mutation::Truncate(n) => bytes.truncate(n.min(bytes.len())),
        _ => {}
    }
    (bytes, false)
}

/// The IPv6 fast path's test counter (it opens no connections).
fn hits6() -> [u64; 3] {
    [super::FAST6_HITS.with(|h| h.get()), 0, 0]
}

/// Cases of the differential test (each up to ten bursts of up to 47 frames).
const CASES: u32 = 1024;

#[test]
fn fast_path_equals_general_path_for_ipv6() {
    let snaps: Vec<Snapshot> = (0..4).map(snapshot_variant).collect();
    let tally = differential(CASES, spec(), build, &snaps, hits6);
    println!(
        "differential (IPv6): {CASES} cases, {} frames, {} on the fast path, {} sent",
        tally.frames, tally.fast, tally.sent
    );
    tally.assert_fast_share(20);
}

/// Stage 1 alone: whenever the fast classifier takes a frame, it stages exactly what the
/// general one does (compared through `Debug`).
#[test]
fn fast_classify_stages_what_classify_does_for_ipv6() {
    let snaps: Vec<Snapshot> = (0..4).map(snapshot_variant).collect();
    let taken = stage1_equal(CASES, spec(), build, &snaps, |buf, mac, w, snap| {
        let mut f = super::Staged6::EMPTY;
        super::classify::classify(buf, mac, w, snap, None, &mut f).then(|| f.general())
    });
    assert!(taken * 4 > u64::from(CASES), "{taken} frames taken");
}

/// Established IPv6 connections of every kind the fast path takes (NAT TCP and UDP both
/// ways, DR TCP and UDP), opened the general way, then data both ways: the fast worker takes
/// every data packet on the fast path and ends exactly where the general worker does.
#[test]
fn established_ipv6_flows_take_the_fast_path_in_every_mode() {
    let snap = snapshot_variant(0);
    let client = IpAddr::from(client_ip6());
    let vip = IpAddr::from(vip6());
    let frame = |src: IpAddr, dst: IpAddr, l4, mac| {
        let f = Frame::new(mac, LB_MAC, src, dst, l4, &[0x5a; 20]);
        (f.bytes(), false)
    };
    let l4 = |sport, dport, flags| {
        if flags == "udp" {
            udp(sport, dport)
        } else {
            tcp(sport, dport, flags)
        }
    };
    let to_vip = |sport, dport, flags| frame(client, vip, l4(sport, dport, flags), ROUTER_MAC);
    let from_rs =
        |sport, dport, flags| frame(rs1_ip6().into(), client, l4(sport, dport, flags), RS1_MAC);
    let opening = vec![
        to_vip(41000, 80, "S"),
        from_rs(8080, 41000, "SA"),
        to_vip(41000, 80, "A"),
        to_vip(41001, 53, "udp"),
        from_rs(5353, 41001, "udp"),
        to_vip(41002, 443, "S"),
        to_vip(41002, 443, "A"),
        to_vip(41004, 5000, "udp"),
    ];
    let data: Vec<_> = (0..8)
        .flat_map(|_| {
            [
                to_vip(41000, 80, "PA"),
                from_rs(8080, 41000, "PA"),
                to_vip(41001, 53, "udp"),
                from_rs(5353, 41001, "udp"),
                to_vip(41002, 443, "A"),
                to_vip(41004, 5000, "udp"),
            ]
        })
        .collect();
    established_take_the_fast_path(&snap, &opening, &data, hits6);
}
