//! The mapping itself, synchronous: call it where blocking is fine.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{debug, warn};

use crate::model::{
    Batch, Counters, IfAddress, Interface, Link, NetnsKey, NetnsRef, Peer, PodNetwork,
};
use crate::sys::mib::OWN_NET_DIR;
use crate::sys::netlink::{
    AddrInfo, LinkCounters, LinkInfo, LinkNotices, NetlinkError, RouteSocket, Watch,
};
use crate::sys::netns::{InNamespace, NetnsFile, NsFileKey, open_sockets_in};

use super::super::ResolverError;
use super::Config;
use super::transport::Transport;

/// Link kinds whose two ends are a pair, so that the host end is the pod interface's peer.
/// A macvlan's or vlan's `IFLA_LINK` names its lower device, which is not a peer.
const PAIRED_KINDS: &[&str] = &["veth", "netkit"];

/// A pod namespace's links as of its last full dump; counters are refreshed every cycle.
struct PodLinks {
    /// Every link index of the namespace (loopback included), sorted: a stats dump listing
    /// other indexes means links came or went.
    indexes: Vec<u32>,
    /// The reported interfaces, with their host peers once found.
    interfaces: Vec<Interface>,
    /// The indexes of `interfaces`, when there are at most [`SINGLE_GETS_UP_TO`] (which are
    /// asked one by one), kept here rather than read through each interface's shared link:
    /// that was a cache miss per pod every cycle at 1000 pods (perf).
    asked: [u32; SINGLE_GETS_UP_TO],
    /// For each of `interfaces`, where its other end is when it is a pair (veth, netkit) whose
    /// other end is in another namespace.
    other_ends: Vec<Option<OtherEnd>>,
}

/// The other end of a pod's paired interface, as the pod's own link dump gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OtherEnd {
    /// `IFLA_LINK_NETNSID`: the id the *pod's* namespace gives the other end's namespace.
    nsid: i32,
    /// `IFLA_LINK` (or the interface's own index when the kernel left it out as equal).
    index: u32,
}

/// What is kept for a pod namespace between cycles.
struct NetnsHandle {
    /// Bound to the pod namespace for its whole life, subscribed to its link and address
    /// changes (except in one-shot mode). It alone keeps what is needed: the namespace file is
    /// closed as soon as the socket is open.
    socket: RouteSocket,
    /// The id the pod's namespace gives the host's, once it has one. Ids are never changed
    /// while both namespaces live, and the host outlives every pod: once known, it is kept.
    host_id: Option<i32>,
    links: Option<PodLinks>,
    /// The links were dumped again (or finding their peers failed): peers are found anew.
    peers_stale: bool,
    transport: Transport,
}

impl NetnsHandle {
    /// Brings the namespace's interfaces up to date. In the steady state that is one small
    /// stats dump; the full link and address dumps run only when the namespace notified a
    /// change (or the stats name other links), and then mark the peers stale.
    fn refresh(&mut self, config: &Config) -> Result<(), NetlinkError> {
        if let Some(links) = self.links.as_mut()
            && links.interfaces.len() <= SINGLE_GETS_UP_TO
        {
            // One small request per reported interface. A link that went, or any change the
            // namespace notified (a link added, renamed, an address), makes a full dump.
            let mut all_there = true;
            for (iface, index) in links.interfaces.iter_mut().zip(links.asked) {
                match self.socket.link_stats(index)? {
                    Some(counters) => iface.counters = pod_counters(counters),
                    None => all_there = false,
                }
            }
            if links.interfaces.is_empty() {
                // No answer was read, so no notification with it: look for them.
                self.socket.drain_notifications()?;
            }
            if all_there && !self.socket.take_changed() {
                return Ok(());
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
                return Ok(());
            }
        }
        // Cleared before dumping: a change that lands during the dumps is seen next cycle.
        self.socket.take_changed();
        let links = self.socket.dump_links()?;
        let addrs = self.socket.dump_addresses()?;
        let mut indexes: Vec<u32> = links.iter().map(|l| l.index).collect();
        indexes.sort_unstable();
        let (interfaces, other_ends): (Vec<Interface>, _) =
            interfaces(links, addrs, config).into_iter().unzip();
        let mut asked = [0; SINGLE_GETS_UP_TO];
        for (slot, iface) in asked.iter_mut().zip(&interfaces) {
            *slot = iface.ifindex;
        }
        self.links = Some(PodLinks {
            indexes,
            interfaces,
            asked,
            other_ends,
        });
        self.peers_stale = true;
        Ok(())
    }

    /// Finds the host peer of each of the pod's paired interfaces from the pod's side: O(1)
    /// kernel work whatever the number of pods (design.md § Interface mapping):
    /// - the id the pod gives the host (`RTM_GETNSID` with the host's namespace fd, on the
    ///   pod's socket: a lookup in the pod's own id table, which holds one or two entries),
    ///   asked after the link dump, since the dump of a link whose other end is in the host is
    ///   what assigns it (`peernet2id_alloc`); still none then means nothing points at the host;
    /// - an interface whose other end's namespace has that id has its peer in the host, at the
    ///   index the pod's dump gave: named with `SIOCGIFNAME` in the host (`dev_get_by_index`).
    ///
    /// Neither touches the host's id table, whose lookups are linear in the number of pods.
    /// On failure the peers found so far are kept unset and the next cycle tries again.
    fn find_peers(&mut self, host: &Host) -> Result<(), NetlinkError> {
        let Some(links) = self.links.as_mut() else {
            return Ok(());
        };
        for iface in &mut links.interfaces {
            if iface.peer.is_some() {
                iface.link_mut().peer = None;
            }
        }
        self.peers_stale = true;
        if links.other_ends.iter().any(Option::is_some) && self.host_id.is_none() {
            self.host_id = self.socket.netns_id(host.netns.fd())?;
        }
        if let Some(host_id) = self.host_id {
            for (iface, end) in links.interfaces.iter_mut().zip(&links.other_ends) {
                // An end in another pod (another id) or a namespace with no id is not the host's.
                let Some(end) = end.filter(|e| e.nsid == host_id) else {
                    continue;
                };
                // The other end of a pair is of the pair's kind: the kernel makes both ends of
                // a veth as veths, of a netkit as netkits. So the kind is the pod end's, and the
                // host end needs no query of its own (which would cost a host id lookup).
                let peer = host.socket.link_name(end.index)?.map(|name| Peer {
                    kind: iface.kind.clone(),
                    name: name.into(),
                    ifindex: end.index,
                });
                iface.link_mut().peer = peer;
            }
        }
        self.peers_stale = false;
        Ok(())
    }

    /// Applies host notifications to the peers found: a host end renamed takes its new name, a
    /// host end deleted is no peer any more (the pod's own notification of its end going makes
    /// it dump again). O(1) per peer, no query: the notification said it.
    fn apply_notices(&mut self, noticed: &HashMap<u32, Option<&str>>) {
        let Some(links) = self.links.as_mut() else {
            return;
        };
        for iface in &mut links.interfaces {
            let Some(peer) = iface.peer.as_ref() else {
                continue;
            };
            match noticed.get(&peer.ifindex) {
                Some(Some(name)) if &*peer.name != *name => {
                    if let Some(peer) = iface.link_mut().peer.as_mut() {
                        peer.name = (*name).into();
                    }
                }
                Some(None) => iface.link_mut().peer = None,
                _ => {}
            }
        }
    }

    /// Asks the host names of the peers found again, by index (after host notifications were
    /// lost: a host end may have been renamed). A peer no longer there is dropped; the pod's
    /// own notification of its end going makes it dump again.
    fn rename_peers(&mut self, host: &Host) -> Result<(), NetlinkError> {
        let Some(links) = self.links.as_mut() else {
            return Ok(());
        };
        for iface in &mut links.interfaces {
            let Some(index) = iface.peer.as_ref().map(|p| p.ifindex) else {
                continue;
            };
            match host.socket.link_name(index)? {
                Some(name) if iface.peer.as_ref().is_some_and(|p| *p.name != *name) => {
                    if let Some(peer) = iface.link_mut().peer.as_mut() {
                        peer.name = name.into();
                    }
                }
                Some(_) => {}
                None => iface.link_mut().peer = None,
            }
        }
        Ok(())
    }
}

/// Up to this many reported interfaces, a namespace's counters are asked link by link; above,
/// with one stats dump.
const SINGLE_GETS_UP_TO: usize = 4;

/// The host's side: a socket in the host's namespace and a descriptor of that namespace.
struct Host {
    /// Subscribed to the host's link changes (except in one-shot mode); also what
    /// `SIOCGIFNAME` is asked on, which answers for the socket's namespace.
    socket: RouteSocket,
    /// The agent's own network namespace, which is the host's (it runs with host networking):
    /// what the pods' sockets are asked the id of.
    netns: NetnsFile,
}

/// The agent's own network namespace (its main thread's; the mapper's threads are all in it).
const OWN_NETNS: &str = "/proc/self/ns/net";

/// Maps pods to interfaces and peers. Holds one socket per pod namespace across cycles and
/// closes it as soon as the namespace is no longer in a batch (holding it would keep a deleted
/// namespace, and its veth, alive).
///
/// Peers are found from each pod's side (see [`NetnsHandle::find_peers`]), so a pod appearing
/// or changing costs O(1) kernel work and the host's links are never dumped. Work per cycle is
/// proportional to what changed: each pod's links are dumped again only when that namespace
/// notified a change, and its peers found again only then; a host link renamed or deleted is
/// applied to the peer with its index straight from the host's notification (asking the known
/// peers' names again by index only when notifications were lost). Otherwise a cycle is one
/// stats request per pod.
pub struct InterfaceMapper {
    config: Config,
    /// `netshim discover`: one cycle, so no socket subscribes to notifications, and one thread.
    one_shot: bool,
    host: Option<Host>,
    /// Host notifications were lost (or its socket was opened anew): known peers' names are
    /// asked again.
    host_changed: bool,
    /// What the host's notifications said since the last cycle.
    host_notices: LinkNotices,
    handles: HashMap<NetnsKey, NetnsHandle>,
    /// The namespaces of the cycle's batch: kept between cycles only so that its table is not
    /// allocated and grown again every cycle.
    wanted: HashSet<NetnsKey>,
    /// Where a thread inside a pod namespace finds that namespace's counter files.
    mib_dir: PathBuf,
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
            one_shot: false,
            host: None,
            host_changed: false,
            host_notices: LinkNotices::default(),
            handles: HashMap::new(),
            wanted: HashSet::new(),
            mib_dir: PathBuf::from(OWN_NET_DIR),
            #[cfg(feature = "fault-injection")]
            after_open: None,
        }
    }

    /// For a mapper that runs one cycle (`netshim discover`): its sockets subscribe to no
    /// notifications, which nothing would read.
    /// Nor are the TCP/UDP counters read: `discover` is about the mapping, and opening two
    /// proc files per pod would double its cold cost.
    pub fn set_one_shot(&mut self) {
        self.one_shot = true;
        self.config.transport.enabled = false;
    }

    fn watch(&self, watch: Watch) -> Watch {
        if self.one_shot { Watch::Nothing } else { watch }
    }

    /// Runs `hook` in every cycle between opening new namespaces and reading them (and asking
    /// their ids): the tests delete namespaces there.
    /// Only with the `fault-injection` feature, which the crate's own tests turn on.
    #[cfg(feature = "fault-injection")]
    pub fn set_after_open(&mut self, hook: impl FnMut() + Send + 'static) {
        self.after_open = Some(Box::new(hook));
    }

    /// Where the counter files of the namespace entered are looked for (default
    /// `/proc/thread-self/net`): the tests point it at a folder without them.
    /// Only with the `fault-injection` feature, which the crate's own tests turn on.
    #[cfg(feature = "fault-injection")]
    pub fn set_mib_dir(&mut self, dir: impl Into<PathBuf>) {
        self.mib_dir = dir.into();
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

        let wanted = &mut self.wanted;
        wanted.clear();
        wanted.extend(
            batch
                .pods
                .iter()
                .filter(|p| !p.sandbox.host_network)
                .filter_map(|p| p.sandbox.netns.as_ref().map(NetnsRef::key)),
        );
        // Release namespaces that are gone first, so their veths can go too.
        self.handles.retain(|key, _| wanted.contains(key));
        self.open_new(batch);
        #[cfg(feature = "fault-injection")]
        if let Some(hook) = self.after_open.as_mut() {
            hook();
        }

        // One-shot: one thread. Every namespace is dumped in full then, and parallel dumps
        // were seen spinning on the RTNL mutex (`rtnl_dumpit`); at 1000 pods on 2 cores, one
        // thread and two took the same CPU and wall time within the noise of a busy machine
        // (5 runs each, 2026-12-02), so the simpler one.
        // Running: threads only for a cycle with many namespaces never read yet (the agent's
        // start, a burst of new pods), whose full dumps are the work worth sharing. A steady
        // cycle (one small stats request per namespace) stays on this thread: starting threads
        // for it every cycle cost more CPU (their stacks' page faults, their start and exit)
        // than it saved wall time.
        let threads = if self.one_shot {
            1
        } else {
            let unread = self.handles.values().filter(|h| h.links.is_none()).count();
            worker_threads(unread)
        };
        let failed = refresh_all(&mut self.handles, &self.config, threads, Instant::now());
        // The namespace may be on its way out; reopen it next cycle if it is still there.
        for (key, e) in failed {
            warn!(inode = key.inode, error = %e, "cannot read the namespace's links, skipped");
            self.handles.remove(&key);
        }

        if let Some(host) = self.host.as_ref() {
            let renames = std::mem::take(&mut self.host_changed);
            let notices = std::mem::take(&mut self.host_notices);
            // A host end renamed or deleted, by index: the notification says it, no query.
            let noticed: HashMap<u32, Option<&str>> = notices
                .named
                .iter()
                .map(|(index, name)| (*index, Some(name.as_str())))
                .chain(notices.deleted.iter().map(|index| (*index, None)))
                .collect();
            for (key, handle) in &mut self.handles {
                let result = if handle.peers_stale {
                    handle.find_peers(host)
                } else if renames {
                    handle.rename_peers(host)
                } else {
                    if !noticed.is_empty() {
                        handle.apply_notices(&noticed);
                    }
                    continue;
                };
                if let Err(e) = result {
                    // Reported without peers this cycle; tried again next cycle.
                    debug!(inode = key.inode, error = %e, "cannot find the namespace's host peers");
                    handle.peers_stale = true;
                }
            }
        }

        let handles = &self.handles;
        batch.pods.retain_mut(|pod| fill(pod, handles));
        Ok(())
    }

    /// Opens the host socket when needed and notes whether the host's links changed.
    fn note_host_changes(&mut self) -> Result<(), NetlinkError> {
        if self.host.is_none() {
            // Opened on the calling thread, which is in the host namespace: no thread of this
            // agent other than the dedicated setns thread ever leaves it.
            let watch = self.watch(Watch::Links);
            let socket = RouteSocket::open(watch)
                .and_then(|mut host| {
                    if watch != Watch::Nothing {
                        host.set_receive_buffer(HOST_RECEIVE_BUFFER)?;
                    }
                    Ok(host)
                })
                .map_err(|source| NetlinkError::Io {
                    op: "open host socket",
                    source,
                })?;
            let netns =
                NetnsFile::open(Path::new(OWN_NETNS)).map_err(|source| NetlinkError::Io {
                    op: "open the host's namespace (/proc/self/ns/net)",
                    source,
                })?;
            self.host = Some(Host { socket, netns });
            // Changes while there was no socket went unseen.
            self.host_changed = true;
        }
        if let Some(host) = self.host.as_mut() {
            let notices = host.socket.drain_link_notices()?;
            host.socket.take_changed();
            self.host_changed |= notices.lost;
            self.host_notices.named.extend(notices.named);
            self.host_notices.deleted.extend(notices.deleted);
        }
        Ok(())
    }

    /// Drops the host socket (it may be broken: a fresh one is opened next cycle) and says why
    /// nothing could be done this cycle.
    fn host_failed(&mut self, what: &str, e: NetlinkError) -> ResolverError {
        self.host = None;
        ResolverError::Failed(format!("{what}: {e}"))
    }

    /// Opens a socket inside every namespace of the batch not yet known (the namespace file
    /// only for as long as that takes). All sockets of one cycle are opened in one trip of the
    /// setns thread.
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
        let watch = self.watch(Watch::LinksAndAddresses);
        let mib_dir = self
            .config
            .transport
            .enabled
            .then_some(self.mib_dir.as_path());
        let opened = open_sockets_in(&refs, watch, mib_dir, worker_threads(refs.len()));
        for (file, opened) in files.into_iter().zip(opened) {
            match opened {
                Ok(InNamespace { socket, mib }) => {
                    let transport = match mib {
                        None => Transport::Off,
                        Some(Ok(files)) => Transport::from_files(files),
                        Some(Err(e)) => {
                            warn!(
                                inode = file.key().inode, error = %e,
                                "cannot open the namespace's TCP/UDP counters; reported without them"
                            );
                            Transport::Off
                        }
                    };
                    self.handles.insert(
                        netns_key(file.key()),
                        NetnsHandle {
                            socket,
                            host_id: None,
                            links: None,
                            peers_stale: true,
                            transport,
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
}

/// Below this many namespaces to read in full, a cycle's per-namespace work stays on one
/// thread: starting threads would cost more than it saves.
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

/// Refreshes every handle, spread over `threads` threads (each handle has its own socket, so
/// shares are independent). Returns the handles that failed.
fn refresh_all(
    handles: &mut HashMap<NetnsKey, NetnsHandle>,
    config: &Config,
    threads: usize,
    now: Instant,
) -> Vec<(NetnsKey, NetlinkError)> {
    let mut entries: Vec<(NetnsKey, &mut NetnsHandle)> =
        handles.iter_mut().map(|(k, h)| (*k, h)).collect();
    let share = entries.len().div_ceil(threads.max(1)).max(1);
    let interval = config.transport.interval;
    let refresh_share = |part: &mut [(NetnsKey, &mut NetnsHandle)]| {
        // One buffer for every counter file of the share: a steady read allocates nothing.
        let mut buf = Vec::new();
        part.iter_mut()
            .filter_map(|(key, handle)| match handle.refresh(config) {
                Ok(()) => {
                    handle.transport.refresh(now, interval, &mut buf, key.inode);
                    None
                }
                Err(e) => Some((*key, e)),
            })
            .collect::<Vec<_>>()
    };
    if share >= entries.len() {
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
                                (k, e)
                            })
                            .collect()
                    })
                })
                .collect()
        })
    }
}

/// Fills one pod in from its namespace's cached links and peers; false drops it from the
/// batch.
fn fill(pod: &mut PodNetwork, handles: &HashMap<NetnsKey, NetnsHandle>) -> bool {
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
    pod.interfaces.clone_from(&links.interfaces);
    pod.transport = handle.transport.last();
    true
}

/// Where a pod link's other end is, when the link is one end of a pair (veth, netkit) whose
/// other end is in another namespace. A macvlan's or vlan's `IFLA_LINK` is its lower device,
/// not a peer; a pair with both ends in the pod has no `IFLA_LINK_NETNSID`.
fn other_end(link: &LinkInfo) -> Option<OtherEnd> {
    let kind = link.kind.as_deref()?;
    if !PAIRED_KINDS.contains(&kind) {
        return None;
    }
    // Negative: NETNSA_NSID_NOT_ASSIGNED (the other namespace was dying when asked).
    let nsid = link.link_netnsid.filter(|id| *id >= 0)?;
    Some(OtherEnd {
        nsid,
        index: link.peer_index(),
    })
}

/// Builds a pod's interface list (without peers) from its own dumps, each interface with where
/// its other end is.
fn interfaces(
    links: Vec<LinkInfo>,
    addrs: Vec<AddrInfo>,
    config: &Config,
) -> Vec<(Interface, Option<OtherEnd>)> {
    let mut by_index: HashMap<u32, Vec<IfAddress>> = HashMap::new();
    for a in addrs {
        by_index.entry(a.index).or_default().push(IfAddress {
            ip: a.ip,
            prefix_len: a.prefix_len,
        });
    }
    let mut out: Vec<(Interface, Option<OtherEnd>)> = links
        .into_iter()
        .filter(|l| config.include_loopback || !l.is_loopback)
        .map(|link| {
            let end = other_end(&link);
            let kind = match (&link.kind, link.is_loopback) {
                (Some(k), _) => k.clone(),
                (None, true) => "loopback".to_string(),
                (None, false) => "device".to_string(),
            };
            let mut addresses = by_index.remove(&link.index).unwrap_or_default();
            addresses.sort();
            let iface = Interface::new(
                Link {
                    name: link.name.into(),
                    ifindex: link.index,
                    kind: kind.into(),
                    mac: link.mac.as_deref().map(|m| format_mac(m).into()),
                    addresses: addresses.into(),
                    peer: None,
                },
                link.stats.map(pod_counters).unwrap_or_default(),
            );
            (iface, end)
        })
        .collect();
    out.sort_by_key(|(i, _)| i.ifindex);
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
    fn only_pairs_pointing_into_another_namespace_have_an_other_end() {
        let mut veth = link(17, "eth0", Some("veth"));
        veth.link = Some(2);
        veth.link_netnsid = Some(4);
        assert_eq!(other_end(&veth), Some(OtherEnd { nsid: 4, index: 2 }));
        let mut same_index = link(5, "eth1", Some("netkit"));
        same_index.link_netnsid = Some(0); // IFLA_LINK omitted: the peer is index 5 too
        assert_eq!(other_end(&same_index), Some(OtherEnd { nsid: 0, index: 5 }));
        let mut macvlan = link(9, "net1", Some("macvlan"));
        macvlan.link = Some(2);
        macvlan.link_netnsid = Some(4); // its lower device, in the host: not a peer
        assert_eq!(other_end(&macvlan), None);
        let mut local_veth = link(11, "in0", Some("veth")); // both ends in the pod
        local_veth.link = Some(12);
        assert_eq!(other_end(&local_veth), None);
        let mut dying = link(13, "eth2", Some("veth"));
        dying.link_netnsid = Some(-1); // NETNSA_NSID_NOT_ASSIGNED
        assert_eq!(other_end(&dying), None);
        assert_eq!(other_end(&link(14, "dummy0", None)), None);
    }

    #[test]
    fn pod_interfaces_get_addresses_and_skip_loopback() {
        let mut lo = link(1, "lo", None);
        lo.is_loopback = true;
        let mut eth0 = link(2, "eth0", Some("veth"));
        eth0.link = Some(40);
        eth0.link_netnsid = Some(0);
        let net1 = link(3, "net1", Some("macvlan"));
        let addrs = vec![AddrInfo {
            index: 2,
            ip: "10.0.0.5".parse().unwrap(),
            prefix_len: 24,
        }];
        let out = interfaces(vec![net1, lo, eth0], addrs, &Config::default());
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[0].0.name, "eth0");
        assert_eq!(out[0].1, Some(OtherEnd { nsid: 0, index: 40 }));
        assert!(out[0].0.peer.is_none(), "peers are found afterwards");
        assert_eq!(out[0].0.addresses[0].to_string(), "10.0.0.5/24");
        assert_eq!(&*out[1].0.name, "net1");
        assert_eq!(out[1].1, None);

        let with_lo = Config {
            include_loopback: true,
            ..Config::default()
        };
        let mut lo = link(1, "lo", None);
        lo.is_loopback = true;
        let out = interfaces(vec![lo], vec![], &with_lo);
        assert_eq!((&*out[0].0.kind, out[0].1), ("loopback", None));
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
