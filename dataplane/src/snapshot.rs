//! The read-only configuration snapshot the workers forward by.
//!
//! The control plane builds a [`Snapshot`] from the configuration and the neighbour table
//! (everything precomputed: scheduler tables, next-hop MACs, lookup maps) and publishes it
//! atomically; workers only index it. A new snapshot is built for every change.

use crate::flow::key::to_mapped;
use crate::flow::{FlowKey, Timeouts};
use crate::sched::load::{Limit, ServiceLoad};
use crate::sched::{
    NewConn, SchedBackend, SchedError, SchedFlags, Scheduler, SchedulerKind, ServiceScheduler,
    Unlimited,
};
use crate::wire::MacAddr;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::IpAddr;

pub(crate) mod fast4;
pub(crate) mod fast6;
mod fwd_mode;
mod local_pool;
mod lookup;
mod ownership;
mod vlans;
mod word_filter;
mod word_map;
pub use fwd_mode::FwdMode;
pub use local_pool::LocalPool;
use lookup::{addr_key, map, Endpoint, Map, PortLookups};
pub use ownership::{mask_key, NatEndpoint, Ownership};
pub use vlans::VlanOf;

/// One of vipd's ports as the dataplane sees it.
#[derive(Clone, Debug, Default)]
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
    /// The port has a kernel interface (exception path): traffic for the port's addresses
    /// that vipd does not consume itself goes to the box's kernel instead of being dropped.
    pub kernel: bool,
    /// Set for an 802.1Q VLAN of a port: the port it rides on and its id. Such an interface
    /// comes after every port in [`Snapshot::ports`]; its frames carry the tag on the wire.
    pub vlan: Option<VlanOf>,
}

/// How a destination is reached: through which port, via which next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Index of the port.
    pub port: u16,
    /// The destination itself when on-link, else the port's gateway.
    pub next_hop: IpAddr,
    /// Whether the destination is on the port's own segment.
    pub on_link: bool,
}

/// The one answer to "which port reaches this address": the first port whose subnet holds
/// `dst`, else the first port with a gateway of `dst`'s family. Configuration checks, snapshot
/// building and the dataplane all ask here.
pub fn route(ports: &[PortInfo], dst: &IpAddr) -> Option<Route> {
    if let Some(p) = ports.iter().position(|p| p.on_link(dst)) {
        return Some(Route {
            port: p as u16,
            next_hop: *dst,
            on_link: true,
        });
    }
    ports.iter().enumerate().find_map(|(i, p)| {
        p.gateway(dst.is_ipv4()).map(|g| Route {
            port: i as u16,
            next_hop: g,
            on_link: false,
        })
    })
}

impl PortInfo {
    /// Whether `addr` is inside one of the port's on-link prefixes.
    pub fn on_link(&self, addr: &IpAddr) -> bool {
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
    /// Health: false when its checks failed; it then takes no new flows.
    pub up: bool,
    /// A sorry server: takes new flows only while no other real server can.
    pub sorry: bool,
    /// Connection thresholds (ipvsadm `-x`, `-y`).
    pub limit: Limit,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            id: 0,
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
            weight: 1,
            mode: FwdMode::Nat,
            up: true,
            sorry: false,
            limit: Limit::default(),
        }
    }
}

/// What a service's consistent hash (Maglev, and the table every service keeps for flows
/// without an entry) is computed over: always [`FlowKey::hash`] with its fixed seed, the same
/// on every box, of the packet's key or of that key without its ports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlowHashFields {
    /// Client address and port, VIP and port, protocol: a client's connections spread over
    /// the real servers. A later fragment (no ports) cannot be hashed so.
    #[default]
    FiveTuple,
    /// Client address, VIP, protocol: every packet of a client address goes to one real
    /// server, so a later fragment whose first fragment this box never saw (a restart,
    /// reordering, the first fragment routed to another box) still finds it.
    ThreeTuple,
}

impl std::str::FromStr for FlowHashFields {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "5-tuple" => Ok(FlowHashFields::FiveTuple),
            "3-tuple" => Ok(FlowHashFields::ThreeTuple),
            _ => Err(format!("unknown hash `{s}` (expected 5-tuple or 3-tuple)")),
        }
    }
}

impl FlowHashFields {
    /// The configuration's name.
    pub fn name(self) -> &'static str {
        match self {
            FlowHashFields::FiveTuple => "5-tuple",
            FlowHashFields::ThreeTuple => "3-tuple",
        }
    }
}

/// Persistence of a service as configured (ipvsadm `-p TIMEOUT -M NETMASK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistenceSpec {
    /// Seconds a client network keeps its real server after its last new connection.
    pub timeout_s: u32,
    /// Prefix length of the client network, in the VIP's family (32 / 128: per client).
    pub prefix_len: u8,
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
    /// Flows of a real server that is down are dropped on their next packet (IPVS's
    /// `expire_nodest_conn`), instead of continuing to it.
    pub drop_dead_flows: bool,
    /// What the consistent hash covers.
    pub hash: FlowHashFields,
    /// The scheduler's flags (`sh-fallback`, `sh-port`).
    pub sched_flags: SchedFlags,
    /// Persistence, if any.
    pub persistence: Option<PersistenceSpec>,
    /// Full-NAT real servers' local addresses and ports (empty without full-NAT).
    pub local_pool: LocalPool,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            vip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            proto: 6,
            port: 0,
            scheduler: SchedulerKind::Maglev,
            backends: Vec::new(),
            drop_dead_flows: true,
            hash: FlowHashFields::FiveTuple,
            sched_flags: SchedFlags::default(),
            persistence: None,
            local_pool: LocalPool::default(),
        }
    }
}

/// A persistent service's persistence, in the form the new-connection path uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// How long an entry lives after the client network's last new connection.
    pub timeout_ms: u64,
    /// Prefix length of the client network in flow-key form (IPv4: 96 + its length).
    pub bits: u8,
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
    /// Health (see [`BackendSpec::up`]).
    pub up: bool,
    /// A sorry server (see [`BackendSpec::sorry`]).
    pub sorry: bool,
    /// Down, in a service that drops dead flows: a flow entry that still points here is
    /// removed and its packet dropped (`drop_real_server_down`).
    pub drop_flows: bool,
    /// Connection thresholds.
    pub limit: Limit,
    /// Its index in its service's scheduler when it takes new connections (up, with a
    /// weight, or a sorry server on duty); None otherwise. A persistence entry pulls a new
    /// connection to it only while this is set and it is under its threshold.
    pub sched_index: Option<u32>,
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
    /// Every real server's backend id, in configuration order (listings).
    pub backends: Vec<u32>,
    /// Ids of the real servers that take new flows, in scheduler index order: those up with
    /// a weight, or, when there is none, the sorry servers that are up.
    pub scheduled: Vec<u32>,
    /// Whether any real server is in NAT mode (its connections must be owned by one worker).
    pub has_nat: bool,
    /// What the consistent hash covers ([`Service::flow_hash`]).
    pub hash: FlowHashFields,
    /// Which worker owns a connection of this service (steering).
    pub ownership: Ownership,
    /// Persistence, if any.
    pub persistence: Option<Persistence>,
    /// Thresholds of the real servers in `scheduled` (same order); empty when none has one.
    pub limits: Vec<Limit>,
    /// Full-NAT's local addresses and ports.
    pub local_pool: LocalPool,
}

impl Service {
    /// Pick a real server for a new flow with the configured scheduler, counts and
    /// thresholds from `load` (see [`crate::sched::load`]).
    #[inline]
    pub fn pick(
        &self,
        conn: &NewConn<'_>,
        cursor: &mut u64,
        load: &crate::sched::load::SharedLoad,
    ) -> Option<u32> {
        let load = ServiceLoad {
            shared: load,
            slots: &self.scheduled,
            limits: &self.limits,
        };
        let i = self.scheduler.as_ref()?.pick(conn, cursor, &load)?;
        self.scheduled.get(i as usize).copied()
    }

    /// Whether the configured scheduler picks by the flow hash alone (Maglev), so a new
    /// connection's real server is known from its packet.
    #[inline]
    pub fn schedules_by_hash(&self) -> bool {
        matches!(self.scheduler, Some(ServiceScheduler::Maglev(_)))
    }

    /// The hash this service schedules and forwards statelessly by, of a packet with flow
    /// key `key` (client -> VIP; a later fragment's key has no ports).
    #[inline]
    pub fn flow_hash(&self, key: &FlowKey) -> u64 {
        match self.hash {
            FlowHashFields::FiveTuple => key.hash(),
            FlowHashFields::ThreeTuple => FlowKey {
                src_port: 0,
                dst_port: 0,
                ..*key
            }
            .hash(),
        }
    }

    /// Pick a real server statelessly: the same answer for the same flow hash every time
    /// (the Maglev table; thresholds do not apply).
    #[inline]
    pub fn pick_consistent(&self, flow_hash: u64) -> Option<u32> {
        let table = self.fallback.as_ref().or(self.scheduler.as_ref())?;
        let i = match table.lookup_consistent(flow_hash) {
            Some(i) => i,
            None => table.pick(&NewConn::of_hash(flow_hash), &mut 0, &Unlimited)?,
        };
        self.scheduled.get(i as usize).copied()
    }

    /// The real server of connection `key` (flow hash `flow_hash`) without state: the same
    /// for every packet of it, on every box, whatever the load. An `sh` service answers by
    /// its client hash table (so a connection that moved between boxes or outlived a restart
    /// keeps the real server its client was given); every other service by the Maglev table.
    #[inline]
    pub fn pick_stateless(&self, key: &FlowKey, flow_hash: u64) -> Option<u32> {
        if let Some(ServiceScheduler::SourceHash(sh)) = &self.scheduler {
            let i = sh.lookup(&key.src, key.src_port)?;
            return self.scheduled.get(i as usize).copied();
        }
        self.pick_consistent(flow_hash)
    }

    /// Whether real server `id` may take a new connection now: it is scheduled and under its
    /// connection threshold (checked, and its box-wide flag updated, through `load`).
    #[inline]
    pub fn takes_new(&self, b: &Backend, load: &crate::sched::load::SharedLoad) -> bool {
        let Some(i) = b.sched_index else {
            return false;
        };
        match self.limits.get(i as usize) {
            Some(&limit) => load.available(b.id, limit),
            None => true,
        }
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

/// Everything a worker needs to forward, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    /// Interfaces: the ports by DPDK port index, then their VLANs (`PortInfo::vlan`). Routes,
    /// real servers' egress and `Action::Tx` inside the pipeline name an index here.
    pub ports: Vec<PortInfo>,
    /// Services.
    pub services: Vec<Service>,
    /// Flow timeouts the workers apply (set after [`Snapshot::build`]; default IPVS-like).
    pub timeouts: Timeouts,
    /// IPVS's `sloppy_tcp`: any TCP segment without a flow creates one (set after build).
    pub sloppy_tcp: bool,
    backends: Vec<Option<Backend>>,
    service_by_key: Map<Endpoint, u32>,
    vips: Map<u128, ()>,
    /// NAT real server endpoint -> its service (None when it serves several: ambiguous) and
    /// how its connections' owner is found.
    nat_endpoints: Map<Endpoint, NatEndpoint>,
    /// Every full-NAT service's local addresses (answered to ARP and NDP like VIPs).
    local_addrs: Map<u128, ()>,
    /// (VIP, protocol) -> its service, when it is that VIP's only service of the protocol and
    /// hashes on the 3-tuple: the service of a later fragment without its first.
    by_vip_proto: Map<Endpoint, u32>,
    /// Next-hop MACs by address (flow-key form).
    neighbours: Map<u128, MacAddr>,
    /// What `ports` tells per packet, precomputed (`ports` must not change after build).
    port_lookups: PortLookups,
    /// The VLANs' interfaces by port and VLAN id.
    vlans: vlans::Vlans,
    /// What the fast path reads per IPv4 packet, precomputed (from everything above).
    pub(crate) fast4: fast4::Fast4,
    /// The same for IPv6 packets.
    pub(crate) fast6: fast6::Fast6,
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
        let mut mapped: Map<u128, MacAddr> = map();
        mapped.extend(
            neighbours
                .iter()
                .map(|(a, m)| (addr_key(&to_mapped(*a)), *m)),
        );
        let neighbours = mapped;
        let port_lookups = PortLookups::new(&ports, &neighbours);
        let vlans = vlans::Vlans::new(&ports);
        let mut shares = ownership::Shares::default();
        let mut snap = Snapshot {
            generation,
            ports,
            services: Vec::with_capacity(services.len()),
            timeouts: Timeouts::default(),
            sloppy_tcp: false,
            backends: Vec::new(),
            service_by_key: map(),
            vips: map(),
            nat_endpoints: map(),
            local_addrs: map(),
            by_vip_proto: map(),
            neighbours,
            port_lookups,
            vlans,
            fast4: fast4::Fast4::default(),
            fast6: fast6::Fast6::default(),
        };
        for (si, spec) in services.iter().enumerate() {
            let si = si as u32;
            let key = Endpoint::new(&to_mapped(spec.vip), spec.proto, spec.port);
            if snap.service_by_key.insert(key, si).is_some() {
                return Err(SnapshotError::DuplicateService {
                    vip: spec.vip,
                    proto: spec.proto,
                    port: spec.port,
                });
            }
            snap.vips.insert(addr_key(&to_mapped(spec.vip)), ());
            // Down real servers leave the scheduler (Maglev rebuilt: only their flows move);
            // sorry servers enter it only when nobody else can take a flow.
            let mut eligible: Vec<&BackendSpec> = spec
                .backends
                .iter()
                .filter(|b| b.up && !b.sorry && b.weight > 0)
                .collect();
            if eligible.is_empty() {
                eligible = spec.backends.iter().filter(|b| b.up && b.sorry).collect();
            }
            let sched_input: Vec<SchedBackend> = eligible
                .iter()
                .map(|b| SchedBackend {
                    key: backend_key(b.addr, b.port),
                    weight: b.weight.max(u32::from(b.sorry)),
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
                spec.sched_flags,
            ))
            .map_err(err)?;
            let fallback = match (spec.scheduler, &scheduler) {
                (SchedulerKind::Maglev, _) | (_, None) => None,
                _ => nothing_to_schedule(ServiceScheduler::build(
                    SchedulerKind::Maglev,
                    &sched_input,
                    maglev_size,
                    SchedFlags::default(),
                ))
                .map_err(err)?,
            };
            let index_of: std::collections::HashMap<u32, u32> = eligible
                .iter()
                .enumerate()
                .map(|(i, b)| (b.id, i as u32))
                .collect();
            let sched_index = |b: &BackendSpec| index_of.get(&b.id).copied();
            for b in &spec.backends {
                let (egress_port, next_hop) = snap
                    .route_for(&b.addr)
                    .ok_or(SnapshotError::NoRoute(b.addr))?;
                let up = b.up;
                let backend = Backend {
                    id: b.id,
                    service: si,
                    addr: b.addr,
                    port: b.port,
                    weight: b.weight,
                    mode: b.mode,
                    egress_port,
                    next_hop,
                    next_hop_mac: snap
                        .neighbours
                        .get(&addr_key(&to_mapped(next_hop)))
                        .copied(),
                    up,
                    sorry: b.sorry,
                    drop_flows: !up && spec.drop_dead_flows,
                    limit: b.limit,
                    sched_index: if scheduler.is_some() {
                        sched_index(b)
                    } else {
                        None
                    },
                };
                let slot = b.id as usize;
                if snap.backends.len() <= slot {
                    snap.backends.resize(slot + 1, None);
                }
                if snap.backends[slot].replace(backend).is_some() {
                    return Err(SnapshotError::DuplicateBackendId(b.id));
                }
                if b.mode.replies_through_us() {
                    let ep = Endpoint::new(&to_mapped(b.addr), spec.proto, b.port);
                    let fnat = b.mode == FwdMode::Fnat;
                    snap.nat_endpoints
                        .entry(ep)
                        .and_modify(|e| {
                            if e.service != Some(si) {
                                e.service = None
                            }
                            e.fnat |= fnat;
                        })
                        .or_insert(NatEndpoint {
                            service: Some(si),
                            ownership: Ownership::Endpoint,
                            fnat,
                        });
                    shares.share(ep, si);
                }
            }
            let has_nat = spec.backends.iter().any(|b| b.mode.replies_through_us());
            if spec.backends.iter().any(|b| b.mode == FwdMode::Fnat) {
                snap.local_addrs
                    .extend(spec.local_pool.addrs.iter().map(|a| (addr_key(a), ())));
            }
            let persistence = spec.persistence.map(|p| Persistence {
                timeout_ms: u64::from(p.timeout_s) * 1000,
                bits: ownership::key_bits(spec.vip, p.prefix_len),
            });
            let limits: Vec<Limit> = eligible.iter().map(|b| b.limit).collect();
            snap.services.push(Service {
                vip: spec.vip,
                proto: spec.proto,
                port: spec.port,
                scheduler,
                fallback,
                backends: spec.backends.iter().map(|b| b.id).collect(),
                scheduled: eligible.iter().map(|b| b.id).collect(),
                has_nat,
                hash: spec.hash,
                ownership: Ownership::of(has_nat, persistence),
                persistence,
                limits: if limits.iter().any(|l| l.upper > 0) {
                    limits
                } else {
                    Vec::new()
                },
                local_pool: spec.local_pool.clone(),
            });
        }
        shares.settle(&mut snap.services, &mut snap.nat_endpoints);
        // (VIP, protocol) -> the service, or None once a second one shares it.
        let mut by_vip_proto: Map<Endpoint, Option<u32>> = map();
        for (si, spec) in services.iter().enumerate() {
            by_vip_proto
                .entry(Endpoint::new(&to_mapped(spec.vip), spec.proto, 0))
                .and_modify(|s| *s = None)
                .or_insert(Some(si as u32));
        }
        snap.by_vip_proto.extend(
            by_vip_proto
                .into_iter()
                .filter_map(|(k, s)| Some((k, s?)))
                .filter(|&(_, si)| {
                    services.get(si as usize).map(|s| s.hash) == Some(FlowHashFields::ThreeTuple)
                }),
        );
        snap.fast4 = fast4::Fast4::build(&snap);
        snap.fast6 = fast6::Fast6::build(&snap);
        Ok(snap)
    }

    /// The port and next hop to reach `dst`: on-link first, else the first port with a gateway
    /// of that family.
    pub fn route_for(&self, dst: &IpAddr) -> Option<(u16, IpAddr)> {
        route(&self.ports, dst).map(|r| (r.port, r.next_hop))
    }

    /// Port and MAC of the next hop towards `dst`, or the drop reason.
    #[inline]
    pub fn resolve(&self, dst: &IpAddr) -> Result<(u16, MacAddr), crate::counters::DropReason> {
        self.resolve_key(&to_mapped(*dst))
    }

    /// [`Snapshot::resolve`] for an address in flow-key form (the packet path's).
    #[inline]
    pub fn resolve_key(
        &self,
        dst: &[u8; 16],
    ) -> Result<(u16, MacAddr), crate::counters::DropReason> {
        self.port_lookups.resolve(dst, &self.neighbours)
    }

    /// Whether the next hop towards `dst` (flow-key form) is `dst` itself (on-link).
    #[inline]
    pub fn next_hop_is_itself(&self, dst: &[u8; 16]) -> bool {
        self.port_lookups.next_hop_is_itself(dst)
    }

    /// The service for a destination endpoint.
    #[inline]
    pub fn service(&self, dst: &[u8; 16], proto: u8, port: u16) -> Option<(u32, &Service)> {
        let &i = self.service_by_key.get(&Endpoint::new(dst, proto, port))?;
        self.services.get(i as usize).map(|s| (i, s))
    }

    /// The service a packet to `dst` (flow-key form) with protocol `proto` belongs to without
    /// its ports: the VIP's only service of that protocol, when it hashes on the 3-tuple.
    #[inline]
    pub fn service_without_ports(&self, dst: &[u8; 16], proto: u8) -> Option<(u32, &Service)> {
        let &i = self.by_vip_proto.get(&Endpoint::new(dst, proto, 0))?;
        self.services.get(i as usize).map(|s| (i, s))
    }

    /// Whether `addr` is a VIP of any service.
    #[inline]
    pub fn is_vip(&self, addr: &[u8; 16]) -> bool {
        self.vips.contains_key(&addr_key(addr))
    }

    /// Whether `addr` (flow-key form) is a full-NAT local address.
    #[inline]
    pub fn is_fnat_local(&self, addr: &[u8; 16]) -> bool {
        self.local_addrs.contains_key(&addr_key(addr))
    }

    /// Whether `addr` is one of our ports' own addresses.
    #[inline]
    pub fn is_local(&self, addr: &IpAddr) -> bool {
        self.is_local_key(&to_mapped(*addr))
    }

    /// [`Snapshot::is_local`] for an address in flow-key form.
    #[inline]
    pub fn is_local_key(&self, addr: &[u8; 16]) -> bool {
        self.port_lookups.is_own(addr)
    }

    /// Whether the IPv4 address `addr` is one of our ports' own addresses or the broadcast
    /// address of a port's subnet.
    #[inline]
    pub fn is_own_or_broadcast_v4(&self, addr: u32) -> bool {
        self.port_lookups.is_own_or_broadcast_v4(addr)
    }

    /// If `src` is a NAT real server endpoint: its service when it serves exactly one
    /// (`service: None` when several: ambiguous without a flow entry), and how the owner of
    /// its connections is found.
    #[inline]
    pub fn nat_endpoint(&self, src: &[u8; 16], proto: u8, port: u16) -> Option<NatEndpoint> {
        self.nat_endpoints
            .get(&Endpoint::new(src, proto, port))
            .copied()
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
        self.neighbours.get(&addr_key(&to_mapped(*addr))).copied()
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
