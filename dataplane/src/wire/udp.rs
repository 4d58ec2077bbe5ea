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
