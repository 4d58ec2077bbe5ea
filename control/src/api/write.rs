//! The routes that change something: each becomes a command to the control loop, which
//! validates it with the configuration's validator and publishes one new snapshot, or refuses
//! it and changes nothing.

use super::change_request::ChangeRequest;
use super::error::ApiError;
use super::{real_server_key, service_key, MAX_BODY_BYTES};
use crate::changes::Change;
use crate::config::ServiceKey;
use crate::view::{Command, Reply, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

type S = State<Arc<Shared>>;

/// How long a change may wait for the control loop (it answers within one tick normally).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes of a body, or why they could not be read (too large: the limit, in words).
fn bytes(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the body is larger than the {MAX_BODY_BYTES} bytes vipd accepts")
        } else {
            e.body_text()
        };
        ApiError::new(e.status(), "body", message)
    })
}

/// A JSON body: size-limited by the router, parsed here so errors are JSON too.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = bytes(b)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body",
            "a JSON object is needed",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "body", format!("not JSON: {e}")))
}

async fn submit<T>(shared: &Shared, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vipd",
            "the control loop is not running (vipd is stopping)",
        )
    };
    shared.commands.try_send(make(tx)).map_err(|e| match e {
        crossbeam::channel::TrySendError::Full(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vipd",
            format!(
                "{} changes wait for the control loop already: try again (nothing was applied)",
                super::COMMAND_QUEUE
            ),
        ),
        crossbeam::channel::TrySendError::Disconnected(_) => gone(),
    })?;
    match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
        Ok(Ok(answer)) => answer.map_err(ApiError::from),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vipd",
            "the control loop did not answer within 30 s: the request is not applied",
        )),
    }
}

async fn change(
    shared: &Shared,
    c: Change,
    created: bool,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let generation = submit(shared, |r| Command::Change(c, r)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"ok": true, "generation": generation}))))
}

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

/// `POST /api/v1/services`.
pub async fn add_service(
    State(shared): S,
    _: ChangeRequest,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    change(&shared, Change::AddService(body(b)?), true).await
}

/// `PATCH /api/v1/services/{proto}/{vip}/{port}`.
pub async fn edit_service(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    change(&shared, Change::EditService(key, body(b)?), false).await
}

/// `DELETE /api/v1/services/{proto}/{vip}/{port}`.
pub async fn delete_service(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port)): Path<(String, String, String)>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    change(&shared, Change::DeleteService(key), false).await
}

/// `POST /api/v1/services/{proto}/{vip}/{port}/real_servers`.
pub async fn add_real_server(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port)): Path<(String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    change(&shared, Change::AddRealServer(key, body(b)?), true).await
}

/// `PATCH /api/v1/services/{proto}/{vip}/{port}/real_servers/{ip}/{rsport}`.
pub async fn edit_real_server(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port, ip, rsport)): Path<(String, String, String, String, String)>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    let (ip, rsport) = real_server_key(&ip, &rsport)?;
    change(
        &shared,
        Change::EditRealServer(key, ip, rsport, body(b)?),
        false,
    )
    .await
}

/// `POST .../real_servers/{ip}/{rsport}/drain`: weight 0 (no new flows; existing ones run to
/// their end).
pub async fn drain_real_server(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port, ip, rsport)): Path<(String, String, String, String, String)>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    let (ip, rsport) = real_server_key(&ip, &rsport)?;
    change(
        &shared,
        Change::EditRealServer(key, ip, rsport, json!({"weight": 0})),
        false,
    )
    .await
}

/// `DELETE .../real_servers/{ip}/{rsport}`.
pub async fn delete_real_server(
    State(shared): S,
    _: ChangeRequest,
    Path((proto, vip, port, ip, rsport)): Path<(String, String, String, String, String)>,
) -> Answer {
    let key = service_key(&proto, &vip, &port)?;
    let (ip, rsport) = real_server_key(&ip, &rsport)?;
    change(&shared, Change::DeleteRealServer(key, ip, rsport), false).await
}

/// `PUT|PATCH /api/v1/timeouts`: some `[flows.timeouts]` keys.
pub async fn set_timeouts(
    State(shared): S,
    _: ChangeRequest,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    change(&shared, Change::SetTimeouts(body(b)?), false).await
}

/// A body that is empty or `{"service": "tcp/VIP/PORT"}`: the service named, which must exist.
fn optional_service(
    shared: &Shared,
    b: Result<Bytes, BytesRejection>,
) -> Result<Option<ServiceKey>, ApiError> {
    let bytes = bytes(b)?;
    let service = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "body", format!("not JSON: {e}"))
        })?;
        let obj = v.as_object().ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "body", "a JSON object is needed")
        })?;
        if let Some(k) = obj.keys().find(|k| *k != "service") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                k.clone(),
                "unknown field (only `service`)",
            ));
        }
        match obj.get("service") {
            None => None,
            Some(Value::String(p)) => {
                let parts: Vec<&str> = p.split('/').collect();
                let [proto, vip, port] = parts[..] else {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "service",
                        format!("`{p}` is not proto/vip/port"),
                    ));
                };
                Some(service_key(proto, vip, port).map_err(|e| ApiError {
                    field: "service".into(),
                    ..e
                })?)
            }
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "service",
                    "a string proto/vip/port is needed",
                ))
            }
        }
    };
    if let Some(k) = service {
        if !shared.view.load().services.iter().any(|s| s.key == k) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "service",
                format!("no service {k}"),
            ));
        }
    }
    Ok(service)
}

/// `POST /api/v1/zero`: zero the listed statistics; body `{"service": "tcp/VIP/PORT"}` for one
/// service, empty for all. Prometheus counters are never reset.
pub async fn zero(State(shared): S, _: ChangeRequest, b: Result<Bytes, BytesRejection>) -> Answer {
    let service = optional_service(&shared, b)?;
    submit(&shared, |r| Command::Zero(service, r)).await?;
    Ok((StatusCode::OK, Json(json!({"ok": true}))))
}

/// `POST /api/v1/health/release`: apply the down verdicts the mass-transition guard holds
/// (body `{"service": "tcp/VIP/PORT"}` for one service, empty for all); answers the real
/// servers taken down.
pub async fn release_held(
    State(shared): S,
    _: ChangeRequest,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let service = optional_service(&shared, b)?;
    let released = shared
        .health
        .release(service)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "vipd", e.to_string()))?;
    let list: Vec<Value> = released
        .iter()
        .map(|(k, ip, port)| {
            json!({"service": super::json::service_path(k),
                   "real_server": std::net::SocketAddr::new(*ip, *port).to_string()})
        })
        .collect();
    Ok((StatusCode::OK, Json(json!({"ok": true, "released": list}))))
}

/// `POST /api/v1/reload`: re-read the configuration file (same as SIGHUP).
pub async fn reload(State(shared): S, _: ChangeRequest) -> Answer {
    let generation = submit(&shared, Command::Reload).await?;
    Ok((
        StatusCode::OK,
        Json(json!({"ok": true, "generation": generation})),
    ))
}
