//! Flow table micro-benchmark: ns per operation at 1M connections capacity, 50 % and 90 % full,
//! for DR connections (one key each) and NAT connections (two keys each).
//!
//! ```text
//! cargo run --release -p vipd-dataplane --no-default-features --example flow_table_bench
//! ```
//!
//! Keys and their hashes are computed before timing (the pipeline hashes each packet once
//! anyway; the hashes are timed on their own line). Lookups visit keys in random order, so
//! at this size nearly every lookup misses the CPU caches: these are DRAM-bound figures.
//! Timings vary with the machine and its load; nothing here is a pass/fail test.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;
use vipd_dataplane::flow::key::PROTO_TCP;
use vipd_dataplane::flow::{FlowId, FlowKey, FlowTable, TableHash, Timeouts};

const CAPACITY: usize = 1_000_000;
const OPS: usize = 2_000_000;

/// splitmix64: a fixed-seed generator, so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A connection to a VIP: original key, NAT reply key, and their hashes.
struct Conn {
    key: FlowKey,
    hash: TableHash,
    reply: FlowKey,
    reply_hash: TableHash,
}

fn conn(rng: &mut Rng) -> Conn {
    let r = rng.next();
    let client = Ipv4Addr::from((r >> 32) as u32);
    let key = FlowKey::v4(
        client,
        Ipv4Addr::new(192, 0, 2, 10),
        r as u16 | 1024,
        443,
        PROTO_TCP,
    );
    let rs = Ipv4Addr::new(10, 1, (r >> 16) as u8 & 3, (r >> 24) as u8);
    let reply = FlowKey::v4(rs, client, 8443, key.src_port, PROTO_TCP);
    Conn {
        hash: FlowTable::hash(&key),
        reply_hash: FlowTable::hash(&reply),
        key,
        reply,
    }
}

fn ns_per(ops: usize, start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64 / ops as f64
}

fn run(load_pct: usize, nat: bool, rng: &mut Rng) {
    let mut t = FlowTable::with_capacity(CAPACITY, Timeouts::default());
    let n = CAPACITY * load_pct / 100;
    let mut live: Vec<(Conn, FlowId)> = Vec::with_capacity(n);
    while live.len() < n {
        let c = conn(rng);
        let reply = nat.then_some((&c.reply, c.reply_hash));
        if let Ok(id) = t.insert(&c.key, c.hash, reply, 1, 0) {
            live.push((c, id));
        }
    }
    let order: Vec<usize> = (0..OPS).map(|_| (rng.next() % n as u64) as usize).collect();
    let misses: Vec<Conn> = (0..OPS.min(1 << 20)).map(|_| conn(rng)).collect();

    let start = Instant::now();
    let mut found = 0usize;
    for &i in &order {
        let c = &live[i].0;
        found += usize::from(t.lookup(&c.key, c.hash, 1).is_some());
    }
    let hit = ns_per(OPS, start);
    check_found(found, OPS, "lookup hit");

    // The same lookups in bursts of 32, staged: prefetch every primary bucket, then look up
    // (what the pipeline does per burst).
    let start = Instant::now();
    let mut found = 0usize;
    for burst in order.chunks(32) {
        for &i in burst {
            t.prefetch(true, live[i].0.hash);
        }
        for &i in burst {
            let c = &live[i].0;
            found += usize::from(t.lookup(&c.key, c.hash, 1).is_some());
        }
    }
    let hit_staged = ns_per(OPS, start);
    check_found(found, OPS, "staged lookup hit");

    let hit_reply = nat.then(|| {
        let start = Instant::now();
        let mut found = 0usize;
        for &i in &order {
            let c = &live[i].0;
            found += usize::from(t.lookup(&c.reply, c.reply_hash, 1).is_some());
        }
        check_found(found, OPS, "reply lookup hit");
        ns_per(OPS, start)
    });

    let start = Instant::now();
    let mut found = 0usize;
    for c in &misses {
        found += usize::from(t.lookup(&c.key, c.hash, 1).is_some());
    }
    let miss = ns_per(misses.len(), start);
    black_box(found);

    // Churn: remove the oldest connection, insert a fresh one (pre-generated keys).
    let fresh: Vec<Conn> = (0..OPS).map(|_| conn(rng)).collect();
    let start = Instant::now();
    let mut failed = 0usize;
    for (j, c) in fresh.into_iter().enumerate() {
        let slot = j % n;
        t.remove(live[slot].1);
        let reply = nat.then_some((&c.reply, c.reply_hash));
        match t.insert(&c.key, c.hash, reply, 1, 0) {
            Ok(id) => live[slot] = (c, id),
            Err(_) => failed += 1,
        }
    }
    let churn = ns_per(OPS, start);
    if failed > 0 {
        println!("  ({failed} churn inserts refused)");
    }

    let calls = 100_000;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(t.expire(1, 64));
    }
    let sweep = ns_per(calls, start);

    let mode = if nat { "NAT (2 keys)" } else { "DR  (1 key) " };
    let reply = hit_reply.map_or_else(|| "     -".to_string(), |v| format!("{v:6.1}"));
    println!(
        "{load_pct:>3}%  {mode}  hit {hit:6.1}  staged {hit_staged:6.1}  reply-hit {reply}  miss {miss:6.1}  \
         remove+insert {churn:6.1}  expire(64) {sweep:6.1} ns/call  (len {}, index load {:.0}%)",
        t.len(),
        100.0 * (t.len() * if nat { 2 } else { 1 }) as f64 / t.index_slots() as f64,
    );
}

/// Baseline: `hashbrown::HashTable` of (key, backend) with the same keys, lookups only (DR).
fn hashbrown_baseline(load_pct: usize, rng: &mut Rng) {
    let n = CAPACITY * load_pct / 100;
    let mut t: hashbrown::HashTable<(FlowKey, u32)> = hashbrown::HashTable::with_capacity(CAPACITY);
    let mut live: Vec<Conn> = Vec::with_capacity(n);
    while live.len() < n {
        let c = conn(rng);
        if t.find(c.key.hash(), |e| e.0 == c.key).is_none() {
            t.insert_unique(c.key.hash(), (c.key, 1), |e| e.0.hash());
            live.push(c);
        }
    }
    let order: Vec<usize> = (0..OPS).map(|_| (rng.next() % n as u64) as usize).collect();
    let misses: Vec<Conn> = (0..OPS.min(1 << 20)).map(|_| conn(rng)).collect();
    let start = Instant::now();
    let mut found = 0usize;
    for &i in &order {
        let c = &live[i];
        found += usize::from(t.find(c.key.hash(), |e| e.0 == c.key).is_some());
    }
    let hit = ns_per(OPS, start);
    check_found(found, OPS, "hashbrown hit");
    let start = Instant::now();
    for c in &misses {
        found += usize::from(t.find(c.key.hash(), |e| e.0 == c.key).is_some());
    }
    let miss = ns_per(misses.len(), start);
    black_box(found);
    println!("{load_pct:>3}%  hashbrown::HashTable<(FlowKey, u32)> baseline (1 key): hit {hit:6.1}  miss {miss:6.1}");
}

fn check_found(got: usize, want: usize, what: &str) {
    if got != want {
        println!("  warning: {what}: {got} of {want} found");
    }
}

fn main() {
    let mut rng = Rng(0x7669_7064);
    let keys: Vec<FlowKey> = (0..OPS).map(|_| conn(&mut rng).key).collect();
    let start = Instant::now();
    let mut acc = 0u64;
    for k in &keys {
        acc ^= k.hash();
    }
    black_box(acc);
    let xxh3 = ns_per(OPS, start);
    let start = Instant::now();
    let mut acc = 0u64;
    for k in &keys {
        acc ^= FlowTable::hash(k).raw();
    }
    black_box(acc);
    println!(
        "flow table, capacity {CAPACITY}, {OPS} ops each, ns/op (FlowKey::hash (xxh3, Maglev's) alone: {xxh3:.1} ns; FlowTable::hash (CRC32C) alone: {:.1} ns)",
        ns_per(OPS, start)
    );
    for load in [50, 90] {
        for nat in [false, true] {
            run(load, nat, &mut rng);
        }
    }
    for load in [50, 90] {
        hashbrown_baseline(load, &mut rng);
    }
}
