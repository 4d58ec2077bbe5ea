//! Frame construction for the pipeline fixtures with etherparse: an independent writer that
//! computes every checksum from scratch, so expected output bytes never come from vipd's own
//! header code.
#![allow(dead_code)]

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, SingleVlanHeader,
    TcpHeader, UdpHeader, VlanId,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::flow::{FlowTable, Timeouts};
use vipd_dataplane::pipeline::WorkerState;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec, Snapshot};
use vipd_dataplane::wire::MacAddr;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const RS1_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 21);
pub const RS2_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 22);
pub const RS_UNRESOLVED_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 23);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
pub const VIP_UNRESOLVED: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
/// A VIP whose one service (UDP, DR, maglev) hashes on the 3-tuple.
pub const VIP_3TUPLE: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 3);

pub fn lb_ip6() -> Ipv6Addr {
    "fd00::10".parse().unwrap()
}
pub fn router_ip6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}
pub fn rs1_ip6() -> Ipv6Addr {
    "fd00::21".parse().unwrap()
}
pub fn client_ip6() -> Ipv6Addr {
    "2001:db8::50".parse().unwrap()
}
pub fn vip6() -> Ipv6Addr {
    "fd00:100::1".parse().unwrap()
}

/// One port: 10.0.0.10/24 and fd00::10/64 behind router 10.0.0.1 / fd00::1.
/// Services: VIP:80/tcp -> RS1:8080 (NAT), VIP:53/udp -> RS1:5353 (NAT),
/// VIP:8000/tcp -> RS1:8000 + RS2:8000 (NAT, maglev), VIP_UNRESOLVED:80/tcp -> an RS with
/// no MAC yet, [vip6]:80/tcp -> [rs1_ip6]:8080 (NAT66), VIP:443/tcp -> RS1 (DR),
/// [vip6]:443/udp -> [rs1_ip6] (DR), TUN: VIP:8443/tcp -> RS1 (4in4), VIP:8446/tcp ->
/// [rs1_ip6] (4in6), [vip6]:8443/tcp -> [rs1_ip6] (6in6), [vip6]:8444/tcp -> RS1 (6in4),
/// VIP_3TUPLE:4500/udp -> RS1, RS2 (DR, maglev on the 3-tuple).
pub fn snapshot() -> Snapshot {
    snapshot_with_port(|_| {})
}

/// The LB's one port: 10.0.0.10/24 and fd00::10/64, gateways 10.0.0.1 / fd00::1, MTU 1500.
pub fn lb_port() -> PortInfo {
    PortInfo {
        mac: MacAddr(LB_MAC),
        ipv4: Some("10.0.0.10/24".parse().unwrap()),
        ipv6: Some("fd00::10/64".parse().unwrap()),
        gateway_v4: Some(ROUTER_IP),
        gateway_v6: Some(router_ip6()),
        mtu: 1500,
        tunnel_source4: None,
        tunnel_source6: None,
        ..Default::default()
    }
}

/// Resolved neighbours: the router and RS1, RS2 (IPv4), the router and RS1 (IPv6).
pub fn neighbours() -> HashMap<IpAddr, MacAddr> {
    let mut neighbours = HashMap::new();
    neighbours.insert(IpAddr::V4(ROUTER_IP), MacAddr(ROUTER_MAC));
    neighbours.insert(IpAddr::V4(RS1_IP), MacAddr(RS1_MAC));
    neighbours.insert(IpAddr::V4(RS2_IP), MacAddr(RS2_MAC));
    neighbours.insert(IpAddr::V6(router_ip6()), MacAddr(ROUTER_MAC));
    neighbours.insert(IpAddr::V6(rs1_ip6()), MacAddr(RS1_MAC));
    neighbours
}

/// A NAT real server of weight 1.
pub fn nat_rs(id: u32, addr: IpAddr, port: u16) -> BackendSpec {
    BackendSpec {
        id,
        addr,
        port,
        weight: 1,
        mode: FwdMode::Nat,
        ..Default::default()
    }
}

/// A snapshot of [`lb_port`] with these services.
pub fn snapshot_of(services: &[ServiceSpec]) -> Snapshot {
    Snapshot::build(1, vec![lb_port()], services, &neighbours(), 65537).unwrap()
}

/// Run one frame through a worker's burst; the action and the output frame.
pub fn run1(
    w: &mut WorkerState,
    snap: &Snapshot,
    input: &[u8],
    now: u64,
) -> (vipd_dataplane::pipeline::Action, Vec<u8>) {
    use vipd_dataplane::io::PacketBuf;
    let mut bufs = [vipd_dataplane::io::mem::VecBuf::new(input)];
    let mut actions = [vipd_dataplane::pipeline::Action::ToControl];
    vipd_dataplane::pipeline::process_burst(&mut bufs, &mut actions, 0, w, snap, now);
    (actions[0], bufs[0].data().to_vec())
}

/// [`snapshot`] with its port changed by `edit` first.
pub fn snapshot_with_port(edit: impl FnOnce(&mut PortInfo)) -> Snapshot {
    let mut port = lb_port();
    edit(&mut port);
    let nat = |id, addr: IpAddr, port| BackendSpec {
        id,
        addr,
        port,
        weight: 1,
        mode: FwdMode::Nat,
        ..Default::default()
    };
    let tun = |id, vip: IpAddr, port, addr: IpAddr| ServiceSpec {
        vip,
        proto: 6,
        port,
        scheduler: SchedulerKind::Maglev,
        backends: vec![BackendSpec {
            mode: FwdMode::Tunnel,
            ..nat(id, addr, port)
        }],
        ..Default::default()
    };
    let services = vec![
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![nat(0, RS1_IP.into(), 8080)],
            ..Default::default()
        },
        ServiceSpec {
            vip: VIP.into(),
            proto: 17,
            port: 53,
            scheduler: SchedulerKind::Wrr,
            backends: vec![nat(1, RS1_IP.into(), 5353)],
            ..Default::default()
        },
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 8000,
            scheduler: SchedulerKind::Maglev,
            backends: vec![nat(2, RS1_IP.into(), 8000), nat(3, RS2_IP.into(), 8000)],
            ..Default::default()
        },
        ServiceSpec {
            vip: VIP_UNRESOLVED.into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![nat(4, RS_UNRESOLVED_IP.into(), 80)],
            ..Default::default()
        },
        ServiceSpec {
            vip: vip6().into(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![nat(5, rs1_ip6().into(), 8080)],
            ..Default::default()
        },
        ServiceSpec {
            vip: VIP.into(),
            proto: 6,
            port: 443,
            scheduler: SchedulerKind::Rr,
            backends: vec![BackendSpec {
                mode: FwdMode::Dr,
                ..nat(6, RS1_IP.into(), 443)
            }],
            ..Default::default()
        },
        ServiceSpec {
            vip: vip6().into(),
            proto: 17,
            port: 443,
            scheduler: SchedulerKind::Rr,
            backends: vec![BackendSpec {
                mode: FwdMode::Dr,
                ..nat(7, rs1_ip6().into(), 443)
            }],
            ..Default::default()
        },
        // TUN, one service per family pair (indices 7..=10): 4in4, 4in6, 6in6, 6in4.
        tun(8, VIP.into(), 8443, RS1_IP.into()),
        tun(9, VIP.into(), 8446, rs1_ip6().into()),
        tun(10, vip6().into(), 8443, rs1_ip6().into()),
        tun(11, vip6().into(), 8444, RS1_IP.into()),
        ServiceSpec {
            vip: VIP_3TUPLE.into(),
            proto: 17,
            port: 4500,
            scheduler: SchedulerKind::Maglev,
            hash: vipd_dataplane::snapshot::FlowHashFields::ThreeTuple,
            backends: vec![
                BackendSpec {
                    mode: FwdMode::Dr,
                    ..nat(12, RS1_IP.into(), 4500)
                },
                BackendSpec {
                    mode: FwdMode::Dr,
                    ..nat(13, RS2_IP.into(), 4500)
                },
            ],
            ..Default::default()
        },
    ];
    Snapshot::build(1, vec![port], &services, &neighbours(), 65537).unwrap()
}

pub fn worker(index: u16, n_workers: u16) -> WorkerState {
    WorkerState::new(
        index,
        n_workers,
        FlowTable::with_capacity(1024, Timeouts::default()),
        16,
    )
}

/// Transport part of a test frame.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: &'static str,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        zero_checksum: bool,
    },
}

/// A test frame, described field by field and written by etherparse.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub ident: u16,
    pub dont_fragment: bool,
    pub ip_options: Vec<u8>,
    pub l4: L4,
    pub payload: Vec<u8>,
}

pub fn tcp(sport: u16, dport: u16, flags: &'static str) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq: 1000,
        ack: if flags.contains('A') { 2000 } else { 0 },
        flags,
        options: vec![],
    }
}

pub fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        zero_checksum: false,
    }
}

impl Frame {
    pub fn new(
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: IpAddr,
        dst: IpAddr,
        l4: L4,
        payload: &[u8],
    ) -> Self {
        Frame {
            src_mac,
            dst_mac,
            vlan: None,
            src,
            dst,
            ttl: 64,
            ident: 0x4242,
            dont_fragment: true,
            ip_options: vec![],
            l4,
            payload: payload.to_vec(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let (inner_type, ip_type) = match self.src {
            IpAddr::V4(_) => (EtherType::IPV4, EtherType::IPV4),
            IpAddr::V6(_) => (EtherType::IPV6, EtherType::IPV6),
        };
        let eth_type = if self.vlan.is_some() {
            EtherType::VLAN_TAGGED_FRAME
        } else {
            inner_type
        };
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: eth_type,
        }
        .write(&mut out)
        .unwrap();
        if let Some(id) = self.vlan {
            SingleVlanHeader {
                pcp: etherparse::VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(id).unwrap(),
                ether_type: ip_type,
            }
            .write(&mut out)
            .unwrap();
        }
        let (proto, l4_len) = match &self.l4 {
            L4::Tcp { options, .. } => (IpNumber::TCP, 20 + options.len()),
            L4::Udp { .. } => (IpNumber::UDP, 8),
        };
        let l4_total = l4_len + self.payload.len();
        enum Ip {
            V4(Ipv4Header),
            V6(Ipv6Header),
        }
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h =
                    Ipv4Header::new(l4_total as u16, self.ttl, proto, s.octets(), d.octets())
                        .unwrap();
                h.identification = self.ident;
                h.dont_fragment = self.dont_fragment;
                h.options = self.ip_options[..].try_into().unwrap();
                h.total_len = (h.header_len() + l4_total) as u16;
                h.header_checksum = h.calc_header_checksum();
                h.write(&mut out).unwrap();
                Ip::V4(h)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: l4_total as u16,
                    next_header: proto,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                h.write(&mut out).unwrap();
                Ip::V6(h)
            }
            _ => panic!("mixed families"),
        };
        match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                options,
            } => {
                let mut t = TcpHeader::new(*sport, *dport, *seq, 65535);
                t.syn = flags.contains('S');
                t.ack = flags.contains('A');
                t.fin = flags.contains('F');
                t.rst = flags.contains('R');
                t.psh = flags.contains('P');
                t.acknowledgment_number = *ack;
                t.set_options_raw(options).unwrap();
                t.checksum = match &ip {
                    Ip::V4(h) => t.calc_checksum_ipv4(h, &self.payload).unwrap(),
                    Ip::V6(h) => t.calc_checksum_ipv6(h, &self.payload).unwrap(),
                };
                t.write(&mut out).unwrap();
            }
            L4::Udp {
                sport,
                dport,
                zero_checksum,
            } => {
                let mut u = match &ip {
                    Ip::V4(h) => {
                        UdpHeader::with_ipv4_checksum(*sport, *dport, h, &self.payload).unwrap()
                    }
                    Ip::V6(h) => {
                        UdpHeader::with_ipv6_checksum(*sport, *dport, h, &self.payload).unwrap()
                    }
                };
                if *zero_checksum {
                    u.checksum = 0;
                }
                u.write(&mut out).unwrap();
            }
        }
        out.extend_from_slice(&self.payload);
        out
    }
}

/// An IPv4 address as the `IpAddr` the frame builder takes.
pub fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// A client's packet to the IPv4 VIP, from the router.
pub fn client_to_vip(l4: L4, payload: &[u8]) -> Frame {
    Frame::new(ROUTER_MAC, LB_MAC, v4(CLIENT_IP), v4(VIP), l4, payload)
}

/// The TCP state of the connection from `client_port`, if it has an entry.
pub fn state_of(
    w: &WorkerState,
    client_port: u16,
    now: u64,
) -> Option<vipd_dataplane::flow::TcpState> {
    w.flows
        .iter(now)
        .find(|f| f.key.src_port == client_port)
        .map(|f| f.state)
}

/// An ARP frame, broadcast (literal bytes: etherparse has no ARP writer).
pub fn arp_frame(op: u8, sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sender_mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// VIPs with one UDP service each, hashing on the 3-tuple (client address, VIP, protocol):
/// NAT (RS1:5353, RS2:5353), DR and TUN (RS1, RS2), NAT66; two that cannot place a later
/// fragment without its first: a 5-tuple service, and a 3-tuple service sharing its VIP and
/// protocol with another.
pub mod three_tuple {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use vipd_dataplane::sched::SchedulerKind;
    use vipd_dataplane::snapshot::{BackendSpec, FlowHashFields, FwdMode, ServiceSpec, Snapshot};

    pub const NAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 7);
    pub const DR_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 8);
    pub const TUN_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 9);
    pub const SHARED_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 10);
    pub const FIVE_TUPLE_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 11);

    pub fn nat_vip6() -> Ipv6Addr {
        "fd00:100::7".parse().unwrap()
    }

    fn svc(vip: IpAddr, port: u16, hash: FlowHashFields, rs: Vec<BackendSpec>) -> ServiceSpec {
        ServiceSpec {
            vip,
            proto: 17,
            port,
            scheduler: SchedulerKind::Maglev,
            backends: rs,
            hash,
            ..Default::default()
        }
    }

    fn two(id: u32, port: u16, mode: FwdMode) -> Vec<BackendSpec> {
        [RS1_IP, RS2_IP]
            .iter()
            .enumerate()
            .map(|(i, &a)| BackendSpec {
                mode,
                ..nat_rs(id + i as u32, v4(a), port)
            })
            .collect()
    }

    pub fn snapshot() -> Snapshot {
        use FlowHashFields::{FiveTuple, ThreeTuple};
        snapshot_of(&[
            svc(v4(NAT_VIP), 53, ThreeTuple, two(0, 5353, FwdMode::Nat)),
            svc(v4(DR_VIP), 4500, ThreeTuple, two(2, 4500, FwdMode::Dr)),
            svc(v4(TUN_VIP), 4500, ThreeTuple, two(4, 4500, FwdMode::Tunnel)),
            svc(
                nat_vip6().into(),
                53,
                ThreeTuple,
                vec![nat_rs(6, rs1_ip6().into(), 5353)],
            ),
            svc(v4(SHARED_VIP), 53, ThreeTuple, two(7, 53, FwdMode::Nat)),
            svc(v4(SHARED_VIP), 54, ThreeTuple, two(9, 54, FwdMode::Nat)),
            svc(v4(FIVE_TUPLE_VIP), 53, FiveTuple, two(11, 53, FwdMode::Nat)),
        ])
    }

    /// A 3000-byte UDP datagram from `client`:`sport` to `vip`:`dport`.
    pub fn datagram(client: IpAddr, vip: IpAddr, sport: u16, dport: u16) -> Frame {
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 13 + 1) as u8).collect();
        Frame::new(ROUTER_MAC, LB_MAC, client, vip, udp(sport, dport), &body)
    }
}
