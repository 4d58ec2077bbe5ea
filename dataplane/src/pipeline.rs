//! The burst pipeline: classify each frame, decide, rewrite in place, and return one
//! [`Action`] per frame. No I/O, no allocation, no locks: the caller (the worker loop, or a
//! test) owns the frames and carries the actions out.
//!
//! Classification of an IP packet, in order (ARP, and IPv6 Neighbour Discovery whatever its
//! destination, are handled first):
//! 1. destination is a VIP: a client packet (step 1), forwarded to a real server (step 2) by
//!    its mode: NAT rewrite, DR MAC change, or TUN encapsulation (or an ICMP too-big back to
//!    the client when it does not fit the tunnel);
//! 2. source is a NAT real server's endpoint: a reply (step 3), rewritten to come from the
//!    VIP and sent to the client (step 4);
//! 3. destination is one of our port addresses: ICMP echo is answered, the rest dropped;
//! 4. anything else is dropped (vipd is not a router).

use crate::backend_stats::{BackendStats, DEFAULT_BACKEND_SLOTS};
use crate::counters::{Counter, WorkerCounters};
use crate::flow::key::to_mapped;
use crate::flow::{Direction, FlowKey, FlowTable, TcpFlags, TcpState};
use crate::fwd::tunnel::{self, Outer, TunnelError};
use crate::fwd::{icmp_error, nat};
use crate::io::{PacketBuf, RxChecksum};
use crate::ndp::{self, NdVerdict};
use crate::snapshot::{Backend, FwdMode, Snapshot};
use crate::wire::arp::{self, ArpPacket};
use crate::wire::ethernet::{ethertype, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::UdpPacket;
use crate::wire::MacAddr;
use std::net::IpAddr;
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
    cursors: Vec<u64>,
    generation: u64,
    icmp_errors: TokenBucket,
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
            cursors: vec![0; max_services],
            generation: u64::MAX,
            icmp_errors: TokenBucket::new(),
        }
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
        *action = match handle(buf, rx_port, worker, snap, now_ms) {
            Ok(a) => a,
            Err(reason) => Action::Drop(reason),
        };
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
    match handle(buf, rx_port, worker, snap, now_ms) {
        // The owner never steers again: a frame steered twice would mean the workers
        // disagree on ownership; count it rather than loop.
        Ok(Action::Steer(_)) => {
            worker.counters.inc(Counter::DropRingFull);
            Action::Drop(Counter::DropRingFull)
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
    }
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
    let l2 = eth.header_len();
    match eth.ethertype() {
        ethertype::ARP => handle_arp(buf.data_mut(), l2, rx_port, port.mac, w, snap),
        ethertype::IPV4 => handle_ipv4(buf, l2, rx_port, w, snap, now),
        ethertype::IPV6 => handle_ipv6(buf, l2, rx_port, w, snap, now),
        _ => Err(Counter::DropUnsupportedEthertype),
    }
}

fn handle_arp(
    frame: &mut [u8],
    l2: usize,
    rx_port: u16,
    our_mac: MacAddr,
    w: &WorkerState,
    snap: &Snapshot,
) -> Verdict {
    let a = ArpPacket::new_checked(&frame[l2..]).map_err(|_| Counter::DropArpIgnored)?;
    let target = IpAddr::V4(a.target_ip());
    match a.operation() {
        arp::op::REQUEST if snap.is_local(&target) || snap.is_vip(&to_mapped(target)) => {
            let (asker_mac, asker_ip) = (a.sender_mac(), a.sender_ip());
            let target_ip = a.target_ip();
            arp::emit(
                &mut frame[l2..],
                arp::op::REPLY,
                our_mac,
                target_ip,
                asker_mac,
                asker_ip,
            );
            set_macs(frame, our_mac, asker_mac);
            w.counters.inc(Counter::ArpReplies);
            Ok(Action::Tx(rx_port))
        }
        arp::op::REPLY if snap.is_local(&target) => Ok(Action::ToControl),
        _ => Err(Counter::DropArpIgnored),
    }
}

/// The transport fields of a packet, family independent.
struct L4Info {
    key: FlowKey,
    /// `key.hash()`, computed once per packet for the flow table, scheduler and tunnel.
    hash: u64,
    tcp_flags: Option<TcpFlags>,
}

impl L4Info {
    fn new(key: FlowKey, tcp_flags: Option<TcpFlags>) -> Self {
        L4Info {
            hash: key.hash(),
            key,
            tcp_flags,
        }
    }
}

fn tcp_flags(bits: u8) -> TcpFlags {
    TcpFlags {
        syn: bits & tcp::flags::SYN != 0,
        ack: bits & tcp::flags::ACK != 0,
        fin: bits & tcp::flags::FIN != 0,
        rst: bits & tcp::flags::RST != 0,
    }
}

/// Ports and TCP flags of a TCP or UDP payload.
fn parse_l4(payload: &[u8], l4_proto: u8) -> Result<(u16, u16, Option<TcpFlags>), Counter> {
    if l4_proto == ipv4::proto::TCP {
        let t = TcpPacket::new_checked(payload).map_err(|_| Counter::DropL4Malformed)?;
        Ok((t.src_port(), t.dst_port(), Some(tcp_flags(t.flags()))))
    } else {
        let u = UdpPacket::new_checked(payload).map_err(|_| Counter::DropL4Malformed)?;
        Ok((u.src_port(), u.dst_port(), None))
    }
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
    let (src, dst, l4_proto) = (ip.src(), ip.dst(), ip.protocol());
    let fragment = ip.is_fragment();
    match l4_proto {
        ipv4::proto::TCP | ipv4::proto::UDP => {
            if fragment {
                return Err(Counter::DropIpv4Fragment);
            }
            let (sport, dport, tcp_flags) = parse_l4(ip.payload(), l4_proto)?;
            let info = L4Info::new(FlowKey::v4(src, dst, sport, dport, l4_proto), tcp_flags);
            handle_l4(buf, l2, rx_port, &info, w, snap, now)
        }
        ipv4::proto::ICMP if !fragment => {
            let to_us = snap.is_local(&IpAddr::V4(dst)) || snap.is_vip(&to_mapped(IpAddr::V4(dst)));
            let icmp_msg =
                IcmpPacket::new_checked(ip.payload()).map_err(|_| Counter::DropL4Malformed)?;
            if !to_us {
                return Err(Counter::DropNotLocal);
            }
            if icmp_msg.msg_type() != icmp::v4::ECHO_REQUEST {
                return if snap.is_local(&IpAddr::V4(dst)) {
                    for_kernel(rx_port, snap)
                } else {
                    Err(Counter::DropLocalUnhandled)
                };
            }
            let frame = buf.data_mut();
            let mut ip = Ipv4Packet::new_checked(&mut frame[l2..])
                .map_err(|_| Counter::DropIpv4Malformed)?;
            ip.set_src(dst);
            ip.set_dst(src);
            ip.set_ttl(OWN_TTL);
            ip.fill_checksum();
            let mut m =
                IcmpPacket::new_checked(ip.payload_mut()).map_err(|_| Counter::DropL4Malformed)?;
            m.set_type_incremental(icmp::v4::ECHO_REPLY);
            echo_reply_l2(frame, rx_port, w, snap)
        }
        _ => {
            if snap.is_vip(&to_mapped(IpAddr::V4(dst))) {
                Err(Counter::DropUnsupportedProtocol)
            } else if snap.is_local(&IpAddr::V4(dst)) {
                for_kernel(rx_port, snap)
            } else {
                Err(Counter::DropNotLocal)
            }
        }
    }
}

fn handle_ipv6<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let ip = Ipv6Packet::new_checked(&buf.data()[l2..]).map_err(|_| Counter::DropIpv6Malformed)?;
    let (src, dst, next) = (ip.src(), ip.dst(), ip.next_header());
    match next {
        ipv4::proto::TCP | ipv4::proto::UDP => {
            let (sport, dport, tcp_flags) = parse_l4(ip.payload(), next)?;
            let info = L4Info::new(FlowKey::v6(src, dst, sport, dport, next), tcp_flags);
            handle_l4(buf, l2, rx_port, &info, w, snap, now)
        }
        ipv6::NEXT_HEADER_ICMPV6 => {
            let msg_type = IcmpPacket::new_checked(ip.payload())
                .map_err(|_| Counter::DropL4Malformed)?
                .msg_type();
            if matches!(
                msg_type,
                icmp::v6::NEIGHBOR_SOLICIT | icmp::v6::NEIGHBOR_ADVERT
            ) {
                // Solicitations go to multicast addresses that are not ours: checked before
                // the "to us" test, with the RFC 4861 rules in ndp.
                return match ndp::handle_nd(buf, l2, rx_port, snap)? {
                    NdVerdict::Reply => {
                        w.counters.inc(Counter::NdAdverts);
                        Ok(Action::Tx(rx_port))
                    }
                    NdVerdict::ToControl => Ok(Action::ToControl),
                };
            }
            let to_us = snap.is_local(&IpAddr::V6(dst)) || snap.is_vip(&dst.octets());
            if !to_us {
                return Err(Counter::DropNotLocal);
            }
            if msg_type != icmp::v6::ECHO_REQUEST {
                return if snap.is_local(&IpAddr::V6(dst)) {
                    for_kernel(rx_port, snap)
                } else {
                    Err(Counter::DropLocalUnhandled)
                };
            }
            let frame = buf.data_mut();
            let mut ip = Ipv6Packet::new_checked(&mut frame[l2..])
                .map_err(|_| Counter::DropIpv6Malformed)?;
            ip.set_src(dst);
            ip.set_dst(src);
            ip.set_hop_limit(OWN_TTL);
            // Swapping the addresses leaves the pseudo-header sum unchanged.
            let mut m =
                IcmpPacket::new_checked(ip.payload_mut()).map_err(|_| Counter::DropL4Malformed)?;
            m.set_type_incremental(icmp::v6::ECHO_REPLY);
            echo_reply_l2(frame, rx_port, w, snap)
        }
        _ => {
            if snap.is_vip(&dst.octets()) {
                Err(Counter::DropUnsupportedProtocol)
            } else if snap.is_local(&IpAddr::V6(dst)) {
                for_kernel(rx_port, snap)
            } else {
                Err(Counter::DropNotLocal)
            }
        }
    }
}

/// Echo replies go back where the request came from: to its source MAC on the same port.
fn echo_reply_l2(frame: &mut [u8], rx_port: u16, w: &WorkerState, snap: &Snapshot) -> Verdict {
    let eth = EthernetFrame::new_checked(&*frame).map_err(|_| Counter::DropEthMalformed)?;
    let requester = eth.src();
    let our_mac = snap
        .ports
        .get(usize::from(rx_port))
        .ok_or(Counter::DropNoRoute)?
        .mac;
    set_macs(frame, our_mac, requester);
    w.counters.inc(Counter::EchoReplies);
    Ok(Action::Tx(rx_port))
}

fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

fn handle_l4<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    rx_port: u16,
    info: &L4Info,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let key = &info.key;
    if snap.is_vip(&key.dst) {
        let (si, svc) = snap
            .service(&key.dst, key.proto, key.dst_port)
            .ok_or(Counter::DropNoService)?;
        if svc.has_nat && w.n_workers > 1 {
            let owner = w.owner_of(&key.src, key.src_port);
            if owner != w.index {
                return Ok(Action::Steer(owner));
            }
        }
        let backend = flow_backend(info, si, w, snap, now)?;
        w.backends.count_step1(backend.id);
        return forward(buf, l2, backend, info, rx_port, w, snap, now);
    }
    if snap.is_local(&key.dst_ip()) {
        // Before the NAT reply test: a real server answering the box itself (a health check
        // from the kernel) is not a reply to a client.
        return for_kernel(rx_port, snap);
    }
    if let Some(unique_service) = snap.nat_endpoint(&key.src, key.proto, key.src_port) {
        if w.n_workers > 1 {
            let owner = w.owner_of(&key.dst, key.dst_port);
            if owner != w.index {
                return Ok(Action::Steer(owner));
            }
        }
        return nat_reply(buf.data_mut(), l2, info, unique_service, w, snap, now);
    }
    Err(Counter::DropNotLocal)
}

/// Traffic for a port address that vipd does not answer itself: to the kernel when the rx
/// port has a kernel interface (the exception path), else dropped.
fn for_kernel(rx_port: u16, snap: &Snapshot) -> Verdict {
    match snap.ports.get(usize::from(rx_port)) {
        Some(p) if p.kernel => Ok(Action::ToKernel),
        _ => Err(Counter::DropLocalUnhandled),
    }
}

/// The real server of a client packet's connection: the flow entry's, or a newly scheduled one.
fn flow_backend<'s>(
    info: &L4Info,
    service_index: u32,
    w: &mut WorkerState,
    snap: &'s Snapshot,
    now: u64,
) -> Result<&'s Backend, Counter> {
    let (key, hash, flags) = (&info.key, info.hash, info.tcp_flags);
    if let Some(hit) = w.flows.lookup(key, hash, now) {
        let new_syn = flags.is_some_and(|f| f.syn && !f.ack);
        let closed = matches!(hit.state, TcpState::TimeWait | TcpState::Close);
        if new_syn && closed {
            // The client reuses the port of a finished connection: schedule afresh, as IPVS
            // does, instead of sending the new SYN into the old connection's leftovers.
            w.flows.remove(hit.id);
        } else if let Some(b) = snap.backend(hit.backend) {
            if b.drop_flows {
                // Its real server failed its health checks and the service drops dead flows
                // (IPVS expire_nodest_conn): the client's next packet is scheduled afresh.
                w.flows.remove(hit.id);
                return Err(Counter::DropRealServerDown);
            }
            w.flows.track(hit.id, Direction::Original, flags, now);
            return Ok(b);
        } else {
            w.flows.remove(hit.id);
            return Err(Counter::DropBackendGone);
        }
    }
    let svc = snap
        .services
        .get(service_index as usize)
        .ok_or(Counter::DropNoService)?;
    let cursor = w
        .cursors
        .get_mut(service_index as usize)
        .ok_or(Counter::DropNoService)?;
    let id = svc.pick(hash, cursor).ok_or(Counter::DropNoBackend)?;
    let backend = snap.backend(id).ok_or(Counter::DropNoBackend)?;
    let reply = (backend.mode == FwdMode::Nat).then(|| {
        FlowKey::new(
            backend.addr,
            key.src_ip(),
            backend.port,
            key.src_port,
            key.proto,
        )
    });
    let reply_arg = reply.as_ref().map(|r| (r, r.hash()));
    match w.flows.insert(key, hash, reply_arg, id, now) {
        Ok(fid) => {
            w.flows.track(fid, Direction::Original, flags, now);
            w.counters.inc(Counter::FlowsCreated);
            w.backends.count_new(id);
            Ok(backend)
        }
        Err(_) => {
            // No room (or a reply-key clash): forward statelessly with the consistent hash so
            // every packet of this flow still reaches the same real server.
            w.counters.inc(Counter::FlowTableFull);
            let id = svc.pick_consistent(hash).ok_or(Counter::DropNoBackend)?;
            snap.backend(id).ok_or(Counter::DropNoBackend)
        }
    }
}

/// Step 2: rewrite for the real server's mode and send to its next hop.
#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
fn forward<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    backend: &Backend,
    info: &L4Info,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let mac = backend
        .next_hop_mac
        .ok_or(Counter::DropNeighbourUnresolved)?;
    let port = snap
        .ports
        .get(usize::from(backend.egress_port))
        .ok_or(Counter::DropNoRoute)?;
    match backend.mode {
        FwdMode::Nat => {
            nat::rewrite_to_backend(&mut buf.data_mut()[l2..], backend.addr, backend.port)?
        }
        // Direct routing is a layer-2 hop: the packet still goes to the VIP, only the
        // destination MAC changes (and, like IPVS's DR transmitter, the TTL is left alone).
        FwdMode::Dr => {}
        FwdMode::Tunnel => {
            let flow_hash = (info.hash >> 32) as u32 ^ info.hash as u32;
            let base = match backend.addr {
                IpAddr::V4(_) => port.ipv4.map(|n| IpAddr::V4(n.addr())),
                IpAddr::V6(_) => port.ipv6.map(|n| IpAddr::V6(n.addr())),
            }
            .ok_or(Counter::DropTunnelNoSource)?;
            let prefix = match backend.addr {
                IpAddr::V4(_) => port.tunnel_source4.map(ipnet::IpNet::V4),
                IpAddr::V6(_) => port.tunnel_source6.map(ipnet::IpNet::V6),
            };
            let outer = Outer {
                src: tunnel::outer_source(base, prefix, flow_hash),
                dst: backend.addr,
                ttl: OWN_TTL,
                flow_hash,
                mtu: port.mtu,
            };
            match tunnel::encapsulate(buf, l2, &outer) {
                Ok(()) => {}
                Err(TunnelError::Drop(reason)) => return Err(reason),
                Err(TunnelError::TooBig { mtu }) => {
                    return too_big(buf, l2, backend, mtu, rx_port, w, snap, now);
                }
            }
        }
    }
    set_macs(buf.data_mut(), port.mac, mac);
    w.counters.inc(Counter::Forwarded);
    w.backends.count_in(backend.id, buf.data().len());
    Ok(Action::Tx(backend.egress_port))
}

/// A client packet too big for the tunnel: answer its sender with ICMP "fragmentation needed"
/// / ICMPv6 "packet too big" from the VIP, out of the port it came in by, within the worker's
/// ICMP error rate.
#[allow(clippy::too_many_arguments)] // the pipeline's per-frame context, passed by reference
fn too_big<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    backend: &Backend,
    mtu: u16,
    rx_port: u16,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let vip = snap
        .services
        .get(backend.service as usize)
        .ok_or(Counter::DropNoService)?
        .vip;
    if !w.icmp_errors.take(now) {
        return Err(Counter::DropIcmpErrorRateLimited);
    }
    icmp_error::too_big(buf, l2, vip, mtu)?;
    w.counters.inc(Counter::IcmpTooBigSent);
    Ok(Action::Tx(rx_port))
}

/// Steps 3-4: a NAT real server's reply goes back to the client from the VIP.
fn nat_reply(
    frame: &mut [u8],
    l2: usize,
    info: &L4Info,
    unique_service: Option<u32>,
    w: &mut WorkerState,
    snap: &Snapshot,
    now: u64,
) -> Verdict {
    let key = &info.key;
    let mut backend_id = None;
    let service = match w.flows.lookup(key, info.hash, now) {
        Some(hit) if hit.dir == Direction::Reply => {
            w.flows.track(hit.id, Direction::Reply, info.tcp_flags, now);
            w.backends.count_step3(hit.backend);
            backend_id = Some(hit.backend);
            snap.backend(hit.backend).map(|b| b.service)
        }
        _ => None,
    };
    let service = match service {
        Some(s) => s,
        None => {
            let s = unique_service.ok_or(Counter::DropNatReplyNoFlow)?;
            w.counters.inc(Counter::NatRepliesStateless);
            s
        }
    };
    let svc = snap
        .services
        .get(service as usize)
        .ok_or(Counter::DropNatReplyNoFlow)?;
    let (port, mac) = snap.resolve(&key.dst_ip())?;
    let our_mac = snap
        .ports
        .get(usize::from(port))
        .ok_or(Counter::DropNoRoute)?
        .mac;
    nat::rewrite_to_vip(&mut frame[l2..], svc.vip, svc.port)?;
    set_macs(frame, our_mac, mac);
    w.counters.inc(Counter::NatReplies);
    if let Some(id) = backend_id {
        w.backends.count_out(id, frame.len());
    }
    Ok(Action::Tx(port))
}
