//! Live changes (from the API, hence from vipctl): each one is an edit of the running
//! configuration, checked by the same validator as the file, so an API change can never make
//! vipd run a configuration the file could not. A refused change names the field of the
//! request and changes nothing.

use crate::config::{self, Config, Invalid, RealServerConfig, ServiceConfig, ServiceKey, Valid};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// One change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add a service.
    AddService(Value),
    /// Change some keys of a service (a JSON merge patch of its configuration).
    EditService(ServiceKey, Value),
    /// Remove a service (its flows are dropped as their real servers are gone).
    DeleteService(ServiceKey),
    /// Add a real server to a service.
    AddRealServer(ServiceKey, Value),
    /// Change some keys of a real server (weight, mode, health_check).
    EditRealServer(ServiceKey, IpAddr, u16, Value),
    /// Remove a real server.
    DeleteRealServer(ServiceKey, IpAddr, u16),
    /// Change some flow timeouts (`[flows.timeouts]` keys).
    SetTimeouts(Value),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sa = |ip: &IpAddr, port: &u16| std::net::SocketAddr::new(*ip, *port);
        match self {
            Change::AddService(v) => write!(
                f,
                "add service {} {}:{}",
                v.get("proto").and_then(Value::as_str).unwrap_or("?"),
                v.get("vip").and_then(Value::as_str).unwrap_or("?"),
                v.get("port").map_or("?".to_string(), Value::to_string)
            ),
            Change::EditService(k, v) => write!(f, "edit service {k}: {v}"),
            Change::DeleteService(k) => write!(f, "delete service {k}"),
            Change::AddRealServer(k, v) => write!(f, "add real server to {k}: {v}"),
            Change::EditRealServer(k, ip, port, v) => {
                write!(f, "edit real server {} of {k}: {v}", sa(ip, port))
            }
            Change::DeleteRealServer(k, ip, port) => {
                write!(f, "delete real server {} of {k}", sa(ip, port))
            }
            Change::SetTimeouts(v) => write!(f, "set timeouts {v}"),
        }
    }
}

/// Why a change is refused: the HTTP status it maps to, the field of the request (or the
/// configuration key) and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status: 400 malformed, 404 unknown service or real server, 409 already there,
    /// 422 well-formed but not acceptable.
    pub status: u16,
    /// The request's field (`weight`, `health_check.interval`), or a configuration key when
    /// the problem is elsewhere in the configuration.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn refusal(status: u16, field: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        field: config::validate::readable(field.into()),
        message: config::validate::readable(message.into()),
    }
}

/// A refused reload (the file is invalid, or changes a restart-only key).
pub fn refusal_of_reload(message: String) -> Refusal {
    refusal(422, "file", message)
}

/// The configuration with `change` made, validated. `Err` changes nothing.
pub fn apply(config: &Config, change: &Change) -> Result<(Config, Valid), Refusal> {
    let mut next = config.clone();
    let scope = edit(&mut next, change)?;
    let valid = config::validate(&next).map_err(|e| in_scope(e, &scope))?;
    Ok((next, valid))
}

/// The part of the configuration a change touched: validator keys inside it are reported as
/// the request's fields.
enum Scope {
    Service(usize),
    RealServer(usize, usize),
    Timeouts,
    Whole,
}

fn in_scope(e: Invalid, scope: &Scope) -> Refusal {
    let prefix = match scope {
        Scope::Service(i) => format!("services[{i}]."),
        Scope::RealServer(i, j) => format!("services[{i}].real_servers[{j}]."),
        Scope::Timeouts => "flows.timeouts.".into(),
        Scope::Whole => String::new(),
    };
    let field = match e.key.strip_prefix(&prefix) {
        Some(f) if !prefix.is_empty() => f.to_string(),
        _ => e.key,
    };
    refusal(422, field, e.message)
}

fn service_index(config: &Config, key: &ServiceKey) -> Result<usize, Refusal> {
    config
        .services
        .iter()
        .position(|s| s.vip == key.vip && s.proto == key.proto && s.port == key.port)
        .ok_or_else(|| refusal(404, "service", format!("no service {key}")))
}

fn real_server_index(
    s: &ServiceConfig,
    key: &ServiceKey,
    ip: IpAddr,
    port: u16,
) -> Result<usize, Refusal> {
    s.real_servers
        .iter()
        .position(|r| r.ip == ip && r.port.unwrap_or(s.port) == port)
        .ok_or_else(|| {
            refusal(
                404,
                "real_server",
                format!(
                    "{key} has no real server {}",
                    std::net::SocketAddr::new(ip, port)
                ),
            )
        })
}

/// Deserialize a request body into `T`, naming the field on a wrong type or unknown key.
pub fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names an unknown or missing field only in its message: make it the field.
        let field = if path == "." {
            ["unknown field `", "missing field `"]
                .iter()
                .find_map(|p| inner.strip_prefix(p))
                .and_then(|r| r.split('`').next())
                .unwrap_or("body")
                .to_string()
        } else {
            path
        };
        refusal(400, field, inner)
    })
}

/// `patch` merged into `target` (RFC 7396: keys set replace, `null` removes).
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn object(v: &Value) -> Result<&Map<String, Value>, Refusal> {
    v.as_object()
        .ok_or_else(|| refusal(400, "body", "the body must be a JSON object"))
}

/// Fields a patch may not touch, with why.
fn forbid(patch: &Map<String, Value>, fields: &[(&str, &str)]) -> Result<(), Refusal> {
    for (f, why) in fields {
        if patch.contains_key(*f) {
            return Err(refusal(400, *f, *why));
        }
    }
    Ok(())
}

fn patched<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &Value,
) -> Result<T, Refusal> {
    let mut v = serde_json::to_value(current).map_err(|e| {
        refusal(
            500,
            "body",
            format!("cannot represent the current value: {e}"),
        )
    })?;
    merge(&mut v, patch);
    from_json(v)
}

const IDENTITY: &str =
    "a service's vip, proto and port are its identity: add a new service and delete this one";

fn edit(config: &mut Config, change: &Change) -> Result<Scope, Refusal> {
    match change {
        Change::AddService(body) => {
            object(body)?;
            let s: ServiceConfig = from_json(body.clone())?;
            let key = ServiceKey {
                vip: s.vip,
                proto: s.proto,
                port: s.port,
            };
            if service_index(config, &key).is_ok() {
                return Err(refusal(
                    409,
                    "port",
                    format!("service {key} exists already"),
                ));
            }
            config.services.push(s);
            Ok(Scope::Service(config.services.len() - 1))
        }
        Change::EditService(key, patch) => {
            let i = service_index(config, key)?;
            forbid(
                object(patch)?,
                &[
                    ("vip", IDENTITY),
                    ("proto", IDENTITY),
                    ("port", IDENTITY),
                    (
                        "real_servers",
                        "real servers change through .../real_servers (add, edit, delete one at a time)",
                    ),
                ],
            )?;
            config.services[i] = patched(&config.services[i], patch)?;
            Ok(Scope::Service(i))
        }
        Change::DeleteService(key) => {
            let i = service_index(config, key)?;
            config.services.remove(i);
            Ok(Scope::Whole)
        }
        Change::AddRealServer(key, body) => {
            let i = service_index(config, key)?;
            object(body)?;
            let r: RealServerConfig = from_json(body.clone())?;
            let s = &mut config.services[i];
            let port = r.port.unwrap_or(s.port);
            if real_server_index(s, key, r.ip, port).is_ok() {
                return Err(refusal(
                    409,
                    "ip",
                    format!(
                        "{key} has real server {} already",
                        std::net::SocketAddr::new(r.ip, port)
                    ),
                ));
            }
            s.real_servers.push(r);
            Ok(Scope::RealServer(i, s.real_servers.len() - 1))
        }
        Change::EditRealServer(key, ip, port, patch) => {
            let i = service_index(config, key)?;
            let s = &mut config.services[i];
            let j = real_server_index(s, key, *ip, *port)?;
            forbid(
                object(patch)?,
                &[
                    ("ip", "a real server's address and port are its identity: add a new one and delete this one"),
                    ("port", "a real server's address and port are its identity: add a new one and delete this one"),
                ],
            )?;
            s.real_servers[j] = patched(&s.real_servers[j], patch)?;
            Ok(Scope::RealServer(i, j))
        }
        Change::DeleteRealServer(key, ip, port) => {
            let i = service_index(config, key)?;
            let s = &mut config.services[i];
            let j = real_server_index(s, key, *ip, *port)?;
            s.real_servers.remove(j);
            Ok(Scope::Service(i))
        }
        Change::SetTimeouts(patch) => {
            object(patch)?;
            config.flows.timeouts = patched(&config.flows.timeouts, patch)?;
            Ok(Scope::Timeouts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;
    use serde_json::json;
    use std::path::Path;

    const BASE: &str = r#"
[dataplane]
worker_cores = [0]
[[ports]]
name = "lan"
device = "net_null0"
ipv4 = "10.77.0.10/24"
gateway = "10.77.0.1"
[[services]]
vip = "10.77.100.1"
proto = "tcp"
port = 80
[[services.real_servers]]
ip = "10.77.0.21"
port = 8080
"#;

    fn base() -> Config {
        Config::parse(BASE, Path::new("t.toml")).unwrap().0
    }

    fn web() -> ServiceKey {
        ServiceKey {
            vip: "10.77.100.1".parse().unwrap(),
            proto: Proto::Tcp,
            port: 80,
        }
    }

    fn refused(change: Change) -> Refusal {
        apply(&base(), &change).unwrap_err()
    }

    #[test]
    fn changes_apply_and_keep_the_rest() {
        let rs: IpAddr = "10.77.0.22".parse().unwrap();
        let (c, _) = apply(
            &base(),
            &Change::AddRealServer(
                web(),
                json!({"ip": "10.77.0.22", "port": 8080, "weight": 3}),
            ),
        )
        .unwrap();
        assert_eq!(c.services[0].real_servers.len(), 2);
        let (c, v) = apply(
            &c,
            &Change::EditRealServer(web(), rs, 8080, json!({"weight": 0})),
        )
        .unwrap();
        assert_eq!(v.services[0].real_servers[1].weight, 0);
        let (c, v) = apply(
            &c,
            &Change::EditService(
                web(),
                json!({"scheduler": "wrr", "health_check": {"type": "http", "path": "/ok"}}),
            ),
        )
        .unwrap();
        assert!(v.services[0].real_servers[1].check.is_some());
        assert_eq!(c.services[0].scheduler, "wrr");
        assert_eq!(
            c.services[0].real_servers.len(),
            2,
            "real servers untouched"
        );
        let (c, _) = apply(&c, &Change::SetTimeouts(json!({"tcp_established": 120}))).unwrap();
        assert_eq!(c.flows.timeouts.tcp_established, 120);
        assert_eq!(c.flows.timeouts.udp, base().flows.timeouts.udp);
        let (c, _) = apply(&c, &Change::DeleteRealServer(web(), rs, 8080)).unwrap();
        let (c, _) = apply(&c, &Change::DeleteService(web())).unwrap();
        assert!(c.services.is_empty());
        // The result is a configuration the file could hold.
        let text = c.to_toml().unwrap();
        Config::parse(&text, Path::new("saved.toml")).unwrap();
    }

    #[test]
    fn refusals_name_the_field_and_change_nothing() {
        let r = refused(Change::AddRealServer(
            web(),
            json!({"ip": "10.77.0.22", "wieght": 1}),
        ));
        assert_eq!((r.status, r.field.as_str()), (400, "wieght"), "{r:?}");
        let r = refused(Change::AddRealServer(
            web(),
            json!({"ip": "10.77.0.22", "weight": "x"}),
        ));
        assert_eq!((r.status, r.field.as_str()), (400, "weight"), "{r:?}");
        let r = refused(Change::AddRealServer(web(), json!({"weight": 1})));
        assert_eq!((r.status, r.field.as_str()), (400, "ip"), "{r:?}");
        let r = refused(Change::AddRealServer(web(), json!({"ip": "10.77.0.300"})));
        assert_eq!((r.status, r.field.as_str()), (400, "ip"), "{r:?}");
        let r = refused(Change::AddRealServer(
            web(),
            json!({"ip": "10.77.0.22", "weight": 70000}),
        ));
        assert_eq!((r.status, r.field.as_str()), (422, "weight"), "{r:?}");
        let r = refused(Change::AddRealServer(
            web(),
            json!({"ip": "10.77.0.21", "port": 8080}),
        ));
        assert_eq!(r.status, 409, "{r:?}");
        let r = refused(Change::AddRealServer(web(), json!({"ip": "10.77.0.10"})));
        assert_eq!((r.status, r.field.as_str()), (422, "ip"), "{r:?}");
        assert!(r.message.contains("port addresses"), "{r:?}");
        let r = refused(Change::AddService(
            json!({"vip": "10.77.100.1", "proto": "tcp", "port": 80}),
        ));
        assert_eq!(r.status, 409, "{r:?}");
        let r = refused(Change::AddService(
            json!({"vip": "224.0.0.1", "proto": "tcp", "port": 80}),
        ));
        assert_eq!((r.status, r.field.as_str()), (422, "vip"), "{r:?}");
        let r = refused(Change::AddService(json!([1, 2])));
        assert_eq!((r.status, r.field.as_str()), (400, "body"), "{r:?}");
        let other = ServiceKey { port: 81, ..web() };
        let r = refused(Change::DeleteService(other));
        assert_eq!(r.status, 404, "{r:?}");
        let r = refused(Change::EditService(web(), json!({"port": 81})));
        assert_eq!((r.status, r.field.as_str()), (400, "port"), "{r:?}");
        let r = refused(Change::EditService(
            web(),
            json!({"health_check": {"interval": 0}}),
        ));
        assert_eq!(
            (r.status, r.field.as_str()),
            (422, "health_check.interval"),
            "{r:?}"
        );
        // A service without real servers still has its check validated.
        let (empty, _) = apply(
            &base(),
            &Change::DeleteRealServer(web(), "10.77.0.21".parse().unwrap(), 8080),
        )
        .unwrap();
        let r = apply(
            &empty,
            &Change::EditService(web(), json!({"health_check": {"interval": 0}})),
        )
        .unwrap_err();
        assert_eq!(
            (r.status, r.field.as_str()),
            (422, "health_check.interval"),
            "{r:?}"
        );
        let r = refused(Change::EditRealServer(
            web(),
            "10.77.0.21".parse().unwrap(),
            8080,
            json!({"mode": "dr"}),
        ));
        assert_eq!((r.status, r.field.as_str()), (422, "port"), "{r:?}");
        let r = refused(Change::SetTimeouts(json!({"tcp_fin": 0})));
        assert_eq!((r.status, r.field.as_str()), (422, "tcp_fin"), "{r:?}");
        let r = refused(Change::SetTimeouts(json!({"tcp": 5})));
        assert_eq!((r.status, r.field.as_str()), (400, "tcp"), "{r:?}");
    }
}
