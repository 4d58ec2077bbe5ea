//! The command line, ipvsadm's way: one command (`-A`, `-a`, `-L`, `--set`, ... or a word such
//! as `drain`) and the options that go with it, checked against a table of which options each
//! command takes (ipvsadm's `commands_v_options`), so a misplaced option is named rather than
//! ignored. The result is an [`Action`]: what to ask vipd, with the JSON to send.

use crate::action::{
    parse_mode, parse_server, parse_service, usage, Action, Server, Service, Table, UsageError,
};
use crate::commands::{allowed, option_text, Cmd};
use crate::usage::USAGE;
use clap::{ArgAction, Parser, Subcommand};
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Where vipd's API listens unless told otherwise (vipd's `[api] listen` default).
pub const DEFAULT_API: &str = "127.0.0.1:9180";
/// The local admin socket the package's configuration sets (`[api] socket`): vipctl uses it
/// when it exists and neither `--api` nor `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vipd/api.sock";

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
    #[arg(long = "mode", global = true)]
    mode: Option<String>,
    #[arg(short = 'p', long = "persistent", num_args = 0..=1, default_missing_value = "300", global = true)]
    persistent: Option<u32>,
    #[arg(short = 'M', long = "netmask", global = true)]
    netmask: Option<String>,
    #[arg(short = 'b', long = "sched-flags", global = true)]
    sched_flags: Option<String>,
    #[arg(short = 'x', long = "u-threshold", global = true)]
    u_threshold: Option<u32>,
    #[arg(short = 'y', long = "l-threshold", global = true)]
    l_threshold: Option<u32>,
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
    #[arg(long = "hash", global = true)]
    hash: Option<String>,
    #[arg(long = "sorry-server", global = true)]
    sorry_server: Option<String>,
    #[arg(long = "interface", global = true)]
    interface: Option<String>,
    /// DPVS's `-z`: a full-NAT local address (repeatable; together the service's list).
    #[arg(short = 'z', long = "laddr", global = true)]
    laddr: Vec<IpAddr>,
    #[arg(long = "lports", global = true)]
    lports: Option<String>,

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
    #[arg(long = "persistent-conn", global = true)]
    persistent_conn: bool,
    #[arg(long = "thresholds", global = true)]
    thresholds: bool,
    #[arg(long = "json", global = true)]
    json: bool,
    #[arg(long = "box", global = true)]
    box_: bool,
    #[arg(long = "seconds", global = true)]
    seconds: Option<f64>,
    #[arg(long = "release", global = true)]
    release: bool,

    /// vipd's API address.
    #[arg(
        long = "api",
        env = "VIPCTL_API",
        global = true,
        conflicts_with = "socket"
    )]
    pub api: Option<String>,
    /// vipd's local admin socket.
    #[arg(long = "socket", env = "VIPCTL_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// CA certificate (PEM) that signed an `https://` API's certificate.
    #[arg(long = "cacert", env = "VIPCTL_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Accept any certificate of an `https://` API.
    #[arg(long = "insecure", global = true)]
    pub insecure: bool,
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
    /// `resume --box`: the box announces its VIPs again.
    Resume,
    /// The box's scale-out state.
    Box,
    /// The four steps of live connections.
    Trace,
}

impl Cli {
    /// Where to reach vipd: `--socket`, `--api`, else the package's socket when it exists,
    /// else vipd's default address.
    pub fn endpoint(&self) -> crate::client::Endpoint {
        use crate::client::Endpoint;
        match (&self.socket, &self.api) {
            (Some(s), _) => Endpoint::Unix(s.clone()),
            (None, Some(a)) => Endpoint::Tcp(a.clone()),
            (None, None) if std::path::Path::new(DEFAULT_SOCKET).exists() => {
                Endpoint::Unix(DEFAULT_SOCKET.into())
            }
            (None, None) => Endpoint::Tcp(DEFAULT_API.into()),
        }
    }

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
            ("persistent", self.persistent.is_some()),
            ("netmask", self.netmask.is_some()),
            ("sched-flags", self.sched_flags.is_some()),
            ("u-threshold", self.u_threshold.is_some()),
            ("l-threshold", self.l_threshold.is_some()),
            ("dead-flows", self.dead_flows.is_some()),
            ("hash", self.hash.is_some()),
            ("sorry-server", self.sorry_server.is_some()),
            ("interface", self.interface.is_some()),
            ("laddr", !self.laddr.is_empty()),
            ("lports", self.lports.is_some()),
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
            ("persistent-conn", self.persistent_conn),
            ("thresholds", self.thresholds),
            ("json", self.json),
            ("box", self.box_),
            ("seconds", self.seconds.is_some()),
            ("release", self.release),
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
            Verb::Drain if self.box_ => Cmd::DrainBox,
            Verb::Drain => Cmd::Drain,
            Verb::Resume => Cmd::ResumeBox,
            Verb::Box => Cmd::Box,
            Verb::Trace => Cmd::Trace,
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

    /// The service keys given; `edit`: a merge patch (0 removes a setting).
    fn service_keys(&self, edit: bool) -> Result<Map<String, Value>, UsageError> {
        let mode = match (&self.mode, self.forward()?) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "--mode and -g|-i|-m together: give the service's mode once",
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
        if let Some(h) = &self.hash {
            m.insert("hash".into(), h.clone().into());
        }
        if let Some(s) = &self.sorry_server {
            m.insert("sorry_server".into(), s.clone().into());
        }
        if let Some(i) = &self.interface {
            m.insert("interface".into(), i.clone().into());
        }
        if !self.laddr.is_empty() {
            let list = self.laddr.iter().map(|a| a.to_string().into()).collect();
            m.insert("local_addresses".into(), Value::Array(list));
        }
        if let Some(p) = &self.lports {
            m.insert("local_ports".into(), p.clone().into());
        }
        if let Some(flags) = &self.sched_flags {
            let list: Vec<Value> = flags
                .split(',')
                .filter(|f| !f.is_empty() && *f != "none")
                .map(|f| Value::from(f.trim()))
                .collect();
            m.insert("scheduler_flags".into(), Value::Array(list));
        }
        match self.persistent {
            // ipvsadm: -p 0 is not persistent. On -E it removes persistence (and its mask).
            Some(0) if self.netmask.is_some() => {
                return Err(usage(
                    "-p 0 with -M: a service without persistence has no netmask",
                ))
            }
            Some(0) if edit => {
                m.insert("persistence_timeout".into(), Value::Null);
                m.insert("persistence_netmask".into(), Value::Null);
            }
            Some(0) => {}
            Some(t) => {
                m.insert("persistence_timeout".into(), t.into());
            }
            None => {}
        }
        if let Some(mask) = &self.netmask {
            if parse_mode(mask).is_ok() {
                return Err(usage(format!(
                    "-M `{mask}`: -M is the persistence netmask, as in ipvsadm; the forwarding mode is --mode {mask} (or -m, -g, -i)"
                )));
            }
            if self.persistent.is_none() && !edit {
                return Err(usage(
                    "-M (netmask) goes with -p (persistence): give -p TIMEOUT too",
                ));
            }
            m.insert("persistence_netmask".into(), mask.clone().into());
        }
        Ok(m)
    }

    /// The real server keys given; `edit`: a merge patch (a 0 threshold removes it).
    fn server_keys(&self, edit: bool) -> Result<Map<String, Value>, UsageError> {
        let mut m = Map::new();
        if let Some(mode) = self.forward()? {
            m.insert("mode".into(), mode.into());
        }
        if let Some(w) = self.weight {
            m.insert("weight".into(), w.into());
        }
        for (key, v) in [
            ("upper_threshold", self.u_threshold),
            ("lower_threshold", self.l_threshold),
        ] {
            match v {
                Some(0) if edit => {
                    m.insert(key.into(), Value::Null);
                }
                Some(0) | None => {}
                Some(n) => {
                    m.insert(key.into(), n.into());
                }
            }
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
                body.extend(self.service_keys(false)?);
                if let Some(c) = self.check_keys(false) {
                    if self.check.as_deref() != Some("none") {
                        body.insert("health_check".into(), c);
                    }
                }
                Action::AddService(Value::Object(body))
            }
            Cmd::EditService => {
                let s = need(service)?;
                let mut patch = self.service_keys(true)?;
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
                        "--edit-service (-E): nothing to change (give -s, -b, -p, -M, --mode, --dead-flows, --hash, --sorry-server, --interface, -z, --lports or check options)",
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
                body.extend(self.server_keys(false)?);
                Action::AddServer(s, Value::Object(body))
            }
            Cmd::EditServer => {
                let s = need(service)?;
                let r = need_rs(server)?;
                let patch = self.server_keys(true)?;
                if patch.is_empty() {
                    return Err(usage(
                        "--edit-server (-e): nothing to change (give -w, -x, -y, -g|-i|-m or check options)",
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
            Cmd::Health if self.release => Action::ReleaseHeld(service),
            Cmd::Health => Action::Health {
                service,
                json: self.json,
            },
            Cmd::Status => Action::Status { json: self.json },
            Cmd::Stats => Action::Stats { json: self.json },
            Cmd::Metrics => Action::Metrics,
            Cmd::Reload => Action::Reload,
            Cmd::DrainBox => Action::DrainBox(true),
            Cmd::ResumeBox => Action::DrainBox(false),
            Cmd::Box => Action::Box { json: self.json },
            Cmd::Trace => {
                if service.is_none() && self.client.is_none() && server.is_none() {
                    return Err(usage(
                        "trace: give -t|-u, --client or -r (a trace follows some connections, not the whole box)",
                    ));
                }
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
                if let Some(s) = self.seconds {
                    query.push(("seconds", s.to_string()));
                }
                if let Some(l) = self.limit {
                    query.push(("limit", l.to_string()));
                }
                Action::Trace {
                    query,
                    json: self.json,
                }
            }
        })
    }

    fn list_action(
        &self,
        service: Option<Service>,
        server: Option<Server>,
    ) -> Result<Action, UsageError> {
        let tables = [
            (self.stats, "--stats"),
            (self.rate, "--rate"),
            (self.thresholds, "--thresholds"),
            (
                self.persistent_conn && !self.connection,
                "--persistent-conn",
            ),
        ];
        let chosen: Vec<&str> = tables.iter().filter(|t| t.0).map(|t| t.1).collect();
        if chosen.len() > 1 {
            return Err(usage(format!(
                "{} together: give one",
                chosen.join(" and ")
            )));
        }
        if self.connection && self.thresholds {
            return Err(usage(
                "options conflict in the list command: -c prints no --thresholds",
            ));
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
            if self.persistent_conn {
                // ipvsadm lists its templates among the connections; vipctl on request.
                query.push(("persistent", "true".to_string()));
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
        } else if self.thresholds {
            Table::Thresholds
        } else if self.persistent_conn {
            Table::PersistConn
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
mod tests;
