//! ICMP errors vipd originates: "fragmentation needed and DF set" (ICMP type 3 code 4,
//! RFC 792/1191) and ICMPv6 "packet too big" (type 2, RFC 4443), sent back to the sender of a
//! packet that does not fit the tunnel to its real server (see [`super::tunnel`]), so that its
//! path MTU discovery shrinks the packets of the connection.
//!
//! The error is built in place from the received frame: the invoking packet stays where it is
//! and becomes the quoted part; a new IP + ICMP header is written in front of it (the frame
//! grows by 28 or 48 bytes) and the tail beyond the size limit is cut (576 bytes for IPv4,
//! RFC 1812 4.3.2.3; 1280 for IPv6, RFC 4443 2.4(c)).
//!
//! No error is sent where RFC 1812 4.3.2.7 / RFC 4443 2.4(e) forbid one: for an ICMP error, a
//! non-initial fragment, a source that is not a unicast address, a link-layer multicast or
//! broadcast frame, or an IPv4 multicast or broadcast destination. The caller should also rate
//! limit the errors it sends (RFC 1812 4.3.2.8, RFC 4443 2.4(f)).

use crate::counters::DropReason;
use crate::io::PacketBuf;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::icmp::{v4, v6, HEADER_LEN as ICMP_LEN};
use crate::wire::ipv4::{self, proto, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet, NEXT_HEADER_ICMPV6};
use crate::wire::{be16, set_be16};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest ICMPv4 error vipd sends (IP header included), RFC 1812 4.3.2.3.
pub const MAX_LEN_V4: usize = 576;
/// Largest ICMPv6 error vipd sends (IPv6 header included): the IPv6 minimum MTU, RFC 4443.
pub const MAX_LEN_V6: usize = 1280;
/// TTL / hop limit of the errors.
pub const TTL: u8 = 64;
/// TOS / traffic class of the errors: CS6 (network control), as Linux marks its ICMP errors.
pub const TOS: u8 = 0xc0;

/// Turn a received frame (Ethernet, `l2_len` 14 or 18 with an 802.1Q tag, then the IP packet
/// as received) into the "too big" error to its sender, in place.
///
/// IPv4: ICMP type 3 code 4 with next-hop MTU `mtu`, quoting the original IP header and as much
/// of its payload as keeps the error within [`MAX_LEN_V4`] bytes. IPv6: ICMPv6 type 2 with MTU
/// `mtu`, quoting as much of the packet as keeps the error within [`MAX_LEN_V6`] bytes. The
/// new IP header goes from `from` (the VIP the client spoke to; same family as the packet) to
/// the original source, TTL / hop limit [`TTL`], TOS / traffic class [`TOS`]; all checksums are
/// computed. The Ethernet source and destination MACs are swapped (the frame goes back the way
/// it came; the caller may override them); the VLAN tag and EtherType are kept.
///
/// Errors: [`DropReason::IcmpErrorSuppressed`] where no error may be sent (see the module
/// documentation) or `from` is of the other family, [`DropReason::NoHeadroom`] if the frame
/// cannot grow, or the malformed-input counters. On error the frame is left untouched.
pub fn too_big<B: PacketBuf>(
    buf: &mut B,
    l2_len: usize,
    from: IpAddr,
    mtu: u16,
) -> Result<(), DropReason> {
    let frame = buf.data();
    if l2_len != ethernet::HEADER_LEN && l2_len != ethernet::VLAN_HEADER_LEN {
        return Err(DropReason::EthMalformed);
    }
    let l3 = frame.get(l2_len..).ok_or(DropReason::EthMalformed)?;
    if frame[0] & 1 == 1 {
        // Sent to a link-layer multicast or broadcast address.
        return Err(DropReason::IcmpErrorSuppressed);
    }
    match (be16(frame, l2_len - 2), from) {
        (ethertype::IPV4, IpAddr::V4(from)) => {
            let ip = Ipv4Packet::new_checked(l3).map_err(|_| DropReason::Ipv4Malformed)?;
            let frag_offset = be16(l3, 6) & 0x1fff;
            if !unicast_v4(ip.src())
                || !unicast_v4(ip.dst())
                || frag_offset != 0
                || (ip.protocol() == proto::ICMP && !icmp_v4_may_answer(ip.payload()))
            {
                return Err(DropReason::IcmpErrorSuppressed);
            }
            let quote = usize::from(ip.total_len()).min(MAX_LEN_V4 - ipv4::HEADER_LEN - ICMP_LEN);
            let (to, ident) = (ip.src(), ip.ident());
            let rest = grow(buf, l2_len, ipv4::HEADER_LEN + ICMP_LEN, quote)?;
            ipv4::emit_header(
                rest,
                TOS,
                (ipv4::HEADER_LEN + ICMP_LEN + quote) as u16,
                // The client's identification for its packet: varies per packet and comes
                // with another (source, destination, protocol) than the client's own packets.
                ident,
                false,
                TTL,
                proto::ICMP,
                from,
                to,
            );
            let icmp = &mut rest[ipv4::HEADER_LEN..];
            let [hi, lo] = mtu.to_be_bytes();
            // Type, code, checksum (below), unused, next-hop MTU (RFC 1191).
            icmp[..ICMP_LEN].copy_from_slice(&[
                v4::DEST_UNREACHABLE,
                v4::CODE_FRAG_NEEDED,
                0,
                0,
                0,
                0,
                hi,
                lo,
            ]);
            let c = checksum::finish(checksum::sum(icmp));
            set_be16(icmp, 2, c);
            Ok(())
        }
        (ethertype::IPV6, IpAddr::V6(from)) => {
            let ip = Ipv6Packet::new_checked(l3).map_err(|_| DropReason::Ipv6Malformed)?;
            // Extension headers are not walked: vipd tunnels TCP and UDP, whose next header
            // is the fixed header's.
            if !unicast_v6(ip.src())
                || (ip.next_header() == NEXT_HEADER_ICMPV6 && !icmp_v6_may_answer(ip.payload()))
            {
                return Err(DropReason::IcmpErrorSuppressed);
            }
            let quote = (ipv6::HEADER_LEN + usize::from(ip.payload_len()))
                .min(MAX_LEN_V6 - ipv6::HEADER_LEN - ICMP_LEN);
            let to = ip.src();
            let rest = grow(buf, l2_len, ipv6::HEADER_LEN + ICMP_LEN, quote)?;
            let icmp_len = ICMP_LEN + quote;
            ipv6::emit_header(
                rest,
                TOS,
                0,
                icmp_len as u16,
                NEXT_HEADER_ICMPV6,
                TTL,
                from,
                to,
            );
            let icmp = &mut rest[ipv6::HEADER_LEN..];
            let [_, _, hi, lo] = u32::from(mtu).to_be_bytes();
            // Type, code, checksum (below), MTU (32 bits).
            icmp[..ICMP_LEN].copy_from_slice(&[v6::PACKET_TOO_BIG, 0, 0, 0, 0, 0, hi, lo]);
            let pseudo = checksum::pseudo_v6(
                &from.octets(),
                &to.octets(),
                NEXT_HEADER_ICMPV6,
                icmp_len as u32,
            );
            let c = checksum::finish(pseudo + checksum::sum(icmp));
            set_be16(icmp, 2, c);
            Ok(())
        }
        // No address of the packet's family to send the error from.
        (ethertype::IPV4 | ethertype::IPV6, _) => Err(DropReason::IcmpErrorSuppressed),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// Grow the frame by `room` bytes at the front, move the Ethernet header there with its MACs
/// swapped, and cut it to `l2_len + room + quote`. Returns the bytes after the Ethernet header:
/// `room` bytes for the new headers, then the quoted start of the original packet.
fn grow<B: PacketBuf>(
    buf: &mut B,
    l2_len: usize,
    room: usize,
    quote: usize,
) -> Result<&mut [u8], DropReason> {
    if !buf.prepend(room) {
        return Err(DropReason::NoHeadroom);
    }
    // Cannot fail: `quote` is at most the original packet's length, already in the frame.
    if !buf.trim_to(l2_len + room + quote) {
        return Err(DropReason::EthMalformed);
    }
    let frame = buf.data_mut();
    frame.copy_within(room..room + l2_len, 0);
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&frame[..6]);
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&dst);
    Ok(&mut frame[l2_len..])
}

/// A unicast address a host may send from (not 0.0.0.0/8, loopback, multicast or 240/4, which
/// holds the limited broadcast).
fn unicast_v4(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first != 0 && !a.is_loopback() && first < 224
}

/// A unicast address (not unspecified, loopback or multicast).
fn unicast_v6(a: Ipv6Addr) -> bool {
    !a.is_unspecified() && !a.is_loopback() && !a.is_multicast()
}

/// Whether an ICMP message may be answered with an error: not an error itself (destination
/// unreachable, source quench, redirect, time exceeded, parameter problem) nor truncated.
fn icmp_v4_may_answer(icmp: &[u8]) -> bool {
    matches!(icmp.first(), Some(t) if !matches!(t, 3 | 4 | 5 | 11 | 12))
}

/// Whether an ICMPv6 message may be answered with an error: informational (type >= 128).
fn icmp_v6_may_answer(icmp: &[u8]) -> bool {
    matches!(icmp.first(), Some(&t) if t >= 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::tunnel::tests::{
        frame, inner_ip, outer, sized_inner, v4, v6, NoHeadroom, DST_MAC, PAYLOAD, SRC_MAC,
    };
    use crate::fwd::tunnel::{encapsulate, TunnelError};
    use crate::io::mem::VecBuf;
    use etherparse::{
        EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber,
        Ipv4Header, Ipv6Header, SingleVlanHeader,
    };

    /// Check the Ethernet header was turned around (MACs swapped, VLAN tag kept) and return
    /// the L3 bytes and the EtherType.
    fn parse_l2(out: &[u8], vlan: Option<u16>) -> (&[u8], EtherType) {
        let (eth, rest) = Ethernet2Header::from_slice(out).unwrap();
        assert_eq!(eth.source, DST_MAC, "MACs swapped");
        assert_eq!(eth.destination, SRC_MAC);
        match vlan {
            Some(id) => {
                let (tag, rest) = SingleVlanHeader::from_slice(rest).unwrap();
                assert_eq!(tag.vlan_id.value(), id);
                (rest, tag.ether_type)
            }
            None => (rest, eth.ether_type),
        }
    }

    fn check_v4(inner_len: usize, vlan: Option<u16>, padding: usize) {
        let client = v4("192.0.2.50");
        let vip = v4("10.100.0.1");
        let ip = sized_inner(client, vip, true, inner_len);
        let input = frame(&ip, vlan, padding);
        let l2 = if vlan.is_some() { 18 } else { 14 };
        let mut buf = VecBuf::new(&input);
        too_big(&mut buf, l2, vip, 1480).unwrap();
        let out = buf.data();
        let (l3, ty) = parse_l2(out, vlan);
        assert_eq!(ty, EtherType::IPV4);
        let (h, icmp) = Ipv4Header::from_slice(l3).unwrap();
        assert_eq!(h.protocol, IpNumber::ICMP);
        assert_eq!(h.source, [10, 100, 0, 1]);
        assert_eq!(h.destination, [192, 0, 2, 50]);
        assert_eq!(h.time_to_live, 64);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let expect_total = (20 + 8 + ip.len()).min(576);
        assert_eq!(usize::from(h.total_len), expect_total);
        assert_eq!(out.len(), l2 + expect_total, "nothing after the error");
        let (ih, quoted) = Icmpv4Header::from_slice(icmp).unwrap();
        assert_eq!(
            ih.icmp_type,
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1480
                }
            )
        );
        assert_eq!(ih.checksum, ih.icmp_type.calc_checksum(quoted));
        assert_eq!(
            quoted,
            &ip[..quoted.len()],
            "original packet quoted as received"
        );
        assert!(quoted.len() >= 28, "at least the header and 8 bytes");
        let (orig, _) = Ipv4Header::from_slice(quoted).unwrap();
        assert_eq!(orig.source, [192, 0, 2, 50]);
        assert_eq!(orig.destination, [10, 100, 0, 1]);
        assert_eq!(usize::from(orig.total_len), inner_len);
        assert!(orig.dont_fragment);
    }

    fn check_v6(inner_len: usize, vlan: Option<u16>, padding: usize) {
        let client = v6("2001:db8::50");
        let vip = v6("fd00:100::1");
        let ip = sized_inner(client, vip, true, inner_len);
        let input = frame(&ip, vlan, padding);
        let l2 = if vlan.is_some() { 18 } else { 14 };
        let mut buf = VecBuf::new(&input);
        too_big(&mut buf, l2, vip, 1460).unwrap();
        let out = buf.data();
        let (l3, ty) = parse_l2(out, vlan);
        assert_eq!(ty, EtherType::IPV6);
        let (h, icmp) = Ipv6Header::from_slice(l3).unwrap();
        assert_eq!(h.next_header, IpNumber::IPV6_ICMP);
        assert_eq!(
            h.source,
            "fd00:100::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            h.destination,
            "2001:db8::50".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(h.hop_limit, 64);
        let expect_total = (40 + 8 + ip.len()).min(1280);
        assert_eq!(usize::from(h.payload_length) + 40, expect_total);
        assert_eq!(out.len(), l2 + expect_total);
        let (ih, quoted) = Icmpv6Header::from_slice(icmp).unwrap();
        assert_eq!(ih.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1460 });
        assert_eq!(
            ih.checksum,
            ih.icmp_type
                .calc_checksum(h.source, h.destination, quoted)
                .unwrap()
        );
        assert_eq!(quoted, &ip[..quoted.len()]);
        let (orig, _) = Ipv6Header::from_slice(quoted).unwrap();
        assert_eq!(orig.source, h.destination);
        assert_eq!(usize::from(orig.payload_length) + 40, inner_len);
    }

    #[test]
    fn ipv4_frag_needed_truncated_to_576() {
        check_v4(1500, None, 0);
        check_v4(1500, Some(42), 0);
        check_v4(9000, None, 0);
    }

    #[test]
    fn ipv4_small_packet_quoted_whole_without_padding() {
        check_v4(548, None, 0);
        check_v4(60, None, 0);
        check_v4(41, None, 5);
        check_v4(41, Some(3), 1);
    }

    #[test]
    fn ipv6_packet_too_big_truncated_to_1280() {
        check_v6(1500, None, 0);
        check_v6(1500, Some(42), 0);
        check_v6(9000, None, 0);
    }

    #[test]
    fn ipv6_small_packet_quoted_whole_without_padding() {
        check_v6(1232, None, 0);
        check_v6(61, None, 0);
        check_v6(61, Some(3), 3);
    }

    #[test]
    fn after_encapsulate_too_big() {
        // The pipeline's sequence: encapsulate says TooBig, the same frame becomes the error.
        for (client, vip, rs, lb, mtu) in [
            (
                v4("192.0.2.50"),
                v4("10.100.0.1"),
                v4("10.0.0.21"),
                v4("10.0.0.10"),
                1480,
            ),
            (
                v6("2001:db8::50"),
                v6("fd00:100::1"),
                v6("fd00::21"),
                v6("fd00::10"),
                1460,
            ),
            (
                v6("2001:db8::50"),
                v6("fd00:100::1"),
                v4("10.0.0.21"),
                v4("10.0.0.10"),
                1480,
            ),
        ] {
            let ip = sized_inner(client, vip, true, 1500);
            let mut buf = VecBuf::new(&frame(&ip, Some(9), 0));
            let err = encapsulate(&mut buf, 18, &outer(lb, rs));
            assert_eq!(err, Err(TunnelError::TooBig { mtu }));
            let Err(TunnelError::TooBig { mtu }) = err else {
                unreachable!()
            };
            too_big(&mut buf, 18, vip, mtu).unwrap();
            let (l3, _) = parse_l2(buf.data(), Some(9));
            if client.is_ipv4() {
                let (_, icmp) = Ipv4Header::from_slice(l3).unwrap();
                let (ih, _) = Icmpv4Header::from_slice(icmp).unwrap();
                assert_eq!(
                    ih.icmp_type,
                    Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                            next_hop_mtu: mtu
                        }
                    )
                );
            } else {
                let (_, icmp) = Ipv6Header::from_slice(l3).unwrap();
                let (ih, _) = Icmpv6Header::from_slice(icmp).unwrap();
                assert_eq!(ih.icmp_type, Icmpv6Type::PacketTooBig { mtu: mtu.into() });
            }
        }
    }

    fn suppressed(input: &[u8], from: IpAddr) {
        let mut buf = VecBuf::new(input);
        assert_eq!(
            too_big(&mut buf, 14, from, 1400),
            Err(DropReason::IcmpErrorSuppressed)
        );
        assert_eq!(buf.data(), input, "frame untouched");
    }

    /// An IPv4 packet with its fields patched and its checksum fixed.
    fn patch_v4(ip: &mut [u8], at: usize, bytes: &[u8]) {
        ip[at..at + bytes.len()].copy_from_slice(bytes);
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::finish(checksum::sum(&ip[..20]));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn not_sent_where_forbidden() {
        let vip = v4("10.100.0.1");
        let ip = inner_ip(v4("192.0.2.50"), vip, 0, true, PAYLOAD);
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [255, 255, 255, 255],
        ] {
            let mut bad = ip.clone();
            patch_v4(&mut bad, 12, &src);
            suppressed(&frame(&bad, None, 0), vip);
        }
        // IPv4 broadcast / multicast destination.
        for dst in [[255, 255, 255, 255], [239, 1, 2, 3]] {
            let mut bad = ip.clone();
            patch_v4(&mut bad, 16, &dst);
            suppressed(&frame(&bad, None, 0), vip);
        }
        // Non-initial fragment (offset 8 bytes); an initial one (MF, offset 0) is answered.
        let mut frag = ip.clone();
        patch_v4(&mut frag, 6, &[0x00, 0x01]);
        suppressed(&frame(&frag, None, 0), vip);
        let mut first = ip.clone();
        patch_v4(&mut first, 6, &[0x20, 0x00]);
        let mut buf = VecBuf::new(&frame(&first, None, 0));
        assert_eq!(too_big(&mut buf, 14, vip, 1400), Ok(()));
        // Link-layer broadcast.
        let mut bcast = frame(&ip, None, 0);
        bcast[..6].copy_from_slice(&[0xff; 6]);
        suppressed(&bcast, vip);
        // ICMP error invoking packet (time exceeded); an echo request is answered.
        let mut icmp = ip.clone();
        patch_v4(&mut icmp, 9, &[1]);
        icmp[20] = 11;
        suppressed(&frame(&icmp, None, 0), vip);
        icmp[20] = 8;
        let mut buf = VecBuf::new(&frame(&icmp, None, 0));
        assert_eq!(too_big(&mut buf, 14, vip, 1400), Ok(()));
        // `from` of the other family.
        suppressed(&frame(&ip, None, 0), v6("fd00:100::1"));

        let vip6 = v6("fd00:100::1");
        let ip6 = inner_ip(v6("2001:db8::50"), vip6, 0, true, PAYLOAD);
        for src in ["::", "::1", "ff02::1"] {
            let mut bad = ip6.clone();
            bad[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
            suppressed(&frame(&bad, None, 0), vip6);
        }
        let mut icmp6 = ip6.clone();
        icmp6[6] = NEXT_HEADER_ICMPV6;
        icmp6[40] = 1; // destination unreachable
        suppressed(&frame(&icmp6, None, 0), vip6);
        icmp6[40] = 128; // echo request
        let mut buf = VecBuf::new(&frame(&icmp6, None, 0));
        assert_eq!(too_big(&mut buf, 14, vip6, 1400), Ok(()));
        suppressed(&frame(&ip6, None, 0), vip);
    }

    #[test]
    fn no_headroom_is_an_error_and_leaves_the_frame() {
        for (client, vip) in [
            (v4("192.0.2.50"), v4("10.100.0.1")),
            (v6("2001:db8::50"), v6("fd00:100::1")),
        ] {
            let input = frame(&sized_inner(client, vip, true, 1500), None, 0);
            let mut buf = NoHeadroom(VecBuf::new(&input));
            assert_eq!(
                too_big(&mut buf, 14, vip, 1400),
                Err(DropReason::NoHeadroom)
            );
            assert_eq!(buf.data(), &input[..]);
        }
    }

    #[test]
    fn bad_input_never_panics() {
        let vip = v4("10.100.0.1");
        let vip6 = v6("fd00:100::1");
        let good4 = frame(&inner_ip(v4("192.0.2.50"), vip, 0, true, PAYLOAD), None, 0);
        let good6 = frame(
            &inner_ip(v6("2001:db8::50"), vip6, 0, true, PAYLOAD),
            Some(5),
            0,
        );
        for good in [&good4, &good6] {
            for cut in 0..good.len() {
                for l2 in [0, 13, 14, 18, 100] {
                    for from in [vip, vip6] {
                        let mut buf = VecBuf::new(&good[..cut]);
                        let _ = too_big(&mut buf, l2, from, 1400);
                    }
                }
            }
            for at in 0..good.len() {
                for v in [0x00, 0x01, 0x45, 0x60, 0xff] {
                    let mut bad = good.clone();
                    bad[at] = v;
                    for from in [vip, vip6] {
                        let mut buf = VecBuf::new(&bad);
                        let _ = too_big(&mut buf, 14, from, 1400);
                        let mut buf = VecBuf::new(&bad);
                        let _ = too_big(&mut buf, 18, from, 1400);
                    }
                }
            }
        }
        let mut arp = good4.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut buf = VecBuf::new(&arp);
        assert_eq!(
            too_big(&mut buf, 14, vip, 1400),
            Err(DropReason::UnsupportedEthertype)
        );
        let mut buf = VecBuf::new(&good4);
        assert_eq!(
            too_big(&mut buf, 16, vip, 1400),
            Err(DropReason::EthMalformed)
        );
    }
}
