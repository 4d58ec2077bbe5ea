//! Sending a decided packet: every check that could still drop it ([`check`], before any flow
//! state changes), then the rewrite for the real server's mode and the MACs of the next hop.
//! Also the two directions of a NAT connection and the later fragments of a datagram.

use super::flows;
use super::{set_macs, Action, Ctx, Frag, L4Info, Pkt, Verdict, WorkerState, OWN_TTL};
use crate::counters::{Counter, DropReason};
use crate::flow::{Direction, FlowId};
use crate::fwd::fnat::{self, Ends};
use crate::fwd::fragment::FragmentRoute;
use crate::fwd::icmp_error;
use crate::fwd::nat::{self, L4At};
use crate::fwd::tunnel::{self, Outer, TunnelError};
use crate::io::PacketBuf;
use crate::snapshot::{Backend, FwdMode, PortInfo, Service, Snapshot};
use crate::wire::MacAddr;
use std::net::IpAddr;

/// A 64-bit hash folded to the 32 bits a tunnel's outer header takes.
fn fold(h: u64) -> u32 {
    (h >> 32) as u32 ^ h as u32
}

/// Smallest MTU an IPv4 host must accept (RFC 791).
const MIN_MTU_V4: u16 = 68;
/// Smallest IPv6 link MTU (RFC 8200).
const MIN_MTU_V6: u16 = 1280;

/// Why a packet cannot go to its real server as it is.
pub(super) enum Reject {
    /// Drop it, counting this reason.
    Drop(DropReason),
    /// Answer its sender with ICMP too-big reporting this MTU.
    TooBig(u16),
}

impl From<DropReason> for Reject {
    fn from(c: DropReason) -> Self {
        Reject::Drop(c)
    }
}

/// Whether a packet fits an egress MTU as it is (NAT and DR do not change its size).
fn fits(pkt: &Pkt, mtu: u16) -> Result<(), Reject> {
    if pkt.len <= usize::from(mtu) {
        return Ok(());
    }
    let min = if pkt.v4 { MIN_MTU_V4 } else { MIN_MTU_V6 };
    if pkt.dont_frag && mtu >= min {
        Err(Reject::TooBig(mtu))
    } else {
        // vipd never fragments; without DF the sender has no way to learn a smaller size.
        Err(Reject::Drop(DropReason::TooBig))
    }
}

/// The grow-at-the-front room an encapsulation needs, tried without changing the frame.
fn has_headroom<B: PacketBuf>(buf: &mut B, len: usize) -> bool {
    buf.prepend(len) && buf.adj(len)
}

fn egress_port<'s>(backend: &Backend, snap: &'s Snapshot) -> Result<&'s PortInfo, DropReason> {
    snap.ports
        .get(usize::from(backend.egress_port))
        .ok_or(DropReason::NoRoute)
}

/// Where a checked packet goes: [`check`]'s answer, used by [`deliver`] (one lookup).
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    /// The next hop's MAC.
    next_hop: MacAddr,
    /// The egress port and its MAC.
    port: u16,
    our_mac: MacAddr,
    /// The tunnel header to add (TUN).
    outer: Option<Outer>,
}

/// Everything that could stop `pkt` on its way to `backend`, checked without changing the
/// frame or any state; returns where it goes. `flow_hash` picks the tunnel's outer source
/// and flow label (the flow table hash's bits; a datagram's fragments share their
/// fragment key's).
pub(super) fn check<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    backend: &Backend,
    flow_hash: u32,
    snap: &Snapshot,
) -> Result<Route, Reject> {
    let next_hop = backend
        .next_hop_mac
        .ok_or(DropReason::NeighbourUnresolved)?;
    let port = egress_port(backend, snap)?;
    let route = |outer| Route {
        next_hop,
        port: backend.egress_port,
        our_mac: port.mac,
        outer,
    };
    match backend.mode {
        FwdMode::Nat | FwdMode::Fnat => {
            if pkt.ttl <= 1 {
                return Err(DropReason::TtlExceeded.into());
            }
            fits(pkt, port.mtu)?;
            Ok(route(None))
        }
        // Direct routing is a layer-2 hop: the packet still goes to the VIP, only the
        // destination MAC changes (and, like IPVS's DR transmitter, the TTL is left alone).
        FwdMode::Dr => {
            fits(pkt, port.mtu)?;
            Ok(route(None))
        }
        FwdMode::Tunnel => {
            let base = match backend.addr {
                IpAddr::V4(_) => port.ipv4.map(|n| IpAddr::V4(n.addr())),
                IpAddr::V6(_) => port.ipv6.map(|n| IpAddr::V6(n.addr())),
            }
            .ok_or(DropReason::TunnelNoSource)?;
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
            match tunnel::check(buf.data(), pkt.l2, &outer) {
                Ok(overhead) if has_headroom(buf, overhead) => Ok(route(Some(outer))),
                Ok(_) => Err(DropReason::NoHeadroom.into()),
                Err(TunnelError::TooBig { mtu }) => Err(Reject::TooBig(mtu)),
                Err(TunnelError::Drop(c)) => Err(c.into()),
            }
        }
    }
}

/// [`check`], answering a packet that is too big with ICMP too-big from `ctx.0` (the VIP):
/// `Ok(Ok(route))` to send it, `Ok(Err(action))` when it was answered instead. `ctx` is
/// (VIP, rx port, now).
fn check_or_answer<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    backend: &Backend,
    flow_hash: u32,
    ctx: (IpAddr, u16, u64),
    w: &mut WorkerState,
    snap: &Snapshot,
) -> Result<Result<Route, Action>, DropReason> {
    let (vip, rx_port, now) = ctx;
    match check(buf, pkt, backend, flow_hash, snap) {
        Ok(o) => Ok(Ok(o)),
        Err(Reject::Drop(c)) => Err(c),
        Err(Reject::TooBig(mtu)) => too_big(buf, pkt.l2, vip, mtu, rx_port, w, now).map(Err),
    }
}

/// Rewrite a checked packet for its real server's mode and address it to the next hop.
/// Returns the egress port. Cannot fail after [`check`] passed (errors are still counted).
/// `fnat`: a full-NAT packet's new endpoints (required for a full-NAT real server).
pub(super) fn rewrite<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    backend: &Backend,
    route: &Route,
    fnat: Option<Ends>,
) -> Result<u16, DropReason> {
    match backend.mode {
        FwdMode::Nat => {
            let l3 = buf
                .data_mut()
                .get_mut(pkt.l2..)
                .ok_or(DropReason::EthMalformed)?;
            nat::rewrite_to_backend(l3, pkt.l4, backend.addr, backend.port)?;
        }
        FwdMode::Fnat => {
            let ends = fnat.ok_or(DropReason::FnatNoFlow)?;
            let l3 = buf
                .data_mut()
                .get_mut(pkt.l2..)
                .ok_or(DropReason::EthMalformed)?;
            fnat::rewrite(l3, pkt.l4, ends)?;
        }
        FwdMode::Dr | FwdMode::Tunnel => {}
    }
    deliver(buf, pkt.l2, route)
}

/// A full-NAT connection's packet towards its real server: from the local endpoint of its
/// reply key (real server -> local address:port) to the real server.
fn fnat_to_backend(w: &WorkerState, id: Option<FlowId>, backend: &Backend) -> Option<Ends> {
    let (_, reply) = w.flows.keys(id?)?;
    let reply = reply?;
    Some(Ends {
        src: reply.dst_ip(),
        src_port: reply.dst_port,
        dst: backend.addr,
        dst_port: backend.port,
    })
}

/// A full-NAT connection's reply towards the client: from the VIP endpoint to the client
/// endpoint, both read from its original key (client -> VIP).
fn fnat_to_client(w: &WorkerState, id: FlowId) -> Option<(Ends, [u8; 16])> {
    let (orig, _) = w.flows.keys(id)?;
    Some((
        Ends {
            src: orig.dst_ip(),
            src_port: orig.dst_port,
            dst: orig.src_ip(),
            dst_port: orig.src_port,
        },
        orig.src,
    ))
}

/// The last hop of every packet to a real server: encapsulate (TUN) and set the MACs.
pub(super) fn deliver<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    route: &Route,
) -> Result<u16, DropReason> {
    if let Some(outer) = &route.outer {
        tunnel::encapsulate(buf, l2, outer).map_err(|e| match e {
            TunnelError::Drop(c) => c,
            TunnelError::TooBig { .. } => DropReason::TunnelTooBig,
        })?;
    }
    set_macs(buf.data_mut(), route.our_mac, route.next_hop);
    Ok(route.port)
}

/// Steps 1 -> 2: a client packet (or a datagram's first fragment) to its real server.
pub(super) fn forward_client<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    info: &L4Info,
    service_index: u32,
    owner_here: bool,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, now, rx_port) = (cx.snap, cx.now, cx.rx_port);
    let key = &pkt.key;
    let svc = snap
        .services
        .get(service_index as usize)
        .ok_or(DropReason::NoService)?;
    let choice = flows::choose(key, info, service_index, svc, owner_here, cx)?;
    if choice.backend.mode == FwdMode::Fnat && pkt.frag.is_some() {
        return Err(DropReason::FnatFragment);
    }
    cx.w.backends.count_step1(choice.backend.id);
    // A datagram's fragments share one tunnel header (one receive queue at the real server).
    let tunnel_hash = pkt
        .frag
        .map_or(info.table.bits(), |f| fold(pkt.frag_key(f).hash()));
    let ctx = (svc.vip, rx_port, now);
    let mut route = match check_or_answer(buf, pkt, choice.backend, tunnel_hash, ctx, cx.w, snap)? {
        Ok(o) => o,
        Err(answer) => return Ok(answer),
    };
    let (backend, id) = flows::commit(&choice, key, info, svc, cx)?;
    if backend.id != choice.backend.id {
        // The table had no room after all: the consistent hash's real server, checked again
        // (nothing was committed).
        route = match check_or_answer(buf, pkt, backend, tunnel_hash, ctx, cx.w, snap)? {
            Ok(o) => o,
            Err(answer) => return Ok(answer),
        };
    }
    let fnat = match backend.mode {
        FwdMode::Fnat => Some(fnat_to_backend(cx.w, id, backend).ok_or(DropReason::FnatNoFlow)?),
        _ => None,
    };
    let port = rewrite(buf, pkt, backend, &route, fnat)?;
    if let Some(f) = pkt.frag {
        cx.w.frags
            .remember(&pkt.frag_key(f), FragmentRoute::ToBackend(backend.id), now);
        cx.w.counters.inc(Counter::FragmentsForwarded);
    }
    cx.w.counters.inc(Counter::Forwarded);
    cx.w.backends.count_in(backend.id, buf.data().len());
    Ok(Action::Tx(port))
}

/// Steps 3 -> 4: a NAT real server's reply (or its first fragment) goes back to the client
/// from the VIP.
pub(super) fn nat_reply<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    info: &L4Info,
    unique_service: Option<u32>,
    owner_here: bool,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, now) = (cx.snap, cx.now);
    let key = &pkt.key;
    let hit = if owner_here {
        match cx.w.flows.lookup(key, info.table, now) {
            Some(h) if h.dir == Direction::Reply => {
                cx.w.backends.count_step3(h.backend);
                snap.backend(h.backend)
                    .map(|b| (h.id, b.service, h.backend, b.mode == FwdMode::Fnat))
            }
            _ => None,
        }
    } else {
        None
    };
    // Full-NAT: the client is the original key's source, not this packet's destination.
    let fnat = match hit {
        Some((id, _, _, true)) => {
            if pkt.frag.is_some() {
                return Err(DropReason::FnatFragment);
            }
            Some(fnat_to_client(cx.w, id).ok_or(DropReason::FnatNoFlow)?)
        }
        _ => None,
    };
    let client = fnat.as_ref().map_or(&key.dst, |(_, c)| c);
    let service = match hit {
        Some((_, s, _, _)) => s,
        None => unique_service.ok_or(DropReason::NatReplyNoFlow)?,
    };
    let svc = snap
        .services
        .get(service as usize)
        .ok_or(DropReason::NatReplyNoFlow)?;
    let hop = match to_client(buf, pkt, client, cx)? {
        Ok(hop) => hop,
        Err(answer) => return Ok(answer),
    };
    match hit {
        Some((id, _, _, _)) => {
            cx.w.flows.track(id, Direction::Reply, info.tcp_flags, now);
        }
        None => cx.w.counters.inc(Counter::NatRepliesStateless),
    }
    let port = finish_reply(buf, pkt, svc, hop, fnat.map(|(e, _)| e))?;
    if let Some((_, _, backend, _)) = hit {
        cx.w.backends.count_out(backend, buf.data().len());
    }
    if let Some(f) = pkt.frag {
        cx.w.frags
            .remember(&pkt.frag_key(f), FragmentRoute::NatReply(service), now);
        cx.w.counters.inc(Counter::FragmentsForwarded);
    }
    cx.w.counters.inc(Counter::NatReplies);
    Ok(Action::Tx(port))
}

/// The next hop towards a client: egress port, its MAC, the hop's MAC.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClientHop {
    pub(super) port: u16,
    pub(super) our_mac: MacAddr,
    pub(super) mac: MacAddr,
}

/// The checks of a packet towards a client (step 4): route and MAC, TTL, MTU. `Ok(Ok(hop))`
/// to send it; `Ok(Err(action))` when the sender is answered with too-big instead (or the
/// client must be resolved first).
fn to_client<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    client: &[u8; 16],
    cx: &mut Ctx<'_, '_>,
) -> Result<Result<ClientHop, Action>, DropReason> {
    let (snap, now, rx_port) = (cx.snap, cx.now, cx.rx_port);
    let hop = match resolve_client(client, snap, cx.w)? {
        Ok(hop) => hop,
        Err(ask) => return Ok(Err(ask)),
    };
    if pkt.ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let mtu = snap
        .ports
        .get(usize::from(hop.port))
        .ok_or(DropReason::NoRoute)?
        .mtu;
    match fits(pkt, mtu) {
        Ok(()) => Ok(Ok(hop)),
        Err(Reject::Drop(c)) => Err(c),
        Err(Reject::TooBig(mtu)) => {
            // The real server sent more than the client's side takes: tell it, from our
            // address on the port it came in by, as the router we are.
            let rx = snap
                .ports
                .get(usize::from(rx_port))
                .ok_or(DropReason::NoRoute)?;
            let from = if pkt.v4 {
                rx.ipv4.map(|n| IpAddr::V4(n.addr()))
            } else {
                rx.ipv6.map(|n| IpAddr::V6(n.addr()))
            }
            .ok_or(DropReason::IcmpErrorSuppressed)?;
            too_big(buf, pkt.l2, from, mtu, rx_port, cx.w, now).map(Err)
        }
    }
}

/// The next hop towards a client (`client`, flow-key form) (`Ok(Ok)`), or, when the client
/// is on-link and its MAC unknown, the frame handed to the control thread, which resolves
/// the client on demand (`Ok(Err)`): NAT replies to clients on the LB's own segments were
/// never resolved.
pub(super) fn resolve_client(
    client: &[u8; 16],
    snap: &Snapshot,
    w: &WorkerState,
) -> Result<Result<ClientHop, Action>, DropReason> {
    match snap.resolve_key(client) {
        Ok((port, mac)) => {
            let our_mac = snap
                .ports
                .get(usize::from(port))
                .ok_or(DropReason::NoRoute)?
                .mac;
            Ok(Ok(ClientHop { port, our_mac, mac }))
        }
        Err(DropReason::NeighbourUnresolved) if snap.next_hop_is_itself(client) => {
            w.counters.inc(Counter::NeighbourResolveRequests);
            Ok(Err(Action::ToControl))
        }
        Err(c) => Err(c),
    }
}

/// Rewrite a checked reply to come from the VIP and address it to the client's next hop;
/// returns the egress port. `fnat`: a full-NAT reply's endpoints (both rewritten).
fn finish_reply<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    svc: &Service,
    hop: ClientHop,
    fnat: Option<Ends>,
) -> Result<u16, DropReason> {
    let frame = buf.data_mut();
    let l3 = frame.get_mut(pkt.l2..).ok_or(DropReason::EthMalformed)?;
    match fnat {
        Some(ends) => fnat::rewrite(l3, pkt.l4, ends)?,
        None => nat::rewrite_to_vip(l3, pkt.l4, svc.vip, svc.port)?,
    }
    set_macs(frame, hop.our_mac, hop.mac);
    Ok(hop.port)
}

/// A fragment after the first: it follows its datagram's first fragment.
pub(super) fn later_fragment<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    f: Frag,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, now, rx_port) = (cx.snap, cx.now, cx.rx_port);
    // RFC 1858: an offset of 8 bytes can only serve to overwrite a TCP header's flags.
    if pkt.l4.proto == crate::wire::ipv4::proto::TCP && f.offset == 8 {
        return Err(DropReason::FragmentInvalid);
    }
    let key = pkt.frag_key(f);
    let pkt = &Pkt {
        l4: L4At {
            header: false,
            ..pkt.l4
        },
        ..*pkt
    };
    let to_backend = |buf: &mut B, backend: &Backend, w: &mut WorkerState| {
        if backend.mode == FwdMode::Fnat {
            return Err(DropReason::FnatFragment);
        }
        let vip = snap
            .services
            .get(backend.service as usize)
            .ok_or(DropReason::NoService)?
            .vip;
        let ctx = (vip, rx_port, now);
        let route = match check_or_answer(buf, pkt, backend, fold(key.hash()), ctx, w, snap)? {
            Ok(o) => o,
            Err(answer) => return Ok(Err(answer)),
        };
        let port = rewrite(buf, pkt, backend, &route, None)?;
        w.counters.inc(Counter::FragmentsForwarded);
        w.counters.inc(Counter::Forwarded);
        w.backends.count_in(backend.id, buf.data().len());
        Ok(Ok(port))
    };
    match cx.w.frags.lookup(&key, now) {
        Some(FragmentRoute::ToBackend(id)) => {
            let backend = snap.backend(id).ok_or(DropReason::BackendGone)?;
            Ok(match to_backend(buf, backend, cx.w)? {
                Ok(port) => Action::Tx(port),
                Err(answer) => answer,
            })
        }
        Some(FragmentRoute::NatReply(service)) => {
            let svc = snap
                .services
                .get(service as usize)
                .ok_or(DropReason::NatReplyNoFlow)?;
            let hop = match to_client(buf, pkt, &pkt.key.dst, cx)? {
                Ok(hop) => hop,
                Err(answer) => return Ok(answer),
            };
            let port = finish_reply(buf, pkt, svc, hop, None)?;
            cx.w.counters.inc(Counter::FragmentsForwarded);
            cx.w.counters.inc(Counter::NatReplies);
            Ok(Action::Tx(port))
        }
        // The kernel reassembles its own fragments.
        None if snap.is_local_key(&pkt.key.dst) => super::for_kernel(rx_port, snap),
        None => {
            // Its first fragment was not seen here (a restart, reordering, the first routed to
            // another box). Without ports only a service hashing on (source, destination,
            // protocol) knows the real server, the one the datagram's first fragment and the
            // flow's other packets went to; no state is kept for it.
            let (_, svc) = snap
                .service_without_ports(&pkt.key.dst, pkt.l4.proto)
                .ok_or(DropReason::FragmentUnknown)?;
            let backend = svc
                .pick_consistent(svc.flow_hash(&pkt.key))
                .and_then(|id| snap.backend(id))
                .ok_or(DropReason::NoBackend)?;
            let port = match to_backend(buf, backend, cx.w)? {
                Ok(port) => port,
                Err(answer) => return Ok(answer),
            };
            cx.w.counters.inc(Counter::FragmentsStateless);
            Ok(Action::Tx(port))
        }
    }
}

/// A packet too big for its way on: answer its sender with ICMP "fragmentation needed" /
/// ICMPv6 "packet too big" from `from`, out of the port it came in by, within the worker's
/// ICMP error rate.
pub(super) fn too_big<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    from: IpAddr,
    mtu: u16,
    rx_port: u16,
    w: &mut WorkerState,
    now: u64,
) -> Verdict {
    if !w.icmp_errors.take(now) {
        return Err(DropReason::IcmpErrorRateLimited);
    }
    icmp_error::too_big(buf, l2, from, mtu)?;
    w.counters.inc(Counter::IcmpTooBigSent);
    Ok(Action::Tx(rx_port))
}
