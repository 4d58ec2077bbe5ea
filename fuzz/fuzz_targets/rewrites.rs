//! libFuzzer entry point; the target and its oracles live in vipd_fuzz::rewrites.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vipd_fuzz::rewrites::run(data));
