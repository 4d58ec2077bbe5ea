//! Full-NAT (DPVS's FNAT): both ends of a packet are rewritten. Towards the real server
//! (step 2) the source becomes a local address and port of the service's pool and the
//! destination the real server; the reply (step 4) goes from the VIP to the client. Which
//! local endpoint a connection has is the flow table's business (its reply key); this module
//! only rewrites. One router hop: the TTL (hop limit) is decremented once. IPv4 and IPv6; a
//! connection's four endpoints are of one family (the configuration refuses mixing).
//!
//! The transport header lives in a first fragment only; the pipeline never full-NATs a
//! fragment (`drop_fnat_fragment`), so the header is always here.

use super::nat::{rewrite_v4, rewrite_v6, L4At, Side};
use super::RewriteResult;
use crate::counters::DropReason;
use std::net::IpAddr;

/// One direction's new endpoints: source and destination address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    /// New source address.
    pub src: IpAddr,
    /// New source port.
    pub src_port: u16,
    /// New destination address.
    pub dst: IpAddr,
    /// New destination port.
    pub dst_port: u16,
}

/// Rewrite both endpoints of a TCP/UDP packet (`l3` from its IP header), the IPv4 header
/// checksum and the transport checksum (its pseudo-header's addresses too) updated
/// incrementally (RFC 1624), the TTL / hop limit decremented. Nothing is written when the
/// TTL / hop limit is exhausted.
pub fn rewrite(l3: &mut [u8], l4: L4At, ends: Ends) -> RewriteResult {
    match (l3.first().map(|b| b >> 4), ends.src, ends.dst) {
        (Some(4), IpAddr::V4(src), IpAddr::V4(dst)) => {
            rewrite_v4(l3, l4, Side::Dst, u32::from(dst), ends.dst_port, true)?;
            rewrite_v4(l3, l4, Side::Src, u32::from(src), ends.src_port, false)
        }
        (Some(6), IpAddr::V6(src), IpAddr::V6(dst)) => {
            rewrite_v6(l3, l4, Side::Dst, dst, ends.dst_port, true)?;
            rewrite_v6(l3, l4, Side::Src, src, ends.src_port, false)
        }
        // The configuration refuses mixing families; a mixed packet is not ours.
        _ => Err(DropReason::UnsupportedProtocol),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed test

    use super::*;
    use crate::wire::ipv4::proto;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn packet(
        tcp: bool,
        src: [u8; 4],
        dst: [u8; 4],
        ports: (u16, u16),
        ttl: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, ttl);
        let mut out = Vec::new();
        if tcp {
            b.tcp(ports.0, ports.1, 7, 1024)
                .syn()
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(ports.0, ports.1).write(&mut out, payload).unwrap();
        }
        out
    }

    /// An IPv6 TCP or UDP packet (no Ethernet header) written by etherparse.
    fn packet6(
        tcp: bool,
        src: [u8; 16],
        dst: [u8; 16],
        ports: (u16, u16),
        hops: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ipv6(src, dst, hops);
        let mut out = Vec::new();
        if tcp {
            b.tcp(ports.0, ports.1, 7, 1024)
                .ack(9)
                .write(&mut out, payload)
                .unwrap();
        } else {
            b.udp(ports.0, ports.1).write(&mut out, payload).unwrap();
        }
        out
    }

    proptest! {
        /// IPv6: both endpoints rewritten, the transport checksum's pseudo-header following
        /// both addresses: the bytes etherparse writes for the rewritten packet, checksum
        /// recomputed from scratch, hop limit one less; and the checksum verifies.
        #[test]
        fn v6_both_ends_are_what_etherparse_writes(
            tcp in any::<bool>(),
            src in any::<[u8; 16]>(),
            dst in any::<[u8; 16]>(),
            new_src in any::<[u8; 16]>(),
            new_dst in any::<[u8; 16]>(),
            ports in any::<(u16, u16)>(),
            new_ports in any::<(u16, u16)>(),
            hops in 2u8..,
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut got = packet6(tcp, src, dst, ports, hops, &payload);
            let mut want = packet6(tcp, new_src, new_dst, new_ports, hops - 1, &payload);
            let l4 = L4At { proto: if tcp { proto::TCP } else { proto::UDP }, offset: 40, header: true };
            let ends = Ends {
                src: IpAddr::V6(Ipv6Addr::from(new_src)),
                src_port: new_ports.0,
                dst: IpAddr::V6(Ipv6Addr::from(new_dst)),
                dst_port: new_ports.1,
            };
            prop_assert_eq!(rewrite(&mut got, l4, ends), Ok(()));
            // A UDP checksum computing to 0 is sent as 0xffff (RFC 8200 8.1); an incremental
            // update may land on either form of that one value.
            if !tcp && got[46..48] == [0xff, 0xff] && want[46..48] == [0, 0] {
                want[46..48].copy_from_slice(&[0xff, 0xff]);
            }
            if !tcp && got[46..48] == [0, 0] && want[46..48] == [0xff, 0xff] {
                want[46..48].copy_from_slice(&[0, 0]);
            }
            prop_assert_eq!(&got, &want);
            let ip = etherparse::Ipv6Header::from_slice(&got).unwrap().0;
            let body = &got[40..];
            let sum = if tcp {
                let (t, rest) = etherparse::TcpHeader::from_slice(body).unwrap();
                t.checksum == t.calc_checksum_ipv6(&ip, rest).unwrap()
            } else {
                let (u, rest) = etherparse::UdpHeader::from_slice(body).unwrap();
                u.checksum == u.calc_checksum_ipv6(&ip, rest).unwrap()
            };
            prop_assert!(sum, "transport checksum verifies");
        }

        /// Any bytes, either version nibble, any offset: a verdict, never a panic.
        #[test]
        fn any_bytes_get_a_verdict(
            mut frame in proptest::collection::vec(any::<u8>(), 0..120),
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            header in any::<bool>(),
            offset in 0usize..100,
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            ports in any::<(u16, u16)>(),
        ) {
            if let Some(first) = frame.first_mut() {
                *first = if v6 { 0x60 } else { 0x40 } | (*first & 0x0f);
            }
            let (src, dst) = if v6 {
                (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
            } else {
                let (x, y) = (u32::from_be_bytes([a[0], a[1], a[2], a[3]]), u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                (IpAddr::V4(Ipv4Addr::from(x)), IpAddr::V4(Ipv4Addr::from(y)))
            };
            let l4 = L4At { proto: if tcp { proto::TCP } else { proto::UDP }, offset, header };
            let ends = Ends { src, src_port: ports.0, dst, dst_port: ports.1 };
            let _ = rewrite(&mut frame, l4, ends);
        }

        /// Both endpoints rewritten: the bytes etherparse writes for the rewritten packet,
        /// checksums recomputed from scratch, TTL one less.
        #[test]
        fn both_ends_are_what_etherparse_writes(
            tcp in any::<bool>(),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            new_src in any::<[u8; 4]>(),
            new_dst in any::<[u8; 4]>(),
            ports in any::<(u16, u16)>(),
            new_ports in any::<(u16, u16)>(),
            ttl in 2u8..,
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut got = packet(tcp, src, dst, ports, ttl, &payload);
            let mut want = packet(tcp, new_src, new_dst, new_ports, ttl - 1, &payload);
            let l4 = L4At { proto: if tcp { proto::TCP } else { proto::UDP }, offset: 20, header: true };
            let ends = Ends {
                src: IpAddr::V4(Ipv4Addr::from(new_src)),
                src_port: new_ports.0,
                dst: IpAddr::V4(Ipv4Addr::from(new_dst)),
                dst_port: new_ports.1,
            };
            prop_assert_eq!(rewrite(&mut got, l4, ends), Ok(()));
            // UDP checksum 0 is written 0xffff by etherparse (RFC 768); both mean 0.
            if !tcp && got[26..28] == [0xff, 0xff] && want[26..28] == [0, 0] {
                want[26..28].copy_from_slice(&[0xff, 0xff]);
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn ttl_one_is_not_forwarded() {
        let mut p = packet(true, [192, 0, 2, 1], [10, 0, 0, 1], (1000, 80), 1, b"");
        let before = p.clone();
        let ends = Ends {
            src: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 100)),
            src_port: 40000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 3, 0, 21)),
            dst_port: 8080,
        };
        let l4 = L4At {
            proto: proto::TCP,
            offset: 20,
            header: true,
        };
        assert_eq!(rewrite(&mut p, l4, ends), Err(DropReason::TtlExceeded));
        assert_eq!(p, before, "nothing written");
        let mut p6 = packet6(false, [0x20; 16], [0xfd; 16], (1000, 53), 1, b"q");
        let before = p6.clone();
        let ends6 = Ends {
            src: IpAddr::V6("fd00:2::100".parse().unwrap()),
            src_port: 40000,
            dst: IpAddr::V6("fd00:3::21".parse().unwrap()),
            dst_port: 5353,
        };
        let l4 = L4At {
            proto: proto::UDP,
            offset: 40,
            header: true,
        };
        assert_eq!(rewrite(&mut p6, l4, ends6), Err(DropReason::TtlExceeded));
        assert_eq!(p6, before, "nothing written");
    }

    #[test]
    fn mixed_families_are_refused() {
        let mut p = packet(true, [192, 0, 2, 1], [10, 0, 0, 1], (1000, 80), 64, b"");
        let ends = Ends {
            src: IpAddr::V6("fd00::100".parse().unwrap()),
            src_port: 40000,
            dst: IpAddr::V4(Ipv4Addr::new(10, 3, 0, 21)),
            dst_port: 8080,
        };
        let l4 = L4At {
            proto: proto::TCP,
            offset: 20,
            header: true,
        };
        assert_eq!(
            rewrite(&mut p, l4, ends),
            Err(DropReason::UnsupportedProtocol)
        );
    }
}
