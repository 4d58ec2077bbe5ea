//! The families of vipd's self-defence: the API's listeners (connections held, evicted,
//! refused, timed out) and the box's side of the health checks (checks that could not run for
//! a fault of the box's own, verdicts the mass-transition guard holds).

use super::{counter, gauge, label, service_label, Families};
use crate::api::admission::{ListenerCounters, Via};
use crate::health::local::FaultClass;
use crate::view::Shared;

/// The API's listeners: connections held, and how connections ended or were turned away.
pub(super) fn api_families(shared: &Shared, f: &mut Families) {
    use std::sync::atomic::Ordering::Relaxed;
    let a = &shared.admissions;
    let listeners = [(Via::Tcp, &a.tcp), (Via::Unix, &a.unix)];
    let l = |v: Via| vec![label("listener", v.name())];
    f.gauge(
        "vipd_api_connections",
        "Connections the API holds now, per listener (tcp: api.listen, unix: api.socket).",
        listeners
            .iter()
            .map(|(v, ad)| gauge(l(*v), ad.open() as f64))
            .collect(),
    );
    type Get = fn(&ListenerCounters) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, &str, Get); 7] = [
        ("vipd_api_connections_accepted_total", "Connections the API accepted.", |c| &c.accepted),
        ("vipd_api_connections_refused_total", "Connections refused at api.max_connections (every connection held had shown a token).", |c| &c.refused),
        ("vipd_api_connections_evicted_total", "Connections closed to make room for a new one at api.max_connections (they had shown no token).", |c| &c.evicted),
        ("vipd_api_header_timeouts_total", "Connections closed because a request head, body or TLS handshake took longer than api.header_timeout (slow clients, idle kept-alive connections).", |c| &c.header_timeouts),
        ("vipd_api_idle_timeouts_total", "Connections closed after api.idle_timeout without a byte moving while vipd had no request of theirs to work on.", |c| &c.idle_timeouts),
        ("vipd_api_accept_errors_total", "accept(2) failures (EMFILE: vipd has no descriptor left).", |c| &c.accept_errors),
        ("vipd_api_peers_refused_total", "Connections to api.socket refused for their user id (neither root nor vipd's user).", |c| &c.peers_refused),
    ];
    for (name, help, get) in families {
        f.counter(
            name,
            help,
            listeners
                .iter()
                .map(|(v, ad)| counter(l(*v), get(&ad.counters).load(Relaxed)))
                .collect(),
        );
    }
}

/// The box's side of the health checks: checks that could not run for a reason of the box's
/// own (by class, every class always present so that alerts and dashboards see zeros), and the
/// down verdicts the mass-transition guard holds per service.
pub(super) fn health_families(shared: &Shared, f: &mut Families) {
    let b = shared
        .health
        .summary
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let class = |c: FaultClass| b.local_faults.get(&c).cloned().unwrap_or_default();
    f.counter(
        "vipd_health_local_faults_total",
        "Health checks that could not run for a reason of the box's own (no descriptor, no buffer, no route, the interface down): they take no real server down.",
        FaultClass::ALL
            .iter()
            .map(|&c| counter(vec![label("reason", c.name())], class(c).total))
            .collect(),
    );
    f.gauge(
        "vipd_health_failing_locally",
        "Real servers whose last health check could not run for a reason of the box's own.",
        FaultClass::ALL
            .iter()
            .map(|&c| {
                gauge(
                    vec![label("reason", c.name())],
                    class(c).real_servers as f64,
                )
            })
            .collect(),
    );
    f.gauge(
        "vipd_health_max_down_percent",
        "health.max_down_percent: most of a service's checked real servers that may go down within one check interval (100: no guard).",
        vec![gauge(vec![], f64::from(b.max_down_percent))],
    );
    f.gauge(
        "vipd_health_held_real_servers",
        "Real servers whose down verdict the mass-transition guard holds: they keep their traffic (vipctl health --release applies the verdicts).",
        b.services
            .iter()
            .map(|s| gauge(vec![label("service", &service_label(&s.key))], s.held as f64))
            .collect(),
    );
    f.counter(
        "vipd_health_held_total",
        "Down verdicts held by the mass-transition guard.",
        b.services
            .iter()
            .map(|s| counter(vec![label("service", &service_label(&s.key))], s.held_total))
            .collect(),
    );
}
