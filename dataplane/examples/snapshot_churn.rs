//! Snapshot publication under load: a real worker (`worker::Worker`) forwards a `net_pcap`
//! replay at full rate on core 1 while the main thread (core 0, as the control thread) builds
//! and publishes a new snapshot every 10 ms (100 Maglev backends, the weight of one changing
//! each time, so every snapshot brings a new Maglev table) and reclaims the old ones. Prints,
//! for a quiet phase and a churn phase of equal length: the rate, what was dropped and why,
//! and the worst gap between two polls of the worker's loop.
//!
//! ```text
//! cargo run --release -p vipd-dataplane --example snapshot_churn -- CAPTURE.pcap [seconds]
//! ```
//! The capture is one of scripts/bench/mkpcap.py's (addresses as in scripts/bench's configs).
//! A benchmark: it prints figures and never fails on a timing.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // a benchmark on fixed input

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::counters::{Counter, WorkerCounters};
use vipd_dataplane::flow::{FlowTable, Timeouts};
use vipd_dataplane::flow_sample::FlowSampler;
use vipd_dataplane::io::dpdk::{self, Eal, Mempool, Port, PortConfig, DEFAULT_DATA_ROOM};
use vipd_dataplane::pipeline::WorkerState;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::MacAddr;
use vipd_dataplane::worker::{Rings, Worker};

const PUBLISH_EVERY: Duration = Duration::from_millis(10);

/// The snapshot scripts/bench's NAT configuration describes; `generation` also sets the
/// weight of the first real server, so consecutive snapshots have different Maglev tables.
fn snapshot(generation: u64) -> Snapshot {
    let port = PortInfo {
        mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        ipv4: Some("10.0.0.10/16".parse().unwrap()),
        ipv6: None,
        gateway_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        gateway_v6: None,
        mtu: 1500,
        tunnel_source4: None,
        tunnel_source6: None,
        ..Default::default()
    };
    let mut neighbours = HashMap::new();
    neighbours.insert(
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        MacAddr([2, 0, 0, 0, 0, 1]),
    );
    let backends = (0..100u32)
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8));
            neighbours.insert(addr, MacAddr([2, 0, 0, 1, 0, i as u8]));
            BackendSpec {
                id: i,
                addr,
                port: 8080,
                weight: if i == 0 {
                    1 + (generation % 2) as u32
                } else {
                    1
                },
                mode: FwdMode::Nat,
                ..Default::default()
            }
        })
        .collect();
    let svc = ServiceSpec {
        vip: IpAddr::V4(Ipv4Addr::new(10, 100, 0, 1)),
        proto: 6,
        port: 80,
        scheduler: SchedulerKind::Maglev,
        backends,
        ..Default::default()
    };
    Snapshot::build(generation, vec![port], &[svc], &neighbours, 65537).unwrap()
}

fn pin(core: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; sched_setaffinity(0, ..)
    // changes only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

struct Phase {
    rx: u64,
    forwarded: u64,
    drops: Vec<(&'static str, u64)>,
    gap_us: f64,
    published: u32,
    build_ms_max: f64,
}

fn totals(c: &WorkerCounters) -> HashMap<&'static str, u64> {
    Counter::ALL.iter().map(|&k| (k.name(), c.get(k))).collect()
}

fn phase(
    secs: f64,
    churn: bool,
    counters: &WorkerCounters,
    rings: &Rings,
    published: &ArcSwap<Snapshot>,
    generation: &mut u64,
) -> Phase {
    let before = totals(counters);
    rings.reset_worst_loop_gaps();
    let start = Instant::now();
    let (mut n, mut build_max) = (0u32, 0f64);
    while start.elapsed().as_secs_f64() < secs {
        std::thread::sleep(PUBLISH_EVERY);
        if churn {
            *generation += 1;
            let t = Instant::now();
            published.store(Arc::new(snapshot(*generation)));
            build_max = build_max.max(t.elapsed().as_secs_f64() * 1e3);
            n += 1;
        }
        rings.reclaim_snapshots();
    }
    let after = totals(counters);
    let d = |k: &str| after[k] - before[k];
    let drops = Counter::ALL
        .iter()
        .map(|k| k.name())
        .filter(|k| k.starts_with("drop_") && d(k) > 0)
        .map(|k| (k, d(k)))
        .collect();
    Phase {
        rx: d("rx_packets"),
        forwarded: d("forwarded"),
        drops,
        gap_us: rings.worst_loop_gap_cycles(0) as f64 * 1e6 / dpdk::tsc_hz() as f64,
        published: n,
        build_ms_max: build_max,
    }
}

fn main() {
    let pcap = std::env::args()
        .nth(1)
        .expect("usage: snapshot_churn CAPTURE.pcap [seconds]");
    let secs: f64 = std::env::args().nth(2).map_or(3.0, |s| s.parse().unwrap());
    let prefix = format!("vipd-churn-{}", std::process::id());
    let args: Vec<String> = [
        "-l",
        "0,1",
        "--in-memory",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        &prefix,
        "--log-level",
        "lib.eal:warning",
        "--vdev",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("net_pcap0,rx_pcap={pcap},infinite_rx=1")])
    .collect();
    let eal = Eal::init(&args).expect("EAL");
    let frames = (std::fs::metadata(&pcap).unwrap().len() / 76) as u32;
    let pool = Mempool::create(
        &eal,
        "churn",
        (frames + 8192) | 4095,
        256,
        DEFAULT_DATA_ROOM,
        dpdk::SOCKET_ANY,
    )
    .expect("mempool");
    let mut port = Port::configure(&eal, 0, &PortConfig::default(), &pool).expect("port");
    port.start().expect("start");
    let mut generation = 1;
    let published = Arc::new(ArcSwap::from_pointee(snapshot(generation)));
    let rings = Arc::new(Rings::new(1, 1024));
    let stop = Arc::new(AtomicBool::new(false));
    let state = WorkerState::new(
        0,
        1,
        FlowTable::with_capacity(1 << 20, Timeouts::default()),
        4,
    );
    let counters = Arc::clone(&state.counters);
    let worker = Worker {
        state,
        queues: vec![port.queue(0).expect("queue")],
        snapshot: Arc::clone(&published),
        rings: Arc::clone(&rings),
        stop: Arc::clone(&stop),
        idle_sleep: Duration::ZERO,
        tx_keepalive: Vec::new(),
        sampler: Arc::new(FlowSampler::default()),
        tracer: Arc::default(),
    };
    let eal_ref = &eal;
    std::thread::scope(|s| {
        s.spawn(move || {
            pin(1);
            let _ = dpdk::register_thread(eal_ref);
            worker.run();
            dpdk::unregister_thread(eal_ref);
        });
        pin(0);
        std::thread::sleep(Duration::from_secs(1)); // warm-up: flows created, caches filled
        let quiet = phase(secs, false, &counters, &rings, &published, &mut generation);
        let churn = phase(secs, true, &counters, &rings, &published, &mut generation);
        stop.store(true, Ordering::Relaxed);
        for (name, p) in [("quiet", &quiet), ("churn", &churn)] {
            println!(
                "{name}: {:.2} Mpps received, {} forwarded of {}, drops {:?}, worst loop gap {:.1} us, {} snapshots published (build+store max {:.2} ms), freed by the worker {}",
                p.rx as f64 / secs / 1e6,
                p.forwarded,
                p.rx,
                p.drops,
                p.gap_us,
                p.published,
                p.build_ms_max,
                rings.snapshots_freed_by_workers()
            );
        }
    });
    port.stop().expect("stop");
}
