//! TCP headers.

use super::{be16, be32, checksum, set_be16, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Flag bits.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The fixed 20-byte header as the fast path reads it: the fields of [`TcpPacket`] at the
/// same offsets (`field`), over an array the caller has already cut from the segment. Whether
/// the data offset fits the segment is the caller's to ask ([`header_len`](Self::header_len)).
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8; HEADER_LEN]);

impl Header<'_> {
    /// Source then destination port as the header carries them (its first four bytes),
    /// read as one little-endian word: the flow table's form (`flow::slot`).
    #[inline(always)]
    pub fn ports_word(&self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// Source port.
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        be16(self.0, field::SRC_PORT)
    }

    /// Destination port.
    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        be16(self.0, field::DST_PORT)
    }

    /// Checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.0, field::CHECKSUM)
    }

    /// Header length in bytes from the data offset (options included).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        usize::from(self.0[field::DATA_OFF] >> 4) * 4
    }

    /// Flags byte.
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        self.0[field::FLAGS]
    }
}

/// [`Header`], writable: the rewrites of the fast path.
#[derive(Debug)]
pub struct HeaderMut<'a>(pub &'a mut [u8; HEADER_LEN]);

impl HeaderMut<'_> {
    /// Set the source port, given as the header carries it (little-endian load of its two
    /// bytes; the checksum is the caller's).
    #[inline(always)]
    pub fn set_src_port_wire(&mut self, p: u16) {
        self.0[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&p.to_le_bytes());
    }

    /// Set the destination port, in the form of [`set_src_port_wire`](Self::set_src_port_wire).
    #[inline(always)]
    pub fn set_dst_port_wire(&mut self, p: u16) {
        self.0[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&p.to_le_bytes());
    }

    /// Checksum field.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        be16(self.0, field::CHECKSUM)
    }

    /// Set the checksum field.
    #[inline(always)]
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.0, field::CHECKSUM, c);
    }
}

/// A view of a TCP segment.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Check the header and its options fit in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let off = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if off < HEADER_LEN || off > b.len() {
            return Err(WireError::BadHeaderLen);
        }
        Ok(TcpPacket { buffer })
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length including options.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window.
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The options bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Set the source port, updating the checksum incrementally.
    pub fn set_src_port_incremental(&mut self, port: u16) {
        self.set_port(field::SRC_PORT, port);
    }

    /// Set the destination port, updating the checksum incrementally.
    pub fn set_dst_port_incremental(&mut self, port: u16) {
        self.set_port(field::DST_PORT, port);
    }

    fn set_port(&mut self, at: usize, port: u16) {
        let b = self.buffer.as_mut();
        let old = be16(b, at);
        set_be16(b, at, port);
        let c = checksum::update16(be16(b, field::CHECKSUM), old, port);
        set_be16(b, field::CHECKSUM, c);
    }

    /// Account in the checksum for a pseudo-header address change from `old` to `new`.
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        let b = self.buffer.as_mut();
        let c = checksum::update(be16(b, field::CHECKSUM), old, new);
        set_be16(b, field::CHECKSUM, c);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// The options bytes, writable (for MSS clamping).
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xff,
        0xff, 0x12, 0x34, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn fields() {
        let t = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq(), 1);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), flags::SYN);
        assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(t.checksum(), 0x1234);
    }

    #[test]
    fn rejects_bad_offset() {
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut b = SYN;
        b[12] = 0x40; // 16 bytes < 20
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
        b[12] = 0x70; // 28 bytes > 24
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadHeaderLen
        );
    }

    #[test]
    fn port_rewrite_updates_checksum() {
        let mut b = SYN;
        let before = checksum::sum(&b);
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_dst_port_incremental(8080);
        assert_eq!(t.dst_port(), 8080);
        // The sum over the segment (checksum field included) is unchanged by a correct update.
        assert_eq!(checksum::fold(checksum::sum(&b)), checksum::fold(before));
    }
}
