use super::*;
use etherparse::{Icmpv6Type, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use vipd_dataplane::snapshot::VlanOf;

const MAC: MacAddr = MacAddr([0x02, 0x77, 0, 0, 0, 0x0a]);

#[test]
fn a_gratuitous_arp_is_a_broadcast_request_from_and_for_its_address() {
    let ip = Ipv4Addr::new(10, 77, 100, 1);
    let f = gratuitous_arp_frame(MAC, ip);
    // etherparse 0.16 reads the Ethernet header; it has no ARP parser, so the ARP body is
    // checked against RFC 826's layout byte for byte.
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(LinkSlice::Ethernet2(e)) = &p.link else {
        panic!("not Ethernet II");
    };
    assert_eq!(e.destination(), [0xff; 6]);
    assert_eq!(e.source(), MAC.0);
    assert_eq!(e.ether_type(), etherparse::EtherType::ARP);
    #[rustfmt::skip]
    let body: [u8; 28] = [
        0, 1, 0x08, 0, 6, 4, // Ethernet, IPv4, address lengths
        0, 1, // request
        0x02, 0x77, 0, 0, 0, 0x0a, 10, 77, 100, 1, // sender: our MAC, the address
        0, 0, 0, 0, 0, 0, 10, 77, 100, 1, // target: no MAC, the same address
    ];
    assert_eq!(&f[14..42], &body);
    assert_eq!(&f[42..], &[0; 18], "padded to the Ethernet minimum");
}

#[test]
fn an_unsolicited_na_overrides_and_carries_the_target_mac() {
    let ip: Ipv6Addr = "fd00:77:100::1".parse().unwrap();
    let f = unsolicited_na_frame(MAC, ip);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(LinkSlice::Ethernet2(e)) = &p.link else {
        panic!("not Ethernet II");
    };
    assert_eq!(e.destination(), [0x33, 0x33, 0, 0, 0, 1], "all nodes");
    assert_eq!(e.source(), MAC.0);
    let Some(NetSlice::Ipv6(v6)) = &p.net else {
        panic!("not IPv6");
    };
    let h = v6.header();
    assert_eq!(Ipv6Addr::from(h.source()), ip);
    assert_eq!(Ipv6Addr::from(h.destination()), ndisc::ALL_NODES);
    assert_eq!(h.hop_limit(), 255);
    assert_eq!(h.payload_length(), 32);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6");
    };
    // etherparse computes the checksum itself over the pseudo-header and the message.
    assert!(icmp.is_checksum_valid(h.source(), h.destination()));
    let Icmpv6Type::Unknown {
        type_u8,
        code_u8,
        bytes5to8,
    } = icmp.icmp_type()
    else {
        panic!("{:?}", icmp.icmp_type());
    };
    assert_eq!((type_u8, code_u8), (136, 0), "neighbour advertisement");
    assert_eq!(
        bytes5to8,
        [0x20, 0, 0, 0],
        "Override only (not Solicited, not Router)"
    );
    assert_eq!(&icmp.payload()[..16], &ip.octets());
    assert_eq!(&icmp.payload()[16..], &[2, 1, 0x02, 0x77, 0, 0, 0, 0x0a]);
}

fn port(v4: Option<&str>, v6: Option<&str>, vlan: Option<VlanOf>) -> PortInfo {
    PortInfo {
        mac: MAC,
        ipv4: v4.map(|s| s.parse().unwrap()),
        ipv6: v6.map(|s| s.parse().unwrap()),
        vlan,
        ..PortInfo::default()
    }
}

#[test]
fn the_bond_and_its_vlans_announce_their_addresses_and_the_vips() {
    let ports = [
        port(Some("10.77.0.10/24"), Some("fd00:77::10/64"), None),
        port(Some("10.78.0.10/24"), None, None),
        // VLAN 20 of the bond (port 0), IPv4 only; VLAN 30 of port 1.
        port(
            Some("10.20.0.10/24"),
            None,
            Some(VlanOf { parent: 0, id: 20 }),
        ),
        port(
            Some("10.30.0.10/24"),
            None,
            Some(VlanOf { parent: 1, id: 30 }),
        ),
    ];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let vips = [ip("10.77.100.1"), ip("fd00:77:100::1"), ip("10.77.0.10")];
    assert_eq!(
        addresses(&ports, 0, &vips),
        vec![
            (0, ip("10.77.0.10")),
            (0, ip("fd00:77::10")),
            (0, ip("10.77.100.1")),
            (0, ip("fd00:77:100::1")),
            (2, ip("10.20.0.10")),
            (2, ip("10.77.100.1")),
            (2, ip("10.77.0.10")),
        ]
    );
    assert_eq!(
        addresses(&ports, 1, &vips[..1]),
        vec![
            (1, ip("10.78.0.10")),
            (1, ip("10.77.100.1")),
            (3, ip("10.30.0.10")),
            (3, ip("10.77.100.1")),
        ]
    );
}

#[test]
fn rounds_come_due_one_interval_apart_and_stop() {
    let mut a = Announcer::default();
    let t0 = Instant::now();
    a.switched(0, 3, t0);
    a.switched(1, 0, t0);
    assert_eq!(
        a.due(t0),
        vec![0],
        "the first round at once; 0 rounds: none"
    );
    assert!(a.due(t0 + ROUND_INTERVAL / 2).is_empty());
    assert_eq!(a.due(t0 + ROUND_INTERVAL), vec![0]);
    assert_eq!(a.due(t0 + ROUND_INTERVAL * 2), vec![0]);
    assert!(
        a.due(t0 + ROUND_INTERVAL * 10).is_empty(),
        "three rounds only"
    );
    // A second failover while rounds are pending starts over.
    a.switched(0, 2, t0);
    assert_eq!(a.due(t0), vec![0]);
    a.switched(0, 2, t0 + ROUND_INTERVAL);
    assert_eq!(a.due(t0 + ROUND_INTERVAL), vec![0]);
    assert_eq!(a.due(t0 + ROUND_INTERVAL * 2), vec![0]);
    assert!(a.due(t0 + ROUND_INTERVAL * 3).is_empty());
}
