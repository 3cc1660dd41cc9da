//! The Prometheus exporter served in the test process, on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use netshim::exporters::Exporter;
use netshim::exporters::prometheus::{Config, PrometheusExporter};
use netshim::self_metrics::AgentMetrics;

/// Starts the exporter with `config` on `127.0.0.1` (a port the kernel picks) on `runtime`
/// and returns its address. It serves for as long as the runtime lives.
pub fn start_prometheus(runtime: &tokio::runtime::Runtime, config: Config) -> SocketAddr {
    let exporter = Arc::new(PrometheusExporter::new(
        Config {
            endpoint: "127.0.0.1:0".into(),
            ..config
        },
        Arc::new(AgentMetrics::default()),
    ));
    runtime.block_on(exporter.start()).expect("start");
    let addr = exporter.local_addr().expect("bound");
    // Its serving tasks hold what they need; nothing stops it before the runtime goes.
    std::mem::forget(exporter);
    addr
}
