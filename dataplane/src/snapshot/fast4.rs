//! What the fast path reads per IPv4 packet, computed once when the snapshot is built: lookup
//! maps keyed by addresses and ports in the form the header carries them (`WordMap`), and one
//! forwarding record per real server (the way VPP's nat44-ed and Katran keep per-backend
//! rewrite state): the next hop's and the egress port's MACs as one 12-byte store, the new
//! address and port, the checksum deltas of both directions (RFC 1624), the tunnel's outer
//! header. The per-packet rewrite is then a few loads, stores and one's-complement adds.
//!
//! Every answer here equals the general path's (`Snapshot::service`, `is_vip`,
//! `is_local_key`, `nat_endpoint`, `resolve_key`, `egress::check`'s facts): tested below and
//! by the pipeline's differential test. A record the fast path cannot use as it is (next hop
//! unresolved, flows of a down real server dropped, an IPv6 real server, a tunnel without an
//! IPv4 source) has kind [`Kind::None`]: such packets take the general path, which decides.

use super::word_filter::WordFilter;
use super::word_map::WordMap;
use super::{Backend, FwdMode, Ownership, PortInfo, Service, Snapshot};
use crate::wire::checksum;
use crate::wire::ethernet::{mac_word, MacPair};
use crate::wire::ipv4;
use crate::wire::MacAddr;
use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 address as the header carries it (its four bytes, little-endian load).
#[inline(always)]
pub(crate) fn wire4(a: Ipv4Addr) -> u32 {
    u32::from_le_bytes(a.octets())
}

/// A port as the header carries it (its two bytes, little-endian load).
#[inline(always)]
pub(crate) fn wire_port(p: u16) -> u16 {
    u16::from_le_bytes(p.to_be_bytes())
}

/// An endpoint (address, port, protocol) as one map key: all forms as on the wire.
#[inline(always)]
pub(crate) fn endpoint_word(addr: u32, port: u16, proto: u8) -> u64 {
    u64::from(addr) | u64::from(port) << 32 | u64::from(proto) << 48
}

/// [`Fast4::addrs`] bit: a VIP.
pub(crate) const ADDR_VIP: u8 = 1;
/// [`Fast4::addrs`] bit: one of the ports' own addresses.
pub(crate) const ADDR_OWN: u8 = 2;
/// The service of a [`Fast4::nat_endpoints`] value whose endpoint serves several services.
pub(crate) const AMBIGUOUS: u32 = SERVICE_MASK;

/// The service index in a value of [`Fast4::services`] or [`Fast4::nat_endpoints`]; above it,
/// how the owning worker of its connections is found (`snapshot::ownership`), packed so the
/// classifier reads service and rule with the one load of the lookup.
const SERVICE_MASK: u32 = (1 << 24) - 1;
const PREFIX_SHIFT: u32 = 24;
const RULE_SHIFT: u32 = 30;
const RULE_ENDPOINT: u32 = 1;
const RULE_NETWORK: u32 = 2;

/// Who owns a connection, from an IPv4 client's address and port (`Ownership` for the fast
/// path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner4 {
    /// The receiving worker (DR / TUN, not persistent).
    Local,
    /// By client address and port (NAT).
    Endpoint,
    /// By client address under this mask (a number's mask: persistent services).
    Network(u32),
}

/// A map value: `service` (or [`AMBIGUOUS`]) and its owner rule.
fn pack(service: u32, rule: Ownership) -> u32 {
    let (kind, prefix) = match rule {
        Ownership::Local => (0, 0),
        Ownership::Endpoint => (RULE_ENDPOINT, 0),
        // Flow-key form: an IPv4 prefix counts from bit 96 of the mapped address.
        Ownership::Network(bits) => (RULE_NETWORK, u32::from(bits.saturating_sub(96)).min(32)),
    };
    (service & SERVICE_MASK) | prefix << PREFIX_SHIFT | kind << RULE_SHIFT
}

/// The service and owner rule of a map value.
#[inline(always)]
pub(crate) fn unpack(v: u32) -> (u32, Owner4) {
    let owner = match v >> RULE_SHIFT {
        RULE_ENDPOINT => Owner4::Endpoint,
        RULE_NETWORK => {
            let prefix = (v >> PREFIX_SHIFT) & 0x3f;
            Owner4::Network(u32::MAX.checked_shl(32 - prefix).unwrap_or(0))
        }
        _ => Owner4::Local,
    };
    (v & SERVICE_MASK, owner)
}

/// How the fast path forwards to a real server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Not by the fast path: the general path decides (and counts) every packet.
    #[default]
    None,
    /// Half-NAT, both directions.
    Nat,
    /// Direct routing: MACs only.
    Dr,
    /// IP-in-IP to an IPv4 real server.
    Tun,
}

/// One real server's forwarding record. One cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub(crate) struct Record {
    /// Towards the real server: its next hop's MAC, then the egress port's.
    pub(crate) macs: MacPair,
    pub(crate) port: u16,
    /// The longest IP packet that goes as it is: the egress port's MTU, less the tunnel
    /// header for TUN; 0 when the record is not the fast path's (`Kind::None`).
    pub(crate) max_len: u16,
    /// The lowest TTL a packet may arrive with: 2 for NAT (which decrements it), else 0.
    pub(crate) min_ttl: u8,
    pub(crate) kind: Kind,
    /// The service the real server belongs to.
    pub(crate) service: u32,
    /// The real server's address and port (NAT, TUN), wire forms.
    pub(crate) rs_addr: u32,
    pub(crate) rs_port: u16,
    /// The service's VIP and port, wire forms.
    pub(crate) vport: u16,
    pub(crate) vip: u32,
    /// NAT step 2, checksum deltas: IPv4 header (destination VIP -> real server, TTL - 1),
    /// TCP/UDP (destination VIP:port -> real server:port, pseudo-header included).
    pub(crate) to_rs_ip: u32,
    pub(crate) to_rs_l4: u32,
    /// NAT step 4: the same for the reply (source real server -> VIP).
    pub(crate) to_client_ip: u32,
    pub(crate) to_client_l4: u32,
    /// TUN: the outer source when the port has no per-flow prefix; else the prefix's network
    /// (as a number) and host bits (`tun_host_bits` < 32).
    pub(crate) tun_src: u32,
    pub(crate) tun_net: u32,
    /// 32: no prefix.
    pub(crate) tun_host_bits: u8,
}

/// Checksum delta of the IPv4 header's TTL/protocol word losing one TTL: !w + (w - 0x100).
const TTL_DELTA: u32 = 0xfeff;

/// What a forwarding record of either family is made from: backend `id`, its service, its
/// egress port and its next hop's resolved MAC (`None`: no record of the fast path's).
pub(super) fn record_parts(
    snap: &Snapshot,
    id: u32,
) -> Option<(&Backend, &Service, &PortInfo, MacAddr)> {
    let b = snap.backend(id)?;
    let svc = snap.services.get(b.service as usize)?;
    let port = snap.ports.get(usize::from(b.egress_port))?;
    Some((b, svc, port, b.next_hop_mac?))
}

fn record(snap: &Snapshot, id: u32) -> Record {
    let Some((b, svc, port, mac)) = record_parts(snap, id) else {
        return Record::default();
    };
    let IpAddr::V4(vip) = svc.vip else {
        return Record::default();
    };
    let mut r = Record {
        macs: MacPair::new(mac, port.mac),
        port: b.egress_port,
        kind: Kind::None,
        service: b.service,
        vport: wire_port(svc.port),
        vip: wire4(vip),
        tun_host_bits: 32,
        ..Record::default()
    };
    if b.drop_flows {
        return r;
    }
    match (b.mode, b.addr) {
        (FwdMode::Nat, IpAddr::V4(rs)) => {
            let (v, a) = (u32::from(vip), u32::from(rs));
            let addr = checksum::delta32(v, a);
            r.rs_addr = wire4(rs);
            r.rs_port = wire_port(b.port);
            r.to_rs_ip = addr + TTL_DELTA;
            r.to_rs_l4 = addr + checksum::delta16(svc.port, b.port);
            let back = checksum::delta32(a, v);
            r.to_client_ip = back + TTL_DELTA;
            r.to_client_l4 = back + checksum::delta16(b.port, svc.port);
            r.kind = Kind::Nat;
        }
        (FwdMode::Dr, IpAddr::V4(_)) => r.kind = Kind::Dr,
        (FwdMode::Tunnel, IpAddr::V4(rs)) => {
            let Some(base) = port.ipv4 else {
                return r;
            };
            r.rs_addr = wire4(rs);
            r.tun_src = wire4(base.addr());
            if let Some(prefix) = port.tunnel_source4 {
                r.tun_net = u32::from(prefix.network());
                r.tun_host_bits = 32 - prefix.prefix_len();
            }
            r.kind = Kind::Tun;
        }
        _ => {}
    }
    (r.max_len, r.min_ttl) = match r.kind {
        Kind::Nat => (port.mtu, 2),
        Kind::Dr => (port.mtu, 0),
        // The outer IPv4 header.
        Kind::Tun => (port.mtu.saturating_sub(ipv4::HEADER_LEN as u16), 0),
        Kind::None => (0, 0),
    };
    r
}

/// The next hop towards a client (either family): egress port, the MACs, the port's MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hop {
    pub(crate) port: u16,
    pub(crate) macs: MacPair,
    pub(crate) mtu: u16,
}

/// An on-link IPv4 subnet of a port (numbers, not wire forms).
#[derive(Clone, Copy, Debug)]
struct Link {
    net: u32,
    mask: u32,
    port: u16,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Fast4 {
    /// Service index and owner rule ([`unpack`]) by (VIP, port, protocol).
    pub(crate) services: WordMap<u32>,
    /// [`ADDR_VIP`] / [`ADDR_OWN`] by address.
    pub(crate) addrs: WordMap<u8>,
    /// The addresses of `addrs`, for the packets that are not to one (a NAT reply).
    pub(crate) addrs_filter: WordFilter,
    /// A NAT real server's endpoint: its service, or [`AMBIGUOUS`], and its owner rule.
    pub(crate) nat_endpoints: WordMap<u32>,
    /// Resolved neighbours' MACs by address.
    neighbours: WordMap<[u8; 6]>,
    links: Box<[Link]>,
    /// The first port with an IPv4 gateway, and the gateway's MAC if resolved.
    default: Option<(u16, Option<MacAddr>)>,
    /// Per port: its MAC as `ethernet::Header::dst_word` reads it, the MAC, the MTU.
    port_macs: Box<[(u64, MacAddr, u16)]>,
    /// Forwarding records by backend id.
    records: Box<[Record]>,
}

impl Fast4 {
    pub(super) fn build(snap: &Snapshot) -> Fast4 {
        let mut addrs: Vec<(u64, u8)> = Vec::new();
        let mut services = Vec::new();
        for (i, s) in snap.services.iter().enumerate() {
            if let IpAddr::V4(vip) = s.vip {
                services.push((
                    endpoint_word(wire4(vip), wire_port(s.port), s.proto),
                    pack(i as u32, s.ownership),
                ));
                addrs.push((u64::from(wire4(vip)), ADDR_VIP));
            }
        }
        let mut links = Vec::new();
        for (i, p) in snap.ports.iter().enumerate() {
            if let Some(n) = p.ipv4 {
                addrs.push((u64::from(wire4(n.addr())), ADDR_OWN));
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(n.prefix_len()))
                    .unwrap_or(0);
                links.push(Link {
                    net: u32::from(n.addr()) & mask,
                    mask,
                    port: i as u16,
                });
            }
        }
        // An address that is both a VIP and the box's keeps both bits.
        let mut merged: std::collections::HashMap<u64, u8> = std::collections::HashMap::new();
        for (a, bit) in addrs {
            *merged.entry(a).or_default() |= bit;
        }
        let nat_endpoints = snap.nat_endpoints.iter().filter_map(|(e, s)| {
            let (addr, proto, port) = e.parts();
            let IpAddr::V4(a) = crate::flow::key::from_mapped(&addr.to_be_bytes()) else {
                return None;
            };
            Some((
                endpoint_word(wire4(a), wire_port(port), proto),
                // A full-NAT endpoint's reply without an entry has no service to go by.
                pack(
                    s.service.filter(|_| !s.fnat).unwrap_or(AMBIGUOUS),
                    s.ownership,
                ),
            ))
        });
        let neighbours = snap.neighbours.iter().filter_map(|(a, m)| {
            match crate::flow::key::from_mapped(&a.to_be_bytes()) {
                IpAddr::V4(v4) => Some((u64::from(wire4(v4)), m.0)),
                IpAddr::V6(_) => None,
            }
        });
        let default = snap.ports.iter().enumerate().find_map(|(i, p)| {
            p.gateway_v4
                .map(|g| (i as u16, snap.neighbour(&IpAddr::V4(g))))
        });
        let records = (0..snap.backends.len() as u32)
            .map(|id| record(snap, id))
            .collect();
        Fast4 {
            services: WordMap::build(services),
            addrs_filter: WordFilter::build(merged.keys().copied()),
            addrs: WordMap::build(merged),
            nat_endpoints: WordMap::build(nat_endpoints.collect::<Vec<_>>()),
            neighbours: WordMap::build(neighbours.collect::<Vec<_>>()),
            links: links.into(),
            default,
            port_macs: snap
                .ports
                .iter()
                .map(|p| (mac_word(&p.mac), p.mac, p.mtu))
                .collect(),
            records,
        }
    }

    /// The forwarding record of backend `id`.
    #[inline(always)]
    pub(crate) fn record(&self, id: u32) -> Option<&Record> {
        self.records.get(id as usize)
    }

    /// Port `p`'s MAC as `ethernet::Header::dst_word` reads it.
    #[inline(always)]
    pub(crate) fn port_mac(&self, p: u16) -> Option<u64> {
        self.port_macs.get(usize::from(p)).map(|m| m.0)
    }

    /// The next hop towards the client at `dst` (a number) when it is known: what
    /// `Snapshot::resolve_key` answers with `Ok`, with the port's MAC and MTU (`None` for any
    /// other answer: the general path decides).
    #[inline(always)]
    pub(crate) fn hop(&self, dst: u32) -> Option<Hop> {
        let (port, mac) = match self.links.iter().find(|l| dst & l.mask == l.net) {
            Some(l) => (
                l.port,
                MacAddr(self.neighbours.get(u64::from(dst.swap_bytes()))?),
            ),
            None => {
                let (port, mac) = self.default?;
                (port, mac?)
            }
        };
        let &(_, our, mtu) = self.port_macs.get(usize::from(port))?;
        Some(Hop {
            port,
            macs: MacPair::new(mac, our),
            mtu,
        })
    }
}

/// The outer source of a tunnelled flow for a record with a per-flow prefix: the same
/// address as [`crate::fwd::tunnel::outer_source`] picks (tested there).
#[inline(always)]
pub(crate) fn tunnel_source(r: &Record, flow_hash: u32) -> u32 {
    if r.tun_host_bits >= 32 {
        return r.tun_src;
    }
    let host = crate::fwd::tunnel::host_part_v4(u32::from(r.tun_host_bits), flow_hash);
    (r.tun_net | host).swap_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::DropReason;
    use crate::flow::key::to_mapped;
    use crate::snapshot::{BackendSpec, PortInfo, ServiceSpec};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn snapshot(neighbours: &HashMap<IpAddr, MacAddr>) -> Snapshot {
        let ports = vec![
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                ipv4: Some("10.0.0.10/24".parse().unwrap()),
                gateway_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                mtu: 1500,
                ..PortInfo::default()
            },
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                ipv4: Some("10.1.0.10/16".parse().unwrap()),
                mtu: 9000,
                tunnel_source4: Some("10.1.200.0/24".parse().unwrap()),
                ..PortInfo::default()
            },
        ];
        let rs = |i: u8, mode, port| BackendSpec {
            id: u32::from(i),
            addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)),
            port,
            mode,
            ..BackendSpec::default()
        };
        let services = vec![
            ServiceSpec {
                vip: IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1)),
                proto: 6,
                port: 80,
                backends: vec![rs(1, FwdMode::Nat, 8080), rs(2, FwdMode::Nat, 8080)],
                ..ServiceSpec::default()
            },
            ServiceSpec {
                vip: IpAddr::V4(Ipv4Addr::new(10, 0, 100, 1)),
                proto: 17,
                port: 53,
                backends: vec![rs(3, FwdMode::Nat, 5353), rs(4, FwdMode::Dr, 53)],
                ..ServiceSpec::default()
            },
            ServiceSpec {
                vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)),
                proto: 6,
                port: 443,
                backends: vec![rs(5, FwdMode::Tunnel, 443), rs(6, FwdMode::Nat, 8080)],
                ..ServiceSpec::default()
            },
        ];
        Snapshot::build(1, ports, &services, neighbours, 7).unwrap()
    }

    /// Addresses around the snapshot's, and (one in five) its VIPs and port addresses
    /// themselves, which the spread alone never hits.
    fn addr() -> impl Strategy<Value = Ipv4Addr> {
        let spread = (prop::sample::select(vec![0u8, 1, 100, 200]), 0u8..8).prop_map(|(c, d)| {
            if d == 7 {
                Ipv4Addr::new(192, 0, 2, c)
            } else {
                Ipv4Addr::new(10, d % 3, c, d)
            }
        });
        let own = prop::sample::select(vec![
            Ipv4Addr::new(10, 0, 100, 1),
            Ipv4Addr::new(10, 0, 0, 10),
            Ipv4Addr::new(10, 1, 0, 10),
        ]);
        prop_oneof![4 => spread, 1 => own]
    }

    proptest! {
        /// The maps answer as the general path's lookups do.
        #[test]
        fn same_answers_as_the_general_lookups(
            known in prop::collection::vec(addr(), 0..10),
            probes in prop::collection::vec((addr(), prop::sample::select(vec![53u16, 80, 443, 5353, 8080]), prop::sample::select(vec![6u8, 17])), 1..40),
        ) {
            let mut neighbours = HashMap::new();
            for (i, a) in known.iter().enumerate() {
                neighbours.insert(IpAddr::V4(*a), MacAddr([2, 0, 0, 9, 0, i as u8]));
            }
            let snap = snapshot(&neighbours);
            let f = &snap.fast4;
            for (a, port, proto) in probes {
                let key = to_mapped(IpAddr::V4(a));
                let w = endpoint_word(wire4(a), wire_port(port), proto);
                prop_assert_eq!(
                    f.services.get(w),
                    snap.service(&key, proto, port).map(|(i, s)| pack(i, s.ownership))
                );
                let bits = f.addrs.get(u64::from(wire4(a))).unwrap_or(0);
                // The filter lets every address of the map by (it may let others by too).
                prop_assert!(bits == 0 || f.addrs_filter.may_hold(u64::from(wire4(a))));
                prop_assert_eq!(bits & ADDR_VIP != 0, snap.is_vip(&key));
                prop_assert_eq!(bits & ADDR_OWN != 0, snap.is_local_key(&key));
                prop_assert_eq!(
                    f.nat_endpoints.get(w).map(|v| unpack(v).0).map(|s| (s != AMBIGUOUS).then_some(s)),
                    snap.nat_endpoint(&key, proto, port).map(|e| e.service.filter(|_| !e.fnat))
                );
                let want = snap.resolve_key(&key).ok().map(|(port, mac)| {
                    let p = &snap.ports[usize::from(port)];
                    Hop { port, macs: MacPair::new(mac, p.mac), mtu: p.mtu }
                });
                prop_assert_eq!(f.hop(u32::from(a)), want);
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
        for i in [1u8, 3, 4, 5] {
            neighbours.insert(
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)),
                MacAddr([2, 0, 0, 1, 0, i]),
            );
        }
        let snap = snapshot(&neighbours);
        let f = &snap.fast4;
        let r = f.record(1).unwrap();
        assert_eq!(r.kind, Kind::Nat);
        assert_eq!(
            r.macs,
            MacPair::new(MacAddr([2, 0, 0, 1, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]))
        );
        assert_eq!((r.port, r.max_len, r.service), (1, 9000, 0));
        // The deltas move a checksum as the full update would.
        let c = 0x1234;
        let want = checksum::update32(
            checksum::update16(c, 0x4006, 0x3f06),
            u32::from(Ipv4Addr::new(10, 0, 100, 1)),
            u32::from(Ipv4Addr::new(10, 1, 0, 1)),
        );
        assert_eq!(checksum::apply(c, r.to_rs_ip), want);
        // Unresolved next hop: not for the fast path.
        assert_eq!(f.record(2).unwrap().kind, Kind::None);
        assert_eq!(f.record(4).unwrap().kind, Kind::Dr);
        let t = f.record(5).unwrap();
        assert_eq!((t.kind, t.tun_host_bits), (Kind::Tun, 8));
        assert_eq!(f.record(99).map(|r| r.kind), None);
    }
}
