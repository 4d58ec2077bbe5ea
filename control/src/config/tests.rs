//! The validator's refusals, each naming the file, the key and the problem.

use super::*;
use crate::config::reload;
use vipd_dataplane::flow::key::to_mapped;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::FwdMode;

const GOOD: &str = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_af_packet0,iface=eth1"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"

[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80

[[services.real_servers]]
ip = "10.77.0.21"
port = 8080
weight = 2

[[services.real_servers]]
ip = "192.0.2.7"
"#;

fn rs(r: &ValidRealServer) -> (std::net::IpAddr, u16, u32, FwdMode) {
    (r.ip, r.port, r.weight, r.mode)
}

fn err(text: &str) -> String {
    Config::parse(text, Path::new("vipd.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn good_config_and_defaults() {
    let (c, v) = Config::parse(GOOD, Path::new("vipd.toml")).unwrap();
    assert_eq!(c.flows.maglev_table_size, 65537);
    assert_eq!(c.flows.timeouts.tcp_established, 900);
    assert_eq!(c.api.listen.port(), 9180);
    let s = &v.services;
    assert_eq!(s[0].scheduler, SchedulerKind::Maglev);
    assert_eq!(
        rs(&s[0].real_servers[0]),
        ("10.77.0.21".parse().unwrap(), 8080, 2, FwdMode::Nat)
    );
    assert_eq!(
        s[0].real_servers[1].port, 80,
        "port defaults to the service port"
    );
    assert!(s[0].drop_dead_flows && s[0].real_servers[0].check.is_none());
}

#[test]
fn errors_name_file_key_and_problem() {
    let e = err(&GOOD.replace("weight = 2", "wieght = 2"));
    assert!(e.starts_with("vipd.toml: ") && e.contains("wieght"), "{e}");
    let e = err(&GOOD.replace("port = 8080", "port = 70000"));
    assert!(e.contains("vipd.toml") && e.contains("port"), "{e}");
    let e = err(&GOOD.replace("gateway = \"10.77.0.1\"", "gateway = \"10.9.0.1\""));
    assert_eq!(
        e,
        "vipd.toml: ports[0].gateway: 10.9.0.1 is not another address inside 10.77.0.10/24"
    );
    let e = err(&GOOD.replace("worker_cores = [1]", "worker_cores = [1, 1]"));
    assert_eq!(
        e,
        "vipd.toml: dataplane.worker_cores[1]: core 1 is listed twice"
    );
    let e = err(&GOOD.replace("worker_cores = [1]", "worker_cores = [4096]"));
    assert!(
        e.contains("dataplane.worker_cores[0]: core 4096 does not exist"),
        "{e}"
    );
    let e = err(&GOOD
        .replace("scheduler", "x")
        .replace("port = 80\n", "port = 80\nscheduler = \"lblc\"\n"));
    assert!(e.contains("services[0].scheduler"), "{e}");
    let e = err(&GOOD.replace("vip = \"10.77.100.1\"", "vip = \"10.77.0.10\""));
    assert!(
        e.contains("services[0].vip: 10.77.0.10 is a port address"),
        "{e}"
    );
    let e = err(&GOOD.replace("ip = \"10.77.0.21\"", "ip = \"fd00::21\""));
    assert!(
        e.contains("services[0].real_servers[0].ip") && e.contains("mixes IPv4 and IPv6"),
        "{e}"
    );
    let e = err(&GOOD.replace("gateway = \"10.77.0.1\"\n", ""));
    assert!(
        e.contains("services[0].real_servers[1].ip: 192.0.2.7 is neither on-link"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}\n[[neighbours]]\nip = \"10.77.0.1\"\nmac = \"02:00:00:00:00\"\n"
    ));
    assert!(e.contains("neighbours[0].mac"), "{e}");
    let e = err("[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n");
    assert!(
        e.contains("ports[0].ipv4: a port needs an ipv4 or ipv6 address"),
        "{e}"
    );
    assert!(err("").contains("ports: at least one"));
}

#[test]
fn dr_needs_on_link_real_servers_and_the_vip_port() {
    let dr = GOOD.replace("port = 80\n", "port = 80\nmode = \"dr\"\n");
    let e = err(&dr);
    assert!(
        e.contains("services[0].real_servers[0].port: dr mode cannot change the port"),
        "{e}"
    );
    let e = err(&dr.replace("port = 8080\n", ""));
    assert!(
        e.contains("services[0].real_servers[1].ip: 192.0.2.7 is not on-link"),
        "{e}"
    );
    let ok = dr
        .replace("port = 8080\n", "")
        .replace("ip = \"192.0.2.7\"", "ip = \"10.77.0.22\"");
    Config::parse(&ok, Path::new("vipd.toml")).unwrap();
    let two_ports = ok.replace(
        "[[services]]",
        "[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\nipv4 = \"10.88.0.10/24\"\n\n[[services]]\ninterface = \"wan\"",
    );
    let e = err(&two_ports);
    assert!(e.contains("services[0].real_servers[0].ip: 10.77.0.21 is on port `lan` but the VIP is on port `wan`"), "{e}");
    let e = err(&two_ports.replace("interface = \"wan\"", "interface = \"dmz\""));
    assert!(
        e.contains("services[0].interface: no [[ports]] entry is named `dmz`"),
        "{e}"
    );
}

#[test]
fn tunnel_real_servers_of_either_family() {
    let tun = GOOD
        .replace("port = 80\n", "port = 80\nmode = \"tunnel\"\n")
        .replace("port = 8080\n", "")
        .replace(
            "gateway = \"10.77.0.1\"\n",
            "gateway = \"10.77.0.1\"\nipv6 = \"fd00:77::10/64\"\ngateway6 = \"fd00:77::1\"\n",
        )
        .replace("ip = \"192.0.2.7\"", "ip = \"2001:db8::7\"");
    let (_, v) = Config::parse(&tun, Path::new("vipd.toml")).unwrap();
    assert_eq!(
        rs(&v.services[0].real_servers[1]),
        ("2001:db8::7".parse().unwrap(), 80, 1, FwdMode::Tunnel),
        "4in6 through the IPv6 gateway"
    );
    let e = err(&tun.replace("ip = \"10.77.0.21\"", "ip = \"10.77.0.21\"\nport = 81"));
    assert!(
        e.contains("services[0].real_servers[0].port: tunnel mode cannot change the port"),
        "{e}"
    );
    let e = err(&tun.replace("gateway6 = \"fd00:77::1\"\n", ""));
    assert!(
        e.contains("services[0].real_servers[1].ip: 2001:db8::7 is neither on-link"),
        "{e}"
    );
    // 6in6 on a port with MTU 1300: 1260 bytes left, below IPv6's 1280.
    let six = tun
        .replace("vip = \"10.77.100.1\"", "vip = \"fd00:77:100::1\"")
        .replace("ip = \"10.77.0.21\"", "ip = \"fd00:77::21\"")
        .replace(
            "gateway6 = \"fd00:77::1\"\n",
            "gateway6 = \"fd00:77::1\"\nmtu = 1300\n",
        );
    let e = err(&six);
    assert!(
        e.contains("services[0].real_servers[0].ip: the tunnel to fd00:77::21 through port `lan` (mtu 1300) leaves 1260 bytes for IPv6 packets, below IPv6's minimum MTU 1280"),
        "{e}"
    );
    Config::parse(
        &six.replace("mtu = 1300", "mtu = 1320"),
        Path::new("vipd.toml"),
    )
    .unwrap();
}

#[test]
fn duplicate_service() {
    let twice =
        format!("{GOOD}\n[[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 80\n");
    assert!(err(&twice).contains("services[1].port: service tcp 10.77.100.1:80 is defined twice"));
}

#[test]
fn refuses_what_start_up_would_refuse_later() {
    let e = err(&GOOD.replace(
        "[[ports]]",
        "[flows]\nmaglev_table_size = 65536\n\n[[ports]]",
    ));
    assert!(
        e.contains("flows.maglev_table_size: 65536 is not prime"),
        "{e}"
    );
    for (vip, why) in [
        ("224.0.0.5", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
    ] {
        let e = err(&GOOD.replace("vip = \"10.77.100.1\"", &format!("vip = \"{vip}\"")));
        assert!(
            e.contains(&format!("services[0].vip: {vip} is {why}")),
            "{e}"
        );
    }
    let e = err(&GOOD.replace("ip = \"192.0.2.7\"", "ip = \"10.77.100.1\""));
    assert!(
        e.contains("services[0].real_servers[1].ip: 10.77.100.1 is a VIP"),
        "{e}"
    );
    let e = err(&GOOD.replace("ip = \"192.0.2.7\"", "ip = \"10.77.0.10\""));
    assert!(
        e.contains("services[0].real_servers[1].ip: 10.77.0.10 is one of vipd's port addresses"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "gateway = \"10.77.0.1\"",
        "gateway = \"10.77.0.1\"\ntunnel_source4 = \"0.0.0.0/0\"",
    ));
    assert!(
        e.contains("ports[0].tunnel_source4: 0.0.0.0/0 is not a unicast prefix"),
        "{e}"
    );
    let e = err(&GOOD.replace(
        "gateway = \"10.77.0.1\"",
        "gateway = \"10.77.0.1\"\nmtu = 9000",
    ));
    assert!(
        e.contains("ports[0].mtu: 9000 is out of range 576..=2030"),
        "{e}"
    );
    let e = err(&GOOD.replace("weight = 2", "weight = 100000"));
    assert!(
        e.contains("services[0].real_servers[0].weight: 100000 is out of range"),
        "{e}"
    );
    let e = err(&GOOD
        .replace(
            "[[ports]]",
            "[dataplane]\nidle_sleep_us = 5000000\n\n[[ports]]",
        )
        .replace("[dataplane]\nworker_cores = [1]\ncontrol_core = 0\n", ""));
    assert!(e.contains("dataplane.idle_sleep_us"), "{e}");
}

#[test]
fn health_check_keys_are_checked_at_the_level_they_come_from() {
    let hc = GOOD.replace(
        "port = 80\n",
        "port = 80\nhealth_check = { type = \"http\", path = \"/health\", interval = 1, rise = 2, fall = 2 }\n",
    );
    let (_, v) = Config::parse(&hc, Path::new("vipd.toml")).unwrap();
    let c = v.services[0].real_servers[0].check.clone().unwrap();
    assert_eq!(c.target, "10.77.0.21:8080".parse().unwrap());
    assert_eq!((c.rise, c.fall, c.interval.as_millis()), (2, 2, 1000));
    assert!(matches!(c.kind, CheckKind::Http { ref path, status: 200, .. } if path == "/health"));
    let e = err(&hc.replace("interval = 1,", "interval = 1, timeout = 3,"));
    assert!(
        e.contains("services[0].health_check.timeout: 3 s is out of range"),
        "{e}"
    );
    let e = err(&hc.replace("path = \"/health\"", "path = \"health\""));
    assert!(e.contains("services[0].health_check.path"), "{e}");
    // A real server's override: its own port, and errors named at its level.
    let over = hc.replace(
        "weight = 2\n",
        "weight = 2\nhealth_check = { port = 9000, status = 204 }\n",
    );
    let (_, v) = Config::parse(&over, Path::new("vipd.toml")).unwrap();
    let c = v.services[0].real_servers[0].check.clone().unwrap();
    assert_eq!(c.target.port(), 9000);
    assert!(matches!(c.kind, CheckKind::Http { status: 204, .. }));
    let e = err(&over.replace("status = 204", "status = 99"));
    assert!(
        e.contains("services[0].real_servers[0].health_check.status: 99 is not an HTTP status"),
        "{e}"
    );
    let e = err(&hc.replace("type = \"http\"", "type = \"udp\""));
    assert!(
        e.contains("services[0].health_check.type: unknown check type `udp`"),
        "{e}"
    );
    let none = over.replace(
        "health_check = { port = 9000, status = 204 }",
        "health_check = { type = \"none\" }",
    );
    let (_, v) = Config::parse(&none, Path::new("vipd.toml")).unwrap();
    assert!(
        v.services[0].real_servers[0].check.is_none()
            && v.services[0].real_servers[1].check.is_some()
    );
    assert!(
        v.warnings[0].contains("kernel_interface"),
        "{:?}",
        v.warnings
    );
}

#[test]
fn sorry_server_and_dead_flows() {
    let s = GOOD.replace(
        "port = 80\n",
        "port = 80\nsorry_server = \"10.77.0.99:8080\"\ndead_flows = \"keep\"\n",
    );
    let (_, v) = Config::parse(&s, Path::new("vipd.toml")).unwrap();
    let last = v.services[0].real_servers.last().unwrap();
    assert!(last.sorry && last.port == 8080 && !v.services[0].drop_dead_flows);
    let e = err(&s.replace("10.77.0.99:8080", "10.77.0.21:8080"));
    assert!(
        e.contains("services[0].sorry_server: 10.77.0.21:8080 is listed twice"),
        "{e}"
    );
    let e = err(&s.replace("dead_flows = \"keep\"", "dead_flows = \"maybe\""));
    assert!(
        e.contains("services[0].dead_flows: unknown value `maybe`"),
        "{e}"
    );
}

#[test]
fn reload_names_every_key_that_needs_a_restart() {
    let (old, _) = Config::parse(GOOD, Path::new("vipd.toml")).unwrap();
    let mut new = old.clone();
    new.dataplane.idle_sleep_us = 10;
    new.ports[0].mtu = 1400;
    new.api.listen = "127.0.0.1:9999".parse().unwrap();
    new.flows.timeouts.tcp_fin = 5;
    new.services[0].real_servers[0].weight = 7;
    let changes = reload::restart_only_changes(&old, &new);
    assert_eq!(
        changes,
        vec![
            "dataplane.idle_sleep_us (50 -> 10)",
            "api.listen (127.0.0.1:9180 -> 127.0.0.1:9999)",
            "ports[0].mtu (1500 -> 1400)",
        ]
    );
    new = old.clone();
    new.flows.timeouts.tcp_fin = 5;
    new.services.clear();
    assert!(reload::restart_only_changes(&old, &new).is_empty());
}

#[test]
fn saved_configuration_reads_back_the_same() {
    let text = GOOD.replace(
        "port = 80\n",
        "port = 80\nsorry_server = \"10.77.0.99\"\nhealth_check = { type = \"http\", host = \"web\" }\n",
    );
    let (c, _) = Config::parse(&text, Path::new("vipd.toml")).unwrap();
    let saved = c.to_toml().unwrap();
    let (back, _) = Config::parse(&saved, Path::new("saved.toml")).unwrap();
    assert_eq!(back, c);
}

#[test]
fn kernel_interface_names_and_tap_devices() {
    let with = |extra: &str| {
        GOOD.replace(
            "gateway = \"10.77.0.1\"\n",
            &format!("gateway = \"10.77.0.1\"\n{extra}\n"),
        )
    };
    let (_, v) = Config::parse(
        &with("kernel_interface = \"vipd0\""),
        Path::new("vipd.toml"),
    )
    .unwrap();
    assert!(
        v.ports[0].kernel,
        "the snapshot's port must know it has a kernel interface"
    );
    let e = err(&with("kernel_interface = \"vipd0,mac=x\""));
    assert!(
        e.contains("ports[0].kernel_interface") && e.contains("not an interface name"),
        "{e}"
    );
    let e = err(&GOOD.replace("net_af_packet0,iface=eth1", "net_tap_kernel0,iface=x"));
    assert!(
        e.contains("ports[0].device") && e.contains("kernel interfaces"),
        "{e}"
    );
}

#[test]
fn flow_options_and_memif_warning() {
    let with = |extra: &str| GOOD.replace("[[ports]]", &format!("[flows]\n{extra}\n\n[[ports]]"));
    let (c, _) = Config::parse(
        &with("sloppy_tcp = true\nfragment_slots = 128"),
        Path::new("vipd.toml"),
    )
    .unwrap();
    assert!(c.flows.sloppy_tcp && c.flows.fragment_slots == 128);
    let e = err(&with("fragment_slots = 1"));
    assert!(
        e.contains("flows.fragment_slots: 1 is out of range 64..=1048576"),
        "{e}"
    );
    let mut other = c.clone();
    other.flows.sloppy_tcp = false;
    assert!(
        reload::restart_only_changes(&c, &other).is_empty(),
        "sloppy_tcp reloads"
    );
    other.flows.fragment_slots = 256;
    assert_eq!(
        reload::restart_only_changes(&c, &other),
        vec!["flows.fragment_slots (128 -> 256)"]
    );
    let memif = GOOD.replace("net_af_packet0,iface=eth1", "net_memif0,role=server");
    let (_, v) = Config::parse(&memif, Path::new("vipd.toml")).unwrap();
    assert!(
        v.warnings.iter().any(|w| w.contains("net_memif can crash")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn schedulers_persistence_and_thresholds() {
    let svc = |extra: &str| GOOD.replace("port = 80\n", &format!("port = 80\n{extra}\n"));
    let rs1 = |extra: &str| GOOD.replace("weight = 2", &format!("weight = 2\n{extra}"));
    let (_, v) = Config::parse(
        &svc("scheduler = \"wlc\"\npersistence_timeout = 300\npersistence_netmask = \"255.255.255.0\""),
        Path::new("vipd.toml"),
    )
    .unwrap();
    assert_eq!(v.services[0].scheduler, SchedulerKind::Wlc);
    let p = v.services[0].persistence.unwrap();
    assert_eq!((p.timeout_s, p.prefix_len), (300, 24));
    let (_, v) = Config::parse(&svc("persistence_timeout = 60"), Path::new("vipd.toml")).unwrap();
    assert_eq!(
        v.services[0].persistence.unwrap().prefix_len,
        32,
        "per client"
    );
    let (_, v) = Config::parse(
        &svc("scheduler = \"sh\"\nscheduler_flags = [\"sh-fallback\", \"sh-port\"]"),
        Path::new("vipd.toml"),
    )
    .unwrap();
    let f = v.services[0].sched_flags;
    assert!(f.sh_fallback && f.sh_port);
    let (_, v) = Config::parse(
        &rs1("upper_threshold = 100\nlower_threshold = 40"),
        Path::new("vipd.toml"),
    )
    .unwrap();
    let l = v.services[0].real_servers[0].limit;
    assert_eq!((l.upper, l.lower), (100, 40));

    let e = err(&svc("scheduler = \"lblc\""));
    assert!(
        e.contains("services[0].scheduler") && e.contains("wlc"),
        "{e}"
    );
    let e = err(&svc("scheduler_flags = [\"sh-port\"]"));
    assert_eq!(
        e,
        "vipd.toml: services[0].scheduler_flags: sh-port are flags of scheduler \"sh\", not of \"maglev\": remove them (vipctl -E … -b none)"
    );
    let e = err(&svc("scheduler = \"sh\"\nscheduler_flags = [\"mh-port\"]"));
    assert!(
        e.contains("scheduler_flags[0]") && e.contains("always on"),
        "{e}"
    );
    let e = err(&svc("scheduler = \"sh\"\nscheduler_flags = [\"sticky\"]"));
    assert!(e.contains("unknown scheduler flag `sticky`"), "{e}");
    let e = err(&svc("persistence_timeout = 0"));
    assert!(
        e.contains("services[0].persistence_timeout: 0 is out of range"),
        "{e}"
    );
    let e = err(&svc("persistence_netmask = \"255.255.255.0\""));
    assert!(e.contains("without persistence_timeout"), "{e}");
    let e = err(&svc(
        "persistence_timeout = 30\npersistence_netmask = \"255.0.255.0\"",
    ));
    assert!(
        e.contains("persistence_netmask") && e.contains("contiguous"),
        "{e}"
    );
    let e = err(&rs1("lower_threshold = 5"));
    assert_eq!(
        e,
        "vipd.toml: services[0].real_servers[0].lower_threshold: a lower threshold without an upper one: set upper_threshold (ipvsadm -x) too"
    );
    let e = err(&rs1("upper_threshold = 10\nlower_threshold = 10"));
    assert!(e.contains("must be below upper_threshold (10)"), "{e}");
    let e = err(&GOOD.replace(
        "[dataplane]",
        "[flows]\npersistence_per_worker = 10\n[dataplane]",
    ));
    assert!(e.contains("flows.persistence_per_worker"), "{e}");
}

#[test]
fn api_and_health_keys() {
    let (c, _) = Config::parse(GOOD, Path::new("vipd.toml")).unwrap();
    assert_eq!(
        (
            c.api.max_connections,
            c.api.header_timeout,
            c.api.idle_timeout
        ),
        (1024, 10.0, 30.0)
    );
    assert_eq!(c.health.max_down_percent, 50);
    let with = |section: &str| format!("{section}\n{GOOD}");
    for (text, want) in [
        (
            "[api]\nmax_connections = 0",
            "vipd.toml: api.max_connections: 0 is out of range 1..=1048576",
        ),
        (
            "[api]\nheader_timeout = 0.01",
            "vipd.toml: api.header_timeout: 0.01 is out of range 0.1..=3600 seconds",
        ),
        (
            "[api]\nidle_timeout = 1e300",
            "vipd.toml: api.idle_timeout: 1e300 is out of range 0.1..=86400 seconds",
        ),
        (
            "[api]\ntls_certificate = \"/etc/vipd/tls.crt\"",
            "vipd.toml: api.tls_key: tls_certificate is set: its private key (PEM) is needed too",
        ),
        (
            "[api]\ntls_key = \"/etc/vipd/tls.key\"",
            "vipd.toml: api.tls_certificate: tls_key is set: the certificate (PEM chain) is needed too",
        ),
        (
            "[api]\ntoken_file = \"/etc/vipd/t\"\nread_token_file = \"/etc/vipd/t\"",
            "vipd.toml: api.read_token_file: /etc/vipd/t is also api.token_file: the read-only token must be another one",
        ),
        (
            "[api]\nsocket = \"run/vipd.sock\"",
            "vipd.toml: api.socket: run/vipd.sock is not an absolute path",
        ),
        (
            "[health]\nmax_down_percent = 0",
            "vipd.toml: health.max_down_percent: 0 is out of range 1..=100 (100 turns the guard off)",
        ),
        (
            "[health]\nmax_down_percent = 101",
            "vipd.toml: health.max_down_percent: 101 is out of range 1..=100 (100 turns the guard off)",
        ),
    ] {
        assert_eq!(err(&with(text)), want);
    }
    let long = format!("[api]\nsocket = \"/{}\"", "s".repeat(107));
    assert!(
        err(&with(&long)).contains("api.socket: /sss"),
        "{}",
        err(&with(&long))
    );
    let (old, _) = Config::parse(GOOD, Path::new("vipd.toml")).unwrap();
    let mut new = old.clone();
    new.api.max_connections = 10;
    new.api.socket = Some("/run/vipd/api.sock".into());
    new.health.max_down_percent = 100;
    assert_eq!(
        reload::restart_only_changes(&old, &new),
        vec![
            "api.socket (None -> Some(\"/run/vipd/api.sock\"))",
            "api.max_connections (1024 -> 10)",
        ],
        "the guard's percentage changes on reload"
    );
}

#[test]
fn vlans_are_interfaces_after_the_ports() {
    let with = |vlans: &str| {
        GOOD.replace(
            "gateway = \"10.77.0.1\"\n",
            &format!("gateway = \"10.77.0.1\"\nmtu = 1400\n{vlans}\n"),
        )
    };
    let two = r#"
[[ports.vlans]]
id = 100
ipv4 = "10.100.0.10/24"
gateway = "10.100.0.1"

[[ports.vlans]]
id = 200
ipv6 = "fd00:200::10/64"
"#;
    let (c, v) = Config::parse(&with(two), Path::new("vipd.toml")).unwrap();
    assert_eq!(v.ports.len(), 3, "one port, two VLAN interfaces");
    assert_eq!(v.ports[0].vlan, None);
    let vlan = |i: usize| v.ports[i].vlan.map(|x| (x.parent, x.id));
    assert_eq!((vlan(1), vlan(2)), (Some((0, 100)), Some((0, 200))));
    assert_eq!(v.ports[1].mtu, 1400, "a VLAN has its port's MTU");
    assert!(
        !v.ports[1].kernel,
        "no kernel interface unless the VLAN names one"
    );
    let to_vlan = vipd_dataplane::snapshot::route(&v.ports, &"10.100.0.7".parse().unwrap());
    assert_eq!(to_vlan.map(|r| r.port), Some(1));
    // Saved and read back (the API's saved configuration) the VLANs stay.
    let saved = toml::to_string(&c).unwrap();
    let (again, _) = Config::parse(&saved, Path::new("vipd.toml")).unwrap();
    assert_eq!(again.ports[0].vlans, c.ports[0].vlans);

    let refusal = |vlans: &str| err(&with(vlans));
    for (bad, key, words) in [
        ("[[ports.vlans]]\nid = 0\nipv4 = \"10.100.0.10/24\"", "ports[0].vlans[0].id", "not a VLAN id"),
        ("[[ports.vlans]]\nid = 4095\nipv4 = \"10.100.0.10/24\"", "ports[0].vlans[0].id", "4095 is reserved"),
        ("[[ports.vlans]]\nid = 7", "ports[0].vlans[0].ipv4", "a VLAN needs an ipv4 or ipv6 address"),
        (
            "[[ports.vlans]]\nid = 7\nipv4 = \"10.100.0.10/24\"\ngateway = \"10.9.0.1\"",
            "ports[0].vlans[0].gateway",
            "not another address inside 10.100.0.10/24",
        ),
        (
            "[[ports.vlans]]\nid = 7\nipv4 = \"10.100.0.10/24\"\n[[ports.vlans]]\nid = 7\nipv4 = \"10.101.0.10/24\"",
            "ports[0].vlans[1].id",
            "listed twice",
        ),
        (
            "[[ports.vlans]]\nid = 7\nipv4 = \"10.77.0.99/24\"",
            "ports[0].vlans[0].ipv4",
            "overlaps the subnet of another port or VLAN",
        ),
        (
            "[[ports.vlans]]\nid = 7\nipv4 = \"10.100.0.10/24\"\n[[ports.vlans.vlans]]\nid = 8",
            "ports[0].vlans[0].vlans",
            "QinQ (802.1ad, a VLAN inside a VLAN) is not supported",
        ),
    ] {
        let e = refusal(bad);
        assert!(e.contains(key) && e.contains(words), "{bad}: {e}");
    }
}

#[test]
fn full_nat_needs_a_pool_of_its_own_of_the_vips_family() {
    let fnat = GOOD.replace(
        "port = 80\n",
        "port = 80\nmode = \"fnat\"\nlocal_addresses = [\"10.77.0.100\"]\nlocal_ports = \"40000-40099\"\n",
    );
    let (_, v) = Config::parse(&fnat, Path::new("vipd.toml")).unwrap();
    let s = &v.services[0];
    assert_eq!(s.real_servers[0].mode, FwdMode::Fnat);
    assert_eq!(s.real_servers[0].port, 8080, "full-NAT may change the port");
    assert_eq!(
        (
            s.local_pool.port_min,
            s.local_pool.port_max,
            s.local_pool.size()
        ),
        (40000, 40099, 100)
    );
    let cases = [
        (
            fnat.replace("local_addresses = [\"10.77.0.100\"]\n", ""),
            "services[0].local_addresses: full-NAT needs local addresses",
        ),
        (
            fnat.replace("\"10.77.0.100\"]", "\"10.77.0.10\"]"),
            "services[0].local_addresses[0]: 10.77.0.10 is a port address",
        ),
        (
            fnat.replace("\"10.77.0.100\"]", "\"10.77.100.1\"]"),
            "services[0].local_addresses[0]: 10.77.100.1 is a VIP",
        ),
        (
            fnat.replace("\"10.77.0.100\"]", "\"fd00::1\"]"),
            "services[0].local_addresses[0]: fd00::1 is IPv6 but the VIP 10.77.100.1 is IPv4: a full-NAT service's local addresses are of its VIP's family",
        ),
        (
            fnat.replace("40000-40099", "40099-40000"),
            "services[0].local_ports: `40099-40000`: the first port must be 1 or more",
        ),
        (
            fnat.replace("mode = \"fnat\"\n", "mode = \"fnat\"\npersistence_timeout = 300\n"),
            "services[0].persistence_timeout: full-NAT services cannot be persistent",
        ),
    ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "{want}: {e}");
    }
    let v6 = fnat
        .replace("vip = \"10.77.100.1\"", "vip = \"fd00:77:100::1\"")
        .replace(
            "gateway = \"10.77.0.1\"\n",
            "gateway = \"10.77.0.1\"\nipv6 = \"fd00:77::10/64\"\ngateway6 = \"fd00:77::1\"\n",
        )
        .replace("ip = \"10.77.0.21\"", "ip = \"fd00:77::21\"")
        .replace("ip = \"192.0.2.7\"", "ip = \"2001:db8::7\"");
    let v6 = v6.replace("\"10.77.0.100\"]", "\"fd00:77::100\"]");
    let (_, v) = Config::parse(&v6, Path::new("vipd.toml")).unwrap();
    let s = &v.services[0];
    assert_eq!(s.real_servers[0].mode, FwdMode::Fnat);
    assert_eq!(
        (s.local_pool.addrs.clone(), s.local_pool.size()),
        (vec![to_mapped("fd00:77::100".parse().unwrap())], 100),
        "an IPv6 service with an IPv6 pool"
    );
    let v6_cases = [
        (
            v6.replace("\"fd00:77::100\"]", "\"10.77.0.100\"]"),
            "services[0].local_addresses[0]: 10.77.0.100 is IPv4 but the VIP fd00:77:100::1 is IPv6",
        ),
        (
            v6.replace("\"fd00:77::100\"]", "\"fd00:77::100\", \"10.77.0.100\"]"),
            "services[0].local_addresses[1]: 10.77.0.100 is IPv4 but the VIP fd00:77:100::1 is IPv6",
        ),
        (
            v6.replace("\"fd00:77::100\"]", "\"fd00:77::10\"]"),
            "services[0].local_addresses[0]: fd00:77::10 is a port address",
        ),
        (
            v6.replace("\"fd00:77::100\"]", "\"fe80::100\"]"),
            "services[0].local_addresses[0]: fe80::100 is link-local",
        ),
        (
            v6.replace("\"fd00:77::100\"]", "\"::ffff:10.77.0.100\"]"),
            "services[0].local_addresses[0]: ::ffff:10.77.0.100 is IPv4-mapped",
        ),
        (
            v6.replace("\"fd00:77::100\"]", "\"fd00:77::21\"]"),
            "services[0].local_addresses[0]: fd00:77::21 is a real server",
        ),
        (
            v6.replace("local_addresses = [\"fd00:77::100\"]\n", ""),
            "(e.g. local_addresses = [\"fd00::100\"])",
        ),
    ];
    for (text, want) in v6_cases {
        let e = err(&text);
        assert!(e.contains(want), "{want}: {e}");
    }
    // A pool without full-NAT real servers is only a warning.
    let unused = GOOD.replace(
        "port = 80\n",
        "port = 80\nlocal_addresses = [\"10.77.0.100\"]\n",
    );
    let (_, v) = Config::parse(&unused, Path::new("vipd.toml")).unwrap();
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("no full-NAT real server")),
        "{:?}",
        v.warnings
    );
}
