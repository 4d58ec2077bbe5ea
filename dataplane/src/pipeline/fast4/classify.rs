//! Stage 1 of the fast path: the common frame (untagged unicast IPv4 to our MAC, a 20-byte
//! header with a good checksum, not a fragment, TCP or UDP with a valid header, to a VIP's
//! service or from a NAT real server, owned by this worker) classified on fixed header views
//! into a [`Staged4`], the flow table hash computed once (CRC32C of two words).
//!
//! It makes the general classifier's checks (`pipeline::classify`), in the same order, on
//! the same fields, and answers its lookups from the snapshot's IPv4 maps
//! (`snapshot::fast4`). Whatever is not the common case (a check that fails, ARP, IPv6, ICMP,
//! options, fragments, bad TCP flags, the box's own addresses, a VIP without that service)
//! falls back (IPv6 to `fast6`'s stage 1 first) and the general classifier decides it. Its
//! Ethernet and transport header checks ([`ip_headers`], [`transport`]) serve `fast6` too.
//! Two verdicts of valid TCP/UDP packets
//! it gives itself, being the general path's after the same checks, so those frames are not
//! parsed twice: the steer of a NAT connection another worker owns, and the `not_local` drop
//! of a packet that is nobody's. It changes no state.

use super::super::classify::{check_source_v4, valid_tcp_flags};
use super::super::WorkerState;
use super::Staged4;
use crate::flow::key::{PROTO_TCP, PROTO_UDP};
use crate::flow::slot::Key;
use crate::flow::TableHash;
use crate::io::{PacketBuf, RxChecksum};
use crate::snapshot::fast4::{endpoint_word, unpack};
use crate::snapshot::Snapshot;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::{ipv4, tcp, udp};

/// What the fast classifier made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::pipeline) enum First {
    /// Not the common case: classify it the general way.
    Fallback,
    /// A client packet of a service, or a NAT real server's reply, this worker owns: its
    /// [`Staged4`] is filled in.
    Fast,
    /// A packet of a NAT connection worker `owner` owns (the [`Staged4`]'s hash is filled in).
    Steer(u16),
    /// Valid, and nobody's: not to a VIP or the box, not from a NAT real server.
    NotLocal,
    /// Not IPv4's, but an IPv6 packet `fast6`'s stage 1 staged (its `Staged6` is filled in).
    Fast6,
}

/// A frame the fast path may take, cut at its fixed headers: after the Ethernet header (the
/// IP packet and any padding), the IP header of `IP` bytes, and what follows it; `None`
/// unless the Ethernet header is of type `ty` (so untagged), unicast to our MAC (`port_mac`,
/// as [`ethernet::Header::dst_word`] reads it), from a unicast non-zero MAC.
#[inline(always)]
pub(in crate::pipeline) fn ip_headers<const IP: usize>(
    data: &[u8],
    port_mac: u64,
    ty: u16,
) -> Option<(&[u8], &[u8; IP], &[u8])> {
    let (eth, rest) = data.split_first_chunk::<{ ethernet::HEADER_LEN }>()?;
    let (ip, after_ip) = rest.split_first_chunk::<IP>()?;
    let eth = ethernet::Header(eth);
    let (dst_mac, src_mac) = (eth.dst_word(), eth.src_word());
    let ours = eth.ethertype() == ty
        && dst_mac & ethernet::GROUP_BIT == 0
        && src_mac & ethernet::GROUP_BIT == 0
        && dst_mac == port_mac
        && src_mac != 0;
    ours.then_some((rest, ip, after_ip))
}

/// The TCP or UDP header (`proto`) at the start of `after_ip`, inside an IP payload of
/// `seg_len` bytes, with `classify::parse_l4`'s checks: its ports word and, for TCP, its
/// flags; `None` when a check fails.
#[inline(always)]
pub(in crate::pipeline) fn transport(
    after_ip: &[u8],
    seg_len: usize,
    proto: u8,
) -> Option<(u32, u8)> {
    if proto == PROTO_TCP {
        let t = tcp::Header(after_ip.first_chunk::<{ tcp::HEADER_LEN }>()?);
        let off = t.header_len();
        if seg_len < tcp::HEADER_LEN || off < tcp::HEADER_LEN || off > seg_len {
            return None;
        }
        Some((t.ports_word(), t.flags()))
    } else {
        let u = udp::Header(after_ip.first_chunk::<{ udp::HEADER_LEN }>()?);
        let len = usize::from(u.length());
        if seg_len < udp::HEADER_LEN || len < udp::HEADER_LEN || len > seg_len {
            return None;
        }
        Some((u.ports_word(), 0))
    }
}

/// Classify `buf`, received on a port whose MAC is `port_mac` (as
/// [`ethernet::Header::dst_word`] reads it), into `out`. `steered`: the hash the receiving
/// worker computed for a frame it steered here.
#[inline(always)]
pub(in crate::pipeline) fn classify<B: PacketBuf>(
    buf: &B,
    port_mac: u64,
    w: &WorkerState,
    snap: &Snapshot,
    steered: Option<TableHash>,
    out: &mut Staged4,
) -> First {
    let Some((rest, ip, after_ip)) =
        ip_headers::<{ ipv4::HEADER_LEN }>(buf.data(), port_mac, ethertype::IPV4)
    else {
        return First::Fallback;
    };
    // IPv4: version 4, no options, the lengths, the checksum.
    let ip = ipv4::Header(ip);
    let total = usize::from(ip.total_len());
    if ip.ver_ihl() != 0x45 || total < ipv4::HEADER_LEN || total > rest.len() {
        return First::Fallback;
    }
    let checksum_ok = match buf.rx_ipv4_checksum() {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => ip.verifies(),
    };
    let proto = ip.protocol();
    if !checksum_ok || ip.is_fragment() || (proto != PROTO_TCP && proto != PROTO_UDP) {
        return First::Fallback;
    }
    let ttl = ip.ttl();
    if check_source_v4(ip.src_u32(), ip.dst_u32(), ttl, snap).is_err() {
        return First::Fallback;
    }
    let Some((ports, tcp_bits)) = transport(after_ip, total - ipv4::HEADER_LEN, proto) else {
        return First::Fallback;
    };
    let key = Key {
        addrs: ip.addrs_word(),
        ports,
        proto,
    };
    let hash = steered.unwrap_or_else(|| key.hash());
    *out = Staged4 {
        key,
        hash,
        service: 0,
        len: total as u16,
        ttl,
        tcp_bits,
        dont_frag: ip.dont_frag(),
        reply: false,
        pos: crate::flow::slot::NIL,
        maglev: None,
        pick: super::NO_PICK,
        reply_hash: TableHash(0),
    };
    let bad_flags = proto == PROTO_TCP && !valid_tcp_flags(tcp_bits);
    // By destination and source, as `classify::by_destination`.
    let (src, dst) = (key.addrs as u32, (key.addrs >> 32) as u32);
    let (sport, dport) = (ports as u16, (ports >> 16) as u16);
    let f4 = &snap.fast4;
    if let Some(s) = f4.services.get(endpoint_word(dst, dport, proto)) {
        if bad_flags {
            return First::Fallback;
        }
        let (service, rule) = unpack(s);
        out.service = service;
        if let Some(owner) = w.owner_elsewhere4(rule, src, sport) {
            return First::Steer(owner);
        }
        return First::Fast;
    }
    if f4.addrs_filter.may_hold(u64::from(dst)) && f4.addrs.get(u64::from(dst)).is_some() {
        // A VIP without this service, or the box itself: the general path's.
        return First::Fallback;
    }
    let Some(endpoint) = f4.nat_endpoints.get(endpoint_word(src, sport, proto)) else {
        return First::NotLocal;
    };
    let (unique, rule) = unpack(endpoint);
    if bad_flags {
        return First::Fallback;
    }
    out.service = unique;
    out.reply = true;
    if let Some(owner) = w.owner_elsewhere4(rule, dst, dport) {
        return First::Steer(owner);
    }
    First::Fast
}
