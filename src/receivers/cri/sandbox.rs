//! From the runtime's answers to netshim's [`Sandbox`] records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::model::{Container, NetnsRef, PodIdentity, Sandbox};
use crate::sys::netns::stat_key;

use super::endpoint::under_root;
use super::proto::{self, NamespaceMode};
use super::verbose::{self, VerboseInfo};

/// What one `PodSandboxStatus(verbose)` said, kept while the sandbox is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxDetail {
    /// `linux.namespaces.options.network == NODE`, or the runtime's own annotation.
    pub host_network: bool,
    /// `None` when the verbose info was missing or did not parse.
    pub verbose: Option<VerboseInfo>,
}

impl SandboxDetail {
    /// Reads a status answer. Problems are logged once, here: the result is cached.
    pub fn from_status(id: &str, response: proto::PodSandboxStatusResponse) -> Self {
        let node_network = response
            .status
            .as_ref()
            .and_then(|s| s.linux.as_ref())
            .and_then(|l| l.namespaces.as_ref())
            .and_then(|n| n.options.as_ref())
            .is_some_and(|o| o.network == NamespaceMode::Node as i32);
        let verbose = match verbose::parse(&response.info) {
            Ok(v) => Some(v),
            Err(e) => {
                warn!(sandbox = %id, error = %e, "verbose sandbox status unusable; reported from the plain status");
                None
            }
        };
        let host_network =
            node_network || verbose.as_ref().and_then(|v| v.host_network) == Some(true);
        if !host_network
            && verbose
                .as_ref()
                .is_some_and(|v| v.netns_path.is_none() && v.pid.is_none())
        {
            warn!(sandbox = %id, "the runtime names no network namespace nor process for this sandbox");
        }
        SandboxDetail {
            host_network,
            verbose,
        }
    }
}

/// One record per listed sandbox, with its containers.
pub fn build_sandboxes(
    sandboxes: &[proto::PodSandbox],
    containers: &[proto::Container],
    details: &HashMap<String, SandboxDetail>,
    host_root: &Path,
) -> Vec<Sandbox> {
    let mut by_sandbox: HashMap<&str, Vec<Container>> = HashMap::new();
    for c in containers {
        by_sandbox
            .entry(c.pod_sandbox_id.as_str())
            .or_default()
            .push(Container {
                id: c.id.clone(),
                name: c
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                image: image_name(c),
            });
    }
    sandboxes
        .iter()
        .map(|sb| {
            let detail = details.get(&sb.id);
            let host_network = detail.is_some_and(|d| d.host_network);
            let verbose = detail.and_then(|d| d.verbose.as_ref());
            let meta = sb.metadata.clone().unwrap_or_default();
            let mut containers = by_sandbox.remove(sb.id.as_str()).unwrap_or_default();
            containers.sort_by(|a, b| a.name.cmp(&b.name));
            Sandbox {
                // The node's namespace is never a pod's.
                netns: if host_network {
                    None
                } else {
                    verbose.and_then(|v| netns_of(&sb.id, v, host_root))
                },
                pid: verbose.and_then(|v| v.pid),
                pod: Some(PodIdentity {
                    name: non_empty(meta.name),
                    namespace: non_empty(meta.namespace),
                    uid: non_empty(meta.uid),
                    attributes: BTreeMap::new(),
                }),
                sandbox_id: Some(sb.id.clone()),
                host_network,
                containers,
                labels: sb.labels.clone().into_iter().collect(),
                annotations: sb.annotations.clone().into_iter().collect(),
            }
        })
        .collect()
}

/// The sandbox's namespace: the runtime's bind mount, else its process's namespace file.
fn netns_of(id: &str, v: &VerboseInfo, host_root: &Path) -> Option<NetnsRef> {
    let candidates = v.netns_path.iter().map(|p| under_root(host_root, p)).chain(
        v.pid
            .map(|pid| under_root(host_root, &PathBuf::from(format!("/proc/{pid}/ns/net")))),
    );
    for path in candidates {
        match stat_key(&path) {
            Ok(key) => {
                return Some(NetnsRef {
                    path: path.into(),
                    inode: key.inode,
                    dev: key.dev,
                });
            }
            Err(e) => {
                debug!(sandbox = %id, path = %path.display(), error = %e, "namespace path not usable")
            }
        }
    }
    None
}

/// The image a container runs, as people name it: the digested reference when the runtime
/// gives one and the plain image field is only an id.
fn image_name(c: &proto::Container) -> String {
    let image = c
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .unwrap_or_default();
    if (image.is_empty() || image.starts_with("sha256:")) && !c.image_ref.is_empty() {
        c.image_ref.clone()
    } else {
        image.to_string()
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{
        ContainerMetadata, ImageSpec, LinuxPodSandboxStatus, Namespace, NamespaceOption,
        PodSandboxMetadata, PodSandboxStatus, PodSandboxStatusResponse,
    };

    fn status(network: NamespaceMode, info: Option<&str>) -> PodSandboxStatusResponse {
        PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                linux: Some(LinuxPodSandboxStatus {
                    namespaces: Some(Namespace {
                        options: Some(NamespaceOption {
                            network: network as i32,
                            ..Default::default()
                        }),
                    }),
                }),
                ..Default::default()
            }),
            info: info
                .map(|i| HashMap::from([("info".to_string(), i.to_string())]))
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn node_network_mode_means_host_network() {
        let d = SandboxDetail::from_status("a", status(NamespaceMode::Node, Some(r#"{"pid": 5}"#)));
        assert!(d.host_network);
        let d = SandboxDetail::from_status("b", status(NamespaceMode::Pod, Some(r#"{"pid": 5}"#)));
        assert!(!d.host_network);
        assert_eq!(d.verbose.unwrap().pid, Some(5));
    }

    #[test]
    fn unusable_verbose_info_keeps_the_plain_status() {
        let d = SandboxDetail::from_status("c", status(NamespaceMode::Pod, Some("{broken")));
        assert_eq!(
            d,
            SandboxDetail {
                host_network: false,
                verbose: None
            }
        );
        let d = SandboxDetail::from_status("d", status(NamespaceMode::Node, None));
        assert!(d.host_network);
        let d = SandboxDetail::from_status("e", PodSandboxStatusResponse::default());
        assert!(!d.host_network);
    }

    #[test]
    fn sandboxes_carry_identity_containers_and_the_namespace_found() {
        let sb = proto::PodSandbox {
            id: "sb1".into(),
            metadata: Some(PodSandboxMetadata {
                name: "web-0".into(),
                uid: "u-1".into(),
                namespace: "shop".into(),
                attempt: 0,
            }),
            labels: HashMap::from([("app".to_string(), "web".to_string())]),
            ..Default::default()
        };
        let host = proto::PodSandbox {
            id: "sb2".into(),
            ..Default::default()
        };
        let c =
            |id: &str, name: &str, sandbox: &str, image: &str, image_ref: &str| proto::Container {
                id: id.into(),
                pod_sandbox_id: sandbox.into(),
                metadata: Some(ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                image_ref: image_ref.into(),
                ..Default::default()
            };
        let containers = vec![
            c("c2", "sidecar", "sb1", "docker.io/envoy:1", ""),
            c(
                "c1",
                "app",
                "sb1",
                "sha256:abc",
                "docker.io/library/nginx@sha256:abc",
            ),
            c("c3", "other", "sb9", "x", ""),
        ];
        // The namespace is this process's own (any readable nsfs file will do for the test).
        let own = format!("/proc/{}/ns/net", std::process::id());
        let details = HashMap::from([
            (
                "sb1".to_string(),
                SandboxDetail {
                    host_network: false,
                    verbose: Some(VerboseInfo {
                        pid: Some(std::process::id()),
                        netns_path: Some("/nonexistent/netns".into()),
                        host_network: None,
                    }),
                },
            ),
            (
                "sb2".to_string(),
                SandboxDetail {
                    host_network: true,
                    verbose: Some(VerboseInfo {
                        pid: Some(std::process::id()),
                        ..Default::default()
                    }),
                },
            ),
        ]);
        let out = build_sandboxes(&[sb, host], &containers, &details, Path::new("/"));
        assert_eq!(out.len(), 2);
        let pod = out[0].pod.as_ref().unwrap();
        assert_eq!(pod.name.as_deref(), Some("web-0"));
        assert_eq!(pod.namespace.as_deref(), Some("shop"));
        assert_eq!(pod.uid.as_deref(), Some("u-1"));
        assert_eq!(out[0].sandbox_id.as_deref(), Some("sb1"));
        // The bind mount does not exist: the process's namespace file is used.
        assert_eq!(*out[0].netns.as_ref().unwrap().path, *PathBuf::from(own));
        assert_eq!(out[0].labels["app"], "web");
        let names: Vec<_> = out[0]
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("app", "docker.io/library/nginx@sha256:abc"),
                ("sidecar", "docker.io/envoy:1")
            ]
        );
        // Host network: no namespace, whatever the process.
        assert!(out[1].host_network);
        assert!(out[1].netns.is_none());
        let empty = out[1].pod.as_ref().unwrap();
        assert_eq!((empty.name.as_ref(), empty.uid.as_ref()), (None, None));
    }
}
