//! Tests of the encapsulation: outer headers against etherparse, MTU and headroom checks,
//! flow labels and per-flow outer sources (shared frame builders used by `icmp_error` too).

use super::*;
use crate::io::mem::{VecBuf, HEADROOM};
use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, SingleVlanHeader,
    TcpHeader, VlanId,
};
use std::collections::HashSet;

pub(crate) const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub(crate) const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub(crate) const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

pub(crate) fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}
pub(crate) fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

/// An inner TCP packet (client -> VIP) written by etherparse.
pub(crate) fn inner_ip(
    src: IpAddr,
    dst: IpAddr,
    tos: u8,
    dont_frag: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut t = TcpHeader::new(40000, 80, 1000, 65535);
    t.psh = true;
    t.ack = true;
    let l4_len = (t.header_len() + payload.len()) as u16;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(l4_len, 57, IpNumber::TCP, s.octets(), d.octets()).unwrap();
            h.identification = 0x1234;
            h.dont_fragment = dont_frag;
            h.dscp = (tos >> 2).try_into().unwrap();
            h.ecn = (tos & 3).try_into().unwrap();
            h.header_checksum = h.calc_header_checksum();
            t.checksum = t.calc_checksum_ipv4(&h, payload).unwrap();
            h.write(&mut out).unwrap();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = Ipv6Header {
                traffic_class: tos,
                flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
                payload_length: l4_len,
                next_header: IpNumber::TCP,
                hop_limit: 57,
                source: s.octets(),
                destination: d.octets(),
            };
            t.checksum = t.calc_checksum_ipv6(&h, payload).unwrap();
            h.write(&mut out).unwrap();
        }
        _ => unreachable!(),
    }
    t.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

/// Ethernet (+ VLAN) + `ip` + `padding` zero bytes.
pub(crate) fn frame(ip: &[u8], vlan: Option<u16>, padding: usize) -> Vec<u8> {
    let ip_type = if ip[0] >> 4 == 4 {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    let mut out = Vec::new();
    Ethernet2Header {
        source: SRC_MAC,
        destination: DST_MAC,
        ether_type: if vlan.is_some() {
            EtherType::VLAN_TAGGED_FRAME
        } else {
            ip_type
        },
    }
    .write(&mut out)
    .unwrap();
    if let Some(id) = vlan {
        SingleVlanHeader {
            pcp: etherparse::VlanPcp::try_new(5).unwrap(),
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(id).unwrap(),
            ether_type: ip_type,
        }
        .write(&mut out)
        .unwrap();
    }
    out.extend_from_slice(ip);
    out.resize(out.len() + padding, 0);
    out
}

pub(crate) fn outer(src: IpAddr, dst: IpAddr) -> Outer {
    Outer {
        src,
        dst,
        ttl: 64,
        flow_hash: 0xdead_beef,
        mtu: 1500,
    }
}

/// Parse the Ethernet (+ VLAN) header with etherparse; returns the L3 bytes and the
/// inner-most EtherType. Checks the MACs and the VLAN tag were kept.
fn parse_l2(out: &[u8], vlan: Option<u16>) -> (&[u8], EtherType) {
    let (eth, rest) = Ethernet2Header::from_slice(out).unwrap();
    assert_eq!(eth.source, SRC_MAC);
    assert_eq!(eth.destination, DST_MAC);
    match vlan {
        Some(id) => {
            assert_eq!(eth.ether_type, EtherType::VLAN_TAGGED_FRAME);
            let (tag, rest) = SingleVlanHeader::from_slice(rest).unwrap();
            assert_eq!(tag.vlan_id.value(), id);
            assert_eq!(tag.pcp.value(), 5);
            (rest, tag.ether_type)
        }
        None => (rest, eth.ether_type),
    }
}

struct Case {
    inner_src: IpAddr,
    inner_dst: IpAddr,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    vlan: Option<u16>,
    padding: usize,
}

fn check(c: Case) {
    let tos = 0xb9; // DSCP 46 (EF), ECN 01
    let ip = inner_ip(c.inner_src, c.inner_dst, tos, true, PAYLOAD);
    let input = frame(&ip, c.vlan, c.padding);
    let l2_len = if c.vlan.is_some() { 18 } else { 14 };
    let mut buf = VecBuf::new(&input);
    let o = outer(c.outer_src, c.outer_dst);
    encapsulate(&mut buf, l2_len, &o).unwrap();
    let out = buf.data();
    let (l3, ty) = parse_l2(out, c.vlan);
    let inner_proto = if c.inner_src.is_ipv4() {
        IpNumber::IPV4
    } else {
        IpNumber::IPV6
    };
    let inner_bytes = match (c.outer_src, c.outer_dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            assert_eq!(ty, EtherType::IPV4);
            let (h, rest) = Ipv4Header::from_slice(l3).unwrap();
            assert_eq!(h.protocol, inner_proto);
            assert_eq!(h.source, s.octets());
            assert_eq!(h.destination, d.octets());
            assert_eq!(usize::from(h.total_len), 20 + ip.len());
            assert!(
                h.dont_fragment,
                "DF copied (inner IPv4) or set (inner IPv6)"
            );
            assert!(!h.more_fragments);
            assert_eq!(h.identification, 0, "atomic datagram");
            assert_eq!(u8::from(h.dscp) << 2 | u8::from(h.ecn), tos);
            assert_eq!(h.time_to_live, 64);
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert_eq!(h.header_len(), 20);
            rest
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            assert_eq!(ty, EtherType::IPV6);
            let (h, rest) = Ipv6Header::from_slice(l3).unwrap();
            assert_eq!(h.next_header, inner_proto);
            assert_eq!(h.source, s.octets());
            assert_eq!(h.destination, d.octets());
            assert_eq!(usize::from(h.payload_length), ip.len());
            assert_eq!(h.traffic_class, tos);
            assert_eq!(h.flow_label.value(), flow_label(o.flow_hash));
            assert_ne!(h.flow_label.value(), 0);
            assert_eq!(h.hop_limit, 64);
            rest
        }
        _ => unreachable!(),
    };
    assert_eq!(inner_bytes, &ip[..], "inner packet untouched, padding cut");
    assert_eq!(out.len(), l2_len + o_len(&o) + ip.len());
    // The inner packet still parses, TTL not decremented.
    if c.inner_src.is_ipv4() {
        let (h, _) = Ipv4Header::from_slice(inner_bytes).unwrap();
        assert_eq!((h.protocol, h.time_to_live), (IpNumber::TCP, 57));
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    } else {
        let (h, _) = Ipv6Header::from_slice(inner_bytes).unwrap();
        assert_eq!((h.next_header, h.hop_limit), (IpNumber::TCP, 57));
    }
}

fn o_len(o: &Outer) -> usize {
    if o.dst.is_ipv4() {
        20
    } else {
        40
    }
}

#[test]
fn four_in_four() {
    check(Case {
        inner_src: v4("192.0.2.50"),
        inner_dst: v4("10.100.0.1"),
        outer_src: v4("10.0.0.10"),
        outer_dst: v4("10.0.0.21"),
        vlan: None,
        padding: 0,
    });
}

#[test]
fn six_in_six() {
    check(Case {
        inner_src: v6("2001:db8::50"),
        inner_dst: v6("fd00:100::1"),
        outer_src: v6("fd00::10"),
        outer_dst: v6("fd00::21"),
        vlan: None,
        padding: 0,
    });
}

#[test]
fn four_in_six() {
    check(Case {
        inner_src: v4("192.0.2.50"),
        inner_dst: v4("10.100.0.1"),
        outer_src: v6("fd00::10"),
        outer_dst: v6("fd00::21"),
        vlan: None,
        padding: 0,
    });
}

#[test]
fn six_in_four() {
    check(Case {
        inner_src: v6("2001:db8::50"),
        inner_dst: v6("fd00:100::1"),
        outer_src: v4("10.0.0.10"),
        outer_dst: v4("10.0.0.21"),
        vlan: None,
        padding: 0,
    });
}

#[test]
fn vlan_tag_kept_all_families() {
    for (is, id) in [
        (v4("192.0.2.50"), v4("10.100.0.1")),
        (v6("2001:db8::50"), v6("fd00:100::1")),
    ] {
        for (os, od) in [
            (v4("10.0.0.10"), v4("10.0.0.21")),
            (v6("fd00::10"), v6("fd00::21")),
        ] {
            check(Case {
                inner_src: is,
                inner_dst: id,
                outer_src: os,
                outer_dst: od,
                vlan: Some(100),
                padding: 0,
            });
        }
    }
}

#[test]
fn ethernet_padding_not_carried() {
    // A small packet padded to the 60-byte Ethernet minimum, tagged and untagged.
    for vlan in [None, Some(7)] {
        check(Case {
            inner_src: v4("192.0.2.50"),
            inner_dst: v4("10.100.0.1"),
            outer_src: v4("10.0.0.10"),
            outer_dst: v4("10.0.0.21"),
            vlan,
            padding: 6,
        });
        check(Case {
            inner_src: v6("2001:db8::50"),
            inner_dst: v6("fd00:100::1"),
            outer_src: v6("fd00::10"),
            outer_dst: v6("fd00::21"),
            vlan,
            padding: 5,
        });
    }
}

#[test]
fn outer_ipv4_without_df_when_inner_allows_fragments() {
    let ip = inner_ip(v4("192.0.2.50"), v4("10.100.0.1"), 0, false, PAYLOAD);
    let mut buf = VecBuf::new(&frame(&ip, None, 0));
    let o = outer(v4("10.0.0.10"), v4("10.0.0.21"));
    encapsulate(&mut buf, 14, &o).unwrap();
    let (h, rest) = Ipv4Header::from_slice(&buf.data()[14..]).unwrap();
    assert!(!h.dont_fragment);
    assert_eq!(
        h.identification,
        0x1234 ^ (o.flow_hash as u16) ^ ((o.flow_hash >> 16) as u16)
    );
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!(rest, &ip[..]);
}

/// An inner packet exactly `len` bytes long.
pub(crate) fn sized_inner(src: IpAddr, dst: IpAddr, dont_frag: bool, len: usize) -> Vec<u8> {
    let hdr = if src.is_ipv4() { 20 } else { 40 } + 20;
    inner_ip(src, dst, 0, dont_frag, &vec![0x5a; len - hdr])
}

#[test]
fn mtu_boundary_and_too_big() {
    let too_big = |mtu| Err(TunnelError::TooBig { mtu });
    let drop = Err(TunnelError::Drop(DropReason::TunnelTooBig));
    let (c4, c6) = (v4("192.0.2.50"), v6("2001:db8::50"));
    let (o4, r4, o6, r6) = (
        v4("10.0.0.10"),
        v4("10.0.0.21"),
        v6("fd00::10"),
        v6("fd00::21"),
    );
    let cases = [
        // 4in4 with DF: the sender learns 1500 - 20.
        (c4, o4, r4, true, too_big(1480)),
        // IPv4 without DF: vipd does not fragment.
        (c4, o4, r4, false, drop),
        (c4, o6, r6, false, drop),
        // IPv6 is never fragmented in flight: always an error.
        (c6, o6, r6, true, too_big(1460)),
        (c6, o4, r4, true, too_big(1480)),
        (c4, o6, r6, true, too_big(1460)),
    ];
    for (inner_src, outer_src, outer_dst, df, expect) in cases {
        let overhead = if outer_dst.is_ipv4() { 20 } else { 40 };
        let inner_dst = if inner_src.is_ipv4() {
            v4("10.100.0.1")
        } else {
            v6("fd00:100::1")
        };
        let o = outer(outer_src, outer_dst);
        // Exactly the MTU: encapsulated.
        let fits = sized_inner(inner_src, inner_dst, df, 1500 - overhead);
        let mut buf = VecBuf::new(&frame(&fits, None, 0));
        assert_eq!(encapsulate(&mut buf, 14, &o), Ok(()));
        assert_eq!(buf.data().len(), 14 + 1500);
        // One byte more: too big, frame untouched.
        let big = sized_inner(inner_src, inner_dst, df, 1501 - overhead);
        let input = frame(&big, None, 0);
        let mut buf = VecBuf::new(&input);
        assert_eq!(encapsulate(&mut buf, 14, &o), expect);
        assert_eq!(buf.data(), &input[..]);
    }
}

#[test]
fn too_big_below_family_minimum_is_dropped() {
    // 6in6 over a 1280-byte path: the inner MTU (1240) is below IPv6's minimum, hosts
    // would discard the error (RFC 8201).
    let ip = sized_inner(v6("2001:db8::50"), v6("fd00:100::1"), true, 1280);
    let mut buf = VecBuf::new(&frame(&ip, None, 0));
    let o = Outer {
        mtu: 1280,
        ..outer(v6("fd00::10"), v6("fd00::21"))
    };
    assert_eq!(
        encapsulate(&mut buf, 14, &o),
        Err(TunnelError::Drop(DropReason::TunnelTooBig))
    );
    // An MTU smaller than the overhead does not underflow.
    let ip = inner_ip(v4("192.0.2.50"), v4("10.100.0.1"), 0, true, PAYLOAD);
    let mut buf = VecBuf::new(&frame(&ip, None, 0));
    let o = Outer {
        mtu: 10,
        ..outer(v4("10.0.0.10"), v4("10.0.0.21"))
    };
    assert_eq!(
        encapsulate(&mut buf, 14, &o),
        Err(TunnelError::Drop(DropReason::TunnelTooBig))
    );
}

/// A buffer with no headroom, like an mbuf whose headroom was used up.
pub(crate) struct NoHeadroom(pub(crate) VecBuf);

impl PacketBuf for NoHeadroom {
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn prepend(&mut self, _len: usize) -> bool {
        false
    }
    fn adj(&mut self, len: usize) -> bool {
        self.0.adj(len)
    }
    fn trim_to(&mut self, len: usize) -> bool {
        self.0.trim_to(len)
    }
    fn append(&mut self, len: usize) -> bool {
        self.0.append(len)
    }
}

#[test]
fn no_headroom_is_an_error_and_leaves_the_frame() {
    let ip = inner_ip(v4("192.0.2.50"), v4("10.100.0.1"), 0, true, PAYLOAD);
    let input = frame(&ip, None, 4);
    let o = outer(v4("10.0.0.10"), v4("10.0.0.21"));
    let mut buf = NoHeadroom(VecBuf::new(&input));
    assert_eq!(
        encapsulate(&mut buf, 14, &o),
        Err(TunnelError::Drop(DropReason::NoHeadroom))
    );
    assert_eq!(buf.data(), &input[..]);
    // A VecBuf with 30 bytes of headroom left: enough for 20, not for 40.
    let drained = |input: &[u8]| {
        let mut b = VecBuf::new(input);
        assert!(b.prepend(HEADROOM - 30));
        b.data_mut()[..input.len()].copy_from_slice(input);
        assert!(b.trim_to(input.len()));
        b
    };
    let mut buf = drained(&input);
    let o6 = outer(v6("fd00::10"), v6("fd00::21"));
    assert_eq!(
        encapsulate(&mut buf, 14, &o6),
        Err(TunnelError::Drop(DropReason::NoHeadroom))
    );
    assert_eq!(buf.data(), &input[..]);
    let mut buf = drained(&input);
    assert_eq!(encapsulate(&mut buf, 14, &o), Ok(()));
    assert_eq!(&buf.data()[34..], &ip[..]);
}

#[test]
fn bad_input_never_panics() {
    let o = outer(v4("10.0.0.10"), v4("10.0.0.21"));
    let ip = inner_ip(v4("192.0.2.50"), v4("10.100.0.1"), 0, true, PAYLOAD);
    let good = frame(&ip, None, 0);
    // Family mismatch between outer source and destination.
    let mut buf = VecBuf::new(&good);
    let mixed = outer(v4("10.0.0.10"), v6("fd00::21"));
    assert_eq!(
        encapsulate(&mut buf, 14, &mixed),
        Err(TunnelError::Drop(DropReason::TunnelNoSource))
    );
    assert_eq!(buf.data(), &good[..]);
    // Every truncation, every l2 length, a few corruptions.
    for cut in 0..good.len() {
        for l2 in [0, 13, 14, 16, 18, 200] {
            let mut buf = VecBuf::new(&good[..cut]);
            let _ = encapsulate(&mut buf, l2, &o);
        }
    }
    for at in 0..good.len() {
        for v in [0x00, 0x45, 0x60, 0x86, 0xdd, 0xff] {
            let mut bad = good.clone();
            bad[at] = v;
            let mut buf = VecBuf::new(&bad);
            let _ = encapsulate(&mut buf, 14, &o);
        }
    }
    // Non-IP EtherType.
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut buf = VecBuf::new(&arp);
    assert_eq!(
        encapsulate(&mut buf, 14, &o),
        Err(TunnelError::Drop(DropReason::UnsupportedEthertype))
    );
    // EtherType IPv6 over an IPv4 packet.
    let mut lie = good;
    lie[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut buf = VecBuf::new(&lie);
    assert_eq!(
        encapsulate(&mut buf, 14, &o),
        Err(TunnelError::Drop(DropReason::Ipv6Malformed))
    );
}

#[test]
fn flow_label_nonzero_and_spread() {
    let labels: HashSet<u32> = (0..10_000u32).map(flow_label).collect();
    assert!(labels.iter().all(|&l| l != 0 && l <= 0xf_ffff));
    assert!(labels.len() > 9_900, "{}", labels.len());
}

#[test]
fn outer_source_default_is_base() {
    let base = v4("10.0.0.10");
    assert_eq!(outer_source(base, None, 42), base);
    // A prefix of the other family is ignored.
    assert_eq!(
        outer_source(base, Some("fd00:1::/64".parse().unwrap()), 42),
        base
    );
    let base6 = v6("fd00::10");
    assert_eq!(
        outer_source(base6, Some("172.16.0.0/16".parse().unwrap()), 42),
        base6
    );
}

#[test]
fn outer_source_spreads_inside_the_prefix_v4() {
    let net: ipnet::IpNet = "172.16.0.0/24".parse().unwrap();
    let base = v4("10.0.0.10");
    let picked: HashSet<IpAddr> = (0..10_000u32)
        .map(|h| outer_source(base, Some(net), h.wrapping_mul(0x9e37_79b9)))
        .collect();
    assert!(picked.iter().all(|a| net.contains(a)));
    assert!(!picked.contains(&v4("172.16.0.0")));
    assert!(!picked.contains(&v4("172.16.0.255")));
    assert_eq!(picked.len(), 254, "all host addresses used");
    // Stable per flow.
    assert_eq!(
        outer_source(base, Some(net), 77),
        outer_source(base, Some(net), 77)
    );
    // /31 and /32 use every address.
    let n31: ipnet::IpNet = "172.16.0.0/31".parse().unwrap();
    let p31: HashSet<IpAddr> = (0..100).map(|h| outer_source(base, Some(n31), h)).collect();
    assert_eq!(p31.len(), 2);
    let n32: ipnet::IpNet = "172.16.0.9/32".parse().unwrap();
    assert_eq!(outer_source(base, Some(n32), 5), v4("172.16.0.9"));
    // Host bits of the configured prefix are ignored.
    let sloppy: ipnet::IpNet = "172.16.0.77/30".parse().unwrap();
    let p: HashSet<IpAddr> = (0..100)
        .map(|h| outer_source(base, Some(sloppy), h))
        .collect();
    assert_eq!(
        p,
        [v4("172.16.0.77"), v4("172.16.0.78")].into_iter().collect()
    );
}

#[test]
fn outer_source_spreads_inside_the_prefix_v6() {
    let net: ipnet::IpNet = "fd00:7::/64".parse().unwrap();
    let base = v6("fd00::10");
    let picked: HashSet<IpAddr> = (0..10_000u32)
        .map(|h| outer_source(base, Some(net), h))
        .collect();
    assert!(picked.iter().all(|a| net.contains(a)));
    assert!(!picked.contains(&v6("fd00:7::")));
    assert!(picked.len() > 9_900, "{}", picked.len());
    let small: ipnet::IpNet = "fd00:7::/120".parse().unwrap();
    let p: HashSet<IpAddr> = (0..10_000u32)
        .map(|h| outer_source(base, Some(small), h))
        .collect();
    assert_eq!(p.len(), 255);
    let one: ipnet::IpNet = "fd00:7::5/128".parse().unwrap();
    assert_eq!(outer_source(base, Some(one), 9), v6("fd00:7::5"));
}
