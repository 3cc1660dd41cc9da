//! The top level of the configuration, before components are built.
//!
//! Component settings stay raw (`serde_json::Value`) here: only each component knows its own
//! settings type, so they are deserialized later with [`super::parse_component`]. Everything
//! that is not a component's settings is typed here and strict (`deny_unknown_fields`), so a
//! misspelt key is an error instead of being silently ignored.
//!
//! A null anywhere in this structure (`service:`, `pipelines:`, `metrics:` with nothing after
//! it) means "not set", i.e. the default, like an absent key.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The whole configuration, components still raw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Component id (`type[/name]`) to its raw settings (null when none were given).
    #[serde(deserialize_with = "null_as_default")]
    pub receivers: BTreeMap<String, Value>,
    #[serde(deserialize_with = "null_as_default")]
    pub resolvers: BTreeMap<String, Value>,
    #[serde(deserialize_with = "null_as_default")]
    pub exporters: BTreeMap<String, Value>,
    #[serde(deserialize_with = "null_as_default")]
    pub extensions: BTreeMap<String, Value>,
    #[serde(deserialize_with = "null_as_default")]
    pub service: ServiceConfig,
}

/// Names of [`RawConfig`]'s sections, in the order they are checked.
pub(crate) const SECTIONS: [&str; 5] = [
    "receivers",
    "resolvers",
    "exporters",
    "extensions",
    "service",
];

/// What runs: which extensions are started and how components are wired into pipelines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Ids of the extensions to start.
    #[serde(deserialize_with = "null_as_default")]
    pub extensions: Vec<String>,
    /// Pipeline id (e.g. `metrics`, `metrics/pods`) to its components.
    #[serde(deserialize_with = "null_pipelines_as_empty")]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(deserialize_with = "null_as_default")]
    pub telemetry: TelemetryConfig,
}

/// The components of one pipeline, by id. Emptiness is not checked here: that is part of
/// validating the whole graph, which knows which lists must not be empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub receivers: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub resolvers: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub exporters: Vec<String>,
}

/// The agent's own telemetry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub logs: LogsConfig,
    /// The agent's own spans, sent over OTLP/gRPC when set.
    pub traces: Option<OtlpTelemetry>,
    /// The agent's own metrics, sent over OTLP/gRPC when set.
    pub metrics: Option<OtlpTelemetry>,
}

/// Where the agent sends its own telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpTelemetry {
    /// An OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    /// How often metrics are pushed. Default: 30s (ignored for traces).
    #[serde(default = "default_telemetry_interval", with = "humantime_serde")]
    pub interval: std::time::Duration,
}

fn default_telemetry_interval() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

/// How the agent logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    #[serde(deserialize_with = "null_as_default")]
    pub level: LogLevel,
    #[serde(deserialize_with = "null_as_default")]
    pub encoding: LogEncoding,
}

/// Minimum level of the agent's own log records.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The configuration spelling, which is also what `tracing`'s filters accept.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Format of the agent's own log records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    /// Human-readable lines.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// Reads a null as `T::default()`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads pipelines, a null pipeline (`metrics:`) being an empty one rather than an error, so
/// that the graph check can say what it lacks.
fn null_pipelines_as_empty<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<String, PipelineConfig>, D::Error>
where
    D: Deserializer<'de>,
{
    let pipelines: Option<BTreeMap<String, Option<PipelineConfig>>> =
        Option::deserialize(deserializer)?;
    Ok(pipelines
        .unwrap_or_default()
        .into_iter()
        .map(|(id, pipeline)| (id, pipeline.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn everything_defaults() {
        let config: RawConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(config, RawConfig::default());
        assert_eq!(config.service.telemetry.logs.level, LogLevel::Info);
        assert_eq!(config.service.telemetry.logs.encoding, LogEncoding::Console);
    }

    #[test]
    fn nulls_mean_defaults() {
        let config: RawConfig = serde_json::from_value(json!({
            "receivers": null,
            "service": {"pipelines": {"metrics": null}, "telemetry": {"logs": {"level": null}}}
        }))
        .unwrap();
        assert!(config.receivers.is_empty());
        assert_eq!(
            config.service.pipelines["metrics"],
            PipelineConfig::default()
        );
        assert_eq!(config.service.telemetry.logs.level, LogLevel::Info);
    }

    #[test]
    fn levels_and_encodings_are_lowercase() {
        let logs: LogsConfig =
            serde_json::from_value(json!({"level": "debug", "encoding": "json"})).unwrap();
        assert_eq!(logs.level, LogLevel::Debug);
        assert_eq!(logs.encoding, LogEncoding::Json);
        assert_eq!(LogLevel::Warn.to_string(), "warn");
        assert!(serde_json::from_value::<LogsConfig>(json!({"level": "INFO"})).is_err());
    }
}
