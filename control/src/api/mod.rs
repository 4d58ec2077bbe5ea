//! The HTTP API of the control plane: `/metrics` for Prometheus, `/api/v1/*` for vipctl and
//! automation (docs/api.md lists every route).
//!
//! It runs on its own thread with a small async runtime, so a slow client or a reload in
//! progress never holds up another request: reads answer from the view the control loop
//! publishes and from the workers' counters; changes are submitted to the control loop as
//! commands and awaited without blocking anything else.

mod auth;
mod boxes;
mod connections;
mod error;
pub mod json;
mod read;
mod trace;
mod write;

pub use auth::read_token;
pub use error::ApiError;

use crate::config::{Proto, ServiceKey};
use crate::view::Shared;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Largest request body (a service with a few hundred real servers fits easily).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes.
pub fn router(shared: Arc<Shared>) -> Router {
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
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
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

/// The running API server.
pub struct ApiServer {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Listen on `listen` (errors are returned: vipd refuses to start) and serve on a thread.
    pub fn start(listen: SocketAddr, shared: Arc<Shared>) -> Result<ApiServer, String> {
        let std_listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("api: cannot listen on {listen}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("api: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("api: cannot start its runtime: {e}"))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let app = router(shared);
        let thread = std::thread::Builder::new()
            .name("vipd-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("api: {e}");
                            return;
                        }
                    };
                    let mut graceful = stop_rx.clone();
                    let mut hard = stop_rx;
                    let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = graceful.wait_for(|&s| s).await;
                    });
                    // Open connections get a moment to finish, not forever: a stuck client
                    // must not hold vipd's shutdown.
                    tokio::select! {
                        r = served => if let Err(e) = r { tracing::error!("api: {e}") },
                        _ = async {
                            let _ = hard.wait_for(|&s| s).await;
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        } => {}
                    }
                })
            })
            .map_err(|e| format!("api: cannot start thread: {e}"))?;
        Ok(ApiServer {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
