//! IPv6 full-NAT through the whole pipeline: both directions of a connection rewritten at
//! both ends (expected bytes written by etherparse, transport checksums from scratch over the
//! new pseudo-header), the local endpoint chosen from the service's IPv6 pool on the worker
//! that owns the connection, pool exhaustion counted without touching established
//! connections, fragments and ICMPv6 errors of full-NAT connections dropped with their
//! counters, and Neighbour Discovery answered for the local address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{
    Icmpv6Type, IpNumber, Ipv6Header, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice,
    UdpHeader,
};
use std::net::{IpAddr, Ipv6Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::flow::key::to_mapped;
use vipd_dataplane::pipeline::{Action, WorkerState};
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, LocalPool, ServiceSpec, Snapshot};

const PORT_MIN: u16 = 40000;

fn local6() -> Ipv6Addr {
    "fd00::100".parse().unwrap()
}

fn rs1() -> IpAddr {
    rs1_ip6().into()
}

/// [vip6]:80/tcp -> [RS1]:8080 and [vip6]:53/udp -> [RS1]:5353 in full-NAT, local pool
/// [fd00::100]:40000..40000+ports-1.
fn fnat6_snapshot(ports: u16) -> Snapshot {
    let pool = LocalPool {
        addrs: vec![to_mapped(local6().into())],
        port_min: PORT_MIN,
        port_max: PORT_MIN + ports - 1,
    };
    let svc = |proto: u8, port: u16, rs_port: u16, id: u32| ServiceSpec {
        vip: vip6().into(),
        proto,
        port,
        backends: vec![BackendSpec {
            mode: FwdMode::Fnat,
            ..nat_rs(id, rs1(), rs_port)
        }],
        local_pool: pool.clone(),
        ..Default::default()
    };
    snapshot_of(&[svc(6, 80, 8080, 1), svc(17, 53, 5353, 2)])
}

fn client_to_vip6(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        l4,
        payload,
    )
}

fn set_ports(l4: &mut L4, s: u16, d: u16) {
    match l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport, .. } => (*sport, *dport) = (s, d),
    }
}

/// The source port of an IPv6 TCP or UDP frame, read by etherparse.
fn src_port(frame: &[u8]) -> u16 {
    match SlicedPacket::from_ethernet(frame).unwrap().transport {
        Some(TransportSlice::Tcp(t)) => t.source_port(),
        Some(TransportSlice::Udp(u)) => u.source_port(),
        other => panic!("not TCP/UDP: {other:?}"),
    }
}

/// Whether the transport checksum of an IPv6 frame verifies (etherparse recomputes it).
fn checksum_ok(frame: &[u8]) -> bool {
    let (ip, rest) = Ipv6Header::from_slice(&frame[14..]).unwrap();
    let rest = &rest[..usize::from(ip.payload_length)];
    match ip.next_header {
        IpNumber::TCP => {
            let (t, body) = TcpHeader::from_slice(rest).unwrap();
            t.checksum == t.calc_checksum_ipv6(&ip, body).unwrap()
        }
        IpNumber::UDP => {
            let (u, body) = UdpHeader::from_slice(rest).unwrap();
            u.checksum == u.calc_checksum_ipv6(&ip, body).unwrap()
        }
        other => panic!("not TCP/UDP: {other:?}"),
    }
}

/// Step 2 as it must look: from the local endpoint to RS1, hop limit one less.
fn to_rs1(mut f: Frame, local_port: u16, rs_port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = RS1_MAC;
    f.src = local6().into();
    f.dst = rs1();
    f.ttl -= 1;
    set_ports(&mut f.l4, local_port, rs_port);
    f
}

fn rs1_to_local(mut l4: L4, rs_port: u16, local_port: u16, payload: &[u8]) -> Frame {
    set_ports(&mut l4, rs_port, local_port);
    Frame::new(RS1_MAC, LB_MAC, rs1(), local6().into(), l4, payload)
}

/// Step 4 as it must look: from the VIP endpoint to the client, through the router.
fn to_client(mut f: Frame, vport: u16, client_port: u16) -> Frame {
    f.src_mac = LB_MAC;
    f.dst_mac = ROUTER_MAC;
    f.src = vip6().into();
    f.dst = client_ip6().into();
    f.ttl -= 1;
    set_ports(&mut f.l4, vport, client_port);
    f
}

/// A SYN from `client_port` through `w`: the local port it was given.
fn open(w: &mut WorkerState, snap: &Snapshot, client_port: u16, now: u64) -> u16 {
    let syn = client_to_vip6(tcp(client_port, 80, "S"), b"");
    let (action, out) = run1(w, snap, &syn.bytes(), now);
    assert_eq!(action, Action::Tx(0), "SYN from {client_port}");
    let local_port = src_port(&out);
    assert_eq!(
        out,
        to_rs1(syn, local_port, 8080).bytes(),
        "SYN from {client_port}"
    );
    assert!(checksum_ok(&out));
    local_port
}

#[test]
fn both_directions_are_rewritten_at_both_ends() {
    let snap = fnat6_snapshot(64);
    let mut w = worker(0, 1);
    for fast_path in [true, false] {
        w.fast_path = fast_path;
        let cport = if fast_path { 5000 } else { 5001 };
        let lport = open(&mut w, &snap, cport, 10);
        assert!((PORT_MIN..PORT_MIN + 64).contains(&lport));
        let synack = rs1_to_local(tcp(0, 0, "SA"), 8080, lport, b"");
        let (a, out) = run1(&mut w, &snap, &synack.bytes(), 11);
        assert_eq!(
            (a, &out),
            (Action::Tx(0), &to_client(synack, 80, cport).bytes())
        );
        assert!(checksum_ok(&out));
        let get = client_to_vip6(tcp(cport, 80, "AP"), b"GET / HTTP/1.0\r\n\r\n");
        let (a, out) = run1(&mut w, &snap, &get.bytes(), 12);
        assert_eq!((a, out), (Action::Tx(0), to_rs1(get, lport, 8080).bytes()));
        let resp = rs1_to_local(tcp(0, 0, "AP"), 8080, lport, b"HTTP/1.0 200 OK\r\n\r\nhi");
        let (a, out) = run1(&mut w, &snap, &resp.bytes(), 13);
        assert_eq!(
            (a, out),
            (Action::Tx(0), to_client(resp, 80, cport).bytes())
        );
    }
    // UDP: the same, its checksum over the new pseudo-header.
    let q = client_to_vip6(udp(6000, 53), b"query");
    let (a, out) = run1(&mut w, &snap, &q.bytes(), 14);
    assert_eq!(a, Action::Tx(0));
    let lport = src_port(&out);
    assert_eq!(out, to_rs1(q, lport, 5353).bytes());
    assert!(checksum_ok(&out));
    let ans = rs1_to_local(udp(0, 0), 5353, lport, b"answer");
    let (a, out) = run1(&mut w, &snap, &ans.bytes(), 15);
    assert_eq!(
        (a, &out),
        (Action::Tx(0), &to_client(ans, 53, 6000).bytes())
    );
    assert!(checksum_ok(&out));

    let c = &w.counters;
    assert_eq!(c.get(Counter::Forwarded), 5);
    assert_eq!(c.get(Counter::NatReplies), 5);
    assert_eq!(c.get(Counter::FlowsCreated), 3);
    // The listing shows both ends: the client's key and the local endpoint's reply key.
    let flows: Vec<_> = w.flows.iter(16).collect();
    assert_eq!(flows.len(), 3);
    for f in flows {
        let reply = f.reply.expect("a full-NAT connection has a reply key");
        assert_eq!(f.key.src_ip(), IpAddr::V6(client_ip6()));
        assert_eq!(reply.dst_ip(), IpAddr::V6(local6()));
        assert_eq!(reply.src_ip(), rs1());
    }
}

#[test]
fn exhaustion_is_counted_and_spares_established_connections() {
    let snap = fnat6_snapshot(4);
    let mut w = worker(0, 1);
    let lports: Vec<u16> = (0..4).map(|i| open(&mut w, &snap, 6000 + i, 10)).collect();
    let mut sorted = lports.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![40000, 40001, 40002, 40003],
        "each local port once"
    );
    for i in 0..10 {
        let syn = client_to_vip6(tcp(7000 + i, 80, "S"), b"");
        let (a, _) = run1(&mut w, &snap, &syn.bytes(), 20);
        assert_eq!(a, Action::Drop(DropReason::FnatPoolExhausted));
    }
    assert_eq!(w.counters.get(DropReason::FnatPoolExhausted), 10);
    for (i, &lport) in lports.iter().enumerate() {
        let cport = 6000 + i as u16;
        let data = client_to_vip6(tcp(cport, 80, "A"), b"x");
        let (a, out) = run1(&mut w, &snap, &data.bytes(), 21);
        assert_eq!((a, out), (Action::Tx(0), to_rs1(data, lport, 8080).bytes()));
        let back = rs1_to_local(tcp(0, 0, "A"), 8080, lport, b"y");
        let (a, out) = run1(&mut w, &snap, &back.bytes(), 22);
        assert_eq!(
            (a, out),
            (Action::Tx(0), to_client(back, 80, cport).bytes())
        );
    }
    // Once a connection has expired its local port is free again.
    let port = open(&mut w, &snap, 8000, 10_000_000);
    assert!(lports.contains(&port));
}

#[test]
fn the_local_port_is_owned_by_the_worker_that_owns_the_connection() {
    let snap = fnat6_snapshot(256);
    let mut workers = [worker(0, 2), worker(1, 2)];
    let client = to_mapped(client_ip6().into());
    let local = to_mapped(local6().into());
    for cport in 9000..9040u16 {
        let owner = workers[0].owner_of(&client, cport);
        let w = &mut workers[usize::from(owner)];
        let lport = open(w, &snap, cport, 10);
        assert_eq!(w.owner_of(&local, lport), owner, "reply to port {lport}");
        let other = &mut workers[usize::from(1 - owner)];
        let synack = rs1_to_local(tcp(0, 0, "SA"), 8080, lport, b"");
        let (a, _) = run1(other, &snap, &synack.bytes(), 11);
        assert_eq!(a, Action::Steer(owner));
    }
}

#[test]
fn without_an_entry_nothing_is_full_natted() {
    let snap = fnat6_snapshot(64);
    let mut w = worker(0, 1);
    let data = client_to_vip6(tcp(5000, 80, "A"), b"x");
    let (a, _) = run1(&mut w, &snap, &data.bytes(), 1);
    assert_eq!(a, Action::Drop(DropReason::FnatNoFlow));
    let back = rs1_to_local(tcp(0, 0, "A"), 8080, 40000, b"y");
    let (a, _) = run1(&mut w, &snap, &back.bytes(), 2);
    assert_eq!(a, Action::Drop(DropReason::NatReplyNoFlow));
}

/// `frame` (Ethernet + IPv6) cut into fragments of `chunk` payload bytes (a multiple of 8).
fn fragments(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let (h, payload) = Ipv6Header::from_slice(&frame[14..]).unwrap();
    let payload = &payload[..usize::from(h.payload_length)];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            // RFC 8200 4.5: offset in the top 13 bits, M in the lowest (by hand, as in
            // pipeline_fragments.rs: etherparse 0.16 places them otherwise).
            let more = (i + 1) * chunk < payload.len();
            let off_flags = ((i * chunk) as u16 & 0xfff8) | u16::from(more);
            let mut fh = h.clone();
            fh.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
            fh.payload_length = (8 + part.len()) as u16;
            let mut out = frame[..14].to_vec();
            fh.write(&mut out).unwrap();
            out.extend_from_slice(&[h.next_header.0, 0]);
            out.extend_from_slice(&off_flags.to_be_bytes());
            out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            out.extend_from_slice(part);
            out
        })
        .collect()
}

#[test]
fn fragments_of_full_nat_connections_are_dropped() {
    let snap = fnat6_snapshot(64);
    let mut w = worker(0, 1);
    // Client side: a fragmented datagram to the VIP, first fragment and the rest.
    let big = client_to_vip6(udp(6100, 53), &[7u8; 600]);
    let frags = fragments(&big.bytes(), 256);
    assert_eq!(frags.len(), 3);
    let (a, _) = run1(&mut w, &snap, &frags[0], 1);
    assert_eq!(a, Action::Drop(DropReason::FnatFragment));
    // The later ones follow no remembered first: unknown fragments (F3), as over IPv4.
    for f in &frags[1..] {
        let (a, _) = run1(&mut w, &snap, f, 1);
        assert_eq!(a, Action::Drop(DropReason::FragmentUnknown));
    }
    // Real-server side: a fragmented reply of an existing connection.
    let q = client_to_vip6(udp(6200, 53), b"q");
    let (a, out) = run1(&mut w, &snap, &q.bytes(), 2);
    assert_eq!(a, Action::Tx(0));
    let lport = src_port(&out);
    let big = rs1_to_local(udp(0, 0), 5353, lport, &[9u8; 600]);
    let (a, _) = run1(&mut w, &snap, &fragments(&big.bytes(), 256)[0], 3);
    assert_eq!(a, Action::Drop(DropReason::FnatFragment));
    assert_eq!(w.counters.get(DropReason::FnatFragment), 2);
}

fn icmp6(macs: ([u8; 6], [u8; 6]), src: Ipv6Addr, dst: Ipv6Addr, quote: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.octets(), dst.octets(), 60)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut out, &quote.bytes()[14..])
        .unwrap();
    out
}

#[test]
fn icmpv6_errors_about_full_nat_connections_are_dropped() {
    let snap = fnat6_snapshot(64);
    let mut w = worker(0, 1);
    let lport = open(&mut w, &snap, 5000, 1);
    let internet: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
    // About step 4 (VIP -> client), from a router on the client's side.
    let sent = to_client(rs1_to_local(tcp(0, 0, "A"), 8080, lport, b"x"), 80, 5000);
    let e = icmp6((ROUTER_MAC, LB_MAC), internet, vip6(), &sent);
    assert_eq!(
        run1(&mut w, &snap, &e, 2).0,
        Action::Drop(DropReason::FnatIcmpError)
    );
    // About step 2 (local -> real server), from the real server.
    let sent = to_rs1(client_to_vip6(tcp(5000, 80, "A"), b"x"), lport, 8080);
    let e = icmp6((RS1_MAC, LB_MAC), rs1_ip6(), local6(), &sent);
    assert_eq!(
        run1(&mut w, &snap, &e, 3).0,
        Action::Drop(DropReason::FnatIcmpError)
    );
    assert_eq!(w.counters.get(DropReason::FnatIcmpError), 2);
}

#[test]
fn the_local_address_is_answered_to_neighbour_solicitation() {
    let snap = fnat6_snapshot(64);
    let mut w = worker(0, 1);
    let t = local6().octets();
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
    let group_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let mut body = t.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&RS1_MAC);
    let mut ns = Vec::new();
    PacketBuilder::ethernet2(RS1_MAC, group_mac)
        .ipv6(rs1_ip6().octets(), group.octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut ns, &body)
        .unwrap();
    let (a, out) = run1(&mut w, &snap, &ns, 1);
    assert_eq!(a, Action::Tx(0));
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("not IPv6");
    };
    let h = ip.header();
    assert_eq!(Ipv6Addr::from(h.source()), local6(), "from the target");
    assert_eq!(Ipv6Addr::from(h.destination()), rs1_ip6());
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6");
    };
    assert!(icmp.is_checksum_valid(h.source(), h.destination()));
    assert_eq!(icmp.header().to_bytes()[0], 136, "neighbour advertisement");
    let payload = icmp.payload();
    assert_eq!(payload[..16], t);
    assert_eq!(payload[16..18], [2, 1], "target link-layer option");
    assert_eq!(payload[18..24], LB_MAC);
    // Without full-NAT the same address is no one's: not answered.
    let (a, _) = run1(&mut w, &snapshot(), &ns, 2);
    assert_eq!(a, Action::Drop(DropReason::NdIgnored));
}

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any client port, protocol and payloads: both directions through the pipeline are
        /// the bytes etherparse writes for the rewritten packets, checksums verifying.
        #[test]
        fn any_connection_is_rewritten_both_ways(
            is_udp in any::<bool>(),
            cport in 1024u16..,
            hops in 2u8..,
            up in proptest::collection::vec(any::<u8>(), 0..200),
            down in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let snap = fnat6_snapshot(64);
            let mut w = worker(0, 1);
            let (l4, vport, rs_port) = if is_udp {
                (udp(cport, 53), 53, 5353)
            } else {
                (tcp(cport, 80, "S"), 80, 8080)
            };
            let mut first = client_to_vip6(l4, &up);
            first.ttl = hops;
            let (a, out) = run1(&mut w, &snap, &first.bytes(), 1);
            prop_assert_eq!(a, Action::Tx(0));
            let lport = src_port(&out);
            prop_assert!((PORT_MIN..PORT_MIN + 64).contains(&lport));
            prop_assert_eq!(&out, &to_rs1(first, lport, rs_port).bytes());
            prop_assert!(checksum_ok(&out));
            let reply_l4 = if is_udp { udp(0, 0) } else { tcp(0, 0, "SA") };
            let mut reply = rs1_to_local(reply_l4, rs_port, lport, &down);
            reply.ttl = hops;
            let (a, out) = run1(&mut w, &snap, &reply.bytes(), 2);
            prop_assert_eq!(a, Action::Tx(0));
            prop_assert_eq!(&out, &to_client(reply, vport, cport).bytes());
            prop_assert!(checksum_ok(&out));
        }
    }
}
