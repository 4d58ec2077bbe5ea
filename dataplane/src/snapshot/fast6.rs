//! What the fast path reads per IPv6 packet, computed once when the snapshot is built: the
//! counterpart of `fast4` for connections to IPv6 VIPs. Lookup maps keyed by an address's
//! two words as the header carries them (little-endian loads) and a word of port and
//! protocol (`WordMap` with three-word keys), the on-link subnets and default route, and one
//! forwarding record per real server: the MACs as one 12-byte store, the real server's and
//! the VIP's addresses and ports, the transport checksum deltas of both directions
//! (RFC 1624; IPv6 has no header checksum).
//!
//! Every answer here equals the general path's (`Snapshot::service`, `is_vip`,
//! `is_local_key`, `nat_endpoint`, `resolve_key`, `egress::check`'s facts): tested below and
//! by the pipeline's differential test. A record the fast path cannot use as it is (next hop
//! unresolved, flows of a down real server dropped, an IPv4 VIP or real server, a tunnel or
//! full-NAT real server) has kind [`Kind::None`]: such packets take the general path.

use super::fast4::{record_parts, wire_port, Hop, Kind};
use super::word_filter::WordFilter;
use super::word_map::WordMap;
use super::{FwdMode, Ownership, Snapshot};
use crate::wire::checksum;
use crate::wire::ethernet::MacPair;
use crate::wire::MacAddr;
use std::net::IpAddr;

/// An IPv6 address as the header carries it: its sixteen bytes as two little-endian words.
#[inline(always)]
pub(crate) fn wire6(a: &[u8; 16]) -> [u64; 2] {
    let w = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&a[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    [w(0), w(1)]
}

/// An endpoint (address words, port and protocol as on the wire) as one map key.
#[inline(always)]
pub(crate) fn endpoint6(addr: [u64; 2], port: u16, proto: u8) -> [u64; 3] {
    [addr[0], addr[1], u64::from(port) | u64::from(proto) << 16]
}

/// An address alone as a map key.
#[inline(always)]
pub(crate) fn addr6(addr: [u64; 2]) -> [u64; 3] {
    [addr[0], addr[1], 0]
}

/// An address's two words folded into the one [`Fast6::addrs_filter`] takes (any fold keeps
/// the filter exact about non-members; this one lets both halves pick the bit).
#[inline(always)]
pub(crate) fn filter_word6(addr: [u64; 2]) -> u64 {
    addr[0] ^ addr[1].rotate_left(32)
}

/// A value of [`Fast6::services`] or [`Fast6::nat_endpoints`]: the service (or
/// [`AMBIGUOUS`](super::fast4::AMBIGUOUS)) and how its connections' owner is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry6 {
    pub(crate) service: u32,
    pub(crate) rule: Ownership,
}

impl Default for Entry6 {
    fn default() -> Self {
        Entry6 {
            service: 0,
            rule: Ownership::Local,
        }
    }
}

/// One IPv6 real server's forwarding record.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Record6 {
    /// Towards the real server: its next hop's MAC, then the egress port's.
    pub(crate) macs: MacPair,
    pub(crate) port: u16,
    /// The longest IP packet that goes as it is (the egress port's MTU); 0 when the record
    /// is not the fast path's (`Kind::None`).
    pub(crate) max_len: u32,
    /// The lowest hop limit a packet may arrive with: 2 for NAT (which decrements it), else 0.
    pub(crate) min_hops: u8,
    pub(crate) kind: Kind,
    /// The service the real server belongs to.
    pub(crate) service: u32,
    /// NAT: the real server's port and the service's port, wire forms.
    pub(crate) rs_port: u16,
    pub(crate) vport: u16,
    /// NAT: TCP/UDP checksum deltas, towards the real server (destination VIP:port -> real
    /// server:port, pseudo-header included) and back (source real server:port -> VIP:port).
    pub(crate) to_rs_l4: u32,
    pub(crate) to_client_l4: u32,
    /// NAT: the real server's address and the service's VIP.
    pub(crate) rs_addr: [u8; 16],
    pub(crate) vip: [u8; 16],
}

fn record(snap: &Snapshot, id: u32) -> Record6 {
    let Some((b, svc, port, mac)) = record_parts(snap, id) else {
        return Record6::default();
    };
    let IpAddr::V6(vip) = svc.vip else {
        return Record6::default();
    };
    let mut r = Record6 {
        macs: MacPair::new(mac, port.mac),
        port: b.egress_port,
        kind: Kind::None,
        service: b.service,
        vport: wire_port(svc.port),
        vip: vip.octets(),
        ..Record6::default()
    };
    if b.drop_flows {
        return r;
    }
    match (b.mode, b.addr) {
        (FwdMode::Nat, IpAddr::V6(rs)) => {
            let (v, a) = (vip.octets(), rs.octets());
            r.rs_addr = a;
            r.rs_port = wire_port(b.port);
            r.to_rs_l4 = checksum::delta_bytes(&v, &a) + checksum::delta16(svc.port, b.port);
            r.to_client_l4 = checksum::delta_bytes(&a, &v) + checksum::delta16(b.port, svc.port);
            r.kind = Kind::Nat;
        }
        (FwdMode::Dr, IpAddr::V6(_)) => r.kind = Kind::Dr,
        _ => {}
    }
    (r.max_len, r.min_hops) = match r.kind {
        Kind::Nat => (u32::from(port.mtu), 2),
        Kind::Dr => (u32::from(port.mtu), 0),
        Kind::Tun | Kind::None => (0, 0),
    };
    r
}

/// An on-link IPv6 subnet of a port (numbers, not wire forms).
#[derive(Clone, Copy, Debug)]
struct Link {
    net: u128,
    mask: u128,
    port: u16,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Fast6 {
    /// The service and owner rule by (VIP, port, protocol).
    pub(crate) services: WordMap<Entry6, [u64; 3]>,
    /// `fast4::ADDR_VIP` / `ADDR_OWN` by address.
    pub(crate) addrs: WordMap<u8, [u64; 3]>,
    /// The addresses of `addrs` ([`filter_word6`]), for the packets that are not to one (a
    /// NAT reply).
    pub(crate) addrs_filter: WordFilter,
    /// A NAT real server's endpoint: its service, or `AMBIGUOUS`, and its owner rule.
    pub(crate) nat_endpoints: WordMap<Entry6, [u64; 3]>,
    /// Resolved neighbours' MACs by address.
    neighbours: WordMap<[u8; 6], [u64; 3]>,
    links: Box<[Link]>,
    /// The first port with an IPv6 gateway, and the gateway's MAC if resolved.
    default: Option<(u16, Option<MacAddr>)>,
    /// Per port: its MAC and MTU.
    ports: Box<[(MacAddr, u16)]>,
    /// Forwarding records by backend id.
    records: Box<[Record6]>,
}

/// The key of an address in the general path's 16-byte form, if it is an IPv6 one.
fn key_of_v6(a: u128) -> Option<[u64; 2]> {
    match crate::flow::key::from_mapped(&a.to_be_bytes()) {
        IpAddr::V6(v6) => Some(wire6(&v6.octets())),
        IpAddr::V4(_) => None,
    }
}

impl Fast6 {
    pub(super) fn build(snap: &Snapshot) -> Fast6 {
        use super::fast4::{ADDR_OWN, ADDR_VIP, AMBIGUOUS};
        let mut addrs: std::collections::HashMap<[u64; 3], u8> = std::collections::HashMap::new();
        let mut services = Vec::new();
        for (i, s) in snap.services.iter().enumerate() {
            if let IpAddr::V6(vip) = s.vip {
                let a = wire6(&vip.octets());
                let entry = Entry6 {
                    service: i as u32,
                    rule: s.ownership,
                };
                services.push((endpoint6(a, wire_port(s.port), s.proto), entry));
                *addrs.entry(addr6(a)).or_default() |= ADDR_VIP;
            }
        }
        let mut links = Vec::new();
        for (i, p) in snap.ports.iter().enumerate() {
            if let Some(n) = p.ipv6 {
                *addrs.entry(addr6(wire6(&n.addr().octets()))).or_default() |= ADDR_OWN;
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(n.prefix_len()))
                    .unwrap_or(0);
                links.push(Link {
                    net: u128::from(n.addr()) & mask,
                    mask,
                    port: i as u16,
                });
            }
        }
        let nat_endpoints = snap.nat_endpoints.iter().filter_map(|(e, s)| {
            let (addr, proto, port) = e.parts();
            let entry = Entry6 {
                // A full-NAT endpoint's reply without an entry has no service to go by.
                service: s.service.filter(|_| !s.fnat).unwrap_or(AMBIGUOUS),
                rule: s.ownership,
            };
            Some((endpoint6(key_of_v6(addr)?, wire_port(port), proto), entry))
        });
        let neighbours = snap
            .neighbours
            .iter()
            .filter_map(|(a, m)| Some((addr6(key_of_v6(*a)?), m.0)));
        let default = snap.ports.iter().enumerate().find_map(|(i, p)| {
            p.gateway_v6
                .map(|g| (i as u16, snap.neighbour(&IpAddr::V6(g))))
        });
        Fast6 {
            services: WordMap::build(services),
            addrs_filter: WordFilter::build(addrs.keys().map(|a| filter_word6([a[0], a[1]]))),
            addrs: WordMap::build(addrs),
            nat_endpoints: WordMap::build(nat_endpoints.collect::<Vec<_>>()),
            neighbours: WordMap::build(neighbours.collect::<Vec<_>>()),
            links: links.into(),
            default,
            ports: snap.ports.iter().map(|p| (p.mac, p.mtu)).collect(),
            records: (0..snap.backends.len() as u32)
                .map(|id| record(snap, id))
                .collect(),
        }
    }

    /// The forwarding record of backend `id`.
    #[inline(always)]
    pub(crate) fn record(&self, id: u32) -> Option<&Record6> {
        self.records.get(id as usize)
    }

    /// The next hop towards the client at `dst` (its wire words) when it is known: what
    /// `Snapshot::resolve_key` answers with `Ok`, with the port's MAC and MTU (`None` for any
    /// other answer: the general path decides).
    #[inline(always)]
    pub(crate) fn hop(&self, dst: [u64; 2]) -> Option<Hop> {
        let number = u128::from(dst[0].swap_bytes()) << 64 | u128::from(dst[1].swap_bytes());
        let (port, mac) = match self.links.iter().find(|l| number & l.mask == l.net) {
            Some(l) => (l.port, MacAddr(self.neighbours.get(addr6(dst))?)),
            None => {
                let (port, mac) = self.default?;
                (port, mac?)
            }
        };
        let &(our, mtu) = self.ports.get(usize::from(port))?;
        Some(Hop {
            port,
            macs: MacPair::new(mac, our),
            mtu,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;
    use crate::flow::key::to_mapped;
    use crate::snapshot::fast4::{ADDR_OWN, ADDR_VIP, AMBIGUOUS};
    use crate::snapshot::{BackendSpec, PortInfo, ServiceSpec};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv6Addr;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn snapshot(neighbours: &HashMap<IpAddr, MacAddr>) -> Snapshot {
        let ports = vec![
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                ipv6: Some("2001:db8::10/64".parse().unwrap()),
                gateway_v6: Some(v6("2001:db8::1")),
                mtu: 1500,
                ..PortInfo::default()
            },
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                ipv6: Some("fd00:1::10/64".parse().unwrap()),
                mtu: 9000,
                ..PortInfo::default()
            },
        ];
        let rs = |i: u16, mode, port| BackendSpec {
            id: u32::from(i),
            addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i)),
            port,
            mode,
            ..BackendSpec::default()
        };
        let vip = IpAddr::V6(v6("2001:db8:100::1"));
        let services = vec![
            ServiceSpec {
                vip,
                proto: 6,
                port: 80,
                backends: vec![rs(1, FwdMode::Nat, 8080), rs(2, FwdMode::Nat, 8080)],
                ..ServiceSpec::default()
            },
            ServiceSpec {
                vip,
                proto: 17,
                port: 53,
                backends: vec![rs(3, FwdMode::Nat, 5353), rs(4, FwdMode::Dr, 53)],
                ..ServiceSpec::default()
            },
        ];
        Snapshot::build(1, ports, &services, neighbours, 7).unwrap()
    }

    fn addr() -> impl Strategy<Value = Ipv6Addr> {
        (prop::sample::select(vec![0u16, 1, 0x10, 100]), 0u16..6).prop_map(|(c, d)| match d {
            0 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, c),
            1 => Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, c),
            2 | 3 => Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, c % 8),
            4 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10),
            _ => Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, c),
        })
    }

    proptest! {
        /// The maps answer as the general path's lookups do.
        #[test]
        fn same_answers_as_the_general_lookups(
            known in prop::collection::vec(addr(), 0..10),
            probes in prop::collection::vec((addr(), prop::sample::select(vec![53u16, 80, 5353, 8080]), prop::sample::select(vec![6u8, 17])), 1..40),
        ) {
            let mut neighbours = HashMap::new();
            for (i, a) in known.iter().enumerate() {
                neighbours.insert(IpAddr::V6(*a), MacAddr([2, 0, 0, 9, 0, i as u8]));
            }
            let snap = snapshot(&neighbours);
            let f = &snap.fast6;
            for (a, port, proto) in probes {
                let key = to_mapped(IpAddr::V6(a));
                let w = wire6(&a.octets());
                let e = endpoint6(w, wire_port(port), proto);
                prop_assert_eq!(
                    f.services.get(e),
                    snap.service(&key, proto, port).map(|(i, s)| Entry6 { service: i, rule: s.ownership })
                );
                let bits = f.addrs.get(addr6(w)).unwrap_or(0);
                // The filter lets every address of the map by (it may let others by too).
                prop_assert!(bits == 0 || f.addrs_filter.may_hold(filter_word6(w)));
                prop_assert_eq!(bits & ADDR_VIP != 0, snap.is_vip(&key));
                prop_assert_eq!(bits & ADDR_OWN != 0, snap.is_local_key(&key));
                prop_assert_eq!(
                    f.nat_endpoints.get(e).map(|v| (v.service != AMBIGUOUS).then_some(v.service)),
                    snap.nat_endpoint(&key, proto, port).map(|e| e.service.filter(|_| !e.fnat))
                );
                let want = snap.resolve_key(&key).ok().map(|(port, mac)| {
                    let p = &snap.ports[usize::from(port)];
                    Hop { port, macs: MacPair::new(mac, p.mac), mtu: p.mtu }
                });
                prop_assert_eq!(f.hop(w), want);
                if want.is_none() {
                    prop_assert!(matches!(
                        snap.resolve_key(&key),
                        Err(DropReason::NeighbourUnresolved | DropReason::NoRoute)
                    ));
                }
            }
        }
    }

    #[test]
    fn records_hold_what_the_rewrites_need() {
        let mut neighbours = HashMap::new();
        for i in [1u16, 3, 4] {
            neighbours.insert(
                IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i)),
                MacAddr([2, 0, 0, 1, 0, i as u8]),
            );
        }
        let snap = snapshot(&neighbours);
        let f = &snap.fast6;
        let r = f.record(1).unwrap();
        assert_eq!(r.kind, Kind::Nat);
        assert_eq!((r.port, r.max_len, r.min_hops, r.service), (1, 9000, 2, 0));
        // The deltas move a checksum as the byte-slice updates would.
        let (vip, rs) = (v6("2001:db8:100::1").octets(), v6("fd00:1::1").octets());
        let c = 0x1234;
        let want = checksum::update16(checksum::update(c, &vip, &rs), 80, 8080);
        assert_eq!(checksum::apply(c, r.to_rs_l4), want);
        // Unresolved next hop: not for the fast path.
        assert_eq!(f.record(2).unwrap().kind, Kind::None);
        assert_eq!(f.record(4).unwrap().kind, Kind::Dr);
        assert_eq!(f.record(99).map(|r| r.kind), None);
    }
}
