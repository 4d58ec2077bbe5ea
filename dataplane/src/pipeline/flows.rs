//! Which real server a client packet goes to, decided in two steps so that a packet that is
//! then dropped leaves the flow table as it was: [`choose`] looks up (it only removes what
//! is already dead: expired entries, entries of real servers that left), [`commit`] creates,
//! advances or replaces the entry once the packet is known to go out.
//!
//! Without a flow entry the answer is always the service's consistent hash (Maglev) when no
//! new state may be created: a TCP segment that is not a lone SYN, a fragment decided away
//! from the connection's owner, a key clash, a full table. For rr/wrr services this means:
//! connections that start with a SYN while the table has room are spread by rr/wrr and
//! pinned by their entry; everything without an entry follows the Maglev table of the same
//! real servers, the same answer on every packet and every box.

use super::{L4Info, WorkerState};
use crate::counters::Counter;
use crate::flow::key::PROTO_UDP;
use crate::flow::{Direction, FlowId, FlowKey, InsertError, TcpState};
use crate::snapshot::{Backend, FwdMode, Service, Snapshot};

/// What [`commit`] does to the flow table.
#[derive(Clone, Copy, Debug)]
pub(super) enum FlowOp {
    /// The packet belongs to this live entry: advance its state.
    Track(FlowId),
    /// A new connection: enter it.
    Insert,
    /// A SYN reusing the ports of this finished connection: replace it.
    Replace(FlowId),
    /// No state: forwarded by the consistent hash; count the reason, if any.
    Stateless(Option<Counter>),
}

/// A decision not yet committed.
pub(super) struct Choice<'s> {
    pub(super) backend: &'s Backend,
    pub(super) op: FlowOp,
}

/// The real server of a client packet and what its flow entry needs, without changing any
/// live entry. `stateful`: this worker owns the connection (else no entry is read or made).
#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
pub(super) fn choose<'s>(
    key: &FlowKey,
    info: &L4Info,
    service_index: u32,
    svc: &'s Service,
    stateful: bool,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Result<Choice<'s>, Counter> {
    let hash = info.hash;
    if stateful {
        if let Some(hit) = w.flows.lookup(key, hash, now) {
            if hit.dir == Direction::Reply {
                // The packet's 5-tuple is another connection's reply key (a crafted or
                // unlucky client endpoint): never take it for that connection.
                return stateless(svc, snap, hash, Some(Counter::FlowKeyClash));
            }
            let closed = matches!(hit.state, TcpState::TimeWait | TcpState::Close);
            if closed && info.is_lone_syn() {
                // The client reuses the port of a finished connection: schedule afresh, as
                // IPVS does, instead of sending the new SYN into the old connection's leftovers.
                let backend = schedule(key, info, service_index, svc, w, snap, now)?;
                return Ok(Choice {
                    backend,
                    op: FlowOp::Replace(hit.id),
                });
            }
            return match snap.backend(hit.backend) {
                Some(backend) if backend.drop_flows => {
                    // Its real server failed its health checks and the service drops dead
                    // flows (IPVS expire_nodest_conn): the policy removes the entry, so the
                    // client's next SYN is scheduled to a live real server.
                    w.flows.remove(hit.id);
                    Err(Counter::DropRealServerDown)
                }
                Some(backend) => Ok(Choice {
                    backend,
                    op: FlowOp::Track(hit.id),
                }),
                None => {
                    // Dead state (its real server left the configuration): removing it is no
                    // decision about this packet.
                    w.flows.remove(hit.id);
                    Err(Counter::DropBackendGone)
                }
            };
        }
    }
    // Sloppy mode as configured (the snapshot) or forced on this worker (tests, fuzzing).
    let sloppy = snap.sloppy_tcp || w.sloppy_tcp;
    let may_create = info.tcp_flags.is_none() || sloppy || info.is_lone_syn();
    if !may_create {
        return stateless(svc, snap, hash, Some(Counter::TcpNoFlowStateless));
    }
    if !stateful {
        return stateless(svc, snap, hash, None);
    }
    let backend = schedule(key, info, service_index, svc, w, snap, now)?;
    Ok(Choice {
        backend,
        op: FlowOp::Insert,
    })
}

fn stateless<'s>(
    svc: &'s Service,
    snap: &'s Snapshot,
    hash: u64,
    why: Option<Counter>,
) -> Result<Choice<'s>, Counter> {
    Ok(Choice {
        backend: consistent(svc, snap, hash)?,
        op: FlowOp::Stateless(why),
    })
}

fn consistent<'s>(svc: &Service, snap: &'s Snapshot, hash: u64) -> Result<&'s Backend, Counter> {
    let id = svc.pick_consistent(hash).ok_or(Counter::DropNoBackend)?;
    snap.backend(id).ok_or(Counter::DropNoBackend)
}

/// The real server for a new connection: the service's scheduler, except for UDP in an
/// rr/wrr service while the table has recently been full. A UDP flow forwarded statelessly
/// (by the consistent hash) during the overflow must not be moved to what rr picks when room
/// comes back; as long as an overflow is more recent than the UDP timeout, new UDP entries
/// therefore take the consistent hash's choice too. (TCP needs no such rule: a segment that is
/// not a SYN never creates an entry.)
#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
fn schedule<'s>(
    key: &FlowKey,
    info: &L4Info,
    service_index: u32,
    svc: &Service,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Result<&'s Backend, Counter> {
    let udp_ms = u64::from(w.flows.timeouts().udp) * 1000;
    let overflow_recent = w
        .last_full_ms
        .is_some_and(|t| now < t.saturating_add(udp_ms));
    if key.proto == PROTO_UDP && overflow_recent {
        return consistent(svc, snap, info.hash);
    }
    let cursor = w
        .cursors
        .get_mut(service_index as usize)
        .ok_or(Counter::DropNoService)?;
    let id = svc.pick(info.hash, cursor).ok_or(Counter::DropNoBackend)?;
    snap.backend(id).ok_or(Counter::DropNoBackend)
}

/// Carry out the choice for a packet that goes out. Returns the real server it goes to: the
/// chosen one, or the consistent hash's when the insert finds no room or a key clash (the
/// caller then checks that one again before sending).
#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
pub(super) fn commit<'s>(
    choice: &Choice<'s>,
    key: &FlowKey,
    info: &L4Info,
    svc: &Service,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Result<&'s Backend, Counter> {
    match choice.op {
        FlowOp::Track(id) => {
            w.flows.track(id, Direction::Original, info.tcp_flags, now);
            Ok(choice.backend)
        }
        FlowOp::Stateless(why) => {
            if let Some(c) = why {
                w.counters.inc(c);
            }
            Ok(choice.backend)
        }
        FlowOp::Replace(old) => {
            w.flows.remove(old);
            insert(choice.backend, key, info, svc, w, snap, now)
        }
        FlowOp::Insert => insert(choice.backend, key, info, svc, w, snap, now),
    }
}

#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
fn insert<'s>(
    backend: &'s Backend,
    key: &FlowKey,
    info: &L4Info,
    svc: &Service,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Result<&'s Backend, Counter> {
    let reply = (backend.mode == FwdMode::Nat).then(|| {
        FlowKey::new(
            backend.addr,
            key.src_ip(),
            backend.port,
            key.src_port,
            key.proto,
        )
    });
    let reply_arg = reply.as_ref().map(|r| (r, r.hash()));
    match w.flows.insert(key, info.hash, reply_arg, backend.id, now) {
        Ok(fid) => {
            w.flows.track(fid, Direction::Original, info.tcp_flags, now);
            w.counters.inc(Counter::FlowsCreated);
            w.backends.count_new(backend.id);
            Ok(backend)
        }
        Err(InsertError::Full) => {
            // No room: forward statelessly with the consistent hash so every packet of this
            // flow still reaches the same real server. Existing entries are never evicted.
            w.last_full_ms = Some(now);
            w.counters.inc(Counter::FlowTableFull);
            consistent(svc, snap, info.hash)
        }
        Err(InsertError::Exists) => {
            w.counters.inc(Counter::FlowKeyClash);
            consistent(svc, snap, info.hash)
        }
    }
}
