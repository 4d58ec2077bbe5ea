//! Schedulers: pick a real server for a new flow.
//!
//! The control plane builds one [`ServiceScheduler`] per service with
//! [`ServiceScheduler::build`] (allocation and all the work happen there); a worker only calls
//! [`Scheduler::pick`], which indexes a precomputed table or reads connection counts, and
//! never allocates.
//!
//! - [`RoundRobin`] (`rr`): rotates over the real servers with weight > 0.
//! - [`WeightedRoundRobin`] (`wrr`): a precomputed, interleaved weighted sequence
//!   (at most [`WRR_MAX_TABLE`] + live backends entries).
//! - [`MaglevTable`] (`maglev`, IPVS's `mh`): consistent hashing (Eisenbud et al., NSDI 2016)
//!   with Katran-style weights over the connection's 5-tuple hash: the same connection reaches
//!   the same real server on every core and every box, and removing one real server moves
//!   few other connections. (It keeps a *connection* on its real server, not a client: the
//!   source port is in the hash.)
//! - [`LeastConn`] (`lc` and `wlc`, ipvsadm's default): the real server with the fewest
//!   connections (IPVS's overhead `active * 256 + inactive`), relative to its weight for
//!   `wlc`. The counts come through [`Load`], summed over every worker.
//! - [`SourceHash`] (`sh`): a Maglev table indexed by a hash of the client address (and port
//!   with `sh-port`), so a client keeps its real server while the set of real servers stays;
//!   `sh-fallback` sends it to another one while its own is over its connection threshold.
//!
//! Every scheduler returns an index into the backend slice given at build time. Weight 0
//! means drained: such a backend is never picked for a new flow. A backend over its upper
//! connection threshold ([`Load::available`] false) is skipped by every scheduler except `sh`
//! without `sh-fallback`, which then refuses the connection (IPVS's behaviour).

mod lc;
pub mod load;
mod maglev;
mod rr;
mod sh;
mod wrr;

use std::fmt;
use std::str::FromStr;

pub use lc::LeastConn;
pub use load::{Load, Unlimited};
pub use maglev::{is_prime, MaglevTable, TableDiff, DEFAULT_MAGLEV_SIZE, MAX_MAGLEV_SIZE};
pub use rr::RoundRobin;
pub use sh::{SchedFlags, SourceHash};
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

/// What a scheduler may know of a new connection: its 5-tuple hash and its client.
#[derive(Clone, Copy, Debug)]
pub struct NewConn<'a> {
    /// The connection's flow hash (Maglev and the flow table use it).
    pub hash: u64,
    /// The client's address in flow-key form (IPv4-mapped for IPv4).
    pub client: &'a [u8; 16],
    /// The client's port.
    pub client_port: u16,
}

impl NewConn<'static> {
    /// A connection known by its hash alone (the client unspecified): tests, benchmarks and
    /// the stateless paths, which only consistent schedulers serve.
    pub fn of_hash(hash: u64) -> Self {
        NewConn {
            hash,
            client: &[0; 16],
            client_port: 0,
        }
    }
}

/// Picks a backend for a new flow.
pub trait Scheduler {
    /// Index (into the backend slice given at build time) of the backend for a new flow.
    ///
    /// `cursor` is per-core, per-service state owned by the worker (rotating schedulers
    /// advance it; any value is valid, including one left by a scheduler of another size).
    /// `load` tells the backends' connection counts and whether each may take a connection
    /// now (its connection threshold). Returns `None` when no backend has weight > 0 or none
    /// may take the connection.
    fn pick<L: Load>(&self, conn: &NewConn<'_>, cursor: &mut u64, load: &L) -> Option<u32>;
}

/// Which scheduler a service uses, as configured (`"rr"`, `"wrr"`, `"maglev"`, `"lc"`,
/// `"wlc"`, `"sh"`; parsing also accepts IPVS's name `"mh"` for Maglev).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin over backends with weight > 0.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Maglev consistent hashing (weighted).
    Maglev,
    /// Least connections.
    Lc,
    /// Weighted least connections (ipvsadm's default).
    Wlc,
    /// Source hashing (consistent, weighted).
    Sh,
}

impl SchedulerKind {
    /// Every kind, in documentation order.
    pub const ALL: [SchedulerKind; 6] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Maglev,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
    ];

    /// The configuration name: `"rr"`, `"wrr"`, `"maglev"`, `"lc"`, `"wlc"` or `"sh"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Maglev => "maglev",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
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
            "lc" => Ok(SchedulerKind::Lc),
            "wlc" => Ok(SchedulerKind::Wlc),
            "sh" => Ok(SchedulerKind::Sh),
            other => Err(SchedError::UnknownKind(other.to_owned())),
        }
    }
}

/// Why a scheduler could not be built (or named).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The scheduler name is not one we know.
    #[error(
        "unknown scheduler {0:?}: expected \"wlc\", \"lc\", \"rr\", \"wrr\", \"sh\" or \"maglev\" (\"mh\")"
    )]
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
    /// Least connections, weighted or not.
    LeastConn(LeastConn),
    /// Source hashing.
    SourceHash(SourceHash),
}

impl ServiceScheduler {
    /// Build the scheduler of `kind` over `backends` (off the hot path: allocates and, for
    /// Maglev and source hashing, populates a `maglev_size`-entry table).
    ///
    /// `maglev_size` is only used (and validated) for [`SchedulerKind::Maglev`] and
    /// [`SchedulerKind::Sh`]; `flags` only for `sh`. Round robin, weighted round robin and
    /// least connections accept a service whose backends are all drained (their `pick` then
    /// returns `None`); the table schedulers reject it with [`SchedError::NoBackends`] or
    /// [`SchedError::AllDrained`].
    pub fn build(
        kind: SchedulerKind,
        backends: &[SchedBackend],
        maglev_size: u32,
        flags: SchedFlags,
    ) -> Result<Self, SchedError> {
        Ok(match kind {
            SchedulerKind::Rr => ServiceScheduler::RoundRobin(RoundRobin::build(backends)?),
            SchedulerKind::Wrr => {
                ServiceScheduler::WeightedRoundRobin(WeightedRoundRobin::build(backends)?)
            }
            SchedulerKind::Maglev => {
                ServiceScheduler::Maglev(MaglevTable::build(backends, maglev_size)?)
            }
            SchedulerKind::Lc => ServiceScheduler::LeastConn(LeastConn::build(backends, false)?),
            SchedulerKind::Wlc => ServiceScheduler::LeastConn(LeastConn::build(backends, true)?),
            SchedulerKind::Sh => {
                ServiceScheduler::SourceHash(SourceHash::build(backends, maglev_size, flags)?)
            }
        })
    }

    /// The kind this scheduler was built as.
    pub fn kind(&self) -> SchedulerKind {
        match self {
            ServiceScheduler::RoundRobin(_) => SchedulerKind::Rr,
            ServiceScheduler::WeightedRoundRobin(_) => SchedulerKind::Wrr,
            ServiceScheduler::Maglev(_) => SchedulerKind::Maglev,
            ServiceScheduler::LeastConn(s) if s.weighted() => SchedulerKind::Wlc,
            ServiceScheduler::LeastConn(_) => SchedulerKind::Lc,
            ServiceScheduler::SourceHash(_) => SchedulerKind::Sh,
        }
    }

    /// The real server for a connection without state: the Maglev table's entry for its
    /// 5-tuple hash, whatever the load (the same answer for every packet). `None` unless this
    /// is a Maglev scheduler with a backend of weight > 0.
    #[inline]
    pub fn lookup_consistent(&self, flow_hash: u64) -> Option<u32> {
        match self {
            ServiceScheduler::Maglev(t) => t.lookup(flow_hash),
            _ => None,
        }
    }
}

impl Scheduler for ServiceScheduler {
    #[inline]
    fn pick<L: Load>(&self, conn: &NewConn<'_>, cursor: &mut u64, load: &L) -> Option<u32> {
        match self {
            ServiceScheduler::RoundRobin(s) => s.pick(conn, cursor, load),
            ServiceScheduler::WeightedRoundRobin(s) => s.pick(conn, cursor, load),
            ServiceScheduler::Maglev(s) => s.pick(conn, cursor, load),
            ServiceScheduler::LeastConn(s) => s.pick(conn, cursor, load),
            ServiceScheduler::SourceHash(s) => s.pick(conn, cursor, load),
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

/// An available backend for when the first choice (at position `from` of `order`) is over its
/// connection threshold: the next [`PROBES`] entries of `order` (a rotation keeps its order,
/// a hash table gives the neighbouring slots' owners: deterministic per connection), then the
/// first available one of `live` (every live backend once). Bounded work: at most [`PROBES`] +
/// `live.len()` checks, however long `order` is.
pub(crate) fn fallback<L: Load>(
    order: &Entries,
    from: usize,
    live: &Entries,
    load: &L,
) -> Option<u32> {
    let len = order.len();
    (1..=PROBES.min(len))
        .filter_map(|k| order.get((from + k) % len))
        .chain(live.iter())
        .find(|&i| load.available(i))
}

/// Entries of its own order a scheduler tries after an unavailable first choice.
pub(crate) const PROBES: usize = 16;

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

    /// A pick by a connection of hash `h` from an unspecified client.
    pub(crate) fn pick<S: Scheduler, L: Load>(s: &S, h: u64, load: &L) -> Option<u32> {
        s.pick(&NewConn::of_hash(h), &mut 0, load)
    }

    /// A pick with `cursor` (rotating schedulers), hash 0.
    pub(crate) fn pick_with<S: Scheduler, L: Load>(
        s: &S,
        cursor: &mut u64,
        load: &L,
    ) -> Option<u32> {
        s.pick(&NewConn::of_hash(0), cursor, load)
    }

    /// A load of fixed counts and thresholds, by backend index.
    pub(crate) struct Counts {
        conns: Vec<(u64, u64)>,
        down: Vec<bool>,
    }

    impl Counts {
        pub(crate) fn new(n: usize) -> Self {
            Counts {
                conns: vec![(0, 0); n],
                down: vec![false; n],
            }
        }
        pub(crate) fn set(&mut self, i: u32, active: u64, inactive: u64) {
            self.conns[i as usize] = (active, inactive);
        }
        pub(crate) fn get(&self, i: u32) -> (u64, u64) {
            self.conns[i as usize]
        }
        pub(crate) fn unavailable(&mut self, i: u32) {
            self.down[i as usize] = true;
        }
    }

    impl Load for Counts {
        fn overhead(&self, i: u32) -> u64 {
            let (a, n) = self.conns[i as usize];
            a * 256 + n
        }
        fn available(&self, i: u32) -> bool {
            !self.down[i as usize]
        }
        fn limited(&self) -> bool {
            self.down.iter().any(|&d| d)
        }
    }

    fn build(
        kind: SchedulerKind,
        b: &[SchedBackend],
        size: u32,
    ) -> Result<ServiceScheduler, SchedError> {
        ServiceScheduler::build(kind, b, size, SchedFlags::default())
    }

    #[test]
    fn kind_round_trips() {
        for k in SchedulerKind::ALL {
            assert_eq!(k.to_string().parse::<SchedulerKind>(), Ok(k));
        }
        assert_eq!("mh".parse::<SchedulerKind>(), Ok(SchedulerKind::Maglev));
        assert_eq!(
            "lblc".parse::<SchedulerKind>(),
            Err(SchedError::UnknownKind("lblc".into()))
        );
    }

    #[test]
    fn service_scheduler_dispatches() {
        let b = weighted(&[1, 0, 1]);
        for kind in SchedulerKind::ALL {
            let s = build(kind, &b, 65537).unwrap();
            assert_eq!(s.kind(), kind);
            let mut cursor = 0;
            for h in 0..100u64 {
                let client = [h as u8; 16];
                let conn = NewConn {
                    hash: h.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    client: &client,
                    client_port: h as u16,
                };
                let i = s.pick(&conn, &mut cursor, &Unlimited).unwrap();
                assert!(i == 0 || i == 2, "{kind}: picked drained backend {i}");
            }
        }
        let maglev = build(SchedulerKind::Maglev, &b, 251).unwrap();
        assert!(maglev.lookup_consistent(5).is_some());
        assert_eq!(
            build(SchedulerKind::Rr, &b, 251)
                .unwrap()
                .lookup_consistent(5),
            None
        );
    }

    #[test]
    fn all_drained() {
        let b = weighted(&[0, 0]);
        let mut c = 0;
        for kind in [
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
        ] {
            let s = build(kind, &b, 65537).unwrap();
            assert_eq!(pick_with(&s, &mut c, &Unlimited), None);
            let s = build(kind, &[], 65537).unwrap();
            assert_eq!(pick_with(&s, &mut c, &Unlimited), None);
        }
        for kind in [SchedulerKind::Maglev, SchedulerKind::Sh] {
            assert_eq!(
                build(kind, &b, 65537).unwrap_err(),
                SchedError::AllDrained(2)
            );
            assert_eq!(build(kind, &[], 65537).unwrap_err(), SchedError::NoBackends);
        }
    }

    #[test]
    fn maglev_size_ignored_by_rotating_schedulers() {
        let b = equal(3);
        for kind in [
            SchedulerKind::Rr,
            SchedulerKind::Wrr,
            SchedulerKind::Lc,
            SchedulerKind::Wlc,
        ] {
            assert!(build(kind, &b, 4).is_ok());
        }
        for kind in [SchedulerKind::Maglev, SchedulerKind::Sh] {
            assert_eq!(
                build(kind, &b, 4).unwrap_err(),
                SchedError::TableSizeNotPrime(4)
            );
        }
    }

    #[test]
    fn balance_of_every_scheduler() {
        // Equal weights, idle load that counts each pick: every scheduler spreads 6000 new
        // connections (distinct clients) over 6 real servers within 10% of 1000 each.
        for kind in SchedulerKind::ALL {
            let s = build(kind, &equal(6), 65537).unwrap();
            let mut load = Counts::new(6);
            let mut cursor = 0;
            let mut got = [0u32; 6];
            for n in 0..6000u64 {
                let client: [u8; 16] = (u128::from(n) << 16 | 0xffff_0000_0000).to_be_bytes();
                let hash = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555;
                let conn = NewConn {
                    hash,
                    client: &client,
                    client_port: 1024,
                };
                let i = s.pick(&conn, &mut cursor, &load).unwrap();
                got[i as usize] += 1;
                let (a, _) = load.get(i);
                load.set(i, a + 1, 0);
            }
            for g in got {
                assert!((900..=1100).contains(&g), "{kind}: {got:?}");
            }
        }
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
