//! Port bring-up (configure, MTU, start, MAC) and link state.

use super::bond::{poll_members, Member};
use super::eal::device_name;
use crate::config::bond::BondMode;
use crate::config::Config;
use std::path::{Path, PathBuf};
use vipd_dataplane::io::dpdk::{
    DpdkError, Eal, Mempool, Port, PortConfig as DpdkPortConfig, PortStats,
};
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
    /// The bonding mode of a `[ports.bond]` port.
    pub bond_mode: Option<BondMode>,
    /// A bond's members (`[ports.bond]`), in the configured order.
    pub members: Vec<Member>,
    /// A bond's rounds of announcements after a failover (`[ports.bond] gratuitous_arp`).
    pub gratuitous_arp: u32,
    /// Gratuitous ARPs sent after its failovers.
    pub gratuitous_arp_sent: u64,
    /// Unsolicited Neighbour Advertisements sent after its failovers.
    pub unsolicited_na_sent: u64,
}

/// Why a port did not come up (vipd does not start).
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The EAL has no port of the configured device.
    #[error("{}: ports[{index}].device `{device}`: no such DPDK port ({source})", file.display())]
    NoSuchDevice {
        /// The configuration file.
        file: PathBuf,
        /// Index in `ports`.
        index: usize,
        /// `ports[i].device`.
        device: String,
        /// DPDK's answer.
        source: DpdkError,
    },
    /// Configuring, starting or reading the port failed.
    #[error("ports[{index}] ({name}): {source}")]
    Device {
        /// Index in `ports`.
        index: usize,
        /// `ports[i].name`.
        name: String,
        /// DPDK's answer.
        source: DpdkError,
    },
}

/// Configure and start every port of `config`, with one queue pair per worker.
pub fn bring_up(
    eal: &Eal,
    config: &Config,
    config_path: &Path,
    pool: &Mempool,
) -> Result<Vec<RunningPort>, PortError> {
    let workers = config.dataplane.worker_cores.len() as u16;
    let mut ports = Vec::with_capacity(config.ports.len());
    for (i, pc) in config.ports.iter().enumerate() {
        let id = eal
            .port_by_name(device_name(&pc.device))
            .map_err(|source| PortError::NoSuchDevice {
                file: config_path.to_owned(),
                index: i,
                device: pc.device.clone(),
                source,
            })?;
        let no_member = |name: &str, source| PortError::NoSuchDevice {
            file: config_path.to_owned(),
            index: i,
            device: name.to_string(),
            source,
        };
        let mut members = Vec::new();
        for m in pc.bond.iter().flat_map(|b| &b.members) {
            let name = device_name(m);
            let watch = eal
                .port_by_name(name)
                .and_then(|id| eal.watch(id))
                .map_err(|e| no_member(name, e))?;
            members.push(Member::new(name, watch));
        }
        let device_err = |source| PortError::Device {
            index: i,
            name: pc.name.clone(),
            source,
        };
        let cfg = DpdkPortConfig {
            queues: workers,
            rx_desc: config.dataplane.rx_descriptors,
            tx_desc: config.dataplane.tx_descriptors,
            rss: true,
            rx_interrupt: false,
        };
        let mut port = Port::configure(eal, id, &cfg, pool).map_err(device_err)?;
        if let Err(e) = port.set_mtu(pc.mtu) {
            tracing::warn!(
                "port {}: cannot set MTU {}: {e} (keeping the device's)",
                pc.name,
                pc.mtu
            );
        }
        port.start().map_err(device_err)?;
        let nic_mac = MacAddr(port.mac_addr().map_err(device_err)?);
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
        if !members.is_empty() {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            let mode = pc.bond.as_ref().map_or("", |b| b.mode.as_str());
            tracing::info!("port {}: bond ({mode}) over {}", pc.name, names.join(", "));
        }
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
            bond_mode: pc.bond.as_ref().and_then(|b| BondMode::parse(&b.mode).ok()),
            members,
            gratuitous_arp: pc.bond.as_ref().map_or(0, |b| b.gratuitous_arp),
            gratuitous_arp_sent: 0,
            unsolicited_na_sent: 0,
        });
    }
    Ok(ports)
}

/// Poll every port's link (logging changes) and counters. Returns the indices of the bonded
/// ports whose active member vipd switched.
pub fn poll_links(ports: &mut [RunningPort]) -> Vec<u16> {
    let mut switched = Vec::new();
    for (i, p) in ports.iter_mut().enumerate() {
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
        if poll_members(p) {
            switched.extend(u16::try_from(i));
        }
    }
    switched
}
