//! Wire types and a small gRPC client for the part of the Kubernetes CRI v1 API
//! (`runtime.v1.RuntimeService`) that netshim talks to.
//!
//! Everything here is written by hand from the public CRI v1 message and field numbers, so the
//! build needs neither `protoc` nor a build script. Only the fields netshim reads or sends are
//! declared; prost skips unknown fields when decoding, so a runtime that sends more is fine.
//! Names follow what `prost-build` would generate (`PodIP` becomes [`PodIp`], enum values lose
//! their SCREAMING_CASE), and every field keeps the tag number it has in the real protocol.

use std::collections::HashMap;

use tonic::codegen::{Body, Bytes, GrpcMethod, StdError, http};

/// Fully qualified name of the CRI runtime service.
pub const RUNTIME_SERVICE: &str = "runtime.v1.RuntimeService";

// ---------------------------------------------------------------------------------------------
// Version
// ---------------------------------------------------------------------------------------------

/// Asks the runtime which versions it speaks.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VersionRequest {
    /// CRI API version of the caller.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// Versions reported by the runtime.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VersionResponse {
    /// CRI API version the runtime answers with.
    #[prost(string, tag = "1")]
    pub version: String,
    /// Runtime name, e.g. `containerd`.
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// Runtime release (semver).
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// CRI API version implemented by the runtime, e.g. `v1`.
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

// ---------------------------------------------------------------------------------------------
// Pod sandboxes
// ---------------------------------------------------------------------------------------------

/// Identity of the pod a sandbox belongs to.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxMetadata {
    /// Pod name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Pod UID.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// Pod namespace.
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// How many times this sandbox has been (re)created.
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// Lifecycle state of a pod sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    /// `SANDBOX_READY`: the sandbox is up.
    SandboxReady = 0,
    /// `SANDBOX_NOTREADY`: the sandbox is stopped or failed.
    SandboxNotready = 1,
}

impl PodSandboxState {
    /// The value's name as written in the protocol definition.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::SandboxReady => "SANDBOX_READY",
            Self::SandboxNotready => "SANDBOX_NOTREADY",
        }
    }
}

/// Wrapper that makes a sandbox state optional inside a filter.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStateValue {
    /// The wrapped state.
    #[prost(enumeration = "PodSandboxState", tag = "1")]
    pub state: i32,
}

/// Narrows a sandbox listing; set fields are ANDed.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxFilter {
    /// Exact sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Required state, if any.
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
    /// Labels the sandbox must carry.
    #[prost(map = "string, string", tag = "3")]
    pub label_selector: HashMap<String, String>,
}

/// Request of `ListPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodSandboxRequest {
    /// Optional filter; `None` lists every sandbox.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// Summary of one sandbox as returned by `ListPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandbox {
    /// Sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Current state.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Sandbox labels.
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
    /// Sandbox annotations.
    #[prost(map = "string, string", tag = "6")]
    pub annotations: HashMap<String, String>,
    /// Runtime handler (runtime class) the sandbox runs under.
    #[prost(string, tag = "7")]
    pub runtime_handler: String,
}

/// Response of `ListPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListPodSandboxResponse {
    /// The sandboxes that matched.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// How one Linux namespace of a sandbox or container is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum NamespaceMode {
    /// `POD`: shared by all containers of the pod.
    Pod = 0,
    /// `CONTAINER`: private to one container.
    Container = 1,
    /// `NODE`: the host's namespace (e.g. `hostNetwork: true`).
    Node = 2,
    /// `TARGET`: joins the namespace of the container named by `target_id`.
    Target = 3,
}

impl NamespaceMode {
    /// The value's name as written in the protocol definition.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::Pod => "POD",
            Self::Container => "CONTAINER",
            Self::Node => "NODE",
            Self::Target => "TARGET",
        }
    }
}

/// Namespace modes of a sandbox or container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct NamespaceOption {
    /// Network namespace mode.
    #[prost(enumeration = "NamespaceMode", tag = "1")]
    pub network: i32,
    /// PID namespace mode.
    #[prost(enumeration = "NamespaceMode", tag = "2")]
    pub pid: i32,
    /// IPC namespace mode.
    #[prost(enumeration = "NamespaceMode", tag = "3")]
    pub ipc: i32,
    /// Container whose namespaces are joined when a mode is `TARGET`.
    #[prost(string, tag = "4")]
    pub target_id: String,
}

/// Namespace information inside [`LinuxPodSandboxStatus`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Namespace {
    /// The sandbox's namespace modes.
    #[prost(message, optional, tag = "2")]
    pub options: Option<NamespaceOption>,
}

/// Linux-specific part of a sandbox status.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxPodSandboxStatus {
    /// Namespace information.
    #[prost(message, optional, tag = "1")]
    pub namespaces: Option<Namespace>,
}

/// One additional pod IP.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodIp {
    /// IPv4 or IPv6 address in text form.
    #[prost(string, tag = "1")]
    pub ip: String,
}

/// Network status of a sandbox, when the runtime manages its network.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxNetworkStatus {
    /// Primary pod IP.
    #[prost(string, tag = "1")]
    pub ip: String,
    /// Further pod IPs (e.g. the other address family), excluding `ip`.
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// Full status of one sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatus {
    /// Sandbox ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Current state.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Network status, if the runtime handles the network.
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
    /// Linux-specific status.
    #[prost(message, optional, tag = "6")]
    pub linux: Option<LinuxPodSandboxStatus>,
    /// Sandbox labels.
    #[prost(map = "string, string", tag = "7")]
    pub labels: HashMap<String, String>,
    /// Sandbox annotations.
    #[prost(map = "string, string", tag = "8")]
    pub annotations: HashMap<String, String>,
    /// Runtime handler (runtime class) the sandbox runs under.
    #[prost(string, tag = "9")]
    pub runtime_handler: String,
}

/// Request of `PodSandboxStatus`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatusRequest {
    /// Sandbox to describe.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Ask for the runtime-specific `info` map as well.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// Response of `PodSandboxStatus`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxStatusResponse {
    /// The sandbox status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    /// Runtime-specific details (values are usually JSON); filled only when verbose.
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
    /// When the status was taken, nanoseconds since the Unix epoch (0 if not reported).
    #[prost(int64, tag = "4")]
    pub timestamp: i64,
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

/// Identity of a container within its sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerMetadata {
    /// Container name from the pod spec.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many times this container has been (re)created.
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// Image reference of a container.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ImageSpec {
    /// Image ID or reference.
    #[prost(string, tag = "1")]
    pub image: String,
    /// Image annotations.
    #[prost(map = "string, string", tag = "2")]
    pub annotations: HashMap<String, String>,
}

/// Lifecycle state of a container.
#[allow(
    clippy::enum_variant_names,
    reason = "variant names mirror the CRI values, as prost-build would name them"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    /// `CONTAINER_CREATED`: created, not yet started.
    ContainerCreated = 0,
    /// `CONTAINER_RUNNING`: running.
    ContainerRunning = 1,
    /// `CONTAINER_EXITED`: exited.
    ContainerExited = 2,
    /// `CONTAINER_UNKNOWN`: the runtime cannot tell.
    ContainerUnknown = 3,
}

impl ContainerState {
    /// The value's name as written in the protocol definition.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::ContainerCreated => "CONTAINER_CREATED",
            Self::ContainerRunning => "CONTAINER_RUNNING",
            Self::ContainerExited => "CONTAINER_EXITED",
            Self::ContainerUnknown => "CONTAINER_UNKNOWN",
        }
    }
}

/// Wrapper that makes a container state optional inside a filter.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerStateValue {
    /// The wrapped state.
    #[prost(enumeration = "ContainerState", tag = "1")]
    pub state: i32,
}

/// Narrows a container listing; set fields are ANDed.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerFilter {
    /// Exact container ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Required state, if any.
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerStateValue>,
    /// Sandbox the container must belong to.
    #[prost(string, tag = "3")]
    pub pod_sandbox_id: String,
    /// Labels the container must carry.
    #[prost(map = "string, string", tag = "4")]
    pub label_selector: HashMap<String, String>,
}

/// Request of `ListContainers`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListContainersRequest {
    /// Optional filter; `None` lists every container.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

/// Summary of one container as returned by `ListContainers`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Container {
    /// Container ID.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Sandbox the container belongs to.
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// Container identity.
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    /// Image the container was created from.
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    /// Digested image reference.
    #[prost(string, tag = "5")]
    pub image_ref: String,
    /// Current state.
    #[prost(enumeration = "ContainerState", tag = "6")]
    pub state: i32,
    /// Creation time, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub created_at: i64,
    /// Container labels.
    #[prost(map = "string, string", tag = "8")]
    pub labels: HashMap<String, String>,
    /// Container annotations.
    #[prost(map = "string, string", tag = "9")]
    pub annotations: HashMap<String, String>,
}

/// Response of `ListContainers`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListContainersResponse {
    /// The containers that matched.
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

// ---------------------------------------------------------------------------------------------
// Container events
// ---------------------------------------------------------------------------------------------

/// Request of `GetContainerEvents` (no parameters).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GetEventsRequest {}

/// Kind of a container lifecycle event.
#[allow(
    clippy::enum_variant_names,
    reason = "variant names mirror the CRI values, as prost-build would name them"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum ContainerEventType {
    /// `CONTAINER_CREATED_EVENT`.
    ContainerCreatedEvent = 0,
    /// `CONTAINER_STARTED_EVENT`.
    ContainerStartedEvent = 1,
    /// `CONTAINER_STOPPED_EVENT`.
    ContainerStoppedEvent = 2,
    /// `CONTAINER_DELETED_EVENT`.
    ContainerDeletedEvent = 3,
}

impl ContainerEventType {
    /// The value's name as written in the protocol definition.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Self::ContainerCreatedEvent => "CONTAINER_CREATED_EVENT",
            Self::ContainerStartedEvent => "CONTAINER_STARTED_EVENT",
            Self::ContainerStoppedEvent => "CONTAINER_STOPPED_EVENT",
            Self::ContainerDeletedEvent => "CONTAINER_DELETED_EVENT",
        }
    }
}

/// One event from the `GetContainerEvents` stream.
///
/// Sandbox creation and removal arrive as events whose `container_id` is the sandbox ID.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ContainerEventResponse {
    /// Container (or sandbox) the event is about.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// What happened.
    #[prost(enumeration = "ContainerEventType", tag = "2")]
    pub container_event_type: i32,
    /// When it happened, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "3")]
    pub created_at: i64,
    /// Status of the sandbox concerned, if the runtime includes it.
    #[prost(message, optional, tag = "4")]
    pub pod_sandbox_status: Option<PodSandboxStatus>,
}

// ---------------------------------------------------------------------------------------------
// Sandbox lifecycle (used by the end-to-end tests)
// ---------------------------------------------------------------------------------------------

/// Linux security settings of a sandbox (only the namespace modes are declared here).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxSandboxSecurityContext {
    /// Namespace modes of the sandbox.
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

/// Linux-specific sandbox configuration.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct LinuxPodSandboxConfig {
    /// Parent cgroup (cgroupfs syntax).
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    /// Security settings.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

/// Configuration for creating a sandbox.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PodSandboxConfig {
    /// Pod identity; the runtime uses it to name the sandbox.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Hostname inside the sandbox.
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// Host directory for container logs.
    #[prost(string, tag = "3")]
    pub log_directory: String,
    /// Sandbox labels.
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    /// Sandbox annotations.
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    /// Linux-specific configuration.
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

/// Request of `RunPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RunPodSandboxRequest {
    /// Sandbox configuration.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    /// Runtime handler to use; empty selects the default.
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

/// Response of `RunPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RunPodSandboxResponse {
    /// ID of the new sandbox.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Request of `StopPodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopPodSandboxRequest {
    /// Sandbox to stop.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Response of `StopPodSandbox` (empty).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StopPodSandboxResponse {}

/// Request of `RemovePodSandbox`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemovePodSandboxRequest {
    /// Sandbox to remove.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// Response of `RemovePodSandbox` (empty).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RemovePodSandboxResponse {}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Typed client for `runtime.v1.RuntimeService`, built the same way as tonic's generated clients.
///
/// `T` is any gRPC transport, typically a [`tonic::transport::Channel`] connected to the
/// runtime's Unix socket.
#[derive(Debug, Clone)]
pub struct RuntimeServiceClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> RuntimeServiceClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// Wraps a transport.
    pub fn new(inner: T) -> Self {
        Self {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// Caps the size of a decoded response message (tonic's default is 4 MiB).
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.inner = self.inner.max_decoding_message_size(limit);
        self
    }

    /// Waits until the transport can take a request and tags the request with its method.
    async fn prepare<M>(
        &mut self,
        message: M,
        method: &'static str,
    ) -> Result<tonic::Request<M>, tonic::Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {}", e.into())))?;
        let mut request = tonic::Request::new(message);
        request
            .extensions_mut()
            .insert(GrpcMethod::new(RUNTIME_SERVICE, method));
        Ok(request)
    }

    /// One unary call.
    async fn unary<Req, Resp>(
        &mut self,
        message: Req,
        method: &'static str,
        path: &'static str,
    ) -> Result<tonic::Response<Resp>, tonic::Status>
    where
        Req: ::prost::Message + Send + Sync + 'static,
        Resp: ::prost::Message + Default + Send + Sync + 'static,
    {
        let request = self.prepare(message, method).await?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        self.inner.unary(request, path, codec).await
    }

    /// `Version`: runtime name and versions.
    pub async fn version(
        &mut self,
        request: VersionRequest,
    ) -> Result<tonic::Response<VersionResponse>, tonic::Status> {
        self.unary(request, "Version", "/runtime.v1.RuntimeService/Version")
            .await
    }

    /// `ListPodSandbox`: sandboxes matching the filter.
    pub async fn list_pod_sandbox(
        &mut self,
        request: ListPodSandboxRequest,
    ) -> Result<tonic::Response<ListPodSandboxResponse>, tonic::Status> {
        self.unary(
            request,
            "ListPodSandbox",
            "/runtime.v1.RuntimeService/ListPodSandbox",
        )
        .await
    }

    /// `PodSandboxStatus`: full status of one sandbox.
    pub async fn pod_sandbox_status(
        &mut self,
        request: PodSandboxStatusRequest,
    ) -> Result<tonic::Response<PodSandboxStatusResponse>, tonic::Status> {
        self.unary(
            request,
            "PodSandboxStatus",
            "/runtime.v1.RuntimeService/PodSandboxStatus",
        )
        .await
    }

    /// `ListContainers`: containers matching the filter.
    pub async fn list_containers(
        &mut self,
        request: ListContainersRequest,
    ) -> Result<tonic::Response<ListContainersResponse>, tonic::Status> {
        self.unary(
            request,
            "ListContainers",
            "/runtime.v1.RuntimeService/ListContainers",
        )
        .await
    }

    /// `GetContainerEvents`: a stream of container and sandbox lifecycle events.
    pub async fn get_container_events(
        &mut self,
        request: GetEventsRequest,
    ) -> Result<tonic::Response<tonic::Streaming<ContainerEventResponse>>, tonic::Status> {
        let request = self.prepare(request, "GetContainerEvents").await?;
        let codec = tonic_prost::ProstCodec::<GetEventsRequest, ContainerEventResponse>::default();
        let path =
            http::uri::PathAndQuery::from_static("/runtime.v1.RuntimeService/GetContainerEvents");
        self.inner.server_streaming(request, path, codec).await
    }

    /// `RunPodSandbox`: creates and starts a sandbox.
    pub async fn run_pod_sandbox(
        &mut self,
        request: RunPodSandboxRequest,
    ) -> Result<tonic::Response<RunPodSandboxResponse>, tonic::Status> {
        self.unary(
            request,
            "RunPodSandbox",
            "/runtime.v1.RuntimeService/RunPodSandbox",
        )
        .await
    }

    /// `StopPodSandbox`: stops a sandbox and releases its network.
    pub async fn stop_pod_sandbox(
        &mut self,
        request: StopPodSandboxRequest,
    ) -> Result<tonic::Response<StopPodSandboxResponse>, tonic::Status> {
        self.unary(
            request,
            "StopPodSandbox",
            "/runtime.v1.RuntimeService/StopPodSandbox",
        )
        .await
    }

    /// `RemovePodSandbox`: removes a stopped sandbox.
    pub async fn remove_pod_sandbox(
        &mut self,
        request: RemovePodSandboxRequest,
    ) -> Result<tonic::Response<RemovePodSandboxResponse>, tonic::Status> {
        self.unary(
            request,
            "RemovePodSandbox",
            "/runtime.v1.RuntimeService/RemovePodSandbox",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::poll_fn;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use prost::Message;

    use super::*;

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
        let bytes = message.encode_to_vec();
        let decoded = M::decode(bytes.as_slice()).expect("decode");
        assert_eq!(&decoded, message);
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn metadata() -> PodSandboxMetadata {
        PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "shop".into(),
            attempt: 2,
        }
    }

    fn sandbox_status() -> PodSandboxStatus {
        PodSandboxStatus {
            id: "sb1".into(),
            metadata: Some(metadata()),
            state: PodSandboxState::SandboxNotready as i32,
            created_at: 1_700_000_000_000_000_000,
            network: Some(PodSandboxNetworkStatus {
                ip: "10.0.0.5".into(),
                additional_ips: vec![PodIp {
                    ip: "fd00::5".into(),
                }],
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        target_id: "c9".into(),
                    }),
                }),
            }),
            labels: map(&[("app", "web")]),
            annotations: map(&[("a", "b")]),
            runtime_handler: "runc".into(),
        }
    }

    #[test]
    fn pod_sandbox_metadata_tags() {
        let wire = [
            0x0a, 0x03, b'w', b'e', b'b', // 1: name
            0x12, 0x02, b'u', b'1', // 2: uid
            0x1a, 0x04, b's', b'h', b'o', b'p', // 3: namespace
            0x20, 0x02, // 4: attempt
        ];
        let decoded = PodSandboxMetadata::decode(wire.as_slice()).expect("decode");
        assert_eq!(decoded, metadata());
        assert_eq!(metadata().encode_to_vec(), wire);
    }

    #[test]
    fn namespace_option_tags() {
        let decoded = NamespaceOption::decode([0x08, 0x02].as_slice()).expect("decode");
        assert_eq!(decoded.network(), NamespaceMode::Node);
        assert_eq!(decoded.pid(), NamespaceMode::Pod);
        assert_eq!(decoded.ipc(), NamespaceMode::Pod);
        assert!(decoded.target_id.is_empty());
    }

    #[test]
    fn namespace_options_sit_at_tag_two() {
        // Namespace.options is field 2; field 1 is not used by CRI v1.
        let namespace = Namespace {
            options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
        };
        assert_eq!(namespace.encode_to_vec(), [0x12, 0x02, 0x08, 0x02]);
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // Metadata followed by an unknown field 15 (string "x") still decodes.
        let mut wire = metadata().encode_to_vec();
        wire.extend_from_slice(&[0x7a, 0x01, b'x']);
        assert_eq!(
            PodSandboxMetadata::decode(wire.as_slice()).expect("decode"),
            metadata()
        );
    }

    #[test]
    fn version_round_trip() {
        round_trip(&VersionRequest {
            version: "v1".into(),
        });
        round_trip(&VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "v2.0.0".into(),
            runtime_api_version: "v1".into(),
        });
    }

    #[test]
    fn sandbox_messages_round_trip() {
        round_trip(&ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: "sb1".into(),
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxReady as i32,
                }),
                label_selector: map(&[("k", "v")]),
            }),
        });
        round_trip(&ListPodSandboxResponse {
            items: vec![PodSandbox {
                id: "sb1".into(),
                metadata: Some(metadata()),
                state: PodSandboxState::SandboxReady as i32,
                created_at: 42,
                labels: map(&[("app", "web")]),
                annotations: map(&[("x", "y")]),
                runtime_handler: "runc".into(),
            }],
        });
        round_trip(&PodSandboxStatusRequest {
            pod_sandbox_id: "sb1".into(),
            verbose: true,
        });
        let response = PodSandboxStatusResponse {
            status: Some(sandbox_status()),
            info: map(&[("info", "{\"pid\":1}")]),
            timestamp: 7,
        };
        round_trip(&response);
        let status = response.status.expect("status");
        assert_eq!(status.state(), PodSandboxState::SandboxNotready);
    }

    #[test]
    fn container_messages_round_trip() {
        round_trip(&ListContainersRequest {
            filter: Some(ContainerFilter {
                id: "c1".into(),
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: "sb1".into(),
                label_selector: map(&[("k", "v")]),
            }),
        });
        let response = ListContainersResponse {
            containers: vec![Container {
                id: "c1".into(),
                pod_sandbox_id: "sb1".into(),
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 1,
                }),
                image: Some(ImageSpec {
                    image: "docker.io/library/nginx:latest".into(),
                    annotations: map(&[("i", "j")]),
                }),
                image_ref: "sha256:abc".into(),
                state: ContainerState::ContainerExited as i32,
                created_at: 9,
                labels: map(&[("app", "web")]),
                annotations: map(&[("x", "y")]),
            }],
        };
        round_trip(&response);
        assert_eq!(
            response.containers[0].state(),
            ContainerState::ContainerExited
        );
    }

    #[test]
    fn event_round_trip() {
        round_trip(&GetEventsRequest {});
        let event = ContainerEventResponse {
            container_id: "sb1".into(),
            container_event_type: ContainerEventType::ContainerDeletedEvent as i32,
            created_at: 11,
            pod_sandbox_status: Some(sandbox_status()),
        };
        round_trip(&event);
        assert_eq!(
            event.container_event_type(),
            ContainerEventType::ContainerDeletedEvent
        );
        assert_eq!(
            event.container_event_type().as_str_name(),
            "CONTAINER_DELETED_EVENT"
        );
    }

    #[test]
    fn lifecycle_messages_round_trip() {
        round_trip(&RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(metadata()),
                hostname: "web".into(),
                log_directory: "/var/log/pods/shop_web_u1".into(),
                labels: map(&[("app", "web")]),
                annotations: map(&[("a", "b")]),
                linux: Some(LinuxPodSandboxConfig {
                    cgroup_parent: "/netshim-e2e".into(),
                    security_context: Some(LinuxSandboxSecurityContext {
                        namespace_options: Some(NamespaceOption {
                            network: NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                    }),
                }),
            }),
            runtime_handler: String::new(),
        });
        round_trip(&RunPodSandboxResponse {
            pod_sandbox_id: "sb1".into(),
        });
        round_trip(&StopPodSandboxRequest {
            pod_sandbox_id: "sb1".into(),
        });
        round_trip(&StopPodSandboxResponse {});
        round_trip(&RemovePodSandboxRequest {
            pod_sandbox_id: "sb1".into(),
        });
        round_trip(&RemovePodSandboxResponse {});
    }

    #[test]
    fn enum_values_and_names() {
        assert_eq!(
            PodSandboxState::try_from(1),
            Ok(PodSandboxState::SandboxNotready)
        );
        assert_eq!(NamespaceMode::try_from(3), Ok(NamespaceMode::Target));
        assert_eq!(
            ContainerState::try_from(3),
            Ok(ContainerState::ContainerUnknown)
        );
        assert!(ContainerState::try_from(4).is_err());
        assert_eq!(PodSandboxState::SandboxReady.as_str_name(), "SANDBOX_READY");
        assert_eq!(NamespaceMode::Target.as_str_name(), "TARGET");
        assert_eq!(
            ContainerState::ContainerRunning.as_str_name(),
            "CONTAINER_RUNNING"
        );
    }

    /// What the fake transport saw of one request.
    #[derive(Debug, Default)]
    struct Seen {
        path: String,
        body: Vec<u8>,
    }

    /// A transport that records each request and answers with a trailers-only
    /// `UNIMPLEMENTED` status, so the client's paths and framing can be checked offline.
    fn fake_transport(
        seen: Arc<Mutex<Seen>>,
    ) -> impl tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future = impl Send,
    > {
        tower::service_fn(move |request: http::Request<tonic::body::Body>| {
            let seen = seen.clone();
            async move {
                let path = request.uri().path().to_owned();
                let mut body = request.into_body();
                let mut bytes = Vec::new();
                while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    if let Ok(data) = frame.expect("request body").into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                *seen.lock().expect("lock") = Seen { path, body: bytes };
                let response = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "12")
                    .header("grpc-message", "fake")
                    .body(tonic::body::Body::empty())
                    .expect("response");
                Ok::<_, Infallible>(response)
            }
        })
    }

    /// Strips the 5-byte gRPC frame header from a single uncompressed message.
    fn unframe(body: &[u8]) -> &[u8] {
        assert!(body.len() >= 5, "short frame: {body:?}");
        assert_eq!(body[0], 0, "compressed frame");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(body.len(), 5 + len);
        &body[5..]
    }

    fn check(seen: &Mutex<Seen>, method: &str, message: &impl Message, status: tonic::Status) {
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.path, format!("/runtime.v1.RuntimeService/{method}"));
        assert_eq!(unframe(&seen.body), message.encode_to_vec().as_slice());
    }

    #[tokio::test]
    async fn client_uses_cri_paths() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut client = RuntimeServiceClient::new(fake_transport(seen.clone()));

        let req = VersionRequest {
            version: "v1".into(),
        };
        let err = client.version(req.clone()).await.expect_err("fake");
        check(&seen, "Version", &req, err);

        let req = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: "sb1".into(),
                ..Default::default()
            }),
        };
        let err = client
            .list_pod_sandbox(req.clone())
            .await
            .expect_err("fake");
        check(&seen, "ListPodSandbox", &req, err);

        let req = PodSandboxStatusRequest {
            pod_sandbox_id: "sb1".into(),
            verbose: true,
        };
        let err = client
            .pod_sandbox_status(req.clone())
            .await
            .expect_err("fake");
        check(&seen, "PodSandboxStatus", &req, err);

        let req = ListContainersRequest::default();
        let err = client.list_containers(req.clone()).await.expect_err("fake");
        check(&seen, "ListContainers", &req, err);

        let err = client
            .get_container_events(GetEventsRequest {})
            .await
            .expect_err("fake");
        check(&seen, "GetContainerEvents", &GetEventsRequest {}, err);

        let req = RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(metadata()),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        };
        let err = client.run_pod_sandbox(req.clone()).await.expect_err("fake");
        check(&seen, "RunPodSandbox", &req, err);

        let req = StopPodSandboxRequest {
            pod_sandbox_id: "sb1".into(),
        };
        let err = client
            .stop_pod_sandbox(req.clone())
            .await
            .expect_err("fake");
        check(&seen, "StopPodSandbox", &req, err);

        let req = RemovePodSandboxRequest {
            pod_sandbox_id: "sb1".into(),
        };
        let err = client
            .remove_pod_sandbox(req.clone())
            .await
            .expect_err("fake");
        check(&seen, "RemovePodSandbox", &req, err);
    }
}
