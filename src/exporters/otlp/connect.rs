//! One TCP (+ rustls) connector for both transports. TLS is decided by the exporter's
//! settings, not by the URI's scheme, so the gRPC channel can be given a plain `http://` URI
//! whatever TLS features tonic was built with, and `insecure_skip_verify`, `ca_file` and
//! client certificates work the same way over gRPC and HTTP. Host names are resolved by
//! [`crate::dns`] (`/etc/hosts`, then DNS per `/etc/resolv.conf`), never by libc.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An established connection, in hyper's I/O traits.
pub struct Conn(TokioIo<Box<dyn Io>>);

impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Connects to the host and port of each URI it is called with (always the exporter's own
/// endpoint), within `timeout`, then does the TLS handshake when configured.
#[derive(Clone)]
pub struct Connector {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    /// `tls`: the client configuration and the name to verify (and send as SNI), or `None`
    /// for plaintext.
    pub fn new(tls: Option<(Arc<ClientConfig>, ServerName<'static>)>, timeout: Duration) -> Self {
        Connector {
            tls: tls.map(|(config, name)| (TlsConnector::from(config), name)),
            timeout,
        }
    }

    async fn connect(self, uri: Uri) -> Result<Conn, BoxError> {
        let host = uri
            .host()
            .ok_or_else(|| format!("no host in {uri}"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let work = async {
            // Names through netshim's own resolver: the static binary has no NSS.
            let tcp = crate::dns::system().connect(&host, port).await?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match self.tls {
                Some((tls, name)) => Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?,
                ),
                None => Box::new(tcp),
            };
            Ok::<_, BoxError>(Conn(TokioIo::new(io)))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("connecting to {host}:{port}: timed out"))?
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}
