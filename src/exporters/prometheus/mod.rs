//! The `prometheus` exporter: a pull endpoint on the older shim's port. `/metrics` renders the
//! latest snapshot on each scrape (text format, or OpenMetrics when asked; gzip when asked);
//! `/healthz` answers as the older shim's did, for its probes.

mod exposition;
mod series;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::oneshot;
use tower_http::compression::CompressionLayer;
use tracing::info;

use crate::components::{BuildContext, ExporterFactory};
use crate::config::{ConfigErrors, Validate, parse_component};
use crate::model::Snapshot;
use crate::self_metrics::AgentMetrics;

use super::{ExportError, Exporter};
pub use exposition::Format;
pub use series::{COUNTERS, INTERFACE_INFO, SHIM};

pub const TYPE: &str = "prometheus";

/// Settings of the `prometheus` exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen. Default: `0.0.0.0:9091` (the older shim's port).
    pub endpoint: String,
    /// Publish `pod_interface_shim{container,id,image,interface,name,namespace,node,pod} 0`
    /// as the older shim did. Default: true.
    pub shim_metric: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:9091".into(),
            shim_metric: true,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        match self.endpoint.parse::<SocketAddr>() {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!(
                "endpoint: `{}` is not an address:port ({e})",
                self.endpoint
            )],
        }
    }
}

pub const FACTORY: ExporterFactory = ExporterFactory {
    type_name: TYPE,
    aliases: &[],
    summary: "Prometheus pull endpoint (/metrics, /healthz); pod_interface_shim compatible",
    build,
};

fn build(
    path: &str,
    settings: serde_json::Value,
    ctx: &BuildContext,
) -> Result<Box<dyn Exporter>, ConfigErrors> {
    let config: Config = parse_component(path, settings)?;
    Ok(Box::new(PrometheusExporter::new(
        config,
        Arc::clone(&ctx.metrics),
    )))
}

/// What a scrape reads.
struct Shared {
    /// The latest snapshot of each pipeline feeding this exporter.
    snapshots: RwLock<BTreeMap<String, Arc<Snapshot>>>,
    metrics: Arc<AgentMetrics>,
    shim: bool,
}

impl Shared {
    fn render(&self, format: Format) -> String {
        let snapshots: Vec<Arc<Snapshot>> = self
            .snapshots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        series::render(
            &snapshots,
            &self.metrics.view(),
            &series::BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
            },
            self.shim,
            format,
        )
    }
}

pub struct PrometheusExporter {
    config: Config,
    shared: Arc<Shared>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    bound: Mutex<Option<SocketAddr>>,
}

impl PrometheusExporter {
    pub fn new(config: Config, metrics: Arc<AgentMetrics>) -> Self {
        let shared = Arc::new(Shared {
            snapshots: RwLock::default(),
            metrics,
            shim: config.shim_metric,
        });
        PrometheusExporter {
            config,
            shared,
            stop: Mutex::new(None),
            bound: Mutex::new(None),
        }
    }

    /// The address the server listens on, once started (tests bind port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `/metrics` document for the snapshots received so far (benchmarks, tests).
    pub fn render(&self, format: Format) -> String {
        self.shared.render(format)
    }

    /// Takes a snapshot without the async trait (benchmarks).
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.shared
            .snapshots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snapshot.pipeline.clone(), snapshot);
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // Rendering 1000 pods takes a few milliseconds of CPU: keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || shared.render(format))
        .await
        .unwrap_or_else(|e| format!("# render failed: {e}\n"));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
}

#[async_trait]
impl Exporter for PrometheusExporter {
    async fn start(&self) -> Result<(), ExportError> {
        let listener = tokio::net::TcpListener::bind(&self.config.endpoint)
            .await
            .map_err(|e| {
                ExportError::Failed(format!("listening on {}: {e}", self.config.endpoint))
            })?;
        let addr = listener.local_addr().map_err(|e| {
            ExportError::Failed(format!("listening on {}: {e}", self.config.endpoint))
        })?;
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "OK" }))
            .layer(CompressionLayer::new().gzip(true))
            .with_state(Arc::clone(&self.shared));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "prometheus endpoint stopped");
            }
        });
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        info!(address = %addr, "serving /metrics and /healthz");
        Ok(())
    }

    async fn export(&self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.store(snapshot);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ExportError> {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        Ok(())
    }
}
