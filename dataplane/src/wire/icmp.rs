//! ICMP and ICMPv6 messages (same first 8 bytes: type, code, checksum, 4 bytes of body).

use super::{be16, checksum, set_be16, WireError};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
}

/// Length of the fixed part every message vipd handles has.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 types.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (code 4: fragmentation needed).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Code of "fragmentation needed and DF set".
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 types.
pub mod v6 {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// A view of an ICMP or ICMPv6 message.
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Check the fixed 8 bytes are present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(IcmpPacket { buffer })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// ICMPv4: the checksum over the whole message is right. Pass exactly the message
    /// (the IP payload, without Ethernet padding).
    pub fn verify_checksum_v4(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }

    /// ICMPv6: the checksum over the pseudo-header and the message is right.
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let pseudo = checksum::pseudo_v6(src, dst, super::ipv6::NEXT_HEADER_ICMPV6, len);
        checksum::fold(pseudo + checksum::sum(b)) == 0xffff
    }
}

/// Whether an ICMPv4 type is an error message (RFC 1122 3.2.2): errors are never answered
/// with errors and quote the packet they are about.
pub fn is_error_v4(msg_type: u8) -> bool {
    matches!(
        msg_type,
        v4::DEST_UNREACHABLE
            | v4::SOURCE_QUENCH
            | v4::REDIRECT
            | v4::TIME_EXCEEDED
            | v4::PARAM_PROBLEM
    )
}

/// Whether an ICMPv6 type is an error message (types below 128, RFC 4443 2.1).
pub fn is_error_v6(msg_type: u8) -> bool {
    msg_type < 128
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Change the type (echo request -> reply), updating the checksum incrementally. Valid for
    /// ICMPv6 too: its pseudo-header sum does not change when source and destination swap.
    pub fn set_type_incremental(&mut self, ty: u8) {
        let b = self.buffer.as_mut();
        let old = be16(b, field::TYPE);
        b[field::TYPE] = ty;
        let new = be16(b, field::TYPE);
        let c = checksum::update16(be16(b, field::CHECKSUM), old, new);
        set_be16(b, field::CHECKSUM, c);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, c: u16) {
        set_be16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Recompute the ICMPv4 checksum over the whole message.
    pub fn fill_checksum_v4(&mut self) {
        let b = self.buffer.as_mut();
        set_be16(b, field::CHECKSUM, 0);
        let c = checksum::finish(checksum::sum(b));
        set_be16(b, field::CHECKSUM, c);
    }

    /// Recompute the ICMPv6 checksum over the pseudo-header and the message.
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let b = self.buffer.as_mut();
        set_be16(b, field::CHECKSUM, 0);
        let pseudo = checksum::pseudo_v6(src, dst, super::ipv6::NEXT_HEADER_ICMPV6, b.len() as u32);
        let c = checksum::finish(pseudo + checksum::sum(b));
        set_be16(b, field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_to_reply() {
        let mut m = [8u8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, b'h', b'i'];
        let c = checksum::finish(checksum::sum(&m));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        let mut p = IcmpPacket::new_checked(&mut m[..]).unwrap();
        assert_eq!(p.msg_type(), v4::ECHO_REQUEST);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        p.set_type_incremental(v4::ECHO_REPLY);
        let (h, _) = etherparse::Icmpv4Header::from_slice(&m).unwrap();
        assert_eq!(h.checksum, h.icmp_type.calc_checksum(&m[8..]));
        assert!(matches!(h.icmp_type, etherparse::Icmpv4Type::EchoReply(_)));
    }

    #[test]
    fn truncated() {
        assert_eq!(
            IcmpPacket::new_checked(&[8u8, 0, 0][..]).unwrap_err(),
            WireError::Truncated
        );
    }
}
