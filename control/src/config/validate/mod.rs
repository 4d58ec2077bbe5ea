//! The one validator. Everything that changes the configuration (the file at start and on
//! SIGHUP, `vipd --check`, every API change) goes through [`validate`], which either refuses
//! with the key and the problem or returns the configuration in dataplane terms.

mod api;
mod checks;
mod fnat;
mod ports;
mod sched;
mod services;

pub use sched::{netmask, netmask_text, NetmaskError};
pub use services::{parse_endpoint, BadEndpoint};

use super::model::{Config, Proto};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use vipd_dataplane::sched::load::Limit;
use vipd_dataplane::sched::{is_prime, SchedFlags, SchedulerKind, MAX_MAGLEV_SIZE};
use vipd_dataplane::snapshot::{FlowHashFields, FwdMode, LocalPool, PersistenceSpec, PortInfo};
use vipd_dataplane::wire::MacAddr;

/// A refusal: the dotted key (`services[0].real_servers[1].port`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// `text` as an error message shows it: whole when short, else its start and its length (a
/// refusal must not echo a 100 KB value back at the operator).
pub fn shown(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

/// A number of seconds as a refusal shows it (1e300 in exponent form, not 301 digits).
pub(super) fn seconds(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e6 {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// `message` cut in the middle when it is too long to read: values quoted in it (a scheduler,
/// a device string) may be as large as the body or file that carried them.
pub fn readable(message: String) -> String {
    const MAX: usize = 400;
    if message.len() <= MAX {
        return message;
    }
    let mut head = 240;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - 120;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} ...[{} bytes]... {}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: readable(key.into()),
        message: readable(message.into()),
    }
}

/// Identity of a service: what a client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Virtual IP.
    pub vip: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// Virtual port.
    pub port: u16,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.proto.name(),
            SocketAddr::new(self.vip, self.port)
        )
    }
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection is opened (and closed).
    Tcp,
    /// An HTTP/1.0 GET whose status line must carry `status`.
    Http {
        /// Path of the GET.
        path: String,
        /// Expected status.
        status: u16,
        /// Host header (None: the checked address).
        host: Option<String>,
    },
}

/// A real server's health check with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// What it does.
    pub kind: CheckKind,
    /// Where it goes.
    pub target: SocketAddr,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes to come back up.
    pub rise: u32,
    /// Failures to go down.
    pub fall: u32,
}

/// A real server after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRealServer {
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Forwarding mode.
    pub mode: FwdMode,
    /// The service's sorry server (not in `real_servers` of the file).
    pub sorry: bool,
    /// Its health check, if the service (or the real server) has one.
    pub check: Option<CheckSpec>,
    /// Index of the port that reaches it.
    pub egress_port: usize,
    /// Connection thresholds.
    pub limit: Limit,
}

/// A service after validation, in dataplane types.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidService {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Its flags.
    pub sched_flags: SchedFlags,
    /// Persistence, if any.
    pub persistence: Option<PersistenceSpec>,
    /// `dead_flows = "drop"`.
    pub drop_dead_flows: bool,
    /// keepalived's `alpha`: its checked real servers start down until their first good check.
    pub alpha: bool,
    /// What the consistent hash covers (`hash`).
    pub hash: FlowHashFields,
    /// Real servers in file order, then the sorry server if any.
    pub real_servers: Vec<ValidRealServer>,
    /// Full-NAT's local addresses and ports (empty without full-NAT real servers).
    pub local_pool: LocalPool,
}

/// A configuration vipd accepts.
#[derive(Debug, Clone)]
pub struct Valid {
    /// The ports as the dataplane sees them (MACs from the file; the daemon puts the NICs'
    /// in where the file has none).
    pub ports: Vec<PortInfo>,
    /// The services.
    pub services: Vec<ValidService>,
    /// Things that work but that an operator likely did not mean.
    pub warnings: Vec<String>,
}

/// Largest frame an mbuf of the default data room holds: vipd does not chain mbufs.
pub const MAX_FRAME: u16 = 2048;
/// Ethernet header plus one VLAN tag.
const L2_OVERHEAD: u16 = 18;
/// Largest IP MTU a port can have.
pub const MAX_MTU: u16 = MAX_FRAME - L2_OVERHEAD;
/// Largest weight (IPVS's).
pub const MAX_WEIGHT: u32 = 65_535;
/// Largest timeout of any kind, seconds (a week).
pub const MAX_TIMEOUT_S: u32 = 7 * 86_400;
/// Largest idle sleep of a worker: longer would add that much latency to every first packet.
pub const MAX_IDLE_SLEEP_US: u32 = 10_000;

/// Validate `config`: the configuration in dataplane terms, or the first problem found.
pub fn validate(config: &Config) -> Result<Valid, Invalid> {
    super::eal::check(&config.eal)?;
    dataplane(config)?;
    flows(config)?;
    api::api(&config.api)?;
    api::health(&config.health)?;
    let n = &config.neighbour_timers;
    for (key, v) in [
        ("retry", n.retry),
        ("refresh", n.refresh),
        ("expire", n.expire),
    ] {
        if v == 0 || v > 86_400 {
            return Err(invalid(
                format!("neighbour_timers.{key}"),
                format!("{v} is out of range 1..=86400 seconds"),
            ));
        }
    }
    if n.expire <= n.refresh {
        return Err(invalid(
            "neighbour_timers.expire",
            format!(
                "{} must be larger than refresh ({}): an entry must get the chance to be refreshed before it expires",
                n.expire, n.refresh
            ),
        ));
    }
    let state = &config.state.file;
    if !state.is_absolute() || state.file_name().is_none() {
        return Err(invalid(
            "state.file",
            format!(
                "`{}` must be an absolute path to a file (default {})",
                state.display(),
                super::model::DEFAULT_STATE_FILE
            ),
        ));
    }
    let mut warnings = Vec::new();
    let ports = ports::ports(config, &mut warnings)?;
    for (i, n) in config.neighbours.iter().enumerate() {
        n.mac
            .parse::<MacAddr>()
            .map_err(|e| invalid(format!("neighbours[{i}].mac"), e))?;
        if matches!(n.ip, std::net::IpAddr::V6(a) if a.to_ipv4_mapped().is_some()) {
            return Err(invalid(
                format!("neighbours[{i}].ip"),
                ports::mapped_refusal(&n.ip),
            ));
        }
    }
    let services = services::services(config, &ports, &mut warnings)?;
    super::bgp::check(config, &ports, &services, &mut warnings)?;
    let total: usize = services.iter().map(|s| s.real_servers.len()).sum();
    if total > config.dataplane.max_real_servers as usize {
        return Err(invalid(
            "services",
            format!(
                "{total} real servers (sorry servers included) is more than dataplane.max_real_servers ({})",
                config.dataplane.max_real_servers
            ),
        ));
    }
    Ok(Valid {
        ports,
        services,
        warnings,
    })
}

fn dataplane(config: &Config) -> Result<(), Invalid> {
    let dp = &config.dataplane;
    if dp.worker_cores.is_empty() {
        return Err(invalid(
            "dataplane.worker_cores",
            "at least one worker core is needed",
        ));
    }
    if dp.worker_cores.len() > 64 {
        return Err(invalid("dataplane.worker_cores", "at most 64 workers"));
    }
    let cores = core_count();
    for (i, &c) in dp.worker_cores.iter().enumerate() {
        if c >= cores {
            return Err(invalid(
                format!("dataplane.worker_cores[{i}]"),
                format!("core {c} does not exist (this machine has {cores})"),
            ));
        }
        if dp.worker_cores[..i].contains(&c) {
            return Err(invalid(
                format!("dataplane.worker_cores[{i}]"),
                format!("core {c} is listed twice"),
            ));
        }
    }
    if dp.control_core >= cores {
        return Err(invalid(
            "dataplane.control_core",
            format!(
                "core {} does not exist (this machine has {cores})",
                dp.control_core
            ),
        ));
    }
    for (key, v) in [
        ("dataplane.rx_descriptors", dp.rx_descriptors),
        ("dataplane.tx_descriptors", dp.tx_descriptors),
    ] {
        if !(64..=16384).contains(&v) {
            return Err(invalid(key, format!("{v} is out of range 64..=16384")));
        }
    }
    if dp.idle_sleep_us > MAX_IDLE_SLEEP_US {
        return Err(invalid(
            "dataplane.idle_sleep_us",
            format!(
                "{} is out of range 0..={MAX_IDLE_SLEEP_US}: an idle worker would answer its first packet that late",
                dp.idle_sleep_us
            ),
        ));
    }
    if dp.mbufs != 0 && !(1023..=1 << 24).contains(&dp.mbufs) {
        return Err(invalid(
            "dataplane.mbufs",
            format!(
                "{} is out of range 1023..=16777216 (or 0: sized from ports and queues)",
                dp.mbufs
            ),
        ));
    }
    if !(1..=1 << 20).contains(&dp.max_real_servers) {
        return Err(invalid(
            "dataplane.max_real_servers",
            format!("{} is out of range 1..=1048576", dp.max_real_servers),
        ));
    }
    Ok(())
}

fn flows(config: &Config) -> Result<(), Invalid> {
    let f = &config.flows;
    if !(1024..=1 << 26).contains(&f.capacity_per_worker) {
        return Err(invalid(
            "flows.capacity_per_worker",
            format!("{} is out of range 1024..=67108864", f.capacity_per_worker),
        ));
    }
    if let Some(v6) = f.capacity_per_worker_v6 {
        if !(1024..=1 << 26).contains(&v6) {
            return Err(invalid(
                "flows.capacity_per_worker_v6",
                format!("{v6} is out of range 1024..=67108864"),
            ));
        }
    }
    if f.maglev_table_size > MAX_MAGLEV_SIZE || f.maglev_table_size < 251 {
        return Err(invalid(
            "flows.maglev_table_size",
            format!(
                "{} is out of range 251..={MAX_MAGLEV_SIZE}",
                f.maglev_table_size
            ),
        ));
    }
    if !is_prime(f.maglev_table_size) {
        return Err(invalid(
            "flows.maglev_table_size",
            format!(
                "{} is not prime: use a prime such as 65537 (default) or 655373",
                f.maglev_table_size
            ),
        ));
    }
    if !(1024..=1 << 24).contains(&f.persistence_per_worker) {
        return Err(invalid(
            "flows.persistence_per_worker",
            format!(
                "{} is out of range 1024..=16777216",
                f.persistence_per_worker
            ),
        ));
    }
    if !(64..=1 << 20).contains(&f.fragment_slots) {
        return Err(invalid(
            "flows.fragment_slots",
            format!("{} is out of range 64..=1048576", f.fragment_slots),
        ));
    }
    for (key, v) in f.timeouts.entries() {
        if v == 0 || v > MAX_TIMEOUT_S {
            return Err(invalid(
                format!("flows.timeouts.{key}"),
                format!("{v} is out of range 1..={MAX_TIMEOUT_S} seconds"),
            ));
        }
    }
    Ok(())
}

/// CPUs of the machine. Not `available_parallelism`: that follows the calling thread's
/// affinity, and a reload runs on the control thread, which the EAL pinned to one core.
fn core_count() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).max(1)
}
