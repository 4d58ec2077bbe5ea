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
    #[arg(long, value_name = "FILE", conflicts_with_all = ["check", "reload"])]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (0 valid, 1 invalid).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// With --check: print each service's consistent-hash table fingerprint (every real
    /// server up); boxes behind one ECMP group must print the same.
    #[arg(long, requires = "check")]
    tables: bool,
    /// With --check: also compare the file with the configuration the running vipd (the one
    /// that last wrote the file's `[state] file`) runs, and list the changes only a restart
    /// applies (exit 3 when there are some).
    #[arg(long, requires = "check")]
    against_running: bool,
    /// Reload the running vipd (SIGHUP) and wait for the outcome: exit 0 when applied, 1 when
    /// refused (systemd's ExecReload, so `systemctl reload vipd` fails on a bad file).
    #[arg(long, conflicts_with = "check")]
    reload: bool,
    /// With --reload: the vipd to reload (default: $MAINPID, which systemd sets).
    #[arg(long, env = "MAINPID", value_name = "PID")]
    pid: Option<i32>,
    /// With --reload: where vipd reports reloads (default: $RUNTIME_DIRECTORY, which systemd
    /// sets from the unit's RuntimeDirectory=vipd).
    #[arg(long, env = "RUNTIME_DIRECTORY", value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
}

// A CPU below the build's baseline is refused before any code of the build runs.
vipd_dataplane::cpu_gate!();

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.reload {
        return reload(&cli);
    }
    let journal = init_logging();
    log_panics();
    if let Some(path) = cli.check {
        return match vipd_control::daemon::prepare(&path) {
            Ok(p) => {
                for w in &p.valid.warnings {
                    eprintln!("vipd: warning: {w}");
                }
                let c = &p.config;
                let rs: usize = c.services.iter().map(|s| s.real_servers.len()).sum();
                let vlans: usize = c.ports.iter().map(|p| p.vlans.len()).sum();
                println!(
                    "{}: OK ({} port(s){}, {} worker(s), {} service(s), {} real server(s))",
                    path.display(),
                    c.ports.len(),
                    if vlans > 0 {
                        format!(" with {vlans} VLAN(s)")
                    } else {
                        String::new()
                    },
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
                if cli.against_running {
                    return against_running(&path, &p.config);
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

/// `vipd --reload`: SIGHUP to the running vipd, then its verdict on the file.
fn reload(cli: &Cli) -> ExitCode {
    let dir = cli
        .runtime_dir
        .as_ref()
        .and_then(|d| d.to_str())
        .and_then(|d| d.split(':').next())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    match vipd_control::daemon::reload_outcome::request(cli.pid, dir) {
        Ok(o) => {
            println!("vipd: {}", o.message);
            if o.applied {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("vipd: {e}");
            ExitCode::from(2)
        }
    }
}

/// `vipd --check FILE --against-running`: what of FILE only a restart would apply, compared
/// with the configuration the state file says the running vipd runs.
fn against_running(path: &std::path::Path, new: &vipd_control::config::Config) -> ExitCode {
    use vipd_control::state_file;
    let state_path = &new.state.file;
    let kept = match state_file::read(state_path) {
        Ok(Some(k)) => k,
        Ok(None) => {
            eprintln!(
                "vipd: no running configuration to compare with: {} does not exist (vipd has not run with this state file)",
                state_path.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("vipd: {e}");
            return ExitCode::from(2);
        }
    };
    let alive = std::path::Path::new(&format!("/proc/{}", kept.pid)).exists();
    println!(
        "running configuration: vipd pid {}{}, from {} ({} API change(s) not saved)",
        kept.pid,
        if alive {
            ""
        } else {
            " (not running now: as it last ran)"
        },
        kept.config_file.display(),
        kept.unsaved_changes
    );
    if kept.unsaved_changes > 0 {
        println!(
            "vipd: warning: a reload replaces the {} unsaved API change(s) with {} (vipctl -S prints them)",
            kept.unsaved_changes,
            path.display()
        );
    }
    let restart = vipd_control::config::reload::restart_only_changes(&kept.running, new);
    if restart.is_empty() {
        println!("{}: a reload applies it", path.display());
        return ExitCode::SUCCESS;
    }
    println!(
        "{}: {} change(s) only a restart applies (a reload is refused):",
        path.display(),
        restart.len()
    );
    for r in &restart {
        println!("  {r}");
    }
    ExitCode::from(3)
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

/// A panic anywhere (a worker on its EAL lcore, the control loop, a helper thread) is logged
/// with its thread and location, at error priority in the journal, before the default hook
/// prints it and, with the release profile's `panic = "abort"`, the process aborts (and
/// systemd restarts it): without this the abort would leave only a core dump's signal behind.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let (line, at) = describe_panic(thread.name(), info.payload(), info.location());
        tracing::error!(panic.location = %at, "{line}");
        default(info);
    }));
}

/// The log line for a panic, and its location as `file:line:column`.
fn describe_panic(
    thread: Option<&str>,
    payload: &(dyn std::any::Any + Send),
    location: Option<&std::panic::Location>,
) -> (String, String) {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let at = location.map_or_else(|| "an unknown location".into(), |l| l.to_string());
    let line = format!(
        "panic in thread {}: {message}, at {at}",
        thread.unwrap_or("(unnamed)")
    );
    (line, at)
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
    fn a_panic_is_described_with_its_thread_message_and_location() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Option<(String, String)>>> = Arc::default();
        let keep = Arc::clone(&seen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let t = std::thread::current();
            *keep.lock().unwrap() = Some(describe_panic(t.name(), info.payload(), info.location()));
        }));
        let line = line!() + 3;
        let r = std::thread::Builder::new()
            .name("rte-worker-0".into())
            .spawn(|| panic!("flow table index {} out of range", 7))
            .unwrap()
            .join();
        std::panic::set_hook(previous);
        assert!(r.is_err());
        let (text, at) = seen.lock().unwrap().clone().expect("the hook ran");
        assert!(at.starts_with(&format!("{}:{line}:", file!())), "{at}");
        assert_eq!(
            text,
            format!("panic in thread rte-worker-0: flow table index 7 out of range, at {at}")
        );
        let (text, _) = describe_panic(None, &42u32, None);
        assert_eq!(
            text,
            "panic in thread (unnamed): (no message), at an unknown location"
        );
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        for bad in ["", "8", "8:", ":1", "a:1", "8:1:2", "-1:2"] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }
}
