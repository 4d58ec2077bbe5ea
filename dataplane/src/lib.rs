//! vipd packet core.
//!
//! Everything here except [`io::dpdk`] is pure Rust and runs without DPDK: header views
//! ([`wire`]), the per-core flow table ([`flow`]), schedulers ([`sched`]), the NAT/DR/TUN
//! rewrites ([`fwd`]) and the burst pipeline ([`pipeline`]) that ties them together.

pub mod backend_stats;
pub mod counters;
pub mod cpu;
pub mod dispatch;
pub mod flow;
pub mod flow_sample;
pub mod fwd;
pub mod io;
pub mod ndp;
pub mod persist;
pub mod pipeline;
pub mod prefetch;
pub mod sched;
pub mod snapshot;
pub mod trace;
pub mod wire;
#[cfg(feature = "dpdk")]
pub mod worker;

// Lets unit tests share the integration tests' frame builders (`tests/common`), which name
// the crate by its external name (the fast path's differential test).
#[cfg(test)]
extern crate self as vipd_dataplane;
