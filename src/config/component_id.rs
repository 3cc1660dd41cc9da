//! Component ids, `type[/name]`, as in the Collector: `debug`, `debug/quiet`, `otlp/2`.
//!
//! The type selects the implementation, the optional name tells several instances of one type
//! apart. Types are restricted (they become identifiers in metrics and logs); names may hold
//! any character but `/`, as in the Collector.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted type, as in the Collector.
const MAX_TYPE_CHARS: usize = 63;

/// A parsed component id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId {
    /// Matches `^[a-zA-Z][0-9a-zA-Z_]{0,62}$`.
    pub type_name: String,
    /// Non-empty and without `/` when present.
    pub name: Option<String>,
}

/// Why a text is not a valid component id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComponentIdError {
    #[error("component id must not be empty")]
    Empty,
    #[error(
        "invalid component type `{type_name}` in id `{id}`: a type starts with a letter and \
         contains only ASCII letters, digits and `_`"
    )]
    InvalidType { id: String, type_name: String },
    #[error("component type in id `{id}` is longer than {MAX_TYPE_CHARS} characters")]
    TypeTooLong { id: String },
    #[error(
        "component id `{id}` has an empty name after `/`: write `{type_name}` or `{type_name}/<name>`"
    )]
    EmptyName { id: String, type_name: String },
    #[error("component name in id `{id}` must not contain `/`")]
    SlashInName { id: String },
}

impl ComponentId {
    /// An id from already-valid parts; see [`FromStr`] for parsing user input.
    pub fn new(
        type_name: impl Into<String>,
        name: Option<String>,
    ) -> Result<Self, ComponentIdError> {
        let id = match name {
            Some(name) => format!("{}/{name}", type_name.into()),
            None => type_name.into(),
        };
        id.parse()
    }
}

impl FromStr for ComponentId {
    type Err = ComponentIdError;

    fn from_str(id: &str) -> Result<Self, Self::Err> {
        if id.is_empty() {
            return Err(ComponentIdError::Empty);
        }
        let (type_name, name) = match id.split_once('/') {
            Some((type_name, name)) => (type_name, Some(name)),
            None => (id, None),
        };
        validate_type(id, type_name)?;
        let name = match name {
            None => None,
            Some("") => {
                return Err(ComponentIdError::EmptyName {
                    id: id.to_owned(),
                    type_name: type_name.to_owned(),
                });
            }
            Some(name) if name.contains('/') => {
                return Err(ComponentIdError::SlashInName { id: id.to_owned() });
            }
            Some(name) => Some(name.to_owned()),
        };
        Ok(Self {
            type_name: type_name.to_owned(),
            name,
        })
    }
}

fn validate_type(id: &str, type_name: &str) -> Result<(), ComponentIdError> {
    let mut chars = type_name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ComponentIdError::InvalidType {
            id: id.to_owned(),
            type_name: type_name.to_owned(),
        });
    }
    if type_name.len() > MAX_TYPE_CHARS {
        return Err(ComponentIdError::TypeTooLong { id: id.to_owned() });
    }
    Ok(())
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.type_name)?;
        if let Some(name) = &self.name {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

impl Serialize for ComponentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        id.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(id: &str) -> Result<ComponentId, ComponentIdError> {
        id.parse()
    }

    #[test]
    fn valid_ids_round_trip() {
        for id in [
            "debug",
            "debug/quiet",
            "otlp/2",
            "a",
            "k8s_attributes/pod name:x",
            "A1/ü",
        ] {
            assert_eq!(parse(id).unwrap().to_string(), id);
        }
        let id = parse("debug/quiet").unwrap();
        assert_eq!(id.type_name, "debug");
        assert_eq!(id.name.as_deref(), Some("quiet"));
        assert_eq!(parse("debug").unwrap().name, None);
        assert_eq!(
            ComponentId::new("debug", Some("q".into())).unwrap(),
            parse("debug/q").unwrap()
        );
    }

    #[test]
    fn empty_id() {
        assert_eq!(parse(""), Err(ComponentIdError::Empty));
        assert!(
            parse("")
                .unwrap_err()
                .to_string()
                .contains("must not be empty")
        );
    }

    #[test]
    fn bad_type_characters() {
        for id in [
            "1debug", "_debug", "de-bug", "de bug", "/name", " debug", "débug",
        ] {
            assert!(
                matches!(parse(id), Err(ComponentIdError::InvalidType { .. })),
                "{id:?}"
            );
        }
        let message = parse("de-bug/x").unwrap_err().to_string();
        assert!(message.contains("`de-bug`"), "{message}");
    }

    #[test]
    fn type_length_limit() {
        let longest = format!("a{}", "b".repeat(62));
        assert!(parse(&longest).is_ok());
        let too_long = format!("a{}", "b".repeat(63));
        assert!(matches!(
            parse(&too_long),
            Err(ComponentIdError::TypeTooLong { .. })
        ));
    }

    #[test]
    fn empty_name_or_slash_in_name() {
        assert!(matches!(
            parse("debug/"),
            Err(ComponentIdError::EmptyName { .. })
        ));
        assert!(
            parse("debug/")
                .unwrap_err()
                .to_string()
                .contains("empty name after `/`")
        );
        assert!(matches!(
            parse("debug/a/b"),
            Err(ComponentIdError::SlashInName { .. })
        ));
    }

    #[test]
    fn serde_uses_the_text_form() {
        let id: ComponentId = serde_json::from_str("\"otlp/2\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"otlp/2\"");
        assert!(serde_json::from_str::<ComponentId>("\"9\"").is_err());
    }
}
