//! A parsed configuration source: its settings tree plus where each setting was written.
//!
//! The settings are kept as a `serde_json::Value` because merging and variable expansion
//! happen before anything is deserialized into typed structs (that is how the Collector
//! works too). Positions are kept beside the tree, keyed by path, so errors found much later
//! (after merging, expanding, deserializing) can still point into the right file and line.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::Location;

/// Position of every map key and list element, keyed by its path (list indices as decimal
/// strings, as they appear in error paths).
#[derive(Debug, Clone, Default)]
pub(crate) struct LocationIndex(HashMap<Vec<String>, Location>);

impl LocationIndex {
    /// Where the setting at `path` was written, if known.
    pub(crate) fn get(&self, path: &[String]) -> Option<Location> {
        self.0.get(path).cloned()
    }

    pub(crate) fn insert(&mut self, path: Vec<String>, location: Location) {
        self.0.insert(path, location);
    }

    /// Takes over `other`'s positions except the ones `keep` rejects; used when a later source
    /// is merged over earlier ones.
    pub(crate) fn absorb(&mut self, other: LocationIndex, keep: impl Fn(&[String]) -> bool) {
        for (path, location) in other.0 {
            if keep(&path) {
                self.0.insert(path, location);
            }
        }
    }
}

/// One source's (or several merged sources') settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    /// The top level, always a map.
    pub(crate) root: Map<String, Value>,
    pub(crate) locations: LocationIndex,
}
