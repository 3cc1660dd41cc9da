//! Which API pod a sandbox is, and what it adds.
//!
//! Association order: the pod uid when the sandbox has one (from the runtime or the cgroup
//! path) — exact, and stable across IP reuse; only a sandbox with no uid is matched by IP (the
//! addresses found inside its namespace against `status.podIPs`). A sandbox whose uid the API
//! does not know is left alone rather than matched by IP: the IP may already belong to another
//! pod. Host-network pods and finished pods are never matched by IP: they share the node's IP
//! or may have handed theirs on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::model::{Batch, PodIdentity, PodNetwork};

use super::metadata;
use super::rules::Rules;

/// What to extract from each associated pod.
pub struct Extraction {
    pub metadata: Vec<String>,
    pub labels: Rules,
    pub annotations: Rules,
}

/// How a cycle's association went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Associated {
    pub by_uid: usize,
    pub by_ip: usize,
    pub unmatched: usize,
}

/// The API's pods on this node, indexed for association.
pub struct PodIndex<'a> {
    by_uid: HashMap<&'a str, &'a Pod>,
    by_ip: HashMap<IpAddr, &'a Pod>,
}

impl<'a> PodIndex<'a> {
    /// Indexes the pods of `node` among `pods`. The watch already asks for this node only, but
    /// the filter is applied here too, so that nothing depends on the server honouring it.
    pub fn new(pods: &'a [Arc<Pod>], node: &str) -> Self {
        let mut by_uid = HashMap::new();
        let mut by_ip = HashMap::new();
        for pod in pods.iter().map(Arc::as_ref) {
            let spec = pod.spec.as_ref();
            if spec.and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            if let Some(uid) = pod.metadata.uid.as_deref() {
                by_uid.insert(uid, pod);
            }
            let host_network = spec.and_then(|s| s.host_network) == Some(true);
            let status = pod.status.as_ref();
            let finished = matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if host_network || finished {
                continue;
            }
            let ips = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.and_then(|s| s.pod_ip.as_deref()));
            for ip in ips {
                if let Ok(ip) = ip.parse::<IpAddr>() {
                    by_ip.insert(ip, pod);
                }
            }
        }
        PodIndex { by_uid, by_ip }
    }

    fn find(&self, pod: &PodNetwork) -> Option<(&'a Pod, bool)> {
        match pod.sandbox.pod.as_ref().and_then(|p| p.uid.as_deref()) {
            Some(uid) => self.by_uid.get(uid).map(|p| (*p, true)),
            None => pod
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter())
                .find_map(|a| self.by_ip.get(&a.ip))
                .map(|p| (*p, false)),
        }
    }
}

/// Adds identity, attributes and the authoritative host-network flag to every sandbox of
/// `batch` the index knows.
pub fn enrich(batch: &mut Batch, index: &PodIndex<'_>, what: &Extraction) -> Associated {
    let mut stats = Associated::default();
    for pod in &mut batch.pods {
        let Some((api, by_uid)) = index.find(pod) else {
            stats.unmatched += 1;
            continue;
        };
        if by_uid {
            stats.by_uid += 1;
        } else {
            stats.by_ip += 1;
        }
        let identity = pod.sandbox.pod.get_or_insert_with(PodIdentity::default);
        let meta = &api.metadata;
        if identity.name.is_none() {
            identity.name = meta.name.clone();
        }
        if identity.namespace.is_none() {
            identity.namespace = meta.namespace.clone();
        }
        if identity.uid.is_none() {
            identity.uid = meta.uid.clone();
        }
        metadata::extract(api, &what.metadata, &mut identity.attributes);
        what.labels
            .apply(meta.labels.as_ref(), &mut identity.attributes);
        what.annotations
            .apply(meta.annotations.as_ref(), &mut identity.attributes);

        let host_network = api.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        pod.sandbox.host_network = host_network;
        if host_network {
            // The node's interfaces are never a pod's.
            pod.interfaces.clear();
        }
    }
    stats
}

/// Drops what netshim never reads from a watched pod before it is stored: managed fields,
/// container specs, volumes, statuses of containers, and annotations unless some are extracted.
pub fn trim(pod: &mut Pod, keep_annotations: bool) {
    pod.metadata.managed_fields = None;
    if !keep_annotations {
        pod.metadata.annotations = None;
    }
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name,
            host_network: spec.host_network,
            hostname: spec.hostname,
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            pod_ips: status.pod_ips,
            start_time: status.start_time,
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IfAddress, Interface, Link, NetnsRef, Sandbox};
    use crate::resolvers::k8s_attributes::rules::FieldRule;

    fn api_pod(
        name: &str,
        uid: &str,
        node: &str,
        ip: &str,
        host_network: bool,
        phase: &str,
    ) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "shop", "uid": uid,
                             "labels": {"app": name}, "annotations": {"note": "x"},
                             "managedFields": [{"manager": "kubectl"}]},
                "spec": {"nodeName": node, "hostNetwork": host_network,
                         "containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                           "containerStatuses": []}
            }))
            .unwrap(),
        )
    }

    fn sandbox(uid: Option<&str>, ip: Option<&str>) -> PodNetwork {
        let mut p = PodNetwork::new(Sandbox {
            netns: Some(NetnsRef {
                path: std::path::Path::new("/run/netns/x").into(),
                inode: 1,
                dev: 1,
            }),
            pod: uid.map(|u| PodIdentity {
                uid: Some(u.into()),
                ..PodIdentity::default()
            }),
            ..Sandbox::default()
        });
        if let Some(ip) = ip {
            p.interfaces.push(Interface::new(
                Link {
                    name: "eth0".into(),
                    ifindex: 2,
                    kind: "veth".into(),
                    mac: None,
                    addresses: [IfAddress {
                        ip: ip.parse().unwrap(),
                        prefix_len: 24,
                    }]
                    .into(),
                    peer: None,
                },
                Default::default(),
            ));
        }
        p
    }

    fn extraction() -> Extraction {
        Extraction {
            metadata: metadata::DEFAULT.iter().map(|s| s.to_string()).collect(),
            labels: Rules::compile(
                &[FieldRule {
                    key: Some("app".into()),
                    ..FieldRule::default()
                }],
                "k8s.pod.labels.",
            ),
            annotations: Rules::compile(&[], "k8s.pod.annotations."),
        }
    }

    #[test]
    fn uid_first_then_ip_and_never_across_nodes_or_host_network() {
        let pods = vec![
            api_pod("a", "ua", "node-a", "10.0.0.1", false, "Running"),
            api_pod("b", "ub", "node-a", "10.0.0.2", false, "Running"),
            api_pod("elsewhere", "uc", "node-b", "10.0.0.3", false, "Running"),
            api_pod("hostnet", "ud", "node-a", "192.0.2.10", true, "Running"),
            api_pod("done", "ue", "node-a", "10.0.0.5", false, "Succeeded"),
        ];
        let index = PodIndex::new(&pods, "node-a");
        let mut batch = Batch {
            pods: vec![
                sandbox(Some("ua"), Some("10.0.0.2")), // uid wins over an IP of another pod
                sandbox(None, Some("10.0.0.2")),       // by IP
                sandbox(None, Some("10.0.0.3")),       // that pod is on another node
                sandbox(None, Some("192.0.2.10")),     // host-network pods are not matched by IP
                sandbox(Some("uz"), Some("10.0.0.1")), // unknown uid: not matched by IP either
                sandbox(None, Some("10.0.0.5")),       // finished pod: its IP may be reused
                sandbox(Some("ud"), None),             // host network, by uid
            ],
        };
        let stats = enrich(&mut batch, &index, &extraction());
        assert_eq!(
            stats,
            Associated {
                by_uid: 2,
                by_ip: 1,
                unmatched: 4
            }
        );
        let name = |i: usize| {
            batch.pods[i]
                .sandbox
                .pod
                .as_ref()
                .and_then(|p| p.name.clone())
        };
        assert_eq!(name(0).as_deref(), Some("a"));
        assert_eq!(name(1).as_deref(), Some("b"));
        let b = batch.pods[1].sandbox.pod.as_ref().unwrap();
        assert_eq!(b.uid.as_deref(), Some("ub"));
        assert_eq!(b.namespace.as_deref(), Some("shop"));
        assert_eq!(b.attributes["k8s.pod.labels.app"], "b");
        assert_eq!(b.attributes["k8s.node.name"], "node-a");
        for i in 2..6 {
            assert_eq!(name(i), None, "sandbox {i}");
        }
        let h = &batch.pods[6];
        assert!(h.sandbox.host_network);
        assert!(h.interfaces.is_empty());
    }

    #[test]
    fn the_api_decides_host_networking() {
        let pods = vec![api_pod("h", "uh", "n", "192.0.2.1", true, "Running")];
        let index = PodIndex::new(&pods, "n");
        let mut batch = Batch {
            pods: vec![sandbox(Some("uh"), Some("10.9.9.9"))],
        };
        enrich(&mut batch, &index, &extraction());
        assert!(batch.pods[0].sandbox.host_network);
        assert!(
            batch.pods[0].interfaces.is_empty(),
            "never the node's interfaces"
        );
    }

    #[test]
    fn trim_keeps_only_what_is_read() {
        let mut pod = (*api_pod("a", "ua", "n", "10.0.0.1", false, "Running")).clone();
        trim(&mut pod, false);
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.annotations.is_none());
        assert_eq!(pod.metadata.labels.as_ref().unwrap()["app"], "a");
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.containers.is_empty());
        assert_eq!(spec.node_name.as_deref(), Some("n"));
        assert_eq!(
            pod.status.as_ref().unwrap().pod_ip.as_deref(),
            Some("10.0.0.1")
        );
        assert!(pod.status.as_ref().unwrap().container_statuses.is_none());
        let mut pod = (*api_pod("a", "ua", "n", "10.0.0.1", false, "Running")).clone();
        trim(&mut pod, true);
        assert!(pod.metadata.annotations.is_some());
    }
}
