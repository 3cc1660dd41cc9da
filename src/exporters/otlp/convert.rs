//! A [`Snapshot`] as one `ExportMetricsServiceRequest`: one `ResourceMetrics` per pod, scope
//! `netshim`, the pod-perspective counters as cumulative monotonic sums and the
//! interface mapping as a gauge.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::model::{
    Counters, Interface, PodNetwork, Snapshot, TRANSPORT_FIELDS, TransportCounters, TransportField,
};

/// The instrumentation scope of every metric.
pub const SCOPE_NAME: &str = "netshim";

pub const NETWORK_IO: &str = "k8s.pod.network.io";
pub const NETWORK_ERRORS: &str = "k8s.pod.network.errors";
pub const NETWORK_PACKETS: &str = "netshim.pod.network.packets";
pub const NETWORK_DROPPED: &str = "netshim.pod.network.dropped";
pub const POD_INTERFACE: &str = "netshim.pod.interface";

/// Number of data points per interface: four counters by two directions, plus the mapping.
pub const POINTS_PER_INTERFACE: usize = 9;

/// Where each series of a pipeline started: the time netshim first saw it, kept across
/// exports, reset when the interface is recreated (index changed, or a counter went back).
#[derive(Debug, Default)]
pub struct SeriesStarts {
    /// By pipeline: an exporter fed by several pipelines sees each one's snapshots.
    pipelines: HashMap<String, HashMap<SeriesKey, SeriesState>>,
    /// Each pod's transport counters, by pipeline: one start for the set, reset when any of
    /// them went back (the namespace was made anew under the same pod).
    transport: HashMap<String, HashMap<PodKey, TransportState>>,
}

#[derive(Debug, Clone)]
struct TransportState {
    start: SystemTime,
    last: TransportCounters,
}

/// A pod (by uid, else by namespace, else by sandbox id) and a pod-side interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PodKey {
    Uid(String),
    Netns { dev: u64, inode: u64 },
    Sandbox(String),
}

type SeriesKey = (PodKey, crate::model::Text);

#[derive(Debug, Clone)]
struct SeriesState {
    start: SystemTime,
    ifindex: u32,
    last: Counters,
}

impl SeriesStarts {
    /// Starts for the series in `snapshot`, remembering them and forgetting the series of
    /// pods (and interfaces) no longer in it.
    fn observe(&mut self, snapshot: &Snapshot) -> Starts {
        let prev = self
            .pipelines
            .remove(&snapshot.pipeline)
            .unwrap_or_default();
        let transport_prev = self
            .transport
            .remove(&snapshot.pipeline)
            .unwrap_or_default();
        let mut starts = Starts {
            prev,
            next: HashMap::new(),
            transport_prev,
            transport_next: HashMap::new(),
            now: snapshot.taken_at,
        };
        for pod in exported_pods(snapshot) {
            let Some(key) = pod_key(pod) else { continue };
            for iface in &pod.interfaces {
                starts.record((key.clone(), iface.name.clone()), iface);
            }
            if let Some(t) = &pod.transport {
                starts.record_transport(key, t);
            }
        }
        starts
    }

    fn keep(&mut self, pipeline: &str, starts: Starts) {
        self.pipelines.insert(pipeline.to_string(), starts.next);
        self.transport
            .insert(pipeline.to_string(), starts.transport_next);
    }

    /// How many series are remembered (all pipelines).
    pub fn len(&self) -> usize {
        self.pipelines.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Starts {
    prev: HashMap<SeriesKey, SeriesState>,
    next: HashMap<SeriesKey, SeriesState>,
    transport_prev: HashMap<PodKey, TransportState>,
    transport_next: HashMap<PodKey, TransportState>,
    now: SystemTime,
}

impl Starts {
    fn record_transport(&mut self, key: PodKey, now: &TransportCounters) {
        let known = self
            .transport_prev
            .remove(&key)
            .or_else(|| self.transport_next.get(&key).cloned());
        let went_back = |s: &TransportState| {
            TRANSPORT_FIELDS
                .iter()
                .any(|f| !f.gauge && (f.get)(now) < (f.get)(&s.last))
        };
        let start = match known {
            Some(s) if !went_back(&s) => s.start,
            _ => self.now,
        };
        self.transport_next
            .insert(key, TransportState { start, last: *now });
    }

    fn transport_start(&self, key: &Option<PodKey>) -> SystemTime {
        key.as_ref()
            .and_then(|k| self.transport_next.get(k))
            .map_or(self.now, |s| s.start)
    }

    fn record(&mut self, key: SeriesKey, iface: &Interface) {
        let known = self
            .prev
            .remove(&key)
            .or_else(|| self.next.get(&key).cloned());
        let start = match known {
            Some(s) if s.ifindex == iface.ifindex && !went_back(&s.last, &iface.counters) => {
                s.start
            }
            _ => self.now,
        };
        self.next.insert(
            key,
            SeriesState {
                start,
                ifindex: iface.ifindex,
                last: iface.counters,
            },
        );
    }

    fn start_of(&self, key: &Option<PodKey>, iface: &Interface) -> SystemTime {
        key.as_ref()
            .and_then(|k| self.next.get(&(k.clone(), iface.name.clone())))
            .map_or(self.now, |s| s.start)
    }
}

fn went_back(before: &Counters, now: &Counters) -> bool {
    let b = [
        before.rx_bytes,
        before.tx_bytes,
        before.rx_packets,
        before.tx_packets,
        before.rx_errors,
        before.tx_errors,
        before.rx_dropped,
        before.tx_dropped,
    ];
    let n = [
        now.rx_bytes,
        now.tx_bytes,
        now.rx_packets,
        now.tx_packets,
        now.rx_errors,
        now.tx_errors,
        now.rx_dropped,
        now.tx_dropped,
    ];
    b.iter().zip(n.iter()).any(|(b, n)| n < b)
}

fn pod_key(pod: &PodNetwork) -> Option<PodKey> {
    let sandbox = &pod.sandbox;
    if let Some(uid) = sandbox.pod.as_ref().and_then(|p| p.uid.as_ref()) {
        return Some(PodKey::Uid(uid.clone()));
    }
    if let Some(ns) = &sandbox.netns {
        return Some(PodKey::Netns {
            dev: ns.dev,
            inode: ns.inode,
        });
    }
    sandbox.sandbox_id.clone().map(PodKey::Sandbox)
}

/// The pods that get a resource: not host-network, with at least one interface or their
/// TCP/UDP counters.
fn exported_pods(snapshot: &Snapshot) -> impl Iterator<Item = &PodNetwork> {
    snapshot
        .pods
        .iter()
        .filter(|p| !p.sandbox.host_network && (!p.interfaces.is_empty() || p.transport.is_some()))
}

/// The request for one snapshot, and its number of data points.
pub fn to_request(
    snapshot: &Snapshot,
    node_override: Option<&str>,
    series: &mut SeriesStarts,
) -> (ExportMetricsServiceRequest, usize) {
    let starts = series.observe(snapshot);
    let time = unix_nanos(snapshot.taken_at);
    let node = node_override.or(Some(snapshot.node.as_str()).filter(|n| !n.is_empty()));
    let mut points = 0;
    let resource_metrics = exported_pods(snapshot)
        .map(|pod| {
            points += pod.interfaces.len() * POINTS_PER_INTERFACE;
            if pod.transport.is_some() {
                points += TRANSPORT_FIELDS.len();
            }
            pod_metrics(pod, node, time, &starts)
        })
        .collect();
    series.keep(&snapshot.pipeline, starts);
    (ExportMetricsServiceRequest { resource_metrics }, points)
}

fn pod_metrics(
    pod: &PodNetwork,
    node: Option<&str>,
    time: u64,
    starts: &Starts,
) -> ResourceMetrics {
    let key = pod_key(pod);
    let mut io = Vec::new();
    let mut errors = Vec::new();
    let mut packets = Vec::new();
    let mut dropped = Vec::new();
    let mut mapping = Vec::new();
    for iface in &pod.interfaces {
        let start = unix_nanos(starts.start_of(&key, iface));
        let c = &iface.counters;
        let by_direction = |rx: u64, tx: u64| {
            [("receive", rx), ("transmit", tx)].map(|(direction, value)| NumberDataPoint {
                attributes: vec![
                    string_kv("network.interface.name", &iface.name),
                    string_kv("network.io.direction", direction),
                ],
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(int_value(value)),
                ..Default::default()
            })
        };
        io.extend(by_direction(c.rx_bytes, c.tx_bytes));
        errors.extend(by_direction(c.rx_errors, c.tx_errors));
        packets.extend(by_direction(c.rx_packets, c.tx_packets));
        dropped.extend(by_direction(c.rx_dropped, c.tx_dropped));

        let mut attributes = vec![
            string_kv("network.interface.name", &iface.name),
            string_kv("netshim.interface.kind", &iface.kind),
        ];
        if let Some(peer) = &iface.peer {
            attributes.push(string_kv("netshim.host.interface.name", &peer.name));
            attributes.push(KeyValue {
                key: "netshim.host.interface.index".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(i64::from(peer.ifindex))),
                }),
                ..Default::default()
            });
        }
        mapping.push(NumberDataPoint {
            attributes,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsInt(1)),
            ..Default::default()
        });
    }
    let mut metrics = vec![
        sum(
            NETWORK_IO,
            "Bytes received and transmitted by the pod, per interface, from the pod's point of view",
            "By",
            io,
        ),
        sum(
            NETWORK_ERRORS,
            "Receive and transmit errors of the pod's interfaces, from the pod's point of view",
            "{error}",
            errors,
        ),
        sum(
            NETWORK_PACKETS,
            "Packets received and transmitted by the pod, per interface, from the pod's point of view",
            "{packet}",
            packets,
        ),
        sum(
            NETWORK_DROPPED,
            "Packets dropped on receive and transmit by the pod's interfaces, from the pod's point of view",
            "{packet}",
            dropped,
        ),
        Metric {
            name: POD_INTERFACE.into(),
            description: "A pod interface and its host-side peer (value 1)".into(),
            unit: "{interface}".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: mapping,
            })),
            ..Default::default()
        },
    ];
    if let Some(t) = &pod.transport {
        let start = unix_nanos(starts.transport_start(&key));
        metrics.extend(
            TRANSPORT_FIELDS
                .iter()
                .map(|f| transport_metric(f, t, start, time)),
        );
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes: resource_attributes(pod, node),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

/// The OTLP name of a transport counter: `netshim.pod.tcp.resets_sent`.
pub fn transport_name(f: &TransportField) -> String {
    format!("netshim.pod.{}.{}", f.protocol, f.name)
}

/// One transport counter of a pod, a point without attributes (the pod is the resource): a
/// cumulative monotonic sum, or a gauge for current connections.
fn transport_metric(f: &TransportField, t: &TransportCounters, start: u64, time: u64) -> Metric {
    let value = (f.get)(t);
    let description = format!("{} (kernel: {})", f.help.trim_end_matches('.'), f.kernel);
    if f.gauge {
        let point = NumberDataPoint {
            time_unix_nano: time,
            value: Some(int_value(value)),
            ..Default::default()
        };
        return Metric {
            name: transport_name(f),
            description,
            unit: f.unit.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![point],
            })),
            ..Default::default()
        };
    }
    let point = NumberDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(int_value(value)),
        ..Default::default()
    };
    sum(&transport_name(f), &description, f.unit, vec![point])
}

/// The resource of one pod: what the resolvers found (OpenTelemetry names), the identity, the
/// node; the namespace path when nothing names the pod.
fn resource_attributes(pod: &PodNetwork, node: Option<&str>) -> Vec<KeyValue> {
    let mut attrs: BTreeMap<&str, &str> = BTreeMap::new();
    let identity = pod.sandbox.pod.as_ref();
    if let Some(id) = identity {
        for (k, v) in &id.attributes {
            attrs.insert(k, v);
        }
        for (key, value) in [
            ("k8s.pod.name", &id.name),
            ("k8s.pod.uid", &id.uid),
            ("k8s.namespace.name", &id.namespace),
        ] {
            if let Some(v) = value {
                attrs.insert(key, v);
            }
        }
    }
    if let Some(node) = node {
        attrs.insert("k8s.node.name", node);
    }
    let named = identity.is_some_and(|id| id.name.is_some() || id.uid.is_some());
    let path;
    if !named && let Some(ns) = &pod.sandbox.netns {
        path = ns.path.to_string_lossy();
        attrs.insert("netshim.netns.path", &path);
    }
    attrs.into_iter().map(|(k, v)| string_kv(k, v)).collect()
}

fn sum(name: &str, description: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int_value(v: u64) -> number_data_point::Value {
    number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX))
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{Link, NetnsRef, Peer, PodIdentity, Sandbox};

    fn iface(name: &str, ifindex: u32, rx_bytes: u64, peer: Option<&str>) -> Interface {
        Interface::new(
            Link {
                name: name.into(),
                ifindex,
                kind: "veth".into(),
                mac: None,
                addresses: [].into(),
                peer: peer.map(|p| Peer {
                    name: p.into(),
                    ifindex: 17,
                    kind: "veth".into(),
                }),
            },
            Counters {
                rx_bytes,
                tx_bytes: 2,
                rx_packets: 3,
                tx_packets: 4,
                rx_errors: 5,
                tx_errors: 6,
                rx_dropped: 7,
                tx_dropped: 8,
            },
        )
    }

    fn pod(uid: Option<&str>, inode: u64, interfaces: Vec<Interface>) -> PodNetwork {
        PodNetwork {
            sandbox: Sandbox {
                netns: Some(NetnsRef {
                    path: std::path::PathBuf::from(format!("/run/netns/p{inode}")).into(),
                    inode,
                    dev: 4,
                }),
                pod: uid.map(|u| PodIdentity {
                    name: Some(format!("pod-{u}")),
                    namespace: Some("shop".into()),
                    uid: Some(u.into()),
                    attributes: [("k8s.deployment.name".to_string(), "web".to_string())].into(),
                }),
                ..Sandbox::default()
            },
            interfaces,
            transport: None,
        }
    }

    fn snapshot(at: u64, pods: Vec<PodNetwork>) -> Snapshot {
        Snapshot {
            pipeline: "metrics".into(),
            node: "node-1".into(),
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            pods,
        }
    }

    fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
        kvs.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    Some(any_value::Value::IntValue(i)) => i.to_string(),
                    other => panic!("unexpected {other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn starts_of(req: &ExportMetricsServiceRequest) -> Vec<u64> {
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics[0].metrics)
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => Some(s.data_points.iter()),
                _ => None,
            })
            .flatten()
            .map(|p| p.start_time_unix_nano)
            .collect()
    }

    #[test]
    fn transport_counters_are_points_of_the_pods_resource_with_units_and_kernel_names() {
        let mut p = pod(Some("u1"), 1, vec![iface("eth0", 2, 1, None)]);
        p.transport = Some(std::sync::Arc::new(TransportCounters {
            tcp_retransmitted_segments: 7,
            tcp_established_connections: 3,
            ..TransportCounters::default()
        }));
        let mut series = SeriesStarts::default();
        let (req, points) = to_request(&snapshot(100, vec![p.clone()]), None, &mut series);
        assert_eq!(points, POINTS_PER_INTERFACE + TRANSPORT_FIELDS.len());
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let by_name = |n: &str| metrics.iter().find(|m| m.name == n).unwrap();
        let retrans = by_name("netshim.pod.tcp.retransmitted_segments");
        assert_eq!(retrans.unit, "{segment}");
        assert!(retrans.description.contains("Tcp: RetransSegs"));
        let Some(metric::Data::Sum(sum)) = &retrans.data else {
            panic!("a sum: {retrans:?}")
        };
        assert!(sum.is_monotonic);
        assert!(
            sum.data_points[0].attributes.is_empty(),
            "the pod is the resource"
        );
        assert_eq!(sum.data_points[0].value, Some(int_value(7)));
        let estab = by_name("netshim.pod.tcp.established_connections");
        let Some(metric::Data::Gauge(g)) = &estab.data else {
            panic!("a gauge: {estab:?}")
        };
        assert_eq!(g.data_points[0].value, Some(int_value(3)));

        // The start stays while the counters grow, and resets when one goes back.
        let mut later = p.clone();
        std::sync::Arc::make_mut(later.transport.as_mut().unwrap()).tcp_retransmitted_segments = 9;
        let (req, _) = to_request(&snapshot(110, vec![later.clone()]), None, &mut series);
        let start = |req: &ExportMetricsServiceRequest| {
            let m = &req.resource_metrics[0].scope_metrics[0].metrics;
            let m = m
                .iter()
                .find(|m| m.name == "netshim.pod.tcp.resets_sent")
                .unwrap();
            match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points[0].start_time_unix_nano,
                _ => unreachable!(),
            }
        };
        assert_eq!(start(&req), 100_000_000_000);
        std::sync::Arc::make_mut(later.transport.as_mut().unwrap()).tcp_retransmitted_segments = 1;
        let (req, _) = to_request(&snapshot(120, vec![later]), None, &mut series);
        assert_eq!(start(&req), 120_000_000_000);
    }

    #[test]
    fn one_resource_per_pod_with_identity_node_and_attributes() {
        let host_net = PodNetwork {
            sandbox: Sandbox {
                host_network: true,
                ..Sandbox::default()
            },
            interfaces: vec![iface("eth0", 2, 1, None)],
            transport: None,
        };
        let snap = snapshot(
            100,
            vec![
                pod(Some("u1"), 1, vec![iface("eth0", 2, 1, Some("lxc1"))]),
                pod(None, 2, vec![iface("eth0", 2, 1, None)]),
                pod(Some("u3"), 3, vec![]),
                host_net,
            ],
        );
        let (req, points) = to_request(&snap, None, &mut SeriesStarts::default());
        assert_eq!(
            req.resource_metrics.len(),
            2,
            "host network and empty pods skipped"
        );
        assert_eq!(points, 2 * POINTS_PER_INTERFACE);
        let a = attrs(
            &req.resource_metrics[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
        );
        assert_eq!(a["k8s.pod.name"], "pod-u1");
        assert_eq!(a["k8s.pod.uid"], "u1");
        assert_eq!(a["k8s.namespace.name"], "shop");
        assert_eq!(a["k8s.node.name"], "node-1");
        assert_eq!(a["k8s.deployment.name"], "web");
        assert!(!a.contains_key("netshim.netns.path"));
        let b = attrs(
            &req.resource_metrics[1]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
        );
        assert_eq!(b["netshim.netns.path"], "/run/netns/p2");
        assert!(!b.contains_key("k8s.pod.name"));

        let (req, _) = to_request(&snap, Some("override"), &mut SeriesStarts::default());
        let a = attrs(
            &req.resource_metrics[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
        );
        assert_eq!(a["k8s.node.name"], "override");
    }

    #[test]
    fn metrics_have_the_documented_shape() {
        let snap = snapshot(
            100,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 90, Some("lxc1"))])],
        );
        let (req, _) = to_request(&snap, None, &mut SeriesStarts::default());
        let scope = &req.resource_metrics[0].scope_metrics[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "netshim");
        let names: Vec<&str> = scope.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                NETWORK_IO,
                NETWORK_ERRORS,
                NETWORK_PACKETS,
                NETWORK_DROPPED,
                POD_INTERFACE
            ]
        );
        let Some(metric::Data::Sum(io)) = &scope.metrics[0].data else {
            panic!("io is a sum")
        };
        assert_eq!(scope.metrics[0].unit, "By");
        assert!(io.is_monotonic);
        assert_eq!(
            io.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let rx = &io.data_points[0];
        assert_eq!(
            attrs(&rx.attributes),
            BTreeMap::from([
                ("network.interface.name".into(), "eth0".into()),
                ("network.io.direction".into(), "receive".into())
            ])
        );
        assert_eq!(rx.value, Some(number_data_point::Value::AsInt(90)));
        assert_eq!(
            io.data_points[1].value,
            Some(number_data_point::Value::AsInt(2))
        );
        assert_eq!(rx.time_unix_nano, 100_000_000_000);
        let Some(metric::Data::Gauge(g)) = &scope.metrics[4].data else {
            panic!("mapping is a gauge")
        };
        let m = attrs(&g.data_points[0].attributes);
        assert_eq!(m["netshim.host.interface.name"], "lxc1");
        assert_eq!(m["netshim.host.interface.index"], "17");
        assert_eq!(m["netshim.interface.kind"], "veth");
    }

    #[test]
    fn start_times_are_kept_and_reset_when_an_interface_is_recreated() {
        let mut series = SeriesStarts::default();
        let s1 = snapshot(
            100,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 50, None)])],
        );
        let (r1, _) = to_request(&s1, None, &mut series);
        assert!(starts_of(&r1).iter().all(|&s| s == 100_000_000_000));
        let s2 = snapshot(
            110,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 60, None)])],
        );
        let (r2, _) = to_request(&s2, None, &mut series);
        assert!(starts_of(&r2).iter().all(|&s| s == 100_000_000_000));
        // Counter went back: the interface was recreated.
        let s3 = snapshot(
            120,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 10, None)])],
        );
        let (r3, _) = to_request(&s3, None, &mut series);
        assert!(starts_of(&r3).iter().all(|&s| s == 120_000_000_000));
        // New index.
        let s4 = snapshot(
            130,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 9, 20, None)])],
        );
        let (r4, _) = to_request(&s4, None, &mut series);
        assert!(starts_of(&r4).iter().all(|&s| s == 130_000_000_000));
        // Gone pods are forgotten; back later, they start anew.
        to_request(&snapshot(140, vec![]), None, &mut series);
        assert!(series.is_empty());
        let s6 = snapshot(
            150,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 9, 20, None)])],
        );
        let (r6, _) = to_request(&s6, None, &mut series);
        assert!(starts_of(&r6).iter().all(|&s| s == 150_000_000_000));
    }

    #[test]
    fn pipelines_keep_their_own_series() {
        let mut series = SeriesStarts::default();
        let s1 = snapshot(
            100,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 50, None)])],
        );
        to_request(&s1, None, &mut series);
        let mut other = snapshot(105, vec![]);
        other.pipeline = "metrics/other".into();
        to_request(&other, None, &mut series);
        let s2 = snapshot(
            110,
            vec![pod(Some("u1"), 1, vec![iface("eth0", 2, 60, None)])],
        );
        let (r2, _) = to_request(&s2, None, &mut series);
        assert!(starts_of(&r2).iter().all(|&s| s == 100_000_000_000));
    }
}
