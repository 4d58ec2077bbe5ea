//! The burst pipeline: classify each frame, decide, rewrite in place, and return one
//! [`Action`] per frame. No I/O, no allocation, no locks: the caller (the worker loop, or a
//! test) owns the frames and carries the actions out.
//!
//! Every frame is untrusted. The order of checks (each failure returns early with its own
//! drop counter; docs/frame-classes.md lists every class of frame and what happens to it):
//! 1. Ethernet: our MAC or multicast, a unicast non-zero source MAC, no tag or one 802.1Q tag
//!    of a VLAN the port carries (the frame is then handled in the VLAN interface's context,
//!    `pipeline::vlan`; no 802.1ad/QinQ); an IP packet in a multicast frame is dropped unless
//!    it is Neighbour Discovery.
//! 2. ARP (answered for our addresses and VIPs, learned from when it moves a known neighbour).
//! 3. IP header valid (IPv4 checksum, lengths; IPv6 without extension headers other than a
//!    fragment header, no IPv4-mapped address); ICMPv6 Neighbour Discovery is handled here;
//!    then the source must be a unicast address that is not ours and not the destination,
//!    and the TTL / hop limit not 0.
//! 4. By destination and source:
//!    - a VIP: a client packet (step 1), forwarded to a real server (step 2) by its mode:
//!      NAT rewrite, DR MAC change, or TUN encapsulation, or answered with ICMP too-big when
//!      it does not fit the egress MTU; ICMP errors to a VIP go to the real server owning the
//!      quoted connection;
//!    - a NAT real server's endpoint as source: a reply (step 3), rewritten to come from the
//!      VIP and sent to the client (step 4); its ICMP errors are un-NATed the same way;
//!    - one of our port addresses: ICMP echo is answered, the rest dropped;
//!    - anything else is dropped (vipd is not a router).
//!
//! Decide first, then change state: a packet's flow entry is created, advanced or replaced
//! only once every check that could drop it has passed (`pipeline::egress::check`).
//!
//! TCP state only from a SYN: a TCP segment without a flow entry creates one only when it is
//! a lone SYN ([`WorkerState::sloppy_tcp`] restores IPVS's sloppy mode, where any segment
//! does). Others go statelessly to the real server the service's consistent hash (Maglev)
//! picks, so connections that outlived a restart, an expiry or a move between boxes keep
//! their real server (`tcp_no_flow_stateless`), and an ACK or RST flood creates no state.

mod classify;
mod egress;
mod fast4;
mod fast6;
mod flows;
mod icmp_msgs;
mod local;
mod vlan;
mod worker_state;

use crate::counters::{Counter, DropReason, WorkerCounters};
use crate::flow::{FlowKey, TableHash, TcpFlags};
use crate::fwd::fragment::FragmentKey;
use crate::fwd::nat::L4At;
use crate::io::PacketBuf;
use crate::ndp::{self, NdVerdict};
use crate::snapshot::Snapshot;
use crate::wire::ethernet;
use crate::wire::MacAddr;
pub(crate) use classify::for_kernel;
use classify::{classify, Staged};
use fast4::classify::First;
use fast4::Staged4;
use worker_state::Scratch;
pub use worker_state::{WorkerState, ICMP_ERRORS_BURST, ICMP_ERRORS_PER_SEC};

/// What the caller does with a frame after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame on this port, on the worker's own TX queue.
    Tx(u16),
    /// Free the frame; the reason is already counted.
    Drop(DropReason),
    /// Hand the frame to the control thread (ARP replies to learn neighbours).
    ToControl,
    /// Hand the frame to the box's kernel through the rx port's kernel interface (the
    /// exception path): traffic for a port address that vipd does not answer itself.
    ToKernel,
    /// Hand the frame to the worker that owns its connection.
    Steer(u16),
}

/// Flow-table expiry work done per millisecond of the worker's clock (see
/// `flow/table/expiry.rs` for the bound it gives): a busy worker sweeps once per tick, not
/// once per burst, and an idle one once per idle poll's tick.
pub const EXPIRE_BUDGET_PER_TICK: usize = 64;

/// Hop limit of packets vipd originates (echo replies, tunnel headers).
const OWN_TTL: u8 = 64;

/// Frames a burst is staged in (the worker's burst size).
const STAGE: usize = 32;

/// What a burst counts, kept in registers and stored once at its end instead of a load and a
/// store per packet per counter.
#[derive(Default)]
struct Tally {
    rx_packets: u64,
    rx_bytes: u64,
    forwarded: u64,
    nat_replies: u64,
    steered: u64,
    flows_created: u64,
}

impl Tally {
    fn store(&self, c: &WorkerCounters) {
        for (counter, n) in [
            (Counter::RxPackets, self.rx_packets),
            (Counter::RxBytes, self.rx_bytes),
            (Counter::Forwarded, self.forwarded),
            (Counter::NatReplies, self.nat_replies),
            (Counter::Steered, self.steered),
            (Counter::FlowsCreated, self.flows_created),
        ] {
            if n != 0 {
                c.add(counter, n);
            }
        }
    }
}

/// Process a burst received on `rx_port`: `actions[i]` is set for `bufs[i]`.
pub fn process_burst<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    process_burst_hashed(bufs, actions, &mut [], rx_port, worker, snap, now_ms);
}

/// [`process_burst`], also setting `flow_hashes[i]` for every frame whose action is
/// [`Action::Steer`]: its flow table hash ([`TableHash::raw`]; `None` for an ICMP error
/// steered to the owner of the connection it quotes), for the owner's
/// [`process_steered_burst`].
///
/// The burst goes in stages of up to [`STAGE`] frames, as DPDK's `rte_hash_lookup_bulk` and
/// VPP do: (1) every frame is parsed, checked and classified (no state changes) and the
/// primary flow-table bucket of those that will be looked up is prefetched; (2) where the key
/// is not in its primary bucket, the secondary is prefetched; (3) each frame is handled in
/// order. At a million flows a lookup is a DRAM miss; staged, the misses of a burst overlap.
pub fn process_burst_hashed<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    flow_hashes: &mut [Option<u64>],
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    let received = Frames {
        rx_port,
        rx_ports: &[],
        hashes: &[],
    };
    stages::<B, false>(bufs, actions, &received, flow_hashes, worker, snap, now_ms);
    worker.expire_tick(snap, now_ms);
}

/// Frames other workers steered here (each counted as received there), as one staged burst:
/// `rx_ports[i]` and `flow_hashes[i]` are `bufs[i]`'s, as the receiving worker passed them.
/// A frame the owner would steer again is dropped as `drop_steered_twice` (the workers
/// disagree on ownership: a bug, counted instead of looping).
pub fn process_steered_burst<B: PacketBuf>(
    bufs: &mut [B],
    actions: &mut [Action],
    rx_ports: &[u16],
    flow_hashes: &[Option<u64>],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    let steered = Frames {
        rx_port: 0,
        rx_ports,
        hashes: flow_hashes,
    };
    stages::<B, true>(bufs, actions, &steered, &mut [], worker, snap, now_ms);
}

/// One frame another worker steered here: [`process_steered_burst`] of a burst of one.
pub fn process_steered<B: PacketBuf>(
    buf: &mut B,
    flow_hash: Option<u64>,
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) -> Action {
    let mut action = [Action::Drop(DropReason::SteeredTwice)];
    process_steered_burst(
        std::slice::from_mut(buf),
        &mut action,
        &[rx_port],
        &[flow_hash],
        worker,
        snap,
        now_ms,
    );
    action[0]
}

/// Where a burst's frames come from: received on `rx_port`, or (steered) each with its rx
/// port and the flow hash the receiving worker computed.
struct Frames<'a> {
    rx_port: u16,
    rx_ports: &'a [u16],
    hashes: &'a [Option<u64>],
}

impl Frames<'_> {
    /// Frame `i`'s rx port and the flow hash it came with.
    #[inline(always)]
    fn frame<const STEERED: bool>(&self, i: usize) -> (u16, Option<u64>) {
        if STEERED {
            (
                self.rx_ports.get(i).copied().unwrap_or(0),
                self.hashes.get(i).copied().flatten(),
            )
        } else {
            (self.rx_port, None)
        }
    }
}

/// The stages of a burst (see [`process_burst_hashed`]), for received frames or (`STEERED`,
/// compiled separately so the received path pays nothing for it) frames other workers
/// steered here. A received frame steered on gets its flow hash in `hashes_out`.
#[inline(always)]
fn stages<B: PacketBuf, const STEERED: bool>(
    bufs: &mut [B],
    actions: &mut [Action],
    frames: &Frames<'_>,
    hashes_out: &mut [Option<u64>],
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) {
    worker.adopt(snap);
    // Decided once per burst: the fast path runs while no trace is active (a trace sees
    // every frame the general way, and the fast path needs no hooks of its own).
    let tracing = worker.trace.is_some();
    let fast = worker.fast_path && !tracing;
    let vlans = snap.has_vlans();
    let port_mac = snap.fast4.port_mac(frames.rx_port);
    let mut scratch = worker.take_scratch();
    let Scratch {
        first,
        fast: staged,
        general,
        fast6: staged6,
    } = &mut *scratch;
    let mut tally = Tally::default();
    let n = bufs.len().min(actions.len());
    let mut start = 0;
    while start < n {
        let end = (start + STAGE).min(n);
        let len = end - start;
        // Stage 1: classify, hash, prefetch the primary bucket.
        for (k, ((buf, first), f)) in bufs[start..end]
            .iter()
            .zip(first.iter_mut())
            .zip(staged.iter_mut())
            .enumerate()
        {
            let (rx_port, steered_hash) = frames.frame::<STEERED>(start + k);
            if !STEERED {
                tally.rx_packets += 1;
                tally.rx_bytes += buf.data().len() as u64;
            }
            let mac = if STEERED {
                snap.fast4.port_mac(rx_port)
            } else {
                port_mac
            };
            *first = match mac {
                Some(mac) if fast => fast4::classify::classify(
                    buf,
                    mac,
                    worker,
                    snap,
                    steered_hash.map(TableHash::from_raw),
                    f,
                ),
                _ => First::Fallback,
            };
            match *first {
                First::Fast => worker.flows.prefetch4(f.hash),
                First::Fallback
                    if fast
                        && mac.zip(staged6.get_mut(k)).is_some_and(|(mac, f6)| {
                            fast6::classify::classify(
                                buf,
                                mac,
                                worker,
                                snap,
                                steered_hash.map(TableHash::from_raw),
                                f6,
                            )
                        }) =>
                {
                    *first = First::Fast6;
                }
                First::Fallback => {
                    let st = classify(buf, rx_port, worker, snap, steered_hash);
                    if let Some((v4, h)) = st.lookup_hash() {
                        worker.flows.prefetch(v4, h);
                    }
                    if let Some(slot) = general.get_mut(k) {
                        *slot = st;
                    }
                }
                First::Steer(_) | First::NotLocal | First::Fast6 => {}
            }
        }
        // Stage 2: a key not in its (now loaded) primary bucket needs its secondary; and if
        // it opens a connection, its reply key's bucket (`fast4::prefetch_new`).
        for ((first, f), f6) in first[..len]
            .iter()
            .zip(staged.iter_mut())
            .zip(staged6.iter_mut())
        {
            if *first == First::Fast {
                f.pos = worker.flows.probe4(&f.key, f.hash);
                if f.pos == crate::flow::slot::NIL {
                    fast4::prefetch_new(f, worker, snap);
                }
            } else if *first == First::Fast6 {
                f6.pos = worker.flows.probe6(&f6.key, f6.hash);
            }
        }
        // Stage 3: handle each frame in order.
        for (k, ((buf, action), (first, f))) in bufs[start..end]
            .iter_mut()
            .zip(actions[start..end].iter_mut())
            .zip(first.iter().zip(staged.iter()))
            .enumerate()
        {
            let (mut rx_port, _) = frames.frame::<STEERED>(start + k);
            if vlans {
                rx_port = vlan::rx_interface(buf.data(), rx_port, snap);
            }
            // The frame is as received until its own stage 3.
            if tracing {
                if let Some(t) = worker.trace.as_mut() {
                    t.before(buf.data(), rx_port, now_ms);
                }
            }
            let (verdict, hash) = match *first {
                First::Fast => {
                    let done = if f.reply {
                        fast4::reply(buf, f, worker, snap, now_ms, &mut tally)
                    } else {
                        fast4::client(buf, f, worker, snap, now_ms, &mut tally)
                            .or_else(|| fast4::open(buf, f, worker, snap, now_ms, &mut tally))
                    };
                    match done {
                        // The fast path's own frame is done here: it is sent untagged (or
                        // dropped, counted), never steered, and never traced (no fast path
                        // while a trace runs).
                        Some(a) if !vlans => {
                            *action = a;
                            if let Action::Drop(reason) = a {
                                worker.counters.inc(reason);
                            }
                            continue;
                        }
                        Some(a) => (Ok(a), None),
                        None => (
                            handle(buf, &f.general(), rx_port, worker, snap, now_ms),
                            None,
                        ),
                    }
                }
                First::Fast6 => match staged6.get(k) {
                    Some(f6) => match fast6::handle(buf, f6, worker, snap, now_ms, &mut tally) {
                        Some(a) => (Ok(a), None),
                        None => (
                            handle(buf, &f6.general(), rx_port, worker, snap, now_ms),
                            None,
                        ),
                    },
                    None => (Err(DropReason::EthMalformed), None),
                },
                First::Steer(owner) => (Ok(Action::Steer(owner)), Some(f.hash.raw())),
                First::NotLocal => (Err(DropReason::NotLocal), None),
                First::Fallback => match general.get(k) {
                    Some(st) => {
                        let mut verdict = handle(buf, st, rx_port, worker, snap, now_ms);
                        // Without VLANs only a priority-tagged frame (the general path's)
                        // needs fitting to the wire: it leaves untagged.
                        if let (false, Ok(Action::Tx(iface))) = (vlans, verdict) {
                            if vlan::tagged(buf.data()) {
                                verdict = vlan::to_wire(buf, iface, snap).map(Action::Tx);
                            }
                        }
                        (verdict, st.flow_hash())
                    }
                    None => (Err(DropReason::EthMalformed), None),
                },
            };
            *action = match verdict {
                // The owner never steers again: a frame steered twice would mean the
                // workers disagree on ownership; count it rather than loop.
                Ok(Action::Steer(_)) if STEERED => Action::Drop(DropReason::SteeredTwice),
                Ok(a) => a,
                Err(reason) => Action::Drop(reason),
            };
            // Inside the pipeline a frame is sent on an interface; on the wire, on a port.
            if let (true, Action::Tx(iface)) = (vlans, *action) {
                *action = match vlan::to_wire(buf, iface, snap) {
                    Ok(port) => Action::Tx(port),
                    Err(reason) => Action::Drop(reason),
                };
            }
            if tracing {
                if let Some(t) = worker.trace.as_mut() {
                    t.after(buf.data(), *action);
                }
            }
            match *action {
                Action::Drop(reason) => worker.counters.inc(reason),
                Action::ToControl => worker.counters.inc(Counter::ToControl),
                Action::ToKernel => worker.counters.inc(Counter::ToKernel),
                Action::Steer(_) => {
                    tally.steered += 1;
                    if let Some(out) = hashes_out.get_mut(start + k) {
                        *out = hash;
                    }
                }
                Action::Tx(_) => {}
            }
        }
        start = end;
    }
    tally.store(&worker.counters);
    worker.put_scratch(scratch);
}

impl Staged4 {
    /// The general classifier's record of this packet (its stage 3 then handles it).
    fn general(&self) -> Staged {
        classify::FastPacket {
            key: self.key.flow_key(),
            v4: true,
            ttl: self.ttl,
            len: usize::from(self.len),
            dont_frag: self.dont_frag,
            table: self.hash,
            maglev: self.maglev,
            tcp_bits: self.tcp_bits,
            service: self.service,
            reply: self.reply,
        }
        .staged()
    }
}

type Verdict = Result<Action, DropReason>;

/// Stage 3's context of one frame, passed as one value: the worker's state, the snapshot it
/// forwards by, the (pipeline) port the frame came in by, the clock in milliseconds.
struct Ctx<'w, 's> {
    w: &'w mut WorkerState,
    snap: &'s Snapshot,
    rx_port: u16,
    now: u64,
}

/// Stage 3 of one frame: what changes state or the frame, as stage 1 staged it.
#[inline]
fn handle<B: PacketBuf>(
    buf: &mut B,
    st: &Staged,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    // ARP and Neighbour Discovery in a VLAN carry its tag (stage 1 let only known ones by).
    let l2 = if crate::wire::vlan::vid_of(buf.data()).is_some() {
        ethernet::VLAN_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    };
    match *st {
        Staged::Done(v) => v,
        Staged::Steer { owner, .. } => Ok(Action::Steer(owner)),
        Staged::Client {
            ref pkt,
            ref info,
            service_index,
            owner_here,
        } => egress::forward_client(
            buf,
            pkt,
            info,
            service_index,
            owner_here,
            &mut Ctx {
                w,
                snap,
                rx_port,
                now,
            },
        ),
        Staged::Reply {
            ref pkt,
            ref info,
            unique_service,
            owner_here,
        } => egress::nat_reply(
            buf,
            pkt,
            info,
            unique_service,
            owner_here,
            &mut Ctx {
                w,
                snap,
                rx_port,
                now,
            },
        ),
        Staged::Arp => {
            let our_mac = snap
                .ports
                .get(usize::from(rx_port))
                .ok_or(DropReason::NoRoute)?
                .mac;
            local::arp(buf.data_mut(), l2, rx_port, our_mac, w, snap)
        }
        Staged::Nd => match ndp::handle_nd(buf, l2, rx_port, snap)? {
            NdVerdict::Reply => {
                w.counters.inc(Counter::NdAdverts);
                Ok(Action::Tx(rx_port))
            }
            NdVerdict::ToControl => Ok(Action::ToControl),
        },
        Staged::Icmp(ref pkt) => icmp_msgs::handle(
            buf,
            pkt,
            &mut Ctx {
                w,
                snap,
                rx_port,
                now,
            },
        ),
        Staged::LaterFragment(ref pkt, f) => egress::later_fragment(
            buf,
            pkt,
            f,
            &mut Ctx {
                w,
                snap,
                rx_port,
                now,
            },
        ),
    }
}

/// A fragment's identity and place.
#[derive(Clone, Copy, Debug)]
struct Frag {
    ident: u32,
    /// Offset of its data in the datagram, in bytes.
    offset: u16,
}

impl Frag {
    fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// What the pipeline knows of a validated IP packet, both families: parsed once, in stage 1.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    /// Ethernet header length (where the IP header starts).
    l2: usize,
    v4: bool,
    /// Source and destination in flow-key form (IPv4-mapped for IPv4), the upper-layer
    /// protocol, and for TCP and UDP (not later fragments) the ports: the flow key.
    key: FlowKey,
    /// TTL / hop limit as received.
    ttl: u8,
    /// IP packet length (header and payload, without Ethernet padding).
    len: usize,
    /// The upper-layer protocol and where its header starts.
    l4: L4At,
    /// IPv4 DF; always for IPv6 (routers never fragment it).
    dont_frag: bool,
    /// Set for a fragment (an IPv6 atomic fragment is not one).
    frag: Option<Frag>,
}

impl Pkt {
    fn frag_key(&self, f: Frag) -> FragmentKey {
        FragmentKey {
            src: self.key.src,
            dst: self.key.dst,
            ident: f.ident,
            proto: self.l4.proto,
        }
    }

    /// The offset of the upper-layer header in the frame, and the end of the IP packet.
    fn l4_range(&self) -> std::ops::Range<usize> {
        self.l2 + self.l4.offset..self.l2 + self.len
    }
}

/// The transport fields of a TCP or UDP packet, family independent (the ports are in
/// [`Pkt::key`]).
#[derive(Clone, Copy, Debug)]
struct L4Info {
    /// The flow table's hash of the key (also the tunnel's per-flow outer source and the
    /// hash a steered frame carries to its owner); the consistent hash (`FlowKey::hash`) is
    /// computed only where a real server is picked.
    table: TableHash,
    /// The consistent hash (`FlowKey::hash`), when stage 2 already computed it (a new
    /// connection's real server predicted to prefetch its reply key's bucket).
    maglev: Option<u64>,
    tcp_flags: Option<TcpFlags>,
    /// The raw TCP flags byte (0 for UDP).
    tcp_bits: u8,
}

impl L4Info {
    /// The consistent hash (`Service::flow_hash`) of `key`, this packet's to service `svc`:
    /// computed here unless stage 2 did.
    #[inline]
    fn maglev(&self, svc: &crate::snapshot::Service, key: &FlowKey) -> u64 {
        self.maglev.unwrap_or_else(|| svc.flow_hash(key))
    }

    /// A SYN opening a connection: SYN without ACK, FIN or RST.
    fn is_lone_syn(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f.syn && !f.ack && !f.fin && !f.rst)
    }
}

impl Staged {
    /// The flow hash of a TCP or UDP packet.
    fn flow_hash(&self) -> Option<u64> {
        match self {
            Staged::Client { info, .. } | Staged::Reply { info, .. } => Some(info.table.raw()),
            Staged::Steer { hash, .. } => Some(hash.raw()),
            _ => None,
        }
    }
}

fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    // One bounds check: every frame the pipeline sends has its Ethernet header.
    if let Some(macs) = frame.get_mut(..12) {
        macs[..6].copy_from_slice(&dst.0);
        macs[6..].copy_from_slice(&src.0);
    }
}
