//! vipctl: the operator's client of a running vipd, with ipvsadm's commands and tables
//! (`vipctl --help`; docs/operations.md maps each command to ipvsadm's). It only talks to
//! vipd's HTTP API (docs/api.md): argument parsing ([`args`], with ipvsadm's table of which
//! options each command takes in [`commands`]) into an [`action::Action`], the HTTP client
//! ([`client`]), the tables ([`render`]), the help text ([`usage`]).

mod action;
mod args;
mod boxes;
mod client;
mod commands;
mod render;
mod trace;
mod unix;
mod usage;

use action::{Action, Server, Service};
use args::Cli;
use clap::Parser;
use client::{Client, Failure, Method};
use serde_json::Value;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Exit status of a refused change or an unreachable vipd (ipvsadm's for a failed command).
const FAILED: u8 = 1;
/// Exit status of a usage error (ipvsadm's and clap's).
const USAGE: u8 = 2;

fn service_path(s: &Service) -> String {
    format!("/api/v1/services/{}", s.path())
}

fn server_path(s: &Service, r: &Server) -> String {
    format!("{}/real_servers/{}/{}", service_path(s), r.ip, r.port_in(s))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()) + "\n"
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Do `action`; what to print on success.
fn run(c: &Client, action: &Action) -> Result<String, Failure> {
    let listing = |v: Value, json: bool, table: &dyn Fn(&Value) -> String| {
        if json {
            pretty(&v)
        } else {
            table(&v)
        }
    };
    let silent = |_: Value| String::new();
    Ok(match action {
        Action::AddService(body) => silent(c.send(Method::Post, "/api/v1/services", Some(body))?),
        Action::EditService(s, patch) => {
            silent(c.send(Method::Patch, &service_path(s), Some(patch))?)
        }
        Action::DeleteService(s) => silent(c.send(Method::Delete, &service_path(s), None)?),
        Action::AddServer(s, body) => silent(c.send(
            Method::Post,
            &format!("{}/real_servers", service_path(s)),
            Some(body),
        )?),
        Action::EditServer(s, r, patch) => {
            silent(c.send(Method::Patch, &server_path(s, r), Some(patch))?)
        }
        Action::DeleteServer(s, r) => silent(c.send(Method::Delete, &server_path(s, r), None)?),
        Action::Drain(s, r) => {
            silent(c.send(Method::Post, &format!("{}/drain", server_path(s, r)), None)?)
        }
        Action::List {
            service: None,
            table,
            exact,
            json,
        } => listing(c.get("/api/v1/services", &[])?, *json, &|v| {
            render::services(v, *table, *exact)
        }),
        Action::List {
            service: Some(s),
            table,
            exact,
            json,
        } => listing(c.get(&service_path(s), &[])?, *json, &|v| {
            render::service(v, *table, *exact)
        }),
        Action::Connections { query, json } => listing(
            c.get("/api/v1/connections", query)?,
            *json,
            &render::connections,
        ),
        Action::Timeouts { json } => {
            listing(c.get("/api/v1/timeouts", &[])?, *json, &render::timeouts)
        }
        Action::SetTimeouts(m) if m.is_empty() => String::new(),
        Action::SetTimeouts(m) => silent(c.send(
            Method::Patch,
            "/api/v1/timeouts",
            Some(&Value::Object(m.clone())),
        )?),
        Action::Zero(s) => {
            let body = s.map(|s| serde_json::json!({"service": s.path()}));
            silent(c.send(Method::Post, "/api/v1/zero", body.as_ref())?)
        }
        Action::Save => c.get_text("/api/v1/config")?,
        Action::Health { service, json } => {
            let only = service.map(|s| s.path());
            let v = c.get("/api/v1/health", &[])?;
            if *json {
                pretty(&v)
            } else {
                render::health(&v, only.as_deref(), now_ms())
            }
        }
        Action::ReleaseHeld(s) => {
            let body = s.map(|s| serde_json::json!({"service": s.path()}));
            render::released(&c.send(Method::Post, "/api/v1/health/release", body.as_ref())?)
        }
        Action::Status { json } => listing(c.get("/api/v1/status", &[])?, *json, &render::status),
        Action::Stats { json } => listing(c.get("/api/v1/stats", &[])?, *json, &render::stats),
        Action::Metrics => c.get_text("/metrics")?,
        Action::Trace { query, json } => {
            listing(c.get("/api/v1/trace", query)?, *json, &trace::table)
        }
        Action::DrainBox(on) => {
            let path = if *on {
                "/api/v1/box/drain"
            } else {
                "/api/v1/box/resume"
            };
            boxes::switched(&c.send(Method::Post, path, None)?)
        }
        Action::Box { json } => listing(c.get("/api/v1/box", &[])?, *json, &boxes::status),
        Action::Reload => {
            let v = c.send(Method::Post, "/api/v1/reload", None)?;
            format!(
                "vipd: configuration reloaded (generation {})\n",
                v["generation"]
            )
        }
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            eprintln!("vipctl: {}", first.strip_prefix("error: ").unwrap_or(first));
            eprintln!("Try `vipctl -h' or 'vipctl --help' for more information.");
            return ExitCode::from(USAGE);
        }
    };
    let action = match cli.action() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vipctl: {}", e.0);
            eprintln!("Try `vipctl -h' or 'vipctl --help' for more information.");
            return ExitCode::from(USAGE);
        }
    };
    let trust = client::Trust {
        ca: cli.cacert.clone(),
        insecure: cli.insecure,
    };
    let result = Client::new(&cli.endpoint(), cli.token_file.as_deref(), &trust)
        .and_then(|c| run(&c, &action));
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("vipctl: {f}");
            ExitCode::from(FAILED)
        }
    }
}
