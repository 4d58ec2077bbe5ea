//! The HTTP API of the control plane: `/metrics` for Prometheus, `/api/v1/*` for vipctl and
//! automation (docs/api.md lists every route).
//!
//! It runs on its own thread with a small async runtime ([`server`]), so a slow client or a
//! reload in progress never holds up another request: reads answer from the view the control
//! loop publishes and from the workers' counters; changes are submitted to the control loop
//! as commands over a bounded channel and awaited without blocking anything else. Who may do
//! what: [`auth`] (tokens, roles) and [`change_request`] (what a change must carry).

mod activity;
pub mod admission;
pub mod auth;
mod boxes;
mod change_request;
mod connections;
mod error;
pub mod json;
pub mod limits;
mod read;
pub mod server;
pub mod tls;
mod trace;
mod write;

#[cfg(test)]
mod tests;

pub use auth::{read_token, SecretError, Tokens};
pub use error::ApiError;
pub use server::{Admissions, ApiServer, ServeError};

use crate::config::{ApiConfig, Proto, ServiceKey};
use crate::view::Shared;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body (a service with a few hundred real servers fits easily).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most changes waiting for the control loop; beyond, a change is answered 503 at once.
pub const COMMAND_QUEUE: usize = 64;

/// What the API needs from files at start, read by `vipd --check` too: the tokens (refused
/// when their group or others may read them) and the TLS configuration.
pub struct Secrets {
    /// The bearer tokens.
    pub tokens: Tokens,
    /// TLS for `api.listen`, when certificates are configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Why the API's files were refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A token file.
    #[error(transparent)]
    Token(#[from] SecretError),
    /// The certificate or key.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A non-loopback address without a token.
    #[error("api.listen: {0} is not a loopback address: set api.token_file (a file with the bearer token clients must send), or listen on 127.0.0.1")]
    OpenWithoutToken(SocketAddr),
}

/// Read and check the API's files.
pub fn secrets(config: &ApiConfig) -> Result<Secrets, SecretsError> {
    let tokens = Tokens::load(
        config.token_file.as_deref(),
        config.read_token_file.as_deref(),
    )?;
    if !tokens.any() && !config.listen.ip().is_loopback() {
        return Err(SecretsError::OpenWithoutToken(config.listen));
    }
    let tls = match (&config.tls_certificate, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
        _ => None,
    };
    Ok(Secrets { tokens, tls })
}

/// The routes. `body_timeout`: how long a request's body may take to arrive.
pub fn router(shared: Arc<Shared>, body_timeout: Duration) -> Router {
    let svc = "/api/v1/services/{proto}/{vip}/{port}";
    let rs = "/api/v1/services/{proto}/{vip}/{port}/real_servers/{ip}/{rsport}";
    Router::new()
        .route("/metrics", get(read::metrics))
        .route("/api/v1/status", get(read::status))
        .route("/api/v1/stats", get(read::stats))
        .route("/api/v1/health", get(read::health))
        .route("/api/v1/health/release", post(write::release_held))
        .route("/api/v1/config", get(read::config))
        .route("/api/v1/connections", get(connections::connections))
        .route("/api/v1/trace", get(trace::trace))
        .route(
            "/api/v1/services",
            get(read::services).post(write::add_service),
        )
        .route(
            svc,
            get(read::service)
                .patch(write::edit_service)
                .delete(write::delete_service),
        )
        .route(&format!("{svc}/real_servers"), post(write::add_real_server))
        .route(
            rs,
            axum::routing::patch(write::edit_real_server).delete(write::delete_real_server),
        )
        .route(&format!("{rs}/drain"), post(write::drain_real_server))
        .route(
            "/api/v1/timeouts",
            get(read::timeouts)
                .put(write::set_timeouts)
                .patch(write::set_timeouts),
        )
        .route("/api/v1/zero", post(write::zero))
        .route("/api/v1/reload", post(write::reload))
        .route("/api/v1/box", get(boxes::status))
        .route("/api/v1/box/drain", post(boxes::drain))
        .route("/api/v1/box/resume", post(boxes::resume))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: the body is read (within its deadline) only once the request is
        // authenticated.
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::authenticate,
        ))
        .with_state(shared)
}

/// The whole body, read within `deadline` and at most [`MAX_BODY_BYTES`]: a client that sends
/// it slowly holds nothing for longer than that (408, and the connection closes).
async fn read_body(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect());
    let bytes = match collected.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body",
                format!("the body is larger than the {MAX_BODY_BYTES} bytes vipd accepts"),
            )
            .into_response()
        }
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "body",
                format!("cannot read it: {e}"),
            )
            .into_response()
        }
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body",
                format!(
                    "the body did not arrive within api.header_timeout ({} s)",
                    deadline.as_secs_f64()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Raise this process's soft descriptor limit to its hard limit, and warn when even that is
/// below what the API and the health checks may hold at once.
pub fn check_descriptors(config: &crate::config::Config, path: &Path) {
    limits::raise_and_check(config, path);
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "path",
        format!("no such endpoint: {} (docs/api.md lists them)", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// A service from the path parts `{proto}/{vip}/{port}`.
/// A `service=proto/vip/port` query parameter (listings and traces), errors naming `service`.
pub fn service_query(text: Option<&str>) -> Result<Option<ServiceKey>, ApiError> {
    let Some(p) = text else {
        return Ok(None);
    };
    let parts: Vec<&str> = p.split('/').collect();
    let [proto, vip, port] = parts[..] else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "service",
            format!("`{p}` is not proto/vip/port"),
        ));
    };
    service_key(proto, vip, port)
        .map(Some)
        .map_err(|e| ApiError {
            field: "service".into(),
            ..e
        })
}

pub fn service_key(proto: &str, vip: &str, port: &str) -> Result<ServiceKey, ApiError> {
    let bad = |field: &str, message: String| ApiError::new(StatusCode::BAD_REQUEST, field, message);
    let proto: Proto = proto.parse().map_err(|e| bad("proto", e))?;
    let vip: IpAddr = vip
        .parse()
        .map_err(|_| bad("vip", format!("`{vip}` is not an IP address")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("port", format!("`{port}` is not a port number")))?;
    Ok(ServiceKey { vip, proto, port })
}

/// A real server from the path parts `{ip}/{port}`.
pub fn real_server_key(ip: &str, port: &str) -> Result<(IpAddr, u16), ApiError> {
    let bad = |field: &str, message: String| ApiError::new(StatusCode::BAD_REQUEST, field, message);
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad("ip", format!("`{ip}` is not an IP address")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("rsport", format!("`{port}` is not a port number")))?;
    Ok((ip, port))
}
