//! Reference NAT: the smallest program that does the per-packet work of vipd's established
//! NAT path, on the frames `pipeline_bench` uses, in memory on one core. It is the floor that
//! vipd's pipeline is measured against (`scripts/bench/pipeline.py`: vipd's ns over these ns
//! is the "distance to the floor").
//!
//! ```text
//! cargo run --release -p vipd-dataplane --no-default-features --example reference_nat -- [--json] [flows]
//! ```
//!
//! Per packet, in two passes over a burst of 32 (as vipd's staged pipeline does):
//! 1. parse Ethernet + IPv4 + TCP with the checks vipd makes before it forwards such a frame:
//!    our MAC, EtherType IPv4, version 4 without options, total length inside the frame and
//!    within the MTU, the IPv4 header checksum (in software, as vipd does without NIC
//!    offload), not a fragment, TTL above 1, protocol TCP without options, and no SYN, FIN
//!    or RST (options and state changes are counted for vipd's other paths: every offset
//!    here is fixed); then hash the 5-tuple and prefetch its slot of the flow table;
//! 2. one lookup in an open-addressing hash table that holds every flow (16-byte keys
//!    inline, linear probing), the flow's last-seen time stored (what expiry needs), the
//!    rewrite: destination MAC and source MAC from the real server's record, TTL - 1,
//!    destination address and port, and both checksums by RFC 1624 incremental updates
//!    whose address and port deltas the record holds precomputed; the frame's index handed
//!    to a TX array. Counters are summed in locals and stored once per burst.
//!
//! What it leaves out, which vipd does: martian source and destination checks, the service
//! lookup and scheduling of new flows, the TCP state machine, the expiry sweep, the reply
//! direction, DR/TUN, IPv6, per-real-server counters, snapshot updates, steering between
//! workers. So it is a floor, not a competitor.
//!
//! At start-up every transmitted frame of a sample of flows is checked with etherparse (an
//! independent parser): addresses, ports, MACs, TTL and both checksums recomputed from
//! scratch; and frames it must not forward (a bad header checksum, an unknown flow, a SYN)
//! are checked not to be. The program exits with an error if any check fails.
//!
//! The table is written here (not `hashbrown`) because a burst must prefetch the slot a key
//! hashes to before it looks the key up, to overlap the misses at a million flows, and
//! `hashbrown::HashTable` has no way to prefetch by hash; vipd's table does the same. Its
//! memory is vipd's flow table memory (`flow::mem::ZeroedSlice`: transparent huge pages,
//! prefaulted), so both see the same TLB.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Instant;
use vipd_dataplane::flow::mem::{Zeroable, ZeroedSlice};
use vipd_dataplane::flow::Pages;
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::prefetch::prefetch_line;
use vipd_dataplane::wire::checksum;

const BURST: usize = 32;
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
const VIP_PORT: u16 = 80;
const RS_PORT: u16 = 8080;
const BACKENDS: u32 = 100;
const MTU: usize = 1500;
const TCP_SYN_FIN_RST: u8 = 0x02 | 0x01 | 0x04;

/// One flow: its 5-tuple as two words, the real server it goes to, when it was last seen.
/// 32 bytes, aligned, so a slot never straddles two cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    /// Source address << 32 | destination address (host order).
    addrs: u64,
    /// Protocol << 32 | source port << 16 | destination port; 0 marks a free slot (a flow's
    /// protocol is never 0).
    ports: u64,
    backend: u32,
    last_seen: u32,
    _pad: u64,
}

// SAFETY: integers only; all zeros is a free slot.
unsafe impl Zeroable for Slot {}

/// What the rewrite towards one real server writes, computed once.
#[derive(Clone, Copy)]
struct Backend {
    /// Destination MAC (the real server's) then source MAC (ours): bytes 0..12 of the frame.
    macs: [u8; 12],
    addr: [u8; 4],
    port: [u8; 2],
    /// RFC 1624 delta of the IPv4 header checksum: VIP -> real server address.
    ip_delta: u32,
    /// Delta of the TCP checksum: the pseudo-header's address and the destination port.
    tcp_delta: u32,
}

/// A frame that passed the checks, between the two passes.
#[derive(Clone, Copy, Default)]
struct Staged {
    addrs: u64,
    ports: u64,
    slot: u32,
    /// Its index in the burst.
    frame: u16,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Counters {
    rx: u64,
    tx: u64,
    tx_bytes: u64,
    drop_malformed: u64,
    drop_not_ours: u64,
    drop_bad_checksum: u64,
    drop_ttl: u64,
    /// Not TCP, a fragment, or a SYN/FIN/RST: vipd's other paths.
    other_path: u64,
    /// No flow: vipd would schedule a new one.
    miss: u64,
}

struct Nat {
    slots: ZeroedSlice<Slot>,
    shift: u32,
    backends: Vec<Backend>,
    /// Kept between bursts so no burst initialises it.
    staged: [Staged; BURST],
    counters: Counters,
}

fn addrs_of(src: u32, dst: u32) -> u64 {
    u64::from(src) << 32 | u64::from(dst)
}

fn ports_of(proto: u8, sport: u16, dport: u16) -> u64 {
    u64::from(proto) << 32 | u64::from(sport) << 16 | u64::from(dport)
}

impl Nat {
    /// A table of `capacity.next_power_of_two()` slots (at most half full for the flow
    /// counts `pipeline_bench` uses), prefaulted, and the real servers' records.
    fn new(capacity: usize) -> Nat {
        let len = capacity.next_power_of_two().max(2);
        let mut slots = ZeroedSlice::new(len, Pages::Transparent);
        slots.prefault();
        let vip = u32::from(VIP);
        let backends = (0..BACKENDS)
            .map(|i| {
                let addr = backend_addr(i);
                let mut macs = [0u8; 12];
                macs[..6].copy_from_slice(&backend_mac(i));
                macs[6..].copy_from_slice(&LB_MAC);
                let a = u32::from(addr);
                Backend {
                    macs,
                    addr: addr.octets(),
                    port: RS_PORT.to_be_bytes(),
                    ip_delta: checksum::delta32(vip, a),
                    tcp_delta: checksum::delta32(vip, a) + checksum::delta16(VIP_PORT, RS_PORT),
                }
            })
            .collect();
        Nat {
            slots,
            shift: 64 - len.trailing_zeros(),
            backends,
            staged: [Staged::default(); BURST],
            counters: Counters::default(),
        }
    }

    /// The slot a key's probe starts at: two multiplies, the top bits (Fibonacci hashing).
    #[inline(always)]
    fn home(&self, addrs: u64, ports: u64) -> u32 {
        let h =
            (addrs.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ports).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        (h >> self.shift) as u32
    }

    fn insert(&mut self, src: Ipv4Addr, sport: u16, backend: u32) -> bool {
        let (addrs, ports) = (
            addrs_of(u32::from(src), u32::from(VIP)),
            ports_of(6, sport, VIP_PORT),
        );
        let mask = self.slots.len() - 1;
        let mut i = self.home(addrs, ports) as usize;
        for _ in 0..self.slots.len() {
            let s = &mut self.slots[i];
            if s.ports == 0 || (s.addrs == addrs && s.ports == ports) {
                *s = Slot {
                    addrs,
                    ports,
                    backend,
                    last_seen: 0,
                    _pad: 0,
                };
                return true;
            }
            i = (i + 1) & mask;
        }
        false
    }

    fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<Slot>() + self.backends.len() * size_of::<Backend>()
    }
}

/// Ethernet + IPv4 without options + TCP without options: what [`parse`] and [`rewrite`]
/// read and write, at fixed offsets.
const HEADERS: usize = 54;
const L4: usize = 34;

/// Whether a 20-byte IPv4 header sums to 0xffff: five 32-bit adds and two folds (the same
/// verdict as `checksum::verifies`, unrolled for the fixed length). In native byte order:
/// the one's-complement sum of byte-swapped words is the byte-swapped sum (RFC 1071 2.B),
/// and 0xffff reads the same either way.
#[inline(always)]
fn ipv4_header_ok(h: &[u8]) -> bool {
    let w = |o: usize| u64::from(u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    checksum::fold(acc as u32) == 0xffff
}

/// Pass 1 for one frame: the checks and the key. None when the frame does not take the
/// established path (the counter says why). IPv4 or TCP options go to vipd's other path
/// here, so every offset is fixed.
#[inline(always)]
fn parse(frame: &[u8], c: &mut Counters) -> Option<(u64, u64)> {
    let Some(d) = frame.get(..HEADERS) else {
        c.drop_malformed += 1;
        return None;
    };
    let d: &[u8; HEADERS] = d.try_into().ok()?;
    if d[0..6] != LB_MAC {
        c.drop_not_ours += 1;
        return None;
    }
    if d[12..14] != [0x08, 0x00] || d[14] != 0x45 {
        // Not IPv4, or IPv4 with options (or malformed: the other path tells).
        c.other_path += 1;
        return None;
    }
    let total = usize::from(u16::from_be_bytes([d[16], d[17]]));
    if total < 40 || 14 + total > frame.len() || total > MTU {
        c.drop_malformed += 1;
        return None;
    }
    if !ipv4_header_ok(&d[14..34]) {
        c.drop_bad_checksum += 1;
        return None;
    }
    let fragment = u16::from_be_bytes([d[20], d[21]]) & 0x3fff != 0;
    if fragment || d[23] != 6 || d[L4 + 12] >> 4 != 5 || d[L4 + 13] & TCP_SYN_FIN_RST != 0 {
        c.other_path += 1;
        return None;
    }
    if d[22] <= 1 {
        c.drop_ttl += 1;
        return None;
    }
    let word = |o: usize| u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
    let addrs = addrs_of(word(26), word(30));
    let ports = u64::from(6u8) << 32 | u64::from(word(L4));
    Some((addrs, ports))
}

/// Pass 2's rewrite of one frame towards `b`.
#[inline(always)]
fn rewrite(frame: &mut [u8], b: &Backend) {
    let Some(d) = frame.get_mut(..HEADERS) else {
        return;
    };
    let Ok(d) = <&mut [u8; HEADERS]>::try_from(d) else {
        return;
    };
    d[0..12].copy_from_slice(&b.macs);
    let ttl_proto = u16::from_be_bytes([d[22], d[23]]);
    d[22] -= 1;
    d[30..34].copy_from_slice(&b.addr);
    let ip_sum = u16::from_be_bytes([d[24], d[25]]);
    let ip_sum = checksum::apply(
        ip_sum,
        b.ip_delta + checksum::delta16(ttl_proto, ttl_proto - 0x100),
    );
    d[24..26].copy_from_slice(&ip_sum.to_be_bytes());
    d[L4 + 2..L4 + 4].copy_from_slice(&b.port);
    let tcp_sum = u16::from_be_bytes([d[L4 + 16], d[L4 + 17]]);
    let tcp_sum = checksum::apply(tcp_sum, b.tcp_delta);
    d[L4 + 16..L4 + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}

/// One burst: the timed call. Not inlined, so `valgrind --tool=callgrind
/// --toggle-collect=reference_nat::timed_burst` counts exactly its instructions. Returns how
/// many frames it put in `tx` (their indices into `bufs`).
#[inline(never)]
fn timed_burst(bufs: &mut [VecBuf], nat: &mut Nat, now: u32, tx: &mut [u16; BURST]) -> usize {
    let mut c = Counters {
        rx: bufs.len() as u64,
        ..Counters::default()
    };
    let mut staged = 0usize;
    for (i, b) in bufs.iter().enumerate().take(BURST) {
        if let Some((addrs, ports)) = parse(b.data(), &mut c) {
            let slot = nat.home(addrs, ports);
            prefetch_line(&nat.slots[slot as usize]);
            nat.staged[staged] = Staged {
                addrs,
                ports,
                slot,
                frame: i as u16,
            };
            staged += 1;
        }
    }
    let mask = nat.slots.len() - 1;
    let mut n = 0;
    for k in 0..staged {
        let s = nat.staged[k];
        let mut i = s.slot as usize;
        let found = loop {
            let slot = &mut nat.slots[i];
            if slot.addrs == s.addrs && slot.ports == s.ports {
                slot.last_seen = now;
                break Some(slot.backend);
            }
            if slot.ports == 0 {
                break None;
            }
            i = (i + 1) & mask;
        };
        let Some(backend) = found else {
            c.miss += 1;
            continue;
        };
        let f = usize::from(s.frame);
        let d = bufs[f].data_mut();
        rewrite(d, &nat.backends[backend as usize]);
        c.tx_bytes += d.len() as u64;
        tx[n] = f as u16;
        n += 1;
    }
    c.tx = n as u64;
    let t = &mut nat.counters;
    t.rx += c.rx;
    t.tx += c.tx;
    t.tx_bytes += c.tx_bytes;
    t.drop_malformed += c.drop_malformed;
    t.drop_not_ours += c.drop_not_ours;
    t.drop_bad_checksum += c.drop_bad_checksum;
    t.drop_ttl += c.drop_ttl;
    t.other_path += c.other_path;
    t.miss += c.miss;
    n
}

/// Flow `i`'s client endpoint: `pipeline_bench`'s.
fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0xc000_0000 + (i / 50_000)),
        1024 + (i % 50_000) as u16,
    )
}

/// Real server `i`: `pipeline_bench`'s addresses and MACs.
fn backend_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1 + (i / 250) as u8, (i % 250) as u8 + 1)
}

fn backend_mac(i: u32) -> [u8; 6] {
    [2, 0, 0, 1, (i >> 8) as u8, i as u8]
}

/// The real server flow `i` goes to (any fixed spread; vipd's Maglev picks another).
fn backend_of(i: u32) -> u32 {
    i.wrapping_mul(2_246_822_519).rotate_left(13) % BACKENDS
}

/// `pipeline_bench`'s frame: Ethernet + IPv4 (DF, TTL 64) + TCP (20 bytes) + 6 bytes of
/// zeros, 60 bytes, both checksums valid.
fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&ROUTER_MAC);
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

fn ack(i: u32) -> Vec<u8> {
    let (a, p) = client(i);
    tcp_frame(a, VIP, p, VIP_PORT, 0x10)
}

/// Check the output of flow `i`'s ACK with etherparse: everything the rewrite must have
/// done, nothing else changed, both checksums right.
fn check_rewrite(i: u32, input: &[u8], out: &[u8]) -> Result<(), String> {
    use etherparse::{Ethernet2Header, Ipv4Header, TcpHeader};
    let err = |what: &str| format!("flow {i}: {what}");
    let (eth, rest) = Ethernet2Header::from_slice(out).map_err(|e| err(&format!("{e}")))?;
    let (ip, rest) = Ipv4Header::from_slice(rest).map_err(|e| err(&format!("{e}")))?;
    let (tcp, payload) = TcpHeader::from_slice(rest).map_err(|e| err(&format!("{e}")))?;
    let (_, rest_in) = Ethernet2Header::from_slice(input).map_err(|e| err(&format!("{e}")))?;
    let (ip_in, rest_in) = Ipv4Header::from_slice(rest_in).map_err(|e| err(&format!("{e}")))?;
    let (tcp_in, payload_in) = TcpHeader::from_slice(rest_in).map_err(|e| err(&format!("{e}")))?;
    let b = backend_of(i);
    let (client_addr, client_port) = client(i);
    let checks = [
        (eth.destination == backend_mac(b), "destination MAC"),
        (eth.source == LB_MAC, "source MAC"),
        (
            ip.destination == backend_addr(b).octets(),
            "destination address",
        ),
        (ip.source == client_addr.octets(), "source address"),
        (ip.time_to_live == ip_in.time_to_live - 1, "TTL"),
        (
            ip.header_checksum == ip.calc_header_checksum(),
            "IPv4 checksum",
        ),
        (tcp.destination_port == RS_PORT, "destination port"),
        (tcp.source_port == client_port, "source port"),
        (
            Ok(tcp.checksum) == tcp.calc_checksum_ipv4(&ip, payload),
            "TCP checksum",
        ),
        (
            tcp.sequence_number == tcp_in.sequence_number && payload == payload_in,
            "TCP sequence or payload",
        ),
        (out.len() == input.len(), "frame length"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(err(&format!("wrong {what} after the rewrite"))),
        None => Ok(()),
    }
}

/// The start-up check: a sample of flows through `timed_burst`, each output checked with
/// etherparse; then frames that must not be forwarded. Returns how many frames it checked.
fn verify(nat: &mut Nat, flows: u32) -> Result<u32, String> {
    let sample = flows.min(4096);
    let step = (flows / sample).max(1);
    let mut tx = [0u16; BURST];
    let mut checked = 0;
    let ids: Vec<u32> = (0..sample).map(|k| k * step).collect();
    for chunk in ids.chunks(BURST) {
        let inputs: Vec<Vec<u8>> = chunk.iter().map(|&i| ack(i)).collect();
        let mut bufs: Vec<VecBuf> = inputs.iter().map(|f| VecBuf::new(f)).collect();
        let n = timed_burst(&mut bufs, nat, 1, &mut tx);
        if n != chunk.len() {
            return Err(format!("{} of {} known flows forwarded", n, chunk.len()));
        }
        for &t in &tx[..n] {
            let k = usize::from(t);
            check_rewrite(chunk[k], &inputs[k], bufs[k].data())?;
            checked += 1;
        }
    }
    let mut bad = ack(0);
    bad[24] ^= 0x5a;
    let unknown = tcp_frame(Ipv4Addr::new(172, 31, 0, 1), VIP, 9, VIP_PORT, 0x10);
    let (a, p) = client(0);
    let syn = tcp_frame(a, VIP, p, VIP_PORT, 0x02);
    let mut ttl1 = ack(0);
    ttl1[22] = 1;
    ttl1[24..26].fill(0);
    let c = checksum::finish(checksum::sum(&ttl1[14..34]));
    ttl1[24..26].copy_from_slice(&c.to_be_bytes());
    let before = nat.counters;
    for (f, what) in [
        (bad, "a bad IPv4 checksum"),
        (unknown, "an unknown flow"),
        (syn, "a SYN"),
        (ttl1, "TTL 1"),
    ] {
        let mut bufs = vec![VecBuf::new(&f)];
        if timed_burst(&mut bufs, nat, 1, &mut tx) != 0 {
            return Err(format!("a frame with {what} was forwarded"));
        }
    }
    let after = nat.counters;
    let counted = [
        after.drop_bad_checksum - before.drop_bad_checksum,
        after.miss - before.miss,
        after.other_path - before.other_path,
        after.drop_ttl - before.drop_ttl,
    ];
    if counted != [1, 1, 1, 1] {
        return Err(format!(
            "the four refused frames were not counted once each: {counted:?}"
        ));
    }
    Ok(checked)
}

struct Args {
    flows: u32,
    json: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        flows: 100_000,
        json: false,
    };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => a.json = true,
            n => {
                a.flows = n
                    .parse()
                    .ok()
                    .filter(|&f| (1..=1 << 24).contains(&f))
                    .ok_or_else(|| {
                        format!("usage: reference_nat [--json] [flows 1..=16777216], not {n:?}")
                    })?;
            }
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let flows = a.flows;
    // pipeline_bench's table capacity for these flows.
    let capacity = (flows as usize + flows as usize / 8).max(1 << 16);
    let mut nat = Nat::new(capacity);
    for i in 0..flows {
        let (addr, port) = client(i);
        if !nat.insert(addr, port, backend_of(i)) {
            eprintln!("reference_nat: table full at flow {i}");
            return ExitCode::FAILURE;
        }
    }
    let verified = match verify(&mut nat, flows) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("reference_nat: start-up check failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    // pipeline_bench's established case: as many packets as flows (at least 256k, at most
    // 4M), each to a random flow; frames built before each burst, outside the timed region.
    let packets = flows.clamp(1 << 18, 1 << 22);
    let mut bufs: Vec<VecBuf> = (0..BURST).map(|_| VecBuf::new(&ack(0))).collect();
    let mut tx = [0u16; BURST];
    let (mut elapsed, mut transmitted, mut i, mut now) = (0u128, 0u64, 0u32, 2u32);
    while i < packets {
        let n = (packets - i).min(BURST as u32) as usize;
        for (k, b) in bufs.iter_mut().take(n).enumerate() {
            *b = VecBuf::new(&ack((i + k as u32).wrapping_mul(2_654_435_761) % flows));
        }
        i += n as u32;
        let t = Instant::now();
        let sent = timed_burst(&mut bufs[..n], &mut nat, now, &mut tx);
        elapsed += t.elapsed().as_nanos();
        transmitted += sent as u64;
        black_box(&bufs);
        now += 1;
    }
    if transmitted != u64::from(packets) {
        eprintln!("reference_nat: {transmitted} of {packets} established packets transmitted");
        return ExitCode::FAILURE;
    }
    let ns = elapsed as f64 / f64::from(packets);
    let bytes = nat.memory_bytes();
    if a.json {
        println!(
            "{{\"flows\":{flows},\"table_slots\":{},\"table_bytes\":{bytes},\"bytes_per_flow\":{:.1},\"verified\":{verified},\"packets\":{packets},\"burst_packets\":{},\"transmitted\":{transmitted},\"ns_per_packet\":{ns:.2}}}",
            nat.slots.len(),
            bytes as f64 / f64::from(flows),
            nat.counters.rx
        );
    } else {
        println!(
            "reference_nat: {flows} flows in {} slots ({} MB), {verified} rewrites checked with etherparse",
            nat.slots.len(),
            bytes >> 20
        );
        println!(
            "established       {ns:>8.1} ns/packet  {:>6.2} Mpps/core   ({packets} packets, {transmitted} transmitted)",
            1000.0 / ns
        );
    }
    ExitCode::SUCCESS
}
