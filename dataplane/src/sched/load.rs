//! What the connection-counting schedulers and the connection thresholds read: every
//! worker's connection counts per real server, and whether a real server is over its upper
//! threshold.
//!
//! Each worker's flow table counts its own connections in its [`BackendStats`] (one writer,
//! relaxed stores). A pick reads the slots of every worker with relaxed loads and adds them:
//! no lock, no read-modify-write, nothing written on the hot path but what the worker owns.
//! How exact that is: a count is each worker's value as of its last store, which another
//! core sees within the time a store takes to leave its store buffer (tens of nanoseconds);
//! so a sum misses at most the connections other workers enter or finish during the pick
//! itself, one per worker. IPVS's counters are shared atomics and have the same window
//! (between its scheduler reading `activeconns` and the connection being bound).
//!
//! Thresholds (ipvsadm `-x`/`-y`) keep one flag per real-server slot for the whole box, in
//! [`SharedLoad`], written only when it flips (an idempotent relaxed store, by whichever
//! worker sees the count cross the line), so every worker agrees whether a real server is
//! overloaded, as IPVS's one `IP_VS_DEST_F_OVERLOAD` flag does.

use crate::backend_stats::BackendStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The load of the backends of one scheduler, by index into its backend slice.
pub trait Load {
    /// IPVS's connection overhead of backend `i`: active * 256 + inactive connections.
    fn overhead(&self, i: u32) -> u64;
    /// Whether backend `i` may take a new connection (not over its upper connection
    /// threshold, or back under its lower one).
    fn available(&self, i: u32) -> bool;
    /// Whether any backend can be unavailable; when false, schedulers skip the checks.
    fn limited(&self) -> bool;
}

/// No counts, no thresholds: every backend available with overhead 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unlimited;

impl Load for Unlimited {
    #[inline]
    fn overhead(&self, _i: u32) -> u64 {
        0
    }
    #[inline]
    fn available(&self, _i: u32) -> bool {
        true
    }
    #[inline]
    fn limited(&self) -> bool {
        false
    }
}

/// A real server's connection thresholds (ipvsadm `-x` upper, `-y` lower); 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limit {
    /// At this many connections (active + inactive, whole box) it takes no new one.
    pub upper: u32,
    /// Below this many it takes new connections again; 0: below 3/4 of `upper` (IPVS).
    pub lower: u32,
}

impl Limit {
    /// Whether a real server with `total` connections is overloaded, given whether it was.
    /// IPVS's hysteresis (`ip_vs_bind_dest` / `ip_vs_unbind_dest`): it becomes overloaded at
    /// `upper` and stops being so under `lower` (`total * 4 < upper * 3` without one).
    #[inline]
    pub fn overloaded(&self, total: u64, was: bool) -> bool {
        if self.upper == 0 {
            return false;
        }
        let upper = u64::from(self.upper);
        if was {
            let under = if self.lower > 0 {
                total < u64::from(self.lower)
            } else {
                total * 4 < upper * 3
            };
            !under
        } else {
            total >= upper
        }
    }
}

/// Every worker's per-real-server statistics (the connection counts) and the box-wide
/// overload flags, shared by all workers. Built once at start, before the workers run.
#[derive(Debug)]
pub struct SharedLoad {
    workers: Box<[Arc<BackendStats>]>,
    overloaded: Box<[AtomicBool]>,
}

impl SharedLoad {
    /// The statistics of `workers` workers with `slots` real-server slots each.
    pub fn new(workers: usize, slots: usize) -> Self {
        SharedLoad {
            workers: (0..workers.max(1))
                .map(|_| Arc::new(BackendStats::new(slots)))
                .collect(),
            overloaded: (0..slots.max(1)).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Worker `i`'s statistics (the first worker's when out of range).
    pub fn worker(&self, i: usize) -> &Arc<BackendStats> {
        self.workers.get(i).unwrap_or(&self.workers[0])
    }

    /// Every worker's statistics.
    pub fn workers(&self) -> &[Arc<BackendStats>] {
        &self.workers
    }

    /// Active and inactive connections of `slot`, summed over workers (relaxed loads).
    #[inline]
    pub fn connections(&self, slot: u32) -> (u64, u64) {
        self.workers.iter().fold((0, 0), |(a, i), w| {
            let (wa, wi) = w.conns(slot);
            (a + u64::from(wa), i + u64::from(wi))
        })
    }

    /// Whether `slot` may take a new connection under `limit`, updating its box-wide flag.
    #[inline]
    pub fn available(&self, slot: u32, limit: Limit) -> bool {
        let Some(flag) = self.overloaded.get(slot as usize) else {
            return true;
        };
        let was = flag.load(Ordering::Relaxed);
        if limit.upper == 0 {
            if was {
                // The threshold was removed (or the slot reused): forget the old state.
                flag.store(false, Ordering::Relaxed);
            }
            return true;
        }
        let (active, inactive) = self.connections(slot);
        let now = limit.overloaded(active + inactive, was);
        if now != was {
            flag.store(now, Ordering::Relaxed);
        }
        !now
    }

    /// Whether `slot` is flagged overloaded (as of the last check of a worker).
    pub fn is_overloaded(&self, slot: u32) -> bool {
        self.overloaded
            .get(slot as usize)
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// One service's scheduler input: its scheduled real servers' slots (by scheduler index) and
/// thresholds, over the box's shared counts.
#[derive(Clone, Copy, Debug)]
pub struct ServiceLoad<'a> {
    /// The shared counts and flags.
    pub shared: &'a SharedLoad,
    /// Slot (backend id) of each scheduler index.
    pub slots: &'a [u32],
    /// Thresholds of each scheduler index (empty when none is set).
    pub limits: &'a [Limit],
}

impl Load for ServiceLoad<'_> {
    #[inline]
    fn overhead(&self, i: u32) -> u64 {
        match self.slots.get(i as usize) {
            Some(&slot) => {
                let (active, inactive) = self.shared.connections(slot);
                active * 256 + inactive
            }
            None => u64::MAX,
        }
    }

    #[inline]
    fn available(&self, i: u32) -> bool {
        match (self.limits.get(i as usize), self.slots.get(i as usize)) {
            (Some(&limit), Some(&slot)) => self.shared.available(slot, limit),
            _ => true,
        }
    }

    #[inline]
    fn limited(&self) -> bool {
        !self.limits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_stats::ConnClass;

    #[test]
    fn ipvs_hysteresis() {
        let l = Limit {
            upper: 10,
            lower: 4,
        };
        assert!(!l.overloaded(9, false));
        assert!(l.overloaded(10, false));
        assert!(l.overloaded(5, true), "in the band: stays overloaded");
        assert!(l.overloaded(4, true));
        assert!(!l.overloaded(3, true));
        assert!(!l.overloaded(7, false), "in the band: stays available");
        // No lower threshold: 3/4 of the upper one (total * 4 < upper * 3).
        let l = Limit { upper: 8, lower: 0 };
        assert!(l.overloaded(6, true));
        assert!(!l.overloaded(5, true));
        assert!(!Limit::default().overloaded(u64::MAX / 8, true));
    }

    #[test]
    fn counts_of_every_worker_and_one_flag_for_the_box() {
        let shared = SharedLoad::new(2, 4);
        let limit = Limit { upper: 3, lower: 2 };
        shared.worker(0).conn_added(1, ConnClass::Active);
        shared.worker(1).conn_added(1, ConnClass::Active);
        shared.worker(1).conn_added(1, ConnClass::Inactive);
        assert_eq!(shared.connections(1), (2, 1));
        let load = ServiceLoad {
            shared: &shared,
            slots: &[0, 1],
            limits: &[Limit::default(), limit],
        };
        assert_eq!(load.overhead(1), 2 * 256 + 1);
        assert!(load.limited());
        assert!(load.available(0));
        assert!(!load.available(1), "3 connections: at the upper threshold");
        assert!(shared.is_overloaded(1));
        shared.worker(1).conn_removed(1, ConnClass::Inactive);
        assert!(!load.available(1), "2 is not under the lower threshold 2");
        shared.worker(0).conn_removed(1, ConnClass::Active);
        assert!(load.available(1), "1 < 2");
        assert!(!shared.is_overloaded(1));
        // The threshold removed: the flag goes.
        shared.worker(0).conn_added(1, ConnClass::Active);
        shared.worker(0).conn_added(1, ConnClass::Active);
        assert!(!load.available(1));
        assert!(shared.available(1, Limit::default()));
        assert!(!shared.is_overloaded(1));
        let unlimited = ServiceLoad {
            shared: &shared,
            slots: &[0, 1],
            limits: &[],
        };
        assert!(!unlimited.limited() && unlimited.available(1));
    }
}
