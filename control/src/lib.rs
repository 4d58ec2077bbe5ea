//! vipd control plane, laid out by job:
//!
//! - [`config`]: the configuration model and its one validator (file, API, `vipctl` alike);
//! - [`changes`]: live changes as edits of the running configuration;
//! - [`running`]: the configuration in force, its backend slots ([`backend_slots`]) and health;
//! - [`snapshot_build`]: from the running configuration to the dataplane's snapshot;
//! - [`neighbours`]: ARP / Neighbour Discovery resolution of next hops;
//! - [`health`]: health checks on their own thread;
//! - [`kernel`]: the exception path, a kernel interface per port and the thread feeding it;
//! - [`stats`]: per-service and per-real-server statistics, zeroing and rates;
//! - [`scaleout`]: VIP announcement over BGP and the same consistent-hash choice on every box;
//! - [`api`] and [`metrics`]: the HTTP API and Prometheus, reading the [`view`];
//! - [`daemon`]: start-up (EAL, ports, workers, threads) and the control loop.

pub mod announce;
pub mod api;
pub mod backend_slots;
pub mod changes;
pub mod config;
pub mod daemon;
pub mod health;
pub mod kernel;
pub mod liveness;
pub mod metrics;
pub mod neighbours;
pub mod running;
pub mod scaleout;
pub mod snapshot_build;
pub mod state_file;
pub mod stats;
pub mod view;
