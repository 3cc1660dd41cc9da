//! From a loaded configuration to components wired into pipelines, with every problem reported.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::component::{BuildContext, BuildSite, Factory, Kind};
use crate::config::{ComponentId, ConfigError, ConfigErrors, PipelineConfig, RawConfig};
use crate::exporters::Exporter;
use crate::extensions::Extension;
use crate::health::Health;
use crate::receivers::Receiver;
use crate::resolvers::Resolver;

use super::registry::{self, EXPORTERS, EXTENSIONS, Lookup, RECEIVERS, RESOLVERS};

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
    /// The extensions `service.extensions` enables, in order.
    pub extensions: Vec<(String, Arc<dyn Extension>)>,
    /// Readiness of the running components (see [`Health`]).
    pub health: Health,
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

/// Every configured component, built, by id.
struct Components {
    receivers: BTreeMap<String, Arc<dyn Receiver>>,
    resolvers: BTreeMap<String, Arc<dyn Resolver>>,
    exporters: BTreeMap<String, Arc<dyn Exporter>>,
    extensions: BTreeMap<String, Arc<dyn Extension>>,
}

/// The problems found so far, and the notices.
#[derive(Default)]
struct Report {
    errors: ConfigErrors,
    warnings: Vec<String>,
}

/// Builds every configured component (to validate it) and wires the pipelines. Components
/// configured but in no pipeline are checked and then dropped: they never start.
pub fn build(raw: RawConfig, context: BuildContext) -> Result<Service, ConfigErrors> {
    let mut report = Report::default();
    let built = build_components(&raw, &context, &mut report);
    let extensions = enable_extensions(&raw, &built, &mut report.errors);
    if raw.service.pipelines.is_empty() {
        report.errors.push(ConfigError::new(
            "service::pipelines",
            "at least one pipeline is required (e.g. `metrics:` with receivers and exporters)",
        ));
    }
    let pipelines = raw
        .service
        .pipelines
        .iter()
        .map(|(name, p)| wire_pipeline(name, p, &raw, &built, &mut report.errors))
        .collect();
    report.errors.into_result(Service {
        context,
        extensions,
        health: Health::default(),
        pipelines,
        warnings: report.warnings,
    })
}

fn build_components(raw: &RawConfig, context: &BuildContext, report: &mut Report) -> Components {
    Components {
        receivers: build_section(Kind::Receiver, RECEIVERS, &raw.receivers, context, report),
        resolvers: build_section(Kind::Resolver, RESOLVERS, &raw.resolvers, context, report),
        exporters: build_section(Kind::Exporter, EXPORTERS, &raw.exporters, context, report),
        extensions: build_section(
            Kind::Extension,
            EXTENSIONS,
            &raw.extensions,
            context,
            report,
        ),
    }
}

/// The extensions `service.extensions` names, in its order.
fn enable_extensions(
    raw: &RawConfig,
    built: &Components,
    errors: &mut ConfigErrors,
) -> Vec<(String, Arc<dyn Extension>)> {
    let mut enabled = Vec::new();
    for (i, ext) in raw.service.extensions.iter().enumerate() {
        match built.extensions.get(ext) {
            Some(e) => enabled.push((ext.clone(), Arc::clone(e))),
            None if raw.extensions.contains_key(ext) => {} // configured, failed to build: reported
            None => errors.push(ConfigError::new(
                format!("service::extensions::{i}"),
                format!("references extension \"{ext}\" which is not configured"),
            )),
        }
    }
    enabled
}

/// Checks one pipeline's id and shape and resolves its references to built components.
fn wire_pipeline(
    name: &str,
    p: &PipelineConfig,
    raw: &RawConfig,
    built: &Components,
    errors: &mut ConfigErrors,
) -> Pipeline {
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
    let mut refs = References {
        path: &path,
        errors,
    };
    Pipeline {
        name: name.to_string(),
        receivers: refs.resolve(
            Kind::Receiver,
            &p.receivers,
            &raw.receivers,
            &built.receivers,
        ),
        resolvers: refs.resolve(
            Kind::Resolver,
            &p.resolvers,
            &raw.resolvers,
            &built.resolvers,
        ),
        exporters: refs.resolve(
            Kind::Exporter,
            &p.exporters,
            &raw.exporters,
            &built.exporters,
        ),
    }
}

/// Parses each id of a section, finds its factory and builds it.
fn build_section<T: ?Sized>(
    kind: Kind,
    factories: &[Factory<T>],
    section: &BTreeMap<String, serde_json::Value>,
    context: &BuildContext,
    report: &mut Report,
) -> BTreeMap<String, Arc<T>> {
    let mut built = BTreeMap::new();
    for (id, settings) in section {
        let path = format!("{}::{id}", kind.section());
        let parsed = match id.parse::<ComponentId>() {
            Ok(parsed) => parsed,
            Err(e) => {
                report
                    .errors
                    .push(ConfigError::new(&path, format!("invalid id: {e}")));
                continue;
            }
        };
        let Some(factory) = find_factory(kind, factories, &parsed, report) else {
            continue;
        };
        let site = BuildSite {
            kind,
            id: &parsed,
            context,
        };
        match (factory.build)(&site, settings.clone()) {
            Ok(component) => {
                built.insert(id.clone(), Arc::from(component));
            }
            Err(e) => report.errors.extend(e),
        }
    }
    built
}

/// The factory of `id`'s type; an unknown type is reported with the valid ones, a deprecated
/// alias with its new name.
fn find_factory<'a, T: ?Sized>(
    kind: Kind,
    factories: &'a [Factory<T>],
    id: &ComponentId,
    report: &mut Report,
) -> Option<&'a Factory<T>> {
    let path = format!("{}::{id}", kind.section());
    match registry::lookup(factories, &id.type_name) {
        Lookup::Found(f) => Some(f),
        Lookup::Alias(f) => {
            report.warnings.push(format!(
                "{path}: type \"{}\" is deprecated, use \"{}\"",
                id.type_name, f.type_name
            ));
            Some(f)
        }
        Lookup::Unknown => {
            let valid = registry::type_names(factories);
            let valid = if valid.is_empty() {
                "none yet".to_string()
            } else {
                valid.join(", ")
            };
            report.errors.push(ConfigError::new(
                &path,
                format!(
                    "unknown {} type \"{}\"; valid types are: {valid}",
                    kind.noun(),
                    id.type_name
                ),
            ));
            None
        }
    }
}

/// A pipeline's references, checked against what is configured and built.
struct References<'a> {
    path: &'a str,
    errors: &'a mut ConfigErrors,
}

impl References<'_> {
    /// The built components `refs` names, in order; a duplicate or a dangling reference is
    /// reported.
    fn resolve<T: ?Sized>(
        &mut self,
        kind: Kind,
        refs: &[String],
        configured: &BTreeMap<String, serde_json::Value>,
        built: &BTreeMap<String, Arc<T>>,
    ) -> Vec<(String, Arc<T>)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in refs {
            let problem = if !seen.insert(r) {
                "more than once"
            } else if !configured.contains_key(r) {
                "which is not configured"
            } else {
                // A configured component that failed to build has its own error already.
                if let Some(c) = built.get(r) {
                    out.push((r.clone(), Arc::clone(c)));
                }
                continue;
            };
            self.errors.push(ConfigError::new(
                self.path,
                format!("references {} \"{r}\" {problem}", kind.noun()),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Source, load_with_env};

    fn build_yaml(yaml: &str) -> Result<Service, ConfigErrors> {
        let sources = [Source::Inline {
            name: "test.yaml".into(),
            text: yaml.into(),
        }];
        let loaded = load_with_env(&sources, &|_| None)?;
        build(loaded.config, BuildContext::new("n1"))
    }

    /// The errors, one string each.
    fn errors(yaml: &str) -> Vec<String> {
        match build_yaml(yaml) {
            Ok(_) => panic!("expected errors for:\n{yaml}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn has(errors: &[String], needle: &str) -> bool {
        errors.iter().any(|e| e.contains(needle))
    }

    const GOOD: &str = "receivers: {netns: }\nresolvers: {interfaces: }\nexporters: {debug: , debug/b: }\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [debug]\n    metrics/two:\n      receivers: [netns]\n      exporters: [debug]\n";

    #[test]
    fn a_good_config_builds_and_shares_components() {
        let service = build_yaml(GOOD).expect("valid");
        assert_eq!(service.pipelines.len(), 2);
        let a = &service.pipelines[0];
        let b = &service.pipelines[1];
        assert_eq!(a.name, "metrics");
        assert_eq!(service.pipeline(None).unwrap().name, "metrics");
        assert_eq!(
            service.pipeline(Some("metrics/two")).unwrap().name,
            "metrics/two"
        );
        assert!(service.pipeline(Some("nope")).is_none());
        // One receiver instance, shared by both pipelines.
        assert!(Arc::ptr_eq(&a.receivers[0].1, &b.receivers[0].1));
        // debug/b is configured but in no pipeline: not wired anywhere.
        assert!(
            service
                .pipelines
                .iter()
                .all(|p| p.exporters.iter().all(|(id, _)| id != "debug/b"))
        );
    }

    #[test]
    fn unknown_type_lists_the_valid_ones() {
        let e = errors(
            "receivers: {foo: }\nexporters: {debug: }\nservice: {pipelines: {metrics: {receivers: [foo], exporters: [debug]}}}",
        );
        assert!(
            has(
                &e,
                "receivers::foo: unknown receiver type \"foo\"; valid types are: netns"
            ),
            "{e:?}"
        );
        let e = errors(
            "receivers: {netns: }\nexporters: {bar/x: }\nservice: {pipelines: {metrics: {receivers: [netns], exporters: [bar/x]}}}",
        );
        assert!(
            has(
                &e,
                "exporters::bar/x: unknown exporter type \"bar\"; valid types are: debug"
            ),
            "{e:?}"
        );
        let e = errors(
            "receivers: {netns: }\nresolvers: {baz: }\nexporters: {debug: }\nservice: {pipelines: {metrics: {receivers: [netns], exporters: [debug]}}}",
        );
        assert!(has(&e, "resolvers::baz: unknown resolver type"), "{e:?}");
        let e = errors(
            "receivers: {netns: }\nexporters: {debug: }\nextensions: {zpages: }\nservice: {pipelines: {metrics: {receivers: [netns], exporters: [debug]}}}",
        );
        assert!(
            has(&e, "extensions::zpages: unknown extension type"),
            "{e:?}"
        );
    }

    #[test]
    fn invalid_ids_are_reported() {
        let e = errors(
            "receivers: {\"9netns\": }\nexporters: {debug/: }\nservice: {pipelines: {metrics: {receivers: [netns], exporters: [debug]}}}",
        );
        assert!(has(&e, "receivers::9netns: invalid id"), "{e:?}");
        assert!(has(&e, "exporters::debug/: invalid id"), "{e:?}");
    }

    #[test]
    fn dangling_and_duplicate_references_are_reported() {
        let e = errors(
            "receivers: {netns: }\nexporters: {debug: }\nservice:\n  extensions: [ghost]\n  pipelines:\n    metrics:\n      receivers: [netns, netns, cri]\n      resolvers: [interfaces]\n      exporters: [debug, otlp]\n",
        );
        assert!(
            has(
                &e,
                "service::pipelines::metrics: references receiver \"cri\" which is not configured"
            ),
            "{e:?}"
        );
        assert!(
            has(&e, "references receiver \"netns\" more than once"),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "references resolver \"interfaces\" which is not configured"
            ),
            "{e:?}"
        );
        assert!(
            has(&e, "references exporter \"otlp\" which is not configured"),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "service::extensions::0: references extension \"ghost\" which is not configured"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn pipelines_need_receivers_exporters_and_the_metrics_signal() {
        let e = errors(
            "receivers: {netns: }\nexporters: {debug: }\nservice:\n  pipelines:\n    metrics:\n    logs/x:\n      receivers: [netns]\n      exporters: [debug]\n",
        );
        assert!(
            has(
                &e,
                "service::pipelines::metrics: must have at least one receiver"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "service::pipelines::metrics: must have at least one exporter"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "service::pipelines::logs/x: unsupported signal \"logs\""
            ),
            "{e:?}"
        );
        let e = errors("receivers: {netns: }\nexporters: {debug: }\n");
        assert!(
            has(&e, "service::pipelines: at least one pipeline is required"),
            "{e:?}"
        );
    }

    #[test]
    fn component_settings_errors_and_validation_are_all_reported_together() {
        let e = errors(
            "receivers:\n  netns:\n    collection_interval: 1ms\n    scan_proc: false\n    paths: []\n  netns/b:\n    bogus: 1\n    other: 2\nresolvers:\n  interfaces:\n    include_loopback: maybe\nexporters:\n  debug:\n    verbosity: 3\nservice: {pipelines: {metrics: {receivers: [netns], exporters: [debug]}}}",
        );
        assert!(
            has(
                &e,
                "receivers::netns: collection_interval: 1ms is below the minimum of 100ms"
            ),
            "{e:?}"
        );
        assert!(has(&e, "nothing to scan"), "{e:?}");
        assert!(has(&e, "bogus") && has(&e, "other"), "{e:?}");
        assert!(has(&e, "resolvers::interfaces::include_loopback"), "{e:?}");
        assert!(has(&e, "exporters::debug::verbosity"), "{e:?}");
    }
}
