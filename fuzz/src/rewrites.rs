//! The rewrites on arbitrary packets, called directly (not only where the pipeline would):
//! NAT both ways, IP-in-IP encapsulation, the ICMP too-big builder and the ICMP relay's quote
//! rewrite. None may panic; every one that succeeds leaves checksums that were right right
//! (judged by the same independent checks as the pipeline oracle). The first bytes pick the
//! rewrite and its parameters; the rest is an IP packet behind an Ethernet header.

use crate::fixture::{LB_MAC, RS1_MAC};
use crate::{oracle, Reader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::fwd::{icmp_error, icmp_relay, nat, tunnel};
use vipd_dataplane::io::mem::VecBuf;
use vipd_dataplane::io::PacketBuf;

fn ip_header_ok(frame: &[u8]) -> bool {
    match frame.get(14).map(|b| b >> 4) {
        Some(4) => etherparse::Ipv4HeaderSlice::from_slice(&frame[14..]).is_ok_and(|h| {
            etherparse::checksum::Sum16BitWords::new()
                .add_slice(h.slice())
                .ones_complement()
                == 0
        }),
        Some(6) => etherparse::Ipv6HeaderSlice::from_slice(&frame[14..]).is_ok(),
        _ => false,
    }
}

/// Run one input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let (Some(which), Some(pick)) = (r.byte(), r.byte()) else {
        return;
    };
    let port = r.u16();
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, pick));
    let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(pick)));
    let addr = if pick & 1 == 0 { v4 } else { v6 };
    let ip = r.rest();
    let mut frame = Vec::with_capacity(14 + ip.len());
    frame.extend_from_slice(&RS1_MAC);
    frame.extend_from_slice(&LB_MAC);
    let ty: u16 = if ip.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0x0800
    };
    frame.extend_from_slice(&ty.to_be_bytes());
    frame.extend_from_slice(ip);
    let before_l4 = oracle::l4_checksum_ok(&frame);
    let before_ip = ip_header_ok(&frame);
    let proto = match ty {
        0x0800 => ip.get(9).copied(),
        _ => ip.get(6).copied(),
    }
    .unwrap_or(0);
    let offset = match ty {
        0x0800 => ip.first().map_or(20, |b| usize::from(b & 0xf) * 4),
        _ => 40,
    };
    let mut buf = VecBuf::new(&frame);
    match which % 5 {
        0 | 1 => {
            let l4 = nat::L4At {
                proto,
                offset,
                header: which & 0x10 == 0,
            };
            let l3 = &mut buf.data_mut()[14..];
            let ok = if which % 5 == 0 {
                nat::rewrite_to_backend(l3, l4, addr, port)
            } else {
                nat::rewrite_to_vip(l3, l4, addr, port)
            };
            if ok.is_ok() && l4.header {
                let out = buf.data();
                if before_ip {
                    assert!(ip_header_ok(out), "NAT broke the IP header");
                }
                if before_l4 == Some(true) {
                    assert_ne!(
                        oracle::l4_checksum_ok(out),
                        Some(false),
                        "NAT broke the transport checksum"
                    );
                }
            }
        }
        2 => {
            let outer = tunnel::Outer {
                src: if addr.is_ipv4() { v4 } else { v6 },
                dst: addr,
                ttl: 64,
                flow_hash: u32::from(port),
                mtu: 1200 + (port % 400),
            };
            let before = buf.data().to_vec();
            match tunnel::encapsulate(&mut buf, 14, &outer) {
                Ok(()) => {
                    let out = buf.data();
                    let overhead = if addr.is_ipv4() { 20 } else { 40 };
                    assert!(ip_header_ok(out), "outer header broken");
                    assert_eq!(
                        &out[14 + overhead..],
                        inner_packet(&before),
                        "inner changed"
                    );
                    assert!(
                        out.len() - 14 <= usize::from(outer.mtu),
                        "over the tunnel MTU"
                    );
                }
                Err(_) => assert_eq!(
                    buf.data(),
                    &before[..],
                    "a failed encapsulation changed the frame"
                ),
            }
        }
        3 => {
            let before = buf.data().to_vec();
            match icmp_error::too_big(&mut buf, 14, addr, 1280 + port % 300) {
                Ok(()) => {
                    let out = buf.data();
                    assert!(ip_header_ok(out), "too-big IP header broken");
                    assert_eq!(oracle::l4_checksum_ok(out), Some(true), "too-big checksum");
                    let limit = if addr.is_ipv4() { 576 } else { 1280 };
                    assert!(out.len() - 14 <= limit);
                }
                Err(_) => assert_eq!(buf.data(), &before[..], "a refused error changed the frame"),
            }
        }
        _ => {
            // The bytes after the IP header as an ICMP error; rewrite its quote, refill the
            // checksum, and check the quoted IPv4 header checksum stays right.
            let end = buf.data().len();
            let icmp = 14 + offset;
            let is_v4 = ty == 0x0800;
            if let Ok(q) = icmp_relay::parse(buf.data(), icmp, end, is_v4) {
                let quoted_ok = !is_v4 || quoted_v4_ok(&buf.data()[q.ip..q.l4]);
                let side = if which & 0x10 == 0 {
                    icmp_relay::QuotedSide::Src
                } else {
                    icmp_relay::QuotedSide::Dst
                };
                let a = if is_v4 { v4 } else { v6 };
                let key = match a {
                    IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
                    IpAddr::V6(x) => x.octets(),
                };
                let frame = buf.data_mut();
                if icmp_relay::rewrite_quote(frame, &q, side, &key, port).is_ok() && quoted_ok {
                    assert!(
                        quoted_v4_ok(&frame[q.ip..q.l4]) || !is_v4,
                        "quoted header checksum"
                    );
                }
            }
        }
    }
}

fn quoted_v4_ok(h: &[u8]) -> bool {
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(h)
        .ones_complement()
        == 0
}

/// The IP packet of a frame, without padding.
fn inner_packet(frame: &[u8]) -> &[u8] {
    let ip = &frame[14..];
    let len = match ip.first().map(|b| b >> 4) {
        Some(4) => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
        _ => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
    };
    &ip[..len.min(ip.len())]
}
