//! Reaching the Kubernetes API server, for every component that does (the `k8s_attributes`
//! resolver's pod watch, the Prometheus exporter's token and access reviews): one way to say
//! how, one client built from it.

use kube::Client;
use serde::Deserialize;

/// How a component reaches the API server (the Collector's `auth_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    /// The pod's service account (in-cluster configuration).
    #[default]
    ServiceAccount,
    /// `KUBECONFIG`, else `~/.kube/config`.
    KubeConfig,
    /// No credentials: a plain URL in `endpoint` (`kubectl proxy`, a test server).
    None,
}

/// A client as `auth_type` says: in-cluster service account, a kubeconfig, or a plain URL.
pub async fn client(auth: AuthType, endpoint: Option<&str>) -> Result<Client, String> {
    let mut config = match auth {
        AuthType::ServiceAccount => kube::Config::incluster()
            .map_err(|e| format!("in-cluster configuration (auth_type: serviceAccount): {e}"))?,
        AuthType::KubeConfig => kube::Config::from_kubeconfig(&Default::default())
            .await
            .map_err(|e| {
                format!("kubeconfig (auth_type: kubeConfig; KUBECONFIG or ~/.kube/config): {e}")
            })?,
        AuthType::None => {
            let url = endpoint.ok_or("auth_type: none needs `endpoint`")?;
            let url = url.parse().map_err(|e| format!("endpoint `{url}`: {e}"))?;
            kube::Config::new(url)
        }
    };
    // The watcher retries with its own backoff and netshim logs each change of state; the
    // client's own silent retries of 503/429/504 would hide an outage for minutes.
    config.default_retry = false;
    Client::try_from(config).map_err(|e| format!("building the API client: {e}"))
}
