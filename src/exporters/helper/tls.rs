//! TLS client settings (the Collector's `configtls` client part) and the rustls client
//! configuration built from them: ring, no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tracing::warn;

/// The Collector's `tls` client settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Plaintext to an endpoint whose form does not say (default false: TLS). Which endpoints
    /// that is, is the exporter's rule (OTLP: a gRPC `host:port`).
    pub insecure: bool,
    /// Accept any server certificate (signatures are still checked). For tests only.
    pub insecure_skip_verify: bool,
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name checked against the server's certificate (and sent as SNI) instead of the
    /// endpoint's host.
    pub server_name_override: Option<String>,
}

impl TlsSettings {
    /// Every problem with these settings, each with its path under the exporter.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                problems.push("tls::cert_file is set but tls::key_file is not: both are needed for a client certificate".into())
            }
            (None, Some(_)) => {
                problems.push("tls::key_file is set but tls::cert_file is not: both are needed for a client certificate".into())
            }
            _ => {}
        }
        for (what, path) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(format!("tls::{what} must not be empty when set"));
            }
        }
        if let Some(name) = &self.server_name_override
            && ServerName::try_from(name.as_str()).is_err()
        {
            problems.push(format!(
                "tls::server_name_override {name:?} is not a valid DNS name or IP address"
            ));
        }
        problems
    }

    /// What a connector needs to reach `host` over TLS: the client configuration (reads the
    /// files) and the name to verify and send as SNI (`server_name_override`, else `host`).
    pub fn client(
        &self,
        host: &str,
        alpn: &[&[u8]],
    ) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
        let name = self
            .server_name_override
            .clone()
            .unwrap_or_else(|| host.to_string());
        let name = ServerName::try_from(name.clone())
            .map_err(|e| format!("TLS server name {name:?}: {e}"))?;
        Ok((client_config(self, alpn)?, name))
    }
}

/// Builds the client configuration: trust `ca_file` when given, else the system's roots
/// (`rustls-native-certs`: the files OpenSSL would read, without OpenSSL); a client
/// certificate when `cert_file`/`key_file` are given; `alpn` offered in the handshake.
pub fn client_config(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(
                provider.signature_verification_algorithms,
            )))
    } else {
        builder.with_root_certificates(roots(settings.ca_file.as_deref())?)
    };
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls::key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls::cert_file/key_file: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let (added, _) = store.add_parsable_certificates(certificates(path)?);
            if added == 0 {
                return Err(format!(
                    "tls::ca_file {}: no usable CA certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                warn!(error = %e, "reading the system's CA certificates");
            }
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                warn!(
                    "no system CA certificates found: TLS connections will fail unless tls::ca_file is set"
                );
            }
        }
    }
    Ok(store)
}

/// The PEM certificates in `path`; the error names the file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// `tls.insecure_skip_verify`: any certificate is accepted for any name; the handshake's
/// signatures are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyServerCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
