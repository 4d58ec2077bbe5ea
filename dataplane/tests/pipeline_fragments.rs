//! IP fragments: the first fragment is decided by its ports like any packet, the later ones
//! follow it (no reassembly). A datagram is written whole by etherparse (checksums included),
//! cut into fragments here, sent through vipd, and the outputs are put back together and
//! compared with the datagram etherparse writes for the real server: one rewrite of the
//! first fragment's UDP checksum must stay right for the whole datagram.
//! IPv6 extension headers other than a lone fragment header are dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::{IpFragOffset, IpNumber, Ipv4Header, Ipv6Header};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::pipeline::Action;

/// Cut the IPv4 packet of `frame` into fragments carrying at most `chunk` payload bytes
/// (a multiple of 8), identification `ident`. Returns whole frames.
fn fragment_v4(frame: &[u8], chunk: usize, ident: u16) -> Vec<Vec<u8>> {
    let (h, payload) = Ipv4Header::from_slice(&frame[14..]).unwrap();
    let payload = &payload[..usize::from(h.total_len) - h.header_len()];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let mut fh = h.clone();
            fh.identification = ident;
            fh.dont_fragment = false;
            fh.more_fragments = (i + 1) * chunk < payload.len();
            fh.fragment_offset = IpFragOffset::try_new((i * chunk / 8) as u16).unwrap();
            fh.total_len = (fh.header_len() + part.len()) as u16;
            fh.header_checksum = fh.calc_header_checksum();
            let mut out = frame[..14].to_vec();
            fh.write(&mut out).unwrap();
            out.extend_from_slice(part);
            out
        })
        .collect()
}

/// The same for IPv6: a Fragment header after the fixed header.
fn fragment_v6(frame: &[u8], chunk: usize, ident: u32) -> Vec<Vec<u8>> {
    let (h, payload) = Ipv6Header::from_slice(&frame[14..]).unwrap();
    let payload = &payload[..usize::from(h.payload_length)];
    payload
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            // Written by hand: etherparse 0.16's Ipv6FragmentHeader puts the M flag in bit 7
            // of the fourth byte and the offset's low bits below it, where RFC 8200 4.5 (and
            // Linux's `frag_hdr`: IP6_OFFSET 0xfff8, IP6_MF 0x0001) put the offset in the top
            // 13 bits of the 16-bit field and M in its lowest bit.
            let more = (i + 1) * chunk < payload.len();
            let off_flags = ((i * chunk) as u16 & 0xfff8) | u16::from(more);
            let mut fragh = vec![h.next_header.0, 0];
            fragh.extend_from_slice(&off_flags.to_be_bytes());
            fragh.extend_from_slice(&ident.to_be_bytes());
            let mut fh = h.clone();
            fh.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
            fh.payload_length = (8 + part.len()) as u16;
            let mut out = frame[..14].to_vec();
            fh.write(&mut out).unwrap();
            out.extend_from_slice(&fragh);
            out.extend_from_slice(part);
            out
        })
        .collect()
}

/// Reassemble IPv4 fragment frames (in offset order): checks every header with etherparse,
/// returns (first header, payload).
fn reassemble_v4(frames: &[Vec<u8>]) -> (Ipv4Header, Vec<u8>) {
    let mut payload = Vec::new();
    let mut first = None;
    for f in frames {
        let (h, rest) = Ipv4Header::from_slice(&f[14..]).unwrap();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "fragment header checksum"
        );
        assert_eq!(usize::from(h.fragment_offset.byte_offset()), payload.len());
        payload.extend_from_slice(&rest[..usize::from(h.total_len) - h.header_len()]);
        first.get_or_insert(h);
    }
    (first.unwrap(), payload)
}

fn big_udp(sport: u16, dport: u16) -> Frame {
    let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(VIP),
        udp(sport, dport),
        &body,
    )
}

#[test]
fn nat_udp_fragments_follow_the_first_and_reassemble_right() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let datagram = big_udp(5000, 53);
    let frags = fragment_v4(&datagram.bytes(), 1480, 0x7777);
    assert_eq!(frags.len(), 3);
    let mut outs = Vec::new();
    for f in &frags {
        let (action, out) = run1(&mut w, &snap, f, 1);
        assert_eq!(action, Action::Tx(0));
        assert_eq!(&out[..6], &RS1_MAC);
        outs.push(out);
    }
    let (h, payload) = reassemble_v4(&outs);
    assert_eq!(h.destination, RS1_IP.octets());
    assert_eq!(h.time_to_live, 63);
    // The datagram etherparse writes for the real server (destination, port, checksum).
    let mut want = datagram.clone();
    want.dst = v4(RS1_IP);
    if let L4::Udp { dport, .. } = &mut want.l4 {
        *dport = 5353;
    }
    assert_eq!(payload, want.bytes()[14 + 20..], "reassembled UDP datagram");
    assert_eq!(w.counters.get(Counter::FragmentsForwarded), 3);
    assert_eq!(w.flows.len(), 1, "the first fragment made the flow's entry");
    // The flow's unfragmented datagrams go to the same real server as its fragments.
    let small = big_udp(5000, 53);
    let small = Frame {
        payload: b"small".to_vec(),
        ..small
    };
    let (_, out) = run1(&mut w, &snap, &small.bytes(), 2);
    assert_eq!(&out[..6], &RS1_MAC);
}

#[test]
fn nat_reply_fragments_are_unnated() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let body: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let reply = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(CLIENT_IP),
        udp(5353, 5000),
        &body,
    );
    let frags = fragment_v4(&reply.bytes(), 1024, 0x0101);
    let outs: Vec<_> = frags
        .iter()
        .map(|f| {
            let (action, out) = run1(&mut w, &snap, f, 1);
            assert_eq!(action, Action::Tx(0));
            assert_eq!(&out[..6], &ROUTER_MAC);
            out
        })
        .collect();
    let (h, payload) = reassemble_v4(&outs);
    assert_eq!(h.source, VIP.octets());
    let mut want = reply.clone();
    want.src = v4(VIP);
    if let L4::Udp { sport, .. } = &mut want.l4 {
        *sport = 53;
    }
    assert_eq!(payload, want.bytes()[14 + 20..]);
    assert_eq!(w.counters.get(Counter::NatReplies), 2);
}

#[test]
fn fragments_out_of_order_tiny_or_overlapping_are_dropped() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let frags = fragment_v4(&big_udp(5001, 53).bytes(), 1480, 0x0202);
    // The last fragment before the first: nothing to follow yet.
    assert_eq!(
        run1(&mut w, &snap, &frags[2], 1).0,
        Action::Drop(DropReason::FragmentUnknown)
    );
    assert_eq!(run1(&mut w, &snap, &frags[0], 1).0, Action::Tx(0));
    assert_eq!(run1(&mut w, &snap, &frags[1], 1).0, Action::Tx(0));
    // A first fragment too short for the TCP header (RFC 1858 tiny fragment).
    let tcp_seg = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(VIP),
        tcp(40000, 80, "S"),
        &[0u8; 64],
    );
    let tiny = fragment_v4(&tcp_seg.bytes(), 8, 0x0303);
    assert_eq!(
        run1(&mut w, &snap, &tiny[0], 1).0,
        Action::Drop(DropReason::FragmentInvalid)
    );
    // A TCP fragment at offset 8 can only rewrite the first fragment's flags.
    assert_eq!(
        run1(&mut w, &snap, &tiny[1], 1).0,
        Action::Drop(DropReason::FragmentInvalid)
    );
    // A first fragment to a VIP port without service.
    let nowhere = fragment_v4(&big_udp(5002, 54).bytes(), 1480, 0x0404);
    assert_eq!(
        run1(&mut w, &snap, &nowhere[0], 1).0,
        Action::Drop(DropReason::NoService)
    );
    assert_eq!(
        run1(&mut w, &snap, &nowhere[1], 1).0,
        Action::Drop(DropReason::FragmentUnknown)
    );
}

#[test]
fn ipv6_fragments_through_dr_and_tun() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // DR (VIP6:443/udp): every fragment unchanged but for the MACs.
    let body = vec![9u8; 2500];
    let dgram = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        udp(6000, 443),
        &body,
    );
    for (i, f) in fragment_v6(&dgram.bytes(), 1232, 0xdead_beef)
        .into_iter()
        .enumerate()
    {
        let (action, out) = run1(&mut w, &snap, &f, 1);
        assert_eq!(action, Action::Tx(0), "DR fragment {i}");
        let mut want = f.clone();
        want[..6].copy_from_slice(&RS1_MAC);
        want[6..12].copy_from_slice(&LB_MAC);
        assert_eq!(out, want);
    }
    // TUN 6in6 (VIP6:8443/tcp): each fragment whole inside one outer header; all fragments
    // of the datagram share the outer header (flow label).
    let seg = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        tcp(6001, 8443, "AP"),
        &body,
    );
    let mut labels = Vec::new();
    for (i, f) in fragment_v6(&seg.bytes(), 1232, 0x0bad_cafe)
        .into_iter()
        .enumerate()
    {
        let (action, out) = run1(&mut w, &snap, &f, 1);
        assert_eq!(action, Action::Tx(0), "TUN fragment {i}");
        let (outer, inner) = Ipv6Header::from_slice(&out[14..]).unwrap();
        assert_eq!(outer.next_header, IpNumber::IPV6);
        assert_eq!(outer.destination, rs1_ip6().octets());
        assert_eq!(inner, &f[14..]);
        labels.push(outer.flow_label);
    }
    assert!(labels.windows(2).all(|l| l[0] == l[1]));
    assert_eq!(w.counters.get(Counter::FragmentsForwarded), 6);
    assert_eq!(
        w.flows.len(),
        1,
        "the DR first fragment's flow; TCP mid-stream makes none"
    );
}

#[test]
fn ipv6_extension_headers_dropped_but_atomic_fragments_forwarded() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let syn = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        tcp(40000, 80, "S"),
        b"",
    );
    let bytes = syn.bytes();
    // Insert an 8-byte extension header of type `ext` (next header TCP) after the fixed header.
    let with_ext = |ext: u8, body: [u8; 6]| {
        let mut f = bytes[..14 + 40].to_vec();
        f[14 + 6] = ext;
        let len = u16::from_be_bytes([f[14 + 4], f[14 + 5]]) + 8;
        f[14 + 4..14 + 6].copy_from_slice(&len.to_be_bytes());
        f.push(6);
        f.push(0);
        f.extend_from_slice(&body);
        f.extend_from_slice(&bytes[14 + 40..]);
        f
    };
    for (what, ext) in [("hop-by-hop", 0u8), ("destination options", 60)] {
        let f = with_ext(ext, [1, 4, 0, 0, 0, 0]); // a PadN option
        assert_eq!(
            run1(&mut w, &snap, &f, 1).0,
            Action::Drop(DropReason::Ipv6ExtHeader),
            "{what}"
        );
    }
    let routing = with_ext(43, [0, 0, 0, 0, 0, 0]); // type 0, segments left 0
    assert_eq!(
        run1(&mut w, &snap, &routing, 1).0,
        Action::Drop(DropReason::Ipv6ExtHeader)
    );
    // A chain: fragment header, then hop-by-hop.
    let mut chain = with_ext(44, [0, 0, 0, 0, 0, 1]);
    chain[14 + 40] = 0;
    assert_eq!(
        run1(&mut w, &snap, &chain, 1).0,
        Action::Drop(DropReason::Ipv6ExtHeader)
    );
    // An atomic fragment (offset 0, M=0; RFC 6946): processed as the packet it is, with its
    // fragment header kept.
    let atomic = with_ext(44, [0, 0, 0, 0, 0, 9]);
    let (action, out) = run1(&mut w, &snap, &atomic, 1);
    assert_eq!(action, Action::Tx(0));
    let (h, rest) = Ipv6Header::from_slice(&out[14..]).unwrap();
    assert_eq!(h.destination, rs1_ip6().octets());
    assert_eq!(h.next_header, IpNumber::IPV6_FRAGMENTATION_HEADER);
    let (t, _) = etherparse::TcpHeader::from_slice(&rest[8..]).unwrap();
    assert_eq!(t.destination_port, 8080);
    let mut h_plain = h.clone();
    h_plain.next_header = IpNumber::TCP;
    h_plain.payload_length -= 8;
    assert_eq!(t.checksum, t.calc_checksum_ipv6(&h_plain, &[]).unwrap());
    assert_eq!(w.flows.len(), 1);
}

/// A box that restarted, or ECMP that routed a datagram's first fragment to another box: the
/// later fragments arrive without their first. For a 3-tuple service they leave exactly as
/// they would have after it (same real server, same bytes: NAT rewrite, DR MACs, TUN outer
/// header), the real server reassembles the datagram etherparse wrote for it, and no state
/// is kept.
#[test]
fn later_fragments_without_their_first_follow_a_3_tuple_hash() {
    use common::three_tuple::*;
    let snap = common::three_tuple::snapshot();
    let mut seen_rs = std::collections::HashSet::new();
    for (n, vip) in [NAT_VIP, DR_VIP, TUN_VIP].into_iter().enumerate() {
        let dport = if vip == NAT_VIP { 53 } else { 4500 };
        for c in 0..16u8 {
            let client = v4(std::net::Ipv4Addr::new(192, 0, 2, 100 + c));
            let dgram = datagram(client, v4(vip), 7000 + u16::from(c), dport);
            // Fragments that still fit with a tunnel header (TUN): 20 + 1376 + 20 bytes.
            let frags = fragment_v4(&dgram.bytes(), 1376, 0x1000 + u16::from(c));
            assert_eq!(frags.len(), 3);
            // Box A sees the whole datagram; box B (or A after a restart) only its tail.
            let (mut a, mut b) = (worker(0, 1), worker(0, 1));
            let outs_a: Vec<_> = frags
                .iter()
                .map(|f| {
                    let (action, out) = run1(&mut a, &snap, f, 1);
                    assert_eq!(action, Action::Tx(0), "{vip} client {c}");
                    out
                })
                .collect();
            for (i, f) in frags.iter().enumerate().skip(1) {
                let (action, out) = run1(&mut b, &snap, f, 1);
                assert_eq!(action, Action::Tx(0), "{vip} client {c} fragment {i}");
                assert_eq!(
                    out, outs_a[i],
                    "{vip} client {c} fragment {i}: as after its first"
                );
            }
            assert_eq!(b.counters.get(Counter::FragmentsStateless), 2);
            assert_eq!(b.counters.get(Counter::FragmentsForwarded), 2);
            assert_eq!(b.counters.get(Counter::Forwarded), 2);
            assert_eq!(a.counters.get(Counter::FragmentsStateless), 0);
            assert_eq!(b.flows.len(), 0, "a later fragment makes no state");
            seen_rs.insert((n, outs_a[0][..6].to_vec()));
            // The flow's unfragmented datagrams and the client's other flows: the same real
            // server (the hash has no ports).
            let small = Frame {
                payload: b"small".to_vec(),
                ..datagram(client, v4(vip), 9999, dport)
            };
            let (_, out) = run1(&mut b, &snap, &small.bytes(), 2);
            assert_eq!(out[..6], outs_a[0][..6], "{vip} client {c}: another flow");
            if vip == NAT_VIP {
                // What the real server reassembles: the datagram etherparse writes for it.
                let mut outs = vec![outs_a[0].clone()];
                outs.extend(frags[1..].iter().map(|f| run1(&mut b, &snap, f, 3).1));
                let (h, payload) = reassemble_v4(&outs);
                let rs = std::net::Ipv4Addr::from(h.destination);
                let mut want = dgram.clone();
                want.dst = v4(rs);
                if let L4::Udp { dport, .. } = &mut want.l4 {
                    *dport = 5353;
                }
                assert_eq!(payload, want.bytes()[14 + 20..], "client {c}");
            }
        }
    }
    assert_eq!(
        seen_rs.len(),
        6,
        "16 clients per mode reach both real servers: {seen_rs:?}"
    );
}

#[test]
fn later_ipv6_fragments_without_their_first_follow_a_3_tuple_hash() {
    use common::three_tuple::*;
    let snap = common::three_tuple::snapshot();
    let dgram = datagram(client_ip6().into(), nat_vip6().into(), 7000, 53);
    let frags = fragment_v6(&dgram.bytes(), 1232, 0xfeed_0001);
    assert_eq!(frags.len(), 3);
    let (mut a, mut b) = (worker(0, 1), worker(0, 1));
    let outs_a: Vec<_> = frags.iter().map(|f| run1(&mut a, &snap, f, 1)).collect();
    for (i, f) in frags.iter().enumerate().skip(1) {
        let out = run1(&mut b, &snap, f, 1);
        assert_eq!(out.0, Action::Tx(0), "fragment {i}");
        assert_eq!(out, outs_a[i], "fragment {i}");
        let (h, _) = Ipv6Header::from_slice(&out.1[14..]).unwrap();
        assert_eq!(h.destination, rs1_ip6().octets());
        assert_eq!(h.hop_limit, 63);
    }
    assert_eq!(b.counters.get(Counter::FragmentsStateless), 2);
}

/// Cases that cannot be placed without the first fragment stay dropped and counted: a
/// 5-tuple service (no ports, no hash), a VIP with two services of the protocol (which one?),
/// a VIP without a service of the protocol, a NAT real server's reply (its port names the
/// service).
#[test]
fn later_fragments_without_their_first_that_nothing_places_are_dropped() {
    use common::three_tuple::*;
    let snap = common::three_tuple::snapshot();
    let mut w = worker(0, 1);
    let reply = Frame::new(
        RS1_MAC,
        LB_MAC,
        v4(RS1_IP),
        v4(CLIENT_IP),
        udp(5353, 5000),
        &[7u8; 3000],
    );
    let tcp_to_nat_vip = Frame::new(
        ROUTER_MAC,
        LB_MAC,
        v4(CLIENT_IP),
        v4(NAT_VIP),
        tcp(40000, 53, "AP"),
        &[7u8; 3000],
    );
    for (what, frame) in [
        (
            "5-tuple service",
            datagram(v4(CLIENT_IP), v4(FIVE_TUPLE_VIP), 7000, 53),
        ),
        (
            "two services on the VIP",
            datagram(v4(CLIENT_IP), v4(SHARED_VIP), 7000, 53),
        ),
        ("no TCP service on the VIP", tcp_to_nat_vip),
        ("NAT reply", reply),
    ] {
        let frags = fragment_v4(&frame.bytes(), 1480, 0x2222);
        assert_eq!(
            run1(&mut w, &snap, &frags[1], 1).0,
            Action::Drop(DropReason::FragmentUnknown),
            "{what}"
        );
    }
    assert_eq!(w.counters.get(Counter::FragmentsForwarded), 0);
}
