//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, section 3.4), weighted the way Katran does it.
//!
//! Each live backend has a permutation of the M table slots derived from its key alone:
//! `offset = h1(key) % M`, `skip = h2(key) % (M - 1) + 1`, slot j of the permutation is
//! `(offset + j * skip) % M` (a permutation because M is prime). The table is populated in
//! rounds: in each round every backend whose accumulated weight reaches the largest weight
//! takes its turn (Katran's `MaglevV2`); a turn claims the next slot of the backend's
//! permutation that is still free. With equal weights every backend takes exactly one entry
//! per round until the table is full, so entry counts differ by at most 1; with weights, a
//! backend of weight w gets a turn in w / max of the rounds, hence about `M * w / sum` entries.
//!
//! Because a permutation depends only on the backend's key (address and port) and the fixed
//! seeds below, every box builds the same table from the same backend set, and removing a
//! backend mostly frees its own slots: other backends keep most of theirs.
//!
//! The control plane builds the table; a worker's lookup is `table[flow_hash % M]`, one load
//! from a `u16` table (128 KiB for M = 65537) when the service has at most 65536 backends.

use std::collections::HashMap;
use std::fmt;

use super::{check_count, fallback, Entries, Load, NewConn, SchedBackend, SchedError, Scheduler};

mod fill;
use fill::{fill_by_heap, fill_by_rounds, fillers};

/// Default table size: a prime, 65.5 entries per backend at 1000 backends.
pub const DEFAULT_MAGLEV_SIZE: u32 = 65_537;

/// Largest accepted table size (a prime; 4 MiB of `u32` entries).
pub const MAX_MAGLEV_SIZE: u32 = 1_000_003;

/// Seed of the hash giving a backend's offset. Never change it: boxes behind the same ECMP
/// group must build identical tables.
pub(super) const SEED_OFFSET: u64 = 0x5f0f_5e7d_0c6a_b1e5;
/// Seed of the hash giving a backend's skip. Never change it (see [`SEED_OFFSET`]).
pub(super) const SEED_SKIP: u64 = 0x9b1d_2c3e_a7f4_8d61;

/// Whether `n` is prime (deterministic trial division; at most ~33,000 divisions for a `u32`).
// `u32::is_multiple_of` needs Rust 1.87; the workspace declares rust-version 1.80.
#[allow(clippy::manual_is_multiple_of)]
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 5u64;
    while d * d <= n {
        if n % d == 0 || n % (d + 2) == 0 {
            return false;
        }
        d += 6;
    }
    true
}

/// A populated Maglev lookup table.
#[derive(Clone)]
pub struct MaglevTable {
    table: Entries,
    size: u32,
    backends: usize,
    /// The live backends once each (the fallback's scan when a connection's real server is
    /// over its threshold).
    live: Entries,
}

impl MaglevTable {
    /// Build the table of `size` entries for `backends`.
    ///
    /// Errors: [`SchedError::NoBackends`] for an empty slice, [`SchedError::AllDrained`] when
    /// every weight is 0, [`SchedError::TableSizeTooLarge`] above [`MAX_MAGLEV_SIZE`],
    /// [`SchedError::TableSizeNotPrime`], and [`SchedError::TableSizeTooSmall`] when `size` is
    /// below the number of backends (the paper recommends M > 100 N for good balance).
    pub fn build(backends: &[SchedBackend], size: u32) -> Result<Self, SchedError> {
        check_count(backends)?;
        if backends.is_empty() {
            return Err(SchedError::NoBackends);
        }
        if size > MAX_MAGLEV_SIZE {
            return Err(SchedError::TableSizeTooLarge {
                size,
                max: MAX_MAGLEV_SIZE,
            });
        }
        if !is_prime(size) {
            return Err(SchedError::TableSizeNotPrime(size));
        }
        if (size as usize) < backends.len() {
            return Err(SchedError::TableSizeTooSmall {
                size,
                backends: backends.len(),
            });
        }
        let fillers = fillers(backends, size);
        let max_weight = fillers
            .iter()
            .map(|f| f.weight)
            .max()
            .ok_or(SchedError::AllDrained(backends.len()))?;

        let sum: u64 = fillers.iter().map(|f| f.weight).sum();
        // Rounds needed ~ M * max / sum, each visiting every live backend.
        let round_steps = u128::from(size) * u128::from(max_weight) * fillers.len() as u128
            / u128::from(sum.max(1));
        let by_rounds = round_steps <= 8 * u128::from(size);
        // Entries of u16 when every index and the free mark fit (`Entries::pack`'s choice
        // for up to 65536 backends; 65536 itself takes the u32 way there).
        let table = match (backends.len() < usize::from(u16::MAX), by_rounds) {
            (true, true) => Entries::U16(fill_by_rounds(fillers, max_weight, size).into()),
            (true, false) => Entries::U16(fill_by_heap(fillers, max_weight, size).into()),
            (false, true) => {
                Entries::pack(fill_by_rounds(fillers, max_weight, size), backends.len())
            }
            (false, false) => {
                Entries::pack(fill_by_heap(fillers, max_weight, size), backends.len())
            }
        };
        let live = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(MaglevTable {
            table,
            size,
            backends: backends.len(),
            live: Entries::pack(live, backends.len()),
        })
    }

    /// Table size M.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// `table[flow_hash % M]`: the backend of a connection, whatever its load.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> Option<u32> {
        self.table.get((flow_hash % u64::from(self.size)) as usize)
    }

    /// The table's entries (for the fallback walk of source hashing).
    pub(crate) fn slots(&self) -> &Entries {
        &self.table
    }

    /// Backend index owning `slot`, or `None` when `slot >= M`.
    pub fn owner(&self, slot: u32) -> Option<u32> {
        self.table.get(slot as usize)
    }

    /// All entries in slot order.
    pub fn entries(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter()
    }

    /// Entries owned by each backend, indexed like the slice given to [`MaglevTable::build`].
    pub fn entries_per_backend(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.backends];
        for i in self.table.iter() {
            if let Some(c) = counts.get_mut(i as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Memory held by the table, in bytes (2 or 4 per entry).
    pub fn memory_bytes(&self) -> usize {
        self.table.len() * self.table.entry_bytes()
    }

    /// Compare this table (built from `backends`) with `after` (built from `after_backends`),
    /// slot by slot, owners identified by key. Tells how many flows without a flow entry (or
    /// on another box) would change real server.
    pub fn diff(
        &self,
        backends: &[SchedBackend],
        after: &MaglevTable,
        after_backends: &[SchedBackend],
    ) -> Result<TableDiff, SchedError> {
        if self.size != after.size {
            return Err(SchedError::SizeMismatch(self.size, after.size));
        }
        let live_after: HashMap<[u8; 18], ()> = after_backends
            .iter()
            .filter(|b| b.weight > 0)
            .map(|b| (b.key, ()))
            .collect();
        let key = |list: &[SchedBackend], i: u32| list.get(i as usize).map(|b| b.key);
        let mut diff = TableDiff {
            size: self.size,
            changed: 0,
            changed_kept: 0,
        };
        for (old, new) in self.table.iter().zip(after.table.iter()) {
            let old_key = key(backends, old);
            if old_key != key(after_backends, new) {
                diff.changed += 1;
                if old_key.is_some_and(|k| live_after.contains_key(&k)) {
                    diff.changed_kept += 1;
                }
            }
        }
        Ok(diff)
    }
}

impl Scheduler for MaglevTable {
    /// `table[flow_hash % M]`; the cursor is not used. A backend over its connection
    /// threshold passes the connection to the owners of the next slots, then to the first
    /// available backend (IPVS's `mh-fallback`, always on here: vipd's Maglev is also the
    /// consistent hash of connections without state, which ignore thresholds).
    #[inline]
    fn pick<L: Load>(&self, conn: &NewConn<'_>, _cursor: &mut u64, load: &L) -> Option<u32> {
        let slot = (conn.hash % u64::from(self.size)) as usize;
        let i = self.table.get(slot)?;
        if !load.limited() || load.available(i) {
            return Some(i);
        }
        fallback(&self.table, slot, &self.live, load)
    }
}

impl fmt::Debug for MaglevTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevTable")
            .field("size", &self.size)
            .field("backends", &self.backends)
            .field("table", &self.table)
            .finish()
    }
}

/// How two Maglev tables of the same size differ (see [`MaglevTable::diff`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableDiff {
    /// Table size M.
    pub size: u32,
    /// Slots whose owner changed.
    pub changed: u32,
    /// Slots whose owner changed although that owner is still live afterwards: the
    /// disruption consistent hashing tries to keep small.
    pub changed_kept: u32,
}

impl TableDiff {
    /// `changed / M`.
    pub fn changed_share(&self) -> f64 {
        f64::from(self.changed) / f64::from(self.size)
    }

    /// `changed_kept / M`: the share of all flows moved away from a backend that stayed.
    pub fn changed_kept_share(&self) -> f64 {
        f64::from(self.changed_kept) / f64::from(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{equal, key, weighted, Counts};
    use crate::sched::Unlimited;
    use proptest::prelude::*;

    #[test]
    fn over_threshold_goes_to_a_neighbouring_slots_owner_deterministically() {
        let t = MaglevTable::build(&equal(5), 251).unwrap();
        let mut load = Counts::new(5);
        load.unavailable(2);
        for h in 0..2000u64 {
            let h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let conn = NewConn::of_hash(h);
            let got = t.pick(&conn, &mut 0, &load).unwrap();
            if t.lookup(h) == Some(2) {
                assert_ne!(got, 2);
                assert_eq!(
                    t.pick(&conn, &mut 0, &load),
                    Some(got),
                    "the same every time"
                );
            } else {
                assert_eq!(Some(got), t.lookup(h), "others keep theirs");
            }
        }
        (0..5).for_each(|i| load.unavailable(i));
        assert_eq!(t.pick(&NewConn::of_hash(7), &mut 0, &load), None);
    }

    fn spread(t: &MaglevTable) -> u32 {
        let c = t.entries_per_backend();
        c.iter().max().unwrap() - c.iter().min().unwrap()
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(MAX_MAGLEV_SIZE));
        assert!(is_prime(4_294_967_291)); // largest u32 prime
        assert!(!is_prime(65_535));
        assert!(!is_prime(1_000_001)); // 101 * 9901
        assert!(!is_prime(65_521 * 65_519)); // product of two primes
    }

    #[test]
    fn errors() {
        let b = equal(10);
        assert_eq!(
            MaglevTable::build(&b, 65_536).unwrap_err(),
            SchedError::TableSizeNotPrime(65_536)
        );
        assert_eq!(
            MaglevTable::build(&b, 1).unwrap_err(),
            SchedError::TableSizeNotPrime(1)
        );
        assert_eq!(
            MaglevTable::build(&b, 0).unwrap_err(),
            SchedError::TableSizeNotPrime(0)
        );
        assert_eq!(
            MaglevTable::build(&b, 7).unwrap_err(),
            SchedError::TableSizeTooSmall {
                size: 7,
                backends: 10
            }
        );
        assert_eq!(
            MaglevTable::build(&b, 1_000_033).unwrap_err(),
            SchedError::TableSizeTooLarge {
                size: 1_000_033,
                max: MAX_MAGLEV_SIZE
            }
        );
        assert_eq!(
            MaglevTable::build(&[], 65_537).unwrap_err(),
            SchedError::NoBackends
        );
        assert_eq!(
            MaglevTable::build(&weighted(&[0, 0, 0]), 65_537).unwrap_err(),
            SchedError::AllDrained(3)
        );
        // Messages say what to do.
        let msg = SchedError::TableSizeNotPrime(65_536).to_string();
        assert!(msg.contains("65537"), "{msg}");
        // Smallest valid tables.
        assert!(MaglevTable::build(&equal(1), 2).is_ok());
        assert!(MaglevTable::build(&equal(11), 11).is_ok());
    }

    #[test]
    fn equal_weights_balance() {
        for n in [1, 2, 3, 10, 100, 1000] {
            let t = MaglevTable::build(&equal(n), DEFAULT_MAGLEV_SIZE).unwrap();
            assert!(spread(&t) <= 1, "n={n}: {:?}", t.entries_per_backend());
            assert_eq!(t.entries().count(), DEFAULT_MAGLEV_SIZE as usize);
        }
    }

    #[test]
    fn one_backend_per_slot_when_n_equals_m() {
        // 65537 backends: indices no longer fit u16 entries.
        let t = MaglevTable::build(&equal(65_537), 65_537).unwrap();
        assert_eq!(t.memory_bytes(), 65_537 * 4);
        assert!(t.entries_per_backend().iter().all(|&c| c == 1));
        let t = MaglevTable::build(&equal(1000), 65_537).unwrap();
        assert_eq!(t.memory_bytes(), 65_537 * 2);
    }

    #[test]
    fn drained_get_nothing_and_equal_removed() {
        let mut b = equal(50);
        b[7].weight = 0;
        b[30].weight = 0;
        let t = MaglevTable::build(&b, 4099).unwrap();
        let c = t.entries_per_backend();
        assert_eq!((c[7], c[30]), (0, 0));
        let live: Vec<u32> = c.iter().copied().filter(|&x| x > 0).collect();
        assert!(live.iter().max().unwrap() - live.iter().min().unwrap() <= 1);
        // Draining a backend gives the same table as removing it (owners compared by key).
        let removed: Vec<SchedBackend> = b.iter().copied().filter(|x| x.weight > 0).collect();
        let r = MaglevTable::build(&removed, 4099).unwrap();
        assert_eq!(t.diff(&b, &r, &removed).unwrap().changed, 0);
    }

    #[test]
    fn weighted_proportional() {
        let m = DEFAULT_MAGLEV_SIZE;
        for w in [
            vec![1, 2, 3, 4],
            vec![100, 1, 1, 1],
            vec![7; 5],
            vec![1, 1000, 10, 0, 5],
        ] {
            let t = MaglevTable::build(&weighted(&w), m).unwrap();
            let c = t.entries_per_backend();
            let sum: u32 = w.iter().sum();
            for (i, (&got, &wi)) in c.iter().zip(&w).enumerate() {
                let want = f64::from(m) * f64::from(wi) / f64::from(sum);
                // Far inside the 1%-of-M requirement: within 2 entries of the exact share.
                assert!(
                    (f64::from(got) - want).abs() <= 2.0,
                    "{w:?} backend {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn pick_is_flow_hash_mod_m() {
        let t = MaglevTable::build(&equal(10), 251).unwrap();
        let mut cursor = 0;
        for h in [0u64, 1, 250, 251, 252, u64::MAX, 0xdead_beef_cafe] {
            assert_eq!(
                t.pick(&NewConn::of_hash(h), &mut cursor, &Unlimited),
                t.owner((h % 251) as u32)
            );
            assert_eq!(t.lookup(h), t.owner((h % 251) as u32));
        }
        assert_eq!(cursor, 0);
        assert_eq!(t.owner(251), None);
    }

    #[test]
    fn deterministic() {
        let b = weighted(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let a = MaglevTable::build(&b, 65_537).unwrap();
        let c = MaglevTable::build(&b, 65_537).unwrap();
        assert!(a.entries().eq(c.entries()));
        // Pinned: the permutation hash and seeds must never change between versions (boxes in
        // one ECMP group would disagree).
        let head: Vec<u32> = MaglevTable::build(&equal(4), 13)
            .unwrap()
            .entries()
            .collect();
        assert_eq!(head, PINNED_13);
    }

    const PINNED_13: [u32; 13] = [1, 2, 0, 3, 0, 1, 3, 2, 1, 0, 2, 0, 3];

    /// Remove each of a few backends out of `n` and return the worst share of slots that
    /// moved between surviving backends.
    fn worst_disruption(n: u32, m: u32) -> f64 {
        let before = equal(n);
        let t = MaglevTable::build(&before, m).unwrap();
        let per = t.entries_per_backend();
        let mut worst = 0f64;
        for r in [0, n / 3, n / 2, n - 1] {
            let mut after = before.clone();
            after.remove(r as usize);
            let u = MaglevTable::build(&after, m).unwrap();
            let d = t.diff(&before, &u, &after).unwrap();
            // All of the removed backend's slots moved, plus changed_kept others.
            assert_eq!(d.changed, per[r as usize] + d.changed_kept);
            worst = worst.max(d.changed_kept_share());
        }
        worst
    }

    #[test]
    fn disruption_small() {
        for (n, bound) in [(10, 0.01), (100, 0.01), (1000, 0.01)] {
            let worst = worst_disruption(n, DEFAULT_MAGLEV_SIZE);
            eprintln!("n={n}: worst changed_kept share {worst:.5}");
            assert!(worst <= bound, "n={n}: {worst}");
        }
    }

    #[test]
    fn u32_entries_when_indices_exceed_u16() {
        // The same 20 live backends, then 65,600 drained ones: indices of the live ones are
        // unchanged, the table switches to u32 entries and holds the same owners.
        let b = equal(20);
        let mut padded = b.clone();
        padded.extend((0..65_600u32).map(|i| SchedBackend {
            key: key(1_000_000 + i),
            weight: 0,
        }));
        assert_eq!(
            MaglevTable::build(&padded, 65_537).unwrap_err(),
            SchedError::TableSizeTooSmall {
                size: 65_537,
                backends: 65_620
            }
        );
        let t16 = MaglevTable::build(&b, 655_373).unwrap();
        let t32 = MaglevTable::build(&padded, 655_373).unwrap();
        assert_eq!(t16.memory_bytes(), 655_373 * 2);
        assert_eq!(t32.memory_bytes(), 655_373 * 4);
        assert!(t16.entries().eq(t32.entries()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Equal weights: entry counts differ by at most 1, whatever the keys.
        #[test]
        fn balance_any_keys(
            keys in prop::collection::hash_set(any::<[u8; 18]>(), 1..200),
            m in prop::sample::select(vec![211u32, 4099, 65_537]),
        ) {
            prop_assume!(keys.len() as u32 <= m);
            let b: Vec<SchedBackend> = keys.into_iter().map(|key| SchedBackend { key, weight: 3 }).collect();
            let t = MaglevTable::build(&b, m).unwrap();
            prop_assert!(spread(&t) <= 1);
        }

        /// Weighted: every backend's entries are within 1% of M of its weight share.
        #[test]
        fn weighted_within_one_percent(weights in prop::collection::vec(0u32..1000, 1..100)) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let m = 65_537u32;
            let t = MaglevTable::build(&weighted(&weights), m).unwrap();
            let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            for (&got, &w) in t.entries_per_backend().iter().zip(&weights) {
                let want = f64::from(m) * w as f64 / sum as f64;
                prop_assert!((f64::from(got) - want).abs() <= 0.01 * f64::from(m),
                    "{} vs {}", got, want);
                if w == 0 {
                    prop_assert_eq!(got, 0);
                }
            }
        }

        /// The round loop and the heap produce the same table.
        #[test]
        fn fill_strategies_agree(
            weights in prop::collection::vec(prop_oneof![0u32..4, 0u32..1000, Just(u32::MAX)], 1..60),
        ) {
            let b = weighted(&weights);
            let f = fillers(&b, 4099);
            let Some(max) = f.iter().map(|f| f.weight).max() else { return Ok(()) };
            let by_rounds = fill_by_rounds::<u32>(fillers(&b, 4099), max, 4099);
            prop_assert_eq!(by_rounds, fill_by_heap::<u32>(f, max, 4099));
        }

        /// The table is a function of the keys and weights, not of the order they are listed
        /// in: two boxes listing the same real servers differently pick the same one per slot
        /// (scale-out behind ECMP relies on it). The owner of every slot is compared by key.
        #[test]
        fn independent_of_backend_order(
            weights in prop::collection::vec(0u32..6, 2..40),
            rotate in 1usize..40,
            m in prop::sample::select(vec![251u32, 4099, 65_537]),
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let b = weighted(&weights);
            let mut other = b.clone();
            other.reverse();
            let r = rotate % other.len();
            other.rotate_left(r);
            let a = MaglevTable::build(&b, m).unwrap();
            let c = MaglevTable::build(&other, m).unwrap();
            let owners = |t: &MaglevTable, list: &[SchedBackend]| -> Vec<[u8; 18]> {
                t.entries().map(|i| list[i as usize].key).collect()
            };
            prop_assert_eq!(owners(&a, &b), owners(&c, &other));
        }

        /// Same input, same table; and a table never names a drained or missing backend.
        #[test]
        fn deterministic_and_valid(weights in prop::collection::vec(0u32..5, 1..50)) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let b = weighted(&weights);
            let a = MaglevTable::build(&b, 4099).unwrap();
            let c = MaglevTable::build(&b, 4099).unwrap();
            prop_assert!(a.entries().eq(c.entries()));
            for e in a.entries() {
                prop_assert!(weights.get(e as usize).is_some_and(|&w| w > 0));
            }
        }
    }
}
