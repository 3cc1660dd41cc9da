//! The agent binary run by a test or benchmark: a config written to a temp folder, a Prometheus
//! endpoint on a free loopback port, stderr kept in a file (to look for panics), and what
//! `/proc` says of the process (RSS, CPU time, open fds and sockets). Stopped by its pid on drop.
//!
//! Shared by the tests and the benchmarks (`#[path]`), so it depends on std and ureq only.
#![allow(dead_code)] // each user needs a different part

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
    http: Endpoint,
}

/// The agent's HTTP endpoint, for threads that scrape while the test goes on. Holds no part of
/// the process: when the test fails, the `Agent` it owns is dropped (and killed) whatever
/// scraping threads are still running.
#[derive(Clone)]
pub struct Endpoint {
    port: u16,
    http: ureq::Agent,
}

impl Endpoint {
    /// One GET of `path`: (status, body, time taken), or the transport error.
    pub fn get(&self, path: &str) -> Result<(u16, String, Duration), String> {
        let started = Instant::now();
        let mut resp = self
            .http
            .get(&format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .map_err(|e| e.to_string())?;
        Ok((resp.status().as_u16(), body, started.elapsed()))
    }
}

impl Agent {
    /// Starts `binary run -c CONFIG` where CONFIG is `config(port)`.
    pub fn start(binary: &Path, name: &str, config: impl FnOnce(u16) -> String) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp folder");
        let cfg = dir.join("agent.yaml");
        std::fs::write(&cfg, config(port)).expect("writing the config");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
        let child = Command::new(binary)
            .args(["run", "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting the agent");
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Agent {
            port,
            dir,
            child,
            http: Endpoint { port, http },
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One GET of `path`: (status, body, time taken), or the transport error.
    pub fn get(&self, path: &str) -> Result<(u16, String, Duration), String> {
        self.http.get(path)
    }

    /// A handle for scraping from other threads.
    pub fn endpoint(&self) -> Endpoint {
        self.http.clone()
    }

    /// `/metrics`, or "" when it cannot be had.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, body, _)) => body,
            _ => String::new(),
        }
    }

    /// The value of the first sample of `name` (no labels) in `/metrics`.
    pub fn value(&self, name: &str) -> Option<f64> {
        sample(&self.metrics(), name)
    }

    /// Waits until `cond(metrics)` holds; how long it took, or None after `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut cond: impl FnMut(&str) -> bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if cond(&self.metrics()) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident memory, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }

    /// User + system CPU time so far.
    pub fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        // USER_HZ is 100 on every Linux architecture netshim targets.
        Duration::from_millis(ticks * 10)
    }

    /// Open file descriptors, and how many of them are sockets.
    pub fn fds(&self) -> (usize, usize) {
        let mut all = 0;
        let mut sockets = 0;
        for entry in std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .flatten()
        {
            all += 1;
            if std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
        (all, sockets)
    }

    /// Sockets the agent holds beyond one per namespace it reports (its own: listeners, netlink
    /// sockets in the host namespace, connections): must not grow with churn. Namespaces made or
    /// deleted by anyone (other tests on the machine) move both counts: read until three readings
    /// 100 ms apart agree.
    pub fn own_sockets(&self) -> i64 {
        let reading = || loop {
            let before = self.metrics();
            let (_, sockets) = self.fds();
            let after = self.metrics();
            let pods = sample(&before, "netshim_pods");
            if pods.is_some() && pods == sample(&after, "netshim_pods") {
                return sockets as i64 - pods.unwrap_or(0.0) as i64;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = vec![reading()];
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            last.push(reading());
            if last.len() >= 3
                && last[last.len() - 3..]
                    .iter()
                    .all(|v| *v == last[last.len() - 1])
            {
                break;
            }
        }
        last[last.len() - 1]
    }

    /// Open file descriptors by kind: `socket`, `anon_inode:[eventfd]`, `pipe`, or the path.
    pub fn fd_kinds(&self) -> std::collections::BTreeMap<String, usize> {
        let mut kinds = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .into_iter()
            .flatten()
            .flatten()
        {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            // `socket:[123]` and `pipe:[456]` differ only by their inode.
            let kind = match target.split_once(":[") {
                Some((kind, _)) => kind.to_string(),
                None => target,
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
        kinds
    }

    /// What the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; the exit code, None on a timeout or
    /// a death by signal.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of the first sample of `name`, with or without labels (`name{…} v`).
pub fn sample(text: &str, name: &str) -> Option<f64> {
    sample_with(text, name, &[])
}

/// The value of the first sample of `name` whose line contains every one of `labels`
/// (`exporter="otlp_grpc"`, say).
pub fn sample_with(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|m| l.contains(m)))
        .and_then(|l| l.rsplit(' ').next()?.trim().parse().ok())
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
