//! DPDK EAL arguments and mbuf pool sizing for a configuration.

use crate::config::bond::bond_devargs;
pub use crate::config::bond::device_name;
use crate::config::Config;
use crate::kernel::exception::BURSTS_PER_ROUND;
use crate::kernel::plan::TAP_DESCRIPTORS;
use vipd_dataplane::worker::BURST;

/// Slots of each ring between threads.
pub const RING_CAPACITY: usize = 1024;

/// The EAL arguments for a configuration.
///
/// With `eal.hugepages` (the default) vipd is a DPDK primary process that secondaries join:
/// `dpdk-dumpcap`, `dpdk-pdump` and `dpdk-proc-info` given the same `--file-prefix` map its
/// hugepage memory (hugetlbfs files) and talk to it over the multi-process socket in its
/// runtime directory. Without hugepages DPDK cannot share its memory (`--no-huge` is
/// anonymous memory, and 22.11 refuses `--no-huge --in-memory`): vipd then runs alone
/// (`--no-shconf`), and only `dpdk-telemetry.py` can reach it.
pub fn eal_args(config: &Config) -> Vec<String> {
    let e = &config.eal;
    let mut args: Vec<String> = vec![
        "--lcores".into(),
        lcore_map(config),
        "--file-prefix".into(),
        e.file_prefix.clone(),
    ];
    if e.hugepages {
        // Never `auto`: a second vipd with the same prefix must fail, not become a secondary.
        args.extend(["--proc-type".into(), "primary".into()]);
        if e.memory_mb > 0 {
            args.extend(["-m".into(), e.memory_mb.to_string()]);
        }
    } else {
        let mem = if e.memory_mb > 0 { e.memory_mb } else { 512 };
        args.extend([
            "--no-huge".into(),
            "--no-shconf".into(),
            "-m".into(),
            mem.to_string(),
        ]);
    }
    let any_pci = config.ports.iter().any(|p| {
        is_pci_address(&p.device)
            || p.bond
                .as_ref()
                .is_some_and(|b| b.members.iter().any(|m| is_pci_address(m)))
    });
    if !any_pci {
        // Only virtual devices: never let the EAL probe (and try to take) the host's NICs.
        args.push("--no-pci".into());
    }
    let mut device = |dev: &str| {
        if is_pci_address(dev) {
            args.extend(["-a".into(), dev.to_string()]);
        } else {
            args.extend(["--vdev".into(), dev.to_string()]);
        }
    };
    for p in &config.ports {
        match &p.bond {
            // A bond's members exist before the bond that takes them.
            Some(bond) => {
                bond.members.iter().for_each(|m| device(m));
                device(&bond_devargs(&p.device, bond));
            }
            None => device(&p.device),
        }
    }
    args.extend(e.extra_args.iter().cloned());
    args
}

/// The EAL lcore id of worker `w`; lcore 0 is the control thread (the main lcore).
pub fn worker_lcore(w: usize) -> u32 {
    w as u32 + 1
}

/// The EAL lcore id of the exception path's thread (after the workers'), when a port has a
/// kernel interface. It is an EAL lcore, not a registered thread, for the same reason as the
/// workers: a registered thread turns DPDK's multi-process channel (captures) off.
pub fn exception_lcore(workers: usize) -> u32 {
    workers as u32 + 1
}

/// `--lcores`: lcore 0 on the control core, lcore `w + 1` on worker `w`'s core, and the
/// exception path's lcore on the control core (it is control traffic, with an idle back-off).
/// Lcore ids and CPUs are separate, so a worker may share the control core (small test boxes).
fn lcore_map(config: &Config) -> String {
    let dp = &config.dataplane;
    let exception = (kernel_interfaces(config) > 0).then(|| {
        format!(
            "{}@{}",
            exception_lcore(dp.worker_cores.len()),
            dp.control_core
        )
    });
    std::iter::once(format!("0@{}", dp.control_core))
        .chain(
            dp.worker_cores
                .iter()
                .enumerate()
                .map(|(w, core)| format!("{}@{core}", worker_lcore(w))),
        )
        .chain(exception)
        .collect::<Vec<_>>()
        .join(",")
}

/// The kernel interfaces the configuration asks for: the ports' and the VLANs'.
fn kernel_interfaces(config: &Config) -> u64 {
    config
        .ports
        .iter()
        .map(|p| {
            usize::from(p.kernel_interface.is_some())
                + p.vlans
                    .iter()
                    .filter(|v| v.kernel_interface.is_some())
                    .count()
        })
        .sum::<usize>() as u64
}

/// What one kernel interface's tap holds: its descriptors, and the exception thread's bursts.
fn kernel_mbufs() -> u64 {
    2 * u64::from(TAP_DESCRIPTORS) + ((BURSTS_PER_ROUND + 1) * BURST) as u64
}

fn is_pci_address(dev: &str) -> bool {
    !dev.contains('=') && dev.contains(':') && dev.contains('.') && !dev.starts_with("net_")
}

/// Mbufs for ports x queues x descriptors, the kernel interfaces' taps, the rings, the bursts
/// in flight, plus slack; rounded to 2^n - 1 (the mempool's best size).
pub fn pool_size(config: &Config) -> u32 {
    if config.dataplane.mbufs > 0 {
        return config.dataplane.mbufs;
    }
    let n = (mbufs_needed(config) + 1).next_power_of_two().min(1 << 24);
    (n - 1) as u32
}

/// A warning when `dataplane.mbufs` is set below what the ports, rings and bursts can hold at
/// once: such a pool can run dry (a stalled control thread whose ring holds the whole pool
/// stops forwarding until it catches up, docs/robustness.md), and a PMD that fills its
/// descriptors up front may receive nothing at all.
pub fn pool_warning(config: &Config) -> Option<String> {
    let set = u64::from(config.dataplane.mbufs);
    let needed = mbufs_needed(config);
    (set > 0 && set < needed).then(|| {
        format!(
            "dataplane.mbufs = {set} is less than the {needed} the ports, rings and bursts can hold at once: the pool can run dry (0 sizes it)"
        )
    })
}

fn mbufs_needed(config: &Config) -> u64 {
    let dp = &config.dataplane;
    let workers = dp.worker_cores.len() as u64;
    // A bond's members hold the descriptors the bond is configured with, each its own.
    let devices: u64 = config
        .ports
        .iter()
        .map(|p| p.bond.as_ref().map_or(1, |b| b.members.len().max(1)) as u64)
        .sum();
    let ports = config.ports.len() as u64;
    devices * workers * (u64::from(dp.rx_descriptors) + u64::from(dp.tx_descriptors))
        + (workers + 2) * RING_CAPACITY as u64
        + workers * (ports + 2) * BURST as u64
        + kernel_interfaces(config) * kernel_mbufs()
        + 4096
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortConfig;

    fn port(name: &str, kernel: Option<&str>) -> PortConfig {
        PortConfig {
            name: name.into(),
            device: format!("net_ring_{name}"),
            ipv4: Some("10.0.0.10/24".parse().unwrap()),
            ipv6: None,
            mac: None,
            gateway: None,
            gateway6: None,
            mtu: 1500,
            tunnel_source4: None,
            tunnel_source6: None,
            kernel_interface: kernel.map(str::to_string),
            vlans: Vec::new(),
            bond: None,
        }
    }

    #[test]
    fn the_pool_holds_what_the_taps_keep() {
        let mut config = Config::default();
        config.dataplane.rx_descriptors = 512;
        config.dataplane.tx_descriptors = 512;
        config.ports = vec![port("a", None)];
        let without = mbufs_needed(&config);
        config.ports = vec![port("a", Some("vipd0"))];
        assert_eq!(mbufs_needed(&config), without + kernel_mbufs());
        // A VLAN's kernel interface is a tap of its own.
        let mut vlan_port = port("a", None);
        vlan_port.vlans.push(crate::config::model::VlanConfig {
            id: 200,
            ipv4: Some("10.2.0.10/24".parse().unwrap()),
            ipv6: None,
            gateway: None,
            gateway6: None,
            kernel_interface: Some("vipd0.200".into()),
            vlans: None,
        });
        config.ports = vec![vlan_port.clone()];
        assert_eq!(mbufs_needed(&config), without + kernel_mbufs());
        vlan_port.kernel_interface = Some("vipd0".into());
        config.ports = vec![vlan_port];
        assert_eq!(mbufs_needed(&config), without + 2 * kernel_mbufs());
        config.ports = vec![port("a", Some("vipd0"))];
        let size = u64::from(pool_size(&config));
        assert!(size >= mbufs_needed(&config) && (size + 1).is_power_of_two());
        assert_eq!(pool_warning(&config), None, "the computed size never warns");
        config.dataplane.mbufs = 1023;
        let w = pool_warning(&config).unwrap();
        assert!(
            w.starts_with("dataplane.mbufs = 1023 is less than the"),
            "{w}"
        );
        config.dataplane.mbufs = u32::try_from(mbufs_needed(&config)).unwrap();
        assert_eq!(pool_warning(&config), None);
    }

    fn config(hugepages: bool) -> Config {
        let mut c = Config::default();
        c.eal.file_prefix = "lb1".into();
        c.eal.hugepages = hugepages;
        c
    }

    #[test]
    fn hugepages_make_a_primary_that_secondaries_can_join() {
        let args = eal_args(&config(true));
        let joined = args.join(" ");
        assert!(
            joined.contains("--file-prefix lb1 --proc-type primary"),
            "{joined}"
        );
        for standalone in ["--in-memory", "--no-shconf", "--no-huge", "-m"] {
            assert!(!args.iter().any(|a| a == standalone), "{joined}");
        }
        let mut c = config(true);
        c.eal.memory_mb = 1024;
        assert!(eal_args(&c)
            .join(" ")
            .contains("--proc-type primary -m 1024"));
    }

    #[test]
    fn without_hugepages_vipd_runs_alone() {
        let joined = eal_args(&config(false)).join(" ");
        assert!(
            joined.contains("--file-prefix lb1 --no-huge --no-shconf -m 512"),
            "{joined}"
        );
        assert!(!joined.contains("--proc-type"), "{joined}");
    }

    #[test]
    fn a_bond_follows_its_members() {
        let mut c = config(false);
        let mut bonded = port("a", None);
        bonded.device = "net_bonding0".into();
        bonded.bond = Some(crate::config::BondConfig {
            mode: "active-backup".into(),
            members: vec!["net_tap0,iface=m0".into(), "0000:01:00.1".into()],
            xmit_policy: None,
            gratuitous_arp: 3,
        });
        c.ports = vec![bonded, port("b", None)];
        let joined = eal_args(&c).join(" ");
        assert!(
            joined.ends_with(
                "-m 512 --vdev net_tap0,iface=m0 -a 0000:01:00.1 --vdev net_bonding0,mode=1,slave=net_tap0,slave=0000:01:00.1 --vdev net_ring_b"
            ),
            "{joined}"
        );
        c.ports.truncate(1);
        c.ports[0].bond.as_mut().unwrap().members[1] = "net_tap1,iface=m1".into();
        assert!(eal_args(&c).iter().any(|a| a == "--no-pci"));
    }

    #[test]
    fn workers_get_lcores_after_the_control_lcore() {
        let mut c = config(true);
        c.dataplane.control_core = 0;
        c.dataplane.worker_cores = vec![0, 1];
        let args = eal_args(&c);
        assert_eq!(args[..2], ["--lcores", "0@0,1@0,2@1"]);
        assert_eq!((worker_lcore(0), worker_lcore(1)), (1, 2));
        // A kernel interface adds the exception path's lcore, on the control core.
        c.ports = vec![port("a", Some("vipd0"))];
        assert_eq!(eal_args(&c)[..2], ["--lcores", "0@0,1@0,2@1,3@0"]);
        assert_eq!(exception_lcore(2), 3);
    }
}
