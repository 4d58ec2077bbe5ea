//! Start-up with the state file ([`crate::state_file`]): what the previous vipd kept (the box
//! drain, the real servers down by their checks, the running configuration when the file it
//! came from is unchanged) decides where this one starts, and the file is rewritten for this
//! process at once.

use crate::backend_slots::RsIdentity;
use crate::config::{self, Config, Valid};
use crate::state_file::{self, State, StateFile};
use std::collections::HashSet;
use std::path::Path;

/// Where vipd starts from.
pub struct Restored {
    /// The configuration to run: the file's, or the one kept with its unsaved API changes.
    pub config: Config,
    /// Its validation.
    pub valid: Valid,
    /// API changes in `config` that are not in the file.
    pub unsaved_changes: u64,
    /// The box's maintenance switch.
    pub box_drained: bool,
    /// Real servers down when the state was written.
    pub down: HashSet<RsIdentity>,
    /// The state file, holding this start's state.
    pub file: StateFile,
}

/// Decide the start from the file's configuration (`config`, valid as `valid`, read from
/// `path`) and what the state file kept. Problems with the state file are logged and cost
/// only what it kept; they never stop vipd.
pub fn restore(path: &Path, config: Config, valid: Valid) -> Restored {
    let digest = std::fs::read(path)
        .map(|b| state_file::digest(&b))
        .unwrap_or_default();
    let state_path = config.state.file.clone();
    let kept = match state_file::read(&state_path) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("{e}; starting from the configuration file alone");
            None
        }
    };
    let mut r = Restored {
        config,
        valid,
        unsaved_changes: 0,
        box_drained: false,
        down: HashSet::new(),
        file: StateFile::new(
            state_path.clone(),
            State {
                version: state_file::VERSION,
                pid: 0,
                written_unix_ms: 0,
                config_file: path.to_owned(),
                config_digest: digest.clone(),
                running: Config::default(),
                unsaved_changes: 0,
                box_drained: false,
                down: Vec::new(),
            },
        ),
    };
    if let Some(k) = kept {
        apply(&mut r, k, path, &digest, &state_path);
    }
    let (running, unsaved, drained) = (r.config.clone(), r.unsaved_changes, r.box_drained);
    let down = state_file::down_list(r.down.iter());
    // Written now: the pid, and the state as this start has it (a refused kept configuration
    // is not kept twice).
    let _ = r.file.update(true, |s| {
        s.running = running;
        s.unsaved_changes = unsaved;
        s.box_drained = drained;
        s.down = down;
    });
    r
}

fn apply(r: &mut Restored, k: State, path: &Path, digest: &str, state_path: &Path) {
    let state = state_path.display();
    r.box_drained = k.box_drained;
    if k.box_drained {
        tracing::warn!(
            "box drained before the restart ({state}): its VIPs stay withdrawn until vipctl resume --box"
        );
    }
    if k.unsaved_changes > 0 {
        if k.config_file != path || k.config_digest != digest {
            tracing::warn!(
                "{} API change(s) not saved before the restart are dropped: {} changed since they were made (the file wins, as on a reload; {state} holds them as `running`)",
                k.unsaved_changes,
                path.display()
            );
        } else {
            match config::validate(&k.running) {
                Ok(valid) => {
                    tracing::info!(
                        "{} API change(s) not saved to {} before the restart are applied again ({state})",
                        k.unsaved_changes,
                        path.display()
                    );
                    r.config = k.running;
                    r.valid = valid;
                    r.unsaved_changes = k.unsaved_changes;
                }
                Err(e) => tracing::error!(
                    "the running configuration kept in {state} is refused ({e}); starting from {}",
                    path.display()
                ),
            }
        }
    }
    let known: HashSet<RsIdentity> = r
        .valid
        .services
        .iter()
        .flat_map(|s| s.real_servers.iter().map(move |x| (s.key, x.ip, x.port)))
        .collect();
    r.down = k
        .down
        .iter()
        .map(|d| d.identity())
        .filter(|id| known.contains(id))
        .collect();
    if !r.down.is_empty() {
        tracing::info!(
            "{} real server(s) down before the restart start down ({state}): rise good checks bring each back",
            r.down.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;

    const FILE: &str = r#"
[dataplane]
worker_cores = [1]
[[ports]]
name = "lan"
device = "net_null0"
ipv4 = "10.77.0.10/24"
[state]
file = "STATE"
[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
health_check = { type = "tcp" }
[[services.real_servers]]
ip = "10.77.0.21"
[[services.real_servers]]
ip = "10.77.0.22"
"#;

    fn id(ip: &str) -> RsIdentity {
        let key = crate::config::ServiceKey {
            vip: "10.77.100.1".parse().unwrap(),
            proto: Proto::Tcp,
            port: 80,
        };
        (key, ip.parse().unwrap(), 80)
    }

    struct Bed {
        _dir: tempfile::TempDir,
        config: std::path::PathBuf,
        state: std::path::PathBuf,
    }

    fn bed() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let config = dir.path().join("vipd.toml");
        std::fs::write(&config, FILE.replace("STATE", &state.display().to_string())).unwrap();
        Bed {
            _dir: dir,
            config,
            state,
        }
    }

    fn start(b: &Bed) -> Restored {
        let (c, v) = Config::load(&b.config).unwrap();
        restore(&b.config, c, v)
    }

    #[test]
    fn drains_unsaved_changes_and_down_servers_survive_a_restart_of_the_same_file() {
        let b = bed();
        let first = start(&b);
        assert!(!first.box_drained && first.unsaved_changes == 0 && first.down.is_empty());
        assert!(b.state.exists(), "written at start");
        // The running daemon: rs2 drained by the API, the box drained, rs1 down.
        let mut running = first.config.clone();
        running.services[0].real_servers[1].weight = 0;
        first
            .file
            .update(false, |s| {
                s.running = running.clone();
                s.unsaved_changes = 1;
                s.box_drained = true;
                s.down = state_file::down_list([id("10.77.0.21")].iter());
            })
            .unwrap();
        drop(first);
        let again = start(&b);
        assert!(again.box_drained);
        assert_eq!(again.unsaved_changes, 1);
        assert_eq!(again.config.services[0].real_servers[1].weight, 0);
        assert_eq!(again.valid.services[0].real_servers[1].weight, 0);
        assert_eq!(again.down, HashSet::from([id("10.77.0.21")]));
        let kept = state_file::read(&b.state).unwrap().unwrap();
        assert_eq!(kept.pid, std::process::id());
        assert!(kept.box_drained && kept.unsaved_changes == 1);
    }

    #[test]
    fn an_edited_file_wins_over_unsaved_changes_but_not_over_the_box_drain() {
        let b = bed();
        let first = start(&b);
        let mut running = first.config.clone();
        running.services[0].real_servers[1].weight = 0;
        first
            .file
            .update(false, |s| {
                s.running = running.clone();
                s.unsaved_changes = 1;
                s.box_drained = true;
                // A real server the edited file no longer has: forgotten.
                s.down = state_file::down_list([id("10.77.0.22")].iter());
            })
            .unwrap();
        drop(first);
        let text = std::fs::read_to_string(&b.config).unwrap();
        std::fs::write(
            &b.config,
            text.replace("[[services.real_servers]]\nip = \"10.77.0.22\"\n", ""),
        )
        .unwrap();
        let again = start(&b);
        assert_eq!(again.unsaved_changes, 0);
        assert_eq!(again.config.services[0].real_servers.len(), 1);
        assert!(
            again.box_drained,
            "the drain is the operator's, not the file's"
        );
        assert!(again.down.is_empty());
    }

    #[test]
    fn a_broken_state_file_costs_only_what_it_kept() {
        let b = bed();
        std::fs::write(&b.state, "{ half a file").unwrap();
        let r = start(&b);
        assert!(!r.box_drained && r.unsaved_changes == 0);
        assert_eq!(r.config.services[0].real_servers.len(), 2);
        assert!(
            state_file::read(&b.state).unwrap().is_some(),
            "rewritten whole"
        );
    }
}
