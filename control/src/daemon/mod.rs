//! The daemon: everything start-up does short of DPDK ([`prepare`], which `vipd --check` runs
//! too), then the steps of [`start`] (EAL, ports and kernel interfaces, workers, health
//! checker, scale-out thread and API), the workers and the exception path launched on their
//! lcores, and the control loop until SIGINT/SIGTERM.

mod bond;
mod control_loop;
pub mod eal;
mod error;
mod failover;
mod learn;
mod ports;
pub mod primary;
pub mod reload_outcome;
mod restore;
mod start;
mod views;
mod watchdog;

pub use error::StartError;
pub use ports::PortError;
pub use primary::HostError;

use crate::api;
use crate::config::{Config, Valid};
use crate::kernel::exception::ExceptionPath;
use crate::running::{Env, Running};
use crate::scaleout::{self, tables::TableFingerprint};
use crate::stats::StatsBook;
use control_loop::Control;
use start::{Dataplane, Handover, Health, Io, Kept, Services, Startup};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vipd_dataplane::io::dpdk::Eal;
use vipd_dataplane::io::lcore;
use vipd_dataplane::wire::MacAddr;

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
pub fn prepare(path: &Path) -> Result<Prepared, StartError> {
    let (config, valid) = Config::load(path)?;
    let secrets = api::secrets(&config.api).map_err(|source| StartError::Secrets {
        file: path.to_owned(),
        source,
    })?;
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
    .map_err(|source| StartError::Services {
        file: path.to_owned(),
        source,
    })?;
    Ok(Prepared {
        path: path.to_owned(),
        config,
        valid,
        api: secrets,
        tables: scaleout::tables::fingerprints(&applied.snapshot),
    })
}

/// Run the daemon until SIGINT/SIGTERM: the steps of [`start`] one after the other, the
/// workers and the exception path launched, the control loop, then teardown in drop order and
/// the EAL cleaned up. Errors before the workers start are returned (vipd exits 1 with the
/// message); afterwards problems are logged and counted.
pub fn run(config_path: &Path) -> Result<(), StartError> {
    let (start, kept, handover) = Startup::read(config_path)?;
    let eal = start::start_eal(&start.config)?;
    // Ours once the EAL holds the prefix; removed on every way out from here.
    let _hugepage_files = primary::HugepageFiles::of(&start.config.eal.file_prefix);
    let result = serve(&eal, &start, kept, handover)?;
    let runtime_dir = eal.runtime_dir();
    // SAFETY: `serve` returned, so every worker has been joined and every queue handle, port
    // and mbuf we held is dropped, closed or back in its pool; no DPDK call follows.
    if let Err(e) = unsafe { eal.cleanup() } {
        tracing::warn!("{e}");
    }
    // DPDK leaves its (by then empty) runtime directory behind; vipd leaves nothing.
    let _ = std::fs::remove_dir_all(&runtime_dir);
    tracing::info!("stopped");
    result
}

/// Steps 3 to 5, then forward until stopped. The outer error: a step failed (nothing ran, the
/// EAL is left as it is); the inner result: how forwarding ended, after the teardown.
fn serve(
    eal: &Eal,
    start: &Startup,
    kept: Kept,
    handover: Handover,
) -> Result<Result<(), StartError>, StartError> {
    let mut io = Io::bring_up(eal, start)?;
    let box_drained = kept.box_drained;
    let dataplane = Dataplane::build(start, kept, &io)?;
    let (services, health) = Services::start(start, handover, box_drained, &io, &dataplane)?;
    let result = forward(eal, start, &mut io, dataplane, &services, health);
    // Teardown: the API, the scale-out thread, then `io` (frames, kernel interfaces, ports).
    drop(services);
    drop(io);
    Ok(result)
}

/// Launch the workers and the exception path on their lcores, run the control loop until
/// SIGINT/SIGTERM, then stop and join them.
fn forward(
    eal: &Eal,
    start: &Startup,
    io: &mut Io,
    dp: Dataplane,
    services: &Services,
    health: Health,
) -> Result<(), StartError> {
    // Workers run on the EAL's lcore threads (pinned by `--lcores`), not on registered
    // std threads: DPDK refuses to serve secondaries (captures) once a thread is registered.
    let workers_n = dp.workers.len();
    let mut jobs = Vec::new();
    let mut exception_job = None;
    for (w, (core, worker)) in dp.workers.into_iter().enumerate() {
        let lcore = eal::worker_lcore(w);
        match lcore::launch(eal, lcore, Box::new(move || worker.run())) {
            Ok(job) => {
                tracing::info!("worker {w} on core {core} (lcore {lcore})");
                jobs.push(job);
            }
            Err(source) => {
                dp.worker_stop.store(true, Ordering::Relaxed);
                return Err(StartError::Worker { worker: w, source });
            }
        }
    }
    let taps = std::mem::take(&mut io.taps);
    if !taps.is_empty() {
        let (rings, counters, stop) = (
            Arc::clone(&io.rings),
            Arc::clone(&io.kernel.counters),
            Arc::clone(&dp.worker_stop),
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
        match lcore::launch(eal, lcore, run) {
            Ok(job) => {
                tracing::info!(
                    "exception path on core {} (lcore {lcore})",
                    start.config.dataplane.control_core
                );
                exception_job = Some(job);
            }
            Err(e) => {
                dp.worker_stop.store(true, Ordering::Relaxed);
                return Err(StartError::ExceptionPath(e));
            }
        }
    }
    let mut control = Control {
        running: dp.running,
        neighbours: dp.neighbours,
        snapshot: &dp.snapshot,
        rings: &io.rings,
        pool: &io.pool,
        ports: &mut io.ports,
        nic_macs: io.nic_macs.clone(),
        shared: &services.shared,
        kernel: &mut io.kernel,
        checker: health.checker,
        transitions: health.transitions,
        book: StatsBook::default(),
        counters: Default::default(),
        retired: Vec::new(),
        step3: HashMap::new(),
        scaleout: services.scaleout.handle(),
        vitals: watchdog::Vitals::new(services.shared.workers.clone(), std::time::Instant::now()),
        state: &start.state,
        reloads: reload_outcome::Recorder::from_env(),
        announcer: Default::default(),
    };
    control.run(&start.stop, &start.reload, &services.commands);
    dp.worker_stop.store(true, Ordering::Relaxed);
    for (w, job) in jobs.into_iter().enumerate() {
        if !job.wait() {
            tracing::error!("worker {w} panicked");
        }
    }
    if exception_job.is_some_and(|j| !j.wait()) {
        tracing::error!("the exception path panicked");
    }
    Ok(())
}
