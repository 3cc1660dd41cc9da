//! The `otlp_grpc` (alias `otlp`) and `otlp_http` (alias `otlphttp`) exporters: each snapshot
//! becomes one OTLP `ExportMetricsServiceRequest` with one `ResourceMetrics` per pod, pushed to
//! an OpenTelemetry Collector (or anything speaking OTLP) with the Collector's exporter
//! settings and defaults.
//!
//! - **Data** (`convert`): resource `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`,
//!   `k8s.node.name` and the resolvers' attributes (`netshim.netns.path` when nothing names the
//!   pod); scope `netshim`; cumulative monotonic sums `k8s.pod.network.io` (By),
//!   `k8s.pod.network.errors` ({error}), `netshim.pod.network.packets` and
//!   `netshim.pod.network.dropped` ({packet}) by `network.interface.name` and
//!   `network.io.direction`, and the gauge `netshim.pod.interface` (1) mapping each pod
//!   interface to its host peer. Start times are when netshim first saw each series.
//! - **Delivery** (the exporter helper's queue and retry): `export` queues (at most
//!   `sending_queue.queue_size` batches, the oldest dropped when full) and returns; one task
//!   sends in order, retrying transient failures (gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
//!   `DEADLINE_EXCEEDED`, …; HTTP 429/502/503/504; connection errors and timeouts) with
//!   exponential backoff, honouring `RetryInfo` and `Retry-After`. `shutdown` pushes what is
//!   pending for at most twice `timeout` (≤ 10 s). Its numbers go to `BuildContext::metrics`.
//! - **Transport** (`grpc`, `http`, on the helper's connector and TLS settings): TCP + rustls
//!   (ring, through hyper-rustls) under both tonic and hyper; no OpenSSL, no protoc. TLS
//!   follows the Collector: a gRPC `host:port` is TLS unless `tls.insecure: true`; an
//!   `http://` or `https://` scheme decides by itself. `tls.insecure_skip_verify` works for
//!   both transports.

pub mod config;
pub mod convert;
mod grpc;
mod http;
mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::ConfigErrors;
use crate::model::Snapshot;
use crate::self_metrics::{AgentMetrics, ExporterStats};

use self::config::{Config, GrpcConfig, HttpConfig, Protocol};
use self::convert::SeriesStarts;
use self::transport::Sender;

use super::helper::Batch;
use super::helper::queue::{self, SendingQueue};
use super::{ExportError, Exporter, ExporterFactory};

pub const GRPC_TYPE: &str = "otlp_grpc";
pub const HTTP_TYPE: &str = "otlp_http";

pub const GRPC_FACTORY: ExporterFactory = Factory::new::<GrpcConfig>(
    GRPC_TYPE,
    "pushes OTLP metrics over gRPC, one resource per pod (Collector settings)",
)
.with_aliases(&["otlp"]);

pub const HTTP_FACTORY: ExporterFactory = Factory::new::<HttpConfig>(
    HTTP_TYPE,
    "pushes OTLP metrics as HTTP/protobuf to /v1/metrics, one resource per pod",
)
.with_aliases(&["otlphttp"]);

impl ComponentConfig for GrpcConfig {
    type Component = dyn Exporter;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Exporter>, ConfigErrors> {
        Ok(Box::new(OtlpExporter::at(site, Protocol::Grpc, self.0)))
    }
}

impl ComponentConfig for HttpConfig {
    type Component = dyn Exporter;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Exporter>, ConfigErrors> {
        Ok(Box::new(OtlpExporter::at(site, Protocol::Http, self.0)))
    }
}

/// The longest `shutdown` waits for pending batches.
const SHUTDOWN_MAX: Duration = Duration::from_secs(10);

/// One `otlp_grpc` or `otlp_http` exporter.
pub struct OtlpExporter {
    id: String,
    protocol: Protocol,
    config: Config,
    series: Mutex<SeriesStarts>,
    queue: Arc<SendingQueue>,
    /// Where the queue's statistics are published once started (`BuildContext::metrics`).
    metrics: Arc<AgentMetrics>,
    /// Set by `start` (it reads the TLS files and needs the runtime).
    sender: Mutex<Option<Arc<Sender>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// With the queue disabled: one export at a time, in order.
    sync_send: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OtlpExporter {
    /// The exporter the pipeline builds at `site`: named by its id, reporting to the agent's
    /// metrics once started.
    fn at(site: &BuildSite<'_>, protocol: Protocol, config: Config) -> Self {
        let metrics = Arc::clone(&site.context.metrics);
        Self::new(site.id.to_string(), protocol, config, metrics)
    }

    /// An exporter from settings already validated (see [`Config::problems`]), reporting to
    /// `metrics`.
    pub fn new(
        id: impl Into<String>,
        protocol: Protocol,
        config: Config,
        metrics: Arc<AgentMetrics>,
    ) -> Self {
        let id = id.into();
        OtlpExporter {
            queue: Arc::new(SendingQueue::new(&id, config.sending_queue.capacity())),
            metrics,
            id,
            protocol,
            config,
            series: Mutex::new(SeriesStarts::default()),
            sender: Mutex::new(None),
            worker: Mutex::new(None),
            sync_send: tokio::sync::Mutex::new(()),
        }
    }

    /// The component id (`otlp_grpc/name`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What was sent, dropped and retried so far, and the queue now.
    pub fn stats(&self) -> ExporterStats {
        self.queue.stats()
    }

    /// How many series' start times are remembered.
    pub fn tracked_series(&self) -> usize {
        lock(&self.series).len()
    }

    /// How long `shutdown` waits at most: twice `timeout`, at most 10 s.
    pub fn shutdown_bound(&self) -> Duration {
        (self.config.timeout * 2).min(SHUTDOWN_MAX)
    }

    fn ensure_started(&self) -> Result<Arc<Sender>, ExportError> {
        let mut slot = lock(&self.sender);
        if let Some(sender) = slot.as_ref() {
            return Ok(Arc::clone(sender));
        }
        let sender = Arc::new(
            Sender::new(&self.config, self.protocol)
                .map_err(|e| ExportError::Failed(format!("{}: {e}", self.id)))?,
        );
        *slot = Some(Arc::clone(&sender));
        if self.config.sending_queue.enabled {
            let task = queue::run(
                Arc::clone(&self.queue),
                Arc::clone(&sender),
                self.config.retry_on_failure.clone(),
            );
            *lock(&self.worker) = Some(tokio::spawn(task));
        }
        self.metrics
            .report_exporter(&self.id, Arc::downgrade(&self.queue) as _);
        Ok(sender)
    }

    /// The snapshot as a payload (`None` when it has no pod to report).
    fn payload(&self, snapshot: &Snapshot, sender: &Sender) -> Result<Option<Batch>, String> {
        let (request, points) = {
            let mut series = lock(&self.series);
            convert::to_request(snapshot, self.config.node_name_override(), &mut series)
        };
        if request.resource_metrics.is_empty() {
            return Ok(None);
        }
        let body = sender.prepare(request.encode_to_vec())?;
        Ok(Some(Batch {
            body,
            points: points as u64,
        }))
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    /// Reads the TLS files and sets up the client (it connects on the first send), then starts
    /// the sending task.
    async fn start(&self) -> Result<(), ExportError> {
        self.ensure_started().map(|_| ())
    }

    async fn export(&self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        if self.queue.is_closing() {
            return Err(ExportError::Failed(format!(
                "{}: already shut down",
                self.id
            )));
        }
        let sender = self.ensure_started()?;
        let Some(payload) = self
            .payload(&snapshot, &sender)
            .map_err(|e| ExportError::Failed(format!("{}: {e}", self.id)))?
        else {
            debug!(exporter = %self.id, "no pod to report in this snapshot");
            return Ok(());
        };
        if self.config.sending_queue.enabled {
            self.queue.enqueue(payload);
            return Ok(());
        }
        let _one_at_a_time = self.sync_send.lock().await;
        queue::deliver(
            &self.queue,
            sender.as_ref(),
            &self.config.retry_on_failure,
            &payload,
        )
        .await
        .map_err(|e| ExportError::Failed(format!("{}: {e}", self.id)))
    }

    /// Sends what is queued (the last snapshot included) for at most
    /// [`shutdown_bound`](OtlpExporter::shutdown_bound), then stops the sending task.
    async fn shutdown(&self) -> Result<(), ExportError> {
        self.queue.close();
        let worker = lock(&self.worker).take();
        let Some(worker) = worker else {
            return Ok(());
        };
        queue::finish(&self.queue, worker, self.shutdown_bound())
            .await
            .map_err(|e| ExportError::Failed(format!("{}: {e}", self.id)))
    }
}
