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
mod rewrite;
#[cfg(test)]
mod tests;

use super::{Action, Tally, WorkerState};
use crate::counters::DropReason;
use crate::flow::slot::{Key, V4};
use crate::flow::TableHash;
use crate::io::PacketBuf;
use crate::snapshot::fast4::{tunnel_source, Kind};
use crate::snapshot::Snapshot;
use crate::wire::tcp::flags::{FIN, RST, SYN};

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
}

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
    };

    /// Whether the packet carries none of the flags the state machine acts on (the fast path
    /// never changes a connection's state).
    #[inline(always)]
    fn plain(&self) -> bool {
        self.tcp_bits & (SYN | FIN | RST) == 0
    }
}

#[cfg(test)]
thread_local! {
    /// Frames the fast path handled on this thread (the differential test checks it is
    /// reached).
    pub(super) static FAST_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a frame the fast path handled (tests only).
#[inline(always)]
fn hit() {
    #[cfg(test)]
    FAST_HITS.with(|h| h.set(h.get() + 1));
}

/// Stage 2 of a client packet whose key its primary bucket does not hold: if it may open a
/// NAT connection of a service whose scheduler is the consistent hash (Maglev: its pick
/// depends on the packet alone), start loading the bucket its reply key will go to, so the
/// insert in stage 3 does not wait for that line. A hint only: nothing changes, and a wrong
/// guess costs a prefetch.
#[inline(always)]
pub(super) fn prefetch_new(f: &mut Staged4, w: &WorkerState, snap: &Snapshot) {
    let opens = f.key.proto == crate::flow::key::PROTO_UDP || f.tcp_bits & (SYN | FIN | RST) == SYN;
    if f.reply || !opens {
        return;
    }
    let Some(svc) = snap.services.get(f.service as usize) else {
        return;
    };
    if !svc.has_nat || !svc.schedules_by_hash() {
        return;
    }
    let maglev = svc.flow_hash(&f.key.flow_key());
    f.maglev = Some(maglev);
    let Some(r) = svc
        .pick_consistent(maglev)
        .and_then(|id| snap.fast4.record(id))
    else {
        return;
    };
    if r.kind == Kind::Nat {
        // Real server -> client: the client's address and port are the key's source ones.
        let client = f.key.addrs & 0xffff_ffff;
        let reply = Key::<V4> {
            addrs: u64::from(r.rs_addr) | client << 32,
            ports: u32::from(r.rs_port) | (f.key.ports & 0xffff) << 16,
            proto: f.key.proto,
        };
        // Both of its buckets: the insert first makes sure no live connection holds it,
        // which reads the secondary bucket too.
        let h = reply.hash();
        w.flows.prefetch4(h);
        w.flows.prefetch_secondary4(h);
    }
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
    let len = usize::from(f.len);
    // Decide: the checks `egress::check` makes for this mode, any failure left to it.
    let fits = match r.kind {
        Kind::Nat => f.ttl > 1 && len <= usize::from(r.mtu),
        Kind::Dr => len <= usize::from(r.mtu),
        Kind::Tun => len + rewrite::TUN_OVERHEAD <= usize::from(r.mtu),
        Kind::None => false,
    };
    if !fits || r.service != f.service {
        return None;
    }
    // The tunnel header's room is taken now (the frame's first change): without it the
    // general path answers (it drops the packet as `drop_no_headroom`).
    if r.kind == Kind::Tun && !buf.prepend(rewrite::TUN_OVERHEAD) {
        return None;
    }
    // Commit: what `track` would do (the expiry), then the frame.
    w.flows.refresh4(&hit, now);
    let done = match r.kind {
        Kind::Nat => rewrite::nat_to_rs(buf.data_mut(), f.key.proto, r),
        Kind::Dr => rewrite::macs(buf.data_mut(), &r.macs),
        _ => rewrite::tunnel(buf, f, r, tunnel_source(r, f.hash.bits())),
    };
    if !done {
        // Cannot happen: stage 1 bounded every header the rewrite writes.
        return Some(Action::Drop(DropReason::EthMalformed));
    }
    w.backends.count_forwarded(hit.backend, buf.data().len());
    tally.forwarded += 1;
    self::hit();
    Some(Action::Tx(r.port))
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
