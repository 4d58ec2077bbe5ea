//! 802.1Q VLANs at the pipeline's edges. A frame tagged with a VLAN its port carries is
//! handled in the context of the VLAN's interface (its addresses, its neighbours, its routes:
//! `Snapshot::ports`); every frame the pipeline sends names an interface, and leaves here
//! fitted to it: tagged with the VLAN's id (the tag rewritten, inserted or kept), or untagged
//! on the port itself. A priority-tagged frame (VLAN id 0) is in the port's untagged context
//! and what answers or forwards it leaves untagged, as Linux sends it. Bursts of a snapshot
//! with VLANs come here, and tagged frames of the general path in any snapshot.

use crate::counters::DropReason;
use crate::io::PacketBuf;
use crate::snapshot::Snapshot;
use crate::wire::vlan::{self, VlanHeader, TAG_LEN};

/// The interface a frame received on `port` belongs to: its VLAN's when it is tagged with
/// one the port carries, else the port (priority-tagged or untagged; an unknown VLAN was
/// dropped in stage 1).
#[inline]
pub(super) fn rx_interface(data: &[u8], port: u16, snap: &Snapshot) -> u16 {
    match vlan::vlan_of(data) {
        Some(id) => snap.vlan_interface(port, id).unwrap_or(port),
        None => port,
    }
}

/// Whether a frame carries an 802.1Q tag (of a VLAN, or a priority tag).
#[inline]
pub(super) fn tagged(data: &[u8]) -> bool {
    vlan::vid_of(data).is_some()
}

/// Fit a frame the pipeline sends on interface `iface` to it, and return the DPDK port it
/// leaves by. A priority-tagged frame sent into a VLAN keeps its priority.
#[inline]
pub(super) fn to_wire<B: PacketBuf>(
    buf: &mut B,
    iface: u16,
    snap: &Snapshot,
) -> Result<u16, DropReason> {
    let want = snap
        .ports
        .get(usize::from(iface))
        .ok_or(DropReason::NoRoute)?
        .vlan;
    match (tagged(buf.data()), want) {
        (false, None) => Ok(iface),
        (true, Some(v)) => {
            let mut h =
                VlanHeader::new_checked(buf.data_mut()).map_err(|_| DropReason::EthMalformed)?;
            h.set_vid(v.id);
            Ok(v.parent)
        }
        (false, Some(v)) => {
            if !buf.prepend(TAG_LEN) {
                return Err(DropReason::NoHeadroom);
            }
            if !vlan::insert_tag(buf.data_mut(), v.id) {
                return Err(DropReason::EthMalformed);
            }
            Ok(v.parent)
        }
        (true, None) => {
            if !vlan::remove_tag(buf.data_mut()) || !buf.adj(TAG_LEN) {
                return Err(DropReason::EthMalformed);
            }
            Ok(iface)
        }
    }
}
