//! The JSON shapes of the read routes: services with their real servers, statistics, rates and
//! health (what `vipctl -L`, `--stats`, `--rate` and `health` print), and the worker counters.

use crate::backend_slots::RsIdentity;
use crate::config::validate::netmask_text;
use crate::config::{CheckKind, CheckSpec, ServiceKey};
use crate::health::CheckStatus;
use crate::stats::Rates;
use crate::view::{RealServerView, ServiceView, Shared, View};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use vipd_dataplane::backend_stats::BackendCounts;
use vipd_dataplane::counters::Counter;
use vipd_dataplane::snapshot::FwdMode;

/// ipvsadm's names of the forwarding methods.
pub fn forward_name(mode: FwdMode) -> &'static str {
    match mode {
        FwdMode::Nat => "Masq",
        FwdMode::Dr => "Route",
        FwdMode::Tunnel => "Tunnel",
        FwdMode::Fnat => "FullNat",
    }
}

/// The path of a service in the API: `tcp/10.0.0.1/80`.
pub fn service_path(key: &ServiceKey) -> String {
    format!("{}/{}/{}", key.proto.name(), key.vip, key.port)
}

fn counts_json(c: &BackendCounts) -> Value {
    json!({
        "conns": c.new_conns, "inpkts": c.in_packets, "outpkts": c.out_packets,
        "inbytes": c.in_bytes, "outbytes": c.out_bytes,
        "active_conns": c.active, "inactive_conns": c.inactive,
    })
}

fn rates_json(r: &Rates) -> Value {
    json!({
        "cps": r.conns, "inpps": r.in_packets, "outpps": r.out_packets,
        "inbps": r.in_bytes, "outbps": r.out_bytes,
    })
}

fn add_rates(a: &mut Rates, b: &Rates) {
    a.conns += b.conns;
    a.in_packets += b.in_packets;
    a.out_packets += b.out_packets;
    a.in_bytes += b.in_bytes;
    a.out_bytes += b.out_bytes;
}

fn health_json(rs: &RealServerView, status: Option<&CheckStatus>) -> Value {
    if rs.check.is_none() {
        return json!({"state": "unchecked"});
    }
    let state = if rs.up { "up" } else { "down" };
    match status {
        Some(s) => json!({
            "state": state, "last_outcome": s.last_outcome, "checks": s.checks,
            "failures": s.failures, "transitions": s.transitions, "streak": s.streak,
            "last_check_ms": s.last_check_ms, "last_transition_ms": s.last_transition_ms,
            "last_transition_reason": s.last_transition_reason,
            "local_faults": s.local_faults, "local_fault": s.local_fault, "held": s.held,
        }),
        None => json!({"state": state}),
    }
}

/// One service, with its real servers, as JSON.
pub fn service_json(
    shared: &Shared,
    view: &View,
    s: &ServiceView,
    health: &HashMap<RsIdentity, CheckStatus>,
) -> Value {
    let mut total = view.book.departed(&s.key);
    let mut total_rates = Rates::default();
    let rss: Vec<Value> = s
        .real_servers
        .iter()
        .map(|r| {
            let c = view.book.listed(&shared.backends, &r.id, r.slot);
            let rates = view.book.rates(&r.id);
            total += c;
            add_rates(&mut total_rates, &rates);
            json!({
                "address": SocketAddr::new(r.id.1, r.id.2).to_string(),
                "ip": r.id.1.to_string(), "port": r.id.2,
                "forward": forward_name(r.mode), "mode": r.mode.to_string(),
                "weight": r.weight, "sorry": r.sorry,
                "active_conns": c.active, "inactive_conns": c.inactive,
                "persistent_conns": c.persistent,
                "upper_threshold": r.limit.upper, "lower_threshold": r.limit.lower,
                "stats": counts_json(&c), "rates": rates_json(&rates),
                "health": health_json(r, health.get(&r.id)),
                "next_hop": r.next_hop.map(|(ip, _)| ip.to_string()),
                "next_hop_mac": r.next_hop.and_then(|(_, m)| m).map(|m| m.to_string()),
            })
        })
        .collect();
    json!({
        "path": service_path(&s.key),
        "proto": s.key.proto.name(), "vip": s.key.vip.to_string(), "port": s.key.port,
        "address": SocketAddr::new(s.key.vip, s.key.port).to_string(),
        "scheduler": s.scheduler, "schedulable": s.schedulable,
        "scheduler_flags": s.sched_flags.names(),
        "persistence": s.persistence.map(|p| json!({
            "timeout_s": p.timeout_s, "prefix_len": p.prefix_len,
            "netmask": netmask_text(&s.key.vip, p.prefix_len),
        })),
        "dead_flows": if s.drop_dead_flows { "drop" } else { "keep" },
        "hash": s.hash,
        "active_conns": total.active, "inactive_conns": total.inactive,
        "stats": counts_json(&total), "rates": rates_json(&total_rates),
        "real_servers": rss,
    })
}

/// Every service.
pub fn services_json(shared: &Shared, view: &View) -> Value {
    let health = shared
        .health
        .status
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let services: Vec<Value> = view
        .services
        .iter()
        .map(|s| service_json(shared, view, s, &health))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "generation": view.generation,
        "unsaved_changes": view.unsaved_changes,
        "flow_capacity": view.config.flows.capacity_per_worker * view.config.dataplane.worker_cores.len(),
        "timeouts": view.config.flows.timeouts,
        "services": services,
    })
}

/// Counters summed over workers, and per worker.
pub fn stats_json(shared: &Shared) -> Value {
    let workers = &shared.workers;
    let mut total = serde_json::Map::new();
    for &c in Counter::ALL {
        let sum: u64 = workers.iter().map(|w| w.get(c)).sum();
        total.insert(c.name().to_string(), json!(sum));
    }
    let per_worker: Vec<Value> = workers
        .iter()
        .map(|w| {
            let mut m = serde_json::Map::new();
            for &c in Counter::ALL {
                if w.get(c) != 0 {
                    m.insert(c.name().to_string(), json!(w.get(c)));
                }
            }
            m.insert("flows_active".into(), json!(w.flows_active()));
            m.insert("generation".into(), json!(w.generation()));
            Value::Object(m)
        })
        .collect();
    let drops: u64 = workers.iter().map(|w| w.total_drops()).sum();
    let flows: u64 = workers.iter().map(|w| w.flows_active()).sum();
    json!({
        "total": total, "drops": drops, "flows_active": flows, "workers": per_worker,
        "kernel": shared.kernel.to_json(),
    })
}

/// Every health check's state, and the box's side: its local faults by class and the guard's
/// held verdicts per service.
pub fn health_json_all(shared: &Shared, view: &View) -> Value {
    let health = shared
        .health
        .status
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in &view.services {
        for r in &s.real_servers {
            out.push(json!({
                "service": service_path(&s.key),
                "real_server": SocketAddr::new(r.id.1, r.id.2).to_string(),
                "health": health_json(r, health.get(&r.id)),
                "check": r.check.as_ref().map_or(Value::Null, check_json),
            }));
        }
    }
    let b = shared
        .health
        .summary
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let classes: serde_json::Map<String, Value> = b
        .local_faults
        .iter()
        .map(|(c, st)| (c.name().to_string(), json!(st)))
        .collect();
    let guard: Vec<Value> = b
        .services
        .iter()
        .map(|g| json!({"service": service_path(&g.key), "held": g.held, "held_total": g.held_total}))
        .collect();
    json!({
        "local_faults": {"failing_locally": b.failing_locally, "classes": classes},
        "guard": {"max_down_percent": b.max_down_percent, "services": guard},
        "real_servers": out,
    })
}

fn check_json(c: &CheckSpec) -> Value {
    let (kind, path, status, host) = match &c.kind {
        CheckKind::Tcp => ("tcp", None, None, None),
        CheckKind::Http { path, status, host } => {
            ("http", Some(path.clone()), Some(*status), host.clone())
        }
    };
    json!({
        "type": kind, "target": c.target.to_string(), "path": path, "status": status, "host": host,
        "interval_s": c.interval.as_secs_f64(), "timeout_s": c.timeout.as_secs_f64(),
        "rise": c.rise, "fall": c.fall,
    })
}
