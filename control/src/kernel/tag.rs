//! A VLAN's kernel interface carries the VLAN untagged (the host kernel may have no 8021q
//! module to hang a VLAN device off the port's tap): the exception thread removes the VLAN's
//! tag from the frames it hands to the kernel and adds it to the frames the kernel sends.

use super::counters::KernelCounter;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::wire::vlan::{self, TAG_LEN};

/// Remove the 802.1Q tag of a frame from the wire for VLAN `id`'s kernel interface. The
/// pipeline hands over only frames of the VLAN; anything else is refused (`drop_wrong_vlan`).
pub fn untag_for_kernel<B: PacketBuf>(buf: &mut B, id: u16) -> Result<(), KernelCounter> {
    if vlan::vid_of(buf.data()) != Some(id) || !vlan::remove_tag(buf.data_mut()) {
        return Err(KernelCounter::DropWrongVlan);
    }
    if !buf.adj(TAG_LEN) {
        return Err(KernelCounter::DropWrongVlan);
    }
    Ok(())
}

/// Tag a frame VLAN `id`'s kernel interface sent with the VLAN's id (priority 0) for the
/// wire. A frame that already carries a tag of any kind is refused (it would leave stacked
/// tags, which vipd does not speak); a frame shorter than an Ethernet header too.
pub fn tag_for_wire<B: PacketBuf>(buf: &mut B, id: u16) -> Result<(), KernelCounter> {
    let data = buf.data();
    if data.len() < 14 {
        return Err(KernelCounter::DropBadLength);
    }
    if vlan::is_tag(u16::from_be_bytes([data[12], data[13]])) {
        return Err(KernelCounter::DropTagged);
    }
    if !buf.prepend(TAG_LEN) {
        return Err(KernelCounter::DropNoHeadroom);
    }
    if !vlan::insert_tag(buf.data_mut(), id) {
        // Cannot happen for a frame of 14 bytes or more grown by a tag; undo the growth.
        buf.adj(TAG_LEN);
        return Err(KernelCounter::DropBadLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice, VlanSlice};
    use vipd_dataplane::io::mem::VecBuf;

    const DST: [u8; 6] = [2, 0x77, 0, 0, 0, 0x0a];
    const SRC: [u8; 6] = [2, 0x77, 0, 0, 1, 0];

    fn tcp(vlan: Option<u16>) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(SRC, DST);
        let mut out = Vec::new();
        match vlan {
            Some(id) => eth
                .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                .ipv4([10, 77, 200, 21], [10, 77, 200, 10], 64)
                .tcp(8080, 40000, 7, 1000)
                .write(&mut out, b"payload")
                .unwrap(),
            None => eth
                .ipv4([10, 77, 200, 21], [10, 77, 200, 10], 64)
                .tcp(8080, 40000, 7, 1000)
                .write(&mut out, b"payload")
                .unwrap(),
        }
        out
    }

    fn check_tcp(frame: &[u8], want_vlan: Option<u16>) {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse reads the frame");
        let vlan = match p.vlan {
            Some(VlanSlice::SingleVlan(t)) => Some(t.vlan_identifier().value()),
            Some(other) => panic!("stacked tags: {other:?}"),
            None => None,
        };
        assert_eq!(vlan, want_vlan);
        let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("no Ethernet II header")
        };
        assert_eq!((eth.source(), eth.destination()), (SRC, DST), "MACs kept");
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("no TCP")
        };
        assert_eq!((t.source_port(), t.destination_port()), (8080, 40000));
        assert_eq!(t.payload(), b"payload");
    }

    #[test]
    fn untag_leaves_the_untagged_frame_byte_for_byte() {
        let mut buf = VecBuf::new(&tcp(Some(200)));
        untag_for_kernel(&mut buf, 200).unwrap();
        assert_eq!(buf.data(), &tcp(None)[..]);
        check_tcp(buf.data(), None);
    }

    #[test]
    fn untag_refuses_other_vlans_and_untagged_frames() {
        for (frame, id) in [(tcp(Some(100)), 200), (tcp(None), 200)] {
            let mut buf = VecBuf::new(&frame);
            assert_eq!(
                untag_for_kernel(&mut buf, id),
                Err(KernelCounter::DropWrongVlan)
            );
            assert_eq!(buf.data(), &frame[..], "a refused frame is left alone");
        }
    }

    #[test]
    fn tag_for_wire_inserts_the_vlans_tag() {
        let mut buf = VecBuf::new(&tcp(None));
        tag_for_wire(&mut buf, 200).unwrap();
        assert_eq!(buf.data(), &tcp(Some(200))[..]);
        check_tcp(buf.data(), Some(200));
        // And back: what the wire gives the kernel is what it sent.
        untag_for_kernel(&mut buf, 200).unwrap();
        assert_eq!(buf.data(), &tcp(None)[..]);
    }

    #[test]
    fn tag_for_wire_refuses_tagged_short_and_roomless_frames() {
        let mut tagged = VecBuf::new(&tcp(Some(300)));
        assert_eq!(
            tag_for_wire(&mut tagged, 200),
            Err(KernelCounter::DropTagged)
        );
        let mut short = VecBuf::new(&[0u8; 13]);
        assert_eq!(
            tag_for_wire(&mut short, 200),
            Err(KernelCounter::DropBadLength)
        );
        let mut roomless = NoHeadroom(VecBuf::new(&tcp(None)));
        assert_eq!(
            tag_for_wire(&mut roomless, 200),
            Err(KernelCounter::DropNoHeadroom)
        );
        assert_eq!(roomless.data(), &tcp(None)[..]);
    }

    /// An mbuf whose headroom is used up.
    struct NoHeadroom(VecBuf);

    impl PacketBuf for NoHeadroom {
        fn data(&self) -> &[u8] {
            self.0.data()
        }
        fn data_mut(&mut self) -> &mut [u8] {
            self.0.data_mut()
        }
        fn prepend(&mut self, _len: usize) -> bool {
            false
        }
        fn adj(&mut self, len: usize) -> bool {
            self.0.adj(len)
        }
        fn trim_to(&mut self, len: usize) -> bool {
            self.0.trim_to(len)
        }
        fn append(&mut self, len: usize) -> bool {
            self.0.append(len)
        }
    }
}
