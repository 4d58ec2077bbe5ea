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

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Fold a partial sum to 16 bits (not complemented).
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
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
    let mut acc = u32::from(!checksum);
    acc += u32::from(!fold(sum(old))) + sum(new);
    !fold(acc)
}

/// [`update`] for one 16-bit word.
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    update(checksum, &old.to_be_bytes(), &new.to_be_bytes())
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
