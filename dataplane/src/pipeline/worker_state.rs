//! A worker's private state: its flow table, counters, scheduler cursors and the scratch a
//! burst is staged in.

use super::classify::Staged;
use super::fast4::classify::First;
use super::fast4::Staged4;
use super::fast6::Staged6;
use super::STAGE;
use crate::backend_stats::{BackendStats, DEFAULT_BACKEND_SLOTS};
use crate::counters::{Counter, DropReason, WorkerCounters};
use crate::flow::hash::{owner_hash, owner_hash4};
use crate::flow::FlowTable;
use crate::fwd::fragment::{FragmentTracker, FRAGMENT_SLOTS};
use crate::persist::{PersistTable, DEFAULT_PERSISTENCE_ENTRIES, SWEEP_PER_BURST};
use crate::sched::load::SharedLoad;
use crate::snapshot::fast4::Owner4;
use crate::snapshot::{Ownership, Snapshot};
use std::sync::Arc;

/// ICMP errors a worker may send per second (RFC 1812 4.3.2.8, RFC 4443 2.4(f)), and the
/// burst it may send at once: Linux's defaults (net.ipv4.icmp_msgs_per_sec / _burst).
pub const ICMP_ERRORS_PER_SEC: u32 = 1000;
/// See [`ICMP_ERRORS_PER_SEC`].
pub const ICMP_ERRORS_BURST: u32 = 50;

/// A token bucket on the worker's millisecond clock: no atomics, no syscalls.
pub(super) struct TokenBucket {
    tokens: u32,
    last_ms: u64,
}

impl TokenBucket {
    fn new() -> Self {
        TokenBucket {
            tokens: ICMP_ERRORS_BURST,
            last_ms: 0,
        }
    }

    /// Take one token if there is one, refilling at [`ICMP_ERRORS_PER_SEC`] first.
    pub(super) fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let refill = elapsed.saturating_mul(u64::from(ICMP_ERRORS_PER_SEC)) / 1000;
        if refill > 0 {
            let room = u64::from(ICMP_ERRORS_BURST - self.tokens.min(ICMP_ERRORS_BURST));
            self.tokens += refill.min(room) as u32;
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Where a burst's frames are staged between its stages: allocated once with the worker,
/// reused by every burst (no per-burst initialisation). Slot `i` of a stage is written by
/// stage 1 before stages 2 and 3 read it.
pub(super) struct Scratch {
    /// Stage 1's verdict on each frame.
    pub(super) first: [First; STAGE],
    /// The fast classifier's record of the frames whose `first` is `Fast` (or `Steer`).
    pub(super) fast: [Staged4; STAGE],
    /// The general classifier's record of the frames whose `first` is `Fallback`.
    pub(super) general: [Staged; STAGE],
    /// The IPv6 fast classifier's record of the frames whose `first` is `Fast6`.
    pub(super) fast6: [Staged6; STAGE],
}

impl Scratch {
    fn new() -> Box<Scratch> {
        Box::new(Scratch {
            first: [First::Fallback; STAGE],
            fast: [Staged4::EMPTY; STAGE],
            general: [Staged::Done(Err(DropReason::EthMalformed)); STAGE],
            fast6: [Staged6::EMPTY; STAGE],
        })
    }
}

/// A worker's private state: its flow table, counters and scheduler cursors.
pub struct WorkerState {
    /// This worker's index among `n_workers`.
    pub index: u16,
    /// Number of workers; NAT connections are owned by the client endpoint's
    /// [`owner_hash`] scaled onto `0..n_workers` ([`WorkerState::owner_of`]), persistent
    /// services' by the hash of the client network ([`Ownership`]).
    pub n_workers: u16,
    /// The worker's flow table.
    pub flows: FlowTable,
    /// The worker's counters (shared read-only with the control thread).
    pub counters: Arc<WorkerCounters>,
    /// Per-real-server counters, indexed by backend id (shared read-only with the control
    /// thread); the flow table counts its connections there too.
    pub backends: Arc<BackendStats>,
    /// Every worker's connection counts and the box-wide overload flags (lc, wlc,
    /// thresholds); `backends` is this worker's part of it.
    pub load: Arc<SharedLoad>,
    /// Persistence entries of the client networks this worker owns.
    pub persistence: PersistTable,
    /// An active trace request (`vipctl trace`), if any.
    pub trace: Option<Box<crate::trace::TraceJob>>,
    /// IPVS's `sloppy_tcp` forced on for this worker (tests, fuzzing); the configured setting
    /// comes with the snapshot ([`Snapshot::sloppy_tcp`]). Either makes any TCP segment without
    /// a flow entry create one; off, only a lone SYN does and others go statelessly.
    pub sloppy_tcp: bool,
    /// A burst's IPv4 frames of tracked connections take the fast path (`pipeline::fast4`;
    /// default on). Off, every frame takes the general path: the same actions, frames,
    /// counters and flow table (the differential test in `pipeline/fast4/tests.rs` compares
    /// the two).
    pub fast_path: bool,
    pub(super) cursors: Vec<u64>,
    /// Where the next full-NAT local endpoint search starts in a service's pool (rotates,
    /// so endpoints are reused as late as possible).
    pub(super) fnat_cursor: u32,
    generation: u64,
    pub(super) icmp_errors: TokenBucket,
    /// When an insert last found the table full (see `flows::schedule`).
    pub(super) last_full_ms: Option<u64>,
    pub(super) frags: FragmentTracker,
    /// The millisecond of the last expiry sweep: one per tick of the clock.
    pub(super) swept_ms: Option<u64>,
    /// The staging area of a burst; taken out while a burst runs.
    scratch: Option<Box<Scratch>>,
}

/// An owner hash scaled onto `0..n_workers` (Lemire's reduction): the one steering rule.
#[inline(always)]
pub(super) fn scale(h: u32, n_workers: u16) -> u16 {
    ((u64::from(h) * u64::from(n_workers)) >> 32) as u16
}

impl WorkerState {
    /// A worker's state. `max_services` sizes the scheduler cursors up front; real-server
    /// statistics get [`DEFAULT_BACKEND_SLOTS`] slots.
    pub fn new(index: u16, n_workers: u16, flows: FlowTable, max_services: usize) -> Self {
        Self::with_backend_slots(index, n_workers, flows, max_services, DEFAULT_BACKEND_SLOTS)
    }

    /// [`WorkerState::new`] with `backend_slots` real-server statistics slots (backend ids
    /// must stay below it to be counted). The worker sees no other worker's connection
    /// counts: use [`WorkerState::with_shared_load`] for workers that balance together.
    pub fn with_backend_slots(
        index: u16,
        n_workers: u16,
        flows: FlowTable,
        max_services: usize,
        backend_slots: usize,
    ) -> Self {
        let load = Arc::new(SharedLoad::new(usize::from(index) + 1, backend_slots));
        Self::with_shared_load(index, n_workers, flows, max_services, load)
    }

    /// A worker of a box whose workers share `load` (built with one statistics array per
    /// worker: this one counts in `load.worker(index)`, and its schedulers and thresholds
    /// read all of them).
    pub fn with_shared_load(
        index: u16,
        n_workers: u16,
        mut flows: FlowTable,
        max_services: usize,
        load: Arc<SharedLoad>,
    ) -> Self {
        let backends: Arc<BackendStats> = Arc::clone(load.worker(usize::from(index)));
        flows.count_connections_in(Arc::clone(&backends));
        let mut persistence = PersistTable::with_capacity(DEFAULT_PERSISTENCE_ENTRIES);
        persistence.count_in(Arc::clone(&backends));
        WorkerState {
            index,
            n_workers: n_workers.max(1),
            flows,
            counters: Arc::new(WorkerCounters::default()),
            backends,
            load,
            persistence,
            sloppy_tcp: false,
            fast_path: true,
            trace: None,
            cursors: vec![0; max_services],
            fnat_cursor: 0,
            generation: u64::MAX,
            icmp_errors: TokenBucket::new(),
            last_full_ms: None,
            frags: FragmentTracker::new(FRAGMENT_SLOTS),
            swept_ms: None,
            scratch: Some(Scratch::new()),
        }
    }

    /// Resize the fragment tracker (default [`FRAGMENT_SLOTS`]); allocates: call before the
    /// worker runs. Fewer slots lose datagrams sooner under a fragment flood.
    pub fn set_fragment_slots(&mut self, slots: usize) {
        self.frags = FragmentTracker::new(slots);
    }

    /// Room for `entries` persistence entries (default [`DEFAULT_PERSISTENCE_ENTRIES`]);
    /// allocates: call before the worker runs. Entries held are lost.
    pub fn set_persistence_capacity(&mut self, entries: usize) {
        let mut table = PersistTable::with_capacity(entries);
        table.count_in(Arc::clone(&self.backends));
        self.persistence = table;
    }

    /// The worker that owns NAT connections of this client endpoint (not persistent): its
    /// [`owner_hash`] scaled onto `0..n_workers` by a multiply and a shift (Lemire's
    /// reduction) instead of a division (`%`: tens of cycles; this: one 3-cycle multiply).
    #[inline]
    pub fn owner_of(&self, client: &[u8; 16], port: u16) -> u16 {
        self.scale(owner_hash(client, port))
    }

    #[inline(always)]
    fn scale(&self, h: u32) -> u16 {
        scale(h, self.n_workers)
    }

    /// The worker that owns connections of this client endpoint under `rule`, when it is
    /// another one (`None` with a single worker, for [`Ownership::Local`], or when it is this
    /// one): where the packet is steered.
    #[inline(always)]
    pub(super) fn owner_elsewhere(
        &self,
        rule: Ownership,
        client: &[u8; 16],
        port: u16,
    ) -> Option<u16> {
        if self.n_workers < 2 {
            return None;
        }
        let owner = self.scale(rule.hash(client, port)?);
        (owner != self.index).then_some(owner)
    }

    /// [`owner_elsewhere`](Self::owner_elsewhere) of an IPv4 client endpoint as the headers
    /// carry it (address and port bytes, little-endian loads): the same owner.
    #[inline(always)]
    pub(super) fn owner_elsewhere4(&self, rule: Owner4, addr: u32, port: u16) -> Option<u16> {
        if self.n_workers < 2 {
            return None;
        }
        let h = match rule {
            Owner4::Local => return None,
            Owner4::Endpoint => owner_hash4(addr, port),
            // The network: the masked address, port 0 (`Ownership::network_hash`).
            Owner4::Network(mask) => owner_hash4((addr.swap_bytes() & mask).swap_bytes(), 0),
        };
        let owner = self.scale(h);
        (owner != self.index).then_some(owner)
    }

    /// Pick up a newly published snapshot (cursors, timeouts, generation); cheap when it is
    /// the one already adopted.
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.generation != snap.generation {
            self.generation = snap.generation;
            if self.cursors.len() < snap.services.len() {
                // Only when a snapshot brings more services than ever before: not per packet.
                self.cursors.resize(snap.services.len(), 0);
            }
            if *self.flows.timeouts() != snap.timeouts {
                self.flows.set_timeouts(snap.timeouts);
            }
            self.counters.inc(Counter::SnapshotsApplied);
            // Tells the control plane this worker no longer uses older snapshots' backends.
            self.counters.set_generation(snap.generation);
        }
    }

    /// The burst scratch, taken out of the state for the time of a burst (allocated anew only
    /// if a burst panicked before giving it back, which the release build's abort rules out).
    pub(super) fn take_scratch(&mut self) -> Box<Scratch> {
        self.scratch.take().unwrap_or_else(Scratch::new)
    }

    /// Hand the scratch back after a burst.
    pub(super) fn put_scratch(&mut self, s: Box<Scratch>) {
        self.scratch = Some(s);
    }

    /// Sweep the flow table for expired connections once per tick of the millisecond clock
    /// (not per burst: a busy worker runs thousands of bursts a millisecond), and the
    /// persistence table (expired entries and those of real servers that left `snap`).
    #[inline]
    pub fn expire_tick(&mut self, snap: &Snapshot, now_ms: u64) {
        if self.swept_ms != Some(now_ms) {
            self.swept_ms = Some(now_ms);
            self.flows.expire(now_ms, super::EXPIRE_BUDGET_PER_TICK);
            if !self.persistence.is_empty() {
                self.persistence
                    .sweep(now_ms, SWEEP_PER_BURST, &|b| snap.backend(b).is_some());
            }
        }
    }
}
