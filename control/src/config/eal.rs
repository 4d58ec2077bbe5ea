//! The validator's part for `[eal]`: a file prefix that can name files and directories, and no
//! EAL argument in `extra_args` that would undo what vipd sets itself.

use super::model::EalConfig;
use super::validate::Invalid;

/// Longest `eal.file_prefix`: DPDK puts it into Unix socket paths (108 bytes with
/// `/var/run/dpdk/<prefix>/mp_socket_<pid>_<tsc>`).
pub const MAX_FILE_PREFIX: usize = 32;

/// EAL options vipd derives from other keys, and the key to set instead.
const OWN_OPTIONS: &[(&str, &str)] = &[
    ("--file-prefix", "eal.file_prefix"),
    ("--proc-type", "nothing: vipd is always the primary"),
    ("--in-memory", "eal.hugepages = false"),
    ("--no-shconf", "eal.hugepages = false"),
    ("--no-huge", "eal.hugepages = false"),
    ("-l", "dataplane.worker_cores and dataplane.control_core"),
    ("-c", "dataplane.worker_cores and dataplane.control_core"),
    (
        "--lcores",
        "dataplane.worker_cores and dataplane.control_core",
    ),
    ("--main-lcore", "dataplane.control_core"),
];

fn invalid(key: &str, message: String) -> Invalid {
    Invalid {
        key: key.into(),
        message,
    }
}

/// Check `[eal]`.
pub fn check(e: &EalConfig) -> Result<(), Invalid> {
    let p = &e.file_prefix;
    let good_chars = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if p.is_empty() || p.len() > MAX_FILE_PREFIX || !good_chars || p.starts_with(['.', '-']) {
        return Err(invalid(
            "eal.file_prefix",
            format!(
                "{p:?}: 1 to {MAX_FILE_PREFIX} letters, digits, '-', '_' or '.', not starting with '.' or '-' (it names /var/run/dpdk/<prefix>/ and the hugepage files)"
            ),
        ));
    }
    for (i, arg) in e.extra_args.iter().enumerate() {
        let option = arg.split('=').next().unwrap_or(arg);
        if let Some((_, instead)) = OWN_OPTIONS.iter().find(|(o, _)| *o == option) {
            return Err(invalid(
                &format!("eal.extra_args[{i}]"),
                format!("{option} is set by vipd; set {instead} instead"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eal(prefix: &str, extra: &[&str]) -> EalConfig {
        EalConfig {
            file_prefix: prefix.into(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ..EalConfig::default()
        }
    }

    #[test]
    fn prefixes_that_name_files() {
        for good in ["vipd", "vipd-lb2", "lb_1.a", "A9"] {
            assert_eq!(check(&eal(good, &[])), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "-x",
            "with space",
            &"x".repeat(33),
        ] {
            let e = check(&eal(bad, &[]))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.key, "eal.file_prefix");
        }
    }

    #[test]
    fn extra_args_may_not_undo_what_vipd_sets() {
        assert_eq!(
            check(&eal("vipd", &["--log-level", "pmd.net.af_packet:8"])),
            Ok(())
        );
        let e = check(&eal("vipd", &["--log-level=8", "--in-memory"]))
            .err()
            .unwrap_or_else(|| panic!("--in-memory accepted"));
        assert_eq!(e.key, "eal.extra_args[1]");
        assert!(e.message.contains("eal.hugepages = false"), "{}", e.message);
        let e = check(&eal("vipd", &["--file-prefix=other"]))
            .err()
            .unwrap_or_else(|| panic!("--file-prefix accepted"));
        assert!(e.message.contains("set eal.file_prefix"), "{}", e.message);
    }
}
