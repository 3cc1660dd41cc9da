//! Configuration loading (placeholder, being written).
