//! The `vipd --check` command line, run as a user would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::process::Command;

fn vipd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vipd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_valid_file_and_names_the_problem_in_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[ports]]\nname = \"lan\"\ndevice = \"net_null0\"\nipv4 = \"10.0.0.10/24\"\n\n\
         [[services]]\nvip = \"10.0.100.1\"\nproto = \"udp\"\nport = 53\n\n\
         [[services.real_servers]]\nip = \"10.0.0.21\"\n",
    )
    .unwrap();
    let (code, stdout, _) = vipd(&["--check", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("OK (1 port(s), 1 worker(s), 1 service(s), 1 real server(s))"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("10.0.0.21", "10.0.9.21"),
    )
    .unwrap();
    let (code, _, stderr) = vipd(&["--check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml: services[0].real_servers[0].ip: 10.0.9.21 is neither on-link"),
        "{stderr}"
    );

    let (code, _, stderr) = vipd(&["--check", dir.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("missing.toml: cannot read"), "{stderr}");

    let (code, _, stderr) = vipd(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config FILE"), "{stderr}");
}

#[test]
fn check_counts_vlans_and_refuses_qinq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trunk.toml");
    let trunk = "[[ports]]\nname = \"trunk\"\ndevice = \"net_null0\"\nipv4 = \"10.0.0.10/24\"\n\n\
         [[ports.vlans]]\nid = 100\nipv4 = \"10.0.100.10/24\"\n\n\
         [[ports.vlans]]\nid = 200\nipv6 = \"fd00:200::10/64\"\n\n\
         [[services]]\nvip = \"10.0.50.1\"\nproto = \"tcp\"\nport = 80\n\n\
         [[services.real_servers]]\nip = \"10.0.100.21\"\n";
    std::fs::write(&path, trunk).unwrap();
    let (code, stdout, stderr) = vipd(&["--check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .contains("OK (1 port(s) with 2 VLAN(s), 1 worker(s), 1 service(s), 1 real server(s))"),
        "{stdout}"
    );
    let qinq = trunk.replace(
        "id = 100\nipv4 = \"10.0.100.10/24\"\n",
        "id = 100\nipv4 = \"10.0.100.10/24\"\n\n[[ports.vlans.vlans]]\nid = 7\n",
    );
    std::fs::write(&path, qinq).unwrap();
    let (code, _, stderr) = vipd(&["--check", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("trunk.toml: ports[0].vlans[0].vlans: QinQ (802.1ad, a VLAN inside a VLAN) is not supported"),
        "{stderr}"
    );
}
