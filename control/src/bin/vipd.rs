//! vipd: the load balancer daemon.

use clap::Parser;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

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
    /// With --check: print each service's consistent-hash table fingerprint (every real
    /// server up); boxes behind one ECMP group must print the same.
    #[arg(long, requires = "check")]
    tables: bool,
}

// A CPU below the build's baseline is refused before any code of the build runs.
vipd_dataplane::cpu_gate!();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let journal = init_logging();
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
                if cli.tables {
                    for t in &p.tables {
                        println!(
                            "{}: {}, maglev table of {} entries over {} real server(s), fingerprint {}",
                            t.service, t.scheduler, t.size, t.real_servers, t.fingerprint
                        );
                    }
                }
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
            if journal {
                // At error priority, so `journalctl -p err` and `systemctl status` show it.
                tracing::error!("{e}");
            } else {
                eprintln!("vipd: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Log to the systemd journal when stderr is connected to it, else formatted lines on stderr;
/// true for the journal. The filter is `VIPD_LOG` (default `info`) either way.
///
/// The journal keeps each event as fields (PRIORITY from the level, TARGET, CODE_FILE,
/// CODE_LINE, the event's own fields as F_<NAME>), so `journalctl -u vipd -p warning` and
/// `journalctl -o json TARGET=vipd_control::health` work; lines on stderr would reach it as
/// text at one priority. Outside systemd (a terminal, the tests) the lines stay readable.
fn init_logging() -> bool {
    let filter = || EnvFilter::try_from_env("VIPD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(journald.with_syslog_identifier("vipd".into()))
                    .init();
                return true;
            }
            Err(e) => eprintln!("vipd: cannot open the journal socket ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        // Colours for a terminal only: in a file or a pipe they are escape codes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    false
}

/// systemd sets `JOURNAL_STREAM=<device>:<inode>` of the stream it connects stdout/stderr to.
/// The variable is inherited by children whose stderr may be elsewhere (a shell started from a
/// service), so stderr itself is compared, as systemd.exec(5) recommends.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| parse_journal_stream(&v))
    else {
        return false;
    };
    let stderr = std::io::stderr().as_fd().try_clone_to_owned();
    match stderr.map(std::fs::File::from).and_then(|f| f.metadata()) {
        Ok(m) => (m.dev(), m.ino()) == stream,
        Err(_) => false,
    }
}

fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        for bad in ["", "8", "8:", ":1", "a:1", "8:1:2", "-1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }
}
