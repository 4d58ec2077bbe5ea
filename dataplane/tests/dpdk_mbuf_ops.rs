//! DPDK integration: prepend/adj/trim/append on real mbufs behave like the in-memory
//! `VecBuf` the pipeline tests use; bursts and drops return every mbuf to its pool.
//!
//! EAL initialises once per process, so this file holds a single test (one process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test
#![cfg(feature = "dpdk")]

use vipd_dataplane::io::dpdk::{
    self, DpdkError, Eal, MbufBurst, Mempool, BURST_SIZE, DEFAULT_DATA_ROOM, HEADROOM, SOCKET_ANY,
};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;

/// The same edit sequence on any PacketBuf; returns the frames seen after each step.
fn edit<B: PacketBuf>(b: &mut B) -> Vec<Vec<u8>> {
    let mut seen = vec![b.data().to_vec()];
    // Encapsulate: 20 bytes in front (as TUN does), written, then removed again.
    assert!(b.prepend(20));
    b.data_mut()[..20].fill(0x45);
    seen.push(b.data().to_vec());
    assert!(b.adj(20));
    seen.push(b.data().to_vec());
    // Trim, then grow back with known bytes.
    assert!(b.trim_to(40));
    seen.push(b.data().to_vec());
    assert!(!b.trim_to(41));
    assert!(b.append(8));
    let n = b.data().len();
    b.data_mut()[n - 8..].fill(0xee);
    seen.push(b.data().to_vec());
    // Refusals leave the frame as it was.
    assert!(!b.adj(49));
    assert!(!b.prepend(usize::from(HEADROOM) + 1));
    assert!(!b.append(1 << 20));
    seen.push(b.data().to_vec());
    seen
}

/// The fields `Mbuf` reads in Rust (through bindgen's layout of `struct rte_mbuf`) agree
/// with DPDK's own static inline accessors, compiled in C in the shim.
fn matches_dpdk(m: &dpdk::Mbuf) {
    let raw = m.as_ptr();
    // SAFETY: raw is a valid mbuf owned by m for the duration of these reads.
    unsafe {
        let mut len = 0u16;
        let p = dpdk_sys::vipd_rte_pktmbuf_data(raw, &mut len);
        assert_eq!(m.data().as_ptr(), p.cast::<u8>().cast_const(), "mtod");
        assert_eq!(m.data().len(), usize::from(len), "data_len");
        assert_eq!(
            m.pkt_len(),
            dpdk_sys::vipd_rte_pktmbuf_pkt_len(raw),
            "pkt_len"
        );
        assert_eq!(
            m.nb_segs(),
            dpdk_sys::vipd_rte_pktmbuf_nb_segs(raw),
            "nb_segs"
        );
        assert_eq!(
            m.headroom(),
            usize::from(dpdk_sys::vipd_rte_pktmbuf_headroom(raw)),
            "headroom"
        );
        assert_eq!(
            m.tailroom(),
            usize::from(dpdk_sys::vipd_rte_pktmbuf_tailroom(raw)),
            "tailroom"
        );
        let mut valid = 0;
        let h = dpdk_sys::vipd_rte_pktmbuf_rss_hash(raw, &mut valid);
        assert_eq!(m.rss_hash(), (valid != 0).then_some(h), "rss hash");
    }
}

#[test]
fn mbuf_edits_match_vecbuf_and_nothing_leaks() {
    let prefix = format!("vipd-test-mbuf-{}", std::process::id());
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
        "--log-level",
        "lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let pool =
        Mempool::create(&eal, "mbuf_test", 255, 0, DEFAULT_DATA_ROOM, SOCKET_ANY).expect("mempool");

    let frame: Vec<u8> = (0..60u8).collect();
    let mut m = pool.alloc_frame(&frame).expect("alloc_frame");
    assert_eq!(m.headroom(), usize::from(HEADROOM));
    assert_eq!(m.data(), frame.as_slice());
    assert_eq!(m.pkt_len(), 60);
    assert_eq!(m.rss_hash(), None);
    matches_dpdk(&m);
    let mut v = VecBuf::new(&frame);
    assert_eq!(edit(&mut m), edit(&mut v), "mbuf and VecBuf disagree");
    matches_dpdk(&m);
    assert!(m.prepend(14));
    matches_dpdk(&m);
    assert_eq!(pool.in_use(), 1);
    drop(m);
    assert_eq!(pool.in_use(), 0, "drop freed the mbuf");

    // A frame larger than the data room is refused, and its mbuf returned.
    let big = vec![0u8; usize::from(DEFAULT_DATA_ROOM)];
    assert!(matches!(
        pool.alloc_frame(&big),
        Err(DpdkError::FrameTooLarge { .. })
    ));
    assert_eq!(pool.in_use(), 0);

    // Bursts: bulk alloc, retain, drain, pop, drop.
    let mut burst = MbufBurst::new();
    assert_eq!(pool.alloc_bulk(&mut burst).expect("bulk"), BURST_SIZE);
    for (i, m) in burst.iter_mut().enumerate() {
        assert!(m.append(1));
        m.data_mut()[0] = i as u8;
    }
    assert_eq!(burst.retain_mut(|m| m.data()[0] % 2 == 0), BURST_SIZE / 2);
    assert_eq!(pool.in_use(), (BURST_SIZE / 2) as u32);
    let firsts: Vec<u8> = burst.iter().map(|m| m.data()[0]).collect();
    assert_eq!(firsts, (0..BURST_SIZE as u8).step_by(2).collect::<Vec<_>>());
    let mut other = MbufBurst::new();
    for m in burst.drain().take(3) {
        assert!(other.push(m).is_ok());
    }
    assert!(burst.is_empty());
    assert_eq!(pool.in_use(), 3, "un-yielded drained frames were freed");
    assert_eq!(other.pop().map(|m| m.data()[0]), Some(4));
    drop(other);
    assert_eq!(pool.in_use(), 0);

    // Pool exhaustion is an error, not a crash.
    let mut held = Vec::new();
    loop {
        match pool.alloc() {
            Ok(m) => held.push(m),
            Err(e) => {
                assert!(matches!(e, DpdkError::PoolEmpty { .. }), "{e}");
                break;
            }
        }
    }
    assert_eq!(held.len(), 255);
    drop(held);
    assert_eq!(pool.in_use(), 0);

    // Clocks and lcores.
    assert!(dpdk::tsc_hz() > 0);
    let t0 = dpdk::tsc_cycles();
    assert!(dpdk::tsc_cycles() > t0);
    assert_eq!(dpdk::lcore_id(), Some(eal.main_lcore()));
    let id = std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(dpdk::lcore_id(), None);
            let id = dpdk::register_thread(&eal).expect("register");
            dpdk::unregister_thread(&eal);
            id
        })
        .join()
        .expect("thread")
    });
    assert_ne!(id, eal.main_lcore());

    let runtime_dir = eal.runtime_dir();
    drop(burst);
    // SAFETY: every mbuf is freed and no other thread is in DPDK; nothing uses it after this.
    unsafe { eal.cleanup() }.expect("rte_eal_cleanup");
    // DPDK leaves its (empty) runtime directory behind; do not litter /var/run/dpdk.
    let _ = std::fs::remove_dir(runtime_dir);
}
