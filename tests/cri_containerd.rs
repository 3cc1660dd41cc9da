//! The `cri` receiver against a real containerd (Debian's 1.6) with the real CNI `bridge` and
//! `ptp` plugins, pods made with RunPodSandbox. Needs root and `scripts/cri-test-assets.sh`
//! (run by `scripts/test.sh`). Each test runs its own containerd on its own socket, bridge and
//! subnet, so they can run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::time::Duration;

use netshim::model::{Batch, PodNetwork, Sandbox, Sandboxes};
use netshim::receivers::Receiver;
use netshim::receivers::cri::{Config as CriConfig, CriReceiver, Endpoint};
use netshim::resolvers::interfaces::{Config as InterfacesConfig, InterfaceMapper};
use support::containerd::{Cni, Containerd, assets};
use support::*;

fn receiver(c: &Containerd) -> CriReceiver {
    let config = CriConfig {
        endpoint: format!("unix://{}", c.socket.display()),
        timeout: Duration::from_secs(2),
        ..CriConfig::default()
    };
    CriReceiver::new(config, Endpoint::Socket(c.socket.clone()))
}

fn by_name<'a>(sandboxes: &'a [Sandbox], name: &str) -> &'a Sandbox {
    sandboxes
        .iter()
        .find(|s| s.pod.as_ref().and_then(|p| p.name.as_deref()) == Some(name))
        .unwrap_or_else(|| panic!("no sandbox {name} in {sandboxes:#?}"))
}

/// Maps sandboxes to interfaces on a blocking thread, as the agent does.
async fn map(sandboxes: Sandboxes) -> Vec<PodNetwork> {
    tokio::task::spawn_blocking(move || {
        let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
        let mut batch = Batch::from_sandboxes(&sandboxes);
        mapper.resolve(&mut batch).expect("resolve");
        batch.pods
    })
    .await
    .unwrap()
}

fn pod<'a>(pods: &'a [PodNetwork], name: &str) -> &'a PodNetwork {
    pods.iter()
        .find(|p| p.sandbox.pod.as_ref().and_then(|p| p.name.as_deref()) == Some(name))
        .unwrap_or_else(|| panic!("no pod {name}"))
}

/// The bridge a host link is enslaved to, if any.
fn master_of(link: &str) -> Option<String> {
    let target = std::fs::read_link(format!("/sys/class/net/{link}/master")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_pods_are_mapped_with_their_runtime_identity() {
    let Some(assets) = assets() else { return };
    let c = Containerd::start(
        "cri-bridge",
        Cni::Bridge {
            bridge: "nstcribr0",
            subnet: "169.254.200.0/24",
        },
        &assets,
    );
    let web = c
        .run_pod(
            "web-0",
            "shop",
            "11111111-0000-4000-8000-000000000001",
            false,
        )
        .await;
    let _db = c
        .run_pod(
            "db-0",
            "shop",
            "11111111-0000-4000-8000-000000000002",
            false,
        )
        .await;
    let r = receiver(&c);

    let found = r.collect().await.expect("collect");
    assert_eq!(found.len(), 2, "{found:#?}");
    let s = by_name(&found, "web-0");
    let identity = s.pod.as_ref().unwrap();
    assert_eq!(identity.namespace.as_deref(), Some("shop"));
    assert_eq!(
        identity.uid.as_deref(),
        Some("11111111-0000-4000-8000-000000000001")
    );
    assert_eq!(s.sandbox_id.as_deref(), Some(web.as_str()));
    assert!(!s.host_network);
    assert!(
        s.pid.is_some(),
        "containerd's verbose info gives the sandbox pid"
    );
    assert_eq!(s.labels.get("app").map(String::as_str), Some("web-0"));
    let netns = s.netns.as_ref().expect("netns found");
    let path = netns.path.to_string_lossy();
    assert!(
        path.starts_with("/var/run/netns/cni-") || path.starts_with("/run/netns/cni-"),
        "{path}"
    );

    // The steady state costs exactly two calls, whatever the number of pods.
    let before = r.calls();
    let again = r.collect().await.expect("collect");
    assert_eq!(again.len(), 2);
    assert_eq!(
        r.calls() - before,
        2,
        "ListPodSandbox + ListContainers only"
    );

    // Every pod's eth0 is paired with its real host veth on the CNI bridge.
    let pods = map(found).await;
    for name in ["web-0", "db-0"] {
        let p = pod(&pods, name);
        let eth0 = p
            .interfaces
            .iter()
            .find(|i| &*i.name == "eth0")
            .expect("eth0");
        let peer = eth0.peer.as_ref().expect("host peer");
        assert!(peer.name.starts_with("veth"), "{}", peer.name);
        assert_eq!(peer.ifindex, host_ifindex(&peer.name));
        assert_eq!(master_of(&peer.name).as_deref(), Some("nstcribr0"));
        assert!(
            eth0.addresses
                .iter()
                .any(|a| a.to_string().starts_with("169.254.200.")),
            "{:?}",
            eth0.addresses
        );
    }

    // A new pod costs one status call; a stopped one is no longer reported.
    let before = r.calls();
    let _api = c
        .run_pod(
            "api-0",
            "shop",
            "11111111-0000-4000-8000-000000000003",
            false,
        )
        .await;
    let found = r.collect().await.expect("collect");
    assert_eq!(found.len(), 3);
    assert_eq!(r.calls() - before, 3, "two lists and one PodSandboxStatus");
    c.stop_pod(&web).await;
    let found = r.collect().await.expect("collect");
    assert_eq!(found.len(), 2);
    assert!(
        found
            .iter()
            .all(|s| s.sandbox_id.as_deref() != Some(web.as_str()))
    );

    // The binary, as an operator would run it.
    let cfg = c.base.join("discover.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  cri:\n    endpoint: unix://{}\nresolvers:\n  interfaces:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [cri]\n      resolvers: [interfaces]\n      exporters: [debug]\n",
            c.socket.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netshim"))
        .args(["discover", "-o", "json", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = doc["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod"]["name"] == "api-0")
        .expect("api-0 in discover output");
    assert_eq!(api["pod"]["namespace"], "shop");
    assert_eq!(api["pod"]["uid"], "11111111-0000-4000-8000-000000000003");
    assert!(api["sandbox_id"].is_string());
    assert!(
        api["interfaces"][0]["peer"]["name"]
            .as_str()
            .unwrap()
            .starts_with("veth")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptp_pods_and_host_network_pods() {
    let Some(assets) = assets() else { return };
    let c = Containerd::start(
        "cri-ptp",
        Cni::Ptp {
            subnet: "169.254.201.0/24",
        },
        &assets,
    );
    let _p = c
        .run_pod(
            "ptp-0",
            "edge",
            "22222222-0000-4000-8000-000000000001",
            false,
        )
        .await;
    let _h = c
        .run_pod(
            "hostnet-0",
            "kube-system",
            "22222222-0000-4000-8000-000000000002",
            true,
        )
        .await;
    let r = receiver(&c);
    let found = r.collect().await.expect("collect");
    assert_eq!(found.len(), 2);
    let h = by_name(&found, "hostnet-0");
    assert!(h.host_network, "NODE network namespace mode");
    assert!(
        h.netns.is_none(),
        "the node's namespace is never reported as a pod's"
    );

    let pods = map(found).await;
    let p = pod(&pods, "ptp-0");
    let eth0 = p
        .interfaces
        .iter()
        .find(|i| &*i.name == "eth0")
        .expect("eth0");
    let peer = eth0.peer.as_ref().expect("host peer");
    assert!(peer.name.starts_with("veth"), "{}", peer.name);
    assert_eq!(master_of(&peer.name), None, "ptp host ends are not bridged");
    let h = pod(&pods, "hostnet-0");
    assert!(
        h.interfaces.is_empty(),
        "no per-interface data for host-network pods"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_restart_is_survived() {
    let Some(assets) = assets() else { return };
    let mut c = Containerd::start(
        "cri-restart",
        Cni::Bridge {
            bridge: "nstcribr1",
            subnet: "169.254.202.0/24",
        },
        &assets,
    );
    let id = c
        .run_pod(
            "steady-0",
            "ops",
            "33333333-0000-4000-8000-000000000001",
            false,
        )
        .await;

    // The whole agent: a pipeline with health, as `netshim run` builds it.
    let yaml = format!(
        "receivers:\n  cri:\n    endpoint: unix://{}\n    timeout: 500ms\n    collection_interval: 300ms\nresolvers:\n  interfaces:\nexporters:\n  debug:\nservice:\n  pipelines:\n    metrics:\n      receivers: [cri]\n      resolvers: [interfaces]\n      exporters: [debug]\n",
        c.socket.display()
    );
    let loaded = netshim::config::load(&[netshim::config::Source::Inline {
        name: "restart.yaml".into(),
        text: yaml,
    }])
    .unwrap();
    let service =
        netshim::pipeline::build(loaded.config, netshim::component::BuildContext::new("test"))
            .unwrap();
    let health = service.health.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(service.run(async {
        let _ = stop_rx.await;
    }));
    let wait = |want: bool, secs: u64| {
        let health = health.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            while tokio::time::Instant::now() < deadline {
                if health.is_ready() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(wait(true, 10).await, "ready once the runtime answered");

    c.stop();
    assert!(wait(false, 10).await, "not ready while the runtime is down");
    let receiver = receiver(&c);
    let err = receiver.collect().await.expect_err("runtime down");
    assert!(
        err.to_string().contains("cannot reach") || err.to_string().contains("failed"),
        "{err}"
    );

    c.restart();
    assert!(
        wait(true, 15).await,
        "ready again after the restart, without restarting the agent"
    );
    let found = receiver.collect().await.expect("collect after restart");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].sandbox_id.as_deref(), Some(id.as_str()));
    assert!(
        found[0].netns.is_some(),
        "the pod survived the runtime restart"
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent stops")
        .expect("no panic")
        .expect("clean exit");
}

/// Debian's containerd 1.6 has no container event stream (1.7 added it): the subscription must
/// end at once as "unsupported", so the agent falls back to its other triggers instead of
/// retrying in a loop. (The stream itself is exercised against the real 1.7 and 2.x in
/// `tests/cri_runtimes.rs`, and against a fake runtime in `tests/cri_events.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_unsupported_by_containerd_1_6_are_recognised() {
    use netshim::receivers::cri::events::StreamEnd;
    let Some(assets) = assets() else { return };
    let c = Containerd::start(
        "cri-events",
        Cni::Bridge {
            bridge: "nstcribr3",
            subnet: "169.254.204.0/24",
        },
        &assets,
    );
    let r = receiver(&c);
    let end = tokio::time::timeout(Duration::from_secs(5), r.follow_events_once(&|| {}))
        .await
        .expect("the subscription answers at once");
    eprintln!("containerd 1.6 answered: {end:?}");
    assert!(matches!(end, StreamEnd::Unsupported(_)), "{end:?}");
    assert_eq!(r.events(), 0);
}

#[tokio::test]
async fn a_missing_socket_is_a_clear_error_not_a_hang() {
    let socket = PathBuf::from(format!("/tmp/nst-no-such-{}.sock", std::process::id()));
    let r = CriReceiver::new(
        CriConfig {
            endpoint: format!("unix://{}", socket.display()),
            timeout: Duration::from_millis(300),
            ..CriConfig::default()
        },
        Endpoint::Socket(socket.clone()),
    );
    let started = std::time::Instant::now();
    let err = r.collect().await.expect_err("no runtime");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        err.to_string().contains(&socket.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_runtime_that_never_answers_times_out() {
    // A socket that accepts connections and then says nothing, like a wedged runtime.
    let socket = PathBuf::from(format!("/tmp/nst-silent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn); // keep it open, never read or write
        }
    });
    let r = CriReceiver::new(
        CriConfig {
            endpoint: format!("unix://{}", socket.display()),
            timeout: Duration::from_millis(300),
            ..CriConfig::default()
        },
        Endpoint::Socket(socket.clone()),
    );
    let started = std::time::Instant::now();
    let err = r.collect().await.expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    // The next cycle tries again (a new connection), and fails the same way.
    assert!(r.collect().await.is_err());
    silent.abort();
    let _ = std::fs::remove_file(&socket);
}
