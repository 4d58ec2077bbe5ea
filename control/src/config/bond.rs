//! `[ports.bond]`: a port made of several devices by DPDK's bonding PMD. The validator's part
//! (mode, members, no member used twice or as a port of its own) and the EAL device strings
//! vipd builds from it: the members first, then the bond that takes them.

use super::model::{BondConfig, Config};
use super::validate::Invalid;
use crate::announce::MAX_ROUNDS;
use crate::kernel::plan::TAP_VDEV_PREFIX;

/// The DPDK driver (and device name prefix) of a bond.
pub const BOND_DRIVER: &str = "net_bonding";

/// A bonding mode vipd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    /// DPDK mode 1: one member carries the traffic; the next whose link is up takes over.
    ActiveBackup,
    /// DPDK mode 4, 802.3ad: LACP with a partner (a switch's LAG) decides which members carry
    /// traffic; frames are spread over them by the transmit hash ([`XmitPolicy`]).
    Lacp,
}

impl BondMode {
    /// Parse `ports[i].bond.mode`.
    pub fn parse(mode: &str) -> Result<BondMode, String> {
        match mode {
            "active-backup" => Ok(BondMode::ActiveBackup),
            "lacp" => Ok(BondMode::Lacp),
            "802.3ad" => Err(format!("`{mode}`: vipd spells 802.3ad \"lacp\"")),
            _ => Err(format!(
                "`{mode}` is not a bonding mode: \"active-backup\" or \"lacp\" (802.3ad)"
            )),
        }
    }

    /// DPDK's number for the mode (the `mode=` device argument).
    pub fn dpdk_mode(self) -> u8 {
        match self {
            BondMode::ActiveBackup => 1,
            BondMode::Lacp => 4,
        }
    }
}

/// How an 802.3ad bond picks the member a frame leaves on (DPDK's `xmit_policy=`): a hash of
/// the headers named, so one flow stays on one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmitPolicy {
    /// Source and destination MAC: everything vipd sends to its one router goes on one
    /// member.
    L2,
    /// MACs and IP addresses.
    L23,
    /// IP addresses and TCP/UDP ports (vipd's default: a load balancer's traffic is many
    /// flows between few MACs and addresses).
    L34,
}

impl XmitPolicy {
    /// Parse `ports[i].bond.xmit_policy`; `None` is the default, `l34`.
    pub fn parse(policy: Option<&str>) -> Result<XmitPolicy, String> {
        match policy {
            None | Some("l34") => Ok(XmitPolicy::L34),
            Some("l23") => Ok(XmitPolicy::L23),
            Some("l2") => Ok(XmitPolicy::L2),
            Some(p) => Err(format!(
                "`{p}` is not a transmit hash policy: \"l34\" (IP addresses and ports, the default), \"l23\" or \"l2\""
            )),
        }
    }

    /// The `xmit_policy=` device argument.
    pub fn devarg(self) -> &'static str {
        match self {
            XmitPolicy::L2 => "l2",
            XmitPolicy::L23 => "l23",
            XmitPolicy::L34 => "l34",
        }
    }
}

/// The DPDK name a device string is found by: a vdev's name before its arguments, or the PCI
/// address.
pub fn device_name(dev: &str) -> &str {
    dev.split(',').next().unwrap_or(dev)
}

/// The bond's device string: `net_bonding0,mode=1,slave=A,slave=B` (DPDK 22.11 calls members
/// `slave`), for 802.3ad `mode=4,...,xmit_policy=l34`. No `primary=`: with one, an
/// active-backup bond moves the traffic back to it when its link returns, which a switch
/// that learned the bond's MAC elsewhere does not follow. Call on a validated bond.
pub fn bond_devargs(device: &str, bond: &BondConfig) -> String {
    let mode = BondMode::parse(&bond.mode).unwrap_or(BondMode::ActiveBackup);
    let mut s = format!("{device},mode={}", mode.dpdk_mode());
    for m in &bond.members {
        s.push_str(",slave=");
        s.push_str(device_name(m));
    }
    if mode == BondMode::Lacp {
        let policy = XmitPolicy::parse(bond.xmit_policy.as_deref()).unwrap_or(XmitPolicy::L34);
        s.push_str(",xmit_policy=");
        s.push_str(policy.devarg());
    }
    s
}

fn invalid(key: String, message: String) -> Invalid {
    Invalid { key, message }
}

/// Check port `i`'s device against its `[ports.bond]` (or its absence).
pub fn check(config: &Config, i: usize) -> Result<(), Invalid> {
    let p = &config.ports[i];
    let k = |f: &str| format!("ports[{i}].{f}");
    let Some(bond) = &p.bond else {
        if p.device.starts_with(BOND_DRIVER) {
            return Err(invalid(
                k("device"),
                format!("`{}` is a bond: list its members in [ports.bond] (mode, members) and vipd creates it", p.device),
            ));
        }
        return Ok(());
    };
    if !p.device.starts_with(BOND_DRIVER) || p.device.contains(',') {
        return Err(invalid(
            k("device"),
            format!(
                "`{}`: a port with [ports.bond] names its bond device `{BOND_DRIVER}<N>` without arguments (vipd writes the mode and the members)",
                p.device
            ),
        ));
    }
    let mode = BondMode::parse(&bond.mode).map_err(|e| invalid(k("bond.mode"), e))?;
    if let Some(policy) = &bond.xmit_policy {
        if mode != BondMode::Lacp {
            return Err(invalid(
                k("bond.xmit_policy"),
                format!("`{policy}`: only a bond with mode = \"lacp\" spreads frames over its members (active-backup sends on one)"),
            ));
        }
        XmitPolicy::parse(Some(policy)).map_err(|e| invalid(k("bond.xmit_policy"), e))?;
    }
    if bond.gratuitous_arp > MAX_ROUNDS {
        return Err(invalid(
            k("bond.gratuitous_arp"),
            format!(
                "{}: at most {MAX_ROUNDS} rounds of gratuitous ARP after a failover (0 sends none)",
                bond.gratuitous_arp
            ),
        ));
    }
    if bond.members.len() < 2 {
        return Err(invalid(
            k("bond.members"),
            format!(
                "{} member(s): a bond needs at least two devices",
                bond.members.len()
            ),
        ));
    }
    for (j, m) in bond.members.iter().enumerate() {
        let key = format!("ports[{i}].bond.members[{j}]");
        let name = device_name(m);
        if name.is_empty() {
            return Err(invalid(key, format!("`{m}` names no device")));
        }
        if name.starts_with(BOND_DRIVER) || name.starts_with(TAP_VDEV_PREFIX) {
            return Err(invalid(
                key,
                format!("`{name}`: a member cannot be a bond, nor a `{TAP_VDEV_PREFIX}...` tap (vipd's kernel interfaces)"),
            ));
        }
        if bond.members[..j].iter().any(|o| device_name(o) == name) {
            return Err(invalid(key, format!("`{name}` is listed twice")));
        }
        if let Some(q) = config.ports.iter().find(|q| device_name(&q.device) == name) {
            return Err(invalid(
                key,
                format!("`{name}` is also the device of port `{}`: a bond's members are not ports of their own", q.name),
            ));
        }
        let other = config.ports[..i].iter().find(|q| {
            q.bond
                .as_ref()
                .is_some_and(|b| b.members.iter().any(|o| device_name(o) == name))
        });
        if let Some(q) = other {
            return Err(invalid(
                key,
                format!("`{name}` is already a member of port `{}`'s bond", q.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BONDED: &str = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_bonding0"
ipv4 = "10.77.0.10/24"
[ports.bond]
mode = "active-backup"
members = ["net_tap0,iface=m0", "net_tap1,iface=m1"]

[[ports]]
name = "wan"
device = "net_af_packet0,iface=eth2"
ipv4 = "10.78.0.10/24"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("vipd.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("accepted:\n{text}"))
    }

    #[test]
    fn an_active_backup_bond_is_accepted_and_its_devargs_name_every_member() {
        let (c, v) = Config::parse(BONDED, Path::new("vipd.toml")).unwrap();
        assert_eq!(v.ports.len(), 2);
        let p = &c.ports[0];
        let bond = p.bond.as_ref().unwrap();
        assert_eq!(bond.gratuitous_arp, 3, "the default");
        assert_eq!(
            bond_devargs(&p.device, bond),
            "net_bonding0,mode=1,slave=net_tap0,slave=net_tap1"
        );
        // Saved and read back, the bond is the same.
        let text = toml::to_string(&c).unwrap();
        let (again, _) = Config::parse(&text, Path::new("vipd.toml")).unwrap();
        assert_eq!(again.ports[0].bond, c.ports[0].bond);
    }

    #[test]
    fn an_lacp_bond_is_mode_4_with_a_transmit_hash() {
        let lacp = BONDED.replace("mode = \"active-backup\"", "mode = \"lacp\"");
        let (c, _) = Config::parse(&lacp, Path::new("vipd.toml")).unwrap();
        let p = &c.ports[0];
        let bond = p.bond.as_ref().unwrap();
        assert_eq!(bond.xmit_policy, None);
        // Without xmit_policy, l34: a load balancer's flows differ in addresses and ports.
        assert_eq!(
            bond_devargs(&p.device, bond),
            "net_bonding0,mode=4,slave=net_tap0,slave=net_tap1,xmit_policy=l34"
        );
        for policy in ["l2", "l23", "l34"] {
            let text = lacp.replace(
                "mode = \"lacp\"",
                &format!("mode = \"lacp\"\nxmit_policy = \"{policy}\""),
            );
            let (c, _) = Config::parse(&text, Path::new("vipd.toml")).unwrap();
            let bond = c.ports[0].bond.as_ref().unwrap();
            assert!(
                bond_devargs("net_bonding0", bond).ends_with(&format!(",xmit_policy={policy}")),
                "{policy}"
            );
            // Saved and read back, the policy stays.
            let again = toml::to_string(&c).unwrap();
            assert!(
                again.contains(&format!("xmit_policy = \"{policy}\"")),
                "{again}"
            );
        }
    }

    #[test]
    fn bad_bonds_are_refused_naming_the_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "mode = \"active-backup\"",
                "mode = \"round-robin\"",
                "ports[0].bond.mode",
                "not a bonding mode",
            ),
            (
                "mode = \"active-backup\"",
                "mode = \"802.3ad\"",
                "ports[0].bond.mode",
                "spells 802.3ad \"lacp\"",
            ),
            (
                "mode = \"active-backup\"",
                "mode = \"active-backup\"\nxmit_policy = \"l34\"",
                "ports[0].bond.xmit_policy",
                "only a bond with mode = \"lacp\"",
            ),
            (
                "mode = \"active-backup\"",
                "mode = \"lacp\"\nxmit_policy = \"l3\"",
                "ports[0].bond.xmit_policy",
                "`l3` is not a transmit hash policy",
            ),
            (
                "members = [\"net_tap0,iface=m0\", \"net_tap1,iface=m1\"]",
                "members = [\"net_tap0,iface=m0\"]",
                "ports[0].bond.members",
                "at least two",
            ),
            (
                "members = [\"net_tap0,iface=m0\", \"net_tap1,iface=m1\"]",
                "members = [\"net_tap0,iface=m0\", \"net_tap0,iface=m1\"]",
                "ports[0].bond.members[1]",
                "listed twice",
            ),
            (
                "members = [\"net_tap0,iface=m0\", \"net_tap1,iface=m1\"]",
                "members = [\"net_tap0,iface=m0\", \"net_af_packet0,iface=eth3\"]",
                "ports[0].bond.members[1]",
                "also the device of port `wan`",
            ),
            (
                "members = [\"net_tap0,iface=m0\", \"net_tap1,iface=m1\"]",
                "members = [\"net_tap0,iface=m0\", \"net_bonding1\"]",
                "ports[0].bond.members[1]",
                "cannot be a bond",
            ),
            (
                "mode = \"active-backup\"",
                "mode = \"active-backup\"\ngratuitous_arp = 17",
                "ports[0].bond.gratuitous_arp",
                "17: at most 16 rounds",
            ),
            (
                "device = \"net_bonding0\"",
                "device = \"net_bonding0,mode=4\"",
                "ports[0].device",
                "without arguments",
            ),
            (
                "device = \"net_bonding0\"",
                "device = \"net_af_packet1,iface=eth1\"",
                "ports[0].device",
                "net_bonding<N>",
            ),
        ];
        for (from, to, key, what) in cases {
            let e = err(&BONDED.replace(from, to));
            assert!(e.contains(key) && e.contains(what), "{to}: {e}");
        }
        // A bond device without [ports.bond], and a member another bond already has.
        let e = err(&BONDED.replace("[ports.bond]\nmode = \"active-backup\"\nmembers = [\"net_tap0,iface=m0\", \"net_tap1,iface=m1\"]\n", ""));
        assert!(
            e.contains("ports[0].device") && e.contains("[ports.bond]"),
            "{e}"
        );
        let two = BONDED.replace(
            "device = \"net_af_packet0,iface=eth2\"\nipv4 = \"10.78.0.10/24\"",
            "device = \"net_bonding1\"\nipv4 = \"10.78.0.10/24\"\n[ports.bond]\nmode = \"active-backup\"\nmembers = [\"net_tap2,iface=m2\", \"net_tap1,iface=m1\"]",
        );
        let e = err(&two);
        assert!(
            e.contains("ports[1].bond.members[1]") && e.contains("member of port `lan`"),
            "{e}"
        );
        // Not a count at all: refused naming the key.
        for bad in ["-1", "\"3\"", "2.5"] {
            let e = err(&BONDED.replace(
                "mode = \"active-backup\"",
                &format!("mode = \"active-backup\"\ngratuitous_arp = {bad}"),
            ));
            assert!(e.contains("gratuitous_arp"), "{bad}: {e}");
        }
        // An unknown key in [ports.bond] is refused by name.
        let e = err(&BONDED.replace(
            "mode = \"active-backup\"",
            "mode = \"active-backup\"\nprimary = \"x\"",
        ));
        assert!(e.contains("primary"), "{e}");
    }
}
