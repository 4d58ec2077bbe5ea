//! The IPv6 fast path's NAT rewrites, on fixed header views: the address and the hop limit
//! in the IPv6 header (which has no checksum), the port and the checksum delta (RFC 1624)
//! in the transport header through `fast4`'s shared transport rewrite. They make the frames
//! the general path's `fwd::nat` rewrite and `pipeline::set_macs` make, bit for bit (the
//! differential test). Each returns false only if the frame is shorter than stage 1 found
//! it, which cannot happen.

use super::super::fast4::rewrite::transport;
use crate::snapshot::fast6::Record6;
use crate::wire::ethernet::{self, MacPair};
use crate::wire::ipv6::{self, HeaderMut};

/// The frame cut into its Ethernet and IPv6 headers and the rest.
#[inline(always)]
fn headers(
    frame: &mut [u8],
) -> Option<(&mut [u8; ethernet::HEADER_LEN], HeaderMut<'_>, &mut [u8])> {
    let (eth, rest) = frame.split_first_chunk_mut::<{ ethernet::HEADER_LEN }>()?;
    let (ip, l4) = rest.split_first_chunk_mut::<{ ipv6::HEADER_LEN }>()?;
    Some((eth, HeaderMut(ip), l4))
}

/// NAT step 2: destination := the real server, hop limit - 1, MACs to its next hop.
#[inline(always)]
pub(super) fn nat_to_rs(frame: &mut [u8], proto: u8, r: &Record6) -> bool {
    let Some((eth, mut ip, l4)) = headers(frame) else {
        return false;
    };
    let hops = ip.get().hop_limit();
    ip.set_dst_bytes(&r.rs_addr);
    ip.set_hop_limit(hops.saturating_sub(1));
    r.macs.write(eth);
    transport(l4, proto, true, r.rs_port, r.to_rs_l4)
}

/// NAT step 4: source := the VIP, hop limit - 1, MACs to the client's next hop.
#[inline(always)]
pub(super) fn nat_to_client(frame: &mut [u8], proto: u8, r: &Record6, hop: &MacPair) -> bool {
    let Some((eth, mut ip, l4)) = headers(frame) else {
        return false;
    };
    let hops = ip.get().hop_limit();
    ip.set_src_bytes(&r.vip);
    ip.set_hop_limit(hops.saturating_sub(1));
    hop.write(eth);
    transport(l4, proto, false, r.vport, r.to_client_l4)
}
