//! A read-only filter over a set of 64-bit words, built once per snapshot: one bit per
//! word in a bitmap indexed by the word's multiply hash (a one-hash Bloom filter). "Not in
//! the set" is exact; "maybe" is answered by the map the filter stands in front of. A
//! NAT real server's reply is addressed to a client, almost never to one of the few VIPs
//! and port addresses: the filter answers that with one load instead of a map probe.
//!
//! Written by hand: twenty lines, and the Bloom filter crates hash with SipHash or several
//! hashes and size for a false-positive rate, where one multiply and one bit suffice.

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct WordFilter {
    bits: Box<[u64]>,
    /// 64 minus log2 of the number of bits: the multiply's high bits index them.
    shift: u32,
}

impl Default for WordFilter {
    fn default() -> Self {
        Self::build([])
    }
}

impl WordFilter {
    /// A filter of `words`, with at least 16 bits per word (a word outside the set passes
    /// with a chance of at most 1 in 16, far less for the usual handful).
    pub(crate) fn build(words: impl IntoIterator<Item = u64>) -> Self {
        let words: Vec<u64> = words.into_iter().collect();
        let n_bits = (words.len() * 16).next_power_of_two().max(512);
        let mut f = WordFilter {
            bits: vec![0; n_bits / 64].into_boxed_slice(),
            shift: 64 - n_bits.trailing_zeros(),
        };
        for w in words {
            let i = f.bit(w);
            if let Some(b) = f.bits.get_mut(i / 64) {
                *b |= 1 << (i % 64);
            }
        }
        f
    }

    #[inline(always)]
    fn bit(&self, w: u64) -> usize {
        (w.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// Whether `w` may be in the set (false: it is not).
    #[inline(always)]
    pub(crate) fn may_hold(&self, w: u64) -> bool {
        let i = self.bit(w);
        // The index is below the bitmap's size by construction; were it not, "maybe" keeps
        // the answer to the map.
        self.bits.get(i / 64).is_none_or(|b| b >> (i % 64) & 1 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_word_of_the_set_may_be_held(words in prop::collection::vec(any::<u64>(), 0..300)) {
            let f = WordFilter::build(words.iter().copied());
            for w in &words {
                prop_assert!(f.may_hold(*w));
            }
        }
    }

    #[test]
    fn most_words_outside_a_small_set_are_filtered_out() {
        let set: Vec<u64> = (1..=4u64).map(|i| i << 24 | 0x0a).collect();
        let f = WordFilter::build(set.iter().copied());
        let outside = (0..10_000u64).map(|i| 0xc000_0000 + i * 7919);
        let passed = outside
            .filter(|&w| !set.contains(&w) && f.may_hold(w))
            .count();
        assert!(passed < 200, "{passed} of 10000 passed a filter of 4 words");
    }

    #[test]
    fn an_empty_filter_holds_nothing() {
        let f = WordFilter::default();
        assert!((0..1000u64).all(|w| !f.may_hold(w)));
    }
}
