//! The CRI calls netshim makes, over the runtime's unix socket, each bounded by a timeout and
//! counted (the steady state must cost exactly two calls per cycle).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::proto::{
    self, ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter,
    PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest, RuntimeServiceClient,
};

/// Runtime answers larger than this are refused (1000 sandboxes with labels stay well below).
const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot reach the runtime at {socket}: {detail}")]
    Connect { socket: String, detail: String },
    #[error("{call} timed out after {after:?}")]
    Timeout { call: &'static str, after: Duration },
    #[error("{call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
}

impl CriError {
    /// The sandbox asked about no longer exists.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// The runtime does not offer the call: gRPC `UNIMPLEMENTED`, or containerd 1.6's
    /// `UNKNOWN: not implemented yet` for `GetContainerEvents`.
    pub fn is_unimplemented(&self) -> bool {
        match self {
            CriError::Call { status, .. } => {
                status.code() == tonic::Code::Unimplemented
                    || (status.code() == tonic::Code::Unknown
                        && status.message().contains("not implemented"))
            }
            _ => false,
        }
    }

    /// The connection itself is in doubt: drop it and connect anew next time.
    pub fn is_transport(&self) -> bool {
        match self {
            CriError::Connect { .. } | CriError::Timeout { .. } => true,
            CriError::Call { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
            ),
        }
    }
}

/// A connection to one runtime.
#[derive(Clone)]
pub struct CriClient {
    inner: RuntimeServiceClient<Channel>,
    timeout: Duration,
    calls: Arc<AtomicU64>,
    socket: PathBuf,
}

impl CriClient {
    /// Prepares a connection to `socket`; it is made on the first call. `calls` counts every
    /// call made.
    pub fn new(
        socket: PathBuf,
        timeout: Duration,
        calls: Arc<AtomicU64>,
    ) -> Result<Self, CriError> {
        let connect_err = |detail: String| CriError::Connect {
            socket: socket.display().to_string(),
            detail,
        };
        // The URI is required by tonic but unused: the connector below dials the socket.
        let endpoint = Endpoint::try_from("http://[::1]:50051")
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(timeout);
        let path = socket.clone();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }));
        Ok(CriClient {
            inner: RuntimeServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
            timeout,
            calls,
            socket,
        })
    }

    pub fn socket(&self) -> &PathBuf {
        &self.socket
    }

    /// The runtime's name and versions (asked once per connection, for the log).
    pub async fn version(&mut self) -> Result<proto::VersionResponse, CriError> {
        let mut client = self.inner.clone();
        let request = proto::VersionRequest {
            version: "v1".into(),
        };
        self.call("Version", client.version(request)).await
    }

    /// Sandboxes in the ready state.
    pub async fn ready_sandboxes(&mut self) -> Result<Vec<proto::PodSandbox>, CriError> {
        let request = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxReady as i32,
                }),
                ..PodSandboxFilter::default()
            }),
        };
        let mut client = self.inner.clone();
        self.call("ListPodSandbox", client.list_pod_sandbox(request))
            .await
            .map(|r| r.items)
    }

    /// Every container the runtime knows.
    pub async fn containers(&mut self) -> Result<Vec<proto::Container>, CriError> {
        let request = ListContainersRequest {
            filter: Some(ContainerFilter::default()),
        };
        let mut client = self.inner.clone();
        self.call("ListContainers", client.list_containers(request))
            .await
            .map(|r| r.containers)
    }

    /// One sandbox's status, with the runtime's verbose info.
    pub async fn sandbox_status(
        &mut self,
        id: &str,
    ) -> Result<proto::PodSandboxStatusResponse, CriError> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let mut client = self.inner.clone();
        self.call("PodSandboxStatus", client.pod_sandbox_status(request))
            .await
    }

    /// Subscribes to the runtime's container events. Unlike the other calls this one has no
    /// timeout: a runtime may answer only with its first event.
    pub async fn container_events(
        &self,
        request: proto::GetEventsRequest,
    ) -> Result<tonic::Streaming<proto::ContainerEventResponse>, CriError> {
        let mut client = self.inner.clone();
        match client.get_container_events(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => Err(CriError::Connect {
                socket: self.socket.display().to_string(),
                detail: format!("GetContainerEvents: {}", status.message()),
            }),
            Err(status) => Err(CriError::Call {
                call: "GetContainerEvents",
                status: Box::new(status),
            }),
        }
    }

    async fn call<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CriError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(CriError::Timeout {
                call,
                after: self.timeout,
            }),
            // The socket could not be dialled (missing, refused): say where.
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                Err(CriError::Connect {
                    socket: self.socket.display().to_string(),
                    detail: format!("{call}: {}", status.message()),
                })
            }
            Ok(Err(status)) => Err(CriError::Call {
                call,
                status: Box::new(status),
            }),
            Ok(Ok(response)) => Ok(response.into_inner()),
        }
    }
}
