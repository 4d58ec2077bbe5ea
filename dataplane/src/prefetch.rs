//! Software prefetch: start loading a cache line that will be read soon, so independent
//! misses overlap (burst lookups in the flow table, the Maglev table while it is populated).

/// Ask the CPU to load the cache line holding `x` (a hint: no fault, no effect on results).
#[inline(always)]
pub fn prefetch_line<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint on any address; x is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (x as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
