//! What the control thread learns from the frames the workers hand it: the sender of an ARP
//! reply, the target of a Neighbour Advertisement (the dataplane validated it, RFC 4861).

use std::net::IpAddr;
use vipd_dataplane::wire::{arp, ethernet, ipv6, ndisc, MacAddr};

/// The (address, MAC) a frame teaches, if any.
pub fn neighbour_of(frame: &[u8]) -> Option<(IpAddr, MacAddr)> {
    let eth = ethernet::EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        ethernet::ethertype::ARP => {
            let a = arp::ArpPacket::new_checked(eth.payload()).ok()?;
            Some((IpAddr::V4(a.sender_ip()), a.sender_mac()))
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != ipv6::NEXT_HEADER_ICMPV6 {
                return None;
            }
            let na = ndisc::NdiscPacket::new_checked(ip.payload()).ok()?;
            if na.msg_type() != ndisc::NEIGHBOR_ADVERT {
                return None;
            }
            let mac = na.target_ll_addr().unwrap_or_else(|| eth.src());
            // Never a neighbour (the dataplane drops such advertisements too): an IPv4-mapped
            // target would stand for the IPv4 host in the snapshot's neighbour table.
            let target = na.target();
            if target.to_ipv4_mapped().is_some() {
                return None;
            }
            Some((IpAddr::V6(target), mac))
        }
        _ => None,
    }
}

/// The destination a worker could not resolve, when the frame is an IP packet rather than
/// ARP or Neighbour Discovery: a NAT reply to an on-link client whose MAC vipd does not know
/// (the worker hands it over instead of dropping it silently, and the client is resolved on
/// demand).
pub fn unresolved_destination(frame: &[u8]) -> Option<IpAddr> {
    let eth = ethernet::EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = vipd_dataplane::wire::ipv4::Ipv4Packet::new_checked(eth.payload()).ok()?;
            Some(IpAddr::V4(ip.dst()))
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Ipv6Packet::new_checked(eth.payload()).ok()?;
            let nd = ip.next_header() == ipv6::NEXT_HEADER_ICMPV6
                && ndisc::NdiscPacket::new_checked(ip.payload()).is_ok();
            (!nd).then(|| IpAddr::V6(ip.dst()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    /// A neighbour advertisement for `target` with a Target Link-Layer option.
    fn na(target: Ipv6Addr) -> Vec<u8> {
        let mac = [0x02, 0, 0, 0, 0, 0x21];
        let mut payload = target.octets().to_vec();
        payload.extend_from_slice(&[2, 1]);
        payload.extend_from_slice(&mac);
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2(mac, [0x02, 0, 0, 0, 0, 0x10])
            .ipv6(
                "fd00::21".parse::<Ipv6Addr>().unwrap().octets(),
                "fd00::10".parse::<Ipv6Addr>().unwrap().octets(),
                255,
            )
            .icmpv6_raw(136, 0, [0x60, 0, 0, 0])
            .write(&mut out, &payload)
            .unwrap();
        out
    }

    #[test]
    fn advertisements_teach_their_target_but_never_a_mapped_one() {
        let rs: Ipv6Addr = "fd00::21".parse().unwrap();
        assert_eq!(
            neighbour_of(&na(rs)),
            Some((IpAddr::V6(rs), MacAddr([0x02, 0, 0, 0, 0, 0x21])))
        );
        let mapped = std::net::Ipv4Addr::new(10, 0, 0, 21).to_ipv6_mapped();
        assert_eq!(neighbour_of(&na(mapped)), None);
    }
}
