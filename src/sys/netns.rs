//! Network namespace files: identifying them, opening them, and entering one on a dedicated
//! thread to open a netlink socket that stays bound to it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys::mib::MibFiles;
use crate::sys::netlink::{RouteSocket, Watch};

/// Which namespace a namespace file is: the (device, inode) of the nsfs file. Every nsfs file
/// shares one device, so a bind mount and `/proc/PID/ns/net` of the same namespace compare
/// equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsFileKey {
    pub dev: u64,
    pub inode: u64,
}

impl NsFileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        NsFileKey {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// The key of the namespace file at `path`, following symlinks.
pub fn stat_key(path: &Path) -> io::Result<NsFileKey> {
    Ok(NsFileKey::of(&std::fs::metadata(path)?))
}

/// The network namespace of this process (its main thread), which the agent treats as the
/// host's: it runs with host networking. `/proc/1/ns/net` is not used since even root may be
/// denied it.
pub fn own_netns_key() -> io::Result<NsFileKey> {
    stat_key(Path::new("/proc/self/ns/net"))
}

/// An open network namespace file. Holding it keeps the namespace alive, so handles are dropped
/// as soon as the namespace is no longer reported by a receiver.
#[derive(Debug)]
pub struct NetnsFile {
    file: File,
    key: NsFileKey,
}

impl NetnsFile {
    /// Opens `path` and records which namespace it turned out to be.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let key = NsFileKey::of(&file.metadata()?);
        Ok(NetnsFile { file, key })
    }

    pub fn key(&self) -> NsFileKey {
        self.key
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// What was opened inside one namespace: its socket, and its TCP/UDP counter files when asked
/// for (their own result: a namespace whose files cannot be opened still has its socket).
pub struct InNamespace {
    pub socket: RouteSocket,
    pub mib: Option<io::Result<MibFiles>>,
}

/// Opens one rtnetlink socket inside each of `namespaces`, watching `watch`, and, with
/// `mib_dir` (`/proc/thread-self/net`), the namespace's SNMP counter files. Sockets and files
/// stay bound to their namespace for their whole life, so later reads need no `setns`. Results
/// are in the order of `namespaces`.
///
/// `setns` changes the calling thread only, so this runs on short-lived OS threads made for the
/// purpose (`threads` of them, each taking a contiguous share), never on an async worker. The
/// threads are discarded afterwards: they never have to find their way back to the host
/// namespace, and no other work can run in the wrong namespace.
pub fn open_sockets_in(
    namespaces: &[&NetnsFile],
    watch: Watch,
    mib_dir: Option<&Path>,
    threads: usize,
) -> Vec<io::Result<InNamespace>> {
    if namespaces.is_empty() {
        return Vec::new();
    }
    let share = namespaces.len().div_ceil(threads.max(1));
    std::thread::scope(|scope| {
        let workers: Vec<_> = namespaces
            .chunks(share)
            .map(|part| {
                let worker = std::thread::Builder::new()
                    .name("netshim-setns".into())
                    .spawn_scoped(scope, move || {
                        part.iter()
                            .map(|ns| {
                                enter_netns(ns.fd())?;
                                Ok(InNamespace {
                                    socket: RouteSocket::open(watch)?,
                                    mib: mib_dir.map(MibFiles::open_in),
                                })
                            })
                            .collect::<Vec<_>>()
                    });
                (part.len(), worker)
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|(len, worker)| {
                let failed =
                    |why: String| (0..len).map(move |_| Err(io::Error::other(why.clone())));
                match worker {
                    Ok(handle) => match handle.join() {
                        Ok(results) => results,
                        // The closure does not panic; if it ever did, every namespace of its
                        // share is reported as failed rather than the panic propagating.
                        Err(_) => failed("setns thread panicked".into()).collect(),
                    },
                    Err(e) => failed(format!("spawning setns thread: {e}")).collect(),
                }
            })
            .collect()
    })
}

/// Moves the calling thread into the network namespace `fd` refers to.
fn enter_netns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid open descriptor for the duration of the call (it is borrowed from a
    // live `NetnsFile`); setns only reads it. It affects the calling thread alone, which is the
    // dedicated thread of `open_sockets_in`.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
