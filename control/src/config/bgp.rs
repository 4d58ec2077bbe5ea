//! The validator's part for `[bgp]` (VIP announcement for scale-out), called by
//! [`super::validate::validate`]: refusals for values vipd cannot use, warnings for set-ups
//! that work on one box but break connections once several boxes share the VIPs.

use super::model::{BgpConfig, Config};
use super::validate::{Invalid, ValidService};
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{FwdMode, PortInfo};

/// Longest protocol prefix: bird's symbols are at most 64 bytes and vipd appends up to 40
/// (an exploded IPv6 address).
const MAX_PREFIX_LEN: usize = 16;

fn invalid(key: &str, message: String) -> Invalid {
    Invalid {
        key: format!("bgp.{key}"),
        message,
    }
}

/// Check `[bgp]` (when present) and add its warnings.
pub fn check(
    config: &Config,
    ports: &[PortInfo],
    services: &[ValidService],
    warnings: &mut Vec<String>,
) -> Result<(), Invalid> {
    let Some(bgp) = &config.bgp else {
        return Ok(());
    };
    values(bgp)?;
    if !ports.iter().any(|p| p.kernel) {
        warnings.push(
            "bgp: no port has a kernel_interface, so the BGP daemon's sessions do not run through vipd: if vipd dies, the daemon keeps announcing the VIPs and the router keeps sending to a dead box; set kernel_interface on the port facing the router (docs/scale-out.md)"
                .to_string(),
        );
    }
    let nat: Vec<String> = services
        .iter()
        .filter(|s| s.real_servers.iter().any(|r| r.mode == FwdMode::Nat))
        .map(|s| s.key.to_string())
        .collect();
    if !nat.is_empty() {
        warnings.push(format!(
            "bgp: {} forward(s) in NAT mode: a real server's replies return through the one box that is its gateway, so behind ECMP the connections the router sends to other boxes fail; announce NAT services from one box per real-server segment only, or use DR or TUN for scale-out (docs/scale-out.md)",
            nat.join(", ")
        ));
    }
    let rotating: Vec<String> = services
        .iter()
        // sh is the same table on every box too (by client), stateless paths included.
        .filter(|s| !matches!(s.scheduler, SchedulerKind::Maglev | SchedulerKind::Sh))
        .map(|s| format!("{} ({})", s.key, s.scheduler.as_str()))
        .collect();
    if !rotating.is_empty() {
        warnings.push(format!(
            "bgp: {} do(es) not schedule by maglev: each box then picks its own real server for a connection, so a connection the router moves to another box (a box fails, is drained or added) breaks; use scheduler = \"maglev\" for services announced from several boxes",
            rotating.join(", ")
        ));
    }
    let persistent: Vec<String> = services
        .iter()
        .filter(|s| s.persistence.is_some())
        .map(|s| s.key.to_string())
        .collect();
    if !persistent.is_empty() {
        warnings.push(format!(
            "bgp: {} persistent: each box keeps its own persistence entries and the router spreads a client's connections over the boxes, so a client meets a different real server on each box; for one real server per client across boxes use scheduler = \"sh\" (the same answer on every box, no state)",
            persistent.join(", ")
        ));
    }
    Ok(())
}

fn values(bgp: &BgpConfig) -> Result<(), Invalid> {
    match bgp.daemon.as_str() {
        "bird" => {}
        "gobgp" => {
            return Err(invalid(
                "daemon",
                "gobgp is not supported: vipd drives bird (BIRD 2, which also runs BFD towards the router)".into(),
            ))
        }
        other => {
            return Err(invalid(
                "daemon",
                format!("unknown daemon `{other}` (expected bird)"),
            ))
        }
    }
    for (key, path) in [
        ("socket", &bgp.socket),
        ("protocols_file", &bgp.protocols_file),
    ] {
        if !path.is_absolute() {
            return Err(invalid(
                key,
                format!("`{}` is not an absolute path", path.display()),
            ));
        }
    }
    let file = &bgp.protocols_file;
    if file.is_dir() {
        return Err(invalid(
            "protocols_file",
            format!(
                "`{}` is a directory: name the file bird.conf includes",
                file.display()
            ),
        ));
    }
    if let Some(dir) = file.parent().filter(|d| !d.is_dir()) {
        return Err(invalid(
            "protocols_file",
            format!(
                "directory `{}` does not exist (vipd writes the file, bird includes it)",
                dir.display()
            ),
        ));
    }
    let p = &bgp.protocol_prefix;
    let symbol = p
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !symbol || p.len() > MAX_PREFIX_LEN {
        return Err(invalid(
            "protocol_prefix",
            format!(
                "`{p}` is not a bird name of 1..={MAX_PREFIX_LEN} letters, digits or `_` starting with a letter or `_`"
            ),
        ));
    }
    if !(0.5..=3600.0).contains(&bgp.reconcile_interval) {
        return Err(invalid(
            "reconcile_interval",
            format!(
                "{} is out of range 0.5..=3600 seconds",
                bgp.reconcile_interval
            ),
        ));
    }
    if !(0.0..=60.0).contains(&bgp.withdraw_wait) {
        return Err(invalid(
            "withdraw_wait",
            format!(
                "{} is out of range 0..=60 seconds (vipd keeps forwarding that long after withdrawing, before it stops)",
                bgp.withdraw_wait
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{reload, Config};
    use std::path::Path;

    fn base(mode: &str, scheduler: &str, kernel: bool) -> String {
        format!(
            "[[ports]]\nname = \"lan\"\ndevice = \"net_null0\"\nipv4 = \"10.77.0.11/24\"\n{}\n\
             [[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 80\nmode = \"{mode}\"\nscheduler = \"{scheduler}\"\n\n\
             [[services.real_servers]]\nip = \"10.77.0.21\"\n",
            if kernel { "kernel_interface = \"lan0\"\n" } else { "" }
        )
    }

    fn with_bgp(
        text: &str,
        keys: &str,
    ) -> Result<(Config, crate::config::Valid), crate::config::ConfigError> {
        let dir = std::env::temp_dir();
        Config::parse(
            &format!(
                "{text}\n[bgp]\nprotocols_file = \"{}/vipd-vips-test.conf\"\n{keys}",
                dir.display()
            ),
            Path::new("vipd.toml"),
        )
    }

    #[test]
    fn defaults_and_a_clean_scale_out_set_up() {
        let (c, v) = with_bgp(&base("dr", "maglev", true), "").unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.daemon, "bird");
        assert_eq!(b.socket, Path::new("/run/bird/bird.ctl"));
        assert_eq!(b.protocol_prefix, "vipd");
        assert_eq!((b.reconcile_interval, b.withdraw_wait), (5.0, 1.0));
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        let (c, _) = Config::parse(&base("nat", "rr", false), Path::new("vipd.toml")).unwrap();
        assert!(c.bgp.is_none());
    }

    #[test]
    fn a_warning_for_persistence_behind_ecmp() {
        let text = base("dr", "maglev", true).replace(
            "scheduler = \"maglev\"\n",
            "scheduler = \"maglev\"\npersistence_timeout = 300\n",
        );
        let (_, v) = with_bgp(&text, "").unwrap();
        let w = v.warnings.join("\n");
        assert!(
            w.contains("tcp 10.77.100.1:80 persistent") && w.contains("\"sh\""),
            "{w}"
        );
    }

    #[test]
    fn warnings_for_nat_rotating_schedulers_and_no_kernel_interface() {
        let (_, v) = with_bgp(&base("nat", "wrr", false), "").unwrap();
        let w = v.warnings.join("\n");
        assert!(
            w.contains("tcp 10.77.100.1:80 forward(s) in NAT mode"),
            "{w}"
        );
        assert!(
            w.contains("tcp 10.77.100.1:80 (wrr) do(es) not schedule by maglev"),
            "{w}"
        );
        assert!(w.contains("no port has a kernel_interface"), "{w}");
        // Without [bgp], NAT and wrr are a one-box set-up: nothing to warn about.
        let (_, v) = Config::parse(&base("nat", "wrr", true), Path::new("vipd.toml")).unwrap();
        assert!(
            v.warnings.iter().all(|w| !w.starts_with("bgp")),
            "{:?}",
            v.warnings
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let text = base("dr", "maglev", true);
        for (keys, want) in [
            ("daemon = \"gobgp\"", "bgp.daemon: gobgp is not supported"),
            ("daemon = \"exabgp\"", "bgp.daemon: unknown daemon `exabgp`"),
            (
                "socket = \"bird.ctl\"",
                "bgp.socket: `bird.ctl` is not an absolute path",
            ),
            (
                "protocol_prefix = \"9vipd\"",
                "bgp.protocol_prefix: `9vipd` is not a bird name",
            ),
            (
                "protocol_prefix = \"vi-pd\"",
                "bgp.protocol_prefix: `vi-pd`",
            ),
            ("protocol_prefix = \"\"", "bgp.protocol_prefix: `` is not"),
            (
                "reconcile_interval = 0.1",
                "bgp.reconcile_interval: 0.1 is out of range",
            ),
            (
                "reconcile_interval = nan",
                "bgp.reconcile_interval: NaN is out of range",
            ),
            (
                "withdraw_wait = -1.0",
                "bgp.withdraw_wait: -1 is out of range",
            ),
            (
                "withdraw_wait = 61",
                "bgp.withdraw_wait: 61 is out of range",
            ),
            ("neighbor = \"10.77.0.1\"", "unknown field `neighbor`"),
        ] {
            let e = with_bgp(&text, keys).unwrap_err().to_string();
            assert!(e.contains(want), "{keys}: {e}");
        }
        let e = Config::parse(
            &format!("{text}\n[bgp]\nprotocols_file = \"/nonexistent-vipd-dir/vips.conf\"\n"),
            Path::new("vipd.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bgp.protocols_file: directory `/nonexistent-vipd-dir` does not exist"),
            "{e}"
        );
        let e = Config::parse(
            &format!("{text}\n[bgp]\nprotocols_file = \"/tmp\"\n"),
            Path::new("vipd.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bgp.protocols_file: `/tmp` is a directory"),
            "{e}"
        );
    }

    #[test]
    fn bgp_keys_need_a_restart() {
        let text = base("dr", "maglev", true);
        let (a, _) = with_bgp(&text, "").unwrap();
        let (b, _) = with_bgp(&text, "withdraw_wait = 2.5").unwrap();
        assert_eq!(
            reload::restart_only_changes(&a, &b),
            ["bgp.withdraw_wait (1 -> 2.5)"]
        );
        let (none, _) = Config::parse(&text, Path::new("vipd.toml")).unwrap();
        assert_eq!(
            reload::restart_only_changes(&none, &a),
            ["[bgp] (absent -> present)"]
        );
    }

    #[test]
    fn save_round_trip_keeps_bgp() {
        let (a, _) = with_bgp(&base("dr", "maglev", true), "withdraw_wait = 0.5").unwrap();
        let (b, _) = Config::parse(&a.to_toml().unwrap(), Path::new("saved.toml")).unwrap();
        assert_eq!(a.bgp, b.bgp);
    }
}
