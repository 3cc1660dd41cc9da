//! Every pod network topology a CNI makes, built on the running kernel and mapped by the shipped
//! binary (`netshim discover --output json`), each with the mapping it must give. The kernel
//! matrix (`scripts/kernel-matrix.sh`) runs this file inside Debian's 5.10, 6.1 and 6.12 kernels;
//! on the host it runs on whatever kernel the machine has.
//!
//! A link type the kernel lacks (this machine's 6.18 has no ipvlan nor vlan, 6.1 and older no
//! netkit)
//! makes its topology say SKIPPED, unless `NETSHIM_REQUIRE_KINDS` (comma-separated, e.g.
//! `ipvlan,netkit`) names it: then it fails. `NETSHIM_EXPECT_EQUAL_INDEX_LINK=omitted|present`
//! makes the test prove what the kernel sends as `IFLA_LINK` for a veth whose two ends have the
//! same index (5.10 omits it; later kernels send it since "rtnetlink: always put IFLA_LINK for
//! links with ndo_get_iflink").
//!
//! Names: namespaces `ntp-…`, host links `ntp…`; everything is removed on drop, also on failure.
//! No traffic is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::fd::AsRawFd;
use std::process::Command;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoNetkit, LinkAttribute, LinkInfo, LinkMessage, NetkitMode,
};
use netshim::sys::netlink::{RouteSocket, Watch};
use serde_json::Value;
use support::*;

/// Runs `ip ARGS…`; the error text when it fails.
fn try_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().expect("run ip");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether a link type must exist on this kernel (the matrix says so per kernel).
fn required(kind: &str) -> bool {
    std::env::var("NETSHIM_REQUIRE_KINDS")
        .unwrap_or_default()
        .split(',')
        .any(|k| k.trim() == kind)
}

/// Creating a link of `kind` failed: a skip when the kernel may lack it, else a failure.
fn unsupported(kind: &str, why: &str) {
    assert!(
        !required(kind),
        "{kind} is required on this kernel but could not be made: {why}"
    );
    println!("topology {kind}: SKIPPED (this kernel cannot make it: {why})");
}

/// Creates a netkit pair over rtnetlink (Debian 12's iproute2 cannot): `host` in this
/// namespace, `pod` in `netns`, L2 mode. `Err` with the kernel's error.
fn netkit(host: &str, pod: &str, netns: &Netns) -> Result<HostLink, String> {
    let ns_file = std::fs::File::open(netns.path()).expect("open the pod's netns file");
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(pod.into()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(ns_file.as_raw_fd()));
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(host.into()));
    link.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Netkit),
        LinkInfo::Data(InfoData::Netkit(vec![
            InfoNetkit::Mode(NetkitMode::L2),
            InfoNetkit::Peer(peer),
        ])),
    ]));
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewLink(link));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    request.finalize();
    let mut bytes = vec![0; request.header.length as usize];
    request.serialize(&mut bytes);

    let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).unwrap();
    socket.bind_auto().unwrap();
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).unwrap();
    socket.send(&bytes, 0).unwrap();
    let (reply, _) = socket.recv_from_full().unwrap();
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply).unwrap();
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_string()),
        _ => Ok(HostLink { name: host.into() }),
    }
}

/// `netshim discover --output json`, as shipped.
fn discover_json() -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .args(["discover", "--output", "json"])
        .output()
        .expect("run netshim discover");
    assert!(
        out.status.success(),
        "netshim discover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("discover prints JSON");
    doc["pods"].as_array().expect("a pods list").clone()
}

/// The pod whose namespace is `/run/netns/NAME`.
fn pod<'a>(pods: &'a [Value], ns: &Netns) -> &'a Value {
    let path = ns.path().display().to_string();
    pods.iter()
        .find(|p| p["netns"]["path"] == path.as_str())
        .unwrap_or_else(|| panic!("no pod at {path} in {pods:#?}"))
}

/// The pod's interface named `name`.
fn iface<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no interface {name} in {pod:#}"))
}

/// Asserts the interface's kind and host peer (`None`: it must have none).
fn expect(pod: &Value, name: &str, kind: &str, peer: Option<(&str, &str)>) {
    let i = iface(pod, name);
    assert_eq!(i["kind"], kind, "{name}: {i:#}");
    match peer {
        Some((peer_name, peer_kind)) => {
            assert_eq!(i["peer"]["name"], peer_name, "{name}: {i:#}");
            assert_eq!(i["peer"]["kind"], peer_kind, "{name}: {i:#}");
            assert_eq!(
                i["peer"]["ifindex"].as_u64(),
                Some(host_ifindex(peer_name) as u64),
                "{name}: {i:#}"
            );
        }
        None => assert!(i["peer"].is_null(), "{name} must have no host peer: {i:#}"),
    }
}

#[test]
fn every_topology_is_mapped_as_the_kernel_made_it() {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    println!("kernel {}", kernel.trim());

    // A veth pod, as every CNI makes it.
    let plain = Netns::new("ntp-veth");
    let _plain = veth("ntpveth", "eth0", &plain.name);

    // A second veth per pod (Multus-like `net1`).
    let multi = Netns::new("ntp-multi");
    let _m0 = veth("ntpmulti0", "eth0", &multi.name);
    let _m1 = veth("ntpmulti1", "net1", &multi.name);

    // A veth with both ends inside one pod.
    let inner = Netns::new("ntp-inner");
    inner.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);

    // Pod to pod, no host end.
    let (pa, pb) = (Netns::new("ntp-p2pa"), Netns::new("ntp-p2pb"));
    ip(&[
        "link", "add", "ntpp2pa", "netns", &pa.name, "type", "veth", "peer", "name", "ntpp2pb",
        "netns", &pb.name,
    ]);
    pa.ip(&["link", "set", "ntpp2pa", "name", "eth0"]);
    pb.ip(&["link", "set", "ntpp2pb", "name", "eth0"]);

    // A vlan on a pod's veth.
    let vlan = Netns::new("ntp-vlan");
    let _v = veth("ntpvlan", "eth0", &vlan.name);
    let has_vlan = match try_ip(&[
        "-n", &vlan.name, "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id",
        "10",
    ]) {
        Ok(()) => true,
        Err(why) => {
            unsupported("vlan", &why);
            false
        }
    };

    // An IPv6-only pod.
    let v6 = Netns::new("ntp-v6");
    let _v6 = veth("ntpv6", "eth0", &v6.name);
    v6.ip(&["addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad"]);

    // macvlan, ipvlan L2 and L3: each lower device is the host end of a host-only veth pair
    // (this machine's kernel has no dummy), macvlan and ipvlan on different ones.
    let lower_mv = HostLink {
        name: "ntpmvlow".into(),
    };
    ip(&[
        "link",
        "add",
        "ntpmvlow",
        "type",
        "veth",
        "peer",
        "name",
        "ntpmvlow1",
    ]);
    let lower_ipv = HostLink {
        name: "ntpipvlow".into(),
    };
    ip(&[
        "link",
        "add",
        "ntpipvlow",
        "type",
        "veth",
        "peer",
        "name",
        "ntpipvlow1",
    ]);
    let macv = Netns::new("ntp-macv");
    ip(&[
        "link", "add", "ntpmv", "link", "ntpmvlow", "type", "macvlan", "mode", "bridge",
    ]);
    ip(&["link", "set", "ntpmv", "netns", &macv.name]);
    macv.ip(&["link", "set", "ntpmv", "name", "eth0"]);
    let ipvlans: Vec<(Netns, &str)> = ["l2", "l3"]
        .into_iter()
        .filter_map(|mode| {
            let name = format!("ntpipv{mode}");
            let made = try_ip(&[
                "link",
                "add",
                &name,
                "link",
                "ntpipvlow",
                "type",
                "ipvlan",
                "mode",
                mode,
            ]);
            match made {
                Ok(()) => {
                    let ns = Netns::new(&format!("ntp-ipv{mode}"));
                    ip(&["link", "set", &name, "netns", &ns.name]);
                    ns.ip(&["link", "set", &name, "name", "eth0"]);
                    Some((ns, mode))
                }
                Err(why) => {
                    unsupported("ipvlan", &why);
                    None
                }
            }
        })
        .collect();

    // netkit: a pair like veth, made over rtnetlink.
    let nk_ns = Netns::new("ntp-netkit");
    let nk = match netkit("ntpnk", "nk0", &nk_ns) {
        Ok(link) => Some(link),
        Err(why) => {
            unsupported("netkit", &why);
            None
        }
    };

    // Both ends with the same index.
    let same = Netns::new("ntp-same");
    let idx = free_host_ifindex(8000).to_string();
    ip(&[
        "link", "add", "ntpsame", "index", &idx, "type", "veth", "peer", "name", "eth0", "index",
        &idx, "netns", &same.name,
    ]);
    let _same = HostLink {
        name: "ntpsame".into(),
    };
    let host_end = RouteSocket::open(Watch::Nothing)
        .unwrap()
        .dump_links()
        .unwrap()
        .into_iter()
        .find(|l| l.name == "ntpsame")
        .expect("host end listed");
    let link = match host_end.link {
        None => "omitted",
        Some(i) if i.to_string() == idx => "present",
        Some(other) => panic!("IFLA_LINK {other} for a pair whose ends both have index {idx}"),
    };
    println!("equal indexes: IFLA_LINK {link}");
    if let Ok(expected) = std::env::var("NETSHIM_EXPECT_EQUAL_INDEX_LINK") {
        assert_eq!(link, expected, "this kernel's IFLA_LINK for equal indexes");
    }

    let pods = discover_json();

    expect(
        pod(&pods, &plain),
        "eth0",
        "veth",
        Some(("ntpveth", "veth")),
    );
    println!("topology veth: ok");
    let m = pod(&pods, &multi);
    expect(m, "eth0", "veth", Some(("ntpmulti0", "veth")));
    expect(m, "net1", "veth", Some(("ntpmulti1", "veth")));
    println!("topology second veth (net1): ok");
    let i = pod(&pods, &inner);
    expect(i, "va", "veth", None);
    expect(i, "vb", "veth", None);
    println!("topology veth inside one pod: ok");
    expect(pod(&pods, &pa), "eth0", "veth", None);
    expect(pod(&pods, &pb), "eth0", "veth", None);
    println!("topology pod-to-pod veth: ok");
    let v = pod(&pods, &vlan);
    expect(v, "eth0", "veth", Some(("ntpvlan", "veth")));
    if has_vlan {
        expect(v, "eth0.10", "vlan", None);
        println!("topology vlan on a pod's veth: ok");
    }
    let six = pod(&pods, &v6);
    expect(six, "eth0", "veth", Some(("ntpv6", "veth")));
    let addresses = &iface(six, "eth0")["addresses"];
    assert!(
        addresses.to_string().contains("2001:db8:ffff::2"),
        "{addresses}"
    );
    assert!(!addresses.to_string().contains('.'), "no IPv4: {addresses}");
    println!("topology IPv6-only pod: ok");
    expect(pod(&pods, &macv), "eth0", "macvlan", None);
    println!("topology macvlan: ok");
    for (ns, mode) in &ipvlans {
        expect(pod(&pods, ns), "eth0", "ipvlan", None);
        println!("topology ipvlan {mode}: ok");
    }
    if nk.is_some() {
        expect(
            pod(&pods, &nk_ns),
            "nk0",
            "netkit",
            Some(("ntpnk", "netkit")),
        );
        println!("topology netkit: ok");
    }
    let s = pod(&pods, &same);
    expect(s, "eth0", "veth", Some(("ntpsame", "veth")));
    assert_eq!(iface(s, "eth0")["ifindex"].to_string(), idx);
    println!("topology equal indexes: ok");

    // Lower devices go after the namespaces holding their macvlan and ipvlans.
    drop((macv, ipvlans, lower_mv, lower_ipv));
}
