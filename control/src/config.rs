//! The configuration file (TOML): types with defaults, loading, and validation whose errors name
//! the file, the key and what is wrong. docs/configuration.md documents every key.

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use vipd_dataplane::flow::Timeouts;
use vipd_dataplane::fwd::tunnel;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::FwdMode;
use vipd_dataplane::wire::MacAddr;

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// File.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or type error (toml's message names the key, line and column).
    #[error("{file}: {message}")]
    Parse {
        /// File.
        file: PathBuf,
        /// toml's message.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// File.
        file: PathBuf,
        /// Dotted key, e.g. `services[0].real_servers[1].port`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK EAL settings.
    #[serde(default)]
    pub eal: EalConfig,
    /// Worker and queue settings.
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// Flow table size and timeouts.
    #[serde(default)]
    pub flows: FlowConfig,
    /// Neighbour (ARP) resolution timers.
    #[serde(default)]
    pub neighbour_timers: NeighbourTimers,
    /// HTTP API and metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// NIC ports.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// Static neighbours.
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    /// Virtual services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// `[eal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EalConfig {
    /// `--file-prefix`: distinct per vipd instance on one host.
    pub file_prefix: String,
    /// Use hugepages (`--in-memory`); false runs with `--no-huge` (tests, small machines).
    pub hugepages: bool,
    /// Memory in MiB (`-m`); 0 lets DPDK decide (with hugepages: what is reserved).
    pub memory_mb: u32,
    /// Extra EAL arguments appended verbatim (e.g. `["--log-level", "pmd.net.af_packet:8"]`).
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            file_prefix: "vipd".into(),
            hugepages: true,
            memory_mb: 0,
            extra_args: Vec::new(),
        }
    }
}

/// `[dataplane]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneConfig {
    /// CPU cores of the workers, one worker (and one RX/TX queue pair per port) each.
    pub worker_cores: Vec<usize>,
    /// CPU core of the control thread (EAL main lcore). Sharing it with a worker is allowed
    /// (small test machines) and logged as a warning: a busy-polling worker starves it.
    pub control_core: usize,
    /// Sleep of an idle worker in microseconds after an empty poll; 0 = pure busy polling.
    pub idle_sleep_us: u32,
    /// RX descriptors per queue.
    pub rx_descriptors: u16,
    /// TX descriptors per queue.
    pub tx_descriptors: u16,
    /// Mbufs in the pool; 0 = sized from ports, queues and descriptors.
    pub mbufs: u32,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            worker_cores: vec![1],
            control_core: 0,
            idle_sleep_us: 50,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mbufs: 0,
        }
    }
}

/// `[flows]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Connections per worker flow table (fixed at start).
    pub capacity_per_worker: usize,
    /// Maglev table size (a prime).
    pub maglev_table_size: u32,
    /// Timeouts in seconds.
    pub timeouts: TimeoutConfig,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            capacity_per_worker: 1 << 20,
            maglev_table_size: 65537,
            timeouts: TimeoutConfig::default(),
        }
    }
}

/// `[flows.timeouts]`, seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// After a SYN, until the connection is established.
    pub tcp_syn: u32,
    /// Established connections.
    pub tcp_established: u32,
    /// After a FIN.
    pub tcp_fin: u32,
    /// After both FINs.
    pub tcp_time_wait: u32,
    /// After an RST.
    pub tcp_close: u32,
    /// UDP flows since their last packet.
    pub udp: u32,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        TimeoutConfig {
            tcp_syn: t.tcp_syn,
            tcp_established: t.tcp_established,
            tcp_fin: t.tcp_fin,
            tcp_time_wait: t.tcp_time_wait,
            tcp_close: t.tcp_close,
            udp: t.udp,
        }
    }
}

impl TimeoutConfig {
    /// As the flow table's type.
    pub fn to_timeouts(&self) -> Timeouts {
        Timeouts {
            tcp_syn: self.tcp_syn,
            tcp_established: self.tcp_established,
            tcp_fin: self.tcp_fin,
            tcp_time_wait: self.tcp_time_wait,
            tcp_close: self.tcp_close,
            udp: self.udp,
        }
    }
}

/// `[neighbour_timers]`, seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeighbourTimers {
    /// Interval between ARP requests for an unresolved next hop.
    pub retry: u32,
    /// Age after which a learned entry is refreshed (re-requested).
    pub refresh: u32,
    /// Age after which a learned entry that was not refreshed is dropped.
    pub expire: u32,
}

impl Default for NeighbourTimers {
    fn default() -> Self {
        NeighbourTimers {
            retry: 1,
            refresh: 60,
            expire: 300,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the HTTP API and `/metrics`.
    pub listen: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
        }
    }
}

/// `[[ports]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// DPDK device: a PCI address (`0000:01:00.0`) or a virtual device string
    /// (`net_af_packet0,iface=eth1`).
    pub device: String,
    /// IPv4 address with on-link prefix.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with on-link prefix.
    pub ipv6: Option<Ipv6Net>,
    /// Override of the port's MAC address.
    pub mac: Option<String>,
    /// IPv4 default gateway through this port.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway through this port.
    pub gateway6: Option<Ipv6Addr>,
    /// IP MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// TUN mode: IPv4 prefix the outer source address is picked from per flow (default: the
    /// port's address), so a real server's NIC RSS spreads tunnelled flows over its queues.
    pub tunnel_source4: Option<Ipv4Net>,
    /// TUN mode: the same for IPv6 outer headers.
    pub tunnel_source6: Option<Ipv6Net>,
}

fn default_mtu() -> u16 {
    1500
}

/// `[[neighbours]]`: a static neighbour entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// Address.
    pub ip: IpAddr,
    /// MAC.
    pub mac: String,
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// `[[services]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Virtual IP.
    pub vip: IpAddr,
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// Virtual port.
    pub port: u16,
    /// `rr`, `wrr` or `maglev`.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// Default forwarding mode of its real servers: `nat`, `dr` or `tunnel`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Name of the port the VIP is reached on (default: the port whose subnet holds the VIP,
    /// else the first port). DR real servers must be on-link on it.
    pub interface: Option<String>,
    /// Real servers.
    #[serde(default)]
    pub real_servers: Vec<RealServerConfig>,
}

fn default_scheduler() -> String {
    "maglev".into()
}

fn default_mode() -> String {
    "nat".into()
}

/// `[[services.real_servers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerConfig {
    /// Address.
    pub ip: IpAddr,
    /// Port (default: the service port).
    pub port: Option<u16>,
    /// Weight (default 1; 0 = drained).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Mode override for this real server.
    pub mode: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// A service after validation, in dataplane types.
#[derive(Debug, Clone)]
pub struct ValidService {
    /// Virtual IP.
    pub vip: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Virtual port.
    pub port: u16,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// Real servers: (address, port, weight, mode).
    pub real_servers: Vec<(IpAddr, u16, u32, FwdMode)>,
}

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: path.to_owned(),
            key,
            message,
        };
        let dp = &self.dataplane;
        if dp.worker_cores.is_empty() {
            return Err(invalid(
                "dataplane.worker_cores".into(),
                "at least one worker core is needed".into(),
            ));
        }
        if dp.worker_cores.len() > 64 {
            return Err(invalid(
                "dataplane.worker_cores".into(),
                "at most 64 workers".into(),
            ));
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
                "dataplane.control_core".into(),
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
                return Err(invalid(
                    key.into(),
                    format!("{v} is out of range 64..=16384"),
                ));
            }
        }
        if self.flows.capacity_per_worker < 1024 || self.flows.capacity_per_worker > (1 << 26) {
            return Err(invalid(
                "flows.capacity_per_worker".into(),
                format!(
                    "{} is out of range 1024..=67108864",
                    self.flows.capacity_per_worker
                ),
            ));
        }
        let t = &self.flows.timeouts;
        for (key, v) in [
            ("tcp_syn", t.tcp_syn),
            ("tcp_established", t.tcp_established),
            ("tcp_fin", t.tcp_fin),
            ("tcp_time_wait", t.tcp_time_wait),
            ("tcp_close", t.tcp_close),
            ("udp", t.udp),
        ] {
            if v == 0 {
                return Err(invalid(
                    format!("flows.timeouts.{key}"),
                    "must be at least 1 second".into(),
                ));
            }
        }
        let n = &self.neighbour_timers;
        if n.retry == 0 || n.refresh == 0 || n.expire <= n.refresh {
            return Err(invalid(
                "neighbour_timers".into(),
                "retry and refresh must be >= 1 and expire > refresh".into(),
            ));
        }
        if self.ports.is_empty() {
            return Err(invalid(
                "ports".into(),
                "at least one [[ports]] entry is needed".into(),
            ));
        }
        for (i, p) in self.ports.iter().enumerate() {
            let k = |f: &str| format!("ports[{i}].{f}");
            if p.name.is_empty() || self.ports[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    k("name"),
                    format!("`{}` is empty or used twice", p.name),
                ));
            }
            if p.device.is_empty() || self.ports[..i].iter().any(|q| q.device == p.device) {
                return Err(invalid(
                    k("device"),
                    format!("`{}` is empty or used twice", p.device),
                ));
            }
            if p.ipv4.is_none() && p.ipv6.is_none() {
                return Err(invalid(
                    k("ipv4"),
                    "a port needs an ipv4 or ipv6 address".into(),
                ));
            }
            if let Some(m) = &p.mac {
                m.parse::<MacAddr>().map_err(|e| invalid(k("mac"), e))?;
            }
            if let (Some(g), Some(net)) = (p.gateway, p.ipv4) {
                if !net.contains(&g) {
                    return Err(invalid(k("gateway"), format!("{g} is not inside {net}")));
                }
            } else if p.gateway.is_some() {
                return Err(invalid(
                    k("gateway"),
                    "an IPv4 gateway needs an ipv4 address on the port".into(),
                ));
            }
            if let (Some(g), Some(net)) = (p.gateway6, p.ipv6) {
                if !net.contains(&g) {
                    return Err(invalid(k("gateway6"), format!("{g} is not inside {net}")));
                }
            } else if p.gateway6.is_some() {
                return Err(invalid(
                    k("gateway6"),
                    "an IPv6 gateway needs an ipv6 address on the port".into(),
                ));
            }
            if !(576..=9000).contains(&p.mtu) {
                return Err(invalid(
                    k("mtu"),
                    format!("{} is out of range 576..=9000", p.mtu),
                ));
            }
        }
        for (i, n) in self.neighbours.iter().enumerate() {
            n.mac
                .parse::<MacAddr>()
                .map_err(|e| invalid(format!("neighbours[{i}].mac"), e))?;
        }
        self.valid_services()
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(())
    }

    /// The services in dataplane types. Errors are (key, message).
    pub fn valid_services(&self) -> Result<Vec<ValidService>, (String, String)> {
        let mut out: Vec<ValidService> = Vec::with_capacity(self.services.len());
        for (i, s) in self.services.iter().enumerate() {
            let k = |f: &str| format!("services[{i}].{f}");
            let scheduler: SchedulerKind = s
                .scheduler
                .parse()
                .map_err(|e: vipd_dataplane::sched::SchedError| (k("scheduler"), e.to_string()))?;
            let mode: FwdMode = s.mode.parse().map_err(|e| (k("mode"), e))?;
            let vip_port = match &s.interface {
                Some(name) => self
                    .ports
                    .iter()
                    .position(|p| &p.name == name)
                    .ok_or_else(|| {
                        (
                            k("interface"),
                            format!("no [[ports]] entry is named `{name}`"),
                        )
                    })?,
                None => on_link_port(&self.ports, &s.vip).unwrap_or(0),
            };
            if s.port == 0 {
                return Err((k("port"), "port 0 is not a valid service port".into()));
            }
            if self.ports.iter().any(|p| {
                p.ipv4.map(|n| IpAddr::V4(n.addr())) == Some(s.vip)
                    || p.ipv6.map(|n| IpAddr::V6(n.addr())) == Some(s.vip)
            }) {
                return Err((
                    k("vip"),
                    format!(
                        "{} is a port address; a VIP must be an address of its own",
                        s.vip
                    ),
                ));
            }
            if out
                .iter()
                .any(|o| o.vip == s.vip && o.proto == s.proto.number() && o.port == s.port)
            {
                return Err((
                    k("port"),
                    format!(
                        "service {} {} {} is defined twice",
                        s.vip,
                        s.proto.name(),
                        s.port
                    ),
                ));
            }
            let mut rss = Vec::with_capacity(s.real_servers.len());
            for (j, r) in s.real_servers.iter().enumerate() {
                let kr = |f: &str| format!("services[{i}].real_servers[{j}].{f}");
                let rmode: FwdMode = match &r.mode {
                    Some(m) => m.parse().map_err(|e| (kr("mode"), e))?,
                    None => mode,
                };
                let port = r.port.unwrap_or(s.port);
                if port == 0 {
                    return Err((kr("port"), "port 0 is not a valid real server port".into()));
                }
                if rmode == FwdMode::Nat && r.ip.is_ipv4() != s.vip.is_ipv4() {
                    return Err((
                        kr("ip"),
                        format!(
                            "NAT between {} and {} mixes IPv4 and IPv6; use the VIP's family",
                            s.vip, r.ip
                        ),
                    ));
                }
                if rmode != FwdMode::Nat && r.port.is_some_and(|p| p != s.port) {
                    return Err((kr("port"), format!("{rmode} mode cannot change the port ({} -> {port}): the packet reaches the real server unchanged", s.port)));
                }
                if rmode == FwdMode::Dr && r.ip.is_ipv4() != s.vip.is_ipv4() {
                    return Err((kr("ip"), "DR forwards the client's packet unchanged, so the real server must have the VIP's family".into()));
                }
                if rmode == FwdMode::Dr {
                    if let Some(p) = on_link_port(&self.ports, &r.ip).filter(|&p| p != vip_port) {
                        return Err((
                            kr("ip"),
                            format!(
                                "{} is on port `{}` but the VIP is on port `{}`: DR only rewrites the MAC, so both must share a segment",
                                r.ip, self.ports[p].name, self.ports[vip_port].name
                            ),
                        ));
                    }
                }
                let Some(rs_port) = rs_reachable(&self.ports, &r.ip, rmode == FwdMode::Dr) else {
                    let why = if rmode == FwdMode::Dr {
                        "is not on-link on any port (DR needs the real server on a port's segment)"
                    } else {
                        "is neither on-link on a port nor reachable through a port's gateway"
                    };
                    return Err((kr("ip"), format!("{} {why}", r.ip)));
                };
                if rmode == FwdMode::Tunnel && s.vip.is_ipv6() {
                    let egress = &self.ports[rs_port];
                    let outer = if r.ip.is_ipv4() {
                        tunnel::OVERHEAD_V4
                    } else {
                        tunnel::OVERHEAD_V6
                    };
                    let inner_mtu = egress.mtu.saturating_sub(outer as u16);
                    if inner_mtu < 1280 {
                        return Err((
                            kr("ip"),
                            format!(
                                "the tunnel to {} through port `{}` (mtu {}) leaves {inner_mtu} bytes for IPv6 packets, below IPv6's minimum MTU 1280; raise the port's mtu",
                                r.ip, egress.name, egress.mtu
                            ),
                        ));
                    }
                }
                if rss.iter().any(|&(ip, p, _, _)| ip == r.ip && p == port) {
                    return Err((kr("ip"), format!("{}:{port} is listed twice", r.ip)));
                }
                rss.push((r.ip, port, r.weight, rmode));
            }
            out.push(ValidService {
                vip: s.vip,
                proto: s.proto.number(),
                port: s.port,
                scheduler,
                real_servers: rss,
            });
        }
        Ok(out)
    }
}

/// Index of the port on whose segment `ip` is.
fn on_link_port(ports: &[PortConfig], ip: &IpAddr) -> Option<usize> {
    rs_reachable(ports, ip, true)
}

/// Index of the port that reaches `ip`: on-link, or (unless `on_link_only`) via a gateway.
fn rs_reachable(ports: &[PortConfig], ip: &IpAddr, on_link_only: bool) -> Option<usize> {
    let on_link = ports.iter().position(|p| match ip {
        IpAddr::V4(a) => p.ipv4.is_some_and(|n| n.contains(a)),
        IpAddr::V6(a) => p.ipv6.is_some_and(|n| n.contains(a)),
    });
    if on_link.is_some() || on_link_only {
        return on_link;
    }
    ports.iter().position(|p| {
        if ip.is_ipv4() {
            p.gateway.is_some()
        } else {
            p.gateway6.is_some()
        }
    })
}

/// CPUs of the machine. Not `available_parallelism`: that follows the calling thread's
/// affinity, and a reload runs on the control thread, which the EAL pinned to one core.
fn core_count() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[dataplane]
worker_cores = [1]
control_core = 0

[[ports]]
name = "lan"
device = "net_af_packet0,iface=eth1"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"

[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80

[[services.real_servers]]
ip = "10.77.0.21"
port = 8080
weight = 2

[[services.real_servers]]
ip = "192.0.2.7"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("vipd.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_config_and_defaults() {
        let c = Config::parse(GOOD, Path::new("vipd.toml")).unwrap();
        assert_eq!(c.flows.maglev_table_size, 65537);
        assert_eq!(c.flows.timeouts.tcp_established, 900);
        assert_eq!(c.api.listen.port(), 9180);
        let s = c.valid_services().unwrap();
        assert_eq!(s[0].scheduler, SchedulerKind::Maglev);
        assert_eq!(
            s[0].real_servers[0],
            ("10.77.0.21".parse().unwrap(), 8080, 2, FwdMode::Nat)
        );
        assert_eq!(
            s[0].real_servers[1].1, 80,
            "port defaults to the service port"
        );
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = err(&GOOD.replace("weight = 2", "wieght = 2"));
        assert!(e.starts_with("vipd.toml: ") && e.contains("wieght"), "{e}");
        let e = err(&GOOD.replace("port = 8080", "port = 70000"));
        assert!(e.contains("vipd.toml") && e.contains("port"), "{e}");
        let e = err(&GOOD.replace("gateway = \"10.77.0.1\"", "gateway = \"10.9.0.1\""));
        assert_eq!(
            e,
            "vipd.toml: ports[0].gateway: 10.9.0.1 is not inside 10.77.0.10/24"
        );
        let e = err(&GOOD.replace("worker_cores = [1]", "worker_cores = [1, 1]"));
        assert_eq!(
            e,
            "vipd.toml: dataplane.worker_cores[1]: core 1 is listed twice"
        );
        let e = err(&GOOD.replace("worker_cores = [1]", "worker_cores = [4096]"));
        assert!(
            e.contains("dataplane.worker_cores[0]: core 4096 does not exist"),
            "{e}"
        );
        let e = err(&GOOD
            .replace("scheduler", "x")
            .replace("port = 80\n", "port = 80\nscheduler = \"lc\"\n"));
        assert!(e.contains("services[0].scheduler"), "{e}");
        let e = err(&GOOD.replace("vip = \"10.77.100.1\"", "vip = \"10.77.0.10\""));
        assert!(
            e.contains("services[0].vip: 10.77.0.10 is a port address"),
            "{e}"
        );
        let e = err(&GOOD.replace("ip = \"10.77.0.21\"", "ip = \"fd00::21\""));
        assert!(
            e.contains("services[0].real_servers[0].ip") && e.contains("mixes IPv4 and IPv6"),
            "{e}"
        );
        let e = err(&GOOD.replace("gateway = \"10.77.0.1\"\n", ""));
        assert!(
            e.contains("services[0].real_servers[1].ip: 192.0.2.7 is neither on-link"),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}\n[[neighbours]]\nip = \"10.77.0.1\"\nmac = \"02:00:00:00:00\"\n"
        ));
        assert!(e.contains("neighbours[0].mac"), "{e}");
        let e = err("[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n");
        assert!(
            e.contains("ports[0].ipv4: a port needs an ipv4 or ipv6 address"),
            "{e}"
        );
        assert!(err("").contains("ports: at least one"));
    }

    #[test]
    fn dr_needs_on_link_real_servers_and_the_vip_port() {
        let dr = GOOD.replace("port = 80\n", "port = 80\nmode = \"dr\"\n");
        let e = err(&dr);
        assert!(
            e.contains("services[0].real_servers[0].port: dr mode cannot change the port"),
            "{e}"
        );
        let e = err(&dr.replace("port = 8080\n", ""));
        assert!(
            e.contains("services[0].real_servers[1].ip: 192.0.2.7 is not on-link"),
            "{e}"
        );
        let ok = dr
            .replace("port = 8080\n", "")
            .replace("ip = \"192.0.2.7\"", "ip = \"10.77.0.22\"");
        Config::parse(&ok, Path::new("vipd.toml")).unwrap();
        let two_ports = ok.replace(
            "[[services]]",
            "[[ports]]\nname = \"wan\"\ndevice = \"net_null0\"\nipv4 = \"10.88.0.10/24\"\n\n[[services]]\ninterface = \"wan\"",
        );
        let e = err(&two_ports);
        assert!(e.contains("services[0].real_servers[0].ip: 10.77.0.21 is on port `lan` but the VIP is on port `wan`"), "{e}");
        let e = err(&two_ports.replace("interface = \"wan\"", "interface = \"dmz\""));
        assert!(
            e.contains("services[0].interface: no [[ports]] entry is named `dmz`"),
            "{e}"
        );
    }

    #[test]
    fn tunnel_real_servers_of_either_family() {
        let tun = GOOD
            .replace("port = 80\n", "port = 80\nmode = \"tunnel\"\n")
            .replace("port = 8080\n", "")
            .replace(
                "gateway = \"10.77.0.1\"\n",
                "gateway = \"10.77.0.1\"\nipv6 = \"fd00:77::10/64\"\ngateway6 = \"fd00:77::1\"\n",
            )
            .replace("ip = \"192.0.2.7\"", "ip = \"2001:db8::7\"");
        let c = Config::parse(&tun, Path::new("vipd.toml")).unwrap();
        let s = c.valid_services().unwrap();
        assert_eq!(
            s[0].real_servers[1],
            ("2001:db8::7".parse().unwrap(), 80, 1, FwdMode::Tunnel),
            "4in6 through the IPv6 gateway"
        );
        let e = err(&tun.replace("ip = \"10.77.0.21\"", "ip = \"10.77.0.21\"\nport = 81"));
        assert!(
            e.contains("services[0].real_servers[0].port: tunnel mode cannot change the port"),
            "{e}"
        );
        let e = err(&tun.replace("gateway6 = \"fd00:77::1\"\n", ""));
        assert!(
            e.contains("services[0].real_servers[1].ip: 2001:db8::7 is neither on-link"),
            "{e}"
        );
        // 6in6 on a port with MTU 1300: 1260 bytes left, below IPv6's 1280.
        let six = tun
            .replace("vip = \"10.77.100.1\"", "vip = \"fd00:77:100::1\"")
            .replace("ip = \"10.77.0.21\"", "ip = \"fd00:77::21\"")
            .replace(
                "gateway6 = \"fd00:77::1\"\n",
                "gateway6 = \"fd00:77::1\"\nmtu = 1300\n",
            );
        let e = err(&six);
        assert!(
            e.contains("services[0].real_servers[0].ip: the tunnel to fd00:77::21 through port `lan` (mtu 1300) leaves 1260 bytes for IPv6 packets, below IPv6's minimum MTU 1280"),
            "{e}"
        );
        Config::parse(
            &six.replace("mtu = 1300", "mtu = 1320"),
            Path::new("vipd.toml"),
        )
        .unwrap();
    }

    #[test]
    fn duplicate_service() {
        let twice =
            format!("{GOOD}\n[[services]]\nvip = \"10.77.100.1\"\nproto = \"tcp\"\nport = 80\n");
        assert!(
            err(&twice).contains("services[1].port: service 10.77.100.1 tcp 80 is defined twice")
        );
    }
}
