//! Round robin over the backends with weight > 0.

use super::{check_count, fallback, Entries, Load, NewConn, SchedBackend, SchedError, Scheduler};

/// Round robin: the live backends (weight > 0) in slice order, one after the other.
///
/// The per-core cursor makes each core rotate independently (as IPVS does per service, but
/// without a shared lock): over many flows every live backend gets the same share.
#[derive(Clone, Debug)]
pub struct RoundRobin {
    live: Entries,
}

impl RoundRobin {
    /// Build over `backends`; backends with weight 0 are skipped. An empty or all-drained
    /// slice gives a scheduler whose `pick` returns `None`.
    pub fn build(backends: &[SchedBackend]) -> Result<Self, SchedError> {
        check_count(backends)?;
        let live: Vec<u32> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, _)| i as u32)
            .collect();
        Ok(RoundRobin {
            live: Entries::pack(live, backends.len()),
        })
    }

    /// Number of backends in the rotation (those with weight > 0).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no backend is in the rotation.
    pub fn is_empty(&self) -> bool {
        self.live.len() == 0
    }
}

impl Scheduler for RoundRobin {
    #[inline]
    fn pick<L: Load>(&self, _conn: &NewConn<'_>, cursor: &mut u64, load: &L) -> Option<u32> {
        let at = *cursor;
        let i = self.live.rotate(cursor)?;
        if !load.limited() || load.available(i) {
            return Some(i);
        }
        // Over its threshold: the next live one that is not (IPVS's rr skips overloaded ones).
        let len = self.live.len() as u64;
        fallback(&self.live, (at % len) as usize, &self.live, load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{equal, pick_with, weighted, Counts};
    use crate::sched::Unlimited;

    fn sequence(s: &RoundRobin, cursor: &mut u64, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| pick_with(s, cursor, &Unlimited).unwrap())
            .collect()
    }

    #[test]
    fn rotates() {
        let s = RoundRobin::build(&equal(3)).unwrap();
        let mut c = 0;
        assert_eq!(sequence(&s, &mut c, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skips_drained_and_ignores_weights() {
        let s = RoundRobin::build(&weighted(&[5, 0, 1, 0, 2])).unwrap();
        assert_eq!(s.len(), 3);
        let mut c = 0;
        assert_eq!(sequence(&s, &mut c, 6), [0, 2, 4, 0, 2, 4]);
    }

    #[test]
    fn cursors_are_independent_and_any_value_works() {
        let s = RoundRobin::build(&equal(4)).unwrap();
        let (mut a, mut b) = (0, 2);
        assert_eq!(pick_with(&s, &mut a, &Unlimited), Some(0));
        assert_eq!(pick_with(&s, &mut b, &Unlimited), Some(2));
        assert_eq!(pick_with(&s, &mut a, &Unlimited), Some(1));
        // A cursor left by a larger scheduler (e.g. from the previous snapshot).
        let mut big = 1_000_001;
        assert_eq!(pick_with(&s, &mut big, &Unlimited), Some(1));
        assert_eq!(big, 2);
    }

    #[test]
    fn empty() {
        let s = RoundRobin::build(&weighted(&[0, 0])).unwrap();
        assert!(s.is_empty());
        assert_eq!(pick_with(&s, &mut 0, &Unlimited), None);
    }

    #[test]
    fn skips_a_real_server_over_its_threshold() {
        let s = RoundRobin::build(&equal(3)).unwrap();
        let mut load = Counts::new(3);
        load.unavailable(1);
        let mut c = 0;
        let got: Vec<u32> = (0..6)
            .map(|_| pick_with(&s, &mut c, &load).unwrap())
            .collect();
        assert_eq!(got, [0, 2, 2, 0, 2, 2]);
        (0..3).for_each(|i| load.unavailable(i));
        assert_eq!(pick_with(&s, &mut c, &load), None);
    }
}
