//! The mapping itself, synchronous: call it where blocking is fine.

use std::collections::{HashMap, HashSet};

use tracing::{debug, warn};

use crate::model::{Batch, IfAddress, Interface, NetnsKey, NetnsRef, Peer, PodNetwork};
use crate::sys::netlink::{AddrInfo, LinkInfo, NetlinkError, RouteSocket};
use crate::sys::netns::{NetnsFile, open_sockets_in};

use super::super::ResolverError;
use super::Config;

/// Link kinds whose two ends are a pair, so that the host end is the pod interface's peer.
/// A macvlan's or vlan's `IFLA_LINK` names its lower device, which is not a peer.
const PAIRED_KINDS: &[&str] = &["veth", "netkit"];

/// What is kept for a pod namespace between cycles.
struct NetnsHandle {
    /// Kept only until the namespace's id is known: the socket alone keeps what is needed,
    /// and one descriptor per pod is enough.
    file: Option<NetnsFile>,
    /// The host's id for this namespace, once it has one.
    nsid: Option<i32>,
    /// Bound to the pod namespace for its whole life.
    socket: RouteSocket,
}

/// The host link a pod interface is paired with, keyed by (pod nsid, pod-side ifindex).
type HostPeers = HashMap<(i32, u32), Peer>;

/// Maps pods to interfaces and peers. Holds one socket per pod namespace across cycles and
/// closes it as soon as the namespace is no longer in a batch (holding it would keep a deleted
/// namespace, and its veth, alive).
pub struct InterfaceMapper {
    config: Config,
    host: Option<RouteSocket>,
    handles: HashMap<NetnsKey, NetnsHandle>,
}

impl InterfaceMapper {
    pub fn new(config: Config) -> Self {
        InterfaceMapper {
            config,
            host: None,
            handles: HashMap::new(),
        }
    }

    /// How many pod namespaces currently have an open socket.
    pub fn open_namespaces(&self) -> usize {
        self.handles.len()
    }

    /// Fills in every pod's interfaces. A pod whose namespace cannot be opened or read is
    /// dropped from the batch with one log line; the rest are reported.
    pub fn resolve(&mut self, batch: &mut Batch) -> Result<(), ResolverError> {
        let host_links = match self.host_links() {
            Ok(links) => links,
            Err(e) => {
                // The socket may be broken; open a fresh one next cycle.
                self.host = None;
                return Err(ResolverError::Failed(format!(
                    "cannot list the host's links: {e}"
                )));
            }
        };
        let peers = host_peers(host_links);

        let wanted: HashSet<NetnsKey> = batch
            .pods
            .iter()
            .filter(|p| !p.sandbox.host_network)
            .filter_map(|p| p.sandbox.netns.as_ref().map(NetnsRef::key))
            .collect();
        // Release namespaces that are gone first, so their veths can go too.
        self.handles.retain(|key, _| wanted.contains(key));
        self.open_new(batch);

        batch.pods.retain_mut(|pod| self.fill(pod, &peers));
        Ok(())
    }

    fn host_links(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let host = match self.host.take() {
            Some(host) => host,
            // Opened on the calling thread, which is in the host namespace: no thread of this
            // agent other than the dedicated setns thread ever leaves it.
            None => RouteSocket::open().map_err(|source| NetlinkError::Io {
                op: "open host socket",
                source,
            })?,
        };
        self.host.insert(host).dump_links()
    }

    /// Opens a namespace file and a socket inside it for every namespace of the batch not yet
    /// known. All sockets of one cycle are opened in one trip of the setns thread.
    fn open_new(&mut self, batch: &Batch) {
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
                Ok(file) if file.key() == key => files.push(file),
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
        let sockets = open_sockets_in(&refs);
        for (file, socket) in files.into_iter().zip(sockets) {
            match socket {
                Ok(socket) => {
                    self.handles.insert(
                        file.key(),
                        NetnsHandle {
                            file: Some(file),
                            nsid: None,
                            socket,
                        },
                    );
                }
                Err(e) => warn!(
                    inode = file.key().inode, error = %e,
                    "cannot open a netlink socket inside the namespace, skipped"
                ),
            }
        }
    }

    /// Fills one pod in; false drops it from the batch.
    fn fill(&mut self, pod: &mut PodNetwork, peers: &HostPeers) -> bool {
        if pod.sandbox.host_network {
            // The node's interfaces are not the pod's: no per-interface data.
            pod.interfaces.clear();
            return true;
        }
        let Some(netns) = pod.sandbox.netns.as_ref() else {
            return true; // known to a runtime, namespace not found: reported without interfaces
        };
        let key = netns.key();
        let path = netns.path.clone();
        let Some(handle) = self.handles.get_mut(&key) else {
            return false; // could not be opened this cycle; logged in open_new
        };
        if let (None, Some(file), Some(host)) =
            (handle.nsid, handle.file.as_ref(), self.host.as_mut())
        {
            match host.netns_id(file.fd()) {
                Ok(Some(id)) => {
                    handle.nsid = Some(id);
                    handle.file = None;
                }
                // No id: no host link points into this namespace (the host dump assigns one to
                // every namespace a reported link's peer lives in).
                Ok(None) => {}
                Err(e) => debug!(path = %path.display(), error = %e, "netns id query failed"),
            }
        }
        let links = handle.socket.dump_links();
        let addrs = links.and_then(|l| handle.socket.dump_addresses().map(|a| (l, a)));
        match addrs {
            Ok((links, addrs)) => {
                pod.interfaces = interfaces(links, addrs, handle.nsid, peers, &self.config);
                true
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the namespace's links, skipped");
                // The namespace may be on its way out; reopen it if it is still there next time.
                self.handles.remove(&key);
                false
            }
        }
    }
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

/// Builds a pod's interface list from its own dumps.
fn interfaces(
    links: Vec<LinkInfo>,
    addrs: Vec<AddrInfo>,
    nsid: Option<i32>,
    peers: &HostPeers,
    config: &Config,
) -> Vec<Interface> {
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
            let peer = nsid
                .and_then(|id| peers.get(&(id, link.index)))
                .filter(|p| p.kind == kind)
                .cloned();
            let mut addresses = by_index.remove(&link.index).unwrap_or_default();
            addresses.sort();
            Interface {
                name: link.name,
                ifindex: link.index,
                kind,
                mac: link.mac.as_deref().map(format_mac),
                addresses,
                peer,
                counters: link.stats.unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by_key(|i| i.ifindex);
    out
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
        let out = interfaces(
            vec![lo, eth0, net1],
            addrs,
            Some(7),
            &peers,
            &Config::default(),
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "eth0");
        assert_eq!(out[0].peer.as_ref().unwrap().name, "lxcabc");
        assert_eq!(out[0].addresses[0].to_string(), "10.0.0.5/24");
        assert_eq!(out[1].name, "net1");
        assert!(out[1].peer.is_none());
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
            None,
            &peers,
            &Config::default(),
        );
        assert!(out[0].peer.is_none());
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
