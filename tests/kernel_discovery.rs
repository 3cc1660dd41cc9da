//! Discovery on the real kernel: namespaces and veth pairs made here, read back through the
//! `netns` receiver and the `interfaces` resolver exactly as the agent runs them. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use netshim::model::{Batch, Interface, PodNetwork};
use netshim::receivers::netns::{Config as NetnsConfig, NetnsReceiver};
use netshim::resolvers::interfaces::{Config as InterfacesConfig, InterfaceMapper};
use netshim::sys::netlink::RouteSocket;
use support::*;

/// One full cycle: scan every namespace, map every interface.
fn cycle(mapper: &mut InterfaceMapper) -> Vec<PodNetwork> {
    let receiver = NetnsReceiver::new(NetnsConfig::default());
    let sandboxes = receiver.scan_blocking().expect("scan");
    let mut batch = Batch::from_sandboxes(&sandboxes);
    mapper.resolve(&mut batch).expect("resolve");
    batch.pods
}

fn discover() -> Vec<PodNetwork> {
    cycle(&mut InterfaceMapper::new(InterfacesConfig::default()))
}

fn pod_at<'a>(pods: &'a [PodNetwork], netns_path: &str) -> Option<&'a PodNetwork> {
    let ino = inode(netns_path);
    pods.iter()
        .find(|p| p.sandbox.netns.as_ref().is_some_and(|n| n.inode == ino))
}

fn iface<'a>(pod: &'a PodNetwork, name: &str) -> &'a Interface {
    pod.interfaces
        .iter()
        .find(|i| *i.name == *name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", pod.interfaces))
}

fn peer_name(i: &Interface) -> Option<&str> {
    i.peer.as_ref().map(|p| &*p.name)
}

#[test]
fn cni_style_host_names_are_mapped_to_their_pod_interfaces() {
    let cilium = Netns::new("nst-cni-cilium");
    let calico = Netns::new("nst-cni-calico");
    let bridged = Netns::new("nst-cni-bridge");
    let _l1 = veth("lxcnstcni00001", "eth0", &cilium.name);
    let _l2 = veth("calinstcni0002", "eth0", &calico.name);
    ip_quiet(&["link", "del", "nstcnibr0"]);
    ip(&["link", "add", "nstcnibr0", "type", "bridge"]);
    let _br = HostLink {
        name: "nstcnibr0".into(),
    };
    let _l3 = veth("vethnstcni0003", "eth0", &bridged.name);
    ip(&["link", "set", "vethnstcni0003", "master", "nstcnibr0"]);

    let pods = discover();
    for (ns, host) in [
        (&cilium, "lxcnstcni00001"),
        (&calico, "calinstcni0002"),
        (&bridged, "vethnstcni0003"),
    ] {
        let path = ns.path();
        let pod = pod_at(&pods, path.to_str().unwrap()).expect("pod found");
        assert_eq!(*pod.sandbox.netns.as_ref().unwrap().path, *path);
        assert!(!pod.sandbox.host_network);
        let eth0 = iface(pod, "eth0");
        assert_eq!(&*eth0.kind, "veth");
        let peer = eth0.peer.as_ref().expect("eth0 has a host peer");
        assert_eq!(&*peer.name, host);
        assert_eq!(peer.ifindex, host_ifindex(host));
        assert!(eth0.mac.as_deref().is_some_and(|m| m.len() == 17));
    }
}

#[test]
fn every_interface_is_listed_and_only_host_pairs_are_peers() {
    let pod = Netns::new("nst-multi-a");
    let other = Netns::new("nst-multi-b");
    let _eth0 = veth("lxcnstmulti0", "eth0", &pod.name);
    let _net1 = veth("lxcnstmulti1", "net1", &pod.name);
    // A kind the resolver has no special knowledge of.
    pod.ip(&[
        "link", "add", "br9", "type", "vxlan", "id", "42", "dstport", "4789",
    ]);
    // A pair entirely inside the pod, and one between two pods: no host end, no peer.
    pod.ip(&["link", "add", "in0", "type", "veth", "peer", "name", "in1"]);
    pod.ip(&[
        "link",
        "add",
        "x0",
        "type",
        "veth",
        "peer",
        "name",
        "x1",
        "netns",
        &other.name,
    ]);

    let pods = discover();
    let p = pod_at(&pods, "/run/netns/nst-multi-a").expect("pod found");
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstmulti0"));
    assert_eq!(peer_name(iface(p, "net1")), Some("lxcnstmulti1"));
    assert_eq!(&*iface(p, "br9").kind, "vxlan");
    assert_eq!(peer_name(iface(p, "br9")), None);
    for name in ["in0", "in1", "x0"] {
        assert_eq!(&*iface(p, name).kind, "veth");
        assert_eq!(peer_name(iface(p, name)), None, "{name} has no host end");
    }
    assert!(
        p.interfaces.iter().all(|i| &*i.name != "lo"),
        "loopback is left out by default"
    );
    let o = pod_at(&pods, "/run/netns/nst-multi-b").expect("other pod found");
    assert_eq!(peer_name(iface(o, "x1")), None);
}

#[test]
fn loopback_is_reported_when_asked() {
    let ns = Netns::new("nst-lo");
    let _l = veth("lxcnstlo0", "eth0", &ns.name);
    let mut mapper = InterfaceMapper::new(InterfacesConfig {
        include_loopback: true,
        ..InterfacesConfig::default()
    });
    let pods = cycle(&mut mapper);
    let p = pod_at(&pods, "/run/netns/nst-lo").expect("pod found");
    assert_eq!(&*iface(p, "lo").kind, "loopback");
    assert_eq!(peer_name(iface(p, "lo")), None);
}

#[test]
fn both_ends_with_the_same_ifindex_are_still_paired() {
    let ns = Netns::new("nst-sameidx");
    let idx = free_host_ifindex(7000).to_string();
    ip_quiet(&["link", "del", "lxcnstsame"]);
    ip(&[
        "link",
        "add",
        "lxcnstsame",
        "index",
        &idx,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "index",
        &idx,
        "netns",
        &ns.name,
    ]);
    let _l = HostLink {
        name: "lxcnstsame".into(),
    };
    // Older kernels omit IFLA_LINK when both indexes are equal; newer ones ("rtnetlink: always
    // put IFLA_LINK for links with ndo_get_iflink") send it. Either way it may only name the
    // same index; the omitted case is also covered by the resolver's unit tests.
    let host = RouteSocket::open(netshim::sys::netlink::Watch::Nothing)
        .unwrap()
        .dump_links()
        .unwrap()
        .into_iter()
        .find(|l| l.name == "lxcnstsame")
        .expect("host end listed");
    assert!(
        host.link.is_none_or(|l| l.to_string() == idx),
        "IFLA_LINK {:?} for index {idx}",
        host.link
    );
    assert!(host.link_netnsid.is_some());

    let pods = discover();
    let p = pod_at(&pods, "/run/netns/nst-sameidx").expect("pod found");
    let eth0 = iface(p, "eth0");
    assert_eq!(eth0.ifindex.to_string(), idx);
    assert_eq!(peer_name(eth0), Some("lxcnstsame"));
    assert_eq!(eth0.peer.as_ref().unwrap().ifindex.to_string(), idx);
}

#[test]
fn a_macvlan_moved_into_a_pod_has_no_peer() {
    let ns = Netns::new("nst-macvlan");
    let _eth0 = veth("lxcnstmv0", "eth0", &ns.name);
    // The macvlan's parent: a host-only veth pair.
    ip_quiet(&["link", "del", "nstmvpar0"]);
    ip(&[
        "link",
        "add",
        "nstmvpar0",
        "type",
        "veth",
        "peer",
        "name",
        "nstmvpar1",
    ]);
    let _parent = HostLink {
        name: "nstmvpar0".into(),
    };
    ip(&[
        "link",
        "add",
        "nstmvlan0",
        "link",
        "nstmvpar0",
        "type",
        "macvlan",
        "mode",
        "bridge",
    ]);
    let _mv = HostLink {
        name: "nstmvlan0".into(),
    };
    ip(&["link", "set", "nstmvlan0", "netns", &ns.name]);
    ns.ip(&["link", "set", "nstmvlan0", "name", "net1"]);

    let pods = discover();
    let p = pod_at(&pods, "/run/netns/nst-macvlan").expect("pod found");
    let net1 = iface(p, "net1");
    assert_eq!(&*net1.kind, "macvlan");
    assert_eq!(peer_name(net1), None, "a macvlan's parent is not its peer");
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstmv0"));
}

#[test]
fn a_namespace_held_only_by_a_process_is_found() {
    let proc = process_with_own_netns();
    let pid = proc.pid().to_string();
    let _l = veth("lxcnstproc0", "eth0", &pid);

    let pods = discover();
    let path = format!("/proc/{pid}/ns/net");
    let p = pod_at(&pods, &path).expect("process-held namespace found");
    let netns = p.sandbox.netns.as_ref().unwrap();
    assert!(netns.path.starts_with("/proc/"), "{:?}", netns.path);
    assert_eq!(p.sandbox.pid, Some(proc.pid()));
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstproc0"));
}

#[test]
fn a_namespace_both_mounted_and_used_by_a_process_is_reported_once() {
    let ns = Netns::new("nst-both");
    let _l = veth("lxcnstboth0", "eth0", &ns.name);
    let proc = process_in(&ns.name);

    let pods = discover();
    let ino = inode("/run/netns/nst-both");
    let matching: Vec<_> = pods
        .iter()
        .filter(|p| p.sandbox.netns.as_ref().is_some_and(|n| n.inode == ino))
        .collect();
    assert_eq!(matching.len(), 1, "reported exactly once");
    let p = matching[0];
    assert_eq!(
        *p.sandbox.netns.as_ref().unwrap().path,
        *ns.path(),
        "the bind mount is preferred"
    );
    assert_eq!(p.sandbox.pid, Some(proc.pid()));
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstboth0"));
}

#[test]
fn namespaces_vanishing_mid_scan_are_skipped_and_the_rest_reported() {
    let stays = Netns::new("nst-vanish-a");
    let _la = veth("lxcnstvan0", "eth0", &stays.name);
    let mut goes = Netns::new("nst-vanish-b");
    let _lb = veth("lxcnstvan1", "eth0", &goes.name);
    let proc = process_with_own_netns();
    let proc_path = format!("/proc/{}/ns/net", proc.pid());
    let proc_ino = inode(&proc_path);
    let goes_ino = inode("/run/netns/nst-vanish-b");

    let receiver = NetnsReceiver::new(NetnsConfig::default());
    let sandboxes = receiver.scan_blocking().expect("scan");
    let inodes: Vec<u64> = sandboxes
        .iter()
        .filter_map(|s| s.netns.as_ref())
        .map(|n| n.inode)
        .collect();
    assert!(inodes.contains(&goes_ino) && inodes.contains(&proc_ino));

    // Between the scan and the resolver: a bind mount removed, a process gone.
    goes.delete();
    drop(proc);

    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let mut batch = Batch::from_sandboxes(&sandboxes);
    mapper.resolve(&mut batch).expect("the cycle completes");
    let found: Vec<u64> = batch
        .pods
        .iter()
        .filter_map(|p| p.sandbox.netns.as_ref())
        .map(|n| n.inode)
        .collect();
    assert!(!found.contains(&goes_ino), "deleted namespace skipped");
    assert!(
        !found.contains(&proc_ino),
        "namespace of a dead process skipped"
    );
    let p = pod_at(&batch.pods, "/run/netns/nst-vanish-a").expect("the rest is reported");
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstvan0"));
}

#[test]
fn a_deleted_namespace_is_released_so_its_veth_goes_away() {
    let mut ns = Netns::new("nst-release");
    let _l = veth("lxcnstrel0", "eth0", &ns.name);
    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let pods = cycle(&mut mapper);
    assert!(pod_at(&pods, "/run/netns/nst-release").is_some());
    let held = mapper.open_namespaces();
    assert!(held >= 1);

    ns.delete();
    // The next cycle no longer sees it and closes its socket; only then can the kernel free
    // the namespace and, with it, the veth pair (asynchronously: facts.md says ~1 s).
    let pods = cycle(&mut mapper);
    assert!(pods.iter().all(|p| {
        p.interfaces
            .iter()
            .all(|i| peer_name(i) != Some("lxcnstrel0"))
    }));
    assert!(
        wait_until(Duration::from_secs(5), || !host_link_exists("lxcnstrel0")),
        "the host veth outlived its namespace: something still holds the namespace"
    );
}

/// Runs a script with the system Python inside a namespace (`ip netns exec`).
const POD_UDP: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("169.254.77.2", 9000))
s.settimeout(10)
print("ready", flush=True)
for _ in range(7):
    s.sendto(b"p" * 100, ("169.254.77.1", 9001))
got = 0
while got < 5:
    s.recv(2048)
    got += 1
print("received", got, flush=True)
"#;

#[test]
fn counters_are_exact_and_from_the_pods_point_of_view() {
    let ns = Netns::new("nst-counters");
    // No IPv6 (no neighbour discovery) and static neighbours (no ARP): only the test's packets.
    let _l = quiet_veth(&ns, "lxcnstcnt0", 77);
    ns.ip(&["link", "set", "lo", "up"]);

    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let first = cycle(&mut mapper);
    let pod_before = pod_at(&first, "/run/netns/nst-counters").unwrap();
    let before = iface(pod_before, "eth0").counters;
    // The namespace's own UDP counters, read in its first cycle (on every kernel of the matrix).
    let udp_before = pod_before
        .transport
        .clone()
        .expect("the pod's TCP/UDP counters are read");
    let host_rx_before = host_counter("lxcnstcnt0", "rx_bytes");
    let host_tx_before = host_counter("lxcnstcnt0", "tx_bytes");

    let host = UdpSocket::bind("169.254.77.1:9001").expect("bind on the test's own address");
    host.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c", POD_UDP])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python in the pod");
    let mut script = Process { child };
    let mut lines = BufReader::new(script.child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    for _ in 0..5 {
        host.send_to(&[b'h'; 300], "169.254.77.2:9000").unwrap();
    }
    let mut buf = [0u8; 2048];
    for _ in 0..7 {
        let (n, _) = host.recv_from(&mut buf).expect("pod datagram");
        assert_eq!(n, 100);
    }
    assert_eq!(lines.next().unwrap().unwrap(), "received 5");
    assert!(script.child.wait().unwrap().success());

    let after = iface(
        pod_at(&cycle(&mut mapper), "/run/netns/nst-counters").unwrap(),
        "eth0",
    )
    .counters;
    // On the wire: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + payload.
    assert_eq!(
        after.rx_packets - before.rx_packets,
        5,
        "the pod received the host's 5"
    );
    assert_eq!(after.rx_bytes - before.rx_bytes, 5 * (42 + 300));
    assert_eq!(after.tx_packets - before.tx_packets, 7, "the pod sent 7");
    assert_eq!(after.tx_bytes - before.tx_bytes, 7 * (42 + 100));
    assert_eq!(
        (after.rx_errors, after.tx_errors),
        (before.rx_errors, before.tx_errors)
    );
    assert_eq!(
        (after.rx_dropped, after.tx_dropped),
        (before.rx_dropped, before.tx_dropped)
    );
    // The pod's UDP counters (a new mapper reads them in its first cycle): the 5 datagrams its
    // socket received, the 7 it sent.
    let fresh = cycle(&mut InterfaceMapper::new(InterfacesConfig::default()));
    let udp_after = pod_at(&fresh, "/run/netns/nst-counters")
        .unwrap()
        .transport
        .clone()
        .expect("the pod's TCP/UDP counters are read");
    assert_eq!(
        udp_after.udp_datagrams_received - udp_before.udp_datagrams_received,
        5
    );
    assert_eq!(
        udp_after.udp_datagrams_sent - udp_before.udp_datagrams_sent,
        7
    );
    assert_eq!(
        udp_after.udp_no_port_datagrams,
        udp_before.udp_no_port_datagrams
    );
    // The host end saw the same traffic the other way round.
    assert_eq!(
        host_counter("lxcnstcnt0", "rx_bytes") - host_rx_before,
        7 * (42 + 100)
    );
    assert_eq!(
        host_counter("lxcnstcnt0", "tx_bytes") - host_tx_before,
        5 * (42 + 300)
    );
}

#[test]
fn changes_inside_a_known_namespace_are_seen_on_the_next_cycle() {
    let ns = Netns::new("nst-changes");
    let _l0 = veth("lxcnstchg0", "eth0", &ns.name);
    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let pods = cycle(&mut mapper);
    let p = pod_at(&pods, "/run/netns/nst-changes").expect("pod found");
    assert_eq!(p.interfaces.len(), 1);

    // A second interface, an address, a rename: all after the namespace's links were cached.
    let _l1 = veth("lxcnstchg1", "net1", &ns.name);
    ns.ip(&["addr", "add", "169.254.78.2/30", "dev", "eth0"]);
    ns.ip(&["link", "set", "net1", "down"]);
    ns.ip(&["link", "set", "net1", "name", "net9"]);
    let pods = cycle(&mut mapper);
    let p = pod_at(&pods, "/run/netns/nst-changes").expect("pod found");
    assert_eq!(peer_name(iface(p, "net9")), Some("lxcnstchg1"));
    assert!(
        iface(p, "eth0")
            .addresses
            .iter()
            .any(|a| a.to_string() == "169.254.78.2/30")
    );

    // The host end replaced by a new pair whose pod end gets the old name: a new peer.
    ip(&["link", "del", "lxcnstchg1"]);
    let _l2 = veth("lxcnstchg2", "net9", &ns.name);
    let pods = cycle(&mut mapper);
    let p = pod_at(&pods, "/run/netns/nst-changes").expect("pod found");
    assert_eq!(peer_name(iface(p, "net9")), Some("lxcnstchg2"));
    assert_eq!(p.interfaces.len(), 2);
}

#[test]
fn junk_in_a_netns_folder_is_skipped() {
    let ns = Netns::new("nst-junk");
    let _l = veth("lxcnstjunk0", "eth0", &ns.name);
    let dir = std::env::temp_dir().join(format!("nst-junk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a-folder")).unwrap();
    std::fs::write(dir.join("a-regular-file"), b"not a namespace").unwrap();
    std::os::unix::fs::symlink("/nonexistent/netns", dir.join("dangling")).unwrap();
    std::os::unix::fs::symlink(ns.path(), dir.join("link-to-real")).unwrap();

    let receiver = NetnsReceiver::new(NetnsConfig {
        paths: vec![dir.clone(), dir.join("missing-folder")],
        scan_proc: false,
        ..NetnsConfig::default()
    });
    let found = receiver.scan_blocking().expect("scan");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    let netns = found[0].netns.as_ref().unwrap();
    assert_eq!(netns.inode, inode("/run/netns/nst-junk"));
    assert_eq!(*netns.path, *dir.join("link-to-real"));
}

#[test]
fn a_namespace_deleted_between_its_opening_and_its_reading_is_reported_once_then_released() {
    let stays = Netns::new("nst-mid-a");
    let _la = veth("lxcnstmid0", "eth0", &stays.name);
    let goes = Netns::new("nst-mid-b");
    let _lb = veth("lxcnstmid1", "eth0", &goes.name);
    let goes_ino = inode("/run/netns/nst-mid-b");

    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    // Inside the cycle, after the mapper opened the new namespaces and before it dumps them
    // or asks their ids: the namespace is deleted (its bind mount, its only holder). From then
    // on only the mapper's socket keeps it alive.
    let goes = std::sync::Mutex::new(Some(goes));
    mapper.set_after_open(move || {
        if let Some(mut ns) = goes.lock().unwrap().take() {
            ns.delete();
        }
    });
    let pods = cycle(&mut mapper);
    let p = pod_at(&pods, "/run/netns/nst-mid-a").expect("the rest is reported");
    assert_eq!(peer_name(iface(p, "eth0")), Some("lxcnstmid0"));
    // Reading a namespace that is still alive through the socket is fine: it is reported as
    // it was at the scan, with its real peer, never with a wrong one.
    for pod in pods.iter().filter(|p| {
        p.sandbox
            .netns
            .as_ref()
            .is_some_and(|n| n.inode == goes_ino)
    }) {
        assert_eq!(peer_name(iface(pod, "eth0")), Some("lxcnstmid1"));
    }

    // The next scan no longer finds it: not reported, its socket closed, so the kernel frees
    // the namespace and its veth goes.
    let pods = cycle(&mut mapper);
    assert!(
        pods.iter()
            .all(|p| p.sandbox.netns.as_ref().is_none_or(|n| n.inode != goes_ino)),
        "no stale pod after one cycle"
    );
    assert!(
        wait_until(Duration::from_secs(15), || !host_link_exists("lxcnstmid1")),
        "the deleted namespace was released: its veth is gone"
    );
}

/// One receiver across scans, as the agent runs it: a folder's listing is reused until the
/// folder or the mount table changes, so namespaces mounted and unmounted between scans must
/// still show and go at once, and a symlink whose process died must go too.
#[test]
fn namespaces_come_and_go_between_scans_of_one_receiver() {
    let dir = TempDir::new("nst-scancache");
    let folder = dir.path("netns");
    std::fs::create_dir_all(&folder).unwrap();
    let receiver = NetnsReceiver::new(NetnsConfig {
        paths: vec![PathBuf::from("/run/netns"), folder.clone()],
        scan_proc: false,
        ..NetnsConfig::default()
    });
    let inodes = || -> Vec<u64> {
        receiver
            .scan_blocking()
            .expect("scan")
            .iter()
            .filter_map(|s| s.netns.as_ref().map(|n| n.inode))
            .collect()
    };
    let a = Netns::new("nst-scancache-a");
    let a_ino = inode("/run/netns/nst-scancache-a");
    assert!(inodes().contains(&a_ino));
    // Scanned again with nothing changed: the listing is reused, and still right.
    assert!(inodes().contains(&a_ino));

    let mut b = Netns::new("nst-scancache-b");
    let b_ino = inode("/run/netns/nst-scancache-b");
    let found = inodes();
    assert!(
        found.contains(&a_ino) && found.contains(&b_ino),
        "a new mount is seen"
    );
    b.delete();
    assert!(
        !inodes().contains(&b_ino),
        "an unmounted namespace is gone at once"
    );

    // A symlink to a process's namespace: no mount changes when the process exits.
    let holder = process_with_own_netns();
    let proc_path = format!("/proc/{}/ns/net", holder.pid());
    let held = inode(&proc_path);
    std::os::unix::fs::symlink(&proc_path, folder.join("held")).unwrap();
    assert!(inodes().contains(&held), "found through the symlink");
    drop(holder); // killed and reaped
    assert!(
        !inodes().contains(&held),
        "the symlink's namespace is gone on the next scan once its process is"
    );
    drop(a);
}

/// Peers are named from the pod's side by index; a host end renamed later (the host notifies
/// a link change) is seen by its new name on the next cycle of the same mapper.
#[test]
fn a_host_end_renamed_is_seen_by_its_new_name_on_the_next_cycle() {
    let ns = Netns::new("nst-rename");
    let mut link = veth("lxcnstren0", "eth0", &ns.name);
    ip_quiet(&["link", "del", "lxcnstren1"]);
    // The pod end down, and the host end brought down before the first cycle: the rename is
    // then a change in the host alone (no carrier change reaches the pod), so only the host's
    // notification can tell the mapper.
    ns.ip(&["link", "set", "eth0", "down"]);
    ip(&["link", "set", "lxcnstren0", "down"]);
    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let pods = cycle(&mut mapper);
    let eth0 = iface(pod_at(&pods, "/run/netns/nst-rename").unwrap(), "eth0").clone();
    assert_eq!(peer_name(&eth0), Some("lxcnstren0"));

    ip(&["link", "set", "lxcnstren0", "name", "lxcnstren1"]);
    link.name = "lxcnstren1".into();
    let pods = cycle(&mut mapper);
    let renamed = iface(pod_at(&pods, "/run/netns/nst-rename").unwrap(), "eth0");
    assert_eq!(peer_name(renamed), Some("lxcnstren1"));
    assert_eq!(
        renamed.peer.as_ref().unwrap().ifindex,
        host_ifindex("lxcnstren1")
    );
    assert_eq!(
        renamed.peer.as_ref().unwrap().ifindex,
        eth0.peer.as_ref().unwrap().ifindex
    );
}
