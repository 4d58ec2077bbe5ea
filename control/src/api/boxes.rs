//! The box's own routes (scale-out): `GET /api/v1/box` (drain switch, each VIP's
//! announcement and why, the consistent-hash tables' fingerprints), `POST /api/v1/box/drain`
//! (the operator's maintenance switch: every VIP withdrawn, forwarding goes on) and
//! `POST /api/v1/box/resume`. Both answer once bird holds the new state.

use super::change_request::ChangeRequest;
use super::error::ApiError;
use crate::view::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

type S = State<Arc<Shared>>;

/// `GET /api/v1/box`.
pub async fn status(State(shared): S) -> Json<Value> {
    Json(json!(*shared.scaleout.status()))
}

async fn switch(shared: &Shared, drained: bool) -> Result<Json<Value>, ApiError> {
    match shared.scaleout.drain(drained).await {
        Ok(outcome) => Ok(Json(json!({"ok": true, "box": outcome}))),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, "bgp", e.to_string())),
    }
}

/// `POST /api/v1/box/drain`.
pub async fn drain(State(shared): S, _: ChangeRequest) -> Result<Json<Value>, ApiError> {
    switch(&shared, true).await
}

/// `POST /api/v1/box/resume`.
pub async fn resume(State(shared): S, _: ChangeRequest) -> Result<Json<Value>, ApiError> {
    switch(&shared, false).await
}
