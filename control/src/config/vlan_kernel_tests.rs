//! The validator on `[[ports.vlans]]` `kernel_interface`: names, uniqueness across the ports
//! and VLANs, what the snapshot learns, and the restart it needs.

use super::*;
use crate::config::reload;

const PORTS: &str = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_af_packet0,iface=eth1"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"
PORT0_KEYS

[[ports.vlans]]
id = 100
ipv4 = "10.100.0.10/24"
VLAN100_KEYS

[[ports.vlans]]
id = 200
ipv6 = "fd00:200::10/64"
VLAN200_KEYS

[[ports]]
name = "wan"
device = "net_af_packet1,iface=eth2"
ipv4 = "10.78.0.10/24"
PORT1_KEYS

[[ports.vlans]]
id = 100
ipv4 = "10.101.0.10/24"
VLAN1_100_KEYS
"#;

/// The configuration with each key line set as given (`""`: none).
fn with(port0: &str, v100: &str, v200: &str, port1: &str, v1_100: &str) -> String {
    let key = |n: &str| {
        if n.is_empty() {
            String::new()
        } else {
            format!("kernel_interface = \"{n}\"")
        }
    };
    PORTS
        .replace("PORT0_KEYS", &key(port0))
        .replace("VLAN100_KEYS", &key(v100))
        .replace("VLAN200_KEYS", &key(v200))
        .replace("PORT1_KEYS", &key(port1))
        .replace("VLAN1_100_KEYS", &key(v1_100))
}

fn err(text: &str) -> String {
    Config::parse(text, Path::new("vipd.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_vlan_with_a_kernel_interface_is_marked_in_the_snapshot() {
    let (c, v) = Config::parse(&with("", "k100", "", "", ""), Path::new("vipd.toml")).unwrap();
    // Interfaces: lan, wan, then lan's VLANs 100 and 200, then wan's VLAN 100.
    assert_eq!(v.ports.len(), 5);
    assert!(!v.ports[0].kernel, "the port asked for none");
    let vlan = v.ports[2].vlan.map(|x| (x.parent, x.id));
    assert_eq!(vlan, Some((0, 100)));
    assert!(v.ports[2].kernel, "VLAN 100 of lan has a kernel interface");
    assert!(!v.ports[3].kernel && !v.ports[4].kernel);
    // Saved and read back, the key stays.
    let (again, _) = Config::parse(&c.to_toml().unwrap(), Path::new("saved.toml")).unwrap();
    assert_eq!(
        again.ports[0].vlans[0].kernel_interface.as_deref(),
        Some("k100")
    );
    // Every port and VLAN its own, the port's too.
    let (_, v) = Config::parse(
        &with("k0", "k100", "k200", "k1", "k1-100"),
        Path::new("vipd.toml"),
    )
    .unwrap();
    assert!(v.ports.iter().all(|p| p.kernel));
}

#[test]
fn bad_and_shared_names_are_refused_with_both_keys() {
    for (text, key, words) in [
        (
            with("", "vipd,mac=x", "", "", ""),
            "ports[0].vlans[0].kernel_interface",
            "not an interface name",
        ),
        (
            with("", "", "sixteen-letters1", "", ""),
            "ports[0].vlans[1].kernel_interface",
            "not an interface name",
        ),
        (
            with("", "..", "", "", ""),
            "ports[0].vlans[0].kernel_interface",
            "not an interface name",
        ),
        // The port's name on its own VLAN.
        (
            with("k0", "k0", "", "", ""),
            "ports[0].kernel_interface",
            "also ports[0].vlans[0].kernel_interface",
        ),
        // Two VLANs of one port.
        (
            with("", "k", "k", "", ""),
            "ports[0].vlans[0].kernel_interface",
            "also ports[0].vlans[1].kernel_interface",
        ),
        // VLANs of one id on two ports.
        (
            with("", "k", "", "", "k"),
            "ports[0].vlans[0].kernel_interface",
            "also ports[1].vlans[0].kernel_interface",
        ),
        // Another port's own name.
        (
            with("", "", "", "k1", "k1"),
            "ports[1].kernel_interface",
            "also ports[1].vlans[0].kernel_interface",
        ),
        (
            with("", "", "wan0", "wan0", ""),
            "ports[1].kernel_interface",
            "also ports[0].vlans[1].kernel_interface",
        ),
    ] {
        let e = err(&text);
        assert!(e.contains(key) && e.contains(words), "{key}: {e}");
    }
}

#[test]
fn a_vlan_kernel_interface_needs_no_kernel_interface_on_its_port() {
    // The VLAN's interface is a tap of its own, not a device on the port's tap.
    let (_, v) = Config::parse(&with("", "", "k200", "", ""), Path::new("vipd.toml")).unwrap();
    assert!(!v.ports[0].kernel);
    assert!(v.ports[3].kernel);
}

#[test]
fn adding_moving_or_removing_a_vlan_kernel_interface_needs_a_restart() {
    let parse = |t: &str| Config::parse(t, Path::new("vipd.toml")).unwrap().0;
    let old = parse(&with("", "k100", "", "", ""));
    let key = "ports[0].vlans[].kernel_interface";
    for new in [
        with("", "", "", "", ""),
        with("", "k100", "k200", "", ""),
        with("", "", "k100", "", ""),
        with("", "k", "", "", ""),
    ] {
        let changes = reload::restart_only_changes(&old, &parse(&new));
        assert!(
            changes.iter().any(|c| c.starts_with(key)),
            "{new}: {changes:?}"
        );
    }
    // The VLAN's addresses change live, its kernel interface stays.
    let moved = parse(&with("", "k100", "", "", "").replace("10.100.0.10/24", "10.100.0.11/24"));
    assert!(reload::restart_only_changes(&old, &moved).is_empty());
}

#[test]
fn health_checks_in_a_vlan_ask_for_the_vlans_kernel_interface() {
    let service = r#"
[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
health_check = { type = "tcp" }

[[services.real_servers]]
ip = "10.101.0.21"
port = 8080
"#;
    // The real server is in VLAN 100 of `wan` (interface 4), which has no kernel interface:
    // the checks would leave by the box's own routing.
    let (_, v) = Config::parse(
        &(with("k0", "", "", "k1", "") + service),
        Path::new("vipd.toml"),
    )
    .unwrap();
    let w: Vec<_> = v
        .warnings
        .iter()
        .filter(|w| w.contains("health checks"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", v.warnings);
    assert!(
        w[0].contains("VLAN 100 of port `wan`")
            && w[0].contains("ports[1].vlans[0].kernel_interface"),
        "{}",
        w[0]
    );
    let (_, v) = Config::parse(
        &(with("", "", "", "", "k1-100") + service),
        Path::new("vipd.toml"),
    )
    .unwrap();
    assert!(
        !v.warnings.iter().any(|w| w.contains("health checks")),
        "{:?}",
        v.warnings
    );
}
