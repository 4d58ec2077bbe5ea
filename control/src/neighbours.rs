//! The neighbour table of the control plane: which next hops the dataplane needs, their MACs,
//! requests to send (ARP for IPv4, Neighbour Solicitations for IPv6), refresh and expiry. Pure
//! state: the daemon feeds it time, learned replies and the wanted set, and transmits the
//! requests it asks for. The table is family-agnostic; only the request frames differ.

use crate::config::NeighbourTimers;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use vipd_dataplane::wire::{arp, ethernet, ipv6, ndisc, MacAddr};

/// State of one neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighbourState {
    /// From the configuration; never expires.
    Static,
    /// Wanted, no reply yet.
    Incomplete,
    /// Learned from a reply.
    Reachable,
}

/// One neighbour entry.
#[derive(Clone, Debug)]
pub struct Neighbour {
    /// Port it is reached on.
    pub port: u16,
    /// MAC, when known.
    pub mac: Option<MacAddr>,
    /// State.
    pub state: NeighbourState,
    /// When it was last confirmed by a reply.
    pub confirmed: Option<Instant>,
    last_request: Option<Instant>,
    /// Requests sent without a reply since the last confirmation.
    pub unanswered: u32,
    /// Asked for by the dataplane (a NAT reply to an on-link client), not by the
    /// configuration: kept across `set_wanted`, forgotten when it stops answering.
    pub on_demand: bool,
}

/// At most this many on-demand entries: the dataplane asks for on-link clients it must send
/// to, and a burst of replies to many clients must not grow the table without bound.
pub const ON_DEMAND_MAX: usize = 4096;

/// A request (ARP or Neighbour Solicitation) the daemon must send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Port to send it on.
    pub port: u16,
    /// Address asked for.
    pub target: IpAddr,
}

/// The table.
#[derive(Debug)]
pub struct NeighbourTable {
    entries: HashMap<IpAddr, Neighbour>,
    timers: NeighbourTimers,
}

impl NeighbourTable {
    /// An empty table.
    pub fn new(timers: NeighbourTimers) -> Self {
        NeighbourTable {
            entries: HashMap::new(),
            timers,
        }
    }

    /// Replace the timers (reload).
    pub fn set_timers(&mut self, timers: NeighbourTimers) {
        self.timers = timers;
    }

    /// Make exactly these next hops wanted (static entries are kept regardless): new ones start
    /// incomplete, ones no longer wanted are forgotten. `statics` are configured entries.
    pub fn set_wanted(&mut self, wanted: &[(IpAddr, u16)], statics: &[(IpAddr, MacAddr, u16)]) {
        self.entries.retain(|ip, n| {
            n.state != NeighbourState::Static
                && (n.on_demand || wanted.iter().any(|(w, _)| w == ip))
        });
        for &(ip, mac, port) in statics {
            self.entries.insert(
                ip,
                Neighbour {
                    port,
                    mac: Some(mac),
                    state: NeighbourState::Static,
                    confirmed: None,
                    last_request: None,
                    unanswered: 0,
                    on_demand: false,
                },
            );
        }
        for &(ip, port) in wanted {
            let n = self.entries.entry(ip).or_insert(Neighbour {
                port,
                mac: None,
                state: NeighbourState::Incomplete,
                confirmed: None,
                last_request: None,
                unanswered: 0,
                on_demand: false,
            });
            // Wanted by the configuration now: no longer forgotten as on-demand entries are.
            n.on_demand = false;
        }
    }

    /// The dataplane must send to `ip` on `port` (an on-link NAT client) and has no MAC for
    /// it: resolve it like a configured next hop (the request goes out on the next `poll`).
    /// Returns false when it is already known or wanted, or the on-demand entries are at
    /// [`ON_DEMAND_MAX`].
    pub fn want_on_demand(&mut self, ip: IpAddr, port: u16) -> bool {
        if self.entries.contains_key(&ip)
            || self.entries.values().filter(|n| n.on_demand).count() >= ON_DEMAND_MAX
        {
            return false;
        }
        self.entries.insert(
            ip,
            Neighbour {
                port,
                mac: None,
                state: NeighbourState::Incomplete,
                confirmed: None,
                last_request: None,
                unanswered: 0,
                on_demand: true,
            },
        );
        true
    }

    /// A reply (ARP reply, gratuitous ARP or Neighbour Advertisement) said `ip` is at `mac`.
    /// Returns true when the MAC the dataplane uses changed (a gratuitous ARP or an unsolicited
    /// advertisement moves a reachable neighbour at once). Addresses nobody wants are ignored
    /// (no table growth from unsolicited traffic).
    pub fn learn(&mut self, ip: IpAddr, mac: MacAddr, now: Instant) -> bool {
        let Some(n) = self.entries.get_mut(&ip) else {
            return false;
        };
        if n.state == NeighbourState::Static || mac.is_multicast() || mac == MacAddr::ZERO {
            return false;
        }
        let changed = n.mac != Some(mac);
        n.mac = Some(mac);
        n.state = NeighbourState::Reachable;
        n.confirmed = Some(now);
        n.unanswered = 0;
        changed
    }

    /// Advance time: returns the requests to send now, and whether a MAC was dropped (expired),
    /// which changes the dataplane's view.
    pub fn poll(&mut self, now: Instant) -> (Vec<Request>, bool) {
        let retry = Duration::from_secs(u64::from(self.timers.retry));
        let refresh = Duration::from_secs(u64::from(self.timers.refresh));
        let expire = Duration::from_secs(u64::from(self.timers.expire));
        let mut requests = Vec::new();
        let mut changed = false;
        for (ip, n) in self.entries.iter_mut() {
            let due = n
                .last_request
                .is_none_or(|t| now.duration_since(t) >= retry);
            match n.state {
                NeighbourState::Static => {}
                NeighbourState::Incomplete => {
                    if due {
                        requests.push(Request {
                            port: n.port,
                            target: *ip,
                        });
                        n.last_request = Some(now);
                        n.unanswered = n.unanswered.saturating_add(1);
                    }
                }
                NeighbourState::Reachable => {
                    let age = n.confirmed.map_or(expire, |c| now.duration_since(c));
                    if age >= expire {
                        n.mac = None;
                        n.state = NeighbourState::Incomplete;
                        changed = true;
                        requests.push(Request {
                            port: n.port,
                            target: *ip,
                        });
                        n.last_request = Some(now);
                    } else if age >= refresh && due {
                        requests.push(Request {
                            port: n.port,
                            target: *ip,
                        });
                        n.last_request = Some(now);
                        n.unanswered = n.unanswered.saturating_add(1);
                    }
                }
            }
        }
        // On-demand entries that never answered, or stopped answering, are forgotten: the
        // dataplane asks again when it has something to send.
        let gone_after = u32::try_from(expire.as_secs() / retry.as_secs().max(1))
            .unwrap_or(u32::MAX)
            .max(1);
        self.entries.retain(|_, n| {
            !(n.on_demand && n.state == NeighbourState::Incomplete && n.unanswered > gone_after)
        });
        (requests, changed)
    }

    /// The resolved MACs, for the snapshot.
    pub fn resolved(&self) -> HashMap<IpAddr, MacAddr> {
        self.entries
            .iter()
            .filter_map(|(ip, n)| n.mac.map(|m| (*ip, m)))
            .collect()
    }

    /// All entries (status, metrics).
    pub fn entries(&self) -> impl Iterator<Item = (&IpAddr, &Neighbour)> {
        self.entries.iter()
    }
}

/// An Ethernet broadcast ARP request frame (60 bytes, padded to the Ethernet minimum).
pub fn arp_request_frame(our_mac: MacAddr, our_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&ethernet::ethertype::ARP.to_be_bytes());
    arp::emit(
        &mut f[14..],
        arp::op::REQUEST,
        our_mac,
        our_ip,
        MacAddr::ZERO,
        target,
    );
    f
}

/// Length of [`ns_frame`]: Ethernet (14) + IPv6 (40) + solicitation with its Source
/// Link-Layer option (32).
pub const NS_FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + 32;

/// A multicast Neighbour Solicitation (RFC 4861) for `target`, from `our_ip`/`our_mac`: to the
/// target's solicited-node address ff02::1:ffXX:XXXX (Ethernet 33:33:ff:XX:XX:XX), hop limit
/// 255, with a Source Link-Layer Address option so the answer can come straight back.
pub fn ns_frame(our_mac: MacAddr, our_ip: Ipv6Addr, target: Ipv6Addr) -> [u8; NS_FRAME_LEN] {
    let mut f = [0u8; NS_FRAME_LEN];
    let group = ndisc::solicited_node(target);
    f[0..6].copy_from_slice(&ndisc::multicast_mac(group).0);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&ethernet::ethertype::IPV6.to_be_bytes());
    let ip = &mut f[ethernet::HEADER_LEN..];
    let msg_len = ndisc::message_len(true);
    ipv6::emit_header(
        ip,
        0,
        0,
        msg_len as u16,
        ipv6::NEXT_HEADER_ICMPV6,
        255,
        our_ip,
        group,
    );
    // The buffer is sized for the message: emit_ns cannot fail here.
    let _ = ndisc::emit_ns(
        &mut ip[ipv6::HEADER_LEN..],
        &our_ip,
        &group,
        &target,
        Some(our_mac),
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> NeighbourTimers {
        NeighbourTimers {
            retry: 1,
            refresh: 10,
            expire: 30,
        }
    }

    #[test]
    fn resolve_refresh_expire() {
        let gw: IpAddr = "10.0.0.1".parse().unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let mut t = NeighbourTable::new(timers());
        let t0 = Instant::now();
        t.set_wanted(&[(gw, 0)], &[]);
        assert_eq!(
            t.poll(t0).0,
            vec![Request {
                port: 0,
                target: gw
            }]
        );
        assert!(
            t.poll(t0 + Duration::from_millis(500)).0.is_empty(),
            "retry interval"
        );
        assert_eq!(t.poll(t0 + Duration::from_secs(1)).0.len(), 1);
        assert!(t.resolved().is_empty());
        assert!(t.learn(gw, mac, t0 + Duration::from_secs(2)));
        assert!(
            !t.learn(gw, mac, t0 + Duration::from_secs(2)),
            "same MAC: no change"
        );
        assert_eq!(t.resolved().get(&gw), Some(&mac));
        assert!(t.poll(t0 + Duration::from_secs(5)).0.is_empty());
        let (req, changed) = t.poll(t0 + Duration::from_secs(13));
        assert_eq!(req.len(), 1, "refresh request");
        assert!(!changed, "still usable while refreshing");
        let (_, changed) = t.poll(t0 + Duration::from_secs(40));
        assert!(changed, "expired without reply");
        assert!(t.resolved().is_empty());
    }

    #[test]
    fn gratuitous_arp_moves_a_reachable_neighbour_at_once() {
        let mut t = NeighbourTable::new(timers());
        let gw: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        t.set_wanted(&[(gw, 0)], &[]);
        assert!(t.learn(gw, MacAddr([2, 0, 0, 0, 0, 1]), t0));
        // A replaced host announces its new MAC before any refresh is due.
        let new = MacAddr([2, 0, 0, 0, 0, 0x77]);
        assert!(t.learn(gw, new, t0 + Duration::from_secs(1)), "changed");
        assert_eq!(t.resolved().get(&gw), Some(&new));
        assert!(
            !t.learn(gw, MacAddr::BROADCAST, t0 + Duration::from_secs(2)),
            "a multicast MAC is never learned"
        );
    }

    #[test]
    fn on_demand_clients_are_resolved_kept_and_forgotten() {
        let mut t = NeighbourTable::new(timers());
        let client: IpAddr = "10.0.0.77".parse().unwrap();
        let gw: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        t.set_wanted(&[(gw, 0)], &[]);
        assert!(t.want_on_demand(client, 0));
        assert!(!t.want_on_demand(client, 0), "asked once");
        assert!(!t.want_on_demand(gw, 0), "already wanted");
        let (req, _) = t.poll(t0);
        assert!(req.contains(&Request {
            port: 0,
            target: client
        }));
        let mac = MacAddr([2, 0, 0, 0, 0, 0x77]);
        assert!(t.learn(client, mac, t0 + Duration::from_millis(10)));
        assert_eq!(t.resolved().get(&client), Some(&mac));
        // A reload recomputes the configured next hops: the client stays.
        t.set_wanted(&[(gw, 0)], &[]);
        assert_eq!(t.resolved().get(&client), Some(&mac));
        // It stops answering: expired, then forgotten once its requests go unanswered.
        let (_, changed) = t.poll(t0 + Duration::from_secs(31));
        assert!(changed);
        for s in 32..80 {
            t.poll(t0 + Duration::from_secs(s));
        }
        assert!(t.entries().all(|(ip, _)| *ip != client), "forgotten");
        // Bounded.
        for i in 0..ON_DEMAND_MAX as u32 + 10 {
            t.want_on_demand(IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000 + i)), 0);
        }
        assert_eq!(
            t.entries().filter(|(_, n)| n.on_demand).count(),
            ON_DEMAND_MAX
        );
    }

    #[test]
    fn statics_and_unwanted() {
        let mut t = NeighbourTable::new(timers());
        let a: IpAddr = "10.0.0.5".parse().unwrap();
        let s: IpAddr = "10.0.0.6".parse().unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 6]);
        t.set_wanted(&[], &[(s, mac, 0)]);
        assert!(
            !t.learn(a, MacAddr([2, 0, 0, 0, 0, 5]), Instant::now()),
            "unwanted ignored"
        );
        assert!(
            !t.learn(s, MacAddr([2, 0, 0, 0, 0, 7]), Instant::now()),
            "static wins"
        );
        assert_eq!(t.resolved().get(&s), Some(&mac));
        assert!(t.poll(Instant::now()).0.is_empty());
        t.set_wanted(&[(a, 0)], &[(s, mac, 0)]);
        t.set_wanted(&[], &[(s, mac, 0)]);
        assert_eq!(t.entries().count(), 1, "no longer wanted is forgotten");
    }

    #[test]
    fn request_frame_parses() {
        let f = arp_request_frame(
            MacAddr([2, 0, 0, 0, 0, 10]),
            Ipv4Addr::new(10, 0, 0, 10),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        let a = arp::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), arp::op::REQUEST);
        assert_eq!(a.target_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(&f[0..6], &[0xff; 6]);
    }

    #[test]
    fn ns_frame_parses_with_etherparse() {
        use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
        let our_mac = MacAddr([2, 0, 0, 0, 0, 10]);
        let our_ip: Ipv6Addr = "fd00::10".parse().unwrap();
        let target: Ipv6Addr = "fd00::12:3456".parse().unwrap();
        let f = ns_frame(our_mac, our_ip, target);
        assert_eq!(f.len(), 86);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II");
        };
        assert_eq!(e.destination(), [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]);
        assert_eq!(e.source(), our_mac.0);
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6");
        };
        let h = ip.header();
        assert_eq!(Ipv6Addr::from(h.source()), our_ip);
        assert_eq!(
            Ipv6Addr::from(h.destination()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(h.hop_limit(), 255);
        assert_eq!(h.payload_length(), 32);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6");
        };
        assert!(icmp.is_checksum_valid(h.source(), h.destination()));
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                bytes5to8: [0, 0, 0, 0]
            }
        ));
        assert_eq!(&icmp.payload()[..16], &target.octets());
        assert_eq!(&icmp.payload()[16..], &[1, 1, 2, 0, 0, 0, 0, 10]);
    }
}
