//! The fast path's rewrites, on fixed header views: the forwarding record says what to write
//! and carries the checksum deltas (RFC 1624), so each is a few stores and one's-complement
//! adds. They make the frames the general path's rewrites make (`fwd::nat`,
//! `fwd::tunnel::encapsulate`, `pipeline::set_macs`), bit for bit (the differential test).
//! Each returns false only if the frame is shorter than stage 1 found it, which cannot
//! happen.

use super::Staged4;
use crate::flow::key::PROTO_TCP;
use crate::io::PacketBuf;
use crate::snapshot::fast4::Record;
use crate::wire::checksum;
use crate::wire::ethernet::{self, MacPair};
use crate::wire::ipv4::{self, proto, HeaderMut};
use crate::wire::{tcp, udp};

/// Bytes the outer IPv4 header adds.
pub(super) const TUN_OVERHEAD: usize = ipv4::HEADER_LEN;

/// TTL of the outer header (`egress::check`'s `OWN_TTL`).
const OUTER_TTL: u8 = super::super::OWN_TTL;

/// The frame cut into its Ethernet and IPv4 headers and the rest.
#[inline(always)]
fn headers(
    frame: &mut [u8],
) -> Option<(
    &mut [u8; ethernet::HEADER_LEN],
    &mut [u8; ipv4::HEADER_LEN],
    &mut [u8],
)> {
    let (eth, rest) = frame.split_first_chunk_mut::<{ ethernet::HEADER_LEN }>()?;
    let (ip, l4) = rest.split_first_chunk_mut::<{ ipv4::HEADER_LEN }>()?;
    Some((eth, ip, l4))
}

/// The transport header's port field and checksum: the destination (`to_rs`) or source port
/// set to `port` (wire form), the checksum moved by `delta`.
#[inline(always)]
pub(in crate::pipeline) fn transport(
    l4: &mut [u8],
    proto_: u8,
    to_rs: bool,
    port: u16,
    delta: u32,
) -> bool {
    if proto_ == PROTO_TCP {
        let Some(t) = l4.first_chunk_mut::<{ tcp::HEADER_LEN }>() else {
            return false;
        };
        let mut t = tcp::HeaderMut(t);
        if to_rs {
            t.set_dst_port_wire(port);
        } else {
            t.set_src_port_wire(port);
        }
        let c = checksum::apply(t.checksum(), delta);
        t.set_checksum(c);
    } else {
        let Some(u) = l4.first_chunk_mut::<{ udp::HEADER_LEN }>() else {
            return false;
        };
        let mut u = udp::HeaderMut(u);
        if to_rs {
            u.set_dst_port_wire(port);
        } else {
            u.set_src_port_wire(port);
        }
        let c = checksum::apply_udp(u.checksum(), delta);
        u.set_checksum(c);
    }
    true
}

/// NAT step 2: destination := the real server, TTL - 1, MACs to its next hop.
#[inline(always)]
pub(super) fn nat_to_rs(frame: &mut [u8], proto_: u8, r: &Record) -> bool {
    let Some((eth, ip, l4)) = headers(frame) else {
        return false;
    };
    let mut ip = HeaderMut(ip);
    let (ttl, c) = (ip.get().ttl(), ip.get().checksum());
    ip.set_dst_wire(r.rs_addr);
    ip.set_ttl(ttl - 1);
    ip.set_checksum(checksum::apply(c, r.to_rs_ip));
    r.macs.write(eth);
    transport(l4, proto_, true, r.rs_port, r.to_rs_l4)
}

/// NAT step 4: source := the VIP, TTL - 1, MACs to the client's next hop.
#[inline(always)]
pub(super) fn nat_to_client(frame: &mut [u8], proto_: u8, r: &Record, hop: &MacPair) -> bool {
    let Some((eth, ip, l4)) = headers(frame) else {
        return false;
    };
    let mut ip = HeaderMut(ip);
    let (ttl, c) = (ip.get().ttl(), ip.get().checksum());
    ip.set_src_wire(r.vip);
    ip.set_ttl(ttl - 1);
    ip.set_checksum(checksum::apply(c, r.to_client_ip));
    hop.write(eth);
    transport(l4, proto_, false, r.vport, r.to_client_l4)
}

/// DR: the MACs alone.
#[inline(always)]
pub(in crate::pipeline) fn macs(frame: &mut [u8], macs: &MacPair) -> bool {
    match frame.first_chunk_mut::<{ ethernet::HEADER_LEN }>() {
        Some(eth) => {
            macs.write(eth);
            true
        }
        None => false,
    }
}

/// TUN 4in4, the room at the front already taken (`TUN_OVERHEAD` bytes): the Ethernet header
/// moves to the new front, the outer header follows, the inner packet is left as it was;
/// Ethernet padding after it is cut. The outer header's fields are `tunnel::encapsulate`'s:
/// TOS and DF copied, identification 0 with DF (RFC 6864) or else the inner one mixed with the
/// flow hash, TTL 64, protocol 4.
#[inline(always)]
pub(super) fn tunnel<B: PacketBuf>(buf: &mut B, f: &Staged4, r: &Record, src: u32) -> bool {
    let inner_len = usize::from(f.len);
    if !buf.trim_to(TUN_OVERHEAD + ethernet::HEADER_LEN + inner_len) {
        return false;
    }
    let frame = buf.data_mut();
    frame.copy_within(TUN_OVERHEAD..TUN_OVERHEAD + ethernet::HEADER_LEN, 0);
    let Some((eth, outer, inner)) = headers(frame) else {
        return false;
    };
    let Some(inner) = inner.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    let inner = ipv4::Header(inner);
    let ident = if f.dont_frag {
        0
    } else {
        let h = f.hash.bits();
        inner.ident() ^ (h as u16) ^ ((h >> 16) as u16)
    };
    ipv4::emit_header_wire(
        outer,
        inner.tos(),
        (inner_len + TUN_OVERHEAD) as u16,
        ident,
        f.dont_frag,
        OUTER_TTL,
        proto::IPIP,
        src,
        r.rs_addr,
    );
    r.macs.write(eth);
    true
}
