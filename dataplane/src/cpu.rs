//! The CPU baseline the build targets (x86-64-v2, `.cargo/config.toml`) and the check that
//! the running CPU has it. Code compiled for the baseline may use its instructions anywhere
//! (the flow table hashes with SSE4.2's `crc32`; Debian's DPDK is built for it too, and its
//! constructors run before `main`), so the binaries check before any of that code runs:
//! [`cpu_gate!`] puts [`gate`] in the executable's `.preinit_array`, which the dynamic linker
//! runs before any shared library's initialisers, and it refuses with a message instead of
//! letting the process die of SIGILL.

/// What [`gate`] prints on a CPU below the baseline.
const REFUSAL: &[u8] = b"vipd: this CPU does not have the x86-64-v2 baseline (SSE3, SSSE3, SSE4.1, SSE4.2, POPCNT, CMPXCHG16B) that vipd and DPDK are built for; run it on a newer CPU or build vipd for this one (docs/operations.md, \"CPU baseline\")\n";

/// Whether the running CPU has every x86-64-v2 feature, read with `cpuid` alone: this runs
/// before the C runtime and Rust's own start-up, so it uses nothing else (no allocation, no
/// `std` feature detection cache).
#[inline(never)]
fn has_baseline() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // `cpuid` exists on every x86_64 CPU and only reads registers.
        let leaf1 = std::arch::x86_64::__cpuid(1);
        let (ecx, edx) = (leaf1.ecx, leaf1.edx);
        // ECX: SSE3 0, SSSE3 9, CMPXCHG16B 13, SSE4.1 19, SSE4.2 20, POPCNT 23; EDX: SSE2 26.
        const ECX: u32 = 1 | 1 << 9 | 1 << 13 | 1 << 19 | 1 << 20 | 1 << 23;
        ecx & ECX == ECX && edx & 1 << 26 != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// The check [`cpu_gate!`] runs before anything else in the process: exits with status 1 and
/// a message on a CPU below the baseline the build was compiled for.
pub extern "C" fn gate() {
    #[cfg(target_arch = "x86_64")]
    if cfg!(target_feature = "sse4.2") && !has_baseline() {
        // SAFETY: plain system calls on a static buffer; nothing else of the process runs yet.
        unsafe {
            libc::write(2, REFUSAL.as_ptr().cast(), REFUSAL.len());
            libc::_exit(1);
        }
    }
}

/// Put [`gate`] in the executable's `.preinit_array` (use it once, in a binary's root).
#[macro_export]
macro_rules! cpu_gate {
    () => {
        #[used]
        #[link_section = ".preinit_array"]
        static CPU_GATE: extern "C" fn() = $crate::cpu::gate;
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_machine_that_builds_runs_the_build() {
        assert!(super::has_baseline());
    }

    #[test]
    fn the_build_has_the_baseline() {
        // Built through the workspace's .cargo/config.toml: the hash's instruction is in.
        #[cfg(target_arch = "x86_64")]
        assert!(cfg!(target_feature = "sse4.2") || std::env::var_os("RUSTFLAGS").is_some());
    }
}
