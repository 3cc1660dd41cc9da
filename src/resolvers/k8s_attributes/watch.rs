//! The API client and the watch of this node's pods that keeps the reflector's store current.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{debug, info, warn};

use super::AuthType;
use super::associate::trim;

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

/// Watches the pods of `node` into `writer` until the task is aborted. The list and watch ask
/// for this node only (`spec.nodeName`); errors are retried with kube's default backoff (a 410
/// Gone makes the watcher list again) and logged once per change of state.
pub async fn run(
    client: Client,
    node: String,
    keep_annotations: bool,
    writer: Writer<Pod>,
    id: String,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = watcher(api, config)
        .default_backoff()
        .modify(move |pod: &mut Pod| trim(pod, keep_annotations))
        .reflect(writer);
    let mut stream = std::pin::pin!(stream);
    let mut failing = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                if failing {
                    info!(resolver = %id, "pod watch recovered");
                    failing = false;
                }
                if matches!(event, watcher::Event::InitDone) {
                    debug!(resolver = %id, node = %node, "pod list complete");
                }
            }
            Err(e) => {
                if !failing {
                    warn!(resolver = %id, error = %e, "pod watch failed; keeping the pods known so far and retrying with backoff");
                    failing = true;
                }
            }
        }
    }
}
