//! TUN mode (LVS VS/TUN): step 2 wraps the client's packet in an outer IP header addressed to
//! the real server, which decapsulates it and answers the client directly (step 3, no step 4).
//!
//! All four families: 4in4 (outer IPv4, protocol 4, RFC 2003), 6in4 (outer IPv4, protocol 41,
//! RFC 4213), 4in6 and 6in6 (outer IPv6, next header 4 or 41, RFC 2473).
//!
//! The inner packet is carried untouched, byte for byte: like IPVS's ipip transmitter vipd
//! does not decrement the inner TTL / hop limit (the tunnel is one virtual link to the real
//! server, and the real server's decapsulation does not decrement it either). The outer TTL is
//! the caller's (a fixed value such as 64) where IPVS copies the inner TTL, so the tunnel
//! crosses the routers between LB and real server whatever TTL the client sent.
//!
//! vipd never fragments. A packet that no longer fits the egress MTU once the outer header is
//! added is either answered with an ICMP "too big" error (when its sender forbade
//! fragmentation: IPv4 with DF, or any IPv6 packet, which routers never fragment) so the
//! client's path MTU discovery shrinks its packets, or dropped and counted (IPv4 without DF).

use crate::counters::DropReason;
use crate::io::PacketBuf;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::ipv4::{self, proto, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{be16, set_be16};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes an outer IPv4 header adds (no options).
pub const OVERHEAD_V4: usize = ipv4::HEADER_LEN;
/// Bytes an outer IPv6 header adds (no extension headers).
pub const OVERHEAD_V6: usize = ipv6::HEADER_LEN;

/// Smallest MTU an IPv4 host must accept (RFC 791): a "too big" error below it is useless.
const MIN_MTU_V4: u16 = 68;
/// Smallest IPv6 link MTU (RFC 8200): hosts discard "packet too big" errors below it
/// (RFC 8201 section 4).
const MIN_MTU_V6: u16 = 1280;

/// The outer header of one tunnelled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// Outer source: the egress port's address, or one picked per flow by [`outer_source`].
    pub src: IpAddr,
    /// Outer destination: the real server. Its family picks the outer header (IPv4 or IPv6).
    pub dst: IpAddr,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// The flow's hash: outer IPv4 identification (packets that may be fragmented) and the
    /// outer IPv6 flow label.
    pub flow_hash: u32,
    /// Largest IP packet (outer header included) the egress port may send.
    pub mtu: u16,
}

/// Why [`encapsulate`] did not encapsulate. The frame is left untouched in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelError {
    /// The packet plus the outer header exceeds [`Outer::mtu`] and its sender forbade
    /// fragmentation (IPv4 with DF, or IPv6). Answer it with
    /// [`icmp_error::too_big`](super::icmp_error::too_big)`(buf, l2_len, vip, mtu)`, count
    /// [`Counter::IcmpTooBigSent`] and send the frame back out of the port it came in by.
    TooBig {
        /// The largest inner packet the tunnel carries: the MTU to report to the sender.
        mtu: u16,
    },
    /// Drop the packet and count this reason.
    Drop(DropReason),
}

impl From<DropReason> for TunnelError {
    fn from(c: DropReason) -> Self {
        TunnelError::Drop(c)
    }
}

/// The inner packet's facts the outer header copies.
struct Inner {
    /// Length of the IP packet (without Ethernet padding).
    len: usize,
    /// IPv4 TOS or IPv6 traffic class (DSCP and ECN, copied as RFC 2983 / RFC 6040 "normal").
    tos: u8,
    /// Whether the sender forbade fragmentation (IPv4 DF; always for IPv6).
    dont_frag: bool,
    /// IPv4 identification (0 for IPv6).
    ident: u16,
    /// Outer protocol / next header announcing the inner family.
    proto: u8,
}

fn inner(frame: &[u8], l2_len: usize) -> Result<Inner, DropReason> {
    if l2_len != ethernet::HEADER_LEN && l2_len != ethernet::VLAN_HEADER_LEN {
        return Err(DropReason::EthMalformed);
    }
    let l3 = frame.get(l2_len..).ok_or(DropReason::EthMalformed)?;
    match be16(frame, l2_len - 2) {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3).map_err(|_| DropReason::Ipv4Malformed)?;
            Ok(Inner {
                len: usize::from(ip.total_len()),
                tos: ip.tos(),
                dont_frag: ip.dont_frag(),
                ident: ip.ident(),
                proto: proto::IPIP,
            })
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3).map_err(|_| DropReason::Ipv6Malformed)?;
            Ok(Inner {
                len: ipv6::HEADER_LEN + usize::from(ip.payload_len()),
                tos: ip.traffic_class(),
                dont_frag: true,
                ident: 0,
                proto: proto::IPV6,
            })
        }
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// Encapsulate the IP packet of an Ethernet frame (`l2_len`: 14, or 18 with an 802.1Q tag) in
/// an outer IPv4 or IPv6 header (the family of `outer.dst`).
///
/// The frame grows at the front by 20 or 40 bytes; the Ethernet header (MACs and VLAN tag) moves
/// to the new front with its EtherType set to the outer family; the MACs are the caller's to
/// rewrite. Ethernet padding after the inner packet is cut. Outer IPv4: DF copied from an inner
/// IPv4 packet (set for inner IPv6), TOS copied from the inner TOS / traffic class,
/// identification 0 when DF is set (RFC 6864 atomic datagram) or else the inner identification
/// mixed with the flow hash, TTL `outer.ttl`, checksum computed. Outer IPv6: traffic class
/// copied, flow label from the flow hash (20 bits, never 0, RFC 6438), hop limit `outer.ttl`.
///
/// On any error the frame is left as it was (see [`TunnelError`]).
pub fn encapsulate<B: PacketBuf>(
    buf: &mut B,
    l2_len: usize,
    outer: &Outer,
) -> Result<(), TunnelError> {
    let (inner, overhead) = plan(buf.data(), l2_len, outer)?;
    let outer_len = inner.len + overhead;
    if !buf.prepend(overhead) {
        return Err(DropReason::NoHeadroom.into());
    }
    emit(buf, l2_len, outer, &inner, overhead, outer_len)
}

/// Every check [`encapsulate`] makes before it changes the frame, without changing it: the
/// pipeline decides with it before it commits any flow state. Returns the bytes the frame
/// grows by (the caller checks the headroom).
pub fn check(frame: &[u8], l2_len: usize, outer: &Outer) -> Result<usize, TunnelError> {
    plan(frame, l2_len, outer).map(|(_, overhead)| overhead)
}

fn plan(frame: &[u8], l2_len: usize, outer: &Outer) -> Result<(Inner, usize), TunnelError> {
    let inner = inner(frame, l2_len)?;
    let overhead = match (outer.src, outer.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => OVERHEAD_V4,
        (IpAddr::V6(_), IpAddr::V6(_)) => OVERHEAD_V6,
        _ => return Err(DropReason::TunnelNoSource.into()),
    };
    let outer_len = inner.len + overhead;
    if outer_len > usize::from(outer.mtu) {
        let inner_mtu = outer.mtu.saturating_sub(overhead as u16);
        let min = if inner.proto == proto::IPV6 {
            MIN_MTU_V6
        } else {
            MIN_MTU_V4
        };
        // vipd does not fragment: a packet that may be fragmented is dropped (the sender's
        // transport retransmits and, without DF, has no way to learn a smaller size); one that
        // may not gets a "too big" error unless the MTU left is below what the sender must
        // accept (a misconfigured port MTU), where the error would be discarded anyway.
        return Err(if inner.dont_frag && inner_mtu >= min {
            TunnelError::TooBig { mtu: inner_mtu }
        } else {
            TunnelError::Drop(DropReason::TunnelTooBig)
        });
    }
    Ok((inner, overhead))
}

fn emit<B: PacketBuf>(
    buf: &mut B,
    l2_len: usize,
    outer: &Outer,
    inner: &Inner,
    overhead: usize,
    outer_len: usize,
) -> Result<(), TunnelError> {
    // Cannot fail: the frame holds l2 + the inner packet (checked above) + the new room.
    if !buf.trim_to(overhead + l2_len + inner.len) {
        return Err(DropReason::EthMalformed.into());
    }
    let frame = buf.data_mut();
    frame.copy_within(overhead..overhead + l2_len, 0);
    let (l2, rest) = frame.split_at_mut(l2_len);
    match (outer.src, outer.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            set_be16(l2, l2_len - 2, ethertype::IPV4);
            let ident = if inner.dont_frag {
                0
            } else {
                // Outer packets without DF may be fragmented by a router on the way; their
                // identification must then differ between packets of the same (src, dst,
                // protocol). The client's own per-packet identification, mixed with the flow,
                // does without per-core state.
                inner.ident ^ (outer.flow_hash as u16) ^ ((outer.flow_hash >> 16) as u16)
            };
            ipv4::emit_header(
                rest,
                inner.tos,
                outer_len as u16,
                ident,
                inner.dont_frag,
                outer.ttl,
                inner.proto,
                src,
                dst,
            );
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            set_be16(l2, l2_len - 2, ethertype::IPV6);
            ipv6::emit_header(
                rest,
                inner.tos,
                flow_label(outer.flow_hash),
                inner.len as u16,
                inner.proto,
                outer.ttl,
                src,
                dst,
            );
        }
        // Excluded above, before the frame changed.
        _ => return Err(DropReason::TunnelNoSource.into()),
    }
    Ok(())
}

/// murmur3's 32-bit finaliser: decorrelates the bits used here (flow label, source address)
/// from the bits the schedulers index their tables with.
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The outer IPv6 flow label of a flow: 20 bits of its hash, never 0 (0 means "no label", and
/// the real server's NIC and ECMP routers on the way hash the 3-tuple with it, RFC 6438).
pub fn flow_label(flow_hash: u32) -> u32 {
    match mix(flow_hash) & 0x000f_ffff {
        0 => 1,
        l => l,
    }
}

/// The outer source of a flow: `base` (the egress port's address) when no prefix is
/// configured, else an address inside `prefix` chosen by the flow hash.
///
/// Why a prefix: an IP-in-IP packet has no ports the real server's NIC can hash, so its RSS
/// spreads tunnelled traffic over its receive queues by the outer addresses only; with a single
/// LB source every flow lands on one queue (one core). One source per flow, as Katran does,
/// spreads them. The trade-off: the real server must accept tunnelled packets from every
/// address of the prefix (its tunnel device's remote `any`, rp_filter 0 or 2 on the receiving
/// interfaces, firewall rules), and routers between LB and real server must route the prefix
/// back to the LB (or at least not filter it, BCP 38) even though only the LB sends from it.
///
/// The address is spread over the prefix by the flow hash; the prefix's first and last
/// addresses are avoided for IPv4 prefixes up to /30 (network and broadcast), the first for
/// IPv6 prefixes up to /127 (subnet-router anycast). An IPv6 prefix spreads over at most the
/// 2^32 addresses of its low bits. A prefix of the other family than `base` is ignored.
pub fn outer_source(base: IpAddr, prefix: Option<ipnet::IpNet>, flow_hash: u32) -> IpAddr {
    let h = mix(flow_hash);
    match (base, prefix) {
        (IpAddr::V4(_), Some(ipnet::IpNet::V4(net))) => {
            let host_bits = 32 - u32::from(net.prefix_len());
            let host = host_part_v4(host_bits, flow_hash);
            IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
        }
        (IpAddr::V6(_), Some(ipnet::IpNet::V6(net))) => {
            let host_bits = (128 - u32::from(net.prefix_len())).min(32);
            let net_addr = u128::from(net.network());
            let host = if host_bits >= 1 {
                // 1 ..= 2^bits - 1.
                let count = (1u64 << host_bits) - 1;
                1 + ((u64::from(h) * count) >> 32)
            } else {
                0
            };
            IpAddr::V6(Ipv6Addr::from(net_addr | u128::from(host)))
        }
        _ => base,
    }
}

/// The host part [`outer_source`] gives a flow in an IPv4 prefix of `host_bits` host bits
/// (below 32).
#[inline]
pub(crate) fn host_part_v4(host_bits: u32, flow_hash: u32) -> u32 {
    let h = mix(flow_hash);
    if host_bits >= 2 {
        // 1 ..= 2^bits - 2 by multiply-shift (no division on the hot path).
        let count = (1u64 << host_bits) - 2;
        1 + ((u64::from(h) * count) >> 32) as u32
    } else {
        h & ((1u32 << host_bits) - 1)
    }
}

#[cfg(test)]
pub(crate) mod tests;
