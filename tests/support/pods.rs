//! Many test pods at once: namespaces `{prefix}-NNNNN`, each holding `eth0`, the pod end of a
//! veth pair whose host end is `{prefix}NNNNN` (up, IPv6 address generation off; the pod end is
//! left down, which costs the kernel far less to make and is reported all the same). Made and
//! removed in bursts, one `ip -batch` per burst; everything with the prefix is removed on drop,
//! also when the test fails, and leftovers of an aborted run are removed first.
//!
//! Shared by the tests and the benchmarks (`#[path]`), so it depends on nothing but std.
#![allow(dead_code)] // each user needs a different part

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// After `ip netns del` a namespace's veth goes asynchronously; an open socket inside the
/// namespace keeps both alive.
const LINKS_GONE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PodFarm {
    prefix: String,
    next: usize,
    live: BTreeSet<usize>,
}

impl PodFarm {
    /// `prefix`: 3 to 6 lower-case letters, unique to the test (host link names must fit in
    /// 15 bytes).
    pub fn new(prefix: &str) -> Self {
        assert!(
            (3..=6).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_lowercase()),
            "bad prefix {prefix}"
        );
        let farm = PodFarm {
            prefix: prefix.into(),
            next: 0,
            live: BTreeSet::new(),
        };
        farm.remove_everything(false);
        farm
    }

    pub fn ns_name(&self, i: usize) -> String {
        format!("{}-{i:05}", self.prefix)
    }

    pub fn host_name(&self, i: usize) -> String {
        format!("{}{i:05}", self.prefix)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn live(&self) -> Vec<usize> {
        self.live.iter().copied().collect()
    }

    /// Adds `n` pods in one burst; returns their numbers.
    pub fn add(&mut self, n: usize) -> Vec<usize> {
        let ids: Vec<usize> = (self.next..self.next + n).collect();
        self.next += n;
        let mut script = String::new();
        for &i in &ids {
            let (ns, host) = (self.ns_name(i), self.host_name(i));
            let _ = writeln!(script, "netns add {ns}");
            let _ = writeln!(
                script,
                "link add {host} type veth peer name eth0 netns {ns}"
            );
            let _ = writeln!(script, "link set {host} addrgenmode none");
            let _ = writeln!(script, "link set {host} up");
        }
        // Recorded first: the drop removes by prefix anyway, so a partial batch goes too.
        self.live.extend(&ids);
        ip_batch(&self.prefix, &script, false).expect("creating pods");
        ids
    }

    /// Deletes the pods' namespaces in one burst (their veths go when the last reference to
    /// the namespace does).
    pub fn remove(&mut self, ids: &[usize]) {
        let mut script = String::new();
        for i in ids {
            if self.live.remove(i) {
                let _ = writeln!(script, "netns del {}", self.ns_name(*i));
            }
        }
        if !script.is_empty() {
            ip_batch(&self.prefix, &script, true).expect("deleting pods");
        }
    }

    /// Deletes the `n` oldest pods; returns their numbers.
    pub fn remove_oldest(&mut self, n: usize) -> Vec<usize> {
        let ids: Vec<usize> = self.live.iter().take(n).copied().collect();
        self.remove(&ids);
        ids
    }

    /// How many of these pods' host links still exist.
    pub fn links_left(&self, ids: &[usize]) -> usize {
        ids.iter()
            .filter(|i| {
                std::path::Path::new("/sys/class/net")
                    .join(self.host_name(**i))
                    .exists()
            })
            .count()
    }

    /// Waits until the host links of `ids` are gone; false after `limit`.
    pub fn wait_links_gone(&self, ids: &[usize], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.links_left(ids) == 0 {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn own_namespaces(&self) -> Vec<String> {
        let start = format!("{}-", self.prefix);
        std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.starts_with(&start) && n[start.len()..].bytes().all(|b| b.is_ascii_digit())
            })
            .collect()
    }

    fn own_links(&self) -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix(&self.prefix)
                    .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect()
    }

    /// Deletes every namespace with the prefix; with `wait`, until their links are gone too.
    fn remove_everything(&self, wait: bool) -> bool {
        let mut script = String::new();
        for ns in self.own_namespaces() {
            let _ = writeln!(script, "netns del {ns}");
        }
        if !script.is_empty() {
            let _ = ip_batch(&self.prefix, &script, true);
        }
        if !wait {
            return true;
        }
        let deadline = Instant::now() + LINKS_GONE_TIMEOUT;
        while !self.own_links().is_empty() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }
}

impl Drop for PodFarm {
    fn drop(&mut self) {
        if !self.remove_everything(true) {
            eprintln!(
                "warning: host links {}* still present {}s after their namespaces were deleted",
                self.prefix,
                LINKS_GONE_TIMEOUT.as_secs()
            );
        }
    }
}

/// Runs `ip [-force] -batch FILE` on `script`.
fn ip_batch(prefix: &str, script: &str, force: bool) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!(
        "netshim-{prefix}-{}-{:?}.batch",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut cmd = Command::new("ip");
    if force {
        cmd.arg("-force");
    }
    let out = cmd.arg("-batch").arg(&file).stdin(Stdio::null()).output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
