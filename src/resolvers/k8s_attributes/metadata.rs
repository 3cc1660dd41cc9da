//! The Kubernetes attributes netshim can take from a Pod object, named as the OpenTelemetry
//! Collector's k8sattributes processor names them, and derived the way it derives them: workload
//! names from owner references, with no extra API calls.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// Every metadata attribute `extract.metadata` may name.
pub const KNOWN: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.start_time",
    "k8s.pod.ip",
    "k8s.pod.hostname",
    "k8s.node.name",
    "k8s.deployment.name",
    "k8s.replicaset.name",
    "k8s.replicaset.uid",
    "k8s.statefulset.name",
    "k8s.statefulset.uid",
    "k8s.daemonset.name",
    "k8s.daemonset.uid",
    "k8s.job.name",
    "k8s.job.uid",
    "k8s.cronjob.name",
];

/// The Collector's defaults, plus the node (which a node agent always knows).
pub const DEFAULT: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.start_time",
    "k8s.deployment.name",
    "k8s.node.name",
];

/// Adds the attributes named in `names` that `pod` has to `out`.
pub fn extract(pod: &Pod, names: &[String], out: &mut BTreeMap<String, String>) {
    let workloads = workloads(pod);
    for name in names {
        if let Some(value) = value_of(pod, &workloads, name) {
            out.insert(name.clone(), value);
        }
    }
}

fn value_of(pod: &Pod, w: &BTreeMap<&'static str, String>, name: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    match name {
        "k8s.namespace.name" => meta.namespace.clone(),
        "k8s.pod.name" => meta.name.clone(),
        "k8s.pod.uid" => meta.uid.clone(),
        "k8s.pod.start_time" => status
            .and_then(|s| s.start_time.as_ref())
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        "k8s.pod.ip" => status.and_then(|s| s.pod_ip.clone()),
        "k8s.pod.hostname" => spec
            .and_then(|s| s.hostname.clone())
            .or_else(|| meta.name.clone()),
        "k8s.node.name" => spec.and_then(|s| s.node_name.clone()),
        other => w.get(other).cloned(),
    }
    .filter(|v| !v.is_empty())
}

/// Workload attributes from the pod's owner references (the controller first).
fn workloads(pod: &Pod) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let mut owners: Vec<_> = pod.metadata.owner_references.iter().flatten().collect();
    owners.sort_by_key(|o| o.controller != Some(true));
    for o in owners {
        match o.kind.as_str() {
            "ReplicaSet" => {
                out.entry("k8s.replicaset.name")
                    .or_insert_with(|| o.name.clone());
                out.entry("k8s.replicaset.uid")
                    .or_insert_with(|| o.uid.clone());
                if let Some(d) =
                    strip_suffix(&o.name, |s| s.chars().all(|c| c.is_ascii_alphanumeric()))
                {
                    out.entry("k8s.deployment.name").or_insert(d);
                }
            }
            "StatefulSet" => {
                out.entry("k8s.statefulset.name")
                    .or_insert_with(|| o.name.clone());
                out.entry("k8s.statefulset.uid")
                    .or_insert_with(|| o.uid.clone());
            }
            "DaemonSet" => {
                out.entry("k8s.daemonset.name")
                    .or_insert_with(|| o.name.clone());
                out.entry("k8s.daemonset.uid")
                    .or_insert_with(|| o.uid.clone());
            }
            "Job" => {
                out.entry("k8s.job.name").or_insert_with(|| o.name.clone());
                out.entry("k8s.job.uid").or_insert_with(|| o.uid.clone());
                // A CronJob names its Jobs `<cronjob>-<scheduled time in minutes>`.
                if let Some(c) = strip_suffix(&o.name, |s| s.chars().all(|c| c.is_ascii_digit())) {
                    out.entry("k8s.cronjob.name").or_insert(c);
                }
            }
            _ => {}
        }
    }
    out
}

/// `name` without its last `-suffix`, when the suffix is non-empty and `ok(suffix)`.
fn strip_suffix(name: &str, ok: impl Fn(&str) -> bool) -> Option<String> {
    let (base, suffix) = name.rsplit_once('-')?;
    (!base.is_empty() && !suffix.is_empty() && ok(suffix)).then(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner(kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    fn pod_with(owners: Vec<OwnerReference>) -> Pod {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-7d4b9c6f5-x2x9z", "namespace": "shop", "uid": "u-1"},
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {"podIP": "10.1.2.3", "startTime": "2026-01-01T00:00:05Z"}
        }))
        .unwrap();
        pod.metadata.owner_references = Some(owners);
        pod
    }

    fn all(pod: &Pod) -> BTreeMap<String, String> {
        let names: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
        let mut out = BTreeMap::new();
        extract(pod, &names, &mut out);
        out
    }

    #[test]
    fn deployment_from_a_replicaset_owner() {
        let a = all(&pod_with(vec![owner("ReplicaSet", "web-7d4b9c6f5", true)]));
        assert_eq!(a["k8s.deployment.name"], "web");
        assert_eq!(a["k8s.replicaset.name"], "web-7d4b9c6f5");
        assert_eq!(a["k8s.replicaset.uid"], "uid-web-7d4b9c6f5");
        assert_eq!(a["k8s.pod.name"], "web-7d4b9c6f5-x2x9z");
        assert_eq!(a["k8s.namespace.name"], "shop");
        assert_eq!(a["k8s.pod.uid"], "u-1");
        assert_eq!(a["k8s.node.name"], "node-a");
        assert_eq!(a["k8s.pod.ip"], "10.1.2.3");
        assert_eq!(a["k8s.pod.hostname"], "web-7d4b9c6f5-x2x9z");
        assert_eq!(a["k8s.pod.start_time"], "2026-01-01T00:00:05Z");
        assert!(!a.contains_key("k8s.statefulset.name"));
    }

    #[test]
    fn statefulset_daemonset_job_and_cronjob() {
        let a = all(&pod_with(vec![owner("StatefulSet", "db", true)]));
        assert_eq!(a["k8s.statefulset.name"], "db");
        assert!(!a.contains_key("k8s.deployment.name"));
        let a = all(&pod_with(vec![owner("DaemonSet", "agent", true)]));
        assert_eq!(a["k8s.daemonset.name"], "agent");
        let a = all(&pod_with(vec![owner("Job", "backup-29012345", true)]));
        assert_eq!(a["k8s.job.name"], "backup-29012345");
        assert_eq!(a["k8s.cronjob.name"], "backup");
        let a = all(&pod_with(vec![owner("Job", "migrate-db", true)]));
        assert_eq!(a["k8s.job.name"], "migrate-db");
        assert!(!a.contains_key("k8s.cronjob.name"));
    }

    #[test]
    fn odd_owner_names_derive_nothing() {
        let a = all(&pod_with(vec![
            owner("ReplicaSet", "plain", true),
            owner("Node", "n", false),
        ]));
        assert_eq!(a["k8s.replicaset.name"], "plain");
        assert!(!a.contains_key("k8s.deployment.name"));
        let a = all(&pod_with(vec![owner("ReplicaSet", "-abc", true)]));
        assert!(!a.contains_key("k8s.deployment.name"));
        let a = all(&pod_with(vec![]));
        assert!(a.keys().all(|k| !k.contains("set") && !k.contains("job")));
    }

    #[test]
    fn only_the_named_attributes_are_extracted() {
        let pod = pod_with(vec![owner("ReplicaSet", "web-abc12", true)]);
        let mut out = BTreeMap::new();
        extract(&pod, &["k8s.deployment.name".to_string()], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out["k8s.deployment.name"], "web");
    }
}
