//! Port bring-up (configure, MTU, start, MAC) and link state.

use super::eal::device_name;
use crate::config::Config;
use std::path::Path;
use vipd_dataplane::io::dpdk::{Eal, Mempool, Port, PortConfig as DpdkPortConfig, PortStats};
use vipd_dataplane::wire::MacAddr;

/// A started port.
pub struct RunningPort {
    /// Name from the configuration.
    pub name: String,
    /// Device string from the configuration.
    pub device: String,
    /// The DPDK port.
    pub port: Port,
    /// The MAC vipd answers with (the configured one, else the NIC's).
    pub mac: MacAddr,
    /// Link state at the last poll.
    pub link_up: bool,
    /// The NIC's counters at the last poll.
    pub stats: Option<PortStats>,
}

/// Configure and start every port of `config`, with one queue pair per worker.
pub fn bring_up(
    eal: &Eal,
    config: &Config,
    config_path: &Path,
    pool: &Mempool,
) -> Result<Vec<RunningPort>, String> {
    let workers = config.dataplane.worker_cores.len() as u16;
    let mut ports = Vec::with_capacity(config.ports.len());
    for (i, pc) in config.ports.iter().enumerate() {
        let key = format!("ports[{i}]");
        let id = eal.port_by_name(device_name(&pc.device)).map_err(|e| {
            format!(
                "{}: {key}.device `{}`: no such DPDK port ({e})",
                config_path.display(),
                pc.device
            )
        })?;
        let cfg = DpdkPortConfig {
            queues: workers,
            rx_desc: config.dataplane.rx_descriptors,
            tx_desc: config.dataplane.tx_descriptors,
            rss: true,
            rx_interrupt: false,
        };
        let mut port = Port::configure(eal, id, &cfg, pool)
            .map_err(|e| format!("{key} ({}): {e}", pc.name))?;
        if let Err(e) = port.set_mtu(pc.mtu) {
            tracing::warn!(
                "port {}: cannot set MTU {}: {e} (keeping the device's)",
                pc.name,
                pc.mtu
            );
        }
        port.start()
            .map_err(|e| format!("{key} ({}): {e}", pc.name))?;
        let nic_mac = MacAddr(port.mac_addr().map_err(|e| format!("{key}: {e}"))?);
        let mac = match pc.mac.as_deref().map(str::parse::<MacAddr>) {
            Some(Ok(m)) => {
                // A MAC other than the NIC's: receive everything, the pipeline filters.
                if let Err(e) = port.set_promiscuous(true) {
                    tracing::warn!("port {}: promiscuous mode: {e}", pc.name);
                }
                m
            }
            _ => nic_mac,
        };
        tracing::info!(
            "port {} ({}): DPDK port {id}, driver {}, MAC {mac}, {} queue pair(s), RSS {}",
            pc.name,
            pc.device,
            port.driver(),
            port.queues(),
            if port.rss_enabled() {
                "on"
            } else {
                "off (one queue, or the PMD has none)"
            }
        );
        ports.push(RunningPort {
            name: pc.name.clone(),
            device: pc.device.clone(),
            port,
            mac,
            link_up: false,
            stats: None,
        });
    }
    Ok(ports)
}

/// Poll every port's link (logging changes) and counters.
pub fn poll_links(ports: &mut [RunningPort]) {
    for p in ports.iter_mut() {
        p.stats = p.port.stats().ok();
        if let Ok(link) = p.port.link_status() {
            if link.up != p.link_up {
                p.link_up = link.up;
                if link.up {
                    tracing::info!("port {}: link up, {} Mbit/s", p.name, link.speed_mbps);
                } else {
                    tracing::warn!("port {}: link down", p.name);
                }
            }
        }
    }
}
