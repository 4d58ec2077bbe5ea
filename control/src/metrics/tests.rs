//! The Prometheus exposition: names, labels and values against the views they come from.

use super::*;
use crate::config::{Proto, ServiceKey};
use crate::kernel::counters::{InterfaceCounters, KernelCounters};
use crate::view::{RealServerView, ServiceView};
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use vipd_dataplane::backend_stats::BackendStats;
use vipd_dataplane::counters::WorkerCounters;
use vipd_dataplane::snapshot::FwdMode;

/// A scrape of a vipd with one service, one real server, one port, one worker.
fn scrape() -> String {
    let key = ServiceKey {
        vip: "10.0.100.1".parse().unwrap(),
        proto: Proto::Tcp,
        port: 80,
    };
    let rs = RealServerView {
        id: (key, "10.0.0.21".parse().unwrap(), 8080),
        slot: 0,
        weight: 1,
        mode: FwdMode::Nat,
        sorry: false,
        check: Some(crate::config::CheckSpec {
            kind: crate::config::CheckKind::Tcp,
            target: "10.0.0.21:8080".parse().unwrap(),
            interval: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }),
        up: true,
        next_hop: None,
        limit: Default::default(),
    };
    let health: crate::health::StatusMap = Arc::default();
    health.lock().unwrap().insert(rs.id, Default::default());
    let view = View {
        services: vec![ServiceView {
            key,
            scheduler: "maglev",
            schedulable: true,
            drop_dead_flows: true,
            hash: "5-tuple",
            sched_flags: Default::default(),
            persistence: None,
            real_servers: vec![rs],
        }],
        gauges: ControlGauges {
            ports: vec![PortGauges {
                name: "lan".into(),
                link_up: true,
                stats: Some(PortStats::default()),
                members: vec![
                    MemberGauges {
                        name: "net_tap1".into(),
                        link_up: false,
                        stats: Some(PortStats::default()),
                        lacp: Some(LacpState(0)),
                    },
                    MemberGauges {
                        name: "net_tap2".into(),
                        link_up: true,
                        stats: Some(PortStats::default()),
                        // active, aggregation, synchronization, collecting, distributing
                        lacp: Some(LacpState(0x3d)),
                    },
                ],
                announced: (6, 3),
            }],
            neighbours: vec![("static", 0), ("incomplete", 0), ("reachable", 1)],
            worker_stalled: vec![false],
            worker_stalls: vec![0],
            ..Default::default()
        },
        ..Default::default()
    };
    let health = crate::health::HealthHandle::detached(health);
    health
        .summary
        .lock()
        .unwrap()
        .services
        .push(crate::health::ServiceGuard {
            key,
            held: 0,
            held_total: 0,
        });
    let shared = Shared {
        workers: vec![Arc::new(WorkerCounters::default())],
        backends: vec![Arc::new(BackendStats::new(4))],
        kernel: Arc::new(KernelCounters {
            interfaces: vec![InterfaceCounters::new("vipd0", "lan", 0)],
        }),
        view: ArcSwap::from_pointee(View::default()),
        commands: crossbeam::channel::unbounded().0,
        health,
        tokens: Default::default(),
        admissions: crate::api::Admissions::new(&Default::default()),
        samplers: Vec::new(),
        tracers: Vec::new(),
        listing: tokio::sync::Mutex::new(()),
        scaleout: crate::scaleout::BoxHandle::with_status(crate::scaleout::BoxStatus {
            bgp: Some(crate::scaleout::BgpStatus {
                daemon: "bird".into(),
                socket: "/run/bird/bird.ctl".into(),
                protocols_file: "/var/lib/vipd/bird-vips.conf".into(),
                driver: Default::default(),
            }),
            vips: vec![crate::scaleout::VipStatus {
                vip: "10.0.100.1".parse().unwrap(),
                protocol: "vipd_10_0_100_1".into(),
                announce: true,
                announced: Some(true),
                reason: "1 of 1 real server(s) up".into(),
                real_servers_ready: 1,
                real_servers: 1,
            }],
            tables: vec![crate::scaleout::tables::TableFingerprint {
                service: key,
                scheduler: "maglev",
                size: 65537,
                real_servers: 1,
                fingerprint: "00112233445566778899aabbccddeeff".into(),
            }],
            ..Default::default()
        }),
    };
    render(&shared, &view)
}

fn exported() -> BTreeSet<String> {
    scrape()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `vipd_...` name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("vipd_") {
        let start = i + p;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if before_ok && end > start + "vipd_".len() {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn dashboard_and_alerts_use_only_exported_series() {
    let exported = exported();
    let dashboard = read("packaging/grafana/vipd-dashboard.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = String::new();
    for p in json["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let rules = read("packaging/prometheus/vipd.rules.yml");
    for (what, text) in [("dashboard", exprs), ("rules", rules)] {
        let used = names_in(&text);
        assert!(!used.is_empty(), "{what} uses no vipd series");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses series vipd does not export: {unknown:?}"
        );
    }
}

#[test]
fn every_family_is_documented_and_every_documented_one_exists() {
    let exported = exported();
    let documented = names_in(&read("docs/metrics.md"));
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "docs/metrics.md lacks {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md names series vipd does not export: {stale:?}"
    );
    let docs = read("docs/metrics.md");
    for c in Counter::ALL.iter().filter(|c| c.is_drop()) {
        let reason = format!("`{}`", c.name().trim_start_matches("drop_"));
        assert!(
            docs.contains(&reason),
            "docs/metrics.md does not explain drop reason {reason}"
        );
    }
}

#[test]
fn exposition_is_conventional() {
    for line in scrape().lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut it = line.split_whitespace();
        let (name, kind) = (it.next().unwrap(), it.next().unwrap());
        assert!(name.starts_with("vipd_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
    }
}

#[test]
fn lacp_members_show_whether_they_carry_traffic() {
    let text = scrape();
    let value = |family: &str, member: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .find(|l| l.contains(&format!("member=\"{member}\"")) && l.contains("port=\"lan\""))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    for (family, member, want) in [
        ("vipd_bond_member_lacp_distributing", "net_tap1", "0"),
        ("vipd_bond_member_lacp_distributing", "net_tap2", "1"),
        ("vipd_bond_member_lacp_collecting", "net_tap2", "1"),
        ("vipd_bond_member_lacp_defaulted", "net_tap2", "0"),
        ("vipd_bond_member_link_up", "net_tap2", "1"),
    ] {
        assert_eq!(
            value(family, member).as_deref(),
            Some(want),
            "{family} {member}:\n{text}"
        );
    }
}

#[test]
fn a_bonds_announcements_are_counted_per_port() {
    let text = scrape();
    for want in [
        "vipd_bond_gratuitous_arp_sent_total{port=\"lan\"} 6",
        "vipd_bond_unsolicited_na_sent_total{port=\"lan\"} 3",
    ] {
        assert!(text.lines().any(|l| l == want), "no `{want}` in:\n{text}");
    }
}
