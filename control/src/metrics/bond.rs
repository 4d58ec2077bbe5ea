//! The members of bonded ports (`[ports.bond]`): each member's link and frame counters, so a
//! failover shows as one member's link going down and the other's counters rising.

use super::{counter, gauge, label, Families, PortGauges};
use vipd_dataplane::io::dpdk::PortStats;

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
                    .map(move |(m, up, _)| gauge(labels(p, m), f64::from(u8::from(*up))))
            })
            .collect(),
    );
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
                    p.members.iter().filter_map(move |(m, _, s)| {
                        s.as_ref().map(|s| counter(labels(p, m), get(s)))
                    })
                })
                .collect(),
        );
    }
}
