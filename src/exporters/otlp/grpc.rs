//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` over a tonic
//! channel. The request is encoded once when queued; a small codec hands those bytes to tonic,
//! which frames (and gzips) them, so a retry re-sends without re-encoding.

use std::error::Error as _;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::HeaderMap;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::config::{Compression, Config, Target};
use crate::exporters::helper::connect::Connector;
use crate::exporters::helper::{Accepted, SendError};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

pub struct GrpcSender {
    client: tonic::client::Grpc<Channel>,
    headers: HeaderMap,
    timeout: Duration,
}

impl GrpcSender {
    /// Must run inside a tokio runtime (the channel spawns its worker); connects lazily.
    pub fn new(config: &Config, target: &Target, connector: Connector) -> Result<Self, String> {
        let endpoint = Endpoint::from(target.uri.clone())
            .user_agent(format!("netshim/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| format!("user agent: {e}"))?
            .connect_timeout(config.timeout);
        let channel = endpoint.connect_with_connector_lazy(connector);
        let mut client = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(4 << 20);
        if config.compression == Compression::Gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(GrpcSender {
            client,
            headers: super::http::header_map(&config.headers)?,
            timeout: config.timeout,
        })
    }

    pub async fn send(&self, body: &Bytes) -> Result<Accepted, SendError> {
        let attempt = async {
            let mut client = self.client.clone();
            client.ready().await.map_err(|e| SendError::Retryable {
                message: format!("gRPC channel: {e}"),
                retry_after: None,
            })?;
            let mut request = tonic::Request::new(body.clone());
            *request.metadata_mut() = MetadataMap::from_headers(self.headers.clone());
            request.set_timeout(self.timeout);
            let response = client
                .unary::<Bytes, ExportMetricsServiceResponse, PreEncoded>(
                    request,
                    PathAndQuery::from_static(EXPORT_PATH),
                    PreEncoded,
                )
                .await
                .map_err(|s| classify(&s))?;
            let partial = response.into_inner().partial_success.unwrap_or_default();
            Ok(Accepted {
                rejected: partial.rejected_data_points,
                message: partial.error_message,
            })
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Retryable {
                    message: format!(
                        "no answer within the timeout ({})",
                        humantime::format_duration(self.timeout)
                    ),
                    retry_after: None,
                })
            })
    }
}

/// The Collector's rule (exporterhelper): these codes are transient; so is any failure tonic
/// made up locally from a transport error (connection reset mid-call, …), whatever its code.
fn classify(status: &Status) -> SendError {
    let mut message = format!("gRPC {:?}: {}", status.code(), status.message());
    if let Some(source) = status.source() {
        message = format!("{message} ({source})");
    }
    let retryable = matches!(
        status.code(),
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
    ) || status.source().is_some();
    if retryable {
        SendError::Retryable {
            message,
            retry_after: retry_delay(status.details()),
        }
    } else {
        SendError::Permanent(message)
    }
}

/// `google.rpc.Status`, `google.protobuf.Any`, `google.rpc.RetryInfo` and
/// `google.protobuf.Duration`: just the fields needed to read a server's requested delay.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The `RetryInfo.retry_delay` in a status's details (`grpc-status-details-bin`), if any.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|d| d.type_url.ends_with("/google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let secs = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(secs, nanos.min(999_999_999)))
}

/// Sends bytes that are already an encoded request; decodes the response.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

struct BytesEncoder;
struct ResponseDecoder;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = BytesEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportMetricsServiceResponse::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the export response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_as_the_collector_does() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert!(matches!(
                classify(&Status::new(code, "x")),
                SendError::Retryable { .. }
            ));
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::Unknown,
            Code::Unimplemented,
        ] {
            assert!(matches!(
                classify(&Status::new(code, "x")),
                SendError::Permanent(_)
            ));
        }
    }

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let s = Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            status.encode_to_vec().into(),
        );
        assert_eq!(
            classify(&s),
            SendError::Retryable {
                message: "gRPC ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_millis(2500)),
            }
        );
        assert_eq!(retry_delay(b"\xff\xff"), None, "garbage is ignored");
    }
}
