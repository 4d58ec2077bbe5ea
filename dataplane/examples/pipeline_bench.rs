//! Pipeline micro-benchmark: ns per packet through `process_burst` on one core, in memory
//! (no NIC), for the NAT forward path (established flows), NAT replies, and new connections
//! (SYNs: scheduling + flow insert). This is the per-core cost of vipd's packet logic; the NIC
//! and PMD add their own.
//!
//! ```text
//! cargo run --release -p vipd-dataplane --no-default-features --example pipeline_bench [flows]
//! ```
//!
//! Frames are rebuilt from a template before each burst (outside the timed region), so each
//! burst sees pristine input as from a NIC. Figures vary with the machine and its load.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark on fixed, valid input

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;
use vipd_dataplane::flow::{FlowTable, Timeouts};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::pipeline::{process_burst, Action, WorkerState};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::{checksum, MacAddr};

const BURST: usize = 32;
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

fn snapshot(backends: u32) -> Snapshot {
    let port = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.0.0.10/16".parse().expect("literal")),
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
    let specs: Vec<BackendSpec> = (0..backends)
        .map(|i| {
            let addr = Ipv4Addr::new(10, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1);
            neighbours.insert(
                IpAddr::V4(addr),
                MacAddr([2, 0, 0, 1, (i >> 8) as u8, i as u8]),
            );
            BackendSpec {
                id: i,
                addr: IpAddr::V4(addr),
                port: 8080,
                weight: 1,
                mode: FwdMode::Nat,
                ..Default::default()
            }
        })
        .collect();
    // The same real servers behind three services, one per mode: port 80 NAT, 443 DR,
    // 8443 TUN (4in4).
    let service = |port, mode, id_base| ServiceSpec {
        vip: IpAddr::V4(Ipv4Addr::new(10, 100, 0, 1)),
        proto: 6,
        port,
        scheduler: SchedulerKind::Maglev,
        backends: specs
            .iter()
            .map(|b| BackendSpec {
                id: b.id + id_base,
                port: if mode == FwdMode::Nat { b.port } else { port },
                mode,
                ..b.clone()
            })
            .collect(),
        ..Default::default()
    };
    let services = [
        service(80, FwdMode::Nat, 0),
        service(443, FwdMode::Dr, backends),
        service(8443, FwdMode::Tunnel, 2 * backends),
    ];
    Snapshot::build(1, vec![port], &services, &neighbours, 65537).expect("valid snapshot")
}

/// Ethernet + IPv4 + TCP (20 bytes) + 6 bytes payload: a 60-byte frame, like pktgen's 64 B.
fn tcp_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    src_mac: [u8; 6],
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::finish(checksum::sum(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    let pseudo = checksum::pseudo_v4(&src.octets(), &dst.octets(), 6, 26);
    let c = checksum::finish(pseudo + checksum::sum(&f[34..60]));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc000_0000 + (i / 50_000)),
        1024 + (i % 50_000) as u16,
    )
}

fn run(
    name: &str,
    frames: &[Vec<u8>],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now: &mut u64,
) -> f64 {
    let mut bufs: Vec<VecBuf> = (0..BURST).map(|_| VecBuf::new(&frames[0])).collect();
    let mut actions = [Action::Tx(0); BURST];
    let mut elapsed = 0u128;
    let mut packets = 0u64;
    let mut tx = 0u64;
    for chunk in frames.chunks(BURST) {
        for (b, f) in bufs.iter_mut().zip(chunk) {
            *b = VecBuf::new(f);
        }
        let n = chunk.len();
        let t = Instant::now();
        process_burst(&mut bufs[..n], &mut actions[..n], 0, worker, snap, *now);
        elapsed += t.elapsed().as_nanos();
        tx += actions[..n]
            .iter()
            .filter(|a| matches!(a, Action::Tx(_)))
            .count() as u64;
        packets += n as u64;
        *now += 1;
        black_box(&bufs);
    }
    let ns = elapsed as f64 / packets as f64;
    println!(
        "{name:<44} {ns:>8.1} ns/packet  {:>6.2} Mpps/core   ({packets} packets, {tx} transmitted)",
        1000.0 / ns
    );
    ns
}

fn main() {
    let flows: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let snap = snapshot(100);
    let mut worker = WorkerState::new(
        0,
        1,
        FlowTable::with_capacity(1 << 20, Timeouts::default()),
        4,
    );
    let vip = Ipv4Addr::new(10, 100, 0, 1);
    let router = [2, 0, 0, 0, 0, 1];
    let mut now = 1_000u64;
    println!("pipeline_bench: {flows} flows, 100 real servers per mode (NAT, DR, TUN), maglev, 60-byte TCP frames, bursts of {BURST}");
    for (mode, port) in [("NAT", 80u16), ("DR", 443), ("TUN 4in4", 8443)] {
        let syns: Vec<Vec<u8>> = (0..flows)
            .map(|i| {
                let (a, p) = client(i);
                tcp_frame(a, vip, p, port, 0x02, router)
            })
            .collect();
        run(
            &format!("new connections ({mode})"),
            &syns,
            &mut worker,
            &snap,
            &mut now,
        );
        let acks: Vec<Vec<u8>> = (0..flows * 4)
            .map(|i| {
                let (a, p) = client((i.wrapping_mul(2_654_435_761)) % flows);
                tcp_frame(a, vip, p, port, 0x10, router)
            })
            .collect();
        run(
            &format!("established, client -> real server ({mode})"),
            &acks,
            &mut worker,
            &snap,
            &mut now,
        );
    }
    let replies: Vec<Vec<u8>> = (0..flows * 4)
        .map(|i| {
            let c = (i.wrapping_mul(2_654_435_761)) % flows;
            let (a, p) = client(c);
            // The real server Maglev picked for this client is unknown here: ask the table.
            let key = vipd_dataplane::flow::FlowKey::v4(a, vip, p, 80, 6);
            let id = snap.services[0].pick_consistent(key.hash()).unwrap_or(0);
            let b = snap.backend(id).map(|b| b.addr).unwrap_or(IpAddr::V4(vip));
            let IpAddr::V4(rs) = b else {
                unreachable!("IPv4 bench")
            };
            let mac = snap
                .backend(id)
                .and_then(|b| b.next_hop_mac)
                .map(|m| m.0)
                .unwrap_or(router);
            tcp_frame(rs, a, 8080, p, 0x10, mac)
        })
        .collect();
    run(
        "established, real server -> client (NAT reply)",
        &replies,
        &mut worker,
        &snap,
        &mut now,
    );
    let junk: Vec<Vec<u8>> = (0..flows)
        .map(|i| tcp_frame(client(i).0, Ipv4Addr::new(10, 9, 9, 9), 1, 2, 0x02, router))
        .collect();
    run(
        "not for us (classified and dropped)",
        &junk,
        &mut worker,
        &snap,
        &mut now,
    );
    println!("flow table: {} connections", worker.flows.len());
}
