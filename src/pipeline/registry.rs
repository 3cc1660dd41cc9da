//! The registry: every component type (and its aliases) and its factory. Only the pipeline
//! (which builds what a config names) and `netshim components` read it; components never do,
//! so adding one is a line here and nothing anywhere else.

use crate::component::{Factory, Kind};
use crate::exporters::{self, ExporterFactory};
use crate::extensions::{self, ExtensionFactory};
use crate::receivers::{self, ReceiverFactory};
use crate::resolvers::{self, ResolverFactory};

pub const RECEIVERS: &[ReceiverFactory] = &[receivers::netns::FACTORY, receivers::cri::FACTORY];
pub const RESOLVERS: &[ResolverFactory] = &[
    resolvers::interfaces::FACTORY,
    resolvers::k8s_attributes::FACTORY,
    resolvers::filter::FACTORY,
];
pub const EXPORTERS: &[ExporterFactory] = &[
    exporters::debug::FACTORY,
    exporters::prometheus::FACTORY,
    exporters::otlp::GRPC_FACTORY,
    exporters::otlp::HTTP_FACTORY,
];
pub const EXTENSIONS: &[ExtensionFactory] = &[extensions::health_check::FACTORY];

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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn type_names_and_aliases_are_unique_per_kind() {
        let rows = listing();
        for kind in [
            Kind::Receiver,
            Kind::Resolver,
            Kind::Exporter,
            Kind::Extension,
        ] {
            let mut seen = HashSet::new();
            for row in rows.iter().filter(|r| r.kind == kind) {
                for name in std::iter::once(&row.type_name).chain(row.aliases) {
                    assert!(seen.insert(*name), "{} {name} twice", kind.noun());
                }
            }
        }
        assert!(
            matches!(lookup(EXPORTERS, "otlp"), Lookup::Alias(f) if f.type_name == "otlp_grpc")
        );
        assert!(matches!(lookup(RECEIVERS, "cri"), Lookup::Found(_)));
        assert!(matches!(lookup(RECEIVERS, "nope"), Lookup::Unknown));
    }
}
