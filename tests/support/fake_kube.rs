//! A fake Kubernetes API server on loopback, enough for kube-rs's pod watcher
//! (`kube::runtime::watcher` with the default `ListWatch` strategy) to run against it.
//!
//! `GET /api/v1/pods` (pods of all namespaces) is served, as a list or as a watch, and
//! `POST`ed `TokenReview`s and `SubjectAccessReview`s are answered from the tokens and users the
//! test registered ([`FakeKube::add_token`]: what a real API server's authenticator and RBAC
//! would say); every other request gets a 404 `Status`. Tests put pods in with [`FakeKube::add_pod`] and
//! [`FakeKube::delete_pod`], and break things on purpose with [`FakeKube::set_unavailable`],
//! [`FakeKube::set_list_delay`], [`FakeKube::expire_watches`] and [`FakeKube::stop`].
//!
//! # Quirks, on purpose
//!
//! It copies two behaviours of PyPI's `kmock` (the mock API server of the Python side of these
//! tests), so that code which passes here also copes with a server that cuts corners:
//!
//! * **Field selectors are ignored.** A watcher asking for `spec.nodeName=NODE` gets the pods of
//!   every node, so the code under test must filter by node itself rather than trust the server.
//! * **Every watch request first replays every existing pod as an `ADDED` event**, whatever
//!   `resourceVersion` it asks to resume from, and only then streams live changes. A real
//!   apiserver sends only what changed after that version. So a watcher sees the same pods
//!   "added" again after each list and each reconnect, and must treat an `ADDED` for a pod it
//!   already knows as an update (it also means a watcher's last-seen resourceVersion can go
//!   backwards, to that of the last replayed pod).
//!
//! Everything else follows the real API closely enough for kube-rs: a global resourceVersion
//! counter (starting at 1, raised by every change, stored as a string in each pod's
//! `metadata.resourceVersion`); lists return everything in one page with the current version;
//! watches are chunked newline-delimited JSON events, written as they happen and ended after
//! `timeoutSeconds`; an expired resourceVersion is reported as a watch `ERROR` event whose object
//! is a 410 `Expired` Status (what kube-rs turns into a fresh list), not as an HTTP 410 (which
//! kube-rs would retry forever with the same version).
//!
//! Connections are served by hand (hyper-util, one task per connection) so that
//! [`FakeKube::stop`] can really drop every open connection, watch streams included, the way a
//! crashed or restarted apiserver would.
#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
// hyper-util's `server` and `http1` features, which this needs, come with axum (a dev-dependency).
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// The only path served.
const PODS_PATH: &str = "/api/v1/pods";

/// A running fake API server. Dropping it aborts the server (and its connections) without
/// waiting; [`FakeKube::stop`] does the same but waits until everything is closed.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Tells the accept loop to stop (used by `stop`).
    shutdown: Option<oneshot::Sender<()>>,
    /// The accept loop; it owns the connection tasks, so aborting it aborts them too.
    server: Option<JoinHandle<()>>,
}

/// What the test side and the request handlers share.
struct Shared {
    state: Mutex<Store>,
}

impl Shared {
    /// Locks the state. A test that panicked while holding the lock leaves consistent data
    /// behind (every change is made in one go), so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Store {
    /// The global resourceVersion: that of the latest change.
    resource_version: u64,
    /// Pods by (namespace, name), each with its own `metadata.resourceVersion`.
    pods: BTreeMap<(String, String), Value>,
    /// One sender per open watch stream; dropping it ends that stream. Senders whose stream is
    /// gone (client disconnected, timeout) are pruned on the next event.
    watchers: Vec<mpsc::UnboundedSender<String>>,
    /// While true every request gets a 503.
    down: bool,
    /// How long a list request waits before it is answered.
    list_delay: Duration,
    /// Set by `expire_watches`, taken by the next watch request: if that request resumes from
    /// a resourceVersion at or below this one it gets a 410 `Expired` error event.
    expired_through: Option<u64>,
    /// Every request's path and query, in order of arrival.
    requests: Vec<String>,
    /// Requests answered 503 because the server was down (`set_unavailable`).
    refused: u64,
    /// Bearer tokens the authenticator knows: token → (user name, allowed to get /metrics).
    tokens: BTreeMap<String, (String, bool)>,
    /// Token and access reviews answered.
    reviews: u64,
}

impl Store {
    /// Sends one event line to every open watch stream, forgetting the ones that are gone.
    fn broadcast(&mut self, line: &str) {
        self.watchers.retain(|tx| tx.send(line.to_owned()).is_ok());
    }

    fn pod_list(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": self.pods.values().cloned().collect::<Vec<_>>(),
        })
    }
}

impl FakeKube {
    /// Starts a server on `127.0.0.1`, on a port the kernel picks.
    pub async fn start() -> FakeKube {
        Self::start_on(0).await
    }

    /// Starts a server on `127.0.0.1:PORT` (0: any free port); use it with the port `stop`
    /// returned to bring "the same" apiserver back. The new server starts empty.
    pub async fn start_on(port: u16) -> FakeKube {
        let listener = bind(port);
        let addr = listener
            .local_addr()
            .expect("fake kube: local address of the listener");
        let shared = Arc::new(Shared {
            state: Mutex::new(Store {
                resource_version: 1,
                pods: BTreeMap::new(),
                watchers: Vec::new(),
                down: false,
                list_delay: Duration::ZERO,
                expired_through: None,
                requests: Vec::new(),
                refused: 0,
                tokens: BTreeMap::new(),
                reviews: 0,
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let server = tokio::spawn(serve(listener, app, shutdown_rx));
        FakeKube {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            server: Some(server),
        }
    }

    /// Makes `token` authenticate as `user`, who may `get` `/metrics` when `allowed`.
    pub fn add_token(&self, token: &str, user: &str, allowed: bool) {
        self.shared
            .lock()
            .tokens
            .insert(token.to_owned(), (user.to_owned(), allowed));
    }

    /// How many token and access reviews were answered.
    pub fn reviews(&self) -> u64 {
        self.shared.lock().reviews
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stores `pod` (keyed by its `metadata.namespace`/`metadata.name`), giving it the next
    /// resourceVersion (any it had is overwritten), and tells open watches: `ADDED`, or
    /// `MODIFIED` when a pod of that namespace and name was already there.
    pub fn add_pod(&self, mut pod: Value) {
        let namespace = metadata_str(&pod, "namespace");
        let name = metadata_str(&pod, "name");
        let mut store = self.shared.lock();
        store.resource_version += 1;
        pod["metadata"]["resourceVersion"] = Value::String(store.resource_version.to_string());
        let key = (namespace, name);
        let kind = if store.pods.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let line = event_line(kind, &pod);
        store.pods.insert(key, pod);
        store.broadcast(&line);
    }

    /// Removes a pod and tells open watches: `DELETED`, with the pod as it was last stored
    /// except for `metadata.resourceVersion`, which is the new version (as a real apiserver
    /// does). Panics if there is no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut store = self.shared.lock();
        let key = (namespace.to_owned(), name.to_owned());
        let Some(mut pod) = store.pods.remove(&key) else {
            panic!("fake kube: delete_pod({namespace:?}, {name:?}): no such pod was added");
        };
        store.resource_version += 1;
        pod["metadata"]["resourceVersion"] = Value::String(store.resource_version.to_string());
        let line = event_line("DELETED", &pod);
        store.broadcast(&line);
    }

    /// While `down` is true every request (list, watch, anything) gets an HTTP 503 with a
    /// `Status` body. Turning it on also ends every open watch stream (cleanly: the chunked
    /// body just ends, so a client goes straight back to a new watch request, which then fails).
    pub fn set_unavailable(&self, down: bool) {
        let mut store = self.shared.lock();
        store.down = down;
        if down {
            store.watchers.clear();
        }
    }

    /// Makes every later list request wait `delay` before it is answered (the answer holds the
    /// pods as they are when the delay ends). `Duration::ZERO` turns it off.
    pub fn set_list_delay(&self, delay: Duration) {
        self.shared.lock().list_delay = delay;
    }

    /// Behaves like an etcd compaction: every open watch stream gets an `ERROR` event whose
    /// object is a `Status` with code 410, reason `Expired`, and then ends. The next watch
    /// request (only that one) is answered the same way if it resumes from a resourceVersion at
    /// or below the current one (not `0` or empty): that catches a client that was between two
    /// watch requests. It also raises the global resourceVersion, so the version a client gets
    /// from its next list is not itself an expired one.
    ///
    /// Why only the next request: because of the replay quirk a client's last-seen version goes
    /// back to that of the last replayed pod, so "any later request with an old version" would
    /// fire again at some unrelated reconnect much later.
    pub fn expire_watches(&self) {
        let mut store = self.shared.lock();
        let current = store.resource_version;
        let line = expired_event_line(current, current + 1);
        store.broadcast(&line);
        store.watchers.clear();
        store.expired_through = Some(current);
        store.resource_version += 1;
    }

    /// The path and query of every request received so far, in order (for instance
    /// `/api/v1/pods?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=3`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were answered 503 because the server was down (`set_unavailable`),
    /// lists that went down while they waited included: what a client has tried (and been
    /// refused) during an outage.
    pub fn refused(&self) -> u64 {
        self.shared.lock().refused
    }

    /// Stops serving: closes the listener and every open connection (watch streams included,
    /// mid-stream, so clients see the connection drop), and returns once they are closed. The
    /// returned port can be given to [`FakeKube::start_on`].
    pub async fn stop(mut self) -> u16 {
        let port = self.port();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            // Err only if the loop panicked or was aborted: either way it is no longer running.
            let _ = server.await;
        }
        port
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A minimal valid v1 Pod, `Running` on `node`, with `ips` as its pod IPs (the first one also
/// as `status.podIP`). Tests change it (labels, ownerReferences, hostNetwork, …) before
/// `add_pod`.
pub fn pod(namespace: &str, name: &str, uid: &str, node: &str, ips: &[&str]) -> Value {
    let mut status = json!({
        "phase": "Running",
        "startTime": "2026-01-01T00:00:05Z",
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
    });
    if let Some(first) = ips.first() {
        status["podIP"] = json!(first);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {},
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "busybox"}],
        },
        "status": status,
    })
}

/// `pod.metadata.FIELD` as a string, or a panic telling the test author what is missing.
fn metadata_str(pod: &Value, field: &str) -> String {
    match pod["metadata"][field].as_str() {
        Some(s) => s.to_owned(),
        None => panic!("fake kube: add_pod needs a string metadata.{field}, got pod {pod}"),
    }
}

/// Binds `127.0.0.1:PORT` with SO_REUSEADDR, so a port just released by `stop` (whose closed
/// connections may linger in TIME_WAIT) can be bound again at once.
fn bind(port: u16) -> TcpListener {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = TcpSocket::new_v4().expect("fake kube: create a TCP socket");
    socket
        .set_reuseaddr(true)
        .expect("fake kube: set SO_REUSEADDR");
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("fake kube: bind {addr}: {e}"));
    socket
        .listen(1024)
        .unwrap_or_else(|e| panic!("fake kube: listen on {addr}: {e}"))
}

/// Accepts connections until `shutdown` fires (or its sender is dropped), serving each in a
/// task of its own. The tasks live in a `JoinSet`, so they all end with this loop: on `stop`
/// they are aborted and awaited here, and when the loop itself is aborted (`Drop`), dropping
/// the set aborts them. An aborted connection task drops its socket: the client sees the
/// connection close, whatever it was in the middle of.
async fn serve(listener: TcpListener, app: Router, mut shutdown: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Watch events are small writes that must arrive at once.
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    connections.spawn(async move {
                        // An error here is the client going away: nothing to report.
                        let _ = Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow over a long test.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Every request, whatever its method and path.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let uri = request.uri();
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let query = uri.query().unwrap_or("").to_owned();
    let known = request.method() == Method::GET && uri.path() == PODS_PATH;
    let review = request.method() == Method::POST
        && (uri.path() == TOKEN_REVIEWS || uri.path() == ACCESS_REVIEWS);

    let list_delay = {
        let mut store = shared.lock();
        store.requests.push(target.clone());
        if store.down {
            store.refused += 1;
            return unavailable();
        }
        store.list_delay
    };
    if review {
        return answer_review(&shared, request).await;
    }
    if !known {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "the fake API server only serves GET {PODS_PATH}, not {} {target}",
                request.method()
            ),
        );
    }
    if matches!(query_param(&query, "watch"), Some("true" | "1")) {
        watch(&shared, &query)
    } else {
        list(&shared, list_delay).await
    }
}

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// A `TokenReview` (is the token someone's?) or a `SubjectAccessReview` (may that user `get`
/// the non-resource URL `/metrics`?), answered with the review and its `status`.
async fn answer_review(shared: &Shared, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 1 << 20).await else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body");
    };
    let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let mut store = shared.lock();
    store.reviews += 1;
    let status = if path == TOKEN_REVIEWS {
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        match store.tokens.get(token) {
            Some((user, _)) => json!({
                "authenticated": true,
                "user": {"username": user, "uid": format!("uid-{user}"), "groups": ["system:authenticated"]},
            }),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        }
    } else {
        let spec = &review["spec"];
        let user = spec["user"].as_str().unwrap_or_default();
        let asks_metrics = spec["nonResourceAttributes"]["path"] == "/metrics"
            && spec["nonResourceAttributes"]["verb"] == "get";
        let allowed = asks_metrics
            && store
                .tokens
                .values()
                .any(|(name, allowed)| name == user && *allowed);
        json!({"allowed": allowed})
    };
    review["status"] = status;
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}

/// A list: every pod of every namespace and node (selectors, `limit` and `continue` are
/// ignored; a single page with no continue token is a valid answer to any `limit`).
async fn list(shared: &Shared, delay: Duration) -> Response {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut store = shared.lock();
    if store.down {
        // Went down while this request waited.
        store.refused += 1;
        return unavailable();
    }
    json_response(StatusCode::OK, store.pod_list().to_string())
}

/// A watch: every existing pod as `ADDED`, then live events, until `timeoutSeconds` pass, the
/// server ends the stream (`set_unavailable`, `expire_watches`, `stop`) or the client leaves.
fn watch(shared: &Shared, query: &str) -> Response {
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let resume_from = query_param(query, "resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .and_then(|rv| rv.parse::<u64>().ok());

    let mut store = shared.lock();
    // A pending expiry is for the very next watch request only: if that one resumes from a
    // fresh version (the client has listed again since), it is simply dropped.
    if let (Some(expired_through), Some(rv)) = (store.expired_through.take(), resume_from)
        && rv <= expired_through
    {
        let line = expired_event_line(rv, store.resource_version);
        return json_response(StatusCode::OK, line);
    }
    // Replay and registration happen under one lock, so no change falls between them.
    let (tx, rx) = mpsc::unbounded_channel();
    for pod in store.pods.values() {
        // The receiver is right here: sending cannot fail.
        let _ = tx.send(event_line("ADDED", pod));
    }
    store.watchers.push(tx);
    drop(store);

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let events = futures::stream::unfold(rx, move |mut rx| async move {
        let line = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten(),
            None => rx.recv().await,
        }?;
        Some((Ok::<_, Infallible>(line), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(events),
    )
        .into_response()
}

/// `KEY`'s value in a query string (no percent-decoding: the values read here never need it).
fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

/// One watch event as a line of JSON.
fn event_line(kind: &str, object: &Value) -> String {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line
}

/// The `ERROR` event of a watch resuming from a compacted resourceVersion.
fn expired_event_line(requested: u64, current: u64) -> String {
    event_line(
        "ERROR",
        &status_body(
            410,
            "Expired",
            &format!("too old resource version: {requested} ({current})"),
        ),
    )
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        code,
        status_body(code.as_u16(), reason, message).to_string(),
    )
}

fn unavailable() -> Response {
    status_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "the fake API server is unavailable (set_unavailable)",
    )
}

fn json_response(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
