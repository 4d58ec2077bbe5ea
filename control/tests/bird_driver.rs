//! vipd's BGP driver against a real BIRD 2 (Debian `bird2`, which scripts/setup installs):
//! announcements and withdrawals land in bird's routing table, survive an operator's
//! `configure` and a bird restart, are put back after an operator's `disable`, and a bird.conf
//! that does not include vipd's file is reported as such. bird runs with static protocols only
//! (no BGP, no kernel or device protocol): it sends nothing on any network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vipd_control::config::BgpConfig;
use vipd_control::scaleout::bird::{protocol_states, Bird};
use vipd_control::scaleout::driver::BirdDriver;

const BIRD: &str = "/usr/sbin/bird";

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, conf: &str) -> Daemon {
        assert!(
            Path::new(BIRD).exists(),
            "{BIRD} not found: install Debian's bird2 (scripts/setup does)"
        );
        let socket = dir.join("bird.ctl");
        let _ = std::fs::remove_file(&socket);
        let config = dir.join("bird.conf");
        std::fs::write(&config, conf).unwrap();
        let child = Command::new(BIRD)
            .arg("-f")
            .arg("-c")
            .arg(&config)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while Bird::connect(&socket, Duration::from_secs(1)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("bird exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "bird did not open {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, socket }
    }

    fn cli(&self) -> Bird {
        Bird::connect(&self.socket, Duration::from_secs(2)).unwrap()
    }

    /// vipd's protocols and their states.
    fn states(&self) -> BTreeMap<String, String> {
        protocol_states(&self.cli().command("show protocols \"vipd_*\"").unwrap())
            .into_iter()
            .collect()
    }

    /// The host routes in bird's tables.
    fn routes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["master4", "master6"] {
            let r = self
                .cli()
                .command(&format!("show route table {table}"))
                .unwrap();
            for (code, text) in &r.lines {
                if *code == 1007 {
                    if let Some(net) = text.split_whitespace().next().filter(|n| n.contains('/')) {
                        out.push(net.to_string());
                    }
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conf(dir: &Path, include: bool) -> String {
    // bird refuses a configuration without a protocol; this one holds no route.
    let mut c = String::from(
        "log stderr { warning, error, fatal };\nrouter id 192.0.2.1;\nprotocol static anchor { ipv4; }\n",
    );
    if include {
        c.push_str(&format!(
            "include \"{}\";\n",
            dir.join("vips.conf").display()
        ));
    }
    c
}

fn want(list: &[(&str, bool)]) -> BTreeMap<IpAddr, bool> {
    list.iter().map(|(v, a)| (v.parse().unwrap(), *a)).collect()
}

/// Sync until it succeeds (bird may be restarting) or 10 s passed.
fn sync(driver: &mut BirdDriver, w: &BTreeMap<IpAddr, bool>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match driver.sync(w, Instant::now()) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("sync: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn states(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[test]
fn driver_against_a_real_bird() {
    let dir = tempfile::tempdir().unwrap();
    let vips = dir.path().join("vips.conf");
    std::fs::write(&vips, "").unwrap();
    let mut bird = Daemon::start(dir.path(), &conf(dir.path(), true));
    let mut driver = BirdDriver::new(BgpConfig {
        socket: bird.socket.clone(),
        protocols_file: vips.clone(),
        ..BgpConfig::default()
    });
    let (a, b) = (
        "vipd_10_77_100_1",
        "vipd_fd00_0077_0100_0000_0000_0000_0000_0001",
    );

    // Announce one, withdraw the other.
    sync(
        &mut driver,
        &want(&[("10.77.100.1", false), ("fd00:77:100::1", true)]),
    );
    assert_eq!(bird.states(), states(&[(a, "down"), (b, "up")]));
    assert_eq!(bird.routes(), ["fd00:77:100::1/128"]);

    // Swap.
    sync(
        &mut driver,
        &want(&[("10.77.100.1", true), ("fd00:77:100::1", false)]),
    );
    assert_eq!(bird.states(), states(&[(a, "up"), (b, "down")]));
    assert_eq!(bird.routes(), ["10.77.100.1/32"]);

    // An operator's `configure` keeps what vipd asked for: the file says it.
    let r = bird.cli().command("configure").unwrap();
    assert!(r.code == 3 || r.code == 4, "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(bird.states(), states(&[(a, "up"), (b, "down")]));

    // An operator's `disable` is put back at the next reconcile.
    bird.cli().command(&format!("disable \"{a}\"")).unwrap();
    assert_eq!(bird.states()[a], "down");
    driver.forget();
    sync(
        &mut driver,
        &want(&[("10.77.100.1", true), ("fd00:77:100::1", false)]),
    );
    assert_eq!(bird.states()[a], "up");

    // A VIP that leaves the configuration leaves bird.
    sync(&mut driver, &want(&[("10.77.100.1", true)]));
    assert_eq!(bird.states(), states(&[(a, "up")]));
    assert!(!std::fs::read_to_string(&vips).unwrap().contains(b));

    // bird restarts: it reads vipd's file, so the VIP is announced again at once; the driver
    // reconnects and finds it as it wants it.
    drop(bird);
    bird = Daemon::start(dir.path(), &conf(dir.path(), true));
    assert_eq!(bird.states(), states(&[(a, "up")]));
    sync(&mut driver, &want(&[("10.77.100.1", false)]));
    assert_eq!(bird.states(), states(&[(a, "down")]));
    assert!(bird.routes().is_empty());
    assert_eq!(
        driver.status.errors, 1,
        "only the connection lost at bird's restart is an error"
    );
    drop(bird);

    // A bird.conf that does not include the file: vipd says so.
    let bird = Daemon::start(dir.path(), &conf(dir.path(), false));
    let mut driver = BirdDriver::new(BgpConfig {
        socket: bird.socket.clone(),
        protocols_file: vips.clone(),
        ..BgpConfig::default()
    });
    let e = driver
        .sync(&want(&[("10.77.100.1", true)]), Instant::now())
        .unwrap_err();
    assert!(
        matches!(
            e,
            vipd_control::scaleout::driver::SyncError::NoProtocol { .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("does bird.conf include"), "{e}");
    assert_eq!(driver.status.errors, 1);
    // Withdrawing needs no protocol: nothing is announced, nothing to do.
    driver
        .sync(&want(&[("10.77.100.1", false)]), Instant::now())
        .unwrap();
}
