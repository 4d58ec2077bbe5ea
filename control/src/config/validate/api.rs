//! `[api]` and `[health]`: limits, timeouts, and the key pairs that go together. Whether the
//! token, certificate and key files exist and are private enough is checked when vipd (or
//! `vipd --check`) reads them (crate::api), since the validator sees only the configuration.

use super::{invalid, seconds, Invalid};
use crate::config::model::{ApiConfig, HealthConfig};

/// Longest Unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Largest `api.max_connections`.
pub const MAX_CONNECTIONS: u32 = 1 << 20;

pub(super) fn api(a: &ApiConfig) -> Result<(), Invalid> {
    if !(1..=MAX_CONNECTIONS).contains(&a.max_connections) {
        return Err(invalid(
            "api.max_connections",
            format!(
                "{} is out of range 1..={MAX_CONNECTIONS}",
                a.max_connections
            ),
        ));
    }
    for (key, v, max) in [
        ("api.header_timeout", a.header_timeout, 3600.0),
        ("api.idle_timeout", a.idle_timeout, 86_400.0),
    ] {
        if !(0.1..=max).contains(&v) {
            return Err(invalid(
                key,
                format!("{} is out of range 0.1..={max} seconds", seconds(v)),
            ));
        }
    }
    match (&a.tls_certificate, &a.tls_key) {
        (Some(_), None) => {
            return Err(invalid(
                "api.tls_key",
                "tls_certificate is set: its private key (PEM) is needed too",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "api.tls_certificate",
                "tls_key is set: the certificate (PEM chain) is needed too",
            ))
        }
        _ => {}
    }
    if let (Some(admin), Some(read)) = (&a.token_file, &a.read_token_file) {
        if admin == read {
            return Err(invalid(
                "api.read_token_file",
                format!(
                    "{} is also api.token_file: the read-only token must be another one",
                    read.display()
                ),
            ));
        }
    }
    if let Some(p) = &a.socket {
        let len = p.as_os_str().len();
        if !p.is_absolute() {
            return Err(invalid(
                "api.socket",
                format!("{} is not an absolute path", p.display()),
            ));
        }
        if len > MAX_SOCKET_PATH || p.file_name().is_none() {
            return Err(invalid(
                "api.socket",
                format!(
                    "{} is not a socket path of at most {MAX_SOCKET_PATH} bytes",
                    super::shown(&p.display().to_string())
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn health(h: &HealthConfig) -> Result<(), Invalid> {
    if !(1..=100).contains(&h.max_down_percent) {
        return Err(invalid(
            "health.max_down_percent",
            format!(
                "{} is out of range 1..=100 (100 turns the guard off)",
                h.max_down_percent
            ),
        ));
    }
    Ok(())
}
