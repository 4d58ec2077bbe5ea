//! Build script for `dpdk-sys`: find the system DPDK with pkg-config (shared linking), generate
//! bindings with bindgen and compile the C shim (`src/shim.c`) for DPDK's static inline
//! functions and macros. Both bindgen and the shim get every flag of
//! `pkg-config --cflags libdpdk` (`-march=corei7`, `-include rte_config.h`, include paths):
//! without them DPDK's headers do not compile.

use std::env;
use std::path::PathBuf;
use std::process::{self, Command};

/// What to install on Debian/Ubuntu when something is missing.
const INSTALL_HINT: &str = "apt-get install dpdk libdpdk-dev libclang-dev pkg-config";

/// Stop the build with one clear message instead of a wall of errors.
fn fail(what: &str) -> ! {
    eprintln!();
    eprintln!("error: dpdk-sys cannot be built: {what}");
    eprintln!("       install DPDK 22.11, its headers, libclang and pkg-config:");
    eprintln!("           {INSTALL_HINT}");
    eprintln!();
    println!("cargo:warning=dpdk-sys: {what}; run `{INSTALL_HINT}`");
    process::exit(1);
}

/// The raw `pkg-config --cflags libdpdk` flags, split on whitespace (DPDK's .pc has no quoting).
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = match Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
    {
        Ok(out) => out,
        Err(e) => fail(&format!("`{pkg_config}` could not be run ({e})")),
    };
    if !out.status.success() {
        fail(&format!(
            "`{pkg_config} --cflags libdpdk` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    // 1. Link: shared libraries; the PMDs are loaded by EAL from its plugin directory.
    let lib = match pkg_config::Config::new()
        .statik(false)
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("pkg-config failed")
                .to_string();
            fail(&format!("libdpdk not found by pkg-config ({first})"))
        }
    };
    println!("cargo:version={}", lib.version);
    // The bonding PMD's API (rte_eth_bond_*) is not in libdpdk's link line: link its library
    // (the same file the EAL loads the PMD from, so it is loaded once).
    println!("cargo:rustc-link-lib=dylib=rte_net_bond");
    let cflags = dpdk_cflags();

    // 2. The shim, compiled with the same flags as DPDK's users.
    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    if let Err(e) = shim.try_compile("vipd_dpdk_shim") {
        fail(&format!("the C shim src/shim.c does not compile ({e})"));
    }

    // 3. Bindings. bindgen panics when libclang cannot be loaded: turn that into our message.
    let out_dir = match env::var("OUT_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => fail("OUT_DIR is not set (not run by cargo?)"),
    };
    let builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_arg("-Isrc")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_function("vipd_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .derive_debug(false)
        .generate_comments(false)
        .layout_tests(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));

    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    std::panic::set_hook(previous_hook);
    let bindings = match generated {
        Ok(Ok(bindings)) => bindings,
        Ok(Err(e)) => fail(&format!("bindgen could not parse the DPDK headers ({e})")),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            let why = why.lines().next().unwrap_or(why);
            fail(&format!(
                "bindgen failed, libclang is probably missing ({why})"
            ))
        }
    };
    if let Err(e) = bindings.write_to_file(out_dir.join("bindings.rs")) {
        fail(&format!("cannot write the bindings to OUT_DIR ({e})"));
    }
}
