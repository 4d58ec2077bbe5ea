//! Populating a Maglev table: the turns of Katran's weighted rounds, each claiming the next
//! free slot of the backend's permutation (a walk, slot by slot, until a free one).
//!
//! The walk's cost has three regimes, each served its own way; the turns and their results
//! stay exactly those of the plain walk (`end_game_matches_the_walk` checks it against one,
//! `tables_are_those_of_the_walk` pins tables built before these changes):
//! * while more than M / 8 slots are free most turns need one or two probes, and the time
//!   goes to the walk's exit branch, mispredicted on a random read: turns are taken eight at
//!   a time with their searches in lockstep ([`Population::take_turns`]);
//! * then each turn costs about M / F probes with F slots free, a predictable loop: walked;
//! * the last sqrt(M) slots would take half of all probes (M ln M in all; H(256) = 6.1 of
//!   H(65537) = 11.7): a turn chooses among the free slots left instead, the nearest along
//!   its permutation being a modular multiplication away ([`Population::nearest_free`]).
//!
//! Entries are `u16` when the indices allow (half the memory the probes read).
//! docs/benchmarks.md ("Maglev balance and disruption") has the build's cost.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{SchedBackend, SEED_OFFSET, SEED_SKIP};

/// Marks a free slot while the table is populated.
#[cfg(test)]
const FREE: u32 = u32::MAX;

/// A table entry as populated: `u16` when the backend indices allow (half the memory the
/// probes walk through), else `u32`; the largest value marks a free slot.
pub(super) trait Entry: Copy + Eq {
    /// A free slot.
    const FREE: Self;
    /// The entry of backend `index` (below `FREE`).
    fn of(index: u32) -> Self;
}

impl Entry for u16 {
    const FREE: u16 = u16::MAX;
    #[inline]
    fn of(index: u32) -> u16 {
        index as u16
    }
}

impl Entry for u32 {
    const FREE: u32 = u32::MAX;
    #[inline]
    fn of(index: u32) -> u32 {
        index
    }
}

/// A live backend's state while the table is populated.
pub(super) struct Filler {
    index: u32,
    pub(super) weight: u64,
    /// Accumulated weight, in `0..weight` between turns ([`fill_by_heap`] books it ahead:
    /// the credit left once the next scheduled turn has paid the largest weight).
    credit: u64,
    /// Next slot of the permutation to try.
    slot: u32,
    skip: u32,
    /// `skip`'s inverse modulo M, once the end game needs it (0: not computed yet).
    inverse: u32,
}

impl Filler {
    /// Round of the turn after the one taken in `round` (0: none yet), given the largest
    /// weight; books the credit that turn leaves.
    fn next_turn(&mut self, round: u64, max_weight: u64) -> u64 {
        // credit < weight <= max_weight, so k >= 1; credit + k * weight < max_weight + weight.
        let k = (max_weight - self.credit).div_ceil(self.weight);
        self.credit = self.credit + k * self.weight - max_weight;
        round + k
    }
}

/// The live backends' population state: permutation start and step from the key's hashes,
/// in key order. Turns are taken in this order, and when two backends' permutations reach the
/// same free slot the first one takes it: ordering by key (not by position in `backends`)
/// makes the table a function of the keys and weights alone, so boxes whose configurations
/// list the same real servers in another order still build the same table. Requires
/// `size >= 2`.
pub(super) fn fillers(backends: &[SchedBackend], size: u32) -> Vec<Filler> {
    let m = u64::from(size);
    let mut live: Vec<(usize, &SchedBackend)> = backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.weight > 0)
        .collect();
    // Keys are unique within a service (the validator refuses a real server listed twice);
    // the index breaks ties all the same, so the order is total.
    live.sort_unstable_by(|(i, a), (j, b)| a.key.cmp(&b.key).then(i.cmp(j)));
    live.into_iter()
        .map(|(i, b)| Filler {
            index: i as u32,
            weight: u64::from(b.weight),
            credit: 0,
            // Both < m <= MAX_MAGLEV_SIZE: the casts do not truncate.
            slot: (xxh3_64_with_seed(&b.key, SEED_OFFSET) % m) as u32,
            skip: (xxh3_64_with_seed(&b.key, SEED_SKIP) % (m - 1) + 1) as u32,
            inverse: 0,
        })
        .collect()
}

/// The table while it is populated: the slots, and in the end game the list of free ones.
struct Population<E: Entry> {
    table: Vec<E>,
    size: u32,
    /// Slots not yet claimed.
    left: u32,
    /// While more slots than this are free, turns may be taken in lockstep groups.
    lockstep_until: u32,
    /// Once this few slots are left, turns choose among them ([`Population::nearest_free`]).
    end_game: u32,
    /// The free slots, in the end game (empty before).
    free: Vec<u32>,
    /// `floor(2^64 / size)`: reductions modulo `size` by multiplication (Barrett).
    reciprocal: u64,
}

impl<E: Entry> Population<E> {
    fn new(size: u32) -> Self {
        Population {
            table: vec![E::FREE; size as usize],
            size,
            left: size,
            // Groups pay for their slowest turn: worth it while most turns need few probes.
            lockstep_until: size / 8,
            // sqrt(M) balances the walk (~M / F per turn) against the choice (F per turn).
            end_game: (size as f64).sqrt() as u32,
            free: Vec::new(),
            reciprocal: u64::MAX / u64::from(size.max(2)),
        }
    }

    fn is_full(&self) -> bool {
        self.left == 0
    }

    /// `x mod size`, for `x < 2^64`.
    #[inline]
    fn reduce(&self, x: u64) -> u32 {
        let q = ((u128::from(x) * u128::from(self.reciprocal)) >> 64) as u64;
        // q is floor(x / size) or one less.
        let r = x - q * u64::from(self.size);
        (if r >= u64::from(self.size) {
            r - u64::from(self.size)
        } else {
            r
        }) as u32
    }

    /// Claim the next free slot of `f`'s permutation (one turn). Requires a free slot.
    #[inline]
    fn take_turn(&mut self, f: &mut Filler) {
        let claimed = if self.free.is_empty() {
            // Invariant: f.slot < size == table.len(). Terminates when a slot is free: a
            // permutation visits every slot.
            while self.table[f.slot as usize] != E::FREE {
                f.slot = advance(f.slot, f.skip, self.size);
            }
            f.slot
        } else {
            self.nearest_free(f)
        };
        self.claim(f, claimed);
    }

    /// `f`'s turn takes the free `slot`.
    #[inline]
    fn claim(&mut self, f: &mut Filler, slot: u32) {
        self.table[slot as usize] = E::of(f.index);
        f.slot = advance(slot, f.skip, self.size);
        self.left -= 1;
        if self.left == self.end_game && self.left > 0 {
            self.free = (0..self.size)
                .filter(|&s| self.table[s as usize] == E::FREE)
                .collect();
        }
    }

    /// The turns of `group` (distinct backends, in turn order, no more than the slots left),
    /// with the result of taking them one after the other ([`Population::take_turn`]).
    /// First every lane searches its permutation for a slot free before the group, all lanes
    /// in lockstep without a branch per lane: their loads are independent and overlap, and
    /// the loop's exit is mispredicted once per group instead of once per turn. Then the
    /// lanes claim their slots in turn order; a lane whose slot an earlier lane just claimed
    /// walks on from there: every slot it skipped was taken before the group and still is,
    /// so it lands where its own walk would have.
    fn take_turns(&mut self, fillers: &mut [Filler], group: &[u32]) {
        let Some(&first) = group.first() else {
            return;
        };
        // Lanes past the group repeat its first turn's search (reads only, result unused).
        let mut slot = [0u32; LANES];
        let mut skip = [0u32; LANES];
        for k in 0..LANES {
            let f = &fillers[group.get(k).copied().unwrap_or(first) as usize];
            (slot[k], skip[k]) = (f.slot, f.skip);
        }
        // Terminates: there are at least as many free slots as lanes with distinct turns,
        // and every permutation visits every slot.
        loop {
            let mut busy = false;
            for k in 0..LANES {
                let taken = self.table[slot[k] as usize] != E::FREE;
                let next = advance(slot[k], skip[k], self.size);
                slot[k] = if taken { next } else { slot[k] };
                busy |= taken;
            }
            if !busy {
                break;
            }
        }
        for (k, &p) in group.iter().enumerate() {
            let f = &mut fillers[p as usize];
            f.slot = slot[k];
            self.take_turn(f);
        }
    }

    /// The free slot `f`'s walk from `f.slot` would reach first, taken off the free list:
    /// the one fewest steps away, a step count being `(s - slot) / skip` modulo M (M is
    /// prime, so `skip` has an inverse). Every slot the walk would pass before it is taken.
    fn nearest_free(&mut self, f: &mut Filler) -> u32 {
        if f.inverse == 0 {
            f.inverse = inverse_mod(f.skip, self.size);
        }
        let (mut best, mut at) = (u32::MAX, 0usize);
        for (i, &s) in self.free.iter().enumerate() {
            // s, slot < size: the difference is below 2 * size; times the inverse below 2^41.
            let ahead = u64::from(advance(s, self.size - f.slot, self.size));
            let steps = self.reduce(ahead * u64::from(f.inverse));
            if steps < best {
                (best, at) = (steps, i);
            }
        }
        self.free.swap_remove(at)
    }
}

/// The inverse of `a` modulo the prime `m` (`0 < a < m`), by the extended Euclidean algorithm.
fn inverse_mod(a: u32, m: u32) -> u32 {
    let (mut r0, mut r1) = (i64::from(m), i64::from(a));
    let (mut t0, mut t1) = (0i64, 1i64);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    // r0 == 1 as m is prime; |t0| < m.
    t0.rem_euclid(i64::from(m)) as u32
}

/// Katran's population loop: in every round each live backend (in index order) adds its
/// weight to its credit and, when the credit reaches the largest weight, pays it and takes a
/// turn. About `M * max / sum` rounds of N steps: the fast way when weights are close (with
/// equal weights, every backend takes exactly one entry per round).
///
/// While many slots are free, turns are taken [`LANES`] at a time
/// ([`Population::take_turns`]).
pub(super) fn fill_by_rounds<E: Entry>(
    mut fillers: Vec<Filler>,
    max_weight: u64,
    size: u32,
) -> Vec<E> {
    let mut table = Population::new(size);
    let mut group = [0u32; LANES];
    let mut n = 0usize;
    // Terminates: the heaviest backend takes a turn every round, each turn fills a slot.
    while !table.is_full() {
        for p in 0..fillers.len() {
            let f = &mut fillers[p];
            f.credit += f.weight;
            if f.credit < max_weight {
                continue;
            }
            f.credit -= max_weight;
            if table.left > table.lockstep_until {
                group[n] = p as u32;
                n += 1;
                if n == LANES || table.left - n as u32 == table.lockstep_until {
                    table.take_turns(&mut fillers, &group[..n]);
                    n = 0;
                    // Below 8 slots `lockstep_until` is 0 and a group can fill the table: a
                    // later turn of this round would walk a full table for ever.
                    if table.is_full() {
                        break;
                    }
                }
                continue;
            }
            table.take_turn(f);
            if table.is_full() {
                break;
            }
        }
        // A group holds turns of distinct backends: the next round's turn of a backend starts
        // where its previous one ended.
        table.take_turns(&mut fillers, &group[..n]);
        n = 0;
    }
    table.table
}

/// Turns [`Population::take_turns`] takes together.
const LANES: usize = 8;

/// The same turns in the same (round, index) order, event-driven: a heap holds each
/// backend's next turn, so skewed weights (2^32 - 1 next to 1s would make the round loop
/// ~M x N steps) cost M log N.
pub(super) fn fill_by_heap<E: Entry>(
    mut fillers: Vec<Filler>,
    max_weight: u64,
    size: u32,
) -> Vec<E> {
    let mut table = Population::new(size);
    let mut turns: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::with_capacity(fillers.len());
    for (p, f) in fillers.iter_mut().enumerate() {
        turns.push(Reverse((f.next_turn(0, max_weight), p as u32)));
    }
    // Terminates: each turn fills one slot.
    while !table.is_full() {
        let Some(Reverse((round, p))) = turns.pop() else {
            break;
        };
        let Some(f) = fillers.get_mut(p as usize) else {
            break;
        };
        table.take_turn(f);
        turns.push(Reverse((f.next_turn(round, max_weight), p)));
    }
    table.table
}

/// Next slot of a permutation: `(slot + skip) % size`, with `slot, skip < size`.
#[inline]
fn advance(slot: u32, skip: u32, size: u32) -> u32 {
    // slot + skip < 2 * MAX_MAGLEV_SIZE < u32::MAX.
    let next = slot + skip;
    if next >= size {
        next - size
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{equal, weighted};
    use crate::sched::MaglevTable;
    use proptest::prelude::*;

    /// The population without the end game: every turn walks slot by slot (the definition).
    fn walk_only(mut fillers: Vec<Filler>, max_weight: u64, size: u32) -> Vec<u32> {
        let mut table = vec![FREE; size as usize];
        let mut filled = 0u32;
        while filled < size {
            for f in fillers.iter_mut() {
                f.credit += f.weight;
                if f.credit < max_weight {
                    continue;
                }
                f.credit -= max_weight;
                while table[f.slot as usize] != FREE {
                    f.slot = advance(f.slot, f.skip, size);
                }
                table[f.slot as usize] = f.index;
                f.slot = advance(f.slot, f.skip, size);
                filled += 1;
                if filled == size {
                    break;
                }
            }
        }
        table
    }

    fn fingerprint(t: &MaglevTable) -> u64 {
        let bytes: Vec<u8> = t.entries().flat_map(|e| e.to_le_bytes()).collect();
        xxh3_64_with_seed(&bytes, 0)
    }

    #[test]
    fn tables_are_those_of_the_walk() {
        // Fingerprints of tables built before the end game existed (slot-by-slot walks only):
        // boxes of both versions behind one ECMP group build the same tables.
        for (b, m, want) in [
            (equal(1000), 65_537u32, 0xcfff_d407_38c8_cda6u64),
            (equal(100), 65_537, 0xf1ef_e176_54d1_2242),
            (
                weighted(&[3, 1, 4, 1, 5, 9, 2, 6, 0, 7]),
                65_537,
                0x5346_c5af_dfeb_655c,
            ),
            (equal(1000), 655_373, 0x21a6_46a0_ae9e_a450),
        ] {
            let t = MaglevTable::build(&b, m).unwrap();
            assert_eq!(fingerprint(&t), want, "{} backends, M = {m}", b.len());
        }
    }

    #[test]
    fn inverses() {
        for m in [2u32, 3, 13, 4099, 65_537, 1_000_003] {
            for a in [1, 2, m / 2, m - 1].into_iter().filter(|&a| a > 0 && a < m) {
                let inv = inverse_mod(a, m);
                assert_eq!(
                    u64::from(a) * u64::from(inv) % u64::from(m),
                    1,
                    "{a} mod {m}"
                );
            }
        }
    }

    /// Below 8 slots a lockstep group may take the last slot mid-round (found by the
    /// property below: weights 401 and 402 in 2 slots walked a full table for ever).
    #[test]
    fn tiny_tables_fill_and_end() {
        for m in [2u32, 3, 5, 7] {
            for weights in [vec![401, 402], vec![1, 1, 1], vec![3, 1, 2, 5, 4, 6, 7, 9]] {
                let b = weighted(&weights);
                let f = fillers(&b, m);
                let max = f.iter().map(|f| f.weight).max().unwrap_or(1);
                assert_eq!(
                    fill_by_rounds::<u32>(fillers(&b, m), max, m),
                    walk_only(f, max, m),
                    "m = {m}, weights {weights:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The end game claims the slots the walk would: the same table, slot for slot.
        #[test]
        fn end_game_matches_the_walk(
            weights in prop::collection::vec(prop_oneof![1u32..4, 0u32..1000], 1..80),
            m in prop::sample::select(vec![2u32, 3, 97, 251, 4099, 65_537]),
        ) {
            let b = weighted(&weights);
            let f = fillers(&b, m);
            prop_assume!(!f.is_empty() && f.len() <= m as usize);
            let max = f.iter().map(|f| f.weight).max().unwrap_or(1);
            prop_assert_eq!(fill_by_rounds::<u32>(fillers(&b, m), max, m), walk_only(f, max, m));
        }
    }
}
