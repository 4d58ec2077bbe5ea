//! A bond's 802.3ad (LACP, DPDK bonding mode 4) state, member by member
//! (`rte_eth_bond_8023ad_slave_info` through the C shim: DPDK 22.11 still calls members
//! slaves).

use dpdk_sys as sys;

use super::error::{check, DpdkError};
use super::port::Port;

/// One side's LACP state octet (802.1AX "Actor_State"/"Partner_State"), as the bonding PMD
/// keeps it for a member: what this end says in its LACPDUs (actor), and what the partner
/// said in its last one (partner).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LacpState(pub u8);

impl LacpState {
    /// LACP_Activity: the side sends LACPDUs of its own (active), not only in answer.
    pub const ACTIVE: u8 = 0x01;
    /// LACP_Timeout: the side wants LACPDUs every second (short timeout, "fast" rate).
    pub const SHORT_TIMEOUT: u8 = 0x02;
    /// Aggregation: the link may be aggregated with others.
    pub const AGGREGATION: u8 = 0x04;
    /// Synchronization: the link is in the right aggregation (its selection is settled).
    pub const SYNCHRONIZATION: u8 = 0x08;
    /// Collecting: frames received on the link are taken.
    pub const COLLECTING: u8 = 0x10;
    /// Distributing: frames are sent on the link.
    pub const DISTRIBUTING: u8 = 0x20;
    /// Defaulted: no LACPDU came from a partner; its values are the administrative defaults.
    pub const DEFAULTED: u8 = 0x40;
    /// Expired: the partner's LACPDUs stopped coming (its information timed out).
    pub const EXPIRED: u8 = 0x80;

    const NAMES: [(u8, &'static str); 8] = [
        (Self::ACTIVE, "active"),
        (Self::SHORT_TIMEOUT, "short_timeout"),
        (Self::AGGREGATION, "aggregation"),
        (Self::SYNCHRONIZATION, "synchronization"),
        (Self::COLLECTING, "collecting"),
        (Self::DISTRIBUTING, "distributing"),
        (Self::DEFAULTED, "defaulted"),
        (Self::EXPIRED, "expired"),
    ];

    /// Whether every bit of `bits` is set.
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// The names of the bits set, lowest bit first.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }
}

/// Where the PMD's selection logic put a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LacpSelection {
    /// In no aggregator.
    Unselected,
    /// Chosen for an aggregator that cannot take it yet.
    Standby,
    /// In an aggregator (with or without a partner: see the partner's state).
    Selected,
}

impl LacpSelection {
    /// Lower-case name, for status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LacpSelection::Unselected => "unselected",
            LacpSelection::Standby => "standby",
            LacpSelection::Selected => "selected",
        }
    }
}

/// A member's 802.3ad state (`rte_eth_bond_8023ad_slave_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LacpMember {
    /// The selection logic's verdict.
    pub selection: LacpSelection,
    /// What this end announces.
    pub actor: LacpState,
    /// What the partner announced last (the defaults when `actor` is defaulted).
    pub partner: LacpState,
    /// This end's key (DPDK derives it from the link's speed and duplex: members of
    /// different speeds never share an aggregator).
    pub actor_key: u16,
    /// The partner's system id (its MAC): members facing different systems are not
    /// aggregated together.
    pub partner_system: [u8; 6],
    /// The partner's key for its end of the link.
    pub partner_key: u16,
    /// The partner's port number for its end of the link.
    pub partner_port: u16,
    /// The DPDK port id of the member whose aggregator this one is in.
    pub aggregator: u16,
}

impl LacpMember {
    /// The member carries traffic both ways: collecting and distributing.
    pub fn aggregated(&self) -> bool {
        self.actor
            .has(LacpState::COLLECTING | LacpState::DISTRIBUTING)
    }
}

impl Port {
    /// Member `member`'s 802.3ad state; an error when the port is no bond in mode 4 or the
    /// member is not one of the members it counts as active (a member whose link went down
    /// leaves that list when the PMD learns of it).
    pub fn lacp_member(&self, member: u16) -> Result<LacpMember, DpdkError> {
        let id = self.id();
        let mut info = sys::vipd_lacp_member::default();
        // SAFETY: valid port; `info` is a writable struct of the type the shim fills; the
        // PMD checks that the port is a bond in mode 4 and `member` one of its members.
        let ret = unsafe { sys::vipd_bond_8023ad_member_info(id, member, &mut info) };
        check(ret, || {
            format!("rte_eth_bond_8023ad_slave_info(port {id}, member {member})")
        })?;
        // enum rte_bond_8023ad_selection: UNSELECTED, STANDBY, SELECTED.
        let selection = match info.selected {
            2 => LacpSelection::Selected,
            1 => LacpSelection::Standby,
            _ => LacpSelection::Unselected,
        };
        Ok(LacpMember {
            selection,
            actor: LacpState(info.actor_state),
            partner: LacpState(info.partner_state),
            actor_key: info.actor_key,
            partner_system: info.partner_system,
            partner_key: info.partner_key,
            partner_port: info.partner_port,
            aggregator: info.agg_port_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bits_are_named_in_order() {
        let s = LacpState(0x3d);
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            [
                "active",
                "aggregation",
                "synchronization",
                "collecting",
                "distributing"
            ]
        );
        assert!(s.has(LacpState::COLLECTING | LacpState::DISTRIBUTING));
        assert!(!s.has(LacpState::DEFAULTED));
        assert_eq!(
            LacpState(0xc5).names().collect::<Vec<_>>(),
            ["active", "aggregation", "defaulted", "expired"]
        );
    }
}
