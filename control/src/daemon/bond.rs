//! A bonded port's members (`[ports.bond]`): their links, counters and 802.3ad state as the
//! control thread polls them once a second, the active-backup failover it drives, and the
//! members' part of the status.

use super::ports::RunningPort;
use crate::config::bond::BondMode;
use serde_json::{json, Value};
use vipd_dataplane::io::dpdk::{LacpMember, LacpState, PortStats, PortWatch};
use vipd_dataplane::wire::MacAddr;

/// A member of a bonded port: the bond configures and drives it; vipd only watches it.
pub struct Member {
    /// Its DPDK device name.
    pub name: String,
    /// Its link and counters.
    pub watch: PortWatch,
    /// Link state at the last poll.
    pub link_up: bool,
    /// Its counters at the last poll.
    pub stats: Option<PortStats>,
    /// An 802.3ad bond's view of the member at the last poll (None when the PMD has none: it
    /// keeps LACP state for the members it counts as active only).
    pub lacp: Option<LacpMember>,
}

impl Member {
    /// A member not polled yet.
    pub fn new(name: &str, watch: PortWatch) -> Member {
        Member {
            name: name.to_string(),
            watch,
            link_up: false,
            stats: None,
            lacp: None,
        }
    }

    /// The actor's LACP state, no bit set when the PMD has none: what `/metrics` reports.
    pub fn lacp_actor(&self) -> LacpState {
        self.lacp.map_or(LacpState(0), |l| l.actor)
    }
}

/// Poll a bonded port's members: link (logging changes), counters, LACP state (logging a
/// member's entry into and exit from the aggregation), then drive an active-backup failover.
/// Returns true when it switched the active member.
pub fn poll_members(p: &mut RunningPort) -> bool {
    for m in p.members.iter_mut() {
        m.stats = m.watch.stats().ok();
        if let Ok(link) = m.watch.link_status() {
            if link.up != m.link_up {
                m.link_up = link.up;
                if link.up {
                    tracing::info!("port {}: bond member {}: link up", p.name, m.name);
                } else {
                    tracing::warn!("port {}: bond member {}: link down", p.name, m.name);
                }
            }
        }
    }
    match p.bond_mode {
        Some(BondMode::ActiveBackup) => steer_active_backup(p),
        Some(BondMode::Lacp) => {
            poll_lacp(p);
            false
        }
        None => false,
    }
}

/// Read every member's 802.3ad state; log when one starts or stops carrying traffic.
fn poll_lacp(p: &mut RunningPort) {
    for m in p.members.iter_mut() {
        let now = p.port.lacp_member(m.watch.id()).ok();
        let was = m.lacp.is_some_and(|l| l.aggregated());
        let is = now.is_some_and(|l| l.aggregated());
        m.lacp = now;
        match (was, now) {
            (false, Some(l)) if is => tracing::info!(
                "port {}: bond member {}: LACP collecting and distributing (partner {} key {} port {})",
                p.name,
                m.name,
                MacAddr(l.partner_system),
                l.partner_key,
                l.partner_port
            ),
            (true, Some(l)) if !is => tracing::warn!(
                "port {}: bond member {}: out of the LACP aggregation (actor {}; partner {})",
                p.name,
                m.name,
                state_text(l.actor),
                state_text(l.partner)
            ),
            (true, None) => tracing::warn!(
                "port {}: bond member {}: out of the LACP aggregation (the bond has no LACP state for it)",
                p.name,
                m.name
            ),
            _ => {}
        }
    }
}

fn state_text(s: LacpState) -> String {
    let names: Vec<&str> = s.names().collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// Active-backup: when the member carrying the traffic loses its link, the first member (in
/// the configured order) whose link is up takes over, and keeps the traffic when the other
/// returns (a switch learns the bond's MAC on a port only from frames sent there; going back
/// unprompted would leave the switch sending to the member vipd no longer reads). The bonding
/// PMD switches by itself only on a member's link interrupt, and some PMDs (net_tap in DPDK
/// 22.11) raise none: vipd switches it from the links it polls. Returns true when it did.
fn steer_active_backup(p: &RunningPort) -> bool {
    let Some(want) = p.members.iter().find(|m| m.link_up) else {
        return false;
    };
    let carrying_up = |now: u16| p.members.iter().any(|m| m.watch.id() == now && m.link_up);
    match p.port.bond_primary() {
        Ok(now) if carrying_up(now) => false,
        Ok(now) => match p.port.set_bond_primary(want.watch.id()) {
            Ok(()) => {
                let was = p.members.iter().find(|m| m.watch.id() == now);
                tracing::warn!(
                    "port {}: bond: member {} carries the traffic (was {})",
                    p.name,
                    want.name,
                    was.map_or("none", |m| m.name.as_str())
                );
                true
            }
            Err(e) => {
                tracing::error!("port {}: bond: cannot switch to {}: {e}", p.name, want.name);
                false
            }
        },
        Err(e) => {
            tracing::error!("port {}: bond: {e}", p.name);
            false
        }
    }
}

/// The members of a port's status (`ports[].members`): link, counters, whether each carries
/// traffic (`active`: the primary in active-backup, distributing in 802.3ad) and, for
/// 802.3ad, its LACP state.
pub fn members_status(p: &RunningPort) -> Vec<Value> {
    let primary = match p.bond_mode {
        Some(BondMode::ActiveBackup) => p.port.bond_primary().ok(),
        _ => None,
    };
    p.members
        .iter()
        .map(|m| {
            let mut v = json!({
                "device": m.name, "link_up": m.link_up,
                "active": match p.bond_mode {
                    Some(BondMode::Lacp) => m.lacp_actor().has(LacpState::DISTRIBUTING),
                    _ => primary == Some(m.watch.id()),
                },
                "rx_packets": m.stats.map(|s| s.rx_packets),
                "tx_packets": m.stats.map(|s| s.tx_packets),
            });
            if p.bond_mode == Some(BondMode::Lacp) {
                v["lacp"] = m.lacp.map_or(Value::Null, |l| lacp_status(p, &l));
            }
            v
        })
        .collect()
}

fn lacp_status(p: &RunningPort, l: &LacpMember) -> Value {
    let aggregator = p
        .members
        .iter()
        .find(|o| o.watch.id() == l.aggregator)
        .map(|o| o.name.clone());
    json!({
        "selection": l.selection.as_str(),
        "aggregator": aggregator,
        "collecting": l.actor.has(LacpState::COLLECTING),
        "distributing": l.actor.has(LacpState::DISTRIBUTING),
        "actor_state": l.actor.names().collect::<Vec<_>>(),
        "actor_key": l.actor_key,
        "partner_state": l.partner.names().collect::<Vec<_>>(),
        "partner_system": MacAddr(l.partner_system).to_string(),
        "partner_key": l.partner_key,
        "partner_port": l.partner_port,
    })
}
