//! The burst pipeline.
