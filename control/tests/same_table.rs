//! Every box behind one ECMP group must build the same consistent-hash table for a service,
//! whatever its own address, ids or the order its configuration lists things in: two `vipd
//! --check --tables` processes, one per box's configuration, print the tables' fingerprints
//! (a hash of every slot's real server), which must be equal; a third box whose real servers
//! differ in one weight must print another one for that service (so the comparison can fail).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::process::Command;

/// Real servers as (address, weight).
type RealServers<'a> = &'a [(&'a str, u32)];
/// A service: VIP, port, mode, real servers.
type Service<'a> = (&'a str, u16, &'a str, RealServers<'a>);

/// A box's configuration: its own port address and file prefix, the services and each
/// service's real servers in the order given.
fn config(box_ip: &str, services: &[Service], extra: &str) -> String {
    let mut c = format!(
        "[eal]\nfile_prefix = \"vipd-{box_ip}\"\n\n[[ports]]\nname = \"lan\"\ndevice = \"net_null0\"\n\
         ipv4 = \"{box_ip}/24\"\ngateway = \"10.0.0.1\"\n"
    );
    for (vip, port, mode, rs) in services {
        c.push_str(&format!(
            "\n[[services]]\nvip = \"{vip}\"\nproto = \"tcp\"\nport = {port}\nmode = \"{mode}\"\n{extra}"
        ));
        for (ip, w) in rs.iter() {
            c.push_str(&format!(
                "\n[[services.real_servers]]\nip = \"{ip}\"\nweight = {w}\n"
            ));
        }
    }
    c
}

/// `vipd --check FILE --tables` in its own process: service -> fingerprint line.
fn tables(dir: &std::path::Path, name: &str, text: &str) -> BTreeMap<String, String> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .arg("--check")
        .arg(&path)
        .arg("--tables")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.contains("fingerprint"))
        .map(|l| {
            let (service, rest) = l.split_once(": ").unwrap();
            (service.to_string(), rest.to_string())
        })
        .collect()
}

#[test]
fn same_real_servers_same_table_on_every_box() {
    let dir = tempfile::tempdir().unwrap();
    let dr: &[(&str, u32)] = &[
        ("10.0.0.21", 1),
        ("10.0.0.22", 2),
        ("10.0.0.23", 1),
        ("10.0.0.24", 1),
    ];
    let dr_shuffled: &[(&str, u32)] = &[
        ("10.0.0.24", 1),
        ("10.0.0.22", 2),
        ("10.0.0.21", 1),
        ("10.0.0.23", 1),
    ];
    let dr_weight: &[(&str, u32)] = &[
        ("10.0.0.21", 1),
        ("10.0.0.22", 2),
        ("10.0.0.23", 1),
        ("10.0.0.24", 2),
    ];
    let tun: &[(&str, u32)] = &[("10.0.0.31", 1), ("10.0.0.32", 1), ("10.0.0.33", 1)];
    let tun_shuffled: &[(&str, u32)] = &[("10.0.0.33", 1), ("10.0.0.31", 1), ("10.0.0.32", 1)];

    let a = tables(
        dir.path(),
        "box1.toml",
        &config(
            "10.0.0.11",
            &[
                ("10.0.100.1", 80, "dr", dr),
                ("10.0.100.2", 80, "tunnel", tun),
            ],
            "",
        ),
    );
    // Another box: its own address, services and real servers listed in other orders, and a
    // health check (every real server starts up, as on a box that just came up).
    let b = tables(
        dir.path(),
        "box2.toml",
        &config(
            "10.0.0.12",
            &[
                ("10.0.100.2", 80, "tunnel", tun_shuffled),
                ("10.0.100.1", 80, "dr", dr_shuffled),
            ],
            "health_check = { type = \"tcp\", interval = 1, timeout = 0.5 }\n",
        ),
    );
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a.values()
            .all(|l| l.contains("maglev table of 65537 entries")),
        "{a:?}"
    );
    assert_eq!(
        a, b,
        "two boxes with the same real servers build different tables"
    );

    let c = tables(
        dir.path(),
        "box3.toml",
        &config(
            "10.0.0.13",
            &[
                ("10.0.100.1", 80, "dr", dr_weight),
                ("10.0.100.2", 80, "tunnel", tun),
            ],
            "",
        ),
    );
    assert_ne!(
        a["tcp 10.0.100.1:80"], c["tcp 10.0.100.1:80"],
        "one weight changed, same table"
    );
    assert_eq!(a["tcp 10.0.100.2:80"], c["tcp 10.0.100.2:80"]);
}
