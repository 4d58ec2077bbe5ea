//! Ethernet II frames with an optional 802.1Q tag.

use super::{be16, set_be16, WireError};
use std::fmt;

/// A MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00 (unknown, as in an ARP request's target).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Whether the group bit is set (broadcast or multicast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            *byte = u8::from_str_radix(p, 16)
                .map_err(|_| format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            if p.len() != 2 {
                return Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
            }
        }
        if parts.next().is_some() {
            return Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        Ok(MacAddr(out))
    }
}

/// EtherType values vipd handles.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag some switches still send.
    pub const QINQ_OLD: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    pub const DST: std::ops::Range<usize> = 0..6;
    pub const SRC: std::ops::Range<usize> = 6..12;
    pub const TYPE: usize = 12;
    pub const VLAN_TCI: usize = 14;
    pub const VLAN_TYPE: usize = 16;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q-tagged Ethernet header.
pub const VLAN_HEADER_LEN: usize = 18;

/// The untagged 14-byte header as the fast path reads it: the fields of [`EthernetFrame`] at
/// the same offsets (`field`), over an array the caller has already cut from the frame.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8; HEADER_LEN]);

/// Six MAC bytes as one integer (a compare instead of six): `mac48` of the same MAC is equal
/// whatever the source, and its lowest bit of the first byte (bit 40) is the group bit.
#[inline(always)]
pub fn mac48(b: &[u8; 6]) -> u64 {
    u64::from(u16::from_be_bytes([b[0], b[1]])) << 32
        | u64::from(u32::from_be_bytes([b[2], b[3], b[4], b[5]]))
}

/// The group (multicast) bit in [`Header::dst_word`] and [`Header::src_word`].
pub const GROUP_BIT: u64 = 1;

/// A MAC as [`Header::dst_word`] reads it (its six bytes, little-endian load).
#[inline]
pub fn mac_word(m: &MacAddr) -> u64 {
    let mut w = [0u8; 8];
    w[..6].copy_from_slice(&m.0);
    u64::from_le_bytes(w)
}

impl Header<'_> {
    /// The destination MAC's six bytes as one little-endian word (a compare instead of six;
    /// the group bit is [`GROUP_BIT`]).
    #[inline(always)]
    pub fn dst_word(&self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(w) & 0xffff_ffff_ffff
    }

    /// The source MAC as [`dst_word`](Self::dst_word) reads it.
    #[inline(always)]
    pub fn src_word(&self) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[6..14]);
        u64::from_le_bytes(w) & 0xffff_ffff_ffff
    }

    /// The destination MAC as [`mac48`].
    #[inline(always)]
    pub fn dst48(&self) -> u64 {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.0[field::DST]);
        mac48(&m)
    }

    /// The source MAC as [`mac48`].
    #[inline(always)]
    pub fn src48(&self) -> u64 {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.0[field::SRC]);
        mac48(&m)
    }

    /// EtherType (of the untagged frame; a tag's 0x8100 for a tagged one).
    #[inline(always)]
    pub fn ethertype(&self) -> u16 {
        be16(self.0, field::TYPE)
    }
}

/// The destination and source MAC, in frame order: what a forwarded frame's first twelve
/// bytes become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacPair(pub [u8; 12]);

impl MacPair {
    /// `dst` then `src`.
    pub fn new(dst: MacAddr, src: MacAddr) -> Self {
        let mut b = [0u8; 12];
        b[field::DST].copy_from_slice(&dst.0);
        b[field::SRC].copy_from_slice(&src.0);
        MacPair(b)
    }

    /// Write them over the frame's first twelve bytes.
    #[inline(always)]
    pub fn write(&self, frame: &mut [u8; HEADER_LEN]) {
        frame[..12].copy_from_slice(&self.0);
    }
}

/// A view of an Ethernet frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    header_len: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Check the header (and the VLAN tag, if any) fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = if be16(b, field::TYPE) == ethertype::VLAN {
            if b.len() < VLAN_HEADER_LEN {
                return Err(WireError::Truncated);
            }
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        };
        Ok(EthernetFrame { buffer, header_len })
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(m)
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(m)
    }

    /// The EtherType of the payload (after the VLAN tag, if any).
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        if self.header_len == VLAN_HEADER_LEN {
            be16(b, field::VLAN_TYPE)
        } else {
            be16(b, field::TYPE)
        }
    }

    /// The VLAN id of an 802.1Q-tagged frame.
    pub fn vlan_id(&self) -> Option<u16> {
        (self.header_len == VLAN_HEADER_LEN)
            .then(|| be16(self.buffer.as_ref(), field::VLAN_TCI) & 0x0fff)
    }

    /// Header length: 14, or 18 with a VLAN tag.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload (the network-layer packet, with any Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination MAC.
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Set the source MAC.
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Set the payload EtherType.
    pub fn set_ethertype(&mut self, ty: u16) {
        let at = if self.header_len == VLAN_HEADER_LEN {
            field::VLAN_TYPE
        } else {
            field::TYPE
        };
        set_be16(self.buffer.as_mut(), at, ty);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len;
        &mut self.buffer.as_mut()[h..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTAGGED: [u8; 16] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, 0x45, 0x00,
    ];
    const TAGGED: [u8; 20] = [
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x81, 0x00, 0x20, 0x64, 0x86, 0xdd, 0x60, 0,
    ];

    #[test]
    fn untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn tagged() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), ethertype::IPV6);
        assert_eq!(f.header_len(), 18);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            EthernetFrame::new_checked(&TAGGED[..17]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn setters_touch_only_their_field() {
        let mut buf = [0xa5u8; 20];
        buf[12] = 0x08;
        buf[13] = 0x00;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(MacAddr([1, 2, 3, 4, 5, 6]));
        f.set_src(MacAddr::BROADCAST);
        f.set_ethertype(ethertype::ARP);
        assert_eq!(
            &buf[..14],
            &[1, 2, 3, 4, 5, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x08, 0x06]
        );
        assert!(buf[14..].iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn mac_parse() {
        assert_eq!(
            "02:00:00:00:00:0a".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 10])
        );
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:0a:01".parse::<MacAddr>().is_err());
        assert!("zz:00:00:00:00:0a".parse::<MacAddr>().is_err());
        assert_eq!(
            MacAddr([2, 0, 0, 0, 0, 10]).to_string(),
            "02:00:00:00:00:0a"
        );
    }
}
