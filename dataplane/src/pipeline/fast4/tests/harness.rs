//! The machinery of the fast paths' differential tests (`fast4/tests.rs`, `fast6/tests.rs`):
//! workers with and without the fast path, everything observable of their state, bursts of
//! generated frames through both, and the directed test of established connections.

use super::super::super::classify::{classify, Staged};
use super::super::super::{process_burst_hashed, Action, WorkerState};
use crate::backend_stats::BackendCounts;
use crate::counters::Counter;
use crate::flow::{FlowInfo, FlowTable, Timeouts};
use crate::io::mem::VecBuf;
use crate::io::PacketBuf;
use crate::persist::PersistInfo;
use crate::snapshot::Snapshot;
use proptest::prelude::*;

/// One burst: its frames, the snapshot variant and the clock step before it.
#[derive(Clone, Debug)]
pub(in crate::pipeline) struct Burst<S> {
    pub(in crate::pipeline) frames: Vec<S>,
    pub(in crate::pipeline) variant: u8,
    pub(in crate::pipeline) step_ms: u64,
}

/// Bursts of frames described by `spec` (up to 47), mostly on snapshot variant 0, the clock
/// mostly moving a little and sometimes past the timeouts.
pub(in crate::pipeline) fn burst_of<S: Strategy>(
    spec: S,
) -> impl Strategy<Value = Burst<S::Value>> {
    (
        prop::collection::vec(spec, 1..48),
        prop_oneof![6 => Just(0u8), 1 => 1u8..4],
        prop_oneof![10 => 0u64..2_000, 1 => Just(70_000u64), 1 => Just(1_000_000u64)],
    )
        .prop_map(|(frames, variant, step_ms)| Burst {
            frames,
            variant,
            step_ms,
        })
}

/// `cases` cases of `test` on values of `strategy`; a failure panics with proptest's
/// minimal failing input.
pub(in crate::pipeline) fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

pub(in crate::pipeline) fn worker(n_workers: u16, fast_path: bool, sloppy: bool) -> WorkerState {
    let mut w = WorkerState::new(
        0,
        n_workers,
        FlowTable::with_capacity(64, Timeouts::default()),
        16,
    );
    w.fast_path = fast_path;
    w.sloppy_tcp = sloppy;
    w
}

/// Everything observable of a worker's state.
#[allow(clippy::type_complexity)] // a tuple compared as a whole
pub(in crate::pipeline) fn state(
    w: &WorkerState,
    now: u64,
) -> (
    Vec<u64>,
    Vec<BackendCounts>,
    Vec<FlowInfo>,
    [u64; 5],
    Vec<PersistInfo>,
) {
    let counters = Counter::ALL.iter().map(|&c| w.counters.get(c)).collect();
    let backends = (0..16).map(|i| w.backends.get(i)).collect();
    let flows = w.flows.iter(now).collect();
    let t = &w.flows;
    let table = [
        t.counts().inserts,
        t.counts().insert_full,
        t.counts().insert_exists,
        t.counts().expired,
        t.counts().removed,
    ];
    let mut persistence = Vec::new();
    let mut cursor = Some(0);
    while let Some(c) = cursor {
        cursor = w.persistence.scan(c, 4096, now, |e| {
            persistence.push(e);
            true
        });
    }
    (counters, backends, flows, table, persistence)
}

/// One burst through a worker: the actions, frames and flow hashes.
pub(in crate::pipeline) fn run(
    w: &mut WorkerState,
    snap: &Snapshot,
    frames: &[(Vec<u8>, bool)],
    now: u64,
) -> (Vec<Action>, Vec<Vec<u8>>, Vec<Option<u64>>) {
    let mut bufs: Vec<VecBuf> = frames
        .iter()
        .map(|(f, good)| {
            let mut b = VecBuf::new(f);
            if *good {
                b.set_rx_ipv4_checksum(crate::io::RxChecksum::Good);
            }
            b
        })
        .collect();
    let mut actions = vec![Action::ToControl; bufs.len()];
    let mut hashes = vec![None; bufs.len()];
    process_burst_hashed(&mut bufs, &mut actions, &mut hashes, 0, w, snap, now);
    let out = bufs.iter().map(|b| b.data().to_vec()).collect();
    (actions, out, hashes)
}

/// Frames the differential run sent through the two workers, and how many of them took
/// the fast path (a generator that never reached it would prove nothing).
#[derive(Default)]
pub(in crate::pipeline) struct Tally {
    pub(in crate::pipeline) frames: u64,
    pub(in crate::pipeline) fast: u64,
    pub(in crate::pipeline) opened: u64,
    pub(in crate::pipeline) opened_in_order: u64,
    pub(in crate::pipeline) sent: u64,
}

impl Tally {
    /// Requires more than one frame in `one_in` to have taken the fast path.
    pub(in crate::pipeline) fn assert_fast_share(&self, one_in: u64) {
        assert!(
            self.fast * one_in > self.frames,
            "only {} of {} frames took the fast path",
            self.fast,
            self.frames
        );
    }
}

/// The fast path's test counters on this thread: frames handled, connections opened, of
/// them picked in stage 3.
pub(in crate::pipeline) type Hits = fn() -> [u64; 3];

/// The differential test: `cases` cases of up to ten bursts of frames `spec` describes and
/// `build` writes, on snapshot variants `snaps`, through a worker with the fast path and one
/// without (one or two workers, sloppy TCP or not); returns the tally of all cases.
pub(in crate::pipeline) fn differential<S: Strategy>(
    cases: u32,
    spec: S,
    build: fn(&S::Value) -> (Vec<u8>, bool),
    snaps: &[Snapshot],
    hits: Hits,
) -> Tally
where
    S::Value: Clone + std::fmt::Debug,
{
    let tally = std::cell::RefCell::new(Tally::default());
    let strategy = (
        prop::collection::vec(burst_of(spec), 1..10),
        any::<bool>(),
        prop::bool::weighted(0.2),
    );
    run_cases(cases, strategy, |(bursts, two_workers, sloppy)| {
        let n = if two_workers { 2 } else { 1 };
        let mut fast = worker(n, true, sloppy);
        let mut general = worker(n, false, sloppy);
        let mut now = 1_000u64;
        for b in &bursts {
            now += b.step_ms;
            let snap = &snaps[usize::from(b.variant)];
            let frames: Vec<_> = b.frames.iter().map(build).collect();
            let before = hits();
            let got = run(&mut fast, snap, &frames, now);
            let after = hits();
            let want = run(&mut general, snap, &frames, now);
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(state(&fast, now), state(&general, now));
            let mut t = tally.borrow_mut();
            t.fast += after[0] - before[0];
            t.opened += after[1] - before[1];
            t.opened_in_order += after[2] - before[2];
            t.frames += frames.len() as u64;
            t.sent += got.0.iter().filter(|a| matches!(a, Action::Tx(_))).count() as u64;
        }
        Ok(())
    });
    tally.into_inner()
}

/// Connections opened by the frames `opening` (all sent, the general way: they change
/// state), then the frames `data` three times, through a worker with the fast path and one
/// without: every data frame takes the fast path (`hits`' first count) and the workers end
/// alike.
pub(in crate::pipeline) fn established_take_the_fast_path(
    snap: &Snapshot,
    opening: &[(Vec<u8>, bool)],
    data: &[(Vec<u8>, bool)],
    hits: Hits,
) {
    let mut fast = worker(1, true, false);
    let mut general = worker(1, false, false);
    let mut now = 1_000;
    for w in [&mut fast, &mut general] {
        let out = run(w, snap, opening, now);
        assert!(
            out.0.iter().all(|a| matches!(a, Action::Tx(_))),
            "{:?}",
            out.0
        );
    }
    for _ in 0..3 {
        now += 7;
        let before = hits()[0];
        let got = run(&mut fast, snap, data, now);
        let taken = hits()[0] - before;
        let want = run(&mut general, snap, data, now);
        assert_eq!(got, want);
        assert_eq!(state(&fast, now), state(&general, now));
        assert_eq!(
            taken,
            data.len() as u64,
            "every data packet on the fast path"
        );
    }
}

/// Stage 1 alone: `cases` frames `spec` describes and `build` writes, on snapshot variants
/// `snaps` and one or two workers; whenever the fast classifier (`fast`: the frame, the rx
/// port's MAC word, the worker, the snapshot) stages a frame, it must stage exactly what
/// the general classifier does (compared through `Debug`). Returns how many it staged.
pub(in crate::pipeline) fn stage1_equal<S: Strategy>(
    cases: u32,
    spec: S,
    build: fn(&S::Value) -> (Vec<u8>, bool),
    snaps: &[Snapshot],
    fast: impl Fn(&VecBuf, u64, &WorkerState, &Snapshot) -> Option<Staged>,
) -> u64 {
    let taken = std::cell::Cell::new(0u64);
    let variants = 0..snaps.len() as u8;
    run_cases(
        cases,
        (spec, variants, any::<bool>()),
        |(s, variant, two)| {
            let snap = &snaps[usize::from(variant)];
            let w = worker(if two { 2 } else { 1 }, true, false);
            let (frame, good) = build(&s);
            let mut buf = VecBuf::new(&frame);
            if good {
                buf.set_rx_ipv4_checksum(crate::io::RxChecksum::Good);
            }
            let mac = snap.fast4.port_mac(0).expect("port 0");
            let want = classify(&buf, 0, &w, snap, None);
            if let Some(got) = fast(&buf, mac, &w, snap) {
                taken.set(taken.get() + 1);
                prop_assert_eq!(got.lookup_hash(), want.lookup_hash());
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"));
            }
            Ok(())
        },
    );
    taken.get()
}
