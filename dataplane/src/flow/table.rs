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
//! An expired entry is never returned; lookups remove what they find expired and a bounded
//! cursor sweep over the expiry hints reclaims the rest (`table/expiry.rs` has the design and
//! its bound). Listings are in `table/listing.rs`, the tests in `table/tests.rs`.

use super::index::{CuckooIndex, MAX_PAYLOAD};
use super::key::{FlowKey, PROTO_TCP};
use super::mem::{Backing, Pages, Zeroable, ZeroedSlice};
use super::state::{next_state, Direction, Seen, TcpFlags, TcpState, Timeouts};
use crate::backend_stats::{BackendStats, ConnClass};
use crate::prefetch::prefetch_line;
use std::sync::Arc;

use expiry::tick;
pub use expiry::SCAN_PER_REMOVAL;

/// Hints an insert into a full table reads to reclaim one expired entry.
const RECLAIM_SCAN: usize = 256;
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
    /// for a key); forward the flow statelessly. While the table
    /// [refuses new connections](FlowTable::refuses_new) this comes before `Exists`: the
    /// keys are not looked at.
    #[error("flow table full")]
    Full,
    /// The key or the reply key already belongs to a live connection.
    #[error("flow key already in the table")]
    Exists,
}

/// What a lookup miss learnt: the key was in no live connection when the table had taken
/// `epoch` inserts. An insert of the same key passing it skips searching the index for that
/// key again while no insert came in between (only an insert adds keys; see
/// [`FlowTable::insert_after_miss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Miss {
    hash: u64,
    epoch: u64,
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
    /// A reclaim scan (insert into a full table) found nothing due at this millisecond: the
    /// next is not tried before the clock moves on (see [`FlowTable::alloc`]).
    reclaim_dry_ms: Option<u64>,
    /// Bumped by every successful insert: a [`Miss`] of an older epoch is stale.
    epoch: u64,
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
            reclaim_dry_ms: None,
            epoch: 0,
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

    /// [`lookup`](FlowTable::lookup), and on a miss what it learnt, for
    /// [`insert_after_miss`](FlowTable::insert_after_miss) of the same key. (Apart from
    /// `lookup`, whose callers on the established path would pay for the `Miss`: +5
    /// instructions per packet in callgrind.)
    #[inline]
    pub fn lookup_or_miss(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now_ms: u64,
    ) -> Result<FlowHit, Miss> {
        // Removing an expired holder of the key adds nothing: the epoch may be read after.
        self.lookup(key, hash, now_ms).ok_or(Miss {
            hash,
            epoch: self.epoch,
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
    ///
    /// Precedence: while the table [refuses new connections](FlowTable::refuses_new) (full,
    /// and a reclaim already came up dry at this millisecond) the answer is `Full` without
    /// looking at the keys, even for a key that clashes: a SYN flood into a full table then
    /// costs no index search. Otherwise a clash is `Exists` before room is looked for.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        reply: Option<(&FlowKey, u64)>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        if self.refuse_full(now_ms) {
            return Err(InsertError::Full);
        }
        let exists = self.blocks(key, hash, now_ms)
            || reply.is_some_and(|(rk, rh)| rk == key || self.blocks(rk, rh, now_ms));
        if exists {
            self.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        self.enter(key, hash, reply, backend, now_ms)
    }

    /// [`insert`](FlowTable::insert) right after `miss`, the
    /// [`lookup_or_miss`](FlowTable::lookup_or_miss) of the same `key` (the caller's promise):
    /// the index is not searched for `key` again unless an insert came in between. The reply
    /// key is asked of `reply` and hashed only once the table is known to take an entry (a
    /// full table refuses first, see `insert`'s precedence), so a refused NAT SYN builds and
    /// hashes nothing.
    pub fn insert_after_miss(
        &mut self,
        key: &FlowKey,
        miss: Miss,
        reply: impl FnOnce() -> Option<FlowKey>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        if self.refuse_full(now_ms) {
            return Err(InsertError::Full);
        }
        let hash = miss.hash;
        let mut exists = miss.epoch != self.epoch && self.blocks(key, hash, now_ms);
        let reply = reply();
        let reply = reply.as_ref().map(|rk| (rk, rk.hash()));
        if let Some((rk, rh)) = reply {
            exists = exists || rk == key || self.blocks(rk, rh, now_ms);
        }
        if exists {
            self.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        self.enter(key, hash, reply, backend, now_ms)
    }

    /// Whether an insert at `now_ms` is refused as `Full` before any key is looked at: no
    /// free entry, no never-used one, and a reclaim scan already found nothing due at this
    /// millisecond (the allocator waits for the clock to move before it scans again).
    #[inline]
    pub fn refuses_new(&self, now_ms: u64) -> bool {
        // The dry mark first: it is clear whenever the last reclaim found something.
        self.reclaim_dry_ms == Some(now_ms)
            && self.free_head == NIL
            && self.high_water as usize >= self.entries.len()
    }

    /// [`refuses_new`](FlowTable::refuses_new), counting a refusal in `insert_full` (what
    /// an insert refused there counts), for a caller that then skips the insert.
    #[inline]
    pub fn refuse_full(&mut self, now_ms: u64) -> bool {
        let refused = self.refuses_new(now_ms);
        self.insert_full += u64::from(refused);
        refused
    }

    /// The part of an insert after the clash checks: an entry, its keys in the index.
    fn enter(
        &mut self,
        key: &FlowKey,
        hash: u64,
        reply: Option<(&FlowKey, u64)>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
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
        self.epoch += 1;
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
    ///
    /// A full table under a SYN flood gets an insert attempt per packet; each reclaim scan
    /// reads [`RECLAIM_SCAN`] hints (~40 ns), which was 14 % of the worker's time in the
    /// all-new-flows benchmark. After a scan that found nothing due, the next waits for the
    /// clock to move (at most 1 ms): the per-burst sweep goes on removing what expires, and an
    /// insert meanwhile is refused as full (forwarded statelessly by the consistent hash).
    fn alloc(&mut self, now_ms: u64) -> Option<usize> {
        if self.free_head == NIL && (self.high_water as usize) < self.entries.len() {
            self.high_water += 1;
            return Some(self.high_water as usize - 1);
        }
        if self.free_head == NIL {
            if self.reclaim_dry_ms == Some(now_ms) || self.sweep(now_ms, 1, RECLAIM_SCAN) == 0 {
                self.reclaim_dry_ms = Some(now_ms);
                return None;
            }
            self.reclaim_dry_ms = None;
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
}

mod expiry;
mod listing;
#[cfg(test)]
mod tests;
