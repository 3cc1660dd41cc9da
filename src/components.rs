//! The registry: every component type (and its aliases) and the factory that builds it.
//!
//! A factory parses and validates its component's settings and constructs the runtime object;
//! constructing does no I/O and starts nothing, so `netshim validate` builds every configured
//! component to check it, and `run` starts only those a pipeline uses.

use crate::config::ConfigErrors;
use crate::exporters::{self, Exporter};
use crate::extensions::{self, Extension};
use crate::receivers::{self, Receiver};
use crate::resolvers::{self, Resolver};

/// What every component may need to know about where it runs.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The Kubernetes node (or host) name: `K8S_NODE_NAME`, else the host name.
    pub node_name: String,
    /// The agent's own numbers, written by the pipeline, read by exporters.
    pub metrics: std::sync::Arc<crate::self_metrics::AgentMetrics>,
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

/// Builds one component from its settings. `path` is where the settings sit in the config
/// (`receivers::netns/a`), for error messages.
pub type BuildFn<T> = fn(&str, serde_json::Value, &BuildContext) -> Result<Box<T>, ConfigErrors>;

/// One component type.
pub struct Factory<T: ?Sized> {
    pub type_name: &'static str,
    /// Older names still accepted, with a deprecation warning.
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub build: BuildFn<T>,
}

pub type ReceiverFactory = Factory<dyn Receiver>;
pub type ResolverFactory = Factory<dyn Resolver>;
pub type ExporterFactory = Factory<dyn Exporter>;
pub type ExtensionFactory = Factory<dyn Extension>;

pub const RECEIVERS: &[ReceiverFactory] = &[receivers::netns::FACTORY, receivers::cri::FACTORY];
pub const RESOLVERS: &[ResolverFactory] = &[
    resolvers::interfaces::FACTORY,
    resolvers::k8s_attributes::FACTORY,
];
pub const EXPORTERS: &[ExporterFactory] = &[
    exporters::debug::FACTORY,
    exporters::prometheus::FACTORY,
    exporters::otlp::GRPC_FACTORY,
    exporters::otlp::HTTP_FACTORY,
];
pub const EXTENSIONS: &[ExtensionFactory] = &[extensions::health_check::FACTORY];

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

/// How a type name given in a config matched the registry.
pub enum Lookup<'a, T: ?Sized> {
    Found(&'a Factory<T>),
    /// Matched through a deprecated alias.
    Alias(&'a Factory<T>),
    Unknown,
}

pub fn lookup<'a, T: ?Sized>(factories: &'a [Factory<T>], type_name: &str) -> Lookup<'a, T> {
    for f in factories {
        if f.type_name == type_name {
            return Lookup::Found(f);
        }
        if f.aliases.contains(&type_name) {
            return Lookup::Alias(f);
        }
    }
    Lookup::Unknown
}

/// The type names of `factories`, for "valid types are …" messages.
pub fn type_names<T: ?Sized>(factories: &[Factory<T>]) -> Vec<&'static str> {
    factories.iter().map(|f| f.type_name).collect()
}

/// One row of `netshim components`.
pub struct Listing {
    pub kind: Kind,
    pub type_name: &'static str,
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
}

/// Every registered component, by kind.
pub fn listing() -> Vec<Listing> {
    fn rows<T: ?Sized>(kind: Kind, fs: &[Factory<T>]) -> impl Iterator<Item = Listing> + '_ {
        fs.iter().map(move |f| Listing {
            kind,
            type_name: f.type_name,
            aliases: f.aliases,
            summary: f.summary,
        })
    }
    rows(Kind::Receiver, RECEIVERS)
        .chain(rows(Kind::Resolver, RESOLVERS))
        .chain(rows(Kind::Exporter, EXPORTERS))
        .chain(rows(Kind::Extension, EXTENSIONS))
        .collect()
}
