//! Ethdev ports: configuration, start/stop, link, counters, and the hand-out of queue handles.

use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dpdk_sys as sys;

use super::eal::Eal;
use super::error::{check, DpdkError};
use super::mempool::Mempool;
use super::queue::PortQueue;

/// How a port is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Rx queues = tx queues = workers.
    pub queues: u16,
    /// Rx descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// Ask for RSS (IP, TCP, UDP) when `queues > 1`; used only if the PMD supports it.
    pub rss: bool,
    /// Set up rx interrupts (`intr_conf.rxq`), so a thread can sleep until a queue has
    /// frames: see [`PortQueue::rx_wait_fd`](super::PortQueue::rx_wait_fd). Only for PMDs
    /// that support them (net_tap).
    pub rx_interrupt: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: true,
            rx_interrupt: false,
        }
    }
}

/// A device's capabilities, from [`Eal::port_info`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The PMD's name, e.g. `net_ring`.
    pub driver: String,
    /// Most queue pairs (min of its rx and tx maxima).
    pub max_queues: u16,
    /// RSS hash functions it supports (`flow_type_rss_offloads`; 0: no RSS).
    pub rss_offloads: u64,
    /// Size of its RSS redirection table (0 without RSS).
    pub reta_size: u16,
}

/// Link state (`rte_eth_link_get_nowait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Port counters (`rte_eth_stats_get`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames dropped by the NIC because no rx descriptor was free.
    pub rx_missed: u64,
    /// Erroneous received frames.
    pub rx_errors: u64,
    /// Failed transmissions.
    pub tx_errors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

pub(super) struct PortShared {
    id: u16,
    pub(super) taken: Box<[AtomicBool]>,
}

/// A configured ethdev port. Control operations (`&self`/`&mut self`) belong to one thread
/// (`Port` is `Send`, not `Sync`); the fast path goes through [`PortQueue`]s.
///
/// Dropping a port stops and closes it, unless queue handles are still alive (then it is
/// left running for them).
pub struct Port {
    shared: Arc<PortShared>,
    queues: u16,
    rx_desc: u16,
    tx_desc: u16,
    rss_hf: u64,
    rx_offloads: u64,
    driver: String,
    started: bool,
    closed: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.shared.id)
            .field("driver", &self.driver)
            .field("queues", &self.queues)
            .field("rss_hf", &self.rss_hf)
            .field("started", &self.started)
            .finish()
    }
}

impl Port {
    /// Configure port `port_id` with `cfg.queues` rx and tx queues whose rx side allocates
    /// from `pool` (`rte_eth_dev_configure`, `rte_eth_dev_adjust_nb_rx_tx_desc`,
    /// `rte_eth_{rx,tx}_queue_setup`). RSS over IP/TCP/UDP, masked by the device's
    /// `flow_type_rss_offloads`, is enabled only when `queues > 1`, `cfg.rss` and the mask is
    /// not empty: see [`Port::rss_enabled`]. The port is not started.
    ///
    /// Size `pool` for `queues * rx_desc` mbufs on top of those in flight: some PMDs (net_tap)
    /// fill every rx descriptor at start and fail with an empty pool otherwise.
    pub fn configure(
        _eal: &Eal,
        port_id: u16,
        cfg: &PortConfig,
        pool: &Mempool,
    ) -> Result<Port, DpdkError> {
        // SAFETY: a bounds-checked lookup in the ethdev table.
        if unsafe { sys::rte_eth_dev_is_valid_port(port_id) } != 1 {
            return Err(DpdkError::InvalidArgument {
                call: "rte_eth_dev_configure",
                what: format!("port {port_id} does not exist"),
            });
        }
        let info = dev_info(port_id)?;
        let driver = driver_name(&info);
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if cfg.queues == 0 || cfg.queues > max {
            return Err(DpdkError::InvalidArgument {
                call: "rte_eth_dev_configure",
                what: format!(
                    "port {port_id} ({driver}) supports 1..={max} queue pairs, {} asked",
                    cfg.queues
                ),
            });
        }
        let rss_hf = if cfg.queues > 1 && cfg.rss {
            rss_ip_tcp_udp() & info.flow_type_rss_offloads
        } else {
            0
        };
        let mut conf = sys::rte_eth_conf::default();
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        } else {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_NONE;
        }
        if cfg.rx_interrupt {
            conf.intr_conf.set_rxq(1);
        }
        // IPv4 header checksums verified by the NIC where it can (the pipeline reads the
        // verdict from the mbuf's ol_flags and falls back to software otherwise).
        // SAFETY: the shim returns a constant.
        let rx_offloads =
            info.rx_offload_capa & unsafe { sys::vipd_rte_eth_rx_offload_ipv4_cksum() };
        conf.rxmode.offloads = rx_offloads;
        let q = cfg.queues;
        // SAFETY: valid port; conf is a fully initialised rte_eth_conf that DPDK copies.
        let ret = unsafe { sys::rte_eth_dev_configure(port_id, q, q, &conf) };
        check(ret, || {
            format!(
                "rte_eth_dev_configure(port {port_id} ({driver}), {q} queues, rss_hf {rss_hf:#x})"
            )
        })?;
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid, configured port; both out pointers are valid.
        let ret =
            unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rx_desc, &mut tx_desc) };
        check(ret, || {
            format!("rte_eth_dev_adjust_nb_rx_tx_desc(port {port_id}, {rx_desc}, {tx_desc})")
        })?;
        // SAFETY: valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
        for queue in 0..q {
            // SAFETY: configured port, queue < q; NULL rxconf = the PMD's defaults; the pool
            // outlives the port (pools are never freed).
            let ret = unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    queue,
                    rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check(ret, || {
                format!("rte_eth_rx_queue_setup(port {port_id}, queue {queue}, {rx_desc} descriptors, pool {:?})", pool.name())
            })?;
            // SAFETY: configured port, queue < q; NULL txconf = the PMD's defaults.
            let ret = unsafe {
                sys::rte_eth_tx_queue_setup(
                    port_id,
                    queue,
                    tx_desc,
                    socket as u32,
                    std::ptr::null(),
                )
            };
            check(ret, || {
                format!(
                    "rte_eth_tx_queue_setup(port {port_id}, queue {queue}, {tx_desc} descriptors)"
                )
            })?;
        }
        Ok(Port {
            shared: Arc::new(PortShared {
                id: port_id,
                taken: (0..q).map(|_| AtomicBool::new(false)).collect(),
            }),
            queues: q,
            rx_desc,
            tx_desc,
            rss_hf,
            rx_offloads,
            driver,
            started: false,
            closed: false,
            _not_sync: PhantomData,
        })
    }

    /// Port id.
    pub fn id(&self) -> u16 {
        self.shared.id
    }

    /// The PMD's name, e.g. `net_ring`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// Rx and tx descriptors per queue, after adjustment to the device.
    pub fn descriptors(&self) -> (u16, u16) {
        (self.rx_desc, self.tx_desc)
    }

    /// Whether RSS spreads flows over the queues.
    pub fn rss_enabled(&self) -> bool {
        self.rss_hf != 0
    }

    /// The RSS hash functions in use (`RTE_ETH_RSS_*` bits; 0 without RSS).
    pub fn rss_hf(&self) -> u64 {
        self.rss_hf
    }

    /// Whether the NIC verifies IPv4 header checksums on receive (offload enabled because the
    /// device offers it); otherwise the pipeline checks them in software.
    pub fn rx_ipv4_checksum_offload(&self) -> bool {
        self.rx_offloads != 0
    }

    /// Whether the port is started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    fn no_queue_handles(&self) -> Result<(), DpdkError> {
        let count = Arc::strong_count(&self.shared) - 1;
        if count > 0 {
            return Err(DpdkError::QueuesInUse {
                port: self.id(),
                count,
            });
        }
        Ok(())
    }

    /// Start the port (`rte_eth_dev_start`). No queue handle may be alive.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        self.no_queue_handles()?;
        let id = self.id();
        // SAFETY: configured port; no other thread uses its queues (no handle is alive).
        let ret = unsafe { sys::rte_eth_dev_start(id) };
        check(ret, || format!("rte_eth_dev_start(port {id})"))?;
        self.started = true;
        Ok(())
    }

    /// Stop the port (`rte_eth_dev_stop`). No queue handle may be alive.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        self.no_queue_handles()?;
        if !self.started {
            return Ok(());
        }
        let id = self.id();
        // SAFETY: started port; no other thread uses its queues.
        let ret = unsafe { sys::rte_eth_dev_stop(id) };
        check(ret, || format!("rte_eth_dev_stop(port {id})"))?;
        self.started = false;
        Ok(())
    }

    /// Stop and close the port (`rte_eth_dev_close`). No queue handle may be alive.
    pub fn close(mut self) -> Result<(), DpdkError> {
        self.stop()?;
        self.closed = true;
        let id = self.id();
        // SAFETY: stopped port, no queue handles; the port id is not used after this.
        let ret = unsafe { sys::rte_eth_dev_close(id) };
        check(ret, || format!("rte_eth_dev_close(port {id})")).map(|_| ())
    }

    /// The owner handle of queue pair `queue` (rx and tx queue of that number). One handle
    /// per queue at a time; give each worker its own.
    pub fn queue(&self, queue: u16) -> Result<PortQueue, DpdkError> {
        let port = self.id();
        let slot = self.shared.taken.get(usize::from(queue)).ok_or_else(|| {
            DpdkError::InvalidArgument {
                call: "Port::queue",
                what: format!("port {port} has {} queues, not {}", self.queues, queue + 1),
            }
        })?;
        if slot.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::QueueTaken { port, queue });
        }
        Ok(PortQueue::new(Arc::clone(&self.shared), port, queue))
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    pub fn mac_addr(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = sys::rte_ether_addr::default();
        let id = self.id();
        // SAFETY: valid port; addr is a valid out pointer.
        let ret = unsafe { sys::rte_eth_macaddr_get(id, &mut addr) };
        check(ret, || format!("rte_eth_macaddr_get(port {id})"))?;
        Ok(addr.addr_bytes)
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link_status(&self) -> Result<LinkStatus, DpdkError> {
        link_status(self.id())
    }

    /// Promiscuous mode on or off (`rte_eth_promiscuous_enable/disable`).
    pub fn set_promiscuous(&self, on: bool) -> Result<(), DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(id)
            } else {
                sys::rte_eth_promiscuous_disable(id)
            }
        };
        check(ret, || {
            format!(
                "rte_eth_promiscuous_{}(port {id})",
                if on { "enable" } else { "disable" }
            )
        })
        .map(|_| ())
    }

    /// Whether promiscuous mode is on (`rte_eth_promiscuous_get`).
    pub fn promiscuous(&self) -> Result<bool, DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_promiscuous_get(id) };
        check(ret, || format!("rte_eth_promiscuous_get(port {id})")).map(|r| r == 1)
    }

    /// Set the MTU (`rte_eth_dev_set_mtu`).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        let id = self.id();
        // SAFETY: valid port.
        let ret = unsafe { sys::rte_eth_dev_set_mtu(id, mtu) };
        check(ret, || format!("rte_eth_dev_set_mtu(port {id}, {mtu})")).map(|_| ())
    }

    /// A bond's member that carries its traffic in active-backup mode
    /// (`rte_eth_bond_primary_get`); an error when the port is no bond.
    pub fn bond_primary(&self) -> Result<u16, DpdkError> {
        let id = self.id();
        // SAFETY: valid port; the bonding PMD checks that it is a bond.
        let ret = unsafe { sys::rte_eth_bond_primary_get(id) };
        check(ret, || format!("rte_eth_bond_primary_get(port {id})")).map(|p| p as u16)
    }

    /// Make `member` the bond's primary (`rte_eth_bond_primary_set`): in active-backup mode
    /// it carries the traffic from the next burst on.
    pub fn set_bond_primary(&self, member: u16) -> Result<(), DpdkError> {
        let id = self.id();
        // SAFETY: valid port; the bonding PMD checks the bond and that `member` is one of its
        // members. It switches the primary itself on a member's link interrupt, under
        // running bursts, the same way.
        let ret = unsafe { sys::rte_eth_bond_primary_set(id, member) };
        check(ret, || {
            format!("rte_eth_bond_primary_set(port {id}, member {member})")
        })
        .map(|_| ())
    }

    /// Port counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        stats(self.id())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.closed || Arc::strong_count(&self.shared) > 1 {
            return;
        }
        let id = self.id();
        // SAFETY: no queue handle is alive, so no other thread uses the port; it is not used
        // after this. Errors cannot be reported from drop and are ignored.
        unsafe {
            if self.started {
                sys::rte_eth_dev_stop(id);
            }
            sys::rte_eth_dev_close(id);
        }
    }
}

/// Link state of a valid port without waiting (`rte_eth_link_get_nowait`).
pub(super) fn link_status(id: u16) -> Result<LinkStatus, DpdkError> {
    let mut link = sys::rte_eth_link::default();
    // SAFETY: link is a valid out pointer; DPDK checks the port id.
    let ret = unsafe { sys::rte_eth_link_get_nowait(id, &mut link) };
    check(ret, || format!("rte_eth_link_get_nowait(port {id})"))?;
    Ok(LinkStatus {
        up: link.link_status() == sys::RTE_ETH_LINK_UP as u16,
        speed_mbps: link.link_speed,
        full_duplex: link.link_duplex() == sys::RTE_ETH_LINK_FULL_DUPLEX as u16,
    })
}

/// Counters of a valid port (`rte_eth_stats_get`).
pub(super) fn stats(id: u16) -> Result<PortStats, DpdkError> {
    let mut s = sys::rte_eth_stats::default();
    // SAFETY: s is a valid out pointer; DPDK checks the port id.
    let ret = unsafe { sys::rte_eth_stats_get(id, &mut s) };
    check(ret, || format!("rte_eth_stats_get(port {id})"))?;
    Ok(PortStats {
        rx_packets: s.ipackets,
        tx_packets: s.opackets,
        rx_bytes: s.ibytes,
        tx_bytes: s.obytes,
        rx_missed: s.imissed,
        rx_errors: s.ierrors,
        tx_errors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    })
}

pub(super) fn driver_name(info: &sys::rte_eth_dev_info) -> String {
    if info.driver_name.is_null() {
        return String::new();
    }
    // SAFETY: driver_name is a static NUL-terminated string of the PMD.
    unsafe { CStr::from_ptr(info.driver_name) }
        .to_string_lossy()
        .into_owned()
}

pub(super) fn dev_info(port_id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: valid port; info is a valid out pointer.
    let ret = unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) };
    check(ret, || format!("rte_eth_dev_info_get(port {port_id})"))?;
    Ok(info)
}

/// `RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP`.
pub fn rss_ip_tcp_udp() -> u64 {
    // SAFETY: the shim functions return constants.
    unsafe {
        sys::vipd_rte_eth_rss_ip() | sys::vipd_rte_eth_rss_tcp() | sys::vipd_rte_eth_rss_udp()
    }
}
