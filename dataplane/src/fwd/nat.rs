//! Half-NAT (LVS VS/NAT): step 2 rewrites the destination to the real server, step 4 rewrites
//! the source of the reply back to the VIP. The client's address is never touched.
//! Both steps act as a router hop: TTL / hop limit is decremented.
//!
//! Fragments: the transport header (ports, checksum) lives in the first fragment only; the
//! pipeline passes [`L4At::header`] false for the others, whose IP header alone is rewritten.
//! The transport checksum covers the whole datagram and sits in the first fragment, so its
//! incremental update there stays right for the reassembled datagram.

use super::RewriteResult;
use crate::counters::DropReason;
use crate::wire::checksum;
use crate::wire::ipv4::{self, proto, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::{self, UdpPacket};
use std::net::IpAddr;

/// Where the transport header of a packet is, as the pipeline found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4At {
    /// TCP or UDP.
    pub proto: u8,
    /// Offset of the transport header from the start of the IP header (after IPv4 options or
    /// an IPv6 fragment header).
    pub offset: usize,
    /// Whether the transport header is in this packet (false for a non-first fragment).
    pub header: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

/// Step 2: destination address and port := the real server's.
pub fn rewrite_to_backend(l3: &mut [u8], l4: L4At, addr: IpAddr, port: u16) -> RewriteResult {
    rewrite(l3, l4, Side::Dst, addr, port)
}

/// Step 4: source address and port := the VIP's.
pub fn rewrite_to_vip(l3: &mut [u8], l4: L4At, vip: IpAddr, port: u16) -> RewriteResult {
    rewrite(l3, l4, Side::Src, vip, port)
}

/// A router hop without address change: TTL / hop limit decremented (an ICMP error relayed
/// from a router between vipd and a NAT real server keeps that router's address).
pub fn hop(l3: &mut [u8]) -> RewriteResult {
    match l3.first().map(|b| b >> 4) {
        Some(4) => {
            let mut ip =
                Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Ipv4Malformed)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            ip.set_ttl_incremental(ttl - 1);
            Ok(())
        }
        Some(6) => {
            let mut ip =
                Ipv6Packet::new_checked(&mut *l3).map_err(|_| DropReason::Ipv6Malformed)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            ip.set_hop_limit(hops - 1);
            Ok(())
        }
        _ => Err(DropReason::UnsupportedProtocol),
    }
}

fn rewrite(l3: &mut [u8], l4: L4At, side: Side, addr: IpAddr, port: u16) -> RewriteResult {
    match (l3.first().map(|b| b >> 4), addr) {
        (Some(4), IpAddr::V4(to)) => rewrite_v4(l3, l4, side, u32::from(to), port, true),
        (Some(6), IpAddr::V6(to)) => rewrite_v6(l3, l4, side, to, port, true),
        // The snapshot refuses NAT between families; anything else is not ours to rewrite.
        _ => Err(DropReason::UnsupportedProtocol),
    }
}

/// [`rewrite`] for IPv6 (no header checksum; the pseudo-header's addresses in the transport
/// checksum, through the wire types' byte-slice updates). `hop`: the hop limit is checked and
/// decremented (full-NAT's second side, the source, passes false: one packet, one hop).
pub(super) fn rewrite_v6(
    l3: &mut [u8],
    l4: L4At,
    side: Side,
    to: std::net::Ipv6Addr,
    port: u16,
    hop: bool,
) -> RewriteResult {
    let mut ip = Ipv6Packet::new_checked(&mut *l3).map_err(|_| DropReason::Ipv6Malformed)?;
    let hops = ip.hop_limit();
    if hop && hops <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let was = if side == Side::Dst {
        ip.dst()
    } else {
        ip.src()
    };
    if hop {
        ip.set_hop_limit(hops - 1);
    }
    if side == Side::Dst {
        ip.set_dst(to);
    } else {
        ip.set_src(to);
    }
    let end = crate::wire::ipv6::HEADER_LEN + usize::from(ip.payload_len());
    if !l4.header {
        return Ok(());
    }
    let seg = l3.get_mut(l4.offset..end).ok_or(DropReason::L4Malformed)?;
    rewrite_l4(seg, l4.proto, side, &was.octets(), &to.octets(), port)
}

/// Checksum delta of the IPv4 header's TTL/protocol word losing one TTL: !w + (w - 0x100).
const TTL_DELTA: u32 = 0xfeff;

/// [`rewrite`] for IPv4, on the fixed header views (`ipv4::HeaderMut`, `tcp::HeaderMut`,
/// `udp::HeaderMut`), each checksum updated once for all its changes (`checksum::delta32`:
/// bit for bit what the byte-slice updates give, and what a full recomputation gives: the
/// tests below check against etherparse's). The checks are `Ipv4Packet::new_checked`'s and
/// `TcpPacket::new_checked`'s / `UdpPacket::new_header_checked`'s.
/// `hop`: the TTL is checked and decremented (full-NAT's second side, the source, passes
/// false: one packet, one hop).
#[inline]
pub(super) fn rewrite_v4(
    l3: &mut [u8],
    l4: L4At,
    side: Side,
    to: u32,
    port: u16,
    hop: bool,
) -> RewriteResult {
    let len = l3.len();
    let (h, _) = l3
        .split_first_chunk_mut::<{ ipv4::HEADER_LEN }>()
        .ok_or(DropReason::Ipv4Malformed)?;
    let mut ip = ipv4::HeaderMut(h);
    let hv = ip.get();
    let header_len = usize::from(hv.ver_ihl() & 0x0f) * 4;
    let total = usize::from(hv.total_len());
    if header_len < ipv4::HEADER_LEN || header_len > len || total < header_len || total > len {
        return Err(DropReason::Ipv4Malformed);
    }
    let ttl = hv.ttl();
    if hop && ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let was = match side {
        Side::Dst => hv.dst_u32(),
        Side::Src => hv.src_u32(),
    };
    let addr_delta = checksum::delta32(was, to);
    let ttl_delta = if hop { TTL_DELTA } else { 0 };
    let c = checksum::apply(hv.checksum(), ttl_delta + addr_delta);
    // A number's wire form (its bytes as the header holds them, read little-endian).
    let wire = to.swap_bytes();
    match side {
        Side::Dst => ip.set_dst_wire(wire),
        Side::Src => ip.set_src_wire(wire),
    }
    if hop {
        ip.set_ttl(ttl - 1);
    }
    ip.set_checksum(c);
    if !l4.header {
        return Ok(());
    }
    let seg = l3
        .get_mut(l4.offset..total)
        .ok_or(DropReason::L4Malformed)?;
    let port_wire = u16::from_le_bytes(port.to_be_bytes());
    match l4.proto {
        proto::TCP => {
            let seg_len = seg.len();
            let t = seg
                .first_chunk_mut::<{ tcp::HEADER_LEN }>()
                .ok_or(DropReason::L4Malformed)?;
            let mut t = tcp::HeaderMut(t);
            let tv = tcp::Header(t.0);
            let off = tv.header_len();
            if off < tcp::HEADER_LEN || off > seg_len {
                return Err(DropReason::L4Malformed);
            }
            let old = match side {
                Side::Dst => tv.dst_port(),
                Side::Src => tv.src_port(),
            };
            let c = checksum::apply(tv.checksum(), addr_delta + checksum::delta16(old, port));
            match side {
                Side::Dst => t.set_dst_port_wire(port_wire),
                Side::Src => t.set_src_port_wire(port_wire),
            }
            t.set_checksum(c);
            Ok(())
        }
        proto::UDP => {
            // Header only: the length field of a first fragment counts the whole datagram.
            let u = seg
                .first_chunk_mut::<{ udp::HEADER_LEN }>()
                .ok_or(DropReason::L4Malformed)?;
            let mut u = udp::HeaderMut(u);
            let uv = udp::Header(u.0);
            let old = match side {
                Side::Dst => uv.dst_port(),
                Side::Src => uv.src_port(),
            };
            let c = checksum::apply_udp(uv.checksum(), addr_delta + checksum::delta16(old, port));
            match side {
                Side::Dst => u.set_dst_port_wire(port_wire),
                Side::Src => u.set_src_port_wire(port_wire),
            }
            u.set_checksum(c);
            Ok(())
        }
        _ => Err(DropReason::UnsupportedProtocol),
    }
}

fn rewrite_l4(
    l4: &mut [u8],
    l4_proto: u8,
    side: Side,
    old: &[u8],
    new: &[u8],
    port: u16,
) -> RewriteResult {
    match l4_proto {
        proto::TCP => {
            let mut t = TcpPacket::new_checked(l4).map_err(|_| DropReason::L4Malformed)?;
            t.update_checksum_for_addr(old, new);
            match side {
                Side::Dst => t.set_dst_port_incremental(port),
                Side::Src => t.set_src_port_incremental(port),
            }
            Ok(())
        }
        proto::UDP => {
            // Header only: the length field of a first fragment counts the whole datagram.
            let mut u = UdpPacket::new_header_checked(l4).map_err(|_| DropReason::L4Malformed)?;
            // A zero checksum (IPv4: none) stays zero; over IPv6 it is invalid and the
            // receiver drops it, as it would without vipd.
            u.update_checksum_for_addr(old, new);
            match side {
                Side::Dst => u.set_dst_port_incremental(port),
                Side::Src => u.set_src_port_incremental(port),
            }
            Ok(())
        }
        _ => Err(DropReason::UnsupportedProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// An IPv4 TCP or UDP packet (no Ethernet header) written by etherparse.
    fn packet(
        tcp: bool,
        src: [u8; 4],
        dst: [u8; 4],
        ports: (u16, u16),
        ttl: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, ttl);
        let mut out = Vec::new();
        if tcp {
            b.tcp(ports.0, ports.1, 7, 1024)
                .ack(1)
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(ports.0, ports.1).write(&mut out, payload).unwrap();
        }
        out
    }

    proptest! {
        /// Destination (step 2) or source (step 4) rewritten: the bytes etherparse writes for
        /// the rewritten packet, checksums recomputed from scratch.
        #[test]
        fn v4_rewrite_is_what_etherparse_writes(
            tcp in any::<bool>(),
            dst_side in any::<bool>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            to in any::<[u8; 4]>(),
            ports in any::<(u16, u16)>(),
            port in any::<u16>(),
            ttl in 2u8..,
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut got = packet(tcp, src, dst, ports, ttl, &payload);
            let (want_src, want_dst, want_ports) = if dst_side {
                (src, to, (ports.0, port))
            } else {
                (to, dst, (port, ports.1))
            };
            let mut want = packet(tcp, want_src, want_dst, want_ports, ttl - 1, &payload);
            let l4 = L4At { proto: if tcp { proto::TCP } else { proto::UDP }, offset: 20, header: true };
            let to = IpAddr::V4(Ipv4Addr::from(to));
            let r = if dst_side {
                rewrite_to_backend(&mut got, l4, to, port)
            } else {
                rewrite_to_vip(&mut got, l4, to, port)
            };
            prop_assert_eq!(r, Ok(()));
            // etherparse writes UDP checksum 0 as 0xffff (RFC 768); an incremental update
            // that lands on 0 may keep 0xffff's twin: both mean "checksum 0".
            if !tcp && got[26..28] == [0xff, 0xff] && want[26..28] == [0, 0] {
                want[26..28].copy_from_slice(&[0xff, 0xff]);
            }
            prop_assert_eq!(got, want);
        }

        /// Any bytes: a verdict, never a panic, and on success a header that still verifies.
        #[test]
        fn v4_rewrite_takes_any_bytes(
            mut frame in proptest::collection::vec(any::<u8>(), 0..80),
            tcp in any::<bool>(),
            header in any::<bool>(),
            offset in 0usize..64,
            to in any::<u32>(),
            port in any::<u16>(),
        ) {
            if let Some(b) = frame.first_mut() {
                *b = 0x40 | (*b & 0x0f);
            }
            let l4 = L4At { proto: if tcp { proto::TCP } else { proto::UDP }, offset, header };
            let before_ok = Ipv4Header::from_slice(&frame).is_ok_and(|(h, _)| h.header_checksum == h.calc_header_checksum());
            if rewrite_to_backend(&mut frame, l4, IpAddr::V4(to.into()), port).is_ok() && before_ok {
                let (h, _) = Ipv4Header::from_slice(&frame).unwrap();
                prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
            }
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut p = packet(false, [192, 0, 2, 1], [10, 0, 0, 1], (1000, 53), 64, b"q");
        p[26..28].copy_from_slice(&[0, 0]);
        let l4 = L4At {
            proto: proto::UDP,
            offset: 20,
            header: true,
        };
        rewrite_to_backend(&mut p, l4, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 21)), 5353).unwrap();
        assert_eq!(&p[26..28], &[0, 0]);
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(TransportSlice::Udp(u)) = s.transport else {
            panic!("udp")
        };
        assert_eq!(u.destination_port(), 5353);
        assert_eq!(
            s.net.and_then(|n| n.ip_payload_ref().map(|p| p.ip_number)),
            Some(IpNumber::UDP)
        );
    }
}
