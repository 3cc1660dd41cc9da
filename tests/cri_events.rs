//! The runtime's container events drive cycles: with `collection_interval: 30s`, a pod the runtime
//! starts listing reaches `/metrics` soon after the runtime's event, and leaves it soon after the
//! event of its removal, with no kernel event involved (its namespace and veth exist before and
//! after).
//!
//! The runtime is fake (`support/fake_cri.rs`): no runtime here streams container events
//! (Debian's containerd 1.6 answers `Unimplemented`, see `tests/cri_containerd.rs`). The agent
//! binary, its CRI client, the namespace and the veth are real.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netshim::receivers::cri::proto::ContainerEventType;
use support::fake_cri::{FakeCri, FakePod};
use support::*;

fn metrics(port: u16) -> String {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    let Ok(mut resp) = agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
    else {
        return String::new();
    };
    let mut body = String::new();
    let _ = resp.body_mut().as_reader().read_to_string(&mut body);
    body
}

fn cycles(port: u16) -> u64 {
    metrics(port)
        .lines()
        .find_map(|l| l.strip_prefix("netshim_cycles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls every 20 ms; returns how long `cond` took to hold.
fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn runtime_events_bring_pods_in_and_out_within_a_second_with_a_30s_interval() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("nst-crie-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = rt.block_on(FakeCri::start(&dir.join("cri.sock")));

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  cri:\n    endpoint: unix://{}\n    collection_interval: 30s\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [cri]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n",
            runtime.socket.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_netshim"))
        .args(["run", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Process { child };
    assert!(
        time_until(Duration::from_secs(10), || cycles(port) >= 1
            && runtime.subscribers() == 1)
        .is_some(),
        "the agent ran its first cycle and subscribed to the runtime's events"
    );

    // The pod's namespace and veth come first, while the runtime does not list it yet: the
    // link events make a cycle, which must not report it.
    let ns = Netns::new("nst-crie");
    let _link = quiet_veth(&ns, "lxcnstcrie0", 41);
    let label = "host_interface=\"lxcnstcrie0\"";
    let before = cycles(port);
    assert!(
        time_until(Duration::from_secs(5), || cycles(port) > before).is_some(),
        "the host link events made a cycle"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!metrics(port).contains(label), "not listed by the runtime");

    // Listed, but no event: nothing may change before the interval (the control).
    let pod = FakePod {
        id: "sandbox-crie-1".into(),
        name: "events-0".into(),
        namespace: "shop".into(),
        uid: "55555555-0000-4000-8000-000000000001".into(),
        netns: ns.path(),
    };
    runtime.add(pod.clone());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !metrics(port).contains(label),
        "without an event the pod waits for the 30 s interval"
    );

    assert_eq!(
        runtime.event(&pod.id, ContainerEventType::ContainerStartedEvent),
        1
    );
    let appeared = time_until(Duration::from_secs(3), || {
        let m = metrics(port);
        m.contains(label) && m.contains("pod=\"events-0\"")
    })
    .expect("the pod reached /metrics soon after the runtime's event");

    runtime.remove(&pod.id);
    runtime.event(&pod.id, ContainerEventType::ContainerDeletedEvent);
    let gone = time_until(Duration::from_secs(3), || !metrics(port).contains(label))
        .expect("the pod left /metrics soon after the runtime's event");
    eprintln!("cri events: in after {appeared:?}, out after {gone:?} (collection_interval 30s)");
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
