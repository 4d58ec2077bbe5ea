//! Announcements after a bond's failover: an active-backup bond keeps one MAC, so the switch
//! still sends to the dead member's port until a frame comes from the new one. Like Linux
//! bonding (`num_grat_arp`, `num_unsol_na`) and keepalived, vipd then sends a gratuitous ARP
//! for each IPv4 address it answers ARP for and an unsolicited Neighbour Advertisement for
//! each IPv6 address it answers ND for, a few rounds apart. Pure: the frames, which addresses
//! go on which interface, and when a round is due; the control loop sends them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use vipd_dataplane::snapshot::PortInfo;
use vipd_dataplane::wire::{arp, ethernet, ipv6, ndisc, MacAddr};

/// Time between two rounds of one failover's announcements.
pub const ROUND_INTERVAL: Duration = Duration::from_millis(200);

/// `[ports.bond] gratuitous_arp` when the file has none.
pub const DEFAULT_ROUNDS: u32 = 3;

/// The most rounds `gratuitous_arp` may ask for.
pub const MAX_ROUNDS: u32 = 16;

/// A gratuitous ARP (RFC 5227's announcement): a broadcast request whose sender and target
/// are both `ip`, at `mac`, padded to the Ethernet minimum.
pub fn gratuitous_arp_frame(mac: MacAddr, ip: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&ethernet::ethertype::ARP.to_be_bytes());
    arp::emit(
        &mut f[ethernet::HEADER_LEN..],
        arp::op::REQUEST,
        mac,
        ip,
        MacAddr::ZERO,
        ip,
    );
    f
}

/// Length of [`unsolicited_na_frame`]: Ethernet (14) + IPv6 (40) + advertisement with its
/// Target Link-Layer option (32).
pub const NA_FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 32;

/// An unsolicited Neighbour Advertisement (RFC 4861 7.2.6) for `ip` at `mac`: from `ip` to
/// all nodes (ff02::1), hop limit 255, Override set (the receiver replaces the MAC it has),
/// Solicited clear, with a Target Link-Layer Address option.
pub fn unsolicited_na_frame(mac: MacAddr, ip: Ipv6Addr) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ndisc::multicast_mac(ndisc::ALL_NODES).0);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&ethernet::ethertype::IPV6.to_be_bytes());
    let l3 = &mut f[ethernet::HEADER_LEN..];
    ipv6::emit_header(
        l3,
        0,
        0,
        ndisc::message_len(true) as u16,
        ipv6::NEXT_HEADER_ICMPV6,
        255,
        ip,
        ndisc::ALL_NODES,
    );
    // The buffer is sized for the message: emit_na cannot fail here.
    let _ = ndisc::emit_na(
        &mut l3[ipv6::HEADER_LEN..],
        &ip,
        &ndisc::ALL_NODES,
        ndisc::flags::OVERRIDE,
        &ip,
        Some(mac),
    );
    f
}

/// What to announce on bonded port `bond`: (interface index in `ports`, address) for the
/// port itself and each of its VLANs. On each such interface: its own addresses, and every
/// VIP (and full-NAT local address) of a family the interface has an address of, since the
/// dataplane answers ARP and ND for those on every interface.
pub fn addresses(ports: &[PortInfo], bond: u16, vips: &[IpAddr]) -> Vec<(u16, IpAddr)> {
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let Ok(iface) = u16::try_from(i) else {
            break;
        };
        if iface != bond && p.vlan.is_none_or(|v| v.parent != bond) {
            continue;
        }
        let own = [
            p.ipv4.map(|n| IpAddr::V4(n.addr())),
            p.ipv6.map(|n| IpAddr::V6(n.addr())),
        ];
        for ip in own.into_iter().flatten() {
            out.push((iface, ip));
        }
        for vip in vips {
            let speaks = match vip {
                IpAddr::V4(_) => p.ipv4.is_some(),
                IpAddr::V6(_) => p.ipv6.is_some(),
            };
            if speaks && !out.contains(&(iface, *vip)) {
                out.push((iface, *vip));
            }
        }
    }
    out
}

/// Failovers whose announcements are not all sent yet.
#[derive(Debug, Default)]
pub struct Announcer {
    pending: Vec<Pending>,
}

#[derive(Debug)]
struct Pending {
    port: u16,
    left: u32,
    next: Instant,
}

impl Announcer {
    /// Port `port` switched its active member at `now`: `rounds` rounds are due, the first at
    /// once (a failover before the last one's rounds are done starts over).
    pub fn switched(&mut self, port: u16, rounds: u32, now: Instant) {
        self.pending.retain(|p| p.port != port);
        if rounds > 0 {
            self.pending.push(Pending {
                port,
                left: rounds,
                next: now,
            });
        }
    }

    /// The ports whose next round is due at `now` (each counted as sent).
    pub fn due(&mut self, now: Instant) -> Vec<u16> {
        let mut ports = Vec::new();
        for p in self.pending.iter_mut().filter(|p| p.next <= now) {
            ports.push(p.port);
            p.left -= 1;
            p.next = now + ROUND_INTERVAL;
        }
        self.pending.retain(|p| p.left > 0);
        ports
    }
}

#[cfg(test)]
mod tests;
