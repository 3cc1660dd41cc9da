//! `cargo bench --bench discovery`: how long netshim takes to map N pod network namespaces to
//! their interfaces and host-side veth peers, measured side by side with the older shim's
//! per-pod method (`nsenter --net=NS ethtool -S eth0`, parse `peer_ifindex`, look the index up
//! in the host namespace).
//!
//! Needs root, `ip` (iproute2), `nsenter` (util-linux) and `ethtool`. For each pod count it makes
//! namespaces `nsb-NNNN`, each holding `eth0`, the pod end of a veth pair whose host end is
//! `nsbNNNN` (up, IPv6 address generation off; the pod end is down unless asked, see `PodEnds`).
//! Everything is removed at the end, on panic and on Ctrl-C/SIGTERM; leftovers of an aborted run
//! are removed before starting.
//!
//! Environment:
//! - `NETSHIM_BENCH_PODS`: comma-separated pod counts, default `100,1000`;
//! - `NETSHIM_BENCH_ITERS`: warm cycles per pod count, default 20;
//! - `NETSHIM_BENCH_POD_UP=1`: bring pod ends up too (slower setup, same measurements);
//! - `NETSHIM_BENCH_BASE_BIN=PATH`: another `netshim` build (say main's release binary) whose
//!   whole-process `discover` is measured side by side with this one's.
//!
//! Besides the in-process figures, each pod count runs `netshim discover --output json` as a
//! child process 5 times (the binary cargo builds with this bench, and the base binary,
//! interleaved): the whole process as an operator runs it, next to the old method.
//!
//! Run as a test (`cargo test --benches`, no `--bench` argument), it does nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netshim::model::{Batch, NetnsKey};
use netshim::receivers::netns::{Config as NetnsConfig, NetnsReceiver};
use netshim::resolvers::interfaces::{Config as IfConfig, InterfaceMapper};

const NETNS_DIR: &str = "/run/netns";
const SYS_NET: &str = "/sys/class/net";
const DEFAULT_PODS: &[usize] = &[100, 1000];
const DEFAULT_ITERS: usize = 20;
/// Fresh-mapper runs per pod count: the first is the table's "cold"; the others show its spread.
const COLD_RUNS: usize = 3;
/// Pause between setting pods up and measuring.
const SETTLE: Duration = Duration::from_secs(3);
/// After `ip netns del` the veths go asynchronously (facts.md: gone by about 1.5 s).
const LINKS_GONE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Names

/// The pod's network namespace, `nsb-0042`.
fn ns_name(i: usize) -> String {
    format!("nsb-{i:04}")
}

/// The host end of the pod's veth, `nsb0042`.
fn host_name(i: usize) -> String {
    format!("nsb{i:04}")
}

/// The pod end's name while it is still in the host namespace, before it is moved and renamed
/// to `eth0`.
fn temp_name(i: usize) -> String {
    format!("nsbp{i:04}")
}

/// A host link this benchmark makes: `nsb` or `nsbp` followed by digits only.
fn is_bench_link(name: &str) -> bool {
    let rest = name
        .strip_prefix("nsbp")
        .or_else(|| name.strip_prefix("nsb"));
    matches!(rest, Some(r) if !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------------------
// Setup and teardown

/// Held for every `ip -batch` run and by the signal handler until the process exits, so that a
/// cleanup never races a setup batch.
static IP_LOCK: Mutex<()> = Mutex::new(());

fn lock_ip() -> MutexGuard<'static, ()> {
    IP_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `ip [-force] -batch FILE` on `script`. The caller holds [`IP_LOCK`].
fn ip_batch(script: &str, force: bool) -> Result<()> {
    let file = std::env::temp_dir().join(format!("netshim-bench-{}.batch", std::process::id()));
    fs::write(&file, script).with_context(|| format!("writing {}", file.display()))?;
    let mut cmd = Command::new("ip");
    if force {
        cmd.arg("-force");
    }
    let out = cmd
        .arg("-batch")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .context("running ip -batch");
    // Best effort: the file is only a copy of the script.
    let _ = fs::remove_file(&file);
    let out = out?;
    if !out.status.success() {
        bail!(
            "ip -batch failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Names of the `nsb-*` namespaces in `/run/netns`.
fn bench_namespaces() -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with("nsb-"))
        .collect()
}

/// Names of the host links this benchmark makes.
fn bench_links() -> Vec<String> {
    let Ok(entries) = fs::read_dir(SYS_NET) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| is_bench_link(name))
        .collect()
}

/// Deletes every `nsb-*` namespace and any pod end left in the host by an interrupted setup, then,
/// if `wait`, waits until their veths are gone (an open socket inside a namespace keeps it and its
/// veth alive: only wait when no mapper is left). Returns how many namespaces were deleted. The
/// caller holds [`IP_LOCK`].
fn remove_bench_objects(wait: bool) -> Result<usize> {
    let namespaces = bench_namespaces();
    let stray: Vec<String> = bench_links()
        .into_iter()
        .filter(|name| name.starts_with("nsbp"))
        .collect();
    let mut script = String::new();
    for ns in &namespaces {
        writeln!(script, "netns del {ns}")?;
    }
    // Deleting one end of a veth deletes both.
    for link in &stray {
        writeln!(script, "link del {link}")?;
    }
    if !script.is_empty() {
        // -force: carry on past a namespace someone else deleted meanwhile.
        ip_batch(&script, true)?;
    }
    if !wait {
        return Ok(namespaces.len());
    }
    let deadline = Instant::now() + LINKS_GONE_TIMEOUT;
    loop {
        let left = bench_links();
        if left.is_empty() {
            return Ok(namespaces.len());
        }
        if Instant::now() > deadline {
            bail!(
                "{} benchmark links still present {}s after deleting their namespaces \
                 (first: {})",
                left.len(),
                LINKS_GONE_TIMEOUT.as_secs(),
                left[0]
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The benchmark's pods. Dropping it (also while unwinding from a panic) removes them.
struct BenchPods {
    count: usize,
    pod_ends: PodEnds,
}

impl BenchPods {
    /// Removes leftovers of an earlier aborted run and starts with no pods.
    fn new(pod_ends: PodEnds) -> Result<Self> {
        let _held = lock_ip();
        let t = Instant::now();
        let removed = remove_bench_objects(true).context("removing leftovers of an earlier run")?;
        if removed > 0 {
            eprintln!(
                "removed {removed} leftover nsb-* namespaces of an earlier run ({:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(BenchPods { count: 0, pod_ends })
    }

    /// Adds pods until there are `n`, with one `ip` process in all. See [`PodEnds`].
    fn grow_to(&mut self, n: usize) -> Result<()> {
        let mut script = String::new();
        for i in self.count..n {
            let (ns, host, temp) = (ns_name(i), host_name(i), temp_name(i));
            writeln!(script, "netns add {ns}")?;
            match self.pod_ends {
                PodEnds::Down => {
                    writeln!(
                        script,
                        "link add {host} type veth peer name eth0 netns {ns}"
                    )?;
                    writeln!(script, "link set {host} addrgenmode none")?;
                }
                PodEnds::Up => {
                    writeln!(script, "link add {host} type veth peer name {temp}")?;
                    writeln!(script, "link set {host} addrgenmode none")?;
                    // The kernel moves the link first, then applies name, mode and flags there.
                    writeln!(
                        script,
                        "link set {temp} netns {ns} name eth0 addrgenmode none up"
                    )?;
                }
            }
            writeln!(script, "link set {host} up")?;
        }
        let _held = lock_ip();
        // Counted before the batch runs: cleanup is by name pattern, so a partial batch is
        // removed as well.
        self.count = self.count.max(n);
        ip_batch(&script, false).context("creating the pods' namespaces and veths")
    }
}

/// How the pod ends (`eth0`) are made.
///
/// A batch run by `ip` in the host cannot address a link inside another namespace, so the pod
/// end can be brought up without a process per pod only by creating it in the host and moving it
/// (`link set X netns NS name eth0 addrgenmode none up`). Each move costs the kernel a
/// synchronisation (about 16 ms here: 16 s for 1000 pods, where creating the peer directly in its
/// namespace takes about 1.5 s). Peers and counters are reported for down links all the same,
/// so pod ends are left down by default.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PodEnds {
    /// `eth0` created in its namespace and left down (never up, so no IPv6 address or traffic).
    /// The host end is up (no carrier), `addrgenmode none`.
    Down,
    /// Both ends up with `addrgenmode none`: no IPv6 link-local address, no ND traffic.
    /// `NETSHIM_BENCH_POD_UP=1`.
    Up,
}

impl Drop for BenchPods {
    fn drop(&mut self) {
        let _held = lock_ip();
        let t = Instant::now();
        // Every mapper is gone by now: they live in inner frames, dropped first when unwinding.
        match remove_bench_objects(true) {
            Ok(n) => eprintln!(
                "teardown: removed {n} namespaces and their veths in {:.1} s",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!(
                "warning: teardown failed: {e:#}\n  remove by hand: \
                 ip -all netns list | grep nsb- ; ip netns del nsb-XXXX"
            ),
        }
    }
}

/// On SIGINT/SIGTERM: wait for any running `ip` batch, remove the pods, exit.
fn install_signal_cleanup() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the signal runtime")?;
    // Registered now, so a signal at any later point is caught.
    let (mut int, mut term) = runtime
        .block_on(async {
            Ok::<_, io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let (name, code) = runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => ("SIGINT", 130),
                    _ = term.recv() => ("SIGTERM", 143),
                }
            });
            // The main thread's `ip`, `nsenter` or a namespace may vanish under it now: its
            // panics are expected and not worth printing.
            std::panic::set_hook(Box::new(|_| {}));
            eprintln!("\n{name}: removing the benchmark's namespaces…");
            // Held until exit: no new batch starts after this cleanup.
            let _held = lock_ip();
            // No waiting: the main thread's mapper may hold the namespaces until exit.
            match remove_bench_objects(false) {
                Ok(n) => eprintln!("removed {n} namespaces"),
                Err(e) => eprintln!("warning: cleanup failed: {e:#}"),
            }
            std::process::exit(code);
        })
        .context("spawning the signal thread")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Ground truth

/// What the kernel says the first N pods are: each namespace's (device, inode) and the ifindex
/// of its host end.
struct Expected {
    by_key: HashMap<NetnsKey, usize>,
    host_ifindex: Vec<u32>,
}

impl Expected {
    fn read(n: usize) -> Result<Self> {
        let mut by_key = HashMap::with_capacity(n);
        let mut host_ifindex = Vec::with_capacity(n);
        for i in 0..n {
            let path = Path::new(NETNS_DIR).join(ns_name(i));
            let meta = fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
            by_key.insert(
                NetnsKey {
                    dev: meta.dev(),
                    inode: meta.ino(),
                },
                i,
            );
            host_ifindex.push(read_ifindex(&Path::new(SYS_NET).join(host_name(i)))?);
        }
        Ok(Expected {
            by_key,
            host_ifindex,
        })
    }

    fn len(&self) -> usize {
        self.host_ifindex.len()
    }
}

fn read_ifindex(link_dir: &Path) -> Result<u32> {
    let path = link_dir.join("ifindex");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {}: {text:?}", path.display()))
}

/// Checks that netshim found every benchmark namespace with `eth0` peered to its own host end.
/// Panics otherwise. Returns how many other namespaces (not the benchmark's) the batch held.
fn check_netshim(batch: &Batch, expected: &Expected, what: &str) -> usize {
    let mut seen = vec![false; expected.len()];
    let mut others = 0;
    for pod in &batch.pods {
        let Some(i) = pod
            .sandbox
            .netns
            .as_ref()
            .and_then(|n| expected.by_key.get(&n.key()).copied())
        else {
            others += 1;
            continue;
        };
        let ns = ns_name(i);
        assert!(!seen[i], "netshim ({what}): {ns} reported twice");
        seen[i] = true;
        let Some(eth0) = pod.interfaces.iter().find(|f| &*f.name == "eth0") else {
            let names: Vec<&str> = pod.interfaces.iter().map(|f| &*f.name).collect();
            panic!("netshim ({what}): {ns} found, but without eth0 (interfaces: {names:?})");
        };
        let Some(peer) = eth0.peer.as_ref() else {
            panic!(
                "netshim ({what}): {ns} eth0 found, but with no host peer (want {})",
                host_name(i)
            );
        };
        let want = (host_name(i), expected.host_ifindex[i]);
        assert!(
            *peer.name == *want.0 && peer.ifindex == want.1 && &*peer.kind == "veth",
            "netshim ({what}): {ns} eth0 peered to {} (ifindex {}, kind {}), want {} (ifindex {}, veth)",
            peer.name,
            peer.ifindex,
            peer.kind,
            want.0,
            want.1
        );
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| ns_name(i))
        .collect();
    assert!(
        missing.is_empty(),
        "netshim ({what}) missed {} of {} namespaces: {}{}",
        missing.len(),
        expected.len(),
        missing[..missing.len().min(10)].join(", "),
        if missing.len() > 10 { ", …" } else { "" }
    );
    others
}

// ---------------------------------------------------------------------------------------------
// Measuring netshim

/// CPU time (user + system) of the whole process, threads that have exited included: the
/// resolver spreads a cycle over short-lived threads when there are many namespaces.
fn cpu_time() -> Result<Duration> {
    netshim::sys::limits::process_cpu_time().context("getrusage")
}

/// `VmRSS` and `VmHWM` (peak) from `/proc/self/status`, in KiB.
fn memory_kib() -> Result<(u64, u64)> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/self/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

struct Cycle {
    batch: Batch,
    scan: Duration,
    resolve: Duration,
    cpu: Duration,
}

impl Cycle {
    fn wall(&self) -> Duration {
        self.scan + self.resolve
    }
}

/// One discovery: scan, then map.
fn discover(receiver: &NetnsReceiver, mapper: &mut InterfaceMapper) -> Result<Cycle> {
    let cpu0 = cpu_time()?;
    let t0 = Instant::now();
    let sandboxes = receiver.scan_blocking().context("netns scan")?;
    let t1 = Instant::now();
    let mut batch = Batch::from_sandboxes(&sandboxes);
    mapper.resolve(&mut batch).context("interfaces resolve")?;
    let t2 = Instant::now();
    let cpu1 = cpu_time()?;
    Ok(Cycle {
        batch,
        scan: t1 - t0,
        resolve: t2 - t1,
        cpu: cpu1.saturating_sub(cpu0),
    })
}

struct NetshimRun {
    cold: Duration,
    cold_scan: Duration,
    cold_resolve: Duration,
    cold_reruns: Vec<Duration>,
    warm: Vec<Duration>,
    warm_scan: Vec<Duration>,
    warm_resolve: Vec<Duration>,
    warm_cpu: Vec<Duration>,
    rss_kib: u64,
    hwm_kib: u64,
    others: usize,
}

fn measure_netshim(expected: &Expected, iters: usize) -> Result<NetshimRun> {
    // Cold: a fresh receiver and mapper, as at agent start.
    let receiver = NetnsReceiver::new(NetnsConfig::default());
    let mut mapper = InterfaceMapper::new(IfConfig::default());
    let cold = discover(&receiver, &mut mapper)?;
    let others = check_netshim(&cold.batch, expected, "cold");
    let (cold_wall, cold_scan, cold_resolve) = (cold.wall(), cold.scan, cold.resolve);
    drop(cold);

    // Warm: the same receiver and mapper, every namespace already open. One untimed cycle first.
    check_netshim(
        &discover(&receiver, &mut mapper)?.batch,
        expected,
        "warm-up",
    );
    let (mut warm, mut warm_scan, mut warm_resolve, mut warm_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        let c = discover(&receiver, &mut mapper)?;
        check_netshim(&c.batch, expected, &format!("warm cycle {}", i + 1));
        warm.push(c.wall());
        warm_scan.push(c.scan);
        warm_resolve.push(c.resolve);
        warm_cpu.push(c.cpu);
    }
    // Memory with the mapper and a full batch alive: what an agent holds in steady state.
    let last = discover(&receiver, &mut mapper)?;
    let (rss_kib, hwm_kib) = memory_kib()?;
    drop(last);
    // Close this mapper's sockets before opening more.
    drop(mapper);

    let mut cold_reruns = vec![cold_wall];
    for i in 1..COLD_RUNS {
        let receiver = NetnsReceiver::new(NetnsConfig::default());
        let mut mapper = InterfaceMapper::new(IfConfig::default());
        let c = discover(&receiver, &mut mapper)?;
        check_netshim(&c.batch, expected, &format!("cold run {}", i + 1));
        cold_reruns.push(c.wall());
    }

    Ok(NetshimRun {
        cold: cold_wall,
        cold_scan,
        cold_resolve,
        cold_reruns,
        warm,
        warm_scan,
        warm_resolve,
        warm_cpu,
        rss_kib,
        hwm_kib,
        others,
    })
}

// ---------------------------------------------------------------------------------------------
// Measuring the whole process

/// Whole-process runs of `netshim discover --output json` per binary and pod count.
const PROCESS_RUNS: usize = 5;

/// A `netshim` binary run as a child process: this bench's own build, and optionally another.
struct Binary {
    label: String,
    path: PathBuf,
}

/// `CARGO_BIN_EXE_netshim` (the binary cargo built along with this bench, release profile:
/// always the current source) and, when `NETSHIM_BENCH_BASE_BIN` names one, another build
/// (say main's `target/release/netshim`) run side by side with it.
fn binaries() -> Result<Vec<Binary>> {
    let mut out = vec![Binary {
        label: "netshim".into(),
        path: PathBuf::from(env!("CARGO_BIN_EXE_netshim")),
    }];
    if let Some(base) = std::env::var_os("NETSHIM_BENCH_BASE_BIN").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(base);
        if !path.is_file() {
            bail!("NETSHIM_BENCH_BASE_BIN: {} is not a file", path.display());
        }
        out.push(Binary {
            label: "base".into(),
            path,
        });
    }
    Ok(out)
}

/// One binary's whole-process runs: wall time from spawn to exit, and its CPU time.
struct ProcessRun {
    label: String,
    wall: Vec<Duration>,
    user: Vec<Duration>,
    sys: Vec<Duration>,
}

/// Runs `netshim discover --output json` (the built-in configuration: `netns` receiver,
/// `interfaces` resolver) once and checks that its output maps every benchmark pod's `eth0` to
/// its own host end. Returns (wall, user CPU, system CPU).
fn run_discover(bin: &Binary, expected: &Expected) -> Result<(Duration, Duration, Duration)> {
    let (user0, sys0) = netshim::sys::limits::children_cpu_times().context("getrusage")?;
    let t0 = Instant::now();
    let out = Command::new(&bin.path)
        .args(["discover", "--output", "json"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} discover", bin.path.display()))?;
    let wall = t0.elapsed();
    let (user1, sys1) = netshim::sys::limits::children_cpu_times().context("getrusage")?;
    if !out.status.success() {
        bail!(
            "{} discover failed ({}): {}",
            bin.label,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    check_json(&out.stdout, expected, &bin.label)?;
    Ok((wall, user1.saturating_sub(user0), sys1.saturating_sub(sys0)))
}

/// Checks `discover --output json`: every benchmark namespace once, its `eth0` peered to its own
/// host end.
fn check_json(stdout: &[u8], expected: &Expected, what: &str) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_slice(stdout).context("parsing discover JSON")?;
    let pods = doc["pods"].as_array().context("no pods array")?;
    let mut seen = vec![false; expected.len()];
    for pod in pods {
        let Some(path) = pod["netns"]["path"].as_str() else {
            continue;
        };
        let Some(i) = path
            .strip_prefix("/run/netns/nsb-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|i| *i < expected.len())
        else {
            continue;
        };
        assert!(!seen[i], "{what} discover: {path} reported twice");
        seen[i] = true;
        let eth0 = pod["interfaces"]
            .as_array()
            .and_then(|l| l.iter().find(|f| f["name"] == "eth0"));
        let peer = eth0.map(|f| &f["peer"]);
        let want = (host_name(i), expected.host_ifindex[i]);
        assert!(
            peer.is_some_and(|p| p["name"] == want.0.as_str()
                && p["ifindex"] == want.1
                && p["kind"] == "veth"),
            "{what} discover: {path} eth0 peer {peer:?}, want {} (ifindex {})",
            want.0,
            want.1
        );
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert!(
        missing == 0,
        "{what} discover missed {missing} of {} benchmark namespaces",
        expected.len()
    );
    Ok(())
}

/// `PROCESS_RUNS` runs of each binary, interleaved (a, b, a, b, …) so that both see the same
/// machine.
fn measure_processes(binaries: &[Binary], expected: &Expected) -> Result<Vec<ProcessRun>> {
    let mut runs: Vec<ProcessRun> = binaries
        .iter()
        .map(|b| ProcessRun {
            label: b.label.clone(),
            wall: Vec::new(),
            user: Vec::new(),
            sys: Vec::new(),
        })
        .collect();
    for _ in 0..PROCESS_RUNS {
        for (bin, run) in binaries.iter().zip(&mut runs) {
            let (wall, user, sys) = run_discover(bin, expected)?;
            run.wall.push(wall);
            run.user.push(user);
            run.sys.push(sys);
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Measuring the old shim's method

struct OldRun {
    total: Duration,
    /// `nsenter --net=… ethtool -S eth0`, including parsing its output.
    spawn: Duration,
    /// Index → host name lookups.
    lookup: Duration,
}

/// `peer_ifindex: N` from `ethtool -S` output.
fn parse_peer_ifindex(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("peer_ifindex:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The host link with index `idx`, looked up afresh as the old shim did for every pod (Go's
/// `net.InterfaceByIndex` dumps every host link each time). Walking `/sys/class/net` up to the
/// match is no dearer: at 1000 pods it took about 8 ms per lookup here, where one RTM_GETLINK dump
/// of the host's links took about 14 ms in the kernel alone.
fn host_link_by_index(idx: u32) -> Result<Option<String>> {
    for entry in fs::read_dir(SYS_NET).context("listing /sys/class/net")? {
        let entry = entry?;
        // Links come and go; one that vanished is not the one wanted.
        let Ok(text) = fs::read_to_string(entry.path().join("ifindex")) else {
            continue;
        };
        if text.trim().parse() == Ok(idx) {
            return Ok(entry.file_name().into_string().ok());
        }
    }
    Ok(None)
}

/// One pass of the old shim's per-pod method over all pods, one after the other.
fn measure_old(expected: &Expected) -> Result<OldRun> {
    let (mut spawn, mut lookup) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for i in 0..expected.len() {
        let ns = ns_name(i);
        let t0 = Instant::now();
        let out = Command::new("nsenter")
            .arg(format!(
                "--net={}",
                PathBuf::from(NETNS_DIR).join(&ns).display()
            ))
            .args(["ethtool", "-S", "eth0"])
            .stdin(Stdio::null())
            .output()
            .context("running nsenter … ethtool")?;
        assert!(
            out.status.success(),
            "old method: nsenter --net={NETNS_DIR}/{ns} ethtool -S eth0 failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(idx) = parse_peer_ifindex(&text) else {
            panic!("old method: no peer_ifindex in ethtool -S output of {ns}: {text}");
        };
        let t1 = Instant::now();
        let name = host_link_by_index(idx)?;
        let t2 = Instant::now();
        spawn += t1 - t0;
        lookup += t2 - t1;
        let want = host_name(i);
        assert!(
            idx == expected.host_ifindex[i] && name.as_deref() == Some(want.as_str()),
            "old method: {ns} eth0 peer_ifindex {idx} → {name:?}, want {want} (ifindex {})",
            expected.host_ifindex[i]
        );
    }
    Ok(OldRun {
        total: start.elapsed(),
        spawn,
        lookup,
    })
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile.
fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[Duration]) -> Duration {
    percentile(values, 0.5)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints rows with columns as wide as their widest cell: the first left-aligned, the rest
/// right-aligned.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("  ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        println!("{}", line.trim_end());
    }
}

struct Row {
    pods: usize,
    setup: Duration,
    netshim: NetshimRun,
    process: Vec<ProcessRun>,
    old: OldRun,
}

fn report(rows: &[Row], iters: usize, pod_ends: PodEnds) {
    println!();
    println!(
        "netshim discovery vs the old shim's per-pod nsenter+ethtool method \
         ({iters} warm cycles per pod count; pod ends {}; times in ms)",
        match pod_ends {
            PodEnds::Down => "down",
            PodEnds::Up => "up",
        }
    );
    println!();
    let mut main = vec![
        [
            "pods",
            "netshim cold",
            "netshim warm (median / p90)",
            "cpu/cycle",
            "old method",
            "ratio old/netshim-warm",
            "ratio old/netshim-cold",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        let n = &r.netshim;
        let warm = median(&n.warm);
        main.push(vec![
            r.pods.to_string(),
            format!("{:.2}", ms(n.cold)),
            format!("{:.2} / {:.2}", ms(warm), ms(percentile(&n.warm, 0.9))),
            format!("{:.2}", ms(median(&n.warm_cpu))),
            format!("{:.2}", ms(r.old.total)),
            format!("{:.1}×", r.old.total.as_secs_f64() / warm.as_secs_f64()),
            format!("{:.1}×", r.old.total.as_secs_f64() / n.cold.as_secs_f64()),
        ]);
    }
    print_table(&main);

    println!();
    println!("where the time goes (scan = netns receiver, resolve = interfaces resolver)");
    println!();
    let mut split = vec![
        [
            "pods",
            "cold scan / resolve",
            "warm scan / resolve (median)",
            "cold reruns (fresh mapper)",
            "old: nsenter+ethtool / lookup",
            "old per pod",
            "RSS after warm (VmRSS / VmHWM)",
            "netns in batch (nsb + other)",
            "setup",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        let n = &r.netshim;
        let reruns: Vec<String> = n
            .cold_reruns
            .iter()
            .map(|d| format!("{:.2}", ms(*d)))
            .collect();
        split.push(vec![
            r.pods.to_string(),
            format!("{:.2} / {:.2}", ms(n.cold_scan), ms(n.cold_resolve)),
            format!(
                "{:.2} / {:.2}",
                ms(median(&n.warm_scan)),
                ms(median(&n.warm_resolve))
            ),
            reruns.join(" / "),
            format!("{:.2} / {:.2}", ms(r.old.spawn), ms(r.old.lookup)),
            format!("{:.2}", ms(r.old.total) / r.pods as f64),
            format!("{:.1} / {:.1} MiB", mib(n.rss_kib), mib(n.hwm_kib)),
            format!("{} + {}", r.pods, n.others),
            format!("{:.2} s", r.setup.as_secs_f64()),
        ]);
    }
    print_table(&split);

    println!();
    println!(
        "whole process: `netshim discover --output json`, median of {PROCESS_RUNS} \
         (interleaved), CPU = the child's user / system time (median)"
    );
    println!();
    let mut whole = vec![
        [
            "pods",
            "binary",
            "wall (median; min–max)",
            "per pod",
            "user / sys",
            "old method",
            "ratio old/whole",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        for p in &r.process {
            let wall = median(&p.wall);
            let (lo, hi) = (
                p.wall.iter().min().copied().unwrap_or_default(),
                p.wall.iter().max().copied().unwrap_or_default(),
            );
            whole.push(vec![
                r.pods.to_string(),
                p.label.clone(),
                format!("{:.2} ({:.2}–{:.2})", ms(wall), ms(lo), ms(hi)),
                format!("{:.3}", ms(wall) / r.pods as f64),
                format!("{:.1} / {:.1}", ms(median(&p.user)), ms(median(&p.sys))),
                format!("{:.2}", ms(r.old.total)),
                format!("{:.1}×", r.old.total.as_secs_f64() / wall.as_secs_f64()),
            ]);
        }
    }
    print_table(&whole);

    println!();
    println!("targets (design.md)");
    // Whole process: ≥ 100× the old method, and linear (per pod at the largest count ≤ 1.3×
    // per pod at the smallest).
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        for (at, p) in last.process.iter().enumerate() {
            let wall = median(&p.wall);
            let ratio = last.old.total.as_secs_f64() / wall.as_secs_f64();
            let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
            println!(
                "  whole process ({}) ≥ 100× the old method at {} pods: {ratio:.1}× {}",
                p.label,
                last.pods,
                verdict(ratio >= 100.0)
            );
            if let Some(small) = first.process.get(at).filter(|_| first.pods < last.pods) {
                let per = |w: Duration, n: usize| w.as_secs_f64() / n as f64;
                let growth = per(wall, last.pods) / per(median(&small.wall), first.pods);
                println!(
                    "  whole process ({}) linear, per pod at {} ≤ 1.3× per pod at {}: {growth:.2}× {}",
                    p.label,
                    last.pods,
                    first.pods,
                    verdict(growth <= 1.3)
                );
            }
        }
    }
    for r in rows {
        let n = &r.netshim;
        let warm = median(&n.warm);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        if r.pods == 1000 {
            let limit = Duration::from_millis(50);
            println!(
                "  full discovery of 1000 pods ≤ 50 ms: cold {:.2} ms {}, warm median {:.2} ms {}",
                ms(n.cold),
                verdict(n.cold <= limit),
                ms(warm),
                verdict(warm <= limit)
            );
            println!(
                "  RSS ≤ 25 MiB at 1000 pods: VmRSS {:.1} MiB {} (whole bench process, \
                 peak {:.1} MiB)",
                mib(n.rss_kib),
                verdict(mib(n.rss_kib) <= 25.0),
                mib(n.hwm_kib)
            );
        }
        let (rw, rc) = (
            r.old.total.as_secs_f64() / warm.as_secs_f64(),
            r.old.total.as_secs_f64() / n.cold.as_secs_f64(),
        );
        println!(
            "  ≥ 100× faster than the old method at {} pods: warm {rw:.1}× {}, cold {rc:.1}× {} \
             (nsenter+ethtool alone, without the lookups: warm {:.1}×, cold {:.1}×)",
            r.pods,
            verdict(rw >= 100.0),
            verdict(rc >= 100.0),
            r.old.spawn.as_secs_f64() / warm.as_secs_f64(),
            r.old.spawn.as_secs_f64() / n.cold.as_secs_f64()
        );
        let dominant = if median(&n.warm_scan) >= median(&n.warm_resolve) {
            "scan"
        } else {
            "resolve"
        };
        println!(
            "  CPU per warm cycle at {} pods: {:.2} ms median (target ≤ 5 ms at 250 pods); \
             warm wall dominated by {dominant}",
            r.pods,
            ms(median(&n.warm_cpu))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Main

fn env_list(name: &str, default: &[usize]) -> Result<Vec<usize>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(default.to_vec());
    };
    let mut values = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .ok()
                .filter(|v| (1..=99_999).contains(v))
                .with_context(|| format!("{name}: {s:?} is not a number from 1 to 99999"))
        })
        .collect::<Result<Vec<_>>>()?;
    if values.is_empty() {
        bail!("{name} is empty");
    }
    // Pods are only ever added: measure the counts in increasing order.
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

fn check_root() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .context("no Uid in /proc/self/status")?;
    if euid != "0" {
        bail!("must run as root (it creates network namespaces); effective uid is {euid}");
    }
    Ok(())
}

fn check_tool(program: &str, arg: &str, hint: &str) -> Result<()> {
    match Command::new(program)
        .arg(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("`{program}` not found; install it ({hint})")
        }
        Err(e) => Err(e).with_context(|| format!("running {program}")),
    }
}

fn run() -> Result<()> {
    let counts = env_list("NETSHIM_BENCH_PODS", DEFAULT_PODS)?;
    let iters = env_list("NETSHIM_BENCH_ITERS", &[DEFAULT_ITERS])?;
    let [iters] = iters[..] else {
        bail!("NETSHIM_BENCH_ITERS takes one number");
    };
    let pod_ends = match std::env::var("NETSHIM_BENCH_POD_UP").as_deref() {
        Err(_) | Ok("" | "0" | "false") => PodEnds::Down,
        Ok("1" | "true") => PodEnds::Up,
        Ok(other) => bail!("NETSHIM_BENCH_POD_UP: {other:?} is not 0 or 1"),
    };
    check_root()?;
    check_tool("ip", "-V", "apt-get install -y iproute2")?;
    check_tool("nsenter", "--version", "apt-get install -y util-linux")?;
    check_tool("ethtool", "--version", "apt-get install -y ethtool")?;
    // The mapper keeps one socket per namespace, and a cold run briefly a file per namespace too.
    let fds = netshim::sys::limits::raise_fd_limit().context("raising the open-file limit")?;
    let needed = 2 * counts.last().copied().unwrap_or(0) as u64 + 64;
    if fds < needed {
        bail!("open-file limit is {fds}, {needed} needed for {counts:?} pods");
    }

    let binaries = binaries()?;
    install_signal_cleanup()?;
    let mut pods = BenchPods::new(pod_ends)?;
    let mut rows = Vec::new();
    for &n in &counts {
        let t = Instant::now();
        pods.grow_to(n)?;
        let setup = t.elapsed();
        // Let the kernel finish the set-up's asynchronous work (link watch events, address
        // configuration of a thousand new namespaces) so that it is not billed to netshim.
        std::thread::sleep(SETTLE);
        let expected = Expected::read(n)?;
        eprintln!(
            "[{n} pods] set up in {:.2} s; measuring netshim…",
            setup.as_secs_f64()
        );
        let netshim = measure_netshim(&expected, iters)?;
        eprintln!(
            "[{n} pods] netshim cold {:.2} ms, warm median {:.2} ms; running the old method…",
            ms(netshim.cold),
            ms(median(&netshim.warm))
        );
        eprintln!(
            "[{n} pods] running `netshim discover --output json` {PROCESS_RUNS}× per binary…"
        );
        let process = measure_processes(&binaries, &expected)?;
        for p in &process {
            eprintln!(
                "[{n} pods] {} discover, whole process: median {:.2} ms",
                p.label,
                ms(median(&p.wall))
            );
        }
        let old = measure_old(&expected)?;
        eprintln!(
            "[{n} pods] old method {:.2} ms (peers agree with netshim for all {n} pods)",
            ms(old.total)
        );
        rows.push(Row {
            pods: n,
            setup,
            netshim,
            process,
            old,
        });
    }
    drop(pods);
    report(&rows, iters, pod_ends);
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then do nothing, since
    // this needs root and takes a while.
    if !std::env::args().any(|a| a == "--bench") {
        println!("discovery: skipped (run it with `cargo bench --bench discovery`, as root)");
        return;
    }
    if let Err(e) = run() {
        eprintln!("discovery benchmark failed: {e:#}");
        std::process::exit(1);
    }
}
