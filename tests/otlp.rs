//! The OTLP exporters against real peers: a recording sink written for these tests
//! (`tests/otlp/otlp_sink.py`, grpcio + opentelemetry-proto) and Rotel, a real OTLP collector
//! from PyPI. Snapshots come from real pods (network namespaces and veth pairs made here, read
//! by the `netns` receiver and the `interfaces` resolver). Needs root and the venv that
//! `scripts/otlp-test-env.sh DIR` prepares, given as `NETSHIM_OTLP_VENV`; without it the tests
//! say SKIPPED, unless `NETSHIM_REQUIRE_OTLP=1` makes that a failure. Traffic goes only to
//! loopback and to addresses on the test's own veth pairs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use netshim::component::BuildContext;
use netshim::config::parse_component;
use netshim::exporters::Exporter;
use netshim::exporters::otlp::OtlpExporter;
use netshim::exporters::otlp::config::{GrpcConfig, HttpConfig, Protocol};
use netshim::model::{Batch, Counters, PodIdentity, PodNetwork, Snapshot, TRANSPORT_FIELDS};
use netshim::receivers::netns::{Config as NetnsConfig, NetnsReceiver};
use netshim::resolvers::interfaces::{Config as InterfacesConfig, InterfaceMapper};
use netshim::self_metrics::ExporterStats;
use serde_json::{Value, json};
use support::otlp_sink::{Sink, venv};
use support::*;

// ---------------------------------------------------------------------------------------------
// Environment, peers and pods
// ---------------------------------------------------------------------------------------------

impl Sink {
    /// The records of the snapshot taken at `at`, once `count` of them arrived (10 s at most).
    async fn wait_for(&self, at: SystemTime, count: usize) -> Vec<Value> {
        let time = nanos(at);
        for _ in 0..200 {
            let got: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|r| r["time"] == time)
                .collect();
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{count} records of the snapshot at {time} did not arrive; the sink has {:#?}",
            self.records()
        );
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// An exporter with the test's settings, reporting to an agent of its own.
fn exporter(protocol: Protocol, settings: Value) -> OtlpExporter {
    exporter_in(&BuildContext::new("test"), protocol, settings)
}

/// An exporter reporting its statistics to `ctx`'s agent metrics.
fn exporter_in(ctx: &BuildContext, protocol: Protocol, settings: Value) -> OtlpExporter {
    let config = match protocol {
        Protocol::Grpc => {
            parse_component::<GrpcConfig>("exporters::otlp_grpc/test", settings).map(|c| c.0)
        }
        Protocol::Http => {
            parse_component::<HttpConfig>("exporters::otlp_http/test", settings).map(|c| c.0)
        }
    };
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    let id = match protocol {
        Protocol::Grpc => "otlp_grpc/test",
        Protocol::Http => "otlp_http/test",
    };
    OtlpExporter::new(id, protocol, config, Arc::clone(&ctx.metrics))
}

/// One discovery cycle (scan + resolve), kept to the test's own namespaces.
fn discover(mapper: &mut InterfaceMapper, mine: &[&Netns]) -> Vec<PodNetwork> {
    tokio::task::block_in_place(|| {
        let sandboxes = NetnsReceiver::new(NetnsConfig::default())
            .scan_blocking()
            .expect("scan");
        let mut batch = Batch::from_sandboxes(&sandboxes);
        mapper.resolve(&mut batch).expect("resolve");
        let inodes: Vec<u64> = mine
            .iter()
            .map(|ns| inode(ns.path().to_str().unwrap()))
            .collect();
        batch
            .pods
            .into_iter()
            .filter(|p| {
                p.sandbox
                    .netns
                    .as_ref()
                    .is_some_and(|n| inodes.contains(&n.inode))
            })
            .collect()
    })
}

/// Gives the pod found in `ns` an identity, as a runtime receiver would.
fn name_pod(pods: &mut [PodNetwork], ns: &Netns, name: &str, uid: &str) {
    let ino = inode(ns.path().to_str().unwrap());
    let pod = pods
        .iter_mut()
        .find(|p| p.sandbox.netns.as_ref().is_some_and(|n| n.inode == ino))
        .unwrap_or_else(|| panic!("{} not discovered", ns.name));
    pod.sandbox.pod = Some(PodIdentity {
        name: Some(name.into()),
        namespace: Some("otlp-test".into()),
        uid: Some(uid.into()),
        attributes: [("k8s.deployment.name".to_string(), "web".to_string())].into(),
    });
}

fn snapshot(pods: Vec<PodNetwork>) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        pipeline: "metrics".into(),
        node: "node-otlp".into(),
        taken_at: SystemTime::now(),
        pods,
    })
}

/// 5 datagrams of 300 bytes from the host end to the pod, 7 of 100 from the pod back.
fn udp_exchange(ns: &Netns, n: u8) {
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("169.254.{n}.2", 9000))
s.settimeout(10)
print("ready", flush=True)
for _ in range(7):
    s.sendto(b"p" * 100, ("169.254.{n}.1", 9001))
got = 0
while got < 5:
    s.recv(2048)
    got += 1
print("received", got, flush=True)
"#
    );
    let host = UdpSocket::bind(format!("169.254.{n}.1:9001")).expect("bind on the test's address");
    host.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python in the pod");
    let mut script = Process { child };
    let mut lines = BufReader::new(script.child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    for _ in 0..5 {
        host.send_to(&[b'h'; 300], format!("169.254.{n}.2:9000"))
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    for _ in 0..7 {
        host.recv_from(&mut buf).expect("pod datagram");
    }
    assert_eq!(lines.next().unwrap().unwrap(), "received 5");
    assert!(script.child.wait().unwrap().success());
}

// ---------------------------------------------------------------------------------------------
// Reading the records back
// ---------------------------------------------------------------------------------------------

/// The value of `metric` for (`iface`, `direction`) of the pod named `pod`.
fn value(records: &[Value], pod: &str, metric: &str, iface: &str, direction: &str) -> u64 {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["resource"]["k8s.pod.name"] == pod
                && r["metric"] == metric
                && r["attributes"]["network.interface.name"] == iface
                && r["attributes"]["network.io.direction"] == direction
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{pod} {metric} {iface} {direction}: {found:#?}"
    );
    found[0]["value"].as_u64().expect("an integer value")
}

/// Every counter the exporter sent for one interface, checked against the mapper's.
fn assert_counters(records: &[Value], pod: &str, iface: &str, c: &Counters) {
    for (metric, rx, tx) in [
        ("k8s.pod.network.io", c.rx_bytes, c.tx_bytes),
        ("k8s.pod.network.errors", c.rx_errors, c.tx_errors),
        ("netshim.pod.network.packets", c.rx_packets, c.tx_packets),
        ("netshim.pod.network.dropped", c.rx_dropped, c.tx_dropped),
    ] {
        assert_eq!(
            value(records, pod, metric, iface, "receive"),
            rx,
            "{pod} {iface} {metric} rx"
        );
        assert_eq!(
            value(records, pod, metric, iface, "transmit"),
            tx,
            "{pod} {iface} {metric} tx"
        );
    }
}

fn counters_of(pods: &[PodNetwork], ns: &Netns, iface: &str) -> Counters {
    let ino = inode(ns.path().to_str().unwrap());
    pods.iter()
        .find(|p| p.sandbox.netns.as_ref().is_some_and(|n| n.inode == ino))
        .and_then(|p| p.interfaces.iter().find(|i| *i.name == *iface))
        .unwrap_or_else(|| panic!("{iface} of {} not discovered", ns.name))
        .counters
}

/// The exporter's statistics once `done` holds (a collector may record a batch a moment
/// before the exporter has its answer).
async fn wait_stats(otlp: &OtlpExporter, done: impl Fn(&ExporterStats) -> bool) -> ExporterStats {
    for _ in 0..100 {
        let stats = otlp.stats();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{}: statistics never got there: {:?}",
        otlp.id(),
        otlp.stats()
    );
}

fn interface_count(pods: &[PodNetwork]) -> usize {
    pods.iter().map(|p| p.interfaces.len()).sum()
}

/// A mapper that leaves the TCP/UDP counters out, for the tests that count per-interface
/// points (the first test sends them too; tests/transport.rs checks their values).
fn mapper_without_transport() -> InterfaceMapper {
    let mut config = InterfacesConfig::default();
    config.transport.enabled = false;
    InterfaceMapper::new(config)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_carries_pods_counters_and_mapping() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-grpc");
    let a = Netns::new("nst-otlp-a");
    let b = Netns::new("nst-otlp-b");
    let c = Netns::new("nst-otlp-c");
    let _la = quiet_veth(&a, "lxcnstotlpa0", 81);
    let _lb0 = veth("lxcnstotlpb0", "eth0", &b.name);
    let _lb1 = veth("lxcnstotlpb1", "net1", &b.name);
    let _lc = veth("lxcnstotlpc0", "eth0", &c.name);
    let sink = Sink::start(&venv, &dir, "grpc", &["--grpc", "127.0.0.1:0"]);
    let otlp = exporter(
        Protocol::Grpc,
        json!({
            "endpoint": format!("127.0.0.1:{}", sink.grpc_port),
            "tls": {"insecure": true},
        }),
    );
    otlp.start().await.expect("start");

    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let mut pods = discover(&mut mapper, &[&a, &b, &c]);
    name_pod(&mut pods, &a, "web-a", "uid-otlp-a");
    name_pod(&mut pods, &b, "web-b", "uid-otlp-b");
    // A host-network sandbox: the node's interfaces are never credited to a pod.
    // 9 points per interface, and each pod's 19 TCP/UDP counters.
    assert!(pods.iter().all(|p| p.transport.is_some()));
    let points = 9 * interface_count(&pods) + TRANSPORT_FIELDS.len() * pods.len();
    let mut host_net = pods[0].clone();
    host_net.sandbox.host_network = true;
    host_net.sandbox.pod = None;
    pods.push(host_net);
    let first = snapshot(pods.clone());
    otlp.export(Arc::clone(&first)).await.expect("export");
    let r1 = sink.wait_for(first.taken_at, points).await;
    assert_eq!(r1.len(), points, "nothing for the host-network sandbox");

    // One resource per pod, with its identity.
    let mut resources: BTreeMap<u64, &Value> = BTreeMap::new();
    for r in &r1 {
        let index = r["resource_index"].as_u64().unwrap();
        let previous = resources.insert(index, &r["resource"]);
        assert!(previous.is_none_or(|p| p == &r["resource"]));
    }
    assert_eq!(resources.len(), 3, "{resources:#?}");
    let by_name = |name: &str| {
        resources
            .values()
            .filter(|r| r["k8s.pod.name"] == name)
            .count()
    };
    assert_eq!((by_name("web-a"), by_name("web-b")), (1, 1));
    let res_a = resources
        .values()
        .find(|r| r["k8s.pod.name"] == "web-a")
        .unwrap();
    assert_eq!(res_a["k8s.pod.uid"], "uid-otlp-a");
    assert_eq!(res_a["k8s.namespace.name"], "otlp-test");
    assert_eq!(res_a["k8s.node.name"], "node-otlp");
    assert_eq!(res_a["k8s.deployment.name"], "web");
    assert!(res_a.get("netshim.netns.path").is_none());
    let res_c = resources
        .values()
        .find(|r| r.get("k8s.pod.name").is_none())
        .unwrap();
    assert_eq!(res_c["netshim.netns.path"], "/run/netns/nst-otlp-c");
    assert_eq!(res_c["k8s.node.name"], "node-otlp");

    // Shapes: kinds, units, temporality, monotonicity, scope.
    for r in &r1 {
        assert_eq!(r["scope"]["name"], "netshim");
        assert_eq!(r["scope"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(r["time"], nanos(first.taken_at));
        let name = r["metric"].as_str().unwrap();
        let transport = TRANSPORT_FIELDS
            .iter()
            .find(|f| format!("netshim.pod.{}.{}", f.protocol, f.name) == name);
        let (kind, unit) = match name {
            "k8s.pod.network.io" => ("sum", "By"),
            "k8s.pod.network.errors" => ("sum", "{error}"),
            "netshim.pod.network.packets" | "netshim.pod.network.dropped" => ("sum", "{packet}"),
            "netshim.pod.interface" => ("gauge", "{interface}"),
            _ => match transport {
                Some(f) => (if f.gauge { "gauge" } else { "sum" }, f.unit),
                None => panic!("unexpected metric {name}"),
            },
        };
        assert_eq!(
            (r["kind"].as_str(), r["unit"].as_str()),
            (Some(kind), Some(unit))
        );
        if kind == "sum" {
            assert_eq!(r["temporality"], "cumulative");
            assert_eq!(r["monotonic"], true);
            assert_eq!(r["start"], nanos(first.taken_at), "first seen now");
        } else if transport.is_none() {
            assert_eq!(r["value"], 1);
        }
        // A pod's TCP/UDP counters: exactly what the mapper read for it.
        if let Some(f) = transport {
            let uid = r["resource"]["k8s.pod.uid"].as_str();
            let pod = pods
                .iter()
                .filter(|p| !p.sandbox.host_network)
                .find(|p| p.sandbox.pod.as_ref().and_then(|id| id.uid.as_deref()) == uid)
                .unwrap();
            assert_eq!(
                r["value"],
                (f.get)(pod.transport.as_ref().unwrap()),
                "{name}"
            );
        }
    }
    // Values: exactly what the mapper read.
    assert_counters(&r1, "web-a", "eth0", &counters_of(&pods, &a, "eth0"));
    assert_counters(&r1, "web-b", "eth0", &counters_of(&pods, &b, "eth0"));
    assert_counters(&r1, "web-b", "net1", &counters_of(&pods, &b, "net1"));
    // The mapping: pod interface → host peer.
    let mapping = |pod: &str, iface: &str| -> Value {
        r1.iter()
            .find(|r| {
                r["metric"] == "netshim.pod.interface"
                    && r["resource"]["k8s.pod.name"] == pod
                    && r["attributes"]["network.interface.name"] == iface
            })
            .map(|r| r["attributes"].clone())
            .unwrap_or_else(|| panic!("no mapping for {pod} {iface}"))
    };
    let m = mapping("web-b", "net1");
    assert_eq!(m["netshim.host.interface.name"], "lxcnstotlpb1");
    assert_eq!(
        m["netshim.host.interface.index"],
        host_ifindex("lxcnstotlpb1")
    );
    assert_eq!(m["netshim.interface.kind"], "veth");
    assert_eq!(
        mapping("web-a", "eth0")["netshim.host.interface.name"],
        "lxcnstotlpa0"
    );

    // Known traffic, a second export: exact deltas, stable start times, and the host end's
    // counters the other way round.
    udp_exchange(&a, 81);
    let mut pods2 = discover(&mut mapper, &[&a, &b, &c]);
    let host_side = |counter: &str| host_counter("lxcnstotlpa0", counter);
    let (host_rx, host_tx) = (host_side("rx_bytes"), host_side("tx_bytes"));
    let (host_rxp, host_txp) = (host_side("rx_packets"), host_side("tx_packets"));
    name_pod(&mut pods2, &a, "web-a", "uid-otlp-a");
    name_pod(&mut pods2, &b, "web-b", "uid-otlp-b");
    let second = snapshot(pods2.clone());
    otlp.export(Arc::clone(&second)).await.expect("export");
    let r2 = sink.wait_for(second.taken_at, points).await;
    assert_counters(&r2, "web-a", "eth0", &counters_of(&pods2, &a, "eth0"));
    let io = |rs: &[Value], dir: &str| value(rs, "web-a", "k8s.pod.network.io", "eth0", dir);
    let pk =
        |rs: &[Value], dir: &str| value(rs, "web-a", "netshim.pod.network.packets", "eth0", dir);
    // On the wire: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + payload.
    assert_eq!(io(&r2, "receive") - io(&r1, "receive"), 5 * (42 + 300));
    assert_eq!(io(&r2, "transmit") - io(&r1, "transmit"), 7 * (42 + 100));
    assert_eq!(pk(&r2, "receive") - pk(&r1, "receive"), 5);
    assert_eq!(pk(&r2, "transmit") - pk(&r1, "transmit"), 7);
    assert_eq!(io(&r2, "receive"), host_tx, "pod rx = host end tx");
    assert_eq!(io(&r2, "transmit"), host_rx, "pod tx = host end rx");
    assert_eq!(pk(&r2, "receive"), host_txp);
    assert_eq!(pk(&r2, "transmit"), host_rxp);
    for r in r2.iter().filter(|r| r["kind"] == "sum") {
        assert_eq!(
            r["start"],
            nanos(first.taken_at),
            "start kept across exports: {r}"
        );
        assert_eq!(r["time"], nanos(second.taken_at));
    }

    let stats = wait_stats(&otlp, |s| s.sent_batches == 2).await;
    assert_eq!(stats.sent_points, 2 * points as u64);
    assert_eq!(
        (
            stats.retries,
            stats.dropped_failed,
            stats.dropped_queue_full
        ),
        (0, 0, 0)
    );
    // Pods gone from the snapshot are forgotten.
    otlp.export(snapshot(vec![])).await.expect("export");
    assert_eq!(otlp.tracked_series(), 0);
    otlp.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_with_and_without_gzip() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-http");
    let ns = Netns::new("nst-otlp-h");
    let _l = veth("lxcnstotlph0", "eth0", &ns.name);
    let sink = Sink::start(&venv, &dir, "http", &["--http", "127.0.0.1:0"]);
    let base = format!("http://127.0.0.1:{}", sink.http_port);
    let gzip = exporter(Protocol::Http, json!({"endpoint": base}));
    // Queue off: export returns once the collector has the batch.
    let plain = exporter(
        Protocol::Http,
        json!({
            "endpoint": "http://127.0.0.1:9",
            "metrics_endpoint": format!("{base}/v1/metrics"),
            "compression": "none",
            "sending_queue": {"enabled": false},
        }),
    );
    gzip.start().await.unwrap();
    plain.start().await.unwrap();

    let mut mapper = mapper_without_transport();
    let mut pods = discover(&mut mapper, &[&ns]);
    name_pod(&mut pods, &ns, "web-h", "uid-otlp-h");
    let snap = snapshot(pods.clone());
    plain.export(Arc::clone(&snap)).await.expect("export");
    assert_eq!(plain.stats().sent_batches, 1, "sent before export returned");
    gzip.export(Arc::clone(&snap)).await.expect("export");
    let records = sink.wait_for(snap.taken_at, 18).await;
    let by_request = |encoding: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["content_encoding"] == encoding)
            .cloned()
            .collect()
    };
    let (zipped, identity) = (by_request("gzip"), by_request("identity"));
    assert_eq!((zipped.len(), identity.len()), (9, 9));
    for rs in [&zipped, &identity] {
        assert!(rs.iter().all(|r| r["transport"] == "http"));
        assert_eq!(rs[0]["resource"]["k8s.pod.uid"], "uid-otlp-h");
        assert_counters(rs, "web-h", "eth0", &counters_of(&pods, &ns, "eth0"));
    }
    gzip.shutdown().await.unwrap();
    plain.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_and_permanent_ones_dropped() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-retry");
    let ns = Netns::new("nst-otlp-r");
    let _l = veth("lxcnstotlpr0", "eth0", &ns.name);
    let mut mapper = mapper_without_transport();
    let mut pods = discover(&mut mapper, &[&ns]);
    name_pod(&mut pods, &ns, "web-r", "uid-otlp-r");
    let retry = json!({"initial_interval": "100ms", "max_interval": "200ms"});

    // UNAVAILABLE, then 503, twice each: the batch arrives on the third attempt.
    let grpc_sink = Sink::start(
        &venv,
        &dir,
        "g",
        &["--grpc", "127.0.0.1:0", "--fail-first", "2"],
    );
    let http_sink = Sink::start(
        &venv,
        &dir,
        "h",
        &["--http", "127.0.0.1:0", "--fail-first", "2"],
    );
    let over_grpc = exporter(
        Protocol::Grpc,
        json!({"endpoint": format!("http://127.0.0.1:{}", grpc_sink.grpc_port),
               "retry_on_failure": retry}),
    );
    let over_http = exporter(
        Protocol::Http,
        json!({"endpoint": format!("http://127.0.0.1:{}", http_sink.http_port),
               "retry_on_failure": retry}),
    );
    over_grpc.start().await.unwrap();
    over_http.start().await.unwrap();
    let snap = snapshot(pods.clone());
    over_grpc.export(Arc::clone(&snap)).await.unwrap();
    over_http.export(Arc::clone(&snap)).await.unwrap();
    for (sink, otlp) in [(&grpc_sink, &over_grpc), (&http_sink, &over_http)] {
        let records = sink.wait_for(snap.taken_at, 9).await;
        assert!(
            records.iter().all(|r| r["request"] == 3),
            "third request: {records:#?}"
        );
        let stats = wait_stats(otlp, |s| s.sent_batches == 1).await;
        assert_eq!(stats.retries, 2, "{}: {stats:?}", otlp.id());
        assert_eq!(stats.dropped_failed, 0);
    }

    // Not retryable: a 404 is final.
    let wrong_path = exporter(
        Protocol::Http,
        json!({"endpoint": "http://127.0.0.1:9",
               "metrics_endpoint": format!("http://127.0.0.1:{}/v1/nothing", http_sink.http_port),
               "retry_on_failure": retry, "sending_queue": {"enabled": false}}),
    );
    let err = wrong_path.export(Arc::clone(&snap)).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    let stats = wrong_path.stats();
    assert_eq!(
        (stats.dropped_failed, stats.retries, stats.dropped_points),
        (1, 0, 9)
    );

    // Nobody listening: retried until max_elapsed_time, then dropped.
    let closed = exporter(
        Protocol::Grpc,
        json!({"endpoint": format!("127.0.0.1:{}", free_port()), "tls": {"insecure": true},
               "retry_on_failure": {"initial_interval": "50ms", "max_interval": "50ms",
                                    "max_elapsed_time": "400ms"},
               "sending_queue": {"enabled": false}}),
    );
    let err = closed.export(Arc::clone(&snap)).await.unwrap_err();
    assert!(err.to_string().contains("max_elapsed_time"), "{err}");
    let stats = closed.stats();
    assert_eq!(stats.dropped_failed, 1);
    assert!(stats.retries >= 2, "{stats:?}");

    over_grpc.shutdown().await.unwrap();
    over_http.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_skip_verify() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-tls");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("make a certificate");
    let (cert_file, key_file) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let ns = Netns::new("nst-otlp-t");
    let _l = veth("lxcnstotlpt0", "eth0", &ns.name);
    let mut mapper = mapper_without_transport();
    let mut pods = discover(&mut mapper, &[&ns]);
    name_pod(&mut pods, &ns, "web-t", "uid-otlp-t");
    let sink = Sink::start(
        &venv,
        &dir,
        "tls",
        &[
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    let once = json!({"enabled": false});
    let exporters = [
        // host:port means TLS (no tls.insecure), verified against the private CA.
        exporter(
            Protocol::Grpc,
            json!({"endpoint": format!("localhost:{}", sink.grpc_port),
                   "tls": {"ca_file": cert_file}, "sending_queue": once}),
        ),
        exporter(
            Protocol::Http,
            json!({"endpoint": format!("https://127.0.0.1:{}", sink.http_port),
                   "tls": {"ca_file": cert_file}, "sending_queue": once}),
        ),
        // Any certificate, any name.
        exporter(
            Protocol::Grpc,
            json!({"endpoint": format!("https://127.0.0.1:{}", sink.grpc_port),
                   "tls": {"insecure_skip_verify": true, "server_name_override": "elsewhere.test"},
                   "sending_queue": once}),
        ),
    ];
    let snap = snapshot(pods);
    for otlp in &exporters {
        otlp.start().await.unwrap();
        otlp.export(Arc::clone(&snap))
            .await
            .expect("export over TLS");
    }
    let records = sink.wait_for(snap.taken_at, 27).await;
    assert_eq!(records.len(), 27);

    // The system's roots do not know this certificate: the handshake fails, nothing arrives.
    let untrusted = exporter(
        Protocol::Http,
        json!({"endpoint": format!("https://localhost:{}", sink.http_port),
               "retry_on_failure": {"enabled": false}, "sending_queue": once}),
    );
    let err = untrusted.export(Arc::clone(&snap)).await.unwrap_err();
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    assert_eq!(untrusted.stats().dropped_failed, 1);
    assert_eq!(sink.records().len(), 27);
}

// ---------------------------------------------------------------------------------------------
// Rotel: a real collector
// ---------------------------------------------------------------------------------------------

/// Rotel started on fixed loopback ports, output to `out`, killed by pid on drop.
struct Rotel {
    process: Process,
    out: PathBuf,
}

impl Rotel {
    fn start(venv: &Path, dir: &TempDir, grpc: u16, http: u16, name: &str) -> Rotel {
        let python = venv.join("bin/python");
        let package = Command::new(&python)
            .args([
                "-c",
                "import os, rotel; print(os.path.dirname(rotel.__file__))",
            ])
            .output()
            .expect("find rotel");
        let agent =
            PathBuf::from(String::from_utf8(package.stdout).unwrap().trim()).join("rotel-agent");
        let out = dir.path(&format!("{name}.out"));
        let log = std::fs::File::create(&out).unwrap();
        let child = Command::new(agent)
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(dir.path(&format!("{name}.pid")))
            .arg("--log-file")
            .arg(dir.path(&format!("{name}.log")))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rotel-agent");
        let rotel = Rotel {
            process: Process { child },
            out,
        };
        let up = wait_until(Duration::from_secs(15), || {
            [grpc, http]
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        assert!(up, "rotel did not listen: {}", rotel.output());
        rotel
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    async fn wait_for_text(&self, needles: &[&str]) {
        for _ in 0..300 {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "rotel never printed {needles:?}; it printed:\n{}",
            self.output()
        );
    }

    fn stop(self) {
        drop(self.process);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotel_receives_over_grpc_and_http_and_survives_an_outage() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-rotel");
    let ns = Netns::new("nst-otlp-rot");
    let _l = veth("lxcnstotlprot0", "eth0", &ns.name);
    let mut mapper = mapper_without_transport();
    let (grpc_port, http_port) = (free_port(), free_port());
    let rotel = Rotel::start(&venv, &dir, grpc_port, http_port, "rotel1");

    let fast_retry = json!({"initial_interval": "100ms", "max_interval": "200ms",
                            "max_elapsed_time": "0s"});
    let ctx = BuildContext::new("test");
    let over_grpc = exporter_in(
        &ctx,
        Protocol::Grpc,
        json!({"endpoint": format!("127.0.0.1:{grpc_port}"), "tls": {"insecure": true},
               "retry_on_failure": fast_retry, "sending_queue": {"queue_size": 3},
               "timeout": "1s"}),
    );
    let over_http = exporter(
        Protocol::Http,
        json!({"endpoint": format!("http://127.0.0.1:{http_port}")}),
    );
    over_grpc.start().await.unwrap();
    over_http.start().await.unwrap();
    let snap = |name: &str, mapper: &mut InterfaceMapper| {
        let mut pods = discover(mapper, &[&ns]);
        name_pod(&mut pods, &ns, name, "uid-otlp-rotel");
        snapshot(pods)
    };
    over_grpc
        .export(snap("rotel-pod-grpc", &mut mapper))
        .await
        .unwrap();
    over_http
        .export(snap("rotel-pod-http", &mut mapper))
        .await
        .unwrap();
    rotel
        .wait_for_text(&[
            "k8s.pod.network.io",
            "rotel-pod-grpc",
            "rotel-pod-http",
            "lxcnstotlprot0",
        ])
        .await;
    wait_stats(&over_grpc, |s| s.sent_batches == 1).await;
    wait_stats(&over_http, |s| s.sent_batches == 1).await;
    over_http.shutdown().await.unwrap();

    // The collector goes away: exports keep returning at once, the queue stays within
    // queue_size and its oldest batches are dropped and counted. Each export is followed by one
    // more failed attempt of the sender (the collector is still away) before the next.
    rotel.stop();
    for i in 0..8 {
        let tried = over_grpc.stats().retries;
        over_grpc
            .export(snap(&format!("outage-{i}"), &mut mapper))
            .await
            .expect("export returns while the collector is down");
        let stats = over_grpc.stats();
        assert!(stats.queue_length <= 3, "{stats:?}");
        wait_stats(&over_grpc, |s| s.retries > tried).await;
    }
    let stats = over_grpc.stats();
    assert_eq!(stats.queue_length, 3, "{stats:?}");
    assert!(
        stats.dropped_queue_full >= 4,
        "8 exports, 3 queued, ≤ 1 in flight: {stats:?}"
    );
    assert!(stats.retries >= 3, "{stats:?}");
    assert_eq!(stats.sent_batches, 1);
    assert!(stats.queue_bytes > 0);

    // Back on the same port: the queue drains in order and new data flows.
    let rotel = Rotel::start(&venv, &dir, grpc_port, http_port, "rotel2");
    rotel.wait_for_text(&["outage-7"]).await;
    let after = snap("after-outage", &mut mapper);
    over_grpc.export(after).await.unwrap();
    rotel.wait_for_text(&["after-outage"]).await;
    // Every batch sent or counted as dropped.
    let stats = wait_stats(&over_grpc, |s| {
        s.sent_batches + s.dropped_queue_full == 1 + 8 + 1
    })
    .await;
    assert_eq!(stats.queue_length, 0, "{stats:?}");
    assert_eq!(stats.dropped_failed, 0);
    // The sending task never failed: shutdown joins it cleanly.
    over_grpc.shutdown().await.expect("clean shutdown");
    assert!(
        ctx.metrics
            .view()
            .exporters
            .iter()
            .any(|(id, _)| id == "otlp_grpc/test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_pushes_the_last_snapshot_and_is_bounded() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-shutdown");
    let ns = Netns::new("nst-otlp-s");
    let _l = veth("lxcnstotlps0", "eth0", &ns.name);
    let mut mapper = mapper_without_transport();
    let mut pods = discover(&mut mapper, &[&ns]);
    name_pod(&mut pods, &ns, "web-s", "uid-otlp-s");
    let sink = Sink::start(&venv, &dir, "s", &["--grpc", "127.0.0.1:0"]);
    let otlp = exporter(
        Protocol::Grpc,
        json!({"endpoint": format!("http://127.0.0.1:{}", sink.grpc_port)}),
    );
    otlp.start().await.unwrap();
    let last = snapshot(pods.clone());
    otlp.export(Arc::clone(&last)).await.unwrap();
    otlp.shutdown().await.expect("shutdown");
    // Delivered before shutdown returned.
    assert_eq!(sink.wait_for(last.taken_at, 9).await.len(), 9);
    assert!(
        otlp.export(Arc::clone(&last)).await.is_err(),
        "no export after shutdown"
    );

    // A collector that never comes: shutdown gives up after 2 × timeout and counts the loss.
    let gone = exporter(
        Protocol::Grpc,
        json!({"endpoint": format!("127.0.0.1:{}", free_port()), "tls": {"insecure": true},
               "timeout": "500ms", "retry_on_failure": {"initial_interval": "5s"}}),
    );
    gone.start().await.unwrap();
    gone.export(Arc::clone(&last)).await.unwrap();
    let began = std::time::Instant::now();
    assert!(gone.shutdown().await.is_err());
    // It did not wait for the 5 s retry: the shutdown bound ended it (the bound itself is timed
    // exactly on paused time in the exporter helper's tests).
    let took = began.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(gone.stats().dropped_shutdown, 1);
}

/// A loopback TCP relay to `port` that counts the bytes the client sends.
async fn counting_relay(port: u16) -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
        }
    });
    (relay_port, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_shrinks_what_goes_on_the_wire() {
    use std::sync::atomic::Ordering;
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-gzip");
    let ns = Netns::new("nst-otlp-z");
    let _l0 = veth("lxcnstotlpz0", "eth0", &ns.name);
    let _l1 = veth("lxcnstotlpz1", "net1", &ns.name);
    let mut mapper = mapper_without_transport();
    let mut pods = discover(&mut mapper, &[&ns]);
    name_pod(&mut pods, &ns, "web-z", "uid-otlp-z");
    let snap = snapshot(pods);
    let sink = Sink::start(&venv, &dir, "z", &["--grpc", "127.0.0.1:0"]);
    let mut wire = Vec::new();
    for compression in ["gzip", "none"] {
        let (port, sent) = counting_relay(sink.grpc_port).await;
        let otlp = exporter(
            Protocol::Grpc,
            json!({"endpoint": format!("http://127.0.0.1:{port}"), "compression": compression,
                   "sending_queue": {"enabled": false}}),
        );
        otlp.export(Arc::clone(&snap)).await.expect("export");
        wire.push(sent.load(Ordering::Relaxed));
    }
    assert_eq!(sink.wait_for(snap.taken_at, 36).await.len(), 36);
    let (gzip, none) = (wire[0], wire[1]);
    assert!(gzip * 10 < none * 7, "gzip {gzip} bytes vs none {none}");
}

/// The whole agent, from its binary: pod metrics through the `otlp_grpc` exporter and the
/// agent's own metrics through `service.telemetry.metrics`, both into the recording sink; then
/// SIGTERM, after which the agent exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pushes_pod_metrics_and_its_own_telemetry() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-agent");
    let sink = Sink::start(&venv, &dir, "sink", &["--grpc", "127.0.0.1:0"]);
    let ns = Netns::new("nst-otlp-agent");
    let _link = quiet_veth(&ns, "lxcnstotlpag0", 86);
    let config = dir.path("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"receivers:
  netns:
    collection_interval: 300ms
resolvers:
  interfaces:
exporters:
  otlp:
    endpoint: 127.0.0.1:{port}
    tls:
      insecure: true
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [otlp]
  telemetry:
    metrics:
      endpoint: http://127.0.0.1:{port}
      interval: 500ms
"#,
            port = sink.grpc_port
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .arg("run")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Process { child };
    let mut seen_pod = false;
    let mut seen_own = false;
    for _ in 0..200 {
        let records = sink.records();
        seen_pod |= records.iter().any(|r| {
            r["metric"] == "k8s.pod.network.io"
                && r["resource"]["netshim.netns.path"] == "/run/netns/nst-otlp-agent"
        });
        seen_own |= records
            .iter()
            .any(|r| r["metric"] == "netshim.cycles" && r["resource"]["service.name"] == "netshim");
        if seen_pod && seen_own {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen_pod,
        "pod metrics through otlp (deprecated alias) reached the sink"
    );
    assert!(seen_own, "the agent's own metrics reached the sink");

    let _ = Command::new("kill")
        .args(["-TERM", &agent.pid().to_string()])
        .status();
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = agent.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the agent exits after SIGTERM");
    let mut log = String::new();
    let _ = std::io::Read::read_to_string(&mut agent.child.stderr.take().unwrap(), &mut log);
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("deprecated"), "the alias is flagged: {log}");
}

/// Event-driven freshness reaches OTLP too: with `collection_interval: 30s`, a new pod is in an
/// export soon after its veth appears, and an export soon after its namespace is deleted no
/// longer has it (a second pod stays, so exports go on: an empty snapshot is not sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pod_is_exported_within_a_second_or_so_with_a_30s_interval() {
    let Some(venv) = venv() else { return };
    let dir = TempDir::new("nst-otlp-fresh");
    let sink = Sink::start(&venv, &dir, "sink", &["--grpc", "127.0.0.1:0"]);
    let stays = Netns::new("nst-otlp-stay");
    let _stays_link = quiet_veth(&stays, "lxcnstotlpst0", 88);
    let config = dir.path("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  netns:\n    collection_interval: 30s\nresolvers:\n  interfaces:\nexporters:\n  otlp_grpc:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [otlp_grpc]\n",
            sink.grpc_port
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Process { child };
    let path_of = |r: &Value| {
        r["resource"]["netshim.netns.path"]
            .as_str()
            .map(str::to_owned)
    };
    let stays_path = "/run/netns/nst-otlp-stay";
    let first = wait_until(Duration::from_secs(10), || {
        sink.records()
            .iter()
            .any(|r| path_of(r).as_deref() == Some(stays_path))
    });
    assert!(first, "the first cycle's export arrived");

    let mut ns = Netns::new("nst-otlp-fresh");
    let _link = quiet_veth(&ns, "lxcnstotlpfr0", 89);
    let path = "/run/netns/nst-otlp-fresh";
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || {
            sink.records()
                .iter()
                .any(|r| path_of(r).as_deref() == Some(path))
        }),
        "the new pod was exported well before the 30 s interval"
    );
    let appeared = started.elapsed();

    // The last request that had the pod; then one after it that has the other pod but not it.
    let last_with = |records: &[Value]| {
        records
            .iter()
            .filter(|r| path_of(r).as_deref() == Some(path))
            .filter_map(|r| r["request"].as_u64())
            .max()
            .unwrap_or(0)
    };
    ns.delete();
    let started = std::time::Instant::now();
    let mut without = 0;
    let gone = wait_until(Duration::from_secs(3), || {
        let records = sink.records();
        let with = last_with(&records);
        without = records
            .iter()
            .filter(|r| path_of(r).as_deref() == Some(stays_path))
            .filter_map(|r| r["request"].as_u64())
            .find(|n| *n > with)
            .unwrap_or(0);
        without > 0
    });
    assert!(
        gone,
        "an export without the deleted pod came well before the interval"
    );
    let gone_after = started.elapsed();
    // The sink's records hold only requests recorded whole (see `Sink::records`), so request
    // `without` was complete when it was found: reading again finds the same.
    assert!(
        last_with(&sink.records()) < without,
        "request {without} had the deleted pod after all"
    );
    eprintln!(
        "otlp freshness: in the export after {appeared:?}, out after {gone_after:?} \
         (collection_interval 30s)"
    );
}
