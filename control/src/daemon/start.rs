//! The daemon's start-up steps, in order, each a type holding what it built:
//! [`Startup`] (no DPDK; with [`Kept`] and [`Handover`], what later steps take), the EAL ([`start_eal`]), [`Io`] (capture server, mbuf pool, ports,
//! kernel interfaces, rings), [`Dataplane`] (the first snapshot and the workers, not yet
//! launched), [`Services`] (health checker, scale-out thread, API). Teardown is drop order:
//! `Services` goes first (API, then the scale-out thread), then [`Io`]'s `Drop` (capture
//! server, frames in the rings, kernel interfaces, ports).

use super::error::StartError;
use super::ports::{self, RunningPort};
use super::restore::{self, Restored};
use super::{eal, primary, MAX_SERVICES_HINT};
use crate::api::{self, ApiServer};
use crate::backend_slots::RsIdentity;
use crate::config::bond::BondMode;
use crate::config::{Config, Valid};
use crate::health::{Checker, Transition};
use crate::kernel::exception::Tap;
use crate::kernel::KernelInterfaces;
use crate::neighbours::NeighbourTable;
use crate::running::{Env, Running};
use crate::scaleout::driver::BirdDriver;
use crate::scaleout::{self, Scaleout};
use crate::state_file::StateFile;
use crate::view::{Command, Shared, View};
use arc_swap::ArcSwap;
use crossbeam::channel::{unbounded, Receiver};
use std::collections::HashSet;
use std::mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use vipd_dataplane::backend_stats::BackendStats;
use vipd_dataplane::counters::WorkerCounters;
use vipd_dataplane::flow::FlowTable;
use vipd_dataplane::flow_sample::FlowSampler;
use vipd_dataplane::io::dpdk::{self, Eal, Mempool, DEFAULT_DATA_ROOM};
use vipd_dataplane::io::pdump::CaptureServer;
use vipd_dataplane::pipeline::WorkerState;
use vipd_dataplane::sched::load::SharedLoad;
use vipd_dataplane::snapshot::Snapshot;
use vipd_dataplane::trace::Tracer;
use vipd_dataplane::wire::MacAddr;
use vipd_dataplane::worker::{Rings, Worker};

/// Step 1, before DPDK: the configuration prepared, the signals caught, the host checked.
pub struct Startup {
    /// The configuration file.
    pub path: PathBuf,
    /// The file's configuration: it sets up EAL, ports and threads.
    pub config: Config,
    /// Its validation.
    pub valid: Valid,
    /// The state file.
    pub state: Arc<StateFile>,
    /// Set by SIGINT and SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP.
    pub reload: Arc<AtomicBool>,
}

/// What the previous vipd kept (the state file), for the first snapshot.
pub struct Kept {
    /// The configuration in force: the file's plus unsaved API changes.
    pub config: Config,
    /// Its validation.
    pub valid: Valid,
    /// API changes not saved to the file.
    pub unsaved_changes: u64,
    /// The box's maintenance switch.
    pub box_drained: bool,
    /// Real servers down.
    pub down: HashSet<RsIdentity>,
}

/// What step 1 made for [`Services`]: the API's secrets and the BGP driver.
pub struct Handover {
    /// The API's tokens and TLS configuration.
    pub secrets: api::Secrets,
    /// The BGP driver, every VIP withdrawn (None without `[bgp]`).
    pub bird: Option<BirdDriver>,
}

impl Startup {
    /// Everything start-up does before the EAL.
    pub fn read(config_path: &Path) -> Result<(Startup, Kept, Handover), StartError> {
        let prepared = super::prepare(config_path)?;
        for w in &prepared.valid.warnings {
            tracing::warn!("{w}");
        }
        let config = &prepared.config;
        api::check_descriptors(config, config_path);
        // What the previous vipd kept: box drain, down real servers, unsaved API changes
        // (which never touch a restart-only key, so `config` still sets up EAL, ports and
        // threads).
        let Restored {
            config: kept_config,
            valid: kept_valid,
            unsaved_changes,
            box_drained,
            down,
            file,
        } = restore::restore(
            &prepared.path,
            prepared.config.clone(),
            prepared.valid.clone(),
        );
        // Before any port (and its kernel interface, which BGP runs over) comes up.
        let bird = scaleout::withdraw_at_start(&kept_config);
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(StartError::Signals)?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
            .map_err(StartError::Signals)?;
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
        primary::check_host(config)?;
        Ok((
            Startup {
                path: prepared.path,
                config: prepared.config,
                valid: prepared.valid,
                state: Arc::new(file),
                stop,
                reload,
            },
            Kept {
                config: kept_config,
                valid: kept_valid,
                unsaved_changes,
                box_drained,
                down,
            },
            Handover {
                secrets: prepared.api,
                bird,
            },
        ))
    }
}

/// Step 2: the EAL, with the lcores pinned by `--lcores`.
pub fn start_eal(config: &Config) -> Result<Eal, StartError> {
    let args = eal::eal_args(config);
    tracing::info!("EAL arguments: {}", args.join(" "));
    Eal::init(&args).map_err(StartError::Eal)
}

/// Step 3: where frames go: the capture server, the mbuf pool, the ports, the kernel
/// interfaces and the rings between threads. Dropping it puts back what is in the rings
/// before the ports close.
pub struct Io<'eal> {
    /// Secondaries (dpdk-dumpcap, dpdk-pdump) can join only a primary on shared hugepages.
    capture: Option<CaptureServer<'eal>>,
    /// The mbuf pool.
    pub pool: Mempool,
    /// The started ports.
    pub ports: Vec<RunningPort>,
    /// The ports' MACs.
    pub nic_macs: Vec<MacAddr>,
    /// The kernel interfaces.
    pub kernel: KernelInterfaces,
    /// The exception path's handles of the kernel interfaces' taps (taken by its thread).
    pub taps: Vec<Tap>,
    /// Between workers, the exception path and the control thread.
    pub rings: Arc<Rings>,
}

impl<'eal> Io<'eal> {
    /// Bring up the capture server, pool, ports and kernel interfaces of `start`'s
    /// configuration.
    pub fn bring_up(eal: &'eal Eal, start: &Startup) -> Result<Io<'eal>, StartError> {
        let config = &start.config;
        let config_path = &start.path;
        let capture = if config.eal.hugepages {
            Some(CaptureServer::start(eal).map_err(StartError::Capture)?)
        } else {
            None
        };
        if let Some(w) = eal::pool_warning(config) {
            tracing::warn!("{w}");
        }
        let pool = Mempool::create(
            eal,
            "vipd_pool",
            eal::pool_size(config),
            256,
            DEFAULT_DATA_ROOM,
            dpdk::SOCKET_ANY,
        )
        .map_err(StartError::Pool)?;
        let mut io = Io {
            capture,
            pool,
            ports: Vec::new(),
            nic_macs: Vec::new(),
            kernel: KernelInterfaces::none(),
            taps: Vec::new(),
            rings: Arc::new(Rings::new(
                config.dataplane.worker_cores.len(),
                eal::RING_CAPACITY,
            )),
        };
        io.ports = ports::bring_up(eal, config, config_path, &io.pool)?;
        primary::capture_hints(config)
            .iter()
            .for_each(|h| tracing::info!("{h}"));
        io.nic_macs = io.ports.iter().map(|p| p.mac).collect();
        io.kernel = KernelInterfaces::create(
            eal,
            config,
            &start.valid.ports,
            &io.nic_macs,
            &io.pool,
            config_path,
        )?;
        io.taps = io.kernel.taps()?;
        Ok(io)
    }
}

impl Drop for Io<'_> {
    fn drop(&mut self) {
        drop(self.capture.take());
        // Frames still in the rings go back to the pool before the ports close.
        while self.rings.to_control.pop().is_some() {}
        while self.rings.to_kernel.pop().is_some() {}
        for inbox in &self.rings.inboxes {
            while inbox.pop().is_some() {}
        }
        mem::replace(&mut self.kernel, KernelInterfaces::none()).close();
        for p in self.ports.drain(..) {
            if let Err(e) = p.port.close() {
                tracing::warn!("port {}: {e}", p.name);
            }
        }
    }
}

/// Step 4: the running configuration's first snapshot, the neighbour table and the workers
/// (built, not launched).
pub struct Dataplane {
    /// The running configuration.
    pub running: Running,
    /// The neighbour table, told what the snapshot needs resolved.
    pub neighbours: NeighbourTable,
    /// Where snapshots are published.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Tells the workers and the exception path to stop.
    pub worker_stop: Arc<AtomicBool>,
    /// Every worker's counters.
    pub counters: Vec<Arc<WorkerCounters>>,
    /// Every worker's per-real-server counters.
    pub backend_stats: Vec<Arc<BackendStats>>,
    /// Every worker's flow sampler.
    pub samplers: Vec<Arc<FlowSampler>>,
    /// Every worker's packet tracer.
    pub tracers: Vec<Arc<Tracer>>,
    /// The workers with their cores.
    pub workers: Vec<(usize, Worker)>,
}

impl Dataplane {
    /// The first snapshot (the state file's configuration, the NICs' MACs) and one worker
    /// per worker core, each with its queue of every port.
    pub fn build(start: &Startup, kept: Kept, io: &Io) -> Result<Dataplane, StartError> {
        let config = &start.config;
        let workers_n = config.dataplane.worker_cores.len();
        let neighbours = NeighbourTable::new(config.neighbour_timers.clone());
        let resolved = neighbours.resolved();
        let (mut running, applied) = Running::start_with(
            start.path.clone(),
            kept.config,
            kept.valid,
            &Env {
                nic_macs: &io.nic_macs,
                resolved: &resolved,
            },
            kept.down,
        )?;
        running.unsaved_changes = kept.unsaved_changes;
        let mut neighbours = neighbours;
        neighbours.set_wanted(&applied.wanted, &applied.statics);
        let snapshot = Arc::new(ArcSwap::from_pointee(applied.snapshot));
        let worker_stop = Arc::new(AtomicBool::new(false));
        // Every worker's connection counts, read by every worker (lc, wlc, thresholds).
        let load = Arc::new(SharedLoad::new(
            workers_n,
            config.dataplane.max_real_servers as usize,
        ));
        let mut dp = Dataplane {
            running,
            neighbours,
            snapshot,
            worker_stop,
            counters: Vec::with_capacity(workers_n),
            backend_stats: Vec::with_capacity(workers_n),
            samplers: Vec::with_capacity(workers_n),
            tracers: Vec::with_capacity(workers_n),
            workers: Vec::with_capacity(workers_n),
        };
        // 802.3ad bonds send their LACPDUs from inside tx bursts only: every worker's queue
        // on one gets a burst at least every few milliseconds, frames or not.
        let tx_keepalive: Vec<usize> = io
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.bond_mode == Some(BondMode::Lacp))
            .map(|(i, _)| i)
            .collect();
        for (w, &core) in config.dataplane.worker_cores.iter().enumerate() {
            let queues = io
                .ports
                .iter()
                .map(|p| p.port.queue(w as u16))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| StartError::Queue { worker: w, source })?;
            let table = FlowTable::with_capacities(
                config.flows.capacity_per_worker,
                config.flows.v6_capacity(),
                config.flows.timeouts.to_timeouts(),
                vipd_dataplane::flow::Pages::default(),
            );
            let mut state = WorkerState::with_shared_load(
                w as u16,
                workers_n as u16,
                table,
                MAX_SERVICES_HINT,
                Arc::clone(&load),
            );
            state.set_fragment_slots(config.flows.fragment_slots);
            state.set_persistence_capacity(config.flows.persistence_per_worker);
            dp.counters.push(Arc::clone(&state.counters));
            dp.backend_stats.push(Arc::clone(&state.backends));
            let sampler = Arc::new(FlowSampler::default());
            dp.samplers.push(Arc::clone(&sampler));
            let tracer = Arc::new(Tracer::default());
            dp.tracers.push(Arc::clone(&tracer));
            dp.workers.push((
                core,
                Worker {
                    state,
                    queues,
                    snapshot: Arc::clone(&dp.snapshot),
                    rings: Arc::clone(&io.rings),
                    stop: Arc::clone(&dp.worker_stop),
                    idle_sleep: Duration::from_micros(u64::from(config.dataplane.idle_sleep_us)),
                    tx_keepalive: tx_keepalive.clone(),
                    sampler,
                    tracer,
                },
            ));
        }
        Ok(dp)
    }
}

/// Step 5: the threads around the dataplane. Fields drop in order: the API stops taking
/// requests before the scale-out thread withdraws and stops.
pub struct Services {
    /// The API and metrics server (held: dropping it stops it).
    _api: ApiServer,
    /// The scale-out thread (BGP).
    pub scaleout: Scaleout,
    /// What the API and the control loop share.
    pub shared: Arc<Shared>,
    /// The API's commands to the control loop.
    pub commands: Receiver<Command>,
}

/// The health checker and its verdicts, for the control loop (which owns them).
pub struct Health {
    /// The checker.
    pub checker: Checker,
    /// Its verdicts.
    pub transitions: Receiver<Transition>,
}

impl Services {
    /// Start the health checker, the scale-out thread and the API.
    pub fn start(
        start: &Startup,
        handover: Handover,
        box_drained: bool,
        io: &Io,
        dp: &Dataplane,
    ) -> Result<(Services, Health), StartError> {
        let config = &start.config;
        let (cmd_tx, cmd_rx) = crossbeam::channel::bounded(api::COMMAND_QUEUE);
        let (transition_tx, transition_rx) = unbounded();
        let checker = Checker::spawn(transition_tx)?;
        // Before the scale-out thread looks: which real servers have a check is known from
        // start.
        checker.set_targets(dp.running.check_targets());
        let scaleout = Scaleout::spawn(
            handover.bird,
            scaleout::Sources {
                snapshot: Arc::clone(&dp.snapshot),
                health: checker.status(),
                checks: checker.targets(),
                workers: dp.counters.clone(),
                state: Some(Arc::clone(&start.state)),
                drained: box_drained,
            },
        )?;
        let shared = Arc::new(Shared {
            workers: dp.counters.clone(),
            backends: dp.backend_stats.clone(),
            kernel: Arc::clone(&io.kernel.counters),
            view: ArcSwap::from_pointee(View::default()),
            commands: cmd_tx,
            health: checker.handle(),
            tokens: handover.secrets.tokens,
            admissions: api::Admissions::new(&config.api),
            samplers: dp.samplers.clone(),
            tracers: dp.tracers.clone(),
            listing: tokio::sync::Mutex::new(()),
            scaleout: scaleout.handle(),
        });
        let api = ApiServer::start(&config.api, handover.secrets.tls, Arc::clone(&shared))?;
        tracing::info!(
            "API and metrics on {}://{}{}",
            if config.api.tls_certificate.is_some() {
                "https"
            } else {
                "http"
            },
            config.api.listen,
            config
                .api
                .socket
                .as_ref()
                .map_or(String::new(), |p| format!(", admin socket {}", p.display()))
        );
        Ok((
            Services {
                _api: api,
                scaleout,
                shared,
                commands: cmd_rx,
            },
            Health {
                checker,
                transitions: transition_rx,
            },
        ))
    }
}
