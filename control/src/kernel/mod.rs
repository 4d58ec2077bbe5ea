//! The kernel exception path: each port with `kernel_interface = "NAME"` gets a kernel
//! interface NAME (a DPDK net_tap device) carrying the port's MAC, MTU and addresses, so the
//! box's own stack (health checks, a BGP speaker, ssh, ping from the box) talks through the
//! port vipd owns. A VLAN with the key (`[[ports.vlans]]`) gets a tap of its own the same way,
//! carrying the VLAN's addresses untagged ([`tag`]: vipd removes and adds the VLAN's tag).
//!
//! - [`plan`]: what the interface should look like, from the configuration (pure);
//! - [`netlink`]: the rtnetlink requests that put addresses and host routes on it;
//! - [`exception`]: the `vipd-kernel` thread moving frames between the ports and the taps;
//! - [`counters`]: what it counts, both ways;
//! - [`tag`]: a VLAN's tag off on the way to its kernel interface, on on the way out.
//!
//! This module creates the interfaces at start (after the physical ports are up, so the MAC
//! is known), re-syncs their addresses and host routes when a reload or an API change moves
//! them, and closes them at shutdown (DPDK removes a tap when its port closes; the kernel
//! removes it too if vipd dies, with the last descriptor).

pub mod counters;
pub mod error;
pub mod exception;
pub mod netlink;
pub mod plan;
pub mod tag;

use crate::config::Config;
use counters::{InterfaceCounters, KernelCounters};
pub use error::{InterfaceKey, KernelError, SysctlError};
use exception::Tap;
use netlink::Netlink;
use plan::{Addresses, HostRoute};
use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use vipd_dataplane::io::dpdk::{Eal, Mempool, Port, PortConfig as DpdkPortConfig};
use vipd_dataplane::snapshot::PortInfo;
use vipd_dataplane::wire::MacAddr;

/// One port's (or VLAN's) kernel interface.
pub struct KernelInterface {
    /// Configuration index of the port (the one carrying the VLAN, for a VLAN's).
    pub port: usize,
    /// The VLAN's id, for a VLAN's kernel interface.
    pub vlan: Option<u16>,
    /// The port's name (with `.ID` for a VLAN's).
    pub port_name: String,
    /// The kernel interface's name.
    pub name: String,
    /// Its interface index.
    pub ifindex: u32,
    /// The port's MAC, which it carries.
    pub mac: MacAddr,
    /// Its MTU (the port's, unless the tap cannot carry that).
    pub mtu: u16,
    /// The port's MTU.
    pub port_mtu: u16,
    tap: Port,
    addresses: Addresses,
    routes: BTreeSet<HostRoute>,
}

/// Every port's kernel interface, and the netlink socket that configures them.
pub struct KernelInterfaces {
    interfaces: Vec<KernelInterface>,
    netlink: Option<Netlink>,
    /// Their counters (read by the API, written by the exception thread).
    pub counters: Arc<KernelCounters>,
}

/// The index of interface `name`, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string; the call only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

fn write_sysctls(settings: &[(std::path::PathBuf, &str)]) -> Result<(), SysctlError> {
    for (path, value) in settings {
        std::fs::write(path, value).map_err(|source| SysctlError {
            path: path.clone(),
            value: (*value).to_string(),
            source,
        })?;
    }
    Ok(())
}

fn read_mtu(name: &str) -> Option<u16> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl KernelInterfaces {
    /// No kernel interface.
    pub fn none() -> Self {
        KernelInterfaces {
            interfaces: Vec::new(),
            netlink: None,
            counters: Arc::default(),
        }
    }

    /// Create the kernel interface of every port and VLAN that asks for one: a net_tap device
    /// with the port's MAC (`macs[i]`, the MAC vipd answers with on port i) and MTU, one queue
    /// pair on `pool`, IPv6 set up to leave Neighbour Discovery to vipd, link up, the port's
    /// (the VLAN's) addresses. Host routes come with [`KernelInterfaces::sync`].
    pub fn create(
        eal: &Eal,
        config: &Config,
        ports: &[PortInfo],
        macs: &[MacAddr],
        pool: &Mempool,
        config_path: &Path,
    ) -> Result<Self, KernelError> {
        let mut out = KernelInterfaces::none();
        let mut counters = KernelCounters::default();
        for planned in plan::planned(config, ports) {
            let (i, name) = (planned.port, planned.name.as_str());
            let Some(pc) = config.ports.get(i) else {
                continue;
            };
            let port_name = match planned.vlan {
                None => pc.name.clone(),
                Some(id) => format!("{}.{id}", pc.name),
            };
            let key = Box::new(InterfaceKey {
                file: config_path.to_owned(),
                port: i,
                vlan: planned.vlan,
                name: name.to_string(),
            });
            if interface_index(name).is_some() {
                return Err(KernelError::Exists(key));
            }
            let Some(&mac) = macs.get(i) else {
                return Err(KernelError::NoMac(key));
            };
            let Some(info) = ports.get(planned.iface) else {
                return Err(KernelError::NotValidated(key));
            };
            let netlink = match &mut out.netlink {
                Some(n) => n,
                None => {
                    out.netlink
                        .insert(Netlink::open().map_err(|source| KernelError::Netlink {
                            key: key.clone(),
                            source,
                        })?)
                }
            };
            let devargs = plan::vdev_args(planned.iface, name, mac);
            let id = match eal.attach_vdev(&devargs) {
                Ok(id) => id,
                Err(source) => {
                    return Err(KernelError::Tap {
                        key,
                        devargs,
                        source,
                    })
                }
            };
            let port_err = |source| KernelError::Port {
                key: key.clone(),
                source,
            };
            let cfg = DpdkPortConfig {
                queues: 1,
                rx_desc: plan::TAP_DESCRIPTORS,
                tx_desc: plan::TAP_DESCRIPTORS,
                rss: false,
                // The exception thread sleeps in poll() on the tap until the kernel sends.
                rx_interrupt: true,
            };
            let mut tap = Port::configure(eal, id, &cfg, pool).map_err(port_err)?;
            if let Err(e) = tap.set_mtu(pc.mtu) {
                tracing::warn!(
                    "{key}: the tap cannot take MTU {} ({e}): the kernel interface keeps {}; the box's TCP sees the smaller MTU, larger frames for the port address are dropped and counted",
                    pc.mtu,
                    read_mtu(name).unwrap_or(1500)
                );
            }
            write_sysctls(&plan::ipv6_sysctls(name, info.ipv6.is_some())).map_err(|source| {
                KernelError::Sysctl {
                    key: key.clone(),
                    source,
                }
            })?;
            tap.start().map_err(port_err)?;
            let Some(ifindex) = interface_index(name) else {
                return Err(KernelError::NoInterface(key));
            };
            let addresses = Addresses::of(info);
            for (addr, len) in addresses.list() {
                netlink
                    .add_address(ifindex, addr, len)
                    .map_err(|source| KernelError::Address {
                        key: key.clone(),
                        addr,
                        len,
                        source,
                    })?;
            }
            let mtu = read_mtu(name).unwrap_or(pc.mtu);
            tracing::info!(
                "{} {port_name}: kernel interface {name} (net_tap, DPDK port {id}), MAC {mac}, MTU {mtu}, addresses {}{}",
                if planned.vlan.is_some() { "VLAN" } else { "port" },
                addresses
                    .list()
                    .iter()
                    .map(|(a, l)| format!("{a}/{l}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                if planned.vlan.is_some() {
                    " (untagged: vipd removes and adds the VLAN's tag)"
                } else {
                    ""
                }
            );
            counters
                .interfaces
                .push(InterfaceCounters::new(name, &port_name, i as u16).in_vlan(planned.vlan));
            out.interfaces.push(KernelInterface {
                port: i,
                vlan: planned.vlan,
                port_name,
                name: name.to_string(),
                ifindex,
                mac,
                mtu,
                port_mtu: pc.mtu,
                tap,
                addresses,
                routes: BTreeSet::new(),
            });
        }
        out.counters = Arc::new(counters);
        Ok(out)
    }

    /// The interfaces.
    pub fn interfaces(&self) -> &[KernelInterface] {
        &self.interfaces
    }

    /// The exception thread's handles: each tap's queue pair (taken once).
    pub fn taps(&self) -> Result<Vec<Tap>, KernelError> {
        self.interfaces
            .iter()
            .map(|k| {
                let q = k.tap.queue(0).map_err(|source| KernelError::Queue {
                    name: k.name.clone(),
                    source,
                })?;
                Ok(Tap::new(k.port as u16, k.vlan, q, k.mac, k.mtu, k.port_mtu))
            })
            .collect()
    }

    /// Bring every interface's addresses and host routes in line with `ports` (the running
    /// configuration's) and the health-check targets: what changed is removed and added,
    /// the rest is left alone. Failures are logged; the interface keeps what it has.
    pub fn sync(&mut self, ports: &[PortInfo], targets: &[IpAddr]) {
        let Some(netlink) = self.netlink.as_mut() else {
            return;
        };
        for k in &mut self.interfaces {
            // A VLAN's kernel interface stays with its VLAN (restart-only), whose place in
            // the list of interfaces a reload may move.
            let Some(iface) = plan::interface_of(ports, k.port, k.vlan) else {
                continue;
            };
            let Some(info) = ports.get(iface) else {
                continue;
            };
            let wanted = Addresses::of(info);
            if wanted != k.addresses {
                k.resync_addresses(netlink, wanted);
            }
            let routes = plan::host_routes(ports, iface, targets);
            for r in k.routes.difference(&routes).copied().collect::<Vec<_>>() {
                match netlink.del_host_route(k.ifindex, r.0, r.1) {
                    Ok(()) => tracing::info!("{}: host route {} via {} removed", k.name, r.0, r.1),
                    Err(e) => {
                        tracing::warn!("{}: removing host route {} via {}: {e}", k.name, r.0, r.1)
                    }
                }
                k.routes.remove(&r);
            }
            for r in routes.difference(&k.routes).copied().collect::<Vec<_>>() {
                match netlink.add_host_route(k.ifindex, r.0, r.1) {
                    Ok(()) => {
                        tracing::info!(
                            "{}: host route {} via {} (health checks leave through port {})",
                            k.name,
                            r.0,
                            r.1,
                            k.port_name
                        );
                        k.routes.insert(r);
                    }
                    Err(e) => tracing::warn!(
                        "{}: host route {} via {} not added: {e} (an existing route to it stays in force)",
                        k.name,
                        r.0,
                        r.1
                    ),
                }
            }
        }
    }

    /// Close every tap (DPDK removes the kernel interfaces, their addresses and routes).
    /// The exception thread must have stopped (its queue handles dropped).
    pub fn close(self) {
        for k in self.interfaces {
            let name = k.name;
            match k.tap.close() {
                Ok(()) => tracing::info!("kernel interface {name} removed"),
                Err(e) => tracing::warn!("kernel interface {name}: {e}"),
            }
        }
    }
}

impl KernelInterface {
    /// Replace the addresses (a reload changed the port's); routes via the old prefixes go
    /// first and come back with the next route sync.
    fn resync_addresses(&mut self, netlink: &mut Netlink, wanted: Addresses) {
        for r in std::mem::take(&mut self.routes) {
            if let Err(e) = netlink.del_host_route(self.ifindex, r.0, r.1) {
                tracing::warn!(
                    "{}: removing host route {} via {}: {e}",
                    self.name,
                    r.0,
                    r.1
                );
            }
        }
        if wanted.ipv6.is_some() != self.addresses.ipv6.is_some() {
            if let Err(e) = write_sysctls(&plan::ipv6_sysctls(&self.name, wanted.ipv6.is_some())) {
                tracing::error!("{}: {e}", self.name);
            }
        }
        let (remove, add) = plan::address_changes(&self.addresses, &wanted);
        for (a, l) in remove {
            match netlink.del_address(self.ifindex, a, l) {
                Ok(()) => tracing::info!("{}: address {a}/{l} removed", self.name),
                Err(e) => tracing::warn!("{}: removing address {a}/{l}: {e}", self.name),
            }
        }
        for (a, l) in add {
            match netlink.add_address(self.ifindex, a, l) {
                Ok(()) => tracing::info!("{}: address {a}/{l} added", self.name),
                Err(e) => tracing::error!("{}: adding address {a}/{l}: {e}", self.name),
            }
        }
        self.addresses = wanted;
    }
}
