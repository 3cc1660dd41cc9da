//! Configuration loading, shaped like the OpenTelemetry Collector's.
//!
//! ```yaml
//! receivers:
//!   netns:
//!     collection_interval: 10s
//! resolvers:
//!   interfaces: {}
//! exporters:
//!   debug:
//!     verbosity: normal
//!   debug/quiet:
//! service:
//!   extensions: []
//!   pipelines:
//!     metrics:
//!       receivers: [netns]
//!       resolvers: [interfaces]
//!       exporters: [debug]
//!   telemetry:
//!     logs:
//!       level: info
//!       encoding: console
//! ```
//!
//! Two stages, so that the loader needs no knowledge of the components:
//! 1. [`load`] parses the YAML sources, merges them, expands `${env:VAR}` references and
//!    deserializes the top level into a [`RawConfig`] whose component settings are still raw;
//! 2. each component turns its settings into its own `Config` with [`parse_component`].
//!
//! Both stages report every problem they find at once ([`ConfigErrors`]), each with the path
//! of the setting (`exporters::otlp::tls`) and, when known, the file position.

mod collect;
mod component;
mod component_id;
mod document;
mod error;
mod expand;
mod load;
mod merge;
mod model;
mod source;
mod yaml;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod load_tests;

pub use component::{Validate, parse_component};
pub use component_id::{ComponentId, ComponentIdError};
pub use error::{ConfigError, ConfigErrors, Location, PATH_SEPARATOR};
pub use load::{Loaded, load, load_with_env};
pub use model::{
    LogEncoding, LogLevel, LogsConfig, OtlpTelemetry, PipelineConfig, RawConfig, ServiceConfig,
    TelemetryConfig,
};
pub use source::Source;
