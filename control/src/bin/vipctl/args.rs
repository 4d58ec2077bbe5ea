//! The command line, ipvsadm's way: one command (`-A`, `-a`, `-L`, `--set`, ... or a word such
//! as `drain`) and the options that go with it, checked against a table of which options each
//! command takes (ipvsadm's `commands_v_options`), so a misplaced option is named rather than
//! ignored. The result is an [`Action`]: what to ask vipd, with the JSON to send.

use crate::usage::USAGE;
use clap::{ArgAction, Parser, Subcommand};
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Where vipd's API listens unless told otherwise (vipd's `[api] listen` default).
pub const DEFAULT_API: &str = "127.0.0.1:9180";

#[derive(Parser, Debug, Default)]
#[command(
    name = "vipctl",
    version,
    override_help = USAGE,
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[arg(short = 'A', long = "add-service", global = true)]
    add_service: bool,
    #[arg(short = 'E', long = "edit-service", global = true)]
    edit_service: bool,
    #[arg(short = 'D', long = "delete-service", global = true)]
    delete_service: bool,
    #[arg(short = 'a', long = "add-server", global = true)]
    add_server: bool,
    #[arg(short = 'e', long = "edit-server", global = true)]
    edit_server: bool,
    #[arg(short = 'd', long = "delete-server", global = true)]
    delete_server: bool,
    #[arg(short = 'L', long = "list", short_alias = 'l', global = true)]
    list: bool,
    #[arg(short = 'Z', long = "zero", global = true)]
    zero: bool,
    #[arg(short = 'S', long = "save", global = true)]
    save: bool,
    #[arg(long = "set", num_args = 3, value_names = ["TCP", "TCPFIN", "UDP"], global = true)]
    set: Option<Vec<u32>>,
    #[arg(short = 'C', long = "clear", global = true)]
    clear: bool,
    #[arg(short = 'R', long = "restore", global = true)]
    restore: bool,

    #[arg(short = 't', long = "tcp-service", global = true)]
    tcp_service: Option<String>,
    #[arg(short = 'u', long = "udp-service", global = true)]
    udp_service: Option<String>,
    #[arg(short = 's', long = "scheduler", global = true)]
    scheduler: Option<String>,
    #[arg(short = 'M', long = "mode", global = true)]
    mode: Option<String>,
    #[arg(short = 'r', long = "real-server", global = true)]
    real_server: Option<String>,
    #[arg(short = 'g', long = "gatewaying", global = true)]
    gatewaying: bool,
    #[arg(short = 'i', long = "ipip", global = true)]
    ipip: bool,
    #[arg(short = 'm', long = "masquerading", global = true)]
    masquerading: bool,
    #[arg(short = 'w', long = "weight", global = true)]
    weight: Option<u32>,
    #[arg(long = "dead-flows", global = true)]
    dead_flows: Option<String>,
    #[arg(long = "sorry-server", global = true)]
    sorry_server: Option<String>,
    #[arg(long = "interface", global = true)]
    interface: Option<String>,

    #[arg(long = "check", global = true)]
    check: Option<String>,
    #[arg(long = "check-path", global = true)]
    check_path: Option<String>,
    #[arg(long = "check-status", global = true)]
    check_status: Option<u16>,
    #[arg(long = "check-host", global = true)]
    check_host: Option<String>,
    #[arg(long = "check-port", global = true)]
    check_port: Option<u16>,
    #[arg(long = "check-address", global = true)]
    check_address: Option<IpAddr>,
    #[arg(long = "check-interval", global = true)]
    check_interval: Option<f64>,
    #[arg(long = "check-timeout", global = true)]
    check_timeout: Option<f64>,
    #[arg(long = "rise", global = true)]
    rise: Option<u32>,
    #[arg(long = "fall", global = true)]
    fall: Option<u32>,

    #[arg(short = 'n', long = "numeric", global = true)]
    numeric: bool,
    #[arg(short = 'c', long = "connection", global = true)]
    connection: bool,
    #[arg(long = "client", global = true)]
    client: Option<IpAddr>,
    #[arg(long = "limit", global = true)]
    limit: Option<u32>,
    #[arg(long = "timeout", global = true)]
    timeout: bool,
    #[arg(long = "stats", global = true)]
    stats: bool,
    #[arg(long = "rate", global = true)]
    rate: bool,
    #[arg(long = "exact", global = true)]
    exact: bool,
    #[arg(long = "json", global = true)]
    json: bool,

    /// vipd's API address.
    #[arg(long = "api", env = "VIPCTL_API", default_value = DEFAULT_API, global = true)]
    pub api: String,
    /// File holding the API's bearer token.
    #[arg(long = "token-file", env = "VIPCTL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    #[arg(short = 'h', long = "help", action = ArgAction::Help, global = true)]
    help: Option<bool>,
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    #[command(subcommand)]
    verb: Option<Verb>,
}

/// The commands that are words rather than ipvsadm letters.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    /// Weight 0 for a real server.
    Drain,
    /// Health check state.
    Health,
    /// Ports, neighbours, generation.
    Status,
    /// Dataplane counters.
    Stats,
    /// Prometheus text.
    Metrics,
    /// Re-read the configuration file.
    Reload,
    /// Same as -S.
    Save,
}

/// A virtual service as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// VIP and port.
    pub addr: SocketAddr,
}

impl Service {
    /// `tcp/10.0.0.1/80`: the path part of the API and the `service` filter.
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.proto, self.addr.ip(), self.addr.port())
    }
}

/// A real server of a service: address and port (the service port when not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Address.
    pub ip: IpAddr,
    /// Port as given.
    pub port: Option<u16>,
}

impl Server {
    /// Its port, the service's when none was given (as vipd and ipvsadm do).
    pub fn port_in(&self, s: &Service) -> u16 {
        self.port.unwrap_or(s.addr.port())
    }
}

/// Which table `-L` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Scheduler, forward, weight, connections, health.
    Plain,
    /// `--stats`.
    Stats,
    /// `--rate`.
    Rate,
}

/// What vipctl is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `-A`: the service's configuration.
    AddService(Value),
    /// `-E`: a merge patch of the service's configuration.
    EditService(Service, Value),
    /// `-D`.
    DeleteService(Service),
    /// `-a`: the real server's configuration.
    AddServer(Service, Value),
    /// `-e`: a merge patch of the real server's configuration.
    EditServer(Service, Server, Value),
    /// `-d`.
    DeleteServer(Service, Server),
    /// `drain`.
    Drain(Service, Server),
    /// `-L` (also without any command).
    List {
        /// One service only.
        service: Option<Service>,
        /// Which table.
        table: Table,
        /// `--exact`.
        exact: bool,
        /// `--json`.
        json: bool,
    },
    /// `-L -c`.
    Connections {
        /// Filters: service, client, real server; and the sample size.
        query: Vec<(&'static str, String)>,
        /// `--json`.
        json: bool,
    },
    /// `-L --timeout`.
    Timeouts {
        /// `--json`.
        json: bool,
    },
    /// `--set`: the timeouts to change (none when every value is 0).
    SetTimeouts(Map<String, Value>),
    /// `-Z`.
    Zero(Option<Service>),
    /// `-S`, `save`.
    Save,
    /// `health`.
    Health {
        /// One service only.
        service: Option<Service>,
        /// `--json`.
        json: bool,
    },
    /// `status`.
    Status {
        /// `--json`.
        json: bool,
    },
    /// `stats`.
    Stats {
        /// `--json`.
        json: bool,
    },
    /// `metrics`.
    Metrics,
    /// `reload`.
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DeleteService,
    AddServer,
    EditServer,
    DeleteServer,
    Drain,
    List,
    Zero,
    Set,
    Save,
    Health,
    Status,
    Stats,
    Metrics,
    Reload,
}

impl Cmd {
    /// The name in messages (ipvsadm's long option, or the word).
    fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "--add-service (-A)",
            Cmd::EditService => "--edit-service (-E)",
            Cmd::DeleteService => "--delete-service (-D)",
            Cmd::AddServer => "--add-server (-a)",
            Cmd::EditServer => "--edit-server (-e)",
            Cmd::DeleteServer => "--delete-server (-d)",
            Cmd::Drain => "drain",
            Cmd::List => "--list (-L)",
            Cmd::Zero => "--zero (-Z)",
            Cmd::Set => "--set",
            Cmd::Save => "--save (-S)",
            Cmd::Health => "health",
            Cmd::Status => "status",
            Cmd::Stats => "stats",
            Cmd::Metrics => "metrics",
            Cmd::Reload => "reload",
        }
    }
}

/// A usage error: said in one line, exit status 2 (as ipvsadm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Options that go with some commands only.
const SERVICE_KEYS: &[&str] = &[
    "scheduler",
    "mode",
    "dead-flows",
    "sorry-server",
    "interface",
];
const CHECK_KEYS: &[&str] = &[
    "check",
    "check-path",
    "check-status",
    "check-host",
    "check-port",
    "check-interval",
    "check-timeout",
    "rise",
    "fall",
];

/// Which options each command takes (beyond `--api`, `--token-file`, `-h`), and which of them
/// it cannot do without.
fn allowed(cmd: Cmd) -> (Vec<&'static str>, &'static [&'static str]) {
    let v = |parts: &[&[&'static str]]| parts.concat();
    match cmd {
        Cmd::AddService | Cmd::EditService => (
            v(&[&["service", "forward"], SERVICE_KEYS, CHECK_KEYS]),
            &["service"],
        ),
        Cmd::DeleteService => (vec!["service"], &["service"]),
        Cmd::AddServer | Cmd::EditServer => (
            v(&[
                &[
                    "service",
                    "real-server",
                    "forward",
                    "weight",
                    "check-address",
                ],
                CHECK_KEYS,
            ]),
            &["service", "real-server"],
        ),
        Cmd::DeleteServer | Cmd::Drain => {
            (vec!["service", "real-server"], &["service", "real-server"])
        }
        Cmd::List => (
            vec![
                "service",
                "numeric",
                "connection",
                "client",
                "limit",
                "real-server",
                "timeout",
                "stats",
                "rate",
                "exact",
                "json",
            ],
            &[],
        ),
        Cmd::Zero => (vec!["service"], &[]),
        Cmd::Save => (vec!["numeric"], &[]),
        Cmd::Health => (vec!["service", "json"], &[]),
        Cmd::Status | Cmd::Stats => (vec!["json"], &[]),
        Cmd::Set | Cmd::Metrics | Cmd::Reload => (vec![], &[]),
    }
}

fn option_text(name: &str) -> &'static str {
    match name {
        "service" => "-t|-u service-address",
        "real-server" => "-r server-address",
        "forward" => "-g|-i|-m",
        "weight" => "-w",
        "scheduler" => "-s",
        "mode" => "-M",
        "numeric" => "-n",
        "connection" => "-c",
        "dead-flows" => "--dead-flows",
        "sorry-server" => "--sorry-server",
        "interface" => "--interface",
        "check" => "--check",
        "check-path" => "--check-path",
        "check-status" => "--check-status",
        "check-host" => "--check-host",
        "check-port" => "--check-port",
        "check-address" => "--check-address",
        "check-interval" => "--check-interval",
        "check-timeout" => "--check-timeout",
        "rise" => "--rise",
        "fall" => "--fall",
        "client" => "--client",
        "limit" => "--limit",
        "timeout" => "--timeout",
        "stats" => "--stats",
        "rate" => "--rate",
        "exact" => "--exact",
        "json" => "--json",
        _ => "an option",
    }
}

/// `VIP:PORT` or `[VIP6]:PORT`: vipd services always have a port (ipvsadm's port 0 exists only
/// for persistent services, which vipd does not have).
pub fn parse_service(proto: &'static str, text: &str) -> Result<Service, UsageError> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        usage(format!(
            "illegal virtual server address `{text}`: a service address is VIP:PORT ([VIP6]:PORT for IPv6), numeric"
        ))
    })?;
    if addr.port() == 0 {
        return Err(usage(format!(
            "illegal virtual server address `{text}`: port 0 (vipd has no persistent port-0 services)"
        )));
    }
    Ok(Service { proto, addr })
}

/// `RS`, `RS:PORT`, `RS6` or `[RS6]:PORT`.
pub fn parse_server(text: &str) -> Result<Server, UsageError> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(Server {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| Server { ip, port: None })
        .map_err(|_| {
            usage(format!(
                "illegal real server address `{text}`: a server address is IP or IP:PORT ([IP6]:PORT for IPv6), numeric"
            ))
        })
}

fn parse_mode(text: &str) -> Result<&'static str, UsageError> {
    match text {
        "nat" | "masq" | "masquerading" => Ok("nat"),
        "dr" | "route" | "gatewaying" => Ok("dr"),
        "tunnel" | "tun" | "ipip" => Ok("tunnel"),
        other if other.parse::<IpAddr>().is_ok() || other.contains('.') => Err(usage(format!(
            "-M `{other}`: in vipctl -M is the forwarding mode (nat, dr or tunnel); vipd has no persistence netmask"
        ))),
        other => Err(usage(format!(
            "-M `{other}`: unknown forwarding mode (expected nat, dr or tunnel)"
        ))),
    }
}

impl Cli {
    /// Every option given, by its name in [`allowed`].
    fn given(&self) -> Vec<&'static str> {
        let service = self.tcp_service.is_some() || self.udp_service.is_some();
        let forward = self.gatewaying || self.ipip || self.masquerading;
        [
            ("service", service),
            ("real-server", self.real_server.is_some()),
            ("forward", forward),
            ("weight", self.weight.is_some()),
            ("scheduler", self.scheduler.is_some()),
            ("mode", self.mode.is_some()),
            ("dead-flows", self.dead_flows.is_some()),
            ("sorry-server", self.sorry_server.is_some()),
            ("interface", self.interface.is_some()),
            ("check", self.check.is_some()),
            ("check-path", self.check_path.is_some()),
            ("check-status", self.check_status.is_some()),
            ("check-host", self.check_host.is_some()),
            ("check-port", self.check_port.is_some()),
            ("check-address", self.check_address.is_some()),
            ("check-interval", self.check_interval.is_some()),
            ("check-timeout", self.check_timeout.is_some()),
            ("rise", self.rise.is_some()),
            ("fall", self.fall.is_some()),
            ("numeric", self.numeric),
            ("connection", self.connection),
            ("client", self.client.is_some()),
            ("limit", self.limit.is_some()),
            ("timeout", self.timeout),
            ("stats", self.stats),
            ("rate", self.rate),
            ("exact", self.exact),
            ("json", self.json),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name)
        .collect()
    }

    fn which_command(&self) -> Result<Cmd, UsageError> {
        if self.clear {
            return Err(usage(
                "-C (clear) is not offered: delete services one by one (-D), or reload a configuration without them",
            ));
        }
        if self.restore {
            return Err(usage(
                "-R (restore) is not offered: put the saved configuration (vipctl -S) in vipd's file and run vipctl reload",
            ));
        }
        let verb = self.verb.map(|v| match v {
            Verb::Drain => Cmd::Drain,
            Verb::Health => Cmd::Health,
            Verb::Status => Cmd::Status,
            Verb::Stats => Cmd::Stats,
            Verb::Metrics => Cmd::Metrics,
            Verb::Reload => Cmd::Reload,
            Verb::Save => Cmd::Save,
        });
        let flags = [
            (self.add_service, Cmd::AddService),
            (self.edit_service, Cmd::EditService),
            (self.delete_service, Cmd::DeleteService),
            (self.add_server, Cmd::AddServer),
            (self.edit_server, Cmd::EditServer),
            (self.delete_server, Cmd::DeleteServer),
            (self.list, Cmd::List),
            (self.zero, Cmd::Zero),
            (self.save, Cmd::Save),
            (self.set.is_some(), Cmd::Set),
        ];
        let mut cmds: Vec<Cmd> = flags
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| c)
            .chain(verb)
            .collect();
        cmds.dedup();
        match cmds[..] {
            [] => Ok(Cmd::List),
            [c] => Ok(c),
            _ => Err(usage(format!(
                "multiple commands specified: {}",
                cmds.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn service(&self) -> Result<Option<Service>, UsageError> {
        match (&self.tcp_service, &self.udp_service) {
            (Some(_), Some(_)) => Err(usage("-t and -u together: a service is TCP or UDP")),
            (Some(t), None) => parse_service("tcp", t).map(Some),
            (None, Some(u)) => parse_service("udp", u).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// `-g|-i|-m` as a mode name.
    fn forward(&self) -> Result<Option<&'static str>, UsageError> {
        match (self.gatewaying, self.ipip, self.masquerading) {
            (false, false, false) => Ok(None),
            (true, false, false) => Ok(Some("dr")),
            (false, true, false) => Ok(Some("tunnel")),
            (false, false, true) => Ok(Some("nat")),
            _ => Err(usage(
                "multiple forwarding methods: give one of -g, -i and -m",
            )),
        }
    }

    /// The `health_check` keys given (`None`: none given). `--check none` on a service edit
    /// removes its check.
    fn check_keys(&self, for_server: bool) -> Option<Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("type", self.check.clone().map(Value::from));
        put("path", self.check_path.clone().map(Value::from));
        put("status", self.check_status.map(Value::from));
        put("host", self.check_host.clone().map(Value::from));
        put("port", self.check_port.map(Value::from));
        if for_server {
            put(
                "address",
                self.check_address.map(|a| Value::from(a.to_string())),
            );
        }
        put("interval", self.check_interval.map(Value::from));
        put("timeout", self.check_timeout.map(Value::from));
        put("rise", self.rise.map(Value::from));
        put("fall", self.fall.map(Value::from));
        (!m.is_empty()).then_some(Value::Object(m))
    }

    fn service_keys(&self) -> Result<Map<String, Value>, UsageError> {
        let mode = match (&self.mode, self.forward()?) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "-M and -g|-i|-m together: give the service's mode once",
                ))
            }
            (Some(m), None) => Some(parse_mode(m)?),
            (None, f) => f,
        };
        let mut m = Map::new();
        if let Some(s) = &self.scheduler {
            m.insert("scheduler".into(), s.clone().into());
        }
        if let Some(mode) = mode {
            m.insert("mode".into(), mode.into());
        }
        if let Some(d) = &self.dead_flows {
            m.insert("dead_flows".into(), d.clone().into());
        }
        if let Some(s) = &self.sorry_server {
            m.insert("sorry_server".into(), s.clone().into());
        }
        if let Some(i) = &self.interface {
            m.insert("interface".into(), i.clone().into());
        }
        Ok(m)
    }

    fn server_keys(&self) -> Result<Map<String, Value>, UsageError> {
        let mut m = Map::new();
        if let Some(mode) = self.forward()? {
            m.insert("mode".into(), mode.into());
        }
        if let Some(w) = self.weight {
            m.insert("weight".into(), w.into());
        }
        if let Some(c) = self.check_keys(true) {
            m.insert("health_check".into(), c);
        }
        Ok(m)
    }

    /// The action, or the usage error.
    pub fn action(&self) -> Result<Action, UsageError> {
        let cmd = self.which_command()?;
        let (ok, required) = allowed(cmd);
        for name in self.given() {
            if !ok.contains(&name) {
                return Err(usage(format!(
                    "illegal option {} with {}",
                    option_text(name),
                    cmd.name()
                )));
            }
        }
        let given = self.given();
        for name in required {
            if !given.contains(name) {
                return Err(usage(format!("{} needs {}", cmd.name(), option_text(name))));
            }
        }
        let service = self.service()?;
        let server = self.real_server.as_deref().map(parse_server).transpose()?;
        let need = |s: Option<Service>| s.ok_or_else(|| usage("a service is needed"));
        let need_rs = |r: Option<Server>| r.ok_or_else(|| usage("a real server is needed"));
        Ok(match cmd {
            Cmd::AddService => {
                let s = need(service)?;
                let mut body = Map::new();
                body.insert("vip".into(), s.addr.ip().to_string().into());
                body.insert("proto".into(), s.proto.into());
                body.insert("port".into(), s.addr.port().into());
                body.extend(self.service_keys()?);
                if let Some(c) = self.check_keys(false) {
                    if self.check.as_deref() != Some("none") {
                        body.insert("health_check".into(), c);
                    }
                }
                Action::AddService(Value::Object(body))
            }
            Cmd::EditService => {
                let s = need(service)?;
                let mut patch = self.service_keys()?;
                if let Some(c) = self.check_keys(false) {
                    // `--check none` removes the service's check (a merge patch's null).
                    let c = if self.check.as_deref() == Some("none") {
                        Value::Null
                    } else {
                        c
                    };
                    patch.insert("health_check".into(), c);
                }
                if patch.is_empty() {
                    return Err(usage(
                        "--edit-service (-E): nothing to change (give -s, -M, --dead-flows, --sorry-server, --interface or check options)",
                    ));
                }
                Action::EditService(s, Value::Object(patch))
            }
            Cmd::DeleteService => Action::DeleteService(need(service)?),
            Cmd::AddServer => {
                let s = need(service)?;
                let r = need_rs(server)?;
                let mut body = Map::new();
                body.insert("ip".into(), r.ip.to_string().into());
                if let Some(p) = r.port {
                    body.insert("port".into(), p.into());
                }
                body.extend(self.server_keys()?);
                Action::AddServer(s, Value::Object(body))
            }
            Cmd::EditServer => {
                let s = need(service)?;
                let r = need_rs(server)?;
                let patch = self.server_keys()?;
                if patch.is_empty() {
                    return Err(usage(
                        "--edit-server (-e): nothing to change (give -w, -g|-i|-m or check options)",
                    ));
                }
                Action::EditServer(s, r, Value::Object(patch))
            }
            Cmd::DeleteServer => Action::DeleteServer(need(service)?, need_rs(server)?),
            Cmd::Drain => Action::Drain(need(service)?, need_rs(server)?),
            Cmd::List => self.list_action(service, server)?,
            Cmd::Zero => Action::Zero(service),
            Cmd::Set => {
                let v = self.set.clone().unwrap_or_default();
                let mut m = Map::new();
                for (key, secs) in ["tcp_established", "tcp_fin", "udp"].into_iter().zip(v) {
                    if secs != 0 {
                        m.insert(key.into(), secs.into());
                    }
                }
                Action::SetTimeouts(m)
            }
            Cmd::Save => Action::Save,
            Cmd::Health => Action::Health {
                service,
                json: self.json,
            },
            Cmd::Status => Action::Status { json: self.json },
            Cmd::Stats => Action::Stats { json: self.json },
            Cmd::Metrics => Action::Metrics,
            Cmd::Reload => Action::Reload,
        })
    }

    fn list_action(
        &self,
        service: Option<Service>,
        server: Option<Server>,
    ) -> Result<Action, UsageError> {
        if self.stats && self.rate {
            return Err(usage("--stats and --rate together: give one"));
        }
        let table_opts = self.stats || self.rate || self.exact;
        if (self.connection || self.timeout) && table_opts {
            return Err(usage(
                "options conflict in the list command: -c and --timeout print no --stats, --rate or --exact",
            ));
        }
        if self.connection && self.timeout {
            return Err(usage("-c and --timeout together: give one"));
        }
        if !self.connection && (self.client.is_some() || self.limit.is_some() || server.is_some()) {
            return Err(usage(
                "--client, --limit and -r filter the connection list: they go with -c",
            ));
        }
        if self.timeout {
            if service.is_some() {
                return Err(usage("--timeout is global: no -t|-u"));
            }
            return Ok(Action::Timeouts { json: self.json });
        }
        if self.connection {
            let mut query = Vec::new();
            if let Some(s) = service {
                query.push(("service", s.path()));
            }
            if let Some(c) = self.client {
                query.push(("client", c.to_string()));
            }
            if let Some(r) = server {
                let text = match r.port {
                    Some(p) => SocketAddr::new(r.ip, p).to_string(),
                    None => r.ip.to_string(),
                };
                query.push(("real_server", text));
            }
            if let Some(l) = self.limit {
                query.push(("limit", l.to_string()));
            }
            return Ok(Action::Connections {
                query,
                json: self.json,
            });
        }
        let table = if self.stats {
            Table::Stats
        } else if self.rate {
            Table::Rate
        } else {
            Table::Plain
        };
        Ok(Action::List {
            service,
            table,
            exact: self.exact,
            json: self.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(line: &str) -> Result<Action, UsageError> {
        let argv = std::iter::once("vipctl").chain(line.split_whitespace());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.action(),
            Err(e) => Err(UsageError(e.to_string())),
        }
    }

    fn ok(line: &str) -> Action {
        match parse(line) {
            Ok(a) => a,
            Err(e) => panic!("{line}: {}", e.0),
        }
    }

    fn refused(line: &str) -> String {
        match parse(line) {
            Ok(a) => panic!("{line}: accepted as {a:?}"),
            Err(e) => e.0,
        }
    }

    fn web() -> Service {
        Service {
            proto: "tcp",
            addr: "10.0.0.1:80".parse().unwrap(),
        }
    }

    #[test]
    fn ipvsadm_lines_become_api_bodies() {
        assert_eq!(
            ok("-A -t 10.0.0.1:80 -s rr"),
            Action::AddService(
                json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80, "scheduler": "rr"})
            )
        );
        assert_eq!(
            ok("-A -u [fd00::1]:53 -s mh -M dr --check tcp --fall 2"),
            Action::AddService(
                json!({"vip": "fd00::1", "proto": "udp", "port": 53, "scheduler": "mh",
                "mode": "dr", "health_check": {"type": "tcp", "fall": 2}})
            )
        );
        assert_eq!(
            ok("-A -t 10.0.0.1:80 -m --check http --check-path /ok --check-status 204"),
            Action::AddService(
                json!({"vip": "10.0.0.1", "proto": "tcp", "port": 80, "mode": "nat",
                "health_check": {"type": "http", "path": "/ok", "status": 204}})
            )
        );
        assert_eq!(
            ok("-E -t 10.0.0.1:80 -s wrr --dead-flows keep"),
            Action::EditService(web(), json!({"scheduler": "wrr", "dead_flows": "keep"}))
        );
        assert_eq!(
            ok("-E -t 10.0.0.1:80 --check none"),
            Action::EditService(web(), json!({"health_check": null}))
        );
        assert_eq!(ok("-D -t 10.0.0.1:80"), Action::DeleteService(web()));
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.5:8080 -m -w 3"),
            Action::AddServer(
                web(),
                json!({"ip": "10.0.1.5", "port": 8080, "mode": "nat", "weight": 3})
            )
        );
        let rs = Server {
            ip: "10.0.1.5".parse().unwrap(),
            port: None,
        };
        assert_eq!(
            ok("-a -t 10.0.0.1:80 -r 10.0.1.5"),
            Action::AddServer(web(), json!({"ip": "10.0.1.5"}))
        );
        assert_eq!(
            ok("-e -t 10.0.0.1:80 -r 10.0.1.5 -w 0 --check none"),
            Action::EditServer(
                web(),
                rs,
                json!({"weight": 0, "health_check": {"type": "none"}})
            )
        );
        assert_eq!(
            ok("-d -t 10.0.0.1:80 -r 10.0.1.5"),
            Action::DeleteServer(web(), rs)
        );
        assert_eq!(
            ok("drain -t 10.0.0.1:80 -r 10.0.1.5"),
            Action::Drain(web(), rs)
        );
        assert_eq!(
            ok("--set 0 30 0"),
            Action::SetTimeouts(json!({"tcp_fin": 30}).as_object().unwrap().clone())
        );
        assert_eq!(ok("--set 0 0 0"), Action::SetTimeouts(Map::new()));
        assert_eq!(ok("-Z"), Action::Zero(None));
        assert_eq!(ok("-Z -t 10.0.0.1:80"), Action::Zero(Some(web())));
        assert_eq!(ok("-S -n"), Action::Save);
        assert_eq!(ok("save"), Action::Save);
        assert_eq!(ok("reload"), Action::Reload);
    }

    #[test]
    fn listings() {
        let plain = Action::List {
            service: None,
            table: Table::Plain,
            exact: false,
            json: false,
        };
        assert_eq!(ok(""), plain);
        assert_eq!(ok("-Ln"), plain);
        assert_eq!(ok("-l -n"), plain);
        assert_eq!(
            ok("-L -n --rate --exact -t 10.0.0.1:80 --json"),
            Action::List {
                service: Some(web()),
                table: Table::Rate,
                exact: true,
                json: true
            }
        );
        assert_eq!(
            ok("-Lnc -t 10.0.0.1:80 --client 192.168.0.7 -r 10.0.1.5:8080 --limit 10"),
            Action::Connections {
                query: vec![
                    ("service", "tcp/10.0.0.1/80".into()),
                    ("client", "192.168.0.7".into()),
                    ("real_server", "10.0.1.5:8080".into()),
                    ("limit", "10".into()),
                ],
                json: false
            }
        );
        assert_eq!(ok("-L --timeout"), Action::Timeouts { json: false });
        assert_eq!(
            ok("health --json"),
            Action::Health {
                service: None,
                json: true
            }
        );
        assert_eq!(ok("stats --json"), Action::Stats { json: true });
    }

    #[test]
    fn misuse_is_named() {
        assert!(refused("-A -a -t 10.0.0.1:80").contains("multiple commands"));
        assert!(refused("-A -t 10.0.0.1:80 -w 3").contains("illegal option -w with --add-service"));
        assert!(refused("-a -t 10.0.0.1:80").contains("needs -r server-address"));
        assert!(refused("-A").contains("needs -t|-u"));
        assert!(refused("-A -t 10.0.0.1").contains("VIP:PORT"));
        assert!(refused("-A -t 10.0.0.1:0").contains("port 0"));
        assert!(refused("-A -t host.example:80").contains("numeric"));
        assert!(refused("-a -t 10.0.0.1:80 -r 10.0.1.300").contains("illegal real server"));
        assert!(refused("-a -t 10.0.0.1:80 -r 10.0.1.5 -g -m").contains("multiple forwarding"));
        assert!(refused("-A -t 10.0.0.1:80 -M 255.255.255.0").contains("persistence"));
        assert!(refused("-L --stats --rate").contains("give one"));
        assert!(refused("-L -c --stats").contains("conflict"));
        assert!(refused("-L --client 1.2.3.4").contains("go with -c"));
        assert!(refused("-E -t 10.0.0.1:80").contains("nothing to change"));
        assert!(refused("-e -t 10.0.0.1:80 -r 10.0.1.5").contains("nothing to change"));
        assert!(refused("-C").contains("not offered"));
        assert!(refused("-R").contains("reload"));
        assert!(
            refused("--set 1 2").contains("3 values"),
            "{}",
            refused("--set 1 2")
        );
        assert!(refused("status -t 10.0.0.1:80").contains("illegal option"));
        assert!(refused("-t 10.0.0.1:80 -u 10.0.0.1:53 -D").contains("TCP or UDP"));
    }

    #[test]
    fn help_names_every_long_option() {
        use clap::CommandFactory;
        let cmd = <Cli as CommandFactory>::command();
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    USAGE.contains(&format!("--{long}")),
                    "--help does not mention --{long}"
                );
            }
        }
        for sub in cmd.get_subcommands() {
            assert!(
                USAGE.contains(&format!("vipctl {}", sub.get_name()))
                    || USAGE.contains(&format!("  {} ", sub.get_name())),
                "--help does not mention {}",
                sub.get_name()
            );
        }
    }
}
