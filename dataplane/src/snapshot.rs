//! The read-only configuration snapshot.
