//! The burst pipeline: classify each frame, decide, rewrite in place, and return one
//! [`Action`] per frame. No I/O, no allocation, no locks: the caller (the worker loop, or a
//! test) owns the frames and carries the actions out.
//!
//! Every frame is untrusted. The order of checks (each failure returns early with its own
//! drop counter; docs/frame-classes.md lists every class of frame and what happens to it):
//! 1. Ethernet: our MAC or multicast, a unicast non-zero source MAC, no 802.1Q/802.1ad tag;
//!    an IP packet in a multicast frame is dropped unless it is Neighbour Discovery.
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

mod egress;
mod flows;
mod icmp_msgs;
mod local;

use crate::backend_stats::{BackendStats, DEFAULT_BACKEND_SLOTS};
use crate::counters::{Counter, WorkerCounters};
use crate::flow::key::from_mapped;
use crate::flow::{FlowKey, FlowTable, TcpFlags};
use crate::fwd::fragment::{FragmentKey, FragmentTracker, FRAGMENT_SLOTS};
use crate::fwd::nat::L4At;
use crate::io::{PacketBuf, RxChecksum};
use crate::ndp::{self, NdVerdict};
use crate::snapshot::Snapshot;
use crate::wire::addr;
use crate::wire::be16;
use crate::wire::ethernet::{self, ethertype, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, FragmentHeader, Ipv6Packet};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::MacAddr;
use std::sync::Arc;

/// What the caller does with a frame after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (rewritten) frame on this port, on the worker's own TX queue.
    Tx(u16),
    /// Free the frame; the reason is already counted.
    Drop(Counter),
    /// Hand the frame to the control thread (ARP replies to learn neighbours).
    ToControl,
    /// Hand the frame to the box's kernel through the rx port's kernel interface (the
    /// exception path): traffic for a port address that vipd does not answer itself.
    ToKernel,
    /// Hand the frame to the worker that owns its connection.
    Steer(u16),
}

/// Flow-table expiry work done per burst: bounded so a burst's cost stays bounded, large
/// enough that expiry outpaces connection arrival (at most one new flow per packet).
pub const EXPIRE_BUDGET_PER_BURST: usize = 64;

/// Hop limit of packets vipd originates (echo replies).
const OWN_TTL: u8 = 64;

/// A worker's private state: its flow table, counters and scheduler cursors.
pub struct WorkerState {
    /// This worker's index among `n_workers`.
    pub index: u16,
    /// Number of workers; NAT connections are owned by `endpoint_hash(client)` scaled onto
    /// `0..n_workers` ([`WorkerState::owner_of`]).
    pub n_workers: u16,
    /// The worker's flow table.
    pub flows: FlowTable,
    /// The worker's counters (shared read-only with the control thread).
    pub counters: Arc<WorkerCounters>,
    /// Per-real-server counters, indexed by backend id (shared read-only with the control
    /// thread); the flow table counts its connections there too.
    pub backends: Arc<BackendStats>,
    /// An active trace request (`vipctl trace`), if any.
    pub trace: Option<Box<crate::trace::TraceJob>>,
    /// IPVS's `sloppy_tcp` forced on for this worker (tests, fuzzing); the configured setting
    /// comes with the snapshot ([`Snapshot::sloppy_tcp`]). Either makes any TCP segment without
    /// a flow entry create one; off, only a lone SYN does and others go statelessly.
    pub sloppy_tcp: bool,
    cursors: Vec<u64>,
    generation: u64,
    icmp_errors: TokenBucket,
    /// When an insert last found the table full (see `flows::schedule`).
    last_full_ms: Option<u64>,
    frags: FragmentTracker,
}

/// ICMP errors a worker may send per second (RFC 1812 4.3.2.8, RFC 4443 2.4(f)), and the
/// burst it may send at once: Linux's defaults (net.ipv4.icmp_msgs_per_sec / _burst).
pub const ICMP_ERRORS_PER_SEC: u32 = 1000;
/// See [`ICMP_ERRORS_PER_SEC`].
pub const ICMP_ERRORS_BURST: u32 = 50;

/// A token bucket on the worker's millisecond clock: no atomics, no syscalls.
struct TokenBucket {
    tokens: u32,
    last_ms: u64,
}

impl TokenBucket {
    fn new() -> Self {
        TokenBucket {
            tokens: ICMP_ERRORS_BURST,
            last_ms: 0,
        }
    }

    /// Take one token if there is one, refilling at [`ICMP_ERRORS_PER_SEC`] first.
    fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let refill = elapsed.saturating_mul(u64::from(ICMP_ERRORS_PER_SEC)) / 1000;
        if refill > 0 {
            let room = u64::from(ICMP_ERRORS_BURST - self.tokens.min(ICMP_ERRORS_BURST));
            self.tokens += refill.min(room) as u32;
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl WorkerState {
    /// A worker's state. `max_services` sizes the scheduler cursors up front; real-server
    /// statistics get [`DEFAULT_BACKEND_SLOTS`] slots.
    pub fn new(index: u16, n_workers: u16, flows: FlowTable, max_services: usize) -> Self {
        Self::with_backend_slots(index, n_workers, flows, max_services, DEFAULT_BACKEND_SLOTS)
    }

    /// [`WorkerState::new`] with `backend_slots` real-server statistics slots (backend ids
    /// must stay below it to be counted).
    pub fn with_backend_slots(
        index: u16,
        n_workers: u16,
        mut flows: FlowTable,
        max_services: usize,
        backend_slots: usize,
    ) -> Self {
        let backends = Arc::new(BackendStats::new(backend_slots));
        flows.count_connections_in(Arc::clone(&backends));
        WorkerState {
            index,
            n_workers: n_workers.max(1),
            flows,
            counters: Arc::new(WorkerCounters::default()),
            backends,
            sloppy_tcp: false,
            trace: None,
            cursors: vec![0; max_services],
            generation: u64::MAX,
            icmp_errors: TokenBucket::new(),
            last_full_ms: None,
            frags: FragmentTracker::new(FRAGMENT_SLOTS),
        }
    }

    /// Resize the fragment tracker (default [`FRAGMENT_SLOTS`]); allocates: call before the
    /// worker runs. Fewer slots lose datagrams sooner under a fragment flood.
    pub fn set_fragment_slots(&mut self, slots: usize) {
        self.frags = FragmentTracker::new(slots);
    }

    /// The worker that owns connections of this client endpoint: the hash scaled onto
    /// `0..n_workers` by a multiply and a shift (Lemire's reduction) instead of a 64-bit
    /// division (`%`: tens of cycles; this: one 3-cycle multiply).
    #[inline]
    pub fn owner_of(&self, client: &[u8; 16], port: u16) -> u16 {
        let h = FlowKey::endpoint_hash(client, port);
        ((u128::from(h) * u128::from(self.n_workers)) >> 64) as u16
    }

    /// Pick up a newly published snapshot (cursors, timeouts, generation); cheap when it is
    /// the one already adopted.
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.generation != snap.generation {
            self.generation = snap.generation;
            if self.cursors.len() < snap.services.len() {
                // Only when a snapshot brings more services than ever before: not per packet.
                self.cursors.resize(snap.services.len(), 0);
            }
            if *self.flows.timeouts() != snap.timeouts {
                self.flows.set_timeouts(snap.timeouts);
            }
            self.counters.inc(Counter::SnapshotsApplied);
            // Tells the control plane this worker no longer uses older snapshots' backends.
            self.counters.set_generation(snap.generation);
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
    worker.adopt(snap);
    for (buf, action) in bufs.iter_mut().zip(actions.iter_mut()) {
        let len = buf.data().len() as u64;
        worker.counters.inc(Counter::RxPackets);
        worker.counters.add(Counter::RxBytes, len);
        if let Some(t) = worker.trace.as_mut() {
            t.before(buf.data(), rx_port, now_ms);
        }
        *action = match handle(buf, rx_port, worker, snap, now_ms) {
            Ok(a) => a,
            Err(reason) => Action::Drop(reason),
        };
        if let Some(t) = worker.trace.as_mut() {
            t.after(buf.data(), *action);
        }
        match *action {
            Action::Drop(reason) => worker.counters.inc(reason),
            Action::ToControl => worker.counters.inc(Counter::ToControl),
            Action::ToKernel => worker.counters.inc(Counter::ToKernel),
            Action::Steer(_) => worker.counters.inc(Counter::Steered),
            Action::Tx(_) => {}
        }
    }
    worker.flows.expire(now_ms, EXPIRE_BUDGET_PER_BURST);
}

/// Process one frame that another worker steered here (it was counted as received there).
pub fn process_steered<B: PacketBuf>(
    buf: &mut B,
    rx_port: u16,
    worker: &mut WorkerState,
    snap: &Snapshot,
    now_ms: u64,
) -> Action {
    worker.adopt(snap);
    if let Some(t) = worker.trace.as_mut() {
        t.before(buf.data(), rx_port, now_ms);
    }
    let action = match handle(buf, rx_port, worker, snap, now_ms) {
        // The owner never steers again: a frame steered twice would mean the workers
        // disagree on ownership; count it rather than loop.
        Ok(Action::Steer(_)) => {
            worker.counters.inc(Counter::DropSteeredTwice);
            Action::Drop(Counter::DropSteeredTwice)
        }
        Ok(a) => {
            match a {
                Action::ToControl => worker.counters.inc(Counter::ToControl),
                Action::ToKernel => worker.counters.inc(Counter::ToKernel),
                _ => {}
            }
            a
        }
        Err(reason) => {
            worker.counters.inc(reason);
            Action::Drop(reason)
        }
    };
    if let Some(t) = worker.trace.as_mut() {
        t.after(buf.data(), action);
    }
    action
}

type Verdict = Result<Action, Counter>;

fn handle<B: PacketBuf>(
    buf: &mut B,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let eth = EthernetFrame::new_checked(buf.data()).map_err(|_| Counter::DropEthMalformed)?;
    let port = snap
        .ports
        .get(usize::from(rx_port))
        .ok_or(Counter::DropNoRoute)?;
    let dst_mac = eth.dst();
    if dst_mac != port.mac && !dst_mac.is_multicast() {
        return Err(Counter::DropNotOurMac);
    }
    let src_mac = eth.src();
    if src_mac.is_multicast() || src_mac == MacAddr::ZERO {
        return Err(Counter::DropSrcMacInvalid);
    }
    // vipd's ports are untagged: a tagged frame belongs to a VLAN vipd has no address in, and
    // ARP/ND answers would leave untagged. Dropped and counted (docs/frame-classes.md).
    let outer_type = be16(buf.data(), 12);
    if matches!(
        outer_type,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD
    ) {
        return Err(Counter::DropVlanTagged);
    }
    let l2 = ethernet::HEADER_LEN;
    match outer_type {
        ethertype::ARP => local::arp(buf.data_mut(), l2, rx_port, port.mac, w, snap),
        ethertype::IPV4 if dst_mac.is_multicast() => Err(Counter::DropLinkMulticast),
        ethertype::IPV4 => handle_ipv4(buf, l2, rx_port, w, snap, now),
        ethertype::IPV6 => handle_ipv6(buf, l2, dst_mac.is_multicast(), rx_port, w, snap, now),
        _ => Err(Counter::DropUnsupportedEthertype),
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

/// What the pipeline knows of a validated IP packet, both families.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    /// Ethernet header length (where the IP header starts).
    l2: usize,
    v4: bool,
    /// Source and destination in flow-key form (IPv4-mapped for IPv4).
    src: [u8; 16],
    dst: [u8; 16],
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
            src: self.src,
            dst: self.dst,
            ident: f.ident,
            proto: self.l4.proto,
        }
    }

    /// The offset of the upper-layer header in the frame, and the end of the IP packet.
    fn l4_range(&self) -> std::ops::Range<usize> {
        self.l2 + self.l4.offset..self.l2 + self.len
    }
}

/// The checks every IPv4 packet passes once its header is valid: a source that may send
/// (unicast, not ours, not the destination), a unicast destination (a NAT real server's
/// reply to a multicast "client" was forwarded: found by fuzzing), a TTL that is not 0.
/// On 32-bit integers: this runs for every packet.
#[inline]
fn check_source_v4(src: u32, dst: u32, ttl: u8, snap: &Snapshot) -> Result<(), Counter> {
    let unicast = |a: u32| addr::is_unicast_source_v4(a.to_be_bytes());
    if !unicast(src) || src == dst || is_own_or_broadcast_v4(src, snap) {
        return Err(Counter::DropMartianSource);
    }
    if !unicast(dst) {
        return Err(Counter::DropMartianDestination);
    }
    if ttl == 0 {
        return Err(Counter::DropTtlZero);
    }
    Ok(())
}

/// [`check_source_v4`] for IPv6.
fn check_source_v6(
    src: &[u8; 16],
    dst: &[u8; 16],
    hops: u8,
    snap: &Snapshot,
) -> Result<(), Counter> {
    let own = || {
        let v6 = u128::from_be_bytes(*src);
        snap.ports
            .iter()
            .any(|p| p.ipv6.is_some_and(|n| u128::from(n.addr()) == v6))
    };
    if !addr::is_unicast_source_v6(src) || src == dst || own() {
        return Err(Counter::DropMartianSource);
    }
    if !addr::is_unicast_source_v6(dst) {
        return Err(Counter::DropMartianDestination);
    }
    if hops == 0 {
        return Err(Counter::DropTtlZero);
    }
    Ok(())
}

/// One of our port addresses, or the broadcast address of a port's IPv4 subnet.
#[inline]
fn is_own_or_broadcast_v4(v4: u32, snap: &Snapshot) -> bool {
    snap.ports.iter().any(|p| {
        p.ipv4.is_some_and(|n| {
            let own = u32::from(n.addr());
            let host_bits = 32 - u32::from(n.prefix_len());
            let broadcast = own | ((1u64 << host_bits) - 1) as u32;
            v4 == own || (host_bits > 1 && v4 == broadcast)
        })
    })
}

fn handle_ipv4<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let ip = Ipv4Packet::new_checked(&buf.data()[l2..]).map_err(|_| Counter::DropIpv4Malformed)?;
    // The NIC's verdict when the port offloads the check, else the software sum.
    let checksum_ok = match buf.rx_ipv4_checksum() {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => ip.verify_checksum(),
    };
    if !checksum_ok {
        return Err(Counter::DropIpv4BadChecksum);
    }
    check_source_v4(u32::from(ip.src()), u32::from(ip.dst()), ip.ttl(), snap)?;
    let src = ip.src().to_ipv6_mapped().octets();
    let dst = ip.dst().to_ipv6_mapped().octets();
    let frag = ip.is_fragment().then(|| Frag {
        ident: u32::from(ip.ident()),
        offset: ip.frag_offset(),
    });
    let pkt = Pkt {
        l2,
        v4: true,
        src,
        dst,
        ttl: ip.ttl(),
        len: usize::from(ip.total_len()),
        l4: L4At {
            proto: ip.protocol(),
            offset: ip.header_len(),
            header: frag.is_none_or(|f| f.is_first()),
        },
        dont_frag: ip.dont_frag(),
        frag,
    };
    dispatch(buf, &pkt, rx_port, w, snap, now)
}

fn handle_ipv6<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    link_multicast: bool,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let ip = Ipv6Packet::new_checked(&buf.data()[l2..]).map_err(|_| Counter::DropIpv6Malformed)?;
    let (src, dst) = (ip.src().octets(), ip.dst().octets());
    if addr::is_mapped(&src) || addr::is_mapped(&dst) {
        return Err(Counter::DropIpv6Mapped);
    }
    // Multicast frames carry Neighbour Discovery (ICMPv6) and nothing else vipd wants: MLD
    // reports (behind a hop-by-hop header) and the like end here.
    if link_multicast && ip.next_header() != ipv6::NEXT_HEADER_ICMPV6 {
        return Err(Counter::DropLinkMulticast);
    }
    let mut next = ip.next_header();
    let mut l4_offset = ipv6::HEADER_LEN;
    let mut frag = None;
    if next == ipv6::ext::FRAGMENT {
        let fh = FragmentHeader::parse(ip.payload()).map_err(|_| Counter::DropIpv6Malformed)?;
        next = fh.next_header;
        l4_offset += ipv6::FRAGMENT_HEADER_LEN;
        if !fh.is_atomic() {
            frag = Some(Frag {
                ident: fh.ident,
                offset: fh.offset,
            });
        }
    }
    // Only the fragment header is walked: hop-by-hop, routing and destination options carry
    // nothing a client of a VIP needs, and chains are how filters are evaded (RFC 7112).
    if ipv6::is_extension_header(next) {
        return Err(Counter::DropIpv6ExtHeader);
    }
    if next == ipv6::NEXT_HEADER_ICMPV6 && l4_offset == ipv6::HEADER_LEN {
        let msg_type = IcmpPacket::new_checked(ip.payload())
            .map_err(|_| Counter::DropL4Malformed)?
            .msg_type();
        if matches!(
            msg_type,
            icmp::v6::NEIGHBOR_SOLICIT | icmp::v6::NEIGHBOR_ADVERT
        ) {
            // Before the source checks: duplicate address detection comes from `::`, and
            // solicitations go to multicast groups that are not ours (RFC 4861 rules in ndp).
            return match ndp::handle_nd(buf, l2, rx_port, snap)? {
                NdVerdict::Reply => {
                    w.counters.inc(Counter::NdAdverts);
                    Ok(Action::Tx(rx_port))
                }
                NdVerdict::ToControl => Ok(Action::ToControl),
            };
        }
    }
    if link_multicast {
        return Err(Counter::DropLinkMulticast);
    }
    check_source_v6(&src, &dst, ip.hop_limit(), snap)?;
    let pkt = Pkt {
        l2,
        v4: false,
        src,
        dst,
        ttl: ip.hop_limit(),
        len: ipv6::HEADER_LEN + usize::from(ip.payload_len()),
        l4: L4At {
            proto: next,
            offset: l4_offset,
            header: frag.is_none_or(|f| f.is_first()),
        },
        dont_frag: true,
        frag,
    };
    dispatch(buf, &pkt, rx_port, w, snap, now)
}

/// By upper-layer protocol.
fn dispatch<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let icmp_proto = if pkt.v4 {
        ipv4::proto::ICMP
    } else {
        ipv6::NEXT_HEADER_ICMPV6
    };
    match pkt.l4.proto {
        ipv4::proto::TCP | ipv4::proto::UDP => match pkt.frag {
            Some(f) if !f.is_first() => egress::later_fragment(buf, pkt, f, rx_port, w, snap, now),
            _ => {
                let first_fragment = pkt.frag.is_some();
                let seg = buf
                    .data()
                    .get(pkt.l4_range())
                    .ok_or(Counter::DropL4Malformed)?;
                let (sport, dport, flags) = parse_l4(seg, pkt.l4.proto, first_fragment)?;
                let key = FlowKey {
                    src: pkt.src,
                    dst: pkt.dst,
                    src_port: sport,
                    dst_port: dport,
                    proto: pkt.l4.proto,
                };
                handle_l4(buf, pkt, &L4Info::new(key, flags), rx_port, w, snap, now)
            }
        },
        p if p == icmp_proto => {
            if pkt.frag.is_some() {
                // vipd does not reassemble, and an ICMP message cut in pieces cannot be
                // checked or relayed.
                return Err(Counter::DropFragmentInvalid);
            }
            icmp_msgs::handle(buf, pkt, rx_port, w, snap, now)
        }
        _ => {
            if snap.is_vip(&pkt.dst) {
                Err(Counter::DropUnsupportedProtocol)
            } else if snap.is_local(&from_mapped(&pkt.dst)) {
                for_kernel(rx_port, snap)
            } else {
                Err(Counter::DropNotLocal)
            }
        }
    }
}

/// The transport fields of a packet, family independent.
struct L4Info {
    key: FlowKey,
    /// `key.hash()`, computed once per packet for the flow table, scheduler and tunnel.
    hash: u64,
    tcp_flags: Option<TcpFlags>,
    /// The raw TCP flags byte (0 for UDP).
    tcp_bits: u8,
}

impl L4Info {
    fn new(key: FlowKey, tcp: Option<u8>) -> Self {
        L4Info {
            hash: key.hash(),
            key,
            tcp_flags: tcp.map(TcpFlags::from_bits),
            tcp_bits: tcp.unwrap_or(0),
        }
    }

    /// A SYN opening a connection: SYN without ACK, FIN or RST.
    fn is_lone_syn(&self) -> bool {
        self.tcp_flags
            .is_some_and(|f| f.syn && !f.ack && !f.fin && !f.rst)
    }
}

/// Whether a TCP flags byte is a combination a TCP endpoint sends: the table of Linux
/// conntrack (`tcp_valid_flags`), ignoring PSH, ECE and CWR. Rejects no flags, SYN+FIN,
/// SYN+RST, FIN without ACK and the like (scans, evasion, fingerprinting).
fn valid_tcp_flags(bits: u8) -> bool {
    use tcp::flags::{ACK, FIN, RST, SYN};
    const URG: u8 = 0x20;
    matches!(
        bits & (FIN | SYN | RST | ACK | URG),
        SYN | 0x22 // SYN|URG
            | 0x12 // SYN|ACK
            | RST
            | 0x14 // RST|ACK
            | 0x11 // FIN|ACK
            | 0x31 // FIN|ACK|URG
            | ACK
            | 0x30 // ACK|URG
    )
}

/// Ports and TCP flags of a TCP or UDP header. The UDP length is checked against the packet
/// unless this is a first fragment (its UDP length counts the whole datagram); a first
/// fragment must hold the whole TCP header (RFC 1858 tiny fragments).
fn parse_l4(
    seg: &[u8],
    l4_proto: u8,
    first_fragment: bool,
) -> Result<(u16, u16, Option<u8>), Counter> {
    let malformed = if first_fragment {
        Counter::DropFragmentInvalid
    } else {
        Counter::DropL4Malformed
    };
    if l4_proto == ipv4::proto::TCP {
        let t = TcpPacket::new_checked(seg).map_err(|_| malformed)?;
        Ok((t.src_port(), t.dst_port(), Some(t.flags())))
    } else if first_fragment {
        let u = UdpPacket::new_header_checked(seg).map_err(|_| malformed)?;
        Ok((u.src_port(), u.dst_port(), None))
    } else {
        let u = UdpPacket::new_checked(seg).map_err(|_| malformed)?;
        Ok((u.src_port(), u.dst_port(), None))
    }
}

fn handle_l4<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    info: &L4Info,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let key = &info.key;
    if snap.is_vip(&key.dst) {
        let (si, svc) = snap
            .service(&key.dst, key.proto, key.dst_port)
            .ok_or(Counter::DropNoService)?;
        if info.tcp_flags.is_some() && !valid_tcp_flags(info.tcp_bits) {
            return Err(Counter::DropTcpBadFlags);
        }
        let mut owner_here = true;
        if svc.has_nat && w.n_workers > 1 {
            let owner = w.owner_of(&key.src, key.src_port);
            if owner != w.index {
                if pkt.frag.is_none() {
                    return Ok(Action::Steer(owner));
                }
                // Fragments stay where they arrive, with the datagram's later fragments
                // (which carry no ports to find the owner by): decided statelessly.
                owner_here = false;
            }
        }
        return egress::forward_client(buf, pkt, info, si, svc, owner_here, rx_port, w, snap, now);
    }
    if snap.is_local(&key.dst_ip()) {
        // Before the NAT reply test: a real server answering the box itself (a health check
        // from the kernel) is not a reply to a client.
        return for_kernel(rx_port, snap);
    }
    if let Some(unique_service) = snap.nat_endpoint(&key.src, key.proto, key.src_port) {
        if info.tcp_flags.is_some() && !valid_tcp_flags(info.tcp_bits) {
            return Err(Counter::DropTcpBadFlags);
        }
        let mut owner_here = true;
        if w.n_workers > 1 {
            let owner = w.owner_of(&key.dst, key.dst_port);
            if owner != w.index {
                if pkt.frag.is_none() {
                    return Ok(Action::Steer(owner));
                }
                owner_here = false;
            }
        }
        return egress::nat_reply(
            buf,
            pkt,
            info,
            unique_service,
            owner_here,
            rx_port,
            w,
            snap,
            now,
        );
    }
    Err(Counter::DropNotLocal)
}

/// Traffic for a port address that vipd does not answer itself: to the kernel when the rx
/// port has a kernel interface (the exception path), else dropped.
pub(crate) fn for_kernel(rx_port: u16, snap: &Snapshot) -> Verdict {
    match snap.ports.get(usize::from(rx_port)) {
        Some(p) if p.kernel => Ok(Action::ToKernel),
        _ => Err(Counter::DropLocalUnhandled),
    }
}

fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}
