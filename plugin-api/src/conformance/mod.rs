//! The plugin conformance suite (in progress).
