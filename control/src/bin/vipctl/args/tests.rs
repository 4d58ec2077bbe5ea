//! The command line against ipvsadm habits: what each line sends, what it refuses.

use super::*;
use crate::action::{Action, Server, Service, Table};
use serde_json::json;

fn parse(line: &str) -> Result<Action, UsageError> {
    let argv = std::iter::once("vipctl").chain(line.split_whitespace());
    match Cli::try_parse_from(argv) {
        Ok(cli) => cli.action(),
        Err(e) => Err(UsageError(e.to_string())),
    }
}

fn ok(line: &str) -> Action {
    match parse(line) {
        Ok(a) => a,
        Err(e) => panic!("{line}: {}", e.0),
    }
}

fn refused(line: &str) -> String {
    match parse(line) {
        Ok(a) => panic!("{line}: accepted as {a:?}"),
        Err(e) => e.0,
    }
}

fn web() -> Service {
    Service {
        proto: "tcp",
        addr: "10.0.0.1:80".parse().unwrap(),
    }
}

#[test]
fn ipvsadm_lines_become_api_bodies() {
    assert_eq!(
        ok("-A -t 10.0.0.1:80 -s rr"),
        Action::AddService(
            json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80, "scheduler": "rr"})
        )
    );
    assert_eq!(
        ok("-A -u [fd00::1]:53 -s mh --mode dr --check tcp --fall 2"),
        Action::AddService(
            json!({"vip": "fd00::1", "proto": "udp", "port": 53, "scheduler": "mh",
            "mode": "dr", "health_check": {"type": "tcp", "fall": 2}})
        )
    );
    assert_eq!(
        ok("-A -t 10.0.0.1:80 -m --check http --check-path /ok --check-status 204"),
        Action::AddService(
            json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80, "mode": "nat",
            "health_check": {"type": "http", "path": "/ok", "status": 204}})
        )
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 -s wrr --dead-flows keep"),
        Action::EditService(web(), json!({"scheduler": "wrr", "dead_flows": "keep"}))
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 --hash 3-tuple"),
        Action::EditService(web(), json!({"hash": "3-tuple"}))
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 --check none"),
        Action::EditService(web(), json!({"health_check": null}))
    );
    assert_eq!(ok("-D -t 10.0.0.1:80"), Action::DeleteService(web()));
    assert_eq!(
        ok("-a -t 10.0.0.1:80 -r 10.0.1.5:8080 -m -w 3"),
        Action::AddServer(
            web(),
            json!({"ip": "10.0.1.5", "port": 8080, "mode": "nat", "weight": 3})
        )
    );
    let rs = Server {
        ip: "10.0.1.5".parse().unwrap(),
        port: None,
    };
    assert_eq!(
        ok("-a -t 10.0.0.1:80 -r 10.0.1.5"),
        Action::AddServer(web(), json!({"ip": "10.0.1.5"}))
    );
    assert_eq!(
        ok("-e -t 10.0.0.1:80 -r 10.0.1.5 -w 0 --check none"),
        Action::EditServer(
            web(),
            rs,
            json!({"weight": 0, "health_check": {"type": "none"}})
        )
    );
    assert_eq!(
        ok("-d -t 10.0.0.1:80 -r 10.0.1.5"),
        Action::DeleteServer(web(), rs)
    );
    assert_eq!(
        ok("drain -t 10.0.0.1:80 -r 10.0.1.5"),
        Action::Drain(web(), rs)
    );
    assert_eq!(
        ok("--set 0 30 0"),
        Action::SetTimeouts(json!({"tcp_fin": 30}).as_object().unwrap().clone())
    );
    assert_eq!(ok("--set 0 0 0"), Action::SetTimeouts(Map::new()));
    assert_eq!(ok("-Z"), Action::Zero(None));
    assert_eq!(ok("-Z -t 10.0.0.1:80"), Action::Zero(Some(web())));
    assert_eq!(ok("-S -n"), Action::Save);
    assert_eq!(ok("save"), Action::Save);
    assert_eq!(ok("reload"), Action::Reload);
}

#[test]
fn listings() {
    let plain = Action::List {
        service: None,
        table: Table::Plain,
        exact: false,
        json: false,
    };
    assert_eq!(ok(""), plain);
    assert_eq!(ok("-Ln"), plain);
    assert_eq!(ok("-l -n"), plain);
    assert_eq!(
        ok("-L -n --rate --exact -t 10.0.0.1:80 --json"),
        Action::List {
            service: Some(web()),
            table: Table::Rate,
            exact: true,
            json: true
        }
    );
    assert_eq!(
        ok("-Lnc -t 10.0.0.1:80 --client 192.168.0.7 -r 10.0.1.5:8080 --limit 10"),
        Action::Connections {
            query: vec![
                ("service", "tcp/10.0.0.1/80".into()),
                ("client", "192.168.0.7".into()),
                ("real_server", "10.0.1.5:8080".into()),
                ("limit", "10".into()),
            ],
            json: false
        }
    );
    assert_eq!(ok("-L --timeout"), Action::Timeouts { json: false });
    assert_eq!(
        ok("health --json"),
        Action::Health {
            service: None,
            json: true
        }
    );
    assert_eq!(ok("stats --json"), Action::Stats { json: true });
}

#[test]
fn schedulers_persistence_and_thresholds_as_ipvsadm_writes_them() {
    assert_eq!(
        ok("-A -t 10.0.0.1:80 -s wlc -p 300 -M 255.255.255.0"),
        Action::AddService(json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80,
            "scheduler": "wlc", "persistence_timeout": 300,
            "persistence_netmask": "255.255.255.0"}))
    );
    // -p without a value: ipvsadm's 300 s.
    assert_eq!(
        ok("-A -t 10.0.0.1:80 -p -s sh -b sh-fallback,sh-port"),
        Action::AddService(json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80,
            "scheduler": "sh", "scheduler_flags": ["sh-fallback", "sh-port"],
            "persistence_timeout": 300}))
    );
    assert_eq!(
        ok("-A -u [fd00::1]:53 -p 60 -M 64"),
        Action::AddService(json!({"vip": "fd00::1", "proto": "udp", "port": 53,
            "persistence_timeout": 60, "persistence_netmask": "64"}))
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 -p 0"),
        Action::EditService(
            web(),
            json!({"persistence_timeout": null, "persistence_netmask": null})
        )
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 -M 255.255.0.0"),
        Action::EditService(web(), json!({"persistence_netmask": "255.255.0.0"}))
    );
    assert_eq!(
        ok("-E -t 10.0.0.1:80 -b none"),
        Action::EditService(web(), json!({"scheduler_flags": []}))
    );
    assert_eq!(
        ok("-a -t 10.0.0.1:80 -r 10.0.1.5 -x 100 -y 50"),
        Action::AddServer(
            web(),
            json!({"ip": "10.0.1.5", "upper_threshold": 100, "lower_threshold": 50})
        )
    );
    let rs = Server {
        ip: "10.0.1.5".parse().unwrap(),
        port: None,
    };
    assert_eq!(
        ok("-e -t 10.0.0.1:80 -r 10.0.1.5 -x 0"),
        Action::EditServer(web(), rs, json!({"upper_threshold": null}))
    );
    assert_eq!(
        ok("-L -n --thresholds"),
        Action::List {
            service: None,
            table: Table::Thresholds,
            exact: false,
            json: false
        }
    );
    assert_eq!(
        ok("-L -n --persistent-conn -t 10.0.0.1:80"),
        Action::List {
            service: Some(web()),
            table: Table::PersistConn,
            exact: false,
            json: false
        }
    );
    assert_eq!(
        ok("-L -c --persistent-conn --client 192.0.2.0"),
        Action::Connections {
            query: vec![
                ("client", "192.0.2.0".to_string()),
                ("persistent", "true".to_string())
            ],
            json: false
        }
    );
    assert!(refused("-A -t 10.0.0.1:80 -M nat").contains("--mode nat"));
    assert!(refused("-A -t 10.0.0.1:80 -p 0 -M 255.255.255.0").contains("no netmask"));
    assert!(refused("-a -t 10.0.0.1:80 -r 10.0.1.5 -p 30").contains("illegal option -p"));
    assert!(refused("-A -t 10.0.0.1:80 -x 3").contains("illegal option -x"));
    assert!(refused("-L --thresholds --stats").contains("give one"));
    assert!(refused("-L -c --thresholds").contains("conflict"));
}

#[test]
fn full_nat_local_addresses_as_dpvs_writes_them() {
    assert_eq!(
        ok("-A -t 10.0.0.1:80 -s rr --mode fnat -z 10.0.9.1 --laddr 10.0.9.2 --lports 40000-40999"),
        Action::AddService(json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80,
            "scheduler": "rr", "mode": "fnat", "local_addresses": ["10.0.9.1", "10.0.9.2"],
            "local_ports": "40000-40999"}))
    );
    // -E replaces the list (a merge patch sets the whole array).
    assert_eq!(
        ok("-E -t 10.0.0.1:80 -z 10.0.9.3"),
        Action::EditService(web(), json!({"local_addresses": ["10.0.9.3"]}))
    );
    assert!(refused("-A -t 10.0.0.1:80 -z 10.0.9.300").contains("10.0.9.300"));
    assert!(
        refused("-a -t 10.0.0.1:80 -r 10.0.1.5 -z 10.0.9.1").contains("illegal option -z|--laddr")
    );
}

#[test]
fn misuse_is_named() {
    assert!(refused("-A -a -t 10.0.0.1:80").contains("multiple commands"));
    assert!(refused("-A -t 10.0.0.1:80 -w 3").contains("illegal option -w with --add-service"));
    assert!(refused("-a -t 10.0.0.1:80").contains("needs -r server-address"));
    assert!(refused("-A").contains("needs -t|-u"));
    assert!(refused("-A -t 10.0.0.1").contains("VIP:PORT"));
    assert!(refused("-A -t 10.0.0.1:0").contains("port 0"));
    assert!(refused("-A -t host.example:80").contains("numeric"));
    assert!(refused("-a -t 10.0.0.1:80 -r 10.0.1.300").contains("illegal real server"));
    assert!(refused("-a -t 10.0.0.1:80 -r 10.0.1.5 -g -m").contains("multiple forwarding"));
    assert!(refused("-A -t 10.0.0.1:80 -M 255.255.255.0").contains("persistence"));
    assert!(refused("-L --stats --rate").contains("give one"));
    assert!(refused("-L -c --stats").contains("conflict"));
    assert!(refused("-L --client 1.2.3.4").contains("go with -c"));
    assert!(refused("-E -t 10.0.0.1:80").contains("nothing to change"));
    assert!(refused("-e -t 10.0.0.1:80 -r 10.0.1.5").contains("nothing to change"));
    assert!(refused("-C").contains("not offered"));
    assert!(refused("-R").contains("reload"));
    assert!(
        refused("--set 1 2").contains("3 values"),
        "{}",
        refused("--set 1 2")
    );
    assert!(refused("status -t 10.0.0.1:80").contains("illegal option"));
    assert!(refused("-t 10.0.0.1:80 -u 10.0.0.1:53 -D").contains("TCP or UDP"));
}

#[test]
fn help_names_every_long_option() {
    use clap::CommandFactory;
    let cmd = <Cli as CommandFactory>::command();
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                USAGE.contains(&format!("--{long}")),
                "--help does not mention --{long}"
            );
        }
    }
    for sub in cmd.get_subcommands() {
        assert!(
            USAGE.contains(&format!("vipctl {}", sub.get_name()))
                || USAGE.contains(&format!("  {} ", sub.get_name())),
            "--help does not mention {}",
            sub.get_name()
        );
    }
}

#[test]
fn box_switch_and_status() {
    assert_eq!(ok("drain --box"), Action::DrainBox(true));
    assert_eq!(ok("resume --box"), Action::DrainBox(false));
    assert_eq!(ok("box --json"), Action::Box { json: true });
    assert_eq!(refused("resume"), "resume --box needs --box");
    assert_eq!(
        refused("drain --box -t 10.0.0.1:80"),
        "illegal option -t|-u service-address with drain --box"
    );
    assert_eq!(refused("-L --box"), "illegal option --box with --list (-L)");
}
