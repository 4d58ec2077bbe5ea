//! Half-NAT (LVS VS/NAT): step 2 rewrites the destination to the real server, step 4 rewrites
//! the source of the reply back to the VIP. The client's address is never touched.
//! Both steps act as a router hop: TTL / hop limit is decremented.
//!
//! Fragments: the transport header (ports, checksum) lives in the first fragment only; the
//! pipeline passes [`L4At::header`] false for the others, whose IP header alone is rewritten.
//! The transport checksum covers the whole datagram and sits in the first fragment, so its
//! incremental update there stays right for the reassembled datagram.

use super::RewriteResult;
use crate::counters::Counter;
use crate::wire::checksum;
use crate::wire::ipv4::{proto, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
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
enum Side {
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
                Ipv4Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv4Malformed)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            ip.set_ttl_incremental(ttl - 1);
            Ok(())
        }
        Some(6) => {
            let mut ip =
                Ipv6Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv6Malformed)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            ip.set_hop_limit(hops - 1);
            Ok(())
        }
        _ => Err(Counter::DropUnsupportedProtocol),
    }
}

fn rewrite(l3: &mut [u8], l4: L4At, side: Side, addr: IpAddr, port: u16) -> RewriteResult {
    if let (Some(4), IpAddr::V4(to)) = (l3.first().map(|b| b >> 4), addr) {
        return rewrite_v4(l3, l4, side, u32::from(to), port);
    }
    rewrite_slices(l3, l4, side, addr, port)
}

/// [`rewrite`] through the wire types' byte-slice updates: IPv6 (and, in the tests, the
/// reference [`rewrite_v4`] is checked against).
fn rewrite_slices(l3: &mut [u8], l4: L4At, side: Side, addr: IpAddr, port: u16) -> RewriteResult {
    // Old and new address as the pseudo-header sums them: 4 bytes for IPv4, 16 for IPv6.
    let mut old = [0u8; 16];
    let mut new = [0u8; 16];
    let (alen, end) = match (l3.first().map(|b| b >> 4), addr) {
        (Some(4), IpAddr::V4(to)) => {
            let mut ip =
                Ipv4Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv4Malformed)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            let was = if side == Side::Dst {
                ip.dst()
            } else {
                ip.src()
            };
            ip.set_ttl_incremental(ttl - 1);
            if side == Side::Dst {
                ip.set_dst_incremental(to);
            } else {
                ip.set_src_incremental(to);
            }
            old[..4].copy_from_slice(&was.octets());
            new[..4].copy_from_slice(&to.octets());
            (4, usize::from(ip.total_len()))
        }
        (Some(6), IpAddr::V6(to)) => {
            let mut ip =
                Ipv6Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv6Malformed)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            let was = if side == Side::Dst {
                ip.dst()
            } else {
                ip.src()
            };
            ip.set_hop_limit(hops - 1);
            if side == Side::Dst {
                ip.set_dst(to);
            } else {
                ip.set_src(to);
            }
            old = was.octets();
            new = to.octets();
            (
                16,
                crate::wire::ipv6::HEADER_LEN + usize::from(ip.payload_len()),
            )
        }
        // The snapshot refuses NAT between families; anything else is not ours to rewrite.
        _ => return Err(Counter::DropUnsupportedProtocol),
    };
    if !l4.header {
        return Ok(());
    }
    let seg = l3.get_mut(l4.offset..end).ok_or(Counter::DropL4Malformed)?;
    rewrite_l4(seg, l4.proto, side, &old[..alen], &new[..alen], port)
}

/// [`rewrite`] for IPv4, on the header's fixed fields as integers, each checksum updated once
/// for all its changes (`checksum::delta32`; bit for bit the byte-slice updates' result: the
/// test below); the checks are `Ipv4Packet::new_checked`'s and `TcpPacket::new_checked`'s /
/// `UdpPacket::new_header_checked`'s.
#[inline]
fn rewrite_v4(l3: &mut [u8], l4: L4At, side: Side, to: u32, port: u16) -> RewriteResult {
    let len = l3.len();
    let h: &mut [u8; 20] = l3
        .get_mut(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(Counter::DropIpv4Malformed)?;
    let header_len = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if header_len < 20 || header_len > len || total < header_len || total > len {
        return Err(Counter::DropIpv4Malformed);
    }
    let ttl = h[8];
    if ttl <= 1 {
        return Err(Counter::DropTtlExceeded);
    }
    let (at, port_at) = match side {
        Side::Dst => (16, 2),
        Side::Src => (12, 0),
    };
    let addr: &mut [u8; 4] = (&mut h[at..at + 4])
        .try_into()
        .map_err(|_| Counter::DropIpv4Malformed)?;
    let was = u32::from_be_bytes(*addr);
    *addr = to.to_be_bytes();
    let addr_delta = checksum::delta32(was, to);
    // The TTL word (TTL, protocol) loses 0x100: its delta !w + (w - 0x100) is a constant.
    const TTL_DELTA: u32 = 0xfeff;
    h[8] = ttl - 1;
    let c = checksum::apply(u16::from_be_bytes([h[10], h[11]]), TTL_DELTA + addr_delta);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    if !l4.header {
        return Ok(());
    }
    let seg = l3
        .get_mut(l4.offset..total)
        .ok_or(Counter::DropL4Malformed)?;
    let port_field = |b: &[u8]| u16::from_be_bytes([b[port_at], b[port_at + 1]]);
    match l4.proto {
        proto::TCP => {
            let seg_len = seg.len();
            let t: &mut [u8; 20] = seg
                .get_mut(..20)
                .and_then(|t| t.try_into().ok())
                .ok_or(Counter::DropL4Malformed)?;
            let off = usize::from(t[12] >> 4) * 4;
            if off < 20 || off > seg_len {
                return Err(Counter::DropL4Malformed);
            }
            let delta = addr_delta + checksum::delta16(port_field(t), port);
            let c = checksum::apply(u16::from_be_bytes([t[16], t[17]]), delta);
            t[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
            t[16..18].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        proto::UDP => {
            // Header only: the length field of a first fragment counts the whole datagram.
            let u: &mut [u8; 8] = seg
                .get_mut(..8)
                .and_then(|u| u.try_into().ok())
                .ok_or(Counter::DropL4Malformed)?;
            let delta = addr_delta + checksum::delta16(port_field(u), port);
            let c = checksum::apply_udp(u16::from_be_bytes([u[6], u[7]]), delta);
            u[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
            u[6..8].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        _ => Err(Counter::DropUnsupportedProtocol),
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
            let mut t = TcpPacket::new_checked(l4).map_err(|_| Counter::DropL4Malformed)?;
            t.update_checksum_for_addr(old, new);
            match side {
                Side::Dst => t.set_dst_port_incremental(port),
                Side::Src => t.set_src_port_incremental(port),
            }
            Ok(())
        }
        proto::UDP => {
            // Header only: the length field of a first fragment counts the whole datagram.
            let mut u = UdpPacket::new_header_checked(l4).map_err(|_| Counter::DropL4Malformed)?;
            // A zero checksum (IPv4: none) stays zero; over IPv6 it is invalid and the
            // receiver drops it, as it would without vipd.
            u.update_checksum_for_addr(old, new);
            match side {
                Side::Dst => u.set_dst_port_incremental(port),
                Side::Src => u.set_src_port_incremental(port),
            }
            Ok(())
        }
        _ => Err(Counter::DropUnsupportedProtocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The integer IPv4 rewrite (what `rewrite` takes for IPv4) leaves the same bytes and gives the same verdict as the
        /// byte-slice one, on any input (valid or not).
        #[test]
        fn v4_matches_slices(
            mut frame in proptest::collection::vec(any::<u8>(), 0..80),
            ihl in 5u8..7,
            proto_tcp in any::<bool>(),
            header in any::<bool>(),
            dst in any::<bool>(),
            to in any::<u32>(),
            port in any::<u16>(),
            offset in 0usize..64,
            valid_len in any::<bool>(),
        ) {
            if let Some(b) = frame.first_mut() {
                *b = 0x40 | (ihl & 0x0f);
            }
            if valid_len && frame.len() >= 4 {
                let n = frame.len() as u16;
                frame[2..4].copy_from_slice(&n.to_be_bytes());
            }
            let l4 = L4At {
                proto: if proto_tcp { proto::TCP } else { proto::UDP },
                offset: if valid_len { usize::from(ihl) * 4 } else { offset },
                header,
            };
            let side = if dst { Side::Dst } else { Side::Src };
            let mut a = frame.clone();
            let mut b = frame;
            let ra = rewrite(&mut a, l4, side, IpAddr::V4(to.into()), port);
            let rb = rewrite_slices(&mut b, l4, side, IpAddr::V4(to.into()), port);
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(a, b);
        }
    }
}
