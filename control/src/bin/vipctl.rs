//! vipctl: the operator's client for a running vipd (in the spirit of ipvsadm).

use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "vipctl", about = "Query and control a running vipd", version)]
struct Cli {
    /// Address of vipd's API (`[api] listen` in its configuration).
    #[arg(long, default_value = "127.0.0.1:9180")]
    api: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Services, real servers, neighbours and ports (JSON).
    Status,
    /// Counters summed over workers and per worker (JSON).
    Stats,
    /// Prometheus metrics as scraped.
    Metrics,
    /// Reload the configuration file (same as SIGHUP) and report the new generation.
    Reload,
}

/// A minimal HTTP/1.0 exchange: vipctl talks only to vipd's own API on a known address, so a
/// full HTTP client would add nothing.
fn request(api: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(api)
        .map_err(|e| format!("cannot reach vipd at {api}: {e} (is vipd running? see --api)"))?;
    s.set_read_timeout(Some(Duration::from_secs(35)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {api}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .map_err(|e| format!("reading vipd's answer: {e}"))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or("malformed answer from vipd")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line from vipd")?;
    Ok((code, body.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (method, path) = match cli.command {
        Cmd::Status => ("GET", "/api/v1/status"),
        Cmd::Stats => ("GET", "/api/v1/stats"),
        Cmd::Metrics => ("GET", "/metrics"),
        Cmd::Reload => ("POST", "/api/v1/reload"),
    };
    match request(&cli.api, method, path) {
        Ok((code, body)) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(body);
            println!("{pretty}");
            if (200..300).contains(&code) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("vipctl: {e}");
            ExitCode::FAILURE
        }
    }
}
