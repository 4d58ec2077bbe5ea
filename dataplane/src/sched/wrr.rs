//! Weighted round robin, precomputed into a sequence table.
//!
//! IPVS's `ip_vs_wrr` walks the backends at pick time with a shared "current weight" (under a
//! lock) and gives a heavy backend its turns in a burst (weights 5,1,1 give `a a a a a b c`).
//! Here the builder computes the whole cycle once and interleaves it (stride scheduling with
//! staggered starts): the k-th turn (k = 0..w) of the live backend of rank r among n, weight
//! w, is due at (k + (r + 1/2) / n) / w, and the cycle lists all turns by due time (ties to
//! the lower index). Weights 5,1,1 give `a a a b a a c`; equal weights give plain round robin;
//! one heavy backend among many light ones is spread evenly instead of bunched. Provable
//! spread: between two turns of a backend of weight w there are fewer than
//! `len / w + live` other picks. A pick is then `table[cursor % len]`, like round robin.
//!
//! Table bound: weights are divided by their gcd; when the reduced weights still sum to more
//! than [`WRR_MAX_TABLE`] they are scaled down to sum to about [`WRR_MAX_TABLE`], each live
//! backend keeping at least one entry. So the table holds at most `WRR_MAX_TABLE + live
//! backends` entries (`u16` each when there are at most 65536 backends, else `u32`), and a
//! backend's share is then off its exact weight share by less than `(1 + live) / WRR_MAX_TABLE`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::{check_count, fallback, Entries, Load, NewConn, SchedBackend, SchedError, Scheduler};

/// Upper bound on the sum of the (reduced) weights, hence on the length of a weighted round
/// robin cycle (plus one entry per live backend at most, see the module notes).
pub const WRR_MAX_TABLE: u64 = 65_536;

/// Weighted round robin over a precomputed, interleaved cycle.
#[derive(Clone, Debug)]
pub struct WeightedRoundRobin {
    table: Entries,
    /// The live backends once each (the fallback's scan when the cycle's are overloaded).
    live: Entries,
}

/// A backend's next turn in the builder's priority queue. The k-th turn (k from 0) of the
/// live backend of rank r (of n) and weight w is due at (k + (r + 1/2) / n) / w, i.e.
/// `num / (2 n w)` with `num = 2 n k + 2 r + 1`; comparisons cross-multiply `num` by the other
/// weight (the common 2n cancels). Ties go to the lower index.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Turn {
    num: u64,
    k: u64,
    w: u64,
    index: u32,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // num < 2n(w + 1) <= 2^33 * 2^17 and w <= WRR_MAX_TABLE: the products fit in u128.
        let a = u128::from(self.num) * u128::from(other.w);
        let b = u128::from(other.num) * u128::from(self.w);
        a.cmp(&b).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Reduce live weights by their gcd and, if they still sum to more than [`WRR_MAX_TABLE`],
/// scale them down (each keeping at least 1).
fn reduce(live: &mut [(u32, u64)]) {
    let g = live.iter().fold(0, |g, &(_, w)| gcd(g, w));
    if g > 1 {
        live.iter_mut().for_each(|(_, w)| *w /= g);
    }
    let total: u64 = live.iter().map(|&(_, w)| w).sum();
    if total > WRR_MAX_TABLE {
        for (_, w) in live.iter_mut() {
            // w <= total, so the quotient is <= WRR_MAX_TABLE: no truncation in the cast.
            let scaled = u128::from(*w) * u128::from(WRR_MAX_TABLE) / u128::from(total);
            *w = (scaled as u64).max(1);
        }
        let g = live.iter().fold(0, |g, &(_, w)| gcd(g, w));
        if g > 1 {
            live.iter_mut().for_each(|(_, w)| *w /= g);
        }
    }
}

impl WeightedRoundRobin {
    /// Build the cycle for `backends`; backends with weight 0 get no entry. An empty or
    /// all-drained slice gives a scheduler whose `pick` returns `None`.
    pub fn build(backends: &[SchedBackend]) -> Result<Self, SchedError> {
        check_count(backends)?;
        let mut live: Vec<(u32, u64)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, b)| (i as u32, u64::from(b.weight)))
            .collect();
        reduce(&mut live);
        let len: u64 = live.iter().map(|&(_, w)| w).sum();
        let mut table = Vec::with_capacity(len as usize);
        let step = 2 * live.len() as u64;
        let mut heap: BinaryHeap<Reverse<Turn>> = live
            .iter()
            .enumerate()
            .map(|(r, &(index, w))| {
                Reverse(Turn {
                    num: 2 * r as u64 + 1,
                    k: 0,
                    w,
                    index,
                })
            })
            .collect();
        while let Some(Reverse(turn)) = heap.pop() {
            table.push(turn.index);
            if turn.k + 1 < turn.w {
                heap.push(Reverse(Turn {
                    num: turn.num + step,
                    k: turn.k + 1,
                    ..turn
                }));
            }
        }
        Ok(WeightedRoundRobin {
            table: Entries::pack(table, backends.len()),
            live: Entries::pack(live.iter().map(|&(i, _)| i).collect(), backends.len()),
        })
    }

    /// Length of the cycle (0 when no backend has weight > 0).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the cycle is empty (no backend has weight > 0).
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    /// The cycle: backend indices in pick order.
    pub fn sequence(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter()
    }
}

impl Scheduler for WeightedRoundRobin {
    #[inline]
    fn pick<L: Load>(&self, _conn: &NewConn<'_>, cursor: &mut u64, load: &L) -> Option<u32> {
        let at = *cursor;
        let i = self.table.rotate(cursor)?;
        if !load.limited() || load.available(i) {
            return Some(i);
        }
        // Over its threshold: the next turns of the cycle, then any live backend.
        let len = self.table.len() as u64;
        fallback(&self.table, (at % len) as usize, &self.live, load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{pick_with, weighted, Counts};
    use crate::sched::Unlimited;
    use proptest::prelude::*;

    fn seq(weights: &[u32]) -> Vec<u32> {
        WeightedRoundRobin::build(&weighted(weights))
            .unwrap()
            .sequence()
            .collect()
    }

    #[test]
    fn interleaves() {
        assert_eq!(seq(&[5, 1, 1]), [0, 0, 0, 1, 0, 0, 2]);
        assert_eq!(seq(&[3, 2]), [0, 1, 0, 0, 1]);
        assert_eq!(seq(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(seq(&[2, 4]), [0, 1, 1]); // reduced by gcd 2 to 1,2
        assert_eq!(seq(&[4, 0, 4]), [0, 2]);
        assert_eq!(seq(&[100, 100, 200]), [0, 2, 1, 2]);
    }

    #[test]
    fn one_heavy_among_light_is_spread() {
        let mut w = vec![1u32; 40];
        w[0] = 49;
        let s = seq(&w);
        // Never more than two heavy turns in a row, never two light ones in a row.
        let runs: Vec<u32> = s
            .windows(3)
            .map(|x| x.iter().filter(|&&i| i == 0).count() as u32)
            .collect();
        assert!(runs.iter().all(|r| (1..=2).contains(r)), "{s:?}");
    }

    #[test]
    fn pick_follows_the_cycle() {
        let s = WeightedRoundRobin::build(&weighted(&[2, 1])).unwrap();
        let mut c = 0;
        let got: Vec<u32> = (0..6)
            .map(|_| pick_with(&s, &mut c, &Unlimited).unwrap())
            .collect();
        assert_eq!(got, [0, 0, 1, 0, 0, 1]);
    }

    #[test]
    fn empty() {
        let s = WeightedRoundRobin::build(&weighted(&[0])).unwrap();
        assert!(s.is_empty());
        assert_eq!(pick_with(&s, &mut 5, &Unlimited), None);
    }

    #[test]
    fn over_threshold_turns_go_to_the_next_turn() {
        let s = WeightedRoundRobin::build(&weighted(&[5, 1, 1])).unwrap();
        let mut load = Counts::new(3);
        load.unavailable(0);
        let mut c = 0;
        let got: Vec<u32> = (0..7)
            .map(|_| pick_with(&s, &mut c, &load).unwrap())
            .collect();
        // Cycle a a a b a a c: every turn of a goes to the next turn that is not a's.
        assert_eq!(got, [1, 1, 1, 1, 2, 2, 2]);
        (0..3).for_each(|i| load.unavailable(i));
        assert_eq!(pick_with(&s, &mut c, &load), None);
    }

    #[test]
    fn huge_weights_are_bounded() {
        let s = WeightedRoundRobin::build(&weighted(&[u32::MAX, u32::MAX - 1, 1, 7])).unwrap();
        assert!(s.len() as u64 <= WRR_MAX_TABLE + 4, "{}", s.len());
        let mut counts = [0u64; 4];
        s.sequence().for_each(|i| counts[i as usize] += 1);
        // The two tiny weights keep one entry each; the two huge ones share the rest evenly.
        assert_eq!(counts[2], 1);
        assert_eq!(counts[3], 1);
        assert!(counts[0].abs_diff(counts[1]) <= 1, "{counts:?}");
    }

    #[test]
    fn many_backends_beyond_the_cap() {
        let n = (WRR_MAX_TABLE + 10) as usize;
        let mut w = vec![1u32; n];
        w[0] = 1000;
        let s = WeightedRoundRobin::build(&weighted(&w)).unwrap();
        assert!(s.len() as u64 <= WRR_MAX_TABLE + n as u64);
        let mut counts = vec![0u32; n];
        s.sequence().for_each(|i| counts[i as usize] += 1);
        assert!(counts.iter().all(|&c| c >= 1));
    }

    proptest! {
        /// Within one cycle each live backend appears exactly reduced-weight times, drained
        /// ones never, and the turns of a backend are spread: consecutive turns (cyclically)
        /// are at most len / w + live positions apart.
        #[test]
        fn exact_shares_and_spread(weights in prop::collection::vec(0u32..50, 1..40)) {
            let s = WeightedRoundRobin::build(&weighted(&weights)).unwrap();
            let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            prop_assert_eq!(s.len() as u64, total.checked_div(g).unwrap_or(0));
            let seq: Vec<u32> = s.sequence().collect();
            for (i, &w) in weights.iter().enumerate() {
                let pos: Vec<usize> = seq.iter().enumerate()
                    .filter(|(_, &x)| x as usize == i).map(|(p, _)| p).collect();
                prop_assert_eq!(pos.len() as u64, if w == 0 { 0 } else { u64::from(w) / g });
                if pos.len() > 1 {
                    let len = seq.len();
                    let live = weights.iter().filter(|&&w| w > 0).count();
                    for k in 0..pos.len() {
                        let gap = (pos[(k + 1) % pos.len()] + len - pos[k]) % len;
                        prop_assert!(gap <= len / pos.len() + live,
                            "backend {} gap {} len {} turns {}", i, gap, len, pos.len());
                    }
                }
            }
        }
    }
}
