//! Maglev table figures: build time, balance, disruption when one real server leaves, lookup
//! cost.
//!
//! Run: `cargo run --release -p vipd-dataplane --no-default-features --example maglev_build`
//! (optional argument: number of timed builds, default 21). A benchmark, not a test: it prints
//! figures and never fails on a timing.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use vipd_dataplane::sched::{MaglevTable, SchedBackend, DEFAULT_MAGLEV_SIZE};

/// Backend `i`: ::ffff:10.a.b.c port 80.
fn backend(i: u32, weight: u32) -> SchedBackend {
    let mut key = [0u8; 18];
    key[10] = 0xff;
    key[11] = 0xff;
    key[12] = 10;
    key[13..16].copy_from_slice(&i.to_be_bytes()[1..]);
    key[16..18].copy_from_slice(&80u16.to_be_bytes());
    SchedBackend { key, weight }
}

fn equal(n: u32) -> Vec<SchedBackend> {
    (0..n).map(|i| backend(i, 1)).collect()
}

/// Build `runs` times; (min, median).
fn time_builds(
    backends: &[SchedBackend],
    m: u32,
    runs: usize,
) -> Result<(Duration, Duration), Box<dyn Error>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let t = MaglevTable::build(black_box(backends), m)?;
        times.push(start.elapsed());
        black_box(t);
    }
    times.sort();
    let min = times.first().copied().unwrap_or_default();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    Ok((min, median))
}

/// Max - min entries per backend (live backends only).
fn balance(t: &MaglevTable) -> u32 {
    let c: Vec<u32> = t
        .entries_per_backend()
        .into_iter()
        .filter(|&c| c > 0)
        .collect();
    c.iter().max().copied().unwrap_or(0) - c.iter().min().copied().unwrap_or(0)
}

/// Remove each of `samples` evenly spread backends out of `n` in turn; returns the mean and
/// max share of M that moved between surviving backends, and the mean share that moved
/// because it belonged to the removed backend.
fn disruption(n: u32, m: u32, samples: u32) -> Result<(f64, f64, f64), Box<dyn Error>> {
    let before = equal(n);
    let t = MaglevTable::build(&before, m)?;
    let (mut sum, mut max, mut own) = (0f64, 0f64, 0f64);
    let samples = samples.clamp(1, n);
    for s in 0..samples {
        let r = (u64::from(s) * u64::from(n) / u64::from(samples)) as usize;
        let mut after = before.clone();
        after.remove(r);
        let u = MaglevTable::build(&after, m)?;
        let d = t.diff(&before, &u, &after)?;
        sum += d.changed_kept_share();
        max = max.max(d.changed_kept_share());
        own += d.changed_share() - d.changed_kept_share();
    }
    let k = f64::from(samples);
    Ok((sum / k, max, own / k))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 21,
    };
    let m = DEFAULT_MAGLEV_SIZE;

    println!("maglev_build: {runs} timed builds per case");
    let b1000 = equal(1000);
    let (min, med) = time_builds(&b1000, m, runs)?;
    println!(
        "build M={m} N=1000 equal weights:   min {:.2} ms, median {:.2} ms",
        ms(min),
        ms(med)
    );
    let skewed: Vec<SchedBackend> = (0..1000)
        .map(|i| backend(i, if i == 0 { 1000 } else { 1 }))
        .collect();
    let (min, med) = time_builds(&skewed, m, runs)?;
    println!(
        "build M={m} N=1000 weights 1000,1x999: min {:.2} ms, median {:.2} ms",
        ms(min),
        ms(med)
    );
    let (min, med) = time_builds(&b1000, 655_373, runs.div_ceil(4))?;
    println!(
        "build M=655373 N=1000 equal weights: min {:.2} ms, median {:.2} ms",
        ms(min),
        ms(med)
    );

    for n in [100, 1000] {
        let t = MaglevTable::build(&equal(n), m)?;
        println!(
            "balance M={m} N={n}: max-min entries = {} (ideal share {:.1})",
            balance(&t),
            f64::from(m) / f64::from(n)
        );
    }
    let weighted: Vec<SchedBackend> = (0..100).map(|i| backend(i, 1 + i % 10)).collect();
    let t = MaglevTable::build(&weighted, m)?;
    let sum: u32 = weighted.iter().map(|b| b.weight).sum();
    let worst = t
        .entries_per_backend()
        .iter()
        .zip(&weighted)
        .map(|(&c, b)| (f64::from(c) - f64::from(m) * f64::from(b.weight) / f64::from(sum)).abs())
        .fold(0f64, f64::max);
    println!("weighted M={m} N=100 weights 1..10: worst |entries - M*w/sum| = {worst:.2} entries");

    for (n, size) in [(1000, m), (100, m), (10, m), (1000, 655_373)] {
        let (mean, max, own) = disruption(n, size, 20)?;
        println!(
            "remove 1 of {n} (M={size}, 20 samples): removed backend's share {:.3}%, \
             survivors moved: mean {:.3}%, max {:.3}% of M",
            own * 100.0,
            mean * 100.0,
            max * 100.0
        );
    }

    let t = MaglevTable::build(&b1000, m)?;
    let lookups = 10_000_000u64;
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    let mut acc = 0u64;
    let start = Instant::now();
    for _ in 0..lookups {
        h = h
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        acc = acc.wrapping_add(u64::from(t.lookup(black_box(h)).unwrap_or(0)));
    }
    let el = start.elapsed();
    black_box(acc);
    println!(
        "lookup M={m} ({} KiB table): {:.2} ns per pick (random flow hashes)",
        t.memory_bytes() / 1024,
        el.as_secs_f64() * 1e9 / lookups as f64
    );
    Ok(())
}
