//! ICMP errors about balanced connections, relayed instead of dropped.
//!
//! An ICMP error (destination unreachable, fragmentation needed / packet too big, time
//! exceeded, parameter problem) quotes the start of the packet it is about. For VIP traffic
//! two cases matter, and both break path MTU discovery when dropped:
//!
//! * An error sent to a VIP (a router on the client's side could not deliver what a real
//!   server sent from the VIP, e.g. a segment too big for the client's path): it belongs to
//!   the real server owning the quoted connection (quoted VIP:port -> client:port, the reverse
//!   of the client's flow key). NAT: the outer destination and the quoted source become the
//!   real server's address and port; DR: only the MAC changes (the real server holds the VIP);
//!   TUN: the whole error is encapsulated to the real server.
//! * An error from a NAT real server to a client (quoting the step-2 packet client ->
//!   real server:port): un-NATed on its way out, the quoted destination and the outer source
//!   (when it is the real server itself) become the VIP and its port.
//!
//! This module parses the quote and rewrites its addresses, ports and checksums; the pipeline
//! decides where the error goes. The quoted IPv4 header checksum and the quoted transport
//! checksum (when the quote reaches it) are updated incrementally so the quote still reads as
//! the packet the receiver sent; the ICMP checksum, which covers the quote, is then recomputed
//! over the whole message (the caller has verified it on input, so no corruption is hidden).

use crate::counters::DropReason;
use crate::flow::FlowKey;
use crate::wire::checksum;
use crate::wire::icmp::{IcmpPacket, HEADER_LEN as ICMP_LEN};
use crate::wire::ipv4::{self, proto};
use crate::wire::ipv6;
use crate::wire::{be16, set_be16};

/// The packet an ICMP error quotes, located in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The quoted packet's 5-tuple as it was sent (source = whoever sent it).
    pub key: FlowKey,
    /// Offset of the quoted IP header in the frame.
    pub ip: usize,
    /// Offset of the quoted transport header in the frame.
    pub l4: usize,
    /// End of the ICMP message in the frame (the quote ends there, maybe mid-header).
    pub end: usize,
}

/// Which end of the quoted packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotedSide {
    /// Its source (an error to a VIP: the quoted packet came from the VIP).
    Src,
    /// Its destination (an error from a NAT real server: the quoted packet went to it).
    Dst,
}

/// Parse the packet quoted by the ICMP error at `frame[icmp..end]` (an outer packet of the
/// family `v4`). The quote must hold an IP header of the same family (IPv4 options allowed;
/// no IPv6 extension header) and the first 8 bytes of a TCP or UDP header, the least
/// RFC 792 guarantees: ports and, for UDP, the checksum. A non-initial fragment has no ports;
/// an IPv6 quote with an IPv4-mapped address is refused like such a packet would be.
pub fn parse(frame: &[u8], icmp: usize, end: usize, v4: bool) -> Result<Quote, DropReason> {
    let bad = DropReason::IcmpQuoteMalformed;
    let ip = icmp + ICMP_LEN;
    let q = frame.get(ip..end).ok_or(bad)?;
    let (key, l4) = if v4 {
        if q.len() < ipv4::HEADER_LEN || q[0] >> 4 != 4 {
            return Err(bad);
        }
        let ihl = usize::from(q[0] & 0x0f) * 4;
        let frag_offset = be16(q, 6) & 0x1fff;
        if ihl < ipv4::HEADER_LEN || frag_offset != 0 {
            return Err(bad);
        }
        let l4 = q.get(ihl..ihl + 8).ok_or(bad)?;
        let p = q[9];
        let a = |at: usize| std::net::Ipv4Addr::new(q[at], q[at + 1], q[at + 2], q[at + 3]);
        (
            FlowKey::v4(a(12), a(16), be16(l4, 0), be16(l4, 2), p),
            ip + ihl,
        )
    } else {
        if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
            return Err(bad);
        }
        let l4 = q.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + 8).ok_or(bad)?;
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&q[8..24]);
        dst.copy_from_slice(&q[24..40]);
        // IPv4-mapped addresses never belong to IPv6 traffic vipd forwards, and a flow key
        // would read them as IPv4 (found by fuzzing).
        if crate::wire::addr::is_mapped(&src) || crate::wire::addr::is_mapped(&dst) {
            return Err(bad);
        }
        (
            FlowKey::v6(src.into(), dst.into(), be16(l4, 0), be16(l4, 2), q[6]),
            ip + ipv6::HEADER_LEN,
        )
    };
    if key.proto != proto::TCP && key.proto != proto::UDP {
        return Err(bad);
    }
    Ok(Quote { key, ip, l4, end })
}

/// Rewrite one end (address and port) of the quoted packet, keeping its IPv4 header checksum
/// and its transport checksum (when quoted) consistent. `addr` is in flow-key form and must be
/// of the quote's family (the caller's snapshot guarantees it).
pub fn rewrite_quote(
    frame: &mut [u8],
    q: &Quote,
    side: QuotedSide,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), DropReason> {
    let bad = DropReason::IcmpQuoteMalformed;
    let v4 = q.key.is_v4();
    let (at, old_port_at) = match (v4, side) {
        (true, QuotedSide::Src) => (q.ip + 12, q.l4),
        (true, QuotedSide::Dst) => (q.ip + 16, q.l4 + 2),
        (false, QuotedSide::Src) => (q.ip + 8, q.l4),
        (false, QuotedSide::Dst) => (q.ip + 24, q.l4 + 2),
    };
    let new: &[u8] = if v4 { &addr[12..] } else { &addr[..] };
    let alen = new.len();
    let mut old = [0u8; 16];
    old[..alen].copy_from_slice(frame.get(at..at + alen).ok_or(bad)?);
    let old = &old[..alen];
    let old_port = be16(frame.get(..old_port_at + 2).ok_or(bad)?, old_port_at);
    frame[at..at + alen].copy_from_slice(new);
    if v4 {
        let c = be16(frame, q.ip + 10);
        set_be16(frame, q.ip + 10, checksum::update(c, old, new));
    }
    set_be16(frame, old_port_at, port);
    // The transport checksum covers the pseudo-header (addresses) and the ports.
    let csum_at = match q.key.proto {
        proto::TCP => q.l4 + 16,
        _ => q.l4 + 6,
    };
    if csum_at + 2 <= q.end {
        let c = be16(frame, csum_at);
        let c = if q.key.proto == proto::UDP {
            checksum::update_udp(
                checksum::update_udp(c, old, new),
                &old_port.to_be_bytes(),
                &port.to_be_bytes(),
            )
        } else {
            checksum::update16(checksum::update(c, old, new), old_port, port)
        };
        set_be16(frame, csum_at, c);
    }
    Ok(())
}

/// Recompute the checksum of the ICMP message at `frame[icmp..end]`; for ICMPv6 over the
/// pseudo-header of the (already rewritten) outer addresses `src`, `dst`.
pub fn fill_checksum(
    frame: &mut [u8],
    icmp: usize,
    end: usize,
    v6_addrs: Option<(&[u8; 16], &[u8; 16])>,
) -> Result<(), DropReason> {
    let msg = frame
        .get_mut(icmp..end)
        .ok_or(DropReason::IcmpQuoteMalformed)?;
    let mut m = IcmpPacket::new_checked(msg).map_err(|_| DropReason::IcmpQuoteMalformed)?;
    match v6_addrs {
        None => m.fill_checksum_v4(),
        Some((src, dst)) => m.fill_checksum_v6(src, dst),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, TcpHeader, UdpHeader};
    use std::net::Ipv4Addr;

    /// An outer-less ICMP message (8 bytes) quoting `ip` (whole).
    fn icmp_quoting(ip: &[u8]) -> Vec<u8> {
        let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xc8];
        m.extend_from_slice(ip);
        m
    }

    fn tcp_ip(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let payload = b"data";
        let mut t = TcpHeader::new(sport, dport, 7, 1000);
        t.ack = true;
        let h = Ipv4Header::new(
            (t.header_len() + payload.len()) as u16,
            64,
            IpNumber::TCP,
            src,
            dst,
        )
        .unwrap();
        t.checksum = t.calc_checksum_ipv4(&h, payload).unwrap();
        let mut out = Vec::new();
        h.write(&mut out).unwrap();
        t.write(&mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parse_and_rewrite_keep_quoted_checksums_right() {
        let ip = tcp_ip([10, 100, 0, 1], [192, 0, 2, 50], 80, 40000);
        let mut m = icmp_quoting(&ip);
        let end = m.len();
        let q = parse(&m, 0, end, true).unwrap();
        assert_eq!(q.key.src_port, 80);
        assert_eq!(q.key.dst_port, 40000);
        assert_eq!(q.key.src_ip(), Ipv4Addr::new(10, 100, 0, 1));
        let rs = Ipv4Addr::new(10, 0, 0, 21).to_ipv6_mapped().octets();
        rewrite_quote(&mut m, &q, QuotedSide::Src, &rs, 8080).unwrap();
        fill_checksum(&mut m, 0, end, None).unwrap();
        let (h, rest) = Ipv4Header::from_slice(&m[8..]).unwrap();
        assert_eq!(h.source, [10, 0, 0, 21]);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let (t, payload) = TcpHeader::from_slice(rest).unwrap();
        assert_eq!(t.source_port, 8080);
        assert_eq!(t.checksum, t.calc_checksum_ipv4(&h, payload).unwrap());
        assert_eq!(checksum::fold(checksum::sum(&m)), 0xffff, "ICMP checksum");
    }

    #[test]
    fn udp_quote_truncated_after_8_bytes_and_zero_checksum() {
        let mut u = UdpHeader::without_ipv4_checksum(5353, 5000, 4).unwrap();
        u.checksum = 0;
        let h = Ipv4Header::new(12, 64, IpNumber::UDP, [10, 0, 0, 21], [192, 0, 2, 50]).unwrap();
        let mut ip = Vec::new();
        h.write(&mut ip).unwrap();
        u.write(&mut ip).unwrap();
        let mut m = icmp_quoting(&ip);
        let end = m.len();
        let q = parse(&m, 0, end, true).unwrap();
        let vip = Ipv4Addr::new(10, 100, 0, 1).to_ipv6_mapped().octets();
        rewrite_quote(&mut m, &q, QuotedSide::Src, &vip, 53).unwrap();
        assert_eq!(
            &m[8 + 20 + 6..8 + 20 + 8],
            &[0, 0],
            "no UDP checksum stays none"
        );
        assert_eq!(&m[8 + 12..8 + 16], &[10, 100, 0, 1]);
    }

    #[test]
    fn malformed_quotes_are_refused() {
        let ip = tcp_ip([10, 100, 0, 1], [192, 0, 2, 50], 80, 40000);
        let m = icmp_quoting(&ip);
        for cut in 0..8 + 20 + 8 {
            assert_eq!(
                parse(&m[..cut], 0, cut, true),
                Err(DropReason::IcmpQuoteMalformed),
                "{cut}"
            );
        }
        assert!(parse(&m, 0, 8 + 28, true).is_ok(), "8 bytes of TCP suffice");
        assert!(parse(&m, 0, m.len(), false).is_err(), "family mismatch");
        let mut frag = m.clone();
        frag[8 + 7] = 1; // non-initial fragment
        assert!(parse(&frag, 0, frag.len(), true).is_err());
        let mut icmp = m.clone();
        icmp[8 + 9] = 1;
        assert!(parse(&icmp, 0, icmp.len(), true).is_err(), "not TCP/UDP");
        assert!(
            parse(&m, 0, m.len() + 1, true).is_err(),
            "end past the frame"
        );
    }

    #[test]
    fn ipv6_quote_with_a_mapped_address_is_refused() {
        // Found by fuzzing: a flow key would read the mapped address as IPv4, and the quote
        // would be rewritten at IPv4 offsets.
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        ip6.extend_from_slice(&Ipv4Addr::BROADCAST.to_ipv6_mapped().octets());
        ip6.extend_from_slice(&v6("2001:db8::1"));
        ip6.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
        let m = icmp_quoting(&ip6);
        assert_eq!(
            parse(&m, 0, m.len(), false),
            Err(DropReason::IcmpQuoteMalformed)
        );
        let mut ok = m.clone();
        ok[8 + 8..8 + 24].copy_from_slice(&v6("2001:db8::2"));
        assert!(parse(&ok, 0, ok.len(), false).is_ok());
    }
}
