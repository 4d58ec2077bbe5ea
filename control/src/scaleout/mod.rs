//! Scale-out: several vipd boxes behind a router's ECMP, each announcing its VIPs over BGP
//! through the BGP daemon on the box (bird, driven through its control socket), and every box
//! choosing the same real server for a flow (docs/scale-out.md).
//!
//! - [`desired`]: which VIPs to announce, and why (pure);
//! - [`driver`] over [`bird`] and [`protocols`]: bringing bird to that;
//! - [`tables`]: fingerprints of the consistent-hash tables, to compare boxes.
//!
//! It all runs on its own thread (`vipd-scaleout`), off the control loop's critical path: the
//! thread reads the snapshot the workers forward by and the health checks' state, and talks
//! to bird with bounded waits. The API reaches it through a [`BoxHandle`] (box drain and
//! resume, status); the control loop asks it to withdraw everything before vipd stops.

pub mod bird;
pub mod desired;
pub mod driver;
pub mod protocols;
pub mod tables;

use crate::backend_slots::RsIdentity;
use crate::config::Config;
use crate::health::StatusMap;
use crate::liveness::Watch;
use crate::state_file::StateFile;
use arc_swap::ArcSwap;
use crossbeam::channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use desired::{BoxState, Checks, VipDecision};
use driver::{BirdDriver, DriverStatus, SyncError};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tables::TableFingerprint;
use vipd_dataplane::counters::WorkerCounters;
use vipd_dataplane::snapshot::Snapshot;

/// How often the thread looks at the snapshot and the checks when nothing asks it to.
const TICK: Duration = Duration::from_millis(50);
/// Longest vipd waits at shutdown for bird to confirm the withdrawal.
const STOP_GIVE_UP: Duration = Duration::from_secs(5);
/// Longest a VIP that could be announced waits for its real servers to settle.
const SETTLE_CAP: Duration = Duration::from_secs(30);

/// Serialize with `Display`.
pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// One VIP's announcement, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct VipStatus {
    /// The VIP.
    pub vip: IpAddr,
    /// Its protocol in bird.
    pub protocol: String,
    /// Whether vipd wants it announced.
    pub announce: bool,
    /// What bird holds, as far as vipd knows (None: unknown, e.g. bird unreachable).
    pub announced: Option<bool>,
    /// Why.
    pub reason: String,
    /// Real servers that can take its traffic.
    pub real_servers_ready: usize,
    /// Real servers of its services.
    pub real_servers: usize,
}

/// The BGP side, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct BgpStatus {
    /// The daemon driven.
    pub daemon: String,
    /// Its control socket.
    pub socket: String,
    /// The protocols file vipd writes.
    pub protocols_file: String,
    /// The driver's state.
    #[serde(flatten)]
    pub driver: DriverStatus,
}

/// The box as `GET /api/v1/box` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BoxStatus {
    /// The operator's maintenance switch is on.
    pub drained: bool,
    /// vipd is stopping.
    pub stopping: bool,
    /// Every worker forwards by a snapshot.
    pub forwarding: bool,
    /// Workers that have run no loop iteration for over a second (the VIPs are withdrawn).
    pub stalled_workers: Vec<usize>,
    /// Generation of the snapshot this status was computed from.
    pub generation: u64,
    /// The BGP driver (None without `[bgp]`).
    pub bgp: Option<BgpStatus>,
    /// Every VIP.
    pub vips: Vec<VipStatus>,
    /// The consistent-hash tables.
    pub tables: Vec<TableFingerprint>,
}

/// The answer to a drain or resume.
#[derive(Debug, Clone, Serialize)]
pub struct DrainOutcome {
    /// The switch's state now.
    pub drained: bool,
    /// VIPs announced now.
    pub announced: Vec<IpAddr>,
    /// From the request to bird holding the new state, in milliseconds.
    pub elapsed_ms: f64,
}

/// Why a drain or resume did not get an answer from bird.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DrainError {
    /// No `[bgp]`: nothing to withdraw.
    #[error("this box announces nothing (no [bgp] section): take it out of the router's ECMP group there")]
    NoBgp,
    /// The scale-out thread is gone.
    #[error("vipd is stopping")]
    Stopping,
    /// bird did not answer in time.
    #[error("bird did not confirm within 10 s")]
    Unconfirmed,
    /// bird does not hold the new state.
    #[error(transparent)]
    Bird(#[from] SyncError),
}

enum Request {
    Drain(bool, DrainReply),
    Stop(Sender<Result<Duration, SyncError>>),
}

/// What the API and the control loop hold.
#[derive(Clone)]
pub struct BoxHandle {
    requests: Sender<Request>,
    status: Arc<ArcSwap<BoxStatus>>,
    withdraw_wait: Option<Duration>,
}

impl BoxHandle {
    /// A handle to no thread: status empty, drains refused (tests, tools).
    pub fn detached() -> BoxHandle {
        BoxHandle {
            requests: unbounded().0,
            status: Arc::default(),
            withdraw_wait: None,
        }
    }

    /// A handle to no thread showing `status` (tests of what reads it).
    #[cfg(test)]
    pub(crate) fn with_status(status: BoxStatus) -> BoxHandle {
        let h = BoxHandle::detached();
        h.status.store(Arc::new(status));
        h
    }

    /// The latest status.
    pub fn status(&self) -> Arc<BoxStatus> {
        self.status.load_full()
    }

    /// Turn the maintenance switch on (`drained`) or off; answers once bird holds the new
    /// state (withdrawn or announced), or with why it could not.
    pub async fn drain(&self, drained: bool) -> Result<DrainOutcome, DrainError> {
        if self.withdraw_wait.is_none() {
            return Err(DrainError::NoBgp);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests
            .send(Request::Drain(drained, tx))
            .map_err(|_| DrainError::Stopping)?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => r.map_err(DrainError::Bird),
            Ok(Err(_)) => Err(DrainError::Stopping),
            Err(_) => Err(DrainError::Unconfirmed),
        }
    }

    /// Withdraw every VIP because vipd stops; poll the result until it says done.
    pub fn begin_stop(&self) -> StopProgress {
        let started = Instant::now();
        let Some(wait) = self.withdraw_wait else {
            return StopProgress {
                answer: None,
                started,
                wait: Duration::ZERO,
                withdrawn: None,
            };
        };
        let (tx, rx) = bounded(1);
        let answer = self.requests.send(Request::Stop(tx)).is_ok().then_some(rx);
        tracing::info!("bgp: withdrawing every VIP before stopping");
        StopProgress {
            answer,
            started,
            wait,
            withdrawn: None,
        }
    }
}

/// The withdrawal before stopping: vipd keeps forwarding until bird confirmed it and
/// `withdraw_wait` passed (the router moves the flows meanwhile), or gives up after a bound.
pub struct StopProgress {
    answer: Option<Receiver<Result<Duration, SyncError>>>,
    started: Instant,
    wait: Duration,
    withdrawn: Option<Instant>,
}

impl StopProgress {
    /// Whether vipd may stop now.
    pub fn done(&mut self, now: Instant) -> bool {
        if let Some(at) = self.withdrawn {
            return now.duration_since(at) >= self.wait;
        }
        let Some(rx) = &self.answer else {
            return true;
        };
        match rx.try_recv() {
            Ok(Ok(took)) => {
                tracing::info!(
                    "bgp: every VIP withdrawn ({:.1} ms); forwarding {:.1} s more while the router moves the flows",
                    took.as_secs_f64() * 1e3,
                    self.wait.as_secs_f64()
                );
                self.withdrawn = Some(now);
                self.wait.is_zero()
            }
            Ok(Err(e)) => {
                tracing::warn!("bgp: stopping without a confirmed withdrawal: {e}");
                true
            }
            Err(TryRecvError::Empty) => {
                if now.duration_since(self.started) >= STOP_GIVE_UP {
                    tracing::warn!(
                        "bgp: bird did not confirm the withdrawal within {} s; stopping",
                        STOP_GIVE_UP.as_secs()
                    );
                    return true;
                }
                false
            }
            Err(TryRecvError::Disconnected) => true,
        }
    }
}

/// What the thread reads.
pub struct Sources {
    /// The snapshot the workers forward by.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The health checks' state.
    pub health: StatusMap,
    /// The health checks configured.
    pub checks: tokio::sync::watch::Receiver<Vec<crate::health::Target>>,
    /// Each worker's counters (the generation it forwards by, its loop count).
    pub workers: Vec<Arc<WorkerCounters>>,
    /// Where the box drain is kept across restarts (none in tests and tools).
    pub state: Option<Arc<StateFile>>,
    /// The box drain at start (as the state file kept it).
    pub drained: bool,
}

/// The running scale-out thread.
pub struct Scaleout {
    handle: BoxHandle,
    quit: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Withdraw every VIP of `config` before anything else: after a crash the protocols file
/// still announces what the dead vipd announced, and bird must not draw traffic to this box
/// before it forwards again. Returns the driver, connected if bird answered.
pub fn withdraw_at_start(config: &Config) -> Option<BirdDriver> {
    let bgp = config.bgp.clone()?;
    let mut driver = BirdDriver::new(bgp);
    let want: BTreeMap<IpAddr, bool> = config.services.iter().map(|s| (s.vip, false)).collect();
    match driver.sync(&want, Instant::now()) {
        Ok(()) => tracing::info!(
            "bgp: {} VIP(s) withdrawn until vipd forwards ({})",
            want.len(),
            driver.config().protocols_file.display()
        ),
        Err(_) => tracing::warn!(
            "bgp: could not withdraw the VIPs at start; they are announced once bird answers and vipd forwards"
        ),
    }
    Some(driver)
}

/// The scale-out thread did not start.
#[derive(Debug, thiserror::Error)]
#[error("scale-out: cannot start its thread: {0}")]
pub struct SpawnError(#[source] std::io::Error);

impl Scaleout {
    /// Start the thread (with `driver` when `[bgp]` is configured).
    pub fn spawn(driver: Option<BirdDriver>, sources: Sources) -> Result<Scaleout, SpawnError> {
        let (tx, rx) = unbounded();
        let status: Arc<ArcSwap<BoxStatus>> = Arc::default();
        let quit = Arc::new(AtomicBool::new(false));
        let handle = BoxHandle {
            requests: tx,
            status: Arc::clone(&status),
            withdraw_wait: driver
                .as_ref()
                .map(|d| Duration::from_secs_f64(d.config().withdraw_wait)),
        };
        let liveness = Watch::new(sources.workers.clone(), Instant::now());
        let box_state = BoxState {
            drained: sources.drained,
            ..BoxState::default()
        };
        let mut state = Thread {
            sources,
            driver,
            requests: rx,
            status,
            quit: Arc::clone(&quit),
            box_state,
            announced: HashSet::new(),
            held_since: BTreeMap::new(),
            tables: (u64::MAX, Vec::new()),
            logged: BTreeMap::new(),
            reconcile_at: Instant::now(),
            drains: Vec::new(),
            stop: None,
            liveness,
            stalled_workers: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("vipd-scaleout".into())
            .spawn(move || state.run())
            .map_err(SpawnError)?;
        Ok(Scaleout {
            handle,
            quit,
            thread: Some(thread),
        })
    }

    /// What the API and the control loop hold.
    pub fn handle(&self) -> BoxHandle {
        self.handle.clone()
    }
}

impl Drop for Scaleout {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type DrainReply = tokio::sync::oneshot::Sender<Result<DrainOutcome, SyncError>>;

struct Thread {
    sources: Sources,
    driver: Option<BirdDriver>,
    requests: Receiver<Request>,
    status: Arc<ArcSwap<BoxStatus>>,
    quit: Arc<AtomicBool>,
    box_state: BoxState,
    /// VIPs announced (as last decided).
    announced: HashSet<IpAddr>,
    /// VIPs that could be announced but wait for their real servers to settle, since when.
    held_since: BTreeMap<IpAddr, Instant>,
    /// The fingerprints and the generation they were computed for.
    tables: (u64, Vec<TableFingerprint>),
    /// Each VIP's decision as last logged.
    logged: BTreeMap<IpAddr, bool>,
    reconcile_at: Instant,
    drains: Vec<(DrainReply, Instant)>,
    stop: Option<(Sender<Result<Duration, SyncError>>, Instant)>,
    /// The workers' loop counts: a stalled worker withdraws every VIP, decided here on this
    /// thread's own tick, whatever the control loop is doing.
    liveness: Watch,
    stalled_workers: Vec<usize>,
}

impl Thread {
    fn run(&mut self) {
        while !self.quit.load(Ordering::Relaxed) {
            match self.requests.recv_timeout(TICK) {
                Ok(r) => self.request(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
            while let Ok(r) = self.requests.try_recv() {
                self.request(r);
            }
            self.step(Instant::now());
        }
    }

    fn request(&mut self, r: Request) {
        let now = Instant::now();
        match r {
            Request::Drain(on, reply) => {
                if on != self.box_state.drained {
                    tracing::info!(
                        "box {}: {}",
                        if on { "drained" } else { "resumed" },
                        if on {
                            "withdrawing every VIP (vipd keeps forwarding)"
                        } else {
                            "announcing the VIPs that can be served"
                        }
                    );
                }
                self.box_state.drained = on;
                // On disk before the answer: a drain that returned survives a restart.
                if let Some(state) = &self.sources.state {
                    let _ = state.update(false, |s| s.box_drained = on);
                }
                self.drains.push((reply, now));
            }
            Request::Stop(reply) => {
                self.box_state.stopping = true;
                self.stop = Some((reply, now));
            }
        }
    }

    fn step(&mut self, now: Instant) {
        let snap = self.sources.snapshot.load_full();
        self.box_state.forwarding = self.sources.workers.iter().all(|w| w.generation() > 0);
        self.stalled_workers = self
            .liveness
            .observe(now)
            .stalled()
            .map(|(w, _)| w)
            .collect();
        self.box_state.stalled = !self.stalled_workers.is_empty();
        let unsettled = self.unsettled();
        let overdue: HashSet<IpAddr> = self
            .held_since
            .iter()
            .filter(|(_, &since)| now.duration_since(since) >= SETTLE_CAP)
            .map(|(v, _)| *v)
            .collect();
        let decisions = desired::decide(
            &snap,
            self.box_state,
            &Checks {
                unsettled: &unsettled,
                announced: &self.announced,
                overdue: &overdue,
            },
        );
        self.announced = decisions
            .iter()
            .filter(|d| d.announce)
            .map(|d| d.vip)
            .collect();
        for d in &decisions {
            if d.waiting {
                self.held_since.entry(d.vip).or_insert(now);
            } else {
                self.held_since.remove(&d.vip);
            }
        }
        self.log_changes(&decisions);
        let want: BTreeMap<IpAddr, bool> = decisions.iter().map(|d| (d.vip, d.announce)).collect();
        let result = match self.driver.as_mut() {
            Some(driver) => {
                if now >= self.reconcile_at {
                    driver.forget();
                    self.reconcile_at =
                        now + Duration::from_secs_f64(driver.config().reconcile_interval);
                }
                driver.sync(&want, now)
            }
            None => Ok(()),
        };
        self.answer(&result, &want);
        if self.tables.0 != snap.generation {
            self.tables = (snap.generation, tables::fingerprints(&snap));
        }
        self.publish(&snap, decisions);
    }

    /// The real servers whose check has not settled: not run yet, or its last outcome
    /// disagrees with the state (a streak towards rise or fall).
    fn unsettled(&self) -> HashSet<RsIdentity> {
        let checked: Vec<RsIdentity> = self.sources.checks.borrow().iter().map(|t| t.id).collect();
        let Ok(map) = self.sources.health.lock() else {
            return checked.into_iter().collect();
        };
        checked
            .into_iter()
            .filter(|id| map.get(id).is_none_or(|st| st.checks == 0 || st.streak > 0))
            .collect()
    }

    fn log_changes(&mut self, decisions: &[VipDecision]) {
        for d in decisions {
            if self.logged.get(&d.vip) == Some(&d.announce) {
                continue;
            }
            let first = !self.logged.contains_key(&d.vip);
            self.logged.insert(d.vip, d.announce);
            if d.announce {
                tracing::info!(vip = %d.vip, "announcing VIP {}: {}", d.vip, d.reason);
            } else if !first {
                tracing::warn!(vip = %d.vip, "withdrawing VIP {}: {}", d.vip, d.reason);
            }
        }
        self.logged
            .retain(|v, _| decisions.iter().any(|d| d.vip == *v));
    }

    /// Answer the drain and stop requests waiting for bird (which holds `want` now, or
    /// `result` says why not).
    fn answer(&mut self, result: &Result<(), SyncError>, want: &BTreeMap<IpAddr, bool>) {
        let now = Instant::now();
        let announced: Vec<IpAddr> = want.iter().filter(|(_, &on)| on).map(|(v, _)| *v).collect();
        for (reply, at) in self.drains.drain(..) {
            let answer = result.clone().map(|()| DrainOutcome {
                drained: self.box_state.drained,
                announced: announced.clone(),
                elapsed_ms: now.duration_since(at).as_secs_f64() * 1e3,
            });
            let _ = reply.send(answer);
        }
        if let Some((reply, at)) = self.stop.take() {
            let _ = reply.send(result.clone().map(|()| now.duration_since(at)));
        }
    }

    fn publish(&self, snap: &Snapshot, decisions: Vec<VipDecision>) {
        let vips = decisions
            .into_iter()
            .map(|d| VipStatus {
                protocol: self
                    .driver
                    .as_ref()
                    .map_or_else(String::new, |dr| dr.protocol(&d.vip)),
                announced: self.driver.as_ref().and_then(|dr| dr.told(&d.vip)),
                vip: d.vip,
                announce: d.announce,
                reason: d.reason,
                real_servers_ready: d.ready,
                real_servers: d.total,
            })
            .collect();
        let bgp = self.driver.as_ref().map(|d| {
            let c = d.config();
            BgpStatus {
                daemon: c.daemon.clone(),
                socket: c.socket.display().to_string(),
                protocols_file: c.protocols_file.display().to_string(),
                driver: d.status.clone(),
            }
        });
        self.status.store(Arc::new(BoxStatus {
            drained: self.box_state.drained,
            stopping: self.box_state.stopping,
            forwarding: self.box_state.forwarding,
            stalled_workers: self.stalled_workers.clone(),
            generation: snap.generation,
            bgp,
            vips,
            tables: self.tables.1.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_box_without_bgp_refuses_a_drain_and_stops_at_once() {
        let h = BoxHandle::detached();
        let e = h.drain(true).await.unwrap_err();
        assert!(matches!(e, DrainError::NoBgp), "{e}");
        assert!(e.to_string().contains("no [bgp] section"), "{e}");
        assert!(h.begin_stop().done(Instant::now()));
    }

    #[test]
    fn stopping_waits_for_the_withdrawal_then_withdraw_wait() {
        let (tx, rx) = unbounded();
        let h = BoxHandle {
            requests: tx,
            status: Arc::default(),
            withdraw_wait: Some(Duration::from_millis(200)),
        };
        let t0 = Instant::now();
        let mut p = h.begin_stop();
        assert!(!p.done(t0), "nothing confirmed yet");
        let Ok(Request::Stop(reply)) = rx.try_recv() else {
            panic!("no stop request");
        };
        reply.send(Ok(Duration::from_millis(3))).unwrap();
        assert!(!p.done(t0), "withdrawn: now the router gets withdraw_wait");
        assert!(!p.done(t0 + Duration::from_millis(100)));
        assert!(p.done(t0 + Duration::from_millis(200)));
        // bird unreachable: stop without waiting.
        let mut p = h.begin_stop();
        let Ok(Request::Stop(reply)) = rx.try_recv() else {
            panic!("no stop request");
        };
        reply.send(Err(SyncError::Unreachable)).unwrap();
        assert!(p.done(Instant::now()));
        // No answer at all: give up after the bound.
        let mut p = h.begin_stop();
        assert!(!p.done(Instant::now()));
        assert!(p.done(Instant::now() + STOP_GIVE_UP));
    }
}
