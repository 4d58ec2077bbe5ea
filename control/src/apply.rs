//! From configuration + neighbour table to a dataplane [`Snapshot`]: stable real-server ids,
//! port info, and the next hops the neighbour table must resolve.

use crate::config::{Config, ConfigError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use vipd_dataplane::snapshot::{BackendSpec, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::MacAddr;

/// Identity of a real server inside a service, across reloads.
type RsIdentity = (IpAddr, u8, u16, IpAddr, u16);

/// Allocates the stable ids flow entries refer to: a real server that stays in the
/// configuration keeps its id across reloads, so its existing flows keep going; a removed one's
/// id is never handed out again, so its leftover flows are dropped and counted as
/// `drop_backend_gone` instead of silently moving to another real server.
#[derive(Debug, Default, Clone)]
pub struct BackendIds {
    ids: HashMap<RsIdentity, u32>,
    next: u32,
}

impl BackendIds {
    /// Ids for the services of `config`, reusing the ids of real servers seen before.
    pub fn assign(&mut self, services: &[crate::config::ValidService]) -> Vec<Vec<u32>> {
        let mut keep = HashMap::new();
        let out = services
            .iter()
            .map(|s| {
                s.real_servers
                    .iter()
                    .map(|&(ip, port, _, _)| {
                        let key = (s.vip, s.proto, s.port, ip, port);
                        let id = match self.ids.get(&key) {
                            Some(&id) => id,
                            None => {
                                // Never reuse an id: a stale flow entry must not silently
                                // switch to an unrelated real server.
                                let id = self.next;
                                self.next += 1;
                                id
                            }
                        };
                        keep.insert(key, id);
                        id
                    })
                    .collect()
            })
            .collect();
        self.ids = keep;
        out
    }
}

/// Port MACs as the NIC reports them (index = DPDK port order of the config).
pub fn port_infos(config: &Config, nic_macs: &[MacAddr]) -> Vec<PortInfo> {
    config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortInfo {
            mac: p
                .mac
                .as_deref()
                .and_then(|m| m.parse().ok())
                .or_else(|| nic_macs.get(i).copied())
                .unwrap_or(MacAddr::ZERO),
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            gateway_v4: p.gateway,
            gateway_v6: p.gateway6,
            mtu: p.mtu,
            tunnel_source4: p.tunnel_source4,
            tunnel_source6: p.tunnel_source6,
            kernel: false,
        })
        .collect()
}

/// Everything needed to publish: the snapshot and the next hops to resolve.
pub struct Applied {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Next hops (address, port) the neighbour table must resolve.
    pub wanted: Vec<(IpAddr, u16)>,
    /// Static neighbours (address, MAC, port).
    pub statics: Vec<(IpAddr, MacAddr, u16)>,
}

/// Build a snapshot for `config`.
pub fn build(
    config: &Config,
    path: &Path,
    ids: &mut BackendIds,
    nic_macs: &[MacAddr],
    resolved: &HashMap<IpAddr, MacAddr>,
    generation: u64,
) -> Result<Applied, ConfigError> {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: path.to_owned(),
        key,
        message,
    };
    let services = config.valid_services().map_err(|(k, m)| invalid(k, m))?;
    let all_ids = ids.assign(&services);
    let specs: Vec<ServiceSpec> = services
        .iter()
        .zip(&all_ids)
        .map(|(s, ids)| ServiceSpec {
            vip: s.vip,
            proto: s.proto,
            port: s.port,
            scheduler: s.scheduler,
            backends: s
                .real_servers
                .iter()
                .zip(ids)
                .map(|(&(addr, port, weight, mode), &id)| BackendSpec {
                    id,
                    addr,
                    port,
                    weight,
                    mode,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let ports = port_infos(config, nic_macs);
    let mut statics = Vec::new();
    let mut neighbours = resolved.clone();
    for (i, n) in config.neighbours.iter().enumerate() {
        let mac: MacAddr = n
            .mac
            .parse()
            .map_err(|e| invalid(format!("neighbours[{i}].mac"), e))?;
        neighbours.insert(n.ip, mac);
        let port = route_port(&ports, &n.ip).unwrap_or(0);
        statics.push((n.ip, mac, port));
    }
    let mut snapshot = Snapshot::build(
        generation,
        ports,
        &specs,
        &neighbours,
        config.flows.maglev_table_size,
    )
    .map_err(|e| invalid("services".into(), e.to_string()))?;
    // Workers adopt the timeouts with the snapshot, so a reload changes them too.
    snapshot.timeouts = config.flows.timeouts.to_timeouts();
    let mut wanted: Vec<(IpAddr, u16)> = Vec::new();
    let mut want = |ip: IpAddr, port: u16| {
        if !wanted.iter().any(|(w, _)| *w == ip) {
            wanted.push((ip, port));
        }
    };
    for b in snapshot.backends() {
        want(b.next_hop, b.egress_port);
    }
    for (i, p) in snapshot.ports.iter().enumerate() {
        if let Some(g) = p.gateway_v4 {
            want(IpAddr::V4(g), i as u16);
        }
        if let Some(g) = p.gateway_v6 {
            want(IpAddr::V6(g), i as u16);
        }
    }
    Ok(Applied {
        snapshot,
        wanted,
        statics,
    })
}

fn route_port(ports: &[PortInfo], ip: &IpAddr) -> Option<u16> {
    ports
        .iter()
        .position(|p| match ip {
            IpAddr::V4(a) => p.ipv4.is_some_and(|n| n.contains(a)),
            IpAddr::V6(a) => p.ipv6.is_some_and(|n| n.contains(a)),
        })
        .map(|i| i as u16)
}
