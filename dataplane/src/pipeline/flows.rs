//! Which real server a client packet goes to, decided in two steps so that a packet that is
//! then dropped leaves the flow table as it was: [`choose`] looks up (it only removes what
//! is already dead: expired entries, entries of real servers that left), [`commit`] creates,
//! advances or replaces the entry once the packet is known to go out.
//!
//! Without a flow entry the answer is always the service's consistent hash (Maglev; for `sh`
//! services their client hash table) when no new state may be created: a TCP segment that is not a lone SYN, a fragment decided away
//! from the connection's owner, a key clash, a full table. For rr/wrr services this means:
//! connections that start with a SYN while the table has room are spread by rr/wrr and
//! pinned by their entry; everything without an entry follows the Maglev table of the same
//! real servers, the same answer on every packet and every box.
//!
//! Persistence (`persist`) is consulted where the scheduler would be: a new connection of a
//! persistent service goes to its client network's real server while that one takes new
//! connections; the entry is made, refreshed or re-pointed in [`commit`], once the
//! connection is entered. Connections without an entry (stateless, table full) follow the
//! consistent hash as before: persistence needs state to hold.

use super::worker_state::scale;
use super::{Ctx, L4Info, WorkerState};
use crate::counters::{Counter, DropReason};
use crate::flow::hash::owner_hash;
use crate::flow::key::{to_mapped, PROTO_UDP};
use crate::flow::{Direction, FlowHit, FlowId, FlowKey, InsertError, Miss, TcpState};
use crate::sched::NewConn;
use crate::snapshot::{mask_key, Backend, FwdMode, Service, Snapshot};

/// What [`commit`] does to the flow table.
#[derive(Clone, Copy, Debug)]
pub(super) enum FlowOp {
    /// The packet belongs to this live entry: advance its state.
    Track(FlowId),
    /// A new connection: enter it (the lookup's miss spares the insert a second search).
    Insert(Miss),
    /// A new connection the table refuses as full (see `FlowTable::refuses_new`): count it and
    /// forward by the consistent hash (the choice). Stage 3 handles one frame between the
    /// decision and the commit, so the table cannot gain room in between today; `commit`
    /// asks again anyway and enters the connection (with the consistent hash's real server)
    /// if it did, so a future caller that frees entries in between stays correct.
    Full(Miss),
    /// A SYN reusing the ports of this finished connection: replace it.
    Replace(FlowId),
    /// No state: forwarded by the consistent hash; count the reason, if any.
    Stateless(Option<Counter>),
}

/// What [`commit`] does to the persistence table once the connection is entered.
#[derive(Clone, Copy, Debug)]
pub(super) enum PersistOp {
    /// Not a persistent service, or no new connection.
    None,
    /// The client network's entry chose the real server: it lives `expires_ms` more.
    Refresh { slot: usize, expires_ms: u64 },
    /// The entry's real server could not take the connection (drained, down, gone, over its
    /// threshold): the scheduler's choice replaces it.
    Repoint { slot: usize, expires_ms: u64 },
    /// No entry: the scheduler's choice makes one (its key is made again from the
    /// connection's at commit: a `Choice` stays small).
    Insert { hash: u64, expires_ms: u64 },
}

/// IPVS's template key of a connection's client network: masked address, port 0, the
/// virtual service.
#[inline]
fn persistence_key(key: &FlowKey, bits: u8) -> FlowKey {
    FlowKey {
        src: mask_key(&key.src, bits),
        dst: key.dst,
        src_port: 0,
        dst_port: key.dst_port,
        proto: key.proto,
    }
}

/// A decision not yet committed.
pub(super) struct Choice<'s> {
    pub(super) backend: &'s Backend,
    pub(super) op: FlowOp,
    pub(super) persist: PersistOp,
}

/// The real server of a client packet and what its flow entry needs, without changing any
/// live entry. `stateful`: this worker owns the connection (else no entry is read or made).
pub(super) fn choose<'s>(
    key: &FlowKey,
    info: &L4Info,
    service_index: u32,
    svc: &'s Service,
    stateful: bool,
    cx: &mut Ctx<'_, 's>,
) -> Result<Choice<'s>, DropReason> {
    let (snap, now) = (cx.snap, cx.now);
    let mut miss = None;
    if stateful {
        match cx.w.flows.lookup_or_miss(key, info.table, now) {
            Ok(hit) => return chosen(hit, key, info, service_index, svc, cx),
            Err(m) => miss = Some(m),
        }
    }
    // Sloppy mode as configured (the snapshot) or forced on this worker (tests, fuzzing).
    let sloppy = snap.sloppy_tcp || cx.w.sloppy_tcp;
    let may_create = info.tcp_flags.is_none() || sloppy || info.is_lone_syn();
    if !may_create {
        return stateless(
            svc,
            snap,
            key,
            info.maglev(svc, key),
            Some(Counter::TcpNoFlowStateless),
        );
    }
    let Some(miss) = miss else {
        return stateless(svc, snap, key, info.maglev(svc, key), None);
    };
    if cx.w.flows.refuses_new(key, now) {
        // A SYN flood into a full table: the insert will be refused and the packet go by the
        // consistent hash, so ask no scheduler (an rr cursor moves only for entered
        // connections) and check one real server, not the scheduler's and then this one.
        return Ok(Choice {
            backend: consistent(svc, snap, key, info.maglev(svc, key))?,
            op: FlowOp::Full(miss),
            persist: PersistOp::None,
        });
    }
    let (backend, persist) = schedule(key, info, service_index, svc, cx)?;
    Ok(Choice {
        backend,
        op: FlowOp::Insert(miss),
        persist,
    })
}

/// [`choose`] for a packet whose key the table holds (`hit`).
fn chosen<'s>(
    hit: FlowHit,
    key: &FlowKey,
    info: &L4Info,
    service_index: u32,
    svc: &'s Service,
    cx: &mut Ctx<'_, 's>,
) -> Result<Choice<'s>, DropReason> {
    let snap = cx.snap;
    if hit.dir == Direction::Reply {
        // The packet's 5-tuple is another connection's reply key (a crafted or
        // unlucky client endpoint): never take it for that connection.
        return stateless(
            svc,
            snap,
            key,
            info.maglev(svc, key),
            Some(Counter::FlowKeyClash),
        );
    }
    let closed = matches!(hit.state, TcpState::TimeWait | TcpState::Close);
    if closed && info.is_lone_syn() {
        // The client reuses the port of a finished connection: schedule afresh, as
        // IPVS does, instead of sending the new SYN into the old connection's leftovers.
        let (backend, persist) = schedule(key, info, service_index, svc, cx)?;
        return Ok(Choice {
            backend,
            op: FlowOp::Replace(hit.id),
            persist,
        });
    }
    match snap.backend(hit.backend) {
        Some(backend) if backend.drop_flows => {
            // Its real server failed its health checks and the service drops dead
            // flows (IPVS expire_nodest_conn): the policy removes the entry, so the
            // client's next SYN is scheduled to a live real server.
            cx.w.flows.remove(hit.id);
            Err(DropReason::RealServerDown)
        }
        Some(backend) => Ok(Choice {
            backend,
            op: FlowOp::Track(hit.id),
            persist: PersistOp::None,
        }),
        None => {
            // Dead state (its real server left the configuration): removing it is no
            // decision about this packet.
            cx.w.flows.remove(hit.id);
            Err(DropReason::BackendGone)
        }
    }
}

fn stateless<'s>(
    svc: &'s Service,
    snap: &'s Snapshot,
    key: &FlowKey,
    hash: u64,
    why: Option<Counter>,
) -> Result<Choice<'s>, DropReason> {
    Ok(Choice {
        backend: consistent(svc, snap, key, hash)?,
        op: FlowOp::Stateless(why),
        persist: PersistOp::None,
    })
}

/// The real server of a connection without state: the same for every packet of it, on every
/// box (`Service::pick_stateless`).
fn consistent<'s>(
    svc: &Service,
    snap: &'s Snapshot,
    key: &FlowKey,
    hash: u64,
) -> Result<&'s Backend, DropReason> {
    let id = svc.pick_stateless(key, hash).ok_or(DropReason::NoBackend)?;
    snap.backend(id).ok_or(DropReason::NoBackend)
}

/// The real server for a new connection: its client network's persistence entry when the
/// service is persistent and the entry's real server takes new connections, else the
/// service's scheduler; and what the persistence table is to do at commit.
///
/// Except for UDP in an rr/wrr service while the table has recently been full. A UDP flow
/// forwarded statelessly (by the consistent hash) during the overflow must not be moved to
/// what rr picks when room comes back; as long as an overflow is more recent than the UDP
/// timeout, new UDP entries therefore take the consistent hash's choice too (persistence
/// aside). (TCP needs no such rule: a segment that is not a SYN never creates an entry.)
// Once per new connection, with every scheduler and the persistence table behind it: kept
// out of the burst loop it would otherwise be inlined into, where it would lengthen the
// established path's code.
#[inline(never)]
fn schedule<'s>(
    key: &FlowKey,
    info: &L4Info,
    service_index: u32,
    svc: &Service,
    cx: &mut Ctx<'_, 's>,
) -> Result<(&'s Backend, PersistOp), DropReason> {
    let (snap, now) = (cx.snap, cx.now);
    if key.proto == PROTO_UDP && udp_overflow_recent(cx.w, now) {
        return Ok((
            consistent(svc, snap, key, info.maglev(svc, key))?,
            PersistOp::None,
        ));
    }
    let persist = match svc.persistence {
        None => PersistOp::None,
        Some(p) => {
            let pkey = persistence_key(key, p.bits);
            let phash = pkey.hash();
            let expires_ms = now.saturating_add(p.timeout_ms);
            match cx.w.persistence.lookup(&pkey, phash, now) {
                Some((slot, id)) => match snap.backend(id) {
                    Some(b) if b.service == service_index && svc.takes_new(b, &cx.w.load) => {
                        return Ok((b, PersistOp::Refresh { slot, expires_ms }));
                    }
                    _ => PersistOp::Repoint { slot, expires_ms },
                },
                None => PersistOp::Insert {
                    hash: phash,
                    expires_ms,
                },
            }
        }
    };
    let cursor =
        cx.w.cursors
            .get_mut(service_index as usize)
            .ok_or(DropReason::NoService)?;
    let conn = NewConn {
        hash: info.maglev(svc, key),
        client: &key.src,
        client_port: key.src_port,
    };
    let id = svc.pick(&conn, cursor, &cx.w.load).ok_or(
        // Real servers that could take it, all over their thresholds (or, for sh without
        // sh-fallback, the client's own).
        if svc.limits.is_empty() {
            DropReason::NoBackend
        } else {
            DropReason::RealServersOverloaded
        },
    )?;
    Ok((snap.backend(id).ok_or(DropReason::NoBackend)?, persist))
}

/// Whether the table was full more recently than the UDP timeout: new UDP flows then take
/// the consistent hash's real server (see [`schedule`]).
#[inline]
pub(super) fn udp_overflow_recent(w: &WorkerState, now: u64) -> bool {
    let udp_ms = u64::from(w.flows.timeouts().udp) * 1000;
    w.last_full_ms
        .is_some_and(|t| now < t.saturating_add(udp_ms))
}

/// The persistence part of a committed new connection (`key`) of `svc` to `backend`.
fn commit_persistence(
    op: PersistOp,
    backend: u32,
    key: &FlowKey,
    svc: &Service,
    w: &mut WorkerState,
    now: u64,
) {
    match op {
        PersistOp::None => {}
        PersistOp::Refresh { slot, expires_ms } => {
            w.persistence.refresh(slot, expires_ms);
            w.counters.inc(Counter::PersistenceHits);
        }
        PersistOp::Repoint { slot, expires_ms } => {
            w.persistence.repoint(slot, backend, expires_ms);
            w.counters.inc(Counter::PersistenceMoved);
        }
        PersistOp::Insert { hash, expires_ms } => {
            let Some(p) = svc.persistence else {
                return;
            };
            let pkey = persistence_key(key, p.bits);
            // A full table first sweeps the key's neighbourhood of expired entries.
            if !w.persistence.insert(&pkey, hash, backend, expires_ms, now) {
                w.counters.inc(Counter::PersistenceTableFull);
            }
        }
    }
}

/// Carry out the choice for a packet that goes out. Returns the real server it goes to: the
/// chosen one, or the consistent hash's when the insert finds no room or a key clash (the
/// caller then checks that one again before sending); and the connection when the packet
/// has one (entered or tracked; full-NAT's rewrite reads its reply key).
pub(super) fn commit<'s>(
    choice: &Choice<'s>,
    key: &FlowKey,
    info: &L4Info,
    svc: &Service,
    cx: &mut Ctx<'_, 's>,
) -> Result<(&'s Backend, Option<FlowId>), DropReason> {
    let now = cx.now;
    match choice.op {
        FlowOp::Track(id) => {
            cx.w.flows
                .track(id, Direction::Original, info.tcp_flags, now);
            Ok((choice.backend, Some(id)))
        }
        FlowOp::Stateless(why) => {
            if let Some(c) = why {
                cx.w.counters.inc(c);
            }
            Ok((choice.backend, None))
        }
        FlowOp::Replace(old) => {
            cx.w.flows.remove(old);
            insert(choice, None, key, info, svc, cx)
        }
        FlowOp::Full(miss) => {
            if cx.w.flows.refuse_full(key, now) {
                full(cx.w, now);
                Ok((choice.backend, None))
            } else {
                insert(choice, Some(miss), key, info, svc, cx)
            }
        }
        FlowOp::Insert(miss) => insert(choice, Some(miss), key, info, svc, cx),
    }
}

/// Enters the connection to the choice's real server, and then what its persistence entry
/// needs; `miss`: the lookup of `key` that found nothing (none after a `Replace`, whose lookup
/// hit the entry it removed).
fn insert<'s>(
    choice: &Choice<'s>,
    miss: Option<Miss>,
    key: &FlowKey,
    info: &L4Info,
    svc: &Service,
    cx: &mut Ctx<'_, 's>,
) -> Result<(&'s Backend, Option<FlowId>), DropReason> {
    let (snap, now) = (cx.snap, cx.now);
    let backend = choice.backend;
    if backend.mode == FwdMode::Fnat {
        return insert_fnat(choice, miss, key, info, svc, cx);
    }
    // Built (and hashed, by the table) only when the table can take the connection: a SYN
    // flood into a full table is refused before either.
    // The client's address is copied as stored: no round trip through `IpAddr`.
    let reply = || {
        (backend.mode == FwdMode::Nat).then(|| FlowKey {
            src: to_mapped(backend.addr),
            dst: key.src,
            src_port: backend.port,
            dst_port: key.src_port,
            proto: key.proto,
        })
    };
    let inserted = match miss {
        Some(miss) => {
            cx.w.flows
                .insert_after_miss(key, miss, reply, backend.id, now)
        }
        None => {
            let reply = reply();
            let reply_arg = reply.as_ref().map(|r| (r, crate::flow::FlowTable::hash(r)));
            cx.w.flows
                .insert(key, info.table, reply_arg, backend.id, now)
        }
    };
    match inserted {
        Ok(fid) => {
            cx.w.flows
                .track(fid, Direction::Original, info.tcp_flags, now);
            cx.w.counters.inc(Counter::FlowsCreated);
            cx.w.backends.count_new(backend.id);
            commit_persistence(choice.persist, backend.id, key, svc, cx.w, now);
            Ok((backend, Some(fid)))
        }
        Err(InsertError::Full) => {
            full(cx.w, now);
            Ok((consistent(svc, snap, key, info.maglev(svc, key))?, None))
        }
        Err(InsertError::Exists) => {
            cx.w.counters.inc(Counter::FlowKeyClash);
            Ok((consistent(svc, snap, key, info.maglev(svc, key))?, None))
        }
        // Only full-NAT's search gives it.
        Err(InsertError::NoReplyKey) => Err(DropReason::FnatPoolExhausted),
    }
}

/// Candidates a full-NAT insert tries at most: bounds the work a new connection does
/// when its pool is (nearly) exhausted.
const FNAT_TRIES: u32 = 1024;

/// [`insert`] for a full-NAT real server: the reply key (real server -> local address and
/// port) is the first of the pool's endpoints, from the worker's rotating cursor on, that
/// (a) this worker owns under the steering rule, `owner_hash(local address, local port)`,
/// so the replies, steered by their destination endpoint like every NAT reply, come back to
/// this worker, and (b) no live connection holds towards this real server (the flow table is
/// the allocator: an endpoint is free once its connection left the table). None free:
/// `drop_fnat_pool_exhausted`, the packet is dropped, no live connection is touched.
#[inline(never)]
fn insert_fnat<'s>(
    choice: &Choice<'s>,
    miss: Option<Miss>,
    key: &FlowKey,
    info: &L4Info,
    svc: &Service,
    cx: &mut Ctx<'_, '_>,
) -> Result<(&'s Backend, Option<FlowId>), DropReason> {
    let now = cx.now;
    let backend = choice.backend;
    let pool = &svc.local_pool;
    let tries = pool.size().min(FNAT_TRIES);
    let start = cx.w.fnat_cursor;
    let (index, n_workers) = (cx.w.index, cx.w.n_workers);
    let rs = to_mapped(backend.addr);
    let candidate = |i: u32| {
        let (addr, port) = pool.nth(start.wrapping_add(i))?;
        let ours = n_workers < 2 || scale(owner_hash(&addr, port), n_workers) == index;
        ours.then_some(FlowKey {
            src: rs,
            dst: addr,
            src_port: backend.port,
            dst_port: port,
            proto: key.proto,
        })
    };
    let inserted =
        cx.w.flows
            .insert_searching(key, info.table, miss, candidate, tries, backend.id, now);
    match inserted {
        Ok((fid, i)) => {
            cx.w.fnat_cursor = start.wrapping_add(i).wrapping_add(1);
            cx.w.flows
                .track(fid, Direction::Original, info.tcp_flags, now);
            cx.w.counters.inc(Counter::FlowsCreated);
            cx.w.backends.count_new(backend.id);
            commit_persistence(choice.persist, backend.id, key, svc, cx.w, now);
            Ok((backend, Some(fid)))
        }
        Err(InsertError::NoReplyKey) => {
            cx.w.fnat_cursor = start.wrapping_add(tries);
            Err(DropReason::FnatPoolExhausted)
        }
        Err(InsertError::Full) => {
            full(cx.w, now);
            Err(DropReason::FnatNoFlow)
        }
        Err(InsertError::Exists) => {
            cx.w.counters.inc(Counter::FlowKeyClash);
            Err(DropReason::FnatNoFlow)
        }
    }
}

/// No room: the packet goes statelessly by the consistent hash so every packet of its flow
/// still reaches the same real server. Existing entries are never evicted.
pub(super) fn full(w: &mut WorkerState, now: u64) {
    w.last_full_ms = Some(now);
    w.counters.inc(Counter::FlowTableFull);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use super::*;
    use crate::flow::{FlowTable, TcpFlags, Timeouts};
    use crate::sched::SchedulerKind;
    use crate::snapshot::{BackendSpec, PortInfo, ServiceSpec};
    use crate::wire::MacAddr;
    use std::net::{IpAddr, Ipv4Addr};

    fn syn(n: u16) -> (FlowKey, L4Info) {
        let vip = Ipv4Addr::new(10, 100, 0, 1);
        let key = FlowKey::v4(Ipv4Addr::new(192, 0, 2, 7), vip, 1024 + n, 80, 6);
        let info = L4Info {
            table: FlowTable::hash(&key),
            maglev: None,
            tcp_flags: Some(TcpFlags::from_bits(0x02)),
            tcp_bits: 0x02,
        };
        (key, info)
    }

    /// Choose, then commit: the backend the packet goes to and the op chosen.
    fn send(w: &mut WorkerState, snap: &Snapshot, n: u16, now: u64) -> (u32, FlowOp) {
        let (key, info) = syn(n);
        let svc = &snap.services[0];
        let mut cx = Ctx {
            w,
            snap,
            rx_port: 0,
            now,
        };
        let choice = choose(&key, &info, 0, svc, true, &mut cx).unwrap();
        let (backend, _) = commit(&choice, &key, &info, svc, &mut cx).unwrap();
        (backend.id, choice.op)
    }

    #[test]
    fn a_syn_into_a_refusing_table_asks_no_scheduler() {
        let backends = (0..3)
            .map(|i| BackendSpec {
                id: i,
                addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1 + i as u8)),
                port: 8080,
                mode: FwdMode::Nat,
                ..Default::default()
            })
            .collect();
        let service = ServiceSpec {
            vip: IpAddr::V4(Ipv4Addr::new(10, 100, 0, 1)),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends,
            ..Default::default()
        };
        // Every real server behind the port's gateway.
        let gateway = Ipv4Addr::new(10, 0, 0, 1);
        let port = PortInfo {
            ipv4: Some("10.0.0.10/16".parse().unwrap()),
            gateway_v4: Some(gateway),
            ..Default::default()
        };
        let neighbours = [(IpAddr::V4(gateway), MacAddr([2, 0, 0, 0, 0, 1]))].into();
        let snap = Snapshot::build(1, vec![port], &[service], &neighbours, 251).unwrap();
        let mut w = WorkerState::new(0, 1, FlowTable::with_capacity(1, Timeouts::default()), 4);
        assert!(matches!(send(&mut w, &snap, 0, 0).1, FlowOp::Insert(_)));
        // The table is full; this insert's reclaim scan comes up dry (scheduled, then refused).
        assert!(matches!(send(&mut w, &snap, 1, 0).1, FlowOp::Insert(_)));
        let cursor = w.cursors[0];
        for n in 2..10 {
            let (got, op) = send(&mut w, &snap, n, 0);
            assert!(matches!(op, FlowOp::Full(_)), "{n}: {op:?}");
            let want = snap.services[0].pick_consistent(syn(n).0.hash()).unwrap();
            assert_eq!(got, want, "{n}: the consistent hash's real server");
        }
        assert_eq!(w.cursors[0], cursor, "no rr pick for a refused SYN");
        assert_eq!(w.counters.get(Counter::FlowTableFull), 9);
        assert_eq!((w.flows.counts().insert_full, w.flows.len()), (9, 1));
        assert_eq!(w.last_full_ms, Some(0));
        // The clock moved: the next SYN is scheduled and tries the table again.
        assert!(matches!(send(&mut w, &snap, 10, 1).1, FlowOp::Insert(_)));
        assert_eq!(w.flows.counts().insert_full, 10);
    }
}
