//! Which worker owns a connection, decided from what every packet of it carries, so that
//! whichever worker receives a packet can hand it to the owner (steering).
//!
//! - NAT connections: `hash(client address, client port)`, carried by requests (source) and
//!   replies (destination) alike.
//! - Persistent services: `hash(client address masked to the persistence netmask)`, so every
//!   connection of a client network lands on one worker, whose persistence table alone then
//!   decides for that network (no table shared between cores, no lock; see
//!   docs/architecture.md). DR/TUN persistent services are steered too.
//! - DR/TUN without persistence: no owner (nothing comes back through vipd).
//!
//! A NAT real server's replies must find the same owner as its requests, and a reply knows
//! only the real server's endpoint: so services that share a NAT real server endpoint use one
//! rule, the coarsest network of any persistent one among them (a /16 owner also keeps each
//! /24 on one worker), or the client endpoint when none is persistent ([`Shares`]).

use super::lookup::{Endpoint, Map};
use super::{Persistence, Service};
use crate::flow::hash::owner_hash;
use std::collections::HashMap;
use std::net::IpAddr;

/// How a connection's owning worker is found from its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// No owner: the worker that receives a packet handles it (DR/TUN, not persistent).
    Local,
    /// By client address and port.
    Endpoint,
    /// By client address masked to this many leading bits (flow-key form, IPv4 + 96).
    Network(u8),
}

impl Ownership {
    /// The rule of a service by itself (before services sharing NAT real servers agree).
    pub fn of(has_nat: bool, persistence: Option<Persistence>) -> Self {
        match (persistence, has_nat) {
            (Some(p), _) => Ownership::Network(p.bits),
            (None, true) => Ownership::Endpoint,
            (None, false) => Ownership::Local,
        }
    }

    /// The hash the owner is chosen by, `None` for [`Ownership::Local`].
    #[inline]
    pub fn hash(self, client: &[u8; 16], port: u16) -> Option<u32> {
        match self {
            Ownership::Local => None,
            Ownership::Endpoint => Some(owner_hash(client, port)),
            Ownership::Network(bits) => Some(Self::network_hash(client, bits)),
        }
    }

    /// The owner hash of a client network: its masked address, port 0. Not inlined into the
    /// packet path: persistent services are the exception there.
    #[inline(never)]
    pub fn network_hash(client: &[u8; 16], bits: u8) -> u32 {
        owner_hash(&mask_key(client, bits), 0)
    }

    fn bits(self) -> Option<u8> {
        match self {
            Ownership::Network(b) => Some(b),
            _ => None,
        }
    }
}

/// A NAT real server endpoint as a reply sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatEndpoint {
    /// Its service when it serves exactly one (then a reply without a flow entry can still be
    /// rewritten), else None.
    pub service: Option<u32>,
    /// How the owner of its connections is found.
    pub ownership: Ownership,
    /// A full-NAT real server serves from it: a reply without a flow entry cannot be
    /// rewritten (its client is known only to the entry).
    pub fnat: bool,
}

/// A prefix length of `vip`'s family in flow-key form: IPv4 prefixes count from bit 96 of
/// the mapped address.
pub fn key_bits(vip: IpAddr, prefix_len: u8) -> u8 {
    match vip {
        IpAddr::V4(_) => 96 + prefix_len.min(32),
        IpAddr::V6(_) => prefix_len.min(128),
    }
}

/// `addr` (flow-key form) with all but its first `bits` bits cleared.
#[inline]
pub fn mask_key(addr: &[u8; 16], bits: u8) -> [u8; 16] {
    let mask = match bits {
        0 => 0,
        b if b >= 128 => u128::MAX,
        b => u128::MAX << (128 - u32::from(b)),
    };
    (u128::from_be_bytes(*addr) & mask).to_be_bytes()
}

/// Services that share NAT real server endpoints, joined (union-find) while the snapshot is
/// built, then given one ownership rule per group.
#[derive(Default)]
pub(super) struct Shares {
    first: HashMap<Endpoint, u32>,
    parent: Vec<u32>,
}

impl Shares {
    fn root(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let up = self.parent[self.parent[i as usize] as usize];
            self.parent[i as usize] = up;
            i = up;
        }
        i
    }

    fn grow(&mut self, si: u32) {
        while self.parent.len() <= si as usize {
            self.parent.push(self.parent.len() as u32);
        }
    }

    /// Service `si` has a NAT real server at `ep`.
    pub(super) fn share(&mut self, ep: Endpoint, si: u32) {
        self.grow(si);
        match self.first.get(&ep) {
            Some(&other) => {
                let (a, b) = (self.root(other), self.root(si));
                if a != b {
                    self.parent[b as usize] = a;
                }
            }
            None => {
                self.first.insert(ep, si);
            }
        }
    }

    /// Give every group its rule and every NAT endpoint its group's.
    pub(super) fn settle(
        &mut self,
        services: &mut [Service],
        endpoints: &mut Map<Endpoint, NatEndpoint>,
    ) {
        self.grow(services.len().saturating_sub(1) as u32);
        let mut coarsest: HashMap<u32, u8> = HashMap::new();
        for si in 0..services.len() as u32 {
            let root = self.root(si);
            if let Some(bits) = services[si as usize].ownership.bits() {
                let c = coarsest.entry(root).or_insert(bits);
                *c = (*c).min(bits);
            }
        }
        for si in 0..services.len() as u32 {
            let root = self.root(si);
            let svc = &mut services[si as usize];
            if let (Some(&bits), true) = (coarsest.get(&root), svc.has_nat) {
                svc.ownership = Ownership::Network(bits);
            }
        }
        for (ep, e) in endpoints.iter_mut() {
            if let Some(&si) = self.first.get(ep) {
                e.ownership = services[si as usize].ownership;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_in_flow_key_form() {
        let a = crate::flow::key::to_mapped("192.0.2.77".parse().unwrap());
        let m = mask_key(&a, key_bits("10.0.0.1".parse().unwrap(), 24));
        assert_eq!(m, crate::flow::key::to_mapped("192.0.2.0".parse().unwrap()));
        assert_eq!(mask_key(&a, 128), a);
        assert_eq!(mask_key(&a, 0), [0; 16]);
        let v6 = crate::flow::key::to_mapped("2001:db8:1:2:3:4:5:6".parse().unwrap());
        let m = mask_key(&v6, key_bits("fd00::1".parse().unwrap(), 48));
        assert_eq!(
            m,
            crate::flow::key::to_mapped("2001:db8:1::".parse().unwrap())
        );
        assert_eq!(key_bits("10.0.0.1".parse().unwrap(), 40), 128);
    }

    #[test]
    fn a_network_owns_its_clients_whatever_their_ports() {
        let rule = Ownership::Network(96 + 24);
        let c1 = crate::flow::key::to_mapped("192.0.2.1".parse().unwrap());
        let c2 = crate::flow::key::to_mapped("192.0.2.200".parse().unwrap());
        assert_eq!(rule.hash(&c1, 1000), rule.hash(&c2, 2000));
        assert_ne!(
            Ownership::Endpoint.hash(&c1, 1000),
            Ownership::Endpoint.hash(&c1, 1001)
        );
        assert_eq!(Ownership::Local.hash(&c1, 1), None);
    }
}
