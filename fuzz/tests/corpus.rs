//! Replays the committed corpus (fuzz/corpus/TARGET/*) and the built-in seeds through every
//! target, with all oracles: what libFuzzer once found interesting keeps passing. Runs in
//! `scripts/fuzz smoke` (and so in `scripts/test`) without libFuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let mut n = 0;
    for s in vipd_fuzz::seeds::seeds(target) {
        run(&s);
        n += 1;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap_or_default();
            run(&data);
            n += 1;
        }
    }
    println!("{target}: {n} inputs replayed");
    assert!(n > 0);
}

#[test]
fn pipeline_corpus() {
    replay("pipeline", vipd_fuzz::pipeline::run);
}

#[test]
fn wire_corpus() {
    replay("wire", vipd_fuzz::wire::run);
}

#[test]
fn rewrites_corpus() {
    replay("rewrites", vipd_fuzz::rewrites::run);
}
