//! Flows: the key, the per-core flow table, TCP state tracking and timeouts.

pub mod key;

pub use key::FlowKey;
