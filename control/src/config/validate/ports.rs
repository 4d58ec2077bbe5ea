//! The ports: names, devices, addresses, gateways, MTU, tunnel sources, kernel interfaces,
//! and the 802.1Q VLANs each carries.

use super::{invalid, Invalid, MAX_FRAME, MAX_MTU};
use crate::config::model::{Config, VlanConfig};
use crate::kernel::plan::TAP_VDEV_PREFIX;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use vipd_dataplane::snapshot::{PortInfo, VlanOf};
use vipd_dataplane::wire::vlan;
use vipd_dataplane::wire::MacAddr;

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Every kernel interface the configuration names, with its owner: (port index, `None` for
/// the port's own or the VLAN's index in the port's list).
fn kernel_names(config: &Config) -> impl Iterator<Item = (&str, (usize, Option<usize>))> {
    config.ports.iter().enumerate().flat_map(|(i, p)| {
        let own = p.kernel_interface.as_deref().map(|n| (n, (i, None)));
        let vlans = p
            .vlans
            .iter()
            .enumerate()
            .filter_map(move |(j, v)| v.kernel_interface.as_deref().map(|n| (n, (i, Some(j)))));
        own.into_iter().chain(vlans)
    })
}

/// Check kernel interface `name` (key `key`, of `owner` as [`kernel_names`] gives it): a
/// valid interface name, and no other port's or VLAN's.
fn kernel_name(
    config: &Config,
    name: &str,
    key: &str,
    owner: (usize, Option<usize>),
) -> Result<(), Invalid> {
    if !valid_ifname(name) {
        return Err(invalid(
            key,
            format!("`{name}` is not an interface name (1-15 letters, digits, `-`, `_`, `.`)"),
        ));
    }
    let other = kernel_names(config).find(|&(n, o)| n == name && o != owner);
    if let Some((_, (i, j))) = other {
        let whose = match j {
            None => format!("ports[{i}].kernel_interface"),
            Some(j) => format!("ports[{i}].vlans[{j}].kernel_interface"),
        };
        return Err(invalid(
            key,
            format!(
                "`{name}` is also {whose}: each port and VLAN needs a kernel interface of its own"
            ),
        ));
    }
    Ok(())
}

pub(super) fn ports(config: &Config, warnings: &mut Vec<String>) -> Result<Vec<PortInfo>, Invalid> {
    if config.ports.is_empty() {
        return Err(invalid("ports", "at least one [[ports]] entry is needed"));
    }
    let mut out = Vec::with_capacity(config.ports.len());
    for (i, p) in config.ports.iter().enumerate() {
        let k = |f: &str| format!("ports[{i}].{f}");
        if p.name.is_empty() || config.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(invalid(
                k("name"),
                format!("`{}` is empty or used twice", p.name),
            ));
        }
        if p.device.is_empty() || config.ports[..i].iter().any(|q| q.device == p.device) {
            return Err(invalid(
                k("device"),
                format!("`{}` is empty or used twice", p.device),
            ));
        }
        if p.device.starts_with(TAP_VDEV_PREFIX) {
            return Err(invalid(
                k("device"),
                format!("`{TAP_VDEV_PREFIX}...` names the taps vipd creates for kernel interfaces: give the device another name (net_tap0, say)"),
            ));
        }
        crate::config::bond::check(config, i)?;
        addressing(
            &k,
            Addressing {
                ipv4: p.ipv4,
                ipv6: p.ipv6,
                gateway: p.gateway,
                gateway6: p.gateway6,
            },
            "port",
        )?;
        let mac = match &p.mac {
            Some(m) => {
                let mac: MacAddr = m.parse().map_err(|e| invalid(k("mac"), e))?;
                if mac.is_multicast() || mac == MacAddr::ZERO {
                    return Err(invalid(k("mac"), format!("{m} is not a unicast MAC")));
                }
                mac
            }
            None => MacAddr::ZERO,
        };
        if !(576..=MAX_MTU).contains(&p.mtu) {
            return Err(invalid(
                k("mtu"),
                format!(
                    "{} is out of range 576..={MAX_MTU}: a frame must fit one {MAX_FRAME}-byte mbuf (vipd does not chain mbufs)",
                    p.mtu
                ),
            ));
        }
        if let Some(net) = p.tunnel_source4 {
            let a = net.network();
            if net.prefix_len() < 8
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_loopback()
            {
                return Err(invalid(
                    k("tunnel_source4"),
                    format!("{net} is not a unicast prefix of at most /8 the box may send from"),
                ));
            }
        }
        if let Some(net) = p.tunnel_source6 {
            let a = net.network();
            // IPv4-mapped sources: a tunnel header would carry an address never on the wire.
            let mapped = ipnet::Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
                .is_ok_and(|m| net.contains(&m.network()) || m.contains(&net.network()));
            if mapped {
                return Err(invalid(
                    k("tunnel_source6"),
                    format!("{net} overlaps ::ffff:0:0/96, the IPv4-mapped addresses"),
                ));
            }
            if net.prefix_len() < 32 || a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(invalid(
                    k("tunnel_source6"),
                    format!("{net} is not a unicast prefix of at most /32 the box may send from"),
                ));
            }
        }
        if p.device.starts_with("net_memif") {
            warnings.push(format!(
                "ports[{i}].device: net_memif can crash vipd when its peer disconnects (DPDK 22.11 unmaps the shared memory under a running burst, docs/robustness.md): use it for tests and benchmarks, not in production"
            ));
        }
        if let Some(name) = &p.kernel_interface {
            kernel_name(config, name, &k("kernel_interface"), (i, None))?;
        }
        out.push(PortInfo {
            mac,
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            gateway_v4: p.gateway,
            gateway_v6: p.gateway6,
            mtu: p.mtu,
            tunnel_source4: p.tunnel_source4,
            tunnel_source6: p.tunnel_source6,
            kernel: p.kernel_interface.is_some(),
            vlan: None,
        });
    }
    // The VLANs' interfaces come after every port's, so a port's index stays its DPDK index.
    for (i, p) in config.ports.iter().enumerate() {
        for (j, v) in p.vlans.iter().enumerate() {
            let k = |f: &str| format!("ports[{i}].vlans[{j}].{f}");
            out.push(vlan(config, i, j, v, &k, &out)?);
        }
    }
    Ok(out)
}

/// A port's or a VLAN's addresses and gateways.
struct Addressing {
    ipv4: Option<Ipv4Net>,
    ipv6: Option<Ipv6Net>,
    gateway: Option<Ipv4Addr>,
    gateway6: Option<Ipv6Addr>,
}

fn addressing(k: &dyn Fn(&str) -> String, a: Addressing, what: &str) -> Result<(), Invalid> {
    if a.ipv4.is_none() && a.ipv6.is_none() {
        return Err(invalid(
            k("ipv4"),
            format!("a {what} needs an ipv4 or ipv6 address"),
        ));
    }
    if let Some(net) = a.ipv4 {
        let a = net.addr();
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
            return Err(invalid(k("ipv4"), format!("{a} is not a unicast address")));
        }
    }
    if let Some(net) = a.ipv6 {
        let a = net.addr();
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(invalid(k("ipv6"), format!("{a} is not a unicast address")));
        }
        if a.to_ipv4_mapped().is_some() {
            return Err(invalid(k("ipv6"), mapped_refusal(&IpAddr::V6(a))));
        }
    }
    match (a.gateway, a.ipv4) {
        (Some(g), Some(net)) if !net.contains(&g) || g == net.addr() => {
            return Err(invalid(
                k("gateway"),
                format!("{g} is not another address inside {net}"),
            ));
        }
        (Some(_), None) => {
            return Err(invalid(
                k("gateway"),
                format!("an IPv4 gateway needs an ipv4 address on the {what}"),
            ));
        }
        _ => {}
    }
    match (a.gateway6, a.ipv6) {
        (Some(g), _) if g.to_ipv4_mapped().is_some() => {
            return Err(invalid(k("gateway6"), mapped_refusal(&IpAddr::V6(g))));
        }
        (Some(g), Some(net))
            if (!net.contains(&g) && !is_link_local(&IpAddr::V6(g))) || g == net.addr() =>
        {
            return Err(invalid(
                k("gateway6"),
                format!("{g} is not another address inside {net} (or link-local)"),
            ));
        }
        (Some(_), None) => {
            return Err(invalid(
                k("gateway6"),
                format!("an IPv6 gateway needs an ipv6 address on the {what}"),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// One `[[ports.vlans]]` entry as an interface of port `i`; `so_far`: the interfaces before
/// it (every port, the VLANs listed earlier), whose subnets it must not overlap.
fn vlan(
    config: &Config,
    i: usize,
    j: usize,
    v: &VlanConfig,
    k: &dyn Fn(&str) -> String,
    so_far: &[PortInfo],
) -> Result<PortInfo, Invalid> {
    if v.vlans.is_some() {
        return Err(invalid(
            k("vlans"),
            "QinQ (802.1ad, a VLAN inside a VLAN) is not supported: vipd handles one 802.1Q tag; frames with stacked tags are dropped (drop_vlan_tagged)",
        ));
    }
    if !vlan::is_valid_id(v.id) {
        return Err(invalid(
            k("id"),
            format!(
                "{} is not a VLAN id: 1..=4094 (0 is a priority tag, 4095 is reserved)",
                v.id
            ),
        ));
    }
    let port = &config.ports[i];
    if port.vlans[..j].iter().any(|w| w.id == v.id) {
        return Err(invalid(
            k("id"),
            format!("VLAN {} is listed twice on port `{}`", v.id, port.name),
        ));
    }
    addressing(
        k,
        Addressing {
            ipv4: v.ipv4,
            ipv6: v.ipv6,
            gateway: v.gateway,
            gateway6: v.gateway6,
        },
        "VLAN",
    )?;
    // A route is the first interface whose subnet holds the address: overlapping subnets
    // would send a VLAN's neighbours out of another interface.
    let overlap = |net: String, key: &str| {
        invalid(
            k(key),
            format!(
                "{net} overlaps the subnet of another port or VLAN: each VLAN is its own subnet"
            ),
        )
    };
    for other in so_far {
        if let (Some(a), Some(b)) = (v.ipv4, other.ipv4) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Err(overlap(a.to_string(), "ipv4"));
            }
        }
        if let (Some(a), Some(b)) = (v.ipv6, other.ipv6) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Err(overlap(a.to_string(), "ipv6"));
            }
        }
    }
    if let Some(name) = &v.kernel_interface {
        kernel_name(config, name, &k("kernel_interface"), (i, Some(j)))?;
    }
    let mac = match &port.mac {
        Some(m) => m
            .parse()
            .map_err(|e| invalid(format!("ports[{i}].mac"), e))?,
        None => MacAddr::ZERO,
    };
    Ok(PortInfo {
        mac,
        ipv4: v.ipv4,
        ipv6: v.ipv6,
        gateway_v4: v.gateway,
        gateway_v6: v.gateway6,
        mtu: port.mtu,
        tunnel_source4: None,
        tunnel_source6: None,
        kernel: v.kernel_interface.is_some(),
        vlan: Some(VlanOf {
            parent: i as u16,
            id: v.id,
        }),
    })
}

/// The refusal of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`): the dataplane keeps IPv4
/// addresses in that form, so one configured as IPv6 would stand for the IPv4 address.
pub(super) fn mapped_refusal(ip: &IpAddr) -> String {
    format!("{ip} is IPv4-mapped: write the IPv4 address, or an IPv6 address that is not mapped")
}

pub(super) fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}
