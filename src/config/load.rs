//! Loading: sources → merged tree → expanded tree → [`RawConfig`].

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::collect::deserialize_all;
use super::document::{Document, LocationIndex};
use super::error::{ConfigError, ConfigErrors};
use super::expand::expand_document;
use super::merge::merge_document;
use super::model::{RawConfig, SECTIONS, ServiceConfig};
use super::source::Source;

/// A loaded configuration and the warnings found on the way (e.g. unset variables).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: RawConfig,
    pub warnings: Vec<String>,
}

/// Parses every source, merges them in order, expands variables from the process environment,
/// and deserializes the top level. Every problem found is returned, not only the first.
pub fn load(sources: &[Source]) -> Result<Loaded, ConfigErrors> {
    load_with_env(sources, &process_env)
}

/// [`load`] with an injectable environment, for tests.
pub fn load_with_env(
    sources: &[Source],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = ConfigErrors::new();
    let mut merged = Document::default();
    for source in sources {
        match source.parse() {
            Ok(document) => merge_document(&mut merged, document),
            Err(error) => errors.push(error),
        }
    }
    // Later steps would only add noise about a tree that is missing a file.
    if !errors.is_empty() {
        return Err(errors);
    }
    let expansion = expand_document(&mut merged, env);
    errors.extend(expansion.errors);
    let config = deserialize_sections(merged, &mut errors);
    errors.into_result(Loaded {
        config,
        warnings: expansion.warnings,
    })
}

/// A variable whose value is not valid Unicode is taken lossily rather than treated as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Deserializes each top-level section on its own, so that a problem in one section does not
/// hide the problems of the others.
fn deserialize_sections(document: Document, errors: &mut ConfigErrors) -> RawConfig {
    let locations = document.locations;
    let mut config = RawConfig::default();
    for (key, value) in document.root {
        let path = [key.clone()];
        match key.as_str() {
            "receivers" => config.receivers = section(value, &path, &locations, errors),
            "resolvers" => config.resolvers = section(value, &path, &locations, errors),
            "exporters" => config.exporters = section(value, &path, &locations, errors),
            "extensions" => config.extensions = section(value, &path, &locations, errors),
            "service" => {
                config.service = section::<ServiceConfig>(value, &path, &locations, errors)
            }
            _ => errors.push(
                ConfigError::new(
                    "",
                    format!(
                        "unknown top-level key `{key}`, expected one of {}",
                        SECTIONS.map(|name| format!("`{name}`")).join(", ")
                    ),
                )
                .at(locations.get(&path)),
            ),
        }
    }
    config
}

/// One section; null means "not set". Problems are added to `errors` and the default returned.
fn section<T: DeserializeOwned + Default>(
    value: Value,
    path: &[String],
    locations: &LocationIndex,
    errors: &mut ConfigErrors,
) -> T {
    if value.is_null() {
        return T::default();
    }
    match deserialize_all::<T>(value, path, &|path| locations.get(path)) {
        Ok(parsed) => parsed,
        Err(problems) => {
            errors.extend(problems);
            T::default()
        }
    }
}
