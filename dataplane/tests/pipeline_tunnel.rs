//! TUN (IP-in-IP) fixtures, all four families: the client's IP packet, byte for byte, behind an
//! outer header from vipd's port address to the real server. Expected frames are written by
//! etherparse (tests/common), outer headers included; only the two fields vipd derives from
//! its flow hash (IPv6 flow label, IPv4 identification of a packet that may be fragmented) are
//! read back from the output, and checked for what they must be.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber,
    Ipv4Dscp, Ipv4Header, Ipv6FlowLabel, Ipv6Header,
};
use std::net::{IpAddr, Ipv4Addr};
use vipd_dataplane::counters::{Counter, DropReason};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, Action, WorkerState, ICMP_ERRORS_BURST};
use vipd_dataplane::snapshot::Snapshot;

/// Run one frame through a worker; return the action and the output frame.
fn run(w: &mut WorkerState, snap: &Snapshot, input: &[u8], now: u64) -> (Action, Vec<u8>) {
    let mut bufs = [VecBuf::new(input)];
    let mut actions = [Action::ToControl];
    process_burst(&mut bufs, &mut actions, 0, w, snap, now);
    (actions[0], bufs[0].data().to_vec())
}

fn eth(ether_type: EtherType, src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    let mut out = Vec::new();
    Ethernet2Header {
        source: src,
        destination: dst,
        ether_type,
    }
    .write(&mut out)
    .unwrap();
    out
}

/// The IP packet of a frame built by [`Frame::bytes`] (untagged).
fn ip_packet(frame: &Frame) -> Vec<u8> {
    frame.bytes()[14..].to_vec()
}

/// Expected frame: outer IPv4 from the LB to `dst` around `inner`.
fn outer_v4(inner: &[u8], proto: IpNumber, dst: Ipv4Addr, df: bool, ident: u16) -> Vec<u8> {
    let mut out = eth(EtherType::IPV4, LB_MAC, RS1_MAC);
    let mut h =
        Ipv4Header::new(inner.len() as u16, 64, proto, LB_IP.octets(), dst.octets()).unwrap();
    h.dont_fragment = df;
    h.identification = ident;
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut out).unwrap();
    out.extend_from_slice(inner);
    out
}

/// Expected frame: outer IPv6 from the LB to the IPv6 real server around `inner`.
fn outer_v6(inner: &[u8], proto: IpNumber, flow_label: u32) -> Vec<u8> {
    let mut out = eth(EtherType::IPV6, LB_MAC, RS1_MAC);
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(flow_label).unwrap(),
        payload_length: inner.len() as u16,
        next_header: proto,
        hop_limit: 64,
        source: lb_ip6().octets(),
        destination: rs1_ip6().octets(),
    }
    .write(&mut out)
    .unwrap();
    out.extend_from_slice(inner);
    out
}

/// The 20-bit flow label of an output frame with an outer IPv6 header.
fn flow_label_of(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[14], frame[15], frame[16], frame[17]]) & 0x000f_ffff
}

fn v4_client(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        IpAddr::V4(CLIENT_IP),
        IpAddr::V4(VIP),
        l4,
        payload,
    )
}

fn v6_client(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        l4,
        payload,
    )
}

#[test]
fn four_in_four_with_df_has_identification_zero_and_copies_df() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    for (description, input) in [
        ("SYN", v4_client(tcp(40000, 8443, "S"), b"")),
        (
            "data",
            v4_client(tcp(40000, 8443, "AP"), b"GET / HTTP/1.1\r\n\r\n"),
        ),
        ("TTL 1 kept: the tunnel is one link", {
            let mut f = v4_client(tcp(40001, 8443, "S"), b"");
            f.ttl = 1;
            f
        }),
    ] {
        let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
        assert_eq!(action, Action::Tx(0), "{description}");
        let want = outer_v4(&ip_packet(&input), IpNumber::IPV4, RS1_IP, true, 0);
        assert_eq!(out, want, "{description}");
    }
    assert_eq!(w.counters.get(Counter::Forwarded), 3);
    assert_eq!(w.counters.total_drops(), 0);
}

#[test]
fn four_in_four_without_df_may_fragment_and_varies_identification() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut idents = Vec::new();
    for ident in [1u16, 2, 3] {
        let mut input = v4_client(tcp(40000, 8443, "AP"), b"x");
        input.dont_fragment = false;
        input.ident = ident;
        let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
        assert_eq!(action, Action::Tx(0));
        let outer_ident = u16::from_be_bytes([out[18], out[19]]);
        let want = outer_v4(
            &ip_packet(&input),
            IpNumber::IPV4,
            RS1_IP,
            false,
            outer_ident,
        );
        assert_eq!(out, want, "inner ident {ident}");
        idents.push(outer_ident);
    }
    idents.dedup();
    assert_eq!(
        idents.len(),
        3,
        "outer identification follows the inner one: {idents:?}"
    );
}

#[test]
fn ethernet_padding_is_not_carried_into_the_tunnel() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let input = v4_client(tcp(40000, 8443, "S"), b"");
    let mut padded = input.bytes();
    padded.resize(60, 0); // a 54-byte SYN padded to Ethernet's minimum
    let (action, out) = run(&mut w, &snap, &padded, 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(
        out,
        outer_v4(&ip_packet(&input), IpNumber::IPV4, RS1_IP, true, 0)
    );
}

#[test]
fn six_in_four_four_in_six_and_six_in_six() {
    let snap = snapshot();
    let mut w = worker(0, 1);

    let six_in_four = v6_client(tcp(40000, 8444, "S"), b"");
    let (action, out) = run(&mut w, &snap, &six_in_four.bytes(), 1);
    assert_eq!(action, Action::Tx(0), "6in4");
    // Inner IPv6 is never fragmented on the way: the outer IPv4 header carries DF.
    let want = outer_v4(&ip_packet(&six_in_four), IpNumber::IPV6, RS1_IP, true, 0);
    assert_eq!(out, want, "6in4");

    let mut labels = Vec::new();
    for (description, input, proto) in [
        (
            "4in6",
            v4_client(tcp(40000, 8446, "S"), b""),
            IpNumber::IPV4,
        ),
        (
            "4in6 data, same flow",
            v4_client(tcp(40000, 8446, "AP"), b"hello"),
            IpNumber::IPV4,
        ),
        (
            "6in6",
            v6_client(tcp(40000, 8443, "S"), b""),
            IpNumber::IPV6,
        ),
        (
            "6in6 UDP-less other flow",
            v6_client(tcp(40002, 8443, "S"), b""),
            IpNumber::IPV6,
        ),
    ] {
        let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
        assert_eq!(action, Action::Tx(0), "{description}");
        let label = flow_label_of(&out);
        assert_ne!(label, 0, "{description}: RFC 6438 flow label set");
        assert_eq!(
            out,
            outer_v6(&ip_packet(&input), proto, label),
            "{description}"
        );
        labels.push(label);
    }
    assert_eq!(labels[0], labels[1], "one flow, one label");
    assert_ne!(labels[2], labels[3], "two flows, two labels");
    assert_eq!(w.counters.get(Counter::Forwarded), 5);
    assert_eq!(w.counters.total_drops(), 0);
}

#[test]
fn per_flow_outer_source_stays_inside_the_prefix() {
    let snap = snapshot_with_port(|p| {
        p.tunnel_source4 = Some("10.0.0.128/25".parse().unwrap());
        p.tunnel_source6 = Some("fd00::1:0/112".parse().unwrap());
    });
    let mut w = worker(0, 1);
    let mut sources4 = std::collections::BTreeSet::new();
    let mut sources6 = std::collections::BTreeSet::new();
    for sport in 40000..40064u16 {
        let input = v4_client(tcp(sport, 8443, "S"), b"");
        let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
        assert_eq!(action, Action::Tx(0));
        let src = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
        assert!(
            (129..=254).contains(&src.octets()[3]) && src.octets()[..3] == [10, 0, 0],
            "{src} outside 10.0.0.128/25 host range"
        );
        // The same flow again keeps its source: the real server sees one tunnel per flow.
        let again = v4_client(tcp(sport, 8443, "A"), b"");
        let (_, out2) = run(&mut w, &snap, &again.bytes(), 1);
        assert_eq!(out2[26..30], out[26..30]);
        sources4.insert(src);

        let input = v6_client(tcp(sport, 8443, "S"), b"");
        let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
        assert_eq!(action, Action::Tx(0));
        let src: [u8; 16] = out[22..38].try_into().unwrap();
        let prefix: [u8; 16] = "fd00::1:0".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(src[..14], prefix[..14], "IPv6 source outside fd00::1:0/112");
        assert_ne!(src[14..], [0, 0], "subnet-router anycast avoided");
        sources6.insert(src);
    }
    assert!(
        sources4.len() > 32,
        "64 flows over {} sources",
        sources4.len()
    );
    assert!(
        sources6.len() > 32,
        "64 flows over {} sources",
        sources6.len()
    );
}

#[test]
fn too_big_ipv4_with_df_gets_fragmentation_needed_from_the_vip() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // 1481-byte IP packet: 1501 bytes with the outer header, one over the port MTU.
    let input = v4_client(tcp(40000, 8443, "AP"), &[0x61; 1481 - 40]);
    let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
    assert_eq!(action, Action::Tx(0), "back out of the port it came in by");

    let quoted = &ip_packet(&input)[..576 - 28];
    let icmp = Icmpv4Header::with_checksum(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1480,
        }),
        quoted,
    );
    let mut want = eth(EtherType::IPV4, LB_MAC, ROUTER_MAC);
    let mut h = Ipv4Header::new(
        (icmp.header_len() + quoted.len()) as u16,
        64,
        IpNumber::ICMP,
        VIP.octets(),
        CLIENT_IP.octets(),
    )
    .unwrap();
    h.dscp = Ipv4Dscp::try_new(0xc0 >> 2).unwrap();
    h.dont_fragment = false;
    h.identification = input.ident;
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut want).unwrap();
    icmp.write(&mut want).unwrap();
    want.extend_from_slice(quoted);
    assert_eq!(out, want);
    assert_eq!(w.counters.get(Counter::IcmpTooBigSent), 1);
    assert_eq!(w.counters.get(Counter::Forwarded), 0);

    // One byte less fits exactly.
    let fits = v4_client(tcp(40000, 8443, "AP"), &[0x61; 1480 - 40]);
    let (action, out) = run(&mut w, &snap, &fits.bytes(), 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out.len(), 14 + 1500);
    assert_eq!(w.counters.get(Counter::Forwarded), 1);
}

#[test]
fn too_big_ipv4_without_df_is_dropped_not_fragmented() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let mut input = v4_client(tcp(40000, 8443, "AP"), &[0x61; 1481 - 40]);
    input.dont_fragment = false;
    let (action, _) = run(&mut w, &snap, &input.bytes(), 1);
    assert_eq!(action, Action::Drop(DropReason::TunnelTooBig));
    assert_eq!(w.counters.get(DropReason::TunnelTooBig), 1);
}

#[test]
fn too_big_ipv6_gets_packet_too_big_quoting_up_to_1280_bytes() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    // 6in6: 1461-byte IPv6 packet, 1501 with the outer header.
    let input = v6_client(tcp(40000, 8443, "AP"), &[0x62; 1461 - 60]);
    let (action, out) = run(&mut w, &snap, &input.bytes(), 1);
    assert_eq!(action, Action::Tx(0));
    let quoted = &ip_packet(&input)[..1280 - 48];
    let icmp = Icmpv6Header::with_checksum(
        Icmpv6Type::PacketTooBig { mtu: 1460 },
        vip6().octets(),
        client_ip6().octets(),
        quoted,
    )
    .unwrap();
    let mut want = eth(EtherType::IPV6, LB_MAC, ROUTER_MAC);
    Ipv6Header {
        traffic_class: 0xc0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: (icmp.header_len() + quoted.len()) as u16,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: 64,
        source: vip6().octets(),
        destination: client_ip6().octets(),
    }
    .write(&mut want)
    .unwrap();
    icmp.write(&mut want).unwrap();
    want.extend_from_slice(quoted);
    assert_eq!(out, want);

    // 6in4 has 20 bytes more room: the same packet fits.
    let six_in_four = v6_client(tcp(40000, 8444, "AP"), &[0x62; 1461 - 60]);
    let (action, out) = run(&mut w, &snap, &six_in_four.bytes(), 1);
    assert_eq!(action, Action::Tx(0));
    assert_eq!(out.len(), 14 + 20 + 1461);
    assert_eq!(w.counters.get(Counter::IcmpTooBigSent), 1);
}

#[test]
fn too_big_errors_are_rate_limited_per_worker() {
    let snap = snapshot();
    let mut w = worker(0, 1);
    let big = v4_client(tcp(40000, 8443, "AP"), &[0x61; 1460]).bytes();
    let burst = ICMP_ERRORS_BURST as u64;
    for _ in 0..burst + 10 {
        run(&mut w, &snap, &big, 1000);
    }
    assert_eq!(w.counters.get(Counter::IcmpTooBigSent), burst);
    assert_eq!(w.counters.get(DropReason::IcmpErrorRateLimited), 10);
    // 10 ms later, 10 more tokens (1000/s).
    for _ in 0..20 {
        run(&mut w, &snap, &big, 1010);
    }
    assert_eq!(w.counters.get(Counter::IcmpTooBigSent), burst + 10);
    assert_eq!(w.counters.get(DropReason::IcmpErrorRateLimited), 20);
}

#[test]
fn no_outer_source_of_the_real_servers_family_is_a_counted_drop() {
    let snap = snapshot_with_port(|p| p.ipv6 = None);
    let mut w = worker(0, 1);
    // 4in6 needs an IPv6 port address; the real server is still routed through the IPv6
    // gateway. (The config check refuses a gateway6 without ipv6 up front; the dataplane still
    // must not send from a wrong address.)
    let input = v4_client(tcp(40000, 8446, "S"), b"");
    let (action, _) = run(&mut w, &snap, &input.bytes(), 1);
    assert_eq!(action, Action::Drop(DropReason::TunnelNoSource));
    assert_eq!(w.counters.get(DropReason::TunnelNoSource), 1);
}
