//! One key of a connection and everything a packet of that direction needs, in one slot of a
//! cuckoo bucket: the 5-tuple as the packet carries it, the connection's state, its real
//! server and its expiry. A packet of a tracked connection thus reads one cache line of the
//! table (its bucket) and writes the same line (the expiry).
//!
//! IPv4 slots are 32 bytes, two to a 64-byte bucket; IPv6 slots 56 bytes, two to a 128-byte
//! bucket. The two keys of a NAT connection (client -> VIP and real server -> client) sit in
//! two slots linked by `partner`; both carry the connection's state, and each its own expiry
//! (the connection lives until the later of the two: see `table`).

use super::hash::TableHash;
use super::mem::Zeroable;
use super::FlowKey;

/// The addresses of a key, source then destination, as the IP header carries them.
pub(crate) trait Addrs: Copy + Eq + Zeroable + std::fmt::Debug {
    /// The table hash of a key with these addresses and its ports/protocol word.
    fn hash(&self, ports_proto: u64) -> TableHash;
    /// The addresses of a [`FlowKey`] of this family.
    fn of_key(key: &FlowKey) -> Self;
    /// Back to a [`FlowKey`]'s 16-byte (IPv4-mapped) source and destination.
    fn to_key(&self) -> ([u8; 16], [u8; 16]);
}

/// IPv4: source and destination as the header's bytes 12..20, read as one little-endian word.
pub(crate) type V4 = u64;
/// IPv6: source and destination as the header's bytes 8..40, four little-endian words.
pub(crate) type V6 = [u64; 4];

impl Addrs for V4 {
    #[inline(always)]
    fn hash(&self, ports_proto: u64) -> TableHash {
        TableHash::of_words(&[*self, ports_proto])
    }

    #[inline]
    fn of_key(key: &FlowKey) -> Self {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&key.src[12..]);
        b[4..].copy_from_slice(&key.dst[12..]);
        u64::from_le_bytes(b)
    }

    fn to_key(&self) -> ([u8; 16], [u8; 16]) {
        let b = self.to_le_bytes();
        let mapped = |a: &[u8]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(a);
            m
        };
        (mapped(&b[..4]), mapped(&b[4..]))
    }
}

impl Addrs for V6 {
    #[inline(always)]
    fn hash(&self, ports_proto: u64) -> TableHash {
        TableHash::of_words(&[self[0], self[1], self[2], self[3], ports_proto])
    }

    #[inline]
    fn of_key(key: &FlowKey) -> Self {
        let w = |b: &[u8; 16], i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(x)
        };
        [
            w(&key.src, 0),
            w(&key.src, 1),
            w(&key.dst, 0),
            w(&key.dst, 1),
        ]
    }

    fn to_key(&self) -> ([u8; 16], [u8; 16]) {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..8].copy_from_slice(&self[0].to_le_bytes());
        src[8..].copy_from_slice(&self[1].to_le_bytes());
        dst[..8].copy_from_slice(&self[2].to_le_bytes());
        dst[8..].copy_from_slice(&self[3].to_le_bytes());
        (src, dst)
    }
}

// SAFETY: integers: all zeros is valid.
unsafe impl Zeroable for [u64; 4] {}

/// A key of one direction in table form: addresses and ports as on the wire (so the fast path
/// builds it from the headers with two loads), the protocol (never 0 for a live key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key<A> {
    pub(crate) addrs: A,
    /// Source port then destination port, the transport header's first four bytes read as
    /// one little-endian word.
    pub(crate) ports: u32,
    pub(crate) proto: u8,
}

impl<A: Addrs> Key<A> {
    /// The table form of a [`FlowKey`] of this family.
    #[inline]
    pub(crate) fn of(key: &FlowKey) -> Self {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&key.src_port.to_be_bytes());
        p[2..].copy_from_slice(&key.dst_port.to_be_bytes());
        Key {
            addrs: A::of_key(key),
            ports: u32::from_le_bytes(p),
            proto: key.proto,
        }
    }

    /// The [`FlowKey`] it is the table form of.
    pub(crate) fn flow_key(&self) -> FlowKey {
        let (src, dst) = self.addrs.to_key();
        let p = self.ports.to_le_bytes();
        FlowKey {
            src,
            dst,
            src_port: u16::from_be_bytes([p[0], p[1]]),
            dst_port: u16::from_be_bytes([p[2], p[3]]),
            proto: self.proto,
        }
    }

    #[inline(always)]
    pub(crate) fn hash(&self) -> TableHash {
        self.addrs
            .hash(u64::from(self.ports) | u64::from(self.proto) << 32)
    }
}

/// Slot flag: the slot holds the reply key (real server -> client) of a NAT connection.
pub(crate) const REPLY: u8 = 0x01;
/// Slot flag: `partner` is the slot of the connection's other key.
pub(crate) const PAIRED: u8 = 0x02;
/// Slot flag: a packet of this slot's direction without SYN, FIN or RST changes nothing but
/// the expiry (the state machine would leave state and memory as they are): the fast path
/// may refresh the expiry alone. Kept current by every write of the state.
pub(crate) const REFRESH_ONLY: u8 = 0x04;

/// No slot (an unpaired slot's `partner`).
pub(crate) const NIL: u32 = u32::MAX;

/// One key of a connection in the table. All zeros is a free slot (`proto` 0).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct Slot<A> {
    pub(crate) addrs: A,
    pub(crate) ports: u32,
    /// The key's protocol; 0 marks a free slot.
    pub(crate) proto: u8,
    /// The connection's [`TcpState`](super::TcpState) (both slots hold it).
    pub(crate) state: u8,
    /// The state machine's memory and reporting bits (both slots hold them).
    pub(crate) bits: u8,
    /// [`REPLY`], [`PAIRED`], [`REFRESH_ONLY`].
    pub(crate) flags: u8,
    /// When this direction last made the connection live until: the caller's millisecond
    /// clock, truncated to 32 bits and compared with wrapping arithmetic (timeouts are at most
    /// a week; the sweep visits every slot far more often than every 24 days).
    pub(crate) expires: u32,
    /// The caller's backend id.
    pub(crate) backend: u32,
    /// The other key's slot (with [`PAIRED`]).
    pub(crate) partner: u32,
    /// The connection's number (both slots hold it): tells a connection from a later one in
    /// the same slot.
    pub(crate) serial: u32,
}

// SAFETY: integers and integer arrays: all zeros is a valid, free slot.
unsafe impl<A: Zeroable> Zeroable for Slot<A> {}

impl<A: Addrs> Slot<A> {
    /// Whether the slot holds `key`. A free slot holds no key (its protocol is 0).
    #[inline(always)]
    pub(crate) fn holds(&self, key: &Key<A>) -> bool {
        self.addrs == key.addrs && self.ports == key.ports && self.proto == key.proto
    }

    #[inline(always)]
    pub(crate) fn is_free(&self) -> bool {
        self.proto == 0
    }

    #[inline]
    pub(crate) fn key(&self) -> Key<A> {
        Key {
            addrs: self.addrs,
            ports: self.ports,
            proto: self.proto,
        }
    }

    #[inline(always)]
    pub(crate) fn is_reply(&self) -> bool {
        self.flags & REPLY != 0
    }

    #[inline(always)]
    pub(crate) fn partner(&self) -> Option<u32> {
        (self.flags & PAIRED != 0).then_some(self.partner)
    }
}

/// Whether `expires` is still ahead of `now` (both wrapping 32-bit milliseconds).
#[inline(always)]
pub(crate) fn ahead(expires: u32, now: u32) -> bool {
    (expires.wrapping_sub(now) as i32) > 0
}

/// Slots per bucket.
pub(crate) const WAYS: usize = 2;

/// One bucket: two slots; 64 bytes (one cache line) for IPv4.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Bucket<A> {
    pub(crate) slots: [Slot<A>; WAYS],
}

// SAFETY: two slots, each valid as all zeros.
unsafe impl<A: Zeroable> Zeroable for Bucket<A> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn an_ipv4_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot<V4>>(), 32);
        assert_eq!(std::mem::size_of::<Bucket<V4>>(), 64);
        assert_eq!(std::mem::align_of::<Bucket<V4>>(), 64);
        assert_eq!(std::mem::size_of::<Bucket<V6>>(), 128);
    }

    #[test]
    fn keys_round_trip_both_families() {
        let k4 = FlowKey::v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 7),
            40000,
            443,
            6,
        );
        let t4 = Key::<V4>::of(&k4);
        assert_eq!(t4.flow_key(), k4);
        // The wire order: the header's bytes 12..20 and the ports' bytes, little-endian words.
        assert_eq!(t4.addrs.to_le_bytes(), [192, 0, 2, 1, 198, 51, 100, 7]);
        assert_eq!(t4.ports.to_le_bytes(), [0x9c, 0x40, 0x01, 0xbb]);
        let k6 = FlowKey::v6(
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap(),
            1,
            2,
            17,
        );
        let t6 = Key::<V6>::of(&k6);
        assert_eq!(t6.flow_key(), k6);
        assert_ne!(t6.hash(), Key::<V6>::of(&k6.reversed()).hash());
    }

    #[test]
    fn expiry_compares_across_the_wrap() {
        assert!(ahead(5, u32::MAX - 5));
        assert!(!ahead(u32::MAX - 5, 5));
        assert!(!ahead(7, 7));
    }
}
