//! Turning one component's raw settings into its typed `Config`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::collect::deserialize_all;
use super::error::{ConfigError, ConfigErrors};

/// Checks a component's settings beyond what their types express (ranges, exclusive options,
/// ...). Implemented by every component's `Config`; the default finds no problem.
pub trait Validate {
    /// Every problem found, each a sentence saying what is wrong and what is expected. A
    /// problem about a nested setting may start with its sub-path (`"tls::ca_file: ..."`).
    fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Deserializes one component's settings found at `path` (e.g. `"exporters::debug/quiet"`),
/// then validates them. Null settings (`debug:` alone) mean all defaults, like `{}`. Every
/// problem is returned, each with its path (`exporters::otlp::tls: unknown field ...`); the
/// positions of the problems are not known here, only their paths.
pub fn parse_component<T: DeserializeOwned + Validate>(
    path: &str,
    value: Value,
) -> Result<T, ConfigErrors> {
    let value = match value {
        Value::Null => Value::Object(Map::new()),
        Value::Object(map) => Value::Object(map),
        other => {
            let found = match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a boolean",
            };
            return Err(ConfigError::new(
                path,
                format!("expected a map of settings (or nothing, for defaults), found {found}"),
            )
            .into());
        }
    };
    let base = [path.to_owned()];
    let config: T = deserialize_all(value, &base, &|_| None).map_err(ConfigErrors)?;
    config
        .validate()
        .into_iter()
        .map(|problem| ConfigError::new(path, problem))
        .collect::<ConfigErrors>()
        .into_result(config)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct TlsSettings {
        insecure: bool,
        ca_file: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct ExampleConfig {
        #[serde(with = "humantime_serde")]
        collection_interval: Duration,
        endpoint: String,
        port: u16,
        tls: TlsSettings,
    }

    impl Default for ExampleConfig {
        fn default() -> Self {
            Self {
                collection_interval: Duration::from_secs(10),
                endpoint: "localhost".into(),
                port: 4317,
                tls: TlsSettings::default(),
            }
        }
    }

    impl Validate for ExampleConfig {
        fn validate(&self) -> Vec<String> {
            let mut problems = Vec::new();
            if self.collection_interval < Duration::from_secs(1) {
                problems.push(format!(
                    "collection_interval must be at least 1s, found {}",
                    humantime::format_duration(self.collection_interval)
                ));
            }
            if self.port == 0 {
                problems.push("port must not be 0".into());
            }
            problems
        }
    }

    #[derive(Debug, Deserialize)]
    struct NoChecks {}
    impl Validate for NoChecks {}

    fn parse(value: Value) -> Result<ExampleConfig, ConfigErrors> {
        parse_component("receivers::example/x", value)
    }

    #[test]
    fn null_means_all_defaults() {
        assert_eq!(parse(Value::Null).unwrap(), ExampleConfig::default());
        assert_eq!(parse(json!({})).unwrap(), ExampleConfig::default());
        assert!(parse_component::<NoChecks>("extensions::x", Value::Null).is_ok());
    }

    #[test]
    fn durations_use_humantime() {
        let config = parse(json!({"collection_interval": "1m30s"})).unwrap();
        assert_eq!(config.collection_interval, Duration::from_secs(90));
        assert_eq!(config.port, 4317);
        let errors = parse(json!({"collection_interval": "10 parsecs"})).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors.0[0]
                .to_string()
                .starts_with("receivers::example/x::collection_interval: "),
            "{errors}"
        );
    }

    #[test]
    fn validate_problems_are_all_reported_at_the_component_path() {
        let errors = parse(json!({"collection_interval": "10ms", "port": 0})).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "receivers::example/x: collection_interval must be at least 1s, found 10ms\n\
             receivers::example/x: port must not be 0"
        );
    }

    #[test]
    fn nested_unknown_fields_carry_their_path() {
        let errors = parse(json!({"tls": {"insecur": true}, "endpont": "x"})).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("receivers::example/x: unknown field `endpont`, expected one of")
        );
        assert!(lines[1].starts_with(
            "receivers::example/x::tls: unknown field `insecur`, expected `insecure` or `ca_file`"
        ));
    }

    #[test]
    fn two_unknown_fields_in_one_component_are_both_reported() {
        let errors = parse(json!({"prot": 1, "endpont": "x", "port": 2})).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("receivers::example/x: unknown field `endpont`"));
        assert!(lines[1].starts_with("receivers::example/x: unknown field `prot`"));
    }

    #[test]
    fn settings_must_be_a_map() {
        let errors = parse(json!(["a"])).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "receivers::example/x: expected a map of settings (or nothing, for defaults), found a list"
        );
        assert!(parse(json!("x")).is_err());
        assert!(parse(json!(5)).is_err());
        assert!(parse(json!(true)).is_err());
    }

    #[test]
    fn deserialization_problems_skip_validation() {
        // A deserialization problem means there is no config to validate: only it is reported.
        let errors = parse(json!({"port": "high", "collection_interval": "10ms"})).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert!(
            errors
                .to_string()
                .contains("port: invalid type: string \"high\", expected u16")
        );
    }
}
