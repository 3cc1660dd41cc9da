//! The `otlp_http` exporter into a real time-series database: VictoriaMetrics (Debian's, unpacked
//! by scripts/debian-unpack.sh and given as `NETSHIM_VICTORIA_METRICS`, the binary's path;
//! without it the test says SKIPPED, unless `NETSHIM_REQUIRE_VM=1` makes that a failure)
//! ingests OTLP/HTTP at `/opentelemetry/v1/metrics`. Two instances run side by side, one with
//! `-opentelemetry.usePrometheusNaming`; the agent exports to both, and each is queried back:
//! the pod's `k8s.*` resource attributes are labels, and the values are the kernel's.
//!
//! Pod names come from the fake Kubernetes API server (tests/support/fake_kube.rs): no real API
//! server can run here. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::agent::Agent;
use support::fake_kube::{FakeKube, pod};
use support::*;

fn victoria_metrics() -> Option<PathBuf> {
    match std::env::var_os("NETSHIM_VICTORIA_METRICS") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("NETSHIM_REQUIRE_VM").is_ok_and(|v| v == "1") => {
            panic!(
                "NETSHIM_VICTORIA_METRICS is not set (scripts/debian-unpack.sh DIR trixie victoria-metrics)"
            )
        }
        None => {
            eprintln!("SKIPPED: NETSHIM_VICTORIA_METRICS is not set");
            None
        }
    }
}

/// One VictoriaMetrics on a free loopback port, its data in a temp folder; stopped by pid.
struct Vm {
    port: u16,
    _process: Process,
    dir: PathBuf,
}

impl Vm {
    fn start(binary: &Path, name: &str, extra: &[&str]) -> Vm {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(binary)
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics runs");
        let vm = Vm {
            port,
            _process: Process { child },
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(20), || vm.get("/health", &[]).is_ok()),
            "victoria-metrics answers /health"
        );
        vm
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<String, String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let mut req = agent.get(format!("http://127.0.0.1:{}{path}", self.port));
        for (k, v) in params {
            req = req.query(*k, *v);
        }
        req.call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| e.to_string())
    }

    /// Every series of `selector` as VictoriaMetrics exports it: labels (with `__name__`) and
    /// the latest value.
    fn series(&self, selector: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let _ = self.get("/internal/force_flush", &[]);
        let text = self
            .get("/api/v1/export", &[("match[]", selector)])
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let labels = v["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                let value = v["values"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .as_f64()
                    .unwrap();
                (labels, value)
            })
            .collect()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pod's own receive counter of eth0.
fn pod_rx_bytes(ns: &Netns) -> f64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "cat",
            "/sys/class/net/eth0/statistics/rx_bytes",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn otlp_http_into_victoria_metrics_gives_k8s_labels_and_the_kernels_values() {
    let Some(binary) = victoria_metrics() else {
        return;
    };
    let otel_names = Vm::start(&binary, "nst-vm-otel", &[]);
    let prom_names = Vm::start(
        &binary,
        "nst-vm-prom",
        &["-opentelemetry.usePrometheusNaming"],
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = runtime.block_on(FakeKube::start());
    let ns = Netns::new("nst-vm-a");
    let _link = quiet_veth(&ns, "lxcnstvma0", 69);
    let mut p = pod("nst-vm", "api-0", "uid-api-0", "node-vm", &["169.254.69.2"]);
    p["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "api", "uid": "uid-sts", "controller": true
    }]);
    kube.add_pod(p);
    // Known traffic, then quiet: 7 datagrams of 200 bytes to a closed port of the pod.
    let udp = UdpSocket::bind("169.254.69.1:0").unwrap();
    for _ in 0..7 {
        udp.send_to(&[b'v'; 200], "169.254.69.2:9").unwrap();
    }

    let url = kube.url();
    let (a, b) = (otel_names.port, prom_names.port);
    let _agent = Agent::start(Path::new(env!("CARGO_BIN_EXE_netshim")), "nst-vm", |port| {
        format!(
            "receivers:\n  netns:\n    collection_interval: 500ms\n    scan_proc: false\nresolvers:\n  interfaces:\n    transport:\n      interval: 1s\n  k8s_attributes:\n    auth_type: none\n    endpoint: {url}\n    node_name: node-vm\n    extract:\n      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.statefulset.name, k8s.node.name]\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\n  otlp_http/otel:\n    endpoint: http://127.0.0.1:{a}/opentelemetry\n  otlp_http/prom:\n    endpoint: http://127.0.0.1:{b}/opentelemetry\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces, k8s_attributes]\n      exporters: [prometheus, otlp_http/otel, otlp_http/prom]\n"
        )
    });

    let rx = pod_rx_bytes(&ns);
    let no_ports = pod_mib(&ns)["Udp: NoPorts"] as f64;
    assert_eq!(no_ports, 7.0);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    // OpenTelemetry names as they are: dots kept, one label per resource and point attribute.
    let want_otel = [
        ("k8s.pod.name", "api-0"),
        ("k8s.namespace.name", "nst-vm"),
        ("k8s.pod.uid", "uid-api-0"),
        ("k8s.statefulset.name", "api"),
        // The agent's own node (K8S_NODE_NAME, else the host name), which it runs on.
        ("k8s.node.name", hostname.as_str()),
        ("network.interface.name", "eth0"),
        ("network.io.direction", "receive"),
    ];
    let selector = "{__name__=\"k8s.pod.network.io\", \"k8s.pod.name\"=\"api-0\", \"network.io.direction\"=\"receive\"}";
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = otel_names.series(selector);
            seen.len() == 1 && seen[0].1 == rx
        }),
        "k8s.pod.network.io of the pod in VictoriaMetrics = the pod's rx_bytes {rx}: {seen:?}"
    );
    for (k, v) in want_otel {
        assert_eq!(
            seen[0].0.get(k).map(String::as_str),
            Some(v),
            "{k}: {seen:?}"
        );
    }
    let selector = "{__name__=\"netshim.pod.udp.no_port_datagrams\", \"k8s.pod.name\"=\"api-0\"}";
    assert!(
        wait_until(Duration::from_secs(15), || {
            seen = otel_names.series(selector);
            seen.len() == 1 && seen[0].1 == no_ports
        }),
        "netshim.pod.udp.no_port_datagrams = the pod's Udp NoPorts: {seen:?}"
    );

    // With -opentelemetry.usePrometheusNaming: Prometheus names (unit and _total suffixes),
    // labels with underscores.
    let selector = "{__name__=\"k8s_pod_network_io_bytes_total\", k8s_pod_name=\"api-0\", network_io_direction=\"receive\"}";
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = prom_names.series(selector);
            seen.len() == 1 && seen[0].1 == rx
        }),
        "k8s_pod_network_io_bytes_total of the pod = {rx}: {seen:?} (names there: {:?})",
        prom_names
            .get("/api/v1/label/__name__/values", &[])
            .unwrap_or_default()
    );
    for (k, v) in want_otel {
        let k = k.replace('.', "_");
        assert_eq!(
            seen[0].0.get(&k).map(String::as_str),
            Some(v),
            "{k}: {seen:?}"
        );
    }
    let selector = "{__name__=\"netshim_pod_udp_no_port_datagrams_total\", k8s_pod_name=\"api-0\"}";
    assert!(
        wait_until(Duration::from_secs(15), || {
            seen = prom_names.series(selector);
            seen.len() == 1 && seen[0].1 == no_ports
        }),
        "netshim_pod_udp_no_port_datagrams_total = {no_ports}: {seen:?}"
    );
    // Every metric netshim sends, under each naming (the README lists them): the mapping
    // gauge's unit `{interface}` adds no suffix (a unit of `1` would have made it `_ratio`).
    let names = |vm: &Vm| -> Vec<String> {
        let answer: Value =
            serde_json::from_str(&vm.get("/api/v1/label/__name__/values", &[]).unwrap()).unwrap();
        serde_json::from_value(answer["data"].clone()).unwrap()
    };
    let otel = names(&otel_names);
    let prom = names(&prom_names);
    println!("OpenTelemetry names: {otel:?}\nPrometheus names: {prom:?}");
    assert!(
        otel.iter().any(|n| n == "netshim.pod.interface"),
        "{otel:?}"
    );
    assert!(
        prom.iter().any(|n| n == "netshim_pod_interface"),
        "{prom:?}"
    );
    assert!(
        prom.iter()
            .any(|n| n == "netshim_pod_tcp_established_connections"),
        "{prom:?}"
    );
    assert_eq!(otel.len(), prom.len());
}
