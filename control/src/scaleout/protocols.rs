//! The bird protocols vipd owns: one `protocol static` per VIP holding the VIP's host route,
//! enabled while vipd announces the VIP. vipd writes them to a file that bird.conf includes,
//! with each protocol's `disabled` flag as vipd wants it at that moment: bird's `configure`
//! (vipd's own, an operator's, bird's start) resets a protocol to its file state, so the
//! file must always say what vipd last asked for.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The protocol name of `vip`: `PREFIX_10_77_100_1`, or the eight groups of an IPv6 address
/// in full (`PREFIX_fd00_0077_0100_0000_0000_0000_0000_0001`), so no two VIPs share a name.
pub fn name(prefix: &str, vip: &IpAddr) -> String {
    match vip {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{prefix}_{a}_{b}_{c}_{d}")
        }
        IpAddr::V6(a) => {
            let groups: Vec<String> = a.segments().iter().map(|g| format!("{g:04x}")).collect();
            format!("{prefix}_{}", groups.join("_"))
        }
    }
}

/// The file's text: every VIP of `vips` with its announcement state.
pub fn file_text(prefix: &str, vips: &[(IpAddr, bool)]) -> String {
    let mut out = String::from(
        "# Written by vipd: one protocol per VIP, enabled while vipd announces the VIP\n\
         # (docs/scale-out.md). bird.conf includes this file; vipd rewrites it on every change\n\
         # and owns these protocols: do not edit, and export them to BGP by name\n",
    );
    out.push_str(&format!(
        "# (e.g. `export where proto ~ \"{prefix}_*\";`).\n"
    ));
    for (vip, announce) in vips {
        let (channel, len) = match vip {
            IpAddr::V4(_) => ("ipv4", 32),
            IpAddr::V6(_) => ("ipv6", 128),
        };
        out.push_str(&format!(
            "\nprotocol static {} {{\n\t{channel};\n\tdisabled {};\n\troute {vip}/{len} blackhole;\n}}\n",
            name(prefix, vip),
            if *announce { "no" } else { "yes" }
        ));
    }
    out
}

/// Replace `path` with `text` atomically (a reader sees the old file or the new one, never a
/// part).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map_or_else(|| "vipd-vips".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    // bird reads it as its own user; vipd's umask (0027 in its unit) would hide it.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bird_symbols_and_distinct() {
        let v4: IpAddr = "10.77.100.1".parse().unwrap();
        let v6: IpAddr = "fd00:77:100::1".parse().unwrap();
        assert_eq!(name("vipd", &v4), "vipd_10_77_100_1");
        assert_eq!(
            name("vipd", &v6),
            "vipd_fd00_0077_0100_0000_0000_0000_0000_0001"
        );
        let mapped: IpAddr = "::ffff:10.77.100.1".parse().unwrap();
        assert_ne!(name("vipd", &mapped), name("vipd", &v4));
        for n in [name("vipd", &v4), name("x_1234567890abcde", &v6)] {
            assert!(n.len() <= 64, "{n}");
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }

    #[test]
    fn file_says_what_vipd_wants() {
        let text = file_text(
            "vipd",
            &[
                ("10.77.100.1".parse().unwrap(), true),
                ("fd00:77:100::1".parse().unwrap(), false),
            ],
        );
        assert!(text.contains(
            "protocol static vipd_10_77_100_1 {\n\tipv4;\n\tdisabled no;\n\troute 10.77.100.1/32 blackhole;\n}"
        ));
        assert!(text.contains("\tipv6;\n\tdisabled yes;\n\troute fd00:77:100::1/128 blackhole;"));
        assert!(text
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('#')
                || l.starts_with("protocol static ")
                || l.starts_with('\t')
                || l == "}"));
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vips.conf");
        write_atomically(&p, "one").unwrap();
        write_atomically(&p, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "bird, another user, must read it");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
