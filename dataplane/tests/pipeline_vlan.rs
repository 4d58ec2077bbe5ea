//! 802.1Q VLANs: a trunk port with VLANs 100 (clients) and 200 (real servers) besides its
//! untagged side. Inputs and expected outputs are written by etherparse (tests/common), so
//! the tags vipd inserts, rewrites and removes, and every checksum, are checked independently.
//! The rows run in order on one worker: later rows see the flows earlier rows created.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, Action};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{PortInfo, ServiceSpec, Snapshot, VlanOf};
use vipd_dataplane::wire::MacAddr;

const V100_LB: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 10);
const V100_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 50);
const V100_CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 0x50];
const V200_RS: Ipv4Addr = Ipv4Addr::new(10, 1, 200, 21);
const V200_RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 0x21];

fn v200_lb6() -> std::net::Ipv6Addr {
    "fd00:200::10".parse().unwrap()
}

fn v200_rs6() -> std::net::Ipv6Addr {
    "fd00:200::21".parse().unwrap()
}

fn vlan(id: u16, net: &str) -> PortInfo {
    PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some(net.parse().unwrap()),
        mtu: 1500,
        vlan: Some(VlanOf { parent: 0, id }),
        ..Default::default()
    }
}

/// The untagged port, VLAN 100 and VLAN 200; VIP:80/tcp -> V200_RS:8080 (NAT).
fn trunk() -> Snapshot {
    let ports = vec![
        lb_port(),
        vlan(100, "10.1.100.10/24"),
        PortInfo {
            ipv6: Some("fd00:200::10/64".parse().unwrap()),
            ..vlan(200, "10.1.200.10/24")
        },
    ];
    let mut n: HashMap<IpAddr, MacAddr> = neighbours();
    n.insert(v4(V100_CLIENT), MacAddr(V100_CLIENT_MAC));
    n.insert(v4(V200_RS), MacAddr(V200_RS_MAC));
    n.insert(IpAddr::V6(v200_rs6()), MacAddr(V200_RS_MAC));
    let services = [
        ServiceSpec {
            vip: v4(VIP),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Maglev,
            backends: vec![nat_rs(1, v4(V200_RS), 8080)],
            ..Default::default()
        },
        ServiceSpec {
            vip: IpAddr::V6(vip6()),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Maglev,
            backends: vec![nat_rs(2, IpAddr::V6(v200_rs6()), 8080)],
            ..Default::default()
        },
    ];
    Snapshot::build(1, ports, &services, &n, 65537).unwrap()
}

fn tagged(mut f: Frame, id: u16) -> Frame {
    f.vlan = Some(id);
    f
}

/// Step 2 towards the real server in VLAN 200.
fn to_rs(mut f: Frame) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = V200_RS_MAC;
    f.dst = v4(V200_RS);
    f.ttl -= 1;
    f.vlan = Some(200);
    if let L4::Tcp { dport, .. } = &mut f.l4 {
        *dport = 8080;
    }
    f
}

/// Step 4: from the VIP, to `mac` in VLAN `vlan` (None: untagged).
fn from_vip(mut f: Frame, mac: [u8; 6], vlan: Option<u16>) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = mac;
    f.src = v4(VIP);
    f.ttl -= 1;
    f.vlan = vlan;
    if let L4::Tcp { sport, .. } = &mut f.l4 {
        *sport = 80;
    }
    f
}

/// A row: what it is, the input frame, the action, the output frame (when sent).
type Row = (&'static str, Vec<u8>, Action, Option<Vec<u8>>);

fn run(rows: &[Row], fast_path: bool) {
    let snap = trunk();
    let mut w = worker(0, 1);
    w.fast_path = fast_path;
    for (i, (what, input, action, output)) in rows.iter().enumerate() {
        let mut bufs = [VecBuf::new(input)];
        let mut actions = [Action::Drop(DropReason::EthMalformed)];
        process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1_000 + i as u64);
        assert_eq!(
            actions[0], *action,
            "row {i} `{what}` (fast path {fast_path}): action"
        );
        if let Some(out) = output {
            assert_eq!(
                bufs[0].data(),
                &out[..],
                "row {i} `{what}` (fast path {fast_path}): bytes"
            );
        }
    }
    assert!(w.counters.get(DropReason::UnknownVlan) >= 1);
}

fn rows() -> Vec<Row> {
    let from_router = client_to_vip(tcp(40000, 80, "S"), b"");
    let rs_reply = |dport| {
        tagged(
            Frame::new(
                V200_RS_MAC,
                LB_MAC,
                v4(V200_RS),
                v4(CLIENT_IP),
                tcp(8080, dport, "SA"),
                b"",
            ),
            200,
        )
    };
    let v100_syn = tagged(
        Frame::new(
            V100_CLIENT_MAC,
            LB_MAC,
            v4(V100_CLIENT),
            v4(VIP),
            tcp(40001, 80, "S"),
            b"",
        ),
        100,
    );
    let v100_reply = tagged(
        Frame::new(
            V200_RS_MAC,
            LB_MAC,
            v4(V200_RS),
            v4(V100_CLIENT),
            tcp(8080, 40001, "SA"),
            b"hi",
        ),
        200,
    );
    let mut arp = arp_frame(1, V100_CLIENT_MAC, V100_CLIENT, V100_LB);
    arp.splice(12..12, [0x81, 0x00, 0x00, 100]);
    let mut arp_reply = vec![];
    arp_reply.extend_from_slice(&V100_CLIENT_MAC);
    arp_reply.extend_from_slice(&LB_MAC);
    arp_reply.extend_from_slice(&[0x81, 0x00, 0x00, 100, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
    arp_reply.extend_from_slice(&LB_MAC);
    arp_reply.extend_from_slice(&V100_LB.octets());
    arp_reply.extend_from_slice(&V100_CLIENT_MAC);
    arp_reply.extend_from_slice(&V100_CLIENT.octets());
    // 802.1p priority 5 in the TCI of a tagged frame written by etherparse.
    let priority5 = |f: Frame| {
        let mut b = f.bytes();
        b[14] |= 5 << 5;
        b
    };
    let prio_syn = tagged(client_to_vip(tcp(40002, 80, "S"), b""), 0);
    let unknown = tagged(from_router.clone(), 300);
    let mut qinq = tagged(from_router.clone(), 100).bytes();
    qinq.splice(16..16, [0x81, 0x00, 0x00, 7]);
    vec![
        (
            "untagged client -> RS in VLAN 200: tag inserted",
            from_router.bytes(),
            Action::Tx(0),
            Some(to_rs(from_router.clone()).bytes()),
        ),
        (
            "RS reply in VLAN 200 -> client via the untagged gateway: tag removed",
            rs_reply(40000).bytes(),
            Action::Tx(0),
            Some(from_vip(rs_reply(40000), ROUTER_MAC, None).bytes()),
        ),
        (
            "client in VLAN 100 -> RS in VLAN 200: tag rewritten",
            v100_syn.bytes(),
            Action::Tx(0),
            Some(to_rs(v100_syn.clone()).bytes()),
        ),
        (
            "RS reply -> on-link client in VLAN 100",
            v100_reply.bytes(),
            Action::Tx(0),
            Some(from_vip(v100_reply.clone(), V100_CLIENT_MAC, Some(100)).bytes()),
        ),
        (
            "ARP request for the VLAN 100 address: answered, tagged 100",
            arp,
            Action::Tx(0),
            Some(arp_reply),
        ),
        (
            "priority-tagged (VLAN 0) client -> RS in VLAN 200: VLAN id set, priority kept",
            priority5(prio_syn.clone()),
            Action::Tx(0),
            Some(priority5(to_rs(prio_syn))),
        ),
        (
            "VLAN 300, which the port does not carry",
            unknown.bytes(),
            Action::Drop(DropReason::UnknownVlan),
            None,
        ),
        (
            "a second tag inside VLAN 100 (QinQ)",
            qinq,
            Action::Drop(DropReason::VlanTagged),
            None,
        ),
    ]
}

#[test]
fn trunk_port_forwards_in_each_vlans_context() {
    run(&rows(), false);
}

#[test]
fn the_fast_path_hands_tagged_frames_on_and_tags_what_it_sends() {
    run(&rows(), true);
}

#[test]
fn ipv6_in_a_vlan_nat66_and_neighbour_discovery() {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice, VlanSlice};
    let snap = trunk();
    let mut w = worker(0, 1);
    let run = |w: &mut vipd_dataplane::pipeline::WorkerState, input: &[u8]| {
        let mut bufs = [VecBuf::new(input)];
        let mut actions = [Action::Drop(DropReason::EthMalformed)];
        process_burst(&mut bufs, &mut actions, 0, w, &snap, 1);
        (actions[0], bufs[0].data().to_vec())
    };
    // NAT66 from an untagged client (via the router) to the real server in VLAN 200.
    let syn = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        IpAddr::V6(client_ip6()),
        IpAddr::V6(vip6()),
        tcp(40100, 80, "S"),
        b"",
    );
    let mut want = syn.clone();
    want.src_mac = LB_MAC;
    want.dst_mac = V200_RS_MAC;
    want.dst = IpAddr::V6(v200_rs6());
    want.ttl -= 1;
    want.vlan = Some(200);
    if let L4::Tcp { dport, .. } = &mut want.l4 {
        *dport = 8080;
    }
    assert_eq!(run(&mut w, &syn.bytes()), (Action::Tx(0), want.bytes()));

    // The real server solicits vipd's VLAN 200 address: the advertisement goes back tagged.
    let target = v200_lb6();
    let group = vipd_dataplane::wire::ndisc::solicited_node(target);
    let mut payload = target.octets().to_vec();
    payload.extend_from_slice(&[1, 1]);
    payload.extend_from_slice(&V200_RS_MAC);
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(
        V200_RS_MAC,
        vipd_dataplane::wire::ndisc::multicast_mac(group).0,
    )
    .single_vlan(etherparse::VlanId::try_new(200).unwrap())
    .ipv6(v200_rs6().octets(), group.octets(), 255)
    .icmpv6_raw(135, 0, [0; 4])
    .write(&mut ns, &payload)
    .unwrap();
    let (action, out) = run(&mut w, &ns);
    assert_eq!(action, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(VlanSlice::SingleVlan(tag)) = p.vlan else {
        panic!("advertisement untagged");
    };
    assert_eq!(tag.vlan_identifier().value(), 200);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6");
    };
    let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
    assert_eq!((src, dst), (target, v200_rs6()));
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6");
    };
    assert!(icmp.is_checksum_valid(src.octets(), dst.octets()));
    assert_eq!(icmp.type_u8(), 136, "a neighbour advertisement");
    assert_eq!(&icmp.payload()[..16], &target.octets());
    assert_eq!(w.counters.get(Counter::NdAdverts), 1);
}

/// The trunk with a kernel interface on VLAN 200 only (`[[ports.vlans]] kernel_interface`).
fn trunk_with_vlan_kernel() -> Snapshot {
    let mut ports = trunk().ports.clone();
    ports[2].kernel = true;
    let mut n: HashMap<IpAddr, MacAddr> = neighbours();
    n.insert(v4(V200_RS), MacAddr(V200_RS_MAC));
    Snapshot::build(1, ports, &[], &n, 65537).unwrap()
}

#[test]
fn traffic_for_a_vlan_address_goes_to_the_vlans_kernel_interface_still_tagged() {
    let snap = trunk_with_vlan_kernel();
    let to = |dst: Ipv4Addr, vlan: Option<u16>| {
        let f = Frame::new(
            V200_RS_MAC,
            LB_MAC,
            v4(V200_RS),
            v4(dst),
            tcp(22, 40000, "SA"),
            b"ssh",
        );
        match vlan {
            Some(id) => tagged(f, id),
            None => f,
        }
        .bytes()
    };
    for fast_path in [false, true] {
        let mut w = worker(0, 1);
        w.fast_path = fast_path;
        for (what, input, want) in [
            // The exception thread finds the VLAN's tap by the tag, and removes it.
            (
                "VLAN 200 address",
                to(Ipv4Addr::new(10, 1, 200, 10), Some(200)),
                Action::ToKernel,
            ),
            (
                "VLAN 100 address: no kernel interface",
                to(V100_LB, Some(100)),
                Action::Drop(DropReason::LocalUnhandled),
            ),
            (
                "the port's own address: no kernel interface",
                to(LB_IP, None),
                Action::Drop(DropReason::LocalUnhandled),
            ),
        ] {
            let mut bufs = [VecBuf::new(&input)];
            let mut actions = [Action::Drop(DropReason::EthMalformed)];
            process_burst(&mut bufs, &mut actions, 0, &mut w, &snap, 1_000);
            assert_eq!(actions[0], want, "{what} (fast path {fast_path})");
            assert_eq!(bufs[0].data(), &input[..], "{what}: frame unchanged");
        }
        assert_eq!(w.counters.get(Counter::ToKernel), 1);
    }
}
