//! Forwarding rewrites per mode.
