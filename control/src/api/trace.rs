//! `GET /api/v1/trace`: the four steps of live connections (`vipctl trace`). Each worker records,
//! for a few seconds, the frames of the connections that match the filter as it saw them and as
//! it sent them on (bounded: a buffer reserved here, no cost when no trace runs); this route
//! arranges them per connection in the NAT-table layout operators know (step, process, source,
//! destination, MACs).

use super::error::ApiError;
use super::json::forward_name;
use super::service_query;
use crate::view::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vipd_dataplane::pipeline::Action;
use vipd_dataplane::snapshot::FwdMode;
use vipd_dataplane::trace::{Headers, TraceFilter, TraceJob, TraceRecord};

/// Default and largest trace duration, seconds.
const DEFAULT_SECONDS: f64 = 2.0;
const MAX_SECONDS: f64 = 10.0;
/// Default and largest number of frames each worker records.
const DEFAULT_LIMIT: usize = 256;
const MAX_LIMIT: usize = 4096;

/// The steps' names, as in the four-step model.
const PROCESS: [&str; 4] = [
    "Client to load balancer",
    "Load balancer to server",
    "Server to load balancer",
    "Load balancer to client",
];

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    /// `tcp/VIP/PORT`.
    service: Option<String>,
    /// Client address.
    client: Option<IpAddr>,
    /// `IP` or `IP:PORT`.
    real_server: Option<String>,
    /// How long the workers record.
    seconds: Option<f64>,
    /// Frames each worker records at most.
    limit: Option<usize>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, field, message)
}

fn endpoint(text: &str, field: &str) -> Result<(IpAddr, Option<u16>), ApiError> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    text.parse::<IpAddr>()
        .map(|ip| (ip, None))
        .map_err(|_| bad(field, format!("`{text}` is not an address or address:port")))
}

/// One connection's steps, filled from its records.
#[derive(Default)]
struct Steps {
    worker: usize,
    proto: u8,
    /// First frame of each step: (headers, port, the pipeline's decision).
    first: [Option<(Headers, u16, String)>; 4],
    packets: [u64; 4],
    real_server: Option<SocketAddr>,
    tunnel: bool,
}

fn action_text(a: &Action) -> String {
    match a {
        Action::Tx(p) => format!("sent on port {p}"),
        Action::Drop(c) => format!("dropped: {}", c.name()),
        Action::ToControl => "to the control thread".into(),
        Action::ToKernel => "to the kernel".into(),
        Action::Steer(w) => format!("steered to worker {w}"),
    }
}

fn sa(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn headers_json(step: usize, h: &Headers, port: u16, decision: &str, packets: u64) -> Value {
    json!({
        "step": step + 1, "process": PROCESS[step],
        "source": sa(h.src, h.src_port), "destination": sa(h.dst, h.dst_port),
        "source_mac": h.src_mac.to_string(), "destination_mac": h.dst_mac.to_string(),
        "outer": h.outer.map(|(s, d)| json!({"source": s.to_string(), "destination": d.to_string()})),
        "port": port, "packets": packets, "decision": decision,
    })
}

/// Arrange the records by connection: (client endpoint, VIP endpoint, protocol).
fn connections(
    answers: &[(usize, Box<TraceJob>)],
    is_vip: &dyn Fn(&IpAddr, u16, u8) -> bool,
) -> BTreeMap<(String, String, u8), Steps> {
    let mut out: BTreeMap<(String, String, u8), Steps> = BTreeMap::new();
    for (worker, job) in answers {
        for r in &job.records {
            let TraceRecord {
                seen,
                sent,
                action,
                rx_port,
                ..
            } = r;
            if matches!(action, Action::Steer(_)) {
                continue; // recorded again by the worker it went to
            }
            let from_client = is_vip(&seen.dst, seen.dst_port, seen.proto);
            let (key, steps) = if from_client {
                (
                    (sa(seen.src, seen.src_port), sa(seen.dst, seen.dst_port)),
                    (0, 1),
                )
            } else if let Some((_, s)) = sent.filter(|(_, s)| is_vip(&s.src, s.src_port, s.proto)) {
                ((sa(s.dst, s.dst_port), sa(s.src, s.src_port)), (2, 3))
            } else {
                // A reply that was not sent on: the client is its destination; the VIP is
                // the one a known connection of that client has.
                let client = sa(seen.dst, seen.dst_port);
                let vip = out
                    .keys()
                    .find(|(c, _, p)| *c == client && *p == seen.proto)
                    .map(|(_, v, _)| v.clone())
                    .unwrap_or_else(|| "?".into());
                ((client, vip), (2, 3))
            };
            let e = out.entry((key.0, key.1, seen.proto)).or_default();
            e.worker = *worker;
            e.proto = seen.proto;
            let (a, b) = steps;
            e.packets[a] += 1;
            if e.first[a].is_none() {
                e.first[a] = Some((*seen, *rx_port, action_text(action)));
            }
            if !from_client && e.real_server.is_none() {
                e.real_server = Some(SocketAddr::new(seen.src, seen.src_port));
            }
            if let Some((port, s)) = sent {
                e.packets[b] += 1;
                if e.first[b].is_none() {
                    e.first[b] = Some((*s, *port, action_text(action)));
                }
                if from_client {
                    e.tunnel |= s.outer.is_some();
                    // NAT: the new destination; TUN: the outer one. DR changes only the MAC,
                    // so the destination stays the VIP: the real server is found by its mode
                    // below (not by address).
                    e.real_server = Some(match s.outer {
                        Some((_, outer_dst)) => SocketAddr::new(outer_dst, s.dst_port),
                        None => SocketAddr::new(s.dst, s.dst_port),
                    });
                }
            }
        }
    }
    out
}

/// The route.
pub async fn trace(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| bad("query", e.body_text()))?;
    let seconds = q.seconds.unwrap_or(DEFAULT_SECONDS);
    if !(0.1..=MAX_SECONDS).contains(&seconds) {
        return Err(bad(
            "seconds",
            format!("{seconds} is out of range 0.1..={MAX_SECONDS}"),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(
            "limit",
            format!("{limit} is out of range 1..={MAX_LIMIT}"),
        ));
    }
    let service = service_query(q.service.as_deref())?;
    let real_server = q
        .real_server
        .as_deref()
        .map(|t| endpoint(t, "real_server"))
        .transpose()?;
    if q.client.is_none() && service.is_none() && real_server.is_none() {
        return Err(bad(
            "query",
            "give at least one of client, service and real_server: a trace follows some connections, not the whole box",
        ));
    }
    let filter = TraceFilter {
        client: q.client,
        vip: service.map(|k| (k.vip, Some(k.port))),
        real_server,
    };
    let _one_at_a_time = shared.listing.lock().await;
    for t in &shared.tracers {
        let _ = t.answer();
    }
    let duration_ms = (seconds * 1000.0) as u64;
    for t in &shared.tracers {
        if t.request(TraceJob::new(filter.clone(), limit, duration_ms))
            .is_err()
        {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vipd",
                "a worker is still busy with an earlier trace",
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_millis(duration_ms) + Duration::from_secs(5);
    let mut answers: Vec<(usize, Box<TraceJob>)> = Vec::new();
    let mut pending: Vec<usize> = (0..shared.tracers.len()).collect();
    while !pending.is_empty() {
        pending.retain(|&w| match shared.tracers[w].answer() {
            Some(a) => {
                answers.push((w, a));
                false
            }
            None => true,
        });
        if Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "vipd",
                "the workers did not end the trace in time",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let view = shared.view.load_full();
    let is_vip = |ip: &IpAddr, port: u16, proto: u8| {
        view.services
            .iter()
            .any(|s| s.key.vip == *ip && s.key.port == port && s.key.proto.number() == proto)
    };
    let modes: BTreeMap<SocketAddr, (String, FwdMode)> = view
        .services
        .iter()
        .flat_map(|s| {
            s.real_servers.iter().map(move |r| {
                (
                    SocketAddr::new(r.id.1, r.id.2),
                    (super::json::service_path(&s.key), r.mode),
                )
            })
        })
        .collect();
    let mut conns = connections(&answers, &is_vip);
    // DR leaves the VIP as the destination: the real server is the one whose MAC step 2 used.
    for ((_, vip, _), st) in conns.iter_mut() {
        let Some((h, ..)) = st.first[1].as_ref() else {
            continue;
        };
        if st.tunnel || sa(h.dst, h.dst_port) != *vip {
            continue;
        }
        st.real_server = view
            .services
            .iter()
            .filter(|s| sa(s.key.vip, s.key.port) == *vip)
            .flat_map(|s| s.real_servers.iter())
            .find(|r| r.next_hop.is_some_and(|(_, m)| m == Some(h.dst_mac)))
            .map(|r| SocketAddr::new(r.id.1, r.id.2));
    }
    let list: Vec<Value> = conns
        .iter()
        .map(|((client, vip, proto), st)| {
            let mode = st
                .real_server
                .and_then(|r| modes.get(&r))
                .map(|(_, m)| *m);
            let steps: Vec<Value> = (0..4)
                .filter_map(|i| {
                    st.first[i]
                        .as_ref()
                        .map(|(h, port, decision)| headers_json(i, h, *port, decision, st.packets[i]))
                })
                .collect();
            let mut notes = Vec::new();
            match mode {
                Some(FwdMode::Dr) | Some(FwdMode::Tunnel) => notes.push(
                    "steps 3 and 4 do not pass through vipd in DR and TUN: the real server answers the client directly".to_string(),
                ),
                _ if st.first[0].is_some() && st.first[2].is_none() => notes.push(
                    "no reply came back through vipd during the trace (step 3): if the connection is not idle, is the real server's default route via vipd?".to_string(),
                ),
                _ => {}
            }
            json!({
                "proto": if *proto == 6 { "tcp" } else { "udp" },
                "client": client, "vip": vip, "worker": st.worker,
                "real_server": st.real_server.map(|r| r.to_string()),
                "forward": mode.map(forward_name),
                "steps": steps, "notes": notes,
            })
        })
        .collect();
    let examined: u64 = answers.iter().map(|(_, a)| a.examined).sum();
    let missed: u64 = answers.iter().map(|(_, a)| a.missed).sum();
    let recorded: usize = answers.iter().map(|(_, a)| a.records.len()).sum();
    Ok(Json(json!({
        "seconds": seconds, "frames_examined": examined, "frames_recorded": recorded,
        "frames_missed": missed, "connections": list,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipd_dataplane::wire::MacAddr;

    fn h(src: &str, dst: &str, mac: (u8, u8)) -> Headers {
        let s: SocketAddr = src.parse().unwrap();
        let d: SocketAddr = dst.parse().unwrap();
        Headers {
            src_mac: MacAddr([2, 0, 0, 0, 0, mac.0]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, mac.1]),
            src: s.ip(),
            dst: d.ip(),
            proto: 6,
            src_port: s.port(),
            dst_port: d.port(),
            outer: None,
        }
    }

    #[test]
    fn records_become_the_four_steps_of_a_nat_connection() {
        let mut job = TraceJob::new(TraceFilter::default(), 8, 1000);
        let client = "192.0.2.1:40000";
        let vip = "10.0.100.1:80";
        let rs = "10.0.0.21:8080";
        job.records.push(TraceRecord {
            at_ms: 1,
            rx_port: 0,
            seen: h(client, vip, (1, 10)),
            sent: Some((0, h(client, rs, (10, 21)))),
            action: Action::Tx(0),
        });
        job.records.push(TraceRecord {
            at_ms: 2,
            rx_port: 0,
            seen: h(rs, client, (21, 10)),
            sent: Some((0, h(vip, client, (10, 1)))),
            action: Action::Tx(0),
        });
        job.records.push(TraceRecord {
            at_ms: 3,
            rx_port: 0,
            seen: h(client, vip, (1, 10)),
            sent: Some((0, h(client, rs, (10, 21)))),
            action: Action::Tx(0),
        });
        let vip_sa: SocketAddr = vip.parse().unwrap();
        let conns = connections(&[(0, job)], &|ip, port, _| {
            *ip == vip_sa.ip() && port == vip_sa.port()
        });
        assert_eq!(conns.len(), 1);
        let st = &conns[&(client.to_string(), vip.to_string(), 6)];
        assert_eq!(st.packets, [2, 2, 1, 1]);
        assert_eq!(st.real_server, Some(rs.parse().unwrap()));
        let step = |i: usize| {
            st.first[i]
                .as_ref()
                .map(|(h, ..)| (sa(h.src, h.src_port), sa(h.dst, h.dst_port)))
                .unwrap()
        };
        assert_eq!(step(0), (client.into(), vip.into()));
        assert_eq!(step(1), (client.into(), rs.into()));
        assert_eq!(step(2), (rs.into(), client.into()));
        assert_eq!(step(3), (vip.into(), client.into()));
    }
}
