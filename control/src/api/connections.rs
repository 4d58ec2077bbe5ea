//! `GET /api/v1/connections`: a bounded sample of live connections from the workers' flow
//! tables (`vipctl -c`). Each worker scans its table a bounded step per loop iteration, so a
//! listing never stalls forwarding; the answer names what was left out. With
//! `persistent=true` it lists the persistence entries instead (`vipctl -L -c
//! --persistent-conn`): client network with port 0, state `none`, as IPVS lists its
//! connection templates.

use super::error::ApiError;
use super::json::forward_name;
use super::service_query;
use crate::view::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::flow_sample::{SampleFilter, SampleRequest};

/// Default and largest number of connections listed.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
/// How long the workers get to answer.
const DEADLINE: Duration = Duration::from_secs(5);

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnQuery {
    /// `tcp/VIP/PORT`.
    service: Option<String>,
    /// Client address.
    client: Option<IpAddr>,
    /// `IP` or `IP:PORT` (`[v6]:port`).
    real_server: Option<String>,
    /// Most connections to list (per request, all workers together).
    limit: Option<usize>,
    /// List persistence entries instead of connections.
    persistent: Option<bool>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, field, message)
}

/// The route.
pub async fn connections(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<ConnQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| bad("query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(
            "limit",
            format!("{limit} is out of range 1..={MAX_LIMIT}"),
        ));
    }
    let view = shared.view.load_full();
    let service = service_query(q.service.as_deref())?;
    // Slot -> (service, real server, mode), from the view the workers' ids belong to.
    let mut slots = HashMap::new();
    for s in &view.services {
        for r in &s.real_servers {
            slots.insert(r.slot, (s.key, SocketAddr::new(r.id.1, r.id.2), r.mode));
        }
    }
    let backends = match &q.real_server {
        Some(text) => {
            let (ip, port) = match text.parse::<SocketAddr>() {
                Ok(sa) => (sa.ip(), Some(sa.port())),
                Err(_) => (
                    text.parse::<IpAddr>().map_err(|_| {
                        bad(
                            "real_server",
                            format!("`{text}` is not an address or address:port"),
                        )
                    })?,
                    None,
                ),
            };
            Some(
                slots
                    .iter()
                    .filter(|(_, (_, rs, _))| rs.ip() == ip && port.is_none_or(|p| rs.port() == p))
                    .map(|(&slot, _)| slot)
                    .collect::<Vec<u32>>(),
            )
        }
        None => None,
    };
    let filter = SampleFilter {
        service: service.map(|k| (k.vip, k.proto.number(), k.port)),
        client: q.client,
        backends,
    };
    let persistent = q.persistent.unwrap_or(false);
    let _one_at_a_time = shared.listing.lock().await;
    let workers = shared.samplers.len().max(1);
    let per_worker = limit.div_ceil(workers);
    // A stale answer from a listing whose requester gave up is thrown away first.
    for s in &shared.samplers {
        let _ = s.answer();
    }
    for s in &shared.samplers {
        let request = if persistent {
            SampleRequest::persistence(filter.clone(), per_worker)
        } else {
            SampleRequest::new(filter.clone(), per_worker)
        };
        if s.request(request).is_err() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vipd",
                "a worker is still busy with an earlier listing",
            ));
        }
    }
    let deadline = Instant::now() + DEADLINE;
    let mut answers: Vec<Option<Box<SampleRequest>>> =
        (0..shared.samplers.len()).map(|_| None).collect();
    while answers.iter().any(Option::is_none) {
        for (i, s) in shared.samplers.iter().enumerate() {
            if answers[i].is_none() {
                answers[i] = s.answer();
            }
        }
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vipd",
                "the workers did not answer within 5 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut truncated = false;
    let mut list = Vec::new();
    for (w, a) in answers.into_iter().enumerate() {
        let Some(a) = a else { continue };
        truncated |= a.truncated;
        for f in &a.out {
            let (svc, rs, mode) = match slots.get(&f.backend) {
                Some((k, rs, m)) => (Some(*k), Some(*rs), Some(*m)),
                None => (None, None, None),
            };
            let mut c = json!({
                "worker": w,
                "proto": if f.key.proto == 6 { "tcp" } else { "udp" },
                "client": SocketAddr::new(f.key.src_ip(), f.key.src_port).to_string(),
                "vip": SocketAddr::new(f.key.dst_ip(), f.key.dst_port).to_string(),
                "service": svc.map(|k| super::json::service_path(&k)),
                "real_server": rs.map(|r| r.to_string()),
                "forward": mode.map(forward_name),
                "state": f.state.name(),
                "expires_s": f.remaining_ms as f64 / 1000.0,
            });
            if let Some((addr, port)) = f.local {
                // Full-NAT: the address the real server sees instead of the client's.
                c["local"] = json!(SocketAddr::new(addr, port).to_string());
            }
            list.push(c);
        }
    }
    let mut answer = json!({"sampled": list.len(), "truncated": truncated, "connections": list});
    if persistent {
        // Only then: a connection listing keeps its shape.
        answer["persistent"] = json!(true);
    }
    Ok(Json(answer))
}
