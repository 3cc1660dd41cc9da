//! The `filter` resolver: keeps or drops pods, interfaces, and chosen pods' counter sets before
//! any exporter sees the snapshot, so a dropped series is never rendered or sent. Collector-style
//! `include`/`exclude` blocks with `match_type: strict | regexp`.
//!
//! Place it after the resolvers whose facts it matches on (`interfaces` for interface names and
//! kinds, `k8s_attributes` for namespaces, names and labels when the runtime gives none).

mod matcher;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::{Batch, PodNetwork};
use crate::resolvers::ResolverFactory;

use super::{Resolver, ResolverError};
use matcher::Matcher;
pub use matcher::{LabelMatch, MatchConfig, MatchType};

pub const TYPE: &str = "filter";

/// Settings of the `filter` resolver. Each block is optional; at least one is needed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Only what matches is kept: pods that have its pod properties, and of their interfaces
    /// those that have its interface properties.
    pub include: Option<MatchConfig>,
    /// What matches is dropped. With interface properties: the matching interfaces (of the
    /// pods that have its pod properties, if any are given), the pods staying. With pod
    /// properties only: the whole pods.
    pub exclude: Option<MatchConfig>,
    /// The pods that match (pod properties only) lose their TCP/UDP counters.
    pub drop_transport: Option<MatchConfig>,
    /// The pods that match (pod properties only) lose their per-interface counters and
    /// mapping; their TCP/UDP counters stay.
    pub drop_interfaces: Option<MatchConfig>,
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let blocks = [
            ("include", &self.include, false),
            ("exclude", &self.exclude, false),
            ("drop_transport", &self.drop_transport, true),
            ("drop_interfaces", &self.drop_interfaces, true),
        ];
        if blocks.iter().all(|(_, b, _)| b.is_none()) {
            problems.push(
                "nothing to filter: give at least one of include, exclude, drop_transport, \
                 drop_interfaces"
                    .into(),
            );
        }
        for (name, block, pods_only) in blocks {
            let Some(block) = block else { continue };
            problems.extend(block.problems().into_iter().map(|p| format!("{name}.{p}")));
            if pods_only && block.has_interface_properties() {
                problems.push(format!(
                    "{name}: selects pods: interface_names and interface_kinds do not apply \
                     (use exclude to drop interfaces)"
                ));
            }
        }
        problems
    }
}

pub const FACTORY: ResolverFactory = Factory::new::<Config>(
    TYPE,
    "keeps or drops pods, interfaces and counter sets before the exporters",
);

impl ComponentConfig for Config {
    type Component = dyn Resolver;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Resolver>, ConfigErrors> {
        let compile = |name: &str, block: &Option<MatchConfig>| {
            block
                .as_ref()
                .map(Matcher::new)
                .transpose()
                .map_err(|e| site.error(format!("{name}: {e}")))
        };
        Ok(Box::new(FilterResolver {
            include: compile("include", &self.include)?,
            exclude: compile("exclude", &self.exclude)?,
            drop_transport: compile("drop_transport", &self.drop_transport)?,
            drop_interfaces: compile("drop_interfaces", &self.drop_interfaces)?,
        }))
    }
}

/// The compiled blocks.
#[derive(Debug)]
pub struct FilterResolver {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
    drop_transport: Option<Matcher>,
    drop_interfaces: Option<Matcher>,
}

impl FilterResolver {
    /// Applies every block to the batch, in the order include, exclude, drop_*.
    pub fn apply(&self, batch: &mut Batch) {
        batch.pods.retain_mut(|pod| self.keep(pod));
    }

    /// Filters one pod in place; false drops it.
    fn keep(&self, pod: &mut PodNetwork) -> bool {
        if let Some(include) = &self.include {
            if !include.matches_pod(pod) {
                return false;
            }
            if include.has_interface_properties() {
                pod.interfaces.retain(|i| include.matches_interface(i));
            }
        }
        if let Some(exclude) = &self.exclude
            && exclude.matches_pod(pod)
        {
            if !exclude.has_interface_properties() {
                return false;
            }
            pod.interfaces.retain(|i| !exclude.matches_interface(i));
        }
        if self
            .drop_transport
            .as_ref()
            .is_some_and(|m| m.matches_pod(pod))
        {
            pod.transport = None;
        }
        if self
            .drop_interfaces
            .as_ref()
            .is_some_and(|m| m.matches_pod(pod))
        {
            pod.interfaces.clear();
        }
        true
    }
}

#[async_trait]
impl Resolver for FilterResolver {
    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError> {
        self.apply(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
