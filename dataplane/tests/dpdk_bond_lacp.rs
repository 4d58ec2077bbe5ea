//! DPDK integration: an 802.3ad bond (net_bonding mode 4) over two `net_ring` members. Its
//! LACPDUs leave only from inside tx bursts on the bond (none while nobody bursts, some once
//! `PortQueue::tx_empty_burst` runs), and `Port::lacp_member` reads each member's state.
//!
//! EAL initialises once per process, so this file holds a single test (one process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test
#![cfg(feature = "dpdk")]

use std::time::{Duration, Instant};
use vipd_dataplane::io::dpdk::{
    Eal, LacpSelection, LacpState, Mempool, Port, PortConfig, DEFAULT_DATA_ROOM, SOCKET_ANY,
};

#[test]
fn an_lacp_bond_sends_lacpdus_from_empty_bursts_and_reports_its_members() {
    let prefix = format!("vipd-test-lacp-{}", std::process::id());
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
        "--vdev",
        "net_ring1",
        "--vdev",
        "net_bonding0,mode=4,slave=net_ring0,slave=net_ring1,xmit_policy=l34",
        "--log-level",
        "lib.eal:warning",
        "--log-level",
        "pmd.net.bonding:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let members = [
        eal.port_by_name("net_ring0").expect("net_ring0"),
        eal.port_by_name("net_ring1").expect("net_ring1"),
    ];
    let watches = members.map(|id| eal.watch(id).expect("watch"));
    let bond_id = eal.port_by_name("net_bonding0").expect("net_bonding0");
    let pool =
        Mempool::create(&eal, "lacp_test", 4095, 32, DEFAULT_DATA_ROOM, SOCKET_ANY).expect("pool");
    let cfg = PortConfig {
        queues: 1,
        rx_desc: 256,
        tx_desc: 256,
        rss: false,
        rx_interrupt: false,
    };
    let mut bond = Port::configure(&eal, bond_id, &cfg, &pool).expect("configure the bond");
    assert_eq!(bond.driver(), "net_bonding");
    bond.start().expect("start the bond");
    let mut q = bond.queue(0).expect("queue 0");

    // The PMD's state machine (every 100 ms) queues a member's first LACPDU within a second
    // (with bursts they leave by then); without a tx burst on the bond none reaches a member.
    std::thread::sleep(Duration::from_millis(2000));
    let sent = |w: &vipd_dataplane::io::dpdk::PortWatch| w.stats().expect("stats").tx_packets;
    assert_eq!(
        watches.map(|w| sent(&w)),
        [0, 0],
        "LACPDUs left without a burst"
    );

    // Empty bursts every 10 ms, as a worker gives an 802.3ad port: each member sends.
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        q.tx_empty_burst();
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = watches.map(|w| sent(&w));
    assert!(after.iter().all(|&n| n > 0), "members sent {after:?}");

    // Each member's state: active, aggregation; net_ring is a 10 Gbit/s full-duplex link, so
    // DPDK's key is its 10G code (0x10) shifted left plus the full-duplex bit.
    for id in members {
        let m = bond.lacp_member(id).expect("member state");
        assert!(
            m.actor.has(LacpState::ACTIVE | LacpState::AGGREGATION),
            "{m:?}"
        );
        assert_eq!(m.actor_key, (0x10 << 1) | 1, "{m:?}");
        assert!(members.contains(&m.aggregator), "{m:?}");
        assert_ne!(m.selection, LacpSelection::Standby, "{m:?}");
    }
    // Not a member of the bond, and not a bond: errors, not garbage.
    assert!(bond.lacp_member(bond_id).is_err());
    assert!(bond.lacp_member(999).is_err());
    drop(q);
}
