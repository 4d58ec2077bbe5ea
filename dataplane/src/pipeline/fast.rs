//! Stage 3's fast path: a TCP or UDP packet of a connection this worker already tracks, in
//! either direction of a NAT connection or to a DR / TUN real server, with nothing unusual
//! about it. It does what the general path ([`super::egress::forward_client`],
//! [`super::egress::nat_reply`]) does for such a packet, in one straight line: look the flow
//! up, check, then commit (track, rewrite, count), without the general path's layers of
//! `Result`s and its branches for new connections, fragments, stateless forwarding and ICMP
//! answers.
//!
//! Anything else falls back: the fast path returns `None` *before it has changed anything*
//! but what the general path's own lookup would change (a flow lookup removes an expired
//! entry; the general path, looking again, finds the same nothing). It falls back for a
//! fragment, a SYN, FIN or RST, a packet without a live entry or whose entry is the other
//! direction's, a real server that left or whose flows are dropped, and whenever a check
//! fails (no next-hop MAC, TTL, MTU, tunnel headroom, an unresolved client): the general path
//! then drops or answers the packet with its own counter. Trace hooks are the caller's: it
//! takes the fast path only while no trace is active. The equality is proven by the
//! differential test in `fast/tests.rs`.

use super::egress::{self, ClientHop};
use super::{set_macs, Action, L4Info, Pkt, Staged, Verdict, WorkerState};
use crate::counters::Counter;
use crate::flow::{Direction, FlowHit};
use crate::fwd::nat;
use crate::io::PacketBuf;
use crate::snapshot::{Backend, Snapshot};
use crate::wire::tcp::flags::{FIN, RST, SYN};

/// Stage 3 of `st` on the fast path: `Some(verdict)` when it handled the frame, `None` to
/// hand it, unchanged, to the general path.
#[inline(always)]
pub(super) fn handle<B: PacketBuf>(
    buf: &mut B,
    st: &Staged,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Option<Verdict> {
    let v = match *st {
        Staged::Client {
            ref pkt,
            ref info,
            owner_here: true,
            ..
        } if plain(pkt, info) => client(buf, pkt, info, w, snap, now),
        Staged::Reply {
            ref pkt,
            ref info,
            owner_here: true,
            ..
        } if plain(pkt, info) => reply(buf, pkt, info, w, snap, now),
        _ => None,
    };
    #[cfg(test)]
    if v.is_some() {
        FAST_HITS.with(|h| h.set(h.get() + 1));
    }
    v
}

#[cfg(test)]
thread_local! {
    /// Frames the fast path handled on this thread (the differential test checks it is
    /// reached).
    static FAST_HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Not a fragment, and no flag the general path or the state machine treats specially: a
/// SYN may replace a finished connection, FIN and RST end one (all left to the general path).
#[inline(always)]
fn plain(pkt: &Pkt, info: &L4Info) -> bool {
    pkt.frag.is_none() && info.tcp_bits & (SYN | FIN | RST) == 0
}

/// The live entry of the packet's connection, matched by its `dir` key, and its real server
/// if the snapshot still has it.
#[inline(always)]
fn tracked<'s>(
    pkt: &Pkt,
    info: &L4Info,
    dir: Direction,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Option<(FlowHit, &'s Backend)> {
    let hit = w.flows.lookup(&pkt.key, info.hash, now)?;
    if hit.dir != dir {
        return None;
    }
    Some((hit, snap.backend(hit.backend)?))
}

/// Steps 1 -> 2 for a packet of a tracked connection.
#[inline(always)]
fn client<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    info: &L4Info,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Option<Verdict> {
    let (hit, backend) = tracked(pkt, info, Direction::Original, w, snap, now)?;
    if backend.drop_flows {
        return None;
    }
    // Decide: every check the general path makes before it commits.
    let route = egress::check(buf, pkt, backend, info.hash, snap).ok()?;
    // Commit, in the general path's order of effects.
    w.backends.count_step1(backend.id);
    w.flows
        .track(hit.id, Direction::Original, info.tcp_flags, now);
    Some(egress::rewrite(buf, pkt, backend, &route).map(|port| {
        w.counters.inc(Counter::Forwarded);
        w.backends.count_in(backend.id, buf.data().len());
        Action::Tx(port)
    }))
}

/// Steps 3 -> 4 for a NAT real server's reply of a tracked connection.
#[inline(always)]
fn reply<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    info: &L4Info,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Option<Verdict> {
    let (hit, backend) = tracked(pkt, info, Direction::Reply, w, snap, now)?;
    let svc = snap.services.get(backend.service as usize)?;
    // Decide: the checks of `egress::to_client`, any failure left to it.
    let (port, mac) = snap.resolve_key(&pkt.key.dst).ok()?;
    let out = snap.ports.get(usize::from(port))?;
    if pkt.ttl <= 1 || pkt.len > usize::from(out.mtu) {
        return None;
    }
    let hop = ClientHop {
        port,
        our_mac: out.mac,
        mac,
    };
    // Commit, in the general path's order of effects.
    w.backends.count_step3(hit.backend);
    w.flows.track(hit.id, Direction::Reply, info.tcp_flags, now);
    let frame = buf.data_mut();
    let rewritten = match frame.get_mut(pkt.l2..) {
        Some(l3) => nat::rewrite_to_vip(l3, pkt.l4, svc.vip, svc.port),
        None => Err(Counter::DropEthMalformed),
    };
    if let Err(c) = rewritten {
        return Some(Err(c));
    }
    set_macs(frame, hop.our_mac, hop.mac);
    w.backends.count_out(hit.backend, buf.data().len());
    w.counters.inc(Counter::NatReplies);
    Some(Ok(Action::Tx(hop.port)))
}

pub(super) mod classify;
#[cfg(test)]
mod tests;
