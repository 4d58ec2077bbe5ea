//! vipd control plane: configuration, snapshot building, neighbours, API and metrics, and the
//! daemon runtime that ties them to the DPDK dataplane.

pub mod api;
pub mod apply;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod neighbours;
