//! Health-check failures that are the box's own: the kernel refused to open a socket or to
//! send the first packet (no descriptor left, no buffer, no route, the interface down), so
//! nothing is known about the real server. Such a check neither takes a real server down nor
//! brings one up; it is counted by class and logged once when a class appears on the box and
//! once when it clears ([`LocalFaults`]).
//!
//! The rule: an error returned by `socket(2)` or by the `connect(2)` call itself (before the
//! connection attempt goes asynchronous) is the box's, as is a lack of memory or buffers at
//! any point; what comes back later (refused, reset, timed out, unreachable reported by the
//! network) is the real server's. A check that times out is the real server's too: vipd cannot
//! tell a silent server from a silent link, which is what the mass-transition guard
//! ([`super::guard`]) is for.

use crate::backend_slots::RsIdentity;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Where in a check an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `socket(2)`, or registering the socket with the runtime.
    Socket,
    /// The `connect(2)` call itself (its synchronous answer).
    Connect,
    /// Anything later: the connection's outcome, the request, the answer.
    Exchange,
}

/// A class of local fault (the `reason` label of the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// EMFILE, ENFILE: vipd's descriptor limit (`LimitNOFILE`) or the system's is reached.
    Descriptors,
    /// ENOBUFS, ENOMEM: the kernel has no buffer or memory for the socket.
    Memory,
    /// ENETUNREACH, EHOSTUNREACH from connect(2): the box has no route to the address (or an
    /// unreachable/prohibit route), e.g. its kernel interface is down.
    NoRoute,
    /// ENETDOWN: the interface the route leaves by is down.
    NetworkDown,
    /// EADDRNOTAVAIL, EADDRINUSE, EAGAIN: no source address or no free local port.
    NoSourceAddress,
    /// EPERM, EACCES: a local policy (firewall, seccomp, LSM) refused the socket or the packet.
    NotPermitted,
    /// EAFNOSUPPORT, EPROTONOSUPPORT: the box has no stack for the family (IPv6 disabled).
    NoProtocol,
}

impl FaultClass {
    /// Every class, in metric order.
    pub const ALL: [FaultClass; 7] = [
        FaultClass::Descriptors,
        FaultClass::Memory,
        FaultClass::NoRoute,
        FaultClass::NetworkDown,
        FaultClass::NoSourceAddress,
        FaultClass::NotPermitted,
        FaultClass::NoProtocol,
    ];

    /// The metric label and JSON name.
    pub fn name(self) -> &'static str {
        match self {
            FaultClass::Descriptors => "descriptors",
            FaultClass::Memory => "memory",
            FaultClass::NoRoute => "no_route",
            FaultClass::NetworkDown => "network_down",
            FaultClass::NoSourceAddress => "no_source_address",
            FaultClass::NotPermitted => "not_permitted",
            FaultClass::NoProtocol => "no_protocol",
        }
    }

    /// What the operator looks at.
    pub fn hint(self) -> &'static str {
        match self {
            FaultClass::Descriptors => {
                "vipd has no file descriptor left (LimitNOFILE, api.max_connections)"
            }
            FaultClass::Memory => "the kernel has no socket buffer or memory left",
            FaultClass::NoRoute => {
                "the box has no route to the real server (is the kernel interface up?)"
            }
            FaultClass::NetworkDown => "the interface towards the real server is down",
            FaultClass::NoSourceAddress => "no source address or local port is free",
            FaultClass::NotPermitted => "a local firewall or policy refuses the check",
            FaultClass::NoProtocol => "the box has no stack for this address family",
        }
    }
}

/// A check that could not run for a reason of the box's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFault {
    /// Its class.
    pub class: FaultClass,
    /// The error as the kernel gave it (`Too many open files (os error 24)`).
    pub detail: String,
}

impl std::fmt::Display for LocalFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.name(), self.detail)
    }
}

/// The local fault an error of `phase` is, or None when it says something about the real
/// server.
pub fn classify(phase: Phase, e: &std::io::Error) -> Option<LocalFault> {
    let errno = e.raw_os_error()?;
    let anywhere = match errno {
        libc::EMFILE | libc::ENFILE => Some(FaultClass::Descriptors),
        libc::ENOBUFS | libc::ENOMEM => Some(FaultClass::Memory),
        _ => None,
    };
    let before_any_packet = || match errno {
        libc::ENETUNREACH | libc::EHOSTUNREACH => Some(FaultClass::NoRoute),
        libc::ENETDOWN | libc::ENODEV => Some(FaultClass::NetworkDown),
        libc::EADDRNOTAVAIL | libc::EADDRINUSE | libc::EAGAIN => Some(FaultClass::NoSourceAddress),
        libc::EPERM | libc::EACCES => Some(FaultClass::NotPermitted),
        libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Some(FaultClass::NoProtocol),
        _ => None,
    };
    let class = match phase {
        Phase::Socket | Phase::Connect => anywhere.or_else(before_any_packet),
        Phase::Exchange => anywhere,
    }?;
    Some(LocalFault {
        class,
        detail: e.to_string(),
    })
}

/// One class's state on the box, for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassState {
    /// Real servers whose last check failed with it.
    pub real_servers: usize,
    /// Checks that failed with it since vipd started.
    pub total: u64,
    /// The last such failure's error.
    pub last_detail: String,
    /// When it appeared on the box this time (Unix milliseconds; 0: not now).
    pub since_ms: u64,
}

/// The box's local faults: which real servers' last check failed locally and why, counts per
/// class, and the log lines at each class's appearance and disappearance.
#[derive(Debug, Default)]
pub struct LocalFaults {
    current: HashMap<RsIdentity, FaultClass>,
    classes: BTreeMap<FaultClass, ClassState>,
    /// When each active class appeared (for the duration in the "cleared" line).
    began: HashMap<FaultClass, Instant>,
}

impl LocalFaults {
    /// Record the latest check of `id`: a local fault, or None for any other outcome.
    pub fn record(&mut self, id: RsIdentity, fault: Option<&LocalFault>, now_ms: u64) {
        let before = self.current.get(&id).copied();
        match fault {
            Some(f) => {
                let st = self.classes.entry(f.class).or_default();
                st.total += 1;
                st.last_detail.clone_from(&f.detail);
                self.current.insert(id, f.class);
            }
            None => {
                self.current.remove(&id);
            }
        }
        let after = fault.map(|f| f.class);
        if before == after {
            return;
        }
        if let Some(c) = before {
            self.count(c, -1, now_ms);
        }
        if let Some(c) = after {
            self.count(c, 1, now_ms);
        }
    }

    /// Forget real servers no longer checked.
    pub fn retain(&mut self, keep: impl Fn(&RsIdentity) -> bool, now_ms: u64) {
        let gone: Vec<(RsIdentity, FaultClass)> = self
            .current
            .iter()
            .filter(|(id, _)| !keep(id))
            .map(|(id, c)| (*id, *c))
            .collect();
        for (id, c) in gone {
            self.current.remove(&id);
            self.count(c, -1, now_ms);
        }
    }

    fn count(&mut self, class: FaultClass, delta: isize, now_ms: u64) {
        let st = self.classes.entry(class).or_default();
        let was = st.real_servers;
        st.real_servers = was.saturating_add_signed(delta);
        if was == 0 && st.real_servers > 0 {
            st.since_ms = now_ms;
            self.began.insert(class, Instant::now());
            tracing::warn!(
                reason = class.name(),
                "health checks fail on the box itself ({}: {}): {}; real servers keep their state until their checks run again",
                class.name(),
                st.last_detail,
                class.hint()
            );
        } else if was > 0 && st.real_servers == 0 {
            st.since_ms = 0;
            let lasted = self
                .began
                .remove(&class)
                .map_or(0.0, |t| t.elapsed().as_secs_f64());
            tracing::info!(
                reason = class.name(),
                "health checks run again: the box's {} fault cleared after {lasted:.1} s",
                class.name()
            );
        }
    }

    /// Real servers whose last check failed locally.
    pub fn active(&self) -> usize {
        self.current.len()
    }

    /// The local fault class of `id`'s last check, if it was one.
    pub fn of(&self, id: &RsIdentity) -> Option<FaultClass> {
        self.current.get(id).copied()
    }

    /// Every class seen since start.
    pub fn classes(&self) -> &BTreeMap<FaultClass, ClassState> {
        &self.classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Proto, ServiceKey};
    use std::io::Error;

    fn err(errno: i32) -> Error {
        Error::from_raw_os_error(errno)
    }

    #[test]
    fn what_is_the_boxs_own() {
        let local = |p, e| classify(p, &err(e)).map(|f| f.class);
        assert_eq!(
            local(Phase::Socket, libc::EMFILE),
            Some(FaultClass::Descriptors)
        );
        assert_eq!(
            local(Phase::Socket, libc::ENFILE),
            Some(FaultClass::Descriptors)
        );
        assert_eq!(
            local(Phase::Connect, libc::ENETUNREACH),
            Some(FaultClass::NoRoute)
        );
        assert_eq!(
            local(Phase::Connect, libc::ENETDOWN),
            Some(FaultClass::NetworkDown)
        );
        assert_eq!(
            local(Phase::Connect, libc::EADDRNOTAVAIL),
            Some(FaultClass::NoSourceAddress)
        );
        assert_eq!(
            local(Phase::Connect, libc::EPERM),
            Some(FaultClass::NotPermitted)
        );
        assert_eq!(
            local(Phase::Exchange, libc::ENOBUFS),
            Some(FaultClass::Memory)
        );
        // What the network or the server answered is the server's.
        assert_eq!(local(Phase::Connect, libc::ECONNREFUSED), None);
        assert_eq!(local(Phase::Exchange, libc::EHOSTUNREACH), None);
        assert_eq!(local(Phase::Exchange, libc::ENETUNREACH), None);
        assert_eq!(local(Phase::Exchange, libc::ECONNRESET), None);
        assert_eq!(local(Phase::Exchange, libc::ETIMEDOUT), None);
        // Not an OS error at all.
        assert_eq!(classify(Phase::Socket, &Error::other("x")), None);
    }

    fn id(n: u8) -> RsIdentity {
        let key = ServiceKey {
            vip: "10.0.100.1".parse().unwrap(),
            proto: Proto::Tcp,
            port: 80,
        };
        (key, format!("10.0.0.{n}").parse().unwrap(), 8080)
    }

    #[test]
    fn counts_follow_each_real_servers_last_check() {
        let mut lf = LocalFaults::default();
        let emfile = classify(Phase::Socket, &err(libc::EMFILE)).unwrap();
        lf.record(id(1), Some(&emfile), 10);
        lf.record(id(2), Some(&emfile), 11);
        lf.record(id(2), Some(&emfile), 12);
        let d = &lf.classes()[&FaultClass::Descriptors];
        assert_eq!((d.real_servers, d.total, d.since_ms), (2, 3, 10));
        assert_eq!(lf.active(), 2);
        lf.record(id(1), None, 20);
        assert_eq!(lf.of(&id(1)), None);
        assert_eq!(lf.of(&id(2)), Some(FaultClass::Descriptors));
        let route = classify(Phase::Connect, &err(libc::ENETUNREACH)).unwrap();
        lf.record(id(2), Some(&route), 21);
        assert_eq!(lf.classes()[&FaultClass::Descriptors].real_servers, 0);
        assert_eq!(lf.classes()[&FaultClass::Descriptors].since_ms, 0);
        assert_eq!(lf.classes()[&FaultClass::NoRoute].real_servers, 1);
        lf.retain(|i| *i != id(2), 30);
        assert_eq!(lf.active(), 0);
        assert_eq!(lf.classes()[&FaultClass::NoRoute].real_servers, 0);
        assert_eq!(lf.classes()[&FaultClass::NoRoute].total, 1);
    }
}
