//! The ports' 802.1Q VLANs: which interface of [`Snapshot::ports`] a tagged frame belongs to.

use super::lookup::{map, Map};
use super::{PortInfo, Snapshot};

/// A VLAN interface's port and VLAN id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanOf {
    /// Index of the (DPDK) port carrying the VLAN.
    pub parent: u16,
    /// The 802.1Q VLAN id (1..=4094).
    pub id: u16,
}

/// (port << 16 | VLAN id) -> the VLAN's interface index; empty when no port has VLANs.
#[derive(Debug)]
pub(super) struct Vlans(Map<u32, u16>);

impl Vlans {
    pub(super) fn new(ports: &[PortInfo]) -> Self {
        let mut m: Map<u32, u16> = map();
        for (i, p) in ports.iter().enumerate() {
            if let Some(v) = p.vlan {
                m.insert(key(v.parent, v.id), i as u16);
            }
        }
        Vlans(m)
    }
}

fn key(port: u16, id: u16) -> u32 {
    u32::from(port) << 16 | u32::from(id)
}

impl Snapshot {
    /// Whether any port carries VLANs (else no frame needs its tag looked at or changed).
    #[inline]
    pub fn has_vlans(&self) -> bool {
        !self.vlans.0.is_empty()
    }

    /// The interface of VLAN `id` on port `port`, if the port carries it.
    #[inline]
    pub fn vlan_interface(&self, port: u16, id: u16) -> Option<u16> {
        self.vlans.0.get(&key(port, id)).copied()
    }
}
