//! What vipctl is asked to do, in the API's terms: the service and real server addressed
//! (numeric, as vipd names them) and the [`Action`] with the JSON it sends.

use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};

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
    /// `--thresholds`: upper and lower connection thresholds.
    Thresholds,
    /// `--persistent-conn`: persistence entries per real server.
    PersistConn,
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
    /// `health --release`: apply the down verdicts the mass-transition guard holds (of one
    /// service, or all).
    ReleaseHeld(Option<Service>),
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
    /// `trace`: filters and bounds.
    Trace {
        /// Query: service, client, real server, seconds, limit.
        query: Vec<(&'static str, String)>,
        /// `--json`.
        json: bool,
    },
    /// `reload`.
    Reload,
    /// `drain --box` (true) / `resume --box` (false).
    DrainBox(bool),
    /// `box`.
    Box {
        /// `--json`.
        json: bool,
    },
}

/// A usage error: said in one line, exit status 2 (as ipvsadm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// `VIP:PORT` or `[VIP6]:PORT`: vipd services always have a port (ipvsadm's port-0 services,
/// persistent over every port of a VIP, are not offered).
pub fn parse_service(proto: &'static str, text: &str) -> Result<Service, UsageError> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        usage(format!(
            "illegal virtual server address `{text}`: a service address is VIP:PORT ([VIP6]:PORT for IPv6), numeric"
        ))
    })?;
    if addr.port() == 0 {
        return Err(usage(format!(
            "illegal virtual server address `{text}`: port 0 (vipd has no all-ports services: give each port its own service, with -p for persistence)"
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

pub fn parse_mode(text: &str) -> Result<&'static str, UsageError> {
    match text {
        "nat" | "masq" | "masquerading" => Ok("nat"),
        "dr" | "route" | "gatewaying" => Ok("dr"),
        "tunnel" | "tun" | "ipip" => Ok("tunnel"),
        "fnat" | "fullnat" => Ok("fnat"),
        other => Err(usage(format!(
            "--mode `{other}`: unknown forwarding mode (expected nat, fnat, dr or tunnel)"
        ))),
    }
}
