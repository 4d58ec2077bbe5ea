//! Health checks of the real servers (keepalived's habits: TCP connect or HTTP GET, interval,
//! timeout, rise, fall), on their own thread with a small async runtime: a slow or hung real
//! server only ever delays its own check, never the control loop (neighbours, snapshots) or
//! the API. Each real server's check is a task reporting every outcome to one loop
//! ([`run`]) that owns the verdicts: failures that are the box's own ([`local`]) take nobody
//! down, a mass transition is held by the [`guard`], and what remains goes to the control loop
//! as [`Transition`]s. The latest state of every check is kept in a [`StatusMap`] and the
//! box's view of them in a [`Summary`], for the API and metrics.

pub mod guard;
pub mod local;
pub mod machine;
pub mod probe;

use crate::backend_slots::RsIdentity;
use crate::config::{CheckSpec, ServiceKey};
use guard::{Decision, Guard, Held};
use local::{ClassState, FaultClass, LocalFaults};
use machine::{Machine, Outcome, Step};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// A check to run: whose, how, and the state it starts in.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The real server.
    pub id: RsIdentity,
    /// The check.
    pub spec: CheckSpec,
    /// The state the control plane holds for it now.
    pub up: bool,
    /// Down by keepalived's `alpha` and not checked good since: its first good check brings it
    /// up (not `rise` of them).
    pub alpha: bool,
}

/// A real server changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The real server.
    pub id: RsIdentity,
    /// Its new state.
    pub up: bool,
    /// Why (the last check's outcome).
    pub reason: String,
}

/// The latest state of one check, for the API and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckStatus {
    /// Up or down, as the dataplane forwards (a held down verdict leaves it up).
    pub up: bool,
    /// Checks run.
    pub checks: u64,
    /// Checks that failed (the real server's fault).
    pub failures: u64,
    /// Checks that could not run for a reason of the box's own.
    pub local_faults: u64,
    /// The last check's local fault (`descriptors: Too many open files (os error 24)`), if
    /// it had one.
    pub local_fault: Option<String>,
    /// Transitions (up -> down and back).
    pub transitions: u64,
    /// The last check's outcome (`ok`, or the reason it failed).
    pub last_outcome: String,
    /// When the last check ended (Unix milliseconds).
    pub last_check_ms: u64,
    /// When the state last changed (Unix milliseconds; 0: never since the check started).
    pub last_transition_ms: u64,
    /// Why the state last changed.
    pub last_transition_reason: String,
    /// Consecutive checks disagreeing with the state (towards `rise` or `fall`).
    pub streak: u32,
    /// A down verdict the mass-transition guard holds.
    pub held: Option<HeldStatus>,
}

/// A held down verdict, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HeldStatus {
    /// Why the checks failed.
    pub reason: String,
    /// Since when (Unix milliseconds).
    pub since_ms: u64,
}

impl From<&Held> for HeldStatus {
    fn from(h: &Held) -> Self {
        HeldStatus {
            reason: h.reason.clone(),
            since_ms: h.since_ms,
        }
    }
}

/// Every check's latest state.
pub type StatusMap = Arc<Mutex<HashMap<RsIdentity, CheckStatus>>>;

/// One service's guard, for the API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceGuard {
    /// The service.
    #[serde(skip)]
    pub key: ServiceKey,
    /// Real servers whose down verdict is held now.
    pub held: usize,
    /// Down verdicts held since start.
    pub held_total: u64,
}

/// The box's side of the health checks: its local faults and the guard's holds.
#[derive(Debug, Clone, Default)]
pub struct BoxHealth {
    /// Each local fault class seen since start.
    pub local_faults: BTreeMap<FaultClass, ClassState>,
    /// Real servers whose last check failed locally.
    pub failing_locally: usize,
    /// `health.max_down_percent` in force.
    pub max_down_percent: u32,
    /// Per service with checks.
    pub services: Vec<ServiceGuard>,
}

/// The box's side, shared.
pub type Summary = Arc<Mutex<BoxHealth>>;

/// What the API may ask of the checker.
#[derive(Debug)]
enum Request {
    /// Apply the held down verdicts (of one service, or all); answers the real servers.
    Release(Option<ServiceKey>, oneshot::Sender<Vec<RsIdentity>>),
}

/// The checker as the API sees it: its state, and the operator's release of held verdicts.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    /// Every check's state.
    pub status: StatusMap,
    /// The box's side.
    pub summary: Summary,
    requests: mpsc::Sender<Request>,
}

/// Why a release was not done.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The checker is stopping, or too many releases wait.
    #[error("the health checker is busy or stopping: try again")]
    Unavailable,
}

impl HealthHandle {
    /// Apply the down verdicts the guard holds (of `service`, or all): the real servers
    /// taken down.
    pub async fn release(
        &self,
        service: Option<ServiceKey>,
    ) -> Result<Vec<RsIdentity>, ReleaseError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .try_send(Request::Release(service, tx))
            .map_err(|_| ReleaseError::Unavailable)?;
        rx.await.map_err(|_| ReleaseError::Unavailable)
    }

    /// A handle on no checker (tests of the API and metrics).
    pub fn detached(status: StatusMap) -> Self {
        HealthHandle {
            status,
            summary: Summary::default(),
            requests: mpsc::channel(1).0,
        }
    }
}

/// The running checker.
pub struct Checker {
    targets: watch::Sender<Vec<Target>>,
    max_down_percent: watch::Sender<u32>,
    handle: HealthHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why the checker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No runtime.
    #[error("health checks: cannot start their runtime: {0}")]
    Runtime(std::io::Error),
    /// No thread.
    #[error("health checks: cannot start their thread: {0}")]
    Thread(std::io::Error),
}

impl Checker {
    /// Start the checker thread; transitions are sent to `transitions`.
    pub fn spawn(
        transitions: crossbeam::channel::Sender<Transition>,
    ) -> Result<Checker, StartError> {
        let (tx, rx) = watch::channel(Vec::new());
        let (pct_tx, pct_rx) = watch::channel(crate::config::DEFAULT_MAX_DOWN_PERCENT);
        let (req_tx, req_rx) = mpsc::channel(16);
        let status: StatusMap = Arc::default();
        let summary: Summary = Arc::default();
        let shared = Books {
            status: Arc::clone(&status),
            summary: Arc::clone(&summary),
            transitions,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let thread = std::thread::Builder::new()
            .name("vipd-health".into())
            .spawn(move || runtime.block_on(run(rx, pct_rx, req_rx, shared)))
            .map_err(StartError::Thread)?;
        Ok(Checker {
            targets: tx,
            max_down_percent: pct_tx,
            handle: HealthHandle {
                status,
                summary,
                requests: req_tx,
            },
            thread: Some(thread),
        })
    }

    /// Replace the set of checks (unchanged ones keep running, with their state).
    pub fn set_targets(&self, targets: Vec<Target>) {
        self.targets.send_if_modified(|current| {
            let same = *current == targets;
            if !same {
                *current = targets;
            }
            !same
        });
    }

    /// `health.max_down_percent` (start, reload).
    pub fn set_max_down_percent(&self, pct: u32) {
        self.max_down_percent.send_if_modified(|current| {
            let changed = *current != pct;
            *current = pct;
            changed
        });
    }

    /// The shared state of every check.
    pub fn status(&self) -> StatusMap {
        Arc::clone(&self.handle.status)
    }

    /// The checker as the API sees it.
    pub fn handle(&self) -> HealthHandle {
        self.handle.clone()
    }

    /// The checks to run, as they change.
    pub fn targets(&self) -> watch::Receiver<Vec<Target>> {
        self.targets.subscribe()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // Closing the channel ends the runtime, which cancels every check in flight.
        let (tx, _) = watch::channel(Vec::new());
        drop(std::mem::replace(&mut self.targets, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One check's outcome, from its task to the loop.
struct Report {
    id: RsIdentity,
    /// Which task of `id` (a check replaced since may still have a report on its way).
    task: u64,
    outcome: Outcome,
    step: Step,
    /// The first good check of a real server down by keepalived's `alpha`.
    first_up: bool,
    streak: u32,
    rise: u32,
    at: Instant,
}

/// Where the loop's verdicts go.
struct Books {
    status: StatusMap,
    summary: Summary,
    transitions: crossbeam::channel::Sender<Transition>,
}

/// One real server's check task.
struct Running {
    spec: CheckSpec,
    task: u64,
    handle: tokio::task::JoinHandle<()>,
}

/// The verdicts: every check's outcome, the box's local faults, the guard, and what the
/// control plane holds for each real server.
struct Verdicts {
    books: Books,
    guard: Guard,
    local: LocalFaults,
    /// The state the dataplane forwards by, per checked real server.
    up: HashMap<RsIdentity, bool>,
    running: HashMap<RsIdentity, Running>,
    /// The number of the next task started.
    next_task: u64,
    reports: mpsc::UnboundedSender<Report>,
}

async fn run(
    mut targets: watch::Receiver<Vec<Target>>,
    mut max_down_percent: watch::Receiver<u32>,
    mut requests: mpsc::Receiver<Request>,
    books: Books,
) {
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut v = Verdicts {
        books,
        guard: Guard::new(*max_down_percent.borrow_and_update()),
        local: LocalFaults::default(),
        up: HashMap::new(),
        running: HashMap::new(),
        next_task: 0,
        reports: reports_tx,
    };
    let wanted = targets.borrow_and_update().clone();
    v.set_targets(wanted);
    loop {
        tokio::select! {
            changed = targets.changed() => {
                if changed.is_err() {
                    break;
                }
                let wanted = targets.borrow_and_update().clone();
                v.set_targets(wanted);
            }
            Ok(()) = max_down_percent.changed() => {
                let pct = *max_down_percent.borrow_and_update();
                v.guard.set_max_down_percent(pct);
                v.publish();
            }
            Some(r) = reports.recv() => {
                if !v.report(r) {
                    break; // the control loop is gone: vipd is stopping
                }
            }
            Some(req) = requests.recv() => match req {
                Request::Release(service, answer) => {
                    let released = v.release(service);
                    let _ = answer.send(released);
                }
            },
        }
    }
    for (_, r) in v.running.drain() {
        r.handle.abort();
    }
}

impl Verdicts {
    fn set_targets(&mut self, wanted: Vec<Target>) {
        let keep: HashMap<RsIdentity, &Target> = wanted.iter().map(|t| (t.id, t)).collect();
        self.running.retain(|id, r| {
            let same = keep.get(id).is_some_and(|t| t.spec == r.spec);
            if !same {
                r.handle.abort();
            }
            same
        });
        let mut restarted = HashSet::new();
        for t in &wanted {
            if self.running.contains_key(&t.id) {
                continue;
            }
            restarted.insert(t.id);
            self.up.insert(t.id, t.up);
            self.next_task += 1;
            let task = self.next_task;
            let handle = tokio::spawn(check_loop(t.clone(), task, self.reports.clone()));
            self.running.insert(
                t.id,
                Running {
                    spec: t.spec.clone(),
                    task,
                    handle,
                },
            );
        }
        self.up.retain(|id, _| keep.contains_key(id));
        self.guard.set_targets(&wanted, |id| restarted.contains(id));
        let now = now_ms();
        self.local.retain(|id| keep.contains_key(id), now);
        if let Ok(mut st) = self.books.status.lock() {
            st.retain(|id, _| keep.contains_key(id));
            for id in &restarted {
                let e = st.entry(*id).or_default();
                e.up = self.up.get(id).copied().unwrap_or(true);
                e.streak = 0;
                e.held = None;
                e.local_fault = None;
            }
        }
        self.publish();
    }

    /// One check's outcome: recorded, judged, and its transition sent. False when the control
    /// loop is gone.
    fn report(&mut self, r: Report) -> bool {
        if self.running.get(&r.id).is_none_or(|x| x.task != r.task) {
            return true; // from a check replaced since
        }
        let now = now_ms();
        let local = match &r.outcome {
            Outcome::Local(f) => Some(f),
            _ => None,
        };
        self.local.record(r.id, local, now);
        let rs = std::net::SocketAddr::new(r.id.1, r.id.2);
        let transition = match r.step {
            Step::Same => None,
            Step::Down(reason) => match self.guard.on_down(r.id, &reason, r.at, now) {
                Decision::Apply => Some((false, reason)),
                Decision::Hold => {
                    tracing::warn!(
                        service = %r.id.0, real_server = %rs,
                        "health: the down verdict of {rs} ({reason}) is held: more than health.max_down_percent = {} % of the service's checked real servers failed within one interval, which points at the box; it keeps its traffic (vipctl health --release applies the verdict)",
                        self.guard.max_down_percent()
                    );
                    None
                }
            },
            Step::Up if self.guard.on_up(&r.id) => {
                tracing::info!(service = %r.id.0, real_server = %rs,
                    "health: the held down verdict of {rs} ends: its checks pass again");
                None
            }
            Step::Up if r.first_up => Some((true, "first good check (alpha)".to_string())),
            Step::Up => Some((true, format!("{} consecutive checks ok", r.rise))),
        };
        if let Some((up, _)) = &transition {
            self.up.insert(r.id, *up);
        }
        if let Ok(mut st) = self.books.status.lock() {
            let e = st.entry(r.id).or_default();
            e.checks += 1;
            e.last_check_ms = now;
            e.streak = r.streak;
            e.up = self.up.get(&r.id).copied().unwrap_or(true);
            e.local_fault = None;
            match &r.outcome {
                Outcome::Ok => e.last_outcome = "ok".into(),
                Outcome::Failed(why) => {
                    e.failures += 1;
                    e.last_outcome.clone_from(why);
                }
                Outcome::Local(f) => {
                    e.local_faults += 1;
                    e.last_outcome = format!("not run (the box's fault): {f}");
                    e.local_fault = Some(f.to_string());
                }
            }
            e.held = self.guard.held(&r.id).map(HeldStatus::from);
            if let Some((_, reason)) = &transition {
                e.transitions += 1;
                e.last_transition_ms = now;
                e.last_transition_reason.clone_from(reason);
            }
        }
        self.publish();
        match transition {
            Some((up, reason)) => self.send(r.id, up, reason),
            None => true,
        }
    }

    fn send(&self, id: RsIdentity, up: bool, reason: String) -> bool {
        self.books
            .transitions
            .send(Transition { id, up, reason })
            .is_ok()
    }

    /// The operator applies held verdicts.
    fn release(&mut self, service: Option<ServiceKey>) -> Vec<RsIdentity> {
        let released = self.guard.release(service);
        let now = now_ms();
        let mut out = Vec::new();
        for (id, held) in released {
            let reason = format!("{} (held verdict released by the operator)", held.reason);
            self.up.insert(id, false);
            if let Ok(mut st) = self.books.status.lock() {
                let e = st.entry(id).or_default();
                e.held = None;
                e.up = false;
                e.transitions += 1;
                e.last_transition_ms = now;
                e.last_transition_reason.clone_from(&reason);
            }
            let rs = std::net::SocketAddr::new(id.1, id.2);
            tracing::info!(service = %id.0, real_server = %rs,
                "health: the held down verdict of {rs} is released by the operator");
            if !self.send(id, false, reason) {
                break;
            }
            out.push(id);
        }
        self.publish();
        out
    }

    fn publish(&self) {
        let services = self
            .guard
            .per_service()
            .into_iter()
            .map(|(key, held, held_total)| ServiceGuard {
                key,
                held,
                held_total,
            })
            .collect();
        let b = BoxHealth {
            local_faults: self.local.classes().clone(),
            failing_locally: self.local.active(),
            max_down_percent: self.guard.max_down_percent(),
            services,
        };
        if let Ok(mut s) = self.books.summary.lock() {
            *s = b;
        }
    }
}

/// Spread the first checks over the interval so a thousand real servers are not probed in
/// the same millisecond (keepalived does the same).
fn first_delay(id: &RsIdentity, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

async fn check_loop(target: Target, task: u64, reports: mpsc::UnboundedSender<Report>) {
    let spec = &target.spec;
    let mut alpha_pending = target.alpha && !target.up;
    let mut machine = if alpha_pending {
        Machine::down_until_first_ok(spec.rise, spec.fall)
    } else {
        Machine::new(target.up, spec.rise, spec.fall)
    };
    tokio::time::sleep(first_delay(&target.id, spec.interval)).await;
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = probe::probe(spec).await;
        let step = machine.feed(&outcome);
        let first_up = matches!(step, Step::Up) && std::mem::take(&mut alpha_pending);
        let report = Report {
            id: target.id,
            task,
            outcome,
            step,
            first_up,
            streak: machine.streak(),
            rise: spec.rise,
            at: Instant::now(),
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}
