//! Brings bird to what vipd wants: each VIP's protocol enabled (announced) or disabled
//! (withdrawn), in an order that never announces early: withdrawals first, then the file
//! rewritten with the new flags (and `configure` when the set of VIPs changed), then the
//! announcements. Commands are idempotent, so after a reconnect or at each reconcile vipd
//! simply says everything again.

use super::bird::{self, Bird, BirdError};
use super::protocols;
use crate::config::BgpConfig;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one exchange with bird may take.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before reconnecting to a bird that did not answer.
const RETRY: Duration = Duration::from_secs(1);
/// Wait before asking a bird whose configuration did not load to reload it again.
const CONFIGURE_RETRY: Duration = Duration::from_secs(5);

/// Why bird does not hold what vipd wants (yet). Cloned: the same error answers every drain
/// waiting, and is the answer again until a retry is due.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// bird refused its configuration before; announcements wait for the next `configure`.
    #[error("waiting to reload bird's configuration")]
    ConfigureWait,
    /// bird did not answer before; the next connection is not due yet.
    #[error("bird not reachable")]
    Unreachable,
    /// The control socket cannot be reached.
    #[error("cannot reach bird at {}: {source}{hint}", socket.display())]
    Connect {
        /// bird's control socket.
        socket: PathBuf,
        /// Why.
        source: Arc<BirdError>,
        /// What to check, when the error says.
        hint: &'static str,
    },
    /// The protocols file cannot be written.
    #[error("cannot write {}: {source}", file.display())]
    Write {
        /// `bgp.protocols_file`.
        file: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// A command failed.
    #[error("{command}: {source}")]
    Command {
        /// The command, e.g. `enable vipd_10_0_0_1`.
        command: String,
        /// Why.
        source: Arc<BirdError>,
    },
    /// bird has no protocol for a VIP to announce.
    #[error("bird has no protocol {name}: does bird.conf include \"{}\"?", file.display())]
    NoProtocol {
        /// The protocol.
        name: String,
        /// `bgp.protocols_file`.
        file: PathBuf,
    },
    /// bird refused to load its configuration.
    #[error("bird refused to reload its configuration ({code} {text}): vipd can still withdraw, but not add VIPs, until bird.conf loads")]
    ConfigureRefused {
        /// bird's reply code.
        code: u16,
        /// bird's message.
        text: String,
    },
}

/// The driver's state, for the API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriverStatus {
    /// Connected to the control socket.
    pub connected: bool,
    /// bird's version, once connected.
    pub version: String,
    /// The last error (None once a later sync succeeded).
    pub last_error: Option<String>,
    /// Commands sent.
    pub commands: u64,
    /// Commands or connections that failed.
    pub errors: u64,
}

/// Drives one bird through its control socket.
pub struct BirdDriver {
    cfg: BgpConfig,
    conn: Option<Bird>,
    retry_at: Option<Instant>,
    /// bird.conf did not load, or lacks vipd's protocols: announcements wait until then.
    configure_at: Option<Instant>,
    /// Each VIP's protocol state in bird as vipd last set it (absent: unknown).
    told: BTreeMap<IpAddr, bool>,
    /// What the file says now (None: not written by this vipd yet).
    written: Option<BTreeMap<IpAddr, bool>>,
    /// The VIPs of the file bird last loaded on vipd's `configure` (None: not yet).
    loaded: Option<BTreeSet<IpAddr>>,
    /// The last error (None once a sync succeeded): the answer while a retry is not due.
    last: Option<SyncError>,
    /// For the API.
    pub status: DriverStatus,
}

impl BirdDriver {
    /// A driver for `cfg` (nothing is sent before the first [`BirdDriver::sync`]).
    pub fn new(cfg: BgpConfig) -> Self {
        BirdDriver {
            cfg,
            conn: None,
            retry_at: None,
            configure_at: None,
            told: BTreeMap::new(),
            written: None,
            loaded: None,
            last: None,
            status: DriverStatus::default(),
        }
    }

    /// The configuration it drives by.
    pub fn config(&self) -> &BgpConfig {
        &self.cfg
    }

    /// The protocol name of `vip`.
    pub fn protocol(&self, vip: &IpAddr) -> String {
        protocols::name(&self.cfg.protocol_prefix, vip)
    }

    /// Forget what bird holds: the next sync says everything again (reconcile).
    pub fn forget(&mut self) {
        self.told.clear();
    }

    /// What bird holds for `vip`, as far as vipd knows.
    pub fn told(&self, vip: &IpAddr) -> Option<bool> {
        self.told.get(vip).copied()
    }

    /// Bring bird to `want` (VIP -> announce). Ok once bird holds exactly that.
    pub fn sync(&mut self, want: &BTreeMap<IpAddr, bool>, now: Instant) -> Result<(), SyncError> {
        let r = self.try_sync(want, now);
        match &r {
            Ok(()) => {
                self.status.last_error = None;
                self.last = None;
            }
            Err(e) => {
                let text = e.to_string();
                if self.status.last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!("bgp: {text}");
                }
                self.status.last_error = Some(text);
                self.last = Some(e.clone());
            }
        }
        r
    }

    fn try_sync(&mut self, want: &BTreeMap<IpAddr, bool>, now: Instant) -> Result<(), SyncError> {
        let holds =
            want.iter().all(|(v, a)| self.told.get(v) == Some(a)) && self.told.len() == want.len();
        let settled = holds
            && self.written.as_ref() == Some(want)
            && self
                .loaded
                .as_ref()
                .is_some_and(|l| l.iter().eq(want.keys()));
        if settled {
            return Ok(());
        }
        let must_withdraw = self
            .told
            .iter()
            .any(|(v, &on)| on && want.get(v) != Some(&true))
            || want
                .iter()
                .any(|(v, &on)| !on && self.told.get(v) != Some(&false));
        if !must_withdraw && self.configure_at.is_some_and(|at| now < at) {
            // bird cannot take announcements right now (see `configure_at`); a withdrawal
            // would still go through at once.
            if holds {
                return Ok(());
            }
            return Err(self.last.clone().unwrap_or(SyncError::ConfigureWait));
        }
        self.connect(now)?;
        if self.told.is_empty() {
            // Just connected, or reconciling: look at what bird holds.
            self.observe(want)?;
        }
        // 1. Withdraw first: what must go goes before anything is rewritten or announced.
        self.withdraw(want)?;
        // 2. The file says what vipd wants; bird loads it when the set of VIPs changed.
        if self.written.as_ref() != Some(want) {
            let list: Vec<(IpAddr, bool)> = want.iter().map(|(v, a)| (*v, *a)).collect();
            let text = protocols::file_text(&self.cfg.protocol_prefix, &list);
            protocols::write_atomically(&self.cfg.protocols_file, &text).map_err(|e| {
                SyncError::Write {
                    file: self.cfg.protocols_file.clone(),
                    source: Arc::new(e),
                }
            })?;
            self.written = Some(want.clone());
        }
        let mut refused = None;
        let stale = !self
            .loaded
            .as_ref()
            .is_some_and(|l| l.iter().eq(want.keys()));
        if stale {
            match self.configure() {
                Ok(()) => {
                    self.configure_at = None;
                    self.loaded = Some(want.keys().copied().collect());
                    // `configure` put every protocol in its file state, which is `want`,
                    // unless bird.conf does not include the file: look.
                    self.observe(want)?;
                    self.withdraw(want)?;
                }
                Err(e) => {
                    // A broken bird.conf is the operator's to fix: ask again now and then,
                    // and meanwhile switch the protocols bird already has.
                    self.configure_at = Some(now + CONFIGURE_RETRY);
                    refused = Some(e);
                }
            }
        }
        self.told.retain(|v, _| want.contains_key(v));
        // 3. Announce.
        for (vip, _) in want.iter().filter(|(_, &on)| on) {
            if self.told.get(vip) != Some(&true) {
                self.switch(vip, true)?;
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Withdraw what is announced and must not be.
    fn withdraw(&mut self, want: &BTreeMap<IpAddr, bool>) -> Result<(), SyncError> {
        let withdraw: Vec<IpAddr> = self
            .told
            .iter()
            .filter(|(v, &on)| on && want.get(v) != Some(&true))
            .map(|(v, _)| *v)
            .collect();
        for vip in withdraw {
            self.switch(&vip, false)?;
        }
        Ok(())
    }

    /// Learn what bird holds of vipd's protocols. A VIP without its protocol is not
    /// announced: known as withdrawn, and an announcement will find the protocol missing.
    fn observe(&mut self, want: &BTreeMap<IpAddr, bool>) -> Result<(), SyncError> {
        let pattern = format!("show protocols \"{}_*\"", self.cfg.protocol_prefix);
        let states: BTreeMap<String, String> = match self.command(&pattern) {
            Ok(reply) => bird::protocol_states(&reply).into_iter().collect(),
            Err(BirdError::Refused { code: 8003, .. }) => BTreeMap::new(),
            Err(e) => {
                if matches!(e, BirdError::Refused { .. }) {
                    self.status.errors += 1;
                }
                return Err(SyncError::Command {
                    command: pattern,
                    source: Arc::new(e),
                });
            }
        };
        self.told.clear();
        for vip in want.keys() {
            match states.get(&self.protocol(vip)) {
                // A disabled protocol is `down`; an enabled one `up` (or `start` on its way).
                Some(state) => {
                    self.told.insert(*vip, state != "down");
                }
                None => {
                    self.told.insert(*vip, false);
                }
            }
        }
        Ok(())
    }

    fn connect(&mut self, now: Instant) -> Result<(), SyncError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return Err(self.last.clone().unwrap_or(SyncError::Unreachable));
        }
        match Bird::connect(&self.cfg.socket, IO_TIMEOUT) {
            Ok(b) => {
                if !self.status.connected {
                    tracing::info!(
                        "bgp: connected to bird {} at {}",
                        b.version,
                        self.cfg.socket.display()
                    );
                }
                self.status.connected = true;
                self.status.version = b.version.clone();
                self.conn = Some(b);
                self.retry_at = None;
                self.told.clear();
                Ok(())
            }
            Err(e) => {
                self.status.errors += 1;
                self.lost(now);
                let hint = match &e {
                    BirdError::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                        " (the socket belongs to bird's group: run vipd with that group, e.g. SupplementaryGroups=bird in its systemd unit)"
                    }
                    BirdError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                        " (is bird running, with this control socket?)"
                    }
                    _ => "",
                };
                Err(SyncError::Connect {
                    socket: self.cfg.socket.clone(),
                    source: Arc::new(e),
                    hint,
                })
            }
        }
    }

    fn lost(&mut self, now: Instant) {
        self.conn = None;
        self.status.connected = false;
        self.retry_at = Some(now + RETRY);
        self.told.clear();
    }

    fn command(&mut self, command: &str) -> Result<super::bird::Reply, BirdError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(BirdError::Protocol("not connected".into()));
        };
        self.status.commands += 1;
        let r = conn.command(command);
        // A refusal may be an answer (no protocol to withdraw): its caller counts the ones
        // that are errors.
        if let Err(BirdError::Io(_) | BirdError::Protocol(_)) = &r {
            self.status.errors += 1;
            self.lost(Instant::now());
        }
        r
    }

    /// Enable (announce) or disable (withdraw) `vip`'s protocol.
    fn switch(&mut self, vip: &IpAddr, on: bool) -> Result<(), SyncError> {
        let name = self.protocol(vip);
        let verb = if on { "enable" } else { "disable" };
        match self.command(&format!("{verb} \"{name}\"")) {
            Ok(_) => {
                self.told.insert(*vip, on);
                Ok(())
            }
            Err(BirdError::Refused { code: 8003, .. }) if !on => {
                // No such protocol: nothing of it is announced.
                self.told.insert(*vip, false);
                Ok(())
            }
            Err(BirdError::Refused { code: 8003, .. }) => {
                self.status.errors += 1;
                self.loaded = None;
                self.configure_at = Some(Instant::now() + CONFIGURE_RETRY);
                Err(SyncError::NoProtocol {
                    name,
                    file: self.cfg.protocols_file.clone(),
                })
            }
            Err(e) => {
                if matches!(e, BirdError::Refused { .. }) {
                    self.status.errors += 1;
                }
                Err(SyncError::Command {
                    command: format!("{verb} {name}"),
                    source: Arc::new(e),
                })
            }
        }
    }

    fn configure(&mut self) -> Result<(), SyncError> {
        match self.command("configure") {
            Ok(_) => Ok(()),
            Err(BirdError::Refused { code, text, .. }) => {
                self.status.errors += 1;
                Err(SyncError::ConfigureRefused { code, text })
            }
            Err(e) => Err(SyncError::Command {
                command: "configure".into(),
                source: Arc::new(e),
            }),
        }
    }
}
