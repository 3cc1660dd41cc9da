//! What a pushing exporter needs whatever it speaks, as the Collector's `exporterhelper` and
//! `configtls`: a bounded sending queue ([`queue`], `sending_queue`), retries with backoff
//! ([`retry`], `retry_on_failure`), TLS client and server settings ([`tls`], [`tls_server`], `tls`) and a TCP + rustls
//! connector for hyper and tonic clients ([`connect`]). An exporter supplies a
//! [`BatchSender`] (one attempt at sending one encoded batch) and says what its failures mean
//! ([`SendError`]); the rest is here.

pub mod connect;
pub mod queue;
pub mod retry;
pub mod tls;
pub mod tls_server;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// One batch, encoded and ready to send (and to send again).
#[derive(Debug, Clone)]
pub struct Batch {
    pub body: Bytes,
    /// Data points in it, for the statistics.
    pub points: u64,
}

/// The receiver's answer to a successful send.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Data points it reported as rejected (a partial success).
    pub rejected: i64,
    /// Its message about them.
    pub message: String,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again (unavailable, overloaded, timed out, connection failed); with the
    /// receiver's requested delay when it sent one.
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again would fail the same way (bad request, unauthenticated, …).
    Permanent(String),
}

/// One attempt at sending a batch, bounded by the exporter's timeout.
pub trait BatchSender: Send + Sync + 'static {
    fn send(&self, body: &Bytes) -> impl Future<Output = Result<Accepted, SendError>> + Send;
}
