//! The 802.1Q tag of an Ethernet frame: the four bytes after the MACs (TPID 0x8100 and the
//! TCI: priority, drop eligibility, VLAN id), then the payload's EtherType. vipd parses one
//! tag; a stacked (QinQ) tag is the payload's EtherType being a tag again.

use super::ethernet::{ethertype, HEADER_LEN, VLAN_HEADER_LEN};
use super::{be16, set_be16, WireError};

mod field {
    pub const TPID: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_TYPE: usize = 16;
}

/// Bytes a tag adds to a frame.
pub const TAG_LEN: usize = VLAN_HEADER_LEN - HEADER_LEN;

/// Mask of the VLAN id in the TCI.
pub const VID_MASK: u16 = 0x0fff;

/// The VLAN id of a priority tag: the frame carries only a priority (802.1p) and belongs to
/// the port's untagged VLAN (IEEE 802.1Q 9.6).
pub const PRIORITY_ONLY: u16 = 0;

/// Whether `id` is a VLAN id a port may carry (0 means "priority tag only", 4095 is
/// reserved: IEEE 802.1Q table 9-2).
pub fn is_valid_id(id: u16) -> bool {
    (1..=4094).contains(&id)
}

/// Whether `ty` (an EtherType) announces a VLAN tag of any kind (802.1Q, 802.1ad, the
/// pre-standard 0x9100).
pub fn is_tag(ty: u16) -> bool {
    matches!(ty, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD)
}

/// A view of a frame's 802.1Q header (MACs, tag, inner EtherType): the first 18 bytes.
#[derive(Debug)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Check the frame holds a whole 802.1Q header whose TPID is 0x8100.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < VLAN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if be16(b, field::TPID) != ethertype::VLAN {
            return Err(WireError::Unsupported);
        }
        Ok(VlanHeader { buffer })
    }

    /// The whole TCI (priority, DEI and VLAN id).
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// The VLAN id.
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The priority code point (802.1p).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// The EtherType of what the tag carries.
    pub fn inner_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::INNER_TYPE)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Set the VLAN id, keeping the priority and DEI bits.
    pub fn set_vid(&mut self, id: u16) {
        let tci = (self.tci() & !VID_MASK) | (id & VID_MASK);
        set_be16(self.buffer.as_mut(), field::TCI, tci);
    }
}

/// The VLAN id of a frame tagged 802.1Q, `None` for any other frame (untagged, too short,
/// or an 802.1ad outer tag).
#[inline]
pub fn vid_of(frame: &[u8]) -> Option<u16> {
    VlanHeader::new_checked(frame).ok().map(|h| h.vid())
}

/// The VLAN a frame belongs to by its 802.1Q tag: its VLAN id, `None` for an untagged or
/// priority-tagged frame (both in the port's untagged context) and for any frame
/// [`vid_of`] does not read.
#[inline]
pub fn vlan_of(frame: &[u8]) -> Option<u16> {
    vid_of(frame).filter(|&id| id != PRIORITY_ONLY)
}

/// Write a tag for VLAN `id` (priority 0) into a frame that was just grown by [`TAG_LEN`]
/// bytes at the front: the MACs move to the new start, the tag goes between them and the
/// EtherType, which stays where it was. False if the frame is too short.
pub fn insert_tag(frame: &mut [u8], id: u16) -> bool {
    if frame.len() < VLAN_HEADER_LEN {
        return false;
    }
    frame.copy_within(TAG_LEN..TAG_LEN + 12, 0);
    set_be16(frame, field::TPID, ethertype::VLAN);
    set_be16(frame, field::TCI, id & VID_MASK);
    true
}

/// Move a tagged frame's MACs over its tag, so that cutting [`TAG_LEN`] bytes from the front
/// leaves the untagged frame. False if the frame holds no whole tag.
pub fn remove_tag(frame: &mut [u8]) -> bool {
    if frame.len() < VLAN_HEADER_LEN {
        return false;
    }
    frame.copy_within(0..12, TAG_LEN);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{EtherType, Ethernet2Header, SingleVlanHeader, VlanId, VlanPcp};

    fn tagged(id: u16, pcp: u8, inner: EtherType) -> Vec<u8> {
        let mut out = Vec::new();
        Ethernet2Header {
            destination: [2, 0, 0, 0, 0, 1],
            source: [2, 0, 0, 0, 0, 2],
            ether_type: EtherType::VLAN_TAGGED_FRAME,
        }
        .write(&mut out)
        .unwrap();
        SingleVlanHeader {
            pcp: VlanPcp::try_new(pcp).unwrap(),
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(id).unwrap(),
            ether_type: inner,
        }
        .write(&mut out)
        .unwrap();
        out.extend_from_slice(&[0x45, 0, 0, 20]);
        out
    }

    #[test]
    fn reads_what_etherparse_writes() {
        let f = tagged(100, 5, EtherType::IPV4);
        let h = VlanHeader::new_checked(&f[..]).unwrap();
        assert_eq!(h.vid(), 100);
        assert_eq!(h.pcp(), 5);
        assert_eq!(h.inner_ethertype(), ethertype::IPV4);
        assert_eq!(vid_of(&f), Some(100));
    }

    #[test]
    fn refuses_short_and_untagged_and_outer_tags() {
        let f = tagged(100, 0, EtherType::IPV4);
        assert_eq!(
            VlanHeader::new_checked(&f[..17]).unwrap_err(),
            WireError::Truncated
        );
        let mut ad = f.clone();
        ad[12..14].copy_from_slice(&ethertype::QINQ.to_be_bytes());
        assert_eq!(
            VlanHeader::new_checked(&ad[..]).unwrap_err(),
            WireError::Unsupported
        );
        assert_eq!(vid_of(&ad), None);
        assert!(is_tag(ethertype::QINQ) && is_tag(ethertype::QINQ_OLD));
        assert!(!is_tag(ethertype::IPV4));
    }

    #[test]
    fn set_vid_keeps_priority() {
        let mut f = tagged(100, 6, EtherType::IPV6);
        VlanHeader::new_checked(&mut f[..]).unwrap().set_vid(4094);
        let (tag, _) = SingleVlanHeader::from_slice(&f[14..]).unwrap();
        assert_eq!(tag.vlan_id.value(), 4094);
        assert_eq!(tag.pcp.value(), 6);
        assert_eq!(tag.ether_type, EtherType::IPV6);
    }

    #[test]
    fn insert_then_remove_round_trips() {
        let plain: Vec<u8> = {
            let mut v = Vec::new();
            Ethernet2Header {
                destination: [2, 0, 0, 0, 0, 1],
                source: [2, 0, 0, 0, 0, 2],
                ether_type: EtherType::IPV4,
            }
            .write(&mut v)
            .unwrap();
            v.extend_from_slice(&[0x45, 0, 0, 20]);
            v
        };
        let mut grown = vec![0u8; TAG_LEN];
        grown.extend_from_slice(&plain);
        assert!(insert_tag(&mut grown, 100));
        assert_eq!(grown, tagged(100, 0, EtherType::IPV4));
        assert!(remove_tag(&mut grown));
        assert_eq!(&grown[TAG_LEN..], &plain[..]);
    }

    #[test]
    fn a_priority_tag_names_no_vlan() {
        let f = tagged(0, 5, EtherType::IPV4);
        assert_eq!(vid_of(&f), Some(0));
        assert_eq!(vlan_of(&f), None);
        assert_eq!(vlan_of(&tagged(100, 5, EtherType::IPV4)), Some(100));
        assert_eq!(vlan_of(&f[..17]), None);
    }

    #[test]
    fn ids() {
        assert!(!is_valid_id(0) && !is_valid_id(4095));
        assert!(is_valid_id(1) && is_valid_id(4094));
    }
}
