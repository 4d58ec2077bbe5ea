//! Why vipd did not start: every start-up step's error, with the message vipd exits with.

use super::ports::PortError;
use super::primary::HostError;
use crate::api::{SecretsError, ServeError};
use crate::config::ConfigError;
use crate::kernel::KernelError;
use crate::running::ApplyError;
use crate::scaleout::SpawnError;
use std::path::PathBuf;
use vipd_dataplane::io::dpdk::DpdkError;

/// Why the daemon did not start (or, for a worker, did not keep running): vipd exits 1 with
/// the message.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file does not read or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The API's token or TLS files.
    #[error("{}: {source}", file.display())]
    Secrets {
        /// The configuration file.
        file: PathBuf,
        /// Why.
        source: SecretsError,
    },
    /// The services give no snapshot (what the validator cannot see).
    #[error("{}: services: {source}", file.display())]
    Services {
        /// The configuration file.
        file: PathBuf,
        /// Why.
        source: ApplyError,
    },
    /// The first snapshot with the state file's changes and the NICs' MACs.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// SIGINT, SIGTERM or SIGHUP cannot be caught.
    #[error("signal handler: {0}")]
    Signals(#[source] std::io::Error),
    /// The host cannot run a joinable DPDK primary.
    #[error(transparent)]
    Host(#[from] HostError),
    /// `rte_eal_init` failed.
    #[error("DPDK EAL: {0}")]
    Eal(#[source] DpdkError),
    /// The capture server (dpdk-dumpcap, dpdk-pdump) did not start.
    #[error("packet capture: {0}")]
    Capture(#[source] DpdkError),
    /// No mbuf pool.
    #[error("mbuf pool: {0}")]
    Pool(#[source] DpdkError),
    /// A port did not come up.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A kernel interface could not be made.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// A worker's queue of a port.
    #[error("worker {worker}: {source}")]
    Queue {
        /// The worker.
        worker: usize,
        /// Why.
        source: DpdkError,
    },
    /// The health checker did not start.
    #[error(transparent)]
    Health(#[from] crate::health::StartError),
    /// The scale-out thread did not start.
    #[error(transparent)]
    Scaleout(#[from] SpawnError),
    /// The API does not listen.
    #[error(transparent)]
    Api(#[from] ServeError),
    /// A worker's lcore did not launch.
    #[error("cannot start worker {worker}: {source}")]
    Worker {
        /// The worker.
        worker: usize,
        /// Why.
        source: DpdkError,
    },
    /// The exception path's lcore did not launch.
    #[error("cannot start the exception path: {0}")]
    ExceptionPath(#[source] DpdkError),
}
