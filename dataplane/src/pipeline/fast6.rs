//! The fast path for IPv6: a TCP or UDP packet of a connection this worker tracks, in either
//! direction of a NAT connection or to a DR real server, with nothing unusual about it: the
//! counterpart of `fast4` for established connections (new connections, TUN and full-NAT
//! real servers are the general path's). Stage 1 ([`classify`]) makes the general
//! classifier's checks on fixed header views and stages a compact [`Staged6`]; stage 3
//! ([`client`], [`reply`]) finds the connection's IPv6 slot (prefetched by stages 1 and 2),
//! checks what the general path would check, refreshes the slot's expiry and rewrites the
//! frame from the real server's forwarding record (`snapshot::fast6`).
//!
//! Anything else falls back *before anything changed*, as in `fast4`: stage 1 changes
//! nothing ever; stage 3 returns `None` when the packet carries SYN, FIN or RST, its key is
//! in no live slot or in the other direction's, its state would change (`REFRESH_ONLY`), its
//! record is not the fast path's, or a check fails (hop limit, MTU, an unresolved client):
//! the general path then handles the frame as if the fast path did not exist. The equality
//! is proven by the differential test (`fast6/tests.rs`).

pub(super) mod classify;
mod rewrite;
#[cfg(test)]
mod tests;

use super::classify::FastPacket;
use super::{Action, Staged, Tally, WorkerState};
use crate::counters::DropReason;
use crate::flow::slot::{Key, V6};
use crate::flow::table::fast::Hit;
use crate::flow::TableHash;
use crate::io::PacketBuf;
use crate::snapshot::fast4::Kind;
use crate::snapshot::fast6::Record6;
use crate::snapshot::Snapshot;
use crate::wire::tcp::flags::{FIN, RST, SYN};

/// What stage 1 learnt of an IPv6 packet the fast path may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct Staged6 {
    /// The packet's key in the flow table's form.
    pub(super) key: Key<V6>,
    pub(super) hash: TableHash,
    /// A client packet: its service; a reply: its real server's one service or
    /// `AMBIGUOUS` (`snapshot::fast6`).
    pub(super) service: u32,
    /// IP packet length (fixed header and payload).
    pub(super) len: u32,
    pub(super) hops: u8,
    /// TCP flags (0 for UDP).
    pub(super) tcp_bits: u8,
    /// A NAT real server's reply (steps 3 -> 4), else a client packet (steps 1 -> 2).
    pub(super) reply: bool,
    /// Stage 2's answer: the key's slot when its primary bucket holds it, else
    /// `flow::slot::NIL`.
    pub(super) pos: u32,
}

impl Staged6 {
    /// A record stage 1 has not written (a burst's scratch starts so).
    pub(super) const EMPTY: Staged6 = Staged6 {
        key: Key {
            addrs: [0; 4],
            ports: 0,
            proto: 0,
        },
        hash: TableHash(0),
        service: 0,
        len: 0,
        hops: 0,
        tcp_bits: 0,
        reply: false,
        pos: crate::flow::slot::NIL,
    };

    /// Whether the packet carries none of the flags the state machine acts on.
    #[inline(always)]
    fn plain(&self) -> bool {
        self.tcp_bits & (SYN | FIN | RST) == 0
    }

    /// The client's address words of a reply (its destination).
    #[inline(always)]
    fn client(&self) -> [u64; 2] {
        [self.key.addrs[2], self.key.addrs[3]]
    }

    /// The general classifier's record of this packet (its stage 3 then handles it).
    pub(super) fn general(&self) -> Staged {
        FastPacket {
            key: self.key.flow_key(),
            v4: false,
            ttl: self.hops,
            len: self.len as usize,
            // IPv6 is never fragmented on the way.
            dont_frag: true,
            table: self.hash,
            maglev: None,
            tcp_bits: self.tcp_bits,
            service: self.service,
            reply: self.reply,
        }
        .staged()
    }
}

#[cfg(test)]
thread_local! {
    /// IPv6 frames the fast path handled on this thread (the differential test checks it is
    /// reached).
    pub(super) static FAST6_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a frame the fast path handled (tests only).
#[inline(always)]
fn hit() {
    #[cfg(test)]
    FAST6_HITS.with(|h| h.set(h.get() + 1));
}

/// Stage 3 of a frame stage 1 staged: its client or reply path; `None`: the general path's.
#[inline(always)]
pub(super) fn handle<B: PacketBuf>(
    buf: &mut B,
    f: &Staged6,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    if f.reply {
        reply(buf, f, w, snap, now, tally)
    } else {
        client(buf, f, w, snap, now, tally)
    }
}

/// The live slot of a packet without SYN, FIN or RST, in the packet's own direction, that
/// only refreshes the expiry (`REFRESH_ONLY`), and its real server's record; `None`
/// otherwise.
#[inline(always)]
fn refreshing_hit<'s>(
    f: &Staged6,
    w: &WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Option<(Hit, &'s Record6)> {
    if !f.plain() {
        return None;
    }
    let hit = w.flows.hit6(&f.key, f.hash, f.pos, now)?;
    if hit.reply != f.reply || !hit.refresh_only {
        return None;
    }
    Some((hit, snap.fast6.record(hit.backend)?))
}

/// Steps 1 -> 2 of a tracked connection's client packet; `None`: the general path's.
#[inline(always)]
fn client<B: PacketBuf>(
    buf: &mut B,
    f: &Staged6,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    let (hit, r) = refreshing_hit(f, w, snap, now)?;
    // Decide: the checks `egress::check` makes for the record's mode (hop limit, MTU; any
    // failure left to it), and the record's service is the packet's.
    if r.kind == Kind::None || f.len > r.max_len || f.hops < r.min_hops || r.service != f.service {
        return None;
    }
    // Commit: what `track` would do (the expiry), then the frame.
    w.flows.refresh6(&hit, now);
    let done = match r.kind {
        Kind::Nat => rewrite::nat_to_rs(buf.data_mut(), f.key.proto, r),
        _ => super::fast4::rewrite::macs(buf.data_mut(), &r.macs),
    };
    if done {
        w.backends.count_forwarded(hit.backend, buf.data().len());
        tally.forwarded += 1;
    }
    Some(sent(done, r.port))
}

/// Steps 3 -> 4 of a tracked NAT connection's reply; `None`: the general path's.
#[inline(always)]
fn reply<B: PacketBuf>(
    buf: &mut B,
    f: &Staged6,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    tally: &mut Tally,
) -> Option<Action> {
    let (hit, r) = refreshing_hit(f, w, snap, now)?;
    if r.kind != Kind::Nat {
        return None;
    }
    // Decide: the checks of `egress::to_client`, any failure left to it.
    let hop = snap.fast6.hop(f.client())?;
    if f.hops <= 1 || f.len > u32::from(hop.mtu) {
        return None;
    }
    // Commit.
    w.flows.refresh6(&hit, now);
    let done = rewrite::nat_to_client(buf.data_mut(), f.key.proto, r, &hop.macs);
    if done {
        w.backends.count_replied(hit.backend, buf.data().len());
        tally.nat_replies += 1;
    }
    Some(sent(done, hop.port))
}

/// The action of a frame the fast path rewrote (`done`) for `port`, counted as the fast
/// path's (tests); a rewrite that found the frame shorter than stage 1 did (which cannot
/// happen: stage 1 bounded every header the rewrite writes) drops it.
#[inline(always)]
fn sent(done: bool, port: u16) -> Action {
    if !done {
        return Action::Drop(DropReason::EthMalformed);
    }
    self::hit();
    Action::Tx(port)
}
