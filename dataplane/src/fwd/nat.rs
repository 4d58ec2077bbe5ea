//! Half-NAT (LVS VS/NAT): step 2 rewrites the destination to the real server, step 4 rewrites
//! the source of the reply back to the VIP. The client's address is never touched.
//! Both steps act as a router hop: TTL / hop limit is decremented.

use super::RewriteResult;
use crate::counters::Counter;
use crate::wire::ipv4::{proto, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use std::net::IpAddr;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// Step 2: destination address and port := the real server's.
pub fn rewrite_to_backend(l3: &mut [u8], addr: IpAddr, port: u16) -> RewriteResult {
    rewrite(l3, Side::Dst, addr, port)
}

/// Step 4: source address and port := the VIP's.
pub fn rewrite_to_vip(l3: &mut [u8], vip: IpAddr, port: u16) -> RewriteResult {
    rewrite(l3, Side::Src, vip, port)
}

fn rewrite(l3: &mut [u8], side: Side, addr: IpAddr, port: u16) -> RewriteResult {
    match (l3.first().map(|b| b >> 4), addr) {
        (Some(4), IpAddr::V4(new)) => {
            let mut ip =
                Ipv4Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv4Malformed)?;
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            let old = if side == Side::Dst {
                ip.dst()
            } else {
                ip.src()
            };
            ip.set_ttl_incremental(ttl - 1);
            if side == Side::Dst {
                ip.set_dst_incremental(new);
            } else {
                ip.set_src_incremental(new);
            }
            let l4_proto = ip.protocol();
            rewrite_l4(
                ip.payload_mut(),
                l4_proto,
                side,
                &old.octets(),
                &new.octets(),
                port,
            )
        }
        (Some(6), IpAddr::V6(new)) => {
            let mut ip =
                Ipv6Packet::new_checked(&mut *l3).map_err(|_| Counter::DropIpv6Malformed)?;
            let hops = ip.hop_limit();
            if hops <= 1 {
                return Err(Counter::DropTtlExceeded);
            }
            let old = if side == Side::Dst {
                ip.dst()
            } else {
                ip.src()
            };
            ip.set_hop_limit(hops - 1);
            if side == Side::Dst {
                ip.set_dst(new);
            } else {
                ip.set_src(new);
            }
            let next = ip.next_header();
            rewrite_l4(
                ip.payload_mut(),
                next,
                side,
                &old.octets(),
                &new.octets(),
                port,
            )
        }
        // The snapshot refuses NAT between families; anything else is not ours to rewrite.
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
            let mut u = UdpPacket::new_checked(l4).map_err(|_| Counter::DropL4Malformed)?;
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
