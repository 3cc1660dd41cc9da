//! Deserialization that reports every problem, not only the first.
//!
//! serde stops at the first error. To still report all of them, after an error we remove the
//! offending key from the input and try again, a bounded number of times. Two misspelt fields
//! in one component are thus both reported; an error inside a list removes the whole list's
//! key (so only the first bad element of a list is reported).

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::error::{ConfigError, Location, join_path};

/// At most this many problems are reported per deserialized value.
const MAX_ROUNDS: usize = 100;

/// Deserializes `value` (found at `base`) into `T`. On failure returns every problem found,
/// each with its full path and, through `locate`, its position.
pub(crate) fn deserialize_all<T: DeserializeOwned>(
    value: Value,
    base: &[String],
    locate: &dyn Fn(&[String]) -> Option<Location>,
) -> Result<T, Vec<ConfigError>> {
    let mut value = value;
    let mut errors = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) if errors.is_empty() => return Ok(parsed),
            Ok(_) => return Err(errors),
            Err(error) => error,
        };
        let segments = segments(error.path());
        let message = error.inner().to_string();
        errors.push(to_config_error(base, &segments, message, locate));
        if !remove_offending_key(&mut value, &segments) {
            return Err(errors);
        }
    }
    errors.push(ConfigError::new(
        join_path(base),
        format!("too many problems; stopped after the first {MAX_ROUNDS}"),
    ));
    Err(errors)
}

/// One step of an error's path.
enum Step {
    Key(String),
    Index(usize),
    /// Enum variants and unrepresentable keys: shown, but not navigable.
    Other(String),
}

impl Step {
    fn text(&self) -> String {
        match self {
            Step::Key(key) | Step::Other(key) => key.clone(),
            Step::Index(index) => index.to_string(),
        }
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .map(|segment| match segment {
            Segment::Map { key } => Step::Key(key.clone()),
            Segment::Seq { index } => Step::Index(*index),
            Segment::Enum { variant } => Step::Other(variant.clone()),
            Segment::Unknown => Step::Other("?".to_owned()),
        })
        .collect()
}

/// For an unknown field, serde's path ends with the field itself; the Collector (and our users)
/// expect the path of the map that contains it, the message naming the field.
fn to_config_error(
    base: &[String],
    segments: &[Step],
    message: String,
    locate: &dyn Fn(&[String]) -> Option<Location>,
) -> ConfigError {
    let mut full: Vec<String> = base.to_vec();
    full.extend(segments.iter().map(Step::text));
    let location = locate(&full);
    let is_unknown_field =
        message.starts_with("unknown field `") && matches!(segments.last(), Some(Step::Key(_)));
    if is_unknown_field {
        full.pop();
    }
    ConfigError::new(join_path(&full), message).at(location)
}

/// Removes the deepest map key on the error's path, so the next round gets past this error.
/// Returns false when there is none (the error concerns the value as a whole).
fn remove_offending_key(value: &mut Value, segments: &[Step]) -> bool {
    let Some(last_key) = segments
        .iter()
        .rposition(|step| matches!(step, Step::Key(_)))
    else {
        return false;
    };
    let mut current = value;
    for step in &segments[..last_key] {
        current = match (step, current) {
            (Step::Key(key), Value::Object(map)) => match map.get_mut(key) {
                Some(next) => next,
                None => return false,
            },
            (Step::Index(index), Value::Array(items)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (&segments[last_key], current) {
        (Step::Key(key), Value::Object(map)) => map.remove(key).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields are only deserialized
    struct Inner {
        #[serde(default)]
        insecure: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default)]
        port: u16,
        #[serde(default)]
        names: Vec<String>,
        tls: Option<Inner>,
    }

    fn no_location(_: &[String]) -> Option<Location> {
        None
    }

    fn errors_of(value: Value) -> Vec<String> {
        deserialize_all::<Outer>(value, &["exporters".into(), "otlp".into()], &no_location)
            .unwrap_err()
            .into_iter()
            .map(|error| error.to_string())
            .collect()
    }

    #[test]
    fn reports_every_unknown_field_at_the_containing_path() {
        let errors = errors_of(json!({"prot": 1, "nmes": [], "tls": {"insecur": true}}));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("exporters::otlp: unknown field `nmes`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("exporters::otlp: unknown field `prot`"),
            "{errors:?}"
        );
        assert!(
            errors[2]
                .starts_with("exporters::otlp::tls: unknown field `insecur`, expected `insecure`"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_types_are_reported_at_their_path() {
        let errors = errors_of(json!({"port": "x", "names": ["a", 5], "tls": {"insecure": 3}}));
        assert_eq!(
            errors,
            vec![
                "exporters::otlp::names::1: invalid type: integer `5`, expected a string",
                "exporters::otlp::port: invalid type: string \"x\", expected u16",
                "exporters::otlp::tls::insecure: invalid type: integer `3`, expected a boolean",
            ]
        );
    }

    #[test]
    fn errors_about_the_whole_value_stop_the_retries() {
        let errors = errors_of(json!("a string"));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("exporters::otlp: invalid type: string"),
            "{errors:?}"
        );
    }

    #[test]
    fn success_returns_the_value() {
        let parsed: Outer = deserialize_all(json!({"port": 5}), &[], &no_location).unwrap();
        assert_eq!(parsed.port, 5);
    }

    #[test]
    fn retries_are_bounded() {
        let many: serde_json::Map<String, Value> = (0..300)
            .map(|index| (format!("k{index}"), json!(1)))
            .collect();
        let errors = errors_of(Value::Object(many));
        assert_eq!(errors.len(), MAX_ROUNDS + 1);
        assert!(errors[MAX_ROUNDS].contains("too many problems"));
    }

    #[test]
    fn locations_are_looked_up_with_the_offending_key() {
        let locate = |path: &[String]| {
            (path.last().map(String::as_str) == Some("prot")).then(|| Location {
                source: "a.yaml".into(),
                line: 4,
                column: 5,
            })
        };
        let errors =
            deserialize_all::<Outer>(json!({"prot": 1}), &["x".into()], &locate).unwrap_err();
        assert_eq!(errors[0].location.as_ref().map(|l| l.line), Some(4));
        assert_eq!(errors[0].path, "x");
    }
}
