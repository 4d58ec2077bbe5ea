//! Schedulers: pick a real server for a new flow.
//!
//! The control plane builds one [`ServiceScheduler`] per service with
//! [`ServiceScheduler::build`] (allocation and all the work happen there); a worker only calls
//! [`Scheduler::pick`], which indexes a precomputed table and never allocates.
//!
//! - [`RoundRobin`] (`rr`): rotates over the real servers with weight > 0.
//! - [`WeightedRoundRobin`] (`wrr`): a precomputed, interleaved weighted sequence
//!   (at most [`WRR_MAX_TABLE`] + live backends entries).
//! - [`MaglevTable`] (`maglev`): consistent hashing (Eisenbud et al., NSDI 2016) with
//!   Katran-style weights: the same flow hash reaches the same real server on every core and
//!   every box, and removing one real server moves few other flows.
//!
//! Every scheduler returns an index into the backend slice given at build time. Weight 0
//! means drained: such a backend is never picked for a new flow.

mod maglev;
mod rr;
mod wrr;

use std::fmt;
use std::str::FromStr;

pub use maglev::{is_prime, MaglevTable, TableDiff, DEFAULT_MAGLEV_SIZE, MAX_MAGLEV_SIZE};
pub use rr::RoundRobin;
pub use wrr::{WeightedRoundRobin, WRR_MAX_TABLE};

/// A real server as a scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchedBackend {
    /// Identity of the backend: its address (16 bytes, IPv4-mapped for IPv4) followed by its
    /// port in big-endian. Maglev derives the backend's permutation from it, so the same real
    /// server gets the same table slots on every box and across reconfigurations.
    pub key: [u8; 18],
    /// Relative weight; 0 drains the backend (never picked for new flows).
    pub weight: u32,
}

/// Picks a backend for a new flow.
pub trait Scheduler {
    /// Index (into the backend slice given at build time) of the backend for a new flow.
    ///
    /// `flow_hash` is the flow's hash (consistent schedulers use it); `cursor` is per-core,
    /// per-service state owned by the worker (rotating schedulers advance it; any value is
    /// valid, including one left by a scheduler of another size). Returns `None` only when no
    /// backend has weight > 0.
    fn pick(&self, flow_hash: u64, cursor: &mut u64) -> Option<u32>;
}

/// Which scheduler a service uses, as configured (`"rr"`, `"wrr"`, `"maglev"`; parsing also
/// accepts IPVS's name `"mh"` for Maglev).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin over backends with weight > 0.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Maglev consistent hashing (weighted).
    Maglev,
}

impl SchedulerKind {
    /// The configuration name: `"rr"`, `"wrr"` or `"maglev"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Maglev => "maglev",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rr" => Ok(SchedulerKind::Rr),
            "wrr" => Ok(SchedulerKind::Wrr),
            "maglev" | "mh" => Ok(SchedulerKind::Maglev),
            other => Err(SchedError::UnknownKind(other.to_owned())),
        }
    }
}

/// Why a scheduler could not be built (or named).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The scheduler name is not one we know.
    #[error("unknown scheduler {0:?}: expected \"rr\", \"wrr\" or \"maglev\"")]
    UnknownKind(String),
    /// Maglev needs at least one backend.
    #[error("maglev needs at least one real server, the service has none")]
    NoBackends,
    /// Maglev needs at least one backend with weight > 0.
    #[error(
        "all {0} real servers have weight 0 (drained): maglev needs at least one with weight > 0"
    )]
    AllDrained(usize),
    /// The Maglev table size is not a prime.
    #[error("maglev table size {0} is not prime: use a prime such as 65537 (default) or 655373")]
    TableSizeNotPrime(u32),
    /// The Maglev table size is above [`MAX_MAGLEV_SIZE`].
    #[error("maglev table size {size} is larger than the maximum {max}")]
    TableSizeTooLarge {
        /// Requested size.
        size: u32,
        /// Largest accepted size.
        max: u32,
    },
    /// The Maglev table has fewer entries than the service has backends.
    #[error(
        "maglev table size {size} is smaller than the number of real servers ({backends}): \
         use a prime at least 100 times larger for good balance"
    )]
    TableSizeTooSmall {
        /// Requested size.
        size: u32,
        /// Number of backends.
        backends: usize,
    },
    /// More backends than a `u32` index can name.
    #[error("{0} real servers is more than a service can have ({max})", max = u32::MAX)]
    TooManyBackends(usize),
    /// Two Maglev tables of different sizes cannot be compared slot by slot.
    #[error("cannot compare maglev tables of sizes {0} and {1}")]
    SizeMismatch(u32, u32),
}

/// A service's scheduler, dispatched statically by `match` on the hot path.
#[derive(Clone, Debug)]
pub enum ServiceScheduler {
    /// Round robin.
    RoundRobin(RoundRobin),
    /// Weighted round robin.
    WeightedRoundRobin(WeightedRoundRobin),
    /// Maglev consistent hashing.
    Maglev(MaglevTable),
}

impl ServiceScheduler {
    /// Build the scheduler of `kind` over `backends` (off the hot path: allocates and, for
    /// Maglev, populates a `maglev_size`-entry table).
    ///
    /// `maglev_size` is only used (and validated) for [`SchedulerKind::Maglev`]. Round robin
    /// and weighted round robin accept a service whose backends are all drained (their `pick`
    /// then returns `None`); Maglev rejects it with [`SchedError::NoBackends`] or
    /// [`SchedError::AllDrained`].
    pub fn build(
        kind: SchedulerKind,
        backends: &[SchedBackend],
        maglev_size: u32,
    ) -> Result<Self, SchedError> {
        Ok(match kind {
            SchedulerKind::Rr => ServiceScheduler::RoundRobin(RoundRobin::build(backends)?),
            SchedulerKind::Wrr => {
                ServiceScheduler::WeightedRoundRobin(WeightedRoundRobin::build(backends)?)
            }
            SchedulerKind::Maglev => {
                ServiceScheduler::Maglev(MaglevTable::build(backends, maglev_size)?)
            }
        })
    }

    /// The kind this scheduler was built as.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            ServiceScheduler::RoundRobin(_) => SchedulerKind::Rr,
            ServiceScheduler::WeightedRoundRobin(_) => SchedulerKind::Wrr,
            ServiceScheduler::Maglev(_) => SchedulerKind::Maglev,
        }
    }
}

impl Scheduler for ServiceScheduler {
    #[inline]
    fn pick(&self, flow_hash: u64, cursor: &mut u64) -> Option<u32> {
        match self {
            ServiceScheduler::RoundRobin(s) => s.pick(flow_hash, cursor),
            ServiceScheduler::WeightedRoundRobin(s) => s.pick(flow_hash, cursor),
            ServiceScheduler::Maglev(s) => s.pick(flow_hash, cursor),
        }
    }
}

/// A compact table of backend indices: `u16` entries when every index fits, else `u32`
/// (halves the cache footprint of a 65537-entry Maglev table).
#[derive(Clone)]
pub(crate) enum Entries {
    /// Indices below 65536.
    U16(Box<[u16]>),
    /// Any index.
    U32(Box<[u32]>),
}

impl Entries {
    /// Pack `v`; `n_backends` bounds every value (exclusive).
    pub(crate) fn pack(v: Vec<u32>, n_backends: usize) -> Entries {
        if n_backends <= usize::from(u16::MAX) + 1 {
            Entries::U16(v.into_iter().map(|x| x as u16).collect())
        } else {
            Entries::U32(v.into_boxed_slice())
        }
    }

    /// Number of entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Entries::U16(t) => t.len(),
            Entries::U32(t) => t.len(),
        }
    }

    /// Entry `i`, or `None` past the end.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<u32> {
        match self {
            Entries::U16(t) => t.get(i).map(|&x| u32::from(x)),
            Entries::U32(t) => t.get(i).copied(),
        }
    }

    /// All entries in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// Bytes per entry (2 or 4).
    pub(crate) fn entry_bytes(&self) -> usize {
        match self {
            Entries::U16(_) => 2,
            Entries::U32(_) => 4,
        }
    }

    /// Rotating pick: entry `cursor % len`, then advance the cursor (kept below `len`).
    #[inline]
    pub(crate) fn rotate(&self, cursor: &mut u64) -> Option<u32> {
        let len = self.len();
        if len == 0 {
            return None;
        }
        let i = (*cursor % len as u64) as usize;
        *cursor = if i + 1 == len { 0 } else { (i + 1) as u64 };
        self.get(i)
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x u{}", self.len(), self.entry_bytes() * 8)
    }
}

/// Reject slices too long for `u32` indices.
pub(crate) fn check_count(backends: &[SchedBackend]) -> Result<(), SchedError> {
    if u32::try_from(backends.len()).is_err() {
        return Err(SchedError::TooManyBackends(backends.len()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Backend `i`: 10.(i>>16).(i>>8).(i) port 80, as a key.
    pub(crate) fn key(i: u32) -> [u8; 18] {
        let mut k = [0u8; 18];
        k[10] = 0xff;
        k[11] = 0xff;
        k[12] = 10;
        k[13..16].copy_from_slice(&i.to_be_bytes()[1..]);
        k[16..18].copy_from_slice(&80u16.to_be_bytes());
        k
    }

    /// `n` backends of weight 1.
    pub(crate) fn equal(n: u32) -> Vec<SchedBackend> {
        weighted(&vec![1; n as usize])
    }

    /// One backend per weight.
    pub(crate) fn weighted(weights: &[u32]) -> Vec<SchedBackend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| SchedBackend {
                key: key(i as u32),
                weight,
            })
            .collect()
    }

    #[test]
    fn kind_round_trips() {
        for k in [SchedulerKind::Rr, SchedulerKind::Wrr, SchedulerKind::Maglev] {
            assert_eq!(k.to_string().parse::<SchedulerKind>(), Ok(k));
        }
        assert_eq!("mh".parse::<SchedulerKind>(), Ok(SchedulerKind::Maglev));
        assert_eq!(
            "lc".parse::<SchedulerKind>(),
            Err(SchedError::UnknownKind("lc".into()))
        );
    }

    #[test]
    fn service_scheduler_dispatches() {
        let b = weighted(&[1, 0, 1]);
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr, SchedulerKind::Maglev] {
            let s = ServiceScheduler::build(kind, &b, 65537).unwrap();
            assert_eq!(s.kind(), kind);
            let mut cursor = 0;
            for h in 0..100u64 {
                let i = s
                    .pick(h.wrapping_mul(0x9e37_79b9_7f4a_7c15), &mut cursor)
                    .unwrap();
                assert!(i == 0 || i == 2, "{kind}: picked drained backend {i}");
            }
        }
    }

    #[test]
    fn all_drained() {
        let b = weighted(&[0, 0]);
        let mut c = 0;
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr] {
            let s = ServiceScheduler::build(kind, &b, 65537).unwrap();
            assert_eq!(s.pick(1, &mut c), None);
            let s = ServiceScheduler::build(kind, &[], 65537).unwrap();
            assert_eq!(s.pick(1, &mut c), None);
        }
        assert_eq!(
            ServiceScheduler::build(SchedulerKind::Maglev, &b, 65537).unwrap_err(),
            SchedError::AllDrained(2)
        );
        assert_eq!(
            ServiceScheduler::build(SchedulerKind::Maglev, &[], 65537).unwrap_err(),
            SchedError::NoBackends
        );
    }

    #[test]
    fn maglev_size_ignored_by_rotating_schedulers() {
        let b = equal(3);
        assert!(ServiceScheduler::build(SchedulerKind::Rr, &b, 4).is_ok());
        assert!(ServiceScheduler::build(SchedulerKind::Wrr, &b, 4).is_ok());
        assert_eq!(
            ServiceScheduler::build(SchedulerKind::Maglev, &b, 4).unwrap_err(),
            SchedError::TableSizeNotPrime(4)
        );
    }

    #[test]
    fn entries_pack() {
        let e = Entries::pack(vec![0, 65535, 7], 65536);
        assert_eq!(e.entry_bytes(), 2);
        assert_eq!(e.iter().collect::<Vec<_>>(), vec![0, 65535, 7]);
        let e = Entries::pack(vec![0, 65536, 7], 65537);
        assert_eq!(e.entry_bytes(), 4);
        assert_eq!(e.iter().collect::<Vec<_>>(), vec![0, 65536, 7]);
        let mut c = u64::MAX;
        // u64::MAX % 3 == 0
        assert_eq!(e.rotate(&mut c), Some(0));
        assert_eq!(c, 1);
        assert_eq!(Entries::pack(vec![], 0).rotate(&mut c), None);
    }
}
