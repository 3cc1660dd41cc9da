//! Per-pod TCP and UDP counters on the real kernel, with real traffic: the agent binary scrapes
//! pods made here, and every value it publishes must equal what the pod's own `/proc/net/snmp`
//! and `/proc/net/netstat` say (read by a `cat` run inside the pod). Needs root and python3.
//!
//! Each pod is a namespace with one quiet veth (static neighbours, no IPv6): only this test's
//! packets cross it, all between the pair's two addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use netshim::model::{Batch, TRANSPORT_FIELDS};
use netshim::receivers::netns::{Config as NetnsConfig, NetnsReceiver};
use netshim::resolvers::interfaces::{Config as InterfacesConfig, InterfaceMapper};
use support::agent::{Agent, sample_with};
use support::*;

/// The agent's value of every transport counter of the pod at `netns`, by kernel name.
fn agent_values(text: &str, netns: &str) -> BTreeMap<String, u64> {
    let label = format!("netns=\"{netns}\"");
    TRANSPORT_FIELDS
        .iter()
        .filter_map(|f| {
            let name = netshim::exporters::prometheus::transport_name(f);
            let v = sample_with(text, &name, &[label.as_str()])?;
            Some((f.kernel.to_string(), v as u64))
        })
        .collect()
}

/// What the pod's own files say for every published counter.
fn expected(ns: &Netns) -> BTreeMap<String, u64> {
    let mib = pod_mib(ns);
    TRANSPORT_FIELDS
        .iter()
        .map(|f| (f.kernel.to_string(), mib[f.kernel]))
        .collect()
}

/// Waits until the agent publishes exactly the pod's own values (the agent reads them every
/// second; the pod's must have stopped changing), and returns them.
fn agent_agrees(agent: &Agent, ns: &Netns) -> BTreeMap<String, u64> {
    let netns = format!("/run/netns/{}", ns.name);
    let mut last = (BTreeMap::new(), BTreeMap::new());
    let agreed = wait_until(Duration::from_secs(15), || {
        let want = expected(ns);
        let got = agent_values(&agent.metrics(), &netns);
        let same = got == want;
        last = (want, got);
        same
    });
    assert!(
        agreed,
        "{}: the agent's values never equalled the pod's\npod:   {:?}\nagent: {:?}\n{}",
        ns.name,
        last.0,
        last.1,
        agent.stderr()
    );
    last.0
}

/// A python script run inside a pod, its stdin held by the test, stopped by pid on drop.
fn in_pod(
    ns: &Netns,
    script: &str,
) -> (
    Process,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "/usr/bin/python3",
            "-u",
            "-c",
            script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the pod");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (Process { child }, lines)
}

/// Connects to the host end, says `connected`, then on each stdin line sends 1000 bytes. The
/// socket lingers 0: when the process is killed the connection is aborted at once (no orphan
/// retransmitting after the test).
const TCP_CLIENT: &str = r#"
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.connect((sys.argv[1] if len(sys.argv) > 1 else "169.254.61.1", 9100))
print("connected")
for line in sys.stdin:
    s.send(b"r" * 1000)
    print("sent")
"#;

/// Listens with the smallest backlog and never accepts.
const NEVER_ACCEPTS: &str = r#"
import socket, sys, time
s = socket.socket()
s.bind(("169.254.62.2", 9200))
s.listen(0)
print("listening")
sys.stdin.read()
"#;

fn agent_config(port: u16) -> String {
    format!(
        "receivers:\n  netns:\n    collection_interval: 300ms\n    scan_proc: false\nresolvers:\n  interfaces:\n    transport:\n      interval: 1s\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n"
    )
}

#[test]
fn tcp_and_udp_counters_per_pod_equal_the_pods_own() {
    let quiet = Netns::new("nst-tr-quiet");
    let _lq = quiet_veth(&quiet, "lxcnsttrq0", 64);
    let retrans = Netns::new("nst-tr-retr");
    let _lr = quiet_veth(&retrans, "lxcnsttrr0", 61);
    let backlog = Netns::new("nst-tr-back");
    let _lb = quiet_veth(&backlog, "lxcnsttrb0", 62);
    let noport = Netns::new("nst-tr-udp");
    let _lu = quiet_veth(&noport, "lxcnsttru0", 63);

    let agent = Agent::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_netshim")),
        "nst-tr",
        agent_config,
    );
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |m| m
                .contains("netns=\"/run/netns/nst-tr-quiet\""))
            .is_some(),
        "the pods appear: {}",
        agent.stderr()
    );

    // A quiet pod: every counter is 0, and published as 0.
    let quiet_values = agent_agrees(&agent, &quiet);
    assert!(
        quiet_values.values().all(|v| *v == 0),
        "a quiet pod counts nothing: {quiet_values:?}"
    );
    assert_eq!(quiet_values.len(), TRANSPORT_FIELDS.len());

    // UDP to a closed port: the pod counts each datagram under NoPorts.
    let udp = UdpSocket::bind("169.254.63.1:0").unwrap();
    for _ in 0..5 {
        udp.send_to(b"nobody", "169.254.63.2:9").unwrap();
    }
    let v = agent_agrees(&agent, &noport);
    assert_eq!(v["Udp: NoPorts"], 5, "{v:?}");

    // A listener that never accepts, with a backlog of 0: connections beyond the first
    // overflow its accept queue.
    let (_listener, mut lines) = in_pod(&backlog, NEVER_ACCEPTS);
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    let target: SocketAddr = "169.254.62.2:9200".parse().unwrap();
    let _held: Vec<_> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&target, Duration::from_millis(300)).ok())
        .collect();
    assert!(
        wait_until(
            Duration::from_secs(10),
            || pod_mib(&backlog)["TcpExt: ListenOverflows"] > 0
        ),
        "the listener overflowed: {:?}",
        pod_mib(&backlog)
    );

    // A connection whose peer vanishes: the pod retransmits until the process is killed
    // (linger 0 aborts the connection then), and its timeouts count.
    let server = TcpListener::bind("169.254.61.1:9100").unwrap();
    let (mut client, mut client_lines) = in_pod(&retrans, TCP_CLIENT);
    assert_eq!(client_lines.next().unwrap().unwrap(), "connected");
    let (_accepted, _) = server.accept().unwrap();
    let netns = "/run/netns/nst-tr-retr";
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |m| {
                agent_values(m, netns).get("Tcp: CurrEstab") == Some(&1)
            })
            .is_some(),
        "one established connection is published"
    );
    ip(&["link", "set", "lxcnsttrr0", "down"]);
    let stdin = client.child.stdin.as_mut().unwrap();
    writeln!(stdin, "send").unwrap();
    assert_eq!(client_lines.next().unwrap().unwrap(), "sent");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = pod_mib(&retrans);
            m["Tcp: RetransSegs"] >= 2 && m["TcpExt: TCPTimeouts"] >= 2
        }),
        "the pod retransmitted: {:?}",
        pod_mib(&retrans)
    );
    client.child.kill().unwrap();
    client.child.wait().unwrap();
    let v = agent_agrees(&agent, &retrans);
    assert!(
        v["Tcp: RetransSegs"] >= 2 && v["Tcp: ActiveOpens"] == 1,
        "{v:?}"
    );
    assert_eq!(v["Tcp: CurrEstab"], 0, "aborted: {v:?}");

    let v = agent_agrees(&agent, &backlog);
    assert!(
        v["TcpExt: ListenOverflows"] > 0 && v["TcpExt: ListenDrops"] > 0,
        "{v:?}"
    );
    // The others did not move.
    assert!(agent_agrees(&agent, &quiet).values().all(|v| *v == 0));
    assert_eq!(agent_agrees(&agent, &noport)["Udp: NoPorts"], 5);
}

/// A namespace whose counter files cannot be opened: the pod is reported all the same, with
/// its interfaces and without TCP/UDP counters.
#[test]
fn a_pod_whose_counters_cannot_be_read_is_reported_without_them() {
    let ns = Netns::new("nst-tr-nofiles");
    let _l = quiet_veth(&ns, "lxcnsttrn0", 65);
    let cycle = |mapper: &mut InterfaceMapper| {
        let receiver = NetnsReceiver::new(NetnsConfig {
            scan_proc: false,
            ..NetnsConfig::default()
        });
        let mut batch = Batch::from_sandboxes(&receiver.scan_blocking().expect("scan"));
        mapper.resolve(&mut batch).expect("resolve");
        batch
            .pods
            .into_iter()
            .find(|p| {
                p.sandbox
                    .netns
                    .as_ref()
                    .is_some_and(|n| *n.path == *ns.path())
            })
            .expect("the pod is reported")
    };

    let mut mapper = InterfaceMapper::new(InterfacesConfig::default());
    let pod = cycle(&mut mapper);
    assert!(pod.transport.is_some(), "read by default");

    let mut broken = InterfaceMapper::new(InterfacesConfig::default());
    broken.set_mib_dir("/nonexistent-nst-tr");
    for _ in 0..2 {
        let pod = cycle(&mut broken);
        assert_eq!(pod.interfaces.len(), 1, "{pod:?}");
        assert!(pod.transport.is_none(), "{pod:?}");
    }

    let mut off = InterfacesConfig::default();
    off.transport.enabled = false;
    let pod = cycle(&mut InterfaceMapper::new(off));
    assert!(pod.transport.is_none());
}

/// The `filter` resolver in the running agent: an interface it excludes and the TCP/UDP
/// counters it drops are never rendered, the rest is.
#[test]
fn filtered_series_are_never_rendered() {
    let ns = Netns::new("nst-tr-filter");
    let _l = quiet_veth(&ns, "lxcnsttrf0", 66);
    let _second = veth("lxcnsttrf1", "net1", &ns.name);
    let agent = Agent::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_netshim")),
        "nst-tr-filter",
        |port| {
            format!(
                "receivers:\n  netns:\n    collection_interval: 300ms\n    scan_proc: false\nresolvers:\n  interfaces:\n  filter:\n    exclude:\n      match_type: regexp\n      interface_names: ['^net[0-9]+$']\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [netns]\n      resolvers: [interfaces, filter]\n      exporters: [prometheus]\n"
            )
        },
    );
    let label = "netns=\"/run/netns/nst-tr-filter\"";
    let text = agent
        .wait_for(Duration::from_secs(10), |m| m.contains(label))
        .map(|_| agent.metrics())
        .unwrap_or_else(|| panic!("the pod appears: {}", agent.stderr()));
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(label)).collect();
    assert!(
        ours.iter().any(|l| l.contains("interface=\"eth0\"")),
        "eth0 stays: {ours:#?}"
    );
    assert!(
        !ours.iter().any(|l| l.contains("interface=\"net1\"")),
        "net1 is filtered out: {ours:#?}"
    );
    assert!(
        ours.iter().any(|l| l.starts_with("netshim_pod_tcp_")),
        "the pod's TCP counters stay: {ours:#?}"
    );
}
