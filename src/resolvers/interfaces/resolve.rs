//! The mapping itself, synchronous: call it where blocking is fine.

use std::collections::{HashMap, HashSet};

use tracing::{debug, warn};

use crate::model::{Batch, Counters, IfAddress, Interface, NetnsKey, NetnsRef, Peer, PodNetwork};
use crate::sys::netlink::{AddrInfo, LinkCounters, LinkInfo, NetlinkError, RouteSocket, Watch};
use crate::sys::netns::{NetnsFile, NsFileKey, open_sockets_in};

use super::super::ResolverError;
use super::Config;

/// Link kinds whose two ends are a pair, so that the host end is the pod interface's peer.
/// A macvlan's or vlan's `IFLA_LINK` names its lower device, which is not a peer.
const PAIRED_KINDS: &[&str] = &["veth", "netkit"];

/// A pod namespace's links as of its last full dump; counters are refreshed every cycle.
struct PodLinks {
    /// Every link index of the namespace (loopback included), sorted: a stats dump listing
    /// other indexes means links came or went.
    indexes: Vec<u32>,
    /// The reported interfaces, without peers (those come from the host map each cycle).
    interfaces: Vec<Interface>,
}

/// What is kept for a pod namespace between cycles.
struct NetnsHandle {
    /// Kept only until the namespace's id is known: the socket alone keeps what is needed,
    /// and one descriptor per pod is enough.
    file: Option<NetnsFile>,
    /// The host's id for this namespace, once it has one.
    nsid: Option<i32>,
    /// Bound to the pod namespace for its whole life, subscribed to its link and address
    /// changes.
    socket: RouteSocket,
    links: Option<PodLinks>,
}

impl NetnsHandle {
    /// Brings the namespace's interfaces up to date. In the steady state that is one small
    /// stats dump; the full link and address dumps run only when the namespace notified a
    /// change (or the stats name other links). Returns whether a full dump ran.
    fn refresh(&mut self, config: &Config) -> Result<bool, NetlinkError> {
        if let Some(links) = self.links.as_mut()
            && links.interfaces.len() <= SINGLE_GETS_UP_TO
        {
            // One small request per reported interface. A link that went, or any change the
            // namespace notified (a link added, renamed, an address), makes a full dump.
            let mut all_there = true;
            for iface in &mut links.interfaces {
                match self.socket.link_stats(iface.ifindex)? {
                    Some(counters) => iface.counters = pod_counters(counters),
                    None => all_there = false,
                }
            }
            if links.interfaces.is_empty() {
                // No answer was read, so no notification with it: look for them.
                self.socket.drain_notifications()?;
            }
            if all_there && !self.socket.take_changed() {
                return Ok(false);
            }
        } else if let Some(links) = self.links.as_mut() {
            let mut stats = self.socket.dump_stats()?;
            stats.sort_unstable_by_key(|(index, _)| *index);
            let same_links = stats
                .iter()
                .map(|(i, _)| *i)
                .eq(links.indexes.iter().copied());
            if same_links && !self.socket.take_changed() {
                for iface in &mut links.interfaces {
                    if let Ok(at) = stats.binary_search_by_key(&iface.ifindex, |(i, _)| *i) {
                        iface.counters = pod_counters(stats[at].1);
                    }
                }
                return Ok(false);
            }
        }
        // Cleared before dumping: a change that lands during the dumps is seen next cycle.
        self.socket.take_changed();
        let links = self.socket.dump_links()?;
        let addrs = self.socket.dump_addresses()?;
        let mut indexes: Vec<u32> = links.iter().map(|l| l.index).collect();
        indexes.sort_unstable();
        self.links = Some(PodLinks {
            indexes,
            interfaces: interfaces(links, addrs, config),
        });
        Ok(true)
    }
}

/// Up to this many reported interfaces, a namespace's counters are asked link by link; above,
/// with one stats dump.
const SINGLE_GETS_UP_TO: usize = 4;

/// The host link a pod interface is paired with, keyed by (pod nsid, pod-side ifindex).
type HostPeers = HashMap<(i32, u32), Peer>;

/// Maps pods to interfaces and peers. Holds one socket per pod namespace across cycles and
/// closes it as soon as the namespace is no longer in a batch (holding it would keep a deleted
/// namespace, and its veth, alive).
///
/// Work per cycle is proportional to what changed: the host's links are dumped again only when
/// the host notified a link change or a pod namespace appeared or changed, and each pod's links
/// only when that namespace notified a change. Otherwise a cycle is one stats dump per pod.
pub struct InterfaceMapper {
    config: Config,
    /// The host namespace's socket, subscribed to its link changes.
    host: Option<RouteSocket>,
    host_peers: HostPeers,
    /// The host map must be rebuilt before it is used again.
    host_stale: bool,
    handles: HashMap<NetnsKey, NetnsHandle>,
    /// Fault injection for tests: runs after new namespaces are opened, before anything is
    /// read from them or their ids are asked.
    #[cfg(feature = "fault-injection")]
    after_open: Option<Box<dyn FnMut() + Send>>,
}

/// Notifications of up to this many bytes can wait between two cycles on the host socket
/// before some are lost (a loss is noticed and handled as a change).
const HOST_RECEIVE_BUFFER: usize = 4 << 20;

impl InterfaceMapper {
    pub fn new(config: Config) -> Self {
        InterfaceMapper {
            config,
            host: None,
            host_peers: HostPeers::new(),
            host_stale: true,
            handles: HashMap::new(),
            #[cfg(feature = "fault-injection")]
            after_open: None,
        }
    }

    /// Runs `hook` in every cycle between opening new namespaces and reading them (and asking
    /// their ids): the tests delete namespaces there.
    /// Only with the `fault-injection` feature, which the crate's own tests turn on.
    #[cfg(feature = "fault-injection")]
    pub fn set_after_open(&mut self, hook: impl FnMut() + Send + 'static) {
        self.after_open = Some(Box::new(hook));
    }

    /// How many pod namespaces currently have an open socket.
    pub fn open_namespaces(&self) -> usize {
        self.handles.len()
    }

    /// Fills in every pod's interfaces. A pod whose namespace cannot be opened or read is
    /// dropped from the batch with one log line; the rest are reported.
    pub fn resolve(&mut self, batch: &mut Batch) -> Result<(), ResolverError> {
        self.note_host_changes()
            .map_err(|e| self.host_failed("cannot watch the host's links", e))?;

        let wanted: HashSet<NetnsKey> = batch
            .pods
            .iter()
            .filter(|p| !p.sandbox.host_network)
            .filter_map(|p| p.sandbox.netns.as_ref().map(NetnsRef::key))
            .collect();
        // Release namespaces that are gone first, so their veths can go too.
        self.handles.retain(|key, _| wanted.contains(key));
        if self.open_new(batch) > 0 {
            self.host_stale = true;
        }
        #[cfg(feature = "fault-injection")]
        if let Some(hook) = self.after_open.as_mut() {
            hook();
        }

        let (any_full, failed) = refresh_all(&mut self.handles, &self.config);
        self.host_stale |= any_full;
        // The namespace may be on its way out; reopen it next cycle if it is still there.
        for (key, e) in failed {
            warn!(inode = key.inode, error = %e, "cannot read the namespace's links, skipped");
            self.handles.remove(&key);
        }

        if self.host_stale {
            self.refresh_host()
                .map_err(|e| self.host_failed("cannot list the host's links", e))?;
        }

        let handles = &self.handles;
        let peers = &self.host_peers;
        batch.pods.retain_mut(|pod| fill(pod, handles, peers));
        Ok(())
    }

    /// Opens the host socket when needed and notes whether the host's links changed.
    fn note_host_changes(&mut self) -> Result<(), NetlinkError> {
        if self.host.is_none() {
            // Opened on the calling thread, which is in the host namespace: no thread of this
            // agent other than the dedicated setns thread ever leaves it.
            let host = RouteSocket::open(Watch::Links)
                .and_then(|mut host| host.set_receive_buffer(HOST_RECEIVE_BUFFER).map(|()| host))
                .map_err(|source| NetlinkError::Io {
                    op: "open host socket",
                    source,
                })?;
            self.host = Some(host);
            self.host_stale = true;
        }
        if let Some(host) = self.host.as_mut() {
            host.drain_notifications()?;
            self.host_stale |= host.take_changed();
        }
        Ok(())
    }

    /// Dumps the host's links again, and asks the ids of namespaces that had none.
    fn refresh_host(&mut self) -> Result<(), NetlinkError> {
        let Some(host) = self.host.as_mut() else {
            return Ok(()); // note_host_changes opened it, or failed and returned early
        };
        // Cleared before dumping: a change that lands during the dump is seen next cycle.
        host.take_changed();
        self.host_peers = host_peers(host.dump_links()?);
        self.host_stale = false;
        // After the dump: reporting a link whose peer is in a namespace assigns that namespace
        // an id, so a namespace with no id now has no host peer at all.
        for handle in self.handles.values_mut() {
            let (None, Some(file)) = (handle.nsid, handle.file.as_ref()) else {
                continue;
            };
            match host.netns_id(file.fd()) {
                Ok(Some(id)) => {
                    handle.nsid = Some(id);
                    handle.file = None;
                }
                Ok(None) => {}
                Err(e) => debug!(inode = file.key().inode, error = %e, "netns id query failed"),
            }
        }
        Ok(())
    }

    /// Drops the host socket (it may be broken: a fresh one is opened next cycle) and says why
    /// nothing could be done this cycle.
    fn host_failed(&mut self, what: &str, e: NetlinkError) -> ResolverError {
        self.host = None;
        ResolverError::Failed(format!("{what}: {e}"))
    }

    /// Opens a namespace file and a socket inside it for every namespace of the batch not yet
    /// known. All sockets of one cycle are opened in one trip of the setns thread. Returns how
    /// many were opened.
    fn open_new(&mut self, batch: &Batch) -> usize {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        for pod in &batch.pods {
            let Some(netns) = pod.sandbox.netns.as_ref() else {
                continue;
            };
            let key = netns.key();
            if pod.sandbox.host_network || self.handles.contains_key(&key) || !seen.insert(key) {
                continue;
            }
            match NetnsFile::open(&netns.path) {
                Ok(file) if netns_key(file.key()) == key => files.push(file),
                Ok(_) => debug!(
                    path = %netns.path.display(),
                    "namespace changed since the scan (pid reused?), skipped this cycle"
                ),
                Err(e) => debug!(
                    path = %netns.path.display(), error = %e,
                    "namespace vanished or unreadable, skipped"
                ),
            }
        }
        let refs: Vec<&NetnsFile> = files.iter().collect();
        let sockets = open_sockets_in(&refs, Watch::LinksAndAddresses, worker_threads(refs.len()));
        let mut opened = 0;
        for (file, socket) in files.into_iter().zip(sockets) {
            match socket {
                Ok(socket) => {
                    opened += 1;
                    self.handles.insert(
                        netns_key(file.key()),
                        NetnsHandle {
                            file: Some(file),
                            nsid: None,
                            socket,
                            links: None,
                        },
                    );
                }
                Err(e) => warn!(
                    inode = file.key().inode, error = %e,
                    "cannot open a netlink socket inside the namespace, skipped"
                ),
            }
        }
        opened
    }
}

/// Below this many namespaces a cycle's per-namespace work stays on one thread: starting
/// threads would cost more than it saves.
const PARALLEL_FROM: usize = 512;

/// How many threads share `items` namespaces' work: one per core, at most 4.
fn worker_threads(items: usize) -> usize {
    if items < PARALLEL_FROM {
        1
    } else {
        // Asked once: the answer reads cgroup files, which is not free every cycle.
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(4)))
    }
}

/// Refreshes every handle, spread over a few threads when there are many (each handle has its
/// own socket, so shares are independent). Returns whether any handle did a full dump, and the
/// handles that failed.
fn refresh_all(
    handles: &mut HashMap<NetnsKey, NetnsHandle>,
    config: &Config,
) -> (bool, Vec<(NetnsKey, NetlinkError)>) {
    let mut entries: Vec<(NetnsKey, &mut NetnsHandle)> =
        handles.iter_mut().map(|(k, h)| (*k, h)).collect();
    let share = entries.len().div_ceil(worker_threads(entries.len())).max(1);
    let refresh_share = |part: &mut [(NetnsKey, &mut NetnsHandle)]| {
        part.iter_mut()
            .map(|(key, handle)| (*key, handle.refresh(config)))
            .collect::<Vec<_>>()
    };
    let results: Vec<(NetnsKey, Result<bool, NetlinkError>)> = if share >= entries.len() {
        refresh_share(&mut entries)
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = entries
                .chunks_mut(share)
                .map(|part| {
                    let keys: Vec<NetnsKey> = part.iter().map(|(k, _)| *k).collect();
                    (keys, scope.spawn(move || refresh_share(part)))
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|(keys, worker)| {
                    worker.join().unwrap_or_else(|_| {
                        // refresh does not panic; if it ever did, its share counts as failed.
                        keys.into_iter()
                            .map(|k| {
                                let e = NetlinkError::Malformed {
                                    op: "refresh",
                                    detail: "worker thread panicked".into(),
                                };
                                (k, Err(e))
                            })
                            .collect()
                    })
                })
                .collect()
        })
    };
    let mut any_full = false;
    let mut failed = Vec::new();
    for (key, result) in results {
        match result {
            Ok(full) => any_full |= full,
            Err(e) => failed.push((key, e)),
        }
    }
    (any_full, failed)
}

/// Fills one pod in from its namespace's cached links and the host map; false drops it from
/// the batch.
fn fill(pod: &mut PodNetwork, handles: &HashMap<NetnsKey, NetnsHandle>, peers: &HostPeers) -> bool {
    if pod.sandbox.host_network {
        // The node's interfaces are not the pod's: no per-interface data.
        pod.interfaces.clear();
        return true;
    }
    let Some(netns) = pod.sandbox.netns.as_ref() else {
        return true; // known to a runtime, namespace not found: reported without interfaces
    };
    // Missing: could not be opened or read this cycle (logged where it failed).
    let Some(handle) = handles.get(&netns.key()) else {
        return false;
    };
    let Some(links) = handle.links.as_ref() else {
        return false;
    };
    pod.interfaces = links
        .interfaces
        .iter()
        .map(|iface| Interface {
            peer: peer_of(iface, handle.nsid, peers),
            ..iface.clone()
        })
        .collect();
    true
}

/// The host end of a pod interface: the host link of the same kind pointing at (the pod
/// namespace's id, the interface's index). No id means no host link points into the namespace.
fn peer_of(iface: &Interface, nsid: Option<i32>, peers: &HostPeers) -> Option<Peer> {
    nsid.and_then(|id| peers.get(&(id, iface.ifindex)))
        .filter(|p| p.kind == iface.kind)
        .cloned()
}

/// Indexes the host's paired links by the (namespace id, ifindex) of their other end.
fn host_peers(links: Vec<LinkInfo>) -> HostPeers {
    links
        .into_iter()
        .filter_map(|link| {
            let nsid = link.link_netnsid?;
            let kind = link.kind.as_deref()?;
            if !PAIRED_KINDS.contains(&kind) {
                return None;
            }
            let peer_index = link.peer_index();
            Some((
                (nsid, peer_index),
                Peer {
                    kind: kind.to_string(),
                    name: link.name,
                    ifindex: link.index,
                },
            ))
        })
        .collect()
}

/// Builds a pod's interface list (without peers) from its own dumps.
fn interfaces(links: Vec<LinkInfo>, addrs: Vec<AddrInfo>, config: &Config) -> Vec<Interface> {
    let mut by_index: HashMap<u32, Vec<IfAddress>> = HashMap::new();
    for a in addrs {
        by_index.entry(a.index).or_default().push(IfAddress {
            ip: a.ip,
            prefix_len: a.prefix_len,
        });
    }
    let mut out: Vec<Interface> = links
        .into_iter()
        .filter(|l| config.include_loopback || !l.is_loopback)
        .map(|link| {
            let kind = match (&link.kind, link.is_loopback) {
                (Some(k), _) => k.clone(),
                (None, true) => "loopback".to_string(),
                (None, false) => "device".to_string(),
            };
            let mut addresses = by_index.remove(&link.index).unwrap_or_default();
            addresses.sort();
            Interface {
                name: link.name,
                ifindex: link.index,
                kind,
                mac: link.mac.as_deref().map(format_mac),
                addresses,
                peer: None,
                counters: link.stats.map(pod_counters).unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by_key(|i| i.ifindex);
    out
}

/// The model's name for the namespace a namespace file is.
fn netns_key(k: NsFileKey) -> NetnsKey {
    NetnsKey {
        dev: k.dev,
        inode: k.inode,
    }
}

/// A pod interface's counters, from the kernel's counters of its pod-side link: the pod
/// receives what its end of the link receives.
fn pod_counters(c: LinkCounters) -> Counters {
    Counters {
        rx_bytes: c.rx_bytes,
        tx_bytes: c.tx_bytes,
        rx_packets: c.rx_packets,
        tx_packets: c.tx_packets,
        rx_errors: c.rx_errors,
        tx_errors: c.tx_errors,
        rx_dropped: c.rx_dropped,
        tx_dropped: c.tx_dropped,
    }
}

fn format_mac(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, kind: Option<&str>) -> LinkInfo {
        LinkInfo {
            index,
            name: name.into(),
            kind: kind.map(str::to_string),
            is_loopback: false,
            mac: None,
            link: None,
            link_netnsid: None,
            stats: None,
        }
    }

    #[test]
    fn host_peers_keep_only_pairs_pointing_into_a_namespace() {
        let mut veth = link(17, "lxc1", Some("veth"));
        veth.link = Some(2);
        veth.link_netnsid = Some(4);
        let mut same_index = link(5, "cali1", Some("veth"));
        same_index.link_netnsid = Some(6); // IFLA_LINK omitted: the peer is index 5 too
        let mut macvlan = link(9, "mv", Some("macvlan"));
        macvlan.link = Some(2);
        macvlan.link_netnsid = Some(4);
        let local_veth = link(11, "veth-local", Some("veth")); // both ends in the host
        let peers = host_peers(vec![veth, same_index, macvlan, local_veth]);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&(4, 2)].name, "lxc1");
        assert_eq!(peers[&(6, 5)].name, "cali1");
    }

    #[test]
    fn pod_interfaces_get_peer_addresses_and_skip_loopback() {
        let mut lo = link(1, "lo", None);
        lo.is_loopback = true;
        let eth0 = link(2, "eth0", Some("veth"));
        let net1 = link(3, "net1", Some("macvlan"));
        let mut peers = HostPeers::new();
        let p = |name: &str, kind: &str| Peer {
            name: name.into(),
            ifindex: 40,
            kind: kind.into(),
        };
        peers.insert((7, 2), p("lxcabc", "veth"));
        // A stale entry whose kind does not match the pod side is not a peer.
        peers.insert((7, 3), p("weird", "veth"));
        let addrs = vec![AddrInfo {
            index: 2,
            ip: "10.0.0.5".parse().unwrap(),
            prefix_len: 24,
        }];
        let out = interfaces(vec![lo, eth0, net1], addrs, &Config::default());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "eth0");
        assert_eq!(peer_of(&out[0], Some(7), &peers).unwrap().name, "lxcabc");
        assert_eq!(out[0].addresses[0].to_string(), "10.0.0.5/24");
        assert_eq!(out[1].name, "net1");
        assert!(peer_of(&out[1], Some(7), &peers).is_none());
    }

    #[test]
    fn no_nsid_means_no_peers() {
        let mut peers = HostPeers::new();
        peers.insert(
            (0, 2),
            Peer {
                name: "x".into(),
                ifindex: 2,
                kind: "veth".into(),
            },
        );
        let out = interfaces(
            vec![link(2, "eth0", Some("veth"))],
            vec![],
            &Config::default(),
        );
        assert!(peer_of(&out[0], None, &peers).is_none());
        assert!(peer_of(&out[0], Some(0), &peers).is_some());
    }

    #[test]
    fn mac_is_lowercase_colon_separated() {
        assert_eq!(
            format_mac(&[0x0a, 0xbc, 0, 1, 2, 0xff]),
            "0a:bc:00:01:02:ff"
        );
        assert_eq!(format_mac(&[]), "");
    }
}
