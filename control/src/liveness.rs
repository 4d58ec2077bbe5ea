//! Is every worker running its loop? Each worker publishes its loop iteration count
//! ([`WorkerCounters::beat`], one relaxed store per iteration); a [`Watch`] remembers when
//! each count last moved and calls a worker stalled once it has stood still for longer than
//! [`STALL_AFTER`]. A stalled worker black-holes whatever its queues receive, so the box must
//! not stay announced and must be restarted: the scale-out thread withdraws the VIPs
//! (`scaleout`) and the control loop stops feeding systemd's watchdog (`daemon::notify`).
//! Each of the two threads keeps its own `Watch`, so neither depends on the other to notice.
//!
//! Counting iterations rather than publishing a clock keeps the worker's side to one store
//! and needs no clock shared between cores: the watcher measures with its own monotonic clock.
//! A worker that has not beaten yet (still prefaulting its flow table) is not judged: start-up
//! has its own bound (systemd's `TimeoutStartSec`, READY=1 comes only once every worker runs).

use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::counters::WorkerCounters;

/// How long a worker's count may stand still before it is called stalled. A loop iteration
/// takes microseconds (an idle worker sleeps `idle_sleep_us`, at most a few milliseconds), so
/// a second is three orders of magnitude above any legitimate pause.
pub const STALL_AFTER: Duration = Duration::from_secs(1);

/// One worker's state as a [`Watch`] last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerLiveness {
    /// It has not run a loop iteration yet.
    Starting,
    /// Its count moved within [`STALL_AFTER`].
    Running,
    /// Its count has stood still for this long (more than [`STALL_AFTER`]).
    Stalled(Duration),
}

/// What a look at every worker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each worker's state, by worker index.
    pub workers: Vec<WorkerLiveness>,
}

impl Verdict {
    /// Every worker runs its loop (none starting, none stalled).
    pub fn all_running(&self) -> bool {
        self.workers.iter().all(|w| *w == WorkerLiveness::Running)
    }

    /// The stalled workers, with how long each has stood still.
    pub fn stalled(&self) -> impl Iterator<Item = (usize, Duration)> + '_ {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                WorkerLiveness::Stalled(d) => Some((i, *d)),
                _ => None,
            })
    }

    /// The stalled workers for a log line or a reason: `worker 1 (2.3 s)`.
    pub fn describe_stalled(&self) -> String {
        self.stalled()
            .map(|(w, d)| format!("worker {w} ({:.1} s)", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Remembers each worker's last count and when it last moved.
pub struct Watch {
    workers: Vec<Arc<WorkerCounters>>,
    /// Per worker: the count last seen and when it was first seen at that value.
    seen: Vec<(u64, Instant)>,
}

impl Watch {
    /// A watch over `workers`, starting now.
    pub fn new(workers: Vec<Arc<WorkerCounters>>, now: Instant) -> Watch {
        let seen = workers.iter().map(|w| (w.heartbeat(), now)).collect();
        Watch { workers, seen }
    }

    /// Look at every worker's count at `now`.
    pub fn observe(&mut self, now: Instant) -> Verdict {
        let workers = self
            .workers
            .iter()
            .zip(self.seen.iter_mut())
            .map(|(w, (last, since))| {
                let beat = w.heartbeat();
                if beat != *last {
                    *last = beat;
                    *since = now;
                }
                let still = now.saturating_duration_since(*since);
                if beat == 0 {
                    WorkerLiveness::Starting
                } else if still > STALL_AFTER {
                    WorkerLiveness::Stalled(still)
                } else {
                    WorkerLiveness::Running
                }
            })
            .collect();
        Verdict { workers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Vec<Arc<WorkerCounters>> {
        (0..n)
            .map(|_| Arc::new(WorkerCounters::default()))
            .collect()
    }

    #[test]
    fn a_worker_whose_count_stands_still_for_over_a_second_is_stalled() {
        let w = workers(2);
        let t0 = Instant::now();
        let mut watch = Watch::new(w.clone(), t0);
        let v = watch.observe(t0);
        assert_eq!(v.workers, [WorkerLiveness::Starting; 2]);
        assert!(!v.all_running(), "not started is not running");
        w[0].beat(1);
        w[1].beat(1);
        assert!(watch.observe(t0 + Duration::from_millis(10)).all_running());
        // Worker 0 goes on, worker 1 stops at 1.
        for (i, ms) in [200u64, 600, 1000, 1010].into_iter().enumerate() {
            w[0].beat(2 + i as u64);
            let v = watch.observe(t0 + Duration::from_millis(ms));
            assert!(v.all_running(), "{ms} ms: {v:?}");
        }
        w[0].beat(10);
        let v = watch.observe(t0 + Duration::from_millis(1020));
        assert_eq!(v.workers[0], WorkerLiveness::Running);
        assert_eq!(
            v.workers[1],
            WorkerLiveness::Stalled(Duration::from_millis(1010))
        );
        assert_eq!(v.stalled().collect::<Vec<_>>().len(), 1);
        assert_eq!(v.describe_stalled(), "worker 1 (1.0 s)");
        // It runs again: running at once.
        w[1].beat(2);
        assert!(watch
            .observe(t0 + Duration::from_millis(1030))
            .all_running());
    }

    #[test]
    fn exactly_the_bound_is_not_yet_a_stall() {
        let w = workers(1);
        let t0 = Instant::now();
        w[0].beat(5);
        let mut watch = Watch::new(w, t0);
        assert!(watch.observe(t0 + STALL_AFTER).all_running());
        assert!(!watch
            .observe(t0 + STALL_AFTER + Duration::from_millis(1))
            .all_running());
    }

    #[test]
    fn a_worker_that_never_started_is_starting_not_stalled() {
        let w = workers(1);
        let t0 = Instant::now();
        let mut watch = Watch::new(w, t0);
        let v = watch.observe(t0 + Duration::from_secs(60));
        assert_eq!(v.workers, [WorkerLiveness::Starting]);
        assert_eq!(v.stalled().count(), 0);
    }
}
