//! The scheduling keys of a service and its real servers: scheduler flags (ipvsadm `-b`),
//! persistence (`-p`, `-M`) and connection thresholds (`-x`, `-y`).

use super::{invalid, Invalid, MAX_TIMEOUT_S};
use crate::config::model::{RealServerConfig, ServiceConfig};
use std::net::{IpAddr, Ipv4Addr};
use vipd_dataplane::sched::load::Limit;
use vipd_dataplane::sched::{SchedFlags, SchedulerKind};
use vipd_dataplane::snapshot::PersistenceSpec;

/// `scheduler_flags`: `sh-fallback` and `sh-port`, with scheduler `sh` only.
pub(super) fn sched_flags(
    kind: SchedulerKind,
    flags: &[String],
    k: &dyn Fn(&str) -> String,
) -> Result<SchedFlags, Invalid> {
    let mut out = SchedFlags::default();
    for (i, f) in flags.iter().enumerate() {
        let key = k(&format!("scheduler_flags[{i}]"));
        match f.as_str() {
            "sh-fallback" => out.sh_fallback = true,
            "sh-port" => out.sh_port = true,
            "mh-fallback" => {
                return Err(invalid(
                    key,
                    "mh-fallback is always on in vipd: a Maglev service passes a connection whose real server is over its threshold to another one",
                ))
            }
            "mh-port" => {
                return Err(invalid(
                    key,
                    "mh-port is always on in vipd: Maglev hashes the whole connection, source port included",
                ))
            }
            "flag-1" | "flag-2" | "flag-3" => {
                return Err(invalid(
                    key,
                    format!("{f}: write the flag's name (sh-fallback, sh-port)"),
                ))
            }
            other => {
                return Err(invalid(
                    key,
                    format!(
                        "unknown scheduler flag `{}` (expected sh-fallback or sh-port)",
                        super::shown(other)
                    ),
                ))
            }
        }
    }
    if out != SchedFlags::default() && kind != SchedulerKind::Sh {
        return Err(invalid(
            k("scheduler_flags"),
            format!(
                "{} are flags of scheduler \"sh\", not of \"{kind}\": remove them (vipctl -E … -b none)",
                out.names().join(", ")
            ),
        ));
    }
    Ok(out)
}

/// `persistence_timeout` and `persistence_netmask`.
pub(super) fn persistence(
    s: &ServiceConfig,
    k: &dyn Fn(&str) -> String,
) -> Result<Option<PersistenceSpec>, Invalid> {
    let Some(timeout_s) = s.persistence_timeout else {
        if s.persistence_netmask.is_some() {
            return Err(invalid(
                k("persistence_netmask"),
                "a netmask without persistence_timeout: set persistence_timeout (ipvsadm -p) too",
            ));
        }
        return Ok(None);
    };
    if timeout_s == 0 || timeout_s > MAX_TIMEOUT_S {
        return Err(invalid(
            k("persistence_timeout"),
            format!(
                "{timeout_s} is out of range 1..={MAX_TIMEOUT_S} seconds (leave the key out for a service without persistence)"
            ),
        ));
    }
    let full = if s.vip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match &s.persistence_netmask {
        None => full,
        Some(text) => {
            netmask(text, &s.vip).map_err(|m| invalid(k("persistence_netmask"), m.to_string()))?
        }
    };
    Ok(Some(PersistenceSpec {
        timeout_s,
        prefix_len,
    }))
}

/// Why a `persistence_netmask` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetmaskError {
    /// A prefix length outside the family's range.
    #[error("prefix length {len} is out of range {min}..={max} for an {family} service")]
    PrefixLength {
        /// The length given.
        len: u8,
        /// The smallest allowed.
        min: u8,
        /// The largest allowed.
        max: u8,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A dotted mask for an IPv6 service.
    #[error("`{0}` is an IPv4 netmask: an IPv6 service takes a prefix length (1..=128), e.g. 64")]
    DottedForIpv6(String),
    /// A dotted mask with a gap.
    #[error("`{0}` is not a netmask: its ones must be contiguous (e.g. 255.255.255.0)")]
    NotContiguous(String),
    /// Neither form.
    #[error("`{0}` is neither a netmask (255.255.255.0) nor a prefix length (24)")]
    Unreadable(String),
}

/// A netmask as ipvsadm's `-M` takes it: a dotted IPv4 mask for an IPv4 service, or a prefix
/// length (`24`, `/24`) for either family (IPv6: 1..=128, as ipvsadm).
pub fn netmask(text: &str, vip: &IpAddr) -> Result<u8, NetmaskError> {
    let bare = text.strip_prefix('/').unwrap_or(text);
    if let Ok(len) = bare.parse::<u8>() {
        let (min, max, family) = if vip.is_ipv4() {
            (0, 32, "IPv4")
        } else {
            (1, 128, "IPv6")
        };
        if !(min..=max).contains(&len) {
            return Err(NetmaskError::PrefixLength {
                len,
                min,
                max,
                family,
            });
        }
        return Ok(len);
    }
    match text.parse::<Ipv4Addr>() {
        Ok(_) if vip.is_ipv6() => Err(NetmaskError::DottedForIpv6(text.to_string())),
        Ok(mask) => {
            let m = u32::from(mask);
            let len = m.leading_ones();
            if m.checked_shl(len).unwrap_or(0) != 0 {
                return Err(NetmaskError::NotContiguous(text.to_string()));
            }
            Ok(len as u8)
        }
        Err(_) => Err(NetmaskError::Unreadable(super::shown(text))),
    }
}

/// The netmask of a prefix length as ipvsadm prints it: dotted for IPv4, the length for IPv6.
pub fn netmask_text(vip: &IpAddr, prefix_len: u8) -> String {
    match vip {
        IpAddr::V4(_) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            Ipv4Addr::from(m).to_string()
        }
        IpAddr::V6(_) => prefix_len.to_string(),
    }
}

/// `upper_threshold` and `lower_threshold` of a real server.
pub(super) fn limit(r: &RealServerConfig, kr: &dyn Fn(&str) -> String) -> Result<Limit, Invalid> {
    let upper = r.upper_threshold.unwrap_or(0);
    let lower = r.lower_threshold.unwrap_or(0);
    if lower > 0 && upper == 0 {
        return Err(invalid(
            kr("lower_threshold"),
            "a lower threshold without an upper one: set upper_threshold (ipvsadm -x) too",
        ));
    }
    if upper > 0 && lower >= upper {
        return Err(invalid(
            kr("lower_threshold"),
            format!(
                "{lower} must be below upper_threshold ({upper}): a real server takes new connections again under the lower threshold"
            ),
        ));
    }
    Ok(Limit { upper, lower })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_as_ipvsadm_takes_them() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(netmask("255.255.255.0", &v4), Ok(24));
        assert_eq!(netmask("255.255.255.255", &v4), Ok(32));
        assert_eq!(netmask("0.0.0.0", &v4), Ok(0));
        assert_eq!(netmask("16", &v4), Ok(16));
        assert_eq!(netmask("/64", &v6), Ok(64));
        let refused = |text: &str, vip: &IpAddr| netmask(text, vip).unwrap_err().to_string();
        assert!(refused("255.0.255.0", &v4).contains("contiguous"));
        assert!(refused("33", &v4).contains("0..=32"));
        assert!(refused("0", &v6).contains("1..=128"));
        assert!(refused("255.255.0.0", &v6).contains("prefix length"));
        assert!(refused("abc", &v4).contains("neither"));
        assert_eq!(
            netmask("33", &v4),
            Err(NetmaskError::PrefixLength {
                len: 33,
                min: 0,
                max: 32,
                family: "IPv4"
            })
        );
        assert_eq!(netmask_text(&v4, 24), "255.255.255.0");
        assert_eq!(netmask_text(&v4, 0), "0.0.0.0");
        assert_eq!(netmask_text(&v4, 32), "255.255.255.255");
        assert_eq!(netmask_text(&v6, 64), "64");
    }
}
