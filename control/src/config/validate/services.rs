//! Services and their real servers (and sorry servers): addresses, modes, ports, reachability,
//! the families each mode allows, duplicates.

use super::checks::check_spec;
use super::sched::{limit, persistence, sched_flags};
use super::{invalid, Invalid, ServiceKey, ValidRealServer, ValidService, MAX_WEIGHT};
use crate::config::model::{Config, ServiceConfig};
use std::net::{IpAddr, SocketAddr};
use vipd_dataplane::fwd::tunnel;
use vipd_dataplane::sched::load::Limit;
use vipd_dataplane::sched::SchedulerKind;
use vipd_dataplane::snapshot::{self, FlowHashFields, FwdMode, PortInfo};

/// Why `ip` cannot be a VIP or a real server, if it cannot.
pub(super) fn not_unicast(ip: &IpAddr) -> Option<&'static str> {
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

/// Interface `iface` of the validated list (the ports, then their VLANs) in words, and its
/// key in the file: (`port \`lan\``, `ports[0]`) or (`VLAN 200 of port \`lan\``,
/// `ports[0].vlans[1]`).
fn interface_of(config: &Config, ports: &[PortInfo], iface: usize) -> (String, String) {
    let vlan = ports.get(iface).and_then(|p| p.vlan);
    let port = vlan.map_or(iface, |v| usize::from(v.parent));
    let name = config.ports.get(port).map_or("?", |p| p.name.as_str());
    match vlan {
        None => (format!("port `{name}`"), format!("ports[{port}]")),
        Some(v) => {
            let j = config
                .ports
                .get(port)
                .and_then(|p| p.vlans.iter().position(|c| c.id == v.id))
                .unwrap_or(0);
            (
                format!("VLAN {} of port `{name}`", v.id),
                format!("ports[{port}].vlans[{j}]"),
            )
        }
    }
}

fn is_port_address(ports: &[PortInfo], ip: &IpAddr) -> bool {
    ports.iter().any(|p| p.owns(ip))
}

pub(super) fn services(
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
        let sched_flags = sched_flags(scheduler, &s.scheduler_flags, &k)?;
        let persistence = persistence(s, &k)?;
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
        let hash: FlowHashFields = s.hash.parse().map_err(|e| invalid(k("hash"), e))?;
        if hash == FlowHashFields::ThreeTuple && scheduler != SchedulerKind::Maglev {
            return Err(invalid(
                k("hash"),
                format!(
                    "3-tuple needs scheduler = \"maglev\" ({} pins each connection to the real server it picked, not to the hash)",
                    s.scheduler
                ),
            ));
        }
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
            let limit = limit(r, &kr)?;
            push_unique(&mut rss, ValidRealServer { check, limit, ..rs }, &kr("ip"))?;
        }
        if let Some(text) = &s.sorry_server {
            let ks = |_: &str| k("sorry_server");
            let addr = parse_endpoint(text, s.port)
                .map_err(|e| invalid(k("sorry_server"), e.to_string()))?;
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
                limit: Limit::default(),
            };
            check_spec(s, None, &placeholder, &k, &k)?;
        }
        for rs in &rss {
            if rs.check.is_some() && !ports[rs.egress_port].kernel {
                let (what, key) = interface_of(config, ports, rs.egress_port);
                warnings.push(format!(
                    "services[{i}]: health checks of {} leave through the box's own routing, not through {what}: set {key}.kernel_interface so they test the path vipd forwards on",
                    SocketAddr::new(rs.ip, rs.port)
                ));
                break;
            }
        }
        if s.alpha && !rss.iter().any(|r| r.check.is_some()) {
            warnings.push(format!(
                "services[{i}].alpha: no real server of {key} has a health check, so none starts down (alpha only holds back checked real servers)"
            ));
        }
        let local_pool = super::fnat::local_pool(s, ports, &vips, &rss, &k, warnings)?;
        out.push(ValidService {
            local_pool,
            key,
            scheduler,
            sched_flags,
            persistence,
            drop_dead_flows,
            alpha: s.alpha,
            hash,
            real_servers: rss,
        });
    }
    for (i, s) in out.iter().enumerate() {
        let shared = out
            .iter()
            .filter(|o| o.key.vip == s.key.vip && o.key.proto == s.key.proto)
            .count();
        if s.hash == FlowHashFields::ThreeTuple && shared > 1 {
            warnings.push(format!(
                "services[{i}].hash: 3-tuple places a later fragment whose first fragment the box did not see only when the service is its VIP's only {} service ({} has {shared}): such fragments are dropped (drop_fragment_unknown)",
                s.key.proto.name(), s.key.vip
            ));
        }
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

/// Text that is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address or address:port (IPv6 with port: [addr]:port)")]
pub struct BadEndpoint(pub String);

/// `"10.0.0.9:8080"`, `"[fd00::9]:8080"`, or an address alone (then `default_port`).
pub fn parse_endpoint(text: &str, default_port: u16) -> Result<SocketAddr, BadEndpoint> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok(sa);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| BadEndpoint(text.to_string()))
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
    if rmode.replies_through_us() && ip.is_ipv4() != s.vip.is_ipv4() {
        return Err(invalid(
            kr("ip"),
            format!(
                "NAT between {} and {ip} mixes IPv4 and IPv6; use the VIP's family",
                s.vip
            ),
        ));
    }
    if !rmode.replies_through_us() && port.is_some_and(|p| p != s.port) {
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
        let Some(egress) = ports.get(egress_port) else {
            return Err(invalid(
                kr("ip"),
                format!("{ip}: no interface {egress_port}"),
            ));
        };
        let (what, _) = interface_of(config, ports, egress_port);
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
                    "the tunnel to {ip} through {what} (mtu {}) leaves {inner_mtu} bytes for IPv6 packets, below IPv6's minimum MTU 1280; raise the port's mtu",
                    egress.mtu
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
        limit: Limit::default(),
    })
}
