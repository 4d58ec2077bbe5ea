//! DPDK integration of the exception thread, with a `net_ring` loopback port standing in for
//! the tap: what the thread writes "to the kernel" comes straight back as if the kernel had
//! sent it, so one run crosses both directions. Frames are checked byte for byte, parcels for
//! their port and kind, the counters for every frame and every drop. A second loopback
//! stands in for a VLAN's kernel interface: its frames leave the ring tagged, reach the
//! "kernel" untagged and come back tagged again.
//!
//! EAL initialises once per process, so this file holds a single test (one process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use etherparse::{PacketBuilder, SlicedPacket, VlanSlice};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vipd_control::kernel::counters::{InterfaceCounters, KernelCounter, KernelCounters};
use vipd_control::kernel::exception::{worker_for, ExceptionPath, Tap};
use vipd_dataplane::io::dpdk::{Eal, Mempool, Port, PortConfig, DEFAULT_DATA_ROOM, SOCKET_ANY};
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::wire::MacAddr;
use vipd_dataplane::worker::{ParcelKind, Rings};

const PORT_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x0a];
const PEER_MAC: [u8; 6] = [0x02, 0x77, 0, 0, 0, 0x15];

/// A TCP segment of connection `conn` from the port's MAC, `payload` bytes long.
fn segment(src_mac: [u8; 6], conn: u16, seq: u32, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, PEER_MAC)
        .ipv4([10, 77, 0, 10], [10, 77, 0, 21], 64)
        .tcp(40000 + conn, 8080, seq, 1000);
    let body: Vec<u8> = (0..payload).map(|i| (i as u32 + seq) as u8).collect();
    let mut out = Vec::new();
    b.write(&mut out, &body).unwrap();
    out
}

/// `frame` tagged with VLAN `id` (priority 0), the tag written by etherparse.
fn tagged(frame: &[u8], id: u16) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = p.link else {
        panic!("not Ethernet II")
    };
    let mut out = Vec::new();
    etherparse::Ethernet2Header {
        source: eth.source(),
        destination: eth.destination(),
        ether_type: etherparse::EtherType::VLAN_TAGGED_FRAME,
    }
    .write(&mut out)
    .unwrap();
    etherparse::SingleVlanHeader {
        pcp: etherparse::VlanPcp::ZERO,
        drop_eligible_indicator: false,
        vlan_id: etherparse::VlanId::try_new(id).unwrap(),
        ether_type: eth.ether_type(),
    }
    .write(&mut out)
    .unwrap();
    out.extend_from_slice(eth.payload_slice());
    out
}

#[test]
fn exception_thread_moves_frames_both_ways_and_counts_drops() {
    let prefix = format!("vipd-test-exc-{}", std::process::id());
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
        "--log-level",
        "lib.eal:warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let pool = Mempool::create(&eal, "exc_test", 2047, 32, DEFAULT_DATA_ROOM, SOCKET_ANY)
        .expect("mempool");
    let id = eal.port_by_name("net_ring0").expect("net_ring0");
    let cfg = PortConfig {
        queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        rss: false,
        rx_interrupt: false,
    };
    let mut port = Port::configure(&eal, id, &cfg, &pool).expect("configure");
    port.start().expect("start");
    let vlan_id = eal.port_by_name("net_ring1").expect("net_ring1");
    let mut vlan_port = Port::configure(&eal, vlan_id, &cfg, &pool).expect("configure");
    vlan_port.start().expect("start");
    // net_ring has no rx interrupt: the thread falls back to timed sleeps.
    let tap = Tap::new(
        0,
        None,
        port.queue(0).expect("queue"),
        MacAddr(PORT_MAC),
        1500,
        1500,
    );
    let vlan_tap = Tap::new(
        0,
        Some(200),
        vlan_port.queue(0).expect("queue"),
        MacAddr(PORT_MAC),
        1500,
        1500,
    );
    let rings = Rings::new(2, 1024);
    let counters = KernelCounters {
        interfaces: vec![
            InterfaceCounters::new("k0", "lan", 0),
            InterfaceCounters::new("k200", "lan.200", 0).in_vlan(Some(200)),
        ],
    };

    // 200 segments of 8 connections, as the wire would hand them to the kernel; one frame
    // longer than the kernel interface's MTU; one whose source MAC is not the port's (it
    // reaches the "kernel", and its way back is refused).
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let f = segment(PORT_MAC, (i % 8) as u16, i, 100 + (i as usize % 1300));
        rings
            .to_kernel
            .push((0, pool.alloc_frame(&f).expect("alloc")))
            .map_err(|_| ())
            .expect("ring room");
        sent.push(f);
    }
    let too_big = segment(PORT_MAC, 0, 9999, 1500);
    rings
        .to_kernel
        .push((0, pool.alloc_frame(&too_big).expect("alloc")))
        .map_err(|_| ())
        .unwrap();
    let foreign = segment([0x02, 0, 0, 0, 0, 0x99], 0, 7777, 10);
    rings
        .to_kernel
        .push((0, pool.alloc_frame(&foreign).expect("alloc")))
        .map_err(|_| ())
        .unwrap();

    // 30 frames of VLAN 200 on port 0, tagged as the wire has them.
    let mut sent_vlan = Vec::new();
    for i in 0..30u32 {
        let f = tagged(
            &segment(PORT_MAC, 8 + (i % 8) as u16, i, 60 + i as usize * 40),
            200,
        );
        rings
            .to_kernel
            .push((0, pool.alloc_frame(&f).expect("alloc")))
            .map_err(|_| ())
            .expect("ring room");
        sent_vlan.push(f);
    }

    let stop = AtomicBool::new(false);
    let ic = &counters.interfaces[0];
    let vc = &counters.interfaces[1];
    std::thread::scope(|s| {
        let path = ExceptionPath {
            taps: vec![tap, vlan_tap],
            rings: &rings,
            counters: &counters,
            stop: &stop,
        };
        s.spawn(move || path.run());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && (ic.get(KernelCounter::FromKernelPackets) + ic.get(KernelCounter::DropForeignSource)
                < 201
                || vc.get(KernelCounter::FromKernelPackets) < 30)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
    });

    assert_eq!(ic.get(KernelCounter::ToKernelPackets), 201);
    assert_eq!(
        ic.get(KernelCounter::ToKernelBytes),
        sent.iter().map(|f| f.len() as u64).sum::<u64>() + foreign.len() as u64
    );
    assert_eq!(ic.get(KernelCounter::DropTooBigForKernel), 1);
    assert_eq!(ic.get(KernelCounter::DropForeignSource), 1);
    assert_eq!(ic.get(KernelCounter::FromKernelPackets), 200);
    assert_eq!(ic.get(KernelCounter::DropInboxFull), 0);
    assert_eq!(ic.get(KernelCounter::DropTapFull), 0);
    // The VLAN's frames: into its tap without their tag, out of it with the tag again.
    assert_eq!(vc.get(KernelCounter::ToKernelPackets), 30);
    assert_eq!(
        vc.get(KernelCounter::ToKernelBytes),
        sent_vlan.iter().map(|f| f.len() as u64 - 4).sum::<u64>()
    );
    assert_eq!(vc.get(KernelCounter::FromKernelPackets), 30);
    assert_eq!(
        vc.get(KernelCounter::FromKernelBytes),
        sent_vlan.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    for c in KernelCounter::ALL.iter().filter(|c| c.is_drop()) {
        assert_eq!(vc.get(*c), 0, "{c:?}");
    }

    // Every frame back, intact, as a Transmit parcel for port 0; each connection through
    // one inbox only (its frames leave in order through one TX queue).
    let mut got = Vec::new();
    let mut got_vlan = Vec::new();
    let mut inbox_of_conn: HashMap<u16, usize> = HashMap::new();
    for (w, inbox) in rings.inboxes.iter().enumerate() {
        while let Some(p) = inbox.pop() {
            assert_eq!((p.port, p.kind), (0, ParcelKind::Transmit));
            let frame = p.mbuf.data().to_vec();
            if let Ok(SlicedPacket {
                vlan: Some(VlanSlice::SingleVlan(tag)),
                ..
            }) = SlicedPacket::from_ethernet(&frame)
            {
                assert_eq!(tag.vlan_identifier().value(), 200);
                // The worker is picked by the connection, as for an untagged frame.
                let mut untagged = frame.clone();
                untagged.drain(12..16);
                assert_eq!(worker_for(&untagged, 2), w, "VLAN frame's worker");
                got_vlan.push(frame);
                continue;
            }
            let sport = u16::from_be_bytes([frame[34], frame[35]]) - 40000;
            assert_eq!(
                *inbox_of_conn.entry(sport).or_insert(w),
                w,
                "connection {sport} split over inboxes"
            );
            got.push(frame);
        }
    }
    assert_eq!(got.len(), 200);
    let mut want = sent.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "frames changed on the way");
    assert_eq!(got_vlan.len(), 30);
    let mut want_vlan = sent_vlan.clone();
    want_vlan.sort();
    got_vlan.sort();
    assert_eq!(got_vlan, want_vlan, "VLAN frames changed on the way");
    assert!(
        inbox_of_conn.values().any(|&w| w == 0) && inbox_of_conn.values().any(|&w| w == 1),
        "8 connections all on one worker: {inbox_of_conn:?}"
    );
    drop(rings);
    port.close().expect("close");
    vlan_port.close().expect("close");
}
