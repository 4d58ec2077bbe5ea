//! The read-only configuration snapshot the workers forward by.
//!
//! The control plane builds a [`Snapshot`] from the configuration and the neighbour table
//! (everything precomputed: scheduler tables, next-hop MACs, lookup maps) and publishes it
//! atomically; workers only index it. A new snapshot is built for every change.

use crate::flow::key::to_mapped;
use crate::sched::{SchedBackend, SchedError, Scheduler, SchedulerKind, ServiceScheduler};
use crate::wire::MacAddr;
use hashbrown::HashMap;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::IpAddr;

/// How a real server is reached (LVS's packet-forwarding methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FwdMode {
    /// Half-NAT: destination rewritten to the real server; replies come back through vipd.
    Nat,
    /// Direct routing: only the destination MAC changes; replies bypass vipd.
    Dr,
    /// IP-in-IP tunnel: encapsulated to the real server; replies bypass vipd.
    Tunnel,
}

impl std::str::FromStr for FwdMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nat" => Ok(FwdMode::Nat),
            "dr" => Ok(FwdMode::Dr),
            "tunnel" | "tun" => Ok(FwdMode::Tunnel),
            _ => Err(format!(
                "unknown forwarding mode `{s}` (expected nat, dr or tunnel)"
            )),
        }
    }
}

impl std::fmt::Display for FwdMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FwdMode::Nat => "nat",
            FwdMode::Dr => "dr",
            FwdMode::Tunnel => "tunnel",
        })
    }
}

/// One of vipd's ports as the dataplane sees it.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// The port's MAC address.
    pub mac: MacAddr,
    /// IPv4 address and on-link prefix.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address and on-link prefix.
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 default gateway reached through this port.
    pub gateway_v4: Option<std::net::Ipv4Addr>,
    /// IPv6 default gateway reached through this port.
    pub gateway_v6: Option<std::net::Ipv6Addr>,
    /// Largest IP packet the port sends.
    pub mtu: u16,
    /// TUN: prefix the IPv4 outer source is picked from per flow (None: the port's address).
    pub tunnel_source4: Option<Ipv4Net>,
    /// TUN: prefix the IPv6 outer source is picked from per flow (None: the port's address).
    pub tunnel_source6: Option<Ipv6Net>,
}

impl PortInfo {
    fn on_link(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.contains(a)),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.contains(a)),
        }
    }

    fn gateway(&self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.gateway_v4.map(IpAddr::V4)
        } else {
            self.gateway_v6.map(IpAddr::V6)
        }
    }

    /// Whether `addr` is this port's own address.
    pub fn owns(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4.is_some_and(|n| n.addr() == *a),
            IpAddr::V6(a) => self.ipv6.is_some_and(|n| n.addr() == *a),
        }
    }
}

/// A real server as configured, input to [`Snapshot::build`].
#[derive(Clone, Debug)]
pub struct BackendSpec {
    /// Stable identity chosen by the control plane: flow entries refer to it, so a real server
    /// keeps its id across reloads as long as it stays configured.
    pub id: u32,
    /// Address.
    pub addr: IpAddr,
    /// Port (NAT rewrites the destination port to it; DR/TUN keep the VIP port).
    pub port: u16,
    /// Weight; 0 drains it (no new flows).
    pub weight: u32,
    /// Forwarding mode.
    pub mode: FwdMode,
}

/// A virtual service as configured, input to [`Snapshot::build`].
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Virtual IP.
    pub vip: IpAddr,
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// Virtual port.
    pub port: u16,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Real servers.
    pub backends: Vec<BackendSpec>,
}

/// A real server in a snapshot, with its route precomputed.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Stable id (see [`BackendSpec::id`]).
    pub id: u32,
    /// Index of its service in [`Snapshot::services`].
    pub service: u32,
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Forwarding mode.
    pub mode: FwdMode,
    /// Port it is reached through.
    pub egress_port: u16,
    /// Next hop (itself when on-link, else the gateway).
    pub next_hop: IpAddr,
    /// MAC of the next hop, when resolved.
    pub next_hop_mac: Option<MacAddr>,
}

/// A virtual service in a snapshot.
#[derive(Debug)]
pub struct Service {
    /// Virtual IP.
    pub vip: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Virtual port.
    pub port: u16,
    /// The configured scheduler; None when no real server can take new flows (none
    /// configured, or all drained): new flows are then dropped as `drop_no_backend`.
    pub scheduler: Option<ServiceScheduler>,
    /// Maglev table used when the flow table is full, so a flow that finds no room still
    /// reaches the same real server on every packet (and on every box). Same as `scheduler`
    /// when that is Maglev.
    pub fallback: Option<ServiceScheduler>,
    /// Backend ids in scheduler index order.
    pub backends: Vec<u32>,
    /// Whether any real server is in NAT mode (its connections must be owned by one worker).
    pub has_nat: bool,
}

impl Service {
    /// Pick a real server for a new flow with the configured scheduler.
    #[inline]
    pub fn pick(&self, flow_hash: u64, cursor: &mut u64) -> Option<u32> {
        let i = self.scheduler.as_ref()?.pick(flow_hash, cursor)?;
        self.backends.get(i as usize).copied()
    }

    /// Pick a real server statelessly: the same answer for the same flow hash every time.
    #[inline]
    pub fn pick_consistent(&self, flow_hash: u64) -> Option<u32> {
        let table = self.fallback.as_ref().or(self.scheduler.as_ref())?;
        let i = table.pick(flow_hash, &mut 0)?;
        self.backends.get(i as usize).copied()
    }
}

/// What can be wrong in a snapshot's input.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A service's scheduler could not be built.
    #[error("service {vip} port {port}: {source}")]
    Scheduler {
        /// VIP.
        vip: IpAddr,
        /// Port.
        port: u16,
        /// Why.
        source: SchedError,
    },
    /// Two services with the same VIP, protocol and port.
    #[error("service {vip} proto {proto} port {port} is defined twice")]
    DuplicateService {
        /// VIP.
        vip: IpAddr,
        /// Protocol.
        proto: u8,
        /// Port.
        port: u16,
    },
    /// Two real servers with the same id.
    #[error("real server id {0} is used twice")]
    DuplicateBackendId(u32),
    /// No port can reach a real server.
    #[error("real server {0} is not on-link on any port and no port has a gateway for its family")]
    NoRoute(IpAddr),
}

type EndpointKey = ([u8; 16], u8, u16);

/// Everything a worker needs to forward, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    /// Ports by DPDK port index.
    pub ports: Vec<PortInfo>,
    /// Services.
    pub services: Vec<Service>,
    backends: Vec<Option<Backend>>,
    service_by_key: HashMap<EndpointKey, u32>,
    vips: HashMap<[u8; 16], ()>,
    /// NAT real server endpoint -> its service, or None when it serves several (ambiguous).
    nat_endpoints: HashMap<EndpointKey, Option<u32>>,
    neighbours: HashMap<[u8; 16], MacAddr>,
}

impl Snapshot {
    /// Build a snapshot. `neighbours` maps next-hop addresses to resolved MACs.
    pub fn build(
        generation: u64,
        ports: Vec<PortInfo>,
        services: &[ServiceSpec],
        neighbours: &std::collections::HashMap<IpAddr, MacAddr>,
        maglev_size: u32,
    ) -> Result<Snapshot, SnapshotError> {
        let neighbours: HashMap<[u8; 16], MacAddr> = neighbours
            .iter()
            .map(|(a, m)| (to_mapped(*a), *m))
            .collect();
        let mut snap = Snapshot {
            generation,
            ports,
            services: Vec::with_capacity(services.len()),
            backends: Vec::new(),
            service_by_key: HashMap::new(),
            vips: HashMap::new(),
            nat_endpoints: HashMap::new(),
            neighbours,
        };
        for (si, spec) in services.iter().enumerate() {
            let si = si as u32;
            let key = (to_mapped(spec.vip), spec.proto, spec.port);
            if snap.service_by_key.insert(key, si).is_some() {
                return Err(SnapshotError::DuplicateService {
                    vip: spec.vip,
                    proto: spec.proto,
                    port: spec.port,
                });
            }
            snap.vips.insert(to_mapped(spec.vip), ());
            let sched_input: Vec<SchedBackend> = spec
                .backends
                .iter()
                .map(|b| SchedBackend {
                    key: backend_key(b.addr, b.port),
                    weight: b.weight,
                })
                .collect();
            let err = |source| SnapshotError::Scheduler {
                vip: spec.vip,
                port: spec.port,
                source,
            };
            let scheduler = nothing_to_schedule(ServiceScheduler::build(
                spec.scheduler,
                &sched_input,
                maglev_size,
            ))
            .map_err(err)?;
            let fallback = match (spec.scheduler, &scheduler) {
                (SchedulerKind::Maglev, _) | (_, None) => None,
                _ => nothing_to_schedule(ServiceScheduler::build(
                    SchedulerKind::Maglev,
                    &sched_input,
                    maglev_size,
                ))
                .map_err(err)?,
            };
            for b in &spec.backends {
                let (egress_port, next_hop) = snap
                    .route_for(&b.addr)
                    .ok_or(SnapshotError::NoRoute(b.addr))?;
                let backend = Backend {
                    id: b.id,
                    service: si,
                    addr: b.addr,
                    port: b.port,
                    weight: b.weight,
                    mode: b.mode,
                    egress_port,
                    next_hop,
                    next_hop_mac: snap.neighbours.get(&to_mapped(next_hop)).copied(),
                };
                let slot = b.id as usize;
                if snap.backends.len() <= slot {
                    snap.backends.resize(slot + 1, None);
                }
                if snap.backends[slot].replace(backend).is_some() {
                    return Err(SnapshotError::DuplicateBackendId(b.id));
                }
                if b.mode == FwdMode::Nat {
                    snap.nat_endpoints
                        .entry((to_mapped(b.addr), spec.proto, b.port))
                        .and_modify(|s| {
                            if *s != Some(si) {
                                *s = None
                            }
                        })
                        .or_insert(Some(si));
                }
            }
            snap.services.push(Service {
                vip: spec.vip,
                proto: spec.proto,
                port: spec.port,
                scheduler,
                fallback,
                backends: spec.backends.iter().map(|b| b.id).collect(),
                has_nat: spec.backends.iter().any(|b| b.mode == FwdMode::Nat),
            });
        }
        Ok(snap)
    }

    /// The port and next hop to reach `dst`: on-link first, else the first port with a gateway
    /// of that family.
    pub fn route_for(&self, dst: &IpAddr) -> Option<(u16, IpAddr)> {
        if let Some(p) = self.ports.iter().position(|p| p.on_link(dst)) {
            return Some((p as u16, *dst));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway(dst.is_ipv4()).map(|g| (i as u16, g)))
    }

    /// Port and MAC of the next hop towards `dst` (16-byte key form), or the drop reason.
    #[inline]
    pub fn resolve(&self, dst: &IpAddr) -> Result<(u16, MacAddr), crate::counters::Counter> {
        let (port, hop) = self
            .route_for(dst)
            .ok_or(crate::counters::Counter::DropNoRoute)?;
        let mac = self
            .neighbours
            .get(&to_mapped(hop))
            .copied()
            .ok_or(crate::counters::Counter::DropNeighbourUnresolved)?;
        Ok((port, mac))
    }

    /// The service for a destination endpoint.
    #[inline]
    pub fn service(&self, dst: &[u8; 16], proto: u8, port: u16) -> Option<(u32, &Service)> {
        let &i = self.service_by_key.get(&(*dst, proto, port))?;
        self.services.get(i as usize).map(|s| (i, s))
    }

    /// Whether `addr` is a VIP of any service.
    #[inline]
    pub fn is_vip(&self, addr: &[u8; 16]) -> bool {
        self.vips.contains_key(addr)
    }

    /// Whether `addr` is one of our ports' own addresses.
    #[inline]
    pub fn is_local(&self, addr: &IpAddr) -> bool {
        self.ports.iter().any(|p| p.owns(addr))
    }

    /// If `src` is a NAT real server endpoint: `Some(Some(service))` when it serves exactly
    /// one service, `Some(None)` when several (ambiguous without a flow entry).
    #[inline]
    pub fn nat_endpoint(&self, src: &[u8; 16], proto: u8, port: u16) -> Option<Option<u32>> {
        self.nat_endpoints.get(&(*src, proto, port)).copied()
    }

    /// A backend by id.
    #[inline]
    pub fn backend(&self, id: u32) -> Option<&Backend> {
        self.backends.get(id as usize)?.as_ref()
    }

    /// All backends.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends.iter().flatten()
    }

    /// A resolved neighbour's MAC.
    pub fn neighbour(&self, addr: &IpAddr) -> Option<MacAddr> {
        self.neighbours.get(&to_mapped(*addr)).copied()
    }
}

/// A service whose real servers are all drained (or that has none) is valid: it just takes
/// no new flows.
fn nothing_to_schedule(
    r: Result<ServiceScheduler, SchedError>,
) -> Result<Option<ServiceScheduler>, SchedError> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(SchedError::NoBackends | SchedError::AllDrained(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The identity of a real server for Maglev permutations: address (IPv4-mapped) and port.
pub fn backend_key(addr: IpAddr, port: u16) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..16].copy_from_slice(&to_mapped(addr));
    k[16..].copy_from_slice(&port.to_be_bytes());
    k
}
