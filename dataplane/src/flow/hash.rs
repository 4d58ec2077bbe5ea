//! The flow table's hash: CRC32C of the key's 64-bit words with the SSE4.2 `crc32`
//! instruction (one 3-cycle instruction per word; the build's CPU baseline,
//! `.cargo/config.toml`). The primary bucket comes from its high bits; the secondary from the
//! bits of its product with an odd constant, so keys that share a primary bucket (their
//! hashes share the high bits) spread over different secondary ones. (A second CRC chain with
//! another seed would not do: CRC is linear, so two chains over the same words differ by a
//! constant, and every key of a primary bucket would share one secondary bucket too.)
//!
//! This hash only places keys in this worker's table (and picks the owning worker and a
//! tunnel's per-flow outer source); nothing outside the box depends on it. The consistent
//! hash that must agree between boxes behind ECMP is [`FlowKey::hash`](super::FlowKey::hash)
//! (xxh3), computed only when a real server is scheduled.
//!
//! CRC is linear, so anyone who knows it can craft keys that share both buckets, seeded or
//! not: such keys find no room and their connections go statelessly by the consistent hash
//! (`flow_table_full`); no existing entry is ever evicted by an insert. DPDK's `rte_hash`
//! makes the same trade.

/// The seed of the chain (any constant).
const SEED: u32 = 0x7669_7064; // "vipd"

/// A key's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TableHash(pub(crate) u32);

impl TableHash {
    /// The hash of a key given as 64-bit words.
    #[inline(always)]
    pub(crate) fn of_words(words: &[u64]) -> TableHash {
        let mut h = SEED;
        for &w in words {
            h = crc32c_u64(h, w);
        }
        TableHash(h)
    }

    /// The 32 bits that pick the primary bucket.
    #[inline(always)]
    pub(crate) fn primary(self) -> u32 {
        self.0
    }

    /// The 32 bits that pick the secondary bucket: the high half of the hash times an odd
    /// constant (Fibonacci hashing), in which every bit of the hash takes part.
    #[inline(always)]
    pub(crate) fn secondary(self) -> u32 {
        (u64::from(self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
    }

    /// The hash as 32 bits (a tunnel's per-flow outer source and flow label).
    #[inline(always)]
    pub fn bits(self) -> u32 {
        self.0
    }

    /// The raw value (handed to the worker that owns a steered frame's connection).
    #[inline(always)]
    pub fn raw(self) -> u64 {
        u64::from(self.0)
    }

    /// A hash handed over as [`raw`](TableHash::raw).
    #[inline(always)]
    pub fn from_raw(raw: u64) -> TableHash {
        TableHash(raw as u32)
    }
}

/// The seed of the owner hash.
const SEED_OWNER: u32 = 0x6f77_6e72; // "ownr"

/// A hash of a client endpoint alone (source address and port of a request, destination of a
/// NAT reply), in the flow key's form (`port` in host order). Both directions of a NAT
/// connection carry the endpoint, so it picks the worker that owns the connection whichever
/// queue the NIC delivers a packet to. Box-local, like the table hash.
#[inline]
pub fn owner_hash(addr: &[u8; 16], port: u16) -> u32 {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&addr[i..i + 8]);
        u64::from_le_bytes(w)
    };
    if crate::wire::addr::is_mapped(addr) {
        owner_hash4(
            (word(8) >> 32) as u32,
            u16::from_le_bytes(port.to_be_bytes()),
        )
    } else {
        let h = crc32c_u64(crc32c_u64(SEED_OWNER, word(0)), word(8));
        crc32c_u64(h, u64::from(port))
    }
}

/// [`owner_hash`] of an IPv4 endpoint as the headers carry it (the address's and the port's
/// bytes, little-endian loads).
#[inline(always)]
pub(crate) fn owner_hash4(addr: u32, port: u16) -> u32 {
    crc32c_u64(SEED_OWNER, u64::from(addr) | u64::from(port) << 32)
}

/// One step of CRC32C over eight bytes (little-endian), as the SSE4.2 `crc32` instruction
/// computes it: no initial or final inversion.
#[inline(always)]
pub(crate) fn crc32c_u64(crc: u32, word: u64) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse4.2"))]
    {
        // SAFETY: `_mm_crc32_u64` needs SSE4.2, which this block is compiled only with
        // (`target_feature = "sse4.2"`, the build's baseline); it computes on values.
        unsafe { std::arch::x86_64::_mm_crc32_u64(u64::from(crc), word) as u32 }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse4.2")))]
    {
        soft::crc32c_u64(crc, word)
    }
}

/// The software twin of the instruction, bit for bit: builds without SSE4.2 (a fuzzer's own
/// RUSTFLAGS, another architecture) hash exactly as the release build does. Written by hand:
/// the crc32c crates apply the standard's inversions and dispatch at run time; this is eight
/// table lookups.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse4.2"),
    allow(dead_code)
)]
pub(crate) mod soft {
    /// CRC32C's reflected polynomial (Castagnoli).
    const POLY: u32 = 0x82f6_3b78;

    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };

    /// [`super::crc32c_u64`] in software.
    pub(crate) fn crc32c_u64(mut crc: u32, word: u64) -> u32 {
        for b in word.to_le_bytes() {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn software_twin_is_crc32c() {
        // CRC32C("123456789") = 0xe3069283 with the standard's inversions (RFC 3720 B.4).
        let data = *b"12345678";
        let mut crc = !0u32;
        crc = soft::crc32c_u64(crc, u64::from_le_bytes(data));
        // The ninth byte, through the table directly: one byte of the same recurrence.
        let mut last = crc;
        last = soft_byte(last, b'9');
        assert_eq!(!last, 0xe306_9283);
    }

    fn soft_byte(crc: u32, b: u8) -> u32 {
        // A word whose first byte is `b` followed by zero bytes differs from one byte of CRC by
        // seven zero bytes; the bitwise definition, for one byte, is the reference here.
        let mut c = crc ^ u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
        c
    }

    proptest! {
        /// The instruction (when the build has it) and the software twin agree.
        #[test]
        fn instruction_and_twin_agree(crc in any::<u32>(), word in any::<u64>()) {
            prop_assert_eq!(crc32c_u64(crc, word), soft::crc32c_u64(crc, word));
        }
    }

    #[test]
    fn owner_hash_is_the_same_from_both_forms() {
        let a = std::net::Ipv4Addr::new(192, 0, 2, 7);
        let mapped = a.to_ipv6_mapped().octets();
        assert_eq!(
            owner_hash(&mapped, 40000),
            owner_hash4(
                u32::from_le_bytes(a.octets()),
                u16::from_le_bytes(40000u16.to_be_bytes())
            )
        );
        assert_ne!(owner_hash(&mapped, 40000), owner_hash(&mapped, 40001));
    }

    #[test]
    fn stable_and_order_sensitive() {
        let h = TableHash::of_words(&[1, 2]);
        assert_eq!(h, TableHash::of_words(&[1, 2]));
        assert_ne!(h, TableHash::of_words(&[2, 1]));
    }

    #[test]
    fn keys_of_one_primary_bucket_spread_over_secondary_ones() {
        // 64 buckets; keys whose primary is bucket 0 must not share one secondary bucket.
        let reduce = |h: u32| ((u64::from(h) * 64) >> 32) as u32;
        let mut secondaries = std::collections::HashSet::new();
        for i in 0..20_000u64 {
            let h = TableHash::of_words(&[i, 6]);
            if reduce(h.primary()) == 0 {
                secondaries.insert(reduce(h.secondary()));
            }
        }
        assert!(
            secondaries.len() > 32,
            "{} secondary buckets",
            secondaries.len()
        );
    }
}
