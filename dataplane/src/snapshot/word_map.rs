//! A read-only map from 64-bit words to small values, built once per snapshot: open
//! addressing, linear probing, a power-of-two table at most half full, the word hashed by one
//! multiply. The fast path's per-packet lookups (a VIP's service, whether an address is a VIP
//! or the box's, a NAT real server's endpoint, an on-link neighbour) are a multiply, a load
//! and a compare, where the general path's `hashbrown` maps hash 20 bytes.
//!
//! Written by hand: it is thirty lines, and the crates that do this (phf and the like) build
//! at compile time or hash with more than a multiply.

/// The word no key can be (keys are packed addresses, protocols and ports that leave the top
/// byte clear).
const EMPTY: u64 = u64::MAX;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct WordMap<V> {
    keys: Box<[u64]>,
    vals: Box<[V]>,
    /// 64 minus log2 of the table size: the multiply's high bits index it.
    shift: u32,
}

impl<V: Copy + Default> Default for WordMap<V> {
    fn default() -> Self {
        Self::build([])
    }
}

impl<V: Copy + Default> WordMap<V> {
    /// A map of `items` (a key given twice keeps its last value). Keys must not be [`u64::MAX`].
    pub(crate) fn build(items: impl IntoIterator<Item = (u64, V)>) -> Self {
        let items: Vec<(u64, V)> = items.into_iter().collect();
        let size = (items.len() * 2).next_power_of_two().max(4);
        let mut m = WordMap {
            keys: vec![EMPTY; size].into_boxed_slice(),
            vals: vec![V::default(); size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
        };
        for (k, v) in items {
            debug_assert_ne!(k, EMPTY);
            let mut i = m.slot(k);
            while m.keys[i] != EMPTY && m.keys[i] != k {
                i = (i + 1) & (size - 1);
            }
            m.keys[i] = k;
            m.vals[i] = v;
        }
        m
    }

    #[inline(always)]
    fn slot(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The value of `k`.
    #[inline(always)]
    pub(crate) fn get(&self, k: u64) -> Option<V> {
        let mask = self.keys.len() - 1;
        let mut i = self.slot(k);
        loop {
            let key = *self.keys.get(i)?;
            if key == k {
                return self.vals.get(i).copied();
            }
            if key == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn answers_as_a_hashmap(
            items in proptest::collection::vec((0u64..1 << 40, any::<u16>()), 0..200),
            probes in proptest::collection::vec(0u64..1 << 40, 0..200),
        ) {
            let want: HashMap<u64, u16> = items.iter().copied().collect();
            let m = WordMap::build(items.iter().copied());
            for k in items.iter().map(|(k, _)| *k).chain(probes) {
                prop_assert_eq!(m.get(k), want.get(&k).copied());
            }
        }
    }
}
