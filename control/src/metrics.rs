//! Prometheus exposition: built at scrape time from the workers' counters (no metric is
//! updated on the hot path; the workers' plain per-core counters are read and summed here).

use prometheus::proto::{Counter as PCounter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::sync::Arc;
use vipd_dataplane::counters::{Counter, WorkerCounters};

/// Extra gauges the control thread knows.
#[derive(Debug, Default, Clone)]
pub struct ControlGauges {
    /// Generation of the published snapshot.
    pub snapshot_generation: u64,
    /// Neighbours by state name.
    pub neighbours: Vec<(&'static str, u64)>,
    /// Real servers: (service "vip:port/proto", real server "ip:port", weight, resolved).
    pub backends: Vec<(String, String, u32, bool)>,
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

/// The `/metrics` body.
pub fn render(workers: &[Arc<WorkerCounters>], control: &ControlGauges) -> String {
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
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families; an error leaves what was written.
    let _ = TextEncoder::new().encode(&families, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}
