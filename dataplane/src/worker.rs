//! The poll loop of one worker: rx burst -> pipeline -> tx burst, on every port, plus the
//! worker's inbox (frames steered to it by other workers, frames the control thread asks it to
//! send). Owns its queues, flow table and counters; shares nothing writable.

use crate::counters::{Counter, DropReason, WorkerCounters};
use crate::dispatch::{dispatch, Outputs, StagedBytes};
use crate::flow_sample::{FlowSampler, SampleRequest};
use crate::io::dpdk::{self, Mbuf, MbufBurst, PortQueue};
use crate::io::PacketBuf;
use crate::pipeline::{process_burst_hashed, process_steered_burst, Action, WorkerState};
use crate::snapshot::Snapshot;
use crate::trace::Tracer;
use arc_swap::ArcSwap;
use crossbeam::queue::ArrayQueue;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Frames per rx/tx burst.
pub const BURST: usize = dpdk::BURST_SIZE;

/// Inbox bursts a worker takes per receive round at most: more than the one receive burst
/// per queue can steer to it, so a worker that gets less of its core than the others still
/// drains what they hand it.
const INBOX_BURSTS_PER_POLL: usize = 4;

/// Most milliseconds between two transmit bursts on a [`Worker::tx_keepalive`] port. DPDK's
/// 802.3ad state machine runs every 100 ms and wants the application's rx and tx bursts at
/// least that often; the rx side is polled every iteration anyway (an idle worker sleeps at
/// most 10 ms, `dataplane.idle_sleep_us`).
pub const TX_KEEPALIVE_MS: u64 = 10;

/// A frame crossing between threads.
pub struct Parcel {
    /// The frame.
    pub mbuf: Mbuf,
    /// Port it arrived on (steered) or must leave by (transmit).
    pub port: u16,
    /// What to do with it.
    pub kind: ParcelKind,
}

/// Why a frame is in a worker's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParcelKind {
    /// Another worker received it; this worker owns its connection. `flow_hash`: as the
    /// receiving worker computed it, so the owner does not hash the key again (`None` for an
    /// ICMP error steered to the owner of the connection it quotes).
    Steered { flow_hash: Option<u64> },
    /// The control thread built it (an ARP request); send it as is.
    Transmit,
}

/// The rings between threads, created once at start (no allocation afterwards).
pub struct Rings {
    /// One inbox per worker; any worker or the control thread may push.
    pub inboxes: Vec<ArrayQueue<Parcel>>,
    /// Frames for the control thread (ARP replies to learn from): (port, frame).
    pub to_control: ArrayQueue<(u16, Mbuf)>,
    /// Frames for the box's kernel, to the kernel interface of the port they came in by:
    /// (port, frame). Any worker or the control thread pushes; the exception path pops.
    pub to_kernel: ArrayQueue<(u16, Mbuf)>,
    /// Snapshots a worker has stopped using, for the control thread to free (see
    /// [`Rings::reclaim_snapshots`]): freeing one (Maglev tables, maps) is not the worker's job.
    retired: ArrayQueue<Arc<Snapshot>>,
    /// Snapshots a worker had to free itself because `retired` was full.
    freed_by_workers: AtomicU64,
    /// Per worker: the longest time (TSC cycles) between two polls of a loop that had work,
    /// i.e. the worst stall a burst saw (see [`Rings::worst_loop_gap_cycles`]).
    loop_gaps: Vec<AtomicU64>,
}

/// Retired snapshots the rings hold before a worker frees one itself: a control thread that
/// reclaims once per tick (50 ms) keeps up with a publication per millisecond.
const RETIRED_CAPACITY: usize = 64;

impl Rings {
    /// Rings for `workers` workers with `capacity` slots each.
    pub fn new(workers: usize, capacity: usize) -> Self {
        Rings {
            inboxes: (0..workers).map(|_| ArrayQueue::new(capacity)).collect(),
            to_control: ArrayQueue::new(capacity),
            to_kernel: ArrayQueue::new(capacity),
            retired: ArrayQueue::new(RETIRED_CAPACITY * workers.max(1)),
            freed_by_workers: AtomicU64::new(0),
            loop_gaps: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Worker `w`'s longest gap, in TSC cycles, between two consecutive polls while it had
    /// traffic (a burst's processing plus any stall: snapshot adoption, a page fault...).
    pub fn worst_loop_gap_cycles(&self, w: usize) -> u64 {
        self.loop_gaps
            .get(w)
            .map_or(0, |g| g.load(Ordering::Relaxed))
    }

    /// Start measuring the worst loop gaps afresh.
    pub fn reset_worst_loop_gaps(&self) {
        for g in &self.loop_gaps {
            g.store(0, Ordering::Relaxed);
        }
    }

    /// Drop the snapshot references the workers have retired; the control thread calls this
    /// on every tick, so the last reference to an old snapshot, and with it the freeing, is
    /// always dropped here. Returns how many references it dropped.
    pub fn reclaim_snapshots(&self) -> usize {
        let mut n = 0;
        while let Some(old) = self.retired.pop() {
            drop(old);
            n += 1;
        }
        n
    }

    /// Snapshots workers freed themselves because nobody reclaimed them in time.
    pub fn snapshots_freed_by_workers(&self) -> u64 {
        self.freed_by_workers.load(Ordering::Relaxed)
    }

    /// Hand a snapshot the worker no longer uses to the control thread.
    fn retire(&self, old: Arc<Snapshot>) {
        if let Err(old) = self.retired.push(old) {
            self.freed_by_workers.fetch_add(1, Ordering::Relaxed);
            drop(old);
        }
    }
}

/// Everything one worker runs with.
pub struct Worker {
    /// Pipeline state (flow table, counters, cursors).
    pub state: WorkerState,
    /// One queue per port, index = port index of the snapshot.
    pub queues: Vec<PortQueue>,
    /// The snapshot the control thread publishes.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Shared rings.
    pub rings: Arc<Rings>,
    /// Set by the daemon to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Sleep after a loop iteration that found nothing to do; zero busy-polls.
    pub idle_sleep: Duration,
    /// Indices (into `queues`) of the ports that need a transmit burst every
    /// [`TX_KEEPALIVE_MS`] even with nothing to send: bonds in 802.3ad mode, whose LACPDUs
    /// leave only from inside a tx burst.
    pub tx_keepalive: Vec<usize>,
    /// Connection listings requested by the control side.
    pub sampler: Arc<FlowSampler>,
    /// Four-step traces requested by the control side (`vipctl trace`).
    pub tracer: Arc<Tracer>,
}

/// Per-port transmit bursts of one loop iteration (with their byte counts), and the frames it
/// drops (freed together with one `rte_pktmbuf_free_bulk` instead of one `rte_pktmbuf_free`
/// each).
struct TxBursts {
    bursts: Vec<(MbufBurst, StagedBytes)>,
    drops: MbufBurst,
}

/// Where the worker's frames go: its transmit bursts and queues, and the rings.
struct WorkerOutputs<'a> {
    tx: &'a mut TxBursts,
    queues: &'a mut [PortQueue],
    rings: &'a Rings,
}

impl Outputs<Mbuf> for WorkerOutputs<'_> {
    #[inline(always)]
    fn tx(
        &mut self,
        port: u16,
        m: Mbuf,
        len: usize,
        counters: &WorkerCounters,
    ) -> Result<(), Mbuf> {
        let p = usize::from(port);
        let (Some((burst, bytes)), Some(queue)) =
            (self.tx.bursts.get_mut(p), self.queues.get_mut(p))
        else {
            return Err(m);
        };
        if burst.is_full() {
            // Full (an inbox round added frames to a full rx round): send now.
            send(queue, burst, bytes, counters);
        }
        match burst.push(m) {
            Ok(()) => {
                bytes.record(len);
                Ok(())
            }
            Err(m) => Err(m),
        }
    }

    #[inline(always)]
    fn free(&mut self, m: Mbuf) {
        if self.tx.drops.is_full() {
            self.tx.drops.clear();
        }
        // Cannot fail: the burst was just emptied if it was full.
        let _ = self.tx.drops.push(m);
    }

    fn to_control(&mut self, port: u16, m: Mbuf) -> bool {
        self.rings.to_control.push((port, m)).is_ok()
    }

    fn to_kernel(&mut self, port: u16, m: Mbuf) -> bool {
        self.rings.to_kernel.push((port, m)).is_ok()
    }

    fn steer(&mut self, worker: u16, port: u16, m: Mbuf, flow_hash: Option<u64>) -> bool {
        let parcel = Parcel {
            mbuf: m,
            port,
            kind: ParcelKind::Steered { flow_hash },
        };
        match self.rings.inboxes.get(usize::from(worker)) {
            Some(inbox) => inbox.push(parcel).is_ok(),
            None => false,
        }
    }
}

impl Worker {
    /// Run until `stop` is set.
    pub fn run(mut self) {
        // The table was mapped but not touched by the thread that built it: its pages are
        // allocated here, on this worker's core and NUMA node, before the first packet.
        self.state.flows.prefault();
        let mut rx = MbufBurst::new();
        let mut actions = [Action::Drop(DropReason::EthMalformed); BURST];
        let mut flow_hashes = [None; BURST];
        let mut steered = MbufBurst::new();
        let mut tx = TxBursts {
            bursts: (0..self.queues.len())
                .map(|_| (MbufBurst::new(), StagedBytes::default()))
                .collect(),
            drops: MbufBurst::new(),
        };
        let ms_per_tick = 1000.0 / dpdk::tsc_hz().max(1) as f64;
        let mut iterations: u64 = 0;
        let mut listing: Option<Box<SampleRequest>> = None;
        // The worker holds its own reference to the snapshot it forwards by, so a
        // publication never leaves the worker with the last one: when a new snapshot
        // appears, the old reference goes to the control thread, which frees it. The cache
        // makes the check one atomic load and a compare per iteration (arc-swap's full load
        // takes a debt slot).
        let mut published = arc_swap::Cache::new(Arc::clone(&self.snapshot));
        let mut current: Arc<Snapshot> = Arc::clone(published.load());
        let mut last_poll = dpdk::tsc_cycles();
        let mut had_work = false;
        let mut last_keepalive_ms = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            {
                let latest = published.load();
                if !Arc::ptr_eq(latest, &current) {
                    let old = std::mem::replace(&mut current, Arc::clone(latest));
                    self.rings.retire(old);
                }
            }
            let snap: &Snapshot = &current;
            // Also when idle: the control plane waits for every worker to move past a snapshot
            // before it reuses the backend slots that snapshot removed.
            self.state.adopt(snap);
            let tsc = dpdk::tsc_cycles();
            let now_ms = (tsc as f64 * ms_per_tick) as u64;
            if had_work {
                // Written only when it grows, by this worker alone: no atomic read-modify-write.
                if let Some(worst) = self.rings.loop_gaps.get(usize::from(self.state.index)) {
                    let gap = tsc.wrapping_sub(last_poll);
                    if gap > worst.load(Ordering::Relaxed) {
                        worst.store(gap, Ordering::Relaxed);
                    }
                }
            }
            last_poll = tsc;
            let mut work = 0usize;
            for p in 0..self.queues.len() {
                let n = self.queues[p].rx_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                work += n;
                process_burst_hashed(
                    &mut rx[..],
                    &mut actions[..n],
                    &mut flow_hashes[..n],
                    p as u16,
                    &mut self.state,
                    snap,
                    now_ms,
                );
                let mut out = WorkerOutputs {
                    tx: &mut tx,
                    queues: &mut self.queues,
                    rings: &self.rings,
                };
                dispatch(
                    &mut out,
                    rx.drain(),
                    &actions[..n],
                    &flow_hashes[..n],
                    p as u16,
                    &self.state.counters,
                );
            }
            let received = work;
            // Several bursts of the inbox per receive round: a frame there has already cost
            // another core its classification, so under overload the backlog is left on the
            // NIC's queue (where dropping costs nothing) rather than on a full steering ring.
            for _ in 0..INBOX_BURSTS_PER_POLL {
                let taken = self.drain_inbox(snap, now_ms, &mut tx, &mut steered);
                work += taken;
                if taken < BURST {
                    break;
                }
            }
            self.flush(&mut tx);
            if !self.tx_keepalive.is_empty()
                && now_ms.wrapping_sub(last_keepalive_ms) >= TX_KEEPALIVE_MS
            {
                last_keepalive_ms = now_ms;
                for &p in &self.tx_keepalive {
                    if let Some(q) = self.queues.get_mut(p) {
                        q.tx_empty_burst();
                    }
                }
            }
            // A trace runs until its buffer is full or its time is up.
            if self.state.trace.is_none() {
                if let Some(mut job) = self.tracer.take() {
                    job.start(now_ms);
                    self.state.trace = Some(job);
                }
            }
            if let Some(done) = self.state.trace.take_if(|j| j.done(now_ms)) {
                self.tracer.give_back(done);
            }
            // A connection listing advances by a bounded step per iteration.
            if listing.is_none() {
                listing = self.sampler.take();
            }
            if let Some(job) = listing.as_mut() {
                if job.step_on(&self.state, now_ms) {
                    if let Some(done) = listing.take() {
                        self.sampler.give_back(done);
                    }
                }
            }
            had_work = work > 0;
            iterations = iterations.wrapping_add(1);
            self.state.counters.beat(iterations);
            self.state.counters.inc(Counter::WorkerPolls);
            if work > 0 {
                self.state.counters.inc(Counter::WorkerBusyPolls);
            }
            if iterations.is_multiple_of(1024) {
                self.state
                    .counters
                    .set_flows_active(self.state.flows.len() as u64);
            }
            if received == 0 {
                // No burst means no expiry inside the pipeline (steered frames do not sweep):
                // sweep here (once per tick) so flows of idle and steered-only workers still
                // time out, and persistence entries too.
                self.state.expire_tick(snap, now_ms);
            }
            if work == 0 {
                self.state
                    .counters
                    .set_flows_active(self.state.flows.len() as u64);
                if !self.idle_sleep.is_zero() {
                    // Idle back-off: only when nothing came in, so a loaded worker never sleeps.
                    std::thread::sleep(self.idle_sleep);
                }
            }
        }
        self.state
            .counters
            .set_flows_active(self.state.flows.len() as u64);
    }

    /// Up to a burst from this worker's inbox: frames to transmit go out as they are, frames
    /// other workers steered here go through the pipeline as one staged burst (their
    /// flow-table misses overlap, as a received burst's do). Returns how many it took.
    fn drain_inbox(
        &mut self,
        snap: &Snapshot,
        now_ms: u64,
        tx: &mut TxBursts,
        steered: &mut MbufBurst,
    ) -> usize {
        let index = usize::from(self.state.index);
        let mut ports = [0u16; BURST];
        let mut hashes = [None; BURST];
        let mut n = 0;
        while n < BURST {
            let Some(parcel) = self.rings.inboxes.get(index).and_then(|q| q.pop()) else {
                break;
            };
            n += 1;
            match parcel.kind {
                ParcelKind::Steered { flow_hash } => {
                    let k = steered.len();
                    if let (Some(p), Some(h)) = (ports.get_mut(k), hashes.get_mut(k)) {
                        *p = parcel.port;
                        *h = flow_hash;
                    }
                    // Cannot fail: at most BURST parcels are taken, the burst was empty.
                    if steered.push(parcel.mbuf).is_err() {
                        self.state.counters.inc(DropReason::RingFull);
                    }
                }
                ParcelKind::Transmit => {
                    let mut out = WorkerOutputs {
                        tx: &mut *tx,
                        queues: &mut self.queues,
                        rings: &self.rings,
                    };
                    let len = parcel.mbuf.data().len();
                    if let Err(m) = out.tx(parcel.port, parcel.mbuf, len, &self.state.counters) {
                        self.state.counters.inc(DropReason::NoRoute);
                        out.free(m);
                    }
                }
            }
        }
        let k = steered.len();
        if k > 0 {
            let mut actions = [Action::Drop(DropReason::SteeredTwice); BURST];
            process_steered_burst(
                &mut steered[..],
                &mut actions[..k],
                &ports[..k],
                &hashes[..k],
                &mut self.state,
                snap,
                now_ms,
            );
            // The owner never steers again, so nothing of the hash goes further; each frame
            // keeps its own rx port (for the control thread and the exception path).
            let mut out = WorkerOutputs {
                tx: &mut *tx,
                queues: &mut self.queues,
                rings: &self.rings,
            };
            for ((m, action), port) in steered.drain().zip(actions.iter()).zip(ports.iter()) {
                dispatch(
                    &mut out,
                    std::iter::once(m),
                    std::slice::from_ref(action),
                    &[],
                    *port,
                    &self.state.counters,
                );
            }
        }
        n
    }

    fn flush(&mut self, tx: &mut TxBursts) {
        for (queue, (burst, bytes)) in self.queues.iter_mut().zip(tx.bursts.iter_mut()) {
            send(queue, burst, bytes, &self.state.counters);
        }
        tx.drops.clear();
    }
}

/// Transmit a burst; what the driver does not take is freed and counted, the bytes taken
/// counted from the lengths recorded when the frames were staged.
fn send(
    queue: &mut PortQueue,
    burst: &mut MbufBurst,
    bytes: &mut StagedBytes,
    counters: &WorkerCounters,
) {
    if burst.is_empty() {
        return;
    }
    let out = queue.tx_burst(burst);
    bytes.sent(out.sent, out.dropped, counters);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn retired_snapshots_are_freed_by_the_reclaiming_thread() {
        let rings = Rings::new(1, 4);
        let snap = match Snapshot::build(1, Vec::new(), &[], &HashMap::new(), 7) {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("empty snapshot: {e}"),
        };
        let watch = Arc::downgrade(&snap);
        rings.retire(snap);
        assert!(
            watch.upgrade().is_some(),
            "a retired snapshot lives until reclaimed"
        );
        assert_eq!(rings.reclaim_snapshots(), 1);
        assert!(
            watch.upgrade().is_none(),
            "reclaim dropped the last reference"
        );
        // A full ring: the worker frees the overflow itself, and it is counted.
        for _ in 0..RETIRED_CAPACITY + 2 {
            rings.retire(Arc::new(
                Snapshot::build(2, Vec::new(), &[], &HashMap::new(), 7)
                    .unwrap_or_else(|e| panic!("{e}")),
            ));
        }
        assert_eq!(rings.snapshots_freed_by_workers(), 2);
        assert_eq!(rings.reclaim_snapshots(), RETIRED_CAPACITY);
    }
}
