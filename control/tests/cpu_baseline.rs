//! The binaries on a CPU below the build's baseline (x86-64-v2): under qemu's user-mode
//! emulation of a `qemu64` CPU (SSE2, no SSSE3/SSE4/POPCNT), each prints why it refuses and
//! exits 1, instead of dying of SIGILL in DPDK's or its own code; on a `Nehalem` (the
//! baseline's first CPU) each runs. `qemu-x86_64` comes from Debian's qemu-user
//! (`scripts/setup` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed test

use std::process::Command;

fn under(cpu: &str, bin: &str) -> std::process::Output {
    Command::new("qemu-x86_64")
        .args(["-cpu", cpu, bin, "--version"])
        .output()
        .unwrap_or_else(|e| panic!("qemu-x86_64 (Debian's qemu-user, scripts/setup): {e}"))
}

#[test]
fn refused_below_the_baseline_and_run_on_it() {
    for bin in [env!("CARGO_BIN_EXE_vipd"), env!("CARGO_BIN_EXE_vipctl")] {
        let old = under("qemu64", bin);
        let err = String::from_utf8_lossy(&old.stderr);
        assert_eq!(old.status.code(), Some(1), "{bin} on qemu64: {err}");
        assert!(
            err.contains("does not have the x86-64-v2 baseline") && err.contains("SSE4.2"),
            "{bin}: {err}"
        );
        let new = under("Nehalem", bin);
        assert!(new.status.success(), "{bin} on Nehalem: {:?}", new);
        assert!(String::from_utf8_lossy(&new.stdout).contains("0.1.0"));
    }
}
