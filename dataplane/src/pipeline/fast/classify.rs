//! Stage 1's fast path: the common frame (untagged unicast IPv4 to our MAC, a 20-byte header
//! with a good checksum, not a fragment, TCP or UDP, to a VIP service or from a NAT real
//! server, owned by this worker) classified in one function, written straight into its
//! stage slot. The general [`super::super::classify`] does the same through one function
//! per layer, each returning a `Result` of the 120-byte [`Staged`] record, which costs more
//! than the checks themselves.
//!
//! It makes the general path's checks, in the same order, on the same fields. Whatever is
//! not the common case (a check that fails, ARP, IPv6, ICMP, options, fragments, the box's
//! own addresses) falls back and the caller classifies the frame the general way, which
//! decides its drop. Two verdicts of valid TCP/UDP packets are staged here, being the general
//! path's too after the same checks, so those frames are not parsed twice: a steer to the
//! worker that owns the NAT connection (`steer-out`), and the `not_local` drop of a packet
//! that is nobody's (not to a VIP or the box, not from a NAT real server; `junk`). Stage 1 changes no state, so
//! the fallback is free of side effects; for a frame it takes it writes exactly the
//! `Staged` the general path would (checked by the differential test).

use super::super::classify::{check_source_v4, mac48, mapped, parse_l4, valid_tcp_flags};
use super::super::{L4Info, Pkt, Staged, WorkerState};
use crate::counters::Counter;
use crate::flow::FlowKey;
use crate::fwd::nat::L4At;
use crate::io::{PacketBuf, RxChecksum};
use crate::snapshot::Snapshot;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::ipv4;

/// What the fast classifier made of a frame.
pub(in crate::pipeline) enum Fast {
    /// Not the common case: `st` untouched, classify the frame the general way.
    Fallback,
    /// Staged in `st`, with the flow hash stage 3 will look up, if any.
    Staged(Option<u64>),
}

/// Classify `buf` into `st` if it is the common case. `flow_hash`: the hash the receiving
/// worker computed for a frame it steered here (not computed again).
#[inline(always)]
pub(in crate::pipeline) fn classify<'s, B: PacketBuf>(
    buf: &B,
    rx_port: u16,
    w: &WorkerState,
    snap: &'s Snapshot,
    st: &mut Staged<'s>,
    flow_hash: Option<u64>,
) -> Fast {
    match common(buf, rx_port, w, snap, st, flow_hash) {
        Some(hash) => Fast::Staged(hash),
        None => Fast::Fallback,
    }
}

/// [`classify`]: `Some` when staged, `None` to fall back.
#[inline(always)]
fn common<'s, B: PacketBuf>(
    buf: &B,
    rx_port: u16,
    w: &WorkerState,
    snap: &'s Snapshot,
    st: &mut Staged<'s>,
    flow_hash: Option<u64>,
) -> Option<Option<u64>> {
    const L2: usize = ethernet::HEADER_LEN;
    const IP_END: usize = L2 + ipv4::HEADER_LEN;
    let data = buf.data();
    let h = data.get(..IP_END)?;
    let port = snap.ports.get(usize::from(rx_port))?;
    // Ethernet: IPv4, unicast to our MAC, from a unicast non-zero MAC (so untagged).
    let (dst_mac, src_mac) = (&h[0..6], &h[6..12]);
    if u16::from_be_bytes([h[12], h[13]]) != ethertype::IPV4
        || dst_mac[0] & 1 != 0
        || src_mac[0] & 1 != 0
    {
        return None;
    }
    let (dst_mac, src_mac) = (dst_mac.try_into().ok()?, src_mac.try_into().ok()?);
    if mac48(dst_mac) != mac48(&port.mac.0) || mac48(src_mac) == 0 {
        return None;
    }
    // IPv4: version 4, no options, the lengths, the checksum.
    let ip = &data[L2..];
    let iph = &h[L2..];
    let total = usize::from(u16::from_be_bytes([iph[2], iph[3]]));
    if iph[0] != 0x45 || total < ipv4::HEADER_LEN || total > ip.len() {
        return None;
    }
    let checksum_ok = match buf.rx_ipv4_checksum() {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => checksum::verifies(iph),
    };
    let flags_frag = u16::from_be_bytes([iph[6], iph[7]]);
    let proto = iph[9];
    if !checksum_ok
        || flags_frag & 0x3fff != 0
        || (proto != ipv4::proto::TCP && proto != ipv4::proto::UDP)
    {
        return None;
    }
    let (src4, dst4) = (
        [iph[12], iph[13], iph[14], iph[15]],
        [iph[16], iph[17], iph[18], iph[19]],
    );
    let ttl = iph[8];
    let src32 = u32::from_be_bytes(src4);
    check_source_v4(src32, u32::from_be_bytes(dst4), ttl, snap).ok()?;
    // TCP / UDP header.
    let (src_port, dst_port, flags) = parse_l4(&ip[ipv4::HEADER_LEN..total], proto, false).ok()?;
    let pkt = Pkt {
        l2: L2,
        v4: true,
        key: FlowKey {
            src: mapped(src4),
            dst: mapped(dst4),
            src_port,
            dst_port,
            proto,
        },
        ttl,
        len: total,
        l4: L4At {
            proto,
            offset: ipv4::HEADER_LEN,
            header: true,
        },
        dont_frag: flags_frag & 0x4000 != 0,
        frag: None,
    };
    let bad_flags = flags.is_some_and(|b| !valid_tcp_flags(b));
    // By destination and source, as `classify::by_destination`. A packet of a NAT connection
    // another worker owns is steered there, as the general path decides after the same
    // checks (not a fragment: those fall back above), with its flow hash for the owner.
    let key = &pkt.key;
    if let Some((service_index, svc)) = snap.service(&key.dst, proto, dst_port) {
        if bad_flags {
            return None;
        }
        let info = L4Info::new(key, flags, flow_hash);
        let hash = info.hash;
        if let Some(owner) = w.owner_elsewhere(svc.ownership, &key.src, src_port) {
            *st = Staged::Steer { owner, hash };
            return Some(None);
        }
        *st = Staged::Client {
            pkt,
            info,
            service_index,
            svc,
            owner_here: true,
        };
        return Some(Some(hash));
    }
    if snap.is_vip(&key.dst) || snap.is_local_key(&key.dst) {
        return None;
    }
    let Some(endpoint) = snap.nat_endpoint(&key.src, proto, src_port) else {
        // Neither a client of a service nor a reply, nor for the box: the general path,
        // having made the same checks, ends in the same verdict. Decided here, so traffic
        // that is not vipd's is not parsed twice.
        *st = Staged::Done(Err(Counter::DropNotLocal));
        return Some(None);
    };
    if bad_flags {
        return None;
    }
    let info = L4Info::new(key, flags, flow_hash);
    let hash = info.hash;
    if let Some(owner) = w.owner_elsewhere(endpoint.ownership, &key.dst, dst_port) {
        *st = Staged::Steer { owner, hash };
        return Some(None);
    }
    *st = Staged::Reply {
        pkt,
        info,
        unique_service: endpoint.service,
        owner_here: true,
    };
    Some(Some(hash))
}
