//! The flow table's tests: structure invariants, expiry, churn, a model check.

use super::*;
use crate::flow::key::{PROTO_TCP, PROTO_UDP};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

impl<A: crate::flow::slot::Addrs> conns::Conns<A> {
    /// Test support: checks every structural invariant, panicking on the first violation.
    fn check(&self) {
        use crate::flow::slot::{PAIRED, REFRESH_ONLY};
        let mut originals = 0;
        for (pos, s) in self.idx.iter() {
            if s.is_free() {
                continue;
            }
            assert!(self.idx.placed_right(pos), "slot {pos} in a wrong bucket");
            assert_eq!(
                self.idx.find(&s.key(), s.key().hash()),
                Some(pos),
                "slot {pos} shadowed"
            );
            if !s.is_reply() {
                originals += 1;
            }
            let want = super::conns::refresh_flag(
                s.proto,
                TcpState::from_u8(s.state),
                s.bits,
                s.is_reply(),
            );
            assert_eq!(s.flags & REFRESH_ONLY, want, "slot {pos}: refresh flag");
            if s.flags & PAIRED != 0 {
                let p = self.idx.slot(s.partner);
                assert!(!p.is_free(), "slot {pos}: partner {} free", s.partner);
                assert_eq!(p.partner, pos, "slot {pos}: partner points elsewhere");
                assert_eq!(
                    (p.serial, p.state, p.bits),
                    (s.serial, s.state, s.bits),
                    "slot {pos}: partner differs"
                );
                assert_ne!(
                    p.is_reply(),
                    s.is_reply(),
                    "slot {pos}: two keys of one direction"
                );
            } else {
                assert!(
                    !s.is_reply(),
                    "slot {pos}: a reply key without its original"
                );
            }
        }
        assert_eq!(originals, self.len(), "connections counted");
    }
}

impl FlowTable {
    /// Test support: checks every structural invariant of both families.
    pub(super) fn check(&self) {
        self.v4.check();
        self.v6.check();
    }
}

const SEC: u64 = 1000;

fn client(n: u32, proto: u8) -> FlowKey {
    FlowKey::v4(
        Ipv4Addr::from(0x0a00_0000 + n),
        Ipv4Addr::new(192, 0, 2, 1),
        1024 + (n % 50000) as u16,
        80,
        proto,
    )
}

/// The NAT reply key of `client(n)` towards real server 10.1.0.x:8080.
pub(super) fn reply_of(k: &FlowKey, rs: u8) -> FlowKey {
    FlowKey::new(
        Ipv4Addr::new(10, 1, 0, rs).into(),
        k.src_ip(),
        8080,
        k.src_port,
        k.proto,
    )
}

fn tcp(bits: u8) -> Option<TcpFlags> {
    Some(TcpFlags::from_bits(bits))
}

fn ins(
    t: &mut FlowTable,
    k: &FlowKey,
    reply: Option<&FlowKey>,
    backend: u32,
    now: u64,
) -> Result<FlowId, InsertError> {
    t.insert(
        k,
        FlowTable::hash(k),
        reply.map(|r| (r, FlowTable::hash(r))),
        backend,
        now,
    )
}

fn look(t: &mut FlowTable, k: &FlowKey, now: u64) -> Option<FlowHit> {
    t.lookup(k, FlowTable::hash(k), now)
}

#[test]
fn insert_and_lookup_both_directions() {
    let mut t = FlowTable::with_capacity(16, Timeouts::default());
    let k = client(1, PROTO_TCP);
    let r = reply_of(&k, 7);
    let id = ins(&mut t, &k, Some(&r), 42, 0).unwrap();
    let hit = look(&mut t, &k, 1).unwrap();
    assert_eq!(
        (hit.id, hit.backend, hit.dir, hit.state),
        (id, 42, Direction::Original, TcpState::SynRecv)
    );
    let hit = look(&mut t, &r, 1).unwrap();
    assert_eq!((hit.id, hit.backend, hit.dir), (id, 42, Direction::Reply));
    assert!(look(&mut t, &k.reversed(), 1).is_none());
    // A DR connection has no reply key.
    let k2 = client(2, PROTO_UDP);
    let id2 = ins(&mut t, &k2, None, 3, 0).unwrap();
    assert_eq!(
        look(&mut t, &k2, 1).map(|h| (h.id, h.state)),
        Some((id2, TcpState::None))
    );
    assert!(look(&mut t, &reply_of(&k2, 7), 1).is_none());
    // Shared state: tracking via the reply key is seen via the original key.
    t.track(id, Direction::Reply, tcp(0x12), 2);
    t.track(id, Direction::Original, tcp(0x10), 2);
    assert_eq!(look(&mut t, &r, 3).unwrap().state, TcpState::Established);
    let mut listed: Vec<_> = t.iter(3).collect();
    listed.sort_by_key(|i| i.key.src);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].reply, Some(r));
    assert_eq!(listed[0].remaining_ms, 900 * SEC - 1);
    assert_eq!(listed[1].reply, None);
    assert_eq!(t.counts().inserts, 2);
    t.check();
    // Removing drops both keys; the id goes stale.
    t.remove(id);
    assert!(look(&mut t, &k, 4).is_none() && look(&mut t, &r, 4).is_none());
    assert_eq!(
        t.track(id, Direction::Original, tcp(0x10), 4),
        TcpState::Close
    );
    t.remove(id);
    assert_eq!((t.len(), t.counts().removed), (1, 1));
    t.check();
}

#[test]
fn connections_counted_per_backend_through_their_life() {
    let stats = Arc::new(BackendStats::new(8));
    let mut t = FlowTable::with_capacity(16, Timeouts::default());
    t.count_connections_in(Arc::clone(&stats));
    let conns = |b| {
        let c = stats.get(b);
        (c.active, c.inactive)
    };
    let k = client(1, PROTO_TCP);
    let id = ins(&mut t, &k, None, 3, 0).unwrap();
    assert_eq!(conns(3), (0, 1), "a SYN_RECV connection is inactive");
    t.track(id, Direction::Original, tcp(0x02), 1);
    assert_eq!(conns(3), (0, 1));
    t.track(id, Direction::Original, tcp(0x10), 2);
    assert_eq!(conns(3), (1, 0), "established: active");
    t.track(id, Direction::Original, tcp(0x11), 3);
    assert_eq!(conns(3), (0, 1), "closing: inactive again");
    let u = client(2, PROTO_UDP);
    ins(&mut t, &u, None, 3, 0).unwrap();
    assert_eq!(conns(3), (0, 2), "UDP flows are inactive");
    t.remove(id);
    assert_eq!(conns(3), (0, 1));
    // Expiry (the sweep) gives the count back too.
    t.expire(3_600_000, 64);
    assert_eq!((t.len(), conns(3)), (0, (0, 0)));
    // So does a lookup that finds the connection expired.
    let id = ins(&mut t, &k, None, 5, 0).unwrap();
    t.track(id, Direction::Original, tcp(0x10), 0);
    assert_eq!(conns(5), (1, 0));
    assert!(look(&mut t, &k, 3_600_000).is_none());
    assert_eq!(conns(5), (0, 0));
    t.check();
}

#[test]
fn a_retransmitted_syn_without_any_reply_is_the_step3_symptom() {
    let stats = Arc::new(BackendStats::new(8));
    let mut t = FlowTable::with_capacity(16, Timeouts::default());
    t.count_connections_in(Arc::clone(&stats));
    let syn = tcp(0x02);
    // NAT, no reply ever: counted once, however many retransmissions.
    let k = client(1, PROTO_TCP);
    let id = ins(&mut t, &k, Some(&reply_of(&k, 1)), 1, 0).unwrap();
    t.track(id, Direction::Original, syn, 0);
    assert_eq!(stats.get(1).step3_missing, 0, "the first SYN is no symptom");
    t.track(id, Direction::Original, syn, 1000);
    t.track(id, Direction::Original, syn, 3000);
    assert_eq!(stats.get(1).step3_missing, 1);
    // NAT with the SYN-ACK back through us, then a SYN: not the symptom.
    let k = client(2, PROTO_TCP);
    let id = ins(&mut t, &k, Some(&reply_of(&k, 2)), 2, 0).unwrap();
    t.track(id, Direction::Original, syn, 0);
    t.track(id, Direction::Reply, tcp(0x12), 1);
    t.track(id, Direction::Original, syn, 1000);
    assert_eq!(stats.get(2).step3_missing, 0);
    // DR: replies never come back, by design.
    let k = client(3, PROTO_TCP);
    let id = ins(&mut t, &k, None, 3, 0).unwrap();
    t.track(id, Direction::Original, syn, 0);
    t.track(id, Direction::Original, syn, 1000);
    assert_eq!(stats.get(3).step3_missing, 0);
}

#[test]
fn duplicate_keys_are_refused_and_leave_nothing() {
    let mut t = FlowTable::with_capacity(16, Timeouts::default());
    let k = client(1, PROTO_TCP);
    let r = reply_of(&k, 1);
    ins(&mut t, &k, Some(&r), 1, 0).unwrap();
    assert_eq!(ins(&mut t, &k, None, 2, 0), Err(InsertError::Exists));
    // A new connection whose reply key clashes with an existing one's.
    let k2 = client(2, PROTO_TCP);
    assert_eq!(ins(&mut t, &k2, Some(&r), 2, 0), Err(InsertError::Exists));
    // ...or with its own original key.
    assert_eq!(ins(&mut t, &k2, Some(&k2), 2, 0), Err(InsertError::Exists));
    assert!(look(&mut t, &k2, 0).is_none());
    assert_eq!((t.len(), t.counts().insert_exists), (1, 3));
    t.check();
    // An expired holder of the key does not block: it is removed.
    assert!(ins(&mut t, &k2, Some(&r), 2, 61 * SEC).is_ok());
    assert_eq!((t.len(), t.counts().expired), (1, 1));
    t.check();
}

#[test]
fn full_table_refuses_and_stays_consistent() {
    let cap = 64;
    let mut t = FlowTable::with_capacity(cap, Timeouts::default());
    let keys: Vec<_> = (0..cap as u32 + 1).map(|n| client(n, PROTO_TCP)).collect();
    let mut ids = Vec::new();
    for k in &keys[..cap] {
        ids.push(ins(&mut t, k, Some(&reply_of(k, 1)), 1, 0).unwrap());
    }
    assert_eq!(
        ins(&mut t, &keys[cap], Some(&reply_of(&keys[cap], 1)), 1, 0),
        Err(InsertError::Full)
    );
    assert_eq!(ins(&mut t, &keys[cap], None, 1, 0), Err(InsertError::Full));
    assert_eq!((t.len(), t.counts().insert_full), (cap, 2));
    assert!(look(&mut t, &keys[cap], 0).is_none());
    t.check();
    for k in &keys[..cap] {
        assert!(look(&mut t, k, 0).is_some() && look(&mut t, &reply_of(k, 1), 0).is_some());
    }
    t.remove(ids[10]);
    assert!(ins(&mut t, &keys[cap], Some(&reply_of(&keys[cap], 1)), 1, 0).is_ok());
    t.check();
    // Full of expired connections: an insert reclaims one.
    let late = 61 * SEC;
    assert!(ins(&mut t, &keys[10], None, 1, late).is_ok());
    assert_eq!(t.counts().expired, 1);
    t.check();
}

#[test]
fn a_dry_reclaim_scan_waits_for_the_clock() {
    // TCP connections (60 s) at 0; those in the first RECLAIM_SCAN slots are refreshed at
    // 30 s into ESTABLISHED (900 s): at 61 s the first scan from the cursor finds nothing
    // due, while due ones lie beyond it.
    let cap = 600;
    let mut t = FlowTable::with_capacity(cap, Timeouts::default());
    let ids: Vec<_> = (0..cap as u32)
        .map(|n| ins(&mut t, &client(n, PROTO_TCP), None, 1, 0).unwrap())
        .collect();
    let early: Vec<u32> =
        t.v4.idx
            .iter()
            .take(conns::RECLAIM_SCAN)
            .filter(|(_, s)| !s.is_free())
            .map(|(_, s)| s.serial)
            .collect();
    assert!(!early.is_empty() && early.len() < cap);
    for id in &ids {
        if early.contains(&id.serial()) {
            t.track(*id, Direction::Original, tcp(0x10), 30 * SEC);
        }
    }
    let (k1, k2) = (client(1000, PROTO_TCP), client(1001, PROTO_TCP));
    let now = 61 * SEC;
    assert_eq!(ins(&mut t, &k1, None, 1, now), Err(InsertError::Full));
    // The same millisecond: no second scan (it would have reached the due connections).
    assert_eq!(ins(&mut t, &k1, None, 1, now), Err(InsertError::Full));
    assert_eq!(t.counts().expired, 0);
    // The clock moved: the scan goes on from where the dry one stopped.
    assert!(ins(&mut t, &k1, None, 1, now + 1).is_ok());
    assert_eq!(t.counts().expired, 1);
    // A reclaim that succeeded does not hold the next one back.
    assert!(ins(&mut t, &k2, None, 1, now + 1).is_ok());
    assert_eq!((t.counts().expired, t.len()), (2, cap));
    t.check();
}

#[test]
fn a_refusing_table_says_full_before_looking_at_keys() {
    let cap = 16;
    let mut t = FlowTable::with_capacity(cap, Timeouts::default());
    let keys: Vec<_> = (0..cap as u32 + 1).map(|n| client(n, PROTO_TCP)).collect();
    for k in &keys[..cap] {
        ins(&mut t, k, Some(&reply_of(k, 1)), 1, 0).unwrap();
    }
    // Full, but no reclaim has come up dry yet: a clash is still a clash.
    assert!(!t.refuses_new(&keys[0], 0));
    assert_eq!(ins(&mut t, &keys[3], None, 1, 0), Err(InsertError::Exists));
    assert_eq!((t.counts().insert_exists, t.counts().insert_full), (1, 0));
    // The first new key finds no room; the reclaim scan comes up dry at 0 ms.
    assert_eq!(ins(&mut t, &keys[cap], None, 1, 0), Err(InsertError::Full));
    assert!(t.refuses_new(&keys[0], 0) && !t.refuses_new(&keys[0], 1));
    // Refusing now: the clashing key is refused as full (no index search), and a NAT insert
    // after a miss neither builds nor hashes its reply key.
    assert_eq!(ins(&mut t, &keys[3], None, 1, 0), Err(InsertError::Full));
    let Err(miss) = t.lookup_or_miss(&keys[cap], FlowTable::hash(&keys[cap]), 0) else {
        panic!("a new key")
    };
    let got = t.insert_after_miss(&keys[cap], miss, || panic!("reply key built"), 1, 0);
    assert_eq!(got, Err(InsertError::Full));
    assert_eq!(
        (t.counts().insert_exists, t.counts().insert_full, t.len()),
        (1, 3, cap)
    );
    t.check();
    for k in &keys[..cap] {
        assert!(look(&mut t, k, 0).is_some() && look(&mut t, &reply_of(k, 1), 0).is_some());
    }
    // The next millisecond looks at the keys again.
    assert_eq!(ins(&mut t, &keys[3], None, 1, 1), Err(InsertError::Exists));
    assert_eq!((t.counts().insert_exists, t.counts().insert_full), (2, 3));
}

#[test]
fn an_insert_after_a_miss_trusts_it_only_until_the_next_insert() {
    let mut t = FlowTable::with_capacity(16, Timeouts::default());
    let (k, k2) = (client(1, PROTO_TCP), client(2, PROTO_TCP));
    let miss = |t: &mut FlowTable, k: &FlowKey| match t.lookup_or_miss(k, FlowTable::hash(k), 0) {
        Err(m) => m,
        Ok(_) => panic!("{k:?} in the table"),
    };
    // Fresh: the key is entered (with its reply key) without a second search.
    let m = miss(&mut t, &k);
    let r = reply_of(&k, 1);
    let id = t.insert_after_miss(&k, m, || Some(r), 1, 0).unwrap();
    assert_eq!(
        look(&mut t, &r, 0).map(|h| (h.id, h.dir)),
        Some((id, Direction::Reply))
    );
    // Stale: the key came in after the miss, so it is searched again and clashes.
    let m = miss(&mut t, &k2);
    ins(&mut t, &k2, None, 2, 0).unwrap();
    assert_eq!(
        t.insert_after_miss(&k2, m, || None, 3, 0),
        Err(InsertError::Exists)
    );
    // Still checked: a reply key that clashes, or equals the original key.
    let k3 = client(3, PROTO_TCP);
    let m = miss(&mut t, &k3);
    assert_eq!(
        t.insert_after_miss(&k3, m, || Some(r), 3, 0),
        Err(InsertError::Exists)
    );
    assert_eq!(
        t.insert_after_miss(&k3, m, || Some(k3), 3, 0),
        Err(InsertError::Exists)
    );
    assert_eq!((t.len(), t.counts().insert_exists), (2, 3));
    t.check();
}

#[test]
fn index_full_rolls_back_the_whole_insert() {
    // An index of 2 buckets (4 slots) under a capacity of 32: the index fills first.
    let mut t = FlowTable::with_capacity(32, Timeouts::default());
    t.v4 = conns::Conns::with_buckets(32, 2);
    let keys: Vec<_> = (0..9).map(|n| client(n, PROTO_UDP)).collect();
    ins(&mut t, &keys[0], Some(&reply_of(&keys[0], 1)), 1, 0).unwrap();
    ins(&mut t, &keys[1], None, 1, 0).unwrap(); // 3 slots used
    let serials = |t: &FlowTable| -> Vec<u32> {
        let mut v: Vec<u32> =
            t.v4.idx
                .iter()
                .filter(|(_, s)| !s.is_free())
                .map(|(_, s)| s.serial)
                .collect();
        v.sort_unstable();
        v
    };
    let before = serials(&t);
    // The original key fits, the reply key does not: nothing may stay behind.
    assert_eq!(
        ins(&mut t, &keys[2], Some(&reply_of(&keys[2], 1)), 1, 0),
        Err(InsertError::Full)
    );
    assert!(look(&mut t, &keys[2], 0).is_none());
    assert_eq!(t.len(), 2);
    assert_eq!(before, serials(&t));
    t.check();
    assert!(ins(&mut t, &keys[2], None, 1, 0).is_ok());
    assert_eq!(
        ins(&mut t, &client(99, PROTO_UDP), None, 1, 0),
        Err(InsertError::Full)
    );
    t.check();
}

#[test]
fn tcp_normal_close_and_timeouts() {
    let mut t = FlowTable::with_capacity(8, Timeouts::default());
    let k = client(1, PROTO_TCP);
    let r = reply_of(&k, 1);
    let id = ins(&mut t, &k, Some(&r), 1, 0).unwrap();
    let steps = [
        (Direction::Original, 0x02, TcpState::SynRecv, 60),
        (Direction::Reply, 0x12, TcpState::SynRecv, 60),
        (Direction::Original, 0x10, TcpState::Established, 900),
        (Direction::Original, 0x11, TcpState::FinWait, 120),
        (Direction::Reply, 0x10, TcpState::FinWait, 120),
        (Direction::Reply, 0x11, TcpState::TimeWait, 120),
        (Direction::Original, 0x10, TcpState::TimeWait, 120),
    ];
    let mut now = 0;
    for (dir, bits, state, timeout) in steps {
        now += SEC;
        assert_eq!(t.track(id, dir, tcp(bits), now), state);
        let info = t.iter(now).next().unwrap();
        assert_eq!((info.state, info.remaining_ms), (state, timeout * SEC));
    }
    // Alive one ms before the timeout, gone at it.
    assert!(look(&mut t, &k, now + 120 * SEC - 1).is_some());
    assert!(look(&mut t, &r, now + 120 * SEC).is_none());
    assert_eq!((t.len(), t.counts().expired), (0, 1));
    t.check();
}

#[test]
fn a_packet_that_changes_nothing_keeps_the_connection_by_its_later_expiry() {
    // Such a packet (here an established connection's ACKs, then a retransmitted SYN)
    // rewrites only its own slot; the partner's expiry stays behind, and neither the
    // lookups of the partner's key nor the sweep may end the connection before the later
    // of the two.
    let mut t = FlowTable::with_capacity(8, Timeouts::default());
    let k = client(1, PROTO_TCP);
    let r = reply_of(&k, 1);
    let id = ins(&mut t, &k, Some(&r), 1, 0).unwrap();
    t.track(id, Direction::Reply, tcp(0x12), 0);
    t.track(id, Direction::Original, tcp(0x10), 0);
    let now = 600 * SEC;
    assert_eq!(
        t.track(id, Direction::Original, tcp(0x10), now),
        TcpState::Established
    );
    assert_eq!(
        t.track(id, Direction::Original, tcp(0x02), now),
        TcpState::Established
    );
    // Past the reply slot's own expiry (900 s after 0), before the original's.
    assert_eq!(t.expire(900 * SEC + 1, 8), 0);
    assert!(look(&mut t, &r, 900 * SEC + 2).is_some());
    assert_eq!(
        t.iter(900 * SEC + 2).next().map(|i| i.remaining_ms),
        Some(600 * SEC - 2)
    );
    t.check();
    assert!(look(&mut t, &r, now + 900 * SEC).is_none());
    assert!(t.is_empty());
}

#[test]
fn tcp_rst_and_udp_timeouts() {
    let mut t = FlowTable::with_capacity(8, Timeouts::default());
    let k = client(1, PROTO_TCP);
    let id = ins(&mut t, &k, None, 1, 0).unwrap();
    t.track(id, Direction::Original, tcp(0x02), 0);
    t.track(id, Direction::Original, tcp(0x10), 0);
    assert_eq!(
        t.track(id, Direction::Original, tcp(0x04), 5 * SEC),
        TcpState::Close
    );
    assert!(look(&mut t, &k, 15 * SEC - 1).is_some());
    // The sweep (not only lookups) honours the shortened expiry.
    assert_eq!(t.expire(15 * SEC, 8), 1);
    assert!(t.is_empty());

    let u = client(2, PROTO_UDP);
    let id = ins(&mut t, &u, None, 1, 0).unwrap();
    assert_eq!(t.track(id, Direction::Original, None, 0), TcpState::None);
    assert_eq!(
        t.track(id, Direction::Original, None, 200 * SEC),
        TcpState::None
    );
    assert!(look(&mut t, &u, 499 * SEC).is_some());
    assert!(look(&mut t, &u, 500 * SEC).is_none());

    // Custom timeouts apply from the next tracked packet.
    let id = ins(&mut t, &u, None, 1, 0).unwrap();
    t.set_timeouts(Timeouts {
        udp: 5,
        ..Timeouts::default()
    });
    t.track(id, Direction::Original, None, 0);
    assert_eq!(t.iter(0).next().map(|i| i.remaining_ms), Some(5 * SEC));
    t.check();
}

#[test]
fn sweep_removes_idle_keeps_active() {
    let cap = 1000;
    let mut t = FlowTable::with_capacity(cap, Timeouts::default());
    let keys: Vec<_> = (0..cap as u32).map(|n| client(n, PROTO_UDP)).collect();
    let ids: Vec<_> = keys
        .iter()
        .map(|k| ins(&mut t, k, None, 1, 0).unwrap())
        .collect();
    // One burst every 10 ms for 20 simulated minutes; odd flows see a packet every 10 s.
    let mut now = 0;
    while now < 1200 * SEC {
        now += 10;
        if now % (10 * SEC) == 0 {
            for id in ids.iter().skip(1).step_by(2) {
                t.track(*id, Direction::Original, None, now);
            }
        }
        t.expire(now, 4);
    }
    assert_eq!((t.len(), t.counts().expired), (cap / 2, (cap / 2) as u64));
    for (n, k) in keys.iter().enumerate() {
        assert_eq!(look(&mut t, k, now).is_some(), n % 2 == 1);
    }
    t.check();
}

#[test]
fn sweep_bound_holds() {
    // Each call reads SCAN_PER_REMOVAL * budget slots or removes `budget` connections, so a
    // connection expired at t is gone after ceil(slots / (SCAN_PER_REMOVAL * budget)) calls,
    // plus one call per `budget` other expired connections removed meanwhile.
    for (cap, budget) in [(1000usize, 4usize), (777, 1), (64, 64), (5000, 64)] {
        // (a) One idle connection among active ones, the cursor anywhere.
        for victim in [0, cap / 3, cap - 1] {
            let mut t = FlowTable::with_capacity(cap, Timeouts::default());
            let scan_calls = t.v4.idx.slots().div_ceil(SCAN_PER_REMOVAL * budget);
            let ids: Vec<_> = (0..cap as u32)
                .map(|n| ins(&mut t, &client(n, PROTO_UDP), None, 1, 0).unwrap())
                .collect();
            for _ in 0..victim % 7 {
                t.expire(1, budget);
            }
            let now = 300 * SEC;
            for (n, id) in ids.iter().enumerate() {
                if n != victim {
                    t.track(*id, Direction::Original, None, now - 1);
                }
            }
            for _ in 0..scan_calls {
                t.expire(now, budget);
            }
            assert_eq!(
                t.len(),
                cap - 1,
                "cap {cap} budget {budget} victim {victim}"
            );
            assert_eq!(t.counts().expired, 1);
            t.check();
        }
        // (b) Everything expires at once (staggered inserts: connection n expires at 300 s + n ms).
        let mut t = FlowTable::with_capacity(cap, Timeouts::default());
        let scan_calls = t.v4.idx.slots().div_ceil(SCAN_PER_REMOVAL * budget);
        for n in 0..cap as u32 {
            ins(&mut t, &client(n, PROTO_UDP), None, 1, u64::from(n)).unwrap();
        }
        t.expire(1, budget);
        let calls = scan_calls + cap.div_ceil(budget);
        for _ in 0..calls {
            t.expire(300 * SEC + cap as u64, budget);
        }
        assert!(t.is_empty(), "cap {cap} budget {budget}: {} left", t.len());
        t.check();
    }
}

#[test]
fn stale_ids_are_harmless_after_reuse() {
    let mut t = FlowTable::with_capacity(1, Timeouts::default());
    let a = ins(&mut t, &client(1, PROTO_TCP), None, 1, 0).unwrap();
    t.remove(a);
    let b = ins(&mut t, &client(2, PROTO_TCP), None, 2, 0).unwrap();
    t.remove(a);
    assert_eq!(
        t.track(a, Direction::Original, tcp(0x04), 0),
        TcpState::Close
    );
    assert_eq!(
        look(&mut t, &client(2, PROTO_TCP), 0).map(|h| (h.id, h.state)),
        Some((b, TcpState::SynRecv))
    );
}

#[test]
fn churn_at_full_load_keeps_invariants() {
    let cap = 5000;
    let mut t = FlowTable::with_capacity(cap, Timeouts::default());
    let mut live: Vec<(FlowId, FlowKey)> = Vec::new();
    let mut n = 0u32;
    let mut rng = 0x1234_5678_9abc_def0u64;
    for round in 0..20 {
        while live.len() < cap {
            let k = client(n, PROTO_TCP);
            n += 1;
            let id = ins(&mut t, &k, Some(&reply_of(&k, (n % 200) as u8)), n, 0).unwrap();
            live.push((id, k));
        }
        for _ in 0..cap / 3 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (id, _) = live.swap_remove((rng % live.len() as u64) as usize);
            t.remove(id);
        }
        if round % 5 == 0 {
            t.check();
        }
    }
    for (id, k) in &live {
        assert_eq!(look(&mut t, k, 0).map(|h| h.id), Some(*id));
    }
    t.check();
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        n: u8,
        nat: bool,
        rs: u8,
    },
    Lookup {
        n: u8,
    },
    LookupReply {
        n: u8,
        rs: u8,
    },
    Remove {
        n: u8,
    },
    Track {
        n: u8,
        bits: u8,
    },
    /// Look `n` up, keeping a miss for a later `InsertAfterMiss` (other ops may come between).
    Miss {
        n: u8,
    },
    InsertAfterMiss {
        nat: bool,
        rs: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..24, any::<bool>(), 0u8..4).prop_map(|(n, nat, rs)| Op::Insert { n, nat, rs }),
        (0u8..24).prop_map(|n| Op::Lookup { n }),
        (0u8..24, 0u8..4).prop_map(|(n, rs)| Op::LookupReply { n, rs }),
        (0u8..24).prop_map(|n| Op::Remove { n }),
        (0u8..24, any::<u8>()).prop_map(|(n, bits)| Op::Track { n, bits }),
        (0u8..24).prop_map(|n| Op::Miss { n }),
        (any::<bool>(), 0u8..4).prop_map(|(nat, rs)| Op::InsertAfterMiss { nat, rs }),
    ]
}

proptest! {
    /// Insert/remove/lookup churn against a std HashMap model of key -> connection.
    #[test]
    fn matches_hashmap_model(ops in proptest::collection::vec(op(), 1..400)) {
        const CAP: usize = 8;
        let mut t = FlowTable::with_capacity(CAP, Timeouts::default());
        // Model: original key -> (id, backend, reply key).
        let mut conns: HashMap<FlowKey, (FlowId, u32, Option<FlowKey>)> = HashMap::new();
        let mut keys: HashMap<FlowKey, (FlowKey, Direction)> = HashMap::new();
        let mut dry = false;
        let mut pending: Option<(FlowKey, Miss)> = None;
        for (step, op) in ops.into_iter().enumerate() {
            let backend = step as u32;
            match op {
                Op::Insert { .. } | Op::InsertAfterMiss { .. } => {
                    let (k, nat, rs, got) = match op {
                        Op::Insert { n, nat, rs } => {
                            let k = client(u32::from(n), PROTO_TCP);
                            let r = nat.then(|| reply_of(&k, rs));
                            (k, nat, rs, ins(&mut t, &k, r.as_ref(), backend, 0))
                        }
                        Op::InsertAfterMiss { nat, rs } => {
                            let Some((k, miss)) = pending.take() else { continue };
                            let r = move || nat.then(|| reply_of(&k, rs));
                            (k, nat, rs, t.insert_after_miss(&k, miss, r, backend, 0))
                        }
                        _ => unreachable!("an insert"),
                    };
                    let r = nat.then(|| reply_of(&k, rs));
                    let clash = keys.contains_key(&k) || r.is_some_and(|r| keys.contains_key(&r));
                    // Nothing expires (all at 0 ms): once an insert found no room, the table
                    // refuses every insert while full, before looking at the keys.
                    if conns.len() == CAP && dry {
                        prop_assert_eq!(got, Err(InsertError::Full));
                    } else if clash {
                        prop_assert_eq!(got, Err(InsertError::Exists));
                    } else if conns.len() == CAP {
                        prop_assert_eq!(got, Err(InsertError::Full));
                        dry = true;
                    } else if got == Err(InsertError::Full) {
                        // Room, but the index has no slot for a key: with 2-way buckets and
                        // two choices, more than four keys hashing to the same two buckets
                        // cannot all be placed (likelier the smaller the table). Nothing of
                        // the connection stays behind.
                        prop_assert_eq!(t.len(), conns.len());
                        prop_assert!(look(&mut t, &k, 0).is_none());
                    } else {
                        let id = got.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                        conns.insert(k, (id, backend, r));
                        keys.insert(k, (k, Direction::Original));
                        if let Some(r) = r {
                            keys.insert(r, (k, Direction::Reply));
                        }
                    }
                }
                Op::Lookup { n } => {
                    let k = client(u32::from(n), PROTO_TCP);
                    let want = keys.get(&k).map(|(o, d)| (conns[o].0, conns[o].1, *d));
                    prop_assert_eq!(look(&mut t, &k, 0).map(|h| (h.id, h.backend, h.dir)), want);
                }
                Op::LookupReply { n, rs } => {
                    let r = reply_of(&client(u32::from(n), PROTO_TCP), rs);
                    let want = keys.get(&r).map(|(o, d)| (conns[o].0, conns[o].1, *d));
                    prop_assert_eq!(look(&mut t, &r, 0).map(|h| (h.id, h.backend, h.dir)), want);
                }
                Op::Remove { n } => {
                    let k = client(u32::from(n), PROTO_TCP);
                    if let Some((id, _, r)) = conns.remove(&k) {
                        keys.remove(&k);
                        if let Some(r) = r {
                            keys.remove(&r);
                        }
                        t.remove(id);
                        t.remove(id); // twice: the second is a stale id
                    }
                }
                Op::Track { n, bits } => {
                    if let Some((id, _, _)) = conns.get(&client(u32::from(n), PROTO_TCP)) {
                        t.track(*id, Direction::Original, tcp(bits), 0);
                    }
                }
                Op::Miss { n } => {
                    let k = client(u32::from(n), PROTO_TCP);
                    let got = t.lookup_or_miss(&k, FlowTable::hash(&k), 0);
                    prop_assert_eq!(got.is_ok(), keys.contains_key(&k));
                    pending = got.err().map(|m| (k, m));
                }
            }
            prop_assert_eq!(t.len(), conns.len());
        }
        t.check();
    }
}
