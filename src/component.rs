//! The component API (the Collector's `component` package): how a receiver, resolver, exporter
//! or extension describes itself and is built. Every component imports this module; only the
//! pipeline imports the registry that lists them (`pipeline::registry`), so no component knows
//! of another.
//!
//! A component states once what it builds: its `Config` (serde, with its defaults and
//! `deny_unknown_fields`) implements [`Validate`] and [`ComponentConfig`], and its factory is
//! `Factory::new::<Config>(TYPE, "summary")`. Parsing, validation and the paths in error
//! messages are done here, the same way for all. Building does no I/O and starts nothing, so
//! `netshim validate` builds every configured component to check it, and `run` starts only
//! those a pipeline uses.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::{ComponentId, ConfigError, ConfigErrors, Validate, parse_component};
use crate::self_metrics::AgentMetrics;

/// What every component may need to know about where it runs.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The Kubernetes node (or host) name: `K8S_NODE_NAME`, else the host name.
    pub node_name: String,
    /// The agent's own numbers: the pipeline writes them, exporters report into them and the
    /// Prometheus exporter renders them. A handle, not a global, so two agents in one process
    /// (as in the tests) keep their own.
    pub metrics: Arc<AgentMetrics>,
}

impl BuildContext {
    pub fn from_environment() -> Self {
        let node_name = std::env::var("K8S_NODE_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        BuildContext::new(node_name)
    }

    pub fn new(node_name: impl Into<String>) -> Self {
        BuildContext {
            node_name: node_name.into(),
            metrics: Default::default(),
        }
    }
}

/// The four kinds of component, in config order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Receiver,
    Resolver,
    Exporter,
    Extension,
}

impl Kind {
    /// The config section (`receivers`, …).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Resolver => "resolvers",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }

    /// The singular, for messages (`receiver "x"`).
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Resolver => "resolver",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }
}

/// The component being built: its kind and id (for messages and its own statistics) and the
/// agent's context.
#[derive(Debug, Clone, Copy)]
pub struct BuildSite<'a> {
    pub kind: Kind,
    pub id: &'a ComponentId,
    pub context: &'a BuildContext,
}

impl BuildSite<'_> {
    /// Where its settings sit in the config: `exporters::otlp_grpc/backup`.
    pub fn path(&self) -> String {
        format!("{}::{}", self.kind.section(), self.id)
    }

    /// A problem found while building from settings that parsed, at this component's path.
    pub fn error(&self, problem: impl Into<String>) -> ConfigErrors {
        ConfigError::new(self.path(), problem).into()
    }
}

/// A component's settings, and what they build. The settings are deserialized and validated
/// before `build` is called.
pub trait ComponentConfig: DeserializeOwned + Validate {
    /// The runtime object's trait: `dyn Receiver`, `dyn Exporter`, …
    type Component: ?Sized;

    /// The runtime object; does no I/O and starts nothing. An `Err` is a problem the types
    /// and [`Validate`] could not see (use [`BuildSite::error`]).
    fn build(self, site: &BuildSite<'_>) -> Result<Box<Self::Component>, ConfigErrors>;
}

/// Builds one component from its raw settings.
pub type BuildFn<T> = fn(&BuildSite<'_>, serde_json::Value) -> Result<Box<T>, ConfigErrors>;

/// One component type.
pub struct Factory<T: ?Sized> {
    pub type_name: &'static str,
    /// Older names still accepted, with a deprecation warning.
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub build: BuildFn<T>,
}

impl<T: ?Sized> Factory<T> {
    /// The factory of the component whose settings are `C`.
    pub const fn new<C: ComponentConfig<Component = T>>(
        type_name: &'static str,
        summary: &'static str,
    ) -> Self {
        Factory {
            type_name,
            aliases: &[],
            summary,
            build: parse_and_build::<C>,
        }
    }

    /// The same factory, also found under `aliases` (deprecated names).
    pub const fn with_aliases(self, aliases: &'static [&'static str]) -> Self {
        Factory {
            type_name: self.type_name,
            aliases,
            summary: self.summary,
            build: self.build,
        }
    }
}

fn parse_and_build<C: ComponentConfig>(
    site: &BuildSite<'_>,
    settings: serde_json::Value,
) -> Result<Box<C::Component>, ConfigErrors> {
    let config: C = parse_component(&site.path(), settings)?;
    config.build(site)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    /// A component whose runtime object is a `dyn Debug`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Config {
        size: u32,
    }

    impl Default for Config {
        fn default() -> Self {
            Config { size: 3 }
        }
    }

    impl Validate for Config {
        fn validate(&self) -> Vec<String> {
            match self.size {
                0 => vec!["size must be at least 1".into()],
                _ => Vec::new(),
            }
        }
    }

    impl ComponentConfig for Config {
        type Component = dyn std::fmt::Debug;

        fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn std::fmt::Debug>, ConfigErrors> {
            match self.size {
                13 => Err(site.error("size: 13 is unlucky")),
                n => Ok(Box::new((site.id.to_string(), n))),
            }
        }
    }

    const FACTORY: Factory<dyn std::fmt::Debug> =
        Factory::new::<Config>("example", "an example").with_aliases(&["old_example"]);

    fn build(settings: serde_json::Value) -> Result<String, Vec<String>> {
        let id: ComponentId = "example/a".parse().unwrap();
        let context = BuildContext::new("n1");
        let site = BuildSite {
            kind: Kind::Resolver,
            id: &id,
            context: &context,
        };
        (FACTORY.build)(&site, settings)
            .map(|c| format!("{c:?}"))
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_factory_parses_validates_and_builds_with_its_id() {
        assert_eq!(FACTORY.type_name, "example");
        assert_eq!(FACTORY.aliases, ["old_example"]);
        assert_eq!(FACTORY.summary, "an example");
        assert_eq!(build(json!(null)).unwrap(), "(\"example/a\", 3)");
        assert_eq!(build(json!({"size": 5})).unwrap(), "(\"example/a\", 5)");
    }

    #[test]
    fn every_problem_names_the_component_path() {
        let unknown = build(json!({"size": 1, "colour": "red"})).unwrap_err();
        assert!(
            unknown[0].starts_with("resolvers::example/a") && unknown[0].contains("colour"),
            "{unknown:?}"
        );
        let invalid = build(json!({"size": 0})).unwrap_err();
        assert_eq!(
            invalid,
            ["resolvers::example/a: size must be at least 1"],
            "{invalid:?}"
        );
        let at_build = build(json!({"size": 13})).unwrap_err();
        assert_eq!(at_build, ["resolvers::example/a: size: 13 is unlucky"]);
    }
}
