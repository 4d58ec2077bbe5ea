//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Hand-written because the rewrites need the incremental form on raw header bytes, which the
//! packet crates do not expose, and it is a handful of lines.

/// One's-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
/// not folded. Add several partial sums, then [`fold`].
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold64(acc)
}

/// Whether `data` (a header whose checksum field is included) sums to 0xffff: the
/// verification of [`sum`] and [`fold`], over 32-bit words. 2^32 = 1 modulo 0xffff, so a
/// sum of 32-bit words folds to the same value as the sum of their 16-bit halves, and both
/// are 0 only for all-zero data: the same verdict, bit for bit, in a quarter of the adds.
#[inline]
pub fn verifies(data: &[u8]) -> bool {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    acc += u64::from(sum(words.remainder()));
    fold(fold64(acc)) == 0xffff
}

/// [`verifies`] for a 20-byte IPv4 header without options: five 32-bit words summed as they
/// lie in memory (little-endian loads). The one's-complement sum commutes with swapping the
/// bytes of every word (RFC 1071 2(B)), and the sum that verifies, 0xffff, reads the same in
/// both orders: the same verdict as [`verifies`], bit for bit (a test below checks it).
#[inline(always)]
pub fn verifies20(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    // Below 5 * 2^32: one end-around carry brings it under 2^32 + 5, whose carry out of the
    // low half (0 or 1) no longer overflows it.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc as u32).wrapping_add((acc >> 32) as u32);
    fold(acc) == 0xffff
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Fold a partial sum to 16 bits (not complemented). Two end-around-carry steps suffice
/// for any `u32` (after the first the sum is at most 0x1fffe), and each leaves a sum that
/// already fits unchanged: no loop, no branch.
#[inline]
pub fn fold(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum field value for data whose partial sum is `acc`.
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// Partial sum of the IPv4 pseudo-header.
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u32 {
    sum(src) + sum(dst) + u32::from(proto) + u32::from(len)
}

/// Partial sum of the IPv6 pseudo-header.
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], next_header: u8, len: u32) -> u32 {
    sum(src) + sum(dst) + u32::from(next_header) + (len >> 16) + (len & 0xffff)
}

/// RFC 1624 eqn. 3: the new checksum after the covered data changed from `old` to `new`
/// (equal lengths, aligned on 16-bit words inside the covered data): HC' = ~(~HC + ~m + m').
pub fn update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    apply(checksum, delta_bytes(old, new))
}

/// [`delta32`] for a field of any even length (an IPv6 address): what [`update`] adds for
/// it, to be summed with other deltas and [`apply`]'d once. At most 64 KiB of data.
#[inline]
pub fn delta_bytes(old: &[u8], new: &[u8]) -> u32 {
    u32::from(!fold(sum(old))) + sum(new)
}

/// [`update`] for one 16-bit word, on integers (the same result, bit for bit).
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    // `fold(sum(old))` of one word is the word itself.
    !fold(u32::from(!checksum) + u32::from(!old) + u32::from(new))
}

/// [`update`] for a 32-bit field (two aligned words, e.g. an IPv4 address), on integers:
/// the same result as `update(checksum, &old.to_be_bytes(), &new.to_be_bytes())`.
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    let old_sum = fold((old >> 16) + (old & 0xffff));
    !fold(u32::from(!checksum) + u32::from(!old_sum) + (new >> 16) + (new & 0xffff))
}

/// The part of an [`update`]'s sum that a 32-bit field's change from `old` to `new` adds:
/// `!fold(sum(old)) + sum(new)`. Several changes to one checksum can be summed and folded
/// once, `!fold(!checksum + delta1 + delta2 + ...)`: the same result, bit for bit, as
/// applying [`update`] for each in turn (a fold is 0 only for a zero sum, and otherwise
/// the one value in 1..=0xffff congruent to it, so folding between the steps changes
/// nothing).
#[inline]
pub fn delta32(old: u32, new: u32) -> u32 {
    u32::from(!fold((old >> 16) + (old & 0xffff))) + (new >> 16) + (new & 0xffff)
}

/// [`delta32`] for one 16-bit word.
#[inline]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// The checksum after changes whose [`delta32`] / [`delta16`] sum to `delta` (at most a
/// few of them: the sum must fit in 32 bits).
#[inline]
pub fn apply(checksum: u16, delta: u32) -> u16 {
    !fold(u32::from(!checksum) + delta)
}

/// [`apply`] for a UDP checksum (see [`update_udp`]).
#[inline]
pub fn apply_udp(checksum: u16, delta: u32) -> u16 {
    udp_result(checksum, apply(checksum, delta))
}

/// [`update_udp`] for one 16-bit word.
#[inline]
pub fn update16_udp(checksum: u16, old: u16, new: u16) -> u16 {
    udp_result(checksum, update16(checksum, old, new))
}

/// [`update_udp`] for a 32-bit field.
#[inline]
pub fn update32_udp(checksum: u16, old: u32, new: u32) -> u16 {
    udp_result(checksum, update32(checksum, old, new))
}

/// A UDP checksum after an update: 0 ("none") stays 0, a computed 0 is sent as 0xffff.
#[inline]
fn udp_result(checksum: u16, updated: u16) -> u16 {
    match (checksum, updated) {
        (0, _) => 0,
        (_, 0) => 0xffff,
        (_, c) => c,
    }
}

/// Like [`update`] for a UDP checksum, where 0 means "no checksum" (IPv4) and a computed 0 is
/// sent as 0xffff (RFC 768).
pub fn update_udp(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    if checksum == 0 {
        return 0;
    }
    match update(checksum, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifies20_is_verifies() {
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Half of them with a correct checksum.
            if x & 1 == 0 {
                h[10..12].copy_from_slice(&[0, 0]);
                let c = finish(sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(verifies20(&h), verifies(&h), "{h:02x?}");
        }
        assert_eq!(verifies20(&[0; 20]), verifies(&[0; 20]));
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    proptest! {
        /// The integer forms answer bit for bit as the byte-slice ones.
        #[test]
        fn word_updates_match_slice_updates(c in any::<u16>(), old in any::<u32>(), new in any::<u32>()) {
            let (o16, n16) = (old as u16, new as u16);
            prop_assert_eq!(update16(c, o16, n16), update(c, &o16.to_be_bytes(), &n16.to_be_bytes()));
            prop_assert_eq!(update32(c, old, new), update(c, &old.to_be_bytes(), &new.to_be_bytes()));
            prop_assert_eq!(update16_udp(c, o16, n16), update_udp(c, &o16.to_be_bytes(), &n16.to_be_bytes()));
            prop_assert_eq!(update32_udp(c, old, new), update_udp(c, &old.to_be_bytes(), &new.to_be_bytes()));
        }

        /// The 32-bit-word verification is the 16-bit one.
        #[test]
        fn verifies_matches_sum(mut data in proptest::collection::vec(any::<u8>(), 0..64), fix in any::<bool>()) {
            if fix && data.len() >= 12 {
                // Make it verify: the field at 10..12 (the IPv4 header's) holds the checksum.
                data[10] = 0;
                data[11] = 0;
                let c = finish(sum(&data));
                data[10..12].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(verifies(&data), fold(sum(&data)) == 0xffff);
        }

        /// Deltas summed and applied once are the updates applied in turn.
        #[test]
        fn summed_deltas_match_updates_in_turn(c in any::<u16>(), old in any::<u32>(), new in any::<u32>(), op in any::<u16>(), np in any::<u16>()) {
            let d = delta32(old, new) + delta16(op, np);
            prop_assert_eq!(apply(c, d), update16(update32(c, old, new), op, np));
            prop_assert_eq!(apply_udp(c, d), update16_udp(update32_udp(c, old, new), op, np));
        }

        /// The branch-free fold is the loop it replaced.
        #[test]
        fn fold_matches_loop(acc in any::<u32>()) {
            let mut a = acc;
            while a > 0xffff {
                a = (a & 0xffff) + (a >> 16);
            }
            prop_assert_eq!(fold(acc), a as u16);
        }

        #[test]
        fn incremental_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 4..200),
            at in any::<usize>(),
            new in proptest::collection::vec(any::<u8>(), 2..20),
        ) {
            // Rewrite an even-aligned field and compare the incremental result with a recompute.
            let len = (new.len() / 2 * 2).min(data.len() / 2 * 2);
            prop_assume!(len >= 2);
            let start = (at % (data.len() / 2 - len / 2 + 1)) * 2;
            let before = finish(sum(&data));
            let old = data[start..start + len].to_vec();
            data[start..start + len].copy_from_slice(&new[..len]);
            let after = finish(sum(&data));
            let incremental = update(before, &old, &new[..len]);
            // 0x0000 and 0xffff are the same value in one's complement; RFC 1624 shows the
            // incremental form never yields -0 when the data is not all zero.
            prop_assert!(incremental == after || (fold(u32::from(incremental)) ^ after) == 0xffff
                && (incremental == 0xffff || incremental == 0));
        }
    }
}
