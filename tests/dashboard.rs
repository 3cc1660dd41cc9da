//! The shipped Grafana dashboard (deploy/dashboards/netshim-pod-network.json), every query of
//! it, against a real Prometheus (Debian's) scraping the real agent with the recommended rules
//! loaded, over two pods made here with known traffic. Each query runs with the dashboard's
//! variables substituted as Grafana would (`$namespace` = the test's namespace, `$cluster` and
//! `$pod` = All); it must return the test pods' series, and the same query with each
//! `rate(…[$__rate_interval])` read as `last_over_time(…)` must give the kernel's own counters,
//! summed as the query groups them. The variables' `label_values` queries must offer the test's
//! namespace and pods. No Grafana server can be installed here (the JSON is validated against
//! Grafana's schema by deploy/dashboards/check.sh).
//!
//! Pod names, namespaces and workloads come from the fake Kubernetes API server
//! (tests/support/fake_kube.rs): no real API server can run here. Needs root, python3 and
//! prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use netshim::model::TRANSPORT_FIELDS;
use serde_json::{Value, json};
use support::agent::Agent;
use support::fake_kube::{FakeKube, pod};
use support::*;

const NAMESPACE: &str = "nst-dash";
const NODE: &str = "node-dash";

/// One test pod: its namespace on this machine and its Kubernetes name.
struct TestPod {
    ns: Netns,
    _link: HostLink,
    name: &'static str,
    net: u8,
}

/// What the kernel says of a pod: every counter the dashboard can ask for, by metric name.
fn kernel_values(p: &TestPod) -> BTreeMap<String, f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &p.ns.name, "sh", "-c"])
        .arg("cd /sys/class/net/eth0/statistics && for f in rx_bytes tx_bytes rx_packets tx_packets rx_errors tx_errors rx_dropped tx_dropped; do echo \"$f $(cat $f)\"; done")
        .output()
        .expect("reading the pod's counters");
    assert!(out.status.success(), "{out:?}");
    let interface_metric = |f: &str| {
        let (dir, what) = f.split_once('_').unwrap();
        let dir = if dir == "rx" { "receive" } else { "transmit" };
        let what = match what {
            "dropped" => "packets_dropped",
            other => other,
        };
        format!("netshim_pod_network_{dir}_{what}_total")
    };
    let mut values: BTreeMap<String, f64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (f, v) = line.split_once(' ').unwrap();
            (interface_metric(f), v.parse().unwrap())
        })
        .collect();
    let mib = pod_mib(&p.ns);
    for f in &TRANSPORT_FIELDS {
        values.insert(
            netshim::exporters::prometheus::transport_name(f),
            mib[f.kernel] as f64,
        );
    }
    values
}

fn prometheus_get(port: u16, path: &str, params: &[(&str, &str)]) -> Value {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let mut req = agent.get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in params {
        req = req.query(*k, *v);
    }
    // Not up yet, or an answer that is not JSON: an error the callers' waits retry on.
    match req.call().and_then(|mut r| r.body_mut().read_to_string()) {
        Ok(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| json!({"status": "error", "error": format!("{e}: {text}")})),
        Err(e) => json!({"status": "error", "error": e.to_string()}),
    }
}

/// One series of an instant query's answer: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// An instant query's series.
fn query(port: u16, expr: &str) -> Result<Vec<Series>, String> {
    let answer = prometheus_get(port, "/api/v1/query", &[("query", expr)]);
    if answer["status"] != "success" {
        return Err(format!("{expr}: {answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = s["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect())
}

/// The dashboard's variables as Grafana substitutes them for this test.
fn substitute(expr: &str) -> String {
    expr.replace("$cluster", ".*")
        .replace("$namespace", NAMESPACE)
        .replace("$pod", ".*")
        .replace("$__rate_interval", "1m")
}

/// The query with every `rate(X[…])` read as `last_over_time(X[…])`: the counters themselves.
fn as_counters(expr: &str) -> String {
    expr.replace("rate(", "last_over_time(")
}

/// The netshim metric a query reads (the first `netshim_pod_…` name in it, not the info join).
fn metric_of(expr: &str) -> String {
    let start = expr.find("netshim_pod_").expect("a netshim metric");
    expr[start..]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap()
        .to_string()
}

/// A series' group: which test pods it sums, by the labels the query kept.
fn pods_of<'a>(labels: &BTreeMap<String, String>, pods: &'a [TestPod]) -> Vec<&'a TestPod> {
    pods.iter()
        .filter(|p| labels.get("pod").is_none_or(|name| name == p.name))
        .collect()
}

fn dashboard_targets() -> Vec<(String, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dashboards/netshim-pod-network.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!(
                    "{} / {}",
                    p["title"].as_str().unwrap(),
                    t["refId"].as_str().unwrap()
                ),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let variables = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["query"]["query"].as_str().unwrap().to_string(),
            )
        })
        .collect::<Vec<_>>();
    assert!(variables.len() >= 3, "{variables:?}");
    out.extend(
        variables
            .into_iter()
            .map(|(n, q)| (format!("variable {n}"), q)),
    );
    out
}

/// Listens with a backlog of 0 and never accepts, until its stdin closes.
const NEVER_ACCEPTS: &str = r#"
import socket, sys
s = socket.socket()
s.bind(("169.254.67.2", 9300))
s.listen(0)
print("listening")
sys.stdin.read()
"#;

#[test]
fn every_dashboard_query_returns_the_test_pods_with_the_kernels_values() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = runtime.block_on(FakeKube::start());
    let mut pods = Vec::new();
    for (name, net) in [("web-a", 67u8), ("web-b", 68u8)] {
        let ns = Netns::new(&format!("nst-dash-{net}"));
        let link = quiet_veth(&ns, &format!("lxcnstdash{net}"), net);
        let ip = format!("169.254.{net}.2");
        let mut p = pod(NAMESPACE, name, &format!("uid-{name}"), NODE, &[&ip]);
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d8f7c9b4",
            "uid": "uid-rs", "controller": true
        }]);
        kube.add_pod(p);
        pods.push(TestPod {
            ns,
            _link: link,
            name,
            net,
        });
    }

    let url = kube.url();
    let agent = Agent::start(
        Path::new(env!("CARGO_BIN_EXE_netshim")),
        "nst-dash",
        |port| {
            format!(
                "receivers:\n  netns:\n    collection_interval: 300ms\n    scan_proc: false\nresolvers:\n  interfaces:\n    transport:\n      interval: 1s\n  k8s_attributes:\n    auth_type: none\n    endpoint: {url}\n    node_name: {NODE}\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces, k8s_attributes]\n      exporters: [prometheus]\n"
            )
        },
    );
    assert!(
        agent
            .wait_for(Duration::from_secs(15), |m| m.contains("workload=\"web\"")
                && m.contains("pod=\"web-b\""))
            .is_some(),
        "the pods appear named, with their workload: {}",
        agent.stderr()
    );

    // Traffic: UDP to a closed port of each pod (different amounts), and a listener in web-a
    // that overflows; then everything stops, so the counters settle.
    for p in &pods {
        let udp = UdpSocket::bind(format!("169.254.{}.1:0", p.net)).unwrap();
        for _ in 0..(p.net as usize - 60) {
            udp.send_to(&[b'd'; 300], format!("169.254.{}.2:9", p.net))
                .unwrap();
        }
    }
    let mut listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pods[0].ns.name,
            "/usr/bin/python3",
            "-u",
            "-c",
            NEVER_ACCEPTS,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the pod");
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    let listener = Process { child: listener };
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    let target: SocketAddr = "169.254.67.2:9300".parse().unwrap();
    let held: Vec<_> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&target, Duration::from_millis(300)).ok())
        .collect();
    assert!(
        wait_until(
            Duration::from_secs(10),
            || kernel_values(&pods[0])["netshim_pod_tcp_listen_overflows_total"] > 0.0
        ),
        "the listener overflowed"
    );
    drop(held);
    drop(listener);
    let mut last: Vec<BTreeMap<String, f64>> = Vec::new();
    let mut changed = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now: Vec<_> = pods.iter().map(kernel_values).collect();
            changed = now
                .iter()
                .zip(&last)
                .flat_map(|(a, b)| a.iter().filter(|(k, v)| b.get(*k) != Some(v)))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>();
            let settled = !last.is_empty() && changed.is_empty();
            last = now;
            if !settled {
                std::thread::sleep(Duration::from_millis(1500));
            }
            settled
        }),
        "the pods' counters settle; still changing: {changed:?}"
    );
    let kernel: Vec<BTreeMap<String, f64>> = pods.iter().map(kernel_values).collect();

    // Prometheus, as kube-prometheus-stack runs it for the ServiceMonitor: honor_labels, the
    // recommended rules loaded.
    let dir = std::env::temp_dir().join(format!("nst-dash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("install/kubernetes/rules/netshim-recommended.rules.yaml");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: netshim\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            rules.display(),
            agent.port
        ),
    )
    .unwrap();
    let (_prom, prom_port) = run_prometheus(&dir);
    assert!(
        wait_until(Duration::from_secs(30), || query(
            prom_port,
            "netshim:recommended_rules_loaded"
        )
        .is_ok_and(|r| r.len() == 1)),
        "Prometheus runs with the recommended rules"
    );

    let targets = dashboard_targets();
    let mut report = Vec::new();
    let all_agree = wait_until(Duration::from_secs(30), || {
        report.clear();
        for (title, expr) in &targets {
            if let Some(problem) = check_target(prom_port, title, expr, &pods, &kernel) {
                report.push(problem);
            }
        }
        report.is_empty()
    });
    assert!(all_agree, "dashboard queries:\n{}", report.join("\n"));
    println!("{} dashboard queries checked", targets.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// One query of the dashboard: a problem, or `None` when it returns the test pods' series with
/// the kernel's values.
fn check_target(
    port: u16,
    title: &str,
    expr: &str,
    pods: &[TestPod],
    kernel: &[BTreeMap<String, f64>],
) -> Option<String> {
    if let Some(rest) = expr.strip_prefix("label_values(") {
        // A variable: `label_values(SELECTOR, LABEL)`, asked as Grafana asks it.
        let (selector, label) = rest.trim_end_matches(')').rsplit_once(',').unwrap();
        let selector = substitute(selector.trim());
        let label = label.trim();
        let answer = prometheus_get(
            port,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &selector)],
        );
        let Some(values) = answer["data"].as_array() else {
            return Some(format!("{title}: {answer}"));
        };
        let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        let want: Vec<&str> = match label {
            "namespace" => vec![NAMESPACE],
            "pod" => pods.iter().map(|p| p.name).collect(),
            _ => vec![], // cluster: no such label on a single Prometheus, nothing to offer
        };
        return (!want.iter().all(|w| values.contains(w)))
            .then(|| format!("{title}: offers {values:?}, not all of {want:?}"));
    }
    let real = substitute(expr);
    let series = match query(port, &real) {
        Ok(s) => s,
        Err(e) => return Some(format!("{title}: {e}")),
    };
    let ours: Vec<_> = series
        .iter()
        .filter(|(l, _)| l.get("namespace").is_some_and(|n| n == NAMESPACE))
        .collect();
    let by_pod = real.contains("by (namespace, pod)");
    let want_series = if by_pod { pods.len() } else { 1 };
    if ours.len() != want_series {
        return Some(format!(
            "{title}: {} series of the test pods, expected {want_series}: {series:?}",
            ours.len()
        ));
    }
    if real.contains("by (namespace, workload)")
        && ours[0].0.get("workload").map(String::as_str) != Some("web")
    {
        return Some(format!(
            "{title}: not grouped by the pods' workload: {ours:?}"
        ));
    }
    let metric = metric_of(expr);
    let counters = match query(port, &as_counters(&real)) {
        Ok(s) => s,
        Err(e) => return Some(format!("{title} (as counters): {e}")),
    };
    for (labels, value) in counters
        .iter()
        .filter(|(l, _)| l.get("namespace").is_some_and(|n| n == NAMESPACE))
    {
        let members = pods_of(labels, pods);
        let want: f64 = members
            .iter()
            .map(|p| kernel[pods.iter().position(|q| q.name == p.name).unwrap()][&metric])
            .sum();
        if *value != want {
            return Some(format!(
                "{title}: {labels:?} = {value}, the kernel says {want} ({metric})"
            ));
        }
    }
    None
}
