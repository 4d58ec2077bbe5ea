//! A read-only map from 64-bit words (or a few of them: IPv6 endpoints, [`MapKey`]) to small
//! values, built once per snapshot: open addressing, linear probing, a power-of-two table at
//! most half full (an eighth for three-word keys), the word hashed by one multiply. The fast
//! path's per-packet lookups (a VIP's service, whether an address is a VIP or the box's, a
//! NAT real server's endpoint, an on-link neighbour) are a multiply, a load and a compare,
//! where the general path's `hashbrown` maps hash 20 bytes.
//!
//! Written by hand: it is thirty lines, and the crates that do this (phf and the like) build
//! at compile time or hash with more than a multiply.

/// A key of a [`WordMap`]: one word, or a few words folded into one before the multiply.
pub(crate) trait MapKey: Copy + Eq + std::fmt::Debug {
    /// The key no entry can have (all bits set: packed endpoints leave the top byte of their
    /// port and protocol word clear).
    const EMPTY: Self;
    /// Table slots per entry (a power of two): a sparser table ends a miss's probe sooner.
    const SLOTS_PER_ENTRY: usize;
    /// The word the multiply hashes.
    fn word(&self) -> u64;
}

impl MapKey for u64 {
    const EMPTY: u64 = u64::MAX;
    const SLOTS_PER_ENTRY: usize = 2;

    #[inline(always)]
    fn word(&self) -> u64 {
        *self
    }
}

/// An IPv6 address's two words and a word of port and protocol (0 for an address alone).
impl MapKey for [u64; 3] {
    const EMPTY: [u64; 3] = [u64::MAX; 3];
    // A miss compares three words per slot it walks: IPv6 replies miss two maps.
    const SLOTS_PER_ENTRY: usize = 8;

    #[inline(always)]
    fn word(&self) -> u64 {
        self[0] ^ self[1].rotate_left(21) ^ self[2].rotate_left(42)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct WordMap<V, K = u64> {
    keys: Box<[K]>,
    vals: Box<[V]>,
    /// 64 minus log2 of the table size: the multiply's high bits index it.
    shift: u32,
}

impl<V: Copy + Default, K: MapKey> Default for WordMap<V, K> {
    fn default() -> Self {
        Self::build([])
    }
}

impl<V: Copy + Default, K: MapKey> WordMap<V, K> {
    /// A map of `items` (a key given twice keeps its last value). Keys must not be
    /// [`MapKey::EMPTY`].
    pub(crate) fn build(items: impl IntoIterator<Item = (K, V)>) -> Self {
        let items: Vec<(K, V)> = items.into_iter().collect();
        let size = (items.len() * K::SLOTS_PER_ENTRY)
            .next_power_of_two()
            .max(4);
        let mut m = WordMap {
            keys: vec![K::EMPTY; size].into_boxed_slice(),
            vals: vec![V::default(); size].into_boxed_slice(),
            shift: 64 - size.trailing_zeros(),
        };
        for (k, v) in items {
            debug_assert_ne!(k, K::EMPTY);
            let mut i = m.slot(&k);
            while m.keys[i] != K::EMPTY && m.keys[i] != k {
                i = (i + 1) & (size - 1);
            }
            m.keys[i] = k;
            m.vals[i] = v;
        }
        m
    }

    #[inline(always)]
    fn slot(&self, k: &K) -> usize {
        (k.word().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The value of `k`.
    #[inline(always)]
    pub(crate) fn get(&self, k: K) -> Option<V> {
        let mask = self.keys.len() - 1;
        let mut i = self.slot(&k);
        loop {
            let key = *self.keys.get(i)?;
            if key == k {
                return self.vals.get(i).copied();
            }
            if key == K::EMPTY {
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
            let m: WordMap<u16> = WordMap::build(items.iter().copied());
            for k in items.iter().map(|(k, _)| *k).chain(probes) {
                prop_assert_eq!(m.get(k), want.get(&k).copied());
            }
        }

        #[test]
        fn answers_as_a_hashmap_for_three_word_keys(
            items in proptest::collection::vec((any::<[u64; 2]>(), 0u64..1 << 40, any::<u16>()), 0..100),
            probes in proptest::collection::vec((any::<[u64; 2]>(), 0u64..1 << 40), 0..100),
        ) {
            let items: Vec<([u64; 3], u16)> =
                items.into_iter().map(|(a, p, v)| ([a[0], a[1], p], v)).collect();
            let want: HashMap<[u64; 3], u16> = items.iter().copied().collect();
            let m: WordMap<u16, [u64; 3]> = WordMap::build(items.iter().copied());
            let probes = probes.into_iter().map(|(a, p)| [a[0], a[1], p]);
            for k in items.iter().map(|(k, _)| *k).chain(probes) {
                prop_assert_eq!(m.get(k), want.get(&k).copied());
            }
        }
    }
}
