//! Health checks of the real servers (keepalived's habits: TCP connect or HTTP GET, interval,
//! timeout, rise, fall), on their own thread with a small async runtime: a slow or hung real
//! server only ever delays its own check, never the control loop (neighbours, snapshots) or
//! the API. Verdict changes go to the control loop as [`Transition`]s; the latest state of
//! every check is kept in a [`StatusMap`] for the API and metrics.

pub mod machine;
pub mod probe;

use crate::backend_slots::RsIdentity;
use crate::config::CheckSpec;
use machine::{Machine, Outcome, Step};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

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
    /// Up or down.
    pub up: bool,
    /// Checks run.
    pub checks: u64,
    /// Checks that failed.
    pub failures: u64,
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
}

/// Every check's latest state.
pub type StatusMap = Arc<Mutex<HashMap<RsIdentity, CheckStatus>>>;

/// The running checker.
pub struct Checker {
    targets: watch::Sender<Vec<Target>>,
    status: StatusMap,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checker {
    /// Start the checker thread; transitions are sent to `transitions`.
    pub fn spawn(transitions: crossbeam::channel::Sender<Transition>) -> Result<Checker, String> {
        let (tx, rx) = watch::channel(Vec::new());
        let status: StatusMap = Arc::default();
        let st = Arc::clone(&status);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("health checks: cannot start their runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("vipd-health".into())
            .spawn(move || runtime.block_on(run(rx, transitions, st)))
            .map_err(|e| format!("health checks: cannot start their thread: {e}"))?;
        Ok(Checker {
            targets: tx,
            status,
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

    /// The shared state of every check.
    pub fn status(&self) -> StatusMap {
        Arc::clone(&self.status)
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

async fn run(
    mut targets: watch::Receiver<Vec<Target>>,
    transitions: crossbeam::channel::Sender<Transition>,
    status: StatusMap,
) {
    let mut running: HashMap<RsIdentity, (CheckSpec, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted: Vec<Target> = targets.borrow_and_update().clone();
        let keep: HashMap<RsIdentity, &Target> = wanted.iter().map(|t| (t.id, t)).collect();
        running.retain(|id, (spec, task)| {
            let same = keep.get(id).is_some_and(|t| &t.spec == spec);
            if !same {
                task.abort();
            }
            same
        });
        if let Ok(mut st) = status.lock() {
            st.retain(|id, _| running.contains_key(id) || keep.contains_key(id));
        }
        for t in wanted {
            if running.contains_key(&t.id) {
                continue;
            }
            let task = tokio::spawn(check_loop(
                t.clone(),
                transitions.clone(),
                Arc::clone(&status),
            ));
            running.insert(t.id, (t.spec, task));
        }
        if targets.changed().await.is_err() {
            break;
        }
    }
    for (_, (_, task)) in running {
        task.abort();
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

async fn check_loop(
    target: Target,
    transitions: crossbeam::channel::Sender<Transition>,
    status: StatusMap,
) {
    let spec = &target.spec;
    let mut alpha_pending = target.alpha && !target.up;
    let mut machine = if alpha_pending {
        Machine::down_until_first_ok(spec.rise, spec.fall)
    } else {
        Machine::new(target.up, spec.rise, spec.fall)
    };
    if let Ok(mut st) = status.lock() {
        let e = st.entry(target.id).or_default();
        e.up = target.up;
        e.streak = 0;
    }
    tokio::time::sleep(first_delay(&target.id, spec.interval)).await;
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = probe::probe(spec).await;
        let step = machine.feed(&outcome);
        let now = now_ms();
        if let Ok(mut st) = status.lock() {
            let e = st.entry(target.id).or_default();
            e.checks += 1;
            e.last_check_ms = now;
            e.streak = machine.streak();
            e.up = machine.is_up();
            match &outcome {
                Outcome::Ok => e.last_outcome = "ok".into(),
                Outcome::Failed(why) => {
                    e.failures += 1;
                    e.last_outcome = why.clone();
                }
            }
            if step != Step::Same {
                e.transitions += 1;
                e.last_transition_ms = now;
            }
        }
        let first_up = matches!(step, Step::Up) && std::mem::take(&mut alpha_pending);
        let transition = match step {
            Step::Same => None,
            Step::Down(reason) => Some((false, reason)),
            Step::Up if first_up => Some((true, "first good check (alpha)".to_string())),
            Step::Up => Some((true, format!("{} consecutive checks ok", spec.rise))),
        };
        if let Some((up, reason)) = transition {
            if let Ok(mut st) = status.lock() {
                st.entry(target.id).or_default().last_transition_reason = reason.clone();
            }
            if transitions
                .send(Transition {
                    id: target.id,
                    up,
                    reason,
                })
                .is_err()
            {
                return; // the control loop is gone: vipd is stopping
            }
        }
    }
}
