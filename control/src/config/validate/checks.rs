//! Health checks: the service's `health_check` with a real server's override on top, every
//! default filled in.

use super::services::not_unicast;
use super::{invalid, seconds, shown, CheckKind, CheckSpec, Invalid, ValidRealServer};
use crate::config::model::{HealthCheckConfig, ServiceConfig};
use std::net::SocketAddr;
use std::time::Duration;

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
pub(super) fn check_spec(
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
            format!("{} is out of range 0.1..=3600 seconds", seconds(interval)),
        ));
    }
    if !(0.01..=interval).contains(&timeout) {
        return Err(invalid(
            key("timeout", timeout_o),
            format!("{} s is out of range 0.01..=interval ({} s): a check must end before the next one starts", seconds(timeout), seconds(interval)),
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
                    format!("`{}` is not an HTTP path (starts with `/`, no spaces or control characters, at most 1024 bytes)", shown(&path)),
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
                    return Err(invalid(key("host", host_o), format!("`{}` is not a host name", shown(h))));
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
