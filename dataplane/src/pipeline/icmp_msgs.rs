//! ICMP and ICMPv6 that is not Neighbour Discovery: echo for our addresses and VIPs, and
//! errors about VIP traffic relayed to where they belong (see [`crate::fwd::icmp_relay`]).

use super::egress::{self, Reject};
use super::{for_kernel, local, set_macs, Action, Ctx, Pkt, Verdict};
use crate::counters::{Counter, DropReason};
use crate::flow::key::to_mapped;
use crate::flow::Direction;
use crate::fwd::icmp_relay::{self, Quote, QuotedSide};
use crate::fwd::nat;
use crate::io::PacketBuf;
use crate::snapshot::{FwdMode, NatEndpoint};
use crate::wire::icmp::{self, IcmpPacket};

/// ICMP errors worth relaying: they tell a sender something about its own connection.
/// Redirects and source quench are not (and a redirect must never steer a real server).
fn relayed(v4: bool, msg_type: u8) -> bool {
    if v4 {
        matches!(
            msg_type,
            icmp::v4::DEST_UNREACHABLE | icmp::v4::TIME_EXCEEDED | icmp::v4::PARAM_PROBLEM
        )
    } else {
        matches!(
            msg_type,
            icmp::v6::DEST_UNREACHABLE
                | icmp::v6::PACKET_TOO_BIG
                | icmp::v6::TIME_EXCEEDED
                | icmp::v6::PARAM_PROBLEM
        )
    }
}

pub(super) fn handle<B: PacketBuf>(buf: &mut B, pkt: &Pkt, cx: &mut Ctx<'_, '_>) -> Verdict {
    let (snap, rx_port) = (cx.snap, cx.rx_port);
    let (msg_type, checksum_ok) = {
        let msg = buf
            .data()
            .get(pkt.l4_range())
            .ok_or(DropReason::L4Malformed)?;
        let m = IcmpPacket::new_checked(msg).map_err(|_| DropReason::L4Malformed)?;
        let ok = if pkt.v4 {
            m.verify_checksum_v4()
        } else {
            m.verify_checksum_v6(&pkt.key.src, &pkt.key.dst)
        };
        (m.msg_type(), ok)
    };
    let to_vip = snap.is_vip(&pkt.key.dst);
    let to_local = snap.is_local_key(&pkt.key.dst);
    let error = relayed(pkt.v4, msg_type);
    if !to_vip && !to_local && !error {
        return Err(DropReason::NotLocal);
    }
    if !checksum_ok {
        return Err(DropReason::IcmpBadChecksum);
    }
    if error {
        return relay(buf, pkt, to_vip, to_local, cx);
    }
    let echo_request = if pkt.v4 {
        icmp::v4::ECHO_REQUEST
    } else {
        icmp::v6::ECHO_REQUEST
    };
    if msg_type == echo_request {
        return local::echo(buf, pkt, rx_port, cx.w, snap);
    }
    if to_local {
        return for_kernel(rx_port, snap);
    }
    Err(DropReason::LocalUnhandled)
}

fn relay<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    to_vip: bool,
    to_local: bool,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, rx_port) = (cx.snap, cx.rx_port);
    let range = pkt.l4_range();
    let q = icmp_relay::parse(buf.data(), range.start, range.end, pkt.v4)?;
    // An error goes to the source of the packet it quotes: anything else is forged.
    if q.key.src != pkt.key.dst {
        return Err(if to_vip || to_local {
            DropReason::IcmpErrorNoFlow
        } else {
            DropReason::NotLocal
        });
    }
    if to_vip {
        return to_real_server(buf, pkt, &q, cx);
    }
    if let Some(endpoint) = snap.nat_endpoint(&q.key.dst, q.key.proto, q.key.dst_port) {
        return to_client(buf, pkt, &q, endpoint, cx);
    }
    if to_local {
        // About the box's own traffic (its health checks, its kernel's connections).
        return for_kernel(rx_port, snap);
    }
    Err(DropReason::NotLocal)
}

/// An error about what a real server sent from the VIP (quoted VIP:port -> client:port): to
/// the real server owning that connection.
fn to_real_server<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    q: &Quote,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, now) = (cx.snap, cx.now);
    let (_, svc) = snap
        .service(&q.key.src, q.key.proto, q.key.src_port)
        .ok_or(DropReason::IcmpErrorNoFlow)?;
    let flow = q.key.reversed(); // client -> VIP: the connection's original key
    if let Some(owner) =
        cx.w.owner_elsewhere(svc.ownership, &flow.src, flow.src_port)
    {
        return Ok(Action::Steer(owner));
    }
    let from_entry = match cx
        .w
        .flows
        .lookup(&flow, crate::flow::FlowTable::hash(&flow), now)
    {
        Some(hit) if hit.dir == Direction::Original => snap.backend(hit.backend),
        _ => None,
    };
    // Without an entry, where this box sends the connection's own packets without one: the
    // consistent hash, exactly as the flow's first packets computed it (for a Maglev service,
    // the real server they went to, on any box; for rr/wrr, a guess a real server without the
    // connection ignores).
    let stateless = from_entry.is_none();
    let backend = match from_entry {
        Some(b) => b,
        None => svc
            .pick_stateless(&flow, svc.flow_hash(&flow))
            .and_then(|id| snap.backend(id))
            .ok_or(DropReason::IcmpErrorNoFlow)?,
    };
    if backend.mode == FwdMode::Fnat {
        // The quote would need the connection's local endpoint: not relayed in this version.
        return Err(DropReason::FnatIcmpError);
    }
    let route = match egress::check(
        buf,
        pkt,
        backend,
        crate::flow::FlowTable::hash(&flow).bits(),
        snap,
    ) {
        Ok(o) => o,
        // No error about an error: an oversized one is dropped.
        Err(Reject::TooBig(_)) => return Err(DropReason::TooBig),
        Err(Reject::Drop(c)) => return Err(c),
    };
    if backend.mode == FwdMode::Nat {
        let range = pkt.l4_range();
        let frame = buf.data_mut();
        let l3 = frame.get_mut(pkt.l2..).ok_or(DropReason::EthMalformed)?;
        let outer_l4 = nat::L4At {
            header: false,
            ..pkt.l4
        };
        nat::rewrite_to_backend(l3, outer_l4, backend.addr, 0)?;
        icmp_relay::rewrite_quote(
            frame,
            q,
            QuotedSide::Src,
            &to_mapped(backend.addr),
            backend.port,
        )?;
        fill_checksum(frame, pkt, range)?;
    }
    let port = egress::deliver(buf, pkt.l2, &route)?;
    cx.w.counters.inc(Counter::IcmpErrorsToRealServer);
    if stateless {
        cx.w.counters.inc(Counter::IcmpErrorsStateless);
    }
    Ok(Action::Tx(port))
}

/// An error from (or about) a NAT real server's side, quoting a step-2 packet (client ->
/// real server:port): un-NATed to quote client -> VIP:port, and from the VIP when the real
/// server itself sent it.
fn to_client<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    q: &Quote,
    endpoint: NatEndpoint,
    cx: &mut Ctx<'_, '_>,
) -> Verdict {
    let (snap, now) = (cx.snap, cx.now);
    if endpoint.fnat {
        // About a full-NAT connection's real-server side (quoting local -> real server): its
        // client is known only to the entry; not relayed in this version.
        return Err(DropReason::FnatIcmpError);
    }
    let unique_service = endpoint.service;
    if let Some(owner) =
        cx.w.owner_elsewhere(endpoint.ownership, &q.key.src, q.key.src_port)
    {
        return Ok(Action::Steer(owner));
    }
    let reply = q.key.reversed(); // real server -> client: the connection's reply key
    let from_entry = match cx
        .w
        .flows
        .lookup(&reply, crate::flow::FlowTable::hash(&reply), now)
    {
        Some(hit) if hit.dir == Direction::Reply => snap.backend(hit.backend).map(|b| b.service),
        _ => None,
    };
    let service = from_entry
        .or(unique_service)
        .ok_or(DropReason::IcmpErrorNoFlow)?;
    let svc = snap
        .services
        .get(service as usize)
        .ok_or(DropReason::IcmpErrorNoFlow)?;
    let hop = match egress::resolve_client(&pkt.key.dst, snap, cx.w)? {
        Ok(hop) => hop,
        Err(ask) => return Ok(ask),
    };
    let (port, mac) = (hop.port, hop.mac);
    let egress = snap
        .ports
        .get(usize::from(port))
        .ok_or(DropReason::NoRoute)?;
    if pkt.ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    if pkt.len > usize::from(egress.mtu) {
        return Err(DropReason::TooBig);
    }
    let range = pkt.l4_range();
    let frame = buf.data_mut();
    let l3 = frame.get_mut(pkt.l2..).ok_or(DropReason::EthMalformed)?;
    let outer_l4 = nat::L4At {
        header: false,
        ..pkt.l4
    };
    if pkt.key.src == q.key.dst {
        nat::rewrite_to_vip(l3, outer_l4, svc.vip, 0)?;
    } else {
        nat::hop(l3)?;
    }
    icmp_relay::rewrite_quote(frame, q, QuotedSide::Dst, &to_mapped(svc.vip), svc.port)?;
    fill_checksum(frame, pkt, range)?;
    set_macs(frame, egress.mac, mac);
    cx.w.counters.inc(Counter::IcmpErrorsToClient);
    Ok(Action::Tx(port))
}

/// The ICMP checksum after the rewrite (ICMPv6: over the rewritten outer addresses).
fn fill_checksum(
    frame: &mut [u8],
    pkt: &Pkt,
    range: std::ops::Range<usize>,
) -> Result<(), DropReason> {
    if pkt.v4 {
        return icmp_relay::fill_checksum(frame, range.start, range.end, None);
    }
    let ip = pkt.l2;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(
        frame
            .get(ip + 8..ip + 24)
            .ok_or(DropReason::Ipv6Malformed)?,
    );
    dst.copy_from_slice(
        frame
            .get(ip + 24..ip + 40)
            .ok_or(DropReason::Ipv6Malformed)?,
    );
    icmp_relay::fill_checksum(frame, range.start, range.end, Some((&src, &dst)))
}
