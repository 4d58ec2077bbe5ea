//! Forwarding rewrites per mode. Each function rewrites a validated L3 packet in place and
//! leaves the Ethernet header to the pipeline.

pub mod fnat;
pub mod fragment;
pub mod icmp_error;
pub mod icmp_relay;
pub mod nat;
pub mod tunnel;

use crate::counters::DropReason;

/// Result of a rewrite: the drop reason on failure.
pub type RewriteResult = Result<(), DropReason>;
