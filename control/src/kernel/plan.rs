//! What a port's kernel interface should look like, computed from the configuration alone
//! (pure, tested without a kernel): the tap's device arguments, the IPv6 settings that keep
//! the kernel from fighting vipd over Neighbour Discovery, the addresses, and the host routes
//! the health checks need.

use crate::config::Config;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use vipd_dataplane::snapshot::{route, PortInfo};
use vipd_dataplane::wire::MacAddr;

/// DPDK device name prefix of the taps vipd creates: `net_tap_kernel<port index>`. net_tap
/// finds its driver by the `net_tap` prefix; the suffix keeps them apart from a port the
/// operator configured on net_tap.
pub const TAP_VDEV_PREFIX: &str = "net_tap_kernel";

/// Descriptors of the tap's queues. net_tap keeps one mbuf per rx descriptor as the scatter
/// list of a single read, and writes tx synchronously: a handful is all it needs.
pub const TAP_DESCRIPTORS: u16 = 64;

/// One kernel interface the configuration asks for: a port's own, or a VLAN's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Its name.
    pub name: String,
    /// The interface (of the validated list: the ports, then their VLANs) whose addresses it
    /// carries, when it is created.
    pub iface: usize,
    /// The port it talks through (the configuration index, the DPDK port).
    pub port: usize,
    /// The VLAN's id, for a VLAN's kernel interface: vipd removes and adds its tag.
    pub vlan: Option<u16>,
}

/// Every kernel interface `ports` (the validated interfaces of `config`) asks for: the
/// ports' own in port order, then the VLANs', in the order of the interfaces.
pub fn planned(config: &Config, ports: &[PortInfo]) -> Vec<Planned> {
    ports
        .iter()
        .enumerate()
        .filter_map(|(i, info)| {
            let (port, vlan, name) = match info.vlan {
                None => (i, None, config.ports.get(i)?.kernel_interface.as_ref()?),
                Some(v) => {
                    let parent = config.ports.get(usize::from(v.parent))?;
                    let cfg = parent.vlans.iter().find(|c| c.id == v.id)?;
                    (
                        usize::from(v.parent),
                        Some(v.id),
                        cfg.kernel_interface.as_ref()?,
                    )
                }
            };
            Some(Planned {
                name: name.clone(),
                iface: i,
                port,
                vlan,
            })
        })
        .collect()
}

/// The index in `ports` of the interface of `port` (`vlan`: of that VLAN on it), if there is
/// one: a reload may move a VLAN's interface in the list, its kernel interface follows it.
pub fn interface_of(ports: &[PortInfo], port: usize, vlan: Option<u16>) -> Option<usize> {
    match vlan {
        None => (port < ports.len() && ports[port].vlan.is_none()).then_some(port),
        Some(id) => ports.iter().position(|p| {
            p.vlan
                .is_some_and(|v| usize::from(v.parent) == port && v.id == id)
        }),
    }
}

/// The `--vdev`/`rte_dev_probe` argument creating interface `iface`'s tap `name` with MAC
/// `mac` (`iface`, an index of the validated interfaces, keeps the DPDK names apart). DPDK gives the kernel side this MAC too (and restores it on every port start), so the
/// kernel's frames carry the port's MAC and the frames addressed to the port reach it.
pub fn vdev_args(iface: usize, name: &str, mac: MacAddr) -> String {
    format!("{TAP_VDEV_PREFIX}{iface},iface={name},mac={mac}")
}

/// The port's addresses as the kernel interface carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 address and on-link prefix.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address and on-link prefix.
    pub ipv6: Option<Ipv6Net>,
}

impl Addresses {
    /// The port's addresses.
    pub fn of(port: &PortInfo) -> Self {
        Addresses {
            ipv4: port.ipv4,
            ipv6: port.ipv6,
        }
    }

    /// Each address with its prefix length.
    pub fn list(&self) -> Vec<Prefixed> {
        let mut out = Vec::new();
        if let Some(n) = self.ipv4 {
            out.push((IpAddr::V4(n.addr()), n.prefix_len()));
        }
        if let Some(n) = self.ipv6 {
            out.push((IpAddr::V6(n.addr()), n.prefix_len()));
        }
        out
    }
}

/// An address with its prefix length.
pub type Prefixed = (IpAddr, u8);

/// The addresses to remove and to add to go from `old` to `new` (a changed prefix length is
/// a remove and an add).
pub fn address_changes(old: &Addresses, new: &Addresses) -> (Vec<Prefixed>, Vec<Prefixed>) {
    let (old, new) = (old.list(), new.list());
    let remove = old.iter().filter(|a| !new.contains(a)).copied().collect();
    let add = new.iter().filter(|a| !old.contains(a)).copied().collect();
    (remove, add)
}

/// The IPv6 sysctls of kernel interface `name`, written before its link comes up, in order.
///
/// With an IPv6 address on the port: no link-local address (`addr_gen_mode` 1), no
/// autoconfiguration, no router solicitations or advertisements taken, no duplicate address
/// detection. The kernel then speaks IPv6 only from the port's global address, which is the
/// address vipd answers Neighbour Solicitations for and hands Advertisements back to; a
/// link-local address would be one nobody answers for (vipd drops solicitations for it), and
/// its DAD, like the global address's, would fail against vipd's own answers.
///
/// Without one: IPv6 off on the interface, so the kernel sends nothing the port cannot own.
/// Written again when a reload gives the port an IPv6 address or takes it away.
pub fn ipv6_sysctls(name: &str, has_ipv6: bool) -> Vec<(PathBuf, &'static str)> {
    let dir = PathBuf::from("/proc/sys/net/ipv6/conf").join(name);
    let settings: &[(&str, &'static str)] = if has_ipv6 {
        &[
            ("addr_gen_mode", "1"),
            ("autoconf", "0"),
            ("accept_ra", "0"),
            ("router_solicitations", "0"),
            ("accept_dad", "0"),
            ("dad_transmits", "0"),
            // Last: IPv6 on (the box's default may be off) once the rest is in place.
            ("disable_ipv6", "0"),
        ]
    } else {
        &[("disable_ipv6", "1")]
    };
    settings.iter().map(|(k, v)| (dir.join(k), *v)).collect()
}

/// A host route the kernel interface carries: (destination, gateway).
pub type HostRoute = (IpAddr, IpAddr);

/// The host routes port `port`'s kernel interface needs: one per health-check target that
/// vipd reaches through this port's gateway (not on-link), so the box's checks leave through
/// the port vipd forwards on, whatever other routes (a management interface's default route)
/// the box has. On-link targets need none (the address's prefix route covers them); targets
/// vipd reaches through another port are that port's business.
pub fn host_routes(ports: &[PortInfo], port: usize, targets: &[IpAddr]) -> BTreeSet<HostRoute> {
    targets
        .iter()
        .filter_map(|t| {
            let r = route(ports, t)?;
            (usize::from(r.port) == port && !r.on_link && ports.get(port)?.kernel)
                .then_some((*t, r.next_hop))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(v4: &str, gw4: Option<&str>, v6: Option<&str>, kernel: bool) -> PortInfo {
        PortInfo {
            ipv4: Some(v4.parse().unwrap()),
            gateway_v4: gw4.map(|g| g.parse().unwrap()),
            ipv6: v6.map(|a| a.parse().unwrap()),
            gateway_v6: v6.map(|_| "fd00:77::1".parse().unwrap()),
            kernel,
            ..Default::default()
        }
    }

    #[test]
    fn planned_lists_ports_then_vlans_and_follows_a_moved_vlan() {
        let text = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_af_packet0,iface=eth1"
ipv4 = "10.77.0.10/24"
kernel_interface = "k0"

[[ports.vlans]]
id = 100
ipv4 = "10.100.0.10/24"

[[ports.vlans]]
id = 200
ipv4 = "10.200.0.10/24"
kernel_interface = "k200"

[[ports]]
name = "wan"
device = "net_af_packet1,iface=eth2"
ipv4 = "10.78.0.10/24"

[[ports.vlans]]
id = 300
ipv4 = "10.30.0.10/24"
kernel_interface = "k300"
"#;
        let (c, v) = Config::parse(text, std::path::Path::new("vipd.toml")).unwrap();
        let p = planned(&c, &v.ports);
        let got: Vec<_> = p
            .iter()
            .map(|k| (k.name.as_str(), k.iface, k.port, k.vlan))
            .collect();
        // Interfaces: lan 0, wan 1, lan.100 2, lan.200 3, wan.300 4.
        assert_eq!(
            got,
            vec![
                ("k0", 0, 0, None),
                ("k200", 3, 0, Some(200)),
                ("k300", 4, 1, Some(300))
            ]
        );
        assert_eq!(interface_of(&v.ports, 0, None), Some(0));
        assert_eq!(interface_of(&v.ports, 0, Some(200)), Some(3));
        assert_eq!(interface_of(&v.ports, 1, Some(200)), None);
        assert_eq!(interface_of(&v.ports, 2, None), None, "a VLAN is no port");
        // A reload drops VLAN 100: VLAN 200's interface moves up, its kernel interface too.
        let dropped = text.replace(
            "[[ports.vlans]]\nid = 100\nipv4 = \"10.100.0.10/24\"\n\n",
            "",
        );
        let (_, v) = Config::parse(&dropped, std::path::Path::new("vipd.toml")).unwrap();
        assert_eq!(v.ports.len(), 4);
        assert_eq!(interface_of(&v.ports, 0, Some(200)), Some(2));
    }

    #[test]
    fn vdev_names_the_interface_and_mac() {
        assert_eq!(
            vdev_args(1, "vipd1", MacAddr([2, 0x77, 0, 0, 0, 0x0a])),
            "net_tap_kernel1,iface=vipd1,mac=02:77:00:00:00:0a"
        );
    }

    #[test]
    fn host_routes_only_for_targets_behind_this_ports_gateway() {
        let ports = [
            port(
                "10.0.0.10/24",
                Some("10.0.0.1"),
                Some("fd00:77::10/64"),
                true,
            ),
            port("10.1.0.10/24", None, None, true),
        ];
        let targets: Vec<IpAddr> = [
            "10.0.0.21",
            "198.51.100.7",
            "10.1.0.5",
            "2001:db8::9",
            "fd00:77::22",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let r0 = host_routes(&ports, 0, &targets);
        let want: BTreeSet<HostRoute> =
            [("198.51.100.7", "10.0.0.1"), ("2001:db8::9", "fd00:77::1")]
                .iter()
                .map(|(d, g)| (d.parse().unwrap(), g.parse().unwrap()))
                .collect();
        assert_eq!(r0, want);
        // On-link on port 1: covered by its prefix route.
        assert!(host_routes(&ports, 1, &targets).is_empty());
    }

    #[test]
    fn a_vlans_kernel_interface_gets_the_routes_via_the_vlans_gateway() {
        // A port without a gateway; its VLAN 200 (interface 1) has one and a kernel interface.
        let ports = [
            port("10.0.0.10/24", None, None, false),
            PortInfo {
                vlan: Some(vipd_dataplane::snapshot::VlanOf { parent: 0, id: 200 }),
                ..port("10.2.0.10/24", Some("10.2.0.1"), None, true)
            },
        ];
        let t: Vec<IpAddr> = ["198.51.100.7", "10.2.0.21", "10.0.0.21"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let want: BTreeSet<HostRoute> = [(t[0], "10.2.0.1".parse().unwrap())].into();
        assert_eq!(host_routes(&ports, 1, &t), want);
        assert!(host_routes(&ports, 0, &t).is_empty());
    }

    #[test]
    fn no_host_routes_without_a_kernel_interface() {
        let ports = [port("10.0.0.10/24", Some("10.0.0.1"), None, false)];
        let t = ["198.51.100.7".parse().unwrap()];
        assert!(host_routes(&ports, 0, &t).is_empty());
    }

    #[test]
    fn address_changes_remove_then_add_what_differs() {
        let old = Addresses {
            ipv4: Some("10.0.0.10/24".parse().unwrap()),
            ipv6: Some("fd00::10/64".parse().unwrap()),
        };
        let new = Addresses {
            ipv4: Some("10.0.0.11/24".parse().unwrap()),
            ipv6: Some("fd00::10/64".parse().unwrap()),
        };
        let (remove, add) = address_changes(&old, &new);
        assert_eq!(remove, vec![("10.0.0.10".parse().unwrap(), 24)]);
        assert_eq!(add, vec![("10.0.0.11".parse().unwrap(), 24)]);
        assert_eq!(address_changes(&new, &new), (vec![], vec![]));
        let (remove, add) = address_changes(&old, &Addresses::default());
        assert_eq!(remove.len(), 2);
        assert!(add.is_empty());
    }

    #[test]
    fn ipv6_settings_keep_the_kernel_off_link_local_and_dad() {
        let s = ipv6_sysctls("vipd0", true);
        assert_eq!(
            s[0].0,
            PathBuf::from("/proc/sys/net/ipv6/conf/vipd0/addr_gen_mode")
        );
        assert_eq!(s[0].1, "1");
        assert!(s.iter().any(|(p, v)| p.ends_with("accept_ra") && *v == "0"));
        assert!(s
            .iter()
            .any(|(p, v)| p.ends_with("accept_dad") && *v == "0"));
        assert_eq!(
            s.last().map(|(p, v)| (p.ends_with("disable_ipv6"), *v)),
            Some((true, "0"))
        );
        let off = ipv6_sysctls("vipd0", false);
        assert_eq!(
            off,
            vec![(
                PathBuf::from("/proc/sys/net/ipv6/conf/vipd0/disable_ipv6"),
                "1"
            )]
        );
    }
}
