//! The `cri` receiver: pods and their network namespaces from the container runtime, over the
//! CRI v1 API (`runtime.v1.RuntimeService`) on the runtime's unix socket. containerd, CRI-O and
//! cri-dockerd all serve it.
//!
//! Each cycle makes two calls, `ListPodSandbox` (ready sandboxes) and `ListContainers`, whatever
//! the number of pods; `PodSandboxStatus(verbose)` is asked once per sandbox, when it is first
//! seen, and cached until the sandbox is gone. Where the runtime streams container events
//! (`GetContainerEvents`), each one makes a scan run early (see `events`).

mod client;
mod endpoint;
pub mod events;
pub mod proto;
mod sandbox;
pub mod verbose;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use tracing::{info, warn};

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::{Sandbox, Sandboxes};
use crate::receivers::ReceiverFactory;

use super::{Receiver, ReceiverError};
pub use client::{CriClient, CriError};
pub use endpoint::{DEFAULT_SOCKETS, Endpoint, under_root};
use sandbox::{SandboxDetail, build_sandboxes};

pub const TYPE: &str = "cri";

/// New sandboxes' statuses asked at once (at start-up every sandbox is new).
const STATUS_CONCURRENCY: usize = 8;

/// Settings of the `cri` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `auto` (default): `runtime-endpoint` of `/etc/crictl.yaml`, else the first existing of
    /// containerd's, CRI-O's and cri-dockerd's default sockets. Or `unix:///path`, or a path.
    pub endpoint: String,
    /// Where the host's `/` is mounted when the agent runs in a container (e.g. `/host`);
    /// prefixed to the socket and to namespace paths. Default: `/`.
    pub host_root: PathBuf,
    /// Limit on each CRI call. Default: 2s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often to list sandboxes. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub collection_interval: Duration,
    /// Follow the runtime's container events (`GetContainerEvents`) to scan as soon as a sandbox
    /// starts or stops. Default: true. containerd 1.7 hands each event to only one of its
    /// subscribers: on a 1.7 node whose kubelet runs the `EventedPLEG` feature gate, set it to
    /// false so the agent takes no events from the kubelet (2.x sends every event to each).
    pub container_events: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "auto".into(),
            host_root: "/".into(),
            timeout: Duration::from_secs(2),
            collection_interval: Duration::from_secs(10),
            container_events: true,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = Endpoint::parse(&self.endpoint) {
            problems.push(e);
        }
        if !self.host_root.is_absolute() {
            problems.push(format!(
                "host_root: `{}` must be an absolute path",
                self.host_root.display()
            ));
        }
        if self.timeout < Duration::from_millis(10) {
            problems.push("timeout: must be at least 10ms".into());
        }
        if self.collection_interval < Duration::from_millis(100) {
            problems.push("collection_interval: must be at least 100ms".into());
        }
        problems
    }
}

pub const FACTORY: ReceiverFactory = Factory::new::<Config>(
    TYPE,
    "pods and their network namespaces from the container runtime (CRI v1)",
);

impl ComponentConfig for Config {
    type Component = dyn Receiver;

    fn build(self, site: &BuildSite<'_>) -> Result<Box<dyn Receiver>, ConfigErrors> {
        // validate() has checked it parses.
        let endpoint = Endpoint::parse(&self.endpoint).map_err(|e| site.error(e))?;
        Ok(Box::new(CriReceiver::new(self, endpoint)))
    }
}

pub struct CriReceiver {
    config: Config,
    endpoint: Endpoint,
    calls: Arc<AtomicU64>,
    events: AtomicU64,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    client: Option<CriClient>,
    /// What `PodSandboxStatus` said, by sandbox id, for the sandboxes still listed.
    details: HashMap<String, SandboxDetail>,
}

impl CriReceiver {
    pub fn new(config: Config, endpoint: Endpoint) -> Self {
        CriReceiver {
            config,
            endpoint,
            calls: Arc::default(),
            events: AtomicU64::new(0),
            state: tokio::sync::Mutex::default(),
        }
    }

    /// How many CRI calls this receiver has made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// How many container events the runtime has streamed to this receiver.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// A client, connecting (and finding the socket, for `auto`) when there is none.
    async fn client(&self, state: &mut State) -> Result<CriClient, CriError> {
        if let Some(c) = &state.client {
            return Ok(c.clone());
        }
        let socket = self
            .endpoint
            .resolve(&self.config.host_root)
            .map_err(|detail| CriError::Connect {
                socket: self.config.endpoint.clone(),
                detail,
            })?;
        let mut client = CriClient::new(socket, self.config.timeout, Arc::clone(&self.calls))?;
        let version = client.version().await?;
        info!(
            socket = %client.socket().display(),
            runtime = %version.runtime_name,
            version = %version.runtime_version,
            api = %version.runtime_api_version,
            "connected to the container runtime"
        );
        state.client = Some(client.clone());
        Ok(client)
    }

    async fn scan(&self, state: &mut State) -> Result<Vec<Sandbox>, CriError> {
        let mut client = self.client(state).await?;
        let sandboxes = client.ready_sandboxes().await?;
        let containers = client.containers().await?;

        let listed: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        state.details.retain(|id, _| listed.contains(id.as_str()));
        let new: Vec<String> = sandboxes
            .iter()
            .filter(|s| !state.details.contains_key(&s.id))
            .map(|s| s.id.clone())
            .collect();
        let statuses: Vec<(String, Result<proto::PodSandboxStatusResponse, CriError>)> =
            futures::stream::iter(new)
                .map(|id| {
                    let mut client = client.clone();
                    async move {
                        let status = client.sandbox_status(&id).await;
                        (id, status)
                    }
                })
                .buffer_unordered(STATUS_CONCURRENCY)
                .collect()
                .await;
        for (id, status) in statuses {
            match status {
                Ok(status) => {
                    let detail = SandboxDetail::from_status(&id, status);
                    state.details.insert(id, detail);
                }
                // Removed between the list and the status: next cycle's list will not have it.
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_transport() => return Err(e),
                Err(e) => warn!(
                    sandbox = %id, error = %e,
                    "sandbox status failed; reported without its network namespace, asked again next cycle"
                ),
            }
        }
        Ok(build_sandboxes(
            &sandboxes,
            &containers,
            &state.details,
            &self.config.host_root,
        ))
    }
}

#[async_trait]
impl Receiver for CriReceiver {
    async fn collect(&self) -> Result<Sandboxes, ReceiverError> {
        let mut state = self.state.lock().await;
        let result = self.scan(&mut state).await;
        if result.as_ref().is_err_and(CriError::is_transport) {
            // The runtime may be restarting, or its socket may have moved: connect anew.
            state.client = None;
        }
        result
            .map(Arc::new)
            .map_err(|e| ReceiverError::Scan(e.to_string()))
    }

    fn collection_interval(&self) -> Duration {
        self.config.collection_interval
    }

    async fn follow_events(&self, changed: &(dyn Fn() + Send + Sync)) {
        self.follow_events_forever(changed).await;
    }
}
