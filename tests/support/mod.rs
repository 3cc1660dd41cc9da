//! Test pods on the real kernel: network namespaces and veth pairs made with iproute2, removed
//! when their guard drops (also when the test fails). Each test passes its own short name prefix
//! so tests can run in parallel; only addresses on interfaces a test made are ever sent to.
#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ip ARGS…` and panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2 installed?)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS…`, ignoring failure (clean-up of things that may already be gone).
pub fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What `ip ARGS…` prints (stdout, then stderr): for failure messages.
pub fn ip_output(args: &[&str]) -> String {
    match Command::new("ip").args(args).output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("ip {}: {e}", args.join(" ")),
    }
}

/// Whether a link of that name exists in the root namespace.
pub fn host_link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// A host link's index.
pub fn host_ifindex(name: &str) -> u32 {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .unwrap_or_else(|e| panic!("ifindex of {name}: {e}"));
    text.trim().parse().expect("ifindex is a number")
}

/// A host link's counter (`rx_bytes`, …) from sysfs.
pub fn host_counter(name: &str, counter: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{counter}"))
        .unwrap_or_else(|e| panic!("{counter} of {name}: {e}"));
    text.trim().parse().expect("counter is a number")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    time_until(timeout, cond).is_some()
}

/// Polls `cond` every 20 ms; how long it took to hold, `None` when it did not within `limit`.
pub fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        ip_quiet(&["netns", "del", name]); // a leftover from an aborted run
        ip(&["netns", "add", name]);
        Netns { name: name.into() }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// What `ip -n NAME ARGS…` prints: for failure messages.
    pub fn output(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip_output(&all)
    }

    /// Deletes it now (the drop then does nothing).
    pub fn delete(&mut self) {
        ip_quiet(&["netns", "del", &self.name]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A host link made by a test, deleted on drop (its peer goes with it). Links whose namespace
/// is deleted first are already gone; deleting them again is harmless.
pub struct HostLink {
    pub name: String,
}

impl Drop for HostLink {
    fn drop(&mut self) {
        ip_quiet(&["link", "del", &self.name]);
    }
}

/// A veth pair: `host` in the root namespace, `pod_name` in `netns` (a name from `ip netns` or a
/// pid), IPv6 address generation off on both ends (no neighbour-discovery noise), both up.
pub fn veth(host: &str, pod_name: &str, netns: &str) -> HostLink {
    ip_quiet(&["link", "del", host]);
    ip(&[
        "link", "add", host, "type", "veth", "peer", "name", pod_name, "netns", netns,
    ]);
    let guard = HostLink { name: host.into() };
    ip(&["link", "set", host, "addrgenmode", "none", "up"]);
    if netns.bytes().all(|b| b.is_ascii_digit()) {
        // Held by a process: reach it through the process.
        let ns = format!("/proc/{netns}/ns/net");
        nsenter_ip(&ns, &["link", "set", pod_name, "addrgenmode", "none", "up"]);
    } else {
        ip(&[
            "-n",
            netns,
            "link",
            "set",
            pod_name,
            "addrgenmode",
            "none",
            "up",
        ]);
    }
    guard
}

/// A veth pair whose only traffic is the test's: IPv6 address generation off, static
/// neighbours, host end `host` at 169.254.N.1/30 (MAC 02:00:00:NN:00:01), pod end `eth0` in `ns`
/// at 169.254.N.2/30 (MAC …:00:02), both up.
pub fn quiet_veth(ns: &Netns, host: &str, n: u8) -> HostLink {
    let host_mac = format!("02:00:00:{n:02x}:00:01");
    let pod_mac = format!("02:00:00:{n:02x}:00:02");
    ip_quiet(&["link", "del", host]);
    ip(&[
        "link", "add", host, "address", &host_mac, "type", "veth", "peer", "name", "eth0",
        "address", &pod_mac, "netns", &ns.name,
    ]);
    let link = HostLink { name: host.into() };
    let (h, p) = (format!("169.254.{n}.1"), format!("169.254.{n}.2"));
    ip(&["link", "set", host, "addrgenmode", "none"]);
    ns.ip(&["link", "set", "eth0", "addrgenmode", "none"]);
    ip(&["addr", "add", &format!("{h}/30"), "dev", host]);
    ns.ip(&["addr", "add", &format!("{p}/30"), "dev", "eth0"]);
    ip(&[
        "neigh",
        "replace",
        &p,
        "lladdr",
        &pod_mac,
        "dev",
        host,
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "neigh",
        "replace",
        &h,
        "lladdr",
        &host_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    ip(&["link", "set", host, "up"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    link
}

/// Runs `ip ARGS…` inside the namespace file `ns` (for namespaces with no name).
pub fn nsenter_ip(ns: &str, args: &[&str]) {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns}"))
        .arg("ip")
        .args(args)
        .output()
        .expect("run nsenter");
    assert!(
        out.status.success(),
        "nsenter --net={ns} ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch folder `/tmp/{name}-{pid}`, removed on drop (also when the test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make temp dir");
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A process started by a test, killed by its pid (never by name) on drop.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `unshare --net sleep 600`: a namespace held only by a process, no bind mount.
pub fn process_with_own_netns() -> Process {
    let child = Command::new("unshare")
        .args(["--net", "sleep", "600"])
        .spawn()
        .expect("spawn unshare");
    let p = Process { child };
    let own = std::fs::metadata("/proc/self/ns/net").expect("own netns");
    let path = format!("/proc/{}/ns/net", p.pid());
    // unshare execs sleep after entering the new namespace: wait until it has.
    use std::os::unix::fs::MetadataExt;
    let ready = wait_until(Duration::from_secs(5), || {
        std::fs::metadata(&path).is_ok_and(|m| m.ino() != own.ino())
    });
    assert!(ready, "unshare did not enter a new namespace");
    p
}

/// `ip netns exec NAME sleep 600`: a process inside a bind-mounted namespace.
pub fn process_in(netns: &str) -> Process {
    let child = Command::new("ip")
        .args(["netns", "exec", netns, "sleep", "600"])
        .spawn()
        .expect("spawn ip netns exec");
    let p = Process { child };
    let target = std::fs::metadata(format!("/run/netns/{netns}")).expect("netns file");
    let path = format!("/proc/{}/ns/net", p.pid());
    use std::os::unix::fs::MetadataExt;
    let ready = wait_until(Duration::from_secs(5), || {
        std::fs::metadata(&path).is_ok_and(|m| m.ino() == target.ino())
    });
    assert!(ready, "process did not enter {netns}");
    p
}

/// An interface index no link in the root namespace has, from `base` (plus this process's id
/// modulo 1000, so test binaries running at once pick different ones): for a pair whose two
/// ends are given the same index.
pub fn free_host_ifindex(base: u32) -> u32 {
    let used: Vec<u32> = std::fs::read_dir("/sys/class/net")
        .expect("list /sys/class/net")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("ifindex")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (base + std::process::id() % 1000..)
        .find(|i| !used.contains(i))
        .expect("a free index")
}

/// The inode of a namespace file.
pub fn inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .ino()
}
pub mod agent;
pub mod containerd;
pub mod cri_api;
pub mod exporter;
pub mod fake_cri;
pub mod fake_kube;
pub mod otlp_sink;
pub mod pods;

/// A pod's SNMP counters as a process inside it sees them (`cat /proc/net/snmp
/// /proc/net/netstat` run in the namespace), by `Section: Name`. Read independently of the
/// agent's parser, to check it. A negative value (`CurrEstab` is signed on some kernels) reads
/// as 0, as the agent reads it.
pub fn pod_mib(ns: &Netns) -> BTreeMap<String, u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat"])
        .args(["/proc/net/snmp", "/proc/net/netstat"])
        .output()
        .expect("cat in the pod");
    assert!(out.status.success(), "cat: {out:?}");
    let text = String::from_utf8(out.stdout).expect("text");
    let mut map = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((section, names)), Some((_, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            panic!("not a counters line pair: {pair:?}");
        };
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            map.entry(format!("{section}: {n}"))
                .or_insert(v.parse::<u64>().unwrap_or(0));
        }
    }
    map
}

/// Debian's Prometheus with `dir/prometheus.yml`, its data under `dir/data`, on a free
/// loopback port; stopped by pid when the `Process` drops.
pub fn run_prometheus(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (apt-get install prometheus)");
    (Process { child }, port)
}
