//! Which VIPs this box should announce, and why (pure: decided from the snapshot the workers
//! forward by, the health checks' state and the box's own state).
//!
//! A VIP is announced while vipd forwards (every worker runs a snapshot and none has stalled),
//! the box is neither drained nor stopping, and at least one real server of one of the VIP's services can take
//! its traffic: up by its health checks and with its next hop resolved. A drained real server
//! (weight 0) still counts, since its established connections must keep reaching this box.
//!
//! A VIP that is not announced (a box starting, or back from an outage that took its real
//! servers down) is announced only once its real servers have settled: each checked one's
//! state agrees with its last check (the checker starts every real server up, unchecked; after
//! an outage they come back one check at a time) and each one up has its next hop resolved.
//! Until then this box's Maglev table would differ from the other boxes', and the connections
//! the router moves here would reach other real servers. A VIP held this way for too long
//! (a real server that keeps flapping) is announced all the same. Once announced, a VIP follows
//! the verdicts (rise/fall) like the dataplane, and is withdrawn when no real server is left.

use crate::backend_slots::RsIdentity;
use crate::config::{Proto, ServiceKey};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use vipd_dataplane::snapshot::Snapshot;

/// What the box is doing, besides forwarding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoxState {
    /// Every worker forwards by a snapshot.
    pub forwarding: bool,
    /// The operator's maintenance switch (`vipctl drain --box`).
    pub drained: bool,
    /// vipd is stopping (SIGTERM/SIGINT).
    pub stopping: bool,
    /// A worker has run no loop iteration for over a second ([`crate::liveness`]): what
    /// its queues receive is lost, so the box must not draw traffic.
    pub stalled: bool,
}

/// What the decision needs besides the snapshot.
pub struct Checks<'a> {
    /// Real servers whose health check has not settled: never run yet, or their last check
    /// disagrees with their state (on the way up or down).
    pub unsettled: &'a HashSet<RsIdentity>,
    /// VIPs announced now.
    pub announced: &'a HashSet<IpAddr>,
    /// VIPs held for their real servers to settle for too long: announced all the same.
    pub overdue: &'a HashSet<IpAddr>,
}

/// The decision for one VIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipDecision {
    /// The VIP.
    pub vip: IpAddr,
    /// Announce it.
    pub announce: bool,
    /// Why (for logs and the API).
    pub reason: String,
    /// Real servers that can take its traffic.
    pub ready: usize,
    /// Real servers of its services.
    pub total: usize,
    /// It could be announced but waits for its real servers to settle.
    pub waiting: bool,
}

#[derive(Default)]
struct Count {
    total: usize,
    up: usize,
    /// Up with the next hop resolved.
    ready: usize,
    /// Not settled (check, or next hop of one up).
    pending: usize,
}

/// The decision for every VIP of `snap`, in address order.
pub fn decide(snap: &Snapshot, state: BoxState, checks: &Checks) -> Vec<VipDecision> {
    let mut per_vip: BTreeMap<IpAddr, Count> = BTreeMap::new();
    for s in &snap.services {
        let c = per_vip.entry(s.vip).or_default();
        let Some(proto) = Proto::from_number(s.proto) else {
            continue;
        };
        let key = ServiceKey {
            vip: s.vip,
            proto,
            port: s.port,
        };
        for b in s.backends.iter().filter_map(|&id| snap.backend(id)) {
            c.total += 1;
            let id: RsIdentity = (key, b.addr, b.port);
            let settled = !checks.unsettled.contains(&id);
            if !b.up {
                c.pending += usize::from(!settled);
                continue;
            }
            c.up += 1;
            if b.next_hop_mac.is_some() {
                c.ready += 1;
                c.pending += usize::from(!settled);
            } else {
                c.pending += 1;
            }
        }
    }
    per_vip
        .into_iter()
        .map(|(vip, c)| {
            let running = !state.stopping && !state.drained && state.forwarding && !state.stalled;
            let held =
                !checks.announced.contains(&vip) && c.pending > 0 && !checks.overdue.contains(&vip);
            let reason = if state.stopping {
                "vipd is stopping".to_string()
            } else if state.drained {
                "box drained (vipctl drain --box)".to_string()
            } else if state.stalled {
                "a worker stalled (no loop iteration for over 1 s)".to_string()
            } else if !state.forwarding {
                "workers not forwarding yet".to_string()
            } else if c.total == 0 {
                "no real server".to_string()
            } else if c.up == 0 {
                format!("no real server up ({} down)", c.total)
            } else if c.ready == 0 {
                format!("next hop of its {} real server(s) up not resolved", c.up)
            } else if held {
                format!(
                    "waiting for {} of {} real server(s) to settle (health check or next hop)",
                    c.pending, c.total
                )
            } else {
                format!("{} of {} real server(s) up", c.ready, c.total)
            };
            let ready = running && c.ready > 0;
            VipDecision {
                vip,
                announce: ready && !held,
                reason,
                ready: c.ready,
                total: c.total,
                waiting: ready && held,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use vipd_dataplane::sched::SchedulerKind;
    use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec};
    use vipd_dataplane::wire::MacAddr;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    fn snap(rs: &[(&str, bool)], resolved: bool) -> Snapshot {
        let port = PortInfo {
            ipv4: Some("10.0.0.10/24".parse().unwrap()),
            ..PortInfo::default()
        };
        let spec = |vip: &str, id0: u32| ServiceSpec {
            vip: vip.parse().unwrap(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Maglev,
            drop_dead_flows: true,
            hash: Default::default(),
            local_pool: Default::default(),
            sched_flags: Default::default(),
            persistence: None,
            backends: rs
                .iter()
                .enumerate()
                .map(|(i, &(ip, up))| BackendSpec {
                    id: id0 + i as u32,
                    addr: ip.parse().unwrap(),
                    port: 80,
                    weight: 1,
                    mode: FwdMode::Dr,
                    up,
                    sorry: false,
                    limit: Default::default(),
                })
                .collect(),
        };
        let mut neighbours = HashMap::new();
        if resolved {
            for (ip, _) in rs {
                neighbours.insert(ip.parse().unwrap(), MAC);
            }
        }
        let services = [spec("10.0.100.2", 0), spec("10.0.100.1", 10)];
        Snapshot::build(1, vec![port], &services, &neighbours, 251).unwrap()
    }

    const RUNNING: BoxState = BoxState {
        forwarding: true,
        drained: false,
        stopping: false,
        stalled: false,
    };

    fn id(vip: &str, ip: &str) -> RsIdentity {
        let key = ServiceKey {
            vip: vip.parse().unwrap(),
            proto: Proto::Tcp,
            port: 80,
        };
        (key, ip.parse().unwrap(), 80)
    }

    fn decide_plain(s: &Snapshot, state: BoxState) -> Vec<VipDecision> {
        decide(
            s,
            state,
            &Checks {
                unsettled: &HashSet::new(),
                announced: &HashSet::new(),
                overdue: &HashSet::new(),
            },
        )
    }

    #[test]
    fn announced_while_a_real_server_is_up_in_address_order() {
        let d = decide_plain(
            &snap(&[("10.0.0.21", false), ("10.0.0.22", true)], true),
            RUNNING,
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].vip.to_string(), "10.0.100.1");
        assert!(d.iter().all(|v| v.announce), "{d:?}");
        assert_eq!(d[0].reason, "1 of 2 real server(s) up");
    }

    #[test]
    fn withdrawn_when_none_is_up_or_resolved() {
        let d = decide_plain(&snap(&[("10.0.0.21", false)], true), RUNNING);
        assert!(!d[0].announce);
        assert_eq!(d[0].reason, "no real server up (1 down)");
        let d = decide_plain(&snap(&[("10.0.0.21", true)], false), RUNNING);
        assert!(!d[0].announce);
        assert!(d[0].reason.contains("not resolved"), "{}", d[0].reason);
    }

    #[test]
    fn box_state_withdraws_everything() {
        let s = snap(&[("10.0.0.21", true)], true);
        for (state, why) in [
            (
                BoxState {
                    drained: true,
                    ..RUNNING
                },
                "box drained",
            ),
            (
                BoxState {
                    stopping: true,
                    drained: true,
                    ..RUNNING
                },
                "vipd is stopping",
            ),
            (
                BoxState {
                    forwarding: false,
                    ..RUNNING
                },
                "workers not forwarding",
            ),
            (
                BoxState {
                    stalled: true,
                    ..RUNNING
                },
                "a worker stalled",
            ),
        ] {
            let d = decide_plain(&s, state);
            assert!(
                d.iter().all(|v| !v.announce && v.reason.starts_with(why)),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_new_announcement_waits_for_the_real_servers_to_settle() {
        let s = snap(&[("10.0.0.21", true), ("10.0.0.22", true)], true);
        let vip1: IpAddr = "10.0.100.1".parse().unwrap();
        let unsettled: HashSet<RsIdentity> = [id("10.0.100.1", "10.0.0.22")].into();
        let none = HashSet::new();
        let run = |announced: &HashSet<IpAddr>, overdue: &HashSet<IpAddr>| {
            decide(
                &s,
                RUNNING,
                &Checks {
                    unsettled: &unsettled,
                    announced,
                    overdue,
                },
            )
        };
        // 10.0.100.1 has a real server whose check has not settled: held; the other goes.
        let d = run(&none, &none);
        assert!(!d[0].announce && d[0].waiting, "{d:?}");
        assert_eq!(
            d[0].reason,
            "waiting for 1 of 2 real server(s) to settle (health check or next hop)"
        );
        assert!(d[1].announce && !d[1].waiting, "{d:?}");
        // Announced already: it stays (the verdicts rule from here on).
        let d = run(&[vip1].into(), &none);
        assert!(
            d[0].announce && d[0].reason == "2 of 2 real server(s) up",
            "{d:?}"
        );
        // Held too long: announced all the same.
        let d = run(&none, &[vip1].into());
        assert!(d[0].announce, "{d:?}");
        // A real server that is down and settled holds nothing.
        let s = snap(&[("10.0.0.21", true), ("10.0.0.22", false)], true);
        assert!(decide_plain(&s, RUNNING).iter().all(|d| d.announce));
    }
}
