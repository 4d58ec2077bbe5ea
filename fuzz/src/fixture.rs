//! The fuzzed box: one port (MTU 1400, so NAT and TUN meet their MTU) carrying VLAN 7, NAT,
//! DR and TUN services in both families, two real servers; and templates of every frame class
//! vipd handles, written by etherparse, for the fuzzer to mutate.

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{
    BackendSpec, FlowHashFields, FwdMode, PortInfo, ServiceSpec, Snapshot, VlanOf,
};
use vipd_dataplane::wire::MacAddr;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const RS1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
pub const RS2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 22);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
/// The port's MTU.
pub const MTU: u16 = 1400;

pub fn lb_ip6() -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x10)
}
pub fn router_ip6() -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)
}
pub fn rs1_ip6() -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x21)
}
pub fn rs2_ip6() -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x22)
}
pub fn client_ip6() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50)
}
pub fn vip6() -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1)
}

/// The snapshot every input runs against.
pub fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(build_snapshot)
}

fn build_snapshot() -> Snapshot {
    let port = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.0.0.10/24".parse().unwrap_or_else(|_| unreachable!())),
        ipv6: Some("fd00::10/64".parse().unwrap_or_else(|_| unreachable!())),
        gateway_v4: Some(ROUTER_IP),
        gateway_v6: Some(router_ip6()),
        mtu: MTU,
        tunnel_source4: None,
        tunnel_source6: None,
        ..Default::default()
    };
    let rs = |id, addr: IpAddr, port, weight, mode| BackendSpec {
        id,
        addr,
        port,
        weight,
        mode,
        ..Default::default()
    };
    let svc = |vip: IpAddr, proto, port, scheduler, backends| ServiceSpec {
        vip,
        proto,
        port,
        scheduler,
        backends,
        ..Default::default()
    };
    use FwdMode::{Dr, Nat, Tunnel};
    use SchedulerKind::{Maglev, Rr, Wrr};
    let (r1, r2, r16, r26) = (
        IpAddr::V4(RS1_IP),
        IpAddr::V4(RS2_IP),
        IpAddr::V6(rs1_ip6()),
        IpAddr::V6(rs2_ip6()),
    );
    let (v4, v6) = (IpAddr::V4(VIP), IpAddr::V6(vip6()));
    let services = vec![
        svc(
            v4,
            6,
            80,
            Rr,
            vec![rs(0, r1, 8080, 1, Nat), rs(1, r2, 8080, 1, Nat)],
        ),
        svc(
            v4,
            17,
            53,
            Wrr,
            vec![rs(2, r1, 5353, 1, Nat), rs(3, r2, 5353, 2, Nat)],
        ),
        svc(
            v4,
            6,
            8000,
            Maglev,
            vec![rs(4, r1, 8000, 1, Nat), rs(5, r2, 8000, 1, Nat)],
        ),
        svc(
            v4,
            6,
            443,
            Maglev,
            vec![rs(6, r1, 443, 1, Dr), rs(7, r2, 443, 1, Dr)],
        ),
        svc(v4, 6, 8443, Rr, vec![rs(8, r1, 8443, 1, Tunnel)]),
        svc(v6, 6, 80, Rr, vec![rs(9, r16, 8080, 1, Nat)]),
        // The VIP6's only UDP service, hashing on the 3-tuple: its later fragments find their
        // real server without the first (templates 22, 23).
        ServiceSpec {
            hash: FlowHashFields::ThreeTuple,
            ..svc(
                v6,
                17,
                443,
                Maglev,
                vec![rs(10, r16, 443, 1, Dr), rs(16, r26, 443, 1, Dr)],
            )
        },
        svc(v6, 6, 8443, Maglev, vec![rs(11, r16, 8443, 1, Tunnel)]),
        svc(v6, 6, 8444, Maglev, vec![rs(12, r1, 8444, 1, Tunnel)]),
        svc(v4, 6, 8446, Maglev, vec![rs(13, r16, 8446, 1, Tunnel)]),
        svc(
            v4,
            17,
            5000,
            Rr,
            vec![rs(14, r1, 5000, 1, Nat), rs(15, r2, 5000, 1, Nat)],
        ),
    ];
    let mut neighbours = HashMap::new();
    neighbours.insert(IpAddr::V4(ROUTER_IP), MacAddr(ROUTER_MAC));
    neighbours.insert(r1, MacAddr(RS1_MAC));
    neighbours.insert(r2, MacAddr(RS2_MAC));
    neighbours.insert(IpAddr::V6(router_ip6()), MacAddr(ROUTER_MAC));
    neighbours.insert(r16, MacAddr(RS1_MAC));
    neighbours.insert(r26, MacAddr(RS2_MAC));
    // VLAN 7 of the port: tagged frames take the VLAN paths (its address, retagging).
    let vlan7 = PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.0.7.10/24".parse().unwrap_or_else(|_| unreachable!())),
        mtu: MTU,
        vlan: Some(VlanOf { parent: 0, id: 7 }),
        ..Default::default()
    };
    match Snapshot::build(1, vec![port, vlan7], &services, &neighbours, 251) {
        Ok(s) => s,
        Err(e) => panic!("fuzz fixture snapshot: {e}"),
    }
}

/// Number of frame templates.
pub const TEMPLATES: u8 = 26;

fn tcp_flags(b: PacketBuilderTcp, flags: u8) -> PacketBuilderTcp {
    let mut b = b;
    if flags & 0x02 != 0 {
        b = b.syn();
    }
    if flags & 0x10 != 0 {
        b = b.ack(2000);
    }
    if flags & 0x01 != 0 {
        b = b.fin();
    }
    if flags & 0x04 != 0 {
        b = b.rst();
    }
    if flags & 0x08 != 0 {
        b = b.psh();
    }
    b
}

type PacketBuilderTcp = etherparse::PacketBuilderStep<etherparse::TcpHeader>;

fn tcp4(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(ports.0, ports.1, 1000, 65535);
    let mut out = Vec::new();
    let _ = tcp_flags(b, flags).write(&mut out, payload);
    out
}

fn tcp6(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ports: (u16, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.octets(), dst.octets(), 64)
        .tcp(ports.0, ports.1, 1000, 65535);
    let mut out = Vec::new();
    let _ = tcp_flags(b, flags).write(&mut out, payload);
    out
}

fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(ports.0, ports.1)
        .write(&mut out, payload);
    out
}

fn udp6(
    macs: ([u8; 6], [u8; 6]),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ports: (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(ports.0, ports.1)
        .write(&mut out, payload);
    out
}

fn arp(op: u8, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// IPv4 fragment `index` (0 first, 1 second) of a 1600-byte UDP datagram client -> VIP:53.
fn udp_fragment(port: u16, index: usize) -> Vec<u8> {
    let whole = udp4(
        (ROUTER_MAC, LB_MAC),
        CLIENT_IP,
        VIP,
        (port, 53),
        &[0x42; 1592],
    );
    let Ok((h, payload)) = etherparse::Ipv4Header::from_slice(&whole[14..]) else {
        return whole;
    };
    let chunk = 1024;
    let part =
        &payload[(index * chunk).min(payload.len())..((index + 1) * chunk).min(payload.len())];
    let mut fh = h.clone();
    fh.identification = port;
    fh.dont_fragment = false;
    fh.more_fragments = index == 0;
    fh.fragment_offset = etherparse::IpFragOffset::try_new((index * chunk / 8) as u16)
        .unwrap_or(etherparse::IpFragOffset::ZERO);
    fh.total_len = (20 + part.len()) as u16;
    fh.header_checksum = fh.calc_header_checksum();
    let mut out = whole[..14].to_vec();
    let _ = fh.write(&mut out);
    out.extend_from_slice(part);
    out
}

/// IPv6 fragment `index` of a 1600-byte UDP datagram client6 -> VIP6:443 (DR).
fn udp6_fragment(port: u16, index: usize) -> Vec<u8> {
    let whole = udp6(
        (ROUTER_MAC, LB_MAC),
        client_ip6(),
        vip6(),
        (port, 443),
        &[0x42; 1592],
    );
    let Ok((h, payload)) = etherparse::Ipv6Header::from_slice(&whole[14..]) else {
        return whole;
    };
    let chunk = 1024;
    let part =
        &payload[(index * chunk).min(payload.len())..((index + 1) * chunk).min(payload.len())];
    let mut fh = h.clone();
    fh.next_header = etherparse::IpNumber::IPV6_FRAGMENTATION_HEADER;
    fh.payload_length = (8 + part.len()) as u16;
    let mut out = whole[..14].to_vec();
    let _ = fh.write(&mut out);
    // RFC 8200 4.5 by hand (etherparse 0.16 encodes the offset and M flag differently).
    let off_flags = ((index * chunk) as u16 & 0xfff8) | u16::from(index == 0);
    out.extend_from_slice(&[17, 0]);
    out.extend_from_slice(&off_flags.to_be_bytes());
    out.extend_from_slice(&u32::from(port).to_be_bytes());
    out.extend_from_slice(part);
    out
}

/// A neighbour solicitation from the router for `target`, to its solicited-node group, with a
/// Source Link-Layer option (the Ethernet destination is the group's MAC only for the VIP6,
/// as template 19 always had it).
pub fn neighbour_solicitation(target: Ipv6Addr) -> Vec<u8> {
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | target.segments()[6] & 0xff,
        target.segments()[7],
    );
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&ROUTER_MAC);
    let mut out = Vec::new();
    let _ = PacketBuilder::ethernet2(ROUTER_MAC, [0x33, 0x33, 0xff, 0, 0, 1])
        .ipv6(router_ip6().octets(), group.octets(), 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut out, &body);
    out
}

/// An unsolicited neighbour advertisement (to all-nodes, override) for `target` at `mac`.
pub fn neighbour_advertisement(target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let mut out = Vec::new();
    let _ = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            router_ip6().octets(),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            255,
        )
        .icmpv6_raw(136, 0, [0x20, 0, 0, 0])
        .write(&mut out, &body);
    out
}

/// Template `t` (mod [`TEMPLATES`]) for client port `port` with `extra` payload bytes.
pub fn template(t: u8, port: u16, extra: usize) -> Vec<u8> {
    let pay = vec![0x61u8; extra];
    let c2l = (ROUTER_MAC, LB_MAC);
    let r1 = (RS1_MAC, LB_MAC);
    match t % TEMPLATES {
        0 => tcp4(c2l, CLIENT_IP, VIP, (port, 80), 0x02, b""),
        1 => tcp4(c2l, CLIENT_IP, VIP, (port, 80), 0x18, &pay),
        2 => tcp4(c2l, CLIENT_IP, VIP, (port, 80), 0x11, b""),
        3 => tcp4(c2l, CLIENT_IP, VIP, (port, 80), 0x04, b""),
        4 => tcp4(r1, RS1_IP, CLIENT_IP, (8080, port), 0x12, &pay),
        5 => udp4(c2l, CLIENT_IP, VIP, (port, 53), &pay),
        6 => udp4(r1, RS1_IP, CLIENT_IP, (5353, port), &pay),
        7 => tcp4(c2l, CLIENT_IP, VIP, (port, 443), 0x02, &pay),
        8 => tcp4(c2l, CLIENT_IP, VIP, (port, 8443), 0x18, &pay),
        9 => tcp6(c2l, client_ip6(), vip6(), (port, 8443), 0x02, &pay),
        10 => tcp6(c2l, client_ip6(), vip6(), (port, 80), 0x02, &pay),
        11 => tcp6(r1, rs1_ip6(), client_ip6(), (8080, port), 0x10, &pay),
        12 => {
            // Frag-needed from a router to the VIP, quoting what RS1 sent through step 4.
            let quoted = tcp4(c2l, VIP, CLIENT_IP, (80, port), 0x10, &pay);
            let mut out = Vec::new();
            let _ = PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
                .ipv4([203, 0, 113, 1], VIP.octets(), 60)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1300 },
                ))
                .write(&mut out, quoted.get(14..).unwrap_or(&[]));
            out
        }
        13 => {
            // Port unreachable from RS1 about a step-2 UDP packet.
            let quoted = udp4((LB_MAC, RS1_MAC), CLIENT_IP, RS1_IP, (port, 5353), &pay);
            let mut out = Vec::new();
            let _ = PacketBuilder::ethernet2(RS1_MAC, LB_MAC)
                .ipv4(RS1_IP.octets(), CLIENT_IP.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::Port,
                ))
                .write(&mut out, quoted.get(14..).unwrap_or(&[]));
            out
        }
        14 => {
            let quoted = tcp6(c2l, vip6(), client_ip6(), (80, port), 0x10, &pay);
            let mut out = Vec::new();
            let _ = PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
                .ipv6(client_ip6().octets(), vip6().octets(), 60)
                .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 })
                .write(&mut out, quoted.get(14..).unwrap_or(&[]));
            out
        }
        15 => {
            let mut out = Vec::new();
            let _ = PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
                .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
                .icmpv4_echo_request(port, 1)
                .write(&mut out, &pay);
            out
        }
        16 => {
            let mut out = Vec::new();
            let _ = PacketBuilder::ethernet2(ROUTER_MAC, LB_MAC)
                .ipv6(client_ip6().octets(), lb_ip6().octets(), 64)
                .icmpv6_echo_request(port, 1)
                .write(&mut out, &pay);
            out
        }
        17 => arp(1, ROUTER_MAC, ROUTER_IP, VIP),
        18 => arp(1, [0x02, 0, 0, 0, 0, 0x77], RS1_IP, RS1_IP),
        19 => neighbour_solicitation(vip6()),
        20 => udp_fragment(port, 0),
        21 => udp_fragment(port, 1),
        22 => udp6_fragment(port, 0),
        23 => udp6_fragment(port, 1),
        24 => udp4(c2l, CLIENT_IP, VIP, (port, 5000), &[0x55; 1380]),
        _ => tcp4(c2l, CLIENT_IP, VIP, (port, 8000), 0x10, &pay),
    }
}

/// Fix the checksums of a mutated frame where its structure allows, so mutations reach the
/// logic behind the checksum checks: the IPv4 header checksum, and the TCP/UDP/ICMP checksum of
/// an unfragmented packet. (etherparse sums native-endian words: results are written back in
/// native order.)
pub fn fix_checksums(frame: &mut [u8], ip_header: bool, transport: bool) {
    use etherparse::checksum::Sum16BitWords;
    if frame.len() < 14 + 20 {
        return;
    }
    let ty = u16::from_be_bytes([frame[12], frame[13]]);
    let (l4, end, proto, pseudo) = match ty {
        0x0800 if frame[14] >> 4 == 4 => {
            let ihl = usize::from(frame[14] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            if ihl < 20 || 14 + ihl > frame.len() {
                return;
            }
            if ip_header {
                frame[24] = 0;
                frame[25] = 0;
                let c = Sum16BitWords::new()
                    .add_slice(&frame[14..14 + ihl])
                    .ones_complement();
                frame[24..26].copy_from_slice(&c.to_ne_bytes());
            }
            let frag = u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff != 0;
            if frag || total < ihl || 14 + total > frame.len() {
                return;
            }
            let proto = frame[23];
            let len = (total - ihl) as u16;
            // ICMPv4 has no pseudo-header.
            let p = if proto == 1 {
                Sum16BitWords::new()
            } else {
                Sum16BitWords::new()
                    .add_slice(&frame[26..34])
                    .add_2bytes([0, proto])
                    .add_2bytes(len.to_be_bytes())
            };
            (14 + ihl, 14 + total, proto, p)
        }
        0x86dd if frame.len() >= 54 && frame[14] >> 4 == 6 => {
            let plen = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
            let proto = frame[20];
            if 54 + plen > frame.len() {
                return;
            }
            let p = Sum16BitWords::new()
                .add_slice(&frame[22..54])
                .add_2bytes([0, proto])
                .add_4bytes((plen as u32).to_be_bytes());
            (54, 54 + plen, proto, p)
        }
        _ => return,
    };
    if !transport {
        return;
    }
    let at = match proto {
        6 => l4 + 16,
        17 => l4 + 6,
        1 | 58 => l4 + 2,
        _ => return,
    };
    if at + 2 > end || (proto == 6 && l4 + 20 > end) || (proto == 17 && l4 + 8 > end) {
        return;
    }
    frame[at] = 0;
    frame[at + 1] = 0;
    let mut c = pseudo.add_slice(&frame[l4..end]).ones_complement();
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_ne_bytes());
}
