//! What vipd answers itself: ARP for its addresses and VIPs, ICMP echo.

use super::{set_macs, Action, Pkt, Verdict, WorkerState, OWN_TTL};
use crate::counters::{Counter, DropReason};
use crate::flow::key::{from_mapped, to_mapped};
use crate::io::PacketBuf;
use crate::snapshot::Snapshot;
use crate::wire::addr;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::MacAddr;
use std::net::IpAddr;

/// ARP: requests for a port address or a VIP are answered in place; replies to us go to the
/// control thread (resolution); any ARP that tells a known neighbour's new MAC (gratuitous
/// ARP from a replaced host, a failover) goes there too, so the snapshot follows at once.
pub(super) fn arp(
    frame: &mut [u8],
    l2: usize,
    rx_port: u16,
    our_mac: MacAddr,
    w: &WorkerState,
    snap: &Snapshot,
) -> Verdict {
    let a = ArpPacket::new_checked(&frame[l2..]).map_err(|_| DropReason::ArpIgnored)?;
    let (sender_mac, sender_ip, target_ip) = (a.sender_mac(), a.sender_ip(), a.target_ip());
    // A probe (RFC 5227) comes from 0.0.0.0 and is answered; any other sender must be an
    // address a host may use, with a unicast MAC, and not ours.
    let probe = sender_ip.is_unspecified();
    if sender_mac.is_multicast()
        || sender_mac == MacAddr::ZERO
        || (!probe && !addr::is_unicast_source_v4(sender_ip.octets()))
        || snap.is_local(&IpAddr::V4(sender_ip))
    {
        return Err(DropReason::ArpInvalid);
    }
    let target = IpAddr::V4(target_ip);
    match a.operation() {
        arp::op::REQUEST
            if snap.is_local(&target)
                || snap.is_vip(&to_mapped(target))
                || snap.is_fnat_local(&to_mapped(target)) =>
        {
            arp::emit(
                &mut frame[l2..],
                arp::op::REPLY,
                our_mac,
                target_ip,
                sender_mac,
                sender_ip,
            );
            set_macs(frame, our_mac, sender_mac);
            w.counters.inc(Counter::ArpReplies);
            Ok(Action::Tx(rx_port))
        }
        arp::op::REPLY if snap.is_local(&target) => Ok(Action::ToControl),
        arp::op::REQUEST | arp::op::REPLY
            if !probe
                && snap
                    .neighbour(&IpAddr::V4(sender_ip))
                    .is_some_and(|known| known != sender_mac) =>
        {
            Ok(Action::ToControl)
        }
        _ => Err(DropReason::ArpIgnored),
    }
}

/// An ICMP echo request to a port address or a VIP, answered in place (checksum verified by
/// the caller; the source is unicast, checked for every packet).
pub(super) fn echo<B: PacketBuf>(
    buf: &mut B,
    pkt: &Pkt,
    rx_port: u16,
    w: &WorkerState,
    snap: &Snapshot,
) -> Verdict {
    let port = snap
        .ports
        .get(usize::from(rx_port))
        .ok_or(DropReason::NoRoute)?;
    if pkt.len > usize::from(port.mtu) {
        // A request larger than the port sends (it took a jumbo frame to come in): its reply
        // would be too, and vipd does not fragment.
        return Err(DropReason::TooBig);
    }
    let (src, dst) = (from_mapped(&pkt.key.src), from_mapped(&pkt.key.dst));
    let frame = buf.data_mut();
    let l3 = frame.get_mut(pkt.l2..).ok_or(DropReason::EthMalformed)?;
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip =
                Ipv4Packet::new_checked(&mut *l3).map_err(|_| DropReason::Ipv4Malformed)?;
            ip.set_src(dst);
            ip.set_dst(src);
            ip.set_ttl(OWN_TTL);
            ip.fill_checksum();
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut ip =
                Ipv6Packet::new_checked(&mut *l3).map_err(|_| DropReason::Ipv6Malformed)?;
            ip.set_src(dst);
            ip.set_dst(src);
            ip.set_hop_limit(OWN_TTL);
            // Swapping the addresses leaves the pseudo-header sum unchanged.
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    }
    let reply = if pkt.v4 {
        icmp::v4::ECHO_REPLY
    } else {
        icmp::v6::ECHO_REPLY
    };
    let msg = frame
        .get_mut(pkt.l4_range())
        .ok_or(DropReason::L4Malformed)?;
    IcmpPacket::new_checked(msg)
        .map_err(|_| DropReason::L4Malformed)?
        .set_type_incremental(reply);
    // Echo replies go back where the request came from: to its source MAC on the same port.
    let requester = MacAddr([frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]]);
    set_macs(frame, port.mac, requester);
    w.counters.inc(Counter::EchoReplies);
    Ok(Action::Tx(rx_port))
}
