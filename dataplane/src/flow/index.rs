//! The flow table's hash index: a bucketised cuckoo table of (tag, reference) pairs, sized once.
//!
//! Each key has two candidate buckets of [`WAYS`] slots; one bucket is one 64-byte cache line
//! holding eight 32-bit tags and eight 32-bit references. A lookup reads at most two lines of
//! index (plus the referenced key, elsewhere) and compares the eight tags of a line at once; a
//! 31-bit tag makes a false tag match (a wasted key compare) a 1 in 2^28 event per lookup. This
//! is the layout of DPDK's `rte_hash` with wider tags.
//!
//! * Primary bucket: the high 32 bits of the hash reduced to `n` buckets by multiply-shift
//!   (any `n`, no power of two, so memory follows the requested capacity).
//! * Tag: the low 32 bits of the hash with bit 0 forced to 1; tag 0 marks an empty slot.
//! * Secondary bucket: primary + `offset(tag)` modulo `n`, with `offset` in `1..n`. Because it
//!   depends on the tag alone, an entry can move to its other bucket without its key or
//!   hash: that is what cuckoo displacement needs. The reference's top bit records which of
//!   its two buckets an entry sits in.
//! * Insert: a free slot of the primary, else of the secondary, else a breadth-first search
//!   (bounded, queue on the stack) for a chain of entries that each move to their other
//!   bucket, ending at a free slot; the chain is found before anything moves, so a failed
//!   insert leaves the index untouched.
//! * Delete: clear the tag. No tombstones, no backward shift: cuckoo lookups never probe past
//!   the two buckets, so deleting can never hide another key.

use super::mem::{Pages, Zeroable, ZeroedSlice};
use crate::prefetch::prefetch_line;

/// Slots per bucket.
pub(crate) const WAYS: usize = 8;

/// Breadth-first search queue length (buckets): 2 roots + 16 + 128 + 110, about four moves deep.
const BFS_MAX: usize = 256;
/// Longest displacement chain the search may return (bounded by the queue depth).
const PATH_MAX: usize = 8;
/// Reference bit: the entry sits in its secondary bucket.
const IN_ALT: u32 = 1 << 31;
/// Largest payload a reference can carry.
pub(crate) const MAX_PAYLOAD: u32 = IN_ALT - 1;
/// Parent of a root node.
const ROOT: u16 = u16::MAX;

/// One cache line: eight tags, then eight references.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; WAYS],
    refs: [u32; WAYS],
}

// SAFETY: two arrays of integers; all zeros is an empty bucket (tags are never 0).
unsafe impl Zeroable for Bucket {}

impl Bucket {
    /// Bit `i` set when `tags[i] == tag`. On x86_64, two SSE2 compares of four tags and two
    /// mask extractions (SSE2 is part of the x86_64 baseline); the loop LLVM did not
    /// vectorise cost ~27 instructions a bucket in callgrind. Elsewhere, that loop.
    #[inline]
    fn matches(&self, tag: u32) -> u32 {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            use std::arch::x86_64::{
                _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_movemask_ps, _mm_set1_epi32, _mm_set_epi32,
            };
            let t = &self.tags;
            let lane = |i: usize| t[i] as i32;
            // SAFETY: the intrinsics need SSE and SSE2, which this block is compiled only with
            // (`target_feature = "sse2"`, part of the x86_64 baseline); they compute on values,
            // with no memory access of their own.
            let (lo, hi) = unsafe {
                let want = _mm_set1_epi32(tag as i32);
                let lo = _mm_set_epi32(lane(3), lane(2), lane(1), lane(0));
                let hi = _mm_set_epi32(lane(7), lane(6), lane(5), lane(4));
                (
                    _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, want))),
                    _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, want))),
                )
            };
            (lo as u32) | (hi as u32) << 4
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            let mut m = 0u32;
            for (i, &t) in self.tags.iter().enumerate() {
                m |= u32::from(t == tag) << i;
            }
            m
        }
    }

    #[inline]
    fn empty_way(&self) -> Option<usize> {
        let m = self.matches(0);
        (m != 0).then(|| m.trailing_zeros() as usize)
    }
}

/// A BFS node: a full bucket reached by moving the entry in `way` of the parent's bucket.
#[derive(Clone, Copy)]
struct Node {
    bucket: u32,
    parent: u16,
    way: u8,
}

/// The index. Slot positions (`bucket * WAYS + way`) are stable until the index moves an
/// entry, which it reports through the `on_move` callback of [`CuckooIndex::insert`].
pub(crate) struct CuckooIndex {
    buckets: ZeroedSlice<Bucket>,
    n: u32,
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash as u32) | 1
}

impl CuckooIndex {
    /// An index of `n_buckets` buckets (at least 2, at most `u32::MAX / WAYS`).
    pub(crate) fn new(n_buckets: usize, pages: Pages) -> Self {
        let n = n_buckets.clamp(2, u32::MAX as usize / WAYS);
        CuckooIndex {
            buckets: ZeroedSlice::new(n, pages),
            n: n as u32,
        }
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Write every page of the bucket array from the calling core (see `flow::mem`).
    pub(crate) fn prefault(&mut self) {
        self.buckets.prefault();
    }

    /// Bytes of the bucket array.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    #[inline]
    fn primary(&self, hash: u64) -> u32 {
        (((hash >> 32) * u64::from(self.n)) >> 32) as u32
    }

    #[inline]
    fn offset(&self, tag: u32) -> u32 {
        let mixed = u64::from(tag.wrapping_mul(0x9e37_79b1));
        1 + ((mixed * u64::from(self.n - 1)) >> 32) as u32
    }

    /// The other bucket of an entry with `tag` that sits in `bucket` (`in_alt`: its secondary).
    #[inline]
    fn other(&self, bucket: u32, tag: u32, in_alt: bool) -> u32 {
        let off = self.offset(tag);
        if in_alt {
            if bucket >= off {
                bucket - off
            } else {
                bucket + self.n - off
            }
        } else {
            let b = bucket + off;
            if b >= self.n {
                b - self.n
            } else {
                b
            }
        }
    }

    #[inline]
    fn search(
        &self,
        bucket: u32,
        tag: u32,
        eq: &mut impl FnMut(u32) -> bool,
    ) -> Option<(u32, u32)> {
        let b = &self.buckets[bucket as usize];
        let mut m = b.matches(tag);
        while m != 0 {
            let way = m.trailing_zeros() as usize;
            let payload = b.refs[way] & MAX_PAYLOAD;
            if eq(payload) {
                return Some((bucket * WAYS as u32 + way as u32, payload));
            }
            m &= m - 1;
        }
        None
    }

    /// The slot position and payload of the entry with this hash for which `eq(payload)` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<(u32, u32)> {
        let tag = tag_of(hash);
        let b1 = self.primary(hash);
        if let Some(hit) = self.search(b1, tag, &mut eq) {
            return Some(hit);
        }
        self.search(self.other(b1, tag, false), tag, &mut eq)
    }

    /// Start loading both candidate buckets of `hash` into the cache (stage 1 of a burst
    /// lookup: issue the misses of all packets, then do the lookups).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        let tag = tag_of(hash);
        let b1 = self.primary(hash);
        prefetch_line(&self.buckets[b1 as usize]);
        prefetch_line(&self.buckets[self.other(b1, tag, false) as usize]);
    }

    /// The payload of the first slot whose tag matches `hash` (primary bucket first): the
    /// entry a lookup will most likely compare, for stage 2 of a burst lookup.
    #[inline]
    pub(crate) fn first_candidate(&self, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let b1 = self.primary(hash);
        for b in [b1, self.other(b1, tag, false)] {
            let bucket = &self.buckets[b as usize];
            let m = bucket.matches(tag);
            if m != 0 {
                return Some(bucket.refs[m.trailing_zeros() as usize] & MAX_PAYLOAD);
            }
        }
        None
    }

    /// Clears the slot at `pos`.
    #[inline]
    pub(crate) fn remove_at(&mut self, pos: u32) {
        let (b, w) = (pos as usize / WAYS, pos as usize % WAYS);
        if let Some(bucket) = self.buckets.get_mut(b) {
            bucket.tags[w] = 0;
        }
    }

    fn place(&mut self, bucket: u32, way: usize, tag: u32, reference: u32) -> u32 {
        let b = &mut self.buckets[bucket as usize];
        b.tags[way] = tag;
        b.refs[way] = reference;
        bucket * WAYS as u32 + way as u32
    }

    /// Moves the entry at (`from`, `fw`) into the free slot (`to`, `tw`) of its other bucket.
    fn shift(
        &mut self,
        from: u32,
        fw: usize,
        to: u32,
        tw: usize,
        on_move: &mut impl FnMut(u32, u32),
    ) {
        let src = &mut self.buckets[from as usize];
        let (tag, reference) = (src.tags[fw], src.refs[fw]);
        src.tags[fw] = 0;
        let pos = self.place(to, tw, tag, reference ^ IN_ALT);
        on_move(reference & MAX_PAYLOAD, pos);
    }

    /// Inserts a payload (at most [`MAX_PAYLOAD`]) under `hash` without checking for
    /// duplicates; returns its slot position, or `None` (index unchanged) when no slot can be
    /// freed. `on_move(payload, new_pos)` reports every other entry the insert relocated.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        payload: u32,
        mut on_move: impl FnMut(u32, u32),
    ) -> Option<u32> {
        let tag = tag_of(hash);
        let payload = payload & MAX_PAYLOAD;
        let b1 = self.primary(hash);
        if let Some(w) = self.buckets[b1 as usize].empty_way() {
            return Some(self.place(b1, w, tag, payload));
        }
        let b2 = self.other(b1, tag, false);
        if let Some(w) = self.buckets[b2 as usize].empty_way() {
            return Some(self.place(b2, w, tag, payload | IN_ALT));
        }
        self.displace(b1, b2, tag, payload, &mut on_move)
    }

    /// Breadth-first search for a displacement chain, then the moves, last one first.
    fn displace(
        &mut self,
        b1: u32,
        b2: u32,
        tag: u32,
        payload: u32,
        on_move: &mut impl FnMut(u32, u32),
    ) -> Option<u32> {
        let root = |bucket| Node {
            bucket,
            parent: ROOT,
            way: 0,
        };
        let mut queue = [root(0); BFS_MAX];
        queue[0] = root(b1);
        queue[1] = root(b2);
        let (mut head, mut tail) = (0usize, 2usize);
        while head < tail {
            let node = queue[head];
            let bucket = self.buckets[node.bucket as usize];
            for way in 0..WAYS {
                let to = self.other(
                    node.bucket,
                    bucket.tags[way],
                    bucket.refs[way] & IN_ALT != 0,
                );
                if let Some(free) = self.buckets[to as usize].empty_way() {
                    if self.simple_path(&queue, head, way) {
                        return Some(
                            self.apply(&queue, head, way, to, free, tag, payload, on_move),
                        );
                    }
                } else if tail < BFS_MAX {
                    queue[tail] = Node {
                        bucket: to,
                        parent: head as u16,
                        way: way as u8,
                    };
                    tail += 1;
                }
            }
            head += 1;
        }
        None
    }

    /// Whether the chain ending at (`queue[at]`, `way`) visits every slot at most once (moving
    /// an entry out of a slot and later moving "the entry of that slot" would move a stranger).
    fn simple_path(&self, queue: &[Node; BFS_MAX], at: usize, way: usize) -> bool {
        let mut slots = [0u32; PATH_MAX];
        let mut len = 0;
        let (mut node, mut way) = (at, way);
        loop {
            if len == PATH_MAX {
                return false;
            }
            let slot = queue[node].bucket * WAYS as u32 + way as u32;
            if slots[..len].contains(&slot) {
                return false;
            }
            slots[len] = slot;
            len += 1;
            let n = queue[node];
            if n.parent == ROOT {
                return true;
            }
            (node, way) = (usize::from(n.parent), usize::from(n.way));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        queue: &[Node; BFS_MAX],
        at: usize,
        way: usize,
        to: u32,
        free: usize,
        tag: u32,
        payload: u32,
        on_move: &mut impl FnMut(u32, u32),
    ) -> u32 {
        self.shift(queue[at].bucket, way, to, free, on_move);
        let (mut node, mut hole) = (at, way);
        while queue[node].parent != ROOT {
            let n = queue[node];
            let parent = queue[usize::from(n.parent)];
            self.shift(parent.bucket, usize::from(n.way), n.bucket, hole, on_move);
            (node, hole) = (usize::from(n.parent), usize::from(n.way));
        }
        // Roots: queue[0] is the new key's primary bucket, queue[1] its secondary.
        let alt = if node == 1 { IN_ALT } else { 0 };
        self.place(queue[node].bucket, hole, tag, payload | alt)
    }

    /// Test support: every occupied slot as (position, tag, payload, in its secondary bucket).
    #[cfg(test)]
    pub(crate) fn occupied(&self) -> Vec<(u32, u32, u32, bool)> {
        let mut v = Vec::new();
        for (b, bucket) in self.buckets.iter().enumerate() {
            for w in 0..WAYS {
                if bucket.tags[w] != 0 {
                    v.push((
                        (b * WAYS + w) as u32,
                        bucket.tags[w],
                        bucket.refs[w] & MAX_PAYLOAD,
                        bucket.refs[w] & IN_ALT != 0,
                    ));
                }
            }
        }
        v
    }

    /// Test support: whether `pos` is where an entry with `hash` may sit, given its alt bit.
    #[cfg(test)]
    pub(crate) fn slot_fits(&self, pos: u32, hash: u64, in_alt: bool) -> bool {
        let tag = tag_of(hash);
        let b1 = self.primary(hash);
        let b = if in_alt {
            self.other(b1, tag, false)
        } else {
            b1
        };
        pos / WAYS as u32 == b && self.buckets[b as usize].tags[pos as usize % WAYS] == tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mix(x: u64) -> u64 {
        // splitmix64
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn matches_is_the_per_way_compare() {
        let mut b = Bucket::default();
        for pattern in 0u32..256 {
            for (i, t) in b.tags.iter_mut().enumerate() {
                *t = if pattern & (1 << i) != 0 {
                    7
                } else {
                    9 + i as u32
                };
            }
            assert_eq!(b.matches(7), pattern);
            assert_eq!(b.matches(0), 0);
        }
    }

    #[test]
    fn other_is_an_involution_and_differs() {
        let idx = CuckooIndex::new(7, Pages::Small);
        for tag in (0..1000u32).map(|t| t.wrapping_mul(2_654_435_761) | 1) {
            for b in 0..7 {
                let o = idx.other(b, tag, false);
                assert_ne!(o, b);
                assert!(o < 7);
                assert_eq!(idx.other(o, tag, true), b);
            }
        }
    }

    #[test]
    fn fills_past_95_percent_with_displacement_and_stays_consistent() {
        let mut idx = CuckooIndex::new(1000, Pages::Small);
        let mut pos: HashMap<u32, u32> = HashMap::new();
        let target = idx.slots() * 95 / 100;
        for p in 0..target as u32 {
            let got = idx.insert(mix(u64::from(p)), p, |moved, new| {
                pos.insert(moved, new);
            });
            let at = got.unwrap_or_else(|| {
                panic!(
                    "insert {p} failed at {:.3} load",
                    f64::from(p) / idx.slots() as f64
                )
            });
            pos.insert(p, at);
        }
        for (&p, &at) in &pos {
            assert_eq!(idx.find(mix(u64::from(p)), |q| q == p), Some((at, p)));
        }
        // Remove half, find the rest, find none of the removed.
        for p in (0..target as u32).step_by(2) {
            idx.remove_at(pos[&p]);
        }
        for p in 0..target as u32 {
            let found = idx.find(mix(u64::from(p)), |q| q == p);
            assert_eq!(found.is_some(), p % 2 == 1, "payload {p}");
        }
    }

    #[test]
    fn failed_insert_changes_nothing() {
        let mut idx = CuckooIndex::new(2, Pages::Small);
        for p in 0..16u32 {
            assert!(idx.insert(mix(u64::from(p)), p, |_, _| {}).is_some());
        }
        let before = idx.occupied();
        assert!(idx
            .insert(mix(99), 99, |_, _| panic!("nothing may move"))
            .is_none());
        assert_eq!(idx.occupied(), before);
    }
}
