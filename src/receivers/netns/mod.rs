//! The `netns` receiver: runtime-agnostic discovery of network namespaces from bind-mount
//! folders and `/proc`. Works on any Linux host, with or without Kubernetes.

mod cgroup;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BuildSite, ComponentConfig, Factory};
use crate::config::{ConfigErrors, Validate};
use crate::model::{NetnsKey, Sandboxes};
use crate::receivers::ReceiverFactory;
use crate::sys::netns::own_netns_key;

use super::{Receiver, ReceiverError};
use scan::{ScanCache, ScanPlan, netns_key, scan};

pub const TYPE: &str = "netns";

/// Settings of the `netns` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folders holding namespace bind mounts (`ip netns`, containerd's `cni-…`, CRI-O's).
    /// Default: `/run/netns`, `/var/run/netns` (the same folder on most hosts; found once).
    pub paths: Vec<PathBuf>,
    /// Also scan every process's `/proc/PID/ns/net` (namespaces held only by a process).
    /// Default: true.
    pub scan_proc: bool,
    /// Where the host's `/proc` is. Default: `/proc` (a container needs `hostPID`).
    pub proc_path: PathBuf,
    /// How often to scan. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub collection_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            paths: vec!["/run/netns".into(), "/var/run/netns".into()],
            scan_proc: true,
            proc_path: "/proc".into(),
            collection_interval: Duration::from_secs(10),
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.collection_interval < Duration::from_millis(100) {
            problems.push(format!(
                "collection_interval: {} is below the minimum of 100ms",
                humantime::format_duration(self.collection_interval)
            ));
        }
        if self.paths.is_empty() && !self.scan_proc {
            problems.push("nothing to scan: `paths` is empty and `scan_proc` is false".into());
        }
        problems
    }
}

pub const FACTORY: ReceiverFactory = Factory::new::<Config>(
    TYPE,
    "network namespaces from bind-mount folders and /proc (any runtime)",
);

impl ComponentConfig for Config {
    type Component = dyn Receiver;

    fn build(self, _: &BuildSite<'_>) -> Result<Box<dyn Receiver>, ConfigErrors> {
        Ok(Box::new(NetnsReceiver::new(self)))
    }
}

pub struct NetnsReceiver {
    config: Config,
    /// What one scan keeps for the next (pod uids by process, folder listings, the mount
    /// watch).
    cache: Mutex<ScanCache>,
}

impl NetnsReceiver {
    pub fn new(config: Config) -> Self {
        NetnsReceiver {
            config,
            cache: Mutex::default(),
        }
    }

    /// One scan on the calling thread (it reads files: call it where blocking is fine).
    pub fn scan_blocking(&self) -> Result<Sandboxes, ReceiverError> {
        let host = host_netns()?;
        let plan = ScanPlan {
            folders: &self.config.paths,
            proc_root: self
                .config
                .scan_proc
                .then_some(self.config.proc_path.as_path()),
            // The agent's own mount table, whatever `proc_path` says (that is the host's /proc).
            proc_mounts: Some(Path::new("/proc")),
            host,
        };
        // A poisoned lock only means an earlier scan panicked mid-update; the cache is still a
        // valid map, at worst missing entries.
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        Ok(scan(&plan, &mut cache))
    }
}

/// The agent's own network namespace, asked once: it is the process's, and no thread but the
/// dedicated setns thread ever leaves it, so it cannot change (a stat of `/proc/self/ns/net`,
/// a path walk through procfs, every scan would find the same answer).
fn host_netns() -> Result<NetnsKey, ReceiverError> {
    static HOST: OnceLock<NetnsKey> = OnceLock::new();
    if let Some(key) = HOST.get() {
        return Ok(*key);
    }
    let key = own_netns_key().map(netns_key).map_err(|e| {
        ReceiverError::Scan(format!(
            "cannot identify the agent's own network namespace: {e}"
        ))
    })?;
    Ok(*HOST.get_or_init(|| key))
}

#[async_trait]
impl Receiver for NetnsReceiver {
    /// Scans on the calling thread: the collection thread, where blocking is fine (see
    /// `Receiver::collect`).
    async fn collect(&self) -> Result<Sandboxes, ReceiverError> {
        self.scan_blocking()
    }

    fn collection_interval(&self) -> Duration {
        self.config.collection_interval
    }

    fn watch_folders(&self) -> Vec<PathBuf> {
        self.config.paths.clone()
    }
}
