//! The descriptors vipd may hold. Every API connection and every health check in flight takes
//! one; when they run out, checks fail (reported as the box's fault, never the real server's:
//! crate::health::local) and new API connections wait. vipd raises its soft limit to the hard
//! one at start (systemd's `LimitNOFILE` sets both; a shell's soft default is 1024) and warns
//! when even that is short of what `api.max_connections` and the checks may need.

use crate::config::Config;
use std::path::Path;

/// Descriptors for everything else: DPDK, the kernel interfaces, netlink, logs, bird.
const RESERVE: u64 = 256;

fn nofile() -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r)
}

/// What `config` may hold open at once: the API's connections on both listeners, one per
/// real server's check in flight, and a reserve.
pub fn needed(config: &Config) -> u64 {
    let checks: usize = config
        .services
        .iter()
        .map(|s| s.real_servers.len() + 1)
        .sum();
    u64::from(config.api.max_connections)
        + super::server::UNIX_MAX_CONNECTIONS as u64
        + checks as u64
        + RESERVE
}

/// Raise the soft limit to the hard one; warn when it is still below [`needed`].
pub fn raise_and_check(config: &Config, path: &Path) {
    let Some(mut r) = nofile() else {
        return;
    };
    if r.rlim_cur < r.rlim_max {
        let soft = r.rlim_cur;
        r.rlim_cur = r.rlim_max;
        // SAFETY: setrlimit reads the struct it is given; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
            tracing::info!("descriptor limit raised from {soft} to {}", r.rlim_max);
        } else {
            r.rlim_cur = soft;
        }
    }
    let need = needed(config);
    if r.rlim_cur < need {
        tracing::warn!(
            "{}: the descriptor limit {} is below the {need} that api.max_connections ({}) and the health checks may hold: raise LimitNOFILE (packaging/systemd/vipd.service) or lower api.max_connections",
            path.display(),
            r.rlim_cur,
            config.api.max_connections
        );
    }
}
