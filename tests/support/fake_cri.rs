//! A fake container runtime: the CRI v1 calls netshim makes, served by tonic on a unix socket,
//! with a pod list the test controls and a `GetContainerEvents` stream the test feeds (and can
//! end, as a restarting runtime does). It counts the lists and subscriptions it is asked for, so
//! a test can tell what the agent did without timing it.
//!
//! Fake because no runtime that streams container events can be installed here: Debian 12 has
//! containerd 1.6 (the stream came with 1.7) and no CRI-O. The sandboxes it lists point at real
//! network namespaces made by the test, so everything after the CRI answers is real.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::BoxStream;
use netshim::receivers::cri::proto::*;
use tokio::sync::{broadcast, watch};

use super::cri_api::{RuntimeService, RuntimeServiceServer};

/// One pod the fake runtime lists, in the ready state.
#[derive(Clone, Debug)]
pub struct FakePod {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The network namespace's bind mount, given in the verbose status as containerd does.
    pub netns: PathBuf,
}

#[derive(Clone)]
struct Runtime {
    pods: Arc<Mutex<Vec<FakePod>>>,
    events: broadcast::Sender<ContainerEventResponse>,
    /// Bumped to end every open event stream.
    close: Arc<watch::Sender<u64>>,
    /// When each `ListPodSandbox` call came, in order.
    lists: Arc<Mutex<Vec<Instant>>>,
    /// `GetContainerEvents` calls so far.
    subscriptions: Arc<AtomicU64>,
}

/// A running fake runtime; stops when dropped.
pub struct FakeCri {
    pub socket: PathBuf,
    runtime: Runtime,
    server: tokio::task::JoinHandle<()>,
}

impl FakeCri {
    /// Serves on `socket` (replaced if it exists).
    pub async fn start(socket: &Path) -> Self {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).expect("bind the fake CRI socket");
        let (events, _) = broadcast::channel(64);
        let runtime = Runtime {
            pods: Arc::default(),
            events,
            close: Arc::new(watch::channel(0).0),
            lists: Arc::default(),
            subscriptions: Arc::default(),
        };
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let conn = listener.accept().await.map(|(stream, _)| stream);
            Some((conn, listener))
        });
        let service = RuntimeServiceServer::new(runtime.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeCri {
            socket: socket.to_path_buf(),
            runtime,
            server,
        }
    }

    /// Lists `pod` from now on (sends no event).
    pub fn add(&self, pod: FakePod) {
        self.runtime.pods.lock().unwrap().push(pod);
    }

    /// Stops listing the pod `id` (sends no event).
    pub fn remove(&self, id: &str) {
        self.runtime.pods.lock().unwrap().retain(|p| p.id != id);
    }

    /// Streams an event about `id` to every subscriber; returns how many there were.
    pub fn event(&self, id: &str, kind: ContainerEventType) -> usize {
        let event = ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: 0,
            pod_sandbox_status: None,
            containers_statuses: Vec::new(),
        };
        self.runtime.events.send(event).unwrap_or(0)
    }

    /// Subscribers to the event stream right now.
    pub fn subscribers(&self) -> usize {
        self.runtime.events.receiver_count()
    }

    /// Ends every open event stream cleanly (as a runtime shutting down does); sends no event.
    pub fn close_event_streams(&self) {
        self.runtime.close.send_modify(|n| *n += 1);
    }

    /// How many times the runtime was asked to list its sandboxes (each scan of the agent asks
    /// once).
    pub fn lists(&self) -> usize {
        self.runtime.lists.lock().unwrap().len()
    }

    /// When each list call came, in order.
    pub fn list_times(&self) -> Vec<Instant> {
        self.runtime.lists.lock().unwrap().clone()
    }

    /// How many times a client subscribed to the event stream.
    pub fn subscriptions(&self) -> u64 {
        self.runtime.subscriptions.load(Ordering::SeqCst)
    }
}

impl Drop for FakeCri {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// The calls the agent makes; the others answer `UNIMPLEMENTED` (the generated defaults).
#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _: tonic::Request<VersionRequest>,
    ) -> Result<tonic::Response<VersionResponse>, tonic::Status> {
        Ok(tonic::Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake-cri".into(),
            runtime_version: "0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        _: tonic::Request<ListPodSandboxRequest>,
    ) -> Result<tonic::Response<ListPodSandboxResponse>, tonic::Status> {
        self.lists.lock().unwrap().push(Instant::now());
        let pods = self.pods.lock().unwrap();
        Ok(tonic::Response::new(ListPodSandboxResponse {
            items: pods.iter().map(listed).collect(),
        }))
    }

    async fn list_containers(
        &self,
        _: tonic::Request<ListContainersRequest>,
    ) -> Result<tonic::Response<ListContainersResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListContainersResponse::default()))
    }

    async fn pod_sandbox_status(
        &self,
        request: tonic::Request<PodSandboxStatusRequest>,
    ) -> Result<tonic::Response<PodSandboxStatusResponse>, tonic::Status> {
        let id = request.into_inner().pod_sandbox_id;
        let pods = self.pods.lock().unwrap();
        Ok(tonic::Response::new(
            pods.iter()
                .find(|p| p.id == id)
                .map(status)
                .unwrap_or_default(),
        ))
    }

    async fn get_container_events(
        &self,
        _: tonic::Request<GetEventsRequest>,
    ) -> Result<
        tonic::Response<BoxStream<'static, Result<ContainerEventResponse, tonic::Status>>>,
        tonic::Status,
    > {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        // Both receivers live in the stream's state: ending the stream drops them, so
        // `subscribers()` counts only open streams.
        let state = (self.events.subscribe(), self.close.subscribe());
        let events = futures::stream::unfold(state, |(mut rx, mut close)| async move {
            loop {
                tokio::select! {
                    got = rx.recv() => match got {
                        Ok(event) => return Some((Ok(event), (rx, close))),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    // `close_event_streams` (or the runtime gone).
                    _ = close.changed() => return None,
                }
            }
        })
        .boxed();
        Ok(tonic::Response::new(events))
    }
}

fn metadata(pod: &FakePod) -> PodSandboxMetadata {
    PodSandboxMetadata {
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        namespace: pod.namespace.clone(),
        attempt: 0,
    }
}

fn listed(pod: &FakePod) -> PodSandbox {
    PodSandbox {
        id: pod.id.clone(),
        metadata: Some(metadata(pod)),
        state: PodSandboxState::SandboxReady as i32,
        ..PodSandbox::default()
    }
}

/// containerd's shape of the verbose status: the netns path in the runtime spec.
fn status(pod: &FakePod) -> PodSandboxStatusResponse {
    let info = serde_json::json!({
        "runtimeSpec": {"linux": {"namespaces": [
            {"type": "network", "path": pod.netns.display().to_string()}
        ]}}
    });
    PodSandboxStatusResponse {
        status: Some(PodSandboxStatus {
            id: pod.id.clone(),
            metadata: Some(metadata(pod)),
            state: PodSandboxState::SandboxReady as i32,
            ..PodSandboxStatus::default()
        }),
        info: HashMap::from([("info".to_string(), info.to_string())]),
        ..PodSandboxStatusResponse::default()
    }
}
