//! One scan for network namespaces: bind-mount folders, then every `/proc/PID/ns/net`.

use foldhash::{HashMap, HashMapExt};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::debug;

use crate::model::{NetnsKey, NetnsRef, PodIdentity, Sandbox, Sandboxes};
use crate::sys::mounts::MountWatch;
use crate::sys::netns::{NsFileKey, stat_key};

use super::cgroup::pod_uid_from_cgroup;

/// The model's name for the namespace a namespace file is.
pub(super) fn netns_key(k: NsFileKey) -> NetnsKey {
    NetnsKey {
        dev: k.dev,
        inode: k.inode,
    }
}

/// Where to look and which namespace is the host's (never reported).
pub struct ScanPlan<'a> {
    pub folders: &'a [PathBuf],
    pub proc_root: Option<&'a Path>,
    /// The agent's own procfs, for its mount table; `None`: folders are listed every scan.
    pub proc_mounts: Option<&'a Path>,
    pub host: NetnsKey,
}

/// One namespace found by a scan.
#[derive(Debug, Clone)]
struct Found {
    /// The first bind mount seen, else `/proc/PID/ns/net` of the first process.
    path: Arc<Path>,
    pid: Option<u32>,
}

/// Scans are full every this many scans even when nothing says a folder changed.
const FULL_SCAN_EVERY: u32 = 30;

/// What one scan keeps for the next: each process's pod uid (cgroup files are read once per
/// process, not per cycle), and each folder's namespaces, listed again only when the folder or
/// the mount table changed (a namespace is bind-mounted or unmounted there), and every
/// `FULL_SCAN_EVERY` scans in any case. In the steady state a folder of 1000 namespaces costs
/// one `stat` and one `poll` instead of 1000 `stat`s.
#[derive(Default)]
pub struct ScanCache {
    by_pid: HashMap<(NetnsKey, u32), Option<String>>,
    folders: HashMap<PathBuf, FolderListing>,
    /// Each configured folder's real path (`/var/run/netns` is `/run/netns` on most hosts),
    /// resolved again on full scans only: a symlink among its parents changes with no event.
    real_paths: HashMap<PathBuf, PathBuf>,
    mounts: Option<MountWatch>,
    scans: u32,
    /// The last scan's result, handed out again while nothing it came from can have changed.
    last: Option<Sandboxes>,
}

/// A folder's namespaces as last listed.
struct FolderListing {
    stamp: FolderStamp,
    /// Bind mounts: a change to them is a mount-table change.
    mounted: Vec<(NetnsKey, Arc<Path>)>,
    /// Symlinks (say, to `/proc/PID/ns/net`): their target can go without any mount change,
    /// so they are followed again every scan.
    links: Vec<Arc<Path>>,
}

/// What changes when entries are added to or removed from a folder.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FolderStamp {
    mtime: (i64, i64),
    inode: u64,
}

impl FolderStamp {
    fn of(folder: &Path) -> Option<Self> {
        let m = std::fs::metadata(folder).ok()?;
        Some(FolderStamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            inode: m.ino(),
        })
    }
}

/// Scans for every network namespace other than the host's, deduplicated by (device, inode).
/// Entries that vanish or deny access while being read are skipped with a debug line: processes
/// and mounts come and go during any scan.
///
/// When nothing the last result came from can have changed (no folder listed again, no symlink
/// to follow, no `/proc` to walk), that result is handed out again: in the steady state of a
/// bind-mount-only scan, a scan is one `poll` and one `stat` per folder, and no copy.
pub fn scan(plan: &ScanPlan<'_>, cache: &mut ScanCache) -> Sandboxes {
    let (folders, changed) = refresh_listings(plan, cache);
    if !changed
        && plan.proc_root.is_none()
        && let Some(last) = cache.last.as_ref()
    {
        return Arc::clone(last);
    }
    let mut found: HashMap<NetnsKey, Found> = HashMap::new();
    for listing in folders.iter().filter_map(|real| cache.folders.get(real)) {
        let links = listing
            .links
            .iter()
            .filter_map(|path| match stat_key(path) {
                Ok(key) => Some((netns_key(key), path)),
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "netns link not readable, skipped");
                    None
                }
            });
        for (key, path) in listing.mounted.iter().map(|(k, p)| (*k, p)).chain(links) {
            if key == plan.host || key.dev != plan.host.dev {
                continue;
            }
            found.entry(key).or_insert(Found {
                path: Arc::clone(path),
                pid: None,
            });
        }
    }
    if let Some(proc_root) = plan.proc_root {
        scan_proc(proc_root, plan.host, &mut found);
    }

    let mut live = HashMap::with_capacity(found.len());
    let mut sandboxes: Vec<Sandbox> = found
        .into_iter()
        .map(|(key, f)| {
            let uid = f.pid.and_then(|pid| {
                let proc_root = plan.proc_root?;
                let uid = cache
                    .by_pid
                    .remove(&(key, pid))
                    .unwrap_or_else(|| read_pod_uid(proc_root, pid));
                live.insert((key, pid), uid.clone());
                uid
            });
            Sandbox {
                netns: Some(NetnsRef {
                    path: f.path,
                    inode: key.inode,
                    dev: key.dev,
                }),
                pid: f.pid,
                pod: uid.map(|uid| PodIdentity {
                    uid: Some(uid),
                    ..PodIdentity::default()
                }),
                ..Sandbox::default()
            }
        })
        .collect();
    // Only processes still present stay cached: the cache cannot outgrow the process table.
    cache.by_pid = live;
    // By the path's bytes, at a fraction of the cost of comparing components (that was a
    // quarter of the agent's user time per cycle at 1000 pods). Within one folder the order is
    // the same; across folders it can differ only where a name holds a byte below `/` (`-`,
    // `.`), which changes nothing but the listing order.
    fn path_bytes(s: &Sandbox) -> Option<&[u8]> {
        s.netns.as_ref().map(|n| n.path.as_os_str().as_bytes())
    }
    sandboxes.sort_unstable_by(|a, b| path_bytes(a).cmp(&path_bytes(b)));
    let sandboxes = Arc::new(sandboxes);
    cache.last = Some(Arc::clone(&sandboxes));
    sandboxes
}

/// Brings each folder's listing up to date: listed again when its stamp moved, the mount table
/// changed, or a full scan is due; forgotten when no longer configured. Gives the real folders
/// in configuration order, and whether what they hold may differ from the last scan's (a folder
/// listed again or forgotten, or a symlink, whose target can change unseen).
fn refresh_listings(plan: &ScanPlan<'_>, cache: &mut ScanCache) -> (Vec<PathBuf>, bool) {
    // Whether every folder must be listed again: asked once per scan, since the watch reports
    // each mount change once.
    let mounts_changed = match cache.mounts.as_mut() {
        Some(watch) => watch.changed(),
        None => {
            cache.mounts = plan
                .proc_mounts
                .and_then(|proc| MountWatch::open(proc).ok());
            true
        }
    };
    cache.scans = cache.scans.wrapping_add(1);
    let full = mounts_changed || cache.scans.is_multiple_of(FULL_SCAN_EVERY);
    if full {
        cache.real_paths.clear();
    }
    // `/var/run` is usually a symlink to `/run`: list each real folder once.
    let mut folders: Vec<PathBuf> = Vec::new();
    let mut changed = false;
    for folder in plan.folders {
        let real = match cache.real_paths.get(folder) {
            Some(real) => real.clone(),
            None => {
                let real = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.clone());
                cache.real_paths.insert(folder.clone(), real.clone());
                real
            }
        };
        if folders.contains(&real) {
            continue;
        }
        let stamp = FolderStamp::of(&real);
        let current = match (cache.folders.get(&real), stamp) {
            (Some(l), Some(stamp)) if !full && l.stamp == stamp => !l.links.is_empty(),
            _ => {
                cache
                    .folders
                    .insert(real.clone(), list_folder(folder, stamp));
                true
            }
        };
        changed |= current;
        folders.push(real);
    }
    let before = cache.folders.len();
    cache.folders.retain(|folder, _| folders.contains(folder));
    changed |= cache.folders.len() != before;
    (folders, changed)
}

/// What `folder` holds, in listing order: the bind mounts with their keys, and the symlinks.
fn list_folder(folder: &Path, stamp: Option<FolderStamp>) -> FolderListing {
    let mut listing = FolderListing {
        // No stamp: listed again next scan (the cached stamp never matches a missing one).
        stamp: stamp.unwrap_or(FolderStamp {
            mtime: (0, 0),
            inode: 0,
        }),
        mounted: Vec::new(),
        links: Vec::new(),
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) => {
            debug!(folder = %folder.display(), error = %e, "netns folder not readable, skipped");
            return listing;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            listing.links.push(path.into());
            continue;
        }
        // Statted relative to the open folder (no walk of the folder's path); a mount on the
        // entry is crossed.
        match entry.metadata() {
            // Every namespace file lives on the one nsfs device; anything else in the folder
            // (an empty file left by a failed `ip netns add`, say) is filtered out by the caller.
            Ok(m) => listing.mounted.push((
                NetnsKey {
                    dev: m.dev(),
                    inode: m.ino(),
                },
                path.into(),
            )),
            Err(e) => {
                debug!(path = %path.display(), error = %e, "netns entry not readable, skipped")
            }
        }
    }
    listing
}

fn scan_proc(proc_root: &Path, host: NetnsKey, found: &mut HashMap<NetnsKey, Found>) {
    let entries = match std::fs::read_dir(proc_root) {
        Ok(entries) => entries,
        Err(e) => {
            debug!(proc = %proc_root.display(), error = %e, "proc not readable, skipped");
            return;
        }
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // Lowest pid first: a pod's sandbox (pause) process usually started first.
    pids.sort_unstable();
    for pid in pids {
        let path = proc_root.join(pid.to_string()).join("ns/net");
        let key = match stat_key(&path) {
            Ok(key) => netns_key(key),
            Err(e) => {
                debug!(pid, error = %e, "process gone or denied, skipped");
                continue;
            }
        };
        if key == host || key.dev != host.dev {
            continue;
        }
        let entry = found.entry(key).or_insert(Found {
            path: path.into(),
            pid: None,
        });
        if entry.pid.is_none() {
            entry.pid = Some(pid);
        }
    }
}

fn read_pod_uid(proc_root: &Path, pid: u32) -> Option<String> {
    let path = proc_root.join(pid.to_string()).join("cgroup");
    match std::fs::read_to_string(&path) {
        Ok(text) => pod_uid_from_cgroup(&text),
        Err(e) => {
            debug!(pid, error = %e, "cgroup not readable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of plain files stands in for a folder of bind mounts: the scan keys each entry by
    /// its (device, inode) and keeps those on the "host's" device, which the test says is the
    /// folder's.
    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("nst-scan-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Folder(dir)
        }

        fn plan(&self) -> ScanPlan<'_> {
            let dev = std::fs::metadata(&self.0).unwrap().dev();
            ScanPlan {
                folders: std::slice::from_ref(&self.0),
                proc_root: None,
                proc_mounts: Some(Path::new("/proc")),
                host: NetnsKey { dev, inode: 0 },
            }
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(list: &[Sandbox]) -> Vec<String> {
        list.iter()
            .filter_map(|s| s.netns.as_ref())
            .map(|n| n.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn an_unchanged_folder_gives_the_same_list_without_a_copy() {
        let folder = Folder::new("reuse");
        for name in ["b", "a"] {
            std::fs::write(folder.0.join(name), "").unwrap();
        }
        let plan = folder.plan();
        let mut cache = ScanCache::default();
        let first = scan(&plan, &mut cache);
        assert_eq!(names(&first), ["a", "b"]);
        // Another test of this process mounting something makes one scan list again; a second
        // try then finds nothing changed.
        let reused = (0..5).any(|_| {
            let before = scan(&plan, &mut cache);
            Arc::ptr_eq(&before, &scan(&plan, &mut cache))
        });
        assert!(reused, "nothing changed, yet every scan made a new list");

        std::fs::write(folder.0.join("c"), "").unwrap();
        let grown = scan(&plan, &mut cache);
        assert_eq!(names(&grown), ["a", "b", "c"], "a namespace added is seen");
        std::fs::remove_file(folder.0.join("a")).unwrap();
        assert_eq!(
            names(&scan(&plan, &mut cache)),
            ["b", "c"],
            "and one removed"
        );
    }

    #[test]
    fn a_folder_with_symlinks_is_followed_every_scan() {
        let folder = Folder::new("links");
        let target = folder.0.join("target");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, folder.0.join("link")).unwrap();
        let plan = folder.plan();
        let mut cache = ScanCache::default();
        let first = scan(&plan, &mut cache);
        assert!(!Arc::ptr_eq(&first, &scan(&plan, &mut cache)));
    }
}
