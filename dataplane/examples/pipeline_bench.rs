//! Pipeline micro-benchmark: ns per packet through `process_burst` on one core, in memory
//! (no NIC), for the NAT forward path (established flows), NAT replies, and new connections
//! (SYNs: scheduling + flow insert), IPv4 and (the `nat6-*` and `dr6-*` cases) IPv6. This is the per-core cost of vipd's packet logic; the NIC
//! and PMD add their own.
//!
//! ```text
//! cargo run --release -p vipd-dataplane --no-default-features --example pipeline_bench -- [--json] [--only CASE] [--small-pages] [--nic-checksum] [--general] [flows]
//! ```
//!
//! `--general` turns the workers' fast path off: the general path's cost of the same frames.
//!
//! Frames are rebuilt from a template before each burst (outside the timed region), so each
//! burst sees pristine input as from a NIC. Figures vary with the machine and its load.
//!
//! The pipeline's millisecond clock advances by one every [`PACKETS_PER_MS`] packets: the
//! clock of a worker forwarding 10 Mpps, so work done once per tick (the flow table's expiry
//! sweep) weighs per packet as on a loaded worker. The sweep's own cost per tick is printed
//! on its own line.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark on fixed, valid input

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vipd_dataplane::counters::WorkerCounters;
use vipd_dataplane::dispatch::{dispatch, Outputs, StagedBytes};
use vipd_dataplane::flow::{FlowTable, Pages, Timeouts};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::{PacketBuf, RxChecksum};
use vipd_dataplane::pipeline::{
    process_burst, process_burst_hashed, process_steered, process_steered_burst, Action,
    WorkerState,
};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::{checksum, MacAddr};

const BURST: usize = 32;
/// Packets per millisecond of the pipeline's clock (see the module documentation).
const PACKETS_PER_MS: u64 = 10_000;

/// The pipeline's clock: milliseconds that advance with the packets processed.
struct Clock {
    ms: u64,
    packets: u64,
}

impl Clock {
    fn new(ms: u64) -> Self {
        Clock { ms, packets: 0 }
    }

    /// `n` packets went by.
    fn advance(&mut self, n: usize) {
        self.packets += n as u64;
        self.ms += self.packets / PACKETS_PER_MS;
        self.packets %= PACKETS_PER_MS;
    }
}
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

/// The IPv6 counterpart of [`snapshot`]: one port (fd00::10/48, gateway fd00::1), the real
/// servers on-link behind an IPv6 VIP's services: port 80 NAT (NAT66), 443 DR.
fn snapshot6(backends: u32) -> Snapshot {
    let port = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv6: Some("fd00::10/48".parse().expect("literal")),
        gateway_v6: Some(ROUTER6),
        mtu: 1500,
        ..Default::default()
    };
    let rs = |i: u32| Ipv6Addr::new(0xfd00, 0, 1, 0, 0, 0, 0, i as u16 + 1);
    let mut neighbours = HashMap::new();
    neighbours.insert(IpAddr::V6(ROUTER6), MacAddr([2, 0, 0, 0, 0, 1]));
    for i in 0..backends {
        neighbours.insert(
            IpAddr::V6(rs(i)),
            MacAddr([2, 0, 0, 1, (i >> 8) as u8, i as u8]),
        );
    }
    // The same real servers behind both services, ids 0.. for NAT and backends.. for DR.
    let service = |port, mode, id_base| ServiceSpec {
        vip: IpAddr::V6(VIP6),
        proto: 6,
        port,
        scheduler: SchedulerKind::Maglev,
        backends: (0..backends)
            .map(|i| BackendSpec {
                id: i + id_base,
                addr: IpAddr::V6(rs(i)),
                port: if mode == FwdMode::Nat { 8080 } else { port },
                weight: 1,
                mode,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let services = [
        service(80, FwdMode::Nat, 0),
        service(443, FwdMode::Dr, backends),
    ];
    Snapshot::build(1, vec![port], &services, &neighbours, 65537).expect("valid snapshot")
}

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Ethernet + IPv6 + TCP (20 bytes) + 6 bytes payload: an 80-byte frame.
fn tcp6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    src_mac: [u8; 6],
) -> Vec<u8> {
    let mut f = vec![0u8; 80];
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    let ip = &mut f[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&26u16.to_be_bytes());
    ip[6] = 6;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let tcp = &mut f[54..74];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    let pseudo = checksum::pseudo_v6(&src.octets(), &dst.octets(), 6, 26);
    let c = checksum::finish(pseudo + checksum::sum(&f[54..80]));
    f[70..72].copy_from_slice(&c.to_be_bytes());
    f
}

/// Client `i`'s IPv6 address and port (as [`client`]'s, in 2001:db8::/96).
fn client6(i: u32) -> (Ipv6Addr, u16) {
    let (a, p) = client(i);
    (
        Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(u32::from(a))),
        p,
    )
}

/// Client `i`'s packet to the VIP's `port` with TCP `flags`, over IPv6 when `v6`.
fn to_vip(v6: bool, i: u32, port: u16, flags: u8) -> Vec<u8> {
    if v6 {
        let (a, p) = client6(i);
        tcp6_frame(a, VIP6, p, port, flags, ROUTER_MAC)
    } else {
        let (a, p) = client(i);
        tcp_frame(a, VIP4, p, port, flags, ROUTER_MAC)
    }
}

/// A plain ACK from the NAT real server of client `i`'s connection to port 80 (the one
/// Maglev picks for it, asked of the snapshot), over IPv6 when `v6`.
fn from_rs(v6: bool, snap: &Snapshot, i: u32) -> Vec<u8> {
    let (key, p) = if v6 {
        let (a, p) = client6(i);
        (vipd_dataplane::flow::FlowKey::v6(a, VIP6, p, 80, 6), p)
    } else {
        let (a, p) = client(i);
        (vipd_dataplane::flow::FlowKey::v4(a, VIP4, p, 80, 6), p)
    };
    let id = snap.services[0].pick_consistent(key.hash()).unwrap_or(0);
    let b = snap.backend(id).expect("a NAT real server");
    let mac = b.next_hop_mac.map(|m| m.0).unwrap_or(ROUTER_MAC);
    match (b.addr, key.src_ip()) {
        (IpAddr::V4(rs), IpAddr::V4(c)) => tcp_frame(rs, c, 8080, p, 0x10, mac),
        (IpAddr::V6(rs), IpAddr::V6(c)) => tcp6_frame(rs, c, 8080, p, 0x10, mac),
        _ => unreachable!("one family per snapshot"),
    }
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

/// `--nic-checksum`: frames arrive with the NIC's "IPv4 checksum good" verdict (RX checksum
/// offload), so the pipeline skips the software check.
static NIC_CHECKSUM: AtomicBool = AtomicBool::new(false);

/// `--general`: the workers' fast path off.
static GENERAL: AtomicBool = AtomicBool::new(false);

/// Frame `i` of a case (built outside the timed region).
type FrameFn<'a> = &'a dyn Fn(u32) -> Vec<u8>;

/// The worker's outputs in memory: a transmit stage per port (what `worker.rs` fills before
/// `rte_eth_tx_burst`), the queue "transmitting" moves the frames to a sent list (as a NIC
/// takes mbuf pointers), drops go to a freed list; both lists are emptied outside the timed
/// region.
struct MemOutputs {
    stages: Vec<(Vec<Frame>, StagedBytes)>,
    sent: Vec<Frame>,
    freed: Vec<Frame>,
}

/// A frame as the worker path moves it: a pointer to its buffer (an mbuf handle's size).
type Frame = Box<VecBuf>;

impl MemOutputs {
    fn new(ports: usize) -> Self {
        MemOutputs {
            stages: (0..ports)
                .map(|_| (Vec::with_capacity(BURST), StagedBytes::default()))
                .collect(),
            sent: Vec::with_capacity(4 * BURST),
            freed: Vec::with_capacity(4 * BURST),
        }
    }

    /// The end of a loop iteration: every stage goes to its queue.
    fn flush(&mut self, counters: &WorkerCounters) {
        for (stage, bytes) in &mut self.stages {
            let n = stage.len();
            if n > 0 {
                self.sent.append(stage);
                bytes.sent(n, 0, counters);
            }
        }
    }
}

impl Outputs<Frame> for MemOutputs {
    fn tx(&mut self, port: u16, b: Frame, len: usize, c: &WorkerCounters) -> Result<(), Frame> {
        let Some((stage, bytes)) = self.stages.get_mut(usize::from(port)) else {
            return Err(b);
        };
        if stage.len() == BURST {
            let n = stage.len();
            self.sent.append(stage);
            bytes.sent(n, 0, c);
        }
        stage.push(b);
        bytes.record(len);
        Ok(())
    }
    fn free(&mut self, b: Frame) {
        self.freed.push(b);
    }
    fn to_control(&mut self, _: u16, b: Frame) -> bool {
        self.freed.push(b);
        true
    }
    fn to_kernel(&mut self, _: u16, b: Frame) -> bool {
        self.freed.push(b);
        true
    }
    fn steer(&mut self, _: u16, _: u16, b: Frame, _: Option<u64>) -> bool {
        self.freed.push(b);
        true
    }
}

/// The timed call: what a worker does with a received burst (the pipeline, the dispatch of
/// every frame to its output, the transmit stages flushed). Not inlined, so `valgrind
/// --tool=callgrind --toggle-collect=pipeline_bench::timed_burst` counts exactly these
/// instructions.
#[inline(never)]
fn timed_burst(
    bufs: &mut Vec<Frame>,
    actions: &mut [Action],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
    out: &mut MemOutputs,
) {
    let n = bufs.len();
    process_burst(bufs, &mut actions[..n], 0, worker, snap, now);
    dispatch(out, bufs.drain(..), &actions[..n], &[], 0, &worker.counters);
    out.flush(&worker.counters);
}

/// Run `packets` frames through the pipeline in bursts; ns per packet (timed bursts only).
fn run(
    frame: FrameFn,
    packets: u32,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now: &mut Clock,
    timed: bool,
) -> (f64, u64) {
    let mut bufs: Vec<Frame> = Vec::with_capacity(BURST);
    let mut out = MemOutputs::new(snap.ports.len());
    let mut actions = [Action::Tx(0); BURST];
    let mut elapsed = 0u128;
    let mut tx = 0u64;
    let mut i = 0u32;
    while i < packets {
        let n = (packets - i).min(BURST as u32) as usize;
        bufs.clear();
        for k in 0..n {
            let mut b = VecBuf::new(&frame(i + k as u32));
            if NIC_CHECKSUM.load(Ordering::Relaxed) {
                b.set_rx_ipv4_checksum(RxChecksum::Good);
            }
            bufs.push(Box::new(b));
        }
        i += n as u32;
        if timed {
            let t = Instant::now();
            timed_burst(&mut bufs, &mut actions, worker, snap, now.ms, &mut out);
            elapsed += t.elapsed().as_nanos();
        } else {
            process_burst(&mut bufs, &mut actions[..n], 0, worker, snap, now.ms);
        }
        tx += actions[..n]
            .iter()
            .filter(|a| matches!(a, Action::Tx(_)))
            .count() as u64;
        now.advance(n);
        black_box(&out.sent);
        out.sent.clear();
        out.freed.clear();
    }
    (elapsed as f64 / f64::from(packets.max(1)), tx)
}

/// The in-memory ceiling of the same loop: what touching each frame costs without vipd's
/// logic (read the Ethernet header, swap the MACs: testpmd's macswap on a VecBuf).
#[inline(never)]
fn macswap_burst(bufs: &mut [VecBuf]) {
    for b in bufs.iter_mut() {
        let d = b.data_mut();
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&d[0..6]);
        d.copy_within(6..12, 0);
        d[6..12].copy_from_slice(&dst);
    }
}

fn macswap_ns(frame: FrameFn, packets: u32) -> f64 {
    let mut bufs: Vec<VecBuf> = (0..BURST).map(|_| VecBuf::new(&frame(0))).collect();
    let mut elapsed = 0u128;
    let mut i = 0;
    while i < packets {
        for (k, b) in bufs.iter_mut().enumerate() {
            *b = VecBuf::new(&frame(i + k as u32));
        }
        let t = Instant::now();
        macswap_burst(&mut bufs);
        elapsed += t.elapsed().as_nanos();
        black_box(&bufs);
        i += BURST as u32;
    }
    elapsed as f64 / f64::from(packets)
}

/// Dependent random reads of one cache line each in an array of `bytes`: the latency of the
/// memory a flow table of that size lives in (the other ceiling of a lookup).
fn random_line_ns(bytes: usize, reads: u32) -> f64 {
    let lines = (bytes / 64).max(2);
    // A random cyclic permutation (Sattolo), so every read depends on the previous one.
    let mut next: Vec<u64> = (0..lines as u64).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        next.swap(i, j);
    }
    let mut table = vec![[0u64; 8]; lines];
    for (i, n) in next.iter().enumerate() {
        table[i][0] = *n;
    }
    let mut p = 0usize;
    let t = Instant::now();
    for _ in 0..reads {
        p = table[p][0] as usize;
    }
    black_box(p);
    t.elapsed().as_nanos() as f64 / f64::from(reads)
}

/// Software steering with two workers: worker 0 receives established NAT packets of flows
/// owned by worker 1 (what RSS does to (N-1)/N of them), classifies them and hands them over
/// (`steer-out`, ns per packet on the receiving core); worker 1 processes them again
/// (`process_steered_burst` with the flow hashes the receiver computed, as the worker's inbox
/// does: a staged burst; `steer-in`, ns per packet on the owner). The ring hop
/// between the cores comes on top. Returns (out ns, in ns, packets).
fn steering(snap: &Snapshot, flows: u32, capacity: usize, now: &mut Clock) -> (f64, f64, u32) {
    let vip = Ipv4Addr::new(10, 100, 0, 1);
    let router = [2, 0, 0, 0, 0, 1];
    let table = || daemon_table(capacity, Pages::default());
    let mut w0 = WorkerState::new(0, 2, table(), 4);
    let mut w1 = WorkerState::new(1, 2, table(), 4);
    let owned: Vec<(Ipv4Addr, u16)> = (0..flows * 2)
        .map(client)
        .filter(|(a, p)| {
            w1.owner_of(&vipd_dataplane::flow::key::to_mapped(IpAddr::V4(*a)), *p) == 1
        })
        .take(flows as usize)
        .collect();
    // Each connection opened and established (SYN, then its first ACK, which moves the TCP
    // state), untimed, so that the timed packets are established ones, as in
    // `nat-established`.
    for &(a, p) in &owned {
        for flags in [0x02, 0x10] {
            let mut b = VecBuf::new(&tcp_frame(a, vip, p, 80, flags, router));
            black_box(process_steered(&mut b, None, 0, &mut w1, snap, now.ms));
        }
    }
    let packets = owned.len().clamp(1, 1 << 18) as u32;
    let frame = |i: u32| {
        let (a, p) = owned[(i.wrapping_mul(2_654_435_761) as usize) % owned.len()];
        tcp_frame(a, vip, p, 80, 0x10, router)
    };
    let mut actions = [Action::Tx(0); BURST];
    let mut hashes = [None; BURST];
    let (mut t_out, mut t_in, mut i) = (0u128, 0u128, 0u32);
    while i < packets {
        let n = (packets - i).min(BURST as u32) as usize;
        let mut bufs: Vec<VecBuf> = (0..n).map(|k| VecBuf::new(&frame(i + k as u32))).collect();
        i += n as u32;
        let t = Instant::now();
        process_burst_hashed(
            &mut bufs,
            &mut actions[..n],
            &mut hashes[..n],
            0,
            &mut w0,
            snap,
            now.ms,
        );
        t_out += t.elapsed().as_nanos();
        let t = Instant::now();
        let mut steered_actions = [Action::Tx(0); BURST];
        process_steered_burst(
            &mut bufs,
            &mut steered_actions[..n],
            &[0; BURST][..n],
            &hashes[..n],
            &mut w1,
            snap,
            now.ms,
        );
        black_box(&steered_actions);
        t_in += t.elapsed().as_nanos();
        now.advance(n);
    }
    let p = f64::from(packets);
    (t_out as f64 / p, t_in as f64 / p, packets)
}

/// A worker's table as the daemon builds it for `capacity` IPv4 connections: the IPv6 table
/// at its default size (`flows.capacity_per_worker_v6`: a quarter, at least 1,024), so the
/// memory reported is the daemon's.
fn daemon_table(capacity: usize, pages: Pages) -> FlowTable {
    FlowTable::with_capacities(
        capacity,
        (capacity / 4).max(1024),
        Timeouts::default(),
        pages,
    )
}

struct Args {
    flows: u32,
    pages: Pages,
    only: Option<String>,
    json: bool,
}

fn args() -> Args {
    let mut a = Args {
        flows: 100_000,
        pages: Pages::default(),
        only: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--only" => a.only = it.next(),
            "--small-pages" => a.pages = Pages::Small,
            "--nic-checksum" => NIC_CHECKSUM.store(true, Ordering::Relaxed),
            "--general" => GENERAL.store(true, Ordering::Relaxed),
            n => {
                a.flows = n
                    .parse()
                    .expect("usage: pipeline_bench [--json] [--only CASE] [--small-pages] [--nic-checksum] [--general] [flows]")
            }
        }
    }
    a
}

fn main() {
    let a = args();
    let flows = a.flows;
    let snap = snapshot(100);
    let snap6 = snapshot6(100);
    // One table per mode, as large as a daemon would be configured for these flows.
    let capacity = (flows as usize + flows as usize / 8).max(1 << 16);
    let new_worker = || {
        let mut table = daemon_table(capacity, a.pages);
        table.prefault();
        let mut w = WorkerState::new(0, 1, table, 4);
        w.fast_path = !GENERAL.load(Ordering::Relaxed);
        w
    };
    let mut worker = new_worker();
    let vip = VIP4;
    let router = ROUTER_MAC;
    let mut now = Clock::new(1_000);
    // Established and reply cases: as many packets as flows (at least 256k, at most 4M), each
    // to a random flow.
    let est_packets = flows.clamp(1 << 18, 1 << 22);
    let wanted = |case: &str| a.only.as_deref().is_none_or(|o| o == case);
    let mut results: Vec<(String, f64, u64, u32)> = Vec::new();
    let mut record = |name: &str, (ns, tx): (f64, u64), packets: u32| {
        if !a.json {
            println!(
                "{name:<22} {ns:>8.1} ns/packet  {:>6.2} Mpps/core   ({packets} packets, {tx} transmitted)",
                1000.0 / ns
            );
        }
        results.push((name.to_string(), ns, tx, packets));
    };
    if !a.json {
        println!("pipeline_bench: {flows} flows, table of {capacity}, 100 real servers per mode (NAT, DR, TUN; NAT66, DR over IPv6), maglev, 60-byte TCP frames (80 over IPv6), bursts of {BURST}");
    }
    let mut mem = 0;
    let modes = [
        ("nat", 80u16, false),
        ("dr", 443, false),
        ("tun", 8443, false),
        ("nat6", 80, true),
        ("dr6", 443, true),
    ];
    for (mode, port, v6) in modes {
        let snap = if v6 { &snap6 } else { &snap };
        worker = new_worker();
        let syn = move |i: u32| to_vip(v6, i, port, 0x02);
        let name = format!("{mode}-new");
        let timed = wanted(&name);
        let r = run(&syn, flows, &mut worker, snap, &mut now, timed);
        if timed {
            record(&name, r, flows);
        }
        // Every connection's handshake completes (its first ACK, untimed: a state change the
        // general path makes), so the established case times established connections.
        let handshake = move |i: u32| to_vip(v6, i, port, 0x10);
        run(&handshake, flows, &mut worker, snap, &mut now, false);
        let name = format!("{mode}-established");
        if wanted(&name) {
            let ack = move |i: u32| to_vip(v6, i.wrapping_mul(2_654_435_761) % flows, port, 0x10);
            let r = run(&ack, est_packets, &mut worker, snap, &mut now, true);
            record(&name, r, est_packets);
        }
        if mode == "nat" {
            mem = worker.flows.memory_bytes();
        }
        let name = format!("{mode}-reply");
        if port != 80 || !wanted(&name) {
            continue;
        }
        let reply = |i: u32| from_rs(v6, snap, i.wrapping_mul(2_654_435_761) % flows);
        // One reply per connection first (untimed: the first reply marks the connection as
        // seen both ways, a state change), then the timed replies of established connections.
        let first_reply = |i: u32| reply(i);
        run(&first_reply, flows, &mut worker, snap, &mut now, false);
        let r = run(&reply, est_packets, &mut worker, snap, &mut now, true);
        record(&name, r, est_packets);
    }
    if wanted("junk") {
        let junk = |i: u32| tcp_frame(client(i).0, Ipv4Addr::new(10, 9, 9, 9), 1, 2, 0x02, router);
        let r = run(&junk, est_packets, &mut worker, &snap, &mut now, true);
        record("junk", r, est_packets);
    }
    if wanted("nat-flood-full") {
        // A SYN flood into a full table: 16k slots filled with NAT connections (untimed),
        // then 262k SYNs of distinct new flows, every insert refused as full (each forwarded
        // statelessly by the consistent hash): the system benchmark's all-new-flows case.
        const SLOTS: u32 = 1 << 14;
        let mut table = daemon_table(SLOTS as usize, a.pages);
        table.prefault();
        let mut flood = WorkerState::new(0, 1, table, 4);
        let syn = move |i: u32| {
            let (a, p) = client(i);
            tcp_frame(a, vip, p, 80, 0x02, router)
        };
        run(&syn, SLOTS, &mut flood, &snap, &mut now, false);
        assert_eq!(flood.flows.len(), SLOTS as usize, "the table is full");
        let packets = 1 << 18;
        let new_syn = move |i: u32| syn(SLOTS + i);
        let r = run(&new_syn, packets, &mut flood, &snap, &mut now, true);
        assert_eq!(
            flood.flows.counts().insert_full,
            u64::from(packets),
            "every insert refused"
        );
        record("nat-flood-full", r, packets);
    }
    if wanted("steer-out") || wanted("steer-in") {
        let (ns_out, ns_in, n) = steering(&snap, flows.min(1 << 20), capacity, &mut now);
        if wanted("steer-out") {
            record("steer-out", (ns_out, 0), n);
        }
        if wanted("steer-in") {
            record("steer-in", (ns_in, n as u64), n);
        }
    }
    let ack0 = |i: u32| tcp_frame(client(i).0, vip, 1, 80, 0x10, router);
    let macswap = macswap_ns(&ack0, 1 << 18);
    let dram = random_line_ns(mem, 1 << 22);
    if a.json {
        let cases: Vec<String> = results
            .iter()
            .map(|(n, ns, tx, p)| {
                format!("{{\"case\":\"{n}\",\"ns_per_packet\":{ns:.2},\"transmitted\":{tx},\"packets\":{p}}}")
            })
            .collect();
        println!(
            "{{\"flows\":{flows},\"table_capacity\":{capacity},\"connections\":{},\"table_bytes\":{mem},\"bytes_per_flow\":{:.1},\"macswap_ns\":{macswap:.2},\"random_line_ns\":{dram:.2},\"cases\":[{}]}}",
            flows,
            mem as f64 / capacity as f64,
            cases.join(",")
        );
    } else {
        println!(
            "flow table (NAT): {flows} connections, {} MB for {capacity} ({:.1} bytes per flow slot)",
            mem >> 20,
            mem as f64 / capacity as f64
        );
        println!("ceilings: in-memory macswap {macswap:.1} ns/packet; random cache-line read in a table of that size {dram:.1} ns");
    }
}
