//! DPDK integration: 32 real frames go out and come back through a `net_ring` port.
//!
//! EAL initialises once per process, so this file holds a single test (one process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test
#![cfg(feature = "dpdk")]

use vipd_dataplane::io::dpdk::{
    DpdkError, Eal, MbufBurst, Mempool, Port, PortConfig, BURST_SIZE, DEFAULT_DATA_ROOM, SOCKET_ANY,
};
use vipd_dataplane::io::PacketBuf;

/// A 64-byte Ethernet/IPv4/UDP-looking frame whose bytes depend on `i`.
fn frame(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; 64 + i];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (k, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i * 31 + k) as u8;
    }
    f
}

#[test]
fn net_ring_loopback_moves_bursts_intact() {
    let prefix = format!("vipd-test-ring-{}", std::process::id());
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "--no-shconf",
        "-m",
        "128",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_ring0",
        "--log-level",
        "lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    assert!(matches!(
        Eal::init(&args),
        Err(DpdkError::AlreadyInitialized)
    ));

    let port_id = eal.port_by_name("net_ring0").expect("net_ring0 exists");
    assert!(matches!(
        eal.port_by_name("net_nothing9"),
        Err(DpdkError::PortNotFound(_))
    ));
    let pool = Mempool::create(&eal, "ring_test", 2047, 32, DEFAULT_DATA_ROOM, SOCKET_ANY)
        .expect("mempool");
    let cfg = PortConfig {
        queues: 2,
        rx_desc: 256,
        tx_desc: 256,
        rss: true,
        rx_interrupt: false,
    };
    let mut port = Port::configure(&eal, port_id, &cfg, &pool).expect("configure");
    assert_eq!(port.driver(), "net_ring");
    // net_ring reports no RSS hash functions: RSS asked for, not enabled.
    assert!(!port.rss_enabled(), "net_ring has no RSS");
    port.start().expect("start");
    let link = port.link_status().expect("link");
    assert!(link.up, "net_ring link is up once started: {link:?}");
    port.mac_addr().expect("mac");
    port.set_promiscuous(true).expect("promiscuous on");

    let mut q0 = port.queue(0).expect("queue 0");
    let mut q1 = port.queue(1).expect("queue 1");
    assert!(matches!(port.queue(0), Err(DpdkError::QueueTaken { .. })));
    assert!(matches!(
        port.stop(),
        Err(DpdkError::QueuesInUse { count: 2, .. })
    ));

    // 1. One full burst out on queue 0 and back on rx queue 0, byte for byte, in order.
    let mut burst = MbufBurst::new();
    for i in 0..BURST_SIZE {
        let m = pool.alloc_frame(&frame(i)).expect("alloc");
        assert!(burst.push(m).is_ok());
    }
    assert!(burst.is_full());
    assert_eq!(pool.in_use(), BURST_SIZE as u32);
    let out = q0.tx_burst(&mut burst);
    assert_eq!((out.sent, out.dropped), (BURST_SIZE, 0));
    assert!(burst.is_empty());

    assert_eq!(q1.rx_burst(&mut burst), 0, "queue 1 saw queue 0's frames");
    let mut got = 0;
    for _ in 0..100 {
        got += q0.rx_burst(&mut burst);
        if got == BURST_SIZE {
            break;
        }
    }
    assert_eq!(got, BURST_SIZE);
    for (i, m) in burst.iter().enumerate() {
        assert_eq!(m.data(), frame(i).as_slice(), "frame {i} came back changed");
        assert_eq!(m.nb_segs(), 1);
    }

    // 2. Rewrite in place and forward on queue 1: the same mbufs move, no copy, no alloc.
    for m in burst.iter_mut() {
        m.data_mut()[0..6].copy_from_slice(&[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    }
    assert_eq!(q1.tx_burst(&mut burst).sent, BURST_SIZE);
    assert_eq!(pool.in_use(), BURST_SIZE as u32);
    assert_eq!(q1.rx_burst(&mut burst), BURST_SIZE);
    for (i, m) in burst.iter().enumerate() {
        let mut want = frame(i);
        want[0..6].copy_from_slice(&[0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(m.data(), want.as_slice());
    }
    burst.clear();
    assert_eq!(pool.in_use(), 0, "clear() freed the burst");

    // 3. Fill the ring behind tx queue 0 until it refuses: unsent frames are freed and
    //    counted, nothing leaks.
    let mut sent = 0;
    let mut dropped = 0;
    for _ in 0..40 {
        pool.alloc_bulk(&mut burst).expect("alloc_bulk");
        let out = q0.tx_burst(&mut burst);
        sent += out.sent;
        dropped += out.dropped;
    }
    assert_eq!(sent + dropped, 40 * BURST_SIZE);
    assert!(dropped > 0, "the ring never filled");
    assert_eq!(q0.stats().tx_dropped, dropped as u64);
    assert_eq!(pool.in_use(), sent as u32, "dropped frames were freed");

    // tx_burst_keep leaves what did not fit in the burst.
    pool.alloc_bulk(&mut burst).expect("alloc_bulk");
    assert_eq!(q0.tx_burst_keep(&mut burst), 0);
    assert_eq!(burst.len(), BURST_SIZE);
    burst.clear();

    let mut drained = 0;
    loop {
        let n = q0.rx_burst(&mut burst);
        if n == 0 {
            break;
        }
        drained += n;
        burst.clear();
    }
    assert_eq!(drained, sent);
    assert_eq!(pool.in_use(), 0);

    let stats = port.stats().expect("stats");
    assert!(
        stats.rx_packets >= (2 * BURST_SIZE + sent) as u64,
        "{stats:?}"
    );

    drop(q0);
    drop(q1);
    port.close().expect("close");

    // 4. A device attached after init (rte_dev_probe): net_null reports RSS hash functions,
    //    so 4 queues get RSS; what it is sent is freed by the driver.
    let null_id = eal.attach_vdev("net_null1").expect("attach net_null1");
    assert_eq!(eal.port_name(null_id).expect("name"), "net_null1");
    assert!(eal.port_info(null_id).expect("info").rss_offloads != 0);
    let cfg = PortConfig {
        queues: 4,
        ..PortConfig::default()
    };
    let mut null = Port::configure(&eal, null_id, &cfg, &pool).expect("configure null");
    assert!(null.rss_enabled());
    null.start().expect("start null");
    let mut q3 = null.queue(3).expect("queue 3");
    pool.alloc_bulk(&mut burst).expect("alloc_bulk");
    assert_eq!(q3.tx_burst(&mut burst).sent, BURST_SIZE);
    assert_eq!(pool.in_use(), 0, "net_null freed what it sent");
    drop(q3);
    null.close().expect("close null");

    let runtime_dir = eal.runtime_dir();
    drop(burst);
    // SAFETY: every port is closed and every mbuf freed; nothing uses DPDK after this.
    unsafe { eal.cleanup() }.expect("rte_eal_cleanup");
    // DPDK leaves its (empty) runtime directory behind; do not litter /var/run/dpdk.
    let _ = std::fs::remove_dir(runtime_dir);
}
