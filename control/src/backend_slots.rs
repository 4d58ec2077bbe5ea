//! Backend slots: the compact ids flow entries and per-real-server statistics are indexed by.
//!
//! A real server keeps its slot as long as it stays configured (its flows keep going across
//! reloads and API changes). A removed real server's slot is *retired*: its leftover flows find
//! no backend in the snapshot and are dropped (`drop_backend_gone`), or expire. The slot becomes
//! free again only when every worker has adopted a snapshot without it *and* no flow entry on
//! any worker refers to it (its active + inactive connections are zero), so a reused slot can
//! never send an old flow to a new real server, and the slot space (the per-worker statistics
//! arrays) does not grow with churn. Re-adding a real server whose slot is still retired gives
//! it the same slot back, flows included.

use crate::config::{ServiceKey, ValidService};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// A real server's identity: its service and its address and port.
pub type RsIdentity = (ServiceKey, IpAddr, u16);

#[derive(Debug, Clone)]
struct Retired {
    identity: RsIdentity,
    slot: u32,
    /// The first snapshot generation without it.
    since: u64,
}

/// The slot allocator. Cloned before a change is tried, so a refused change leaves it as it was.
#[derive(Debug, Clone)]
pub struct BackendSlots {
    capacity: u32,
    live: HashMap<RsIdentity, u32>,
    retired: Vec<Retired>,
    /// Slots no flow refers to, oldest first (reuse is delayed as long as possible).
    free: VecDeque<u32>,
    /// Slots `next..capacity` were never used.
    next: u32,
}

/// Why slots could not be assigned (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Every slot is live or retired.
    #[error("no backend slot left for {real_server} in {service} (dataplane.max_real_servers = {capacity}; slots of removed real servers come back once their flows are gone)")]
    Exhausted {
        /// The real server that found none.
        real_server: SocketAddr,
        /// Its service.
        service: ServiceKey,
        /// `dataplane.max_real_servers`.
        capacity: u32,
    },
}

/// A slot that became free: what was in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    /// Who had it.
    pub identity: RsIdentity,
    /// The slot.
    pub slot: u32,
}

impl BackendSlots {
    /// An allocator of slots `0..capacity`.
    pub fn new(capacity: u32) -> Self {
        BackendSlots {
            capacity,
            live: HashMap::new(),
            retired: Vec::new(),
            free: VecDeque::new(),
            next: 0,
        }
    }

    /// The slot of every real server of `services` (same shape), keeping the slots of real
    /// servers seen before; real servers that are gone are retired as of `generation` (the
    /// snapshot about to be published). Fails, changing nothing, when the slots run out.
    pub fn assign(
        &mut self,
        services: &[ValidService],
        generation: u64,
    ) -> Result<Vec<Vec<u32>>, SlotError> {
        let mut trial = self.clone();
        let mut keep: HashMap<RsIdentity, u32> = HashMap::new();
        let mut out = Vec::with_capacity(services.len());
        for s in services {
            let mut ids = Vec::with_capacity(s.real_servers.len());
            for r in &s.real_servers {
                let identity = (s.key, r.ip, r.port);
                let slot = match trial.live.get(&identity) {
                    Some(&slot) => slot,
                    None => trial.take(&identity).ok_or(SlotError::Exhausted {
                        real_server: SocketAddr::new(r.ip, r.port),
                        service: s.key,
                        capacity: self.capacity,
                    })?,
                };
                keep.insert(identity, slot);
                ids.push(slot);
            }
            out.push(ids);
        }
        let gone: Vec<(RsIdentity, u32)> = trial
            .live
            .iter()
            .filter(|(id, _)| !keep.contains_key(*id))
            .map(|(id, &slot)| (*id, slot))
            .collect();
        for (identity, slot) in gone {
            trial.retired.push(Retired {
                identity,
                slot,
                since: generation,
            });
        }
        trial.live = keep;
        *self = trial;
        Ok(out)
    }

    /// A slot for a real server not live: its retired slot, a free one, or a new one.
    fn take(&mut self, identity: &RsIdentity) -> Option<u32> {
        if let Some(i) = self.retired.iter().position(|r| &r.identity == identity) {
            return Some(self.retired.swap_remove(i).slot);
        }
        if let Some(slot) = self.free.pop_front() {
            return Some(slot);
        }
        (self.next < self.capacity).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Free the retired slots that every worker has moved past (`oldest_generation`: the
    /// oldest snapshot generation any worker still forwards by) and that no flow refers to
    /// (`connections(slot)` summed over workers is 0). Returns what was freed.
    pub fn reclaim(
        &mut self,
        oldest_generation: u64,
        connections: impl Fn(u32) -> u64,
    ) -> Vec<Reclaimed> {
        let mut out = Vec::new();
        self.retired.retain(|r| {
            let done = oldest_generation >= r.since && connections(r.slot) == 0;
            if done {
                out.push(Reclaimed {
                    identity: r.identity,
                    slot: r.slot,
                });
            }
            !done
        });
        for r in &out {
            self.free.push_back(r.slot);
        }
        out
    }

    /// The live slot of a real server.
    pub fn slot_of(&self, identity: &RsIdentity) -> Option<u32> {
        self.live.get(identity).copied()
    }

    /// Slots in use by live real servers, retired ones, and in all.
    pub fn usage(&self) -> (usize, usize, u32) {
        (self.live.len(), self.retired.len(), self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Proto, ValidRealServer};
    use vipd_dataplane::sched::SchedulerKind;
    use vipd_dataplane::snapshot::FwdMode;

    fn service(port: u16, rs: &[u8]) -> ValidService {
        ValidService {
            key: ServiceKey {
                vip: "10.0.100.1".parse().unwrap(),
                proto: Proto::Tcp,
                port,
            },
            scheduler: SchedulerKind::Maglev,
            sched_flags: Default::default(),
            persistence: None,
            drop_dead_flows: true,
            alpha: false,
            hash: Default::default(),
            local_pool: Default::default(),
            real_servers: rs
                .iter()
                .map(|&i| ValidRealServer {
                    ip: IpAddr::from([10, 0, 0, i]),
                    port: 80,
                    weight: 1,
                    mode: FwdMode::Nat,
                    sorry: false,
                    check: None,
                    egress_port: 0,
                    limit: Default::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn slots_stay_across_changes_and_come_back_only_when_unused() {
        let mut s = BackendSlots::new(4);
        assert_eq!(
            s.assign(&[service(80, &[1, 2, 3])], 1).unwrap(),
            vec![vec![0, 1, 2]]
        );
        // Remove rs 2 at generation 2: its slot is retired, not reused for rs 4.
        assert_eq!(
            s.assign(&[service(80, &[1, 3, 4])], 2).unwrap(),
            vec![vec![0, 2, 3]]
        );
        assert_eq!(s.usage(), (3, 1, 4));
        // Out of slots while slot 1 is retired; nothing changes on failure.
        let before = s.clone().assign(&[service(80, &[1, 3, 4])], 3).unwrap();
        let e = s.assign(&[service(80, &[1, 3, 4, 5])], 3).unwrap_err();
        assert!(matches!(e, SlotError::Exhausted { capacity: 4, .. }), "{e}");
        assert!(
            e.to_string().starts_with("no backend slot left for "),
            "{e}"
        );
        assert_eq!(
            s.clone().assign(&[service(80, &[1, 3, 4])], 3).unwrap(),
            before
        );
        // A worker still on generation 1, or a flow still on slot 1: not reclaimed.
        assert!(s.reclaim(1, |_| 0).is_empty());
        assert!(s.reclaim(2, |slot| u64::from(slot == 1)).is_empty());
        let freed = s.reclaim(2, |_| 0);
        assert_eq!(freed.len(), 1);
        assert_eq!(freed[0].slot, 1);
        assert_eq!(
            s.assign(&[service(80, &[1, 3, 4, 5])], 4).unwrap(),
            vec![vec![0, 2, 3, 1]]
        );
    }

    #[test]
    fn a_retired_real_server_that_comes_back_gets_its_slot_and_flows_back() {
        let mut s = BackendSlots::new(8);
        s.assign(&[service(80, &[1, 2])], 1).unwrap();
        s.assign(&[service(80, &[1])], 2).unwrap();
        assert_eq!(
            s.assign(&[service(80, &[1, 2])], 3).unwrap(),
            vec![vec![0, 1]]
        );
        assert_eq!(s.usage(), (2, 0, 8));
        // The same address in another service is another real server.
        assert_eq!(
            s.assign(&[service(80, &[1, 2]), service(81, &[1])], 4)
                .unwrap(),
            vec![vec![0, 1], vec![2]]
        );
    }
}
