//! What a new connection's scheduling costs: ns per pick of every scheduler, by number of real
//! servers and workers, next to the Maglev lookup (the cheapest pick, the ceiling measured in
//! the same run); the least-connection schedulers with another thread writing the other
//! workers' counts meanwhile (their cache lines then move between cores, as on a busy box);
//! and a persistent service's extra work (lookup and refresh of its entry).
//!
//! Run: `cargo run --release -p vipd-dataplane --no-default-features --example sched_pick`
//! (optional argument: picks per figure, default 2000000). A benchmark, not a test: it prints
//! figures and never fails on a timing.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vipd_dataplane::backend_stats::ConnClass;
use vipd_dataplane::flow::FlowKey;
use vipd_dataplane::persist::PersistTable;
use vipd_dataplane::sched::load::{ServiceLoad, SharedLoad};
use vipd_dataplane::sched::{
    NewConn, SchedBackend, SchedFlags, Scheduler, SchedulerKind, ServiceScheduler,
};

fn backends(n: u32) -> Vec<SchedBackend> {
    (0..n)
        .map(|i| {
            let mut key = [0u8; 18];
            key[10] = 0xff;
            key[11] = 0xff;
            key[12] = 10;
            key[13..16].copy_from_slice(&i.to_be_bytes()[1..]);
            key[16..18].copy_from_slice(&80u16.to_be_bytes());
            SchedBackend {
                key,
                weight: 1 + i % 3,
            }
        })
        .collect()
}

/// Median of three runs of `picks` picks, ns per pick.
fn time(picks: u64, mut one: impl FnMut(u64) -> u32) -> f64 {
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let mut acc = 0u64;
            for i in 0..picks {
                acc = acc.wrapping_add(u64::from(one(i)));
            }
            black_box(acc);
            start.elapsed().as_nanos() as f64 / picks as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let picks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    println!("ns per pick (median of 3 runs of {picks}); maglev lookup = the ceiling");
    println!(
        "{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "servers", "workers", "maglev", "rr", "wrr", "sh", "lc", "wlc", "wlc+writer"
    );
    for n in [8u32, 64, 512] {
        let b = backends(n);
        for workers in [1usize, 2, 8] {
            let load = SharedLoad::new(workers, n as usize);
            // Realistic counts: every worker holds some connections of every server.
            for w in 0..workers {
                for slot in 0..n {
                    for _ in 0..(slot % 7) {
                        load.worker(w).conn_added(slot, ConnClass::Active);
                    }
                    load.worker(w).conn_added(slot, ConnClass::Inactive);
                }
            }
            let slots: Vec<u32> = (0..n).collect();
            let sl = ServiceLoad {
                shared: &load,
                slots: &slots,
                limits: &[],
            };
            let mut row = Vec::new();
            for kind in SchedulerKind::ALL {
                let s = ServiceScheduler::build(kind, &b, 65537, SchedFlags::default())?;
                let mut cursor = 0u64;
                let ns = time(picks, |i| {
                    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let client = (u128::from(i) | 0xffff_0000_0000).to_be_bytes();
                    let conn = NewConn {
                        hash: h,
                        client: &client,
                        client_port: i as u16,
                    };
                    s.pick(&conn, &mut cursor, &sl).unwrap_or(0)
                });
                row.push((kind, ns));
            }
            // wlc while another core keeps changing the other workers' counts.
            let wlc =
                ServiceScheduler::build(SchedulerKind::Wlc, &b, 65537, SchedFlags::default())?;
            let with_writer = if workers > 1 {
                let load = Arc::new(load);
                let stop = Arc::new(AtomicBool::new(false));
                let writer = {
                    let (load, stop) = (Arc::clone(&load), Arc::clone(&stop));
                    // Bounded: it stops when the timing below is done.
                    std::thread::spawn(move || {
                        let mut slot = 0u32;
                        while !stop.load(Ordering::Relaxed) {
                            for w in 1..load.workers().len() {
                                load.worker(w).conn_added(slot, ConnClass::Inactive);
                                load.worker(w).conn_removed(slot, ConnClass::Inactive);
                            }
                            slot = (slot + 1) % n;
                        }
                    })
                };
                let sl = ServiceLoad {
                    shared: &load,
                    slots: &slots,
                    limits: &[],
                };
                let mut cursor = 0;
                let ns = time(picks / 4, |i| {
                    let conn = NewConn::of_hash(i);
                    wlc.pick(&conn, &mut cursor, &sl).unwrap_or(0)
                });
                stop.store(true, Ordering::Relaxed);
                let _ = writer.join();
                format!("{ns:>12.1}")
            } else {
                format!("{:>12}", "-")
            };
            let get = |k: SchedulerKind| row.iter().find(|r| r.0 == k).map_or(0.0, |r| r.1);
            println!(
                "{n:>8} {workers:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {with_writer}",
                get(SchedulerKind::Maglev),
                get(SchedulerKind::Rr),
                get(SchedulerKind::Wrr),
                get(SchedulerKind::Sh),
                get(SchedulerKind::Lc),
                get(SchedulerKind::Wlc),
            );
        }
    }
    // Persistence: a hit (lookup + refresh), and a miss + insert, in a table of 65536 entries
    // holding `held` client networks.
    let mut t = PersistTable::with_capacity(65_536);
    let held = 50_000u32;
    let key = |i: u32| {
        let client = std::net::IpAddr::from((0xc000_0000u32 | i << 8).to_be_bytes());
        FlowKey::new(
            client,
            std::net::Ipv4Addr::new(10, 0, 100, 1).into(),
            0,
            80,
            6,
        )
    };
    for i in 0..held {
        t.insert(&key(i), key(i).hash(), i % 16, u64::MAX / 2, 0);
    }
    let keys: Vec<(FlowKey, u64)> = (0..held).map(|i| (key(i), key(i).hash())).collect();
    let ceiling = time(picks, |i| {
        (keys[(i % u64::from(held)) as usize].1 & 1) as u32
    });
    let hit = time(picks, |i| {
        let (k, h) = &keys[(i.wrapping_mul(7919) % u64::from(held)) as usize];
        match t.lookup(k, *h, 1) {
            Some((slot, b)) => {
                t.refresh(slot, u64::MAX / 2);
                b
            }
            None => 0,
        }
    });
    let hash = time(picks, |i| (key(i as u32).hash() & 1) as u32);
    println!(
        "persistence, {held} client networks in 65536 entries per worker: hit (lookup + refresh) {hit:.1} ns, \
         key hash {hash:.1} ns (per new connection of a persistent service), array walk ceiling {ceiling:.1} ns"
    );
    Ok(())
}
