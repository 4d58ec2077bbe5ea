//! Every class of frame vipd decides, one fixture row each: the table in
//! docs/frame-classes.md lists the same ids with the decision and why. Frames are written by
//! etherparse (tests/common) and then broken where the class says; each row runs on a fresh
//! worker (the rows that need a flow build it first). Output bytes of the forwarded rows are
//! checked in the per-mode fixtures (pipeline_nat, _dr, _tunnel, _icmp, _fragments); here the
//! verdict is the point, plus a truncation sweep over every offset of every kind of frame.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

mod common;

use common::*;
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, PacketBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::counters::DropReason;
use vipd_dataplane::pipeline::Action;

fn c2v(l4: L4) -> Frame {
    Frame::new(ROUTER_MAC, LB_MAC, v4(CLIENT_IP), v4(VIP), l4, b"payload")
}

fn c2v6(l4: L4) -> Frame {
    Frame::new(
        ROUTER_MAC,
        LB_MAC,
        client_ip6().into(),
        vip6().into(),
        l4,
        b"payload",
    )
}

fn with(mut f: Frame, edit: impl FnOnce(&mut Frame)) -> Vec<u8> {
    edit(&mut f);
    f.bytes()
}

/// Bytes of `f` with `at..` overwritten by `bytes` (and nothing fixed).
fn patch(mut f: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    f[at..at + bytes.len()].copy_from_slice(bytes);
    f
}

/// Recompute the IPv4 header checksum (IHL from the header) of a patched frame.
fn fix4(mut f: Vec<u8>) -> Vec<u8> {
    let ihl = (usize::from(f[14] & 0xf) * 4).min(f.len() - 14);
    f[24] = 0;
    f[25] = 0;
    let c = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&f[14..14 + ihl])
        .ones_complement();
    f[24..26].copy_from_slice(&c.to_ne_bytes()); // etherparse sums native-endian words
    f
}

fn echo4(dst: Ipv4Addr) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv4(CLIENT_IP.octets(), dst.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

fn error_to_vip(quote_len: Option<usize>, vport: u16) -> Vec<u8> {
    let quoted = Frame::new(
        LB_MAC,
        ROUTER_MAC,
        v4(VIP),
        v4(CLIENT_IP),
        tcp(vport, 40000, "A"),
        b"",
    )
    .bytes();
    let q = &quoted[14..];
    let q = &q[..quote_len.unwrap_or(q.len())];
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
        .ipv4([203, 0, 113, 1], VIP.octets(), 60)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut out, q)
        .unwrap();
    out
}

/// An IPv6 frame with an 8-byte extension header `ext` inserted before the TCP header.
fn ext6(ext: u8, body: [u8; 6]) -> Vec<u8> {
    let b = c2v6(tcp(40000, 80, "S")).bytes();
    let mut f = b[..54].to_vec();
    f[20] = ext;
    let len = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[6, 0]);
    f.extend_from_slice(&body);
    f.extend_from_slice(&b[54..]);
    f
}

/// IPv4 fragment of a 2000-byte UDP datagram to VIP:53: offset (bytes) and MF.
fn frag4(offset: usize, more: bool, proto_tcp: bool) -> Vec<u8> {
    let l4 = if proto_tcp {
        tcp(40000, 80, "A")
    } else {
        udp(5000, 53)
    };
    fragment_of(c2v(l4), offset, more)
}

/// IPv4 fragment of `f` with 2000 bytes of payload: offset (bytes) and MF.
fn fragment_of(f: Frame, offset: usize, more: bool) -> Vec<u8> {
    let f = Frame {
        payload: vec![1; 2000],
        dont_fragment: false,
        ..f
    }
    .bytes();
    let part = &f[34 + offset..(34 + offset + 1000).min(f.len())];
    let mut out = f[..34].to_vec();
    out[16..18].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
    let off_flags = (offset as u16 / 8) | if more { 0x2000 } else { 0 };
    out[20..22].copy_from_slice(&off_flags.to_be_bytes());
    out.extend_from_slice(part);
    fix4(out)
}

struct Row {
    id: &'static str,
    what: &'static str,
    /// Frames sent first (to build a flow or a first fragment), their verdicts not checked.
    setup: Vec<Vec<u8>>,
    frame: Vec<u8>,
    want: Action,
}

fn row(id: &'static str, what: &'static str, frame: Vec<u8>, want: Action) -> Row {
    Row {
        id,
        what,
        setup: vec![],
        frame,
        want,
    }
}

fn drop(c: DropReason) -> Action {
    Action::Drop(c)
}

const TX: Action = Action::Tx(0);

fn rows() -> Vec<Row> {
    use DropReason::*;
    let syn = c2v(tcp(40000, 80, "S")).bytes();
    let tagged = |tpid: [u8; 2]| {
        let mut t = syn[..12].to_vec();
        t.extend_from_slice(&tpid);
        t.extend_from_slice(&[0, 100]);
        t.extend_from_slice(&syn[12..]);
        t
    };
    let mut padded = c2v(udp(5000, 53)).bytes();
    padded.extend_from_slice(&[0; 6]);
    let martian = |src: Ipv4Addr| with(c2v(tcp(1, 80, "S")), |f| f.src = v4(src));
    let martian6 = |src: &str| {
        with(c2v6(tcp(1, 80, "S")), |f| {
            f.src = IpAddr::V6(src.parse::<Ipv6Addr>().unwrap())
        })
    };
    vec![
        // Ethernet.
        row(
            "E1",
            "shorter than an Ethernet header",
            syn[..13].to_vec(),
            drop(EthMalformed),
        ),
        row(
            "E2",
            "unicast to another MAC",
            patch(syn.clone(), 0, &RS2_MAC),
            drop(NotOurMac),
        ),
        row(
            "E3",
            "multicast source MAC",
            patch(syn.clone(), 6, &[0x01, 0, 0x5e, 0, 0, 1]),
            drop(SrcMacInvalid),
        ),
        row(
            "E3",
            "zero source MAC",
            patch(syn.clone(), 6, &[0; 6]),
            drop(SrcMacInvalid),
        ),
        row(
            "E4",
            "802.1Q tagged, a VLAN the port does not carry",
            tagged([0x81, 0x00]),
            drop(UnknownVlan),
        ),
        row(
            "E4b",
            "802.1p priority tag (802.1Q, VLAN id 0)",
            [&syn[..12], &[0x81, 0x00, 0xa0, 0x00], &syn[12..]].concat(),
            TX,
        ),
        row(
            "E5",
            "802.1ad (QinQ) tagged",
            tagged([0x88, 0xa8]),
            drop(VlanTagged),
        ),
        row(
            "E6",
            "other EtherType (LLDP)",
            patch(syn.clone(), 12, &[0x88, 0xcc]),
            drop(UnsupportedEthertype),
        ),
        row(
            "E7",
            "IP in a broadcast frame",
            patch(syn.clone(), 0, &[0xff; 6]),
            drop(LinkMulticast),
        ),
        row("E8", "Ethernet padding after the IP packet", padded, TX),
        // ARP.
        row(
            "A1",
            "request for a VIP",
            arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP),
            TX,
        ),
        row(
            "A2",
            "request for a port address",
            arp_frame(1, ROUTER_MAC, ROUTER_IP, LB_IP),
            TX,
        ),
        row(
            "A3",
            "request for another address",
            arp_frame(1, ROUTER_MAC, ROUTER_IP, RS2_IP),
            drop(ArpIgnored),
        ),
        row(
            "A4",
            "reply to us",
            patch(arp_frame(2, RS1_MAC, RS1_IP, LB_IP), 0, &LB_MAC),
            Action::ToControl,
        ),
        row(
            "A5",
            "gratuitous ARP moving a known neighbour",
            arp_frame(1, [2, 0, 0, 0, 0, 0x77], RS1_IP, RS1_IP),
            Action::ToControl,
        ),
        row(
            "A6",
            "truncated",
            arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP)[..40].to_vec(),
            drop(ArpIgnored),
        ),
        row(
            "A7",
            "multicast sender MAC",
            patch(arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP), 22, &[1]),
            drop(ArpInvalid),
        ),
        row(
            "A7",
            "broadcast sender address",
            arp_frame(1, ROUTER_MAC, Ipv4Addr::BROADCAST, VIP),
            drop(ArpInvalid),
        ),
        row(
            "A8",
            "probe (sender 0.0.0.0) for a VIP",
            arp_frame(1, ROUTER_MAC, Ipv4Addr::UNSPECIFIED, VIP),
            TX,
        ),
        // IPv4 header.
        row(
            "4.1",
            "IPv4 header truncated",
            syn[..14 + 19].to_vec(),
            drop(Ipv4Malformed),
        ),
        row(
            "4.2",
            "IHL below 5",
            fix4(patch(syn.clone(), 14, &[0x44])),
            drop(Ipv4Malformed),
        ),
        row(
            "4.3",
            "IHL past the packet",
            fix4(patch(syn[..14 + 40].to_vec(), 14, &[0x4f])),
            drop(Ipv4Malformed),
        ),
        row(
            "4.4",
            "total length past the frame",
            fix4(patch(syn.clone(), 16, &[0x05, 0xdc])),
            drop(Ipv4Malformed),
        ),
        row(
            "4.5",
            "total length below the header",
            fix4(patch(syn.clone(), 16, &[0, 19])),
            drop(Ipv4Malformed),
        ),
        row(
            "4.6",
            "version 6 in an IPv4 EtherType",
            fix4(patch(syn.clone(), 14, &[0x65])),
            drop(Ipv4Malformed),
        ),
        row(
            "4.7",
            "header checksum wrong",
            patch(syn.clone(), 24, &[0xde, 0xad]),
            drop(Ipv4BadChecksum),
        ),
        row(
            "4.8",
            "IPv4 options",
            with(c2v(tcp(40000, 80, "S")), |f| {
                f.ip_options = vec![1, 1, 1, 0]
            }),
            TX,
        ),
        row(
            "4.9",
            "TTL 0",
            with(c2v(tcp(40000, 80, "S")), |f| f.ttl = 0),
            drop(TtlZero),
        ),
        row(
            "4.10",
            "TTL 1, NAT",
            with(c2v(tcp(40000, 80, "S")), |f| f.ttl = 1),
            drop(TtlExceeded),
        ),
        row(
            "4.11",
            "TTL 1, DR",
            with(c2v(tcp(40000, 443, "S")), |f| f.ttl = 1),
            TX,
        ),
        row(
            "4.12",
            "TTL 1, TUN",
            with(c2v(tcp(40000, 8443, "S")), |f| f.ttl = 1),
            TX,
        ),
        row(
            "4.13",
            "source 0.0.0.0/8",
            martian(Ipv4Addr::new(0, 1, 2, 3)),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source 127.0.0.0/8",
            martian(Ipv4Addr::LOCALHOST),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source multicast",
            martian(Ipv4Addr::new(224, 0, 0, 9)),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source 240/4",
            martian(Ipv4Addr::new(250, 1, 1, 1)),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source limited broadcast",
            martian(Ipv4Addr::BROADCAST),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source the port subnet's broadcast",
            martian(Ipv4Addr::new(10, 0, 0, 255)),
            drop(MartianSource),
        ),
        row(
            "4.13",
            "source our own address",
            martian(LB_IP),
            drop(MartianSource),
        ),
        row(
            "4.14",
            "LAND (source = destination)",
            martian(VIP),
            drop(MartianSource),
        ),
        row(
            "4.20",
            "destination multicast (NAT reply to a group)",
            Frame::new(
                RS1_MAC,
                LB_MAC,
                v4(RS1_IP),
                v4(Ipv4Addr::new(239, 1, 1, 1)),
                udp(5353, 5000),
                b"x",
            )
            .bytes(),
            drop(MartianDestination),
        ),
        row(
            "4.20",
            "destination limited broadcast",
            echo4(Ipv4Addr::BROADCAST),
            drop(MartianDestination),
        ),
        row(
            "4.15",
            "other protocol (GRE) to a VIP",
            fix4(patch(syn.clone(), 23, &[47])),
            drop(UnsupportedProtocol),
        ),
        row(
            "4.16",
            "TCP to our own address",
            with(c2v(tcp(1, 22, "S")), |f| f.dst = v4(LB_IP)),
            drop(LocalUnhandled),
        ),
        row(
            "4.17",
            "to an address not ours",
            with(c2v(tcp(1, 80, "S")), |f| f.dst = v4(RS2_IP)),
            drop(NotLocal),
        ),
        row(
            "4.18",
            "DF, over the egress MTU (NAT): too-big answered",
            Frame {
                payload: vec![0; 1480],
                ..c2v(udp(5000, 53))
            }
            .bytes(),
            TX,
        ),
        row(
            "4.19",
            "no DF, over the egress MTU",
            Frame {
                payload: vec![0; 1480],
                dont_fragment: false,
                ..c2v(udp(5000, 53))
            }
            .bytes(),
            drop(TooBig),
        ),
        // IPv6 header.
        row(
            "6.1",
            "IPv6 header truncated",
            c2v6(tcp(1, 80, "S")).bytes()[..14 + 39].to_vec(),
            drop(Ipv6Malformed),
        ),
        row(
            "6.2",
            "payload length past the frame",
            patch(c2v6(tcp(1, 80, "S")).bytes(), 18, &[0x05, 0xdc]),
            drop(Ipv6Malformed),
        ),
        row(
            "6.3",
            "payload length cuts the TCP header",
            patch(c2v6(tcp(1, 80, "S")).bytes(), 18, &[0, 10]),
            drop(L4Malformed),
        ),
        row(
            "6.4",
            "hop-by-hop options header",
            ext6(0, [1, 4, 0, 0, 0, 0]),
            drop(Ipv6ExtHeader),
        ),
        row(
            "6.5",
            "routing header",
            ext6(43, [0, 0, 0, 0, 0, 0]),
            drop(Ipv6ExtHeader),
        ),
        row(
            "6.6",
            "destination options header",
            ext6(60, [1, 4, 0, 0, 0, 0]),
            drop(Ipv6ExtHeader),
        ),
        row(
            "6.7",
            "chain: fragment then hop-by-hop",
            patch(ext6(44, [0, 0, 0, 0, 0, 1]), 54, &[0]),
            drop(Ipv6ExtHeader),
        ),
        row(
            "6.8",
            "atomic fragment (RFC 6946)",
            ext6(44, [0, 0, 0, 0, 0, 7]),
            TX,
        ),
        row(
            "6.9",
            "IPv4-mapped source",
            martian6("::ffff:192.0.2.50"),
            drop(Ipv6Mapped),
        ),
        row(
            "6.10",
            "hop limit 0",
            with(c2v6(tcp(1, 80, "S")), |f| f.ttl = 0),
            drop(TtlZero),
        ),
        row(
            "6.11",
            "hop limit 1, NAT66",
            with(c2v6(tcp(1, 80, "S")), |f| f.ttl = 1),
            drop(TtlExceeded),
        ),
        row("6.12", "source ::", martian6("::"), drop(MartianSource)),
        row("6.12", "source ::1", martian6("::1"), drop(MartianSource)),
        row(
            "6.12",
            "source multicast",
            martian6("ff02::1"),
            drop(MartianSource),
        ),
        row(
            "6.13",
            "over the egress MTU",
            Frame {
                payload: vec![0; 1461],
                ..c2v6(tcp(1, 80, "S"))
            }
            .bytes(),
            TX,
        ),
        // TCP.
        row(
            "T1",
            "TCP header truncated",
            fix4(patch(syn[..14 + 20 + 12].to_vec(), 16, &[0, 32])),
            drop(L4Malformed),
        ),
        row(
            "T2",
            "data offset below 5",
            patch(c2v(tcp(1, 80, "S")).bytes(), 46, &[0x40]),
            drop(L4Malformed),
        ),
        row(
            "T3",
            "data offset past the segment",
            patch(c2v(tcp(1, 80, "S")).bytes(), 46, &[0xf0]),
            drop(L4Malformed),
        ),
        row(
            "T4",
            "no flags",
            c2v(tcp(1, 80, "")).bytes(),
            drop(TcpBadFlags),
        ),
        row(
            "T5",
            "SYN+FIN",
            c2v(tcp(1, 80, "SF")).bytes(),
            drop(TcpBadFlags),
        ),
        row(
            "T6",
            "SYN+RST",
            c2v(tcp(1, 80, "SR")).bytes(),
            drop(TcpBadFlags),
        ),
        row(
            "T7",
            "FIN without ACK",
            c2v(tcp(1, 80, "F")).bytes(),
            drop(TcpBadFlags),
        ),
        row(
            "T8",
            "ACK without a flow (stateless)",
            c2v(tcp(1, 80, "A")).bytes(),
            TX,
        ),
        row(
            "T9",
            "RST without a flow (stateless)",
            c2v(tcp(1, 80, "R")).bytes(),
            TX,
        ),
        row("T10", "lone SYN", syn.clone(), TX),
        row(
            "T11",
            "TCP checksum wrong (forwarded, stays wrong)",
            patch(syn.clone(), 50, &[0xde, 0xad]),
            TX,
        ),
        row(
            "T12",
            "VIP port without service",
            c2v(tcp(1, 81, "S")).bytes(),
            drop(NoService),
        ),
        // UDP.
        row(
            "U1",
            "UDP header truncated",
            fix4(patch(
                c2v(udp(1, 53)).bytes()[..14 + 20 + 6].to_vec(),
                16,
                &[0, 26],
            )),
            drop(L4Malformed),
        ),
        row(
            "U2",
            "UDP length past the packet",
            patch(c2v(udp(1, 53)).bytes(), 38, &[0x05, 0xdc]),
            drop(L4Malformed),
        ),
        row(
            "U3",
            "UDP length below 8",
            patch(c2v(udp(1, 53)).bytes(), 38, &[0, 7]),
            drop(L4Malformed),
        ),
        row(
            "U4",
            "UDP without checksum (IPv4)",
            c2v(L4::Udp {
                sport: 1,
                dport: 53,
                zero_checksum: true,
            })
            .bytes(),
            TX,
        ),
        row("U5", "UDP over IPv6, DR", c2v6(udp(1, 443)).bytes(), TX),
        // ICMP.
        row("I1", "echo request to a VIP", echo4(VIP), TX),
        row("I1", "echo request to a port address", echo4(LB_IP), TX),
        row(
            "I2",
            "echo request, checksum wrong",
            patch(echo4(VIP), 36, &[0xde, 0xad]),
            drop(IcmpBadChecksum),
        ),
        row(
            "I3",
            "ICMP shorter than 8 bytes",
            fix4(patch(echo4(VIP)[..14 + 20 + 6].to_vec(), 16, &[0, 26])),
            drop(L4Malformed),
        ),
        row(
            "I4",
            "error to a VIP about a service",
            error_to_vip(None, 80),
            TX,
        ),
        row(
            "I5",
            "error quoting a VIP port without service",
            error_to_vip(None, 81),
            drop(IcmpErrorNoFlow),
        ),
        row(
            "I6",
            "error quote cut inside the ports",
            error_to_vip(Some(22), 80),
            drop(IcmpQuoteMalformed),
        ),
        row(
            "I7",
            "echo request to an address not ours",
            echo4(RS2_IP),
            drop(NotLocal),
        ),
        row(
            "I8",
            "ICMP fragment",
            fix4(patch(echo4(VIP), 20, &[0x20, 0])),
            drop(FragmentInvalid),
        ),
        // Fragments.
        row("F1", "first fragment (UDP)", frag4(0, true, false), TX),
        Row {
            setup: vec![frag4(0, true, false)],
            ..row(
                "F2",
                "later fragment after its first",
                frag4(1000, false, false),
                TX,
            )
        },
        row(
            "F3",
            "later fragment, first never seen",
            frag4(1000, false, false),
            drop(FragmentUnknown),
        ),
        row(
            "F6",
            "later fragment, first never seen, to a 3-tuple service",
            fragment_of(
                Frame::new(
                    ROUTER_MAC,
                    LB_MAC,
                    v4(CLIENT_IP),
                    v4(VIP_3TUPLE),
                    udp(5000, 4500),
                    b"",
                ),
                1000,
                false,
            ),
            TX,
        ),
        row(
            "F4",
            "first fragment too short for the TCP header",
            {
                let f = frag4(0, true, true);
                fix4(patch(f[..14 + 20 + 16].to_vec(), 16, &[0, 36]))
            },
            drop(FragmentInvalid),
        ),
        row(
            "F5",
            "TCP fragment at offset 8",
            frag4(8, true, true),
            drop(FragmentInvalid),
        ),
    ]
}

#[test]
fn every_frame_class_has_its_decision() {
    let snap = snapshot_with_port(|p| p.mtu = 1480);
    let mut failures = Vec::new();
    for r in rows() {
        let mut w = worker(0, 1);
        for s in &r.setup {
            run1(&mut w, &snap, s, 1);
        }
        let (got, _) = run1(&mut w, &snap, &r.frame, 2);
        if got != r.want {
            failures.push(format!("{} {}: {:?}, want {:?}", r.id, r.what, got, r.want));
        } else if let Action::Drop(c) = r.want {
            assert_eq!(w.counters.get(c), 1, "{} {}: counted once", r.id, r.what);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncated_at_every_offset_is_a_counted_drop() {
    let snap = snapshot();
    let frames = [
        c2v(tcp(40000, 80, "S")).bytes(),
        c2v(udp(5000, 53)).bytes(),
        c2v6(tcp(40000, 80, "S")).bytes(),
        c2v6(udp(5000, 443)).bytes(),
        echo4(VIP),
        error_to_vip(None, 80),
        arp_frame(1, ROUTER_MAC, ROUTER_IP, VIP),
        frag4(0, true, false),
        ext6(44, [0, 0, 0, 0, 0, 7]),
    ];
    for f in &frames {
        for cut in 0..f.len() {
            let mut w = worker(0, 1);
            let (got, _) = run1(&mut w, &snap, &f[..cut], 1);
            assert!(
                matches!(got, Action::Drop(_)),
                "cut at {cut} of {} bytes: {got:?}",
                f.len()
            );
            assert_eq!(w.counters.total_drops(), 1);
            assert_eq!(w.flows.len(), 0, "a truncated frame made state");
        }
    }
}
