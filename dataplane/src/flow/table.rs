//! The per-core flow table: connections, their one or two keys, TCP state and expiry.
//!
//! One table per worker core, never shared: plain fields, no atomics, no locks. Every byte
//! is allocated by [`FlowTable::with_capacity`]; afterwards nothing allocates, ever (the
//! arrays are boxed slices, which cannot grow).
//!
//! # Layout
//!
//! * `entries`: one 64-byte, cache-line-aligned `Entry` per connection (original key,
//!   backend, state, expiry, the index slots of its keys, a generation). Free entries form
//!   an intrusive LIFO list; entries past `high_water` were never used.
//! * `reply_keys`: the reply key of entry `i` (NAT only), kept apart so the entry stays one
//!   cache line; a reply lookup reads it, an original lookup never does.
//! * `index`: a bucketised cuckoo hash index (`flow::index`, private) mapping both keys of a
//!   connection to `entry << 1 | direction`. Both keys thus share one entry: one state, one
//!   expiry. The index has `ceil(2 * capacity / 7)` buckets of 8 slots, so even with every
//!   connection holding two keys it is at most 87.5 % full (cuckoo with 8-way buckets
//!   inserts reliably beyond 95 %).
//! * `hints`: one `u32` per entry, a lower bound of its expiry in units of 1024 ms
//!   (`u32::MAX` for a free entry). The expiry sweep reads these, 16 per cache line.
//!
//! Memory: 64 + 38 + 4 bytes per connection plus 18.3 bytes of index (`2 * 8 * 8 / 7`):
//! about 124 MB for one million connections.
//!
//! # Why hand-written
//!
//! `hashbrown::HashTable::with_capacity(n)` does not allocate again while it holds at most
//! `n` items, but deletions leave tombstones (`DELETED` control bytes) that do not give back
//! growth room; under churn an insert eventually finds no room and calls `reserve_rehash`,
//! which rehashes all items in place (an O(n) stall of milliseconds on the packet path at a
//! million flows), or reallocates when more than half full. A connection also has two keys
//! that must share one state, and expiry wants a stable dense array to sweep. So: a cuckoo
//! index (deletion just clears a slot, lookups read at most two cache lines, inserts either
//! succeed in bounded time or fail with `Full` leaving nothing behind) over a slab of entries.
//!
//! # Expiry
//!
//! An expired entry is never returned: [`FlowTable::lookup`] checks the expiry it reads anyway
//! and removes the entry on the spot. Entries nobody looks up are reclaimed by
//! [`FlowTable::expire`], a cursor sweep over `hints[..high_water]`. Refreshing an entry (every
//! tracked packet) writes only the entry's own `expires_ms`, never a timer structure: the hint
//! stays a lower bound, and when the sweep finds a hint in the past it reads the entry's real
//! expiry, then removes the entry or raises the hint. (The only write to a hint besides
//! insert and removal is when a state change shortens the expiry, e.g. at RST: about once per
//! connection.) A timer wheel would cost a list unlink and relink, in other cache lines, per
//! packet; the sweep costs each call at most `SCAN_PER_REMOVAL * budget` hint reads (sequential,
//! 16 per line) and one entry read per hint in the past.
//!
//! Bound: an entry expired at `t` is removed once the cursor has passed over it after `t`.
//! Each call either reads `SCAN_PER_REMOVAL * budget` hints or removes `budget` connections,
//! so that takes at most `ceil(high_water / (SCAN_PER_REMOVAL * budget))` calls of `expire`
//! after `t`, plus one call per `budget` other expired connections removed meanwhile. With the
//! pipeline's budget of 64 per burst and a million connections: 3,907 calls (the worker should
//! also call it on empty polls, or idle entries linger while no traffic arrives; they are
//! never returned meanwhile). A call that finds nothing due costs about 120 ns (256 hints
//! compared 16 at a time). Checked by `sweep_bound_holds` below.

use super::index::{prefetch_line, CuckooIndex, MAX_PAYLOAD};
use super::key::{FlowKey, PROTO_TCP};
use super::mem::{Backing, Pages, Zeroable, ZeroedSlice};
use super::state::{next_state, Direction, Seen, TcpFlags, TcpState, Timeouts};
use crate::backend_stats::{BackendStats, ConnClass};
use std::sync::Arc;

/// Hint reads per unit of `expire` budget.
pub const SCAN_PER_REMOVAL: usize = 4;
/// Hints an insert into a full table reads to reclaim one expired entry.
const RECLAIM_SCAN: usize = 256;
/// Hints the sweep compares at once.
const SWEEP_CHUNK: usize = 16;
/// Hint of a free entry.
const FREE: u32 = u32::MAX;
/// End of the free list.
const NIL: u32 = u32::MAX;
/// Largest capacity: entry numbers and directions must fit an index reference.
pub const MAX_CAPACITY: usize = 1 << 28;

// Entry numbers and a direction bit must fit an index reference.
const _: () = assert!(((MAX_CAPACITY - 1) << 1 | 1) as u64 <= MAX_PAYLOAD as u64);

/// Entry bit: the entry holds a connection.
const LIVE: u8 = 0x80;
/// Entry bit: the connection has a reply key.
const HAS_REPLY: u8 = 0x40;
/// Entry bit: its missing step 3 (a retransmitted SYN before any reply) was counted.
const STEP3_REPORTED: u8 = 0x20;
/// Entry bit: a SYN of the client was tracked (so the next one is a retransmission).
const SYN_SEEN: u8 = 0x10;

/// The hint (expiry lower bound, 1024 ms units) of an expiry.
#[inline]
fn tick(ms: u64) -> u32 {
    (ms >> 10).min(u64::from(FREE - 1)) as u32
}

/// Bit `j` set when `hints[j]` (at most [`SWEEP_CHUNK`] of them) is due at `now_tick`.
#[inline]
fn due_mask(hints: &[u32], now_tick: u32) -> u32 {
    if let Ok(full) = <&[u32; SWEEP_CHUNK]>::try_from(hints) {
        // The common case: a fixed length, and a quick "none due" test first, both of which
        // compile to a few vector instructions.
        if !full.iter().fold(false, |any, &h| any | (h <= now_tick)) {
            return 0;
        }
    }
    let mut m = 0u32;
    for (j, &h) in hints.iter().enumerate().take(SWEEP_CHUNK) {
        m |= u32::from(h <= now_tick) << j;
    }
    m
}

/// One connection: 64 bytes, one cache line (asserted by `entry_is_one_cache_line`).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry {
    /// Original key (client -> VIP): 38 bytes.
    key: FlowKey,
    /// TCP state.
    state: TcpState,
    /// `LIVE`, `HAS_REPLY`, and the state machine's [`Seen`] bits.
    bits: u8,
    /// The caller's backend id.
    backend: u32,
    /// Bumped when the entry is freed, so a stale [`FlowId`] is recognised.
    gen: u32,
    /// Index slot positions of the original and reply keys. A free entry keeps the next
    /// free entry in `pos[0]`.
    pos: [u32; 2],
    /// When the connection expires (the caller's millisecond clock).
    expires_ms: u64,
}

// SAFETY: integers, a FlowKey (integers) and TcpState (`repr(u8)`, 0 = `None`): all zeros is
// a valid, free entry.
unsafe impl Zeroable for Entry {}

/// A handle on a connection, valid until the connection is removed (then every method
/// ignores it: a generation check).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    index: u32,
    gen: u32,
}

impl FlowId {
    /// The connection's slot number, below [`FlowTable::capacity`] (for display and tracing).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// A successful lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHit {
    /// The connection.
    pub id: FlowId,
    /// The backend id given at insert.
    pub backend: u32,
    /// Which of the connection's keys matched.
    pub dir: Direction,
    /// The connection's state before this packet is tracked.
    pub state: TcpState,
}

/// Why an insert failed. Either way no part of the new connection stays in the table (expired
/// connections the insert met may have been reclaimed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Every entry is taken by a live connection (or, very rarely, the index found no slot
    /// for a key); forward the flow statelessly.
    #[error("flow table full")]
    Full,
    /// The key or the reply key already belongs to a live connection.
    #[error("flow key already in the table")]
    Exists,
}

/// One connection, as listed by [`FlowTable::iter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The connection.
    pub id: FlowId,
    /// Original key (client -> VIP).
    pub key: FlowKey,
    /// Reply key (real server -> client), NAT connections only.
    pub reply: Option<FlowKey>,
    /// The backend id given at insert.
    pub backend: u32,
    /// Current state.
    pub state: TcpState,
    /// Milliseconds until the connection expires unless a packet refreshes it.
    pub remaining_ms: u64,
}

/// A worker's flow table. See the module documentation for the design.
pub struct FlowTable {
    entries: ZeroedSlice<Entry>,
    reply_keys: ZeroedSlice<FlowKey>,
    hints: ZeroedSlice<u32>,
    index: CuckooIndex,
    free_head: u32,
    high_water: u32,
    len: usize,
    cursor: u32,
    timeouts: Timeouts,
    timeout_ms: [u64; TcpState::COUNT],
    /// Connections inserted.
    pub inserts: u64,
    /// Inserts refused with [`InsertError::Full`].
    pub insert_full: u64,
    /// Inserts refused with [`InsertError::Exists`].
    pub insert_exists: u64,
    /// Connections removed because they expired (by `expire`, `lookup` or `insert`).
    pub expired: u64,
    /// Connections removed by [`FlowTable::remove`].
    pub removed: u64,
    /// Where connections are counted per backend (active / inactive), when attached.
    backend_stats: Option<Arc<BackendStats>>,
}

/// ipvsadm's split: established connections are active, all others inactive.
#[inline]
fn conn_class(state: TcpState) -> ConnClass {
    if state == TcpState::Established {
        ConnClass::Active
    } else {
        ConnClass::Inactive
    }
}

impl FlowTable {
    /// A table for `capacity` connections (clamped to `1..=MAX_CAPACITY`), each with one or two
    /// keys. Allocates everything the table will ever use: about 124 bytes per connection.
    ///
    /// The arrays are mapped on transparent huge pages and not touched: call
    /// [`prefault`](FlowTable::prefault) on the core that will use the table.
    pub fn with_capacity(capacity: usize, timeouts: Timeouts) -> FlowTable {
        Self::with_capacity_on(capacity, timeouts, Pages::default())
    }

    /// [`with_capacity`](FlowTable::with_capacity) on the given kind of pages (see
    /// `flow::mem`: [`Pages::HugeTlb`] takes reserved huge pages, which DPDK shares).
    pub fn with_capacity_on(capacity: usize, timeouts: Timeouts, pages: Pages) -> FlowTable {
        let cap = capacity.clamp(1, MAX_CAPACITY);
        Self::with_geometry(cap, (2 * cap).div_ceil(7), timeouts, pages)
    }

    fn with_geometry(cap: usize, buckets: usize, timeouts: Timeouts, pages: Pages) -> FlowTable {
        // Zeroed memory is an empty table: entries and hints past `high_water` are never
        // read, and every entry below it was written by `insert` or `release`.
        FlowTable {
            entries: ZeroedSlice::new(cap, pages),
            reply_keys: ZeroedSlice::new(cap, pages),
            hints: ZeroedSlice::new(cap, pages),
            index: CuckooIndex::new(buckets, pages),
            free_head: NIL,
            high_water: 0,
            len: 0,
            cursor: 0,
            timeouts,
            timeout_ms: timeouts.as_ms(),
            inserts: 0,
            insert_full: 0,
            insert_exists: 0,
            expired: 0,
            removed: 0,
            backend_stats: None,
        }
    }

    /// Count this table's connections per backend in `stats` (the backend id given at insert
    /// is the slot): one gauge for established connections, one for the others. Attach before
    /// the first insert.
    pub fn count_connections_in(&mut self, stats: Arc<BackendStats>) {
        self.backend_stats = Some(stats);
    }

    /// Live connections (including expired ones the sweep has not reached yet).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no connection.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of connections.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Index slots (keys) the table can hold: at least twice the capacity.
    pub fn index_slots(&self) -> usize {
        self.index.slots()
    }

    /// Allocate every page of the table now, from the calling thread: the worker calls this
    /// on its own core before polling, so the memory sits on that core's NUMA node and no
    /// page fault lands on the packet path.
    pub fn prefault(&mut self) {
        self.entries.prefault();
        self.reply_keys.prefault();
        self.hints.prefault();
        self.index.prefault();
    }

    /// The pages the connection entries got (the largest array).
    pub fn backing(&self) -> Backing {
        self.entries.backing()
    }

    /// Bytes the table's arrays take (entries, reply keys, expiry hints, index), all
    /// allocated up front.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.entries)
            + std::mem::size_of_val(&*self.reply_keys)
            + std::mem::size_of_val(&*self.hints)
            + self.index.memory_bytes()
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// New timeouts; they apply from each connection's next tracked packet.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
        self.timeout_ms = timeouts.as_ms();
    }

    /// The index reference's key comparison.
    #[inline]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let (entries, reply_keys) = (&self.entries, &self.reply_keys);
        self.index
            .find(hash, |payload| {
                let i = (payload >> 1) as usize;
                if payload & 1 == 0 {
                    entries[i].key == *key
                } else {
                    reply_keys[i] == *key
                }
            })
            .map(|(_, payload)| payload)
    }

    /// The connection `key` belongs to, in either direction. `hash` must be `key.hash()`.
    /// An expired connection is removed on the spot (counted in `expired`) and not returned.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<FlowHit> {
        let payload = self.find(key, hash)?;
        let i = (payload >> 1) as usize;
        let e = &self.entries[i];
        if e.expires_ms <= now_ms {
            self.free(i);
            self.expired += 1;
            return None;
        }
        Some(FlowHit {
            id: FlowId {
                index: i as u32,
                gen: e.gen,
            },
            backend: e.backend,
            dir: if payload & 1 == 0 {
                Direction::Original
            } else {
                Direction::Reply
            },
            state: e.state,
        })
    }

    /// Stage 1 of a burst lookup: start loading the index buckets of `hash`. Issue it for
    /// every packet of a burst, then [`prefetch_entry`](FlowTable::prefetch_entry), then
    /// [`lookup`](FlowTable::lookup): the cache misses of the burst overlap instead of
    /// queueing one after the other (DPDK's `rte_hash_lookup_bulk` and VPP do the same).
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Stage 2 of a burst lookup: start loading the entry (and for a reply key, the reply
    /// key) the index points `hash` at. Reads the buckets stage 1 fetched.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        if let Some(payload) = self.index.first_candidate(hash) {
            let i = (payload >> 1) as usize;
            if payload & 1 == 0 {
                if let Some(e) = self.entries.get(i) {
                    prefetch_line(e);
                }
            } else if let (Some(e), Some(k)) = (self.entries.get(i), self.reply_keys.get(i)) {
                prefetch_line(e);
                prefetch_line(k);
            }
        }
    }

    /// Whether an existing connection holding `key` blocks an insert; an expired one is
    /// removed instead.
    fn blocks(&mut self, key: &FlowKey, hash: u64, now_ms: u64) -> bool {
        match self.find(key, hash) {
            None => false,
            Some(payload) => {
                let i = (payload >> 1) as usize;
                if self.entries[i].expires_ms <= now_ms {
                    self.free(i);
                    self.expired += 1;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// A new connection under `key` (client -> VIP, `hash` = `key.hash()`) and, in NAT mode,
    /// its `reply` key (real server -> client) with that key's hash. Its state starts as
    /// [`TcpState::SynRecv`] for TCP (timeout `tcp_syn`) and [`TcpState::None`] otherwise;
    /// the caller then [`track`](FlowTable::track)s the packet that created it.
    ///
    /// Fails with `Exists` if either key belongs to a live connection (expired ones are
    /// removed), with `Full` if no entry is free after a bounded attempt to reclaim an
    /// expired one, or if the index has no slot for a key. On failure nothing of the new
    /// connection stays behind (only expired connections met on the way are reclaimed).
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        reply: Option<(&FlowKey, u64)>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        let exists = self.blocks(key, hash, now_ms)
            || reply.is_some_and(|(rk, rh)| rk == key || self.blocks(rk, rh, now_ms));
        if exists {
            self.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        let Some(i) = self.alloc(now_ms) else {
            self.insert_full += 1;
            return Err(InsertError::Full);
        };
        let state = if key.proto == PROTO_TCP {
            TcpState::SynRecv
        } else {
            TcpState::None
        };
        let expires_ms = now_ms.saturating_add(self.timeout_ms[state as usize]);
        let e = &mut self.entries[i];
        e.key = *key;
        e.state = state;
        e.bits = LIVE | if reply.is_some() { HAS_REPLY } else { 0 };
        e.backend = backend;
        e.expires_ms = expires_ms;
        e.pos = [NIL; 2];
        if !self.index_insert(hash, i, Direction::Original) {
            self.release(i);
            self.insert_full += 1;
            return Err(InsertError::Full);
        }
        if let Some((rk, rh)) = reply {
            self.reply_keys[i] = *rk;
            if !self.index_insert(rh, i, Direction::Reply) {
                // Find the original key's slot again: the reply's attempt may have moved it.
                self.index.remove_at(self.entries[i].pos[0]);
                self.release(i);
                self.insert_full += 1;
                return Err(InsertError::Full);
            }
        }
        self.hints[i] = tick(expires_ms);
        self.len += 1;
        self.inserts += 1;
        if let Some(stats) = &self.backend_stats {
            stats.conn_added(backend, conn_class(state));
        }
        Ok(FlowId {
            index: i as u32,
            gen: self.entries[i].gen,
        })
    }

    /// Enters entry `i`'s key of direction `dir` in the index, keeping `pos` up to date.
    fn index_insert(&mut self, hash: u64, i: usize, dir: Direction) -> bool {
        let d = dir as usize;
        let entries = &mut self.entries;
        let placed = self
            .index
            .insert(hash, (i as u32) << 1 | d as u32, |moved, pos| {
                if let Some(e) = entries.get_mut((moved >> 1) as usize) {
                    e.pos[(moved & 1) as usize] = pos;
                }
            });
        match placed {
            Some(pos) => {
                self.entries[i].pos[d] = pos;
                true
            }
            None => false,
        }
    }

    /// A free entry: the free list, then never-used entries, then one reclaimed from the sweep.
    fn alloc(&mut self, now_ms: u64) -> Option<usize> {
        if self.free_head == NIL && (self.high_water as usize) < self.entries.len() {
            self.high_water += 1;
            return Some(self.high_water as usize - 1);
        }
        if self.free_head == NIL && self.sweep(now_ms, 1, RECLAIM_SCAN) == 0 {
            return None;
        }
        let i = self.free_head as usize;
        self.free_head = self.entries.get(i)?.pos[0];
        Some(i)
    }

    /// Puts entry `i` (not in the index, not counted in `len`) on the free list.
    fn release(&mut self, i: usize) {
        let e = &mut self.entries[i];
        e.bits = 0;
        e.gen = e.gen.wrapping_add(1);
        e.pos = [self.free_head, NIL];
        self.free_head = i as u32;
        self.hints[i] = FREE;
    }

    /// Removes live entry `i` from the index and frees it.
    fn free(&mut self, i: usize) {
        let e = &self.entries[i];
        if let Some(stats) = &self.backend_stats {
            stats.conn_removed(e.backend, conn_class(e.state));
        }
        self.index.remove_at(e.pos[0]);
        if e.bits & HAS_REPLY != 0 {
            self.index.remove_at(e.pos[1]);
        }
        self.release(i);
        self.len -= 1;
    }

    /// The entry of a live, current `id`.
    #[inline]
    fn live(&self, id: FlowId) -> Option<usize> {
        let e = self.entries.get(id.index as usize)?;
        (e.bits & LIVE != 0 && e.gen == id.gen).then_some(id.index as usize)
    }

    /// Advances the connection's state with a packet in `dir` carrying `flags` (`None` for
    /// UDP; see [`super::state`] for the machine) and refreshes its expiry to
    /// `now_ms + timeout(new state)`. Returns the new state. A stale `id` (connection removed)
    /// changes nothing and reports [`TcpState::Close`].
    #[inline]
    pub fn track(
        &mut self,
        id: FlowId,
        dir: Direction,
        flags: Option<TcpFlags>,
        now_ms: u64,
    ) -> TcpState {
        let Some(i) = self.live(id) else {
            return TcpState::Close;
        };
        let e = &mut self.entries[i];
        let (state, seen) = next_state(e.state, Seen(e.bits & Seen::MASK), dir, flags);
        if let Some(stats) = &self.backend_stats {
            stats.conn_moved(e.backend, conn_class(e.state), conn_class(state));
            // The client retransmits its SYN (>= 1 s later) and nothing ever came back
            // through us: the real server's SYN-ACK took another path (step 3).
            let lone_syn = flags.is_some_and(|f| f.syn && !f.ack && !f.rst && !f.fin);
            if lone_syn && dir == Direction::Original {
                if e.state == TcpState::SynRecv
                    && e.bits & (HAS_REPLY | STEP3_REPORTED | SYN_SEEN) == HAS_REPLY | SYN_SEEN
                    && e.bits & Seen::REPLY == 0
                {
                    e.bits |= STEP3_REPORTED;
                    stats.count_step3_missing(e.backend);
                }
                e.bits |= SYN_SEEN;
            }
        }
        e.state = state;
        e.bits = (e.bits & !Seen::MASK) | seen.0;
        let expires_ms = now_ms.saturating_add(self.timeout_ms[state as usize]);
        if expires_ms < e.expires_ms {
            // Shorter than before (e.g. RST): keep the hint a lower bound.
            self.hints[i] = tick(expires_ms);
        }
        e.expires_ms = expires_ms;
        state
    }

    /// Removes a connection (both keys). A stale `id` is ignored.
    pub fn remove(&mut self, id: FlowId) {
        if let Some(i) = self.live(id) {
            self.free(i);
            self.removed += 1;
        }
    }

    /// Removes up to `budget` expired connections, reading at most `SCAN_PER_REMOVAL * budget`
    /// entries' hints from where the previous call stopped; returns how many it removed.
    /// Meant to be called once per burst with a small budget (see the module documentation
    /// for the bound on how long an idle connection survives its expiry).
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        self.sweep(now_ms, budget, budget.saturating_mul(SCAN_PER_REMOVAL))
    }

    fn sweep(&mut self, now_ms: u64, max_remove: usize, max_scan: usize) -> usize {
        let hw = self.high_water as usize;
        if hw == 0 || max_remove == 0 {
            return 0;
        }
        let now_tick = tick(now_ms);
        let mut c = self.cursor as usize;
        if c >= hw {
            c = 0;
        }
        let (mut scanned, mut removed) = (0, 0);
        let max_scan = max_scan.min(hw);
        while scanned < max_scan {
            // Up to 16 hints (one cache line) at a time, compared as one vector.
            let len = SWEEP_CHUNK.min(hw - c).min(max_scan - scanned);
            let mut due = due_mask(&self.hints[c..c + len], now_tick);
            let mut next = c + len;
            while due != 0 {
                let i = c + due.trailing_zeros() as usize;
                due &= due - 1;
                let expires_ms = self.entries[i].expires_ms;
                if expires_ms > now_ms {
                    self.hints[i] = tick(expires_ms);
                    continue;
                }
                self.free(i);
                self.expired += 1;
                removed += 1;
                if removed == max_remove {
                    next = i + 1;
                    break;
                }
            }
            scanned += next - c;
            c = if next == hw { 0 } else { next };
            if removed == max_remove {
                break;
            }
        }
        self.cursor = c as u32;
        removed
    }

    /// Visit the live, unexpired connections in slots `from..from + max` (bounded work, for
    /// listings from a busy worker) until `f` returns false. Returns where to continue, or
    /// None when the table's end was reached (or `f` stopped).
    pub fn scan(
        &self,
        from: usize,
        max: usize,
        now_ms: u64,
        mut f: impl FnMut(FlowInfo) -> bool,
    ) -> Option<usize> {
        let hw = self.high_water as usize;
        let end = from.saturating_add(max).min(hw);
        for i in from.min(end)..end {
            let e = &self.entries[i];
            if e.bits & LIVE == 0 || e.expires_ms <= now_ms {
                continue;
            }
            let info = FlowInfo {
                id: FlowId {
                    index: i as u32,
                    gen: e.gen,
                },
                key: e.key,
                reply: (e.bits & HAS_REPLY != 0).then_some(self.reply_keys[i]),
                backend: e.backend,
                state: e.state,
                remaining_ms: e.expires_ms - now_ms,
            };
            if !f(info) {
                return None;
            }
        }
        (end < hw).then_some(end)
    }

    /// The live, unexpired connections, in slot order (for listings; not for the packet path).
    pub fn iter(&self, now_ms: u64) -> impl Iterator<Item = FlowInfo> + '_ {
        self.entries[..self.high_water as usize]
            .iter()
            .zip(self.reply_keys.iter())
            .enumerate()
            .filter(move |(_, (e, _))| e.bits & LIVE != 0 && e.expires_ms > now_ms)
            .map(move |(i, (e, rk))| FlowInfo {
                id: FlowId {
                    index: i as u32,
                    gen: e.gen,
                },
                key: e.key,
                reply: (e.bits & HAS_REPLY != 0).then_some(*rk),
                backend: e.backend,
                state: e.state,
                remaining_ms: e.expires_ms - now_ms,
            })
    }

    /// Test support: checks every structural invariant, panicking on the first violation.
    #[cfg(test)]
    fn check(&self) {
        use std::collections::HashMap;
        let hw = self.high_water as usize;
        let slots: HashMap<u32, (u32, bool)> = self
            .index
            .occupied()
            .into_iter()
            .map(|(pos, _, payload, alt)| (pos, (payload, alt)))
            .collect();
        let mut live = 0;
        let mut keys = 0;
        for (i, e) in self.entries.iter().enumerate() {
            if i >= hw {
                assert_eq!(e.bits, 0, "entry {i} past high water");
                continue;
            }
            if e.bits & LIVE == 0 {
                assert_eq!(self.hints[i], FREE, "free entry {i} has a hint");
                continue;
            }
            live += 1;
            assert!(
                self.hints[i] <= tick(e.expires_ms),
                "hint of {i} above its expiry"
            );
            let mut dirs = vec![(Direction::Original, e.key)];
            if e.bits & HAS_REPLY != 0 {
                dirs.push((Direction::Reply, self.reply_keys[i]));
            }
            for (d, k) in dirs {
                keys += 1;
                let payload = (i as u32) << 1 | d as u32;
                let pos = e.pos[d as usize];
                let (p, alt) = *slots
                    .get(&pos)
                    .unwrap_or_else(|| panic!("entry {i} {d:?}: slot {pos} empty"));
                assert_eq!(p, payload, "slot {pos} points elsewhere");
                assert!(
                    self.index.slot_fits(pos, k.hash(), alt),
                    "entry {i} {d:?} in a wrong bucket"
                );
                assert_eq!(self.find(&k, k.hash()), Some(payload));
            }
        }
        assert_eq!(live, self.len);
        assert_eq!(slots.len(), keys, "orphan index slots");
        let mut free = 0;
        let mut f = self.free_head;
        while f != NIL {
            assert_eq!(self.entries[f as usize].bits, 0);
            free += 1;
            assert!(free <= hw, "free list loops");
            f = self.entries[f as usize].pos[0];
        }
        assert_eq!(free + live, hw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::PROTO_UDP;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    const SEC: u64 = 1000;

    fn client(n: u32, proto: u8) -> FlowKey {
        FlowKey::v4(
            Ipv4Addr::from(0x0a00_0000 + n),
            Ipv4Addr::new(192, 0, 2, 1),
            1024 + (n % 50000) as u16,
            80,
            proto,
        )
    }

    /// The NAT reply key of `client(n)` towards real server 10.1.0.x:8080.
    fn reply_of(k: &FlowKey, rs: u8) -> FlowKey {
        FlowKey::new(
            Ipv4Addr::new(10, 1, 0, rs).into(),
            k.src_ip(),
            8080,
            k.src_port,
            k.proto,
        )
    }

    fn tcp(bits: u8) -> Option<TcpFlags> {
        Some(TcpFlags::from_bits(bits))
    }

    fn ins(
        t: &mut FlowTable,
        k: &FlowKey,
        reply: Option<&FlowKey>,
        backend: u32,
        now: u64,
    ) -> Result<FlowId, InsertError> {
        t.insert(k, k.hash(), reply.map(|r| (r, r.hash())), backend, now)
    }

    fn look(t: &mut FlowTable, k: &FlowKey, now: u64) -> Option<FlowHit> {
        t.lookup(k, k.hash(), now)
    }

    #[test]
    fn entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 38);
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::align_of::<Entry>(), 64);
    }

    #[test]
    fn insert_and_lookup_both_directions() {
        let mut t = FlowTable::with_capacity(16, Timeouts::default());
        let k = client(1, PROTO_TCP);
        let r = reply_of(&k, 7);
        let id = ins(&mut t, &k, Some(&r), 42, 0).unwrap();
        let hit = look(&mut t, &k, 1).unwrap();
        assert_eq!(
            (hit.id, hit.backend, hit.dir, hit.state),
            (id, 42, Direction::Original, TcpState::SynRecv)
        );
        let hit = look(&mut t, &r, 1).unwrap();
        assert_eq!((hit.id, hit.backend, hit.dir), (id, 42, Direction::Reply));
        assert!(look(&mut t, &k.reversed(), 1).is_none());
        // A DR connection has no reply key.
        let k2 = client(2, PROTO_UDP);
        let id2 = ins(&mut t, &k2, None, 3, 0).unwrap();
        assert_eq!(
            look(&mut t, &k2, 1).map(|h| (h.id, h.state)),
            Some((id2, TcpState::None))
        );
        assert!(look(&mut t, &reply_of(&k2, 7), 1).is_none());
        // Shared state: tracking via the reply key is seen via the original key.
        t.track(id, Direction::Reply, tcp(0x12), 2);
        t.track(id, Direction::Original, tcp(0x10), 2);
        assert_eq!(look(&mut t, &r, 3).unwrap().state, TcpState::Established);
        let listed: Vec<_> = t.iter(3).collect();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].reply, Some(r));
        assert_eq!(listed[0].remaining_ms, 900 * SEC - 1);
        assert_eq!(listed[1].reply, None);
        assert_eq!(t.inserts, 2);
        t.check();
        // Removing drops both keys; the id goes stale.
        t.remove(id);
        assert!(look(&mut t, &k, 4).is_none() && look(&mut t, &r, 4).is_none());
        assert_eq!(
            t.track(id, Direction::Original, tcp(0x10), 4),
            TcpState::Close
        );
        t.remove(id);
        assert_eq!((t.len(), t.removed), (1, 1));
        t.check();
    }

    #[test]
    fn connections_counted_per_backend_through_their_life() {
        let stats = Arc::new(BackendStats::new(8));
        let mut t = FlowTable::with_capacity(16, Timeouts::default());
        t.count_connections_in(Arc::clone(&stats));
        let conns = |b| {
            let c = stats.get(b);
            (c.active, c.inactive)
        };
        let k = client(1, PROTO_TCP);
        let id = ins(&mut t, &k, None, 3, 0).unwrap();
        assert_eq!(conns(3), (0, 1), "a SYN_RECV connection is inactive");
        t.track(id, Direction::Original, tcp(0x02), 1);
        assert_eq!(conns(3), (0, 1));
        t.track(id, Direction::Original, tcp(0x10), 2);
        assert_eq!(conns(3), (1, 0), "established: active");
        t.track(id, Direction::Original, tcp(0x11), 3);
        assert_eq!(conns(3), (0, 1), "closing: inactive again");
        let u = client(2, PROTO_UDP);
        ins(&mut t, &u, None, 3, 0).unwrap();
        assert_eq!(conns(3), (0, 2), "UDP flows are inactive");
        t.remove(id);
        assert_eq!(conns(3), (0, 1));
        // Expiry (the sweep) gives the count back too.
        t.expire(3_600_000, 64);
        assert_eq!((t.len(), conns(3)), (0, (0, 0)));
        // So does a lookup that finds the connection expired.
        let id = ins(&mut t, &k, None, 5, 0).unwrap();
        t.track(id, Direction::Original, tcp(0x10), 0);
        assert_eq!(conns(5), (1, 0));
        assert!(look(&mut t, &k, 3_600_000).is_none());
        assert_eq!(conns(5), (0, 0));
        t.check();
    }

    #[test]
    fn a_retransmitted_syn_without_any_reply_is_the_step3_symptom() {
        let stats = Arc::new(BackendStats::new(8));
        let mut t = FlowTable::with_capacity(16, Timeouts::default());
        t.count_connections_in(Arc::clone(&stats));
        let syn = tcp(0x02);
        // NAT, no reply ever: counted once, however many retransmissions.
        let k = client(1, PROTO_TCP);
        let id = ins(&mut t, &k, Some(&reply_of(&k, 1)), 1, 0).unwrap();
        t.track(id, Direction::Original, syn, 0);
        assert_eq!(stats.get(1).step3_missing, 0, "the first SYN is no symptom");
        t.track(id, Direction::Original, syn, 1000);
        t.track(id, Direction::Original, syn, 3000);
        assert_eq!(stats.get(1).step3_missing, 1);
        // NAT with the SYN-ACK back through us, then a SYN: not the symptom.
        let k = client(2, PROTO_TCP);
        let id = ins(&mut t, &k, Some(&reply_of(&k, 2)), 2, 0).unwrap();
        t.track(id, Direction::Original, syn, 0);
        t.track(id, Direction::Reply, tcp(0x12), 1);
        t.track(id, Direction::Original, syn, 1000);
        assert_eq!(stats.get(2).step3_missing, 0);
        // DR: replies never come back, by design.
        let k = client(3, PROTO_TCP);
        let id = ins(&mut t, &k, None, 3, 0).unwrap();
        t.track(id, Direction::Original, syn, 0);
        t.track(id, Direction::Original, syn, 1000);
        assert_eq!(stats.get(3).step3_missing, 0);
    }

    #[test]
    fn duplicate_keys_are_refused_and_leave_nothing() {
        let mut t = FlowTable::with_capacity(16, Timeouts::default());
        let k = client(1, PROTO_TCP);
        let r = reply_of(&k, 1);
        ins(&mut t, &k, Some(&r), 1, 0).unwrap();
        assert_eq!(ins(&mut t, &k, None, 2, 0), Err(InsertError::Exists));
        // A new connection whose reply key clashes with an existing one's.
        let k2 = client(2, PROTO_TCP);
        assert_eq!(ins(&mut t, &k2, Some(&r), 2, 0), Err(InsertError::Exists));
        // ...or with its own original key.
        assert_eq!(ins(&mut t, &k2, Some(&k2), 2, 0), Err(InsertError::Exists));
        assert!(look(&mut t, &k2, 0).is_none());
        assert_eq!((t.len(), t.insert_exists), (1, 3));
        t.check();
        // An expired holder of the key does not block: it is removed.
        assert!(ins(&mut t, &k2, Some(&r), 2, 61 * SEC).is_ok());
        assert_eq!((t.len(), t.expired), (1, 1));
        t.check();
    }

    #[test]
    fn full_table_refuses_and_stays_consistent() {
        let cap = 64;
        let mut t = FlowTable::with_capacity(cap, Timeouts::default());
        let keys: Vec<_> = (0..cap as u32 + 1).map(|n| client(n, PROTO_TCP)).collect();
        let mut ids = Vec::new();
        for k in &keys[..cap] {
            ids.push(ins(&mut t, k, Some(&reply_of(k, 1)), 1, 0).unwrap());
        }
        assert_eq!(
            ins(&mut t, &keys[cap], Some(&reply_of(&keys[cap], 1)), 1, 0),
            Err(InsertError::Full)
        );
        assert_eq!(ins(&mut t, &keys[cap], None, 1, 0), Err(InsertError::Full));
        assert_eq!((t.len(), t.insert_full), (cap, 2));
        assert!(look(&mut t, &keys[cap], 0).is_none());
        t.check();
        for k in &keys[..cap] {
            assert!(look(&mut t, k, 0).is_some() && look(&mut t, &reply_of(k, 1), 0).is_some());
        }
        t.remove(ids[10]);
        assert!(ins(&mut t, &keys[cap], Some(&reply_of(&keys[cap], 1)), 1, 0).is_ok());
        t.check();
        // Full of expired connections: an insert reclaims one.
        let late = 61 * SEC;
        assert!(ins(&mut t, &keys[10], None, 1, late).is_ok());
        assert_eq!(t.expired, 1);
        t.check();
    }

    #[test]
    fn index_full_rolls_back_the_whole_insert() {
        // 2 buckets = 16 key slots for 32 entries: the index fills first.
        let mut t = FlowTable::with_geometry(32, 2, Timeouts::default(), Pages::Small);
        let keys: Vec<_> = (0..9).map(|n| client(n, PROTO_UDP)).collect();
        for k in &keys[..7] {
            ins(&mut t, k, Some(&reply_of(k, 1)), 1, 0).unwrap();
        }
        ins(&mut t, &keys[7], None, 1, 0).unwrap(); // 15 slots used
        let before: Vec<_> = t.index.occupied();
        // The original key fits, the reply key does not: nothing may stay behind.
        assert_eq!(
            ins(&mut t, &keys[8], Some(&reply_of(&keys[8], 1)), 1, 0),
            Err(InsertError::Full)
        );
        assert!(look(&mut t, &keys[8], 0).is_none());
        assert_eq!(t.len(), 8);
        let mut after = t.index.occupied();
        let mut before = before;
        before.sort_unstable_by_key(|s| s.2);
        after.sort_unstable_by_key(|s| s.2);
        assert_eq!(
            before.iter().map(|s| s.2).collect::<Vec<_>>(),
            after.iter().map(|s| s.2).collect::<Vec<_>>()
        );
        t.check();
        assert!(ins(&mut t, &keys[8], None, 1, 0).is_ok());
        assert_eq!(
            ins(&mut t, &client(99, PROTO_UDP), None, 1, 0),
            Err(InsertError::Full)
        );
        t.check();
    }

    #[test]
    fn tcp_normal_close_and_timeouts() {
        let mut t = FlowTable::with_capacity(8, Timeouts::default());
        let k = client(1, PROTO_TCP);
        let r = reply_of(&k, 1);
        let id = ins(&mut t, &k, Some(&r), 1, 0).unwrap();
        let steps = [
            (Direction::Original, 0x02, TcpState::SynRecv, 60),
            (Direction::Reply, 0x12, TcpState::SynRecv, 60),
            (Direction::Original, 0x10, TcpState::Established, 900),
            (Direction::Original, 0x11, TcpState::FinWait, 120),
            (Direction::Reply, 0x10, TcpState::FinWait, 120),
            (Direction::Reply, 0x11, TcpState::TimeWait, 120),
            (Direction::Original, 0x10, TcpState::TimeWait, 120),
        ];
        let mut now = 0;
        for (dir, bits, state, timeout) in steps {
            now += SEC;
            assert_eq!(t.track(id, dir, tcp(bits), now), state);
            let info = t.iter(now).next().unwrap();
            assert_eq!((info.state, info.remaining_ms), (state, timeout * SEC));
        }
        // Alive one ms before the timeout, gone at it.
        assert!(look(&mut t, &k, now + 120 * SEC - 1).is_some());
        assert!(look(&mut t, &r, now + 120 * SEC).is_none());
        assert_eq!((t.len(), t.expired), (0, 1));
        t.check();
    }

    #[test]
    fn tcp_rst_and_udp_timeouts() {
        let mut t = FlowTable::with_capacity(8, Timeouts::default());
        let k = client(1, PROTO_TCP);
        let id = ins(&mut t, &k, None, 1, 0).unwrap();
        t.track(id, Direction::Original, tcp(0x02), 0);
        t.track(id, Direction::Original, tcp(0x10), 0);
        assert_eq!(
            t.track(id, Direction::Original, tcp(0x04), 5 * SEC),
            TcpState::Close
        );
        assert!(look(&mut t, &k, 15 * SEC - 1).is_some());
        // The sweep (not only lookups) honours the shortened expiry.
        assert_eq!(t.expire(15 * SEC, 8), 1);
        assert!(t.is_empty());

        let u = client(2, PROTO_UDP);
        let id = ins(&mut t, &u, None, 1, 0).unwrap();
        assert_eq!(t.track(id, Direction::Original, None, 0), TcpState::None);
        assert_eq!(
            t.track(id, Direction::Original, None, 200 * SEC),
            TcpState::None
        );
        assert!(look(&mut t, &u, 499 * SEC).is_some());
        assert!(look(&mut t, &u, 500 * SEC).is_none());

        // Custom timeouts apply from the next tracked packet.
        let id = ins(&mut t, &u, None, 1, 0).unwrap();
        t.set_timeouts(Timeouts {
            udp: 5,
            ..Timeouts::default()
        });
        t.track(id, Direction::Original, None, 0);
        assert_eq!(t.iter(0).next().map(|i| i.remaining_ms), Some(5 * SEC));
        t.check();
    }

    #[test]
    fn sweep_removes_idle_keeps_active() {
        let cap = 1000;
        let mut t = FlowTable::with_capacity(cap, Timeouts::default());
        let keys: Vec<_> = (0..cap as u32).map(|n| client(n, PROTO_UDP)).collect();
        let ids: Vec<_> = keys
            .iter()
            .map(|k| ins(&mut t, k, None, 1, 0).unwrap())
            .collect();
        // One burst every 10 ms for 20 simulated minutes; odd flows see a packet every 10 s.
        let mut now = 0;
        while now < 1200 * SEC {
            now += 10;
            if now % (10 * SEC) == 0 {
                for id in ids.iter().skip(1).step_by(2) {
                    t.track(*id, Direction::Original, None, now);
                }
            }
            t.expire(now, 4);
        }
        assert_eq!((t.len(), t.expired), (cap / 2, (cap / 2) as u64));
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(look(&mut t, k, now).is_some(), n % 2 == 1);
        }
        t.check();
    }

    #[test]
    fn sweep_bound_holds() {
        // Each call reads SCAN_PER_REMOVAL * budget hints or removes `budget` connections, so an
        // entry expired at t is gone after ceil(high_water / (SCAN_PER_REMOVAL * budget)) calls,
        // plus one call per `budget` other expired entries removed meanwhile.
        for (cap, budget) in [(1000usize, 4usize), (777, 1), (64, 64), (5000, 64)] {
            let scan_calls = cap.div_ceil(SCAN_PER_REMOVAL * budget);
            // (a) One idle connection among active ones, the cursor anywhere.
            for victim in [0, cap / 3, cap - 1] {
                let mut t = FlowTable::with_capacity(cap, Timeouts::default());
                let ids: Vec<_> = (0..cap as u32)
                    .map(|n| ins(&mut t, &client(n, PROTO_UDP), None, 1, 0).unwrap())
                    .collect();
                for _ in 0..victim % 7 {
                    t.expire(1, budget);
                }
                let now = 300 * SEC;
                for (n, id) in ids.iter().enumerate() {
                    if n != victim {
                        t.track(*id, Direction::Original, None, now - 1);
                    }
                }
                for _ in 0..scan_calls {
                    t.expire(now, budget);
                }
                assert_eq!(
                    t.len(),
                    cap - 1,
                    "cap {cap} budget {budget} victim {victim}"
                );
                assert_eq!(t.expired, 1);
                t.check();
            }
            // (b) Everything expires at once (staggered inserts: entry n expires at 300 s + n ms).
            let mut t = FlowTable::with_capacity(cap, Timeouts::default());
            for n in 0..cap as u32 {
                ins(&mut t, &client(n, PROTO_UDP), None, 1, u64::from(n)).unwrap();
            }
            t.expire(1, budget);
            let calls = scan_calls + cap.div_ceil(budget);
            for _ in 0..calls {
                t.expire(300 * SEC + cap as u64, budget);
            }
            assert!(t.is_empty(), "cap {cap} budget {budget}: {} left", t.len());
            t.check();
        }
    }

    #[test]
    fn stale_ids_are_harmless_after_reuse() {
        let mut t = FlowTable::with_capacity(1, Timeouts::default());
        let a = ins(&mut t, &client(1, PROTO_TCP), None, 1, 0).unwrap();
        t.remove(a);
        let b = ins(&mut t, &client(2, PROTO_TCP), None, 2, 0).unwrap();
        assert_eq!(a.index(), b.index());
        t.remove(a);
        assert_eq!(
            t.track(a, Direction::Original, tcp(0x04), 0),
            TcpState::Close
        );
        assert_eq!(
            look(&mut t, &client(2, PROTO_TCP), 0).map(|h| (h.id, h.state)),
            Some((b, TcpState::SynRecv))
        );
    }

    #[test]
    fn churn_at_full_load_keeps_invariants() {
        let cap = 5000;
        let mut t = FlowTable::with_capacity(cap, Timeouts::default());
        let mut live: Vec<(FlowId, FlowKey)> = Vec::new();
        let mut n = 0u32;
        let mut rng = 0x1234_5678_9abc_def0u64;
        for round in 0..20 {
            while live.len() < cap {
                let k = client(n, PROTO_TCP);
                n += 1;
                let id = ins(&mut t, &k, Some(&reply_of(&k, (n % 200) as u8)), n, 0).unwrap();
                live.push((id, k));
            }
            for _ in 0..cap / 3 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let (id, _) = live.swap_remove((rng % live.len() as u64) as usize);
                t.remove(id);
            }
            if round % 5 == 0 {
                t.check();
            }
        }
        for (id, k) in &live {
            assert_eq!(look(&mut t, k, 0).map(|h| h.id), Some(*id));
        }
        t.check();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { n: u8, nat: bool, rs: u8 },
        Lookup { n: u8 },
        LookupReply { n: u8, rs: u8 },
        Remove { n: u8 },
        Track { n: u8, bits: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24, any::<bool>(), 0u8..4).prop_map(|(n, nat, rs)| Op::Insert { n, nat, rs }),
            (0u8..24).prop_map(|n| Op::Lookup { n }),
            (0u8..24, 0u8..4).prop_map(|(n, rs)| Op::LookupReply { n, rs }),
            (0u8..24).prop_map(|n| Op::Remove { n }),
            (0u8..24, any::<u8>()).prop_map(|(n, bits)| Op::Track { n, bits }),
        ]
    }

    proptest! {
        /// Insert/remove/lookup churn against a std HashMap model of key -> connection.
        #[test]
        fn matches_hashmap_model(ops in proptest::collection::vec(op(), 1..400)) {
            const CAP: usize = 8;
            let mut t = FlowTable::with_capacity(CAP, Timeouts::default());
            // Model: original key -> (id, backend, reply key).
            let mut conns: HashMap<FlowKey, (FlowId, u32, Option<FlowKey>)> = HashMap::new();
            let mut keys: HashMap<FlowKey, (FlowKey, Direction)> = HashMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                let backend = step as u32;
                match op {
                    Op::Insert { n, nat, rs } => {
                        let k = client(u32::from(n), PROTO_TCP);
                        let r = nat.then(|| reply_of(&k, rs));
                        let got = ins(&mut t, &k, r.as_ref(), backend, 0);
                        let clash = keys.contains_key(&k) || r.is_some_and(|r| keys.contains_key(&r));
                        if clash {
                            prop_assert_eq!(got, Err(InsertError::Exists));
                        } else if conns.len() == CAP {
                            prop_assert_eq!(got, Err(InsertError::Full));
                        } else {
                            let id = got.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                            conns.insert(k, (id, backend, r));
                            keys.insert(k, (k, Direction::Original));
                            if let Some(r) = r {
                                keys.insert(r, (k, Direction::Reply));
                            }
                        }
                    }
                    Op::Lookup { n } => {
                        let k = client(u32::from(n), PROTO_TCP);
                        let want = keys.get(&k).map(|(o, d)| (conns[o].0, conns[o].1, *d));
                        prop_assert_eq!(look(&mut t, &k, 0).map(|h| (h.id, h.backend, h.dir)), want);
                    }
                    Op::LookupReply { n, rs } => {
                        let r = reply_of(&client(u32::from(n), PROTO_TCP), rs);
                        let want = keys.get(&r).map(|(o, d)| (conns[o].0, conns[o].1, *d));
                        prop_assert_eq!(look(&mut t, &r, 0).map(|h| (h.id, h.backend, h.dir)), want);
                    }
                    Op::Remove { n } => {
                        let k = client(u32::from(n), PROTO_TCP);
                        if let Some((id, _, r)) = conns.remove(&k) {
                            keys.remove(&k);
                            if let Some(r) = r {
                                keys.remove(&r);
                            }
                            t.remove(id);
                            t.remove(id); // twice: the second is a stale id
                        }
                    }
                    Op::Track { n, bits } => {
                        if let Some((id, _, _)) = conns.get(&client(u32::from(n), PROTO_TCP)) {
                            t.track(*id, Direction::Original, tcp(bits), 0);
                        }
                    }
                }
                prop_assert_eq!(t.len(), conns.len());
            }
            t.check();
        }
    }
}
