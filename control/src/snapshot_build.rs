//! From the validated configuration, the real servers' health, their slots and the neighbour
//! table to a dataplane [`Snapshot`], plus the next hops the neighbour table must resolve.

use crate::backend_slots::RsIdentity;
use crate::config::{Config, Valid};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use vipd_dataplane::snapshot::{self, BackendSpec, PortInfo, ServiceSpec, Snapshot, SnapshotError};
use vipd_dataplane::wire::MacAddr;

/// Everything needed to publish: the snapshot and the next hops to resolve.
pub struct Applied {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Next hops (address, port) the neighbour table must resolve.
    pub wanted: Vec<(IpAddr, u16)>,
    /// Static neighbours (address, MAC, port).
    pub statics: Vec<(IpAddr, MacAddr, u16)>,
}

/// The ports (and their VLANs) with the NICs' MACs where the configuration sets none.
pub fn port_infos(valid: &Valid, nic_macs: &[MacAddr]) -> Vec<PortInfo> {
    valid
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortInfo {
            mac: if p.mac == MacAddr::ZERO {
                // A VLAN uses its port's MAC.
                let port = p.vlan.map_or(i, |v| usize::from(v.parent));
                nic_macs.get(port).copied().unwrap_or(MacAddr::ZERO)
            } else {
                p.mac
            },
            ..p.clone()
        })
        .collect()
}

/// What a snapshot is built from.
pub struct Inputs<'a> {
    /// The running configuration.
    pub config: &'a Config,
    /// Its validation.
    pub valid: &'a Valid,
    /// The slot of every real server (shape of `valid.services[i].real_servers`).
    pub slots: &'a [Vec<u32>],
    /// Real servers whose health checks failed.
    pub down: &'a HashSet<RsIdentity>,
    /// The NICs' MACs, by port.
    pub nic_macs: &'a [MacAddr],
    /// Resolved neighbours.
    pub resolved: &'a HashMap<IpAddr, MacAddr>,
    /// Generation of the new snapshot.
    pub generation: u64,
}

/// Build the snapshot. Errors are what the validator cannot see (a scheduler that cannot be
/// built); the message names the service.
pub fn build(i: &Inputs) -> Result<Applied, SnapshotError> {
    let specs: Vec<ServiceSpec> = i
        .valid
        .services
        .iter()
        .zip(i.slots)
        .map(|(s, slots)| ServiceSpec {
            vip: s.key.vip,
            proto: s.key.proto.number(),
            port: s.key.port,
            scheduler: s.scheduler,
            sched_flags: s.sched_flags,
            persistence: s.persistence,
            drop_dead_flows: s.drop_dead_flows,
            hash: s.hash,
            local_pool: s.local_pool.clone(),
            backends: s
                .real_servers
                .iter()
                .zip(slots)
                .map(|(r, &id)| BackendSpec {
                    id,
                    addr: r.ip,
                    port: r.port,
                    weight: r.weight,
                    mode: r.mode,
                    up: !i.down.contains(&(s.key, r.ip, r.port)),
                    sorry: r.sorry,
                    limit: r.limit,
                })
                .collect(),
        })
        .collect();
    let ports = port_infos(i.valid, i.nic_macs);
    let mut statics = Vec::new();
    let mut neighbours = i.resolved.clone();
    for n in &i.config.neighbours {
        // Validated: the MAC parses.
        let Ok(mac) = n.mac.parse::<MacAddr>() else {
            continue;
        };
        neighbours.insert(n.ip, mac);
        let port = snapshot::route(&ports, &n.ip)
            .filter(|r| r.on_link)
            .map_or(0, |r| r.port);
        statics.push((n.ip, mac, port));
    }
    let mut snapshot = Snapshot::build(
        i.generation,
        ports,
        &specs,
        &neighbours,
        i.config.flows.maglev_table_size,
    )?;
    // Workers adopt the timeouts with the snapshot, so a reload changes them too.
    snapshot.timeouts = i.config.flows.timeouts.to_timeouts();
    snapshot.sloppy_tcp = i.config.flows.sloppy_tcp;
    let mut wanted: Vec<(IpAddr, u16)> = Vec::new();
    let mut want = |ip: IpAddr, port: u16| {
        if !wanted.iter().any(|(w, _)| *w == ip) {
            wanted.push((ip, port));
        }
    };
    for b in snapshot.backends() {
        want(b.next_hop, b.egress_port);
    }
    for (p, port) in snapshot.ports.iter().enumerate() {
        if let Some(g) = port.gateway_v4 {
            want(IpAddr::V4(g), p as u16);
        }
        if let Some(g) = port.gateway_v6 {
            want(IpAddr::V6(g), p as u16);
        }
    }
    Ok(Applied {
        snapshot,
        wanted,
        statics,
    })
}
