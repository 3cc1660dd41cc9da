//! From a loaded configuration to components wired into pipelines, with every problem reported.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::components::{
    self, BuildContext, EXPORTERS, EXTENSIONS, Factory, Kind, Lookup, RECEIVERS, RESOLVERS,
};
use crate::config::{ComponentId, ConfigError, ConfigErrors, RawConfig};
use crate::exporters::Exporter;
use crate::receivers::Receiver;
use crate::resolvers::Resolver;

/// The only signal netshim's pipelines carry.
const SIGNAL: &str = "metrics";

/// One `service.pipelines.metrics[/name]`, its components in config order.
pub struct Pipeline {
    pub name: String,
    pub receivers: Vec<(String, Arc<dyn Receiver>)>,
    pub resolvers: Vec<(String, Arc<dyn Resolver>)>,
    pub exporters: Vec<(String, Arc<dyn Exporter>)>,
}

/// Everything `run` starts. A component used by several pipelines is one instance, shared.
pub struct Service {
    pub context: BuildContext,
    pub pipelines: Vec<Pipeline>,
    /// Deprecation notices and the like, for the caller to log.
    pub warnings: Vec<String>,
}

impl Service {
    /// The pipeline named `name`, or the first one (in name order: `metrics` before
    /// `metrics/x`) when no name is given.
    pub fn pipeline(&self, name: Option<&str>) -> Option<&Pipeline> {
        match name {
            Some(n) => self.pipelines.iter().find(|p| p.name == n),
            None => self.pipelines.first(),
        }
    }
}

/// Builds every configured component (to validate it) and wires the pipelines. Components
/// configured but in no pipeline are checked and then dropped: they never start.
pub fn build(raw: RawConfig, context: BuildContext) -> Result<Service, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut warnings = Vec::new();

    let receivers = build_section(
        Kind::Receiver,
        RECEIVERS,
        raw.receivers.clone(),
        &context,
        &mut errors,
        &mut warnings,
    );
    let resolvers = build_section(
        Kind::Resolver,
        RESOLVERS,
        raw.resolvers.clone(),
        &context,
        &mut errors,
        &mut warnings,
    );
    let exporters = build_section(
        Kind::Exporter,
        EXPORTERS,
        raw.exporters.clone(),
        &context,
        &mut errors,
        &mut warnings,
    );
    let _extensions = build_section(
        Kind::Extension,
        EXTENSIONS,
        raw.extensions.clone(),
        &context,
        &mut errors,
        &mut warnings,
    );

    for (i, ext) in raw.service.extensions.iter().enumerate() {
        if !raw.extensions.contains_key(ext) {
            errors.push(ConfigError::new(
                format!("service::extensions::{i}"),
                format!("references extension \"{ext}\" which is not configured"),
            ));
        }
    }

    if raw.service.pipelines.is_empty() {
        errors.push(ConfigError::new(
            "service::pipelines",
            "at least one pipeline is required (e.g. `metrics:` with receivers and exporters)",
        ));
    }
    let mut pipelines = Vec::new();
    for (name, p) in &raw.service.pipelines {
        let path = format!("service::pipelines::{name}");
        match name.parse::<ComponentId>() {
            Ok(id) if id.type_name == SIGNAL => {}
            Ok(id) => errors.push(ConfigError::new(
                &path,
                format!(
                    "unsupported signal \"{}\": netshim pipelines carry metrics (name them `metrics` or `metrics/NAME`)",
                    id.type_name
                ),
            )),
            Err(e) => errors.push(ConfigError::new(&path, format!("invalid pipeline id: {e}"))),
        }
        if p.receivers.is_empty() {
            errors.push(ConfigError::new(&path, "must have at least one receiver"));
        }
        if p.exporters.is_empty() {
            errors.push(ConfigError::new(&path, "must have at least one exporter"));
        }
        let r = wire(
            &path,
            Kind::Receiver,
            &p.receivers,
            &raw.receivers,
            &receivers,
            &mut errors,
        );
        let s = wire(
            &path,
            Kind::Resolver,
            &p.resolvers,
            &raw.resolvers,
            &resolvers,
            &mut errors,
        );
        let e = wire(
            &path,
            Kind::Exporter,
            &p.exporters,
            &raw.exporters,
            &exporters,
            &mut errors,
        );
        pipelines.push(Pipeline {
            name: name.clone(),
            receivers: r,
            resolvers: s,
            exporters: e,
        });
    }

    if errors.is_empty() {
        Ok(Service {
            context,
            pipelines,
            warnings,
        })
    } else {
        Err(errors)
    }
}

/// Parses each id of a section, finds its factory and builds it.
fn build_section<T: ?Sized>(
    kind: Kind,
    factories: &[Factory<T>],
    section: BTreeMap<String, serde_json::Value>,
    context: &BuildContext,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, Arc<T>> {
    let mut built = BTreeMap::new();
    for (id, settings) in section {
        let path = format!("{}::{id}", kind.section());
        let parsed = match id.parse::<ComponentId>() {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(ConfigError::new(&path, format!("invalid id: {e}")));
                continue;
            }
        };
        let factory = match components::lookup(factories, &parsed.type_name) {
            Lookup::Found(f) => f,
            Lookup::Alias(f) => {
                warnings.push(format!(
                    "{path}: type \"{}\" is deprecated, use \"{}\"",
                    parsed.type_name, f.type_name
                ));
                f
            }
            Lookup::Unknown => {
                let valid = components::type_names(factories);
                let valid = if valid.is_empty() {
                    "none yet".to_string()
                } else {
                    valid.join(", ")
                };
                errors.push(ConfigError::new(
                    &path,
                    format!(
                        "unknown {} type \"{}\"; valid types are: {valid}",
                        kind.noun(),
                        parsed.type_name
                    ),
                ));
                continue;
            }
        };
        match (factory.build)(&path, settings, context) {
            Ok(component) => {
                built.insert(id, Arc::from(component));
            }
            Err(e) => errors.extend(e),
        }
    }
    built
}

/// Resolves a pipeline's references to built components.
fn wire<T: ?Sized>(
    path: &str,
    kind: Kind,
    refs: &[String],
    configured: &BTreeMap<String, serde_json::Value>,
    built: &BTreeMap<String, Arc<T>>,
    errors: &mut ConfigErrors,
) -> Vec<(String, Arc<T>)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in refs {
        if !seen.insert(r) {
            errors.push(ConfigError::new(
                path,
                format!("references {} \"{r}\" more than once", kind.noun()),
            ));
            continue;
        }
        if !configured.contains_key(r) {
            errors.push(ConfigError::new(
                path,
                format!("references {} \"{r}\" which is not configured", kind.noun()),
            ));
            continue;
        }
        // A configured component that failed to build has its own error already.
        if let Some(c) = built.get(r) {
            out.push((r.clone(), Arc::clone(c)));
        }
    }
    out
}
