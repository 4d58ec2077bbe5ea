//! The daemon: everything start-up does short of DPDK ([`prepare`], which `vipd --check` runs
//! too), then EAL and ports up, workers pinned and running, the API and health checker
//! started, the exception path's kernel interfaces and thread (crate::kernel), and the control
//! loop until SIGINT/SIGTERM.

mod control_loop;
pub mod eal;
mod learn;
mod ports;
pub mod primary;
pub mod reload_outcome;
mod restore;
mod views;
mod watchdog;

use crate::api::{self, ApiServer};
use crate::config::{Config, Valid};
use crate::health::Checker;
use crate::kernel::exception::ExceptionPath;
use crate::kernel::KernelInterfaces;
use crate::neighbours::NeighbourTable;
use crate::running::{Env, Running};
use crate::scaleout::{self, tables::TableFingerprint, Scaleout};
use crate::stats::StatsBook;
use crate::view::{Shared, View};
use arc_swap::ArcSwap;
use control_loop::Control;
use crossbeam::channel::unbounded;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vipd_dataplane::flow::FlowTable;
use vipd_dataplane::flow_sample::FlowSampler;
use vipd_dataplane::io::dpdk::{self, Eal, Mempool, DEFAULT_DATA_ROOM};
use vipd_dataplane::io::lcore;
use vipd_dataplane::io::pdump::CaptureServer;
use vipd_dataplane::pipeline::WorkerState;
use vipd_dataplane::sched::load::SharedLoad;
use vipd_dataplane::trace::Tracer;
use vipd_dataplane::wire::MacAddr;
use vipd_dataplane::worker::{Rings, Worker};

/// Most services a snapshot may bring without reallocating workers' cursors.
const MAX_SERVICES_HINT: usize = 256;

/// A configuration ready to run: checked by everything start-up checks before DPDK.
pub struct Prepared {
    /// The configuration file.
    pub path: PathBuf,
    /// The configuration.
    pub config: Config,
    /// Its validation.
    pub valid: Valid,
    /// The API's tokens and TLS configuration.
    pub api: api::Secrets,
    /// The consistent-hash tables the configuration gives (every real server up).
    pub tables: Vec<TableFingerprint>,
}

/// Read, validate and try everything that does not need DPDK: the snapshot is built once (so
/// a scheduler that cannot be built fails here, not after the ports are up), the API token is
/// read. `vipd --check` is exactly this.
pub fn prepare(path: &Path) -> Result<Prepared, String> {
    let (config, valid) = Config::load(path).map_err(|e| e.to_string())?;
    let secrets = api::secrets(&config.api).map_err(|e| format!("{}: {e}", path.display()))?;
    let nic_macs = vec![MacAddr([2, 0, 0, 0, 0, 1]); config.ports.len()];
    let resolved = HashMap::new();
    let (_, applied) = Running::start(
        path.to_owned(),
        config.clone(),
        valid.clone(),
        &Env {
            nic_macs: &nic_macs,
            resolved: &resolved,
        },
    )
    .map_err(|e| format!("{}: services: {e}", path.display()))?;
    Ok(Prepared {
        path: path.to_owned(),
        config,
        valid,
        api: secrets,
        tables: scaleout::tables::fingerprints(&applied.snapshot),
    })
}

/// Run the daemon until SIGINT/SIGTERM. Errors before the workers start are returned (vipd
/// exits 1 with the message); afterwards problems are logged and counted.
pub fn run(config_path: &Path) -> Result<(), String> {
    let prepared = prepare(config_path)?;
    for w in &prepared.valid.warnings {
        tracing::warn!("{w}");
    }
    let config = prepared.config.clone();
    api::check_descriptors(&config, config_path);
    // What the previous vipd kept: box drain, down real servers, unsaved API changes (which
    // never touch a restart-only key, so `config` still sets up EAL, ports and threads).
    let restored = restore::restore(
        &prepared.path,
        prepared.config.clone(),
        prepared.valid.clone(),
    );
    let state = Arc::new(restored.file);
    // Before any port (and its kernel interface, which BGP runs over) comes up.
    let bird = scaleout::withdraw_at_start(&restored.config);
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
    primary::check_host(&config)?;
    let args = eal::eal_args(&config);
    tracing::info!("EAL arguments: {}", args.join(" "));
    let eal = Eal::init(&args).map_err(|e| format!("DPDK EAL: {e}"))?;
    // Ours once the EAL holds the prefix; removed on every way out from here.
    let _hugepage_files = primary::HugepageFiles::of(&config.eal.file_prefix);
    // Secondaries (dpdk-dumpcap, dpdk-pdump) can join only a primary on shared hugepages.
    let capture = if config.eal.hugepages {
        Some(CaptureServer::start(&eal).map_err(|e| format!("packet capture: {e}"))?)
    } else {
        None
    };
    let workers_n = config.dataplane.worker_cores.len();
    if let Some(w) = eal::pool_warning(&config) {
        tracing::warn!("{w}");
    }
    let pool = Mempool::create(
        &eal,
        "vipd_pool",
        eal::pool_size(&config),
        256,
        DEFAULT_DATA_ROOM,
        dpdk::SOCKET_ANY,
    )
    .map_err(|e| format!("mbuf pool: {e}"))?;
    let mut ports = ports::bring_up(&eal, &config, config_path, &pool)?;
    primary::capture_hints(&config)
        .iter()
        .for_each(|h| tracing::info!("{h}"));
    let nic_macs: Vec<MacAddr> = ports.iter().map(|p| p.mac).collect();
    let mut kernel = KernelInterfaces::create(
        &eal,
        &config,
        &prepared.valid.ports,
        &nic_macs,
        &pool,
        config_path,
    )?;
    let taps = kernel.taps()?;
    let kernel_counters = Arc::clone(&kernel.counters);

    let neighbours = NeighbourTable::new(config.neighbour_timers.clone());
    let resolved = neighbours.resolved();
    let (mut running, applied) = Running::start_with(
        prepared.path.clone(),
        restored.config,
        restored.valid,
        &Env {
            nic_macs: &nic_macs,
            resolved: &resolved,
        },
        restored.down,
    )?;
    running.unsaved_changes = restored.unsaved_changes;
    let mut neighbours = neighbours;
    neighbours.set_wanted(&applied.wanted, &applied.statics);
    let snapshot = Arc::new(ArcSwap::from_pointee(applied.snapshot));
    let rings = Arc::new(Rings::new(workers_n, eal::RING_CAPACITY));
    let worker_stop = Arc::new(AtomicBool::new(false));

    // Every worker's connection counts, read by every worker (lc, wlc, thresholds).
    let load = Arc::new(SharedLoad::new(
        workers_n,
        config.dataplane.max_real_servers as usize,
    ));
    let mut counters = Vec::with_capacity(workers_n);
    let mut backend_stats = Vec::with_capacity(workers_n);
    let mut samplers = Vec::with_capacity(workers_n);
    let mut tracers = Vec::with_capacity(workers_n);
    let mut workers = Vec::with_capacity(workers_n);
    for (w, &core) in config.dataplane.worker_cores.iter().enumerate() {
        let queues = ports
            .iter()
            .map(|p| p.port.queue(w as u16))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("worker {w}: {e}"))?;
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
        counters.push(Arc::clone(&state.counters));
        backend_stats.push(Arc::clone(&state.backends));
        let sampler = Arc::new(FlowSampler::default());
        samplers.push(Arc::clone(&sampler));
        let tracer = Arc::new(Tracer::default());
        tracers.push(Arc::clone(&tracer));
        workers.push((
            core,
            Worker {
                state,
                queues,
                snapshot: Arc::clone(&snapshot),
                rings: Arc::clone(&rings),
                stop: Arc::clone(&worker_stop),
                idle_sleep: Duration::from_micros(u64::from(config.dataplane.idle_sleep_us)),
                sampler,
                tracer,
            },
        ));
    }

    let (cmd_tx, cmd_rx) = crossbeam::channel::bounded(api::COMMAND_QUEUE);
    let (transition_tx, transition_rx) = unbounded();
    let checker = Checker::spawn(transition_tx)?;
    // Before the scale-out thread looks: which real servers have a check is known from start.
    checker.set_targets(running.check_targets());
    let scaleout = Scaleout::spawn(
        bird,
        scaleout::Sources {
            snapshot: Arc::clone(&snapshot),
            health: checker.status(),
            checks: checker.targets(),
            workers: counters.clone(),
            state: Some(Arc::clone(&state)),
            drained: restored.box_drained,
        },
    )?;
    let shared = Arc::new(Shared {
        workers: counters,
        backends: backend_stats,
        kernel: Arc::clone(&kernel_counters),
        view: ArcSwap::from_pointee(View::default()),
        commands: cmd_tx,
        health: checker.handle(),
        tokens: prepared.api.tokens,
        admissions: api::Admissions::new(&config.api),
        samplers,
        tracers,
        listing: tokio::sync::Mutex::new(()),
        scaleout: scaleout.handle(),
    });
    let api_server = ApiServer::start(&config.api, prepared.api.tls, Arc::clone(&shared))
        .map_err(|e| e.to_string())?;
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

    // Workers run on the EAL's lcore threads (pinned by `--lcores`), not on registered
    // std threads: DPDK refuses to serve secondaries (captures) once a thread is registered.
    let result = (|| {
        let mut jobs = Vec::new();
        let mut exception_job = None;
        for (w, (core, worker)) in workers.into_iter().enumerate() {
            let lcore = eal::worker_lcore(w);
            match lcore::launch(&eal, lcore, Box::new(move || worker.run())) {
                Ok(job) => {
                    tracing::info!("worker {w} on core {core} (lcore {lcore})");
                    jobs.push(job);
                }
                Err(e) => {
                    worker_stop.store(true, Ordering::Relaxed);
                    return Err(format!("cannot start worker {w}: {e}"));
                }
            }
        }
        if !taps.is_empty() {
            let (rings, counters, stop) = (
                Arc::clone(&rings),
                Arc::clone(&kernel_counters),
                Arc::clone(&worker_stop),
            );
            let lcore = eal::exception_lcore(workers_n);
            let run = Box::new(move || {
                ExceptionPath {
                    taps,
                    rings: &rings,
                    counters: &counters,
                    stop: &stop,
                }
                .run()
            });
            match lcore::launch(&eal, lcore, run) {
                Ok(job) => {
                    tracing::info!(
                        "exception path on core {} (lcore {lcore})",
                        config.dataplane.control_core
                    );
                    exception_job = Some(job);
                }
                Err(e) => {
                    worker_stop.store(true, Ordering::Relaxed);
                    return Err(format!("cannot start the exception path: {e}"));
                }
            }
        }
        let mut control = Control {
            running,
            neighbours,
            snapshot: &snapshot,
            rings: &rings,
            pool: &pool,
            ports: &mut ports,
            nic_macs,
            shared: &shared,
            kernel: &mut kernel,
            checker,
            transitions: transition_rx,
            book: StatsBook::default(),
            counters: Default::default(),
            retired: Vec::new(),
            step3: HashMap::new(),
            scaleout: scaleout.handle(),
            vitals: watchdog::Vitals::new(shared.workers.clone(), std::time::Instant::now()),
            state: &state,
            reloads: reload_outcome::Recorder::from_env(),
        };
        control.run(&stop, &reload, &cmd_rx);
        worker_stop.store(true, Ordering::Relaxed);
        for (w, job) in jobs.into_iter().enumerate() {
            if !job.wait() {
                tracing::error!("worker {w} panicked");
            }
        }
        if exception_job.is_some_and(|j| !j.wait()) {
            tracing::error!("the exception path panicked");
        }
        Ok(())
    })();
    drop(api_server);
    drop(capture);
    drop(scaleout);
    // Frames still in the rings go back to the pool before the ports close.
    while rings.to_control.pop().is_some() {}
    while rings.to_kernel.pop().is_some() {}
    for inbox in &rings.inboxes {
        while inbox.pop().is_some() {}
    }
    kernel.close();
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
