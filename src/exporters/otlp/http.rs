//! OTLP/HTTP: the encoded request POSTed as `application/x-protobuf` (gzipped when
//! `compression: gzip`) with a hyper client over the shared connector (HTTP/1.1, keep-alive).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;

use super::config::{Compression, Config, Target};
use crate::exporters::helper::connect::Connector;
use crate::exporters::helper::{Accepted, SendError};

const PROTOBUF: &str = "application/x-protobuf";
/// Response bodies are small (a partial success or a status); more is not read.
const MAX_RESPONSE: usize = 64 * 1024;

pub struct HttpSender {
    client: Client<Connector, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    gzip: bool,
    timeout: Duration,
}

impl HttpSender {
    pub fn new(config: &Config, target: &Target, connector: Connector) -> Result<Self, String> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(connector);
        let mut headers = header_map(&config.headers)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        let gzip = config.compression == Compression::Gzip;
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if !headers.contains_key(USER_AGENT) {
            let agent = format!("netshim/{}", env!("CARGO_PKG_VERSION"));
            if let Ok(v) = HeaderValue::from_str(&agent) {
                headers.insert(USER_AGENT, v);
            }
        }
        Ok(HttpSender {
            client,
            uri: target.uri.clone(),
            headers,
            gzip,
            timeout: config.timeout,
        })
    }

    /// The body as sent: gzipped once, when configured, so retries and the queue hold the
    /// compressed form.
    pub fn prepare(&self, encoded: Vec<u8>) -> Result<Bytes, String> {
        if !self.gzip {
            return Ok(Bytes::from(encoded));
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(encoded.len() / 4), GzLevel::fast());
        gz.write_all(&encoded)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|e| format!("gzip: {e}"))
    }

    pub async fn send(&self, body: &Bytes) -> Result<Accepted, SendError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .body(Full::new(body.clone()))
            .map_err(|e| SendError::Permanent(format!("building the request: {e}")))?;
        *request.headers_mut() = self.headers.clone();
        let attempt = async {
            let response =
                self.client
                    .request(request)
                    .await
                    .map_err(|e| SendError::Retryable {
                        message: format!("POST {}: {}", self.uri, error_chain(&e)),
                        retry_after: None,
                    })?;
            let (parts, body) = response.into_parts();
            // A body that cannot be read is only a worse error message.
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(answer(parts.status, &parts.headers, &body))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SendError::Retryable {
                message: format!(
                    "POST {}: no answer within the timeout ({})",
                    self.uri,
                    humantime::format_duration(self.timeout)
                ),
                retry_after: None,
            }),
        }
    }
}

/// What a collector's HTTP answer means (the Collector's otlphttp rules: 429, 502, 503 and 504
/// are retried, honouring `Retry-After`; any other error status is final).
fn answer(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, SendError> {
    let protobuf = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROTOBUF));
    if status.is_success() {
        let partial = if protobuf && !body.is_empty() {
            ExportMetricsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .unwrap_or_default()
        } else {
            Default::default()
        };
        return Ok(Accepted {
            rejected: partial.rejected_data_points,
            message: partial.error_message,
        });
    }
    let detail = error_detail(body, protobuf);
    let message = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    match status.as_u16() {
        429 | 502 | 503 | 504 => Err(SendError::Retryable {
            message,
            retry_after: headers.get(RETRY_AFTER).and_then(retry_after),
        }),
        _ => Err(SendError::Permanent(message)),
    }
}

/// `google.rpc.Status.message`, just the field the error text needs.
#[derive(Clone, PartialEq, Message)]
struct RpcStatusMessage {
    #[prost(string, tag = "2")]
    message: String,
}

fn error_detail(body: &[u8], protobuf: bool) -> String {
    if protobuf && let Ok(status) = RpcStatusMessage::decode(body) {
        return status.message;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The configured `headers` as a header map (validation already checked names and values).
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| format!("header {name} value: {e}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn statuses_are_classified_as_the_collector_does() {
        let h = headers(&[("retry-after", "7")]);
        assert_eq!(
            answer(StatusCode::SERVICE_UNAVAILABLE, &h, b"down"),
            Err(SendError::Retryable {
                message: "HTTP 503 Service Unavailable: down".into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
        for code in [429, 502, 504] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                answer(s, &HeaderMap::new(), b""),
                Err(SendError::Retryable { .. })
            ));
        }
        for code in [400, 401, 404, 413, 500] {
            let s = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                answer(s, &HeaderMap::new(), b""),
                Err(SendError::Permanent(_))
            ));
        }
    }

    #[test]
    fn partial_success_and_status_bodies_are_read() {
        let response = ExportMetricsServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess {
                    rejected_data_points: 3,
                    error_message: "bad points".into(),
                },
            ),
        };
        let h = headers(&[("content-type", PROTOBUF)]);
        assert_eq!(
            answer(StatusCode::OK, &h, &response.encode_to_vec()),
            Ok(Accepted {
                rejected: 3,
                message: "bad points".into()
            })
        );
        let status = RpcStatusMessage {
            message: "no such tenant".into(),
        };
        assert_eq!(
            answer(StatusCode::BAD_REQUEST, &h, &status.encode_to_vec()),
            Err(SendError::Permanent(
                "HTTP 400 Bad Request: no such tenant".into()
            ))
        );
        assert_eq!(
            answer(StatusCode::OK, &HeaderMap::new(), b"whatever"),
            Ok(Accepted::default())
        );
    }

    #[test]
    fn retry_after_dates_and_seconds() {
        assert_eq!(
            retry_after(&HeaderValue::from_static("120")),
            Some(Duration::from_secs(120))
        );
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
        assert_eq!(retry_after(&HeaderValue::from_static("soon")), None);
    }
}
