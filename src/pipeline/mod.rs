//! Builds components from the configuration, runs collection cycles, fans snapshots out to
//! exporters, and shuts down.

mod build;
mod cycle;
mod events;
pub mod registry;
mod run;

pub use build::{Pipeline, Service, build};
pub use cycle::collect_once;
