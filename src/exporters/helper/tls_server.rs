//! TLS server settings (the Collector's `configtls` server part) and the rustls acceptor made
//! from them: a certificate and key from files, read again when they change (cert-manager and
//! Secret volumes rotate them in place), or a self-signed certificate made at start when none
//! is given (as the kubelet does for its serving port); client certificates checked against
//! `client_ca_file` when it is set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::tls::certificates;

/// The Collector's `tls` server settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsSettings {
    /// The serving certificate chain (PEM); needs `key_file`. Neither: a self-signed
    /// certificate is made at start, for the node's name and `localhost`.
    pub cert_file: Option<PathBuf>,
    /// The serving certificate's private key (PEM); needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM): when set, every client must show a certificate they signed.
    pub client_ca_file: Option<PathBuf>,
    /// The lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: String,
    /// How often the files are looked at for changes (their modification time and size);
    /// changed files are read again and used for new connections. Default: 1m; 0 never looks.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for ServerTlsSettings {
    fn default() -> Self {
        ServerTlsSettings {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            min_version: "1.2".into(),
            reload_interval: Duration::from_secs(60),
        }
    }
}

impl ServerTlsSettings {
    /// Every problem with these settings, each with its path under the exporter.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems
                .push("tls::cert_file is set but tls::key_file is not: both, or neither for a self-signed certificate".into()),
            (None, Some(_)) => problems
                .push("tls::key_file is set but tls::cert_file is not: both, or neither for a self-signed certificate".into()),
            _ => {}
        }
        for (what, path) in [
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("client_ca_file", &self.client_ca_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(format!("tls::{what} must not be empty when set"));
            }
        }
        if !matches!(self.min_version.as_str(), "1.2" | "1.3") {
            problems.push(format!(
                "tls::min_version: {:?} is not \"1.2\" or \"1.3\" (older versions are not offered)",
                self.min_version
            ));
        }
        problems
    }

    fn files(&self) -> Vec<&Path> {
        [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }
}

/// A TLS acceptor whose configuration can be replaced while connections are being served: each
/// new connection takes the current one.
pub struct ServerTls {
    settings: ServerTlsSettings,
    /// Names the self-signed certificate is made for.
    names: Vec<String>,
    current: RwLock<TlsAcceptor>,
    /// What the files were when last read (modification time and length of each).
    stamp: RwLock<Vec<Option<(SystemTime, u64)>>>,
}

impl ServerTls {
    /// Reads the files (or makes a self-signed certificate for `names`); fails with a message
    /// naming the file at fault.
    pub fn load(settings: &ServerTlsSettings, names: &[String]) -> Result<Arc<Self>, String> {
        let stamp = stamps(&settings.files());
        let config = server_config(settings, names)?;
        Ok(Arc::new(ServerTls {
            settings: settings.clone(),
            names: names.to_vec(),
            current: RwLock::new(TlsAcceptor::from(config)),
            stamp: RwLock::new(stamp),
        }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again if they changed since last read. A file that cannot be read or is
    /// not usable (a rotation caught half-way) keeps the configuration in use, with one log
    /// line, and is tried again at the next look. Returns whether the configuration changed.
    pub fn reload_if_changed(&self) -> bool {
        let files = self.settings.files();
        if files.is_empty() {
            return false;
        }
        let now = stamps(&files);
        if *self.stamp.read().unwrap_or_else(|e| e.into_inner()) == now {
            return false;
        }
        match server_config(&self.settings, &self.names) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    TlsAcceptor::from(config);
                *self.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
                info!("TLS certificate files changed: read again, used for new connections");
                true
            }
            Err(e) => {
                warn!(error = %e, "TLS certificate files changed but cannot be used; keeping the previous ones");
                false
            }
        }
    }

    /// Looks at the files every `reload_interval` until the task is dropped (0: never).
    pub fn spawn_reloader(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.settings.reload_interval;
        if every.is_zero() || self.settings.files().is_empty() {
            return None;
        }
        let tls = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let tls = Arc::clone(&tls);
                // Reading files blocks.
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        }))
    }
}

fn stamps(files: &[&Path]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            // A Secret volume swaps a `..data` symlink: metadata follows it to the new file.
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

fn server_config(
    settings: &ServerTlsSettings,
    names: &[String],
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if settings.min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(
                certificates(path).map_err(|e| format!("tls::client_ca_file {e}"))?,
            );
            if added == 0 {
                return Err(format!(
                    "tls::client_ca_file {}: no usable CA certificate",
                    path.display()
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls::client_ca_file {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let (chain, key) = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => (
            certificates(cert).map_err(|e| format!("tls::cert_file {e}"))?,
            PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls::key_file {}: {e}", key.display()))?,
        ),
        _ => self_signed(names)?,
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls::cert_file/key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate for `names` (DNS names or IP addresses), with its key.
fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("making a self-signed certificate: {e}"))?;
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((vec![certified.cert.der().clone()], key.into()))
}
