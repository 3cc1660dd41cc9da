//! What a runtime's verbose `PodSandboxStatus` adds: `info["info"]`, a JSON document whose shape
//! differs per runtime (facts.md § Runtimes).
//!
//! - containerd: `pid`, `runtimeSpec.linux.namespaces[type=network].path`, `cniResult`, `config`;
//! - CRI-O: `runtimeSpec.annotations["io.kubernetes.cri-o.CNIResult"]` (a JSON string whose
//!   `interfaces[].sandbox` is the netns path), `io.kubernetes.cri-o.HostNetwork`, and
//!   `runtimeSpec.linux.namespaces`.
//!
//! Parsing is lenient: every field is optional, and a field of an unexpected type is treated as
//! absent. Only a document that is missing or is not a JSON object is an error.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

const CRIO_CNI_RESULT: &str = "io.kubernetes.cri-o.CNIResult";
const CRIO_HOST_NETWORK: &str = "io.kubernetes.cri-o.HostNetwork";

/// What netshim takes from the verbose info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerboseInfo {
    /// The sandbox's process (containerd).
    pub pid: Option<u32>,
    /// The network namespace's bind mount, as the runtime sees it (before `host_root`).
    pub netns_path: Option<PathBuf>,
    /// The runtime's own word on host networking (CRI-O's annotation); the non-verbose
    /// `namespace_options.network == NODE` is the primary source.
    pub host_network: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerboseError {
    #[error("the verbose status has no \"info\" entry")]
    Missing,
    #[error("\"info\" is not valid JSON: {0}")]
    Json(String),
    #[error("\"info\" is JSON but not an object")]
    NotObject,
}

/// Parses `info` from a verbose `PodSandboxStatusResponse`.
pub fn parse(info: &HashMap<String, String>) -> Result<VerboseInfo, VerboseError> {
    let text = info.get("info").ok_or(VerboseError::Missing)?;
    let doc: Value = serde_json::from_str(text).map_err(|e| VerboseError::Json(e.to_string()))?;
    if !doc.is_object() {
        return Err(VerboseError::NotObject);
    }
    let spec = &doc["runtimeSpec"];
    let annotations = &spec["annotations"];
    Ok(VerboseInfo {
        pid: doc["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0),
        netns_path: crio_cni_sandbox(annotations).or_else(|| spec_network_path(spec)),
        host_network: annotations[CRIO_HOST_NETWORK]
            .as_str()
            .and_then(|s| s.parse::<bool>().ok()),
    })
}

/// `runtimeSpec.linux.namespaces[type=network].path`, when it names a path.
fn spec_network_path(spec: &Value) -> Option<PathBuf> {
    spec["linux"]["namespaces"]
        .as_array()?
        .iter()
        .filter(|ns| ns["type"].as_str() == Some("network"))
        .find_map(|ns| {
            ns["path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
}

/// The first `interfaces[].sandbox` of CRI-O's CNI result annotation.
fn crio_cni_sandbox(annotations: &Value) -> Option<PathBuf> {
    let result: Value = serde_json::from_str(annotations[CRIO_CNI_RESULT].as_str()?).ok()?;
    result["interfaces"].as_array()?.iter().find_map(|i| {
        i["sandbox"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: &str) -> HashMap<String, String> {
        HashMap::from([("info".to_string(), json.to_string())])
    }

    /// The shape containerd 1.6/1.7 returns (trimmed to what matters, plus noise around it).
    const CONTAINERD: &str = r#"{
      "pid": 4242,
      "processStatus": "running",
      "netNamespaceClosed": false,
      "image": "registry.k8s.io/pause:3.9",
      "snapshotKey": "abc",
      "runtimeHandler": "",
      "runtimeType": "io.containerd.runc.v2",
      "runtimeSpec": {
        "ociVersion": "1.1.0",
        "process": {"args": ["/pause"]},
        "linux": {
          "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/cni-5d3c3f4e-8a5b-2c4d-9e1f-0a1b2c3d4e5f"}
          ]
        }
      },
      "cniResult": {"Interfaces": {"eth0": {"IPConfigs": [{"IP": "10.244.1.7", "Gateway": "10.244.1.1"}], "Mac": "aa:bb:cc:dd:ee:ff", "Sandbox": "/var/run/netns/cni-5d3c3f4e-8a5b-2c4d-9e1f-0a1b2c3d4e5f"}}},
      "config": {"metadata": {"name": "web-0", "uid": "u-1", "namespace": "shop", "attempt": 0}, "labels": {"app": "web"}}
    }"#;

    /// The shape CRI-O returns: the CNI result is a JSON string in an annotation.
    const CRIO: &str = r#"{
      "runtimeSpec": {
        "annotations": {
          "io.kubernetes.cri-o.HostNetwork": "false",
          "io.kubernetes.cri-o.CNIResult": "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"bridge0\",\"mac\":\"aa:aa:aa:aa:aa:aa\"},{\"name\":\"eth0\",\"mac\":\"bb:bb:bb:bb:bb:bb\",\"sandbox\":\"/var/run/netns/1f2e3d4c-aaaa-bbbb-cccc-000000000001\"}],\"ips\":[{\"address\":\"10.85.0.12/16\",\"interface\":1}]}"
        },
        "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/other-path"}]}
      }
    }"#;

    #[test]
    fn containerd_gives_pid_and_namespace_path() {
        let v = parse(&info(CONTAINERD)).unwrap();
        assert_eq!(v.pid, Some(4242));
        assert_eq!(
            v.netns_path,
            Some(PathBuf::from(
                "/var/run/netns/cni-5d3c3f4e-8a5b-2c4d-9e1f-0a1b2c3d4e5f"
            ))
        );
        assert_eq!(v.host_network, None);
    }

    #[test]
    fn crio_cni_result_sandbox_wins_over_the_spec() {
        let v = parse(&info(CRIO)).unwrap();
        assert_eq!(v.pid, None);
        assert_eq!(
            v.netns_path,
            Some(PathBuf::from(
                "/var/run/netns/1f2e3d4c-aaaa-bbbb-cccc-000000000001"
            ))
        );
        assert_eq!(v.host_network, Some(false));
    }

    #[test]
    fn crio_without_cni_result_falls_back_to_the_spec() {
        let doc = r#"{"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.CNIResult": "not json"},
                      "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/x"}]}}}"#;
        assert_eq!(
            parse(&info(doc)).unwrap().netns_path,
            Some(PathBuf::from("/var/run/netns/x"))
        );
    }

    #[test]
    fn host_network_sandboxes_have_no_network_namespace() {
        let containerd = r#"{"pid": 77, "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]}}}"#;
        let v = parse(&info(containerd)).unwrap();
        assert_eq!((v.pid, v.netns_path), (Some(77), None));
        let crio = r#"{"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.HostNetwork": "true"}, "linux": {"namespaces": []}}}"#;
        let v = parse(&info(crio)).unwrap();
        assert_eq!((v.netns_path, v.host_network), (None, Some(true)));
    }

    #[test]
    fn partial_and_odd_documents_are_lenient() {
        for doc in [
            "{}",
            r#"{"pid": "12"}"#,
            r#"{"pid": -3, "runtimeSpec": 5}"#,
            r#"{"pid": 99999999999}"#,
            r#"{"runtimeSpec": {"linux": {"namespaces": "none"}}}"#,
            r#"{"runtimeSpec": {"linux": {"namespaces": [{"type": "network"}, {"type": "network", "path": ""}, 7]}}}"#,
            r#"{"runtimeSpec": {"annotations": {"io.kubernetes.cri-o.CNIResult": "{\"interfaces\": 3}", "io.kubernetes.cri-o.HostNetwork": "maybe"}}}"#,
        ] {
            assert_eq!(parse(&info(doc)).unwrap(), VerboseInfo::default(), "{doc}");
        }
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        assert_eq!(parse(&HashMap::new()), Err(VerboseError::Missing));
        assert!(matches!(
            parse(&info("{\"pid\": ")),
            Err(VerboseError::Json(_))
        ));
        assert!(matches!(parse(&info("")), Err(VerboseError::Json(_))));
        assert_eq!(parse(&info("[1, 2]")), Err(VerboseError::NotObject));
        assert_eq!(parse(&info("\"text\"")), Err(VerboseError::NotObject));
        // Deep nesting is refused by serde_json's recursion limit, as an error.
        let deep = "[".repeat(10_000);
        assert!(matches!(parse(&info(&deep)), Err(VerboseError::Json(_))));
    }
}
