//! The endpoint's HTTP/1 server, for a port every node exposes: TLS when configured, and
//! bounds that one client cannot exhaust — concurrent connections, request header size and
//! count, the time to send a request's headers (a client that sends a byte a second is cut
//! off), the time a connection may sit idle. Methods and paths are the router's: `GET` and
//! `HEAD` on the known paths, `405` for other methods there, `404` elsewhere; malformed requests
//! get hyper's `400`, oversized headers `431`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::exporters::helper::tls_server::ServerTls;

/// The bounds one connection and all of them are held to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Bytes of a request's start line and headers.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// From a connection's start (TLS handshake included) or the end of its last response to
    /// the end of the next request's headers.
    pub read_header_timeout: Duration,
    /// With nothing read or written for this long, the connection is closed.
    pub idle_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` fires; then stops accepting and closes every
/// connection.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<Arc<ServerTls>>,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Whether the last connection was refused for the limit (logged once per change).
    let mut at_limit = false;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: the listener stays; let connections end.
                        warn!(error = %e, "cannot accept a connection on the metrics endpoint");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Closed at once rather than queued: a queued connection would hold its
                    // client waiting on a port that answers nothing.
                    if !std::mem::replace(&mut at_limit, true) {
                        warn!(max_connections = limits.max_connections, "metrics endpoint at its connection limit: new connections are closed");
                    }
                    drop(stream);
                    continue;
                };
                if std::mem::replace(&mut at_limit, false) {
                    info!("metrics endpoint below its connection limit again");
                }
                connections.spawn(connection(stream, app.clone(), tls.clone(), limits.clone(), permit));
            }
        }
    }
    connections.shutdown().await;
}

async fn connection(
    stream: TcpStream,
    app: axum::Router,
    tls: Option<Arc<ServerTls>>,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::default());
    let stream = Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    match tls {
        Some(tls) => {
            let handshake = tls.acceptor().accept(stream);
            match tokio::time::timeout(limits.read_header_timeout, handshake).await {
                Ok(Ok(stream)) => http(stream, app, &limits, &activity).await,
                Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                Err(_) => debug!("TLS handshake timed out"),
            }
        }
        None => http(stream, app, &limits, &activity).await,
    }
}

async fn http<S>(stream: S, app: axum::Router, limits: &Limits, activity: &Activity)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUF));
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_for = activity.idle();
        let wait = limits.idle_timeout.saturating_sub(idle_for);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %e, "metrics connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wait) => {
                if activity.idle() < limits.idle_timeout {
                    continue;
                }
                if closing {
                    // Asked to close and still nothing moved (a client not reading its
                    // response): dropped.
                    return;
                }
                closing = true;
                activity.touch();
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// hyper's smallest read buffer.
const MIN_BUF: usize = 8192;

/// When a connection last read or wrote anything.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// A stream that notes in its [`Activity`] every read or write that moved bytes.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
