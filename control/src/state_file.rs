//! The operator's state that must survive a restart (a crash, the watchdog, `systemctl
//! restart`): the box drain, the API changes not saved to the configuration file (drains with
//! weight 0 among them), and which real servers were down by their health checks. Kept in one
//! JSON file (`[state] file`, default /var/lib/vipd/state.json), rewritten whole on every
//! change and atomically: a temporary file beside it, written and fsynced, renamed over the
//! old one, the directory fsynced. A crash at any moment leaves either the old state or the
//! new one, never a mix.
//!
//! At start (`daemon::restore`): the box drain and the down real servers apply as kept; the
//! running configuration kept applies only if the configuration file is still the one it was
//! derived from (same digest): a file changed since wins, as a reload would (the unsaved
//! changes are logged as dropped). The file also answers `vipd --check FILE --against-running`
//! (the running configuration of the daemon that wrote it).
//!
//! Two threads write: the control loop (API changes, reloads, health transitions) and the
//! scale-out thread (box drain); [`StateFile`] serialises them and answers only once the
//! change is on disk, so an operator's command that returned is kept.

use crate::backend_slots::RsIdentity;
use crate::config::{Config, Proto, ServiceKey};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The file format's version (a file of another version is refused, not guessed at).
pub const VERSION: u32 = 1;
/// Largest state file read (a configuration of 1 MiB plus the rest).
const MAX_BYTES: u64 = 4 << 20;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading failed.
    #[error("state file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a state file vipd can use.
    #[error("state file {}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing (the temporary file, fsync, rename, the directory's fsync) failed.
    #[error("state file {}: cannot write it: {step}: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// Which step failed.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// A real server, as kept in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RealServerRef {
    /// The service's VIP.
    pub vip: IpAddr,
    /// The service's protocol.
    pub proto: Proto,
    /// The service's port.
    pub port: u16,
    /// The real server's address.
    pub ip: IpAddr,
    /// The real server's port.
    pub rs_port: u16,
}

impl From<&RsIdentity> for RealServerRef {
    fn from(&(key, ip, rs_port): &RsIdentity) -> Self {
        RealServerRef {
            vip: key.vip,
            proto: key.proto,
            port: key.port,
            ip,
            rs_port,
        }
    }
}

impl RealServerRef {
    /// The identity the control plane uses.
    pub fn identity(&self) -> RsIdentity {
        let key = ServiceKey {
            vip: self.vip,
            proto: self.proto,
            port: self.port,
        };
        (key, self.ip, self.rs_port)
    }
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`VERSION`].
    pub version: u32,
    /// The process that wrote it last.
    pub pid: u32,
    /// When (Unix milliseconds).
    pub written_unix_ms: u64,
    /// The configuration file the running configuration comes from.
    pub config_file: PathBuf,
    /// [`digest`] of that file's contents when it was read.
    pub config_digest: String,
    /// The running configuration: the file's plus `unsaved_changes` API changes.
    pub running: Config,
    /// API changes since the file was read.
    pub unsaved_changes: u64,
    /// The box's maintenance switch (`vipctl drain --box`).
    pub box_drained: bool,
    /// Real servers down by their health checks (sorted).
    pub down: Vec<RealServerRef>,
}

/// The digest of a configuration file's contents (xxh3-128, hex): tells the file the state
/// was derived from from an edited one. Not a security measure.
pub fn digest(contents: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(contents))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Read the state file: `Ok(None)` when there is none (a first start).
pub fn read(path: &Path) -> Result<Option<State>, StateError> {
    let read_err = |source| StateError::Read {
        file: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let invalid = |message: String| StateError::Invalid {
        file: path.to_owned(),
        message,
    };
    if meta.len() > MAX_BYTES {
        return Err(invalid(format!(
            "{} bytes is larger than the {MAX_BYTES} vipd reads",
            meta.len()
        )));
    }
    let text = std::fs::read(path).map_err(read_err)?;
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(&text)
        .map_err(|e| invalid(format!("not a vipd state file: {e}")))?;
    if v.version != VERSION {
        return Err(invalid(format!(
            "version {} (this vipd reads version {VERSION})",
            v.version
        )));
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// Write `bytes` to `path` atomically: `path.tmp` written and fsynced, renamed over `path`,
/// the directory fsynced so the rename itself is durable.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let fail = |step: &'static str| {
        move |source| StateError::Write {
            file: path.to_owned(),
            step,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(fail("create the temporary file"))?;
        f.write_all(bytes).map_err(fail("write"))?;
        f.sync_all().map_err(fail("fsync"))?;
    }
    std::fs::rename(&tmp, path).map_err(fail("rename"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync of the directory"))?;
    Ok(())
}

/// The state file of the running daemon: the state in memory, written on every change.
pub struct StateFile {
    path: PathBuf,
    state: Mutex<State>,
    failures: AtomicU64,
}

impl StateFile {
    /// The state file at `path`, holding `state` (written by the first [`StateFile::update`]).
    pub fn new(path: PathBuf, state: State) -> StateFile {
        StateFile {
            path,
            state: Mutex::new(state),
            failures: AtomicU64::new(0),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Change the state with `edit` and write it, when it changed (or `force`); returns once
    /// it is on disk. A failed write is logged, counted, and leaves the state in memory
    /// changed (the next write carries it).
    pub fn update(&self, force: bool, edit: impl FnOnce(&mut State)) -> Result<(), StateError> {
        let Ok(mut st) = self.state.lock() else {
            return Err(StateError::Invalid {
                file: self.path.clone(),
                message: "a writer panicked".into(),
            });
        };
        let before = st.clone();
        edit(&mut st);
        if !force && *st == before {
            return Ok(());
        }
        st.pid = std::process::id();
        st.written_unix_ms = now_ms();
        let mut bytes = serde_json::to_vec_pretty(&*st).map_err(|e| StateError::Invalid {
            file: self.path.clone(),
            message: format!("cannot encode: {e}"),
        })?;
        bytes.push(b'\n');
        let r = write_atomically(&self.path, &bytes);
        if let Err(e) = &r {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("{e}: what changed is lost if vipd restarts before the next write");
        }
        r
    }

    /// Writes that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A copy of the state.
    pub fn get(&self) -> Option<State> {
        self.state.lock().ok().map(|s| s.clone())
    }
}

/// The down real servers as the file keeps them: sorted, so an unchanged set writes nothing.
pub fn down_list<'a>(down: impl Iterator<Item = &'a RsIdentity>) -> Vec<RealServerRef> {
    let mut v: Vec<RealServerRef> = down.map(RealServerRef::from).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let (running, _) = Config::parse(
            r#"
[dataplane]
worker_cores = [1]
[[ports]]
name = "lan"
device = "net_null0"
ipv4 = "10.77.0.10/24"
[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
alpha = true
health_check = { type = "http", path = "/health", interval = 1.5 }
[[services.real_servers]]
ip = "10.77.0.21"
weight = 0
"#,
            Path::new("vipd.toml"),
        )
        .unwrap();
        State {
            version: VERSION,
            pid: 0,
            written_unix_ms: 0,
            config_file: "/etc/vipd/vipd.toml".into(),
            config_digest: digest(b"x"),
            running,
            unsaved_changes: 2,
            box_drained: true,
            down: vec![RealServerRef {
                vip: "10.77.100.1".parse().unwrap(),
                proto: Proto::Tcp,
                port: 80,
                ip: "10.77.0.22".parse().unwrap(),
                rs_port: 80,
            }],
        }
    }

    #[test]
    fn the_state_round_trips_through_the_file_and_unchanged_state_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read(&path).unwrap().is_none(), "no file: a first start");
        let f = StateFile::new(path.clone(), sample());
        f.update(true, |_| {}).unwrap();
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.pid, std::process::id());
        assert_eq!(
            State {
                pid: 0,
                written_unix_ms: 0,
                ..back.clone()
            },
            sample(),
            "every field, the configuration included, survives"
        );
        // No change: nothing written (the file is left alone).
        std::fs::remove_file(&path).unwrap();
        f.update(false, |s| s.box_drained = true).unwrap();
        assert!(!path.exists());
        f.update(false, |s| s.box_drained = false).unwrap();
        assert!(!read(&path).unwrap().unwrap().box_drained);
        assert!(
            !dir.path().join("state.json.tmp").exists(),
            "the temporary file was renamed"
        );
    }

    #[test]
    fn a_write_that_cannot_happen_keeps_the_old_file_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let f = StateFile::new(path.clone(), sample());
        f.update(true, |_| {}).unwrap();
        // The temporary file's name taken by a directory: creating it fails.
        std::fs::create_dir(dir.path().join("state.json.tmp")).unwrap();
        let e = f.update(false, |s| s.unsaved_changes = 9).unwrap_err();
        assert!(e.to_string().contains("create the temporary file"), "{e}");
        assert_eq!(f.failures(), 1);
        assert_eq!(
            read(&path).unwrap().unwrap().unsaved_changes,
            2,
            "old state intact"
        );
    }

    #[test]
    fn files_that_are_not_state_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for (text, why) in [
            ("{", "not a vipd state file"),
            (r#"{"version": 7}"#, "version 7 (this vipd reads version 1)"),
            (r#"{"version": 1}"#, "missing field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("state.json"), "{text}: {e}");
        }
    }
}
