//! The whole agent binary under faults: an OTLP collector that refuses, then never answers; the
//! container runtime's socket going away and coming back; SIGTERM in the middle of back-to-back
//! cycles over 200 pods. Each test asserts that the agent does not panic (no `panicked` on its
//! stderr), keeps serving `/metrics` (and `/livez` and readiness where configured), drops a
//! deleted pod's series within about one collection interval, and leaks nothing: its open fd
//! count (`/proc/PID/fd`) does not grow between comparable points, and the host veths of
//! deleted pod namespaces go (a netlink socket left open inside a namespace would keep the
//! namespace, and its veth, alive).
//!
//! The `netns` receiver is pointed at a private folder of symlinks to the test's own namespaces
//! (`scan_proc: false`), so that namespaces other tests make on this machine at the same time
//! neither show up in these agents nor move their fd counts. Names: namespaces `nsf-…` (host
//! veths `lxcnsf…`) and `nsfsig-NNNNN` (host veths `nsfsigNNNNN`, `support::pods`), containerd
//! pods `nsf-…` on bridge `nsfcribr0`, temp folders `nsf-faults-…`; all removed on drop.
//! Traffic goes only to loopback (the agent's endpoints and the test's own OTLP peers).
//!
//! Needs root. The runtime test needs `NETSHIM_CRI_ASSETS` (see tests/cri_containerd.rs) and is
//! skipped without it; the last step of the OTLP test (a real sink receiving the data) needs
//! `NETSHIM_OTLP_VENV` (see tests/otlp.rs) and is skipped without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::agent::{Agent, sample_with};
use support::containerd::{Cni, Containerd, assets};
use support::otlp_sink::{Sink, venv};
use support::pods::PodFarm;
use support::*;

// ---------------------------------------------------------------------------------------------
// Limits. Generous for a noisy, shared 2-core machine; the measured figures are printed.
// ---------------------------------------------------------------------------------------------

/// The longest a single `/metrics` scrape may take while a fault is on (normally milliseconds).
const SCRAPE_LIMIT: Duration = Duration::from_secs(2);
/// Slack on top of one collection interval for a deleted pod's series to go.
const STALE_SLACK: Duration = Duration::from_secs(3);
/// How many more open fds than at a comparable earlier point are tolerated (one socket being
/// re-made at the moment of counting). A leak per failed attempt grows by one per attempt.
const FD_SLACK: usize = 1;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `GET url` → (status, body), with a 5 s limit.
fn get(url: &str) -> Result<(u16, String), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// The value of label `key` on the first line containing `marker` and that label.
fn label_value(text: &str, marker: &str, key: &str) -> Option<String> {
    let key = format!("{key}=\"");
    let line = text
        .lines()
        .find(|l| l.contains(marker) && l.contains(&key))?;
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_string())
}

/// A number in `lo..=hi` from the standard library's per-process random hash keys.
fn random_between(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    lo + h.finish() % (hi - lo + 1)
}

/// The agent binary (`support::agent`), its stderr kept in a file, stopped by pid on drop.
fn start_agent(name: &str, config: impl FnOnce(u16) -> String) -> Agent {
    Agent::start(
        Path::new(env!("CARGO_BIN_EXE_netshim")),
        &format!("nsf-faults-agent-{name}"),
        config,
    )
}

/// The last 3000 characters of the agent's stderr, for failure messages.
fn log_tail(agent: &Agent) -> String {
    let log = agent.stderr();
    let mut start = log.len().saturating_sub(3000);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].to_string()
}

fn assert_no_panic(agent: &Agent) {
    let log = agent.stderr();
    assert!(
        !log.contains("panicked"),
        "the agent panicked; its stderr:\n{log}"
    );
}

/// Open fds now: the least of five counts 100 ms apart (a scrape's connection being closed at
/// the moment of counting is not a leak).
fn open_fds(agent: &Agent) -> usize {
    (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            agent.fds().0
        })
        .min()
        .unwrap()
}

/// SIGTERM by pid: exits 0 within `limit`, with no panic and the shutdown logged. Returns how
/// long the exit took.
fn stop_cleanly(agent: &mut Agent, limit: Duration) -> Duration {
    let started = Instant::now();
    let code = agent.terminate(limit);
    let took = started.elapsed();
    assert_eq!(
        code,
        Some(0),
        "exit code after SIGTERM (None: still running after {limit:?}, or killed by a signal); \
         stderr:\n{}",
        log_tail(agent)
    );
    assert_no_panic(agent);
    let log = agent.stderr();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    took
}

/// Scrapes one agent's `/metrics`, keeping every scrape's duration; a scrape that fails or
/// takes longer than [`SCRAPE_LIMIT`] fails the test on the spot.
struct Scraper<'a> {
    agent: &'a Agent,
    times: Vec<Duration>,
}

impl<'a> Scraper<'a> {
    fn new(agent: &'a Agent) -> Self {
        Scraper {
            agent,
            times: Vec::new(),
        }
    }

    fn metrics(&mut self) -> String {
        let (body, took) = match self.agent.get("/metrics") {
            Ok((200, body, took)) => (body, took),
            other => panic!(
                "/metrics did not answer: {other:?}; agent stderr:\n{}",
                log_tail(self.agent)
            ),
        };
        assert!(
            took < SCRAPE_LIMIT,
            "a /metrics scrape took {took:?} (limit {SCRAPE_LIMIT:?})"
        );
        self.times.push(took);
        body
    }

    /// Scrapes every 100 ms for `how_long`; returns the last body.
    fn keep_scraping(&mut self, how_long: Duration) -> String {
        let until = Instant::now() + how_long;
        let mut last = self.metrics();
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            last = self.metrics();
        }
        last
    }

    /// "N scrapes, median X, max Y", and forgets them.
    fn summary(&mut self) -> String {
        let mut t = std::mem::take(&mut self.times);
        t.sort();
        if t.is_empty() {
            return "no scrapes".into();
        }
        format!(
            "{} scrapes, median {:?}, max {:?}",
            t.len(),
            t[t.len() / 2],
            t[t.len() - 1]
        )
    }
}

/// A pod for the `netns` receiver: a named namespace with a veth (host end `host`), linked
/// into the receiver's private folder.
struct Pod {
    ns: Netns,
    link: HostLink,
}

impl Pod {
    fn new(folder: &Path, name: &str, host: &str) -> Pod {
        let ns = Netns::new(name);
        let link = veth(host, "eth0", name);
        let entry = folder.join(name);
        let _ = std::fs::remove_file(&entry);
        std::os::unix::fs::symlink(ns.path(), &entry).expect("link the namespace");
        Pod { ns, link }
    }

    fn label(&self) -> String {
        format!("host_interface=\"{}\"", self.link.name)
    }

    /// Deletes the namespace (its link in the folder is left dangling, as a mount that went
    /// would: only the scan notices, no event).
    fn delete(&mut self) {
        self.ns.delete();
    }
}

/// Creates a pod while the agent runs, waits for it on /metrics, deletes it, and checks that its
/// series go within one `interval` plus slack and its host veth goes too (the agent closed its
/// socket in the namespace). Returns "appeared after …, gone after …, veth gone after …".
fn pod_comes_and_goes(
    scraper: &mut Scraper,
    folder: &Path,
    name: &str,
    host: &str,
    interval: Duration,
) -> String {
    let mut pod = Pod::new(folder, name, host);
    let label = pod.label();
    let appeared = time_until(interval + STALE_SLACK + Duration::from_secs(5), || {
        scraper.metrics().contains(&label)
    })
    .unwrap_or_else(|| panic!("the new pod {name} never reached /metrics"));
    pod.delete();
    let limit = interval + STALE_SLACK;
    let gone = time_until(limit, || !scraper.metrics().contains(&label)).unwrap_or_else(|| {
        panic!(
            "the deleted pod {name}'s series were still on /metrics {limit:?} later; \
             agent stderr:\n{}",
            log_tail(scraper.agent)
        )
    });
    let veth_gone = time_until(Duration::from_secs(10), || !host_link_exists(host))
        .unwrap_or_else(|| {
            panic!("{host} still exists 10 s after its namespace was deleted and left /metrics: something holds the namespace")
        });
    format!("appeared after {appeared:?}, gone after {gone:?}, veth gone after {veth_gone:?}")
}

// ---------------------------------------------------------------------------------------------
// 1. An OTLP collector that refuses, then never answers
// ---------------------------------------------------------------------------------------------

/// A TCP listener that accepts connections and never reads or writes: a wedged collector.
/// Stopped (and its connections closed) on drop.
struct SilentPeer {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SilentPeer {
    fn listen(port: u16) -> SilentPeer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} for the silent peer: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&accepted));
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        held.push(conn);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentPeer {
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a log line mentions every one of `words`.
fn logged(log: &str, words: &[&str]) -> bool {
    log.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

#[test]
fn the_otlp_endpoint_refusing_then_answering_slowly_does_not_stall_the_agent() {
    let dir = TempDir::new("nsf-faults-otlp");
    let folder = dir.path("netns");
    std::fs::create_dir_all(&folder).unwrap();
    let steady = Pod::new(&folder, "nsf-otlp-a", "lxcnsfotlpa");
    let health_port = free_port();
    // Nothing listens on these yet: connections are refused.
    let (grpc_port, http_port) = (free_port(), free_port());
    let interval = Duration::from_secs(1);
    // Two OTLP exporters on the two faulty endpoints: gRPC with the sending queue (the
    // default way: `export` only queues, a task retries with backoff), and HTTP with neither
    // queue nor retries, so that each failed export is counted in netshim_errors_total (queued
    // failures show as the exporter's retries, queue and drops, `netshim_exporter_*`) and each
    // slow one holds its cycle for the exporter's 1 s timeout.
    let config = |prom_port: u16| {
        format!(
            "receivers:
  netns:
    paths: [{folder}]
    scan_proc: false
    collection_interval: 1s
resolvers:
  interfaces:
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
  otlp_grpc/queued:
    endpoint: http://127.0.0.1:{grpc_port}
    timeout: 1s
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 1s
      max_elapsed_time: 0s
    sending_queue:
      queue_size: 5
  otlp_http/direct:
    endpoint: http://127.0.0.1:{http_port}
    timeout: 1s
    retry_on_failure:
      enabled: false
    sending_queue:
      enabled: false
extensions:
  health_check:
    endpoint: 127.0.0.1:{health_port}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [prometheus, otlp_grpc/queued, otlp_http/direct]
",
            folder = folder.display()
        )
    };
    let mut agent = start_agent("otlp", config);
    let mut scraper = Scraper::new(&agent);
    let started = time_until(Duration::from_secs(15), || {
        agent.metrics().contains(&steady.label())
    });
    assert!(
        started.is_some(),
        "the steady pod never reached /metrics; agent stderr:\n{}",
        log_tail(&agent)
    );
    let health = |path: &str| get(&format!("http://127.0.0.1:{health_port}{path}"));
    let cycles = |text: &str| sample_with(text, "netshim_cycles_total", &[]).unwrap_or(0.0);
    let direct_errors = |text: &str| {
        sample_with(
            text,
            "netshim_errors_total",
            &["stage=\"exporter\"", "component=\"otlp_http/direct\""],
        )
        .unwrap_or(0.0)
    };

    // Phase 1: connections refused.
    let text = scraper.keep_scraping(Duration::from_secs(2));
    let (cycles0, errors0) = (cycles(&text), direct_errors(&text));
    assert!(errors0 >= 1.0, "refused exports are counted:\n{text}");
    let fds0 = open_fds(&agent);
    let b = pod_comes_and_goes(&mut scraper, &folder, "nsf-otlp-b", "lxcnsfotlpb", interval);
    let text = scraper.keep_scraping(Duration::from_secs(1));
    let fds1 = open_fds(&agent);
    let (cycles1, errors1) = (cycles(&text), direct_errors(&text));
    assert!(
        cycles1 >= cycles0 + 2.0,
        "cycles went on: {cycles0} → {cycles1}"
    );
    assert!(
        errors1 >= errors0 + 2.0,
        "refused exports go on being counted: {errors0} → {errors1}"
    );
    assert!(text.contains(&steady.label()));
    assert_eq!(health("/livez").map(|r| r.0), Ok(200));
    let (ready, body) = health("/").unwrap();
    assert_eq!(
        ready, 200,
        "an exporter outage is not a readiness failure: {body}"
    );
    let log = agent.stderr();
    assert!(
        logged(&log, &["otlp_grpc/queued", "export failed"]),
        "the queued exporter's failures are logged:\n{log}"
    );
    // …and show on /metrics as its retries and queued (or dropped) snapshots.
    let queued = ["exporter=\"otlp_grpc/queued\""];
    assert!(
        sample_with(&text, "netshim_exporter_retries_total", &queued).unwrap_or(0.0) >= 1.0,
        "the queued exporter's retries are on /metrics:\n{text}"
    );
    assert_eq!(
        sample_with(&text, "netshim_exporter_sent_batches_total", &queued),
        Some(0.0)
    );
    assert!(
        sample_with(&text, "netshim_exporter_queue_length", &queued).unwrap_or(0.0) >= 1.0
            || sample_with(&text, "netshim_exporter_dropped_batches_total", &queued).unwrap_or(0.0)
                >= 1.0,
        "snapshots wait in the queue or are dropped:\n{text}"
    );
    assert!(
        fds1 <= fds0 + FD_SLACK,
        "open fds grew while connections were refused: {fds0} → {fds1}"
    );
    eprintln!(
        "refused: pod {b}; cycles {cycles0} → {cycles1}, direct export errors {errors0} → \
         {errors1}, open fds {fds0} → {fds1}; {}",
        scraper.summary()
    );

    // Phase 2: a collector that accepts connections and never answers.
    let grpc_peer = SilentPeer::listen(grpc_port);
    let http_peer = SilentPeer::listen(http_port);
    let reached = time_until(Duration::from_secs(10), || {
        scraper.metrics();
        grpc_peer.accepted() >= 1 && http_peer.accepted() >= 1
    });
    assert!(
        reached.is_some(),
        "both exporters connected to the silent peer (grpc {}, http {})",
        grpc_peer.accepted(),
        http_peer.accepted()
    );
    // Let every exporter time out at least once before the reference count.
    let text = scraper.keep_scraping(Duration::from_secs(2));
    let (cycles2, errors2) = (cycles(&text), direct_errors(&text));
    let fds2 = open_fds(&agent);
    let c = pod_comes_and_goes(&mut scraper, &folder, "nsf-otlp-c", "lxcnsfotlpc", interval);
    let text = scraper.keep_scraping(Duration::from_secs(3));
    let fds3 = open_fds(&agent);
    let (cycles3, errors3) = (cycles(&text), direct_errors(&text));
    assert!(
        cycles3 >= cycles2 + 2.0,
        "cycles went on with a silent collector: {cycles2} → {cycles3}"
    );
    assert!(
        errors3 >= errors2 + 2.0,
        "timed-out exports are counted: {errors2} → {errors3}"
    );
    assert!(text.contains(&steady.label()));
    assert_eq!(health("/livez").map(|r| r.0), Ok(200));
    assert_eq!(health("/").map(|r| r.0), Ok(200));
    assert!(
        fds3 <= fds2 + FD_SLACK,
        "open fds grew while the collector did not answer: {fds2} → {fds3} \
         (the silent peers accepted {} gRPC and {} HTTP connections)",
        grpc_peer.accepted(),
        http_peer.accepted()
    );
    eprintln!(
        "silent: pod {c}; cycles {cycles2} → {cycles3}, direct export errors {errors2} → \
         {errors3}, open fds {fds2} → {fds3}, connections accepted grpc {} http {}; {}",
        grpc_peer.accepted(),
        http_peer.accepted(),
        scraper.summary()
    );
    drop(grpc_peer);
    drop(http_peer);

    // Phase 3, when the venv is there: a collector that answers gets the data on both.
    match venv() {
        None => eprintln!("SKIPPED the answering-sink step"),
        Some(venv) => {
            let (grpc, http) = (
                format!("127.0.0.1:{grpc_port}"),
                format!("127.0.0.1:{http_port}"),
            );
            let sink = Sink::start(&venv, &dir, "sink", &["--grpc", &grpc, "--http", &http]);
            assert_eq!(
                (sink.grpc_port, sink.http_port),
                (grpc_port, http_port),
                "the sink listens where asked"
            );
            let delivered = time_until(Duration::from_secs(15), || {
                scraper.metrics();
                sink.has("grpc", "/nsf-otlp-a") && sink.has("http", "/nsf-otlp-a")
            });
            assert!(
                delivered.is_some(),
                "an answering collector got the steady pod over gRPC ({}) and HTTP ({}); \
                 agent stderr:\n{}",
                sink.has("grpc", "/nsf-otlp-a"),
                sink.has("http", "/nsf-otlp-a"),
                log_tail(&agent)
            );
            let log = agent.stderr();
            assert!(
                logged(&log, &["otlp_grpc/queued", "export works again"]),
                "the queued exporter's recovery is logged:\n{log}"
            );
            eprintln!(
                "answering: both transports delivered after {:?}",
                delivered.unwrap()
            );
        }
    }

    drop(scraper);
    let took = stop_cleanly(&mut agent, Duration::from_secs(15));
    eprintln!("SIGTERM: exited 0 after {took:?}");
    drop(agent);
    // With the agent gone, deleting the steady pod's namespace removes its veth.
    let Pod { ns, link } = steady;
    drop(ns);
    assert!(
        wait_until(Duration::from_secs(10), || !host_link_exists(&link.name)),
        "{} outlived its namespace",
        link.name
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The runtime's socket going away and coming back
// ---------------------------------------------------------------------------------------------

/// The readiness answer: (ready, the `receivers::cri` component's error).
fn readiness(port: u16) -> Option<(u16, Option<String>)> {
    let (status, body) = get(&format!("http://127.0.0.1:{port}/")).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    let error = doc["components"]["receivers::cri"]["error"]
        .as_str()
        .map(String::from);
    Some((status, error))
}

#[test]
fn the_runtime_socket_disappearing_and_returning_is_survived() {
    let Some(assets) = assets() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = Containerd::start(
        "faults-cri",
        Cni::Bridge {
            bridge: "nsfcribr0",
            subnet: "169.254.233.0/24",
        },
        &assets,
    );
    let web = rt.block_on(c.run_pod(
        "nsf-web-0",
        "faults",
        "55555555-0000-4000-8000-000000000001",
        false,
    ));
    let health_port = free_port();
    let interval = Duration::from_secs(1);
    let socket = c.socket.display().to_string();
    let config = |prom_port: u16| {
        format!(
            "receivers:
  cri:
    endpoint: unix://{socket}
    timeout: 500ms
    collection_interval: 1s
resolvers:
  interfaces:
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom_port}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health_port}
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [cri]
      resolvers: [interfaces]
      exporters: [prometheus]
"
        )
    };
    let mut agent = start_agent("cri", config);
    let mut scraper = Scraper::new(&agent);
    let web_label = "pod=\"nsf-web-0\"";
    let up = time_until(Duration::from_secs(15), || {
        agent.metrics().contains(web_label) && readiness(health_port).is_some_and(|r| r.0 == 200)
    });
    assert!(
        up.is_some(),
        "the pod reached /metrics and the agent became ready; stderr:\n{}",
        log_tail(&agent)
    );
    let text = scraper.keep_scraping(Duration::from_secs(2));
    let web_veth = label_value(&text, web_label, "host_interface").expect("web-0's host veth");
    assert!(host_link_exists(&web_veth), "{web_veth}");
    let fds_up = open_fds(&agent);

    // The socket goes: containerd stops (its pods keep running). If it leaves its socket
    // file behind, that is renamed away, so the path is really gone.
    c.stop();
    let down_at = Instant::now();
    let away = c.socket.with_extension("away");
    let left_behind = c.socket.exists();
    if left_behind {
        std::fs::rename(&c.socket, &away).unwrap();
    }
    let mut reason = None;
    let not_ready = time_until(Duration::from_secs(10), || {
        scraper.metrics();
        match readiness(health_port) {
            Some((503, error)) => {
                reason = error;
                true
            }
            _ => false,
        }
    })
    .unwrap_or_else(|| {
        panic!(
            "still ready 10 s after the runtime's socket went; stderr:\n{}",
            log_tail(&agent)
        )
    });
    let first_reason = reason.expect("the not-ready answer gives the receiver's error");
    assert!(!first_reason.is_empty());
    // The first failure may be on the connection made before (a broken pipe); once it is
    // made anew, the reason names the missing socket.
    let mut reason = first_reason.clone();
    let named = time_until(Duration::from_secs(5), || {
        scraper.metrics();
        match readiness(health_port) {
            Some((503, Some(error))) => {
                reason = error;
                reason.contains(&socket)
            }
            _ => false,
        }
    });
    assert!(
        named.is_some(),
        "the not-ready reason names the socket: {reason}"
    );
    let fds_down = open_fds(&agent);
    let receiver_errors = |text: &str| {
        sample_with(
            text,
            "netshim_errors_total",
            &["stage=\"receiver\"", "component=\"cri\""],
        )
        .unwrap_or(0.0)
    };
    let errors_before = receiver_errors(&scraper.metrics());
    // While it is gone: /metrics keeps answering with the last good pods; failures are counted.
    let text = scraper.keep_scraping(Duration::from_secs(4));
    assert!(
        text.contains(web_label),
        "the last good pods stay on /metrics while the runtime is away:\n{text}"
    );
    let errors = receiver_errors(&text);
    assert!(
        errors >= errors_before + 2.0,
        "receiver failures go on being counted: {errors_before} → {errors}"
    );
    assert_eq!(
        get(&format!("http://127.0.0.1:{health_port}/livez")).map(|r| r.0),
        Ok(200)
    );
    assert_eq!(readiness(health_port).map(|r| r.0), Some(503));
    let fds_down_later = open_fds(&agent);
    assert!(
        fds_down_later <= fds_down + FD_SLACK,
        "open fds grew while the runtime was away: {fds_down} → {fds_down_later}"
    );
    let outage_scrapes = scraper.summary();

    // It comes back.
    let _ = std::fs::remove_file(&away);
    c.restart();
    let back_at = Instant::now();
    let ready_again = time_until(Duration::from_secs(10), || {
        scraper.metrics();
        readiness(health_port).is_some_and(|r| r.0 == 200)
    })
    .unwrap_or_else(|| {
        panic!(
            "not ready 10 s after the runtime came back; stderr:\n{}",
            log_tail(&agent)
        )
    });
    scraper.keep_scraping(Duration::from_secs(2));
    let fds_back = open_fds(&agent);
    assert!(
        fds_back <= fds_up + FD_SLACK,
        "open fds grew across the outage: {fds_up} before, {fds_back} after"
    );
    let api_started = Instant::now();
    let _api = rt.block_on(c.run_pod(
        "nsf-api-0",
        "faults",
        "55555555-0000-4000-8000-000000000002",
        false,
    ));
    let made_in = api_started.elapsed();
    let api_seen = time_until(interval + STALE_SLACK + Duration::from_secs(5), || {
        scraper.metrics().contains("pod=\"nsf-api-0\"")
    })
    .expect("a pod made after the runtime came back reaches /metrics");
    assert!(scraper.metrics().contains(web_label));

    // A pod stopped now leaves /metrics within a cycle or so.
    rt.block_on(c.stop_pod(&web));
    let limit = interval + STALE_SLACK;
    let web_gone = time_until(limit, || !scraper.metrics().contains(web_label))
        .unwrap_or_else(|| panic!("nsf-web-0 still on /metrics {limit:?} after it stopped"));

    eprintln!(
        "runtime away (socket file {}): not ready after {not_ready:?} ({reason}); outage: \
         {outage_scrapes}, receiver errors {errors_before} → {errors}; ready again {ready_again:?} after the \
         restart ({:?} after the socket went); new pod made in {made_in:?}, on /metrics \
         {api_seen:?} later; stopped pod gone after {web_gone:?}; open fds {fds_up} up, \
         {fds_down} → {fds_down_later} down, {fds_back} back; {}",
        if left_behind {
            "left behind, renamed away"
        } else {
            "removed by containerd"
        },
        back_at.duration_since(down_at),
        scraper.summary()
    );

    drop(scraper);
    let took = stop_cleanly(&mut agent, Duration::from_secs(15));
    eprintln!("SIGTERM: exited 0 after {took:?}");
    drop(agent);
    assert!(
        wait_until(Duration::from_secs(10), || !host_link_exists(&web_veth)),
        "{web_veth} outlived its stopped pod"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. SIGTERM in the middle of back-to-back cycles
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_in_the_middle_of_cycles_exits_cleanly() {
    const PODS: usize = 200;
    let dir = TempDir::new("nsf-faults-sig");
    let folder = dir.path("netns");
    std::fs::create_dir_all(&folder).unwrap();
    // `nsfsig-NNNNN`, host ends `nsfsigNNNNN`, pod ends down (no traffic); removed on drop.
    let made = Instant::now();
    let mut farm = PodFarm::new("nsfsig");
    let ids = farm.add(PODS);
    for &i in &ids {
        let ns = farm.ns_name(i);
        std::os::unix::fs::symlink(Path::new("/run/netns").join(&ns), folder.join(&ns)).unwrap();
    }
    eprintln!("made {PODS} pods in {:?}", made.elapsed());
    assert_eq!(farm.links_left(&ids), PODS);

    for run in 1..=5 {
        let config = |port: u16| {
            format!(
                "receivers:
  netns:
    paths: [{folder}]
    scan_proc: false
    collection_interval: 100ms
resolvers:
  interfaces:
exporters:
  prometheus:
    endpoint: 127.0.0.1:{port}
service:
  pipelines:
    metrics:
      receivers: [netns]
      resolvers: [interfaces]
      exporters: [prometheus]
",
                folder = folder.display()
            )
        };
        let mut agent = start_agent(&format!("sig-{run}"), config);
        let mut first = String::new();
        let first_cycle = time_until(Duration::from_secs(30), || {
            first = agent.metrics();
            sample_with(&first, "netshim_cycles_total", &[]).is_some_and(|n| n >= 1.0)
        })
        .unwrap_or_else(|| {
            panic!(
                "run {run}: no cycle within 30 s; stderr:\n{}",
                log_tail(&agent)
            )
        });
        assert_eq!(
            sample_with(&first, "netshim_pods", &[]),
            Some(PODS as f64),
            "run {run}: the first cycle saw every pod"
        );
        let wait = Duration::from_millis(random_between(50, 600));
        std::thread::sleep(wait);
        let cycles = sample_with(&agent.metrics(), "netshim_cycles_total", &[]).unwrap_or(0.0);
        let took = stop_cleanly(&mut agent, Duration::from_secs(10));
        eprintln!(
            "run {run}: first cycle after {first_cycle:?}, SIGTERM {wait:?} later (about \
             {cycles} cycles done), exited 0 after {took:?}"
        );
    }

    // Every agent has exited: deleting the namespaces removes their veths.
    let deleted = Instant::now();
    farm.remove(&ids);
    assert!(
        farm.wait_links_gone(&ids, Duration::from_secs(30)),
        "{} host veths still present 30 s after their namespaces were deleted",
        farm.links_left(&ids)
    );
    eprintln!(
        "deleted {PODS} namespaces; their veths went within {:?}",
        deleted.elapsed()
    );
}
