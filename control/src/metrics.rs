//! Prometheus exposition: built at scrape time from the workers' counters (no metric is
//! updated on the hot path; the workers' plain per-core counters are read and summed here).

use crate::view::{Shared, View};
use prometheus::proto::{Counter as PCounter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use vipd_dataplane::backend_stats;
use vipd_dataplane::counters::Counter;

/// Extra gauges the control thread knows.
#[derive(Debug, Default, Clone)]
pub struct ControlGauges {
    /// Generation of the published snapshot.
    pub snapshot_generation: u64,
    /// Neighbours by state name.
    pub neighbours: Vec<(&'static str, u64)>,
    /// Real servers: (service "vip:port/proto", real server "ip:port", weight, resolved).
    pub backends: Vec<(String, String, u32, bool)>,
    /// Health transitions since start.
    pub health_transitions: u64,
    /// Ports: (name, link up).
    pub ports: Vec<(String, bool)>,
    /// Packets the control thread sent (ARP requests) and could not send.
    pub control_tx: u64,
    /// Frames the control thread received from workers.
    pub control_rx: u64,
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
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

/// Per-real-server families, from the slot counters summed over workers (raw, monotonic:
/// never affected by `vipctl -Z`).
fn real_server_families(shared: &Shared, view: &View, families: &mut Vec<MetricFamily>) {
    type Get = fn(&backend_stats::BackendCounts) -> u64;
    let kinds: [(&str, &str, MetricType, Get); 7] = [
        (
            "vipd_real_server_connections_total",
            "Connections scheduled to the real server.",
            MetricType::COUNTER,
            |c| c.new_conns,
        ),
        (
            "vipd_real_server_in_packets_total",
            "Packets forwarded to the real server (step 2).",
            MetricType::COUNTER,
            |c| c.in_packets,
        ),
        (
            "vipd_real_server_in_bytes_total",
            "Bytes forwarded to the real server (step 2).",
            MetricType::COUNTER,
            |c| c.in_bytes,
        ),
        (
            "vipd_real_server_out_packets_total",
            "Packets from the real server sent to clients (NAT steps 3-4).",
            MetricType::COUNTER,
            |c| c.out_packets,
        ),
        (
            "vipd_real_server_out_bytes_total",
            "Bytes from the real server sent to clients (NAT steps 3-4).",
            MetricType::COUNTER,
            |c| c.out_bytes,
        ),
        (
            "vipd_real_server_active_connections",
            "Established connections in the flow tables.",
            MetricType::GAUGE,
            |c| c.active,
        ),
        (
            "vipd_real_server_inactive_connections",
            "Connections in other states (opening, closing, UDP).",
            MetricType::GAUGE,
            |c| c.inactive,
        ),
    ];
    let mut readings = Vec::new();
    for s in &view.services {
        let service = format!(
            "{}/{}",
            std::net::SocketAddr::new(s.key.vip, s.key.port),
            s.key.proto.name()
        );
        for r in &s.real_servers {
            let rs = std::net::SocketAddr::new(r.id.1, r.id.2).to_string();
            readings.push((
                service.clone(),
                rs,
                view.book.read(&shared.backends, r.slot),
                r,
            ));
        }
    }
    for (name, help, kind, get) in kinds {
        let metrics = readings
            .iter()
            .map(|(s, r, c, _)| {
                let labels = vec![label("service", s), label("real_server", r)];
                if kind == MetricType::COUNTER {
                    counter(labels, get(c))
                } else {
                    gauge(labels, get(c) as f64)
                }
            })
            .collect();
        families.push(family(name, help, kind, metrics));
    }
    families.push(family(
        "vipd_real_server_up",
        "1 when the real server passes its health checks (or has none), else 0.",
        MetricType::GAUGE,
        readings
            .iter()
            .map(|(s, r, _, v)| {
                gauge(
                    vec![label("service", s), label("real_server", r)],
                    f64::from(u8::from(v.up)),
                )
            })
            .collect(),
    ));
}

/// The `/metrics` body.
pub fn render(shared: &Shared, view: &View) -> String {
    let workers = &shared.workers;
    let control = &view.gauges;
    let mut families = Vec::new();
    let mut drops = Vec::new();
    for &c in Counter::ALL {
        let per_worker: Vec<Metric> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.get(c)))
            .map(|(i, v)| {
                let mut labels = vec![label("worker", &i.to_string())];
                if c.is_drop() {
                    labels.push(label("reason", c.name().trim_start_matches("drop_")));
                }
                counter(labels, v)
            })
            .collect();
        if c.is_drop() {
            drops.extend(per_worker);
        } else {
            families.push(family(
                &format!("vipd_{}_total", c.name()),
                c.help(),
                MetricType::COUNTER,
                per_worker,
            ));
        }
    }
    families.push(family(
        "vipd_drops_total",
        "Packets dropped, by worker and reason (every drop has a reason).",
        MetricType::COUNTER,
        drops,
    ));
    families.push(family(
        "vipd_flows_active",
        "Connections in each worker's flow table.",
        MetricType::GAUGE,
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                gauge(
                    vec![label("worker", &i.to_string())],
                    w.flows_active() as f64,
                )
            })
            .collect(),
    ));
    families.push(family(
        "vipd_snapshot_generation",
        "Generation of the configuration snapshot the workers forward by.",
        MetricType::GAUGE,
        vec![gauge(vec![], control.snapshot_generation as f64)],
    ));
    families.push(family(
        "vipd_neighbours",
        "Neighbour entries by state.",
        MetricType::GAUGE,
        control
            .neighbours
            .iter()
            .map(|(s, n)| gauge(vec![label("state", s)], *n as f64))
            .collect(),
    ));
    families.push(family(
        "vipd_real_server_weight",
        "Configured weight of each real server.",
        MetricType::GAUGE,
        control
            .backends
            .iter()
            .map(|(s, b, w, _)| {
                gauge(
                    vec![label("service", s), label("real_server", b)],
                    f64::from(*w),
                )
            })
            .collect(),
    ));
    families.push(family(
        "vipd_real_server_resolved",
        "1 when the real server's next hop MAC is known, else 0 (its packets are dropped).",
        MetricType::GAUGE,
        control
            .backends
            .iter()
            .map(|(s, b, _, r)| {
                gauge(
                    vec![label("service", s), label("real_server", b)],
                    f64::from(u8::from(*r)),
                )
            })
            .collect(),
    ));
    families.push(family(
        "vipd_port_link_up",
        "1 when the port's link is up.",
        MetricType::GAUGE,
        control
            .ports
            .iter()
            .map(|(p, up)| gauge(vec![label("port", p)], f64::from(u8::from(*up))))
            .collect(),
    ));
    families.push(family(
        "vipd_control_tx_total",
        "Frames the control thread sent (ARP requests).",
        MetricType::COUNTER,
        vec![counter(vec![], control.control_tx)],
    ));
    families.push(family(
        "vipd_control_rx_total",
        "Frames the control thread received from the workers (ARP replies).",
        MetricType::COUNTER,
        vec![counter(vec![], control.control_rx)],
    ));
    families.push(family(
        "vipd_health_transitions_total",
        "Real servers that changed state (up to down or back) by their health checks.",
        MetricType::COUNTER,
        vec![counter(vec![], control.health_transitions)],
    ));
    real_server_families(shared, view, &mut families);
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families; an error leaves what was written.
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
