//! The API client and the watch of this node's pods that keeps the reflector's store current.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

pub use crate::kube_api::client;
use tracing::{debug, info, warn};

use super::associate::trim;

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
