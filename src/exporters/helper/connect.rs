//! One connector for hyper's and tonic's clients: hyper-util's `HttpConnector` for TCP, with
//! host names resolved by [`crate::dns`] (`/etc/hosts`, then DNS per `/etc/resolv.conf`, never
//! libc: the static binary has no NSS), under hyper-rustls for TLS. TLS is decided by the
//! exporter's settings, not by the URI's scheme, so a gRPC channel can be given a plain
//! `http://` URI whatever TLS features tonic was built with, and `insecure_skip_verify`,
//! `ca_file` and client certificates work the same way whatever the protocol. Connecting, TLS
//! handshake included, is bounded by the exporter's timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::Scheme;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An established connection, plain or TLS.
pub type Conn = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Resolves through the agent's own resolver ([`crate::dns::system`]).
#[derive(Clone, Copy, Default)]
pub struct DnsResolve;

impl Service<Name> for DnsResolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = crate::dns::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let ips = crate::dns::system().lookup(name.as_str()).await?;
            // The connector puts the port in.
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

/// Connects to the host and port of each URI it is called with (always the exporter's own
/// endpoint), within `timeout`, then does the TLS handshake when configured.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector<DnsResolve>,
    tls: Option<HttpsConnector<HttpConnector<DnsResolve>>>,
    timeout: Duration,
}

impl Connector {
    /// `tls`: the client configuration and the name to verify (and send as SNI), or `None`
    /// for plaintext.
    pub fn new(tls: Option<(Arc<ClientConfig>, ServerName<'static>)>, timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new_with_resolver(DnsResolve);
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        // Each address in turn until one accepts, as resolved.
        tcp.set_happy_eyeballs_timeout(None);
        let tls = tls.map(|(config, name)| {
            let name = Arc::new(FixedServerNameResolver::new(name));
            HttpsConnector::new(tcp.clone(), config, true, name)
        });
        Connector { tcp, tls, timeout }
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
            match self.tls {
                Some(https) => {
                    let uri = with_scheme(uri, Scheme::HTTPS, port)?;
                    https.oneshot(uri).await.map_err(|e| {
                        // hyper-rustls hands on the TCP connector's errors as they are and
                        // wraps the handshake's in an `io::Error`.
                        if e.is::<std::io::Error>() {
                            format!("TLS handshake with {host}:{port}: {e}").into()
                        } else {
                            e
                        }
                    })
                }
                None => Ok(MaybeHttpsStream::Http(self.tcp.oneshot(uri).await?)),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("connecting to {host}:{port}: timed out"))?
    }
}

/// `uri` with `scheme` and an explicit port (so that changing the scheme keeps it).
fn with_scheme(uri: Uri, scheme: Scheme, port: u16) -> Result<Uri, BoxError> {
    let host = uri.host().ok_or_else(|| format!("no host in {uri}"))?;
    Ok(Uri::builder()
        .scheme(scheme)
        .authority(format!("{host}:{port}"))
        .path_and_query("/")
        .build()?)
}

impl Service<Uri> for Connector {
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
