//! The `k8s_attributes` resolver: pod identity and workload metadata from the Kubernetes API,
//! playing the part of the OpenTelemetry Collector's k8sattributes processor for netshim's own
//! data, with the settings a Collector user knows.
//!
//! A kube-rs watcher and reflector keep the pods of this node (field selector
//! `spec.nodeName=NODE`, trimmed before they are stored) in memory; each cycle associates every
//! sandbox with its pod (see [`associate`]) and adds the extracted attributes.

mod associate;
mod metadata;
mod rules;
mod watch;

#[cfg(test)]
mod mock_tests;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::Batch;
use crate::resolvers::ResolverFactory;

use super::{Resolver, ResolverError, StartContext};
use associate::{Extraction, PodIndex, enrich};
pub use metadata::{DEFAULT as DEFAULT_METADATA, KNOWN as KNOWN_METADATA};
use rules::Rules;
pub use rules::{FieldRule, From as RuleSource};

pub const TYPE: &str = "k8s_attributes";

pub use crate::kube_api::AuthType;

/// `extract`: what becomes attributes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extract {
    /// OpenTelemetry attribute names. Default: `k8s.namespace.name`, `k8s.pod.name`,
    /// `k8s.pod.uid`, `k8s.pod.start_time`, `k8s.deployment.name`, `k8s.node.name`.
    pub metadata: Vec<String>,
    /// Pod labels to copy (`k8s.pod.labels.<key>` unless `tag_name` says otherwise).
    pub labels: Vec<FieldRule>,
    /// Pod annotations to copy (`k8s.pod.annotations.<key>` unless `tag_name` says otherwise).
    pub annotations: Vec<FieldRule>,
}

impl Default for Extract {
    fn default() -> Self {
        Extract {
            metadata: DEFAULT_METADATA.iter().map(|s| s.to_string()).collect(),
            labels: Vec::new(),
            annotations: Vec::new(),
        }
    }
}

/// Settings of the `k8s_attributes` resolver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    pub auth_type: AuthType,
    /// The API server URL, for `auth_type: none`.
    pub endpoint: Option<String>,
    /// This node's name. Default: the `K8S_NODE_NAME` environment variable (set it from the
    /// downward API, `spec.nodeName`).
    pub node_name: Option<String>,
    pub extract: Extract,
    /// Hold the agent's start until the first full pod list arrived (fail if it does not
    /// within `wait_for_metadata_timeout`). Default: false.
    pub wait_for_metadata: bool,
    /// Default: 10s. `netshim discover` always waits this long at most for the first list.
    #[serde(with = "humantime_serde")]
    pub wait_for_metadata_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            auth_type: AuthType::default(),
            endpoint: None,
            node_name: None,
            extract: Extract::default(),
            wait_for_metadata: false,
            wait_for_metadata_timeout: Duration::from_secs(10),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for name in &self.extract.metadata {
            if !KNOWN_METADATA.contains(&name.as_str()) {
                problems.push(format!(
                    "extract::metadata: unknown attribute \"{name}\"; known: {}",
                    KNOWN_METADATA.join(", ")
                ));
            }
        }
        for (i, r) in self.extract.labels.iter().enumerate() {
            problems.extend(r.problems(&format!("extract::labels::{i}")));
        }
        for (i, r) in self.extract.annotations.iter().enumerate() {
            problems.extend(r.problems(&format!("extract::annotations::{i}")));
        }
        match (self.auth_type, &self.endpoint) {
            (AuthType::None, None) => {
                problems.push("endpoint: required with auth_type: none".into())
            }
            (AuthType::None, Some(url)) if url.parse::<http::Uri>().is_err() => {
                problems.push(format!("endpoint: `{url}` is not a URL"))
            }
            _ => {}
        }
        if self.node_name.as_deref() == Some("") {
            problems.push("node_name: must not be empty".into());
        }
        if self.wait_for_metadata_timeout.is_zero() {
            problems.push("wait_for_metadata_timeout: must be more than 0".into());
        }
        problems
    }
}

pub const FACTORY: ResolverFactory = Factory::new::<Config>(
    TYPE,
    "pod identity and workload metadata from the Kubernetes API (pods of this node)",
);

impl ComponentConfig for Config {
    type Component = dyn Resolver;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Resolver>, ConfigErrors> {
        let node = self
            .node_name
            .clone()
            .or_else(|| std::env::var("K8S_NODE_NAME").ok().filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                site.error(
                    "node_name: unknown; set K8S_NODE_NAME (downward API: spec.nodeName) or `node_name`",
                )
            })?;
        Ok(Box::new(K8sAttributesResolver::new(self, node)))
    }
}

pub struct K8sAttributesResolver {
    config: Config,
    node: String,
    extraction: Extraction,
    /// A client given by the caller (tests), instead of one built from `auth_type`.
    client: Mutex<Option<kube::Client>>,
    store: Mutex<Option<Store<Pod>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl K8sAttributesResolver {
    pub fn new(config: Config, node: String) -> Self {
        let extraction = Extraction {
            metadata: config.extract.metadata.clone(),
            labels: Rules::compile(&config.extract.labels, "k8s.pod.labels."),
            annotations: Rules::compile(&config.extract.annotations, "k8s.pod.annotations."),
        };
        K8sAttributesResolver {
            config,
            node,
            extraction,
            client: Mutex::new(None),
            store: Mutex::new(None),
            task: Mutex::new(None),
        }
    }

    /// Uses `client` instead of building one from `auth_type` (tests with a mock service).
    pub fn with_client(self, client: kube::Client) -> Self {
        *lock(&self.client) = Some(client);
        self
    }

    /// The pods currently known (for tests and diagnostics).
    pub fn known_pods(&self) -> usize {
        lock(&self.store).as_ref().map_or(0, |s| s.state().len())
    }
}

/// A poisoned lock only means a panic elsewhere mid-update of a plain value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for K8sAttributesResolver {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

#[async_trait]
impl Resolver for K8sAttributesResolver {
    async fn start(&self, ctx: StartContext) -> Result<(), ResolverError> {
        if lock(&self.store).is_some() {
            return Ok(()); // shared by several pipelines: started once
        }
        let key = format!("resolvers::{}", ctx.id);
        ctx.health.register(&key);
        let given = lock(&self.client).take();
        let client = match given {
            Some(c) => c,
            None => watch::client(self.config.auth_type, self.config.endpoint.as_deref())
                .await
                .map_err(ResolverError::Failed)?,
        };
        let (store, writer) = reflector::store();
        let keep_annotations = !self.extraction.annotations.is_empty();
        let task = tokio::spawn(watch::run(
            client,
            self.node.clone(),
            keep_annotations,
            writer,
            ctx.id.clone(),
        ));
        *lock(&self.task) = Some(task);
        *lock(&self.store) = Some(store.clone());

        // Ready once the first full list is in; until then not ready. One task waits on the
        // store and tells everyone else: the store's readiness wakes a single waiter only.
        let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
        let ready = store.clone();
        let health = ctx.health.clone();
        let id = ctx.id.clone();
        tokio::spawn(async move {
            if ready.wait_until_ready().await.is_ok() {
                health.report(&key, Ok(()));
                info!(resolver = %id, pods = ready.state().len(), "pod metadata synced");
                let _ = synced_tx.send(true);
            }
        });

        let limit = self.config.wait_for_metadata_timeout;
        if ctx.one_shot || self.config.wait_for_metadata {
            let in_time = tokio::time::timeout(limit, synced.wait_for(|s| *s)).await;
            if !matches!(in_time, Ok(Ok(_))) {
                if self.config.wait_for_metadata && !ctx.one_shot {
                    return Err(ResolverError::Failed(format!(
                        "pod metadata not synced within {} (wait_for_metadata)",
                        humantime::format_duration(limit)
                    )));
                }
                warn!(resolver = %ctx.id, "pod metadata not synced within {}; going on without it", humantime::format_duration(limit));
            }
        }
        Ok(())
    }

    async fn resolve(&self, batch: &mut Batch) -> Result<(), ResolverError> {
        let Some(store) = lock(&self.store).clone() else {
            return Err(ResolverError::Failed("not started".into()));
        };
        let pods = store.state();
        let index = PodIndex::new(&pods, &self.node);
        let stats = enrich(batch, &index, &self.extraction);
        debug!(
            known = pods.len(),
            by_uid = stats.by_uid,
            by_ip = stats.by_ip,
            unmatched = stats.unmatched,
            "k8s attributes associated"
        );
        Ok(())
    }
}
