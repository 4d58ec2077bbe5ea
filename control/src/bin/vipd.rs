//! vipd: the load balancer daemon.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vipd",
    about = "Layer-4 load balancer with a DPDK dataplane",
    version
)]
struct Cli {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (0 valid, 1 invalid).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIPD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(path) = cli.check {
        return match vipd_control::daemon::prepare(&path) {
            Ok(p) => {
                for w in &p.valid.warnings {
                    eprintln!("vipd: warning: {w}");
                }
                let c = &p.config;
                let rs: usize = c.services.iter().map(|s| s.real_servers.len()).sum();
                println!(
                    "{}: OK ({} port(s), {} worker(s), {} service(s), {} real server(s))",
                    path.display(),
                    c.ports.len(),
                    c.dataplane.worker_cores.len(),
                    c.services.len(),
                    rs
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vipd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("vipd: give --config FILE to run, or --check FILE to validate");
        return ExitCode::from(2);
    };
    match vipd_control::daemon::run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipd: {e}");
            ExitCode::FAILURE
        }
    }
}
