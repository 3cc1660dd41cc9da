//! The `prometheus` exporter: a pull endpoint on the older shim's port. `/metrics` serves the
//! latest snapshots (text format, or OpenMetrics when asked; gzip when asked), rendered once per
//! change and shared by every scrape until the next; `/healthz` answers as the older shim's did,
//! for its probes.

mod auth;
mod exposition;
mod series;
mod server;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;
use tracing::info;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::exporters::ExporterFactory;
use crate::exporters::helper::tls_server::ServerTls;
use crate::model::Snapshot;
use crate::self_metrics::{AgentMetrics, MetricsView};

use super::{ExportError, Exporter};
pub use crate::exporters::helper::tls_server::ServerTlsSettings;
pub use auth::{AuthSettings, BasicAuth, KubernetesAuth};
pub use exposition::Format;
pub use series::{COUNTERS, INTERFACE_INFO, SHIM, transport_name};

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
    /// Serve HTTPS (the Collector's `tls` server settings). Absent: plain HTTP; present with
    /// no `cert_file`/`key_file`: a self-signed certificate for the node's name, made at start.
    pub tls: Option<ServerTlsSettings>,
    /// Who may read `/metrics` (`mode: kubernetes | basic | mtls | none`). Required for an
    /// endpoint other than loopback; absent on loopback: anyone. `/healthz` is always open.
    pub auth: Option<AuthSettings>,
    /// Connections served at once; more are closed as they come. Default: 1024.
    pub max_connections: usize,
    /// Bytes of a request's start line and headers (`431` beyond). Default: 8192.
    pub max_request_header_size: usize,
    /// Headers in a request (`431` beyond). Default: 64.
    pub max_request_headers: usize,
    /// Time for a request's headers to arrive, from the connection's start (TLS handshake
    /// included) or the end of the previous response. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub read_header_timeout: Duration,
    /// A connection with nothing read or written for this long is closed. Default: 2m (longer
    /// than any scrape interval, so scrapers keep their connection).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:9091".into(),
            shim_metric: true,
            tls: None,
            auth: None,
            max_connections: 1024,
            max_request_header_size: 8192,
            max_request_headers: 64,
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.endpoint.parse::<SocketAddr>() {
            Err(e) => problems.push(format!(
                "endpoint: `{}` is not an address:port ({e})",
                self.endpoint
            )),
            Ok(addr) if self.auth.is_none() && !addr.ip().is_loopback() => problems.push(format!(
                "auth: required for the non-loopback endpoint {addr} (every pod's name and traffic is \
                 served there): choose `mode: kubernetes`, `basic` or `mtls`, or `mode: none` to \
                 serve anyone"
            )),
            Ok(_) => {}
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems());
        }
        if let Some(auth) = &self.auth {
            let client_ca = self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some());
            problems.extend(auth.problems(client_ca));
        }
        if self.max_connections == 0 {
            problems.push("max_connections: must be at least 1".into());
        }
        if self.max_request_header_size < 1024 {
            problems.push(format!(
                "max_request_header_size: {} is below the minimum of 1024 bytes",
                self.max_request_header_size
            ));
        }
        if self.max_request_headers == 0 {
            problems.push("max_request_headers: must be at least 1".into());
        }
        for (what, d) in [
            ("read_header_timeout", self.read_header_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d < Duration::from_millis(100) {
                problems.push(format!(
                    "{what}: {} is below the minimum of 100ms",
                    humantime::format_duration(d)
                ));
            }
        }
        problems
    }
}

pub const FACTORY: ExporterFactory = Factory::new::<Config>(
    TYPE,
    "Prometheus pull endpoint (/metrics, /healthz); pod_interface_shim compatible",
);

impl ComponentConfig for Config {
    type Component = dyn Exporter;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Exporter>, ConfigErrors> {
        let metrics = Arc::clone(&site.context.metrics);
        let mut exporter = PrometheusExporter::new(self, metrics);
        exporter.node_name = site.context.node_name.clone();
        Ok(Box::new(exporter))
    }
}

/// What a scrape reads.
struct Shared {
    /// The latest snapshot of each pipeline feeding this exporter.
    snapshots: RwLock<BTreeMap<String, Arc<Snapshot>>>,
    /// Bumped by every snapshot stored.
    generation: AtomicU64,
    metrics: Arc<AgentMetrics>,
    shim: bool,
    /// The last document served in each (format, gzip) form. Held while rendering, so that
    /// scrapes arriving together wait for one render instead of making one each.
    rendered: tokio::sync::Mutex<[Option<Rendered>; 4]>,
}

/// A document and what it was rendered from.
struct Rendered {
    generation: u64,
    view: MetricsView,
    body: Bytes,
}

impl Shared {
    fn render(&self, view: &MetricsView, format: Format) -> String {
        let snapshots: Vec<Arc<Snapshot>> = self
            .snapshots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        series::render(
            &snapshots,
            view,
            &series::BuildInfo {
                version: env!("CARGO_PKG_VERSION"),
            },
            self.shim,
            format,
        )
    }

    /// The document in the asked form: the last one when nothing has changed since (no new
    /// snapshot, the agent's own numbers the same), else rendered anew off the async workers.
    async fn document(self: &Arc<Self>, format: Format, gzip: bool) -> Bytes {
        let slot = usize::from(format == Format::OpenMetrics) * 2 + usize::from(gzip);
        let mut rendered = self.rendered.lock().await;
        let generation = self.generation.load(Ordering::Acquire);
        let view = self.metrics.view();
        if let Some(last) = &rendered[slot]
            && last.generation == generation
            && last.view == view
        {
            return last.body.clone();
        }
        let shared = Arc::clone(self);
        let for_render = view.clone();
        // Rendering and compressing 1000 pods takes milliseconds of CPU.
        let body = tokio::task::spawn_blocking(move || {
            let text = shared.render(&for_render, format);
            if gzip {
                compress(text)
            } else {
                Bytes::from(text)
            }
        })
        .await
        .unwrap_or_else(|e| Bytes::from(format!("# render failed: {e}\n")));
        rendered[slot] = Some(Rendered {
            generation,
            view,
            body: body.clone(),
        });
        body
    }
}

fn compress(text: String) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 16),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    match encoder
        .write_all(text.as_bytes())
        .and_then(|()| encoder.finish())
    {
        Ok(gz) => Bytes::from(gz),
        Err(_) => Bytes::from(text),
    }
}

/// Whether `Accept-Encoding` offers gzip (with a non-zero q).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

pub struct PrometheusExporter {
    config: Config,
    /// What a self-signed certificate is made for, besides `localhost` and the endpoint's
    /// address.
    node_name: String,
    shared: Arc<Shared>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    bound: Mutex<Option<SocketAddr>>,
    /// Looks at the TLS files for changes while serving.
    reloader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl PrometheusExporter {
    pub fn new(config: Config, metrics: Arc<AgentMetrics>) -> Self {
        let shared = Arc::new(Shared {
            snapshots: RwLock::default(),
            generation: AtomicU64::new(0),
            metrics,
            shim: config.shim_metric,
            rendered: tokio::sync::Mutex::new([None, None, None, None]),
        });
        PrometheusExporter {
            config,
            node_name: String::new(),
            shared,
            stop: Mutex::new(None),
            bound: Mutex::new(None),
            reloader: Mutex::new(None),
        }
    }

    /// The address the server listens on, once started (tests bind port 0).
    /// The names a self-signed certificate is made for: the node's, `localhost`, and the
    /// address listened on when it is a specific one.
    fn certificate_names(&self, addr: SocketAddr) -> Vec<String> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !self.node_name.is_empty() {
            names.push(self.node_name.clone());
        }
        if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
            names.push(addr.ip().to_string());
        }
        names
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `/metrics` document for the snapshots received so far (benchmarks, tests).
    pub fn render(&self, format: Format) -> String {
        self.shared.render(&self.shared.metrics.view(), format)
    }

    /// Takes a snapshot without the async trait (benchmarks).
    pub fn store(&self, snapshot: Arc<Snapshot>) {
        self.shared
            .snapshots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(snapshot.pipeline.clone(), snapshot);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }
}

/// Lets the request through only when the authorizer allows it; otherwise its status and a
/// one-line reason, never the data.
async fn authorize(
    State(authorizer): State<Arc<auth::Authorizer>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let verdict = authorizer.check(request.headers()).await;
    if verdict == auth::Verdict::Allowed {
        return next.run(request).await;
    }
    let reason = match verdict {
        auth::Verdict::Unauthenticated => "credentials required\n",
        auth::Verdict::Forbidden => "not allowed to get /metrics\n",
        _ => "cannot check the credentials now\n",
    };
    let mut response = (verdict.status(), reason).into_response();
    if verdict == auth::Verdict::Unauthenticated
        && let Some(challenge) = authorizer.challenge()
    {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let gzip = accepts_gzip(&headers);
    let body = shared.document(format, gzip).await;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    (response_headers, body)
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
        let authorizer = match &self.config.auth {
            Some(settings) => auth::Authorizer::from_settings(settings)
                .await
                .map_err(|e| ExportError::Failed(format!("auth: {e}")))?,
            None => auth::Authorizer::Anyone,
        };
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::new(authorizer),
                authorize,
            ))
            .route("/healthz", get(|| async { "OK" }))
            .with_state(Arc::clone(&self.shared));
        let tls = match &self.config.tls {
            Some(settings) => {
                let tls = ServerTls::load(settings, &self.certificate_names(addr))
                    .map_err(|e| ExportError::Failed(format!("TLS: {e}")))?;
                *self.reloader.lock().unwrap_or_else(|e| e.into_inner()) = tls.spawn_reloader();
                Some(tls)
            }
            None => None,
        };
        let limits = server::Limits {
            max_connections: self.config.max_connections,
            max_header_bytes: self.config.max_request_header_size,
            max_headers: self.config.max_request_headers,
            read_header_timeout: self.config.read_header_timeout,
            idle_timeout: self.config.idle_timeout,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, app, tls, limits, stop_rx));
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        info!(address = %addr, scheme, "serving /metrics and /healthz");
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
        if let Some(reloader) = self
            .reloader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            reloader.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(encoding).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_used_only_when_offered() {
        assert!(accepts_gzip(&headers("gzip")));
        assert!(accepts_gzip(&headers("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(!accepts_gzip(&headers("identity, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    fn snapshot(pipeline: &str) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            pipeline: pipeline.into(),
            node: "n1".into(),
            taken_at: std::time::SystemTime::now(),
            pods: Vec::new(),
        })
    }

    #[tokio::test]
    async fn scrapes_share_one_render_until_something_changes() {
        let metrics = Arc::new(AgentMetrics::default());
        let exporter = PrometheusExporter::new(Config::default(), Arc::clone(&metrics));
        exporter.store(snapshot("metrics"));
        let shared = &exporter.shared;

        let first = shared.document(Format::Text, false).await;
        let again = shared.document(Format::Text, false).await;
        // The very same buffer: not rendered again.
        assert_eq!(first.as_ptr(), again.as_ptr());

        // The agent's own numbers changed: rendered anew.
        metrics.cycle(std::time::Duration::from_millis(3), 0, 0);
        let after_cycle = shared.document(Format::Text, false).await;
        assert_ne!(first.as_ptr(), after_cycle.as_ptr());
        assert!(String::from_utf8_lossy(&after_cycle).contains("netshim_cycles_total 1"));

        // A new snapshot: rendered anew.
        exporter.store(snapshot("metrics"));
        let after_store = shared.document(Format::Text, false).await;
        assert_ne!(after_cycle.as_ptr(), after_store.as_ptr());

        // Each form is its own entry; gzip holds the same document.
        let gz = shared.document(Format::Text, true).await;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.as_bytes(), &after_store[..]);
        let om = shared.document(Format::OpenMetrics, false).await;
        assert!(String::from_utf8_lossy(&om).ends_with("# EOF\n"));
        let text_again = shared.document(Format::Text, false).await;
        assert_eq!(after_store.as_ptr(), text_again.as_ptr());
    }
}
