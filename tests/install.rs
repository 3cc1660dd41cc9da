//! The install manifests against the agent itself: the ConfigMap's configuration is valid, and
//! the DaemonSet's capabilities are exactly enough — the real binary, run with only those
//! capabilities (`setpriv`), finds and reads bind-mounted and process-held pod namespaces, and
//! loses what each capability is there for when that one is taken away. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

fn manifest(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("install/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The capabilities the DaemonSet adds (its `capabilities.add` list).
fn daemonset_capabilities() -> Vec<String> {
    let ds: serde_json::Value = serde_saphyr::from_str(&manifest("daemonset.yaml")).unwrap();
    let sc = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_lowercase())
        .collect()
}

#[test]
fn the_configmap_configuration_is_valid() {
    let cm: serde_json::Value = serde_saphyr::from_str(&manifest("configmap.yaml")).unwrap();
    let config = cm["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap");
    let dir = std::env::temp_dir().join(format!("nst-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .args(["validate", "-c"])
        .arg(&path)
        .env("K8S_NODE_NAME", "node-a") // the downward API sets it in the DaemonSet
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `netshim discover -o json` with only `caps` (no others, not even in the bounding set).
fn discover_with(caps: &[String], config: &Path) -> serde_json::Value {
    let bounding = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("setpriv")
        .arg(format!("--bounding-set={bounding}"))
        .arg("--inh-caps=-all")
        .arg(env!("CARGO_BIN_EXE_netshim"))
        .args(["discover", "-o", "json", "-c"])
        .arg(config)
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn peer_in(doc: &serde_json::Value, inode: u64) -> Option<String> {
    doc["pods"]
        .as_array()?
        .iter()
        .find(|p| p["netns"]["inode"] == inode)?["interfaces"][0]["peer"]["name"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn the_daemonsets_capabilities_are_exactly_enough() {
    let caps = daemonset_capabilities();
    assert_eq!(
        caps,
        ["sys_admin", "sys_ptrace"],
        "update this test's evidence with the manifest"
    );

    let ns = Netns::new("nst-caps-mounted");
    let _l1 = veth("lxcnstcaps0", "eth0", &ns.name);
    let holder = process_with_own_netns();
    let _l2 = veth("lxcnstcaps1", "eth0", &holder.pid().to_string());
    let mounted = inode("/run/netns/nst-caps-mounted");
    let held = inode(&format!("/proc/{}/ns/net", holder.pid()));

    let dir: PathBuf = std::env::temp_dir().join(format!("nst-caps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "receivers:\n  netns:\n    paths: [/run/netns]\n    proc_path: /proc\nresolvers:\n  interfaces:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [debug]\n",
    )
    .unwrap();

    // With the DaemonSet's two: everything.
    let all = discover_with(&caps, &config);
    assert_eq!(peer_in(&all, mounted).as_deref(), Some("lxcnstcaps0"));
    assert_eq!(peer_in(&all, held).as_deref(), Some("lxcnstcaps1"));

    // Without SYS_ADMIN: no setns, so no namespace can be read at all.
    let no_admin = discover_with(&["sys_ptrace".to_string()], &config);
    assert_eq!(peer_in(&no_admin, mounted), None);
    assert_eq!(peer_in(&no_admin, held), None);

    // Without SYS_PTRACE: other processes' /proc/PID/ns/net cannot be opened, so namespaces
    // held only by a process are not found; bind mounts still are.
    let no_ptrace = discover_with(&["sys_admin".to_string()], &config);
    assert_eq!(peer_in(&no_ptrace, mounted).as_deref(), Some("lxcnstcaps0"));
    assert_eq!(peer_in(&no_ptrace, held), None);

    let _ = std::fs::remove_dir_all(&dir);
}
