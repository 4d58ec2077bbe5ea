//! The fast path's entry of a new connection against the general path's: two tables driven
//! by the same operations, one opening connections with `vacancy4`, `vacancy4_then` and `open4`, the other with
//! `insert_after_miss` and `track`, must hold the same slots, bit for bit, and count the same.

use super::super::super::cuckoo::Vacancy;
use super::super::super::slot::{NIL, WAYS};
use super::super::conns::Conns;
use super::super::tests::reply_of;
use super::super::*;
use crate::flow::key::{PROTO_TCP, PROTO_UDP};
use proptest::prelude::*;
use std::net::Ipv4Addr;

/// Connections each table takes; its index is smaller (`BUCKETS`), so that keys share
/// buckets, inserts move slots and some find no room.
const CAP: usize = 12;
const BUCKETS: usize = 8;

fn client(n: u8, udp: bool) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::new(10, 0, 0, n),
        Ipv4Addr::new(192, 0, 2, 1),
        1024 + u16::from(n),
        80,
        if udp { PROTO_UDP } else { PROTO_TCP },
    )
}

#[derive(Debug, Clone)]
enum Op {
    /// A new connection of `client(n, udp)` (NAT to real server `rs`, else DR), opened by its
    /// first packet: UDP or a lone SYN (`psh` adds a flag the state machine ignores).
    Open {
        n: u8,
        udp: bool,
        nat: bool,
        rs: u8,
        psh: bool,
    },
    /// A packet of `client(n, _)`'s connection, either direction, with TCP flags `bits`.
    Track {
        n: u8,
        udp: bool,
        reply: bool,
        bits: u8,
    },
    Remove {
        n: u8,
        udp: bool,
    },
    /// The clock moves by `ms` and the sweep runs.
    Wait {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..20, any::<bool>(), any::<bool>(), 0u8..3, any::<bool>())
            .prop_map(|(n, udp, nat, rs, psh)| Op::Open { n, udp, nat, rs, psh }),
        2 => (0u8..20, any::<bool>(), any::<bool>(), any::<u8>())
            .prop_map(|(n, udp, reply, bits)| Op::Track { n, udp, reply, bits }),
        1 => (0u8..20, any::<bool>()).prop_map(|(n, udp)| Op::Remove { n, udp }),
        1 => (0u32..200_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn table(stats: Option<&Arc<BackendStats>>) -> FlowTable {
    let mut t = FlowTable::with_capacity(CAP, Timeouts::default());
    t.v4 = Conns::with_buckets(CAP, BUCKETS);
    if let Some(s) = stats {
        t.count_connections_in(Arc::clone(s));
    }
    t
}

/// Every slot of the IPv4 index as raw fields; a free slot as `None` (nothing reads what a
/// cleared slot keeps, and an insert overwrites all of it).
#[allow(clippy::type_complexity)] // one tuple per slot, compared as a whole
fn slots(t: &FlowTable) -> Vec<Option<(u64, u32, u8, u8, u8, u8, u32, u32, u32, u32)>> {
    t.v4.idx
        .iter()
        .map(|(_, s)| {
            (!s.is_free()).then_some((
                s.addrs, s.ports, s.proto, s.state, s.bits, s.flags, s.expires, s.backend,
                s.partner, s.serial,
            ))
        })
        .collect()
}

/// What `vacancy4` and `vacancy4_then` answer, the long way: the general path's clash checks, then the free
/// slots `Cuckoo::insert` takes first (the original key's, then the reply key's).
fn reference_vacancy(
    t: &FlowTable,
    key: &Key<V4>,
    h: TableHash,
    reply: Option<&(Key<V4>, TableHash)>,
) -> Option<Vacancy> {
    let idx = &t.v4.idx;
    let clash = t.v4.len() >= t.v4.capacity()
        || idx.find(key, h).is_some()
        || reply.is_some_and(|(rk, rh)| rk == key || idx.find(rk, *rh).is_some());
    if clash {
        return None;
    }
    let free = |h: TableHash, taken: u32| {
        [idx.primary(h), idx.secondary(h)]
            .into_iter()
            .flat_map(|b| (0..WAYS as u32).map(move |w| b * WAYS as u32 + w))
            .find(|&p| p != taken && idx.slot(p).is_free())
            .unwrap_or(NIL)
    };
    let first = free(h, NIL);
    let then = reply.map_or(NIL, |(_, rh)| free(*rh, first));
    Some(Vacancy {
        moves: first == NIL || (reply.is_some() && then == NIL),
        first,
        then,
    })
}

/// The id of the connection `k` is the original key of, if any.
fn id_of(t: &mut FlowTable, k: &FlowKey, now: u64) -> Option<FlowId> {
    t.lookup(k, FlowTable::hash(k), now).map(|h| h.id)
}

proptest! {
    #[test]
    fn open4_makes_what_insert_after_miss_and_track_make(
        counted in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let (sf, sg) = (Arc::new(BackendStats::new(4)), Arc::new(BackendStats::new(4)));
        let (mut fast, mut general) = if counted {
            (table(Some(&sf)), table(Some(&sg)))
        } else {
            (table(None), table(None))
        };
        let mut now = 1_000u64;
        for op in ops {
            match op {
                Op::Open { n, udp, nat, rs, psh } => {
                    let k = client(n, udp);
                    let r = nat.then(|| reply_of(&k, rs));
                    let h = FlowTable::hash(&k);
                    let key = Key::<V4>::of(&k);
                    let reply = r.map(|r| (Key::<V4>::of(&r), FlowTable::hash(&r)));
                    let at = fast
                        .vacancy4(&key, h)
                        .and_then(|at| fast.vacancy4_then(at, &key, reply.as_ref()));
                    prop_assert_eq!(at, reference_vacancy(&general, &key, h, reply.as_ref()));
                    let Some(at) = at else {
                        continue;
                    };
                    let backend = u32::from(rs);
                    let flags = (!udp).then(|| TcpFlags::from_bits(if psh { 0x0a } else { 0x02 }));
                    let got = fast.open4(&key, h, reply, backend, now, at);
                    let Err(miss) = general.lookup_or_miss(&k, h, now) else {
                        return Err(TestCaseError::fail("a vacant key found"));
                    };
                    let want = general.insert_after_miss(&k, miss, || r, backend, now);
                    if let Ok(id) = want {
                        general.track(id, Direction::Original, flags, now);
                    }
                    prop_assert_eq!(got.is_ok(), want.is_ok());
                    prop_assert!(got.is_ok() || at.moves, "an insert without moves failed");
                }
                Op::Track { n, udp, reply, bits } => {
                    let k = client(n, udp);
                    let flags = (!udp).then(|| TcpFlags::from_bits(bits));
                    let dir = if reply { Direction::Reply } else { Direction::Original };
                    for t in [&mut fast, &mut general] {
                        if let Some(id) = id_of(t, &k, now) {
                            t.track(id, dir, flags, now);
                        }
                    }
                }
                Op::Remove { n, udp } => {
                    let k = client(n, udp);
                    for t in [&mut fast, &mut general] {
                        if let Some(id) = id_of(t, &k, now) {
                            t.remove(id);
                        }
                    }
                }
                Op::Wait { ms } => {
                    now += u64::from(ms);
                    fast.expire(now, 8);
                    general.expire(now, 8);
                }
            }
            prop_assert_eq!(slots(&fast), slots(&general));
            prop_assert_eq!(fast.counts(), general.counts());
            prop_assert_eq!(fast.len(), general.len());
            prop_assert_eq!(
                (fast.ctx.serial, fast.ctx.epoch),
                (general.ctx.serial, general.ctx.epoch)
            );
            for b in 0..4 {
                prop_assert_eq!(sf.get(b), sg.get(b));
            }
        }
        fast.check();
    }
}
