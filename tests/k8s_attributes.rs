//! The `k8s_attributes` resolver end to end: real pod namespaces (netns + veth made here, with
//! addresses that match the API pods' IPs) against a fake Kubernetes API on loopback. No
//! kube-apiserver can run on the build machine; the fake (tests/support/fake_kube.rs) behaves
//! like PyPI's kmock where it matters: it ignores field selectors and replays every existing
//! pod as ADDED on each watch, so these tests also prove the resolver depends on neither.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::time::Duration;

use netshim::health::Health;
use netshim::model::{Batch, PodNetwork};
use netshim::receivers::netns::{Config as NetnsConfig, NetnsReceiver};
use netshim::resolvers::interfaces::{Config as InterfacesConfig, InterfaceMapper};
use netshim::resolvers::k8s_attributes::{AuthType, Config, K8sAttributesResolver};
use netshim::resolvers::{Resolver, StartContext};
use serde_json::json;
use support::fake_kube::{FakeKube, pod};
use support::*;

/// A pod namespace with `eth0` at `ip/30`, its host end at the other address of the /30.
fn pod_netns(name: &str, host: &str, ip: &str) -> (Netns, HostLink) {
    let ns = Netns::new(name);
    let link = veth(host, "eth0", &ns.name);
    ns.ip(&["addr", "add", &format!("{ip}/30"), "dev", "eth0"]);
    (ns, link)
}

fn owned_by(mut p: serde_json::Value, kind: &str, owner: &str) -> serde_json::Value {
    p["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": format!("uid-{owner}"), "controller": true
    }]);
    p
}

fn resolver_config(url: &str) -> Config {
    Config {
        auth_type: AuthType::None,
        endpoint: Some(url.to_string()),
        node_name: Some("node-a".into()),
        wait_for_metadata_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// One cycle as the agent runs it: netns scan, interfaces, k8s attributes.
async fn cycle(
    mapper: &mut Option<InterfaceMapper>,
    k8s: &K8sAttributesResolver,
) -> Vec<PodNetwork> {
    let mut m = mapper
        .take()
        .unwrap_or_else(|| InterfaceMapper::new(InterfacesConfig::default()));
    let (m, mut batch) = tokio::task::spawn_blocking(move || {
        let receiver = NetnsReceiver::new(NetnsConfig {
            scan_proc: false,
            ..NetnsConfig::default()
        });
        let mut batch = Batch::from_sandboxes(&receiver.scan_blocking().expect("scan"));
        m.resolve(&mut batch).expect("interfaces");
        (m, batch)
    })
    .await
    .unwrap();
    *mapper = Some(m);
    k8s.resolve(&mut batch).await.expect("k8s_attributes");
    batch.pods
}

fn name_at(pods: &[PodNetwork], netns: &str) -> Option<String> {
    let ino = inode(netns);
    pods.iter()
        .find(|p| p.sandbox.netns.as_ref().is_some_and(|n| n.inode == ino))
        .and_then(|p| p.sandbox.pod.as_ref()?.name.clone())
}

async fn eventually(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_associates_netns_pods_with_api_pods_by_ip() {
    let (_a, _la) = pod_netns("nst-k8s-web", "lxcnstk8s0", "169.254.91.2");
    let (_b, _lb) = pod_netns("nst-k8s-db", "lxcnstk8s1", "169.254.91.6");
    let fake = FakeKube::start().await;
    let mut web = owned_by(
        pod(
            "shop",
            "web-5d8f7c9b4-abcde",
            "uid-web",
            "node-a",
            &["169.254.91.2"],
        ),
        "ReplicaSet",
        "web-5d8f7c9b4",
    );
    web["metadata"]["labels"] = json!({"app": "web", "tier": "front"});
    fake.add_pod(web);
    fake.add_pod(owned_by(
        pod("shop", "db-0", "uid-db", "node-a", &["169.254.91.6"]),
        "StatefulSet",
        "db",
    ));
    // The same IP on another node: the fake ignores the field selector, the resolver must not.
    fake.add_pod(pod(
        "shop",
        "elsewhere",
        "uid-else",
        "node-b",
        &["169.254.91.6"],
    ));
    // A host-network pod carries the node's IP: never matched by IP.
    let mut hostnet = pod(
        "kube-system",
        "hostnet",
        "uid-host",
        "node-a",
        &["169.254.91.2"],
    );
    hostnet["spec"]["hostNetwork"] = json!(true);
    fake.add_pod(hostnet);
    // `discover` must wait for the first full list.
    fake.set_list_delay(Duration::from_millis(700));

    let dir = std::env::temp_dir().join(format!("nst-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("discover.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"receivers:
  netns:
    scan_proc: false
resolvers:
  interfaces:
  k8s_attributes:
    auth_type: none
    endpoint: {}
    node_name: node-a
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.start_time,
                 k8s.deployment.name, k8s.statefulset.name, k8s.node.name]
      labels:
        - key: app
        - key_regex: "ti(.*)"
          tag_name: "shop.ti$1"
exporters:
  debug:
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces, k8s_attributes]
      exporters: [debug]
"#,
            fake.url()
        ),
    )
    .unwrap();
    let cfg_path = cfg.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_netshim"))
            .args(["discover", "-o", "json", "-c"])
            .arg(&cfg_path)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let at = |path: &str| -> serde_json::Value {
        doc["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["netns"]["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not in output"))
    };
    let web = at("/run/netns/nst-k8s-web");
    assert_eq!(web["pod"]["name"], "web-5d8f7c9b4-abcde");
    assert_eq!(web["pod"]["namespace"], "shop");
    assert_eq!(web["pod"]["uid"], "uid-web");
    let attrs = &web["pod"]["attributes"];
    assert_eq!(attrs["k8s.deployment.name"], "web");
    assert_eq!(attrs["k8s.pod.name"], "web-5d8f7c9b4-abcde");
    assert_eq!(attrs["k8s.namespace.name"], "shop");
    assert_eq!(attrs["k8s.node.name"], "node-a");
    assert_eq!(attrs["k8s.pod.start_time"], "2026-01-01T00:00:05Z");
    assert_eq!(attrs["k8s.pod.labels.app"], "web");
    assert_eq!(attrs["shop.tier"], "front");
    assert!(!web["host_network"].as_bool().unwrap());
    assert_eq!(web["interfaces"][0]["peer"]["name"], "lxcnstk8s0");
    let db = at("/run/netns/nst-k8s-db");
    assert_eq!(
        db["pod"]["name"], "db-0",
        "not the other node's pod with the same IP"
    );
    assert_eq!(db["pod"]["attributes"]["k8s.statefulset.name"], "db");
    assert!(db["pod"]["attributes"].get("k8s.deployment.name").is_none());
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{:?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_keeps_metadata_current_through_api_outages() {
    let (_c, _lc) = pod_netns("nst-k8s-c", "lxcnstk8s2", "169.254.91.10");
    let (_d, _ld) = pod_netns("nst-k8s-d", "lxcnstk8s3", "169.254.91.14");
    let fake = FakeKube::start().await;
    let k8s = K8sAttributesResolver::new(resolver_config(&fake.url()), "node-a".into());
    let health = Health::default();
    k8s.start(StartContext {
        id: "k8s_attributes".into(),
        health: health.clone(),
        one_shot: false,
    })
    .await
    .expect("start");
    assert!(
        eventually(10, async || health.is_ready()).await,
        "synced (an empty list)"
    );
    let mut mapper = None;
    let pods = cycle(&mut mapper, &k8s).await;
    assert_eq!(name_at(&pods, "/run/netns/nst-k8s-c"), None);

    // A pod created later arrives through the watch.
    fake.add_pod(pod("ops", "c-pod", "uid-c", "node-a", &["169.254.91.10"]));
    assert!(
        eventually(10, async || name_at(
            &cycle(&mut mapper, &k8s).await,
            "/run/netns/nst-k8s-c"
        )
        .as_deref()
            == Some("c-pod"))
        .await,
        "watched pod associated"
    );

    // The API goes away: what is known stays known, and the agent stays ready (it synced once).
    // Checked once the resolver has met the outage: its watch was refused, and refused again
    // after its backoff.
    let refused = fake.refused();
    fake.set_unavailable(true);
    assert!(
        eventually(10, async || fake.refused() >= refused + 2).await,
        "the resolver retried the watch during the outage: {:?}",
        fake.requests()
    );
    assert_eq!(
        name_at(&cycle(&mut mapper, &k8s).await, "/run/netns/nst-k8s-c").as_deref(),
        Some("c-pod")
    );
    assert!(health.is_ready());

    // Back again: new pods flow; a pod deleted meanwhile is forgotten after the relist.
    fake.set_unavailable(false);
    fake.add_pod(pod("ops", "d-pod", "uid-d", "node-a", &["169.254.91.14"]));
    assert!(
        eventually(30, async || name_at(
            &cycle(&mut mapper, &k8s).await,
            "/run/netns/nst-k8s-d"
        )
        .as_deref()
            == Some("d-pod"))
        .await,
        "the watch reconnected"
    );

    // 410 Gone: the resolver lists again and carries on.
    fake.delete_pod("ops", "c-pod");
    fake.expire_watches();
    assert!(
        eventually(30, async || name_at(
            &cycle(&mut mapper, &k8s).await,
            "/run/netns/nst-k8s-c"
        )
        .is_none())
        .await,
        "the deleted pod is forgotten"
    );
    assert_eq!(
        name_at(&cycle(&mut mapper, &k8s).await, "/run/netns/nst-k8s-d").as_deref(),
        Some("d-pod")
    );

    // The API server restarts on the same port.
    let port = fake.stop().await;
    let fake = FakeKube::start_on(port).await;
    fake.add_pod(pod("ops", "d-pod", "uid-d", "node-a", &["169.254.91.14"]));
    fake.add_pod(pod(
        "ops",
        "c-again",
        "uid-c2",
        "node-a",
        &["169.254.91.10"],
    ));
    assert!(
        eventually(30, async || name_at(
            &cycle(&mut mapper, &k8s).await,
            "/run/netns/nst-k8s-c"
        )
        .as_deref()
            == Some("c-again"))
        .await,
        "recovered after the API server restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_list() {
    let fake = FakeKube::start().await;
    fake.set_unavailable(true);
    let k8s = K8sAttributesResolver::new(resolver_config(&fake.url()), "node-a".into());
    let health = Health::default();
    k8s.start(StartContext {
        id: "k8s_attributes".into(),
        health: health.clone(),
        one_shot: false,
    })
    .await
    .expect("start does not wait without wait_for_metadata");
    // Still not ready after the resolver's list was refused, and refused again after its backoff.
    assert!(
        eventually(10, async || fake.refused() >= 2).await,
        "the resolver retried its list: {:?}",
        fake.requests()
    );
    assert!(!health.is_ready(), "never synced");
    fake.set_unavailable(false);
    assert!(
        eventually(30, async || health.is_ready()).await,
        "ready once the API answers"
    );
}
