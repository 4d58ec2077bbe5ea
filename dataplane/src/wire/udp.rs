//! UDP headers.

use super::{be16, checksum, set_be16, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

/// The 8-byte header as the fast path reads it: the fields of [`UdpPacket`] at the same
/// offsets (`field`), over an array the caller has already cut from the datagram. Whether the
/// length field fits the datagram is the caller's to ask.
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

    /// Length field (header and payload).
    #[inline(always)]
    pub fn length(&self) -> u16 {
        be16(self.0, field::LENGTH)
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

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Check the header fits and the length field is within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(be16(b, field::LENGTH));
        if len < HEADER_LEN || len > b.len() {
            return Err(WireError::BadLength);
        }
        Ok(UdpPacket { buffer })
    }

    /// Source port.
    /// Check only that the 8-byte header is there, not the length field: for the first
    /// fragment of a datagram (whose length field counts every fragment) and for a header
    /// quoted in an ICMP error.
    pub fn new_header_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(UdpPacket { buffer })
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the datagram carries no payload.
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    /// Checksum field (0: none, IPv4 only).
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
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
        let c = checksum::update_udp(
            be16(b, field::CHECKSUM),
            &old.to_be_bytes(),
            &port.to_be_bytes(),
        );
        set_be16(b, field::CHECKSUM, c);
    }

    /// Account in the checksum for a pseudo-header address change from `old` to `new`.
    pub fn update_checksum_for_addr(&mut self, old: &[u8], new: &[u8]) {
        let b = self.buffer.as_mut();
        let c = checksum::update_udp(be16(b, field::CHECKSUM), old, new);
        set_be16(b, field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_checks() {
        let d = [0x00, 0x35, 0x9c, 0x40, 0x00, 0x0a, 0x00, 0x00, 0xab, 0xcd];
        let u = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!(u.src_port(), 53);
        assert_eq!(u.dst_port(), 40000);
        assert_eq!(u.len(), 10);
        assert_eq!(
            UdpPacket::new_checked(&d[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&d[..9]).unwrap_err(),
            WireError::BadLength
        );
        let mut short = d;
        short[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&short[..]).unwrap_err(),
            WireError::BadLength
        );
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut d = [0x00, 0x35, 0x9c, 0x40, 0x00, 0x08, 0x00, 0x00];
        let mut u = UdpPacket::new_checked(&mut d[..]).unwrap();
        u.set_dst_port_incremental(1);
        assert_eq!(u.checksum(), 0);
    }
}
