//! The snapshot's lookup structures: built once per snapshot from its ports, services and
//! neighbours, read for every packet.
//!
//! Addresses are looked up in the 16-byte flow-key form (IPv4 mapped), as one `u128`, so a
//! key hashes with one or two writes (a `([u8; 16], u8, u16)` tuple would feed the hasher a
//! length prefix, sixteen bytes and two small integers, per lookup). What depends only on the ports (own addresses, subnets,
//! default gateways and their MACs) is precomputed into small arrays scanned in a few
//! compares, instead of walking `PortInfo`'s `ipnet` prefixes per packet.

use super::PortInfo;
use crate::counters::DropReason;
use crate::wire::MacAddr;
use std::net::IpAddr;

/// The maps' hasher, with a fixed seed: the default one loads a process-global random seed
/// on every lookup. The keys come from the
/// configuration, not from packets, so a fixed seed gives an attacker nothing to flood.
pub(super) type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// The seed of the maps' hasher (any constant).
const MAP_SEED: u64 = 0x7669_7064_5f6d_6170; // "vipd_map"

pub(super) fn map<K, V>() -> Map<K, V> {
    Map::with_hasher(foldhash::fast::FixedState::with_seed(MAP_SEED))
}

/// A flow-key address as one integer.
#[inline]
pub(super) fn addr_key(a: &[u8; 16]) -> u128 {
    u128::from_be_bytes(*a)
}

/// An endpoint (address, protocol, port) as a map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Endpoint {
    addr: u128,
    proto_port: u32,
}

impl Endpoint {
    #[inline]
    pub(super) fn new(addr: &[u8; 16], proto: u8, port: u16) -> Self {
        Endpoint {
            addr: addr_key(addr),
            proto_port: u32::from(proto) << 16 | u32::from(port),
        }
    }

    /// Address (flow-key form, as one integer), protocol and port.
    pub(super) fn parts(&self) -> (u128, u8, u16) {
        (
            self.addr,
            (self.proto_port >> 16) as u8,
            self.proto_port as u16,
        )
    }
}

/// One IPv4 subnet of a port.
#[derive(Clone, Copy, Debug)]
struct Link4 {
    net: u32,
    mask: u32,
    port: u16,
}

/// One IPv6 subnet of a port.
#[derive(Clone, Copy, Debug)]
struct Link6 {
    net: u128,
    mask: u128,
    port: u16,
}

/// A default route: the port and its gateway (flow-key form), with the gateway's MAC if the
/// snapshot's neighbours know it.
#[derive(Clone, Copy, Debug)]
struct Default {
    port: u16,
    gateway: u128,
    mac: Option<MacAddr>,
}

/// What the ports tell per packet: own addresses, subnets, default routes.
#[derive(Debug, Default)]
pub(super) struct PortLookups {
    /// Every port's own addresses (flow-key form).
    own: Box<[u128]>,
    /// IPv4 own address and the subnet's broadcast address per port (the address itself
    /// again for /31 and /32, which have none).
    own_or_broadcast4: Box<[(u32, u32)]>,
    /// Subnets in port order: the first that holds an address is its route.
    links4: Box<[Link4]>,
    links6: Box<[Link6]>,
    /// The first port with a gateway of the family.
    default4: Option<Default>,
    default6: Option<Default>,
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl PortLookups {
    pub(super) fn new(ports: &[PortInfo], neighbours: &Map<u128, MacAddr>) -> Self {
        let to_key = |a: IpAddr| addr_key(&crate::flow::key::to_mapped(a));
        let mut own = Vec::new();
        let mut own_or_broadcast4 = Vec::new();
        let mut links4 = Vec::new();
        let mut links6 = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let port = i as u16;
            if let Some(n) = p.ipv4 {
                own.push(to_key(IpAddr::V4(n.addr())));
                let a = u32::from(n.addr());
                let mask = mask4(n.prefix_len());
                let broadcast = if n.prefix_len() >= 31 { a } else { a | !mask };
                own_or_broadcast4.push((a, broadcast));
                links4.push(Link4 {
                    net: a & mask,
                    mask,
                    port,
                });
            }
            if let Some(n) = p.ipv6 {
                own.push(to_key(IpAddr::V6(n.addr())));
                let mask = mask6(n.prefix_len());
                links6.push(Link6 {
                    net: u128::from(n.addr()) & mask,
                    mask,
                    port,
                });
            }
        }
        let default = |gw: fn(&PortInfo) -> Option<IpAddr>| {
            ports.iter().enumerate().find_map(|(i, p)| {
                gw(p).map(|g| Default {
                    port: i as u16,
                    gateway: to_key(g),
                    mac: neighbours.get(&to_key(g)).copied(),
                })
            })
        };
        PortLookups {
            own: own.into(),
            own_or_broadcast4: own_or_broadcast4.into(),
            links4: links4.into(),
            links6: links6.into(),
            default4: default(|p| p.gateway_v4.map(IpAddr::V4)),
            default6: default(|p| p.gateway_v6.map(IpAddr::V6)),
        }
    }

    /// Whether `a` (flow-key form) is a port's own address.
    #[inline]
    pub(super) fn is_own(&self, a: &[u8; 16]) -> bool {
        let a = addr_key(a);
        self.own.contains(&a)
    }

    /// Whether the IPv4 address `a` is a port's own address or its subnet's broadcast.
    #[inline]
    pub(super) fn is_own_or_broadcast_v4(&self, a: u32) -> bool {
        self.own_or_broadcast4
            .iter()
            .any(|&(own, bcast)| a == own || a == bcast)
    }

    /// Port and MAC of the next hop towards `dst` (flow-key form): the first port whose
    /// subnet holds it (the next hop is `dst` itself, its MAC from `neighbours`), else the
    /// first port with a gateway of its family. The same answer as [`super::route`]
    /// followed by a neighbour lookup.
    #[inline]
    pub(super) fn resolve(
        &self,
        dst: &[u8; 16],
        neighbours: &Map<u128, MacAddr>,
    ) -> Result<(u16, MacAddr), DropReason> {
        let on_link = if crate::wire::addr::is_mapped(dst) {
            let a = addr_key(dst) as u32;
            self.links4
                .iter()
                .find(|l| a & l.mask == l.net)
                .map(|l| l.port)
                .ok_or(self.default4)
        } else {
            let a = addr_key(dst);
            self.links6
                .iter()
                .find(|l| a & l.mask == l.net)
                .map(|l| l.port)
                .ok_or(self.default6)
        };
        match on_link {
            Ok(port) => neighbours
                .get(&addr_key(dst))
                .map(|&mac| (port, mac))
                .ok_or(DropReason::NeighbourUnresolved),
            Err(Some(d)) => d
                .mac
                .map(|mac| (d.port, mac))
                .ok_or(DropReason::NeighbourUnresolved),
            Err(None) => Err(DropReason::NoRoute),
        }
    }

    /// Whether the next hop towards `dst` (flow-key form) is `dst` itself: it is on one of
    /// the ports' own subnets (or is the default gateway).
    #[inline]
    pub(super) fn next_hop_is_itself(&self, dst: &[u8; 16]) -> bool {
        let a = addr_key(dst);
        if crate::wire::addr::is_mapped(dst) {
            let a4 = a as u32;
            self.links4.iter().any(|l| a4 & l.mask == l.net)
                || self.default4.is_some_and(|d| d.gateway == a)
        } else {
            self.links6.iter().any(|l| a & l.mask == l.net)
                || self.default6.is_some_and(|d| d.gateway == a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{route, Snapshot};
    use super::*;
    use crate::flow::key::to_mapped;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An address near the few prefixes the ports use, so that subnets and gateways match.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        (
            prop::sample::select(vec![10u8, 192, 0, 255]),
            any::<u8>(),
            0u8..4,
            any::<u8>(),
        )
            .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b % 2, c, d))
    }

    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        (0u16..3, 0u16..3, any::<u16>())
            .prop_map(|(a, b, c)| Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, c))
    }

    fn port() -> impl Strategy<Value = PortInfo> {
        (
            prop::option::of((v4(), 0u8..=32)),
            prop::option::of((v6(), 0u8..=128)),
            prop::option::of(v4()),
            prop::option::of(v6()),
        )
            .prop_map(|(a4, a6, g4, g6)| PortInfo {
                ipv4: a4.map(|(a, p)| ipnet::Ipv4Net::new(a, p).unwrap()),
                ipv6: a6.map(|(a, p)| ipnet::Ipv6Net::new(a, p).unwrap()),
                gateway_v4: g4,
                gateway_v6: g6,
                mtu: 1500,
                ..PortInfo::default()
            })
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)]
    }

    proptest! {
        /// The precomputed lookups answer as `route` and the neighbour map do.
        #[test]
        fn same_answers_as_the_port_walk(
            ports in prop::collection::vec(port(), 1..4),
            known in prop::collection::vec(addr(), 0..12),
            dsts in prop::collection::vec(addr(), 1..24),
        ) {
            let mut neighbours = HashMap::new();
            for (i, a) in known.iter().enumerate() {
                neighbours.insert(*a, MacAddr([2, 0, 0, 0, 0, i as u8]));
            }
            // Gateways and own addresses are worth asking about too.
            let mut dsts = dsts;
            for p in &ports {
                dsts.extend(p.gateway_v4.map(IpAddr::V4));
                dsts.extend(p.gateway_v6.map(IpAddr::V6));
                dsts.extend(p.ipv4.map(|n| IpAddr::V4(n.addr())));
                dsts.extend(p.ipv4.map(|n| IpAddr::V4(n.broadcast())));
                dsts.extend(p.ipv6.map(|n| IpAddr::V6(n.addr())));
            }
            let snap = Snapshot::build(1, ports.clone(), &[], &neighbours, 7).unwrap();
            for dst in dsts {
                let key = to_mapped(dst);
                let walked = route(&ports, &dst);
                let want = match walked {
                    None => Err(DropReason::NoRoute),
                    Some(r) => neighbours
                        .get(&r.next_hop)
                        .map(|&m| (r.port, m))
                        .ok_or(DropReason::NeighbourUnresolved),
                };
                prop_assert_eq!(snap.resolve_key(&key), want, "resolve {}", dst);
                prop_assert_eq!(
                    snap.next_hop_is_itself(&key),
                    walked.is_some_and(|r| r.next_hop == dst),
                    "next hop of {}", dst
                );
                prop_assert_eq!(
                    snap.is_local_key(&key),
                    ports.iter().any(|p| p.owns(&dst)),
                    "own {}", dst
                );
                if let IpAddr::V4(a) = dst {
                    let a = u32::from(a);
                    let want = ports.iter().any(|p| {
                        p.ipv4.is_some_and(|n| {
                            let own = u32::from(n.addr());
                            let host_bits = 32 - u32::from(n.prefix_len());
                            let broadcast = own | ((1u64 << host_bits) - 1) as u32;
                            a == own || (host_bits > 1 && a == broadcast)
                        })
                    });
                    prop_assert_eq!(snap.is_own_or_broadcast_v4(a), want, "broadcast {}", dst);
                }
            }
        }
    }
}
