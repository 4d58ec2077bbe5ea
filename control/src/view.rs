//! What the control loop shares with the API thread: a [`View`] of the running state it
//! republishes (arc-swap, so a reader never waits for the control loop), the workers' counters
//! (read live at request time), the health checks' state, and the channel the API submits
//! [`Command`]s on. The API never touches worker state and never blocks the control loop.

use crate::backend_slots::RsIdentity;
use crate::changes::{Change, Refusal};
use crate::config::{CheckSpec, Config, ServiceKey};
use crate::health::HealthHandle;
use crate::kernel::counters::KernelCounters;
use crate::metrics::ControlGauges;
use crate::stats::StatsBook;
use arc_swap::ArcSwap;
use crossbeam::channel::Sender;
use std::net::IpAddr;
use std::sync::Arc;
use vipd_dataplane::backend_stats::BackendStats;
use vipd_dataplane::counters::WorkerCounters;
use vipd_dataplane::flow_sample::FlowSampler;
use vipd_dataplane::sched::load::Limit;
use vipd_dataplane::sched::SchedFlags;
use vipd_dataplane::snapshot::{FwdMode, PersistenceSpec};
use vipd_dataplane::trace::Tracer;
use vipd_dataplane::wire::MacAddr;

/// Where the answer to a command goes.
pub type Reply<T> = tokio::sync::oneshot::Sender<Result<T, Refusal>>;

/// A request from the API to the control loop.
pub enum Command {
    /// Re-read the configuration file; answers the new snapshot generation.
    Reload(Reply<u64>),
    /// Change the running configuration; answers the new snapshot generation.
    Change(Change, Reply<u64>),
    /// Zero the listed statistics of one service, or of all.
    Zero(Option<ServiceKey>, Reply<()>),
}

/// A real server as listed.
#[derive(Debug, Clone)]
pub struct RealServerView {
    /// Identity.
    pub id: RsIdentity,
    /// Its slot (statistics index).
    pub slot: u32,
    /// Weight.
    pub weight: u32,
    /// Forwarding mode.
    pub mode: FwdMode,
    /// The service's sorry server.
    pub sorry: bool,
    /// Its health check, if any.
    pub check: Option<CheckSpec>,
    /// Health verdict (true without a check).
    pub up: bool,
    /// Next hop and its MAC, when resolved.
    pub next_hop: Option<(IpAddr, Option<MacAddr>)>,
    /// Connection thresholds (ipvsadm `-x`, `-y`).
    pub limit: Limit,
}

/// A service as listed.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: &'static str,
    /// Whether it can take new flows now (a real server up with weight, or a sorry server).
    pub schedulable: bool,
    /// `dead_flows = "drop"`.
    pub drop_dead_flows: bool,
    /// What the consistent hash covers (`hash`).
    pub hash: &'static str,
    /// The scheduler's flags.
    pub sched_flags: SchedFlags,
    /// Persistence (ipvsadm `-p`, `-M`), if any.
    pub persistence: Option<PersistenceSpec>,
    /// Its real servers (file order, sorry server last).
    pub real_servers: Vec<RealServerView>,
}

/// The running state as the API shows it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Generation of the snapshot the workers forward by.
    pub generation: u64,
    /// The running configuration (what `vipctl save` writes).
    pub config: Config,
    /// The configuration file.
    pub config_path: String,
    /// API changes not in the file (lost on SIGHUP unless saved).
    pub unsaved_changes: u64,
    /// Services.
    pub services: Vec<ServiceView>,
    /// `GET /api/v1/status` body.
    pub status: serde_json::Value,
    /// Gauges for `/metrics`.
    pub gauges: ControlGauges,
    /// Statistics baselines and rates.
    pub book: StatsBook,
}

/// Everything the API thread holds.
///
/// `commands` is bounded ([`crate::api::COMMAND_QUEUE`]): the API hands a change over with
/// `try_send` and answers 503 when the control loop has that many waiting, so a flood of
/// changes never queues without end nor blocks the API's thread.
pub struct Shared {
    /// Each worker's counters.
    pub workers: Vec<Arc<WorkerCounters>>,
    /// Each worker's per-real-server statistics.
    pub backends: Vec<Arc<BackendStats>>,
    /// The exception path's counters, per kernel interface.
    pub kernel: Arc<KernelCounters>,
    /// The control loop's view, republished on every change.
    pub view: ArcSwap<View>,
    /// Commands to the control loop.
    pub commands: Sender<Command>,
    /// Health checks' state, the box's local faults and held verdicts.
    pub health: HealthHandle,
    /// The API's bearer tokens (admin, read-only).
    pub tokens: crate::api::Tokens,
    /// The API's connections on each listener.
    pub admissions: crate::api::Admissions,
    /// Each worker's connection-listing queues.
    pub samplers: Vec<Arc<FlowSampler>>,
    /// Each worker's trace queues (`vipctl trace`; serialised by `listing` too).
    pub tracers: Vec<Arc<Tracer>>,
    /// One listing at a time (the workers' queues hold one request each).
    pub listing: tokio::sync::Mutex<()>,
    /// The box's scale-out state: drain switch, VIP announcement, table fingerprints.
    pub scaleout: crate::scaleout::BoxHandle,
}
