//! The HTTP API of the control thread: `/metrics` for Prometheus, `/api/v1/*` for vipctl.
//!
//! Runs on its own thread, never touches the workers: it reads their counters and a view the
//! control loop refreshes, and sends commands (reload) to the control loop.

use crate::metrics::{self, ControlGauges};
use crossbeam::channel::{bounded, Sender};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vipd_dataplane::counters::{Counter, WorkerCounters};

/// What the control loop publishes for the API.
#[derive(Debug, Default, Clone)]
pub struct ControlView {
    /// `GET /api/v1/status` body.
    pub status: Value,
    /// Gauges for `/metrics`.
    pub gauges: ControlGauges,
}

/// A request from the API to the control loop.
pub enum Command {
    /// Reload the configuration file; answers the new generation or the error.
    Reload(Sender<Result<u64, String>>),
}

/// State shared between the API thread and the control loop.
pub struct Shared {
    /// Each worker's counters.
    pub workers: Vec<Arc<WorkerCounters>>,
    /// The control loop's view.
    pub view: Mutex<ControlView>,
    /// Commands to the control loop.
    pub commands: Sender<Command>,
}

/// Counters summed over workers, and per worker, as JSON.
pub fn stats_json(workers: &[Arc<WorkerCounters>]) -> Value {
    let mut total = serde_json::Map::new();
    for &c in Counter::ALL {
        let sum: u64 = workers.iter().map(|w| w.get(c)).sum();
        total.insert(c.name().to_string(), json!(sum));
    }
    let per_worker: Vec<Value> = workers
        .iter()
        .map(|w| {
            let mut m = serde_json::Map::new();
            for &c in Counter::ALL {
                if w.get(c) != 0 {
                    m.insert(c.name().to_string(), json!(w.get(c)));
                }
            }
            m.insert("flows_active".into(), json!(w.flows_active()));
            Value::Object(m)
        })
        .collect();
    let drops: u64 = workers.iter().map(|w| w.total_drops()).sum();
    let flows: u64 = workers.iter().map(|w| w.flows_active()).sum();
    json!({ "total": total, "drops": drops, "flows_active": flows, "workers": per_worker })
}

/// Serve until `stop` is set. Binding errors are returned (the daemon refuses to start).
pub fn serve(
    listen: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| format!("api: cannot listen on {listen}: {e}"))?;
    std::thread::Builder::new()
        .name("vipd-api".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(req)) => handle(req, &shared),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("api: {e}"),
                }
            }
        })
        .map_err(|e| format!("api: cannot start thread: {e}"))
}

fn respond(req: tiny_http::Request, code: u16, content_type: &str, body: String) {
    let mut resp = tiny_http::Response::from_string(body).with_status_code(code);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
        resp = resp.with_header(h);
    }
    if let Err(e) = req.respond(resp) {
        tracing::debug!("api: client went away: {e}");
    }
}

fn handle(req: tiny_http::Request, shared: &Shared) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let method = req.method().clone();
    let json_ct = "application/json";
    match (method, path.as_str()) {
        (tiny_http::Method::Get, "/metrics") => {
            let gauges = shared
                .view
                .lock()
                .map(|v| v.gauges.clone())
                .unwrap_or_default();
            respond(
                req,
                200,
                "text/plain; version=0.0.4",
                metrics::render(&shared.workers, &gauges),
            );
        }
        (tiny_http::Method::Get, "/api/v1/status") => {
            let status = shared
                .view
                .lock()
                .map(|v| v.status.clone())
                .unwrap_or(Value::Null);
            respond(req, 200, json_ct, status.to_string());
        }
        (tiny_http::Method::Get, "/api/v1/stats") => {
            respond(req, 200, json_ct, stats_json(&shared.workers).to_string());
        }
        (tiny_http::Method::Post, "/api/v1/reload") => {
            let (tx, rx) = bounded(1);
            let answer = if shared.commands.send(Command::Reload(tx)).is_err() {
                Err("control loop is not running".to_string())
            } else {
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| Err("reload timed out".into()))
            };
            match answer {
                Ok(g) => respond(
                    req,
                    200,
                    json_ct,
                    json!({"ok": true, "generation": g}).to_string(),
                ),
                Err(e) => respond(
                    req,
                    400,
                    json_ct,
                    json!({"ok": false, "error": e}).to_string(),
                ),
            }
        }
        (_, p) => {
            let body = json!({"error": format!("no such endpoint: {p} (try /metrics, /api/v1/status, /api/v1/stats, POST /api/v1/reload)")});
            respond(req, 404, json_ct, body.to_string());
        }
    }
}
