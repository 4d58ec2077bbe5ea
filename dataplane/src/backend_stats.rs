//! Per-real-server statistics of one worker: a fixed array indexed by the backend slot the
//! snapshot assigns (the id flow entries store), written by the worker, summed over workers by
//! the control thread when it reads them.
//!
//! Like [`crate::counters`], every value is an atomic written by one thread only with a
//! relaxed load + store (plain `mov`s on x86-64). A slot is two cache lines, laid out so a
//! client packet (steps 1-2) touches only the first and a reply (steps 3-4) only the second.
//! The connection gauges (active, inactive) live apart, eight real servers to a cache line
//! ([`Conns`]): the least-connection schedulers read them for every live real server of a
//! service on every worker at each new connection (`sched::load`), and packed they are a few
//! cache lines instead of one per real server. The array never grows: the control plane
//! reuses the slot of a removed real server once nothing refers to it any more (its `active +
//! inactive + persistent` is zero on every worker), so churn does not grow it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots per worker when the configuration does not say otherwise.
pub const DEFAULT_BACKEND_SLOTS: usize = 4096;

/// One real server's counters on one worker.
///
/// A packet of a tracked connection that the pipeline's fast path forwards passes steps 1
/// and 2 (or 3 and 4) at once: it is counted once, in `fast_in` (`fast_out`), and read as
/// one packet of each step. Every term of a reading only grows, so a reading taken while the
/// worker writes never goes back.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Slot {
    // First cache line: the client side (steps 1 and 2) and the flow table's gauges.
    /// Step 1: client packets of its connections received (the general path's).
    step1_packets: AtomicU64,
    /// Step 2: packets forwarded to it (the general path's).
    in_packets: AtomicU64,
    in_bytes: AtomicU64,
    new_conns: AtomicU64,
    /// NAT connections whose client retransmitted its SYN before any reply came back
    /// through vipd: the step-3 symptom (the real server's replies bypass vipd).
    step3_missing: AtomicU64,
    /// Persistence entries pointing at it (ipvsadm's PersistConn).
    persistent: AtomicU64,
    /// Steps 1 and 2 of the fast path's packets.
    fast_in: AtomicU64,
    _pad: AtomicU64,
    // Second cache line: the reply side (steps 3 and 4).
    /// Step 3: its replies received (the general path's).
    step3_packets: AtomicU64,
    /// Step 4: its replies sent to the client (the general path's).
    out_packets: AtomicU64,
    out_bytes: AtomicU64,
    /// Steps 3 and 4 of the fast path's replies.
    fast_out: AtomicU64,
}

/// One real server's connection gauges on one worker (see the module notes).
#[derive(Debug, Default)]
#[repr(C)]
struct Conns {
    /// Flow entries in the established state (ipvsadm's ActiveConn).
    active: AtomicU32,
    /// Flow entries in any other state (ipvsadm's InActConn; every UDP flow).
    inactive: AtomicU32,
}

/// A reading of one slot (on one worker, or summed over workers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    /// Step 1: client packets of its connections received.
    pub step1_packets: u64,
    /// Step 3: its replies received (NAT).
    pub step3_packets: u64,
    /// NAT connections that saw a retransmitted SYN before any reply (step 3 missing).
    pub step3_missing: u64,
    /// Connections scheduled to the real server (flow entries created).
    pub new_conns: u64,
    /// Packets forwarded to it (step 2).
    pub in_packets: u64,
    /// Bytes forwarded to it (whole frames as sent).
    pub in_bytes: u64,
    /// Packets from it sent back to clients (NAT steps 3-4).
    pub out_packets: u64,
    /// Bytes from it sent back to clients.
    pub out_bytes: u64,
    /// Established connections in the flow tables.
    pub active: u64,
    /// Connections in other states.
    pub inactive: u64,
    /// Persistence entries pointing at it.
    pub persistent: u64,
}

impl BackendCounts {
    /// Connections in the flow tables, whatever their state.
    pub fn connections(&self) -> u64 {
        self.active + self.inactive
    }

    /// Flow and persistence entries that name the real server's slot: it is reused only
    /// when this is zero on every worker.
    pub fn references(&self) -> u64 {
        self.active + self.inactive + self.persistent
    }
}

impl std::ops::AddAssign for BackendCounts {
    fn add_assign(&mut self, o: BackendCounts) {
        self.step1_packets += o.step1_packets;
        self.step3_packets += o.step3_packets;
        self.step3_missing += o.step3_missing;
        self.new_conns += o.new_conns;
        self.in_packets += o.in_packets;
        self.in_bytes += o.in_bytes;
        self.out_packets += o.out_packets;
        self.out_bytes += o.out_bytes;
        self.active += o.active;
        self.inactive += o.inactive;
        self.persistent += o.persistent;
    }
}

/// Whether a connection counts as active (established) or inactive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnClass {
    /// Established.
    Active,
    /// Opening, closing, or UDP.
    Inactive,
}

/// One worker's per-real-server statistics. Only the owning worker writes.
#[derive(Debug)]
pub struct BackendStats {
    slots: Box<[Slot]>,
    conns: Box<[Conns]>,
}

#[inline]
fn bump(v: &AtomicU64, n: u64) {
    v.store(v.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

#[inline]
fn drop_one(v: &AtomicU64) {
    v.store(v.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
}

#[inline]
fn bump32(v: &AtomicU32) {
    v.store(v.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

#[inline]
fn drop32(v: &AtomicU32) {
    v.store(v.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
}

impl BackendStats {
    /// Statistics for backend slots `0..slots`.
    pub fn new(slots: usize) -> Self {
        BackendStats {
            slots: (0..slots.max(1)).map(|_| Slot::default()).collect(),
            conns: (0..slots.max(1)).map(|_| Conns::default()).collect(),
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Step 1: a client packet of a connection to the real server in `slot` arrived.
    #[inline]
    pub fn count_step1(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.step1_packets, 1);
        }
    }

    /// Step 3: a reply from the real server in `slot` arrived.
    #[inline]
    pub fn count_step3(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.step3_packets, 1);
        }
    }

    /// A NAT connection of `slot` saw its client retransmit the SYN with no reply yet.
    #[inline]
    pub fn count_step3_missing(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.step3_missing, 1);
        }
    }

    /// Step 2: a packet of `bytes` forwarded to the real server in `slot`. Out-of-range slots
    /// are ignored (the snapshot never hands them out).
    #[inline]
    pub fn count_in(&self, slot: u32, bytes: usize) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.in_packets, 1);
            bump(&s.in_bytes, bytes as u64);
        }
    }

    /// Steps 1 and 2 at once: a client packet of `bytes` (as sent) of a tracked connection
    /// the fast path forwarded to the real server in `slot`.
    #[inline(always)]
    pub fn count_forwarded(&self, slot: u32, bytes: usize) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.fast_in, 1);
            bump(&s.in_bytes, bytes as u64);
        }
    }

    /// Steps 3 and 4 at once: a reply of `bytes` (as sent) the fast path sent to the client.
    #[inline(always)]
    pub fn count_replied(&self, slot: u32, bytes: usize) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.fast_out, 1);
            bump(&s.out_bytes, bytes as u64);
        }
    }

    /// A reply packet of `bytes` from the real server in `slot` sent to its client.
    #[inline]
    pub fn count_out(&self, slot: u32, bytes: usize) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.out_packets, 1);
            bump(&s.out_bytes, bytes as u64);
        }
    }

    /// A connection scheduled to the real server in `slot`.
    #[inline]
    pub fn count_new(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.new_conns, 1);
        }
    }

    fn gauge(&self, slot: u32, class: ConnClass) -> Option<&AtomicU32> {
        let c = self.conns.get(slot as usize)?;
        Some(match class {
            ConnClass::Active => &c.active,
            ConnClass::Inactive => &c.inactive,
        })
    }

    /// A flow entry of `slot` appeared in the flow table.
    #[inline]
    pub fn conn_added(&self, slot: u32, class: ConnClass) {
        if let Some(g) = self.gauge(slot, class) {
            bump32(g);
        }
    }

    /// A flow entry of `slot` left the flow table.
    #[inline]
    pub fn conn_removed(&self, slot: u32, class: ConnClass) {
        if let Some(g) = self.gauge(slot, class) {
            drop32(g);
        }
    }

    /// Active and inactive connections of `slot` on this worker (any thread; relaxed).
    #[inline]
    pub fn conns(&self, slot: u32) -> (u32, u32) {
        match self.conns.get(slot as usize) {
            Some(c) => (
                c.active.load(Ordering::Relaxed),
                c.inactive.load(Ordering::Relaxed),
            ),
            None => (0, 0),
        }
    }

    /// A persistence entry now points at `slot`.
    #[inline]
    pub fn persistence_added(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            bump(&s.persistent, 1);
        }
    }

    /// A persistence entry no longer points at `slot`.
    #[inline]
    pub fn persistence_removed(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            drop_one(&s.persistent);
        }
    }

    /// A flow entry of `slot` changed class (became established, or started closing).
    #[inline]
    pub fn conn_moved(&self, slot: u32, from: ConnClass, to: ConnClass) {
        if from != to {
            self.conn_removed(slot, from);
            self.conn_added(slot, to);
        }
    }

    /// The counters of `slot` (any thread). Zero for an out-of-range slot.
    pub fn get(&self, slot: u32) -> BackendCounts {
        let Some(s) = self.slots.get(slot as usize) else {
            return BackendCounts::default();
        };
        let r = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let (fast_in, fast_out) = (r(&s.fast_in), r(&s.fast_out));
        let (active, inactive) = self.conns(slot);
        BackendCounts {
            step1_packets: r(&s.step1_packets).wrapping_add(fast_in),
            step3_packets: r(&s.step3_packets).wrapping_add(fast_out),
            step3_missing: r(&s.step3_missing),
            new_conns: r(&s.new_conns),
            in_packets: r(&s.in_packets).wrapping_add(fast_in),
            in_bytes: r(&s.in_bytes),
            out_packets: r(&s.out_packets).wrapping_add(fast_out),
            out_bytes: r(&s.out_bytes),
            active: u64::from(active),
            inactive: u64::from(inactive),
            persistent: r(&s.persistent),
        }
    }
}

/// The counters of `slot` summed over workers.
pub fn sum(workers: &[std::sync::Arc<BackendStats>], slot: u32) -> BackendCounts {
    let mut total = BackendCounts::default();
    for w in workers {
        total += w.get(slot);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_two_cache_lines_split_by_direction() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        assert_eq!(std::mem::offset_of!(Slot, step3_packets), 64);
        assert_eq!(
            std::mem::size_of::<Conns>(),
            8,
            "eight real servers per cache line"
        );
    }

    #[test]
    fn counts_and_gauges() {
        let s = BackendStats::new(4);
        s.count_new(1);
        s.count_in(1, 60);
        s.count_in(1, 1500);
        s.count_out(1, 40);
        s.conn_added(1, ConnClass::Inactive);
        s.conn_moved(1, ConnClass::Inactive, ConnClass::Active);
        s.conn_added(1, ConnClass::Inactive);
        s.count_in(99, 60); // out of range: ignored
        s.count_step1(1);
        s.count_step3(1);
        s.count_step3_missing(1);
        // The fast path's packets count as both steps.
        s.count_forwarded(1, 100);
        s.count_replied(1, 10);
        s.persistence_added(1);
        s.persistence_added(1);
        s.persistence_removed(1);
        let c = s.get(1);
        assert_eq!(
            c,
            BackendCounts {
                step1_packets: 2,
                step3_packets: 2,
                step3_missing: 1,
                new_conns: 1,
                in_packets: 3,
                in_bytes: 1660,
                out_packets: 2,
                out_bytes: 50,
                active: 1,
                inactive: 1,
                persistent: 1,
            }
        );
        assert_eq!(s.conns(1), (1, 1));
        assert_eq!(c.references(), 3);
        s.conn_removed(1, ConnClass::Active);
        s.conn_removed(1, ConnClass::Inactive);
        assert_eq!(s.get(1).connections(), 0);
        assert_eq!(s.get(0), BackendCounts::default());
        let total = sum(
            &[
                std::sync::Arc::new(s),
                std::sync::Arc::new(BackendStats::new(4)),
            ],
            1,
        );
        assert_eq!(total.in_packets, 3);
    }
}
