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
