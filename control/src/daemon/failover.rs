//! After a bond's failover: gratuitous ARP and unsolicited Neighbour Advertisements from the
//! bond, so the switch learns vipd's MAC on the new member's port at once (and neighbours
//! that cached it keep it). The frames go through the first worker like the control thread's
//! ARP requests; the bond sends them on its active member.

use super::control_loop::Control;
use crate::announce::{self, gratuitous_arp_frame, unsolicited_na_frame};
use std::net::IpAddr;
use std::time::Instant;
use vipd_dataplane::flow::key::from_mapped;
use vipd_dataplane::wire::MacAddr;

impl Control<'_> {
    /// Every address vipd answers ARP or ND for: the VIPs and full-NAT's local addresses (the
    /// interfaces' own addresses come from the ports).
    fn answered_addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for s in &self.running.valid.services {
            let local = s.local_pool.addrs.iter().map(from_mapped);
            for ip in std::iter::once(s.key.vip).chain(local) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        out
    }

    /// Port `port`'s bond switched its active member at `now`: log what will be announced and
    /// start its rounds (the first goes out on this tick).
    pub(super) fn failed_over(&mut self, port: u16, now: Instant) {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return;
        };
        let rounds = p.gratuitous_arp;
        if rounds == 0 {
            tracing::info!(
                "port {}: bond: no gratuitous ARP (gratuitous_arp = 0)",
                p.name
            );
            return;
        }
        let list = announce::addresses(&self.running.valid.ports, port, &self.answered_addresses());
        let of = |v4: bool| {
            let mut v: Vec<String> = Vec::new();
            for (_, ip) in list.iter().filter(|(_, ip)| ip.is_ipv4() == v4) {
                let ip = ip.to_string();
                if !v.contains(&ip) {
                    v.push(ip);
                }
            }
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        tracing::info!(
            "port {}: bond: announcing vipd's MAC through the new member, {rounds} round(s) {} ms apart: gratuitous ARP for {}; unsolicited NA for {}",
            p.name,
            announce::ROUND_INTERVAL.as_millis(),
            of(true),
            of(false)
        );
        self.announcer.switched(port, rounds, now);
    }

    /// One round of port `port`'s announcements.
    pub(super) fn announce(&mut self, port: u16) {
        let list = announce::addresses(&self.running.valid.ports, port, &self.answered_addresses());
        let (mut arp, mut na, mut failed) = (0u64, 0u64, None);
        for (iface, ip) in list {
            let Some(info) = self.running.valid.ports.get(usize::from(iface)) else {
                continue;
            };
            let vlan = info.vlan;
            let Some(nic) = self.nic_macs.get(usize::from(port)).copied() else {
                return;
            };
            let mac = if info.mac == MacAddr::ZERO {
                nic
            } else {
                info.mac
            };
            let (garp, una);
            let frame: &[u8] = match ip {
                IpAddr::V4(a) => {
                    garp = gratuitous_arp_frame(mac, a);
                    &garp
                }
                IpAddr::V6(a) => {
                    una = unsolicited_na_frame(mac, a);
                    &una
                }
            };
            match self.transmit(port, vlan, frame) {
                Ok(()) if ip.is_ipv4() => arp += 1,
                Ok(()) => na += 1,
                Err(why) => failed = Some((ip, why)),
            }
        }
        let Some(p) = self.ports.get_mut(usize::from(port)) else {
            return;
        };
        p.gratuitous_arp_sent += arp;
        p.unsolicited_na_sent += na;
        if let Some((ip, why)) = failed {
            tracing::warn!(
                "port {}: bond: announcement for {ip} (and maybe others) not sent: {why}",
                p.name
            );
        }
    }
}
