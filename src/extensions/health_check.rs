//! The `health_check` extension, with the Collector's name and defaults: an HTTP endpoint that
//! answers 200 once the agent is ready (every receiver's last cycle succeeded, every resolver
//! that syncs from elsewhere has synced) and 503 before, with each component's state in JSON.
//! `/livez` answers 200 while the process runs, for a liveness probe that must not fail just
//! because the runtime or the API server is down.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::oneshot;
use tracing::info;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::extensions::ExtensionFactory;
use crate::health::Health;

use super::{Extension, ExtensionError};

pub const TYPE: &str = "health_check";

/// Settings of the `health_check` extension.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default: `0.0.0.0:13133`.
    pub endpoint: String,
    /// The readiness path. Default: `/`.
    pub path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "0.0.0.0:13133".into(),
            path: "/".into(),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.endpoint.parse::<SocketAddr>() {
            problems.push(format!(
                "endpoint: `{}` is not an address:port ({e})",
                self.endpoint
            ));
        }
        if !self.path.starts_with('/') {
            problems.push(format!("path: `{}` must start with /", self.path));
        }
        if self.path == "/livez" {
            problems.push("path: /livez is the liveness path".into());
        }
        problems
    }
}

pub const FACTORY: ExtensionFactory = Factory::new::<Config>(
    TYPE,
    "readiness (path, default /) and liveness (/livez) over HTTP, Collector-style",
);

impl ComponentConfig for Config {
    type Component = dyn Extension;

    fn build(self, _: &BuildSite<'_>) -> Result<Box<dyn Extension>, ConfigErrors> {
        Ok(Box::new(HealthCheck {
            config: self,
            stop: Mutex::new(None),
        }))
    }
}

pub struct HealthCheck {
    config: Config,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    let components: serde_json::Map<String, serde_json::Value> = health
        .components()
        .into_iter()
        .map(|(id, c)| {
            let since = c
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            (
                id,
                serde_json::json!({"ready": c.ready, "error": c.last_error, "since": since}),
            )
        })
        .collect();
    let ready = health.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "Server available" } else { "Server not available" },
        "components": components,
    });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

#[async_trait]
impl Extension for HealthCheck {
    async fn start(&self, health: Health) -> Result<(), ExtensionError> {
        let listener = tokio::net::TcpListener::bind(&self.config.endpoint)
            .await
            .map_err(|e| {
                ExtensionError::Failed(format!("listening on {}: {e}", self.config.endpoint))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ExtensionError::Failed(e.to_string()))?;
        let app = axum::Router::new()
            .route(&self.config.path, get(ready))
            .route("/livez", get(|| async { "OK" }))
            .with_state(health);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "health endpoint stopped");
            }
        });
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
        info!(address = %addr, path = %self.config.path, "serving health checks");
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ExtensionError> {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        Ok(())
    }
}
