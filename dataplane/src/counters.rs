//! Per-core counters.
