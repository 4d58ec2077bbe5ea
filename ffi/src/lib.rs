//! Placeholder: replaced by the bindings build.
