//! The mass-transition guard: when more of a service's checked real servers go down within one
//! check interval than `health.max_down_percent` allows, the box is more likely at fault than
//! the servers (a broken route or interface that only shows as timeouts, a firewall rule on
//! the box, a saturated kernel), so the further down verdicts are held: those real servers
//! stay up in the dataplane, their flows keep going, and an alert series counts them. A held
//! verdict ends when the real server's checks pass again (nothing changed), or when the
//! operator releases it (`vipctl health --release`: it is applied then).
//!
//! At least one real server per service may go down per interval whatever the percentage, so
//! a service of one or two real servers still fails over. Pure: the checker thread feeds it.

use super::Target;
use crate::backend_slots::RsIdentity;
use crate::config::ServiceKey;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A down verdict held by the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Why the checks failed (the verdict's reason).
    pub reason: String,
    /// When it was held (Unix milliseconds).
    pub since_ms: u64,
}

/// What to do with a down verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Apply it: the real server goes down.
    Apply,
    /// Hold it: the real server stays up, the alert series count it.
    Hold,
}

#[derive(Debug, Default)]
struct ServiceState {
    /// Real servers of the service with a health check.
    checked: usize,
    /// The longest check interval among them: the guard's window.
    window: Duration,
    /// When each down verdict applied within the window was applied.
    recent: VecDeque<Instant>,
    /// Down verdicts held since start.
    held_total: u64,
}

/// The guard of every service.
#[derive(Debug)]
pub struct Guard {
    max_down_percent: u32,
    services: BTreeMap<ServiceKey, ServiceState>,
    held: HashMap<RsIdentity, Held>,
}

impl Guard {
    /// A guard allowing `max_down_percent` % of a service's checked real servers down per
    /// interval (100: no guard).
    pub fn new(max_down_percent: u32) -> Self {
        Guard {
            max_down_percent,
            services: BTreeMap::new(),
            held: HashMap::new(),
        }
    }

    /// The percentage in force.
    pub fn max_down_percent(&self) -> u32 {
        self.max_down_percent
    }

    /// A new percentage (reload).
    pub fn set_max_down_percent(&mut self, pct: u32) {
        self.max_down_percent = pct;
    }

    /// The checks now configured. `restarted` are the real servers whose check starts afresh
    /// (new, changed): their held verdicts are void, their checks begin from the state the
    /// control plane holds (up, for a held one).
    pub fn set_targets(&mut self, targets: &[Target], restarted: impl Fn(&RsIdentity) -> bool) {
        let mut counts: BTreeMap<ServiceKey, (usize, Duration)> = BTreeMap::new();
        for t in targets {
            let e = counts.entry(t.id.0).or_default();
            e.0 += 1;
            e.1 = e.1.max(t.spec.interval);
        }
        self.services.retain(|k, _| counts.contains_key(k));
        for (key, (checked, window)) in counts {
            let s = self.services.entry(key).or_default();
            s.checked = checked;
            s.window = window;
        }
        let live: std::collections::HashSet<RsIdentity> = targets.iter().map(|t| t.id).collect();
        self.held
            .retain(|id, _| live.contains(id) && !restarted(id));
    }

    /// A down verdict for `id` at `now`: apply it or hold it.
    pub fn on_down(&mut self, id: RsIdentity, reason: &str, now: Instant, now_ms: u64) -> Decision {
        if self.max_down_percent >= 100 {
            return Decision::Apply;
        }
        let pct = self.max_down_percent as usize;
        let Some(s) = self.services.get_mut(&id.0) else {
            return Decision::Apply;
        };
        // Most down verdicts applied per window.
        let allowed = (s.checked * pct / 100).max(1);
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= s.window)
        {
            s.recent.pop_front();
        }
        if s.recent.len() < allowed {
            s.recent.push_back(now);
            return Decision::Apply;
        }
        s.held_total += 1;
        self.held.insert(
            id,
            Held {
                reason: reason.to_string(),
                since_ms: now_ms,
            },
        );
        Decision::Hold
    }

    /// An up verdict for `id`: true when it ends a held verdict (the real server never went
    /// down, so there is nothing to apply).
    pub fn on_up(&mut self, id: &RsIdentity) -> bool {
        self.held.remove(id).is_some()
    }

    /// Release the held verdicts (of one service, or all): the real servers to take down now,
    /// with their reasons. Applied by the operator's word, they do not count in the window.
    pub fn release(&mut self, service: Option<ServiceKey>) -> Vec<(RsIdentity, Held)> {
        let ids: Vec<RsIdentity> = self
            .held
            .keys()
            .filter(|id| service.is_none_or(|k| id.0 == k))
            .copied()
            .collect();
        let mut out: Vec<(RsIdentity, Held)> = ids
            .into_iter()
            .filter_map(|id| self.held.remove(&id).map(|h| (id, h)))
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// The held verdict of `id`, if any.
    pub fn held(&self, id: &RsIdentity) -> Option<&Held> {
        self.held.get(id)
    }

    /// Every held verdict.
    pub fn all_held(&self) -> impl Iterator<Item = (&RsIdentity, &Held)> {
        self.held.iter()
    }

    /// Per service: (real servers held now, verdicts held since start).
    pub fn per_service(&self) -> Vec<(ServiceKey, usize, u64)> {
        self.services
            .iter()
            .map(|(k, s)| {
                let now = self.held.keys().filter(|id| id.0 == *k).count();
                (*k, now, s.held_total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CheckKind, CheckSpec, Proto};

    fn key(port: u16) -> ServiceKey {
        ServiceKey {
            vip: "10.0.100.1".parse().unwrap(),
            proto: Proto::Tcp,
            port,
        }
    }

    fn target(port: u16, n: u8) -> Target {
        let ip = format!("10.0.0.{n}").parse().unwrap();
        Target {
            id: (key(port), ip, 8080),
            spec: CheckSpec {
                kind: CheckKind::Tcp,
                target: std::net::SocketAddr::new(ip, 8080),
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 3,
            },
            up: true,
            alpha: false,
        }
    }

    fn guard(pct: u32, services: &[(u16, u8)]) -> (Guard, Vec<Target>) {
        let targets: Vec<Target> = services
            .iter()
            .flat_map(|&(port, n)| (1..=n).map(move |i| target(port, i)))
            .collect();
        let mut g = Guard::new(pct);
        g.set_targets(&targets, |_| false);
        (g, targets)
    }

    #[test]
    fn half_of_a_service_may_go_down_within_an_interval_the_rest_is_held() {
        let (mut g, t) = guard(50, &[(80, 4), (81, 4)]);
        let t0 = Instant::now();
        let d = |g: &mut Guard, i: usize, ms: u64| {
            g.on_down(
                t[i].id,
                "timeout after 1s",
                t0 + Duration::from_millis(ms),
                ms,
            )
        };
        assert_eq!(d(&mut g, 0, 0), Decision::Apply);
        assert_eq!(d(&mut g, 1, 300), Decision::Apply);
        assert_eq!(d(&mut g, 2, 600), Decision::Hold);
        assert_eq!(d(&mut g, 3, 1900), Decision::Hold);
        // Another service has its own budget.
        assert_eq!(d(&mut g, 4, 1900), Decision::Apply);
        assert_eq!(g.per_service(), vec![(key(80), 2, 2), (key(81), 0, 0)]);
        assert_eq!(g.held(&t[2].id).map(|h| h.since_ms), Some(600));
        // One interval after the first two, the window is free again.
        let mut g2 = Guard::new(50);
        g2.set_targets(&t, |_| false);
        assert_eq!(g2.on_down(t[0].id, "x", t0, 0), Decision::Apply);
        assert_eq!(g2.on_down(t[1].id, "x", t0, 0), Decision::Apply);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(g2.on_down(t[2].id, "x", later, 2000), Decision::Apply);
    }

    #[test]
    fn one_per_interval_is_always_allowed_and_100_turns_it_off() {
        let (mut g, t) = guard(50, &[(80, 1)]);
        let now = Instant::now();
        assert_eq!(g.on_down(t[0].id, "x", now, 0), Decision::Apply);
        let (mut g, t) = guard(50, &[(80, 3)]);
        assert_eq!(g.on_down(t[0].id, "x", now, 0), Decision::Apply);
        assert_eq!(g.on_down(t[1].id, "x", now, 0), Decision::Hold);
        let (mut g, t) = guard(100, &[(80, 3)]);
        for x in &t {
            assert_eq!(g.on_down(x.id, "x", now, 0), Decision::Apply);
        }
    }

    #[test]
    fn a_held_verdict_ends_by_recovery_release_or_a_restarted_check() {
        let (mut g, t) = guard(25, &[(80, 4), (81, 2)]);
        let now = Instant::now();
        assert_eq!(g.on_down(t[0].id, "a", now, 0), Decision::Apply);
        assert_eq!(g.on_down(t[1].id, "b", now, 1), Decision::Hold);
        assert_eq!(g.on_down(t[2].id, "c", now, 2), Decision::Hold);
        assert_eq!(g.on_down(t[3].id, "d", now, 3), Decision::Hold);
        assert_eq!(g.on_down(t[4].id, "e", now, 4), Decision::Apply);
        assert_eq!(g.on_down(t[5].id, "f", now, 5), Decision::Hold);
        assert!(g.on_up(&t[1].id), "recovery ends the hold");
        assert!(!g.on_up(&t[1].id));
        let released = g.release(Some(key(81)));
        assert_eq!(released.len(), 1);
        assert_eq!(
            (released[0].0, released[0].1.reason.as_str()),
            (t[5].id, "f")
        );
        // t[2]'s check changed: its hold is void; t[3] stays held.
        g.set_targets(&t, |id| *id == t[2].id);
        assert!(g.held(&t[2].id).is_none() && g.held(&t[3].id).is_some());
        let all = g.release(None);
        assert_eq!(
            all.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![t[3].id]
        );
        assert_eq!(g.all_held().count(), 0);
    }
}
