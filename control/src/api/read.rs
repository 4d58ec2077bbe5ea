//! The read routes: answered from the published view and the workers' counters, never
//! waiting for the control loop.

use super::error::ApiError;
use super::json;
use super::service_key;
use crate::metrics;
use crate::view::Shared;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;

type S = State<Arc<Shared>>;

/// `GET /metrics`.
pub async fn metrics(State(shared): S) -> Response {
    let view = shared.view.load();
    let body = metrics::render(&shared, &view);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// `GET /api/v1/status`: ports, services, neighbours.
pub async fn status(State(shared): S) -> Json<Value> {
    Json(shared.view.load().status.clone())
}

/// `GET /api/v1/stats`: every worker counter.
pub async fn stats(State(shared): S) -> Json<Value> {
    Json(json::stats_json(&shared))
}

/// `GET /api/v1/services`: services, real servers, statistics, rates, health.
pub async fn services(State(shared): S) -> Json<Value> {
    let view = shared.view.load();
    Json(json::services_json(&shared, &view))
}

/// `GET /api/v1/services/{proto}/{vip}/{port}`.
pub async fn service(
    State(shared): S,
    Path((proto, vip, port)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = service_key(&proto, &vip, &port)?;
    let view = shared.view.load();
    let s = view.services.iter().find(|s| s.key == key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "service",
            format!("no service {key}"),
        )
    })?;
    let health = shared
        .health
        .status
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    Ok(Json(json::service_json(&shared, &view, s, &health)))
}

/// `GET /api/v1/health`: every check.
pub async fn health(State(shared): S) -> Json<Value> {
    let view = shared.view.load();
    Json(json::health_json_all(&shared, &view))
}

/// `GET /api/v1/timeouts`.
pub async fn timeouts(State(shared): S) -> Json<Value> {
    Json(serde_json::to_value(shared.view.load().config.flows.timeouts).unwrap_or(Value::Null))
}

/// `GET /api/v1/config`: the running configuration as TOML that `vipd --check` accepts
/// (`vipctl save`).
pub async fn config(State(shared): S) -> Result<Response, ApiError> {
    let view = shared.view.load();
    let text = view
        .config
        .to_toml()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "config", e.to_string()))?;
    let head = format!(
        "# vipd running configuration (generation {}, {} API change(s) since {} was read)\n",
        view.generation, view.unsaved_changes, view.config_path
    );
    Ok(([(header::CONTENT_TYPE, "application/toml")], head + &text).into_response())
}
