//! The flow table's index: a bucketised cuckoo hash of [`Slot`]s, sized once.
//!
//! Each key has two candidate buckets of [`WAYS`] slots, picked by the two chains of its
//! [`TableHash`] (multiply-shift onto `n` buckets, any `n`). Inserts take a free slot of the
//! primary bucket, else of the secondary, else search breadth-first (bounded, on the stack)
//! for a chain of slots that each move to their other bucket, ending at a free slot; the chain
//! is found before anything moves, so a failed insert leaves the index untouched. A moved
//! slot's partner (the other key of its connection) is told its new place.
//!
//! A lookup reads the primary bucket and, only when the key is not there, the secondary:
//! placing in the primary first keeps most keys there (at the table's sizing, 70 % full when
//! every connection has two keys, about one key in six sits in its secondary bucket), so a
//! hit costs one cache line (IPv4) most of the time. Removing clears the slot: cuckoo lookups
//! never look past the two buckets, so no tombstones are needed.

use super::hash::TableHash;
use super::mem::{Pages, ZeroedSlice};
use super::slot::{Addrs, Bucket, Key, Slot, NIL, WAYS};
use crate::prefetch::prefetch_line;

/// Breadth-first search queue length (buckets): about eight moves deep with two ways.
const BFS_MAX: usize = 256;
/// Longest displacement chain the search may return.
const PATH_MAX: usize = 10;
/// Parent of a root node.
const ROOT: u16 = u16::MAX;

/// A BFS node: a full bucket reached by moving the slot in `way` of the parent's bucket.
#[derive(Clone, Copy)]
struct Node {
    bucket: u32,
    parent: u16,
    way: u8,
}

/// The search's queue. Kept with the index and reused: the search reads only the nodes it
/// wrote, and writing the whole queue afresh for every displacement was most of its cost.
type Queue = [Node; BFS_MAX];

/// A queue's starting contents.
const EMPTY_QUEUE: Queue = [Node {
    bucket: 0,
    parent: ROOT,
    way: 0,
}; BFS_MAX];

/// Where [`Cuckoo::insert`] places a key and then the next one ([`Cuckoo::vacancy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vacancy {
    /// Whether an insert would move other slots (for either key); if so, `first` and `then`
    /// say nothing.
    pub(crate) moves: bool,
    /// The first key's position.
    pub(crate) first: u32,
    /// The next key's position ([`NIL`] when there is none).
    pub(crate) then: u32,
}

/// The index over slots of addresses `A`. A slot's position is `bucket * WAYS + way`; it is
/// stable until an insert moves the slot.
pub(crate) struct Cuckoo<A> {
    buckets: ZeroedSlice<Bucket<A>>,
    n: u32,
    /// The displacement search's queue (`displace` takes it and puts it back).
    queue: Option<Box<Queue>>,
}

/// The position of slot `way` of `bucket`.
#[inline(always)]
fn pos(bucket: u32, way: usize) -> u32 {
    bucket * WAYS as u32 + way as u32
}

impl<A: Addrs> Cuckoo<A> {
    /// An index of `n_buckets` buckets (at least 2, at most `u32::MAX / WAYS`).
    pub(crate) fn new(n_buckets: usize, pages: Pages) -> Self {
        let n = n_buckets.clamp(2, u32::MAX as usize / WAYS - 1);
        Cuckoo {
            buckets: ZeroedSlice::new(n, pages),
            n: n as u32,
            queue: Some(Box::new(EMPTY_QUEUE)),
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

    /// The pages the buckets got.
    pub(crate) fn backing(&self) -> super::mem::Backing {
        self.buckets.backing()
    }

    #[inline(always)]
    fn reduce(&self, h: u32) -> u32 {
        ((u64::from(h) * u64::from(self.n)) >> 32) as u32
    }

    /// The primary bucket of `h`.
    #[inline(always)]
    pub(crate) fn primary(&self, h: TableHash) -> u32 {
        self.reduce(h.primary())
    }

    /// The secondary bucket of `h`: never the primary.
    #[inline(always)]
    pub(crate) fn secondary(&self, h: TableHash) -> u32 {
        let (p, s) = (self.primary(h), self.reduce(h.secondary()));
        if s != p {
            s
        } else if p + 1 == self.n {
            0
        } else {
            p + 1
        }
    }

    /// The slot at `pos` (a position this index handed out: below [`slots`](Self::slots)).
    #[inline(always)]
    pub(crate) fn slot(&self, pos: u32) -> &Slot<A> {
        &self.buckets[pos as usize / WAYS].slots[pos as usize % WAYS]
    }

    /// The slot at `pos`, writable.
    #[inline(always)]
    pub(crate) fn slot_mut(&mut self, pos: u32) -> &mut Slot<A> {
        &mut self.buckets[pos as usize / WAYS].slots[pos as usize % WAYS]
    }

    /// The slot at `pos` if `pos` is a position of this index.
    #[inline]
    pub(crate) fn get(&self, pos: u32) -> Option<&Slot<A>> {
        self.buckets
            .get(pos as usize / WAYS)
            .map(|b| &b.slots[pos as usize % WAYS])
    }

    /// The position of `key` in `bucket`, if it is there.
    #[inline(always)]
    pub(crate) fn find_in(&self, bucket: u32, key: &Key<A>) -> Option<u32> {
        let b = &self.buckets[bucket as usize];
        if b.slots[0].holds(key) {
            Some(pos(bucket, 0))
        } else if b.slots[1].holds(key) {
            Some(pos(bucket, 1))
        } else {
            None
        }
    }

    /// The position of `key` (hash `h`): its primary bucket, then its secondary.
    #[inline(always)]
    pub(crate) fn find(&self, key: &Key<A>, h: TableHash) -> Option<u32> {
        self.find_in(self.primary(h), key)
            .or_else(|| self.find_in(self.secondary(h), key))
    }

    /// Start loading bucket `b` into the cache.
    #[inline(always)]
    pub(crate) fn prefetch(&self, b: u32) {
        if let Some(bucket) = self.buckets.get(b as usize) {
            prefetch_line(bucket);
        }
    }

    /// Frees the slot at `pos`.
    #[inline]
    pub(crate) fn clear(&mut self, pos: u32) {
        if let Some(b) = self.buckets.get_mut(pos as usize / WAYS) {
            b.slots[pos as usize % WAYS].proto = 0;
        }
    }

    #[inline]
    fn free_way(&self, bucket: u32) -> Option<usize> {
        let b = &self.buckets[bucket as usize];
        (0..WAYS).find(|&w| b.slots[w].is_free())
    }

    /// Whether `bucket` holds `key`.
    #[inline(always)]
    fn holds(&self, bucket: u32, key: &Key<A>) -> bool {
        let b = &self.buckets[bucket as usize];
        b.slots[0].holds(key) || b.slots[1].holds(key)
    }

    /// The first free position of `bucket` other than `taken`.
    #[inline(always)]
    fn free_pos(&self, bucket: u32, taken: u32) -> Option<u32> {
        let b = &self.buckets[bucket as usize];
        (0..WAYS)
            .map(|w| pos(bucket, w))
            .zip(&b.slots)
            .find(|&(at, s)| s.is_free() && at != taken)
            .map(|(at, _)| at)
    }

    /// Whether `key` (hash `h`) is in no slot, and if so the position
    /// [`insert`](Self::insert) would give it without moving another slot, position `taken`
    /// aside (`NIL` when both buckets are full): one read of its two buckets answers both
    /// (the secondary's free ways are looked at only when the primary has none).
    #[inline(always)]
    fn free_place(&self, key: &Key<A>, h: TableHash, taken: u32) -> Option<u32> {
        let (p, s) = (self.primary(h), self.secondary(h));
        if self.holds(p, key) || self.holds(s, key) {
            return None;
        }
        Some(
            self.free_pos(p, taken)
                .or_else(|| self.free_pos(s, taken))
                .unwrap_or(NIL),
        )
    }

    /// Whether `key` (hash `h`) is in no slot, and if so where [`insert`](Self::insert) would
    /// place it without moving another slot.
    #[inline(always)]
    pub(crate) fn vacancy(&self, key: &Key<A>, h: TableHash) -> Option<Vacancy> {
        self.free_place(key, h, NIL).map(|first| Vacancy {
            moves: first == NIL,
            first,
            then: NIL,
        })
    }

    /// [`vacancy`](Self::vacancy) of `key` (hash `h`) going in after the key of `v` (a
    /// vacancy of one key): `None` if it is in a slot, else `v` with where `key` goes.
    #[inline(always)]
    pub(crate) fn vacancy_then(&self, v: Vacancy, key: &Key<A>, h: TableHash) -> Option<Vacancy> {
        self.free_place(key, h, v.first).map(|then| Vacancy {
            moves: v.moves || then == NIL,
            first: v.first,
            then,
        })
    }

    /// The other candidate bucket of the key in slot `way` of `bucket`.
    fn other(&self, bucket: u32, way: usize) -> u32 {
        let h = self.buckets[bucket as usize].slots[way].key().hash();
        let p = self.primary(h);
        if p == bucket {
            self.secondary(h)
        } else {
            p
        }
    }

    /// Places `slot` (its key hashing to `h`, not yet in the index) and returns its position,
    /// or `None` (index unchanged) when no room can be made. Slots it moves keep their
    /// partners' links right; `watch`, a position the caller holds, follows its slot if that
    /// one moves.
    pub(crate) fn insert(&mut self, h: TableHash, slot: Slot<A>, watch: &mut u32) -> Option<u32> {
        let b1 = self.primary(h);
        if let Some(w) = self.free_way(b1) {
            return Some(self.place(b1, w, slot));
        }
        let b2 = self.secondary(h);
        if let Some(w) = self.free_way(b2) {
            return Some(self.place(b2, w, slot));
        }
        self.displace(b1, b2, slot, watch)
    }

    fn place(&mut self, bucket: u32, way: usize, slot: Slot<A>) -> u32 {
        self.buckets[bucket as usize].slots[way] = slot;
        pos(bucket, way)
    }

    /// Moves the slot at (`from`, `fw`) into the free slot (`to`, `tw`).
    fn shift(&mut self, from: u32, fw: usize, to: u32, tw: usize, watch: &mut u32) {
        let s = self.buckets[from as usize].slots[fw];
        self.buckets[from as usize].slots[fw].proto = 0;
        let (old, new) = (pos(from, fw), self.place(to, tw, s));
        if let Some(p) = s.partner() {
            if let Some(b) = self.buckets.get_mut(p as usize / WAYS) {
                b.slots[p as usize % WAYS].partner = new;
            }
        }
        if *watch == old {
            *watch = new;
        }
    }

    /// Breadth-first search for a displacement chain, then the moves, last one first.
    fn displace(&mut self, b1: u32, b2: u32, slot: Slot<A>, watch: &mut u32) -> Option<u32> {
        // The index's own queue; a new one only if it were not there (it always is: the
        // search does not recurse).
        let mut queue = self.queue.take().unwrap_or_else(|| Box::new(EMPTY_QUEUE));
        let placed = self.search(&mut queue, b1, b2, slot, watch);
        self.queue = Some(queue);
        placed
    }

    /// [`displace`](Self::displace)'s search, in `queue`.
    fn search(
        &mut self,
        queue: &mut Queue,
        b1: u32,
        b2: u32,
        slot: Slot<A>,
        watch: &mut u32,
    ) -> Option<u32> {
        let root = |bucket| Node {
            bucket,
            parent: ROOT,
            way: 0,
        };
        queue[0] = root(b1);
        queue[1] = root(b2);
        let (mut head, mut tail) = (0usize, 2usize);
        while head < tail {
            let node = queue[head];
            for way in 0..WAYS {
                let to = self.other(node.bucket, way);
                if let Some(free) = self.free_way(to) {
                    if self.simple_path(queue, head, way) {
                        return Some(self.apply(queue, head, way, to, free, slot, watch));
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
    /// a slot out and later moving "the slot there" would move a stranger).
    fn simple_path(&self, queue: &Queue, at: usize, way: usize) -> bool {
        let mut seen = [0u32; PATH_MAX];
        let mut len = 0;
        let (mut node, mut way) = (at, way);
        loop {
            if len == PATH_MAX {
                return false;
            }
            let p = pos(queue[node].bucket, way);
            if seen[..len].contains(&p) {
                return false;
            }
            seen[len] = p;
            len += 1;
            let n = queue[node];
            if n.parent == ROOT {
                return true;
            }
            (node, way) = (usize::from(n.parent), usize::from(n.way));
        }
    }

    #[allow(clippy::too_many_arguments)] // the search's state, private to `displace`
    fn apply(
        &mut self,
        queue: &Queue,
        at: usize,
        way: usize,
        to: u32,
        free: usize,
        slot: Slot<A>,
        watch: &mut u32,
    ) -> u32 {
        self.shift(queue[at].bucket, way, to, free, watch);
        let (mut node, mut hole) = (at, way);
        while queue[node].parent != ROOT {
            let n = queue[node];
            let parent = queue[usize::from(n.parent)];
            self.shift(parent.bucket, usize::from(n.way), n.bucket, hole, watch);
            (node, hole) = (usize::from(n.parent), usize::from(n.way));
        }
        self.place(queue[node].bucket, hole, slot)
    }

    /// Every slot with its position (tests).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Slot<A>)> + '_ {
        self.buckets.iter().enumerate().flat_map(|(b, bucket)| {
            bucket
                .slots
                .iter()
                .enumerate()
                .map(move |(w, s)| (pos(b as u32, w), s))
        })
    }

    /// Test support: whether the slot at `pos` sits in one of its key's two buckets.
    #[cfg(test)]
    pub(crate) fn placed_right(&self, pos: u32) -> bool {
        let s = self.slot(pos);
        let h = s.key().hash();
        let b = pos / WAYS as u32;
        b == self.primary(h) || b == self.secondary(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::slot::{PAIRED, V4};
    use std::collections::HashMap;

    fn key(i: u32) -> Key<V4> {
        Key {
            addrs: u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ports: i,
            proto: 6,
        }
    }

    fn slot(k: &Key<V4>, serial: u32) -> Slot<V4> {
        Slot {
            addrs: k.addrs,
            ports: k.ports,
            proto: k.proto,
            state: 0,
            bits: 0,
            flags: 0,
            expires: 0,
            backend: 0,
            partner: 0,
            serial,
        }
    }

    #[test]
    fn secondary_is_never_primary() {
        let idx = Cuckoo::<V4>::new(3, Pages::Small);
        for i in 0..10_000 {
            let h = key(i).hash();
            assert_ne!(idx.primary(h), idx.secondary(h));
            assert!(idx.secondary(h) < 3);
        }
    }

    #[test]
    fn fills_past_85_percent_and_finds_everything() {
        let mut idx = Cuckoo::<V4>::new(1000, Pages::Small);
        let target = idx.slots() * 85 / 100;
        let mut at: HashMap<u32, u32> = HashMap::new();
        for i in 0..target as u32 {
            let k = key(i);
            let mut watch = u32::MAX;
            let p = idx
                .insert(k.hash(), slot(&k, i), &mut watch)
                .unwrap_or_else(|| {
                    panic!(
                        "insert {i} failed at {:.3} load",
                        f64::from(i) / idx.slots() as f64
                    )
                });
            at.insert(i, p);
        }
        for i in 0..target as u32 {
            let k = key(i);
            let p = idx.find(&k, k.hash()).expect("inserted");
            assert_eq!(idx.slot(p).serial, i);
            assert!(idx.placed_right(p));
        }
        // Remove half, the others stay, the removed are gone.
        for i in (0..target as u32).step_by(2) {
            let k = key(i);
            let p = idx.find(&k, k.hash()).expect("inserted");
            idx.clear(p);
        }
        for i in 0..target as u32 {
            let k = key(i);
            assert_eq!(idx.find(&k, k.hash()).is_some(), i % 2 == 1, "key {i}");
        }
    }

    #[test]
    fn moves_keep_partner_links() {
        let mut idx = Cuckoo::<V4>::new(64, Pages::Small);
        // Pairs (2i, 2i + 1) point at each other; fill to 85 %.
        let mut pos_of: HashMap<u32, u32> = HashMap::new();
        let n = idx.slots() as u32 * 85 / 100 / 2 * 2;
        for i in (0..n).step_by(2) {
            let (a, b) = (key(i), key(i + 1));
            let mut watch = u32::MAX;
            let pa = idx.insert(a.hash(), slot(&a, i), &mut watch).expect("room");
            let mut watch = pa;
            let pb = idx
                .insert(b.hash(), slot(&b, i + 1), &mut watch)
                .expect("room");
            let pa = watch;
            let sa = idx.slot_mut(pa);
            sa.flags |= PAIRED;
            sa.partner = pb;
            let sb = idx.slot_mut(pb);
            sb.flags |= PAIRED;
            sb.partner = pa;
            pos_of.insert(i, pa);
        }
        for i in (0..n).step_by(2) {
            let a = key(i);
            let pa = idx.find(&a, a.hash()).expect("a");
            let pb = idx.slot(pa).partner;
            assert_eq!(idx.slot(pb).serial, i + 1, "pair {i}");
            assert_eq!(idx.slot(pb).partner, pa);
        }
    }

    #[test]
    fn a_failed_insert_changes_nothing() {
        let mut idx = Cuckoo::<V4>::new(2, Pages::Small);
        for i in 0..4 {
            let k = key(i);
            let mut w = u32::MAX;
            assert!(idx.insert(k.hash(), slot(&k, i), &mut w).is_some());
        }
        let before: Vec<u32> = idx.iter().map(|(_, s)| s.serial).collect();
        let k = key(99);
        let mut w = u32::MAX;
        assert!(idx.insert(k.hash(), slot(&k, 99), &mut w).is_none());
        let after: Vec<u32> = idx.iter().map(|(_, s)| s.serial).collect();
        assert_eq!(before, after);
    }
}
