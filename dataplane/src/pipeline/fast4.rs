//! The fast path: an IPv4 TCP or UDP packet of a connection this worker tracks, in either
//! direction of a NAT connection or to a DR / TUN real server, with nothing unusual about it.
//! Stage 1 ([`classify`]) makes the general classifier's checks on fixed header views and
//! stages a compact [`Staged4`]; stage 3 ([`client`], [`reply`]) finds the connection's slot
//! (one cache line at any table size, prefetched by stages 1 and 2), checks what the general
//! path would check, refreshes the slot's expiry and rewrites the frame from the real
//! server's forwarding record (`snapshot::fast4`): work computed once per snapshot, not per
//! packet.
//!
//! Anything else falls back *before anything changed*: stage 1 changes nothing ever; stage 3
//! returns `None` when the packet carries SYN, FIN or RST, its key is in no live slot or in
//! the other direction's, its state would change (only a packet that leaves state and memory
//! as they are takes the fast path: `REFRESH_ONLY`), its record is not the fast path's (an
//! unresolved next hop, flows of a down real server dropped, an IPv6 real server), or a check
//! fails (TTL, MTU, a tunnel's headroom, an unresolved client): the general path then
//! handles the frame as if the fast path did not exist. The equality is proven by the
//! differential test (`fast4/tests.rs`).

pub(super) mod classify;
pub(super) mod rewrite;
#[cfg(test)]
pub(super) mod tests;

use super::{Action, Tally, WorkerState};
use crate::counters::DropReason;
use crate::flow::slot::{Key, V4};
use crate::flow::TableHash;
use crate::io::PacketBuf;
use crate::snapshot::fast4::{tunnel_source, Kind, Record};
use crate::snapshot::Snapshot;
use crate::wire::tcp::flags::{ACK, FIN, RST, SYN};

/// What stage 1 learnt of a packet the fast path may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct Staged4 {
    /// The packet's key in the flow table's form.
    pub(super) key: Key<V4>,
    pub(super) hash: TableHash,
    /// A client packet: its service; a reply: its real server's one service or
    /// `AMBIGUOUS` (`snapshot::fast4`).
    pub(super) service: u32,
    /// IP total length.
    pub(super) len: u16,
    pub(super) ttl: u8,
    /// TCP flags (0 for UDP).
    pub(super) tcp_bits: u8,
    pub(super) dont_frag: bool,
    /// A NAT real server's reply (steps 3 -> 4), else a client packet (steps 1 -> 2).
    pub(super) reply: bool,
    /// Stage 2's answer: the key's slot when its primary bucket holds it, else
    /// `flow::slot::NIL` (stage 3 then searches the secondary bucket).
    pub(super) pos: u32,
    /// The consistent hash, if stage 2 computed it for a connection it expects to open.
    pub(super) maglev: Option<u64>,
    /// Stage 2's pick for a connection it expects to open: the real server the service's
    /// scheduler gives it (a Maglev service without persistence and thresholds), else
    /// `NO_PICK`; and its reply key's hash when the real server is NAT's.
    pub(super) pick: u32,
    pub(super) reply_hash: TableHash,
}

/// [`Staged4::pick`] when stage 2 made none.
pub(super) const NO_PICK: u32 = u32::MAX;

impl Staged4 {
    /// A record stage 1 has not written (a burst's scratch starts so).
    pub(super) const EMPTY: Staged4 = Staged4 {
        key: Key {
            addrs: 0,
            ports: 0,
            proto: 0,
        },
        hash: TableHash(0),
        service: 0,
        len: 0,
        ttl: 0,
        tcp_bits: 0,
        dont_frag: false,
        reply: false,
        pos: crate::flow::slot::NIL,
        maglev: None,
        pick: NO_PICK,
        reply_hash: TableHash(0),
    };

    /// Whether the packet carries none of the flags the state machine acts on (the fast path
    /// never changes a connection's state).
    #[inline(always)]
    fn plain(&self) -> bool {
        self.tcp_bits & (SYN | FIN | RST) == 0
    }

    /// Whether the packet may open a connection: UDP, or a lone SYN (the general path's
    /// `is_lone_syn`; sloppy TCP's other segments are left to it).
    #[inline(always)]
    fn opens(&self) -> bool {
        self.key.proto == crate::flow::key::PROTO_UDP
            || self.tcp_bits & (SYN | ACK | FIN | RST) == SYN
    }

    /// The reply key of this client packet's connection to NAT real server `r`: real server
    /// -> client (the key's source address and port).
    #[inline(always)]
    fn reply_key(&self, r: &Record) -> Key<V4> {
        let client = self.key.addrs & 0xffff_ffff;
        Key::<V4> {
            addrs: u64::from(r.rs_addr) | client << 32,
            ports: u32::from(r.rs_port) | (self.key.ports & 0xffff) << 16,
            proto: self.key.proto,
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Frames the fast path handled on this thread (the differential test checks it is
    /// reached).
    pub(super) static FAST_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Connections the fast path entered on this thread (likewise), and of them those a
    /// rotating or load-aware scheduler picked in stage 3.
    pub(super) static FAST_OPENS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    pub(super) static FAST_OPENS_IN_ORDER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a frame the fast path handled (tests only).
#[inline(always)]
fn hit() {
    #[cfg(test)]
    FAST_HITS.with(|h| h.set(h.get() + 1));
}

/// Stage 2 of a client packet whose key its primary bucket does not hold: if it may open a
/// connection of a service whose scheduler is the consistent hash (Maglev: its pick depends
/// on the packet alone), pick the real server for [`open`] and, for a NAT one, start loading
/// the buckets its reply key will go to, so the insert in stage 3 does not wait for those
/// lines. Nothing changes: for a packet that turns out not to open a connection the work is
/// a wasted prefetch (and the consistent hash, which the general path then takes as it is).
#[inline(always)]
pub(super) fn prefetch_new(f: &mut Staged4, w: &WorkerState, snap: &Snapshot) {
    if f.reply || !f.opens() {
        return;
    }
    let Some(svc) = snap.services.get(f.service as usize) else {
        return;
    };
    if !svc.schedules_by_hash() {
        return;
    }
    let maglev = svc.flow_hash(&f.key.flow_key());
    f.maglev = Some(maglev);
    let Some(id) = svc.pick_consistent(maglev) else {
        return;
    };
    // Persistence and thresholds may pick another real server than the table's.
    if svc.persistence.is_none() && svc.limits.is_empty() {
        f.pick = id;
    }
    let Some(r) = snap.fast4.record(id) else {
        return;
    };
    if r.kind == Kind::Nat {
        let h = f.reply_key(r).hash();
        f.reply_hash = h;
        // Both of its buckets: the insert first makes sure no connection holds it, which
        // reads the secondary bucket too.
        w.flows.prefetch4(h);
        w.flows.prefetch_secondary4(h);
    }
}

/// Whether the packet may go to `r` as it is: the checks `egress::check` makes for the
/// record's mode (TTL, MTU; any failure is left to it), precomputed in the record, and the
/// record's service is the packet's.
#[inline(always)]
fn fits(f: &Staged4, r: &Record) -> bool {
    f.len <= r.max_len && f.ttl >= r.min_ttl && r.service == f.service
}

/// The tunnel header's room, taken now (the frame's first change): without it the general
/// path answers (it drops the packet as `drop_no_headroom`).
#[inline(always)]
fn make_room<B: PacketBuf>(buf: &mut B, r: &Record) -> bool {
    r.kind != Kind::Tun || buf.prepend(rewrite::TUN_OVERHEAD)
}

/// Rewrites a client packet checked by [`fits`] (with its room made) for real server
/// `backend` (record `r`) and counts it.
#[inline(always)]
fn to_real_server<B: PacketBuf>(
    buf: &mut B,
    f: &Staged4,
    backend: u32,
    r: &Record,
    w: &mut WorkerState,
    tally: &mut Tally,
) -> Action {
    let done = match r.kind {
        Kind::Nat => rewrite::nat_to_rs(buf.data_mut(), f.key.proto, r),
        Kind::Dr => rewrite::macs(buf.data_mut(), &r.macs),
        _ => rewrite::tunnel(buf, f, r, tunnel_source(r, f.hash.bits())),
    };
    if !done {
        // Cannot happen: stage 1 bounded every header the rewrite writes.
        return Action::Drop(DropReason::EthMalformed);
    }
    w.backends.count_forwarded(backend, buf.data().len());
    tally.forwarded += 1;
    self::hit();
    Action::Tx(r.port)
}

/// Steps 1 -> 2 of a tracked connection's client packet; `None`: the general path's.
#[inline(always)]
pub(super) fn client<B: PacketBuf>(
    buf: &mut B,
    f: &Staged4,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    if !f.plain() {
        return None;
    }
    let hit = w.flows.hit4(&f.key, f.hash, f.pos, now)?;
    if hit.reply || !hit.refresh_only {
        return None;
    }
    let r = snap.fast4.record(hit.backend)?;
    if !fits(f, r) || !make_room(buf, r) {
        return None;
    }
    // Commit: what `track` would do (the expiry), then the frame.
    w.flows.refresh4(&hit, now);
    Some(to_real_server(buf, f, hit.backend, r, w, tally))
}

/// Steps 1 -> 2 of a packet that opens a connection (UDP, or a lone SYN) to the real server
/// stage 2 picked (`prefetch_new`, Maglev) or the service's scheduler picks now
/// ([`pick_in_order`]); `None`: the general path's. Its entry is made as the
/// general path would make it, when the general path would make it: the key and its reply
/// key are in no slot and the table has room without a reclaim; else the general path
/// decides (a retransmitted SYN, a clash, an expired holder, a full table).
// Once per new connection: kept out of the burst loop, whose established path it would
// otherwise lengthen.
#[inline(never)]
pub(super) fn open<B: PacketBuf>(
    buf: &mut B,
    f: &Staged4,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    if !f.opens() {
        return None;
    }
    let (pick, cursor, vacancy) = if f.pick != NO_PICK {
        (f.pick, None, None)
    } else {
        // The key's vacancy before a rotating scheduler moves its cursor, kept for the entry.
        let vacancy = w.flows.vacancy4(&f.key, f.hash)?;
        let (pick, cursor) = pick_in_order(f, w, snap, now)?;
        (pick, Some(cursor), Some(vacancy))
    };
    // Anything that sends the packet to the general path after a rotating scheduler moved its
    // cursor puts the cursor back, so that the general path's pick is this one.
    let undo = |w: &mut WorkerState| {
        if let Some((i, c)) = cursor {
            if let Some(slot) = w.cursors.get_mut(i) {
                *slot = c;
            }
        }
    };
    let Some(r) = snap.fast4.record(pick) else {
        undo(w);
        return None;
    };
    let reply = (r.kind == Kind::Nat).then(|| {
        let key = f.reply_key(r);
        // Stage 2 hashed the reply key of its own pick.
        let hash = if cursor.is_some() {
            key.hash()
        } else {
            f.reply_hash
        };
        (key, hash)
    });
    let at = if fits(f, r) {
        // The key's vacancy, if not found above.
        vacancy
            .or_else(|| w.flows.vacancy4(&f.key, f.hash))
            .and_then(|at| w.flows.vacancy4_then(at, &f.key, reply.as_ref()))
    } else {
        None
    };
    // A rotating scheduler's pick is not the consistent hash's, which the general path takes
    // when the index has no slot: that pick goes on only if the index cannot fail it (it
    // places both keys without moving slots).
    let at = at.filter(|at| cursor.is_none() || !at.moves);
    let Some(at) = at.filter(|_| make_room(buf, r)) else {
        undo(w);
        return None;
    };
    // Commit: the entry (`opens`: UDP or a lone SYN), then the frame.
    match w.flows.open4(&f.key, f.hash, reply, pick, now, at) {
        Ok(()) => {
            #[cfg(test)]
            {
                FAST_OPENS.with(|o| o.set(o.get() + 1));
                if cursor.is_some() {
                    FAST_OPENS_IN_ORDER.with(|o| o.set(o.get() + 1));
                }
            }
            tally.flows_created += 1;
            w.backends.count_new(pick);
        }
        // The general path's answer to an index without a slot: the real server of the
        // consistent hash (stage 2's pick), without state. (A rotating scheduler's pick
        // never gets here: `moves`.)
        Err(_) => super::flows::full(w, now),
    }
    Some(to_real_server(buf, f, pick, r, w, tally))
}

/// The pick of a new connection's real server by a scheduler that is not the consistent
/// hash (rr, wrr, lc, wlc, sh), made in stage 3 where the rotating ones move their cursor in
/// packet order: the general path's `flows::schedule` for a service without persistence or
/// thresholds. `open` calls it once the key is in no slot and the table has room (what it
/// then requires); every check is made before the cursor moves, so that a packet the
/// general path takes leaves the cursor alone. Returns the pick and the cursor as it was (its
/// index and value).
#[inline(always)]
fn pick_in_order(
    f: &Staged4,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Option<(u32, (usize, u64))> {
    let svc = snap.services.get(f.service as usize)?;
    let udp = f.key.proto == crate::flow::key::PROTO_UDP;
    if svc.schedules_by_hash()
        || svc.persistence.is_some()
        || !svc.limits.is_empty()
        || (udp && super::flows::udp_overflow_recent(w, now))
    {
        return None;
    }
    let key = f.key.flow_key();
    let conn = crate::sched::NewConn {
        hash: f.maglev.unwrap_or_else(|| svc.flow_hash(&key)),
        client: &key.src,
        client_port: key.src_port,
    };
    let index = f.service as usize;
    let cursor = w.cursors.get_mut(index)?;
    let saved = *cursor;
    let Some(pick) = svc.pick(&conn, cursor, &w.load) else {
        *cursor = saved;
        return None;
    };
    Some((pick, (index, saved)))
}

/// Steps 3 -> 4 of a tracked NAT connection's reply; `None`: the general path's.
#[inline(always)]
pub(super) fn reply<B: PacketBuf>(
    buf: &mut B,
    f: &Staged4,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    if !f.plain() {
        return None;
    }
    let hit = w.flows.hit4(&f.key, f.hash, f.pos, now)?;
    if !hit.reply || !hit.refresh_only {
        return None;
    }
    let r = snap.fast4.record(hit.backend)?;
    if r.kind != Kind::Nat {
        return None;
    }
    // Decide: the checks of `egress::to_client`, any failure left to it.
    let client = f.key.addrs >> 32;
    let hop = snap.fast4.hop((client as u32).swap_bytes())?;
    if f.ttl <= 1 || usize::from(f.len) > usize::from(hop.mtu) {
        return None;
    }
    // Commit.
    w.flows.refresh4(&hit, now);
    if !rewrite::nat_to_client(buf.data_mut(), f.key.proto, r, &hop.macs) {
        return Some(Action::Drop(DropReason::EthMalformed));
    }
    w.backends.count_replied(hit.backend, buf.data().len());
    tally.nat_replies += 1;
    self::hit();
    Some(Action::Tx(hop.port))
}
