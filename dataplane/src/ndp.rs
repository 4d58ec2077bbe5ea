//! IPv6 Neighbour Discovery in the dataplane (RFC 4861), the IPv6 counterpart of the pipeline's
//! ARP handling: a Neighbour Solicitation for a port's own IPv6 address or an IPv6 VIP is
//! answered in place with a solicited Neighbour Advertisement; an advertisement addressed to us
//! (the answer to a solicitation the control plane sent) goes to the control plane, which
//! learns the neighbour from it.
//!
//! Pure: no I/O, no allocation. The frame is rewritten in place and its length adjusted (an
//! advertisement with its Target Link-Layer option is 32 bytes, a solicitation 24 to many).

use crate::counters::DropReason;
use crate::io::PacketBuf;
use crate::snapshot::Snapshot;
use crate::wire::addr;
use crate::wire::ethernet::EthernetFrame;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::ndisc::{self, NdiscPacket};
use crate::wire::MacAddr;
use std::net::{IpAddr, Ipv6Addr};

/// Hop limit every Neighbour Discovery message carries (and must arrive with): 255 proves it
/// was not forwarded by a router.
pub const ND_HOP_LIMIT: u8 = 255;

/// What the caller does with a Neighbour Discovery frame [`handle_nd`] accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdVerdict {
    /// The frame is now a Neighbour Advertisement (rewritten in place, length adjusted):
    /// transmit it on the port it arrived on.
    Reply,
    /// A Neighbour Advertisement addressed to one of our addresses, or an unsolicited one
    /// announcing a new MAC for a known neighbour: hand it to the control plane, which learns
    /// the neighbour from it.
    ToControl,
}

/// The solicitation fields the reply needs, read before the frame is rewritten.
struct Solicitation {
    target: Ipv6Addr,
    reply_to: Ipv6Addr,
    reply_mac: MacAddr,
    dad: bool,
}

/// Handle an ICMPv6 Neighbour Solicitation (type 135) or Advertisement (type 136) received on
/// `rx_port`; `l2` is the Ethernet header length (14, or 18 with a VLAN tag, which is kept).
///
/// A solicitation whose target is `rx_port`'s own IPv6 address or an IPv6 VIP is turned into
/// a solicited advertisement: to the solicitor's address (all-nodes ff02::1 when it is `::`,
/// duplicate address detection), from the target, S=1 (S=0 for DAD), O=1, R=0, with a Target
/// Link-Layer option carrying the port's MAC, hop limit 255; Ethernet to the solicitor's MAC
/// (its Source Link-Layer option, else the frame's source), from the port's MAC.
///
/// Errors are the drop reason to count: [`DropReason::NdInvalid`] for a message failing
/// RFC 4861 validation (hop limit, code, length, options, checksum, multicast target, ...),
/// [`DropReason::NdIgnored`] for a valid one not for us, [`DropReason::Ipv6Mapped`] for one
/// whose target or destination is IPv4-mapped (never an address of the box or a neighbour).
pub fn handle_nd<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    rx_port: u16,
    snap: &Snapshot,
) -> Result<NdVerdict, DropReason> {
    let port = snap
        .ports
        .get(usize::from(rx_port))
        .ok_or(DropReason::NoRoute)?;
    let our_mac = port.mac;
    let sol = {
        let frame = buf.data();
        let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthMalformed)?;
        let ip = Ipv6Packet::new_checked(frame.get(l2..).ok_or(DropReason::EthMalformed)?)
            .map_err(|_| DropReason::Ipv6Malformed)?;
        if ip.next_header() != ipv6::NEXT_HEADER_ICMPV6 {
            return Err(DropReason::NdInvalid);
        }
        let (src, dst) = (ip.src(), ip.dst());
        let nd = NdiscPacket::new_checked(ip.payload()).map_err(|_| DropReason::NdInvalid)?;
        let target = nd.target();
        if ip.hop_limit() != ND_HOP_LIMIT
            || nd.code() != 0
            || target.is_multicast()
            // Unspecified (duplicate address detection) or a unicast address: a loopback
            // source got an advertisement sent to ::1 (found by fuzzing).
            || !(src.is_unspecified() || addr::is_unicast_source_v6(&src.octets()))
            || !nd.verify_checksum(&src, &dst)
        {
            return Err(DropReason::NdInvalid);
        }
        // The snapshot keeps IPv4 addresses IPv4-mapped: a mapped target (or destination)
        // would read as an IPv4 VIP, port address or neighbour. No such address is ever the
        // box's or a neighbour's (RFC 4291 2.5.5.2: never on the wire).
        if addr::is_mapped(&target.octets()) || addr::is_mapped(&dst.octets()) {
            return Err(DropReason::Ipv6Mapped);
        }
        if nd.msg_type() == ndisc::NEIGHBOR_ADVERT {
            if dst.is_multicast() && nd.solicited_flag() {
                return Err(DropReason::NdInvalid);
            }
            // Addressed to us: the answer to a solicitation the control plane sent. Else an
            // unsolicited advertisement (to all-nodes: a host that changed its MAC, RFC 4861
            // 7.2.6): learned when it moves a neighbour the snapshot knows, so traffic follows
            // at once instead of after the next refresh.
            let moves_known = nd.target_ll_addr().is_some_and(|mac| {
                snap.neighbour(&IpAddr::V6(target))
                    .is_some_and(|known| known != mac)
            });
            return if snap.is_local(&IpAddr::V6(dst)) || moves_known {
                Ok(NdVerdict::ToControl)
            } else {
                Err(DropReason::NdIgnored)
            };
        }
        let source_ll = nd.source_ll_addr();
        let dad = src.is_unspecified();
        if dad && (dst != ndisc::solicited_node(target) || source_ll.is_some()) {
            return Err(DropReason::NdInvalid);
        }
        if dst != target && dst != ndisc::solicited_node(target) {
            return Err(DropReason::NdIgnored);
        }
        let t = target.octets();
        if !port.owns(&IpAddr::V6(target)) && !snap.is_vip(&t) && !snap.is_fnat_local(&t) {
            return Err(DropReason::NdIgnored);
        }
        let (reply_to, reply_mac) = if dad {
            (ndisc::ALL_NODES, ndisc::multicast_mac(ndisc::ALL_NODES))
        } else {
            (src, source_ll.unwrap_or_else(|| eth.src()))
        };
        if !dad && reply_mac.is_multicast() {
            return Err(DropReason::NdInvalid);
        }
        Solicitation {
            target,
            reply_to,
            reply_mac,
            dad,
        }
    };
    write_advert(buf, l2, our_mac, &sol)?;
    Ok(NdVerdict::Reply)
}

/// Resize the frame to exactly an advertisement with a Target Link-Layer option and write it.
fn write_advert<B: PacketBuf>(
    buf: &mut B,
    l2: usize,
    our_mac: MacAddr,
    sol: &Solicitation,
) -> Result<(), DropReason> {
    let na_len = ndisc::message_len(true);
    let new_len = l2 + ipv6::HEADER_LEN + na_len;
    let old_len = buf.data().len();
    let resized = if new_len > old_len {
        buf.append(new_len - old_len)
    } else {
        buf.trim_to(new_len)
    };
    if !resized {
        return Err(DropReason::NoTailroom);
    }
    let frame = buf.data_mut();
    let mut eth = EthernetFrame::new_checked(&mut *frame).map_err(|_| DropReason::EthMalformed)?;
    eth.set_dst(sol.reply_mac);
    eth.set_src(our_mac);
    let ip = frame.get_mut(l2..).ok_or(DropReason::EthMalformed)?;
    ipv6::emit_header(
        ip,
        0,
        0,
        na_len as u16,
        ipv6::NEXT_HEADER_ICMPV6,
        ND_HOP_LIMIT,
        sol.target,
        sol.reply_to,
    );
    let flags = if sol.dad {
        ndisc::flags::OVERRIDE
    } else {
        ndisc::flags::SOLICITED | ndisc::flags::OVERRIDE
    };
    // The frame was sized for the advertisement above: neither can fail.
    let msg = ip
        .get_mut(ipv6::HEADER_LEN..)
        .ok_or(DropReason::NoTailroom)?;
    ndisc::emit_na(
        msg,
        &sol.target,
        &sol.reply_to,
        flags,
        &sol.target,
        Some(our_mac),
    )
    .map_err(|_| DropReason::NoTailroom)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::VecBuf;
    use crate::sched::SchedulerKind;
    use crate::snapshot::{BackendSpec, FwdMode, PortInfo, ServiceSpec};
    use etherparse::{
        Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, VlanSlice,
    };
    use std::collections::HashMap;

    const LB_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
    const LB1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
    const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn lb() -> Ipv6Addr {
        ip("fd00::10")
    }
    fn lb1() -> Ipv6Addr {
        ip("fd01::10")
    }
    fn peer() -> Ipv6Addr {
        ip("fd00::1")
    }
    fn vip() -> Ipv6Addr {
        ip("fd00:100::1")
    }

    /// Port 0: fd00::10/64, port 1: fd01::10/64; a VIP [fd00:100::1]:80/tcp.
    fn snapshot() -> Snapshot {
        let port = |mac, net: &str| PortInfo {
            mac,
            ipv4: None,
            ipv6: Some(net.parse().unwrap()),
            gateway_v4: None,
            gateway_v6: None,
            mtu: 1500,
            tunnel_source4: None,
            tunnel_source6: None,
            ..Default::default()
        };
        let services = [ServiceSpec {
            vip: IpAddr::V6(vip()),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![BackendSpec {
                id: 0,
                addr: IpAddr::V6(ip("fd00::21")),
                port: 80,
                weight: 1,
                mode: FwdMode::Nat,
                ..Default::default()
            }],
            ..Default::default()
        }];
        Snapshot::build(
            1,
            vec![port(LB_MAC, "fd00::10/64"), port(LB1_MAC, "fd01::10/64")],
            &services,
            &HashMap::new(),
            251,
        )
        .unwrap()
    }

    /// An ICMPv6 ND frame built by etherparse (checksum computed there).
    #[allow(clippy::too_many_arguments)]
    fn nd_frame(
        eth_src: MacAddr,
        eth_dst: MacAddr,
        vlan: Option<u16>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        ty: u8,
        flags: u8,
        target: Ipv6Addr,
        options: &[u8],
    ) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(eth_src.0, eth_dst.0);
        let mut payload = target.octets().to_vec();
        payload.extend_from_slice(options);
        let mut out = Vec::new();
        match vlan {
            Some(id) => eth
                .single_vlan(etherparse::VlanId::try_new(id).unwrap())
                .ipv6(src.octets(), dst.octets(), hop_limit)
                .icmpv6_raw(ty, 0, [flags, 0, 0, 0])
                .write(&mut out, &payload)
                .unwrap(),
            None => eth
                .ipv6(src.octets(), dst.octets(), hop_limit)
                .icmpv6_raw(ty, 0, [flags, 0, 0, 0])
                .write(&mut out, &payload)
                .unwrap(),
        }
        out
    }

    fn sll(mac: MacAddr) -> Vec<u8> {
        let mut o = vec![1, 1];
        o.extend_from_slice(&mac.0);
        o
    }

    /// A multicast solicitation from `src` for `target`, with a Source Link-Layer option.
    fn ns(src: Ipv6Addr, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
        let dst = ndisc::solicited_node(target);
        nd_frame(
            PEER_MAC,
            ndisc::multicast_mac(dst),
            None,
            src,
            dst,
            255,
            135,
            0,
            target,
            options,
        )
    }

    /// The advertisement as etherparse sees it: (eth src, eth dst, ip src, ip dst, hop limit,
    /// flags byte, target, options), after checking the checksum.
    #[allow(clippy::type_complexity)]
    fn parse_na(
        frame: &[u8],
    ) -> (
        MacAddr,
        MacAddr,
        Ipv6Addr,
        Ipv6Addr,
        u8,
        u8,
        Ipv6Addr,
        Vec<u8>,
    ) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let link = p.link.as_ref().unwrap().to_header().unwrap();
        let etherparse::LinkHeader::Ethernet2(e) = link else {
            panic!("not ethernet");
        };
        let Some(NetSlice::Ipv6(ip6)) = &p.net else {
            panic!("not IPv6");
        };
        let h = ip6.header();
        assert_eq!(
            usize::from(h.payload_length()),
            frame.len() - 40 - if p.vlan.is_some() { 18 } else { 14 },
            "frame trimmed to the payload"
        );
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6");
        };
        assert!(
            icmp.is_checksum_valid(h.source(), h.destination()),
            "checksum"
        );
        let Icmpv6Type::Unknown {
            type_u8,
            code_u8,
            bytes5to8,
        } = icmp.icmp_type()
        else {
            panic!("ND is not decoded by etherparse 0.16");
        };
        assert_eq!((type_u8, code_u8), (136, 0));
        assert_eq!(&bytes5to8[1..], &[0, 0, 0]);
        let payload = icmp.payload();
        let mut target = [0u8; 16];
        target.copy_from_slice(&payload[..16]);
        (
            MacAddr(e.source),
            MacAddr(e.destination),
            Ipv6Addr::from(h.source()),
            Ipv6Addr::from(h.destination()),
            h.hop_limit(),
            bytes5to8[0],
            Ipv6Addr::from(target),
            payload[16..].to_vec(),
        )
    }

    fn run(frame: &[u8], rx_port: u16) -> (Result<NdVerdict, DropReason>, VecBuf) {
        let mut buf = VecBuf::new(frame);
        let l2 = EthernetFrame::new_checked(frame).unwrap().header_len();
        let v = handle_nd(&mut buf, l2, rx_port, &snapshot());
        (v, buf)
    }

    const TLL_LB: [u8; 8] = [2, 1, 0x02, 0, 0, 0, 0, 0x10];

    #[test]
    fn answers_solicitation_for_port_address() {
        let (v, buf) = run(&ns(peer(), lb(), &sll(PEER_MAC)), 0);
        assert_eq!(v, Ok(NdVerdict::Reply));
        let (esrc, edst, src, dst, hl, flags, target, opts) = parse_na(buf.data());
        assert_eq!((esrc, edst), (LB_MAC, PEER_MAC));
        assert_eq!((src, dst, hl), (lb(), peer(), 255));
        assert_eq!(flags, ndisc::flags::SOLICITED | ndisc::flags::OVERRIDE);
        assert_eq!(target, lb());
        assert_eq!(opts, TLL_LB);
        assert_eq!(buf.data().len(), 14 + 40 + 32);
    }

    #[test]
    fn answers_solicitation_for_vip_using_option_mac() {
        // The Source Link-Layer option wins over the frame's source MAC.
        let mut f = ns(peer(), vip(), &sll(OTHER_MAC));
        f.extend_from_slice(&[0u8; 6]); // Ethernet trailer: ignored, trimmed away
        let (v, buf) = run(&f, 0);
        assert_eq!(v, Ok(NdVerdict::Reply));
        let (esrc, edst, src, dst, _, _, target, opts) = parse_na(buf.data());
        assert_eq!((esrc, edst), (LB_MAC, OTHER_MAC));
        assert_eq!((src, dst, target), (vip(), peer(), vip()));
        assert_eq!(opts, TLL_LB);
    }

    #[test]
    fn unicast_solicitation_without_option_grows_frame() {
        // Unicast neighbour unreachability detection: to the target itself, no option; the
        // reply (32-byte message) is longer than the request (24).
        let f = nd_frame(PEER_MAC, LB_MAC, None, peer(), lb(), 255, 135, 0, lb(), &[]);
        assert_eq!(f.len(), 14 + 40 + 24);
        let (v, buf) = run(&f, 0);
        assert_eq!(v, Ok(NdVerdict::Reply));
        let (_, edst, _, dst, _, _, _, opts) = parse_na(buf.data());
        assert_eq!((edst, dst), (PEER_MAC, peer()));
        assert_eq!(opts, TLL_LB);
    }

    #[test]
    fn duplicate_address_detection_goes_to_all_nodes() {
        let (v, buf) = run(&ns(Ipv6Addr::UNSPECIFIED, lb(), &[]), 0);
        assert_eq!(v, Ok(NdVerdict::Reply));
        let (esrc, edst, src, dst, _, flags, _, opts) = parse_na(buf.data());
        assert_eq!((esrc, edst), (LB_MAC, MacAddr([0x33, 0x33, 0, 0, 0, 1])));
        assert_eq!((src, dst), (lb(), ip("ff02::1")));
        assert_eq!(flags, ndisc::flags::OVERRIDE, "S=0 for DAD");
        assert_eq!(opts, TLL_LB);
        // DAD with a source link-layer option is invalid (RFC 4861 7.1.1).
        let (v, _) = run(&ns(Ipv6Addr::UNSPECIFIED, lb(), &sll(PEER_MAC)), 0);
        assert_eq!(v, Err(DropReason::NdInvalid));
    }

    #[test]
    fn keeps_vlan_tag() {
        let dst = ndisc::solicited_node(lb());
        let f = nd_frame(
            PEER_MAC,
            ndisc::multicast_mac(dst),
            Some(100),
            peer(),
            dst,
            255,
            135,
            0,
            lb(),
            &sll(PEER_MAC),
        );
        let (v, buf) = run(&f, 0);
        assert_eq!(v, Ok(NdVerdict::Reply));
        let p = SlicedPacket::from_ethernet(buf.data()).unwrap();
        let Some(VlanSlice::SingleVlan(tag)) = p.vlan else {
            panic!("VLAN tag lost");
        };
        assert_eq!(tag.vlan_identifier().value(), 100);
        let (_, edst, _, dst, _, _, target, _) = parse_na(buf.data());
        assert_eq!((edst, dst, target), (PEER_MAC, peer(), lb()));
    }

    #[test]
    fn ignores_targets_that_are_not_ours() {
        // Another host's address, and port 1's address asked on port 0.
        for target in [ip("fd00::77"), lb1()] {
            let (v, buf) = run(&ns(peer(), target, &sll(PEER_MAC)), 0);
            assert_eq!(v, Err(DropReason::NdIgnored), "{target}");
            assert_eq!(
                buf.data(),
                &ns(peer(), target, &sll(PEER_MAC))[..],
                "untouched"
            );
        }
        // Port 1's address on port 1 is answered with port 1's MAC.
        let (v, buf) = run(&ns(ip("fd01::1"), lb1(), &sll(PEER_MAC)), 1);
        assert_eq!(v, Ok(NdVerdict::Reply));
        assert_eq!(parse_na(buf.data()).0, LB1_MAC);
        // Solicitation to an unrelated destination.
        let f = nd_frame(
            PEER_MAC,
            LB_MAC,
            None,
            peer(),
            ip("fd00::5"),
            255,
            135,
            0,
            lb(),
            &[],
        );
        assert_eq!(run(&f, 0).0, Err(DropReason::NdIgnored));
    }

    #[test]
    fn rfc4861_validation() {
        let dst = ndisc::solicited_node(lb());
        let mac = ndisc::multicast_mac(dst);
        let bad_hop = nd_frame(PEER_MAC, mac, None, peer(), dst, 64, 135, 0, lb(), &[]);
        assert_eq!(run(&bad_hop, 0).0, Err(DropReason::NdInvalid), "hop limit");

        let bad_code = {
            let mut payload = lb().octets().to_vec();
            payload.extend_from_slice(&sll(PEER_MAC));
            let mut out = Vec::new();
            PacketBuilder::ethernet2(PEER_MAC.0, mac.0)
                .ipv6(peer().octets(), dst.octets(), 255)
                .icmpv6_raw(135, 1, [0; 4])
                .write(&mut out, &payload)
                .unwrap();
            out
        };
        assert_eq!(run(&bad_code, 0).0, Err(DropReason::NdInvalid), "code");

        let mut bad_sum = ns(peer(), lb(), &sll(PEER_MAC));
        bad_sum[57] ^= 0xff;
        assert_eq!(run(&bad_sum, 0).0, Err(DropReason::NdInvalid), "checksum");

        let mcast = ip("ff02::1");
        let f = nd_frame(PEER_MAC, mac, None, peer(), dst, 255, 135, 0, mcast, &[]);
        assert_eq!(run(&f, 0).0, Err(DropReason::NdInvalid), "multicast target");

        // A loopback solicitor (found by fuzzing: the advertisement went to ::1).
        let lo = ns(ip("::1"), lb(), &sll(PEER_MAC));
        assert_eq!(run(&lo, 0).0, Err(DropReason::NdInvalid), "loopback source");

        // ICMPv6 length 16 < 24: a truncated message (etherparse writes what we give it).
        let short = {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(PEER_MAC.0, mac.0)
                .ipv6(peer().octets(), dst.octets(), 255)
                .icmpv6_raw(135, 0, [0; 4])
                .write(&mut out, &lb().octets()[..8])
                .unwrap();
            out
        };
        assert_eq!(run(&short, 0).0, Err(DropReason::NdInvalid), "length");

        let zero_opt = ns(peer(), lb(), &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            run(&zero_opt, 0).0,
            Err(DropReason::NdInvalid),
            "option length 0"
        );

        let long_opt = ns(peer(), lb(), &[1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            run(&long_opt, 0).0,
            Err(DropReason::NdInvalid),
            "option overruns"
        );

        // IPv6 payload length past the frame.
        let mut trunc = ns(peer(), lb(), &sll(PEER_MAC));
        trunc.truncate(trunc.len() - 4);
        assert_eq!(run(&trunc, 0).0, Err(DropReason::Ipv6Malformed));

        // Every prefix of a valid solicitation is refused without a panic.
        let good = ns(peer(), lb(), &sll(PEER_MAC));
        for n in 14..good.len() {
            assert!(run(&good[..n], 0).0.is_err(), "prefix {n}");
        }
    }

    #[test]
    fn advertisements_to_us_go_to_control() {
        let opts = [2, 1, 2, 0, 0, 0, 0, 1];
        let f = nd_frame(
            PEER_MAC,
            LB_MAC,
            None,
            peer(),
            lb(),
            255,
            136,
            0x60,
            peer(),
            &opts,
        );
        let (v, buf) = run(&f, 0);
        assert_eq!(v, Ok(NdVerdict::ToControl));
        assert_eq!(buf.data(), &f[..], "untouched");
        // To someone else: ignored.
        let other = ip("fd00::77");
        let f = nd_frame(
            PEER_MAC,
            LB_MAC,
            None,
            peer(),
            other,
            255,
            136,
            0x60,
            peer(),
            &opts,
        );
        assert_eq!(run(&f, 0).0, Err(DropReason::NdIgnored));
        // Unsolicited to all-nodes: not for the control plane (as gratuitous ARP).
        let all = ndisc::ALL_NODES;
        let mac = ndisc::multicast_mac(all);
        let f = nd_frame(
            PEER_MAC,
            mac,
            None,
            peer(),
            all,
            255,
            136,
            0x20,
            peer(),
            &opts,
        );
        assert_eq!(run(&f, 0).0, Err(DropReason::NdIgnored));
        // Solicited flag on a multicast advertisement is invalid.
        let f = nd_frame(
            PEER_MAC,
            mac,
            None,
            peer(),
            all,
            255,
            136,
            0x60,
            peer(),
            &opts,
        );
        assert_eq!(run(&f, 0).0, Err(DropReason::NdInvalid));
        // Hop limit below 255.
        let f = nd_frame(
            PEER_MAC,
            LB_MAC,
            None,
            peer(),
            lb(),
            254,
            136,
            0x60,
            peer(),
            &opts,
        );
        assert_eq!(run(&f, 0).0, Err(DropReason::NdInvalid));
    }

    #[test]
    fn ipv4_mapped_target_or_destination_is_never_ours() {
        // An IPv4 VIP and port address next to the IPv6 ones: the snapshot stores them as
        // `::ffff:a.b.c.d`, which is what a mapped target spells.
        let mut ports = vec![PortInfo {
            mac: LB_MAC,
            ipv4: Some("10.0.0.10/24".parse().unwrap()),
            ipv6: Some("fd00::10/64".parse().unwrap()),
            mtu: 1500,
            ..Default::default()
        }];
        ports.push(PortInfo {
            mac: LB1_MAC,
            ..ports[0].clone()
        });
        let services = [ServiceSpec {
            vip: "10.100.0.1".parse().unwrap(),
            proto: 6,
            port: 80,
            scheduler: SchedulerKind::Rr,
            backends: vec![BackendSpec {
                id: 0,
                addr: "10.0.0.21".parse().unwrap(),
                port: 80,
                weight: 1,
                mode: FwdMode::Nat,
                ..Default::default()
            }],
            ..Default::default()
        }];
        let mut neighbours = HashMap::new();
        neighbours.insert("10.0.0.21".parse().unwrap(), PEER_MAC);
        let snap = Snapshot::build(1, ports, &services, &neighbours, 251).unwrap();
        let mapped = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap().to_ipv6_mapped();
        let frames = [
            ns(peer(), mapped("10.100.0.1"), &sll(PEER_MAC)),
            ns(peer(), mapped("10.0.0.10"), &sll(PEER_MAC)),
            // An unsolicited advertisement that would move the IPv4 neighbour 10.0.0.21.
            nd_frame(
                OTHER_MAC,
                ndisc::multicast_mac(ndisc::ALL_NODES),
                None,
                peer(),
                ndisc::ALL_NODES,
                255,
                136,
                0x20,
                mapped("10.0.0.21"),
                &[2, 1, 0x02, 0, 0, 0, 0, 0x99],
            ),
            // A destination spelled mapped (the pipeline drops it before; handle_nd too).
            nd_frame(
                PEER_MAC,
                LB_MAC,
                None,
                peer(),
                mapped("10.0.0.10"),
                255,
                136,
                0x60,
                peer(),
                &[],
            ),
        ];
        for (i, f) in frames.iter().enumerate() {
            let mut buf = VecBuf::new(f);
            assert_eq!(
                handle_nd(&mut buf, 14, 0, &snap),
                Err(DropReason::Ipv6Mapped),
                "frame {i}"
            );
            assert_eq!(buf.data(), &f[..], "frame {i} unchanged");
        }
        // The port's IPv6 address is still answered.
        assert_eq!(
            handle_nd(
                &mut VecBuf::new(&ns(peer(), lb(), &sll(PEER_MAC))),
                14,
                0,
                &snap
            ),
            Ok(NdVerdict::Reply)
        );
    }

    #[test]
    fn unknown_port_is_no_route() {
        assert_eq!(
            run(&ns(peer(), lb(), &sll(PEER_MAC)), 7).0,
            Err(DropReason::NoRoute)
        );
    }
}
