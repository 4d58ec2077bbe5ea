//! The one validator. Everything that changes the configuration (the file at start and on
//! SIGHUP, `vipd --check`, every API change) goes through [`validate`], which either refuses
//! with the key and the problem or returns the configuration in dataplane terms.

use super::model::{Config, HealthCheckConfig, Proto, ServiceConfig};
use crate::kernel::plan::TAP_VDEV_PREFIX;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use vipd_dataplane::fwd::tunnel;
use vipd_dataplane::sched::{is_prime, SchedulerKind, MAX_MAGLEV_SIZE};
use vipd_dataplane::snapshot::{self, FwdMode, PortInfo};
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

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
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
}

/// A service after validation, in dataplane types.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidService {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler.
    pub scheduler: SchedulerKind,
    /// `dead_flows = "drop"`.
    pub drop_dead_flows: bool,
    /// Real servers in file order, then the sorry server if any.
    pub real_servers: Vec<ValidRealServer>,
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
    let mut warnings = Vec::new();
    let ports = ports(config, &mut warnings)?;
    for (i, n) in config.neighbours.iter().enumerate() {
        n.mac
            .parse::<MacAddr>()
            .map_err(|e| invalid(format!("neighbours[{i}].mac"), e))?;
    }
    let services = services(config, &ports, &mut warnings)?;
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

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn ports(config: &Config, warnings: &mut Vec<String>) -> Result<Vec<PortInfo>, Invalid> {
    if config.ports.is_empty() {
        return Err(invalid("ports", "at least one [[ports]] entry is needed"));
    }
    let mut out = Vec::with_capacity(config.ports.len());
    for (i, p) in config.ports.iter().enumerate() {
        let k = |f: &str| format!("ports[{i}].{f}");
        if p.name.is_empty() || config.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(invalid(
                k("name"),
                format!("`{}` is empty or used twice", p.name),
            ));
        }
        if p.device.is_empty() || config.ports[..i].iter().any(|q| q.device == p.device) {
            return Err(invalid(
                k("device"),
                format!("`{}` is empty or used twice", p.device),
            ));
        }
        if p.device.starts_with(TAP_VDEV_PREFIX) {
            return Err(invalid(
                k("device"),
                format!("`{TAP_VDEV_PREFIX}...` names the taps vipd creates for kernel interfaces: give the device another name (net_tap0, say)"),
            ));
        }
        if p.ipv4.is_none() && p.ipv6.is_none() {
            return Err(invalid(k("ipv4"), "a port needs an ipv4 or ipv6 address"));
        }
        if let Some(net) = p.ipv4 {
            let a = net.addr();
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
                return Err(invalid(k("ipv4"), format!("{a} is not a unicast address")));
            }
        }
        if let Some(net) = p.ipv6 {
            let a = net.addr();
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(invalid(k("ipv6"), format!("{a} is not a unicast address")));
            }
        }
        let mac = match &p.mac {
            Some(m) => {
                let mac: MacAddr = m.parse().map_err(|e| invalid(k("mac"), e))?;
                if mac.is_multicast() || mac == MacAddr::ZERO {
                    return Err(invalid(k("mac"), format!("{m} is not a unicast MAC")));
                }
                mac
            }
            None => MacAddr::ZERO,
        };
        match (p.gateway, p.ipv4) {
            (Some(g), Some(net)) if !net.contains(&g) || g == net.addr() => {
                return Err(invalid(
                    k("gateway"),
                    format!("{g} is not another address inside {net}"),
                ));
            }
            (Some(_), None) => {
                return Err(invalid(
                    k("gateway"),
                    "an IPv4 gateway needs an ipv4 address on the port",
                ));
            }
            _ => {}
        }
        match (p.gateway6, p.ipv6) {
            (Some(g), Some(net))
                if (!net.contains(&g) && !is_link_local(&IpAddr::V6(g))) || g == net.addr() =>
            {
                return Err(invalid(
                    k("gateway6"),
                    format!("{g} is not another address inside {net} (or link-local)"),
                ));
            }
            (Some(_), None) => {
                return Err(invalid(
                    k("gateway6"),
                    "an IPv6 gateway needs an ipv6 address on the port",
                ));
            }
            _ => {}
        }
        if !(576..=MAX_MTU).contains(&p.mtu) {
            return Err(invalid(
                k("mtu"),
                format!(
                    "{} is out of range 576..={MAX_MTU}: a frame must fit one {MAX_FRAME}-byte mbuf (vipd does not chain mbufs)",
                    p.mtu
                ),
            ));
        }
        if let Some(net) = p.tunnel_source4 {
            let a = net.network();
            if net.prefix_len() < 8
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_loopback()
            {
                return Err(invalid(
                    k("tunnel_source4"),
                    format!("{net} is not a unicast prefix of at most /8 the box may send from"),
                ));
            }
        }
        if let Some(net) = p.tunnel_source6 {
            let a = net.network();
            if net.prefix_len() < 32 || a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(invalid(
                    k("tunnel_source6"),
                    format!("{net} is not a unicast prefix of at most /32 the box may send from"),
                ));
            }
        }
        if p.device.starts_with("net_memif") {
            warnings.push(format!(
                "ports[{i}].device: net_memif can crash vipd when its peer disconnects (DPDK 22.11 unmaps the shared memory under a running burst, docs/robustness.md): use it for tests and benchmarks, not in production"
            ));
        }
        if let Some(name) = &p.kernel_interface {
            if !valid_ifname(name) {
                return Err(invalid(
                    k("kernel_interface"),
                    format!(
                        "`{name}` is not an interface name (1-15 letters, digits, `-`, `_`, `.`)"
                    ),
                ));
            }
            if config.ports[..i]
                .iter()
                .any(|q| q.kernel_interface.as_deref() == Some(name))
            {
                return Err(invalid(
                    k("kernel_interface"),
                    format!("`{name}` is used by two ports"),
                ));
            }
        }
        out.push(PortInfo {
            mac,
            ipv4: p.ipv4,
            ipv6: p.ipv6,
            gateway_v4: p.gateway,
            gateway_v6: p.gateway6,
            mtu: p.mtu,
            tunnel_source4: p.tunnel_source4,
            tunnel_source6: p.tunnel_source6,
            kernel: p.kernel_interface.is_some(),
        });
    }
    Ok(out)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Why `ip` cannot be a VIP or a real server, if it cannot.
fn not_unicast(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_broadcast() => Some("broadcast"),
        IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("IPv4-mapped (write the IPv4 address)")
        }
        _ => None,
    }
}

fn is_port_address(ports: &[PortInfo], ip: &IpAddr) -> bool {
    ports.iter().any(|p| p.owns(ip))
}

fn services(
    config: &Config,
    ports: &[PortInfo],
    warnings: &mut Vec<String>,
) -> Result<Vec<ValidService>, Invalid> {
    let vips: Vec<IpAddr> = config.services.iter().map(|s| s.vip).collect();
    let mut out: Vec<ValidService> = Vec::with_capacity(config.services.len());
    for (i, s) in config.services.iter().enumerate() {
        let k = |f: &str| format!("services[{i}].{f}");
        let scheduler: SchedulerKind =
            s.scheduler
                .parse()
                .map_err(|e: vipd_dataplane::sched::SchedError| {
                    invalid(k("scheduler"), e.to_string())
                })?;
        let mode: FwdMode = s.mode.parse().map_err(|e| invalid(k("mode"), e))?;
        let drop_dead_flows = match s.dead_flows.as_str() {
            "drop" => true,
            "keep" => false,
            other => {
                return Err(invalid(
                    k("dead_flows"),
                    format!("unknown value `{other}` (expected drop or keep)"),
                ))
            }
        };
        if let Some(why) = not_unicast(&s.vip) {
            return Err(invalid(
                k("vip"),
                format!("{} is {why}: a VIP must be a unicast address", s.vip),
            ));
        }
        if is_port_address(ports, &s.vip) {
            return Err(invalid(
                k("vip"),
                format!(
                    "{} is a port address; a VIP must be an address of its own",
                    s.vip
                ),
            ));
        }
        if s.port == 0 {
            return Err(invalid(k("port"), "port 0 is not a valid service port"));
        }
        let key = ServiceKey {
            vip: s.vip,
            proto: s.proto,
            port: s.port,
        };
        if out.iter().any(|o| o.key == key) {
            return Err(invalid(
                k("port"),
                format!("service {key} is defined twice"),
            ));
        }
        let vip_port = match &s.interface {
            Some(name) => config
                .ports
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| {
                    invalid(
                        k("interface"),
                        format!("no [[ports]] entry is named `{name}`"),
                    )
                })?,
            None => ports.iter().position(|p| p.on_link(&s.vip)).unwrap_or(0),
        };
        let mut rss: Vec<ValidRealServer> = Vec::with_capacity(s.real_servers.len() + 1);
        for (j, r) in s.real_servers.iter().enumerate() {
            let kr = |f: &str| format!("services[{i}].real_servers[{j}].{f}");
            let rmode: FwdMode = match &r.mode {
                Some(m) => m.parse().map_err(|e| invalid(kr("mode"), e))?,
                None => mode,
            };
            if r.weight > MAX_WEIGHT {
                return Err(invalid(
                    kr("weight"),
                    format!("{} is out of range 0..={MAX_WEIGHT}", r.weight),
                ));
            }
            let rs = real_server(
                config,
                ports,
                &vips,
                s,
                vip_port,
                (r.ip, r.port, r.weight, rmode),
                &kr,
            )?;
            let check = check_spec(s, r.health_check.as_ref(), &rs, &k, &kr)?;
            push_unique(&mut rss, ValidRealServer { check, ..rs }, &kr("ip"))?;
        }
        if let Some(text) = &s.sorry_server {
            let ks = |_: &str| k("sorry_server");
            let addr = parse_endpoint(text, s.port).map_err(|e| invalid(k("sorry_server"), e))?;
            let rs = real_server(
                config,
                ports,
                &vips,
                s,
                vip_port,
                (addr.ip(), Some(addr.port()), 1, mode),
                &ks,
            )?;
            let check = check_spec(s, None, &rs, &k, &ks)?;
            push_unique(
                &mut rss,
                ValidRealServer {
                    sorry: true,
                    check,
                    ..rs
                },
                &k("sorry_server"),
            )?;
        }
        if rss.is_empty() && s.health_check.is_some() {
            // No real server to check yet: the service's check is still validated now, not
            // when the first real server is added (and then refused for the service's fault).
            let placeholder = ValidRealServer {
                ip: s.vip,
                port: s.port,
                weight: 0,
                mode,
                sorry: false,
                check: None,
                egress_port: vip_port,
            };
            check_spec(s, None, &placeholder, &k, &k)?;
        }
        for rs in &rss {
            if rs.check.is_some() && !ports[rs.egress_port].kernel {
                warnings.push(format!(
                    "services[{i}]: health checks of {} leave through the box's own routing, not through port `{}`: set ports[{}].kernel_interface so they test the path vipd forwards on",
                    SocketAddr::new(rs.ip, rs.port), config.ports[rs.egress_port].name, rs.egress_port
                ));
                break;
            }
        }
        out.push(ValidService {
            key,
            scheduler,
            drop_dead_flows,
            real_servers: rss,
        });
    }
    Ok(out)
}

fn push_unique(
    rss: &mut Vec<ValidRealServer>,
    rs: ValidRealServer,
    key: &str,
) -> Result<(), Invalid> {
    if rss.iter().any(|o| o.ip == rs.ip && o.port == rs.port) {
        return Err(invalid(
            key,
            format!("{} is listed twice", SocketAddr::new(rs.ip, rs.port)),
        ));
    }
    rss.push(rs);
    Ok(())
}

/// `"10.0.0.9:8080"`, `"[fd00::9]:8080"`, or an address alone (then `default_port`).
pub fn parse_endpoint(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(sa);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| {
            format!("`{text}` is not an address or address:port (IPv6 with port: [addr]:port)")
        })
}

/// The checks every real server (and sorry server) passes.
fn real_server(
    config: &Config,
    ports: &[PortInfo],
    vips: &[IpAddr],
    s: &ServiceConfig,
    vip_port: usize,
    (ip, port, weight, rmode): (IpAddr, Option<u16>, u32, FwdMode),
    kr: &dyn Fn(&str) -> String,
) -> Result<ValidRealServer, Invalid> {
    if let Some(why) = not_unicast(&ip) {
        return Err(invalid(
            kr("ip"),
            format!("{ip} is {why}: not a real server address"),
        ));
    }
    if is_port_address(ports, &ip) {
        return Err(invalid(
            kr("ip"),
            format!("{ip} is one of vipd's port addresses, not a real server"),
        ));
    }
    if vips.contains(&ip) {
        return Err(invalid(
            kr("ip"),
            format!("{ip} is a VIP of vipd's: traffic to it would loop back into vipd"),
        ));
    }
    let rport = port.unwrap_or(s.port);
    if rport == 0 {
        return Err(invalid(
            kr("port"),
            "port 0 is not a valid real server port",
        ));
    }
    if rmode == FwdMode::Nat && ip.is_ipv4() != s.vip.is_ipv4() {
        return Err(invalid(
            kr("ip"),
            format!(
                "NAT between {} and {ip} mixes IPv4 and IPv6; use the VIP's family",
                s.vip
            ),
        ));
    }
    if rmode != FwdMode::Nat && port.is_some_and(|p| p != s.port) {
        return Err(invalid(
            kr("port"),
            format!(
                "{rmode} mode cannot change the port ({} -> {rport}): the packet reaches the real server unchanged",
                s.port
            ),
        ));
    }
    if rmode == FwdMode::Dr && ip.is_ipv4() != s.vip.is_ipv4() {
        return Err(invalid(
            kr("ip"),
            "DR forwards the client's packet unchanged, so the real server must have the VIP's family",
        ));
    }
    let route = snapshot::route(ports, &ip);
    if rmode == FwdMode::Dr {
        match route {
            Some(r) if r.on_link && usize::from(r.port) != vip_port => {
                return Err(invalid(
                    kr("ip"),
                    format!(
                        "{ip} is on port `{}` but the VIP is on port `{}`: DR only rewrites the MAC, so both must share a segment",
                        config.ports[usize::from(r.port)].name, config.ports[vip_port].name
                    ),
                ));
            }
            Some(r) if r.on_link => {}
            _ => {
                return Err(invalid(
                    kr("ip"),
                    format!("{ip} is not on-link on any port (DR needs the real server on a port's segment)"),
                ))
            }
        }
    }
    let Some(route) = route else {
        return Err(invalid(
            kr("ip"),
            format!("{ip} is neither on-link on a port nor reachable through a port's gateway"),
        ));
    };
    let egress_port = usize::from(route.port);
    if rmode == FwdMode::Tunnel && s.vip.is_ipv6() {
        let egress = &config.ports[egress_port];
        let outer = if ip.is_ipv4() {
            tunnel::OVERHEAD_V4
        } else {
            tunnel::OVERHEAD_V6
        };
        let inner_mtu = egress.mtu.saturating_sub(outer as u16);
        if inner_mtu < 1280 {
            return Err(invalid(
                kr("ip"),
                format!(
                    "the tunnel to {ip} through port `{}` (mtu {}) leaves {inner_mtu} bytes for IPv6 packets, below IPv6's minimum MTU 1280; raise the port's mtu",
                    egress.name, egress.mtu
                ),
            ));
        }
    }
    Ok(ValidRealServer {
        ip,
        port: rport,
        weight,
        mode: rmode,
        sorry: false,
        check: None,
        egress_port,
    })
}

/// Defaults of a health check.
const DEFAULT_INTERVAL_S: f64 = 2.0;
const DEFAULT_TIMEOUT_S: f64 = 1.0;
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;

/// A key of a real server's check: from its override or from the service's `health_check`.
struct Layered<'a> {
    base: Option<&'a HealthCheckConfig>,
    over: Option<&'a HealthCheckConfig>,
}

impl Layered<'_> {
    /// The value of a key and whether the real server's override set it.
    fn get<T>(&self, f: impl Fn(&HealthCheckConfig) -> Option<T>) -> (Option<T>, bool) {
        match self.over.and_then(&f) {
            Some(v) => (Some(v), true),
            None => (self.base.and_then(f), false),
        }
    }
}

/// The real server's check: the service's `health_check` with the real server's override on
/// top. Errors name the level the bad key came from: `services[i].health_check.KEY` or
/// `services[i].real_servers[j].health_check.KEY`.
fn check_spec(
    s: &ServiceConfig,
    over: Option<&HealthCheckConfig>,
    rs: &ValidRealServer,
    ks: &dyn Fn(&str) -> String,
    kr: &dyn Fn(&str) -> String,
) -> Result<Option<CheckSpec>, Invalid> {
    let base = s.health_check.as_ref();
    if base.is_some_and(|b| b.address.is_some()) {
        return Err(invalid(
            ks("health_check.address"),
            "an address to check belongs to a real server's health_check, not the service's",
        ));
    }
    if base.is_none() && over.is_none() {
        return Ok(None);
    }
    let l = Layered { base, over };
    let key = |name: &str, from_override: bool| {
        if from_override {
            kr(&format!("health_check.{name}"))
        } else {
            ks(&format!("health_check.{name}"))
        }
    };
    let (kind, kind_o) = l.get(|c| c.kind.clone());
    let (interval, interval_o) = l.get(|c| c.interval);
    let interval = interval.unwrap_or(DEFAULT_INTERVAL_S);
    let (timeout, timeout_o) = l.get(|c| c.timeout);
    let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT_S.min(interval));
    let (rise, rise_o) = l.get(|c| c.rise);
    let (fall, fall_o) = l.get(|c| c.fall);
    let (port, port_o) = l.get(|c| c.port);
    let (path, path_o) = l.get(|c| c.path.clone());
    let (status, status_o) = l.get(|c| c.status);
    let (host, host_o) = l.get(|c| c.host.clone());
    let address = over.and_then(|o| o.address).unwrap_or(rs.ip);
    if !(0.1..=3600.0).contains(&interval) {
        return Err(invalid(
            key("interval", interval_o),
            format!("{interval} is out of range 0.1..=3600 seconds"),
        ));
    }
    if !(0.01..=interval).contains(&timeout) {
        return Err(invalid(
            key("timeout", timeout_o),
            format!("{timeout} s is out of range 0.01..=interval ({interval} s): a check must end before the next one starts"),
        ));
    }
    for (name, v, from_override) in [
        ("rise", rise.unwrap_or(DEFAULT_RISE), rise_o),
        ("fall", fall.unwrap_or(DEFAULT_FALL), fall_o),
    ] {
        if !(1..=100).contains(&v) {
            return Err(invalid(
                key(name, from_override),
                format!("{v} is out of range 1..=100"),
            ));
        }
    }
    let port = port.unwrap_or(rs.port);
    if port == 0 {
        return Err(invalid(key("port", port_o), "port 0 cannot be checked"));
    }
    if let Some(why) = not_unicast(&address) {
        return Err(invalid(
            kr("health_check.address"),
            format!("{address} is {why}"),
        ));
    }
    let kind = match kind.as_deref().unwrap_or("tcp") {
        "none" => return Ok(None),
        "tcp" => {
            for (name, set, from_override) in [
                ("path", path.is_some(), path_o),
                ("status", status.is_some(), status_o),
                ("host", host.is_some(), host_o),
            ] {
                if set {
                    return Err(invalid(
                        key(name, from_override),
                        format!("`{name}` belongs to an http check; this one is tcp (set type = \"http\")"),
                    ));
                }
            }
            CheckKind::Tcp
        }
        "http" => {
            let path = path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/')
                || path.len() > 1024
                || path.bytes().any(|b| b <= b' ' || b == 0x7f)
            {
                return Err(invalid(
                    key("path", path_o),
                    format!("`{path}` is not an HTTP path (starts with `/`, no spaces or control characters, at most 1024 bytes)"),
                ));
            }
            let status = status.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(invalid(
                    key("status", status_o),
                    format!("{status} is not an HTTP status (100..=599)"),
                ));
            }
            if let Some(h) = &host {
                if h.is_empty() || h.len() > 255 || h.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(invalid(key("host", host_o), format!("`{h}` is not a host name")));
                }
            }
            CheckKind::Http { path, status, host }
        }
        other => {
            return Err(invalid(
                key("type", kind_o),
                format!("unknown check type `{other}` (expected tcp, http or none; UDP services are checked over TCP or HTTP on a port the server also serves)"),
            ))
        }
    };
    Ok(Some(CheckSpec {
        kind,
        target: SocketAddr::new(address, port),
        interval: Duration::from_secs_f64(interval),
        timeout: Duration::from_secs_f64(timeout),
        rise: rise.unwrap_or(DEFAULT_RISE),
        fall: fall.unwrap_or(DEFAULT_FALL),
    }))
}

/// CPUs of the machine. Not `available_parallelism`: that follows the calling thread's
/// affinity, and a reload runs on the control thread, which the EAL pinned to one core.
fn core_count() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).max(1)
}
