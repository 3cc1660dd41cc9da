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
//! - **Delivery** (`queue`): `export` queues (at most `sending_queue.queue_size` batches, the
//!   oldest dropped when full) and returns; one task sends in order, retrying transient failures
//!   (gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, …; HTTP 429/502/503/504;
//!   connection errors and timeouts) with exponential backoff, honouring `RetryInfo` and
//!   `Retry-After`. `shutdown` pushes what is pending for at most twice `timeout` (≤ 10 s).
//! - **Transport** (`connect`, `tls`): TCP + rustls (ring) under both tonic and hyper; no
//!   OpenSSL, no protoc. TLS follows the Collector: a gRPC `host:port` is TLS unless
//!   `tls.insecure: true`; an `http://` or `https://` scheme decides by itself.
//!   `tls.insecure_skip_verify` works for both transports.

pub mod config;
mod connect;
pub mod convert;
mod grpc;
mod http;
mod queue;
mod tls;
mod transport;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use crate::components::{BuildContext, ExporterFactory};
use crate::config::{ConfigErrors, parse_component};
use crate::model::Snapshot;

use self::config::{Config, GrpcConfig, HttpConfig, Protocol};
use self::convert::SeriesStarts;
pub use self::queue::ExporterStats;
use self::queue::Shared;
use self::transport::{Payload, Sender};

use super::{ExportError, Exporter};

pub const GRPC_TYPE: &str = "otlp_grpc";
pub const HTTP_TYPE: &str = "otlp_http";

pub const GRPC_FACTORY: ExporterFactory = ExporterFactory {
    type_name: GRPC_TYPE,
    aliases: &["otlp"],
    summary: "pushes OTLP metrics over gRPC, one resource per pod (Collector settings)",
    build: build_grpc,
};

pub const HTTP_FACTORY: ExporterFactory = ExporterFactory {
    type_name: HTTP_TYPE,
    aliases: &["otlphttp"],
    summary: "pushes OTLP metrics as HTTP/protobuf to /v1/metrics, one resource per pod",
    build: build_http,
};

fn build_grpc(
    path: &str,
    settings: serde_json::Value,
    _ctx: &BuildContext,
) -> Result<Box<dyn Exporter>, ConfigErrors> {
    Ok(Box::new(OtlpExporter::build(
        Protocol::Grpc,
        path,
        settings,
    )?))
}

fn build_http(
    path: &str,
    settings: serde_json::Value,
    _ctx: &BuildContext,
) -> Result<Box<dyn Exporter>, ConfigErrors> {
    Ok(Box::new(OtlpExporter::build(
        Protocol::Http,
        path,
        settings,
    )?))
}

/// The longest `shutdown` waits for pending batches.
const SHUTDOWN_MAX: Duration = Duration::from_secs(10);

/// One `otlp_grpc` or `otlp_http` exporter.
pub struct OtlpExporter {
    id: String,
    protocol: Protocol,
    config: Config,
    series: Mutex<SeriesStarts>,
    shared: Arc<Shared>,
    /// Set by `start` (it reads the TLS files and needs the runtime).
    sender: Mutex<Option<Arc<Sender>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    in_flight: Arc<Mutex<Option<Payload>>>,
    /// With the queue disabled: one export at a time, in order.
    sync_send: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl OtlpExporter {
    /// Parses and validates the settings found at `path` (`exporters::otlp_grpc/name`); does
    /// no I/O.
    pub fn build(
        protocol: Protocol,
        path: &str,
        settings: serde_json::Value,
    ) -> Result<Self, ConfigErrors> {
        let config = match protocol {
            Protocol::Grpc => parse_component::<GrpcConfig>(path, settings)?.0,
            Protocol::Http => parse_component::<HttpConfig>(path, settings)?.0,
        };
        let id = path.strip_prefix("exporters::").unwrap_or(path).to_string();
        Ok(Self::new(id, protocol, config))
    }

    /// An exporter from settings already validated (see [`Config::problems`]).
    pub fn new(id: impl Into<String>, protocol: Protocol, config: Config) -> Self {
        let id = id.into();
        let capacity = if config.sending_queue.enabled {
            config.sending_queue.queue_size
        } else {
            0
        };
        OtlpExporter {
            shared: Arc::new(Shared::new(&id, capacity)),
            id,
            protocol,
            config,
            series: Mutex::new(SeriesStarts::default()),
            sender: Mutex::new(None),
            worker: Mutex::new(None),
            in_flight: Arc::new(Mutex::new(None)),
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
        self.shared.stats()
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
                Arc::clone(&self.shared),
                Arc::clone(&sender),
                self.config.retry_on_failure.clone(),
                Arc::clone(&self.in_flight),
            );
            *lock(&self.worker) = Some(tokio::spawn(task));
        }
        register(&self.id, &self.shared);
        Ok(sender)
    }

    /// The snapshot as a payload (`None` when it has no pod to report).
    fn payload(&self, snapshot: &Snapshot, sender: &Sender) -> Result<Option<Payload>, String> {
        let (request, points) = {
            let mut series = lock(&self.series);
            convert::to_request(snapshot, self.config.node_name_override(), &mut series)
        };
        if request.resource_metrics.is_empty() {
            return Ok(None);
        }
        let body = sender.prepare(request.encode_to_vec())?;
        Ok(Some(Payload {
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
        if self.shared.is_closing() {
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
            self.shared.enqueue(payload);
            return Ok(());
        }
        let _one_at_a_time = self.sync_send.lock().await;
        queue::deliver(
            &self.shared,
            &sender,
            &self.config.retry_on_failure,
            &payload,
        )
        .await
        .map_err(|e| ExportError::Failed(format!("{}: {e}", self.id)))
    }

    /// Sends what is queued (the last snapshot included) for at most
    /// [`shutdown_bound`](OtlpExporter::shutdown_bound), then stops the sending task.
    async fn shutdown(&self) -> Result<(), ExportError> {
        self.shared.close();
        let worker = lock(&self.worker).take();
        let Some(mut worker) = worker else {
            return Ok(());
        };
        let bound = self.shutdown_bound();
        match tokio::time::timeout(bound, &mut worker).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                error!(exporter = %self.id, error = %e, "the sending task failed");
                Err(ExportError::Failed(format!(
                    "{}: sending task: {e}",
                    self.id
                )))
            }
            Err(_) => {
                worker.abort();
                let in_flight = lock(&self.in_flight).take();
                let lost = self.shared.abandon(in_flight.as_ref());
                warn!(
                    exporter = %self.id,
                    batches = lost,
                    bound = %humantime::format_duration(bound),
                    "shutdown: batches not delivered in time were dropped"
                );
                Err(ExportError::Failed(format!(
                    "{}: {lost} batches not delivered within {}",
                    self.id,
                    humantime::format_duration(bound)
                )))
            }
        }
    }
}

/// Started OTLP exporters, by component id, for the agent's own metrics.
static REGISTRY: Mutex<Vec<(String, Weak<Shared>)>> = Mutex::new(Vec::new());

fn register(id: &str, shared: &Arc<Shared>) {
    let mut all = lock(&REGISTRY);
    all.retain(|(_, w)| w.strong_count() > 0);
    all.push((id.to_string(), Arc::downgrade(shared)));
}

/// The statistics of every started OTLP exporter still alive, by component id (`otlp_grpc`,
/// `otlp_http/backup`, …), for publishing as the agent's own metrics.
pub fn all_stats() -> Vec<(String, ExporterStats)> {
    lock(&REGISTRY)
        .iter()
        .filter_map(|(id, w)| w.upgrade().map(|s| (id.clone(), s.stats())))
        .collect()
}
