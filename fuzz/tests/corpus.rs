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

/// The harness's own checksum fixer must produce right checksums (a broken one would make
/// mutated frames stop at vipd's checksum checks and the fuzzer reach nothing behind them).
#[test]
fn checksum_fixer_is_right() {
    use vipd_fuzz::fixture::{fix_checksums, template, TEMPLATES};
    use vipd_fuzz::oracle::l4_checksum_ok;
    for t in 0..TEMPLATES {
        let mut f = template(t, 1234, 12);
        let before = l4_checksum_ok(&f);
        // Break both checksums, then fix them.
        if f.len() > 26 && f[12..14] == [8, 0] {
            f[24] ^= 0xff;
        }
        if before == Some(true) {
            let last = f.len() - 1;
            f[last] ^= 0x5a; // the transport checksum covers the payload
            assert_eq!(l4_checksum_ok(&f), Some(false));
        }
        fix_checksums(&mut f, true, true);
        if f[12..14] == [8, 0] {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let ok = etherparse::checksum::Sum16BitWords::new()
                .add_slice(&f[14..14 + ihl])
                .ones_complement()
                == 0;
            assert!(ok, "template {t}: IPv4 header checksum after the fix");
        }
        assert_eq!(
            l4_checksum_ok(&f),
            before,
            "template {t}: transport checksum after the fix"
        );
    }
}
