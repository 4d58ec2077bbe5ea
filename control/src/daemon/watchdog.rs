//! The control loop's side of liveness ([`crate::liveness`]): it looks at the workers on every
//! tick, logs and counts their stalls (the `vipd_worker_stalled` and `vipd_worker_stalls_total`
//! series), and talks to systemd through `$NOTIFY_SOCKET` (the `sd-notify` crate): READY=1
//! once every worker runs its loop, WATCHDOG=1 at half the unit's `WatchdogSec` while every
//! worker runs and the control loop itself goes round, STATUS= for `systemctl status`, and
//! STOPPING=1. A stalled worker (or a hung control loop) therefore stops the pings and systemd
//! restarts vipd (`Restart=on-failure`) instead of leaving a box that black-holes its queues.
//! Outside systemd (no `$NOTIFY_SOCKET`) the notifications are no-ops; the stall detection,
//! its log lines and metrics work the same.

use crate::liveness::{Verdict, Watch, WorkerLiveness};
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::counters::WorkerCounters;

/// What `/metrics` shows of the workers' liveness.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LivenessGauges {
    /// Per worker: stalled now.
    pub stalled: Vec<bool>,
    /// Per worker: stalls since start (each a stretch of more than a second without a loop).
    pub stalls: Vec<u64>,
}

/// The workers' liveness as the control loop follows it, and systemd's notifications.
pub struct Vitals {
    watch: Watch,
    gauges: LivenessGauges,
    /// Half of `WATCHDOG_USEC` (systemd's advice), when the unit has a watchdog.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
    /// The STATUS= text last sent (sent again only when it changes).
    status: String,
}

impl Vitals {
    /// Follow `workers`; the watchdog period comes from systemd's environment.
    pub fn new(workers: Vec<Arc<WorkerCounters>>, now: Instant) -> Vitals {
        let ping_every = sd_notify::watchdog_enabled().map(|d| d / 2);
        if let Some(p) = ping_every {
            tracing::info!(
                "systemd watchdog: {:.1} s; vipd notifies every {:.1} s while every worker runs",
                (p * 2).as_secs_f64(),
                p.as_secs_f64()
            );
        }
        let n = workers.len();
        Vitals {
            watch: Watch::new(workers, now),
            gauges: LivenessGauges {
                stalled: vec![false; n],
                stalls: vec![0; n],
            },
            ping_every,
            last_ping: None,
            ready: false,
            status: String::new(),
        }
    }

    /// One look, on a control loop tick: log stall changes, then READY/WATCHDOG/STATUS.
    pub fn tick(&mut self, now: Instant) -> Verdict {
        let verdict = self.watch.observe(now);
        for (w, state) in verdict.workers.iter().enumerate() {
            let stalled = matches!(state, WorkerLiveness::Stalled(_));
            let Some(was) = self.gauges.stalled.get_mut(w) else {
                continue;
            };
            if stalled && !*was {
                if let Some(n) = self.gauges.stalls.get_mut(w) {
                    *n += 1;
                }
                tracing::error!(
                    worker = w,
                    "worker {w} stalled: no loop iteration for over {:.0} s; its queues are not served. The VIPs are withdrawn{}",
                    crate::liveness::STALL_AFTER.as_secs_f64(),
                    if self.ping_every.is_some() {
                        " and systemd's watchdog is no longer fed (vipd is restarted)"
                    } else {
                        " (no systemd watchdog: nothing restarts vipd)"
                    }
                );
            } else if !stalled && *was {
                tracing::warn!(worker = w, "worker {w} runs again");
            }
            *was = stalled;
        }
        self.notify(&verdict, now);
        verdict
    }

    fn notify(&mut self, verdict: &Verdict, now: Instant) {
        let running = verdict.all_running();
        if running && !self.ready {
            self.ready = true;
            send(&[NotifyState::Ready]);
            tracing::info!("every worker runs its loop: ready");
        }
        if running {
            if let Some(every) = self.ping_every {
                if self
                    .last_ping
                    .is_none_or(|t| now.duration_since(t) >= every)
                {
                    self.last_ping = Some(now);
                    send(&[NotifyState::Watchdog]);
                }
            }
        }
        let status = if running {
            format!("forwarding: {} worker(s) running", verdict.workers.len())
        } else if verdict.stalled().count() > 0 {
            format!("stalled: {}", verdict.describe_stalled())
        } else {
            "starting: waiting for every worker's first loop".to_string()
        };
        if status != self.status {
            send(&[NotifyState::Status(&status)]);
            self.status = status;
        }
    }

    /// The gauges for `/metrics`.
    pub fn gauges(&self) -> &LivenessGauges {
        &self.gauges
    }
}

/// Tell systemd vipd is stopping (before the VIPs are withdrawn and the ports close).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("systemd notification failed: {e}");
    }
}
