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

/// The fixed 20-byte header as the fast path reads it: the fields of [`Ipv4Packet`] at the
/// same offsets (`field`), over an array the caller has already cut from the frame, so no
/// accessor has a check left that could fail. What it does not check (version, header and
/// total length against the frame, the checksum) is the caller's to ask.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8; HEADER_LEN]);

impl Header<'_> {
    /// Version and IHL (0x45 for a header without options).
    #[inline(always)]
    pub fn ver_ihl(&self) -> u8 {
        self.0[field::VER_IHL]
    }

    /// IP version (4 for an IPv4 header).
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.0[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included (IHL x 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.0[field::VER_IHL] & 0x0f) * 4
    }

    /// Type of service / DSCP+ECN byte.
    #[inline(always)]
    pub fn tos(&self) -> u8 {
        self.0[field::TOS]
    }

    /// Total length (header + payload).
    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        be16(self.0, field::TOTAL_LEN)
    }

    /// Identification.
    #[inline(always)]
    pub fn ident(&self) -> u16 {
        be16(self.0, field::IDENT)
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        be16(self.0, field::FLAGS_FRAG) & (FLAG_MF | 0x1fff) != 0
    }

    /// Don't Fragment flag.
    #[inline(always)]
    pub fn dont_frag(&self) -> bool {
        be16(self.0, field::FLAGS_FRAG) & FLAG_DF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline(always)]
    pub fn frag_offset(&self) -> u16 {
        (be16(self.0, field::FLAGS_FRAG) & 0x1fff) << 3
    }

    /// Time to live.
    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.0[field::TTL]
    }

    /// Payload protocol.
    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.0[field::PROTO]
    }

    /// Header checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.0, field::CHECKSUM)
    }

    /// Source address as a number (`u32::from(Ipv4Addr)`).
    #[inline(always)]
    pub fn src_u32(&self) -> u32 {
        super::be32(self.0, field::SRC.start)
    }

    /// Destination address as a number.
    #[inline(always)]
    pub fn dst_u32(&self) -> u32 {
        super::be32(self.0, field::DST.start)
    }

    /// Source and destination as the header carries them (bytes 12..20), read as one
    /// little-endian word: the flow table's form (`flow::slot`).
    #[inline(always)]
    pub fn addrs_word(&self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[field::SRC.start..field::DST.end]);
        u64::from_le_bytes(w)
    }

    /// Whether the header checksum is correct (the header has no options).
    #[inline(always)]
    pub fn verifies(&self) -> bool {
        checksum::verifies20(self.0)
    }
}

/// [`Header`], writable: the rewrites of the fast path.
#[derive(Debug)]
pub struct HeaderMut<'a>(pub &'a mut [u8; HEADER_LEN]);

impl HeaderMut<'_> {
    /// The header, read-only.
    #[inline(always)]
    pub fn get(&self) -> Header<'_> {
        Header(self.0)
    }

    /// Set the time to live (the checksum is the caller's).
    #[inline(always)]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.0[field::TTL] = ttl;
    }

    /// Set the source address, given as the header carries it (little-endian load of the
    /// four bytes; the checksum is the caller's).
    #[inline(always)]
    pub fn set_src_wire(&mut self, a: u32) {
        self.0[field::SRC].copy_from_slice(&a.to_le_bytes());
    }

    /// Set the destination address, in the form of [`set_src_wire`](Self::set_src_wire).
    #[inline(always)]
    pub fn set_dst_wire(&mut self, a: u32) {
        self.0[field::DST].copy_from_slice(&a.to_le_bytes());
    }

    /// Set the header checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.0, field::CHECKSUM, c);
    }
}

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
/// `buf` must hold at least [`HEADER_LEN`] bytes (a shorter one is left as it is).
#[allow(clippy::too_many_arguments)] // the header's fields
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
    if let Some(h) = buf.first_chunk_mut::<HEADER_LEN>() {
        let wire = |a: Ipv4Addr| u32::from_le_bytes(a.octets());
        emit_header_wire(
            h,
            tos,
            total_len,
            ident,
            dont_frag,
            ttl,
            protocol,
            wire(src),
            wire(dst),
        );
    }
}

/// [`emit_header`] with the addresses as the header carries them (little-endian loads of
/// their four bytes). The checksum sums the header's five 32-bit words as they lie in memory:
/// the one's-complement sum of byte-swapped words is the byte-swapped sum (RFC 1071 2(B)),
/// so the field is that sum's complement stored little-endian.
#[allow(clippy::too_many_arguments)] // the header's fields
#[inline(always)]
pub fn emit_header_wire(
    h: &mut [u8; HEADER_LEN],
    tos: u8,
    total_len: u16,
    ident: u16,
    dont_frag: bool,
    ttl: u8,
    protocol: u8,
    src: u32,
    dst: u32,
) {
    h[field::VER_IHL] = 0x45;
    h[field::TOS] = tos;
    set_be16(h, field::TOTAL_LEN, total_len);
    set_be16(h, field::IDENT, ident);
    set_be16(h, field::FLAGS_FRAG, if dont_frag { FLAG_DF } else { 0 });
    h[field::TTL] = ttl;
    h[field::PROTO] = protocol;
    h[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
    h[field::SRC].copy_from_slice(&src.to_le_bytes());
    h[field::DST].copy_from_slice(&dst.to_le_bytes());
    let w = |i: usize| u32::from(u16::from_le_bytes([h[i], h[i + 1]]));
    let acc = (0..HEADER_LEN).step_by(2).map(w).sum::<u32>();
    let c = !checksum::fold(acc);
    h[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_le_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn emitted_headers_sum_right() {
        let mut x = 0x9e37_79b9u32;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut h = [0u8; HEADER_LEN];
            emit_header(
                &mut h,
                x as u8,
                (x >> 8) as u16,
                (x >> 3) as u16,
                x & 1 == 0,
                (x >> 24) as u8,
                (x >> 16) as u8,
                Ipv4Addr::from(x.rotate_left(7)),
                Ipv4Addr::from(x.wrapping_mul(2_654_435_761)),
            );
            assert!(checksum::verifies(&h), "{h:02x?}");
            let mut zeroed = h;
            zeroed[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(be16(&h, 10), checksum::finish(checksum::sum(&zeroed)));
        }
    }

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
