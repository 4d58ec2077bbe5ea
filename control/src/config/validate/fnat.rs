//! Full-NAT services: their local address pool (`local_addresses`, `local_ports`) and what
//! full-NAT cannot combine with in this version (persistence). IPv4 and IPv6 alike: a
//! service's local addresses are of its VIP's family.

use super::services::not_unicast;
use super::{invalid, Invalid, ValidRealServer};
use crate::config::model::ServiceConfig;
use std::net::IpAddr;
use vipd_dataplane::flow::key::to_mapped;
use vipd_dataplane::snapshot::{FwdMode, LocalPool, PortInfo};

/// The pool of service `s` (empty without full-NAT real servers). `vips`: every service's
/// VIP; `rss`: the service's real servers, validated.
pub(super) fn local_pool(
    s: &ServiceConfig,
    ports: &[PortInfo],
    vips: &[IpAddr],
    rss: &[ValidRealServer],
    k: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<LocalPool, Invalid> {
    let fnat = s.mode == "fnat" || rss.iter().any(|r| r.mode == FwdMode::Fnat);
    if !fnat {
        if !s.local_addresses.is_empty() || s.local_ports.is_some() {
            warnings.push(format!(
                "{}: the service has no full-NAT real server, so its local addresses are not used",
                k("local_addresses")
            ));
        }
        return Ok(LocalPool::default());
    }
    if s.persistence_timeout.is_some() {
        return Err(invalid(
            k("persistence_timeout"),
            "full-NAT services cannot be persistent in this version (a reply's owner is found by its local endpoint, not the client network)",
        ));
    }
    if s.local_addresses.is_empty() {
        return Err(invalid(
            k("local_addresses"),
            format!(
                "full-NAT needs local addresses: the real servers' connections come from them (e.g. local_addresses = [\"{}\"])",
                if s.vip.is_ipv4() { "10.0.0.100" } else { "fd00::100" }
            ),
        ));
    }
    let mut addrs = Vec::with_capacity(s.local_addresses.len());
    for (n, a) in s.local_addresses.iter().enumerate() {
        let ka = || k(&format!("local_addresses[{n}]"));
        if a.is_ipv4() != s.vip.is_ipv4() {
            let (fam, vfam) = if a.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            return Err(invalid(
                ka(),
                format!("{a} is {fam} but the VIP {} is {vfam}: a full-NAT service's local addresses are of its VIP's family (no NAT between IPv4 and IPv6)", s.vip),
            ));
        }
        if let Some(why) = not_unicast(a) {
            return Err(invalid(ka(), format!("{a} is {why}: not a local address")));
        }
        if let IpAddr::V6(v6) = a {
            if v6.is_unicast_link_local() {
                return Err(invalid(
                    ka(),
                    format!("{a} is link-local: real servers behind a router could not answer it; use a routable address"),
                ));
            }
        }
        if ports.iter().any(|p| p.owns(a)) {
            return Err(invalid(
                ka(),
                format!("{a} is a port address; a full-NAT local address must be an address of its own (replies to it are not the kernel's)"),
            ));
        }
        if vips.contains(a) {
            return Err(invalid(ka(), format!("{a} is a VIP, not a local address")));
        }
        if rss.iter().any(|r| r.ip == *a) {
            return Err(invalid(
                ka(),
                format!("{a} is a real server, not a local address"),
            ));
        }
        let m = to_mapped(*a);
        if addrs.contains(&m) {
            return Err(invalid(ka(), format!("{a} is listed twice")));
        }
        addrs.push(m);
    }
    let (port_min, port_max) = match &s.local_ports {
        None => (1024, 65535),
        Some(text) => parse_range(text).map_err(|e| invalid(k("local_ports"), e))?,
    };
    Ok(LocalPool {
        addrs,
        port_min,
        port_max,
    })
}

/// `"FIRST-LAST"`, 1 <= FIRST <= LAST <= 65535.
fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{text}` is not a port range FIRST-LAST (e.g. \"1024-65535\")");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(format!(
            "`{text}`: the first port must be 1 or more and not above the last"
        ));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_range("1024-65535"), Ok((1024, 65535)));
        assert_eq!(parse_range("40000 - 40000"), Ok((40000, 40000)));
        for bad in ["", "1024", "0-10", "10-5", "a-b", "1-70000"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
