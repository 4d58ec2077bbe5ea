//! The burst pipeline: classify each frame, decide, rewrite in place, and return one
//! [`Action`] per frame. No I/O, no allocation, no locks: the caller (the worker loop, or a
//! test) owns the frames and carries the actions out.
//!
//! Every frame is untrusted. The order of checks (each failure returns early with its own
//! drop counter; docs/frame-classes.md lists every class of frame and what happens to it):
//! 1. Ethernet: our MAC or multicast, a unicast non-zero source MAC, no 802.1Q/802.1ad tag;
//!    an IP packet in a multicast frame is dropped unless it is Neighbour Discovery.
//! 2. ARP (answered for our addresses and VIPs, learned from when it moves a known neighbour).
//! 3. IP header valid (IPv4 checksum, lengths; IPv6 without extension headers other than a
//!    fragment header, no IPv4-mapped address); ICMPv6 Neighbour Discovery is handled here;
//!    then the source must be a unicast address that is not ours and not the destination,
//!    and the TTL / hop limit not 0.
//! 4. By destination and source:
//!    - a VIP: a client packet (step 1), forwarded to a real server (step 2) by its mode:
//!      NAT rewrite, DR MAC change, or TUN encapsulation, or answered with ICMP too-big when
//!      it does not fit the egress MTU; ICMP errors to a VIP go to the real server owning the
//!      quoted connection;
//!    - a NAT real server's endpoint as source: a reply (step 3), rewritten to come from the
//!      VIP and sent to the client (step 4); its ICMP errors are un-NATed the same way;
//!    - one of our port addresses: ICMP echo is answered, the rest dropped;
//!    - anything else is dropped (vipd is not a router).
//!
//! Decide first, then change state: a packet's flow entry is created, advanced or replaced
//! only once every check that could drop it has passed (`pipeline::egress::check`).
//!
//! TCP state only from a SYN: a TCP segment without a flow entry creates one only when it is
//! a lone SYN ([`WorkerState::sloppy_tcp`] restores IPVS's sloppy mode, where any segment
//! does). Others go statelessly to the real server the service's consistent hash (Maglev)
//! picks, so connections that outlived a restart, an expiry or a move between boxes keep
//! their real server (`tcp_no_flow_stateless`), and an ACK or RST flood creates no state.

mod classify;
mod egress;
mod fast;
mod flows;
mod icmp_msgs;
mod local;

use crate::backend_stats::{BackendStats, DEFAULT_BACKEND_SLOTS};
use crate::counters::{Counter, WorkerCounters};
use crate::flow::{FlowKey, FlowTable, TcpFlags};
use crate::fwd::fragment::{FragmentKey, FragmentTracker, FRAGMENT_SLOTS};
use crate::fwd::nat::L4At;
use crate::io::PacketBuf;
use crate::ndp::{self, NdVerdict};
use crate::persist::{PersistTable, DEFAULT_PERSISTENCE_ENTRIES, SWEEP_PER_BURST};
use crate::sched::load::SharedLoad;
use crate::snapshot::{Ownership, Snapshot};
use crate::wire::ethernet;
use crate::wire::MacAddr;
pub(crate) use classify::for_kernel;
use classify::{classify, Staged};
use std::sync::Arc;

/// What the caller does with a frame after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame on this port, on the worker's own TX queue.
    Tx(u16),
    /// Free the frame; the reason is already counted.
    Drop(Counter),
    /// Hand the frame to the control thread (ARP replies to learn neighbours).
    ToControl,
    /// Hand the frame to the box's kernel through the rx port's kernel interface (the
    /// exception path): traffic for a port address that vipd does not answer itself.
    ToKernel,
    /// Hand the frame to the worker that owns its connection.
    Steer(u16),
}

/// Flow-table expiry work done per burst: bounded so a burst's cost stays bounded, large
/// enough that expiry outpaces connection arrival (at most one new flow per packet).
pub const EXPIRE_BUDGET_PER_BURST: usize = 64;

/// Hop limit of packets vipd originates (echo replies).
const OWN_TTL: u8 = 64;

/// A worker's private state: its flow table, counters and scheduler cursors.
pub struct WorkerState {
    /// This worker's index among `n_workers`.
    pub index: u16,
    /// Number of workers; NAT connections are owned by `endpoint_hash(client)` scaled onto
    /// `0..n_workers` ([`WorkerState::owner_of`]), persistent services' by the hash of the
    /// client network ([`Ownership`]).
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
    /// Stages 1 and 3 of a burst take the fast path (`pipeline::fast`) for the common
    /// IPv4 frame and for packets of tracked connections (default on). Off, every frame takes
    /// the general path: the same actions, frames, counters and flow table (the differential
    /// test in `pipeline/fast/tests.rs` compares the two). Steered frames always take the
    /// general path.
    pub fast_path: bool,
    cursors: Vec<u64>,
    generation: u64,
    icmp_errors: TokenBucket,
    /// When an insert last found the table full (see `flows::schedule`).
    last_full_ms: Option<u64>,
    frags: FragmentTracker,
}

/// ICMP errors a worker may send per second (RFC 1812 4.3.2.8, RFC 4443 2.4(f)), and the
/// burst it may send at once: Linux's defaults (net.ipv4.icmp_msgs_per_sec / _burst).
pub const ICMP_ERRORS_PER_SEC: u32 = 1000;
/// See [`ICMP_ERRORS_PER_SEC`].
pub const ICMP_ERRORS_BURST: u32 = 50;

/// A token bucket on the worker's millisecond clock: no atomics, no syscalls.
struct TokenBucket {
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
    fn take(&mut self, now_ms: u64) -> bool {
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
        let backends = Arc::clone(load.worker(usize::from(index)));
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
            generation: u64::MAX,
            icmp_errors: TokenBucket::new(),
            last_full_ms: None,
            frags: FragmentTracker::new(FRAGMENT_SLOTS),
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

    /// The worker that owns NAT connections of this client endpoint (not persistent): the
    /// hash scaled onto `0..n_workers` by a multiply and a shift (Lemire's reduction)
    /// instead of a 64-bit division (`%`: tens of cycles; this: one 3-cycle multiply).
    #[inline]
    pub fn owner_of(&self, client: &[u8; 16], port: u16) -> u16 {
        self.scale(FlowKey::endpoint_hash(client, port))
    }

    #[inline]
    fn scale(&self, h: u64) -> u16 {
        ((u128::from(h) * u128::from(self.n_workers)) >> 64) as u16
    }

    /// The worker that owns connections of this client endpoint under `rule`, when it is
    /// another one (`None` with a single worker, for [`Ownership::Local`], or when it is this
    /// one): where the packet is steered.
    ///
    /// Inlined whole for NAT connections (the common steer), as before persistence existed;
    /// the network hash of persistent services is a call of its own.
    #[inline(always)]
    fn owner_elsewhere(&self, rule: Ownership, client: &[u8; 16], port: u16) -> Option<u16> {
        if self.n_workers < 2 {
            return None;
        }
        let h = match rule {
            Ownership::Endpoint => FlowKey::endpoint_hash(client, port),
            Ownership::Local => return None,
            Ownership::Network(bits) => Ownership::network_hash(client, bits),
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
}

/// Frames a burst is staged in (the worker's burst size).
const STAGE: usize = 32;

/// Process a burst received on `rx_port`: `actions[i]` is set for `bufs[i]`.
pub fn process_burst<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    process_burst_hashed(bufs, actions, &mut [], rx_port, worker, snap, now_ms);
}

/// [`process_burst`], also setting `flow_hashes[i]` for every frame whose action is
/// [`Action::Steer`]: its flow hash (`None` for an ICMP error steered to the owner of the
/// connection it quotes), for the owner's [`process_steered_hashed`].
///
/// The burst goes in stages of up to [`STAGE`] frames, as DPDK's `rte_hash_lookup_bulk` and
/// VPP do: (1) every frame is parsed, checked and classified ([`classify`]: no state
/// changes) and the flow-table buckets of those that will be looked up are prefetched;
/// (2) the entries those buckets point at are prefetched; (3) each frame is handled in order.
/// At 1M flows a lookup is two DRAM misses; staged, the misses of a burst overlap.
pub fn process_burst_hashed<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    flow_hashes: &mut [Option<u64>],
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    let received = Frames {
        rx_port,
        rx_ports: &[],
        hashes: &[],
    };
    stages::<B, false>(bufs, actions, &received, flow_hashes, worker, snap, now_ms);
    worker.expire(snap, now_ms);
}

impl WorkerState {
    /// The bounded expiry work of one burst (or idle poll): the flow table's, and the
    /// persistence table's (expired entries and those of real servers that left `snap`).
    #[inline]
    pub fn expire(&mut self, snap: &Snapshot, now_ms: u64) {
        self.flows.expire(now_ms, EXPIRE_BUDGET_PER_BURST);
        if !self.persistence.is_empty() {
            self.persistence
                .sweep(now_ms, SWEEP_PER_BURST, &|b| snap.backend(b).is_some());
        }
    }
}

/// Frames other workers steered here (each counted as received there), as one staged burst:
/// `rx_ports[i]` and `flow_hashes[i]` are `bufs[i]`'s, as the receiving worker passed them.
/// Does what [`process_steered_hashed`] does frame by frame (a frame steered again is
/// dropped as `drop_steered_twice`), with the burst's flow-table misses overlapped.
pub fn process_steered_burst<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    rx_ports: &[u16],
    flow_hashes: &[Option<u64>],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    let steered = Frames {
        rx_port: 0,
        rx_ports,
        hashes: flow_hashes,
    };
    stages::<B, true>(bufs, actions, &steered, &mut [], worker, snap, now_ms);
}

/// Where a burst's frames come from: received on `rx_port`, or (steered) each with its rx
/// port and the flow hash the receiving worker computed.
struct Frames<'a> {
    rx_port: u16,
    rx_ports: &'a [u16],
    hashes: &'a [Option<u64>],
}

impl Frames<'_> {
    /// Frame `i`'s rx port and the flow hash it came with.
    #[inline]
    fn frame<const STEERED: bool>(&self, i: usize) -> (u16, Option<u64>) {
        if STEERED {
            (
                self.rx_ports.get(i).copied().unwrap_or(0),
                self.hashes.get(i).copied().flatten(),
            )
        } else {
            (self.rx_port, None)
        }
    }
}

/// The stages of a burst (see [`process_burst_hashed`]), for received frames or (`STEERED`,
/// compiled separately so the received path pays nothing for it) frames other workers
/// steered here. A received frame steered on gets its flow hash in `hashes_out`.
#[inline(always)]
fn stages<B: PacketBuf, const STEERED: bool>(
    bufs: &mut [B],
    actions: &mut [Action],
    frames: &Frames<'_>,
    hashes_out: &mut [Option<u64>],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    worker.adopt(snap);
    let received = !STEERED;
    let mut staged = [Staged::Done(Ok(Action::Tx(0))); STAGE];
    let mut start = 0;
    while start < bufs.len().min(actions.len()) {
        let end = (start + STAGE).min(bufs.len()).min(actions.len());
        let (bufs, actions) = (&mut bufs[start..end], &mut actions[start..end]);
        // The hashes stage 3 looks up, gathered in stage 1 for the second prefetch pass.
        let mut lookups = [0u64; STAGE];
        let mut n_lookups = 0;
        for (i, (buf, st)) in bufs.iter().zip(staged.iter_mut()).enumerate() {
            let (rx_port, flow_hash) = frames.frame::<STEERED>(start + i);
            if received {
                worker.counters.inc(Counter::RxPackets);
                worker
                    .counters
                    .add(Counter::RxBytes, buf.data().len() as u64);
            }
            let fast = if worker.fast_path {
                fast::classify::classify(buf, rx_port, worker, snap, st, flow_hash)
            } else {
                fast::classify::Fast::Fallback
            };
            let lookup = match fast {
                fast::classify::Fast::Staged(lookup) => lookup,
                fast::classify::Fast::Fallback => {
                    *st = classify(buf, rx_port, worker, snap, flow_hash);
                    st.lookup_hash()
                }
            };
            if let (Some(h), Some(slot)) = (lookup, lookups.get_mut(n_lookups)) {
                worker.flows.prefetch(h);
                *slot = h;
                n_lookups += 1;
            }
        }
        for &h in &lookups[..n_lookups] {
            worker.flows.prefetch_entry(h);
        }
        for (i, ((buf, action), st)) in bufs
            .iter_mut()
            .zip(actions.iter_mut())
            .zip(staged.iter())
            .enumerate()
        {
            let (rx_port, _) = frames.frame::<STEERED>(start + i);
            // The frame is as received until its own stage 3.
            if let Some(t) = worker.trace.as_mut() {
                t.before(buf.data(), rx_port, now_ms);
            }
            // The fast path only while no trace is active: a trace sees every frame the
            // general way (and the fast path then needs no hooks of its own).
            let fast = if worker.fast_path && worker.trace.is_none() {
                fast::handle(buf, st, worker, snap, now_ms)
            } else {
                None
            };
            let verdict = match fast {
                Some(v) => v,
                None => handle(buf, st, rx_port, worker, snap, now_ms),
            };
            *action = match verdict {
                // The owner never steers again: a frame steered twice would mean the
                // workers disagree on ownership; count it rather than loop.
                Ok(Action::Steer(_)) if !received => Action::Drop(Counter::DropSteeredTwice),
                Ok(a) => a,
                Err(reason) => Action::Drop(reason),
            };
            if let Some(t) = worker.trace.as_mut() {
                t.after(buf.data(), *action);
            }
            match *action {
                Action::Drop(reason) => worker.counters.inc(reason),
                Action::ToControl => worker.counters.inc(Counter::ToControl),
                Action::ToKernel => worker.counters.inc(Counter::ToKernel),
                Action::Steer(_) => {
                    worker.counters.inc(Counter::Steered);
                    if let Some(out) = hashes_out.get_mut(start + i) {
                        *out = st.flow_hash();
                    }
                }
                Action::Tx(_) => {}
            }
        }
        start = end;
    }
}

/// Process one frame that another worker steered here (it was counted as received there).
pub fn process_steered<B: PacketBuf>(
    buf: &mut B,
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) -> Action {
    process_steered_hashed(buf, None, rx_port, worker, snap, now_ms)
}

/// [`process_steered`] with the flow hash the receiving worker computed
/// ([`process_burst_hashed`]), so the owner does not hash the key again.
pub fn process_steered_hashed<B: PacketBuf>(
    buf: &mut B,
    flow_hash: Option<u64>,
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) -> Action {
    worker.adopt(snap);
    if let Some(t) = worker.trace.as_mut() {
        t.before(buf.data(), rx_port, now_ms);
    }
    let st = classify(buf, rx_port, worker, snap, flow_hash);
    let action = match handle(buf, &st, rx_port, worker, snap, now_ms) {
        // The owner never steers again: a frame steered twice would mean the workers
        // disagree on ownership; count it rather than loop.
        Ok(Action::Steer(_)) => {
            worker.counters.inc(Counter::DropSteeredTwice);
            Action::Drop(Counter::DropSteeredTwice)
        }
        Ok(a) => {
            match a {
                Action::ToControl => worker.counters.inc(Counter::ToControl),
                Action::ToKernel => worker.counters.inc(Counter::ToKernel),
                _ => {}
            }
            a
        }
        Err(reason) => {
            worker.counters.inc(reason);
            Action::Drop(reason)
        }
    };
    if let Some(t) = worker.trace.as_mut() {
        t.after(buf.data(), action);
    }
    action
}

type Verdict = Result<Action, Counter>;

/// Stage 3 of one frame: what changes state or the frame, as stage 1 staged it.
#[inline]
fn handle<B: PacketBuf>(
    buf: &mut B,
    st: &Staged,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let l2 = ethernet::HEADER_LEN;
    match *st {
        Staged::Done(v) => v,
        Staged::Steer { owner, .. } => Ok(Action::Steer(owner)),
        Staged::Client {
            ref pkt,
            ref info,
            service_index,
            svc,
            owner_here,
        } => egress::forward_client(
            buf,
            pkt,
            info,
            service_index,
            svc,
            owner_here,
            rx_port,
            w,
            snap,
            now,
        ),
        Staged::Reply {
            ref pkt,
            ref info,
            unique_service,
            owner_here,
        } => egress::nat_reply(
            buf,
            pkt,
            info,
            unique_service,
            owner_here,
            rx_port,
            w,
            snap,
            now,
        ),
        Staged::Arp => {
            let our_mac = snap
                .ports
                .get(usize::from(rx_port))
                .ok_or(Counter::DropNoRoute)?
                .mac;
            local::arp(buf.data_mut(), l2, rx_port, our_mac, w, snap)
        }
        Staged::Nd => match ndp::handle_nd(buf, l2, rx_port, snap)? {
            NdVerdict::Reply => {
                w.counters.inc(Counter::NdAdverts);
                Ok(Action::Tx(rx_port))
            }
            NdVerdict::ToControl => Ok(Action::ToControl),
        },
        Staged::Icmp(ref pkt) => icmp_msgs::handle(buf, pkt, rx_port, w, snap, now),
        Staged::LaterFragment(ref pkt, f) => {
            egress::later_fragment(buf, pkt, f, rx_port, w, snap, now)
        }
    }
}

/// A fragment's identity and place.
#[derive(Clone, Copy, Debug)]
struct Frag {
    ident: u32,
    /// Offset of its data in the datagram, in bytes.
    offset: u16,
}

impl Frag {
    fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// What the pipeline knows of a validated IP packet, both families: parsed once, in stage 1.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    /// Ethernet header length (where the IP header starts).
    l2: usize,
    v4: bool,
    /// Source and destination in flow-key form (IPv4-mapped for IPv4), the upper-layer
    /// protocol, and for TCP and UDP (not later fragments) the ports: the flow key.
    key: FlowKey,
    /// TTL / hop limit as received.
    ttl: u8,
    /// IP packet length (header and payload, without Ethernet padding).
    len: usize,
    /// The upper-layer protocol and where its header starts.
    l4: L4At,
    /// IPv4 DF; always for IPv6 (routers never fragment it).
    dont_frag: bool,
    /// Set for a fragment (an IPv6 atomic fragment is not one).
    frag: Option<Frag>,
}

impl Pkt {
    fn frag_key(&self, f: Frag) -> FragmentKey {
        FragmentKey {
            src: self.key.src,
            dst: self.key.dst,
            ident: f.ident,
            proto: self.l4.proto,
        }
    }

    /// The offset of the upper-layer header in the frame, and the end of the IP packet.
    fn l4_range(&self) -> std::ops::Range<usize> {
        self.l2 + self.l4.offset..self.l2 + self.len
    }
}

/// The transport fields of a TCP or UDP packet, family independent (the ports are in
/// [`Pkt::key`]).
#[derive(Clone, Copy, Debug)]
struct L4Info {
    /// `key.hash()`, computed once per packet for the flow table, scheduler and tunnel.
    hash: u64,
    tcp_flags: Option<TcpFlags>,
    /// The raw TCP flags byte (0 for UDP).
    tcp_bits: u8,
}

impl L4Info {
    /// A SYN opening a connection: SYN without ACK, FIN or RST.
    fn is_lone_syn(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f.syn && !f.ack && !f.fin && !f.rst)
    }
}

impl Staged<'_> {
    /// The flow hash of a TCP or UDP packet.
    fn flow_hash(&self) -> Option<u64> {
        match self {
            Staged::Client { info, .. } | Staged::Reply { info, .. } => Some(info.hash),
            Staged::Steer { hash, .. } => Some(*hash),
            _ => None,
        }
    }
}

fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    // One bounds check: every frame the pipeline sends has its Ethernet header.
    if let Some(macs) = frame.get_mut(..12) {
        macs[..6].copy_from_slice(&dst.0);
        macs[6..].copy_from_slice(&src.0);
    }
}
