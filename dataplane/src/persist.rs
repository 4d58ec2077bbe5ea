//! Persistence (ipvsadm `-p TIMEOUT -M NETMASK`): which real server a client network keeps
//! across its connections, one table per worker.
//!
//! An entry is IPVS's connection template: the key is (client address masked to the
//! service's netmask, port 0, VIP, virtual port, protocol), the value the real server's slot
//! and an expiry. A new connection of a persistent service looks its client network up: a live
//! entry whose real server still takes new connections decides the real server (and is
//! refreshed to TIMEOUT from now); otherwise the scheduler decides and the entry is made or
//! re-pointed. Every connection of a client network lands on one worker (the owner is chosen
//! by the masked client address, `snapshot::Ownership::Network`), so that worker's table is
//! the only one that ever holds the network's entry: no sharing between cores, no lock.
//!
//! The key holds the VIP and port, not the service's index, and the value a real server's
//! slot, which stays the same across reloads and API changes as long as the real server is
//! configured; so entries survive both. A slot is only reused once no entry points at it any
//! more (the entries are counted per slot, `BackendStats::persistence_added`).
//!
//! Memory is fixed when the worker is built: open addressing with linear probing over a
//! power-of-two array at most half full, deletion by backward shift (no tombstones, so a
//! lookup never walks past the cluster its key hashes into). Expiry is lazy on lookup (an
//! expired entry is never used) and a bounded sweep per burst removes expired entries and
//! entries of real servers that left, like the flow table's.
//!
//! Written by hand: the table must never allocate after it is built and its deletion must
//! leave no tombstone that a later insert would have to rehash away; the hash map crates
//! either grow or rehash in place on insert. It is small (one array, three operations).

use crate::backend_stats::BackendStats;
use crate::flow::mem::{Pages, Zeroable, ZeroedSlice};
use crate::flow::FlowKey;
use std::sync::Arc;

/// Entries a worker holds when not told otherwise (tests; the daemon sizes it from
/// `flows.persistence_per_worker`).
pub const DEFAULT_PERSISTENCE_ENTRIES: usize = 4096;

/// Slots the sweep visits per burst.
pub const SWEEP_PER_BURST: usize = 16;

/// One slot.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Entry {
    key: FlowKey,
    /// 1 when the slot holds an entry.
    used: u8,
    /// The key's hash, low 32 bits (its home slot and a quick compare).
    hash: u32,
    /// The real server's slot.
    backend: u32,
    /// When it expires unless a new connection refreshes it (worker milliseconds).
    expires_ms: u64,
}

// SAFETY: a flow key, integers: all zeros is a valid, unused slot.
unsafe impl Zeroable for Entry {}

/// One entry as listed (`vipctl -L -c --persistent-conn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistInfo {
    /// Client network (port 0) -> VIP:port, protocol.
    pub key: FlowKey,
    /// The real server's slot.
    pub backend: u32,
    /// Milliseconds until it expires unless a new connection refreshes it.
    pub remaining_ms: u64,
}

/// A worker's persistence entries.
pub struct PersistTable {
    slots: ZeroedSlice<Entry>,
    mask: usize,
    len: usize,
    capacity: usize,
    cursor: usize,
    stats: Option<Arc<BackendStats>>,
    /// Inserts refused because the table held `capacity` entries.
    pub full: u64,
}

impl std::fmt::Debug for PersistTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl PersistTable {
    /// A table for `entries` entries (twice as many slots, a power of two). Its memory is
    /// mapped, not touched: its pages come from the node of the core that first writes them
    /// (the worker's).
    pub fn with_capacity(entries: usize) -> Self {
        let slots = (entries.max(8) * 2).next_power_of_two();
        PersistTable {
            slots: ZeroedSlice::new(slots, Pages::Transparent),
            mask: slots - 1,
            len: 0,
            capacity: slots / 2,
            cursor: 0,
            stats: None,
            full: 0,
        }
    }

    /// Count the entries per real server in `stats` (ipvsadm's PersistConn, and what keeps a
    /// slot from being reused while an entry points at it).
    pub fn count_in(&mut self, stats: Arc<BackendStats>) {
        self.stats = Some(stats);
    }

    /// Entries held (expired ones included until the sweep or a lookup removes them).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Memory held, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Entry>()
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// The live entry of `key` (hashed `hash`): its slot and real server. An expired entry
    /// found on the way is removed and reported absent.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<(usize, u32)> {
        let h = hash as u32;
        let mut i = self.home(h);
        // The table is at most half full: an empty slot ends every probe.
        loop {
            let e = self.slots.get(i)?;
            if e.used == 0 {
                return None;
            }
            if e.hash == h && e.key == *key {
                if e.expires_ms <= now_ms {
                    self.remove(i);
                    return None;
                }
                return Some((i, e.backend));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// A new connection used the entry in `slot` (from [`PersistTable::lookup`], no change in
    /// between): it lives until `expires_ms`.
    #[inline]
    pub fn refresh(&mut self, slot: usize, expires_ms: u64) {
        if let Some(e) = self.slots.get_mut(slot).filter(|e| e.used != 0) {
            e.expires_ms = expires_ms;
        }
    }

    /// The entry in `slot` now names `backend` (its old real server could not take the
    /// connection), until `expires_ms`.
    pub fn repoint(&mut self, slot: usize, backend: u32, expires_ms: u64) {
        let Some(e) = self.slots.get_mut(slot).filter(|e| e.used != 0) else {
            return;
        };
        let old = std::mem::replace(&mut e.backend, backend);
        e.expires_ms = expires_ms;
        if let Some(s) = &self.stats {
            s.persistence_removed(old);
            s.persistence_added(backend);
        }
    }

    /// Enter `key` (not in the table: its lookup just missed) for `backend` until
    /// `expires_ms`. False when the table is full (even after sweeping the key's own
    /// neighbourhood of expired entries).
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        backend: u32,
        expires_ms: u64,
        now_ms: u64,
    ) -> bool {
        if self.len >= self.capacity {
            // Reclaim expired entries first, as many slots as a burst's sweep visits.
            let from = self.home(hash as u32);
            self.sweep_from(from, SWEEP_PER_BURST * 4, now_ms, &|_| true);
            if self.len >= self.capacity {
                self.full += 1;
                return false;
            }
        }
        let h = hash as u32;
        let mut i = self.home(h);
        while self.slots.get(i).is_some_and(|e| e.used != 0) {
            i = (i + 1) & self.mask;
        }
        let Some(e) = self.slots.get_mut(i) else {
            return false;
        };
        *e = Entry {
            key: *key,
            used: 1,
            hash: h,
            backend,
            expires_ms,
        };
        self.len += 1;
        if let Some(s) = &self.stats {
            s.persistence_added(backend);
        }
        true
    }

    /// Remove the entry in `slot`, shifting the rest of its cluster back so no probe breaks.
    fn remove(&mut self, slot: usize) {
        let Some(e) = self.slots.get(slot).copied().filter(|e| e.used != 0) else {
            return;
        };
        if let Some(s) = &self.stats {
            s.persistence_removed(e.backend);
        }
        self.len -= 1;
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = (j + 1) & self.mask;
            let Some(next) = self.slots.get(j).copied() else {
                break;
            };
            if next.used == 0 {
                break;
            }
            // `next` may fill the hole unless its home lies cyclically in (hole, j].
            let home = self.home(next.hash);
            let from_home = j.wrapping_sub(home) & self.mask;
            let from_hole = j.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.slots[hole] = next;
                hole = j;
            }
        }
        self.slots[hole] = Entry::default();
    }

    /// Visit `budget` slots from the sweep's cursor, removing entries that expired or whose
    /// real server `live` no longer knows. Returns how many it removed.
    pub fn sweep(&mut self, now_ms: u64, budget: usize, live: &dyn Fn(u32) -> bool) -> usize {
        let from = self.cursor;
        let (removed, next) = self.sweep_range(from, budget, now_ms, live);
        self.cursor = next;
        removed
    }

    fn sweep_from(
        &mut self,
        from: usize,
        budget: usize,
        now_ms: u64,
        live: &dyn Fn(u32) -> bool,
    ) -> usize {
        self.sweep_range(from, budget, now_ms, live).0
    }

    fn sweep_range(
        &mut self,
        mut i: usize,
        budget: usize,
        now_ms: u64,
        live: &dyn Fn(u32) -> bool,
    ) -> (usize, usize) {
        let mut removed = 0;
        for _ in 0..budget {
            if self.len == 0 {
                break;
            }
            let dead = self
                .slots
                .get(i)
                .is_some_and(|e| e.used != 0 && (e.expires_ms <= now_ms || !live(e.backend)));
            if dead {
                // The cluster shifts back into `i`: look at it again.
                self.remove(i);
                removed += 1;
            } else {
                i = (i + 1) & self.mask;
            }
        }
        (removed, i)
    }

    /// Visit up to `n` slots from `cursor`, calling `f` with each live entry; `f` returns
    /// false to stop. Returns the cursor to continue from, None when the table is done.
    pub fn scan(
        &self,
        cursor: usize,
        n: usize,
        now_ms: u64,
        mut f: impl FnMut(PersistInfo) -> bool,
    ) -> Option<usize> {
        let end = (cursor + n).min(self.slots.len());
        for i in cursor..end {
            let Some(e) = self.slots.get(i) else { break };
            if e.used != 0 && e.expires_ms > now_ms {
                let info = PersistInfo {
                    key: e.key,
                    backend: e.backend,
                    remaining_ms: e.expires_ms - now_ms,
                };
                if !f(info) {
                    return Some(i);
                }
            }
        }
        (end < self.slots.len()).then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::IpAddr;

    fn key(i: u32) -> FlowKey {
        let client = IpAddr::from((0xc000_0000u32 + (i << 8)).to_be_bytes());
        FlowKey::new(client, "10.0.100.1".parse().unwrap(), 0, 80, 6)
    }

    #[test]
    fn a_slot_is_56_bytes() {
        // configuration.md states the memory per entry (two slots).
        assert_eq!(std::mem::size_of::<Entry>(), 56);
    }

    #[test]
    fn insert_lookup_refresh_expire() {
        let stats = Arc::new(BackendStats::new(8));
        let mut t = PersistTable::with_capacity(16);
        t.count_in(Arc::clone(&stats));
        let k = key(1);
        assert_eq!(t.lookup(&k, k.hash(), 0), None);
        assert!(t.insert(&k, k.hash(), 3, 1000, 0));
        let (slot, b) = t.lookup(&k, k.hash(), 999).unwrap();
        assert_eq!(b, 3);
        assert_eq!(stats.get(3).persistent, 1);
        t.refresh(slot, 5000);
        assert!(t.lookup(&k, k.hash(), 4999).is_some());
        t.repoint(slot, 4, 6000);
        assert_eq!(t.lookup(&k, k.hash(), 0).map(|x| x.1), Some(4));
        assert_eq!((stats.get(3).persistent, stats.get(4).persistent), (0, 1));
        assert_eq!(t.lookup(&k, k.hash(), 6000), None, "expired: gone");
        assert_eq!((t.len(), stats.get(4).persistent), (0, 0));
    }

    #[test]
    fn full_refuses_and_reclaims_expired() {
        let mut t = PersistTable::with_capacity(8);
        let cap = t.capacity();
        for i in 0..cap as u32 {
            assert!(t.insert(&key(i), key(i).hash(), 1, 100, 0));
        }
        let k = key(999);
        assert!(!t.insert(&k, k.hash(), 1, 100, 0));
        assert_eq!(t.full, 1);
        // Once they expired, an insert makes room in its own neighbourhood.
        let mut inserted = false;
        for at in 0..64 {
            if t.insert(&k, k.hash(), 2, 1000, 100 + at) {
                inserted = true;
                break;
            }
        }
        assert!(inserted);
        assert!(t.len() <= cap);
    }

    #[test]
    fn sweep_removes_expired_and_gone_within_its_budget() {
        let stats = Arc::new(BackendStats::new(8));
        let mut t = PersistTable::with_capacity(64);
        t.count_in(Arc::clone(&stats));
        for i in 0..40u32 {
            assert!(t.insert(
                &key(i),
                key(i).hash(),
                i % 3,
                if i < 10 { 50 } else { 500 },
                0
            ));
        }
        let slots = t.slots.len();
        let mut removed = 0;
        // One slot per call; a removal looks at its slot again (the cluster shifted into it),
        // so a whole pass takes `slots` calls plus one per removal.
        for _ in 0..slots + 40 {
            removed += t.sweep(100, 1, &|b| b != 2);
        }
        // 10 expired; of the other 30, those of backend 2 (i % 3 == 2) are gone too.
        let gone_of_2 = (10..40).filter(|i| i % 3 == 2).count();
        assert_eq!(removed, 10 + gone_of_2);
        assert_eq!(t.len(), 30 - gone_of_2);
        assert_eq!(stats.get(2).persistent, 0);
        for i in 10..40u32 {
            assert_eq!(
                t.lookup(&key(i), key(i).hash(), 100).is_some(),
                i % 3 != 2,
                "{i}"
            );
        }
    }

    #[test]
    fn matches_a_model_under_random_churn() {
        // Inserts, lookups and removals (by expiry) against a HashMap, with a tiny table so
        // clusters wrap around and backward shifts happen all the time.
        let mut t = PersistTable::with_capacity(8);
        let mut model: HashMap<u32, (u32, u64)> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        let mut now = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % 24) as u32;
            now += x % 3;
            let k = key(i);
            model.retain(|_, (_, exp)| *exp > now);
            let got = t.lookup(&k, k.hash(), now).map(|(_, b)| b);
            assert_eq!(got, model.get(&i).map(|&(b, _)| b), "key {i} at {now}");
            if got.is_none() {
                let inserted = t.insert(&k, k.hash(), i, now + 1 + x % 40, now);
                if inserted {
                    model.insert(i, (i, now + 1 + x % 40));
                }
            }
            assert!(t.len() >= model.len());
        }
        let mut listed = 0;
        let mut c = Some(0);
        while let Some(at) = c {
            c = t.scan(at, 5, now, |info| {
                assert_eq!(model.get(&(info.backend)).map(|m| m.0), Some(info.backend));
                listed += 1;
                true
            });
        }
        assert_eq!(listed, model.len());
    }
}
