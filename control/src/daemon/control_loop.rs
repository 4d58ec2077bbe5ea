//! The control loop (EAL main lcore): learns neighbours from the frames the workers hand over,
//! resolves next hops, applies health transitions, reloads and API changes, publishes
//! snapshots, reclaims old snapshots and backend slots once every worker moved past them, and
//! republishes the API's view. It never waits on the network: health checks and API requests
//! run on their own threads and reach it over channels.

use super::learn;
use super::ports::{self, RunningPort};
use super::reload_outcome::Recorder;
use super::views::{self, ControlCounters};
use super::watchdog::{self, Vitals};
use crate::announce::Announcer;
use crate::backend_slots::RsIdentity;
use crate::changes::{self, refusal_of_reload};
use crate::config::{reload, Config, ConfigError, ServiceKey};
use crate::health::{Checker, Target, Transition};
use crate::kernel::counters::KernelCounter;
use crate::kernel::KernelInterfaces;
use crate::neighbours::{arp_request_frame, ns_frame, NeighbourTable};
use crate::running::{ApplyError, Env, Running};
use crate::scaleout::{BoxHandle, StopProgress};
use crate::snapshot_build::Applied;
use crate::state_file::{self, StateFile};
use crate::stats::StatsBook;
use crate::view::{Command, Shared};
use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::io::dpdk::Mempool;
use vipd_dataplane::io::PacketBuf;
use vipd_dataplane::snapshot::{Snapshot, VlanOf};
use vipd_dataplane::wire::{vlan, MacAddr};
use vipd_dataplane::worker::{Parcel, ParcelKind, Rings};

/// Longest wait for a command before the loop does its periodic work.
const TICK: Duration = Duration::from_millis(50);
/// How often the API's view is republished without a change (rates, neighbour ages, links).
const VIEW_PERIOD: Duration = Duration::from_millis(500);
/// How often rates are sampled (ipvsadm's estimator uses 2 s).
const RATE_PERIOD: Duration = Duration::from_secs(2);

/// Why a reload or an API change was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not read or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file changes keys only a restart applies.
    #[error("{}: {} change(s) only with a restart: {}", file.display(), keys.len(), keys.join(", "))]
    RestartOnly {
        /// The configuration file.
        file: PathBuf,
        /// The keys.
        keys: Vec<String>,
    },
    /// The new configuration gives no snapshot.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Everything the control loop owns or borrows.
pub struct Control<'a> {
    /// The running configuration.
    pub running: Running,
    /// Neighbour resolution.
    pub neighbours: NeighbourTable,
    /// Where snapshots are published.
    pub snapshot: &'a ArcSwap<Snapshot>,
    /// Rings to and from the workers.
    pub rings: &'a Rings,
    /// The mbuf pool (for the frames the control thread sends).
    pub pool: &'a Mempool,
    /// The ports.
    pub ports: &'a mut Vec<RunningPort>,
    /// The NICs' MACs.
    pub nic_macs: Vec<MacAddr>,
    /// What the API reads.
    pub shared: &'a Shared,
    /// The ports' kernel interfaces (exception path).
    pub kernel: &'a mut KernelInterfaces,
    /// The health checker.
    pub checker: Checker,
    /// Health transitions from the checker.
    pub transitions: Receiver<Transition>,
    /// Statistics baselines and rates.
    pub book: StatsBook,
    /// The control loop's own counters.
    pub counters: ControlCounters,
    /// Snapshots replaced but possibly still read by a worker: dropped here, never on a
    /// worker, once every worker has adopted a newer generation.
    pub retired: Vec<Arc<Snapshot>>,
    /// Per real server: its step-3-missing count at the last look, and when it was last hinted.
    pub step3: HashMap<RsIdentity, (u64, Option<Instant>)>,
    /// The scale-out thread (VIP announcement), asked to withdraw before vipd stops.
    pub scaleout: BoxHandle,
    /// The workers' liveness, and systemd's notifications (READY, WATCHDOG).
    pub vitals: Vitals,
    /// The operator's state kept across restarts (unsaved changes, health).
    pub state: &'a StateFile,
    /// SIGHUP reloads' outcomes, for `vipd --reload` (systemctl reload).
    pub reloads: Recorder,
    /// Gratuitous ARP and unsolicited advertisements due after bond failovers.
    pub announcer: Announcer,
}

/// A real server's step-3 hint is logged at most this often.
const STEP3_HINT_PERIOD: Duration = Duration::from_secs(300);

impl Control<'_> {
    /// Run until `stop` is set.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        reload_flag: &AtomicBool,
        commands: &Receiver<Command>,
    ) {
        tracing::info!(
            "vipd running: {} worker(s), {} port(s)",
            self.rings.inboxes.len(),
            self.ports.len()
        );
        self.set_targets();
        let mut last_slow = Instant::now() - Duration::from_secs(10);
        let mut last_view = Instant::now() - Duration::from_secs(10);
        let mut last_rates = Instant::now() - Duration::from_secs(10);
        // On SIGTERM/SIGINT the VIPs are withdrawn first and vipd forwards on until the
        // router has moved the flows (bgp.withdraw_wait).
        let mut stopping: Option<StopProgress> = None;
        loop {
            if stop.load(Ordering::Relaxed)
                && stopping
                    .get_or_insert_with(|| {
                        watchdog::stopping();
                        self.scaleout.begin_stop()
                    })
                    .done(Instant::now())
            {
                break;
            }
            let now = Instant::now();
            // Every tick: a stalled worker is logged and counted here, and systemd's watchdog
            // is fed only while every worker runs (and this loop goes round).
            self.vitals.tick(now);
            // Old snapshots are freed here, not in a worker's loop.
            self.rings.reclaim_snapshots();
            let mut changed = self.learn(now);
            let (requests, expired) = self.neighbours.poll(now);
            changed |= expired;
            for r in requests {
                self.send_request(r.port, r.target);
            }
            let health = self.apply_transitions();
            if health {
                self.save_state(None);
            }
            changed |= health;
            if changed {
                self.rebuild("neighbour or health change");
            }
            let mut dirty = changed;
            if reload_flag.swap(false, Ordering::Relaxed) {
                let r = self.reload();
                match &r {
                    Ok(g) => tracing::info!("SIGHUP: configuration reloaded (generation {g})"),
                    Err(e) => {
                        self.counters.reload_failures += 1;
                        tracing::error!("SIGHUP: reload refused, running configuration kept: {e}")
                    }
                }
                self.reloads.record(&r);
                dirty = true;
            }
            if now.duration_since(last_slow) >= Duration::from_secs(1) {
                last_slow = now;
                for port in ports::poll_links(self.ports) {
                    self.failed_over(port, now);
                }
                self.reclaim();
                self.step3_hints(now);
            }
            for port in self.announcer.due(now) {
                self.announce(port);
            }
            if now.duration_since(last_rates) >= RATE_PERIOD {
                last_rates = now;
                let ids = self.slot_list();
                self.book.sample(&self.shared.backends, &ids, now);
            }
            if dirty || now.duration_since(last_view) >= VIEW_PERIOD {
                last_view = now;
                self.publish_view();
            }
            match commands.recv_timeout(TICK) {
                Ok(cmd) => {
                    self.command(cmd);
                    self.publish_view();
                    last_view = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
            }
        }
        tracing::info!("stopping");
    }

    fn env_resolved(&self) -> std::collections::HashMap<IpAddr, MacAddr> {
        self.neighbours.resolved()
    }

    /// Hand the health checks to the checker, after the kernel interfaces got the addresses
    /// and host routes they leave by.
    fn set_targets(&mut self) {
        let targets = self.targets();
        let ips: Vec<IpAddr> = targets.iter().map(|t| t.spec.target.ip()).collect();
        self.kernel.sync(&self.running.valid.ports, &ips);
        self.checker
            .set_max_down_percent(self.running.config.health.max_down_percent);
        self.checker.set_targets(targets);
    }

    fn targets(&self) -> Vec<Target> {
        self.running.check_targets()
    }

    fn slot_list(&self) -> Vec<((ServiceKey, IpAddr, u16), u32)> {
        self.running
            .valid
            .services
            .iter()
            .zip(self.running.slot_ids())
            .flat_map(|(s, slots)| {
                s.real_servers
                    .iter()
                    .zip(slots)
                    .map(move |(r, &slot)| ((s.key, r.ip, r.port), slot))
            })
            .collect()
    }

    fn command(&mut self, cmd: Command) {
        // A request whose API handler stopped waiting (the control loop was stalled longer
        // than its timeout) was answered "not applied": it must not be applied later.
        let abandoned = match &cmd {
            Command::Reload(r) | Command::Change(_, r) => r.is_closed(),
            Command::Zero(_, r) => r.is_closed(),
        };
        if abandoned {
            tracing::warn!("API: a request abandoned by its client (timed out) is not applied");
            return;
        }
        match cmd {
            Command::Reload(reply) => {
                let r = self.reload();
                match &r {
                    Ok(g) => tracing::info!("API: configuration reloaded (generation {g})"),
                    Err(e) => {
                        self.counters.reload_failures += 1;
                        tracing::error!("API: reload refused, running configuration kept: {e}")
                    }
                }
                let _ = reply.send(r.map_err(|e| refusal_of_reload(e.to_string())));
            }
            Command::Change(change, reply) => {
                let answer = match changes::apply(&self.running.config, &change) {
                    Ok((config, _)) if config == self.running.config => {
                        // Nothing to do: no new snapshot, no unsaved change.
                        Ok(self.running.generation)
                    }
                    Ok((config, valid)) => {
                        let what = change.to_string();
                        match self.replace(config, valid) {
                            Ok(g) => {
                                self.running.unsaved_changes += 1;
                                // On disk before the answer: an applied change survives a restart.
                                self.save_state(None);
                                tracing::info!("API: {} applied (generation {g})", short(&what));
                                Ok(g)
                            }
                            Err(e) => Err(changes::Refusal {
                                status: 422,
                                field: "services".into(),
                                message: e.to_string(),
                            }),
                        }
                    }
                    Err(r) => {
                        tracing::info!("API: change refused: {}: {}", r.field, r.message);
                        Err(r)
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Zero(service, reply) => {
                let ids: Vec<_> = self
                    .slot_list()
                    .into_iter()
                    .filter(|(id, _)| service.is_none_or(|k| id.0 == k))
                    .collect();
                let keys = service.map(|k| vec![k]);
                self.book.zero(&self.shared.backends, &ids, keys.as_deref());
                tracing::info!(
                    "API: statistics zeroed ({})",
                    service.map_or("all services".into(), |k| k.to_string())
                );
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Put a new configuration in force: one snapshot, the health checks and neighbours that
    /// go with it. Nothing changes on error.
    fn replace(&mut self, config: Config, valid: crate::config::Valid) -> Result<u64, ApplyError> {
        for w in &valid.warnings {
            tracing::warn!("{w}");
        }
        let timers = config.neighbour_timers.clone();
        let resolved = self.env_resolved();
        let env = Env {
            nic_macs: &self.nic_macs,
            resolved: &resolved,
        };
        let applied = self.running.replace(config, valid, &env)?;
        self.neighbours.set_timers(timers);
        self.publish(applied);
        self.set_targets();
        Ok(self.running.generation)
    }

    /// Write what a restart must keep (the running configuration, its unsaved changes, the
    /// real servers down), and with `digest` the digest of the file just reloaded.
    fn save_state(&self, digest: Option<String>) {
        let running = &self.running;
        let _ = self.state.update(false, |s| {
            s.running = running.config.clone();
            s.unsaved_changes = running.unsaved_changes;
            s.down = state_file::down_list(running.down());
            if let Some(d) = digest {
                s.config_digest = d;
            }
        });
    }

    fn reload(&mut self) -> Result<u64, ReloadError> {
        // The digest of what is read now (a file changed again meanwhile reloads again later),
        // from the one read the configuration comes from.
        let (new, valid, bytes) = Config::load_read(&self.running.path)?;
        let digest = state_file::digest(&bytes);
        let restart = reload::restart_only_changes(&self.running.config, &new);
        if !restart.is_empty() {
            return Err(ReloadError::RestartOnly {
                file: self.running.path.clone(),
                keys: restart,
            });
        }
        if self.running.unsaved_changes > 0 {
            tracing::warn!(
                "reload: {} API change(s) not saved to {} are replaced by the file (vipctl save keeps them)",
                self.running.unsaved_changes,
                self.running.path.display()
            );
        }
        let g = self.replace(new, valid)?;
        self.running.unsaved_changes = 0;
        self.save_state(Some(digest));
        Ok(g)
    }

    fn rebuild(&mut self, why: &str) {
        let resolved = self.env_resolved();
        let env = Env {
            nic_macs: &self.nic_macs,
            resolved: &resolved,
        };
        match self.running.rebuild(&env) {
            Ok(applied) => {
                tracing::debug!("snapshot {} published ({why})", self.running.generation);
                self.publish(applied);
            }
            Err(e) => tracing::error!("snapshot not rebuilt ({why}): {e}"),
        }
    }

    fn publish(&mut self, applied: Applied) {
        self.neighbours
            .set_wanted(&applied.wanted, &applied.statics);
        let old = self.snapshot.swap(Arc::new(applied.snapshot));
        self.retired.push(old);
    }

    /// Health verdicts from the checker: logged once each, counted, applied. True when the
    /// dataplane must learn about them.
    fn apply_transitions(&mut self) -> bool {
        let mut changed = false;
        while let Ok(t) = self.transitions.try_recv() {
            let (key, ip, port) = t.id;
            if !self.running.set_up(&t.id, t.up) {
                continue;
            }
            changed = true;
            self.counters.health_transitions += 1;
            let rs = std::net::SocketAddr::new(ip, port);
            if t.up {
                tracing::info!(service = %key, real_server = %rs, "real server up: {}", t.reason);
            } else {
                tracing::warn!(service = %key, real_server = %rs, "real server down: {}", t.reason);
            }
        }
        changed
    }

    /// One rate-limited hint per real server whose NAT replies do not come back through vipd.
    fn step3_hints(&mut self, now: Instant) {
        for (id, slot) in self.slot_list() {
            let missing = self.book.read(&self.shared.backends, slot).step3_missing;
            let e = self.step3.entry(id).or_insert((missing, None));
            let rising = missing > e.0;
            e.0 = missing;
            if rising
                && e.1
                    .is_none_or(|t| now.duration_since(t) >= STEP3_HINT_PERIOD)
            {
                e.1 = Some(now);
                tracing::warn!(
                    service = %id.0,
                    real_server = %std::net::SocketAddr::new(id.1, id.2),
                    "replies from {} do not return through vipd: is its default route via the LB? ({missing} connection(s) so far saw a retransmitted SYN and no SYN-ACK)",
                    id.1
                );
            }
        }
        let live: std::collections::HashSet<RsIdentity> =
            self.slot_list().into_iter().map(|(id, _)| id).collect();
        self.step3.retain(|id, _| live.contains(id));
    }

    /// Drop retired snapshots and free backend slots that every worker has moved past.
    fn reclaim(&mut self) {
        let oldest = self
            .shared
            .workers
            .iter()
            .map(|w| w.generation())
            .min()
            .unwrap_or(0);
        self.retired.retain(|s| s.generation >= oldest);
        let backends = &self.shared.backends;
        let freed = self.running.slots_mut().reclaim(oldest, |slot| {
            // Flow entries and persistence entries both name the slot.
            vipd_dataplane::backend_stats::sum(backends, slot).references()
        });
        for f in freed {
            self.book.slot_freed(backends, &f.identity, f.slot);
        }
    }

    fn publish_view(&self) {
        let snap = self.snapshot.load();
        let v = views::view(&views::Sources {
            running: &self.running,
            snap: &snap,
            neighbours: &self.neighbours,
            ports: self.ports,
            workers: self.rings.inboxes.len(),
            book: &self.book,
            counters: ControlCounters {
                state_write_failures: self.state.failures(),
                ..self.counters
            },
            liveness: self.vitals.gauges(),
            mempool: (
                u64::from(self.pool.in_use()),
                u64::from(self.pool.in_use()) + u64::from(self.pool.available()),
            ),
        });
        self.shared.view.store(Arc::new(v));
    }

    /// Learn from the ARP replies and Neighbour Advertisements the workers handed over, then
    /// pass them on to the port's kernel interface (the kernel resolves its own neighbours
    /// through the same frames). True when a MAC changed.
    fn learn(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while let Some((port, m)) = self.rings.to_control.pop() {
            self.counters.rx += 1;
            if let Some((ip, mac)) = learn::neighbour_of(m.data()) {
                changed |= self.neighbours.learn(ip, mac, now);
            } else if let Some(ip) = learn::unresolved_destination(m.data()) {
                // A reply to an on-link client vipd has no MAC for: resolve it (the packet
                // itself is dropped; the client's retransmission finds the MAC).
                // Its interface: the port it came by, or the VLAN of the port it is in.
                let iface = vipd_dataplane::snapshot::route(&self.running.valid.ports, &ip)
                    .filter(|r| r.on_link)
                    .map_or(port, |r| r.port);
                self.neighbours.want_on_demand(ip, iface);
                continue;
            }
            // The kernel interface of the port, or of the VLAN the frame is tagged with
            // (the exception thread removes the tag). A priority-tagged frame is the port's
            // untagged side's (the kernel reads it as untagged).
            let ports = &self.running.valid.ports;
            let vid = vlan::vlan_of(m.data());
            let kernel = crate::kernel::plan::interface_of(ports, usize::from(port), vid)
                .and_then(|i| ports.get(i))
                .is_some_and(|p| p.kernel);
            if kernel && self.rings.to_kernel.push((port, m)).is_err() {
                // The kernel asks again.
                if let Some(c) = self.kernel.counters.of(port, vid) {
                    c.add(KernelCounter::DropRingFull, 1);
                }
            }
        }
        changed
    }

    fn send_request(&mut self, port: u16, target: IpAddr) {
        // The interface whose subnet holds the target (a VLAN's, say), else the one asked.
        let ports = &self.running.valid.ports;
        let port = vipd_dataplane::snapshot::route(ports, &target)
            .filter(|r| r.on_link)
            .map_or(port, |r| r.port);
        let Some(p) = ports.get(usize::from(port)) else {
            return;
        };
        let vlan = p.vlan;
        let wire_port = vlan.map_or(port, |v| v.parent);
        let Some(mac) = self.nic_macs.get(usize::from(wire_port)).copied() else {
            return;
        };
        let mac = if p.mac == MacAddr::ZERO { mac } else { p.mac };
        // ARP for IPv4 next hops, a Neighbour Solicitation (RFC 4861) for IPv6 ones, from the
        // interface's address of that family, tagged with its VLAN's id if it has one.
        let (arp_buf, ns_buf);
        let (untagged, what): (&[u8], &str) = match target {
            IpAddr::V4(t) => {
                let Some(net) = p.ipv4 else {
                    return;
                };
                arp_buf = arp_request_frame(mac, net.addr(), t);
                (&arp_buf, "ARP request")
            }
            IpAddr::V6(t) => {
                let Some(net) = p.ipv6 else {
                    return;
                };
                ns_buf = ns_frame(mac, net.addr(), t);
                (&ns_buf, "neighbour solicitation")
            }
        };
        if let Err(why) = self.transmit(wire_port, vlan, untagged) {
            tracing::warn!("{what} for {target}: {why}");
        }
    }

    /// Hand `untagged` to the first worker to send on DPDK port `wire_port`, tagged with
    /// `vlan`'s id if given (the control thread has no queue of its own).
    pub(super) fn transmit(
        &mut self,
        wire_port: u16,
        vlan: Option<VlanOf>,
        untagged: &[u8],
    ) -> Result<(), &'static str> {
        let tagged;
        let frame: &[u8] = match vlan {
            None => untagged,
            Some(v) => {
                let mut f = vec![0u8; vlan::TAG_LEN];
                f.extend_from_slice(untagged);
                if !vlan::insert_tag(&mut f, v.id) {
                    return Err("no VLAN tag");
                }
                tagged = f;
                &tagged
            }
        };
        let m = self
            .pool
            .alloc_frame(frame)
            .map_err(|_| "mbuf pool empty")?;
        let parcel = Parcel {
            mbuf: m,
            port: wire_port,
            kind: ParcelKind::Transmit,
        };
        if self
            .rings
            .inboxes
            .first()
            .is_some_and(|q| q.push(parcel).is_ok())
        {
            self.counters.tx += 1;
            Ok(())
        } else {
            Err("worker inbox full")
        }
    }
}

/// The first line of a change's debug form, bounded (bodies can be long).
fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 200 {
        format!(
            "{}...",
            &line[..line.char_indices().nth(200).map_or(line.len(), |(i, _)| i)]
        )
    } else {
        line.to_string()
    }
}
