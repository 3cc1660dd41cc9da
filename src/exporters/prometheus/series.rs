//! What the endpoint publishes, rendered from the latest snapshots and the agent's numbers.
//! Every name here is documented in the README.

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::{
    Counters, Interface, PodNetwork, Snapshot, TRANSPORT_FIELDS, TransportCounters, TransportField,
};
use crate::self_metrics::{CYCLE_BUCKETS, ExporterStats, MetricsView};

use super::exposition::{Exposition, Format, Kind};

/// The older prometheus-network-shim's series, kept so that its recording rules still work.
pub const SHIM: &str = "pod_interface_shim";
pub const INTERFACE_INFO: &str = "netshim_pod_interface_info";
pub const POD_INFO: &str = "netshim_pod_info";

/// A pod's workload, from what `k8s_attributes` extracted: the first of these it has.
const WORKLOADS: [(&str, &str); 6] = [
    ("k8s.deployment.name", "deployment"),
    ("k8s.statefulset.name", "statefulset"),
    ("k8s.daemonset.name", "daemonset"),
    ("k8s.cronjob.name", "cronjob"),
    ("k8s.job.name", "job"),
    ("k8s.replicaset.name", "replicaset"),
];

/// The eight quantities cadvisor's `container_network_*` carries, from the pod's point of view.
/// A counter family: its name, its help, and which counter it reads.
pub type CounterFamily = (&'static str, &'static str, fn(&Counters) -> u64);

pub const COUNTERS: [CounterFamily; 8] = [
    (
        "netshim_pod_network_receive_bytes_total",
        "Bytes received by the pod on this interface.",
        |c| c.rx_bytes,
    ),
    (
        "netshim_pod_network_transmit_bytes_total",
        "Bytes transmitted by the pod on this interface.",
        |c| c.tx_bytes,
    ),
    (
        "netshim_pod_network_receive_packets_total",
        "Packets received by the pod on this interface.",
        |c| c.rx_packets,
    ),
    (
        "netshim_pod_network_transmit_packets_total",
        "Packets transmitted by the pod on this interface.",
        |c| c.tx_packets,
    ),
    (
        "netshim_pod_network_receive_errors_total",
        "Receive errors on the pod's interface.",
        |c| c.rx_errors,
    ),
    (
        "netshim_pod_network_transmit_errors_total",
        "Transmit errors on the pod's interface.",
        |c| c.tx_errors,
    ),
    (
        "netshim_pod_network_receive_packets_dropped_total",
        "Received packets dropped on the pod's interface.",
        |c| c.rx_dropped,
    ),
    (
        "netshim_pod_network_transmit_packets_dropped_total",
        "Packets to transmit dropped on the pod's interface.",
        |c| c.tx_dropped,
    ),
];

/// Build facts for `netshim_build_info`.
pub struct BuildInfo {
    pub version: &'static str,
}

/// One pod interface to publish, with its labels worked out once.
struct Row<'a> {
    node: &'a str,
    namespace: &'a str,
    pod: &'a str,
    uid: &'a str,
    /// Set only when the pod's identity is unknown.
    netns: String,
    pod_network: &'a PodNetwork,
    interface: &'a Interface,
}

impl<'a> Row<'a> {
    fn host_interface(&self) -> &'a str {
        self.interface.peer.as_ref().map_or("", |p| &*p.name)
    }

    /// node, namespace, pod, interface, host_interface[, netns]
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut l = vec![
            ("node", self.node),
            ("namespace", self.namespace),
            ("pod", self.pod),
            ("interface", &*self.interface.name),
            ("host_interface", self.host_interface()),
        ];
        if !self.netns.is_empty() {
            l.push(("netns", self.netns.as_str()));
        }
        l
    }
}

/// Every pod interface of the snapshots, once: a pod reported by two pipelines (or twice, by a
/// runtime mid-restart) would otherwise produce duplicate series.
fn rows(snapshots: &[Arc<Snapshot>]) -> Vec<Row<'_>> {
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for snapshot in snapshots {
        for pod in &snapshot.pods {
            if pod.sandbox.host_network {
                continue; // never the node's interfaces
            }
            let (namespace, name, netns) = pod_labels(pod);
            let uid = (pod.sandbox.pod.as_ref())
                .and_then(|p| p.uid.as_deref())
                .unwrap_or("");
            for interface in &pod.interfaces {
                let key = (namespace, name, netns.clone(), &*interface.name);
                if !seen.insert(key) {
                    continue;
                }
                rows.push(Row {
                    node: snapshot.node.as_str(),
                    namespace,
                    pod: name,
                    uid,
                    netns: netns.clone(),
                    pod_network: pod,
                    interface,
                });
            }
        }
    }
    rows
}

/// The Prometheus name of a transport counter: `netshim_pod_tcp_resets_sent_total`, or
/// without `_total` for a gauge.
pub fn transport_name(f: &TransportField) -> String {
    let suffix = if f.gauge { "" } else { "_total" };
    format!("netshim_pod_{}_{}{suffix}", f.protocol, f.name)
}

/// One pod's transport counters with its labels (node, namespace, pod[, netns]).
struct PodRow<'a> {
    node: &'a str,
    namespace: &'a str,
    pod: &'a str,
    netns: String,
    transport: &'a TransportCounters,
}

impl PodRow<'_> {
    fn labels(&self) -> Vec<(&str, &str)> {
        let mut l = vec![
            ("node", self.node),
            ("namespace", self.namespace),
            ("pod", self.pod),
        ];
        if !self.netns.is_empty() {
            l.push(("netns", self.netns.as_str()));
        }
        l
    }
}

/// Every pod with transport counters, once (as for [`rows`]).
fn pod_rows(snapshots: &[Arc<Snapshot>]) -> Vec<PodRow<'_>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for snapshot in snapshots {
        for pod in &snapshot.pods {
            let Some(transport) = pod.transport.as_ref() else {
                continue;
            };
            if pod.sandbox.host_network {
                continue;
            }
            let (namespace, name, netns) = pod_labels(pod);
            if !seen.insert((namespace, name, netns.clone())) {
                continue;
            }
            out.push(PodRow {
                node: snapshot.node.as_str(),
                namespace,
                pod: name,
                netns,
                transport,
            });
        }
    }
    out
}

/// A pod's namespace and name, and its namespace path when nothing names it.
fn pod_labels(pod: &PodNetwork) -> (&str, &str, String) {
    let identity = pod.sandbox.pod.as_ref();
    let name = identity.and_then(|p| p.name.as_deref()).unwrap_or("");
    let namespace = identity.and_then(|p| p.namespace.as_deref()).unwrap_or("");
    let netns = if name.is_empty() {
        pod.sandbox
            .netns
            .as_ref()
            .map(|n| n.path.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    (namespace, name, netns)
}

/// The whole `/metrics` document.
pub fn render(
    snapshots: &[Arc<Snapshot>],
    agent: &MetricsView,
    build: &BuildInfo,
    shim: bool,
    format: Format,
) -> String {
    let rows = rows(snapshots);
    let mut e = Exposition::new(format, 256 + rows.len() * 2048);

    if shim {
        e.family(SHIM, Kind::Gauge, "Shim to identify network interfaces assigned to pods (prometheus-network-shim compatible; interface is the host-side name).");
        for r in rows
            .iter()
            .filter(|r| r.interface.peer.is_some() && !r.pod.is_empty())
        {
            let c = r.pod_network.sandbox.containers.first();
            let container = c.map_or("", |c| c.name.as_str());
            let name = format!("k8s_{container}_{}_{}_{}_0", r.pod, r.namespace, r.uid);
            e.sample(
                SHIM,
                &[
                    ("container", container),
                    ("id", c.map_or("", |c| c.id.as_str())),
                    ("image", c.map_or("", |c| c.image.as_str())),
                    ("interface", r.host_interface()),
                    ("name", name.as_str()),
                    ("namespace", r.namespace),
                    ("node", r.node),
                    ("pod", r.pod),
                ],
                0,
            );
        }
    }

    e.family(
        INTERFACE_INFO,
        Kind::Info,
        "A pod interface and the host interface it is paired with (value 1).",
    );
    for r in &rows {
        let mut labels = r.labels();
        labels.push(("pod_uid", r.uid));
        labels.push(("kind", &*r.interface.kind));
        e.sample(INTERFACE_INFO, &labels, 1);
    }

    for (name, help, get) in COUNTERS {
        e.family(name, Kind::Counter, help);
        for r in &rows {
            e.sample(name, &r.labels(), get(&r.interface.counters));
        }
    }

    pod_info(&mut e, snapshots);

    let pods = pod_rows(snapshots);
    if !pods.is_empty() {
        for f in &TRANSPORT_FIELDS {
            let name = transport_name(f);
            let kind = if f.gauge { Kind::Gauge } else { Kind::Counter };
            e.family(&name, kind, f.help);
            for p in &pods {
                e.sample(&name, &p.labels(), (f.get)(p.transport));
            }
        }
    }

    agent_metrics(&mut e, agent, build);
    e.finish()
}

/// `netshim_pod_info`: one series per named pod with its workload, for dashboards to group by
/// workload (`* on (namespace, pod) group_left (workload)`) without kube-state-metrics.
fn pod_info(e: &mut Exposition, snapshots: &[Arc<Snapshot>]) {
    e.family(
        POD_INFO,
        Kind::Info,
        "A pod netshim reports, with its workload when k8s_attributes extracted one (value 1).",
    );
    let mut seen = HashSet::new();
    for snapshot in snapshots {
        for pod in &snapshot.pods {
            let Some(id) = pod.sandbox.pod.as_ref() else {
                continue;
            };
            let (Some(name), Some(namespace)) = (id.name.as_deref(), id.namespace.as_deref())
            else {
                continue;
            };
            if pod.sandbox.host_network || !seen.insert((namespace, name)) {
                continue;
            }
            let (workload, workload_type) = WORKLOADS
                .iter()
                .find_map(|(key, kind)| Some((id.attributes.get(*key)?.as_str(), *kind)))
                .unwrap_or(("", ""));
            e.sample(
                POD_INFO,
                &[
                    ("node", snapshot.node.as_str()),
                    ("namespace", namespace),
                    ("pod", name),
                    ("pod_uid", id.uid.as_deref().unwrap_or("")),
                    ("workload", workload),
                    ("workload_type", workload_type),
                ],
                1,
            );
        }
    }
}

fn agent_metrics(e: &mut Exposition, m: &MetricsView, build: &BuildInfo) {
    e.family(
        "netshim_build_info",
        Kind::Info,
        "netshim's version (value 1).",
    );
    e.sample("netshim_build_info", &[("version", build.version)], 1);

    e.family(
        "netshim_cycles_total",
        Kind::Counter,
        "Collection cycles completed.",
    );
    e.sample("netshim_cycles_total", &[], m.cycles);

    e.family(
        "netshim_cycle_duration_seconds",
        Kind::Histogram,
        "Time from the receivers' results to a finished snapshot.",
    );
    for (bound, count) in CYCLE_BUCKETS.iter().zip(&m.buckets) {
        e.sample(
            "netshim_cycle_duration_seconds_bucket",
            &[("le", &bound.to_string())],
            count,
        );
    }
    e.sample(
        "netshim_cycle_duration_seconds_bucket",
        &[("le", "+Inf")],
        m.cycles,
    );
    e.sample("netshim_cycle_duration_seconds_sum", &[], m.duration_sum);
    e.sample("netshim_cycle_duration_seconds_count", &[], m.cycles);

    e.family(
        "netshim_errors_total",
        Kind::Counter,
        "Errors by stage (receiver, resolver, exporter) and component.",
    );
    for ((stage, component), n) in &m.errors {
        e.sample(
            "netshim_errors_total",
            &[("stage", stage), ("component", component)],
            n,
        );
    }

    e.family(
        "netshim_pods",
        Kind::Gauge,
        "Pods (and bare network namespaces) in the last snapshot.",
    );
    e.sample("netshim_pods", &[], m.pods);
    e.family(
        "netshim_interfaces",
        Kind::Gauge,
        "Pod interfaces in the last snapshot.",
    );
    e.sample("netshim_interfaces", &[], m.interfaces);
    e.family(
        "netshim_last_successful_cycle_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last completed cycle (0 before the first).",
    );
    e.sample(
        "netshim_last_successful_cycle_timestamp_seconds",
        &[],
        m.last_success,
    );
    exporter_metrics(e, m);
}

/// The pushing exporters' own numbers (the OTLP ones): with a sending queue an export only
/// queues, so failures show here (drops, retries, a growing queue), not in `netshim_errors_total`.
fn exporter_metrics(e: &mut Exposition, m: &MetricsView) {
    if m.exporters.is_empty() {
        return;
    }
    type Get = fn(&ExporterStats) -> u64;
    let simple: [(&str, Kind, &str, Get); 8] = [
        (
            "netshim_exporter_sent_batches_total",
            Kind::Counter,
            "Snapshots the collector accepted.",
            |s| s.sent_batches,
        ),
        (
            "netshim_exporter_sent_points_total",
            Kind::Counter,
            "Data points in the accepted snapshots.",
            |s| s.sent_points,
        ),
        (
            "netshim_exporter_rejected_points_total",
            Kind::Counter,
            "Data points the collector rejected in a partial success.",
            |s| s.rejected_points,
        ),
        (
            "netshim_exporter_dropped_points_total",
            Kind::Counter,
            "Data points in dropped snapshots.",
            |s| s.dropped_points,
        ),
        (
            "netshim_exporter_retries_total",
            Kind::Counter,
            "Attempts made again after a retryable failure.",
            |s| s.retries,
        ),
        (
            "netshim_exporter_queue_length",
            Kind::Gauge,
            "Snapshots waiting in the sending queue.",
            |s| s.queue_length,
        ),
        (
            "netshim_exporter_queue_capacity",
            Kind::Gauge,
            "Size of the sending queue (0: no queue).",
            |s| s.queue_capacity,
        ),
        (
            "netshim_exporter_queue_bytes",
            Kind::Gauge,
            "Bytes of the snapshots waiting in the sending queue.",
            |s| s.queue_bytes,
        ),
    ];
    for (name, kind, help, get) in simple {
        e.family(name, kind, help);
        for (id, stats) in &m.exporters {
            e.sample(name, &[("exporter", id)], get(stats));
        }
    }
    let name = "netshim_exporter_dropped_batches_total";
    e.family(
        name,
        Kind::Counter,
        "Snapshots dropped: the queue was full (oldest dropped), sending failed for good, or the shutdown bound ran out.",
    );
    for (id, stats) in &m.exporters {
        for (reason, n) in [
            ("queue_full", stats.dropped_queue_full),
            ("failed", stats.dropped_failed),
            ("shutdown", stats.dropped_shutdown),
        ] {
            e.sample(name, &[("exporter", id), ("reason", reason)], n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_exporter_numbers_are_published_by_exporter() {
        let view = MetricsView {
            exporters: vec![(
                "otlp_grpc".to_string(),
                ExporterStats {
                    sent_batches: 7,
                    dropped_queue_full: 2,
                    retries: 3,
                    queue_length: 4,
                    queue_capacity: 10,
                    ..ExporterStats::default()
                },
            )],
            ..MetricsView::default()
        };
        let build = BuildInfo { version: "test" };
        let text = render(&[], &view, &build, false, Format::Text);
        for line in [
            "netshim_exporter_sent_batches_total{exporter=\"otlp_grpc\"} 7",
            "netshim_exporter_retries_total{exporter=\"otlp_grpc\"} 3",
            "netshim_exporter_queue_length{exporter=\"otlp_grpc\"} 4",
            "netshim_exporter_queue_capacity{exporter=\"otlp_grpc\"} 10",
            "netshim_exporter_dropped_batches_total{exporter=\"otlp_grpc\",reason=\"queue_full\"} 2",
            "netshim_exporter_dropped_batches_total{exporter=\"otlp_grpc\",reason=\"failed\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // No OTLP exporter: no such family at all.
        let text = render(&[], &MetricsView::default(), &build, false, Format::Text);
        assert!(!text.contains("netshim_exporter_"));
    }
}
