//! The whole pipeline: a sequence of frames through two workers with flow state kept across
//! frames and time advancing. The input is a small program, one operation per record:
//!
//! * `op % 4 == 0`: a raw frame of `2 * next byte` bytes;
//! * `op % 4 == 1 | 2`: a template (fixture::template: every class of frame vipd handles),
//!   for one of 64 client ports, with extra payload, up to 7 byte overwrites, and optionally
//!   its checksums fixed so the mutation gets past the checksum checks;
//! * `op % 4 == 3`: time advances by a 16-bit number of milliseconds (or seconds when bit 7
//!   of `op` is set), so entries expire, fragments age and the ICMP error budget refills.
//!
//! Bit 2 of `op` picks the worker that receives the frame (the other one owns half the NAT
//! connections: steering is exercised). The first byte's bit 7 turns `sloppy_tcp` on.
//! Besides [`oracle::check_output`] on every transmitted frame: no allocation inside
//! `process_burst` / `process_steered`, a steered frame is never steered again, and a
//! connection keeps its real server while its entry lives (a stateless packet goes where the
//! consistent hash points), and every packet of a 3-tuple service, later fragments without
//! their first included, goes where the hash of (source, VIP, protocol) points.

use crate::fixture::{self, snapshot};
use crate::{alloc, oracle, Reader};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use std::collections::HashMap;
use vipd_dataplane::flow::{FlowId, FlowKey, FlowTable, Timeouts};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::{process_burst, process_steered, Action, WorkerState};
use vipd_dataplane::snapshot::{FlowHashFields, Snapshot};

/// Frames per input, so one input stays fast.
const MAX_FRAMES: usize = 48;
/// A small table, so the fuzzer fills it.
const CAPACITY: usize = 32;

fn new_worker(index: u16, sloppy: bool) -> WorkerState {
    let mut w = WorkerState::new(
        index,
        2,
        FlowTable::with_capacity(CAPACITY, Timeouts::default()),
        snapshot().services.len(),
    );
    w.sloppy_tcp = sloppy;
    // Few slots: collisions get exercised, and an input allocates little.
    w.set_fragment_slots(16);
    w
}

/// Run one input.
pub fn run(data: &[u8]) {
    let snap = snapshot();
    let sloppy = data.first().is_some_and(|b| b & 0x80 != 0);
    let mut workers = [new_worker(0, sloppy), new_worker(1, sloppy)];
    let mut now: u64 = 1_000_000;
    let mut r = Reader::new(data);
    for _ in 0..MAX_FRAMES {
        let Some(op) = r.byte() else { break };
        let frame = match op % 4 {
            0 => {
                let len = usize::from(r.byte().unwrap_or(0)) * 2;
                r.take(len).to_vec()
            }
            3 => {
                let d = u64::from(r.u16());
                now += if op & 0x80 != 0 { d * 1000 } else { d };
                continue;
            }
            _ => {
                let t = r.byte().unwrap_or(0);
                let port = 1024 + r.u16() % 64;
                let extra = usize::from(r.byte().unwrap_or(0)) * 6;
                let mut f = fixture::template(t, port, extra);
                let n = r.byte().unwrap_or(0) % 8;
                for _ in 0..n {
                    let pos = usize::from(r.u16());
                    let v = r.byte().unwrap_or(0);
                    if !f.is_empty() {
                        let len = f.len();
                        f[pos % len] = v;
                    }
                }
                let fix = r.byte().unwrap_or(0);
                fixture::fix_checksums(&mut f, fix & 1 != 0, fix & 2 != 0);
                f
            }
        };
        let rx = usize::from((op >> 2) & 1);
        step(&mut workers, rx, &frame, snap, now);
    }
}

/// Live entries of a worker: original key -> (entry, backend).
fn live(w: &WorkerState, now: u64) -> HashMap<FlowKey, (FlowId, u32)> {
    w.flows
        .iter(now)
        .map(|f| (f.key, (f.id, f.backend)))
        .collect()
}

/// `VIPD_FUZZ_TRACE=1`: print every frame and its verdict (to read a finding).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("VIPD_FUZZ_TRACE").is_some())
}

fn step(workers: &mut [WorkerState; 2], rx: usize, frame: &[u8], snap: &Snapshot, now: u64) {
    if trace() {
        eprintln!("in  (worker {rx}, t={now}): {frame:02x?}");
    }
    let input_l4 = oracle::l4_checksum_ok(frame);
    let before = [live(&workers[0], now), live(&workers[1], now)];
    let mut bufs = [VecBuf::new(frame)];
    let mut actions = [Action::ToControl];
    let a0 = alloc::count();
    process_burst(&mut bufs, &mut actions, 0, &mut workers[rx], snap, now);
    assert_eq!(alloc::count(), a0, "process_burst allocated");
    let (action, by) = match actions[0] {
        Action::Steer(to) => {
            let to = usize::from(to);
            assert!(to != rx && to < workers.len(), "steered to {to} from {rx}");
            let a0 = alloc::count();
            let a = process_steered(&mut bufs[0], None, 0, &mut workers[to], snap, now);
            assert_eq!(alloc::count(), a0, "process_steered allocated");
            assert!(!matches!(a, Action::Steer(_)), "steered twice");
            (a, to)
        }
        a => (a, rx),
    };
    if trace() {
        eprintln!("    -> {action:?} by worker {by}: {:02x?}", bufs[0].data());
    }
    if let Action::Tx(port) = action {
        assert_eq!(port, 0, "sent on a port that does not exist");
        let out = bufs[0].data();
        oracle::check_output(frame, input_l4, out);
        stays_with_its_real_server(frame, out, &before[by], &workers[by], snap, now);
        three_tuple_by_its_hash(frame, out, snap);
    }
}

/// Whether `out` is `input` forwarded to a real server (rather than an answer to its sender):
/// to a real server's MAC, and either tunnelled or still from the client's address.
fn forwarded(input: &[u8], out: &[u8]) -> bool {
    let rs_macs = [&fixture::RS1_MAC[..], &fixture::RS2_MAC[..]];
    let to_rs = out.get(..6).is_some_and(|m| rs_macs.contains(&m));
    let src_and_next = |f: &[u8]| match SlicedPacket::from_ethernet(f).ok()?.net? {
        NetSlice::Ipv4(ip) => Some((
            std::net::IpAddr::from(ip.header().source_addr()),
            ip.header().protocol().0,
        )),
        NetSlice::Ipv6(ip) => Some((
            std::net::IpAddr::from(ip.header().source_addr()),
            ip.header().next_header().0,
        )),
    };
    match (src_and_next(input), src_and_next(out)) {
        (Some((src_in, _)), Some((src_out, next))) => {
            to_rs && (matches!(next, 4 | 41) || src_in == src_out)
        }
        _ => false,
    }
}

/// The 5-tuple of an unfragmented TCP/UDP client packet to a VIP.
fn client_key(frame: &[u8], snap: &Snapshot) -> Option<FlowKey> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            if h.is_fragmenting_payload() {
                return None;
            }
            (
                h.source_addr().to_ipv6_mapped().octets(),
                h.destination_addr().to_ipv6_mapped().octets(),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            if ip.is_payload_fragmented() || !ip.extensions().is_empty() {
                return None;
            }
            (
                ip.header().source_addr().octets(),
                ip.header().destination_addr().octets(),
            )
        }
        _ => return None,
    };
    let (sport, dport, proto) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port(), 6),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), 17),
        _ => return None,
    };
    snap.is_vip(&dst).then_some(FlowKey {
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        proto,
    })
}

/// The consistent hash of a client packet's key as the service's `hash` defines it, computed
/// here from the key's fields (the pipeline computes it its own way).
fn consistent_hash(key: &FlowKey, fields: FlowHashFields) -> u64 {
    match fields {
        FlowHashFields::FiveTuple => key.hash(),
        FlowHashFields::ThreeTuple => FlowKey {
            src_port: 0,
            dst_port: 0,
            ..*key
        }
        .hash(),
    }
}

/// Every forwarded packet to a VIP whose only service of its protocol hashes on the 3-tuple
/// (source, VIP, protocol) goes to that hash's real server: entries are made by that hash
/// and the snapshot never changes here, so it holds for first fragments, later fragments
/// whether or not their first was seen, and unfragmented packets alike.
fn three_tuple_by_its_hash(input: &[u8], out: &[u8], snap: &Snapshot) {
    if !forwarded(input, out) {
        return;
    }
    let Ok(p) = SlicedPacket::from_ethernet(input) else {
        return;
    };
    let (src, dst, proto) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().to_ipv6_mapped().octets(),
            ip.header().destination_addr().to_ipv6_mapped().octets(),
            ip.payload().ip_number.0,
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().octets(),
            ip.header().destination_addr().octets(),
            ip.payload().ip_number.0,
        ),
        _ => return,
    };
    let Some((_, svc)) = snap.service_without_ports(&dst, proto) else {
        return;
    };
    let key = FlowKey {
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        proto,
    };
    let want = svc
        .pick_consistent(consistent_hash(&key, FlowHashFields::ThreeTuple))
        .and_then(|id| snap.backend(id));
    if let Some(b) = want {
        assert_eq!(
            b.next_hop_mac.map(|m| m.0.to_vec()),
            out.get(..6).map(<[u8]>::to_vec),
            "a packet of a 3-tuple service left its hash's real server {}",
            b.addr
        );
    }
}

/// A forwarded client packet whose connection had a live entry before and after goes to that
/// entry's real server; one with no entry before or after goes where the consistent hash
/// points. (A new entry may take whatever the scheduler picks.)
fn stays_with_its_real_server(
    input: &[u8],
    out: &[u8],
    before: &HashMap<FlowKey, (FlowId, u32)>,
    w: &WorkerState,
    snap: &Snapshot,
    now: u64,
) {
    let Some(key) = client_key(input, snap) else {
        return;
    };
    if !forwarded(input, out) {
        return; // answered (too-big, to the sender's MAC, whatever it is), not forwarded
    }
    let Some((_, svc)) = snap.service(&key.dst, key.proto, key.dst_port) else {
        return;
    };
    let after = w.flows.iter(now).find(|f| f.key == key).map(|f| f.id);
    let expected = match (before.get(&key), after) {
        (Some(&(id, backend)), Some(id2)) if id == id2 => Some(backend),
        (None, None) => svc.pick_consistent(consistent_hash(&key, svc.hash)),
        _ => None,
    };
    if let Some(b) = expected.and_then(|id| snap.backend(id)) {
        assert!(
            oracle::goes_to(out, b, snap),
            "connection {key:?} left its real server {} ({:?})",
            b.addr,
            before.get(&key)
        );
    }
}
