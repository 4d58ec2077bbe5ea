//! The [`View`] the control loop publishes for the API: services and real servers with their
//! slots and health, the status JSON (ports, neighbours), and the gauges for `/metrics`.

use super::bond::members_status;
use super::ports::RunningPort;
use super::watchdog::LivenessGauges;
use crate::config::bond::BondMode;
use crate::metrics::{ControlGauges, MemberGauges, PortGauges};
use crate::neighbours::{NeighbourState, NeighbourTable};
use crate::running::Running;
use crate::stats::StatsBook;
use crate::view::{RealServerView, ServiceView, View};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use vipd_dataplane::snapshot::Snapshot;

/// Counters the control loop keeps itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct ControlCounters {
    /// Frames the control thread sent (ARP requests, neighbour solicitations).
    pub tx: u64,
    /// Frames it received from the workers.
    pub rx: u64,
    /// Health transitions.
    pub health_transitions: u64,
    /// Reloads refused (SIGHUP, `vipctl reload`, `vipd --reload`).
    pub reload_failures: u64,
    /// State file writes that failed.
    pub state_write_failures: u64,
}

/// The services as listed.
pub fn services(running: &Running, snap: &Snapshot) -> Vec<ServiceView> {
    running
        .valid
        .services
        .iter()
        .zip(running.slot_ids())
        .enumerate()
        .map(|(i, (s, slots))| ServiceView {
            key: s.key,
            scheduler: s.scheduler.as_str(),
            schedulable: snap.services.get(i).is_some_and(|x| x.scheduler.is_some()),
            drop_dead_flows: s.drop_dead_flows,
            hash: s.hash.name(),
            sched_flags: s.sched_flags,
            persistence: s.persistence,
            real_servers: s
                .real_servers
                .iter()
                .zip(slots)
                .map(|(r, &slot)| {
                    let id = (s.key, r.ip, r.port);
                    RealServerView {
                        id,
                        slot,
                        weight: r.weight,
                        mode: r.mode,
                        sorry: r.sorry,
                        check: r.check.clone(),
                        up: running.is_up(&id),
                        next_hop: snap.backend(slot).map(|b| (b.next_hop, b.next_hop_mac)),
                        limit: r.limit,
                    }
                })
                .collect(),
        })
        .collect()
}

fn sock(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// What the view is made of.
pub struct Sources<'a> {
    /// The running configuration.
    pub running: &'a Running,
    /// The published snapshot.
    pub snap: &'a Snapshot,
    /// The neighbour table.
    pub neighbours: &'a NeighbourTable,
    /// The ports.
    pub ports: &'a [RunningPort],
    /// Number of workers.
    pub workers: usize,
    /// Statistics baselines and rates.
    pub book: &'a StatsBook,
    /// The control loop's counters.
    pub counters: ControlCounters,
    /// The workers' liveness.
    pub liveness: &'a LivenessGauges,
    /// Mbuf pool (in use, size).
    pub mempool: (u64, u64),
}

/// The whole view.
pub fn view(src: &Sources) -> View {
    let Sources {
        running,
        snap,
        neighbours,
        ports,
        workers,
        book,
        counters,
        liveness,
        mempool,
    } = *src;
    let services = services(running, snap);
    let status_services: Vec<Value> = services
        .iter()
        .map(|s| {
            let rs: Vec<Value> = s
                .real_servers
                .iter()
                .map(|r| {
                    json!({
                        "ip": r.id.1.to_string(), "port": r.id.2, "weight": r.weight,
                        "mode": r.mode.to_string(), "sorry": r.sorry,
                        "health": if r.check.is_none() { "unchecked" } else if r.up { "up" } else { "down" },
                        "next_hop": r.next_hop.map(|(ip, _)| ip.to_string()),
                        "next_hop_mac": r.next_hop.and_then(|(_, m)| m).map(|m| m.to_string()),
                    })
                })
                .collect();
            json!({
                "vip": s.key.vip.to_string(), "proto": s.key.proto.name(), "port": s.key.port,
                "scheduler": if s.schedulable { s.scheduler } else { "none (no real server can take flows)" },
                "real_servers": rs,
            })
        })
        .collect();
    let neighbour_list: Vec<Value> = neighbours
        .entries()
        .map(|(ip, n)| {
            json!({
                "ip": ip.to_string(), "mac": n.mac.map(|m| m.to_string()),
                "state": format!("{:?}", n.state).to_lowercase(), "port": n.port,
                "unanswered_requests": n.unanswered,
            })
        })
        .collect();
    let port_list: Vec<Value> = ports
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "device": p.device, "driver": p.port.driver(), "mac": p.mac.to_string(),
                "link_up": p.link_up, "queues": p.port.queues(), "rss": p.port.rss_enabled(),
                "members": members_status(p),
            })
        })
        .collect();
    let (live, retired, capacity) = running.slots().usage();
    let status = json!({
        "generation": snap.generation,
        "config": running.path.display().to_string(),
        "unsaved_changes": running.unsaved_changes,
        "workers": workers,
        "backend_slots": {"live": live, "retired": retired, "capacity": capacity},
        "ports": port_list,
        "services": status_services,
        "neighbours": neighbour_list,
    });
    let count =
        |st: NeighbourState| neighbours.entries().filter(|(_, n)| n.state == st).count() as u64;
    let gauges = ControlGauges {
        snapshot_generation: snap.generation,
        neighbours: vec![
            ("static", count(NeighbourState::Static)),
            ("incomplete", count(NeighbourState::Incomplete)),
            ("reachable", count(NeighbourState::Reachable)),
        ],
        backends: services
            .iter()
            .flat_map(|s| {
                let service = format!("{}/{}", sock(s.key.vip, s.key.port), s.key.proto.name());
                s.real_servers.iter().map(move |r| {
                    (
                        service.clone(),
                        sock(r.id.1, r.id.2),
                        r.weight,
                        r.next_hop.is_some_and(|(_, m)| m.is_some()),
                    )
                })
            })
            .collect(),
        ports: ports
            .iter()
            .map(|p| PortGauges {
                name: p.name.clone(),
                link_up: p.link_up,
                stats: p.stats,
                members: p
                    .members
                    .iter()
                    .map(|m| MemberGauges {
                        name: m.name.clone(),
                        link_up: m.link_up,
                        stats: m.stats,
                        lacp: (p.bond_mode == Some(BondMode::Lacp)).then(|| m.lacp_actor()),
                    })
                    .collect(),
                announced: (p.gratuitous_arp_sent, p.unsolicited_na_sent),
            })
            .collect(),
        mempool,
        flow_capacity: (running.config.flows.capacity_per_worker
            + running.config.flows.v6_capacity()) as u64,
        control_tx: counters.tx,
        control_rx: counters.rx,
        health_transitions: counters.health_transitions,
        reload_failures: counters.reload_failures,
        state_write_failures: counters.state_write_failures,
        worker_stalled: liveness.stalled.clone(),
        worker_stalls: liveness.stalls.clone(),
    };
    View {
        generation: snap.generation,
        config: running.config.clone(),
        config_path: running.path.display().to_string(),
        unsaved_changes: running.unsaved_changes,
        services,
        status,
        gauges,
        book: book.clone(),
    }
}
