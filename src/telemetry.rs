//! The agent's own telemetry: logs (to stderr: stdout carries `discover` and `debug` output),
//! and, when configured, its own spans (tracing-opentelemetry) and metrics (opentelemetry_sdk)
//! over OTLP/gRPC. The SDK is right here: one resource, the agent's; the per-pod resources of
//! the data path are built by the otlp exporters instead. Both go over a tonic channel whose
//! connector resolves the endpoint's host with [`crate::dns`] (the static binary has no NSS).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithTonicConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::Layered;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogEncoding, LogsConfig, TelemetryConfig};
use crate::self_metrics::AgentMetrics;

/// Installs logs only (`validate`, `discover`). `RUST_LOG`, when set, overrides the level.
pub fn init_logs(config: &LogsConfig) {
    let _ = registry(config).try_init(); // a second call (tests) finds one set: fine
}

fn registry(config: &LogsConfig) -> Layered<Box<dyn Layer<Registry> + Send + Sync>, Registry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.level.as_str()));
    // Colours only on a terminal: `kubectl logs` and files would show the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer = match config.encoding {
        LogEncoding::Json => fmt.json().with_filter(filter).boxed(),
        LogEncoding::Console => fmt.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(layer)
}

/// The providers to flush at exit.
#[derive(Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Flushes and stops the OTLP pipelines.
    pub fn shutdown(self) {
        if let Some(t) = self.traces {
            let _ = t.shutdown();
        }
        if let Some(m) = self.metrics {
            let _ = m.shutdown();
        }
    }
}

/// Installs logs and, when configured, OTLP spans and metrics (`run`). Call it inside the tokio
/// runtime: the OTLP exporters use it.
pub fn init(
    config: &TelemetryConfig,
    node: &str,
    agent: Arc<AgentMetrics>,
) -> Result<Telemetry, String> {
    let resource = Resource::builder()
        .with_service_name("netshim")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("k8s.node.name", node.to_string()),
        ])
        .build();
    let mut telemetry = Telemetry::default();

    let otel_layer = match &config.traces {
        Some(t) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(
                    channel(&t.endpoint).map_err(|e| format!("service::telemetry::traces: {e}"))?,
                )
                .build()
                .map_err(|e| format!("service::telemetry::traces: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone())
                .build();
            // The agent's own spans (at debug level, see `pipeline::run`), not its
            // dependencies' (h2, hyper, tonic have spans of their own at every level).
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("netshim"))
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("netshim", tracing::Level::DEBUG),
                );
            telemetry.traces = Some(provider);
            Some(layer)
        }
        None => None,
    };
    let _ = registry(&config.logs).with(otel_layer).try_init();

    if let Some(m) = &config.metrics {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_channel(
                channel(&m.endpoint).map_err(|e| format!("service::telemetry::metrics: {e}"))?,
            )
            .build()
            .map_err(|e| format!("service::telemetry::metrics: {e}"))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(m.interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        register_instruments(&provider, agent);
        telemetry.metrics = Some(provider);
    }
    Ok(telemetry)
}

/// A lazy gRPC channel to `endpoint` (`http://HOST:PORT`), connecting through netshim's own
/// resolver. Plaintext only, as before this channel was netshim's: opentelemetry-otlp is
/// built without its TLS features.
fn channel(endpoint: &str) -> Result<tonic::transport::Channel, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("invalid endpoint {endpoint:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "endpoint {endpoint:?}: https is not supported for the agent's own telemetry (use http://)"
            ));
        }
        _ => {
            return Err(format!("endpoint {endpoint:?}: expected http://HOST:PORT"));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("endpoint {endpoint:?}: no host"));
    }
    Ok(tonic::transport::Endpoint::from(uri)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(crate::dns::TcpConnector))
}

/// The agent's numbers as OpenTelemetry instruments, read when the SDK collects.
fn register_instruments(provider: &SdkMeterProvider, agent: Arc<AgentMetrics>) {
    let meter = provider.meter("netshim");
    let a = Arc::clone(&agent);
    let _ = meter
        .u64_observable_counter("netshim.cycles")
        .with_description("Collection cycles completed.")
        .with_callback(move |o| o.observe(a.view().cycles, &[]))
        .build();
    let a = Arc::clone(&agent);
    let _ = meter
        .f64_observable_counter("netshim.cycle.duration")
        .with_unit("s")
        .with_description("Total time spent in collection cycles.")
        .with_callback(move |o| o.observe(a.view().duration_sum, &[]))
        .build();
    let a = Arc::clone(&agent);
    let _ = meter
        .u64_observable_gauge("netshim.pods")
        .with_description("Pods in the last snapshot.")
        .with_callback(move |o| o.observe(a.view().pods, &[]))
        .build();
    let a = Arc::clone(&agent);
    let _ = meter
        .u64_observable_gauge("netshim.interfaces")
        .with_description("Pod interfaces in the last snapshot.")
        .with_callback(move |o| o.observe(a.view().interfaces, &[]))
        .build();
    let _ = meter
        .u64_observable_counter("netshim.errors")
        .with_description("Errors by stage and component.")
        .with_callback(move |o| {
            for ((stage, component), n) in agent.view().errors {
                o.observe(
                    n,
                    &[
                        KeyValue::new("stage", stage),
                        KeyValue::new("component", component),
                    ],
                );
            }
        })
        .build();
}
