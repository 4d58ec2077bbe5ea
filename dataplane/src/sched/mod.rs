//! Schedulers: pick a real server for a new flow.
