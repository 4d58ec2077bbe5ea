//! The members of bonded ports (`[ports.bond]`): each member's link and frame counters, so a
//! failover shows as one member's link going down and the other's counters rising; for an
//! 802.3ad bond also whether LACP has the member in the aggregation.

use super::{counter, gauge, label, Families, PortGauges};
use vipd_dataplane::io::dpdk::{LacpState, PortStats};

/// `vipd_bond_member_*`, labelled with the port and the member's device name.
pub(super) fn member_families(ports: &[PortGauges], f: &mut Families) {
    let labels = |p: &PortGauges, m: &str| vec![label("port", &p.name), label("member", m)];
    f.gauge(
        "vipd_bond_member_link_up",
        "1 when the link of a bonded port's member is up.",
        ports
            .iter()
            .flat_map(|p| {
                p.members
                    .iter()
                    .map(move |m| gauge(labels(p, &m.name), f64::from(u8::from(m.link_up))))
            })
            .collect(),
    );
    let lacp: [(&str, &str, u8); 3] = [
        (
            "vipd_bond_member_lacp_collecting",
            "1 when an 802.3ad bond takes the frames its member receives (LACP collecting).",
            LacpState::COLLECTING,
        ),
        (
            "vipd_bond_member_lacp_distributing",
            "1 when an 802.3ad bond sends on its member (LACP distributing).",
            LacpState::DISTRIBUTING,
        ),
        (
            "vipd_bond_member_lacp_defaulted",
            "1 when no LACPDU came from a partner on an 802.3ad bond's member.",
            LacpState::DEFAULTED,
        ),
    ];
    for (name, help, bit) in lacp {
        f.gauge(
            name,
            help,
            ports
                .iter()
                .flat_map(|p| {
                    p.members.iter().filter_map(move |m| {
                        m.lacp
                            .map(|s| gauge(labels(p, &m.name), f64::from(u8::from(s.has(bit)))))
                    })
                })
                .collect(),
        );
    }
    type Get = fn(&PortStats) -> u64;
    let families: [(&str, &str, Get); 2] = [
        (
            "vipd_bond_member_rx_packets_total",
            "Frames a bonded port's member received.",
            |s| s.rx_packets,
        ),
        (
            "vipd_bond_member_tx_packets_total",
            "Frames a bonded port's member sent.",
            |s| s.tx_packets,
        ),
    ];
    let bonds = || ports.iter().filter(|p| !p.members.is_empty());
    f.counter(
        "vipd_bond_gratuitous_arp_sent_total",
        "Gratuitous ARPs a bonded port sent after its active member changed.",
        bonds()
            .map(|p| counter(vec![label("port", &p.name)], p.announced.0))
            .collect(),
    );
    f.counter(
        "vipd_bond_unsolicited_na_sent_total",
        "Unsolicited Neighbour Advertisements a bonded port sent after its active member changed.",
        bonds()
            .map(|p| counter(vec![label("port", &p.name)], p.announced.1))
            .collect(),
    );
    for (name, help, get) in families {
        f.counter(
            name,
            help,
            ports
                .iter()
                .flat_map(|p| {
                    p.members.iter().filter_map(move |m| {
                        m.stats
                            .as_ref()
                            .map(|s| counter(labels(p, &m.name), get(s)))
                    })
                })
                .collect(),
        );
    }
}
