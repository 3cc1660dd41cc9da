//! The types components meet through: receivers yield [`Sandbox`]es, resolvers turn a [`Batch`]
//! of them into [`PodNetwork`]s, exporters publish an immutable [`Snapshot`].
//!
//! These types are also the schema of `netshim discover --output json` (see the README), so field
//! names here are part of the public interface.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

/// A network namespace as the kernel identifies it: the (device, inode) of its nsfs file. The
/// same namespace reached through a bind mount and through `/proc/PID/ns/net` has the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NetnsKey {
    pub dev: u64,
    pub inode: u64,
}

/// Where a network namespace can be opened, and which one it was when it was found there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsRef {
    /// A bind mount (`/run/netns/x`) or `/proc/PID/ns/net`. Shared: a receiver hands the same
    /// path out cycle after cycle, and each cycle's copy of a sandbox costs a reference count,
    /// not an allocation.
    pub path: Arc<Path>,
    pub inode: u64,
    #[serde(skip)]
    pub dev: u64,
}

impl NetnsRef {
    pub fn key(&self) -> NetnsKey {
        NetnsKey {
            dev: self.dev,
            inode: self.inode,
        }
    }
}

/// What is known of the pod that owns a sandbox. Any part may be unknown: the `netns` receiver
/// knows only the uid (from the cgroup path), the runtime knows name and namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodIdentity {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// Extra attributes, keyed by OpenTelemetry attribute name (`k8s.deployment.name`, …).
    pub attributes: BTreeMap<String, String>,
}

/// A container of a sandbox, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
}

/// What a receiver knows of one pod before its network is looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sandbox {
    /// The pod's network namespace; `None` for host-network sandboxes and sandboxes whose
    /// namespace could not be determined.
    pub netns: Option<NetnsRef>,
    /// A process known to live in the namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub pod: Option<PodIdentity>,
    /// The runtime's sandbox id, when a runtime reported it.
    pub sandbox_id: Option<String>,
    /// The pod shares the node's network namespace: it gets no per-interface data, since the
    /// node's interfaces are not the pod's.
    pub host_network: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// The runtime's sandbox labels (the pod's labels plus `io.kubernetes.*` keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The runtime's sandbox annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Sandbox {
    /// The key two receivers' records of one pod meet on: the namespace, else the runtime's
    /// sandbox id.
    pub fn merge_key(&self) -> Option<MergeKey> {
        match (&self.netns, &self.sandbox_id) {
            (Some(n), _) => Some(MergeKey::Netns(n.key())),
            (None, Some(id)) => Some(MergeKey::SandboxId(id.clone())),
            (None, None) => None,
        }
    }

    /// Adds what `other` knows and `self` does not. `self` wins where both know something: the
    /// pipeline lists receivers in config order, the first being the most trusted.
    pub fn absorb(&mut self, other: Sandbox) {
        if self.netns.is_none() {
            self.netns = other.netns;
        }
        self.pid = self.pid.or(other.pid);
        self.sandbox_id = self.sandbox_id.take().or(other.sandbox_id);
        self.host_network |= other.host_network;
        if self.containers.is_empty() {
            self.containers = other.containers;
        }
        for (k, v) in other.labels {
            self.labels.entry(k).or_insert(v);
        }
        for (k, v) in other.annotations {
            self.annotations.entry(k).or_insert(v);
        }
        match (&mut self.pod, other.pod) {
            (Some(mine), Some(theirs)) => mine.absorb(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl PodIdentity {
    fn absorb(&mut self, other: PodIdentity) {
        self.name = self.name.take().or(other.name);
        self.namespace = self.namespace.take().or(other.namespace);
        self.uid = self.uid.take().or(other.uid);
        for (k, v) in other.attributes {
            self.attributes.entry(k).or_insert(v);
        }
    }
}

/// One receiver's scan, shared: the receive loop publishes it and each cycle reads it without
/// copying the list, and a receiver whose scan found what its last one did hands out the same
/// list again.
pub type Sandboxes = Arc<Vec<Sandbox>>;

/// See [`Sandbox::merge_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MergeKey {
    Netns(NetnsKey),
    SandboxId(String),
}

/// The 64-bit interface counters, from the pod's point of view: `rx_bytes` is what the pod
/// received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// A string of an interface that stays the same from cycle to cycle (a name, a kind, a MAC):
/// shared, so that each cycle's snapshot takes its interfaces from the resolver's at the cost
/// of a reference count, not an allocation per string (at 1000 pods those allocations were
/// most of the agent's user time in a steady cycle).
pub type Text = Arc<str>;

/// An address on an interface, shown as `ip/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfAddress {
    pub ip: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IfAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix_len)
    }
}

impl Serialize for IfAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The host-side end of a pod interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub name: Text,
    pub ifindex: u32,
    pub kind: Text,
}

/// One interface inside a pod's network namespace: what changes only when the namespace or the
/// host notifies a change (its [`Link`], shared), and its counters, read every cycle. Each
/// cycle's snapshot copies a pod's interfaces from the resolver's cache, so sharing the link
/// makes that copy one reference count per interface instead of one per string (each on a
/// cold cache line at 1000 pods). Reads go through `Deref` (`iface.name`); a change goes
/// through [`Interface::link_mut`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    #[serde(flatten)]
    pub link: Arc<Link>,
    pub counters: Counters,
}

impl Interface {
    pub fn new(link: Link, counters: Counters) -> Self {
        Interface {
            link: Arc::new(link),
            counters,
        }
    }

    /// The link to change (copied first if a snapshot still shares it).
    pub fn link_mut(&mut self) -> &mut Link {
        Arc::make_mut(&mut self.link)
    }
}

impl std::ops::Deref for Interface {
    type Target = Link;

    fn deref(&self) -> &Link {
        &self.link
    }
}

/// What an interface is, as its namespace's link and address dumps and the host give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// The pod-side name (`eth0`, `net1`, …).
    pub name: Text,
    /// The pod-side index (indexes are per namespace: only meaningful with the namespace).
    pub ifindex: u32,
    /// The link kind (`veth`, `netkit`, `macvlan`, …), `loopback`, or `device` when the kernel
    /// reports no kind.
    pub kind: Text,
    pub mac: Option<Text>,
    pub addresses: Arc<[IfAddress]>,
    /// The paired interface in the host's namespace; `None` for interfaces with no host end
    /// (macvlan, ipvlan, SR-IOV, a veth whose other end is in another pod).
    pub peer: Option<Peer>,
}

/// One pod (or bare network namespace) and its interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodNetwork {
    #[serde(flatten)]
    pub sandbox: Sandbox,
    pub interfaces: Vec<Interface>,
    /// The namespace's TCP and UDP counters; `None` when they are not collected, could not be
    /// read, or were filtered out. Shared: they are read again only every `transport.interval`,
    /// so the cycles in between hand the same values on at the cost of a reference count, not
    /// a copy of 150 bytes into every pod of every snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Arc<TransportCounters>>,
}

impl PodNetwork {
    pub fn new(sandbox: Sandbox) -> Self {
        PodNetwork {
            sandbox,
            interfaces: Vec::new(),
            transport: None,
        }
    }
}

/// A pod namespace's TCP and UDP counters, as `/proc/net/snmp` and `/proc/net/netstat` show
/// them inside the pod: one set per namespace (every interface's traffic together). Each field
/// is described, with its kernel counter, in [`TRANSPORT_FIELDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransportCounters {
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_failed_connection_attempts: u64,
    pub tcp_established_resets: u64,
    pub tcp_established_connections: u64,
    pub tcp_segments_received: u64,
    pub tcp_segments_sent: u64,
    pub tcp_retransmitted_segments: u64,
    pub tcp_receive_errors: u64,
    pub tcp_resets_sent: u64,
    pub tcp_listen_overflows: u64,
    pub tcp_listen_drops: u64,
    pub tcp_retransmission_timeouts: u64,
    pub udp_datagrams_received: u64,
    pub udp_datagrams_sent: u64,
    pub udp_no_port_datagrams: u64,
    pub udp_receive_errors: u64,
    pub udp_receive_buffer_errors: u64,
    pub udp_send_buffer_errors: u64,
}

/// One transport counter as the exporters publish it: Prometheus as
/// `netshim_pod_{protocol}_{name}_total` (a gauge without `_total`), OTLP as
/// `netshim.pod.{protocol}.{name}` (a monotonic sum, or a gauge).
#[derive(Debug, Clone, Copy)]
pub struct TransportField {
    pub protocol: &'static str,
    pub name: &'static str,
    /// The kernel's own name: section and counter of `/proc/net/snmp` or `/proc/net/netstat`.
    pub kernel: &'static str,
    /// The OTLP unit (UCUM, with a `{annotation}` for counts).
    pub unit: &'static str,
    /// A level that goes up and down (current connections), not a counter.
    pub gauge: bool,
    pub help: &'static str,
    pub get: fn(&TransportCounters) -> u64,
}

const fn field(
    protocol: &'static str,
    name: &'static str,
    kernel: &'static str,
    unit: &'static str,
    help: &'static str,
    get: fn(&TransportCounters) -> u64,
) -> TransportField {
    TransportField {
        protocol,
        name,
        kernel,
        unit,
        gauge: false,
        help,
        get,
    }
}

/// Every transport counter, in publishing order; the README's table is this one.
pub const TRANSPORT_FIELDS: [TransportField; 19] = [
    field(
        "tcp",
        "active_opens",
        "Tcp: ActiveOpens",
        "{connection}",
        "TCP connections the pod opened (SYN sent).",
        |t| t.tcp_active_opens,
    ),
    field(
        "tcp",
        "passive_opens",
        "Tcp: PassiveOpens",
        "{connection}",
        "TCP connections the pod accepted (SYN received).",
        |t| t.tcp_passive_opens,
    ),
    field(
        "tcp",
        "failed_connection_attempts",
        "Tcp: AttemptFails",
        "{attempt}",
        "TCP connection attempts that failed (reset or timed out before being established).",
        |t| t.tcp_failed_connection_attempts,
    ),
    field(
        "tcp",
        "established_resets",
        "Tcp: EstabResets",
        "{connection}",
        "Established TCP connections reset.",
        |t| t.tcp_established_resets,
    ),
    TransportField {
        gauge: true,
        ..field(
            "tcp",
            "established_connections",
            "Tcp: CurrEstab",
            "{connection}",
            "TCP connections currently established or closing (CLOSE-WAIT).",
            |t| t.tcp_established_connections,
        )
    },
    field(
        "tcp",
        "segments_received",
        "Tcp: InSegs",
        "{segment}",
        "TCP segments received, errors included.",
        |t| t.tcp_segments_received,
    ),
    field(
        "tcp",
        "segments_sent",
        "Tcp: OutSegs",
        "{segment}",
        "TCP segments sent, retransmissions excluded.",
        |t| t.tcp_segments_sent,
    ),
    field(
        "tcp",
        "retransmitted_segments",
        "Tcp: RetransSegs",
        "{segment}",
        "TCP segments retransmitted.",
        |t| t.tcp_retransmitted_segments,
    ),
    field(
        "tcp",
        "receive_errors",
        "Tcp: InErrs",
        "{segment}",
        "TCP segments received in error (bad checksum, header).",
        |t| t.tcp_receive_errors,
    ),
    field(
        "tcp",
        "resets_sent",
        "Tcp: OutRsts",
        "{segment}",
        "TCP segments sent with the RST flag.",
        |t| t.tcp_resets_sent,
    ),
    field(
        "tcp",
        "listen_overflows",
        "TcpExt: ListenOverflows",
        "{connection}",
        "Connections a listener could not take: its accept queue was full.",
        |t| t.tcp_listen_overflows,
    ),
    field(
        "tcp",
        "listen_drops",
        "TcpExt: ListenDrops",
        "{connection}",
        "Connection requests dropped by a listener, overflows included.",
        |t| t.tcp_listen_drops,
    ),
    field(
        "tcp",
        "retransmission_timeouts",
        "TcpExt: TCPTimeouts",
        "{timeout}",
        "TCP retransmission timer expiries (RTO).",
        |t| t.tcp_retransmission_timeouts,
    ),
    field(
        "udp",
        "datagrams_received",
        "Udp: InDatagrams",
        "{datagram}",
        "UDP datagrams delivered to the pod's sockets.",
        |t| t.udp_datagrams_received,
    ),
    field(
        "udp",
        "datagrams_sent",
        "Udp: OutDatagrams",
        "{datagram}",
        "UDP datagrams the pod sent.",
        |t| t.udp_datagrams_sent,
    ),
    field(
        "udp",
        "no_port_datagrams",
        "Udp: NoPorts",
        "{datagram}",
        "UDP datagrams received for a port nothing listens on.",
        |t| t.udp_no_port_datagrams,
    ),
    field(
        "udp",
        "receive_errors",
        "Udp: InErrors",
        "{datagram}",
        "UDP datagrams received that could not be delivered, buffer errors included.",
        |t| t.udp_receive_errors,
    ),
    field(
        "udp",
        "receive_buffer_errors",
        "Udp: RcvbufErrors",
        "{datagram}",
        "UDP datagrams dropped: the socket's receive buffer was full.",
        |t| t.udp_receive_buffer_errors,
    ),
    field(
        "udp",
        "send_buffer_errors",
        "Udp: SndbufErrors",
        "{datagram}",
        "UDP datagrams not sent: the socket's send buffer was full.",
        |t| t.udp_send_buffer_errors,
    ),
];

/// What resolvers work on during one cycle.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub pods: Vec<PodNetwork>,
}

impl Batch {
    /// The cycle's batch from the receivers' latest scans, in config order: one pod per
    /// namespace (else per runtime sandbox id), the records several receivers made of one pod
    /// merged into one (the first receiver's values win, see [`Sandbox::absorb`]). Each sandbox
    /// is copied once, straight from the shared scan into its pod.
    pub fn from_receivers<'a, L>(lists: impl IntoIterator<Item = L>) -> Self
    where
        L: IntoIterator<Item = &'a Sandbox>,
        L::IntoIter: ExactSizeIterator,
    {
        let mut pods: Vec<PodNetwork> = Vec::new();
        let mut index: foldhash::HashMap<MergeKey, usize> = foldhash::HashMap::default();
        for list in lists {
            let list = list.into_iter();
            // Sized for the first list, which is usually all of them (one receiver) and else
            // the most: nothing grows while a cycle's pods go in.
            pods.reserve(list.len());
            index.reserve(list.len());
            for sandbox in list {
                match sandbox.merge_key() {
                    Some(key) => match index.get(&key) {
                        Some(&at) => pods[at].sandbox.absorb(sandbox.clone()),
                        None => {
                            index.insert(key, pods.len());
                            pods.push(PodNetwork::new(sandbox.clone()));
                        }
                    },
                    None => pods.push(PodNetwork::new(sandbox.clone())),
                }
            }
        }
        Batch { pods }
    }

    /// A batch of copies of `sandboxes`, as they are (tests, benchmarks).
    pub fn from_sandboxes(sandboxes: &[Sandbox]) -> Self {
        Batch {
            pods: sandboxes.iter().cloned().map(PodNetwork::new).collect(),
        }
    }
}

/// The finished result of one cycle. Exporters get it behind an `Arc` and never see a
/// half-built one.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The pipeline that built it (an exporter fed by several keeps one snapshot per pipeline).
    #[serde(skip)]
    pub pipeline: String,
    /// The node this agent runs on.
    pub node: String,
    /// When the cycle that built it finished.
    #[serde(serialize_with = "serialize_unix_seconds")]
    pub taken_at: SystemTime,
    pub pods: Vec<PodNetwork>,
}

fn serialize_unix_seconds<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.serialize_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_joins_records_of_one_namespace_and_keeps_the_first_receivers_values() {
        let ns = |inode| NetnsRef {
            path: std::path::PathBuf::from(format!("/run/netns/{inode}")).into(),
            inode,
            dev: 4,
        };
        let from_runtime = Sandbox {
            netns: Some(ns(10)),
            sandbox_id: Some("abc".into()),
            pod: Some(PodIdentity {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..PodIdentity::default()
            }),
            ..Sandbox::default()
        };
        let from_scan = Sandbox {
            netns: Some(ns(10)),
            pid: Some(42),
            pod: Some(PodIdentity {
                uid: Some("u-1".into()),
                name: Some("other".into()),
                ..PodIdentity::default()
            }),
            ..Sandbox::default()
        };
        let other = Sandbox {
            netns: Some(ns(11)),
            ..Sandbox::default()
        };
        let batch = Batch::from_receivers([&vec![from_runtime], &vec![from_scan, other]]);
        let merged: Vec<&Sandbox> = batch.pods.iter().map(|p| &p.sandbox).collect();
        assert_eq!(merged.len(), 2);
        let pod = merged[0].pod.as_ref().unwrap();
        assert_eq!(pod.name.as_deref(), Some("web"));
        assert_eq!(pod.uid.as_deref(), Some("u-1"));
        assert_eq!(merged[0].pid, Some(42));
        assert_eq!(merged[0].sandbox_id.as_deref(), Some("abc"));
    }

    #[test]
    fn address_serializes_as_cidr() {
        let a = IfAddress {
            ip: "10.1.2.3".parse().unwrap(),
            prefix_len: 24,
        };
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"10.1.2.3/24\"");
    }
}
