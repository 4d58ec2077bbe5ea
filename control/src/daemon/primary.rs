//! vipd as a DPDK primary process on its host: what must be there before the EAL starts
//! (a hugetlbfs mount, free hugepages, a file prefix no other primary holds), what it leaves
//! behind at stop (hugepage files), and the command an operator gives to capture.
//!
//! A primary keeps its state in two places named by `eal.file_prefix`: the runtime directory
//! (`/var/run/dpdk/<prefix>/`: `config` locked by the running primary, `mp_socket`, the
//! telemetry socket) and its hugepage files (`<hugetlbfs mount>/<prefix>map_<n>`).
//! Secondaries (`dpdk-dumpcap`, `dpdk-pdump`, `dpdk-proc-info`) find both by the same prefix.

use super::eal::device_name;
use crate::config::Config;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The directories hugetlbfs is mounted on (`/proc/mounts`).
pub fn hugetlbfs_mounts() -> Vec<PathBuf> {
    let Ok(mounts) = fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    hugetlbfs_in(&mounts)
}

fn hugetlbfs_in(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            // /proc/mounts escapes spaces and the like as octal (\040).
            (fstype == "hugetlbfs").then(|| PathBuf::from(dir.replace("\\040", " ")))
        })
        .collect()
}

/// Free hugepages of every size, in MiB (`/sys/kernel/mm/hugepages/*/free_hugepages`).
fn free_hugepage_mb() -> u64 {
    let Ok(dir) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let free: u64 = fs::read_to_string(e.path().join("free_hugepages"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(free * kb / 1024)
        })
        .sum()
}

/// The runtime directory DPDK 22.11 uses for `prefix` (`eal_create_runtime_dir`): under
/// `$RUNTIME_DIRECTORY` when set (systemd's `RuntimeDirectory=`: /run/vipd under the unit),
/// else `/var/run` for root, else `$XDG_RUNTIME_DIR` or `/tmp`.
pub fn runtime_dir(prefix: &str) -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let base = match (
        std::env::var_os("RUNTIME_DIRECTORY"),
        std::env::var_os("XDG_RUNTIME_DIR"),
    ) {
        (Some(systemd), _) => PathBuf::from(systemd),
        _ if root => PathBuf::from("/var/run"),
        (None, Some(xdg)) => PathBuf::from(xdg),
        (None, None) => PathBuf::from("/tmp"),
    };
    base.join("dpdk").join(prefix)
}

/// The pid of the process holding the primary's lock on `<runtime dir>/config`, if any.
/// DPDK's primary takes an fcntl write lock on part of that file and holds it while it runs.
fn primary_lock_holder(runtime_dir: &Path) -> Option<i32> {
    let file = File::open(runtime_dir.join("config")).ok()?;
    // SAFETY: flock is plain data; all-zero is a valid value that we fill in below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0; // the whole file
                    // SAFETY: the fd is open for the call's duration and `lock` is a valid flock to fill in.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    (ret == 0 && lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

/// What keeps the host from running vipd as a joinable primary, each named with its fix
/// (DPDK's own messages for these are indirect).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No hugetlbfs mount.
    #[error("eal.hugepages = true: no hugetlbfs is mounted (/proc/mounts): `mount -t hugetlbfs nodev /dev/hugepages` (systemd: dev-hugepages.mount), or set eal.hugepages = false (then dpdk-dumpcap cannot attach)")]
    NoHugetlbfs,
    /// Too few free hugepages.
    #[error("eal.hugepages = true: {free_mb} MiB of hugepages free{}: reserve more (`echo 512 > /proc/sys/vm/nr_hugepages`; the package's unit does it from VIPD_HUGEPAGES in /etc/default/vipd), or set eal.hugepages = false", asked(*.memory_mb))]
    FewHugepages {
        /// MiB free.
        free_mb: u64,
        /// `eal.memory_mb` (0: DPDK's default).
        memory_mb: u32,
    },
    /// Another primary holds the prefix.
    #[error("eal.file_prefix {prefix:?}: another DPDK primary process (pid {pid}) runs with this prefix ({}): give each vipd on a host its own eal.file_prefix", dir.display())]
    PrefixTaken {
        /// `eal.file_prefix`.
        prefix: String,
        /// The other primary.
        pid: libc::pid_t,
        /// Its runtime directory.
        dir: PathBuf,
    },
}

fn asked(memory_mb: u32) -> String {
    if memory_mb > 0 {
        format!(", eal.memory_mb asks for {memory_mb}")
    } else {
        String::new()
    }
}

/// Before the EAL starts as a joinable primary: hugetlbfs mounted, hugepages free, and no
/// other primary on the same file prefix. Nothing is checked for `eal.hugepages = false`.
pub fn check_host(config: &Config) -> Result<(), HostError> {
    let e = &config.eal;
    if !e.hugepages {
        return Ok(());
    }
    if hugetlbfs_mounts().is_empty() {
        return Err(HostError::NoHugetlbfs);
    }
    let free = free_hugepage_mb();
    if free == 0 || u64::from(e.memory_mb) > free {
        return Err(HostError::FewHugepages {
            free_mb: free,
            memory_mb: e.memory_mb,
        });
    }
    let dir = runtime_dir(&e.file_prefix);
    if let Some(pid) = primary_lock_holder(&dir) {
        return Err(HostError::PrefixTaken {
            prefix: e.file_prefix.clone(),
            pid,
            dir,
        });
    }
    Ok(())
}

/// Removes the hugepage files of a prefix when dropped: made as soon as the EAL holds the
/// prefix, so they go on every way out of the daemon, a failed start included.
///
/// A primary's hugepage files outlive it (DPDK removes them only when the next primary with
/// the same prefix starts), and while they exist their pages stay taken. Unlinking them while
/// mapped is safe: this process and a secondary still attached keep their mappings.
pub struct HugepageFiles {
    prefix: String,
}

impl HugepageFiles {
    /// Files of `prefix`, removed on drop.
    pub fn of(prefix: &str) -> Self {
        HugepageFiles {
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for HugepageFiles {
    fn drop(&mut self) {
        let n = remove_hugepage_files(&self.prefix);
        if n > 0 {
            tracing::debug!("removed {n} hugepage file(s) of prefix {}", self.prefix);
        }
    }
}

/// Remove the hugepage files of `prefix` from every hugetlbfs mount; returns how many.
fn remove_hugepage_files(prefix: &str) -> usize {
    let mut removed = 0;
    for dir in hugetlbfs_mounts() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if is_hugepage_file_of(prefix, &entry.file_name().to_string_lossy())
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// `<prefix>map_<n>`: DPDK's name for a primary's hugepage file (one per page, or per memseg
/// list with `--single-file-segments`).
fn is_hugepage_file_of(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("map_"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What the operator runs to capture on each port, or why it cannot be done; logged at start.
pub fn capture_hints(config: &Config) -> Vec<String> {
    let prefix = &config.eal.file_prefix;
    if !config.eal.hugepages {
        return vec![format!(
            "packet capture unavailable: eal.hugepages = false runs DPDK without shared memory, so dpdk-dumpcap/dpdk-pdump cannot attach (dpdk-telemetry.py -f {prefix} works)"
        )];
    }
    // A secondary finds the primary in the same runtime directory: under the unit it is
    // $RUNTIME_DIRECTORY (/run/vipd), which a capture tool run as root must be given too.
    let env = std::env::var("RUNTIME_DIRECTORY")
        .map(|d| format!("RUNTIME_DIRECTORY={d} "))
        .unwrap_or_default();
    config
        .ports
        .iter()
        .map(|p| {
            format!(
                "capture port {}: {env}dpdk-dumpcap --file-prefix {prefix} -i {} -w /tmp/{}.pcapng",
                p.name,
                device_name(&p.device),
                p.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hugetlbfs_mounts_only() {
        let mounts = "proc /proc proc rw 0 0\nnodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\nnone /mnt/huge\\0401g hugetlbfs rw,pagesize=1024M 0 0\ntmpfs /run tmpfs rw 0 0\n";
        assert_eq!(
            hugetlbfs_in(mounts),
            [
                PathBuf::from("/dev/hugepages"),
                PathBuf::from("/mnt/huge 1g")
            ]
        );
        assert!(hugetlbfs_in("").is_empty());
    }

    #[test]
    fn hugepage_files_of_exactly_one_prefix() {
        assert!(is_hugepage_file_of("vipd", "vipdmap_0"));
        assert!(is_hugepage_file_of("vipd", "vipdmap_117"));
        assert!(!is_hugepage_file_of("vipd", "vipd-lb2map_0"));
        assert!(!is_hugepage_file_of("vipd-lb2", "vipdmap_0"));
        assert!(!is_hugepage_file_of("vipd", "vipdmap_"));
        assert!(!is_hugepage_file_of("vipd", "vipdmap_1x"));
        assert!(!is_hugepage_file_of("vipd", "rtemap_0"));
    }

    #[test]
    fn host_errors_name_the_key_and_the_fix() {
        let few = HostError::FewHugepages {
            free_mb: 0,
            memory_mb: 0,
        }
        .to_string();
        assert!(
            few.starts_with("eal.hugepages = true: 0 MiB of hugepages free: reserve more"),
            "{few}"
        );
        let asked = HostError::FewHugepages {
            free_mb: 256,
            memory_mb: 512,
        }
        .to_string();
        assert!(
            asked.contains("256 MiB of hugepages free, eal.memory_mb asks for 512: "),
            "{asked}"
        );
        let taken = HostError::PrefixTaken {
            prefix: "vipd".into(),
            pid: 42,
            dir: PathBuf::from("/run/dpdk/vipd"),
        }
        .to_string();
        assert_eq!(
            taken,
            "eal.file_prefix \"vipd\": another DPDK primary process (pid 42) runs with this prefix (/run/dpdk/vipd): give each vipd on a host its own eal.file_prefix"
        );
    }

    #[test]
    fn no_lock_holder_without_a_primary() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        assert_eq!(primary_lock_holder(dir.path()), None);
        fs::write(dir.path().join("config"), b"x").unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(primary_lock_holder(dir.path()), None);
    }

    #[test]
    fn capture_hints_name_the_prefix_and_device() {
        let mut c = Config::default();
        c.eal.file_prefix = "lb1".into();
        let port = toml::from_str("name = \"lan\"\ndevice = \"net_af_packet0,iface=eth1\"")
            .unwrap_or_else(|e| panic!("port: {e}"));
        c.ports.push(port);
        assert_eq!(
            capture_hints(&c),
            ["capture port lan: dpdk-dumpcap --file-prefix lb1 -i net_af_packet0 -w /tmp/lan.pcapng"]
        );
        c.eal.hugepages = false;
        assert!(capture_hints(&c)[0].contains("eal.hugepages = false"));
    }
}
