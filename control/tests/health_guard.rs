//! The checker's verdict loop against real listeners: three real servers of one service stop
//! answering within one check interval; with health.max_down_percent = 50 one verdict is
//! applied and two are held (their real servers stay up); when the servers answer again the
//! applied one comes back up and the holds end without a transition; failing again, the
//! operator's release applies the held verdicts. Waits for each effect (with a bound that
//! only stops a broken build from hanging); no assertion on a duration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use vipd_control::config::{CheckKind, CheckSpec, Proto, ServiceKey};
use vipd_control::health::{Checker, HealthHandle, Target, Transition};

const BOUND: Duration = Duration::from_secs(20);

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn next(rx: &Receiver<Transition>) -> Transition {
    match rx.recv_timeout(BOUND) {
        Ok(t) => t,
        Err(RecvTimeoutError::Timeout) => panic!("no transition within {BOUND:?}"),
        Err(e) => panic!("{e}"),
    }
}

fn held(h: &HealthHandle) -> usize {
    h.status
        .lock()
        .unwrap()
        .values()
        .filter(|s| s.held.is_some())
        .count()
}

#[test]
fn a_mass_down_is_held_ended_by_recovery_and_released_by_the_operator() {
    let key = ServiceKey {
        vip: "10.0.100.1".parse().unwrap(),
        proto: Proto::Tcp,
        port: 80,
    };
    let mut listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let targets: Vec<Target> = addrs
        .iter()
        .map(|a| Target {
            id: (key, a.ip(), a.port()),
            spec: CheckSpec {
                kind: CheckKind::Tcp,
                target: *a,
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(500),
                rise: 1,
                fall: 1,
            },
            up: true,
            alpha: false,
        })
        .collect();
    let (tx, rx) = crossbeam::channel::unbounded();
    let checker = Checker::spawn(tx).unwrap();
    checker.set_max_down_percent(50);
    checker.set_targets(targets.clone());
    let h = checker.handle();
    wait_until("every check ran", || {
        h.status
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.checks > 0)
            .count()
            == 3
    });

    // All three refuse within one interval: one verdict applied, two held.
    listeners.clear();
    let down = next(&rx);
    assert!(!down.up);
    wait_until("two verdicts held", || held(&h) == 2);
    assert!(
        rx.recv_timeout(Duration::from_millis(2500)).is_err(),
        "no further transition while held"
    );
    let summary = h.summary.lock().unwrap().clone();
    assert_eq!(summary.services[0].held, 2);
    assert_eq!(summary.services[0].held_total, 2);
    let held_ones: Vec<_> = h
        .status
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.held.is_some())
        .map(|(id, s)| {
            assert!(s.up, "a held real server stays up");
            assert_eq!(s.held.as_ref().unwrap().reason, "connection refused");
            *id
        })
        .collect();
    assert!(!held_ones.contains(&down.id));

    // They answer again: the one down comes back, the holds end without a transition.
    listeners = addrs
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect();
    let up = next(&rx);
    assert!(up.up && up.id == down.id, "{up:?}");
    wait_until("the holds ended", || held(&h) == 0);
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "the holds ended without transitions"
    );

    // Failing again and held, then released by the operator: both go down.
    listeners.clear();
    let again = next(&rx);
    assert!(!again.up);
    wait_until("two verdicts held again", || held(&h) == 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let released = rt.block_on(h.release(Some(key))).unwrap();
    assert_eq!(released.len(), 2);
    for _ in 0..2 {
        let t = next(&rx);
        assert!(!t.up && released.contains(&t.id), "{t:?}");
        assert!(
            t.reason.contains("released by the operator"),
            "{}",
            t.reason
        );
    }
    assert_eq!(held(&h), 0);
    drop(listeners);
}
