//! ARP for Ethernet and IPv4 (RFC 826).

use super::{be16, set_be16, MacAddr, WireError};
use std::net::Ipv4Addr;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: std::ops::Range<usize> = 8..14;
    pub const SPA: std::ops::Range<usize> = 14..18;
    pub const THA: std::ops::Range<usize> = 18..24;
    pub const TPA: std::ops::Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operations.
pub mod op {
    /// Request.
    pub const REQUEST: u16 = 1;
    /// Reply.
    pub const REPLY: u16 = 2;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Check length and that hardware/protocol types are Ethernet/IPv4.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(b, field::HTYPE) != 1
            || be16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(ArpPacket { buffer })
    }

    /// Operation.
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        MacAddr(m)
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        MacAddr(m)
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::TPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

/// Write an Ethernet/IPv4 ARP packet into `buf` (at least [`PACKET_LEN`] bytes).
pub fn emit(
    buf: &mut [u8],
    operation: u16,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) {
    set_be16(buf, field::HTYPE, 1);
    set_be16(buf, field::PTYPE, 0x0800);
    buf[field::HLEN] = 6;
    buf[field::PLEN] = 4;
    set_be16(buf, field::OPER, operation);
    buf[field::SHA].copy_from_slice(&sender_mac.0);
    buf[field::SPA].copy_from_slice(&sender_ip.octets());
    buf[field::THA].copy_from_slice(&target_mac.0);
    buf[field::TPA].copy_from_slice(&target_ip.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    // Who has 10.0.0.1? Tell 10.0.0.2 (02:00:00:00:00:02).
    const REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];

    #[test]
    fn parse_request() {
        let a = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(a.operation(), op::REQUEST);
        assert_eq!(a.sender_mac(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(a.sender_ip(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(a.target_ip(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn emit_roundtrip_and_rejects() {
        let mut buf = [0u8; 28];
        emit(
            &mut buf,
            op::REQUEST,
            MacAddr([2, 0, 0, 0, 0, 2]),
            Ipv4Addr::new(10, 0, 0, 2),
            MacAddr::ZERO,
            Ipv4Addr::new(10, 0, 0, 1),
        );
        assert_eq!(buf, REQUEST);
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = REQUEST;
        bad[5] = 16;
        assert_eq!(
            ArpPacket::new_checked(&bad[..]).unwrap_err(),
            WireError::Unsupported
        );
    }
}
