//! Prometheus exposition, built at scrape time: the workers' per-core counters and
//! per-real-server slots are read and summed here (nothing is updated on the hot path for
//! metrics), the control loop's gauges come from the published view. Conventions: `vipd_`
//! prefix, `_total` for counters, base units, labels that stay bounded (worker, port, reason,
//! service, real server). docs/metrics.md lists every family.

mod api_and_health;
mod bond;

use crate::kernel::counters::KernelCounter;
use crate::view::{Shared, View};
use prometheus::proto::{Counter as PCounter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::net::SocketAddr;
use vipd_dataplane::backend_stats::BackendCounts;
use vipd_dataplane::counters::Counter;
use vipd_dataplane::io::dpdk::{LacpState, PortStats};

/// A port as the control loop last saw it.
#[derive(Debug, Default, Clone)]
pub struct PortGauges {
    /// Name from the configuration.
    pub name: String,
    /// Link state.
    pub link_up: bool,
    /// The NIC's counters (None when the PMD gives none).
    pub stats: Option<PortStats>,
    /// A bond's members, in the configured order.
    pub members: Vec<MemberGauges>,
    /// A bond's announcements after failovers: (gratuitous ARPs, unsolicited NAs) sent.
    pub announced: (u64, u64),
}

/// A bonded port's member as the control loop last saw it.
#[derive(Debug, Default, Clone)]
pub struct MemberGauges {
    /// Its device name.
    pub name: String,
    /// Link state.
    pub link_up: bool,
    /// Its counters.
    pub stats: Option<PortStats>,
    /// An 802.3ad bond's LACP state for it (actor side; no bit set when the PMD has none);
    /// None in other modes.
    pub lacp: Option<LacpState>,
}

/// Gauges the control thread knows.
#[derive(Debug, Default, Clone)]
pub struct ControlGauges {
    /// Generation of the published snapshot.
    pub snapshot_generation: u64,
    /// Neighbours by state name.
    pub neighbours: Vec<(&'static str, u64)>,
    /// Real servers: (service "vip:port/proto", real server "ip:port", weight, resolved).
    pub backends: Vec<(String, String, u32, bool)>,
    /// Ports.
    pub ports: Vec<PortGauges>,
    /// Mbuf pool: (in use, size).
    pub mempool: (u64, u64),
    /// Flow table capacity per worker.
    pub flow_capacity: u64,
    /// Frames the control thread sent (ARP requests, neighbour solicitations).
    pub control_tx: u64,
    /// Frames the control thread received from the workers.
    pub control_rx: u64,
    /// Health transitions since start.
    pub health_transitions: u64,
    /// Reloads refused since start.
    pub reload_failures: u64,
    /// State file writes that failed since start.
    pub state_write_failures: u64,
    /// Per worker: stalled now (no loop iteration for over a second).
    pub worker_stalled: Vec<bool>,
    /// Per worker: stalls since start.
    pub worker_stalls: Vec<u64>,
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn counter(labels: Vec<LabelPair>, v: u64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels);
    let mut c = PCounter::default();
    c.set_value(v as f64);
    m.set_counter(c);
    m
}

fn gauge(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels);
    let mut g = Gauge::default();
    g.set_value(v);
    m.set_gauge(g);
    m
}

/// The families of one scrape, in order.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        if metrics.is_empty() {
            // The encoder refuses a family without samples, and would stop there: an empty
            // family (no health checks configured, say) must not hide the ones after it.
            return;
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(metrics);
        self.0.push(f);
    }

    fn counter(&mut self, name: &str, help: &str, metrics: Vec<Metric>) {
        self.push(name, help, MetricType::COUNTER, metrics);
    }

    fn gauge(&mut self, name: &str, help: &str, metrics: Vec<Metric>) {
        self.push(name, help, MetricType::GAUGE, metrics);
    }
}

fn service_label(key: &crate::config::ServiceKey) -> String {
    format!(
        "{}/{}",
        SocketAddr::new(key.vip, key.port),
        key.proto.name()
    )
}

/// The `/metrics` body.
pub fn render(shared: &Shared, view: &View) -> String {
    let mut f = Families::default();
    worker_families(shared, view, &mut f);
    control_families(view, &mut f);
    bond::member_families(&view.gauges.ports, &mut f);
    kernel_families(shared, &mut f);
    scaleout_families(shared, &mut f);
    real_server_families(shared, view, &mut f);
    api_and_health::health_families(shared, &mut f);
    api_and_health::api_families(shared, &mut f);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&f.0, &mut out) {
        tracing::error!("metrics: encoding stopped: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The exception path's families: frames and bytes each way per kernel interface, drops by
/// interface and reason.
/// The box's drain switch and, with `[bgp]`, each VIP's announcement (docs/scale-out.md).
fn scaleout_families(shared: &Shared, f: &mut Families) {
    let st = shared.scaleout.status();
    let flag = |b: bool| f64::from(u8::from(b));
    f.gauge(
        "vipd_box_drained",
        "1 while the box's maintenance switch is on (vipctl drain --box): its VIPs are withdrawn, forwarding goes on.",
        vec![gauge(vec![], flag(st.drained))],
    );
    f.gauge(
        "vipd_consistent_hash_table_info",
        "Always 1; `fingerprint` hashes the service's Maglev table (every slot's real server): boxes sharing the VIP must show the same.",
        st.tables
            .iter()
            .map(|t| {
                let labels = vec![
                    label("service", &service_label(&t.service)),
                    label("fingerprint", &t.fingerprint),
                ];
                gauge(labels, 1.0)
            })
            .collect(),
    );
    let Some(bgp) = &st.bgp else {
        return;
    };
    f.gauge(
        "vipd_bgp_connected",
        "1 while vipd is connected to the BGP daemon's control socket.",
        vec![gauge(vec![], flag(bgp.driver.connected))],
    );
    f.counter(
        "vipd_bgp_errors_total",
        "Commands to the BGP daemon, or connections to it, that failed.",
        vec![counter(vec![], bgp.driver.errors)],
    );
    f.gauge(
        "vipd_vip_announced",
        "1 when the VIP is announced: vipd wants it announced and the BGP daemon holds it so.",
        st.vips
            .iter()
            .map(|v| {
                let on = v.announce && v.announced == Some(true);
                gauge(vec![label("vip", &v.vip.to_string())], flag(on))
            })
            .collect(),
    );
}

fn kernel_families(shared: &Shared, f: &mut Families) {
    let mut drops = Vec::new();
    for &c in KernelCounter::ALL {
        let metrics = shared.kernel.interfaces.iter().map(|i| {
            let mut labels = vec![label("interface", &i.interface), label("port", &i.port)];
            if c.is_drop() {
                labels.push(label("reason", c.name().trim_start_matches("drop_")));
            }
            counter(labels, i.get(c))
        });
        if c.is_drop() {
            drops.extend(metrics);
        } else {
            f.counter(
                &format!("vipd_kernel_{}_total", c.name()),
                c.help(),
                metrics.collect(),
            );
        }
    }
    f.counter(
        "vipd_kernel_drops_total",
        KernelCounter::DropTapFull.help(),
        drops,
    );
}

fn worker_families(shared: &Shared, view: &View, f: &mut Families) {
    let workers = &shared.workers;
    let w_label = |i: usize| label("worker", &i.to_string());
    let mut drops = Vec::new();
    for &c in Counter::ALL {
        let per_worker: Vec<Metric> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut labels = vec![w_label(i)];
                if c.is_drop() {
                    labels.push(label("reason", c.name().trim_start_matches("drop_")));
                }
                counter(labels, w.get(c))
            })
            .collect();
        if c.is_drop() {
            drops.extend(per_worker);
        } else {
            let name = format!("vipd_{}_total", c.name());
            f.counter(&name, c.help(), per_worker);
        }
    }
    f.counter(
        "vipd_drops_total",
        "Packets dropped, by worker and reason (every drop has a reason; docs/metrics.md explains each).",
        drops,
    );
    f.gauge(
        "vipd_flows_active",
        "Connections in each worker's flow table.",
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| gauge(vec![w_label(i)], w.flows_active() as f64))
            .collect(),
    );
    f.gauge(
        "vipd_flow_table_capacity",
        "Connections each worker's flow tables hold (flows.capacity_per_worker for IPv4 plus flows.capacity_per_worker_v6 for IPv6).",
        (0..workers.len())
            .map(|i| gauge(vec![w_label(i)], view.gauges.flow_capacity as f64))
            .collect(),
    );
    f.gauge(
        "vipd_worker_stalled",
        "1 while the worker has run no loop iteration for over a second: its queues are not served, the VIPs are withdrawn and systemd's watchdog is not fed.",
        view.gauges
            .worker_stalled
            .iter()
            .enumerate()
            .map(|(i, &s)| gauge(vec![w_label(i)], f64::from(u8::from(s))))
            .collect(),
    );
    f.counter(
        "vipd_worker_stalls_total",
        "Times the worker stalled (over a second without a loop iteration) since vipd started.",
        view.gauges
            .worker_stalls
            .iter()
            .enumerate()
            .map(|(i, &n)| counter(vec![w_label(i)], n))
            .collect(),
    );
    f.gauge(
        "vipd_worker_snapshot_generation",
        "Generation of the snapshot each worker forwards by.",
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| gauge(vec![w_label(i)], w.generation() as f64))
            .collect(),
    );
}

fn control_families(view: &View, f: &mut Families) {
    let g = &view.gauges;
    f.gauge(
        "vipd_build_info",
        "Always 1; the labels say which vipd this is.",
        vec![gauge(
            vec![label("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        )],
    );
    f.gauge(
        "vipd_snapshot_generation",
        "Generation of the configuration snapshot the control plane published last.",
        vec![gauge(vec![], g.snapshot_generation as f64)],
    );
    f.gauge(
        "vipd_config_unsaved_changes",
        "API changes since the configuration file was read (lost on reload unless saved).",
        vec![gauge(vec![], view.unsaved_changes as f64)],
    );
    f.gauge(
        "vipd_neighbours",
        "Neighbour entries by state.",
        g.neighbours
            .iter()
            .map(|(s, n)| gauge(vec![label("state", s)], *n as f64))
            .collect(),
    );
    f.gauge(
        "vipd_port_link_up",
        "1 when the port's link is up.",
        g.ports
            .iter()
            .map(|p| gauge(vec![label("port", &p.name)], f64::from(u8::from(p.link_up))))
            .collect(),
    );
    type Get = fn(&PortStats) -> u64;
    let nic: [(&str, &str, Get); 8] = [
        ("vipd_port_rx_packets_total", "Frames the NIC received (ipackets).", |s| s.rx_packets),
        ("vipd_port_tx_packets_total", "Frames the NIC sent (opackets).", |s| s.tx_packets),
        ("vipd_port_rx_bytes_total", "Bytes the NIC received (ibytes).", |s| s.rx_bytes),
        ("vipd_port_tx_bytes_total", "Bytes the NIC sent (obytes).", |s| s.tx_bytes),
        (
            "vipd_port_rx_missed_total",
            "Frames the NIC dropped because no receive descriptor was free (imissed): the workers do not keep up.",
            |s| s.rx_missed,
        ),
        ("vipd_port_rx_errors_total", "Erroneous frames received (ierrors).", |s| s.rx_errors),
        ("vipd_port_tx_errors_total", "Failed transmissions (oerrors).", |s| s.tx_errors),
        (
            "vipd_port_rx_nombuf_total",
            "Receive mbuf allocation failures (rx_nombuf): the mbuf pool ran dry.",
            |s| s.rx_nombuf,
        ),
    ];
    for (name, help, get) in nic {
        f.counter(
            name,
            help,
            g.ports
                .iter()
                .filter_map(|p| {
                    p.stats
                        .as_ref()
                        .map(|s| counter(vec![label("port", &p.name)], get(s)))
                })
                .collect(),
        );
    }
    f.gauge(
        "vipd_mempool_mbufs_in_use",
        "Mbufs of the pool in use (in rings, queues, bursts in flight).",
        vec![gauge(vec![], g.mempool.0 as f64)],
    );
    f.gauge(
        "vipd_mempool_mbufs",
        "Mbufs in the pool.",
        vec![gauge(vec![], g.mempool.1 as f64)],
    );
    f.counter(
        "vipd_control_tx_total",
        "Frames the control thread sent (ARP requests, neighbour solicitations).",
        vec![counter(vec![], g.control_tx)],
    );
    f.counter(
        "vipd_control_rx_total",
        "Frames the control thread received from the workers (ARP replies, neighbour advertisements).",
        vec![counter(vec![], g.control_rx)],
    );
    f.counter(
        "vipd_health_transitions_total",
        "Real servers that changed state (up to down or back) by their health checks.",
        vec![counter(vec![], g.health_transitions)],
    );
    f.counter(
        "vipd_config_reload_failures_total",
        "Reloads refused (SIGHUP, systemctl reload, vipctl reload, POST /api/v1/reload): the file is invalid or changes a restart-only key; the running configuration stayed.",
        vec![counter(vec![], g.reload_failures)],
    );
    f.counter(
        "vipd_state_write_failures_total",
        "Writes of the state file (drains, box drain, unsaved API changes, health kept across restarts) that failed: what changed is lost if vipd restarts before the next write.",
        vec![counter(vec![], g.state_write_failures)],
    );
}

/// Per-service and per-real-server families, from the slot counters summed over workers (raw,
/// monotonic: never affected by `vipctl -Z`).
fn real_server_families(shared: &Shared, view: &View, f: &mut Families) {
    let health = shared
        .health
        .status
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    let mut readings = Vec::new();
    let mut service_up = Vec::new();
    let mut service_rs = Vec::new();
    let mut service_healthy = Vec::new();
    for s in &view.services {
        let service = service_label(&s.key);
        let sl = || vec![label("service", &service)];
        service_up.push(gauge(sl(), f64::from(u8::from(s.schedulable))));
        service_rs.push(gauge(
            sl(),
            s.real_servers.iter().filter(|r| !r.sorry).count() as f64,
        ));
        service_healthy.push(gauge(
            sl(),
            s.real_servers
                .iter()
                .filter(|r| !r.sorry && r.up && r.weight > 0)
                .count() as f64,
        ));
        for r in &s.real_servers {
            let rs = SocketAddr::new(r.id.1, r.id.2).to_string();
            readings.push((
                service.clone(),
                rs,
                view.book.read(&shared.backends, r.slot),
                r,
                health.get(&r.id),
            ));
        }
    }
    f.gauge(
        "vipd_service_schedulable",
        "1 when the service can take new connections (a real server up with weight > 0, or a sorry server).",
        service_up,
    );
    f.gauge(
        "vipd_service_real_servers",
        "Real servers configured in the service (sorry servers not counted).",
        service_rs,
    );
    f.gauge(
        "vipd_service_real_servers_healthy",
        "Real servers of the service that are up with weight > 0 (sorry servers not counted).",
        service_healthy,
    );
    let labels = |s: &str, r: &str| vec![label("service", s), label("real_server", r)];
    type Get = fn(&BackendCounts) -> u64;
    let counters: [(&str, &str, Get); 8] = [
        (
            "vipd_real_server_connections_total",
            "Connections scheduled to the real server.",
            |c| c.new_conns,
        ),
        (
            "vipd_real_server_step1_packets_total",
            "Step 1: client packets of the real server's connections received by vipd.",
            |c| c.step1_packets,
        ),
        (
            "vipd_real_server_step3_packets_total",
            "Step 3: packets from the real server received by vipd (NAT replies).",
            |c| c.step3_packets,
        ),
        (
            "vipd_real_server_step3_missing_total",
            "NAT connections whose client retransmitted its SYN before any reply came back through vipd: the real server's replies take another path (its default route does not point at vipd).",
            |c| c.step3_missing,
        ),
        (
            "vipd_real_server_in_packets_total",
            "Packets forwarded to the real server (step 2).",
            |c| c.in_packets,
        ),
        (
            "vipd_real_server_in_bytes_total",
            "Bytes forwarded to the real server (step 2).",
            |c| c.in_bytes,
        ),
        (
            "vipd_real_server_out_packets_total",
            "Packets from the real server sent back to clients (NAT step 4).",
            |c| c.out_packets,
        ),
        (
            "vipd_real_server_out_bytes_total",
            "Bytes from the real server sent back to clients (NAT step 4).",
            |c| c.out_bytes,
        ),
    ];
    for (name, help, get) in counters {
        f.counter(
            name,
            help,
            readings
                .iter()
                .map(|(s, r, c, ..)| counter(labels(s, r), get(c)))
                .collect(),
        );
    }
    f.gauge(
        "vipd_real_server_active_connections",
        "Established connections in the flow tables (ipvsadm ActiveConn).",
        readings
            .iter()
            .map(|(s, r, c, ..)| gauge(labels(s, r), c.active as f64))
            .collect(),
    );
    f.gauge(
        "vipd_real_server_inactive_connections",
        "Connections in other states: opening, closing, UDP (ipvsadm InActConn).",
        readings
            .iter()
            .map(|(s, r, c, ..)| gauge(labels(s, r), c.inactive as f64))
            .collect(),
    );
    f.gauge(
        "vipd_real_server_persistent_connections",
        "Persistence entries (client networks of persistent services) pointing at the real server (ipvsadm PersistConn).",
        readings
            .iter()
            .map(|(s, r, c, ..)| gauge(labels(s, r), c.persistent as f64))
            .collect(),
    );
    f.gauge(
        "vipd_real_server_weight",
        "Configured weight of the real server (0: drained).",
        readings
            .iter()
            .map(|(s, r, _, v, _)| gauge(labels(s, r), f64::from(v.weight)))
            .collect(),
    );
    f.gauge(
        "vipd_real_server_up",
        "1 when the real server passes its health checks (or has none), else 0.",
        readings
            .iter()
            .map(|(s, r, _, v, _)| gauge(labels(s, r), f64::from(u8::from(v.up))))
            .collect(),
    );
    f.gauge(
        "vipd_real_server_resolved",
        "1 when the real server's next hop MAC is known, else 0 (its packets are dropped).",
        readings
            .iter()
            .map(|(s, r, _, v, _)| {
                let resolved = v.next_hop.is_some_and(|(_, m)| m.is_some());
                gauge(labels(s, r), f64::from(u8::from(resolved)))
            })
            .collect(),
    );
    let checked: Vec<_> = readings.iter().filter(|x| x.4.is_some()).collect();
    f.counter(
        "vipd_health_checks_total",
        "Health checks run against the real server, by result.",
        checked
            .iter()
            .flat_map(|(s, r, _, _, h)| {
                let h = h.cloned().unwrap_or_default();
                let mut ok = labels(s, r);
                ok.push(label("result", "ok"));
                let mut failed = labels(s, r);
                failed.push(label("result", "failed"));
                let mut local = labels(s, r);
                local.push(label("result", "local_fault"));
                [
                    counter(ok, h.checks.saturating_sub(h.failures + h.local_faults)),
                    counter(failed, h.failures),
                    counter(local, h.local_faults),
                ]
            })
            .collect(),
    );
    f.gauge(
        "vipd_real_server_last_transition_timestamp_seconds",
        "When the real server's health state last changed (Unix time; 0: not since its check started).",
        checked
            .iter()
            .map(|(s, r, _, _, h)| {
                let ms = h.map_or(0, |h| h.last_transition_ms);
                gauge(labels(s, r), ms as f64 / 1000.0)
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests;
