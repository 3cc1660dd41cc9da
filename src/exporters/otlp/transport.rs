//! What both transports share: a payload, the outcome of one attempt, and the client built
//! from the settings.

use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;

use super::config::{Config, Protocol, Target};
use super::connect::Connector;
use super::{grpc, http, tls};

/// One snapshot, ready to send: an encoded `ExportMetricsServiceRequest` (for HTTP with gzip,
/// already compressed).
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    /// Data points in it, for the statistics.
    pub points: u64,
}

/// A collector's answer to a successful export.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// `partial_success.rejected_data_points`.
    pub rejected: i64,
    /// `partial_success.error_message`.
    pub message: String,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again (unavailable, overloaded, timed out, connection failed); with the
    /// collector's requested delay when it sent one.
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again would fail the same way (bad request, unauthenticated, …).
    Permanent(String),
}

/// The client of one exporter.
pub enum Sender {
    Grpc(Box<grpc::GrpcSender>),
    Http(Box<http::HttpSender>),
}

impl Sender {
    /// Builds the client: reads the TLS files, sets up the connector. Connects lazily.
    pub fn new(config: &Config, protocol: Protocol) -> Result<Sender, String> {
        let target = config.target(protocol)?;
        let alpn: &[&[u8]] = match protocol {
            Protocol::Grpc => &[b"h2"],
            Protocol::Http => &[b"http/1.1"],
        };
        let connector = Connector::new(tls_for(config, &target, alpn)?, config.timeout);
        Ok(match protocol {
            Protocol::Grpc => {
                Sender::Grpc(Box::new(grpc::GrpcSender::new(config, &target, connector)?))
            }
            Protocol::Http => {
                Sender::Http(Box::new(http::HttpSender::new(config, &target, connector)?))
            }
        })
    }

    /// Turns an encoded request into what is queued and sent (HTTP: gzip when configured).
    pub fn prepare(&self, encoded: Vec<u8>) -> Result<Bytes, String> {
        match self {
            Sender::Grpc(_) => Ok(Bytes::from(encoded)),
            Sender::Http(h) => h.prepare(encoded),
        }
    }

    /// One attempt, bounded by the configured timeout.
    pub async fn send(&self, body: &Bytes) -> Result<Accepted, SendError> {
        match self {
            Sender::Grpc(g) => g.send(body).await,
            Sender::Http(h) => h.send(body).await,
        }
    }
}

fn tls_for(
    config: &Config,
    target: &Target,
    alpn: &[&[u8]],
) -> Result<Option<(std::sync::Arc<rustls::ClientConfig>, ServerName<'static>)>, String> {
    if !target.tls {
        return Ok(None);
    }
    let name = config
        .tls
        .server_name_override
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let name =
        ServerName::try_from(name.clone()).map_err(|e| format!("TLS server name {name:?}: {e}"))?;
    Ok(Some((tls::client_config(&config.tls, alpn)?, name)))
}
