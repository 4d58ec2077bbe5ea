//! DPDK EAL arguments and mbuf pool sizing for a configuration.

use crate::config::Config;
use crate::kernel::exception::BURSTS_PER_ROUND;
use crate::kernel::plan::TAP_DESCRIPTORS;
use vipd_dataplane::worker::BURST;

/// Slots of each ring between threads.
pub const RING_CAPACITY: usize = 1024;

/// The EAL arguments for a configuration.
pub fn eal_args(config: &Config) -> Vec<String> {
    let e = &config.eal;
    let mut args: Vec<String> = vec![
        "-l".into(),
        config.dataplane.control_core.to_string(),
        "--file-prefix".into(),
        e.file_prefix.clone(),
    ];
    if e.hugepages {
        args.push("--in-memory".into());
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
    if !config.ports.iter().any(|p| is_pci_address(&p.device)) {
        // Only virtual devices: never let the EAL probe (and try to take) the host's NICs.
        args.push("--no-pci".into());
    }
    for p in &config.ports {
        if is_pci_address(&p.device) {
            args.extend(["-a".into(), p.device.clone()]);
        } else {
            args.extend(["--vdev".into(), p.device.clone()]);
        }
    }
    args.extend(e.extra_args.iter().cloned());
    args
}

fn kernel_interfaces(config: &Config) -> u64 {
    config
        .ports
        .iter()
        .filter(|p| p.kernel_interface.is_some())
        .count() as u64
}

/// What one kernel interface's tap holds: its descriptors, and the exception thread's bursts.
fn kernel_mbufs() -> u64 {
    2 * u64::from(TAP_DESCRIPTORS) + ((BURSTS_PER_ROUND + 1) * BURST) as u64
}

fn is_pci_address(dev: &str) -> bool {
    !dev.contains('=') && dev.contains(':') && dev.contains('.') && !dev.starts_with("net_")
}

/// The DPDK name a port's device is found by: a vdev's name before its arguments, or the PCI
/// address.
pub fn device_name(dev: &str) -> &str {
    dev.split(',').next().unwrap_or(dev)
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

fn mbufs_needed(config: &Config) -> u64 {
    let dp = &config.dataplane;
    let workers = dp.worker_cores.len() as u64;
    let ports = config.ports.len() as u64;
    ports * workers * (u64::from(dp.rx_descriptors) + u64::from(dp.tx_descriptors))
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
        let size = u64::from(pool_size(&config));
        assert!(size >= mbufs_needed(&config) && (size + 1).is_power_of_two());
    }
}
