//! IPv4 headers.

use super::{be16, checksum, set_be16, WireError};
use std::net::Ipv4Addr;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// Protocol numbers.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP (RFC 2003).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP (RFC 4213).
    pub const IPV6: u8 = 41;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

/// A view of an IPv4 packet.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Check version, IHL and total length against the buffer. Bytes past the total length
    /// (Ethernet padding) are allowed and ignored by [`payload`](Self::payload).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(WireError::BadHeaderLen);
        }
        let total = usize::from(be16(b, field::TOTAL_LEN));
        if total < header_len || total > b.len() {
            return Err(WireError::BadLength);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// Header length in bytes (20 to 60).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length (header + payload).
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        let f = be16(self.buffer.as_ref(), field::FLAGS_FRAG);
        f & FLAG_MF != 0 || f & 0x1fff != 0
    }

    /// Time to live.
    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff) << 3
    }

    /// More fragments follow (MF).
    pub fn more_fragments(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Payload protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTO]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(&self.buffer.as_ref()[..self.header_len()])
    }

    /// The payload up to the total length (without Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set the TTL, updating the header checksum incrementally.
    pub fn set_ttl_incremental(&mut self, ttl: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::TTL);
        b[field::TTL] = ttl;
        let new = be16(b, field::TTL);
        let c = checksum::update16(be16(b, field::CHECKSUM), old, new);
        set_be16(b, field::CHECKSUM, c);
    }

    /// Set the source address, updating the header checksum incrementally.
    pub fn set_src_incremental(&mut self, addr: Ipv4Addr) {
        self.set_addr_incremental(field::SRC, addr);
    }

    /// Set the destination address, updating the header checksum incrementally.
    pub fn set_dst_incremental(&mut self, addr: Ipv4Addr) {
        self.set_addr_incremental(field::DST, addr);
    }

    fn set_addr_incremental(&mut self, range: std::ops::Range<usize>, addr: Ipv4Addr) {
        let b = self.buffer.as_mut();
        let mut old = [0u8; 4];
        old.copy_from_slice(&b[range.clone()]);
        b[range].copy_from_slice(&addr.octets());
        let c = checksum::update(be16(b, field::CHECKSUM), &old, &addr.octets());
        set_be16(b, field::CHECKSUM, c);
    }

    /// Set the source address (checksum not touched).
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Set the destination address (checksum not touched).
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Set the TTL (checksum not touched).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Set the total length (checksum not touched).
    pub fn set_total_len(&mut self, len: u16) {
        set_be16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Recompute the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let h = self.header_len();
        let b = self.buffer.as_mut();
        set_be16(b, field::CHECKSUM, 0);
        let c = checksum::finish(checksum::sum(&b[..h]));
        set_be16(b, field::CHECKSUM, c);
    }

    /// The payload up to the total length, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[h..t]
    }
}

/// Write a fresh 20-byte header (no options) at the start of `buf` with its checksum.
/// `buf` must hold at least [`HEADER_LEN`] bytes.
#[allow(clippy::too_many_arguments)]
pub fn emit_header(
    buf: &mut [u8],
    tos: u8,
    total_len: u16,
    ident: u16,
    dont_frag: bool,
    ttl: u8,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    let h = &mut buf[..HEADER_LEN];
    h[field::VER_IHL] = 0x45;
    h[field::TOS] = tos;
    set_be16(h, field::TOTAL_LEN, total_len);
    set_be16(h, field::IDENT, ident);
    set_be16(h, field::FLAGS_FRAG, if dont_frag { FLAG_DF } else { 0 });
    h[field::TTL] = ttl;
    h[field::PROTO] = protocol;
    set_be16(h, field::CHECKSUM, 0);
    h[field::SRC].copy_from_slice(&src.octets());
    h[field::DST].copy_from_slice(&dst.octets());
    let c = checksum::finish(checksum::sum(h));
    set_be16(h, field::CHECKSUM, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.0.0.2, TCP, total length 40, TTL 64, DF, checksum 0x26c8 (computed by
    // hand with the RFC 1071 sum), followed by 20 bytes of TCP and 2 bytes of padding.
    fn packet() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2,
        ];
        let c = checksum::finish(checksum::sum(&p));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&[0u8; 22]);
        p
    }

    #[test]
    fn fields() {
        let buf = packet();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), proto::TCP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 0, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 20, "padding excluded");
    }

    #[test]
    fn rejects_malformed() {
        let good = packet();
        assert_eq!(
            Ipv4Packet::new_checked(&good[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            WireError::BadVersion
        );
        let mut ihl = good.clone();
        ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        ihl[0] = 0x4f; // 60 bytes > 42 in buffer
        assert_eq!(
            Ipv4Packet::new_checked(&ihl[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        let mut long = good.clone();
        long[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut short = good;
        short[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&short[..]).unwrap_err(),
            WireError::BadLength
        );
    }

    #[test]
    fn options_are_skipped() {
        let mut buf = packet();
        buf[0] = 0x46; // 24-byte header: 4 bytes of options (the first 4 of the old payload)
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 16);
    }

    #[test]
    fn incremental_setters_keep_checksum_valid() {
        let mut buf = packet();
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl_incremental(63);
        p.set_dst_incremental(Ipv4Addr::new(192, 168, 7, 9));
        p.set_src_incremental(Ipv4Addr::new(172, 16, 0, 1));
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 7, 9));
    }

    #[test]
    fn emit_matches_etherparse() {
        let mut buf = [0u8; 20];
        emit_header(
            &mut buf,
            0,
            20,
            7,
            true,
            64,
            proto::IPIP,
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
        );
        let (h, _) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        assert_eq!(h.source, [1, 2, 3, 4]);
        assert!(h.dont_fragment);
    }
}
