//! The per-core flow table: connections, their one or two keys, TCP state and expiry.
//!
//! One table per worker core, never shared: plain fields, no atomics, no locks. Every byte
//! is allocated by [`FlowTable::with_capacities`]; afterwards nothing allocates, ever.
//!
//! # Layout
//!
//! Two cuckoo indexes (`flow::cuckoo`), one per address family, of slots that hold a key
//! *and* what a packet of that key needs (`flow::slot`): the connection's state, real server,
//! and this direction's expiry. IPv4 slots are 32 bytes, two per 64-byte bucket: a packet of
//! a tracked IPv4 connection reads and writes one cache line of the table. A NAT connection
//! has two keys (client -> VIP, real server -> client) in two slots linked to each other; both
//! hold the connection's state, kept equal by [`track`](FlowTable::track), and each its own
//! expiry: the connection lives until the later of the two, so a packet that changes nothing
//! but the expiry writes only its own slot ([`FlowTable::refresh`]).
//!
//! Each family's index is sized for its capacity with two keys per connection at 70 % load:
//! 91 bytes per IPv4 connection, 183 per IPv6 one (about 124 MB for a million IPv4 and a
//! quarter million IPv6 connections, the daemon's default).
//!
//! # Why hand-written
//!
//! `hashbrown::HashTable::with_capacity(n)` does not allocate again while it holds at most
//! `n` items, but deletions leave tombstones that do not give back growth room; under churn
//! an insert eventually rehashes all items in place (an O(n) stall of milliseconds on the
//! packet path at a million flows). A connection also has two keys that must share one
//! state, and a hit should cost one cache line. So: a cuckoo index whose slots are the
//! entries (deleting clears a slot, a lookup reads at most two buckets, an insert succeeds in
//! bounded time or fails with `Full` leaving nothing behind).
//!
//! # Expiry
//!
//! An expired connection is never returned; lookups remove what they find expired and a
//! bounded cursor sweep ([`FlowTable::expire`], `table/expiry.rs`) reclaims the rest.
//! Listings are in `table/listing.rs`, the tests in `table/tests.rs`.

mod conns;
mod expiry;
pub(crate) mod fast;
mod fast4;
mod fast6;
mod fnat;
mod listing;
#[cfg(test)]
mod tests;

use super::hash::TableHash;
use super::key::FlowKey;
use super::mem::{Backing, Pages};
use super::slot::{Key, V4, V6};
use super::state::{Direction, TcpFlags, TcpState, Timeouts};
use crate::backend_stats::{BackendStats, ConnClass};
use conns::Conns;
use std::sync::Arc;

pub use expiry::SCAN_PER_REMOVAL;

/// Largest capacity of a family.
pub const MAX_CAPACITY: usize = 1 << 28;

/// Slot bit: its missing step 3 (a retransmitted SYN before any reply) was counted.
const STEP3_REPORTED: u8 = 0x20;
/// Slot bit: a SYN of the client was tracked (so the next one is a retransmission).
const SYN_SEEN: u8 = 0x10;

/// A handle on a connection, valid until the connection is removed (then every method
/// ignores it). It names the connection's original key by its hash and the connection's
/// number, so it stays valid when an insert moves the key between its two buckets; where the
/// key was when the handle was made is tried first. Two handles of one connection are equal.
#[derive(Clone, Copy, Debug)]
pub struct FlowId {
    v6: bool,
    hash: TableHash,
    serial: u32,
    /// The original key's slot when the handle was made (a hint).
    pos: u32,
}

impl PartialEq for FlowId {
    fn eq(&self, o: &Self) -> bool {
        (self.v6, self.hash, self.serial) == (o.v6, o.hash, o.serial)
    }
}

impl Eq for FlowId {}

impl std::hash::Hash for FlowId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.v6, self.hash, self.serial).hash(h);
    }
}

impl FlowId {
    /// The connection's number in its table (the insert's sequence number, wrapping).
    pub fn serial(self) -> u32 {
        self.serial
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
    /// Every connection of the family's capacity is live (or, very rarely, the index found no
    /// slot for a key); forward the flow statelessly. While the table
    /// [refuses new connections](FlowTable::refuses_new) this comes before `Exists`: the
    /// keys are not looked at.
    #[error("flow table full")]
    Full,
    /// The key or the reply key already belongs to a live connection.
    #[error("flow key already in the table")]
    Exists,
    /// Every reply key a full-NAT insert was offered belongs to a live connection
    /// ([`FlowTable::insert_searching`]): no local address and port is free.
    #[error("every candidate reply key is taken")]
    NoReplyKey,
}

/// What a lookup miss learnt: the key was in no live connection when the table had taken
/// `epoch` inserts. An insert of the same key passing it skips searching the index for that
/// key again while no insert came in between (only an insert adds keys; see
/// [`FlowTable::insert_after_miss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Miss {
    hash: TableHash,
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

/// What the table counts (read by tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    /// Connections inserted.
    pub inserts: u64,
    /// Inserts refused with [`InsertError::Full`].
    pub insert_full: u64,
    /// Inserts refused with [`InsertError::Exists`].
    pub insert_exists: u64,
    /// Inserts refused with [`InsertError::NoReplyKey`].
    pub insert_no_reply_key: u64,
    /// Connections removed because they expired (by `expire`, `lookup` or `insert`).
    pub expired: u64,
    /// Connections removed by [`FlowTable::remove`].
    pub removed: u64,
}

/// What both families share.
pub(crate) struct Ctx {
    /// Timeouts per state in milliseconds, indexed by `TcpState as usize`.
    timeout_ms: [u32; TcpState::COUNT],
    /// The last connection number handed out.
    serial: u32,
    /// Bumped by every successful insert: a [`Miss`] of an older epoch is stale.
    epoch: u64,
    counts: TableCounts,
    /// Where connections are counted per backend (active / inactive), when attached.
    backend_stats: Option<Arc<BackendStats>>,
}

/// A worker's flow table. See the module documentation for the design.
pub struct FlowTable {
    v4: Conns<V4>,
    v6: Conns<V6>,
    ctx: Ctx,
    timeouts: Timeouts,
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

/// Whether a key is an IPv4 flow's: both addresses IPv4-mapped.
#[inline]
fn is_v4(key: &FlowKey) -> bool {
    crate::wire::addr::is_mapped(&key.src) && crate::wire::addr::is_mapped(&key.dst)
}

impl FlowTable {
    /// A table for `capacity` connections of each family (tests, benchmarks). Allocates
    /// everything it will ever use; see [`with_capacities`](FlowTable::with_capacities).
    pub fn with_capacity(capacity: usize, timeouts: Timeouts) -> FlowTable {
        Self::with_capacities(capacity, capacity, timeouts, Pages::default())
    }

    /// [`with_capacity`](FlowTable::with_capacity) on the given kind of pages.
    pub fn with_capacity_on(capacity: usize, timeouts: Timeouts, pages: Pages) -> FlowTable {
        Self::with_capacities(capacity, capacity, timeouts, pages)
    }

    /// A table for `v4` IPv4 and `v6` IPv6 connections (each clamped to
    /// `1..=MAX_CAPACITY`), each with one or two keys, on the given kind of pages (see
    /// `flow::mem`: [`Pages::HugeTlb`] takes reserved huge pages, which DPDK shares).
    ///
    /// The arrays are mapped and not touched: call [`prefault`](FlowTable::prefault) on the
    /// core that will use the table.
    pub fn with_capacities(v4: usize, v6: usize, timeouts: Timeouts, pages: Pages) -> FlowTable {
        FlowTable {
            v4: Conns::new(v4.clamp(1, MAX_CAPACITY), pages, false),
            v6: Conns::new(v6.clamp(1, MAX_CAPACITY), pages, true),
            ctx: Ctx {
                timeout_ms: timeouts_ms(&timeouts),
                serial: 0,
                epoch: 0,
                counts: TableCounts::default(),
                backend_stats: None,
            },
            timeouts,
        }
    }

    /// Count this table's connections per backend in `stats` (the backend id given at insert
    /// is the slot): one gauge for established connections, one for the others. Attach before
    /// the first insert.
    pub fn count_connections_in(&mut self, stats: Arc<BackendStats>) {
        self.ctx.backend_stats = Some(stats);
    }

    /// What the table counted.
    pub fn counts(&self) -> &TableCounts {
        &self.ctx.counts
    }

    /// Live connections of both families (including expired ones the sweep has not reached).
    #[inline]
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table holds no connection.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of connections: IPv4 and IPv6 together.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.v4.capacity() + self.v6.capacity()
    }

    /// Maximum number of IPv4 connections and of IPv6 connections.
    pub fn capacities(&self) -> (usize, usize) {
        (self.v4.capacity(), self.v6.capacity())
    }

    /// Index slots (keys) the table can hold, both families.
    pub fn index_slots(&self) -> usize {
        self.v4.idx.slots() + self.v6.idx.slots()
    }

    /// Allocate every page of the table now, from the calling thread: the worker calls this
    /// on its own core before polling, so the memory sits on that core's NUMA node and no
    /// page fault lands on the packet path.
    pub fn prefault(&mut self) {
        self.v4.idx.prefault();
        self.v6.idx.prefault();
    }

    /// The pages the IPv4 index got (the larger array by default).
    pub fn backing(&self) -> Backing {
        self.v4.idx.backing()
    }

    /// Bytes the table's arrays take, all allocated up front.
    pub fn memory_bytes(&self) -> usize {
        self.v4.idx.memory_bytes() + self.v6.idx.memory_bytes()
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// New timeouts; they apply from each connection's next tracked packet.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
        self.ctx.timeout_ms = timeouts_ms(&timeouts);
    }

    /// The table hash of `key`, which every method taking a hash expects.
    #[inline]
    pub fn hash(key: &FlowKey) -> TableHash {
        if is_v4(key) {
            Key::<V4>::of(key).hash()
        } else {
            Key::<V6>::of(key).hash()
        }
    }

    /// The connection `key` belongs to, in either direction. `hash` must be
    /// [`FlowTable::hash`]`(key)`. An expired connection is removed on the spot (counted in
    /// `expired`) and not returned.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: TableHash, now_ms: u64) -> Option<FlowHit> {
        if is_v4(key) {
            self.v4.lookup(&Key::of(key), hash, now_ms, &mut self.ctx)
        } else {
            self.v6.lookup(&Key::of(key), hash, now_ms, &mut self.ctx)
        }
    }

    /// [`lookup`](FlowTable::lookup), and on a miss what it learnt, for
    /// [`insert_after_miss`](FlowTable::insert_after_miss) of the same key.
    #[inline]
    pub fn lookup_or_miss(
        &mut self,
        key: &FlowKey,
        hash: TableHash,
        now_ms: u64,
    ) -> Result<FlowHit, Miss> {
        // Removing an expired holder of the key adds nothing: the epoch may be read after.
        self.lookup(key, hash, now_ms).ok_or(Miss {
            hash,
            epoch: self.ctx.epoch,
        })
    }

    /// Start loading the primary bucket of a key of this family (`v4`) with `hash`: issue it
    /// for every packet of a burst before the lookups, so the burst's misses overlap (DPDK's
    /// `rte_hash_lookup_bulk` and VPP do the same).
    #[inline]
    pub fn prefetch(&self, v4: bool, hash: TableHash) {
        if v4 {
            self.v4.prefetch(hash);
        } else {
            self.v6.prefetch(hash);
        }
    }

    /// A new connection under `key` (client -> VIP, `hash` = [`FlowTable::hash`]`(key)`) and,
    /// in NAT mode, its `reply` key (real server -> client, same family) with that key's
    /// hash. Its state starts as [`TcpState::SynRecv`] for TCP (timeout `tcp_syn`) and
    /// [`TcpState::None`] otherwise; the caller then [`track`](FlowTable::track)s the packet
    /// that created it.
    ///
    /// Fails with `Exists` if either key belongs to a live connection (expired ones are
    /// removed), with `Full` if the family has no room after a bounded attempt to reclaim an
    /// expired connection, or if the index has no slot for a key. On failure nothing of the
    /// new connection stays behind.
    ///
    /// Precedence: while the table [refuses new connections](FlowTable::refuses_new) (full,
    /// and a reclaim already came up dry at this millisecond) the answer is `Full` without
    /// looking at the keys, even for a key that clashes: a SYN flood into a full table then
    /// costs no index search. Otherwise a clash is `Exists` before room is looked for.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: TableHash,
        reply: Option<(&FlowKey, TableHash)>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        if self.refuse_full(key, now_ms) {
            return Err(InsertError::Full);
        }
        self.enter(
            key,
            hash,
            false,
            reply.map(|(k, h)| (*k, h)),
            backend,
            now_ms,
        )
    }

    /// [`insert`](FlowTable::insert) right after `miss`, the
    /// [`lookup_or_miss`](FlowTable::lookup_or_miss) of the same `key` (the caller's promise):
    /// the index is not searched for `key` again unless an insert came in between. The reply
    /// key is asked of `reply` and hashed only once the table is known to take a connection
    /// (a full table refuses first, see `insert`'s precedence), so a refused NAT SYN builds
    /// and hashes nothing.
    pub fn insert_after_miss(
        &mut self,
        key: &FlowKey,
        miss: Miss,
        reply: impl FnOnce() -> Option<FlowKey>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        if self.refuse_full(key, now_ms) {
            return Err(InsertError::Full);
        }
        let fresh = miss.epoch == self.ctx.epoch;
        let reply = reply().map(|rk| {
            let h = FlowTable::hash(&rk);
            (rk, h)
        });
        self.enter(key, miss.hash, fresh, reply, backend, now_ms)
    }

    fn enter(
        &mut self,
        key: &FlowKey,
        hash: TableHash,
        skip_key: bool,
        reply: Option<(FlowKey, TableHash)>,
        backend: u32,
        now_ms: u64,
    ) -> Result<FlowId, InsertError> {
        let ctx = &mut self.ctx;
        let v4 = is_v4(key);
        if reply.is_some_and(|(rk, _)| is_v4(&rk) != v4) {
            // A reply key of the other family: the snapshot never pairs families.
            ctx.counts.insert_exists += 1;
            return Err(InsertError::Exists);
        }
        if v4 {
            let reply = reply.map(|(k, h)| (Key::of(&k), h));
            self.v4
                .insert(&Key::of(key), hash, skip_key, reply, backend, now_ms, ctx)
        } else {
            let reply = reply.map(|(k, h)| (Key::of(&k), h));
            self.v6
                .insert(&Key::of(key), hash, skip_key, reply, backend, now_ms, ctx)
        }
    }

    /// Whether an insert of a key of `key`'s family at `now_ms` is refused as `Full` before
    /// any key is looked at: the family is at capacity and a reclaim scan already found
    /// nothing due at this millisecond (the table waits for the clock to move before it scans
    /// again).
    #[inline]
    pub fn refuses_new(&self, key: &FlowKey, now_ms: u64) -> bool {
        if is_v4(key) {
            self.v4.refuses_new(now_ms)
        } else {
            self.v6.refuses_new(now_ms)
        }
    }

    /// [`refuses_new`](FlowTable::refuses_new), counting a refusal in `insert_full` (what
    /// an insert refused there counts), for a caller that then skips the insert.
    #[inline]
    pub fn refuse_full(&mut self, key: &FlowKey, now_ms: u64) -> bool {
        let refused = self.refuses_new(key, now_ms);
        self.ctx.counts.insert_full += u64::from(refused);
        refused
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
        if id.v6 {
            self.v6.track(id, dir, flags, now_ms, &self.ctx)
        } else {
            self.v4.track(id, dir, flags, now_ms, &self.ctx)
        }
    }

    /// Removes a connection (both keys). A stale `id` is ignored.
    pub fn remove(&mut self, id: FlowId) {
        let removed = if id.v6 {
            self.v6.remove(id, &self.ctx)
        } else {
            self.v4.remove(id, &self.ctx)
        };
        self.ctx.counts.removed += u64::from(removed);
    }
}

fn timeouts_ms(t: &Timeouts) -> [u32; TcpState::COUNT] {
    let mut ms = [0u32; TcpState::COUNT];
    for s in TcpState::ALL {
        // At most a week (the validator's bound): far below 2^31 ms.
        ms[s as usize] = t.for_state(s).saturating_mul(1000);
    }
    ms
}
