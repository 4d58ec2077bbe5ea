//! Stage 1 of a burst: every check and decision about a frame that needs no state change,
//! from its bytes and the snapshot alone. A frame is parsed once into a compact [`Pkt`]
//! (addresses already in flow-key form, the transport header's place, the flow hash), and
//! classified: dropped with its reason, steered to its owner, or staged for stage 3 as a
//! client packet of a service, a NAT reply, or one of the frames with their own handling
//! (ARP, Neighbour Discovery, ICMP, later fragments). The order of the checks is the
//! pipeline's (see the module documentation of [`super`]).
//!
//! Pure by construction: it reads the frame, the snapshot and the worker's identity, so the
//! burst can classify every frame before handling any (and prefetch their flow entries).

use super::{Action, Frag, L4Info, Pkt, Verdict, WorkerState};
use crate::counters::DropReason;
use crate::flow::{FlowKey, FlowTable, TableHash, TcpFlags};
use crate::fwd::nat::L4At;
use crate::io::{PacketBuf, RxChecksum};
use crate::snapshot::fast4::AMBIGUOUS;
use crate::snapshot::Snapshot;
use crate::wire::addr;
use crate::wire::checksum;
use crate::wire::ethernet::{self, ethertype, mac48};
use crate::wire::icmp;
use crate::wire::ipv4;
use crate::wire::ipv6::{self, FragmentHeader};
use crate::wire::tcp;
use crate::wire::vlan::{self, VlanHeader};

/// What stage 3 does with a frame, as stage 1 found it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Staged {
    /// Decided without state: dropped for a reason, or for the kernel.
    Done(Verdict),
    /// A TCP or UDP packet of a NAT connection another worker owns, with its flow hash (the
    /// owner is handed it with the frame, so it does not hash the key again).
    Steer { owner: u16, hash: TableHash },
    /// ARP, answered or handed on by `local::arp`.
    Arp,
    /// ICMPv6 Neighbour Solicitation or Advertisement (`ndp`).
    Nd,
    /// ICMP / ICMPv6 other than Neighbour Discovery.
    Icmp(Pkt),
    /// A TCP or UDP fragment after the first: it follows its datagram's first fragment.
    LaterFragment(Pkt, Frag),
    /// Steps 1 -> 2: a client packet (or first fragment) of a service.
    Client {
        pkt: Pkt,
        info: L4Info,
        /// Its service's index in the snapshot.
        service_index: u32,
        /// This worker owns the connection (else it is forwarded statelessly).
        owner_here: bool,
    },
    /// Steps 3 -> 4: a NAT real server's reply (or first fragment).
    Reply {
        pkt: Pkt,
        info: L4Info,
        /// The real server's service when it serves only one.
        unique_service: Option<u32>,
        owner_here: bool,
    },
}

impl Staged {
    /// The flow hash of a packet stage 3 looks up in the flow table.
    #[inline]
    pub(super) fn lookup_hash(&self) -> Option<(bool, crate::flow::TableHash)> {
        match self {
            Staged::Client {
                pkt,
                info,
                owner_here: true,
                ..
            }
            | Staged::Reply {
                pkt,
                info,
                owner_here: true,
                ..
            } => Some((pkt.v4, info.table)),
            _ => None,
        }
    }
}

/// What a fast path staged of a packet it hands to the general path (either family): a TCP
/// or UDP packet this worker owns, not a fragment, its transport header right after the
/// fixed IP header, in an untagged frame.
pub(super) struct FastPacket {
    pub(super) key: FlowKey,
    pub(super) v4: bool,
    pub(super) ttl: u8,
    /// IP packet length.
    pub(super) len: usize,
    pub(super) dont_frag: bool,
    pub(super) table: TableHash,
    pub(super) maglev: Option<u64>,
    /// TCP flags (0 for UDP).
    pub(super) tcp_bits: u8,
    /// A client packet's service; a reply's real server's one service or `AMBIGUOUS`.
    pub(super) service: u32,
    pub(super) reply: bool,
}

impl FastPacket {
    /// The general classifier's record of the packet (its stage 3 then handles it).
    pub(super) fn staged(self) -> Staged {
        let offset = if self.v4 {
            ipv4::HEADER_LEN
        } else {
            ipv6::HEADER_LEN
        };
        let proto = self.key.proto;
        let pkt = Pkt {
            l2: ethernet::HEADER_LEN,
            v4: self.v4,
            key: self.key,
            ttl: self.ttl,
            len: self.len,
            l4: L4At {
                proto,
                offset,
                header: true,
            },
            dont_frag: self.dont_frag,
            frag: None,
        };
        let tcp = (proto == ipv4::proto::TCP).then_some(self.tcp_bits);
        let info = L4Info {
            table: self.table,
            maglev: self.maglev,
            tcp_flags: tcp.map(TcpFlags::from_bits),
            tcp_bits: self.tcp_bits,
        };
        if !self.reply {
            Staged::Client {
                pkt,
                info,
                service_index: self.service,
                owner_here: true,
            }
        } else {
            Staged::Reply {
                pkt,
                info,
                unique_service: (self.service != AMBIGUOUS).then_some(self.service),
                owner_here: true,
            }
        }
    }
}

type Stage = Result<Staged, DropReason>;

/// Stage 1 of one frame received on `rx_port`. `flow_hash`: the hash another worker
/// computed for a frame it steered here (not computed again).
#[inline]
pub(super) fn classify<B: PacketBuf>(
    buf: &B,
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
    flow_hash: Option<u64>,
) -> Staged {
    match frame(buf, rx_port, w, snap, flow_hash) {
        Ok(s) => s,
        Err(c) => Staged::Done(Err(c)),
    }
}

fn frame<B: PacketBuf>(
    buf: &B,
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
    flow_hash: Option<u64>,
) -> Stage {
    let data = buf.data();
    let eth: &[u8; ethernet::HEADER_LEN] = data
        .get(..ethernet::HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DropReason::EthMalformed)?;
    let ty = u16::from_be_bytes([eth[12], eth[13]]);
    // `EthernetFrame::new_checked`: a tag needs its four bytes before anything is judged.
    if ty == ethertype::VLAN && data.len() < ethernet::VLAN_HEADER_LEN {
        return Err(DropReason::EthMalformed);
    }
    let port = snap
        .ports
        .get(usize::from(rx_port))
        .ok_or(DropReason::NoRoute)?;
    let (dst_mac, src_mac) = (&eth[0..6], &eth[6..12]);
    let multicast = dst_mac[0] & 1 != 0;
    let dst48 = mac48(dst_mac.try_into().map_err(|_| DropReason::EthMalformed)?);
    if dst48 != mac48(&port.mac.0) && !multicast {
        return Err(DropReason::NotOurMac);
    }
    let src48 = mac48(src_mac.try_into().map_err(|_| DropReason::EthMalformed)?);
    if src_mac[0] & 1 != 0 || src48 == 0 {
        return Err(DropReason::SrcMacInvalid);
    }
    // One 802.1Q tag of a VLAN the port carries: the frame belongs to the VLAN's interface
    // (its addresses, ARP/ND answers and routes); a priority tag (VLAN id 0) to the port's
    // untagged side. Any other tag, or a second one (QinQ), is dropped and counted
    // (docs/frame-classes.md).
    let (rx_port, l2, ty) = if ty == ethertype::VLAN {
        let tag = VlanHeader::new_checked(data).map_err(|_| DropReason::EthMalformed)?;
        let iface = match tag.vid() {
            vlan::PRIORITY_ONLY => rx_port,
            id => snap
                .vlan_interface(rx_port, id)
                .ok_or(DropReason::UnknownVlan)?,
        };
        (iface, ethernet::VLAN_HEADER_LEN, tag.inner_ethertype())
    } else {
        (rx_port, ethernet::HEADER_LEN, ty)
    };
    match ty {
        t if vlan::is_tag(t) => Err(DropReason::VlanTagged),
        ethertype::ARP => Ok(Staged::Arp),
        ethertype::IPV4 if multicast => Err(DropReason::LinkMulticast),
        ethertype::IPV4 => ipv4_packet(buf, &data[l2..], l2, rx_port, w, snap, flow_hash),
        ethertype::IPV6 => ipv6_packet(&data[l2..], l2, multicast, rx_port, w, snap, flow_hash),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

/// The checks every IPv4 packet passes once its header is valid: a source that may send
/// (unicast, not ours, not the destination), a unicast destination (a NAT real server's
/// reply to a multicast "client" was forwarded: found by fuzzing), a TTL that is not 0.
/// On 32-bit integers: this runs for every packet.
#[inline]
pub(super) fn check_source_v4(
    src: u32,
    dst: u32,
    ttl: u8,
    snap: &Snapshot,
) -> Result<(), DropReason> {
    let unicast = |a: u32| addr::is_unicast_source_v4(a.to_be_bytes());
    if !unicast(src) || src == dst || snap.is_own_or_broadcast_v4(src) {
        return Err(DropReason::MartianSource);
    }
    if !unicast(dst) {
        return Err(DropReason::MartianDestination);
    }
    if ttl == 0 {
        return Err(DropReason::TtlZero);
    }
    Ok(())
}

/// [`check_source_v4`] for IPv6.
pub(super) fn check_source_v6(
    src: &[u8; 16],
    dst: &[u8; 16],
    hops: u8,
    snap: &Snapshot,
) -> Result<(), DropReason> {
    if !addr::is_unicast_source_v6(src) || src == dst || snap.is_local_key(src) {
        return Err(DropReason::MartianSource);
    }
    if !addr::is_unicast_source_v6(dst) {
        return Err(DropReason::MartianDestination);
    }
    if hops == 0 {
        return Err(DropReason::TtlZero);
    }
    Ok(())
}

/// An IPv4 address in flow-key form.
#[inline]
pub(super) fn mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

fn ipv4_packet<B: PacketBuf>(
    buf: &B,
    ip: &[u8],
    l2: usize,
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
    flow_hash: Option<u64>,
) -> Stage {
    // The checks of `Ipv4Packet::new_checked`, on the fixed header read once.
    let h = ipv4::Header(
        ip.first_chunk::<{ ipv4::HEADER_LEN }>()
            .ok_or(DropReason::Ipv4Malformed)?,
    );
    let header_len = h.header_len();
    let total = usize::from(h.total_len());
    if h.version() != 4
        || header_len < ipv4::HEADER_LEN
        || header_len > ip.len()
        || total < header_len
        || total > ip.len()
    {
        return Err(DropReason::Ipv4Malformed);
    }
    // The NIC's verdict when the port offloads the check, else the software sum.
    let checksum_ok = match buf.rx_ipv4_checksum() {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unknown => checksum::verifies(&ip[..header_len]),
    };
    if !checksum_ok {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let (src4, dst4) = (h.src_u32(), h.dst_u32());
    let ttl = h.ttl();
    check_source_v4(src4, dst4, ttl, snap)?;
    let frag = h.is_fragment().then(|| Frag {
        ident: u32::from(h.ident()),
        offset: h.frag_offset(),
    });
    let pkt = Pkt {
        l2,
        v4: true,
        key: FlowKey {
            src: mapped(src4.to_be_bytes()),
            dst: mapped(dst4.to_be_bytes()),
            src_port: 0,
            dst_port: 0,
            proto: h.protocol(),
        },
        ttl,
        len: total,
        l4: L4At {
            proto: h.protocol(),
            offset: header_len,
            header: frag.is_none_or(|f| f.is_first()),
        },
        dont_frag: h.dont_frag(),
        frag,
    };
    by_protocol(pkt, &ip[..total], rx_port, w, snap, flow_hash)
}

fn ipv6_packet(
    ip: &[u8],
    l2: usize,
    link_multicast: bool,
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
    flow_hash: Option<u64>,
) -> Stage {
    // The checks of `Ipv6Packet::new_checked`, on the fixed header read once.
    let h = ipv6::Header(
        ip.first_chunk::<{ ipv6::HEADER_LEN }>()
            .ok_or(DropReason::Ipv6Malformed)?,
    );
    let total = ipv6::HEADER_LEN + usize::from(h.payload_len());
    if h.version() != 6 || total > ip.len() {
        return Err(DropReason::Ipv6Malformed);
    }
    let ip = &ip[..total];
    let (src, dst) = (h.src_bytes(), h.dst_bytes());
    if addr::is_mapped(&src) || addr::is_mapped(&dst) {
        return Err(DropReason::Ipv6Mapped);
    }
    let first_next = h.next_header();
    // Multicast frames carry Neighbour Discovery (ICMPv6) and nothing else vipd wants: MLD
    // reports (behind a hop-by-hop header) and the like end here.
    if link_multicast && first_next != ipv6::NEXT_HEADER_ICMPV6 {
        return Err(DropReason::LinkMulticast);
    }
    let mut next = first_next;
    let mut l4_offset = ipv6::HEADER_LEN;
    let mut frag = None;
    if next == ipv6::ext::FRAGMENT {
        let fh = FragmentHeader::parse(&ip[ipv6::HEADER_LEN..])
            .map_err(|_| DropReason::Ipv6Malformed)?;
        next = fh.next_header;
        l4_offset += ipv6::FRAGMENT_HEADER_LEN;
        if !fh.is_atomic() {
            frag = Some(Frag {
                ident: fh.ident,
                offset: fh.offset,
            });
        }
    }
    // Only the fragment header is walked: hop-by-hop, routing and destination options carry
    // nothing a client of a VIP needs, and chains are how filters are evaded (RFC 7112).
    if ipv6::is_extension_header(next) {
        return Err(DropReason::Ipv6ExtHeader);
    }
    if next == ipv6::NEXT_HEADER_ICMPV6 && l4_offset == ipv6::HEADER_LEN {
        let msg = &ip[ipv6::HEADER_LEN..];
        // `IcmpPacket::new_checked`: the fixed part of an ICMP header.
        if msg.len() < icmp::HEADER_LEN {
            return Err(DropReason::L4Malformed);
        }
        if matches!(
            msg[0],
            icmp::v6::NEIGHBOR_SOLICIT | icmp::v6::NEIGHBOR_ADVERT
        ) {
            // Before the source checks: duplicate address detection comes from `::`, and
            // solicitations go to multicast groups that are not ours (RFC 4861 rules in ndp).
            return Ok(Staged::Nd);
        }
    }
    if link_multicast {
        return Err(DropReason::LinkMulticast);
    }
    let hops = h.hop_limit();
    check_source_v6(&src, &dst, hops, snap)?;
    let pkt = Pkt {
        l2,
        v4: false,
        key: FlowKey {
            src,
            dst,
            src_port: 0,
            dst_port: 0,
            proto: next,
        },
        ttl: hops,
        len: total,
        l4: L4At {
            proto: next,
            offset: l4_offset,
            header: frag.is_none_or(|f| f.is_first()),
        },
        dont_frag: true,
        frag,
    };
    by_protocol(pkt, ip, rx_port, w, snap, flow_hash)
}

/// By upper-layer protocol. `ip` is the IP packet (without Ethernet padding).
fn by_protocol(
    mut pkt: Pkt,
    ip: &[u8],
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
    flow_hash: Option<u64>,
) -> Stage {
    let icmp_proto = if pkt.v4 {
        ipv4::proto::ICMP
    } else {
        ipv6::NEXT_HEADER_ICMPV6
    };
    match pkt.l4.proto {
        ipv4::proto::TCP | ipv4::proto::UDP => match pkt.frag {
            Some(f) if !f.is_first() => Ok(Staged::LaterFragment(pkt, f)),
            _ => {
                let seg = ip.get(pkt.l4.offset..).ok_or(DropReason::L4Malformed)?;
                let (sport, dport, flags) = parse_l4(seg, pkt.l4.proto, pkt.frag.is_some())?;
                pkt.key.src_port = sport;
                pkt.key.dst_port = dport;
                let info = L4Info::new(&pkt.key, flags, flow_hash);
                by_destination(pkt, info, rx_port, w, snap)
            }
        },
        p if p == icmp_proto => {
            if pkt.frag.is_some() {
                // vipd does not reassemble, and an ICMP message cut in pieces cannot be
                // checked or relayed.
                return Err(DropReason::FragmentInvalid);
            }
            Ok(Staged::Icmp(pkt))
        }
        _ => Ok(Staged::Done(if snap.is_vip(&pkt.key.dst) {
            Err(DropReason::UnsupportedProtocol)
        } else if snap.is_local_key(&pkt.key.dst) {
            for_kernel(rx_port, snap)
        } else {
            Err(DropReason::NotLocal)
        })),
    }
}

/// Whether a TCP flags byte is a combination a TCP endpoint sends: the table of Linux
/// conntrack (`tcp_valid_flags`), ignoring PSH, ECE and CWR. Rejects no flags, SYN+FIN,
/// SYN+RST, FIN without ACK and the like (scans, evasion, fingerprinting).
pub(super) fn valid_tcp_flags(bits: u8) -> bool {
    use tcp::flags::{ACK, FIN, RST, SYN};
    const URG: u8 = 0x20;
    matches!(
        bits & (FIN | SYN | RST | ACK | URG),
        SYN | 0x22 // SYN|URG
            | 0x12 // SYN|ACK
            | RST
            | 0x14 // RST|ACK
            | 0x11 // FIN|ACK
            | 0x31 // FIN|ACK|URG
            | ACK
            | 0x30 // ACK|URG
    )
}

/// Ports and TCP flags of a TCP or UDP header; `seg` runs from the header to the end of the
/// IP packet. The UDP length is checked against the packet unless this is a first fragment
/// (its UDP length counts the whole datagram); a first fragment must hold the whole TCP
/// header (RFC 1858 tiny fragments). The checks of `TcpPacket::new_checked` and
/// `UdpPacket::new_checked` / `new_header_checked`.
#[inline]
pub(super) fn parse_l4(
    seg: &[u8],
    l4_proto: u8,
    first_fragment: bool,
) -> Result<(u16, u16, Option<u8>), DropReason> {
    let malformed = if first_fragment {
        DropReason::FragmentInvalid
    } else {
        DropReason::L4Malformed
    };
    let ports = |h: &[u8]| {
        (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[2], h[3]]),
        )
    };
    if l4_proto == ipv4::proto::TCP {
        let h: &[u8; tcp::HEADER_LEN] = seg
            .get(..tcp::HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(malformed)?;
        let data_offset = usize::from(h[12] >> 4) * 4;
        if data_offset < tcp::HEADER_LEN || data_offset > seg.len() {
            return Err(malformed);
        }
        let (s, d) = ports(h);
        Ok((s, d, Some(h[13])))
    } else {
        let h: &[u8; 8] = seg
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(malformed)?;
        if !first_fragment {
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if len < 8 || len > seg.len() {
                return Err(malformed);
            }
        }
        let (s, d) = ports(h);
        Ok((s, d, None))
    }
}

/// By destination and source: a VIP's service, a NAT real server's reply, the box itself.
fn by_destination(pkt: Pkt, info: L4Info, rx_port: u16, w: &WorkerState, snap: &Snapshot) -> Stage {
    let key = &pkt.key;
    // One lookup for a client packet: a service's endpoint is always a VIP's.
    let service = snap.service(&key.dst, key.proto, key.dst_port);
    if service.is_some() || snap.is_vip(&key.dst) {
        let (service_index, svc) = service.ok_or(DropReason::NoService)?;
        let ownership = svc.ownership;
        if info.tcp_flags.is_some() && !valid_tcp_flags(info.tcp_bits) {
            return Err(DropReason::TcpBadFlags);
        }
        let mut owner_here = true;
        if let Some(owner) = w.owner_elsewhere(ownership, &key.src, key.src_port) {
            if pkt.frag.is_none() {
                return Ok(Staged::Steer {
                    owner,
                    hash: info.table,
                });
            }
            // Fragments stay where they arrive, with the datagram's later fragments
            // (which carry no ports to find the owner by): decided statelessly.
            owner_here = false;
        }
        return Ok(Staged::Client {
            pkt,
            info,
            service_index,
            owner_here,
        });
    }
    if snap.is_local_key(&key.dst) {
        // Before the NAT reply test: a real server answering the box itself (a health check
        // from the kernel) is not a reply to a client.
        return Ok(Staged::Done(for_kernel(rx_port, snap)));
    }
    if let Some(endpoint) = snap.nat_endpoint(&key.src, key.proto, key.src_port) {
        if info.tcp_flags.is_some() && !valid_tcp_flags(info.tcp_bits) {
            return Err(DropReason::TcpBadFlags);
        }
        // A full-NAT reply without an entry cannot be rewritten: its client is unknown.
        let unique_service = endpoint.service.filter(|_| !endpoint.fnat);
        let mut owner_here = true;
        if let Some(owner) = w.owner_elsewhere(endpoint.ownership, &key.dst, key.dst_port) {
            if pkt.frag.is_none() {
                return Ok(Staged::Steer {
                    owner,
                    hash: info.table,
                });
            }
            owner_here = false;
        }
        return Ok(Staged::Reply {
            pkt,
            info,
            unique_service,
            owner_here,
        });
    }
    Err(DropReason::NotLocal)
}

/// Traffic for a port address that vipd does not answer itself: to the kernel when the rx
/// port has a kernel interface (the exception path), else dropped.
pub(crate) fn for_kernel(rx_port: u16, snap: &Snapshot) -> Verdict {
    match snap.ports.get(usize::from(rx_port)) {
        Some(p) if p.kernel => Ok(Action::ToKernel),
        _ => Err(DropReason::LocalUnhandled),
    }
}

impl L4Info {
    /// The transport facts of a packet with flow key `key`; `flow_hash` when already known
    /// (a steered frame's, computed by the worker that received it).
    #[inline]
    pub(super) fn new(key: &FlowKey, tcp: Option<u8>, flow_hash: Option<u64>) -> Self {
        L4Info {
            table: flow_hash.map_or_else(|| FlowTable::hash(key), TableHash::from_raw),
            maglev: None,
            tcp_flags: tcp.map(TcpFlags::from_bits),
            tcp_bits: tcp.unwrap_or(0),
        }
    }
}
