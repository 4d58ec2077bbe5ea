//! IPv6 fixed headers. Extension headers are not walked: the pipeline balances packets whose
//! next header is TCP, UDP or ICMPv6 and counts the rest.

use super::{be16, set_be16, WireError};
use std::net::Ipv6Addr;

mod field {
    pub const VER_TC_FLOW: std::ops::Range<usize> = 0..4;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: std::ops::Range<usize> = 8..24;
    pub const DST: std::ops::Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Next-header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;

/// Extension header numbers (RFC 8200 4.1).
pub mod ext {
    /// Hop-by-Hop Options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing.
    pub const ROUTING: u8 = 43;
    /// Fragment.
    pub const FRAGMENT: u8 = 44;
    /// Destination Options.
    pub const DEST_OPTS: u8 = 60;
    /// Mobility, HIP, Shim6 and the experimental numbers: extension headers too (RFC 7045).
    pub const OTHERS: [u8; 6] = [135, 139, 140, 253, 254, 51];
}

/// Length of the IPv6 Fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Whether `next` names an extension header rather than an upper-layer protocol (AH, 51, is
/// one: it is followed by the transport header it authenticates).
pub fn is_extension_header(next: u8) -> bool {
    matches!(
        next,
        ext::HOP_BY_HOP | ext::ROUTING | ext::FRAGMENT | ext::DEST_OPTS
    ) || ext::OTHERS.contains(&next)
}

/// The fields of an IPv6 Fragment header (RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    /// The header after it (the fragmentable part's first header).
    pub next_header: u8,
    /// Offset of this fragment's data in bytes (the field counts 8-byte units).
    pub offset: u16,
    /// More fragments follow (M flag).
    pub more: bool,
    /// Identification shared by the fragments of one packet.
    pub ident: u32,
}

impl FragmentHeader {
    /// Parse a Fragment header at the start of `b` (an IPv6 payload).
    pub fn parse(b: &[u8]) -> Result<FragmentHeader, WireError> {
        if b.len() < FRAGMENT_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let off_flags = be16(b, 2);
        Ok(FragmentHeader {
            next_header: b[0],
            offset: off_flags & 0xfff8,
            more: off_flags & 1 != 0,
            ident: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// Whether this is a whole packet in a fragment header (offset 0, no more fragments,
    /// RFC 6946 "atomic fragment").
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

/// The fixed 40-byte header over an array the caller has already cut from the frame: the
/// fields of [`Ipv6Packet`] at the same offsets (`field`), with no check left that could fail.
/// What it does not check (the payload length against the frame) is the caller's to ask.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8; HEADER_LEN]);

impl Header<'_> {
    /// IP version (6 for an IPv6 header).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.0[field::VER_TC_FLOW.start] >> 4
    }

    /// Payload length.
    #[inline(always)]
    pub fn payload_len(&self) -> u16 {
        be16(self.0, field::PAYLOAD_LEN)
    }

    /// Next header.
    #[inline(always)]
    pub fn next_header(&self) -> u8 {
        self.0[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline(always)]
    pub fn hop_limit(&self) -> u8 {
        self.0[field::HOP_LIMIT]
    }

    /// Source address, as bytes.
    #[inline(always)]
    pub fn src_bytes(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.0[field::SRC]);
        a
    }

    /// Destination address, as bytes.
    #[inline(always)]
    pub fn dst_bytes(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.0[field::DST]);
        a
    }
}

impl Header<'_> {
    /// Source and destination as four words: the header's bytes 8..40 as little-endian
    /// loads (the flow table's key form).
    #[inline(always)]
    pub fn addrs_words(&self) -> [u64; 4] {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.0[field::SRC.start + i * 8..field::SRC.start + i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        [w(0), w(1), w(2), w(3)]
    }
}

/// The fixed header over an array the caller has already cut from the frame, writable.
#[derive(Debug)]
pub struct HeaderMut<'a>(pub &'a mut [u8; HEADER_LEN]);

impl HeaderMut<'_> {
    /// The header, read-only.
    #[inline(always)]
    pub fn get(&self) -> Header<'_> {
        Header(self.0)
    }

    /// Set the hop limit (IPv6 has no header checksum).
    #[inline(always)]
    pub fn set_hop_limit(&mut self, hops: u8) {
        self.0[field::HOP_LIMIT] = hops;
    }

    /// Set the source address from its bytes.
    #[inline(always)]
    pub fn set_src_bytes(&mut self, a: &[u8; 16]) {
        self.0[field::SRC].copy_from_slice(a);
    }

    /// Set the destination address from its bytes.
    #[inline(always)]
    pub fn set_dst_bytes(&mut self, a: &[u8; 16]) {
        self.0[field::DST].copy_from_slice(a);
    }
}

/// A view of an IPv6 packet.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Check version and payload length against the buffer (trailing padding allowed).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(WireError::BadVersion);
        }
        if HEADER_LEN + usize::from(be16(b, field::PAYLOAD_LEN)) > b.len() {
            return Err(WireError::BadLength);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label.
    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }

    /// The payload (without trailing padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set the hop limit (IPv6 has no header checksum).
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Set the source address.
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Set the destination address.
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Set the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        set_be16(self.buffer.as_mut(), field::PAYLOAD_LEN, len);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Write a fresh IPv6 header at the start of `buf` (at least [`HEADER_LEN`] bytes).
#[allow(clippy::too_many_arguments)]
pub fn emit_header(
    buf: &mut [u8],
    traffic_class: u8,
    flow_label: u32,
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    let first = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
    buf[field::VER_TC_FLOW].copy_from_slice(&first.to_be_bytes());
    set_be16(buf, field::PAYLOAD_LEN, payload_len);
    buf[field::NEXT_HEADER] = next_header;
    buf[field::HOP_LIMIT] = hop_limit;
    buf[field::SRC].copy_from_slice(&src.octets());
    buf[field::DST].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> Vec<u8> {
        let mut p = vec![0x60, 0x12, 0x34, 0x56, 0x00, 0x08, 17, 64];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        p
    }

    #[test]
    fn fields() {
        let buf = packet();
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.flow_label(), 0x23456);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn rejects_malformed() {
        let buf = packet();
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..39]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..47]).unwrap_err(),
            WireError::BadLength
        );
        let mut v4 = buf;
        v4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
            WireError::BadVersion
        );
    }

    #[test]
    fn header_views_read_and_write_the_fields() {
        let mut buf = packet();
        let h: &mut [u8; HEADER_LEN] = (&mut buf[..HEADER_LEN]).try_into().unwrap();
        let w = Header(h).addrs_words();
        assert_eq!(w[0].to_le_bytes(), buf_bytes("2001:db8::1")[..8]);
        assert_eq!(w[3].to_le_bytes(), buf_bytes("2001:db8::2")[8..]);
        let mut m = HeaderMut(h);
        m.set_hop_limit(7);
        m.set_src_bytes(&buf_bytes("fd00::9"));
        m.set_dst_bytes(&buf_bytes("fd00::8"));
        let p = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.hop_limit(), 7);
        assert_eq!(p.src(), "fd00::9".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "fd00::8".parse::<Ipv6Addr>().unwrap());
    }

    fn buf_bytes(a: &str) -> [u8; 16] {
        a.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn emit_matches_etherparse() {
        let mut buf = [0u8; 40];
        let (s, d) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        emit_header(&mut buf, 0xb8, 0xabcde, 100, 41, 64, s, d);
        let (h, _) = etherparse::Ipv6Header::from_slice(&buf).unwrap();
        assert_eq!(h.traffic_class, 0xb8);
        assert_eq!(h.flow_label.value(), 0xabcde);
        assert_eq!(h.payload_length, 100);
        assert_eq!(h.next_header, etherparse::IpNumber(41));
        assert_eq!(h.destination, d.octets());
    }
}
