//! vipctl's renderings against ipvsadm's layout and the API's answers.

use super::*;
use serde_json::json;

fn listing() -> Value {
    json!({
        "version": "0.1.0", "generation": 7, "unsaved_changes": 2, "flow_capacity": 65536,
        "services": [{
            "proto": "tcp", "address": "10.77.100.1:80", "scheduler": "maglev",
            "schedulable": true, "dead_flows": "drop", "hash": "3-tuple",
            "stats": {"conns": 1200, "inpkts": 123_456_789, "outpkts": 5, "inbytes": 1_234_567_890_123u64, "outbytes": 0},
            "rates": {"cps": 10.4, "inpps": 20.5, "outpps": 0.0, "inbps": 3000.0, "outbps": 0.0},
            "real_servers": [
                {"address": "10.77.0.21:8080", "forward": "Masq", "weight": 1, "active_conns": 3,
                 "inactive_conns": 12, "sorry": false, "health": {"state": "up"},
                 "stats": {"conns": 600}, "rates": {"cps": 5.2}},
                {"address": "10.77.0.22:8080", "forward": "Masq", "weight": 0, "active_conns": 0,
                 "inactive_conns": 0, "sorry": false, "health": {"state": "unchecked"},
                 "stats": {}, "rates": {}},
                {"address": "10.77.0.9:8080", "forward": "Masq", "weight": 1, "active_conns": 0,
                 "inactive_conns": 0, "sorry": true, "health": {"state": "down"},
                 "stats": {}, "rates": {}},
            ],
        }, {
            "proto": "udp", "address": "[fd00:77:100::1]:53", "scheduler": "rr",
            "schedulable": false, "dead_flows": "keep", "stats": {}, "rates": {},
            "real_servers": [],
        }],
    })
}

#[test]
fn plain_listing_is_ipvsadms_with_a_health_column() {
    let text = services(&listing(), Table::Plain, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "vipd version 0.1.0 (size=65536, generation=7, 2 change(s) not saved)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  Health",
            "TCP  10.77.100.1:80 maglev 3-tuple-hash",
            "  -> 10.77.0.21:8080              Masq    1      3          12         up",
            "  -> 10.77.0.22:8080              Masq    0      0          0          -",
            "  -> 10.77.0.9:8080               Masq    1      0          0          down sorry",
            "UDP  [fd00:77:100::1]:53 rr keep-dead-flows no-server-available",
        ]
    );
    // The columns of the real server lines start where the title's do.
    let col = |l: &str, w: &str| l.find(w).unwrap();
    assert_eq!(col(lines[2], "Forward"), col(lines[4], "Masq"));
    assert_eq!(col(lines[2], "Health"), col(lines[4], "up"));
}

#[test]
fn persistence_flags_and_thresholds_as_ipvsadm_prints_them() {
    let v = json!({
        "services": [{
            "proto": "tcp", "address": "10.77.100.1:80", "vip": "10.77.100.1",
            "scheduler": "sh", "scheduler_flags": ["sh-fallback", "sh-port"],
            "persistence": {"timeout_s": 300, "prefix_len": 24, "netmask": "255.255.255.0"},
            "schedulable": true, "dead_flows": "drop",
            "real_servers": [
                {"address": "10.77.0.21:8080", "forward": "Masq", "weight": 2,
                 "active_conns": 3, "inactive_conns": 12, "persistent_conns": 7,
                 "upper_threshold": 100, "lower_threshold": 50, "health": {"state": "up"}},
            ],
        }, {
            "proto": "udp", "address": "[fd00::1]:53", "vip": "fd00::1", "scheduler": "wlc",
            "persistence": {"timeout_s": 60, "prefix_len": 128, "netmask": "128"},
            "schedulable": true, "dead_flows": "drop", "real_servers": [],
        }, {
            "proto": "udp", "address": "[fd00::1]:54", "vip": "fd00::1", "scheduler": "wlc",
            "persistence": {"timeout_s": 60, "prefix_len": 64, "netmask": "64"},
            "schedulable": true, "dead_flows": "drop", "real_servers": [],
        }],
    });
    let text = services(&v, Table::Plain, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[3],
        "TCP  10.77.100.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0"
    );
    assert_eq!(lines[5], "UDP  [fd00::1]:53 wlc persistent 60");
    assert_eq!(lines[6], "UDP  [fd00::1]:54 wlc persistent 60 mask 64");
    let text = services(&v, Table::Thresholds, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn"
    );
    assert_eq!(lines[2], "  -> RemoteAddress:Port");
    assert_eq!(
        lines[3],
        "TCP  10.77.100.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0"
    );
    assert_eq!(
        lines[4],
        "  -> 10.77.0.21:8080              100        50         3          12"
    );
    let text = services(&v, Table::PersistConn, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn"
    );
    assert_eq!(
        lines[4],
        "  -> 10.77.0.21:8080              2         7           3          12"
    );
    let col = |l: &str, w: &str| l.find(w).unwrap();
    assert_eq!(col(lines[1], "PersistConn"), col(lines[4], "7 "));
    // Persistence entries as ipvsadm lists templates.
    let entries = json!({"sampled": 1, "truncated": false, "persistent": true, "connections": [
        {"proto": "tcp", "client": "192.168.77.0:0", "vip": "10.77.100.1:80",
         "real_server": "10.77.0.21:8080", "state": "none", "expires_s": 299.2},
    ]});
    let lines: Vec<String> = connections(&entries).lines().map(str::to_string).collect();
    assert!(lines[0].starts_with("vipd persistence entries (1 sampled"));
    assert_eq!(
        lines[2],
        "TCP 04:59  NONE        192.168.77.0:0     10.77.100.1:80     10.77.0.21:8080"
    );
}

#[test]
fn stats_and_rates_scale_like_ipvsadm() {
    assert_eq!(largenum(99_999_999, false), " 99999999");
    assert_eq!(largenum(123_456_789, false), "  123456K");
    assert_eq!(largenum(1_234_567_890, false), "    1234M");
    assert_eq!(largenum(1_234_567_890_123, false), "    1234G");
    assert_eq!(largenum(123_456_789_012_345, false), "     123T");
    assert_eq!(largenum(1_234_567_890_123, true), " 1234567890123");
    assert_eq!(largenum(7, true), "        7");
    let text = services(&listing(), Table::Stats, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
    assert_eq!(lines[2], "  -> RemoteAddress:Port");
    assert_eq!(
        lines[3],
        "TCP  10.77.100.1:80                   1200  123456K        5    1234G        0"
    );
    assert_eq!(
        lines[4],
        "  -> 10.77.0.21:8080                   600        0        0        0        0"
    );
    let text = services(&listing(), Table::Rate, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS"
    );
    assert_eq!(
        lines[3],
        "TCP  10.77.100.1:80                     10       21        0     3000        0"
    );
    let one = service(&listing()["services"][0], Table::Plain, false);
    assert!(one.starts_with("Prot LocalAddress:Port Scheduler Flags\n"));
}

#[test]
fn connections_and_timeouts() {
    let v = json!({"sampled": 4, "truncated": true, "connections": [
        {"worker": 0, "proto": "tcp", "client": "192.168.77.2:40000", "vip": "10.77.100.1:80",
         "real_server": "10.77.0.21:8080", "forward": "Masq", "state": "established", "expires_s": 59.7},
        {"worker": 1, "proto": "udp", "client": "192.168.77.3:5000", "vip": "10.77.100.1:53",
         "real_server": "10.77.0.22:5353", "forward": "Masq", "state": "none", "expires_s": 125.0},
        {"worker": 0, "proto": "tcp", "client": "192.168.77.4:40001", "vip": "10.77.100.1:81",
         "real_server": "10.77.0.23:8080", "forward": "FullNat", "state": "established",
         "expires_s": 30.0, "local": "10.77.0.100:40017"},
        {"worker": 1, "proto": "tcp", "client": "[2001:db8::4]:40002", "vip": "[fd00:77:100::1]:80",
         "real_server": "[fd00:78::21]:8080", "forward": "FullNat", "state": "established",
         "expires_s": 30.0, "local": "[fd00:77::100]:40018"},
    ]});
    let lines: Vec<String> = connections(&v).lines().map(str::to_string).collect();
    assert!(lines[0].contains("4 sampled") && lines[0].contains("more exist"));
    assert_eq!(
        lines[1],
        "pro expire state       source             virtual            destination"
    );
    assert_eq!(
        lines[2],
        "TCP 00:59  ESTABLISHED 192.168.77.2:40000 10.77.100.1:80     10.77.0.21:8080"
    );
    assert_eq!(
        lines[3],
        "UDP 02:05  UDP         192.168.77.3:5000  10.77.100.1:53     10.77.0.22:5353"
    );
    assert_eq!(
        lines[4],
        "TCP 00:30  ESTABLISHED 192.168.77.4:40001 10.77.100.1:81     10.77.0.23:8080 local 10.77.0.100:40017"
    );
    assert_eq!(
        lines[5],
        "TCP 00:30  ESTABLISHED [2001:db8::4]:40002 [fd00:77:100::1]:80 [fd00:78::21]:8080 local [fd00:77::100]:40018"
    );
    let t = json!({"tcp_syn": 10, "tcp_established": 900, "tcp_fin": 120, "tcp_time_wait": 3, "tcp_close": 4, "udp": 300});
    assert_eq!(
        timeouts(&t),
        "Timeout (tcp tcpfin udp): 900 120 300\nTimeout (tcpsyn tcptimewait tcpclose): 10 3 4\n"
    );
}

#[test]
fn health_groups_by_service() {
    let v = json!({"real_servers": [
        {"service": "tcp/10.77.100.1/80", "real_server": "10.77.0.21:8080",
         "health": {"state": "down", "checks": 40, "failures": 3, "transitions": 1,
                    "last_outcome": "connection refused", "last_transition_ms": 1_000_000},
         "check": {"type": "http", "target": "10.77.0.21:8080", "path": "/", "status": 200,
                   "host": null, "interval_s": 0.5, "timeout_s": 0.25, "rise": 2, "fall": 3}},
        {"service": "tcp/10.77.100.1/80", "real_server": "10.77.0.22:8080",
         "health": {"state": "unchecked"}, "check": null},
        {"service": "udp/fd00::1/53", "real_server": "[fd00::21]:53",
         "health": {"state": "up", "checks": 1, "failures": 0, "transitions": 0,
                    "last_outcome": "ok", "last_transition_ms": 0},
         "check": {"type": "tcp", "target": "[fd00::21]:53", "interval_s": 2.0, "timeout_s": 1.0, "rise": 2, "fall": 3}},
    ]});
    let text = health(&v, None, 1_045_000);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[2], "TCP  10.77.100.1:80");
    assert_eq!(
        lines[3],
        "  -> 10.77.0.21:8080              down       40       3       1      45s connection refused / http GET / =200 10.77.0.21:8080 every 0.5s timeout 0.25s rise 2 fall 3"
    );
    assert_eq!(
        lines[4],
        "  -> 10.77.0.22:8080              -           -       -       -        - unchecked"
    );
    assert_eq!(lines[5], "UDP  [fd00::1]:53");
    assert!(lines[6].contains(" up ") && lines[6].ends_with("fall 3"));
    let only = health(&v, Some("udp/fd00::1/53"), 0);
    assert_eq!(only.lines().count(), 4);
    // The box's faults and the guard's holds come first; a held real server says so.
    let mut v = v;
    v["local_faults"] = json!({"failing_locally": 2, "classes": {
        "descriptors": {"real_servers": 2, "total": 9, "last_detail": "Too many open files (os error 24)", "since_ms": 1},
        "no_route": {"real_servers": 0, "total": 1, "last_detail": "x", "since_ms": 0}}});
    v["guard"] = json!({"max_down_percent": 50, "services": [{"service": "tcp/10.77.100.1/80", "held": 1, "held_total": 1}]});
    v["real_servers"][2]["health"]["held"] = json!({"reason": "timeout after 1s", "since_ms": 5});
    let text = health(&v, None, 1_045_000);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "The box itself: 2 real server(s) could not be checked: descriptors (Too many open files (os error 24)); they keep their state");
    assert!(
        lines[1].starts_with("Held: 1 down verdict(s), more than 50 % "),
        "{}",
        lines[1]
    );
    assert!(lines[8].contains(" held "), "{}", lines[8]);
    assert_eq!(
        released(
            &json!({"ok": true, "released": [{"service": "tcp/10.77.100.1/80", "real_server": "10.77.0.21:8080"}]})
        ),
        "vipd: 1 held down verdict(s) applied: 10.77.0.21:8080\n"
    );
    assert_eq!(ago(0, 5), "-");
    assert_eq!(ago(1000, 7_201_000), "2h");
}

#[test]
fn stats_lists_every_counter() {
    let v = json!({"total": {"rx_packets": 10, "drop_no_service": 2}, "drops": 2, "flows_active": 1,
        "workers": [{"rx_packets": 10, "drop_no_service": 2, "flows_active": 1, "generation": 3}]});
    let text = stats(&v);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Counter") && lines[0].ends_with("worker0"));
    assert!(lines.iter().any(|l| l.starts_with("drop_no_service")
        && l.split_whitespace().collect::<Vec<_>>() == ["drop_no_service", "2", "2"]));
    assert!(lines.last().unwrap().starts_with("drops (all reasons)"));
}

#[test]
fn status_lists_a_bonds_members() {
    let v = json!({"ports": [{"name": "lan", "driver": "net_bonding", "mac": "02:77:00:00:00:0a",
        "link_up": true, "queues": 1, "rss": false, "members": [
            {"device": "net_tap0", "link_up": false, "active": false},
            {"device": "net_tap1", "link_up": true, "active": true}]}]});
    let text = status(&v);
    assert!(
        text.contains("  member net_tap0         link down \n"),
        "{text}"
    );
    assert!(
        text.contains("  member net_tap1         link up   active\n"),
        "{text}"
    );
}

#[test]
fn status_shows_an_lacp_members_state_and_partner() {
    let lacp = |actor: &[&str], coll: bool, dist: bool| {
        json!({"selection": "selected",
        "aggregator": "net_tap0", "collecting": coll, "distributing": dist, "actor_state": actor,
        "actor_key": 33, "partner_state": ["active", "aggregation"], "partner_system": "02:00:00:00:00:01",
        "partner_key": 33, "partner_port": 2})
    };
    let v = json!({"ports": [{"name": "lan", "driver": "net_bonding", "mac": "02:77:00:00:00:0a",
        "link_up": true, "queues": 1, "rss": false, "members": [
            {"device": "net_tap0", "link_up": true, "active": true,
             "lacp": lacp(&["active", "aggregation", "synchronization", "collecting", "distributing"], true, true)},
            {"device": "net_tap1", "link_up": true, "active": false,
             "lacp": lacp(&["active", "aggregation", "defaulted"], false, false)},
            {"device": "net_tap2", "link_up": true, "active": false,
             "lacp": lacp(&["active", "aggregation", "expired"], false, false)},
            {"device": "net_tap3", "link_up": false, "active": false, "lacp": null}]}]});
    let text = status(&v);
    for want in [
        "  member net_tap0         link up   lacp aggregated partner 02:00:00:00:00:01 key 33 port 2\n",
        "  member net_tap1         link up   lacp defaulted\n",
        "  member net_tap2         link up   lacp expired    partner 02:00:00:00:00:01 key 33 port 2\n",
        "  member net_tap3         link down lacp -\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}
