//! Least connections (`lc`) and weighted least connections (`wlc`, ipvsadm's default), as
//! IPVS's `ip_vs_lc` and `ip_vs_wlc`: the live backend (weight > 0, not over its connection
//! threshold) with the least overhead `active * 256 + inactive` (an established connection
//! weighs 256 opening, closing or UDP ones), relative to its weight for `wlc`
//! (`overhead_a * weight_b < overhead_b * weight_a`, cross-multiplied). Ties go to the first
//! in configuration order, as in IPVS.
//!
//! The counts are the whole box's ([`super::Load`]), read when the connection arrives: a pick
//! costs one read of each live backend's slot on each worker, so it grows with backends x
//! workers (docs/benchmarks.md has the figures). A connection counts from the moment the
//! worker enters it in its flow table, so consecutive picks of one worker always see the
//! previous one.

use super::{check_count, Entries, Load, NewConn, SchedBackend, SchedError, Scheduler};

/// Least connections over the live backends, weighted or not.
#[derive(Clone, Debug)]
pub struct LeastConn {
    /// Live backends (weight > 0), in slice order.
    live: Entries,
    /// Their weights, parallel to `live`.
    weights: Box<[u32]>,
    weighted: bool,
}

impl LeastConn {
    /// Build over `backends`; `weighted` for `wlc`. Backends with weight 0 are never picked;
    /// an empty or all-drained slice gives a scheduler whose `pick` returns `None`.
    pub fn build(backends: &[SchedBackend], weighted: bool) -> Result<Self, SchedError> {
        check_count(backends)?;
        let live: Vec<(u32, u32)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, b)| (i as u32, b.weight))
            .collect();
        Ok(LeastConn {
            weights: live.iter().map(|&(_, w)| w).collect(),
            live: Entries::pack(live.iter().map(|&(i, _)| i).collect(), backends.len()),
            weighted,
        })
    }

    /// Whether this is `wlc`.
    pub fn weighted(&self) -> bool {
        self.weighted
    }

    /// Number of live backends.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no backend can be picked.
    pub fn is_empty(&self) -> bool {
        self.live.len() == 0
    }
}

impl Scheduler for LeastConn {
    #[inline]
    fn pick<L: Load>(&self, _conn: &NewConn<'_>, _cursor: &mut u64, load: &L) -> Option<u32> {
        let limited = load.limited();
        // (index, overhead, weight) of the best so far.
        let mut best: Option<(u32, u64, u64)> = None;
        for (k, &w) in self.weights.iter().enumerate() {
            let Some(i) = self.live.get(k) else { break };
            if limited && !load.available(i) {
                continue;
            }
            let overhead = load.overhead(i);
            let w = if self.weighted { u64::from(w) } else { 1 };
            let better = match best {
                None => true,
                // overhead / w < best_overhead / best_w, in u128: overheads reach 2^40 and
                // weights 2^32.
                Some((_, bo, bw)) => {
                    u128::from(overhead) * u128::from(bw) < u128::from(bo) * u128::from(w)
                }
            };
            if better {
                best = Some((i, overhead, w));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{equal, pick, weighted, Counts};

    #[test]
    fn lc_picks_the_least_loaded_and_ties_go_first() {
        let s = LeastConn::build(&equal(4), false).unwrap();
        let mut load = Counts::new(4);
        assert_eq!(pick(&s, 0, &load), Some(0), "all idle: the first");
        load.set(0, 1, 0);
        load.set(1, 0, 3);
        load.set(2, 0, 2);
        load.set(3, 0, 2);
        // Overheads 256, 3, 2, 2: the first of the two least.
        assert_eq!(pick(&s, 0, &load), Some(2));
        // An established connection weighs 256 inactive ones.
        load.set(2, 1, 0);
        load.set(3, 0, 300);
        assert_eq!(pick(&s, 0, &load), Some(1));
    }

    #[test]
    fn lc_ignores_weights_but_not_drained() {
        let s = LeastConn::build(&weighted(&[5, 0, 1]), false).unwrap();
        let mut load = Counts::new(3);
        load.set(0, 0, 4);
        load.set(2, 0, 3);
        assert_eq!(pick(&s, 0, &load), Some(2));
        assert_eq!(s.len(), 2);
        assert!(!s.weighted());
    }

    #[test]
    fn wlc_by_weight() {
        let s = LeastConn::build(&weighted(&[3, 1]), true).unwrap();
        let mut load = Counts::new(2);
        // 3 / 3 = 1 vs 1 / 1 = 1: a tie, the first.
        load.set(0, 3, 0);
        load.set(1, 1, 0);
        assert_eq!(pick(&s, 0, &load), Some(0));
        load.set(0, 4, 0);
        assert_eq!(pick(&s, 0, &load), Some(1), "4/3 > 1/1");
        // Filling from idle: the picks follow the weights 3:1.
        let mut load = Counts::new(2);
        let mut got = [0u32; 2];
        for _ in 0..400 {
            let i = pick(&s, 0, &load).unwrap();
            got[i as usize] += 1;
            let (a, _) = load.get(i);
            load.set(i, a + 1, 0);
        }
        assert_eq!(got, [300, 100]);
    }

    #[test]
    fn over_threshold_skipped_and_none_when_all_are() {
        let s = LeastConn::build(&equal(3), true).unwrap();
        let mut load = Counts::new(3);
        load.set(1, 5, 0);
        load.set(2, 9, 0);
        load.unavailable(0);
        assert_eq!(pick(&s, 0, &load), Some(1));
        load.unavailable(1);
        load.unavailable(2);
        assert_eq!(pick(&s, 0, &load), None);
        assert_eq!(
            pick(&LeastConn::build(&weighted(&[0]), false).unwrap(), 0, &load),
            None
        );
    }
}
