//! Stage 1 of the IPv6 fast path: the common frame (untagged unicast IPv6 to our MAC, no
//! extension header, TCP or UDP with a valid header, to a VIP's service or from a NAT real
//! server, owned by this worker) classified on fixed header views into a [`Staged6`], the
//! flow table hash computed once (CRC32C of five words).
//!
//! It makes the general classifier's checks (`pipeline::classify::ipv6_packet` and on), in
//! the same order, on the same fields, sharing its source checks (`check_source_v6`) and
//! `fast4`'s Ethernet and transport checks, and answers its lookups from the snapshot's IPv6
//! maps (`snapshot::fast6`). Whatever is not the common case (a check that fails, an
//! extension header or fragment, ICMPv6, an IPv4-mapped address, bad TCP flags, the box's
//! own addresses, a VIP without that service, a connection another worker owns, a packet
//! that is nobody's) falls back and the general classifier decides it. It changes no state.

use super::super::classify::{check_source_v6, valid_tcp_flags};
use super::super::fast4::classify::{ip_headers, transport};
use super::super::WorkerState;
use super::Staged6;
use crate::flow::key::{PROTO_TCP, PROTO_UDP};
use crate::flow::slot::Key;
use crate::flow::TableHash;
use crate::io::PacketBuf;
use crate::snapshot::fast6::{addr6, endpoint6, filter_word6};
use crate::snapshot::Snapshot;
use crate::wire::addr;
use crate::wire::ethernet::ethertype;
use crate::wire::ipv6;

/// Classify `buf`, received on a port whose MAC is `port_mac` (as
/// `ethernet::Header::dst_word` reads it), into `out`: true when it is the fast path's
/// (`out` filled in and its primary bucket loading), false for the general classifier.
/// `steered`: the hash the receiving worker computed for a frame it steered here.
#[inline(always)]
pub(in crate::pipeline) fn classify<B: PacketBuf>(
    buf: &B,
    port_mac: u64,
    w: &WorkerState,
    snap: &Snapshot,
    steered: Option<TableHash>,
    out: &mut Staged6,
) -> bool {
    let Some((rest, ip, after_ip)) =
        ip_headers::<{ ipv6::HEADER_LEN }>(buf.data(), port_mac, ethertype::IPV6)
    else {
        return false;
    };
    // IPv6: version 6, the length, no mapped address, TCP or UDP right after the fixed
    // header (so no extension header), then the source checks.
    let ip = ipv6::Header(ip);
    let total = ipv6::HEADER_LEN + usize::from(ip.payload_len());
    if ip.version() != 6 || total > rest.len() {
        return false;
    }
    let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
    let proto = ip.next_header();
    if addr::is_mapped(&src) || addr::is_mapped(&dst) || (proto != PROTO_TCP && proto != PROTO_UDP)
    {
        return false;
    }
    let hops = ip.hop_limit();
    if check_source_v6(&src, &dst, hops, snap).is_err() {
        return false;
    }
    let Some((ports, tcp_bits)) = transport(after_ip, total - ipv6::HEADER_LEN, proto) else {
        return false;
    };
    let key = Key {
        addrs: ip.addrs_words(),
        ports,
        proto,
    };
    let bad_flags = proto == PROTO_TCP && !valid_tcp_flags(tcp_bits);
    // By destination and source, as `classify::by_destination`.
    let (src_w, dst_w) = ([key.addrs[0], key.addrs[1]], [key.addrs[2], key.addrs[3]]);
    let (sport, dport) = (ports as u16, (ports >> 16) as u16);
    let f6 = &snap.fast6;
    let (entry, reply, client, client_port) = if let Some(e) =
        f6.services.get(endpoint6(dst_w, dport, proto))
    {
        (e, false, &src, sport)
    } else if f6.addrs_filter.may_hold(filter_word6(dst_w)) && f6.addrs.get(addr6(dst_w)).is_some()
    {
        // A VIP without this service, or the box itself: the general path's.
        return false;
    } else if let Some(e) = f6.nat_endpoints.get(endpoint6(src_w, sport, proto)) {
        (e, true, &dst, dport)
    } else {
        return false;
    };
    // Port numbers from their wire forms.
    if bad_flags
        || w.owner_elsewhere(entry.rule, client, client_port.swap_bytes())
            .is_some()
    {
        return false;
    }
    let hash = steered.unwrap_or_else(|| key.hash());
    w.flows.prefetch6(hash);
    *out = Staged6 {
        key,
        hash,
        service: entry.service,
        len: total as u32,
        hops,
        tcp_bits,
        reply,
        pos: crate::flow::slot::NIL,
    };
    true
}
