//! The running configuration: what vipd forwards by right now, with its validation, the real
//! servers' slots and health, and the generation of the last published snapshot. Every change
//! (reload, API, health transition, neighbour learned) goes through here and either yields the
//! next snapshot or changes nothing.

use crate::backend_slots::{BackendSlots, RsIdentity, SlotError};
use crate::config::{CheckSpec, Config, Valid};
use crate::health::Target;
use crate::snapshot_build::{self, Applied, Inputs};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use vipd_dataplane::snapshot::SnapshotError;
use vipd_dataplane::wire::MacAddr;

/// Why a configuration could not be put in force (the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The real servers need more slots than there are.
    #[error(transparent)]
    Slots(#[from] SlotError),
    /// The dataplane could not build the snapshot (a scheduler, a route).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// What a snapshot needs from the running daemon besides the configuration.
pub struct Env<'a> {
    /// The NICs' MACs, by port.
    pub nic_macs: &'a [MacAddr],
    /// Resolved neighbours.
    pub resolved: &'a HashMap<IpAddr, MacAddr>,
}

/// The running configuration.
pub struct Running {
    /// The configuration file (SIGHUP re-reads it).
    pub path: PathBuf,
    /// The configuration in force (the file's, plus API changes since it was read).
    pub config: Config,
    /// Its validation.
    pub valid: Valid,
    slots: BackendSlots,
    slot_ids: Vec<Vec<u32>>,
    down: HashSet<RsIdentity>,
    /// Down by keepalived's `alpha`, not checked good since: up at their first good check.
    alpha_pending: HashSet<RsIdentity>,
    /// Every real server of the configuration in force (a real server not in it is new).
    known: HashSet<RsIdentity>,
    /// Generation of the last snapshot built.
    pub generation: u64,
    /// API changes since the file was last read (lost on SIGHUP unless saved).
    pub unsaved_changes: u64,
}

impl Running {
    /// The first snapshot for `config`, every real server up (or down by `alpha`).
    pub fn start(
        path: PathBuf,
        config: Config,
        valid: Valid,
        env: &Env,
    ) -> Result<(Running, Applied), ApplyError> {
        Running::start_with(path, config, valid, env, HashSet::new())
    }

    /// The first snapshot for `config`, with the real servers of `down` down (as the state
    /// file kept them: they need `rise` good checks), the other checked real servers of
    /// `alpha` services down until their first good check, the rest up.
    pub fn start_with(
        path: PathBuf,
        config: Config,
        valid: Valid,
        env: &Env,
        down: HashSet<RsIdentity>,
    ) -> Result<(Running, Applied), ApplyError> {
        let slots = BackendSlots::new(config.dataplane.max_real_servers);
        let mut running = Running {
            path,
            config,
            valid,
            slots,
            slot_ids: Vec::new(),
            down,
            alpha_pending: HashSet::new(),
            known: HashSet::new(),
            generation: 0,
            unsaved_changes: 0,
        };
        let (config, valid) = (running.config.clone(), running.valid.clone());
        let applied = running.replace(config, valid, env)?;
        Ok((running, applied))
    }

    /// Put `config` (validated as `valid`) in force: the next snapshot, or an error and no
    /// change at all.
    pub fn replace(
        &mut self,
        config: Config,
        valid: Valid,
        env: &Env,
    ) -> Result<Applied, ApplyError> {
        let generation = self.generation + 1;
        let mut slots = self.slots.clone();
        let slot_ids = slots.assign(&valid.services, generation)?;
        // Health state survives for real servers that keep a check; the rest start up, but
        // for new checked ones of `alpha` services: down until their first good check.
        let checked: HashSet<RsIdentity> =
            targets_of(&valid).into_iter().map(|(id, _)| id).collect();
        let new_alpha: HashSet<RsIdentity> = valid
            .services
            .iter()
            .filter(|s| s.alpha)
            .flat_map(|s| {
                s.real_servers
                    .iter()
                    .filter(|r| r.check.is_some())
                    .map(move |r| (s.key, r.ip, r.port))
            })
            .filter(|id| !self.known.contains(id) && !self.down.contains(id))
            .collect();
        let mut down: HashSet<RsIdentity> = self.down.intersection(&checked).copied().collect();
        down.extend(new_alpha.iter().copied());
        let mut alpha_pending: HashSet<RsIdentity> =
            self.alpha_pending.intersection(&down).copied().collect();
        alpha_pending.extend(new_alpha);
        let known = valid
            .services
            .iter()
            .flat_map(|s| s.real_servers.iter().map(move |r| (s.key, r.ip, r.port)))
            .collect();
        let applied = snapshot_build::build(&Inputs {
            config: &config,
            valid: &valid,
            slots: &slot_ids,
            down: &down,
            nic_macs: env.nic_macs,
            resolved: env.resolved,
            generation,
        })?;
        self.slots = slots;
        self.slot_ids = slot_ids;
        self.down = down;
        self.alpha_pending = alpha_pending;
        self.known = known;
        self.config = config;
        self.valid = valid;
        self.generation = generation;
        Ok(applied)
    }

    /// The next snapshot of the same configuration (a neighbour or health change).
    pub fn rebuild(&mut self, env: &Env) -> Result<Applied, ApplyError> {
        let applied = snapshot_build::build(&Inputs {
            config: &self.config,
            valid: &self.valid,
            slots: &self.slot_ids,
            down: &self.down,
            nic_macs: env.nic_macs,
            resolved: env.resolved,
            generation: self.generation + 1,
        })?;
        self.generation += 1;
        Ok(applied)
    }

    /// Record a health verdict; true when it changes what the dataplane must know.
    pub fn set_up(&mut self, id: &RsIdentity, up: bool) -> bool {
        let known = self.valid.services.iter().any(|s| {
            s.key == id.0
                && s.real_servers
                    .iter()
                    .any(|r| r.ip == id.1 && r.port == id.2)
        });
        if !known {
            return false;
        }
        if up {
            self.alpha_pending.remove(id);
            self.down.remove(id)
        } else {
            self.down.insert(*id)
        }
    }

    /// The real servers down by their health checks (or by `alpha`), in no order.
    pub fn down(&self) -> impl Iterator<Item = &RsIdentity> {
        self.down.iter()
    }

    /// Whether a real server is up (health-wise).
    pub fn is_up(&self, id: &RsIdentity) -> bool {
        !self.down.contains(id)
    }

    /// The slot of each real server, in `valid.services` shape.
    pub fn slot_ids(&self) -> &[Vec<u32>] {
        &self.slot_ids
    }

    /// The slot allocator (for reclaiming retired slots).
    pub fn slots_mut(&mut self) -> &mut BackendSlots {
        &mut self.slots
    }

    /// The slot allocator.
    pub fn slots(&self) -> &BackendSlots {
        &self.slots
    }

    /// Every health check to run.
    pub fn targets(&self) -> Vec<(RsIdentity, CheckSpec)> {
        targets_of(&self.valid)
    }

    /// Every health check to run, in the checker's terms (with the state it starts from).
    pub fn check_targets(&self) -> Vec<Target> {
        self.targets()
            .into_iter()
            .map(|(id, spec)| Target {
                up: self.is_up(&id),
                alpha: self.alpha_pending.contains(&id),
                id,
                spec,
            })
            .collect()
    }
}

fn targets_of(valid: &Valid) -> Vec<(RsIdentity, CheckSpec)> {
    valid
        .services
        .iter()
        .flat_map(|s| {
            s.real_servers
                .iter()
                .filter_map(move |r| r.check.as_ref().map(|c| ((s.key, r.ip, r.port), c.clone())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;
    use std::path::Path;

    const ALPHA: &str = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_null0"
ipv4 = "10.77.0.10/24"

[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
alpha = true
health_check = { type = "tcp" }

[[services.real_servers]]
ip = "10.77.0.21"

[[services.real_servers]]
ip = "10.77.0.22"

[[services.real_servers]]
ip = "10.77.0.23"
health_check = { type = "none" }
"#;

    fn id(ip: &str) -> RsIdentity {
        let key = crate::config::ServiceKey {
            vip: "10.77.100.1".parse().unwrap(),
            proto: Proto::Tcp,
            port: 80,
        };
        (key, ip.parse().unwrap(), 80)
    }

    fn start(text: &str, down: HashSet<RsIdentity>) -> Running {
        let (config, valid) = Config::parse(text, Path::new("vipd.toml")).unwrap();
        let env = Env {
            nic_macs: &[MacAddr([2, 0, 0, 0, 0, 1])],
            resolved: &HashMap::new(),
        };
        Running::start_with("vipd.toml".into(), config, valid, &env, down)
            .unwrap()
            .0
    }

    fn target(r: &Running, ip: &str) -> Option<Target> {
        r.check_targets().into_iter().find(|t| t.id == id(ip))
    }

    #[test]
    fn alpha_starts_checked_real_servers_down_until_their_first_good_check() {
        let mut r = start(ALPHA, HashSet::new());
        for ip in ["10.77.0.21", "10.77.0.22"] {
            assert!(!r.is_up(&id(ip)), "{ip} starts down");
            let t = target(&r, ip).unwrap();
            assert!(!t.up && t.alpha, "{t:?}");
        }
        assert!(
            r.is_up(&id("10.77.0.23")),
            "no check: nothing would bring it up"
        );
        assert!(r.set_up(&id("10.77.0.21"), true));
        let t = target(&r, "10.77.0.21").unwrap();
        assert!(t.up && !t.alpha, "up after its first good check: {t:?}");
        // A later failure is an ordinary down (rise good checks), not alpha's.
        assert!(r.set_up(&id("10.77.0.21"), false));
        assert!(!target(&r, "10.77.0.21").unwrap().alpha);
    }

    #[test]
    fn without_alpha_everything_starts_up_but_what_the_state_file_kept_down() {
        let text = ALPHA.replace("alpha = true\n", "");
        let r = start(&text, HashSet::from([id("10.77.0.22"), id("10.77.0.23")]));
        assert!(r.is_up(&id("10.77.0.21")));
        let t = target(&r, "10.77.0.22").unwrap();
        assert!(!t.up && !t.alpha, "kept down: rise good checks, {t:?}");
        assert!(
            r.is_up(&id("10.77.0.23")),
            "no check any more: its kept state does not apply"
        );
        // With alpha, a server the state file kept down is still an ordinary down.
        let r = start(ALPHA, HashSet::from([id("10.77.0.22")]));
        assert!(!target(&r, "10.77.0.22").unwrap().alpha);
        assert!(target(&r, "10.77.0.21").unwrap().alpha);
    }

    #[test]
    fn a_real_server_added_to_an_alpha_service_starts_down_the_others_keep_their_state() {
        let mut r = start(ALPHA, HashSet::new());
        r.set_up(&id("10.77.0.21"), true);
        let text = ALPHA.replace(
            "[[services.real_servers]]\nip = \"10.77.0.23\"",
            "[[services.real_servers]]\nip = \"10.77.0.24\"\n\n[[services.real_servers]]\nip = \"10.77.0.23\"",
        );
        let (config, valid) = Config::parse(&text, Path::new("vipd.toml")).unwrap();
        let env = Env {
            nic_macs: &[MacAddr([2, 0, 0, 0, 0, 1])],
            resolved: &HashMap::new(),
        };
        r.replace(config, valid, &env).unwrap();
        assert!(r.is_up(&id("10.77.0.21")), "kept its state");
        assert!(!r.is_up(&id("10.77.0.22")) && target(&r, "10.77.0.22").unwrap().alpha);
        assert!(!r.is_up(&id("10.77.0.24")) && target(&r, "10.77.0.24").unwrap().alpha);
    }
}
