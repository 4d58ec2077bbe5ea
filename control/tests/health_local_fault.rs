//! A health check that cannot get a descriptor (EMFILE: vipd's own limit reached) is the box's
//! fault, not the real server's: a real listener, a real probe, the process's own
//! RLIMIT_NOFILE lowered just below the next descriptor. Its own test binary (one process,
//! one test), since the limit is the whole process's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::time::Duration;
use vipd_control::config::{CheckKind, CheckSpec};
use vipd_control::health::local::FaultClass;
use vipd_control::health::machine::Outcome;
use vipd_control::health::probe::probe;

fn nofile() -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    r
}

fn set_nofile(r: &libc::rlimit) {
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, r) }, 0);
}

/// The number the next descriptor would get.
fn next_descriptor() -> u64 {
    let f = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    f.as_raw_fd() as u64
}

#[test]
fn a_check_without_a_descriptor_is_the_boxs_fault_and_recovers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = CheckSpec {
        kind: CheckKind::Tcp,
        target: listener.local_addr().unwrap(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        rise: 1,
        fall: 1,
    };
    assert_eq!(rt.block_on(probe(&spec)), Outcome::Ok);
    let saved = nofile();
    let lowered = libc::rlimit {
        rlim_cur: next_descriptor(),
        rlim_max: saved.rlim_max,
    };
    set_nofile(&lowered);
    let starved = rt.block_on(probe(&spec));
    set_nofile(&saved);
    match &starved {
        Outcome::Local(f) => {
            assert_eq!(f.class, FaultClass::Descriptors, "{f}");
            assert!(f.detail.contains("os error 24"), "{f}");
        }
        other => panic!("EMFILE taken for the real server's fault: {other:?}"),
    }
    assert_eq!(rt.block_on(probe(&spec)), Outcome::Ok, "the limit is back");
    // A closed port is still the server's answer.
    drop(listener);
    assert_eq!(
        rt.block_on(probe(&spec)),
        Outcome::Failed("connection refused".into())
    );
}
