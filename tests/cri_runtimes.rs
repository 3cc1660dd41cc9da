//! The runtime's container events (`GetContainerEvents`) on every containerd a cluster runs:
//! Debian 12's 1.6, trixie's 1.7 and sid's 2.x, real binaries unpacked by
//! `scripts/containerd-versions.sh` and named by `NETSHIM_CONTAINERD_VERSIONS` (run by
//! `scripts/test.sh`; skipped without it unless `NETSHIM_REQUIRE_CRI=1`).
//!
//! For each version, on its own containerd, bridge and subnet:
//! 1. what the stream sends for a sandbox's life (RunPodSandbox, StopPodSandbox,
//!    RemovePodSandbox), read by a subscription of the test's own, and that the `cri` receiver
//!    counts each of those events and calls its trigger for each (1.7's DELETED has no status);
//! 2. freshness with `collection_interval: 30s`: from RunPodSandbox returning to the pod's
//!    interfaces on `/metrics`, and from the StopPodSandbox call to them being gone.
//!
//! The figure must be the CRI event's. Host link events (the pod's veth appearing or going)
//! would trigger cycles too, and no setting turns them off; so the measured agent runs in a
//! network namespace of its own (reached over a veth of the test's), where no link changes, with
//! only the `cri` receiver (no netns-folder watch). Its only early trigger left is the runtime's
//! stream, which containerd 1.6 lacks: there, the same agent must not see the new pod within a
//! few seconds, the control that proves nothing else moved it. An agent in the host namespace,
//! as deployed, is measured beside it (every trigger); it also gives the pods their host peers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netshim::receivers::cri::events::StreamEnd;
use netshim::receivers::cri::proto::{
    ContainerEventResponse, ContainerEventType, GetEventsRequest, PodSandboxState,
};
use netshim::receivers::cri::{Config as CriConfig, CriReceiver, Endpoint};
use support::agent::Agent;
use support::containerd::{Cni, Containerd, Runtime, assets, versions};
use support::*;

const BRIDGES: [&str; 4] = ["nstrtbr0", "nstrtbr1", "nstrtbr2", "nstrtbr3"];
const SUBNETS: [&str; 4] = [
    "169.254.240.0/24",
    "169.254.241.0/24",
    "169.254.242.0/24",
    "169.254.243.0/24",
];
/// The isolated agent's link: host 169.254.244.1, agent 169.254.244.2.
const AGENT_NET: u8 = 244;
const AGENT_PORT: u16 = 9464;

/// One event as the test's own subscription saw it.
#[derive(Debug, Clone)]
struct Seen {
    kind: ContainerEventType,
    id: String,
    /// `Some(state)` when the event carried a `pod_sandbox_status`.
    status: Option<PodSandboxState>,
}

impl Seen {
    fn from(e: &ContainerEventResponse) -> Self {
        Seen {
            kind: ContainerEventType::try_from(e.container_event_type)
                .unwrap_or(ContainerEventType::ContainerCreatedEvent),
            id: e.container_id.clone(),
            status: e.pod_sandbox_status.as_ref().map(|s| {
                PodSandboxState::try_from(s.state).unwrap_or(PodSandboxState::SandboxNotready)
            }),
        }
    }

    fn describe(&self) -> String {
        let kind = match self.kind {
            ContainerEventType::ContainerCreatedEvent => "CREATED",
            ContainerEventType::ContainerStartedEvent => "STARTED",
            ContainerEventType::ContainerStoppedEvent => "STOPPED",
            ContainerEventType::ContainerDeletedEvent => "DELETED",
        };
        match self.status {
            Some(PodSandboxState::SandboxReady) => format!("{kind}(status READY)"),
            Some(PodSandboxState::SandboxNotready) => format!("{kind}(status NOTREADY)"),
            None => format!("{kind}(no status)"),
        }
    }
}

/// The test's own subscription: every event, in order, on a channel.
struct Subscription {
    rx: tokio::sync::mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    async fn start(c: &Containerd) -> Self {
        let mut client = c.client().await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // The response (headers) may come only with the first event.
            let Ok(response) = client.get_container_events(GetEventsRequest {}).await else {
                return;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(event)) = stream.message().await {
                if tx.send(Seen::from(&event)).is_err() {
                    return;
                }
            }
        });
        Subscription { rx, task }
    }

    /// Events until one of `kind` for `id` (included), or what came within `limit`.
    async fn until(&mut self, id: &str, kind: ContainerEventType, limit: Duration) -> Vec<Seen> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            let last = e.id == id && e.kind == kind;
            seen.push(e);
            if last {
                break;
            }
        }
        seen
    }
}

impl Subscription {
    /// Every event that comes within `limit`.
    async fn within(&mut self, limit: Duration) -> Vec<Seen> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            seen.push(e);
        }
        seen
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_async(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn receiver(c: &Containerd) -> CriReceiver {
    CriReceiver::new(
        CriConfig {
            endpoint: format!("unix://{}", c.socket.display()),
            timeout: Duration::from_secs(2),
            ..CriConfig::default()
        },
        Endpoint::Socket(c.socket.clone()),
    )
}

fn has_events(r: &Runtime) -> bool {
    r.series() >= (1, 7)
}

/// A sandbox's life as the kubelet drives it: run, stop, remove. Its id.
async fn life(c: &Containerd, name: &str, uid: &str) -> String {
    let id = c.run_pod(name, "rt", uid, false).await;
    c.stop_pod(&id).await;
    c.remove_pod(&id).await;
    id
}

fn kinds(seen: &[Seen]) -> Vec<ContainerEventType> {
    seen.iter().map(|e| e.kind).collect()
}

fn describe(seen: &[Seen]) -> String {
    seen.iter()
        .map(Seen::describe)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Part 1: the sandbox's events as the runtime sends them, and the receiver's handling of them.
async fn lifecycle(c: &Containerd, tag: &str) -> String {
    use ContainerEventType::*;
    let version = c.runtime.version.clone();
    let r = Arc::new(receiver(c));
    if !has_events(&c.runtime) {
        let end = tokio::time::timeout(Duration::from_secs(5), r.follow_events_once(&|| {}))
            .await
            .expect("the subscription answers at once");
        assert!(
            matches!(end, StreamEnd::Unsupported(_)),
            "{version}: {end:?}"
        );
        return "Unimplemented (no event stream)".into();
    }
    let settle = Duration::from_millis(1500);

    // (a) The test's subscription alone: what a sandbox's life sends. A first life proves the
    // subscription is live (the stream's headers may come only with its first event).
    let mut sub = Subscription::start(c).await;
    let warm = life(c, &format!("warm-{tag}"), &uid(tag, 1)).await;
    let seen = sub
        .until(&warm, ContainerDeletedEvent, Duration::from_secs(10))
        .await;
    assert!(
        seen.iter()
            .any(|e| e.id == warm && e.kind == ContainerDeletedEvent),
        "{version}: no DELETED event for the first sandbox: {}",
        describe(&seen)
    );
    sub.within(Duration::from_millis(300)).await; // stragglers
    let id = life(c, &format!("life-{tag}"), &uid(tag, 2)).await;
    let seen = sub.within(settle).await;
    let sequence = describe(&seen);
    assert!(seen.iter().all(|e| e.id == id), "{version}: {seen:?}");
    // 1.7 and 2.x alike: the whole life of the sandbox, CREATED included.
    assert_eq!(
        kinds(&seen),
        [
            ContainerCreatedEvent,
            ContainerStartedEvent,
            ContainerStoppedEvent,
            ContainerDeletedEvent
        ],
        "{version}: {sequence}"
    );
    match c.runtime.series() {
        (1, _) => {
            // 1.7: DELETED without the sandbox's status (its record is gone).
            assert!(
                seen[..3].iter().all(|e| e.status.is_some()),
                "{version}: {sequence}"
            );
            assert!(seen[3].status.is_none(), "{version}: {sequence}");
        }
        _ => {
            // 2.x: each with the sandbox's status.
            assert!(
                seen.iter().all(|e| e.status.is_some()),
                "{version}: {sequence}"
            );
        }
    }
    let per_life = seen.len() as u64;

    // (b) Two subscribers at once: 2.x sends every event to each; 1.7 has one queue that all
    // subscribers read, so each event reaches only one of them.
    let mut other = Subscription::start(c).await;
    let warm = life(c, &format!("warm2-{tag}"), &uid(tag, 3)).await;
    let (a, b) = tokio::join!(sub.within(settle), other.within(settle));
    let deleted = |v: &[Seen]| {
        v.iter()
            .any(|e| e.id == warm && e.kind == ContainerDeletedEvent)
    };
    assert!(
        deleted(&a) || deleted(&b),
        "{version}: {} / {}",
        describe(&a),
        describe(&b)
    );
    let _ = life(c, &format!("life2-{tag}"), &uid(tag, 4)).await;
    let (a, b) = tokio::join!(sub.within(settle), other.within(settle));
    let shared = match c.runtime.series() {
        (1, _) => {
            assert_eq!(
                (a.len() + b.len()) as u64,
                per_life,
                "{version}: each event to one subscriber: {} / {}",
                describe(&a),
                describe(&b)
            );
            format!(
                "shared between subscribers ({} + {} of {per_life})",
                a.len(),
                b.len()
            )
        }
        _ => {
            assert_eq!(
                (a.len() as u64, b.len() as u64),
                (per_life, per_life),
                "{version}: every event to each subscriber: {} / {}",
                describe(&a),
                describe(&b)
            );
            "sent to every subscriber".to_string()
        }
    };
    drop(sub);
    drop(other);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // (c) The receiver alone: it counts every event, DELETED without status included, and
    // triggers a cycle for each.
    let triggers = Arc::new(AtomicU64::new(0));
    let follower = {
        let (r, triggers) = (Arc::clone(&r), Arc::clone(&triggers));
        tokio::spawn(async move {
            let count = move || {
                triggers.fetch_add(1, Ordering::Relaxed);
            };
            r.follow_events_once(&count).await
        })
    };
    // On 1.7 the handlers of the subscriptions just dropped each still take one event (the
    // one whose sending fails): this first life feeds them.
    let _ = life(c, &format!("warm3-{tag}"), &uid(tag, 5)).await;
    assert!(
        wait_async(Duration::from_secs(10), || r.events() >= 1).await,
        "{version}: the receiver saw none of a life's {per_life} events"
    );
    tokio::time::sleep(settle).await;
    let (events_before, triggers_before) = (r.events(), triggers.load(Ordering::Relaxed));
    let _ = life(c, &format!("life3-{tag}"), &uid(tag, 6)).await;
    assert!(
        wait_async(Duration::from_secs(5), || r.events() - events_before
            >= per_life)
        .await,
        "{version}: the receiver saw {} of {per_life} events",
        r.events() - events_before
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.events() - events_before, per_life, "{version}");
    assert_eq!(
        triggers.load(Ordering::Relaxed) - triggers_before,
        per_life,
        "{version}: one trigger per event"
    );
    assert!(!follower.is_finished(), "{version}: the stream stays open");
    follower.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    format!("{sequence}; {shared}")
}

/// The agent in a network namespace of its own, scraped over a veth the test made.
struct IsolatedAgent {
    _process: Process,
    _link: HostLink,
    _ns: Netns,
    _dir: TempDir,
    url: String,
    http: ureq::Agent,
}

impl IsolatedAgent {
    fn start(tag: &str, config: &str) -> Self {
        let ns = Netns::new(&format!("nst-rt-{tag}"));
        let link = quiet_veth(&ns, &format!("nstrtag{tag}"), AGENT_NET);
        let dir = TempDir::new(&format!("nst-rt-agent-{tag}"));
        let cfg = dir.path("agent.yaml");
        std::fs::write(&cfg, config).expect("writing the config");
        let stderr = std::fs::File::create(dir.path("stderr.log")).expect("stderr file");
        // `ip netns exec` execs the agent: the pid is the agent's.
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                env!("CARGO_BIN_EXE_netshim"),
                "run",
                "-c",
            ])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting the agent in its namespace");
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        IsolatedAgent {
            _process: Process { child },
            _link: link,
            _ns: ns,
            _dir: dir,
            url: format!("http://169.254.{AGENT_NET}.2:{AGENT_PORT}/metrics"),
            http,
        }
    }

    fn metrics(&self) -> String {
        use std::io::Read;
        let Ok(mut resp) = self.http.get(&self.url).call() else {
            return String::new();
        };
        let mut body = String::new();
        let _ = resp.body_mut().as_reader().read_to_string(&mut body);
        body
    }
}

/// `auth: none`: the isolated agent listens on a link-local address of its own test link, which
/// the exporter allows only when chosen explicitly.
fn agent_config(socket: &Path, listen: &str) -> String {
    format!(
        "receivers:\n  cri:\n    endpoint: unix://{}\n    collection_interval: 30s\nresolvers:\n  interfaces:\nexporters:\n  prometheus:\n    endpoint: {listen}\n    auth:\n      mode: none\nservice:\n  pipelines:\n    metrics:\n      receivers: [cri]\n      resolvers: [interfaces]\n      exporters: [prometheus]\n",
        socket.display()
    )
}

/// The pod's interfaces are on `/metrics`: its eth0's counters.
fn shows(metrics: &str, pod: &str) -> bool {
    let label = format!("pod=\"{pod}\"");
    metrics.lines().any(|l| {
        l.starts_with("netshim_pod_network_receive_bytes_total{")
            && l.contains(&label)
            && l.contains("interface=\"eth0\"")
    })
}

fn cycles(metrics: &str) -> f64 {
    agent::sample(metrics, "netshim_cycles_total").unwrap_or(0.0)
}

/// Watches `metrics` from `started` until `cond` holds (or `limit`): when it first held.
fn watch(
    metrics: &(dyn Fn() -> String + Sync),
    started: Instant,
    limit: Duration,
    cond: &(dyn Fn(&str) -> bool + Sync),
) -> Option<Duration> {
    while started.elapsed() < limit {
        if cond(&metrics()) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Runs `action` while `metrics` is watched for `cond`: how long the action took, and when
/// `cond` first held, counted from the action's start.
fn during<T: Send>(
    metrics: &(dyn Fn() -> String + Sync),
    limit: Duration,
    cond: &(dyn Fn(&str) -> bool + Sync),
    action: impl FnOnce() -> T + Send,
) -> (T, Duration, Option<Duration>) {
    let started = Instant::now();
    std::thread::scope(|s| {
        let watcher = s.spawn(|| watch(metrics, started, limit, cond));
        let out = action();
        let took = started.elapsed();
        (
            out,
            took,
            watcher.join().expect("the watcher does not panic"),
        )
    })
}

/// "X ms after it returned" (or "before it returned") from a time counted from the call.
fn after_return(since_call: Option<Duration>, took: Duration, limit: Duration) -> String {
    match since_call {
        Some(d) if d >= took => {
            format!("{} ms after RunPodSandbox returned", (d - took).as_millis())
        }
        Some(d) => format!(
            "before RunPodSandbox returned ({} ms after the call)",
            d.as_millis()
        ),
        None => format!("not within {} s", limit.as_secs()),
    }
}

fn ms(d: Option<Duration>, limit: Duration) -> String {
    match d {
        Some(d) => format!("{} ms", d.as_millis()),
        None => format!("not within {} s", limit.as_secs()),
    }
}

/// One agent's figures: a pod in (RunPodSandbox), out (StopPodSandbox), and the cycle after
/// RemovePodSandbox.
fn measure(
    rt: &tokio::runtime::Runtime,
    c: &Containerd,
    tag: &str,
    metrics: &(dyn Fn() -> String + Sync),
    isolated: bool,
) -> String {
    let version = c.runtime.version.clone();
    let who = if isolated { "isolated" } else { "deployed" };
    let limit = Duration::from_secs(5);
    assert!(
        wait_until(Duration::from_secs(10), || cycles(&metrics()) >= 1.0),
        "{version}: the {who} agent ran its first cycle"
    );
    let events = has_events(&c.runtime);
    let n = if isolated { 10 } else { 20 };
    if events {
        // A first pod proves the agent's subscription is live.
        let name = format!("fwarm{n}-{tag}");
        let warm = rt.block_on(c.run_pod(&name, "rt", &uid(tag, n), false));
        assert!(
            wait_until(Duration::from_secs(10), || shows(&metrics(), &name)),
            "{version}: the {who} agent never saw its first pod"
        );
        rt.block_on(c.stop_pod(&warm));
        rt.block_on(c.remove_pod(&warm));
        assert!(
            wait_until(Duration::from_secs(10), || !shows(&metrics(), &name)),
            "{version}: the {who} agent still shows its first pod"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let name = format!("fresh{n}-{tag}");
    let cycles_before = cycles(&metrics());
    let is_in = |m: &str| shows(m, &name);
    let is_out = |m: &str| !shows(m, &name);
    let (id, run_took, pod_in) = during(metrics, limit, &is_in, || {
        rt.block_on(c.run_pod(&name, "rt", &uid(tag, n + 1), false))
    });
    let figure_in = after_return(pod_in, run_took, limit);
    if pod_in.is_none() {
        rt.block_on(c.remove_pod(&id));
        if isolated {
            // The control: with no event stream and no link changes in its namespace, nothing
            // made this agent scan; the pod waits for the 30 s interval.
            assert!(
                !events,
                "{version}: the pod did not reach /metrics within {limit:?}"
            );
            assert_eq!(
                cycles(&metrics()),
                cycles_before,
                "{version}: no early cycle without events"
            );
        }
        return format!(
            "in {figure_in} (RunPodSandbox took {} ms)",
            run_took.as_millis()
        );
    }
    assert!(
        events || !isolated,
        "{version}: the isolated agent saw the pod with no event"
    );
    if !isolated {
        let peered = metrics().lines().any(|l| {
            l.starts_with("netshim_pod_network_receive_bytes_total{")
                && l.contains(&format!("pod=\"{name}\""))
                && l.contains("host_interface=\"veth")
        });
        assert!(
            peered,
            "{version}: the deployed agent pairs the pod with its host veth"
        );
    }
    // Counted from the call: the STOPPED event comes before StopPodSandbox returns.
    let ((), stop_took, pod_out) = during(metrics, limit, &is_out, || rt.block_on(c.stop_pod(&id)));
    assert!(
        pod_out.is_some() || !events,
        "{version}: the pod stayed on the {who} agent's /metrics after StopPodSandbox"
    );
    // RemovePodSandbox: DELETED (without status on 1.7) triggers a cycle all the same.
    let before = cycles(&metrics());
    rt.block_on(c.remove_pod(&id));
    let deleted_cycle = time_until(limit, || cycles(&metrics()) > before);
    if isolated && events {
        assert!(
            deleted_cycle.is_some(),
            "{version}: RemovePodSandbox's DELETED event made no cycle"
        );
    }
    format!(
        "in {figure_in} (it took {} ms), out {} after StopPodSandbox was called (it took {} ms), \
         a cycle {} after RemovePodSandbox returned",
        run_took.as_millis(),
        ms(pod_out, limit),
        stop_took.as_millis(),
        ms(deleted_cycle, limit)
    )
}

/// Part 2: freshness, by the CRI event alone (the agent in its own netns), then as deployed
/// (host netns, every trigger). One agent at a time: containerd 1.7 shares its events between
/// subscribers.
fn freshness(rt: &tokio::runtime::Runtime, c: &Containerd, tag: &str) -> String {
    let alone = {
        let agent = IsolatedAgent::start(
            tag,
            &agent_config(&c.socket, &format!("169.254.{AGENT_NET}.2:{AGENT_PORT}")),
        );
        measure(rt, c, tag, &|| agent.metrics(), true)
    };
    let deployed = {
        let agent = Agent::start(
            Path::new(env!("CARGO_BIN_EXE_netshim")),
            &format!("nst-rt-deployed-{tag}"),
            |port| agent_config(&c.socket, &format!("127.0.0.1:{port}")),
        );
        let endpoint = agent.endpoint();
        let metrics = move || match endpoint.get("/metrics") {
            Ok((200, body, _)) => body,
            _ => String::new(),
        };
        measure(rt, c, tag, &metrics, false)
    };
    let how = if has_events(&c.runtime) {
        "by the CRI event alone (agent in its own netns)"
    } else {
        "no event stream; the agent in its own netns (the control)"
    };
    format!("{how}: {alone}; as deployed (host netns, every trigger): {deployed}")
}

fn uid(tag: &str, n: u32) -> String {
    format!("77777777-0000-4000-8{tag:0>3}-{n:012}")
}

#[test]
fn container_events_and_freshness_on_every_containerd_version() {
    let Some(assets) = assets() else { return };
    let Some(versions) = versions() else { return };
    assert!(
        versions.len() <= BRIDGES.len(),
        "at most {} versions",
        BRIDGES.len()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut report = Vec::new();
    for (i, runtime) in versions.iter().enumerate() {
        let tag = i.to_string();
        let c = Containerd::start_version(
            &format!("rt{i}"),
            Cni::Bridge {
                bridge: BRIDGES[i],
                subnet: SUBNETS[i],
            },
            &assets,
            runtime,
        );
        let events = rt.block_on(lifecycle(&c, &tag));
        eprintln!(
            "cri runtimes: containerd {} sandbox events: {events}",
            runtime.version
        );
        let fresh = freshness(&rt, &c, &tag);
        eprintln!(
            "cri runtimes: containerd {} freshness (collection_interval 30s): {fresh}",
            runtime.version
        );
        report.push(format!("{}: {events}; {fresh}", runtime.version));
        drop(c);
    }
    eprintln!("cri runtimes: summary\n  {}", report.join("\n  "));
    assert!(
        versions.iter().any(has_events) || versions.len() == 1,
        "no containerd with an event stream among {versions:?}"
    );
}

/// `container_events: false` (for containerd 1.7 nodes whose kubelet follows the events itself):
/// the receiver never subscribes; with the default it does. Against the fake runtime.
#[tokio::test]
async fn container_events_can_be_turned_off() {
    use netshim::receivers::Receiver;
    use support::fake_cri::FakeCri;
    let dir = TempDir::new("nst-rt-off");
    let runtime = FakeCri::start(&dir.path("cri.sock")).await;
    for on in [false, true] {
        let r = CriReceiver::new(
            CriConfig {
                endpoint: format!("unix://{}", runtime.socket.display()),
                container_events: on,
                ..CriConfig::default()
            },
            Endpoint::Socket(runtime.socket.clone()),
        );
        let follow = r.follow_events(&|| {});
        let subscribed =
            async { wait_async(Duration::from_secs(2), || runtime.subscribers() == 1).await };
        let seen = tokio::select! {
            () = follow => panic!("following the events never ends"),
            seen = subscribed => seen,
        };
        assert_eq!(seen, on, "container_events: {on}");
    }
}
