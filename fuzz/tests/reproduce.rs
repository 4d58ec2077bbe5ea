//! `VIPD_FUZZ_INPUT=path TARGET=pipeline cargo test --test reproduce -- --nocapture` runs one
//! input (a finding) outside libFuzzer; with VIPD_FUZZ_TRACE=1 the pipeline prints each frame.

#[test]
fn reproduce() {
    let Some(path) = std::env::var_os("VIPD_FUZZ_INPUT") else {
        return;
    };
    let data = std::fs::read(&path).unwrap_or_default();
    match std::env::var("TARGET").as_deref() {
        Ok("wire") => vipd_fuzz::wire::run(&data),
        Ok("rewrites") => vipd_fuzz::rewrites::run(&data),
        _ => vipd_fuzz::pipeline::run(&data),
    }
}
