//! Zero-copy header views.
