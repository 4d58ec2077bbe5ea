//! The configuration model: what the TOML file (and the API, and `vipctl save`) say, with the
//! defaults. Only shapes and defaults live here; [`super::validate`] decides what is acceptable.
//! docs/configuration.md documents every key.

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use vipd_dataplane::backend_stats::DEFAULT_BACKEND_SLOTS;
use vipd_dataplane::flow::Timeouts;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
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
    /// Neighbour (ARP/ND) resolution timers.
    #[serde(default)]
    pub neighbour_timers: NeighbourTimers,
    /// HTTP API and metrics.
    #[serde(default)]
    pub api: ApiConfig,
    /// The box's side of the health checks (the mass-transition guard).
    #[serde(default)]
    pub health: HealthConfig,
    /// NIC ports.
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    /// Static neighbours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub neighbours: Vec<NeighbourConfig>,
    /// Virtual services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// VIP announcement over BGP (scale-out behind ECMP); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpConfig>,
    /// Where the operator's state (drains, box drain, unsaved API changes, health) is kept
    /// across restarts.
    #[serde(default)]
    pub state: StateConfig,
}

/// `[state]`: the state file (`crate::state_file`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The file (written atomically: a temporary file, fsync, rename, fsync of the directory).
    pub file: PathBuf,
}

/// Where the state file is unless `[state] file` says otherwise (the unit's StateDirectory).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/vipd/state.json";

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            file: PathBuf::from(DEFAULT_STATE_FILE),
        }
    }
}

/// `[eal]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EalConfig {
    /// `--file-prefix`: distinct per vipd instance on one host.
    pub file_prefix: String,
    /// Use hugepages; false runs with `--no-huge` (tests, small machines).
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// Real servers vipd can hold at once (all services together): sizes each worker's
    /// per-real-server statistics.
    pub max_real_servers: u32,
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
            max_real_servers: DEFAULT_BACKEND_SLOTS as u32,
        }
    }
}

/// Default of `flows.persistence_per_worker` (about 7 MiB per worker).
pub const DEFAULT_PERSISTENCE_PER_WORKER: usize = 65_536;

/// `[flows]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// IPv4 connections per worker flow table (fixed at start).
    pub capacity_per_worker: usize,
    /// IPv6 connections per worker flow table (fixed at start); default a quarter of
    /// `capacity_per_worker` (at least 1024): an IPv6 slot is twice an IPv4 one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_per_worker_v6: Option<usize>,
    /// Maglev table size (a prime).
    pub maglev_table_size: u32,
    /// IPVS's `sloppy_tcp`: any TCP segment without a flow entry creates one (default: only a
    /// SYN does; other segments go where the consistent hash says, creating no state).
    pub sloppy_tcp: bool,
    /// Datagrams whose later fragments each worker can follow at once (restart-only).
    pub fragment_slots: usize,
    /// Persistence entries (client networks of persistent services) each worker holds
    /// (restart-only).
    pub persistence_per_worker: usize,
    /// Timeouts in seconds.
    pub timeouts: TimeoutConfig,
}

impl FlowConfig {
    /// The IPv6 connections per worker in force: `capacity_per_worker_v6`, or its default.
    pub fn v6_capacity(&self) -> usize {
        self.capacity_per_worker_v6
            .unwrap_or((self.capacity_per_worker / 4).max(1024))
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            capacity_per_worker: 1 << 20,
            capacity_per_worker_v6: None,
            maglev_table_size: 65537,
            sloppy_tcp: false,
            fragment_slots: vipd_dataplane::fwd::fragment::FRAGMENT_SLOTS,
            persistence_per_worker: DEFAULT_PERSISTENCE_PER_WORKER,
            timeouts: TimeoutConfig::default(),
        }
    }
}

/// `[flows.timeouts]`, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
    pub fn to_timeouts(self) -> Timeouts {
        Timeouts {
            tcp_syn: self.tcp_syn,
            tcp_established: self.tcp_established,
            tcp_fin: self.tcp_fin,
            tcp_time_wait: self.tcp_time_wait,
            tcp_close: self.tcp_close,
            udp: self.udp,
        }
    }

    /// The keys and values, in file order (for validation messages and listings).
    pub fn entries(&self) -> [(&'static str, u32); 6] {
        [
            ("tcp_syn", self.tcp_syn),
            ("tcp_established", self.tcp_established),
            ("tcp_fin", self.tcp_fin),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("udp", self.udp),
        ]
    }
}

/// `[neighbour_timers]`, seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the HTTP API and `/metrics`.
    pub listen: SocketAddr,
    /// File holding the admin bearer token: every route, changes too (a token is mandatory
    /// when `listen` is not a loopback address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// File holding the read-only bearer token: `GET` and `HEAD` only (Prometheus holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_token_file: Option<PathBuf>,
    /// A local admin socket (Unix, mode 0600, no token: the file's permissions are the
    /// authentication) that vipctl uses on the box.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// PEM certificate chain: with `tls_key`, `listen` speaks HTTPS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key of `tls_certificate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Most connections `listen` holds at once; at the cap a new connection replaces the
    /// oldest one that has not yet shown a token, or is refused.
    pub max_connections: u32,
    /// Seconds a client has for a request's head (and its body): from the connection's
    /// start, or from the previous answer on a kept-alive connection; TLS handshakes too.
    pub header_timeout: f64,
    /// Seconds a connection may go without a byte moving either way while vipd is not
    /// working on one of its requests (an answer the client does not read, say).
    pub idle_timeout: f64,
}

/// Default of `api.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
            token_file: None,
            read_token_file: None,
            socket: None,
            tls_certificate: None,
            tls_key: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: 10.0,
            idle_timeout: 30.0,
        }
    }
}

/// `[health]`: what the box makes of its health checks' verdicts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Most of a service's checked real servers (percent) that may go down within one check
    /// interval; further down verdicts are held and alerted (at least one per interval is
    /// always applied). 100 turns the guard off.
    pub max_down_percent: u32,
}

/// Default of `health.max_down_percent`.
pub const DEFAULT_MAX_DOWN_PERCENT: u32 = 50;

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            max_down_percent: DEFAULT_MAX_DOWN_PERCENT,
        }
    }
}

/// `[[ports]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// DPDK device: a PCI address (`0000:01:00.0`) or a virtual device string
    /// (`net_af_packet0,iface=eth1`).
    pub device: String,
    /// IPv4 address with on-link prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with on-link prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Net>,
    /// Override of the port's MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// IPv4 default gateway through this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway through this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// IP MTU.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// TUN mode: IPv4 prefix the outer source address is picked from per flow (default: the
    /// port's address), so a real server's NIC RSS spreads tunnelled flows over its queues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_source4: Option<Ipv4Net>,
    /// TUN mode: the same for IPv6 outer headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_source6: Option<Ipv6Net>,
    /// Name of the kernel interface vipd creates for this port (the exception path): it
    /// carries the port's MAC and addresses, so the box's own stack (health checks, BGP,
    /// ssh, ping) talks through the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_interface: Option<String>,
    /// `[[ports.vlans]]`: 802.1Q VLANs the port carries as a trunk, each its own interface
    /// (addresses, gateways, neighbours); the port's own addresses are its untagged traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanConfig>,
    /// `[ports.bond]`: the port is a DPDK bonding device (`device = "net_bondingN"`) over
    /// these members; vipd creates the members and the bond, and uses only the bond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<BondConfig>,
}

/// `[ports.bond]`: a port made of several devices by DPDK's bonding PMD (`net_bonding`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BondConfig {
    /// `active-backup` (DPDK mode 1): one member carries the traffic, another takes over
    /// when its link goes down. `lacp` (802.3ad, mode 4): every member the LACP partner
    /// aggregates carries traffic (docs/configuration.md).
    pub mode: String,
    /// The member devices, as a port's `device` is written (a vdev string or a PCI address).
    /// Active-backup: the first carries the traffic from the start; on its link's failure the
    /// next whose link is up takes over, and keeps it (no move back while its link stays up).
    pub members: Vec<String>,
    /// `lacp` only: what picks the member a frame leaves on, `l34` (the default: IP
    /// addresses and ports), `l23` (MACs and IP addresses) or `l2` (MACs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmit_policy: Option<String>,
    /// Rounds of gratuitous ARP and unsolicited Neighbour Advertisements sent after the
    /// active member changes (0: none), [`crate::announce::ROUND_INTERVAL`] apart.
    #[serde(default = "default_gratuitous_arp")]
    pub gratuitous_arp: u32,
}

fn default_gratuitous_arp() -> u32 {
    crate::announce::DEFAULT_ROUNDS
}

/// `[[ports.vlans]]`: one 802.1Q VLAN of a port. It shares the port's MAC and MTU.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    /// The VLAN id, 1..=4094.
    pub id: u16,
    /// IPv4 address with on-link prefix in the VLAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with on-link prefix in the VLAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 default gateway in the VLAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway in the VLAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Name of the VLAN's own kernel interface (the exception path, as a port's
    /// `kernel_interface`): it carries the port's MAC and the VLAN's addresses, untagged;
    /// vipd removes the VLAN's tag on the frames it hands over and adds it to those the
    /// kernel sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_interface: Option<String>,
    /// A VLAN inside this one (QinQ, 802.1ad): not supported, refused by the validator with
    /// its reason rather than as an unknown key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<toml::Value>,
}

fn default_mtu() -> u16 {
    1500
}

/// `[[neighbours]]`: a static neighbour entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    /// Address.
    pub ip: IpAddr,
    /// MAC.
    pub mac: String,
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
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

    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" | "TCP" => Ok(Proto::Tcp),
            "udp" | "UDP" => Ok(Proto::Udp),
            _ => Err(format!("unknown protocol `{s}` (expected tcp or udp)")),
        }
    }
}

/// `[[services]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Virtual IP.
    pub vip: IpAddr,
    /// `tcp` or `udp`.
    pub proto: Proto,
    /// Virtual port.
    pub port: u16,
    /// `maglev` (`mh`), `wlc`, `lc`, `rr`, `wrr` or `sh`.
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// The scheduler's flags (ipvsadm `-b`): `sh-fallback`, `sh-port` (scheduler `sh` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler_flags: Vec<String>,
    /// Persistence (ipvsadm `-p`): seconds a client (or client network) keeps its real
    /// server after its last new connection. None: not persistent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence_timeout: Option<u32>,
    /// The client network persistence groups by (ipvsadm `-M`): an IPv4 netmask
    /// (`"255.255.255.0"`) or a prefix length (`"24"`, `"/64"`). Default: the whole address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence_netmask: Option<String>,
    /// Default forwarding mode of its real servers: `nat`, `fnat`, `dr` or `tunnel`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Full-NAT: the local addresses its connections to full-NAT real servers come from
    /// (IPv4; the box answers ARP for them). Required with a full-NAT real server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_addresses: Vec<IpAddr>,
    /// Full-NAT: the local ports, `"FIRST-LAST"` (default `"1024-65535"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_ports: Option<String>,
    /// Name of the port the VIP is reached on (default: the port whose subnet holds the VIP,
    /// else the first port). DR real servers must be on-link on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// What happens to the flows of a real server whose health checks fail: `drop` (IPVS
    /// `expire_nodest_conn`: the next packet is dropped and the entry removed, so the client's
    /// retransmission is scheduled to a live real server) or `keep`.
    #[serde(default = "default_dead_flows")]
    pub dead_flows: String,
    /// What the consistent hash covers: `5-tuple` (client address and port, VIP and port,
    /// protocol) or `3-tuple` (client address, VIP, protocol: a client's packets all go to one
    /// real server, later fragments without their first included). `3-tuple` needs maglev.
    #[serde(default = "default_hash", skip_serializing_if = "is_default_hash")]
    pub hash: String,
    /// A real server that takes new flows only while no other can (keepalived's
    /// `sorry_server`): `"10.0.0.9:8080"`, or an address (the service port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<String>,
    /// Health checks of its real servers (none when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// keepalived's `alpha`: a real server with a health check starts down, when vipd starts
    /// or the server is added, until its first good check (without it: up until `fall`
    /// failed checks).
    #[serde(default, skip_serializing_if = "is_false")]
    pub alpha: bool,
    /// Real servers.
    #[serde(default)]
    pub real_servers: Vec<RealServerConfig>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_scheduler() -> String {
    "maglev".into()
}

fn default_mode() -> String {
    "nat".into()
}

fn default_dead_flows() -> String {
    "drop".into()
}

fn default_hash() -> String {
    "5-tuple".into()
}

fn is_default_hash(h: &str) -> bool {
    h == "5-tuple"
}

/// `[[services.real_servers]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealServerConfig {
    /// Address.
    pub ip: IpAddr,
    /// Port (default: the service port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Weight (default 1; 0 = drained).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Mode override for this real server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Upper connection threshold (ipvsadm `-x`): at this many connections (active +
    /// inactive, whole box) it takes no new one. None or 0: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_threshold: Option<u32>,
    /// Lower connection threshold (ipvsadm `-y`): an overloaded real server takes new
    /// connections again below it (default: below 3/4 of the upper one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_threshold: Option<u32>,
    /// Overrides of the service's health check for this real server (keepalived habit: a
    /// different port, path or host; `type = "none"` exempts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
}

fn default_weight() -> u32 {
    1
}

/// `health_check` of a service, or a real server's override of it. Every key is optional:
/// a service's unset keys take the defaults, a real server's take the service's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `tcp` (connect), `http` (GET, expected status) or `none`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Seconds between checks (default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    /// Seconds a check may take (default 1); must be below `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Consecutive successes that bring a down real server back (default 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rise: Option<u32>,
    /// Consecutive failures that take a real server down (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fall: Option<u32>,
    /// Address to check (default: the real server's address; real servers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    /// Port to check (default: the real server's port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP: path of the GET (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP: the status a healthy server answers (default 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// HTTP: Host header (default: the checked address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `[bgp]`: vipd announces its VIPs through a BGP daemon running on the box (docs/scale-out.md).
/// A VIP is announced while vipd forwards, the box is not drained and one of the VIP's real
/// servers is up; withdrawn otherwise, and before vipd stops.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BgpConfig {
    /// The daemon vipd drives: `bird` (BIRD 2, through its control socket).
    pub daemon: String,
    /// The daemon's control socket.
    pub socket: PathBuf,
    /// The file vipd writes with one `protocol static` per VIP, which bird.conf includes.
    pub protocols_file: PathBuf,
    /// Prefix of the names of the protocols vipd writes (and owns) in bird.
    pub protocol_prefix: String,
    /// Seconds between checks that the daemon still holds what vipd asked for (it may have
    /// been restarted or reconfigured by hand).
    pub reconcile_interval: f64,
    /// Seconds vipd keeps forwarding after withdrawing every VIP on SIGTERM/SIGINT, so the
    /// router has moved the flows to other boxes before this one stops.
    pub withdraw_wait: f64,
}

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            daemon: "bird".into(),
            socket: PathBuf::from("/run/bird/bird.ctl"),
            protocols_file: PathBuf::from("/var/lib/vipd/bird-vips.conf"),
            protocol_prefix: "vipd".into(),
            reconcile_interval: 5.0,
            withdraw_wait: 1.0,
        }
    }
}

impl BgpConfig {
    /// The keys and values as written (for reload refusals and listings).
    pub fn entries(&self) -> [(&'static str, String); 6] {
        [
            ("daemon", self.daemon.clone()),
            ("socket", self.socket.display().to_string()),
            ("protocols_file", self.protocols_file.display().to_string()),
            ("protocol_prefix", self.protocol_prefix.clone()),
            ("reconcile_interval", self.reconcile_interval.to_string()),
            ("withdraw_wait", self.withdraw_wait.to_string()),
        ]
    }
}
