//! Every header view on arbitrary bytes: `new_checked` either refuses or gives a view whose
//! every accessor works, and what it reads equals what etherparse reads (a differential
//! oracle). The first byte picks the view; the rest is the buffer.

use crate::Reader;
use std::net::{Ipv4Addr, Ipv6Addr};
use vipd_dataplane::fwd::icmp_relay;
use vipd_dataplane::wire::addr;
use vipd_dataplane::wire::arp::ArpPacket;
use vipd_dataplane::wire::checksum;
use vipd_dataplane::wire::ethernet::EthernetFrame;
use vipd_dataplane::wire::icmp::IcmpPacket;
use vipd_dataplane::wire::ipv4::Ipv4Packet;
use vipd_dataplane::wire::ipv6::{FragmentHeader, Ipv6Packet};
use vipd_dataplane::wire::ndisc::NdiscPacket;
use vipd_dataplane::wire::tcp::TcpPacket;
use vipd_dataplane::wire::udp::UdpPacket;

/// Run one input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let Some(which) = r.byte() else { return };
    let b = r.rest();
    match which % 10 {
        0 => ethernet(b),
        1 => ipv4(b),
        2 => ipv6(b),
        3 => tcp(b),
        4 => udp(b),
        5 => icmp_and_nd(b),
        6 => arp(b),
        7 => fragment_header(b),
        8 => quote(b),
        _ => addresses_and_checksums(b),
    }
}

fn ethernet(b: &[u8]) {
    let ours = EthernetFrame::new_checked(b);
    let theirs = etherparse::Ethernet2HeaderSlice::from_slice(b);
    assert_eq!(
        ours.is_ok(),
        theirs.is_ok() && (b.len() >= 18 || b[12..14] != [0x81, 0])
    );
    if let (Ok(e), Ok(t)) = (ours, theirs) {
        assert_eq!(e.dst().0, t.destination());
        assert_eq!(e.src().0, t.source());
        let _ = (
            e.ethertype(),
            e.vlan_id(),
            e.payload().len(),
            e.header_len(),
        );
    }
    // The 802.1Q view agrees with etherparse on the tag of a frame that has one.
    let ours = vipd_dataplane::wire::vlan::VlanHeader::new_checked(b);
    assert_eq!(ours.is_ok(), b.len() >= 18 && b[12..14] == [0x81, 0]);
    if let Ok(v) = ours {
        let t = etherparse::SingleVlanHeaderSlice::from_slice(&b[14..]);
        if let Ok(t) = t {
            assert_eq!(v.vid(), t.vlan_identifier().value());
            assert_eq!(v.pcp(), t.priority_code_point().value());
            assert_eq!(v.inner_ethertype(), t.ether_type().0);
        }
    }
}

fn ipv4(b: &[u8]) {
    let ours = Ipv4Packet::new_checked(b);
    let theirs = etherparse::Ipv4HeaderSlice::from_slice(b);
    match (&ours, &theirs) {
        (Ok(p), Ok(t)) => {
            assert_eq!(p.header_len(), usize::from(t.ihl()) * 4);
            assert_eq!(p.total_len(), t.total_len());
            assert_eq!(p.src(), t.source_addr());
            assert_eq!(p.dst(), t.destination_addr());
            assert_eq!(p.ttl(), t.ttl());
            assert_eq!(p.protocol(), t.protocol().0);
            assert_eq!(p.ident(), t.identification());
            assert_eq!(p.dont_frag(), t.dont_fragment());
            assert_eq!(p.more_fragments(), t.more_fragments());
            assert_eq!(p.frag_offset(), t.fragments_offset().byte_offset());
            assert_eq!(p.is_fragment(), t.is_fragmenting_payload());
            // Summed over the header's bytes: etherparse's Ipv4Header has no field for the
            // reserved flag bit, so recomputing through it would sum another header.
            let want = etherparse::checksum::Sum16BitWords::new()
                .add_slice(t.slice())
                .ones_complement()
                == 0;
            assert_eq!(p.verify_checksum(), want, "header checksum verdicts differ");
            let _ = (p.tos(), p.payload().len(), p.header().len(), p.checksum());
        }
        (Ok(_), Err(e)) => panic!("vipd accepts an IPv4 header etherparse refuses: {e}"),
        (Err(_), Ok(t)) => {
            // etherparse accepts a total length below the header length (0 is what segmentation
            // offload leaves); on the wire that is malformed, and vipd refuses it.
            let total = usize::from(t.total_len());
            assert!(
                total > b.len() || total < usize::from(t.ihl()) * 4,
                "vipd refuses an IPv4 header etherparse accepts (total length fits)"
            );
        }
        (Err(_), Err(_)) => {}
    }
}

fn ipv6(b: &[u8]) {
    let ours = Ipv6Packet::new_checked(b);
    let theirs = etherparse::Ipv6HeaderSlice::from_slice(b);
    match (&ours, &theirs) {
        (Ok(p), Ok(t)) => {
            assert_eq!(p.payload_len(), t.payload_length());
            assert_eq!(p.next_header(), t.next_header().0);
            assert_eq!(p.hop_limit(), t.hop_limit());
            assert_eq!(p.src(), t.source_addr());
            assert_eq!(p.dst(), t.destination_addr());
            assert_eq!(p.traffic_class(), t.traffic_class());
            assert_eq!(p.flow_label(), t.flow_label().value());
            assert_eq!(p.payload().len(), usize::from(t.payload_length()));
        }
        (Ok(_), Err(e)) => panic!("vipd accepts an IPv6 header etherparse refuses: {e}"),
        (Err(_), Ok(t)) => assert!(40 + usize::from(t.payload_length()) > b.len()),
        (Err(_), Err(_)) => {}
    }
}

fn tcp(b: &[u8]) {
    let ours = TcpPacket::new_checked(b);
    let theirs = etherparse::TcpHeaderSlice::from_slice(b);
    assert_eq!(ours.is_ok(), theirs.is_ok(), "TCP header verdicts differ");
    if let (Ok(p), Ok(t)) = (ours, theirs) {
        assert_eq!(p.src_port(), t.source_port());
        assert_eq!(p.dst_port(), t.destination_port());
        assert_eq!(p.seq(), t.sequence_number());
        assert_eq!(p.ack_number(), t.acknowledgment_number());
        assert_eq!(p.header_len(), t.slice().len());
        assert_eq!(p.options(), t.options());
        assert_eq!(p.window(), t.window_size());
        assert_eq!(p.checksum(), t.checksum());
        assert_eq!(p.flags() & 0x3f, b[13] & 0x3f);
    }
}

fn udp(b: &[u8]) {
    let ours = UdpPacket::new_checked(b);
    let header_only = UdpPacket::new_header_checked(b);
    let theirs = etherparse::UdpHeaderSlice::from_slice(b);
    assert_eq!(header_only.is_ok(), theirs.is_ok());
    if let Ok(t) = theirs {
        let valid_len = (8..=b.len()).contains(&usize::from(t.length()));
        assert_eq!(ours.is_ok(), valid_len, "UDP length verdict");
        if let Ok(p) = ours {
            assert_eq!(p.src_port(), t.source_port());
            assert_eq!(p.dst_port(), t.destination_port());
            assert_eq!(p.len(), t.length());
            assert_eq!(p.checksum(), t.checksum());
            let _ = p.is_empty();
        }
    } else {
        assert!(ours.is_err());
    }
}

fn icmp_and_nd(b: &[u8]) {
    if let Ok(m) = IcmpPacket::new_checked(b) {
        let _ = (
            m.msg_type(),
            m.code(),
            m.checksum(),
            m.echo_ident(),
            m.echo_seq(),
        );
        let want = etherparse::checksum::Sum16BitWords::new()
            .add_slice(b)
            .ones_complement()
            == 0;
        assert_eq!(m.verify_checksum_v4(), want, "ICMPv4 checksum verdict");
        let _ = m.verify_checksum_v6(&[1; 16], &[2; 16]);
    } else {
        assert!(b.len() < 8);
    }
    if let Ok(nd) = NdiscPacket::new_checked(b) {
        let _ = (
            nd.msg_type(),
            nd.code(),
            nd.flags(),
            nd.target(),
            nd.checksum(),
        );
        let _ = (
            nd.source_ll_addr(),
            nd.target_ll_addr(),
            nd.options().count(),
        );
        let _ = nd.verify_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED);
    }
}

fn arp(b: &[u8]) {
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (
            a.operation(),
            a.sender_mac(),
            a.sender_ip(),
            a.target_mac(),
            a.target_ip(),
        );
        assert!(b.len() >= 28);
        assert_eq!(a.sender_ip(), Ipv4Addr::new(b[14], b[15], b[16], b[17]));
    }
}

/// vipd's IPv6 Fragment header against RFC 8200 4.5 decoded here by hand.
fn fragment_header(b: &[u8]) {
    match FragmentHeader::parse(b) {
        Ok(f) => {
            let word = u16::from_be_bytes([b[2], b[3]]);
            assert_eq!(f.next_header, b[0]);
            assert_eq!(f.offset, (word >> 3) * 8);
            assert_eq!(f.more, word & 1 == 1);
            assert_eq!(f.ident, u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
            assert_eq!(f.is_atomic(), word & 0xfff9 == 0);
        }
        Err(_) => assert!(b.len() < 8),
    }
}

/// The quoted packet of an ICMP error: refused, or within the message and consistent with
/// etherparse's reading of the quoted header.
fn quote(b: &[u8]) {
    for v4 in [true, false] {
        if let Ok(q) = icmp_relay::parse(b, 0, b.len(), v4) {
            assert!(q.ip == 8 && q.l4 + 8 <= q.end && q.end == b.len());
            let inner = &b[8..];
            if v4 {
                let t = etherparse::Ipv4HeaderSlice::from_slice(inner)
                    .unwrap_or_else(|e| panic!("quote accepted, etherparse refuses: {e}"));
                assert_eq!(q.key.src_ip(), std::net::IpAddr::V4(t.source_addr()));
                assert_eq!(q.l4, 8 + t.slice().len());
            } else {
                let t = etherparse::Ipv6HeaderSlice::from_slice(inner)
                    .unwrap_or_else(|e| panic!("quote accepted, etherparse refuses: {e}"));
                assert_eq!(q.key.dst_ip(), std::net::IpAddr::V6(t.destination_addr()));
            }
            assert!(q.key.proto == 6 || q.key.proto == 17);
        }
    }
}

/// The address classes against the standard library's, and the incremental checksum update
/// against a full recompute.
fn addresses_and_checksums(b: &[u8]) {
    if b.len() >= 16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        let ip = Ipv6Addr::from(a);
        let std_v6 = !ip.is_unspecified()
            && !ip.is_loopback()
            && !ip.is_multicast()
            && ip.to_ipv4_mapped().is_none();
        if !addr::is_mapped(&a) {
            assert_eq!(addr::is_unicast_source(&a), std_v6);
        }
        let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let std_v4 = !v4.is_unspecified()
            && b[0] != 0
            && !v4.is_loopback()
            && !v4.is_multicast()
            && !v4.is_broadcast()
            && b[0] < 240;
        assert_eq!(addr::is_unicast_source_v4(v4.octets()), std_v4);
    }
    if b.len() >= 4 && b.len().is_multiple_of(2) {
        let (at, new) = (usize::from(b[0]) % (b.len() / 2) * 2, [b[1], b[2]]);
        let mut data = b.to_vec();
        data[0] = 0;
        data[1] = 0;
        let c = checksum::finish(checksum::sum(&data));
        data[..2].copy_from_slice(&c.to_be_bytes());
        // RFC 1624's equation 3 yields 0x0000 instead of 0xffff only when all the covered
        // data ends up zero, which no IP, TCP or UDP header is (version, protocol): skipped.
        if at >= 2 {
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new);
            if data[2..].iter().all(|&x| x == 0) {
                return;
            }
            let inc = checksum::update16(c, old, u16::from_be_bytes(new));
            data[..2].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(
                checksum::fold(checksum::sum(&data)),
                0xffff,
                "incremental update differs from a full recompute"
            );
        }
    }
}
