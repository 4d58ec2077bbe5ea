//! What every frame vipd transmits must satisfy, judged by etherparse and by the fuzzed box's
//! configuration (never by vipd's own parsers):
//! 1. well formed (etherparse parses it; ARP by its fixed layout), from vipd's MAC;
//! 2. IPv4 header checksum right, TTL / hop limit >= 1, no larger than the port MTU;
//! 3. never to a non-unicast MAC or address (except an advertisement to all-nodes, the
//!    answer to duplicate address detection), never an IPv4-mapped IPv6 address;
//! 4. transport checksum right, unless it is a forwarded TCP/UDP packet whose checksum was
//!    already wrong on input (vipd updates checksums, it does not validate them);
//! 5. a tunnelled packet carries the received IP packet byte for byte;
//! 6. forwarded to a real server's MAC only with a real server's address (NAT), the VIP (DR)
//!    or an outer header to the real server (TUN); anything else comes from a VIP or vipd's
//!    own address (an answer, to the requester's MAC), or is an ICMP error relayed with its
//!    sender's address.

use crate::fixture::*;
use etherparse::checksum::Sum16BitWords;
use etherparse::{NetSlice, SlicedPacket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::snapshot::{Backend, FwdMode, Snapshot};

/// Whether a frame's transport checksum is right: None when that cannot be told (not TCP, UDP
/// or ICMP, a fragment, truncated, or UDP over IPv4 without a checksum).
pub fn l4_checksum_ok(frame: &[u8]) -> Option<bool> {
    let ty = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (l4, end, proto, pseudo) = match ty {
        0x0800 => {
            let ihl = usize::from(frame.get(14)? & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]));
            let frag = u16::from_be_bytes([*frame.get(20)?, *frame.get(21)?]) & 0x3fff != 0;
            if frame[14] >> 4 != 4 || ihl < 20 || total < ihl || 14 + total > frame.len() || frag {
                return None;
            }
            let proto = frame[23];
            let p = if proto == 1 {
                Sum16BitWords::new()
            } else {
                Sum16BitWords::new()
                    .add_slice(&frame[26..34])
                    .add_2bytes([0, proto])
                    .add_2bytes(((total - ihl) as u16).to_be_bytes())
            };
            (14 + ihl, 14 + total, proto, p)
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([*frame.get(18)?, *frame.get(19)?]));
            if frame[14] >> 4 != 6 || 54 + plen > frame.len() {
                return None;
            }
            let proto = frame[20];
            let p = Sum16BitWords::new()
                .add_slice(&frame[22..54])
                .add_2bytes([0, proto])
                .add_4bytes((plen as u32).to_be_bytes());
            (54, 54 + plen, proto, p)
        }
        _ => return None,
    };
    let min = match proto {
        6 => 20,
        17 => 8,
        1 | 58 => 8,
        _ => return None,
    };
    if l4 + min > end {
        return None;
    }
    if proto == 17 && frame[l4 + 6..l4 + 8] == [0, 0] {
        // IPv4: no checksum. IPv6: invalid whatever the sum (RFC 8200 8.1), and vipd keeps
        // it zero; a zero field over data that happens to sum to -0 is not a right checksum.
        return if ty == 0x0800 { None } else { Some(false) };
    }
    Some(pseudo.add_slice(&frame[l4..end]).ones_complement() == 0)
}

fn is_rs_mac(mac: &[u8]) -> bool {
    mac == RS1_MAC || mac == RS2_MAC
}

fn unicast_v4(a: Ipv4Addr) -> bool {
    !a.is_unspecified() && !a.is_loopback() && !a.is_multicast() && !a.is_broadcast()
}

fn unicast_v6(a: Ipv6Addr) -> bool {
    !a.is_unspecified() && !a.is_loopback() && !a.is_multicast()
}

fn ours_or_vip(a: IpAddr) -> bool {
    a == IpAddr::V4(VIP)
        || a == IpAddr::V6(vip6())
        || a == IpAddr::V4(LB_IP)
        || a == IpAddr::V6(lb_ip6())
}

fn rs_addr(a: IpAddr) -> bool {
    a == IpAddr::V4(RS1_IP)
        || a == IpAddr::V4(RS2_IP)
        || a == IpAddr::V6(rs1_ip6())
        || a == IpAddr::V6(rs2_ip6())
}

/// The IP packet of a received frame (without Ethernet padding).
fn ip_packet(frame: &[u8]) -> &[u8] {
    let ip = frame.get(14..).unwrap_or(&[]);
    let len = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        Some(6) if ip.len() >= 6 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
        _ => ip.len(),
    };
    ip.get(..len).unwrap_or(ip)
}

/// Check one transmitted frame `out`, made from the received frame `input` whose transport
/// checksum was `input_l4` ([`l4_checksum_ok`] before processing). Panics on a violation.
pub fn check_output(input: &[u8], input_l4: Option<bool>, out: &[u8]) {
    assert!(out.len() >= 14, "output shorter than an Ethernet header");
    assert_eq!(&out[6..12], &LB_MAC, "output not from vipd's MAC");
    let (dst_mac, ty) = (&out[..6], u16::from_be_bytes([out[12], out[13]]));
    if ty == 0x0806 {
        assert!(out.len() >= 42, "ARP output truncated");
        assert_eq!(
            &out[14..22],
            &[0, 1, 8, 0, 6, 4, 0, 2],
            "ARP output is not a reply"
        );
        assert_eq!(dst_mac[0] & 1, 0, "ARP reply to a multicast MAC");
        assert_eq!(&out[22..28], &LB_MAC, "ARP reply not with vipd's MAC");
        return;
    }
    let p = match SlicedPacket::from_ethernet(out) {
        Ok(p) => p,
        Err(e) => panic!("output not well formed ({e}): {out:02x?}"),
    };
    let icmp_error;
    let nd_to_all_nodes;
    let (src, dst, tunnel_inner): (IpAddr, IpAddr, Option<&[u8]>) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            // Summed over the bytes (etherparse's header has no field for the reserved flag).
            let sum = Sum16BitWords::new()
                .add_slice(ip.header().slice())
                .ones_complement();
            assert_eq!(sum, 0, "IPv4 header checksum");
            assert!(h.time_to_live >= 1, "TTL 0 sent");
            assert!(
                h.total_len <= MTU,
                "{} bytes over the MTU {MTU}",
                h.total_len
            );
            assert!(unicast_v4(h.destination.into()), "to a non-unicast address");
            let inner = matches!(h.protocol.0, 4 | 41).then(|| ip.payload().payload);
            icmp_error = h.protocol.0 == 1
                && ip
                    .payload()
                    .payload
                    .first()
                    .is_some_and(|t| matches!(t, 3 | 11 | 12));
            nd_to_all_nodes = false;
            (h.source.into(), h.destination.into(), inner)
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            assert!(h.hop_limit() >= 1, "hop limit 0 sent");
            // Never on the wire (RFC 4291 2.5.5.2), never the box's: vipd's own tables hold
            // IPv4 addresses in that form, so one sent would be an IPv4 address misread.
            let mapped = |a: Ipv6Addr| a.to_ipv4_mapped().is_some();
            assert!(
                !mapped(h.source_addr()) && !mapped(h.destination_addr()),
                "an IPv4-mapped address sent"
            );
            assert!(40 + h.payload_length() <= MTU, "over the MTU");
            let next = h.next_header().0;
            let inner = matches!(next, 4 | 41).then(|| ip.payload().payload);
            let first = ip.payload().payload.first().copied();
            icmp_error = next == 58 && first.is_some_and(|t| t < 128);
            nd_to_all_nodes = next == 58
                && first == Some(136)
                && h.destination_addr() == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            if !nd_to_all_nodes {
                assert!(unicast_v6(h.destination_addr()), "to a non-unicast address");
            }
            (h.source_addr().into(), h.destination_addr().into(), inner)
        }
        _ => panic!("output neither ARP nor IP: {out:02x?}"),
    };
    if !nd_to_all_nodes {
        assert_eq!(dst_mac[0] & 1, 0, "to a multicast MAC");
    }
    if let Some(inner) = tunnel_inner {
        assert_eq!(inner, ip_packet(input), "tunnelled packet changed");
        assert!(
            is_rs_mac(dst_mac) && rs_addr(dst),
            "tunnel not to a real server"
        );
        return;
    }
    if l4_checksum_ok(out) == Some(false) {
        let same_proto = input.get(12..14) == out.get(12..14);
        assert!(
            input_l4 == Some(false) && same_proto && !icmp_error,
            "transport checksum wrong in output, right (or absent) in input"
        );
    }
    if is_rs_mac(dst_mac) && !ours_or_vip(src) {
        // Forwarded (vipd's own answers go to whatever MAC the requester gave, e.g. a
        // solicitation's source link-layer option).
        assert!(
            rs_addr(dst) || dst == IpAddr::V4(VIP) || dst == IpAddr::V6(vip6()),
            "to a real server's MAC with address {dst}"
        );
    } else {
        let relayed = icmp_error && input.get(26..30) == out.get(26..30);
        let relayed6 = icmp_error && input.get(22..38) == out.get(22..38);
        assert!(
            ours_or_vip(src) || relayed || relayed6,
            "to a client from {src}: neither a VIP nor ours nor a relayed error"
        );
    }
}

/// Whether a transmitted frame goes to `backend` (its MAC, and its address by mode).
pub fn goes_to(out: &[u8], backend: &Backend, snap: &Snapshot) -> bool {
    if backend.next_hop_mac.map(|m| m.0) != out.get(..6).and_then(|m| <[u8; 6]>::try_from(m).ok()) {
        return false;
    }
    let Ok(p) = SlicedPacket::from_ethernet(out) else {
        return false;
    };
    let (dst, dport) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::from(ip.header().destination_addr()),
            ip.payload().payload,
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::from(ip.header().destination_addr()),
            ip.payload().payload,
        ),
        _ => return false,
    };
    let port = dport.get(2..4).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match backend.mode {
        FwdMode::Nat | FwdMode::Fnat => dst == backend.addr && port == Some(backend.port),
        FwdMode::Dr => snap
            .services
            .get(backend.service as usize)
            .is_some_and(|s| s.vip == dst),
        FwdMode::Tunnel => dst == backend.addr,
    }
}
