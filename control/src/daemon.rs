//! The daemon: EAL and ports up, workers pinned and running, then the control loop
//! (neighbours, snapshot publication, reload, API) until SIGINT/SIGTERM.

use crate::api::{self, Command, ControlView, Shared};
use crate::apply::{self, BackendIds};
use crate::config::Config;
use crate::metrics::ControlGauges;
use crate::neighbours::{arp_request_frame, NeighbourState, NeighbourTable};
use arc_swap::ArcSwap;
use crossbeam::channel::{unbounded, Receiver};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vipd_dataplane::flow::FlowTable;
use vipd_dataplane::io::dpdk::{
    self, Eal, Mempool, Port, PortConfig as DpdkPortConfig, DEFAULT_DATA_ROOM,
};
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::pipeline::WorkerState;
use vipd_dataplane::snapshot::Snapshot;
use vipd_dataplane::wire::{arp, ethernet, MacAddr};
use vipd_dataplane::worker::{Parcel, ParcelKind, Rings, Worker, BURST};

/// Slots of each ring between threads.
const RING_CAPACITY: usize = 1024;
/// Control loop period.
const TICK: Duration = Duration::from_millis(50);
/// Most services a snapshot may bring without reallocating workers' cursors.
const MAX_SERVICES_HINT: usize = 256;

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

fn is_pci_address(dev: &str) -> bool {
    !dev.contains('=') && dev.contains(':') && dev.contains('.') && !dev.starts_with("net_")
}

/// The DPDK name a port's device is found by: a vdev's name before its arguments, or the PCI
/// address.
fn device_name(dev: &str) -> &str {
    dev.split(',').next().unwrap_or(dev)
}

/// Mbufs for ports x queues x descriptors, the rings, the bursts in flight, plus slack; rounded
/// to 2^n - 1 (the mempool's best size).
fn pool_size(config: &Config) -> u32 {
    if config.dataplane.mbufs > 0 {
        return config.dataplane.mbufs;
    }
    let dp = &config.dataplane;
    let workers = dp.worker_cores.len() as u64;
    let ports = config.ports.len() as u64;
    let need = ports * workers * (u64::from(dp.rx_descriptors) + u64::from(dp.tx_descriptors))
        + (workers + 1) * RING_CAPACITY as u64
        + workers * (ports + 2) * BURST as u64
        + 4096;
    let n = need.next_power_of_two().min(1 << 24);
    (n - 1) as u32
}

struct RunningPort {
    name: String,
    device: String,
    port: Port,
    mac: MacAddr,
    link_up: bool,
}

/// Run the daemon until SIGINT/SIGTERM. Errors before the workers start are returned (vipd
/// exits 1 with the message); afterwards problems are logged and counted.
pub fn run(config_path: &Path) -> Result<(), String> {
    let mut config = Config::load(config_path).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .map_err(|e| format!("signal handler: {e}"))?;

    if let Some(w) = config
        .dataplane
        .worker_cores
        .iter()
        .position(|&c| c == config.dataplane.control_core)
    {
        tracing::warn!(
            "control_core {} is also the core of worker {w}: fine with idle_sleep_us > 0 on a small box, not for production",
            config.dataplane.control_core
        );
    }
    let args = eal_args(&config);
    tracing::info!("EAL arguments: {}", args.join(" "));
    let eal = Eal::init(&args).map_err(|e| format!("DPDK EAL: {e}"))?;
    let workers_n = config.dataplane.worker_cores.len();
    let pool = Mempool::create(
        &eal,
        "vipd_pool",
        pool_size(&config),
        256,
        DEFAULT_DATA_ROOM,
        dpdk::SOCKET_ANY,
    )
    .map_err(|e| format!("mbuf pool: {e}"))?;
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
            queues: workers_n as u16,
            rx_desc: config.dataplane.rx_descriptors,
            tx_desc: config.dataplane.tx_descriptors,
            rss: true,
        };
        let mut port = Port::configure(&eal, id, &cfg, &pool)
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
        let mac = match &pc.mac {
            Some(m) => {
                // A MAC other than the NIC's: receive everything, the pipeline filters.
                if let Err(e) = port.set_promiscuous(true) {
                    tracing::warn!("port {}: promiscuous mode: {e}", pc.name);
                }
                m.parse().unwrap_or(nic_mac)
            }
            None => nic_mac,
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
        });
    }
    let nic_macs: Vec<MacAddr> = ports.iter().map(|p| p.mac).collect();

    let mut ids = BackendIds::default();
    let mut neighbours = NeighbourTable::new(config.neighbour_timers.clone());
    let mut generation = 1;
    let applied = apply::build(
        &config,
        config_path,
        &mut ids,
        &nic_macs,
        &neighbours.resolved(),
        generation,
    )
    .map_err(|e| e.to_string())?;
    neighbours.set_wanted(&applied.wanted, &applied.statics);
    let snapshot = Arc::new(ArcSwap::from_pointee(applied.snapshot));
    let rings = Arc::new(Rings::new(workers_n, RING_CAPACITY));
    let worker_stop = Arc::new(AtomicBool::new(false));

    let mut counters = Vec::with_capacity(workers_n);
    let mut workers = Vec::with_capacity(workers_n);
    for (w, &core) in config.dataplane.worker_cores.iter().enumerate() {
        let queues = ports
            .iter()
            .map(|p| p.port.queue(w as u16))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("worker {w}: {e}"))?;
        let table = FlowTable::with_capacity(
            config.flows.capacity_per_worker,
            config.flows.timeouts.to_timeouts(),
        );
        let state = WorkerState::new(w as u16, workers_n as u16, table, MAX_SERVICES_HINT);
        counters.push(Arc::clone(&state.counters));
        workers.push((
            core,
            Worker {
                state,
                queues,
                snapshot: Arc::clone(&snapshot),
                rings: Arc::clone(&rings),
                stop: Arc::clone(&worker_stop),
                idle_sleep: Duration::from_micros(u64::from(config.dataplane.idle_sleep_us)),
            },
        ));
    }

    let (cmd_tx, cmd_rx) = unbounded();
    let shared = Arc::new(Shared {
        workers: counters,
        view: Mutex::new(ControlView::default()),
        commands: cmd_tx,
    });
    let api_stop = Arc::new(AtomicBool::new(false));
    let api_thread = api::serve(
        config.api.listen,
        Arc::clone(&shared),
        Arc::clone(&api_stop),
    )?;
    tracing::info!("API and metrics on http://{}", config.api.listen);

    let eal_ref = &eal;
    let result = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (w, (core, worker)) in workers.into_iter().enumerate() {
            let h = std::thread::Builder::new()
                .name(format!("vipd-w{w}"))
                .spawn_scoped(scope, move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!("worker {w}: cannot pin to core {core}");
                    }
                    match dpdk::register_thread(eal_ref) {
                        Ok(lcore) => tracing::info!("worker {w} on core {core} (lcore {lcore})"),
                        Err(e) => {
                            tracing::warn!("worker {w}: no lcore id ({e}); mempool cache unused")
                        }
                    }
                    worker.run();
                    dpdk::unregister_thread(eal_ref);
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    worker_stop.store(true, Ordering::Relaxed);
                    return Err(format!("cannot start worker {w}: {e}"));
                }
            }
        }
        let mut control = Control {
            path: config_path.to_owned(),
            config: &mut config,
            ids: &mut ids,
            neighbours: &mut neighbours,
            generation: &mut generation,
            snapshot: &snapshot,
            rings: &rings,
            pool: &pool,
            ports: &mut ports,
            nic_macs: &nic_macs,
            shared: &shared,
            control_tx: 0,
            control_rx: 0,
        };
        control.run(&stop, &reload, &cmd_rx);
        worker_stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        Ok(())
    });
    api_stop.store(true, Ordering::Relaxed);
    let _ = api_thread.join();
    // Frames still in the rings go back to the pool before the ports close.
    while rings.to_control.pop().is_some() {}
    for inbox in &rings.inboxes {
        while inbox.pop().is_some() {}
    }
    for p in ports {
        if let Err(e) = p.port.close() {
            tracing::warn!("port {}: {e}", p.name);
        }
    }
    let runtime_dir = eal.runtime_dir();
    // SAFETY: every worker has been joined, every queue handle and mbuf we held is dropped or
    // back in its pool, and no DPDK call follows.
    if let Err(e) = unsafe { eal.cleanup() } {
        tracing::warn!("{e}");
    }
    // DPDK leaves its (by then empty) runtime directory behind; vipd leaves nothing.
    let _ = std::fs::remove_dir_all(&runtime_dir);
    tracing::info!("stopped");
    result
}

struct Control<'a> {
    path: PathBuf,
    config: &'a mut Config,
    ids: &'a mut BackendIds,
    neighbours: &'a mut NeighbourTable,
    generation: &'a mut u64,
    snapshot: &'a ArcSwap<Snapshot>,
    rings: &'a Rings,
    pool: &'a Mempool,
    ports: &'a mut Vec<RunningPort>,
    nic_macs: &'a [MacAddr],
    shared: &'a Shared,
    control_tx: u64,
    control_rx: u64,
}

impl Control<'_> {
    fn run(&mut self, stop: &AtomicBool, reload: &AtomicBool, commands: &Receiver<Command>) {
        let mut last_link = Instant::now() - Duration::from_secs(10);
        tracing::info!(
            "vipd running: {} worker(s), {} port(s)",
            self.rings.inboxes.len(),
            self.ports.len()
        );
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut changed = self.learn(now);
            let (requests, expired) = self.neighbours.poll(now);
            changed |= expired;
            for r in requests {
                self.send_request(r.port, r.target);
            }
            if changed {
                self.publish("neighbour change");
            }
            if reload.swap(false, Ordering::Relaxed) {
                match self.reload() {
                    Ok(g) => tracing::info!("SIGHUP: configuration reloaded (generation {g})"),
                    Err(e) => {
                        tracing::error!("SIGHUP: reload refused, running configuration kept: {e}")
                    }
                }
            }
            while let Ok(cmd) = commands.try_recv() {
                match cmd {
                    Command::Reload(reply) => {
                        let r = self.reload();
                        match &r {
                            Ok(g) => tracing::info!("API: configuration reloaded (generation {g})"),
                            Err(e) => tracing::error!(
                                "API: reload refused, running configuration kept: {e}"
                            ),
                        }
                        let _ = reply.send(r);
                    }
                }
            }
            if now.duration_since(last_link) >= Duration::from_secs(1) {
                last_link = now;
                self.poll_links();
            }
            self.update_view();
            std::thread::sleep(TICK);
        }
        tracing::info!("stopping");
    }

    /// Learn from the ARP replies and Neighbour Advertisements the workers handed over. True
    /// when a MAC changed.
    fn learn(&mut self, now: Instant) -> bool {
        use vipd_dataplane::wire::{ipv6, ndisc};
        let mut changed = false;
        while let Some((_port, m)) = self.rings.to_control.pop() {
            self.control_rx += 1;
            let data = m.data();
            let Ok(eth) = ethernet::EthernetFrame::new_checked(data) else {
                continue;
            };
            match eth.ethertype() {
                ethernet::ethertype::ARP => {
                    if let Ok(a) = arp::ArpPacket::new_checked(eth.payload()) {
                        changed |=
                            self.neighbours
                                .learn(IpAddr::V4(a.sender_ip()), a.sender_mac(), now);
                    }
                }
                ethernet::ethertype::IPV6 => {
                    // The dataplane validated it (RFC 4861); only advertisements come here.
                    let Ok(ip) = ipv6::Ipv6Packet::new_checked(eth.payload()) else {
                        continue;
                    };
                    if ip.next_header() != ipv6::NEXT_HEADER_ICMPV6 {
                        continue;
                    }
                    let Ok(na) = ndisc::NdiscPacket::new_checked(ip.payload()) else {
                        continue;
                    };
                    if na.msg_type() != ndisc::NEIGHBOR_ADVERT {
                        continue;
                    }
                    let mac = na.target_ll_addr().unwrap_or_else(|| eth.src());
                    changed |= self.neighbours.learn(IpAddr::V6(na.target()), mac, now);
                }
                _ => {}
            }
        }
        changed
    }

    fn send_request(&mut self, port: u16, target: IpAddr) {
        let Some(p) = self.config.ports.get(usize::from(port)) else {
            return;
        };
        let Some(mac) = self.nic_macs.get(usize::from(port)) else {
            return;
        };
        // ARP for IPv4 next hops, a Neighbour Solicitation (RFC 4861) for IPv6 ones, from the
        // port's address of that family.
        let (arp_buf, ns_buf);
        let (frame, what): (&[u8], &str) = match target {
            IpAddr::V4(t) => {
                let Some(net) = p.ipv4 else {
                    return;
                };
                arp_buf = arp_request_frame(*mac, net.addr(), t);
                (&arp_buf, "ARP request")
            }
            IpAddr::V6(t) => {
                let Some(net) = p.ipv6 else {
                    return;
                };
                ns_buf = crate::neighbours::ns_frame(*mac, net.addr(), t);
                (&ns_buf, "neighbour solicitation")
            }
        };
        let Ok(m) = self.pool.alloc_frame(frame) else {
            tracing::warn!("{what} for {target}: mbuf pool empty");
            return;
        };
        let parcel = Parcel {
            mbuf: m,
            port,
            kind: ParcelKind::Transmit,
        };
        if self
            .rings
            .inboxes
            .first()
            .is_some_and(|q| q.push(parcel).is_ok())
        {
            self.control_tx += 1;
        } else {
            tracing::warn!("{what} for {target}: worker inbox full");
        }
    }

    fn publish(&mut self, why: &str) {
        *self.generation += 1;
        match apply::build(
            self.config,
            &self.path,
            self.ids,
            self.nic_macs,
            &self.neighbours.resolved(),
            *self.generation,
        ) {
            Ok(applied) => {
                self.neighbours
                    .set_wanted(&applied.wanted, &applied.statics);
                self.snapshot.store(Arc::new(applied.snapshot));
                tracing::debug!("snapshot {} published ({why})", *self.generation);
            }
            Err(e) => tracing::error!("snapshot not rebuilt ({why}): {e}"),
        }
    }

    fn reload(&mut self) -> Result<u64, String> {
        let new = Config::load(&self.path).map_err(|e| e.to_string())?;
        let old = &*self.config;
        let same_ports = old.ports.len() == new.ports.len()
            && old
                .ports
                .iter()
                .zip(&new.ports)
                .all(|(a, b)| a.device == b.device);
        if !same_ports
            || old.dataplane.worker_cores != new.dataplane.worker_cores
            || old.eal.file_prefix != new.eal.file_prefix
        {
            return Err("ports, worker cores and EAL settings change only with a restart".into());
        }
        if old.flows.capacity_per_worker != new.flows.capacity_per_worker {
            tracing::warn!("flows.capacity_per_worker changes only with a restart");
        }
        let generation = *self.generation + 1;
        // Build on a copy of the ids: a refused configuration must leave everything as it was.
        let mut ids = self.ids.clone();
        match apply::build(
            &new,
            &self.path,
            &mut ids,
            self.nic_macs,
            &self.neighbours.resolved(),
            generation,
        ) {
            Ok(applied) => {
                *self.ids = ids;
                *self.generation = generation;
                self.neighbours.set_timers(new.neighbour_timers.clone());
                self.neighbours
                    .set_wanted(&applied.wanted, &applied.statics);
                self.snapshot.store(Arc::new(applied.snapshot));
                *self.config = new;
                Ok(generation)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn poll_links(&mut self) {
        for p in self.ports.iter_mut() {
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

    fn update_view(&self) {
        let snap = self.snapshot.load();
        let services: Vec<Value> = snap
            .services
            .iter()
            .map(|s| {
                let rs: Vec<Value> = s
                    .backends
                    .iter()
                    .filter_map(|&id| snap.backend(id))
                    .map(|b| {
                        json!({
                            "ip": b.addr.to_string(), "port": b.port, "weight": b.weight,
                            "mode": b.mode.to_string(), "next_hop": b.next_hop.to_string(),
                            "next_hop_mac": b.next_hop_mac.map(|m| m.to_string()),
                        })
                    })
                    .collect();
                json!({
                    "vip": s.vip.to_string(), "proto": if s.proto == 6 { "tcp" } else { "udp" },
                    "port": s.port,
                    "scheduler": s.scheduler.as_ref().map_or("none (no real server can take flows)", |x| x.kind().as_str()),
                    "real_servers": rs,
                })
            })
            .collect();
        let neighbours: Vec<Value> = self
            .neighbours
            .entries()
            .map(|(ip, n)| {
                json!({
                    "ip": ip.to_string(), "mac": n.mac.map(|m| m.to_string()),
                    "state": format!("{:?}", n.state).to_lowercase(), "port": n.port,
                    "unanswered_requests": n.unanswered,
                })
            })
            .collect();
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "device": p.device, "driver": p.port.driver(), "mac": p.mac.to_string(),
                    "link_up": p.link_up, "queues": p.port.queues(), "rss": p.port.rss_enabled(),
                })
            })
            .collect();
        let status = json!({
            "generation": snap.generation,
            "config": self.path.display().to_string(),
            "workers": self.rings.inboxes.len(),
            "ports": ports,
            "services": services,
            "neighbours": neighbours,
        });
        let count = |st: NeighbourState| {
            self.neighbours
                .entries()
                .filter(|(_, n)| n.state == st)
                .count() as u64
        };
        let gauges = ControlGauges {
            snapshot_generation: snap.generation,
            neighbours: vec![
                ("static", count(NeighbourState::Static)),
                ("incomplete", count(NeighbourState::Incomplete)),
                ("reachable", count(NeighbourState::Reachable)),
            ],
            backends: snap
                .backends()
                .filter_map(|b| {
                    let s = snap.services.get(b.service as usize)?;
                    let proto = if s.proto == 6 { "tcp" } else { "udp" };
                    Some((
                        format!("{}/{proto}", sock(s.vip, s.port)),
                        sock(b.addr, b.port),
                        b.weight,
                        b.next_hop_mac.is_some(),
                    ))
                })
                .collect(),
            ports: self
                .ports
                .iter()
                .map(|p| (p.name.clone(), p.link_up))
                .collect(),
            control_tx: self.control_tx,
            control_rx: self.control_rx,
        };
        if let Ok(mut v) = self.shared.view.lock() {
            v.status = status;
            v.gauges = gauges;
        }
    }
}

fn sock(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}
