//! The runtime's container events drive cycles: with `collection_interval: 30s`, a pod the runtime
//! starts listing reaches `/metrics` soon after the runtime's event, and leaves it soon after the
//! event of its removal, with no kernel event involved (its namespace and veth exist before and
//! after).
//!
//! The runtime is fake (`support/fake_cri.rs`): no runtime here streams container events
//! (Debian's containerd 1.6 answers `Unimplemented`, see `tests/cri_containerd.rs`). The agent
//! binary, its CRI client, the namespace and the veth are real.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::time::Duration;

use netshim::receivers::cri::proto::ContainerEventType;
use support::agent::Agent;
use support::fake_cri::{FakeCri, FakePod};
use support::*;

#[test]
fn runtime_events_bring_pods_in_and_out_within_a_second_with_a_30s_interval() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = TempDir::new("nst-crie");
    let runtime = rt.block_on(FakeCri::start(&dir.path("cri.sock")));

    let socket = runtime.socket.display().to_string();
    let agent = Agent::start(
        Path::new(env!("CARGO_BIN_EXE_netshim")),
        "nst-crie-agent",
        |port| {
            format!(
                "receivers:\n  cri:\n    endpoint: unix://{socket}\n    collection_interval: 30s\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\nservice:\n  pipelines:\n    metrics:\n      receivers: [cri]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n"
            )
        },
    );
    let cycles = || agent.value("netshim_cycles_total").unwrap_or(0.0);
    assert!(
        agent
            .wait_for(Duration::from_secs(10), |_| cycles() >= 1.0
                && runtime.subscribers() == 1)
            .is_some(),
        "the agent ran its first cycle and subscribed to the runtime's events"
    );

    // The pod's namespace and veth come first, while the runtime does not list it yet: the
    // link events make a cycle, which must not report it.
    let ns = Netns::new("nst-crie");
    let _link = quiet_veth(&ns, "lxcnstcrie0", 41);
    let label = "host_interface=\"lxcnstcrie0\"";
    let before = cycles();
    assert!(
        agent
            .wait_for(Duration::from_secs(5), |_| cycles() > before)
            .is_some(),
        "the host link events made a cycle"
    );
    // A scan an event started is followed by one more a second later (for runtimes that list a
    // sandbox after its network exists and send no event): let it pass before the control.
    // The host end's operstate turns up with the kernel's last link event for the pair. The
    // scans those events start come right after them and after each other; the follow-up comes
    // a second after the last of them. So the follow-up is the first list call after that
    // moment that trails the one before by over half a second. No /metrics document read until
    // then may have the pod.
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            "/sys/class/net/lxcnstcrie0/operstate"
        )
        .is_ok_and(|s| s.trim() == "up")),
        "the host end came up"
    );
    let up = std::time::Instant::now();
    let follow_up = || {
        let times = runtime.list_times();
        times
            .windows(2)
            .any(|w| w[1] > up && w[1] - w[0] > Duration::from_millis(500))
    };
    let mut listed_early = false;
    let followed = agent.wait_for(Duration::from_secs(3), |m| {
        listed_early |= m.contains(label);
        follow_up()
    });
    assert!(!listed_early, "not listed by the runtime");
    assert!(
        followed.is_some(),
        "the follow-up scan a second after the event's: lists at {:?}, up at {up:?}",
        runtime.list_times()
    );
    assert!(!agent.metrics().contains(label), "still not listed");

    // Listed, but no event: nothing may change before the interval (the control).
    let pod = FakePod {
        id: "sandbox-crie-1".into(),
        name: "events-0".into(),
        namespace: "shop".into(),
        uid: "55555555-0000-4000-8000-000000000001".into(),
        netns: ns.path(),
    };
    let lists = runtime.lists();
    runtime.add(pod.clone());
    // The control lasts as long as the agent says: the runtime ends its event stream twice, and
    // the agent subscribes again each time after its reconnect backoff (0.5 s, then 1 s), which
    // makes no scan.
    for round in 1..=2 {
        let subscribed = runtime.subscriptions();
        runtime.close_event_streams();
        assert!(
            wait_until(Duration::from_secs(5), || runtime.subscriptions()
                > subscribed
                && runtime.subscribers() == 1),
            "the agent subscribed again after the runtime ended its event stream (round {round})"
        );
    }
    // No list call since the runtime began listing the pod: no snapshot can have it.
    if runtime.lists() == lists {
        assert!(
            !agent.metrics().contains(label),
            "without an event the pod waits for the 30 s interval"
        );
    } else {
        // Someone else changed the host's links meanwhile (another test on this machine), which
        // rightly made a scan: the control says nothing then.
        eprintln!("cri events: control skipped, a host link event made a cycle");
        runtime.remove(&pod.id);
        runtime.event(&pod.id, ContainerEventType::ContainerDeletedEvent);
        assert!(
            agent
                .wait_for(Duration::from_secs(3), |m| !m.contains(label))
                .is_some()
        );
        runtime.add(pod.clone());
    }

    assert_eq!(
        runtime.event(&pod.id, ContainerEventType::ContainerStartedEvent),
        1
    );
    let appeared = agent
        .wait_for(Duration::from_secs(3), |m| {
            m.contains(label) && m.contains("pod=\"events-0\"")
        })
        .expect("the pod reached /metrics soon after the runtime's event");

    runtime.remove(&pod.id);
    runtime.event(&pod.id, ContainerEventType::ContainerDeletedEvent);
    let gone = agent
        .wait_for(Duration::from_secs(3), |m| !m.contains(label))
        .expect("the pod left /metrics soon after the runtime's event");
    eprintln!("cri events: in after {appeared:?}, out after {gone:?} (collection_interval 30s)");
    drop(agent);
    drop(runtime);
}
