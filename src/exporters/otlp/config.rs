//! Settings of the `otlp_grpc` and `otlp_http` exporters: the OpenTelemetry Collector's names and
//! defaults (`endpoint`, `tls`, `headers`, `compression`, `timeout`, `retry_on_failure`,
//! `sending_queue`), plus `node_name`. The `tls`, `retry_on_failure` and `sending_queue` parts
//! are the exporter helper's ([`crate::exporters::helper`]).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::Validate;
use crate::exporters::helper::queue::QueueSettings;
use crate::exporters::helper::retry::RetrySettings;
use crate::exporters::helper::tls::TlsSettings;

/// Which OTLP transport a config is for: the two share their settings but not every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `otlp_grpc`: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
    Grpc,
    /// `otlp_http`: binary protobuf POSTed to `/v1/metrics`.
    Http,
}

/// Settings shared by both exporter types (the Collector's `otlp_grpc` / `otlp_http` names and
/// defaults). Parsed through [`GrpcConfig`] or [`HttpConfig`], which validate per protocol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Required. gRPC: `host:port` (TLS unless `tls.insecure: true`), `http://host:port`
    /// (plaintext) or `https://host[:port]` (TLS); a scheme overrides `tls.insecure`, as in the
    /// Collector. HTTP: `http(s)://host[:port][/prefix]`, to which `/v1/metrics` is appended.
    pub endpoint: String,
    /// `otlp_http` only: the full URL to POST metrics to, used as is instead of
    /// `endpoint` + `/v1/metrics`.
    pub metrics_endpoint: Option<String>,
    pub tls: TlsSettings,
    /// Extra request headers (gRPC metadata), e.g. `authorization`.
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default) or `none`.
    pub compression: Compression,
    /// Limit on each export attempt, connecting included (default 5s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
    /// Overrides the snapshot's node name in the `k8s.node.name` resource attribute.
    pub node_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: String::new(),
            metrics_endpoint: None,
            tls: TlsSettings::default(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout: Duration::from_secs(5),
            retry_on_failure: RetrySettings::default(),
            sending_queue: QueueSettings::default(),
            node_name: None,
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// `otlp_grpc` settings: [`Config`] checked by the gRPC rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct GrpcConfig(pub Config);

/// `otlp_http` settings: [`Config`] checked by the HTTP rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct HttpConfig(pub Config);

impl Validate for GrpcConfig {
    fn validate(&self) -> Vec<String> {
        self.0.problems(Protocol::Grpc)
    }
}

impl Validate for HttpConfig {
    fn validate(&self) -> Vec<String> {
        self.0.problems(Protocol::Http)
    }
}

/// Where to send, resolved from `endpoint` (and `metrics_endpoint`, `tls.insecure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The host to connect to (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// gRPC: `http://host:port` (the channel's URI; TLS is the connector's business). HTTP:
    /// the URL metrics are POSTed to.
    pub uri: Uri,
}

impl Config {
    /// Every problem with these settings for `protocol`.
    pub fn problems(&self, protocol: Protocol) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.target(protocol) {
            problems.push(e);
        }
        if protocol == Protocol::Grpc && self.metrics_endpoint.is_some() {
            problems.push(
                "metrics_endpoint is an otlp_http setting; otlp_grpc sends to endpoint".into(),
            );
        }
        problems.extend(self.tls.problems());
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!("headers: {name:?} is not a valid header name"));
            } else if HeaderValue::from_str(value).is_err() {
                problems.push(format!(
                    "headers::{name}: the value is not a valid header value (printable ASCII only)"
                ));
            }
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be greater than 0 (e.g. 5s)".into());
        }
        problems.extend(self.retry_on_failure.problems());
        problems.extend(self.sending_queue.problems());
        problems
    }

    /// The resolved endpoint, or a sentence saying what is wrong with it.
    pub fn target(&self, protocol: Protocol) -> Result<Target, String> {
        match protocol {
            Protocol::Grpc => grpc_target(&self.endpoint, self.tls.insecure),
            Protocol::Http => http_target(&self.endpoint, self.metrics_endpoint.as_deref()),
        }
    }

    /// The `k8s.node.name` override, when set and not empty.
    pub fn node_name_override(&self) -> Option<&str> {
        self.node_name.as_deref().filter(|s| !s.is_empty())
    }
}

fn grpc_target(endpoint: &str, insecure: bool) -> Result<Target, String> {
    let example = "expected host:port (e.g. collector:4317), http://host:port or https://host:port";
    if endpoint.trim().is_empty() {
        return Err(format!("endpoint is required; {example}"));
    }
    // gRPC naming: `dns:///host:port` is `host:port`.
    let rest = endpoint.strip_prefix("dns:///").unwrap_or(endpoint);
    let (tls, rest, explicit_scheme) = if let Some(r) = rest.strip_prefix("https://") {
        (true, r, true)
    } else if let Some(r) = rest.strip_prefix("http://") {
        (false, r, true)
    } else if let Some((scheme, _)) = rest.split_once("://") {
        return Err(format!(
            "endpoint {endpoint:?}: unsupported scheme {scheme:?}; {example}"
        ));
    } else {
        (!insecure, rest, false)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!(
            "endpoint {endpoint:?}: a gRPC endpoint has no path; {example}"
        ));
    }
    let uri: Uri = format!("http://{rest}")
        .parse()
        .map_err(|e| format!("endpoint {endpoint:?} is not valid ({e}); {example}"))?;
    let (host, port) = host_port(&uri, endpoint, example)?;
    let port = match (port, explicit_scheme) {
        (Some(p), _) => p,
        (None, true) if tls => 443,
        (None, true) => 80,
        (None, false) => {
            return Err(format!("endpoint {endpoint:?} has no port; {example}"));
        }
    };
    let authority = authority(&host, port);
    let uri = format!("http://{authority}")
        .parse()
        .map_err(|e| format!("endpoint {endpoint:?} is not valid ({e}); {example}"))?;
    Ok(Target {
        tls,
        host,
        port,
        uri,
    })
}

fn http_target(endpoint: &str, metrics_endpoint: Option<&str>) -> Result<Target, String> {
    let example = "expected a URL such as http://collector:4318";
    let (what, url) = match metrics_endpoint {
        Some(m) => ("metrics_endpoint", m.to_string()),
        None => {
            if endpoint.trim().is_empty() {
                return Err(format!("endpoint is required; {example}"));
            }
            let base = endpoint.trim_end_matches('/');
            ("endpoint", format!("{base}/v1/metrics"))
        }
    };
    let given = metrics_endpoint.unwrap_or(endpoint);
    let tls = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(format!(
            "{what} {given:?} must start with http:// or https://; {example}"
        ));
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{what} {given:?} is not a valid URL ({e}); {example}"))?;
    if uri.query().is_some() && metrics_endpoint.is_none() {
        return Err(format!(
            "endpoint {given:?} must not have a query (use metrics_endpoint for a full URL)"
        ));
    }
    let (host, port) = host_port(&uri, given, example)?;
    Ok(Target {
        tls,
        host,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        uri,
    })
}

fn host_port(uri: &Uri, given: &str, example: &str) -> Result<(String, Option<u16>), String> {
    let authority = uri
        .authority()
        .ok_or_else(|| format!("endpoint {given:?} has no host; {example}"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "endpoint {given:?}: credentials in the URL are not supported (use headers)"
        ));
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("endpoint {given:?} has no host; {example}"));
    }
    Ok((host.to_string(), authority.port_u16()))
}

/// `host:port`, with brackets around an IPv6 host.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::parse_component;

    fn grpc(v: serde_json::Value) -> Result<GrpcConfig, String> {
        parse_component::<GrpcConfig>("exporters::otlp_grpc", v).map_err(|e| e.to_string())
    }

    fn http(v: serde_json::Value) -> Result<HttpConfig, String> {
        parse_component::<HttpConfig>("exporters::otlp_http", v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_collectors() {
        let c = grpc(json!({"endpoint": "collector:4317"})).unwrap().0;
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.compression, Compression::Gzip);
        assert!(c.retry_on_failure.enabled);
        assert_eq!(c.retry_on_failure.initial_interval, Duration::from_secs(5));
        assert_eq!(c.retry_on_failure.max_interval, Duration::from_secs(30));
        assert_eq!(
            c.retry_on_failure.max_elapsed_time,
            Duration::from_secs(300)
        );
        assert!(c.sending_queue.enabled);
        assert_eq!(c.sending_queue.queue_size, 10);
        assert!(!c.tls.insecure);
    }

    #[test]
    fn grpc_endpoints() {
        let t = |e: &str, insecure: bool| grpc_target(e, insecure);
        let plain = t("collector:4317", false).unwrap();
        assert!(plain.tls, "host:port is TLS unless tls.insecure");
        assert_eq!((plain.host.as_str(), plain.port), ("collector", 4317));
        assert_eq!(plain.uri, "http://collector:4317");
        assert!(!t("collector:4317", true).unwrap().tls);
        assert!(!t("http://127.0.0.1:4317", false).unwrap().tls);
        assert!(t("https://c:4317", true).unwrap().tls, "the scheme wins");
        assert_eq!(t("https://c", false).unwrap().port, 443);
        assert_eq!(t("dns:///c:1234", true).unwrap().port, 1234);
        let v6 = t("[::1]:4317", true).unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.uri, "http://[::1]:4317");
        for bad in [
            "",
            "collector",
            "ftp://c:1",
            "c:4317/v1",
            "c:notaport",
            "u@c:1",
        ] {
            assert!(t(bad, true).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_endpoints() {
        let t = http_target("http://collector:4318", None).unwrap();
        assert_eq!(t.uri, "http://collector:4318/v1/metrics");
        assert!(!t.tls);
        let t = http_target("https://c/otlp/", None).unwrap();
        assert_eq!(t.uri, "https://c/otlp/v1/metrics");
        assert_eq!(t.port, 443);
        let t = http_target("ignored", Some("http://c:9/custom")).unwrap();
        assert_eq!(t.uri, "http://c:9/custom");
        assert!(http_target("collector:4318", None).is_err());
        assert!(http_target("", None).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_a_clear_message() {
        let err = grpc(json!({
            "endpoint": "collector",
            "metrics_endpoint": "http://x/v1/metrics",
            "tls": {"cert_file": "/c.pem"},
            "headers": {"bad header": "x"},
            "timeout": "0s",
            "retry_on_failure": {"initial_interval": "10s", "max_interval": "1s", "multiplier": 0.5},
            "sending_queue": {"queue_size": 0},
        }))
        .unwrap_err();
        for needle in [
            "exporters::otlp_grpc: endpoint \"collector\" has no port",
            "metrics_endpoint is an otlp_http setting",
            "tls::cert_file is set but tls::key_file is not",
            "headers: \"bad header\" is not a valid header name",
            "timeout must be greater than 0",
            "max_interval (1s) must not be less than initial_interval (10s)",
            "multiplier must be at least 1",
            "sending_queue::queue_size must be at least 1",
        ] {
            assert!(err.contains(needle), "{needle:?} not in:\n{err}");
        }
        let err = http(json!({"endpoint": "collector:4318"})).unwrap_err();
        assert!(err.contains("must start with http:// or https://"), "{err}");
        let err = http(json!({})).unwrap_err();
        assert!(err.contains("endpoint is required"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = grpc(json!({"endpoint": "c:1", "tls": {"insecur": true}})).unwrap_err();
        assert!(
            err.contains("exporters::otlp_grpc::tls: unknown field `insecur`"),
            "{err}"
        );
        let err = grpc(json!({"endpoint": "c:1", "compression": "zstd"})).unwrap_err();
        assert!(err.contains("unknown variant `zstd`"), "{err}");
        let err = grpc(json!({"endpoint": "c:1", "timeout": "soon"})).unwrap_err();
        assert!(err.contains("exporters::otlp_grpc::timeout"), "{err}");
    }

    #[test]
    fn a_disabled_queue_needs_no_size() {
        let c = grpc(json!({
            "endpoint": "c:1",
            "sending_queue": {"enabled": false, "queue_size": 0},
            "retry_on_failure": {"enabled": false, "initial_interval": "0s"},
        }));
        assert!(c.is_ok(), "{c:?}");
    }
}
