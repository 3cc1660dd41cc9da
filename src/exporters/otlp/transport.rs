//! The client of one OTLP exporter, gRPC or HTTP, built from its settings on the exporter
//! helper's connector.

use bytes::Bytes;

use super::config::{Config, Protocol};
use super::{grpc, http};
use crate::exporters::helper::connect::Connector;
use crate::exporters::helper::{Accepted, BatchSender, SendError};

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
        let tls = if target.tls {
            Some(config.tls.client(&target.host, alpn)?)
        } else {
            None
        };
        let connector = Connector::new(tls, config.timeout);
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
}

impl BatchSender for Sender {
    /// One attempt, bounded by the configured timeout.
    async fn send(&self, body: &Bytes) -> Result<Accepted, SendError> {
        match self {
            Sender::Grpc(g) => g.send(body).await,
            Sender::Http(h) => h.send(body).await,
        }
    }
}
