//! `systemctl reload vipd` must fail when the file is refused, so the unit's `ExecReload` cannot
//! be a bare `kill -HUP` (which succeeds whatever vipd then decides). `vipd --reload` sends
//! SIGHUP to the running vipd and waits for the outcome, which the daemon writes after each
//! SIGHUP reload to `reload.json` in its runtime directory (`$RUNTIME_DIRECTORY`, which systemd
//! sets for both ExecStart and ExecReload from the unit's `RuntimeDirectory=vipd`): its pid, a
//! sequence number, whether the reload was applied and the message. The reloader reads the
//! sequence number, signals, and waits for a larger one from the same pid.
//!
//! A signal and a file rather than the HTTP API: the reloader needs neither the API's address
//! nor its token (both in the configuration file being reloaded, which may not even parse), and
//! the path is the same for every API change to come. Without `$RUNTIME_DIRECTORY` (vipd run by
//! hand) nothing is written; `vipctl reload` reports the outcome through the API there.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file's name in the runtime directory.
pub const FILE: &str = "reload.json";
/// How long `vipd --reload` waits for the outcome.
pub const WAIT: Duration = Duration::from_secs(30);

/// One reload's outcome, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The daemon that reloaded.
    pub pid: u32,
    /// SIGHUP reloads this daemon has done (1 for the first).
    pub seq: u64,
    /// Applied (true) or refused (false).
    pub applied: bool,
    /// `configuration reloaded (generation N)`, or the refusal.
    pub message: String,
}

/// Why `vipd --reload` could not get an outcome.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No pid to signal.
    #[error("no vipd to reload: give --pid PID (systemd passes $MAINPID)")]
    NoPid,
    /// No runtime directory to wait in.
    #[error("no runtime directory: set RUNTIME_DIRECTORY (the unit's RuntimeDirectory=vipd does) or give --runtime-dir; outside systemd use vipctl reload")]
    NoRuntimeDir,
    /// The signal could not be sent.
    #[error("cannot signal vipd (pid {pid}): {source}")]
    Signal {
        /// The pid.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
    /// No outcome in time.
    #[error("vipd (pid {pid}) did not report the reload's outcome in {}/{FILE} within {} s", dir.display(), WAIT.as_secs())]
    Timeout {
        /// The pid.
        pid: i32,
        /// The runtime directory.
        dir: PathBuf,
    },
}

/// The outcome file in `dir`, if it is readable.
pub fn read(dir: &Path) -> Option<Outcome> {
    let text = std::fs::read(dir.join(FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The daemon's side: record a SIGHUP reload's outcome (when it has a runtime directory).
pub struct Recorder {
    dir: Option<PathBuf>,
    seq: u64,
}

impl Recorder {
    /// From `$RUNTIME_DIRECTORY` (the first of its colon-separated paths).
    pub fn from_env() -> Recorder {
        let dir = std::env::var_os("RUNTIME_DIRECTORY")
            .and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .map(PathBuf::from)
            })
            .filter(|p| !p.as_os_str().is_empty());
        Recorder { dir, seq: 0 }
    }

    /// Record one reload.
    pub fn record(&mut self, result: &Result<u64, impl std::fmt::Display>) {
        self.seq += 1;
        let Some(dir) = &self.dir else {
            return;
        };
        let outcome = Outcome {
            pid: std::process::id(),
            seq: self.seq,
            applied: result.is_ok(),
            message: match result {
                Ok(g) => format!("configuration reloaded (generation {g})"),
                Err(e) => format!("reload refused, running configuration kept: {e}"),
            },
        };
        let mut bytes = serde_json::to_vec(&outcome).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(e) = crate::state_file::write_atomically(&dir.join(FILE), &bytes) {
            tracing::warn!("reload outcome for vipd --reload: {e}");
        }
    }
}

/// `vipd --reload`: signal `pid` and wait for its outcome in `dir`.
pub fn request(pid: Option<i32>, dir: Option<PathBuf>) -> Result<Outcome, ReloadError> {
    let pid = pid.filter(|&p| p > 0).ok_or(ReloadError::NoPid)?;
    let dir = dir.ok_or(ReloadError::NoRuntimeDir)?;
    let before = read(&dir)
        .filter(|o| o.pid == pid as u32)
        .map_or(0, |o| o.seq);
    // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ReloadError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(o) = read(&dir).filter(|o| o.pid == pid as u32 && o.seq > before) {
            return Ok(o);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ReloadError::Timeout { pid, dir })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_writes_numbered_outcomes_only_with_a_runtime_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder {
            dir: Some(dir.path().to_owned()),
            seq: 0,
        };
        r.record(&Ok::<u64, String>(7));
        let o = read(dir.path()).unwrap();
        assert_eq!(
            o,
            Outcome {
                pid: std::process::id(),
                seq: 1,
                applied: true,
                message: "configuration reloaded (generation 7)".into()
            }
        );
        r.record(&Err::<u64, String>(
            "services[0].port: 0 is out of range".into(),
        ));
        let o = read(dir.path()).unwrap();
        assert!(
            o.seq == 2 && !o.applied && o.message.contains("services[0].port"),
            "{o:?}"
        );
        let mut none = Recorder { dir: None, seq: 0 };
        none.record(&Ok::<u64, String>(1));
        assert_eq!(none.seq, 1);
    }

    #[test]
    fn a_request_without_pid_or_directory_says_what_is_missing() {
        assert!(matches!(
            request(None, Some("/run".into())),
            Err(ReloadError::NoPid)
        ));
        assert!(matches!(
            request(Some(1), None),
            Err(ReloadError::NoRuntimeDir)
        ));
    }

    #[test]
    fn a_request_signals_and_returns_the_outcome_the_daemon_records_next() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        // This test process plays the daemon: SIGHUP sets the flag, a thread records.
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)).unwrap();
        let mut daemon = Recorder {
            dir: Some(path.clone()),
            seq: 0,
        };
        daemon.record(&Ok::<u64, String>(1)); // an earlier reload: not the answer to this request
        let t = std::thread::spawn(move || {
            while !hup.swap(false, Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            daemon.record(&Err::<u64, String>("bad file".into()));
        });
        let o = request(Some(std::process::id() as i32), Some(path)).unwrap();
        t.join().unwrap();
        assert_eq!((o.seq, o.applied), (2, false), "{o:?}");
        assert!(o.message.ends_with("bad file"));
    }
}
