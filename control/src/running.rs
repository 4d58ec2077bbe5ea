//! The running configuration: what vipd forwards by right now, with its validation, the real
//! servers' slots and health, and the generation of the last published snapshot. Every change
//! (reload, API, health transition, neighbour learned) goes through here and either yields the
//! next snapshot or changes nothing.

use crate::backend_slots::{BackendSlots, RsIdentity};
use crate::config::{CheckSpec, Config, Valid};
use crate::health::Target;
use crate::snapshot_build::{self, Applied, Inputs};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use vipd_dataplane::wire::MacAddr;

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
    /// Generation of the last snapshot built.
    pub generation: u64,
    /// API changes since the file was last read (lost on SIGHUP unless saved).
    pub unsaved_changes: u64,
}

impl Running {
    /// The first snapshot for `config`.
    pub fn start(
        path: PathBuf,
        config: Config,
        valid: Valid,
        env: &Env,
    ) -> Result<(Running, Applied), String> {
        let slots = BackendSlots::new(config.dataplane.max_real_servers);
        let mut running = Running {
            path,
            config,
            valid,
            slots,
            slot_ids: Vec::new(),
            down: HashSet::new(),
            generation: 0,
            unsaved_changes: 0,
        };
        let (config, valid) = (running.config.clone(), running.valid.clone());
        let applied = running.replace(config, valid, env)?;
        Ok((running, applied))
    }

    /// Put `config` (validated as `valid`) in force: the next snapshot, or an error and no
    /// change at all.
    pub fn replace(&mut self, config: Config, valid: Valid, env: &Env) -> Result<Applied, String> {
        let generation = self.generation + 1;
        let mut slots = self.slots.clone();
        let slot_ids = slots.assign(&valid.services, generation)?;
        // Health state survives for real servers that keep a check; the rest start up.
        let checked: HashSet<RsIdentity> =
            targets_of(&valid).into_iter().map(|(id, _)| id).collect();
        let down: HashSet<RsIdentity> = self.down.intersection(&checked).copied().collect();
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
        self.config = config;
        self.valid = valid;
        self.generation = generation;
        Ok(applied)
    }

    /// The next snapshot of the same configuration (a neighbour or health change).
    pub fn rebuild(&mut self, env: &Env) -> Result<Applied, String> {
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
            self.down.remove(id)
        } else {
            self.down.insert(*id)
        }
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
