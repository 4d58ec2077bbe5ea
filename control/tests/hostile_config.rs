//! Hostile control input (issue 11, item 8): oversized and deeply nested files, absurd numbers,
//! duplicates, unknown keys, through `vipd --check` as an operator runs it, and API changes
//! through the changes module the API calls. Each must be refused with the key named, in a
//! message short enough to read, and leave the configuration it was applied to unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use serde_json::json;
use std::path::Path;
use std::process::Command;
use vipd_control::changes::{apply, Change};
use vipd_control::config::{Config, Proto, ServiceKey};

const BASE: &str = r#"
[dataplane]
worker_cores = [0]
control_core = 0
#DP

[flows]
#FLOWS

[flows.timeouts]
#TIMEOUTS

[[ports]]
name = "lan"
device = "net_null0"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"
#PORT

[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
#SERVICE

[[services.real_servers]]
ip = "10.77.0.21"
#RS
"#;

/// BASE with `line` put at the `#SLOT` marker.
fn with(slot: &str, line: &str) -> String {
    BASE.replace(&format!("#{slot}\n"), &format!("{line}\n"))
}

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vipd.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Refused (exit 1) with `want` in the message, which stays readable (a few lines, no echo of
/// a 100 KB value).
fn refused(text: &str, want: &str) {
    let (code, out) = check(text);
    assert_eq!(code, 1, "accepted, wanted a refusal naming `{want}`: {out}");
    assert!(out.contains(want), "wanted `{want}` in: {out}");
    assert!(
        out.len() < 2_000,
        "a {} byte message for `{want}`: {}",
        out.len(),
        &out[..300]
    );
}

#[test]
fn the_base_is_accepted() {
    let (code, out) = check(BASE);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn oversized_and_deeply_nested_files() {
    let deep = format!("x = {}{}\n{BASE}", "[".repeat(100_000), "]".repeat(100_000));
    refused(&deep, "recursion limit exceeded");
    let inline = format!(
        "x = {}1{}\n{BASE}",
        "{a=".repeat(50_000),
        "}".repeat(50_000)
    );
    refused(&inline, "recursion limit exceeded");
    // Past the 16 MiB vipd reads: refused before it is read.
    let big = format!("{BASE}\n#{}\n", "x".repeat(17 << 20));
    refused(&big, "bytes is larger than the 16777216 vipd reads");
    let long_path = with(
        "SERVICE",
        &format!(
            "health_check = {{ type = \"http\", path = \"/{}\" }}",
            "a".repeat(100_000)
        ),
    );
    refused(&long_path, "services[0].health_check.path");
    let long_scheduler = with(
        "SERVICE",
        &format!("scheduler = \"{}\"", "x".repeat(100_000)),
    );
    refused(&long_scheduler, "services[0].scheduler");
    refused(&format!("{BASE}\0"), "TOML parse error");
}

#[test]
fn absurd_numbers() {
    for (slot, line, want) in [
        (
            "FLOWS",
            "capacity_per_worker = 1099511627776",
            "flows.capacity_per_worker",
        ),
        ("FLOWS", "capacity_per_worker = -1", "expected usize"),
        (
            "FLOWS",
            "capacity_per_worker = 1000",
            "flows.capacity_per_worker: 1000 is out of range",
        ),
        (
            "FLOWS",
            "maglev_table_size = 4294967291",
            "flows.maglev_table_size",
        ),
        ("FLOWS", "maglev_table_size = 65536", "is not prime"),
        ("FLOWS", "fragment_slots = 0", "flows.fragment_slots"),
        (
            "TIMEOUTS",
            "tcp_fin = 0",
            "flows.timeouts.tcp_fin: 0 is out of range",
        ),
        (
            "TIMEOUTS",
            "tcp_established = 604801",
            "flows.timeouts.tcp_established: 604801",
        ),
        ("TIMEOUTS", "udp = 99999999999", "expected u32"),
        ("TIMEOUTS", "udp = 1.5", "expected u32"),
        ("DP", "mbufs = 1", "dataplane.mbufs: 1 is out of range"),
        ("DP", "mbufs = 4294967295", "dataplane.mbufs"),
        ("DP", "max_real_servers = 0", "dataplane.max_real_servers"),
        ("DP", "max_real_servers = 1099511627776", "expected u32"),
        ("DP", "rx_descriptors = 0", "dataplane.rx_descriptors"),
        ("DP", "tx_descriptors = 1000000", "expected u16"),
        (
            "DP",
            "tx_descriptors = 20000",
            "dataplane.tx_descriptors: 20000 is out of range",
        ),
        (
            "DP",
            "idle_sleep_us = 4294967295",
            "dataplane.idle_sleep_us",
        ),
        ("PORT", "mtu = 0", "ports[0].mtu: 0 is out of range"),
        ("PORT", "mtu = 9000", "ports[0].mtu: 9000 is out of range"),
        ("RS", "weight = 4294967296", "expected u32"),
        ("RS", "weight = 65536", "services[0].real_servers[0].weight"),
        ("RS", "weight = -1", "expected u32"),
        ("RS", "port = 70000", "expected u16"),
        (
            "SERVICE",
            "health_check = { interval = nan }",
            "health_check.interval: NaN is out of range",
        ),
        (
            "SERVICE",
            "health_check = { interval = inf }",
            "health_check.interval: inf is out of range",
        ),
        (
            "SERVICE",
            "health_check = { interval = 1e300 }",
            "health_check.interval: 1e300 is out of range",
        ),
        (
            "SERVICE",
            "health_check = { interval = -1.0 }",
            "health_check.interval: -1 is out of range",
        ),
        (
            "SERVICE",
            "health_check = { timeout = inf }",
            "health_check.timeout: inf s is out of range",
        ),
        (
            "SERVICE",
            "health_check = { rise = 4000000000 }",
            "health_check.rise: 4000000000",
        ),
        (
            "SERVICE",
            "health_check = { fall = 0 }",
            "health_check.fall: 0",
        ),
        (
            "SERVICE",
            "health_check = { type = \"http\", status = 999 }",
            "health_check.status: 999",
        ),
        (
            "SERVICE",
            "health_check = { port = 0 }",
            "health_check.port",
        ),
    ] {
        refused(&with(slot, line), want);
    }
    let (code, out) = check(&BASE.replace("worker_cores = [0]", "worker_cores = [9999]"));
    assert_eq!(code, 1);
    assert!(
        out.contains("dataplane.worker_cores[0]: core 9999 does not exist"),
        "{out}"
    );
    let (code, out) = check(&BASE.replace("port = 80", "port = 0"));
    assert_eq!(code, 1);
    assert!(out.contains("services[0].port"), "{out}");
}

#[test]
fn duplicates_and_addresses_used_twice() {
    let service = "\n[[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 80\n";
    refused(
        &format!("{BASE}{service}"),
        "services[1].port: service tcp 10.77.100.1:80 is defined twice",
    );
    // The same VIP and port in another protocol is another service.
    let (code, out) = check(&format!("{BASE}{}", service.replace("tcp", "udp")));
    assert_eq!(code, 0, "{out}");
    let rs = "\n[[services.real_servers]]\nip = \"10.77.0.21\"\n";
    refused(
        &format!("{BASE}{rs}"),
        "services[0].real_servers[1].ip: 10.77.0.21:80 is listed twice",
    );
    refused(
        &format!("{BASE}\n[[services]]\nvip = \"10.77.0.10\"\nproto = \"tcp\"\nport = 81\n"),
        "services[1].vip: 10.77.0.10 is a port address",
    );
    refused(
        &format!("{BASE}\n[[services]]\nvip = \"10.77.0.21\"\nproto = \"tcp\"\nport = 81\n"),
        "10.77.0.21 is a VIP of vipd's",
    );
    refused(
        &format!("{BASE}\n[[services.real_servers]]\nip = \"10.77.100.1\"\n"),
        "services[0].real_servers[1].ip: 10.77.100.1 is a VIP of vipd's",
    );
    let port = "\n[[ports]]\nname = \"lan\"\ndevice = \"net_null1\"\nipv4 = \"10.78.0.10/24\"\n";
    let ports_first = BASE.replace("[[services]]", &format!("{port}\n[[services]]"));
    refused(&ports_first, "ports[1].name: `lan` is empty or used twice");
    // A key given twice in one table is TOML's error.
    refused(&with("RS", "port = 80\nport = 81"), "duplicate key `port`");
}

#[test]
fn unknown_keys_are_named() {
    refused(&format!("colour = 1\n{BASE}"), "unknown field `colour`");
    for slot in ["DP", "FLOWS", "TIMEOUTS", "PORT", "SERVICE", "RS"] {
        refused(&with(slot, "colour = 1"), "unknown field `colour`");
    }
    refused(
        &with("SERVICE", "health_check = { colour = 1 }"),
        "unknown field `colour`",
    );
    refused(
        &format!("{BASE}\n[bgp]\ncolour = 1\n"),
        "unknown field `colour`",
    );
    refused(&format!("{BASE}\n[colour]\n"), "unknown field `colour`");
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are never the box's, a real server's or a
/// neighbour's: the dataplane keeps IPv4 addresses in that form, so each would stand for the
/// IPv4 address (a port address answering ARP, a neighbour entry for the IPv4 host).
#[test]
fn ipv4_mapped_addresses_are_refused_everywhere() {
    refused(
        &with("PORT", "ipv6 = \"::ffff:10.77.0.10/120\""),
        "ports[0].ipv6: ::ffff:10.77.0.10 is IPv4-mapped",
    );
    refused(
        &with(
            "PORT",
            "ipv6 = \"::10/64\"\ngateway6 = \"::ffff:10.77.0.1\"",
        ),
        "ports[0].gateway6: ::ffff:10.77.0.1 is IPv4-mapped",
    );
    refused(
        &with(
            "PORT",
            "ipv6 = \"fd00::10/64\"\ntunnel_source6 = \"::ffff:0:0/104\"",
        ),
        "ports[0].tunnel_source6: ::ffff:0.0.0.0/104 overlaps ::ffff:0:0/96",
    );
    refused(
        &with("PORT", "ipv6 = \"fd00::10/64\"\ntunnel_source6 = \"::/32\""),
        "ports[0].tunnel_source6: ::/32 overlaps ::ffff:0:0/96",
    );
    refused(
        &format!(
            "{BASE}\n[[neighbours]]\nip = \"::ffff:10.77.0.21\"\nmac = \"02:00:00:00:00:21\"\n"
        ),
        "neighbours[0].ip: ::ffff:10.77.0.21 is IPv4-mapped",
    );
    refused(
        &BASE.replace("vip = \"10.77.100.1\"", "vip = \"::ffff:10.77.100.1\""),
        "services[0].vip: ::ffff:10.77.100.1 is IPv4-mapped",
    );
    refused(
        &BASE.replace("ip = \"10.77.0.21\"", "ip = \"::ffff:10.77.0.21\""),
        "IPv4-mapped",
    );
    // The same keys with addresses that are not mapped are accepted.
    let (code, out) = check(&with(
        "PORT",
        "ipv6 = \"fd00::10/64\"\ngateway6 = \"fd00::1\"\ntunnel_source6 = \"fd00:1::/64\"",
    ));
    assert_eq!(code, 0, "{out}");
}

/// `hash`: 5-tuple or 3-tuple, the latter only for maglev (rr/wrr pin connections to what
/// they picked, so a 3-tuple hash would route a later fragment elsewhere); a 3-tuple service
/// sharing its VIP and protocol is accepted with a warning (its fragments without their first
/// cannot be told apart from the other service's).
#[test]
fn hash_fields() {
    refused(
        &with("SERVICE", "hash = \"4-tuple\""),
        "services[0].hash: unknown hash `4-tuple` (expected 5-tuple or 3-tuple)",
    );
    refused(
        &with("SERVICE", "scheduler = \"rr\"\nhash = \"3-tuple\""),
        "services[0].hash: 3-tuple needs scheduler = \"maglev\"",
    );
    let (code, out) = check(&with("SERVICE", "hash = \"3-tuple\""));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("services[0].hash"), "{out}");
    let second = "\n[[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 81\n[[services.real_servers]]\nip = \"10.77.0.22\"\n";
    let (code, out) = check(&format!(
        "{}{second}",
        with("SERVICE", "hash = \"3-tuple\"")
    ));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("services[0].hash: 3-tuple places a later fragment"),
        "{out}"
    );
}

fn web() -> ServiceKey {
    ServiceKey {
        vip: "10.77.100.1".parse().unwrap(),
        proto: Proto::Tcp,
        port: 80,
    }
}

/// The API's changes: each refused with its status and field, the running configuration the
/// same afterwards (apply works on a copy; this checks the copy did not leak into the result).
#[test]
fn api_changes_with_hostile_values_are_refused_whole() {
    let (config, _) = Config::parse(BASE, Path::new("vipd.toml")).unwrap();
    let rs = "10.77.0.21".parse().unwrap();
    let deep = serde_json::from_str::<serde_json::Value>(&format!(
        "{}{}",
        "[".repeat(100),
        "]".repeat(100)
    ))
    .unwrap();
    let cases: Vec<(Change, u16, &str)> = vec![
        (
            Change::AddService(json!({"vip": "10.77.100.1", "proto": "tcp", "port": 80})),
            409,
            "port",
        ),
        (
            Change::AddService(
                json!({"vip": "10.77.100.2", "proto": "tcp", "port": 80, "colour": 1}),
            ),
            400,
            "colour",
        ),
        (
            Change::AddService(
                json!({"vip": "10.77.100.2", "proto": "tcp", "port": 80, "real_servers": deep}),
            ),
            400,
            "real_servers[0][0]",
        ),
        (
            Change::AddService(json!({"vip": "10.77.100.2", "proto": "tcp", "port": 80,
            "real_servers": [{"ip": "10.77.0.22"}, {"ip": "10.77.0.22"}]})),
            422,
            "real_servers[1].ip",
        ),
        (
            Change::AddService(
                json!({"vip": "10.77.100.2", "proto": "tcp", "port": 80, "scheduler": "x".repeat(60_000)}),
            ),
            422,
            "scheduler",
        ),
        (
            Change::AddService(json!({"vip": "10.77.100.2", "proto": "tcp", "port": 70000})),
            400,
            "port",
        ),
        (
            Change::AddRealServer(web(), json!({"ip": "10.77.0.22", "weight": 1e30})),
            400,
            "weight",
        ),
        (
            Change::AddRealServer(web(), json!({"ip": "10.77.0.22", "weight": 65536})),
            422,
            "weight",
        ),
        (
            Change::AddRealServer(web(), json!({"ip": "10.77.0.22", "port": -1})),
            400,
            "port",
        ),
        (
            Change::EditRealServer(web(), rs, 80, json!({"weight": 4294967296u64})),
            400,
            "weight",
        ),
        (
            Change::EditService(web(), json!({"health_check": {"interval": 1e308}})),
            422,
            "health_check.interval",
        ),
        (
            Change::EditService(web(), json!({"health_check": {"timeout": -1}})),
            422,
            "health_check.timeout",
        ),
        (
            Change::EditService(
                web(),
                json!({"health_check": {"type": "http", "path": format!("/{}", "a".repeat(60_000))}}),
            ),
            422,
            "health_check.path",
        ),
        (
            Change::SetTimeouts(json!({"udp": 4294967296u64})),
            400,
            "udp",
        ),
        (Change::SetTimeouts(json!({"udp": 604801})), 422, "udp"),
        (Change::SetTimeouts(json!({"udp": 0})), 422, "udp"),
        (Change::SetTimeouts(json!({"udp": "3"})), 400, "udp"),
    ];
    for (change, status, field) in cases {
        let before = config.clone();
        let r = apply(&config, &change).expect_err(&format!("{change} accepted"));
        assert_eq!(
            (r.status, r.field.as_str()),
            (status, field),
            "{change}: {r:?}"
        );
        assert!(
            r.message.len() < 600,
            "{change}: a {} byte message",
            r.message.len()
        );
        assert!(config == before, "{change}: the configuration changed");
    }
}
